//! The sans-IO SMTP client session: the protocol core of outbound delivery and of
//! smarthost relaying.
//!
//! Implements the client side of RFC 5321 (session initiation §3.1 and §4.3.1,
//! EHLO/HELO §4.1.1.1, mail transaction §3.3 and §4.1.1.2-§4.1.1.5, replies §4.2,
//! transparency §4.5.2, timeouts §4.5.3.2, QUIT §4.1.1.10) with the extensions
//! RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING/BDAT), RFC 3207
//! (STARTTLS), RFC 3461 (DSN parameters RET, ENVID, NOTIFY, ORCPT; RFC 6533 for
//! UTF-8 ORCPT), RFC 3463 + RFC 2034 (enhanced status codes), RFC 4954 (AUTH with
//! RFC 4616 PLAIN and LOGIN), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8) and RFC 8689
//! (REQUIRETLS). See [`downgrade_8bit`] for the RFC 6152 §3 / RFC 2045 7-bit
//! conversion.
//!
//! # Driving a session
//!
//! The session never does I/O and never blocks; one session is one connection,
//! which may carry several transactions (connection reuse). A driver loops:
//!
//! ```text
//! let mut s = ClientSession::new(config);
//! s.next_transaction(txn)?;                 // may be given before the greeting
//! loop {
//!     match s.poll() {
//!         Send(bytes)         => write_all(bytes) within s.timeout(),
//!         NeedInput           => match read() within s.timeout() {
//!                                    Ok(0) | Err(_) => s.connection_lost(),
//!                                    Ok(n) => s.feed(&buf[..n]),
//!                                    timeout => s.timed_out() },
//!         StartTls            => handshake on the same TCP stream, then
//!                                s.tls_established() (+ s.set_tls_verified(..)),
//!                                or s.tls_failed(),
//!         TransactionDone(o)  => record o (per recipient),
//!         Ready               => s.next_transaction(next) or s.quit(),
//!         Done(o)             => { close(); break }
//!     }
//! }
//! ```
//!
//! ```
//! use hato_smtp::{Address, ClientAction, ClientConfig, ClientSession, Transaction};
//!
//! let mut s = ClientSession::new(ClientConfig::new("mail.example.org"));
//! let to = Address::parse("bob@example.net").unwrap();
//! let msg = &b"Subject: hi\r\n\r\nhello\r\n"[..];
//! s.next_transaction(Transaction::new(None, [to], msg)).unwrap();
//! assert_eq!(s.poll(), ClientAction::NeedInput);
//! s.feed(b"220 mx.example.net ESMTP\r\n");
//! assert_eq!(s.poll(), ClientAction::Send(b"EHLO mail.example.org\r\n".to_vec()));
//! assert_eq!(s.poll(), ClientAction::NeedInput);
//! s.feed(b"250-mx.example.net\r\n250 PIPELINING\r\n");
//! let group = b"MAIL FROM:<>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n".to_vec();
//! assert_eq!(s.poll(), ClientAction::Send(group));
//! s.feed(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n");
//! assert_eq!(s.poll(), ClientAction::Send(b"Subject: hi\r\n\r\nhello\r\n.\r\n".to_vec()));
//! assert_eq!(s.poll(), ClientAction::NeedInput);
//! s.feed(b"250 2.0.0 Ok: queued\r\n");
//! let ClientAction::TransactionDone(outcome) = s.poll() else { panic!() };
//! assert!(outcome.all_delivered());
//! assert_eq!(s.poll(), ClientAction::Ready);
//! ```
//!
//! * Every transaction given to [`ClientSession::next_transaction`] yields exactly
//!   one [`ClientAction::TransactionDone`], whatever happens to the connection; a
//!   recipient is [`RecipientStatus::Delivered`] only after the server's positive
//!   reply to the end of the data. If the connection is lost after the data was
//!   sent and before that reply, the recipients are transient (RFC 5321 §6.1: the
//!   message may then be delivered twice, never zero times).
//! * [`ClientAction::Done`] is returned once the connection is over; polling again
//!   returns it again. Commands are written only through `Send`; a pipelined group
//!   (RFC 2920) is one `Send`, so one write.
//! * Timeouts belong to the driver: [`ClientSession::timeout`] gives the RFC 5321
//!   §4.5.3.2 value for the current [`ClientPhase`] (5 min for the greeting, MAIL and
//!   RCPT, 2 min for the DATA command, 3 min per data block written, 10 min for the
//!   reply to the end of the data).
//!
//! # Security properties
//!
//! * **No plaintext where TLS is required.** With [`TlsRequirement::Required`], a
//!   server whose EHLO does not offer STARTTLS (stripped by an attacker or absent),
//!   a refused EHLO (no HELO fallback: HELO cannot lead to TLS), a refused STARTTLS
//!   or a failed handshake ends the
//!   connection with a transient outcome; after the plaintext EHLO nothing else is
//!   sent (not even QUIT). [`TlsRequirement::Opportunistic`] continues in plaintext
//!   when STARTTLS is not offered or refused (RFC 3207 §4.1); after a failed
//!   handshake the driver decides whether to reconnect without TLS.
//! * **STARTTLS response injection** (the client-side CVE-2011-0411 class): any byte
//!   the server sent after its `220` to STARTTLS and before the handshake — in the
//!   same read or fed later — ends the session with
//!   [`ClientFailure::StartTlsResponseInjection`]; the driver must not do the
//!   handshake. After the handshake every pre-TLS capability is forgotten and EHLO is
//!   sent again (RFC 3207 §4.2).
//! * **Credentials only under TLS**: AUTH is never sent on a plaintext connection
//!   ([`ClientFailure::AuthRequiresTls`]).
//! * **REQUIRETLS** (RFC 8689 §4.2.1): a transaction that carries it is only sent
//!   over TLS that the driver reported as verified ([`ClientSession::set_tls_verified`])
//!   to a server announcing REQUIRETLS; otherwise it fails without sending anything.
//! * **Bounded input**: reply lines are limited to
//!   [`ClientConfig::max_reply_line`] octets and replies to
//!   [`ClientConfig::max_reply_lines`] lines; malformed or overlong replies end the
//!   session with [`ClientFailure::Protocol`], never a panic.
//! * **No injection into our own commands**: addresses are validated [`Address`]es,
//!   DSN values are xtext-encoded, credentials base64-encoded, and the EHLO name is
//!   reduced to printable ASCII.
//!
//! # Decisions
//!
//! * BODY=8BITMIME is sent when the message has an octet ≥ 0x80 (the session scans
//!   it); if the server lacks 8BITMIME the transaction fails with
//!   [`ClientFailure::Needs7BitDowngrade`] without sending: convert with
//!   [`downgrade_8bit`] and start it again on the same connection.
//! * SMTPUTF8 (RFC 6531 §3.4) is needed when [`Transaction::smtputf8`] is set or an
//!   address is non-ASCII. Without server support: if the message or the sender needs
//!   it, every recipient fails with `553 5.6.7`; otherwise only the non-ASCII
//!   recipients do and the rest are delivered without SMTPUTF8.
//! * SIZE (RFC 1870 §3): `SIZE=` is sent when announced; a message larger than the
//!   announced limit fails with `552 5.3.4` for every recipient without sending.
//! * Line endings are normalised to CRLF (a bare CR or LF becomes CRLF) and a last
//!   line without one is terminated, for DATA and BDAT alike, so the receiving end
//!   gets the same octets either way. DATA uses dot-stuffing and ends with `.CRLF`.
//! * PIPELINING: MAIL, every RCPT and DATA leave in one write; replies are matched
//!   in order. With CHUNKING, MAIL and the RCPTs are pipelined, then the BDAT chunks
//!   (all pipelined, or one at a time without PIPELINING) are sent only if some
//!   recipient was accepted. If every RCPT failed, no message data is sent; a
//!   server that answers DATA with 354 anyway gets a lone `.` (RFC 2920 §3.1).
//! * RSET is sent only before a transaction that follows one left open on the
//!   server (MAIL accepted but no final reply to the data); never before QUIT.
//! * Reply codes are checked strictly so that a desynchronised or hostile server
//!   cannot make a reply count for the wrong command: EHLO/HELO, MAIL and RSET need
//!   `250`, RCPT `250`/`251`, DATA `354`, AUTH `334`/`235`; the end of the data and a
//!   BDAT chunk accept any 2xx. Anything else is [`ProtocolError::UnexpectedReply`].
//! * `421` at any point ends the connection ([`ClientFailure::ServiceClosing`]).
//! * Greeting `554` (RFC 5321 §3.1), a refused EHLO+HELO or AUTH failure are
//!   answered with QUIT; TLS policy failures, protocol errors and `421` close without
//!   it.
//! * [`ClientFailure::try_next_host`] tells the scheduler whether another MX may do
//!   better (RFC 5321 §5.1); the per-recipient statuses are what to record when no
//!   other host is left.

