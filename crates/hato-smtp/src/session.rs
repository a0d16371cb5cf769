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

mod command;
mod data;
mod envelope;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use self::command::{BdatError, PathError, Verb};
use self::data::{DataReceiver, DataRejection};
use crate::address::Address;
use crate::dsn::{self, DsnRet, Notify, Orcpt, RcptDsn};
use crate::reply::Reply;

/// The verdict on an [`Action::Authenticate`]: `235 2.7.0` for [`AuthOutcome::Ok`], `535 5.7.8` for
/// [`AuthOutcome::Failed`], `454 4.7.0` then close for [`AuthOutcome::Throttled`].
pub use hato_wire::AuthOutcome;
/// Negotiated TLS parameters.
pub use hato_wire::TlsInfo;

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

/// What kind of listener the session serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Port 25: mail from other servers. AUTH is never offered.
    Mx,
    /// Ports 587/465 (RFC 6409, RFC 8314): authenticated users only; AUTH is offered
    /// over TLS and MAIL requires successful AUTH.
    Submission,
}

/// How bare CR / bare LF inside DATA are handled (they never end the data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BareLinePolicy {
    /// Consume the message to its real end and reject it with `554 5.5.0`.
    Reject,
    /// Store every bare CR or LF as CRLF.
    Normalize,
}

/// Session configuration (shared by all sessions of a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our name: greeting, EHLO reply, 421 replies.
    pub hostname: String,
    pub mode: Mode,
    /// STARTTLS may be offered on this listener (only before TLS).
    pub starttls: bool,
    /// MAIL/RCPT/DATA/BDAT/AUTH before TLS -> `530 5.7.0`.
    pub require_tls: bool,
    /// SIZE advertised; `SIZE=` and actual size -> `552 5.3.4`.
    pub max_message_size: usize,
    /// More recipients -> `452 4.5.3`.
    pub max_recipients: usize,
    /// When this many 5xx replies were sent: `421 4.7.0` and close (0 acts as 1).
    pub max_errors: u32,
    /// Command line limit including CRLF (RFC 5321 §4.5.3.1.4: 512). MAIL and RCPT
    /// lines may be longer by [`MAIL_LINE_EXTRA`] / [`RCPT_LINE_EXTRA`].
    pub max_command_line: usize,
    /// DATA text line limit including CRLF (RFC 5321 §4.5.3.1.6: 1000).
    pub max_text_line: usize,
    pub bare_line_endings: BareLinePolicy,
    /// Bytes received before the greeting: `554 5.5.1` and close.
    pub reject_early_talkers: bool,
}

impl Default for Config {
    /// Safe defaults for an MX listener without TLS configured: 25 MiB messages,
    /// 100 recipients (RFC 5321 §4.5.3.1.8 minimum), 10 errors, RFC line limits,
    /// bare line endings rejected, early talkers rejected.
    fn default() -> Config {
        Config {
            hostname: "localhost".to_string(),
            mode: Mode::Mx,
            starttls: false,
            require_tls: false,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_command_line: 512,
            max_text_line: 1000,
            bare_line_endings: BareLinePolicy::Reject,
            reject_early_talkers: true,
        }
    }
}

/// The remote end of the connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
    /// Verified reverse DNS name, if the driver resolved one.
    pub reverse_name: Option<String>,
}

