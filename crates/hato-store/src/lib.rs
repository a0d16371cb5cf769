//! hato-store: the one storage abstraction of hato.
//!
//! Accounts, aliases, mailboxes (with UIDVALIDITY/UIDNEXT/MODSEQ ready for IMAP, RFC 9051 and RFC 7162),
//! single-instance message blobs referenced from mailbox entries, and the outbound queue.
//! `deliver` returns only once everything is on stable storage; concurrent deliveries share one
//! commit (group commit). Backends: SQLite ([`sqlite::SqliteStore`]) now, PostgreSQL later; every
//! backend must pass [`conformance::run_all`].
//!
//! Must never: lose an acknowledged delivery, make a half-written delivery visible, or panic on bad data.
//!
//! # Mailbox model (for IMAP and POP3)
//!
//! * Mailboxes belong to one account and are named hierarchically with `/`
//!   ([`rules::canonical_mailbox_name`]); `INBOX` is case-insensitive, always exists, cannot be
//!   created or deleted, and renaming it moves its messages (RFC 9051 6.3.6).
//! * Every mailbox has a UIDVALIDITY that is never handed out twice by one store, a UIDNEXT that
//!   only grows (UIDs are never reused, not even after an expunge) and a HIGHESTMODSEQ (RFC 7162)
//!   that grows with every change of the mailbox's messages: an append, copy or move into it, a
//!   flag change, an expunge. Each such operation assigns one new MODSEQ to everything it
//!   changed; an operation that changes nothing (e.g. adding a flag that is already set) leaves
//!   MODSEQs alone.
//! * Expunged UIDs are remembered with the MODSEQ of their expunge, for QRESYNC's
//!   `VANISHED (EARLIER)` ([`Store::changes_since`]).
//! * IMAP4rev1 `\Recent` (RFC 3501 §2.3.2) is one watermark per mailbox, as in Cyrus: the UIDs
//!   from its `recent_uid` up to UIDNEXT have not been announced to any read-write session yet
//!   and are `\Recent`; the first session to be notified takes them with
//!   [`Store::claim_recent`], which moves the watermark to UIDNEXT. A new mailbox starts at 1,
//!   so appended, copied and delivered messages are recent until claimed.
//! * Message bodies are blobs stored once; appends, copies and moves reference them; a blob is
//!   freed with its last reference. Blob, mailbox and account ids are never reused.
//! * Flags are normalised by [`rules::FlagSet`]: system flags plus at most
//!   [`rules::MAX_KEYWORDS`] keywords per message, case-insensitively unique.
//! * Every write is one transaction of its own (sharing the commit with concurrent writes);
//!   after it, [`Store::subscribe_changes`] receivers learn which mailboxes changed.

use async_trait::async_trait;

pub mod conformance;
pub mod rules;
pub mod sqlite;

pub type AccountId = i64;
pub type MailboxId = i64;
pub type BlobId = i64;

/// The mailboxes every new account gets, as (name, RFC 6154 special-use), in creation order.
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

/// Errors every backend maps into.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error(
        "the store's schema version {found} is newer than this hato supports ({supported}); upgrade hato"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("store error: {0}")]
    Backend(String),
    /// The request is malformed or not allowed: a bad mailbox name, flag or special-use
    /// attribute, deleting INBOX, renaming a mailbox below itself, copying between accounts.
    /// (IMAP: `NO [CANNOT]`, or BAD for syntax.)
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request would exceed a limit of the store (keywords per message, keyword length,
    /// mailboxes per account, UIDs of a mailbox). (IMAP: `NO [LIMIT]`.)
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The mailbox cannot be deleted while it has inferior mailboxes. (IMAP: `NO [HASCHILDREN]`.)
    #[error("{0} has inferior mailboxes")]
    HasChildren(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// Normalised (lower-case) address, e.g. `alice@example.com`.
    pub address: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    /// The account address the alias delivers to.
    pub target: String,
}

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
    /// see [`Store::set_subscribed`]).
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    pub mailbox: MailboxId,
    pub uid: u32,
    pub blob: BlobId,
    /// Normalised flags in canonical order (see [`rules::FlagSet`]).
    pub flags: Vec<String>,
    pub modseq: u64,
    /// Unix seconds.
    pub internal_date: i64,
    pub size: u64,
}

