use super::*;
use crate::fuzzing::small_limits;
use proptest::prelude::*;

/// Feeds `input` and collects events, accepting every synchronising literal.
fn run(f: &mut Framer, input: &[u8]) -> Vec<Event> {
    f.feed(input);
    drain(f)
}

/// Feeds `input` and asserts the events it frames (synchronising literals accepted).
#[track_caller]
fn check(f: &mut Framer, input: impl AsRef<[u8]>, events: &[Event]) {
    let input = input.as_ref();
    assert_eq!(run(f, input), events, "{:?}", input.escape_ascii());
}

/// Feeds `input` and asserts that it frames exactly one command.
#[track_caller]
fn check_one_command(f: &mut Framer, input: impl AsRef<[u8]>) {
    let ev = run(f, input.as_ref());
    assert!(matches!(&ev[..], [Event::Command(_)]), "{ev:?}");
}

fn drain(f: &mut Framer) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = f.next_event() {
        if matches!(ev, Event::SyncLiteral { .. }) {
            f.accept_literal();
        }
        out.push(ev);
    }
    out
}

fn cmd(tag: &str, bytes: &[u8], literals: usize) -> Event {
    Event::Command(RawCommand {
        tag: tag.to_string(),
        bytes: bytes.to_vec(),
        literals,
        taken: Vec::new(),
    })
}

/// A synchronising literal announced, waiting for the session's decision.
fn sync(tag: &str, verb: &str, size: u64) -> Event {
    Event::SyncLiteral {
        tag: tag.to_string(),
        verb: verb.to_string(),
        size,
    }
}

/// `<tag> NOOP`: the command the tests send to see that the stream is still in step.
fn noop(tag: &str) -> Event {
    cmd(tag, format!("{tag} NOOP").as_bytes(), 0)
}

fn err(tag: Option<&str>, error: FrameError) -> Event {
    Event::Error {
        tag: tag.map(str::to_string),
        error,
    }
}

/// Command `tag` refused with `error`, then `next NOOP` framed: the stream stayed in step.
fn refused_then_noop(tag: &str, error: FrameError, next: &str) -> [Event; 2] {
    [err(Some(tag), error), noop(next)]
}

fn too_big(size: u64, limit: u64, append: bool) -> FrameError {
    FrameError::LiteralTooBig {
        size,
        limit,
        append,
    }
}

/// The default limits with one change.
fn limits_with(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}

fn framer() -> Framer {
    Framer::new(Limits::default())
}

#[test]
fn simple_commands_and_line_endings() {
    let mut f = framer();
    check(
        &mut f,
        b"a1 NOOP\r\na2 CAPABILITY\nA3 LOGOUT\r\n",
        &[
            noop("a1"),
            cmd("a2", b"a2 CAPABILITY", 0),
            cmd("A3", b"A3 LOGOUT", 0),
        ],
    );
    // Partial input: nothing until the line ends.
    check(&mut f, b"a4 NO", &[]);
    assert!(f.in_command());
    check(&mut f, b"OP\r", &[]);
    check(&mut f, b"\n", &[noop("a4")]);
    assert!(!f.in_command());
}

#[test]
fn streams_of_one_command() {
    for (input, events) in [
        // Blank lines are ignored.
        (&b"\r\n\n\r\na NOOP\r\n\r\n"[..], vec![noop("a")]),
        // literal8 with a NUL in it.
        (
            b"a APPEND INBOX ~{3+}\r\na\0c\r\n",
            vec![cmd("a", b"a APPEND INBOX ~{3+}\r\na\0c", 1)],
        ),
        // An announcement ended by a bare LF is normalised.
        (
            b"a LOGIN {1+}\nx y\n",
            vec![cmd("a", b"a LOGIN {1+}\r\nx y", 1)],
        ),
        // Zero-length literals, non-synchronising and synchronising.
        (
            b"a LOGIN {0+}\r\n {0}\r\n\r\n",
            vec![
                sync("a", "LOGIN", 0),
                cmd("a", b"a LOGIN {0+}\r\n {0}\r\n", 2),
            ],
        ),
        // A bare CR stays in the line.
        (b"a NO\rOP\r\n", vec![cmd("a", b"a NO\rOP", 0)]),
        // `}` CR x LF: not an announcement.
        (b"b X {3}\rY\r\n", vec![cmd("b", b"b X {3}\rY", 0)]),
    ] {
        check(&mut framer(), input, &events);
    }
}

