//! [`Mailstore`] on SQLite: each operation is one request on the writer or one read on the pool.
//! Single-statement reads are here; the rest is in `mailboxes.rs` and `messages.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tokio::sync::broadcast;

use super::changes::watch_loop;
use super::mailboxes::{
    MAILBOX_SELECT, claim_recent_tx, create_mailbox_tx, delete_mailbox_tx, mailbox_row,
    mailbox_status_read, rename_mailbox_tx, set_subscribed_tx,
};
use super::messages::{
    ENTRY_SELECT, append_tx, changes_since_read, copy_tx, entry_row, expunge_tx, move_tx,
    set_flags_tx, sorted_uids,
};
use super::{Context, SqliteStore, get_u64, parse_flags, to_u64};
use crate::rules::{FlagSet, canonical_mailbox_name, canonical_special_use};
use crate::{
    AccountId, AppendUid, BlobId, Changes, CopyUids, Expunge, FlagOp, FlagsResult, Mailbox,
    MailboxChanged, MailboxId, MailboxStatus, Mailstore, MessageData, MessageEntry, Result, Usage,
};

/// The bytes of one message of a mailbox, by `(mailbox, uid)`.
const MESSAGE_DATA_SELECT: &str = "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id
     WHERE m.mailbox_id = ?1 AND m.uid = ?2";

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
        self.read_row(
            "SELECT data FROM blobs WHERE id = ?1",
            [blob],
            |r| r.get(0),
            "reading blob",
        )
        .await
    }

    async fn blob_size(&self, blob: BlobId) -> Result<Option<u64>> {
        self.read_row(
            "SELECT size FROM blobs WHERE id = ?1",
            [blob],
            |r| super::get_u64(r, 0),
            "reading a blob's size",
        )
        .await
    }

    async fn blob_range(&self, blob: BlobId, offset: u64, len: usize) -> Result<Option<Vec<u8>>> {
        self.read(move |conn| {
            let b = match conn.blob_open(rusqlite::MAIN_DB, "blobs", "data", blob, true) {
                Ok(b) => b,
                // No such row.
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::Unknown =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e).ctx("opening a blob"),
            };
            let size = b.len() as u64;
            let start = offset.min(size) as usize;
            let n = len.min(size as usize - start);
            let mut out = vec![0u8; n];
            b.read_at_exact(&mut out, start).ctx("reading a blob")?;
            Ok(Some(out))
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
        self.read_row(
            format!("{MAILBOX_SELECT} WHERE m.account_id = ?1 AND m.name = ?2"),
            (account, name),
            mailbox_row,
            "reading mailbox",
        )
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
        data: MessageData,
        flags: &[String],
        internal_date: i64,
    ) -> Result<AppendUid> {
        let flags = FlagSet::parse(flags)?.to_stored();
        self.write(move |conn| append_tx(conn, mailbox, &data, &flags, internal_date))
            .await
    }

    async fn message(&self, mailbox: MailboxId, uid: u32) -> Result<Option<MessageEntry>> {
        self.read_row(
            format!("{ENTRY_SELECT} WHERE mailbox_id = ?1 AND uid = ?2"),
            (mailbox, uid),
            entry_row,
            "reading message",
        )
        .await
    }

    async fn message_data(&self, mailbox: MailboxId, uid: u32) -> Result<Option<Vec<u8>>> {
        self.read_row(
            MESSAGE_DATA_SELECT,
            (mailbox, uid),
            |r| r.get(0),
            "reading message data",
        )
        .await
    }

    async fn messages_data(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
        let uids = uids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(MESSAGE_DATA_SELECT)
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
