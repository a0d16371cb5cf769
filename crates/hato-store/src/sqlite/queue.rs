//! [`Queue`] on SQLite: the outbound queue.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, SqliteStore, get_u64, sql_u64};
use crate::{DsnParams, DueDomain, Queue, QueueAttempt, QueueEntry, QueueSelect, Result};

#[async_trait]
impl Queue for SqliteStore {
    async fn queue(&self) -> Result<Vec<QueueEntry>> {
        self.read(|conn| {
            let sql = format!("{QUEUE_SELECT} ORDER BY created, id");
            conn.prepare_cached(&sql)
                .and_then(|mut s| s.query_map([], queue_row)?.collect::<Result<Vec<_>, _>>())
                .ctx("listing the queue")
        })
        .await
    }

    async fn due_queue(&self, now: i64, limit: usize, lease_secs: i64) -> Result<Vec<DueDomain>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let until = now.saturating_add(lease_secs.max(1));
        self.write(move |conn| due_queue_tx(conn, now, limit, until))
            .await
    }

    async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>> {
        self.read(move |conn| {
            let sql = format!("{QUEUE_SELECT} WHERE id = ?1");
            conn.prepare_cached(&sql)
                .and_then(|mut s| s.query_row([id], queue_row).optional())
                .ctx("reading a queue entry")
        })
        .await
    }

    async fn record_attempt(&self, id: i64, claim: u64, attempt: QueueAttempt) -> Result<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE queue SET attempts = attempts + 1, last_error = ?3, last_attempt = ?4,
                         last_tls = ?5, leased_until = 0,
                         next_attempt = CASE WHEN bounce <> 0 THEN ?4 ELSE ?6 END
                     WHERE id = ?1 AND claim = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        sql_u64(claim),
                        attempt.error,
                        attempt.at,
                        attempt.tls,
                        attempt.next_attempt
                    ])
                })
                .ctx("recording a delivery attempt")?;
            Ok(changed > 0)
        })
        .await
    }

    async fn queue_delivered(&self, id: i64, claim: u64) -> Result<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM queue WHERE id = ?1 AND claim = ?2")
                .and_then(|mut s| s.execute(params![id, sql_u64(claim)]))
                .ctx("removing a delivered queue entry")?;
            Ok(changed > 0)
        })
        .await
    }

    async fn queue_delete(&self, id: i64) -> Result<bool> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("DELETE FROM queue WHERE id = ?1")
                .and_then(|mut s| s.execute([id]))
                .ctx("deleting a queue entry")?;
            Ok(changed > 0)
        })
        .await
    }

    async fn queue_bounce(&self, id: i64, reason: &str, now: i64) -> Result<bool> {
        let reason = reason.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE queue SET bounce = 1, last_error = ?2,
                         next_attempt = min(next_attempt, ?3)
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, reason, now]))
                .ctx("requesting a bounce")?;
            Ok(changed > 0)
        })
        .await
    }

    async fn retry_now(&self, which: QueueSelect, now: i64) -> Result<u64> {
        self.write(move |conn| {
            let changed = match which {
                QueueSelect::Id(id) => conn
                    .prepare_cached(
                        "UPDATE queue SET next_attempt = ?2 WHERE id = ?1 AND next_attempt > ?2",
                    )
                    .and_then(|mut s| s.execute(params![id, now])),
                QueueSelect::All => conn
                    .prepare_cached("UPDATE queue SET next_attempt = ?1 WHERE next_attempt > ?1")
                    .and_then(|mut s| s.execute([now])),
            }
            .ctx("making queue entries due")?;
            Ok(changed as u64)
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        self.write(|conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE queue SET leased_until = 0, claim = claim + 1 WHERE leased_until > 0",
                )
                .and_then(|mut s| s.execute([]))
                .ctx("releasing queue leases")?;
            Ok(changed as u64)
        })
        .await
    }
}

/// Columns of a [`QueueEntry`], read by [`queue_row`].
macro_rules! queue_columns {
    () => {
        "id, blob_id, sender, recipient, created, next_attempt, attempts, last_error, last_attempt,
         last_tls, dsn_notify, dsn_orcpt, dsn_ret, dsn_envid, requiretls, leased_until, claim,
         bounce"
    };
}

const QUEUE_SELECT: &str = concat!("SELECT ", queue_columns!(), " FROM queue");

fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueEntry> {
    let attempts: i64 = r.get(6)?;
    Ok(QueueEntry {
        id: r.get(0)?,
        blob: r.get(1)?,
        sender: r.get(2)?,
        recipient: r.get(3)?,
        created: r.get(4)?,
        next_attempt: r.get(5)?,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        last_error: r.get(7)?,
        last_attempt: r.get(8)?,
        last_tls: r.get(9)?,
        dsn: DsnParams {
            notify: r.get(10)?,
            orcpt: r.get(11)?,
            ret: r.get(12)?,
            envid: r.get(13)?,
        },
        requiretls: r.get::<_, i64>(14)? != 0,
        leased_until: r.get(15)?,
        claim: get_u64(r, 16)?,
        bounce_requested: r.get::<_, i64>(17)? != 0,
    })
}

/// Claims due entries (see [`Queue::due_queue`]); runs on the writer, so the select and the
/// lease are one atomic step, also against other processes (`BEGIN IMMEDIATE`).
fn due_queue_tx(conn: &Connection, now: i64, limit: i64, until: i64) -> Result<Vec<DueDomain>> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM queue WHERE next_attempt <= ?1 AND leased_until <= ?1
             ORDER BY next_attempt, id LIMIT ?2",
        )
        .and_then(|mut s| s.query_map(params![now, limit], |r| r.get(0))?.collect())
        .ctx("finding due queue entries")?;
    let mut claim = conn
        .prepare_cached(concat!(
            "UPDATE queue SET leased_until = ?2, claim = claim + 1 WHERE id = ?1 RETURNING ",
            queue_columns!()
        ))
        .ctx("preparing queue claim")?;
    let mut groups: Vec<DueDomain> = Vec::new();
    for id in ids {
        let entry = claim
            .query_row(params![id, until], queue_row)
            .ctx("claiming a queue entry")?;
        let domain = entry.domain();
        match groups.iter_mut().find(|g| g.domain == domain) {
            Some(group) => group.entries.push(entry),
            None => groups.push(DueDomain {
                domain,
                entries: vec![entry],
            }),
        }
    }
    for group in &mut groups {
        group.entries.sort_by_key(|e| (e.blob, e.id));
    }
    Ok(groups)
}
