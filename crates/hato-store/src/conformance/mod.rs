//! The backend-neutral conformance suite: the behaviour every [`Store`] backend (SQLite now,
//! PostgreSQL later) must show, written only against the trait so one suite checks them all.
//!
//! Call [`run_all`] on a fresh, empty store from a test (inside a tokio runtime). Every check
//! panics (via `assert!`) on the first deviation, with a message naming what was expected. The
//! checks use distinct addresses, so they also pass in any order on one store, but some assume
//! that no other party writes to the store meanwhile.
//!
//! Compiled only with the cargo feature `conformance`, which a backend's tests enable through a
//! dev-dependency (`hato-store = { path = ..., features = ["conformance"] }`, as this crate does
//! for `tests/sqlite.rs`), so the suite is not part of a release build.

use crate::{
    AccountId, AppendUid, CopyUids, DEFAULT_MAILBOXES, Delivery, Expunge, FlagOp, FlagsResult,
    Mailbox, MailboxChanged, MailboxId, MailboxStatus, MessageEntry, QueueAttempt, QueueEntry,
    QueueParams, QueueSelect, Store, StoreError, Usage,
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
    mailbox_create(store).await;
    mailbox_delete(store).await;
    mailbox_rename(store).await;
    rename_inbox(store).await;
    subscriptions(store).await;
    append_and_read(store).await;
    flags_normalised(store).await;
    set_flags_ops(store).await;
    unchanged_since(store).await;
    expunge_variants(store).await;
    uids_never_reused(store).await;
    modseq_increases(store).await;
    copy_single_instance(store).await;
    move_messages(store).await;
    changes_and_vanished(store).await;
    recent_claims(store).await;
    account_usage(store).await;
    notifications(store).await;
    bulk_operations(store).await;
    ids_never_reused(store).await;
    mailbox_unknown_ids(store).await;
    queue_params(store).await;
    queue_claims(store).await;
    queue_attempts(store).await;
    queue_bounce_and_delete(store).await;
    queue_release_leases(store).await;
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

// ---------------------------------------------------------------------------------------------
// Mailbox operations (IMAP/POP3).

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|f| (*f).to_owned()).collect()
}

async fn mailbox_named(store: &dyn Store, account: AccountId, name: &str) -> Mailbox {
    store
        .mailbox_by_name(account, name)
        .await
        .expect("mailbox_by_name")
        .unwrap_or_else(|| panic!("mailbox {name} missing"))
}

async fn new_mailbox(store: &dyn Store, account: AccountId, name: &str) -> Mailbox {
    store
        .create_mailbox(account, name, None)
        .await
        .unwrap_or_else(|e| panic!("create_mailbox({name}) failed: {e}"))
}

async fn status(store: &dyn Store, mailbox: MailboxId) -> MailboxStatus {
    store
        .mailbox_status(mailbox)
        .await
        .expect("mailbox_status")
        .unwrap_or_else(|| panic!("mailbox {mailbox} has no status"))
}

async fn append_n(store: &dyn Store, mailbox: MailboxId, count: u32) -> Vec<u32> {
    let mut uids = Vec::new();
    for n in 0..count {
        let data = format!("Subject: appended {n}\r\n\r\nbody {n}\r\n").into_bytes();
        let appended = store
            .append(mailbox, data, &[], 1_650_000_000 + i64::from(n))
            .await
            .expect("append");
        uids.push(appended.uid);
    }
    uids
}

async fn uids_of(store: &dyn Store, mailbox: MailboxId) -> Vec<u32> {
    store
        .messages(mailbox)
        .await
        .expect("messages")
        .iter()
        .map(|e| e.uid)
        .collect()
}

async fn entry(store: &dyn Store, mailbox: MailboxId, uid: u32) -> MessageEntry {
    store
        .message(mailbox, uid)
        .await
        .expect("message")
        .unwrap_or_else(|| panic!("message {uid} of mailbox {mailbox} missing"))
}

async fn set(
    store: &dyn Store,
    mailbox: MailboxId,
    uids: &[u32],
    op: FlagOp,
    list: &[&str],
) -> FlagsResult {
    store
        .set_flags(mailbox, uids, op, &flags(list), None)
        .await
        .unwrap_or_else(|e| panic!("set_flags({op:?} {list:?}) failed: {e}"))
}

fn assert_err<T: std::fmt::Debug>(
    result: crate::Result<T>,
    want: fn(&StoreError) -> bool,
    what: &str,
) {
    match result {
        Err(e) if want(&e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    }
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}
fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::NotFound(_))
}
fn is_invalid(e: &StoreError) -> bool {
    matches!(e, StoreError::Invalid(_))
}
fn is_limit(e: &StoreError) -> bool {
    matches!(e, StoreError::Limit(_))
}
fn is_has_children(e: &StoreError) -> bool {
    matches!(e, StoreError::HasChildren(_))
}

