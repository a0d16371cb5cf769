//! SEARCH evaluation (RFC 9051 §6.4.4, RFC 3501 §6.4.4) over the selected view, sans-IO,
//! and its responses: `* SEARCH` (with RFC 7162 §3.1.5 `(MODSEQ n)`), `* ESEARCH`
//! (RFC 4731 / RFC 9051 §7.3.4: MIN, MAX, ALL, COUNT, MODSEQ) and RFC 5182 SAVE.
//!
//! # Two phases
//!
//! A [`SearchCommand`] is compiled once ([`SearchProgram::new`]) against the
//! [`SelectedView`]: sequence sets, `UID` sets and `$` are resolved then (RFC 5182 §2.1:
//! `$` means the saved result as it was when the command started), search strings are
//! case-folded once. Then each message is judged in two steps:
//!
//! 1. [`SearchProgram::prefilter`] with its metadata only ([`MessageMeta`]: flags, UID,
//!    sequence number, size, INTERNALDATE, MODSEQ, `\Recent`), in three-valued logic: a
//!    key needing the message's bytes is *unknown*, and `OR`/`NOT`/`AND` combine unknowns
//!    (Kleene), so `DELETED BODY x` never loads an undeleted message and `OR SEEN BODY x`
//!    never loads a seen one.
//! 2. Only for [`Verdict::NeedsMessage`] does the driver read the message (only its header
//!    block when [`SearchProgram::needs_headers_only`]) and call
//!    [`SearchProgram::matches_message`].
//!
//! [`Search`] wraps both for a driver: it keeps the hits and a byte budget and renders the
//! responses ([`Search::finish`]). The driver (async, owning the store) loops over
//! [`SelectedView::messages`], builds a [`MessageMeta`] from the view and the store's
//! entry, calls [`Search::check`], loads bytes when told to and calls
//! [`Search::check_message`]; [`Search::run`] is the same loop for a synchronous loader.
//! Messages expunged in the store but not yet reported keep their sequence numbers
//! ([`SelectedView::is_expunged`]); a driver that can no longer read one simply does not
//! hand it over, and it does not match.
//!
//! ```
//! use hato_imap::command::CommandBody;
//! use hato_imap::parse::{parse_command, ParseOptions};
//! use hato_imap::search::{MessageMeta, Search, Verdict};
//! use hato_imap::session::Enabled;
//! use hato_imap::view::{SelectedView, Snapshot, ViewMessage};
//! use hato_imap::{EncodeOptions, flag::Flag};
//!
//! let snapshot = Snapshot {
//!     uidvalidity: 1,
//!     uidnext: 3,
//!     highest_modseq: 2,
//!     messages: vec![
//!         ViewMessage { uid: 1, flags: vec![Flag::Seen], modseq: 1 },
//!         ViewMessage { uid: 2, flags: vec![], modseq: 2 },
//!     ],
//! };
//! let mut view = SelectedView::new(snapshot);
//! let bodies: [&[u8]; 2] = [b"Subject: hi\r\n\r\nfox\r\n", b"Subject: yo\r\n\r\ndog\r\n"];
//! let cmd = parse_command(b"t SEARCH RETURN (COUNT ALL) OR SEEN BODY dog", &ParseOptions::default()).unwrap();
//! let CommandBody::Search(sc) = &cmd.body else { unreachable!() };
//! let enabled = Enabled::default();
//! let mut search = Search::new(sc, &view, enabled, 1_700_000_000).unwrap();
//! for (seq, uid) in view.messages() {
//!     let flags = view.flags(uid, enabled).unwrap();
//!     let raw = bodies[seq as usize - 1];
//!     let meta = MessageMeta {
//!         seq, uid, flags: &flags, modseq: view.modseq(uid).unwrap(),
//!         size: raw.len() as u64, internal_date: 1_700_000_000, recent: view.is_recent(uid),
//!     };
//!     if search.check(&meta) == Verdict::NeedsMessage {
//!         // Only message 2 gets here: message 1 is \Seen, so OR is already true.
//!         assert_eq!(uid, 2);
//!         search.check_message(&meta, raw).unwrap();
//!     }
//! }
//! let out: Vec<u8> = search.finish(&cmd.tag, &mut view).iter()
//!     .flat_map(|r| r.to_bytes(EncodeOptions::default())).collect();
//! assert_eq!(out, b"* ESEARCH (TAG \"t\") ALL 1:2 COUNT 2\r\n");
//! ```
//!
//! # Matching (documented choices)
//!
//! * Strings match as case-insensitive substrings (RFC 9051 §6.4.4): both sides are
//!   case-folded with Unicode `to_lowercase` (the charset is always UTF-8 or US-ASCII;
//!   any other is `NO [BADCHARSET (UTF-8 US-ASCII)]`). An empty string matches every
//!   message that has the field (HEADER, SUBJECT, FROM, ...) and every message for BODY/TEXT.
//! * Header keys (FROM, TO, CC, BCC, SUBJECT, HEADER) search each field of that name in the
//!   top-level header, unfolded, with RFC 2047 encoded words decoded (mail-parser), so
//!   `FROM` matches display names and addresses alike. FROM, TO, CC and BCC also match
//!   each address of those fields in its canonical form, `local@domain` as parsed (comments,
//!   blanks and an obsolete source route left out), as Dovecot does: `FROM user@domain.org`
//!   finds `From: <user (comment)@ (comment) domain.org>`. HEADER FROM, by contrast, reads
//!   the field's text only.
//! * BODY searches the text of every `TEXT/*` leaf (inside encapsulated messages too),
//!   with its transfer encoding undone and its charset converted
//!   ([`ParsedMessage::texts`]); other parts (attachments, images) are not searched.
//!   TEXT is the decoded header fields (`name: value` lines) plus BODY. Text is searched
//!   as it is, line breaks included.
//! * BEFORE/ON/SINCE compare the calendar date of INTERNALDATE **in UTC** (the RFC leaves
//!   "disregarding time and timezone" to the server's notion; hato keeps INTERNALDATE as
//!   Unix seconds). SENTBEFORE/SENTON/SENTSINCE compare the calendar date as written in the
//!   first `Date:` field (its zone ignored); a message without a parseable `Date:` matches
//!   none of them (so `NOT SENTBEFORE d` matches it).
//! * Sequence-number keys are filters: numbers beyond the last message match nothing
//!   (rather than `BAD`), `*` is the last message (`7:*` with 5 messages is message 5).
//!   `UID *` is the largest UID in the view. `$` is the saved UIDs still in the view.
//! * `KEYWORD`/`UNKEYWORD` compare keywords ASCII-case-insensitively; a system flag named
//!   as a keyword never matches.
//! * `MODSEQ` matches a MODSEQ ≥ the value (RFC 7162 §3.1.5); the entry name and type are
//!   accepted and ignored (the server keeps one MODSEQ per message, as the RFC allows).
//! * RECENT/NEW/OLD use the view's per-session `\Recent`. OLDER/YOUNGER (RFC 5032) compare
//!   INTERNALDATE with the `now` given to [`SearchProgram::new`]: `YOUNGER n` is at most n
//!   seconds ago, `OLDER n` more than n (so they are complements).
//!
//! # Bounded work
//!
//! The key tree's depth is bounded by the parser ([`crate::parse::ParseOptions::max_depth`]),
//! so compiling and evaluating recurse boundedly; the per-message MIME work is bounded by
//! [`crate::mime`]. Across messages, [`Search`] counts the bytes of every message it is
//! handed and fails with [`SearchError::Limit`] (`NO [LIMIT]`) once more than
//! [`Search::with_scan_limit`] bytes (default [`DEFAULT_MAX_SCAN_BYTES`]) would be scanned
//! by one command: an honest failure rather than a silently partial result. Metadata-only
//! searches have no such cost and no limit.

