//! The command framer: client bytes in, complete commands out (sans-IO).
//!
//! An IMAP command is a line that may end in a literal announcement — `{n}`
//! (synchronising, RFC 9051 §4.3), `{n+}` (non-synchronising, RFC 7888 LITERAL+ /
//! LITERAL-) or `~{n}` / `~{n+}` (literal8, RFC 3516 BINARY) — followed by `n` octets
//! and the rest of the command, which may announce further literals. The framer finds
//! where each command ends without parsing it, so the parser ([`crate::parse`]) only ever
//! sees complete, bounded input.
//!
//! # Limits, enforced before anything is stored
//!
//! * A line longer than [`Limits::max_line`] is discarded as it arrives (never buffered).
//! * A literal is checked when announced, before a single octet of it is accepted:
//!   APPEND literals against [`Limits::max_append_literal`] (advertised as APPENDLIMIT,
//!   RFC 7889), every other literal against [`Limits::max_literal`], the command's total
//!   against [`Limits::max_command`], the number of literals against
//!   [`Limits::max_literals`], and with [`Limits::literal_minus`] non-synchronising
//!   literals against 4096 octets (RFC 7888 §4). Sizes are read saturating, so
//!   `{999999999999}` — or a size with a hundred digits — is simply "too big"; it is never
//!   mistaken for plain text and never allocated. Storage grows only with octets actually
//!   received.
//! * Parentheses outside quoted strings are counted: more than [`Limits::max_depth`]
//!   open at once fails the command (the parser bounds its recursion separately).
//!
//! # What happens to a refused command
//!
//! Its remaining bytes are consumed and discarded up to its real end, so nothing inside
//! it is ever taken for a command (no injection through literals), and the framer
//! reports [`Event::Error`] once, at that end:
//!
//! * a synchronising literal is refused before the client sends it (the session answers
//!   the tagged BAD/NO instead of `+`, RFC 9051 §4.3), so the command ends there;
//! * a non-synchronising literal is on its way: if it is no larger than the limit that
//!   applies to it, it is skipped without being stored; if it is larger (`{999999999999+}`)
//!   the stream cannot be resynchronised cheaply and the framer reports [`Event::Fatal`]:
//!   the session answers `BAD [TOOBIG]` and `BYE` and closes (RFC 7888 §4 allows both).
//!
//! # Synchronising literals
//!
//! A synchronising literal within the limits yields [`Event::SyncLiteral`]; the framer then
//! waits for the session's decision: [`Framer::accept_literal`] (and the session sends
//! `+ Ready for literal data`) or [`Framer::reject_literal`] (the session answers a
//! tagged NO/BAD and the client will not send the literal). This lets the session refuse
//! e.g. an APPEND in the wrong state before the client uploads the message.
//!
//! # Other modes
//!
//! [`Framer::expect_line`] reads one plain line (an AUTHENTICATE response, the `DONE`
//! ending IDLE); [`Framer::discard_input`] drops everything buffered (after `STARTTLS`:
//! bytes sent before the TLS handshake are never executed).
//!
//! Lines end in CRLF; a bare LF is accepted as a courtesy (commands never travel further,
//! so there is no smuggling risk) and normalised. A bare CR stays in the line, where the
//! parser rejects it.

/// Framing limits. [`Limits::default`] suits an authenticated session;
/// [`Limits::pre_auth`] keeps an unauthenticated client small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in octets including the line ending (RFC 9051 §4 asks servers to accept
    /// at least 8192; Dovecot's default is 64 KiB).
    pub max_line: usize,
    /// Largest APPEND literal (the APPENDLIMIT, RFC 7889).
    pub max_append_literal: u64,
    /// Largest literal elsewhere (LOGIN arguments, SEARCH strings, mailbox names...).
    pub max_literal: u64,
    /// Most literals in one command (MULTIAPPEND messages count one each).
    pub max_literals: usize,
    /// Largest command, lines and literals together.
    pub max_command: u64,
    /// Deepest parenthesis nesting.
    pub max_depth: usize,
    /// Non-synchronising literals only up to 4096 octets (LITERAL-, RFC 7888 §4;
    /// IMAP4rev2 servers must offer at least this). Otherwise LITERAL+.
    pub literal_minus: bool,
}

/// The RFC 7888 §4 bound on non-synchronising literals under LITERAL-.
pub const LITERAL_MINUS_MAX: u64 = 4096;

