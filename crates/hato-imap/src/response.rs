//! Typed server responses (RFC 9051 §7, RFC 3501 §7 and the extensions of issue 3).
//! [`crate::encode`] turns them into bytes.
//!
//! Values that come from messages (envelope fields, body parts) are bytes: the encoder
//! chooses a quoted string or a literal for each. Text meant for humans (`resp-text`) is
//! sanitised on output: it can never contain CR, LF or other controls, so no value can
//! end a response line early.

use crate::command::{Section, StatusItem};
use crate::datetime::DateTime;
use crate::flag::Flag;
use crate::sequence::NumberSet;

/// One response line (or, for FETCH with literals, one response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `tag OK|NO|BAD [code] text` or, without a tag, `* OK|NO|BAD|PREAUTH|BYE [code] text`.
    Status {
        tag: Option<String>,
        kind: StatusKind,
        code: Option<Code>,
        text: String,
    },
    /// Untagged data (`* ...`).
    Data(Data),
    /// `+ text` (continuation request, e.g. `+ Ready for literal data`, `+ idling`).
    Continue(String),
    /// `+ base64` (a SASL challenge; empty: `+ `).
    ContinueBase64(Vec<u8>),
}

impl Response {
    pub fn tagged(tag: &str, kind: StatusKind, code: Option<Code>, text: &str) -> Response {
        Response::Status {
            tag: Some(tag.to_string()),
            kind,
            code,
            text: text.to_string(),
        }
    }

    pub fn untagged(kind: StatusKind, code: Option<Code>, text: &str) -> Response {
        Response::Status {
            tag: None,
            kind,
            code,
            text: text.to_string(),
        }
    }

    pub fn ok(tag: &str, text: &str) -> Response {
        Response::tagged(tag, StatusKind::Ok, None, text)
    }

    pub fn no(tag: &str, code: Option<Code>, text: &str) -> Response {
        Response::tagged(tag, StatusKind::No, code, text)
    }

    pub fn bad(tag: &str, code: Option<Code>, text: &str) -> Response {
        Response::tagged(tag, StatusKind::Bad, code, text)
    }

    pub fn bye(text: &str) -> Response {
        Response::untagged(StatusKind::Bye, None, text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    /// Untagged only (greeting).
    PreAuth,
    /// Untagged only.
    Bye,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
            StatusKind::PreAuth => "PREAUTH",
            StatusKind::Bye => "BYE",
        }
    }
}

/// Response codes (RFC 9051 §7.1, RFC 4315 UIDPLUS, RFC 5530, RFC 7162, RFC 7888,
/// RFC 9208, RFC 6154).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Alert,
    /// Supported charsets (may be empty).
    BadCharset(Vec<String>),
    Capability(Vec<String>),
    Parse,
    /// Flags the client can change permanently; `any`: `\*` (new keywords allowed).
    PermanentFlags {
        flags: Vec<Flag>,
        any: bool,
    },
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    /// IMAP4rev1 only.
    Unseen(u32),
    AppendUid {
        uidvalidity: u32,
        uids: NumberSet,
    },
    /// Source and destination UIDs, both ascending, corresponding in order.
    CopyUid {
        uidvalidity: u32,
        source: NumberSet,
        destination: NumberSet,
    },
    UidNotSticky,
    HighestModSeq(u64),
    NoModSeq,
    Modified(NumberSet),
    Closed,
    TooBig,
    /// RFC 4469 §5: a CATENATE URL that cannot be resolved, as the client sent it.
    BadUrl(String),
    /// RFC 9208 §4.3.1 / RFC 5530 §3: the command (APPEND, COPY) would exceed a quota
    /// (`NO [OVERQUOTA]`).
    OverQuota,
    Limit,
    Cannot,
    AlreadyExists,
    NonExistent,
    InUse,
    ExpungeIssued,
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    ServerBug,
    ClientBug,
    Corruption,
    HasChildren,
    UseAttr,
    NotSaved,
    /// RFC 3516 §4.2: BINARY of a part whose Content-Transfer-Encoding is unknown.
    UnknownCte,
}

