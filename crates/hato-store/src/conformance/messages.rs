//! Checks of the [`Mailstore`](crate::Mailstore) role, message level: append, flags, expunge,
//! copy and move, UIDs and MODSEQs, 10,000-UID operations.

use super::{
    append_n, assert_err, create, deliver_to, entry, expunge, flags, inbox, is_invalid, is_limit,
    is_not_found, mailbox_named, new_mailbox, set, status, uids_of,
};
use crate::{AppendUid, CopyUids, Expunge, FlagOp, Store};

/// append: APPENDUID data, the data stored unchanged as its own blob, flags normalised,
/// internal date and size kept, counters updated; NotFound/Invalid leave nothing behind.
pub async fn append_and_read(store: &dyn Store) {
    let a = create(store, "conf.append@example.com").await;
    let drafts = mailbox_named(store, a.id, "Drafts").await;
    let data = b"Subject: draft\r\n\r\nhello\r\n".to_vec();
    let first = store
        .append(
            drafts.id,
            data.clone().into(),
            &flags(&["\\Draft", "\\seen"]),
            1_600_000_000,
        )
        .await
        .expect("append");
    assert_eq!(
        first,
        AppendUid {
            uidvalidity: drafts.uidvalidity,
            uid: 1
        }
    );
    let second = store
        .append(drafts.id, b"two\r\n".to_vec().into(), &[], 1_600_000_001)
        .await
        .expect("append");
    assert_eq!(second.uid, 2);

    let e = entry(store, drafts.id, 1).await;
    assert_eq!(e.flags, flags(&["\\Seen", "\\Draft"]));
    assert_eq!(e.internal_date, 1_600_000_000);
    assert_eq!(
        e.size,
        data.len() as u64,
        "appended data is stored unchanged"
    );
    assert!(e.modseq > drafts.highest_modseq);
    assert_eq!(store.blob(e.blob).await.expect("blob"), Some(data.clone()));
    assert_eq!(
        store
            .message_data(drafts.id, 1)
            .await
            .expect("message_data"),
        Some(data)
    );
    assert_ne!(entry(store, drafts.id, 2).await.blob, e.blob);
    assert_eq!(store.message(drafts.id, 99).await.expect("message"), None);
    assert_eq!(store.message_data(drafts.id, 99).await.expect("data"), None);
    let both = store
        .messages_data(drafts.id, &[2, 99, 1])
        .await
        .expect("messages_data");
    assert_eq!(
        both.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
        vec![2, 1],
        "in the order asked, missing UIDs left out"
    );
    assert_eq!(
        Some(both[1].1.clone()),
        store.message_data(drafts.id, 1).await.expect("data")
    );
    assert_eq!(
        Some(both[0].1.clone()),
        store.message_data(drafts.id, 2).await.expect("data")
    );

    assert_err(
        store
            .append(0x7fff_ffff_fff2, b"x".to_vec().into(), &[], 0)
            .await,
        is_not_found,
        "append to a missing mailbox",
    );
    assert_err(
        store
            .append(drafts.id, b"x".to_vec().into(), &flags(&["\\Recent"]), 0)
            .await,
        is_invalid,
        "append with \\Recent",
    );
    let s = status(store, drafts.id).await;
    assert_eq!(s.messages, 2);
    assert_eq!(s.unseen, 1);
    assert_eq!(s.deleted, 0);
    assert_eq!(s.deleted_size, 0);
    assert_eq!(s.uidnext, 3, "failed appends took no UID");
    assert_eq!(s.uidvalidity, drafts.uidvalidity);
    assert_eq!(s.size, e.size + 5);
    assert_eq!(s.highest_modseq, entry(store, drafts.id, 2).await.modseq);
}

