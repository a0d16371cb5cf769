//! The POP3 server session (`hato_pop3::Session`) fed arbitrary client bytes.
//!
//! Input: `[flags, chunking, d0, d1, n, <n bytes: a message>, client bytes...]`.
//! - `flags`: bit 0 STLS offered, 1 implicit TLS, 2 a small error limit, 3 short command
//!   lines (255), 4 end with `shutdown()` instead of `timeout()`;
//! - `chunking`: how the client bytes are cut into reads (see `hato_fuzz::chunks`);
//! - `d0 d1`: the driver's decisions (a message gone, a commit failing, ...);
//! - the maildrop holds four awkward fixed messages and the `n` bytes as message 5.
//!
//! Checked: no panic, no bare CR or LF in the output (status lines and byte-stuffed
//! messages alike), output ends with CRLF, no credentials
//! are asked for without TLS, a commit is the last decision and lists valid ascending
//! indices, output and buffering stay bounded (the crate's driver checks these, as in
//! its property tests), and (without STLS) the cut of the input does not change the
//! result.
#![no_main]

use hato_fuzz::{Decisions, chunks, header};
use hato_pop3::Config;
use hato_pop3::session::fuzzing::{Driver, End, Run, assert_no_bare_cr_lf};
use libfuzzer_sys::fuzz_target;

const FIXED: [&[u8]; 4] = [
    b"Subject: a\r\n\r\n.\r\n..\r\nx\r\n",
    b"Subject: b\n\n.\nbody\n",
    b"no header separator\r.\r",
    b"",
];

/// Runs the crate's checking driver (see `hato_pop3::session::fuzzing`).
fn drive(flags: u8, decisions: &[u8], messages: &[&[u8]], pieces: &[&[u8]]) -> Run {
    let mut d = Decisions::new(decisions);
    Driver {
        config: Config {
            hostname: "pop.example".into(),
            stls: flags & 1 != 0,
            max_errors: if flags & 4 != 0 { 2 } else { 50 },
            max_command_line: if flags & 8 != 0 { 255 } else { 512 },
        },
        tls: flags & 2 != 0,
        messages,
        decide: &mut || d.decide(),
        end: End::closing(flags & 16 != 0),
    }
    .run(pieces)
}

fuzz_target!(|data: &[u8]| {
    let ([flags, how, d0, d1, n], rest) = header::<5>(data);
    let (message, input) = rest.split_at(usize::from(n).min(rest.len()));
    let mut messages: Vec<&[u8]> = FIXED.to_vec();
    messages.push(message);
    let pieces = chunks(input, how);
    let t = drive(flags, &[d0, d1], &messages, &pieces);

    let out = &t.output;
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "output not CRLF-terminated"
    );
    assert_no_bare_cr_lf(out);

    let stls = input.windows(4).any(|w| w.eq_ignore_ascii_case(b"STLS"));
    if !stls && how != 0 {
        let whole = drive(flags, &[d0, d1], &messages, &[input]);
        assert_eq!(whole, t, "result depends on how the input is cut");
    }
});