impl Default for Limits {
    /// 64 KiB lines, 25 MiB APPEND literals, 64 KiB other literals, 100 literals,
    /// commands up to 26 MiB, nesting 32, LITERAL+.
    fn default() -> Limits {
        Limits {
            max_line: 64 * 1024,
            max_append_literal: 25 * 1024 * 1024,
            max_literal: 64 * 1024,
            max_literals: 100,
            max_command: 26 * 1024 * 1024,
            max_depth: 32,
            literal_minus: false,
        }
    }
}

impl Limits {
    /// Before authentication: 40 KiB lines (an RFC 2971 ID of 30 fields fits), 8 KiB literals
    /// (enough for LOGIN), 48 KiB commands,
    /// 4 literals, nesting 8. A client that has not logged in cannot make the server
    /// buffer more than this per connection.
    pub fn pre_auth() -> Limits {
        Limits {
            // 40 KiB: an RFC 2971 ID with its 30 fields of 1024 octets fits.
            max_line: 40 * 1024,
            max_append_literal: 8 * 1024,
            max_literal: 8 * 1024,
            max_literals: 4,
            max_command: 48 * 1024,
            max_depth: 8,
            literal_minus: false,
        }
    }
}

/// Why the framer refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FrameError {
    #[error("line too long")]
    LineTooLong,
    /// A literal larger than its limit (or, under LITERAL-, a non-synchronising literal
    /// larger than 4096 octets). Answer with `[TOOBIG]` (RFC 9051 §7.1, RFC 7888 §4).
    #[error("literal too big ({size} octets, limit {limit})")]
    LiteralTooBig { size: u64, limit: u64, append: bool },
    #[error("command too long")]
    CommandTooLong,
    #[error("too many literals")]
    TooManyLiterals,
    #[error("too deeply nested")]
    TooDeep,
    /// The command does not start with a valid tag.
    #[error("invalid tag")]
    InvalidTag,
    /// An APPEND literal within the limits, but the server has no room for it now (see
    /// [`Framer::set_room`]): answer `NO [UNAVAILABLE]`, the client may retry.
    #[error("no room for a message of {size} octets now")]
    NoRoom { size: u64 },
}

/// A complete command as framed: the tag and the whole command text.
#[derive(Clone, PartialEq, Eq)]
pub struct RawCommand {
    /// The tag (validated: 1*<ASTRING-CHAR except "+">).
    pub tag: String,
    /// The command from its tag to its end, without the final line ending. Every literal
    /// is present as `{n}` / `{n+}` / `~{n}`, CRLF, then its `n` octets, less those
    /// [taken](Framer::take_literal) while it arrived.
    pub bytes: Vec<u8>,
    /// Number of literals in `bytes`.
    pub literals: usize,
    /// (literal number, octets taken from its start) for the APPEND literals the driver
    /// took while they arrived ([`Framer::take_literal`]); the parser knows them by this.
    pub taken: Vec<(usize, u64)>,
}

impl std::fmt::Debug for RawCommand {
    /// Shows at most 200 octets (a command may hold a password or a whole message).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.bytes[..self.bytes.len().min(200)];
        f.debug_struct("RawCommand")
            .field("tag", &self.tag)
            .field("bytes", &String::from_utf8_lossy(shown))
            .field("len", &self.bytes.len())
            .field("literals", &self.literals)
            .finish()
    }
}

/// What the framer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete command: parse it with [`crate::parse::parse_command`].
    Command(RawCommand),
    /// A synchronising literal within the limits was announced. Call
    /// [`Framer::accept_literal`] and send a continuation request, or
    /// [`Framer::reject_literal`] and answer the command with a tagged NO/BAD.
    SyncLiteral {
        tag: String,
        /// The command name, upper-cased (the word after the tag; `UID` for UID commands).
        verb: String,
        size: u64,
    },
    /// The line asked for with [`Framer::expect_line`], without its line ending.
    Line(Vec<u8>),
    /// A command (or the expected line) was refused and fully consumed: answer
    /// `tag BAD ...` (`* BAD` without a tag; NO for an APPEND that is too big).
    Error {
        tag: Option<String>,
        error: FrameError,
    },
    /// The stream cannot be resynchronised (a non-synchronising literal beyond the limits is
    /// arriving): answer the error, send `* BYE` and close. The framer yields nothing more.
    Fatal {
        tag: Option<String>,
        error: FrameError,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a line of a command.
    Line,
    /// Reading (`keep`) or skipping literal octets.
    Literal { remaining: u64, keep: bool },
    /// A synchronising literal awaits the session's decision.
    AwaitDecision { size: u64 },
    /// Reading one plain line (expect_line).
    PlainLine { max: usize },
    /// After a fatal error.
    Closed,
}

