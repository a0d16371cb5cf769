//! Transcript tests: `feed -> poll -> output` for every rule of the session.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::fuzzing::tls_info;
use super::*;
use crate::wire_size;

// ------------------------------------------------------------------------------------
// Harness

type AuthFn = Box<dyn FnMut(&str, &str) -> AuthOutcome>;
type MaildropFn = Box<dyn FnMut(&str) -> Result<Vec<MessageInfo>, MaildropError>>;
type MessageFn = Box<dyn FnMut(usize) -> Result<Vec<u8>, MessageError>>;
type CommitFn = Box<dyn FnMut(&[usize]) -> Result<(), CommitError>>;

/// Message 1: canonical, with a line starting with a dot.
const MSG1: &[u8] =
    b"From: bob@example.org\r\nSubject: one\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n";
/// Message 2: bare LF line endings, a lone dot line, no final line end.
const MSG2: &[u8] = b"Subject: two\n\nhello\n.\nworld";
/// Message 3: short.
const MSG3: &[u8] = b"Subject: three\r\n\r\nbody\r\n";

fn store() -> Vec<Vec<u8>> {
    vec![MSG1.to_vec(), MSG2.to_vec(), MSG3.to_vec()]
}

fn listing(messages: &[Vec<u8>]) -> Vec<MessageInfo> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| MessageInfo {
            size: wire_size(m),
            uid: format!("uid-{}", i + 1),
        })
        .collect()
}

fn size(i: usize) -> u64 {
    wire_size(&store()[i])
}

fn total() -> u64 {
    (0..3).map(size).sum()
}

/// A fake driver answering decisions with configurable closures. It takes the output
/// after every poll, so (like the real driver) before answering a Retrieve.
struct Driver {
    s: Session,
    /// Every decision action seen, in order.
    actions: Vec<Action>,
    /// The terminal action of the last `send` (NeedInput/StartTls/Close).
    last: Action,
    auth: AuthFn,
    maildrop: MaildropFn,
    message: MessageFn,
    commit: CommitFn,
}

fn config() -> Config {
    Config {
        hostname: "pop.example".into(),
        ..Config::default()
    }
}

/// [`config`] with `change` made to it.
fn config_with(change: impl FnOnce(&mut Config)) -> Config {
    let mut cfg = config();
    change(&mut cfg);
    cfg
}

fn stls_config() -> Config {
    config_with(|c| c.stls = true)
}

const GREETING: &str = "+OK pop.example hato POP3 server ready\r\n";
const SEND_PASS: &str = "+OK send PASS\r\n";
const LOCKED: &str = "+OK maildrop locked and ready\r\n";
const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed\r\n";

impl Driver {
    /// Implicit TLS (port 995).
    fn tls() -> Driver {
        Driver::with(config(), Some(tls_info()))
    }

    /// Implicit TLS, with `change` made to the configuration.
    fn tls_with(change: impl FnOnce(&mut Config)) -> Driver {
        Driver::with(config_with(change), Some(tls_info()))
    }

    /// Port 110 with STLS offered.
    fn stls() -> Driver {
        Driver::with(stls_config(), None)
    }

    /// Plaintext only (no STLS).
    fn plain() -> Driver {
        Driver::with(config(), None)
    }

    fn with(cfg: Config, tls: Option<TlsInfo>) -> Driver {
        let mut s = Session::new(Arc::new(cfg), tls);
        s.greet();
        assert_eq!(String::from_utf8(s.output()).unwrap(), GREETING);
        Driver {
            s,
            actions: Vec::new(),
            last: Action::NeedInput,
            auth: Box::new(|u, p| match (u, p) {
                ("throttle", _) => AuthOutcome::Throttled,
                ("alice" | "busy" | "temp" | "broken" | "empty", "secret") => AuthOutcome::Ok,
                _ => AuthOutcome::Failed,
            }),
            maildrop: Box::new(|u| match u {
                "busy" => Err(MaildropError::InUse),
                "temp" => Err(MaildropError::Temporary),
                "broken" => Ok(vec![MessageInfo {
                    size: 1,
                    uid: "a b".into(),
                }]),
                "empty" => Ok(Vec::new()),
                _ => Ok(listing(&store())),
            }),
            message: Box::new(|i| Ok(store()[i].clone())),
            commit: Box::new(|_| Ok(())),
        }
    }

    /// Feeds `input`, then polls (answering decisions) until NeedInput/StartTls/Close.
    /// Returns all output produced.
    fn send(&mut self, input: impl AsRef<[u8]>) -> String {
        self.s.feed(input.as_ref());
        self.run()
    }

    /// A transcript: sends each input in turn and checks the output it produces.
    #[track_caller]
    fn converse(&mut self, steps: &[(&str, &str)]) {
        for (input, expected) in steps {
            assert_eq!(self.send(input), *expected, "reply to {input:?}");
        }
    }

    fn run(&mut self) -> String {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let a = self.s.poll();
            out.extend(self.s.output());
            match &a {
                Action::NeedInput | Action::StartTls | Action::Close => {
                    self.last = a;
                    return String::from_utf8(out).expect("test output is UTF-8");
                }
                Action::Authenticate { username, password } => {
                    self.s.auth_result((self.auth)(username, password.expose()));
                }
                Action::OpenMaildrop { username } => {
                    self.s.maildrop_result((self.maildrop)(username));
                }
                Action::Retrieve { index, .. } => self.s.message_result((self.message)(*index)),
                Action::Commit { deleted } => self.s.commit_result((self.commit)(deleted)),
            }
            self.actions.push(a);
        }
        panic!("session did not settle");
    }

    fn stls_handshake(&mut self) {
        assert_eq!(self.send("STLS\r\n"), "+OK Begin TLS negotiation\r\n");
        assert_eq!(self.last, Action::StartTls);
        self.s.tls_established(tls_info());
    }

    /// USER/PASS as alice (TLS must be active).
    fn login(&mut self) {
        assert_eq!(
            self.send("USER alice\r\nPASS secret\r\n"),
            format!("{SEND_PASS}{LOCKED}")
        );
        assert_eq!(self.s.state(), State::Transaction);
    }

    /// PASS is refused: no USER is pending.
    #[track_caller]
    fn assert_no_user_pending(&mut self) {
        assert_eq!(self.send("PASS secret\r\n"), "-ERR Send USER first\r\n");
    }

    fn closed(&self) -> bool {
        self.last == Action::Close
    }

    fn decisions(&self) -> Vec<&'static str> {
        self.actions
            .iter()
            .map(|a| match a {
                Action::Authenticate { .. } => "auth",
                Action::OpenMaildrop { .. } => "open",
                Action::Retrieve { .. } => "retrieve",
                Action::Commit { .. } => "commit",
                _ => "other",
            })
            .collect()
    }
}

fn b64(data: &[u8]) -> String {
    BASE64.encode(data)
}

/// `AUTH PLAIN` with `message` as the initial response.
fn auth_plain(message: &[u8]) -> String {
    format!("AUTH PLAIN {}\r\n", b64(message))
}

