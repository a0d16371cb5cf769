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

mod command;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use self::command::{Number, Verb};
use crate::transfer;

/// The verdict on an [`Action::Authenticate`]: [`AuthOutcome::Ok`] continues with
/// [`Action::OpenMaildrop`]; [`AuthOutcome::Failed`] is `-ERR [AUTH]` (the client may try again);
/// [`AuthOutcome::Throttled`] is `-ERR [SYS/TEMP]` then close (see the module documentation).
pub use hato_wire::AuthOutcome;
/// Negotiated TLS parameters.
pub use hato_wire::TlsInfo;

/// Maximum length of an AUTH command line or SASL response line, including CRLF.
/// RFC 5034 keeps AUTH commands within RFC 2449's 255 octets; this is the SMTP limit
/// (RFC 4954 §4), generous for PLAIN and still bounded.
pub const AUTH_LINE_MAX: usize = 12288;

/// The smallest effective [`Config::max_command_line`]: RFC 2449 §4 lets clients
/// send command lines of 255 octets including CRLF.
pub const MIN_COMMAND_LINE: usize = 255;

/// Maximum length of a unique-id (RFC 1939 §7, UIDL).
pub const MAX_UID_LEN: usize = 70;

/// Session configuration (shared by all sessions of a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our name: greeting and sign-off.
    pub hostname: String,
    /// STLS is offered on this listener (only before TLS; RFC 2595 §4).
    pub stls: bool,
    /// When this many client errors were answered: `-ERR Too many errors` and close
    /// (0 acts as 1).
    pub max_errors: u32,
    /// Command line limit in octets including CRLF. RFC 2449 §4 caps commands at 255;
    /// the default, 512, is lenient. Values below [`MIN_COMMAND_LINE`] act as 255.
    pub max_command_line: usize,
}

impl Default for Config {
    /// `localhost`, no STLS, 10 errors, 512-octet command lines.
    fn default() -> Config {
        Config {
            hostname: "localhost".to_string(),
            stls: false,
            max_errors: 10,
            max_command_line: 512,
        }
    }
}

/// One message of the maildrop listing given to [`Session::maildrop_result`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageInfo {
    /// Size in octets with CRLF line endings, as LIST and STAT report it (RFC 1939
    /// §5); see [`crate::wire_size`].
    pub size: u64,
    /// The UIDL unique-id: 1 to [`MAX_UID_LEN`] characters in 0x21..=0x7E, unique in
    /// the maildrop, stable across sessions (RFC 1939 §7).
    pub uid: String,
}

/// Why the maildrop could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MaildropError {
    /// Another session holds the lock: `-ERR [IN-USE] ...`, then close (RFC 2449 §8.1.2).
    #[error("maildrop is locked by another session")]
    InUse,
    /// Storage problem: `-ERR [SYS/TEMP] ...`; the session returns to AUTHORIZATION
    /// (unauthenticated) and the client may try again (RFC 1939 §4).
    #[error("maildrop temporarily unavailable")]
    Temporary,
}

/// Why a message could not be read for RETR/TOP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MessageError {
    /// The message no longer exists (removed outside this session):
    /// `-ERR message n no longer exists`.
    #[error("message no longer exists")]
    Gone,
    /// Storage problem: `-ERR [SYS/TEMP] ...`.
    #[error("message temporarily unavailable")]
    Temporary,
}

/// The deletions could not (all) be carried out at QUIT:
/// `-ERR [SYS/TEMP] some deleted messages not removed` (RFC 1939 §6), then close.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, thiserror::Error)]
#[error("some deleted messages were not removed")]
pub struct CommitError;