/// Recognising a literal announcement at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ann {
    None,
    Open,
    Digits { size: u64 },
    Plus { size: u64 },
    Closed { size: u64, non_sync: bool },
    ClosedCr { size: u64, non_sync: bool },
}

/// Bytes of the command's start kept to find its tag and name, even when the line is
/// being discarded.
const HEAD_MAX: usize = 96;

/// Input buffer capacity kept between commands; more is released.
const IDLE_BUFFER_MAX: usize = 64 * 1024;

/// The sans-IO framer. See the module documentation.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    input: Vec<u8>,
    pos: usize,
    state: State,
    /// The command so far (empty while discarding).
    cmd: Vec<u8>,
    head: Vec<u8>,
    /// Set when the command is refused: the rest is discarded and this is reported at its end.
    error: Option<FrameError>,
    /// Octets of the current line seen (stored or not).
    line_len: usize,
    /// Octets of the command so far (lines + literals, stored or not).
    total: u64,
    literals: usize,
    depth: usize,
    quoted: bool,
    escaped: bool,
    ann: Ann,
    /// Whether the first line of the command is being read.
    first_line: bool,
    /// APPEND literal octets the server has room for now ([`Framer::set_room`]).
    room: Option<u64>,
    /// The last unquoted line octets (upper case), to spot `CATENATE (`.
    tail: [u8; 10],
    /// Inside a `CATENATE (...)` list (RFC 4469) opened at this nesting depth: its TEXT
    /// literals are parts of a message, not messages (never taken, ordinary literal limit).
    catenate: Option<usize>,
    /// The APPEND literal being received, for [`Framer::take_literal`].
    taking: Taking,
}

