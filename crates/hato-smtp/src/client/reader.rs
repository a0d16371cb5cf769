//! Reading server replies (RFC 5321 §4.2, §4.2.1 multi-line replies) with enhanced
//! status codes (RFC 3463, RFC 2034 §4: the code may be repeated on every line).
//!
//! ```text
//! Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//!                 Reply-code [ SP textstring ] CRLF
//! Reply-code = %x32-35 %x30-35 %x30-39
//! ```
//!
//! Decisions:
//! * A line may end in CRLF or a bare LF (a trailing CR is stripped): servers that
//!   get line endings wrong are common, and a lenient *client* reading *replies*
//!   cannot be tricked into smuggling anything.
//! * Every line is limited to `max_line` octets including the line end and a reply
//!   to `max_lines` lines; a longer line or reply is an error (never buffered beyond
//!   the limit plus the bytes of one `feed`).
//! * The first digit must be 2-5 (RFC 5321 §4.2.1); the other two are digits. A code
//!   that changes within a multi-line reply, a missing separator (`250ok`) or a line
//!   that does not start with a code is [`ProtocolError::Malformed`].
//! * The enhanced status code is taken from the first line when its class matches the
//!   reply code's first digit (`250 2.1.0 Ok`); the same prefix is removed from the
//!   following lines. Control characters in the text are dropped (TAB becomes a
//!   space) and invalid UTF-8 is replaced, so a reply is always safe to log.

use crate::reply::Reply;

use super::ProtocolError;

/// Incremental reply parser over the bytes fed by the driver.
#[derive(Debug)]
pub(super) struct ReplyReader {
    buf: Vec<u8>,
    /// Unprocessed bytes start at `buf[pos]`.
    pos: usize,
    /// Bytes after `pos` already searched for LF.
    scanned: usize,
    /// The reply being assembled: code, enhanced status, text lines.
    code: Option<u16>,
    status: Option<(u8, u16, u16)>,
    lines: Vec<String>,
    max_line: usize,
    max_lines: usize,
}

