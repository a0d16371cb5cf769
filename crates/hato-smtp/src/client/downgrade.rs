//! 8-bit to 7-bit conversion for servers without 8BITMIME (RFC 6152 §3, RFC 2045
//! §6.7 quoted-printable, RFC 2046 §5.1 multipart, §5.2.1 message/rfc822).
//!
//! Each MIME leaf whose body has octets ≥ 0x80 is re-encoded as quoted-printable and
//! its `Content-Transfer-Encoding` field replaced; multiparts and `message/rfc822`
//! parts are converted recursively and relabelled `7bit`. A message without MIME
//! header fields is treated as `text/plain` and gets `MIME-Version`, `Content-Type:
//! text/plain; charset=unknown-8bit` (RFC 1428) and the encoding field. Line endings
//! are normalised to CRLF first. Nothing that is already 7-bit changes.
//!
//! What cannot be converted is an error (the message must then bounce with
//! `5.6.3`): 8-bit header fields (they would need RFC 2047 encoding, and usually mean
//! an SMTPUTF8 message), 8-bit octets inside base64/quoted-printable bodies, inside a
//! multipart preamble or epilogue, or in `message/*` types other than `rfc822`, and
//! nesting deeper than 32 levels. Converting changes the body, so DKIM signatures
//! over it no longer verify (RFC 6376 §5.3 recommends signing 7-bit content).

use thiserror::Error;

use super::encode::Normalizer;

/// Nesting limit for multiparts and embedded messages.
const MAX_DEPTH: usize = 32;
/// Longest quoted-printable line, soft break `=` included (RFC 2045 §6.7 rule 5).
const QP_LINE: usize = 76;

/// Why a message cannot be converted to 7 bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum DowngradeError {
    #[error("8-bit octets in a header field")]
    EightBitHeader,
    #[error("8-bit octets in a base64 or quoted-printable body")]
    InvalidEncoding,
    #[error("8-bit octets in a multipart preamble or epilogue")]
    EightBitPreamble,
    #[error("8-bit octets in a message/* part that cannot be re-encoded")]
    UnsupportedType,
    #[error("MIME structure nested too deeply")]
    TooDeep,
}

/// Converts a message with 8-bit content to an equivalent 7-bit one (see the
/// module documentation). A 7-bit message comes back with normalised line endings.
pub fn downgrade_8bit(message: &[u8]) -> Result<Vec<u8>, DowngradeError> {
    let mut normalized = Vec::with_capacity(message.len() + message.len() / 16);
    Normalizer::new(false).fill(message, &mut normalized, usize::MAX);
    let lines: Vec<&[u8]> = split_lines(&normalized);
    let out = entity(&lines, true, 0)?;
    Ok(out.join(&b"\r\n"[..]))
}

fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        lines.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    lines.push(rest);
    lines
}

fn is_8bit(lines: &[&[u8]]) -> bool {
    lines.iter().any(|l| l.iter().any(|&b| b >= 0x80))
}

/// Converts one entity (header lines, empty line, body lines). `top`: the message
/// itself or an embedded message (MIME-ness decided by its header fields).
fn entity(lines: &[&[u8]], top: bool, depth: usize) -> Result<Vec<Vec<u8>>, DowngradeError> {
    if depth > MAX_DEPTH {
        return Err(DowngradeError::TooDeep);
    }
    let split = lines.iter().position(|l| l.is_empty());
    let (header, body) = match split {
        Some(i) => (&lines[..i], &lines[i + 1..]),
        None => (lines, &lines[lines.len()..]),
    };
    if is_8bit(header) {
        return Err(DowngradeError::EightBitHeader);
    }
    let keep = || lines.iter().map(|l| l.to_vec()).collect();
    if !is_8bit(body) {
        return Ok(keep());
    }
    let content_type = field(header, "content-type");
    let mime = !top || field(header, "mime-version").is_some() || content_type.is_some();
    let (mtype, params) = match &content_type {
        Some(v) => parse_content_type(v),
        None => ("text/plain".to_string(), Vec::new()),
    };
    let cte = field(header, "content-transfer-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "7bit".to_string());

    let (new_body, new_cte) = if mtype.starts_with("multipart/") {
        let boundary = params
            .iter()
            .find(|(k, _)| k == "boundary")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if boundary.is_empty() || !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
            return Err(DowngradeError::InvalidEncoding);
        }
        (multipart(body, boundary.as_bytes(), depth)?, "7bit")
    } else if mtype == "message/rfc822" {
        if !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
            return Err(DowngradeError::InvalidEncoding);
        }
        (entity(body, true, depth + 1)?, "7bit")
    } else if mtype.starts_with("message/") {
        return Err(DowngradeError::UnsupportedType);
    } else {
        if !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
            return Err(DowngradeError::InvalidEncoding);
        }
        (quoted_printable(body), "quoted-printable")
    };

    let mut out: Vec<Vec<u8>> = Vec::with_capacity(header.len() + new_body.len() + 4);
    let mut skipping = false;
    for line in header {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if !skipping {
                out.push(line.to_vec());
            }
            continue;
        }
        skipping = field_name_is(line, "content-transfer-encoding");
        if !skipping {
            out.push(line.to_vec());
        }
    }
    if !mime {
        out.push(b"MIME-Version: 1.0".to_vec());
        out.push(b"Content-Type: text/plain; charset=unknown-8bit".to_vec());
    }
    out.push(format!("Content-Transfer-Encoding: {new_cte}").into_bytes());
    out.push(Vec::new());
    out.extend(new_body);
    Ok(out)
}

