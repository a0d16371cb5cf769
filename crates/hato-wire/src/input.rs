//! The client-input buffer of the line-based sans-IO sessions (SMTP, POP3): bytes are appended
//! by `feed`, lines are cut at LF within a length limit, and the search for the LF resumes where
//! it stopped, so a client that sends a long line a byte at a time costs linear, not quadratic,
//! work. The limit bounds memory: a line that cannot fit is consumed, never buffered whole.

/// What [`InputBuffer::next_line`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// A line up to and including its LF, consumed. `line` is without the LF and without a CR
    /// before it (empty when `too_long`: not copied); `crlf` says whether the CR was there.
    Line {
        line: Vec<u8>,
        crlf: bool,
        too_long: bool,
    },
    /// At least `limit` bytes without an LF: all of them consumed. The caller discards input up
    /// to the next LF; `last_cr` says whether the consumed bytes ended with CR.
    Overflow { last_cr: bool },
    /// No LF yet: more input is needed.
    Incomplete,
}

/// Unprocessed client bytes start at `bytes[pos]`.
#[derive(Debug, Default)]
pub struct InputBuffer {
    bytes: Vec<u8>,
    pos: usize,
    /// Bytes after `pos` already searched for an LF.
    scanned: usize,
}

impl InputBuffer {
    pub fn extend(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// The bytes not processed yet.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    /// Bytes held, processed ones not yet compacted included (for memory bounds).
    pub fn held(&self) -> usize {
        self.bytes.len()
    }

    /// Marks `n` pending bytes processed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
        self.scanned = 0;
    }

    /// Drops everything buffered (after STARTTLS, or when the session closes).
    pub fn discard(&mut self) {
        *self = InputBuffer::default();
    }

    /// Frees the processed bytes (and a large emptied allocation).
    pub fn compact(&mut self) {
        if self.pos > 0 {
            self.bytes.drain(..self.pos);
            self.pos = 0;
        }
        if self.bytes.is_empty() && self.bytes.capacity() > 64 * 1024 {
            self.bytes = Vec::new();
        }
    }

    /// The next line, at most `limit` bytes with its LF.
    pub fn next_line(&mut self, limit: usize) -> Framed {
        let avail = &self.bytes[self.pos..];
        let from = self.scanned.min(avail.len());
        match avail[from..].iter().position(|&b| b == b'\n') {
            Some(off) => {
                let lf = from + off;
                let crlf = lf > 0 && avail[lf - 1] == b'\r';
                let too_long = lf + 1 > limit;
                let line = if too_long {
                    Vec::new()
                } else {
                    avail[..lf - usize::from(crlf)].to_vec()
                };
                self.consume(lf + 1);
                Framed::Line {
                    line,
                    crlf,
                    too_long,
                }
            }
            None if avail.len() >= limit => {
                let last_cr = avail.last() == Some(&b'\r');
                self.consume(avail.len());
                Framed::Overflow { last_cr }
            }
            None => {
                self.scanned = avail.len();
                Framed::Incomplete
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &[u8], crlf: bool) -> Framed {
        Framed::Line {
            line: s.to_vec(),
            crlf,
            too_long: false,
        }
    }

    #[test]
    fn lines_limits_and_resumed_search() {
        let mut b = InputBuffer::default();
        b.extend(b"NOOP\r\nQU");
        assert_eq!(b.next_line(10), line(b"NOOP", true));
        assert_eq!(b.next_line(10), Framed::Incomplete);
        b.extend(b"IT\nrest");
        assert_eq!(b.next_line(10), line(b"QUIT", false));
        assert_eq!(b.pending(), b"rest");
        b.extend(b"123456\r\n");
        let long = b.next_line(10);
        assert_eq!(
            long,
            Framed::Line {
                line: Vec::new(),
                crlf: true,
                too_long: true
            }
        );
        b.extend(b"0123456789\r");
        assert_eq!(b.next_line(10), Framed::Overflow { last_cr: true });
        assert!(b.pending().is_empty());
        b.compact();
        b.extend(b"x");
        b.consume(5);
        assert!(b.pending().is_empty());
        b.extend(b"abc\r\n");
        b.discard();
        assert_eq!(b.next_line(10), Framed::Incomplete);
    }
}
