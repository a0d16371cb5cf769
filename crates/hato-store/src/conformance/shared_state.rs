//! Checks of the [`SharedState`](crate::SharedState) role.
//!
//! Keys start with `conf.`, times are around `T` and report days around `DAY`, far from what
//! the other checks use, so these checks do not see the others' state.

use crate::{MAX_CACHE_VALUE, MAX_STATE_KEY, Store, TlsReportCount};

use super::{assert_err, is_invalid};

const T: i64 = 2_000_000_000;
const DAY: i64 = 30_000;

/// A counter counts within its window from the first count, starts again at 1 after it, reads
/// 0 when absent or expired, and is removed by a reset; keys are separate.
pub async fn state_counters(store: &dyn Store) {
    let key = "conf.counter.ip:192.0.2.1";
    assert_eq!(store.counter(key, T).await.expect("counter"), 0);
    for want in 1..=3 {
        let got = store
            .counter_bump(key, 60, T + i64::from(want))
            .await
            .expect("bump");
        assert_eq!(got, want, "bump within the window");
    }
    assert_eq!(store.counter(key, T + 59).await.expect("counter"), 3);
    assert_eq!(
        store.counter("conf.counter.other", T).await.expect("other"),
        0,
        "keys are separate"
    );
    // The window runs from the first count (T + 1), not from the last.
    assert_eq!(
        store.counter(key, T + 61).await.expect("counter"),
        0,
        "expired"
    );
    assert_eq!(
        store.counter_bump(key, 60, T + 61).await.expect("bump"),
        1,
        "a new window starts at 1"
    );
    assert_eq!(store.counter(key, T + 120).await.expect("counter"), 1);
    assert_eq!(
        store.counter(key, T + 121).await.expect("counter"),
        0,
        "the new window runs from its own first count"
    );
    store.counter_bump(key, 60, T + 200).await.expect("bump");
    assert!(store.counter_reset(key).await.expect("reset"));
    assert!(!store.counter_reset(key).await.expect("reset again"));
    assert_eq!(store.counter(key, T + 200).await.expect("counter"), 0);

    assert_err(
        store.counter_bump(key, 0, T).await,
        is_invalid,
        "a window of 0",
    );
    assert_err(
        store.counter_bump("", 60, T).await,
        is_invalid,
        "an empty key",
    );
    let long = "k".repeat(MAX_STATE_KEY + 1);
    assert_err(store.counter(&long, T).await, is_invalid, "a key too long");
    let longest = "k".repeat(MAX_STATE_KEY);
    assert_eq!(store.counter_bump(&longest, 60, T).await.expect("bump"), 1);
    store.counter_reset(&longest).await.expect("reset");
}

/// `counter_release` takes one count back, never below 0, keeps the window, and leaves absent
/// and expired counters absent.
pub async fn state_counter_release(store: &dyn Store) {
    let key = "conf.counter.release";
    assert_eq!(store.counter_release(key, T).await.expect("absent"), 0);
    assert_eq!(store.counter(key, T).await.expect("counter"), 0);
    for _ in 0..2 {
        store.counter_bump(key, 60, T).await.expect("bump");
    }
    assert_eq!(store.counter_release(key, T + 1).await.expect("release"), 1);
    assert_eq!(store.counter_release(key, T + 2).await.expect("release"), 0);
    assert_eq!(store.counter_release(key, T + 3).await.expect("at 0"), 0);
    assert_eq!(store.counter_bump(key, 60, T + 4).await.expect("bump"), 1);
    // The window still runs from the first bump: expired at T + 60.
    assert_eq!(store.counter(key, T + 59).await.expect("counter"), 1);
    assert_eq!(
        store.counter_release(key, T + 60).await.expect("expired"),
        0
    );
    assert_eq!(store.counter_bump(key, 60, T + 61).await.expect("fresh"), 1);
    store.counter_reset(key).await.expect("reset");
    assert_err(
        store.counter_release("", T).await,
        is_invalid,
        "an empty key",
    );
}