/// Flags are a normalised set: system flags canonical, keywords deduplicated case-insensitively
/// keeping the first spelling; bad flags Invalid; over-long keywords and more than 100 keywords
/// per message Limit, failing the whole call.
pub async fn flags_normalised(store: &dyn Store) {
    let a = create(store, "conf.flags@example.com").await;
    let inbox = inbox(store, a.id).await;
    let uid = store
        .append(
            inbox.id,
            b"x\r\n".to_vec().into(),
            &flags(&["$Label1", "\\SEEN", "$label1", "Junk", "\\Seen"]),
            0,
        )
        .await
        .expect("append")
        .uid;
    assert_eq!(
        entry(store, inbox.id, uid).await.flags,
        flags(&["\\Seen", "$Label1", "Junk"])
    );
    let r = set(
        store,
        inbox.id,
        &[uid],
        FlagOp::Add,
        &["$LABEL1", "NonJunk"],
    )
    .await;
    assert_eq!(
        r.updated[0].flags,
        flags(&["\\Seen", "$Label1", "Junk", "NonJunk"]),
        "spelling of a present keyword is kept"
    );
    let modseq = entry(store, inbox.id, uid).await.modseq;

    let too_many: Vec<String> = (0..=crate::rules::MAX_KEYWORDS)
        .map(|i| format!("k{i}"))
        .collect();
    assert_err(
        store
            .set_flags(inbox.id, &[uid], FlagOp::Add, &too_many, None)
            .await,
        is_limit,
        "101 keywords",
    );
    // 3 present + 97 new = 100: allowed; one more is not.
    let fill: Vec<String> = (0..97).map(|i| format!("k{i}")).collect();
    store
        .set_flags(inbox.id, &[uid], FlagOp::Add, &fill, None)
        .await
        .expect("100 keywords");
    let full = entry(store, inbox.id, uid).await;
    assert_eq!(full.flags.len(), 101, "\\Seen + 100 keywords");
    let second = store
        .append(inbox.id, b"y\r\n".to_vec().into(), &[], 0)
        .await
        .expect("append")
        .uid;
    assert_err(
        store
            .set_flags(
                inbox.id,
                &[second, uid],
                FlagOp::Add,
                &flags(&["one-more"]),
                None,
            )
            .await,
        is_limit,
        "the 101st keyword",
    );
    assert!(
        entry(store, inbox.id, second).await.flags.is_empty(),
        "a failed call changes no message"
    );
    assert_eq!(entry(store, inbox.id, uid).await, full);
    let long = "k".repeat(crate::rules::MAX_KEYWORD_LEN + 1);
    assert_err(
        store
            .set_flags(inbox.id, &[second], FlagOp::Add, &[long], None)
            .await,
        is_limit,
        "over-long keyword",
    );
    let longest = "k".repeat(crate::rules::MAX_KEYWORD_LEN);
    store
        .set_flags(
            inbox.id,
            &[second],
            FlagOp::Add,
            std::slice::from_ref(&longest),
            None,
        )
        .await
        .expect("longest keyword");
    assert_eq!(entry(store, inbox.id, second).await.flags, vec![longest]);
    for bad in ["\\Recent", "\\Bogus", "a b", "", "(x", "x]", "é"] {
        assert_err(
            store
                .set_flags(inbox.id, &[uid], FlagOp::Add, &flags(&[bad]), None)
                .await,
            is_invalid,
            &format!("flag {bad:?}"),
        );
    }
    assert!(modseq < entry(store, inbox.id, uid).await.modseq);
}