/// One remote recipient of a queued message.
///
/// # Queue life cycle and crash safety
///
/// A scheduler claims due entries with [`Store::due_queue`], which leases them (`leased_until`)
/// and bumps their `claim` token, so another scheduler (thread or process) on the same store does
/// not take them while the lease runs. After the attempt it calls [`Store::queue_delivered`]
/// (success or a generated bounce: the entry and, with its last reference, the blob go) or
/// [`Store::record_attempt`] (failure: next attempt time, error, TLS facts). Both only act while
/// the caller's `claim` token is still current. If the process dies (kill -9) in between, the
/// entry stays and becomes due again when its lease expires: delivery is **at-least-once** — a
/// crash between the remote server's `250` and `queue_delivered` delivers that recipient a second
/// time, but no acknowledged message is ever lost. Leases should therefore be longer than one
/// delivery attempt can take (RFC 5321 timeouts: about 20 minutes in the worst case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Never reused by a store, so a stale id cannot name another entry.
    pub id: i64,
    pub blob: BlobId,
    /// Envelope sender, "" for the null reverse-path.
    pub sender: String,
    pub recipient: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; a new entry is due at once (`next_attempt == created`).
    pub next_attempt: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Unix seconds of the last recorded attempt.
    pub last_attempt: Option<i64>,
    /// TLS facts of the last attempt as recorded by the delivery code (text or JSON: host, IP,
    /// TLS version, cipher, verification, policy).
    pub last_tls: Option<String>,
    /// RFC 3461 DSN parameters given at submission.
    pub dsn: DsnParams,
    /// RFC 8689 REQUIRETLS was given at submission.
    pub requiretls: bool,
    /// Unix seconds until which a scheduler holds the entry (0: not leased).
    pub leased_until: i64,
    /// Claim token: bumped by every claim; `record_attempt`/`queue_delivered` need the current one.
    pub claim: u64,
    /// A bounce was requested ([`Store::queue_bounce`]): the scheduler should generate a DSN
    /// (`last_error` says why) instead of another attempt.
    pub bounce_requested: bool,
}

impl QueueEntry {
    /// The destination domain: the lower-cased part after the last `@` of the recipient.
    pub fn domain(&self) -> String {
        recipient_domain(&self.recipient)
    }
}

/// The lower-cased part after the last `@` of an address ("" if there is none).
pub fn recipient_domain(recipient: &str) -> String {
    recipient
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

/// RFC 3461 DSN parameters of a queued recipient, as given at submission (xtext-decoded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnParams {
    /// `NOTIFY`: `NEVER` or a comma-separated subset of `SUCCESS,FAILURE,DELAY`; None: not given
    /// (failure and delay notifications, RFC 3461 4.1).
    pub notify: Option<String>,
    /// `ORCPT` with its address type, e.g. `rfc822;bob@example.com`.
    pub orcpt: Option<String>,
    /// `RET`: `FULL` or `HDRS` (per message; None: not given, headers only).
    pub ret: Option<String>,
    /// `ENVID` (per message).
    pub envid: Option<String>,
}

/// Per-message submission parameters for the queued copy (see [`Store::deliver_with_params`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueParams {
    /// `RET` and `ENVID` (per message), applied to every remote recipient.
    pub ret: Option<String>,
    pub envid: Option<String>,
    /// RFC 8689 REQUIRETLS.
    pub requiretls: bool,
    /// Per remote recipient, in the order of [`Delivery::remote`]: (`NOTIFY`, `ORCPT`). Empty, or
    /// exactly as long as `remote` (Invalid otherwise).
    pub recipients: Vec<(Option<String>, Option<String>)>,
}

/// The due entries of one destination domain claimed by [`Store::due_queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDomain {
    /// Lower-case destination domain.
    pub domain: String,
    /// Ordered by blob (message) then id, so recipients of one message are adjacent and can
    /// share one SMTP transaction.
    pub entries: Vec<QueueEntry>,
}

