//! Mailbox rows for [`Mailstore`](crate::Mailstore): lookup, create (with missing superiors),
//! delete, rename, subscriptions, the STATUS counters and the `\Recent` watermark.
//!
//! `*_tx` functions run on the writer thread, inside the batch transaction; `*_read` functions
//! on a pooled read connection, their statements sharing one read transaction (one snapshot).

use rusqlite::{Connection, OptionalExtension, params};

use super::ids::{IdSpace, next_id, next_uidvalidity};
use super::messages::move_tx;
use super::{Context, get_u64, is_constraint, now};
use crate::rules::{
    HIERARCHY_DELIMITER, MAX_MAILBOXES, canonical_mailbox_name, is_inbox, is_same_or_below,
    parent_names,
};
use crate::{AccountId, Mailbox, MailboxId, MailboxStatus, Result, StoreError};

/// Columns of a [`Mailbox`], read by [`mailbox_row`].
pub(super) const MAILBOX_SELECT: &str =
    "SELECT m.id, m.account_id, m.name, m.special_use, m.uidvalidity,
        m.uidnext, m.highest_modseq,
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name)
    FROM mailboxes m";

pub(super) fn mailbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    Ok(Mailbox {
        id: r.get(0)?,
        account: r.get(1)?,
        name: r.get(2)?,
        special_use: r.get(3)?,
        uidvalidity: r.get(4)?,
        uidnext: r.get(5)?,
        highest_modseq: get_u64(r, 6)?,
        subscribed: r.get(7)?,
    })
}

/// `(account, uidvalidity)` of a mailbox, NotFound if it does not exist.
pub(super) fn mailbox_owner(conn: &Connection, mailbox: MailboxId) -> Result<(AccountId, u32)> {
    conn.prepare_cached("SELECT account_id, uidvalidity FROM mailboxes WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("reading mailbox")?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

pub(super) fn find_mailbox(
    conn: &Connection,
    account: AccountId,
    name: &str,
) -> Result<Option<MailboxId>> {
    conn.prepare_cached("SELECT id FROM mailboxes WHERE account_id = ?1 AND name = ?2")
        .and_then(|mut s| s.query_row(params![account, name], |r| r.get(0)).optional())
        .ctx("looking up mailbox")
}

fn read_mailbox(conn: &Connection, id: MailboxId) -> Result<Mailbox> {
    conn.prepare_cached(&format!("{MAILBOX_SELECT} WHERE m.id = ?1"))
        .and_then(|mut s| s.query_row([id], mailbox_row).optional())
        .ctx("reading mailbox")?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {id}")))
}

/// The (id, name) of the mailboxes strictly below `name`: in binary order they are exactly the
/// names in [`name/`, `name0`) (`0` follows `/`), an index range scan.
fn inferiors(
    conn: &Connection,
    account: AccountId,
    name: &str,
) -> Result<Vec<(MailboxId, String)>> {
    let low = format!("{name}{HIERARCHY_DELIMITER}");
    let high = format!("{name}{}", char::from(HIERARCHY_DELIMITER as u8 + 1));
    conn.prepare_cached(
        "SELECT id, name FROM mailboxes WHERE account_id = ?1 AND name >= ?2 AND name < ?3
         ORDER BY name",
    )
    .and_then(|mut s| {
        s.query_map(params![account, low, high], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    })
    .ctx("listing inferior mailboxes")
}

/// Inserts one mailbox with a fresh id and UIDVALIDITY (the caller checked the name is free).
fn insert_mailbox(
    conn: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<&str>,
) -> Result<MailboxId> {
    let id = next_id(conn, IdSpace::Mailbox)?;
    let uidvalidity = next_uidvalidity(conn, now(), 1)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO mailboxes (id, account_id, name, special_use, uidvalidity, uidnext,
                                    highest_modseq, subscribed)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, 1, 0)",
        )
        .and_then(|mut s| s.execute(params![id, account, name, special_use, uidvalidity]));
    match inserted {
        Ok(_) => Ok(id),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict(format!("mailbox {name}"))),
        Err(e) => Err(StoreError::Backend(format!("inserting mailbox: {e}"))),
    }
}

