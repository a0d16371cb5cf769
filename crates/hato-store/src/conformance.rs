//! The backend-neutral conformance suite: the behaviour every [`Store`] backend (SQLite now,
//! PostgreSQL later) must show, written only against the trait so one suite checks them all.
//!
//! Call [`run_all`] on a fresh, empty store from a test (inside a tokio runtime). Every check
//! panics (via `assert!`) on the first deviation, with a message naming what was expected. The
//! checks use distinct addresses, so they also pass in any order on one store, but some assume
//! that no other party writes to the store meanwhile.

use crate::{
    AccountId, DEFAULT_MAILBOXES, Delivery, Mailbox, MessageEntry, QueueEntry, Store, StoreError,
};

/// Runs every check, in order.
pub async fn run_all(store: &dyn Store) {
    accounts(store).await;
    default_mailboxes(store).await;
    duplicate_account(store).await;
    password_change(store).await;
    aliases(store).await;
    resolve(store).await;
    deliver_local(store).await;
    deliver_null_sender(store).await;
    deliver_remote(store).await;
    deliver_mixed(store).await;
    deliver_empty(store).await;
    deliver_unknown_account(store).await;
    delete_account_frees_blobs(store).await;
    unknown_ids(store).await;
}

fn hash(n: u32) -> String {
    format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${n}")
}

async fn create(store: &dyn Store, address: &str) -> crate::Account {
    store
        .create_account(address, &hash(0))
        .await
        .unwrap_or_else(|e| panic!("create_account({address}) failed: {e}"))
}

async fn inbox(store: &dyn Store, account: AccountId) -> Mailbox {
    store
        .mailboxes(account)
        .await
        .expect("mailboxes")
        .into_iter()
        .find(|m| m.name == "INBOX")
        .unwrap_or_else(|| panic!("account {account} has no INBOX"))
}

async fn inbox_entries(store: &dyn Store, account: AccountId) -> Vec<MessageEntry> {
    let inbox = inbox(store, account).await;
    store.messages(inbox.id).await.expect("messages")
}

async fn queue_for(store: &dyn Store, recipients: &[&str]) -> Vec<QueueEntry> {
    store
        .queue()
        .await
        .expect("queue")
        .into_iter()
        .filter(|q| recipients.contains(&q.recipient.as_str()))
        .collect()
}

async fn blob(store: &dyn Store, id: crate::BlobId) -> Vec<u8> {
    store
        .blob(id)
        .await
        .expect("blob")
        .unwrap_or_else(|| panic!("blob {id} missing"))
}

fn delivery(sender: &str, data: &[u8], local: Vec<AccountId>, remote: Vec<&str>) -> Delivery {
    Delivery {
        sender: sender.to_owned(),
        data: data.to_vec(),
        local,
        remote: remote.into_iter().map(str::to_owned).collect(),
        received_at: 1_700_000_000,
    }
}

fn local_copy(sender: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("Return-Path: <{sender}>\r\n").into_bytes();
    v.extend_from_slice(data);
    v
}

/// Account CRUD: create (normalised to lower case), look up by address (any case) and id, list,
/// delete (true once, then false), gone afterwards.
pub async fn accounts(store: &dyn Store) {
    let created = create(store, "Conf.Alice@Example.COM").await;
    assert_eq!(created.address, "conf.alice@example.com");
    assert_eq!(created.password_hash, hash(0));
    assert!(created.created > 0, "created must be set");

    let by_address = store
        .account("CONF.ALICE@example.com")
        .await
        .expect("account");
    assert_eq!(by_address.as_ref(), Some(&created));
    let by_id = store
        .account_by_id(created.id)
        .await
        .expect("account_by_id");
    assert_eq!(by_id.as_ref(), Some(&created));
    assert!(
        store
            .list_accounts()
            .await
            .expect("list_accounts")
            .contains(&created)
    );
    assert_eq!(
        store
            .account("conf.nobody@example.com")
            .await
            .expect("account"),
        None
    );

    assert!(
        store
            .delete_account("conf.alice@EXAMPLE.com")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_account("conf.alice@example.com")
            .await
            .expect("delete again")
    );
    assert_eq!(
        store
            .account("conf.alice@example.com")
            .await
            .expect("account"),
        None
    );
    assert_eq!(
        store
            .account_by_id(created.id)
            .await
            .expect("account_by_id"),
        None
    );
    assert!(
        !store
            .list_accounts()
            .await
            .expect("list_accounts")
            .iter()
            .any(|a| a.id == created.id)
    );
    assert!(
        store
            .mailboxes(created.id)
            .await
            .expect("mailboxes")
            .is_empty(),
        "a deleted account's mailboxes must be gone"
    );
}

