//! The transaction state machine: local checks (REQUIRETLS, SMTPUTF8, SIZE,
//! 8BITMIME), MAIL/RCPT/DATA with PIPELINING or BDAT chunks, streaming the message
//! and building the outcome.

use std::fmt::Write as _;

use super::encode::Normalizer;
use super::{
    Active, ClientFailure, ClientSession, Decided, Expect, RecipientOutcome, RecipientStatus,
    Stage, Transaction, TransactionOutcome,
};
use crate::address::Address;
use crate::dsn;
use crate::reply::Reply;

impl ClientSession {
    /// An outcome for a transaction decided without the server: every recipient not
    /// already decided gets the failure's result.
    pub(super) fn local_outcome(
        &mut self,
        txn: Transaction,
        failure: ClientFailure,
        results: Option<Vec<Option<Decided>>>,
    ) {
        let scan = txn.facts();
        let n = txn.recipients.len();
        let results = results.unwrap_or_else(|| vec![None; n]);
        let a = Active::new(txn, scan, results, Vec::new());
        self.finish_txn(a, Some(failure), None);
    }

    /// Builds and queues the outcome. Recipients without a decided result get
    /// `accepted_result` if the server accepted them, else the failure's result.
    pub(super) fn finish_txn(
        &mut self,
        a: Box<Active>,
        failure: Option<ClientFailure>,
        accepted_result: Option<Decided>,
    ) {
        let from_failure = failure.as_ref().map(ClientFailure::recipient_result);
        let fallback = || {
            (
                RecipientStatus::Transient,
                Reply::new(451, (4, 5, 0), "No reply for this recipient"),
                false,
            )
        };
        let a = *a;
        let recipients = a
            .txn
            .recipients
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let decided = a.results[i].clone().or_else(|| {
                    if a.accepted[i] && !a.mail_failed {
                        accepted_result.clone().or_else(|| from_failure.clone())
                    } else {
                        from_failure.clone()
                    }
                });
                let (status, reply, remote) = decided.unwrap_or_else(fallback);
                RecipientOutcome {
                    address: r.address,
                    status,
                    reply,
                    remote,
                }
            })
            .collect();
        let reply = failure
            .as_ref()
            .and_then(ClientFailure::reply)
            .cloned()
            .or(a.last_reply);
        self.transactions = self.transactions.saturating_add(1);
        self.outcomes.push_back(TransactionOutcome {
            recipients,
            failure,
            reply,
            tls: self.tls,
            tls_verified: self.tls_verified,
            capabilities: self.caps.clone(),
            chunking: a.bdat && !matches!(a.stage, Stage::Envelope),
            size: a.scan.size,
        });
    }

    /// Local checks, then MAIL (+ RCPTs + DATA when pipelining).
    pub(super) fn begin(&mut self, txn: Transaction) {
        let caps = self.caps.clone().unwrap_or_default();
        let scan = txn.facts();
        let n = txn.recipients.len();

        if txn.requiretls && !(self.tls && self.tls_verified && caps.requiretls) {
            return self.local_outcome(txn, ClientFailure::RequireTlsUnavailable, None);
        }
        let sender_utf8 = txn.mail_from.as_ref().is_some_and(Address::is_utf8);
        let rcpt_utf8: Vec<bool> = txn.recipients.iter().map(|r| r.address.is_utf8()).collect();
        let needs_utf8 = txn.smtputf8 || sender_utf8 || rcpt_utf8.contains(&true);
        if needs_utf8 && !caps.smtputf8 && (txn.smtputf8 || sender_utf8) {
            return self.local_outcome(txn, ClientFailure::Smtputf8Unsupported, None);
        }
        if let Some(limit) = caps.size
            && limit > 0
            && scan.size > limit
        {
            let failure = ClientFailure::MessageTooBig {
                size: scan.size,
                limit,
            };
            return self.local_outcome(txn, failure, None);
        }
        if scan.eight_bit && !caps.eightbitmime {
            return self.local_outcome(txn, ClientFailure::Needs7BitDowngrade, None);
        }
        let mut results: Vec<Option<Decided>> = vec![None; n];
        let smtputf8 = needs_utf8 && caps.smtputf8;
        if needs_utf8 && !caps.smtputf8 {
            let refused = ClientFailure::Smtputf8Unsupported.recipient_result();
            for (i, utf8) in rcpt_utf8.iter().enumerate() {
                if *utf8 {
                    results[i] = Some(refused.clone());
                }
            }
        }
        let to_send: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
        if to_send.is_empty() {
            // No recipients, or none left after the SMTPUTF8 refusals.
            let a = Active::new(txn, scan, results, to_send);
            let failure = (n > 0).then_some(ClientFailure::Smtputf8Unsupported);
            return self.finish_txn(a, failure, None);
        }

        let mut mail = format!(
            "MAIL FROM:<{}>",
            txn.mail_from
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        if caps.size.is_some() {
            let _ = write!(mail, " SIZE={}", scan.size);
        }
        if scan.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if txn.requiretls {
            mail.push_str(" REQUIRETLS");
        }
        if caps.dsn {
            if let Some(ret) = txn.ret {
                mail.push_str(" RET=");
                mail.push_str(ret.as_str());
            }
            if let Some(envid) = &txn.envid {
                mail.push_str(" ENVID=");
                dsn::encode_xtext(envid, &mut mail);
            }
        }
        let pipelining = self.config.pipelining && caps.pipelining;
        let bdat = self.config.chunking && caps.chunking;
        self.command(&mail, Expect::Mail);
        let mut a = Active::new(txn, scan, results, to_send);
        a.pipelining = pipelining;
        a.bdat = bdat;
        if pipelining {
            while a.next_rcpt < a.to_send.len() {
                self.send_rcpt(&mut a);
            }
            if !bdat {
                self.command("DATA", Expect::Data);
            }
        }
        self.txn = Some(a);
    }

    fn send_rcpt(&mut self, a: &mut Active) {
        let dsn = self.caps.as_ref().is_some_and(|c| c.dsn);
        let i = a.to_send[a.next_rcpt];
        a.next_rcpt += 1;
        let r = &a.txn.recipients[i];
        let mut line = format!("RCPT TO:<{}>", r.address);
        if dsn {
            if let Some(n) = r.notify {
                let _ = write!(line, " NOTIFY={n}");
            }
            if let Some(orcpt) = &r.orcpt {
                line.push_str(" ORCPT=");
                dsn::encode_orcpt(orcpt, &mut line);
            }
        }
        self.command(&line, Expect::Rcpt(i));
    }

    pub(super) fn on_txn_reply(&mut self, mut a: Box<Active>, expect: Expect, reply: Reply) {
        let class = reply.code / 100;
        match expect {
            Expect::Mail => match class {
                2 if reply.code == 250 => {
                    self.dirty = true;
                    if !a.pipelining {
                        self.send_rcpt(&mut a);
                    }
                }
                4 | 5 => {
                    a.mail_failed = true;
                    let decided = (RecipientStatus::of(&reply), reply, true);
                    for &i in &a.to_send {
                        a.results[i] = Some(decided.clone());
                    }
                    if !a.pipelining {
                        return self.finish_txn(a, None, None);
                    }
                }
                _ => {
                    self.txn = Some(a);
                    return self.unexpected(expect, &reply);
                }
            },
            Expect::Rcpt(i) => {
                if !a.mail_failed {
                    match class {
                        2 if matches!(reply.code, 250 | 251) => a.accepted[i] = true,
                        4 | 5 => {
                            a.results[i] = Some((RecipientStatus::of(&reply), reply.clone(), true));
                        }
                        _ => {
                            self.txn = Some(a);
                            return self.unexpected(expect, &reply);
                        }
                    }
                }
                if !a.pipelining && a.next_rcpt < a.to_send.len() {
                    self.send_rcpt(&mut a);
                } else if !a.pipelining || (a.bdat && self.expects.is_empty()) {
                    return self.after_envelope(a);
                }
            }
            Expect::Data => match class {
                3 if reply.code == 354 => {
                    if a.any_accepted() {
                        a.stage = Stage::Body(Normalizer::new(true));
                    } else {
                        // RFC 2920 §3.1: DATA accepted without recipients: empty message.
                        self.output.extend_from_slice(b".\r\n");
                        self.expects.push_back(Expect::DataAbort);
                    }
                }
                4 | 5 => {
                    let decided = (RecipientStatus::of(&reply), reply, true);
                    return self.finish_txn(a, None, Some(decided));
                }
                _ => {
                    self.txn = Some(a);
                    return self.unexpected(expect, &reply);
                }
            },
            Expect::DataEnd => match class {
                2 | 4 | 5 => {
                    self.dirty = false;
                    let decided = (RecipientStatus::of(&reply), reply, true);
                    return self.finish_txn(a, None, Some(decided));
                }
                _ => {
                    self.txn = Some(a);
                    return self.unexpected(expect, &reply);
                }
            },
            Expect::DataAbort => {
                self.dirty = false;
                return self.finish_txn(a, None, None);
            }
            Expect::Bdat { last } => {
                if a.bdat_error.is_none() {
                    match class {
                        2 => {
                            if last {
                                self.dirty = false;
                                let decided = (RecipientStatus::Delivered, reply, true);
                                return self.finish_txn(a, None, Some(decided));
                            }
                        }
                        4 | 5 => {
                            // RFC 3030 §2: no further chunks; chunks already in the
                            // pipeline are answered (and ignored) before we finish.
                            a.bdat_error = Some(reply);
                            a.stage = Stage::Final;
                        }
                        _ => {
                            self.txn = Some(a);
                            return self.unexpected(expect, &reply);
                        }
                    }
                }
                if let Some(err) = &a.bdat_error
                    && !self
                        .expects
                        .iter()
                        .any(|e| matches!(e, Expect::Bdat { .. }))
                {
                    self.dirty = true;
                    let decided = (RecipientStatus::of(err), err.clone(), true);
                    return self.finish_txn(a, None, Some(decided));
                }
            }
            _ => {}
        }
        self.txn = Some(a);
    }

    /// All envelope replies are in (without a pipelined DATA): data or finish.
    fn after_envelope(&mut self, mut a: Box<Active>) {
        if !a.any_accepted() {
            return self.finish_txn(a, None, None);
        }
        if a.bdat {
            a.stage = Stage::Body(Normalizer::new(false));
        } else {
            self.command("DATA", Expect::Data);
        }
        self.txn = Some(a);
    }

    /// Message data can be produced now.
    pub(super) fn can_stream(&self) -> bool {
        match &self.txn {
            Some(a) if matches!(a.stage, Stage::Body(_)) => {
                !a.bdat || a.pipelining || self.expects.is_empty()
            }
            _ => false,
        }
    }

    /// Where the streamed message's next piece starts, while the session waits for it.
    pub(super) fn awaiting_message(&self) -> Option<u64> {
        let p = self.txn.as_ref()?.pieces.as_ref()?;
        p.waiting.then(|| p.given())
    }

    /// Produces the next piece of message data into the output.
    pub(super) fn stream(&mut self) {
        let chunk_size = self.config.chunk_size;
        let Some(a) = self.txn.as_mut() else {
            return;
        };
        let a = &mut **a;
        let Stage::Body(norm) = &mut a.stage else {
            return;
        };
        self.sending_data = true;
        // A streamed message: wait for enough of it for a chunk, then encode what is held.
        let (msg, more) = match &mut a.pieces {
            Some(p) if !p.ready(chunk_size) => {
                p.waiting = true;
                return;
            }
            Some(p) => p.view(),
            None => (&a.txn.message[..], false),
        };
        if a.bdat {
            let mut chunk = Vec::new();
            norm.fill_part(msg, &mut chunk, chunk_size, more);
            if let Some(p) = &mut a.pieces {
                p.consumed(norm.rebase());
            }
            let last = norm.is_done();
            let header = format!(
                "BDAT {}{}\r\n",
                chunk.len(),
                if last { " LAST" } else { "" }
            );
            self.output.extend_from_slice(header.as_bytes());
            self.output.extend_from_slice(&chunk);
            self.expects.push_back(Expect::Bdat { last });
            if last {
                a.stage = Stage::Final;
            }
        } else {
            norm.fill_part(msg, &mut self.output, chunk_size, more);
            if let Some(p) = &mut a.pieces {
                p.consumed(norm.rebase());
            }
            if norm.is_done() {
                a.stage = Stage::Final;
                self.expects.push_back(Expect::DataEnd);
            }
        }
    }
}