/// What the driver must do next (see the module documentation).
///
/// The `Debug` output redacts the password of [`Action::Authenticate`].
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Flush [`Session::output`], then read and call [`Session::feed`].
    NeedInput,
    /// Flush output (the `+OK Begin TLS negotiation`), do the TLS handshake, then
    /// call [`Session::tls_established`] (or close the connection if it fails).
    StartTls,
    /// Flush output, release the maildrop lock if one was taken, close the
    /// connection.
    Close,
    /// Verify the credentials (USER/PASS or AUTH PLAIN) and answer with
    /// [`Session::auth_result`].
    Authenticate { username: String, password: String },
    /// Authentication succeeded: lock the user's maildrop, list it and answer with
    /// [`Session::maildrop_result`]. The listing is fixed for the session: message
    /// numbers are positions in it (RFC 1939 §5).
    OpenMaildrop { username: String },
    /// RETR (`top_lines: None`) or TOP (`Some(m)`): flush output, read the message at
    /// `index` (0-based, into the listing) and answer with [`Session::message_result`].
    /// Give the whole message in both cases; the session selects TOP's lines.
    Retrieve {
        index: usize,
        top_lines: Option<usize>,
    },
    /// QUIT in the TRANSACTION state (the UPDATE state, RFC 1939 §6): remove the
    /// messages at these indices (0-based, ascending; possibly none) and answer with
    /// [`Session::commit_result`]. The session closes afterwards.
    Commit { deleted: Vec<usize> },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::NeedInput => f.write_str("NeedInput"),
            Action::StartTls => f.write_str("StartTls"),
            Action::Close => f.write_str("Close"),
            Action::Authenticate { username, .. } => f
                .debug_struct("Authenticate")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Action::OpenMaildrop { username } => f
                .debug_struct("OpenMaildrop")
                .field("username", username)
                .finish(),
            Action::Retrieve { index, top_lines } => f
                .debug_struct("Retrieve")
                .field("index", index)
                .field("top_lines", top_lines)
                .finish(),
            Action::Commit { deleted } => {
                f.debug_struct("Commit").field("deleted", deleted).finish()
            }
        }
    }
}

/// The protocol state (RFC 1939 §3), for logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Before a maildrop is open (including while authentication is decided).
    Authorization,
    /// The maildrop is open.
    Transaction,
    /// QUIT received in TRANSACTION; the commit is pending.
    Update,
    /// The session is over (or ending); the next `poll()` returns `Close`.
    Closed,
}

/// Per-connection counters for the disconnect log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionStats {
    /// RETR commands answered with the message.
    pub messages_retrieved: u64,
    /// TOP commands answered with the message's top.
    pub tops: u64,
    /// Message octets sent by RETR and TOP (CRLF line endings, before stuffing).
    pub octets_sent: u64,
    /// Messages removed by a successful commit.
    pub messages_deleted: u64,
    /// Client errors counted against `max_errors`.
    pub errors: u32,
    /// Failed authentications (including throttled ones).
    pub auth_failures: u32,
}

/// RFC 2449 §8 / RFC 3206 extended response codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    Auth,
    SysTemp,
    SysPerm,
    InUse,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Auth => "AUTH",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
            Code::InUse => "IN-USE",
        }
    }
}

/// The open maildrop: the fixed listing and the deletion marks.
#[derive(Debug)]
struct Maildrop {
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    /// Messages not marked deleted, and their total size.
    visible: usize,
    visible_size: u64,
}

impl Maildrop {
    fn new(messages: Vec<MessageInfo>) -> Maildrop {
        let visible_size = total_size(&messages);
        Maildrop {
            deleted: vec![false; messages.len()],
            visible: messages.len(),
            visible_size,
            messages,
        }
    }

    /// Resolves a message-number argument to an index of a message not deleted.
    fn lookup(&self, arg: &str) -> Result<usize, String> {
        let no_such = || {
            format!(
                "no such message, only {} messages in maildrop",
                self.messages.len()
            )
        };
        match command::number(arg) {
            Number::Invalid => Err("Invalid message number".to_string()),
            Number::Huge => Err(no_such()),
            Number::Value(n) => {
                let index = usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .filter(|&i| i < self.messages.len())
                    .ok_or_else(no_such)?;
                if self.deleted[index] {
                    return Err(format!("message {n} already deleted"));
                }
                Ok(index)
            }
        }
    }

    fn delete(&mut self, index: usize) {
        self.deleted[index] = true;
        self.visible -= 1;
        self.visible_size = self.visible_size.saturating_sub(self.messages[index].size);
    }

