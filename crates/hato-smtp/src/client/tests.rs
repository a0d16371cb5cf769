//! Transcript tests: feed server replies, check the bytes sent and the outcomes.

use super::*;
use crate::address::Address;

// ------------------------------------------------------------------------------------
// Harness

struct Run {
    s: ClientSession,
    /// The action that ended the last step (NeedInput, StartTls, Ready or Done).
    last: ClientAction,
    outcomes: Vec<TransactionOutcome>,
}

impl Run {
    fn new(cfg: ClientConfig) -> Run {
        let mut r = Run {
            s: ClientSession::new(cfg),
            last: ClientAction::NeedInput,
            outcomes: Vec::new(),
        };
        assert_eq!(r.step(), "");
        assert_eq!(r.last, ClientAction::NeedInput);
        r
    }

    /// A new session with `simple()` queued before the greeting.
    fn queued(cfg: ClientConfig) -> Run {
        let mut r = Run::new(cfg);
        r.s.next_transaction(simple()).unwrap();
        r
    }

    /// Polls until the driver has to wait; returns everything sent meanwhile.
    fn step(&mut self) -> String {
        let mut sent = Vec::new();
        for _ in 0..10_000 {
            match self.s.poll() {
                ClientAction::Send(b) => {
                    assert!(!b.is_empty());
                    sent.extend(b);
                }
                ClientAction::TransactionDone(o) => self.outcomes.push(*o),
                a => {
                    self.last = a;
                    return String::from_utf8_lossy(&sent).into_owned();
                }
            }
        }
        panic!("session loops");
    }

    /// Feeds server bytes and steps.
    fn server(&mut self, bytes: &str) -> String {
        self.s.feed(bytes.as_bytes());
        self.step()
    }

    /// The server sends these replies in turn (what the client sends back is not checked).
    fn replies(&mut self, replies: &[&str]) {
        for reply in replies {
            self.server(reply);
        }
    }

    /// Feeds each server reply in turn and checks what the client sends back.
    fn exchange(&mut self, steps: &[(&str, &str)]) {
        for (reply, sent) in steps {
            assert_eq!(self.server(reply), *sent, "answer to {reply:?}");
        }
    }

    fn start(&mut self, t: Transaction) -> String {
        self.s.next_transaction(t).unwrap();
        self.step()
    }

    fn done(&self) -> &ConnectionOutcome {
        match &self.last {
            ClientAction::Done(o) => o,
            other => panic!("not done: {other:?}"),
        }
    }

    fn outcome(&self) -> &TransactionOutcome {
        assert_eq!(self.outcomes.len(), 1, "{:?}", self.outcomes);
        &self.outcomes[0]
    }

    /// The recipients of the last outcome are these, with these statuses and reply codes.
    fn expect_statuses(&self, want: &[(&str, RecipientStatus, u16)]) {
        let want: Vec<_> = want
            .iter()
            .map(|&(a, s, c)| (a.to_string(), s, c))
            .collect();
        assert_eq!(self.statuses(), want);
    }

    fn statuses(&self) -> Vec<(String, RecipientStatus, u16)> {
        self.outcomes
            .last()
            .expect("an outcome")
            .recipients
            .iter()
            .map(|r| (r.address.to_string(), r.status, r.reply.code))
            .collect()
    }
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn cfg() -> ClientConfig {
    ClientConfig::new("client.example")
}

fn required() -> ClientConfig {
    ClientConfig {
        tls: TlsRequirement::Required,
        ..cfg()
    }
}

fn creds() -> Credentials {
    Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
    }
}

const MSG: &str = "Subject: t\r\n\r\nhello\r\n";

fn txn(from: &str, to: &[&str], msg: &str) -> Transaction {
    let from = (!from.is_empty()).then(|| addr(from));
    Transaction::new(from, to.iter().map(|t| addr(t)), msg.as_bytes().to_vec())
}

fn simple() -> Transaction {
    txn("a@s.example", &["b@r.example"], MSG)
}

/// `simple()` with a second recipient, c@r.example.
fn two_rcpts() -> Transaction {
    txn("a@s.example", &["b@r.example", "c@r.example"], MSG)
}

/// `two_rcpts()` with a third recipient, d@r.example.
fn three_rcpts() -> Transaction {
    txn(
        "a@s.example",
        &["b@r.example", "c@r.example", "d@r.example"],
        MSG,
    )
}

/// A 250 EHLO reply with these keywords.
fn ehlo(keywords: &[&str]) -> String {
    let mut lines = vec!["mx.example"];
    lines.extend_from_slice(keywords);
    Reply::without_status(250, lines.join("\n")).to_string()
}

/// Greeting and EHLO done, no TLS involved: the session is Ready.
fn ready(cfg: ClientConfig, keywords: &[&str]) -> Run {
    let mut r = Run::new(cfg);
    assert_eq!(
        r.server("220 mx.example ESMTP\r\n"),
        "EHLO client.example\r\n"
    );
    assert_eq!(r.server(&ehlo(keywords)), "");
    assert_eq!(r.last, ClientAction::Ready);
    r
}

/// Ready with `keywords` (default config), `t` started.
fn started(keywords: &[&str], t: Transaction) -> Run {
    let mut r = ready(cfg(), keywords);
    r.start(t);
    r
}

/// Ready with `keywords` and 8-octet chunks; a 19-octet message from a@s.example to
/// b@r.example started.
fn chunking_started(keywords: &[&str]) -> Run {
    let mut r = ready(
        ClientConfig {
            chunk_size: 8,
            ..cfg()
        },
        keywords,
    );
    r.start(txn("a@s.example", &["b@r.example"], "0123456789abcdefXYZ"));
    r
}

/// Greeting, EHLO, STARTTLS, handshake (verified), EHLO again with `post`.
fn ready_tls(cfg: ClientConfig, post: &[&str]) -> Run {
    let mut r = Run::new(cfg);
    assert_eq!(
        r.server("220 mx.example ESMTP\r\n"),
        "EHLO client.example\r\n"
    );
    assert_eq!(r.server(&ehlo(&["STARTTLS", "PIPELINING"])), "STARTTLS\r\n");
    assert_eq!(r.server("220 2.0.0 Ready to start TLS\r\n"), "");
    assert_eq!(r.last, ClientAction::StartTls);
    assert_eq!(r.s.phase(), ClientPhase::TlsHandshake);
    r.s.tls_established();
    r.s.set_tls_verified(true);
    assert_eq!(r.step(), "EHLO client.example\r\n");
    r.server(&ehlo(post));
    r
}

// ------------------------------------------------------------------------------------
// Greeting

#[test]
fn greeting_then_ehlo_multi_line_greeting() {
    let mut r = Run::new(cfg());
    assert_eq!(r.s.phase(), ClientPhase::Greeting);
    assert_eq!(r.s.timeout(), Some(Duration::from_secs(300)));
    assert_eq!(r.server("220-mx.example ESMTP\r\n220-"), "");
    assert_eq!(r.last, ClientAction::NeedInput);
    assert_eq!(
        r.server("no UCE\r\n220 welcome\r\n"),
        "EHLO client.example\r\n"
    );
    assert_eq!(r.s.phase(), ClientPhase::Ehlo);
}

