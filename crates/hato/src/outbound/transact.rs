//! Transacting: one message's recipients at a domain, tried host by host and address by
//! address over one SMTP transaction each (hato-smtp's client session, sans-IO).

use bytes::Bytes;
use hato_smtp::client::{FactsScanner, Streamed};
use hato_store::BlobId;

use super::*;

/// What one attempt at one address came to.
pub(super) struct Attempt {
    /// None: no SMTP transaction took place (connect or TLS failed, or the session could not
    /// take the message).
    pub(super) outcome: Option<TransactionOutcome>,
    pub(super) facts: TlsFacts,
    /// Why the connection ended, if it did.
    pub(super) error: Option<SessionError>,
    /// The connection, still open and reusable for the next message.
    pub(super) conn: Option<Connection>,
}

/// What one transaction on an open connection came to (see [`Scheduler::transact`]).
pub(super) struct Exchange {
    /// None: the session could not take the transaction.
    pub(super) outcome: Option<TransactionOutcome>,
    /// Why the connection ended, if it did.
    pub(super) ended: Option<SessionError>,
}

/// Why a connection gave no (complete) transaction. `Display` is the reply line recorded for
/// the recipients (queue, logs, DSN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SessionError {
    /// No connection could be opened.
    Unopened(ConnectError),
    /// The session was not ready for another transaction.
    NotReady,
    /// The session ended with a failure, and the TLS error behind it if there was one.
    Ended {
        addr: SocketAddr,
        failure: ClientFailure,
        tls_error: Option<String>,
    },
}

impl SessionError {
    /// The server does not offer STARTTLS while TLS is required (TLS-RPT counts these).
    pub(super) fn starttls_not_offered(&self) -> bool {
        matches!(
            self,
            SessionError::Ended {
                failure: ClientFailure::TlsRequiredButUnavailable,
                ..
            }
        )
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Unopened(e) => e.fmt(f),
            SessionError::NotReady => f.write_str("451 4.3.0 connection not ready"),
            SessionError::Ended {
                addr,
                failure,
                tls_error: None,
            } => write!(f, "451 4.4.2 {addr}: {failure}"),
            SessionError::Ended {
                addr,
                failure,
                tls_error: Some(e),
            } => write!(f, "451 4.4.2 {addr}: {failure} ({e})"),
        }
    }
}

/// Queued messages larger than this are read from the store in pieces as they are sent.
const STREAM_AT: u64 = 1024 * 1024;
/// How much of a streamed message is read at a time (and how much of its start is kept).
const PIECE: usize = 256 * 1024;

/// A queued message as delivery holds it: whole, or (a large 7-bit one) its start, with the
/// rest read from the store as it is sent, so it is never whole in memory.
pub(super) struct Queued {
    /// The message, or its first [`PIECE`] octets (its header section, as a rule).
    pub(super) data: Bytes,
    /// Sent in pieces from this blob: its length and facts.
    pub(super) streamed: Option<(BlobId, Streamed)>,
}

/// What one message's delivery attempts must respect.
pub(super) struct AttemptCtx<'a> {
    pub(super) domain: &'a str,
    pub(super) kind: HopKind,
    pub(super) sts: Option<&'a StsPolicy>,
    pub(super) requiretls: bool,
    /// `TLS-Required: No` (RFC 8689 5): MTA-STS does not stop the message.
    pub(super) tls_optional: bool,
    /// The blob a streamed message is read from.
    pub(super) blob: Option<BlobId>,
}

/// The message's header has `TLS-Required: No` (RFC 8689 5).
pub(super) fn tls_required_no(message: &[u8]) -> bool {
    hato_smtp::message::header_value(message, "TLS-Required")
        .is_some_and(|v| v.eq_ignore_ascii_case("no"))
}

