//! The SQLite backend of [`Store`](crate::Store).
//!
//! Why it is built this way:
//!
//! * **Durability**: WAL journal, `synchronous=FULL`, foreign keys on. A write is acknowledged only
//!   after its `COMMIT` returned, i.e. after the WAL was fsynced.
//! * **Group commit**: one dedicated writer thread owns the only write connection of this process.
//!   Write requests (a closure plus a reply channel) queue up on a channel; the writer takes the
//!   first, drains whatever else is already waiting (at most [`MAX_BATCH`]), runs them all in ONE
//!   `BEGIN IMMEDIATE` transaction with a `SAVEPOINT` per request (a failing request rolls back
//!   only itself), commits once, and only then answers every request. N concurrent deliveries
//!   therefore cost about one fsync instead of N.
//! * **Never block the runtime**: the writer is a plain OS thread; reads run on tokio's blocking
//!   pool with a small pool of read-only WAL connections, bounded by a semaphore. Reads therefore
//!   need a tokio runtime; writes only need some executor for the reply future.
//! * **Several processes**: the CLI (`hato user add`) opens the same file while the server runs.
//!   WAL lets readers proceed during writes, `BEGIN IMMEDIATE` takes the write lock up front (no
//!   lock-upgrade deadlocks) and a busy timeout of [`BUSY_TIMEOUT`] waits for the other writer.
//! * **Schema**: versioned migrations (`schema::MIGRATIONS`, `PRAGMA user_version`) applied at
//!   open, in one immediate transaction so concurrent openers do not race; a newer database than
//!   this binary knows is refused with [`StoreError::SchemaTooNew`].
//! * **Single instance**: message bodies live once in `blobs`; mailbox entries and queue rows
//!   reference them. A blob's references are derived (indexed `blob_id` columns), and triggers
//!   delete a blob as soon as its last entry or queue row goes, whatever deleted it (account
//!   deletion cascades, an IMAP EXPUNGE, a finished queue entry).
//! * **Ids are never reused**: accounts, mailboxes and blobs get explicit ids from counters in
//!   `meta` (never below the table's largest id, so a write by an older binary cannot collide).
//!   SQLite's default would hand the largest id out again after its row was deleted, and a
//!   session still holding that id (a FETCH after another session's EXPUNGE) would then read
//!   someone else's message.
//! * **Change notifications**: temporary triggers on the writer connection record every mailbox
//!   whose `highest_modseq` changed or which was deleted, in a temp table that shares the
//!   batch transaction (a rolled-back request leaves no trace). The writer reads it just before
//!   `COMMIT` and broadcasts [`MailboxChanged`] after it. Other processes' writes are found by a
//!   watcher thread (started with the first subscriber) that compares every mailbox's
//!   HIGHESTMODSEQ once a second with what was announced.
//! * **Outbound queue**: `due_queue` runs on the writer, so selecting due rows and leasing them
//!   (`leased_until`, `claim` token) is one `BEGIN IMMEDIATE` transaction: two schedulers, in
//!   this process or another, never claim the same entry while its lease runs. Queue ids come
//!   from a `meta` counter like the other ids, so the CLI's `hato queue delete ID` can never hit
//!   a newer entry that reused the id.
//! * **Shared state** (schema version 6): counters, leases and cache entries carry an `expires`
//!   column (indexed) and count as absent once it passed; counter bumps and lease acquisitions
//!   run on the writer as one upsert each (`INSERT ... ON CONFLICT DO UPDATE ... WHERE`), so two
//!   nodes never both take a lease. TLS report counts are added with upserts keyed by day,
//!   domain, policy and result; a `tls_report_sent` row per (day, domain) makes sending at most
//!   once a primary-key conflict.
//! * **Mailbox operations** (IMAP/POP3) are one request each on the writer; per-UID work uses
//!   cached prepared point statements on the `(mailbox_id, uid)` primary key, so a
//!   10,000-UID STORE is one transaction of 20,000 cheap statements, not one of dynamic SQL.
//!
//! # Files
//!
//! `mod.rs`: [`SqliteStore`], opening, the read pool and the writer thread (group commit);
//! `schema.rs`: the migrations; `ids.rs`: the id counters; `changes.rs`: change tracking and the
//! watcher thread; one file per role (`directory.rs`, `deliver.rs`, `mailstore.rs`, `queue.rs`,
//! `shared_state.rs`),
//! the mailstore's statements in `mailboxes.rs` and `messages.rs`.