#[test]
fn greeting_554_permanent_quit_and_next_mx() {
    let mut r = Run::queued(cfg());
    assert_eq!(r.server("554 5.7.1 No SMTP service here\r\n"), "QUIT\r\n");
    let o = r.outcome();
    r.expect_statuses(&[("b@r.example", RecipientStatus::Permanent, 554)]);
    assert!(o.recipients[0].remote);
    let f = o.failure.clone().unwrap();
    assert!(matches!(f, ClientFailure::Greeting(_)));
    assert!(f.try_next_host());
    assert!(f.ends_connection());
    assert_eq!(r.server("221 bye\r\n"), "");
    assert!(matches!(
        r.done().failure,
        Some(ClientFailure::Greeting(Reply { code: 554, .. }))
    ));
}

#[test]
fn greeting_4xx_transient() {
    let mut r = Run::queued(cfg());
    assert_eq!(r.server("450 4.3.2 busy\r\n"), "QUIT\r\n");
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    // The connection drops instead of answering QUIT: still a clean end of a failed
    // session, the failure is kept.
    r.s.connection_lost();
    assert_eq!(r.step(), "");
    assert!(matches!(r.done().failure, Some(ClientFailure::Greeting(_))));
}

#[test]
fn greeting_421_closes_without_quit() {
    let mut r = Run::queued(cfg());
    assert_eq!(r.server("421 4.3.2 shutting down\r\n"), "");
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    assert!(matches!(r.done().failure, Some(ClientFailure::Greeting(_))));
}

#[test]
fn greeting_garbage_is_a_protocol_error() {
    for garbage in [
        "SSH-2.0-OpenSSH_9.6\r\n",
        "250 wrong code\r\n",
        "HTTP/1.1 200 OK\r\n",
    ] {
        let mut r = Run::queued(cfg());
        assert_eq!(r.server(garbage), "", "{garbage}");
        assert!(matches!(r.done().failure, Some(ClientFailure::Protocol(_))));
        assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
        assert!(!r.outcome().recipients[0].remote);
        assert_eq!(r.outcome().recipients[0].reply.status, Some((4, 5, 0)));
    }
}

// ------------------------------------------------------------------------------------
// EHLO / HELO

#[test]
fn ehlo_capabilities_parsed() {
    let r = ready(
        cfg(),
        &[
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "DSN",
            "REQUIRETLS",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN LOGIN",
        ],
    );
    let c = r.s.capabilities().unwrap();
    assert!(c.esmtp && c.pipelining && c.eightbitmime && c.smtputf8 && c.chunking);
    assert!(c.dsn && c.requiretls && c.enhanced_status_codes && !c.starttls);
    assert_eq!(c.size, Some(1000));
    assert_eq!(c.auth, vec!["PLAIN".to_string(), "LOGIN".to_string()]);
    assert_eq!(c.domain, "mx.example");
    assert_eq!(r.s.phase(), ClientPhase::Idle);
    assert_eq!(r.s.timeout(), None);
}

#[test]
fn ehlo_5xx_falls_back_to_helo_without_extensions() {
    let mut r = Run::queued(cfg());
    r.exchange(&[
        ("220 old.example\r\n", "EHLO client.example\r\n"),
        (
            "502 5.5.2 Command not recognized\r\n",
            "HELO client.example\r\n",
        ),
        ("250 old.example\r\n", "MAIL FROM:<a@s.example>\r\n"),
    ]);
    assert!(!r.s.capabilities().unwrap().esmtp);
    r.exchange(&[
        ("250 ok\r\n", "RCPT TO:<b@r.example>\r\n"),
        ("250 ok\r\n", "DATA\r\n"),
    ]);
    assert_eq!(r.server("354 go\r\n"), format!("{MSG}.\r\n"));
    r.server("250 ok\r\n");
    assert!(r.outcome().all_delivered());
}

#[test]
fn helo_fallback_with_8bit_message_needs_downgrade() {
    let mut r = Run::new(cfg());
    r.replies(&["220 old\r\n", "500 what\r\n"]);
    assert_eq!(r.server("250 old\r\n"), "");
    assert_eq!(
        r.start(txn(
            "a@s.example",
            &["b@r.example"],
            "Subject: x\r\n\r\nöl\r\n"
        )),
        ""
    );
    assert_eq!(r.outcome().failure, Some(ClientFailure::Needs7BitDowngrade));
    assert_eq!(r.last, ClientAction::Ready);
}

#[test]
fn helo_fallback_allowed_over_implicit_tls_even_when_required() {
    let mut r = Run::new(ClientConfig {
        already_tls: true,
        ..required()
    });
    r.server("220 old\r\n");
    r.exchange(&[
        ("502 no\r\n", "HELO client.example\r\n"),
        ("250 old\r\n", ""),
    ]);
    assert_eq!(r.last, ClientAction::Ready);
}

#[test]
fn ehlo_refused_under_required_tls_defers_without_helo() {
    let mut r = Run::queued(required());
    r.server("220 old\r\n");
    // No HELO: it could never lead to STARTTLS.
    assert_eq!(r.server("502 no\r\n"), "");
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::TlsRequiredButUnavailable)
    );
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
}

#[test]
fn ehlo_4xx_and_helo_refused() {
    let mut r = Run::new(cfg());
    r.server("220 mx\r\n");
    assert_eq!(r.server("421 4.7.0 later\r\n"), "");
    assert!(matches!(
        r.done().failure,
        Some(ClientFailure::ServiceClosing(_))
    ));

    let mut r = Run::new(cfg());
    r.server("220 mx\r\n");
    assert_eq!(r.server("451 4.3.0 later\r\n"), "QUIT\r\n");
    r.server("221 bye\r\n");
    assert!(matches!(r.done().failure, Some(ClientFailure::Ehlo(_))));

    let mut r = Run::queued(cfg());
    r.replies(&["220 mx\r\n", "550 no\r\n"]);
    assert_eq!(r.server("550 5.7.1 go away\r\n"), "QUIT\r\n");
    assert_eq!(r.statuses()[0].1, RecipientStatus::Permanent);
    assert_eq!(r.outcome().reply.as_ref().unwrap().text, "go away");
}

// ------------------------------------------------------------------------------------
// STARTTLS

#[test]
fn opportunistic_starttls_then_ehlo_again_forgets_capabilities() {
    let mut r = Run::queued(cfg());
    r.server("220 mx\r\n");
    assert_eq!(
        r.server(&ehlo(&["STARTTLS", "SIZE 10", "AUTH PLAIN"])),
        "STARTTLS\r\n"
    );
    assert_eq!(r.s.phase(), ClientPhase::StartTls);
    assert_eq!(r.server("220 2.0.0 go ahead\r\n"), "");
    assert_eq!(r.last, ClientAction::StartTls);
    // Polling again keeps asking for the handshake.
    assert_eq!(r.step(), "");
    assert_eq!(r.last, ClientAction::StartTls);
    r.s.tls_established();
    assert!(r.s.capabilities().is_none());
    assert_eq!(r.step(), "EHLO client.example\r\n");
    // Post-TLS capabilities: no SIZE limit any more, so the message goes.
    assert_eq!(
        r.server(&ehlo(&["PIPELINING"])),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
    let c = r.s.capabilities().unwrap();
    assert!(!c.starttls && c.size.is_none() && c.auth.is_empty());
    r.replies(&["250 ok\r\n250 ok\r\n354 go\r\n", "250 ok\r\n"]);
    let o = r.outcome();
    assert!(o.all_delivered() && o.tls && !o.tls_verified);
    assert!(r.s.is_tls());
}

#[test]
fn starttls_stripping_under_required_defers_with_nothing_sent() {
    let mut r = Run::queued(required());
    assert_eq!(r.server("220 mx\r\n"), "EHLO client.example\r\n");
    // An attacker replaced STARTTLS in the EHLO reply.
    assert_eq!(r.server(&ehlo(&["PIPELINING", "XXXXXXXA"])), "");
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::TlsRequiredButUnavailable)
    );
    let o = r.outcome();
    assert_eq!(o.recipients[0].status, RecipientStatus::Transient);
    assert_eq!(o.recipients[0].reply.status, Some((4, 7, 4)));
    assert!(!o.tls);
    assert!(o.failure.as_ref().unwrap().try_next_host());
    // Nothing more, ever.
    r.s.feed(b"250 ok\r\n");
    assert_eq!(r.step(), "");
    assert!(r.s.next_transaction(simple()).is_err());
}