/// A new account has INBOX, Sent, Drafts, Trash, Junk, Archive with their special-use attribute,
/// subscribed, empty (UIDNEXT 1), with distinct non-zero UIDVALIDITY and a positive HIGHESTMODSEQ.
pub async fn default_mailboxes(store: &dyn Store) {
    let account = create(store, "conf.mailboxes@example.com").await;
    let mailboxes = store.mailboxes(account.id).await.expect("mailboxes");
    assert_eq!(mailboxes.len(), DEFAULT_MAILBOXES.len(), "{mailboxes:?}");
    for (name, special_use) in DEFAULT_MAILBOXES {
        let m = mailboxes
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("mailbox {name} missing"));
        assert_eq!(
            m.special_use.as_deref(),
            special_use,
            "special-use of {name}"
        );
        assert_eq!(m.account, account.id);
        assert!(m.subscribed, "{name} must be subscribed");
        assert_eq!(m.uidnext, 1, "uidnext of {name}");
        assert!(m.uidvalidity > 0, "uidvalidity of {name}");
        assert!(m.highest_modseq >= 1, "highest_modseq of {name}");
        assert!(store.messages(m.id).await.expect("messages").is_empty());
    }
    let mut validities: Vec<u32> = mailboxes.iter().map(|m| m.uidvalidity).collect();
    validities.sort_unstable();
    validities.dedup();
    assert_eq!(
        validities.len(),
        mailboxes.len(),
        "UIDVALIDITY must differ per mailbox"
    );

    // Re-creating the account must not reuse a UIDVALIDITY for the same names.
    assert!(
        store
            .delete_account(&account.address)
            .await
            .expect("delete")
    );
    let again = create(store, "conf.mailboxes@example.com").await;
    let inbox_before = mailboxes
        .iter()
        .find(|m| m.name == "INBOX")
        .map(|m| m.uidvalidity);
    let inbox_after = inbox(store, again.id).await.uidvalidity;
    assert_ne!(
        inbox_before,
        Some(inbox_after),
        "re-created INBOX reused its UIDVALIDITY"
    );
}

/// Creating an account whose address (in any case) exists is a Conflict.
pub async fn duplicate_account(store: &dyn Store) {
    create(store, "conf.dup@example.com").await;
    let err = store
        .create_account("Conf.DUP@example.com", &hash(1))
        .await
        .expect_err("duplicate account must fail");
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "want Conflict, got {err:?}"
    );
    let account = store
        .account("conf.dup@example.com")
        .await
        .expect("account");
    assert_eq!(
        account.map(|a| a.password_hash),
        Some(hash(0)),
        "original must be untouched"
    );
}

/// set_password replaces the hash of an existing account and reports false for unknown ones.
pub async fn password_change(store: &dyn Store) {
    let account = create(store, "conf.password@example.com").await;
    assert!(
        store
            .set_password("Conf.Password@example.com", &hash(7))
            .await
            .expect("set_password")
    );
    let after = store
        .account_by_id(account.id)
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(after.password_hash, hash(7));
    assert_eq!(after.created, account.created);
    assert!(
        !store
            .set_password("conf.nobody@example.com", &hash(8))
            .await
            .expect("set_password unknown")
    );
}