mod capabilities;
mod downgrade;
mod encode;
#[cfg(test)]
mod proptests;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use self::encode::{Normalizer, Scan};
use self::reader::ReplyReader;
use crate::address::Address;
use crate::dsn;
pub use crate::dsn::{DsnRet, Notify};
use crate::reply::Reply;

pub use self::capabilities::Capabilities;
pub use self::downgrade::{DowngradeError, downgrade_8bit};

/// Default [`ClientConfig::max_reply_line`]: generous next to RFC 5321's 512 because
/// real servers send long explanations.
pub const DEFAULT_MAX_REPLY_LINE: usize = 4096;
/// Default [`ClientConfig::max_reply_lines`].
pub const DEFAULT_MAX_REPLY_LINES: usize = 100;
/// Default [`ClientConfig::chunk_size`].
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;

// ------------------------------------------------------------------------------------
// Configuration and transactions

/// Whether the connection must be encrypted (Postfix's `smtp_tls_security_level`
/// none / may / encrypt; certificate checks are the driver's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsRequirement {
    /// Never send STARTTLS.
    None,
    /// STARTTLS when offered; plaintext when not offered or refused.
    Opportunistic,
    /// STARTTLS (or implicit TLS) or no delivery: the session ends with a transient
    /// failure rather than send anything after EHLO in plaintext.
    Required,
}

/// AUTH credentials (smarthost mode). Sent only over TLS; PLAIN preferred, else LOGIN.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Per-connection settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO (reduced to printable ASCII; `localhost` if empty).
    pub ehlo_name: String,
    pub tls: TlsRequirement,
    /// The connection is already encrypted (implicit TLS, RFC 8314): no STARTTLS.
    pub already_tls: bool,
    pub auth: Option<Credentials>,
    /// Longest accepted reply line, CRLF included (at least 512, RFC 5321 §4.5.3.1.5).
    pub max_reply_line: usize,
    /// Most lines in one reply (at least 1).
    pub max_reply_lines: usize,
    /// Use PIPELINING when the server offers it.
    pub pipelining: bool,
    /// Use CHUNKING (BDAT) when the server offers it.
    pub chunking: bool,
    /// Size of one BDAT chunk and of one data write, in octets (at least 1).
    pub chunk_size: usize,
}

