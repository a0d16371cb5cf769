//! The server driver the property tests and the `smtp_server` fuzz target share: it
//! feeds a session client bytes piece by piece, answers every decision the way
//! `hato`'s driver would, and checks on the way the invariants that hold for any input.
//!
//! Compiled for the crate's tests and with the `fuzzing` feature (the fuzz crate).

use std::sync::Arc;

pub use hato_wire::testing::End;

use super::{AUTH_LINE_MAX, Action, AuthOutcome, Config, Peer, Session, TlsInfo};
use crate::{Address, Reply};

hato_wire::server_session!(Session, Action);

/// Everything observable about a run.
pub type Run = hato_wire::testing::Run<Action>;

/// A driver. Senders and recipients with the local part `bad` are refused, user
/// `alice` logs in and `throttle` is throttled; `decide` says when a delivery fails.
pub struct Driver<'a> {
    pub config: Config,
    pub peer: Peer,
    /// Reported for implicit TLS and after STARTTLS.
    pub tls_info: TlsInfo,
    /// Implicit TLS.
    pub tls: bool,
    pub decide: &'a mut dyn FnMut() -> bool,
    pub end: End,
}

impl Driver<'_> {
    /// Feeds `pieces` one after the other (see [`hato_wire::testing::pump`]). Panics
    /// where an invariant breaks: STARTTLS under TLS, an address that does not
    /// round-trip, a delivery over the size limit, without recipients, with REQUIRETLS
    /// but no TLS or with a malformed `Received:` field, unbounded buffering.
    pub fn run<P: AsRef<[u8]>>(self, pieces: &[P]) -> Run {
        let max_message = self.config.max_message_size;
        let max_mem = AUTH_LINE_MAX + max_message + self.config.max_command_line;
        let (tls_info, decide) = (self.tls_info, self.decide);
        let implicit_tls = self.tls.then(|| tls_info.clone());
        let mut s = Session::new(Arc::new(self.config), self.peer, implicit_tls);
        s.greet();
        let answer = |s: &mut Session, a, _: &mut Vec<u8>| match a {
            Action::NeedInput | Action::Close => unreachable!("not a decision"),
            Action::StartTls => {
                assert!(!s.is_tls(), "STARTTLS under TLS");
                s.tls_established(tls_info.clone());
            }
            Action::Authenticate { username, .. } => {
                s.auth_result(match username.as_str() {
                    "alice" => AuthOutcome::Ok,
                    "throttle" => AuthOutcome::Throttled,
                    _ => AuthOutcome::Failed,
                });
            }
            Action::CheckSender { address } => {
                if let Some(a) = &address {
                    check_address(a);
                }
                let r = if address.as_ref().is_some_and(|a| a.local_part() == "bad") {
                    Err(Reply::new(550, (5, 7, 1), "no"))
                } else {
                    Ok(())
                };
                s.sender_result(r);
            }
            Action::CheckRecipient { address } => {
                check_address(&address);
                let r = if address.local_part() == "bad" {
                    Err(Reply::new(550, (5, 1, 1), "no"))
                } else {
                    Ok(())
                };
                s.recipient_result(r);
            }
            Action::Deliver(env) => {
                assert!(env.body.len() <= max_message, "message over the size limit");
                assert!(!env.recipients.is_empty(), "delivery without recipients");
                assert_eq!(env.rcpt_dsn.len(), env.recipients.len());
                assert!(
                    !env.requiretls || env.tls.is_some(),
                    "REQUIRETLS without TLS"
                );
                assert_eq!(env.tls.is_some(), s.is_tls());
                check_received(&env.received_header(
                    "mx.example",
                    "ID",
                    "Thu, 1 Jan 2026 00:00:00 +0000",
                ));
                let r = if decide() {
                    Err(Reply::new(451, (4, 3, 0), "try later"))
                } else {
                    Ok("ID".into())
                };
                s.delivery_result(r);
            }
        };
        let check = |s: &Session, piece: &[u8]| {
            assert!(
                s.buffered() <= max_mem + piece.len(),
                "buffered {}",
                s.buffered()
            );
        };
        hato_wire::testing::pump(&mut s, pieces, self.end, answer, check)
    }
}

/// An address the session hands over renders to text that parses back to it.
fn check_address(a: &Address) {
    let again = Address::parse(&a.to_string());
    assert_eq!(again.as_ref(), Ok(a), "address does not round-trip");
    assert!(!a.local_part().is_empty());
}

/// `h` is one `Received:` header field: ASCII lines of at most 998 octets, folded with
/// a tab, no bare CR or LF, ending with CRLF.
fn check_received(h: &str) {
    assert!(h.is_ascii(), "non-ASCII Received: {h:?}");
    let body = h.strip_suffix("\r\n").expect("Received: ends with CRLF");
    for (i, line) in body.split("\r\n").enumerate() {
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR/LF in Received: {h:?}"
        );
        if i == 0 {
            assert!(line.starts_with("Received: "), "{h:?}");
        } else {
            assert!(line.starts_with('\t'), "Received: continuation {h:?}");
        }
        assert!(line.len() <= 998, "Received: line too long");
    }
}
