//! What outbound delivery keeps beyond one process: the MTA-STS policy cache
//! ([`PolicyCache`]) and the TLS-RPT counts with their "sent" marks ([`ReportLedger`]).
//! Several hato nodes on one database must share them, so this crate only defines the traits
//! and the `hato` crate implements them over its store (this crate does not know the store).
//! The in-memory implementations here serve tests and callers without a store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use time::Date;

/// A failure of the storage behind a [`PolicyCache`] or [`ReportLedger`]. Callers log it and go on as if nothing
/// was cached (the state is a cache or a count, never needed to deliver).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("shared state storage: {0}")]
    Backend(String),
    /// The caller passed something that cannot be stored (e.g. an empty domain).
    #[error("invalid shared state request: {0}")]
    Invalid(String),
}

/// Persistent, shared storage of MTA-STS policies (RFC 8461 5.1: "senders SHOULD cache
/// ... persistently"), one opaque entry per policy domain (lower-case A-labels, no trailing
/// dot). [`StsResolver`](crate::mta_sts_fetch::StsResolver) writes the entry (format, checks
/// and expiry are its business) and keeps a copy in memory; the cache lets a restarted process,
/// or another node, start from the same policies.
#[async_trait]
pub trait PolicyCache: Send + Sync {
    /// The entry of `domain`, unless there is none or its expiry has passed.
    async fn load(&self, domain: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Stores the entry of `domain` (replacing any) until `expires`.
    async fn save(&self, domain: &str, entry: &[u8], expires: SystemTime)
    -> Result<(), StateError>;
    /// Removes the entry of `domain` (an unusable one).
    async fn remove(&self, domain: &str) -> Result<(), StateError>;
}

/// A [`PolicyCache`] in process memory: for tests, and where nothing needs to outlive the
/// process. Clones share nothing; share one through an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryPolicyCache {
    entries: Mutex<HashMap<String, (Vec<u8>, SystemTime)>>,
}

impl MemoryPolicyCache {
    /// How many entries are kept (expired ones included until loaded).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, SystemTime)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl PolicyCache for MemoryPolicyCache {
    async fn load(&self, domain: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut entries = self.lock();
        match entries.get(domain) {
            Some((_, expires)) if *expires <= SystemTime::now() => {
                entries.remove(domain);
                Ok(None)
            }
            Some((entry, _)) => Ok(Some(entry.clone())),
            None => Ok(None),
        }
    }

    async fn save(
        &self,
        domain: &str,
        entry: &[u8],
        expires: SystemTime,
    ) -> Result<(), StateError> {
        self.lock()
            .insert(domain.to_owned(), (entry.to_vec(), expires));
        Ok(())
    }

    async fn remove(&self, domain: &str) -> Result<(), StateError> {
        self.lock().remove(domain);
        Ok(())
    }
}

/// Counts to add for one UTC day, policy domain, policy and result of TLS reporting. `policy`
/// and `result` are text the [`Recorder`](crate::tlsrpt::Recorder) writes and reads back
/// (a ledger only adds up the counts of equal keys): `result` is empty for a policy's summary
/// counts and names a failure detail otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReportCount {
    pub day: Date,
    /// Lower-case A-labels, no trailing dot.
    pub domain: String,
    pub policy: String,
    pub result: String,
    pub successful: u64,
    pub failed: u64,
}

/// Shared storage of the TLS-RPT counts (RFC 8460) and of which reports went out, so the
/// sessions of every node count towards one report per day and domain, and that report is sent
/// once, by one node.
#[async_trait]
pub trait ReportLedger: Send + Sync {
    /// Adds counts (equal keys add up), all or nothing.
    async fn add(&self, counts: Vec<ReportCount>) -> Result<(), StateError>;
    /// The (day, domain) pairs with counts on days `from..before` not marked sent, by day
    /// then domain.
    async fn due(&self, from: Date, before: Date) -> Result<Vec<(Date, String)>, StateError>;
    /// The counts of one day and domain, by policy then result.
    async fn counts(&self, day: Date, domain: &str) -> Result<Vec<ReportCount>, StateError>;
    /// Marks the report of (day, domain) sent: true if this call marked it, false if it was
    /// marked already (by this node or another).
    async fn mark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError>;
    /// Takes a mark back (the report could not be sent); false if there was none.
    async fn unmark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError>;
    /// Removes the counts and marks of days before `before`; returns how many entries.
    async fn prune(&self, before: Date) -> Result<u64, StateError>;
}

type CountKey = (Date, String, String, String);

/// A [`ReportLedger`] in process memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryReportLedger {
    inner: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// (successful, failed) per key.
    counts: BTreeMap<CountKey, (u64, u64)>,
    sent: BTreeSet<(Date, String)>,
}

impl MemoryReportLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ReportLedger for MemoryReportLedger {
    async fn add(&self, counts: Vec<ReportCount>) -> Result<(), StateError> {
        let mut ledger = self.lock();
        for c in counts {
            let entry = ledger
                .counts
                .entry((c.day, c.domain, c.policy, c.result))
                .or_default();
            entry.0 = entry.0.saturating_add(c.successful);
            entry.1 = entry.1.saturating_add(c.failed);
        }
        Ok(())
    }

    async fn due(&self, from: Date, before: Date) -> Result<Vec<(Date, String)>, StateError> {
        let ledger = self.lock();
        let due: BTreeSet<(Date, String)> = ledger
            .counts
            .keys()
            .filter(|(day, ..)| *day >= from && *day < before)
            .map(|(day, domain, ..)| (*day, domain.clone()))
            .filter(|key| !ledger.sent.contains(key))
            .collect();
        Ok(due.into_iter().collect())
    }

    async fn counts(&self, day: Date, domain: &str) -> Result<Vec<ReportCount>, StateError> {
        Ok(self
            .lock()
            .counts
            .iter()
            .filter(|((d, n, ..), _)| *d == day && n == domain)
            .map(
                |((day, domain, policy, result), (successful, failed))| ReportCount {
                    day: *day,
                    domain: domain.clone(),
                    policy: policy.clone(),
                    result: result.clone(),
                    successful: *successful,
                    failed: *failed,
                },
            )
            .collect())
    }

    async fn mark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError> {
        Ok(self.lock().sent.insert((day, domain.to_owned())))
    }

    async fn unmark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError> {
        Ok(self.lock().sent.remove(&(day, domain.to_owned())))
    }

    async fn prune(&self, before: Date) -> Result<u64, StateError> {
        let mut ledger = self.lock();
        let before_len = ledger.counts.len() + ledger.sent.len();
        ledger.counts.retain(|(day, ..), _| *day >= before);
        ledger.sent.retain(|(day, _)| *day >= before);
        Ok((before_len - ledger.counts.len() - ledger.sent.len()) as u64)
    }
}
