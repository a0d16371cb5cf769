//! The SMTP client session (`hato_smtp::ClientSession`) fed arbitrary server replies.
//!
//! Input: `[flags, chunking, t0, t1, p, server bytes...]`. The server bytes are cut at the
//! first `<TLS>`: what comes before is the plaintext conversation, what follows is what
//! the server says after a STARTTLS handshake.
//! - `flags`: bits 0-1 TLS requirement (none, opportunistic, required, required), 2
//!   implicit TLS, 3 AUTH credentials, 4 use PIPELINING, 5 use CHUNKING, 6 the TLS
//!   handshake fails, 7 the certificate is not verified;
//! - `chunking`: how the server bytes are cut into reads (see `hato_fuzz::chunks`);
//! - `t0 t1`: how many transactions (`t0 % 4`) and which (3-bit indices into a pool);
//! - `p`: BDAT chunk size (bits 0-5) and the reply-line limit (bits 6-7).
//!
//! Checked (as in the crate's property tests): no panic, the session always ends, one
//! outcome per transaction with its recipients in order, "delivered" only on a positive
//! server reply, no AUTH in plaintext, and under required TLS nothing but EHLO/HELO/
//! STARTTLS/QUIT in plaintext.
#![no_main]

use std::collections::VecDeque;

use hato_fuzz::{chunks, header};
use hato_smtp::{
    Address, ClientAction, ClientConfig, ClientSession, Credentials, DsnRet, Notify, Recipient,
    RecipientStatus, TlsRequirement, Transaction,
};
use libfuzzer_sys::fuzz_target;