/// create_mailbox: fresh UIDVALIDITY, UIDNEXT 1, not subscribed; found by name (case-sensitive
/// except INBOX); Conflict on duplicates and on INBOX in any case; superiors created; special-use
/// canonicalised; malformed names and attributes Invalid; unknown account NotFound.
pub async fn mailbox_create(store: &dyn Store) {
    let a = create(store, "conf.mbox-create@example.com").await;
    let before = store.mailboxes(a.id).await.expect("mailboxes");

    let work = new_mailbox(store, a.id, "Work").await;
    assert_eq!(work.name, "Work");
    assert_eq!(work.account, a.id);
    assert_eq!(work.uidnext, 1);
    assert!(work.highest_modseq >= 1);
    assert!(!work.subscribed, "a created mailbox is not subscribed");
    assert_eq!(work.special_use, None);
    assert!(
        before
            .iter()
            .all(|m| m.uidvalidity != work.uidvalidity && m.id != work.id),
        "fresh UIDVALIDITY and id"
    );
    assert_eq!(
        store.mailbox_by_name(a.id, "Work").await.expect("by name"),
        Some(work.clone())
    );
    assert_eq!(
        store.mailbox_by_name(a.id, "work").await.expect("by name"),
        None,
        "names other than INBOX are case-sensitive"
    );
    assert_err(
        store.create_mailbox(a.id, "Work", None).await,
        is_conflict,
        "duplicate mailbox",
    );
    for inbox in ["INBOX", "inbox", "InBoX"] {
        assert_err(
            store.create_mailbox(a.id, inbox, None).await,
            is_conflict,
            "creating INBOX",
        );
    }
    let by_lower = mailbox_named(store, a.id, "inbox").await;
    assert_eq!(by_lower.name, "INBOX");

    let sent_old = store
        .create_mailbox(a.id, "Outbox/Sent Old", Some("\\sent"))
        .await
        .expect("create with special-use");
    assert_eq!(sent_old.special_use.as_deref(), Some("\\Sent"));
    assert_eq!(mailbox_named(store, a.id, "Outbox").await.special_use, None);

    new_mailbox(store, a.id, "Projects/2024/Q1").await;
    for name in ["Projects", "Projects/2024", "Projects/2024/Q1"] {
        mailbox_named(store, a.id, name).await;
    }
    let lists = new_mailbox(store, a.id, "inbox/Lists").await;
    assert_eq!(lists.name, "INBOX/Lists", "INBOX prefix is canonicalised");
    assert_eq!(mailbox_named(store, a.id, "Inbox/Lists").await.id, lists.id);

    for bad in ["", "/x", "x/", "a//b", "a*", "b%", "c\r\nd"] {
        assert_err(
            store.create_mailbox(a.id, bad, None).await,
            is_invalid,
            &format!("mailbox name {bad:?}"),
        );
        assert_eq!(
            store.mailbox_by_name(a.id, bad).await.expect("by name"),
            None
        );
    }
    for bad in ["\\All", "Sent", "\\Bogus"] {
        assert_err(
            store.create_mailbox(a.id, "Special", Some(bad)).await,
            is_invalid,
            &format!("special-use {bad:?}"),
        );
    }
    assert_err(
        store.create_mailbox(0x7fff_ffff_fff1, "X", None).await,
        is_not_found,
        "unknown account",
    );
    let after = store.mailboxes(a.id).await.expect("mailboxes");
    assert_eq!(after.len(), before.len() + 7, "{after:?}");
    let mut ids: Vec<_> = after.iter().map(|m| m.uidvalidity).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        after.len(),
        "UIDVALIDITY must differ per mailbox"
    );
}

