//! Checks of the [`Mailstore`](crate::Mailstore) role, synchronisation and quota:
//! `changes_since`, `\Recent` claims, `account_usage`, change notifications.

use super::{
    append_n, changes, create, delete_account, deliver_to, delivery, entry, expunge, flags, inbox,
    mailbox_named, new_mailbox, set, status,
};
use crate::{AccountId, Expunge, FlagOp, MailboxChanged, MailboxId, Store, Usage};

/// changes_since: messages with a greater MODSEQ (flag changes and new messages) and UIDs
/// expunged after it, with the HIGHESTMODSEQ of the same snapshot; None for a missing mailbox.
pub async fn changes_and_vanished(store: &dyn Store) {
    let a = create(store, "conf.changes@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Sync").await.id;
    append_n(store, mailbox, 3).await;
    let s0 = status(store, mailbox).await.highest_modseq;
    let c = changes(store, mailbox, s0).await;
    assert!(c.changed.is_empty() && c.vanished.is_empty());
    assert_eq!(c.highest_modseq, s0);

    set(store, mailbox, &[2], FlagOp::Add, &["\\Seen"]).await;
    let c = changes(store, mailbox, s0).await;
    assert_eq!(c.changed.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![2]);
    assert_eq!(c.changed[0].flags, flags(&["\\Seen"]));

    expunge(store, mailbox, Expunge::Uids(&[3])).await;
    append_n(store, mailbox, 1).await;
    let c = changes(store, mailbox, s0).await;
    assert_eq!(
        c.changed.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(c.vanished, vec![3]);
    let s = status(store, mailbox).await;
    assert_eq!(c.highest_modseq, s.highest_modseq);
    assert_eq!(c.uidnext, 5);

    let c = changes(store, mailbox, s.highest_modseq).await;
    assert!(c.changed.is_empty() && c.vanished.is_empty());
    let c = changes(store, mailbox, 0).await;
    assert_eq!(
        c.changed.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(c.vanished, vec![3]);
    let c = changes(store, mailbox, u64::MAX).await;
    assert!(c.changed.is_empty() && c.vanished.is_empty());
    assert_eq!(
        store
            .changes_since(0x7fff_ffff_fff6, 0)
            .await
            .expect("changes_since"),
        None
    );
}

/// claim_recent (RFC 3501 `\Recent`): a new mailbox's watermark is 1; a claim returns
/// `[recent_uid, uidnext)` and moves the watermark to UIDNEXT, so a second claim is empty; new
/// deliveries, appends and copies become claimable; STATUS counts the existing messages at or
/// above the watermark (not expunged ones); changes_since reports the watermark; concurrent
/// claims never overlap and together cover every UID; a missing mailbox is None.
pub async fn recent_claims(store: &dyn Store) {
    let a = create(store, "conf.recent@example.com").await;
    let inbox = inbox(store, a.id).await.id;
    let s = status(store, inbox).await;
    assert_eq!(
        (s.recent_uid, s.recent),
        (1, 0),
        "a new mailbox starts at 1"
    );
    assert_eq!(
        claim(store, inbox).await,
        Some((1, 1)),
        "nothing to claim yet"
    );

    for n in 0..2 {
        let data = format!("Subject: recent {n}\r\n\r\nx\r\n");
        deliver_to(store, a.id, data.as_bytes()).await;
    }
    let s = status(store, inbox).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (3, 1, 2), "{s:?}");
    let c = changes(store, inbox, 0).await;
    assert_eq!((c.uidnext, c.recent_uid), (3, 1));

    assert_eq!(claim(store, inbox).await, Some((1, 3)));
    let s = status(store, inbox).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (3, 3, 0), "{s:?}");
    assert_eq!(
        claim(store, inbox).await,
        Some((3, 3)),
        "a second claim gets nothing"
    );
    let c = changes(store, inbox, 0).await;
    assert_eq!(c.recent_uid, 3);

    // New mail becomes claimable; an expunged recent message no longer counts.
    append_n(store, inbox, 3).await;
    let s = status(store, inbox).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (6, 3, 3), "{s:?}");
    expunge(store, inbox, Expunge::Uids(&[4])).await;
    assert_eq!(status(store, inbox).await.recent, 2);
    assert_eq!(claim(store, inbox).await, Some((3, 6)));
    assert_eq!(status(store, inbox).await.recent, 0);

    // Copies into another mailbox are recent there; the source is unaffected.
    let other = new_mailbox(store, a.id, "RecentCopy").await.id;
    store.copy(inbox, &[3, 5], other).await.expect("copy");
    let s = status(store, other).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (3, 1, 2), "{s:?}");
    assert_eq!(status(store, inbox).await.recent, 0);
    assert_eq!(claim(store, other).await, Some((1, 3)));

    // Concurrent claims, with deliveries between them: disjoint, and together everything.
    let start = status(store, inbox).await.recent_uid;
    let one = |n: u32| {
        delivery(
            "s@example.com",
            format!("Subject: race {n}\r\n\r\nx\r\n").as_bytes(),
            vec![a.id],
            vec![],
        )
    };
    let (c1, d1, c2, d2, c3, c4) = tokio::join!(
        store.claim_recent(inbox),
        store.deliver(one(1)),
        store.claim_recent(inbox),
        store.deliver(one(2)),
        store.claim_recent(inbox),
        store.claim_recent(inbox),
    );
    d1.expect("deliver");
    d2.expect("deliver");
    let c5 = store.claim_recent(inbox).await;
    let mut ranges: Vec<(u32, u32)> = [c1, c2, c3, c4, c5]
        .into_iter()
        .map(|c| c.expect("claim").expect("mailbox exists"))
        .filter(|(from, to)| from < to)
        .collect();
    ranges.sort_unstable();
    let end = status(store, inbox).await.uidnext;
    let mut next = start;
    for (from, to) in &ranges {
        assert_eq!(*from, next, "claims overlap or leave a gap: {ranges:?}");
        next = *to;
    }
    assert_eq!(next, end, "claims must cover every new UID: {ranges:?}");
    assert_eq!(status(store, inbox).await.recent, 0);

    assert_eq!(
        store
            .claim_recent(0x7fff_ffff_fff5)
            .await
            .expect("claim_recent"),
        None
    );
}