/// RFC 2046 §5.1.1: converts the body parts between the delimiter lines.
fn multipart(
    body: &[&[u8]],
    boundary: &[u8],
    depth: usize,
) -> Result<Vec<Vec<u8>>, DowngradeError> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(body.len());
    let mut part: Option<Vec<&[u8]>> = None;
    let mut closed = false;
    for &line in body {
        let delimiter = if closed {
            None
        } else {
            delimiter_kind(line, boundary)
        };
        match delimiter {
            Some(close) => {
                if let Some(p) = part.take() {
                    out.extend(entity(&p, false, depth + 1)?);
                }
                out.push(line.to_vec());
                if close {
                    closed = true;
                } else {
                    part = Some(Vec::new());
                }
            }
            None => match &mut part {
                Some(p) => p.push(line),
                None => {
                    // Preamble or epilogue.
                    if line.iter().any(|&b| b >= 0x80) {
                        return Err(DowngradeError::EightBitPreamble);
                    }
                    out.push(line.to_vec());
                }
            },
        }
    }
    if let Some(p) = part {
        // No close delimiter: the last part runs to the end.
        out.extend(entity(&p, false, depth + 1)?);
    }
    Ok(out)
}

/// `Some(false)` for `--boundary`, `Some(true)` for `--boundary--` (trailing white
/// space allowed), `None` otherwise.
fn delimiter_kind(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|&b| b == b' ' || b == b'\t')
        .then_some(close)
}

/// RFC 2045 §6.7 quoted-printable, one encoded line group per body line (hard line
/// breaks stay CRLF), lines at most 76 octets.
fn quoted_printable(body: &[&[u8]]) -> Vec<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(body.len());
    for &line in body {
        let mut cur: Vec<u8> = Vec::with_capacity(line.len().min(QP_LINE));
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal =
                ((b == b' ' || b == b'\t') && !last) || ((b'!'..=b'~').contains(&b) && b != b'=');
            let mut token = [0u8; 3];
            let token: &[u8] = if literal {
                token[0] = b;
                &token[..1]
            } else {
                token = [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
                &token
            };
            // Keep room for the soft break "=" unless this is the end of the line.
            let room = if last { QP_LINE } else { QP_LINE - 1 };
            if cur.len() + token.len() > room {
                cur.push(b'=');
                out.push(std::mem::take(&mut cur));
            }
            cur.extend_from_slice(token);
        }
        out.push(cur);
    }
    out
}

fn field_name_is(line: &[u8], name: &str) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && line[name.len()..]
            .iter()
            .find(|&&b| b != b' ' && b != b'\t')
            == Some(&b':')
}

/// The unfolded value of the first field `name` (ASCII: the header was checked).
fn field(header: &[&[u8]], name: &str) -> Option<String> {
    let start = header.iter().position(|l| field_name_is(l, name))?;
    let first = header[start];
    let colon = first.iter().position(|&b| b == b':')?;
    let mut value = String::from_utf8_lossy(&first[colon + 1..]).into_owned();
    for cont in header[start + 1..]
        .iter()
        .take_while(|l| l.first().is_some_and(|&b| b == b' ' || b == b'\t'))
    {
        value.push_str(&String::from_utf8_lossy(cont));
    }
    Some(value)
}

