//! The [`Mailstore`] role: mailboxes and their messages.

use async_trait::async_trait;

use crate::{AccountId, BlobId, MailboxId, MessageData, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account: AccountId,
    /// `INBOX`, `Sent`, `Drafts`, `Trash`, `Junk`, `Archive`, ...
    pub name: String,
    /// RFC 6154 attribute, e.g. `\Sent`.
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Whether the account subscribes to this mailbox's name (subscriptions are kept by name:
    /// see [`Mailstore::set_subscribed`]).
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    pub mailbox: MailboxId,
    pub uid: u32,
    pub blob: BlobId,
    /// Normalised flags in canonical order (see [`rules::FlagSet`](crate::rules::FlagSet)).
    pub flags: Vec<String>,
    pub modseq: u64,
    /// Unix seconds.
    pub internal_date: i64,
    pub size: u64,
}

/// UIDPLUS `APPENDUID` data (RFC 4315) of an appended message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    pub uidvalidity: u32,
    pub uid: u32,
}

/// UIDPLUS `COPYUID` data (RFC 4315) of a copy or move.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyUids {
    /// UIDVALIDITY of the destination mailbox.
    pub uidvalidity: u32,
    /// (source UID, destination UID), ascending by source UID; UIDs that did not exist in the
    /// source are absent. Destination UIDs ascend too.
    pub uids: Vec<(u32, u32)>,
}

/// How [`Mailstore::set_flags`] combines the given flags with a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `STORE +FLAGS`.
    Add,
    /// `STORE -FLAGS`.
    Remove,
    /// `STORE FLAGS`.
    Replace,
}

/// One message's flags after [`Mailstore::set_flags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    pub uid: u32,
    /// The message's flags now, normalised.
    pub flags: Vec<String>,
    /// The message's MODSEQ now: the operation's new MODSEQ if `changed`, else the old one.
    pub modseq: u64,
    /// Whether the flags changed (RFC 7162 3.1: adding a flag that is present or removing one
    /// that is absent does not change the MODSEQ).
    pub changed: bool,
}

/// The result of [`Mailstore::set_flags`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlagsResult {
    /// Every requested message that exists and passed the UNCHANGEDSINCE test, ascending UID.
    pub updated: Vec<FlagUpdate>,
    /// UIDs that failed the UNCHANGEDSINCE test (their MODSEQ is greater) and were left
    /// untouched: the `[MODIFIED ...]` set of RFC 7162 3.1.3. Ascending.
    pub modified: Vec<u32>,
}

/// Which messages [`Mailstore::expunge`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expunge<'a> {
    /// All messages with `\Deleted` (IMAP EXPUNGE, CLOSE).
    Deleted,
    /// The given UIDs that also have `\Deleted` (UIDPLUS `UID EXPUNGE`, RFC 4315 2.1).
    DeletedAmong(&'a [u32]),
    /// Exactly the given UIDs, whatever their flags (POP3 DELE at QUIT, MOVE).
    Uids(&'a [u32]),
}

/// Counters of a mailbox for SELECT/STATUS, read in one consistent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Number of messages (EXISTS, STATUS MESSAGES).
    pub messages: u32,
    /// Messages without `\Seen` (STATUS UNSEEN).
    pub unseen: u32,
    /// Messages with `\Deleted` (STATUS DELETED, RFC 9051).
    pub deleted: u32,
    /// Sum of the messages' sizes in bytes (STATUS SIZE, RFC 8438).
    pub size: u64,
    /// Sum of the sizes of the `\Deleted` messages: what an EXPUNGE would free (STATUS
    /// DELETED-STORAGE, RFC 9208 §4.2).
    pub deleted_size: u64,
    /// The first UID no read-write session has claimed ([`Mailstore::claim_recent`]): messages at
    /// or above are `\Recent` (what EXAMINE shows without claiming them).
    pub recent_uid: u32,
    /// Messages with a UID of at least `recent_uid` (STATUS RECENT, RFC 3501 §6.3.10).
    pub recent: u32,
}

/// What changed in a mailbox after a MODSEQ, read in one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// The mailbox's HIGHESTMODSEQ in the snapshot: pass it to the next `changes_since`.
    pub highest_modseq: u64,
    pub uidnext: u32,
    /// [`MailboxStatus::recent_uid`] in the snapshot: UIDs from here to `uidnext` were not
    /// claimed by any session yet.
    pub recent_uid: u32,
    /// Messages whose MODSEQ is greater (new ones and ones whose flags changed), ascending UID.
    pub changed: Vec<MessageEntry>,
    /// UIDs expunged with a greater MODSEQ, ascending. May include UIDs the caller never saw
    /// (appended and expunged after its MODSEQ); RFC 7162 allows that. A backend may keep only
    /// recent expunge history: asked about older MODSEQs it reports every UID below UIDNEXT
    /// that is not in the mailbox.
    pub vanished: Vec<u32>,
}

