//! Minimal message inspection: RFC 5322 §2.2 (header fields), §2.2.3 (folding) and
//! §2.1 (the header section ends at the first empty line).
//!
//! Only what the server itself needs (e.g. "does the message already carry a
//! `Date:`/`Message-ID:` field?"); this is not a MIME parser.

/// Is a header field called `name` present in the header section of `body`?
///
/// * The field name is compared case-insensitively; white space between the name and
///   the colon (RFC 5322 §4.5 obsolete syntax) is tolerated.
/// * Only the header section is searched: it ends at the first empty line, and also
///   at the first line that is neither a field nor a folded continuation (so a
///   body line such as `Subject: x` after a malformed header is never matched).
/// * Folded continuation lines (starting with SP or HTAB) belong to the previous
///   field and are never taken as a field of their own.
/// * CRLF and bare LF line endings are both understood.
pub fn header_present(body: &[u8], name: &str) -> bool {
    header_value(body, name).is_some()
}

/// The value of the first header field called `name` (same rules as [`header_present`]),
/// unfolded (line breaks removed) and trimmed; invalid UTF-8 is replaced.
pub fn header_value(body: &[u8], name: &str) -> Option<String> {
    let name = name.as_bytes();
    if name.is_empty() {
        return None;
    }
    let mut found: Option<Vec<u8>> = None;
    for raw in body.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break; // end of the header section
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Folded continuation of the previous field.
            if let Some(v) = found.as_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break; // not a header field: the header section is over
        };
        let field = trim_wsp_end(&line[..colon]);
        if field.is_empty() || !field.iter().all(|&b| (33..=126).contains(&b)) {
            break;
        }
        if field.eq_ignore_ascii_case(name) {
            found = Some(line[colon + 1..].to_vec());
        }
    }
    found.map(|v| String::from_utf8_lossy(&v).trim().to_owned())
}

fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hello\r\n world\r\nMessage-ID: <1@x>\r\n\r\nDate: not a header\r\nbody\r\n";

    #[test]
    fn header_values_are_unfolded() {
        assert_eq!(header_value(MSG, "subject").as_deref(), Some("hello world"));
        assert_eq!(header_value(MSG, "Message-ID").as_deref(), Some("<1@x>"));
        assert_eq!(header_value(MSG, "Date"), None, "only the header section");
        assert_eq!(
            header_value(b"TLS-Required :  No \r\n\r\n", "tls-required").as_deref(),
            Some("No")
        );
        assert_eq!(
            header_value(b"A: 1\r\nA: 2\r\n\r\n", "a").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn finds_fields_case_insensitively() {
        assert!(header_present(MSG, "From"));
        assert!(header_present(MSG, "from"));
        assert!(header_present(MSG, "SUBJECT"));
        assert!(header_present(MSG, "message-id"));
        assert!(!header_present(MSG, "Message"));
        assert!(!header_present(MSG, "Subject:"));
    }

    #[test]
    fn body_is_not_searched() {
        assert!(!header_present(MSG, "Date"));
        assert!(!header_present(b"\r\nDate: x\r\n", "Date"));
    }

    #[test]
    fn folded_lines_are_not_fields() {
        let m = b"Subject: a\r\n Date: folded\r\n\tX-Y: folded\r\nTo: c\r\n\r\n";
        assert!(!header_present(m, "Date"));
        assert!(!header_present(m, "X-Y"));
        assert!(header_present(m, "To"));
    }

    #[test]
    fn whitespace_before_colon() {
        assert!(header_present(b"Subject : x\r\n\r\n", "subject"));
        assert!(header_present(b"Subject\t: x\r\n\r\n", "subject"));
    }

    #[test]
    fn malformed_line_ends_header_section() {
        assert!(!header_present(
            b"From: a\r\nnot a header\r\nDate: x\r\n\r\n",
            "Date"
        ));
        assert!(!header_present(
            b"From: a\r\nBad Name: x\r\nDate: x\r\n\r\n",
            "Date"
        ));
    }

    #[test]
    fn bare_lf_and_no_body() {
        assert!(header_present(b"From: a\nDate: x\n\nbody", "date"));
        assert!(header_present(b"Date: x", "date"));
        assert!(!header_present(b"", "date"));
        assert!(!header_present(b"Date: x", ""));
        assert!(!header_present(b": x\r\n", ""));
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        assert!(!header_present(&[0xff, 0xfe, b':', 0, b'\n'], "x"));
        assert!(!header_present(
            "Ünïcode: x\r\nDate: y\r\n".as_bytes(),
            "date"
        ));
    }
}