/// Creates the missing superiors of `name` and, if `create` is given, `name` itself with that
/// special-use; checks the account exists and the mailbox limit. Returns the new mailbox's id.
fn create_with_parents(
    conn: &Connection,
    account: AccountId,
    name: &str,
    create: Option<Option<&str>>,
) -> Result<Option<MailboxId>> {
    let (count, exists): (i64, bool) = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM mailboxes WHERE account_id = ?1),
                    EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
        )
        .and_then(|mut s| s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?))))
        .ctx("counting mailboxes")?;
    if !exists {
        return Err(StoreError::NotFound(format!("account id {account}")));
    }
    let mut missing = Vec::new();
    for parent in parent_names(name) {
        if find_mailbox(conn, account, parent)?.is_none() {
            missing.push(parent);
        }
    }
    let adding = missing.len() + usize::from(create.is_some());
    if usize::try_from(count)
        .unwrap_or(usize::MAX)
        .saturating_add(adding)
        > MAX_MAILBOXES
    {
        return Err(StoreError::Limit(format!(
            "more than {MAX_MAILBOXES} mailboxes in one account"
        )));
    }
    for parent in missing {
        insert_mailbox(conn, account, parent, None)?;
    }
    create
        .map(|special_use| insert_mailbox(conn, account, name, special_use))
        .transpose()
}

pub(super) fn create_mailbox_tx(
    conn: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<&str>,
) -> Result<Mailbox> {
    if find_mailbox(conn, account, name)?.is_some() {
        return Err(StoreError::Conflict(format!("mailbox {name}")));
    }
    let id = create_with_parents(conn, account, name, Some(special_use))?
        .ok_or_else(|| StoreError::Backend("internal error: mailbox not created".into()))?;
    read_mailbox(conn, id)
}

pub(super) fn delete_mailbox_tx(conn: &Connection, account: AccountId, name: &str) -> Result<()> {
    if is_inbox(name) {
        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
    }
    let id = find_mailbox(conn, account, name)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
    if !inferiors(conn, account, name)?.is_empty() {
        return Err(StoreError::HasChildren(format!("mailbox {name}")));
    }
    // Cascades to entries (triggers free blobs) and vanished records.
    conn.prepare_cached("DELETE FROM mailboxes WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .ctx("deleting mailbox")?;
    Ok(())
}

pub(super) fn rename_mailbox_tx(
    conn: &Connection,
    account: AccountId,
    from: &str,
    to: &str,
) -> Result<()> {
    let source = find_mailbox(conn, account, from)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
    if find_mailbox(conn, account, to)?.is_some() {
        return Err(StoreError::Conflict(format!("mailbox {to}")));
    }
    if is_inbox(from) {
        // RFC 9051 6.3.6: move every message into a new mailbox, INBOX stays (empty).
        let target = create_with_parents(conn, account, to, Some(None))?
            .ok_or_else(|| StoreError::Backend("internal error: mailbox not created".into()))?;
        let uids: Vec<u32> = conn
            .prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid")
            .and_then(|mut s| s.query_map([source], |r| r.get(0))?.collect())
            .ctx("listing INBOX")?;
        move_tx(conn, source, &uids, target)?;
        return Ok(());
    }
    if is_same_or_below(to, from) {
        return Err(StoreError::Invalid(format!(
            "cannot rename {from} below itself to {to}"
        )));
    }
    let mut renames = vec![(source, from.to_owned(), to.to_owned())];
    for (id, old) in inferiors(conn, account, from)? {
        let new = format!("{to}{}", &old[from.len()..]);
        // Validates the length of the longer name.
        let new = canonical_mailbox_name(&new)?;
        if find_mailbox(conn, account, &new)?.is_some() {
            return Err(StoreError::Conflict(format!("mailbox {new}")));
        }
        renames.push((id, old, new));
    }
    create_with_parents(conn, account, to, None)?;
    let mut update = conn
        .prepare_cached("UPDATE mailboxes SET name = ?2 WHERE id = ?1")
        .ctx("preparing rename")?;
    let mut move_subscription = conn
        .prepare_cached(
            "UPDATE OR REPLACE subscriptions SET name = ?3 WHERE account_id = ?1 AND name = ?2",
        )
        .ctx("preparing subscription rename")?;
    for (id, old, new) in &renames {
        match update.execute(params![id, new]) {
            Ok(_) => {}
            Err(e) if is_constraint(&e) => {
                return Err(StoreError::Conflict(format!("mailbox {new}")));
            }
            Err(e) => return Err(StoreError::Backend(format!("renaming mailbox: {e}"))),
        }
        move_subscription
            .execute(params![account, old, new])
            .ctx("renaming subscription")?;
    }
    Ok(())
}

pub(super) fn subscribe_tx(conn: &Connection, account: AccountId, name: &str) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![account, name]))
        .ctx("subscribing")?;
    Ok(())
}

