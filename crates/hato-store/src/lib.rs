//! hato-store: the one storage abstraction of hato.
//!
//! Accounts, aliases, mailboxes (with UIDVALIDITY/UIDNEXT/MODSEQ ready for IMAP, RFC 9051 and RFC 7162),
//! single-instance message blobs referenced from mailbox entries, the outbound queue, and the
//! short-lived state that several hato nodes on one database must share.
//! `deliver` returns only once everything is on stable storage; concurrent deliveries share one
//! commit (group commit). Backends: SQLite ([`sqlite::SqliteStore`]) now, PostgreSQL later; every
//! backend must pass `conformance::run_all` (cargo feature `conformance`, for tests only).
//!
//! # Roles
//!
//! [`Store`] is the sum of five role traits, which one backend implements together on one
//! database (callers hold an `Arc<dyn Store>` and need not import the roles):
//!
//! * [`Directory`]: accounts and aliases, and `resolve` (the account an address delivers to).
//!   Creating an account creates its default mailboxes; deleting it deletes them.
//! * [`Mailstore`]: mailboxes, their messages and the blobs these reference: append, flags,
//!   copy, move, expunge, subscriptions; the synchronisation reads (`mailbox_status`,
//!   `changes_since`), `\Recent` claims, quota usage and change notifications
//!   (`subscribe_changes`).
//! * [`Queue`]: the outbound queue, from claiming due entries (leases) to delivered, bounced or
//!   deleted.
//! * [`Deliver`]: accepting a message: the INBOX entries of its local recipients and the queue
//!   rows of its remote ones in one transaction, the one write that spans two roles.
//! * [`SharedState`]: what would otherwise live in one process's memory or files but every node
//!   must see the same: windowed counters (authentication throttling), leases with an owner and
//!   an expiry (POP3 maildrop locks), a key/value cache with expiry (MTA-STS policies) and the
//!   TLS-RPT counts per day with their "sent" marks.
//!
//! The crate is storage only: it does not check that a caller may use an account or mailbox
//! (the protocol servers pass only the authenticated account and the ids they got for it),
//! hashes no passwords and parses no messages.
//!
//! Must never: lose an acknowledged delivery, make a half-written delivery visible, hand out an
//! id (account, mailbox, blob, queue entry, UID, UIDVALIDITY) a second time, or panic on bad data.
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
//!   `VANISHED (EARLIER)` ([`Mailstore::changes_since`]).
//! * IMAP4rev1 `\Recent` (RFC 3501 §2.3.2) is one watermark per mailbox, as in Cyrus: the UIDs
//!   from its `recent_uid` up to UIDNEXT have not been announced to any read-write session yet
//!   and are `\Recent`; the first session to be notified takes them with
//!   [`Mailstore::claim_recent`], which moves the watermark to UIDNEXT. A new mailbox starts at 1,
//!   so appended, copied and delivered messages are recent until claimed.
//! * Message bodies are blobs stored once; appends, copies and moves reference them; a blob is
//!   freed with its last reference. Blob, mailbox and account ids are never reused.
//! * Flags are normalised by [`rules::FlagSet`]: system flags plus at most
//!   [`rules::MAX_KEYWORDS`] keywords per message, case-insensitively unique.
//! * Every write is one transaction of its own (sharing the commit with concurrent writes);
//!   after it, [`Mailstore::subscribe_changes`] receivers learn which mailboxes changed.

#[cfg(feature = "conformance")]
pub mod conformance;
mod deliver;
mod directory;
mod mailstore;
mod message_data;
mod queue;
pub mod rules;
mod shared_state;
pub mod sqlite;

pub use deliver::{Deliver, Delivery, DeliveryReceipt, QueueParams};
pub use directory::{Account, Alias, DEFAULT_MAILBOXES, Directory};
pub use mailstore::{
    AppendUid, Changes, CopyUids, Expunge, FlagOp, FlagUpdate, FlagsResult, Mailbox,
    MailboxChanged, MailboxStatus, Mailstore, MessageEntry, Usage,
};
pub use message_data::MessageData;
pub use queue::{
    DsnParams, DueDomain, Queue, QueueAttempt, QueueEntry, QueueSelect, recipient_domain,
};
pub use shared_state::{
    MAX_CACHE_VALUE, MAX_REPORT_FIELD, MAX_STATE_KEY, SharedState, TlsReportCount,
};

pub type AccountId = i64;
pub type MailboxId = i64;
pub type BlobId = i64;

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

/// The whole storage abstraction: every role, implemented by one backend on one database.
///
/// Nothing to implement: every type with all the roles is a `Store`. Callers keep an
/// `Arc<dyn Store>` and call any role's methods on it (a trait object's supertrait methods need
/// no import); code that needs one role only can take `&dyn Queue` etc. (trait upcasting).
pub trait Store:
    Directory + Mailstore + Deliver + Queue + SharedState + Send + Sync + 'static
{
}

impl<T> Store for T where
    T: Directory + Mailstore + Deliver + Queue + SharedState + Send + Sync + 'static
{
}
