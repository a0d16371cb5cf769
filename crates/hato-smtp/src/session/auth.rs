//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Action, AuthOutcome, AuthStep, Input, Line, Mode, Session, Step};
use crate::reply::Reply;

impl Session {
    /// AUTH (RFC 4954 §4).
    pub(super) fn cmd_auth(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        if self.config.mode == Mode::Mx {
            return self.simple(Reply::new(503, (5, 5, 1), "AUTH not available"));
        }
        if self.tls.is_none() {
            return self.simple(if self.config.starttls {
                Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first")
            } else {
                Reply::new(
                    538,
                    (5, 7, 11),
                    "Encryption required for requested authentication mechanism",
                )
            });
        }
        if !self.esmtp {
            return self.simple(Reply::new(503, (5, 5, 1), "Send EHLO first"));
        }
        if self.auth_user.is_some() {
            return self.simple(Reply::new(503, (5, 5, 1), "Already authenticated"));
        }
        if self.txn.is_some() {
            return self.simple(Reply::new(
                503,
                (5, 5, 1),
                "AUTH not permitted during a mail transaction",
            ));
        }
        let mut parts = args.split(' ').filter(|s| !s.is_empty());
        let Some(mechanism) = parts.next() else {
            return self.simple(Reply::new(
                501,
                (5, 5, 4),
                "Syntax: AUTH mechanism [initial-response]",
            ));
        };
        let initial = parts.next();
        if parts.next().is_some() {
            return self.simple(Reply::new(
                501,
                (5, 5, 4),
                "Syntax: AUTH mechanism [initial-response]",
            ));
        }
        let step = if mechanism.eq_ignore_ascii_case("PLAIN") {
            AuthStep::Plain
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            AuthStep::LoginUser
        } else {
            return self.simple(Reply::new(
                504,
                (5, 5, 4),
                "Unrecognized authentication type",
            ));
        };
        match initial {
            Some(ir) => self.auth_response(step, ir.as_bytes()),
            None => {
                self.auth_challenge(&step);
                self.input = Input::Auth(step);
                Step::Continue
            }
        }
    }

    fn auth_challenge(&mut self, step: &AuthStep) {
        let challenge = match step {
            AuthStep::Plain => "",
            AuthStep::LoginUser => "VXNlcm5hbWU6", // "Username:"
            AuthStep::LoginPass { .. } => "UGFzc3dvcmQ6", // "Password:"
        };
        self.output
            .extend_from_slice(&Reply::without_status(334, challenge).to_bytes());
    }

    pub(super) fn step_auth(&mut self) -> Step {
        match self.next_line() {
            Line::Incomplete => Step::NeedInput,
            Line::Discarding => Step::Continue, // the AUTH exchange is abandoned
            Line::BareLf => {
                self.input = Input::Command;
                self.bare_lf();
                Step::Continue
            }
            Line::TooLong => {
                self.input = Input::Command;
                self.line_too_long();
                Step::Continue
            }
            Line::Complete(line) => {
                let Input::Auth(step) = std::mem::replace(&mut self.input, Input::Command) else {
                    return Step::Continue;
                };
                self.auth_response(step, &line)
            }
        }
    }

    /// One SASL response (initial response or continuation line).
    fn auth_response(&mut self, step: AuthStep, response: &[u8]) -> Step {
        if response == b"*" {
            return self.simple(Reply::new(501, (5, 7, 0), "Authentication cancelled"));
        }
        let decoded = if response == b"=" {
            Vec::new()
        } else {
            match BASE64.decode(response) {
                Ok(d) => d,
                Err(_) => return self.simple(Reply::new(501, (5, 5, 2), "Invalid base64 data")),
            }
        };
        match step {
            AuthStep::Plain => self.auth_plain(&decoded),
            AuthStep::LoginUser => match String::from_utf8(decoded) {
                Ok(username) if !username.is_empty() => {
                    let next = AuthStep::LoginPass { username };
                    self.auth_challenge(&next);
                    self.input = Input::Auth(next);
                    Step::Continue
                }
                _ => self.simple(Reply::new(501, (5, 5, 2), "Invalid username")),
            },
            AuthStep::LoginPass { username } => match String::from_utf8(decoded) {
                Ok(password) => self.authenticate(None, username, password),
                Err(_) => self.simple(Reply::new(501, (5, 5, 2), "Invalid password encoding")),
            },
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`.
    fn auth_plain(&mut self, msg: &[u8]) -> Step {
        let fields: Vec<&[u8]> = msg.split(|&b| b == 0).collect();
        let [authzid, authcid, passwd] = fields.as_slice() else {
            return self.simple(Reply::new(501, (5, 5, 2), "Invalid PLAIN response"));
        };
        let (Ok(authzid), Ok(authcid), Ok(passwd)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(authcid),
            std::str::from_utf8(passwd),
        ) else {
            return self.simple(Reply::new(501, (5, 5, 2), "Invalid PLAIN response"));
        };
        if authcid.is_empty() {
            return self.simple(Reply::new(501, (5, 5, 2), "Invalid PLAIN response"));
        }
        let authzid = if authzid.is_empty() {
            None
        } else if authzid == authcid {
            Some(authzid.to_string())
        } else {
            // No proxy authorization: never let a client act as someone else.
            self.auth_failed();
            return Step::Continue;
        };
        self.authenticate(authzid, authcid.to_string(), passwd.to_string())
    }

    fn authenticate(
        &mut self,
        authzid: Option<String>,
        username: String,
        password: String,
    ) -> Step {
        if password.is_empty() {
            self.auth_failed();
            return Step::Continue;
        }
        Step::Action(Action::Authenticate {
            authzid,
            username,
            password: password.into(),
        })
    }

    /// Answer to [`Action::Authenticate`].
    pub fn auth_result(&mut self, v: AuthOutcome) {
        let Some(Action::Authenticate { username, .. }) = self
            .pending
            .take_if(|p| matches!(p, Action::Authenticate { .. }))
        else {
            return;
        };
        match v {
            AuthOutcome::Ok => {
                self.auth_user = Some(username);
                self.reply(Reply::new(235, (2, 7, 0), "Authentication successful"));
            }
            AuthOutcome::Failed => self.auth_failed(),
            AuthOutcome::Throttled => {
                self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
                self.reply_close(Reply::new(
                    454,
                    (4, 7, 0),
                    "Too many failed attempts, try later",
                ));
            }
        }
    }

    fn auth_failed(&mut self) {
        self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
        self.reply(Reply::new(
            535,
            (5, 7, 8),
            "Authentication credentials invalid",
        ));
    }
}
