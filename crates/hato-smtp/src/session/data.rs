//! The DATA phase: RFC 5321 §4.1.1.4 (end of data is `CRLF "." CRLF`), §4.5.2
//! (dot transparency), §2.3.8 (bare CR and LF), §4.5.3.1.6 (text line length) and
//! RFC 1870 (message size).
//!
//! # Smuggling resistance
//!
//! The receiver is a byte-level state machine in which **only** the exact sequence
//! `CR LF "." CR LF` ends the data (the start of the data counts as "after CR LF").
//! A bare LF or a bare CR never brings the machine back to the start-of-line state,
//! so none of `\n.\n`, `\r\n.\n`, `\n.\r\n`, `\r.\r`, `\r\n.\r`, ... can end the data,
//! whatever [`BareLinePolicy`] is configured:
//!
//! * [`BareLinePolicy::Reject`]: the message is consumed up to the real end and then
//!   rejected (`554 5.5.0`).
//! * [`BareLinePolicy::Normalize`]: every bare CR or bare LF is stored as CRLF. A
//!   `.` following such a normalised line break is *not* treated as the start of a
//!   line (no un-stuffing, never an end marker).
//!
//! # Bounded memory
//!
//! The body is stored only while the message can still be accepted: once it exceeds
//! `max_message_size`, contains an over-long line, or (policy `Reject`) a bare line
//! ending, the stored bytes are dropped and the rest of the message is only counted.

use super::BareLinePolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// After CRLF (or at the very start of the data).
    LineStart,
    /// A "." at the start of a line.
    Dot,
    /// "." CR at the start of a line.
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR inside a line (or an empty line), LF not yet seen.
    Cr,
}

/// Why the data was refused (checked in this order at the end of the data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DataRejection {
    /// More than `max_message_size` octets: 552 5.3.4.
    TooBig,
    /// Bare CR or LF with [`BareLinePolicy::Reject`]: 554 5.5.0.
    BareLineEnding,
    /// A line longer than `max_text_line` (including CRLF): 500 5.5.2.
    LineTooLong,
    /// The server had no room for it (its memory budget for messages in transit): 452 4.3.1.
    NoRoom,
}

/// Incremental DATA receiver.
#[derive(Debug)]
pub(super) struct DataReceiver {
    state: State,
    policy: BareLinePolicy,
    max_size: usize,
    max_line: usize,
    /// Octets of the current line so far, as transmitted (a stuffing dot excluded).
    line_len: usize,
    /// Message octets seen (after un-stuffing/normalisation), stored or not.
    size: u64,
    too_big: bool,
    bare: bool,
    long_line: bool,
    no_room: bool,
    body: Vec<u8>,
    /// Message octets the driver took out of `body` so far ([`DataReceiver::take`]).
    taken: u64,
}