#[test]
fn starttls_refused_under_required_defers() {
    for refusal in ["454 4.7.0 TLS not available\r\n", "502 5.5.1 no\r\n"] {
        let mut r = Run::queued(required());
        r.server("220 mx\r\n");
        assert_eq!(r.server(&ehlo(&["STARTTLS"])), "STARTTLS\r\n");
        assert_eq!(r.server(refusal), "");
        assert!(matches!(
            r.done().failure,
            Some(ClientFailure::StartTlsRefused(_))
        ));
        // Even a 5xx refusal only defers: another MX or a later attempt may do TLS.
        assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    }
}

#[test]
fn starttls_refused_opportunistic_continues_in_plaintext() {
    let mut r = Run::queued(cfg());
    r.replies(&["220 mx\r\n", &ehlo(&["STARTTLS", "PIPELINING"])]);
    assert_eq!(
        r.server("454 4.7.0 not now\r\n"),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
    assert!(!r.s.is_tls());
}

#[test]
fn opportunistic_without_offer_is_plaintext_and_none_never_starttls() {
    let r = ready(cfg(), &["PIPELINING"]);
    assert!(!r.s.is_tls());
    let r = ready(
        ClientConfig {
            tls: TlsRequirement::None,
            ..cfg()
        },
        &["STARTTLS"],
    );
    assert!(!r.s.is_tls());
}

#[test]
fn starttls_response_injection_in_the_same_read() {
    let mut r = Run::queued(required());
    r.replies(&["220 mx\r\n", &ehlo(&["STARTTLS"])]);
    assert_eq!(
        r.server("220 2.0.0 go\r\n250-evil.example\r\n250 AUTH PLAIN\r\n"),
        ""
    );
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::StartTlsResponseInjection)
    );
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    // The driver never got StartTls; a late tls_established changes nothing.
    r.s.tls_established();
    assert_eq!(r.step(), "");
    assert!(!r.s.is_tls());
}

#[test]
fn starttls_response_injection_fed_before_the_handshake() {
    // A partial line is enough.
    let mut r = Run::new(required());
    r.replies(&["220 mx\r\n", &ehlo(&["STARTTLS"]), "220 go\r\n"]);
    assert_eq!(r.last, ClientAction::StartTls);
    r.s.feed(b"2");
    assert_eq!(r.step(), "");
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::StartTlsResponseInjection)
    );

    // Fed, then the driver calls tls_established without polling.
    let mut r = Run::new(required());
    r.replies(&["220 mx\r\n", &ehlo(&["STARTTLS"]), "220 go\r\n"]);
    r.s.feed(b"250 injected\r\n");
    r.s.tls_established();
    assert_eq!(r.step(), "");
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::StartTlsResponseInjection)
    );
    assert!(!r.s.is_tls());
}

#[test]
fn implicit_tls_skips_starttls_even_when_required() {
    let r = ready(
        ClientConfig {
            already_tls: true,
            ..required()
        },
        &["STARTTLS", "PIPELINING"],
    );
    assert!(r.s.is_tls());
}

#[test]
fn tls_handshake_failure_defers() {
    let mut r = Run::queued(required());
    r.replies(&["220 mx\r\n", &ehlo(&["STARTTLS"]), "220 go\r\n"]);
    r.s.tls_failed();
    assert_eq!(r.step(), "");
    assert_eq!(r.done().failure, Some(ClientFailure::TlsHandshakeFailed));
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    assert_eq!(r.outcome().recipients[0].reply.status, Some((4, 7, 5)));
}

#[test]
fn tls_verified_only_counts_after_tls() {
    let mut r = ready(cfg(), &[]);
    r.s.set_tls_verified(true);
    r.start(simple());
    r.replies(&["250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"]);
    assert!(!r.outcome().tls && !r.outcome().tls_verified);
}

// ------------------------------------------------------------------------------------
// AUTH

fn with_auth(base: ClientConfig) -> ClientConfig {
    ClientConfig {
        auth: Some(creds()),
        ..base
    }
}

#[test]
fn auth_plain_after_starttls() {
    let mut r = Run::new(with_auth(required()));
    r.s.next_transaction(simple()).unwrap();
    r.server("220 smarthost\r\n");
    // AUTH offered before TLS is ignored: never credentials in plaintext.
    assert_eq!(r.server(&ehlo(&["STARTTLS", "AUTH PLAIN"])), "STARTTLS\r\n");
    r.server("220 go\r\n");
    r.s.tls_established();
    assert_eq!(r.step(), "EHLO client.example\r\n");
    assert_eq!(
        r.server(&ehlo(&["AUTH LOGIN PLAIN", "PIPELINING"])),
        "AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n"
    );
    assert_eq!(r.s.phase(), ClientPhase::Auth);
    assert_eq!(
        r.server("235 2.7.0 Authentication successful\r\n"),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
}

#[test]
fn auth_login_when_plain_is_not_offered() {
    let mut r = Run::new(with_auth(ClientConfig {
        already_tls: true,
        ..cfg()
    }));
    r.server("220 smarthost\r\n");
    assert_eq!(r.server(&ehlo(&["AUTH LOGIN"])), "AUTH LOGIN\r\n");
    r.exchange(&[
        ("334 VXNlcm5hbWU6\r\n", "YWxpY2U=\r\n"),
        ("334 UGFzc3dvcmQ6\r\n", "czNjcmV0\r\n"),
        ("235 2.7.0 ok\r\n", ""),
    ]);
    assert_eq!(r.last, ClientAction::Ready);
}

#[test]
fn auth_refused_without_tls() {
    // Opportunistic, the server offers no STARTTLS but AUTH: credentials stay home.
    let mut r = Run::new(with_auth(cfg()));
    r.s.next_transaction(simple()).unwrap();
    r.server("220 smarthost\r\n");
    assert_eq!(r.server(&ehlo(&["AUTH PLAIN LOGIN"])), "QUIT\r\n");
    assert_eq!(r.outcome().failure, Some(ClientFailure::AuthRequiresTls));
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    r.server("221 bye\r\n");
    assert_eq!(r.done().failure, Some(ClientFailure::AuthRequiresTls));

    // TlsRequirement::None with credentials: the same.
    let mut r = Run::new(with_auth(ClientConfig {
        tls: TlsRequirement::None,
        ..cfg()
    }));
    r.server("220 smarthost\r\n");
    assert_eq!(r.server(&ehlo(&["STARTTLS", "AUTH PLAIN"])), "QUIT\r\n");
}

#[test]
fn auth_failures() {
    let tls = || {
        with_auth(ClientConfig {
            already_tls: true,
            ..cfg()
        })
    };
    // 535: permanent, QUIT, not worth another host.
    let mut r = Run::queued(tls());
    r.replies(&["220 smarthost\r\n", &ehlo(&["AUTH PLAIN"])]);
    assert_eq!(
        r.server("535 5.7.8 Authentication credentials invalid\r\n"),
        "QUIT\r\n"
    );
    assert_eq!(r.statuses()[0].1, RecipientStatus::Permanent);
    let f = r.outcome().failure.clone().unwrap();
    assert!(matches!(f, ClientFailure::AuthFailed(_)) && !f.try_next_host());

    // 454: transient.
    let mut r = Run::queued(tls());
    r.replies(&[
        "220 smarthost\r\n",
        &ehlo(&["AUTH LOGIN"]),
        "334 VXNlcm5hbWU6\r\n",
    ]);
    assert_eq!(r.server("454 4.7.0 Temporary failure\r\n"), "QUIT\r\n");
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);

    // No usable mechanism.
    let mut r = Run::new(tls());
    r.server("220 smarthost\r\n");
    assert_eq!(r.server(&ehlo(&["AUTH CRAM-MD5 GSSAPI"])), "QUIT\r\n");
    r.server("221 bye\r\n");
    assert_eq!(r.done().failure, Some(ClientFailure::AuthUnavailable));

    // A 334 to AUTH PLAIN with an initial response, or 235 too early: protocol error.
    let mut r = Run::new(tls());
    r.replies(&["220 smarthost\r\n", &ehlo(&["AUTH PLAIN"])]);
    assert_eq!(r.server("334 \r\n"), "");
    assert!(matches!(r.done().failure, Some(ClientFailure::Protocol(_))));
}