/// Aliases: added to existing accounts only (NotFound), may not shadow an account or another
/// alias and accounts may not shadow them (Conflict), listed lower-case, removable, and removed
/// with their target account.
pub async fn aliases(store: &dyn Store) {
    let target = create(store, "conf.target@example.com").await;
    create(store, "conf.other@example.com").await;

    store
        .add_alias("Conf.Postmaster@Example.com", "CONF.TARGET@example.com")
        .await
        .expect("add_alias");
    let list = store.list_aliases().await.expect("list_aliases");
    assert!(
        list.iter()
            .any(|a| a.address == "conf.postmaster@example.com"
                && a.target == "conf.target@example.com"),
        "{list:?}"
    );

    let err = store
        .add_alias("conf.ghost-alias@example.com", "conf.ghost@example.com")
        .await
        .expect_err("alias to a missing account");
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "want NotFound, got {err:?}"
    );

    let err = store
        .add_alias("conf.other@example.com", "conf.target@example.com")
        .await
        .expect_err("alias shadowing an account");
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "want Conflict, got {err:?}"
    );

    let err = store
        .add_alias("conf.postmaster@example.com", "conf.other@example.com")
        .await
        .expect_err("duplicate alias");
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "want Conflict, got {err:?}"
    );

    let err = store
        .create_account("CONF.postmaster@example.com", &hash(0))
        .await
        .expect_err("account shadowing an alias");
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "want Conflict, got {err:?}"
    );

    // The failed add left the alias on its original target.
    assert_eq!(
        store
            .resolve("conf.postmaster@example.com")
            .await
            .expect("resolve"),
        Some(target.id)
    );

    assert!(
        store
            .remove_alias("CONF.postmaster@example.com")
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_alias("conf.postmaster@example.com")
            .await
            .expect("remove again")
    );
    assert_eq!(
        store
            .resolve("conf.postmaster@example.com")
            .await
            .expect("resolve"),
        None
    );

    // Deleting the target removes its aliases.
    store
        .add_alias("conf.abuse@example.com", "conf.other@example.com")
        .await
        .expect("add_alias");
    assert!(
        store
            .delete_account("conf.other@example.com")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .list_aliases()
            .await
            .expect("list_aliases")
            .iter()
            .any(|a| a.address == "conf.abuse@example.com"),
        "alias of a deleted account must be gone"
    );
    assert_eq!(
        store
            .resolve("conf.abuse@example.com")
            .await
            .expect("resolve"),
        None
    );
}

/// resolve maps an account address or an alias, in any case, to the account id.
pub async fn resolve(store: &dyn Store) {
    let account = create(store, "conf.resolve@example.com").await;
    store
        .add_alias("conf.resolve-alias@example.com", "conf.resolve@example.com")
        .await
        .expect("add_alias");
    for address in [
        "conf.resolve@example.com",
        "Conf.Resolve@EXAMPLE.COM",
        "conf.resolve-alias@example.com",
        "CONF.RESOLVE-ALIAS@Example.Com",
    ] {
        assert_eq!(
            store.resolve(address).await.expect("resolve"),
            Some(account.id),
            "resolve({address})"
        );
    }
    assert_eq!(
        store
            .resolve("conf.unknown@example.com")
            .await
            .expect("resolve"),
        None
    );
}

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
        let receipt = store
            .deliver(delivery("sender@remote.example", &data, local, vec![]))
            .await
            .expect("deliver");
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
                assert!(
                    store
                        .messages(mailbox.id)
                        .await
                        .expect("messages")
                        .is_empty()
                );
            }
        }
    }
}