fn pool() -> Vec<Transaction> {
    let a = |s: &str| Address::parse(s).unwrap();
    vec![
        Transaction::new(
            Some(a("a@s.example")),
            [a("b@r.example")],
            &b"Subject: x\r\n\r\nhi\r\n"[..],
        ),
        Transaction::new(
            None,
            [a("b@r.example"), a("c@r.example"), a("d@r.example")],
            &b".\r\n..\n.x\rend"[..],
        ),
        Transaction::new(
            Some(a("a@s.example")),
            [a("b@r.example")],
            "8bit: \u{fc}\r\n".as_bytes(),
        ),
        Transaction::new(
            Some(a("j\u{f6}rg@s.example")),
            [a("b@r.example")],
            &b"x"[..],
        ),
        Transaction::new(
            Some(a("a@s.example")),
            [a("\u{fc}@r.example"), a("b@r.example")],
            &b"x"[..],
        ),
        Transaction::new(Some(a("a@s.example")), [], &b"x"[..]),
        Transaction {
            smtputf8: true,
            ..Transaction::new(Some(a("a@s.example")), [a("b@r.example")], vec![b'y'; 300])
        },
        Transaction {
            requiretls: true,
            ret: Some(DsnRet::Full),
            envid: Some("e=1".into()),
            recipients: vec![
                Recipient {
                    address: a("b@r.example"),
                    notify: Some(Notify::NEVER),
                    orcpt: Some("B@r.example".into()),
                },
                Recipient {
                    address: a("c@r.example"),
                    notify: None,
                    orcpt: Some("\u{e7}@r.example".into()),
                },
            ],
            ..Transaction::new(Some(a("a@s.example")), [], &b"x\r\n"[..])
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let ([flags, how, t0, t1, p], input) = header::<5>(data);
    let (plain, tls) = match input.windows(5).position(|w| w == b"<TLS>") {
        Some(i) => (&input[..i], &input[i + 5..]),
        None => (input, &b""[..]),
    };
    let cfg = ClientConfig {
        tls: match flags & 3 {
            0 => TlsRequirement::None,
            1 => TlsRequirement::Opportunistic,
            _ => TlsRequirement::Required,
        },
        already_tls: flags & 4 != 0,
        auth: (flags & 8 != 0).then(|| Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        }),
        max_reply_line: 512,
        max_reply_lines: [1, 3, 12, 100][usize::from(p >> 6)],
        pipelining: flags & 16 != 0,
        chunking: flags & 32 != 0,
        chunk_size: usize::from(p & 63) + 1,
        ..ClientConfig::new("client.example")
    };
    let pool = pool();
    let picks = [t0 >> 2, t0 >> 5, t1, t1 >> 3];
    let txns: Vec<&Transaction> = picks[..usize::from(t0 % 4)]
        .iter()
        .map(|&i| &pool[usize::from(i & 7)])
        .collect();

    let mut s = ClientSession::new(cfg.clone());
    let mut pending: VecDeque<&Transaction> = txns.iter().copied().collect();
    let mut handed: Vec<&Transaction> = Vec::new();
    if let Some(t) = pending.pop_front() {
        s.next_transaction(t.clone()).unwrap();
        handed.push(t);
    }
    let mut reads: VecDeque<&[u8]> = chunks(plain, how).into();
    let mut in_tls = false;
    let mut plain_sent: Vec<u8> = Vec::new();
    let mut outcomes = Vec::new();
    let mut done = None;
    for _ in 0..1_000_000 {
        match s.poll() {
            ClientAction::Send(b) => {
                assert!(!b.is_empty(), "empty Send");
                if !in_tls && !cfg.already_tls {
                    plain_sent.extend_from_slice(&b);
                }
            }
            ClientAction::NeedInput => match reads.pop_front() {
                Some(r) => s.feed(r),
                None if flags & 128 != 0 && done.is_none() => s.timed_out(),
                None => s.connection_lost(),
            },
            ClientAction::StartTls => {
                assert!(
                    !in_tls && !cfg.already_tls && cfg.tls != TlsRequirement::None,
                    "STARTTLS it should not send"
                );
                match reads.pop_front() {
                    // A driver that keeps reading plaintext: the session must notice.
                    Some(r) => s.feed(r),
                    None if flags & 64 != 0 => s.tls_failed(),
                    None => {
                        in_tls = true;
                        reads = chunks(tls, how).into();
                        s.tls_established();
                        s.set_tls_verified(flags & 128 == 0);
                    }
                }
            }
            ClientAction::TransactionDone(o) => outcomes.push(*o),
            ClientAction::Ready => match pending.pop_front() {
                Some(t) => {
                    s.next_transaction(t.clone()).unwrap();
                    handed.push(t);
                }
                None => s.quit(),
            },
            ClientAction::Done(o) => {
                done = Some(*o);
                break;
            }
        }
    }
    let done = done.expect("the session did not finish");
    assert_eq!(
        s.poll(),
        ClientAction::Done(Box::new(done.clone())),
        "Done is final"
    );

    assert_eq!(outcomes.len(), handed.len(), "one outcome per transaction");
    assert_eq!(done.transactions as usize, handed.len());
    for (o, t) in outcomes.iter().zip(&handed) {
        let got: Vec<&Address> = o.recipients.iter().map(|r| &r.address).collect();
        let want: Vec<&Address> = t.recipients.iter().map(|r| &r.address).collect();
        assert_eq!(got, want, "recipients out of order");
        for r in &o.recipients {
            assert!((200..600).contains(&r.reply.code));
            if r.status == RecipientStatus::Delivered {
                assert!(r.remote && r.reply.is_positive(), "delivered without a 2xx");
            }
        }
        if t.requiretls
            && o.recipients
                .iter()
                .any(|r| r.status == RecipientStatus::Delivered)
        {
            assert!(
                o.tls && o.tls_verified,
                "REQUIRETLS message sent without verified TLS"
            );
        }
    }
    let plain_text = String::from_utf8_lossy(&plain_sent);
    assert!(
        !plain_text.contains("AUTH"),
        "AUTH in plaintext: {plain_text}"
    );
    if cfg.tls == TlsRequirement::Required {
        for line in plain_text.split_terminator("\r\n") {
            assert!(
                line.starts_with("EHLO ")
                    || line.starts_with("HELO ")
                    || line == "STARTTLS"
                    || line == "QUIT",
                "plaintext under required TLS: {line}"
            );
        }
    }
});
