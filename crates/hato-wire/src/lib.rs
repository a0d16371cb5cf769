//! hato-wire: the few types and helpers every protocol crate of hato shares.
//!
//! * [`TlsInfo`]: what was negotiated on a TLS session (version, cipher suite, SNI), for logs,
//!   `Received` headers (RFC 5321 4.4, RFC 8314 4.3) and, later, `Authentication-Results`.
//! * [`AuthOutcome`]: the answer to a login attempt, the same for SMTP AUTH (RFC 4954), POP3
//!   USER/PASS and AUTH (RFC 1939, 5034) and IMAP LOGIN/AUTHENTICATE (RFC 9051); each session
//!   turns it into its own reply.
//! * [`Password`]: a secret whose `Debug` output is redacted, so an action or a configuration
//!   printed with `{:?}` never shows it.
//! * [`domain`]: domain names in the form hato compares and stores them (IDNA A-labels, RFC 5890).
//! * [`date`]: the clock as Unix seconds and the RFC 5322 3.3 date-time.
//! * [`step`] and [`input`]: the poll loop and the input buffer of the line-based sans-IO
//!   sessions (SMTP, POP3).
//! * `testing` (feature `test-support`): the feed-and-poll loop, input cutting, output
//!   checks and the reported TLS facts the sessions' property tests and fuzz targets share.
//!
//! Who depends on it: the sans-IO sessions (hato-smtp, hato-pop3, hato-imap), hato-tls,
//! hato-delivery and the server. Must never: do I/O (sockets, files, DNS), depend on tokio or
//! rustls, or grow protocol logic — a rule of one protocol belongs in that protocol's crate.

pub mod date;
pub mod domain;
pub mod input;
pub mod step;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

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

/// A password or other secret. `Debug` prints `<redacted>`; the text is reached only through
/// [`Password::expose`], so it cannot slip into a log by accident.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Password(String);

impl Password {
    pub fn new(secret: String) -> Password {
        Password(secret)
    }

    /// The secret itself, for the one place that checks or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Password {
    fn from(secret: String) -> Password {
        Password(secret)
    }
}

impl From<&str> for Password {
    fn from(secret: &str) -> Password {
        Password(secret.to_owned())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_debug_is_redacted() {
        let p = super::Password::from("hunter2");
        assert_eq!(format!("{p:?}"), "<redacted>");
        assert_eq!(p.expose(), "hunter2");
    }
}
