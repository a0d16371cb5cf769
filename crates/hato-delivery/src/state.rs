//! What outbound delivery keeps beyond one process: the MTA-STS policy cache
//! ([`PolicyCache`]). Several hato nodes on one database must share it, so this crate only
//! defines the trait and the `hato` crate implements it over its store (this crate does not
//! know the store). The in-memory implementation here serves tests and callers without a store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

/// A failure of the storage behind a [`PolicyCache`]. Callers log it and go on as if nothing
/// was cached (the state is a cache or a count, never needed to deliver).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("shared state storage: {0}")]
    Backend(String),
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