#[test]
fn synchronising_literal_waits_for_decision() {
    // RFC 9051 §6.2.3 style LOGIN with literals.
    let mut f = framer();
    f.feed(b"a001 LOGIN {11}\r\n");
    assert_eq!(f.next_event(), Some(sync("a001", "LOGIN", 11)));
    assert!(f.awaiting_decision());
    // Nothing moves until the session decides, even if bytes arrive.
    f.feed(b"FRED FOOBAR {7}\r\n");
    assert_eq!(f.next_event(), None);
    f.accept_literal();
    assert_eq!(f.next_event(), Some(sync("a001", "LOGIN", 7)));
    f.accept_literal();
    f.feed(b"fat man\r\n");
    assert_eq!(
        f.next_event(),
        Some(cmd(
            "a001",
            b"a001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man",
            2
        ))
    );
    assert_eq!(f.next_event(), None);
}

#[test]
fn rejected_synchronising_literal_drops_the_command() {
    let mut f = framer();
    f.feed(b"a APPEND Nope {5}\r\n");
    assert!(matches!(f.next_event(), Some(Event::SyncLiteral { .. })));
    f.reject_literal();
    // The client does not send the literal; its next command is framed normally.
    check(&mut f, b"b NOOP\r\n", &[noop("b")]);
}

#[test]
fn non_synchronising_literals() {
    let mut f = framer();
    check(
        &mut f,
        b"a APPEND INBOX (\\Seen) {5+}\r\nab\r\nc\r\nb NOOP\r\n",
        &[
            cmd("a", b"a APPEND INBOX (\\Seen) {5+}\r\nab\r\nc", 1),
            noop("b"),
        ],
    );
    // Literal content is never scanned: parentheses, quotes and announcements inside it
    // mean nothing.
    check(
        &mut f,
        b"c LOGIN {9+}\r\n((\"{1}\r\n) x\r\n",
        &[cmd("c", b"c LOGIN {9+}\r\n((\"{1}\r\n) x", 1)],
    );
}

#[test]
fn huge_synchronising_literal_is_refused_without_allocation() {
    let mut f = framer();
    let limit = Limits::default().max_append_literal;
    check(
        &mut f,
        b"a APPEND INBOX {999999999999}\r\nb NOOP\r\n",
        &refused_then_noop("a", too_big(999_999_999_999, limit, true), "b"),
    );
    assert!(f.cmd.capacity() < 1024);
}

#[test]
fn huge_non_synchronising_literal_is_fatal() {
    for input in [
        &b"a APPEND INBOX {999999999999+}\r\nb NOOP\r\n"[..],
        b"a APPEND INBOX {99999999999999999999999999999999999999+}\r\n",
        b"a LOGIN {65537+}\r\n",
    ] {
        let mut f = framer();
        let ev = run(&mut f, input);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(
            matches!(
                &ev[0],
                Event::Fatal { tag: Some(t), error: FrameError::LiteralTooBig { .. } } if t == "a"
            ),
            "{ev:?}"
        );
        // Nothing after it is ever framed.
        check(&mut f, b"c NOOP\r\n", &[]);
        assert_eq!(f.buffered(), 0);
        assert!(f.cmd.capacity() < 1024);
    }
}

#[test]
fn saturating_size_is_too_big_not_text() {
    // A size that overflows u64 is still an announcement (imap-codec 2.0.0-alpha.10 takes
    // it for text and would execute the literal's content as commands).
    let limit = Limits::default().max_literal;
    check(
        &mut framer(),
        b"a LOGIN {184467440737095516160}\r\nb NOOP\r\n",
        &refused_then_noop("a", too_big(u64::MAX, limit, false), "b"),
    );
}

