//! Message entries for [`Mailstore`](crate::Mailstore): UIDs and MODSEQs, blobs, append, flags,
//! copy, move, expunge with its vanished history, and the changes since a MODSEQ.
//!
//! `*_tx` functions run on the writer thread, inside the batch transaction; `*_read` functions
//! on a pooled read connection, their statements sharing one read transaction (one snapshot).

use rusqlite::{Connection, OptionalExtension, params};

use super::ids::{IdSpace, next_id};
use super::mailboxes::{MailboxCounters, mailbox_counters, mailbox_owner};
use super::{Context, get_u64, parse_flags, sql_u64, to_u32};
use crate::rules::FlagSet;
use crate::{
    AppendUid, BlobId, Changes, CopyUids, Expunge, FlagOp, FlagUpdate, FlagsResult, MailboxId,
    MessageData, MessageEntry, Result, StoreError,
};

/// Expunged UIDs remembered per mailbox for QRESYNC; older ones are forgotten (see migration 5).
const VANISHED_KEEP: i64 = 10_000;

/// Columns of a [`MessageEntry`], read by [`entry_row`].
pub(super) const ENTRY_SELECT: &str =
    "SELECT mailbox_id, uid, blob_id, flags, modseq, internal_date, size FROM messages";

pub(super) fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageEntry> {
    Ok(MessageEntry {
        mailbox: r.get(0)?,
        uid: r.get(1)?,
        blob: r.get(2)?,
        flags: parse_flags(r.get_ref(3)?.as_str()?),
        modseq: get_u64(r, 4)?,
        internal_date: r.get(5)?,
        size: get_u64(r, 6)?,
    })
}

