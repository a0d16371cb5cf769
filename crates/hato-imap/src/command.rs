//! The typed client commands (RFC 9051 §6, RFC 3501 §6 and the extensions of issue 3),
//! as produced by [`crate::parse::parse_command`].
//!
//! Mailbox names are decoded Unicode (see [`crate::mailbox`]); strings a command carries
//! for matching (SEARCH) are UTF-8 (only `UTF-8` and `US-ASCII` charsets are accepted);
//! credentials are [`Secret`]s whose `Debug` output is redacted.

use std::fmt;

use crate::datetime::{Date, DateTime};
use crate::flag::Flag;
use crate::sequence::SequenceSet;

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// Bytes that must not appear in logs (passwords, SASL responses).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Every command of issue 3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandBody {
    // -- any state (RFC 9051 §6.1) --
    Capability,
    Noop,
    Logout,
    /// RFC 2971.
    Id(Option<Vec<(String, Option<String>)>>),

    // -- not authenticated (§6.2) --
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` (RFC 4959 SASL-IR). The mechanism is
    /// upper-cased; `initial_response` is decoded base64 (`=` is an empty response).
    Authenticate {
        mechanism: String,
        initial_response: Option<Secret>,
    },
    Login {
        username: String,
        password: Secret,
    },

    // -- authenticated (§6.3) --
    /// RFC 5161. Capability names as sent (compare case-insensitively).
    Enable(Vec<String>),
    /// SELECT (`read_only: false`) or EXAMINE (`true`), with RFC 7162 parameters.
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QResync>,
    },
    /// `CREATE mailbox [(USE (attrs))]` (RFC 6154 §3 CREATE-SPECIAL-USE).
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    List(ListCommand),
    Lsub {
        reference: String,
        pattern: String,
    },
    /// RFC 2342.
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    /// One or more messages (RFC 3502 MULTIAPPEND).
    Append {
        mailbox: String,
        messages: Vec<AppendMessage>,
    },
    /// RFC 2177.
    Idle,
    /// `GETQUOTA quota-root` (RFC 9208 §4.1.1). The root name is an opaque astring
    /// (UTF-8; not a mailbox name, so no modified UTF-7 decoding).
    GetQuota(String),
    /// `GETQUOTAROOT mailbox` (RFC 9208 §4.1.2).
    GetQuotaRoot(String),
    /// `SETQUOTA quota-root (resource limit ...)` (RFC 9208 §4.1.3), parsed in full so a
    /// well-formed request is refused with `NO [NOPERM]` and a malformed one with `BAD`.
    /// The list may be empty (`SETQUOTA "" ()` asks to remove every limit).
    SetQuota {
        root: String,
        limits: Vec<QuotaLimit>,
    },

    // -- selected (§6.4) --
    Check,
    Close,
    /// RFC 3691.
    Unselect,
    /// EXPUNGE (`uids: None`) or UID EXPUNGE (RFC 4315).
    Expunge {
        uids: Option<SequenceSet>,
    },
    Search(SearchCommand),
    /// RFC 5256 SORT / UID SORT (RFC 5957 DISPLAYFROM/DISPLAYTO).
    Sort(SortCommand),
    /// RFC 5256 THREAD / UID THREAD.
    Thread(ThreadCommand),
    Fetch(FetchCommand),
    Store(StoreCommand),
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    /// RFC 6851.
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
}

impl CommandBody {
    /// The command's name as a client writes it (`UID FETCH`, `EXAMINE`, ...), for logs
    /// and for the text of tagged responses.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Capability => "CAPABILITY",
            CommandBody::Noop => "NOOP",
            CommandBody::Logout => "LOGOUT",
            CommandBody::Id(_) => "ID",
            CommandBody::StartTls => "STARTTLS",
            CommandBody::Authenticate { .. } => "AUTHENTICATE",
            CommandBody::Login { .. } => "LOGIN",
            CommandBody::Enable(_) => "ENABLE",
            CommandBody::Select {
                read_only: false, ..
            } => "SELECT",
            CommandBody::Select {
                read_only: true, ..
            } => "EXAMINE",
            CommandBody::Create { .. } => "CREATE",
            CommandBody::Delete(_) => "DELETE",
            CommandBody::Rename { .. } => "RENAME",
            CommandBody::Subscribe(_) => "SUBSCRIBE",
            CommandBody::Unsubscribe(_) => "UNSUBSCRIBE",
            CommandBody::List(_) => "LIST",
            CommandBody::Lsub { .. } => "LSUB",
            CommandBody::Namespace => "NAMESPACE",
            CommandBody::Status { .. } => "STATUS",
            CommandBody::Append { .. } => "APPEND",
            CommandBody::Idle => "IDLE",
            CommandBody::GetQuota(_) => "GETQUOTA",
            CommandBody::GetQuotaRoot(_) => "GETQUOTAROOT",
            CommandBody::SetQuota { .. } => "SETQUOTA",
            CommandBody::Check => "CHECK",
            CommandBody::Close => "CLOSE",
            CommandBody::Unselect => "UNSELECT",
            CommandBody::Expunge { uids: None } => "EXPUNGE",
            CommandBody::Expunge { uids: Some(_) } => "UID EXPUNGE",
            CommandBody::Search(s) if s.uid => "UID SEARCH",
            CommandBody::Search(_) => "SEARCH",
            CommandBody::Sort(s) if s.uid => "UID SORT",
            CommandBody::Sort(_) => "SORT",
            CommandBody::Thread(t) if t.uid => "UID THREAD",
            CommandBody::Thread(_) => "THREAD",
            CommandBody::Fetch(f) if f.uid => "UID FETCH",
            CommandBody::Fetch(_) => "FETCH",
            CommandBody::Store(s) if s.uid => "UID STORE",
            CommandBody::Store(_) => "STORE",
            CommandBody::Copy { uid: true, .. } => "UID COPY",
            CommandBody::Copy { .. } => "COPY",
            CommandBody::Move { uid: true, .. } => "UID MOVE",
            CommandBody::Move { .. } => "MOVE",
        }
    }
}

/// `QRESYNC (uidvalidity modseq [known-uids] [(seq-set uid-set)])` (RFC 7162 §3.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QResync {
    pub uidvalidity: u32,
    pub modseq: u64,
    /// Never contains `*` or `$`.
    pub known_uids: Option<SequenceSet>,
    /// (known sequence numbers, the UIDs they correspond to).
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST with RFC 5258 LIST-EXTENDED options, RFC 6154 SPECIAL-USE and RFC 5819
/// LIST-STATUS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub reference: String,
    /// One pattern, or several with `LIST "" ("a" "b")`. Wildcards `*` and `%` kept.
    pub patterns: Vec<String>,
    pub select_subscribed: bool,
    pub select_remote: bool,
    pub select_recursive_match: bool,
    pub select_special_use: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    /// `RETURN (STATUS (...))`.
    pub return_status: Option<Vec<StatusItem>>,
    /// Whether any extended syntax was used (selection options, several patterns or
    /// return options): the response then follows RFC 5258 (e.g. `\NonExistent`).
    pub extended: bool,
}

/// One `setquota-resource` of SETQUOTA (RFC 9208 §4.1.3): `resource-name SP resource-limit`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QuotaLimit {
    /// The resource name, upper-cased (`STORAGE`, `MESSAGE`, or any other atom: RFC 9208
    /// `resource-name-ext`).
    pub resource: String,
    /// `number64`.
    pub limit: u64,
}

/// STATUS data items (RFC 9051 §6.3.11; RECENT from RFC 3501; HIGHESTMODSEQ RFC 7162;
/// SIZE RFC 8438; APPENDLIMIT RFC 7889; DELETED-STORAGE RFC 9208 §4.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    /// RFC 9051 (also RFC 9208 §4.1.4, where it goes with `QUOTA=RES-MESSAGE`).
    Deleted,
    /// RFC 9208 §4.1.4: the storage an EXPUNGE of the mailbox would free (must be
    /// supported when `QUOTA=RES-STORAGE` is announced).
    DeletedStorage,
    Size,
    HighestModSeq,
    AppendLimit,
}

impl StatusItem {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }
}

/// One message of an APPEND.
#[derive(Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    /// The message, or what follows the octets the driver took while it arrived.
    pub data: Vec<u8>,
    /// Sent as `literal8` (RFC 3516 §4.4): the client says the data may hold NUL and 8-bit
    /// content without transfer encoding.
    pub binary: bool,
    /// (literal number in the command, octets) when the driver took the message's first
    /// octets while it arrived ([`crate::framer::Framer::take_literal`]): the message is
    /// those octets, then `data`.
    pub taken: Option<(usize, u64)>,
    /// `CATENATE (...)` (RFC 4469): the message is these parts in order (`data` is empty and
    /// `taken` None; TEXT parts are ordinary literals, never taken by the driver).
    pub catenate: Option<Vec<CatenatePart>>,
}

/// One part of a CATENATE message (RFC 4469 §5).
#[derive(Clone, PartialEq, Eq)]
pub enum CatenatePart {
    /// `TEXT literal`: octets as sent.
    Text(Vec<u8>),
    /// `URL astring`: an IMAP URL (RFC 5092) naming a message or part on this server, as
    /// sent (see [`crate::url::ImapUrl::parse`]).
    Url(String),
}

impl fmt::Debug for CatenatePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatenatePart::Text(t) => write!(f, "Text({} octets)", t.len()),
            CatenatePart::Url(u) => write!(f, "Url({u:?})"),
        }
    }
}

impl fmt::Debug for AppendMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendMessage")
            .field("flags", &self.flags)
            .field("date", &self.date)
            .field("len", &self.data.len())
            .field("binary", &self.binary)
            .field("catenate", &self.catenate)
            .finish()
    }
}

/// SEARCH / UID SEARCH (RFC 9051 §6.4.4; ESEARCH RFC 4731; SEARCHRES RFC 5182).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchCommand {
    pub uid: bool,
    /// `RETURN (...)`; `Some(vec![])` for `RETURN ()` (which means ALL). `None`: a plain
    /// (IMAP4rev1) SEARCH answered with `* SEARCH`.
    pub returns: Option<Vec<SearchReturn>>,
    /// The charset as sent, if any (always `UTF-8` or `US-ASCII`, any case).
    pub charset: Option<String>,
    /// The keys, all of which must match.
    pub criteria: Vec<SearchKey>,
}

/// A SORT key (RFC 5256 §3 `sort-key`, RFC 5957 DISPLAYFROM/DISPLAYTO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// One `sort-criterion`: `[REVERSE] sort-key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