/// The decision the session asks for on a login.
fn authenticate(username: &str, password: &str) -> Action {
    Action::Authenticate {
        username: username.into(),
        password: password.into(),
    }
}

/// A logged-in session on implicit TLS.
fn logged_in() -> Driver {
    let mut d = Driver::tls();
    d.login();
    d
}

/// The status lines (`+OK`/`-ERR`) of a transcript without multi-line bodies.
fn statuses(out: &str) -> Vec<&str> {
    out.split("\r\n")
        .filter(|l| l.starts_with("+OK") || l.starts_with("-ERR"))
        .collect()
}

// ------------------------------------------------------------------------------------
// Greeting, basics

#[test]
fn greeting_has_no_apop_timestamp() {
    let mut s = Session::new(Arc::new(config()), None);
    s.greet();
    s.greet(); // idempotent
    let out = String::from_utf8(s.output()).unwrap();
    assert_eq!(out, GREETING);
    assert!(!out.contains('<'));
}

#[test]
fn poll_greets_implicitly() {
    let mut s = Session::new(Arc::new(config()), None);
    s.feed(b"NOOP\r\n");
    assert_eq!(s.poll(), Action::NeedInput);
    assert_eq!(
        String::from_utf8(s.output()).unwrap(),
        format!("{GREETING}+OK\r\n")
    );
}

#[test]
fn quit_in_authorization_closes_without_commit() {
    let mut d = Driver::plain();
    d.converse(&[("QUIT\r\n", "+OK pop.example POP3 server signing off\r\n")]);
    assert!(d.closed());
    assert!(d.actions.is_empty());
    assert_eq!(d.s.state(), State::Closed);
    // Closed for good.
    d.s.feed(b"NOOP\r\n");
    assert_eq!(d.s.poll(), Action::Close);
    assert!(d.s.output().is_empty());
}

#[test]
fn quit_with_arguments_is_an_error() {
    let mut d = Driver::plain();
    d.converse(&[("QUIT now\r\n", "-ERR Syntax: QUIT\r\n")]);
    assert!(!d.closed());
}

#[test]
fn noop_in_both_states() {
    let mut d = Driver::tls();
    d.converse(&[("NOOP\r\n", "+OK\r\n")]);
    d.login();
    d.converse(&[
        ("NOOP\r\n", "+OK\r\n"),
        ("NOOP x\r\n", "-ERR Syntax: NOOP\r\n"),
    ]);
}

#[test]
fn unknown_commands() {
    let mut d = Driver::plain();
    d.converse(&[
        ("XTND XMIT\r\n", "-ERR Unknown command\r\n"),
        ("\r\n", "-ERR Unknown command\r\n"),
        ("LAST\r\n", "-ERR Unknown command\r\n"),
    ]);
    assert_eq!(d.s.stats().errors, 3);
}

#[test]
fn lenient_spellings_are_accepted() {
    for (case, input) in [
        (
            "commands in any case",
            "user alice\r\npAsS secret\r\nstat\r\n",
        ),
        ("bare LF line endings", "USER alice\nPASS secret\nSTAT\n"),
    ] {
        let mut d = Driver::tls();
        assert_eq!(
            d.send(input),
            format!("{SEND_PASS}{LOCKED}+OK 3 {}\r\n", total()),
            "{case}"
        );
    }
}

#[test]
fn apop_is_not_supported() {
    let mut d = Driver::tls();
    d.converse(&[(
        "APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n",
        "-ERR APOP not supported\r\n",
    )]);
    assert!(d.actions.is_empty());
}

#[test]
fn http_closes_the_connection() {
    // A request line, or a header line on its own.
    for http in [
        "POST / HTTP/1.1\r\nHost: x\r\n\r\nUSER a\r\n",
        "Host: pop.example\r\n",
    ] {
        let mut d = Driver::plain();
        d.converse(&[(http, "-ERR This is a POP3 server\r\n")]);
        assert!(d.closed(), "{http:?}");
    }
}

#[test]
fn control_characters_are_refused() {
    let mut d = Driver::tls();
    d.converse(&[
        ("NOOP\rx\r\n", "-ERR Invalid character in command\r\n"),
        ("USER a\0b\r\n", "-ERR Invalid character in command\r\n"),
        ("USER\ta\r\n", "-ERR Invalid character in command\r\n"),
        ("USER a\x7f\r\n", "-ERR Invalid character in command\r\n"),
    ]);
    assert!(d.actions.is_empty());
}

#[test]
fn invalid_utf8_is_refused() {
    let mut d = Driver::tls();
    assert_eq!(
        d.send(b"USER \xff\xfe\r\n"),
        "-ERR Invalid UTF-8 in command\r\n"
    );
}

#[test]
fn utf8_user_names_are_passed_on() {
    let mut d = Driver::tls();
    d.send("USER jörg\r\nPASS pässword\r\n");
    assert_eq!(d.actions, [authenticate("jörg", "pässword")]);
}

#[test]
fn arguments_on_argumentless_commands_are_refused() {
    let mut d = Driver::stls();
    d.converse(&[
        ("CAPA x\r\n", "-ERR Syntax: CAPA\r\n"),
        ("STLS x\r\n", "-ERR Syntax: STLS\r\n"),
    ]);
    let mut d = logged_in();
    d.converse(&[
        ("STAT 1\r\n", "-ERR Syntax: STAT\r\n"),
        ("RSET 1\r\n", "-ERR Syntax: RSET\r\n"),
        // A trailing space is not an argument.
        ("STAT \r\n", &format!("+OK 3 {}\r\n", total())),
    ]);
}

// ------------------------------------------------------------------------------------
// CAPA (RFC 2449 §5, RFC 2595 §4)

const CAPA_COMMON: &str =
    "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";

#[test]
fn capa_offers_login_only_under_tls() {
    let mut after_stls = Driver::stls();
    after_stls.stls_handshake();
    let login = "USER\r\nSASL PLAIN\r\n";
    for (name, mut d, offered) in [
        ("plaintext without STLS", Driver::plain(), ""),
        (
            "implicit TLS, no STLS",
            Driver::with(stls_config(), Some(tls_info())),
            login,
        ),
        ("after STLS", after_stls, login),
    ] {
        assert_eq!(
            d.send("CAPA\r\n"),
            format!("{CAPA_COMMON}{offered}IMPLEMENTATION hato\r\n.\r\n"),
            "{name}"
        );
    }
}

#[test]
fn capa_before_tls_offers_stls_but_no_login() {
    let mut d = Driver::stls();
    let out = d.send("CAPA\r\n");
    assert_eq!(
        out,
        format!("{CAPA_COMMON}STLS\r\nIMPLEMENTATION hato\r\n.\r\n")
    );
    assert!(!out.contains("USER"));
    assert!(!out.contains("SASL"));
}

