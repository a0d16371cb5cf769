//! SORT (RFC 5256 §3, with RFC 5957 DISPLAYFROM/DISPLAYTO) and the message keys it and
//! THREAD ([`crate::thread`]) compare, sans-IO.
//!
//! A driver runs the command's search keys as a SEARCH ([`crate::command::SortCommand::search_command`],
//! [`crate::search::Search`]), builds a [`SortMessage`] for every hit from the store's
//! metadata and the message's header block (only when [`needs_header`] says a key reads it),
//! and calls [`sort`] and [`sort_response`] (`* SORT`, or the RFC 5267 ESORT `* ESEARCH`).
//!
//! # Keys (documented choices)
//!
//! * SUBJECT compares the RFC 5256 §2.1 base subject ([`base_subject`]): encoded words are
//!   decoded to UTF-8, blanks collapsed, `Re:`/`Fw:`/`Fwd:` leaders, `[blob]`s, `(fwd)`
//!   trailers and `[fwd: ...]` wrappers removed.
//! * Strings are compared in the `i;unicode-casemap` spirit by comparing their Unicode
//!   upper-case forms (`str::to_uppercase`) code point by code point; the collation's
//!   decomposition step (NFKD) is not done, so `é` written precomposed and decomposed
//!   differ. Upper case, as Dovecot's titlecase mapping, puts `_` and `[` after letters.
//! * DATE is the sent date: the first `Date:` field as an instant (its zone applied), or
//!   INTERNALDATE when it is missing or unparseable (RFC 5256 §2.2).
//! * FROM, TO, CC compare the mailbox (local part) of the field's first address (RFC 5256
//!   §3); a field starting with a group compares the group's name, as its ENVELOPE start
//!   marker shows it. DISPLAYFROM/DISPLAYTO (RFC 5957 §3) compare the first address's
//!   display name (a comment after the address counts, as in the ENVELOPE), else its
//!   addr-spec `local@domain` (a group: its name). A missing field
//!   compares as the empty string.
//! * Every sort ends with the sequence number, ascending whatever `REVERSE` says (RFC 5256
//!   §3: REVERSE reverses its criterion; ties are then broken in sequence order).

use std::cmp::Ordering;

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use crate::command::{SearchReturn, SortCriterion, SortKey};
use crate::mime;
use crate::response::{Data, Response};
use crate::search::{decode_unstructured, field_value, with_newline};

/// What SORT and THREAD know of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortMessage {
    pub seq: u32,
    pub uid: u32,
    /// INTERNALDATE, Unix seconds (ARRIVAL).
    pub internal_date: i64,
    /// RFC822.SIZE (SIZE).
    pub size: u64,
    /// The sent date (Unix seconds): `Date:` or else INTERNALDATE.
    pub sent: i64,
    /// The instant of the `Date:` field, if it parsed.
    pub date: Option<i64>,
    /// The base subject, upper-cased for comparison.
    pub subject: String,
    /// The base subject extraction removed a `Re:`, `Fwd:`, `(fwd)` or `[fwd: ]`.
    pub reply: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    /// `Message-ID` (without angle brackets).
    pub message_id: Option<String>,
    /// The message-ids of `References`, or when it has none the first of `In-Reply-To`.
    pub references: Vec<String>,
}

impl SortMessage {
    /// The keys of a message from its metadata alone (a header without fields).
    pub fn from_meta(seq: u32, uid: u32, internal_date: i64, size: u64) -> SortMessage {
        SortMessage {
            seq,
            uid,
            internal_date,
            size,
            sent: internal_date,
            ..SortMessage::default()
        }
    }

    /// The keys of a message: `raw` is the message or its header block.
    pub fn new(seq: u32, uid: u32, internal_date: i64, size: u64, raw: &[u8]) -> SortMessage {
        let mut m = SortMessage::from_meta(seq, uid, internal_date, size);
        let header = mime::header_block(raw);
        let mut seen = [false; 8];
        let mut in_reply_to = None;
        for (name, range) in mime::fields(header) {
            let Some(value) = field_value(&header[range]) else {
                continue;
            };
            let i = match name.to_ascii_lowercase().as_slice() {
                b"date" => 0,
                b"subject" => 1,
                b"from" => 2,
                b"to" => 3,
                b"cc" => 4,
                b"message-id" => 5,
                b"references" => 6,
                b"in-reply-to" => 7,
                _ => continue,
            };
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            match i {
                0 => {
                    m.date = sent_date(value);
                    m.sent = m.date.unwrap_or(internal_date);
                }
                1 => {
                    let (base, reply) = base_subject(&decode_unstructured(value));
                    m.subject = base.to_uppercase();
                    m.reply = reply;
                }
                2 => (m.from, m.display_from) = address_keys(value),
                3 => (m.to, m.display_to) = address_keys(value),
                4 => m.cc = address_keys(value).0,
                5 => m.message_id = msg_ids(value).into_iter().next(),
                6 => m.references = msg_ids(value),
                _ => in_reply_to = msg_ids(value).into_iter().next(),
            }
        }
        if m.references.is_empty()
            && let Some(id) = in_reply_to
        {
            m.references.push(id);
        }
        m
    }

