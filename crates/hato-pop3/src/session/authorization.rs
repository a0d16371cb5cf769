//! The AUTHORIZATION state (RFC 1939 §4): USER/PASS (§7), SASL `AUTH` (RFC 5034)
//! with PLAIN (RFC 4616), STLS (RFC 2595 §4), and the refusals before TLS.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::command;
use super::{Action, Code, Input, Phase, Session, Step};

impl Session {
    pub(super) fn auth_failed(&mut self) {
        self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
        self.client_err(Some(Code::Auth), "Authentication failed");
    }

    /// USER/PASS/AUTH without TLS (RFC 2595 §2.1, RFC 8314).
    fn tls_required(&mut self) -> Step {
        if self.config.stls {
            self.client_err(Some(Code::Auth), "Must issue STLS command first");
        } else {
            self.client_err(
                Some(Code::SysPerm),
                "Authentication requires TLS, which this port does not offer",
            );
        }
        Step::Continue
    }

    /// USER (RFC 1939 §7).
    pub(super) fn cmd_user(&mut self, args: &str) -> Step {
        if self.tls.is_none() {
            return self.tls_required();
        }
        let name = args.trim_matches(' ');
        if name.is_empty() {
            return self.err("Syntax: USER name");
        }
        self.phase = Phase::Authorization {
            user: Some(name.to_string()),
        };
        self.ok("send PASS");
        Step::Continue
    }

    /// PASS (RFC 1939 §7): the whole rest of the line is the password.
    pub(super) fn cmd_pass(&mut self, args: &str) -> Step {
        if self.tls.is_none() {
            return self.tls_required();
        }
        let Phase::Authorization { user } = &mut self.phase else {
            return Step::Continue;
        };
        let Some(username) = user.take() else {
            return self.err("Send USER first");
        };
        self.authenticate(username, args.to_string())
    }

    /// STLS (RFC 2595 §4).
    pub(super) fn cmd_stls(&mut self, args: &str) -> Step {
        if self.tls.is_some() {
            return self.err("Command not permitted when TLS active");
        }
        if !self.config.stls {
            return self.err("STLS not available");
        }
        if !command::arguments(args).is_empty() {
            return self.err("Syntax: STLS");
        }
        self.ok("Begin TLS negotiation");
        // CVE-2011-0411: nothing sent before the handshake counts.
        self.inbuf.discard();
        self.stls_pending = true;
        Step::StartTls
    }

    /// AUTH (RFC 5034 §4; without arguments: the mechanism list).
    pub(super) fn cmd_auth(&mut self, args: &str) -> Step {
        if self.tls.is_none() {
            return self.tls_required();
        }
        // A new authentication replaces a pending USER.
        self.phase = Phase::Authorization { user: None };
        let parts = command::arguments(args);
        match parts.as_slice() {
            [] => {
                self.ok("");
                self.output.extend_from_slice(b"PLAIN\r\n.\r\n");
                Step::Continue
            }
            [mechanism, rest @ ..] if rest.len() <= 1 => {
                if !mechanism.eq_ignore_ascii_case("PLAIN") {
                    return self.err("Unrecognized authentication type");
                }
                match rest.first() {
                    Some(initial) => self.sasl_response(initial.as_bytes()),
                    None => {
                        self.output.extend_from_slice(b"+ \r\n");
                        self.input = Input::Sasl;
                        Step::Continue
                    }
                }
            }
            _ => self.err("Syntax: AUTH mechanism [initial-response]"),
        }
    }

    /// The PLAIN response (initial response or continuation line).
    pub(super) fn sasl_response(&mut self, response: &[u8]) -> Step {
        if response == b"*" {
            return self.err("Authentication cancelled");
        }
        let decoded = if response == b"=" {
            Vec::new()
        } else {
            match BASE64.decode(response) {
                Ok(d) => d,
                Err(_) => return self.err("Invalid base64 data"),
            }
        };
        // RFC 4616: [authzid] NUL authcid NUL passwd
        let fields: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        let [authzid, authcid, passwd] = fields.as_slice() else {
            return self.err("Invalid PLAIN response");
        };
        let (Ok(authzid), Ok(authcid), Ok(passwd)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(authcid),
            std::str::from_utf8(passwd),
        ) else {
            return self.err("Invalid PLAIN response");
        };
        if authcid.is_empty() {
            return self.err("Invalid PLAIN response");
        }
        if !authzid.is_empty() && authzid != authcid {
            // No proxy authorization: never let a client act as someone else.
            self.auth_failed();
            return Step::Continue;
        }
        self.authenticate(authcid.to_string(), passwd.to_string())
    }

    fn authenticate(&mut self, username: String, password: String) -> Step {
        if password.is_empty() {
            self.auth_failed();
            return Step::Continue;
        }
        Step::Action(Action::Authenticate {
            username,
            password: password.into(),
        })
    }
}
