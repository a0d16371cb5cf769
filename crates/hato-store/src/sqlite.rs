//! The SQLite backend of [`Store`].
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
//! * **Schema**: versioned migrations (`MIGRATIONS`, `PRAGMA user_version`) applied at open, in
//!   one immediate transaction so concurrent openers do not race; a newer database than this
//!   binary knows is refused with [`StoreError::SchemaTooNew`].
//! * **Single instance**: message bodies live once in `blobs`; mailbox entries and queue rows
//!   reference them. A blob's references are derived (indexed `blob_id` columns), and triggers
//!   delete a blob as soon as its last entry or queue row goes, whatever deleted it (account
//!   deletion cascades, a future IMAP EXPUNGE, a finished queue entry).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Semaphore, oneshot};

use crate::{
    Account, AccountId, Alias, BlobId, DEFAULT_MAILBOXES, Delivery, DeliveryReceipt, Mailbox,
    MailboxId, MessageEntry, QueueEntry, Result, Store, StoreError,
};

/// At most this many write requests share one transaction (and one fsync).
pub const MAX_BATCH: usize = 256;
/// How long a connection waits for another process holding the write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many read connections (and concurrent reads) per store.
const MAX_READERS: usize = 8;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Schema migrations; `MIGRATIONS[i]` brings a database from version `i` to `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    r#"
    -- Small key/value facts of the store itself (e.g. the last UIDVALIDITY handed out).
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE accounts (
        id            INTEGER PRIMARY KEY,
        address       TEXT NOT NULL UNIQUE,          -- lower-case
        password_hash TEXT NOT NULL,                 -- argon2id PHC string
        created       INTEGER NOT NULL               -- unix seconds
    );

    CREATE TABLE aliases (
        address    TEXT PRIMARY KEY,                 -- lower-case
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
    );
    CREATE INDEX aliases_account ON aliases(account_id);

    -- RFC 9051 / RFC 7162 state per mailbox. uidvalidity is unique over the store's lifetime
    -- (see meta 'last_uidvalidity'), so a re-created name never reuses one.
    CREATE TABLE mailboxes (
        id             INTEGER PRIMARY KEY,
        account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name           TEXT NOT NULL,
        special_use    TEXT,
        uidvalidity    INTEGER NOT NULL,
        uidnext        INTEGER NOT NULL DEFAULT 1,
        highest_modseq INTEGER NOT NULL DEFAULT 1,
        subscribed     INTEGER NOT NULL DEFAULT 1,
        UNIQUE (account_id, name)
    );

    -- Message bodies, stored once. References are derived from the indexed blob_id columns of
    -- messages and queue; the triggers below free a blob with its last reference. (Insert the new
    -- reference before deleting the old one when moving a message.)
    CREATE TABLE blobs (
        id   INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    );

    CREATE TABLE messages (
        mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid           INTEGER NOT NULL,
        blob_id       INTEGER NOT NULL REFERENCES blobs(id),
        flags         TEXT NOT NULL DEFAULT '',      -- space separated, e.g. '\Seen \Flagged'
        modseq        INTEGER NOT NULL,
        internal_date INTEGER NOT NULL,              -- unix seconds
        size          INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX messages_blob ON messages(blob_id);

    CREATE TABLE queue (
        id           INTEGER PRIMARY KEY,
        blob_id      INTEGER NOT NULL REFERENCES blobs(id),
        sender       TEXT NOT NULL,                  -- '' for the null reverse-path
        recipient    TEXT NOT NULL,
        created      INTEGER NOT NULL,
        next_attempt INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT
    );
    CREATE INDEX queue_blob ON queue(blob_id);
    CREATE INDEX queue_next_attempt ON queue(next_attempt);

    CREATE TRIGGER messages_free_blob AFTER DELETE ON messages
    WHEN NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = OLD.blob_id)
     AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = OLD.blob_id)
    BEGIN
        DELETE FROM blobs WHERE id = OLD.blob_id;
    END;

    CREATE TRIGGER queue_free_blob AFTER DELETE ON queue
    WHEN NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = OLD.blob_id)
     AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = OLD.blob_id)
    BEGIN
        DELETE FROM blobs WHERE id = OLD.blob_id;
    END;
    "#,
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A [`Store`] in one SQLite file. Cheap to clone (all clones share the writer and read pool);
/// the writer thread stops once the last clone is dropped.
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

        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let thread_commits = Arc::clone(&commits);
        let writer_thread = std::thread::Builder::new()
            .name("hato-store-writer".into())
            .spawn(move || writer_loop(conn, rx, thread_commits))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;

        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Some(tx),
                writer_thread: Some(writer_thread),
                commits,
                readers: Mutex::new(Vec::new()),
                read_slots: Arc::new(Semaphore::new(MAX_READERS)),
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
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`] in one immediate transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let current = user_version(conn)?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    check_version(current)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting the migration transaction")?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let current = user_version(&tx)?;
    check_version(current)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("applying migration {}: {e}", index + 1)))?;
        tracing::info!(version = index + 1, "applied store migration");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .ctx("setting user_version")?;
    tx.commit().ctx("committing migrations")
}