impl DataReceiver {
    pub(super) fn new(policy: BareLinePolicy, max_size: usize, max_line: usize) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            policy,
            max_size,
            max_line,
            line_len: 0,
            size: 0,
            too_big: false,
            bare: false,
            long_line: false,
            no_room: false,
            body: Vec::new(),
            taken: 0,
        }
    }

    /// Hands over the octets held so far (the driver spools them): their offset in the message
    /// and the octets. The receiver goes on from an empty buffer.
    pub(super) fn take(&mut self) -> (u64, Vec<u8>) {
        let at = self.taken;
        let body = std::mem::take(&mut self.body);
        self.taken += body.len() as u64;
        (at, body)
    }

    /// Is the message already known to be refused?
    fn refused(&self) -> bool {
        self.too_big
            || self.long_line
            || self.no_room
            || (self.bare && self.policy == BareLinePolicy::Reject)
    }

    /// The server has no room for this message: drop what is held, count the rest.
    pub(super) fn no_room(&mut self) {
        self.no_room = true;
        self.drop_body_if_refused();
    }

    /// Frees the stored body once the message is known to be refused.
    fn drop_body_if_refused(&mut self) {
        if self.refused() && self.body.capacity() > 0 {
            self.body = Vec::new();
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > self.max_size as u64 {
            self.too_big = true;
        }
        if self.refused() {
            self.drop_body_if_refused();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }

    fn count(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.max_line {
            self.long_line = true;
            self.drop_body_if_refused();
        }
    }

    /// A bare CR or bare LF (already counted).
    fn bare_line_ending(&mut self) {
        self.bare = true;
        self.state = State::Mid;
        match self.policy {
            BareLinePolicy::Reject => self.drop_body_if_refused(),
            BareLinePolicy::Normalize => {
                self.emit(b"\r\n");
                self.line_len = 0;
            }
        }
    }

    /// Consumes bytes from `input`. Returns how many were consumed and whether the
    /// end-of-data sequence was seen (the bytes after it are not consumed).
    pub(super) fn push(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Mid => {
                    let rest = &input[i..];
                    let n = text_run(rest);
                    if n > 0 {
                        self.count(n);
                        self.emit(&rest[..n]);
                        i += n;
                        continue;
                    }
                    i += 1;
                    self.count(1);
                    if b == b'\r' {
                        self.state = State::Cr;
                    } else {
                        self.bare_line_ending(); // bare LF
                    }
                }
                State::LineStart => {
                    if b == b'.' {
                        // Possibly a stuffing dot; not counted in the line length.
                        i += 1;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    if b == b'\r' {
                        i += 1;
                        self.count(1);
                        self.state = State::DotCr;
                    } else {
                        // The leading dot was stuffing: drop it, reprocess `b`.
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        return (i + 1, true);
                    }
                    // ".\r" followed by something else: the dot was stuffing and the
                    // CR is bare. Reprocess `b` inside the line.
                    self.bare_line_ending();
                }
                State::Cr => {
                    if b == b'\n' {
                        i += 1;
                        self.count(1);
                        self.emit(b"\r\n");
                        self.line_len = 0;
                        self.state = State::LineStart;
                    } else {
                        self.bare_line_ending(); // bare CR; reprocess `b`
                    }
                }
            }
        }
        (i, false)
    }

    /// Message octets received so far (after un-stuffing).
    #[cfg(test)]
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// Octets currently held in memory.
    pub(super) fn stored(&self) -> usize {
        self.body.len()
    }

    /// The accepted body (the octets after those [taken](DataReceiver::take), with their
    /// offset), or why it is refused. Call after `push` reported the end.
    pub(super) fn finish(self) -> Result<(u64, Vec<u8>), DataRejection> {
        if self.too_big {
            Err(DataRejection::TooBig)
        } else if self.bare && self.policy == BareLinePolicy::Reject {
            Err(DataRejection::BareLineEnding)
        } else if self.long_line {
            Err(DataRejection::LineTooLong)
        } else if self.no_room {
            Err(DataRejection::NoRoom)
        } else {
            Ok((self.taken, self.body))
        }
    }
}

/// Octets at the start of `bytes` before any CR or LF.
fn text_run(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .unwrap_or(bytes.len())
}

/// The BDAT chunks of one message (RFC 3030), brought to canonical form as they arrive: every
/// line ends with CRLF, including the last. BINARYMIME is not offered, so a chunked message is
/// text like a DATA one: a bare CR or LF is refused under [`BareLinePolicy::Reject`] and becomes
/// CRLF under [`BareLinePolicy::Normalize`], and the stored form is canonical (so sizes reported
/// later by POP3/IMAP equal the stored length). A CR that ends one chunk may meet its LF in the
/// next.
#[derive(Debug)]
pub(super) struct Chunks {
    policy: BareLinePolicy,
    body: Vec<u8>,
    /// Octets received in chunks, as sent (the size limit counts these).
    received: u64,
    /// Canonical octets the driver took out of `body` ([`Chunks::take`]).
    taken: u64,
    /// The last chunk octet was a CR whose LF may start the next chunk.
    pending_cr: bool,
    bare: bool,
    /// The canonical body so far ends with CRLF (or is empty).
    ends_crlf: bool,
    /// The server has no room for the message: held octets dropped, the rest only counted.
    no_room: bool,
}

