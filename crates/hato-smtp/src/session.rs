//! The sans-IO SMTP server session.
//!
//! Implements the server side of RFC 5321 (commands §4.1, sequencing §4.1.4/§4.3,
//! replies §4.2, limits §4.5.3, transparency §4.5.2) with the extensions
//! RFC 1869/5321 (EHLO), RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030
//! (CHUNKING/BDAT), RFC 3207 (STARTTLS), RFC 3461 (DSN: §4.1 NOTIFY, §4.2 ORCPT
//! with the RFC 6533 §3 `utf-8` address type, §4.3 RET, §4.4 ENVID), RFC 3463 +
//! RFC 2034 (enhanced status codes), RFC 4954 (AUTH PLAIN/LOGIN, RFC 4616 PLAIN),
//! RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8) and RFC 8689 (REQUIRETLS, §2 and §4.1).
//! Trace information follows RFC 5321 §4.4 and RFC 3848 (see [`Envelope`]);
//! implicit TLS (RFC 8314) is a session created with `tls = Some(..)`.
//!
//! # Driving a session
//!
//! The session never does I/O. A driver loops:
//!
//! ```text
//! session.greet();
//! loop {
//!     match session.poll() {
//!         NeedInput            => { write(session.output()); session.feed(read()) }
//!         StartTls             => { write(session.output()); handshake(); session.tls_established(info) }
//!         Close                => { write(session.output()); close(); break }
//!         Authenticate { .. }  => session.auth_result(verify(..)),
//!         CheckSender { .. }   => session.sender_result(policy(..)),
//!         CheckRecipient { .. }=> session.recipient_result(policy(..)),
//!         Deliver(envelope)    => session.delivery_result(store(envelope)),
//!     }
//! }
//! ```
//!
//! * Replies are queued in [`Session::output`] in command order. While a decision
//!   (Authenticate/CheckSender/CheckRecipient/Deliver) is pending, no further input
//!   is processed, so pipelined replies (RFC 2920) stay in order and a driver that
//!   writes only on `NeedInput`/`StartTls`/`Close` sends a whole pipelined group in
//!   one write.
//! * **Calling `poll()` again while a decision is pending returns the same action
//!   again** (a clone; for `Deliver` this clones the envelope, which the session keeps
//!   until [`Session::delivery_result`]). Likewise `poll()` keeps returning
//!   `StartTls` until [`Session::tls_established`] and `Close` forever once closing.
//! * A result call that does not match the pending action is ignored.
//!
//! # Security properties
//!
//! * **STARTTLS injection** (CVE-2011-0411 class): every byte buffered after the
//!   `STARTTLS` line — and anything fed before the handshake completes — is discarded,
//!   and [`Session::tls_established`] resets the session to a fresh state (no
//!   HELO/EHLO, no transaction, no authentication).
//! * **SMTP smuggling**: only `CRLF "." CRLF` ends DATA (see the `data` module); a
//!   bare CR/LF never ends the data. Command lines must end in CRLF: a command line
//!   ending in a bare LF is answered `521 5.5.2` and the connection is closed, so bytes
//!   after a bare LF are never interpreted as commands by this server, whatever
//!   another hop may make of them. A bare CR inside a command line makes that line a
//!   `500 5.5.2` error (the line is not executed).
//! * **BDAT**: the announced chunk is always consumed (and, on error, skipped without
//!   being buffered), so chunk contents never become commands. A BDAT whose size is
//!   unreadable (so the chunk end is unknown) closes the connection (`521 5.5.4`).
//! * **Bounded memory**: command lines are limited to `max_command_line` octets
//!   (AUTH lines to 12288, RFC 4954 §4); longer lines are discarded as they arrive and
//!   answered `500 5.5.2 Line too long`. DATA/BDAT bodies are stored only up to
//!   `max_message_size`; the rest is counted and discarded.
//! * HTTP requests on the SMTP port (cross-protocol attacks) are answered
//!   `521 5.5.1` and the connection is closed.
//! * Error limit: each 5xx reply counts as an error; when the count reaches
//!   `max_errors` the session sends `421 4.7.0 <hostname> Too many errors` and closes.
//!
//! # Reply choices
//!
//! * Replies carry enhanced status codes (RFC 2034) on every line, except the
//!   greeting, the HELO/EHLO replies (RFC 2034 §3 exempts them; EHLO lines are
//!   keywords) and the 334/354 intermediate replies (no status class exists for 3xx).
//! * An over-long line in DATA is answered at the end of the data with
//!   `500 5.5.2 Line too long`; the size limit with `552 5.3.4`; bare line endings
//!   (policy `Reject`) with `554 5.5.0`. If several apply, that order decides.
//! * `<Postmaster>` (no domain, RFC 5321 §4.1.1.3) is passed to the policy layer as
//!   `Postmaster@<config.hostname>`.
//! * DSN (RFC 3461) is always advertised (the outbound side relays the parameters);
//!   `RET`, `ENVID`, `NOTIFY` and `ORCPT` land on the [`Envelope`] (`ret`, `envid`,
//!   `rcpt_dsn`), decoded. A malformed value (unknown keyword, bad xtext, not
//!   printable, over the RFC 3461 length — 100 characters for `ENVID`, 500 for
//!   `ORCPT`, counted as sent — `NOTIFY=NEVER` combined with other values, an
//!   `ORCPT` address type other than `rfc822`/`utf-8`, a missing value) is answered
//!   `501 5.5.4 Invalid <PARAMETER> parameter: <why>`; a parameter given twice
//!   `501 5.5.4 Duplicate parameter <PARAMETER>` (RFC 5321 §4.1.1.11 style).
//! * REQUIRETLS (RFC 8689) is advertised only under TLS (§2), on both listener
//!   kinds (it is valid for relay and submission); `MAIL ... REQUIRETLS` without TLS
//!   is answered `530 5.7.10` ("Encryption Needed"), with a value `501 5.5.4`.
//! * Unknown MAIL/RCPT parameters are answered `555 5.5.4`; MAIL or RCPT parameters
//!   after HELO (not EHLO) too.
//! * MAIL and RCPT command lines may exceed `max_command_line` by the increments the
//!   extensions define ([`MAIL_LINE_EXTRA`], [`RCPT_LINE_EXTRA`]).
//! * An address containing UTF-8 needs `SMTPUTF8` on the MAIL command, else
//!   `553 5.6.7` (RFC 6531 §3.4, RFC 6533).
//! * AUTH PLAIN with an authorization identity different from the authentication
//!   identity is refused (`535 5.7.8`) without asking the policy layer (no proxy
//!   authorization); `authzid` in [`Action::Authenticate`] is therefore `None` or
//!   equal to `username`.
//! * A duplicate RCPT (same [`Address::normalized`]) is answered `250 2.1.5` without
//!   asking the policy layer again and is not added twice.
//!
//! # Source layout
//!
//! | file | contents |
//! |---|---|
//! | `session.rs` | this overview; [`Action`], [`SessionStats`], the session state and the driver API ([`Session::new`], [`Session::greet`], [`Session::feed`], [`Session::poll`], [`Session::output`], accessors, [`Session::timeout`], [`Session::shutdown`]); queuing replies and the error limit |
//! | `session/config.rs` | [`Config`], [`Mode`], [`BareLinePolicy`], [`Peer`] |
//! | `session/input.rs` | the input buffer, command-line framing and limits (bare LF, over-long lines), the step dispatcher and the verb table (NOOP, QUIT, VRFY, EXPN, HELP, HTTP answered inline) |
//! | `session/hello.rs` | EHLO/HELO and the capability list, RSET, STARTTLS and the reset after the handshake ([`Session::tls_established`]) |
//! | `session/auth.rs` | AUTH PLAIN/LOGIN exchanges and [`Session::auth_result`] |
//! | `session/mail.rs` | MAIL FROM and RCPT TO with their parameters, [`Session::sender_result`], [`Session::recipient_result`] |
//! | `session/body.rs` | DATA and BDAT: receiving the message, handing over the [`Envelope`], [`Session::delivery_result`] |
//! | `session/command.rs` | command-line parsing (verbs, paths, parameters, BDAT arguments) |
//! | `session/data.rs` | the DATA byte-level receiver (end of data, dot transparency, bare line endings, limits) |
//! | `session/envelope.rs` | [`Envelope`] and the `Received:` trace field |
//! | `session/fuzzing.rs` | the driver the property tests and the fuzz target share (feature `fuzzing`) |

