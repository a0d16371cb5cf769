use super::*;
use crate::command::{FetchCommand, SearchCommand};
use crate::fuzzing::tls_info;
use crate::sequence::SequenceSet;
use proptest::prelude::*;

fn config(starttls: bool) -> Arc<Config> {
    Arc::new(Config {
        starttls,
        ..Config::default()
    })
}

/// A session with this configuration (`tls`: over TLS), greeted, output drained.
fn greeted(config: Arc<Config>, tls: Option<TlsInfo>) -> Session {
    let mut s = Session::new(config, tls);
    s.greet();
    s.output();
    s
}

/// A session over implicit TLS, greeted, output drained.
fn tls_session() -> Session {
    greeted(config(false), Some(tls_info()))
}

/// A session over TLS, logged in as alice.
fn logged_in() -> Session {
    logged_in_with(config(false))
}

/// A session over TLS with this configuration, logged in as alice.
fn logged_in_with(config: Arc<Config>) -> Session {
    let mut s = greeted(config, Some(tls_info()));
    s.feed(b"l LOGIN alice secret\r\n");
    assert!(matches!(s.poll(), Action::Authenticate { .. }));
    s.auth_result(AuthOutcome::Ok);
    assert_eq!(s.poll(), Action::NeedInput);
    s.output();
    s
}

/// Logged in with INBOX selected.
fn selected(read_only: bool) -> Session {
    let mut s = logged_in();
    s.feed(if read_only {
        b"s EXAMINE INBOX\r\n"
    } else {
        b"s SELECT INBOX\r\n"
    });
    assert!(matches!(s.poll(), Action::Execute(_)));
    s.command_done(Outcome::ok(vec![]));
    assert_eq!(s.poll(), Action::NeedInput);
    s.output();
    s
}

/// The action that asks the driver to check `username`'s `password`.
fn authenticate(username: &str, password: &str) -> Action {
    Action::Authenticate {
        username: username.into(),
        password: password.into(),
    }
}

fn out(s: &mut Session) -> String {
    String::from_utf8(s.output()).unwrap()
}

/// Feeds, polls, returns (action, output).
fn step(s: &mut Session, input: &[u8]) -> (Action, String) {
    s.feed(input);
    let a = s.poll();
    (a, out(s))
}