impl ReplyReader {
    pub(super) fn new(max_line: usize, max_lines: usize) -> ReplyReader {
        ReplyReader {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            code: None,
            status: None,
            lines: Vec::new(),
            max_line: max_line.max(5),
            max_lines: max_lines.max(1),
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 64 * 1024) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a returned reply (raw bytes and the lines
    /// of a reply being assembled).
    pub(super) fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.lines.iter().map(|l| l.len() + 1).sum::<usize>()
    }

    /// Forgets everything received (after the TLS handshake: plaintext bytes never
    /// count as replies on the encrypted connection).
    pub(super) fn clear(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
        self.code = None;
        self.status = None;
        self.lines = Vec::new();
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub(super) fn next_reply(&mut self) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let avail = &self.buf[self.pos..];
            let from = self.scanned.min(avail.len());
            let Some(off) = avail[from..].iter().position(|&b| b == b'\n') else {
                if avail.len() >= self.max_line {
                    return Err(ProtocolError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                self.scanned = avail.len();
                return Ok(None);
            };
            let lf = from + off;
            if lf + 1 > self.max_line {
                return Err(ProtocolError::LineTooLong {
                    limit: self.max_line,
                });
            }
            let mut line = &avail[..lf];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let (code, last, text) = parse_line(line)?;
            let text = sanitize(text);
            self.pos += lf + 1;
            self.scanned = 0;
            match self.code {
                None => {
                    self.code = Some(code);
                    let (status, rest) = split_status(&text, code);
                    self.status = status;
                    self.lines.push(rest.to_string());
                }
                Some(c) if c == code => {
                    let rest = match split_status(&text, code) {
                        (Some(s), rest) if Some(s) == self.status => rest,
                        _ => &text,
                    };
                    self.lines.push(rest.to_string());
                }
                Some(_) => return Err(ProtocolError::Malformed),
            }
            if last {
                let reply = Reply {
                    code,
                    status: self.status.take(),
                    text: std::mem::take(&mut self.lines).join("\n"),
                };
                self.code = None;
                return Ok(Some(reply));
            }
            if self.lines.len() >= self.max_lines {
                return Err(ProtocolError::TooManyLines {
                    limit: self.max_lines,
                });
            }
        }
    }
}

/// `ddd`, `ddd SP text`, `ddd-text` -> (code, is last line, text).
fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ProtocolError> {
    let [a, b, c, rest @ ..] = line else {
        return Err(ProtocolError::Malformed);
    };
    if !(b'2'..=b'5').contains(a) || !b.is_ascii_digit() || !c.is_ascii_digit() {
        return Err(ProtocolError::Malformed);
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(ProtocolError::Malformed),
    }
}

/// Reply text as a loggable string: invalid UTF-8 replaced, TAB to space, other
/// control characters dropped.
fn sanitize(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Splits a leading RFC 3463 status code (`class.subject.detail`, class equal to the
/// reply code's first digit, subject and detail 1-3 digits) off the text.
fn split_status(text: &str, code: u16) -> (Option<(u8, u16, u16)>, &str) {
    let word_end = text.find(' ').unwrap_or(text.len());
    let (word, rest) = text.split_at(word_end);
    let mut parts = word.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (None, text);
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(class, 1) || !digits(subject, 3) || !digits(detail, 3) {
        return (None, text);
    }
    let (Ok(class), Ok(subject), Ok(detail)) = (
        class.parse::<u8>(),
        subject.parse::<u16>(),
        detail.parse::<u16>(),
    ) else {
        return (None, text);
    };
    if u16::from(class) != code / 100 {
        return (None, text);
    }
    (
        Some((class, subject, detail)),
        rest.strip_prefix(' ').unwrap_or(rest),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> ReplyReader {
        ReplyReader::new(512, 10)
    }

    fn one(bytes: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        let mut r = reader();
        r.feed(bytes);
        r.next_reply()
    }

    /// The one complete reply in `bytes`.
    fn parsed(bytes: &[u8]) -> Reply {
        one(bytes).unwrap().unwrap()
    }

    #[test]
    fn single_line_with_status() {
        assert_eq!(
            parsed(b"250 2.1.0 Sender ok\r\n"),
            Reply::new(250, (2, 1, 0), "Sender ok")
        );
    }

    #[test]
    fn single_line_without_status() {
        assert_eq!(
            parsed(b"220 mx.example ESMTP\r\n"),
            Reply::without_status(220, "mx.example ESMTP")
        );
    }

    #[test]
    fn code_only_and_empty_text() {
        assert_eq!(parsed(b"250\r\n"), Reply::without_status(250, ""));
        assert_eq!(parsed(b"250 \r\n"), Reply::without_status(250, ""));
        assert_eq!(parsed(b"250 2.0.0\r\n"), Reply::new(250, (2, 0, 0), ""));
    }

    #[test]
    fn multi_line_status_on_every_line_is_stripped() {
        assert_eq!(
            parsed(b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"),
            Reply::new(550, (5, 7, 1), "first\nsecond\nthird")
        );
    }

    #[test]
    fn multi_line_round_trips_through_reply_rendering() {
        for reply in [
            Reply::new(451, (4, 3, 0), "a\nb c\n\nd"),
            Reply::without_status(250, "mx.example\nPIPELINING\nSIZE 100"),
            Reply::new(250, (2, 0, 0), ""),
        ] {
            assert_eq!(parsed(&reply.to_bytes()), reply);
        }
    }

    #[test]
    fn status_class_must_match_code() {
        assert_eq!(
            parsed(b"250 5.1.1 odd\r\n"),
            Reply::without_status(250, "5.1.1 odd")
        );
        let r = parsed(b"550 5.1.1234 odd\r\n");
        assert_eq!(r.status, None);
        let r = parsed(b"550 5.1.1.1 odd\r\n");
        assert_eq!(r.status, None);
        let r = parsed(b"550 5.1. odd\r\n");
        assert_eq!(r.status, None);
    }

    #[test]
    fn bare_lf_accepted() {
        assert_eq!(
            parsed(b"250-a\n250 b\n"),
            Reply::without_status(250, "a\nb")
        );
    }

    #[test]
    fn control_characters_dropped_invalid_utf8_replaced() {
        let r = parsed(b"550 5.1.1 a\x00b\x1b[31m\tc\xff\r\n");
        assert_eq!(r.text, "ab[31m c\u{fffd}");
    }

    #[test]
    fn incomplete_needs_more() {
        let mut r = reader();
        r.feed(b"250-a\r\n250 b");
        assert_eq!(r.next_reply(), Ok(None));
        r.feed(b"\r");
        assert_eq!(r.next_reply(), Ok(None));
        r.feed(b"\n");
        assert_eq!(r.next_reply(), Ok(Some(Reply::without_status(250, "a\nb"))));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn several_replies_in_one_feed() {
        let mut r = reader();
        r.feed(b"250 2.1.0 a\r\n550 5.1.1 b\r\n354 go\r\n");
        assert_eq!(r.next_reply().unwrap().unwrap().code, 250);
        assert_eq!(r.next_reply().unwrap().unwrap().code, 550);
        assert_eq!(r.buffered(), 8);
        assert_eq!(r.next_reply().unwrap().unwrap().code, 354);
        assert_eq!(r.next_reply(), Ok(None));
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"\r\n",
            b"250ok\r\n",
            b"650 no\r\n",
            b"150 no\r\n",
            b"2x0 no\r\n",
            b"HTTP/1.1 400 Bad Request\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            assert_eq!(one(bad), Err(ProtocolError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn overlong_line_is_an_error_complete_or_not() {
        let mut long = b"250 ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 600));
        assert_eq!(one(&long), Err(ProtocolError::LineTooLong { limit: 512 }));
        long.extend_from_slice(b"\r\n");
        assert_eq!(one(&long), Err(ProtocolError::LineTooLong { limit: 512 }));
        // Exactly at the limit (CRLF included) is fine.
        let mut exact = b"250 ".to_vec();
        exact.extend(std::iter::repeat_n(b'a', 512 - 6));
        exact.extend_from_slice(b"\r\n");
        assert_eq!(parsed(&exact).text.len(), 512 - 6);
    }

    #[test]
    fn too_many_lines() {
        let mut bytes = Vec::new();
        for _ in 0..10 {
            bytes.extend_from_slice(b"250-x\r\n");
        }
        bytes.extend_from_slice(b"250 x\r\n");
        assert_eq!(one(&bytes), Err(ProtocolError::TooManyLines { limit: 10 }));
        // Ten lines in all is fine.
        let mut ok = Vec::new();
        for _ in 0..9 {
            ok.extend_from_slice(b"250-x\r\n");
        }
        ok.extend_from_slice(b"250 x\r\n");
        assert!(one(&ok).unwrap().is_some());
    }

    #[test]
    fn clear_forgets_partial_reply() {
        let mut r = reader();
        r.feed(b"250-a\r\n250");
        assert_eq!(r.next_reply(), Ok(None));
        assert!(r.buffered() > 0);
        r.clear();
        assert_eq!(r.buffered(), 0);
        r.feed(b"220 b\r\n");
        assert_eq!(r.next_reply(), Ok(Some(Reply::without_status(220, "b"))));
    }
}
