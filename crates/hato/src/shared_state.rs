//! hato-delivery's shared-state traits implemented over the store ([`hato_store::SharedState`]),
//! so what outbound delivery keeps beyond one process is shared by every node of one database:
//! [`StorePolicyCache`] holds the MTA-STS policies (cache keys `mta-sts:<domain>`).
//!
//! hato-delivery does not depend on hato-store; this module is the only place both meet.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hato_delivery::state::{PolicyCache, StateError};
use hato_store::{Store, StoreError};
use hato_wire::date::unix_now;

fn backend(e: StoreError) -> StateError {
    StateError::Backend(e.to_string())
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The MTA-STS policy cache in the store's key/value cache, with the policy's expiry.
pub struct StorePolicyCache {
    store: Arc<dyn Store>,
}

impl StorePolicyCache {
    pub fn new(store: Arc<dyn Store>) -> StorePolicyCache {
        StorePolicyCache { store }
    }

    /// The store's cache key of a domain's policy.
    pub fn key(domain: &str) -> String {
        format!("mta-sts:{domain}")
    }
}

#[async_trait]
impl PolicyCache for StorePolicyCache {
    async fn load(&self, domain: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.store
            .cache_get(&Self::key(domain), unix_now())
            .await
            .map_err(backend)
    }

    async fn save(
        &self,
        domain: &str,
        entry: &[u8],
        expires: SystemTime,
    ) -> Result<(), StateError> {
        self.store
            .cache_put(&Self::key(domain), entry, unix_secs(expires))
            .await
            .map_err(backend)
    }

    async fn remove(&self, domain: &str) -> Result<(), StateError> {
        self.store
            .cache_delete(&Self::key(domain))
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn policy_cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(hato_store::sqlite::SqliteStore::open(&dir.path().join("hato.db")).unwrap());
        let cache = StorePolicyCache::new(store.clone());
        assert_eq!(cache.load("example.com").await.unwrap(), None);
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        cache.save("example.com", b"entry", later).await.unwrap();
        assert_eq!(
            cache.load("example.com").await.unwrap(),
            Some(b"entry".to_vec())
        );
        assert_eq!(
            store
                .cache_get("mta-sts:example.com", unix_now())
                .await
                .unwrap(),
            Some(b"entry".to_vec())
        );
        cache
            .save("old.example", b"entry", SystemTime::now())
            .await
            .unwrap();
        assert_eq!(cache.load("old.example").await.unwrap(), None, "expired");
        cache.remove("example.com").await.unwrap();
        assert_eq!(cache.load("example.com").await.unwrap(), None);
    }
}