mod auth;
mod body;
mod command;
mod config;
mod data;
mod envelope;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod hello;
mod input;
mod mail;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use self::data::DataReceiver;
use crate::address::Address;
use crate::dsn::{DsnRet, RcptDsn};
use crate::reply::Reply;

/// The verdict on an [`Action::Authenticate`]: `235 2.7.0` for [`AuthOutcome::Ok`], `535 5.7.8` for
/// [`AuthOutcome::Failed`], `454 4.7.0` then close for [`AuthOutcome::Throttled`].
pub use hato_wire::AuthOutcome;
/// Negotiated TLS parameters.
pub use hato_wire::TlsInfo;
use hato_wire::input::InputBuffer;

pub use self::config::{BareLinePolicy, Config, Mode, Peer};
pub use self::envelope::Envelope;

/// Maximum length of an AUTH command line or SASL response line, including CRLF
/// (RFC 4954 §4).
pub const AUTH_LINE_MAX: usize = 12288;

/// Octets a `MAIL` command line may have beyond `max_command_line` (RFC 5321
/// §4.5.3.1.4: extensions raise the limit): 26 for SIZE (RFC 1870), 110 for RET and
/// ENVID (RFC 3461 §4), 11 for REQUIRETLS (RFC 8689 §2), 500 for AUTH= (RFC 4954 §5).
pub const MAIL_LINE_EXTRA: usize = 26 + 110 + 11 + 500;

