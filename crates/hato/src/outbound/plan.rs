//! Planning: where a domain's mail goes this round (`[[route]]`, the smarthost, or MX hosts
//! from DNS, pruned of ourselves) and which MX hosts its MTA-STS policy allows.

use super::*;

/// The resolved `[delivery.smarthost]`.
pub(super) struct Smarthost {
    /// What the connection is addressed as: `[ip]` or the host name (also the TLS name).
    pub(super) name: String,
    pub(super) route: RouteHost,
    pub(super) port: u16,
    pub(super) tls: SmarthostTls,
    pub(super) credentials: Option<Credentials>,
    /// Verifies against `ca_file` when given, else accepts any certificate.
    pub(super) connector: TlsConnector,
    pub(super) verify: bool,
}

impl Smarthost {
    pub(super) fn new(sh: &SmarthostConfig, any: &TlsConnector) -> anyhow::Result<Smarthost> {
        let (route, port) = sh.target().ok_or_else(|| {
            anyhow::anyhow!("`delivery.smarthost.host`: {:?} is not a host", sh.host)
        })?;
        let name = match &route {
            RouteHost::Ip(ip, _) => format!("[{ip}]"),
            RouteHost::Name(n, _) => n.clone(),
        };
        let credentials = sh.credentials()?.map(|(username, password)| Credentials {
            username,
            password: password.into(),
        });
        let (connector, verify) = match &sh.ca_file {
            Some(path) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let roots = load_roots(path)
                    .map_err(|e| anyhow::anyhow!("`delivery.smarthost.ca_file`: {e:#}"))?;
                let c = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                (TlsConnector::from(Arc::new(c)), true)
            }
            None => (any.clone(), false),
        };
        Ok(Smarthost {
            name,
            route,
            port,
            tls: sh.tls,
            credentials,
            connector,
            verify,
        })
    }
}

/// The trust anchors of `delivery.ca_file`.
pub(super) fn load_roots(path: &std::path::Path) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("`delivery.ca_file`: cannot read {}", path.display()))?
    {
        let cert =
            cert.with_context(|| format!("`delivery.ca_file`: bad PEM in {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("`delivery.ca_file`: {}", path.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "`delivery.ca_file`: no certificate in {}",
        path.display()
    );
    Ok(roots)
}

/// How a domain's mail is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HopKind {
    /// Its MX hosts (MTA-STS applies).
    Mx,
    /// A `[[route]]`.
    Route,
    /// `[delivery.smarthost]`.
    Smarthost,
}

/// The next hops of a domain for one scheduling round.
pub(super) struct Plan {
    /// (host name, address) in the order to try.
    pub(super) hops: Vec<(String, SocketAddr)>,
    pub(super) kind: HopKind,
    /// The domain's MTA-STS policy in force (enforce or testing).
    pub(super) sts: Option<StsPolicy>,
}

/// Why a domain has no next hop this round; each carries the reply line for the queue, the
/// logs and the DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PlanError {
    /// The destination can never take mail (null MX, no such domain): bounce now.
    Permanent(String),
    /// It may work later (DNS failure, DNSSEC, MTA-STS): retry on the schedule.
    Temporary(String),
}