/// The result of one failed (or deferred) delivery attempt, for [`Store::record_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAttempt {
    /// Unix seconds of the attempt.
    pub at: i64,
    /// The error, e.g. `451 4.7.1 try later` or `connection refused (192.0.2.1:25)`.
    pub error: String,
    /// Unix seconds of the next attempt (from the retry schedule).
    pub next_attempt: i64,
    /// TLS facts of the attempt (text/JSON), see [`QueueEntry::last_tls`].
    pub tls: Option<String>,
}

/// Which entries [`Store::retry_now`] makes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSelect {
    Id(i64),
    All,
}

/// One accepted message, written atomically by [`Store::deliver`].
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Envelope reverse-path, "" for the null sender.
    pub sender: String,
    /// The message as received, with hato's Received header at the top, CRLF line endings.
    pub data: Vec<u8>,
    /// Accounts whose INBOX gets the message. Stored once, as `Return-Path: <sender>\r\n` + data,
    /// referenced by every INBOX entry (single instance). Duplicates are delivered once.
    pub local: Vec<AccountId>,
    /// Remote recipients: one queue entry each, all referencing one blob of `data` (no Return-Path).
    pub remote: Vec<String>,
    /// Unix seconds; internal date of mailbox entries and creation time of queue entries.
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// Blob holding the local copy, if any local recipient.
    pub local_blob: Option<BlobId>,
    /// Blob holding the queued copy, if any remote recipient.
    pub queue_blob: Option<BlobId>,
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

/// How [`Store::set_flags`] combines the given flags with a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `STORE +FLAGS`.
    Add,
    /// `STORE -FLAGS`.
    Remove,
    /// `STORE FLAGS`.
    Replace,
}

/// One message's flags after [`Store::set_flags`].
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

/// The result of [`Store::set_flags`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlagsResult {
    /// Every requested message that exists and passed the UNCHANGEDSINCE test, ascending UID.
    pub updated: Vec<FlagUpdate>,
    /// UIDs that failed the UNCHANGEDSINCE test (their MODSEQ is greater) and were left
    /// untouched: the `[MODIFIED ...]` set of RFC 7162 3.1.3. Ascending.
    pub modified: Vec<u32>,
}

/// Which messages [`Store::expunge`] removes.
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
    /// The first UID no read-write session has claimed ([`Store::claim_recent`]): messages at
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

/// Sent to [`Store::subscribe_changes`] receivers after a write that changed a mailbox was
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