/// The SMTP transaction for the entries of one message.
pub(super) fn transaction(entries: &[QueueEntry], message: &Queued) -> Transaction {
    let first = &entries[0];
    let mail_from = if first.sender.is_empty() {
        None
    } else {
        Address::parse(&first.sender).ok()
    };
    let recipients = entries
        .iter()
        .filter_map(|e| {
            let address = Address::parse(&e.recipient).ok()?;
            let mut r = Recipient::new(address);
            r.notify = e.dsn.notify.as_deref().map(|n| {
                let has = |w: &str| n.split(',').any(|x| x.trim().eq_ignore_ascii_case(w));
                if has("NEVER") {
                    DsnNotify::NEVER
                } else {
                    DsnNotify {
                        success: has("SUCCESS"),
                        failure: has("FAILURE"),
                        delay: has("DELAY"),
                    }
                }
            });
            r.orcpt = e
                .dsn
                .orcpt
                .as_deref()
                .map(|o| o.split_once(';').map(|x| x.1).unwrap_or(o).to_owned());
            Some(r)
        })
        .collect();
    // The message is shared, not copied, by every attempt's transaction.
    let mut t = Transaction::new(mail_from, std::iter::empty(), message.data.clone());
    t.streamed = message.streamed.map(|s| s.1);
    t.recipients = recipients;
    t.requiretls = first.requiretls;
    t.envid = first.dsn.envid.clone();
    t.ret = first.dsn.ret.as_deref().map(|r| {
        if r.eq_ignore_ascii_case("FULL") {
            DsnRet::Full
        } else {
            DsnRet::Headers
        }
    });
    t
}

/// A connection-level failure that another host may not have, with nothing delivered.
pub(super) fn try_elsewhere(o: &TransactionOutcome) -> bool {
    o.failure.as_ref().is_some_and(|f| f.try_next_host())
        && o.recipients
            .iter()
            .all(|r| r.status != RecipientStatus::Delivered)
}

