//! The [`Queue`] role: the outbound queue.

use async_trait::async_trait;

use crate::{BlobId, Result};

/// One remote recipient of a queued message.
///
/// # Queue life cycle and crash safety
///
/// A scheduler claims due entries with [`Queue::due_queue`], which leases them (`leased_until`)
/// and bumps their `claim` token, so another scheduler (thread or process) on the same store does
/// not take them while the lease runs. After the attempt it calls [`Queue::queue_delivered`]
/// (success or a generated bounce: the entry and, with its last reference, the blob go) or
/// [`Queue::record_attempt`] (failure: next attempt time, error, TLS facts). Both only act while
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
    /// A bounce was requested ([`Queue::queue_bounce`]): the scheduler should generate a DSN
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

/// The due entries of one destination domain claimed by [`Queue::due_queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDomain {
    /// Lower-case destination domain.
    pub domain: String,
    /// Ordered by blob (message) then id, so recipients of one message are adjacent and can
    /// share one SMTP transaction.
    pub entries: Vec<QueueEntry>,
}

/// The result of one failed (or deferred) delivery attempt, for [`Queue::record_attempt`].
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

/// Which entries [`Queue::retry_now`] makes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSelect {
    Id(i64),
    All,
}

/// The outbound queue: the remote recipients of accepted messages until they are delivered or
/// bounced (see [`QueueEntry`] for the life cycle and crash safety).
///
/// Users: the delivery scheduler, the CLI (`hato queue`). Entries are created only by
/// [`Deliver`](crate::Deliver); a queued message's bytes are read with
/// [`Mailstore::blob`](crate::Mailstore::blob) (the blob store is shared).
#[async_trait]
pub trait Queue: Send + Sync {
    /// The outbound queue, oldest first.
    async fn queue(&self) -> Result<Vec<QueueEntry>>;
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
    /// and removes the entry with [`Queue::queue_delivered`].
    async fn queue_bounce(&self, id: i64, reason: &str, now: i64) -> Result<bool>;
    /// Makes entries due at `now` (`hato queue retry ID|--all`) without breaking running leases
    /// (an attempt running meanwhile sets the next attempt from its own result); returns how
    /// many entries were changed.
    async fn retry_now(&self, which: QueueSelect, now: i64) -> Result<u64>;
    /// Ends every lease at once (claims become stale), so entries a crashed process had claimed
    /// are due again without waiting for their lease to run out. Only for the one scheduler of a
    /// data directory, at its start; returns how many leases were released.
    async fn release_leases(&self) -> Result<u64>;
}