/// delete_mailbox: entries go and unreferenced blobs are freed, shared ones kept; NotFound for a
/// missing mailbox; INBOX cannot be deleted; a mailbox with inferiors cannot be deleted; a
/// re-created name gets a new id and UIDVALIDITY.
pub async fn mailbox_delete(store: &dyn Store) {
    let a = create(store, "conf.mbox-delete@example.com").await;
    let inbox = inbox(store, a.id).await;
    let old = new_mailbox(store, a.id, "Old").await;
    append_n(store, old.id, 2).await;
    let shared = entry(store, old.id, 1).await.blob;
    let own = entry(store, old.id, 2).await.blob;
    store.copy(old.id, &[1], inbox.id).await.expect("copy");

    store.delete_mailbox(a.id, "Old").await.expect("delete");
    assert_eq!(
        store.mailbox_by_name(a.id, "Old").await.expect("by name"),
        None
    );
    assert!(store.messages(old.id).await.expect("messages").is_empty());
    assert_eq!(store.mailbox_status(old.id).await.expect("status"), None);
    assert_eq!(
        store.blob(own).await.expect("blob"),
        None,
        "unreferenced blob freed"
    );
    assert!(
        store.blob(shared).await.expect("blob").is_some(),
        "still in INBOX"
    );
    assert_err(
        store.delete_mailbox(a.id, "Old").await,
        is_not_found,
        "delete again",
    );

    for name in ["INBOX", "inbox"] {
        assert_err(
            store.delete_mailbox(a.id, name).await,
            is_invalid,
            "delete INBOX",
        );
    }
    new_mailbox(store, a.id, "Parent/Child").await;
    assert_err(
        store.delete_mailbox(a.id, "Parent").await,
        is_has_children,
        "delete with inferiors",
    );
    store
        .delete_mailbox(a.id, "Parent/Child")
        .await
        .expect("delete child");
    store
        .delete_mailbox(a.id, "Parent")
        .await
        .expect("delete parent");

    let again = new_mailbox(store, a.id, "Old").await;
    assert_ne!(again.id, old.id, "ids are never reused");
    assert_ne!(
        again.uidvalidity, old.uidvalidity,
        "re-created name reused UIDVALIDITY"
    );
    assert_eq!(again.uidnext, 1);
}

/// rename_mailbox: inferiors move too, ids/UIDVALIDITY/messages stay, subscriptions follow,
/// superiors are created; Conflict, NotFound, and renaming below itself Invalid.
pub async fn mailbox_rename(store: &dyn Store) {
    let a = create(store, "conf.mbox-rename@example.com").await;
    let rust = new_mailbox(store, a.id, "Lists/rust").await;
    let go = new_mailbox(store, a.id, "Lists/go").await;
    let lists = mailbox_named(store, a.id, "Lists").await;
    append_n(store, rust.id, 2).await;
    set(store, rust.id, &[1], FlagOp::Add, &["\\Seen"]).await;
    store
        .set_subscribed(a.id, "Lists/rust", true)
        .await
        .expect("subscribe");

    store
        .rename_mailbox(a.id, "Lists", "Archive/Lists")
        .await
        .expect("rename parent");
    for old in ["Lists", "Lists/rust", "Lists/go"] {
        assert_eq!(
            store.mailbox_by_name(a.id, old).await.expect("by name"),
            None,
            "{old} must be gone"
        );
    }
    for (name, before) in [
        ("Archive/Lists", &lists),
        ("Archive/Lists/rust", &rust),
        ("Archive/Lists/go", &go),
    ] {
        let now = mailbox_named(store, a.id, name).await;
        assert_eq!(now.id, before.id, "{name} keeps its id");
        assert_eq!(
            now.uidvalidity, before.uidvalidity,
            "{name} keeps UIDVALIDITY"
        );
    }
    assert_eq!(uids_of(store, rust.id).await, vec![1, 2]);
    assert_eq!(entry(store, rust.id, 1).await.flags, flags(&["\\Seen"]));
    let subs = store.subscriptions(a.id).await.expect("subscriptions");
    assert!(subs.contains(&"Archive/Lists/rust".to_owned()), "{subs:?}");
    assert!(!subs.contains(&"Lists/rust".to_owned()), "{subs:?}");
    assert!(
        mailbox_named(store, a.id, "Archive/Lists/rust")
            .await
            .subscribed
    );

    assert_err(
        store.rename_mailbox(a.id, "Archive/Lists/go", "Sent").await,
        is_conflict,
        "rename onto an existing mailbox",
    );
    assert_err(
        store
            .rename_mailbox(a.id, "Archive/Lists/go", "inbox")
            .await,
        is_conflict,
        "rename onto INBOX",
    );
    assert_err(
        store.rename_mailbox(a.id, "Nope", "Nope2").await,
        is_not_found,
        "rename a missing mailbox",
    );
    assert_err(
        store
            .rename_mailbox(a.id, "Archive/Lists", "Archive/Lists/sub")
            .await,
        is_invalid,
        "rename below itself",
    );
    new_mailbox(store, a.id, "P/c").await;
    new_mailbox(store, a.id, "Q").await;
    assert_err(
        store.rename_mailbox(a.id, "P", "Q").await,
        is_conflict,
        "rename onto Q",
    );
    assert!(
        store
            .mailbox_by_name(a.id, "P/c")
            .await
            .expect("by name")
            .is_some()
    );

    store
        .rename_mailbox(a.id, "Archive/Lists/go", "New/Deeper/go")
        .await
        .expect("rename creating superiors");
    for name in ["New", "New/Deeper"] {
        mailbox_named(store, a.id, name).await;
    }
    assert_eq!(mailbox_named(store, a.id, "New/Deeper/go").await.id, go.id);
    mailbox_named(store, a.id, "Archive/Lists").await;
}