/// SORT / UID SORT (RFC 5256 §3): `SORT [RETURN (...)] (criteria) charset search-keys`
/// (ESORT, RFC 5267 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortCommand {
    pub uid: bool,
    /// ESORT `RETURN (...)` (MIN, MAX, ALL, COUNT; never SAVE); `Some(vec![])` for
    /// `RETURN ()`, which means ALL. `None`: a plain SORT answered with `* SORT`.
    pub returns: Option<Vec<SearchReturn>>,
    /// At least one.
    pub criteria: Vec<SortCriterion>,
    /// Always `UTF-8` or `US-ASCII` (any case): others are refused by the parser.
    pub charset: String,
    /// The search keys, all of which must match.
    pub search: Vec<SearchKey>,
}

/// A THREAD algorithm (RFC 5256 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// THREAD / UID THREAD (RFC 5256 §3): `THREAD algorithm charset search-keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCommand {
    pub uid: bool,
    pub algorithm: ThreadAlgorithm,
    /// Always `UTF-8` or `US-ASCII` (any case).
    pub charset: String,
    pub search: Vec<SearchKey>,
}

/// The plain SEARCH of a SORT or THREAD: the messages it orders.
fn selecting(uid: bool, charset: &str, search: &[SearchKey]) -> SearchCommand {
    SearchCommand {
        uid,
        returns: None,
        charset: Some(charset.to_owned()),
        criteria: search.to_vec(),
    }
}

