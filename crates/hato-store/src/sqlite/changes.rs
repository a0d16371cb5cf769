//! Change notifications ([`MailboxChanged`]): the temporary triggers that record, inside a
//! batch's transaction, which mailboxes it changed (the writer reads them just before `COMMIT`
//! and broadcasts them after it), and the watcher thread that announces other processes' writes.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use rusqlite::Connection;

use super::{Inner, exec, get_u64, open_connection};
use crate::{AccountId, MailboxChanged, MailboxId};

/// Per-connection (TEMP) change tracking on the writer connection; see the module docs.
pub(super) const CHANGE_TRACKING: &str = r#"
    CREATE TEMP TABLE hato_changed (
        mailbox_id     INTEGER PRIMARY KEY,
        account_id     INTEGER NOT NULL,
        highest_modseq INTEGER NOT NULL,
        deleted        INTEGER NOT NULL
    );
    CREATE TEMP TRIGGER hato_mailbox_changed AFTER UPDATE OF highest_modseq ON main.mailboxes
    WHEN NEW.highest_modseq IS NOT OLD.highest_modseq
    BEGIN
        INSERT OR REPLACE INTO hato_changed (mailbox_id, account_id, highest_modseq, deleted)
        VALUES (NEW.id, NEW.account_id, NEW.highest_modseq, 0);
    END;
    CREATE TEMP TRIGGER hato_mailbox_deleted AFTER DELETE ON main.mailboxes
    BEGIN
        INSERT OR REPLACE INTO hato_changed (mailbox_id, account_id, highest_modseq, deleted)
        VALUES (OLD.id, OLD.account_id, OLD.highest_modseq, 1);
    END;
"#;

/// How often the watcher looks for other processes' writes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Announces writes of other processes (the CLI, a second server on the same file): once per
/// [`WATCH_INTERVAL`] it reads every mailbox's HIGHESTMODSEQ (one small query for the whole
/// store, instead of each IDLE session polling its mailbox) and sends [`MailboxChanged`] for
/// those beyond what was announced, and `deleted` for those gone. Ends with the store.
pub(super) fn watch_loop(inner: Weak<Inner>) {
    let mut conn: Option<Connection> = None;
    // The baseline (what `announced` held at open) is older than any subscriber: compare from
    // the first read on.
    let mut started = false;
    loop {
        if started {
            std::thread::sleep(WATCH_INTERVAL);
        }
        started = true;
        let Some(inner) = inner.upgrade() else { return };
        if conn.is_none() {
            match open_connection(&inner.path, true) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "store watcher cannot open the database");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        let rows = c
            .prepare_cached("SELECT id, account_id, highest_modseq FROM mailboxes")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, get_u64(r, 2)?)))?
                    .collect::<rusqlite::Result<Vec<(MailboxId, AccountId, u64)>>>()
            });
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "store watcher cannot read mailboxes");
                continue;
            }
        };
        let mut events = Vec::new();
        {
            let mut known = inner.announced.lock().unwrap_or_else(|e| e.into_inner());
            let mut present = HashSet::with_capacity(rows.len());
            for (mailbox, account, modseq) in rows {
                present.insert(mailbox);
                // A mailbox unknown so far (created since the last look) is taken as it is.
                let seen = known.entry(mailbox).or_insert((account, modseq));
                if modseq > seen.1 {
                    seen.1 = modseq;
                    events.push(MailboxChanged {
                        account,
                        mailbox,
                        highest_modseq: modseq,
                        deleted: false,
                    });
                }
            }
            known.retain(|mailbox, (account, modseq)| {
                let keep = present.contains(mailbox);
                if !keep {
                    events.push(MailboxChanged {
                        account: *account,
                        mailbox: *mailbox,
                        highest_modseq: *modseq,
                        deleted: true,
                    });
                }
                keep
            });
        }
        for event in events {
            let _ = inner.changes.send(event);
        }
    }
}

/// Reads and clears what the change-tracking triggers recorded in this transaction.
pub(super) fn take_changes(conn: &Connection) -> rusqlite::Result<Vec<MailboxChanged>> {
    let changed: Vec<MailboxChanged> = conn
        .prepare_cached(
            "SELECT mailbox_id, account_id, highest_modseq, deleted FROM temp.hato_changed
             ORDER BY mailbox_id",
        )?
        .query_map([], |r| {
            Ok(MailboxChanged {
                mailbox: r.get(0)?,
                account: r.get(1)?,
                highest_modseq: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                deleted: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    if !changed.is_empty() {
        exec(conn, "DELETE FROM temp.hato_changed")?;
    }
    Ok(changed)
}
