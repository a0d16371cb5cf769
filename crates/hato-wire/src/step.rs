//! The loop a line-based sans-IO session (SMTP, POP3) runs over its buffered input in `poll`:
//! step until the driver has to act, compacting the buffer when it stops and dropping it when
//! the session closes (nothing the client sent after a fatal reply is ever read).

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

/// The session's parts [`run`] calls (plain functions, so the session exposes nothing).
pub struct Parts<S, A> {
    pub step: fn(&mut S) -> Step<A>,
    pub closing: fn(&S) -> bool,
    pub discard_input: fn(&mut S),
    pub compact: fn(&mut S),
}

/// Steps `session` until it closes or the driver has to act.
pub fn run<S, A>(session: &mut S, parts: &Parts<S, A>) -> Stop<A> {
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
        }
    }

    fn fake(steps: Vec<Step<u8>>) -> Fake {
        Fake {
            steps,
            closing: false,
            compacted: 0,
            discarded: false,
        }
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
