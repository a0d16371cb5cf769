//! What comes out: per-recipient and per-transaction results, the end of the
//! connection, and the failures.

use std::fmt::Write as _;

use thiserror::Error;

use super::{Capabilities, ClientPhase};
#[cfg(doc)]
use super::{ClientAction, Transaction};
use crate::address::Address;
use crate::reply::Reply;

/// What happened to one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecipientStatus {
    /// The server took responsibility (2xx to the end of the data).
    Delivered,
    /// Try again later (4xx, or a local/connection reason).
    Transient,
    /// Bounce (5xx, or a local reason such as SIZE or SMTPUTF8).
    Permanent,
}

impl RecipientStatus {
    pub(super) fn of(reply: &Reply) -> RecipientStatus {
        match reply.code / 100 {
            2 => RecipientStatus::Delivered,
            5 => RecipientStatus::Permanent,
            _ => RecipientStatus::Transient,
        }
    }
}

/// One recipient's result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecipientOutcome {
    pub address: Address,
    pub status: RecipientStatus,
    /// The server's reply (RCPT rejection, or the reply to the data), or a reply
    /// made up locally when `remote` is `false`.
    pub reply: Reply,
    /// `reply` came from the server (a bounce says "remote server said ...").
    pub remote: bool,
}

/// The result of one transaction (see [`ClientAction::TransactionDone`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionOutcome {
    /// One entry per [`Transaction::recipients`], same order.
    pub recipients: Vec<RecipientOutcome>,
    /// Why the transaction did not run its normal course through the server's
    /// replies: a local refusal (SIZE, 8BITMIME, SMTPUTF8, REQUIRETLS) or the
    /// connection failing. `None` when every status comes from the server's replies.
    pub failure: Option<ClientFailure>,
    /// The last reply the server gave in this transaction (or the connection-level
    /// reply that ended it).
    pub reply: Option<Reply>,
    /// The connection was encrypted (the driver knows version and cipher).
    pub tls: bool,
    /// The driver reported the TLS peer as verified.
    pub tls_verified: bool,
    /// The server's capabilities (post-TLS when TLS was used).
    pub capabilities: Option<Capabilities>,
    /// The message was sent with BDAT (else DATA, or not at all).
    pub chunking: bool,
    /// RFC 1870 size of the message (normalised line endings).
    pub size: u64,
}

impl TransactionOutcome {
    /// Every recipient was delivered.
    pub fn all_delivered(&self) -> bool {
        self.recipients
            .iter()
            .all(|r| r.status == RecipientStatus::Delivered)
    }
}

/// The end of a connection (see [`ClientAction::Done`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionOutcome {
    /// `None`: ended by our QUIT after a normal session.
    pub failure: Option<ClientFailure>,
    /// The last reply received.
    pub last_reply: Option<Reply>,
    pub tls: bool,
    pub tls_verified: bool,
    /// The last capabilities seen (post-TLS when TLS was used).
    pub capabilities: Option<Capabilities>,
    /// Transactions that got an outcome on this connection.
    pub transactions: u32,
}

/// A reply that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum ProtocolError {
    #[error("reply line longer than {limit} octets")]
    LineTooLong { limit: usize },
    #[error("reply longer than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("malformed reply")]
    Malformed,
    #[error("unexpected reply {code} in phase {phase:?}")]
    UnexpectedReply { phase: ClientPhase, code: u16 },
}

/// Why a transaction or the connection failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Error)]
pub enum ClientFailure {
    /// The greeting was not 220 (4xx: try later; 5xx such as 554: this host refuses).
    #[error("greeting refused: {}", brief(.0))]
    Greeting(Reply),
    /// EHLO failed with 4xx, or EHLO with 5xx and then HELO failed.
    #[error("EHLO/HELO refused: {}", brief(.0))]
    Ehlo(Reply),
    /// TLS is required and the server does not offer STARTTLS (or refused EHLO).
    #[error("TLS is required but the server does not offer STARTTLS")]
    TlsRequiredButUnavailable,
    /// TLS is required and the server refused STARTTLS.
    #[error("TLS is required but STARTTLS was refused: {}", brief(.0))]
    StartTlsRefused(Reply),
    /// Bytes after the 220 to STARTTLS, before the handshake: the driver must abort.
    #[error("data after the STARTTLS reply (response injection)")]
    StartTlsResponseInjection,
    /// The driver reported a failed TLS handshake.
    #[error("TLS handshake failed")]
    TlsHandshakeFailed,
    /// Credentials are configured but the connection is not encrypted.
    #[error("refusing to authenticate without TLS")]
    AuthRequiresTls,
    /// Credentials are configured but the server offers neither PLAIN nor LOGIN.
    #[error("no usable AUTH mechanism offered")]
    AuthUnavailable,
    /// The server refused the credentials (535: permanent; 454: transient).
    #[error("authentication failed: {}", brief(.0))]
    AuthFailed(Reply),
    /// 421: the server is closing the connection.
    #[error("server closing the connection: {}", brief(.0))]
    ServiceClosing(Reply),
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// The driver reported EOF or an I/O error.
    #[error("connection lost")]
    ConnectionLost,
    /// The driver's timer for the current phase fired.
    #[error("timeout")]
    Timeout,
    /// The transaction carries REQUIRETLS but TLS is not verified or the server does
    /// not announce REQUIRETLS. Transaction only.
    #[error("REQUIRETLS: verified TLS and server support required")]
    RequireTlsUnavailable,
    /// Larger than the server's SIZE. Transaction only.
    #[error("message size {size} exceeds the server's limit {limit}")]
    MessageTooBig { size: u64, limit: u64 },
    /// 8-bit message, server without 8BITMIME: convert and retry. Transaction only.
    #[error("8-bit message and the server lacks 8BITMIME")]
    Needs7BitDowngrade,
    /// SMTPUTF8 needed by the message or the sender, not offered. Transaction only.
    #[error("SMTPUTF8 required but not offered")]
    Smtputf8Unsupported,
}