    /// The same header keys for another message with the same content (a driver may cache
    /// the keys per message blob, built with zero metadata, and place them with this).
    pub fn at(&self, seq: u32, uid: u32, internal_date: i64, size: u64) -> SortMessage {
        SortMessage {
            seq,
            uid,
            internal_date,
            size,
            sent: self.date.unwrap_or(internal_date),
            ..self.clone()
        }
    }

    /// Roughly the bytes this takes in memory (for a cache's budget).
    pub fn footprint(&self) -> usize {
        let strings = [
            &self.subject,
            &self.from,
            &self.to,
            &self.cc,
            &self.display_from,
            &self.display_to,
        ];
        std::mem::size_of::<SortMessage>()
            + strings.iter().map(|s| s.len()).sum::<usize>()
            + self.message_id.as_ref().map_or(0, String::len)
            + self.references.iter().map(|r| r.len() + 24).sum::<usize>()
    }

    fn key_cmp(&self, other: &SortMessage, key: SortKey) -> Ordering {
        match key {
            SortKey::Arrival => self.internal_date.cmp(&other.internal_date),
            SortKey::Cc => self.cc.cmp(&other.cc),
            SortKey::Date => self.sent.cmp(&other.sent),
            SortKey::From => self.from.cmp(&other.from),
            SortKey::Size => self.size.cmp(&other.size),
            SortKey::Subject => self.subject.cmp(&other.subject),
            SortKey::To => self.to.cmp(&other.to),
            SortKey::DisplayFrom => self.display_from.cmp(&other.display_from),
            SortKey::DisplayTo => self.display_to.cmp(&other.display_to),
        }
    }
}

/// Whether some criterion reads the header (all but ARRIVAL and SIZE): without one, a driver
/// may use [`SortMessage::from_meta`].
pub fn needs_header(criteria: &[SortCriterion]) -> bool {
    criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size))
}

