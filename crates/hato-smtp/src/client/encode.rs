//! Message encoding for the client: line-ending normalisation, DATA transparency
//! (RFC 5321 §4.5.2) and the RFC 1870 size. (DSN parameter encoding, xtext and
//! utf-8-addr-xtext, is in [`crate::dsn`], shared with the server session.)

/// Facts about a message, from one pass over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Scan {
    /// Octets after line-ending normalisation (every line ends in CRLF), without
    /// transparency dots or the final `.CRLF`: the RFC 1870 §3 message size.
    pub(super) size: u64,
    /// Some octet has the high bit set (needs BODY=8BITMIME, RFC 6152).
    pub(super) eight_bit: bool,
}

/// One pass: normalised size and 8-bit content. Must agree with [`Normalizer`].
pub(super) fn scan(msg: &[u8]) -> Scan {
    let mut size = msg.len() as u64;
    let mut eight_bit = false;
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        if b >= 0x80 {
            eight_bit = true;
        } else if b == b'\r' {
            if msg.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            size += 1; // bare CR -> CRLF
        } else if b == b'\n' {
            size += 1; // bare LF -> CRLF
        }
        i += 1;
    }
    if let Some(&last) = msg.last()
        && last != b'\r'
        && last != b'\n'
    {
        size += 2; // the last line gets its CRLF
    }
    Scan { size, eight_bit }
}

/// Produces the wire form of a message in bounded pieces: every line ending (CRLF,
/// bare LF, bare CR) becomes CRLF, an unterminated last line is terminated, and with
/// `dot_stuff` a line starting with `.` gets another `.` and the data ends with
/// `.CRLF` (RFC 5321 §4.5.2, §4.1.1.4).
#[derive(Clone, Debug)]
pub(super) struct Normalizer {
    pos: usize,
    line_start: bool,
    dot_stuff: bool,
    done: bool,
}

impl Normalizer {
    pub(super) fn new(dot_stuff: bool) -> Normalizer {
        Normalizer {
            pos: 0,
            line_start: true,
            dot_stuff,
            done: false,
        }
    }

    /// Everything (including the terminator) has been produced.
    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    /// Appends wire bytes to `out` until it holds at least `max` octets or the message
    /// is finished. `out` may end up a few octets longer than `max` (at most 6: a
    /// stuffed dot, a line end and the final `.CRLF` are never split), never shorter
    /// unless the message is finished.
    pub(super) fn fill(&mut self, msg: &[u8], out: &mut Vec<u8>, max: usize) {
        while !self.done {
            if self.pos >= msg.len() {
                if !self.line_start {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                }
                if self.dot_stuff {
                    out.extend_from_slice(b".\r\n");
                }
                self.done = true;
                break;
            }
            if out.len() >= max {
                break;
            }
            let rest = &msg[self.pos..];
            if self.line_start && self.dot_stuff && rest[0] == b'.' {
                out.push(b'.');
            }
            let budget = (max - out.len()).max(1);
            let window = &rest[..rest.len().min(budget)];
            match window.iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&window[..i]);
                    let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
                    self.pos += i + if crlf { 2 } else { 1 };
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                }
                None => {
                    out.extend_from_slice(window);
                    self.pos += window.len();
                    self.line_start = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(msg: &[u8], dot_stuff: bool, max: usize) -> Vec<u8> {
        let mut n = Normalizer::new(dot_stuff);
        let mut out = Vec::new();
        let mut guard = 0;
        while !n.is_done() {
            let mut piece = Vec::new();
            n.fill(msg, &mut piece, max);
            assert!(piece.len() <= max + 6);
            assert!(n.is_done() || piece.len() >= max);
            out.extend(piece);
            guard += 1;
            assert!(guard < 100_000);
        }
        out
    }

    #[test]
    fn line_endings_normalised() {
        let m = b"a\nb\rc\r\nd";
        assert_eq!(normalize(m, false, 1000), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(scan(m).size, 12);
    }

    #[test]
    fn dot_stuffing_and_terminator() {
        let m = b".start\r\nmiddle.\r\n.\r\n..two\n.";
        assert_eq!(
            normalize(m, true, 1000),
            b"..start\r\nmiddle.\r\n..\r\n...two\r\n..\r\n.\r\n"
        );
    }

    #[test]
    fn final_crlf_added_only_when_missing() {
        assert_eq!(normalize(b"x", true, 1000), b"x\r\n.\r\n");
        assert_eq!(normalize(b"x\r\n", true, 1000), b"x\r\n.\r\n");
        assert_eq!(normalize(b"x\r", true, 1000), b"x\r\n.\r\n");
        assert_eq!(normalize(b"", true, 1000), b".\r\n");
        assert_eq!(normalize(b"", false, 1000), b"");
        assert_eq!(scan(b"").size, 0);
        assert_eq!(scan(b"x").size, 3);
        assert_eq!(scan(b"x\r").size, 3);
    }

    #[test]
    fn small_pieces_give_the_same_bytes() {
        let m = b".a\r\n.\r\nb\rc\n\n.d.\r\n\r\r\n.";
        let whole = normalize(m, true, 1 << 20);
        for max in 1..20 {
            assert_eq!(normalize(m, true, max), whole, "max {max}");
            assert_eq!(
                normalize(m, false, max),
                normalize(m, false, 1 << 20),
                "max {max}"
            );
        }
    }

    #[test]
    fn scan_detects_8bit() {
        assert!(!scan(b"plain ascii\r\n").eight_bit);
        assert!(scan("Grüße\r\n".as_bytes()).eight_bit);
    }
}
