//! The SMTP server session (`hato_smtp::Session`) fed arbitrary client bytes.
//!
//! Input: `[flags, chunking, d0, d1, client bytes...]`.
//! - `flags` chooses the listener configuration (bit 0 submission, 1 normalise bare line
//!   endings, 2 STARTTLS offered, 3 implicit TLS, 4 require TLS, 5 small limits, 6 reject
//!   early talkers, 7 end with `shutdown()` instead of `timeout()`);
//! - `chunking` how the bytes are cut into reads (see `hato_fuzz::chunks`);
//! - `d0 d1` the driver's decisions (refuse a delivery, ...).
//!
//! The driver answers every action the way `hato`'s does. Checked: no panic, the session
//! ends every feed with NeedInput or Close, the output is well-formed SMTP replies
//! and bounded by the input, deliveries are consistent, the `Received:`
//! field is one header field whatever the client sent, and (without STARTTLS, where the
//! cut matters by design) the cut of the input changes nothing.
#![no_main]

use std::sync::Arc;

use hato_fuzz::{Decisions, assert_smtp_replies, chunks, header};
use hato_smtp::{
    Action, Address, AuthOutcome, BareLinePolicy, Config, Mode, Peer, Reply, Session, TlsInfo,
};
use libfuzzer_sys::fuzz_target;

fn config(flags: u8) -> Config {
    let small = flags & 32 != 0;
    Config {
        hostname: "mx.example".into(),
        mode: if flags & 1 != 0 {
            Mode::Submission
        } else {
            Mode::Mx
        },
        starttls: flags & 4 != 0,
        require_tls: flags & 16 != 0,
        max_message_size: if small { 300 } else { 100_000 },
        max_recipients: if small { 3 } else { 100 },
        max_errors: if small { 50 } else { 10 },
        max_command_line: 512,
        max_text_line: if small { 80 } else { 1000 },
        bare_line_endings: if flags & 2 != 0 {
            BareLinePolicy::Normalize
        } else {
            BareLinePolicy::Reject
        },
        reject_early_talkers: flags & 64 != 0,
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some("mx.example".into()),
    }
}

/// Everything observable about a run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Trace {
    output: Vec<u8>,
    actions: Vec<String>,
    closed: bool,
}

fn check_address(a: &Address) {
    let again = Address::parse(&a.to_string());
    assert_eq!(again.as_ref(), Ok(a), "address does not round-trip");
    assert!(!a.local_part().is_empty());
}

fn check_received(h: &str) {
    assert!(h.is_ascii(), "non-ASCII Received: {h:?}");
    let body = h.strip_suffix("\r\n").expect("Received: ends with CRLF");
    for (i, line) in body.split("\r\n").enumerate() {
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR/LF in Received: {h:?}"
        );
        if i == 0 {
            assert!(line.starts_with("Received: "), "{h:?}");
        } else {
            assert!(line.starts_with('\t'), "Received: continuation {h:?}");
        }
        assert!(line.len() <= 998, "Received: line too long");
    }
}

fn drive(flags: u8, decisions: &[u8], pieces: &[&[u8]]) -> Trace {
    let cfg = config(flags);
    let max_message = cfg.max_message_size;
    let implicit = flags & 8 != 0;
    let mut d = Decisions::new(decisions);
    let mut s = Session::new(
        Arc::new(cfg),
        Peer {
            ip: "2001:db8::7".parse().unwrap(),
            port: 1,
            reverse_name: Some("client.example".into()),
        },
        implicit.then(tls_info),
    );
    s.greet();
    let mut t = Trace::default();
    'feed: for piece in pieces {
        s.feed(piece);
        let mut guard = 0u32;
        loop {
            guard += 1;
            assert!(guard < 100_000, "session loops");
            let a = s.poll();
            if !matches!(a, Action::NeedInput | Action::Close) {
                t.actions.push(format!("{a:?}"));
            }
            match a {
                Action::NeedInput => break,
                Action::Close => {
                    t.closed = true;
                    assert_eq!(s.poll(), Action::Close, "Close is final");
                    break 'feed;
                }
                Action::StartTls => {
                    assert!(!s.is_tls(), "STARTTLS under TLS");
                    s.tls_established(tls_info());
                }
                Action::Authenticate { username, .. } => {
                    let v = match username.as_str() {
                        "alice" => AuthOutcome::Ok,
                        "throttle" => AuthOutcome::Throttled,
                        _ => AuthOutcome::Failed,
                    };
                    s.auth_result(v);
                }
                Action::CheckSender { address } => {
                    if let Some(a) = &address {
                        check_address(a);
                    }
                    let r = if address.as_ref().is_some_and(|a| a.local_part() == "bad") {
                        Err(Reply::new(550, (5, 7, 1), "no"))
                    } else {
                        Ok(())
                    };
                    s.sender_result(r);
                }
                Action::CheckRecipient { address } => {
                    check_address(&address);
                    let r = if address.local_part() == "bad" {
                        Err(Reply::new(550, (5, 1, 1), "no"))
                    } else {
                        Ok(())
                    };
                    s.recipient_result(r);
                }
                Action::Deliver(env) => {
                    assert!(env.body.len() <= max_message, "message over the size limit");
                    assert!(!env.recipients.is_empty(), "delivery without recipients");
                    assert_eq!(env.rcpt_dsn.len(), env.recipients.len());
                    assert!(
                        !env.requiretls || env.tls.is_some(),
                        "REQUIRETLS without TLS"
                    );
                    assert_eq!(env.tls.is_some(), s.is_tls());
                    check_received(&env.received_header(
                        "mx.example",
                        "ID",
                        "Thu, 1 Jan 2026 00:00:00 +0000",
                    ));
                    let r = if d.decide() {
                        Err(Reply::new(451, (4, 3, 0), "try later"))
                    } else {
                        Ok("ID".into())
                    };
                    s.delivery_result(r);
                }
            }
        }
        t.output.extend(s.output());
    }
    if !t.closed {
        if flags & 128 != 0 {
            s.shutdown();
        } else {
            s.timeout();
        }
        assert_eq!(s.poll(), Action::Close);
    }
    t.output.extend(s.output());
    t
}

fuzz_target!(|data: &[u8]| {
    let ([flags, how, d0, d1], input) = header::<4>(data);
    let pieces = chunks(input, how);
    let t = drive(flags, &[d0, d1], &pieces);
    assert_smtp_replies(&t.output);
    let bound = 1024 + 300 * (input.len() + 1);
    assert!(t.output.len() <= bound, "{} > {bound}", t.output.len());

    // The cut does not matter, except across STARTTLS (input after it is discarded).
    let starttls = input
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"STARTTLS"));
    if !starttls && how != 0 {
        let whole = drive(flags, &[d0, d1], &[input]);
        assert_eq!(whole, t, "result depends on how the input is cut");
    }
});
