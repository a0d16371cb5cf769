//! The [`Deliver`] role: accepting a message for its recipients.

use async_trait::async_trait;

use crate::{AccountId, BlobId, MessageData, Result};

/// Per-message submission parameters for the queued copy (see [`Deliver::deliver_with_params`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueParams {
    /// `RET` and `ENVID` (per message), applied to every remote recipient.
    pub ret: Option<String>,
    pub envid: Option<String>,
    /// RFC 8689 REQUIRETLS.
    pub requiretls: bool,
    /// Per remote recipient, in the order of [`Delivery::remote`]: (`NOTIFY`, `ORCPT`). Empty, or
    /// exactly as long as `remote` (Invalid otherwise).
    pub recipients: Vec<(Option<String>, Option<String>)>,
}

/// One accepted message, written atomically by [`Deliver::deliver`].
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Envelope reverse-path, "" for the null sender.
    pub sender: String,
    /// The message as received, with hato's Received header at the top, CRLF line endings; a
    /// large one partly in a spool file, streamed into the store.
    pub data: MessageData,
    /// Accounts whose INBOX gets the message. Stored once, as `Return-Path: <sender>\r\n` + data,
    /// referenced by every INBOX entry (single instance). Duplicates are delivered once.
    pub local: Vec<AccountId>,
    /// Remote recipients: one queue entry each, all referencing one blob of `data` (no Return-Path).
    pub remote: Vec<String>,
    /// Unix seconds; internal date of mailbox entries and creation time of queue entries.
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// Blob holding the local copy, if any local recipient.
    pub local_blob: Option<BlobId>,
    /// Blob holding the queued copy, if any remote recipient.
    pub queue_blob: Option<BlobId>,
}

/// Accepting a message: the one write that spans the [`Mailstore`](crate::Mailstore) and the
/// [`Queue`](crate::Queue).
///
/// A delivery writes the INBOX entries of its local recipients and the queue rows of its remote
/// ones in ONE transaction: the SMTP server acknowledges the message (`250`) once, so either
/// every recipient has it or none does. It is a role of its own, rather than a method of the
/// mailstore or the queue, because it belongs to both and to neither: its callers (the SMTP
/// server for incoming and submitted mail, the scheduler for bounces and DSNs) need nothing else
/// of either role, and a backend can only implement it where mailboxes and queue share a
/// transaction.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Writes the whole delivery in one transaction; returns only once it is durable.
    async fn deliver(&self, delivery: Delivery) -> Result<DeliveryReceipt>;
    /// [`Deliver::deliver`] with submission parameters (DSN, REQUIRETLS) stored on each queue
    /// entry.
    async fn deliver_with_params(
        &self,
        delivery: Delivery,
        params: QueueParams,
    ) -> Result<DeliveryReceipt>;
}