/// Untagged data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Capability(Vec<String>),
    /// RFC 5161 (may be empty).
    Enabled(Vec<String>),
    List(ListItem),
    Lsub(ListItem),
    Status {
        mailbox: String,
        items: Vec<StatusValue>,
    },
    Exists(u32),
    /// IMAP4rev1 only.
    Recent(u32),
    Expunge(u32),
    /// RFC 7162 §3.2.10 (`uids` must not be empty).
    Vanished {
        earlier: bool,
        uids: NumberSet,
    },
    Fetch {
        seq: u32,
        items: Vec<FetchValue>,
    },
    /// IMAP4rev1 `* SEARCH`, with the RFC 7162 `(MODSEQ n)` when asked for.
    Search {
        ids: Vec<u32>,
        modseq: Option<u64>,
    },
    /// RFC 4731 / RFC 9051 `* ESEARCH`.
    ESearch {
        tag: Option<String>,
        uid: bool,
        min: Option<u32>,
        max: Option<u32>,
        /// Must not be empty when present.
        all: Option<NumberSet>,
        count: Option<u32>,
        modseq: Option<u64>,
    },
    /// RFC 5256 `* SORT n n n` (sequence numbers or UIDs, in sorted order).
    Sort(Vec<u32>),
    /// RFC 5267 §3 ESORT: `* ESEARCH (TAG "t") [UID] MIN n MAX n ALL set COUNT n`, where
    /// MIN and MAX are the first and last messages in sort order and ALL lists the
    /// messages in sort order, as ranges only where numbers ascend by one in that order
    /// (`3:5,1:2`).
    ESort {
        tag: String,
        uid: bool,
        min: Option<u32>,
        max: Option<u32>,
        /// In sort order; not written when empty.
        all: Option<Vec<u32>>,
        count: Option<u32>,
    },
    /// RFC 5256 `* THREAD (1)(2 3 (4)(5))`, as the tokens of its thread lists (a flat
    /// form, so that neither building nor encoding nor dropping a deep thread recurses).
    Thread(Vec<ThreadToken>),
    Flags(Vec<Flag>),
    /// RFC 2971 (`None`: `* ID NIL`).
    Id(Option<Vec<(String, Option<String>)>>),
    /// RFC 2342 / RFC 9051 §7.3.1 (an empty list is NIL).
    Namespace {
        personal: Vec<NamespaceDesc>,
        other: Vec<NamespaceDesc>,
        shared: Vec<NamespaceDesc>,
    },
    /// `* QUOTA root (resource usage limit ...)` (RFC 9208 §4.2.1). `resources` must not
    /// be empty (the grammar's `quota-list` has at least one resource); see
    /// [`crate::quota::quota_data`].
    Quota {
        /// An astring (`""` for hato's account root).
        root: String,
        resources: Vec<QuotaResource>,
    },
    /// `* QUOTAROOT mailbox root...` (RFC 9208 §4.2.2; no roots: the mailbox has none).
    QuotaRoot {
        /// Decoded; written as a mailbox name (modified UTF-7 unless UTF-8 is enabled).
        mailbox: String,
        /// Astrings.
        roots: Vec<String>,
    },
}

/// One LIST/LSUB line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListItem {
    /// Attributes such as `\HasNoChildren`, `\Subscribed`, `\Sent` (trusted atoms).
    pub attributes: Vec<String>,
    /// `None`: NIL (flat namespace).
    pub delimiter: Option<char>,
    pub name: String,
    /// RFC 5258 `("CHILDINFO" ("SUBSCRIBED"))`.
    pub child_info_subscribed: bool,
    /// RFC 9051 `("OLDNAME" ("..."))`.
    pub old_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusValue {
    Messages(u32),
    Recent(u32),
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    Deleted(u32),
    /// RFC 9208 §4.1.4 (`number64`): what an EXPUNGE would free; the sum of the
    /// RFC822.SIZE of the `\Deleted` messages is an accepted value.
    DeletedStorage(u64),
    Size(u64),
    HighestModSeq(u64),
    /// `None`: NIL (no limit).
    AppendLimit(Option<u64>),
}