/// Where the literal being kept starts in the command, and what was taken of the
/// command's APPEND literals.
#[derive(Debug, Default)]
struct Taking {
    /// `cmd` offset of the current literal's first octet still held.
    at: usize,
    /// The current literal is an APPEND message (only those may be taken).
    append: bool,
    taken: Vec<(usize, u64)>,
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            input: Vec::new(),
            pos: 0,
            state: State::Line,
            cmd: Vec::new(),
            head: Vec::new(),
            error: None,
            line_len: 0,
            total: 0,
            literals: 0,
            depth: 0,
            quoted: false,
            escaped: false,
            ann: Ann::None,
            first_line: true,
            room: None,
            tail: [0; 10],
            catenate: None,
            taking: Taking::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits (e.g. to [`Limits::default`] after authentication). Applies to
    /// literals announced from now on and to lines from their next octet.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Adds received octets. Feed only when the session asks for input: the buffer is not
    /// bounded here (the driver's read size bounds it).
    pub fn feed(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.input.extend_from_slice(data);
        }
    }

    /// Octets received but not yet framed.
    pub fn buffered(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Octets held: received and not yet framed, and the command being framed.
    pub fn held(&self) -> usize {
        self.buffered() + self.cmd.len() + self.head.len()
    }

    /// How many octets of APPEND literal the server has room for now (its memory for mail in
    /// transit, shared by every session); `None`: no such bound. A larger APPEND literal
    /// announced from now on is refused with [`FrameError::NoRoom`]: a synchronising one
    /// before the client sends it, a non-synchronising one skipped without being stored.
    pub fn set_room(&mut self, room: Option<u64>) {
        self.room = room;
    }

    /// Drops every buffered octet and any partial command (after STARTTLS, RFC 9051
    /// §6.2.1: nothing sent before the handshake may be executed).
    pub fn discard_input(&mut self) {
        self.input.clear();
        self.pos = 0;
        if self.state != State::Closed {
            self.reset_command();
        }
    }

    /// The next line is a plain line of at most `max` octets (including its ending),
    /// returned as [`Event::Line`] without literal processing. One-shot: afterwards the
    /// framer reads commands again. Call only between commands.
    pub fn expect_line(&mut self, max: usize) {
        if self.state != State::Closed {
            self.reset_command();
            self.state = State::PlainLine { max };
        }
    }

    /// Accepts the synchronising literal of the last [`Event::SyncLiteral`].
    pub fn accept_literal(&mut self) {
        if let State::AwaitDecision { size } = self.state {
            self.keep_literal(size);
        }
    }

    /// The literal's `size` octets follow and are kept (after its `{n}` CRLF in `cmd`).
    fn keep_literal(&mut self, size: u64) {
        self.taking.at = self.cmd.len();
        self.taking.append = self.message_literal();
        self.state = State::Literal {
            remaining: size,
            keep: true,
        };
    }

    /// Hands over the octets of the APPEND literal being received, once at least `min` are
    /// held: (its number in the command, its offset in the literal, the octets). The driver
    /// keeps them (in a spool file) so memory does not grow with the message; the command's
    /// [`RawCommand::taken`] says what was taken and [`crate::parse::parse_raw_command`]
    /// leaves it out. Other literals are never taken.
    pub fn take_literal(&mut self, min: usize) -> Option<(usize, u64, Vec<u8>)> {
        let State::Literal { keep: true, .. } = self.state else {
            return None;
        };
        let held = self.cmd.len() - self.taking.at;
        if !self.taking.append || held < min.max(1) {
            return None;
        }
        let literal = self.literals.checked_sub(1)?;
        let bytes = self.cmd.split_off(self.taking.at);
        let offset = match self.taking.taken.last_mut() {
            Some((n, taken)) if *n == literal => {
                let at = *taken;
                *taken += bytes.len() as u64;
                at
            }
            _ => {
                self.taking.taken.push((literal, bytes.len() as u64));
                0
            }
        };
        Some((literal, offset, bytes))
    }

    /// Refuses the synchronising literal of the last [`Event::SyncLiteral`]: the command
    /// is dropped (the client must not send the literal) and framing starts afresh.
    pub fn reject_literal(&mut self) {
        if let State::AwaitDecision { .. } = self.state {
            self.reset_command();
        }
    }

    /// Whether a [`Event::SyncLiteral`] awaits [`Framer::accept_literal`] or
    /// [`Framer::reject_literal`].
    pub fn awaiting_decision(&self) -> bool {
        matches!(self.state, State::AwaitDecision { .. })
    }

    /// Whether the framer is in the middle of a command (some of it received).
    pub fn in_command(&self) -> bool {
        match self.state {
            State::Line => self.line_len > 0 || !self.first_line,
            State::Literal { .. } | State::AwaitDecision { .. } => true,
            State::PlainLine { .. } => self.line_len > 0,
            State::Closed => false,
        }
    }

    fn reset_command(&mut self) {
        self.state = State::Line;
        self.cmd = Vec::new();
        self.head.clear();
        self.error = None;
        self.line_len = 0;
        self.total = 0;
        self.literals = 0;
        self.depth = 0;
        self.quoted = false;
        self.escaped = false;
        self.ann = Ann::None;
        self.first_line = true;
        self.taking = Taking::default();
        self.tail = [0; 10];
        self.catenate = None;
    }

    /// Whether a literal announced now is an APPEND message (checked against the APPENDLIMIT
    /// and the room for mail in transit, and may be taken by the driver).
    fn message_literal(&self) -> bool {
        self.catenate.is_none() && self.verb() == "APPEND"
    }

    fn compact(&mut self) {
        if self.pos == self.input.len() {
            // An idle connection keeps no large buffer (e.g. after a big APPEND).
            if self.input.capacity() > IDLE_BUFFER_MAX {
                self.input = Vec::new();
            } else {
                self.input.clear();
            }
            self.pos = 0;
        } else if self.pos > 8192 && self.pos * 2 > self.input.len() {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Frames buffered input: the next event, or `None` when more input is needed (or a
    /// decision is pending, or after [`Event::Fatal`]).
    pub fn next_event(&mut self) -> Option<Event> {
        let ev = self.run();
        self.compact();
        ev
    }

    fn run(&mut self) -> Option<Event> {
        loop {
            match self.state {
                State::Closed | State::AwaitDecision { .. } => return None,
                State::Literal { remaining, keep } => {
                    let avail = self.input.len() - self.pos;
                    if avail == 0 {
                        return None;
                    }
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(avail);
                    if keep {
                        self.cmd
                            .extend_from_slice(&self.input[self.pos..self.pos + n]);
                    }
                    self.pos += n;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Line
                    } else {
                        State::Literal { remaining, keep }
                    };
                }
                State::PlainLine { max } => return self.plain_line(max),
                State::Line => {
                    if let Some(ev) = self.scan_line() {
                        return Some(ev);
                    }
                    if self.pos == self.input.len() {
                        return None;
                    }
                }
            }
        }
    }

    fn plain_line(&mut self, max: usize) -> Option<Event> {
        while self.pos < self.input.len() {
            let b = self.input[self.pos];
            self.pos += 1;
            self.line_len += 1;
            if b == b'\n' {
                let too_long = self.line_len > max;
                let mut line = std::mem::take(&mut self.cmd);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.reset_command();
                return Some(if too_long {
                    Event::Error {
                        tag: None,
                        error: FrameError::LineTooLong,
                    }
                } else {
                    Event::Line(line)
                });
            }
            if self.line_len <= max {
                self.cmd.push(b);
            } else {
                self.cmd = Vec::new();
            }
        }
        None
    }

    /// Scans the current line; returns an event when a line end produced one. Returns
    /// `None` at the end of the input or when the state changed (literal to read).
    fn scan_line(&mut self) -> Option<Event> {
        while self.pos < self.input.len() {
            let b = self.input[self.pos];
            self.pos += 1;
            if b == b'\n' {
                return self.end_of_line();
            }
            // Blank lines between commands are ignored; the line must then start afresh.
            self.line_len += 1;
            self.total += 1;
            if self.first_line && self.head.len() < HEAD_MAX {
                self.head.push(b);
            }
            if self.error.is_none() {
                if self.line_len + 1 > self.limits.max_line {
                    // +1: the LF still to come counts too.
                    self.fail(FrameError::LineTooLong);
                } else if self.total > self.limits.max_command {
                    self.fail(FrameError::CommandTooLong);
                } else {
                    self.cmd.push(b);
                }
            }
            self.track(b);
        }
        None
    }

    fn fail(&mut self, error: FrameError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        self.cmd = Vec::new();
    }

    /// Updates quoting, nesting and literal-announcement state for one line octet.
    fn track(&mut self, b: u8) {
        if self.quoted {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.quoted = false;
            }
            self.ann = Ann::None;
            return;
        }
        if b != b'(' {
            self.tail.rotate_left(1);
            self.tail[9] = b.to_ascii_uppercase();
        }
        self.ann = match (b, self.ann) {
            (b'"', _) => {
                self.quoted = true;
                Ann::None
            }
            (b'(', _) => {
                self.depth += 1;
                if self.depth > self.limits.max_depth {
                    self.fail(FrameError::TooDeep);
                }
                if self.catenate.is_none() && &self.tail == b" CATENATE " {
                    self.catenate = Some(self.depth);
                }
                Ann::None
            }
            (b')', _) => {
                if self.catenate == Some(self.depth) {
                    self.catenate = None;
                }
                self.depth = self.depth.saturating_sub(1);
                Ann::None
            }
            (b'{', _) => Ann::Open,
            (b'0'..=b'9', Ann::Open) => Ann::Digits {
                size: u64::from(b - b'0'),
            },
            (b'0'..=b'9', Ann::Digits { size }) => Ann::Digits {
                size: size.saturating_mul(10).saturating_add(u64::from(b - b'0')),
            },
            (b'+', Ann::Digits { size }) => Ann::Plus { size },
            (b'}', Ann::Digits { size }) => Ann::Closed {
                size,
                non_sync: false,
            },
            (b'}', Ann::Plus { size }) => Ann::Closed {
                size,
                non_sync: true,
            },
            (b'\r', Ann::Closed { size, non_sync }) => Ann::ClosedCr { size, non_sync },
            _ => Ann::None,
        };
    }

    /// The first line as far as kept, without the CR of its CRLF.
    fn head(&self) -> &[u8] {
        self.head.strip_suffix(b"\r").unwrap_or(&self.head)
    }

    fn tag(&self) -> Option<String> {
        let head = self.head();
        let end = head.iter().position(|&b| b == b' ').unwrap_or(head.len());
        let tag = &head[..end];
        // A tag filling the whole head may continue beyond it: refuse rather than guess.
        if end == HEAD_MAX || !is_valid_tag(tag) {
            return None;
        }
        Some(String::from_utf8_lossy(tag).into_owned())
    }

    fn verb(&self) -> String {
        let mut words = self.head().split(|&b| b == b' ');
        words.next();
        let verb = words.next().unwrap_or_default();
        String::from_utf8_lossy(verb).to_ascii_uppercase()
    }

    fn end_of_line(&mut self) -> Option<Event> {
        if self.first_line && (self.line_len == 0 || self.head == b"\r") {
            // A blank line between commands: ignored.
            self.reset_command();
            return None;
        }
        if self.first_line && self.error.is_none() && self.tag().is_none() {
            self.fail(FrameError::InvalidTag);
        }
        // Strip the CR of CRLF from what was stored.
        if self.error.is_none() && self.cmd.last() == Some(&b'\r') {
            self.cmd.pop();
        }
        let ann = self.ann;
        self.first_line = false;
        self.line_len = 0;
        self.quoted = false;
        self.escaped = false;
        self.ann = Ann::None;
        let (size, non_sync) = match ann {
            Ann::Closed { size, non_sync } | Ann::ClosedCr { size, non_sync } => (size, non_sync),
            _ => return Some(self.finish()),
        };
        // A literal is announced.
        let append = self.message_literal();
        let limit = if append {
            self.limits.max_append_literal
        } else {
            self.limits.max_literal
        };
        if self.error.is_none() {
            self.literals += 1;
            let remaining_command = self.limits.max_command.saturating_sub(self.total + 2);
            if self.literals > self.limits.max_literals {
                self.fail(FrameError::TooManyLiterals);
            } else if size > limit
                || (non_sync && self.limits.literal_minus && size > LITERAL_MINUS_MAX)
            {
                let limit = if non_sync && self.limits.literal_minus {
                    limit.min(LITERAL_MINUS_MAX)
                } else {
                    limit
                };
                self.fail(FrameError::LiteralTooBig {
                    size,
                    limit,
                    append,
                });
            } else if size > remaining_command {
                self.fail(FrameError::CommandTooLong);
            } else if append && self.room.is_some_and(|room| size > room) {
                self.fail(FrameError::NoRoom { size });
            }
        }
        self.total = self.total.saturating_add(2).saturating_add(size);
        match (self.error, non_sync) {
            (None, false) => {
                self.cmd.extend_from_slice(b"\r\n");
                self.state = State::AwaitDecision { size };
                Some(Event::SyncLiteral {
                    tag: self.tag().unwrap_or_default(),
                    verb: self.verb(),
                    size,
                })
            }
            (None, true) => {
                self.cmd.extend_from_slice(b"\r\n");
                self.keep_literal(size);
                None
            }
            // Refused, and the client waits for a continuation that will not come.
            (Some(_), false) => Some(self.finish()),
            // Refused, and the literal is on its way: skip it if that is affordable.
            (Some(error), true) => {
                if size <= limit {
                    self.state = State::Literal {
                        remaining: size,
                        keep: false,
                    };
                    None
                } else {
                    let tag = self.tag();
                    self.reset_command();
                    self.state = State::Closed;
                    self.input = Vec::new();
                    self.pos = 0;
                    Some(Event::Fatal { tag, error })
                }
            }
        }
    }

    /// The command ended: report it (or its error) and start the next one.
    fn finish(&mut self) -> Event {
        let ev = match self.error {
            Some(error) => Event::Error {
                tag: self.tag(),
                error,
            },
            None => Event::Command(RawCommand {
                tag: self.tag().unwrap_or_default(),
                bytes: std::mem::take(&mut self.cmd),
                literals: self.literals,
                taken: std::mem::take(&mut self.taking.taken),
            }),
        };
        self.reset_command();
        ev
    }
}

/// `tag = 1*<any ASTRING-CHAR except "+">` (RFC 9051 §9).
pub fn is_valid_tag(tag: &[u8]) -> bool {
    !tag.is_empty() && tag.iter().all(|&b| is_astring_char(b) && b != b'+')
}

/// `ATOM-CHAR`: any CHAR except atom-specials (`(` `)` `{` SP CTL `%` `*` `"` `\` `]`).
pub(crate) fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

#[cfg(test)]
mod tests;
