//! The schema: numbered migrations in `PRAGMA user_version`, applied when a store is opened.

use rusqlite::{Connection, TransactionBehavior};

use super::Context;
use crate::{Result, StoreError};

/// Schema migrations; `MIGRATIONS[i]` brings a database from version `i` to `i + 1`.
/// Never edit a released migration: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // Version 2: IMAP/POP3 mailbox operations.
    r#"
    -- Expunged UIDs with the MODSEQ of their expunge (RFC 7162 QRESYNC VANISHED). Keyed for
    -- "WHERE mailbox_id = ? AND modseq > ?". (Bounded per mailbox since version 5.)
    CREATE TABLE vanished (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        modseq     INTEGER NOT NULL,
        uid        INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, modseq, uid)
    ) WITHOUT ROWID;

    -- CONDSTORE CHANGEDSINCE / QRESYNC: messages of a mailbox changed after a MODSEQ.
    CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

    -- Subscriptions are kept by name (RFC 9051 6.3.7: they survive deleting the mailbox), which
    -- a per-mailbox column cannot do. mailboxes.subscribed is no longer read or maintained; it
    -- stays so that a process still running version 1 keeps working until it is restarted.
    CREATE TABLE subscriptions (
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        PRIMARY KEY (account_id, name)
    ) WITHOUT ROWID;
    INSERT INTO subscriptions (account_id, name)
        SELECT account_id, name FROM mailboxes WHERE subscribed <> 0;

    -- Id counters (see next_id): from now on no id is handed out twice. (Ids of rows that
    -- version 1 deleted above today's largest id cannot be known; they were never exposed to a
    -- session that outlives this upgrade.)
    INSERT OR REPLACE INTO meta (key, value)
        SELECT 'last_account_id', coalesce(max(id), 0) FROM accounts;
    INSERT OR REPLACE INTO meta (key, value)
        SELECT 'last_mailbox_id', coalesce(max(id), 0) FROM mailboxes;
    INSERT OR REPLACE INTO meta (key, value)
        SELECT 'last_blob_id', coalesce(max(id), 0) FROM blobs;
    "#,
    // Version 3: outbound delivery (claims/leases, attempts, DSN parameters, REQUIRETLS).
    r#"
    -- RFC 3461 DSN parameters and RFC 8689 REQUIRETLS from submission (NULL/0: not given).
    ALTER TABLE queue ADD COLUMN dsn_notify TEXT;
    ALTER TABLE queue ADD COLUMN dsn_orcpt  TEXT;
    ALTER TABLE queue ADD COLUMN dsn_ret    TEXT;
    ALTER TABLE queue ADD COLUMN dsn_envid  TEXT;
    ALTER TABLE queue ADD COLUMN requiretls INTEGER NOT NULL DEFAULT 0;
    -- A scheduler's claim: leased until (unix seconds; 0 = free) and a token bumped per claim.
    ALTER TABLE queue ADD COLUMN leased_until INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE queue ADD COLUMN claim        INTEGER NOT NULL DEFAULT 0;
    -- The last attempt: when, and its TLS facts (text/JSON written by the delivery code).
    ALTER TABLE queue ADD COLUMN last_attempt INTEGER;
    ALTER TABLE queue ADD COLUMN last_tls     TEXT;
    -- `hato queue bounce`: the scheduler bounces instead of trying again.
    ALTER TABLE queue ADD COLUMN bounce INTEGER NOT NULL DEFAULT 0;

    DROP INDEX queue_next_attempt;
    CREATE INDEX queue_due ON queue(next_attempt, id);

    -- Queue ids are never reused from now on (see next_id): the CLI and schedulers name
    -- entries by id across processes.
    INSERT OR REPLACE INTO meta (key, value)
        SELECT 'last_queue_id', coalesce(max(id), 0) FROM queue;
    "#,
    // Version 4: IMAP4rev1 \Recent (RFC 3501 2.3.2).
    r#"
    -- UIDs from recent_uid to uidnext were not announced to any read-write session yet: they
    -- are \Recent, and the next session to select the mailbox claims them (claim_recent moves
    -- recent_uid to uidnext). New mailboxes start at 1; existing mail is not recent after the
    -- upgrade (clients would otherwise see every old message as new).
    ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
    UPDATE mailboxes SET recent_uid = uidnext;
    "#,
    // Version 5: the vanished table is bounded per mailbox.
    r#"
    -- Expunges with a MODSEQ up to vanished_floor were forgotten (only the newest are kept):
    -- changes_since from an older MODSEQ reports every UID below UIDNEXT that is not in the
    -- mailbox as vanished (RFC 7162 allows reporting more than what was expunged).
    ALTER TABLE mailboxes ADD COLUMN vanished_floor INTEGER NOT NULL DEFAULT 0;
    "#,
    // Version 6: state shared by every node of one database (the SharedState role).
    r#"
    -- Windowed counters (authentication failures per IP and per account): a counter lives
    -- from its first count until `expires` (unix seconds).
    CREATE TABLE counters (
        key     TEXT PRIMARY KEY,
        count   INTEGER NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX counters_expires ON counters(expires);

    -- Exclusive leases (POP3 maildrop locks): held by `owner` until `expires` unless renewed,
    -- so the lock of a crashed node runs out by itself.
    CREATE TABLE leases (
        name    TEXT PRIMARY KEY,
        owner   TEXT NOT NULL,
        expires INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX leases_expires ON leases(expires);

    -- Small values with an expiry (MTA-STS policies). A rowid table: values can be tens of
    -- kilobytes, which WITHOUT ROWID tables store poorly.
    CREATE TABLE cache (
        key     TEXT NOT NULL UNIQUE,
        value   BLOB NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX cache_expires ON cache(expires);

    -- TLS-RPT (RFC 8460) counts per UTC day (days since 1970-01-01), policy domain, policy
    -- and result; `policy` and `result` are the delivery code's text, not read by the store.
    CREATE TABLE tls_report_counts (
        day        INTEGER NOT NULL,
        domain     TEXT NOT NULL,
        policy     TEXT NOT NULL,
        result     TEXT NOT NULL,
        successful INTEGER NOT NULL,
        failed     INTEGER NOT NULL,
        UNIQUE (day, domain, policy, result)
    );
    -- The reports that went out (or need not): each (day, domain) at most once.
    CREATE TABLE tls_report_sent (
        day     INTEGER NOT NULL,
        domain  TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (day, domain)
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema to [`SCHEMA_VERSION`] in one immediate transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::{Deliver, Delivery, Directory, Expunge, FlagOp, Mailstore, Queue};

    /// A database as hato with schema version 1 left it: one account with its default
    /// mailboxes (Sent unsubscribed by hand), two INBOX messages, one queued blob; blob 3 was
    /// freed (the largest id is 2 now).
    fn write_version_1(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            r"
            INSERT INTO meta VALUES ('last_uidvalidity', 106);
            INSERT INTO accounts (id, address, password_hash, created)
                VALUES (1, 'old@example.com', 'hash', 100);
            INSERT INTO mailboxes (id, account_id, name, special_use, uidvalidity, uidnext,
                                   highest_modseq, subscribed) VALUES
                (1, 1, 'INBOX', NULL, 101, 3, 3, 1),
                (2, 1, 'Sent', '\Sent', 102, 1, 1, 0),
                (3, 1, 'Drafts', '\Drafts', 103, 1, 1, 1),
                (4, 1, 'Trash', '\Trash', 104, 1, 1, 1),
                (5, 1, 'Junk', '\Junk', 105, 1, 1, 1),
                (6, 1, 'Archive', '\Archive', 106, 1, 1, 1);
            INSERT INTO blobs (id, size, data) VALUES (1, 4, X'6F6E650A'), (2, 4, X'74776F0A'),
                                                      (3, 1, X'78');
            INSERT INTO messages (mailbox_id, uid, blob_id, flags, modseq, internal_date, size)
                VALUES (1, 1, 1, '', 2, 1000, 4), (1, 2, 2, '', 3, 1001, 4);
            INSERT INTO queue (blob_id, sender, recipient, created, next_attempt)
                VALUES (3, 's@example.com', 'r@remote.example', 1000, 1000);
            DELETE FROM queue;
            PRAGMA user_version = 1;
            ",
        )
        .unwrap();
    }

    /// The database of [`write_version_1`] as hato with schema `version` left it.
    fn write_version(path: &Path, version: usize) {
        write_version_1(path);
        let conn = Connection::open(path).unwrap();
        for sql in &MIGRATIONS[1..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64)
            .unwrap();
    }

    /// A version 2 database with queue rows (id 7 the largest, id 5 kept) gets the version 3
    /// columns with their defaults, and new queue ids start above every id seen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_2_queue_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hato.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.execute_batch(
                r"
                INSERT INTO blobs (id, size, data) VALUES (1, 1, X'78');
                INSERT INTO queue (id, blob_id, sender, recipient, created, next_attempt, attempts,
                                   last_error)
                    VALUES (5, 1, 's@example.com', 'a@remote.example', 1000, 1000, 0, NULL),
                           (7, 1, 's@example.com', 'b@remote.example', 1000, 2000, 3, '451 later');
                PRAGMA user_version = 2;
                ",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let old = store.queue_entry(7).await.unwrap().unwrap();
        assert_eq!(
            (old.attempts, old.last_error.as_deref(), old.next_attempt),
            (3, Some("451 later"), 2000)
        );
        assert_eq!(old.dsn, crate::DsnParams::default());
        assert!(!old.requiretls && !old.bounce_requested);
        assert_eq!(
            (old.leased_until, old.claim, old.last_attempt),
            (0, 0, None)
        );
        assert!(store.queue_delete(7).await.unwrap());
        store
            .deliver(Delivery {
                sender: String::new(),
                data: b"x".to_vec().into(),
                local: vec![],
                remote: vec!["c@remote.example".into()],
                received_at: 3000,
            })
            .await
            .unwrap();
        let ids: Vec<i64> = store.queue().await.unwrap().iter().map(|q| q.id).collect();
        assert_eq!(ids, vec![5, 8], "id 7 must not be handed out again");
    }

    /// A version 3 database: existing mail is not `\Recent` after the upgrade (recent_uid is
    /// UIDNEXT), later mail is, and mailboxes created afterwards start at UID 1.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_3_mailboxes_get_recent_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hato.db");
        write_version(&path, 3);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            user_version(&Connection::open(&path).unwrap()).unwrap(),
            SCHEMA_VERSION
        );
        let inbox = store.mailbox_status(1).await.unwrap().unwrap();
        assert_eq!(
            (
                inbox.messages,
                inbox.uidnext,
                inbox.recent_uid,
                inbox.recent
            ),
            (2, 3, 3, 0),
            "old mail is not recent"
        );
        let sent = store.mailbox_status(2).await.unwrap().unwrap();
        assert_eq!((sent.recent_uid, sent.recent), (1, 0));
        assert_eq!(store.claim_recent(1).await.unwrap(), Some((3, 3)));
        let appended = store
            .append(1, b"new\n".to_vec().into(), &[], 2000)
            .await
            .unwrap();
        assert_eq!(appended.uid, 3);
        let inbox = store.mailbox_status(1).await.unwrap().unwrap();
        assert_eq!((inbox.recent_uid, inbox.recent), (3, 1));
        assert_eq!(store.claim_recent(1).await.unwrap(), Some((3, 4)));
        let created = store.create_mailbox(1, "After", None).await.unwrap();
        assert_eq!(
            store
                .mailbox_status(created.id)
                .await
                .unwrap()
                .unwrap()
                .recent_uid,
            1
        );
    }

    /// A version 5 database gets the shared-state tables, empty, and keeps its mail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_5_gets_shared_state() {
        use crate::SharedState;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hato.db");
        write_version(&path, 5);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.mailbox_status(1).await.unwrap().unwrap().messages, 2);
        assert_eq!(store.counter("ip:192.0.2.1", 1000).await.unwrap(), 0);
        assert_eq!(
            store.counter_bump("ip:192.0.2.1", 60, 1000).await.unwrap(),
            1
        );
        assert!(store.lease_acquire("pop3:1", "a", 60, 1000).await.unwrap());
        assert!(store.tls_report_due(0, i64::MAX).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn version_1_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hato.db");
        write_version_1(&path);
        assert_eq!(
            Connection::open(&path)
                .unwrap()
                .query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            2,
            "the trigger freed blob 3"
        );

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            user_version(&Connection::open(&path).unwrap()).unwrap(),
            SCHEMA_VERSION
        );
        // Subscriptions carried over from the old column.
        let mailboxes = store.mailboxes(1).await.unwrap();
        assert_eq!(mailboxes.len(), 6);
        for m in &mailboxes {
            assert_eq!(m.subscribed, m.name != "Sent", "{}", m.name);
        }
        assert_eq!(
            store.subscriptions(1).await.unwrap(),
            ["Archive", "Drafts", "INBOX", "Junk", "Trash"]
        );

        // The new operations work on old data.
        let r = store
            .set_flags(1, &[1], FlagOp::Add, &["\\Seen".to_owned()], Some(2))
            .await
            .unwrap();
        assert_eq!(r.updated[0].modseq, 4);
        assert_eq!(store.expunge(1, Expunge::Uids(&[2])).await.unwrap(), [2]);
        assert_eq!(store.blob(2).await.unwrap(), None, "blob 2 freed");
        let changes = store.changes_since(1, 3).await.unwrap().unwrap();
        assert_eq!(changes.changed.len(), 1);
        assert_eq!(changes.vanished, [2]);
        let appended = store
            .append(1, b"new\n".to_vec().into(), &[], 2000)
            .await
            .unwrap();
        assert_eq!((appended.uidvalidity, appended.uid), (101, 3));
        let blob = store.message(1, 3).await.unwrap().unwrap().blob;
        assert!(blob > 2, "blob id {blob} reused after the upgrade");
        let created = store.create_mailbox(1, "Lists/new", None).await.unwrap();
        assert!(created.id > 6);
        assert!(created.uidvalidity > 106);
        let account = store
            .create_account("new@example.com", "hash")
            .await
            .unwrap();
        assert_eq!(account.id, 2);

        // Reopening a version-2 database changes nothing.
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.mailbox_status(1).await.unwrap().unwrap().messages, 2);
    }
}
