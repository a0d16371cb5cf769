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
            Ok((at, body)) => self.deliver(at, body),
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
        if txn.chunks.received().saturating_add(size) > max {
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
            if let Some(txn) = &mut self.txn {
                txn.chunks.push(&avail[..n]);
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
        if self.txn.as_ref().is_some_and(|t| t.chunks.is_no_room()) {
            self.txn = None;
            self.stats.messages_rejected += 1;
            self.reply(no_room_reply());
            return Step::Continue;
        }
        if last {
            let chunks = self.txn.as_mut().map(|t| {
                std::mem::replace(
                    &mut t.chunks,
                    data::Chunks::new(self.config.bare_line_endings),
                )
            });
            match chunks.map_or(Ok((0, Vec::new())), |c| c.finish()) {
                Ok((at, body)) => self.deliver(at, body),
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
    fn deliver(&mut self, body_offset: u64, body: Vec<u8>) -> Step {
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
            body_offset,
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
mod data_tests {
    use std::sync::Arc;

    use super::super::{Action, Config, Envelope, Peer, Session};

    /// Feeds `input` and answers every decision with yes; returns the output and the message
    /// handed over for delivery, if one was.
    fn exchange(s: &mut Session, input: &[u8]) -> (String, Option<Box<Envelope>>) {
        s.feed(input);
        let mut delivered = None;
        loop {
            match s.poll() {
                Action::NeedInput | Action::Close | Action::StartTls => break,
                Action::CheckSender { .. } => s.sender_result(Ok(())),
                Action::CheckRecipient { .. } => s.recipient_result(Ok(())),
                Action::Deliver(env) => {
                    delivered = Some(env);
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
        assert!(delivered.is_none());
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
        assert!(delivered.is_none());
        assert!(out.starts_with("452 4.3.1 "), "{out}");
        let (out, _) = exchange(&mut s, b"BDAT 1 LAST\r\nx");
        assert!(
            out.starts_with("503 5.5.1 "),
            "the transaction is over: {out}"
        );
    }

    /// The driver takes what is held while DATA arrives (to spool it): the envelope's body is
    /// the rest, at its offset, and the pieces make the message.
    #[test]
    fn data_taken_while_it_arrives() {
        let mut s = in_transaction();
        exchange(&mut s, b"DATA\r\nSubject: x\r\n\r\n..first\r\n");
        assert_eq!(s.take_data(1000), None, "less than asked for");
        let (at, first) = s.take_data(1).unwrap();
        assert_eq!(at, 0);
        assert_eq!(first, b"Subject: x\r\n\r\n.first\r\n");
        assert_eq!((s.data_held(), s.take_data(1)), (0, None));
        exchange(&mut s, b"sec");
        let (at, second) = s.take_data(1).unwrap();
        assert_eq!((at, &second[..]), (first.len() as u64, &b"sec"[..]));
        let (out, env) = exchange(&mut s, b"ond\r\n.\r\n");
        let env = env.unwrap_or_else(|| panic!("no delivery: {out}"));
        assert_eq!(env.body_offset, (first.len() + second.len()) as u64);
        assert_eq!(env.body, b"ond\r\n");

        // The next message starts again at offset 0.
        exchange(
            &mut s,
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@mx.example>\r\nDATA\r\nx\r\n",
        );
        assert_eq!(s.take_data(1).unwrap().0, 0);
    }

    /// BDAT chunks are taken in canonical form, a CR at the cut meeting its LF after it.
    #[test]
    fn bdat_taken_while_it_arrives() {
        let mut s = in_transaction();
        exchange(&mut s, b"BDAT 6\r\nab\r");
        let (at, first) = s.take_data(1).unwrap();
        assert_eq!((at, &first[..]), (0, &b"ab"[..]));
        let (out, env) = exchange(&mut s, b"\ncd");
        assert!(
            env.is_none() && out.starts_with("250 2.0.0 6 octets"),
            "{out}"
        );
        let (out, env) = exchange(&mut s, b"BDAT 1 LAST\r\nx");
        let env = env.unwrap_or_else(|| panic!("no delivery: {out}"));
        assert_eq!(env.body_offset, 2);
        assert_eq!(env.body, b"\r\ncdx\r\n");
    }

    /// A message refused after part of it was taken is not delivered: the driver drops its
    /// spool when the next message starts at offset 0 or the connection ends.
    #[test]
    fn refused_after_taking_is_not_delivered() {
        let mut s = in_transaction();
        exchange(&mut s, b"DATA\r\nSubject: x\r\n\r\nfirst\r\n");
        assert!(s.take_data(1).is_some());
        let (out, env) = exchange(&mut s, b"bare\nline\r\n.\r\n");
        assert!(env.is_none());
        assert!(out.starts_with("554 5.5.0 "), "{out}");
    }
}