fn user_version(conn: &Connection) -> Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .ctx("reading the schema version")
}

fn check_version(found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Backend(format!(
            "invalid schema version {found}"
        )));
    }
    Ok(())
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

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn WriteJob>>, commits: Arc<AtomicU64>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let failure = run_batch(&conn, &mut batch).err();
        match &failure {
            None => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
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

/// Runs one batch in one transaction; Err(message) if it could not be committed.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn WriteJob>],
) -> std::result::Result<(), String> {
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
    exec(conn, "COMMIT").map_err(|e| format!("commit failed: {e}"))
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

/// `Return-Path: <sender>\r\n`; control characters in the sender are dropped so a malformed
/// reverse-path can never inject header lines.
fn return_path_copy(sender: &str, data: &[u8]) -> Vec<u8> {
    let sender: String = sender.chars().filter(|c| !c.is_control()).collect();
    let mut copy = Vec::with_capacity(sender.len() + data.len() + 18);
    copy.extend_from_slice(b"Return-Path: <");
    copy.extend_from_slice(sender.as_bytes());
    copy.extend_from_slice(b">\r\n");
    copy.extend_from_slice(data);
    copy
}

/// Hands out `count` consecutive UIDVALIDITY values, at least `now` and above every value handed
/// out before, so a re-created mailbox never reuses one.
fn next_uidvalidity(conn: &Connection, now: i64, count: u32) -> Result<u32> {
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

// ---------------------------------------------------------------------------------------------
// Write operations (run on the writer thread, inside the batch transaction).

fn create_account_tx(conn: &Connection, address: &str, hash: &str) -> Result<Account> {
    let alias_taken = conn
        .prepare_cached("SELECT 1 FROM aliases WHERE address = ?1")
        .and_then(|mut s| s.exists([address]))
        .ctx("checking aliases")?;
    if alias_taken {
        return Err(StoreError::Conflict(format!("alias {address}")));
    }
    let created = now();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO accounts (address, password_hash, created) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![address, hash, created]));
    match inserted {
        Ok(_) => {}
        Err(e) if is_constraint(&e) => {
            return Err(StoreError::Conflict(format!("account {address}")));
        }
        Err(e) => return Err(StoreError::Backend(format!("inserting account: {e}"))),
    }
    let id = conn.last_insert_rowid();
    let first_uidvalidity = next_uidvalidity(conn, created, DEFAULT_MAILBOXES.len() as u32)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, uidnext,
                                    highest_modseq, subscribed)
             VALUES (?1, ?2, ?3, ?4, 1, 1, 1)",
        )
        .ctx("preparing mailbox insert")?;
    for (uidvalidity, (name, special_use)) in (first_uidvalidity..).zip(DEFAULT_MAILBOXES) {
        insert
            .execute(params![id, name, special_use, uidvalidity])
            .ctx("creating default mailboxes")?;
    }
    Ok(Account {
        id,
        address: address.to_owned(),
        password_hash: hash.to_owned(),
        created,
    })
}

fn add_alias_tx(conn: &Connection, alias: &str, target: &str) -> Result<()> {
    let account_taken = conn
        .prepare_cached("SELECT 1 FROM accounts WHERE address = ?1")
        .and_then(|mut s| s.exists([alias]))
        .ctx("checking accounts")?;
    if account_taken {
        return Err(StoreError::Conflict(format!("account {alias}")));
    }
    let target_id: Option<AccountId> = conn
        .prepare_cached("SELECT id FROM accounts WHERE address = ?1")
        .and_then(|mut s| s.query_row([target], |r| r.get(0)).optional())
        .ctx("looking up the alias target")?;
    let Some(target_id) = target_id else {
        return Err(StoreError::NotFound(format!("account {target}")));
    };
    let inserted = conn
        .prepare_cached("INSERT INTO aliases (address, account_id) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![alias, target_id]));
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict(format!("alias {alias}"))),
        Err(e) => Err(StoreError::Backend(format!("inserting alias: {e}"))),
    }
}

