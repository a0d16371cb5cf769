//! What the caller hands in: per-connection settings and the transactions.

use bytes::Bytes;
use std::fmt;

use super::encode::MessageFacts;
use super::{DsnRet, Notify};
use crate::address::Address;

/// Default [`ClientConfig::max_reply_line`]: generous next to RFC 5321's 512 because
/// real servers send long explanations.
pub const DEFAULT_MAX_REPLY_LINE: usize = 4096;
/// Default [`ClientConfig::max_reply_lines`].
pub const DEFAULT_MAX_REPLY_LINES: usize = 100;
/// Default [`ClientConfig::chunk_size`].
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;

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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: hato_wire::Password,
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
    /// The message (header and body). Line endings are normalised when sent. `Bytes`: made
    /// from a `Vec` without a copy, shared by every attempt without one.
    pub message: Bytes,
    /// The message itself needs SMTPUTF8 (RFC 6532 UTF-8 header fields), even if
    /// every address is ASCII.
    pub smtputf8: bool,
    /// RFC 8689 REQUIRETLS.
    pub requiretls: bool,
    /// DSN RET (sent when the server announces DSN).
    pub ret: Option<DsnRet>,
    /// DSN ENVID, decoded (sent xtext-encoded when the server announces DSN).
    pub envid: Option<String>,
    /// The message is handed over in pieces instead ([`ClientAction::NeedMessage`],
    /// [`ClientSession::message_data`]): its length and facts, from a pass over it; `message`
    /// is not used.
    ///
    /// [`ClientAction::NeedMessage`]: super::ClientAction::NeedMessage
    /// [`ClientSession::message_data`]: super::ClientSession::message_data
    pub streamed: Option<Streamed>,
}

/// A message sent in pieces: its length and [`MessageFacts`] ([`FactsScanner`](super::FactsScanner)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streamed {
    pub len: u64,
    pub facts: MessageFacts,
}

impl Transaction {
    /// A transaction without SMTPUTF8/REQUIRETLS/DSN parameters.
    pub fn new(
        mail_from: Option<Address>,
        recipients: impl IntoIterator<Item = Address>,
        message: impl Into<Bytes>,
    ) -> Transaction {
        Transaction {
            mail_from,
            recipients: recipients.into_iter().map(Recipient::new).collect(),
            message: message.into(),
            smtputf8: false,
            requiretls: false,
            ret: None,
            envid: None,
            streamed: None,
        }
    }

    /// The message's size and 8-bit content.
    pub(super) fn facts(&self) -> MessageFacts {
        match &self.streamed {
            Some(s) => s.facts,
            None => super::encode::scan(&self.message),
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
            .field("streamed", &self.streamed)
            .finish()
    }
}