impl ClientConfig {
    /// Opportunistic TLS, no AUTH, default limits, PIPELINING and CHUNKING used.
    pub fn new(ehlo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            ehlo_name: ehlo_name.into(),
            tls: TlsRequirement::Opportunistic,
            already_tls: false,
            auth: None,
            max_reply_line: DEFAULT_MAX_REPLY_LINE,
            max_reply_lines: DEFAULT_MAX_REPLY_LINES,
            pipelining: true,
            chunking: true,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// One envelope recipient.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recipient {
    pub address: Address,
    /// Sent only when the server announces DSN.
    pub notify: Option<Notify>,
    /// Original recipient address (decoded); sent as ORCPT when the server announces
    /// DSN (`rfc822;` xtext, or `utf-8;` per RFC 6533 when non-ASCII).
    pub orcpt: Option<String>,
}

impl Recipient {
    pub fn new(address: Address) -> Recipient {
        Recipient {
            address,
            notify: None,
            orcpt: None,
        }
    }
}

/// One message to one or more recipients at this server.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Reverse-path; `None` is the null sender `<>` (bounces).
    pub mail_from: Option<Address>,
    pub recipients: Vec<Recipient>,
    /// The message (header and body). Line endings are normalised when sent.
    pub message: Arc<[u8]>,
    /// The message itself needs SMTPUTF8 (RFC 6532 UTF-8 header fields), even if
    /// every address is ASCII.
    pub smtputf8: bool,
    /// RFC 8689 REQUIRETLS.
    pub requiretls: bool,
    /// DSN RET (sent when the server announces DSN).
    pub ret: Option<DsnRet>,
    /// DSN ENVID, decoded (sent xtext-encoded when the server announces DSN).
    pub envid: Option<String>,
}

impl Transaction {
    /// A transaction without SMTPUTF8/REQUIRETLS/DSN parameters.
    pub fn new(
        mail_from: Option<Address>,
        recipients: impl IntoIterator<Item = Address>,
        message: impl Into<Arc<[u8]>>,
    ) -> Transaction {
        Transaction {
            mail_from,
            recipients: recipients.into_iter().map(Recipient::new).collect(),
            message: message.into(),
            smtputf8: false,
            requiretls: false,
            ret: None,
            envid: None,
        }
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("mail_from", &self.mail_from)
            .field("recipients", &self.recipients)
            .field("message_len", &self.message.len())
            .field("smtputf8", &self.smtputf8)
            .field("requiretls", &self.requiretls)
            .field("ret", &self.ret)
            .field("envid", &self.envid)
            .finish()
    }
}

// ------------------------------------------------------------------------------------
// Outcomes

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
    fn of(reply: &Reply) -> RecipientStatus {
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
    fn recipient_result(&self) -> (RecipientStatus, Reply, bool) {
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

    fn reply(&self) -> Option<&Reply> {
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

// ------------------------------------------------------------------------------------
// Phases and actions

/// Where the session is, for the driver's timer (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientPhase {
    /// Waiting for the 220 greeting.
    Greeting,
    Ehlo,
    /// Waiting for the reply to STARTTLS.
    StartTls,
    /// The driver is doing the TLS handshake.
    TlsHandshake,
    Auth,
    Rset,
    Mail,
    Rcpt,
    /// Waiting for the 354 to DATA.
    DataInit,
    /// Writing message data (DATA contents or BDAT chunks).
    DataBlock,
    /// Waiting for the reply to the end of the data (or to a BDAT chunk).
    DataTermination,
    Quit,
    /// Connected, nothing to do: waiting for the next transaction or QUIT.
    Idle,
    Closed,
}

impl ClientPhase {
    /// RFC 5321 §4.5.3.2 timeouts: initial 220, MAIL, RCPT 5 min; DATA initiation
    /// 2 min; data block 3 min; DATA termination 10 min. For the phases the RFC does
    /// not name (EHLO, STARTTLS and the handshake, AUTH, RSET, QUIT) 5 min.
    /// `None` when the session waits for the driver, not the server.
    pub fn timeout(self) -> Option<Duration> {
        let min = |m: u64| Some(Duration::from_secs(m * 60));
        match self {
            ClientPhase::Greeting
            | ClientPhase::Ehlo
            | ClientPhase::StartTls
            | ClientPhase::TlsHandshake
            | ClientPhase::Auth
            | ClientPhase::Rset
            | ClientPhase::Mail
            | ClientPhase::Rcpt
            | ClientPhase::Quit => min(5),
            ClientPhase::DataInit => min(2),
            ClientPhase::DataBlock => min(3),
            ClientPhase::DataTermination => min(10),
            ClientPhase::Idle | ClientPhase::Closed => None,
        }
    }
}

/// What the driver must do next (see the module documentation).
///
/// `Debug` shows only the length of `Send` (it may carry credentials).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Write these bytes (one write), then poll again.
    Send(Vec<u8>),
    /// Read from the server and [`ClientSession::feed`] the bytes.
    NeedInput,
    /// Do the TLS handshake on the connection, then
    /// [`ClientSession::tls_established`] or [`ClientSession::tls_failed`]. Read
    /// nothing in plaintext before it.
    StartTls,
    /// Idle: give [`ClientSession::next_transaction`] or call [`ClientSession::quit`].
    Ready,
    /// A transaction is finished (returned once per transaction).
    TransactionDone(Box<TransactionOutcome>),
    /// The connection is over: close it.
    Done(Box<ConnectionOutcome>),
}

impl fmt::Debug for ClientAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAction::Send(b) => write!(f, "Send(<{} bytes>)", b.len()),
            ClientAction::NeedInput => f.write_str("NeedInput"),
            ClientAction::StartTls => f.write_str("StartTls"),
            ClientAction::Ready => f.write_str("Ready"),
            ClientAction::TransactionDone(o) => f.debug_tuple("TransactionDone").field(o).finish(),
            ClientAction::Done(o) => f.debug_tuple("Done").field(o).finish(),
        }
    }
}

// ------------------------------------------------------------------------------------
// The session

/// The reply the session waits for, in command order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    /// 0: after `AUTH LOGIN`, 1: after the user name, 2: after the password.
    AuthLogin(u8),
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    /// The lone `.` after a 354 with no accepted recipient.
    DataAbort,
    Bdat {
        last: bool,
    },
    Quit,
}