async fn claim(store: &dyn Store, mailbox: MailboxId) -> Option<(u32, u32)> {
    store.claim_recent(mailbox).await.expect("claim_recent")
}

async fn usage(store: &dyn Store, account: AccountId) -> Usage {
    store.account_usage(account).await.expect("account_usage")
}

/// account_usage sums the sizes of an account's entries (a copy counts again).
pub async fn account_usage(store: &dyn Store) {
    let a = create(store, "conf.quota@example.com").await;
    assert_eq!(usage(store, a.id).await, Usage::default());
    deliver_to(store, a.id, b"12345\r\n").await;
    let delivered = entry(store, inbox(store, a.id).await.id, 1).await.size;
    let drafts = mailbox_named(store, a.id, "Drafts").await.id;
    store
        .append(drafts, vec![b'x'; 1000].into(), &[], 0)
        .await
        .expect("append");
    let archive = mailbox_named(store, a.id, "Archive").await.id;
    store
        .copy(inbox(store, a.id).await.id, &[1], archive)
        .await
        .expect("copy");
    assert_eq!(
        usage(store, a.id).await,
        Usage {
            messages: 3,
            bytes: 2 * delivered + 1000
        }
    );
    expunge(store, drafts, Expunge::Uids(&[1])).await;
    assert_eq!(
        usage(store, a.id).await,
        Usage {
            messages: 2,
            bytes: 2 * delivered
        }
    );
    assert_eq!(
        store.account_usage(0x7fff_ffff_fff7).await.expect("usage"),
        Usage::default()
    );
}

/// Waits up to one second for an event about `mailbox` matching `want`.
async fn notified(
    rx: &mut tokio::sync::broadcast::Receiver<MailboxChanged>,
    mailbox: MailboxId,
    want: impl Fn(&MailboxChanged) -> bool,
    what: &str,
) -> MailboxChanged {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) if event.mailbox == mailbox && want(&event) => return event,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("{what}: change channel failed: {e}"),
            Err(_) => panic!("{what}: no notification within one second"),
        }
    }
}

/// subscribe_changes: an event per changed mailbox after a delivery, append, flag change and
/// expunge, carrying the new HIGHESTMODSEQ, within one second; none for a no-op; `deleted` on
/// DELETE and on deleting the account.
pub async fn notifications(store: &dyn Store) {
    let mut rx = store.subscribe_changes();
    let a = create(store, "conf.notify@example.com").await;
    let inbox = inbox(store, a.id).await.id;

    deliver_to(store, a.id, b"hi\r\n").await;
    let event = notified(&mut rx, inbox, |e| !e.deleted, "delivery").await;
    assert_eq!(event.account, a.id);
    assert_eq!(
        event.highest_modseq,
        status(store, inbox).await.highest_modseq
    );

    set(store, inbox, &[1], FlagOp::Add, &["\\Seen"]).await;
    let after_flags = status(store, inbox).await.highest_modseq;
    let event = notified(
        &mut rx,
        inbox,
        |e| e.highest_modseq == after_flags,
        "flag change",
    )
    .await;
    assert!(!event.deleted);

    // A no-op is not announced (events are queued before the writing call returns).
    set(store, inbox, &[1], FlagOp::Add, &["\\Seen"]).await;
    while let Ok(event) = rx.try_recv() {
        assert!(event.mailbox != inbox, "no-op announced: {event:?}");
    }

    let tmp = new_mailbox(store, a.id, "Tmp").await.id;
    append_n(store, tmp, 1).await;
    notified(&mut rx, tmp, |e| !e.deleted, "append").await;
    expunge(store, tmp, Expunge::Uids(&[1])).await;
    let expunged = status(store, tmp).await.highest_modseq;
    notified(&mut rx, tmp, |e| e.highest_modseq == expunged, "expunge").await;
    store.delete_mailbox(a.id, "Tmp").await.expect("delete");
    let event = notified(&mut rx, tmp, |e| e.deleted, "delete").await;
    assert_eq!(event.account, a.id);

    // Deleting the account deletes (and announces) every mailbox, INBOX included.
    assert!(delete_account(store, &a.address).await);
    let event = notified(&mut rx, inbox, |e| e.deleted, "account deletion").await;
    assert_eq!(event.account, a.id);
}
