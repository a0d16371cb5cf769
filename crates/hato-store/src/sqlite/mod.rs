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
//! * **Schema**: versioned migrations (`schema::MIGRATIONS`, `PRAGMA user_version`) applied at open, in
//!   one immediate transaction so concurrent openers do not race; a newer database than this
//!   binary knows is refused with [`StoreError::SchemaTooNew`].
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
//! * **Mailbox operations** (IMAP/POP3) are one request each on the writer; per-UID work uses
//!   cached prepared point statements on the `(mailbox_id, uid)` primary key, so a
//!   10,000-UID STORE is one transaction of 20,000 cheap statements, not one of dynamic SQL.

mod changes;
mod deliver;
mod directory;
mod ids;
mod queue;
mod schema;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::{Semaphore, broadcast, oneshot};

use crate::rules::{
    FlagSet, HIERARCHY_DELIMITER, MAX_MAILBOXES, canonical_mailbox_name, canonical_special_use,
    is_inbox, is_same_or_below, parent_names,
};
use crate::{
    AccountId, AppendUid, BlobId, Changes, CopyUids, Expunge, FlagOp, FlagUpdate, FlagsResult,
    Mailbox, MailboxChanged, MailboxId, MailboxStatus, Mailstore, MessageEntry, Result, StoreError,
    Usage,
};

use changes::{CHANGE_TRACKING, take_changes, watch_loop};
use ids::{IdSpace, next_id, next_uidvalidity};
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

/// Expunged UIDs remembered per mailbox for QRESYNC; older ones are forgotten (see migration 5).
const VANISHED_KEEP: i64 = 10_000;

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
    while let Ok(first) = rx.recv() {
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
    }
    tracing::debug!("hato-store writer thread stopped");
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

// ---------------------------------------------------------------------------------------------
// Write operations (run on the writer thread, inside the batch transaction).