#[test]
fn credentials_never_in_debug_output() {
    let mut r = Run::new(with_auth(ClientConfig {
        already_tls: true,
        ..cfg()
    }));
    r.s.feed(b"220 x\r\n");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let a = r.s.poll();
        seen.push(format!("{a:?}"));
        if a == ClientAction::NeedInput {
            break;
        }
    }
    r.s.feed(ehlo(&["AUTH PLAIN"]).as_bytes());
    let a = r.s.poll();
    let ClientAction::Send(bytes) = &a else {
        panic!("{a:?}")
    };
    assert!(bytes.starts_with(b"AUTH PLAIN "));
    seen.push(format!("{a:?}"));
    seen.push(format!("{:?}", r.s));
    seen.push(format!("{:?}", with_auth(cfg())));
    for s in seen {
        assert!(!s.contains("s3cret") && !s.contains("AGFsaWNl"), "{s}");
    }
}

// ------------------------------------------------------------------------------------
// Transactions without PIPELINING

#[test]
fn one_command_at_a_time_without_pipelining() {
    let mut r = ready(cfg(), &["8BITMIME"]);
    let t = two_rcpts();
    assert_eq!(r.start(t), "MAIL FROM:<a@s.example>\r\n");
    assert_eq!(r.s.phase(), ClientPhase::Mail);
    assert_eq!(r.server("250 2.1.0 Ok\r\n"), "RCPT TO:<b@r.example>\r\n");
    assert_eq!(r.s.phase(), ClientPhase::Rcpt);
    r.exchange(&[
        (
            "550-5.1.1 No such user\r\n550 5.1.1 really\r\n",
            "RCPT TO:<c@r.example>\r\n",
        ),
        ("250 2.1.5 Ok\r\n", "DATA\r\n"),
    ]);
    assert_eq!(r.s.phase(), ClientPhase::DataInit);
    assert_eq!(r.s.timeout(), Some(Duration::from_secs(120)));
    assert_eq!(r.server("354 go ahead\r\n"), format!("{MSG}.\r\n"));
    assert_eq!(r.s.phase(), ClientPhase::DataTermination);
    assert_eq!(r.s.timeout(), Some(Duration::from_secs(600)));
    assert_eq!(r.server("250 2.0.0 Ok: queued as X\r\n"), "");
    assert_eq!(r.last, ClientAction::Ready);
    let o = r.outcome();
    assert_eq!(o.failure, None);
    assert_eq!(o.recipients[0].status, RecipientStatus::Permanent);
    assert_eq!(
        o.recipients[0].reply,
        Reply::new(550, (5, 1, 1), "No such user\nreally")
    );
    assert!(o.recipients[0].remote);
    assert_eq!(o.recipients[1].status, RecipientStatus::Delivered);
    assert_eq!(o.recipients[1].reply.text, "Ok: queued as X");
    assert_eq!(o.reply.as_ref().unwrap().code, 250);
    assert!(!o.chunking);
    assert_eq!(o.size, MSG.len() as u64);

    r.s.quit();
    assert_eq!(r.step(), "QUIT\r\n");
    assert_eq!(r.s.phase(), ClientPhase::Quit);
    assert_eq!(r.server("221 2.0.0 Bye\r\n"), "");
    let d = r.done();
    assert_eq!(d.failure, None);
    assert_eq!(d.transactions, 1);
    assert_eq!(r.s.phase(), ClientPhase::Closed);
    assert_eq!(r.s.timeout(), None);
}

#[test]
fn all_recipients_rejected_no_data_then_rset_before_next() {
    let mut r = ready(cfg(), &[]);
    let t = two_rcpts();
    r.start(t);
    r.replies(&["250 ok\r\n", "550 5.1.1 no\r\n"]);
    assert_eq!(r.server("451 4.3.0 later\r\n"), "");
    assert_eq!(r.last, ClientAction::Ready);
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Permanent, 550),
        ("c@r.example", RecipientStatus::Transient, 451),
    ]);
    // The server still has an open transaction: RSET first, then MAIL.
    assert_eq!(r.start(simple()), "RSET\r\n");
    assert_eq!(r.s.phase(), ClientPhase::Rset);
    assert_eq!(r.server("250 2.0.0 ok\r\n"), "MAIL FROM:<a@s.example>\r\n");
    // But never RSET before QUIT.
    r.replies(&["250 ok\r\n", "550 no\r\n"]);
    r.s.quit();
    assert_eq!(r.step(), "QUIT\r\n");
}

#[test]
fn mail_rejected_no_rcpt_no_rset() {
    let mut r = started(&[], two_rcpts());
    assert_eq!(r.server("553 5.7.1 sender refused\r\n"), "");
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Permanent, 553),
        ("c@r.example", RecipientStatus::Permanent, 553),
    ]);
    // A failed MAIL opens no transaction: no RSET needed.
    assert_eq!(r.start(simple()), "MAIL FROM:<a@s.example>\r\n");
}

#[test]
fn data_refused_applies_to_accepted_recipients() {
    let mut r = started(&[], two_rcpts());
    r.replies(&["250 ok\r\n", "250 ok\r\n", "550 5.1.1 no\r\n"]);
    assert_eq!(r.server("451 4.3.0 not now\r\n"), "");
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Transient, 451),
        ("c@r.example", RecipientStatus::Permanent, 550),
    ]);
    assert_eq!(r.start(simple()), "RSET\r\n");
}

#[test]
fn final_reply_decides_for_accepted_recipients() {
    for (reply, status) in [
        ("250 2.0.0 ok\r\n", RecipientStatus::Delivered),
        ("452 4.3.1 disk full\r\n", RecipientStatus::Transient),
        ("554 5.6.0 spam\r\n", RecipientStatus::Permanent),
    ] {
        let mut r = started(&[], simple());
        r.replies(&["250 ok\r\n", "250 ok\r\n", "354 go\r\n"]);
        r.server(reply);
        assert_eq!(r.statuses()[0].1, status, "{reply}");
        // The end of the data ends the transaction whatever the reply: no RSET.
        assert_eq!(r.start(simple()), "MAIL FROM:<a@s.example>\r\n");
    }
}

