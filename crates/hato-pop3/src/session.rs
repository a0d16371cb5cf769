//! The sans-IO POP3 server session.
//!
//! Implements the server side of RFC 1939 (states §3, AUTHORIZATION §4, TRANSACTION
//! §5, UPDATE §6, the optional TOP/UIDL/USER/PASS commands §7) with RFC 2449 (CAPA
//! §5, the capabilities of §6, extended response codes §8, line lengths §4), RFC 2595
//! §4 (STLS), RFC 5034 (SASL `AUTH`, with RFC 4616 PLAIN as the only mechanism),
//! RFC 3206 (the `SYS/TEMP`, `SYS/PERM` and `AUTH` response codes, AUTH-RESP-CODE)
//! and RFC 8314 implicit TLS (a session created with `tls = Some(..)`, port 995).
//!
//! # Driving a session
//!
//! The session never does I/O. A driver loops:
//!
//! ```text
//! session.greet();
//! loop {
//!     match session.poll() {
//!         NeedInput                  => { write(session.output()); session.feed(read()) }
//!         StartTls                   => { write(session.output()); handshake(); session.tls_established(info) }
//!         Close                      => { write(session.output()); release_lock(); close(); break }
//!         Authenticate { .. }        => session.auth_result(verify(..)),
//!         OpenMaildrop { username }  => session.maildrop_result(lock_and_list(username)),
//!         Retrieve { index, .. }     => { write(session.output()); session.message_result(read(index)) }
//!         Commit { deleted }         => session.commit_result(remove(deleted)),
//!     }
//! }
//! ```
//!
//! * Responses are queued in [`Session::output`] in command order. While a decision
//!   is pending no further input is processed, so pipelined commands (RFC 2449 §6.6)
//!   get their responses in order, and all commands already buffered are processed
//!   before the session asks for input again.
//! * **Calling `poll()` again while a decision is pending returns the same action
//!   again** (a clone). `poll()` keeps returning `StartTls` until
//!   [`Session::tls_established`] and `Close` forever once closing. A result call that
//!   does not match the pending action is ignored.
//! * [`Session::output`] may be called at any time. A RETR response holds a whole
//!   message, so **the driver should take and write the output before answering each
//!   [`Action::Retrieve`]**: then at most one message is buffered, however many RETR
//!   commands a client pipelines.
//! * **Maildrop lock.** From a successful [`Session::maildrop_result`] until the
//!   connection ends, the driver holds the maildrop lock, and it must release it
//!   however the connection ends: after `Close`, an I/O error, a timeout or a failed
//!   handshake. Only [`Action::Commit`] removes messages: a connection that drops,
//!   times out, exceeds the error limit or is shut down never enters the UPDATE state
//!   and nothing is deleted (RFC 1939 §6; §3 for the autologout timer).
//!
//! # Security properties
//!
//! * **No password before TLS** (RFC 2595 §2.1, RFC 8314): USER, PASS and AUTH are
//!   refused without TLS — `-ERR [AUTH] Must issue STLS command first` when STLS is
//!   offered, `-ERR [SYS/PERM] ...` on a plaintext-only listener — and CAPA lists
//!   neither `USER` nor `SASL` before TLS.
//! * **STLS injection** (CVE-2011-0411 class): every byte buffered after the `STLS`
//!   line, and anything fed before the handshake completes, is discarded;
//!   [`Session::tls_established`] returns to a fresh AUTHORIZATION state (no `USER`
//!   remembered, RFC 2595 §4).
//! * **Response integrity**: message bodies are dot-stuffed and their line endings
//!   normalised to CRLF (bare LF and bare CR included, see [`crate::transfer`]), so a
//!   stored message can never end a RETR/TOP response early or inject responses. The
//!   session never echoes client text; unique-ids from the driver are checked
//!   (RFC 1939 §7: 1 to 70 characters 0x21..=0x7E, unique).
//! * **Bounded memory**: command lines are limited to [`Config::max_command_line`]
//!   octets, AUTH lines to [`AUTH_LINE_MAX`]; longer lines are discarded as they
//!   arrive (never buffered) and answered `-ERR Line too long`.
//! * **Error limit**: client errors (`-ERR` answers to bad commands, arguments,
//!   sequence or credentials) are counted; at [`Config::max_errors`] the session adds
//!   `-ERR Too many errors, closing connection` and closes — without UPDATE.
//! * **Cross-protocol requests** (an HTTP request line or header sent to the POP3
//!   port, e.g. the ALPACA attack class) are answered `-ERR` and the connection is
//!   closed.
//!
//! # Response choices
//!
//! * Lines may end in CRLF or a bare LF (RFC 1939 asks for CRLF; a bare LF is
//!   accepted as a courtesy — unlike SMTP, nothing here is relayed, so there is no
//!   smuggling risk). A CR or other control character inside a line makes it an
//!   error.
//! * Authentication failures carry `[AUTH]` (RFC 3206 §4, advertised as
//!   AUTH-RESP-CODE): `-ERR [AUTH] Authentication failed`. Syntax errors in an AUTH
//!   exchange (bad base64, malformed PLAIN message) carry no code.
//! * [`AuthOutcome::Throttled`] is answered
//!   `-ERR [SYS/TEMP] Too many failed authentication attempts, try again later` and
//!   the connection is closed. Not `[AUTH]`: the driver may throttle before checking
//!   the password, so the credentials are not known to be wrong, and `[AUTH]` makes a
//!   client throw away a possibly correct password and prompt the user (RFC 3206 §4);
//!   `[SYS/TEMP]` says "wait and retry", like SMTP's `454 4.7.0`. Not
//!   `[LOGIN-DELAY]`: RFC 2449 §8.1.1 defines it for a user who logged in
//!   *successfully* too recently, so it would confirm the password to an attacker.
//!   Closing stops further guessing on the same connection.
//! * AUTH PLAIN with an authorization identity different from the authentication
//!   identity is refused (`-ERR [AUTH] Authentication failed`) without asking the
//!   driver (no proxy authorization). An empty password fails the same way.
//! * USER is answered `+OK send PASS` whether or not the mailbox exists (RFC 1939 §7
//!   allows `-ERR` for unknown names, which would reveal valid accounts).
//! * PASS takes everything after `PASS ` as the password, spaces included
//!   (RFC 1939 §7).
//! * APOP is not offered (the greeting carries no timestamp): it needs the password
//!   in the clear on the server, and hato stores only argon2id hashes.
//! * NOOP is accepted in both AUTHORIZATION and TRANSACTION; CAPA in both, with the
//!   same list for the same TLS state (RFC 2449 §5). Numbers (message numbers, TOP
//!   line counts) are `1*DIGIT` without leading zeros; a TOP line count too large to
//!   represent means "all lines".
//! * [`Session::timeout`] sends nothing (RFC 1939 §3: the server "should close the
//!   TCP connection without ... sending any response"); [`Session::shutdown`] sends
//!   `-ERR [SYS/TEMP] <hostname> POP3 server shutting down` so the client knows to
//!   come back later.
//!
//! # Layout
//!
//! This file holds the [`Session`] and its driver interface (the result calls, the
//! protocol state); the rest is in `session/`:
//!
//! | file | contains |
//! |---|---|
//! | `types.rs` | the public types: [`Config`], [`MessageInfo`], [`Action`], the error results, [`State`], [`SessionStats`], the limits |
//! | `input.rs` | the input buffer: lines, RFC 2449 §4 line limits, discarding over-long lines |
//! | `command.rs` | command line syntax (RFC 1939 §3, RFC 2449 §3): keywords, arguments, numbers |
//! | `dispatch.rs` | command dispatch by state; CAPA (RFC 2449 §5), NOOP, QUIT (RFC 1939 §4, §6) |
//! | `authorization.rs` | USER/PASS (RFC 1939 §7), AUTH (RFC 5034, RFC 4616 PLAIN), STLS (RFC 2595 §4) |
//! | `transaction.rs` | STAT, LIST, RETR, DELE, RSET (RFC 1939 §5), TOP, UIDL (§7) |
//! | `maildrop.rs` | the open maildrop: listing, deletion marks, unique-id checks (RFC 1939 §7) |
//! | `reply.rs` | `+OK`/`-ERR`, response codes (RFC 2449 §8, RFC 3206), the error limit |
//! | `tests.rs`, `proptests.rs` | transcript and property tests |
//! | `fuzzing.rs` | the driver the property tests and the fuzz target share (feature `fuzzing`) |

