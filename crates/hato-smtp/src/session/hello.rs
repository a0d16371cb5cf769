//! Connection-level commands: HELO/EHLO (RFC 5321 §4.1.1.1) with the capability
//! list, RSET (§4.1.1.5), STARTTLS (RFC 3207) and the reset after the handshake.

use super::{Input, Mode, Session, Step, TlsInfo};
use crate::reply::Reply;

impl Session {
    /// HELO/EHLO (RFC 5321 §4.1.1.1). Resets any transaction (§4.1.4).
    pub(super) fn cmd_helo(&mut self, args: &str, esmtp: bool) -> Step {
        if args.is_empty() {
            let verb = if esmtp { "EHLO" } else { "HELO" };
            return self.simple(Reply::new(
                501,
                (5, 5, 4),
                format!("Syntax: {verb} hostname"),
            ));
        }
        self.txn = None;
        self.helo = Some(args.to_string());
        self.esmtp = esmtp;
        let host = self.host().to_string();
        if !esmtp {
            self.output
                .extend_from_slice(&Reply::without_status(250, host).to_bytes());
            return Step::Continue;
        }
        let mut lines = vec![
            host,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "DSN".to_string(),
        ];
        // RFC 8689 §2: only offered in a TLS-protected session.
        if self.tls.is_some() {
            lines.push("REQUIRETLS".to_string());
        }
        lines.push("CHUNKING".to_string());
        if self.config.starttls && self.tls.is_none() {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        self.output
            .extend_from_slice(&Reply::without_status(250, lines.join("\n")).to_bytes());
        Step::Continue
    }

    /// AUTH is offered only on submission listeners over TLS.
    fn auth_offered(&self) -> bool {
        self.config.mode == Mode::Submission && self.tls.is_some()
    }

    /// RSET (RFC 5321 §4.1.1.5): ends the transaction, keeps HELO and AUTH.
    pub(super) fn cmd_rset(&mut self, args: &str) -> Step {
        if !args.is_empty() {
            return self.simple(Reply::new(501, (5, 5, 4), "Syntax: RSET"));
        }
        self.txn = None;
        self.simple(Reply::new(250, (2, 0, 0), "Ok"))
    }

    /// STARTTLS (RFC 3207 §4).
    pub(super) fn cmd_starttls(&mut self, args: &str) -> Step {
        if self.tls.is_some() {
            return self.simple(Reply::new(503, (5, 5, 1), "TLS already active"));
        }
        if !self.config.starttls {
            return self.simple(Reply::new(502, (5, 5, 1), "STARTTLS not available"));
        }
        if !args.is_empty() {
            return self.simple(Reply::new(501, (5, 5, 4), "Syntax: STARTTLS"));
        }
        if self.auth_user.is_some() {
            return self.simple(Reply::new(503, (5, 5, 1), "Already authenticated"));
        }
        self.output
            .extend_from_slice(&Reply::new(220, (2, 0, 0), "Ready to start TLS").to_bytes());
        // RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake counts.
        self.inbuf.discard();
        self.starttls_pending = true;
        Step::StartTls
    }

    /// The TLS handshake after STARTTLS succeeded: everything is reset as on a new
    /// connection (no greeting is sent; the client must EHLO again). Error count and
    /// statistics are kept.
    pub fn tls_established(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.starttls_pending = false;
        self.inbuf.discard();
        self.input = Input::Command;
        self.pending = None;
        self.pending_mail = None;
        self.pending_rcpt = None;
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.txn = None;
    }
}
