//! The TRANSACTION state (RFC 1939 §5): STAT, LIST, RETR, DELE, RSET, and TOP and
//! UIDL (§7). The maildrop itself is in [`super::maildrop`].

use super::command::{self, Number};
use super::{Action, Maildrop, MessageInfo, Phase, Session, Step};

/// What LIST and UIDL show per message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    Sizes,
    UniqueIds,
}

impl Listing {
    fn syntax(self) -> &'static str {
        match self {
            Listing::Sizes => "Syntax: LIST [msg]",
            Listing::UniqueIds => "Syntax: UIDL [msg]",
        }
    }

    fn field(self, m: &MessageInfo) -> String {
        match self {
            Listing::Sizes => m.size.to_string(),
            Listing::UniqueIds => m.uid.clone(),
        }
    }
}

impl Session {
    /// The open maildrop (TRANSACTION commands are only dispatched with one).
    fn maildrop(&mut self) -> Option<&mut Maildrop> {
        match &mut self.phase {
            Phase::Transaction(md) => Some(md),
            _ => None,
        }
    }

    /// STAT (RFC 1939 §5).
    pub(super) fn cmd_stat(&mut self) -> Step {
        let Some(md) = self.maildrop() else {
            return Step::Continue;
        };
        let text = format!("{} {}", md.visible, md.visible_size);
        self.ok(&text);
        Step::Continue
    }

    /// Resolves the single message-number argument of LIST/UIDL/RETR/DELE.
    fn one_message(&mut self, args: &str, syntax: &str) -> Option<usize> {
        let parts = command::arguments(args);
        let [arg] = parts.as_slice() else {
            self.client_err(None, syntax);
            return None;
        };
        let md = self.maildrop()?;
        match md.lookup(arg) {
            Ok(index) => Some(index),
            Err(text) => {
                self.client_err(None, &text);
                None
            }
        }
    }

    /// LIST [msg] (RFC 1939 §5).
    pub(super) fn cmd_list(&mut self, args: &str) -> Step {
        self.listing(args, Listing::Sizes)
    }

    /// UIDL [msg] (RFC 1939 §7).
    pub(super) fn cmd_uidl(&mut self, args: &str) -> Step {
        self.listing(args, Listing::UniqueIds)
    }

    /// LIST and UIDL: one line for `msg`, or a multi-line listing of every message
    /// not deleted.
    fn listing(&mut self, args: &str, kind: Listing) -> Step {
        if !command::arguments(args).is_empty() {
            let Some(index) = self.one_message(args, kind.syntax()) else {
                return Step::Continue;
            };
            let Some(md) = self.maildrop() else {
                return Step::Continue;
            };
            let text = format!("{} {}", index + 1, kind.field(&md.messages[index]));
            self.ok(&text);
            return Step::Continue;
        }
        let Phase::Transaction(md) = &self.phase else {
            return Step::Continue;
        };
        let header = match kind {
            Listing::Sizes => format!("{} messages ({} octets)", md.visible, md.visible_size),
            Listing::UniqueIds => "unique-id listing follows".to_string(),
        };
        let mut body = Vec::with_capacity(md.visible * 16);
        for (i, m) in md.messages.iter().enumerate() {
            if !md.deleted[i] {
                body.extend_from_slice(format!("{} {}\r\n", i + 1, kind.field(m)).as_bytes());
            }
        }
        body.extend_from_slice(b".\r\n");
        self.ok(&header);
        self.output.extend_from_slice(&body);
        Step::Continue
    }

    /// RETR msg (RFC 1939 §5).
    pub(super) fn cmd_retr(&mut self, args: &str) -> Step {
        match self.one_message(args, "Syntax: RETR msg") {
            Some(index) => Step::Action(Action::Retrieve {
                index,
                top_lines: None,
            }),
            None => Step::Continue,
        }
    }

    /// TOP msg n (RFC 1939 §7).
    pub(super) fn cmd_top(&mut self, args: &str) -> Step {
        let parts = command::arguments(args);
        let [msg, lines] = parts.as_slice() else {
            return self.err("Syntax: TOP msg n");
        };
        let top_lines = match command::number(lines) {
            Number::Invalid => return self.err("Invalid line count"),
            Number::Huge => usize::MAX,
            Number::Value(v) => usize::try_from(v).unwrap_or(usize::MAX),
        };
        let Some(md) = self.maildrop() else {
            return Step::Continue;
        };
        match md.lookup(msg) {
            Ok(index) => Step::Action(Action::Retrieve {
                index,
                top_lines: Some(top_lines),
            }),
            Err(text) => self.err(&text),
        }
    }

    /// DELE msg (RFC 1939 §5): marks the message; only QUIT removes it.
    pub(super) fn cmd_dele(&mut self, args: &str) -> Step {
        let Some(index) = self.one_message(args, "Syntax: DELE msg") else {
            return Step::Continue;
        };
        if let Some(md) = self.maildrop() {
            md.delete(index);
        }
        self.ok(&format!("message {} deleted", index + 1));
        Step::Continue
    }

    /// RSET (RFC 1939 §5): unmarks every deleted message.
    pub(super) fn cmd_rset(&mut self) -> Step {
        let Some(md) = self.maildrop() else {
            return Step::Continue;
        };
        md.undelete_all();
        let text = format!(
            "maildrop has {} messages ({} octets)",
            md.visible, md.visible_size
        );
        self.ok(&text);
        Step::Continue
    }
}