use std::cell::OnceCell;

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use crate::command::{SearchCommand, SearchKey, SearchReturn};
use crate::datetime::Date;
use crate::flag::Flag;
use crate::mime::{self, ParsedMessage};
use crate::response::{Code, Data, Response};
use crate::sequence::{NumberSet, SequenceSet};
use crate::session::Enabled;
use crate::view::SelectedView;

/// The charsets SEARCH accepts (`[BADCHARSET (...)]` lists them).
pub const SUPPORTED_CHARSETS: [&str; 2] = ["UTF-8", "US-ASCII"];

/// Default most bytes of message data one SEARCH command may scan (1 GiB).
pub const DEFAULT_MAX_SCAN_BYTES: u64 = 1 << 30;

/// Why a SEARCH cannot be answered with results.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// `CHARSET` other than UTF-8 / US-ASCII: `NO [BADCHARSET (UTF-8 US-ASCII)]`.
    #[error("unsupported charset")]
    BadCharset,
    /// The command would scan more message data than allowed: `NO [LIMIT]`.
    #[error("search would scan too much message data")]
    Limit,
}

impl SearchError {
    /// The tagged `NO` for this error. RFC 5182 §2.1: after a failed SEARCH with SAVE the
    /// saved result is empty; the driver should also call
    /// `view.save_result(NumberSet::new())` when the command asked for SAVE.
    pub fn response(&self, tag: &str) -> Response {
        match self {
            SearchError::BadCharset => Response::no(
                tag,
                Some(Code::BadCharset(
                    SUPPORTED_CHARSETS.iter().map(|s| s.to_string()).collect(),
                )),
                "Unsupported charset",
            ),
            SearchError::Limit => Response::no(
                tag,
                Some(Code::Limit),
                "Search would scan too much data; narrow it down",
            ),
        }
    }
}

