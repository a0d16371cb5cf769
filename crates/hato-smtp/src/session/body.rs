//! The message contents: DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030), the
//! [`Envelope`] handed to the driver, and the driver's answer to it.

use super::command::{self, BdatError};
use super::data::{self, DataReceiver, DataRejection};
use super::{Action, Envelope, Input, Session, Step};
use crate::reply::Reply;

impl Session {
    /// DATA (RFC 5321 §4.1.1.4).
    pub(super) fn cmd_data(&mut self, args: &str) -> Step {
        if let Some(r) = self.tls_required() {
            return self.simple(r);
        }
        let Some(txn) = &self.txn else {
            return self.simple(Reply::new(503, (5, 5, 1), "Need MAIL command"));
        };
        if txn.chunking {
            return self.simple(Reply::new(503, (5, 5, 1), "DATA not allowed after BDAT"));
        }
        if !args.is_empty() {
            return self.simple(Reply::new(501, (5, 5, 4), "Syntax: DATA"));
        }
        if txn.recipients.is_empty() {
            return self.simple(Reply::new(554, (5, 5, 1), "No valid recipients"));
        }
        self.output.extend_from_slice(
            &Reply::without_status(354, "End data with <CR><LF>.<CR><LF>").to_bytes(),
        );
        self.input = Input::Data(Box::new(DataReceiver::new(
            self.config.bare_line_endings,
            self.config.max_message_size,
            self.config.max_text_line.max(3),
        )));
        Step::Continue
    }

    pub(super) fn step_data(&mut self) -> Step {
        let Input::Data(rx) = &mut self.input else {
            return Step::Continue;
        };
        let avail = self.inbuf.pending();
        if avail.is_empty() {
            return Step::NeedInput;
        }
        let (used, done) = rx.push(avail);
        self.inbuf.consume(used);
        if !done {
            return Step::NeedInput;
        }
        let Input::Data(rx) = std::mem::replace(&mut self.input, Input::Command) else {
            return Step::Continue;
        };
        match rx.finish() {
            Ok(body) => self.deliver(body),
            Err(why) => {
                self.txn = None;
                self.stats.messages_rejected += 1;
                let r = match why {
                    DataRejection::TooBig => Reply::new(
                        552,
                        (5, 3, 4),
                        "Message size exceeds fixed maximum message size",
                    ),
                    DataRejection::BareLineEnding => bare_line_reply(),
                    DataRejection::LineTooLong => Reply::new(
                        500,
                        (5, 5, 2),
                        format!(
                            "Line too long (max {} octets including <CR><LF>)",
                            self.config.max_text_line
                        ),
                    ),
                    DataRejection::NoRoom => no_room_reply(),
                };
                self.reply(r);
                Step::Continue
            }
        }
    }

    /// BDAT (RFC 3030 §2-§4): the chunk is always consumed, even on error.
    pub(super) fn cmd_bdat(&mut self, args: &str) -> Step {
        let (size, last) = match command::parse_bdat(args) {
            Ok(v) => v,
            Err(BdatError::BadSyntax(n)) => {
                return self.skip_chunk(n, Reply::new(501, (5, 5, 4), "Syntax: BDAT size [LAST]"));
            }
            Err(BdatError::BadSize) => {
                let r = Reply::new(
                    521,
                    (5, 5, 4),
                    format!("{} Error: invalid BDAT chunk size", self.host()),
                );
                self.reply_close(r);
                return Step::Continue;
            }
        };
        if let Some(r) = self.tls_required() {
            return self.skip_chunk(size, r);
        }
        let max = self.config.max_message_size as u64;
        let Some(txn) = &mut self.txn else {
            return self.skip_chunk(size, Reply::new(503, (5, 5, 1), "Need MAIL command"));
        };
        if txn.recipients.is_empty() {
            return self.skip_chunk(size, Reply::new(554, (5, 5, 1), "No valid recipients"));
        }
        if (txn.body.len() as u64).saturating_add(size) > max {
            self.txn = None;
            self.stats.messages_rejected += 1;
            return self.skip_chunk(
                size,
                Reply::new(
                    552,
                    (5, 3, 4),
                    "Message size exceeds fixed maximum message size",
                ),
            );
        }
        txn.chunking = true;
        self.input = Input::Bdat {
            size,
            remaining: size,
            last,
        };
        Step::Continue
    }

