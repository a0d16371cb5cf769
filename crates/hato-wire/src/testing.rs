//! What the property tests and fuzz targets of the line-based server sessions (SMTP,
//! POP3) share: the loop that feeds a session client bytes piece by piece and polls it
//! until it needs input, the record of a run, and the cutting of input into pieces; and
//! the TLS facts the test drivers of all three server sessions (IMAP too) report.
//!
//! Compiled with the `test-support` feature only.

use std::fmt;

use crate::TlsInfo;

/// A TLS 1.3 connection without SNI, as a test driver reports it (for implicit TLS and
/// after STARTTLS/STLS).
pub fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

/// Everything observable about a run of a server session.
#[derive(Debug, PartialEq, Eq)]
pub struct Run<A> {
    /// All the session wrote.
    pub output: Vec<u8>,
    /// Every action but `NeedInput` and `Close`, in order.
    pub actions: Vec<A>,
    /// Whether the session asked to close.
    pub closed: bool,
}

impl<A> Default for Run<A> {
    fn default() -> Run<A> {
        Run {
            output: Vec::new(),
            actions: Vec::new(),
            closed: false,
        }
    }
}

/// How a run that has not closed by the end of the input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Not at all: the session stays open.
    Open,
    /// The driver's timer fires (the session's `timeout()`).
    Timeout,
    /// The server stops (the session's `shutdown()`).
    Shutdown,
}

impl End {
    /// How a driver closes a session that is still open: `Shutdown` when the server
    /// stops, `Timeout` otherwise.
    pub fn closing(shutdown: bool) -> End {
        if shutdown {
            End::Shutdown
        } else {
            End::Timeout
        }
    }
}

/// What an action asks of the loop in [`pump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Feed the next piece.
    NeedInput,
    /// Stop: the session is done.
    Close,
    /// The driver answers it (the handshake, a login, a decision).
    Decide,
}

/// The driver API of a server session, as [`pump`] uses it. Implement it with
/// [`server_session!`](crate::server_session).
pub trait ServerSession {
    type Action: Clone + PartialEq + fmt::Debug;
    fn feed(&mut self, bytes: &[u8]);
    fn poll(&mut self) -> Self::Action;
    fn output(&mut self) -> Vec<u8>;
    fn timeout(&mut self);
    fn shutdown(&mut self);
    fn flow(action: &Self::Action) -> Flow;
}

/// Implements [`ServerSession`](crate::testing::ServerSession) for a session type whose
/// inherent methods have the same names and whose action enum has `NeedInput` and
/// `Close` variants.
#[macro_export]
macro_rules! server_session {
    ($session:ty, $action:ident) => {
        impl $crate::testing::ServerSession for $session {
            type Action = $action;
            fn feed(&mut self, bytes: &[u8]) {
                <$session>::feed(self, bytes);
            }
            fn poll(&mut self) -> $action {
                <$session>::poll(self)
            }
            fn output(&mut self) -> Vec<u8> {
                <$session>::output(self)
            }
            fn timeout(&mut self) {
                <$session>::timeout(self);
            }
            fn shutdown(&mut self) {
                <$session>::shutdown(self);
            }
            fn flow(action: &$action) -> $crate::testing::Flow {
                match action {
                    $action::NeedInput => $crate::testing::Flow::NeedInput,
                    $action::Close => $crate::testing::Flow::Close,
                    _ => $crate::testing::Flow::Decide,
                }
            }
        }
    };
}