/// What the evaluator knows about a message without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageMeta<'a> {
    pub seq: u32,
    pub uid: u32,
    /// The flags as the view knows them (`\Recent` here is ignored: see `recent`).
    pub flags: &'a [Flag],
    pub modseq: u64,
    /// RFC822.SIZE.
    pub size: u64,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// `\Recent` for this session ([`SelectedView::is_recent`]).
    pub recent: bool,
}

/// What a message needs for a verdict, from metadata alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Match,
    NoMatch,
    /// Load the message (or only its header, see [`SearchProgram::needs_headers_only`]) and
    /// call [`SearchProgram::matches_message`].
    NeedsMessage,
}

/// How much of a message the keys read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Need {
    Metadata,
    Headers,
    Content,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateCmp {
    Before,
    On,
    Since,
}

impl DateCmp {
    fn test(self, day: i64, key: i64) -> bool {
        match self {
            DateCmp::Before => day < key,
            DateCmp::On => day == key,
            DateCmp::Since => day >= key,
        }
    }
}

/// A compiled key.
#[derive(Clone, Debug)]
enum Node {
    Const(bool),
    Flag(Flag),
    Recent,
    Seqs(NumberSet),
    Uids(NumberSet),
    Larger(u64),
    Smaller(u64),
    Internal(DateCmp, i64),
    /// Internal date before this Unix time (OLDER: more than n seconds ago).
    InternalBefore(i64),
    /// Internal date at least this Unix time (YOUNGER).
    InternalAtLeast(i64),
    ModSeq(u64),
    Sent(DateCmp, i64),
    /// Lower-case field name, case-folded needle.
    Header(String, String),
    /// An address field (FROM, TO, CC, BCC): as `Header`, or a canonical address contains
    /// the needle.
    Address(&'static str, String),
    Body(String),
    Text(String),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Box<Node>, Box<Node>),
}

impl Node {
    fn need(&self) -> Need {
        match self {
            Node::Sent(..) | Node::Header(..) | Node::Address(..) => Need::Headers,
            Node::Body(_) | Node::Text(_) => Need::Content,
            Node::Not(n) => n.need(),
            Node::And(v) => v.iter().map(Node::need).max().unwrap_or(Need::Metadata),
            Node::Or(a, b) => a.need().max(b.need()),
            _ => Need::Metadata,
        }
    }

    /// Whether some key reads the Date: field (SENTBEFORE/SENTON/SENTSINCE).
    fn reads_sent_date(&self) -> bool {
        match self {
            Node::Sent(..) => true,
            Node::Not(n) => n.reads_sent_date(),
            Node::And(v) => v.iter().any(Node::reads_sent_date),
            Node::Or(a, b) => a.reads_sent_date() || b.reads_sent_date(),
            _ => false,
        }
    }

    /// Whether some key reads the size or the INTERNALDATE.
    fn reads_size_or_date(&self) -> bool {
        match self {
            Node::Larger(_)
            | Node::Smaller(_)
            | Node::Internal(..)
            | Node::InternalBefore(_)
            | Node::InternalAtLeast(_) => true,
            Node::Not(n) => n.reads_size_or_date(),
            Node::And(v) => v.iter().any(Node::reads_size_or_date),
            Node::Or(a, b) => a.reads_size_or_date() || b.reads_size_or_date(),
            _ => false,
        }
    }
}

/// A compiled SEARCH command (see the module documentation).
#[derive(Clone, Debug)]
pub struct SearchProgram {
    root: Node,
    uid: bool,
    returns: Option<Vec<SearchReturn>>,
    uses_modseq: bool,
    need: Need,
    /// Answer a plain SEARCH with ESEARCH (IMAP4rev2 has no `* SEARCH`).
    esearch_always: bool,
}

