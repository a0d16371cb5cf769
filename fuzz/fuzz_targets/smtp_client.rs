//! The SMTP client session (`hato_smtp::ClientSession`) fed arbitrary server replies.
//!
//! Input: `[flags, chunking, t0, t1, p, server bytes...]`. The server bytes are cut at the
//! first `<TLS>`: what comes before is the plaintext conversation, what follows is what
//! the server says after a STARTTLS handshake.
//! - `flags`: bits 0-1 TLS requirement (none, opportunistic, required, required), 2
//!   implicit TLS, 3 AUTH credentials, 4 use PIPELINING, 5 use CHUNKING, 6 the TLS
//!   handshake fails, 7 the certificate is not verified and, at the end of the server
//!   bytes, the driver's timer fires (otherwise the server closes the connection);
//! - `chunking`: how the server bytes are cut into reads (see `hato_fuzz::chunks`);
//! - `t0 t1`: how many transactions (`t0 % 4`) and which (3-bit indices into a pool);
//! - `p`: BDAT chunk size (bits 0-5) and the reply-line limit (bits 6-7).
//!
//! Checked (by the crate's driver, `hato_smtp::client::fuzzing`, shared with its property
//! tests): no panic, bounded buffering, the session always ends, one outcome per
//! transaction with its recipients in order, "delivered" only on a positive server reply,
//! REQUIRETLS messages only over verified TLS, no AUTH in plaintext, and under required
//! TLS nothing but EHLO/HELO/STARTTLS/QUIT in plaintext.
#![no_main]

use hato_fuzz::{chunks, header};
use hato_smtp::client::fuzzing::{Server, drive, transactions};
use hato_smtp::{
    Address, ClientConfig, Credentials, DsnRet, Notify, Recipient, TlsRequirement, Transaction,
};
use libfuzzer_sys::fuzz_target;

/// The crate's shared transactions and two of the fuzz target's own (8 in all: a
/// 3-bit index picks one).
fn pool() -> Vec<Transaction> {
    let a = |s: &str| Address::parse(s).unwrap();
    let mut pool = transactions();
    pool.extend([
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
    ]);
    pool
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

    let server = Server {
        plain: chunks(plain, how),
        tls: chunks(tls, how),
        tls_fails: flags & 64 != 0,
        tls_verified: flags & 128 == 0,
        time_out: flags & 128 != 0,
    };
    drive(&cfg, &txns, server);
});