#[test]
fn capa_in_transaction_matches_authorization() {
    let mut d = Driver::tls();
    let before = d.send("CAPA\r\n");
    d.login();
    d.converse(&[("capa\r\n", &before)]);
}

// ------------------------------------------------------------------------------------
// STLS (RFC 2595 §4)

#[test]
fn stls_upgrades_and_resets() {
    let mut d = Driver::stls();
    assert!(!d.s.is_tls());
    d.stls_handshake();
    assert!(d.s.is_tls());
    assert_eq!(d.s.tls_info(), Some(&tls_info()));
    assert_eq!(d.s.state(), State::Authorization);
    // No new greeting; login works now.
    d.login();
}

#[test]
fn stls_injection_is_impossible() {
    let mut d = Driver::stls();
    let out = d.send("STLS\r\nUSER evil\r\nPASS secret\r\n");
    assert_eq!(out, "+OK Begin TLS negotiation\r\n");
    assert_eq!(d.last, Action::StartTls);
    d.s.tls_established(tls_info());
    // The injected USER was never executed and is not remembered.
    assert_eq!(d.send(""), "");
    d.assert_no_user_pending();
    assert!(d.actions.is_empty());
}

#[test]
fn bytes_fed_during_the_handshake_are_discarded() {
    let mut d = Driver::stls();
    d.converse(&[("STLS\r\n", "+OK Begin TLS negotiation\r\n")]);
    d.s.feed(b"USER alice\r\n");
    // poll keeps asking for the handshake.
    assert_eq!(d.s.poll(), Action::StartTls);
    assert_eq!(d.s.poll(), Action::StartTls);
    d.s.tls_established(tls_info());
    d.assert_no_user_pending();
}

#[test]
fn stls_keeps_error_count_and_stats() {
    let mut d = Driver::with(
        config_with(|c| {
            c.stls = true;
            c.max_errors = 3;
        }),
        None,
    );
    d.send("BOGUS\r\nBOGUS\r\n");
    d.stls_handshake();
    assert_eq!(d.s.stats().errors, 2);
    d.converse(&[(
        "BOGUS\r\n",
        "-ERR Unknown command\r\n-ERR Too many errors, closing connection\r\n",
    )]);
    assert!(d.closed());
}

#[test]
fn stls_not_configured() {
    let mut d = Driver::plain();
    d.converse(&[("STLS\r\n", "-ERR STLS not available\r\n")]);
    assert_eq!(d.last, Action::NeedInput);
}

#[test]
fn stls_under_tls_is_refused() {
    let mut d = Driver::with(stls_config(), Some(tls_info()));
    d.converse(&[("STLS\r\n", "-ERR Command not permitted when TLS active\r\n")]);
    let mut d = Driver::stls();
    d.stls_handshake();
    d.converse(&[("STLS\r\n", "-ERR Command not permitted when TLS active\r\n")]);
}

#[test]
fn stls_in_transaction_is_refused() {
    let mut d = Driver::with(stls_config(), Some(tls_info()));
    d.login();
    d.converse(&[(
        "STLS\r\n",
        "-ERR Command not valid in TRANSACTION state\r\n",
    )]);
}

// ------------------------------------------------------------------------------------
// No authentication before TLS (RFC 2595 §2.1)

#[test]
fn login_without_tls_is_refused() {
    let auth = auth_plain(b"\0alice\0secret");
    let login = [
        "USER alice\r\n",
        "PASS secret\r\n",
        &auth,
        "AUTH PLAIN\r\n",
        "AUTH\r\n",
    ];

    // Before STLS: with a hint at it.
    let mut d = Driver::stls();
    for input in login {
        d.converse(&[(input, "-ERR [AUTH] Must issue STLS command first\r\n")]);
    }
    assert!(d.actions.is_empty());
    assert_eq!(d.s.user(), None);
    assert_eq!(d.s.stats().errors, 5);

    // On a plaintext-only listener.
    let mut d = Driver::plain();
    let e = "-ERR [SYS/PERM] Authentication requires TLS, which this port does not offer\r\n";
    for input in &login[..3] {
        d.converse(&[(input, e)]);
    }
    assert!(d.actions.is_empty());
}

#[test]
fn user_given_before_tls_is_not_remembered() {
    let mut d = Driver::stls();
    d.send("USER alice\r\n");
    d.stls_handshake();
    d.assert_no_user_pending();
}

#[test]
fn transaction_commands_need_a_maildrop() {
    let mut d = Driver::tls();
    for cmd in [
        "STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "TOP 1 0", "DELE 1", "RSET",
    ] {
        assert_eq!(
            d.send(format!("{cmd}\r\n")),
            "-ERR Command not valid in AUTHORIZATION state\r\n",
            "{cmd}"
        );
    }
    assert!(d.actions.is_empty());
}

// ------------------------------------------------------------------------------------
// USER / PASS (RFC 1939 §7)

#[test]
fn user_pass_login() {
    let mut d = Driver::tls();
    assert_eq!(d.s.user(), None);
    d.login();
    assert_eq!(
        d.actions,
        [
            authenticate("alice", "secret"),
            Action::OpenMaildrop {
                username: "alice".into()
            }
        ]
    );
    assert_eq!(d.s.user(), Some("alice"));
}

#[test]
fn pass_without_user() {
    let mut d = Driver::tls();
    d.assert_no_user_pending();
    assert!(d.actions.is_empty());
}

#[test]
fn user_needs_a_name() {
    let mut d = Driver::tls();
    for input in ["USER\r\n", "USER  \r\n"] {
        d.converse(&[(input, "-ERR Syntax: USER name\r\n")]);
    }
}

#[test]
fn user_name_is_trimmed_and_replaced_password_keeps_spaces() {
    for (input, username, password) in [
        (
            "USER bob\r\nUSER  alice \r\nPASS secret\r\n",
            "alice",
            "secret",
        ),
        ("USER alice\r\nPASS  my secret \r\n", "alice", " my secret "),
    ] {
        let mut d = Driver::tls();
        d.send(input);
        assert_eq!(d.actions[0], authenticate(username, password), "{input:?}");
    }
}

#[test]
fn user_reply_does_not_reveal_unknown_users() {
    let mut d = Driver::tls();
    d.converse(&[("USER nosuchuser\r\n", SEND_PASS)]);
}

#[test]
fn wrong_password() {
    let mut d = Driver::tls();
    d.converse(&[(
        "USER alice\r\nPASS wrong\r\n",
        &format!("{SEND_PASS}{AUTH_FAILED}"),
    )]);
    assert_eq!(d.s.state(), State::Authorization);
    assert_eq!(d.s.user(), None);
    assert_eq!(d.s.stats().auth_failures, 1);
    assert_eq!(d.s.stats().errors, 1);
    // USER must be given again.
    d.assert_no_user_pending();
    d.login();
}

