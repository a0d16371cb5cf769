//! Outcomes: retry later (the retry schedule, delay warnings) or bounce (an RFC 3464 DSN to
//! the sender), and the log line of each attempt.

use super::*;

pub(super) fn report(
    e: &QueueEntry,
    status: &str,
    remote_mta: Option<String>,
    diagnostic: Option<String>,
    now: i64,
    tls: Option<String>,
) -> RecipientReport {
    RecipientReport {
        final_recipient: e.recipient.clone(),
        original_recipient: e.dsn.orcpt.clone(),
        action: Action::Failed,
        status: status.to_owned(),
        remote_mta,
        diagnostic,
        last_attempt: Some(now),
        will_retry_until: None,
        tls,
    }
}

/// The enhanced status code in a `code x.y.z text` line, else one from the reply code.
pub(super) fn status_of(line: &str) -> String {
    let mut words = line.split_whitespace();
    let code = words.next().unwrap_or("");
    if let Some(s) = words.next()
        && s.split('.').count() == 3
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return s.to_owned();
    }
    if code.starts_with('4') {
        "4.0.0".into()
    } else {
        "5.0.0".into()
    }
}

pub(super) fn one_line(r: &Reply) -> String {
    let mut out = String::new();
    for (i, l) in r.to_string().lines().enumerate() {
        if i == 0 {
            out.push_str(l.trim_end());
        } else {
            out.push(' ');
            out.push_str(l.get(4..).unwrap_or("").trim_end());
        }
    }
    out
}

/// One log line per recipient of an attempt.
pub(super) fn log_attempt(
    entries: &[QueueEntry],
    host: &str,
    addr: SocketAddr,
    facts: &TlsFacts,
    o: &TransactionOutcome,
) {
    let tls = tls_text(facts);
    for (e, r) in entries.iter().zip(&o.recipients) {
        info!(queue_id = e.id, rcpt = %e.recipient, host = %host, ip = %addr.ip(), tls = %tls, result = %one_line(&r.reply), "delivery attempt");
    }
}

pub(super) fn tls_text(f: &TlsFacts) -> String {
    let mut s = match (&f.version, &f.cipher) {
        (Some(v), Some(c)) => format!("{v} {c}"),
        (Some(v), None) => v.clone(),
        _ => return "plaintext".into(),
    };
    match (f.verified, &f.dane) {
        (Some(by), Some(record)) => s.push_str(&format!(" verified ({}: {record})", by.as_str())),
        (Some(by), None) => s.push_str(&format!(" verified ({})", by.as_str())),
        (None, _) => s.push_str(" unverified"),
    }
    s
}

impl Scheduler {
    /// Records a temporary failure. Returns the entry with a `failed` report if it expired
    /// (to bounce), or with a `delayed` report when it has now waited `delay_warning` (once:
    /// the first attempt after that point; a crash at the wrong moment may repeat it).
    pub(super) async fn defer(
        &self,
        e: QueueEntry,
        error: String,
        facts: Option<TlsFacts>,
        now: i64,
    ) -> Option<(QueueEntry, RecipientReport)> {
        match self.schedule.after_failure(e.created, e.attempts + 1, now) {
            Next::RetryAt(next) => {
                let human = facts.as_ref().map(TlsFacts::human);
                let attempt = QueueAttempt {
                    at: now,
                    error,
                    next_attempt: next,
                    tls: facts.map(|f| f.to_json()),
                };
                let why = attempt.error.clone();
                if let Err(err) = self.store.record_attempt(e.id, e.claim, attempt).await {
                    error!(queue_id = e.id, error = %err, "cannot record the attempt");
                    return None;
                }
                crate::metrics::deferred();
                let warn_at = e.created + self.delay_warning?;
                let first_after = e.last_attempt.is_none_or(|t| t < warn_at);
                if now < warn_at || !first_after {
                    return None;
                }
                let status = status_of(&why);
                let status = if status.starts_with('4') {
                    status
                } else {
                    "4.0.0".into()
                };
                let mut r = report(&e, &status, None, Some(why), now, human);
                r.action = Action::Delayed;
                r.will_retry_until =
                    Some(e.created + self.schedule.max_lifetime().as_secs() as i64);
                Some((e, r))
            }
            Next::Expired => {
                let why = format!("delivery time expired; last error: {error}");
                let r = report(&e, "4.4.7", None, Some(why), now, facts.map(|f| f.human()));
                Some((e, r))
            }
        }
    }

    /// Sends one DSN about the recipients of a message (failed, delayed or relayed, each as its
    /// NOTIFY asks) and removes the failed ones' entries (delayed ones stay queued, relayed
    /// ones are gone already).
    pub(super) async fn bounce(
        &self,
        failed: Vec<(QueueEntry, RecipientReport)>,
        message: &[u8],
        whole: bool,
        now: i64,
    ) {
        let first = failed[0].0.clone();
        let reports: Vec<RecipientReport> = failed
            .iter()
            .filter(|(e, r)| dsn::notify_wants(e.dsn.notify.as_deref(), r.action))
            .map(|(_, r)| r.clone())
            .collect();
        // RFC 3461 4.3: RET asks for the content of *failed* DSNs; the others carry the header.
        let any_failed = reports.iter().any(|r| r.action == Action::Failed);
        let input = DsnInput {
            reporting_mta: &self.hostname,
            envelope_sender: &first.sender,
            envelope_id: first.dsn.envid.as_deref(),
            arrival_date: first.created,
            recipients: reports,
            original: message,
            ret: match (any_failed, first.dsn.ret.as_deref()) {
                // Only the start of a large message is at hand: its header.
                _ if !whole => ReturnContent::Headers,
                (false, _) => ReturnContent::Headers,
                (true, Some(ret)) => ReturnContent::from_ret(Some(ret)),
                (true, None) => self.bounce_return,
            },
            max_full_size: dsn::DEFAULT_MAX_FULL_SIZE,
            now,
        };
        // None: the null sender (never bounce a bounce) or NOTIFY=NEVER.
        if let Some(d) = dsn::build(&input) {
            let rcpt = d.rcpt_to.clone();
            let is_local = |domain: &str| self.local_domains.iter().any(|l| l == domain);
            match crate::local_mail::store_dsn(self.store.as_ref(), is_local, d, now).await {
                Ok(true) => {
                    info!(to = %rcpt, recipients = failed.len(), failed = any_failed, "delivery status notification sent")
                }
                Ok(false) => {
                    warn!(to = %rcpt, "delivery status notification dropped: the local sender no longer exists")
                }
                Err(e) => {
                    // Keep the entries: the bounce is retried with them.
                    error!(error = %e, "cannot store the delivery status notification; will try again");
                    return;
                }
            }
        }
        for (e, r) in failed {
            if r.action != Action::Failed {
                continue;
            }
            info!(queue_id = e.id, rcpt = %e.recipient, status = %r.status, "bounced");
            match self.store.queue_delivered(e.id, e.claim).await {
                Ok(_) => crate::metrics::bounced(),
                Err(err) => {
                    error!(queue_id = e.id, error = %err, "cannot remove the bounced entry")
                }
            }
        }
    }
}
