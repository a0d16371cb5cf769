//! The sans-IO IMAP connection state machine.
//!
//! Implements the connection states of RFC 9051 §3 (Not Authenticated → Authenticated ⇄
//! Selected → Logout) and which commands are valid in each (§6.1 any state, §6.2 not
//! authenticated, §6.3 authenticated, §6.4 selected), STARTTLS (§6.2.1), LOGIN (§6.2.3),
//! AUTHENTICATE PLAIN (§6.2.2, RFC 4616) with SASL-IR (RFC 4959), ENABLE (RFC 5161),
//! IDLE (RFC 2177), ID (RFC 2971), NAMESPACE (RFC 2342), the CONDSTORE/QRESYNC enabling
//! rules of RFC 7162 §3.1 and §3.2.3, the synchronising-literal handshake (§4.3), and the
//! protocol side of QUOTA (RFC 9208 §4.1.1–§4.1.3: announced only with
//! [`Config::quota_bytes`], SETQUOTA refused, unknown roots answered; see [`crate::quota`]).
//! Everything that touches a mailbox or the store is handed to the driver as
//! [`Action::Execute`].
//!
//! # Driving a session
//!
//! ```text
//! session.greet();
//! loop {
//!     match session.poll() {
//!         NeedInput           => { write(session.output()); session.feed(read()) }
//!         Idle                => { write(session.output());
//!                                  select! { read => session.feed(bytes),
//!                                            mailbox changed => session.idle_update(untagged) } }
//!         StartTls            => { write(session.output()); handshake(); session.tls_established(info) }
//!         Close               => { write(session.output()); close(); break }
//!         Authenticate { .. } => session.auth_result(verify(..)),
//!         Execute(command)    => session.command_done(run_against_store(command)),
//!     }
//! }
//! ```
//!
//! * Responses are queued in [`Session::output`] in command order. While an action is
//!   pending no further input is processed, so pipelined commands (RFC 9051 §5.5) are
//!   answered in order. **Calling `poll()` again while an action is pending returns the
//!   same action again** (a clone: for an APPEND that copies the message, so don't).
//!   A result call that does not match the pending action is ignored.
//! * Feed input only when `poll()` returns `NeedInput` or `Idle`: the framer's input
//!   buffer is bounded by the driver's read size only.
//! * The session decides states itself: SELECT/EXAMINE answered OK selects the mailbox,
//!   any other answer leaves no mailbox selected (RFC 9051 §6.3.2); CLOSE/UNSELECT
//!   answered OK deselect. The driver keeps its own view of the selected mailbox (UIDs,
//!   sequence numbers: a [`crate::view::SelectedView`]) in step with [`Session::state`].
//!
//! # Security properties
//!
//! * **No password before TLS** (RFC 9051 §6.2.3, RFC 8314): without TLS, CAPABILITY shows
//!   `LOGINDISABLED` and no `AUTH=` mechanism, and LOGIN/AUTHENTICATE are answered
//!   `NO [PRIVACYREQUIRED]` without asking the driver.
//! * **STARTTLS injection** (CVE-2011-0411 class): everything buffered after the STARTTLS
//!   command, and anything fed before the handshake completes, is discarded;
//!   [`Session::tls_established`] starts afresh (capabilities are re-announced on
//!   request, nothing from before is remembered; RFC 9051 §6.2.1).
//! * **Bounded memory**: before authentication the framer runs with
//!   [`Limits::pre_auth`] (8 KiB literals), afterwards with [`Config::limits`]; see
//!   [`crate::framer`]. A synchronising literal is only accepted (`+ Ready for literal
//!   data`) for a command valid in the current state, so no upload starts that would be
//!   refused anyway.
//! * **Error limit**: BAD responses and failed authentications are counted; at
//!   [`Config::max_errors`] the session sends `* BYE Too many errors` and closes.
//! * Credentials never appear in `Debug` output.

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::command::{Command, CommandBody, FetchAttr, SearchKey};
use crate::encode::EncodeOptions;
use crate::framer::{Event, FrameError, Framer, Limits};
use crate::parse::{ParseErrorKind, ParseOptions, parse_raw_command};
use crate::quota;