fn brief(r: &Reply) -> String {
    let mut s = r.code.to_string();
    if let Some((c, sub, d)) = r.status {
        let _ = write!(s, " {c}.{sub}.{d}");
    }
    if !r.text.is_empty() {
        s.push(' ');
        s.push_str(&r.text.replace('\n', " "));
    }
    s
}

impl ClientFailure {
    /// The connection cannot be used any further (otherwise only the transaction
    /// failed and the session stays usable).
    pub fn ends_connection(&self) -> bool {
        !matches!(
            self,
            ClientFailure::RequireTlsUnavailable
                | ClientFailure::MessageTooBig { .. }
                | ClientFailure::Needs7BitDowngrade
                | ClientFailure::Smtputf8Unsupported
        )
    }

    /// Another MX (or address) of the destination may succeed where this host failed
    /// (RFC 5321 §5.1, RFC 8689 §4.2.1). Only when no other host is left should the
    /// per-recipient statuses be applied as they are.
    pub fn try_next_host(&self) -> bool {
        !matches!(
            self,
            ClientFailure::AuthFailed(_)
                | ClientFailure::MessageTooBig { .. }
                | ClientFailure::Needs7BitDowngrade
                | ClientFailure::Smtputf8Unsupported
        )
    }

    /// What a recipient that this failure hit gets: status, reply, remote.
    pub(super) fn recipient_result(&self) -> (RecipientStatus, Reply, bool) {
        use RecipientStatus::{Permanent, Transient};
        let local = |code, status, text: &str| Reply::new(code, status, text.to_string());
        match self {
            ClientFailure::Greeting(r)
            | ClientFailure::Ehlo(r)
            | ClientFailure::AuthFailed(r)
            | ClientFailure::ServiceClosing(r) => {
                let status = if r.is_permanent() {
                    Permanent
                } else {
                    Transient
                };
                (status, r.clone(), true)
            }
            ClientFailure::StartTlsRefused(r) => (Transient, r.clone(), true),
            ClientFailure::TlsRequiredButUnavailable => (
                Transient,
                local(
                    451,
                    (4, 7, 4),
                    "TLS is required but the server does not offer STARTTLS",
                ),
                false,
            ),
            ClientFailure::StartTlsResponseInjection => (
                Transient,
                local(451, (4, 7, 0), "Data injected after the STARTTLS reply"),
                false,
            ),
            ClientFailure::TlsHandshakeFailed => (
                Transient,
                local(451, (4, 7, 5), "TLS handshake failed"),
                false,
            ),
            ClientFailure::AuthRequiresTls => (
                Transient,
                local(451, (4, 7, 11), "Refusing to authenticate without TLS"),
                false,
            ),
            ClientFailure::AuthUnavailable => (
                Transient,
                local(451, (4, 7, 4), "No usable AUTH mechanism offered"),
                false,
            ),
            ClientFailure::Protocol(e) => (
                Transient,
                local(451, (4, 5, 0), &format!("Protocol error: {e}")),
                false,
            ),
            ClientFailure::ConnectionLost => {
                (Transient, local(451, (4, 4, 2), "Connection lost"), false)
            }
            ClientFailure::Timeout => (
                Transient,
                local(451, (4, 4, 2), "Timeout waiting for the server"),
                false,
            ),
            ClientFailure::RequireTlsUnavailable => (
                Permanent,
                local(550, (5, 7, 30), "REQUIRETLS support required"),
                false,
            ),
            ClientFailure::MessageTooBig { limit, .. } => (
                Permanent,
                local(
                    552,
                    (5, 3, 4),
                    &format!("Message size exceeds the server's fixed maximum of {limit}"),
                ),
                false,
            ),
            ClientFailure::Needs7BitDowngrade => (
                Permanent,
                local(
                    554,
                    (5, 6, 3),
                    "8-bit message needs conversion: the server lacks 8BITMIME",
                ),
                false,
            ),
            ClientFailure::Smtputf8Unsupported => (
                Permanent,
                local(553, (5, 6, 7), "SMTPUTF8 required but not supported"),
                false,
            ),
        }
    }

    pub(super) fn reply(&self) -> Option<&Reply> {
        match self {
            ClientFailure::Greeting(r)
            | ClientFailure::Ehlo(r)
            | ClientFailure::StartTlsRefused(r)
            | ClientFailure::AuthFailed(r)
            | ClientFailure::ServiceClosing(r) => Some(r),
            _ => None,
        }
    }
}
