//! hato-delivery's shared-state traits implemented over the store ([`hato_store::SharedState`]),
//! so what outbound delivery keeps beyond one process is shared by every node of one database:
//! [`StorePolicyCache`] holds the MTA-STS policies (cache keys `mta-sts:<domain>`),
//! [`StoreReportLedger`] the TLS-RPT counts and sent marks (days as UTC days since 1970-01-01).
//!
//! hato-delivery does not depend on hato-store; this module is the only place both meet.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hato_delivery::state::{PolicyCache, ReportCount, ReportLedger, StateError};
use hato_store::{Store, StoreError, TlsReportCount};
use hato_wire::date::unix_now;
use time::Date;

fn backend(e: StoreError) -> StateError {
    match e {
        StoreError::Invalid(why) => StateError::Invalid(why),
        other => StateError::Backend(other.to_string()),
    }
}

/// The Julian day number of 1970-01-01: the store counts days from there.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// A day as the store keeps it: UTC days since 1970-01-01.
pub fn store_day(day: Date) -> i64 {
    i64::from(day.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

fn date_of(day: i64) -> Result<Date, StateError> {
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|julian| Date::from_julian_day(julian).ok())
        .ok_or_else(|| StateError::Backend(format!("stored day {day} out of range")))
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

/// The TLS-RPT counts in the store's report tables.
pub struct StoreReportLedger {
    store: Arc<dyn Store>,
}

impl StoreReportLedger {
    pub fn new(store: Arc<dyn Store>) -> StoreReportLedger {
        StoreReportLedger { store }
    }
}

#[async_trait]
impl ReportLedger for StoreReportLedger {
    async fn add(&self, counts: Vec<ReportCount>) -> Result<(), StateError> {
        let counts = counts
            .into_iter()
            .map(|c| TlsReportCount {
                day: store_day(c.day),
                domain: c.domain,
                policy: c.policy,
                result: c.result,
                successful: c.successful,
                failed: c.failed,
            })
            .collect();
        self.store.tls_report_add(counts).await.map_err(backend)
    }

    async fn due(&self, from: Date, before: Date) -> Result<Vec<(Date, String)>, StateError> {
        self.store
            .tls_report_due(store_day(from), store_day(before))
            .await
            .map_err(backend)?
            .into_iter()
            .map(|(day, domain)| Ok((date_of(day)?, domain)))
            .collect()
    }

    async fn counts(&self, day: Date, domain: &str) -> Result<Vec<ReportCount>, StateError> {
        self.store
            .tls_report_counts(store_day(day), domain)
            .await
            .map_err(backend)?
            .into_iter()
            .map(|c| {
                Ok(ReportCount {
                    day: date_of(c.day)?,
                    domain: c.domain,
                    policy: c.policy,
                    result: c.result,
                    successful: c.successful,
                    failed: c.failed,
                })
            })
            .collect()
    }

    async fn mark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError> {
        self.store
            .tls_report_mark_sent(store_day(day), domain, unix_now())
            .await
            .map_err(backend)
    }

    async fn unmark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError> {
        self.store
            .tls_report_unmark_sent(store_day(day), domain)
            .await
            .map_err(backend)
    }

    async fn prune(&self, before: Date) -> Result<u64, StateError> {
        self.store
            .tls_report_prune(store_day(before))
            .await
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(hato_store::sqlite::SqliteStore::open(&dir.join("hato.db")).unwrap())
    }

    #[test]
    fn days_count_from_the_unix_epoch() {
        use time::macros::date;
        assert_eq!(store_day(date!(1970 - 01 - 01)), 0);
        assert_eq!(store_day(date!(2024 - 05 - 02)), 1_714_608_000 / 86_400);
        assert_eq!(date_of(19_845).unwrap(), date!(2024 - 05 - 02));
        assert_eq!(date_of(-1).unwrap(), date!(1969 - 12 - 31));
        assert!(date_of(i64::MAX / 2).is_err());
    }

    /// Two recorders on one store (two nodes): their counts make one report, which only one
    /// of them claims.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_share_the_tls_report_counts() {
        use hato_delivery::tlsrpt::{
            PolicyDesc, Recorder, RecorderOptions, SessionEvent, SessionResult,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let node = || {
            Recorder::with_options(
                Arc::new(StoreReportLedger::new(store.clone())),
                RecorderOptions {
                    flush_interval: None,
                },
            )
        };
        let (a, b) = (node(), node());
        let yesterday = hato_delivery::tlsrpt::today().previous_day().unwrap();
        for (recorder, n) in [(&a, 2), (&b, 3)] {
            for _ in 0..n {
                recorder.record(SessionEvent {
                    policy_domain: "remote.example".into(),
                    policy: PolicyDesc::no_policy_found(),
                    day: yesterday,
                    result: SessionResult::Success,
                });
            }
            recorder.flush().await.unwrap();
        }
        let today = hato_delivery::tlsrpt::today();
        let due = b.due_reports(today).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0, due[0].1.as_str()), (yesterday, "remote.example"));
        assert_eq!(due[0].2.total_successful(), 5);
        let (claim_a, claim_b) = tokio::join!(
            a.claim(yesterday, "remote.example"),
            b.claim(yesterday, "remote.example")
        );
        assert!(claim_a.unwrap() ^ claim_b.unwrap(), "claimed by one node");
        assert!(a.due_reports(today).await.unwrap().is_empty());
        assert!(matches!(
            a.claim(yesterday, "").await,
            Err(StateError::Invalid(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn policy_cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
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