/// A delivery with the work that needs no database done before it reaches the writer.
struct PreparedDelivery {
    sender: String,
    /// Deduplicated account ids.
    local: Vec<AccountId>,
    /// `Return-Path` + data, if there are local recipients.
    local_copy: Option<Vec<u8>>,
    remote: Vec<String>,
    data: Vec<u8>,
    received_at: i64,
}

impl PreparedDelivery {
    fn new(delivery: Delivery) -> PreparedDelivery {
        let mut local = delivery.local;
        local.sort_unstable();
        local.dedup();
        let local_copy =
            (!local.is_empty()).then(|| return_path_copy(&delivery.sender, &delivery.data));
        PreparedDelivery {
            sender: delivery.sender,
            local,
            local_copy,
            remote: delivery.remote,
            data: delivery.data,
            received_at: delivery.received_at,
        }
    }
}

fn insert_blob(conn: &Connection, data: &[u8]) -> Result<BlobId> {
    conn.prepare_cached("INSERT INTO blobs (size, data) VALUES (?1, ?2)")
        .and_then(|mut s| s.insert(params![data.len() as i64, data]))
        .ctx("inserting blob")
}

fn deliver_tx(conn: &Connection, d: &PreparedDelivery) -> Result<DeliveryReceipt> {
    let mut receipt = DeliveryReceipt {
        local_blob: None,
        queue_blob: None,
    };
    if let Some(copy) = &d.local_copy {
        let blob = insert_blob(conn, copy)?;
        let size = copy.len() as i64;
        let mut take_uid = conn
            .prepare_cached(
                "UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1
                 WHERE account_id = ?1 AND name = 'INBOX'
                 RETURNING id, uidnext - 1, highest_modseq",
            )
            .ctx("preparing UID assignment")?;
        let mut insert_entry = conn
            .prepare_cached(
                "INSERT INTO messages (mailbox_id, uid, blob_id, flags, modseq, internal_date, size)
                 VALUES (?1, ?2, ?3, '', ?4, ?5, ?6)",
            )
            .ctx("preparing entry insert")?;
        for &account in &d.local {
            let assigned: Option<(MailboxId, i64, i64)> = take_uid
                .query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .ctx("assigning a UID")?;
            let Some((mailbox, uid, modseq)) = assigned else {
                return Err(StoreError::NotFound(format!(
                    "INBOX of account id {account}"
                )));
            };
            if uid < 1 || uid >= i64::from(u32::MAX) {
                return Err(StoreError::Backend(format!(
                    "UIDs of mailbox {mailbox} exhausted"
                )));
            }
            insert_entry
                .execute(params![mailbox, uid, blob, modseq, d.received_at, size])
                .ctx("inserting mailbox entry")?;
        }
        receipt.local_blob = Some(blob);
    }
    if !d.remote.is_empty() {
        let blob = insert_blob(conn, &d.data)?;
        let mut insert_queue = conn
            .prepare_cached(
                "INSERT INTO queue (blob_id, sender, recipient, created, next_attempt, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?4, 0)",
            )
            .ctx("preparing queue insert")?;
        for recipient in &d.remote {
            insert_queue
                .execute(params![blob, d.sender, recipient, d.received_at])
                .ctx("inserting queue entry")?;
        }
        receipt.queue_blob = Some(blob);
    }
    Ok(receipt)
}

// ---------------------------------------------------------------------------------------------
// Read helpers (run on pooled read connections).

const ACCOUNT_COLUMNS: &str = "SELECT id, address, password_hash, created FROM accounts";

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        address: row.get(1)?,
        password_hash: row.get(2)?,
        created: row.get(3)?,
    })
}

