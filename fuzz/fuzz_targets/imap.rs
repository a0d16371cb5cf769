//! The IMAP wire layer and session: `hato_imap::Framer` + `parse_command`, and
//! `hato_imap::Session` driven with canned outcomes.
//!
//! Input: `[flags, chunking, d0, d1, client bytes...]`. Bit 0 of `flags` chooses the mode.
//!
//! Framer mode (bit 0 clear): bits 1-3 choose the limits (small, LITERAL-, pre-auth),
//! bit 4 UTF-8 mailbox names. The bytes are framed in the given cut; each synchronising
//! literal is accepted or rejected by the decisions `d0 d1`; every framed command is
//! parsed. The whole input is also parsed as one command directly (the parser must stand
//! inputs the framer would never produce). Checked: no panic, framed commands within the
//! limits and starting with their (valid) tag, parse results carrying that tag, and the
//! cut of the input does not change the events.
//!
//! Session mode (bit 0 set): bits 1-4 STARTTLS offered, implicit TLS, quota, small limits.
//! Every `Execute` is answered OK (with an untagged EXISTS), NO or BAD by the decisions;
//! LOGIN/AUTHENTICATE succeed for `alice`, `throttle` is throttled. Checked: no panic,
//! every output line starts with `* `, `+ ` or a valid tag and a space, the output ends
//! with CRLF, and (without STARTTLS) the cut of the input does not change the output.
#![no_main]

use std::sync::Arc;

use hato_fuzz::{Decisions, chunks, header, lossy};
use hato_imap::framer::is_valid_tag;
use hato_imap::fuzzing::{check_event, small_limits, tls_info};
use hato_imap::{
    Action, AuthOutcome, Config, Data, Event, Framer, Limits, Outcome, ParseOptions, Response,
    Session, StatusKind, parse_command,
};
use libfuzzer_sys::fuzz_target;

fn framer_limits(flags: u8) -> Limits {
    let mut l = if flags & 2 != 0 {
        small_limits()
    } else if flags & 8 != 0 {
        Limits::pre_auth()
    } else {
        Limits::default()
    };
    l.literal_minus = flags & 4 != 0;
    l
}

fn frame(flags: u8, decisions: &[u8], pieces: &[&[u8]]) -> Vec<Event> {
    let limits = framer_limits(flags);
    let opts = ParseOptions {
        utf8: flags & 16 != 0,
        ..ParseOptions::default()
    };
    let mut d = Decisions::new(decisions);
    let mut f = Framer::new(limits);
    let mut events = Vec::new();
    for piece in pieces {
        f.feed(piece);
        while let Some(ev) = f.next_event() {
            check_event(&ev, &limits);
            match &ev {
                Event::SyncLiteral { .. } => {
                    if d.decide() {
                        f.accept_literal();
                    } else {
                        f.reject_literal();
                    }
                }
                Event::Command(raw) => match parse_command(&raw.bytes, &opts) {
                    Ok(cmd) => {
                        assert_eq!(cmd.tag, raw.tag);
                        assert!(!cmd.body.name().is_empty());
                    }
                    Err(e) => {
                        if let Some(t) = &e.tag {
                            assert_eq!(t, &raw.tag);
                        }
                    }
                },
                _ => {}
            }
            events.push(ev);
        }
        assert!(f.buffered() <= piece.len() + limits.max_command as usize + 4096);
    }
    events
}

fn session(flags: u8, decisions: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
    let mut config = Config {
        starttls: flags & 2 != 0,
        quota_bytes: (flags & 8 != 0).then_some(1 << 20),
        ..Config::default()
    };
    if flags & 16 != 0 {
        config.limits = Limits {
            max_line: 200,
            max_append_literal: 100,
            max_literal: 50,
            max_literals: 4,
            max_command: 400,
            max_depth: 6,
            literal_minus: true,
        };
        config.max_errors = 3;
    }
    let mut d = Decisions::new(decisions);
    let mut s = Session::new(Arc::new(config), (flags & 4 != 0).then(tls_info));
    s.greet();
    let mut out = Vec::new();
    let mut rest = pieces.iter();
    for _ in 0..1_000_000 {
        match s.poll() {
            a @ (Action::NeedInput | Action::Idle) => {
                out.extend(s.output());
                if a == Action::Idle && d.decide() {
                    s.idle_update(vec![Response::Data(Data::Exists(7))]);
                    continue;
                }
                let Some(piece) = rest.next() else { break };
                s.feed(piece);
            }
            Action::StartTls => {
                assert!(s.tls().is_none(), "STARTTLS under TLS");
                s.tls_established(tls_info());
            }
            Action::Close => {
                assert_eq!(s.poll(), Action::Close, "Close is final");
                break;
            }
            Action::Authenticate { username, .. } => {
                assert!(s.tls().is_some(), "credentials accepted without TLS");
                s.auth_result(match username.as_str() {
                    "alice" => AuthOutcome::Ok,
                    "throttle" => AuthOutcome::Throttled,
                    _ => AuthOutcome::Failed,
                });
            }
            Action::Execute(cmd) => {
                assert!(
                    s.user().is_some(),
                    "{} executed before login",
                    cmd.body.name()
                );
                let outcome = match (d.decide(), d.decide()) {
                    (false, _) => Outcome::ok(vec![Response::Data(Data::Exists(1))]),
                    (true, false) => Outcome::no(None, "no"),
                    (true, true) => Outcome {
                        kind: StatusKind::Bad,
                        ..Outcome::no(None, "bad")
                    },
                };
                s.command_done(outcome);
            }
        }
    }
    s.timeout();
    out.extend(s.output());
    out
}

fn check_output(out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "output not CRLF-terminated"
    );
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let ok = line.starts_with(b"* ")
            || line.starts_with(b"+ ")
            || line
                .iter()
                .position(|&b| b == b' ')
                .is_some_and(|sp| is_valid_tag(&line[..sp]));
        assert!(ok, "bad response line {:?}", lossy(line));
    }
}

fuzz_target!(|data: &[u8]| {
    let ([flags, how, d0, d1], input) = header::<4>(data);
    let pieces = chunks(input, how);
    if flags & 1 == 0 {
        let events = frame(flags, &[d0, d1], &pieces);
        if how != 0 {
            assert_eq!(
                frame(flags, &[d0, d1], &[input]),
                events,
                "framing depends on how the input is cut"
            );
        }
        for utf8 in [false, true] {
            let _ = parse_command(
                input,
                &ParseOptions {
                    utf8,
                    max_depth: 32,
                },
            );
        }
    } else {
        let out = session(flags, &[d0, d1], &pieces);
        check_output(&out);
        let starttls = input
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"STARTTLS"));
        if !starttls && how != 0 {
            assert_eq!(
                lossy(&session(flags, &[d0, d1], &[input])),
                lossy(&out),
                "session output depends on how the input is cut"
            );
        }
    }
});