/// Sorted, deduplicated copy of client-supplied UIDs (0 is no UID).
pub(super) fn sorted_uids(uids: &[u32]) -> Vec<u32> {
    let mut uids: Vec<u32> = uids.iter().copied().filter(|&u| u != 0).collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// Blobs up to this size are inserted as one bound value; larger ones are written in place.
const SMALL_BLOB: usize = 64 * 1024;

/// Stores the concatenation of `parts` as one blob without building it in memory (a header
/// line in front of a message is not worth a copy of the message, nor is SQLite's row).
pub(super) fn insert_blob_parts(conn: &Connection, parts: &[&[u8]]) -> Result<BlobId> {
    // A bound blob is copied into the row SQLite builds; a zeroblob written in place is not.
    if let [data] = parts
        && data.len() <= SMALL_BLOB
    {
        let id = next_id(conn, IdSpace::Blob)?;
        conn.prepare_cached("INSERT INTO blobs (id, size, data) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![id, data.len() as i64, data]))
            .ctx("inserting blob")?;
        return Ok(id);
    }
    let size: usize = parts.iter().map(|p| p.len()).sum();
    insert_blob_with(conn, size as u64, |write| {
        for part in parts {
            write(part)?;
        }
        Ok(())
    })
}

/// Stores `prefix` and then the message as one blob, a spooled message streamed from its file.
pub(super) fn insert_message_blob(
    conn: &Connection,
    prefix: &[u8],
    data: &MessageData,
) -> Result<BlobId> {
    match data.as_slice() {
        Some(d) if prefix.is_empty() => insert_blob_parts(conn, &[d]),
        Some(d) => insert_blob_parts(conn, &[prefix, d]),
        None => insert_blob_with(conn, prefix.len() as u64 + data.len(), |write| {
            write(prefix)?;
            data.for_each_chunk(|c| write(c).map(|()| true))
        }),
    }
}

/// Inserts a blob of `size` zero octets and lets `fill` write it in order, in place.
fn insert_blob_with(
    conn: &Connection,
    size: u64,
    fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<BlobId> {
    let id = next_id(conn, IdSpace::Blob)?;
    let size =
        i64::try_from(size).map_err(|_| StoreError::Limit(format!("a blob of {size} bytes")))?;
    conn.prepare_cached("INSERT INTO blobs (id, size, data) VALUES (?1, ?2, zeroblob(?2))")
        .and_then(|mut s| s.execute(params![id, size]))
        .ctx("inserting blob")?;
    let mut blob = conn
        .blob_open(rusqlite::MAIN_DB, "blobs", "data", id, false)
        .ctx("opening blob")?;
    let mut at = 0usize;
    fill(&mut |part: &[u8]| {
        if (at + part.len()) as u64 > size as u64 {
            return Err(StoreError::Backend(format!(
                "blob {id}: more than the {size} octets announced"
            )));
        }
        blob.write_at(part, at).ctx("writing blob")?;
        at += part.len();
        Ok(())
    })?;
    if at as u64 != size as u64 {
        return Err(StoreError::Backend(format!(
            "blob {id}: {at} of the {size} octets announced"
        )));
    }
    Ok(id)
}

/// Takes `count` UIDs from a mailbox and one new MODSEQ for them: (first UID, MODSEQ,
/// UIDVALIDITY). NotFound if the mailbox does not exist.
fn allocate_uids(conn: &Connection, mailbox: MailboxId, count: usize) -> Result<(u32, u64, u32)> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let (first, modseq, uidvalidity): (i64, u64, u32) = conn
        .prepare_cached(
            "UPDATE mailboxes SET uidnext = uidnext + ?2, highest_modseq = highest_modseq + 1
             WHERE id = ?1 RETURNING uidnext - ?2, highest_modseq, uidvalidity",
        )
        .and_then(|mut s| {
            s.query_row(params![mailbox, count], |r| {
                Ok((r.get(0)?, get_u64(r, 1)?, r.get(2)?))
            })
            .optional()
        })
        .ctx("assigning UIDs")?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
    // The largest UID is u32::MAX - 1 (deliveries keep UIDNEXT within u32 too).
    if first < 1 || first.saturating_add(count) > i64::from(u32::MAX) {
        return Err(StoreError::Limit(format!(
            "UIDs of mailbox {mailbox} exhausted"
        )));
    }
    Ok((to_u32(first, "UID")?, modseq, uidvalidity))
}

/// One new MODSEQ for a mailbox.
fn bump_modseq(conn: &Connection, mailbox: MailboxId) -> Result<u64> {
    conn.prepare_cached(
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?1
         RETURNING highest_modseq",
    )
    .and_then(|mut s| s.query_row([mailbox], |r| get_u64(r, 0)).optional())
    .ctx("assigning a MODSEQ")?
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

/// A mailbox entry to insert (the UID and mailbox come separately).
struct NewEntry<'a> {
    blob: BlobId,
    flags: &'a str,
    modseq: u64,
    internal_date: i64,
    size: i64,
}

fn insert_entry(conn: &Connection, mailbox: MailboxId, uid: u32, e: &NewEntry<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, blob_id, flags, modseq, internal_date, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            mailbox,
            uid,
            e.blob,
            e.flags,
            sql_u64(e.modseq),
            e.internal_date,
            e.size
        ])
    })
    .ctx("inserting mailbox entry")?;
    Ok(())
}

pub(super) fn append_tx(
    conn: &Connection,
    mailbox: MailboxId,
    data: &MessageData,
    flags: &str,
    internal_date: i64,
) -> Result<AppendUid> {
    let (uid, modseq, uidvalidity) = allocate_uids(conn, mailbox, 1)?;
    let blob = insert_message_blob(conn, b"", data)?;
    let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let entry = NewEntry {
        blob,
        flags,
        modseq,
        internal_date,
        size,
    };
    insert_entry(conn, mailbox, uid, &entry)?;
    Ok(AppendUid { uidvalidity, uid })
}

