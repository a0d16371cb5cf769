//! AUTH (RFC 4954) with PLAIN (RFC 4616) or LOGIN, only over TLS.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{ClientFailure, ClientSession, Credentials, Expect};
use crate::reply::Reply;

impl ClientSession {
    /// TLS settled: AUTH if configured, then ready.
    pub(super) fn after_tls(&mut self) {
        let Some(creds) = self.config.auth.clone() else {
            self.ready = true;
            return;
        };
        if !self.tls {
            return self.fail(ClientFailure::AuthRequiresTls, true);
        }
        let caps = self.caps.clone().unwrap_or_default();
        let plain_ok = !creds.username.contains('\0') && !creds.password.expose().contains('\0');
        if caps.has_auth("PLAIN") && plain_ok {
            let msg = format!("\0{}\0{}", creds.username, creds.password.expose());
            let line = format!("AUTH PLAIN {}", BASE64.encode(msg));
            self.command(&line, Expect::AuthPlain);
        } else if caps.has_auth("LOGIN") {
            self.command("AUTH LOGIN", Expect::AuthLogin(0));
        } else {
            self.fail(ClientFailure::AuthUnavailable, true);
        }
    }

    pub(super) fn on_auth(&mut self, expect: Expect, reply: Reply) {
        let creds = self.config.auth.clone().unwrap_or(Credentials {
            username: String::new(),
            password: String::new().into(),
        });
        match (expect, reply.code) {
            (Expect::AuthPlain | Expect::AuthLogin(2), 235) => self.ready = true,
            (Expect::AuthLogin(0), 334) => {
                let line = BASE64.encode(creds.username.as_bytes());
                self.command(&line, Expect::AuthLogin(1));
            }
            (Expect::AuthLogin(1), 334) => {
                let line = BASE64.encode(creds.password.expose().as_bytes());
                self.command(&line, Expect::AuthLogin(2));
            }
            (_, 400..=599) => self.fail(ClientFailure::AuthFailed(reply), true),
            _ => self.unexpected(expect, &reply),
        }
    }
}