#[test]
fn non_append_literals_have_the_smaller_limit() {
    let mut f = framer();
    let limits = Limits::default();
    f.feed(format!("a SEARCH TEXT {{{}}}\r\n", limits.max_literal + 1).as_bytes());
    assert_eq!(
        f.next_event(),
        Some(err(
            Some("a"),
            too_big(limits.max_literal + 1, limits.max_literal, false)
        ))
    );
    f.feed(format!("b APPEND INBOX {{{}}}\r\n", limits.max_literal + 1).as_bytes());
    assert!(matches!(f.next_event(), Some(Event::SyncLiteral { .. })));
    // The verb is recognised case-insensitively.
    let mut f = framer();
    f.feed(format!("b append INBOX {{{}}}\r\n", limits.max_literal + 1).as_bytes());
    assert!(matches!(f.next_event(), Some(Event::SyncLiteral { verb, .. }) if verb == "APPEND"));
}

#[test]
fn literal_minus() {
    let limits = limits_with(|l| l.literal_minus = true);
    let mut f = Framer::new(limits);
    let ok = format!("a APPEND INBOX {{4096+}}\r\n{}\r\n", "x".repeat(4096));
    let ev = run(&mut f, ok.as_bytes());
    assert!(matches!(&ev[..], [Event::Command(c)] if c.literals == 1));
    // 4097 octets non-synchronising: refused with TOOBIG, skipped (it is within the APPEND
    // limit, so affordable), and the stream stays in sync.
    let bad = format!(
        "b APPEND INBOX {{4097+}}\r\n{}\r\nc NOOP\r\n",
        "y".repeat(4097)
    );
    check(
        &mut f,
        bad,
        &refused_then_noop("b", too_big(4097, 4096, true), "c"),
    );
    // Synchronising literals of any size (within limits) are fine.
    let mut f = Framer::new(limits);
    let sync = format!("d APPEND INBOX {{5000}}\r\n{}\r\n", "z".repeat(5000));
    let ev = run(&mut f, sync.as_bytes());
    assert!(matches!(
        &ev[..],
        [Event::SyncLiteral { size: 5000, .. }, Event::Command(_)]
    ));
}

#[test]
fn too_many_literals() {
    let limits = limits_with(|l| l.max_literals = 2);
    let refused = refused_then_noop("a", FrameError::TooManyLiterals, "d");
    // Non-synchronising: skipped to the real end of the command.
    check(
        &mut Framer::new(limits),
        b"a LOGIN {1+}\r\na {1+}\r\nb {5+}\r\nc NOOP\r\nd NOOP\r\n",
        &refused,
    );
    // Synchronising: refused at once.
    let mut f = Framer::new(limits);
    let ev = run(&mut f, b"a LOGIN {1}\r\na {1}\r\nb {5}\r\nd NOOP\r\n");
    assert_eq!(ev[2..], refused);
}

#[test]
fn command_too_long() {
    let limits = limits_with(|l| l.max_command = 100);
    let mut f = Framer::new(limits);
    let ev = run(&mut f, b"a LOGIN {60}\r\n");
    assert!(matches!(&ev[..], [Event::SyncLiteral { size: 60, .. }]));
    let refused = refused_then_noop("a", FrameError::CommandTooLong, "b");
    check(
        &mut Framer::new(limits),
        b"a LOGIN {95}\r\nb NOOP\r\n",
        &refused,
    );
    // Lines count too.
    let input = format!(
        "a LOGIN {{50+}}\r\n{} {}\r\nb NOOP\r\n",
        "x".repeat(50),
        "y".repeat(40)
    );
    check(&mut Framer::new(limits), input, &refused);
}

#[test]
fn long_line_is_discarded_as_it_arrives() {
    let limits = limits_with(|l| l.max_line = 64);
    let mut f = Framer::new(limits);
    f.feed(b"a1 SEARCH ");
    for _ in 0..1000 {
        f.feed(&[b'x'; 100]);
        assert_eq!(f.next_event(), None);
        // Never buffered.
        assert!(f.cmd.len() <= 64 && f.buffered() == 0);
    }
    check(
        &mut f,
        b"\r\na2 NOOP\r\n",
        &refused_then_noop("a1", FrameError::LineTooLong, "a2"),
    );
    // Exactly at the limit (including CRLF) is fine.
    let line = format!("a3 {}\r\n", "y".repeat(64 - 5));
    assert_eq!(line.len(), 64);
    check_one_command(&mut f, line);
    let line = format!("a4 {}\r\n", "y".repeat(64 - 4));
    check(&mut f, line, &[err(Some("a4"), FrameError::LineTooLong)]);
}