pub(super) fn set_flags_tx(
    conn: &Connection,
    mailbox: MailboxId,
    uids: &[u32],
    op: FlagOp,
    flags: &FlagSet,
    unchanged_since: Option<u64>,
) -> Result<FlagsResult> {
    mailbox_owner(conn, mailbox)?;
    let mut result = FlagsResult::default();
    // (index into result.updated, new stored flags)
    let mut pending: Vec<(usize, String)> = Vec::new();
    {
        let mut select = conn
            .prepare_cached("SELECT flags, modseq FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
            .ctx("preparing flag read")?;
        for &uid in uids {
            let Some((stored, modseq)) = select
                .query_row(params![mailbox, uid], |r| {
                    Ok((r.get::<_, String>(0)?, get_u64(r, 1)?))
                })
                .optional()
                .ctx("reading flags")?
            else {
                continue;
            };
            if unchanged_since.is_some_and(|since| modseq > since) {
                result.modified.push(uid);
                continue;
            }
            let current = FlagSet::from_stored(&stored);
            let new = match op {
                FlagOp::Add => current.union(flags)?,
                FlagOp::Remove => current.difference(flags),
                FlagOp::Replace if current.same_flags(flags) => current.clone(),
                FlagOp::Replace => flags.clone(),
            };
            let changed = !new.same_flags(&current);
            if changed {
                pending.push((result.updated.len(), new.to_stored()));
            }
            result.updated.push(FlagUpdate {
                uid,
                flags: new.to_vec(),
                modseq,
                changed,
            });
        }
    }
    if pending.is_empty() {
        return Ok(result);
    }
    let modseq = bump_modseq(conn, mailbox)?;
    let mut update = conn
        .prepare_cached(
            "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox_id = ?1 AND uid = ?2",
        )
        .ctx("preparing flag update")?;
    for (index, stored) in pending {
        let entry = &mut result.updated[index];
        update
            .execute(params![mailbox, entry.uid, stored, sql_u64(modseq)])
            .ctx("updating flags")?;
        entry.modseq = modseq;
    }
    Ok(result)
}

pub(super) fn copy_tx(
    conn: &Connection,
    from: MailboxId,
    uids: &[u32],
    to: MailboxId,
) -> Result<CopyUids> {
    let (source_account, _) = mailbox_owner(conn, from)?;
    let (target_account, uidvalidity) = mailbox_owner(conn, to)?;
    if source_account != target_account {
        return Err(StoreError::Invalid(
            "cannot copy between mailboxes of different accounts".into(),
        ));
    }
    let mut rows: Vec<(u32, BlobId, String, i64, i64)> = Vec::new();
    {
        let mut select = conn
            .prepare_cached(
                "SELECT blob_id, flags, internal_date, size FROM messages
                 WHERE mailbox_id = ?1 AND uid = ?2",
            )
            .ctx("preparing copy")?;
        for &uid in uids {
            if let Some((blob, flags, date, size)) = select
                .query_row(params![from, uid], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
                .ctx("reading message to copy")?
            {
                rows.push((uid, blob, flags, date, size));
            }
        }
    }
    let mut copied = CopyUids {
        uidvalidity,
        uids: Vec::with_capacity(rows.len()),
    };
    if rows.is_empty() {
        return Ok(copied);
    }
    let (first, modseq, _) = allocate_uids(conn, to, rows.len())?;
    for ((source_uid, blob, flags, internal_date, size), target_uid) in
        rows.into_iter().zip(first..)
    {
        let entry = NewEntry {
            blob,
            flags: &flags,
            modseq,
            internal_date,
            size,
        };
        insert_entry(conn, to, target_uid, &entry)?;
        copied.uids.push((source_uid, target_uid));
    }
    Ok(copied)
}

pub(super) fn move_tx(
    conn: &Connection,
    from: MailboxId,
    uids: &[u32],
    to: MailboxId,
) -> Result<CopyUids> {
    // Copy first: the new references exist before the old ones go, so no blob is freed.
    let copied = copy_tx(conn, from, uids, to)?;
    let sources: Vec<u32> = copied.uids.iter().map(|&(source, _)| source).collect();
    expunge_tx(conn, from, Expunge::Uids(&sources))?;
    Ok(copied)
}

/// `uids` must be sorted and deduplicated.
pub(super) fn expunge_tx(
    conn: &Connection,
    mailbox: MailboxId,
    which: Expunge<'_>,
) -> Result<Vec<u32>> {
    mailbox_owner(conn, mailbox)?;
    let mut expunged: Vec<u32> = Vec::new();
    match which {
        Expunge::Deleted => {
            expunged = conn
                .prepare_cached(
                    r"DELETE FROM messages WHERE mailbox_id = ?1 AND instr(flags, '\Deleted') > 0
                      RETURNING uid",
                )
                .and_then(|mut s| s.query_map([mailbox], |r| r.get(0))?.collect())
                .ctx("expunging")?;
            expunged.sort_unstable();
        }
        Expunge::DeletedAmong(uids) => {
            let mut delete = conn
                .prepare_cached(
                    r"DELETE FROM messages
                      WHERE mailbox_id = ?1 AND uid = ?2 AND instr(flags, '\Deleted') > 0",
                )
                .ctx("preparing expunge")?;
            for &uid in uids {
                if delete.execute(params![mailbox, uid]).ctx("expunging")? > 0 {
                    expunged.push(uid);
                }
            }
        }
        Expunge::Uids(uids) => {
            let mut delete = conn
                .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                .ctx("preparing expunge")?;
            for &uid in uids {
                if delete.execute(params![mailbox, uid]).ctx("expunging")? > 0 {
                    expunged.push(uid);
                }
            }
        }
    }
    if expunged.is_empty() {
        return Ok(expunged);
    }
    let modseq = bump_modseq(conn, mailbox)?;
    let mut remember = conn
        .prepare_cached("INSERT INTO vanished (mailbox_id, modseq, uid) VALUES (?1, ?2, ?3)")
        .ctx("preparing vanished insert")?;
    for &uid in &expunged {
        remember
            .execute(params![mailbox, sql_u64(modseq), uid])
            .ctx("remembering an expunged UID")?;
    }
    prune_vanished(conn, mailbox, VANISHED_KEEP)?;
    Ok(expunged)
}

/// Keeps the newest `keep` expunged UIDs of a mailbox (by MODSEQ); the MODSEQ of the newest
/// forgotten one becomes the mailbox's `vanished_floor`. Whole MODSEQs go at once, so the floor
/// separates complete from forgotten history.
fn prune_vanished(conn: &Connection, mailbox: MailboxId, keep: i64) -> Result<()> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM vanished WHERE mailbox_id = ?1")
        .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)))
        .ctx("counting expunged UIDs")?;
    if count <= keep {
        return Ok(());
    }
    // The MODSEQ of the (count - keep)-th oldest entry: everything up to it goes.
    let floor: i64 = conn
        .prepare_cached(
            "SELECT modseq FROM vanished WHERE mailbox_id = ?1 ORDER BY modseq LIMIT 1 OFFSET ?2",
        )
        .and_then(|mut s| s.query_row(params![mailbox, count - keep - 1], |r| r.get(0)))
        .ctx("finding the vanished floor")?;
    conn.prepare_cached("DELETE FROM vanished WHERE mailbox_id = ?1 AND modseq <= ?2")
        .and_then(|mut s| s.execute(params![mailbox, floor]))
        .ctx("forgetting old expunges")?;
    conn.prepare_cached(
        "UPDATE mailboxes SET vanished_floor = max(vanished_floor, ?2) WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![mailbox, floor]))
    .ctx("raising the vanished floor")?;
    Ok(())
}

