//! The connection skeleton every listener shares (SMTP, submission, POP3, IMAP, HTTPS):
//! accepting, connection limits (global and per client address), implicit TLS or a later
//! STARTTLS/STLS on the same stream (RFC 3207, RFC 2595, RFC 8314), reads with a timeout that
//! also watch for shutdown, writes with a timeout, and the disconnect log line.
//!
//! A protocol plugs in as a [`Service`]: it receives an admitted [`Connection`] and returns the
//! counts for the log. Services never see the listener loop, and nothing here knows a protocol.
//!
//! Must never: hold a connection's slot after it ended, let one session's panic touch another
//! (each connection is its own task), or block on a client without a timeout.

mod io;
mod limits;
mod listener;
mod stream;

pub use io::{Input, read_input, write_with_timeout};
pub use limits::{Budget, ConnectionLimits, DataBudget, DataShare, PRESSURE_TIMEOUT, Pressure};
pub use listener::{Connection, Listener, Service};
pub use stream::{ClientStream, ServerTls};

/// Becomes true when the server stops: sessions say goodbye at their next wait.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// How long each phase of a mail session may wait for the client.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Between commands (and for writes).
    pub command: std::time::Duration,
    /// Before login on listeners that require it.
    pub unauthenticated: std::time::Duration,
    /// Between chunks of message data.
    pub data: std::time::Duration,
}