impl SearchProgram {
    /// Compiles `cmd` against the view as it is now. `now` (Unix seconds) is for
    /// OLDER/YOUNGER.
    pub fn new(
        cmd: &SearchCommand,
        view: &SelectedView,
        enabled: Enabled,
        now: i64,
    ) -> Result<SearchProgram, SearchError> {
        if let Some(cs) = &cmd.charset
            && !SUPPORTED_CHARSETS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(cs))
        {
            return Err(SearchError::BadCharset);
        }
        let mut c = Compiler {
            view,
            now,
            uses_modseq: false,
        };
        let root = c.and(&cmd.criteria);
        let need = root.need();
        Ok(SearchProgram {
            root,
            uid: cmd.uid,
            returns: cmd.returns.clone(),
            uses_modseq: c.uses_modseq,
            need,
            esearch_always: enabled.imap4rev2,
        })
    }

    /// Some key reads message text (BODY, TEXT): load whole messages.
    pub fn needs_content(&self) -> bool {
        self.need == Need::Content
    }

    /// Some key reads header fields (FROM, SUBJECT, HEADER, SENT*, ...) but none reads
    /// text: loading the header block is enough.
    pub fn needs_headers_only(&self) -> bool {
        self.need == Need::Headers
    }

    /// Every key that needs the message is a header field key (FROM, TO, CC, BCC, SUBJECT,
    /// HEADER): [`Search::check_fields`] with cached [`header_fields`] can decide.
    pub fn header_keys_only(&self) -> bool {
        self.need == Need::Headers && !self.root.reads_sent_date()
    }

    /// Whether [`MessageMeta::size`] or [`MessageMeta::internal_date`] can change a verdict;
    /// if not (flags, UIDs, sequence numbers, MODSEQ, header and text keys), a driver may pass
    /// zeros instead of reading them from its store.
    pub fn reads_size_or_date(&self) -> bool {
        self.root.reads_size_or_date()
    }

    /// A MODSEQ key was used: results carry MODSEQ (RFC 7162 §3.1.5).
    pub fn uses_modseq(&self) -> bool {
        self.uses_modseq
    }

    /// UID SEARCH.
    pub fn is_uid(&self) -> bool {
        self.uid
    }

    /// Phase one: a verdict from metadata alone.
    pub fn prefilter(&self, meta: &MessageMeta<'_>) -> Verdict {
        match eval(&self.root, meta, None) {
            Some(true) => Verdict::Match,
            Some(false) => Verdict::NoMatch,
            None => Verdict::NeedsMessage,
        }
    }

    /// Phase two: the full verdict with the message (or its header block alone when
    /// [`SearchProgram::needs_headers_only`]).
    pub fn matches_message(&self, meta: &MessageMeta<'_>, msg: &ParsedMessage<'_>) -> bool {
        let content = Content::new(msg);
        eval(&self.root, meta, Some(&content)).unwrap_or(false)
    }

    /// [`SearchProgram::matches_message`] on the raw bytes: the message is split into MIME
    /// parts only if a key reads its text.
    pub fn matches_raw(&self, meta: &MessageMeta<'_>, raw: &[u8]) -> bool {
        let content = Content::from_raw(raw);
        eval(&self.root, meta, Some(&content)).unwrap_or(false)
    }
}

struct Compiler<'v> {
    view: &'v SelectedView,
    now: i64,
    uses_modseq: bool,
}

