//! Checks of the [`Directory`](crate::Directory) role: accounts, aliases, `resolve`, and what
//! deleting an account takes with it.

use super::{
    ErrorKind, assert_err, create, delete_account, deliver, delivery, hash, inbox, inbox_entries,
    is_conflict, is_not_found, queue_for, resolved,
};
use crate::{DEFAULT_MAILBOXES, Store};

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

    assert!(delete_account(store, "conf.alice@EXAMPLE.com").await);
    assert!(
        !delete_account(store, "conf.alice@example.com").await,
        "delete again"
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
    assert!(delete_account(store, &account.address).await);
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
    assert_err(
        store.create_account("Conf.DUP@example.com", &hash(1)).await,
        is_conflict,
        "duplicate account",
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

    let refused: [(&str, &str, ErrorKind, &str); 3] = [
        (
            "conf.ghost-alias@example.com",
            "conf.ghost@example.com",
            is_not_found,
            "alias to a missing account",
        ),
        (
            "conf.other@example.com",
            "conf.target@example.com",
            is_conflict,
            "alias shadowing an account",
        ),
        (
            "conf.postmaster@example.com",
            "conf.other@example.com",
            is_conflict,
            "duplicate alias",
        ),
    ];
    for (alias, target, want, what) in refused {
        assert_err(store.add_alias(alias, target).await, want, what);
    }
    assert_err(
        store
            .create_account("CONF.postmaster@example.com", &hash(0))
            .await,
        is_conflict,
        "account shadowing an alias",
    );

    // The failed add left the alias on its original target.
    assert_eq!(
        resolved(store, "conf.postmaster@example.com").await,
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
    assert_eq!(resolved(store, "conf.postmaster@example.com").await, None);

    // Deleting the target removes its aliases.
    store
        .add_alias("conf.abuse@example.com", "conf.other@example.com")
        .await
        .expect("add_alias");
    assert!(delete_account(store, "conf.other@example.com").await);
    assert!(
        !store
            .list_aliases()
            .await
            .expect("list_aliases")
            .iter()
            .any(|a| a.address == "conf.abuse@example.com"),
        "alias of a deleted account must be gone"
    );
    assert_eq!(resolved(store, "conf.abuse@example.com").await, None);
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
            resolved(store, address).await,
            Some(account.id),
            "resolve({address})"
        );
    }
    assert_eq!(resolved(store, "conf.unknown@example.com").await, None);
}

/// Deleting an account drops its entries and frees each blob once nothing references it any
/// more, but keeps blobs still referenced by another account or by the queue.
pub async fn delete_account_frees_blobs(store: &dyn Store) {
    let a = create(store, "conf.free1@example.com").await;
    let b = create(store, "conf.free2@example.com").await;

    let shared = deliver(
        store,
        delivery("s@example.com", b"shared\r\n", vec![a.id, b.id], vec![]),
    )
    .await
    .local_blob
    .expect("blob");
    let own = deliver(
        store,
        delivery("s@example.com", b"own\r\n", vec![a.id], vec![]),
    )
    .await
    .local_blob
    .expect("blob");
    let mixed = deliver(
        store,
        delivery(
            "s@example.com",
            b"mixed\r\n",
            vec![a.id],
            vec!["conf.free-remote@remote.example"],
        ),
    )
    .await;
    let mixed_local = mixed.local_blob.expect("blob");
    let mixed_queue = mixed.queue_blob.expect("blob");
    let inbox_a = inbox(store, a.id).await.id;

    assert!(delete_account(store, "CONF.FREE1@example.com").await);
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

    assert!(delete_account(store, "conf.free2@example.com").await);
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
    assert!(!delete_account(store, "conf.never@example.com").await);
    assert!(
        !store
            .remove_alias("conf.never@example.com")
            .await
            .expect("remove_alias")
    );
}