/// Concurrent bumps of one counter are all counted (each bump is atomic).
pub async fn state_counter_concurrency(store: &dyn Store) {
    let key = "conf.counter.concurrent";
    let bumps = (0..20).map(|_| store.counter_bump(key, 600, T));
    let mut results: Vec<u32> = futures_join(bumps).await;
    results.sort_unstable();
    assert_eq!(
        results,
        (1..=20).collect::<Vec<u32>>(),
        "every bump counted once"
    );
    assert_eq!(store.counter(key, T).await.expect("counter"), 20);
    store.counter_reset(key).await.expect("reset");
}

/// Runs the futures concurrently (no extra dependency for `join_all`), expecting success.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = crate::Result<T>>,
{
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<T>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match future.as_mut().poll(cx) {
                std::task::Poll::Ready(result) => *slot = Some(result.expect("concurrent call")),
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|r| r.expect("finished")).collect()
}

async fn acquire(store: &dyn Store, name: &str, owner: &str, ttl: i64, now: i64) -> bool {
    store
        .lease_acquire(name, owner, ttl, now)
        .await
        .unwrap_or_else(|e| panic!("lease_acquire({name}, {owner}) failed: {e}"))
}

/// Renews `owner`'s lease `name` for 30 seconds from `now`.
async fn renew(store: &dyn Store, name: &str, owner: &str, now: i64) -> bool {
    store
        .lease_renew(name, owner, 30, now)
        .await
        .unwrap_or_else(|e| panic!("lease_renew({name}, {owner}) failed: {e}"))
}

async fn release(store: &dyn Store, name: &str, owner: &str) -> bool {
    store
        .lease_release(name, owner)
        .await
        .unwrap_or_else(|e| panic!("lease_release({name}, {owner}) failed: {e}"))
}

/// A lease is exclusive while it runs: another owner is refused, its holder may take it again
/// (a renewal) or renew it; after its expiry anyone may take it, and the old holder can no
/// longer renew or release it. A release frees it at once.
pub async fn state_leases(store: &dyn Store) {
    let name = "conf.lease.pop3:1";
    let (a, b) = ("conf.owner.a", "conf.owner.b");
    assert!(acquire(store, name, a, 30, T).await);
    assert!(!acquire(store, name, b, 30, T + 1).await, "held by a");
    assert!(
        acquire(store, name, a, 30, T + 2).await,
        "the holder may take it again"
    );
    assert!(renew(store, name, a, T + 20).await);
    assert!(
        !acquire(store, name, b, 30, T + 49).await,
        "renewed until T + 50"
    );
    assert!(
        !renew(store, name, b, T + 49).await,
        "only the holder renews"
    );
    assert!(!release(store, name, b).await, "only the holder releases");
    // Expired (the holder crashed): another owner takes it over.
    assert!(acquire(store, name, b, 30, T + 50).await);
    assert!(
        !renew(store, name, a, T + 51).await,
        "the old holder lost it"
    );
    assert!(!release(store, name, a).await);
    assert!(release(store, name, b).await);
    assert!(!release(store, name, b).await);
    assert!(
        acquire(store, name, a, 30, T + 52).await,
        "free after the release"
    );
    assert!(
        acquire(store, "conf.lease.pop3:2", b, 30, T + 52).await,
        "names are separate"
    );
    assert!(release(store, name, a).await);
    assert!(release(store, "conf.lease.pop3:2", b).await);
    assert_err(
        store.lease_acquire(name, a, 0, T).await,
        is_invalid,
        "a lease time of 0",
    );
    assert_err(
        store.lease_acquire(name, "", 30, T).await,
        is_invalid,
        "an empty owner",
    );
}

/// Of concurrent acquisitions of one lease by different owners exactly one succeeds.
pub async fn state_lease_race(store: &dyn Store) {
    let name = "conf.lease.race";
    let owners: Vec<String> = (0..10).map(|n| format!("conf.racer.{n}")).collect();
    let attempts = owners.iter().map(|o| store.lease_acquire(name, o, 60, T));
    let won: Vec<bool> = futures_join(attempts).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "one winner: {won:?}");
    let winner = &owners[won.iter().position(|w| *w).expect("a winner")];
    assert!(release(store, name, winner).await);
}