impl Scheduler {
    pub(super) async fn deliver_message(
        &self,
        domain: &str,
        entries: Vec<QueueEntry>,
        plan: &Result<Plan, PlanError>,
        cached: &mut Option<Connection>,
    ) {
        let now = unix_now();
        let (queued, _held) = match self.load(entries[0].blob).await {
            Ok(Some(q)) => q,
            Ok(None) => {
                error!(queue_id = entries[0].id, "queued message data missing");
                return;
            }
            Err(e) => {
                error!(queue_id = entries[0].id, error = %e, "cannot read the queued message");
                return;
            }
        };
        let message = &queued.data;
        // Bounces requested by `hato queue bounce`, and mail that loops.
        let (requested, entries): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|e| e.bounce_requested);
        let mut failed: Vec<(QueueEntry, RecipientReport)> = requested
            .into_iter()
            .map(|e| {
                let why = e
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "550 5.0.0 bounced by the administrator".into());
                let r = report(&e, "5.0.0", None, Some(why), now, None);
                (e, r)
            })
            .collect();
        let (mut entries, bad): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|e| Address::parse(&e.recipient).is_ok());
        for e in bad {
            let why = format!("553 5.1.3 invalid recipient address {:?}", e.recipient);
            let r = report(&e, "5.1.3", None, Some(why), now, None);
            failed.push((e, r));
        }
        if hato_delivery::route::received_count(message) > hato_delivery::route::MAX_HOPS {
            for e in entries.drain(..) {
                let why = "554 5.4.6 too many Received headers: mail loop".to_string();
                let r = report(&e, "5.4.6", None, Some(why), now, None);
                failed.push((e, r));
            }
        }
        if !entries.is_empty() {
            match plan {
                Err(PlanError::Permanent(why)) => {
                    for e in entries.drain(..) {
                        let status = status_of(why);
                        let r = report(&e, &status, None, Some(why.clone()), now, None);
                        info!(queue_id = e.id, rcpt = %e.recipient, result = %why, "delivery failed");
                        failed.push((e, r));
                    }
                }
                Err(PlanError::Temporary(why)) => {
                    for e in entries.drain(..) {
                        info!(queue_id = e.id, rcpt = %e.recipient, result = %why, "delivery deferred");
                        if let Some(f) = self.defer(e, why.clone(), None, now).await {
                            failed.push(f);
                        }
                    }
                }
                Ok(plan) => {
                    let ctx = AttemptCtx {
                        domain,
                        kind: plan.kind,
                        sts: plan.sts.as_ref(),
                        requiretls: entries[0].requiretls,
                        // RFC 8689 5: the sender asks that recipient-domain TLS policies
                        // (MTA-STS) not stop this message; ignored under REQUIRETLS.
                        tls_optional: !entries[0].requiretls && tls_required_no(message),
                        blob: queued.streamed.map(|s| s.0),
                    };
                    let more = self
                        .send(entries, &plan.hops, &ctx, &queued, now, cached)
                        .await;
                    failed.extend(more);
                }
            }
        }
        if !failed.is_empty() {
            self.bounce(failed, message, queued.streamed.is_none(), now)
                .await;
        }
    }

    /// Reads a queued message for delivery, within the budget for mail in transit (waiting
    /// for room: the delivery can wait, a listener's message cannot): whole, or a large 7-bit
    /// one as its start and facts, to be read in pieces as it is sent (an 8-bit one may need
    /// converting to 7 bit, which takes it whole).
    async fn load(
        &self,
        blob: BlobId,
    ) -> hato_store::Result<Option<(Queued, [crate::net::DataShare; 2])>> {
        // One read for the common case: a message of at most STREAM_AT comes whole with it.
        let mut held = self.hold(STREAM_AT as usize + 1).await;
        let Some(first) = self
            .store
            .blob_range(blob, 0, STREAM_AT as usize + 1)
            .await?
        else {
            return Ok(None);
        };
        if first.len() as u64 <= STREAM_AT {
            held.iter_mut().for_each(|s| {
                s.set(first.len());
            });
            // Bytes from the Vec: no copy; each attempt's transaction shares it.
            let queued = Queued {
                data: first.into(),
                streamed: None,
            };
            return Ok(Some((queued, held)));
        }
        // A large one: its facts from a pass over the rest, in pieces; its start is kept.
        let mut scanner = FactsScanner::new();
        scanner.push(&first);
        let mut at = first.len() as u64;
        let start = first[..PIECE].to_vec();
        drop(first);
        held.iter_mut().for_each(|s| {
            s.set(2 * PIECE);
        });
        loop {
            let Some(piece) = self.store.blob_range(blob, at, PIECE).await? else {
                return Ok(None);
            };
            if piece.is_empty() {
                break;
            }
            at += piece.len() as u64;
            scanner.push(&piece);
        }
        let facts = scanner.finish();
        if !facts.eight_bit {
            let queued = Queued {
                data: start.into(),
                streamed: Some((blob, Streamed { len: at, facts })),
            };
            return Ok(Some((queued, held)));
        }
        // 8-bit: it may need converting to 7 bit, which takes it whole.
        drop(held);
        let held = self.hold(usize::try_from(at).unwrap_or(usize::MAX)).await;
        Ok(self.store.blob(blob).await?.map(|m| {
            let queued = Queued {
                data: m.into(),
                streamed: None,
            };
            (queued, held)
        }))
    }

    /// `bytes` of the budget for mail in transit, of which outbound holds at most half.
    async fn hold(&self, bytes: usize) -> [crate::net::DataShare; 2] {
        let outbound = self.outbound_budget.hold(bytes).await;
        [outbound, self.data_budget.hold(bytes).await]
    }

    /// Tries the targets in order until one gives an answer; returns the entries to bounce.
    pub(super) async fn send(
        &self,
        entries: Vec<QueueEntry>,
        targets: &[(String, SocketAddr)],
        ctx: &AttemptCtx<'_>,
        message: &Queued,
        now: i64,
        cached: &mut Option<Connection>,
    ) -> Vec<(QueueEntry, RecipientReport)> {
        let mut last_error = "451 4.4.1 no mail host to try".to_string();
        let mut last_facts: Option<TlsFacts> = None;
        let mut result: Option<(TransactionOutcome, TlsFacts)> = None;
        // The connection the previous message to this domain left open (RFC 5321 connection
        // reuse); if it fails, fresh connections are tried as usual.
        if let Some(mut conn) = cached.take() {
            // A REQUIRETLS message needs a verified connection (RFC 8689 4.2.1).
            let fits = !ctx.requiretls || conn.facts.verified.is_some();
            if fits && targets.iter().any(|(_, a)| *a == conn.addr) {
                let Exchange { outcome, .. } = self
                    .transact(&mut conn, transaction(&entries, message), ctx.blob)
                    .await;
                if let Some(o) = outcome {
                    log_attempt(&entries, &conn.host, conn.addr, &conn.facts, &o);
                    if !try_elsewhere(&o) {
                        result = Some((o, conn.facts.clone()));
                    }
                }
                if result.is_some() && !conn.closed {
                    *cached = Some(conn);
                } else {
                    self.close(conn).await;
                }
            } else {
                self.close(conn).await;
            }
        }
        let candidates = if result.is_some() { &[][..] } else { targets };
        for (i, (host, addr)) in candidates.iter().enumerate() {
            let is_last = i + 1 == targets.len();
            let mut fell_back = false;
            let mut r = self
                .attempt(host, *addr, transaction(&entries, message), false, ctx)
                .await;
            let handshake_failed = r
                .outcome
                .as_ref()
                .and_then(|o| o.failure.as_ref())
                .is_some_and(|f| *f == ClientFailure::TlsHandshakeFailed);
            if r.facts.policy == SecurityLevel::May
                && handshake_failed
                && self.smarthost_for(host, *addr).is_none()
            {
                // Opportunistic TLS: a broken TLS stack must not stop the mail (Postfix does
                // the same); the attempt is recorded as plaintext with the reason.
                let why = r.facts.error.clone().unwrap_or_default();
                warn!(host = %host, ip = %addr.ip(), error = %why, "TLS handshake failed; retrying in plaintext (tls_policy may)");
                // The failed TLS session is what TLS-RPT reports; the plaintext retry is not.
                self.record_session(
                    ctx,
                    host,
                    *addr,
                    &r.facts,
                    r.outcome.as_ref(),
                    None,
                    &message.data,
                )
                .await;
                fell_back = true;
                if let Some(c) = r.conn.take() {
                    self.close(c).await;
                }
                r = self
                    .attempt(host, *addr, transaction(&entries, message), true, ctx)
                    .await;
                r.facts.error.get_or_insert_with(|| {
                    format!("plaintext after a failed TLS handshake: {why}")
                });
            }
            let Attempt {
                outcome,
                facts,
                error,
                conn,
            } = r;
            if !fell_back {
                self.record_session(
                    ctx,
                    host,
                    *addr,
                    &facts,
                    outcome.as_ref(),
                    error.as_ref(),
                    &message.data,
                )
                .await;
            }
            match outcome {
                None => {
                    let error = error.map(|e| e.to_string()).unwrap_or_default();
                    for e in &entries {
                        // No SMTP session: TLS was either never reached or failed (then say so).
                        let tls = match (&facts.version, &facts.error) {
                            (None, None) => "-".to_owned(),
                            (None, Some(e)) => format!("failed: {e}"),
                            _ => tls_text(&facts),
                        };
                        info!(queue_id = e.id, rcpt = %e.recipient, host = %host, ip = %addr.ip(), tls = %tls, result = %error, "delivery attempt");
                    }
                    last_error = error;
                    last_facts = Some(facts);
                    if let Some(c) = conn {
                        self.close(c).await;
                    }
                }
                Some(o) => {
                    log_attempt(&entries, host, *addr, &facts, &o);
                    if try_elsewhere(&o) && !is_last {
                        last_error = error.map(|e| e.to_string()).unwrap_or_default();
                        last_facts = Some(facts);
                        if let Some(c) = conn {
                            self.close(c).await;
                        }
                        continue;
                    }
                    *cached = conn;
                    result = Some((o, facts));
                    break;
                }
            }
        }
        let mut failed = Vec::new();
        let Some((outcome, facts)) = result else {
            for e in entries {
                if let Some(f) = self
                    .defer(e, last_error.clone(), last_facts.clone(), now)
                    .await
                {
                    failed.push(f);
                }
            }
            return failed;
        };
        // The server took over NOTIFY=SUCCESS when it announced DSN (RFC 3461 4.2); otherwise
        // we report "relayed" ourselves.
        let remote_dsn = outcome.capabilities.as_ref().is_some_and(|c| c.dsn);
        for (e, r) in entries.into_iter().zip(outcome.recipients) {
            let why = one_line(&r.reply);
            match r.status {
                RecipientStatus::Delivered => {
                    if let Err(err) = self.store.queue_delivered(e.id, e.claim).await {
                        error!(queue_id = e.id, error = %err, "cannot remove the delivered entry");
                        continue;
                    }
                    crate::metrics::delivered(facts.version.is_some());
                    if !remote_dsn && dsn::notify_wants(e.dsn.notify.as_deref(), Action::Relayed) {
                        let mta = Some(facts.host.clone());
                        let mut rep = report(&e, "2.0.0", mta, Some(why), now, Some(facts.human()));
                        rep.action = Action::Relayed;
                        failed.push((e, rep));
                    }
                }
                RecipientStatus::Transient => {
                    if let Some(f) = self.defer(e, why, Some(facts.clone()), now).await {
                        failed.push(f);
                    }
                }
                RecipientStatus::Permanent => {
                    let status = status_of(&why);
                    let mta = r.remote.then(|| facts.host.clone());
                    let rep = report(&e, &status, mta, Some(why), now, Some(facts.human()));
                    failed.push((e, rep));
                }
            }
        }
        failed
    }

    /// Opens a connection to one address and runs one transaction on it. Returns the outcome
    /// (None: no SMTP session, with the error), the TLS facts, and the connection if it can take
    /// another transaction.
    pub(super) async fn attempt(
        &self,
        host: &str,
        addr: SocketAddr,
        txn: Transaction,
        plaintext: bool,
        ctx: &AttemptCtx<'_>,
    ) -> Attempt {
        let mut conn = match self.open(host, addr, plaintext, ctx).await {
            Ok(c) => c,
            Err(Unopened { facts, error }) => {
                return Attempt {
                    outcome: None,
                    facts,
                    error: Some(SessionError::Unopened(error)),
                    conn: None,
                };
            }
        };
        let Exchange { outcome, ended } = self.transact(&mut conn, txn, ctx.blob).await;
        let facts = conn.facts.clone();
        Attempt {
            outcome,
            facts,
            error: ended,
            conn: (!conn.closed).then_some(conn),
        }
    }

    /// Runs one transaction on a connection: its outcome and, if the connection ended, why.
    /// `conn.closed` tells whether it can be reused.
    pub(super) async fn transact(
        &self,
        conn: &mut Connection,
        txn: Transaction,
        blob: Option<BlobId>,
    ) -> Exchange {
        // For a server without 8BITMIME: the message again, converted to 7 bit (RFC 6152 3).
        let original = txn.clone();
        let mut downgraded = false;
        let mut pending: Option<Transaction> = None;
        if conn.session.next_transaction(txn).is_err() {
            return Exchange {
                outcome: None,
                ended: Some(SessionError::NotReady),
            };
        }
        let mut outcome = None;
        loop {
            match self.step(conn).await {
                Some(ClientAction::TransactionDone(o)) => {
                    if o.failure == Some(ClientFailure::Needs7BitDowngrade) && !downgraded {
                        downgraded = true;
                        match hato_smtp::client::downgrade_8bit(&original.message) {
                            Ok(m) => {
                                let mut t = original.clone();
                                t.message = m.into();
                                pending = Some(t);
                                continue;
                            }
                            Err(e) => {
                                warn!(host = %conn.host, error = %e, "cannot convert the 8-bit message to 7 bit")
                            }
                        }
                    }
                    let mut o = *o;
                    if let Some(ClientFailure::AuthFailed(r)) = &o.failure {
                        // Smarthost credentials refused (535): a configuration problem, not
                        // the recipients' fault. Keep the mail queued instead of bouncing all
                        // of it; the reply stays in last_error.
                        error!(host = %conn.host, ip = %conn.addr.ip(), reply = %one_line(r), "SMARTHOST REFUSED OUR CREDENTIALS: outbound mail stays queued; check delivery.smarthost username/password");
                        for rcpt in &mut o.recipients {
                            rcpt.status = RecipientStatus::Transient;
                        }
                    }
                    outcome = Some(o);
                }
                Some(ClientAction::Ready) => match pending.take() {
                    Some(t) => {
                        if conn.session.next_transaction(t).is_err() {
                            conn.session.quit();
                        }
                    }
                    None if outcome.is_some() => {
                        return Exchange {
                            outcome,
                            ended: None,
                        };
                    }
                    None => conn.session.quit(),
                },
                // A streamed message: its next piece from the store.
                Some(ClientAction::NeedMessage { offset }) => {
                    let piece = match blob {
                        Some(b) => self.store.blob_range(b, offset, PIECE).await,
                        None => Ok(None),
                    };
                    match piece {
                        Ok(Some(p)) if !p.is_empty() => conn.session.message_data(&p),
                        other => {
                            error!(host = %conn.host, offset, result = ?other.map(|p| p.map(|p| p.len())), "cannot read the queued message to send it: trying again later");
                            conn.session.connection_lost();
                        }
                    }
                }
                Some(ClientAction::Done(c)) => {
                    conn.io.shutdown().await;
                    conn.closed = true;
                    let ended = c.failure.map(|failure| SessionError::Ended {
                        addr: conn.addr,
                        failure,
                        tls_error: conn.facts.error.clone(),
                    });
                    return Exchange { outcome, ended };
                }
                _ => {}
            }
        }
    }
}