#[test]
fn too_many_recipients_452_is_transient_for_the_rest() {
    let mut r = started(&["PIPELINING"], three_rcpts());
    r.replies(&[
        "250 ok\r\n250 ok\r\n452 4.5.3 Too many recipients\r\n452 4.5.3 Too many recipients\r\n354 go\r\n",
        "250 ok\r\n",
    ]);
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Delivered, 250),
        ("c@r.example", RecipientStatus::Transient, 452),
        ("d@r.example", RecipientStatus::Transient, 452),
    ]);
}

// ------------------------------------------------------------------------------------
// PIPELINING

#[test]
fn pipelined_group_is_one_send_and_replies_match_in_order() {
    let mut r = ready(cfg(), &["PIPELINING"]);
    r.s.next_transaction(three_rcpts()).unwrap();
    let a = r.s.poll();
    assert_eq!(
        a,
        ClientAction::Send(
            b"MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nRCPT TO:<c@r.example>\r\n\
              RCPT TO:<d@r.example>\r\nDATA\r\n"
                .to_vec()
        )
    );
    assert_eq!(r.s.phase(), ClientPhase::Mail);
    assert_eq!(r.step(), "");
    assert_eq!(r.server("250 2.1.0 ok\r\n250 2.1.5 ok\r\n"), "");
    assert_eq!(r.s.phase(), ClientPhase::Rcpt);
    assert_eq!(
        r.server("550 5.1.1 unknown\r\n450 4.2.1 greylisted\r\n"),
        ""
    );
    assert_eq!(r.s.phase(), ClientPhase::DataInit);
    assert_eq!(r.server("354 go\r\n"), format!("{MSG}.\r\n"));
    r.server("250 2.0.0 ok\r\n");
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Delivered, 250),
        ("c@r.example", RecipientStatus::Permanent, 550),
        ("d@r.example", RecipientStatus::Transient, 450),
    ]);
}

#[test]
fn pipelined_replies_in_one_read() {
    let mut r = started(&["PIPELINING"], two_rcpts());
    assert_eq!(
        r.server("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        format!("{MSG}.\r\n")
    );
    r.server("250 ok\r\n");
    assert!(r.outcome().all_delivered());
}

#[test]
fn pipelined_all_rcpts_rejected_data_refused_no_body() {
    let mut r = started(&["PIPELINING"], two_rcpts());
    assert_eq!(
        r.server("250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 No valid recipients\r\n"),
        ""
    );
    assert_eq!(r.last, ClientAction::Ready);
    assert!(
        r.outcome()
            .recipients
            .iter()
            .all(|x| x.status == RecipientStatus::Permanent && x.reply.code == 550)
    );
    assert_eq!(r.start(simple()), "RSET\r\n");
}

#[test]
fn pipelined_all_rcpts_rejected_but_354_gets_a_lone_dot() {
    // RFC 2920 §3.1: a broken server accepts DATA anyway; send no message.
    let mut r = started(&["PIPELINING"], simple());
    assert_eq!(r.server("250 ok\r\n550 5.1.1 no\r\n354 go\r\n"), ".\r\n");
    assert_eq!(r.s.phase(), ClientPhase::DataTermination);
    assert_eq!(r.server("554 5.5.1 no valid recipients\r\n"), "");
    r.expect_statuses(&[("b@r.example", RecipientStatus::Permanent, 550)]);
    // The empty DATA ended the transaction.
    assert_eq!(
        r.start(simple()).lines().next(),
        Some("MAIL FROM:<a@s.example>")
    );
}

#[test]
fn pipelined_mail_rejected_recipients_get_the_mail_reply() {
    let mut r = started(&["PIPELINING"], two_rcpts());
    assert_eq!(
        r.server("451 4.7.1 sender greylisted\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"),
        ""
    );
    assert_eq!(r.last, ClientAction::NeedInput);
    assert_eq!(r.server("503 5.5.1 need MAIL\r\n"), "");
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Transient, 451),
        ("c@r.example", RecipientStatus::Transient, 451),
    ]);
    assert_eq!(
        r.start(simple()).lines().next(),
        Some("MAIL FROM:<a@s.example>")
    );
}

#[test]
fn pipelining_disabled_by_config() {
    let mut r = ready(
        ClientConfig {
            pipelining: false,
            ..cfg()
        },
        &["PIPELINING"],
    );
    assert_eq!(r.start(simple()), "MAIL FROM:<a@s.example>\r\n");
}

#[test]
fn service_closing_421_mid_pipeline() {
    let mut r = started(&["PIPELINING"], two_rcpts());
    assert_eq!(
        r.server("250 ok\r\n550 5.1.1 no\r\n421 4.7.0 too fast, closing\r\n"),
        ""
    );
    r.expect_statuses(&[
        ("b@r.example", RecipientStatus::Permanent, 550),
        ("c@r.example", RecipientStatus::Transient, 421),
    ]);
    assert!(matches!(
        r.done().failure,
        Some(ClientFailure::ServiceClosing(_))
    ));
}

// ------------------------------------------------------------------------------------
// DATA contents

#[test]
fn dot_stuffing_and_line_endings() {
    let mut r = ready(cfg(), &["PIPELINING"]);
    let msg = "Subject: dots\n\n.\n..two\r\n.three\rmid.dle\r\n. space\nlast line";
    r.start(txn("a@s.example", &["b@r.example"], msg));
    let sent = r.server("250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(
        sent,
        "Subject: dots\r\n\r\n..\r\n...two\r\n..three\r\nmid.dle\r\n.. space\r\nlast line\r\n.\r\n"
    );
    r.server("250 ok\r\n");
    assert_eq!(
        r.outcome().size,
        "Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nmid.dle\r\n. space\r\nlast line\r\n".len()
            as u64
    );
}

#[test]
fn data_in_pieces_of_chunk_size() {
    let mut r = ready(
        ClientConfig {
            chunk_size: 4,
            ..cfg()
        },
        &[],
    );
    r.start(txn("a@s.example", &["b@r.example"], "0123456789\r\n.x\r\n"));
    r.replies(&["250 ok\r\n", "250 ok\r\n"]);
    r.s.feed(b"354 go\r\n");
    let mut pieces = Vec::new();
    loop {
        match r.s.poll() {
            ClientAction::Send(b) => {
                assert_eq!(r.s.phase(), ClientPhase::DataBlock);
                assert_eq!(r.s.timeout(), Some(Duration::from_secs(180)));
                pieces.push(String::from_utf8(b).unwrap());
            }
            a => {
                assert_eq!(a, ClientAction::NeedInput);
                break;
            }
        }
    }
    assert!(pieces.len() > 3, "{pieces:?}");
    assert_eq!(pieces.concat(), "0123456789\r\n..x\r\n.\r\n");
    assert_eq!(r.s.phase(), ClientPhase::DataTermination);
}

#[test]
fn empty_message() {
    let mut r = ready(cfg(), &["PIPELINING"]);
    r.start(txn("a@s.example", &["b@r.example"], ""));
    assert_eq!(r.server("250 ok\r\n250 ok\r\n354 go\r\n"), ".\r\n");
}

#[test]
fn null_sender() {
    let mut r = ready(cfg(), &[]);
    assert_eq!(r.start(txn("", &["b@r.example"], MSG)), "MAIL FROM:<>\r\n");
}

#[test]
fn quoted_local_part_is_rendered_quoted() {
    let mut r = ready(cfg(), &[]);
    assert_eq!(
        r.start(txn("\"a b\"@s.example", &["b@r.example"], MSG)),
        "MAIL FROM:<\"a b\"@s.example>\r\n"
    );
}