use crate::response::{Code, Data, NamespaceDesc, Response, StatusKind};
/// The verdict on an [`Action::Authenticate`]: [`AuthOutcome::Ok`] is `tag OK [CAPABILITY ...]`
/// (Authenticated state); [`AuthOutcome::Failed`] is `tag NO [AUTHENTICATIONFAILED]`;
/// [`AuthOutcome::Throttled`] is `tag NO [UNAVAILABLE]`, `* BYE` and close.
pub use hato_wire::AuthOutcome;
/// Negotiated TLS parameters.
pub use hato_wire::TlsInfo;

/// Longest AUTHENTICATE response line, including CRLF (as SMTP, RFC 4954 §4).
pub const AUTH_LINE_MAX: usize = 12288;

/// Longest line accepted while idling (`DONE` and a little slack).
const IDLE_LINE_MAX: usize = 64;

/// Session configuration (shared by all sessions of a listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our name, in the greeting.
    pub hostname: String,
    /// STARTTLS is offered on this listener (only before TLS).
    pub starttls: bool,
    /// Framing limits after authentication; `max_append_literal` is announced as
    /// `APPENDLIMIT=` (RFC 7889).
    pub limits: Limits,
    /// Framing limits before authentication.
    pub pre_auth_limits: Limits,
    /// When this many errors were answered: `* BYE Too many errors` and close (0 acts as 1).
    pub max_errors: u32,
    /// The per-account storage limit in octets (`[limits] quota_bytes`), shared by all
    /// mailboxes of the account under the one quota root [`quota::ROOT`]. `Some`: `QUOTA` and
    /// `QUOTA=RES-STORAGE` are announced and GETQUOTA/GETQUOTAROOT are executed by the
    /// driver (which reads the limit from here). `None`: no limit, the QUOTA extension is
    /// not offered and its commands are answered `BAD` (see [`crate::quota`] for why).
    pub quota_bytes: Option<u64>,
}

impl Default for Config {
    /// `localhost`, no STARTTLS, [`Limits::default`] / [`Limits::pre_auth`], 20 errors, no
    /// quota.
    fn default() -> Config {
        Config {
            hostname: "localhost".to_string(),
            starttls: false,
            limits: Limits::default(),
            pre_auth_limits: Limits::pre_auth(),
            max_errors: 20,
            quota_bytes: None,
        }
    }
}

/// The connection state (RFC 9051 §3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected { mailbox: String, read_only: bool },
    Logout,
}

/// Extensions the client turned on (ENABLE, RFC 5161; CONDSTORE also by a
/// CONDSTORE-enabling command, RFC 7162 §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Enabled {
    pub imap4rev2: bool,
    pub condstore: bool,
    pub qresync: bool,
}

impl Enabled {
    /// Mailbox names and quoted strings in UTF-8 (IMAP4rev2, RFC 9051 §5.1).
    pub fn utf8(self) -> bool {
        self.imap4rev2
    }
}

/// What the driver must do next (see the module documentation).
///
/// The `Debug` output redacts the password of [`Action::Authenticate`] (a [`hato_wire::Password`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Flush [`Session::output`], then read and call [`Session::feed`].
    NeedInput,
    /// IDLE is active: flush output, then wait for input ([`Session::feed`]) *or* a change
    /// of the selected mailbox (report it with [`Session::idle_update`]).
    Idle,
    /// Flush output, do the TLS handshake, then call [`Session::tls_established`] (or close
    /// the connection if it fails).
    StartTls,
    /// Flush output and close the connection.
    Close,
    /// Verify the credentials and answer with [`Session::auth_result`].
    Authenticate {
        username: String,
        password: hato_wire::Password,
    },
    /// Run the command against the store for the authenticated user and answer with
    /// [`Session::command_done`]. The command is valid in the current state, and
    /// state-level rules (read-only mailbox, QRESYNC enabled, ...) are already checked.
    Execute(Command),
}

/// The driver's answer to [`Action::Execute`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Untagged responses, sent before the tagged one.
    pub untagged: Vec<Response>,
    /// `Ok`, `No` or `Bad`.
    pub kind: StatusKind,
    pub code: Option<Code>,
    /// Text of the tagged response; empty: `<COMMAND> completed`.
    pub text: String,
}

impl Outcome {
    pub fn ok(untagged: Vec<Response>) -> Outcome {
        Outcome {
            untagged,
            kind: StatusKind::Ok,
            code: None,
            text: String::new(),
        }
    }

