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
//!
//! The checks are grouped by role: `directory.rs`, `deliver.rs`, `queue.rs`, `shared_state.rs`,
//! and the mailstore's `mailboxes.rs`, `messages.rs` and `sync.rs`; the helpers they share are
//! here.

mod deliver;
mod directory;
mod mailboxes;
mod messages;
mod queue;
mod shared_state;
mod sync;

pub use deliver::{
    deliver_empty, deliver_local, deliver_mixed, deliver_null_sender, deliver_remote,
    deliver_spooled, deliver_unknown_account,
};
pub use directory::{
    accounts, aliases, default_mailboxes, delete_account_frees_blobs, duplicate_account,
    password_change, resolve, unknown_ids,
};
pub use mailboxes::{
    ids_never_reused, mailbox_create, mailbox_delete, mailbox_rename, mailbox_unknown_ids,
    rename_inbox, subscriptions,
};
pub use messages::{
    append_and_read, bulk_operations, copy_single_instance, expunge_variants, flags_normalised,
    modseq_increases, move_messages, set_flags_ops, uids_never_reused, unchanged_since,
};
pub use queue::{
    queue_attempts, queue_bounce_and_delete, queue_claims, queue_params, queue_release_leases,
};
pub use shared_state::{
    state_cache, state_counter_concurrency, state_counter_release, state_counters,
    state_lease_race, state_leases, state_prune, state_tls_reports,
};
pub use sync::{account_usage, changes_and_vanished, notifications, recent_claims};

use crate::{
    AccountId, Changes, Delivery, DeliveryReceipt, Expunge, FlagOp, FlagsResult, Mailbox,
    MailboxId, MailboxStatus, MessageEntry, QueueEntry, Store, StoreError,
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
    deliver_spooled(store).await;
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
    state_counters(store).await;
    state_counter_concurrency(store).await;
    state_counter_release(store).await;
    state_leases(store).await;
    state_lease_race(store).await;
    state_cache(store).await;
    state_tls_reports(store).await;
    state_prune(store).await;
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

/// Deletes the account of `address`; whether it existed.
async fn delete_account(store: &dyn Store, address: &str) -> bool {
    store.delete_account(address).await.expect("delete_account")
}

async fn resolved(store: &dyn Store, address: &str) -> Option<AccountId> {
    store.resolve(address).await.expect("resolve")
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
    found(store.blob(id).await, || format!("blob {id}"))
}

async fn deliver(store: &dyn Store, delivery: Delivery) -> DeliveryReceipt {
    store.deliver(delivery).await.expect("deliver")
}

/// Delivers `data` from `s@example.com` to the INBOX of `account`.
async fn deliver_to(store: &dyn Store, account: AccountId, data: &[u8]) -> DeliveryReceipt {
    deliver(
        store,
        delivery("s@example.com", data, vec![account], vec![]),
    )
    .await
}

fn delivery(sender: &str, data: &[u8], local: Vec<AccountId>, remote: Vec<&str>) -> Delivery {
    Delivery {
        sender: sender.to_owned(),
        data: data.to_vec().into(),
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

// ---------------------------------------------------------------------------------------------
// Helpers of the mailbox and message checks.

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|f| (*f).to_owned()).collect()
}

async fn mailbox_named(store: &dyn Store, account: AccountId, name: &str) -> Mailbox {
    found(store.mailbox_by_name(account, name).await, || {
        format!("mailbox {name}")
    })
}

async fn new_mailbox(store: &dyn Store, account: AccountId, name: &str) -> Mailbox {
    store
        .create_mailbox(account, name, None)
        .await
        .unwrap_or_else(|e| panic!("create_mailbox({name}) failed: {e}"))
}

async fn status(store: &dyn Store, mailbox: MailboxId) -> MailboxStatus {
    found(store.mailbox_status(mailbox).await, || {
        format!("status of mailbox {mailbox}")
    })
}

async fn append_n(store: &dyn Store, mailbox: MailboxId, count: u32) -> Vec<u32> {
    let mut uids = Vec::new();
    for n in 0..count {
        let data = format!("Subject: appended {n}\r\n\r\nbody {n}\r\n").into_bytes();
        let appended = store
            .append(mailbox, data.into(), &[], 1_650_000_000 + i64::from(n))
            .await
            .expect("append");
        uids.push(appended.uid);
    }
    uids
}

async fn expunge(store: &dyn Store, mailbox: MailboxId, which: Expunge<'_>) -> Vec<u32> {
    store.expunge(mailbox, which).await.expect("expunge")
}

async fn changes(store: &dyn Store, mailbox: MailboxId, since: u64) -> Changes {
    found(store.changes_since(mailbox, since).await, || {
        format!("changes of mailbox {mailbox}")
    })
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
    found(store.message(mailbox, uid).await, || {
        format!("message {uid} of mailbox {mailbox}")
    })
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

/// What a read must find: panics, naming `what`, on an error and on None.
fn found<T>(result: crate::Result<Option<T>>, what: impl FnOnce() -> String) -> T {
    match result {
        Ok(Some(value)) => value,
        Ok(None) => panic!("{} missing", what()),
        Err(e) => panic!("reading {} failed: {e}", what()),
    }
}

/// Which error a call must fail with: `is_conflict`, `is_not_found` and the like.
type ErrorKind = fn(&StoreError) -> bool;

fn assert_err<T: std::fmt::Debug>(result: crate::Result<T>, want: ErrorKind, what: &str) {
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
