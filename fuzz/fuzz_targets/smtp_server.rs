//! The SMTP server session (`hato_smtp::Session`) fed arbitrary client bytes.
//!
//! Input: `[flags, chunking, d0, d1, client bytes...]`.
//! - `flags` chooses the listener configuration (bit 0 submission, 1 normalise bare line
//!   endings, 2 STARTTLS offered, 3 implicit TLS, 4 require TLS, 5 small limits, 6 reject
//!   early talkers, 7 end with `shutdown()` instead of `timeout()`);
//! - `chunking` how the bytes are cut into reads (see `hato_fuzz::chunks`);
//! - `d0 d1` the driver's decisions (refuse a delivery, ...).
//!
//! The driver (the crate's, shared with its property tests) answers every action the way
//! `hato`'s does. Checked: no panic, the session ends every feed with NeedInput or Close,
//! the output is well-formed SMTP replies and bounded by the input, buffering is
//! bounded, deliveries are consistent, the `Received:` field is one header field
//! whatever the client sent, and (without STARTTLS, where the cut matters by design) the
//! cut of the input changes nothing.
#![no_main]

use hato_fuzz::{Decisions, assert_smtp_replies, chunks, header};
use hato_smtp::session::fuzzing::{Driver, End, Run};
use hato_smtp::{BareLinePolicy, Config, Mode, Peer, TlsInfo};
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

/// Runs the crate's checking driver (see `hato_smtp::session::fuzzing`).
fn drive(flags: u8, decisions: &[u8], pieces: &[&[u8]]) -> Run {
    let mut d = Decisions::new(decisions);
    Driver {
        config: config(flags),
        peer: Peer {
            ip: "2001:db8::7".parse().unwrap(),
            port: 1,
            reverse_name: Some("client.example".into()),
        },
        tls_info: TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            sni: Some("mx.example".into()),
        },
        tls: flags & 8 != 0,
        decide: &mut || d.decide(),
        end: End::closing(flags & 128 != 0),
    }
    .run(pieces)
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