/// Renaming INBOX (RFC 9051 6.3.6) moves its messages (blobs, flags, dates) into a new mailbox
/// with a new UIDVALIDITY; INBOX stays, empty, keeps UIDVALIDITY and UIDNEXT, records the
/// expunges, and its inferiors are untouched.
pub async fn rename_inbox(store: &dyn Store) {
    let a = create(store, "conf.rename-inbox@example.com").await;
    let inbox = inbox(store, a.id).await;
    append_n(store, inbox.id, 3).await;
    set(store, inbox.id, &[2], FlagOp::Add, &["\\Flagged", "$Work"]).await;
    let keep = new_mailbox(store, a.id, "INBOX/Keep").await;
    append_n(store, keep.id, 1).await;
    let before = store.messages(inbox.id).await.expect("messages");
    let status_before = status(store, inbox.id).await;

    store
        .rename_mailbox(a.id, "inbox", "Old Mail")
        .await
        .expect("rename INBOX");
    let moved = mailbox_named(store, a.id, "Old Mail").await;
    assert_ne!(moved.id, inbox.id);
    assert_ne!(moved.uidvalidity, inbox.uidvalidity);
    let entries = store.messages(moved.id).await.expect("messages");
    assert_eq!(entries.len(), 3);
    for (old, new) in before.iter().zip(&entries) {
        assert_eq!(new.blob, old.blob, "same blob");
        assert_eq!(new.flags, old.flags, "flags kept");
        assert_eq!(new.internal_date, old.internal_date);
        assert_eq!(new.size, old.size);
    }
    let inbox_now = mailbox_named(store, a.id, "INBOX").await;
    assert_eq!(inbox_now.id, inbox.id, "INBOX stays");
    assert_eq!(inbox_now.uidvalidity, inbox.uidvalidity);
    let status_now = status(store, inbox.id).await;
    assert_eq!(status_now.messages, 0, "INBOX is empty");
    assert_eq!(status_now.uidnext, status_before.uidnext, "UIDNEXT kept");
    assert!(status_now.highest_modseq > status_before.highest_modseq);
    let changes = store
        .changes_since(inbox.id, status_before.highest_modseq)
        .await
        .expect("changes_since")
        .expect("mailbox exists");
    assert_eq!(changes.vanished, vec![1, 2, 3]);
    assert_eq!(
        uids_of(store, keep.id).await,
        vec![1],
        "INBOX/Keep untouched"
    );
    assert_eq!(mailbox_named(store, a.id, "INBOX/Keep").await.id, keep.id);
    let next = store
        .append(inbox.id, b"x\r\n".to_vec(), &[], 1)
        .await
        .expect("append");
    assert_eq!(next.uid, status_before.uidnext, "UIDs continue");
}

/// Subscriptions are kept by name: default mailboxes subscribed, new ones not; subscribing needs
/// the mailbox, unsubscribing does not; deleting a mailbox keeps its subscription; deleting the
/// account removes them.
pub async fn subscriptions(store: &dyn Store) {
    let a = create(store, "conf.subscriptions@example.com").await;
    let mut defaults: Vec<String> = DEFAULT_MAILBOXES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    defaults.sort();
    assert_eq!(
        store.subscriptions(a.id).await.expect("subscriptions"),
        defaults
    );

    new_mailbox(store, a.id, "News").await;
    store
        .set_subscribed(a.id, "News", true)
        .await
        .expect("subscribe");
    assert!(mailbox_named(store, a.id, "News").await.subscribed);
    store
        .set_subscribed(a.id, "News", true)
        .await
        .expect("subscribe twice");
    assert_err(
        store.set_subscribed(a.id, "Nope", true).await,
        is_not_found,
        "subscribe a missing mailbox",
    );
    store
        .set_subscribed(a.id, "Nope", false)
        .await
        .expect("unsubscribe a missing name");
    assert_err(
        store.set_subscribed(a.id, "a//b", true).await,
        is_invalid,
        "subscribe a malformed name",
    );

    store.delete_mailbox(a.id, "News").await.expect("delete");
    assert!(
        store
            .subscriptions(a.id)
            .await
            .expect("subscriptions")
            .contains(&"News".to_owned()),
        "a subscription survives DELETE"
    );
    assert!(new_mailbox(store, a.id, "News").await.subscribed, "by name");
    store
        .set_subscribed(a.id, "News", false)
        .await
        .expect("unsubscribe");
    store
        .set_subscribed(a.id, "inbox", false)
        .await
        .expect("unsubscribe INBOX");
    let subs = store.subscriptions(a.id).await.expect("subscriptions");
    assert!(!subs.contains(&"News".to_owned()) && !subs.contains(&"INBOX".to_owned()));
    assert!(!mailbox_named(store, a.id, "INBOX").await.subscribed);

    assert!(
        store
            .delete_account(&a.address)
            .await
            .expect("delete account")
    );
    assert!(
        store
            .subscriptions(a.id)
            .await
            .expect("subscriptions")
            .is_empty()
    );
}