impl Scheduler {
    /// Where mail for a domain goes, in order.
    pub(super) async fn plan(&self, domain: &str) -> Result<Plan, PlanError> {
        if let Some(host) = self.routes.get(domain) {
            let hops = Self::resolve_host(host, self.port, "route host").await?;
            return Ok(Plan {
                hops,
                kind: HopKind::Route,
                sts: None,
            });
        }
        if let Some(sh) = &self.smarthost {
            let hops = Self::resolve_host(&sh.route, sh.port, "smarthost").await?;
            return Ok(Plan {
                hops,
                kind: HopKind::Smarthost,
                sts: None,
            });
        }
        let Some(router) = &self.router else {
            return Err(PlanError::Temporary(format!(
                "451 4.4.3 no DNS resolver: {}",
                self.router_error
            )));
        };
        let route = router
            .route(domain)
            .await
            .and_then(|r| prune_self(r, &self.identity))
            .map_err(|e| match e.is_permanent() {
                true => PlanError::Permanent(e.diagnostic()),
                false => PlanError::Temporary(e.diagnostic()),
            })?;
        let mut hosts = route.hosts;
        if let Some(dane) = &self.dane
            && self.table.wants_dane(domain)
        {
            // RFC 7672 2.2: an MX RRset that fails validation must not lead anywhere.
            match dane.mx_security(domain).await {
                DnsSecurity::Bogus | DnsSecurity::Indeterminate => {
                    return Err(PlanError::Temporary(format!(
                        "451 4.7.5 the MX records of {domain} failed DNSSEC validation"
                    )));
                }
                _ => {}
            }
        }
        let sts = match &self.sts {
            Some(resolver) => {
                let lookup = resolver.policy_for(domain).await;
                if let Some(problem) = &lookup.problem {
                    warn!(domain, problem = %problem, result_type = problem.result_type().map(|t| t.as_str()).unwrap_or("-"), "MTA-STS");
                    // A failed fetch is reported once, not for every delivery that follows.
                    if let StsProblem::Fetch {
                        error,
                        repeated: false,
                    } = problem
                    {
                        let policy = lookup
                            .applicable()
                            .map(PolicyDesc::sts)
                            .unwrap_or_else(PolicyDesc::no_policy_found);
                        let mut detail = FailureDetail::new(error.result_type().into());
                        detail.additional_information = Some(error.to_string());
                        self.report(domain, policy, SessionResult::Failure(detail));
                    }
                }
                lookup.applicable().cloned()
            }
            None => None,
        };
        if let Some(p) = &sts
            && p.mode == StsMode::Enforce
        {
            // RFC 8461 4.1/5: only MX hosts the policy names may receive the mail.
            let before = hosts.len();
            hosts.retain(|h| p.mx_matches(&h.name));
            if hosts.is_empty() {
                let mut detail = FailureDetail::new(FailureType::ValidationFailure);
                detail.failure_reason_code = Some("mx-not-in-policy".into());
                self.report(domain, PolicyDesc::sts(p), SessionResult::Failure(detail));
                return Err(PlanError::Temporary(format!(
                    "451 4.7.5 none of the {before} MX host(s) of {domain} matches its MTA-STS policy (mode enforce)"
                )));
            }
        }
        let port = self.port;
        let hops = hosts
            .into_iter()
            .flat_map(|h| {
                h.addresses
                    .into_iter()
                    .map(move |ip| (h.name.clone(), SocketAddr::new(ip, port)))
            })
            .collect();
        Ok(Plan {
            hops,
            kind: HopKind::Mx,
            sts,
        })
    }

    /// The addresses of an explicit next hop (`[[route]]` or the smarthost).
    pub(super) async fn resolve_host(
        host: &RouteHost,
        default_port: u16,
        what: &str,
    ) -> Result<Vec<(String, SocketAddr)>, PlanError> {
        match host {
            RouteHost::Ip(ip, port) => Ok(vec![(
                format!("[{ip}]"),
                SocketAddr::new(*ip, port.unwrap_or(default_port)),
            )]),
            RouteHost::Name(name, port) => {
                match tokio::net::lookup_host((name.as_str(), port.unwrap_or(default_port))).await {
                    Ok(addrs) => Ok(addrs.map(|a| (name.clone(), a)).collect()),
                    Err(e) => Err(PlanError::Temporary(format!(
                        "451 4.4.3 cannot resolve the {what} {name}: {e}"
                    ))),
                }
            }
        }
    }

    /// The smarthost, if `host`/`addr` is where it is reached.
    pub(super) fn smarthost_for(&self, host: &str, addr: SocketAddr) -> Option<&Smarthost> {
        self.smarthost
            .as_ref()
            .filter(|sh| sh.name == host && sh.port == addr.port())
    }
}
