//! Message transfer encoding for RETR and TOP (RFC 1939 §3 multi-line responses,
//! §7 TOP).
//!
//! A message is sent as CRLF-terminated lines; a line starting with `.` gets one
//! more `.` in front ("byte-stuffing"), and `.` CRLF ends the response. The stored
//! message may not be in canonical form, so every line ending is normalised on the
//! way out: CRLF, a bare LF and a bare CR each end one line and are sent as CRLF,
//! and a last line without a terminator gets one. The encoded body therefore never
//! contains a CR or LF outside a CRLF pair, and `CRLF . CRLF` can only appear as the
//! terminator — whatever the stored bytes are, and also for a client that treats a
//! bare CR or bare LF as a line end.

/// The lines of a message without their terminators (CRLF, bare LF or bare CR).
///
/// An empty message has no lines; a trailing terminator does not start a line.
#[derive(Clone, Debug)]
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    pub(crate) fn new(message: &'a [u8]) -> Lines<'a> {
        Lines { rest: message }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => {
                self.rest = &[];
                Some(rest)
            }
            Some(i) => {
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                self.rest = &rest[i + skip..];
                Some(&rest[..i])
            }
        }
    }
}

/// The size of `message` as RETR sends it, before byte-stuffing: every line
/// terminated by CRLF (RFC 1939 §5: the "exact size" of a message counts CRLF line
/// endings).
///
/// For a message stored with CRLF line endings that ends in CRLF this is its length;
/// drivers use it (or the stored length, if that is known to be canonical) for
/// [`MessageInfo::size`](crate::MessageInfo::size), so that LIST and RETR agree.
pub fn wire_size(message: &[u8]) -> u64 {
    Lines::new(message).map(|l| l.len() as u64 + 2).sum()
}

/// Appends the multi-line body of a RETR (`top = None`) or `TOP n m`
/// (`top = Some(m)`) response: the (selected) lines, byte-stuffed and
/// CRLF-terminated, then the `.` CRLF terminator. Returns the number of message
/// octets written, counted as [`wire_size`] counts them (without stuffing and
/// terminator).
///
/// TOP (RFC 1939 §7) sends the header lines, the empty line separating header and
/// body, and then at most `m` body lines. A message without an empty line is all
/// header and is sent completely.
pub(crate) fn write_message(out: &mut Vec<u8>, message: &[u8], top: Option<usize>) -> u64 {
    out.reserve(message.len() + message.len() / 64 + 8);
    let mut written = 0u64;
    let mut in_header = true;
    let mut body_lines = 0usize;
    for line in Lines::new(message) {
        if let Some(max) = top {
            if in_header {
                in_header = !line.is_empty();
            } else {
                if body_lines >= max {
                    break;
                }
                body_lines += 1;
            }
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        written += line.len() as u64 + 2;
    }
    out.extend_from_slice(b".\r\n");
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(message: &[u8], top: Option<usize>) -> (String, u64) {
        let mut out = Vec::new();
        let n = write_message(&mut out, message, top);
        (String::from_utf8(out).unwrap(), n)
    }

    #[test]
    fn lines_split_on_every_terminator() {
        let lines: Vec<&[u8]> = Lines::new(b"a\r\nb\nc\rd").collect();
        assert_eq!(lines, [&b"a"[..], b"b", b"c", b"d"]);
        let lines: Vec<&[u8]> = Lines::new(b"\r\n\r\n").collect();
        assert_eq!(lines, [&b""[..], b""]);
        // CR CR LF: a bare CR, then CRLF.
        let lines: Vec<&[u8]> = Lines::new(b"x\r\r\ny").collect();
        assert_eq!(lines, [&b"x"[..], b"", b"y"]);
        assert_eq!(Lines::new(b"").count(), 0);
        assert_eq!(Lines::new(b"\n").count(), 1);
    }

    #[test]
    fn wire_size_counts_crlf() {
        assert_eq!(wire_size(b""), 0);
        assert_eq!(wire_size(b"a\r\n"), 3);
        assert_eq!(wire_size(b"a\n"), 3);
        assert_eq!(wire_size(b"a"), 3);
        assert_eq!(wire_size(b"a\r\nb\r\n"), 6);
        assert_eq!(wire_size(b"a\rb\n"), 6);
    }

    /// RETR: (case, message, what is sent, its octet count where checked).
    #[test]
    fn retr_encoding() {
        for (case, message, sent, octets) in [
            (
                "a canonical message is sent unchanged",
                &b"Subject: x\r\n\r\nhello\r\n"[..],
                "Subject: x\r\n\r\nhello\r\n.\r\n",
                Some(21),
            ),
            (
                "leading dots are stuffed",
                b"a\r\n.\r\n..x\r\n.b\r\n",
                "a\r\n..\r\n...x\r\n..b\r\n.\r\n",
                Some(3 + 3 + 5 + 4),
            ),
            (
                "only at the start of a line",
                b"a.b\r\n",
                "a.b\r\n.\r\n",
                None,
            ),
            ("a message starting with a dot", b".", "..\r\n.\r\n", None),
            (
                "bare line endings become CRLF",
                b"a\nb\rc\r\n",
                "a\r\nb\r\nc\r\n.\r\n",
                Some(9),
            ),
            (
                "a bare-LF terminator sequence cannot fake the end of the response",
                b"a\n.\nb\n",
                "a\r\n..\r\nb\r\n.\r\n",
                None,
            ),
            (
                "nor a bare-CR one",
                b"a\r.\rb",
                "a\r\n..\r\nb\r\n.\r\n",
                None,
            ),
            (
                "a missing final line end is added",
                b"a\r\nb",
                "a\r\nb\r\n.\r\n",
                Some(6),
            ),
        ] {
            let (out, n) = encode(message, None);
            assert_eq!(out, sent, "{case}");
            if let Some(octets) = octets {
                assert_eq!(n, octets, "{case}");
            }
        }
    }

    #[test]
    fn empty_message() {
        assert_eq!(encode(b"", None), (".\r\n".to_string(), 0));
        assert_eq!(encode(b"", Some(0)), (".\r\n".to_string(), 0));
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(encode(msg, Some(0)).0, "A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(encode(msg, Some(1)).0, "A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n");
        assert_eq!(
            encode(msg, Some(3)).0,
            "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n"
        );
        assert_eq!(encode(msg, Some(usize::MAX)), encode(msg, None));
        assert_eq!(encode(msg, Some(0)).1, 14);
    }

    #[test]
    fn top_counts_empty_body_lines_and_stuffs() {
        let msg = b"A: 1\n\n\n.x\nl3\n";
        assert_eq!(encode(msg, Some(2)).0, "A: 1\r\n\r\n\r\n..x\r\n.\r\n");
    }

    #[test]
    fn top_of_message_without_body_separator() {
        assert_eq!(encode(b"A: 1\r\nB: 2", Some(0)).0, "A: 1\r\nB: 2\r\n.\r\n");
    }

    #[test]
    fn top_of_message_without_header() {
        assert_eq!(
            encode(b"\r\nbody\r\nmore\r\n", Some(1)).0,
            "\r\nbody\r\n.\r\n"
        );
    }
}