    fn undelete_all(&mut self) {
        self.deleted.iter_mut().for_each(|d| *d = false);
        self.visible = self.messages.len();
        self.visible_size = total_size(&self.messages);
    }

    fn deleted_indices(&self) -> Vec<usize> {
        (0..self.messages.len())
            .filter(|&i| self.deleted[i])
            .collect()
    }
}

fn total_size(messages: &[MessageInfo]) -> u64 {
    messages
        .iter()
        .fold(0u64, |acc, m| acc.saturating_add(m.size))
}

/// Checks the listing a driver gave: unique-ids must be valid and unique, or UIDL
/// responses could be malformed or injected.
fn listing_valid(messages: &[MessageInfo]) -> bool {
    let mut seen = HashSet::with_capacity(messages.len());
    messages.iter().all(|m| {
        !m.uid.is_empty()
            && m.uid.len() <= MAX_UID_LEN
            && m.uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
            && seen.insert(m.uid.as_str())
    })
}

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

/// How the next input bytes are interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Input {
    /// Command lines.
    Command,
    /// The SASL PLAIN response line after `AUTH PLAIN` (RFC 5034 §4).
    Sasl,
    /// Discarding the rest of an over-long line.
    Discard,
}

/// Result of one processing step.
enum Step {
    Continue,
    NeedInput,
    StartTls,
    Action(Action),
}

/// Result of extracting one line from the input buffer.
enum Line {
    /// A complete line (without CRLF or LF).
    Complete(Vec<u8>),
    /// No complete line buffered yet.
    Incomplete,
    /// The line exceeds the limit and was consumed completely.
    TooLong,
    /// The line exceeds the limit and is not complete: now discarding.
    Discarding,
}

/// What LIST and UIDL show per message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    Sizes,
    UniqueIds,
}