// ------------------------------------------------------------------------------------
// CHUNKING

#[test]
fn bdat_single_chunk() {
    let mut r = ready(cfg(), &["PIPELINING", "CHUNKING"]);
    // MAIL and RCPT are pipelined; BDAT waits for the RCPT replies.
    assert_eq!(
        r.start(simple()),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\n"
    );
    assert_eq!(
        r.server("250 ok\r\n250 ok\r\n"),
        format!("BDAT {} LAST\r\n{MSG}", MSG.len())
    );
    assert_eq!(r.s.phase(), ClientPhase::DataTermination);
    r.server("250 2.0.0 ok\r\n");
    assert!(r.outcome().all_delivered());
    assert!(r.outcome().chunking);
}

#[test]
fn bdat_normalises_without_dot_stuffing() {
    let mut r = ready(cfg(), &["CHUNKING"]);
    r.start(txn("a@s.example", &["b@r.example"], ".a\n.\nb"));
    r.server("250 ok\r\n");
    assert_eq!(r.server("250 ok\r\n"), "BDAT 10 LAST\r\n.a\r\n.\r\nb\r\n");
}

#[test]
fn bdat_several_chunks_pipelined_in_one_go() {
    let mut r = chunking_started(&["PIPELINING", "CHUNKING"]);
    assert_eq!(
        r.server("250 ok\r\n250 ok\r\n"),
        "BDAT 8\r\n01234567BDAT 8\r\n89abcdefBDAT 5 LAST\r\nXYZ\r\n"
    );
    r.server("250 2.0.0 8 octets\r\n250 2.0.0 8 octets\r\n");
    assert!(r.outcomes.is_empty());
    r.server("250 2.0.0 done\r\n");
    assert_eq!(r.outcome().recipients[0].reply.text, "done");
}

#[test]
fn bdat_one_chunk_at_a_time_without_pipelining() {
    let mut r = chunking_started(&["CHUNKING"]);
    r.server("250 ok\r\n");
    r.exchange(&[
        ("250 ok\r\n", "BDAT 8\r\n01234567"),
        ("250 ok\r\n", "BDAT 8\r\n89abcdef"),
        ("250 ok\r\n", "BDAT 5 LAST\r\nXYZ\r\n"),
    ]);
    r.server("250 ok\r\n");
    assert!(r.outcome().all_delivered());
}

#[test]
fn bdat_chunk_refused_stops_and_needs_rset() {
    let mut r = chunking_started(&["CHUNKING"]);
    r.replies(&["250 ok\r\n", "250 ok\r\n"]);
    assert_eq!(r.server("552 5.3.4 too big\r\n"), "");
    r.expect_statuses(&[("b@r.example", RecipientStatus::Permanent, 552)]);
    assert_eq!(r.start(simple()), "RSET\r\n");
}

#[test]
fn bdat_pipelined_error_ignores_later_chunk_replies() {
    let mut r = chunking_started(&["PIPELINING", "CHUNKING"]);
    r.server("250 ok\r\n250 ok\r\n");
    assert_eq!(r.server("451 4.3.0 failed\r\n503 5.5.1 no\r\n"), "");
    assert!(r.outcomes.is_empty());
    r.server("250 2.0.0 strange\r\n");
    r.expect_statuses(&[("b@r.example", RecipientStatus::Transient, 451)]);
    assert_eq!(r.start(simple()), "RSET\r\n");
}

#[test]
fn bdat_not_sent_when_all_rcpts_fail() {
    let mut r = started(&["PIPELINING", "CHUNKING"], simple());
    assert_eq!(r.server("250 ok\r\n550 5.1.1 no\r\n"), "");
    assert_eq!(r.last, ClientAction::Ready);
    assert!(!r.outcome().chunking);
    assert_eq!(r.statuses()[0].1, RecipientStatus::Permanent);
}

#[test]
fn chunking_disabled_by_config() {
    let mut r = ready(
        ClientConfig {
            chunking: false,
            ..cfg()
        },
        &["PIPELINING", "CHUNKING"],
    );
    assert!(r.start(simple()).ends_with("DATA\r\n"));
}

// ------------------------------------------------------------------------------------
// SIZE, 8BITMIME, SMTPUTF8, REQUIRETLS, DSN

