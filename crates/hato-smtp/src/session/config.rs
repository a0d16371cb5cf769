//! Listener configuration and the remote peer.

use std::net::IpAddr;

#[cfg(doc)]
use super::{MAIL_LINE_EXTRA, RCPT_LINE_EXTRA};

/// What kind of listener the session serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Port 25: mail from other servers. AUTH is never offered.
    Mx,
    /// Ports 587/465 (RFC 6409, RFC 8314): authenticated users only; AUTH is offered
    /// over TLS and MAIL requires successful AUTH.
    Submission,
}

/// How bare CR / bare LF inside DATA are handled (they never end the data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BareLinePolicy {
    /// Consume the message to its real end and reject it with `554 5.5.0`.
    Reject,
    /// Store every bare CR or LF as CRLF.
    Normalize,
}

/// Session configuration (shared by all sessions of a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our name: greeting, EHLO reply, 421 replies.
    pub hostname: String,
    pub mode: Mode,
    /// STARTTLS may be offered on this listener (only before TLS).
    pub starttls: bool,
    /// MAIL/RCPT/DATA/BDAT/AUTH before TLS -> `530 5.7.0`.
    pub require_tls: bool,
    /// SIZE advertised; `SIZE=` and actual size -> `552 5.3.4`.
    pub max_message_size: usize,
    /// More recipients -> `452 4.5.3`.
    pub max_recipients: usize,
    /// When this many 5xx replies were sent: `421 4.7.0` and close (0 acts as 1).
    pub max_errors: u32,
    /// Command line limit including CRLF (RFC 5321 §4.5.3.1.4: 512). MAIL and RCPT
    /// lines may be longer by [`MAIL_LINE_EXTRA`] / [`RCPT_LINE_EXTRA`].
    pub max_command_line: usize,
    /// DATA text line limit including CRLF (RFC 5321 §4.5.3.1.6: 1000).
    pub max_text_line: usize,
    pub bare_line_endings: BareLinePolicy,
    /// Bytes received before the greeting: `554 5.5.1` and close.
    pub reject_early_talkers: bool,
}

impl Default for Config {
    /// Safe defaults for an MX listener without TLS configured: 25 MiB messages,
    /// 100 recipients (RFC 5321 §4.5.3.1.8 minimum), 10 errors, RFC line limits,
    /// bare line endings rejected, early talkers rejected.
    fn default() -> Config {
        Config {
            hostname: "localhost".to_string(),
            mode: Mode::Mx,
            starttls: false,
            require_tls: false,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_command_line: 512,
            max_text_line: 1000,
            bare_line_endings: BareLinePolicy::Reject,
            reject_early_talkers: true,
        }
    }
}

/// The remote end of the connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
    /// Verified reverse DNS name, if the driver resolved one.
    pub reverse_name: Option<String>,
}
