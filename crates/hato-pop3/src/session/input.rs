//! The input buffer: how client bytes become lines (CRLF or LF, RFC 2449 §4 line
//! limits, over-long lines discarded as they arrive) and which line is a command and
//! which a SASL response.

use hato_wire::input::Framed;

use super::{AUTH_LINE_MAX, MIN_COMMAND_LINE, Session, Step};

/// How the next input bytes are interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Input {
    /// Command lines.
    Command,
    /// The SASL PLAIN response line after `AUTH PLAIN` (RFC 5034 §4).
    Sasl,
    /// Discarding the rest of an over-long line.
    Discard,
}

/// Result of extracting one line from the input buffer.
enum Line {
    /// A complete line (without CRLF or LF).
    Complete(Vec<u8>),
    /// No complete line buffered yet.
    Incomplete,
    /// The line exceeds the limit and was consumed completely.
    TooLong,
    /// The line exceeds the limit and is not complete: now discarding.
    Discarding,
}

impl Session {
    /// Line limit for the line starting at `pos` (AUTH lines get [`AUTH_LINE_MAX`]).
    fn line_limit(&self) -> usize {
        let base = self.config.max_command_line.max(MIN_COMMAND_LINE);
        let start = self.inbuf.pending();
        let is_auth = self.input == Input::Sasl || {
            let n = start.len().min(5);
            start[..n].eq_ignore_ascii_case(&b"AUTH "[..n])
        };
        if is_auth {
            base.max(AUTH_LINE_MAX)
        } else {
            base
        }
    }

    /// Extracts the next line (ending in CRLF or LF), enforcing the line limit.
    fn next_line(&mut self) -> Line {
        match self.inbuf.next_line(self.line_limit()) {
            Framed::Line { too_long: true, .. } => Line::TooLong,
            Framed::Line { line, .. } => Line::Complete(line),
            Framed::Overflow { .. } => {
                // Cannot become a valid line: discard the rest of it.
                self.input = Input::Discard;
                Line::Discarding
            }
            Framed::Incomplete => Line::Incomplete,
        }
    }

    fn line_too_long(&mut self) {
        self.client_err(None, "Line too long");
    }

    pub(super) fn step(&mut self) -> Step {
        match self.input {
            Input::Command | Input::Sasl => {
                let sasl = self.input == Input::Sasl;
                match self.next_line() {
                    Line::Incomplete => Step::NeedInput,
                    Line::Discarding => Step::Continue,
                    Line::TooLong => {
                        // An over-long SASL response abandons the exchange.
                        self.input = Input::Command;
                        self.line_too_long();
                        Step::Continue
                    }
                    Line::Complete(line) if sasl => {
                        self.input = Input::Command;
                        self.sasl_response(&line)
                    }
                    Line::Complete(line) => self.execute(&line),
                }
            }
            Input::Discard => self.step_discard(),
        }
    }

    fn step_discard(&mut self) -> Step {
        let avail = self.inbuf.pending();
        if avail.is_empty() {
            return Step::NeedInput;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.inbuf.consume(lf + 1);
                self.input = Input::Command;
                self.line_too_long();
                Step::Continue
            }
            None => {
                let n = avail.len();
                self.inbuf.consume(n);
                Step::NeedInput
            }
        }
    }

    /// Bytes currently buffered from the client (tests: bounded-memory checks).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(super) fn buffered(&self) -> usize {
        self.inbuf.held()
    }
}