/// set_flags Add/Remove/Replace: results in UID order for existing UIDs only; changed messages
/// get one new MODSEQ (= HIGHESTMODSEQ); a no-op changes no MODSEQ.
pub async fn set_flags_ops(store: &dyn Store) {
    let a = create(store, "conf.store@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Store").await.id;
    append_n(store, mailbox, 3).await;
    let h0 = status(store, mailbox).await.highest_modseq;

    let r = set(store, mailbox, &[2, 1, 99, 2], FlagOp::Add, &["\\Seen"]).await;
    assert!(r.modified.is_empty());
    assert_eq!(
        r.updated.iter().map(|u| u.uid).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let m1 = r.updated[0].modseq;
    assert!(m1 > h0, "MODSEQ must grow");
    assert!(r.updated.iter().all(|u| u.changed && u.modseq == m1));
    assert!(r.updated.iter().all(|u| u.flags == flags(&["\\Seen"])));
    assert_eq!(status(store, mailbox).await.highest_modseq, m1);
    assert_eq!(entry(store, mailbox, 1).await.modseq, m1);

    let r = set(store, mailbox, &[1], FlagOp::Add, &["\\seen"]).await;
    assert!(!r.updated[0].changed, "adding a present flag is no change");
    assert_eq!(r.updated[0].modseq, m1);
    assert_eq!(
        status(store, mailbox).await.highest_modseq,
        m1,
        "no-op kept MODSEQ"
    );

    let m3_before = entry(store, mailbox, 3).await.modseq;
    let r = set(store, mailbox, &[2, 3], FlagOp::Remove, &["\\Seen"]).await;
    assert!(r.updated[0].changed && !r.updated[1].changed);
    let m2 = r.updated[0].modseq;
    assert!(m2 > m1);
    assert_eq!(r.updated[1].modseq, m3_before);
    assert_eq!(entry(store, mailbox, 3).await.modseq, m3_before);
    assert!(entry(store, mailbox, 2).await.flags.is_empty());

    let r = set(
        store,
        mailbox,
        &[3, 1, 2],
        FlagOp::Replace,
        &["work", "\\Flagged"],
    )
    .await;
    assert!(r.updated.iter().all(|u| u.changed));
    let m3 = r.updated[0].modseq;
    assert!(m3 > m2);
    for uid in 1..=3 {
        assert_eq!(
            entry(store, mailbox, uid).await.flags,
            flags(&["\\Flagged", "work"])
        );
    }
    let r = set(
        store,
        mailbox,
        &[1],
        FlagOp::Replace,
        &["WORK", "\\flagged"],
    )
    .await;
    assert!(!r.updated[0].changed, "same set in other case is no change");
    assert_eq!(r.updated[0].flags, flags(&["\\Flagged", "work"]));
    let r = set(store, mailbox, &[1], FlagOp::Replace, &[]).await;
    assert!(r.updated[0].changed);
    assert!(entry(store, mailbox, 1).await.flags.is_empty());
    let s = status(store, mailbox).await;
    assert_eq!(s.unseen, 3);
    assert!(s.highest_modseq > m3);
    assert_err(
        store
            .set_flags(0x7fff_ffff_fff3, &[1], FlagOp::Add, &[], None)
            .await,
        is_not_found,
        "set_flags on a missing mailbox",
    );
}

/// UNCHANGEDSINCE (RFC 7162 3.1.3): messages changed after the given MODSEQ are left alone and
/// reported as modified; the others are updated; UNCHANGEDSINCE 0 always fails.
pub async fn unchanged_since(store: &dyn Store) {
    let a = create(store, "conf.condstore@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Cond").await.id;
    append_n(store, mailbox, 3).await;
    let seen = status(store, mailbox).await.highest_modseq;
    set(store, mailbox, &[2], FlagOp::Add, &["\\Flagged"]).await;

    let r = store
        .set_flags(
            mailbox,
            &[1, 2, 3],
            FlagOp::Add,
            &flags(&["\\Seen"]),
            Some(seen),
        )
        .await
        .expect("set_flags");
    assert_eq!(r.modified, vec![2]);
    assert_eq!(
        r.updated.iter().map(|u| u.uid).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(entry(store, mailbox, 2).await.flags, flags(&["\\Flagged"]));
    assert_eq!(entry(store, mailbox, 1).await.flags, flags(&["\\Seen"]));

    let r = store
        .set_flags(mailbox, &[1], FlagOp::Add, &flags(&["x"]), Some(0))
        .await
        .expect("set_flags");
    assert_eq!(r.modified, vec![1], "UNCHANGEDSINCE 0 fails");
    assert!(r.updated.is_empty());
    let current = entry(store, mailbox, 1).await.modseq;
    let r = store
        .set_flags(mailbox, &[1], FlagOp::Add, &flags(&["x"]), Some(current))
        .await
        .expect("set_flags");
    assert!(r.modified.is_empty() && r.updated[0].changed);
}

/// expunge: all \Deleted; \Deleted among given UIDs; exactly given UIDs. Returns the expunged
/// UIDs; each non-empty expunge gets a new MODSEQ, an empty one changes nothing.
pub async fn expunge_variants(store: &dyn Store) {
    let a = create(store, "conf.expunge@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Exp").await.id;
    append_n(store, mailbox, 6).await;
    set(store, mailbox, &[2, 3, 5], FlagOp::Add, &["\\Deleted"]).await;
    let s = status(store, mailbox).await;
    assert_eq!(s.deleted, 3);
    let mut deleted_size = 0;
    for uid in [2, 3, 5] {
        deleted_size += entry(store, mailbox, uid).await.size;
    }
    assert_eq!(s.deleted_size, deleted_size, "DELETED-STORAGE");
    assert!(s.deleted_size < s.size);

    let h = status(store, mailbox).await.highest_modseq;
    let gone = expunge(store, mailbox, Expunge::DeletedAmong(&[3, 1, 2, 77])).await;
    assert_eq!(gone, vec![2, 3], "only \\Deleted ones among the UIDs");
    let h2 = status(store, mailbox).await.highest_modseq;
    assert!(h2 > h);
    let gone = expunge(store, mailbox, Expunge::Uids(&[1, 99])).await;
    assert_eq!(gone, vec![1], "exactly the UIDs, whatever their flags");
    let h3 = status(store, mailbox).await.highest_modseq;
    assert!(h3 > h2);
    let gone = expunge(store, mailbox, Expunge::Deleted).await;
    assert_eq!(gone, vec![5]);
    let h4 = status(store, mailbox).await.highest_modseq;
    assert!(h4 > h3);
    let gone = expunge(store, mailbox, Expunge::Deleted).await;
    assert!(gone.is_empty());
    assert_eq!(
        status(store, mailbox).await.highest_modseq,
        h4,
        "no-op expunge"
    );
    assert_eq!(uids_of(store, mailbox).await, vec![4, 6]);
    let s = status(store, mailbox).await;
    assert_eq!((s.messages, s.deleted, s.uidnext), (2, 0, 7));
    assert_eq!(s.deleted_size, 0);
    assert_err(
        store.expunge(0x7fff_ffff_fff4, Expunge::Deleted).await,
        is_not_found,
        "expunge a missing mailbox",
    );
}

/// UIDs are never reused: after expunging the highest UIDs, appends and copies continue above.
pub async fn uids_never_reused(store: &dyn Store) {
    let a = create(store, "conf.uids@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Uids").await.id;
    assert_eq!(append_n(store, mailbox, 3).await, vec![1, 2, 3]);
    expunge(store, mailbox, Expunge::Uids(&[3])).await;
    assert_eq!(
        status(store, mailbox).await.uidnext,
        4,
        "UIDNEXT never shrinks"
    );
    assert_eq!(append_n(store, mailbox, 1).await, vec![4]);
    expunge(store, mailbox, Expunge::Uids(&[1, 2, 4])).await;
    assert_eq!(status(store, mailbox).await.messages, 0);
    assert_eq!(append_n(store, mailbox, 1).await, vec![5]);
    let copied = store.copy(mailbox, &[5], mailbox).await.expect("copy");
    assert_eq!(copied.uids, vec![(5, 6)]);
    let inbox = inbox(store, a.id).await.id;
    deliver_to(store, a.id, b"x\r\n").await;
    expunge(store, inbox, Expunge::Uids(&[1])).await;
    deliver_to(store, a.id, b"y\r\n").await;
    assert_eq!(
        uids_of(store, inbox).await,
        vec![2],
        "delivery continues above"
    );
}

/// HIGHESTMODSEQ strictly grows with every change (delivery, append, flags, copy in, move out,
/// expunge), and no entry's MODSEQ exceeds it.
pub async fn modseq_increases(store: &dyn Store) {
    let a = create(store, "conf.modseq@example.com").await;
    let inbox = inbox(store, a.id).await.id;
    let other = new_mailbox(store, a.id, "Other").await.id;
    let mut last = status(store, inbox).await.highest_modseq;
    let mut step = |now: u64, what: &str| {
        assert!(now > last, "{what}: HIGHESTMODSEQ {now} not above {last}");
        last = now;
    };
    deliver_to(store, a.id, b"1\r\n").await;
    step(status(store, inbox).await.highest_modseq, "deliver");
    append_n(store, inbox, 2).await;
    step(status(store, inbox).await.highest_modseq, "append");
    set(store, inbox, &[1, 2], FlagOp::Add, &["\\Seen"]).await;
    step(status(store, inbox).await.highest_modseq, "flags");
    append_n(store, other, 1).await;
    store.copy(other, &[1], inbox).await.expect("copy");
    step(status(store, inbox).await.highest_modseq, "copy in");
    store.move_messages(inbox, &[3], other).await.expect("move");
    step(status(store, inbox).await.highest_modseq, "move out");
    set(store, inbox, &[1], FlagOp::Add, &["\\Deleted"]).await;
    step(status(store, inbox).await.highest_modseq, "flags");
    expunge(store, inbox, Expunge::Deleted).await;
    step(status(store, inbox).await.highest_modseq, "expunge");
    for e in store.messages(inbox).await.expect("messages") {
        assert!(e.modseq <= last, "entry MODSEQ above HIGHESTMODSEQ");
    }
}

/// copy: COPYUID mapping in source order with the destination UIDVALIDITY; the copies reference
/// the same blobs (single instance) with flags, date and size; missing UIDs skipped; other
/// accounts refused. The blob is freed only when its last entry is expunged.
pub async fn copy_single_instance(store: &dyn Store) {
    let a = create(store, "conf.copy@example.com").await;
    let b = create(store, "conf.copy-other@example.com").await;
    let src = inbox(store, a.id).await.id;
    for n in 0..2 {
        let data = format!("Subject: copy {n}\r\n\r\n").into_bytes();
        deliver_to(store, a.id, &data).await;
    }
    set(store, src, &[2], FlagOp::Add, &["\\Flagged", "$Keep"]).await;
    let dst = new_mailbox(store, a.id, "Copies").await;
    let originals = store.messages(src).await.expect("messages");

    let copied = store.copy(src, &[2, 1, 77], dst.id).await.expect("copy");
    assert_eq!(
        copied,
        CopyUids {
            uidvalidity: dst.uidvalidity,
            uids: vec![(1, 1), (2, 2)]
        }
    );
    let copies = store.messages(dst.id).await.expect("messages");
    for (original, copy) in originals.iter().zip(&copies) {
        assert_eq!(copy.blob, original.blob, "a copy references the same blob");
        assert_eq!(copy.flags, original.flags);
        assert_eq!(copy.internal_date, original.internal_date);
        assert_eq!(copy.size, original.size);
    }
    assert_eq!(
        store.messages(src).await.expect("messages"),
        originals,
        "source untouched"
    );
    let again = store.copy(src, &[1, 2], dst.id).await.expect("copy");
    assert_eq!(again.uids, vec![(1, 3), (2, 4)]);

    let h = status(store, dst.id).await.highest_modseq;
    let none = store.copy(src, &[50, 51], dst.id).await.expect("copy");
    assert!(none.uids.is_empty());
    assert_eq!(none.uidvalidity, dst.uidvalidity);
    assert_eq!(
        status(store, dst.id).await.highest_modseq,
        h,
        "empty copy changes nothing"
    );

    let foreign = inbox(store, b.id).await.id;
    assert_err(
        store.copy(src, &[1], foreign).await,
        is_invalid,
        "copy to another account",
    );
    assert_err(
        store.move_messages(src, &[1], foreign).await,
        is_invalid,
        "move to another account",
    );
    assert!(store.messages(foreign).await.expect("messages").is_empty());
    assert_err(
        store.copy(src, &[1], 0x7fff_ffff_fff5).await,
        is_not_found,
        "copy to a missing mailbox",
    );
    assert_err(
        store.copy(0x7fff_ffff_fff5, &[1], src).await,
        is_not_found,
        "copy from a missing mailbox",
    );

    let blob = originals[0].blob;
    expunge(store, src, Expunge::Uids(&[1])).await;
    expunge(store, dst.id, Expunge::Uids(&[1])).await;
    assert!(
        store.blob(blob).await.expect("blob").is_some(),
        "still referenced by Copies UID 3"
    );
    expunge(store, dst.id, Expunge::Uids(&[3])).await;
    assert_eq!(
        store.blob(blob).await.expect("blob"),
        None,
        "expunging the last reference frees the blob"
    );
}

/// move: COPYUID mapping, the moved messages gone from the source (recorded as vanished),
/// present in the destination with the same blobs.
pub async fn move_messages(store: &dyn Store) {
    let a = create(store, "conf.move@example.com").await;
    let src = new_mailbox(store, a.id, "From").await.id;
    let dst = new_mailbox(store, a.id, "To").await;
    append_n(store, src, 3).await;
    set(store, src, &[3], FlagOp::Add, &["\\Answered"]).await;
    let originals = store.messages(src).await.expect("messages");
    let h = status(store, src).await.highest_modseq;

    let moved = store
        .move_messages(src, &[3, 1, 9], dst.id)
        .await
        .expect("move");
    assert_eq!(
        moved,
        CopyUids {
            uidvalidity: dst.uidvalidity,
            uids: vec![(1, 1), (3, 2)]
        }
    );
    assert_eq!(
        uids_of(store, src).await,
        vec![2],
        "moved messages left the source"
    );
    let arrived = store.messages(dst.id).await.expect("messages");
    assert_eq!(arrived.len(), 2);
    assert_eq!(arrived[0].blob, originals[0].blob);
    assert_eq!(arrived[1].blob, originals[2].blob);
    assert_eq!(arrived[1].flags, flags(&["\\Answered"]));
    assert!(store.blob(originals[0].blob).await.expect("blob").is_some());
    let changes = store
        .changes_since(src, h)
        .await
        .expect("changes_since")
        .expect("exists");
    assert_eq!(changes.vanished, vec![1, 3]);
    assert!(changes.changed.is_empty());

    let none = store.move_messages(src, &[1], dst.id).await.expect("move");
    assert!(none.uids.is_empty(), "already moved");
    assert_eq!(uids_of(store, src).await, vec![2]);
}

/// One set_flags, copy and expunge call with 10,000 UIDs.
pub async fn bulk_operations(store: &dyn Store) {
    let a = create(store, "conf.bulk@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Bulk").await.id;
    append_n(store, mailbox, 1).await;
    let blob = entry(store, mailbox, 1).await.blob;
    let mut count = 1u32;
    while count < 10_000 {
        let uids: Vec<u32> = (1..=count).collect();
        let copied = store.copy(mailbox, &uids, mailbox).await.expect("copy");
        assert_eq!(copied.uids.len(), count as usize);
        count *= 2;
    }
    let uids: Vec<u32> = (1..=10_000).collect();
    let r = set(store, mailbox, &uids, FlagOp::Add, &["\\Seen", "$Bulk"]).await;
    assert_eq!(r.updated.len(), 10_000);
    let modseq = r.updated[0].modseq;
    assert!(r.updated.iter().all(|u| u.changed && u.modseq == modseq));
    let s = status(store, mailbox).await;
    assert_eq!(s.messages, count);
    assert_eq!(s.unseen, count - 10_000);
    assert_eq!(s.highest_modseq, modseq);
    let entries = store.messages(mailbox).await.expect("messages");
    assert!(
        entries.iter().all(|e| e.blob == blob),
        "one blob for all copies"
    );

    let gone = expunge(store, mailbox, Expunge::Uids(&uids)).await;
    assert_eq!(gone.len(), 10_000);
    assert_eq!(status(store, mailbox).await.messages, count - 10_000);
    assert!(store.blob(blob).await.expect("blob").is_some());
    expunge(
        store,
        mailbox,
        Expunge::Uids(&(1..=count).collect::<Vec<_>>()),
    )
    .await;
    assert_eq!(store.blob(blob).await.expect("blob"), None);
}