#[test]
fn empty_password_fails_without_asking() {
    let mut d = Driver::tls();
    d.converse(&[
        (
            "USER alice\r\nPASS\r\n",
            &format!("{SEND_PASS}{AUTH_FAILED}"),
        ),
        (
            "USER alice\r\nPASS \r\n",
            &format!("{SEND_PASS}{AUTH_FAILED}"),
        ),
    ]);
    assert!(d.actions.is_empty());
    assert_eq!(d.s.stats().auth_failures, 2);
}

#[test]
fn throttled_login_closes_with_sys_temp() {
    let mut d = Driver::tls();
    d.converse(&[(
        "USER throttle\r\nPASS x\r\nSTAT\r\n",
        "+OK send PASS\r\n-ERR [SYS/TEMP] Too many failed authentication attempts, try again later\r\n",
    )]);
    assert!(d.closed());
    assert_eq!(d.s.stats().auth_failures, 1);
    assert_eq!(d.s.user(), None);
}

#[test]
fn login_commands_in_transaction_are_refused() {
    let mut d = logged_in();
    for cmd in ["USER bob", "PASS x", "AUTH PLAIN", "AUTH"] {
        assert_eq!(
            d.send(format!("{cmd}\r\n")),
            "-ERR Command not valid in TRANSACTION state\r\n"
        );
    }
    assert_eq!(d.decisions(), ["auth", "open"]);
    assert_eq!(d.s.user(), Some("alice"));
}

// ------------------------------------------------------------------------------------
// AUTH (RFC 5034, RFC 4616)

#[test]
fn auth_without_arguments_lists_mechanisms() {
    let mut d = Driver::tls();
    d.converse(&[("AUTH\r\n", "+OK\r\nPLAIN\r\n.\r\n")]);
}

#[test]
fn auth_plain_with_initial_response() {
    let mut d = Driver::tls();
    d.converse(&[(&auth_plain(b"\0alice\0secret"), LOCKED)]);
    assert_eq!(d.decisions(), ["auth", "open"]);
    assert_eq!(d.s.state(), State::Transaction);
}

#[test]
fn auth_plain_with_continuation() {
    let mut d = Driver::tls();
    d.converse(&[("AUTH plain\r\n", "+ \r\n")]);
    assert!(d.actions.is_empty());
    d.converse(&[(&format!("{}\r\n", b64(b"alice\0alice\0secret")), LOCKED)]);
    assert_eq!(d.actions[0], authenticate("alice", "secret"));
}

#[test]
fn auth_pipelined_with_continuation() {
    let mut d = Driver::tls();
    d.converse(&[(
        &format!("AUTH PLAIN\r\n{}\r\nSTAT\r\n", b64(b"\0alice\0secret")),
        &format!(
            "+ \r\n+OK maildrop locked and ready\r\n+OK 3 {}\r\n",
            total()
        ),
    )]);
}

#[test]
fn auth_cancelled() {
    let mut d = Driver::tls();
    d.converse(&[
        (
            "AUTH PLAIN\r\n*\r\nNOOP\r\n",
            "+ \r\n-ERR Authentication cancelled\r\n+OK\r\n",
        ),
        ("AUTH PLAIN *\r\n", "-ERR Authentication cancelled\r\n"),
    ]);
    assert!(d.actions.is_empty());
}

#[test]
fn auth_bad_base64() {
    let mut d = Driver::tls();
    d.converse(&[
        ("AUTH PLAIN !!!\r\n", "-ERR Invalid base64 data\r\n"),
        (
            "AUTH PLAIN\r\nnot base64\r\n",
            "+ \r\n-ERR Invalid base64 data\r\n",
        ),
    ]);
    assert!(d.actions.is_empty());
}

#[test]
fn auth_plain_malformed_messages() {
    let mut d = Driver::tls_with(|c| c.max_errors = 100);
    for msg in [
        &b"alice secret"[..],
        b"alice\0secret",
        b"\0alice\0secret\0",
        b"\0\0secret",
        b"\0al\xffice\0secret",
    ] {
        assert_eq!(
            d.send(auth_plain(msg)),
            "-ERR Invalid PLAIN response\r\n",
            "{msg:?}"
        );
    }
    // An empty argument is no initial response at all.
    d.converse(&[
        (
            "AUTH PLAIN \r\n*\r\n",
            "+ \r\n-ERR Authentication cancelled\r\n",
        ),
        // "=" is the empty initial response: not a valid PLAIN message either.
        ("AUTH PLAIN =\r\n", "-ERR Invalid PLAIN response\r\n"),
        (
            "AUTH PLAIN\r\n=\r\n",
            "+ \r\n-ERR Invalid PLAIN response\r\n",
        ),
    ]);
    assert!(d.actions.is_empty());
}

#[test]
fn auth_plain_fails_without_asking() {
    for (case, message) in [
        ("proxy authorization", &b"bob\0alice\0secret"[..]),
        ("empty password", b"\0alice\0"),
    ] {
        let mut d = Driver::tls();
        d.converse(&[(&auth_plain(message), AUTH_FAILED)]);
        assert!(d.actions.is_empty(), "{case}");
        assert_eq!(d.s.stats().auth_failures, 1, "{case}");
    }
}

#[test]
fn auth_plain_wrong_password_then_retry() {
    let mut d = Driver::tls();
    d.converse(&[
        (&auth_plain(b"\0alice\0nope"), AUTH_FAILED),
        (&auth_plain(b"\0alice\0secret"), LOCKED),
    ]);
}

#[test]
fn auth_unknown_mechanism() {
    let mut d = Driver::tls();
    d.converse(&[
        (
            "AUTH CRAM-MD5\r\n",
            "-ERR Unrecognized authentication type\r\n",
        ),
        (
            "AUTH LOGIN YWxpY2U=\r\n",
            "-ERR Unrecognized authentication type\r\n",
        ),
    ]);
}

#[test]
fn auth_too_many_arguments() {
    let mut d = Driver::tls();
    d.converse(&[(
        "AUTH PLAIN a b\r\n",
        "-ERR Syntax: AUTH mechanism [initial-response]\r\n",
    )]);
}

#[test]
fn auth_forgets_a_pending_user() {
    let mut d = Driver::tls();
    d.send("USER alice\r\nAUTH PLAIN *\r\n");
    d.assert_no_user_pending();
}

#[test]
fn auth_lines_may_exceed_the_command_limit() {
    let mut d = Driver::tls();
    let password = "p".repeat(3000);
    let line = format!(
        "AUTH PLAIN {}\r\n",
        b64(format!("\0alice\0{password}").as_bytes())
    );
    assert!(line.len() > 512);
    d.send(line);
    assert_eq!(d.actions, [authenticate("alice", &password)]);
}

