//! The driver the property tests and the `pop3` fuzz target share: it feeds a session
//! client bytes piece by piece, answers every decision from a fixed maildrop, and
//! checks on the way the invariants that hold for any input.
//!
//! Compiled for the crate's tests and with the `fuzzing` feature (the fuzz crate).

use std::sync::Arc;

pub use hato_wire::testing::{End, assert_no_bare_cr_lf, tls_info};

use super::{
    AUTH_LINE_MAX, Action, AuthOutcome, CommitError, Config, MaildropError, MessageError,
    MessageInfo, Session,
};
use crate::wire_size;

hato_wire::server_session!(Session, Action);

/// Everything observable about a run.
pub type Run = hato_wire::testing::Run<Action>;

/// A driver: `messages` is the maildrop of every user (users `busy` and `temp` get
/// the maildrop errors); `decide` says when a retrieval or the commit fails.
pub struct Driver<'a> {
    pub config: Config,
    /// Implicit TLS.
    pub tls: bool,
    pub messages: &'a [&'a [u8]],
    pub decide: &'a mut dyn FnMut() -> bool,
    pub end: End,
}

impl Driver<'_> {
    /// Feeds `pieces` one after the other (see [`hato_wire::testing::pump`]). Panics
    /// where an invariant breaks: a decision after the commit, STLS under TLS,
    /// credentials without TLS, a commit of unknown or unordered indices, a retrieval
    /// outside the listing, unbounded output or buffering.
    pub fn run<P: AsRef<[u8]>>(self, pieces: &[P]) -> Run {
        let max_line = AUTH_LINE_MAX.max(self.config.max_command_line);
        let max_message = self.messages.iter().map(|m| m.len()).max().unwrap_or(0);
        let (messages, decide) = (self.messages, self.decide);
        let mut s = Session::new(Arc::new(self.config), self.tls.then(tls_info));
        s.greet();
        let answer = |s: &mut Session, a, output: &mut Vec<u8>| {
            match a {
                Action::NeedInput | Action::Close => unreachable!("not a decision"),
                Action::StartTls => {
                    assert!(!s.is_tls(), "STLS under TLS");
                    s.tls_established(tls_info());
                }
                Action::Authenticate { username, password } => {
                    assert!(s.is_tls(), "credentials accepted without TLS");
                    s.auth_result(match (username.as_str(), password.expose()) {
                        ("throttle", _) => AuthOutcome::Throttled,
                        (_, "secret") => AuthOutcome::Ok,
                        _ => AuthOutcome::Failed,
                    });
                }
                Action::OpenMaildrop { username } => {
                    s.maildrop_result(match username.as_str() {
                        "busy" => Err(MaildropError::InUse),
                        "temp" => Err(MaildropError::Temporary),
                        _ => Ok(listing(messages)),
                    });
                }
                Action::Retrieve { index, .. } => {
                    output.extend(s.output());
                    let r = match messages.get(index) {
                        Some(_) if decide() && decide() => Err(MessageError::Temporary),
                        Some(m) => Ok(m.to_vec()),
                        None => panic!("Retrieve of message index {index} not in the listing"),
                    };
                    s.message_result(r);
                }
                Action::Commit { deleted } => {
                    assert!(deleted.windows(2).all(|w| w[0] < w[1]), "{deleted:?}");
                    assert!(deleted.iter().all(|&i| i < messages.len()), "{deleted:?}");
                    s.commit_result(if decide() { Err(CommitError) } else { Ok(()) });
                    // Whatever the commit came to, the session ends (Close is final, so
                    // the pump's next poll sees it too).
                    assert_eq!(s.poll(), Action::Close, "decision after the commit");
                }
            }
        };
        let check = |s: &Session, piece: &[u8]| {
            // A Retrieve response adds at most one (stuffed) message to the output.
            assert!(s.output.len() <= 4096 + 2 * max_message + 2 * piece.len() * 64);
            assert!(
                s.buffered() <= max_line + piece.len(),
                "buffered {}",
                s.buffered()
            );
        };
        hato_wire::testing::pump(&mut s, pieces, self.end, answer, check)
    }
}

/// The maildrop listing of `messages`: uids `u0`, `u1`, ...
fn listing(messages: &[&[u8]]) -> Vec<MessageInfo> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| MessageInfo {
            size: wire_size(m),
            uid: format!("u{i}"),
        })
        .collect()
}
