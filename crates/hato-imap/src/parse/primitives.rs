//! The basic productions of RFC 9051 §9 that commands are built from: tokens, atoms
//! and numbers (`number`, `nz-number`, `number64`, RFC 7162 `mod-sequence-value`),
//! strings (`quoted`, `literal` with RFC 7888 `{n+}`, RFC 3516 `literal8`, `astring`,
//! `nstring`), mailbox names and LIST patterns (modified UTF-7 or UTF-8), flags,
//! `date` and `date-time`, `sequence-set` with RFC 5182 `$`, and parenthesised lists.

use super::{Parser, Result};
use crate::datetime::{Date, DateTime, month_from_name};
use crate::flag::Flag;
use crate::framer::{is_astring_char, is_atom_char};
use crate::mailbox::{decode_mailbox, decode_pattern};
use crate::sequence::{SeqNo, SeqRange, SequenceSet};

impl<'a> Parser<'a, '_> {
    // ---- low-level ------------------------------------------------------------------

    pub(super) fn eof(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(super) fn byte(&mut self, b: u8, what: &str) -> Result<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(what))
        }
    }

    pub(super) fn sp(&mut self) -> Result<()> {
        self.byte(b' ', "expected a space")
    }

    /// `SP item`: an argument after its separating space.
    pub(super) fn arg<T>(&mut self, item: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.sp()?;
        item(self)
    }

    pub(super) fn end(&self) -> Result<()> {
        if self.eof() {
            Ok(())
        } else {
            Err(self.syntax("unexpected arguments"))
        }
    }

    /// Consumes `kw` (case-insensitive) if it is next, followed by a token boundary.
    pub(super) fn keyword(&mut self, kw: &str) -> bool {
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
    pub(super) fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&ok) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// `atom = 1*ATOM-CHAR`.
    pub(super) fn atom(&mut self) -> Result<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            Err(self.syntax("expected an atom"))
        } else {
            Ok(a)
        }
    }

    /// An atom as upper-case text (command names, keywords).
    pub(super) fn word(&mut self) -> Result<String> {
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
    pub(super) fn number(&mut self) -> Result<u32> {
        let d = self.digits()?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.syntax("number out of range"))
    }

    pub(super) fn nz_number(&mut self) -> Result<u32> {
        match self.number()? {
            0 => Err(self.syntax("zero is not allowed here")),
            n => Ok(n),
        }
    }

    /// `number64` (RFC 9051: 0 ..= 2^63-1).
    pub(super) fn number64(&mut self) -> Result<u64> {
        let d = self.digits()?;
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| self.syntax("number out of range"))
    }

    /// `mod-sequence-value` (non-zero).
    pub(super) fn modseq(&mut self) -> Result<u64> {
        match self.number64()? {
            0 => Err(self.syntax("mod-sequence must not be zero")),
            n => Ok(n),
        }
    }

    // ---- strings --------------------------------------------------------------------

    /// `quoted` (RFC 9051 allows UTF-8 in quoted strings).
    pub(super) fn quoted(&mut self) -> Result<Vec<u8>> {
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
    pub(super) fn literal_raw(&mut self, tilde: bool) -> Result<&'a [u8]> {
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
        // Octets the driver took while the literal arrived are not in the buffer.
        let number = self.literals.next;
        self.literals.next += 1;
        let taken = self
            .literals
            .taken
            .iter()
            .find(|(i, _)| *i == number)
            .map_or(0, |t| t.1);
        self.literals.last_taken = (taken > 0).then_some((number, taken));
        let n = n
            .checked_sub(taken)
            .ok_or_else(|| self.syntax("literal shorter than announced"))?;
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
        // Only APPEND messages may be taken by the driver (a huge mailbox name in an APPEND
        // command would be): never parse what is left of one as a string.
        if self.literals.last_taken.is_some() {
            return Err(self.syntax("string literal too long"));
        }
        if data.contains(&0) {
            return Err(self.syntax("NUL in literal"));
        }
        Ok(data.to_vec())
    }

    /// `string = quoted / literal`.
    pub(super) fn string(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(self.syntax("expected a string")),
        }
    }

    /// `astring = 1*ASTRING-CHAR / string`.
    pub(super) fn astring(&mut self) -> Result<Vec<u8>> {
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
    pub(super) fn nstring(&mut self) -> Result<Option<Vec<u8>>> {
        if self.keyword("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    pub(super) fn utf8(&self, bytes: Vec<u8>) -> Result<String> {
        String::from_utf8(bytes).map_err(|_| self.syntax("string is not valid UTF-8"))
    }

    pub(super) fn astring_utf8(&mut self) -> Result<String> {
        let s = self.astring()?;
        self.utf8(s)
    }

    pub(super) fn mailbox(&mut self) -> Result<String> {
        let raw = self.astring()?;
        decode_mailbox(&raw, self.opts.utf8)
            .map_err(|e| self.error(super::ParseErrorKind::MailboxName, &e.to_string()))
    }

    /// `list-mailbox = 1*list-char / string` (list-char adds `%`, `*` and `]` to ATOM-CHAR).
    pub(super) fn list_mailbox(&mut self) -> Result<String> {
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
        match decode_pattern(&raw, self.opts.utf8) {
            // Not valid modified UTF-7: taken literally (it matches no stored name's
            // encoding; LIST answers OK with what it finds, as Dovecot does).
            Err(crate::mailbox::MailboxNameError::InvalidUtf7) => {
                Ok(String::from_utf8_lossy(&raw).into_owned())
            }
            r => r.map_err(|e| self.syntax(&e.to_string())),
        }
    }

    /// A reference name (LIST/LSUB): a mailbox name that may be empty, not canonicalised.
    pub(super) fn reference(&mut self) -> Result<String> {
        let raw = self.astring()?;
        decode_pattern(&raw, self.opts.utf8).map_err(|e| self.syntax(&e.to_string()))
    }

    // ---- flags, dates, sets -----------------------------------------------------------

    /// `flag` (no `\*`, which only servers send).
    pub(super) fn flag(&mut self) -> Result<Flag> {
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
    pub(super) fn flag_list(&mut self) -> Result<Vec<Flag>> {
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
    pub(super) fn date(&mut self) -> Result<Date> {
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
    pub(super) fn date_time(&mut self) -> Result<DateTime> {
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
        let hour = self.arg(Self::two_digits)?;
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
    pub(super) fn sequence_set(&mut self) -> Result<SequenceSet> {
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
    pub(super) fn paren_list<T>(
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
}

/// Header field names in FETCH and SEARCH: ASTRING-CHARs (printable, no specials), no `:`.
pub(super) fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| is_astring_char(b) && b != b':')
}