/// Octets a `RCPT` command line may have beyond `max_command_line`: 500 for NOTIFY
/// and ORCPT (RFC 3461 §4).
pub const RCPT_LINE_EXTRA: usize = 500;

/// What the driver must do next (see the module documentation).
///
/// The `Debug` output redacts the password of [`Action::Authenticate`] (a [`hato_wire::Password`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Flush [`Session::output`], then read and call [`Session::feed`].
    NeedInput,
    /// Flush output (the `220`), do the TLS handshake, then call
    /// [`Session::tls_established`].
    StartTls,
    /// Flush output and close the connection.
    Close,
    /// Verify credentials and answer with [`Session::auth_result`].
    Authenticate {
        authzid: Option<String>,
        username: String,
        password: hato_wire::Password,
    },
    /// MAIL FROM passed syntax/size/sequence checks: answer [`Session::sender_result`].
    CheckSender { address: Option<Address> },
    /// RCPT TO passed syntax/limit/sequence checks: answer [`Session::recipient_result`].
    CheckRecipient { address: Address },
    /// End of data: store the message and answer [`Session::delivery_result`].
    Deliver(Box<Envelope>),
}

/// Per-connection counters for the disconnect log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionStats {
    /// Messages for which `delivery_result(Ok(..))` was given.
    pub messages_accepted: u64,
    /// Messages refused at the end of data (by the session or the delivery layer).
    pub messages_rejected: u64,
    /// 5xx replies sent.
    pub errors: u32,
    /// Failed AUTH attempts (535).
    pub auth_failures: u32,
}

/// Parameters of an accepted (or pending) MAIL command.
#[derive(Clone, Debug, Default)]
struct MailParams {
    smtputf8: bool,
    body_8bitmime: bool,
    ret: Option<DsnRet>,
    envid: Option<String>,
    requiretls: bool,
}

#[derive(Debug)]
struct Transaction {
    sender: Option<Address>,
    params: MailParams,
    recipients: Vec<Address>,
    /// DSN parameters of `recipients[i]`; always as long as `recipients`.
    rcpt_dsn: Vec<RcptDsn>,
    /// BDAT chunks received so far.
    chunks: data::Chunks,
    /// BDAT was used: DATA and RCPT are no longer allowed.
    chunking: bool,
    /// RCPT commands in this transaction, whatever their answer.
    rcpt_commands: usize,
}

/// SASL exchange in progress.
#[derive(Debug)]
enum AuthStep {
    Plain,
    LoginUser,
    LoginPass { username: String },
}

/// How the next input bytes are interpreted.
#[derive(Debug)]
enum Input {
    /// Command lines.
    Command,
    /// SASL response lines.
    Auth(AuthStep),
    /// Discarding the rest of an over-long line. `prev_cr`: last discarded byte was CR.
    Discard { prev_cr: bool },
    /// DATA contents.
    Data(Box<DataReceiver>),
    /// BDAT chunk contents being stored.
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
    },
    /// BDAT chunk contents being skipped; `reply` is sent after the chunk.
    BdatSkip { remaining: u64, reply: Reply },
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
    tls_pending: |s| s.starttls_pending,
    close: Action::Close,
    need_input: Action::NeedInput,
    start_tls: Action::StartTls,
};

