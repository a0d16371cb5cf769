//! From client bytes to commands: the input buffer, command-line framing with its
//! limits (RFC 5321 §4.5.3.1.4, RFC 4954 §4, bare LF), the per-input-mode step and
//! the verb table.

use super::command::{self, Verb};
use super::{AUTH_LINE_MAX, Input, Line, MAIL_LINE_EXTRA, RCPT_LINE_EXTRA, Session, Step};
use crate::reply::Reply;
use hato_wire::input::Framed;

impl Session {
    // ----------------------------------------------------------------------------
    // Line framing

    /// Line limit for the line starting at `pos`: AUTH lines get RFC 4954's 12288,
    /// MAIL and RCPT lines the extensions' increments ([`MAIL_LINE_EXTRA`],
    /// [`RCPT_LINE_EXTRA`]). (While fewer than 5 octets are buffered the larger limit
    /// applies; it only matters once the line is longer.)
    fn line_limit(&self) -> usize {
        let base = self.config.max_command_line.max(3);
        let start = self.inbuf.pending();
        let n = start.len().min(5);
        let starts = |verb: &[u8]| start[..n].eq_ignore_ascii_case(&verb[..n]);
        if matches!(self.input, Input::Auth(_)) || starts(b"AUTH ") {
            base.max(AUTH_LINE_MAX)
        } else if starts(b"MAIL ") {
            base.saturating_add(MAIL_LINE_EXTRA)
        } else if starts(b"RCPT ") {
            base.saturating_add(RCPT_LINE_EXTRA)
        } else {
            base
        }
    }

    /// Extracts the next CRLF-terminated line, enforcing the line limit.
    pub(super) fn next_line(&mut self) -> Line {
        match self.inbuf.next_line(self.line_limit()) {
            Framed::Line { crlf: false, .. } => Line::BareLf,
            Framed::Line { too_long: true, .. } => Line::TooLong,
            Framed::Line { line, .. } => Line::Complete(line),
            Framed::Overflow { last_cr } => {
                // Cannot become a valid line: discard the rest of it.
                self.input = Input::Discard { prev_cr: last_cr };
                Line::Discarding
            }
            Framed::Incomplete => Line::Incomplete,
        }
    }

    pub(super) fn bare_lf(&mut self) {
        self.reply_close(Reply::new(
            521,
            (5, 5, 2),
            format!(
                "{} Error: bare <LF> received, lines must end with <CR><LF>",
                self.host()
            ),
        ));
    }

    pub(super) fn line_too_long(&mut self) {
        self.reply(Reply::new(500, (5, 5, 2), "Line too long"));
    }

    // ----------------------------------------------------------------------------
    // The state machine

    pub(super) fn step(&mut self) -> Step {
        match self.input {
            Input::Command => self.step_command(),
            Input::Auth(_) => self.step_auth(),
            Input::Discard { .. } => self.step_discard(),
            Input::Data(_) => self.step_data(),
            Input::Bdat { .. } => self.step_bdat(),
            Input::BdatSkip { .. } => self.step_bdat_skip(),
        }
    }

    fn step_command(&mut self) -> Step {
        match self.next_line() {
            Line::Incomplete => Step::NeedInput,
            Line::Discarding => Step::Continue,
            Line::BareLf => {
                self.bare_lf();
                Step::Continue
            }
            Line::TooLong => {
                self.line_too_long();
                Step::Continue
            }
            Line::Complete(line) => self.execute(&line),
        }
    }

    fn step_discard(&mut self) -> Step {
        let Input::Discard { prev_cr } = self.input else {
            return Step::Continue;
        };
        let avail = self.inbuf.pending();
        if avail.is_empty() {
            return Step::NeedInput;
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let bare = if lf == 0 {
                    !prev_cr
                } else {
                    avail[lf - 1] != b'\r'
                };
                self.inbuf.consume(lf + 1);
                self.input = Input::Command;
                if bare {
                    self.bare_lf();
                } else {
                    self.line_too_long();
                }
                Step::Continue
            }
            None => {
                let prev_cr = avail.last() == Some(&b'\r');
                let n = avail.len();
                self.inbuf.consume(n);
                self.input = Input::Discard { prev_cr };
                Step::NeedInput
            }
        }
    }

    // ----------------------------------------------------------------------------
    // Commands

    fn execute(&mut self, line: &[u8]) -> Step {
        if let Some(&bad) = line.iter().find(|&&b| b < 0x20 || b == 0x7f) {
            let text = if bad == b'\r' {
                "Bare <CR> not allowed in commands"
            } else {
                "Invalid control character in command"
            };
            self.reply(Reply::new(500, (5, 5, 2), text));
            return Step::Continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            self.reply(Reply::new(500, (5, 5, 2), "Invalid UTF-8 in command"));
            return Step::Continue;
        };
        let (verb, args) = command::split_verb(line);
        match verb {
            Verb::Ehlo => self.cmd_helo(args, true),
            Verb::Helo => self.cmd_helo(args, false),
            Verb::Mail => self.cmd_mail(args),
            Verb::Rcpt => self.cmd_rcpt(args),
            Verb::Data => self.cmd_data(args),
            Verb::Bdat => self.cmd_bdat(args),
            Verb::Rset => self.cmd_rset(args),
            Verb::Noop => self.simple(Reply::new(250, (2, 0, 0), "Ok")),
            Verb::Quit => {
                self.reply_close(Reply::new(221, (2, 0, 0), format!("{} Bye", self.host())));
                Step::Continue
            }
            Verb::Vrfy => self.simple(if args.is_empty() {
                Reply::new(501, (5, 5, 4), "Syntax: VRFY address")
            } else {
                Reply::new(
                    252,
                    (2, 5, 0),
                    "Cannot VRFY user, but will accept message and attempt delivery",
                )
            }),
            Verb::Expn => self.simple(Reply::new(502, (5, 5, 1), "EXPN not available")),
            Verb::Help => self.simple(Reply::new(
                214,
                (2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            )),
            Verb::StartTls => self.cmd_starttls(args),
            Verb::Auth => self.cmd_auth(args),
            Verb::Http => {
                let r = Reply::new(
                    521,
                    (5, 5, 1),
                    format!("{} Error: this is an SMTP server, not HTTP", self.host()),
                );
                self.reply_close(r);
                Step::Continue
            }
            Verb::Unknown => self.simple(Reply::new(500, (5, 5, 1), "Command unrecognized")),
        }
    }

    /// Bytes currently buffered (tests: bounded-memory checks).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(super) fn buffered(&self) -> usize {
        self.inbuf.held()
            + match &self.input {
                Input::Data(rx) => rx.stored(),
                _ => 0,
            }
            + self.txn.as_ref().map_or(0, |t| t.chunks.stored())
    }
}