/// The storage abstraction. Addresses passed in are matched case-insensitively (stored lower-case).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an account and its default mailboxes: INBOX, Sent (\Sent), Drafts (\Drafts),
    /// Trash (\Trash), Junk (\Junk), Archive (\Archive), all subscribed. Conflict if the address is
    /// taken by an account or alias.
    async fn create_account(&self, address: &str, password_hash: &str) -> Result<Account>;
    /// Deletes an account, its mailboxes, entries, aliases pointing at it; frees unreferenced blobs.
    /// Returns false if there was no such account.
    async fn delete_account(&self, address: &str) -> Result<bool>;
    async fn set_password(&self, address: &str, password_hash: &str) -> Result<bool>;
    async fn account(&self, address: &str) -> Result<Option<Account>>;
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;

    /// Adds an alias to an existing account (NotFound if the target is no account, Conflict if the
    /// alias address is already an account or alias).
    async fn add_alias(&self, alias: &str, target: &str) -> Result<()>;
    async fn remove_alias(&self, alias: &str) -> Result<bool>;
    async fn list_aliases(&self) -> Result<Vec<Alias>>;
    /// The account an address delivers to: the account itself or the alias target.
    async fn resolve(&self, address: &str) -> Result<Option<AccountId>>;

    /// Writes the whole delivery in one transaction; returns only once it is durable.
    async fn deliver(&self, delivery: Delivery) -> Result<DeliveryReceipt>;

    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>>;
    /// Entries of one mailbox in UID order.
    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageEntry>>;
    /// A blob by id. Sessions should read messages with [`Store::message_data`], which cannot
    /// stray outside the mailbox.
    async fn blob(&self, blob: BlobId) -> Result<Option<Vec<u8>>>;
    /// The outbound queue, oldest first.
    async fn queue(&self) -> Result<Vec<QueueEntry>>;

    // -- Outbound queue (see [`QueueEntry`] for the life cycle and crash safety) --------------

    /// [`Store::deliver`] with submission parameters (DSN, REQUIRETLS) stored on each queue entry.
    async fn deliver_with_params(
        &self,
        delivery: Delivery,
        params: QueueParams,
    ) -> Result<DeliveryReceipt>;
    /// Claims at most `limit` entries that are due at `now` (`next_attempt <= now`, not leased
    /// or lease expired), oldest due first, and leases them until `now + lease_secs` with a new
    /// claim token, in one transaction: two schedulers never get the same entry while its lease
    /// runs. Grouped by destination domain (groups in the order of their oldest entry).
    async fn due_queue(&self, now: i64, limit: usize, lease_secs: i64) -> Result<Vec<DueDomain>>;
    /// One queue entry, or None.
    async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>>;
    /// Records a failed attempt of a claimed entry: attempts + 1, last error/attempt/TLS facts,
    /// next attempt (due at once instead if a bounce was requested meanwhile), lease released.
    /// False (nothing changed) if the entry is gone or `claim` is no longer its current token.
    async fn record_attempt(&self, id: i64, claim: u64, attempt: QueueAttempt) -> Result<bool>;
    /// The claimed entry was delivered (or bounced by the scheduler): deletes it; its blob goes
    /// with its last reference. False if the entry is gone or `claim` is stale.
    async fn queue_delivered(&self, id: i64, claim: u64) -> Result<bool>;
    /// Deletes an entry whatever its state (`hato queue delete`): no delivery, no bounce.
    async fn queue_delete(&self, id: i64) -> Result<bool>;
    /// Asks the scheduler to bounce an entry (`hato queue bounce`): marks it, sets `last_error`
    /// to `reason` and makes it due at `now` (a running attempt keeps its lease). False if gone.
    /// The scheduler then sends the DSN (none for a null-sender entry: never bounce a bounce)
    /// and removes the entry with [`Store::queue_delivered`].
    async fn queue_bounce(&self, id: i64, reason: &str, now: i64) -> Result<bool>;
    /// Makes entries due at `now` (`hato queue retry ID|--all`) without breaking running leases
    /// (an attempt running meanwhile sets the next attempt from its own result); returns how
    /// many entries were changed.
    async fn retry_now(&self, which: QueueSelect, now: i64) -> Result<u64>;
    /// Ends every lease at once (claims become stale), so entries a crashed process had claimed
    /// are due again without waiting for their lease to run out. Only for the one scheduler of a
    /// data directory, at its start; returns how many leases were released.
    async fn release_leases(&self) -> Result<u64>;

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
        data: Vec<u8>,
        flags: &[String],
        internal_date: i64,
    ) -> Result<AppendUid>;
    /// One message, or None.
    async fn message(&self, mailbox: MailboxId, uid: u32) -> Result<Option<MessageEntry>>;
    /// The bytes of one message, or None. Prefer this to [`Store::blob`] in sessions: it only
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
    /// [`Store::copy`] and expunge of the copied source messages in one transaction (RFC 6851
    /// MOVE); the source records them as vanished.
    async fn move_messages(&self, from: MailboxId, uids: &[u32], to: MailboxId)
    -> Result<CopyUids>;
    /// Removes messages for good and returns their UIDs, ascending. The expunge gets one new
    /// MODSEQ, recorded with each UID for [`Store::changes_since`]; UIDNEXT is not lowered, so
    /// UIDs are never reused. NotFound if the mailbox does not exist.
    async fn expunge(&self, mailbox: MailboxId, which: Expunge<'_>) -> Result<Vec<u32>>;

    // -- Synchronisation and quota -----------------------------------------------------------

    /// Counters of a mailbox (None if it does not exist). For SELECT, read this before
    /// [`Store::messages`] and continue with `changes_since(status.highest_modseq)`: that
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
    /// Not announced to [`Store::subscribe_changes`] receivers (no message changes).
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
