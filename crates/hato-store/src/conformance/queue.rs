//! Checks of the [`Queue`](crate::Queue) role.
//!
//! These checks queue mail with creation times far before the other checks' (1_700_000_000), so
//! `due_queue` at their `now` sees only their own entries.

use super::{delivery, found, queue_for};
use crate::{DueDomain, QueueAttempt, QueueEntry, QueueParams, QueueSelect, Store, StoreError};

/// Queues `recipients` created at `at`; returns the entries in recipient order.
async fn queue_at(store: &dyn Store, at: i64, recipients: &[&str]) -> Vec<QueueEntry> {
    let mut d = delivery(
        "conf.q@example.com",
        b"Subject: q\r\n\r\nq\r\n",
        vec![],
        recipients.to_vec(),
    );
    d.received_at = at;
    store.deliver(d).await.expect("deliver");
    queue_for(store, recipients).await
}

/// Queues `recipients` at `at` and claims what is due then (with a lease of 600 seconds); the
/// entries in recipient order and the claim.
async fn queue_and_claim(
    store: &dyn Store,
    at: i64,
    recipients: &[&str],
) -> (Vec<QueueEntry>, Vec<DueDomain>) {
    let entries = queue_at(store, at, recipients).await;
    (entries, due(store, at, 10, 600).await)
}

/// Claims the due entries (`due_queue`).
async fn due(store: &dyn Store, now: i64, limit: usize, lease_secs: i64) -> Vec<DueDomain> {
    store
        .due_queue(now, limit, lease_secs)
        .await
        .expect("due_queue")
}

/// The stored entry `id`, which must exist.
async fn stored(store: &dyn Store, id: i64) -> QueueEntry {
    found(store.queue_entry(id).await, || format!("queue entry {id}"))
}

/// A failed attempt at `at`, next one at `next_attempt`, no TLS facts.
fn failed(at: i64, error: &str, next_attempt: i64) -> QueueAttempt {
    QueueAttempt {
        at,
        error: error.into(),
        next_attempt,
        tls: None,
    }
}

fn claimed(groups: &[DueDomain]) -> Vec<(String, String)> {
    groups
        .iter()
        .flat_map(|g| {
            g.entries
                .iter()
                .map(|e| (g.domain.clone(), e.recipient.clone()))
        })
        .collect()
}

/// DSN parameters and REQUIRETLS are stored per entry; defaults when not given; a parameter
/// list of the wrong length is refused.
pub async fn queue_params(store: &dyn Store) {
    let mut d = delivery(
        "conf.dsn@example.com",
        b"Subject: dsn\r\n\r\nx\r\n",
        vec![],
        vec!["conf.dsn1@dsn.example", "conf.dsn2@dsn.example"],
    );
    d.received_at = 900_000;
    let params = QueueParams {
        ret: Some("HDRS".into()),
        envid: Some("env-1".into()),
        requiretls: true,
        recipients: vec![
            (
                Some("FAILURE,DELAY".into()),
                Some("rfc822;orig@dsn.example".into()),
            ),
            (Some("NEVER".into()), None),
        ],
    };
    store
        .deliver_with_params(d.clone(), params.clone())
        .await
        .expect("deliver");
    let queued = queue_for(store, &["conf.dsn1@dsn.example", "conf.dsn2@dsn.example"]).await;
    assert_eq!(queued.len(), 2);
    let first = stored(store, queued[0].id).await;
    assert_eq!(first, queued[0], "queue_entry equals the queue() row");
    assert_eq!(first.dsn.notify.as_deref(), Some("FAILURE,DELAY"));
    assert_eq!(first.dsn.orcpt.as_deref(), Some("rfc822;orig@dsn.example"));
    assert_eq!(first.dsn.ret.as_deref(), Some("HDRS"));
    assert_eq!(first.dsn.envid.as_deref(), Some("env-1"));
    assert!(first.requiretls);
    assert_eq!(queued[1].dsn.notify.as_deref(), Some("NEVER"));
    assert_eq!(queued[1].dsn.orcpt, None);
    assert_eq!(
        (first.leased_until, first.claim, first.bounce_requested),
        (0, 0, false)
    );
    assert_eq!(
        (first.last_attempt, first.last_tls.as_deref()),
        (None, None)
    );

    // Plain deliver: no parameters.
    let plain = queue_at(store, 900_001, &["conf.plain@dsn.example"]).await;
    assert_eq!(plain[0].dsn, crate::DsnParams::default());
    assert!(!plain[0].requiretls);

    let mut bad = d;
    bad.remote = vec!["conf.dsn3@dsn.example".into()];
    let err = store
        .deliver_with_params(bad, params)
        .await
        .expect_err("wrong length");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(
        queue_for(store, &["conf.dsn3@dsn.example"])
            .await
            .is_empty()
    );

    for e in queued.iter().chain(&plain) {
        assert!(store.queue_delete(e.id).await.expect("delete"));
    }
}

