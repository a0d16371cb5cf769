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
//! indices, and (without STLS) the cut of the input does not change the result.
#![no_main]

use std::sync::Arc;

use hato_fuzz::{Decisions, chunks, header, lossy};
use hato_pop3::{
    Action, AuthOutcome, CommitError, Config, MaildropError, MessageError, MessageInfo, Session,
    TlsInfo, wire_size,
};
use libfuzzer_sys::fuzz_target;

const FIXED: [&[u8]; 4] = [
    b"Subject: a\r\n\r\n.\r\n..\r\nx\r\n",
    b"Subject: b\n\n.\nbody\n",
    b"no header separator\r.\r",
    b"",
];

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Trace {
    output: Vec<u8>,
    actions: Vec<String>,
    closed: bool,
}

fn drive(flags: u8, decisions: &[u8], messages: &[&[u8]], pieces: &[&[u8]]) -> Trace {
    let cfg = Config {
        hostname: "pop.example".into(),
        stls: flags & 1 != 0,
        max_errors: if flags & 4 != 0 { 2 } else { 50 },
        max_command_line: if flags & 8 != 0 { 255 } else { 512 },
    };
    let mut d = Decisions::new(decisions);
    let mut s = Session::new(Arc::new(cfg), (flags & 2 != 0).then(tls_info));
    s.greet();
    let mut t = Trace::default();
    let mut committed = false;
    'feed: for piece in pieces {
        s.feed(piece);
        let mut guard = 0u32;
        loop {
            guard += 1;
            assert!(guard < 100_000, "session loops");
            let a = s.poll();
            assert!(
                !committed || a == Action::Close,
                "decision after the commit"
            );
            if !matches!(a, Action::NeedInput | Action::Close) {
                t.actions.push(format!("{a:?}"));
            }
            match a {
                Action::NeedInput => break,
                Action::Close => {
                    t.closed = true;
                    assert_eq!(s.poll(), Action::Close, "Close is final");
                    break 'feed;
                }
                Action::StartTls => {
                    assert!(!s.is_tls(), "STLS under TLS");
                    s.tls_established(tls_info());
                }
                Action::Authenticate { username, password } => {
                    assert!(s.is_tls(), "credentials accepted without TLS");
                    s.auth_result(match (username.as_str(), password.expose()) {
                        ("throttle", _) => AuthOutcome::Throttled,
                        (_, "secret") => AuthOutcome::Ok,
                        _ => AuthOutcome::Failed,
                    });
                }
                Action::OpenMaildrop { username } => {
                    let r = match username.as_str() {
                        "busy" => Err(MaildropError::InUse),
                        "temp" => Err(MaildropError::Temporary),
                        _ => Ok(messages
                            .iter()
                            .enumerate()
                            .map(|(i, m)| MessageInfo {
                                size: wire_size(m),
                                uid: format!("u{i}"),
                            })
                            .collect()),
                    };
                    s.maildrop_result(r);
                }
                Action::Retrieve { index, .. } => {
                    t.output.extend(s.output());
                    let r = match messages.get(index) {
                        Some(_) if d.decide() && d.decide() => Err(MessageError::Temporary),
                        Some(m) => Ok(m.to_vec()),
                        None => panic!("Retrieve of message index {index} not in the listing"),
                    };
                    s.message_result(r);
                }
                Action::Commit { deleted } => {
                    assert!(deleted.windows(2).all(|w| w[0] < w[1]), "{deleted:?}");
                    assert!(deleted.iter().all(|&i| i < messages.len()), "{deleted:?}");
                    committed = true;
                    s.commit_result(if d.decide() { Err(CommitError) } else { Ok(()) });
                }
            }
        }
        t.output.extend(s.output());
    }
    if !t.closed {
        if flags & 16 != 0 {
            s.shutdown();
        } else {
            s.timeout();
        }
        assert_eq!(s.poll(), Action::Close);
    }
    t.output.extend(s.output());
    t
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
    for (i, &b) in out.iter().enumerate() {
        let bare = match b {
            b'\r' => out.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || out[i - 1] != b'\r',
            _ => false,
        };
        assert!(
            !bare,
            "bare CR/LF in the output near {:?}",
            lossy(&out[i.saturating_sub(40)..])
        );
    }

    let stls = input.windows(4).any(|w| w.eq_ignore_ascii_case(b"STLS"));
    if !stls && how != 0 {
        let whole = drive(flags, &[d0, d1], &messages, &[input]);
        assert_eq!(whole, t, "result depends on how the input is cut");
    }
});
