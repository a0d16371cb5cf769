//! Mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3, still the IMAP4rev1
//! form) and UTF-8 (RFC 9051 §5.1, RFC 6855 `UTF8=ACCEPT`).
//!
//! Inside the server a mailbox name is always a Rust `String` (Unicode). On the wire:
//!
//! * a client that enabled `IMAP4rev2` or `UTF8=ACCEPT` sends and receives UTF-8;
//! * any other client uses modified UTF-7. As a courtesy (RFC 9051 Appendix E, and what
//!   deployed clients do), a name that contains 8-bit bytes is taken as UTF-8 even then;
//!   such a name is never mUTF-7-decoded, so `&` keeps its plain meaning in it.
//!
//! Decoding is strict so that each name has exactly one wire form (the encoder's
//! output): no printable ASCII inside `&...-`, no empty or adjacent shifted runs, no
//! non-zero padding bits, no unpaired surrogates.

/// Why a wire mailbox name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MailboxNameError {
    #[error("mailbox name is not valid UTF-8")]
    InvalidUtf8,
    #[error("mailbox name is not valid modified UTF-7")]
    InvalidUtf7,
    #[error("mailbox name contains a control character")]
    Control,
}

/// The name `INBOX`, in its canonical spelling.
pub const INBOX: &str = "INBOX";

/// Decodes a mailbox name as sent by the client (`utf8`: the client uses UTF-8 names).
/// `INBOX` in any case becomes `INBOX` (RFC 9051 §5.1); other names keep their case.
/// Control characters are refused (they are never valid in a name; RFC 9051 §5.1).
pub fn decode_mailbox(raw: &[u8], utf8: bool) -> Result<String, MailboxNameError> {
    let name = decode_pattern(raw, utf8)?;
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.to_string());
    }
    Ok(name)
}

/// Decodes a LIST/LSUB pattern or reference: like [`decode_mailbox`], but the wildcards
/// `*` and `%` are kept and INBOX is not canonicalised (the LIST matcher does that).
pub fn decode_pattern(raw: &[u8], utf8: bool) -> Result<String, MailboxNameError> {
    let name = if utf8 || !raw.is_ascii() {
        std::str::from_utf8(raw)
            .map_err(|_| MailboxNameError::InvalidUtf8)?
            .to_string()
    } else {
        decode_utf7(raw)?
    };
    if name.chars().any(char::is_control) {
        return Err(MailboxNameError::Control);
    }
    Ok(name)
}