/// append: APPENDUID data, the data stored unchanged as its own blob, flags normalised,
/// internal date and size kept, counters updated; NotFound/Invalid leave nothing behind.
pub async fn append_and_read(store: &dyn Store) {
    let a = create(store, "conf.append@example.com").await;
    let drafts = mailbox_named(store, a.id, "Drafts").await;
    let data = b"Subject: draft\r\n\r\nhello\r\n".to_vec();
    let first = store
        .append(
            drafts.id,
            data.clone(),
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
        .append(drafts.id, b"two\r\n".to_vec(), &[], 1_600_000_001)
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
        store.append(0x7fff_ffff_fff2, b"x".to_vec(), &[], 0).await,
        is_not_found,
        "append to a missing mailbox",
    );
    assert_err(
        store
            .append(drafts.id, b"x".to_vec(), &flags(&["\\Recent"]), 0)
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
            b"x\r\n".to_vec(),
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
        .append(inbox.id, b"y\r\n".to_vec(), &[], 0)
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
    let gone = store
        .expunge(mailbox, Expunge::DeletedAmong(&[3, 1, 2, 77]))
        .await
        .expect("expunge");
    assert_eq!(gone, vec![2, 3], "only \\Deleted ones among the UIDs");
    let h2 = status(store, mailbox).await.highest_modseq;
    assert!(h2 > h);
    let gone = store
        .expunge(mailbox, Expunge::Uids(&[1, 99]))
        .await
        .expect("expunge");
    assert_eq!(gone, vec![1], "exactly the UIDs, whatever their flags");
    let h3 = status(store, mailbox).await.highest_modseq;
    assert!(h3 > h2);
    let gone = store
        .expunge(mailbox, Expunge::Deleted)
        .await
        .expect("expunge");
    assert_eq!(gone, vec![5]);
    let h4 = status(store, mailbox).await.highest_modseq;
    assert!(h4 > h3);
    let gone = store
        .expunge(mailbox, Expunge::Deleted)
        .await
        .expect("expunge");
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
    store
        .expunge(mailbox, Expunge::Uids(&[3]))
        .await
        .expect("expunge");
    assert_eq!(
        status(store, mailbox).await.uidnext,
        4,
        "UIDNEXT never shrinks"
    );
    assert_eq!(append_n(store, mailbox, 1).await, vec![4]);
    store
        .expunge(mailbox, Expunge::Uids(&[1, 2, 4]))
        .await
        .expect("expunge");
    assert_eq!(status(store, mailbox).await.messages, 0);
    assert_eq!(append_n(store, mailbox, 1).await, vec![5]);
    let copied = store.copy(mailbox, &[5], mailbox).await.expect("copy");
    assert_eq!(copied.uids, vec![(5, 6)]);
    let inbox = inbox(store, a.id).await.id;
    store
        .deliver(delivery("s@example.com", b"x\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver");
    store
        .expunge(inbox, Expunge::Uids(&[1]))
        .await
        .expect("expunge");
    store
        .deliver(delivery("s@example.com", b"y\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver");
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
    store
        .deliver(delivery("s@example.com", b"1\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver");
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
    store
        .expunge(inbox, Expunge::Deleted)
        .await
        .expect("expunge");
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
        store
            .deliver(delivery("s@example.com", &data, vec![a.id], vec![]))
            .await
            .expect("deliver");
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
    store
        .expunge(src, Expunge::Uids(&[1]))
        .await
        .expect("expunge");
    store
        .expunge(dst.id, Expunge::Uids(&[1]))
        .await
        .expect("expunge");
    assert!(
        store.blob(blob).await.expect("blob").is_some(),
        "still referenced by Copies UID 3"
    );
    store
        .expunge(dst.id, Expunge::Uids(&[3]))
        .await
        .expect("expunge");
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

/// changes_since: messages with a greater MODSEQ (flag changes and new messages) and UIDs
/// expunged after it, with the HIGHESTMODSEQ of the same snapshot; None for a missing mailbox.
pub async fn changes_and_vanished(store: &dyn Store) {
    let a = create(store, "conf.changes@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Sync").await.id;
    append_n(store, mailbox, 3).await;
    let s0 = status(store, mailbox).await.highest_modseq;
    let changes = |since: u64| async move {
        store
            .changes_since(mailbox, since)
            .await
            .expect("changes_since")
            .expect("mailbox exists")
    };
    let c = changes(s0).await;
    assert!(c.changed.is_empty() && c.vanished.is_empty());
    assert_eq!(c.highest_modseq, s0);

    set(store, mailbox, &[2], FlagOp::Add, &["\\Seen"]).await;
    let c = changes(s0).await;
    assert_eq!(c.changed.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![2]);
    assert_eq!(c.changed[0].flags, flags(&["\\Seen"]));

    store
        .expunge(mailbox, Expunge::Uids(&[3]))
        .await
        .expect("expunge");
    append_n(store, mailbox, 1).await;
    let c = changes(s0).await;
    assert_eq!(
        c.changed.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(c.vanished, vec![3]);
    let s = status(store, mailbox).await;
    assert_eq!(c.highest_modseq, s.highest_modseq);
    assert_eq!(c.uidnext, 5);

    let c = changes(s.highest_modseq).await;
    assert!(c.changed.is_empty() && c.vanished.is_empty());
    let c = changes(0).await;
    assert_eq!(
        c.changed.iter().map(|e| e.uid).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!(c.vanished, vec![3]);
    let c = changes(u64::MAX).await;
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
        store.claim_recent(inbox).await.expect("claim"),
        Some((1, 1)),
        "nothing to claim yet"
    );

    for n in 0..2 {
        store
            .deliver(delivery(
                "s@example.com",
                format!("Subject: recent {n}\r\n\r\nx\r\n").as_bytes(),
                vec![a.id],
                vec![],
            ))
            .await
            .expect("deliver");
    }
    let s = status(store, inbox).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (3, 1, 2), "{s:?}");
    let c = store
        .changes_since(inbox, 0)
        .await
        .expect("changes_since")
        .expect("mailbox exists");
    assert_eq!((c.uidnext, c.recent_uid), (3, 1));

    assert_eq!(
        store.claim_recent(inbox).await.expect("claim"),
        Some((1, 3))
    );
    let s = status(store, inbox).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (3, 3, 0), "{s:?}");
    assert_eq!(
        store.claim_recent(inbox).await.expect("claim"),
        Some((3, 3)),
        "a second claim gets nothing"
    );
    let c = store
        .changes_since(inbox, 0)
        .await
        .expect("changes_since")
        .expect("mailbox exists");
    assert_eq!(c.recent_uid, 3);

    // New mail becomes claimable; an expunged recent message no longer counts.
    append_n(store, inbox, 3).await;
    let s = status(store, inbox).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (6, 3, 3), "{s:?}");
    store
        .expunge(inbox, Expunge::Uids(&[4]))
        .await
        .expect("expunge");
    assert_eq!(status(store, inbox).await.recent, 2);
    assert_eq!(
        store.claim_recent(inbox).await.expect("claim"),
        Some((3, 6))
    );
    assert_eq!(status(store, inbox).await.recent, 0);

    // Copies into another mailbox are recent there; the source is unaffected.
    let other = new_mailbox(store, a.id, "RecentCopy").await.id;
    store.copy(inbox, &[3, 5], other).await.expect("copy");
    let s = status(store, other).await;
    assert_eq!((s.uidnext, s.recent_uid, s.recent), (3, 1, 2), "{s:?}");
    assert_eq!(status(store, inbox).await.recent, 0);
    assert_eq!(
        store.claim_recent(other).await.expect("claim"),
        Some((1, 3))
    );

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

/// account_usage sums the sizes of an account's entries (a copy counts again).
pub async fn account_usage(store: &dyn Store) {
    let a = create(store, "conf.quota@example.com").await;
    assert_eq!(
        store.account_usage(a.id).await.expect("usage"),
        Usage::default()
    );
    store
        .deliver(delivery("s@example.com", b"12345\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver");
    let delivered = entry(store, inbox(store, a.id).await.id, 1).await.size;
    let drafts = mailbox_named(store, a.id, "Drafts").await.id;
    store
        .append(drafts, vec![b'x'; 1000], &[], 0)
        .await
        .expect("append");
    let archive = mailbox_named(store, a.id, "Archive").await.id;
    store
        .copy(inbox(store, a.id).await.id, &[1], archive)
        .await
        .expect("copy");
    assert_eq!(
        store.account_usage(a.id).await.expect("usage"),
        Usage {
            messages: 3,
            bytes: 2 * delivered + 1000
        }
    );
    store
        .expunge(drafts, Expunge::Uids(&[1]))
        .await
        .expect("expunge");
    assert_eq!(
        store.account_usage(a.id).await.expect("usage"),
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

    store
        .deliver(delivery("s@example.com", b"hi\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver");
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
    store
        .expunge(tmp, Expunge::Uids(&[1]))
        .await
        .expect("expunge");
    let expunged = status(store, tmp).await.highest_modseq;
    notified(&mut rx, tmp, |e| e.highest_modseq == expunged, "expunge").await;
    store.delete_mailbox(a.id, "Tmp").await.expect("delete");
    let event = notified(&mut rx, tmp, |e| e.deleted, "delete").await;
    assert_eq!(event.account, a.id);

    // Deleting the account deletes (and announces) every mailbox, INBOX included.
    assert!(
        store
            .delete_account(&a.address)
            .await
            .expect("delete account")
    );
    let event = notified(&mut rx, inbox, |e| e.deleted, "account deletion").await;
    assert_eq!(event.account, a.id);
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

    let gone = store
        .expunge(mailbox, Expunge::Uids(&uids))
        .await
        .expect("expunge");
    assert_eq!(gone.len(), 10_000);
    assert_eq!(status(store, mailbox).await.messages, count - 10_000);
    assert!(store.blob(blob).await.expect("blob").is_some());
    store
        .expunge(mailbox, Expunge::Uids(&(1..=count).collect::<Vec<_>>()))
        .await
        .expect("expunge");
    assert_eq!(store.blob(blob).await.expect("blob"), None);
}

/// Mailbox reads of unknown ids are empty or absent; writes to them are NotFound.
pub async fn mailbox_unknown_ids(store: &dyn Store) {
    let ghost: MailboxId = 0x7fff_ffff_fff8;
    assert_eq!(store.mailbox_status(ghost).await.expect("status"), None);
    assert_eq!(store.message(ghost, 1).await.expect("message"), None);
    assert_eq!(store.message_data(ghost, 1).await.expect("data"), None);
    assert_eq!(store.changes_since(ghost, 0).await.expect("changes"), None);
    assert_eq!(
        store.account_usage(ghost).await.expect("usage"),
        Usage::default()
    );
    assert_eq!(
        store
            .mailbox_by_name(ghost, "INBOX")
            .await
            .expect("by name"),
        None
    );
    assert!(
        store
            .subscriptions(ghost)
            .await
            .expect("subscriptions")
            .is_empty()
    );
    assert_err(
        store.delete_mailbox(ghost, "X").await,
        is_not_found,
        "delete",
    );
    assert_err(
        store.rename_mailbox(ghost, "X", "Y").await,
        is_not_found,
        "rename",
    );
    assert_err(
        store.move_messages(ghost, &[1], ghost).await,
        is_not_found,
        "move",
    );
}

/// Blob, mailbox and account ids are never handed out again, even after the row with the
/// largest id was deleted (a session holding a stale id must never reach someone else's data).
pub async fn ids_never_reused(store: &dyn Store) {
    let a = create(store, "conf.ids@example.com").await;
    let mailbox = new_mailbox(store, a.id, "Ids").await;
    append_n(store, mailbox.id, 1).await;
    let blob = entry(store, mailbox.id, 1).await.blob;
    store
        .expunge(mailbox.id, Expunge::Uids(&[1]))
        .await
        .expect("expunge");
    assert_eq!(store.blob(blob).await.expect("blob"), None);
    append_n(store, mailbox.id, 1).await;
    assert_ne!(
        entry(store, mailbox.id, 2).await.blob,
        blob,
        "blob id reused"
    );
    let receipt = store
        .deliver(delivery("s@example.com", b"x\r\n", vec![a.id], vec![]))
        .await
        .expect("deliver");
    assert_ne!(receipt.local_blob, Some(blob), "blob id reused");

    store.delete_mailbox(a.id, "Ids").await.expect("delete");
    let again = new_mailbox(store, a.id, "Ids2").await;
    assert_ne!(again.id, mailbox.id, "mailbox id reused");

    assert!(store.delete_account(&a.address).await.expect("delete"));
    let b = create(store, "conf.ids2@example.com").await;
    assert_ne!(b.id, a.id, "account id reused");
    for m in store.mailboxes(b.id).await.expect("mailboxes") {
        assert!(m.id != mailbox.id && m.id != again.id, "mailbox id reused");
    }
    assert_eq!(
        store.mailbox_status(again.id).await.expect("status"),
        None,
        "a stale mailbox id reads as absent"
    );
}

// -- Outbound queue ---------------------------------------------------------------------------
//
// These checks queue mail with creation times far before the other checks' (1_700_000_000), so
// `due_queue` at their `now` sees only their own entries.

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

fn claimed(groups: &[crate::DueDomain]) -> Vec<(String, String)> {
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
    let first = store
        .queue_entry(queued[0].id)
        .await
        .expect("read")
        .expect("entry");
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
        store
            .due_queue(T - 1, 100, 600)
            .await
            .expect("due")
            .is_empty(),
        "nothing due yet"
    );
    assert!(
        store
            .due_queue(T + 10, 0, 600)
            .await
            .expect("due")
            .is_empty(),
        "limit 0"
    );

    let groups = store.due_queue(T + 10, 100, 600).await.expect("due");
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
        let stored = store.queue_entry(e.id).await.expect("read").expect("entry");
        assert_eq!(&stored, e, "the claim is stored");
    }
    assert!(
        store
            .due_queue(T + 10, 100, 600)
            .await
            .expect("due")
            .is_empty(),
        "leased: not again"
    );
    assert!(
        store
            .due_queue(T + 609, 100, 600)
            .await
            .expect("due")
            .is_empty(),
        "lease still runs"
    );

    // The lease expired (the claimer died): due again, with a new claim token.
    let again = store.due_queue(T + 610, 2, 60).await.expect("due");
    assert_eq!(claimed(&again).len(), 2, "limit counts entries");
    let rest = store.due_queue(T + 610, 100, 60).await.expect("due");
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
            .record_attempt(
                first[0].id,
                1,
                QueueAttempt {
                    at: T,
                    error: "x".into(),
                    next_attempt: T,
                    tls: None
                }
            )
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
    let entries = queue_at(
        store,
        T,
        &["conf.a1@attempt.example", "conf.a2@attempt.example"],
    )
    .await;
    let groups = store.due_queue(T, 10, 600).await.expect("due");
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
    let after = store.queue_entry(e.id).await.expect("read").expect("entry");
    assert_eq!(after.attempts, 1);
    assert_eq!(after.last_error.as_deref(), Some("451 4.7.1 greylisted"));
    assert_eq!(after.last_attempt, Some(T + 1));
    assert_eq!(after.last_tls.as_deref(), Some(tls));
    assert_eq!(after.next_attempt, T + 61);
    assert_eq!(after.leased_until, 0, "lease released");
    assert!(
        store
            .due_queue(T + 60, 10, 600)
            .await
            .expect("due")
            .is_empty()
    );
    // A second record with the same (now unleased but still current) claim is allowed once more:
    // the token changes only with the next claim.
    let groups = store.due_queue(T + 61, 10, 600).await.expect("due");
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
    assert_eq!(
        store
            .queue_entry(e.id)
            .await
            .expect("read")
            .expect("entry")
            .attempts,
        2
    );

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
    let groups = store.due_queue(T + 100, 10, 600).await.expect("due");
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
    let entries = queue_at(
        store,
        T,
        &["conf.b1@bounce.example", "conf.b2@bounce.example"],
    )
    .await;
    let groups = store.due_queue(T, 10, 600).await.expect("due");
    let [first, second] = [&groups[0].entries[0], &groups[0].entries[1]];
    // b1 fails and waits an hour; the operator bounces it.
    assert!(
        store
            .record_attempt(
                first.id,
                first.claim,
                QueueAttempt {
                    at: T,
                    error: "421 busy".into(),
                    next_attempt: T + 3600,
                    tls: None
                }
            )
            .await
            .expect("attempt")
    );
    assert!(
        store
            .queue_bounce(first.id, "bounced by the operator", T + 5)
            .await
            .expect("bounce")
    );
    let b1 = store
        .queue_entry(first.id)
        .await
        .expect("read")
        .expect("entry");
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
    let due = store.due_queue(T + 5, 10, 600).await.expect("due");
    assert_eq!(
        claimed(&due),
        vec![("bounce.example".into(), "conf.b1@bounce.example".into())]
    );
    assert!(
        store
            .record_attempt(
                second.id,
                second.claim,
                QueueAttempt {
                    at: T + 6,
                    error: "421 busy".into(),
                    next_attempt: T + 3600,
                    tls: None
                }
            )
            .await
            .expect("attempt")
    );
    let b2 = store
        .queue_entry(second.id)
        .await
        .expect("read")
        .expect("entry");
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
    let mine = |groups: &[crate::DueDomain]| {
        groups
            .iter()
            .flat_map(|g| g.entries.iter())
            .filter(|e| e.recipient == "conf.rl1@lease.example")
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = mine(&store.due_queue(T + 1, 1000, 600).await.expect("due"));
    assert_eq!(first.len(), 1);
    assert!(
        mine(&store.due_queue(T + 2, 1000, 600).await.expect("due")).is_empty(),
        "leased"
    );
    assert!(store.release_leases().await.expect("release") >= 1);
    let again = mine(&store.due_queue(T + 2, 1000, 600).await.expect("due"));
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