#[test]
fn long_line_with_literal_skips_the_literal() {
    let limits = limits_with(|l| l.max_line = 32);
    let mut f = Framer::new(limits);
    let refused = refused_then_noop("a", FrameError::LineTooLong, "b");
    let x40 = "x".repeat(40);
    // The literal "c NOOP\r\n" is skipped, never executed.
    let input = format!("a SEARCH {x40} {{8+}}\r\nc NOOP\r\n\r\nb NOOP\r\n");
    check(&mut f, input, &refused);
    // With a synchronising literal the command ends at the announcement.
    let input = format!("a SEARCH {x40} {{10}}\r\nb NOOP\r\n");
    check(&mut f, input, &refused);
}

#[test]
fn deep_nesting() {
    let mut f = framer();
    let deep = format!(
        "a SEARCH {}ALL{}\r\nb NOOP\r\n",
        "(".repeat(33),
        ")".repeat(33)
    );
    check(
        &mut f,
        deep,
        &refused_then_noop("a", FrameError::TooDeep, "b"),
    );
    let ok = format!("a SEARCH {}ALL{}\r\n", "(".repeat(32), ")".repeat(32));
    check_one_command(&mut f, ok);
    // Sequential (not nested) parentheses are fine.
    check_one_command(&mut f, format!("a SEARCH {}\r\n", "(ALL) ".repeat(100)));
    // Parentheses inside quoted strings do not count.
    let quoted = format!("a SEARCH SUBJECT \"{}\"\r\n", "(".repeat(100));
    check_one_command(&mut f, quoted);
}

#[test]
fn quoted_strings_hide_announcements() {
    let mut f = framer();
    // Unterminated quoted string: `{5}` is inside it, so the command ends here (and the
    // parser will reject it).
    check(
        &mut f,
        b"a LOGIN \"x {5}\r\nb NOOP\r\n",
        &[cmd("a", b"a LOGIN \"x {5}", 0), noop("b")],
    );
    // An escaped quote does not end the string.
    check(
        &mut f,
        b"a LOGIN \"x\\\" {5}\r\n",
        &[cmd("a", b"a LOGIN \"x\\\" {5}", 0)],
    );
    // An escaped backslash does.
    let ev = run(&mut f, b"a LOGIN \"x\\\\\" {5}\r\n");
    assert!(matches!(&ev[..], [Event::SyncLiteral { size: 5, .. }]));
}

#[test]
fn invalid_tags() {
    let mut f = framer();
    let invalid = || err(None, FrameError::InvalidTag);
    check(
        &mut f,
        b"+a NOOP\r\n* NOOP\r\n(x) NOOP\r\na{1} NOOP\r\n",
        &vec![invalid(); 4],
    );
    // A leading space means an empty tag.
    check(&mut f, b" NOOP\r\n", &[invalid()]);
    // A tag alone is framed (the parser complains about the missing command).
    check(&mut f, b"abc\r\n", &[cmd("abc", b"abc", 0)]);
    // A tag too long to keep is refused.
    let long = format!("{} NOOP\r\n", "t".repeat(200));
    check(&mut f, long, &[invalid()]);
    // An invalid tag followed by a synchronising literal ends at the announcement.
    check(
        &mut f,
        b"+ LOGIN {5}\r\nb NOOP\r\n",
        &[invalid(), noop("b")],
    );
}

#[test]
fn pre_auth_limits() {
    let mut f = Framer::new(Limits::pre_auth());
    let ev = run(&mut f, b"a APPEND INBOX {100000+}\r\n");
    assert!(matches!(&ev[..], [Event::Fatal { .. }]));
    let mut f = Framer::new(Limits::pre_auth());
    let ev = run(&mut f, b"a APPEND INBOX {100000}\r\nb NOOP\r\n");
    assert!(matches!(
        &ev[..],
        [
            Event::Error {
                error: FrameError::LiteralTooBig { .. },
                ..
            },
            Event::Command(_)
        ]
    ));
    // After login the session raises the limits.
    f.set_limits(Limits::default());
    let ev = run(&mut f, b"a APPEND INBOX {100000}\r\n");
    assert!(matches!(&ev[..], [Event::SyncLiteral { size: 100000, .. }]));
}