mod changes;
mod deliver;
mod directory;
mod ids;
mod mailboxes;
mod mailstore;
mod messages;
mod queue;
mod schema;
mod shared_state;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::{Semaphore, broadcast, oneshot};

use crate::{AccountId, MailboxChanged, MailboxId, Result, StoreError};

use changes::{CHANGE_TRACKING, take_changes};
pub use schema::SCHEMA_VERSION;
use schema::migrate;

/// At most this many write requests share one transaction (and one fsync).
pub const MAX_BATCH: usize = 256;
/// How long a connection waits for another process holding the write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many read connections (and concurrent reads) per store.
const MAX_READERS: usize = 8;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;
/// [`MailboxChanged`] events a subscriber may fall behind before it sees `Lagged`.
const CHANGE_CHANNEL_CAPACITY: usize = 4096;

/// A [`Store`](crate::Store) in one SQLite file. Cheap to clone (all clones share the writer and
/// read pool); the writer thread stops once the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Box<dyn WriteJob>>>,
    writer_thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
    readers: Mutex<Vec<Connection>>,
    read_slots: Arc<Semaphore>,
    /// Kept to hand out receivers; the writer thread owns a clone and sends.
    changes: broadcast::Sender<MailboxChanged>,
    /// The last HIGHESTMODSEQ announced per mailbox (by the writer or the watcher).
    announced: Arc<Mutex<HashMap<MailboxId, (AccountId, u64)>>>,
    /// Starts the watcher for other processes' writes with the first subscriber.
    watcher: std::sync::Once,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop once the queued requests are done.
        self.writer.take();
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("hato-store writer thread panicked");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("commits", &self.commit_count())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating the file and its parent directory if missing) the store at `path`, applies
    /// pending migrations and starts the writer thread. Blocking: call it before serving, or from
    /// `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Backend(format!("creating directory {}: {e}", parent.display()))
            })?;
        }
        let mut conn = open_connection(path, false)?;
        incremental_vacuum(&conn, path)?;
        // journal_mode is persistent and cannot change inside a transaction: set it first.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .ctx("enabling WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: cannot enable WAL journal (got {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .ctx("setting synchronous=FULL")?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .ctx("setting journal_size_limit")?;
        migrate(&mut conn)?;
        conn.execute_batch(CHANGE_TRACKING)
            .ctx("setting up change tracking")?;

        let commits = Arc::new(AtomicU64::new(0));
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let thread_commits = Arc::clone(&commits);
        let thread_changes = changes.clone();
        // The watcher's baseline is the state at open, so a write of another process after
        // that is announced even if it lands before the first subscriber starts the watcher.
        let baseline: HashMap<MailboxId, (AccountId, u64)> = conn
            .prepare("SELECT id, account_id, highest_modseq FROM mailboxes")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, get_u64(r, 2)?))))?
                    .collect()
            })
            .ctx("reading mailboxes")?;
        let announced = Arc::new(Mutex::new(baseline));
        let thread_announced = Arc::clone(&announced);
        let writer_thread = std::thread::Builder::new()
            .name("hato-store-writer".into())
            .spawn(move || writer_loop(conn, rx, thread_commits, thread_changes, thread_announced))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;

        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Some(tx),
                writer_thread: Some(writer_thread),
                commits,
                readers: Mutex::new(Vec::new()),
                read_slots: Arc::new(Semaphore::new(MAX_READERS)),
                changes,
                announced,
                watcher: std::sync::Once::new(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many write transactions this store has committed (each one fsync); with group commit
    /// this is lower than the number of write requests under concurrency.
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the writer thread inside the current batch transaction (under its own
    /// savepoint) and returns its result once the batch is committed. `f` must not issue
    /// transaction statements itself. If `f` fails, only its own changes are rolled back.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            f: Some(f),
            outcome: None,
            reply,
        });
        self.inner
            .writer
            .as_ref()
            .ok_or_else(|| StoreError::Backend("the store is closing".into()))?
            .send(job)
            .map_err(|_| StoreError::Backend("the store's writer thread has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Backend("the store's writer thread stopped before answering".into())
        })?
    }

    /// Runs `f` with a pooled read connection on tokio's blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let permit = Arc::clone(&inner.read_slots)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the store's read pool is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path, true)?,
            };
            let result = f(&conn);
            inner
                .readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Runs one statement with `params` on the writer; whether it changed a row.
    async fn write_changed<P>(
        &self,
        sql: &'static str,
        params: P,
        what: &'static str,
    ) -> Result<bool>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.write(move |conn| {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute(params))
                .map(|n| n > 0)
                .ctx(what)
        })
        .await
    }

    /// Reads the first row of `sql` with `params` through `row` on the read pool (None if there
    /// is none).
    async fn read_row<T, P, F>(
        &self,
        sql: impl AsRef<str> + Send + 'static,
        params: P,
        row: F,
        what: &'static str,
    ) -> Result<Option<T>>
    where
        T: Send + 'static,
        P: rusqlite::Params + Send + 'static,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.read(move |conn| {
            conn.prepare_cached(sql.as_ref())
                .and_then(|mut s| s.query_row(params, row).optional())
                .ctx(what)
        })
        .await
    }
}