/// Sorts `messages` by `criteria`, then by sequence number.
pub fn sort(criteria: &[SortCriterion], messages: &mut [SortMessage]) {
    messages.sort_by(|a, b| {
        for c in criteria {
            let o = a.key_cmp(b, c.key);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// `* SORT ...` with UIDs for UID SORT, else sequence numbers, in the order of `messages`.
pub fn response(uid: bool, messages: &[SortMessage]) -> Response {
    Response::Data(Data::Sort(
        messages
            .iter()
            .map(|m| if uid { m.uid } else { m.seq })
            .collect(),
    ))
}

/// The answer to a SORT: `* SORT ...` ([`response`]) for a plain SORT, else the RFC 5267
/// §3 ESORT `* ESEARCH` for `returns` (`RETURN ()` meaning ALL); `messages` are sorted.
pub fn sort_response(
    tag: &str,
    uid: bool,
    returns: Option<&[SearchReturn]>,
    messages: &[SortMessage],
) -> Response {
    let Some(returns) = returns else {
        return response(uid, messages);
    };
    let all = returns.is_empty() || returns.contains(&SearchReturn::All);
    let has = |r: SearchReturn| returns.contains(&r);
    let id = |m: &SortMessage| if uid { m.uid } else { m.seq };
    Response::Data(Data::ESort {
        tag: tag.to_owned(),
        uid,
        min: messages.first().filter(|_| has(SearchReturn::Min)).map(id),
        max: messages.last().filter(|_| has(SearchReturn::Max)).map(id),
        all: all.then(|| messages.iter().map(id).collect()),
        count: has(SearchReturn::Count).then_some(messages.len() as u32),
    })
}

/// The instant of a `Date:` value (Unix seconds), if it parses.
fn sent_date(value: &[u8]) -> Option<i64> {
    let v = with_newline(value);
    match MessageStream::new(&v).parse_date() {
        HeaderValue::DateTime(dt) if dt.is_valid() => Some(dt.to_timestamp()),
        _ => None,
    }
}

/// (mailbox, display) keys of an address field, upper-cased.
fn address_keys(value: &[u8]) -> (String, String) {
    let Some(a) = mime::first_address(value) else {
        return (String::new(), String::new());
    };
    let text = |b: &Option<Vec<u8>>| {
        String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
    };
    let mailbox = text(&a.mailbox);
    let host = text(&a.host);
    let name = text(&a.name);
    let display = if !name.trim().is_empty() {
        name.trim().to_string()
    } else if host.is_empty() {
        mailbox.clone()
    } else {
        format!("{mailbox}@{host}")
    };
    (mailbox.to_uppercase(), display.to_uppercase())
}

/// The msg-ids (`<...>`, brackets and blanks removed) in a Message-ID, References or
/// In-Reply-To value, comments skipped. At most [`MAX_REFERENCES`].
pub(crate) fn msg_ids(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<Vec<u8>> = None;
    let mut quoted = false;
    for &b in value {
        if depth > 0 {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            continue;
        }
        match (&mut current, b) {
            (Some(id), b'"') => {
                quoted = !quoted;
                id.push(b);
            }
            (Some(id), _) if quoted => id.push(b),
            (None, b'(') => depth = 1,
            (None, b'<') => current = Some(Vec::new()),
            (Some(_), b'<') => current = Some(Vec::new()),
            (Some(id), b'>') => {
                let id = std::mem::take(id);
                current = None;
                if !id.is_empty() && out.len() < MAX_REFERENCES {
                    out.push(String::from_utf8_lossy(&id).into_owned());
                }
            }
            (Some(_), b' ' | b'\t' | b'\r' | b'\n') => {}
            (Some(id), _) => id.push(b),
            (None, _) => {}
        }
    }
    out
}

/// Most msg-ids taken from one field.
pub const MAX_REFERENCES: usize = 1000;

/// RFC 5256 §2.1 base subject of a decoded subject, and whether it was a reply or forward
/// (a `Re:`/`Fw:`/`Fwd:` leader, a `(fwd)` trailer or a `[fwd: ...]` wrapper was removed).
/// Not upper-cased.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Tabs and line breaks are blanks; runs of blanks become one space.
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c);
    }
    let mut reply = false;
    let mut s = s.as_str();
    loop {
        // (2) Trailers: "(fwd)" and blanks.
        loop {
            let t = s.trim_end_matches(' ');
            if t.len() >= 5
                && t.is_char_boundary(t.len() - 5)
                && t[t.len() - 5..].eq_ignore_ascii_case("(fwd)")
            {
                s = &t[..t.len() - 5];
                reply = true;
            } else {
                s = t;
                break;
            }
        }
        // (3)-(5) Leaders and blobs, until nothing changes.
        loop {
            let before = s.len();
            // (3) subj-leader = (*subj-blob subj-refwd) / WSP
            loop {
                let t = s.trim_start_matches(' ');
                if t.len() != s.len() {
                    s = t;
                    continue;
                }
                if let Some(rest) = strip_leader(s) {
                    s = rest;
                    reply = true;
                    continue;
                }
                break;
            }
            // (4) a leading blob, unless that leaves nothing.
            if let Some(rest) = strip_blob(s)
                && !rest.is_empty()
            {
                s = rest;
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd:" ... "]".
        if s.len() >= 6
            && s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("[fwd:"))
            && s.ends_with(']')
        {
            s = &s[5..s.len() - 1];
            reply = true;
            continue;
        }
        break;
    }
    (s.to_string(), reply)
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: the rest after it.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find([']', '['])?;
    if rest.as_bytes()[end] != b']' {
        return None;
    }
    Some(rest[end + 1..].trim_start_matches(' '))
}

/// `*subj-blob subj-refwd` with `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`:
/// the rest after it.
fn strip_leader(s: &str) -> Option<&str> {
    let mut t = s;
    while let Some(rest) = strip_blob(t) {
        t = rest;
    }
    let lower = |n: usize| t.get(..n).map(str::to_ascii_lowercase);
    let mut rest = if lower(3).as_deref() == Some("fwd") {
        &t[3..]
    } else if matches!(lower(2).as_deref(), Some("re" | "fw")) {
        &t[2..]
    } else {
        return None;
    };
    rest = rest.trim_start_matches(' ');
    if let Some(r) = strip_blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':')
}

#[cfg(test)]
mod tests;