#[test]
fn auth_lines_are_bounded() {
    let mut d = Driver::tls();
    d.converse(&[("AUTH PLAIN\r\n", "+ \r\n")]);
    let long = "A".repeat(AUTH_LINE_MAX + 10);
    d.converse(&[(
        &format!("{long}\r\nNOOP\r\n"),
        "-ERR Line too long\r\n+OK\r\n",
    )]);
    assert!(d.s.buffered() < 100);
    // Exactly at the limit (including CRLF) is fine; one more is not.
    let ok = format!("AUTH PLAIN {}\r\n", "A".repeat(AUTH_LINE_MAX - 13));
    assert_eq!(ok.len(), AUTH_LINE_MAX);
    d.converse(&[(&ok, "-ERR Invalid base64 data\r\n")]);
    let over = format!("AUTH PLAIN {}\r\n", "A".repeat(AUTH_LINE_MAX - 12));
    d.converse(&[(&over, "-ERR Line too long\r\n")]);
    assert!(d.actions.is_empty());
}

// ------------------------------------------------------------------------------------
// Opening the maildrop (RFC 1939 §4, RFC 2449 §8.1.2, RFC 3206)

#[test]
fn maildrop_that_cannot_be_opened_for_good_closes() {
    for (user, input, expected) in [
        (
            "busy",
            "USER busy\r\nPASS secret\r\nSTAT\r\n",
            "+OK send PASS\r\n-ERR [IN-USE] Maildrop is locked by another session\r\n",
        ),
        (
            "broken",
            "USER broken\r\nPASS secret\r\n",
            "+OK send PASS\r\n-ERR [SYS/PERM] Maildrop listing is invalid\r\n",
        ),
    ] {
        let mut d = Driver::tls();
        d.converse(&[(input, expected)]);
        assert!(d.closed(), "{user}");
        assert_eq!(d.decisions(), ["auth", "open"], "{user}");
        assert_eq!(d.s.user(), Some(user));
    }
}

#[test]
fn maildrop_temporarily_unavailable() {
    let mut d = Driver::tls();
    d.converse(&[(
        "USER temp\r\nPASS secret\r\nSTAT\r\n",
        "+OK send PASS\r\n-ERR [SYS/TEMP] Cannot open maildrop, try again later\r\n\
         -ERR Command not valid in AUTHORIZATION state\r\n",
    )]);
    assert!(!d.closed());
    assert_eq!(d.s.state(), State::Authorization);
    assert_eq!(d.s.user(), None);
    // Not a client error.
    assert_eq!(d.s.stats().errors, 1);
    d.login();
}

#[test]
fn listing_validation() {
    let m = |uid: &str| MessageInfo {
        size: 1,
        uid: uid.to_string(),
    };
    assert!(listing_valid(&[]));
    assert!(listing_valid(&[m("a"), m("b")]));
    assert!(listing_valid(&[m(&"x".repeat(MAX_UID_LEN))]));
    assert!(listing_valid(&[m("!~")]));
    assert!(!listing_valid(&[m(&"x".repeat(MAX_UID_LEN + 1))]));
    assert!(!listing_valid(&[m("")]));
    assert!(!listing_valid(&[m("a b")]));
    assert!(!listing_valid(&[m("a\r\n+OK")]));
    assert!(!listing_valid(&[m("ä")]));
    assert!(!listing_valid(&[m("a"), m("b"), m("a")]));
}

#[test]
fn empty_maildrop() {
    let mut d = Driver::tls();
    d.send("USER empty\r\nPASS secret\r\n");
    d.converse(&[
        (
            "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n",
            "+OK 0 0\r\n+OK 0 messages (0 octets)\r\n.\r\n+OK unique-id listing follows\r\n.\r\n\
         -ERR no such message, only 0 messages in maildrop\r\n",
        ),
        (
            "QUIT\r\n",
            "+OK pop.example POP3 server signing off (maildrop empty)\r\n",
        ),
    ]);
    assert_eq!(d.actions.last(), Some(&Action::Commit { deleted: vec![] }));
}

// ------------------------------------------------------------------------------------
// TRANSACTION (RFC 1939 §5, §7)

#[test]
fn stat_and_list_report_the_sizes() {
    let mut d = logged_in();
    d.converse(&[
        ("STAT\r\n", &format!("+OK 3 {}\r\n", total())),
        (
            "LIST\r\n",
            &format!(
                "+OK 3 messages ({} octets)\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
                total(),
                size(0),
                size(1),
                size(2)
            ),
        ),
        ("LIST 2\r\n", &format!("+OK 2 {}\r\n", size(1))),
        ("list  3\r\n", &format!("+OK 3 {}\r\n", size(2))),
    ]);
}

#[test]
fn message_number_checks() {
    let mut d = Driver::tls_with(|c| c.max_errors = 100);
    d.login();
    let none = "-ERR no such message, only 3 messages in maildrop\r\n";
    let invalid = "-ERR Invalid message number\r\n";
    for (arg, expected) in [
        ("0", none),
        ("4", none),
        ("4294967297", none),
        ("18446744073709551615", none),
        ("18446744073709551616", none),
        ("99999999999999999999999999999", none),
        ("01", invalid),
        ("+1", invalid),
        ("-1", invalid),
        ("1a", invalid),
        ("one", invalid),
        ("0x1", invalid),
    ] {
        for cmd in ["LIST", "UIDL", "RETR", "DELE"] {
            assert_eq!(d.send(format!("{cmd} {arg}\r\n")), expected, "{cmd} {arg}");
        }
        assert_eq!(d.send(format!("TOP {arg} 1\r\n")), expected, "TOP {arg}");
    }
    d.converse(&[
        ("LIST 1 2\r\n", "-ERR Syntax: LIST [msg]\r\n"),
        ("UIDL 1 2\r\n", "-ERR Syntax: UIDL [msg]\r\n"),
        ("RETR\r\n", "-ERR Syntax: RETR msg\r\n"),
        ("RETR 1 2\r\n", "-ERR Syntax: RETR msg\r\n"),
        ("DELE\r\n", "-ERR Syntax: DELE msg\r\n"),
    ]);
    assert_eq!(d.decisions(), ["auth", "open"]);
    // Nothing was deleted by the failed DELEs.
    d.converse(&[("STAT\r\n", &format!("+OK 3 {}\r\n", total()))]);
}

#[test]
fn uidl_all_and_one() {
    let mut d = logged_in();
    d.converse(&[
        (
            "UIDL\r\n",
            "+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n",
        ),
        ("UIDL 3\r\n", "+OK 3 uid-3\r\n"),
    ]);
}

#[test]
fn retr_dot_stuffs() {
    let mut d = logged_in();
    d.converse(&[(
        "RETR 1\r\n",
        &format!(
            "+OK {} octets\r\nFrom: bob@example.org\r\nSubject: one\r\n\r\nline 1\r\n..dot line\r\nline 3\r\n.\r\n",
            MSG1.len()
        ),
    )]);
    assert_eq!(
        d.actions.last(),
        Some(&Action::Retrieve {
            index: 0,
            top_lines: None
        })
    );
}

#[test]
fn retr_normalises_bare_lf() {
    let mut d = logged_in();
    // Normalised: 14 + 2 + 7 + 3 + 7 octets.
    d.converse(&[(
        "RETR 2\r\n",
        "+OK 33 octets\r\nSubject: two\r\n\r\nhello\r\n..\r\nworld\r\n.\r\n",
    )]);
    assert_eq!(size(1), 33);
}

