//! The public types a driver exchanges with a [`Session`]: the configuration, the
//! maildrop listing, the decisions ([`Action`]) and their error results, the state
//! and the counters.

#[cfg(doc)] // for the documentation links
use super::Session;

/// Maximum length of an AUTH command line or SASL response line, including CRLF.
/// RFC 5034 keeps AUTH commands within RFC 2449's 255 octets; this is the SMTP limit
/// (RFC 4954 §4), generous for PLAIN and still bounded.
pub const AUTH_LINE_MAX: usize = 12288;

/// The smallest effective [`Config::max_command_line`]: RFC 2449 §4 lets clients
/// send command lines of 255 octets including CRLF.
pub const MIN_COMMAND_LINE: usize = 255;

/// Maximum length of a unique-id (RFC 1939 §7, UIDL).
pub const MAX_UID_LEN: usize = 70;

/// Session configuration (shared by all sessions of a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our name: greeting and sign-off.
    pub hostname: String,
    /// STLS is offered on this listener (only before TLS; RFC 2595 §4).
    pub stls: bool,
    /// When this many client errors were answered: `-ERR Too many errors` and close
    /// (0 acts as 1).
    pub max_errors: u32,
    /// Command line limit in octets including CRLF. RFC 2449 §4 caps commands at 255;
    /// the default, 512, is lenient. Values below [`MIN_COMMAND_LINE`] act as 255.
    pub max_command_line: usize,
}

impl Default for Config {
    /// `localhost`, no STLS, 10 errors, 512-octet command lines.
    fn default() -> Config {
        Config {
            hostname: "localhost".to_string(),
            stls: false,
            max_errors: 10,
            max_command_line: 512,
        }
    }
}

/// One message of the maildrop listing given to [`Session::maildrop_result`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageInfo {
    /// Size in octets with CRLF line endings, as LIST and STAT report it (RFC 1939
    /// §5); see [`crate::wire_size`].
    pub size: u64,
    /// The UIDL unique-id: 1 to [`MAX_UID_LEN`] characters in 0x21..=0x7E, unique in
    /// the maildrop, stable across sessions (RFC 1939 §7).
    pub uid: String,
}

/// Why the maildrop could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MaildropError {
    /// Another session holds the lock: `-ERR [IN-USE] ...`, then close (RFC 2449 §8.1.2).
    #[error("maildrop is locked by another session")]
    InUse,
    /// Storage problem: `-ERR [SYS/TEMP] ...`; the session returns to AUTHORIZATION
    /// (unauthenticated) and the client may try again (RFC 1939 §4).
    #[error("maildrop temporarily unavailable")]
    Temporary,
}

/// Why a message could not be read for RETR/TOP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MessageError {
    /// The message no longer exists (removed outside this session):
    /// `-ERR message n no longer exists`.
    #[error("message no longer exists")]
    Gone,
    /// Storage problem: `-ERR [SYS/TEMP] ...`.
    #[error("message temporarily unavailable")]
    Temporary,
}

/// The deletions could not (all) be carried out at QUIT:
/// `-ERR [SYS/TEMP] some deleted messages not removed` (RFC 1939 §6), then close.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("some deleted messages were not removed")]
pub struct CommitError;

/// What the driver must do next (see the module documentation).
///
/// The `Debug` output redacts the password of [`Action::Authenticate`] (a [`hato_wire::Password`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Flush [`Session::output`], then read and call [`Session::feed`].
    NeedInput,
    /// Flush output (the `+OK Begin TLS negotiation`), do the TLS handshake, then
    /// call [`Session::tls_established`] (or close the connection if it fails).
    StartTls,
    /// Flush output, release the maildrop lock if one was taken, close the
    /// connection.
    Close,
    /// Verify the credentials (USER/PASS or AUTH PLAIN) and answer with
    /// [`Session::auth_result`].
    Authenticate {
        username: String,
        password: hato_wire::Password,
    },
    /// Authentication succeeded: lock the user's maildrop, list it and answer with
    /// [`Session::maildrop_result`]. The listing is fixed for the session: message
    /// numbers are positions in it (RFC 1939 §5).
    OpenMaildrop { username: String },
    /// RETR (`top_lines: None`) or TOP (`Some(m)`): flush output, read the message at
    /// `index` (0-based, into the listing) and answer with [`Session::message_result`].
    /// Give the whole message in both cases; the session selects TOP's lines.
    Retrieve {
        index: usize,
        top_lines: Option<usize>,
    },
    /// QUIT in the TRANSACTION state (the UPDATE state, RFC 1939 §6): remove the
    /// messages at these indices (0-based, ascending; possibly none) and answer with
    /// [`Session::commit_result`]. The session closes afterwards.
    Commit { deleted: Vec<usize> },
}

/// The protocol state (RFC 1939 §3), for logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Before a maildrop is open (including while authentication is decided).
    Authorization,
    /// The maildrop is open.
    Transaction,
    /// QUIT received in TRANSACTION; the commit is pending.
    Update,
    /// The session is over (or ending); the next `poll()` returns `Close`.
    Closed,
}

/// Per-connection counters for the disconnect log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionStats {
    /// RETR commands answered with the message.
    pub messages_retrieved: u64,
    /// TOP commands answered with the message's top.
    pub tops: u64,
    /// Message octets sent by RETR and TOP (CRLF line endings, before stuffing).
    pub octets_sent: u64,
    /// Messages removed by a successful commit.
    pub messages_deleted: u64,
    /// Client errors counted against `max_errors`.
    pub errors: u32,
    /// Failed authentications (including throttled ones).
    pub auth_failures: u32,
}