impl Compiler<'_> {
    fn and(&mut self, keys: &[SearchKey]) -> Node {
        let mut nodes: Vec<Node> = keys.iter().map(|k| self.key(k)).collect();
        if nodes.len() == 1 {
            nodes.pop().unwrap_or(Node::Const(true))
        } else {
            Node::And(nodes)
        }
    }

    fn key(&mut self, key: &SearchKey) -> Node {
        let not = |n: Node| Node::Not(Box::new(n));
        let header = |name: &str, s: &str| Node::Header(name.to_string(), fold(s));
        let day = |d: &Date| d.days_since_epoch();
        match key {
            SearchKey::All => Node::Const(true),
            SearchKey::Answered => Node::Flag(Flag::Answered),
            SearchKey::Deleted => Node::Flag(Flag::Deleted),
            SearchKey::Draft => Node::Flag(Flag::Draft),
            SearchKey::Flagged => Node::Flag(Flag::Flagged),
            SearchKey::Seen => Node::Flag(Flag::Seen),
            SearchKey::Unanswered => not(Node::Flag(Flag::Answered)),
            SearchKey::Undeleted => not(Node::Flag(Flag::Deleted)),
            SearchKey::Undraft => not(Node::Flag(Flag::Draft)),
            SearchKey::Unflagged => not(Node::Flag(Flag::Flagged)),
            SearchKey::Unseen => not(Node::Flag(Flag::Seen)),
            SearchKey::Keyword(k) => Node::Flag(Flag::Keyword(k.clone())),
            SearchKey::Unkeyword(k) => not(Node::Flag(Flag::Keyword(k.clone()))),
            SearchKey::Recent => Node::Recent,
            SearchKey::New => Node::And(vec![Node::Recent, not(Node::Flag(Flag::Seen))]),
            SearchKey::Old => not(Node::Recent),
            SearchKey::Bcc(s) => Node::Address("bcc", fold(s)),
            SearchKey::Cc(s) => Node::Address("cc", fold(s)),
            SearchKey::From(s) => Node::Address("from", fold(s)),
            SearchKey::To(s) => Node::Address("to", fold(s)),
            SearchKey::Subject(s) => header("subject", s),
            // No field name has a colon (the name ends at the first): such a HEADER key
            // matches nothing, never the canonical address entries of `header_fields` (the
            // parser refuses such names; this holds for a key built otherwise too).
            SearchKey::Header(name, _) if name.contains(':') => Node::Const(false),
            SearchKey::Header(name, s) => header(&name.to_ascii_lowercase(), s),
            SearchKey::Body(s) => Node::Body(fold(s)),
            SearchKey::Text(s) => Node::Text(fold(s)),
            SearchKey::Before(d) => Node::Internal(DateCmp::Before, day(d)),
            SearchKey::On(d) => Node::Internal(DateCmp::On, day(d)),
            SearchKey::Since(d) => Node::Internal(DateCmp::Since, day(d)),
            SearchKey::SentBefore(d) => Node::Sent(DateCmp::Before, day(d)),
            SearchKey::SentOn(d) => Node::Sent(DateCmp::On, day(d)),
            SearchKey::SentSince(d) => Node::Sent(DateCmp::Since, day(d)),
            SearchKey::Larger(n) => Node::Larger(*n),
            SearchKey::Smaller(n) => Node::Smaller(*n),
            SearchKey::Older(secs) => Node::InternalBefore(self.now - i64::from(*secs)),
            SearchKey::Younger(secs) => Node::InternalAtLeast(self.now - i64::from(*secs)),
            SearchKey::ModSeq { modseq, .. } => {
                self.uses_modseq = true;
                Node::ModSeq(*modseq)
            }
            SearchKey::Uid(set) => Node::Uids(
                self.view
                    .resolve_uid(set)
                    .into_iter()
                    .map(|(_, uid)| uid)
                    .collect::<NumberSet>(),
            ),
            SearchKey::SequenceSet(set) => Node::Seqs(self.seqs(set)),
            SearchKey::Not(k) => not(self.key(k)),
            SearchKey::Or(a, b) => Node::Or(Box::new(self.key(a)), Box::new(self.key(b))),
            SearchKey::And(keys) => self.and(keys),
        }
    }

    /// Sequence numbers named by `set`, limited to the messages in the view.
    fn seqs(&self, set: &SequenceSet) -> NumberSet {
        let count = self.view.exists();
        match set {
            SequenceSet::Saved => self
                .view
                .resolve_seq(set)
                .unwrap_or_default()
                .into_iter()
                .map(|(seq, _)| seq)
                .collect(),
            SequenceSet::Ranges(_) => {
                let mut out = NumberSet::new();
                if count == 0 {
                    return out;
                }
                for r in set.resolve(count).unwrap_or_default().ranges() {
                    if *r.start() <= count {
                        out.insert_range(*r.start(), (*r.end()).min(count));
                    }
                }
                out
            }
        }
    }
}

/// Unicode case folding for substring matching.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

fn has_flag(flags: &[Flag], want: &Flag) -> bool {
    match want {
        Flag::Keyword(k) => flags
            .iter()
            .any(|f| matches!(f, Flag::Keyword(x) if x.eq_ignore_ascii_case(k))),
        _ => flags.contains(want),
    }
}