impl Expect {
    fn phase(self) -> ClientPhase {
        match self {
            Expect::Greeting => ClientPhase::Greeting,
            Expect::Ehlo | Expect::Helo => ClientPhase::Ehlo,
            Expect::StartTls => ClientPhase::StartTls,
            Expect::AuthPlain | Expect::AuthLogin(_) => ClientPhase::Auth,
            Expect::Rset => ClientPhase::Rset,
            Expect::Mail => ClientPhase::Mail,
            Expect::Rcpt(_) => ClientPhase::Rcpt,
            Expect::Data => ClientPhase::DataInit,
            Expect::DataEnd | Expect::DataAbort | Expect::Bdat { .. } => {
                ClientPhase::DataTermination
            }
            Expect::Quit => ClientPhase::Quit,
        }
    }
}

#[derive(Debug)]
enum Stage {
    /// MAIL/RCPT (and a pipelined DATA) in flight.
    Envelope,
    /// Message data being produced.
    Body(Normalizer),
    /// Waiting for the replies to the data.
    Final,
}

/// A recipient's decided result: status, reply, remote.
type Decided = (RecipientStatus, Reply, bool);

/// The transaction in flight.
#[derive(Debug)]
struct Active {
    txn: Transaction,
    scan: Scan,
    results: Vec<Option<Decided>>,
    accepted: Vec<bool>,
    /// Recipients to send RCPT for (the rest were decided locally).
    to_send: Vec<usize>,
    /// Next entry of `to_send` (one command at a time without PIPELINING).
    next_rcpt: usize,
    pipelining: bool,
    bdat: bool,
    mail_failed: bool,
    /// First failure reply to a BDAT chunk.
    bdat_error: Option<Reply>,
    stage: Stage,
    last_reply: Option<Reply>,
}

impl Active {
    fn any_accepted(&self) -> bool {
        !self.mail_failed && self.accepted.iter().any(|&a| a)
    }
}

/// One SMTP client connection.
///
/// `Debug` is a state summary: no message contents, no credentials.
pub struct ClientSession {
    config: ClientConfig,
    reader: ReplyReader,
    output: Vec<u8>,
    expects: VecDeque<Expect>,
    caps: Option<Capabilities>,
    tls: bool,
    tls_verified: bool,
    tls_pending: bool,
    /// Bytes were fed while the handshake was pending.
    injection: bool,
    /// Greeting, EHLO, STARTTLS and AUTH are done.
    ready: bool,
    /// The server may have an open transaction: RSET before the next MAIL.
    dirty: bool,
    queued: Option<Transaction>,
    txn: Option<Box<Active>>,
    outcomes: VecDeque<TransactionOutcome>,
    quit_requested: bool,
    quit_sent: bool,
    /// The failure to report once the QUIT reply (or EOF) arrives.
    closing_failure: Option<ClientFailure>,
    done: Option<ConnectionOutcome>,
    last_reply: Option<Reply>,
    /// The last `Send` carried message data (phase `DataBlock` for its write).
    sending_data: bool,
    transactions: u32,
}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase())
            .field("tls", &self.tls)
            .field("tls_verified", &self.tls_verified)
            .field("ready", &self.ready)
            .field("dirty", &self.dirty)
            .field("expects", &self.expects)
            .field("buffered", &self.reader.buffered())
            .field("in_transaction", &self.txn.is_some())
            .field("queued", &self.queued.is_some())
            .field("quit_sent", &self.quit_sent)
            .field("transactions", &self.transactions)
            .field("done", &self.done.is_some())
            .finish_non_exhaustive()
    }
}

