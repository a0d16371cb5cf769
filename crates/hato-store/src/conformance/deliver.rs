//! Checks of the [`Deliver`](crate::Deliver) role: local, remote and mixed deliveries, all or
//! nothing.

use super::{
    assert_err, blob, create, deliver, delivery, inbox, inbox_entries, is_not_found, local_copy,
    queue_for, uids_of,
};
use crate::{AccountId, Delivery, Mailbox, MessageData, Store};

/// Local delivery to several accounts (with a duplicate): one blob `Return-Path: <sender>\r\n` +
/// data, one INBOX entry per account referencing it, UIDs 1, 2, 3 in order, UIDNEXT and
/// HIGHESTMODSEQ advancing with the entry's MODSEQ, other mailboxes untouched.
pub async fn deliver_local(store: &dyn Store) {
    let accounts = [
        create(store, "conf.local1@example.com").await.id,
        create(store, "conf.local2@example.com").await.id,
        create(store, "conf.local3@example.com").await.id,
    ];
    let before: Vec<Mailbox> = {
        let mut v = Vec::new();
        for &a in &accounts {
            v.push(inbox(store, a).await);
        }
        v
    };

    let mut blobs = Vec::new();
    for n in 1..=3u32 {
        let data = format!("Subject: local {n}\r\n\r\nbody {n}\r\n").into_bytes();
        let mut local = accounts.to_vec();
        local.push(accounts[0]); // duplicates are delivered once
        let receipt = deliver(
            store,
            delivery("sender@remote.example", &data, local, vec![]),
        )
        .await;
        assert_eq!(receipt.queue_blob, None);
        let blob_id = receipt.local_blob.expect("local blob");
        assert_eq!(
            blob(store, blob_id).await,
            local_copy("sender@remote.example", &data)
        );
        blobs.push(blob_id);
    }
    let mut unique = blobs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 3, "each delivery gets its own blob");

    for (i, &account) in accounts.iter().enumerate() {
        let entries = inbox_entries(store, account).await;
        assert_eq!(
            entries.iter().map(|e| e.uid).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "UIDs of account {account}"
        );
        let mut last_modseq = before[i].highest_modseq;
        for (entry, &blob_id) in entries.iter().zip(&blobs) {
            assert_eq!(
                entry.blob, blob_id,
                "entry references the delivery's one blob"
            );
            assert!(entry.modseq > last_modseq, "modseq must increase");
            last_modseq = entry.modseq;
            assert!(entry.flags.is_empty(), "new mail has no flags");
            assert_eq!(entry.internal_date, 1_700_000_000);
            assert_eq!(entry.size, blob(store, blob_id).await.len() as u64);
        }
        let after = inbox(store, account).await;
        assert_eq!(after.uidnext, 4);
        assert_eq!(after.uidvalidity, before[i].uidvalidity);
        assert_eq!(
            after.highest_modseq, last_modseq,
            "HIGHESTMODSEQ = newest entry's"
        );
        for mailbox in store.mailboxes(account).await.expect("mailboxes") {
            if mailbox.name != "INBOX" {
                assert_eq!(mailbox.uidnext, 1, "{} must be untouched", mailbox.name);
                assert!(uids_of(store, mailbox.id).await.is_empty());
            }
        }
    }
}

/// The null reverse-path becomes `Return-Path: <>`.
pub async fn deliver_null_sender(store: &dyn Store) {
    let account = create(store, "conf.bounce@example.com").await;
    let data = b"Subject: bounce\r\n\r\nfailed\r\n";
    let receipt = deliver(store, delivery("", data, vec![account.id], vec![])).await;
    let blob_id = receipt.local_blob.expect("local blob");
    assert_eq!(blob(store, blob_id).await, local_copy("", data));
    assert_eq!(inbox_entries(store, account.id).await.len(), 1);
}

/// Remote recipients: one queue entry each, oldest first, all referencing one blob of the data
/// unchanged, due at once (next_attempt = created = received_at), no attempts yet.
pub async fn deliver_remote(store: &dyn Store) {
    let recipients = [
        "conf.r1@remote.example",
        "conf.r2@remote.example",
        "conf.r3@remote.example",
    ];
    let data = b"Subject: remote\r\n\r\nhello\r\n";
    let receipt = deliver(
        store,
        delivery("conf.sender@example.com", data, vec![], recipients.to_vec()),
    )
    .await;
    assert_eq!(receipt.local_blob, None);
    let blob_id = receipt.queue_blob.expect("queue blob");
    assert_eq!(
        blob(store, blob_id).await,
        data.to_vec(),
        "queued copy is the data unchanged"
    );

    let queued = queue_for(store, &recipients).await;
    assert_eq!(queued.len(), 3, "{queued:?}");
    for (entry, recipient) in queued.iter().zip(recipients) {
        assert_eq!(entry.recipient, recipient);
        assert_eq!(entry.blob, blob_id);
        assert_eq!(entry.sender, "conf.sender@example.com");
        assert_eq!(entry.created, 1_700_000_000);
        assert_eq!(entry.next_attempt, 1_700_000_000);
        assert_eq!(entry.attempts, 0);
        assert_eq!(entry.last_error, None);
    }
    let all = store.queue().await.expect("queue");
    assert!(
        all.windows(2).all(|w| w[0].created <= w[1].created),
        "queue must be oldest first"
    );
}

