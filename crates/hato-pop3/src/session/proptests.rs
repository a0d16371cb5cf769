//! Property tests: arbitrary input never panics, memory and output stay bounded,
//! chunking of the input never changes the result, deletions only happen at QUIT,
//! and the RETR encoding always round-trips.

use proptest::prelude::*;

use hato_wire::testing::{assert_cut_does_not_matter, assert_no_bare_cr_lf, split};

use super::fuzzing::{self, End, Run, tls_info};
use super::*;
use crate::wire_size;

/// The test maildrop: awkward messages (dots, bare CR/LF, no final line end, empty).
const MESSAGES: [&[u8]; 5] = [
    b"Subject: a\r\n\r\n.\r\n..\r\nx\r\n",
    b"Subject: b\n\n.\nbody\n",
    b"no header separator\r.\r",
    b"",
    b"Subject: e\r\n\r\nl1\r\nl2\r\nl3",
];
const MAX_MESSAGE: usize = 40;

fn config(stls: bool, max_errors: u32) -> Config {
    Config {
        hostname: "pop.example".into(),
        stls,
        max_errors,
        max_command_line: 512,
    }
}

/// Drives a session over `chunks` (see [`fuzzing::Driver`]: it checks the memory and
/// output bounds), answering every decision with success.
fn drive(cfg: Config, tls: bool, chunks: &[Vec<u8>]) -> Run {
    fuzzing::Driver {
        config: cfg,
        tls,
        messages: &MESSAGES,
        decide: &mut || false,
        end: End::Open,
    }
    .run(chunks)
}

/// Well-formed commands that move the session forward.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let fragments: Vec<&'static [u8]> = vec![
        b"CAPA\r\n",
        b"USER alice\r\n",
        b"PASS secret\r\n",
        b"PASS wrong\r\n",
        b"USER busy\r\nPASS secret\r\n",
        b"USER temp\r\nPASS secret\r\n",
        b"USER throttle\r\nPASS x\r\n",
        b"AUTH\r\n",
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH PLAIN\r\n*\r\n",
        b"AUTH PLAIN =\r\n",
        b"STAT\r\n",
        b"LIST\r\n",
        b"LIST 1\r\n",
        b"LIST 5\r\n",
        b"UIDL\r\n",
        b"UIDL 2\r\n",
        b"RETR 1\r\n",
        b"RETR 2\r\n",
        b"RETR 3\r\n",
        b"RETR 4\r\n",
        b"TOP 1 0\r\n",
        b"TOP 5 1\r\n",
        b"TOP 3 2\r\n",
        b"DELE 1\r\n",
        b"DELE 2\r\n",
        b"DELE 5\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"QUIT\r\n",
    ];
    proptest::sample::select(fragments).prop_map(|f| f.to_vec())
}

/// Noise: things that provoke errors.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let fragments: Vec<&'static [u8]> = vec![
        b"\r\n",
        b"\n",
        b"\r",
        b".\r\n",
        b"RETR 0\r\n",
        b"RETR 01\r\n",
        b"DELE 99999999999999999999999\r\n",
        b"TOP 1 -1\r\n",
        b"FOO\r\n",
        b"*\r\n",
        b"APOP a b\r\n",
    ];
    prop_oneof![
        3 => proptest::sample::select(fragments).prop_map(|f| f.to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..40),
        2 => proptest::collection::vec(proptest::sample::select(b"\r\n.aB 1".to_vec()), 0..40),
        1 => (1usize..1500).prop_map(|n| vec![b'x'; n]),
    ]
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![12 => command(), 1 => noise()]
}

/// STLS changes what "the rest of the buffer" means, so it is only in the tests that
/// do not compare chunkings.
fn stream(with_stls: bool) -> impl Strategy<Value = Vec<u8>> {
    let t = if with_stls {
        prop_oneof![19 => token(), 1 => Just(b"STLS\r\n".to_vec())].boxed()
    } else {
        token().boxed()
    };
    let preamble = proptest::sample::select(vec![
        &b""[..],
        b"USER alice\r\nPASS secret\r\n",
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    ]);
    (preamble, proptest::collection::vec(t, 0..40))
        .prop_map(|(p, v)| [p.to_vec(), v.concat()].concat())
}

/// A run's input: the bytes, up to `max_cuts` points to cut them at, whether STLS is
/// offered, and whether the connection is under implicit TLS.
fn input(
    data: impl Strategy<Value = Vec<u8>>,
    max_cuts: usize,
) -> impl Strategy<Value = (Vec<u8>, Vec<usize>, bool, bool)> {
    (
        data,
        proptest::collection::vec(any::<usize>(), 0..max_cuts),
        any::<bool>(),
        any::<bool>(),
    )
}

