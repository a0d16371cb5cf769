//! Message data as a plain IMAP literal can carry it: no NUL (RFC 9051 §4.3; only
//! `literal8`, which BINARY asks for, may hold one, RFC 3516 §4.2).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// `BODY[part]` of a leaf part with NUL in it (binary content): the part base64-encoded in
/// 76-column lines, as a client can decode it; other data unchanged.
pub(super) fn leaf_body(data: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    if !data.contains(&0) {
        return data;
    }
    let encoded = BASE64.encode(&data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

/// Whole messages, headers and texts: each NUL becomes 0x80, so sizes stay what
/// RFC822.SIZE and BODYSTRUCTURE say.
pub(super) fn without_nul(data: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    if !data.contains(&0) {
        return data;
    }
    Cow::Owned(
        data.iter()
            .map(|&b| if b == 0 { 0x80 } else { b })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_never_leaves_in_a_plain_literal() {
        let plain = Cow::Borrowed(&b"text\r\n"[..]);
        assert!(matches!(leaf_body(plain.clone()), Cow::Borrowed(_)));
        assert!(matches!(without_nul(plain), Cow::Borrowed(_)));
        assert_eq!(&*leaf_body(Cow::Borrowed(b"\0-\xe4\r\n")), b"AC3kDQo=\r\n");
        let long = vec![0u8; 100];
        let b = leaf_body(Cow::Borrowed(&long));
        assert!(b.split(|&c| c == b'\n').all(|l| l.len() <= 77));
        assert_eq!(&*without_nul(Cow::Borrowed(b"a\0b")), b"a\x80b");
    }
}