pub(super) fn set_subscribed_tx(
    conn: &Connection,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> Result<()> {
    if subscribed {
        if find_mailbox(conn, account, name)?.is_none() {
            return Err(StoreError::NotFound(format!("mailbox {name}")));
        }
        subscribe_tx(conn, account, name)
    } else {
        conn.prepare_cached("DELETE FROM subscriptions WHERE account_id = ?1 AND name = ?2")
            .and_then(|mut s| s.execute(params![account, name]))
            .ctx("unsubscribing")?;
        Ok(())
    }
}

/// Takes the `\Recent` UIDs `[recent_uid, uidnext)` of a mailbox (see
/// [`Mailstore::claim_recent`](crate::Mailstore::claim_recent)). The writer holds the write
/// lock, so no other claimer (of any process) runs in between.
pub(super) fn claim_recent_tx(conn: &Connection, mailbox: MailboxId) -> Result<Option<(u32, u32)>> {
    let Some((from, to)): Option<(u32, u32)> = conn
        .prepare_cached("SELECT recent_uid, uidnext FROM mailboxes WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("reading mailbox")?
    else {
        return Ok(None);
    };
    if from < to {
        conn.prepare_cached("UPDATE mailboxes SET recent_uid = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![mailbox, to]))
            .ctx("claiming recent messages")?;
    }
    Ok(Some((from.min(to), to)))
}

/// The counters of a mailbox's row, read by [`mailbox_counters`].
pub(super) struct MailboxCounters {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// The `\Recent` watermark as stored (readers clamp it to `uidnext`).
    pub recent_uid: u32,
    /// Expunges with a MODSEQ up to this one are forgotten.
    pub vanished_floor: i64,
}

/// The counters of a mailbox, None if it does not exist.
pub(super) fn mailbox_counters(
    conn: &Connection,
    mailbox: MailboxId,
) -> Result<Option<MailboxCounters>> {
    conn.prepare_cached(
        "SELECT uidvalidity, uidnext, highest_modseq, recent_uid, vanished_floor
         FROM mailboxes WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([mailbox], |r| {
            Ok(MailboxCounters {
                uidvalidity: r.get(0)?,
                uidnext: r.get(1)?,
                highest_modseq: get_u64(r, 2)?,
                recent_uid: r.get(3)?,
                vanished_floor: r.get(4)?,
            })
        })
        .optional()
    })
    .ctx("reading mailbox")
}

pub(super) fn mailbox_status_read(
    conn: &Connection,
    mailbox: MailboxId,
) -> Result<Option<MailboxStatus>> {
    let tx = conn.unchecked_transaction().ctx("starting a read")?;
    let Some(MailboxCounters {
        uidvalidity,
        uidnext,
        highest_modseq,
        recent_uid,
        ..
    }) = mailbox_counters(&tx, mailbox)?
    else {
        return Ok(None);
    };
    let (messages, unseen, deleted, size, deleted_size, recent): (u32, u32, u32, u64, u64, u32) =
        tx.prepare_cached(
            r"SELECT count(*), coalesce(sum(instr(flags, '\Seen') = 0), 0),
                     coalesce(sum(instr(flags, '\Deleted') > 0), 0), coalesce(sum(size), 0),
                     coalesce(sum(CASE WHEN instr(flags, '\Deleted') > 0 THEN size END), 0),
                     coalesce(sum(uid >= ?2), 0)
              FROM messages WHERE mailbox_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![mailbox, recent_uid], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    get_u64(r, 3)?,
                    get_u64(r, 4)?,
                    r.get(5)?,
                ))
            })
        })
        .ctx("counting messages")?;
    Ok(Some(MailboxStatus {
        uidvalidity,
        uidnext,
        highest_modseq,
        messages,
        unseen,
        deleted,
        size,
        deleted_size,
        recent_uid: recent_uid.min(uidnext),
        recent,
    }))
}
