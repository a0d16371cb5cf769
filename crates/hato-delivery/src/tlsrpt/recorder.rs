//! The recorder: [`Recorder`] counts sessions in memory and adds them every few seconds to a
//! [`ReportLedger`] (the server's store, shared by every node), and decides with it which
//! reports are due, which went out ([`Recorder::claim`]) and which days are dropped.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use time::Date;
use tracing::{debug, warn};

use super::json::{detail_from_key, detail_key, policy_from_key, policy_key};
use super::model::{Aggregate, SessionEvent, SessionResult, clean_field};
use super::normalize_domain;
use super::report::days_before;
use crate::state::{ReportCount, ReportLedger, StateError};

/// How often the recorder's background task adds new counts to the ledger by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How many complete days back [`Recorder::due_reports`] looks: yesterday and the day before (a
/// report missed by an outage over midnight is still sent; older ones are not).
pub const DUE_WINDOW_DAYS: i64 = 2;
/// Counts and sent marks older than this many days are removed by [`Recorder::prune`].
pub const KEEP_DAYS: i64 = 7;

/// Settings of a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// How often a background task adds new counts to the ledger; None: no task, only
    /// [`Recorder::flush`] (and dropping the last handle) write.
    pub flush_interval: Option<Duration>,
}

impl Default for RecorderOptions {
    fn default() -> RecorderOptions {
        RecorderOptions {
            flush_interval: Some(DEFAULT_FLUSH_INTERVAL),
        }
    }
}

/// Counts TLS sessions for the reports. Cheap to clone (one shared state) and to call from many
/// tasks: [`Recorder::record`] takes a mutex for a map update, never does I/O. A crash loses
/// at most the counts of the last flush interval.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

