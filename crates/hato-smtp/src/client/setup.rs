//! Connection setup: the greeting (RFC 5321 §3.1), EHLO with the HELO fallback
//! (§4.1.1.1), STARTTLS (RFC 3207) and the driver's TLS calls.

#[cfg(doc)]
use super::ClientAction;
use super::{Capabilities, ClientFailure, ClientSession, Expect, TlsRequirement};
use crate::reply::Reply;

impl ClientSession {
    pub(super) fn on_greeting(&mut self, reply: Reply) {
        match reply.code {
            220 => self.send_ehlo(),
            421 => self.fail(ClientFailure::Greeting(reply), false),
            400..=599 => self.fail(ClientFailure::Greeting(reply), true),
            _ => self.unexpected(Expect::Greeting, &reply),
        }
    }

    pub(super) fn on_ehlo(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 if reply.code == 250 => {
                self.caps = Some(Capabilities::from_ehlo(&reply));
                self.after_ehlo();
            }
            // HELO can never lead to STARTTLS: don't bother when TLS is required.
            5 if !self.tls && self.config.tls == TlsRequirement::Required => {
                self.fail(ClientFailure::TlsRequiredButUnavailable, false);
            }
            5 => {
                let line = format!("HELO {}", self.config.ehlo_name);
                self.command(&line, Expect::Helo);
            }
            4 => self.fail(ClientFailure::Ehlo(reply), true),
            _ => self.unexpected(Expect::Ehlo, &reply),
        }
    }

    pub(super) fn on_helo(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 if reply.code == 250 => {
                self.caps = Some(Capabilities::from_helo(&reply));
                self.after_ehlo();
            }
            4 | 5 => self.fail(ClientFailure::Ehlo(reply), true),
            _ => self.unexpected(Expect::Helo, &reply),
        }
    }

    /// EHLO/HELO done: STARTTLS if policy and offer say so.
    fn after_ehlo(&mut self) {
        if !self.tls {
            let offered = self.caps.as_ref().is_some_and(|c| c.starttls);
            match self.config.tls {
                TlsRequirement::None => {}
                TlsRequirement::Opportunistic if !offered => {}
                TlsRequirement::Required if !offered => {
                    // Nothing more in plaintext, not even QUIT.
                    return self.fail(ClientFailure::TlsRequiredButUnavailable, false);
                }
                TlsRequirement::Opportunistic | TlsRequirement::Required => {
                    return self.command("STARTTLS", Expect::StartTls);
                }
            }
        }
        self.after_tls();
    }

    pub(super) fn on_starttls(&mut self, reply: Reply) {
        match reply.code / 100 {
            2 if reply.code == 220 => {
                if self.reader.buffered() > 0 {
                    self.fail(ClientFailure::StartTlsResponseInjection, false);
                } else {
                    self.tls_pending = true;
                }
            }
            4 | 5 if self.config.tls == TlsRequirement::Required => {
                self.fail(ClientFailure::StartTlsRefused(reply), false);
            }
            // RFC 3207 §4.1: continue without TLS (opportunistic).
            4 | 5 => self.after_tls(),
            _ => self.unexpected(Expect::StartTls, &reply),
        }
    }

    /// The TLS handshake after [`ClientAction::StartTls`] succeeded: EHLO is sent
    /// again and the old capabilities are forgotten.
    pub fn tls_established(&mut self) {
        if !self.tls_pending || self.done.is_some() {
            return;
        }
        if self.injection {
            self.fail(ClientFailure::StartTlsResponseInjection, false);
            return;
        }
        self.tls_pending = false;
        self.tls = true;
        self.caps = None;
        self.reader.clear();
        self.send_ehlo();
    }

    /// The driver verified the server's certificate (WebPKI for the MX name, DANE or
    /// MTA-STS). Required for REQUIRETLS transactions; reported in the outcomes.
    pub fn set_tls_verified(&mut self, verified: bool) {
        self.tls_verified = verified && self.tls;
    }

    /// The TLS handshake failed: the session ends (transient for every transaction).
    pub fn tls_failed(&mut self) {
        self.fail(ClientFailure::TlsHandshakeFailed, false);
    }
}