fn parse_flags(flags: &str) -> Vec<String> {
    flags.split_whitespace().map(str::to_owned).collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, address: &str, password_hash: &str) -> Result<Account> {
        let address = normalize(address);
        let hash = password_hash.to_owned();
        self.write(move |conn| create_account_tx(conn, &address, &hash))
            .await
    }

    async fn delete_account(&self, address: &str) -> Result<bool> {
        let address = normalize(address);
        self.write(move |conn| {
            // Cascades to aliases, mailboxes and entries; triggers free orphaned blobs.
            conn.prepare_cached("DELETE FROM accounts WHERE address = ?1")
                .and_then(|mut s| s.execute([&address]))
                .map(|n| n > 0)
                .ctx("deleting account")
        })
        .await
    }

    async fn set_password(&self, address: &str, password_hash: &str) -> Result<bool> {
        let address = normalize(address);
        let hash = password_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE accounts SET password_hash = ?1 WHERE address = ?2")
                .and_then(|mut s| s.execute([&hash, &address]))
                .map(|n| n > 0)
                .ctx("setting password")
        })
        .await
    }

    async fn account(&self, address: &str) -> Result<Option<Account>> {
        let address = normalize(address);
        self.read(move |conn| {
            conn.prepare_cached(&format!("{ACCOUNT_COLUMNS} WHERE address = ?1"))
                .and_then(|mut s| s.query_row([&address], account_row).optional())
                .ctx("reading account")
        })
        .await
    }

    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("{ACCOUNT_COLUMNS} WHERE id = ?1"))
                .and_then(|mut s| s.query_row([id], account_row).optional())
                .ctx("reading account")
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("{ACCOUNT_COLUMNS} ORDER BY address"))
                .and_then(|mut s| s.query_map([], account_row)?.collect())
                .ctx("listing accounts")
        })
        .await
    }

    async fn add_alias(&self, alias: &str, target: &str) -> Result<()> {
        let alias = normalize(alias);
        let target = normalize(target);
        self.write(move |conn| add_alias_tx(conn, &alias, &target))
            .await
    }

    async fn remove_alias(&self, alias: &str) -> Result<bool> {
        let alias = normalize(alias);
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM aliases WHERE address = ?1")
                .and_then(|mut s| s.execute([&alias]))
                .map(|n| n > 0)
                .ctx("removing alias")
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT al.address, ac.address FROM aliases al
                 JOIN accounts ac ON ac.id = al.account_id ORDER BY al.address",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(Alias {
                        address: r.get(0)?,
                        target: r.get(1)?,
                    })
                })?
                .collect()
            })
            .ctx("listing aliases")
        })
        .await
    }

    async fn resolve(&self, address: &str) -> Result<Option<AccountId>> {
        let address = normalize(address);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id FROM accounts WHERE address = ?1
                 UNION ALL SELECT account_id FROM aliases WHERE address = ?1 LIMIT 1",
            )
            .and_then(|mut s| s.query_row([&address], |r| r.get(0)).optional())
            .ctx("resolving address")
        })
        .await
    }

    async fn deliver(&self, delivery: Delivery) -> Result<DeliveryReceipt> {
        let prepared = PreparedDelivery::new(delivery);
        if prepared.local.is_empty() && prepared.remote.is_empty() {
            return Ok(DeliveryReceipt {
                local_blob: None,
                queue_blob: None,
            });
        }
        self.write(move |conn| deliver_tx(conn, &prepared)).await
    }

    async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.read(move |conn| {
            let rows: Vec<(Mailbox, i64)> = conn
                .prepare_cached(
                    "SELECT id, account_id, name, special_use, uidvalidity, uidnext,
                            highest_modseq, subscribed
                     FROM mailboxes WHERE account_id = ?1 ORDER BY id",
                )
                .and_then(|mut s| {
                    s.query_map([account], |r| {
                        Ok((
                            Mailbox {
                                id: r.get(0)?,
                                account: r.get(1)?,
                                name: r.get(2)?,
                                special_use: r.get(3)?,
                                uidvalidity: r.get(4)?,
                                uidnext: r.get(5)?,
                                highest_modseq: 0,
                                subscribed: r.get(7)?,
                            },
                            r.get(6)?,
                        ))
                    })?
                    .collect()
                })
                .ctx("listing mailboxes")?;
            rows.into_iter()
                .map(|(mut mailbox, modseq)| {
                    mailbox.highest_modseq = to_u64(modseq, "highest_modseq")?;
                    Ok(mailbox)
                })
                .collect()
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

    async fn queue(&self) -> Result<Vec<QueueEntry>> {
        self.read(|conn| {
            let rows: Vec<(QueueEntry, i64)> = conn
                .prepare_cached(
                    "SELECT id, blob_id, sender, recipient, created, next_attempt, attempts,
                            last_error
                     FROM queue ORDER BY created, id",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok((
                            QueueEntry {
                                id: r.get(0)?,
                                blob: r.get(1)?,
                                sender: r.get(2)?,
                                recipient: r.get(3)?,
                                created: r.get(4)?,
                                next_attempt: r.get(5)?,
                                attempts: 0,
                                last_error: r.get(7)?,
                            },
                            r.get(6)?,
                        ))
                    })?
                    .collect()
                })
                .ctx("listing the queue")?;
            rows.into_iter()
                .map(|(mut entry, attempts)| {
                    entry.attempts = to_u32(attempts, "attempts")?;
                    Ok(entry)
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_strips_control_characters() {
        assert_eq!(
            return_path_copy("a\r\nX-Evil: 1@b", b"body"),
            b"Return-Path: <aX-Evil: 1@b>\r\nbody".to_vec()
        );
        assert_eq!(return_path_copy("", b"x"), b"Return-Path: <>\r\nx".to_vec());
    }

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