/// `due_queue` claims due entries once, grouped by domain, with a lease; the lease expires.
pub async fn queue_claims(store: &dyn Store) {
    const T: i64 = 1_000_000;
    let first = queue_at(
        store,
        T,
        &[
            "conf.c1@one.example",
            "conf.c2@two.example",
            "conf.c3@ONE.example",
        ],
    )
    .await;
    let second = queue_at(store, T + 5, &["conf.c4@one.example"]).await;
    assert_ne!(first[0].blob, second[0].blob);

    assert!(
        due(store, T - 1, 100, 600).await.is_empty(),
        "nothing due yet"
    );
    assert!(due(store, T + 10, 0, 600).await.is_empty(), "limit 0");

    let groups = due(store, T + 10, 100, 600).await;
    assert_eq!(
        claimed(&groups),
        vec![
            ("one.example".into(), "conf.c1@one.example".into()),
            ("one.example".into(), "conf.c3@ONE.example".into()),
            ("one.example".into(), "conf.c4@one.example".into()),
            ("two.example".into(), "conf.c2@two.example".into()),
        ],
        "grouped by domain, by message within a domain"
    );
    for e in groups.iter().flat_map(|g| &g.entries) {
        assert_eq!(e.leased_until, T + 610);
        assert_eq!(e.claim, 1);
        let stored = stored(store, e.id).await;
        assert_eq!(&stored, e, "the claim is stored");
    }
    assert!(
        due(store, T + 10, 100, 600).await.is_empty(),
        "leased: not again"
    );
    assert!(
        due(store, T + 609, 100, 600).await.is_empty(),
        "lease still runs"
    );

    // The lease expired (the claimer died): due again, with a new claim token.
    let again = due(store, T + 610, 2, 60).await;
    assert_eq!(claimed(&again).len(), 2, "limit counts entries");
    let rest = due(store, T + 610, 100, 60).await;
    assert_eq!(claimed(&again).len() + claimed(&rest).len(), 4);
    for e in again.iter().chain(&rest).flat_map(|g| &g.entries) {
        assert_eq!((e.claim, e.leased_until), (2, T + 670));
    }
    // The stale claimer cannot record anything any more.
    assert!(
        !store
            .queue_delivered(first[0].id, 1)
            .await
            .expect("delivered")
    );
    assert!(
        !store
            .record_attempt(first[0].id, 1, failed(T, "x", T))
            .await
            .expect("attempt")
    );

    // Delivered: gone; the blob stays while another entry references it, then goes.
    for e in &first {
        assert!(store.queue_delivered(e.id, 2).await.expect("delivered"));
        assert!(store.queue_entry(e.id).await.expect("read").is_none());
    }
    assert!(
        store.blob(first[0].blob).await.expect("blob").is_none(),
        "blob freed"
    );
    assert!(store.blob(second[0].blob).await.expect("blob").is_some());
    assert!(store.queue_delete(second[0].id).await.expect("delete"));
    assert!(store.blob(second[0].blob).await.expect("blob").is_none());
    assert!(
        !store.queue_delete(second[0].id).await.expect("delete"),
        "already gone"
    );

    // Concurrent claimers never get the same entry.
    let many: Vec<String> = (0..20)
        .map(|i| format!("conf.cc{i}@many{}.example", i % 3))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let entries = queue_at(store, T + 100, &refs).await;
    let (a, b) = tokio::join!(
        store.due_queue(T + 200, 15, 600),
        store.due_queue(T + 200, 15, 600)
    );
    let mut ids: Vec<i64> = a
        .expect("due")
        .iter()
        .chain(&b.expect("due"))
        .flat_map(|g| g.entries.iter().map(|e| e.id))
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "an entry was claimed twice");
    assert_eq!(ids.len(), 20);
    for e in &entries {
        assert!(store.queue_delete(e.id).await.expect("delete"));
    }
}