#[test]
fn expect_line_is_one_shot() {
    let mut f = framer();
    let done = Event::Line(b"DONE".to_vec());
    f.expect_line(100);
    check(&mut f, b"DONE\r\na NOOP\r\n", &[done.clone(), noop("a")]);
    // A plain line is not scanned for literals.
    f.expect_line(100);
    check(
        &mut f,
        b"dGVzdA== {5}\r\n",
        &[Event::Line(b"dGVzdA== {5}".to_vec())],
    );
    // Empty line (e.g. an empty SASL response).
    f.expect_line(100);
    check(&mut f, b"\r\n", &[Event::Line(Vec::new())]);
    f.expect_line(10);
    check(
        &mut f,
        b"0123456789ABCDEF\r\nb NOOP\r\n",
        &[err(None, FrameError::LineTooLong), noop("b")],
    );
    // Exactly at the limit, including CRLF.
    f.expect_line(6);
    check(&mut f, b"DONE\r\n", &[done]);
}

#[test]
fn starttls_injection_is_discarded() {
    let mut f = framer();
    f.feed(b"a STARTTLS\r\nb LOGIN evil pass\r\n");
    assert_eq!(f.next_event(), Some(cmd("a", b"a STARTTLS", 0)));
    // The session sees STARTTLS and discards whatever followed it.
    f.discard_input();
    assert_eq!(f.next_event(), None);
    assert_eq!(f.buffered(), 0);
    // Also a partial command.
    let mut f = framer();
    f.feed(b"a STARTTLS\r\nb LOG");
    assert_eq!(f.next_event(), Some(cmd("a", b"a STARTTLS", 0)));
    assert_eq!(f.next_event(), None);
    f.discard_input();
    // The rest of the partial command is framed as a (nonsensical) command of its own.
    check(
        &mut f,
        b"IN x y\r\nc NOOP\r\n",
        &[cmd("IN", b"IN x y", 0), noop("c")],
    );
}

#[test]
fn big_buffers_are_released_between_commands() {
    let mut f = framer();
    let mut input = b"a APPEND INBOX {1000000+}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1_000_000));
    input.extend_from_slice(b"\r\n");
    f.feed(&input);
    assert!(matches!(f.next_event(), Some(Event::Command(c)) if c.bytes.len() > 1_000_000));
    assert_eq!(f.input.capacity(), 0);
    assert_eq!(f.cmd.capacity(), 0);
}

#[test]
fn input_buffer_is_compacted() {
    let mut f = framer();
    for i in 0..10_000 {
        f.feed(format!("a{i} NOOP\r\n").as_bytes());
        assert!(matches!(f.next_event(), Some(Event::Command(_))));
    }
    assert_eq!(f.buffered(), 0);
    assert!(f.input.capacity() < 64 * 1024);
}

// ---- property tests ------------------------------------------------------------------

/// Pieces that make up plausible and implausible command streams.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"a NOOP\r\n",
        b"b LOGIN {3}\r\nabc {0+}\r\n\r\n",
        b"c APPEND INBOX {4+}\r\n\r\n\r\n\r\n",
        b"d APPEND INBOX ~{2}\r\n\0\0\r\n",
        b"e SEARCH ((((((((((((((((((((((((((((((((((((ALL\r\n",
        b"f LOGIN {999999999999}\r\n",
        b"g \"quoted {3}\r\n",
        b"h \"x\\\"\" {2+}\r\n()\r\n",
        b"\r\n",
        b"\n",
        b"+ BAD\r\n",
        b"i {70000+}\r\n",
    ];
    crate::testing::piece(PIECES, "[ -~]{0,20}\r\n", 30)
}

fn run_chunked(limits: Limits, input: &[u8], chunks: &[usize]) -> Vec<Event> {
    let mut f = Framer::new(limits);
    let mut out = Vec::new();
    for piece in crate::testing::cut(input, chunks) {
        f.feed(piece);
        out.extend(drain(&mut f));
        check_bounds(&f, &limits);
    }
    out
}