struct Inner {
    ledger: Arc<dyn ReportLedger>,
    /// Counts not yet in the ledger, per (day, domain).
    pending: Mutex<HashMap<(Date, String), Aggregate>>,
    /// Serialises flushes, so counts put back after a failed write are not overtaken.
    flushing: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    /// The last handle is gone: what is pending goes to the ledger in the background (there is
    /// no waiting for I/O in a drop); without a runtime it is lost, like a crash would lose it.
    fn drop(&mut self) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let ledger = self.ledger.clone();
            runtime.spawn(async move {
                if let Err(e) = ledger.add(rows(&pending)).await {
                    warn!("TLS-RPT: cannot store the last counts: {e}");
                }
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ledger rows of pending aggregates: per policy one summary row (`result` "") and one
/// row per failure detail (its count in `failed`).
fn rows(pending: &HashMap<(Date, String), Aggregate>) -> Vec<ReportCount> {
    let mut out = Vec::new();
    for ((day, domain), aggregate) in pending {
        for (policy, counts) in &aggregate.policies {
            let policy = policy_key(domain, policy);
            out.push(ReportCount {
                day: *day,
                domain: domain.clone(),
                policy: policy.clone(),
                result: String::new(),
                successful: counts.successful,
                failed: counts.failed,
            });
            for (detail, n) in &counts.failure_details {
                out.push(ReportCount {
                    day: *day,
                    domain: domain.clone(),
                    policy: policy.clone(),
                    result: detail_key(detail),
                    successful: 0,
                    failed: *n,
                });
            }
        }
    }
    out
}

/// Ledger rows back into an aggregate (with its caps); rows that do not parse are skipped
/// with a warning.
fn aggregate(rows: Vec<ReportCount>) -> Aggregate {
    let mut out = Aggregate::default();
    let mut skipped = 0usize;
    for row in rows {
        let Some(policy) = policy_from_key(&row.policy) else {
            skipped += 1;
            continue;
        };
        if row.result.is_empty() {
            out.add_counts(policy, row.successful, row.failed, std::iter::empty());
        } else if let Some(detail) = detail_from_key(&row.result) {
            out.add_counts(policy, 0, 0, std::iter::once((detail, row.failed)));
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        warn!("TLS-RPT: skipped {skipped} unreadable stored count(s)");
    }
    out
}

impl Recorder {
    /// A recorder adding to `ledger`, flushing every [`DEFAULT_FLUSH_INTERVAL`] from a
    /// background task (when created inside a tokio runtime).
    pub fn new(ledger: Arc<dyn ReportLedger>) -> Recorder {
        Recorder::with_options(ledger, RecorderOptions::default())
    }

    pub fn with_options(ledger: Arc<dyn ReportLedger>, options: RecorderOptions) -> Recorder {
        let inner = Arc::new(Inner {
            ledger,
            pending: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
        });
        if let Some(interval) = options.flush_interval {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let weak: Weak<Inner> = Arc::downgrade(&inner);
                    runtime.spawn(async move {
                        loop {
                            tokio::time::sleep(interval).await;
                            let Some(inner) = weak.upgrade() else { break };
                            if let Err(e) = inner.flush().await {
                                warn!("TLS-RPT: cannot store the counts: {e}");
                            }
                        }
                    });
                }
                Err(_) => warn!("TLS-RPT: no runtime, the counts are stored only when flushed"),
            }
        }
        Recorder { inner }
    }

    /// Counts one session. Strings are cleaned (control characters, length) and host names
    /// lower-cased; an event without a policy domain is ignored.
    pub fn record(&self, event: SessionEvent) {
        let domain = clean_field(&normalize_domain(&event.policy_domain));
        if domain.is_empty() {
            return;
        }
        let policy = event.policy.cleaned();
        let result = match event.result {
            SessionResult::Success => SessionResult::Success,
            SessionResult::Failure(detail) => SessionResult::Failure(detail.cleaned()),
        };
        let mut pending = lock(&self.inner.pending);
        let aggregate = pending.entry((event.day, domain)).or_default();
        if !aggregate.add(policy, result) {
            debug!("TLS-RPT: too many policies for one domain and day, session not counted");
        }
    }

    /// Adds the counts recorded so far to the ledger. On an error the counts stay pending for
    /// the next flush.
    pub async fn flush(&self) -> Result<(), StateError> {
        self.inner.flush().await
    }

    /// The counts of one day and domain stored so far (call [`Recorder::flush`] first for what
    /// is pending).
    pub async fn counts(&self, day: Date, domain: &str) -> Result<Aggregate, StateError> {
        let rows = self
            .inner
            .ledger
            .counts(day, &normalize_domain(domain))
            .await?;
        Ok(aggregate(rows))
    }

    /// The reports to send: for each complete day before `today` (at most [`DUE_WINDOW_DAYS`]
    /// back), each domain with counted sessions whose report was not marked sent, with its
    /// counts. Oldest day first, domains in order. Flushes first, so the last seconds of the
    /// day are included.
    pub async fn due_reports(
        &self,
        today: Date,
    ) -> Result<Vec<(Date, String, Aggregate)>, StateError> {
        self.flush().await?;
        let oldest = days_before(today, DUE_WINDOW_DAYS);
        let mut out = Vec::new();
        for (day, domain) in self.inner.ledger.due(oldest, today).await? {
            let aggregate = aggregate(self.inner.ledger.counts(day, &domain).await?);
            if !aggregate.is_empty() {
                out.push((day, domain, aggregate));
            }
        }
        Ok(out)
    }

    /// Claims the report of `domain` for `day` before it is sent (or because none must be: no
    /// TLSRPT record): true if this call marked it sent, false if another node (or an earlier
    /// run) did, so each report goes out at most once. [`Recorder::due_reports`] no longer
    /// returns it. A report that could not be sent after all is handed back with
    /// [`Recorder::unclaim`].
    pub async fn claim(&self, day: Date, domain: &str) -> Result<bool, StateError> {
        let domain = checked_domain(domain)?;
        self.inner.ledger.mark_sent(day, &domain).await
    }

    /// Takes a claim back: the report is due again at the next look.
    pub async fn unclaim(&self, day: Date, domain: &str) -> Result<bool, StateError> {
        let domain = checked_domain(domain)?;
        self.inner.ledger.unmark_sent(day, &domain).await
    }

    /// Removes counts and sent marks of days before `today - KEEP_DAYS`; returns how many
    /// entries went.
    pub async fn prune(&self, today: Date) -> Result<u64, StateError> {
        self.inner.ledger.prune(days_before(today, KEEP_DAYS)).await
    }
}

fn checked_domain(domain: &str) -> Result<String, StateError> {
    let domain = normalize_domain(domain);
    if domain.is_empty() || domain.contains(['\n', '\r']) {
        return Err(StateError::Invalid(format!("invalid domain {domain:?}")));
    }
    Ok(domain)
}

impl Inner {
    async fn flush(&self) -> Result<(), StateError> {
        let _flushing = self.flushing.lock().await;
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        let result = self.ledger.add(rows(&pending)).await;
        if result.is_err() {
            // Nothing was added (all or nothing): keep the counts for the next flush.
            let mut now = lock(&self.pending);
            for ((day, domain), aggregate) in pending {
                now.entry((day, domain)).or_default().merge(aggregate);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::date;

    use super::*;
    use crate::state::MemoryReportLedger;
    use crate::tlsrpt::test_support::{event, failure, quiet, sts_policy, success};
    use crate::tlsrpt::{FailureType, PolicyDesc};

    /// The counts of a day per domain, as the ledger has them.
    async fn load_day(
        rec: &Recorder,
        ledger: &MemoryReportLedger,
        day: Date,
    ) -> BTreeMap<String, Aggregate> {
        let mut out = BTreeMap::new();
        let next = day.next_day().unwrap();
        let due = ledger.due(day, next).await.unwrap();
        for (_, domain) in due {
            out.insert(domain.clone(), rec.counts(day, &domain).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn aggregation_per_domain_day_policy_and_detail() {
        let (rec, ledger) = quiet();
        let day = date!(2024 - 05 - 01);
        for _ in 0..3 {
            rec.record(success("Example.COM.", day, sts_policy()));
        }
        for _ in 0..2 {
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Failure(failure(FailureType::CertificateExpired, "MX1.example.com")),
            ));
        }
        rec.record(event(
            "example.com",
            day,
            sts_policy(),
            SessionResult::Failure(failure(
                FailureType::StarttlsNotSupported,
                "mx2.example.com",
            )),
        ));
        rec.record(success("example.com", day, PolicyDesc::no_policy_found()));
        rec.record(success("other.example", day, PolicyDesc::no_policy_found()));
        rec.record(success("example.com", date!(2024 - 05 - 02), sts_policy()));
        rec.record(success("", day, sts_policy()));
        rec.flush().await.unwrap();

        let loaded = load_day(&rec, &ledger, day).await;
        assert_eq!(
            loaded.keys().collect::<Vec<_>>(),
            ["example.com", "other.example"]
        );
        let agg = &loaded["example.com"];
        assert_eq!(agg.policies.len(), 2);
        let sts = &agg.policies[&sts_policy()];
        assert_eq!((sts.successful, sts.failed), (3, 3));
        assert_eq!(
            sts.failure_details[&failure(FailureType::CertificateExpired, "mx1.example.com")],
            2
        );
        assert_eq!(
            sts.failure_details[&failure(FailureType::StarttlsNotSupported, "mx2.example.com")],
            1
        );
        assert_eq!(agg.policies[&PolicyDesc::no_policy_found()].successful, 1);
        assert_eq!((agg.total_successful(), agg.total_failed()), (4, 3));
        assert_eq!(
            load_day(&rec, &ledger, date!(2024 - 05 - 02)).await["example.com"].total_successful(),
            1
        );
    }

    /// Counts of several flushes, and of a recorder started later on the same ledger (a
    /// restart, or another node), add up; dropping the last handle stores what is pending;
    /// an unreadable stored count is skipped.
    #[tokio::test]
    async fn counts_survive_a_restart_and_add_up() {
        let ledger = Arc::new(MemoryReportLedger::default());
        let day = date!(2024 - 05 - 01);
        let options = RecorderOptions {
            flush_interval: None,
        };
        {
            let rec = Recorder::with_options(ledger.clone(), options.clone());
            rec.record(success("example.com", day, sts_policy()));
            rec.flush().await.unwrap();
            rec.record(success("example.com", day, sts_policy()));
            // Dropping the last handle flushes too (in the background).
        }
        let rec = Recorder::with_options(ledger.clone(), options);
        let mut waited = 0;
        while rec
            .counts(day, "example.com")
            .await
            .unwrap()
            .total_successful()
            < 2
        {
            waited += 1;
            assert!(waited < 500, "the dropped recorder's counts never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // After the restart, nothing is lost and new counts add up.
        rec.record(event(
            "example.com",
            day,
            sts_policy(),
            SessionResult::Failure(failure(
                FailureType::CertificateNotTrusted,
                "mx.example.com",
            )),
        ));
        rec.flush().await.unwrap();
        let agg = rec.counts(day, "Example.com.").await.unwrap();
        assert_eq!((agg.total_successful(), agg.total_failed()), (2, 1));
        // Garbage stored under the day is skipped as well.
        ledger
            .add(vec![
                ReportCount {
                    day,
                    domain: "example.com".into(),
                    policy: "\u{0}\u{1}garbage".into(),
                    result: String::new(),
                    successful: 5,
                    failed: 0,
                },
                ReportCount {
                    day,
                    domain: "example.com".into(),
                    policy: policy_key("example.com", &sts_policy()),
                    result: "{garbage".into(),
                    successful: 0,
                    failed: 7,
                },
            ])
            .await
            .unwrap();
        let agg = rec.counts(day, "example.com").await.unwrap();
        assert_eq!((agg.total_successful(), agg.total_failed()), (2, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_flush_and_concurrent_recording() {
        let ledger = Arc::new(MemoryReportLedger::default());
        let rec = Recorder::with_options(
            ledger.clone(),
            RecorderOptions {
                flush_interval: Some(Duration::from_millis(20)),
            },
        );
        let day = date!(2024 - 05 - 01);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        let result = if i % 5 == 0 {
                            SessionResult::Failure(failure(
                                FailureType::ValidationFailure,
                                &format!("mx{t}.example.com"),
                            ))
                        } else {
                            SessionResult::Success
                        };
                        rec.record(event("example.com", day, sts_policy(), result));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The background task writes without being asked.
        let mut waited = 0;
        loop {
            let loaded = load_day(&rec, &ledger, day).await;
            let total = loaded
                .get("example.com")
                .map_or(0, |a| a.total_successful() + a.total_failed());
            if total == 1000 {
                let agg = &loaded["example.com"];
                assert_eq!(agg.total_failed(), 200);
                assert_eq!(agg.policies[&sts_policy()].failure_details.len(), 4);
                break;
            }
            waited += 1;
            assert!(
                waited < 500,
                "background flush did not write everything: {total}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A ledger that refuses writes: the counts stay pending and the next flush stores them.
    #[tokio::test]
    async fn a_failed_flush_keeps_the_counts() {
        struct Failing(MemoryReportLedger, std::sync::atomic::AtomicBool);
        #[async_trait::async_trait]
        impl ReportLedger for Failing {
            async fn add(&self, counts: Vec<ReportCount>) -> Result<(), StateError> {
                if self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    return Err(StateError::Backend("disk full".into()));
                }
                self.0.add(counts).await
            }
            async fn due(
                &self,
                from: Date,
                before: Date,
            ) -> Result<Vec<(Date, String)>, StateError> {
                self.0.due(from, before).await
            }
            async fn counts(
                &self,
                day: Date,
                domain: &str,
            ) -> Result<Vec<ReportCount>, StateError> {
                self.0.counts(day, domain).await
            }
            async fn mark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError> {
                self.0.mark_sent(day, domain).await
            }
            async fn unmark_sent(&self, day: Date, domain: &str) -> Result<bool, StateError> {
                self.0.unmark_sent(day, domain).await
            }
            async fn prune(&self, before: Date) -> Result<u64, StateError> {
                self.0.prune(before).await
            }
        }
        let ledger = Arc::new(Failing(
            MemoryReportLedger::default(),
            std::sync::atomic::AtomicBool::new(true),
        ));
        let rec = Recorder::with_options(
            ledger.clone(),
            RecorderOptions {
                flush_interval: None,
            },
        );
        let day = date!(2024 - 05 - 01);
        rec.record(success("example.com", day, sts_policy()));
        assert!(rec.flush().await.is_err());
        rec.record(success("example.com", day, sts_policy()));
        rec.flush().await.unwrap();
        assert_eq!(
            rec.counts(day, "example.com")
                .await
                .unwrap()
                .total_successful(),
            2
        );
    }

    #[tokio::test]
    async fn due_reports_claims_and_prune() {
        let (rec, ledger) = quiet();
        let today = date!(2024 - 05 - 10);
        for (day, domain) in [
            (date!(2024 - 05 - 01), "old.example"),
            (date!(2024 - 05 - 07), "beyond-window.example"),
            (date!(2024 - 05 - 08), "a.example"),
            (date!(2024 - 05 - 09), "b.example"),
            (date!(2024 - 05 - 09), "a.example"),
            (today, "today.example"),
        ] {
            rec.record(success(domain, day, PolicyDesc::no_policy_found()));
        }
        let due = rec.due_reports(today).await.unwrap();
        let keys: Vec<(Date, &str)> = due.iter().map(|(d, n, _)| (*d, n.as_str())).collect();
        assert_eq!(
            keys,
            [
                (date!(2024 - 05 - 08), "a.example"),
                (date!(2024 - 05 - 09), "a.example"),
                (date!(2024 - 05 - 09), "b.example"),
            ]
        );
        assert_eq!(due[0].2.total_successful(), 1);

        assert!(
            rec.claim(date!(2024 - 05 - 09), "A.Example.")
                .await
                .unwrap()
        );
        assert!(
            !rec.claim(date!(2024 - 05 - 09), "a.example").await.unwrap(),
            "claimed once only"
        );
        assert!(rec.claim(date!(2024 - 05 - 08), "a.example").await.unwrap());
        assert!(rec.claim(today, "").await.is_err());
        let due = rec.due_reports(today).await.unwrap();
        let keys: Vec<(Date, &str)> = due.iter().map(|(d, n, _)| (*d, n.as_str())).collect();
        assert_eq!(keys, [(date!(2024 - 05 - 09), "b.example")]);

        // A claim handed back (the report could not be sent): due again, then claimed.
        assert!(rec.claim(date!(2024 - 05 - 09), "b.example").await.unwrap());
        assert!(rec.due_reports(today).await.unwrap().is_empty());
        assert!(
            rec.unclaim(date!(2024 - 05 - 09), "b.example")
                .await
                .unwrap()
        );
        assert_eq!(rec.due_reports(today).await.unwrap().len(), 1);
        assert!(rec.claim(date!(2024 - 05 - 09), "b.example").await.unwrap());
        assert!(rec.due_reports(today).await.unwrap().is_empty());
        // Counts recorded for a sent day later do not bring the report back.
        rec.record(success(
            "b.example",
            date!(2024 - 05 - 09),
            PolicyDesc::no_policy_found(),
        ));
        assert!(rec.due_reports(today).await.unwrap().is_empty());
        // The next day, today's report is due.
        let tomorrow = date!(2024 - 05 - 11);
        let due = rec.due_reports(tomorrow).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0, due[0].1.as_str()), (today, "today.example"));

        // Prune: older than 7 days before the 10th (the 1st) goes, counts and claims alike.
        assert_eq!(rec.prune(today).await.unwrap(), 1);
        assert!(
            rec.counts(date!(2024 - 05 - 01), "old.example")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !rec.counts(date!(2024 - 05 - 07), "beyond-window.example")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(ledger.prune(date!(2024 - 06 - 01)).await.unwrap() > 0);
        assert!(
            rec.due_reports(date!(2024 - 06 - 01))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            rec.claim(date!(2024 - 05 - 09), "b.example").await.unwrap(),
            "claims pruned"
        );
    }
}