impl SortCommand {
    /// The SEARCH that selects the messages to sort.
    pub fn search_command(&self) -> SearchCommand {
        selecting(self.uid, &self.charset, &self.search)
    }
}

impl ThreadCommand {
    /// The SEARCH that selects the messages to thread.
    pub fn search_command(&self) -> SearchCommand {
        selecting(self.uid, &self.charset, &self.search)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// `search-key` (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ, RFC 5032
/// OLDER/YOUNGER). Strings are matched case-insensitively by substring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    /// Field name, value (an empty value matches every message having the field).
    Header(String, String),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// Message sequence numbers.
    SequenceSet(SequenceSet),
    /// A parenthesised list: all must match.
    And(Vec<SearchKey>),
    ModSeq {
        /// `"/flags/<flag>"` and `priv`/`shared`/`all` (the server keeps one MODSEQ per
        /// message, so these only narrow what the client asks about).
        entry: Option<(Flag, EntryType)>,
        modseq: u64,
    },
    /// RFC 5032: messages older than this many seconds.
    Older(u32),
    /// RFC 5032: messages younger than this many seconds.
    Younger(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryType {
    Private,
    Shared,
    All,
}

/// FETCH / UID FETCH (RFC 9051 §6.4.5, RFC 7162 CHANGEDSINCE/VANISHED).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchCommand {
    pub uid: bool,
    pub set: SequenceSet,
    /// The items, with the macros ALL/FAST/FULL expanded (RFC 9051 §6.4.5).
    pub items: Vec<FetchAttr>,
    pub changed_since: Option<u64>,
    /// `VANISHED` (only with UID FETCH and CHANGEDSINCE, RFC 7162 §3.2.6).
    pub vanished: bool,
}

/// A fetch data item name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    /// `RFC822` (= `BODY[]`, sets `\Seen`).
    Rfc822,
    /// `RFC822.HEADER` (= `BODY.PEEK[HEADER]`).
    Rfc822Header,
    Rfc822Size,
    /// `RFC822.TEXT` (= `BODY[TEXT]`, sets `\Seen`).
    Rfc822Text,
    /// `BODY` (the non-extensible BODYSTRUCTURE).
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    /// `BODY[section]<partial>` / `BODY.PEEK[...]`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` / `BINARY.PEEK[...]` (RFC 3516).
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        part: Vec<u32>,
    },
}

