//! Checks of the [`Mailstore`](crate::Mailstore) role, mailbox level: create, delete, rename,
//! subscriptions, unknown and stale ids.

use super::{
    ErrorKind, append_n, assert_err, changes, create, delete_account, deliver_to, entry, expunge,
    flags, inbox, is_conflict, is_has_children, is_invalid, is_not_found, mailbox_named,
    new_mailbox, set, status, uids_of,
};
use crate::{AccountId, DEFAULT_MAILBOXES, Expunge, FlagOp, MailboxId, Store, Usage};

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
    subscribe(store, a.id, "Lists/rust", true).await;

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
    let subs = subscribed(store, a.id).await;
    assert!(subs.contains(&"Archive/Lists/rust".to_owned()), "{subs:?}");
    assert!(!subs.contains(&"Lists/rust".to_owned()), "{subs:?}");
    assert!(
        mailbox_named(store, a.id, "Archive/Lists/rust")
            .await
            .subscribed
    );

    let refused: [(&str, &str, ErrorKind, &str); 4] = [
        (
            "Archive/Lists/go",
            "Sent",
            is_conflict,
            "onto an existing mailbox",
        ),
        ("Archive/Lists/go", "inbox", is_conflict, "onto INBOX"),
        ("Nope", "Nope2", is_not_found, "a missing mailbox"),
        (
            "Archive/Lists",
            "Archive/Lists/sub",
            is_invalid,
            "below itself",
        ),
    ];
    for (from, to, want, what) in refused {
        assert_err(
            store.rename_mailbox(a.id, from, to).await,
            want,
            &format!("rename {what}"),
        );
    }
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
    let changes = changes(store, inbox.id, status_before.highest_modseq).await;
    assert_eq!(changes.vanished, vec![1, 2, 3]);
    assert_eq!(
        uids_of(store, keep.id).await,
        vec![1],
        "INBOX/Keep untouched"
    );
    assert_eq!(mailbox_named(store, a.id, "INBOX/Keep").await.id, keep.id);
    let next = store
        .append(inbox.id, b"x\r\n".to_vec().into(), &[], 1)
        .await
        .expect("append");
    assert_eq!(next.uid, status_before.uidnext, "UIDs continue");
}

/// Subscribes (`on`) or unsubscribes `name`.
async fn subscribe(store: &dyn Store, account: AccountId, name: &str, on: bool) {
    store
        .set_subscribed(account, name, on)
        .await
        .unwrap_or_else(|e| panic!("set_subscribed({name}, {on}) failed: {e}"));
}

/// The names `account` subscribes to.
async fn subscribed(store: &dyn Store, account: AccountId) -> Vec<String> {
    store.subscriptions(account).await.expect("subscriptions")
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
    assert_eq!(subscribed(store, a.id).await, defaults);

    new_mailbox(store, a.id, "News").await;
    subscribe(store, a.id, "News", true).await;
    assert!(mailbox_named(store, a.id, "News").await.subscribed);
    subscribe(store, a.id, "News", true).await; // twice: no error
    assert_err(
        store.set_subscribed(a.id, "Nope", true).await,
        is_not_found,
        "subscribe a missing mailbox",
    );
    subscribe(store, a.id, "Nope", false).await; // unsubscribing needs no mailbox
    assert_err(
        store.set_subscribed(a.id, "a//b", true).await,
        is_invalid,
        "subscribe a malformed name",
    );

    store.delete_mailbox(a.id, "News").await.expect("delete");
    assert!(
        subscribed(store, a.id).await.contains(&"News".to_owned()),
        "a subscription survives DELETE"
    );
    assert!(new_mailbox(store, a.id, "News").await.subscribed, "by name");
    subscribe(store, a.id, "News", false).await;
    subscribe(store, a.id, "inbox", false).await;
    let subs = subscribed(store, a.id).await;
    assert!(!subs.contains(&"News".to_owned()) && !subs.contains(&"INBOX".to_owned()));
    assert!(!mailbox_named(store, a.id, "INBOX").await.subscribed);

    assert!(delete_account(store, &a.address).await);
    assert!(subscribed(store, a.id).await.is_empty());
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
    assert!(subscribed(store, ghost).await.is_empty());
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
    expunge(store, mailbox.id, Expunge::Uids(&[1])).await;
    assert_eq!(store.blob(blob).await.expect("blob"), None);
    append_n(store, mailbox.id, 1).await;
    assert_ne!(
        entry(store, mailbox.id, 2).await.blob,
        blob,
        "blob id reused"
    );
    let receipt = deliver_to(store, a.id, b"x\r\n").await;
    assert_ne!(receipt.local_blob, Some(blob), "blob id reused");

    store.delete_mailbox(a.id, "Ids").await.expect("delete");
    let again = new_mailbox(store, a.id, "Ids2").await;
    assert_ne!(again.id, mailbox.id, "mailbox id reused");

    assert!(delete_account(store, &a.address).await);
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