/// Kleene three-valued evaluation: `None` is "needs the message".
fn eval(node: &Node, meta: &MessageMeta<'_>, content: Option<&Content<'_, '_>>) -> Option<bool> {
    Some(match node {
        Node::Const(b) => *b,
        Node::Flag(f) => has_flag(meta.flags, f),
        Node::Recent => meta.recent,
        Node::Seqs(set) => set.contains(meta.seq),
        Node::Uids(set) => set.contains(meta.uid),
        Node::Larger(n) => meta.size > *n,
        Node::Smaller(n) => meta.size < *n,
        Node::Internal(cmp, key) => cmp.test(meta.internal_date.div_euclid(86_400), *key),
        Node::InternalBefore(t) => meta.internal_date < *t,
        Node::InternalAtLeast(t) => meta.internal_date >= *t,
        Node::ModSeq(m) => meta.modseq >= *m,
        Node::Sent(cmp, key) => content?.sent_day().is_some_and(|d| cmp.test(d, *key)),
        Node::Header(name, needle) => content?.header_contains(name, needle),
        Node::Address(name, needle) => {
            let c = content?;
            c.header_contains(name, needle) || c.address_contains(name, needle)
        }
        Node::Body(needle) => content?.body_contains(needle),
        Node::Text(needle) => {
            let c = content?;
            c.header_text().contains(needle.as_str()) || c.body_contains(needle)
        }
        Node::Not(n) => !eval(n, meta, content)?,
        Node::And(nodes) => {
            let mut unknown = false;
            for n in nodes {
                match eval(n, meta, content) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            if unknown {
                return None;
            }
            true
        }
        Node::Or(a, b) => match (eval(a, meta, content), eval(b, meta, content)) {
            (Some(true), _) | (_, Some(true)) => true,
            (Some(false), Some(false)) => false,
            _ => return None,
        },
    })
}

/// A message's searchable content, decoded and case-folded on first use. The MIME structure
/// is only built when a key reads text (BODY, TEXT): header keys read the header block as is.
struct Content<'p, 'a> {
    /// Fields decoded earlier (a driver's cache, see [`header_fields`]): used instead of `header`.
    fields: Option<&'p [(String, String)]>,
    header: &'a [u8],
    raw: &'a [u8],
    given: Option<&'p ParsedMessage<'a>>,
    parsed: OnceCell<ParsedMessage<'a>>,
    /// (lower-case name, folded decoded value) of each top-level field.
    headers: OnceCell<Vec<(String, String)>>,
    /// The decoded header as `name: value` lines, for TEXT.
    header_text: OnceCell<String>,
    bodies: OnceCell<Vec<String>>,
    sent: OnceCell<Option<i64>>,
}

impl<'p, 'a> Content<'p, 'a> {
    fn new(msg: &'p ParsedMessage<'a>) -> Self {
        let mut c = Content::from_raw(msg.header());
        c.given = Some(msg);
        c
    }

    fn from_raw(raw: &'a [u8]) -> Self {
        Content {
            fields: None,
            header: mime::header_block(raw),
            raw,
            given: None,
            parsed: OnceCell::new(),
            headers: OnceCell::new(),
            header_text: OnceCell::new(),
            bodies: OnceCell::new(),
            sent: OnceCell::new(),
        }
    }

    fn msg(&self) -> &ParsedMessage<'a> {
        match self.given {
            Some(m) => m,
            None => self.parsed.get_or_init(|| ParsedMessage::parse(self.raw)),
        }
    }

    fn headers(&self) -> &[(String, String)] {
        if let Some(fields) = self.fields {
            return fields;
        }
        self.headers.get_or_init(|| header_fields(self.header))
    }

    fn header_text(&self) -> &str {
        self.header_text.get_or_init(|| {
            let mut text = String::new();
            for (n, v) in self.headers() {
                if n.starts_with(ADDRESS_PREFIX) {
                    continue;
                }
                text.push_str(n);
                text.push_str(": ");
                text.push_str(v);
                text.push('\n');
            }
            text
        })
    }

    /// Only the fields named `name` are decoded (a SUBJECT search over a mailbox should not
    /// decode every From/To/Date of every message), unless the whole header was already.
    fn header_contains(&self, name: &str, needle: &str) -> bool {
        if let Some(all) = self.fields.or(self.headers.get().map(Vec::as_slice)) {
            return all.iter().any(|(n, v)| n == name && v.contains(needle));
        }
        let header = self.header;
        mime::fields(header)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .any(|(_, range)| {
                fold_value(field_value(&header[range]).unwrap_or_default()).contains(needle)
            })
    }

    /// Whether a canonical address (`local@domain`) of a field named `name` contains
    /// `needle`.
    fn address_contains(&self, name: &str, needle: &str) -> bool {
        if let Some(all) = self.fields.or(self.headers.get().map(Vec::as_slice)) {
            return all
                .iter()
                .any(|(n, v)| n.strip_prefix(ADDRESS_PREFIX) == Some(name) && v.contains(needle));
        }
        let header = self.header;
        mime::fields(header)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .any(|(_, range)| {
                let value = field_value(&header[range]).unwrap_or_default();
                mime::canonical_addresses(value)
                    .iter()
                    .any(|a| fold(a).contains(needle))
            })
    }

    fn body_contains(&self, needle: &str) -> bool {
        self.bodies
            .get_or_init(|| self.msg().texts().map(|t| fold(&t)).collect())
            .iter()
            .any(|b| b.contains(needle))
    }

    /// The calendar day (days since the epoch) written in the first `Date:` field.
    fn sent_day(&self) -> Option<i64> {
        *self.sent.get_or_init(|| {
            let header = self.header;
            let (_, range) = mime::fields(header)
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(b"date"))?;
            let value = with_newline(field_value(&header[range])?);
            match MessageStream::new(&value).parse_date() {
                HeaderValue::DateTime(dt) => {
                    Date::new(dt.year, dt.month, dt.day).map(Date::days_since_epoch)
                }
                _ => None,
            }
        })
    }
}

/// A header field's value: what follows the first colon (`None` without one).
pub(crate) fn field_value(field: &[u8]) -> Option<&[u8]> {
    let colon = field.iter().position(|&b| b == b':')?;
    Some(&field[colon + 1..])
}

pub(crate) fn with_newline(value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    v
}

/// The name prefix of the canonical address entries in [`header_fields`]: it has a colon, so
/// no field's name is one of them.
const ADDRESS_PREFIX: &str = "address:";

/// The fields whose canonical addresses FROM/TO/CC/BCC match.
const ADDRESS_FIELDS: [&str; 4] = ["from", "to", "cc", "bcc"];

