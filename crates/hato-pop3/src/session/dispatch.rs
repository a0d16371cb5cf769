//! Command dispatch by state (RFC 1939 §3), and the commands valid in every state:
//! CAPA (RFC 2449 §5), NOOP and QUIT (RFC 1939 §4, §6).

use super::command::{self, Verb};
use super::{Action, Phase, Session, Step};

impl Session {
    pub(super) fn execute(&mut self, line: &[u8]) -> Step {
        if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
            return self.err("Invalid character in command");
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return self.err("Invalid UTF-8 in command");
        };
        let (verb, args) = command::split_verb(line);
        let transaction = match self.phase {
            Phase::Authorization { .. } => false,
            Phase::Transaction(_) => true,
            // Nothing is read while the commit is pending; the session closes after it.
            Phase::Update { .. } => return Step::Continue,
        };
        match verb {
            Verb::Capa => self.cmd_capa(args),
            Verb::Noop => self.no_args(args, "NOOP", |s| {
                s.ok("");
                Step::Continue
            }),
            Verb::Quit => self.no_args(args, "QUIT", Session::cmd_quit),
            Verb::Http => {
                self.client_err(None, "This is a POP3 server");
                self.closing = true;
                Step::Continue
            }
            Verb::Unknown => self.err("Unknown command"),
            Verb::Apop => self.err("APOP not supported"),
            Verb::User | Verb::Pass | Verb::Auth | Verb::Stls if transaction => {
                self.err("Command not valid in TRANSACTION state")
            }
            Verb::User => self.cmd_user(args),
            Verb::Pass => self.cmd_pass(args),
            Verb::Auth => self.cmd_auth(args),
            Verb::Stls => self.cmd_stls(args),
            _ if !transaction => self.err("Command not valid in AUTHORIZATION state"),
            Verb::Stat => self.no_args(args, "STAT", Session::cmd_stat),
            Verb::List => self.cmd_list(args),
            Verb::Uidl => self.cmd_uidl(args),
            Verb::Retr => self.cmd_retr(args),
            Verb::Top => self.cmd_top(args),
            Verb::Dele => self.cmd_dele(args),
            Verb::Rset => self.no_args(args, "RSET", Session::cmd_rset),
        }
    }

    /// Runs `f` for a command that takes no arguments, else a syntax error.
    fn no_args(&mut self, args: &str, name: &str, f: fn(&mut Session) -> Step) -> Step {
        if command::arguments(args).is_empty() {
            f(self)
        } else {
            self.err(&format!("Syntax: {name}"))
        }
    }

    /// CAPA (RFC 2449 §5, §6; RFC 2595 §4; RFC 3206 §5): the same list in both
    /// states for the same TLS state; USER and SASL only under TLS, STLS only before.
    fn cmd_capa(&mut self, args: &str) -> Step {
        if !command::arguments(args).is_empty() {
            return self.err("Syntax: CAPA");
        }
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if self.tls.is_some() {
            caps.extend(["USER", "SASL PLAIN"]);
        } else if self.config.stls {
            caps.push("STLS");
        }
        caps.push("IMPLEMENTATION hato");
        self.ok("Capability list follows");
        for c in caps {
            self.output.extend_from_slice(c.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
        self.output.extend_from_slice(b".\r\n");
        Step::Continue
    }

    /// QUIT (RFC 1939 §4 in AUTHORIZATION, §6 in TRANSACTION → UPDATE).
    fn cmd_quit(&mut self) -> Step {
        let Phase::Transaction(md) = &self.phase else {
            let text = format!("{} POP3 server signing off", self.config.hostname);
            self.ok(&text);
            self.closing = true;
            return Step::Continue;
        };
        let deleted = md.deleted_indices();
        let left = md.visible;
        self.phase = Phase::Update { left };
        Step::Action(Action::Commit { deleted })
    }
}