/// EHLO/HELO argument: printable ASCII only, never empty.
fn sanitize_ehlo(name: &str) -> String {
    let clean: String = name.chars().filter(char::is_ascii_graphic).collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

impl ClientSession {
    /// A session for a new connection; the first thing it expects is the greeting.
    pub fn new(mut config: ClientConfig) -> ClientSession {
        config.ehlo_name = sanitize_ehlo(&config.ehlo_name);
        config.max_reply_line = config.max_reply_line.max(512);
        config.max_reply_lines = config.max_reply_lines.max(1);
        config.chunk_size = config.chunk_size.max(1);
        ClientSession {
            reader: ReplyReader::new(config.max_reply_line, config.max_reply_lines),
            tls: config.already_tls,
            config,
            output: Vec::new(),
            expects: VecDeque::from([Expect::Greeting]),
            caps: None,
            tls_verified: false,
            tls_pending: false,
            injection: false,
            ready: false,
            dirty: false,
            queued: None,
            txn: None,
            outcomes: VecDeque::new(),
            quit_requested: false,
            quit_sent: false,
            closing_failure: None,
            done: None,
            last_reply: None,
            sending_data: false,
            transactions: 0,
        }
    }

    /// Bytes read from the server. Ignored once the session is over; bytes fed while
    /// a TLS handshake is pending are a response injection (the next poll ends the
    /// session).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.done.is_some() || bytes.is_empty() {
            return;
        }
        if self.tls_pending {
            self.injection = true;
            return;
        }
        self.reader.feed(bytes);
    }

    /// Processes what was fed until the driver has to do something.
    pub fn poll(&mut self) -> ClientAction {
        self.sending_data = false;
        loop {
            if !self.output.is_empty() {
                return ClientAction::Send(std::mem::take(&mut self.output));
            }
            if let Some(o) = self.outcomes.pop_front() {
                return ClientAction::TransactionDone(Box::new(o));
            }
            if let Some(d) = &self.done {
                return ClientAction::Done(Box::new(d.clone()));
            }
            if self.tls_pending {
                if self.injection {
                    self.fail(ClientFailure::StartTlsResponseInjection, false);
                    continue;
                }
                return ClientAction::StartTls;
            }
            if self.can_stream() {
                self.stream();
                continue;
            }
            if !self.expects.is_empty() {
                match self.reader.next_reply() {
                    Ok(Some(reply)) => self.on_reply(reply),
                    Ok(None) => return ClientAction::NeedInput,
                    Err(e) => self.fail(ClientFailure::Protocol(e), false),
                }
                continue;
            }
            if !self.ready || self.txn.is_some() {
                // Every path that leaves setup or a transaction waits for a reply;
                // reaching this is a bug, which must not hang the driver.
                self.fail(
                    ClientFailure::Protocol(ProtocolError::UnexpectedReply {
                        phase: self.phase(),
                        code: 0,
                    }),
                    false,
                );
                continue;
            }
            if let Some(txn) = self.queued.take() {
                if self.dirty {
                    self.queued = Some(txn);
                    self.command("RSET", Expect::Rset);
                } else {
                    self.begin(txn);
                }
                continue;
            }
            if self.quit_requested && !self.quit_sent {
                self.send_quit();
                continue;
            }
            return ClientAction::Ready;
        }
    }

    /// Hands over the next transaction for this connection. Refused (given back)
    /// while another one is queued or running, after [`ClientSession::quit`] and once
    /// the session is over.
    #[expect(
        clippy::result_large_err,
        reason = "the refused transaction is handed back by value so the caller can requeue it"
    )]
    pub fn next_transaction(&mut self, txn: Transaction) -> Result<(), Transaction> {
        if self.done.is_some()
            || self.quit_requested
            || self.quit_sent
            || self.txn.is_some()
            || self.queued.is_some()
        {
            return Err(txn);
        }
        self.queued = Some(txn);
        Ok(())
    }

    /// Ends the session with QUIT once the current transaction (if any) is finished.
    pub fn quit(&mut self) {
        self.quit_requested = true;
    }

    /// The TLS handshake after [`ClientAction::StartTls`] succeeded: EHLO is sent
    /// again and the old capabilities are forgotten.
    pub fn tls_established(&mut self) {
        if !self.tls_pending || self.done.is_some() {
            return;
        }
        if self.injection {
            self.fail(ClientFailure::StartTlsResponseInjection, false);
            return;
        }
        self.tls_pending = false;
        self.tls = true;
        self.caps = None;
        self.reader.clear();
        self.send_ehlo();
    }

    /// The driver verified the server's certificate (WebPKI for the MX name, DANE or
    /// MTA-STS). Required for REQUIRETLS transactions; reported in the outcomes.
    pub fn set_tls_verified(&mut self, verified: bool) {
        self.tls_verified = verified && self.tls;
    }

    /// The TLS handshake failed: the session ends (transient for every transaction).
    pub fn tls_failed(&mut self) {
        self.fail(ClientFailure::TlsHandshakeFailed, false);
    }

    /// EOF or an I/O error on the connection. After QUIT this is a normal end.
    pub fn connection_lost(&mut self) {
        if self.quit_sent {
            self.finish_connection();
        } else {
            self.fail(ClientFailure::ConnectionLost, false);
        }
    }

    /// The driver's timer for [`ClientSession::timeout`] fired.
    pub fn timed_out(&mut self) {
        if self.quit_sent {
            self.finish_connection();
        } else {
            self.fail(ClientFailure::Timeout, false);
        }
    }

    /// The current phase (for the write that follows a `Send`, or the read after
    /// `NeedInput`).
    pub fn phase(&self) -> ClientPhase {
        if self.done.is_some() {
            ClientPhase::Closed
        } else if self.tls_pending {
            ClientPhase::TlsHandshake
        } else if self.sending_data || self.can_stream() {
            ClientPhase::DataBlock
        } else if let Some(e) = self.expects.front() {
            e.phase()
        } else {
            ClientPhase::Idle
        }
    }

    /// RFC 5321 §4.5.3.2 timeout for the current phase.
    pub fn timeout(&self) -> Option<Duration> {
        self.phase().timeout()
    }

    /// The server's capabilities (current: post-TLS once TLS is up).
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// The connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The last reply received.
    pub fn last_reply(&self) -> Option<&Reply> {
        self.last_reply.as_ref()
    }

    // --------------------------------------------------------------------------------
    // Sending

    fn command(&mut self, line: &str, expect: Expect) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.expects.push_back(expect);
    }

    fn send_ehlo(&mut self) {
        let line = format!("EHLO {}", self.config.ehlo_name);
        self.command(&line, Expect::Ehlo);
    }

    fn send_quit(&mut self) {
        self.quit_sent = true;
        self.command("QUIT", Expect::Quit);
    }

    // --------------------------------------------------------------------------------
    // Ending

    /// Ends the session: the running and the queued transaction get their outcome;
    /// with `quit`, QUIT is sent first and the failure reported after its reply.
    fn fail(&mut self, failure: ClientFailure, quit: bool) {
        if self.done.is_some() {
            return;
        }
        self.output.clear();
        self.expects.clear();
        self.tls_pending = false;
        if let Some(a) = self.txn.take() {
            self.finish_txn(a, Some(failure.clone()), None);
        }
        if let Some(t) = self.queued.take() {
            self.local_outcome(t, failure.clone(), None);
        }
        if self.quit_sent {
            // Already ending: the failure that made us QUIT (or none) stands.
            self.finish_connection();
        } else if quit {
            self.closing_failure = Some(failure);
            self.send_quit();
        } else {
            self.closing_failure = Some(failure);
            self.finish_connection();
        }
    }

    fn finish_connection(&mut self) {
        if self.done.is_some() {
            return;
        }
        self.output.clear();
        self.expects.clear();
        self.tls_pending = false;
        if let Some(a) = self.txn.take() {
            self.finish_txn(a, Some(ClientFailure::ConnectionLost), None);
        }
        if let Some(t) = self.queued.take() {
            self.local_outcome(t, ClientFailure::ConnectionLost, None);
        }
        self.done = Some(ConnectionOutcome {
            failure: self.closing_failure.take(),
            last_reply: self.last_reply.clone(),
            tls: self.tls,
            tls_verified: self.tls_verified,
            capabilities: self.caps.clone(),
            transactions: self.transactions,
        });
    }

    fn unexpected(&mut self, expect: Expect, reply: &Reply) {
        self.fail(
            ClientFailure::Protocol(ProtocolError::UnexpectedReply {
                phase: expect.phase(),
                code: reply.code,
            }),
            false,
        );
    }

    // --------------------------------------------------------------------------------
    // Replies

    fn on_reply(&mut self, reply: Reply) {
        self.last_reply = Some(reply.clone());
        let Some(expect) = self.expects.pop_front() else {
            return;
        };
        if let Some(a) = &mut self.txn {
            a.last_reply = Some(reply.clone());
        }
        match expect {
            Expect::Quit => return self.finish_connection(),
            Expect::Greeting => return self.on_greeting(reply),
            _ => {}
        }
        if reply.code == 421 {
            return self.fail(ClientFailure::ServiceClosing(reply), false);
        }
        match expect {
            Expect::Ehlo => self.on_ehlo(reply),
            Expect::Helo => self.on_helo(reply),
            Expect::StartTls => self.on_starttls(reply),
            Expect::AuthPlain | Expect::AuthLogin(_) => self.on_auth(expect, reply),
            Expect::Rset => {
                if reply.code == 250 {
                    self.dirty = false;
                } else {
                    self.unexpected(expect, &reply);
                }
            }
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::DataEnd
            | Expect::DataAbort
            | Expect::Bdat { .. } => match self.txn.take() {
                Some(a) => self.on_txn_reply(a, expect, reply),
                None => self.unexpected(expect, &reply),
            },
            Expect::Quit | Expect::Greeting => {}
        }
    }

    fn on_greeting(&mut self, reply: Reply) {
        match reply.code {
            220 => self.send_ehlo(),
            421 => self.fail(ClientFailure::Greeting(reply), false),
            400..=599 => self.fail(ClientFailure::Greeting(reply), true),
            _ => self.unexpected(Expect::Greeting, &reply),
        }
    }

    fn on_ehlo(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 if reply.code == 250 => {
                self.caps = Some(Capabilities::from_ehlo(&reply));
                self.after_ehlo();
            }
            // HELO can never lead to STARTTLS: don't bother when TLS is required.
            5 if !self.tls && self.config.tls == TlsRequirement::Required => {
                self.fail(ClientFailure::TlsRequiredButUnavailable, false);
            }
            5 => {
                let line = format!("HELO {}", self.config.ehlo_name);
                self.command(&line, Expect::Helo);
            }
            4 => self.fail(ClientFailure::Ehlo(reply), true),
            _ => self.unexpected(Expect::Ehlo, &reply),
        }
    }

    fn on_helo(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 if reply.code == 250 => {
                self.caps = Some(Capabilities::from_helo(&reply));
                self.after_ehlo();
            }
            4 | 5 => self.fail(ClientFailure::Ehlo(reply), true),
            _ => self.unexpected(Expect::Helo, &reply),
        }
    }

    /// EHLO/HELO done: STARTTLS if policy and offer say so.
    fn after_ehlo(&mut self) {
        if !self.tls {
            let offered = self.caps.as_ref().is_some_and(|c| c.starttls);
            match self.config.tls {
                TlsRequirement::None => {}
                TlsRequirement::Opportunistic if !offered => {}
                TlsRequirement::Required if !offered => {
                    // Nothing more in plaintext, not even QUIT.
                    return self.fail(ClientFailure::TlsRequiredButUnavailable, false);
                }
                TlsRequirement::Opportunistic | TlsRequirement::Required => {
                    return self.command("STARTTLS", Expect::StartTls);
                }
            }
        }
        self.after_tls();
    }

    fn on_starttls(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 if reply.code == 220 => {
                if self.reader.buffered() > 0 {
                    self.fail(ClientFailure::StartTlsResponseInjection, false);
                } else {
                    self.tls_pending = true;
                }
            }
            4 | 5 if self.config.tls == TlsRequirement::Required => {
                self.fail(ClientFailure::StartTlsRefused(reply), false);
            }
            // RFC 3207 §4.1: continue without TLS (opportunistic).
            4 | 5 => self.after_tls(),
            _ => self.unexpected(Expect::StartTls, &reply),
        }
    }

    /// TLS settled: AUTH if configured, then ready.
    fn after_tls(&mut self) {
        let Some(creds) = self.config.auth.clone() else {
            self.ready = true;
            return;
        };
        if !self.tls {
            return self.fail(ClientFailure::AuthRequiresTls, true);
        }
        let caps = self.caps.clone().unwrap_or_default();
        let plain_ok = !creds.username.contains('\0') && !creds.password.contains('\0');
        if caps.has_auth("PLAIN") && plain_ok {
            let msg = format!("\0{}\0{}", creds.username, creds.password);
            let line = format!("AUTH PLAIN {}", BASE64.encode(msg));
            self.command(&line, Expect::AuthPlain);
        } else if caps.has_auth("LOGIN") {
            self.command("AUTH LOGIN", Expect::AuthLogin(0));
        } else {
            self.fail(ClientFailure::AuthUnavailable, true);
        }
    }

    fn on_auth(&mut self, expect: Expect, reply: Reply) {
        let creds = self.config.auth.clone().unwrap_or(Credentials {
            username: String::new(),
            password: String::new(),
        });
        match (expect, reply.code) {
            (Expect::AuthPlain | Expect::AuthLogin(2), 235) => self.ready = true,
            (Expect::AuthLogin(0), 334) => {
                let line = BASE64.encode(creds.username.as_bytes());
                self.command(&line, Expect::AuthLogin(1));
            }
            (Expect::AuthLogin(1), 334) => {
                let line = BASE64.encode(creds.password.as_bytes());
                self.command(&line, Expect::AuthLogin(2));
            }
            (_, 400..=599) => self.fail(ClientFailure::AuthFailed(reply), true),
            _ => self.unexpected(expect, &reply),
        }
    }

    // --------------------------------------------------------------------------------
    // Transactions

    /// An outcome for a transaction decided without the server: every recipient not
    /// already decided gets the failure's result.
    fn local_outcome(
        &mut self,
        txn: Transaction,
        failure: ClientFailure,
        results: Option<Vec<Option<Decided>>>,
    ) {
        let scan = encode::scan(&txn.message);
        let n = txn.recipients.len();
        let a = Box::new(Active {
            txn,
            scan,
            results: results.unwrap_or_else(|| vec![None; n]),
            accepted: vec![false; n],
            to_send: Vec::new(),
            next_rcpt: 0,
            pipelining: false,
            bdat: false,
            mail_failed: false,
            bdat_error: None,
            stage: Stage::Envelope,
            last_reply: None,
        });
        self.finish_txn(a, Some(failure), None);
    }

    /// Builds and queues the outcome. Recipients without a decided result get
    /// `accepted_result` if the server accepted them, else the failure's result.
    fn finish_txn(
        &mut self,
        a: Box<Active>,
        failure: Option<ClientFailure>,
        accepted_result: Option<Decided>,
    ) {
        let from_failure = failure.as_ref().map(ClientFailure::recipient_result);
        let fallback = || {
            (
                RecipientStatus::Transient,
                Reply::new(451, (4, 5, 0), "No reply for this recipient"),
                false,
            )
        };
        let a = *a;
        let recipients = a
            .txn
            .recipients
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let decided = a.results[i].clone().or_else(|| {
                    if a.accepted[i] && !a.mail_failed {
                        accepted_result.clone().or_else(|| from_failure.clone())
                    } else {
                        from_failure.clone()
                    }
                });
                let (status, reply, remote) = decided.unwrap_or_else(fallback);
                RecipientOutcome {
                    address: r.address,
                    status,
                    reply,
                    remote,
                }
            })
            .collect();
        let reply = failure
            .as_ref()
            .and_then(ClientFailure::reply)
            .cloned()
            .or(a.last_reply);
        self.transactions = self.transactions.saturating_add(1);
        self.outcomes.push_back(TransactionOutcome {
            recipients,
            failure,
            reply,
            tls: self.tls,
            tls_verified: self.tls_verified,
            capabilities: self.caps.clone(),
            chunking: a.bdat && !matches!(a.stage, Stage::Envelope),
            size: a.scan.size,
        });
    }

    /// Local checks, then MAIL (+ RCPTs + DATA when pipelining).
    fn begin(&mut self, txn: Transaction) {
        let caps = self.caps.clone().unwrap_or_default();
        let scan = encode::scan(&txn.message);
        let n = txn.recipients.len();

        if txn.requiretls && !(self.tls && self.tls_verified && caps.requiretls) {
            return self.local_outcome(txn, ClientFailure::RequireTlsUnavailable, None);
        }
        let sender_utf8 = txn.mail_from.as_ref().is_some_and(Address::is_utf8);
        let rcpt_utf8: Vec<bool> = txn.recipients.iter().map(|r| r.address.is_utf8()).collect();
        let needs_utf8 = txn.smtputf8 || sender_utf8 || rcpt_utf8.contains(&true);
        if needs_utf8 && !caps.smtputf8 && (txn.smtputf8 || sender_utf8) {
            return self.local_outcome(txn, ClientFailure::Smtputf8Unsupported, None);
        }
        if let Some(limit) = caps.size
            && limit > 0
            && scan.size > limit
        {
            let failure = ClientFailure::MessageTooBig {
                size: scan.size,
                limit,
            };
            return self.local_outcome(txn, failure, None);
        }
        if scan.eight_bit && !caps.eightbitmime {
            return self.local_outcome(txn, ClientFailure::Needs7BitDowngrade, None);
        }
        let mut results: Vec<Option<Decided>> = vec![None; n];
        let smtputf8 = needs_utf8 && caps.smtputf8;
        if needs_utf8 && !caps.smtputf8 {
            let refused = ClientFailure::Smtputf8Unsupported.recipient_result();
            for (i, utf8) in rcpt_utf8.iter().enumerate() {
                if *utf8 {
                    results[i] = Some(refused.clone());
                }
            }
        }
        let to_send: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
        if to_send.is_empty() {
            // No recipients, or none left after the SMTPUTF8 refusals.
            let a = Box::new(Active {
                txn,
                scan,
                results,
                accepted: vec![false; n],
                to_send,
                next_rcpt: 0,
                pipelining: false,
                bdat: false,
                mail_failed: false,
                bdat_error: None,
                stage: Stage::Envelope,
                last_reply: None,
            });
            let failure = (n > 0).then_some(ClientFailure::Smtputf8Unsupported);
            return self.finish_txn(a, failure, None);
        }

        let mut mail = format!(
            "MAIL FROM:<{}>",
            txn.mail_from
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        if caps.size.is_some() {
            let _ = write!(mail, " SIZE={}", scan.size);
        }
        if scan.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if txn.requiretls {
            mail.push_str(" REQUIRETLS");
        }
        if caps.dsn {
            if let Some(ret) = txn.ret {
                mail.push_str(" RET=");
                mail.push_str(ret.as_str());
            }
            if let Some(envid) = &txn.envid {
                mail.push_str(" ENVID=");
                dsn::encode_xtext(envid, &mut mail);
            }
        }
        let pipelining = self.config.pipelining && caps.pipelining;
        let bdat = self.config.chunking && caps.chunking;
        self.command(&mail, Expect::Mail);
        let a = Box::new(Active {
            txn,
            scan,
            results,
            accepted: vec![false; n],
            to_send,
            next_rcpt: 0,
            pipelining,
            bdat,
            mail_failed: false,
            bdat_error: None,
            stage: Stage::Envelope,
            last_reply: None,
        });
        let mut a = a;
        if pipelining {
            while a.next_rcpt < a.to_send.len() {
                self.send_rcpt(&mut a);
            }
            if !bdat {
                self.command("DATA", Expect::Data);
            }
        }
        self.txn = Some(a);
    }

    fn send_rcpt(&mut self, a: &mut Active) {
        let dsn = self.caps.as_ref().is_some_and(|c| c.dsn);
        let i = a.to_send[a.next_rcpt];
        a.next_rcpt += 1;
        let r = &a.txn.recipients[i];
        let mut line = format!("RCPT TO:<{}>", r.address);
        if dsn {
            if let Some(n) = r.notify {
                let _ = write!(line, " NOTIFY={n}");
            }
            if let Some(orcpt) = &r.orcpt {
                line.push_str(" ORCPT=");
                dsn::encode_orcpt(orcpt, &mut line);
            }
        }
        self.command(&line, Expect::Rcpt(i));
    }

    fn on_txn_reply(&mut self, mut a: Box<Active>, expect: Expect, reply: Reply) {
        let class = reply.code / 100;
        match expect {
            Expect::Mail => match class {
                2 if reply.code == 250 => {
                    self.dirty = true;
                    if !a.pipelining {
                        self.send_rcpt(&mut a);
                    }
                }
                4 | 5 => {
                    a.mail_failed = true;
                    let decided = (RecipientStatus::of(&reply), reply, true);
                    for &i in &a.to_send {
                        a.results[i] = Some(decided.clone());
                    }
                    if !a.pipelining {
                        return self.finish_txn(a, None, None);
                    }
                }
                _ => {
                    self.txn = Some(a);
                    return self.unexpected(expect, &reply);
                }
            },
            Expect::Rcpt(i) => {
                if !a.mail_failed {
                    match class {
                        2 if matches!(reply.code, 250 | 251) => a.accepted[i] = true,
                        4 | 5 => {
                            a.results[i] = Some((RecipientStatus::of(&reply), reply.clone(), true));
                        }
                        _ => {
                            self.txn = Some(a);
                            return self.unexpected(expect, &reply);
                        }
                    }
                }
                if !a.pipelining && a.next_rcpt < a.to_send.len() {
                    self.send_rcpt(&mut a);
                } else if !a.pipelining || (a.bdat && self.expects.is_empty()) {
                    return self.after_envelope(a);
                }
            }
            Expect::Data => match class {
                3 if reply.code == 354 => {
                    if a.any_accepted() {
                        a.stage = Stage::Body(Normalizer::new(true));
                    } else {
                        // RFC 2920 §3.1: DATA accepted without recipients: empty message.
                        self.output.extend_from_slice(b".\r\n");
                        self.expects.push_back(Expect::DataAbort);
                    }
                }
                4 | 5 => {
                    let decided = (RecipientStatus::of(&reply), reply, true);
                    return self.finish_txn(a, None, Some(decided));
                }
                _ => {
                    self.txn = Some(a);
                    return self.unexpected(expect, &reply);
                }
            },
            Expect::DataEnd => match class {
                2 | 4 | 5 => {
                    self.dirty = false;
                    let decided = (RecipientStatus::of(&reply), reply, true);
                    return self.finish_txn(a, None, Some(decided));
                }
                _ => {
                    self.txn = Some(a);
                    return self.unexpected(expect, &reply);
                }
            },
            Expect::DataAbort => {
                self.dirty = false;
                return self.finish_txn(a, None, None);
            }
            Expect::Bdat { last } => {
                if a.bdat_error.is_none() {
                    match class {
                        2 => {
                            if last {
                                self.dirty = false;
                                let decided = (RecipientStatus::Delivered, reply, true);
                                return self.finish_txn(a, None, Some(decided));
                            }
                        }
                        4 | 5 => {
                            // RFC 3030 §2: no further chunks; chunks already in the
                            // pipeline are answered (and ignored) before we finish.
                            a.bdat_error = Some(reply);
                            a.stage = Stage::Final;
                        }
                        _ => {
                            self.txn = Some(a);
                            return self.unexpected(expect, &reply);
                        }
                    }
                }
                if let Some(err) = &a.bdat_error
                    && !self
                        .expects
                        .iter()
                        .any(|e| matches!(e, Expect::Bdat { .. }))
                {
                    self.dirty = true;
                    let decided = (RecipientStatus::of(err), err.clone(), true);
                    return self.finish_txn(a, None, Some(decided));
                }
            }
            _ => {}
        }
        self.txn = Some(a);
    }

    /// All envelope replies are in (without a pipelined DATA): data or finish.
    fn after_envelope(&mut self, mut a: Box<Active>) {
        if !a.any_accepted() {
            return self.finish_txn(a, None, None);
        }
        if a.bdat {
            a.stage = Stage::Body(Normalizer::new(false));
        } else {
            self.command("DATA", Expect::Data);
        }
        self.txn = Some(a);
    }

    /// Message data can be produced now.
    fn can_stream(&self) -> bool {
        match &self.txn {
            Some(a) if matches!(a.stage, Stage::Body(_)) => {
                !a.bdat || a.pipelining || self.expects.is_empty()
            }
            _ => false,
        }
    }

    /// Produces the next piece of message data into the output.
    fn stream(&mut self) {
        let chunk_size = self.config.chunk_size;
        let Some(a) = self.txn.as_mut() else {
            return;
        };
        let Stage::Body(norm) = &mut a.stage else {
            return;
        };
        self.sending_data = true;
        if a.bdat {
            let mut chunk = Vec::new();
            norm.fill(&a.txn.message, &mut chunk, chunk_size);
            let last = norm.is_done();
            let header = format!(
                "BDAT {}{}\r\n",
                chunk.len(),
                if last { " LAST" } else { "" }
            );
            self.output.extend_from_slice(header.as_bytes());
            self.output.extend_from_slice(&chunk);
            self.expects.push_back(Expect::Bdat { last });
            if last {
                a.stage = Stage::Final;
            }
        } else {
            norm.fill(&a.txn.message, &mut self.output, chunk_size);
            if norm.is_done() {
                a.stage = Stage::Final;
                self.expects.push_back(Expect::DataEnd);
            }
        }
    }
}