    fn skip_chunk(&mut self, remaining: u64, reply: Reply) -> Step {
        self.input = Input::BdatSkip { remaining, reply };
        Step::Continue
    }

    pub(super) fn step_bdat(&mut self) -> Step {
        let Input::Bdat {
            size,
            remaining,
            last,
        } = self.input
        else {
            return Step::Continue;
        };
        let mut remaining = remaining;
        if remaining > 0 {
            let avail = self.inbuf.pending();
            if avail.is_empty() {
                return Step::NeedInput;
            }
            let n = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(avail.len());
            if let Some(txn) = &mut self.txn
                && !txn.no_room
            {
                txn.body.extend_from_slice(&avail[..n]);
            }
            self.inbuf.consume(n);
            remaining -= n as u64;
        }
        if remaining > 0 {
            self.input = Input::Bdat {
                size,
                remaining,
                last,
            };
            return Step::NeedInput;
        }
        self.input = Input::Command;
        if self.txn.as_ref().is_some_and(|t| t.no_room) {
            self.txn = None;
            self.stats.messages_rejected += 1;
            self.reply(no_room_reply());
            return Step::Continue;
        }
        if last {
            let body = self
                .txn
                .as_mut()
                .map(|t| std::mem::take(&mut t.body))
                .unwrap_or_default();
            // BINARYMIME is not offered, so a chunked message is text like a DATA one: the same
            // line-ending policy applies, and it is stored in canonical CRLF form (so sizes
            // reported later by POP3/IMAP equal the stored length).
            match data::canonical_lines(body, self.config.bare_line_endings) {
                Ok(body) => self.deliver(body),
                Err(DataRejection::BareLineEnding) | Err(_) => {
                    self.txn = None;
                    self.stats.messages_rejected += 1;
                    self.reply(bare_line_reply());
                    Step::Continue
                }
            }
        } else {
            self.reply(Reply::new(
                250,
                (2, 0, 0),
                format!("{size} octets received"),
            ));
            Step::Continue
        }
    }

    pub(super) fn step_bdat_skip(&mut self) -> Step {
        let Input::BdatSkip { remaining, .. } = &mut self.input else {
            return Step::Continue;
        };
        if *remaining > 0 {
            let avail = self.inbuf.pending().len();
            if avail == 0 {
                return Step::NeedInput;
            }
            let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(avail);
            self.inbuf.consume(n);
            *remaining -= n as u64;
            if *remaining > 0 {
                return Step::NeedInput;
            }
        }
        let Input::BdatSkip { reply, .. } = std::mem::replace(&mut self.input, Input::Command)
        else {
            return Step::Continue;
        };
        self.reply(reply);
        Step::Continue
    }

    /// Builds the envelope from the transaction (which ends here).
    fn deliver(&mut self, body: Vec<u8>) -> Step {
        let Some(txn) = self.txn.take() else {
            // Cannot happen (DATA/BDAT require a transaction); refuse safely.
            self.reply(Reply::new(503, (5, 5, 1), "No mail transaction"));
            return Step::Continue;
        };
        let env = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            sender: txn.sender,
            recipients: txn.recipients,
            rcpt_dsn: txn.rcpt_dsn,
            ret: txn.params.ret,
            envid: txn.params.envid,
            requiretls: txn.params.requiretls,
            body,
            body_8bitmime: txn.params.body_8bitmime,
            smtputf8: txn.params.smtputf8,
            auth_user: self.auth_user.clone(),
            tls: self.tls.clone(),
            peer: self.peer.clone(),
            esmtp: self.esmtp,
        };
        Step::Action(Action::Deliver(Box::new(env)))
    }

    /// Answer to [`Action::Deliver`]: `Ok(id)` -> `250 2.0.0 Ok: queued as <id>`,
    /// `Err(reply)` -> reply. The transaction is over either way (HELO and AUTH state
    /// are kept).
    pub fn delivery_result(&mut self, r: Result<String, Reply>) {
        if self
            .pending
            .take_if(|p| matches!(p, Action::Deliver(_)))
            .is_none()
        {
            return;
        }
        self.txn = None;
        match r {
            Ok(id) => {
                self.stats.messages_accepted += 1;
                self.reply(Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}")));
            }
            Err(reply) => {
                self.stats.messages_rejected += 1;
                self.reply(reply);
            }
        }
    }
}