    pub fn no(code: Option<Code>, text: &str) -> Outcome {
        Outcome {
            untagged: Vec::new(),
            kind: StatusKind::No,
            code,
            text: text.to_string(),
        }
    }

    /// `tag NO [OVERQUOTA] Quota exceeded` (RFC 9208 §4.3.1): for an APPEND or COPY that
    /// would take the account over its quota. MOVE stays within the account's one quota
    /// root and does not change its usage, so it is never refused for quota.
    pub fn over_quota() -> Outcome {
        Outcome::no(Some(Code::OverQuota), "Quota exceeded")
    }
}

/// Per-connection counters for the disconnect log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionStats {
    /// Commands parsed successfully.
    pub commands: u64,
    /// Errors counted against `max_errors`.
    pub errors: u32,
    /// Failed authentications (including throttled ones).
    pub auth_failures: u32,
}

/// In which states a command is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Validity {
    Any,
    NotAuthenticated,
    Authenticated,
    Selected,
    Unknown,
}

/// Validity by command name (RFC 9051 §6; the selected state includes the authenticated
/// commands, except ENABLE, which RFC 5161 §3.1 allows only before SELECT).
fn validity(verb: &str) -> Validity {
    match verb {
        "CAPABILITY" | "NOOP" | "LOGOUT" | "ID" => Validity::Any,
        "STARTTLS" | "AUTHENTICATE" | "LOGIN" => Validity::NotAuthenticated,
        "ENABLE" | "SELECT" | "EXAMINE" | "CREATE" | "DELETE" | "RENAME" | "SUBSCRIBE"
        | "UNSUBSCRIBE" | "LIST" | "LSUB" | "NAMESPACE" | "STATUS" | "APPEND" | "IDLE"
        | "GETQUOTA" | "GETQUOTAROOT" | "SETQUOTA" => Validity::Authenticated,
        "CHECK" | "CLOSE" | "UNSELECT" | "EXPUNGE" | "SEARCH" | "FETCH" | "STORE" | "COPY"
        | "MOVE" | "UID" | "SORT" | "THREAD" => Validity::Selected,
        _ => Validity::Unknown,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Commands,
    /// Waiting for the SASL response line of `AUTHENTICATE PLAIN` (no initial response).
    SaslResponse {
        tag: String,
    },
    /// IDLE: waiting for `DONE`.
    Idle {
        tag: String,
    },
}

/// One IMAP server session (one connection).
///
/// The `Debug` output is a state summary: it never shows buffered client bytes (which
/// may hold credentials) or passwords.
pub struct Session {
    config: Arc<Config>,
    tls: Option<TlsInfo>,
    framer: Framer,
    state: State,
    enabled: Enabled,
    user: Option<String>,
    mode: Mode,
    /// The pending action and the tag of the command it belongs to.
    pending: Option<(String, Action)>,
    greeted: bool,
    closing: bool,
    starttls_pending: bool,
    output: Vec<u8>,
    stats: SessionStats,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("tls", &self.tls)
            .field("state", &self.state)
            .field("enabled", &self.enabled)
            .field("user", &self.user)
            .field("mode", &self.mode)
            .field("pending", &self.pending.as_ref().map(|p| &p.1))
            .field("buffered", &self.framer.buffered())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session. `tls = Some(..)` for implicit TLS (RFC 8314, port 993).
    pub fn new(config: Arc<Config>, tls: Option<TlsInfo>) -> Session {
        let framer = Framer::new(config.pre_auth_limits);
        Session {
            config,
            tls,
            framer,
            state: State::NotAuthenticated,
            enabled: Enabled::default(),
            user: None,
            mode: Mode::Commands,
            pending: None,
            greeted: false,
            closing: false,
            starttls_pending: false,
            output: Vec::new(),
            stats: SessionStats::default(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn enabled(&self) -> Enabled {
        self.enabled
    }

    /// The authenticated user.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// How responses must be encoded for this client (the driver encodes nothing itself,
    /// but may want it for sizing).
    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            utf8: self.enabled.utf8(),
        }
    }

    /// The capabilities for the current state (RFC 9051 §7.2.2).
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps = vec!["IMAP4rev2", "IMAP4rev1"];
        let literal = if self.framer.limits().literal_minus {
            "LITERAL-"
        } else {
            "LITERAL+"
        };
        if self.tls.is_none() {
            if self.config.starttls {
                caps.push("STARTTLS");
            }
            caps.extend(["LOGINDISABLED", literal, "ID", "ENABLE"]);
            return caps.into_iter().map(str::to_string).collect();
        }
        if self.state == State::NotAuthenticated {
            caps.extend(["AUTH=PLAIN", "SASL-IR"]);
        }
        caps.extend([
            literal,
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MULTIAPPEND",
            "CATENATE",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "SPECIAL-USE",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "CONDSTORE",
            "QRESYNC",
            "BINARY",
            "STATUS=SIZE",
        ]);
        if self.config.quota_bytes.is_some() {
            caps.extend(quota::CAPABILITIES);
        }
        let mut caps: Vec<String> = caps.into_iter().map(str::to_string).collect();
        caps.push(format!(
            "APPENDLIMIT={}",
            self.config.limits.max_append_literal
        ));
        caps
    }

    /// Queues the greeting `* OK [CAPABILITY ...] <hostname> hato IMAP server ready`.
    /// [`Session::poll`] greets implicitly if it was not called.
    pub fn greet(&mut self) {
        if self.greeted {
            return;
        }
        self.greeted = true;
        if self.closing {
            return;
        }
        let text = format!("{} hato IMAP server ready", self.config.hostname);
        let caps = Code::Capability(self.capabilities());
        self.send(&Response::untagged(StatusKind::Ok, Some(caps), &text));
    }

    /// Appends client bytes. Bytes fed while closing or while a STARTTLS handshake is
    /// pending are discarded.
    /// Octets of client input the session holds (a command being received, with its
    /// literals), for the driver's budget of memory for mail in transit.
    pub fn data_held(&self) -> usize {
        self.framer.held()
    }

    /// How many octets of APPEND message the server has room for now; a larger APPEND
    /// literal is refused with `NO [UNAVAILABLE]` before the client sends it (a
    /// non-synchronising one is skipped unread). `None`: no bound.
    pub fn set_literal_room(&mut self, room: Option<u64>) {
        self.framer.set_room(room);
    }

    /// The octets of the APPEND message being received, once at least `min` are held: (its
    /// literal number in the command, its offset, the octets), for the driver to spool; the
    /// message's [`AppendMessage::taken`](crate::command::AppendMessage::taken) then says
    /// so. See [`Framer::take_literal`].
    pub fn take_literal(&mut self, min: usize) -> Option<(usize, u64, Vec<u8>)> {
        self.framer.take_literal(min)
    }

    /// A command is being received (the driver's spooled pieces belong to it).
    pub fn in_command(&self) -> bool {
        self.framer.in_command()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closing || self.starttls_pending {
            return;
        }
        self.framer.feed(bytes);
    }

    /// Takes the queued response bytes. May be called at any time.
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Processes buffered input until the driver has to do something.
    pub fn poll(&mut self) -> Action {
        if self.closing {
            return Action::Close;
        }
        if !self.greeted {
            self.greet();
        }
        if let Some((_, a)) = &self.pending {
            return a.clone();
        }
        loop {
            if self.starttls_pending {
                return Action::StartTls;
            }
            let Some(event) = self.framer.next_event() else {
                return if matches!(self.mode, Mode::Idle { .. }) {
                    Action::Idle
                } else {
                    Action::NeedInput
                };
            };
            if let Some((tag, action)) = self.event(event) {
                self.pending = Some((tag, action.clone()));
                return action;
            }
            if self.closing {
                self.framer.discard_input();
                return Action::Close;
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded: a fresh Not Authenticated state
    /// (nothing from before is remembered; no new greeting, RFC 9051 §6.2.1). Error count
    /// and statistics are kept.
    pub fn tls_established(&mut self, info: TlsInfo) {
        if !self.starttls_pending {
            return;
        }
        self.tls = Some(info);
        self.starttls_pending = false;
        self.framer = Framer::new(self.config.pre_auth_limits);
        self.state = State::NotAuthenticated;
        self.enabled = Enabled::default();
        self.user = None;
        self.mode = Mode::Commands;
    }

    /// Answer to [`Action::Authenticate`].
    pub fn auth_result(&mut self, verdict: AuthOutcome) {
        let Some((tag, Action::Authenticate { username, .. })) = self
            .pending
            .take_if(|p| matches!(p.1, Action::Authenticate { .. }))
        else {
            return;
        };
        match verdict {
            AuthOutcome::Ok => {
                self.user = Some(username);
                self.state = State::Authenticated;
                self.framer.set_limits(self.config.limits);
                let caps = Code::Capability(self.capabilities());
                self.send(&Response::tagged(
                    &tag,
                    StatusKind::Ok,
                    Some(caps),
                    "Logged in",
                ));
            }
            AuthOutcome::Failed => {
                self.auth_refused(&tag);
            }
            AuthOutcome::Throttled => {
                self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
                self.send(&Response::no(
                    &tag,
                    Some(Code::Unavailable),
                    "Too many failed authentication attempts, try again later",
                ));
                self.close_with("Too many failed authentication attempts");
            }
        }
    }

    /// Answer to [`Action::Execute`]: the untagged responses, then the tagged one. Updates
    /// the state for SELECT/EXAMINE/CLOSE/UNSELECT.
    pub fn command_done(&mut self, outcome: Outcome) {
        let Some((tag, Action::Execute(cmd))) =
            self.pending.take_if(|p| matches!(p.1, Action::Execute(_)))
        else {
            return;
        };
        for r in &outcome.untagged {
            self.send(r);
        }
        let ok = outcome.kind == StatusKind::Ok;
        let name = cmd.body.name();
        match cmd.body {
            CommandBody::Select {
                mailbox, read_only, ..
            } => {
                self.state = if ok {
                    State::Selected { mailbox, read_only }
                } else {
                    State::Authenticated
                };
            }
            CommandBody::Close | CommandBody::Unselect if ok => {
                self.state = State::Authenticated;
            }
            _ => {}
        }
        let text = if outcome.text.is_empty() {
            format!("{name} completed")
        } else {
            outcome.text
        };
        self.send(&Response::tagged(&tag, outcome.kind, outcome.code, &text));
        if outcome.kind == StatusKind::Bad {
            self.count_error();
        }
    }

    /// Untagged responses about the selected mailbox while IDLE is active (EXISTS,
    /// EXPUNGE/VANISHED, FETCH FLAGS). Ignored otherwise.
    pub fn idle_update(&mut self, untagged: Vec<Response>) {
        if matches!(self.mode, Mode::Idle { .. }) && !self.closing {
            for r in &untagged {
                self.send(r);
            }
        }
    }

    /// The connection was idle too long: `* BYE Autologout; idle for too long`, close
    /// (RFC 9051 §5.4).
    pub fn timeout(&mut self) {
        if !self.closing {
            self.close_with("Autologout; idle for too long");
        }
    }

    /// The server shuts down: `* BYE Server shutting down`, close.
    pub fn shutdown(&mut self) {
        if !self.closing {
            self.close_with("Server shutting down");
        }
    }

    // ---- internals ---------------------------------------------------------------------

    fn send(&mut self, r: &Response) {
        let opts = self.encode_options();
        r.encode(&mut self.output, opts);
    }

    fn close_with(&mut self, text: &str) {
        self.send(&Response::bye(text));
        self.closing = true;
        self.state = State::Logout;
        self.pending = None;
    }

    fn count_error(&mut self) {
        self.stats.errors = self.stats.errors.saturating_add(1);
        if self.stats.errors >= self.config.max_errors.max(1) && !self.closing {
            self.close_with("Too many errors");
        }
    }

    /// `tag NO [code] text`, counted as an error.
    fn no(&mut self, tag: &str, code: Code, text: &str) {
        self.send(&Response::no(tag, Some(code), text));
        self.count_error();
    }

    /// `tag BAD text` (`* BAD` without a tag), counted.
    fn bad(&mut self, tag: Option<&str>, code: Option<Code>, text: &str) {
        let r = match tag {
            Some(t) => Response::bad(t, code, text),
            None => Response::untagged(StatusKind::Bad, code, text),
        };
        self.send(&r);
        self.count_error();
    }

    fn valid_in_state(&self, validity: Validity) -> bool {
        match validity {
            Validity::Any => true,
            Validity::NotAuthenticated => self.state == State::NotAuthenticated,
            Validity::Authenticated => {
                matches!(self.state, State::Authenticated | State::Selected { .. })
            }
            Validity::Selected => matches!(self.state, State::Selected { .. }),
            Validity::Unknown => false,
        }
    }

    /// [`validity`], with the commands of extensions this session does not offer unknown.
    fn verb_validity(&self, verb: &str) -> Validity {
        match verb {
            "GETQUOTA" | "GETQUOTAROOT" | "SETQUOTA" if self.config.quota_bytes.is_none() => {
                Validity::Unknown
            }
            _ => validity(verb),
        }
    }

    fn event(&mut self, event: Event) -> Option<(String, Action)> {
        match event {
            Event::Command(raw) => {
                let opts = ParseOptions {
                    utf8: self.enabled.utf8(),
                    max_depth: self.framer.limits().max_depth,
                };
                match parse_raw_command(raw, &opts) {
                    Ok(cmd) => {
                        self.stats.commands += 1;
                        self.command(cmd)
                    }
                    Err(e) if e.kind == ParseErrorKind::MailboxName => {
                        let tag = e.tag.unwrap_or_default();
                        self.send(&Response::no(&tag, Some(Code::Cannot), &e.message));
                        None
                    }
                    Err(e) if e.kind == ParseErrorKind::BadCharset => {
                        let tag = e.tag.unwrap_or_default();
                        let code = Code::BadCharset(vec!["UTF-8".into(), "US-ASCII".into()]);
                        self.send(&Response::no(&tag, Some(code), "Unsupported charset"));
                        None
                    }
                    Err(e) => {
                        self.bad(e.tag.as_deref(), None, &e.message);
                        None
                    }
                }
            }
            Event::SyncLiteral { tag, verb, .. } => {
                if self.valid_in_state(self.verb_validity(&verb)) {
                    self.framer.accept_literal();
                    self.send(&Response::Continue("Ready for literal data".into()));
                } else {
                    self.framer.reject_literal();
                    self.bad(Some(&tag), None, "Command not valid in this state");
                }
                None
            }
            Event::Line(line) => self.line(line),
            Event::Error { tag, error } => {
                match std::mem::replace(&mut self.mode, Mode::Commands) {
                    Mode::SaslResponse { tag } => self.bad(Some(&tag), None, "Line too long"),
                    Mode::Idle { tag } => self.bad(Some(&tag), None, "Expected DONE"),
                    Mode::Commands => self.frame_error(tag.as_deref(), error),
                }
                None
            }
            Event::Fatal { tag, error } => {
                self.frame_error(tag.as_deref(), error);
                if !self.closing {
                    self.close_with("Literal too big, closing connection");
                }
                None
            }
        }
    }

    fn frame_error(&mut self, tag: Option<&str>, error: FrameError) {
        match error {
            // RFC 7889 §4: an APPEND over the limit fails with NO [TOOBIG].
            FrameError::LiteralTooBig { append: true, .. } if tag.is_some() => {
                let tag = tag.unwrap_or_default();
                self.no(tag, Code::TooBig, "Message exceeds the APPENDLIMIT");
            }
            // RFC 5530 §3: a temporary failure; the client retries later.
            FrameError::NoRoom { .. } if tag.is_some() => {
                let tag = tag.unwrap_or_default();
                self.no(
                    tag,
                    Code::Unavailable,
                    "No room for this message now, try again later",
                );
            }
            FrameError::LiteralTooBig { .. } | FrameError::CommandTooLong => {
                self.bad(tag, Some(Code::TooBig), &error.to_string());
            }
            _ => self.bad(tag, None, &error.to_string()),
        }
    }

    fn line(&mut self, line: Vec<u8>) -> Option<(String, Action)> {
        match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::Idle { tag } => {
                if line.eq_ignore_ascii_case(b"DONE") {
                    self.send(&Response::ok(&tag, "IDLE terminated"));
                } else {
                    self.bad(Some(&tag), None, "Expected DONE");
                }
                None
            }
            Mode::SaslResponse { tag } => {
                if line == b"*" {
                    self.bad(Some(&tag), None, "AUTHENTICATE cancelled");
                    return None;
                }
                match BASE64.decode(&line) {
                    Ok(data) => self.plain(tag, &data),
                    Err(_) => {
                        self.bad(Some(&tag), None, "Invalid base64");
                        None
                    }
                }
            }
            // The framer yields lines only when asked to.
            Mode::Commands => None,
        }
    }

    /// An RFC 4616 PLAIN message: `[authzid] NUL authcid NUL passwd`.
    fn plain(&mut self, tag: String, msg: &[u8]) -> Option<(String, Action)> {
        let mut parts = msg.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(passwd), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.bad(Some(&tag), None, "Invalid PLAIN message");
            return None;
        };
        let creds = (std::str::from_utf8(authcid), std::str::from_utf8(passwd));
        match creds {
            (Ok(user), Ok(pass))
                if !user.is_empty()
                    && !pass.is_empty()
                    && (authzid.is_empty() || authzid == authcid) =>
            {
                let action = Action::Authenticate {
                    username: user.to_string(),
                    password: pass.to_string().into(),
                };
                Some((tag, action))
            }
            // No proxy authorization, no empty passwords, UTF-8 only: fail without
            // asking the driver (counted like a wrong password).
            _ => self.auth_refused(&tag),
        }
    }

    fn auth_refused(&mut self, tag: &str) -> Option<(String, Action)> {
        self.stats.auth_failures = self.stats.auth_failures.saturating_add(1);
        self.no(tag, Code::AuthenticationFailed, "Authentication failed");
        None
    }

    fn command(&mut self, cmd: Command) -> Option<(String, Action)> {
        let tag = cmd.tag.clone();
        let name = cmd.body.name();
        let verb = name.split(' ').next().unwrap_or(name);
        let validity = self.verb_validity(verb);
        if !self.valid_in_state(validity) {
            let text = match validity {
                Validity::Selected => "No mailbox selected",
                Validity::NotAuthenticated => "Already authenticated",
                Validity::Unknown => "Command not supported",
                _ => "Not authenticated",
            };
            self.bad(Some(&tag), None, text);
            return None;
        }
        let read_only = matches!(
            self.state,
            State::Selected {
                read_only: true,
                ..
            }
        );
        match &cmd.body {
            CommandBody::Capability => {
                self.send(&Response::Data(Data::Capability(self.capabilities())));
                self.send(&Response::ok(&tag, "CAPABILITY completed"));
                None
            }
            CommandBody::Noop if !matches!(self.state, State::Selected { .. }) => {
                self.send(&Response::ok(&tag, "NOOP completed"));
                None
            }
            CommandBody::Logout => {
                self.send(&Response::bye("Logging out"));
                self.send(&Response::ok(&tag, "LOGOUT completed"));
                self.closing = true;
                self.state = State::Logout;
                None
            }
            CommandBody::Id(_) => {
                self.send(&Response::Data(Data::Id(Some(vec![(
                    "name".to_string(),
                    Some("hato".to_string()),
                )]))));
                self.send(&Response::ok(&tag, "ID completed"));
                None
            }
            CommandBody::StartTls => {
                if self.tls.is_some() || !self.config.starttls {
                    self.bad(Some(&tag), None, "STARTTLS not available");
                    return None;
                }
                self.send(&Response::ok(&tag, "Begin TLS negotiation now"));
                // Nothing the client sent after STARTTLS may be executed.
                self.framer.discard_input();
                self.starttls_pending = true;
                None
            }
            CommandBody::Login { username, password } => {
                if self.tls.is_none() {
                    return self.privacy_required(&tag);
                }
                match std::str::from_utf8(password.expose()) {
                    Ok(p) if !p.is_empty() => Some((
                        tag,
                        Action::Authenticate {
                            username: username.clone(),
                            password: p.to_string().into(),
                        },
                    )),
                    _ => self.auth_refused(&tag),
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if self.tls.is_none() {
                    return self.privacy_required(&tag);
                }
                if mechanism != "PLAIN" {
                    self.no(&tag, Code::Cannot, "Unsupported authentication mechanism");
                    return None;
                }
                match initial_response {
                    Some(ir) => self.plain(tag, ir.expose()),
                    None => {
                        self.send(&Response::ContinueBase64(Vec::new()));
                        self.framer.expect_line(AUTH_LINE_MAX);
                        self.mode = Mode::SaslResponse { tag };
                        None
                    }
                }
            }
            CommandBody::Enable(caps) => {
                if matches!(self.state, State::Selected { .. }) {
                    self.bad(Some(&tag), None, "ENABLE is not allowed after SELECT");
                    return None;
                }
                let newly = self.enable(caps);
                self.send(&Response::Data(Data::Enabled(newly)));
                self.send(&Response::ok(&tag, "ENABLE completed"));
                None
            }
            CommandBody::Namespace => {
                self.send(&Response::Data(Data::Namespace {
                    personal: vec![NamespaceDesc {
                        prefix: String::new(),
                        delimiter: Some('/'),
                    }],
                    other: vec![],
                    shared: vec![],
                }));
                self.send(&Response::ok(&tag, "NAMESPACE completed"));
                None
            }
            // RFC 9208 §4.1.1: "NO - getquota error: no such quota root".
            CommandBody::GetQuota(root) if root != quota::ROOT => {
                self.send(&Response::no(
                    &tag,
                    Some(Code::NonExistent),
                    "No such quota root",
                ));
                None
            }
            // RFC 9208 §4.1.3: QUOTASET is not announced; users may not change their quota.
            CommandBody::SetQuota { .. } => {
                self.send(&Response::no(
                    &tag,
                    Some(Code::NoPerm),
                    "Quotas can only be changed by the administrator",
                ));
                None
            }
            CommandBody::Idle => {
                self.send(&Response::Continue("idling".into()));
                self.framer.expect_line(IDLE_LINE_MAX);
                self.mode = Mode::Idle { tag };
                None
            }
            CommandBody::Select {
                condstore, qresync, ..
            } => {
                if qresync.is_some() && !self.enabled.qresync {
                    self.bad(Some(&tag), None, "QRESYNC is not enabled");
                    return None;
                }
                if *condstore {
                    self.enabled.condstore = true;
                }
                Some((tag, Action::Execute(cmd)))
            }
            CommandBody::Expunge { .. } | CommandBody::Move { .. } if read_only => {
                self.read_only(&tag)
            }
            CommandBody::Store(s) => {
                if read_only {
                    return self.read_only(&tag);
                }
                if s.unchanged_since.is_some() {
                    self.enabled.condstore = true;
                }
                Some((tag, Action::Execute(cmd)))
            }
            CommandBody::Fetch(f) => {
                if f.vanished && !self.enabled.qresync {
                    self.bad(Some(&tag), None, "QRESYNC is not enabled");
                    return None;
                }
                if f.changed_since.is_some() || f.items.contains(&FetchAttr::ModSeq) {
                    self.enabled.condstore = true;
                }
                Some((tag, Action::Execute(cmd)))
            }
            CommandBody::Search(s) => {
                if s.criteria.iter().any(uses_modseq) {
                    self.enabled.condstore = true;
                }
                Some((tag, Action::Execute(cmd)))
            }
            CommandBody::Sort(s) => {
                if s.search.iter().any(uses_modseq) {
                    self.enabled.condstore = true;
                }
                Some((tag, Action::Execute(cmd)))
            }
            CommandBody::Thread(t) => {
                if t.search.iter().any(uses_modseq) {
                    self.enabled.condstore = true;
                }
                Some((tag, Action::Execute(cmd)))
            }
            _ => Some((tag, Action::Execute(cmd))),
        }
    }

    fn privacy_required(&mut self, tag: &str) -> Option<(String, Action)> {
        self.no(
            tag,
            Code::PrivacyRequired,
            "Login is disabled until STARTTLS",
        );
        None
    }

    fn read_only(&mut self, tag: &str) -> Option<(String, Action)> {
        self.send(&Response::no(
            tag,
            Some(Code::ReadOnly),
            "Mailbox is read-only",
        ));
        None
    }

    /// ENABLE: the capabilities newly enabled, as RFC 5161 §3.2 asks.
    fn enable(&mut self, caps: &[String]) -> Vec<String> {
        let mut newly = Vec::new();
        for cap in caps {
            match cap.to_ascii_uppercase().as_str() {
                "CONDSTORE" if !self.enabled.condstore => {
                    self.enabled.condstore = true;
                    newly.push("CONDSTORE".to_string());
                }
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                "QRESYNC" if !self.enabled.qresync => {
                    self.enabled.qresync = true;
                    self.enabled.condstore = true;
                    newly.push("QRESYNC".to_string());
                }
                "IMAP4REV2" if !self.enabled.imap4rev2 => {
                    self.enabled.imap4rev2 = true;
                    newly.push("IMAP4rev2".to_string());
                }
                _ => {}
            }
        }
        newly
    }
}

/// Whether a search uses MODSEQ (a CONDSTORE-enabling command, RFC 7162 §3.1).
fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(keys) => keys.iter().any(uses_modseq),
        _ => false,
    }
}