/// A large message partly in a spool file (as the SMTP server hands it over): both copies hold
/// head, spooled octets and tail in order, the sizes count them all, and octets of the file
/// past the announced length are not part of it.
pub async fn deliver_spooled(store: &dyn Store) {
    use std::io::Write;
    let a = create(store, "conf.spooled@example.com").await.id;
    let remote = ["conf.spooled@remote.example"];
    let middle: Vec<u8> = (0..700_000u32)
        .map(|i| b"abcdefghij\r\n"[i as usize % 12])
        .collect();
    let path = std::env::temp_dir().join(format!(
        "hato-conformance-spool-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut file = std::fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("spool file");
    let _ = std::fs::remove_file(&path);
    file.write_all(&middle).expect("writing the spool file");
    file.write_all(b"NOT PART OF IT")
        .expect("writing the spool file");
    let head = b"Received: by conformance\r\nSubject: spooled\r\n\r\n".to_vec();
    let tail = b"the end\r\n".to_vec();
    let whole = [&head[..], &middle, &tail].concat();
    let data = MessageData::spooled(head, file, middle.len() as u64, tail);
    assert_eq!(data.len(), whole.len() as u64);
    let receipt = deliver(
        store,
        Delivery {
            sender: "conf.big@example.com".into(),
            data,
            local: vec![a],
            remote: remote.iter().map(|r| (*r).to_owned()).collect(),
            received_at: 1_700_000_000,
        },
    )
    .await;
    let local = local_copy("conf.big@example.com", &whole);
    let local_blob = receipt.local_blob.expect("local blob");
    assert!(blob(store, local_blob).await == local, "local copy differs");
    let queued = receipt.queue_blob.expect("queue blob");
    assert!(blob(store, queued).await == whole, "queued copy differs");
    assert_eq!(
        store.blob_size(queued).await.unwrap(),
        Some(whole.len() as u64)
    );
    assert_eq!(store.blob_size(queued + 1_000_000).await.unwrap(), None);
    // Pieces of it, as outbound delivery reads a large message.
    let piece = |offset: u64, len: usize| store.blob_range(queued, offset, len);
    assert_eq!(piece(0, 10).await.unwrap().unwrap(), &whole[..10]);
    let at = 300_000;
    assert_eq!(
        piece(at as u64, 100_000).await.unwrap().unwrap(),
        &whole[at..at + 100_000]
    );
    let tail = piece(whole.len() as u64 - 5, 100).await.unwrap().unwrap();
    assert_eq!(tail, &whole[whole.len() - 5..]);
    assert_eq!(
        piece(whole.len() as u64 + 7, 10).await.unwrap().unwrap(),
        b""
    );
    assert_eq!(
        store.blob_range(queued + 1_000_000, 0, 10).await.unwrap(),
        None
    );
    let entries = inbox_entries(store, a).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].size, local.len() as u64);
    assert_eq!(queue_for(store, &remote).await.len(), 1);
}

/// Local and remote recipients together: two blobs, the local one with Return-Path.
pub async fn deliver_mixed(store: &dyn Store) {
    let a = create(store, "conf.mixed1@example.com").await.id;
    let b = create(store, "conf.mixed2@example.com").await.id;
    let remote = ["conf.m1@remote.example", "conf.m2@remote.example"];
    let data = b"Subject: mixed\r\n\r\nboth\r\n";
    let receipt = deliver(
        store,
        delivery("conf.mixer@example.com", data, vec![b, a], remote.to_vec()),
    )
    .await;
    let local_blob = receipt.local_blob.expect("local blob");
    let queue_blob = receipt.queue_blob.expect("queue blob");
    assert_ne!(local_blob, queue_blob);
    assert_eq!(
        blob(store, local_blob).await,
        local_copy("conf.mixer@example.com", data)
    );
    assert_eq!(blob(store, queue_blob).await, data.to_vec());
    for account in [a, b] {
        let entries = inbox_entries(store, account).await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].blob, local_blob);
        assert_eq!(entries[0].uid, 1);
    }
    let queued = queue_for(store, &remote).await;
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|q| q.blob == queue_blob));
}

/// A delivery without recipients stores nothing.
pub async fn deliver_empty(store: &dyn Store) {
    let receipt = deliver(
        store,
        delivery("conf.nobody@example.com", b"x", vec![], vec![]),
    )
    .await;
    assert_eq!(receipt.local_blob, None);
    assert_eq!(receipt.queue_blob, None);
}

/// A delivery naming an account that does not exist fails as a whole: nothing of it is visible,
/// not even its remote queue entries or the INBOX entries of valid accounts.
pub async fn deliver_unknown_account(store: &dyn Store) {
    let valid = create(store, "conf.valid@example.com").await.id;
    let ghost: AccountId = 0x7fff_ffff_fff0;
    let ghostly = delivery(
        "conf.sender@example.com",
        b"Subject: ghost\r\n\r\n",
        vec![valid, ghost],
        vec!["conf.ghost-remote@remote.example"],
    );
    assert_err(
        store.deliver(ghostly).await,
        is_not_found,
        "delivery to an unknown account",
    );
    assert!(
        inbox_entries(store, valid).await.is_empty(),
        "half a delivery became visible"
    );
    assert_eq!(
        inbox(store, valid).await.uidnext,
        1,
        "UID assignment must be rolled back"
    );
    assert!(
        queue_for(store, &["conf.ghost-remote@remote.example"])
            .await
            .is_empty()
    );
}