mod authorization;
mod command;
mod dispatch;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod input;
mod maildrop;
#[cfg(test)]
mod proptests;
mod reply;
#[cfg(test)]
mod tests;
mod transaction;
mod types;

use std::fmt;
use std::sync::Arc;

use self::input::Input;
use self::maildrop::{Maildrop, listing_valid};
use self::reply::Code;
pub use self::types::{
    AUTH_LINE_MAX, Action, CommitError, Config, MAX_UID_LEN, MIN_COMMAND_LINE, MaildropError,
    MessageError, MessageInfo, SessionStats, State,
};
use crate::transfer;

/// The verdict on an [`Action::Authenticate`]: [`AuthOutcome::Ok`] continues with
/// [`Action::OpenMaildrop`]; [`AuthOutcome::Failed`] is `-ERR [AUTH]` (the client may try again);
/// [`AuthOutcome::Throttled`] is `-ERR [SYS/TEMP]` then close (see the module documentation).
pub use hato_wire::AuthOutcome;
/// Negotiated TLS parameters.
pub use hato_wire::TlsInfo;
use hato_wire::input::InputBuffer;

/// Protocol state (RFC 1939 §3).
#[derive(Debug)]
enum Phase {
    /// `user`: the name given by USER, waiting for PASS.
    Authorization {
        user: Option<String>,
    },
    Transaction(Maildrop),
    /// Commit pending; `left`: messages that remain after it.
    Update {
        left: usize,
    },
}