fn check_bounds(f: &Framer, limits: &Limits) {
    assert!(f.cmd.len() as u64 <= limits.max_command + 2);
    assert!(f.head.len() <= HEAD_MAX);
    assert!(f.depth <= limits.max_depth + 1 || f.error.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunking_invariance(
        pieces in proptest::collection::vec(piece(), 0..12),
        chunks in proptest::collection::vec(1usize..20, 0..40),
        small in any::<bool>(),
    ) {
        let input: Vec<u8> = pieces.concat();
        let limits = if small { small_limits() } else { Limits::default() };
        let whole = run_chunked(limits, &input, &[]);
        let bytewise = run_chunked(limits, &input, &vec![1; input.len()]);
        let chunked = run_chunked(limits, &input, &chunks);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &chunked);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        chunks in proptest::collection::vec(1usize..64, 0..20),
    ) {
        let limits = small_limits();
        for ev in run_chunked(limits, &input, &chunks) {
            crate::fuzzing::check_event(&ev, &limits);
        }
    }

    /// A literal's content never leaks into framing: whatever a (non-synchronising)
    /// literal holds, the command after it is framed the same.
    #[test]
    fn literal_content_is_opaque(content in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut input = format!("a APPEND INBOX {{{}+}}\r\n", content.len()).into_bytes();
        input.extend_from_slice(&content);
        input.extend_from_slice(b"\r\nz NOOP\r\n");
        let ev = run_chunked(Limits::default(), &input, &[]);
        prop_assert_eq!(ev.len(), 2);
        prop_assert_eq!(&ev[1], &noop("z"));
    }
}

/// Without room for an APPEND literal (the server's memory for mail in transit is taken), a
/// synchronising one is refused before the client sends it and a non-synchronising one is
/// skipped unread; both end in `NoRoom` and the stream stays in step. Other literals, and
/// APPEND literals that fit, are not affected.
#[test]
fn append_literals_beyond_the_room_are_refused() {
    let mut f = framer();
    f.set_room(Some(10));
    let no_room = |size| FrameError::NoRoom { size };
    check(
        &mut f,
        b"a APPEND INBOX {11}\r\nb NOOP\r\n",
        &refused_then_noop("a", no_room(11), "b"),
    );
    check(
        &mut f,
        b"c APPEND INBOX {11+}\r\n01234567890\r\nd NOOP\r\n",
        &refused_then_noop("c", no_room(11), "d"),
    );
    assert_eq!(f.held(), 0, "the skipped literal was not stored");
    check(
        &mut f,
        b"e APPEND INBOX {10}\r\n0123456789\r\n",
        &[
            sync("e", "APPEND", 10),
            cmd("e", b"e APPEND INBOX {10}\r\n0123456789", 1),
        ],
    );
    check_one_command(&mut f, b"f LOGIN {11+}\r\nalice@a.exa secret\r\n");
    f.set_room(None);
    check_one_command(&mut f, b"g APPEND INBOX {11+}\r\n01234567890\r\n");
}