/// `type/subtype; name=value; name="quoted value"` -> lower-case type and
/// parameters (names lower-case, values unquoted).
fn parse_content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    let mtype = parts[0].trim().to_ascii_lowercase();
    let params = parts[1..]
        .iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (mtype, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(m: &str) -> String {
        String::from_utf8(downgrade_8bit(m.as_bytes()).unwrap()).unwrap()
    }

    /// Decodes quoted-printable (for round-trip checks).
    fn qp_decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let lines: Vec<&str> = s.split("\r\n").collect();
        for (n, line) in lines.iter().enumerate() {
            let (line, soft) = match line.strip_suffix('=') {
                Some(l) => (l, true),
                None => (*line, false),
            };
            let b = line.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'=' {
                    out.push(u8::from_str_radix(&line[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            if !soft && n + 1 < lines.len() {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    #[test]
    fn seven_bit_message_unchanged() {
        let m = "Subject: hi\r\n\r\nplain\r\n";
        assert_eq!(down(m), m);
        assert_eq!(down("Subject: hi\n\nplain\n"), m);
    }

    #[test]
    fn plain_8bit_mime_leaf() {
        let m = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\nGrüße = Grüße \r\n";
        assert_eq!(
            down(m),
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Gr=C3=BC=C3=9Fe =3D Gr=C3=BC=C3=9Fe=20\r\n"
        );
    }

    #[test]
    fn non_mime_message_gets_mime_fields() {
        let m = "Subject: x\r\n\r\nsmörgåsbord\r\n";
        assert_eq!(
            down(m),
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\nsm=C3=B6rg=C3=A5sbord\r\n"
        );
    }

    #[test]
    fn folded_cte_field_replaced() {
        let m =
            "Content-Type: text/plain\r\nContent-Transfer-Encoding:\r\n 8bit\r\nX: y\r\n\r\né\r\n";
        assert_eq!(
            down(m),
            "Content-Type: text/plain\r\nX: y\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n"
        );
    }

    #[test]
    fn long_lines_soft_broken_and_round_trip() {
        let text = "é".repeat(100) + " end " + &"x".repeat(200);
        let m = format!("Content-Type: text/plain\r\n\r\n{text}\r\nsecond line\r\n");
        let out = down(&m);
        let body = out.split_once("\r\n\r\n").unwrap().1;
        for line in body.split("\r\n") {
            assert!(line.len() <= QP_LINE, "{line}");
            assert!(line.is_ascii());
        }
        assert_eq!(
            qp_decode(body),
            format!("{text}\r\nsecond line\r\n").into_bytes()
        );
    }

    #[test]
    fn qp_round_trip_all_octets() {
        let all: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').collect();
        let lines = quoted_printable(&[&all, b"trailing \t", b""]);
        let joined = String::from_utf8(lines.join(&b"\r\n"[..])).unwrap();
        let mut expect = all.clone();
        expect.extend_from_slice(b"\r\ntrailing \t\r\n");
        assert_eq!(qp_decode(&joined), expect);
    }

    #[test]
    fn multipart_converts_only_8bit_parts() {
        let m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b 1\"\r\n\
                 Content-Transfer-Encoding: 8bit\r\n\r\npreamble\r\n--b 1\r\n\
                 Content-Type: text/plain\r\n\r\nascii\r\n--b 1\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\nü\r\n--b 1--\r\nepilogue\r\n";
        assert_eq!(
            down(m),
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b 1\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\npreamble\r\n--b 1\r\n\
             Content-Type: text/plain\r\n\r\nascii\r\n--b 1\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             =C3=BC\r\n--b 1--\r\nepilogue\r\n"
        );
    }

    #[test]
    fn nested_message_rfc822() {
        let m = "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nä\r\n";
        assert_eq!(
            down(m),
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
             Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=unknown-8bit\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A4\r\n"
        );
    }

    #[test]
    fn errors() {
        let e = |m: &str| downgrade_8bit(m.as_bytes()).unwrap_err();
        assert_eq!(
            e("Subject: Grüße\r\n\r\nx\r\n"),
            DowngradeError::EightBitHeader
        );
        assert_eq!(
            e("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\u{e9}\r\n"),
            DowngradeError::InvalidEncoding
        );
        assert_eq!(
            e(
                "Content-Type: multipart/mixed; boundary=b\r\n\r\n\u{e9}\r\n--b\r\n\r\nx\r\n--b--\r\n"
            ),
            DowngradeError::EightBitPreamble
        );
        assert_eq!(
            e("Content-Type: multipart/mixed\r\n\r\n\u{e9}\r\n"),
            DowngradeError::InvalidEncoding
        );
        assert_eq!(
            e("Content-Type: message/global\r\n\r\n\u{e9}\r\n"),
            DowngradeError::UnsupportedType
        );
        let mut deep = String::new();
        for _ in 0..40 {
            deep.push_str("Content-Type: message/rfc822\r\n\r\n");
        }
        deep.push_str("\u{e9}\r\n");
        assert_eq!(e(&deep), DowngradeError::TooDeep);
    }

    #[test]
    fn header_only_message() {
        assert_eq!(down("Subject: x\r\n"), "Subject: x\r\n");
        assert_eq!(down(""), "");
    }
}