/// Result of one processing step.
type Step = hato_wire::step::Step<Action>;

/// What the shared poll loop calls.
const STEPS: hato_wire::step::Parts<Session, Action> = hato_wire::step::Parts {
    step: Session::step,
    closing: |s| s.closing,
    discard_input: |s| s.inbuf.discard(),
    compact: |s| s.inbuf.compact(),
    greet: Session::greet,
    pending: |s| &mut s.pending,
    tls_pending: |s| s.stls_pending,
    close: Action::Close,
    need_input: Action::NeedInput,
    start_tls: Action::StartTls,
};

/// One POP3 server session (one connection).
///
/// The `Debug` output is a state summary: it never shows buffered client bytes
/// (which may hold credentials) or passwords.
pub struct Session {
    config: Arc<Config>,
    tls: Option<TlsInfo>,
    greeted: bool,
    closing: bool,
    stls_pending: bool,
    /// Client bytes not yet processed.
    inbuf: InputBuffer,
    input: Input,
    pending: Option<Action>,
    phase: Phase,
    /// The authenticated user.
    user: Option<String>,
    output: Vec<u8>,
    stats: SessionStats,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("tls", &self.tls)
            .field("state", &self.state())
            .field("user", &self.user)
            .field("input", &self.input)
            .field("buffered", &self.inbuf.pending().len())
            .field("pending", &self.pending)
            .field("stls_pending", &self.stls_pending)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session. `tls = Some(..)` for implicit TLS (RFC 8314, port 995).
    pub fn new(config: Arc<Config>, tls: Option<TlsInfo>) -> Session {
        Session {
            config,
            tls,
            greeted: false,
            closing: false,
            stls_pending: false,
            inbuf: InputBuffer::default(),
            input: Input::Command,
            pending: None,
            phase: Phase::Authorization { user: None },
            user: None,
            output: Vec::new(),
            stats: SessionStats::default(),
        }
    }