/// Opens one connection with the per-connection settings (busy timeout, foreign keys, cache).
fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    // Read connections still open read-write so they can use the WAL index (-shm) normally;
    // `query_only` makes them refuse writes.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting busy_timeout")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("enabling foreign keys")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")
            .ctx("setting query_only")?;
        conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)
            .ctx("setting mmap_size")?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

// ---------------------------------------------------------------------------------------------
// The writer thread and group commit.

/// One queued write request, type-erased.
trait WriteJob: Send {
    /// Runs the request inside the open transaction; true if it succeeded (keep its changes).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the request. `failure` is set when the batch could not be committed.
    fn finish(self: Box<Self>, failure: Option<&str>);
}

struct Job<T, F> {
    f: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let outcome = f(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, failure: Option<&str>) {
        let answer = match (self.outcome, failure) {
            // A failed request was rolled back anyway: its own error is the informative one.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), None) => Ok(value),
            (Some(Ok(_)) | None, Some(failure)) => Err(StoreError::Backend(failure.to_owned())),
            (None, None) => Err(StoreError::Backend(
                "internal error: the write request panicked".into(),
            )),
        };
        // The requester may have given up (dropped future); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn WriteJob>>,
    commits: Arc<AtomicU64>,
    changes: broadcast::Sender<MailboxChanged>,
    announced: Arc<Mutex<HashMap<MailboxId, (AccountId, u64)>>>,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = match rx.recv_timeout(RECLAIM_EVERY) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                reclaim(&conn, RECLAIM_STEP);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let failure = match run_batch(&conn, &mut batch) {
            Ok(changed) => {
                commits.fetch_add(1, Ordering::Relaxed);
                // Before answering: when a write returns, its event is already queued. No
                // receiver is fine.
                if !changed.is_empty() {
                    let mut known = announced.lock().unwrap_or_else(|e| e.into_inner());
                    for event in &changed {
                        if event.deleted {
                            known.remove(&event.mailbox);
                        } else {
                            let m = known.entry(event.mailbox).or_insert((event.account, 0));
                            m.1 = m.1.max(event.highest_modseq);
                        }
                    }
                }
                for event in changed {
                    let _ = changes.send(event);
                }
                None
            }
            Err(message) => Some(message),
        };
        match &failure {
            None => {}
            Some(message) => {
                tracing::error!(requests = batch.len(), error = %message, "store write batch failed");
                if !conn.is_autocommit()
                    && let Err(e) = conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(error = %e, "rolling back a failed store write batch");
                }
            }
        }
        for job in batch.drain(..) {
            job.finish(failure.as_deref());
        }
        if commits.load(Ordering::Relaxed).is_multiple_of(64) {
            reclaim(&conn, RECLAIM_STEP);
        }
    }
    tracing::debug!("hato-store writer thread stopped");
}

