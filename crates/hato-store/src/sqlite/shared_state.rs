//! [`SharedState`] on SQLite: counters, leases, the cache and TLS report counts (schema
//! version 6). Every read-modify-write is one statement or one request on the writer, so it is
//! atomic against the other requests of this process and, through `BEGIN IMMEDIATE`, against
//! other processes on the same file.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, SqliteStore, get_u64, sql_u64};
use crate::shared_state::{MAX_CACHE_VALUE, MAX_REPORT_FIELD, MAX_STATE_KEY};
use crate::{Result, SharedState, StoreError, TlsReportCount};

/// Expired rows a counter bump or lease acquisition removes on the way: more than the one row
/// it may add, so clients cannot grow these tables with fresh keys (an IP address per failed
/// login), and few enough to cost nothing noticeable.
const PRUNE_ON_WRITE: i64 = 16;

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_STATE_KEY {
        return Err(StoreError::Invalid(format!(
            "a state key must have 1 to {MAX_STATE_KEY} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

fn check_duration(secs: i64, what: &str) -> Result<()> {
    if secs <= 0 {
        return Err(StoreError::Invalid(format!(
            "{what} must be positive, not {secs}"
        )));
    }
    Ok(())
}

fn check_count(c: &TlsReportCount) -> Result<()> {
    check_key(&c.domain)?;
    if c.policy.len() > MAX_REPORT_FIELD || c.result.len() > MAX_REPORT_FIELD {
        return Err(StoreError::Invalid(format!(
            "a TLS report policy or result has more than {MAX_REPORT_FIELD} bytes"
        )));
    }
    Ok(())
}

/// A stored count as the API's `u32` (`u32::MAX` if out of range).
fn count_u32(count: i64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Deletes up to [`PRUNE_ON_WRITE`] expired rows of `table` (whose key column is `key`).
fn prune_some(conn: &Connection, table: &str, key: &str, now: i64) -> Result<()> {
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN
         (SELECT {key} FROM {table} WHERE expires <= ?1 LIMIT ?2)"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.execute(params![now, PRUNE_ON_WRITE]))
        .ctx("pruning expired state")?;
    Ok(())
}

#[async_trait]
impl SharedState for SqliteStore {
    async fn counter_bump(&self, key: &str, window_secs: i64, now: i64) -> Result<u32> {
        check_key(key)?;
        check_duration(window_secs, "a counter window")?;
        let key = key.to_owned();
        let expires = now.saturating_add(window_secs);
        self.write(move |conn| {
            prune_some(conn, "counters", "key", now)?;
            let count: i64 = conn
                .prepare_cached(
                    "INSERT INTO counters (key, count, expires) VALUES (?1, 1, ?3)
                     ON CONFLICT (key) DO UPDATE SET
                         count = CASE WHEN counters.expires <= ?2 THEN 1
                                      ELSE counters.count + 1 END,
                         expires = CASE WHEN counters.expires <= ?2 THEN excluded.expires
                                        ELSE counters.expires END
                     RETURNING count",
                )
                .and_then(|mut s| s.query_row(params![key, now, expires], |r| r.get(0)))
                .ctx("counting")?;
            Ok(count_u32(count))
        })
        .await
    }

    async fn counter(&self, key: &str, now: i64) -> Result<u32> {
        check_key(key)?;
        let count: Option<i64> = self
            .read_row(
                "SELECT count FROM counters WHERE key = ?1 AND expires > ?2",
                (key.to_owned(), now),
                |r| r.get(0),
                "reading a counter",
            )
            .await?;
        Ok(count.map_or(0, count_u32))
    }

    async fn counter_release(&self, key: &str, now: i64) -> Result<u32> {
        check_key(key)?;
        let key = key.to_owned();
        self.write(move |conn| {
            let count: Option<i64> = conn
                .prepare_cached(
                    "UPDATE counters SET count = MAX(count - 1, 0)
                     WHERE key = ?1 AND expires > ?2 RETURNING count",
                )
                .and_then(|mut s| s.query_row(params![key, now], |r| r.get(0)).optional())
                .ctx("taking a count back")?;
            Ok(count.map_or(0, count_u32))
        })
        .await
    }

    async fn counter_reset(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        self.write_changed(
            "DELETE FROM counters WHERE key = ?1",
            [key.to_owned()],
            "resetting a counter",
        )
        .await
    }

    async fn lease_acquire(
        &self,
        name: &str,
        owner: &str,
        ttl_secs: i64,
        now: i64,
    ) -> Result<bool> {
        check_key(name)?;
        check_key(owner)?;
        check_duration(ttl_secs, "a lease time")?;
        let (name, owner) = (name.to_owned(), owner.to_owned());
        let expires = now.saturating_add(ttl_secs);
        self.write(move |conn| {
            prune_some(conn, "leases", "name", now)?;
            // The upsert's WHERE leaves another owner's live lease alone (no change, 0 rows).
            let changed = conn
                .prepare_cached(
                    "INSERT INTO leases (name, owner, expires) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                                                      expires = excluded.expires
                     WHERE leases.expires <= ?4 OR leases.owner = excluded.owner",
                )
                .and_then(|mut s| s.execute(params![name, owner, expires, now]))
                .ctx("taking a lease")?;
            Ok(changed > 0)
        })
        .await
    }

    async fn lease_renew(&self, name: &str, owner: &str, ttl_secs: i64, now: i64) -> Result<bool> {
        check_key(name)?;
        check_key(owner)?;
        check_duration(ttl_secs, "a lease time")?;
        self.write_changed(
            "UPDATE leases SET expires = ?3 WHERE name = ?1 AND owner = ?2",
            (
                name.to_owned(),
                owner.to_owned(),
                now.saturating_add(ttl_secs),
            ),
            "renewing a lease",
        )
        .await
    }

    async fn lease_release(&self, name: &str, owner: &str) -> Result<bool> {
        check_key(name)?;
        check_key(owner)?;
        self.write_changed(
            "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
            (name.to_owned(), owner.to_owned()),
            "releasing a lease",
        )
        .await
    }

    async fn cache_put(&self, key: &str, value: &[u8], expires: i64) -> Result<()> {
        check_key(key)?;
        if value.len() > MAX_CACHE_VALUE {
            return Err(StoreError::Invalid(format!(
                "a cache value has more than {MAX_CACHE_VALUE} bytes"
            )));
        }
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO cache (key, value, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                 expires = excluded.expires",
            )
            .and_then(|mut s| s.execute(params![key, value, expires]))
            .ctx("writing a cache entry")?;
            Ok(())
        })
        .await
    }

    async fn cache_get(&self, key: &str, now: i64) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        self.read_row(
            "SELECT value FROM cache WHERE key = ?1 AND expires > ?2",
            (key.to_owned(), now),
            |r| r.get(0),
            "reading a cache entry",
        )
        .await
    }

    async fn cache_delete(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        self.write_changed(
            "DELETE FROM cache WHERE key = ?1",
            [key.to_owned()],
            "deleting a cache entry",
        )
        .await
    }

    async fn tls_report_add(&self, counts: Vec<TlsReportCount>) -> Result<()> {
        for c in &counts {
            check_count(c)?;
        }
        if counts.is_empty() {
            return Ok(());
        }
        self.write(move |conn| {
            let mut add = conn
                .prepare_cached(
                    "INSERT INTO tls_report_counts (day, domain, policy, result, successful,
                                                    failed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (day, domain, policy, result) DO UPDATE SET
                         successful = successful + excluded.successful,
                         failed = failed + excluded.failed",
                )
                .ctx("preparing TLS report counts")?;
            for c in &counts {
                add.execute(params![
                    c.day,
                    c.domain,
                    c.policy,
                    c.result,
                    sql_u64(c.successful),
                    sql_u64(c.failed)
                ])
                .ctx("adding TLS report counts")?;
            }
            Ok(())
        })
        .await
    }

    async fn tls_report_due(&self, from_day: i64, before_day: i64) -> Result<Vec<(i64, String)>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT DISTINCT c.day, c.domain FROM tls_report_counts c
                 WHERE c.day >= ?1 AND c.day < ?2
                   AND NOT EXISTS (SELECT 1 FROM tls_report_sent s
                                   WHERE s.day = c.day AND s.domain = c.domain)
                 ORDER BY c.day, c.domain",
            )
            .and_then(|mut s| {
                s.query_map(params![from_day, before_day], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .ctx("listing due TLS reports")
        })
        .await
    }

    async fn tls_report_counts(&self, day: i64, domain: &str) -> Result<Vec<TlsReportCount>> {
        let domain = domain.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT day, domain, policy, result, successful, failed FROM tls_report_counts
                 WHERE day = ?1 AND domain = ?2 ORDER BY policy, result",
            )
            .and_then(|mut s| {
                s.query_map(params![day, domain], |r| {
                    Ok(TlsReportCount {
                        day: r.get(0)?,
                        domain: r.get(1)?,
                        policy: r.get(2)?,
                        result: r.get(3)?,
                        successful: get_u64(r, 4)?,
                        failed: get_u64(r, 5)?,
                    })
                })?
                .collect()
            })
            .ctx("reading TLS report counts")
        })
        .await
    }

    async fn tls_report_mark_sent(&self, day: i64, domain: &str, now: i64) -> Result<bool> {
        check_key(domain)?;
        self.write_changed(
            "INSERT INTO tls_report_sent (day, domain, sent_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            (day, domain.to_owned(), now),
            "marking a TLS report sent",
        )
        .await
    }

    async fn tls_report_unmark_sent(&self, day: i64, domain: &str) -> Result<bool> {
        self.write_changed(
            "DELETE FROM tls_report_sent WHERE day = ?1 AND domain = ?2",
            (day, domain.to_owned()),
            "unmarking a TLS report",
        )
        .await
    }

    async fn tls_report_prune(&self, before_day: i64) -> Result<u64> {
        self.delete_all(
            &[
                "DELETE FROM tls_report_counts WHERE day < ?1",
                "DELETE FROM tls_report_sent WHERE day < ?1",
            ],
            before_day,
            "pruning TLS report counts",
        )
        .await
    }

    async fn prune_expired(&self, now: i64) -> Result<u64> {
        self.delete_all(
            &[
                "DELETE FROM counters WHERE expires <= ?1",
                "DELETE FROM leases WHERE expires <= ?1",
                "DELETE FROM cache WHERE expires <= ?1",
            ],
            now,
            "pruning expired state",
        )
        .await
    }
}

impl SqliteStore {
    /// Runs each `DELETE` with its one parameter, in one request on the writer; the rows
    /// removed in all.
    async fn delete_all(
        &self,
        statements: &'static [&'static str],
        param: i64,
        what: &'static str,
    ) -> Result<u64> {
        self.write(move |conn| {
            let mut removed = 0;
            for sql in statements {
                removed += conn
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute([param]))
                    .ctx(what)?;
            }
            Ok(removed as u64)
        })
        .await
    }
}
