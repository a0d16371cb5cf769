//! [`Deliver`] on SQLite: a delivery's INBOX entries and queue rows in one transaction.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::ids::{IdSpace, next_id};
use super::messages::insert_message_blob;
use super::{Context, SqliteStore};
use crate::{
    AccountId, Deliver, Delivery, DeliveryReceipt, MailboxId, MessageData, QueueParams, Result,
    StoreError,
};

#[async_trait]
impl Deliver for SqliteStore {
    async fn deliver(&self, delivery: Delivery) -> Result<DeliveryReceipt> {
        self.deliver_with_params(delivery, QueueParams::default())
            .await
    }

    async fn deliver_with_params(
        &self,
        delivery: Delivery,
        params: QueueParams,
    ) -> Result<DeliveryReceipt> {
        if !params.recipients.is_empty() && params.recipients.len() != delivery.remote.len() {
            return Err(StoreError::Invalid(format!(
                "{} recipient parameters for {} remote recipients",
                params.recipients.len(),
                delivery.remote.len()
            )));
        }
        let prepared = PreparedDelivery::new(delivery, params);
        if prepared.local.is_empty() && prepared.remote.is_empty() {
            return Ok(DeliveryReceipt {
                local_blob: None,
                queue_blob: None,
            });
        }
        self.write(move |conn| deliver_tx(conn, &prepared)).await
    }
}

/// A delivery with the work that needs no database done before it reaches the writer.
struct PreparedDelivery {
    sender: String,
    /// Deduplicated account ids.
    local: Vec<AccountId>,
    /// The `Return-Path` line that heads the local copy, if there are local recipients (written
    /// in front of `data` in the blob, not copied with it in memory).
    return_path: Option<Vec<u8>>,
    remote: Vec<String>,
    data: MessageData,
    received_at: i64,
    params: QueueParams,
}

impl PreparedDelivery {
    fn new(delivery: Delivery, params: QueueParams) -> PreparedDelivery {
        let mut local = delivery.local;
        local.sort_unstable();
        local.dedup();
        let return_path = (!local.is_empty()).then(|| return_path(&delivery.sender));
        PreparedDelivery {
            sender: delivery.sender,
            local,
            return_path,
            remote: delivery.remote,
            data: delivery.data,
            received_at: delivery.received_at,
            params,
        }
    }
}

/// `Return-Path: <sender>\r\n`; control characters in the sender are dropped so a malformed
/// reverse-path can never inject header lines.
fn return_path(sender: &str) -> Vec<u8> {
    let sender: String = sender.chars().filter(|c| !c.is_control()).collect();
    format!("Return-Path: <{sender}>\r\n").into_bytes()
}

fn deliver_tx(conn: &Connection, d: &PreparedDelivery) -> Result<DeliveryReceipt> {
    let mut receipt = DeliveryReceipt {
        local_blob: None,
        queue_blob: None,
    };
    if let Some(return_path) = &d.return_path {
        let blob = insert_message_blob(conn, return_path, &d.data)?;
        let size = (return_path.len() as u64 + d.data.len()) as i64;
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
        let blob = insert_message_blob(conn, b"", &d.data)?;
        let p = &d.params;
        for (index, recipient) in d.remote.iter().enumerate() {
            let id = next_id(conn, IdSpace::Queue)?;
            let (notify, orcpt) = p.recipients.get(index).cloned().unwrap_or_default();
            conn.prepare_cached(
                "INSERT INTO queue (id, blob_id, sender, recipient, created, next_attempt, attempts,
                                    dsn_notify, dsn_orcpt, dsn_ret, dsn_envid, requiretls)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    blob,
                    d.sender,
                    recipient,
                    d.received_at,
                    notify,
                    orcpt,
                    p.ret,
                    p.envid,
                    p.requiretls
                ])
            })
            .ctx("inserting queue entry")?;
        }
        receipt.queue_blob = Some(blob);
    }
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_path_strips_control_characters() {
        assert_eq!(
            return_path("a\r\nX-Evil: 1@b"),
            b"Return-Path: <aX-Evil: 1@b>\r\n".to_vec()
        );
        assert_eq!(return_path(""), b"Return-Path: <>\r\n".to_vec());
    }
}
