//! Property tests: arbitrary input never panics, memory and output stay bounded,
//! chunking of the input never changes the result, and DATA only ends on
//! `CRLF . CRLF`.

use proptest::prelude::*;

use hato_wire::testing::{assert_cut_does_not_matter, assert_no_bare_cr_lf, split};

use super::fuzzing::{self, End, Run};
use super::*;

const MAX_MESSAGE: usize = 2000;

fn config(mode: Mode, policy: BareLinePolicy, starttls: bool) -> Config {
    Config {
        hostname: "mx.example".into(),
        mode,
        starttls,
        require_tls: false,
        max_message_size: MAX_MESSAGE,
        max_recipients: 5,
        max_errors: 50,
        max_command_line: 512,
        max_text_line: 100,
        bare_line_endings: policy,
        reject_early_talkers: true,
    }
}

fn peer() -> Peer {
    Peer {
        ip: "2001:db8::7".parse().unwrap(),
        port: 1,
        reverse_name: None,
    }
}

/// Drives a session over `chunks` (see [`fuzzing::Driver`]: it checks the memory
/// bound and what the session hands over), accepting every delivery.
fn drive(cfg: Config, tls: bool, chunks: &[Vec<u8>]) -> Run {
    fuzzing::Driver {
        config: cfg,
        peer: peer(),
        tls_info: hato_wire::testing::tls_info(),
        tls,
        decide: &mut || false,
        end: End::Open,
    }
    .run(chunks)
}

/// Well-formed commands that move the session forward.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let fragments: Vec<&'static [u8]> = vec![
        b"EHLO client.example\r\n",
        b"HELO c\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
        b"MAIL FROM:<bad@b.example>\r\n",
        b"MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\n",
        b"MAIL FROM:<a@b.example> RET=HDRS ENVID=x+2By REQUIRETLS\r\n",
        b"MAIL FROM:<a@b.example> RET=FULL ENVID=+ZZ\r\n",
        b"RCPT TO:<c@d.example>\r\n",
        b"RCPT TO:<e@d.example>\r\n",
        b"RCPT TO:<bad@d.example>\r\n",
        b"RCPT TO:<Postmaster>\r\n",
        b"RCPT TO:<@r.example:f@d.example>\r\n",
        b"RCPT TO:<g@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;g+40d.example\r\n",
        b"RCPT TO:<G@d.example> NOTIFY=NEVER\r\n",
        b"RCPT TO:<h@d.example> NOTIFY=NEVER,SUCCESS\r\n",
        b"RCPT TO:<bad@d.example> ORCPT=utf-8;b\\x{E4}d@d.example\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"VRFY x\r\n",
        b"HELP\r\n",
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
        b"AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
        b"AUTH LOGIN\r\n*\r\n",
        b"AUTH PLAIN AGJvYgB4\r\n",
        b"DATA\r\n",
        b"BDAT 0 LAST\r\n",
    ];
    proptest::sample::select(fragments).prop_map(|f| f.to_vec())
}

/// A DATA phase (often with its transaction) with CR/LF/dot soup inside, properly
/// terminated. "Dirty" soups contain bare CR/LF.
fn data_block() -> impl Strategy<Value = Vec<u8>> {
    let clean: Vec<&'static [u8]> = vec![b"\r\n", b"\r\n", b".", b"a", b"M", b" ", b"\r\n.", b".."];
    let dirty: Vec<&'static [u8]> = vec![
        b"\r\n", b".", b"a", b"\r", b"\n", b"\r\n.", b".\n", b"\n.\r",
    ];
    let soup = prop_oneof![
        proptest::collection::vec(proptest::sample::select(clean), 0..40),
        proptest::collection::vec(proptest::sample::select(dirty), 0..40),
    ];
    (soup, any::<bool>()).prop_map(|(soup, with_txn)| {
        let mut v = Vec::new();
        if with_txn {
            v.extend_from_slice(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n");
        }
        v.extend_from_slice(b"DATA\r\n");
        v.extend(soup.concat());
        v.extend_from_slice(b"\r\n.\r\n");
        v
    })
}

/// A correctly sized BDAT chunk with arbitrary content.
fn bdat_block() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(any::<u8>(), 0..60), any::<bool>()).prop_map(|(chunk, last)| {
        let mut v = format!(
            "BDAT {}{}\r\n",
            chunk.len(),
            if last { " LAST" } else { "" }
        )
        .into_bytes();
        v.extend_from_slice(&chunk);
        v
    })
}

/// Noise: things that provoke errors, some of which close the connection.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let fragments: Vec<&'static [u8]> = vec![
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"\r\n.\r\n",
        b".\r\n",
        b"QUIT\r\n",
        b"BDAT x\r\n",
        b"BDAT 5\r\n",
        b"MAIL FROM:<a@b@c>\r\n",
        b"FOO\r\n",
        b"*\r\n",
    ];
    prop_oneof![
        3 => proptest::sample::select(fragments).prop_map(|f| f.to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..40),
        2 => proptest::collection::vec(proptest::sample::select(b"\r\n.aB :<>@".to_vec()), 0..40),
        1 => (1usize..1500).prop_map(|n| vec![b'x'; n]),
    ]
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => command(),
        3 => data_block(),
        3 => bdat_block(),
        1 => noise(),
    ]
}

