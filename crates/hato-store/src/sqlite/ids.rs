//! Ids that are never handed out twice: account, mailbox, blob and queue ids from counters in
//! `meta`, and UIDVALIDITY values (see the module docs of [`super`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, to_u32};
use crate::{Result, StoreError};

/// The id spaces handed out by [`next_id`].
#[derive(Clone, Copy)]
pub(super) enum IdSpace {
    Account,
    Mailbox,
    Blob,
    Queue,
}

impl IdSpace {
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            IdSpace::Account => (
                "SELECT value FROM meta WHERE key = 'last_account_id'",
                "SELECT coalesce(max(id), 0) FROM accounts",
            ),
            IdSpace::Mailbox => (
                "SELECT value FROM meta WHERE key = 'last_mailbox_id'",
                "SELECT coalesce(max(id), 0) FROM mailboxes",
            ),
            IdSpace::Blob => (
                "SELECT value FROM meta WHERE key = 'last_blob_id'",
                "SELECT coalesce(max(id), 0) FROM blobs",
            ),
            IdSpace::Queue => (
                "SELECT value FROM meta WHERE key = 'last_queue_id'",
                "SELECT coalesce(max(id), 0) FROM queue",
            ),
        }
    }

    fn key(self) -> &'static str {
        match self {
            IdSpace::Account => "last_account_id",
            IdSpace::Mailbox => "last_mailbox_id",
            IdSpace::Blob => "last_blob_id",
            IdSpace::Queue => "last_queue_id",
        }
    }
}

/// A fresh id that was never used in its table, even by a since deleted row.
pub(super) fn next_id(conn: &Connection, space: IdSpace) -> Result<i64> {
    let (last_sql, max_sql) = space.sql();
    let last: i64 = conn
        .prepare_cached(last_sql)
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .ctx("reading the last id")?
        .unwrap_or(0);
    // max(id) of an INTEGER PRIMARY KEY is one b-tree descent.
    let max: i64 = conn
        .prepare_cached(max_sql)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("reading the largest id")?;
    let id = last
        .max(max)
        .checked_add(1)
        .ok_or_else(|| StoreError::Backend("ids exhausted".into()))?;
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute(params![space.key(), id]))
    .ctx("storing the last id")?;
    Ok(id)
}

/// Hands out `count` consecutive UIDVALIDITY values, at least `now` and above every value handed
/// out before, so a re-created mailbox never reuses one.
pub(super) fn next_uidvalidity(conn: &Connection, now: i64, count: u32) -> Result<u32> {
    let last: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'last_uidvalidity'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .ctx("reading the last UIDVALIDITY")?
        .unwrap_or(0);
    let first = now.clamp(1, i64::from(u32::MAX)).max(last + 1);
    let end = first + i64::from(count) - 1;
    if end > i64::from(u32::MAX) {
        return Err(StoreError::Backend("UIDVALIDITY values exhausted".into()));
    }
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute([end]))
    .ctx("storing the last UIDVALIDITY")?;
    to_u32(first, "UIDVALIDITY")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::MIGRATIONS;

    #[test]
    fn uidvalidity_is_monotonic() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        let a = next_uidvalidity(&conn, 1000, 6).unwrap();
        assert_eq!(a, 1000);
        // Same second: continues after the previous range.
        let b = next_uidvalidity(&conn, 1000, 6).unwrap();
        assert_eq!(b, 1006);
        // Clock went backwards: still increasing.
        let c = next_uidvalidity(&conn, 5, 1).unwrap();
        assert_eq!(c, 1012);
    }
}