fn insert_blob(conn: &Connection, data: &[u8]) -> Result<BlobId> {
    let id = next_id(conn, IdSpace::Blob)?;
    conn.prepare_cached("INSERT INTO blobs (id, size, data) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![id, data.len() as i64, data]))
        .ctx("inserting blob")?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Mailbox operations (run on the writer thread, inside the batch transaction).

/// Columns of a [`Mailbox`], read by [`mailbox_row`].
const MAILBOX_SELECT: &str = "SELECT m.id, m.account_id, m.name, m.special_use, m.uidvalidity,
        m.uidnext, m.highest_modseq,
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name)
    FROM mailboxes m";

/// A non-negative integer column as u64 (rusqlite reads u64 only with a feature).
fn get_u64(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = r.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// A MODSEQ for SQL; every MODSEQ came out of the database, so it fits.
fn sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn mailbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
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

/// Columns of a [`MessageEntry`], read by [`entry_row`].
const ENTRY_SELECT: &str =
    "SELECT mailbox_id, uid, blob_id, flags, modseq, internal_date, size FROM messages";

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageEntry> {
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
fn sorted_uids(uids: &[u32]) -> Vec<u32> {
    let mut uids: Vec<u32> = uids.iter().copied().filter(|&u| u != 0).collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// `(account, uidvalidity)` of a mailbox, NotFound if it does not exist.
fn mailbox_owner(conn: &Connection, mailbox: MailboxId) -> Result<(AccountId, u32)> {
    conn.prepare_cached("SELECT account_id, uidvalidity FROM mailboxes WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("reading mailbox")?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

fn find_mailbox(conn: &Connection, account: AccountId, name: &str) -> Result<Option<MailboxId>> {
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

fn create_mailbox_tx(
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

fn delete_mailbox_tx(conn: &Connection, account: AccountId, name: &str) -> Result<()> {
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

fn rename_mailbox_tx(conn: &Connection, account: AccountId, from: &str, to: &str) -> Result<()> {
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

fn subscribe_tx(conn: &Connection, account: AccountId, name: &str) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![account, name]))
        .ctx("subscribing")?;
    Ok(())
}

fn set_subscribed_tx(
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

fn append_tx(
    conn: &Connection,
    mailbox: MailboxId,
    data: &[u8],
    flags: &str,
    internal_date: i64,
) -> Result<AppendUid> {
    let (uid, modseq, uidvalidity) = allocate_uids(conn, mailbox, 1)?;
    let blob = insert_blob(conn, data)?;
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

fn set_flags_tx(
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

fn copy_tx(conn: &Connection, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyUids> {
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

fn move_tx(conn: &Connection, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyUids> {
    // Copy first: the new references exist before the old ones go, so no blob is freed.
    let copied = copy_tx(conn, from, uids, to)?;
    let sources: Vec<u32> = copied.uids.iter().map(|&(source, _)| source).collect();
    expunge_tx(conn, from, Expunge::Uids(&sources))?;
    Ok(copied)
}

/// `uids` must be sorted and deduplicated.
fn expunge_tx(conn: &Connection, mailbox: MailboxId, which: Expunge<'_>) -> Result<Vec<u32>> {
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

/// Takes the `\Recent` UIDs `[recent_uid, uidnext)` of a mailbox (see
/// [`Mailstore::claim_recent`]). The writer holds the write lock, so no other claimer (of any
/// process) runs in between.
fn claim_recent_tx(conn: &Connection, mailbox: MailboxId) -> Result<Option<(u32, u32)>> {
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

// ---------------------------------------------------------------------------------------------
// Mailbox reads (run on pooled read connections; several statements share one read
// transaction, i.e. one snapshot).

fn mailbox_status_read(conn: &Connection, mailbox: MailboxId) -> Result<Option<MailboxStatus>> {
    let tx = conn.unchecked_transaction().ctx("starting a read")?;
    let Some((uidvalidity, uidnext, highest_modseq, recent_uid)) = tx
        .prepare_cached(
            "SELECT uidvalidity, uidnext, highest_modseq, recent_uid FROM mailboxes WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([mailbox], |r| {
                Ok((r.get(0)?, r.get(1)?, get_u64(r, 2)?, r.get::<_, u32>(3)?))
            })
            .optional()
        })
        .ctx("reading mailbox")?
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

fn changes_since_read(
    conn: &Connection,
    mailbox: MailboxId,
    since: u64,
) -> Result<Option<Changes>> {
    // MODSEQs are stored as SQLite integers; larger values than i64::MAX cannot exist.
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let tx = conn.unchecked_transaction().ctx("starting a read")?;
    let Some((uidnext, highest_modseq, recent_uid, floor)) = tx
        .prepare_cached(
            "SELECT uidnext, highest_modseq, recent_uid, vanished_floor FROM mailboxes WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([mailbox], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    get_u64(r, 1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()
        })
        .ctx("reading mailbox")?
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

// ---------------------------------------------------------------------------------------------
// Read helpers (run on pooled read connections).

fn parse_flags(flags: &str) -> Vec<String> {
    flags.split_whitespace().map(str::to_owned).collect()
}

#[async_trait]
impl Mailstore for SqliteStore {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "{MAILBOX_SELECT} WHERE m.account_id = ?1 ORDER BY m.id"
            ))
            .and_then(|mut s| s.query_map([account], mailbox_row)?.collect())
            .ctx("listing mailboxes")
        })
        .await
    }

    async fn messages(&self, mailbox: MailboxId) -> Result<Vec<MessageEntry>> {
        self.read(move |conn| {
            let rows: Vec<(MessageEntry, String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT mailbox_id, uid, blob_id, flags, modseq, internal_date, size
                     FROM messages WHERE mailbox_id = ?1 ORDER BY uid",
                )
                .and_then(|mut s| {
                    s.query_map([mailbox], |r| {
                        Ok((
                            MessageEntry {
                                mailbox: r.get(0)?,
                                uid: r.get(1)?,
                                blob: r.get(2)?,
                                flags: Vec::new(),
                                modseq: 0,
                                internal_date: r.get(5)?,
                                size: 0,
                            },
                            r.get(3)?,
                            r.get(4)?,
                            r.get(6)?,
                        ))
                    })?
                    .collect()
                })
                .ctx("listing messages")?;
            rows.into_iter()
                .map(|(mut entry, flags, modseq, size)| {
                    entry.flags = parse_flags(&flags);
                    entry.modseq = to_u64(modseq, "modseq")?;
                    entry.size = to_u64(size, "message size")?;
                    Ok(entry)
                })
                .collect()
        })
        .await
    }

    async fn blob(&self, blob: BlobId) -> Result<Option<Vec<u8>>> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT data FROM blobs WHERE id = ?1")
                .and_then(|mut s| s.query_row([blob], |r| r.get(0)).optional())
                .ctx("reading blob")
        })
        .await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Mailbox> {
        let name = canonical_mailbox_name(name)?;
        let special_use = special_use.map(canonical_special_use).transpose()?;
        self.write(move |conn| create_mailbox_tx(conn, account, &name, special_use))
            .await
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = canonical_mailbox_name(name)?;
        self.write(move |conn| delete_mailbox_tx(conn, account, &name))
            .await
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let from = canonical_mailbox_name(from)?;
        let to = canonical_mailbox_name(to)?;
        self.write(move |conn| rename_mailbox_tx(conn, account, &from, &to))
            .await
    }

    async fn mailbox_by_name(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let Ok(name) = canonical_mailbox_name(name) else {
            return Ok(None);
        };
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "{MAILBOX_SELECT} WHERE m.account_id = ?1 AND m.name = ?2"
            ))
            .and_then(|mut s| s.query_row(params![account, name], mailbox_row).optional())
            .ctx("reading mailbox")
        })
        .await
    }

    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()> {
        let name = canonical_mailbox_name(name)?;
        self.write(move |conn| set_subscribed_tx(conn, account, &name, subscribed))
            .await
    }

    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT name FROM subscriptions WHERE account_id = ?1 ORDER BY name",
            )
            .and_then(|mut s| s.query_map([account], |r| r.get(0))?.collect())
            .ctx("listing subscriptions")
        })
        .await
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        data: Vec<u8>,
        flags: &[String],
        internal_date: i64,
    ) -> Result<AppendUid> {
        let flags = FlagSet::parse(flags)?.to_stored();
        self.write(move |conn| append_tx(conn, mailbox, &data, &flags, internal_date))
            .await
    }

    async fn message(&self, mailbox: MailboxId, uid: u32) -> Result<Option<MessageEntry>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "{ENTRY_SELECT} WHERE mailbox_id = ?1 AND uid = ?2"
            ))
            .and_then(|mut s| s.query_row(params![mailbox, uid], entry_row).optional())
            .ctx("reading message")
        })
        .await
    }

    async fn message_data(&self, mailbox: MailboxId, uid: u32) -> Result<Option<Vec<u8>>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id
                 WHERE m.mailbox_id = ?1 AND m.uid = ?2",
            )
            .and_then(|mut s| s.query_row(params![mailbox, uid], |r| r.get(0)).optional())
            .ctx("reading message data")
        })
        .await
    }

    async fn messages_data(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
        let uids = uids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id
                     WHERE m.mailbox_id = ?1 AND m.uid = ?2",
                )
                .ctx("reading message data")?;
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                if let Some(data) = stmt
                    .query_row(params![mailbox, uid], |r| r.get(0))
                    .optional()
                    .ctx("reading message data")?
                {
                    out.push((uid, data));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult> {
        let flags = FlagSet::parse(flags)?;
        let uids = sorted_uids(uids);
        self.write(move |conn| set_flags_tx(conn, mailbox, &uids, op, &flags, unchanged_since))
            .await
    }

    async fn copy(&self, from: MailboxId, uids: &[u32], to: MailboxId) -> Result<CopyUids> {
        let uids = sorted_uids(uids);
        self.write(move |conn| copy_tx(conn, from, &uids, to)).await
    }

    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
    ) -> Result<CopyUids> {
        let uids = sorted_uids(uids);
        self.write(move |conn| move_tx(conn, from, &uids, to)).await
    }

    async fn expunge(&self, mailbox: MailboxId, which: Expunge<'_>) -> Result<Vec<u32>> {
        enum Owned {
            Deleted,
            DeletedAmong(Vec<u32>),
            Uids(Vec<u32>),
        }
        let owned = match which {
            Expunge::Deleted => Owned::Deleted,
            Expunge::DeletedAmong(uids) => Owned::DeletedAmong(sorted_uids(uids)),
            Expunge::Uids(uids) => Owned::Uids(sorted_uids(uids)),
        };
        self.write(move |conn| {
            let which = match &owned {
                Owned::Deleted => Expunge::Deleted,
                Owned::DeletedAmong(uids) => Expunge::DeletedAmong(uids),
                Owned::Uids(uids) => Expunge::Uids(uids),
            };
            expunge_tx(conn, mailbox, which)
        })
        .await
    }

    async fn mailbox_status(&self, mailbox: MailboxId) -> Result<Option<MailboxStatus>> {
        self.read(move |conn| mailbox_status_read(conn, mailbox))
            .await
    }

    async fn changes_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Option<Changes>> {
        self.read(move |conn| changes_since_read(conn, mailbox, modseq))
            .await
    }

    async fn claim_recent(&self, mailbox: MailboxId) -> Result<Option<(u32, u32)>> {
        self.write(move |conn| claim_recent_tx(conn, mailbox)).await
    }

    async fn account_usage(&self, account: AccountId) -> Result<Usage> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT count(*), coalesce(sum(m.size), 0)
                 FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id
                 WHERE b.account_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([account], |r| {
                    Ok(Usage {
                        messages: get_u64(r, 0)?,
                        bytes: get_u64(r, 1)?,
                    })
                })
            })
            .ctx("reading account usage")
        })
        .await
    }

    fn subscribe_changes(&self) -> broadcast::Receiver<MailboxChanged> {
        let inner = &self.inner;
        inner.watcher.call_once(|| {
            let weak = Arc::downgrade(inner);
            let spawned = std::thread::Builder::new()
                .name("hato-store-watch".into())
                .spawn(move || watch_loop(weak));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the store watcher: writes of other processes go unannounced");
            }
        });
        inner.changes.subscribe()
    }
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