#[test]
fn retr_with_bare_cr_cannot_end_the_response_early() {
    let mut d = logged_in();
    d.message = Box::new(|_| Ok(b"a\r.\r\nb\n.\r\n+OK fake\r\n".to_vec()));
    d.converse(&[(
        "RETR 1\r\n",
        "+OK 22 octets\r\na\r\n..\r\nb\r\n..\r\n+OK fake\r\n.\r\n",
    )]);
}

#[test]
fn top_with_zero_lines() {
    let mut d = logged_in();
    d.converse(&[(
        "TOP 1 0\r\n",
        "+OK top of message follows\r\nFrom: bob@example.org\r\nSubject: one\r\n\r\n.\r\n",
    )]);
    assert_eq!(
        d.actions.last(),
        Some(&Action::Retrieve {
            index: 0,
            top_lines: Some(0)
        })
    );
}

#[test]
fn top_with_lines() {
    let mut d = logged_in();
    d.converse(&[
        (
            "TOP 1 2\r\n",
            "+OK top of message follows\r\nFrom: bob@example.org\r\nSubject: one\r\n\r\nline 1\r\n..dot line\r\n.\r\n",
        ),
        (
            "TOP 2 1\r\n",
            "+OK top of message follows\r\nSubject: two\r\n\r\nhello\r\n.\r\n",
        ),
        // More lines than the body has: the whole message.
        (
            "TOP 3 100\r\n",
            "+OK top of message follows\r\nSubject: three\r\n\r\nbody\r\n.\r\n",
        ),
    ]);
    // A line count beyond usize means "all".
    d.send("TOP 3 99999999999999999999999\r\n");
    assert_eq!(
        d.actions.last(),
        Some(&Action::Retrieve {
            index: 2,
            top_lines: Some(usize::MAX)
        })
    );
}

#[test]
fn top_argument_checks() {
    let mut d = logged_in();
    d.converse(&[
        ("TOP 1\r\n", "-ERR Syntax: TOP msg n\r\n"),
        ("TOP\r\n", "-ERR Syntax: TOP msg n\r\n"),
        ("TOP 1 2 3\r\n", "-ERR Syntax: TOP msg n\r\n"),
        ("TOP 1 -1\r\n", "-ERR Invalid line count\r\n"),
        ("TOP 1 01\r\n", "-ERR Invalid line count\r\n"),
        ("TOP 1 x\r\n", "-ERR Invalid line count\r\n"),
    ]);
    assert_eq!(d.decisions(), ["auth", "open"]);
}

#[test]
fn dele_hides_the_message() {
    let mut d = logged_in();
    d.converse(&[("DELE 2\r\n", "+OK message 2 deleted\r\n")]);
    let gone = "-ERR message 2 already deleted\r\n";
    d.converse(&[
        ("DELE 2\r\n", gone),
        ("RETR 2\r\n", gone),
        ("TOP 2 0\r\n", gone),
        ("LIST 2\r\n", gone),
        ("UIDL 2\r\n", gone),
        ("STAT\r\n", &format!("+OK 2 {}\r\n", size(0) + size(2))),
        // Numbers are stable: message 3 is still 3.
        (
            "LIST\r\n",
            &format!(
                "+OK 2 messages ({} octets)\r\n1 {}\r\n3 {}\r\n.\r\n",
                size(0) + size(2),
                size(0),
                size(2)
            ),
        ),
        (
            "UIDL\r\n",
            "+OK unique-id listing follows\r\n1 uid-1\r\n3 uid-3\r\n.\r\n",
        ),
    ]);
    assert_eq!(d.decisions(), ["auth", "open"]);
}

#[test]
fn rset_undeletes() {
    let mut d = logged_in();
    d.send("DELE 1\r\nDELE 3\r\n");
    d.converse(&[
        (
            "RSET\r\n",
            &format!("+OK maildrop has 3 messages ({} octets)\r\n", total()),
        ),
        ("STAT\r\n", &format!("+OK 3 {}\r\n", total())),
        ("LIST 1\r\n", &format!("+OK 1 {}\r\n", size(0))),
    ]);
}

#[test]
fn quit_commits_the_deletions() {
    let mut d = logged_in();
    d.send("DELE 3\r\nDELE 1\r\n");
    d.converse(&[(
        "QUIT\r\n",
        "+OK pop.example POP3 server signing off (1 message left)\r\n",
    )]);
    assert!(d.closed());
    assert_eq!(
        d.actions.last(),
        Some(&Action::Commit {
            deleted: vec![0, 2]
        })
    );
    assert_eq!(d.s.stats().messages_deleted, 2);
    assert_eq!(d.s.state(), State::Closed);
}

#[test]
fn quit_after_rset_commits_nothing() {
    let mut d = logged_in();
    d.send("DELE 1\r\nRSET\r\nDELE 2\r\nRSET\r\n");
    d.converse(&[(
        "QUIT\r\n",
        "+OK pop.example POP3 server signing off (3 messages left)\r\n",
    )]);
    assert_eq!(d.actions.last(), Some(&Action::Commit { deleted: vec![] }));
    assert_eq!(d.s.stats().messages_deleted, 0);
}

#[test]
fn quit_deleting_everything() {
    let mut d = logged_in();
    d.converse(&[(
        "DELE 1\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n",
        "+OK message 1 deleted\r\n+OK message 2 deleted\r\n+OK message 3 deleted\r\n\
         +OK pop.example POP3 server signing off (maildrop empty)\r\n",
    )]);
    assert_eq!(
        d.actions.last(),
        Some(&Action::Commit {
            deleted: vec![0, 1, 2]
        })
    );
}

#[test]
fn commit_failure() {
    let mut d = logged_in();
    d.commit = Box::new(|_| Err(CommitError));
    d.converse(&[(
        "DELE 1\r\nQUIT\r\n",
        "+OK message 1 deleted\r\n-ERR [SYS/TEMP] some deleted messages not removed\r\n",
    )]);
    assert!(d.closed());
    assert_eq!(d.s.stats().messages_deleted, 0);
}

#[test]
fn update_state_reads_nothing_more() {
    let mut d = logged_in();
    d.s.feed(b"DELE 1\r\nQUIT\r\nRSET\r\n");
    assert_eq!(d.s.poll(), Action::Commit { deleted: vec![0] });
    assert_eq!(d.s.state(), State::Update);
    assert_eq!(d.s.poll(), Action::Commit { deleted: vec![0] });
    d.s.commit_result(Ok(()));
    assert_eq!(d.s.poll(), Action::Close);
    let out = String::from_utf8(d.s.output()).unwrap();
    assert!(out.ends_with("(2 messages left)\r\n"), "{out}");
    assert!(!out.contains("maildrop has"));
}