/// RFC 5321 2.3.8: the refusal of a message with bare CR or LF (SMTP smuggling defence).
fn bare_line_reply() -> Reply {
    Reply::new(
        554,
        (5, 5, 0),
        "Message contains bare <CR> or <LF> line endings, lines must end with <CR><LF>",
    )
}

/// The server's memory budget for messages in transit is used up (RFC 3463 4.3.1: mail system
/// full): the client tries again later.
fn no_room_reply() -> Reply {
    Reply::new(
        452,
        (4, 3, 1),
        "Insufficient system storage for this message now, try again later",
    )
}

#[cfg(test)]
mod no_room_tests {
    use std::sync::Arc;

    use super::super::{Action, Config, Peer, Session};

    /// Feeds `input` and answers every decision with yes; returns the output and whether a
    /// message was handed over for delivery.
    fn exchange(s: &mut Session, input: &[u8]) -> (String, bool) {
        s.feed(input);
        let mut delivered = false;
        loop {
            match s.poll() {
                Action::NeedInput | Action::Close | Action::StartTls => break,
                Action::CheckSender { .. } => s.sender_result(Ok(())),
                Action::CheckRecipient { .. } => s.recipient_result(Ok(())),
                Action::Deliver(_) => {
                    delivered = true;
                    s.delivery_result(Ok("ID".into()));
                }
                other => panic!("{other:?}"),
            }
        }
        (String::from_utf8(s.output()).unwrap(), delivered)
    }

    fn in_transaction() -> Session {
        let config = Config {
            hostname: "mx.example".into(),
            ..Config::default()
        };
        let peer = Peer {
            ip: "192.0.2.1".parse().unwrap(),
            port: 40000,
            reverse_name: None,
        };
        let mut s = Session::new(Arc::new(config), peer, None);
        s.greet();
        let (out, _) = exchange(
            &mut s,
            b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@mx.example>\r\n",
        );
        assert!(
            out.ends_with("250 2.1.5 OK\r\n") || out.contains("\r\n250 2.1.5"),
            "{out}"
        );
        s
    }

    /// Refused for want of room mid-DATA: what was held is dropped at once, the rest of the
    /// data is read to its end, and the answer is 452 4.3.1; the session goes on.
    #[test]
    fn data_without_room_is_452_at_its_end() {
        let mut s = in_transaction();
        let (out, _) = exchange(&mut s, b"DATA\r\nSubject: x\r\n\r\nfirst part\r\n");
        assert!(s.data_held() > 0, "{out}");
        s.refuse_data();
        assert_eq!(s.data_held(), 0);
        let (out, delivered) = exchange(&mut s, b"second part\r\n.\r\nNOOP\r\n");
        assert!(!delivered);
        assert!(out.starts_with("452 4.3.1 "), "{out}");
        assert!(
            out.ends_with("250 2.0.0 OK\r\n") || out.contains("\r\n250 "),
            "{out}"
        );
        assert_eq!(s.data_held(), 0);
    }

    /// The same for BDAT: the chunk is consumed, the transaction ends with 452 4.3.1.
    #[test]
    fn bdat_without_room_is_452_at_the_chunk_end() {
        let mut s = in_transaction();
        exchange(&mut s, b"BDAT 10\r\n01234");
        assert_eq!(s.data_held(), 5);
        s.refuse_data();
        assert_eq!(s.data_held(), 0);
        let (out, delivered) = exchange(&mut s, b"56789");
        assert!(!delivered);
        assert!(out.starts_with("452 4.3.1 "), "{out}");
        let (out, _) = exchange(&mut s, b"BDAT 1 LAST\r\nx");
        assert!(
            out.starts_with("503 5.5.1 "),
            "the transaction is over: {out}"
        );
    }
}