/// Cache entries are read back until they expire, replaced by a put, removed by a delete;
/// values are bytes (any content), bounded in size.
pub async fn state_cache(store: &dyn Store) {
    let key = "conf.cache.mta-sts:example.com";
    assert_eq!(store.cache_get(key, T).await.expect("get"), None);
    let value = b"version: STSv1\r\n\0\xff".to_vec();
    store.cache_put(key, &value, T + 100).await.expect("put");
    assert_eq!(
        store.cache_get(key, T + 99).await.expect("get"),
        Some(value.clone())
    );
    assert_eq!(
        store.cache_get(key, T + 100).await.expect("get"),
        None,
        "expired"
    );
    store.cache_put(key, b"newer", T + 200).await.expect("put");
    assert_eq!(
        store.cache_get(key, T + 150).await.expect("get"),
        Some(b"newer".to_vec()),
        "replaced, with the new expiry"
    );
    assert_eq!(
        store.cache_get("conf.cache.other", T).await.expect("get"),
        None
    );
    assert!(store.cache_delete(key).await.expect("delete"));
    assert!(!store.cache_delete(key).await.expect("delete again"));
    assert_eq!(store.cache_get(key, T).await.expect("get"), None);

    let big = vec![b'x'; MAX_CACHE_VALUE];
    store
        .cache_put(key, &big, T + 10)
        .await
        .expect("largest value");
    assert_eq!(store.cache_get(key, T).await.expect("get"), Some(big));
    assert_err(
        store
            .cache_put(key, &vec![b'x'; MAX_CACHE_VALUE + 1], T + 10)
            .await,
        is_invalid,
        "a value too large",
    );
    assert!(store.cache_delete(key).await.expect("delete"));
}

fn count(
    day: i64,
    domain: &str,
    policy: &str,
    result: &str,
    ok: u64,
    failed: u64,
) -> TlsReportCount {
    TlsReportCount {
        day,
        domain: domain.to_owned(),
        policy: policy.to_owned(),
        result: result.to_owned(),
        successful: ok,
        failed,
    }
}