/// How often an idle writer gives freed pages back to the file system, and how many at most
/// at a time (4 KiB pages: 16 MiB), so a large deletion never stalls writes for long.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);
const RECLAIM_STEP: i64 = 4096;
/// Free pages worth a reclaim (1 MiB).
const RECLAIM_MIN: i64 = 256;

/// Space freed by deletions goes back to the file system instead of staying in the file (a
/// deleted 2 GB folder shrinks the file): new stores are created with `auto_vacuum =
/// INCREMENTAL`; an older one is converted once (VACUUM rewrites the file, which takes a while
/// for a large store, and needs its size free on disk).
fn incremental_vacuum(conn: &Connection, path: &Path) -> Result<()> {
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .ctx("reading auto_vacuum")?;
    if mode == 2 {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", 2)
        .ctx("setting auto_vacuum")?;
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .ctx("reading page_count")?;
    if pages > 0 {
        tracing::info!(store = %path.display(), pages, "converting the store to incremental vacuum (once)");
        conn.execute_batch("VACUUM").map_err(|e| {
            StoreError::Backend(format!(
                "{}: converting to incremental vacuum: {e} (it needs as much free disk space as the file)",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// Gives up to `max` free pages back to the file system when there are enough of them.
fn reclaim(conn: &Connection, max: i64) {
    let free: i64 = conn
        .pragma_query_value(None, "freelist_count", |r| r.get(0))
        .unwrap_or(0);
    if free < RECLAIM_MIN {
        return;
    }
    // Each step of the pragma frees one page: step it to its end.
    let freed = conn
        .prepare(&format!("PRAGMA incremental_vacuum({max})"))
        .and_then(|mut st| {
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        });
    if let Err(e) = freed {
        tracing::warn!(error = %e, "giving free store pages back to the file system");
    }
}

/// Runs one batch in one transaction; returns the mailboxes it changed, or Err(message) if it
/// could not be committed.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn WriteJob>],
) -> std::result::Result<Vec<MailboxChanged>, String> {
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| format!("cannot start a write transaction: {e}"))?;
    for job in batch.iter_mut() {
        exec(conn, "SAVEPOINT hato_request").map_err(|e| format!("savepoint: {e}"))?;
        let ok = catch_unwind(AssertUnwindSafe(|| job.run(conn))).unwrap_or_else(|_| {
            tracing::error!("a store write request panicked; rolled back");
            false
        });
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (e.g. disk full or I/O error).
            return Err("the write transaction was aborted by the database".into());
        }
        if !ok {
            exec(conn, "ROLLBACK TO hato_request").map_err(|e| format!("rollback to: {e}"))?;
        }
        exec(conn, "RELEASE hato_request").map_err(|e| format!("release: {e}"))?;
    }
    let changed = take_changes(conn).map_err(|e| format!("reading changed mailboxes: {e}"))?;
    exec(conn, "COMMIT").map_err(|e| format!("commit failed: {e}"))?;
    Ok(changed)
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Maps rusqlite errors to [`StoreError::Backend`] with what was being done.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| StoreError::Backend(format!("{what}: {e}")))
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// Addresses are compared and stored lower-case, without surrounding whitespace.
fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("corrupt {what}: {value}")))
}

fn to_u32(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Backend(format!("corrupt {what}: {value}")))
}

/// A non-negative integer column as u64 (rusqlite reads u64 only with a feature).
fn get_u64(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = r.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// A MODSEQ for SQL; every MODSEQ came out of the database, so it fits.
fn sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn parse_flags(flags: &str) -> Vec<String> {
    flags.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_trims() {
        assert_eq!(normalize("  Alice@Example.COM "), "alice@example.com");
    }

    #[test]
    fn flags_round_trip() {
        assert_eq!(parse_flags(""), Vec::<String>::new());
        assert_eq!(
            parse_flags("\\Seen  \\Flagged"),
            vec!["\\Seen", "\\Flagged"]
        );
    }
}