/// Feeds `pieces` to the (greeted) session one after the other, polling after each
/// until it needs input; `answer` answers every other action and may take the output
/// first (into the `Vec` it is given, which is the run's output). `check` looks at the
/// session (and the piece being processed) after every answer and once the piece is
/// processed, before its output is taken. Stops at `Close`; a session still open at
/// the end of the input ends as `end` says.
///
/// Panics if the session loops (a million polls for one piece), if an action follows
/// `Close`, or if `timeout()`/`shutdown()` do not close it.
pub fn pump<S: ServerSession, P: AsRef<[u8]>>(
    s: &mut S,
    pieces: &[P],
    end: End,
    mut answer: impl FnMut(&mut S, S::Action, &mut Vec<u8>),
    mut check: impl FnMut(&S, &[u8]),
) -> Run<S::Action> {
    let mut run = Run::default();
    'feed: for piece in pieces {
        let piece = piece.as_ref();
        s.feed(piece);
        let mut guard = 0u32;
        loop {
            guard += 1;
            assert!(guard < 1_000_000, "session loops");
            let a = s.poll();
            match S::flow(&a) {
                Flow::NeedInput => break,
                Flow::Close => {
                    run.closed = true;
                    assert_closed(s, "Close is final");
                    break 'feed;
                }
                Flow::Decide => {
                    run.actions.push(a.clone());
                    answer(s, a, &mut run.output);
                    check(s, piece);
                }
            }
        }
        check(s, piece);
        run.output.extend(s.output());
    }
    if !run.closed && end != End::Open {
        if end == End::Shutdown {
            s.shutdown();
        } else {
            s.timeout();
        }
        assert_closed(s, "no Close after the end");
    }
    run.output.extend(s.output());
    run
}

fn assert_closed<S: ServerSession>(s: &mut S, what: &str) {
    let a = s.poll();
    assert_eq!(S::flow(&a), Flow::Close, "{what}: {a:?}");
}

/// Splits `data` at the given positions (taken modulo the length plus one, sorted,
/// deduplicated); there is always at least one piece.
pub fn split(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(data[start..p].to_vec());
        start = p;
    }
    out.push(data[start..].to_vec());
    out
}

/// Runs `drive` over `data` whole, byte by byte and split at `cuts`, and panics unless
/// the three runs are the same.
pub fn assert_cut_does_not_matter<R: PartialEq + fmt::Debug>(
    data: &[u8],
    cuts: &[usize],
    mut drive: impl FnMut(&[Vec<u8>]) -> R,
) {
    let whole = drive(std::slice::from_ref(&data.to_vec()));
    let bytewise: Vec<Vec<u8>> = data.iter().map(|&b| vec![b]).collect();
    assert_eq!(whole, drive(&bytewise), "fed byte by byte");
    assert_eq!(whole, drive(&split(data, cuts)), "split at {cuts:?}");
}

/// Panics unless every CR and LF in `out` is part of a CRLF pair.
pub fn assert_no_bare_cr_lf(out: &[u8]) {
    if let Some(i) = first_bare_cr_lf(out) {
        let near = &out[i.saturating_sub(40)..];
        panic!(
            "bare CR/LF near {:?}",
            String::from_utf8_lossy(&near[..near.len().min(300)])
        );
    }
}

/// Where the first CR or LF that is not part of a CRLF pair is.
fn first_bare_cr_lf(out: &[u8]) -> Option<usize> {
    out.iter().enumerate().position(|(i, &b)| match b {
        b'\r' => out.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || out[i - 1] != b'\r',
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_byte_in_order() {
        assert_eq!(split(b"", &[]), vec![Vec::<u8>::new()]);
        assert_eq!(
            split(b"abc", &[5, 1, 1]),
            vec![b"a".to_vec(), b"bc".to_vec()]
        );
        assert_eq!(
            split(b"abcd", &[0, 2, 4]),
            vec![Vec::new(), b"ab".to_vec(), b"cd".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn bare_line_ends_are_found() {
        assert_eq!(first_bare_cr_lf(b""), None);
        assert_eq!(first_bare_cr_lf(b"a\r\nb\r\n"), None);
        assert_eq!(first_bare_cr_lf(b"\n"), Some(0));
        assert_eq!(first_bare_cr_lf(b"a\rb"), Some(1));
        assert_eq!(first_bare_cr_lf(b"a\r"), Some(1));
        assert_eq!(first_bare_cr_lf(b"\r\r\n"), Some(0));
        assert_eq!(first_bare_cr_lf(b"a\r\n\n"), Some(3));
    }
}