/// TLS report counts add up per (day, domain, policy, result); due lists the unsent (day,
/// domain) pairs of a day range in order; a report is marked sent once (a second mark says
/// so), a mark can be taken back, later counts of a sent day do not make it due again; prune
/// removes the old days.
pub async fn state_tls_reports(store: &dyn Store) {
    let (a, b) = ("conf-a.example", "conf-b.example");
    store
        .tls_report_add(vec![
            count(DAY, a, "sts", "", 2, 0),
            count(DAY, a, "sts", "", 1, 1),
            count(DAY, a, "sts", "{cert-expired}", 0, 1),
            count(DAY, a, "none", "", 5, 0),
            count(DAY + 1, b, "none", "", 1, 0),
            count(DAY + 1, a, "none", "", 1, 0),
            count(DAY + 3, a, "none", "", 1, 0),
        ])
        .await
        .expect("add");
    store
        .tls_report_add(vec![count(DAY, a, "sts", "{cert-expired}", 0, 2)])
        .await
        .expect("add more");
    store.tls_report_add(Vec::new()).await.expect("add nothing");
    assert_eq!(
        store.tls_report_counts(DAY, a).await.expect("counts"),
        vec![
            count(DAY, a, "none", "", 5, 0),
            count(DAY, a, "sts", "", 3, 1),
            count(DAY, a, "sts", "{cert-expired}", 0, 3),
        ],
        "added up, ordered by policy and result"
    );
    assert!(
        store
            .tls_report_counts(DAY, "conf-none.example")
            .await
            .expect("counts")
            .is_empty()
    );
    let due = store.tls_report_due(DAY, DAY + 3).await.expect("due");
    assert_eq!(
        due,
        vec![
            (DAY, a.to_owned()),
            (DAY + 1, a.to_owned()),
            (DAY + 1, b.to_owned())
        ],
        "by day then domain, up to before_day"
    );

    assert!(store.tls_report_mark_sent(DAY, a, T).await.expect("mark"));
    assert!(
        !store
            .tls_report_mark_sent(DAY, a, T + 1)
            .await
            .expect("mark again"),
        "at most once"
    );
    assert!(
        store
            .tls_report_mark_sent(DAY + 1, b, T)
            .await
            .expect("mark")
    );
    assert_eq!(
        store.tls_report_due(DAY, DAY + 3).await.expect("due"),
        vec![(DAY + 1, a.to_owned())]
    );
    // Counts of a sent day do not bring the report back.
    store
        .tls_report_add(vec![count(DAY, a, "none", "", 1, 0)])
        .await
        .expect("add late");
    assert_eq!(
        store.tls_report_due(DAY, DAY + 3).await.expect("due"),
        vec![(DAY + 1, a.to_owned())]
    );
    // A mark taken back: due again.
    assert!(
        store
            .tls_report_unmark_sent(DAY + 1, b)
            .await
            .expect("unmark")
    );
    assert!(
        !store
            .tls_report_unmark_sent(DAY + 1, b)
            .await
            .expect("unmark again")
    );
    assert_eq!(
        store.tls_report_due(DAY + 1, DAY + 2).await.expect("due"),
        vec![(DAY + 1, a.to_owned()), (DAY + 1, b.to_owned())]
    );

    // Prune: days before DAY + 1 go, counts and marks alike.
    assert_eq!(
        store.tls_report_prune(DAY + 1).await.expect("prune"),
        4,
        "three counts and one mark of DAY"
    );
    assert!(
        store
            .tls_report_counts(DAY, a)
            .await
            .expect("counts")
            .is_empty()
    );
    assert!(
        store.tls_report_mark_sent(DAY, a, T).await.expect("mark"),
        "the old mark is gone too"
    );
    assert_eq!(
        store.tls_report_due(DAY, DAY + 4).await.expect("due"),
        vec![
            (DAY + 1, a.to_owned()),
            (DAY + 1, b.to_owned()),
            (DAY + 3, a.to_owned())
        ]
    );
    store.tls_report_prune(DAY + 10).await.expect("prune all");
    assert!(
        store
            .tls_report_due(DAY, DAY + 10)
            .await
            .expect("due")
            .is_empty()
    );

    let too_long = count(DAY, &"d".repeat(MAX_STATE_KEY + 1), "p", "", 1, 0);
    assert_err(
        store
            .tls_report_add(vec![count(DAY, a, "p", "", 1, 0), too_long])
            .await,
        is_invalid,
        "a domain too long",
    );
    assert!(
        store
            .tls_report_counts(DAY, a)
            .await
            .expect("counts")
            .is_empty(),
        "nothing of a refused batch is added"
    );
}

/// `prune_expired` deletes the expired counters, leases and cache entries and nothing live.
pub async fn state_prune(store: &dyn Store) {
    let now = T + 10_000;
    store
        .counter_bump("conf.prune.c1", 10, now)
        .await
        .expect("bump");
    store
        .counter_bump("conf.prune.c2", 1000, now)
        .await
        .expect("bump");
    assert!(acquire(store, "conf.prune.l1", "o", 10, now).await);
    assert!(acquire(store, "conf.prune.l2", "o", 1000, now).await);
    store
        .cache_put("conf.prune.k1", b"v", now + 10)
        .await
        .expect("put");
    store
        .cache_put("conf.prune.k2", b"v", now + 1000)
        .await
        .expect("put");
    assert_eq!(
        store.prune_expired(now + 10).await.expect("prune"),
        3,
        "one expired entry of each kind"
    );
    assert_eq!(
        store.counter("conf.prune.c2", now + 10).await.expect("c2"),
        1
    );
    assert!(!store.counter_reset("conf.prune.c1").await.expect("c1 gone"));
    assert!(!release(store, "conf.prune.l1", "o").await);
    assert!(!store.cache_delete("conf.prune.k1").await.expect("k1 gone"));
    assert_eq!(
        store
            .cache_get("conf.prune.k2", now + 10)
            .await
            .expect("k2"),
        Some(b"v".to_vec())
    );
    assert_eq!(store.prune_expired(now + 1000).await.expect("prune"), 3);
    assert_eq!(store.prune_expired(now + 1000).await.expect("prune"), 0);
}
