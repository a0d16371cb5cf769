//! The command parser: a hand-written recursive-descent parser over one framed command
//! ([`crate::framer::RawCommand`]) producing a typed [`Command`].
//!
//! Grammar: RFC 9051 §9 (IMAP4rev2) and RFC 3501 §9 (IMAP4rev1), with RFC 2971 (ID),
//! RFC 3502 (MULTIAPPEND), RFC 3516 (BINARY, `literal8`), RFC 4315 (UID EXPUNGE),
//! RFC 4466 (command modifiers), RFC 4731 (ESEARCH `RETURN`), RFC 4959 (SASL-IR),
//! RFC 5032 (OLDER/YOUNGER), RFC 5161 (ENABLE), RFC 5182 (`$`), RFC 5258 / 5819 / 6154
//! (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, CREATE-SPECIAL-USE), RFC 6851 (MOVE),
//! RFC 7162 (CONDSTORE/QRESYNC), RFC 7888 (`{n+}`), RFC 9208 (GETQUOTA, GETQUOTAROOT,
//! SETQUOTA §4.1.1–§4.1.3; STATUS DELETED-STORAGE §4.1.4).
//!
//! The input is complete and bounded (the framer saw to that), so the parser works on a
//! slice and never waits. Choices:
//!
//! * Keywords are case-insensitive; exactly one SP separates tokens (no leniency about
//!   extra spaces: RFC 9051 §9 is strict, and so are the major servers).
//! * Recursion (SEARCH `NOT`/`OR`/parentheses) is bounded by [`ParseOptions::max_depth`],
//!   so no input can exhaust the stack.
//! * Strings (quoted, literal) must not contain NUL; quoted strings must not contain CR or
//!   LF (they cannot: the framer ends lines there). An APPEND message literal may contain
//!   NUL (leniency for messages copied from other servers) and so may `literal8`.
//! * SEARCH accepts only `CHARSET UTF-8` / `US-ASCII` (others: [`ParseErrorKind::BadCharset`],
//!   answered `NO [BADCHARSET (UTF-8)]`); search strings must be UTF-8.
//! * `VANISHED` is accepted only in UID FETCH with CHANGEDSINCE (RFC 7162 §3.2.6);
//!   `RECURSIVEMATCH` only with another selection option (RFC 5258 §3.1); QRESYNC
//!   known-uids must not contain `*`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::command::*;
use crate::datetime::{Date, DateTime, month_from_name};
use crate::flag::Flag;
use crate::framer::{is_astring_char, is_atom_char, is_valid_tag};
use crate::mailbox::{decode_mailbox, decode_pattern};
use crate::sequence::{SeqNo, SeqRange, SequenceSet};

/// How to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Mailbox names are UTF-8 (the client enabled IMAP4rev2 or UTF8=ACCEPT); otherwise
    /// modified UTF-7 (see [`crate::mailbox`]).
    pub utf8: bool,
    /// Deepest recursion of SEARCH keys (`NOT`, `OR`, parentheses).
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> ParseOptions {
        ParseOptions {
            utf8: false,
            max_depth: 32,
        }
    }
}

/// Why a command was not parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The tag, if the command had a valid one (answer `tag BAD`, else `* BAD`).
    pub tag: Option<String>,
    pub kind: ParseErrorKind,
    /// A short explanation for the response text (never echoes client data).
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// The command is malformed: `BAD`.
    Syntax,
    /// No such command: `BAD`.
    UnknownCommand,
    /// SEARCH with an unsupported charset: `NO [BADCHARSET (UTF-8)]` (RFC 9051 §6.4.4).
    BadCharset,
    /// Nested too deeply: `BAD`.
    TooDeep,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses one framed command (the bytes of [`crate::framer::RawCommand`]).
pub fn parse_command(input: &[u8], opts: &ParseOptions) -> Result<Command> {
    let mut p = Parser {
        buf: input,
        pos: 0,
        opts: *opts,
        depth: 0,
        tag: None,
    };
    let tag_end = input.iter().position(|&b| b == b' ').unwrap_or(input.len());
    if !is_valid_tag(&input[..tag_end]) {
        return Err(p.error(ParseErrorKind::Syntax, "invalid tag"));
    }
    let tag = String::from_utf8_lossy(&input[..tag_end]).into_owned();
    p.tag = Some(tag.clone());
    p.pos = tag_end;
    if p.eof() {
        return Err(p.syntax("missing command"));
    }
    p.sp()?;
    let body = p.command()?;
    if !p.eof() {
        return Err(p.syntax("unexpected characters at end of command"));
    }
    Ok(Command { tag, body })
}

/// The longest field name and value of an ID parameter list (RFC 2971 §3.3).
const ID_MAX_FIELD: usize = 30;
const ID_MAX_VALUE: usize = 1024;
const ID_MAX_PAIRS: usize = 30;

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    opts: ParseOptions,
    depth: usize,
    tag: Option<String>,
}