impl Listing {
    fn syntax(self) -> &'static str {
        match self {
            Listing::Sizes => "Syntax: LIST [msg]",
            Listing::UniqueIds => "Syntax: UIDL [msg]",
        }
    }

    fn field(self, m: &MessageInfo) -> String {
        match self {
            Listing::Sizes => m.size.to_string(),
            Listing::UniqueIds => m.uid.clone(),
        }
    }
}

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
    /// Client bytes not yet processed start at `inbuf[pos]`.
    inbuf: Vec<u8>,
    pos: usize,
    /// Bytes after `pos` already searched for LF.
    scanned: usize,
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
            .field("buffered", &(self.inbuf.len() - self.pos))
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
            inbuf: Vec::new(),
            pos: 0,
            scanned: 0,
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
        self.inbuf.extend_from_slice(bytes);
    }

    /// Processes buffered input until the driver has to do something.
    pub fn poll(&mut self) -> Action {
        if self.closing {
            return Action::Close;
        }
        if !self.greeted {
            self.greet();
        }
        if let Some(a) = &self.pending {
            return a.clone();
        }
        if self.stls_pending {
            return Action::StartTls;
        }
        loop {
            let step = self.step();
            if self.closing {
                self.discard_input();
                return Action::Close;
            }
            match step {
                Step::Continue => {}
                Step::NeedInput => {
                    self.compact();
                    return Action::NeedInput;
                }
                Step::StartTls => return Action::StartTls,
                Step::Action(a) => {
                    self.compact();
                    self.pending = Some(a.clone());
                    return a;
                }
            }
        }
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
        self.discard_input();
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
        self.discard_input();
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

    // ----------------------------------------------------------------------------
    // Responses and errors

    fn ok(&mut self, text: &str) {
        self.output.extend_from_slice(b"+OK");
        if !text.is_empty() {
            self.output.push(b' ');
            self.output.extend_from_slice(text.as_bytes());
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn write_err(&mut self, code: Option<Code>, text: &str) {
        self.output.extend_from_slice(b"-ERR ");
        if let Some(c) = code {
            self.output.push(b'[');
            self.output.extend_from_slice(c.as_str().as_bytes());
            self.output.extend_from_slice(b"] ");
        }
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// A `-ERR` caused by the server side (storage, lock): not a client error.
    fn server_err(&mut self, code: Option<Code>, text: &str) {
        self.write_err(code, text);
    }

    /// A `-ERR` for a client error: counted against `max_errors`.
    fn client_err(&mut self, code: Option<Code>, text: &str) {
        self.write_err(code, text);
        self.stats.errors = self.stats.errors.saturating_add(1);
        if !self.closing && self.stats.errors >= self.config.max_errors.max(1) {
            self.write_err(None, "Too many errors, closing connection");
            self.closing = true;
        }
    }

    /// [`Session::client_err`] without a code, as a step result.
    fn err(&mut self, text: &str) -> Step {
        self.client_err(None, text);
        Step::Continue
    }

    fn auth_failed(&mut self) {
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

    // ----------------------------------------------------------------------------
    // Input buffer

    fn discard_input(&mut self) {
        self.inbuf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 64 * 1024 {
            self.inbuf = Vec::new();
        }
    }

    /// Line limit for the line starting at `pos` (AUTH lines get [`AUTH_LINE_MAX`]).
    fn line_limit(&self) -> usize {
        let base = self.config.max_command_line.max(MIN_COMMAND_LINE);
        let start = &self.inbuf[self.pos..];
        let is_auth = self.input == Input::Sasl || {
            let n = start.len().min(5);
            start[..n].eq_ignore_ascii_case(&b"AUTH "[..n])
        };
        if is_auth {
            base.max(AUTH_LINE_MAX)
        } else {
            base
        }
    }

    /// Extracts the next line (ending in CRLF or LF), enforcing the line limit.
    fn next_line(&mut self) -> Line {
        let limit = self.line_limit();
        let avail = &self.inbuf[self.pos..];
        let from = self.scanned.min(avail.len());
        match avail[from..].iter().position(|&b| b == b'\n') {
            Some(off) => {
                let lf = from + off;
                let total = lf + 1;
                let result = if total > limit {
                    Line::TooLong
                } else {
                    let end = if lf > 0 && avail[lf - 1] == b'\r' {
                        lf - 1
                    } else {
                        lf
                    };
                    Line::Complete(avail[..end].to_vec())
                };
                self.pos += total;
                self.scanned = 0;
                result
            }
            None if avail.len() >= limit => {
                // Cannot become a valid line: drop what we have and discard the rest.
                self.pos += avail.len();
                self.scanned = 0;
                self.input = Input::Discard;
                Line::Discarding
            }
            None => {
                self.scanned = avail.len();
                Line::Incomplete
            }
        }
    }

    fn line_too_long(&mut self) {
        self.client_err(None, "Line too long");
    }

    // ----------------------------------------------------------------------------
    // The state machine

    fn step(&mut self) -> Step {
        match self.input {
            Input::Command | Input::Sasl => {
                let sasl = self.input == Input::Sasl;
                match self.next_line() {
                    Line::Incomplete => Step::NeedInput,
                    Line::Discarding => Step::Continue,
                    Line::TooLong => {
                        // An over-long SASL response abandons the exchange.
                        self.input = Input::Command;
                        self.line_too_long();
                        Step::Continue
                    }
                    Line::Complete(line) if sasl => {
                        self.input = Input::Command;
                        self.sasl_response(&line)
                    }
                    Line::Complete(line) => self.execute(&line),
                }
            }
            Input::Discard => self.step_discard(),
        }
    }

    fn step_discard(&mut self) -> Step {
        let avail = &self.inbuf[self.pos..];
        if avail.is_empty() {
            return Step::NeedInput;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.pos += lf + 1;
                self.input = Input::Command;
                self.line_too_long();
                Step::Continue
            }
            None => {
                self.pos += avail.len();
                Step::NeedInput
            }
        }
    }

    // ----------------------------------------------------------------------------
    // Commands

    fn execute(&mut self, line: &[u8]) -> Step {
        if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return self.err("Invalid character in command");
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return self.err("Invalid UTF-8 in command");
        };
        let (verb, args) = command::split_verb(line);
        let transaction = match self.phase {
            Phase::Authorization { .. } => false,
            Phase::Transaction(_) => true,
            // Nothing is read while the commit is pending; the session closes after it.
            Phase::Update { .. } => return Step::Continue,
        };
        match verb {
            Verb::Capa => self.cmd_capa(args),
            Verb::Noop => self.no_args(args, "NOOP", |s| {
                s.ok("");
                Step::Continue
            }),
            Verb::Quit => self.no_args(args, "QUIT", Session::cmd_quit),
            Verb::Http => {
                self.client_err(None, "This is a POP3 server");
                self.closing = true;
                Step::Continue
            }
            Verb::Unknown => self.err("Unknown command"),
            Verb::Apop => self.err("APOP not supported"),
            Verb::User | Verb::Pass | Verb::Auth | Verb::Stls if transaction => {
                self.err("Command not valid in TRANSACTION state")
            }
            Verb::User => self.cmd_user(args),
            Verb::Pass => self.cmd_pass(args),
            Verb::Auth => self.cmd_auth(args),
            Verb::Stls => self.cmd_stls(args),
            _ if !transaction => self.err("Command not valid in AUTHORIZATION state"),
            Verb::Stat => self.no_args(args, "STAT", Session::cmd_stat),
            Verb::List => self.cmd_list(args),
            Verb::Uidl => self.cmd_uidl(args),
            Verb::Retr => self.cmd_retr(args),
            Verb::Top => self.cmd_top(args),
            Verb::Dele => self.cmd_dele(args),
            Verb::Rset => self.no_args(args, "RSET", Session::cmd_rset),
        }
    }

    /// Runs `f` for a command that takes no arguments, else a syntax error.
    fn no_args(&mut self, args: &str, name: &str, f: fn(&mut Session) -> Step) -> Step {
        if command::arguments(args).is_empty() {
            f(self)
        } else {
            self.err(&format!("Syntax: {name}"))
        }
    }

    /// The open maildrop (TRANSACTION commands are only dispatched with one).
    fn maildrop(&mut self) -> Option<&mut Maildrop> {
        match &mut self.phase {
            Phase::Transaction(md) => Some(md),
            _ => None,
        }
    }

    /// CAPA (RFC 2449 §5, §6; RFC 2595 §4; RFC 3206 §5): the same list in both
    /// states for the same TLS state; USER and SASL only under TLS, STLS only before.
    fn cmd_capa(&mut self, args: &str) -> Step {
        if !command::arguments(args).is_empty() {
            return self.err("Syntax: CAPA");
        }
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if self.tls.is_some() {
            caps.extend(["USER", "SASL PLAIN"]);
        } else if self.config.stls {
            caps.push("STLS");
        }
        caps.push("IMPLEMENTATION hato");
        self.ok("Capability list follows");
        for c in caps {
            self.output.extend_from_slice(c.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
        self.output.extend_from_slice(b".\r\n");
        Step::Continue
    }

    /// QUIT (RFC 1939 §4 in AUTHORIZATION, §6 in TRANSACTION → UPDATE).
    fn cmd_quit(&mut self) -> Step {
        let Phase::Transaction(md) = &self.phase else {
            let text = format!("{} POP3 server signing off", self.config.hostname);
            self.ok(&text);
            self.closing = true;
            return Step::Continue;
        };
        let deleted = md.deleted_indices();
        let left = md.visible;
        self.phase = Phase::Update { left };
        Step::Action(Action::Commit { deleted })
    }

    /// USER (RFC 1939 §7).
    fn cmd_user(&mut self, args: &str) -> Step {
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
    fn cmd_pass(&mut self, args: &str) -> Step {
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
    fn cmd_stls(&mut self, args: &str) -> Step {
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
        self.discard_input();
        self.stls_pending = true;
        Step::StartTls
    }

    /// AUTH (RFC 5034 §4; without arguments: the mechanism list).
    fn cmd_auth(&mut self, args: &str) -> Step {
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
    fn sasl_response(&mut self, response: &[u8]) -> Step {
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
        Step::Action(Action::Authenticate { username, password })
    }

    /// STAT (RFC 1939 §5).
    fn cmd_stat(&mut self) -> Step {
        let Some(md) = self.maildrop() else {
            return Step::Continue;
        };
        let text = format!("{} {}", md.visible, md.visible_size);
        self.ok(&text);
        Step::Continue
    }

    /// Resolves the single message-number argument of LIST/UIDL/RETR/DELE.
    fn one_message(&mut self, args: &str, syntax: &str) -> Option<usize> {
        let parts = command::arguments(args);
        let [arg] = parts.as_slice() else {
            self.client_err(None, syntax);
            return None;
        };
        let md = self.maildrop()?;
        match md.lookup(arg) {
            Ok(index) => Some(index),
            Err(text) => {
                self.client_err(None, &text);
                None
            }
        }
    }

    /// LIST [msg] (RFC 1939 §5).
    fn cmd_list(&mut self, args: &str) -> Step {
        self.listing(args, Listing::Sizes)
    }

    /// UIDL [msg] (RFC 1939 §7).
    fn cmd_uidl(&mut self, args: &str) -> Step {
        self.listing(args, Listing::UniqueIds)
    }

    /// LIST and UIDL: one line for `msg`, or a multi-line listing of every message
    /// not deleted.
    fn listing(&mut self, args: &str, kind: Listing) -> Step {
        if !command::arguments(args).is_empty() {
            let Some(index) = self.one_message(args, kind.syntax()) else {
                return Step::Continue;
            };
            let Some(md) = self.maildrop() else {
                return Step::Continue;
            };
            let text = format!("{} {}", index + 1, kind.field(&md.messages[index]));
            self.ok(&text);
            return Step::Continue;
        }
        let Phase::Transaction(md) = &self.phase else {
            return Step::Continue;
        };
        let header = match kind {
            Listing::Sizes => format!("{} messages ({} octets)", md.visible, md.visible_size),
            Listing::UniqueIds => "unique-id listing follows".to_string(),
        };
        let mut body = Vec::with_capacity(md.visible * 16);
        for (i, m) in md.messages.iter().enumerate() {
            if !md.deleted[i] {
                body.extend_from_slice(format!("{} {}\r\n", i + 1, kind.field(m)).as_bytes());
            }
        }
        body.extend_from_slice(b".\r\n");
        self.ok(&header);
        self.output.extend_from_slice(&body);
        Step::Continue
    }

    /// RETR msg (RFC 1939 §5).
    fn cmd_retr(&mut self, args: &str) -> Step {
        match self.one_message(args, "Syntax: RETR msg") {
            Some(index) => Step::Action(Action::Retrieve {
                index,
                top_lines: None,
            }),
            None => Step::Continue,
        }
    }

    /// TOP msg n (RFC 1939 §7).
    fn cmd_top(&mut self, args: &str) -> Step {
        let parts = command::arguments(args);
        let [msg, lines] = parts.as_slice() else {
            return self.err("Syntax: TOP msg n");
        };
        let top_lines = match command::number(lines) {
            Number::Invalid => return self.err("Invalid line count"),
            Number::Huge => usize::MAX,
            Number::Value(v) => usize::try_from(v).unwrap_or(usize::MAX),
        };
        let Some(md) = self.maildrop() else {
            return Step::Continue;
        };
        match md.lookup(msg) {
            Ok(index) => Step::Action(Action::Retrieve {
                index,
                top_lines: Some(top_lines),
            }),
            Err(text) => self.err(&text),
        }
    }

    /// DELE msg (RFC 1939 §5): marks the message; only QUIT removes it.
    fn cmd_dele(&mut self, args: &str) -> Step {
        let Some(index) = self.one_message(args, "Syntax: DELE msg") else {
            return Step::Continue;
        };
        if let Some(md) = self.maildrop() {
            md.delete(index);
        }
        self.ok(&format!("message {} deleted", index + 1));
        Step::Continue
    }

    /// RSET (RFC 1939 §5): unmarks every deleted message.
    fn cmd_rset(&mut self) -> Step {
        let Some(md) = self.maildrop() else {
            return Step::Continue;
        };
        md.undelete_all();
        let text = format!(
            "maildrop has {} messages ({} octets)",
            md.visible, md.visible_size
        );
        self.ok(&text);
        Step::Continue
    }

    /// Bytes currently buffered from the client (tests: bounded-memory checks).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.inbuf.len()
    }
}