/// STARTTLS changes what "the rest of the buffer" means, so it is only in the
/// chunking-independent tests where that is accounted for.
fn stream(with_starttls: bool) -> impl Strategy<Value = Vec<u8>> {
    let t = if with_starttls {
        prop_oneof![19 => token(), 1 => Just(b"STARTTLS\r\n".to_vec())].boxed()
    } else {
        token().boxed()
    };
    let preamble = proptest::sample::select(vec![
        &b""[..],
        b"EHLO c\r\n",
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    ]);
    (preamble, proptest::collection::vec(t, 0..40))
        .prop_map(|(p, v)| [p.to_vec(), v.concat()].concat())
}

fn modes() -> impl Strategy<Value = (Mode, BareLinePolicy, bool, bool)> {
    (
        prop_oneof![Just(Mode::Mx), Just(Mode::Submission)],
        prop_oneof![
            Just(BareLinePolicy::Reject),
            Just(BareLinePolicy::Normalize)
        ],
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes split at arbitrary points: no panic, bounded memory (checked
    /// in `drive`), output bounded by the input.
    #[test]
    fn arbitrary_input_never_panics(
        data in stream(true),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        (mode, policy, starttls, tls) in modes(),
    ) {
        let chunks = split(&data, &cuts);
        let out = drive(config(mode, policy, starttls), tls, &chunks);
        // Each reply is caused by at least one line terminator or chunk end; the
        // largest reply (EHLO) is < 300 octets.
        let bound = 1024 + 300 * (data.len() + 1);
        prop_assert!(out.output.len() <= bound, "{} > {}", out.output.len(), bound);
        // Replies are well-formed: CRLF-terminated lines starting with a code.
        let text = String::from_utf8(out.output).expect("utf-8 replies");
        prop_assert!(text.is_empty() || text.ends_with("\r\n"));
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            prop_assert!(line.len() >= 4, "{:?}", line);
            prop_assert!(line[..3].bytes().all(|b| b.is_ascii_digit()), "{:?}", line);
            prop_assert!(matches!(line.as_bytes()[3], b' ' | b'-'), "{:?}", line);
            prop_assert!(!line.contains('\r') && !line.contains('\n'));
        }
    }

    /// Purely random bytes, no protocol structure.
    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..4000),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
        (mode, policy, starttls, tls) in modes(),
    ) {
        let _ = drive(config(mode, policy, starttls), tls, &split(&data, &cuts));
    }

    /// Feeding byte-by-byte, at once, or in random chunks gives the same replies
    /// and the same decisions.
    #[test]
    fn chunking_does_not_change_result(
        data in stream(false),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        (mode, policy, starttls, tls) in modes(),
    ) {
        let cfg = config(mode, policy, starttls);
        assert_cut_does_not_matter(&data, &cuts, |pieces| drive(cfg.clone(), tls, pieces));
    }

    /// Inside DATA, nothing but `CRLF . CRLF` ends the data: arbitrary CR/LF/dot soup
    /// without that sequence keeps the session in DATA with no decision taken.
    #[test]
    fn only_crlf_dot_crlf_ends_data(
        body in proptest::collection::vec(proptest::sample::select(b"\r\n.aM ".to_vec()), 0..200),
        policy in prop_oneof![Just(BareLinePolicy::Reject), Just(BareLinePolicy::Normalize)],
    ) {
        // The data starts "after CRLF": prefix it for the search.
        let mut probe = b"\r\n".to_vec();
        probe.extend_from_slice(&body);
        probe.extend_from_slice(b"\r\n.\r\n");
        // The only end marker must be the one appended at the end.
        let first_end = probe.windows(5).position(|w| w == b"\r\n.\r\n");
        prop_assume!(first_end == Some(probe.len() - 5));
        let mut cfg = config(Mode::Mx, policy, false);
        cfg.max_text_line = 10_000;
        let head = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n".to_vec();
        let out = drive(cfg.clone(), false, &[head.clone(), body.clone()]);
        prop_assert_eq!(out.actions.len(), 2); // sender + recipient only
        prop_assert!(!out.closed);
        let text = String::from_utf8(out.output).unwrap();
        prop_assert!(text.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"), "{}", text);

        // Now end it for real.
        let out = drive(cfg, false, &[head, body.clone(), b"\r\n.\r\n".to_vec()]);
        let text = String::from_utf8(out.output).unwrap();
        let has_bare = {
            let mut b = body.clone();
            b.extend_from_slice(b"\r\n");
            b.iter().enumerate().any(|(i, &c)| {
                (c == b'\n' && (i == 0 || b[i - 1] != b'\r')) || (c == b'\r' && b.get(i + 1) != Some(&b'\n'))
            })
        };
        match (policy, has_bare) {
            (BareLinePolicy::Reject, true) => {
                prop_assert!(text.ends_with("554 5.5.0 Message contains bare <CR> or <LF> line endings, lines must end with <CR><LF>\r\n"), "{}", text);
                prop_assert_eq!(out.actions.len(), 2);
            }
            _ => {
                prop_assert!(text.ends_with("250 2.0.0 Ok: queued as ID\r\n"), "{}", text);
                let Some(Action::Deliver(env)) = out.actions.last() else {
                    return Err(TestCaseError::fail("no delivery"));
                };
                // Only CRLF line endings in the stored body.
                assert_no_bare_cr_lf(&env.body);
                prop_assert!(env.body.ends_with(b"\r\n"));
            }
        }
    }

    /// A dot-stuffed message (as a correct client produces it) round-trips exactly.
    #[test]
    fn dot_stuffing_round_trips(
        lines in proptest::collection::vec("[.a-z ]{0,20}", 0..30),
    ) {
        let mut original = Vec::new();
        let mut wire = Vec::new();
        for l in &lines {
            original.extend_from_slice(l.as_bytes());
            original.extend_from_slice(b"\r\n");
            if l.starts_with('.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(l.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        let head = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n".to_vec();
        let out = drive(config(Mode::Mx, BareLinePolicy::Reject, false), false, &[head, wire]);
        let Some(Action::Deliver(env)) = out.actions.last() else {
            return Err(TestCaseError::fail("no delivery"));
        };
        prop_assert_eq!(&env.body, &original);
    }

    /// BDAT chunks: whatever their content, exactly the announced octets are taken.
    #[test]
    fn bdat_takes_exact_octets(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n".to_vec();
        let mut expected = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() { " LAST" } else { "" };
            wire.extend_from_slice(format!("BDAT {}{last}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            expected.extend_from_slice(c);
        }
        wire.extend_from_slice(b"NOOP\r\n");
        let out = drive(config(Mode::Mx, BareLinePolicy::Normalize, false), false, &split(&wire, &cuts));
        let Some(Action::Deliver(env)) = out.actions.last() else {
            return Err(TestCaseError::fail("no delivery"));
        };
        // Stored in canonical CRLF form (the chunk bytes themselves are all consumed).
        let expected = canonical(&expected);
        prop_assert_eq!(&env.body, &expected);
        let text = String::from_utf8(out.output).unwrap();
        prop_assert!(text.ends_with("250 2.0.0 Ok: queued as ID\r\n250 2.0.0 Ok\r\n"), "{}", text);
    }

    /// Address parsing never panics and what it accepts renders back to itself.
    #[test]
    fn address_parse_round_trips(s in "\\PC{0,80}|[a-z.\"\\\\@\\[\\]:0-9 ]{0,40}") {
        if let Ok(a) = Address::parse(&s) {
            let again = Address::parse(&a.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&a));
            prop_assert!(a.to_string().len() <= s.len());
            prop_assert!(!a.local_part().is_empty());
        }
    }

    /// xtext encoding round-trips through decoding, and the decoders never panic on
    /// arbitrary input.
    #[test]
    fn xtext_round_trips(s in "\\PC{0,60}", junk in "\\PC{0,60}|[+=\\\\x{}0-9A-Fa-f;]{0,30}") {
        let mut enc = String::new();
        crate::dsn::encode_xtext(&s, &mut enc);
        prop_assert_eq!(crate::dsn::decode_xtext(&enc).unwrap(), s.as_bytes());
        let _ = crate::dsn::decode_xtext(&junk);
        let _ = crate::dsn::decode_utf8_addr(&junk);
        let _ = crate::dsn::parse_envid(&junk);
        let _ = crate::dsn::Notify::parse(&junk);
        let _ = crate::dsn::DsnRet::parse(&junk);
        for ty in ["rfc822;", "utf-8;", ""] {
            let _ = crate::dsn::Orcpt::parse(&format!("{ty}{junk}"));
        }
    }

    /// What the client sends as ORCPT for an address, the server decodes back to that
    /// address (`rfc822` for ASCII, `utf-8` otherwise).
    #[test]
    fn orcpt_client_encoding_round_trips(addr in "[ -~]{1,40}|[a-z+=\\\\ ]{0,10}\\PC{1,20}") {
        prop_assume!(!addr.chars().any(char::is_control));
        let mut enc = String::new();
        crate::dsn::encode_orcpt(&addr, &mut enc);
        let o = crate::dsn::Orcpt::parse(&enc).unwrap();
        prop_assert_eq!(&o.address, &addr);
        prop_assert_eq!(o.addr_type.as_str(), if addr.is_ascii() { "rfc822" } else { "utf-8" });
        prop_assert_eq!(o.to_string(), format!("{};{}", o.addr_type.as_str(), addr));
    }

    /// Header lookup never panics.
    #[test]
    fn header_present_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300), name in "\\PC{0,10}") {
        let _ = crate::message::header_present(&body, &name);
    }
}

/// The model of a normalised BDAT body: every CRLF, bare CR or bare LF is one CRLF, and a
/// body that does not end with one gets one.
fn canonical(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' if body.get(i + 1) == Some(&b'\n') => i += 1,
            b'\r' | b'\n' => {}
            b => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        out.extend_from_slice(b"\r\n");
        i += 1;
    }
    if !body.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}