impl FetchAttr {
    /// Whether fetching this item sets `\Seen` (RFC 9051 §6.4.5).
    pub fn sets_seen(&self) -> bool {
        match self {
            FetchAttr::Rfc822 | FetchAttr::Rfc822Text => true,
            FetchAttr::BodySection { peek, .. } | FetchAttr::Binary { peek, .. } => !peek,
            _ => false,
        }
    }
}

/// `<origin.length>` of a partial fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partial {
    pub offset: u32,
    /// Non-zero.
    pub length: u32,
}

/// A body section (RFC 9051 §6.4.5 `section`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Section {
    /// Part numbers (`1.2.3`); empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SectionText {
    Header,
    /// `HEADER.FIELDS (...)` or `HEADER.FIELDS.NOT (...)`; names as sent.
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
    Text,
    /// Only after part numbers.
    Mime,
}

impl fmt::Display for Section {
    /// The section spec as it appears between the brackets of a FETCH response.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.part.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        let Some(text) = &self.text else {
            return Ok(());
        };
        if !self.part.is_empty() {
            f.write_str(".")?;
        }
        match text {
            SectionText::Header => f.write_str("HEADER"),
            SectionText::Text => f.write_str("TEXT"),
            SectionText::Mime => f.write_str("MIME"),
            SectionText::HeaderFields { not, fields } => {
                f.write_str(if *not {
                    "HEADER.FIELDS.NOT ("
                } else {
                    "HEADER.FIELDS ("
                })?;
                for (i, name) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    // The parser admits only ASTRING-CHARs in field names.
                    f.write_str(name)?;
                }
                f.write_str(")")
            }
        }
    }
}

/// STORE / UID STORE (RFC 9051 §6.4.6, RFC 7162 UNCHANGEDSINCE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreCommand {
    pub uid: bool,
    pub set: SequenceSet,
    pub unchanged_since: Option<u64>,
    pub op: StoreOp,
    /// `.SILENT`: no untagged FETCH for the change.
    pub silent: bool,
    pub flags: Vec<Flag>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// `FLAGS`
    Replace,
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
}