impl Chunks {
    pub(super) fn new(policy: BareLinePolicy) -> Chunks {
        Chunks {
            policy,
            body: Vec::new(),
            received: 0,
            taken: 0,
            pending_cr: false,
            bare: false,
            ends_crlf: true,
            no_room: false,
        }
    }

    /// Octets received so far, as sent.
    pub(super) fn received(&self) -> u64 {
        self.received
    }

    /// Octets held in memory.
    pub(super) fn stored(&self) -> usize {
        self.body.len()
    }

    /// Already known to be refused: nothing more is kept.
    fn refused(&self) -> bool {
        self.no_room || (self.bare && self.policy == BareLinePolicy::Reject)
    }

    pub(super) fn no_room(&mut self) {
        self.no_room = true;
        self.body = Vec::new();
    }

    pub(super) fn is_no_room(&self) -> bool {
        self.no_room
    }

    /// Part of a chunk.
    pub(super) fn push(&mut self, input: &[u8]) {
        self.received = self.received.saturating_add(input.len() as u64);
        let mut i = 0;
        if self.pending_cr && !input.is_empty() {
            self.pending_cr = false;
            if input[0] == b'\n' {
                self.line_end(false);
                i = 1;
            } else {
                self.line_end(true);
            }
        }
        while i < input.len() {
            let rest = &input[i..];
            let n = text_run(rest);
            if n > 0 {
                self.ends_crlf = false;
                if !self.refused() {
                    self.body.extend_from_slice(&rest[..n]);
                }
                i += n;
                continue;
            }
            match (rest[0], rest.get(1)) {
                (b'\r', Some(b'\n')) => {
                    self.line_end(false);
                    i += 2;
                }
                (b'\r', None) => {
                    self.pending_cr = true;
                    i += 1;
                }
                _ => {
                    self.line_end(true);
                    i += 1;
                }
            }
        }
    }

    /// A line break: CRLF, or a bare CR or LF (stored as CRLF under `Normalize`).
    fn line_end(&mut self, bare: bool) {
        if bare {
            self.bare = true;
            if self.refused() {
                self.body = Vec::new();
            }
        }
        self.ends_crlf = true;
        if !self.refused() {
            self.body.extend_from_slice(b"\r\n");
        }
    }

    /// Hands over the canonical octets held so far, with their offset in the message.
    pub(super) fn take(&mut self) -> (u64, Vec<u8>) {
        let at = self.taken;
        let body = std::mem::take(&mut self.body);
        self.taken += body.len() as u64;
        (at, body)
    }

