//! Property tests: arbitrary server bytes never panic and always end the session
//! with one outcome per transaction; feeding byte by byte gives the same result as
//! feeding everything at once; TLS policy holds whatever the server says; the
//! message encoders agree with each other.

use hato_wire::testing::assert_no_bare_cr_lf;
use proptest::prelude::*;

use super::encode::{Normalizer, scan};
use super::fuzzing::{self, Trace};
use super::*;
use crate::address::Address;

/// Runs `cfg` against a well-behaved server that says `plain` (then `tls` after a
/// handshake) in reads of `chunk` octets (see [`fuzzing::drive`] for what it checks).
fn drive(
    cfg: &ClientConfig,
    txns: &[Transaction],
    plain: &[u8],
    tls: &[u8],
    chunk: usize,
) -> Trace {
    let chunk = chunk.max(1);
    let txns: Vec<&Transaction> = txns.iter().collect();
    let server = fuzzing::Server {
        plain: plain.chunks(chunk).collect(),
        tls: tls.chunks(chunk).collect(),
        tls_fails: false,
        tls_verified: true,
        time_out: false,
    };
    fuzzing::drive(cfg, &txns, server)
}

fn config() -> impl Strategy<Value = ClientConfig> {
    (
        prop_oneof![
            Just(TlsRequirement::None),
            Just(TlsRequirement::Opportunistic),
            Just(TlsRequirement::Required)
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        1usize..40,
        1usize..12,
    )
        .prop_map(
            |(tls, already_tls, auth, pipelining, chunking, chunk_size, max_reply_lines)| {
                ClientConfig {
                    tls,
                    already_tls,
                    auth: auth.then(|| Credentials {
                        username: "alice".into(),
                        password: "s3cret".into(),
                    }),
                    max_reply_line: 512,
                    max_reply_lines,
                    pipelining,
                    chunking,
                    chunk_size,
                    ..ClientConfig::new("client.example")
                }
            },
        )
}

fn transaction() -> impl Strategy<Value = Transaction> {
    let a = |s: &str| Address::parse(s).unwrap();
    let mut pool = fuzzing::transactions();
    pool.extend([
        Transaction::new(Some(a("a@s.example")), [a("b@r.example")], vec![b'y'; 300]),
        Transaction {
            requiretls: true,
            ret: Some(DsnRet::Full),
            envid: Some("e=1".into()),
            recipients: vec![Recipient {
                address: a("b@r.example"),
                notify: Some(Notify::NEVER),
                orcpt: Some("B@r.example".into()),
            }],
            ..Transaction::new(Some(a("a@s.example")), [], &b"x\r\n"[..])
        },
    ]);
    proptest::sample::select(pool)
}

fn transactions() -> impl Strategy<Value = Vec<Transaction>> {
    proptest::collection::vec(transaction(), 0..4)
}

/// Replies a server might send (and some it should not).
fn reply() -> impl Strategy<Value = Vec<u8>> {
    let pool: Vec<&'static [u8]> = vec![
        b"250 2.0.0 ok\r\n",
        b"250 2.1.5 ok\r\n",
        b"251 2.1.5 forwarded\r\n",
        b"354 go ahead\r\n",
        b"354 go ahead\r\n",
        b"550 5.1.1 unknown\r\n",
        b"451 4.3.0 later\r\n",
        b"452 4.5.3 too many\r\n",
        b"552 5.3.4 too big\r\n",
        b"554 5.7.1 no\r\n",
        b"503 5.5.1 sequence\r\n",
        b"250-multi\r\n250 line\r\n",
        b"220 2.0.0 ready for TLS\r\n",
        b"235 2.7.0 ok\r\n",
        b"334 VXNlcm5hbWU6\r\n",
        b"535 5.7.8 bad\r\n",
        b"221 bye\r\n",
        b"421 4.7.0 closing\r\n",
        b"502 5.5.2 what\r\n",
        b"garbage\r\n",
        b"250",
        b"\r\n",
        b"2",
    ];
    proptest::sample::select(pool).prop_map(|r| r.to_vec())
}

fn ehlo_reply() -> impl Strategy<Value = Vec<u8>> {
    let keywords = [
        "PIPELINING",
        "SIZE 200",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "STARTTLS",
        "DSN",
        "REQUIRETLS",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
        "AUTH LOGIN",
    ];
    proptest::sample::subsequence(keywords.to_vec(), 0..keywords.len()).prop_map(|kw| {
        let mut lines = vec!["mx.example"];
        lines.extend(kw);
        Reply::without_status(250, lines.join("\n")).to_bytes()
    })
}

/// A plausible session script: greeting, EHLO reply, then replies.
fn script() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            4 => Just(b"220 mx.example ESMTP\r\n".to_vec()),
            1 => Just(b"554 5.7.1 go away\r\n".to_vec()),
            1 => Just(b"421 4.3.2 busy\r\n".to_vec()),
        ],
        prop_oneof![
            4 => ehlo_reply(),
            1 => Just(b"502 5.5.2 EHLO?\r\n250 old.example\r\n".to_vec()),
        ],
        proptest::collection::vec(reply(), 0..30),
    )
        .prop_map(|(greeting, ehlo, replies)| {
            let mut v = greeting;
            v.extend(ehlo);
            v.extend(replies.concat());
            v
        })
}