/// The null reverse-path becomes `Return-Path: <>`.
pub async fn deliver_null_sender(store: &dyn Store) {
    let account = create(store, "conf.bounce@example.com").await;
    let data = b"Subject: bounce\r\n\r\nfailed\r\n";
    let receipt = store
        .deliver(delivery("", data, vec![account.id], vec![]))
        .await
        .expect("deliver");
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
    let receipt = store
        .deliver(delivery(
            "conf.sender@example.com",
            data,
            vec![],
            recipients.to_vec(),
        ))
        .await
        .expect("deliver");
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

/// Local and remote recipients together: two blobs, the local one with Return-Path.
pub async fn deliver_mixed(store: &dyn Store) {
    let a = create(store, "conf.mixed1@example.com").await.id;
    let b = create(store, "conf.mixed2@example.com").await.id;
    let remote = ["conf.m1@remote.example", "conf.m2@remote.example"];
    let data = b"Subject: mixed\r\n\r\nboth\r\n";
    let receipt = store
        .deliver(delivery(
            "conf.mixer@example.com",
            data,
            vec![b, a],
            remote.to_vec(),
        ))
        .await
        .expect("deliver");
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
    let receipt = store
        .deliver(delivery("conf.nobody@example.com", b"x", vec![], vec![]))
        .await
        .expect("deliver");
    assert_eq!(receipt.local_blob, None);
    assert_eq!(receipt.queue_blob, None);
}

/// A delivery naming an account that does not exist fails as a whole: nothing of it is visible,
/// not even its remote queue entries or the INBOX entries of valid accounts.
pub async fn deliver_unknown_account(store: &dyn Store) {
    let valid = create(store, "conf.valid@example.com").await.id;
    let ghost: AccountId = 0x7fff_ffff_fff0;
    let err = store
        .deliver(delivery(
            "conf.sender@example.com",
            b"Subject: ghost\r\n\r\n",
            vec![valid, ghost],
            vec!["conf.ghost-remote@remote.example"],
        ))
        .await
        .expect_err("delivery to an unknown account must fail");
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "want NotFound, got {err:?}"
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

/// Deleting an account drops its entries and frees each blob once nothing references it any
/// more, but keeps blobs still referenced by another account or by the queue.
pub async fn delete_account_frees_blobs(store: &dyn Store) {
    let a = create(store, "conf.free1@example.com").await;
    let b = create(store, "conf.free2@example.com").await;

    let shared = store
        .deliver(delivery(
            "s@example.com",
            b"shared\r\n",
            vec![a.id, b.id],
            vec![],
        ))
        .await
        .expect("deliver")
        .local_blob
        .expect("blob");
    let own = store
        .deliver(delivery("s@example.com", b"own\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver")
        .local_blob
        .expect("blob");
    let mixed = store
        .deliver(delivery(
            "s@example.com",
            b"mixed\r\n",
            vec![a.id],
            vec!["conf.free-remote@remote.example"],
        ))
        .await
        .expect("deliver");
    let mixed_local = mixed.local_blob.expect("blob");
    let mixed_queue = mixed.queue_blob.expect("blob");
    let inbox_a = inbox(store, a.id).await.id;

    assert!(
        store
            .delete_account("CONF.FREE1@example.com")
            .await
            .expect("delete")
    );
    assert!(
        store.messages(inbox_a).await.expect("messages").is_empty(),
        "entries must go"
    );
    assert_eq!(
        store.blob(own).await.expect("blob"),
        None,
        "unreferenced blob must be freed"
    );
    assert_eq!(store.blob(mixed_local).await.expect("blob"), None);
    assert!(
        store.blob(shared).await.expect("blob").is_some(),
        "still referenced by b"
    );
    assert!(
        store.blob(mixed_queue).await.expect("blob").is_some(),
        "still queued"
    );
    assert_eq!(inbox_entries(store, b.id).await.len(), 1);

    assert!(
        store
            .delete_account("conf.free2@example.com")
            .await
            .expect("delete")
    );
    assert_eq!(
        store.blob(shared).await.expect("blob"),
        None,
        "last reference gone"
    );
    assert_eq!(
        queue_for(store, &["conf.free-remote@remote.example"])
            .await
            .len(),
        1
    );
}

/// Unknown ids read as empty or absent, never as errors.
pub async fn unknown_ids(store: &dyn Store) {
    assert_eq!(store.account_by_id(-1).await.expect("account_by_id"), None);
    assert!(store.mailboxes(-1).await.expect("mailboxes").is_empty());
    assert!(store.messages(-1).await.expect("messages").is_empty());
    assert_eq!(store.blob(-1).await.expect("blob"), None);
    assert!(
        !store
            .delete_account("conf.never@example.com")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .remove_alias("conf.never@example.com")
            .await
            .expect("remove_alias")
    );
}
