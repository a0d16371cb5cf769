//! The input buffer: how client bytes become lines (CRLF or LF, RFC 2449 §4 line
//! limits, over-long lines discarded as they arrive) and which line is a command and
//! which a SASL response.

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
    pub(super) fn discard_input(&mut self) {
        self.inbuf = Vec::new();
        self.pos = 0;
        self.scanned = 0;
    }

    pub(super) fn compact(&mut self) {
        if self.pos > 0 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 64 * 1024 {
            self.inbuf = Vec::new();
        }
    }

    /// Line limit for the line starting at `pos` (AUTH lines get [`AUTH_LINE_MAX`]).
    fn line_limit(&self) -> usize {
        let base = self.config.max_command_line.max(MIN_COMMAND_LINE);
        let start = &self.inbuf[self.pos..];
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
        let limit = self.line_limit();
        let avail = &self.inbuf[self.pos..];
        let from = self.scanned.min(avail.len());
        match avail[from..].iter().position(|&b| b == b'\n') {
            Some(off) => {
                let lf = from + off;
                let total = lf + 1;
                let result = if total > limit {
                    Line::TooLong
                } else {
                    let end = if lf > 0 && avail[lf - 1] == b'\r' {
                        lf - 1
                    } else {
                        lf
                    };
                    Line::Complete(avail[..end].to_vec())
                };
                self.pos += total;
                self.scanned = 0;
                result
            }
            None if avail.len() >= limit => {
                // Cannot become a valid line: drop what we have and discard the rest.
                self.pos += avail.len();
                self.scanned = 0;
                self.input = Input::Discard;
                Line::Discarding
            }
            None => {
                self.scanned = avail.len();
                Line::Incomplete
            }
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
        let avail = &self.inbuf[self.pos..];
        if avail.is_empty() {
            return Step::NeedInput;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.pos += lf + 1;
                self.input = Input::Command;
                self.line_too_long();
                Step::Continue
            }
            None => {
                self.pos += avail.len();
                Step::NeedInput
            }
        }
    }

    /// Bytes currently buffered from the client (tests: bounded-memory checks).
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.inbuf.len()
    }
}
