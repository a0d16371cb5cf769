//! hato-store: the one storage abstraction of hato.
//!
//! Accounts, aliases, mailboxes (with UIDVALIDITY/UIDNEXT/MODSEQ ready for IMAP, RFC 9051 and RFC 7162),
//! single-instance message blobs referenced from mailbox entries, and the outbound queue.
//! `deliver` returns only once everything is on stable storage; concurrent deliveries share one
//! commit (group commit). Backends: SQLite ([`sqlite::SqliteStore`]) now, PostgreSQL later; every
//! backend must pass [`conformance::run_all`].
//!
//! Must never: lose an acknowledged delivery, make a half-written delivery visible, or panic on bad data.

use async_trait::async_trait;

pub mod conformance;
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
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    pub mailbox: MailboxId,
    pub uid: u32,
    pub blob: BlobId,
    pub flags: Vec<String>,
    pub modseq: u64,
    /// Unix seconds.
    pub internal_date: i64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
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
    async fn blob(&self, blob: BlobId) -> Result<Option<Vec<u8>>>;
    /// The outbound queue, oldest first.
    async fn queue(&self) -> Result<Vec<QueueEntry>>;
}