#[test]
fn size_parameter_and_refusal() {
    let mut r = ready(cfg(), &["SIZE 1000"]);
    assert_eq!(
        r.start(simple()),
        format!("MAIL FROM:<a@s.example> SIZE={}\r\n", MSG.len())
    );

    let mut r = ready(cfg(), &["SIZE 10", "PIPELINING"]);
    assert_eq!(r.start(simple()), "");
    assert_eq!(r.last, ClientAction::Ready);
    let o = r.outcome();
    assert_eq!(
        o.failure,
        Some(ClientFailure::MessageTooBig {
            size: MSG.len() as u64,
            limit: 10
        })
    );
    assert_eq!(o.recipients[0].status, RecipientStatus::Permanent);
    assert_eq!(o.recipients[0].reply.code, 552);
    assert_eq!(o.recipients[0].reply.status, Some((5, 3, 4)));
    assert!(!o.recipients[0].remote);
    // The connection is still good.
    assert_eq!(
        r.start(txn("a@s.example", &["b@r.example"], "x")),
        "MAIL FROM:<a@s.example> SIZE=3\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );

    // SIZE without a limit.
    let mut r = ready(cfg(), &["SIZE"]);
    assert_eq!(
        r.start(simple()),
        format!("MAIL FROM:<a@s.example> SIZE={}\r\n", MSG.len())
    );
}

#[test]
fn size_counts_normalised_line_endings() {
    // 5 octets, but 8 with CRLFs: refused at 7.
    let mut r = ready(cfg(), &["SIZE 7"]);
    r.start(txn("a@s.example", &["b@r.example"], "abc\nd"));
    assert!(matches!(
        r.outcome().failure,
        Some(ClientFailure::MessageTooBig { size: 8, limit: 7 })
    ));
}

#[test]
fn eightbitmime_parameter() {
    let mut r = ready(cfg(), &["8BITMIME"]);
    assert_eq!(
        r.start(txn(
            "a@s.example",
            &["b@r.example"],
            "Subject: x\r\n\r\nöl\r\n"
        )),
        "MAIL FROM:<a@s.example> BODY=8BITMIME\r\n"
    );
    // 7-bit content: no BODY parameter.
    let mut r = ready(cfg(), &["8BITMIME"]);
    assert_eq!(r.start(simple()), "MAIL FROM:<a@s.example>\r\n");
}

#[test]
fn eight_bit_without_8bitmime_downgrade_and_retry_on_the_same_connection() {
    let mut r = ready(cfg(), &["PIPELINING"]);
    let msg = "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nöl\r\n";
    let t = txn("a@s.example", &["b@r.example"], msg);
    assert_eq!(r.start(t.clone()), "");
    let o = r.outcomes.pop().unwrap();
    assert_eq!(o.failure, Some(ClientFailure::Needs7BitDowngrade));
    assert_eq!(o.recipients[0].reply.status, Some((5, 6, 3)));
    let converted = downgrade_8bit(&t.message).unwrap();
    assert!(converted.is_ascii());
    let t = Transaction {
        message: converted.into(),
        ..t
    };
    assert_eq!(
        r.start(t),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
    assert_eq!(
        r.server("250 ok\r\n250 ok\r\n354 go\r\n"),
        "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=B6l\r\n.\r\n"
    );
}

#[test]
fn smtputf8_offered() {
    let mut r = ready(cfg(), &["SMTPUTF8", "8BITMIME"]);
    assert_eq!(
        r.start(txn("jörg@s.example", &["b@r.example"], MSG)),
        "MAIL FROM:<jörg@s.example> SMTPUTF8\r\n"
    );
    assert_eq!(r.server("250 ok\r\n"), "RCPT TO:<b@r.example>\r\n");
}

#[test]
fn smtputf8_missing_for_sender_or_message_fails_everyone() {
    let mut r = ready(cfg(), &["8BITMIME"]);
    assert_eq!(r.start(txn("jörg@s.example", &["b@r.example"], MSG)), "");
    let o = r.outcomes.pop().unwrap();
    assert_eq!(o.failure, Some(ClientFailure::Smtputf8Unsupported));
    assert_eq!(o.recipients[0].reply.code, 553);
    assert_eq!(o.recipients[0].reply.status, Some((5, 6, 7)));
    assert!(!o.failure.unwrap().try_next_host());

    let t = Transaction {
        smtputf8: true,
        ..simple()
    };
    assert_eq!(r.start(t), "");
    assert_eq!(
        r.outcomes.pop().unwrap().failure,
        Some(ClientFailure::Smtputf8Unsupported)
    );
}

#[test]
fn smtputf8_missing_fails_only_utf8_recipients() {
    let mut r = ready(cfg(), &["PIPELINING"]);
    assert_eq!(
        r.start(txn(
            "a@s.example",
            &["ü@r.example", "b@r.example", "c@bücher.example"],
            MSG
        )),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
    r.replies(&["250 ok\r\n250 ok\r\n354 go\r\n", "250 ok\r\n"]);
    let o = r.outcome();
    assert_eq!(o.failure, None);
    r.expect_statuses(&[
        ("ü@r.example", RecipientStatus::Permanent, 553),
        ("b@r.example", RecipientStatus::Delivered, 250),
        ("c@bücher.example", RecipientStatus::Permanent, 553),
    ]);
    assert!(!o.recipients[0].remote);

    // Only UTF-8 recipients: nothing is sent.
    let mut r = ready(cfg(), &["PIPELINING"]);
    assert_eq!(r.start(txn("a@s.example", &["ü@r.example"], MSG)), "");
    assert_eq!(
        r.outcome().failure,
        Some(ClientFailure::Smtputf8Unsupported)
    );
}

#[test]
fn requiretls_needs_verified_tls_and_the_extension() {
    let t = || Transaction {
        requiretls: true,
        ..simple()
    };
    // Plaintext, even though the server announces REQUIRETLS.
    let mut r = ready(cfg(), &["REQUIRETLS"]);
    assert_eq!(r.start(t()), "");
    let o = r.outcome();
    assert_eq!(o.failure, Some(ClientFailure::RequireTlsUnavailable));
    assert_eq!(o.recipients[0].reply.status, Some((5, 7, 30)));
    assert!(o.failure.as_ref().unwrap().try_next_host());
    assert!(!o.failure.as_ref().unwrap().ends_connection());

    // TLS, verified, no REQUIRETLS.
    let mut r = ready_tls(cfg(), &["PIPELINING"]);
    assert_eq!(r.start(t()), "");
    assert_eq!(
        r.outcome().failure,
        Some(ClientFailure::RequireTlsUnavailable)
    );

    // TLS with REQUIRETLS, but not verified.
    let mut r = ready_tls(cfg(), &["REQUIRETLS"]);
    r.s.set_tls_verified(false);
    assert_eq!(r.start(t()), "");
    assert_eq!(
        r.outcome().failure,
        Some(ClientFailure::RequireTlsUnavailable)
    );

    // Verified TLS and REQUIRETLS.
    let mut r = ready_tls(cfg(), &["REQUIRETLS", "PIPELINING"]);
    assert_eq!(
        r.start(t()),
        "MAIL FROM:<a@s.example> REQUIRETLS\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
    r.replies(&["250 ok\r\n250 ok\r\n354 go\r\n", "250 ok\r\n"]);
    assert!(r.outcome().tls && r.outcome().tls_verified && r.outcome().all_delivered());
}

#[test]
fn dsn_parameters_only_when_announced() {
    let t = || Transaction {
        ret: Some(DsnRet::Headers),
        envid: Some("id+1=x y".into()),
        recipients: vec![
            Recipient {
                address: addr("b@r.example"),
                notify: Some(Notify {
                    success: true,
                    failure: true,
                    delay: false,
                }),
                orcpt: Some("B@R.example".into()),
            },
            Recipient {
                address: addr("c@r.example"),
                notify: Some(Notify::NEVER),
                orcpt: None,
            },
        ],
        ..simple()
    };
    let mut r = ready(cfg(), &["DSN", "PIPELINING"]);
    assert_eq!(
        r.start(t()),
        "MAIL FROM:<a@s.example> RET=HDRS ENVID=id+2B1+3Dx+20y\r\n\
         RCPT TO:<b@r.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B@R.example\r\n\
         RCPT TO:<c@r.example> NOTIFY=NEVER\r\nDATA\r\n"
    );
    let mut r = ready(cfg(), &["PIPELINING"]);
    assert_eq!(
        r.start(t()),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nRCPT TO:<c@r.example>\r\nDATA\r\n"
    );
}

#[test]
fn all_mail_parameters_together() {
    let mut r = ready_tls(
        cfg(),
        &["SIZE 100000", "8BITMIME", "SMTPUTF8", "REQUIRETLS", "DSN"],
    );
    let t = Transaction {
        requiretls: true,
        ret: Some(DsnRet::Full),
        ..txn(
            "jörg@s.example",
            &["b@r.example"],
            "Subject: x\r\n\r\nö\r\n",
        )
    };
    assert_eq!(
        r.start(t),
        "MAIL FROM:<jörg@s.example> SIZE=18 BODY=8BITMIME SMTPUTF8 REQUIRETLS RET=FULL\r\n"
    );
}

// ------------------------------------------------------------------------------------
// Connection reuse and the transaction API

#[test]
fn connection_reuse_without_rset_after_clean_transactions() {
    let mut r = ready(cfg(), &["PIPELINING"]);
    for i in 0..3 {
        let sent = r.start(simple());
        assert!(sent.starts_with("MAIL FROM"), "{i}: {sent}");
        r.replies(&["250 ok\r\n250 ok\r\n354 go\r\n", "250 ok\r\n"]);
        assert_eq!(r.last, ClientAction::Ready);
    }
    assert_eq!(r.outcomes.len(), 3);
    assert!(r.outcomes.iter().all(TransactionOutcome::all_delivered));
    r.s.quit();
    r.step();
    r.server("221 bye\r\n");
    assert_eq!(r.done().transactions, 3);
    assert_eq!(r.done().failure, None);
}

#[test]
fn next_transaction_refused_when_busy_or_quitting() {
    let mut r = ready(cfg(), &[]);
    r.s.next_transaction(simple()).unwrap();
    assert!(r.s.next_transaction(simple()).is_err());
    r.step();
    assert!(r.s.next_transaction(simple()).is_err());
    r.s.quit();
    // The running transaction finishes first, then QUIT.
    r.replies(&["250 ok\r\n", "250 ok\r\n", "354 go\r\n"]);
    assert_eq!(r.server("250 ok\r\n"), "QUIT\r\n");
    assert!(r.outcome().all_delivered());
    assert!(r.s.next_transaction(simple()).is_err());
}

#[test]
fn transaction_queued_before_the_greeting() {
    let mut r = Run::queued(cfg());
    r.server("220 mx\r\n");
    assert_eq!(
        r.server(&ehlo(&["PIPELINING"])),
        "MAIL FROM:<a@s.example>\r\nRCPT TO:<b@r.example>\r\nDATA\r\n"
    );
}

#[test]
fn no_recipients_nothing_sent() {
    let mut r = ready(cfg(), &[]);
    assert_eq!(r.start(txn("a@s.example", &[], MSG)), "");
    assert!(r.outcome().recipients.is_empty());
    assert_eq!(r.outcome().failure, None);
    assert_eq!(r.last, ClientAction::Ready);
}

#[test]
fn quit_reply_content_does_not_matter() {
    let mut r = ready(cfg(), &[]);
    r.s.quit();
    assert_eq!(r.step(), "QUIT\r\n");
    assert_eq!(r.server("500 whatever\r\n"), "");
    assert_eq!(r.done().failure, None);
    // After Done everything is ignored and Done repeats.
    r.s.feed(b"garbage");
    r.s.connection_lost();
    assert_eq!(r.step(), "");
    assert_eq!(r.done().failure, None);
}

#[test]
fn quit_before_the_greeting() {
    let mut r = Run::new(cfg());
    r.s.quit();
    r.server("220 mx\r\n");
    assert_eq!(r.server(&ehlo(&[])), "QUIT\r\n");
}

// ------------------------------------------------------------------------------------
// Connection failures and bad replies

#[test]
fn connection_lost_after_the_data_is_transient_not_delivered() {
    let mut r = started(&["PIPELINING"], simple());
    r.server("250 ok\r\n250 ok\r\n354 go\r\n");
    r.s.connection_lost();
    assert_eq!(r.step(), "");
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    assert_eq!(r.outcome().failure, Some(ClientFailure::ConnectionLost));
    assert_eq!(r.done().failure, Some(ClientFailure::ConnectionLost));
}

#[test]
fn timeout_ends_the_session() {
    let mut r = started(&[], simple());
    r.s.timed_out();
    assert_eq!(r.step(), "");
    assert_eq!(r.outcome().failure, Some(ClientFailure::Timeout));
    assert_eq!(r.done().failure, Some(ClientFailure::Timeout));
    // Timeout waiting for the QUIT reply is a normal end.
    let mut r = ready(cfg(), &[]);
    r.s.quit();
    r.step();
    r.s.timed_out();
    r.step();
    assert_eq!(r.done().failure, None);
}

#[test]
fn overlong_reply_is_bounded_and_fails() {
    let mut r = started(&[], simple());
    let long = format!("250 {}", "x".repeat(10_000));
    assert_eq!(r.server(&long), "");
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::Protocol(ProtocolError::LineTooLong {
            limit: DEFAULT_MAX_REPLY_LINE
        }))
    );
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);

    // Without a line end, fed a little at a time: fails as soon as the limit is hit.
    let mut r = started(&[], simple());
    let mut fed = 0;
    while matches!(r.last, ClientAction::NeedInput) {
        r.server(&"y".repeat(100));
        fed += 100;
        assert!(fed <= DEFAULT_MAX_REPLY_LINE + 100);
    }
    assert!(matches!(
        r.done().failure,
        Some(ClientFailure::Protocol(ProtocolError::LineTooLong { .. }))
    ));
}

#[test]
fn too_many_reply_lines() {
    let mut r = Run::new(ClientConfig {
        max_reply_lines: 5,
        ..cfg()
    });
    r.server("220 mx\r\n");
    assert_eq!(r.server(&"250-X\r\n".repeat(10)), "");
    assert_eq!(
        r.done().failure,
        Some(ClientFailure::Protocol(ProtocolError::TooManyLines {
            limit: 5
        }))
    );
}

#[test]
fn unexpected_and_malformed_replies_mid_transaction() {
    for bad in [
        "354 go\r\n",
        "220 hello again\r\n",
        "999 what\r\n",
        "250-a\r\n550 b\r\n",
    ] {
        let mut r = started(&[], simple());
        assert_eq!(r.server(bad), "", "{bad}");
        assert!(
            matches!(r.done().failure, Some(ClientFailure::Protocol(_))),
            "{bad}"
        );
        assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    }
    // 354 to the end of the data: not delivered.
    let mut r = started(&[], simple());
    r.replies(&["250 ok\r\n", "250 ok\r\n", "354 go\r\n", "354 again\r\n"]);
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
    assert!(matches!(
        r.done().failure,
        Some(ClientFailure::Protocol(ProtocolError::UnexpectedReply {
            phase: ClientPhase::DataTermination,
            code: 354
        }))
    ));
}

#[test]
fn rset_refused_ends_the_session() {
    let mut r = started(&[], simple());
    r.replies(&["250 ok\r\n", "550 no\r\n"]);
    assert_eq!(r.start(simple()), "RSET\r\n");
    r.outcomes.clear();
    assert_eq!(r.server("500 no RSET for you\r\n"), "");
    assert!(matches!(r.done().failure, Some(ClientFailure::Protocol(_))));
    assert_eq!(r.statuses()[0].1, RecipientStatus::Transient);
}

#[test]
fn multi_line_rejection_text_kept() {
    let mut r = started(&[], simple());
    r.server("250 ok\r\n");
    r.server(
        "550-5.7.1 Message rejected.\r\n550-5.7.1 See https://example/why\r\n550 5.7.1 Bye\r\n",
    );
    let reply = &r.outcome().recipients[0].reply;
    assert_eq!(reply.status, Some((5, 7, 1)));
    assert_eq!(
        reply.text,
        "Message rejected.\nSee https://example/why\nBye"
    );
}

#[test]
fn ehlo_name_cannot_inject_commands() {
    let mut r = Run::new(ClientConfig::new("evil.example\r\nMAIL FROM:<x@y>"));
    assert_eq!(
        r.server("220 mx\r\n"),
        "EHLO evil.exampleMAILFROM:<x@y>\r\n"
    );
    let mut r = Run::new(ClientConfig::new(" \r\n"));
    assert_eq!(r.server("220 mx\r\n"), "EHLO localhost\r\n");
}

#[test]
fn phases_and_timeouts() {
    use ClientPhase as P;
    let m = |x: u64| Some(Duration::from_secs(x * 60));
    assert_eq!(P::Greeting.timeout(), m(5));
    assert_eq!(P::Mail.timeout(), m(5));
    assert_eq!(P::Rcpt.timeout(), m(5));
    assert_eq!(P::DataInit.timeout(), m(2));
    assert_eq!(P::DataBlock.timeout(), m(3));
    assert_eq!(P::DataTermination.timeout(), m(10));
    assert_eq!(P::Idle.timeout(), None);
    assert_eq!(P::Closed.timeout(), None);
    for p in [
        P::Ehlo,
        P::StartTls,
        P::TlsHandshake,
        P::Auth,
        P::Rset,
        P::Quit,
    ] {
        assert_eq!(p.timeout(), m(5), "{p:?}");
    }
}

#[test]
fn failure_display_is_one_line() {
    let f = ClientFailure::Greeting(Reply::new(554, (5, 7, 1), "no\nreally"));
    assert_eq!(f.to_string(), "greeting refused: 554 5.7.1 no really");
    let f = ClientFailure::Protocol(ProtocolError::LineTooLong { limit: 10 });
    assert_eq!(
        f.to_string(),
        "protocol error: reply line longer than 10 octets"
    );
}