impl<'a> Parser<'a> {
    // ---- errors ---------------------------------------------------------------------

    fn error(&self, kind: ParseErrorKind, message: &str) -> ParseError {
        ParseError {
            tag: self.tag.clone(),
            kind,
            message: message.to_string(),
        }
    }

    fn syntax(&self, message: &str) -> ParseError {
        self.error(ParseErrorKind::Syntax, message)
    }

    // ---- low-level ------------------------------------------------------------------

    fn eof(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn byte(&mut self, b: u8, what: &str) -> Result<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(what))
        }
    }

    fn sp(&mut self) -> Result<()> {
        self.byte(b' ', "expected a space")
    }

    fn end(&self) -> Result<()> {
        if self.eof() {
            Ok(())
        } else {
            Err(self.syntax("unexpected arguments"))
        }
    }

    /// Consumes `kw` (case-insensitive) if it is next, followed by a token boundary.
    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        if end <= self.buf.len()
            && self.buf[self.pos..end].eq_ignore_ascii_case(kw.as_bytes())
            && self.buf.get(end).is_none_or(|&b| !is_atom_char(b))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// A run of octets satisfying `ok` (possibly empty).
    fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&ok) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// `atom = 1*ATOM-CHAR`.
    fn atom(&mut self) -> Result<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            Err(self.syntax("expected an atom"))
        } else {
            Ok(a)
        }
    }

    /// An atom as upper-case text (command names, keywords).
    fn word(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase())
    }

    fn digits(&mut self) -> Result<&'a [u8]> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            Err(self.syntax("expected a number"))
        } else {
            Ok(d)
        }
    }

    /// `number` (32-bit unsigned).
    fn number(&mut self) -> Result<u32> {
        let d = self.digits()?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.syntax("number out of range"))
    }

    fn nz_number(&mut self) -> Result<u32> {
        match self.number()? {
            0 => Err(self.syntax("zero is not allowed here")),
            n => Ok(n),
        }
    }

    /// `number64` (RFC 9051: 0 ..= 2^63-1).
    fn number64(&mut self) -> Result<u64> {
        let d = self.digits()?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| self.syntax("number out of range"))
    }

    /// `mod-sequence-value` (non-zero).
    fn modseq(&mut self) -> Result<u64> {
        match self.number64()? {
            0 => Err(self.syntax("mod-sequence must not be zero")),
            n => Ok(n),
        }
    }

    // ---- strings --------------------------------------------------------------------

    /// `quoted` (RFC 9051 allows UTF-8 in quoted strings).
    fn quoted(&mut self) -> Result<Vec<u8>> {
        self.byte(b'"', "expected a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.syntax("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err(self.syntax("invalid escape in quoted string")),
                    }
                }
                Some(0 | b'\r' | b'\n') => {
                    return Err(self.syntax("invalid character in quoted string"));
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}` / `{n+}` CRLF, then n octets; with `tilde`, `~{n}` (literal8). Returns the data.
    fn literal_raw(&mut self, tilde: bool) -> Result<&'a [u8]> {
        if tilde {
            self.byte(b'~', "expected literal8")?;
        }
        self.byte(b'{', "expected a literal")?;
        let n = self.number64()?;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        self.byte(b'}', "malformed literal")?;
        self.byte(b'\r', "malformed literal")?;
        self.byte(b'\n', "malformed literal")?;
        let n = usize::try_from(n).map_err(|_| self.syntax("literal too long"))?;
        if self.buf.len() - self.pos < n {
            return Err(self.syntax("literal shorter than announced"));
        }
        let data = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(data)
    }

    fn literal(&mut self) -> Result<Vec<u8>> {
        let data = self.literal_raw(false)?;
        if data.contains(&0) {
            return Err(self.syntax("NUL in literal"));
        }
        Ok(data.to_vec())
    }

    /// `string = quoted / literal`.
    fn string(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(self.syntax("expected a string")),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`.
    fn astring(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    Err(self.syntax("expected a string"))
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// `nstring = string / NIL`.
    fn nstring(&mut self) -> Result<Option<Vec<u8>>> {
        if self.keyword("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    fn utf8(&self, bytes: Vec<u8>) -> Result<String> {
        String::from_utf8(bytes).map_err(|_| self.syntax("string is not valid UTF-8"))
    }

    fn astring_utf8(&mut self) -> Result<String> {
        let s = self.astring()?;
        self.utf8(s)
    }

    fn mailbox(&mut self) -> Result<String> {
        let raw = self.astring()?;
        decode_mailbox(&raw, self.opts.utf8).map_err(|e| self.syntax(&e.to_string()))
    }

    /// `list-mailbox = 1*list-char / string` (list-char adds `%`, `*` and `]` to ATOM-CHAR).
    fn list_mailbox(&mut self) -> Result<String> {
        let raw = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let a = self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*');
                if a.is_empty() {
                    return Err(self.syntax("expected a mailbox pattern"));
                }
                a.to_vec()
            }
        };
        decode_pattern(&raw, self.opts.utf8).map_err(|e| self.syntax(&e.to_string()))
    }

    /// A reference name (LIST/LSUB): a mailbox name that may be empty, not canonicalised.
    fn reference(&mut self) -> Result<String> {
        let raw = self.astring()?;
        decode_pattern(&raw, self.opts.utf8).map_err(|e| self.syntax(&e.to_string()))
    }

    // ---- flags, dates, sets -----------------------------------------------------------

    /// `flag` (no `\*`, which only servers send).
    fn flag(&mut self) -> Result<Flag> {
        let backslash = self.peek() == Some(b'\\');
        if backslash {
            self.pos += 1;
        }
        let a = self.atom()?;
        let text = String::from_utf8_lossy(a);
        Ok(if backslash {
            Flag::from_wire(&format!("\\{text}"))
        } else {
            Flag::Keyword(text.into_owned())
        })
    }

    /// `flag-list = "(" [flag *(SP flag)] ")"`.
    fn flag_list(&mut self) -> Result<Vec<Flag>> {
        self.byte(b'(', "expected a flag list")?;
        let mut flags = Vec::new();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(flags);
                }
                _ => self.sp()?,
            }
        }
    }

    fn month(&mut self) -> Result<u8> {
        let end = (self.pos + 3).min(self.buf.len());
        let m = month_from_name(&self.buf[self.pos..end])
            .ok_or_else(|| self.syntax("invalid month"))?;
        self.pos = end;
        Ok(m)
    }

    fn year(&mut self) -> Result<u16> {
        let d = self.digits()?;
        if d.len() != 4 {
            return Err(self.syntax("invalid year"));
        }
        Ok(std::str::from_utf8(d).unwrap_or("0").parse().unwrap_or(0))
    }

    /// `date = date-text / DQUOTE date-text DQUOTE`; `date-text = date-day "-" date-month "-" date-year`.
    fn date(&mut self) -> Result<Date> {
        let quoted = self.peek() == Some(b'"');
        if quoted {
            self.pos += 1;
        }
        let d = self.digits()?;
        if d.len() > 2 {
            return Err(self.syntax("invalid day"));
        }
        let day: u8 = std::str::from_utf8(d).unwrap_or("0").parse().unwrap_or(0);
        self.byte(b'-', "invalid date")?;
        let month = self.month()?;
        self.byte(b'-', "invalid date")?;
        let year = self.year()?;
        if quoted {
            self.byte(b'"', "invalid date")?;
        }
        Date::new(year, month, day).ok_or_else(|| self.syntax("invalid date"))
    }

    fn two_digits(&mut self) -> Result<u8> {
        let end = self.pos + 2;
        if end > self.buf.len() || !self.buf[self.pos..end].iter().all(u8::is_ascii_digit) {
            return Err(self.syntax("invalid date-time"));
        }
        let v = (self.buf[self.pos] - b'0') * 10 + (self.buf[self.pos + 1] - b'0');
        self.pos = end;
        Ok(v)
    }

    /// `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE`.
    fn date_time(&mut self) -> Result<DateTime> {
        self.byte(b'"', "expected a date-time")?;
        let day = if self.peek() == Some(b' ') {
            self.pos += 1;
            let d = self.peek().filter(u8::is_ascii_digit);
            let d = d.ok_or_else(|| self.syntax("invalid date-time"))?;
            self.pos += 1;
            d - b'0'
        } else {
            self.two_digits()?
        };
        self.byte(b'-', "invalid date-time")?;
        let month = self.month()?;
        self.byte(b'-', "invalid date-time")?;
        let year = self.year()?;
        self.sp()?;
        let hour = self.two_digits()?;
        self.byte(b':', "invalid date-time")?;
        let minute = self.two_digits()?;
        self.byte(b':', "invalid date-time")?;
        let second = self.two_digits()?;
        self.sp()?;
        let sign: i16 = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(self.syntax("invalid zone")),
        };
        self.pos += 1;
        let zh = self.two_digits()?;
        let zm = self.two_digits()?;
        self.byte(b'"', "invalid date-time")?;
        // RFC 5322 allows second 60 (leap second).
        if hour > 23 || minute > 59 || second > 60 || zm > 59 {
            return Err(self.syntax("invalid date-time"));
        }
        let date = Date::new(year, month, day).ok_or_else(|| self.syntax("invalid date"))?;
        Ok(DateTime {
            date,
            hour,
            minute,
            second,
            offset_minutes: sign * (i16::from(zh) * 60 + i16::from(zm)),
        })
    }

    fn seq_number(&mut self) -> Result<SeqNo> {
        if self.peek() == Some(b'*') {
            self.pos += 1;
            Ok(SeqNo::Largest)
        } else {
            self.nz_number().map(SeqNo::Value)
        }
    }

    /// `sequence-set` or `$` (RFC 5182).
    fn sequence_set(&mut self) -> Result<SequenceSet> {
        if self.peek() == Some(b'$') {
            self.pos += 1;
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_number()?;
            let end = if self.peek() == Some(b':') {
                self.pos += 1;
                self.seq_number()?
            } else {
                start
            };
            ranges.push(SeqRange { start, end });
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    /// A parenthesised, space-separated list of at least `min` items.
    fn paren_list<T>(
        &mut self,
        min: usize,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.byte(b'(', "expected '('")?;
        let mut items = Vec::new();
        if self.peek() == Some(b')') {
            self.pos += 1;
        } else {
            loop {
                items.push(item(self)?);
                if self.peek() == Some(b')') {
                    self.pos += 1;
                    break;
                }
                self.sp()?;
            }
        }
        if items.len() < min {
            return Err(self.syntax("empty list"));
        }
        Ok(items)
    }

    // ---- commands ---------------------------------------------------------------------

    fn command(&mut self) -> Result<CommandBody> {
        let name = self
            .atom()
            .map_err(|_| self.error(ParseErrorKind::UnknownCommand, "missing command"))?;
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let body = match name.as_str() {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "LOGOUT" => CommandBody::Logout,
            "STARTTLS" => CommandBody::StartTls,
            "NAMESPACE" => CommandBody::Namespace,
            "IDLE" => CommandBody::Idle,
            "CHECK" => CommandBody::Check,
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "EXPUNGE" => CommandBody::Expunge { uids: None },
            "ID" => return self.id(),
            "AUTHENTICATE" => return self.authenticate(),
            "LOGIN" => {
                self.sp()?;
                let username = self.astring_utf8()?;
                self.sp()?;
                let password = Secret::new(self.astring()?);
                CommandBody::Login { username, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while !self.eof() {
                    self.sp()?;
                    caps.push(String::from_utf8_lossy(self.atom()?).into_owned());
                }
                if caps.is_empty() {
                    return Err(self.syntax("ENABLE needs a capability"));
                }
                CommandBody::Enable(caps)
            }
            "SELECT" | "EXAMINE" => return self.select(name == "EXAMINE"),
            "CREATE" => return self.create(),
            "DELETE" => {
                self.sp()?;
                CommandBody::Delete(self.mailbox()?)
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                CommandBody::Rename { from, to }
            }
            "SUBSCRIBE" => {
                self.sp()?;
                CommandBody::Subscribe(self.mailbox()?)
            }
            "UNSUBSCRIBE" => {
                self.sp()?;
                CommandBody::Unsubscribe(self.mailbox()?)
            }
            "LIST" => return self.list(),
            "LSUB" => {
                self.sp()?;
                let reference = self.reference()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                CommandBody::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.paren_list(1, Self::status_item)?;
                CommandBody::Status { mailbox, items }
            }
            "APPEND" => return self.append(),
            // RFC 9208: `quota-root-name = astring` (opaque, not a mailbox name).
            "GETQUOTA" => {
                self.sp()?;
                CommandBody::GetQuota(self.astring_utf8()?)
            }
            "GETQUOTAROOT" => {
                self.sp()?;
                CommandBody::GetQuotaRoot(self.mailbox()?)
            }
            "SETQUOTA" => return self.setquota(),
            "SEARCH" => return self.search(false),
            "FETCH" => return self.fetch(false),
            "STORE" => return self.store(false),
            "COPY" | "MOVE" => return self.copy_move(false, name == "MOVE"),
            "UID" => {
                self.sp()?;
                let sub = self.word()?;
                return match sub.as_str() {
                    "SEARCH" => self.search(true),
                    "FETCH" => self.fetch(true),
                    "STORE" => self.store(true),
                    "COPY" | "MOVE" => self.copy_move(true, sub == "MOVE"),
                    "EXPUNGE" => {
                        self.sp()?;
                        let set = self.sequence_set()?;
                        Ok(CommandBody::Expunge { uids: Some(set) })
                    }
                    _ => Err(self.error(ParseErrorKind::UnknownCommand, "unknown UID command")),
                };
            }
            _ => return Err(self.error(ParseErrorKind::UnknownCommand, "unknown command")),
        };
        self.end()?;
        Ok(body)
    }

    fn id(&mut self) -> Result<CommandBody> {
        self.sp()?;
        if self.keyword("NIL") {
            return Ok(CommandBody::Id(None));
        }
        let mut pairs = Vec::new();
        self.byte(b'(', "expected '(' or NIL")?;
        if self.peek() != Some(b')') {
            loop {
                let field = self.string()?;
                self.sp()?;
                let value = self.nstring()?;
                if field.len() > ID_MAX_FIELD
                    || value.as_ref().is_some_and(|v| v.len() > ID_MAX_VALUE)
                {
                    return Err(self.syntax("ID field or value too long"));
                }
                pairs.push((self.utf8(field)?, value.map(|v| self.utf8(v)).transpose()?));
                if pairs.len() > ID_MAX_PAIRS {
                    return Err(self.syntax("too many ID fields"));
                }
                if self.peek() == Some(b')') {
                    break;
                }
                self.sp()?;
            }
        }
        self.byte(b')', "expected ')'")?;
        Ok(CommandBody::Id(Some(pairs)))
    }

    fn authenticate(&mut self) -> Result<CommandBody> {
        self.sp()?;
        let mechanism = self.word()?;
        let mut initial_response = None;
        if !self.eof() {
            self.sp()?;
            let ir =
                self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            if ir.is_empty() {
                return Err(self.syntax("invalid initial response"));
            }
            initial_response = Some(Secret::new(if ir == b"=" {
                Vec::new()
            } else {
                BASE64
                    .decode(ir)
                    .map_err(|_| self.syntax("invalid base64"))?
            }));
        }
        self.end()?;
        Ok(CommandBody::Authenticate {
            mechanism,
            initial_response,
        })
    }

    fn select(&mut self, read_only: bool) -> Result<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut condstore = false;
        let mut qresync = None;
        if !self.eof() {
            self.sp()?;
            let params = self.paren_list(1, |p| {
                let w = p.word()?;
                match w.as_str() {
                    "CONDSTORE" => Ok((true, None)),
                    "QRESYNC" => {
                        p.sp()?;
                        Ok((false, Some(p.qresync()?)))
                    }
                    _ => Err(p.syntax("unknown SELECT parameter")),
                }
            })?;
            for (c, q) in params {
                condstore |= c;
                if let Some(q) = q {
                    if qresync.is_some() {
                        return Err(self.syntax("QRESYNC given twice"));
                    }
                    qresync = Some(q);
                }
            }
        }
        self.end()?;
        Ok(CommandBody::Select {
            mailbox,
            read_only,
            condstore,
            qresync,
        })
    }

    fn qresync(&mut self) -> Result<QResync> {
        self.byte(b'(', "expected '('")?;
        let uidvalidity = self.nz_number()?;
        self.sp()?;
        let modseq = self.modseq()?;
        let mut known_uids = None;
        let mut seq_match = None;
        if self.peek() == Some(b' ') {
            self.pos += 1;
            if self.peek() != Some(b'(') {
                known_uids = Some(self.known_set()?);
                if self.peek() == Some(b' ') {
                    self.pos += 1;
                }
            }
            if self.peek() == Some(b'(') {
                self.pos += 1;
                let seqs = self.known_set()?;
                self.sp()?;
                let uids = self.known_set()?;
                self.byte(b')', "expected ')'")?;
                seq_match = Some((seqs, uids));
            }
        }
        self.byte(b')', "expected ')'")?;
        Ok(QResync {
            uidvalidity,
            modseq,
            known_uids,
            seq_match,
        })
    }

    /// A sequence set without `*` or `$` (RFC 7162 known-uids and seq-match-data).
    fn known_set(&mut self) -> Result<SequenceSet> {
        let set = self.sequence_set()?;
        if set == SequenceSet::Saved || set.uses_largest() {
            return Err(self.syntax("'*' and '$' are not allowed here"));
        }
        Ok(set)
    }

    fn create(&mut self) -> Result<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut special_use = Vec::new();
        if !self.eof() {
            self.sp()?;
            let uses = self.paren_list(1, |p| {
                if !p.keyword("USE") {
                    return Err(p.syntax("unknown CREATE parameter"));
                }
                p.sp()?;
                p.paren_list(0, |p| {
                    p.byte(b'\\', "expected a special-use attribute")?;
                    let a = p.atom()?;
                    Ok(format!("\\{}", String::from_utf8_lossy(a)))
                })
            })?;
            special_use = uses.into_iter().flatten().collect();
        }
        self.end()?;
        Ok(CommandBody::Create {
            mailbox,
            special_use,
        })
    }

    fn list(&mut self) -> Result<CommandBody> {
        let mut cmd = ListCommand::default();
        self.sp()?;
        if self.peek() == Some(b'(') {
            cmd.extended = true;
            let opts = self.paren_list(0, Self::word)?;
            for o in &opts {
                match o.as_str() {
                    "SUBSCRIBED" => cmd.select_subscribed = true,
                    "REMOTE" => cmd.select_remote = true,
                    "RECURSIVEMATCH" => cmd.select_recursive_match = true,
                    "SPECIAL-USE" => cmd.select_special_use = true,
                    _ => return Err(self.syntax("unknown LIST selection option")),
                }
            }
            // RFC 5258 §3.1: RECURSIVEMATCH needs another option it modifies.
            if cmd.select_recursive_match && !cmd.select_subscribed && !cmd.select_special_use {
                return Err(self.syntax("RECURSIVEMATCH needs another selection option"));
            }
            self.sp()?;
        }
        cmd.reference = self.reference()?;
        self.sp()?;
        if self.peek() == Some(b'(') {
            cmd.extended = true;
            cmd.patterns = self.paren_list(1, Self::list_mailbox)?;
        } else {
            cmd.patterns = vec![self.list_mailbox()?];
        }
        if !self.eof() {
            self.sp()?;
            if !self.keyword("RETURN") {
                return Err(self.syntax("expected RETURN"));
            }
            cmd.extended = true;
            self.sp()?;
            self.paren_list(0, |p| {
                let w = p.word()?;
                match w.as_str() {
                    "SUBSCRIBED" => cmd.return_subscribed = true,
                    "CHILDREN" => cmd.return_children = true,
                    "SPECIAL-USE" => cmd.return_special_use = true,
                    "STATUS" => {
                        p.sp()?;
                        cmd.return_status = Some(p.paren_list(1, Self::status_item)?);
                    }
                    _ => return Err(p.syntax("unknown LIST return option")),
                }
                Ok(())
            })?;
        }
        self.end()?;
        Ok(CommandBody::List(cmd))
    }

    /// `setquota = "SETQUOTA" SP quota-root-name SP setquota-list`;
    /// `setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")"`;
    /// `setquota-resource = resource-name SP resource-limit` (RFC 9208 formal syntax).
    fn setquota(&mut self) -> Result<CommandBody> {
        self.sp()?;
        let root = self.astring_utf8()?;
        self.sp()?;
        let limits = self.paren_list(0, |p| {
            let resource = p.word()?;
            p.sp()?;
            let limit = p.number64()?;
            Ok(QuotaLimit { resource, limit })
        })?;
        self.end()?;
        Ok(CommandBody::SetQuota { root, limits })
    }

    fn status_item(&mut self) -> Result<StatusItem> {
        let w = self.word()?;
        Ok(match w.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "DELETED-STORAGE" => StatusItem::DeletedStorage,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return Err(self.syntax("unknown STATUS item")),
        })
    }

    fn append(&mut self) -> Result<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        while !self.eof() {
            self.sp()?;
            let mut flags = Vec::new();
            let mut date = None;
            if self.peek() == Some(b'(') {
                flags = self.flag_list()?;
                self.sp()?;
            }
            if self.peek() == Some(b'"') {
                date = Some(self.date_time()?);
                self.sp()?;
            }
            let binary = self.peek() == Some(b'~');
            let data = self.literal_raw(binary)?.to_vec();
            messages.push(AppendMessage {
                flags,
                date,
                data,
                binary,
            });
        }
        if messages.is_empty() {
            return Err(self.syntax("APPEND needs a message"));
        }
        Ok(CommandBody::Append { mailbox, messages })
    }

    fn search(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let mut returns = None;
        let mut charset = None;
        if self.keyword("RETURN") {
            self.sp()?;
            let r = self.paren_list(0, |p| {
                let w = p.word()?;
                Ok(match w.as_str() {
                    "MIN" => SearchReturn::Min,
                    "MAX" => SearchReturn::Max,
                    "ALL" => SearchReturn::All,
                    "COUNT" => SearchReturn::Count,
                    "SAVE" => SearchReturn::Save,
                    _ => return Err(p.syntax("unknown SEARCH return option")),
                })
            })?;
            returns = Some(r);
            self.sp()?;
        }
        if self.keyword("CHARSET") {
            self.sp()?;
            let cs = match self.peek() {
                Some(b'"') => self.quoted()?,
                _ => self.atom()?.to_vec(),
            };
            let cs = String::from_utf8_lossy(&cs).into_owned();
            if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                return Err(self.error(ParseErrorKind::BadCharset, "unsupported charset"));
            }
            charset = Some(cs);
            self.sp()?;
        }
        let mut criteria = vec![self.search_key()?];
        while !self.eof() {
            self.sp()?;
            criteria.push(self.search_key()?);
        }
        Ok(CommandBody::Search(SearchCommand {
            uid,
            returns,
            charset,
            criteria,
        }))
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= self.opts.max_depth {
            return Err(self.error(ParseErrorKind::TooDeep, "search too deeply nested"));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn search_string(&mut self) -> Result<String> {
        self.sp()?;
        self.astring_utf8()
    }

    fn search_date(&mut self) -> Result<Date> {
        self.sp()?;
        self.date()
    }

    fn search_key(&mut self) -> Result<SearchKey> {
        match self.peek() {
            Some(b'(') => {
                return self.nested(|p| p.paren_list(1, Self::search_key).map(SearchKey::And));
            }
            Some(b'0'..=b'9' | b'*' | b'$') => {
                return self.sequence_set().map(SearchKey::SequenceSet);
            }
            _ => {}
        }
        let w = self.word()?;
        Ok(match w.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Answered,
            "DELETED" => SearchKey::Deleted,
            "DRAFT" => SearchKey::Draft,
            "FLAGGED" => SearchKey::Flagged,
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "SEEN" => SearchKey::Seen,
            "UNANSWERED" => SearchKey::Unanswered,
            "UNDELETED" => SearchKey::Undeleted,
            "UNDRAFT" => SearchKey::Undraft,
            "UNFLAGGED" => SearchKey::Unflagged,
            "UNSEEN" => SearchKey::Unseen,
            "BCC" => SearchKey::Bcc(self.search_string()?),
            "BODY" => SearchKey::Body(self.search_string()?),
            "CC" => SearchKey::Cc(self.search_string()?),
            "FROM" => SearchKey::From(self.search_string()?),
            "SUBJECT" => SearchKey::Subject(self.search_string()?),
            "TEXT" => SearchKey::Text(self.search_string()?),
            "TO" => SearchKey::To(self.search_string()?),
            "BEFORE" => SearchKey::Before(self.search_date()?),
            "ON" => SearchKey::On(self.search_date()?),
            "SINCE" => SearchKey::Since(self.search_date()?),
            "SENTBEFORE" => SearchKey::SentBefore(self.search_date()?),
            "SENTON" => SearchKey::SentOn(self.search_date()?),
            "SENTSINCE" => SearchKey::SentSince(self.search_date()?),
            "HEADER" => {
                let name = self.search_string()?;
                if !valid_field_name(&name) {
                    return Err(self.syntax("invalid header field name"));
                }
                SearchKey::Header(name, self.search_string()?)
            }
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let k = String::from_utf8_lossy(self.atom()?).into_owned();
                if w == "KEYWORD" {
                    SearchKey::Keyword(k)
                } else {
                    SearchKey::Unkeyword(k)
                }
            }
            "LARGER" => {
                self.sp()?;
                SearchKey::Larger(self.number64()?)
            }
            "SMALLER" => {
                self.sp()?;
                SearchKey::Smaller(self.number64()?)
            }
            "NOT" => {
                self.sp()?;
                SearchKey::Not(Box::new(self.nested(Self::search_key)?))
            }
            "OR" => {
                self.sp()?;
                let a = self.nested(Self::search_key)?;
                self.sp()?;
                let b = self.nested(Self::search_key)?;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "MODSEQ" => {
                self.sp()?;
                let mut entry = None;
                if self.peek() == Some(b'"') {
                    let name = self.quoted()?;
                    let flag = name
                        .get(..7)
                        .filter(|p| p.eq_ignore_ascii_case(b"/flags/"))
                        .map(|_| &name[7..])
                        .filter(|f| !f.is_empty())
                        .ok_or_else(|| self.syntax("invalid MODSEQ entry name"))?;
                    let flag = Flag::from_wire(&String::from_utf8_lossy(flag));
                    self.sp()?;
                    let kind = match self.word()?.as_str() {
                        "PRIV" => EntryType::Private,
                        "SHARED" => EntryType::Shared,
                        "ALL" => EntryType::All,
                        _ => return Err(self.syntax("invalid MODSEQ entry type")),
                    };
                    entry = Some((flag, kind));
                    self.sp()?;
                }
                SearchKey::ModSeq {
                    entry,
                    modseq: self.number64()?,
                }
            }
            "OLDER" => {
                self.sp()?;
                SearchKey::Older(self.nz_number()?)
            }
            "YOUNGER" => {
                self.sp()?;
                SearchKey::Younger(self.nz_number()?)
            }
            _ => return Err(self.syntax("unknown search key")),
        })
    }

    fn fetch(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let items = if self.peek() == Some(b'(') {
            self.paren_list(1, Self::fetch_attr)?
        } else if self.keyword("ALL") {
            vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
            ]
        } else if self.keyword("FAST") {
            vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
            ]
        } else if self.keyword("FULL") {
            vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ]
        } else {
            vec![self.fetch_attr()?]
        };
        let mut changed_since = None;
        let mut vanished = false;
        if !self.eof() {
            self.sp()?;
            self.paren_list(1, |p| {
                match p.word()?.as_str() {
                    "CHANGEDSINCE" => {
                        p.sp()?;
                        changed_since = Some(p.modseq()?);
                    }
                    "VANISHED" => vanished = true,
                    _ => return Err(p.syntax("unknown FETCH modifier")),
                }
                Ok(())
            })?;
        }
        self.end()?;
        if vanished && (!uid || changed_since.is_none()) {
            return Err(self.syntax("VANISHED needs UID FETCH with CHANGEDSINCE"));
        }
        Ok(CommandBody::Fetch(FetchCommand {
            uid,
            set,
            items,
            changed_since,
            vanished,
        }))
    }

    fn fetch_attr(&mut self) -> Result<FetchAttr> {
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        Ok(match name.as_str() {
            "ENVELOPE" => FetchAttr::Envelope,
            "FLAGS" => FetchAttr::Flags,
            "INTERNALDATE" => FetchAttr::InternalDate,
            "RFC822" => FetchAttr::Rfc822,
            "RFC822.HEADER" => FetchAttr::Rfc822Header,
            "RFC822.SIZE" => FetchAttr::Rfc822Size,
            "RFC822.TEXT" => FetchAttr::Rfc822Text,
            "BODYSTRUCTURE" => FetchAttr::BodyStructure,
            "UID" => FetchAttr::Uid,
            "MODSEQ" => FetchAttr::ModSeq,
            "BODY" if self.peek() != Some(b'[') => FetchAttr::Body,
            "BODY" | "BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                FetchAttr::BodySection {
                    peek: name == "BODY.PEEK",
                    section,
                    partial,
                }
            }
            "BINARY" | "BINARY.PEEK" => {
                let part = self.section_binary()?;
                let partial = self.partial()?;
                FetchAttr::Binary {
                    peek: name == "BINARY.PEEK",
                    part,
                    partial,
                }
            }
            "BINARY.SIZE" => FetchAttr::BinarySize {
                part: self.section_binary()?,
            },
            _ => return Err(self.syntax("unknown FETCH item")),
        })
    }

    /// `section-part = nz-number *("." nz-number)`; stops before a `.` not followed by a digit.
    fn section_part(&mut self) -> Result<Vec<u32>> {
        let mut part = vec![self.nz_number()?];
        while self.peek() == Some(b'.')
            && self.buf.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            part.push(self.nz_number()?);
        }
        Ok(part)
    }

    /// `section = "[" [section-spec] "]"`.
    fn section(&mut self) -> Result<Section> {
        self.byte(b'[', "expected '['")?;
        let mut section = Section::default();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(section);
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part = self.section_part()?;
            if self.peek() == Some(b'.') {
                self.pos += 1;
            } else {
                self.byte(b']', "expected ']'")?;
                return Ok(section);
            }
        }
        let w = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        let w = String::from_utf8_lossy(w).to_ascii_uppercase();
        section.text = Some(match w.as_str() {
            "HEADER" => SectionText::Header,
            "TEXT" => SectionText::Text,
            "MIME" if !section.part.is_empty() => SectionText::Mime,
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                self.sp()?;
                let fields = self.paren_list(1, |p| {
                    let name = p.astring_utf8()?;
                    if valid_field_name(&name) {
                        Ok(name)
                    } else {
                        Err(p.syntax("invalid header field name"))
                    }
                })?;
                SectionText::HeaderFields {
                    not: w.ends_with(".NOT"),
                    fields,
                }
            }
            _ => return Err(self.syntax("invalid section")),
        });
        self.byte(b']', "expected ']'")?;
        Ok(section)
    }

    /// `section-binary = "[" [section-part] "]"`.
    fn section_binary(&mut self) -> Result<Vec<u32>> {
        self.byte(b'[', "expected '['")?;
        let part = if self.peek() == Some(b']') {
            Vec::new()
        } else {
            self.section_part()?
        };
        self.byte(b']', "expected ']'")?;
        Ok(part)
    }

    /// `partial = "<" number "." nz-number ">"`, optional.
    fn partial(&mut self) -> Result<Option<Partial>> {
        if self.peek() != Some(b'<') {
            return Ok(None);
        }
        self.pos += 1;
        let offset = self.number()?;
        self.byte(b'.', "expected '.'")?;
        let length = self.nz_number()?;
        self.byte(b'>', "expected '>'")?;
        Ok(Some(Partial { offset, length }))
    }

    fn store(&mut self, uid: bool) -> Result<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            self.paren_list(1, |p| {
                if !p.keyword("UNCHANGEDSINCE") {
                    return Err(p.syntax("unknown STORE modifier"));
                }
                p.sp()?;
                unchanged_since = Some(p.number64()?);
                Ok(())
            })?;
            self.sp()?;
        }
        let op = match self.peek() {
            Some(b'+') => {
                self.pos += 1;
                StoreOp::Add
            }
            Some(b'-') => {
                self.pos += 1;
                StoreOp::Remove
            }
            _ => StoreOp::Replace,
        };
        let silent = if self.keyword("FLAGS.SILENT") {
            true
        } else if self.keyword("FLAGS") {
            false
        } else {
            return Err(self.syntax("expected FLAGS"));
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while !self.eof() {
                self.sp()?;
                flags.push(self.flag()?);
            }
            flags
        };
        self.end()?;
        Ok(CommandBody::Store(StoreCommand {
            uid,
            set,
            unchanged_since,
            op,
            silent,
            flags,
        }))
    }

    fn copy_move(&mut self, uid: bool, is_move: bool) -> Result<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        self.end()?;
        Ok(if is_move {
            CommandBody::Move { uid, set, mailbox }
        } else {
            CommandBody::Copy { uid, set, mailbox }
        })
    }
}

/// Header field names in FETCH and SEARCH: ASTRING-CHARs (printable, no specials), no `:`.
fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| is_astring_char(b) && b != b':')
}

#[cfg(test)]
mod tests;