/// A failed attempt is recorded (attempts, error, TLS facts, next attempt, lease released);
/// `retry_now` makes an entry due at once; ids are never reused.
pub async fn queue_attempts(store: &dyn Store) {
    const T: i64 = 1_100_000;
    let recipients = ["conf.a1@attempt.example", "conf.a2@attempt.example"];
    let (entries, groups) = queue_and_claim(store, T, &recipients).await;
    assert_eq!(claimed(&groups).len(), 2);
    let e = &groups[0].entries[0];
    let tls = r#"{"host":"mx.attempt.example","tls":"TLSv1.3"}"#;
    let attempt = QueueAttempt {
        at: T + 1,
        error: "451 4.7.1 greylisted".into(),
        next_attempt: T + 61,
        tls: Some(tls.into()),
    };
    assert!(
        store
            .record_attempt(e.id, e.claim, attempt.clone())
            .await
            .expect("attempt")
    );
    let after = stored(store, e.id).await;
    assert_eq!(after.attempts, 1);
    assert_eq!(after.last_error.as_deref(), Some("451 4.7.1 greylisted"));
    assert_eq!(after.last_attempt, Some(T + 1));
    assert_eq!(after.last_tls.as_deref(), Some(tls));
    assert_eq!(after.next_attempt, T + 61);
    assert_eq!(after.leased_until, 0, "lease released");
    assert!(due(store, T + 60, 10, 600).await.is_empty());
    // A second record with the same (now unleased but still current) claim is allowed once more:
    // the token changes only with the next claim.
    let groups = due(store, T + 61, 10, 600).await;
    assert_eq!(
        claimed(&groups),
        vec![("attempt.example".into(), "conf.a1@attempt.example".into())]
    );
    let e = groups[0].entries[0].clone();
    assert_eq!(e.claim, 2);
    let mut attempt2 = attempt;
    attempt2.at = T + 62;
    attempt2.next_attempt = T + 10_000;
    assert!(
        store
            .record_attempt(e.id, e.claim, attempt2)
            .await
            .expect("attempt")
    );
    assert_eq!(stored(store, e.id).await.attempts, 2);

    // retry_now: due at once; an unknown id changes nothing.
    assert_eq!(
        store
            .retry_now(QueueSelect::Id(e.id), T + 100)
            .await
            .expect("retry"),
        1
    );
    assert_eq!(
        store
            .retry_now(QueueSelect::Id(e.id), T + 100)
            .await
            .expect("retry"),
        0,
        "already due"
    );
    assert_eq!(
        store
            .retry_now(QueueSelect::Id(i64::MAX), T + 100)
            .await
            .expect("retry"),
        0
    );
    let groups = due(store, T + 100, 10, 600).await;
    assert_eq!(
        claimed(&groups),
        vec![("attempt.example".into(), "conf.a1@attempt.example".into())]
    );

    // Ids are never reused, not even the largest after its deletion.
    let max = store
        .queue()
        .await
        .expect("queue")
        .iter()
        .map(|q| q.id)
        .max()
        .expect("entries");
    assert!(store.queue_delete(max).await.expect("delete"));
    let fresh = queue_at(store, T + 200, &["conf.a3@attempt.example"]).await;
    assert!(
        fresh[0].id > max,
        "queue id {} reused (max was {max})",
        fresh[0].id
    );
    for e in entries.iter().chain(&fresh) {
        store.queue_delete(e.id).await.expect("delete");
    }
    assert!(store.queue_entry(i64::MAX).await.expect("read").is_none());
    assert!(!store.queue_delivered(i64::MAX, 0).await.expect("delivered"));
}