    /// Queues the greeting `+OK <hostname> hato POP3 server ready` (RFC 1939 §4; no
    /// APOP timestamp). [`Session::poll`] greets implicitly if it was not called.
    pub fn greet(&mut self) {
        if self.greeted {
            return;
        }
        self.greeted = true;
        if self.closing {
            return;
        }
        let text = format!("{} hato POP3 server ready", self.config.hostname);
        self.ok(&text);
    }

    /// Appends client bytes. Bytes fed while closing or while an STLS handshake is
    /// pending are discarded.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closing || self.stls_pending {
            return;
        }
        self.inbuf.extend(bytes);
    }

    /// Processes buffered input until the driver has to do something.
    pub fn poll(&mut self) -> Action {
        hato_wire::step::poll(self, &STEPS)
    }

    /// Takes the queued response bytes. May be called at any time.
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The TLS handshake after STLS succeeded: the session is in a fresh AUTHORIZATION
    /// state (nothing from before is remembered, RFC 2595 §4; no new greeting). Error
    /// count and statistics are kept.
    pub fn tls_established(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.stls_pending = false;
        self.inbuf.discard();
        self.input = Input::Command;
        self.pending = None;
        self.phase = Phase::Authorization { user: None };
        self.user = None;
    }

    /// Answer to [`Action::Authenticate`].
    pub fn auth_result(&mut self, verdict: AuthOutcome) {
        let Some(Action::Authenticate { username, .. }) = self
            .pending
            .take_if(|p| matches!(p, Action::Authenticate { .. }))
        else {
            return;
        };
        match verdict {
            AuthOutcome::Ok => {
                self.user = Some(username.clone());
                self.pending = Some(Action::OpenMaildrop { username });
            }
            AuthOutcome::Failed => self.auth_failed(),
            AuthOutcome::Throttled => {
                self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
                self.server_err(
                    Some(Code::SysTemp),
                    "Too many failed authentication attempts, try again later",
                );
                self.closing = true;
            }
        }
    }

    /// Answer to [`Action::OpenMaildrop`]: the listing (message `n` is `listing[n-1]`)
    /// → `+OK maildrop locked and ready`, TRANSACTION state. An invalid listing (see
    /// [`MessageInfo::uid`]) is a driver bug: `-ERR [SYS/PERM] ...` and close.
    pub fn maildrop_result(&mut self, r: Result<Vec<MessageInfo>, MaildropError>) {
        if self
            .pending
            .take_if(|p| matches!(p, Action::OpenMaildrop { .. }))
            .is_none()
        {
            return;
        }
        match r {
            Ok(listing) if listing_valid(&listing) => {
                self.phase = Phase::Transaction(Maildrop::new(listing));
                self.ok("maildrop locked and ready");
            }
            Ok(_) => {
                self.server_err(Some(Code::SysPerm), "Maildrop listing is invalid");
                self.closing = true;
            }
            Err(MaildropError::InUse) => {
                self.server_err(Some(Code::InUse), "Maildrop is locked by another session");
                self.closing = true;
            }
            Err(MaildropError::Temporary) => {
                self.user = None;
                self.phase = Phase::Authorization { user: None };
                self.server_err(Some(Code::SysTemp), "Cannot open maildrop, try again later");
            }
        }
    }

    /// Answer to [`Action::Retrieve`] with the whole message (any line endings).
    /// RETR: `+OK <octets> octets`, the message, `.`; TOP: `+OK top of message
    /// follows`, the selected lines, `.` (see [`crate::transfer`]).
    pub fn message_result(&mut self, r: Result<Vec<u8>, MessageError>) {
        let Some(Action::Retrieve { index, top_lines }) = self
            .pending
            .take_if(|p| matches!(p, Action::Retrieve { .. }))
        else {
            return;
        };
        let n = index + 1;
        match r {
            Ok(message) => match top_lines {
                None => {
                    let size = transfer::wire_size(&message);
                    self.ok(&format!("{size} octets"));
                    let sent = transfer::write_message(&mut self.output, &message, None);
                    self.stats.messages_retrieved += 1;
                    self.stats.octets_sent = self.stats.octets_sent.saturating_add(sent);
                }
                Some(lines) => {
                    self.ok("top of message follows");
                    let sent = transfer::write_message(&mut self.output, &message, Some(lines));
                    self.stats.tops += 1;
                    self.stats.octets_sent = self.stats.octets_sent.saturating_add(sent);
                }
            },
            Err(MessageError::Gone) => {
                self.server_err(None, &format!("message {n} no longer exists"));
            }
            Err(MessageError::Temporary) => self.server_err(
                Some(Code::SysTemp),
                &format!("Cannot read message {n}, try again later"),
            ),
        }
    }

    /// Answer to [`Action::Commit`]: `+OK <hostname> POP3 server signing off (n
    /// messages left)` or `-ERR [SYS/TEMP] some deleted messages not removed`; the
    /// session closes either way (RFC 1939 §6).
    pub fn commit_result(&mut self, r: Result<(), CommitError>) {
        let Some(Action::Commit { deleted }) =
            self.pending.take_if(|p| matches!(p, Action::Commit { .. }))
        else {
            return;
        };
        let left = match self.phase {
            Phase::Update { left } => left,
            _ => 0,
        };
        match r {
            Ok(()) => {
                self.stats.messages_deleted += deleted.len() as u64;
                let rest = match left {
                    0 => "maildrop empty".to_string(),
                    1 => "1 message left".to_string(),
                    n => format!("{n} messages left"),
                };
                let text = format!("{} POP3 server signing off ({rest})", self.config.hostname);
                self.ok(&text);
            }
            Err(CommitError) => {
                self.server_err(Some(Code::SysTemp), "some deleted messages not removed");
            }
        }
        self.closing = true;
    }

    /// The autologout timer fired (RFC 1939 §3): nothing is sent, nothing is deleted;
    /// the next `poll()` returns `Close`.
    pub fn timeout(&mut self) {
        self.close_with(None);
    }

    /// The server is stopping: `-ERR [SYS/TEMP] <hostname> POP3 server shutting down`,
    /// nothing is deleted; the next `poll()` returns `Close`. Call it while waiting for
    /// input, not while the driver works on an action (a pending action is dropped).
    pub fn shutdown(&mut self) {
        let text = format!(
            "-ERR [SYS/TEMP] {} POP3 server shutting down\r\n",
            self.config.hostname
        );
        self.close_with(Some(text));
    }

    fn close_with(&mut self, text: Option<String>) {
        if self.closing {
            return;
        }
        self.greeted = true;
        self.closing = true;
        self.pending = None;
        self.stls_pending = false;
        self.inbuf.discard();
        if let Some(t) = text {
            self.output.extend_from_slice(t.as_bytes());
        }
    }

    /// TLS is active (implicit or after STLS).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TLS parameters, if TLS is active.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The authenticated user: set when [`AuthOutcome::Ok`] is given, kept to the end
    /// of the session, except after [`MaildropError::Temporary`] (back to
    /// AUTHORIZATION, unauthenticated).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The protocol state.
    pub fn state(&self) -> State {
        if self.closing {
            return State::Closed;
        }
        match self.phase {
            Phase::Authorization { .. } => State::Authorization,
            Phase::Transaction(_) => State::Transaction,
            Phase::Update { .. } => State::Update,
        }
    }

    /// Counters for the disconnect log.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }
}