/// Storage used by one account (QUOTA, RFC 9208: STORAGE and MESSAGE resources). A message in
/// two mailboxes counts twice, although its blob is stored once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub messages: u64,
    /// Sum of the entries' sizes.
    pub bytes: u64,
}

/// Sent to [`Mailstore::subscribe_changes`] receivers after a write that changed a mailbox was
/// committed: one per changed mailbox and commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxChanged {
    pub account: AccountId,
    pub mailbox: MailboxId,
    /// The mailbox's HIGHESTMODSEQ after the commit (when `deleted`: its last one).
    pub highest_modseq: u64,
    /// The mailbox was deleted (by DELETE or with its account).
    pub deleted: bool,
}

/// Mailboxes and their messages, for IMAP and POP3 (see the crate docs for the mailbox model),
/// with the message blobs they reference and the change notifications.
///
/// Users: the IMAP and POP3 servers; the delivery scheduler reads queued copies with
/// [`Mailstore::blob`].
#[async_trait]
pub trait Mailstore: Send + Sync {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>>;
    /// Entries of one mailbox in UID order.
    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageEntry>>;
    /// A blob by id. Sessions should read messages with [`Mailstore::message_data`], which cannot
    /// stray outside the mailbox.
    async fn blob(&self, blob: BlobId) -> Result<Option<Vec<u8>>>;
    /// The size of a blob in octets, without reading it (to reserve memory before reading).
    async fn blob_size(&self, blob: BlobId) -> Result<Option<u64>>;
    /// Up to `len` octets of a blob from `offset` (fewer at its end, none past it), without
    /// reading the rest: a large message is sent in pieces.
    async fn blob_range(&self, blob: BlobId, offset: u64, len: usize) -> Result<Option<Vec<u8>>>;

    // -- Mailboxes ---------------------------------------------------------------------------
    //
    // Names are canonicalised by `rules::canonical_mailbox_name` (Invalid if malformed). The
    // store does not check that the caller may use the account or mailbox: the IMAP/POP3
    // server passes only the authenticated account and the ids it got for it.