/// Every field of a message's top-level header as (lower-case name, decoded and case-folded
/// value), in order: what header SEARCH keys compare against. After each From, To, Cc and
/// Bcc field come its addresses in canonical form (`local@domain`, case-folded), one entry
/// each, named `address:` and the field's name (for FROM/TO/CC/BCC; no real field has a
/// colon in its name). `raw` may be the whole message or its header block. A driver may keep
/// these per message (they never change) and pass them to [`Search::check_fields`] instead
/// of the message.
pub fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let header = mime::header_block(raw);
    let mut out = Vec::new();
    for (name, range) in mime::fields(header) {
        let value = field_value(&header[range]).unwrap_or_default();
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let addresses = if ADDRESS_FIELDS.contains(&name.as_str()) {
            mime::canonical_addresses(value)
        } else {
            Vec::new()
        };
        let entries = addresses
            .iter()
            .map(|a| (format!("{ADDRESS_PREFIX}{name}"), fold(a)));
        let entries: Vec<_> = entries.collect();
        out.push((name, fold_value(value)));
        out.extend(entries);
    }
    out
}

/// A header field value decoded ([`decode_unstructured`]) and case-folded. Plain ASCII
/// without encoded words (most fields) skips the decoder: unfolded, trimmed, lower-cased.
fn fold_value(value: &[u8]) -> String {
    if value.is_ascii() && !value.windows(2).any(|w| w == b"=?") {
        // Unfolding as mail-parser does it: the blanks around a line break become one space.
        let mut out = String::with_capacity(value.len());
        for (i, line) in value.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = if i == 0 {
                line
            } else {
                out.truncate(out.trim_end_matches([' ', '\t']).len());
                let start = line.iter().position(|&b| b != b' ' && b != b'\t');
                let rest = start.map_or(&[][..], |s| &line[s..]);
                if !out.is_empty() && !rest.is_empty() {
                    out.push(' ');
                }
                rest
            };
            out.extend(line.iter().map(|&b| b.to_ascii_lowercase() as char));
        }
        return out.trim_matches([' ', '\t']).to_string();
    }
    fold(&decode_unstructured(value))
}

/// An unstructured header value (folded, possibly with RFC 2047 encoded words) as text.
pub(crate) fn decode_unstructured(value: &[u8]) -> String {
    let v = with_newline(value);
    match MessageStream::new(&v).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => {
            // Best effort: the raw value, unfolded.
            let raw: Vec<u8> = value
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            String::from_utf8_lossy(&raw).trim().to_string()
        }
    }
}

/// One matching message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    pub seq: u32,
    pub uid: u32,
    pub modseq: u64,
}

/// One SEARCH command being run: the program, its hits and its byte budget.
#[derive(Clone, Debug)]
pub struct Search {
    program: SearchProgram,
    hits: Vec<Hit>,
    scanned: u64,
    max_scan: u64,
}

impl Search {
    /// See [`SearchProgram::new`].
    pub fn new(
        cmd: &SearchCommand,
        view: &SelectedView,
        enabled: Enabled,
        now: i64,
    ) -> Result<Search, SearchError> {
        Ok(Search {
            program: SearchProgram::new(cmd, view, enabled, now)?,
            hits: Vec::new(),
            scanned: 0,
            max_scan: DEFAULT_MAX_SCAN_BYTES,
        })
    }

    /// Most bytes of message data this command may scan.
    pub fn with_scan_limit(mut self, bytes: u64) -> Search {
        self.max_scan = bytes;
        self
    }

    pub fn program(&self) -> &SearchProgram {
        &self.program
    }

    /// The matches so far, in the order checked ([`Search::finish`] sorts them).
    pub fn hits(&self) -> &[Hit] {
        &self.hits
    }

    /// Bytes of message data scanned so far.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Whether handing over `bytes` more would exceed the budget: a driver may check this
    /// with the message's size before reading it ([`Search::check_message`] enforces the
    /// budget in any case).
    pub fn over_budget(&self, bytes: u64) -> bool {
        self.scanned.saturating_add(bytes) > self.max_scan
    }

    fn hit(&mut self, meta: &MessageMeta<'_>) {
        self.hits.push(Hit {
            seq: meta.seq,
            uid: meta.uid,
            modseq: meta.modseq,
        });
    }

    /// Phase one for a message; a match is recorded.
    pub fn check(&mut self, meta: &MessageMeta<'_>) -> Verdict {
        let v = self.program.prefilter(meta);
        if v == Verdict::Match {
            self.hit(meta);
        }
        v
    }