pub(super) fn changes_since_read(
    conn: &Connection,
    mailbox: MailboxId,
    since: u64,
) -> Result<Option<Changes>> {
    // MODSEQs are stored as SQLite integers; larger values than i64::MAX cannot exist.
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let tx = conn.unchecked_transaction().ctx("starting a read")?;
    let Some(MailboxCounters {
        uidnext,
        highest_modseq,
        recent_uid,
        vanished_floor: floor,
        ..
    }) = mailbox_counters(&tx, mailbox)?
    else {
        return Ok(None);
    };
    let changed = tx
        .prepare_cached(&format!(
            "{ENTRY_SELECT} WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid"
        ))
        .and_then(|mut s| s.query_map(params![mailbox, since], entry_row)?.collect())
        .ctx("reading changed messages")?;
    let vanished = if since < floor {
        // Part of the history since `since` was forgotten: every UID below UIDNEXT that is not
        // in the mailbox counts as vanished.
        let present: Vec<u32> = tx
            .prepare_cached("SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid")
            .and_then(|mut s| s.query_map([mailbox], |r| r.get(0))?.collect())
            .ctx("reading UIDs")?;
        let mut gone = Vec::new();
        let mut next = 1u32;
        for uid in present.into_iter().chain(std::iter::once(uidnext)) {
            gone.extend(next..uid);
            next = uid.saturating_add(1);
        }
        gone
    } else {
        tx.prepare_cached(
            "SELECT uid FROM vanished WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
        )
        .and_then(|mut s| {
            s.query_map(params![mailbox, since], |r| r.get(0))?
                .collect()
        })
        .ctx("reading expunged UIDs")?
    };
    Ok(Some(Changes {
        highest_modseq,
        uidnext,
        recent_uid: recent_uid.min(uidnext),
        changed,
        vanished,
    }))
}
