//! The promises of "What hato always does": TLS before passwords, no open relay, no sender
//! spoofing, no STARTTLS injection, no SMTP smuggling, limits, brute-force throttling, early talkers.

mod common;

use std::time::{Duration, Instant};

use common::*;

const OUTSIDE: &str = "someone@outside.example";

// ---------------------------------------------------------------------------------------------
// TLS before AUTH/MAIL on submission; no AUTH on the MX port.

#[test]
fn submission_refuses_auth_and_mail_before_starttls() {
    let server = TestServer::start();
    let mut c = Raw::greeted(server.ports.submission);
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH advertised before TLS: {ehlo}");
    c.expect(&auth_plain_cmd(USER, PASSWORD), "530 5.7.0");
    c.expect("AUTH LOGIN", "530 5.7.0");
    c.expect(&format!("MAIL FROM:<{USER}>"), "530 5.7.0");
    c.expect("NOOP", "250");
    c.expect("QUIT", "221");
}

#[test]
fn submission_refuses_mail_after_tls_without_auth() {
    let server = TestServer::start();
    let got = starttls_conv(
        server.ports.submission,
        None,
        &[
            "EHLO client.example",
            &format!("MAIL FROM:<{USER}>"),
            &format!("RCPT TO:<{USER}>"),
            "QUIT",
        ],
    );
    assert_replies(&got, &["250", "530 5.7.0", "5", "221"]);
    assert!(got[0].contains("AUTH PLAIN LOGIN"), "{}", got[0]);
    assert!(server.inbox(USER).is_empty());
}

#[test]
fn mx_port_never_offers_or_accepts_auth() {
    let server = TestServer::start();
    let auth = auth_plain_cmd(USER, PASSWORD);
    let got = smtp_conv(
        server.ports.smtp,
        false,
        &[
            "EHLO client.example",
            &auth,
            "STARTTLS",
            "tls",
            "EHLO client.example",
            &auth,
            "AUTH LOGIN",
            "QUIT",
        ],
    );
    assert_replies(
        &got,
        &[
            "220 ",
            "250",
            "503",
            "220 ",
            "TLS TLSv1.3 ",
            "250",
            "503",
            "503",
            "221",
        ],
    );
    assert!(
        !got[1].contains("AUTH"),
        "AUTH offered on port 25: {}",
        got[1]
    );
    assert!(
        !got[5].contains("AUTH"),
        "AUTH offered on port 25 after TLS: {}",
        got[5]
    );
}

// ---------------------------------------------------------------------------------------------
// STARTTLS command injection (CVE-2011-0411 class): bytes after STARTTLS are discarded.

fn starttls_injection(port: u16, mail_after_ehlo: &str) {
    let mail = format!("MAIL FROM:<{OUTSIDE}>");
    let got = starttls_conv(
        port,
        Some("NOOP"),
        &["silence:0.25", &mail, "EHLO client.example", &mail, "QUIT"],
    );
    assert_replies(
        &got,
        &[
            // The injected NOOP must not be answered, neither in plaintext nor inside TLS.
            "SILENT",
            // All state is reset by TLS: a new EHLO is required.
            "503",
            "250",
            mail_after_ehlo,
            "221",
        ],
    );
    assert_eq!(got.len(), 5, "{got:#?}");
    assert!(!got[2].contains("STARTTLS"), "{}", got[2]);
}

#[test]
fn starttls_injection_is_discarded_on_mx() {
    let server = TestServer::start();
    starttls_injection(server.ports.smtp, "250 2.1.0");
}

#[test]
fn starttls_injection_is_discarded_on_submission() {
    let server = TestServer::start();
    starttls_injection(server.ports.submission, "530 5.7.0");
}