    /// After the LAST chunk: the rest of the canonical body with its offset, or why the
    /// message is refused.
    pub(super) fn finish(mut self) -> Result<(u64, Vec<u8>), DataRejection> {
        if self.pending_cr {
            self.pending_cr = false;
            self.line_end(true);
        }
        if self.no_room {
            return Err(DataRejection::NoRoom);
        }
        if self.bare && self.policy == BareLinePolicy::Reject {
            return Err(DataRejection::BareLineEnding);
        }
        if !self.ends_crlf {
            self.body.extend_from_slice(b"\r\n");
        }
        Ok((self.taken, self.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(policy: BareLinePolicy, input: &[u8]) -> (usize, bool, DataReceiver) {
        let mut rx = DataReceiver::new(policy, 1 << 20, 1000);
        let (n, done) = rx.push(input);
        (n, done, rx)
    }

    fn body(policy: BareLinePolicy, input: &[u8]) -> Result<Vec<u8>, DataRejection> {
        let (n, done, rx) = run(policy, input);
        assert!(done, "no end seen in {input:?}");
        assert_eq!(n, input.len());
        rx.finish().map(|(at, b)| {
            assert_eq!(at, 0);
            b
        })
    }

    /// A BDAT body through [`Chunks`]: in one chunk, and cut in two at every point with the
    /// driver taking the first part in between; every way gives the same result.
    fn canonical_lines(body: Vec<u8>, policy: BareLinePolicy) -> Result<Vec<u8>, DataRejection> {
        let mut c = Chunks::new(policy);
        c.push(&body);
        let whole = c.finish().map(|(_, b)| b);
        for cut in 0..=body.len() {
            let mut c = Chunks::new(policy);
            c.push(&body[..cut]);
            let (at, first) = c.take();
            assert_eq!(at, 0);
            c.push(&body[cut..]);
            assert_eq!(c.received(), body.len() as u64);
            let r = c.finish().map(|(at, rest)| {
                assert_eq!(at, first.len() as u64);
                [first, rest].concat()
            });
            assert_eq!(r, whole, "cut at {cut} of {body:?}");
        }
        whole
    }

    #[test]
    fn simple_message() {
        assert_eq!(
            body(BareLinePolicy::Reject, b"Subject: x\r\n\r\nhello\r\n.\r\n").unwrap(),
            b"Subject: x\r\n\r\nhello\r\n"
        );
    }

    #[test]
    fn empty_message() {
        assert_eq!(body(BareLinePolicy::Reject, b".\r\n").unwrap(), b"");
        assert_eq!(body(BareLinePolicy::Reject, b"\r\n.\r\n").unwrap(), b"\r\n");
    }

    #[test]
    fn dot_unstuffing() {
        assert_eq!(
            body(BareLinePolicy::Reject, b"..\r\n...x\r\n.y\r\na.b\r\n.\r\n").unwrap(),
            b".\r\n..x\r\ny\r\na.b\r\n"
        );
    }

    #[test]
    fn stops_exactly_at_end() {
        let (n, done, _) = run(BareLinePolicy::Reject, b"a\r\n.\r\nQUIT\r\n");
        assert!(done);
        assert_eq!(n, 6);
    }

    #[test]
    fn smuggling_sequences_never_end_data() {
        for seq in [
            &b"a\n.\nb"[..],
            b"a\r\n.\nb",
            b"a\n.\r\nb",
            b"a\r.\rb",
            b"a\r\n.\rb",
            b"a\r.\r\nb",
            b"a\r\n.\r\rb",
            b".\n",
            b".\r.\r\n",
            b"\n.\r\n",
            b"\r\n\n.\r\n",
            b"a\r\r\n.\nb",
        ] {
            for policy in [BareLinePolicy::Reject, BareLinePolicy::Normalize] {
                let (n, done, _) = run(policy, seq);
                assert!(!done, "{seq:?} ended the data ({policy:?})");
                assert_eq!(n, seq.len());
            }
        }
    }

    #[test]
    fn reject_policy() {
        let input = b"a\nb\r\n.\nc\r\n.\r\n";
        assert_eq!(
            body(BareLinePolicy::Reject, input),
            Err(DataRejection::BareLineEnding)
        );
        assert_eq!(
            body(BareLinePolicy::Reject, b"a\rb\r\n.\r\n"),
            Err(DataRejection::BareLineEnding)
        );
    }

    #[test]
    fn bdat_bodies_are_made_canonical() {
        use BareLinePolicy::*;
        let bare = Err(DataRejection::BareLineEnding);
        for (input, policy, expected) in [
            (&b"a\r\nb\r\n"[..], Reject, Ok(&b"a\r\nb\r\n"[..])),
            (b"a\r\nb", Reject, Ok(b"a\r\nb\r\n")),
            (b"", Reject, Ok(b"")),
            (b"a\nb\r\n", Reject, bare),
            (b"a\r", Reject, bare),
            (b"a\nb\rc\r\nd", Normalize, Ok(b"a\r\nb\r\nc\r\nd\r\n")),
            // A CR ending one chunk and the LF starting the next are one line break.
            (b"a\r\n\r\nb\r", Normalize, Ok(b"a\r\n\r\nb\r\n")),
            (b"\n\r\r\n", Normalize, Ok(b"\r\n\r\n\r\n")),
        ] {
            let got = canonical_lines(input.to_vec(), policy);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                expected,
                "{input:?} {policy:?}"
            );
        }
    }

    #[test]
    fn normalize_policy() {
        assert_eq!(
            body(BareLinePolicy::Normalize, b"a\nb\rc\r\n.\nd\r\n.\r\n").unwrap(),
            b"a\r\nb\r\nc\r\n\r\nd\r\n"
        );
        // A "." after a normalised line break is data, not stuffing or an end.
        assert_eq!(
            body(BareLinePolicy::Normalize, b"x\n.\r\n.\r\n").unwrap(),
            b"x\r\n.\r\n"
        );
        assert_eq!(
            body(BareLinePolicy::Normalize, b"x\r\n.\rz\r\n.\r\n").unwrap(),
            b"x\r\n\r\nz\r\n"
        );
    }

    #[test]
    fn size_limit_drops_body() {
        let mut rx = DataReceiver::new(BareLinePolicy::Reject, 10, 1000);
        let (_, done) = rx.push(b"0123456789\r\n");
        assert!(!done);
        assert_eq!(rx.stored(), 0);
        assert_eq!(rx.size(), 12);
        let (_, done) = rx.push(&[b'x'; 100]);
        assert!(!done);
        assert_eq!(rx.stored(), 0);
        let (_, done) = rx.push(b"\r\n.\r\n");
        assert!(done);
        assert_eq!(rx.finish().map(|(_, b)| b), Err(DataRejection::TooBig));

        let mut rx = DataReceiver::new(BareLinePolicy::Reject, 10, 1000);
        assert!(rx.push(b"01234567\r\n.\r\n").1);
        assert_eq!(rx.finish().map(|(_, b)| b).unwrap(), b"01234567\r\n");
    }

    #[test]
    fn line_length_limit() {
        let mut ok = vec![b'x'; 998];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(body(BareLinePolicy::Reject, &ok).unwrap().len(), 1000);
        // a stuffed dot does not count
        let mut ok = vec![b'.'; 999];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(body(BareLinePolicy::Reject, &ok).unwrap().len(), 1000);
        let mut long = vec![b'x'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(
            body(BareLinePolicy::Reject, &long),
            Err(DataRejection::LineTooLong)
        );
    }

    #[test]
    fn rejection_priority() {
        let mut rx = DataReceiver::new(BareLinePolicy::Reject, 5, 4);
        assert!(rx.push(b"abcdefgh\n\r\n.\r\n").1);
        assert_eq!(rx.finish().map(|(_, b)| b), Err(DataRejection::TooBig));
        let mut rx = DataReceiver::new(BareLinePolicy::Reject, 100, 4);
        assert!(rx.push(b"abcdefgh\n\r\n.\r\n").1);
        assert_eq!(
            rx.finish().map(|(_, b)| b),
            Err(DataRejection::BareLineEnding)
        );
    }

    #[test]
    fn split_anywhere() {
        let input = b"..a\r\nb\r\n.\r\n";
        for split in 0..=input.len() {
            let mut rx = DataReceiver::new(BareLinePolicy::Reject, 100, 100);
            let (n1, d1) = rx.push(&input[..split]);
            assert!(!d1 || split == input.len());
            assert_eq!(n1, split);
            let (n2, d2) = rx.push(&input[split..]);
            assert!(d1 || d2);
            assert_eq!(n1 + n2, input.len());
            assert_eq!(rx.finish().map(|(_, b)| b).unwrap(), b".a\r\nb\r\n");
        }
    }

    #[test]
    fn taken_octets_leave_the_receiver() {
        let input = b"..a\r\nb\r\n.\r\n";
        for split in 0..input.len() {
            let mut rx = DataReceiver::new(BareLinePolicy::Reject, 100, 100);
            let (n1, _) = rx.push(&input[..split]);
            let (at, first) = rx.take();
            assert_eq!((at, rx.stored()), (0, 0));
            let (n2, done) = rx.push(&input[split..]);
            assert!(done);
            assert_eq!(n1 + n2, input.len());
            let (at, rest) = rx.finish().unwrap();
            assert_eq!(at, first.len() as u64);
            assert_eq!([first, rest].concat(), b".a\r\nb\r\n");
        }
    }
}
