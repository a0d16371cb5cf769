//! What the session asks of the driver, and the phase that sets the driver's timer.

use std::fmt;
use std::time::Duration;

#[cfg(doc)]
use super::ClientSession;
use super::{ConnectionOutcome, TransactionOutcome};

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
    /// Give the next piece of the [streamed](super::Transaction::streamed) message, from
    /// `offset`, with [`ClientSession::message_data`](super::ClientSession::message_data).
    NeedMessage { offset: u64 },
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
            ClientAction::NeedMessage { offset } => f
                .debug_struct("NeedMessage")
                .field("offset", offset)
                .finish(),
        }
    }
}
