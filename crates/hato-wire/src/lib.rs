//! hato-wire: the few types and helpers every protocol crate of hato shares.
//!
//! * [`TlsInfo`]: what was negotiated on a TLS session (version, cipher suite, SNI), for logs,
//!   `Received` headers (RFC 5321 4.4, RFC 8314 4.3) and, later, `Authentication-Results`.
//! * [`AuthOutcome`]: the answer to a login attempt, the same for SMTP AUTH (RFC 4954), POP3
//!   USER/PASS and AUTH (RFC 1939, 5034) and IMAP LOGIN/AUTHENTICATE (RFC 9051); each session
//!   turns it into its own reply.
//! * [`domain`]: domain names in the form hato compares and stores them (IDNA A-labels, RFC 5890).
//! * [`date`]: the clock as Unix seconds and the RFC 5322 3.3 date-time.
//!
//! Who depends on it: the sans-IO sessions (hato-smtp, hato-pop3, hato-imap), hato-tls,
//! hato-delivery and the server. Must never: do I/O (sockets, files, DNS), depend on tokio or
//! rustls, or grow protocol logic — a rule of one protocol belongs in that protocol's crate.

pub mod date;
pub mod domain;

/// Negotiated TLS parameters of one session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsInfo {
    /// `"TLSv1.3"` or `"TLSv1.2"`.
    pub version: String,
    /// The IANA cipher suite name, e.g. `"TLS_AES_256_GCM_SHA384"` (RFC 8446 B.4).
    pub cipher: String,
    /// The server name the client asked for (RFC 6066 3), if any.
    pub sni: Option<String>,
}

/// The verdict on a login attempt, shared by every protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthOutcome {
    /// The credentials are right.
    Ok,
    /// The credentials are wrong (or the account does not exist: the two look the same).
    Failed,
    /// Too many recent failures for this client or account: the attempt was not checked, and
    /// the session answers with a temporary error and closes.
    Throttled,
}
