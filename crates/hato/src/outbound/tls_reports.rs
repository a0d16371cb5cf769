//! TLS reporting (RFC 8460): each fresh session to an MX host is counted, and each complete
//! day's report is sent to the domains that ask for one.

use super::*;

impl Scheduler {
    /// Counts one SMTP session to an MX host for TLS-RPT (RFC 8460): TLS up and the policy met
    /// is a success, a classified TLS failure or a missing STARTTLS a failure; sessions that
    /// never reached TLS for other reasons (refused connection, plaintext by our own policy)
    /// and sessions carrying a report are not counted.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_session(
        &self,
        ctx: &AttemptCtx<'_>,
        host: &str,
        addr: SocketAddr,
        facts: &TlsFacts,
        outcome: Option<&TransactionOutcome>,
        error: Option<&SessionError>,
        message: &[u8],
    ) {
        if self.reports.is_none() || ctx.kind != HopKind::Mx || tlsrpt::is_report_message(message) {
            return;
        }
        let failure = |kind: FailureType, code: &str| {
            let mut d = FailureDetail::new(kind);
            d.receiving_mx_hostname = Some(host.trim_end_matches('.').to_owned());
            d.receiving_ip = Some(addr.ip());
            d.receiving_mx_helo = outcome
                .and_then(|o| o.capabilities.as_ref())
                .map(|c| c.domain.clone())
                .filter(|d| !d.is_empty());
            d.failure_reason_code = Some(code.to_owned());
            d.additional_information = facts.error.clone();
            SessionResult::Failure(d)
        };
        let result = if let Some((kind, code)) = &facts.report {
            failure(*kind, code)
        } else if facts.version.is_some() {
            if outcome.is_none() {
                return;
            }
            SessionResult::Success
        } else if facts.policy == SecurityLevel::None {
            return;
        } else {
            let not_offered = outcome.is_some_and(|o| {
                matches!(o.failure, Some(ClientFailure::TlsRequiredButUnavailable))
                    || o.capabilities.as_ref().is_some_and(|c| !c.starttls)
            }) || error.is_some_and(SessionError::starttls_not_offered);
            if !not_offered {
                return;
            }
            failure(FailureType::StarttlsNotSupported, "starttls-not-offered")
        };
        // The TLSA records `open` looked up (no second lookup here).
        let policy = match ctx.sts {
            Some(p) => PolicyDesc::sts(p),
            None if !facts.tlsa.is_empty() => PolicyDesc::tlsa(&facts.tlsa, host),
            None => PolicyDesc::no_policy_found(),
        };
        self.report(ctx.domain, policy, result);
    }

    pub(super) fn report(&self, domain: &str, policy: PolicyDesc, result: SessionResult) {
        if let Some(r) = &self.reports {
            r.record(SessionEvent {
                policy_domain: domain.to_owned(),
                policy,
                day: tlsrpt::today(),
                result,
            });
        }
    }

    /// Sends the complete days' TLS reports (RFC 8460 3, 5.3) to the domains that publish a
    /// `_smtp._tls` record, once per domain and day, from `<>` (a report never causes a
    /// bounce); checked hourly.
    pub(super) async fn report_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(recorder) = self.reports.clone() else {
            return;
        };
        let mut wait = self.report_check.min(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {
                    if let Err(e) = recorder.flush().await {
                        warn!(error = %e, "TLS reports: cannot store the last counts");
                    }
                    return;
                }
            }
            wait = self.report_check;
            let today = tlsrpt::today();
            let due = match recorder.due_reports(today).await {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "TLS reports: cannot read the counts");
                    continue;
                }
            };
            for (day, domain, aggregate) in due {
                // Claimed first, so of several nodes one sends it; handed back if it could not
                // be sent. (A crash in between loses that report rather than sending it twice.)
                match recorder.claim(day, &domain).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        warn!(domain, error = %e, "TLS report not claimed; will try again");
                        continue;
                    }
                }
                if let Err(e) = self.send_report(day, &domain, &aggregate).await {
                    warn!(domain, error = %e, "TLS report not sent; will try again");
                    if let Err(e) = recorder.unclaim(day, &domain).await {
                        warn!(domain, error = %e, "TLS report not sent and still claimed: lost");
                    }
                }
            }
            if let Err(e) = recorder.prune(today).await {
                warn!(error = %e, "TLS reports: cannot prune old counts");
            }
        }
    }

    /// Sends one claimed report (nothing if the domain asks for no mailed reports).
    pub(super) async fn send_report(
        &self,
        day: time::Date,
        domain: &str,
        aggregate: &tlsrpt::Aggregate,
    ) -> anyhow::Result<()> {
        let Some(router) = &self.router else {
            anyhow::bail!("no DNS resolver");
        };
        let records = router
            .txt(&tlsrpt::txt_name(domain))
            .await
            .map_err(|e| anyhow::anyhow!("TXT lookup: {e}"))?;
        let rua: Vec<String> = match tlsrpt::parse_txt(&records) {
            Ok(Some(r)) => r.mailto().into_iter().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        if rua.is_empty() {
            // The domain asks for no (mailed) reports: the claim marks it done.
            return Ok(());
        }
        let submitter = self.hostname.clone();
        let contact = format!("postmaster@{submitter}");
        let id = tlsrpt::report_id(day, domain, &submitter);
        let json = tlsrpt::build_report(day, domain, aggregate, &submitter, &contact, &id);
        let now = unix_now();
        let data = tlsrpt::report_message(&contact, &rua, domain, &submitter, &id, &json, day, now);
        let mut delivery = Delivery {
            sender: String::new(),
            data: data.into(),
            local: Vec::new(),
            remote: Vec::new(),
            received_at: now,
        };
        for to in &rua {
            let domain = hato_store::recipient_domain(to);
            if self.local_domains.contains(&domain) {
                let address = hato_wire::domain::normalize_address(to).unwrap_or(to.clone());
                if let Some(account) = self.store.resolve(&address).await? {
                    delivery.local.push(account);
                }
            } else {
                delivery.remote.push(to.clone());
            }
        }
        if !delivery.local.is_empty() || !delivery.remote.is_empty() {
            self.store.deliver(delivery).await?;
        }
        info!(domain, day = %day, to = %rua.join(","), failures = aggregate.total_failed(), successes = aggregate.total_successful(), "TLS report sent");
        Ok(())
    }
}