#[test]
fn message_read_failures() {
    let mut d = logged_in();
    d.message = Box::new(|i| match i {
        0 => Err(MessageError::Gone),
        _ => Err(MessageError::Temporary),
    });
    d.converse(&[
        ("RETR 1\r\n", "-ERR message 1 no longer exists\r\n"),
        (
            "TOP 2 0\r\n",
            "-ERR [SYS/TEMP] Cannot read message 2, try again later\r\n",
        ),
    ]);
    // Server-side failures are not client errors.
    assert_eq!(d.s.stats().errors, 0);
    assert_eq!(d.s.stats().messages_retrieved, 0);
    assert!(!d.closed());
}

// ------------------------------------------------------------------------------------
// No UPDATE without QUIT (RFC 1939 §3, §6)

/// Logged in, with message 1 marked deleted: QUIT would remove it.
fn one_deleted() -> Driver {
    let mut d = logged_in();
    d.converse(&[("DELE 1\r\n", "+OK message 1 deleted\r\n")]);
    d
}

#[test]
fn timeout_in_transaction_does_not_commit() {
    let mut d = one_deleted();
    d.s.timeout();
    assert_eq!(d.s.poll(), Action::Close);
    // RFC 1939 §3: no response on autologout.
    assert!(d.s.output().is_empty());
    assert_eq!(d.decisions(), ["auth", "open"]);
    d.s.feed(b"QUIT\r\n");
    assert_eq!(d.s.poll(), Action::Close);
    assert!(d.s.output().is_empty());
    d.s.timeout(); // idempotent
    assert!(d.s.output().is_empty());
}

#[test]
fn shutdown_does_not_commit() {
    let mut d = one_deleted();
    d.s.shutdown();
    assert_eq!(d.s.poll(), Action::Close);
    assert_eq!(
        String::from_utf8(d.s.output()).unwrap(),
        "-ERR [SYS/TEMP] pop.example POP3 server shutting down\r\n"
    );
    assert_eq!(d.decisions(), ["auth", "open"]);
    d.s.shutdown(); // idempotent
    assert!(d.s.output().is_empty());
}

#[test]
fn shutdown_drops_a_pending_action() {
    let mut d = logged_in();
    d.s.feed(b"RETR 1\r\n");
    assert!(matches!(d.s.poll(), Action::Retrieve { .. }));
    d.s.shutdown();
    d.s.message_result(Ok(MSG1.to_vec()));
    assert_eq!(d.s.poll(), Action::Close);
    let out = String::from_utf8(d.s.output()).unwrap();
    assert_eq!(
        out,
        "-ERR [SYS/TEMP] pop.example POP3 server shutting down\r\n"
    );
}

#[test]
fn too_many_errors_in_transaction_does_not_commit() {
    let mut d = Driver::tls_with(|c| c.max_errors = 2);
    d.login();
    d.converse(&[(
        "DELE 1\r\nDELE 1\r\nBOGUS\r\nQUIT\r\n",
        "+OK message 1 deleted\r\n-ERR message 1 already deleted\r\n-ERR Unknown command\r\n\
         -ERR Too many errors, closing connection\r\n",
    )]);
    assert!(d.closed());
    assert_eq!(d.decisions(), ["auth", "open"]);
}

#[test]
fn max_errors_zero_acts_as_one() {
    let mut d = Driver::with(config_with(|c| c.max_errors = 0), None);
    d.converse(&[(
        "BOGUS\r\n",
        "-ERR Unknown command\r\n-ERR Too many errors, closing connection\r\n",
    )]);
    assert!(d.closed());
}

#[test]
fn failed_logins_count_as_errors() {
    let mut d = Driver::tls_with(|c| c.max_errors = 3);
    let out = d.send("USER a\r\nPASS b\r\nUSER a\r\nPASS b\r\nUSER a\r\nPASS b\r\nUSER alice\r\n");
    assert_eq!(
        statuses(&out),
        [
            "+OK send PASS",
            "-ERR [AUTH] Authentication failed",
            "+OK send PASS",
            "-ERR [AUTH] Authentication failed",
            "+OK send PASS",
            "-ERR [AUTH] Authentication failed",
            "-ERR Too many errors, closing connection"
        ]
    );
    assert!(d.closed());
    assert_eq!(d.s.stats().auth_failures, 3);
}

// ------------------------------------------------------------------------------------
// Pipelining (RFC 2449 §6.6)

#[test]
fn pipelined_transaction_answers_in_order() {
    let mut d = Driver::tls();
    let out = d.send(
        "USER alice\r\nPASS secret\r\nSTAT\r\nUIDL 1\r\nRETR 3\r\nDELE 3\r\nTOP 1 0\r\nLIST\r\nQUIT\r\n",
    );
    assert_eq!(
        out,
        format!(
            "+OK send PASS\r\n+OK maildrop locked and ready\r\n+OK 3 {total}\r\n+OK 1 uid-1\r\n\
             +OK {s3} octets\r\nSubject: three\r\n\r\nbody\r\n.\r\n+OK message 3 deleted\r\n\
             +OK top of message follows\r\nFrom: bob@example.org\r\nSubject: one\r\n\r\n.\r\n\
             +OK 2 messages ({left} octets)\r\n1 {s1}\r\n2 {s2}\r\n.\r\n\
             +OK pop.example POP3 server signing off (2 messages left)\r\n",
            total = total(),
            s1 = size(0),
            s2 = size(1),
            s3 = size(2),
            left = size(0) + size(1),
        )
    );
    assert_eq!(
        d.decisions(),
        ["auth", "open", "retrieve", "retrieve", "commit"]
    );
    assert_eq!(d.actions.last(), Some(&Action::Commit { deleted: vec![2] }));
}

#[test]
fn nothing_is_processed_while_a_decision_is_pending() {
    let mut d = logged_in();
    d.s.feed(b"RETR 1\r\nSTAT\r\n");
    let a = d.s.poll();
    assert_eq!(
        a,
        Action::Retrieve {
            index: 0,
            top_lines: None
        }
    );
    // Asking again gives the same action; STAT is not answered yet.
    assert_eq!(d.s.poll(), a);
    assert!(d.s.output().is_empty());
    // More input while pending is kept, in order.
    d.s.feed(b"NOOP\r\n");
    d.s.message_result(Ok(MSG3.to_vec()));
    assert_eq!(d.s.poll(), Action::NeedInput);
    let out = String::from_utf8(d.s.output()).unwrap();
    assert_eq!(
        statuses(&out),
        [
            format!("+OK {} octets", size(2)).as_str(),
            &format!("+OK 3 {}", total()),
            "+OK"
        ]
    );
}

#[test]
fn byte_by_byte_equals_all_at_once() {
    let script = "CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nUIDL\r\nRSET\r\nDELE 2\r\nQUIT\r\n";
    let mut whole = Driver::tls();
    let a = whole.send(script);
    let mut bytewise = Driver::tls();
    let mut b = String::new();
    for byte in script.as_bytes() {
        b.push_str(&bytewise.send([*byte]));
    }
    assert_eq!(a, b);
    assert_eq!(whole.actions, bytewise.actions);
    assert!(whole.closed() && bytewise.closed());
}