impl StatusValue {
    pub fn item(self) -> StatusItem {
        match self {
            StatusValue::Messages(_) => StatusItem::Messages,
            StatusValue::Recent(_) => StatusItem::Recent,
            StatusValue::UidNext(_) => StatusItem::UidNext,
            StatusValue::UidValidity(_) => StatusItem::UidValidity,
            StatusValue::Unseen(_) => StatusItem::Unseen,
            StatusValue::Deleted(_) => StatusItem::Deleted,
            StatusValue::DeletedStorage(_) => StatusItem::DeletedStorage,
            StatusValue::Size(_) => StatusItem::Size,
            StatusValue::HighestModSeq(_) => StatusItem::HighestModSeq,
            StatusValue::AppendLimit(_) => StatusItem::AppendLimit,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceDesc {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// One `quota-resource` of a QUOTA response (RFC 9208 §4.2.1, resources §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaResource {
    /// `STORAGE` (§5.1: in units of 1024 octets), `MESSAGE` (§5.2), ... (an atom).
    pub name: String,
    /// `number64` (larger values are written as 2^63-1).
    pub usage: u64,
    /// `number64` (larger values are written as 2^63-1).
    pub limit: u64,
}

/// One item of a FETCH response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchValue {
    Flags(Vec<Flag>),
    Uid(u32),
    InternalDate(DateTime),
    Rfc822Size(u64),
    ModSeq(u64),
    Envelope(Box<Envelope>),
    /// `BODY` (no extension data).
    Body(Box<BodyStructure>),
    BodyStructure(Box<BodyStructure>),
    /// `BODY[section]<origin> data` (`None`: NIL).
    BodySection {
        section: Section,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    /// `BINARY[part]<origin> data`: literal8 when the data holds NUL.
    Binary {
        part: Vec<u32>,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    BinarySize {
        part: Vec<u32>,
        size: u64,
    },
    Rfc822(Option<Vec<u8>>),
    Rfc822Header(Option<Vec<u8>>),
    Rfc822Text(Option<Vec<u8>>),
}

/// RFC 9051 §7.5.2 ENVELOPE. Strings are the raw header values (encoded words kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// One address of an envelope. RFC 9051 §7.5.2 group syntax: `host: None` with the group
/// name in `mailbox` starts a group; `host: None` and `mailbox: None` ends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// One token of a THREAD response: `(`, `)` or a message number. The encoder puts a
/// space before a number or `(` that follows a number, as RFC 5256 §4 `thread-members`
/// wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadToken {
    Open,
    Close,
    Id(u32),
}

/// RFC 9051 §7.5.2 BODYSTRUCTURE. The producer (the MIME layer) must bound its depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyStructure {
    Single {
        /// e.g. `TEXT`, `APPLICATION`.
        media_type: Vec<u8>,
        subtype: Vec<u8>,
        fields: BodyFields,
        specific: SinglePartKind,
        ext: SinglePartExt,
    },
    Multi {
        parts: Vec<BodyStructure>,
        subtype: Vec<u8>,
        ext: MultiPartExt,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyFields {
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    /// e.g. `7BIT`, `BASE64`.
    pub encoding: Vec<u8>,
    pub octets: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinglePartKind {
    Basic,
    Text {
        lines: u64,
    },
    /// `MESSAGE/RFC822` (and `MESSAGE/GLOBAL`).
    Message {
        envelope: Box<Envelope>,
        body: Box<BodyStructure>,
        lines: u64,
    },
}

/// A `body-fld-dsp`: disposition type and parameters.
pub type Disposition = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinglePartExt {
    pub md5: Option<Vec<u8>>,
    pub disposition: Option<Disposition>,
    pub language: Vec<Vec<u8>>,
    pub location: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiPartExt {
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    pub disposition: Option<Disposition>,
    pub language: Vec<Vec<u8>>,
    pub location: Option<Vec<u8>>,
}