    /// Creates a mailbox with a fresh UIDVALIDITY, UIDNEXT 1, not subscribed (unless its name
    /// already is). Missing superior names are created too (`a/b/c` creates `a` and `a/b`,
    /// RFC 9051 6.3.4). `special_use` is an RFC 6154 attribute (`rules::SPECIAL_USES`).
    /// Conflict if the name exists (INBOX always does); NotFound for an unknown account; Limit
    /// beyond `rules::MAX_MAILBOXES`.
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Mailbox>;
    /// Deletes a mailbox with its messages (blobs are freed with their last reference).
    /// NotFound if missing; Invalid for INBOX; HasChildren if inferior names exist (RFC 9051
    /// 6.3.5 lets the server refuse). The name's subscription stays (RFC 9051 6.3.7).
    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()>;
    /// Renames a mailbox and all its inferiors (`a` → `b` renames `a/x` to `b/x`), keeping
    /// UIDVALIDITY, UIDs and messages; subscriptions of the renamed names move along; missing
    /// superiors of the new name are created. Renaming INBOX instead creates the new mailbox
    /// (fresh UIDVALIDITY), moves all INBOX messages into it and leaves INBOX empty, its
    /// inferiors untouched (RFC 9051 6.3.6). NotFound if `from` is missing; Conflict if `to` or
    /// one of the new inferior names exists; Invalid when renaming a mailbox below itself.
    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()>;
    /// The mailbox with this name (INBOX in any case), or None (also for malformed names).
    async fn mailbox_by_name(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>>;
    /// Subscribes to or unsubscribes from a mailbox name (IMAP SUBSCRIBE/UNSUBSCRIBE).
    /// Subscriptions are kept by name and survive deleting the mailbox. Subscribing needs an
    /// existing mailbox (NotFound otherwise); unsubscribing any valid name succeeds.
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()>;
    /// The subscribed names of an account (existing mailboxes or not), sorted.
    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>>;

    // -- Messages ----------------------------------------------------------------------------

    /// Stores `data` as a new blob and appends it with the given flags (validated and
    /// normalised) and internal date (Unix seconds) under the next UID. NotFound if the
    /// mailbox does not exist (IMAP: `NO [TRYCREATE]`).
    async fn append(
        &self,
        mailbox: MailboxId,
        data: MessageData,
        flags: &[String],
        internal_date: i64,
    ) -> Result<AppendUid>;
    /// One message, or None.
    async fn message(&self, mailbox: MailboxId, uid: u32) -> Result<Option<MessageEntry>>;
    /// The bytes of one message, or None. Prefer this to [`Mailstore::blob`] in sessions: it only
    /// ever returns a message of that mailbox.
    async fn message_data(&self, mailbox: MailboxId, uid: u32) -> Result<Option<Vec<u8>>>;
    /// The bytes of several messages of one mailbox in one read (for SEARCH over many messages:
    /// one round trip instead of one per message), as (uid, bytes) in the order of `uids`;
    /// UIDs that do not exist are left out. Callers bound the batch by the entries' sizes.
    async fn messages_data(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>>;
    /// Changes the flags of the given UIDs (any order, duplicates ignored, UIDs that do not
    /// exist skipped). With `unchanged_since` (CONDSTORE UNCHANGEDSINCE), messages whose MODSEQ
    /// is greater are left alone and reported in `modified`. All changed messages get one new
    /// MODSEQ. Atomic: a bad flag (Invalid) or a message that would exceed the keyword limit
    /// (Limit) fails the whole call. NotFound if the mailbox does not exist.
    async fn set_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult>;
    /// Copies messages (flags and internal date included) to `to` under new UIDs, referencing
    /// the same blobs (no data is copied). UIDs that do not exist are skipped. NotFound if a
    /// mailbox does not exist; Invalid if the mailboxes belong to different accounts.
    async fn copy(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyUids>;
    /// [`Mailstore::copy`] and expunge of the copied source messages in one transaction (RFC 6851
    /// MOVE); the source records them as vanished.
    async fn move_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId)
    -> Result<CopyUids>;
    /// Removes messages for good and returns their UIDs, ascending. The expunge gets one new
    /// MODSEQ, recorded with each UID for [`Mailstore::changes_since`]; UIDNEXT is not lowered, so
    /// UIDs are never reused. NotFound if the mailbox does not exist.
    async fn expunge(&self, mailbox: MailboxId, which: Expunge<'_>) -> Result<Vec<u32>>;

    // -- Synchronisation and quota -----------------------------------------------------------

    /// Counters of a mailbox (None if it does not exist). For SELECT, read this before
    /// [`Mailstore::messages`] and continue with `changes_since(status.highest_modseq)`: that
    /// order never misses a change (the other may).
    async fn mailbox_status(&self, mailbox: MailboxId) -> Result<Option<MailboxStatus>>;
    /// Messages changed and UIDs expunged after `modseq` (CONDSTORE CHANGEDSINCE, QRESYNC,
    /// polling at IDLE/NOOP), or None if the mailbox does not exist. The store remembers every
    /// expunge, so the answer is always complete.
    async fn changes_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Option<Changes>>;
    /// Takes the mailbox's `\Recent` messages for the calling session (RFC 3501 §2.3.2: a
    /// message is recent in exactly one session, the first notified of it): returns the
    /// half-open UID range `[recent_uid, uidnext)` and moves `recent_uid` to UIDNEXT, in one
    /// write transaction, so concurrent claimers never get overlapping ranges (an empty range
    /// when there is nothing new). None if the mailbox does not exist. The range may include
    /// UIDs the caller has not seen yet (delivered after its last read) and expunged ones.
    /// Not announced to [`Mailstore::subscribe_changes`] receivers (no message changes).
    async fn claim_recent(&self, mailbox: MailboxId) -> Result<Option<(u32, u32)>>;
    /// Storage used by an account's mailbox entries (zero for an unknown account).
    async fn account_usage(&self, account: AccountId) -> Result<Usage>;
    /// A receiver of [`MailboxChanged`] events, sent after each commit that changed a
    /// mailbox's HIGHESTMODSEQ or deleted it, by any write of this store (deliveries included),
    /// before the writing call returns. Lagging receivers get `RecvError::Lagged`: then treat
    /// every mailbox as changed. Writes of *other processes* on the same database (the CLI,
    /// another server) are announced too, within about a second (the backend watches for them
    /// once for all receivers).
    fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<MailboxChanged>;
}