    /// Phase two for a message [`Search::check`] answered [`Verdict::NeedsMessage`]:
    /// `raw` is the whole message, or its header block when
    /// [`SearchProgram::needs_headers_only`]. A message that can no longer be read (e.g.
    /// expunged meanwhile) is simply not passed: it does not match.
    pub fn check_message(
        &mut self,
        meta: &MessageMeta<'_>,
        raw: &[u8],
    ) -> Result<bool, SearchError> {
        if self.over_budget(raw.len() as u64) {
            return Err(SearchError::Limit);
        }
        self.scanned += raw.len() as u64;
        let matched = self.program.matches_raw(meta, raw);
        if matched {
            self.hit(meta);
        }
        Ok(matched)
    }

    /// Phase two from a message's [`header_fields`] (when [`SearchProgram::header_keys_only`]):
    /// the same verdict as [`Search::check_message`] with its header, without reading it.
    pub fn check_fields(&mut self, meta: &MessageMeta<'_>, fields: &[(String, String)]) -> bool {
        let mut content = Content::from_raw(b"");
        content.fields = Some(fields);
        let matched = eval(&self.program.root, meta, Some(&content)).unwrap_or(false);
        if matched {
            self.hit(meta);
        }
        matched
    }

    /// Both phases over `messages` (in sequence order), with a synchronous loader called
    /// only for messages that need it: `load(meta, headers_only)` returns the message (or
    /// just its header block when `headers_only`), `None` if it is gone.
    pub fn run<'m, B: AsRef<[u8]>>(
        &mut self,
        messages: impl IntoIterator<Item = MessageMeta<'m>>,
        mut load: impl FnMut(&MessageMeta<'m>, bool) -> Option<B>,
    ) -> Result<(), SearchError> {
        let headers_only = self.program.needs_headers_only();
        for meta in messages {
            if self.check(&meta) != Verdict::NeedsMessage {
                continue;
            }
            // The whole message's size is known up front; a header block is checked when
            // it is handed over.
            if !headers_only && self.over_budget(meta.size) {
                return Err(SearchError::Limit);
            }
            if let Some(raw) = load(&meta, headers_only) {
                self.check_message(&meta, raw.as_ref())?;
            }
        }
        Ok(())
    }

    /// The untagged responses (the driver adds the tagged `OK`), saving the result in the
    /// view for `RETURN (SAVE)` (RFC 5182). `tag` is the command's, for the ESEARCH
    /// correlator.
    pub fn finish(self, tag: &str, view: &mut SelectedView) -> Vec<Response> {
        let Search {
            program, mut hits, ..
        } = self;
        // Whatever order the driver checked messages in: sequence order, which is UID order.
        hits.sort_unstable_by_key(|h| h.seq);
        hits.dedup_by_key(|h| h.seq);
        let id = |h: &Hit| if program.uid { h.uid } else { h.seq };
        let highest = |hs: &mut dyn Iterator<Item = &Hit>| hs.map(|h| h.modseq).max();
        let returns = match &program.returns {
            None if !program.esearch_always => {
                let modseq = if program.uses_modseq {
                    highest(&mut hits.iter())
                } else {
                    None
                };
                return vec![Response::Data(Data::Search {
                    ids: hits.iter().map(id).collect(),
                    modseq,
                })];
            }
            None => vec![SearchReturn::All],
            // `RETURN ()` is `RETURN (ALL)` (RFC 4731 §3.1).
            Some(r) if r.is_empty() => vec![SearchReturn::All],
            Some(r) => r.clone(),
        };
        let has = |r: SearchReturn| returns.contains(&r);
        let (min, max, all, count) = (
            has(SearchReturn::Min),
            has(SearchReturn::Max),
            has(SearchReturn::All),
            has(SearchReturn::Count),
        );
        let (first, last) = (hits.first(), hits.last());
        let only_min_max = (min || max) && !all && !count;
        if has(SearchReturn::Save) {
            let saved = if only_min_max {
                let mut s = NumberSet::new();
                for h in [min.then_some(first), max.then_some(last)]
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    s.insert(h.uid);
                }
                s
            } else {
                hits.iter().map(|h| h.uid).collect()
            };
            view.save_result(saved);
            if !(min || max || all || count) {
                // SAVE alone: no ESEARCH (RFC 5182 §2.4).
                return Vec::new();
            }
        }
        // RFC 4731 §3.2: the MODSEQ of the messages being returned.
        let modseq = if !program.uses_modseq || hits.is_empty() {
            None
        } else if only_min_max {
            let picked = [min.then_some(first), max.then_some(last)];
            highest(&mut picked.into_iter().flatten().flatten())
        } else {
            highest(&mut hits.iter())
        };
        vec![Response::Data(Data::ESearch {
            tag: Some(tag.to_string()),
            uid: program.uid,
            min: if min { first.map(id) } else { None },
            max: if max { last.map(id) } else { None },
            all: if all && !hits.is_empty() {
                Some(hits.iter().map(id).collect())
            } else {
                None
            },
            count: count.then_some(hits.len() as u32),
            modseq,
        })]
    }
}

#[cfg(test)]
mod tests;