/// Undoes the RETR encoding of a response body (up to and excluding `.` CRLF).
fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_prefix(b".").unwrap_or(line);
        out.extend_from_slice(line);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Protocol-shaped input split at arbitrary points: no panic, bounded memory and
    /// output (checked in `drive`), well-formed status lines, commits only at QUIT.
    #[test]
    fn arbitrary_input_never_panics((data, cuts, stls, tls) in input(stream(true), 20)) {
        let chunks = split(&data, &cuts);
        let out = drive(config(stls, 50), tls, &chunks);
        // Every response is caused by a line end in the input (a Retrieve adds one
        // message); the largest non-message response (CAPA, LIST) is < 200 octets.
        let retrieves = out.actions.iter().filter(|a| matches!(a, Action::Retrieve { .. })).count();
        let bound = 1024 + 200 * (data.len() + 1) + retrieves * 2 * MAX_MESSAGE;
        prop_assert!(out.output.len() <= bound, "{} > {}", out.output.len(), bound);
        prop_assert!(out.output.is_empty() || out.output.ends_with(b"\r\n"));
        // A commit is always the last decision, caused by a QUIT.
        if let Some(i) = out.actions.iter().position(|a| matches!(a, Action::Commit { .. })) {
            prop_assert_eq!(i, out.actions.len() - 1);
            prop_assert!(out.closed);
            let upper = data.to_ascii_uppercase();
            prop_assert!(upper.windows(4).any(|w| w == b"QUIT"));
        }
        // No password-bearing decision without TLS.
        if !tls {
            let first_tls = out.actions.iter().position(|a| *a == Action::StartTls);
            for (i, a) in out.actions.iter().enumerate() {
                if matches!(a, Action::Authenticate { .. }) {
                    prop_assert!(first_tls.is_some_and(|t| t < i));
                }
            }
        }
    }

    /// Purely random bytes, no protocol structure.
    #[test]
    fn random_bytes_never_panic(
        (data, cuts, stls, tls) in input(proptest::collection::vec(any::<u8>(), 0..4000), 10),
    ) {
        let out = drive(config(stls, 1000), tls, &split(&data, &cuts));
        prop_assert!(out.output.len() <= 1024 + 200 * (data.len() + 1));
    }

    /// Feeding byte-by-byte, at once, or in random chunks gives the same responses
    /// and the same decisions.
    #[test]
    fn chunking_does_not_change_result((data, cuts, stls, tls) in input(stream(false), 20)) {
        let cfg = config(stls, 50);
        assert_cut_does_not_matter(&data, &cuts, |pieces| drive(cfg.clone(), tls, pieces));
    }

    /// Whatever the stored bytes, RETR sends `+OK n octets`, a body in which the only
    /// `CRLF . CRLF` is the terminator, whose un-stuffed form is the message with
    /// CRLF line endings and exactly `n` octets long.
    #[test]
    fn retr_encoding_round_trips(
        message in proptest::collection::vec(proptest::sample::select(b"\r\n.ab:".to_vec()), 0..200),
    ) {
        let mut s = Session::new(Arc::new(config(false, 10)), Some(tls_info()));
        s.greet();
        s.feed(b"USER u\r\nPASS secret\r\nRETR 1\r\n");
        let a = s.poll();
        prop_assert!(matches!(a, Action::Authenticate { .. }), "{:?}", a);
        s.auth_result(AuthOutcome::Ok);
        let a = s.poll();
        prop_assert!(matches!(a, Action::OpenMaildrop { .. }), "{:?}", a);
        s.maildrop_result(Ok(vec![MessageInfo { size: wire_size(&message), uid: "x".into() }]));
        prop_assert_eq!(s.poll(), Action::Retrieve { index: 0, top_lines: None });
        let _ = s.output();
        s.message_result(Ok(message.clone()));
        prop_assert_eq!(s.poll(), Action::NeedInput);
        let out = s.output();
        let header_end = out.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let header = std::str::from_utf8(&out[..header_end]).unwrap();
        let body = &out[header_end..];
        // The terminator is found exactly at the end.
        let mut probe = b"\r\n".to_vec();
        probe.extend_from_slice(body);
        let end = probe.windows(5).position(|w| w == b"\r\n.\r\n");
        prop_assert_eq!(end, Some(probe.len() - 5));
        // No CR or LF outside CRLF pairs.
        assert_no_bare_cr_lf(body);
        let content = unstuff(&body[..body.len() - 3]);
        prop_assert_eq!(header, format!("+OK {} octets\r\n", content.len()));
        prop_assert_eq!(content.len() as u64, wire_size(&message));
        // The lines are the message's lines.
        let expected: Vec<u8> = transfer::Lines::new(&message)
            .flat_map(|l| [l, b"\r\n"].concat())
            .collect();
        prop_assert_eq!(content, expected);
    }

    /// TOP n m sends a prefix of what RETR sends, ending after the header and at most
    /// m body lines.
    #[test]
    fn top_is_a_prefix_of_retr(
        message in proptest::collection::vec(proptest::sample::select(b"\r\n.ab".to_vec()), 0..100),
        lines in 0usize..6,
    ) {
        let mut retr = Vec::new();
        transfer::write_message(&mut retr, &message, None);
        let mut top = Vec::new();
        transfer::write_message(&mut top, &message, Some(lines));
        let body = &top[..top.len() - 3];
        prop_assert!(retr.starts_with(body));
        prop_assert!(top.ends_with(b".\r\n"));
        let all: Vec<&[u8]> = transfer::Lines::new(&message).collect();
        let header = all.iter().position(|l| l.is_empty()).map_or(all.len(), |i| i + 1);
        let expected = (header + lines).min(all.len());
        let sent = body.split(|&b| b == b'\n').count() - 1;
        prop_assert_eq!(sent, expected);
    }

    /// Message-number arguments never panic and resolve only to 1..=count.
    #[test]
    fn message_numbers(arg in "[0-9+\\- a]{0,30}|[0-9]{15,40}") {
        let md = Maildrop::new(vec![
            MessageInfo { size: 1, uid: "a".into() },
            MessageInfo { size: 2, uid: "b".into() },
        ]);
        if let Ok(i) = md.lookup(&arg) {
            prop_assert!(i < 2);
            prop_assert_eq!(arg, (i + 1).to_string());
        }
    }
}