/// Result of extracting one line from the input buffer.
enum Line {
    /// A complete CRLF-terminated line (without the CRLF).
    Complete(Vec<u8>),
    /// No complete line buffered yet.
    Incomplete,
    /// The line exceeds the limit and was consumed completely.
    TooLong,
    /// The line exceeds the limit and is not complete: now discarding.
    Discarding,
    /// The line ends in a bare LF.
    BareLf,
}

/// One SMTP server session (one connection).
///
/// The `Debug` output is a state summary: it never shows buffered client bytes
/// (which may hold credentials) or passwords.
pub struct Session {
    config: Arc<Config>,
    peer: Peer,
    tls: Option<TlsInfo>,
    greeted: bool,
    early_talker: bool,
    closing: bool,
    starttls_pending: bool,
    /// Client bytes not yet processed.
    inbuf: InputBuffer,
    input: Input,
    pending: Option<Action>,
    pending_mail: Option<MailParams>,
    /// DSN parameters of the RCPT awaiting [`Session::recipient_result`].
    pending_rcpt: Option<RcptDsn>,
    output: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    txn: Option<Transaction>,
    stats: SessionStats,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = match &self.input {
            Input::Command => "command",
            Input::Auth(_) => "auth",
            Input::Discard { .. } => "discard",
            Input::Data(_) => "data",
            Input::Bdat { .. } => "bdat",
            Input::BdatSkip { .. } => "bdat-skip",
        };
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("helo", &self.helo)
            .field("esmtp", &self.esmtp)
            .field("auth_user", &self.auth_user)
            .field("input", &input)
            .field("buffered", &self.inbuf.pending().len())
            .field("in_transaction", &self.txn.is_some())
            .field("pending", &self.pending)
            .field("starttls_pending", &self.starttls_pending)
            .field("closing", &self.closing)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session. `tls = Some(..)` for implicit TLS (RFC 8314).
    pub fn new(config: Arc<Config>, peer: Peer, tls: Option<TlsInfo>) -> Session {
        Session {
            config,
            peer,
            tls,
            greeted: false,
            early_talker: false,
            closing: false,
            starttls_pending: false,
            inbuf: InputBuffer::default(),
            input: Input::Command,
            pending: None,
            pending_mail: None,
            pending_rcpt: None,
            output: Vec::new(),
            helo: None,
            esmtp: false,
            auth_user: None,
            txn: None,
            stats: SessionStats::default(),
        }
    }

    /// Queues the `220 <hostname> ESMTP hato` greeting. The driver may delay it to
    /// catch early talkers; [`Session::poll`] greets implicitly if it was not called.
    pub fn greet(&mut self) {
        if self.greeted {
            return;
        }
        self.greeted = true;
        if self.early_talker || self.closing {
            return;
        }
        let r = Reply::without_status(220, format!("{} ESMTP hato", self.config.hostname));
        self.output.extend_from_slice(&r.to_bytes());
    }

