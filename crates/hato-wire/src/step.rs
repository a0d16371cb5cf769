//! What a line-based sans-IO session (SMTP, POP3) does in `poll`: greet first; repeat an action
//! the driver has not answered yet; wait for the TLS handshake once STARTTLS/STLS is accepted;
//! otherwise step over the buffered input until the driver has to act, compacting the buffer
//! when it stops and dropping it when the session closes (nothing the client sent after a
//! fatal reply is ever read).

/// What one step over the buffered input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<A> {
    /// Something was consumed; step again.
    Continue,
    /// The buffer holds no complete unit: more bytes are needed.
    NeedInput,
    /// The session accepted STARTTLS/STLS: the driver performs the handshake.
    StartTls,
    /// The driver must do this and answer the session.
    Action(A),
}

/// Why [`run`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop<A> {
    Close,
    NeedInput,
    StartTls,
    Action(A),
}

/// The session's parts [`poll`] calls (plain functions, so the session exposes nothing), and
/// its actions for the three outcomes every session has.
pub struct Parts<S, A> {
    pub step: fn(&mut S) -> Step<A>,
    pub closing: fn(&S) -> bool,
    pub discard_input: fn(&mut S),
    pub compact: fn(&mut S),
    /// Queues the greeting unless it was queued before.
    pub greet: fn(&mut S),
    /// The action awaiting the driver's answer (the session clears it when answered).
    pub pending: fn(&mut S) -> &mut Option<A>,
    /// STARTTLS/STLS was accepted: the handshake comes next.
    pub tls_pending: fn(&S) -> bool,
    pub close: A,
    pub need_input: A,
    pub start_tls: A,
}

/// A session's `poll`: what the driver must do next.
pub fn poll<S, A: Clone>(session: &mut S, parts: &Parts<S, A>) -> A {
    if (parts.closing)(session) {
        return parts.close.clone();
    }
    (parts.greet)(session);
    if let Some(a) = (parts.pending)(session) {
        return a.clone();
    }
    if (parts.tls_pending)(session) {
        return parts.start_tls.clone();
    }
    match run(session, parts) {
        Stop::Close => parts.close.clone(),
        Stop::NeedInput => parts.need_input.clone(),
        Stop::StartTls => parts.start_tls.clone(),
        Stop::Action(a) => {
            *(parts.pending)(session) = Some(a.clone());
            a
        }
    }
}

/// Steps `session` until it closes or the driver has to act.
fn run<S, A>(session: &mut S, parts: &Parts<S, A>) -> Stop<A> {
    loop {
        let step = (parts.step)(session);
        if (parts.closing)(session) {
            (parts.discard_input)(session);
            return Stop::Close;
        }
        match step {
            Step::Continue => {}
            Step::NeedInput => {
                (parts.compact)(session);
                return Stop::NeedInput;
            }
            Step::StartTls => return Stop::StartTls,
            Step::Action(a) => {
                (parts.compact)(session);
                return Stop::Action(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        steps: Vec<Step<u8>>,
        closing: bool,
        compacted: usize,
        discarded: bool,
        greetings: usize,
        pending: Option<u8>,
        tls_pending: bool,
    }

    fn parts() -> Parts<Fake, u8> {
        Parts {
            step: |f| {
                let s = f.steps.remove(0);
                if s == Step::Action(9) {
                    f.closing = true;
                }
                s
            },
            closing: |f| f.closing,
            discard_input: |f| f.discarded = true,
            compact: |f| f.compacted += 1,
            greet: |f| f.greetings = 1,
            pending: |f| &mut f.pending,
            tls_pending: |f| f.tls_pending,
            close: 100,
            need_input: 101,
            start_tls: 102,
        }
    }

    fn fake(steps: Vec<Step<u8>>) -> Fake {
        Fake {
            steps,
            closing: false,
            compacted: 0,
            discarded: false,
            greetings: 0,
            pending: None,
            tls_pending: false,
        }
    }

    #[test]
    fn poll_greets_repeats_the_unanswered_action_and_waits_for_tls() {
        let mut f = fake(vec![Step::Action(1), Step::StartTls]);
        assert_eq!(poll(&mut f, &parts()), 1);
        assert_eq!((f.greetings, f.pending), (1, Some(1)));
        // Not answered yet: the same action again, no step taken.
        assert_eq!(poll(&mut f, &parts()), 1);
        assert_eq!(f.steps, vec![Step::StartTls]);
        f.pending = None;
        assert_eq!(poll(&mut f, &parts()), 102);
        f.tls_pending = true;
        assert_eq!(poll(&mut f, &parts()), 102, "until the handshake is done");
        f.closing = true;
        assert_eq!(poll(&mut f, &parts()), 100);
        let mut f = fake(vec![Step::NeedInput]);
        assert_eq!(poll(&mut f, &parts()), 101);
    }

    #[test]
    fn continues_until_the_driver_must_act() {
        let mut f = fake(vec![Step::Continue, Step::Continue, Step::Action(1)]);
        assert_eq!(run(&mut f, &parts()), Stop::Action(1));
        assert_eq!((f.compacted, f.discarded), (1, false));
        let mut f = fake(vec![Step::Continue, Step::NeedInput]);
        assert_eq!(run(&mut f, &parts()), Stop::NeedInput);
        assert_eq!(f.compacted, 1);
        let mut f = fake(vec![Step::StartTls]);
        assert_eq!(run(&mut f, &parts()), Stop::StartTls);
        assert_eq!(
            f.compacted, 0,
            "the bytes after STARTTLS are the session's to discard"
        );
    }

    #[test]
    fn closing_drops_the_input_whatever_the_step_said() {
        let mut f = fake(vec![Step::Continue, Step::Action(9), Step::Action(1)]);
        assert_eq!(run(&mut f, &parts()), Stop::Close);
        assert!(f.discarded);
        assert_eq!(f.steps, vec![Step::Action(1)]);
    }
}