/// What the driver must do next (see the module documentation).
///
/// The `Debug` output redacts the password of [`Action::Authenticate`].
#[derive(Clone, PartialEq, Eq)]
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
        password: String,
    },
    /// MAIL FROM passed syntax/size/sequence checks: answer [`Session::sender_result`].
    CheckSender { address: Option<Address> },
    /// RCPT TO passed syntax/limit/sequence checks: answer [`Session::recipient_result`].
    CheckRecipient { address: Address },
    /// End of data: store the message and answer [`Session::delivery_result`].
    Deliver(Box<Envelope>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::NeedInput => f.write_str("NeedInput"),
            Action::StartTls => f.write_str("StartTls"),
            Action::Close => f.write_str("Close"),
            Action::Authenticate {
                authzid, username, ..
            } => f
                .debug_struct("Authenticate")
                .field("authzid", authzid)
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Action::CheckSender { address } => f
                .debug_struct("CheckSender")
                .field("address", address)
                .finish(),
            Action::CheckRecipient { address } => f
                .debug_struct("CheckRecipient")
                .field("address", address)
                .finish(),
            Action::Deliver(env) => f.debug_tuple("Deliver").field(env).finish(),
        }
    }
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
    body: Vec<u8>,
    /// BDAT was used: DATA and RCPT are no longer allowed.
    chunking: bool,
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
enum Step {
    Continue,
    NeedInput,
    StartTls,
    Action(Action),
}

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
    /// Client bytes not yet processed start at `inbuf[pos]`.
    inbuf: Vec<u8>,
    pos: usize,
    /// Bytes after `pos` already searched for LF (line modes).
    scanned: usize,
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
            .field("buffered", &(self.inbuf.len() - self.pos))
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
            inbuf: Vec::new(),
            pos: 0,
            scanned: 0,
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
            self.inbuf = Vec::new();
            self.pos = 0;
            return;
        }
        self.inbuf.extend_from_slice(bytes);
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
        if self.closing {
            return Action::Close;
        }
        if !self.greeted {
            self.greet();
        }
        if let Some(a) = &self.pending {
            return a.clone();
        }
        if self.starttls_pending {
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

    /// Takes the queued reply bytes.
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The TLS handshake after STARTTLS succeeded: everything is reset as on a new
    /// connection (no greeting is sent; the client must EHLO again). Error count and
    /// statistics are kept.
    pub fn tls_established(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.starttls_pending = false;
        self.discard_input();
        self.input = Input::Command;
        self.pending = None;
        self.pending_mail = None;
        self.pending_rcpt = None;
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.txn = None;
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

    /// Answer to [`Action::CheckSender`]: `Ok` -> `250 2.1.0 Ok`, `Err(reply)` -> reply.
    pub fn sender_result(&mut self, r: Result<(), Reply>) {
        let Some(Action::CheckSender { address }) = self
            .pending
            .take_if(|p| matches!(p, Action::CheckSender { .. }))
        else {
            return;
        };
        let params = self.pending_mail.take().unwrap_or_default();
        match r {
            Ok(()) => {
                self.txn = Some(Transaction {
                    sender: address,
                    params,
                    recipients: Vec::new(),
                    rcpt_dsn: Vec::new(),
                    body: Vec::new(),
                    chunking: false,
                });
                self.reply(Reply::new(250, (2, 1, 0), "Ok"));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// Answer to [`Action::CheckRecipient`]: `Ok` -> `250 2.1.5 Ok`, `Err(reply)` -> reply.
    pub fn recipient_result(&mut self, r: Result<(), Reply>) {
        let Some(Action::CheckRecipient { address }) = self
            .pending
            .take_if(|p| matches!(p, Action::CheckRecipient { .. }))
        else {
            return;
        };
        let dsn = self.pending_rcpt.take().unwrap_or_default();
        match r {
            Ok(()) => {
                if let Some(txn) = &mut self.txn {
                    txn.recipients.push(address);
                    txn.rcpt_dsn.push(dsn);
                }
                self.reply(Reply::new(250, (2, 1, 5), "Ok"));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// Answer to [`Action::Deliver`]: `Ok(id)` -> `250 2.0.0 Ok: queued as <id>`,
    /// `Err(reply)` -> reply. The transaction is over either way (HELO and AUTH state
    /// are kept).
    pub fn delivery_result(&mut self, r: Result<String, Reply>) {
        if self
            .pending
            .take_if(|p| matches!(p, Action::Deliver(_)))
            .is_none()
        {
            return;
        }
        self.txn = None;
        match r {
            Ok(id) => {
                self.stats.messages_accepted += 1;
                self.reply(Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}")));
            }
            Err(reply) => {
                self.stats.messages_rejected += 1;
                self.reply(reply);
            }
        }
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
        self.discard_input();
        self.output.extend_from_slice(&r.to_bytes());
    }

    // ----------------------------------------------------------------------------
    // Replies and errors

    /// Queues a reply; 5xx replies count as errors (RFC 5321 §4.1.1 leaves the policy
    /// to the server; this is the classic "hard error limit").
    fn reply(&mut self, r: Reply) {
        self.output.extend_from_slice(&r.to_bytes());
        if r.is_permanent() {
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
    }

    /// Queues a reply and closes the connection after it.
    fn reply_close(&mut self, r: Reply) {
        self.closing = true;
        self.reply(r);
    }

    fn auth_failed(&mut self) {
        self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
        self.reply(Reply::new(
            535,
            (5, 7, 8),
            "Authentication credentials invalid",
        ));
    }

    fn host(&self) -> &str {
        &self.config.hostname
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

    /// Line limit for the line starting at `pos`: AUTH lines get RFC 4954's 12288,
    /// MAIL and RCPT lines the extensions' increments ([`MAIL_LINE_EXTRA`],
    /// [`RCPT_LINE_EXTRA`]). (While fewer than 5 octets are buffered the larger limit
    /// applies; it only matters once the line is longer.)
    fn line_limit(&self) -> usize {
        let base = self.config.max_command_line.max(3);
        let start = &self.inbuf[self.pos..];
        let n = start.len().min(5);
        let starts = |verb: &[u8]| start[..n].eq_ignore_ascii_case(&verb[..n]);
        if matches!(self.input, Input::Auth(_)) || starts(b"AUTH ") {
            base.max(AUTH_LINE_MAX)
        } else if starts(b"MAIL ") {
            base.saturating_add(MAIL_LINE_EXTRA)
        } else if starts(b"RCPT ") {
            base.saturating_add(RCPT_LINE_EXTRA)
        } else {
            base
        }
    }

    /// Extracts the next CRLF-terminated line, enforcing the line limit.
    fn next_line(&mut self) -> Line {
        let limit = self.line_limit();
        let avail = &self.inbuf[self.pos..];
        let from = self.scanned.min(avail.len());
        match avail[from..].iter().position(|&b| b == b'\n') {
            Some(off) => {
                let lf = from + off;
                let total = lf + 1;
                let bare = lf == 0 || avail[lf - 1] != b'\r';
                let result = if bare {
                    Line::BareLf
                } else if total > limit {
                    Line::TooLong
                } else {
                    Line::Complete(avail[..lf - 1].to_vec())
                };
                self.pos += total;
                self.scanned = 0;
                result
            }
            None if avail.len() >= limit => {
                // Cannot become a valid line: drop what we have and discard the rest.
                let prev_cr = avail.last() == Some(&b'\r');
                self.pos += avail.len();
                self.scanned = 0;
                self.input = Input::Discard { prev_cr };
                Line::Discarding
            }
            None => {
                self.scanned = avail.len();
                Line::Incomplete
            }
        }
    }

    fn bare_lf(&mut self) {
        self.reply_close(Reply::new(
            521,
            (5, 5, 2),
            format!(
                "{} Error: bare <LF> received, lines must end with <CR><LF>",
                self.host()
            ),
        ));
    }

    fn line_too_long(&mut self) {
        self.reply(Reply::new(500, (5, 5, 2), "Line too long"));
    }

    // ----------------------------------------------------------------------------
    // The state machine

    fn step(&mut self) -> Step {
        match self.input {
            Input::Command => self.step_command(),
            Input::Auth(_) => self.step_auth(),
            Input::Discard { .. } => self.step_discard(),
            Input::Data(_) => self.step_data(),
            Input::Bdat { .. } => self.step_bdat(),
            Input::BdatSkip { .. } => self.step_bdat_skip(),
        }
    }

    fn step_command(&mut self) -> Step {
        match self.next_line() {
            Line::Incomplete => Step::NeedInput,
            Line::Discarding => Step::Continue,
            Line::BareLf => {
                self.bare_lf();
                Step::Continue
            }
            Line::TooLong => {
                self.line_too_long();
                Step::Continue
            }
            Line::Complete(line) => self.execute(&line),
        }
    }

    fn step_discard(&mut self) -> Step {
        let Input::Discard { prev_cr } = self.input else {
            return Step::Continue;
        };
        let avail = &self.inbuf[self.pos..];
        if avail.is_empty() {
            return Step::NeedInput;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let bare = if lf == 0 {
                    !prev_cr
                } else {
                    avail[lf - 1] != b'\r'
                };
                self.pos += lf + 1;
                self.input = Input::Command;
                if bare {
                    self.bare_lf();
                } else {
                    self.line_too_long();
                }
                Step::Continue
            }
            None => {
                let prev_cr = avail.last() == Some(&b'\r');
                self.pos += avail.len();
                self.input = Input::Discard { prev_cr };
                Step::NeedInput
            }
        }
    }

    fn step_data(&mut self) -> Step {
        let Input::Data(rx) = &mut self.input else {
            return Step::Continue;
        };
        let avail = &self.inbuf[self.pos..];
        if avail.is_empty() {
            return Step::NeedInput;
        }
        let (used, done) = rx.push(avail);
        self.pos += used;
        if !done {
            return Step::NeedInput;
        }
        let Input::Data(rx) = std::mem::replace(&mut self.input, Input::Command) else {
            return Step::Continue;
        };
        match rx.finish() {
            Ok(body) => self.deliver(body),
            Err(why) => {
                self.txn = None;
                self.stats.messages_rejected += 1;
                let r = match why {
                    DataRejection::TooBig => Reply::new(
                        552,
                        (5, 3, 4),
                        "Message size exceeds fixed maximum message size",
                    ),
                    DataRejection::BareLineEnding => bare_line_reply(),
                    DataRejection::LineTooLong => Reply::new(
                        500,
                        (5, 5, 2),
                        format!(
                            "Line too long (max {} octets including <CR><LF>)",
                            self.config.max_text_line
                        ),
                    ),
                };
                self.reply(r);
                Step::Continue
            }
        }
    }

    fn step_bdat(&mut self) -> Step {
        let Input::Bdat {
            size,
            remaining,
            last,
        } = self.input
        else {
            return Step::Continue;
        };
        let mut remaining = remaining;
        if remaining > 0 {
            let avail = &self.inbuf[self.pos..];
            if avail.is_empty() {
                return Step::NeedInput;
            }
            let n = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(avail.len());
            if let Some(txn) = &mut self.txn {
                txn.body.extend_from_slice(&avail[..n]);
            }
            self.pos += n;
            remaining -= n as u64;
        }
        if remaining > 0 {
            self.input = Input::Bdat {
                size,
                remaining,
                last,
            };
            return Step::NeedInput;
        }
        self.input = Input::Command;
        if last {
            let body = self
                .txn
                .as_mut()
                .map(|t| std::mem::take(&mut t.body))
                .unwrap_or_default();
            // BINARYMIME is not offered, so a chunked message is text like a DATA one: the same
            // line-ending policy applies, and it is stored in canonical CRLF form (so sizes
            // reported later by POP3/IMAP equal the stored length).
            match data::canonical_lines(body, self.config.bare_line_endings) {
                Ok(body) => self.deliver(body),
                Err(DataRejection::BareLineEnding) | Err(_) => {
                    self.txn = None;
                    self.stats.messages_rejected += 1;
                    self.reply(bare_line_reply());
                    Step::Continue
                }
            }
        } else {
            self.reply(Reply::new(
                250,
                (2, 0, 0),
                format!("{size} octets received"),
            ));
            Step::Continue
        }
    }

    fn step_bdat_skip(&mut self) -> Step {
        let Input::BdatSkip { remaining, .. } = &mut self.input else {
            return Step::Continue;
        };
        if *remaining > 0 {
            let avail = self.inbuf.len() - self.pos;
            if avail == 0 {
                return Step::NeedInput;
            }
            let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(avail);
            self.pos += n;
            *remaining -= n as u64;
            if *remaining > 0 {
                return Step::NeedInput;
            }
        }
        let Input::BdatSkip { reply, .. } = std::mem::replace(&mut self.input, Input::Command)
        else {
            return Step::Continue;
        };
        self.reply(reply);
        Step::Continue
    }

    /// Builds the envelope from the transaction (which ends here).
    fn deliver(&mut self, body: Vec<u8>) -> Step {
        let Some(txn) = self.txn.take() else {
            // Cannot happen (DATA/BDAT require a transaction); refuse safely.
            self.reply(Reply::new(503, (5, 5, 1), "No mail transaction"));
            return Step::Continue;
        };
        let env = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            sender: txn.sender,
            recipients: txn.recipients,
            rcpt_dsn: txn.rcpt_dsn,
            ret: txn.params.ret,
            envid: txn.params.envid,
            requiretls: txn.params.requiretls,
            body,
            body_8bitmime: txn.params.body_8bitmime,
            smtputf8: txn.params.smtputf8,
            auth_user: self.auth_user.clone(),
            tls: self.tls.clone(),
            peer: self.peer.clone(),
            esmtp: self.esmtp,
        };
        Step::Action(Action::Deliver(Box::new(env)))
    }

    // ----------------------------------------------------------------------------
    // Commands

    fn execute(&mut self, line: &[u8]) -> Step {
        if let Some(&bad) = line.iter().find(|&&b| b < 0x20 || b == 0x7f) {
            let text = if bad == b'\r' {
                "Bare <CR> not allowed in commands"
            } else {
                "Invalid control character in command"
            };
            self.reply(Reply::new(500, (5, 5, 2), text));
            return Step::Continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            self.reply(Reply::new(500, (5, 5, 2), "Invalid UTF-8 in command"));
            return Step::Continue;
        };
        let (verb, args) = command::split_verb(line);
        match verb {
            Verb::Ehlo => self.cmd_helo(args, true),
            Verb::Helo => self.cmd_helo(args, false),
            Verb::Mail => self.cmd_mail(args),
            Verb::Rcpt => self.cmd_rcpt(args),
            Verb::Data => self.cmd_data(args),
            Verb::Bdat => self.cmd_bdat(args),
            Verb::Rset => self.cmd_rset(args),
            Verb::Noop => self.simple(Reply::new(250, (2, 0, 0), "Ok")),
            Verb::Quit => {
                self.reply_close(Reply::new(221, (2, 0, 0), format!("{} Bye", self.host())));
                Step::Continue
            }
            Verb::Vrfy => self.simple(if args.is_empty() {
                Reply::new(501, (5, 5, 4), "Syntax: VRFY address")
            } else {
                Reply::new(
                    252,
                    (2, 5, 0),
                    "Cannot VRFY user, but will accept message and attempt delivery",
                )
            }),
            Verb::Expn => self.simple(Reply::new(502, (5, 5, 1), "EXPN not available")),
            Verb::Help => self.simple(Reply::new(
                214,
                (2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            Verb::StartTls => self.cmd_starttls(args),
            Verb::Auth => self.cmd_auth(args),
            Verb::Http => {
                let r = Reply::new(
                    521,
                    (5, 5, 1),
                    format!("{} Error: this is an SMTP server, not HTTP", self.host()),
                );
                self.reply_close(r);
                Step::Continue
            }
            Verb::Unknown => self.simple(Reply::new(500, (5, 5, 1), "Command unrecognized")),
        }
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

    /// HELO/EHLO (RFC 5321 §4.1.1.1). Resets any transaction (§4.1.4).
    fn cmd_helo(&mut self, args: &str, esmtp: bool) -> Step {
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

    /// MAIL FROM (RFC 5321 §4.1.1.2, RFC 1870, RFC 6152, RFC 6531, RFC 4954 §5,
    /// RFC 3461 §4.3/§4.4, RFC 8689 §4.1).
    fn cmd_mail(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        if self.helo.is_none() {
            return self.simple(Reply::new(503, (5, 5, 1), "Send HELO/EHLO first"));
        }
        if self.config.mode == Mode::Submission && self.auth_user.is_none() {
            return self.simple(Reply::new(530, (5, 7, 0), "Authentication required"));
        }
        if self.txn.is_some() {
            return self.simple(Reply::new(503, (5, 5, 1), "Nested MAIL command"));
        }
        let arg = match command::parse_path_arg(args, "FROM:") {
            Ok(a) => a,
            Err(PathError::Syntax) => {
                return self.simple(Reply::new(501, (5, 5, 4), "Syntax: MAIL FROM:<address>"));
            }
            Err(PathError::Path) => {
                return self.simple(Reply::new(501, (5, 1, 7), "Bad sender address syntax"));
            }
            Err(PathError::Params) => {
                return self.simple(Reply::new(501, (5, 5, 4), "Invalid parameter syntax"));
            }
        };
        let sender = match command::parse_reverse_path(arg.inner) {
            Ok(s) => s,
            Err(e) => {
                return self.simple(Reply::new(
                    501,
                    (5, 1, 7),
                    format!("Bad sender address syntax: {e}"),
                ));
            }
        };
        if !self.esmtp && !arg.params.is_empty() {
            return self.simple(Reply::new(555, (5, 5, 4), "MAIL parameters require EHLO"));
        }
        let mut params = MailParams::default();
        let mut seen: Vec<String> = Vec::new();
        for p in &arg.params {
            let key = p.keyword.to_ascii_uppercase();
            if seen.contains(&key) {
                return self.simple(Reply::new(
                    501,
                    (5, 5, 4),
                    format!("Duplicate parameter {key}"),
                ));
            }
            seen.push(key.clone());
            match (key.as_str(), p.value) {
                ("SIZE", Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    let too_big = v.len() > 19
                        || v.parse::<u64>()
                            .map_or(true, |n| n > self.config.max_message_size as u64);
                    if too_big {
                        return self.simple(Reply::new(
                            552,
                            (5, 3, 4),
                            "Message size exceeds fixed maximum message size",
                        ));
                    }
                }
                ("SIZE", _) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "Invalid SIZE parameter"));
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => params.body_8bitmime = false,
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                    params.body_8bitmime = true
                }
                ("BODY", Some(v)) if v.eq_ignore_ascii_case("BINARYMIME") => {
                    return self.simple(Reply::new(
                        555,
                        (5, 5, 4),
                        "BODY=BINARYMIME not supported",
                    ));
                }
                ("BODY", _) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "Invalid BODY parameter"));
                }
                ("SMTPUTF8", None) => params.smtputf8 = true,
                ("SMTPUTF8", Some(_)) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "SMTPUTF8 takes no value"));
                }
                // RFC 4954 §5: accepted and ignored (we never trust a client's claim).
                ("AUTH", Some(_)) => {}
                ("AUTH", None) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "Invalid AUTH parameter"));
                }
                ("RET", v) => match dsn::value(v).and_then(DsnRet::parse) {
                    Ok(ret) => params.ret = Some(ret),
                    Err(e) => return self.simple(invalid_param(&key, e)),
                },
                ("ENVID", v) => match dsn::value(v).and_then(dsn::parse_envid) {
                    Ok(envid) => params.envid = Some(envid),
                    Err(e) => return self.simple(invalid_param(&key, e)),
                },
                ("REQUIRETLS", None) if self.tls.is_none() => {
                    return self.simple(Reply::new(
                        530,
                        (5, 7, 10),
                        "REQUIRETLS requires a TLS-protected session",
                    ));
                }
                ("REQUIRETLS", None) => params.requiretls = true,
                ("REQUIRETLS", Some(_)) => {
                    return self.simple(Reply::new(501, (5, 5, 4), "REQUIRETLS takes no value"));
                }
                _ => {
                    return self.simple(Reply::new(
                        555,
                        (5, 5, 4),
                        format!("Unsupported parameter {key}"),
                    ));
                }
            }
        }
        if sender.as_ref().is_some_and(Address::is_utf8) && !params.smtputf8 {
            return self.simple(Reply::new(
                553,
                (5, 6, 7),
                "Non-ASCII address requires SMTPUTF8",
            ));
        }
        self.pending_mail = Some(params);
        Step::Action(Action::CheckSender { address: sender })
    }

    /// RCPT TO (RFC 5321 §4.1.1.3, RFC 3461 §4.1/§4.2).
    fn cmd_rcpt(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        let Some(txn) = &self.txn else {
            return self.simple(Reply::new(503, (5, 5, 1), "Need MAIL command"));
        };
        if txn.chunking {
            return self.simple(Reply::new(503, (5, 5, 1), "RCPT not allowed after BDAT"));
        }
        let smtputf8 = txn.params.smtputf8;
        let count = txn.recipients.len();
        let arg = match command::parse_path_arg(args, "TO:") {
            Ok(a) => a,
            Err(PathError::Syntax) => {
                return self.simple(Reply::new(501, (5, 5, 4), "Syntax: RCPT TO:<address>"));
            }
            Err(PathError::Path) => {
                return self.simple(Reply::new(
                    501,
                    (5, 1, 3),
                    "Bad destination mailbox address syntax",
                ));
            }
            Err(PathError::Params) => {
                return self.simple(Reply::new(501, (5, 5, 4), "Invalid parameter syntax"));
            }
        };
        let address = match command::parse_forward_path(arg.inner, &self.config.hostname) {
            Ok(a) => a,
            Err(e) => {
                return self.simple(Reply::new(
                    501,
                    (5, 1, 3),
                    format!("Bad destination mailbox address syntax: {e}"),
                ));
            }
        };
        if !self.esmtp && !arg.params.is_empty() {
            return self.simple(Reply::new(555, (5, 5, 4), "RCPT parameters require EHLO"));
        }
        let mut dsn = RcptDsn::default();
        let mut seen: Vec<String> = Vec::new();
        for p in &arg.params {
            let key = p.keyword.to_ascii_uppercase();
            if seen.contains(&key) {
                return self.simple(Reply::new(
                    501,
                    (5, 5, 4),
                    format!("Duplicate parameter {key}"),
                ));
            }
            let parsed = match key.as_str() {
                "NOTIFY" => dsn::value(p.value)
                    .and_then(Notify::parse)
                    .map(|n| dsn.notify = Some(n)),
                "ORCPT" => dsn::value(p.value)
                    .and_then(Orcpt::parse)
                    .map(|o| dsn.orcpt = Some(o)),
                _ => {
                    return self.simple(Reply::new(
                        555,
                        (5, 5, 4),
                        format!("Unsupported parameter {key}"),
                    ));
                }
            };
            if let Err(e) = parsed {
                return self.simple(invalid_param(&key, e));
            }
            seen.push(key);
        }
        if address.is_utf8() && !smtputf8 {
            return self.simple(Reply::new(
                553,
                (5, 6, 7),
                "Non-ASCII address requires SMTPUTF8",
            ));
        }
        let norm = address.normalized();
        if self
            .txn
            .as_ref()
            .is_some_and(|t| t.recipients.iter().any(|r| r.normalized() == norm))
        {
            return self.simple(Reply::new(250, (2, 1, 5), "Ok"));
        }
        if count >= self.config.max_recipients {
            return self.simple(Reply::new(452, (4, 5, 3), "Too many recipients"));
        }
        self.pending_rcpt = Some(dsn);
        Step::Action(Action::CheckRecipient { address })
    }

    /// DATA (RFC 5321 §4.1.1.4).
    fn cmd_data(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        let Some(txn) = &self.txn else {
            return self.simple(Reply::new(503, (5, 5, 1), "Need MAIL command"));
        };
        if txn.chunking {
            return self.simple(Reply::new(503, (5, 5, 1), "DATA not allowed after BDAT"));
        }
        if !args.is_empty() {
            return self.simple(Reply::new(501, (5, 5, 4), "Syntax: DATA"));
        }
        if txn.recipients.is_empty() {
            return self.simple(Reply::new(554, (5, 5, 1), "No valid recipients"));
        }
        self.output.extend_from_slice(
            &Reply::without_status(354, "End data with <CR><LF>.<CR><LF>").to_bytes(),
        );
        self.input = Input::Data(Box::new(DataReceiver::new(
            self.config.bare_line_endings,
            self.config.max_message_size,
            self.config.max_text_line.max(3),
        )));
        Step::Continue
    }

    /// BDAT (RFC 3030 §2-§4): the chunk is always consumed, even on error.
    fn cmd_bdat(&mut self, args: &str) -> Step {
        let (size, last) = match command::parse_bdat(args) {
            Ok(v) => v,
            Err(BdatError::BadSyntax(n)) => {
                return self.skip_chunk(n, Reply::new(501, (5, 5, 4), "Syntax: BDAT size [LAST]"));
            }
            Err(BdatError::BadSize) => {
                let r = Reply::new(
                    521,
                    (5, 5, 4),
                    format!("{} Error: invalid BDAT chunk size", self.host()),
                );
                self.reply_close(r);
                return Step::Continue;
            }
        };
        if let Some(r) = self.tls_required() {
            return self.skip_chunk(size, r);
        }
        let max = self.config.max_message_size as u64;
        let Some(txn) = &mut self.txn else {
            return self.skip_chunk(size, Reply::new(503, (5, 5, 1), "Need MAIL command"));
        };
        if txn.recipients.is_empty() {
            return self.skip_chunk(size, Reply::new(554, (5, 5, 1), "No valid recipients"));
        }
        if (txn.body.len() as u64).saturating_add(size) > max {
            self.txn = None;
            self.stats.messages_rejected += 1;
            return self.skip_chunk(
                size,
                Reply::new(
                    552,
                    (5, 3, 4),
                    "Message size exceeds fixed maximum message size",
                ),
            );
        }
        txn.chunking = true;
        self.input = Input::Bdat {
            size,
            remaining: size,
            last,
        };
        Step::Continue
    }

    fn skip_chunk(&mut self, remaining: u64, reply: Reply) -> Step {
        self.input = Input::BdatSkip { remaining, reply };
        Step::Continue
    }

    /// RSET (RFC 5321 §4.1.1.5): ends the transaction, keeps HELO and AUTH.
    fn cmd_rset(&mut self, args: &str) -> Step {
        if !args.is_empty() {
            return self.simple(Reply::new(501, (5, 5, 4), "Syntax: RSET"));
        }
        self.txn = None;
        self.simple(Reply::new(250, (2, 0, 0), "Ok"))
    }

    /// STARTTLS (RFC 3207 §4).
    fn cmd_starttls(&mut self, args: &str) -> Step {
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
        self.discard_input();
        self.starttls_pending = true;
        Step::StartTls
    }

    /// AUTH (RFC 4954 §4).
    fn cmd_auth(&mut self, args: &str) -> Step {
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

    fn step_auth(&mut self) -> Step {
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
            password,
        })
    }

    /// Bytes currently buffered (tests: bounded-memory checks).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.inbuf.len()
            + match &self.input {
                Input::Data(rx) => rx.stored(),
                _ => 0,
            }
            + self.txn.as_ref().map_or(0, |t| t.body.len())
    }
}

/// `501 5.5.4 Invalid <KEY> parameter: <why>` (RFC 3461 §4, RFC 5321 §4.1.1.11).
fn invalid_param(key: &str, why: dsn::DsnError) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Invalid {key} parameter: {why}"))
}

/// RFC 5321 2.3.8: the refusal of a message with bare CR or LF (SMTP smuggling defence).
fn bare_line_reply() -> Reply {
    Reply::new(
        554,
        (5, 5, 0),
        "Message contains bare <CR> or <LF> line endings, lines must end with <CR><LF>",
    )
}
