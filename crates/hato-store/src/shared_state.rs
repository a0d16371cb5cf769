//! The [`SharedState`] role: the small, short-lived state every hato node must see the same.

use async_trait::async_trait;

use crate::Result;

/// Longest key of a counter, lease or cache entry, in bytes. Callers hash longer inputs (a
/// key often carries a client-chosen name, and a key is stored and indexed as given).
pub const MAX_STATE_KEY: usize = 512;
/// Largest cache value, in bytes (an MTA-STS policy is at most 64 KiB).
pub const MAX_CACHE_VALUE: usize = 256 * 1024;
/// Longest `policy` or `result` of a [`TlsReportCount`], in bytes.
pub const MAX_REPORT_FIELD: usize = 256 * 1024;

/// Counts to add for one UTC day, policy domain, policy and result of TLS reporting
/// (RFC 8460). The store does not interpret `policy` and `result`: it adds the counts of equal
/// keys and hands them back; the delivery code decides what they describe (e.g. `result` ""
/// for a policy's summary counts and a failure detail otherwise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsReportCount {
    /// UTC days since 1970-01-01.
    pub day: i64,
    /// The policy domain; stored as given (the caller normalises it).
    pub domain: String,
    pub policy: String,
    pub result: String,
    pub successful: u64,
    pub failed: u64,
}

/// State that lives in process memory on a single server but must be shared once several hato
/// nodes serve one database: authentication-failure counters, exclusive leases (POP3 maildrop
/// locks), a key/value cache with expiry (MTA-STS policies) and the TLS-RPT day counts.
///
/// Times are Unix seconds passed in by the caller (as for [`Queue`](crate::Queue)), so every
/// node should run with a synchronised clock; nothing here reads the clock itself. Expired
/// entries behave as absent at once; [`SharedState::prune_expired`] deletes them (call it
/// periodically), and each counter bump and lease acquisition also removes a few expired
/// counters or leases, so the keys clients choose (an IP address per failed login) cannot grow
/// those tables beyond what is live.
///
/// Keys are at most [`MAX_STATE_KEY`] bytes (else [`StoreError::Invalid`]); the key spaces of
/// counters, leases and the cache are separate. Durations must be positive (else `Invalid`).
///
/// [`StoreError::Invalid`]: crate::StoreError::Invalid
#[async_trait]
pub trait SharedState: Send + Sync {
    // -- Windowed counters (authentication throttling).

    /// Adds one to the counter `key` and returns its new value. A counter lives for a fixed
    /// window from its first count: an absent or expired counter starts again at 1 and expires
    /// at `now + window_secs`; later bumps keep that expiry.
    async fn counter_bump(&self, key: &str, window_secs: i64, now: i64) -> Result<u32>;
    /// The counter's value at `now` (0 if absent or expired).
    async fn counter(&self, key: &str, now: i64) -> Result<u32>;
    /// Takes one count back (an attempt counted in advance with `counter_bump` that turned out
    /// not to count) and returns the new value, never below 0. An absent or expired counter
    /// stays absent; the expiry does not change.
    async fn counter_release(&self, key: &str, now: i64) -> Result<u32>;
    /// Removes a counter; false if there was none.
    async fn counter_reset(&self, key: &str) -> Result<bool>;

    // -- Leases (exclusive locks that expire unless renewed).

    /// Takes the lease `name` for `owner` until `now + ttl_secs`, atomically: true if it was
    /// free, expired or already held by `owner` (then it is renewed); false if another owner
    /// holds it unexpired. Owners must be unique per holder (e.g. per session and node).
    async fn lease_acquire(&self, name: &str, owner: &str, ttl_secs: i64, now: i64)
    -> Result<bool>;
    /// Extends `owner`'s lease to `now + ttl_secs`; false if `owner` no longer holds it (it
    /// expired and another owner took it, or it was released).
    async fn lease_renew(&self, name: &str, owner: &str, ttl_secs: i64, now: i64) -> Result<bool>;
    /// Ends `owner`'s lease; false if `owner` did not hold it.
    async fn lease_release(&self, name: &str, owner: &str) -> Result<bool>;

    // -- Cache: small values with an expiry.

    /// Stores `value` under `key` (replacing any), valid until `expires` (Unix seconds).
    /// Values above [`MAX_CACHE_VALUE`] are `Invalid`.
    async fn cache_put(&self, key: &str, value: &[u8], expires: i64) -> Result<()>;
    /// The value of `key` if it has not expired at `now`.
    async fn cache_get(&self, key: &str, now: i64) -> Result<Option<Vec<u8>>>;
    /// Removes `key`; false if there was no such entry (expired entries count as present until
    /// pruned).
    async fn cache_delete(&self, key: &str) -> Result<bool>;

    // -- TLS report counts (RFC 8460).

    /// Adds counts, in one transaction: a key (day, domain, policy, result) seen before gets
    /// the counts added, a new one is inserted. Nothing is added if one count is invalid.
    async fn tls_report_add(&self, counts: Vec<TlsReportCount>) -> Result<()>;
    /// The (day, domain) pairs with counts on days `from_day..before_day` whose report was not
    /// marked sent, by day then domain.
    async fn tls_report_due(&self, from_day: i64, before_day: i64) -> Result<Vec<(i64, String)>>;
    /// Every count of one day and domain, ordered by policy then result.
    async fn tls_report_counts(&self, day: i64, domain: &str) -> Result<Vec<TlsReportCount>>;
    /// Marks the report of (day, domain) sent at `now`: true if this call marked it, false if
    /// it was marked before (by this node or another), so a report goes out at most once.
    async fn tls_report_mark_sent(&self, day: i64, domain: &str, now: i64) -> Result<bool>;
    /// Takes a mark back (the report could not be sent after all, so it is due again); false
    /// if there was none.
    async fn tls_report_unmark_sent(&self, day: i64, domain: &str) -> Result<bool>;
    /// Removes the counts and sent marks of days before `before_day`; returns how many rows.
    async fn tls_report_prune(&self, before_day: i64) -> Result<u64>;

    // -- Housekeeping.

    /// Deletes every counter, lease and cache entry that expired at `now`; returns how many.
    async fn prune_expired(&self, now: i64) -> Result<u64>;
}