/// `queue_bounce` marks an entry and makes it due; an attempt running meanwhile keeps it due.
pub async fn queue_bounce_and_delete(store: &dyn Store) {
    const T: i64 = 1_200_000;
    let recipients = ["conf.b1@bounce.example", "conf.b2@bounce.example"];
    let (entries, groups) = queue_and_claim(store, T, &recipients).await;
    let [first, second] = [&groups[0].entries[0], &groups[0].entries[1]];
    // b1 fails and waits an hour; the operator bounces it.
    assert!(
        store
            .record_attempt(first.id, first.claim, failed(T, "421 busy", T + 3600))
            .await
            .expect("attempt")
    );
    assert!(
        store
            .queue_bounce(first.id, "bounced by the operator", T + 5)
            .await
            .expect("bounce")
    );
    let b1 = stored(store, first.id).await;
    assert!(b1.bounce_requested);
    assert_eq!(b1.next_attempt, T + 5);
    assert_eq!(b1.last_error.as_deref(), Some("bounced by the operator"));
    // b2 is being delivered (leased) when the bounce is requested: the lease holds, and the
    // failed attempt's result makes it due at once instead of in an hour.
    assert!(
        store
            .queue_bounce(second.id, "bounced", T + 5)
            .await
            .expect("bounce")
    );
    let bounced = due(store, T + 5, 10, 600).await;
    assert_eq!(
        claimed(&bounced),
        vec![("bounce.example".into(), "conf.b1@bounce.example".into())]
    );
    assert!(
        store
            .record_attempt(second.id, second.claim, failed(T + 6, "421 busy", T + 3600))
            .await
            .expect("attempt")
    );
    let b2 = stored(store, second.id).await;
    assert_eq!((b2.next_attempt, b2.bounce_requested), (T + 6, true));
    assert!(!store.queue_bounce(i64::MAX, "x", T).await.expect("bounce"));
    for e in &entries {
        assert!(store.queue_delete(e.id).await.expect("delete"));
    }
}

/// A restarted scheduler releases the leases of its crashed predecessor: the entries are due
/// again at once and the old claims are stale.
pub async fn queue_release_leases(store: &dyn Store) {
    const T: i64 = 3_000_000;
    queue_at(store, T, &["conf.rl1@lease.example"]).await;
    let mine = |groups: &[DueDomain]| {
        groups
            .iter()
            .flat_map(|g| g.entries.iter())
            .filter(|e| e.recipient == "conf.rl1@lease.example")
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = mine(&due(store, T + 1, 1000, 600).await);
    assert_eq!(first.len(), 1);
    assert!(
        mine(&due(store, T + 2, 1000, 600).await).is_empty(),
        "leased"
    );
    assert!(store.release_leases().await.expect("release") >= 1);
    let again = mine(&due(store, T + 2, 1000, 600).await);
    assert_eq!(again.len(), 1, "due again after the release");
    assert!(
        !store
            .queue_delivered(first[0].id, first[0].claim)
            .await
            .expect("delivered"),
        "the old claim is stale"
    );
    assert!(
        store
            .queue_delivered(again[0].id, again[0].claim)
            .await
            .expect("delivered")
    );
}