/// The driver takes an APPEND message's octets while they arrive (MULTIAPPEND, LITERAL+
/// and synchronising, a literal mailbox name first): what it took and what the command
/// keeps make each message, and the parser knows which literal lost what. Other literals
/// are never taken.
#[test]
fn append_literals_are_taken_while_they_arrive() {
    let mut f = framer();
    let first: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let second = b"Subject: two\r\n\r\nshort\r\n".to_vec();
    let mut input = b"t APPEND {5+}\r\nINBOX (\\Seen) {1000+}\r\n".to_vec();
    input.extend_from_slice(&first);
    input.extend_from_slice(format!(" {{{}}}\r\n", second.len()).as_bytes());
    input.extend_from_slice(&second);
    input.extend_from_slice(b"\r\n");
    let mut taken: Vec<(usize, u64, Vec<u8>)> = Vec::new();
    let mut raw = None;
    for piece in input.chunks(64) {
        f.feed(piece);
        while let Some(ev) = f.next_event() {
            match ev {
                Event::SyncLiteral { .. } => f.accept_literal(),
                Event::Command(c) => raw = Some(c),
                other => panic!("{other:?}"),
            }
        }
        // The mailbox name literal is never taken, however little is asked for.
        if let Some(t) = f.take_literal(100) {
            taken.push(t);
        }
    }
    let raw = raw.expect("the command");
    assert!(taken.iter().all(|(lit, _, _)| *lit == 1), "{taken:?}");
    let spooled: Vec<u8> = taken.iter().flat_map(|t| t.2.clone()).collect();
    assert!(spooled.len() >= 900, "{}", spooled.len());
    let offsets: Vec<u64> = taken.iter().map(|t| t.1).collect();
    let mut expect = 0;
    for (o, t) in offsets.iter().zip(&taken) {
        assert_eq!(*o, expect);
        expect += t.2.len() as u64;
    }
    assert_eq!(raw.taken, vec![(1, spooled.len() as u64)]);
    let cmd = crate::parse::parse_raw_command(raw, &crate::ParseOptions::default()).unwrap();
    let crate::CommandBody::Append { mailbox, messages } = cmd.body else {
        panic!("{cmd:?}")
    };
    assert_eq!(mailbox, "INBOX");
    assert_eq!(messages[0].taken, Some((1, spooled.len() as u64)));
    assert_eq!([spooled, messages[0].data.clone()].concat(), first);
    assert_eq!((messages[1].taken, &messages[1].data), (None, &second));
    assert_eq!(f.held(), 0);
}

/// A string literal that the driver took (a huge mailbox name in an APPEND command) is a
/// syntax error, never parsed from what is left of it.
#[test]
fn a_taken_string_literal_is_refused() {
    let mut f = framer();
    f.feed(b"t APPEND {300+}\r\n");
    assert!(f.next_event().is_none());
    f.feed(&[b'x'; 299]);
    assert!(f.next_event().is_none());
    assert_eq!(
        f.take_literal(1).map(|t| (t.0, t.1, t.2.len())),
        Some((0, 0, 299))
    );
    f.feed(b"x {1}\r\n");
    assert!(matches!(f.next_event(), Some(Event::SyncLiteral { .. })));
    f.accept_literal();
    f.feed(b"m\r\n");
    let Some(Event::Command(raw)) = f.next_event() else {
        panic!()
    };
    let e = crate::parse::parse_raw_command(raw, &crate::ParseOptions::default()).unwrap_err();
    assert!(e.message.contains("too long"), "{e:?}");
}

/// CATENATE (RFC 4469) TEXT literals are message parts, not messages: never taken by the
/// driver and held to the ordinary literal limit; a plain message after the list is a
/// message again.
#[test]
fn catenate_text_literals_are_not_taken() {
    let mut f = framer();
    let text: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = b"t APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\" TEXT {1000+}\r\n".to_vec();
    input.extend_from_slice(&text);
    input.extend_from_slice(b") (\\Seen) {1000+}\r\n");
    input.extend_from_slice(&text);
    input.extend_from_slice(b"\r\n");
    let mut taken = Vec::new();
    let mut raw = None;
    for piece in input.chunks(64) {
        f.feed(piece);
        while let Some(ev) = f.next_event() {
            match ev {
                Event::Command(c) => raw = Some(c),
                other => panic!("{other:?}"),
            }
        }
        if let Some(t) = f.take_literal(100) {
            taken.push(t);
        }
    }
    assert!(!taken.is_empty());
    assert!(taken.iter().all(|(lit, _, _)| *lit == 1), "{taken:?}");
    let raw = raw.expect("the command");
    let cmd = crate::parse::parse_raw_command(raw, &crate::ParseOptions::default()).unwrap();
    let crate::CommandBody::Append { messages, .. } = cmd.body else {
        panic!("{cmd:?}")
    };
    assert_eq!(
        messages[0].catenate.as_ref().unwrap()[1],
        crate::command::CatenatePart::Text(text.clone())
    );
    assert!(messages[1].taken.is_some() && messages[1].catenate.is_none());

    // A TEXT literal beyond the ordinary literal limit is refused.
    let mut f = framer();
    let max = f.limits().max_literal;
    f.feed(format!("t APPEND INBOX CATENATE (TEXT {{{}}}\r\n", max + 1).as_bytes());
    match f.next_event() {
        Some(Event::Error {
            error: FrameError::LiteralTooBig { append: false, .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
