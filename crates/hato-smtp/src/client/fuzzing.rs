//! The client driver the property tests and the `smtp_client` fuzz target share: it
//! plays a scripted server to a [`ClientSession`], hands over transactions and checks
//! the invariants that hold whatever the server says.
//!
//! Compiled for the crate's tests and with the `fuzzing` feature (the fuzz crate).

use std::collections::VecDeque;

use super::{
    ClientAction, ClientConfig, ClientSession, ConnectionOutcome, RecipientStatus, TlsRequirement,
    Transaction, TransactionOutcome,
};
use crate::address::Address;

/// Everything observable about a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Bytes written; `<TLS>` marks the handshake.
    pub sent: Vec<u8>,
    pub outcomes: Vec<TransactionOutcome>,
    pub done: Option<ConnectionOutcome>,
}

/// What the server says and how the connection behaves.
pub struct Server<'a> {
    /// The reads of the plaintext conversation.
    pub plain: Vec<&'a [u8]>,
    /// The reads after a STARTTLS handshake.
    pub tls: Vec<&'a [u8]>,
    /// The handshake fails (when the session asks for it with no plaintext unread).
    pub tls_fails: bool,
    /// What the driver reports of the server certificate after the handshake.
    pub tls_verified: bool,
    /// At the end of the reads the driver's timer fires, rather than the server
    /// closing the connection.
    pub time_out: bool,
}

/// Runs `cfg` against `server`, handing over `txns` one by one and QUITting when out
/// of work. Panics where an invariant breaks: buffering beyond the reply limits and a
/// read, an empty send, STARTTLS it should not send, a session that does not end or
/// goes on after `Done`, not one outcome per transaction with its recipients in
/// order, "delivered" without a positive server reply, a REQUIRETLS message delivered
/// without verified TLS, AUTH in plaintext, and under required TLS anything but
/// EHLO/HELO/STARTTLS/QUIT in plaintext.
pub fn drive(cfg: &ClientConfig, txns: &[&Transaction], server: Server<'_>) -> Trace {
    let mut s = ClientSession::new(cfg.clone());
    let mut pending: VecDeque<&Transaction> = txns.iter().copied().collect();
    let mut handed: Vec<&Transaction> = Vec::new();
    if let Some(t) = pending.pop_front() {
        s.next_transaction(t.clone()).unwrap();
        handed.push(t);
    }
    let longest_read = server.plain.iter().chain(&server.tls).map(|r| r.len());
    let bound = (s.config.max_reply_line * (s.config.max_reply_lines + 1))
        .saturating_add(longest_read.max().unwrap_or(0));
    let mut reads: VecDeque<&[u8]> = server.plain.into();
    let mut in_tls = false;
    let mut plain_sent: Vec<u8> = Vec::new();
    let mut trace = Trace::default();
    for _ in 0..1_000_000 {
        let action = s.poll();
        assert!(
            s.reader.buffered() <= bound,
            "buffered {}",
            s.reader.buffered()
        );
        match action {
            ClientAction::Send(b) => {
                assert!(!b.is_empty(), "empty Send");
                if !in_tls && !cfg.already_tls {
                    plain_sent.extend_from_slice(&b);
                }
                trace.sent.extend(b);
            }
            ClientAction::NeedInput => match reads.pop_front() {
                Some(r) => s.feed(r),
                None if server.time_out => s.timed_out(),
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
                    None if server.tls_fails => s.tls_failed(),
                    None => {
                        in_tls = true;
                        reads = server.tls.iter().copied().collect();
                        s.tls_established();
                        s.set_tls_verified(server.tls_verified);
                        trace.sent.extend_from_slice(b"<TLS>");
                    }
                }
            }
            ClientAction::TransactionDone(o) => trace.outcomes.push(*o),
            ClientAction::Ready => match pending.pop_front() {
                Some(t) => {
                    s.next_transaction(t.clone()).unwrap();
                    handed.push(t);
                }
                None => s.quit(),
            },
            ClientAction::Done(o) => {
                trace.done = Some(*o);
                break;
            }
            // A streamed transaction: its `message` holds what the store would hand over,
            // given here in pieces of a third of a chunk (at least one octet).
            ClientAction::NeedMessage { offset } => {
                let t = handed
                    .last()
                    .expect("a message asked for outside a transaction");
                assert!(t.streamed.is_some(), "NeedMessage for a whole message");
                let at = usize::try_from(offset).unwrap();
                assert!(at < t.message.len(), "asked past the end");
                let end = (at + (cfg.chunk_size / 3).max(1)).min(t.message.len());
                s.message_data(&t.message[at..end]);
            }
        }
    }
    let Some(done) = &trace.done else {
        panic!("session did not finish: {s:?}");
    };
    assert_eq!(
        s.poll(),
        ClientAction::Done(Box::new(done.clone())),
        "Done is final"
    );

    assert_eq!(
        trace.outcomes.len(),
        handed.len(),
        "one outcome per transaction"
    );
    assert_eq!(done.transactions as usize, handed.len());
    for (o, t) in trace.outcomes.iter().zip(&handed) {
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

    // Credentials never in plaintext; under Required nothing but EHLO/HELO/STARTTLS
    // (and QUIT) in plaintext.
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
    trace
}

/// Transactions worth handing over whatever the server says: a plain one, a null
/// sender with three recipients and a message with a lone dot, bare CR and LF and no
/// final line end, 8-bit content, a UTF-8 sender, a UTF-8 recipient, no recipients.
pub fn transactions() -> Vec<Transaction> {
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
    ]
}