#[test]
fn starttls_injection_of_a_whole_transaction_is_discarded() {
    let server = TestServer::start();
    let got = starttls_conv(
        server.ports.smtp,
        Some("MAIL FROM:<evil@outside.example>\r\nRCPT TO:<alice@example.test>"),
        &[
            "EHLO client.example",
            // Had the injected MAIL survived, this would be "503 nested MAIL"; RCPT must need MAIL.
            "RCPT TO:<alice@example.test>",
            "DATA",
            "silence:0.3",
        ],
    );
    assert_replies(&got, &["250", "503", "503", "SILENT"]);
    assert!(server.inbox(USER).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Open relay.

const RELAY_TRICKS: &[&str] = &[
    "<bob@remote.example>",
    "<bob%remote.example@example.test>",
    "<@example.test:bob@remote.example>",
    "<\"bob@remote.example\"@example.test>",
    "<bob@remote.example@example.test>",
    "<remote.example!bob@example.test>",
    "<bob@remote.example.>",
    "<alice@example.test.>",
    "<BOB@REMOTE.EXAMPLE>",
    "<bob@[127.0.0.1]>",
    "<bob@[IPv6:::1]>",
];

#[test]
fn mx_is_never_an_open_relay() {
    // Enough error budget to see every refusal on one connection.
    let server = TestServer::start_with("", &format!("[limits]\nmax_errors = 100\n{FAST_AUTH}"));
    let mut c = Raw::greeted(server.ports.smtp);
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(ehlo.contains("SMTPUTF8"), "{ehlo}");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250 2.1.0");
    let mut bad = Vec::new();
    for rcpt in RELAY_TRICKS {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        if ![501, 550, 553, 554].contains(&code(&r)) {
            bad.push(format!("RCPT TO:{rcpt} -> {r:?}"));
        }
    }
    c.expect("RSET", "250");
    // IDN domain (U-label) with SMTPUTF8.
    c.expect(&format!("MAIL FROM:<{OUTSIDE}> SMTPUTF8"), "250 2.1.0");
    let r = c.cmd("RCPT TO:<bob@bücher.example>");
    if ![501, 550, 553, 554].contains(&code(&r)) {
        bad.push(format!("RCPT TO:<bob@bücher.example> -> {r:?}"));
    }
    assert!(
        bad.is_empty(),
        "relay tricks not refused with 5xx:\n{}",
        bad.join("\n")
    );

    // A relay attempt is never accepted, even if DATA is tried.
    c.expect("DATA", "5");
    c.expect("RSET", "250");
    // Local recipients: case-insensitive; unknown users are refused at RCPT.
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250 2.1.0");
    c.expect("RCPT TO:<nobody@example.test>", "550 5.1.1");
    c.expect("RCPT TO:<ALICE@Example.Test>", "250 2.1.5");
    c.expect("DATA", "354");
    let r = c.data("Subject: case test\r\n\r\nhello\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    c.expect("QUIT", "221");
    assert!(
        server.queue().is_empty(),
        "the MX port queued mail: {:?}",
        server.queue()
    );
    assert!(server.only_message(USER).contains("Subject: case test"));
}

#[test]
fn remote_domain_is_relay_denied_554() {
    let server = TestServer::start();
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250");
    c.expect("RCPT TO:<bob@remote.example>", "554 5.7.1");
    c.expect("RCPT TO:<bob@sub.example.test>", "554 5.7.1");
    c.expect("RSET", "250");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}> SMTPUTF8"), "250");
    c.expect("RCPT TO:<bob@bücher.example>", "554 5.7.1");
    assert!(server.queue().is_empty());
}

#[test]
fn unauthenticated_submission_cannot_relay() {
    let server = TestServer::start();
    let got = submissions(
        &server,
        &[
            &format!("MAIL FROM:<{USER}>"),
            "RCPT TO:<bob@remote.example>",
        ],
    );
    assert_replies(&got, &["220 ", "250", "530 5.7.0", "5"]);
    assert!(server.queue().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Sender spoofing on submission.

#[test]
fn submission_sender_must_be_own_address_or_alias() {
    let server = TestServer::start();
    server.add_user("bob@example.test", "bob's password");
    let auth = auth_plain_cmd(USER, PASSWORD);
    let run = |lines: &[&str]| {
        let mut all = vec![auth.as_str()];
        all.extend(lines);
        submissions(&server, &all)
    };
    let got = run(&[
        "MAIL FROM:<bob@example.test>",
        "MAIL FROM:<sales@example.test>",
        "MAIL FROM:<>",
        "MAIL FROM:<alice@remote.example>",
        "MAIL FROM:<ALICE@EXAMPLE.TEST>",
    ]);
    assert_replies(
        &got,
        &[
            "220 ",
            "250",
            "235 2.7.0",
            "553 5.7.1",
            "553 5.7.1",
            "553 5.7.1",
            "553 5.7.1",
            "250",
        ],
    );

    server
        .cli(&["alias", "add", "sales@example.test", USER], None)
        .assert_ok();
    let got = run(&[
        "MAIL FROM:<sales@example.test>",
        &format!("RCPT TO:<{USER}>"),
        "DATA",
        "Subject: from the alias\r\n\r\nhi\r\n.",
        "MAIL FROM:<bob@example.test>",
    ]);
    assert_replies(
        &got,
        &[
            "220 ",
            "250",
            "235 2.7.0",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "553 5.7.1",
        ],
    );
    let msg = server.only_message(USER);
    assert!(
        msg.starts_with("Return-Path: <sales@example.test>\r\n"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// SMTP smuggling: only <CRLF>.<CRLF> ends DATA.

const SMUGGLE_ENDINGS: &[(&str, &str)] = &[
    ("LF.LF", "\n.\n"),
    ("CRLF.LF", "\r\n.\n"),
    ("LF.CRLF", "\n.\r\n"),
    ("CR.CR", "\r.\r"),
    ("CRLF.CR", "\r\n.\r"),
];

fn smuggle(port: u16, name: &str, ending: &str) -> (String, String) {
    let mut c = Raw::hello(port, "client.example");
    c.envelope(OUTSIDE, USER);
    let data = format!(
        "From: <{OUTSIDE}>\r\nSubject: carrier {name}\r\n\r\nhello {name}{ending}\
         MAIL FROM:<evil@x>\r\nRCPT TO:<{USER}>\r\nDATA\r\nFrom: <evil@x>\r\nSubject: smuggled {name}\r\n\r\n\
         smuggled body {name}\r\n.\r\n"
    );
    // One write, as an attacker would.
    c.send(data.as_bytes());
    let reply = c.reply();
    // No further replies: nothing after the bare ending was taken for commands.
    let extra = c.silent(Duration::from_millis(250));
    c.expect("QUIT", "221");
    (reply, extra)
}

/// Every variant on its own connection, concurrently; (name, reply to the DATA, anything after it).
fn smuggle_all(port: u16) -> Vec<(&'static str, String, String)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = SMUGGLE_ENDINGS
            .iter()
            .map(|(name, ending)| scope.spawn(move || (*name, smuggle(port, name, ending))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (name, (reply, extra)) = h.join().unwrap();
                (name, reply, extra)
            })
            .collect()
    })
}

#[test]
fn smtp_smuggling_is_rejected() {
    let server = TestServer::start();
    for (name, reply, extra) in smuggle_all(server.ports.smtp) {
        assert!(
            reply.starts_with("554 5.5.0"),
            "{name}: expected exactly one 554 5.5.0 for the DATA, got {reply:?}"
        );
        assert_eq!(
            extra, "",
            "{name}: a second transaction was answered: {extra:?}"
        );
    }
    let inbox = server.inbox(USER);
    assert!(inbox.is_empty(), "stored: {inbox:#?}");
}

#[test]
fn smtp_smuggling_normalized_stays_one_message() {
    let server = TestServer::start_with("bare_line_endings = \"normalize\"\n", FAST_AUTH);
    for (name, reply, extra) in smuggle_all(server.ports.smtp) {
        assert!(reply.starts_with("250 2.0.0"), "{name}: {reply:?}");
        assert_eq!(
            extra, "",
            "{name}: a second transaction was answered: {extra:?}"
        );
    }
    let inbox = server.inbox(USER);
    assert_eq!(inbox.len(), SMUGGLE_ENDINGS.len(), "{inbox:#?}");
    for (name, _) in SMUGGLE_ENDINGS {
        let found: Vec<&String> = inbox
            .iter()
            .filter(|m| m.contains(&format!("Subject: carrier {name}\r\n")))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {inbox:#?}");
        let m = found[0];
        assert!(only_crlf(m), "{name}: bare CR/LF stored: {m:?}");
        assert_eq!(
            header_values(m, "Subject"),
            vec![format!("carrier {name}")],
            "{m:?}"
        );
        let b = body(m);
        assert!(b.starts_with(&format!("hello {name}\r\n")), "{name}: {b:?}");
        assert!(b.contains("MAIL FROM:<evil@x>\r\n"), "{name}: {b:?}");
        assert!(
            b.contains(&format!("Subject: smuggled {name}\r\n")),
            "{name}: {b:?}"
        );
        assert!(
            b.ends_with(&format!("smuggled body {name}\r\n")),
            "{name}: {b:?}"
        );
    }
    assert!(!inbox.iter().any(|m| m.starts_with("Return-Path: <evil@x>")));
}

// ---------------------------------------------------------------------------------------------
// Limits.

#[test]
fn message_size_limit() {
    let server = TestServer::start_with(
        "",
        &format!("[limits]\nmax_message_size = 10000\n{FAST_AUTH}"),
    );
    let mut c = Raw::greeted(server.ports.smtp);
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(ehlo.contains("SIZE 10000"), "{ehlo}");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}> SIZE=20000"), "552 5.3.4");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}> SIZE=5000"), "250");
    c.expect(&format!("RCPT TO:<{USER}>"), "250");
    c.expect("DATA", "354");
    // The client lied about SIZE: the real data is over the limit.
    let mut data = String::from("Subject: big\r\n\r\n");
    while data.len() < 15_000 {
        data.push_str(&"x".repeat(98));
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    c.send(data.as_bytes());
    let r = c.reply();
    assert!(r.starts_with("552 5.3.4"), "{r:?}");
    // The session continues and a message under the limit goes through.
    c.deliver(OUTSIDE, USER, "Subject: small\r\n\r\nsmall\r\n");
    assert!(server.only_message(USER).contains("Subject: small"));
}

#[test]
fn recipient_limit() {
    let server = TestServer::start_with("", &format!("[limits]\nmax_recipients = 2\n{FAST_AUTH}"));
    for u in ["bob@example.test", "carol@example.test"] {
        server.add_user(u, "pw for tests");
    }
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250");
    c.expect(&format!("RCPT TO:<{USER}>"), "250");
    c.expect("RCPT TO:<bob@example.test>", "250");
    c.expect("RCPT TO:<carol@example.test>", "452 4.5.3");
    c.expect("DATA", "354");
    let r = c.data("Subject: two of three\r\n\r\nhi\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r:?}");
    assert_eq!(server.inbox(USER).len(), 1);
    assert_eq!(server.inbox("bob@example.test").len(), 1);
    assert_eq!(server.inbox("carol@example.test").len(), 0);
}

#[test]
fn overlong_command_line_is_refused_and_session_continues() {
    let server = TestServer::start();
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    // 1300 octets including CRLF: beyond 512 + what MAIL parameters may add (RFC 1870,
    // RFC 3461 §4, RFC 4954 §5).
    let long = format!("MAIL FROM:<{}@outside.example>", "a".repeat(1270));
    assert_eq!(long.len() + 2, 1300);
    c.expect(&long, "500 5.5.2");
    // Nothing of the long line is interpreted as a command afterwards.
    assert_eq!(c.silent(Duration::from_millis(300)), "");
    c.expect("NOOP", "250");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250");
    c.expect("QUIT", "221");
}

#[test]
fn too_many_errors_disconnects_with_421() {
    let server = TestServer::start_with("", &format!("[limits]\nmax_errors = 3\n{FAST_AUTH}"));
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    let mut replies = Vec::new();
    for _ in 0..6 {
        let r = c.cmd("BOGUS command");
        let mut done = r.is_empty() || r.contains("421 ");
        replies.push(r);
        if !done {
            // The 421 may follow the last error reply in the same write: never write into a closed socket.
            let more = c.silent(Duration::from_millis(150));
            done = !more.is_empty();
            replies.push(more);
        }
        if done {
            break;
        }
    }
    let all = replies.concat();
    let errors_before = all.lines().filter(|l| l.starts_with('5')).count();
    assert!(all.contains("421 4."), "never disconnected: {replies:#?}");
    assert!(
        (2..=3).contains(&errors_before),
        "421 after {errors_before} errors with max_errors = 3: {replies:#?}"
    );
    let (rest, took) = c.until_closed(Duration::from_secs(5));
    assert!(
        rest.lines().all(|l| l.starts_with("421 ")),
        "data after 421: {rest:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "the connection stayed open after 421"
    );
}

// ---------------------------------------------------------------------------------------------
// Brute force.

#[test]
fn auth_brute_force_is_throttled_per_ip() {
    let server = TestServer::start_with(
        "",
        "[auth]\nfailure_delay_ms = 50\nmax_failures_per_ip = 3\n",
    );
    let wrong = auth_plain_cmd(USER, "wrong password");
    let attacker = |lines: &[&str]| submissions_from(&server, "attacker.example", lines);
    let got = attacker(&[&wrong, &wrong, &wrong, &wrong, "eof:3"]);
    assert_replies(
        &got,
        &[
            "220 ",
            "250",
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "454 4.7.0",
            "EOF",
        ],
    );
    // Even the right password is refused from this address now, also with AUTH LOGIN.
    let got = attacker(&[&auth_plain_cmd(USER, PASSWORD), "eof:3"]);
    assert_replies(&got, &["220 ", "250", "454 4.7.0", "EOF"]);
    let got = attacker(&[
        "AUTH LOGIN",
        &base64(USER.as_bytes()),
        &base64(PASSWORD.as_bytes()),
    ]);
    assert_replies(&got, &["220 ", "250", "334 ", "334 ", "454 4.7.0"]);
}

#[test]
fn auth_failure_is_delayed_and_success_works() {
    let server = TestServer::start_with("", "[auth]\nfailure_delay_ms = 400\n");
    let start = Instant::now();
    let got = submissions(&server, &[&auth_plain_cmd(USER, "nope")]);
    assert_replies(&got, &["220 ", "250", "535 5.7.8"]);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "no failure delay"
    );
    let auth = auth_plain_cmd(USER, PASSWORD);
    // AUTH twice is a sequence error.
    let got = submissions(&server, &[&auth, &auth]);
    assert_replies(&got, &["220 ", "250", "235 2.7.0", "503"]);
}

// ---------------------------------------------------------------------------------------------
// Early talkers (pregreet).

#[test]
fn early_talker_is_rejected() {
    let server = TestServer::start_with("greeting_delay_ms = 1000\n", FAST_AUTH);
    let mut c = Raw::connect(server.ports.smtp);
    c.send(b"EHLO hasty.example\r\n");
    let (all, took) = c.until_closed(Duration::from_secs(5));
    assert!(all.starts_with("554"), "early talker: {all:?}");
    assert!(
        !all.contains("250"),
        "commands of an early talker were processed: {all:?}"
    );
    assert!(
        !all.contains("\r\n220 ") && !all.starts_with("220"),
        "{all:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "the connection was not closed"
    );

    // A patient client gets the greeting after the delay.
    let start = Instant::now();
    let mut c = Raw::greeted(server.ports.smtp);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    c.expect("EHLO patient.example", "250");
}

// ---------------------------------------------------------------------------------------------
// More listener settings and protocol corners.

#[test]
fn mx_accepts_the_null_sender() {
    let server = TestServer::start();
    let mut c = Raw::hello(server.ports.smtp, "mta.example");
    c.expect("MAIL FROM:<>", "250 2.1.0");
    c.expect(&format!("RCPT TO:<{USER}>"), "250 2.1.5");
    c.expect("DATA", "354");
    let r = c.data("Subject: Undelivered Mail Returned to Sender\r\n\r\nbounce\r\n");
    assert!(r.starts_with("250 2.0.0"));
    let msg = server.only_message(USER);
    assert!(msg.starts_with("Return-Path: <>\r\n"), "{msg}");
}

#[test]
fn mx_with_require_tls_refuses_plaintext_mail() {
    let server = TestServer::start_with("require_tls = true\n", FAST_AUTH);
    let mut c = Raw::greeted(server.ports.smtp);
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "530 5.7.0");
    c.expect(&format!("RCPT TO:<{USER}>"), "530 5.7.0");
    c.expect("DATA", "530 5.7.0");
    let got = starttls_conv(
        server.ports.smtp,
        None,
        &[
            "EHLO client.example",
            &format!("MAIL FROM:<{OUTSIDE}>"),
            &format!("RCPT TO:<{USER}>"),
        ],
    );
    assert_replies(&got, &["250", "250 2.1.0", "250 2.1.5"]);
}

#[test]
fn plaintext_submission_listener_can_never_authenticate() {
    let port = free_port();
    let extra = format!(
        "{FAST_AUTH}[[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:{port}\"\ntls = \"none\"\n"
    );
    let server = TestServer::start_with("", &extra);
    let mut c = Raw::greeted(port);
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let r = c.cmd(&auth_plain_cmd(USER, PASSWORD));
    assert!(
        matches!(code(&r), 503 | 530 | 538),
        "AUTH in plaintext: {r:?}"
    );
    c.expect(&format!("MAIL FROM:<{USER}>"), "530 5.7.0");
    c.expect("RCPT TO:<bob@remote.example>", "5");
    assert!(server.queue().is_empty());
}

#[test]
fn auth_with_a_foreign_authorization_identity_is_refused() {
    let server = TestServer::start();
    server.add_user("bob@example.test", "bob pw");
    // Alice's valid credentials, asking to act as bob.
    let creds = base64(format!("bob@example.test\0{USER}\0{PASSWORD}").as_bytes());
    let own = base64(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes());
    let got = submissions(
        &server,
        &[&format!("AUTH PLAIN {creds}"), &format!("AUTH PLAIN {own}")],
    );
    assert_replies(&got, &["220 ", "250", "535 5.7.8", "235 2.7.0"]);
}

#[test]
fn connections_per_ip_are_limited() {
    let server = TestServer::start_with(
        "",
        &format!("[limits]\nmax_connections_per_ip = 2\n{FAST_AUTH}"),
    );
    // The harness's start-up probes may still hold a slot for a moment: wait for a greeting.
    let greeted = |port: u16| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut r = Raw::connect(port);
            let g = r.reply();
            if g.starts_with("220 ") {
                return r;
            }
            assert!(Instant::now() < deadline, "no slot: {g:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let a = greeted(server.ports.smtp);
    let _b = greeted(server.ports.submission);
    let mut c = Raw::connect(server.ports.smtp);
    let (all, took) = c.until_closed(Duration::from_secs(5));
    assert!(all.starts_with("421 4.7.0"), "{all:?}");
    assert!(took < Duration::from_secs(4), "not closed after 421");
    // The slot is freed when a connection ends, and a client that reconnects at once is not
    // refused for the moment the old connection takes to clean up.
    let mut a = a;
    a.expect("QUIT", "221");
    drop(a);
    let mut d = Raw::connect(server.ports.smtp);
    let g = d.reply();
    assert!(g.starts_with("220 "), "reconnect at once: {g:?}");
    d.expect("EHLO client.example", "250");
}

#[test]
fn idle_clients_time_out_with_421() {
    let server = TestServer::start_with(
        "",
        &format!(
            "[limits]\ncommand_timeout_secs = 1\nunauthenticated_timeout_secs = 1\n{FAST_AUTH}"
        ),
    );
    // Both idle at once: one second for the whole test.
    let mut idle: Vec<Raw> = [server.ports.smtp, server.ports.submission]
        .into_iter()
        .map(|port| {
            let mut c = Raw::greeted(port);
            c.expect("EHLO idle.example", "250");
            c
        })
        .collect();
    let start = Instant::now();
    for c in &mut idle {
        let (all, _) = c.until_closed(Duration::from_secs(5));
        assert!(all.starts_with("421 4.4.2"), "{all:?}");
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "timeout after {took:?}"
    );
}

#[test]
fn bdat_chunks_are_data_never_commands() {
    let server = TestServer::start();
    let mut c = Raw::greeted(server.ports.smtp);
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(ehlo.contains("CHUNKING"), "{ehlo}");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250");
    c.expect(&format!("RCPT TO:<{USER}>"), "250");
    let chunk1 = "Subject: chunked\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@x>\r\n";
    c.send(format!("BDAT {}\r\n{chunk1}", chunk1.len()).as_bytes());
    assert!(c.reply().starts_with("250"));
    let chunk2 = "RCPT TO:<alice@example.test>\r\nDATA\r\nlast\r\n";
    c.send(format!("BDAT {} LAST\r\n{chunk2}", chunk2.len()).as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0"), "{r:?}");
    assert_eq!(c.silent(Duration::from_millis(300)), "");
    // A chunk without a transaction is read and discarded, not executed.
    let stray = "MAIL FROM:<evil@x>\r\n";
    c.send(format!("BDAT {} LAST\r\n{stray}", stray.len()).as_bytes());
    let r = c.reply();
    assert!(r.starts_with("503"), "{r:?}");
    assert_eq!(c.silent(Duration::from_millis(300)), "");
    c.expect("QUIT", "221");
    assert_eq!(
        body(&server.only_message(USER)),
        "first\r\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nlast\r\n"
    );
}

#[test]
fn auth_per_account_throttle() {
    let server = TestServer::start_with(
        "",
        "[auth]\nfailure_delay_ms = 50\nmax_failures_per_ip = 100\nmax_failures_per_account = 3\n",
    );
    server.add_user("bob@example.test", "bob pw");
    let wrong = auth_plain_cmd("bob@example.test", "guess");
    let got = submissions_from(
        &server,
        "attacker.example",
        &[
            &wrong,
            &wrong,
            &wrong,
            // Over the limit, a network that never logged in to the account gets one check per
            // interval (the slow lane: 900 s / 3), which this guess takes...
            &wrong,
            // ... then the account is refused unchecked, whatever the spelling of its name.
            &auth_plain_cmd("BOB@example.test", "bob pw"),
            "eof:3",
        ],
    );
    assert_replies(
        &got,
        &[
            "220 ",
            "250",
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "454 4.7.0",
            "EOF",
        ],
    );
    // ... but other accounts from the same address are not.
    let got = submissions(&server, &[&auth_plain_cmd(USER, PASSWORD)]);
    assert_replies(&got, &["220 ", "250", "235 2.7.0"]);
}

#[test]
fn sasl_exchanges() {
    let server = TestServer::start();
    let got = submissions(
        &server,
        &[
            "STARTTLS",
            "AUTH CRAM-MD5",
            "AUTH PLAIN",
            "*",
            "AUTH PLAIN !!!",
            "AUTH LOGIN",
            &base64(USER.as_bytes()),
            &base64(PASSWORD.as_bytes()),
            &format!("MAIL FROM:<{USER}> AUTH=<>"),
        ],
    );
    assert_replies(
        &got,
        &[
            "220 ",
            "250",
            "503",       // STARTTLS inside TLS
            "504 5.5.4", // mechanism not offered
            "334",       // PLAIN without initial response ...
            "501 5.7.0", // ... cancelled
            "501 5.5.2", // not base64
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "235 2.7.0",
            "250 2.1.0",
        ],
    );
}

#[test]
fn overlong_data_line_is_refused_at_end_of_data() {
    let server = TestServer::start();
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.envelope(OUTSIDE, USER);
    // 1001 octets + CRLF: one reply, after the end of data, and nothing stored.
    let r = c.data(&format!("Subject: long\r\n\r\n{}\r\n", "y".repeat(1001)));
    assert!(r.starts_with("500 5.5.2"), "{r:?}");
    assert_eq!(c.silent(Duration::from_millis(300)), "");
    c.expect("NOOP", "250");
    assert!(server.inbox(USER).is_empty());
}

#[test]
fn duplicate_recipients_get_one_copy_and_utf8_survives() {
    let server = TestServer::start();
    server
        .cli(&["alias", "add", "sales@example.test", USER], None)
        .assert_ok();
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.expect(
        "MAIL FROM:<jürgen@outside.example> SMTPUTF8 BODY=8BITMIME",
        "250",
    );
    c.expect(&format!("RCPT TO:<{USER}>"), "250");
    c.expect("RCPT TO:<Alice@Example.Test>", "250");
    c.expect("RCPT TO:<sales@example.test>", "250");
    c.expect("DATA", "354");
    let r = c.data("Subject: Grüße\r\n\r\nÄrger über Umlaute? Nein: 日本語\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r:?}");
    c.expect("QUIT", "221");
    // One account, one copy.
    let m = &server.only_message(USER);
    assert!(
        m.starts_with("Return-Path: <jürgen@outside.example>\r\n"),
        "{m}"
    );
    assert_eq!(header_values(m, "Subject"), vec!["Grüße"]);
    assert_eq!(body(m), "Ärger über Umlaute? Nein: 日本語\r\n");
}

/// RFC 5321 4.5.1: postmaster is always deliverable, with or without a domain, even before an
/// alias exists (it then reaches the first account); an explicit alias takes over.
#[test]
fn postmaster_is_always_accepted() {
    let server = TestServer::start();
    server.add_user("bob@example.test", "pw");
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.expect(&format!("MAIL FROM:<{OUTSIDE}>"), "250");
    c.expect("RCPT TO:<postmaster@example.test>", "250 2.1.5");
    c.expect("RCPT TO:<Postmaster>", "250 2.1.5");
    c.expect("RCPT TO:<POSTMASTER@localhost>", "250 2.1.5");
    c.expect("DATA", "354");
    assert!(
        c.data("Subject: to postmaster\r\n\r\nhello\r\n")
            .starts_with("250 2.0.0")
    );
    assert_eq!(server.inbox(USER).len(), 1, "the oldest account gets it");
    server
        .cli(
            &[
                "alias",
                "add",
                "postmaster@example.test",
                "bob@example.test",
            ],
            None,
        )
        .assert_ok();
    c.envelope(OUTSIDE, "postmaster@example.test");
    let r = c.data("Subject: to postmaster again\r\n\r\nhello\r\n");
    assert!(r.starts_with("250 2.0.0"));
    assert_eq!(server.inbox("bob@example.test").len(), 1, "the alias wins");
    c.expect("QUIT", "221");
}