/// The wire form of a mailbox name for a client (`utf8`: the client uses UTF-8 names).
pub fn encode_mailbox(name: &str, utf8: bool) -> String {
    if utf8 {
        name.to_string()
    } else {
        encode_utf7(name)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

/// Modified UTF-7 encoding (RFC 3501 §5.1.3).
pub fn encode_utf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush_utf7(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_utf7(&mut pending, &mut out);
    out
}

fn flush_utf7(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for &u in units.iter() {
        bits = (bits << 16) | u32::from(u);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(B64[((bits >> nbits) & 0x3f) as usize] as char);
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(B64[((bits << (6 - nbits)) & 0x3f) as usize] as char);
    }
    out.push('-');
    units.clear();
}

/// Strict modified UTF-7 decoding (RFC 3501 §5.1.3); the input must be 7-bit.
pub fn decode_utf7(raw: &[u8]) -> Result<String, MailboxNameError> {
    let bad = MailboxNameError::InvalidUtf7;
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut last_shift_end: Option<usize> = None;
    while i < raw.len() {
        let c = raw[i];
        if !(0x20..=0x7e).contains(&c) {
            return Err(if c < 0x80 {
                MailboxNameError::Control
            } else {
                bad
            });
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            continue;
        }
        // A shift sequence `&...-`.
        let start = i + 1;
        let end = raw[start..]
            .iter()
            .position(|&b| b == b'-')
            .map(|p| start + p)
            .ok_or(bad)?;
        if end == start {
            out.push('&');
            i = end + 1;
            continue;
        }
        // Two shifted runs back to back should have been one.
        if last_shift_end == Some(i) {
            return Err(bad);
        }
        let mut units: Vec<u16> = Vec::with_capacity((end - start) * 6 / 16);
        let mut bits: u32 = 0;
        let mut nbits = 0;
        for &b in &raw[start..end] {
            let v = b64_value(b).ok_or(bad)?;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(((bits >> nbits) & 0xffff) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        // Leftover bits: fewer than 6 and all zero (RFC 2152 padding).
        if nbits >= 6 || bits != 0 || units.is_empty() {
            return Err(bad);
        }
        for ch in char::decode_utf16(units.iter().copied()) {
            let ch = ch.map_err(|_| bad)?;
            // Printable ASCII must represent itself.
            if (' '..='~').contains(&ch) {
                return Err(bad);
            }
            out.push(ch);
        }
        i = end + 1;
        last_shift_end = Some(i);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // RFC 3501 §5.1.3: "~peter/mail/台北/日本語"
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(encode_utf7(name), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(
            decode_utf7(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            name
        );
    }

    #[test]
    fn ampersand_and_ascii() {
        assert_eq!(encode_utf7("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode_utf7(b"Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(encode_utf7("Entw\u{fc}rfe"), "Entw&APw-rfe");
        assert_eq!(decode_utf7(b"Entw&APw-rfe").unwrap(), "Entw\u{fc}rfe");
        // Astral plane (surrogate pair).
        let s = "mail \u{1F600}";
        assert_eq!(decode_utf7(encode_utf7(s).as_bytes()).unwrap(), s);
    }

    #[test]
    fn strict_decoding() {
        for bad in [
            &b"&"[..],             // unterminated
            b"&U,BTFw",            // unterminated
            b"&AGE-",              // "a" encoded: printable ASCII must not be shifted
            b"&U,BTFw-&ZeVnLIqe-", // adjacent shifted runs
            b"&U,BTF-",            // truncated unit / non-zero padding
            b"&2D0-",              // lone high surrogate
            b"&!!-",               // not base64
            b"&APw/-",             // '/' is not in the modified alphabet
        ] {
            assert!(
                decode_utf7(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode_utf7(b"a\tb"), Err(MailboxNameError::Control));
    }

    #[test]
    fn decode_mailbox_modes() {
        assert_eq!(decode_mailbox(b"inbox", false).unwrap(), "INBOX");
        assert_eq!(decode_mailbox(b"InBoX", true).unwrap(), "INBOX");
        assert_eq!(decode_mailbox(b"inbox/x", false).unwrap(), "inbox/x");
        // UTF-8 mode: '&' is just '&'.
        assert_eq!(decode_mailbox(b"A&-B", true).unwrap(), "A&-B");
        assert_eq!(decode_mailbox(b"A&-B", false).unwrap(), "A&B");
        // 8-bit names are UTF-8 even for a rev1 client.
        assert_eq!(
            decode_mailbox("Entwürfe".as_bytes(), false).unwrap(),
            "Entwürfe"
        );
        assert_eq!(
            decode_mailbox(b"\xff", false),
            Err(MailboxNameError::InvalidUtf8)
        );
        assert_eq!(
            decode_mailbox(b"a\x7fb", true),
            Err(MailboxNameError::Control)
        );
        assert_eq!(decode_pattern(b"inbox/%", false).unwrap(), "inbox/%");
        assert_eq!(encode_mailbox("Entwürfe", true), "Entwürfe");
        assert_eq!(encode_mailbox("Entwürfe", false), "Entw&APw-rfe");
    }

    proptest::proptest! {
        #[test]
        fn utf7_round_trip(s in "\\PC{0,40}") {
            let enc = encode_utf7(&s);
            proptest::prop_assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            proptest::prop_assert_eq!(decode_utf7(enc.as_bytes()).unwrap(), s);
        }

        #[test]
        fn utf7_decode_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Ok(s) = decode_utf7(&raw) {
                // Strictness: one wire form per name.
                let enc = encode_utf7(&s);
                proptest::prop_assert_eq!(enc.as_bytes(), &raw[..]);
            }
        }
    }
}