    /// Appends client bytes. Bytes fed while closing or while a STARTTLS handshake
    /// is pending are discarded. With `reject_early_talkers`, bytes fed before
    /// [`Session::greet`] make the next `poll()` reply `554 5.5.1` and close.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closing || self.starttls_pending || self.early_talker {
            return;
        }
        if !self.greeted && self.config.reject_early_talkers && !bytes.is_empty() {
            self.early_talker = true;
            self.inbuf.discard();
            return;
        }
        self.inbuf.extend(bytes);
    }

    /// Processes buffered input until the driver has to do something.
    pub fn poll(&mut self) -> Action {
        if self.early_talker && !self.closing {
            let r = Reply::new(
                554,
                (5, 5, 1),
                format!(
                    "{} Error: early talker: client sent data before the greeting",
                    self.config.hostname
                ),
            );
            self.output.extend_from_slice(&r.to_bytes());
            self.stats.errors = self.stats.errors.saturating_add(1);
            self.closing = true;
        }
        hato_wire::step::poll(self, &STEPS)
    }

    /// Takes the queued reply bytes.
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// TLS is active (implicit or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TLS parameters, if TLS is active.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The authenticated user, if AUTH succeeded.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// The HELO/EHLO argument, once given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The remote peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Message octets the session holds in memory (DATA received so far, or the BDAT chunks),
    /// for the driver's budget of memory for messages in transit.
    pub fn data_held(&self) -> usize {
        let data = match &self.input {
            Input::Data(rx) => rx.stored(),
            _ => 0,
        };
        data + self.txn.as_ref().map_or(0, |t| t.chunks.stored())
    }

    /// Moves the message octets held so far out of the session, if there are at least `min`:
    /// their offset in the message and the octets. The driver keeps them (in a spool file) so
    /// memory does not grow with the message; [`Envelope::body`] then holds only what came
    /// after the last of them ([`Envelope::body_offset`]). Refused messages hold nothing.
    pub fn take_data(&mut self, min: usize) -> Option<(u64, Vec<u8>)> {
        if self.data_held() < min.max(1) {
            return None;
        }
        match &mut self.input {
            Input::Data(rx) => Some(rx.take()),
            _ => self.txn.as_mut().map(|t| t.chunks.take()),
        }
    }

    /// The server has no room for the message being received (its memory budget is used up):
    /// what is held is dropped, the rest of the data is read and discarded, and the message is
    /// answered `452 4.3.1` at its end (the client retries later).
    pub fn refuse_data(&mut self) {
        if let Input::Data(rx) = &mut self.input {
            rx.no_room();
        }
        if let Some(t) = &mut self.txn
            && (t.chunking || matches!(self.input, Input::Bdat { .. }))
        {
            t.chunks.no_room();
        }
    }

    /// Receiving message contents (DATA or a BDAT chunk): the driver may use a
    /// longer timeout.
    pub fn in_data(&self) -> bool {
        matches!(
            self.input,
            Input::Data(_) | Input::Bdat { .. } | Input::BdatSkip { .. }
        )
    }

    /// Counters for the disconnect log.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The driver's timer fired: `421 4.4.2 <hostname> Error: timeout exceeded`; the
    /// next `poll()` returns `Close`.
    pub fn timeout(&mut self) {
        self.close_with(Reply::new(
            421,
            (4, 4, 2),
            format!("{} Error: timeout exceeded", self.config.hostname),
        ));
    }

    /// The server is stopping: `421 4.3.2 <hostname> Service shutting down`; the next
    /// `poll()` returns `Close`.
    pub fn shutdown(&mut self) {
        self.close_with(Reply::new(
            421,
            (4, 3, 2),
            format!("{} Service shutting down", self.config.hostname),
        ));
    }

    fn close_with(&mut self, r: Reply) {
        if self.closing {
            return;
        }
        self.greeted = true;
        self.closing = true;
        self.pending = None;
        self.inbuf.discard();
        self.output.extend_from_slice(&r.to_bytes());
    }

    // ----------------------------------------------------------------------------
    // Replies and errors

    /// Queues a reply; 5xx replies count as errors (RFC 5321 §4.1.1 leaves the policy
    /// to the server; this is the classic "hard error limit").
    fn reply(&mut self, r: Reply) {
        self.output.extend_from_slice(&r.to_bytes());
        if r.is_permanent() {
            self.count_error();
        }
    }

    /// One more error; at `max_errors` the session says 421 and closes.
    fn count_error(&mut self) {
        self.stats.errors = self.stats.errors.saturating_add(1);
        if !self.closing && self.stats.errors >= self.config.max_errors.max(1) {
            let bye = Reply::new(
                421,
                (4, 7, 0),
                format!("{} Too many errors", self.config.hostname),
            );
            self.output.extend_from_slice(&bye.to_bytes());
            self.closing = true;
        }
    }

    /// Queues a reply and closes the connection after it.
    fn reply_close(&mut self, r: Reply) {
        self.closing = true;
        self.reply(r);
    }

    fn host(&self) -> &str {
        &self.config.hostname
    }

    fn simple(&mut self, r: Reply) -> Step {
        self.reply(r);
        Step::Continue
    }

    /// `530 5.7.0` if the listener requires TLS and it is not active yet.
    fn tls_required(&self) -> Option<Reply> {
        (self.config.require_tls && self.tls.is_none())
            .then(|| Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first"))
    }
}