#[test]
fn at_most_one_message_is_buffered() {
    // A client pipelining many RETRs: the driver flushes before each Retrieve, so the
    // session's output never holds more than one message.
    let big = vec![b'x'; 100_000];
    let mut d = logged_in();
    let mut s = std::mem::replace(&mut d.s, Session::new(Arc::new(config()), None));
    s.feed("RETR 1\r\n".repeat(50).as_bytes());
    let mut retrieved = 0;
    loop {
        match s.poll() {
            Action::Retrieve { .. } => {
                let pending = s.output();
                assert!(pending.len() < big.len() + 1000, "{}", pending.len());
                s.message_result(Ok(big.clone()));
                retrieved += 1;
            }
            Action::NeedInput => break,
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(retrieved, 50);
    assert_eq!(s.stats().messages_retrieved, 50);
}

// ------------------------------------------------------------------------------------
// Line limits (RFC 2449 §4)

#[test]
fn long_lines_are_discarded_and_refused() {
    let mut d = Driver::tls();
    let long = "x".repeat(100_000);
    d.converse(&[(
        &format!("USER {long}\r\nNOOP\r\n"),
        "-ERR Line too long\r\n+OK\r\n",
    )]);
    // Fed in pieces without a line end: nothing accumulates.
    for _ in 0..20 {
        assert_eq!(d.send(&long), "");
        assert!(d.s.buffered() <= long.len());
    }
    d.converse(&[("\r\nNOOP\r\n", "-ERR Line too long\r\n+OK\r\n")]);
    assert!(d.s.buffered() < 100);
}

#[test]
fn command_line_limit_is_inclusive_of_crlf() {
    let mut d = Driver::tls();
    // 512 octets with CRLF: accepted.
    let name = "n".repeat(512 - "USER \r\n".len());
    d.converse(&[
        (&format!("USER {name}\r\n"), SEND_PASS),
        // 513: refused.
        (&format!("USER {name}n\r\n"), "-ERR Line too long\r\n"),
        // With a bare LF, 512 octets including the LF.
        (&format!("USER {name}n\n"), SEND_PASS),
    ]);
}

#[test]
fn command_line_limit_is_configurable_with_a_floor() {
    let mut d = Driver::tls_with(|c| c.max_command_line = 300);
    let name = "n".repeat(300 - "USER \r\n".len());
    d.converse(&[
        (&format!("USER {name}\r\n"), SEND_PASS),
        (&format!("USER {name}n\r\n"), "-ERR Line too long\r\n"),
    ]);
    let mut d = Driver::tls_with(|c| c.max_command_line = 10);
    let name = "n".repeat(MIN_COMMAND_LINE - "USER \r\n".len());
    d.converse(&[
        (&format!("USER {name}\r\n"), SEND_PASS),
        (&format!("USER {name}n\r\n"), "-ERR Line too long\r\n"),
    ]);
}

#[test]
fn long_line_split_across_feeds() {
    let mut d = Driver::tls();
    d.converse(&[
        (&"x".repeat(400), ""),
        (&"y".repeat(400), ""),
        ("\r", ""),
        ("\nNOOP\r\n", "-ERR Line too long\r\n+OK\r\n"),
    ]);
}

// ------------------------------------------------------------------------------------
// Driver contract

#[test]
fn mismatched_results_are_ignored() {
    let mut d = Driver::tls();
    d.s.auth_result(AuthOutcome::Ok);
    d.s.maildrop_result(Ok(vec![]));
    d.s.message_result(Ok(b"x".to_vec()));
    d.s.commit_result(Ok(()));
    assert_eq!(d.s.poll(), Action::NeedInput);
    assert!(d.s.output().is_empty());
    assert_eq!(d.s.state(), State::Authorization);
    assert_eq!(d.s.user(), None);

    d.s.feed(b"USER alice\r\nPASS secret\r\n");
    assert!(matches!(d.s.poll(), Action::Authenticate { .. }));
    d.s.maildrop_result(Ok(vec![]));
    d.s.commit_result(Ok(()));
    d.s.message_result(Ok(b"x".to_vec()));
    assert!(matches!(d.s.poll(), Action::Authenticate { .. }));
    d.s.auth_result(AuthOutcome::Ok);
    d.s.auth_result(AuthOutcome::Failed); // no longer pending: ignored
    assert_eq!(
        d.s.poll(),
        Action::OpenMaildrop {
            username: "alice".into()
        }
    );
    assert_eq!(d.s.state(), State::Authorization);
    d.s.maildrop_result(Ok(listing(&store())));
    assert_eq!(d.s.poll(), Action::NeedInput);
    assert_eq!(d.s.state(), State::Transaction);
}

#[test]
fn state_transitions() {
    let mut d = Driver::tls();
    assert_eq!(d.s.state(), State::Authorization);
    d.login();
    assert_eq!(d.s.state(), State::Transaction);
    d.s.feed(b"QUIT\r\n");
    assert!(matches!(d.s.poll(), Action::Commit { .. }));
    assert_eq!(d.s.state(), State::Update);
    d.s.commit_result(Ok(()));
    assert_eq!(d.s.state(), State::Closed);
}

#[test]
fn debug_output_redacts_secrets() {
    let a = authenticate("alice", "hunter2");
    let text = format!("{a:?}");
    assert!(
        text.contains("alice") && !text.contains("hunter2"),
        "{text}"
    );

    let mut d = Driver::tls();
    d.s.feed(b"USER alice\r\nPASS hunter2\r\nUSER bob\r\nPASS hunter3\r\n");
    let _ = d.s.poll();
    let text = format!("{:?}", d.s);
    assert!(!text.contains("hunter"), "{text}");
}

#[test]
fn statistics() {
    let mut d = logged_in();
    d.send("RETR 1\r\nRETR 2\r\nTOP 3 0\r\nBOGUS\r\nDELE 1\r\nQUIT\r\n");
    let st = d.s.stats();
    assert_eq!(st.messages_retrieved, 2);
    assert_eq!(st.tops, 1);
    assert_eq!(
        st.octets_sent,
        size(0) + size(1) + "Subject: three\r\n\r\n".len() as u64
    );
    assert_eq!(st.messages_deleted, 1);
    assert_eq!(st.errors, 1);
    assert_eq!(st.auth_failures, 0);
}

#[test]
fn default_config() {
    let c = Config::default();
    assert_eq!(c.hostname, "localhost");
    assert!(!c.stls);
    assert_eq!(c.max_errors, 10);
    assert_eq!(c.max_command_line, 512);
}

#[test]
fn error_types_display() {
    assert_eq!(
        MaildropError::InUse.to_string(),
        "maildrop is locked by another session"
    );
    assert_eq!(MessageError::Gone.to_string(), "message no longer exists");
    assert_eq!(
        CommitError.to_string(),
        "some deleted messages were not removed"
    );
}