/// Feeds `input`: the session answers at once (it waits for input again), with exactly
/// `reply`.
fn answers(s: &mut Session, input: &[u8], reply: &str) {
    let (a, o) = step(s, input);
    assert_eq!(
        (a, o.as_str()),
        (Action::NeedInput, reply),
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

/// [`answers`] for each exchange in turn.
fn replies(s: &mut Session, exchanges: &[(&[u8], &str)]) {
    for &(input, reply) in exchanges {
        answers(s, input, reply);
    }
}

/// Feeds `input`, a command the session passes on to the driver.
fn to_driver(s: &mut Session, input: &[u8]) {
    let (a, _) = step(s, input);
    assert!(matches!(a, Action::Execute(_)), "{a:?}");
}

/// Feeds `input`, a command for the driver; answers it OK and drains the output.
fn executes(s: &mut Session, input: &[u8]) {
    to_driver(s, input);
    s.command_done(Outcome::ok(vec![]));
    s.output();
}

#[test]
fn greeting_and_capabilities_before_tls() {
    let mut s = Session::new(config(true), None);
    s.greet();
    let greeting = out(&mut s);
    assert_eq!(
        greeting,
        "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ ID ENABLE] localhost hato IMAP server ready\r\n"
    );
    let (a, o) = step(&mut s, b"a CAPABILITY\r\n");
    assert_eq!(a, Action::NeedInput);
    assert_eq!(
        o,
        "* CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED LITERAL+ ID ENABLE\r\na OK CAPABILITY completed\r\n"
    );
    assert!(!o.contains("AUTH="));
}

#[test]
fn capabilities_over_tls() {
    let mut s = Session::new(config(false), Some(tls_info()));
    s.greet();
    let g = out(&mut s);
    assert!(g.contains("AUTH=PLAIN SASL-IR"), "{g}");
    assert!(
        !g.contains("STARTTLS") && !g.contains("LOGINDISABLED"),
        "{g}"
    );
    let mut s = logged_in();
    let caps = s.capabilities().join(" ");
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    for c in [
        "IMAP4rev2",
        "IDLE",
        "UIDPLUS",
        "MULTIAPPEND",
        "CATENATE",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "ESEARCH",
        "LIST-EXTENDED",
        "SPECIAL-USE",
        "APPENDLIMIT=26214400",
    ] {
        assert!(caps.split(' ').any(|x| x == c), "{c} missing from {caps}");
    }
    let (_, o) = step(&mut s, b"c capability\r\n");
    assert!(o.starts_with("* CAPABILITY IMAP4rev2 "));
}

#[test]
fn no_login_before_tls() {
    let mut s = greeted(config(true), None);
    let (a, o) = step(&mut s, b"a LOGIN alice secret\r\n");
    assert_eq!(a, Action::NeedInput);
    assert_eq!(
        o,
        "a NO [PRIVACYREQUIRED] Login is disabled until STARTTLS\r\n"
    );
    let (a, o) = step(&mut s, b"b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(a, Action::NeedInput);
    assert!(o.starts_with("b NO [PRIVACYREQUIRED]"), "{o}");
    // Without STARTTLS offered (plaintext-only listener) it stays refused.
    let mut s = Session::new(config(false), None);
    s.greet();
    assert!(!out(&mut s).contains("STARTTLS"));
    let (_, o) = step(&mut s, b"a LOGIN alice secret\r\n");
    assert!(o.starts_with("a NO [PRIVACYREQUIRED]"));
}

#[test]
fn starttls_discards_injected_commands() {
    let mut s = greeted(config(true), None);
    let (a, o) = step(
        &mut s,
        b"a STARTTLS\r\nb LOGIN evil pass\r\nc CAPABILITY\r\n",
    );
    assert_eq!(a, Action::StartTls);
    assert_eq!(o, "a OK Begin TLS negotiation now\r\n");
    // Still StartTls, and input before the handshake is dropped.
    s.feed(b"d LOGIN evil pass\r\n");
    assert_eq!(s.poll(), Action::StartTls);
    s.tls_established(tls_info());
    assert_eq!(s.poll(), Action::NeedInput);
    assert_eq!(out(&mut s), "");
    // Fresh state; AUTH=PLAIN now offered.
    let (_, o) = step(&mut s, b"e CAPABILITY\r\n");
    assert!(o.contains("AUTH=PLAIN") && !o.contains("STARTTLS"), "{o}");
    let (a, _) = step(&mut s, b"f LOGIN alice secret\r\n");
    assert!(matches!(a, Action::Authenticate { ref username, .. } if username == "alice"));
}

#[test]
fn starttls_not_available() {
    let mut s = tls_session();
    answers(
        &mut s,
        b"a STARTTLS\r\n",
        "a BAD STARTTLS not available\r\n",
    );
    let mut s = greeted(config(false), None);
    let (a, o) = step(&mut s, b"a STARTTLS\r\n");
    assert_eq!(a, Action::NeedInput);
    assert_eq!(o, "a BAD STARTTLS not available\r\n");
}

#[test]
fn login_flow() {
    let mut s = tls_session();
    let (a, o) = step(&mut s, b"a1 LOGIN alice \"s3 cret\"\r\na2 NOOP\r\n");
    assert_eq!(a, authenticate("alice", "s3 cret"));
    assert_eq!(o, "");
    // Polling again repeats the pending action; the pipelined NOOP waits.
    assert_eq!(s.poll(), a);
    assert!(!format!("{a:?}").contains("s3 cret"));
    s.auth_result(AuthOutcome::Ok);
    assert_eq!(s.poll(), Action::NeedInput);
    let o = out(&mut s);
    assert!(o.starts_with("a1 OK [CAPABILITY IMAP4rev2 "), "{o}");
    assert!(
        o.ends_with("] Logged in\r\na2 OK NOOP completed\r\n"),
        "{o}"
    );
    assert_eq!(s.state(), &State::Authenticated);
    assert_eq!(s.user(), Some("alice"));
    // A second LOGIN is a protocol error.
    answers(
        &mut s,
        b"a3 LOGIN alice secret\r\n",
        "a3 BAD Already authenticated\r\n",
    );
}

#[test]
fn login_failures() {
    let mut s = tls_session();
    step(&mut s, b"a LOGIN alice wrong\r\n");
    s.auth_result(AuthOutcome::Failed);
    assert_eq!(s.poll(), Action::NeedInput);
    assert_eq!(
        out(&mut s),
        "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
    );
    assert_eq!(s.state(), &State::NotAuthenticated);
    // Empty password: refused without asking the driver.
    let (a, o) = step(&mut s, b"b LOGIN alice \"\"\r\n");
    assert_eq!(a, Action::NeedInput);
    assert!(o.starts_with("b NO [AUTHENTICATIONFAILED]"));
    step(&mut s, b"c LOGIN alice x\r\n");
    s.auth_result(AuthOutcome::Throttled);
    assert_eq!(s.poll(), Action::Close);
    assert_eq!(
        out(&mut s),
        "c NO [UNAVAILABLE] Too many failed authentication attempts, try again later\r\n\
         * BYE Too many failed authentication attempts\r\n"
    );
    assert_eq!(s.stats().auth_failures, 3);
    // Results that match nothing pending are ignored.
    s.auth_result(AuthOutcome::Ok);
    assert_eq!(s.state(), &State::Logout);
}

#[test]
fn authenticate_plain() {
    // SASL-IR (RFC 4959).
    let mut s = tls_session();
    let (a, _) = step(&mut s, b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert_eq!(a, authenticate("alice", "secret"));
    s.auth_result(AuthOutcome::Ok);
    s.poll();
    assert!(out(&mut s).starts_with("a OK [CAPABILITY"));
    // With a continuation.
    let mut s = tls_session();
    answers(&mut s, b"a AUTHENTICATE PLAIN\r\n", "+ \r\n");
    let (a, _) = step(&mut s, b"YWxpY2UAYWxpY2UAc2VjcmV0\r\n"); // alice\0alice\0secret
    assert!(matches!(a, Action::Authenticate { ref username, .. } if username == "alice"));
    // Cancel.
    let mut s = tls_session();
    step(&mut s, b"a AUTHENTICATE PLAIN\r\n");
    answers(&mut s, b"*\r\n", "a BAD AUTHENTICATE cancelled\r\n");
    // The session reads commands again.
    answers(&mut s, b"b NOOP\r\n", "b OK NOOP completed\r\n");
    // Bad base64, malformed PLAIN, proxy authorization, unknown mechanism.
    let mut s = tls_session();
    step(&mut s, b"a AUTHENTICATE PLAIN\r\n");
    answers(&mut s, b"%%%\r\n", "a BAD Invalid base64\r\n");
    answers(
        &mut s,
        b"b AUTHENTICATE PLAIN YWxpY2U=\r\n",
        "b BAD Invalid PLAIN message\r\n",
    );
    let (a, o) = step(&mut s, b"c AUTHENTICATE PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n"); // bob\0alice\0secret
    assert_eq!(a, Action::NeedInput);
    assert!(o.starts_with("c NO [AUTHENTICATIONFAILED]"));
    answers(
        &mut s,
        b"d AUTHENTICATE CRAM-MD5\r\n",
        "d NO [CANNOT] Unsupported authentication mechanism\r\n",
    );
    // An over-long SASL line.
    let mut s = tls_session();
    step(&mut s, b"a AUTHENTICATE PLAIN\r\n");
    let long = vec![b'A'; AUTH_LINE_MAX + 10];
    s.feed(&long);
    answers(&mut s, b"\r\n", "a BAD Line too long\r\n");
}

#[test]
fn commands_in_the_wrong_state() {
    let mut s = tls_session();
    replies(
        &mut s,
        &[
            (&b"a SELECT INBOX\r\n"[..], "a BAD Not authenticated\r\n"),
            (b"b FETCH 1 FLAGS\r\n", "b BAD No mailbox selected\r\n"),
            (b"c UID FETCH 1 FLAGS\r\n", "c BAD No mailbox selected\r\n"),
            (b"d IDLE\r\n", "d BAD Not authenticated\r\n"),
            (b"e ENABLE CONDSTORE\r\n", "e BAD Not authenticated\r\n"),
        ],
    );
    let mut s = logged_in();
    replies(
        &mut s,
        &[
            (&b"a EXPUNGE\r\n"[..], "a BAD No mailbox selected\r\n"),
            (b"b CLOSE\r\n", "b BAD No mailbox selected\r\n"),
            (
                b"c STORE 1 +FLAGS (\\Seen)\r\n",
                "c BAD No mailbox selected\r\n",
            ),
            (
                b"d AUTHENTICATE PLAIN\r\n",
                "d BAD Already authenticated\r\n",
            ),
            (b"e STARTTLS\r\n", "e BAD Already authenticated\r\n"),
            (b"f FROB\r\n", "f BAD unknown command\r\n"),
        ],
    );
    let mut s = selected(false);
    answers(
        &mut s,
        b"a ENABLE QRESYNC\r\n",
        "a BAD ENABLE is not allowed after SELECT\r\n",
    );
}

#[test]
fn execute_and_state_transitions() {
    let mut s = logged_in();
    let (a, o) = step(&mut s, b"a SELECT INBOX\r\nb UID FETCH 1:* FLAGS\r\n");
    assert_eq!(o, "");
    let Action::Execute(cmd) = a else {
        panic!("{a:?}")
    };
    assert_eq!(cmd.tag, "a");
    assert!(
        matches!(cmd.body, CommandBody::Select { ref mailbox, read_only: false, .. } if mailbox == "INBOX")
    );
    s.command_done(Outcome {
        untagged: vec![
            Response::Data(Data::Exists(3)),
            Response::untagged(StatusKind::Ok, Some(Code::UidValidity(7)), "UIDs valid"),
        ],
        kind: StatusKind::Ok,
        code: Some(Code::ReadWrite),
        text: String::new(),
    });
    assert_eq!(
        s.state(),
        &State::Selected {
            mailbox: "INBOX".into(),
            read_only: false
        }
    );
    // The pipelined FETCH follows.
    let a = s.poll();
    assert!(matches!(
        a,
        Action::Execute(Command {
            body: CommandBody::Fetch(FetchCommand { uid: true, .. }),
            ..
        })
    ));
    assert_eq!(
        out(&mut s),
        "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] UIDs valid\r\na OK [READ-WRITE] SELECT completed\r\n"
    );
    s.command_done(Outcome::ok(vec![]));
    s.poll();
    assert_eq!(out(&mut s), "b OK UID FETCH completed\r\n");
    // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
    to_driver(&mut s, b"c SELECT nope\r\n");
    s.command_done(Outcome::no(Some(Code::NonExistent), "No such mailbox"));
    s.poll();
    assert_eq!(out(&mut s), "c NO [NONEXISTENT] No such mailbox\r\n");
    assert_eq!(s.state(), &State::Authenticated);
    // CLOSE / UNSELECT deselect.
    let mut s = selected(false);
    let (a, _) = step(&mut s, b"d CLOSE\r\n");
    assert!(matches!(a, Action::Execute(_)));
    s.command_done(Outcome::ok(vec![]));
    assert_eq!(s.state(), &State::Authenticated);
    let mut s = selected(false);
    step(&mut s, b"d UNSELECT\r\n");
    s.command_done(Outcome::ok(vec![]));
    assert_eq!(s.state(), &State::Authenticated);
    // A BAD outcome counts as an error; mismatched results are ignored.
    let mut s = selected(false);
    s.command_done(Outcome::ok(vec![]));
    s.auth_result(AuthOutcome::Ok);
    step(&mut s, b"e NOOP\r\n");
    s.command_done(Outcome {
        kind: StatusKind::Bad,
        ..Outcome::no(None, "x")
    });
    assert_eq!(s.stats().errors, 1);
}

#[test]
fn authenticated_commands_go_to_the_driver() {
    let mut s = logged_in();
    for input in [
        &b"a CREATE foo\r\n"[..],
        b"a DELETE foo\r\n",
        b"a RENAME foo bar\r\n",
        b"a SUBSCRIBE foo\r\n",
        b"a UNSUBSCRIBE foo\r\n",
        b"a LIST \"\" *\r\n",
        b"a LSUB \"\" *\r\n",
        b"a STATUS INBOX (MESSAGES)\r\n",
        b"a APPEND INBOX {1+}\r\nx\r\n",
        // Accepted with or without QUOTA (RFC 9208 §4.1.4 only requires it with it).
        b"a STATUS INBOX (DELETED DELETED-STORAGE)\r\n",
    ] {
        executes(&mut s, input);
    }
}

// ---- QUOTA (RFC 9208) ------------------------------------------------------------------

const QUOTA: u64 = 100 * 1024 * 1024;

fn quota_config() -> Arc<Config> {
    Arc::new(Config {
        quota_bytes: Some(QUOTA),
        ..Config::default()
    })
}

#[test]
fn quota_capabilities_only_with_a_limit() {
    let has = |caps: &[String], c: &str| caps.iter().any(|x| x == c);
    // No limit configured: nothing announced, in no state.
    let mut s = Session::new(config(false), Some(tls_info()));
    s.greet();
    assert!(!out(&mut s).contains("QUOTA"));
    let s = logged_in();
    assert!(!has(&s.capabilities(), "QUOTA"));
    // A limit: QUOTA and QUOTA=RES-STORAGE after TLS, before and after login; never
    // QUOTA=RES-MESSAGE (no message-count limit) or QUOTASET (SETQUOTA is refused).
    let mut s = Session::new(quota_config(), Some(tls_info()));
    s.greet();
    let g = out(&mut s);
    assert!(
        g.contains(" STATUS=SIZE QUOTA QUOTA=RES-STORAGE APPENDLIMIT="),
        "{g}"
    );
    let (_, o) = step(&mut s, b"l LOGIN alice secret\r\n");
    assert_eq!(o, "");
    s.auth_result(AuthOutcome::Ok);
    let o = out(&mut s);
    assert!(
        o.starts_with("l OK [CAPABILITY ") && o.contains(" QUOTA QUOTA=RES-STORAGE "),
        "{o}"
    );
    let caps = s.capabilities();
    for c in ["QUOTA=RES-MESSAGE", "QUOTASET"] {
        assert!(!has(&caps, c), "{caps:?}");
    }
    let (_, o) = step(&mut s, b"c CAPABILITY\r\n");
    assert!(o.contains(" QUOTA QUOTA=RES-STORAGE "), "{o}");
    // Before TLS only the minimal list.
    let mut s = Session::new(
        Arc::new(Config {
            starttls: true,
            quota_bytes: Some(QUOTA),
            ..Config::default()
        }),
        None,
    );
    s.greet();
    assert!(!out(&mut s).contains("QUOTA"));
}

#[test]
fn quota_commands_go_to_the_driver_in_authenticated_and_selected_states() {
    let mut s = logged_in_with(quota_config());
    let (a, o) = step(&mut s, b"g1 getquotaroot inbox\r\n");
    assert_eq!(o, "");
    let Action::Execute(cmd) = a else {
        panic!("{a:?}")
    };
    assert_eq!(cmd.body, CommandBody::GetQuotaRoot("INBOX".into()));
    s.command_done(Outcome::ok(crate::quota::quota_root_data(
        "INBOX",
        10 * 1024,
        QUOTA,
    )));
    assert_eq!(
        out(&mut s),
        "* QUOTAROOT \"INBOX\" \"\"\r\n* QUOTA \"\" (STORAGE 10 102400)\r\ng1 OK GETQUOTAROOT completed\r\n"
    );
    let (a, _) = step(&mut s, b"g2 GETQUOTA \"\"\r\n");
    assert!(
        matches!(&a, Action::Execute(c) if c.body == CommandBody::GetQuota(String::new())),
        "{a:?}"
    );
    s.command_done(Outcome::ok(vec![crate::quota::quota_data(0, QUOTA)]));
    assert_eq!(
        out(&mut s),
        "* QUOTA \"\" (STORAGE 0 102400)\r\ng2 OK GETQUOTA completed\r\n"
    );
    // A literal mailbox name: the continuation is offered.
    answers(
        &mut s,
        b"g3 GETQUOTAROOT {5}\r\n",
        "+ Ready for literal data\r\n",
    );
    let (a, _) = step(&mut s, b"Draft\r\n");
    assert!(matches!(a, Action::Execute(_)), "{a:?}");
    s.command_done(Outcome::no(Some(Code::NonExistent), "No such mailbox"));
    assert_eq!(out(&mut s), "g3 NO [NONEXISTENT] No such mailbox\r\n");
    // The selected state includes the authenticated commands; the mailbox stays selected.
    executes(&mut s, b"s SELECT INBOX\r\n");
    for input in [&b"g4 GETQUOTAROOT Sent\r\n"[..], b"g5 GETQUOTA \"\"\r\n"] {
        executes(&mut s, input);
    }
    assert!(matches!(s.state(), State::Selected { .. }));
    assert_eq!(s.stats().errors, 0);
}

#[test]
fn quota_refusals_answered_by_the_session() {
    let mut s = logged_in_with(quota_config());
    replies(
        &mut s,
        &[
            // RFC 9208 §4.1.1: only the account's root "" exists.
            (
                &b"a GETQUOTA \"User quota\"\r\n"[..],
                "a NO [NONEXISTENT] No such quota root\r\n",
            ),
            (
                b"b GETQUOTA INBOX\r\n",
                "b NO [NONEXISTENT] No such quota root\r\n",
            ),
            // RFC 9208 §4.1.3: well-formed, but users may not change their quota.
            (
                b"c SETQUOTA \"\" (STORAGE 512)\r\n",
                "c NO [NOPERM] Quotas can only be changed by the administrator\r\n",
            ),
            (
                b"d setquota \"\" ()\r\n",
                "d NO [NOPERM] Quotas can only be changed by the administrator\r\n",
            ),
            (
                b"e SETQUOTA other (STORAGE 1 MESSAGE 2)\r\n",
                "e NO [NOPERM] Quotas can only be changed by the administrator\r\n",
            ),
        ],
    );
    // NO is not an error; malformed commands are BAD and are.
    assert_eq!(s.stats().errors, 0);
    let (_, o) = step(&mut s, b"f SETQUOTA \"\" (STORAGE)\r\n");
    assert!(o.starts_with("f BAD "), "{o}");
    let (_, o) = step(&mut s, b"g GETQUOTA\r\n");
    assert!(o.starts_with("g BAD "), "{o}");
    assert_eq!(s.stats().errors, 2);
    // A SETQUOTA with a literal root is read (the command is valid) and then refused.
    answers(
        &mut s,
        b"h SETQUOTA {4}\r\n",
        "+ Ready for literal data\r\n",
    );
    answers(
        &mut s,
        b"root (STORAGE 1)\r\n",
        "h NO [NOPERM] Quotas can only be changed by the administrator\r\n",
    );
    // Over quota (RFC 9208 §4.3.1), as the driver answers an APPEND.
    let (a, _) = step(&mut s, b"i APPEND INBOX {1+}\r\nx\r\n");
    assert!(matches!(a, Action::Execute(_)));
    s.command_done(Outcome::over_quota());
    assert_eq!(out(&mut s), "i NO [OVERQUOTA] Quota exceeded\r\n");
}

#[test]
fn quota_commands_in_the_wrong_state_or_without_a_limit() {
    // Not authenticated: BAD, as for every authenticated-state command.
    let mut s = greeted(quota_config(), Some(tls_info()));
    replies(
        &mut s,
        &[
            (&b"a GETQUOTA \"\"\r\n"[..], "a BAD Not authenticated\r\n"),
            (b"b GETQUOTAROOT INBOX\r\n", "b BAD Not authenticated\r\n"),
            (
                b"c SETQUOTA \"\" (STORAGE 1)\r\n",
                "c BAD Not authenticated\r\n",
            ),
            (
                b"d GETQUOTAROOT {5}\r\n",
                "d BAD Command not valid in this state\r\n",
            ),
        ],
    );
    // No limit: the extension is not offered, its commands are unknown (BAD, counted),
    // and no literal upload is started for them.
    let mut s = logged_in();
    replies(
        &mut s,
        &[
            (
                &b"a GETQUOTA \"\"\r\n"[..],
                "a BAD Command not supported\r\n",
            ),
            (
                b"b GETQUOTAROOT INBOX\r\n",
                "b BAD Command not supported\r\n",
            ),
            (
                b"c SETQUOTA \"\" (STORAGE 1)\r\n",
                "c BAD Command not supported\r\n",
            ),
            (
                b"d GETQUOTAROOT {5}\r\n",
                "d BAD Command not valid in this state\r\n",
            ),
        ],
    );
    assert_eq!(s.stats().errors, 4);
    // The rejected literal's bytes are not taken for a command.
    answers(&mut s, b"e NOOP\r\n", "e OK NOOP completed\r\n");
}

#[test]
fn read_only_mailbox() {
    let mut s = selected(true);
    for cmd in [
        &b"a STORE 1 +FLAGS (\\Seen)\r\n"[..],
        b"a UID EXPUNGE 1\r\n",
        b"a EXPUNGE\r\n",
        b"a MOVE 1 Trash\r\n",
    ] {
        answers(&mut s, cmd, "a NO [READ-ONLY] Mailbox is read-only\r\n");
    }
    // Reading and copying are fine.
    let (a, _) = step(&mut s, b"b COPY 1 Trash\r\n");
    assert!(matches!(a, Action::Execute(_)));
}

#[test]
fn enable_and_condstore_rules() {
    let mut s = logged_in();
    answers(
        &mut s,
        b"a SELECT INBOX (QRESYNC (1 2))\r\n",
        "a BAD QRESYNC is not enabled\r\n",
    );
    answers(
        &mut s,
        b"b ENABLE qresync X-UNKNOWN\r\n",
        "* ENABLED QRESYNC\r\nb OK ENABLE completed\r\n",
    );
    assert!(s.enabled().condstore && s.enabled().qresync);
    answers(
        &mut s,
        b"c ENABLE CONDSTORE QRESYNC\r\n",
        "* ENABLED\r\nc OK ENABLE completed\r\n",
    );
    to_driver(&mut s, b"d SELECT INBOX (QRESYNC (1 2))\r\n");
    // VANISHED needs QRESYNC.
    let mut s = selected(false);
    let (_, o) = step(
        &mut s,
        b"e UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
    );
    assert_eq!(o, "e BAD QRESYNC is not enabled\r\n");
    // CONDSTORE-enabling commands (RFC 7162 §3.1).
    assert!(!s.enabled().condstore);
    to_driver(&mut s, b"f FETCH 1 (FLAGS MODSEQ)\r\n");
    assert!(s.enabled().condstore);
    for input in [
        &b"g SEARCH NOT (MODSEQ 5)\r\n"[..],
        b"g STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)\r\n",
        b"g UID FETCH 1 FLAGS (CHANGEDSINCE 3)\r\n",
    ] {
        let mut s = selected(false);
        let (a, _) = step(&mut s, input);
        assert!(matches!(a, Action::Execute(_)));
        assert!(
            s.enabled().condstore,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let mut s = logged_in();
    step(&mut s, b"h SELECT INBOX (CONDSTORE)\r\n");
    assert!(s.enabled().condstore);
}

#[test]
fn imap4rev2_uses_utf8_names() {
    let mut s = logged_in();
    answers(
        &mut s,
        b"a ENABLE IMAP4rev2\r\n",
        "* ENABLED IMAP4rev2\r\na OK ENABLE completed\r\n",
    );
    assert!(s.encode_options().utf8);
    let (a, _) = step(&mut s, b"b CREATE \"A&-B\"\r\n");
    let Action::Execute(Command {
        body: CommandBody::Create { mailbox, .. },
        ..
    }) = a
    else {
        panic!()
    };
    assert_eq!(mailbox, "A&-B");
    s.command_done(Outcome {
        untagged: vec![Response::Data(Data::List(crate::response::ListItem {
            delimiter: Some('/'),
            name: "Entwürfe".into(),
            ..Default::default()
        }))],
        ..Outcome::ok(vec![])
    });
    assert_eq!(
        out(&mut s),
        "* LIST () \"/\" \"Entwürfe\"\r\nb OK CREATE completed\r\n"
    );
    // A rev1 client gets modified UTF-7.
    let mut s = logged_in();
    let (a, _) = step(&mut s, b"b CREATE \"A&-B\"\r\n");
    assert!(
        matches!(a, Action::Execute(Command { body: CommandBody::Create { ref mailbox, .. }, .. }) if mailbox == "A&B")
    );
}

#[test]
fn idle() {
    let mut s = selected(false);
    let (a, o) = step(&mut s, b"a IDLE\r\n");
    assert_eq!((a, o.as_str()), (Action::Idle, "+ idling\r\n"));
    s.idle_update(vec![Response::Data(Data::Exists(4))]);
    assert_eq!(s.poll(), Action::Idle);
    assert_eq!(out(&mut s), "* 4 EXISTS\r\n");
    let (a, o) = step(&mut s, b"DO");
    assert_eq!((a, o.as_str()), (Action::Idle, ""));
    answers(&mut s, b"NE\r\n", "a OK IDLE terminated\r\n");
    // Updates outside IDLE are ignored.
    s.idle_update(vec![Response::Data(Data::Exists(5))]);
    assert_eq!(out(&mut s), "");
    // Anything but DONE ends IDLE with BAD.
    step(&mut s, b"b IDLE\r\n");
    answers(&mut s, b"c NOOP\r\n", "b BAD Expected DONE\r\n");
    // IDLE in the authenticated state is allowed; an over-long line ends it.
    let mut s = logged_in();
    step(&mut s, b"d IDLE\r\n");
    let (_, o) = step(&mut s, &[b'x'; 200]);
    assert_eq!(o, "");
    answers(&mut s, b"\r\n", "d BAD Expected DONE\r\n");
}

#[test]
fn pipelined_idle_and_sasl() {
    // DONE and the next command in the same segment as IDLE.
    let mut s = selected(false);
    let (a, o) = step(&mut s, b"a IDLE\r\nDONE\r\nb NOOP\r\n");
    assert!(matches!(a, Action::Execute(_)), "{a:?}");
    assert_eq!(o, "+ idling\r\na OK IDLE terminated\r\n");
    // The SASL response pipelined after AUTHENTICATE.
    let mut s = tls_session();
    let (a, o) = step(&mut s, b"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n");
    assert!(matches!(a, Action::Authenticate { .. }));
    assert_eq!(o, "+ \r\n");
}

#[test]
fn literals_and_limits() {
    // Synchronising literal: continuation request, then the command.
    let mut s = tls_session();
    answers(&mut s, b"a LOGIN {5}\r\n", "+ Ready for literal data\r\n");
    let (a, _) = step(&mut s, b"alice {6}\r\n");
    assert_eq!(a, Action::NeedInput);
    let (a, _) = step(&mut s, b"secret\r\n");
    assert!(matches!(a, Action::Authenticate { .. }));
    // Before login: no APPEND upload starts.
    let mut s = tls_session();
    answers(
        &mut s,
        b"a APPEND INBOX {100}\r\nb NOOP\r\n",
        "a BAD Command not valid in this state\r\nb OK NOOP completed\r\n",
    );
    // ... and the pre-auth limits apply to everything.
    answers(
        &mut s,
        b"c LOGIN {100000}\r\n",
        "c BAD [TOOBIG] literal too big (100000 octets, limit 8192)\r\n",
    );
    // Over APPENDLIMIT after login: NO [TOOBIG] (RFC 7889).
    let mut s = logged_in();
    answers(
        &mut s,
        b"d APPEND INBOX {999999999999}\r\n",
        "d NO [TOOBIG] Message exceeds the APPENDLIMIT\r\n",
    );
    answers(
        &mut s,
        b"e APPEND INBOX {100000}\r\n",
        "+ Ready for literal data\r\n",
    );
    // A huge non-synchronising literal cannot be skipped: BAD, BYE, close.
    let mut s = logged_in();
    let (a, o) = step(&mut s, b"f APPEND INBOX {999999999999+}\r\ng LOGOUT\r\n");
    assert_eq!(a, Action::Close);
    assert_eq!(
        o,
        "f NO [TOOBIG] Message exceeds the APPENDLIMIT\r\n* BYE Literal too big, closing connection\r\n"
    );
    let mut s = tls_session();
    let (a, o) = step(&mut s, b"f LOGIN {999999+}\r\n");
    assert_eq!(a, Action::Close);
    assert!(
        o.starts_with("f BAD [TOOBIG]")
            && o.ends_with("* BYE Literal too big, closing connection\r\n"),
        "{o}"
    );
}

#[test]
fn syntax_errors_and_error_limit() {
    let mut s = greeted(
        Arc::new(Config {
            max_errors: 3,
            ..Config::default()
        }),
        Some(tls_info()),
    );
    answers(
        &mut s,
        b"a NOOP extra\r\n",
        "a BAD unexpected arguments\r\n",
    );
    answers(&mut s, b"+x NOOP\r\n", "* BAD invalid tag\r\n");
    let (a, o) = step(&mut s, b"c FROB\r\nd NOOP\r\n");
    assert_eq!(a, Action::Close);
    assert_eq!(o, "c BAD unknown command\r\n* BYE Too many errors\r\n");
    assert_eq!(s.state(), &State::Logout);
}

#[test]
fn search_badcharset() {
    let mut s = selected(false);
    let (a, o) = step(&mut s, b"a SEARCH CHARSET KOI8-R TEXT x\r\n");
    assert_eq!(a, Action::NeedInput);
    assert_eq!(
        o,
        "a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
    );
    let (a, _) = step(&mut s, b"b UID SEARCH RETURN (SAVE) UNSEEN\r\n");
    assert!(matches!(
        a,
        Action::Execute(Command {
            body: CommandBody::Search(SearchCommand { uid: true, .. }),
            ..
        })
    ));
    s.command_done(Outcome::ok(vec![]));
    let (a, _) = step(&mut s, b"c FETCH $ FLAGS\r\n");
    assert!(matches!(
        a,
        Action::Execute(Command {
            body: CommandBody::Fetch(FetchCommand {
                set: SequenceSet::Saved,
                ..
            }),
            ..
        })
    ));
}

#[test]
fn any_state_commands() {
    let mut s = greeted(config(true), None);
    answers(
        &mut s,
        b"a ID (\"name\" \"x\")\r\nb NOOP\r\n",
        "* ID (\"name\" \"hato\")\r\na OK ID completed\r\nb OK NOOP completed\r\n",
    );
    let mut s = logged_in();
    answers(
        &mut s,
        b"c NAMESPACE\r\n",
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nc OK NAMESPACE completed\r\n",
    );
    // NOOP in the selected state goes to the driver (it reports mailbox changes).
    let mut s = selected(false);
    to_driver(&mut s, b"d NOOP\r\n");
}

#[test]
fn logout_timeout_shutdown() {
    let mut s = logged_in();
    let (a, o) = step(&mut s, b"a LOGOUT\r\nb NOOP\r\n");
    assert_eq!(a, Action::Close);
    assert_eq!(o, "* BYE Logging out\r\na OK LOGOUT completed\r\n");
    assert_eq!(s.poll(), Action::Close);
    s.feed(b"c NOOP\r\n");
    assert_eq!(s.poll(), Action::Close);
    assert_eq!(out(&mut s), "");
    let mut s = logged_in();
    s.timeout();
    assert_eq!(s.poll(), Action::Close);
    assert_eq!(out(&mut s), "* BYE Autologout; idle for too long\r\n");
    let mut s = tls_session();
    s.shutdown();
    s.shutdown();
    assert_eq!(s.poll(), Action::Close);
    assert_eq!(out(&mut s), "* BYE Server shutting down\r\n");
}

#[test]
fn debug_output_has_no_secrets() {
    let mut s = tls_session();
    s.feed(b"a LOGIN alice hunter2\r\nb LOGIN bob swordfish");
    let a = s.poll();
    let dbg = format!("{a:?} {s:?}");
    assert!(
        !dbg.contains("hunter2") && !dbg.contains("swordfish"),
        "{dbg}"
    );
}

// ---- property tests ------------------------------------------------------------------

/// A driver that answers every action; returns the output.
fn drive(s: &mut Session, input: &[u8], chunks: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pieces = crate::testing::cut(input, chunks).into_iter();
    for _ in 0..10_000 {
        match s.poll() {
            Action::NeedInput | Action::Idle => {
                out.extend(s.output());
                let Some(piece) = pieces.next() else { break };
                s.feed(piece);
            }
            Action::StartTls => s.tls_established(tls_info()),
            Action::Close => break,
            Action::Authenticate { .. } => s.auth_result(AuthOutcome::Ok),
            Action::Execute(_) => {
                s.command_done(Outcome::ok(vec![Response::Data(Data::Exists(1))]))
            }
        }
    }
    out.extend(s.output());
    out
}

fn piece() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"a LOGIN alice secret\r\n",
        b"a STARTTLS\r\n",
        b"b SELECT INBOX\r\n",
        b"b EXAMINE INBOX\r\n",
        b"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
        b"c ENABLE QRESYNC IMAP4rev2\r\n",
        b"d IDLE\r\n",
        b"DONE\r\n",
        b"e AUTHENTICATE PLAIN\r\n",
        b"AGFsaWNlAHNlY3JldA==\r\n",
        b"f APPEND INBOX {3}\r\nabc\r\n",
        b"f APPEND INBOX {999999999999+}\r\n",
        b"g STORE 1 +FLAGS (\\Seen)\r\n",
        b"h CLOSE\r\n",
        b"i LOGOUT\r\n",
        b"j GETQUOTAROOT {5}\r\nINBOX\r\n",
        b"j GETQUOTA \"\"\r\n",
        b"j SETQUOTA \"\" (STORAGE 1)\r\n",
    ];
    crate::testing::piece(PIECES, "[ -~]{0,20}\r\n", 20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_sessions_never_panic(
        pieces in proptest::collection::vec(piece(), 0..15),
        chunks in proptest::collection::vec(1usize..30, 0..30),
        starttls in any::<bool>(),
        quota in any::<bool>(),
    ) {
        let input = pieces.concat();
        let config = Arc::new(Config {
            starttls,
            quota_bytes: quota.then_some(1 << 20),
            ..Config::default()
        });
        let mut s = Session::new(config.clone(), if starttls { None } else { Some(tls_info()) });
        s.greet();
        let out = drive(&mut s, &input, &chunks);
        // Every response line is well formed: it starts with "* ", "+ " or a tag.
        prop_assert!(out.ends_with(b"\r\n") || out.is_empty());
        // Chunking does not change the conversation, except across STARTTLS, where
        // bytes that arrived with the command are discarded by design.
        if input.windows(8).any(|w| w.eq_ignore_ascii_case(b"STARTTLS")) {
            return Ok(());
        }
        let mut s2 = Session::new(config, if starttls { None } else { Some(tls_info()) });
        s2.greet();
        let out2 = drive(&mut s2, &input, &vec![1; input.len()]);
        prop_assert_eq!(out, out2);
    }
}

#[test]
fn idle_session_is_small() {
    // The benchmark target is memory per idle connection; keep the state machine lean.
    let size = std::mem::size_of::<Session>();
    assert!(size <= 1024, "Session is {size} bytes");
    let mut s = logged_in();
    let _ = step(&mut s, b"a NOOP\r\n");
    assert_eq!(s.framer.buffered(), 0);
}

/// A mailbox name no mailbox can have (not valid modified UTF-7) is answered NO, like a
/// missing mailbox: a BAD makes clients such as imaptest drop the connection.
#[test]
fn impossible_mailbox_names_are_no_not_bad() {
    let mut s = logged_in();
    let (_, o) = step(&mut s, b"a SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}\r\n");
    assert!(o.starts_with("a NO [CANNOT] "), "{o}");
    let (_, o) = step(&mut s, b"b NOOP\r\n");
    assert!(o.starts_with("b OK"), "{o}");
}