/// Post-TLS: EHLO reply then replies.
fn tls_script() -> impl Strategy<Value = Vec<u8>> {
    (ehlo_reply(), proptest::collection::vec(reply(), 0..30)).prop_map(|(ehlo, replies)| {
        let mut v = ehlo;
        v.extend(replies.concat());
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes: no panic, bounded buffering, the session ends, invariants hold.
    #[test]
    fn random_server_bytes_never_panic(
        cfg in config(),
        txns in transactions(),
        plain in proptest::collection::vec(any::<u8>(), 0..2000),
        tls in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..300,
    ) {
        drive(&cfg, &txns, &plain, &tls, chunk);
    }

    /// Arbitrary bytes after a valid start.
    #[test]
    fn random_bytes_after_a_valid_start(
        cfg in config(),
        txns in transactions(),
        ehlo in ehlo_reply(),
        noise in proptest::collection::vec(any::<u8>(), 0..1000),
        chunk in 1usize..300,
    ) {
        let mut plain = b"220 mx\r\n".to_vec();
        plain.extend(ehlo);
        plain.extend(noise);
        drive(&cfg, &txns, &plain, &plain, chunk);
    }

    /// Byte-by-byte feeding, random pieces and all at once give the same trace.
    #[test]
    fn chunking_of_server_bytes_does_not_matter(
        cfg in config(),
        txns in transactions(),
        plain in script(),
        tls in tls_script(),
        chunk in 2usize..50,
    ) {
        let whole = drive(&cfg, &txns, &plain, &tls, usize::MAX);
        let bytes = drive(&cfg, &txns, &plain, &tls, 1);
        prop_assert_eq!(&whole, &bytes);
        let pieces = drive(&cfg, &txns, &plain, &tls, chunk);
        prop_assert_eq!(&whole, &pieces);
    }

    /// A message handed over in pieces (as outbound delivery does with large ones) goes out
    /// exactly as the whole message does, with the same outcomes.
    #[test]
    fn streamed_messages_go_out_like_whole_ones(
        cfg in config(),
        txns in transactions(),
        plain in script(),
        tls in tls_script(),
    ) {
        let whole = drive(&cfg, &txns, &plain, &tls, usize::MAX);
        let streamed: Vec<Transaction> = txns
            .iter()
            .cloned()
            .map(|mut t| {
                let len = t.message.len() as u64;
                t.streamed = Some(Streamed { len, facts: scan(&t.message) });
                t
            })
            .collect();
        prop_assert_eq!(whole, drive(&cfg, &streamed, &plain, &tls, usize::MAX));
    }

    /// The normaliser and the size scan agree; DATA transparency round-trips.
    #[test]
    fn encoders_agree(
        msg in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), Just(0xc3u8), any::<u8>()],
            0..300,
        ),
        max in 1usize..64,
    ) {
        let mut plain = Vec::new();
        let mut n = Normalizer::new(false);
        while !n.is_done() {
            let before = plain.len();
            n.fill(&msg, &mut plain, before + max);
        }
        let sc = scan(&msg);
        prop_assert_eq!(plain.len() as u64, sc.size);
        prop_assert_eq!(sc.eight_bit, msg.iter().any(|&b| b >= 0x80));
        // Only CRLF line ends, and the last line is terminated.
        assert_no_bare_cr_lf(&plain);
        prop_assert!(plain.is_empty() || plain.ends_with(b"\r\n"));

        let mut data = Vec::new();
        let mut n = Normalizer::new(true);
        while !n.is_done() {
            let before = data.len();
            n.fill(&msg, &mut data, before + max);
        }
        prop_assert!(data.ends_with(b".\r\n"));
        let body = &data[..data.len() - 3];
        // The receiver's view: undo dot-stuffing line by line; no line is a lone dot.
        let mut unstuffed = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            prop_assert!(line != b".\r\n");
            unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        prop_assert_eq!(unstuffed, plain);
    }

    /// Rendered replies parse back to themselves.
    #[test]
    fn replies_round_trip(
        code in 200u16..600,
        status in proptest::option::of((0u16..1000, 0u16..1000)),
        text in "[a-z ]{0,20}(\n[a-z ]{0,20}){0,5}",
    ) {
        let reply = Reply {
            code,
            // 3xx replies have no enhanced status class (RFC 3463).
            status: status
                .filter(|_| code / 100 != 3)
                .map(|(s, d)| ((code / 100) as u8, s, d)),
            text,
        };
        let mut r = reader::ReplyReader::new(512, 10);
        r.feed(&reply.to_bytes());
        prop_assert_eq!(r.next_reply(), Ok(Some(reply)));
    }

    /// The 7-bit conversion yields 7-bit text lines within the SMTP limit and is
    /// idempotent.
    #[test]
    fn downgrade_output_is_7bit(
        body in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'='), Just(b' '), Just(b'a'), any::<u8>()],
            0..400,
        ),
        mime in any::<bool>(),
    ) {
        let mut msg = if mime {
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec()
        } else {
            b"Subject: x\r\n\r\n".to_vec()
        };
        msg.extend(body);
        let out = downgrade_8bit(&msg).unwrap();
        prop_assert!(out.is_ascii());
        for line in out.split(|&b| b == b'\n') {
            prop_assert!(line.len() <= 998);
        }
        prop_assert_eq!(downgrade_8bit(&out).unwrap(), out);
    }
}
