//! Message encoding for the client: line-ending normalisation, DATA transparency
//! (RFC 5321 §4.5.2) and the RFC 1870 size. (DSN parameter encoding, xtext and
//! utf-8-addr-xtext, is in [`crate::dsn`], shared with the server session.)

/// Facts about a message, from one pass over it ([`FactsScanner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageFacts {
    /// Octets after line-ending normalisation (every line ends in CRLF), without
    /// transparency dots or the final `.CRLF`: the RFC 1870 §3 message size.
    pub size: u64,
    /// Some octet has the high bit set (needs BODY=8BITMIME, RFC 6152).
    pub eight_bit: bool,
}

/// [`MessageFacts`] of a message read in pieces (a large one, from the store). Must agree
/// with [`Normalizer`].
#[derive(Clone, Debug, Default)]
pub struct FactsScanner {
    size: u64,
    eight_bit: bool,
    prev_cr: bool,
    last: Option<u8>,
}

impl FactsScanner {
    pub fn new() -> FactsScanner {
        FactsScanner::default()
    }

    /// The next piece of the message.
    pub fn push(&mut self, piece: &[u8]) {
        for &b in piece {
            if self.prev_cr != (b == b'\n') {
                self.size += 1; // a bare CR or LF becomes CRLF
            }
            self.eight_bit |= b >= 0x80;
            self.prev_cr = b == b'\r';
        }
        self.size += piece.len() as u64;
        if let Some(&b) = piece.last() {
            self.last = Some(b);
        }
    }

    pub fn finish(self) -> MessageFacts {
        let mut size = self.size;
        if self.prev_cr {
            size += 1; // a bare CR at the end
        }
        if self.last.is_some_and(|b| b != b'\r' && b != b'\n') {
            size += 2; // the last line gets its CRLF
        }
        MessageFacts {
            size,
            eight_bit: self.eight_bit,
        }
    }
}

/// One pass over a whole message.
pub(super) fn scan(msg: &[u8]) -> MessageFacts {
    let mut s = FactsScanner::new();
    s.push(msg);
    s.finish()
}

/// A message the driver hands over in pieces ([`super::ClientAction::NeedMessage`]): the
/// octets not yet encoded, so a large message is never whole in memory.
#[derive(Debug)]
pub(super) struct Pieces {
    window: Vec<u8>,
    given: u64,
    len: u64,
    /// Waiting for the next piece.
    pub(super) waiting: bool,
}

impl Pieces {
    pub(super) fn new(len: u64) -> Pieces {
        Pieces {
            window: Vec::new(),
            given: 0,
            len,
            waiting: false,
        }
    }

    /// Octets handed over so far (where the next piece starts).
    pub(super) fn given(&self) -> u64 {
        self.given
    }

    fn more(&self) -> bool {
        self.given < self.len
    }

    /// Enough is held to encode `chunk` octets (or all that is left).
    pub(super) fn ready(&self, chunk: usize) -> bool {
        !self.more() || self.window.len() > chunk.saturating_add(1)
    }

    /// What can be encoded now, and whether more follows: the window, less a CR at its end
    /// whose LF may start the next piece.
    pub(super) fn view(&self) -> (&[u8], bool) {
        let more = self.more();
        let n = if more && self.window.last() == Some(&b'\r') {
            self.window.len() - 1
        } else {
            self.window.len()
        };
        (&self.window[..n], more)
    }

    /// `n` octets of the view were encoded.
    pub(super) fn consumed(&mut self, n: usize) {
        self.window.drain(..n.min(self.window.len()));
    }

    /// The next piece; octets beyond the announced length are dropped.
    pub(super) fn give(&mut self, piece: &[u8]) {
        let room = usize::try_from(self.len - self.given).unwrap_or(usize::MAX);
        let piece = &piece[..piece.len().min(room)];
        self.window.extend_from_slice(piece);
        self.given += piece.len() as u64;
        self.waiting = false;
    }
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

    /// The octets of the part used so far; the next part starts at its beginning.
    pub(super) fn rebase(&mut self) -> usize {
        std::mem::take(&mut self.pos)
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
        self.fill_part(msg, out, max, false);
    }

    /// [`Normalizer::fill`] with part of a message: with `more`, the end of `msg` is not the
    /// end of the message (`msg` must not end with a CR then). [`Normalizer::rebase`] tells
    /// how much of `msg` was used.
    pub(super) fn fill_part(&mut self, msg: &[u8], out: &mut Vec<u8>, max: usize, more: bool) {
        while !self.done {
            if self.pos >= msg.len() {
                if more {
                    break;
                }
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

    /// Pieces of any size, the driver's window rules (a CR at a piece's end waits for the
    /// next) and the scanner give the same bytes and facts as the whole message.
    #[test]
    fn pieces_give_the_same_bytes_and_facts() {
        let m = b".a\r\n.\r\nb\rc\n\n.d.\r\n\r\r\n.\xc3\xa9x\r";
        for dot in [true, false] {
            let whole = normalize(m, dot, 1 << 20);
            for piece in 1..m.len() + 1 {
                for max in [1, 3, 7, 1000] {
                    let mut n = Normalizer::new(dot);
                    let mut p = Pieces::new(m.len() as u64);
                    let mut s = FactsScanner::new();
                    let mut out = Vec::new();
                    let mut guard = 0;
                    while !n.is_done() {
                        if !p.ready(max) {
                            let at = p.given() as usize;
                            let next = &m[at..(at + piece).min(m.len())];
                            s.push(next);
                            p.give(next);
                            continue;
                        }
                        let (view, more) = p.view();
                        let mut chunk = Vec::new();
                        n.fill_part(view, &mut chunk, max, more);
                        assert!(n.is_done() || chunk.len() >= max, "short chunk");
                        out.extend(chunk);
                        let used = n.rebase();
                        p.consumed(used);
                        guard += 1;
                        assert!(guard < 100_000);
                    }
                    assert_eq!(out, whole, "dot {dot} piece {piece} max {max}");
                    assert_eq!(s.finish(), scan(m));
                }
            }
        }
        assert_eq!(scan(m).size, normalize(m, false, 1 << 20).len() as u64);
    }

    #[test]
    fn scan_detects_8bit() {
        assert!(!scan(b"plain ascii\r\n").eight_bit);
        assert!(scan("Grüße\r\n".as_bytes()).eight_bit);
    }
}
