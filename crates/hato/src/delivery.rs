//! Outbound delivery: the queue scheduler. Every second (or at once when the SMTP driver queued
//! something) it claims due queue entries (`Store::due_queue`, leased), finds the next hops
//! (`[[route]]` or MX via `hato_delivery::route::Router`), drives `hato_smtp::client::ClientSession`
//! over TCP with STARTTLS (tokio-rustls), and records the outcome: delivered, retry later
//! (`RetrySchedule`), or bounce (an RFC 3464 DSN to the original sender, never for a bounce).
//!
//! All recipients of a message at one domain share one transaction; up to `delivery.per_domain`
//! workers per domain (and `delivery.concurrency` in all) each keep their connection open for the
//! next message to that domain claimed in the same round.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hato_delivery::backoff::{Next, RetrySchedule};
use hato_delivery::dane_lookup::{DaneResolver, Security as DnsSecurity, TrustAnchor};
use hato_delivery::dane_verify::DaneVerifier;
use hato_delivery::dsn::{self, Action, DsnInput, RecipientReport, ReturnContent};
use hato_delivery::mta_sts::{Mode as StsMode, Policy as StsPolicy};
use hato_delivery::mta_sts_fetch::StsProblem;
use hato_delivery::mta_sts_fetch::{self, FetchConfig, StsConfig, StsResolver};
use hato_delivery::policy::{
    PolicyTable, SecurityLevel, TlsFacts, TlsaStatus, Verification, VerifiedBy,
};
use hato_delivery::route::{DnsConfig, LocalIdentity, Router, prune_self};
use hato_delivery::tlsrpt::{
    self, FailureDetail, FailureType, PolicyDesc, SessionEvent, SessionResult,
};
use hato_smtp::client::{
    ClientAction, ClientConfig, ClientFailure, ClientSession, Credentials, DsnRet,
    Notify as DsnNotify, Recipient, RecipientStatus, TlsRequirement, Transaction,
    TransactionOutcome,
};
use hato_smtp::{Address, Reply};
use hato_store::{Delivery, QueueAttempt, QueueEntry, Store};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsConnector;
use tracing::{error, info, warn};

use crate::config::{Config, RouteHost, SmarthostConfig, SmarthostTls};
use hato_wire::date::unix_now;

/// How long a claimed entry is held (longer than one attempt can take: RFC 5321 timeouts).
const LEASE_SECS: i64 = 30 * 60;
/// Most entries claimed and not yet finished at any time (claimed entries wait for the
/// concurrency limits while their lease runs, so this bounds how long they can wait).
const CLAIM_LIMIT: usize = 200;
/// An entry whose lease ends within this many seconds is left for the next claim.
const LEASE_MARGIN_SECS: i64 = 60;

/// Everything the scheduler needs, shared by its tasks.
pub(crate) struct Scheduler {
    store: Arc<dyn Store>,
    hostname: String,
    local_domains: Vec<String>,
    schedule: RetrySchedule,
    /// TLS levels per destination, with the global minimum (`[delivery.tls_policies]`).
    table: PolicyTable,
    /// Other domains' MTA-STS policies (RFC 8461), when `delivery.mta_sts`.
    sts: Option<StsResolver>,
    /// DNSSEC-validated TLSA lookups, when some destination's level is `dane`.
    dane: Option<DaneResolver>,
    /// TLS-RPT (RFC 8460): per-day results of sessions to MX hosts, when `delivery.tls_reports`.
    reports: Option<tlsrpt::Recorder>,
    /// `delivery.tls_report_check_secs`.
    report_check: Duration,
    /// `delivery.delay_warning`, seconds.
    delay_warning: Option<i64>,
    /// `delivery.bounce_return`: for bounces without a DSN `RET`.
    bounce_return: ReturnContent,
    port: u16,
    connect_timeout: Duration,
    routes: HashMap<String, RouteHost>,
    router: Option<Router>,
    router_error: String,
    identity: LocalIdentity,
    /// For `may`/`encrypt`: any certificate (opportunistic TLS must not fail on self-signed).
    tls_any: TlsConnector,
    /// For `verify`, MTA-STS and REQUIRETLS: the WebPKI roots plus `delivery.ca_file`.
    tls_verify: TlsConnector,
    /// The same roots as a verifier, for MTA-STS `testing` (verify, report, deliver anyway).
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    global: Arc<Semaphore>,
    per_domain_limit: usize,
    /// Claimed messages per destination domain and the workers taking them (kept across
    /// claims, so a worker's open connection carries the next claim's messages too).
    domains: Mutex<HashMap<String, DomainWork>>,
    /// `delivery.per_ip`: connections at once per destination address.
    per_ip_limit: usize,
    per_ip: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    /// Entries claimed and not yet finished.
    in_flight: AtomicUsize,
    /// Woken when in-flight entries fall to the low-water mark: claim more at once.
    refill: Notify,
    /// `[delivery.smarthost]`: every domain without a `[[route]]` goes there.
    smarthost: Option<Smarthost>,
}

/// One destination domain's claimed messages and its running workers.
struct DomainWork {
    queue: std::collections::VecDeque<Vec<QueueEntry>>,
    workers: usize,
    /// Where the domain's mail goes; looked up again after a minute.
    plan: Arc<tokio::sync::OnceCell<Result<Plan, (bool, String)>>>,
    planned_at: std::time::Instant,
}

/// The resolved `[delivery.smarthost]`.
struct Smarthost {
    /// What the connection is addressed as: `[ip]` or the host name (also the TLS name).
    name: String,
    route: RouteHost,
    port: u16,
    tls: SmarthostTls,
    credentials: Option<Credentials>,
    /// Verifies against `ca_file` when given, else accepts any certificate.
    connector: TlsConnector,
    verify: bool,
}

impl Smarthost {
    fn new(sh: &SmarthostConfig, any: &TlsConnector) -> anyhow::Result<Smarthost> {
        let (route, port) = sh.target().ok_or_else(|| {
            anyhow::anyhow!("`delivery.smarthost.host`: {:?} is not a host", sh.host)
        })?;
        let name = match &route {
            RouteHost::Ip(ip, _) => format!("[{ip}]"),
            RouteHost::Name(n, _) => n.clone(),
        };
        let credentials = sh
            .credentials()?
            .map(|(username, password)| Credentials { username, password });
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
fn load_roots(path: &std::path::Path) -> anyhow::Result<rustls::RootCertStore> {
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

/// Checks what the configuration parser cannot (the CA file); a one-line summary.
pub(crate) fn check(config: &Config) -> anyhow::Result<String> {
    let d = &config.delivery;
    if let Some(path) = &config.dns.trust_anchor {
        TrustAnchor::File(path.clone())
            .check()
            .map_err(|e| anyhow::anyhow!("`dns.trust_anchor`: {e}"))?;
    }
    if let Some(path) = &d.ca_file {
        load_roots(path)?;
    }
    let smarthost = match &d.smarthost {
        Some(sh) => {
            if let Some(path) = &sh.ca_file {
                load_roots(path)
                    .map_err(|e| anyhow::anyhow!("`delivery.smarthost.ca_file`: {e:#}"))?;
            }
            let auth = sh.credentials()?;
            format!(
                ", smarthost {} ({}{}{})",
                sh.host,
                match sh.tls {
                    SmarthostTls::Starttls => "starttls",
                    SmarthostTls::Implicit => "implicit TLS",
                    SmarthostTls::None => "PLAINTEXT",
                },
                match (sh.tls, &sh.ca_file) {
                    (SmarthostTls::None, _) => "",
                    (_, Some(_)) => ", certificate verified",
                    (_, None) => ", certificate NOT verified",
                },
                match auth {
                    Some((u, _)) => format!(", AUTH as {u}"),
                    None => String::new(),
                }
            )
        }
        None => String::new(),
    };
    Ok(format!(
        "tls_policy {}{}, {} route(s){smarthost}{}",
        d.tls_policy,
        if d.ca_file.is_some() {
            " with ca_file"
        } else {
            ""
        },
        config.routes.len(),
        if d.hold { ", ON HOLD" } else { "" }
    ))
}

/// Starts the scheduler task. Needs a tokio runtime.
pub(crate) fn spawn(
    config: &Config,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let scheduler = Arc::new(Scheduler::new(config, store)?);
    if let Some(sh) = &config.delivery.smarthost {
        match (sh.tls, &sh.ca_file) {
            (SmarthostTls::None, _) => warn!(
                host = %sh.host,
                "SMARTHOST IN PLAINTEXT (`delivery.smarthost.tls = \"none\"`): all outbound mail crosses the network unencrypted"
            ),
            (_, None) => warn!(
                host = %sh.host,
                "SMARTHOST CERTIFICATE NOT VERIFIED: without `delivery.smarthost.ca_file` the connection is encrypted but an attacker in the path can impersonate the smarthost and read the credentials; set ca_file (e.g. /etc/ssl/certs/ca-certificates.crt)"
            ),
            _ => {}
        }
        info!(host = %sh.host, "smarthost mode: mail for domains without [[route]] goes to the smarthost");
    }
    if let Some(dane) = scheduler.dane.clone()
        && config.dns.trust_anchor.is_none()
    {
        // hickory validates itself: the resolvers must pass DNSSEC records through.
        tokio::spawn(async move {
            match dane.probe(".").await {
                DnsSecurity::Secure => info!("DANE: DNSSEC validation of the root zone works"),
                other => warn!(
                    result = ?other,
                    "DANE: the DNS resolvers give no validatable DNSSEC answers (check [dns] nameservers); mail to DANE destinations will wait"
                ),
            }
        });
    }
    if config.delivery.hold {
        warn!(
            "outbound delivery is on hold (`delivery.hold`): mail for other domains stays queued"
        );
        return Ok(());
    }
    tokio::spawn(scheduler.clone().report_loop(shutdown.clone()));
    tokio::spawn(scheduler.run(wake, shutdown));
    Ok(())
}

impl Scheduler {
    fn new(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Scheduler> {
        let d = &config.delivery;
        let dns = DnsConfig {
            nameservers: config.dns.nameservers.clone(),
            timeout: Duration::from_secs(config.dns.timeout_secs),
            ..DnsConfig::default()
        };
        let (router, router_error) = match Router::new(&dns, Default::default()) {
            Ok(r) => (Some(r), String::new()),
            Err(e) => {
                error!(error = %e, "no DNS resolver: mail to domains without [[route]] is deferred");
                (None, e.to_string())
            }
        };
        // Our own SMTP listeners on the destination port: an MX with one of their addresses is us.
        let mut addresses = Vec::new();
        for l in &config.listeners {
            if l.protocol == crate::config::Protocol::Smtp && l.bind.port() == d.port {
                if l.bind.ip().is_unspecified() {
                    addresses.push(IpAddr::from([127, 0, 0, 1]));
                    addresses.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
                } else {
                    addresses.push(l.bind.ip());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = mta_sts_fetch::webpki_roots();
        if let Some(path) = &d.ca_file {
            for cert in load_roots(path)?.roots {
                roots.roots.push(cert);
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots.clone()),
            provider.clone(),
        )
        .build()?;
        let any = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient::accept_any(webpki.clone())))
            .with_no_client_auth();
        let tls_any = TlsConnector::from(Arc::new(any));
        let smarthost = match &d.smarthost {
            Some(sh) => Some(Smarthost::new(sh, &tls_any)?),
            None => None,
        };
        let verify = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tls_verify = TlsConnector::from(Arc::new(verify));
        let sts = match (&router, d.mta_sts) {
            (Some(router), true) => {
                let config = StsConfig {
                    fetch: FetchConfig {
                        roots,
                        https_port: d.mta_sts_port,
                        ..FetchConfig::default()
                    },
                    cache_dir: Some(config.data_dir.join("mta-sts")),
                    ..StsConfig::default()
                };
                Some(StsResolver::new(router.clone(), config)?)
            }
            _ => None,
        };
        let dane = if d.uses_dane() {
            let anchor = match &config.dns.trust_anchor {
                Some(path) => TrustAnchor::File(path.clone()),
                None => TrustAnchor::Root,
            };
            Some(DaneResolver::new(&dns, &anchor).map_err(|e| anyhow::anyhow!("DANE: {e}"))?)
        } else {
            None
        };
        let reports = if d.tls_reports {
            let dir = config.data_dir.join("tls-rpt");
            Some(
                tlsrpt::Recorder::open(&dir)
                    .with_context(|| format!("TLS reports: cannot open {}", dir.display()))?,
            )
        } else {
            None
        };
        Ok(Scheduler {
            reports,
            report_check: Duration::from_secs(d.tls_report_check_secs.max(1)),
            dane,
            store,
            hostname: config.hostname.clone(),
            local_domains: config.local_domains(),
            schedule: d.schedule()?,
            table: d.policy_table()?,
            sts,
            delay_warning: d.delay_warning_secs()?,
            bounce_return: match d.bounce_return {
                crate::config::BounceReturn::Headers => ReturnContent::Headers,
                crate::config::BounceReturn::Full => ReturnContent::Full,
            },
            port: d.port,
            connect_timeout: Duration::from_secs(d.connect_timeout_secs),
            routes: config
                .routes
                .iter()
                .filter_map(|r| Some((r.domain.to_ascii_lowercase(), RouteHost::parse(&r.host)?)))
                .collect(),
            router,
            router_error,
            identity: LocalIdentity {
                hostnames: vec![config.hostname.clone()],
                addresses,
            },
            tls_any,
            tls_verify,
            webpki,
            global: Arc::new(Semaphore::new(d.concurrency)),
            per_domain_limit: d.per_domain,
            domains: Mutex::new(HashMap::new()),
            per_ip_limit: d.per_ip,
            per_ip: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            refill: Notify::new(),
            smarthost,
        })
    }

    async fn run(self: Arc<Self>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        // This is the data directory's only scheduler: whatever a previous process had claimed
        // when it stopped (crash, kill -9) is due again now, not when its lease runs out.
        match self.store.release_leases().await {
            Ok(0) => {}
            Ok(n) => info!(entries = n, "released the leases of a previous run"),
            Err(e) => warn!(error = %e, "cannot release old queue leases"),
        }
        info!("outbound delivery scheduler started");
        let mut first = true;
        loop {
            // Claim at once at start-up; then on new mail, when the claimed work runs low
            // (refill), or every second for retries that became due.
            if !first {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = self.refill.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            first = false;
            let free = CLAIM_LIMIT.saturating_sub(self.in_flight.load(Ordering::Relaxed));
            if free == 0 {
                continue;
            }
            let due = match self.store.due_queue(unix_now(), free, LEASE_SECS).await {
                Ok(d) => {
                    let n: usize = d.iter().map(|d| d.entries.len()).sum();
                    self.in_flight.fetch_add(n, Ordering::Relaxed);
                    d
                }
                Err(e) => {
                    error!(error = %e, "cannot read the queue");
                    continue;
                }
            };
            for domain in due {
                let me = self.clone();
                tokio::spawn(async move { me.deliver_domain(domain).await });
            }
        }
    }

    /// A connection slot at `ip` (`delivery.per_ip`), held as long as the connection; None if
    /// none frees up within the connect timeout (then the address counts as busy).
    async fn ip_slot(&self, ip: IpAddr) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, s| Arc::strong_count(s) > 1);
            map.entry(ip)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_ip_limit)))
                .clone()
        };
        tokio::time::timeout(self.connect_timeout, sem.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    async fn deliver_domain(self: Arc<Self>, due: hato_store::DueDomain) {
        // Group by message (entries are ordered by blob).
        let mut groups: Vec<Vec<QueueEntry>> = Vec::new();
        for e in due.entries {
            match groups.last_mut() {
                Some(g) if g[0].blob == e.blob => g.push(e),
                _ => groups.push(vec![e]),
            }
        }
        // Append to the domain's queue and start workers up to `per_domain`; running ones keep
        // their connections and take the new messages too.
        let spawn = {
            let mut map = self.domains.lock().unwrap_or_else(|e| e.into_inner());
            let work = map.entry(due.domain.clone()).or_insert_with(|| DomainWork {
                queue: std::collections::VecDeque::new(),
                workers: 0,
                plan: Arc::new(tokio::sync::OnceCell::new()),
                planned_at: std::time::Instant::now(),
            });
            if work.planned_at.elapsed() > Duration::from_secs(60) {
                work.plan = Arc::new(tokio::sync::OnceCell::new());
                work.planned_at = std::time::Instant::now();
            }
            work.queue.extend(groups);
            let spawn = self
                .per_domain_limit
                .saturating_sub(work.workers)
                .min(work.queue.len());
            work.workers += spawn;
            spawn
        };
        for _ in 0..spawn {
            let (me, domain) = (self.clone(), due.domain.clone());
            tokio::spawn(async move {
                let permit = me.global.clone().acquire_owned().await;
                let mut cached: Option<Connection> = None;
                loop {
                    let next = {
                        let mut map = me.domains.lock().unwrap_or_else(|e| e.into_inner());
                        let Some(work) = map.get_mut(&domain) else {
                            break;
                        };
                        match work.queue.pop_front() {
                            Some(g) => Some((g, work.plan.clone())),
                            None => {
                                work.workers -= 1;
                                if work.workers == 0 {
                                    map.remove(&domain);
                                }
                                None
                            }
                        }
                    };
                    let Some((group, plan)) = next else { break };
                    let n = group.len();
                    if permit.is_ok() {
                        // Entries whose lease (nearly) ran out may be claimed again by now.
                        let deadline = unix_now() + LEASE_MARGIN_SECS;
                        let group: Vec<_> = group
                            .into_iter()
                            .filter(|e| e.leased_until > deadline)
                            .collect();
                        if !group.is_empty() {
                            let plan = plan.get_or_init(|| me.plan(&domain)).await;
                            me.deliver_message(&domain, group, plan, &mut cached).await;
                        }
                    }
                    let before = me.in_flight.fetch_sub(n, Ordering::Relaxed);
                    let low = CLAIM_LIMIT / 2;
                    if before > low && before - n <= low {
                        me.refill.notify_one();
                    }
                }
                if let Some(c) = cached {
                    me.close(c).await;
                }
            });
        }
    }

    /// Where mail for a domain goes, in order; Err((permanent, error)).
    async fn plan(&self, domain: &str) -> Result<Plan, (bool, String)> {
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
            return Err((
                false,
                format!("451 4.4.3 no DNS resolver: {}", self.router_error),
            ));
        };
        let route = router
            .route(domain)
            .await
            .and_then(|r| prune_self(r, &self.identity))
            .map_err(|e| (e.is_permanent(), e.diagnostic()))?;
        let mut hosts = route.hosts;
        if let Some(dane) = &self.dane
            && self.table.wants_dane(domain)
        {
            // RFC 7672 2.2: an MX RRset that fails validation must not lead anywhere.
            match dane.mx_security(domain).await {
                DnsSecurity::Bogus | DnsSecurity::Indeterminate => {
                    return Err((
                        false,
                        format!("451 4.7.5 the MX records of {domain} failed DNSSEC validation"),
                    ));
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
                return Err((
                    false,
                    format!(
                        "451 4.7.5 none of the {before} MX host(s) of {domain} matches its MTA-STS policy (mode enforce)"
                    ),
                ));
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
    async fn resolve_host(
        host: &RouteHost,
        default_port: u16,
        what: &str,
    ) -> Result<Vec<(String, SocketAddr)>, (bool, String)> {
        match host {
            RouteHost::Ip(ip, port) => Ok(vec![(
                format!("[{ip}]"),
                SocketAddr::new(*ip, port.unwrap_or(default_port)),
            )]),
            RouteHost::Name(name, port) => {
                match tokio::net::lookup_host((name.as_str(), port.unwrap_or(default_port))).await {
                    Ok(addrs) => Ok(addrs.map(|a| (name.clone(), a)).collect()),
                    Err(e) => Err((
                        false,
                        format!("451 4.4.3 cannot resolve the {what} {name}: {e}"),
                    )),
                }
            }
        }
    }

    /// The smarthost, if `host`/`addr` is where it is reached.
    fn smarthost_for(&self, host: &str, addr: SocketAddr) -> Option<&Smarthost> {
        self.smarthost
            .as_ref()
            .filter(|sh| sh.name == host && sh.port == addr.port())
    }

    async fn deliver_message(
        &self,
        domain: &str,
        entries: Vec<QueueEntry>,
        plan: &Result<Plan, (bool, String)>,
        cached: &mut Option<Connection>,
    ) {
        let now = unix_now();
        let message = match self.store.blob(entries[0].blob).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                error!(queue_id = entries[0].id, "queued message data missing");
                return;
            }
            Err(e) => {
                error!(queue_id = entries[0].id, error = %e, "cannot read the queued message");
                return;
            }
        };
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
        if hato_delivery::route::received_count(&message) > hato_delivery::route::MAX_HOPS {
            for e in entries.drain(..) {
                let why = "554 5.4.6 too many Received headers: mail loop".to_string();
                let r = report(&e, "5.4.6", None, Some(why), now, None);
                failed.push((e, r));
            }
        }
        if !entries.is_empty() {
            match plan {
                Err((true, why)) => {
                    for e in entries.drain(..) {
                        let status = status_of(why);
                        let r = report(&e, &status, None, Some(why.clone()), now, None);
                        info!(queue_id = e.id, rcpt = %e.recipient, result = %why, "delivery failed");
                        failed.push((e, r));
                    }
                }
                Err((false, why)) => {
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
                        tls_optional: !entries[0].requiretls && tls_required_no(&message),
                    };
                    let more = self
                        .send(entries, &plan.hops, &ctx, &message, now, cached)
                        .await;
                    failed.extend(more);
                }
            }
        }
        if !failed.is_empty() {
            self.bounce(failed, &message, now).await;
        }
    }

    /// Tries the targets in order until one gives an answer; returns the entries to bounce.
    async fn send(
        &self,
        entries: Vec<QueueEntry>,
        targets: &[(String, SocketAddr)],
        ctx: &AttemptCtx<'_>,
        message: &[u8],
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
                let (outcome, _) = self
                    .transact(&mut conn, transaction(&entries, message))
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
            let handshake_failed =
                r.0.as_ref()
                    .and_then(|o| o.failure.as_ref())
                    .is_some_and(|f| *f == ClientFailure::TlsHandshakeFailed);
            if r.1.policy == SecurityLevel::May
                && handshake_failed
                && self.smarthost_for(host, *addr).is_none()
            {
                // Opportunistic TLS: a broken TLS stack must not stop the mail (Postfix does
                // the same); the attempt is recorded as plaintext with the reason.
                let why = r.1.error.clone().unwrap_or_default();
                warn!(host = %host, ip = %addr.ip(), error = %why, "TLS handshake failed; retrying in plaintext (tls_policy may)");
                // The failed TLS session is what TLS-RPT reports; the plaintext retry is not.
                self.record_session(ctx, host, *addr, &r.1, r.0.as_ref(), None, message)
                    .await;
                fell_back = true;
                if let Some(c) = r.3.take() {
                    self.close(c).await;
                }
                r = self
                    .attempt(host, *addr, transaction(&entries, message), true, ctx)
                    .await;
                r.1.error.get_or_insert_with(|| {
                    format!("plaintext after a failed TLS handshake: {why}")
                });
            }
            let (outcome, facts, error, conn) = r;
            if !fell_back {
                self.record_session(
                    ctx,
                    host,
                    *addr,
                    &facts,
                    outcome.as_ref(),
                    error.as_deref(),
                    message,
                )
                .await;
            }
            match outcome {
                None => {
                    let error = error.unwrap_or_default();
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
                        last_error = error.unwrap_or_default();
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

    /// Counts one SMTP session to an MX host for TLS-RPT (RFC 8460): TLS up and the policy met
    /// is a success, a classified TLS failure or a missing STARTTLS a failure; sessions that
    /// never reached TLS for other reasons (refused connection, plaintext by our own policy)
    /// and sessions carrying a report are not counted.
    #[allow(clippy::too_many_arguments)]
    async fn record_session(
        &self,
        ctx: &AttemptCtx<'_>,
        host: &str,
        addr: SocketAddr,
        facts: &TlsFacts,
        outcome: Option<&TransactionOutcome>,
        error: Option<&str>,
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
            }) || error.is_some_and(|e| e.contains("does not offer STARTTLS"));
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

    fn report(&self, domain: &str, policy: PolicyDesc, result: SessionResult) {
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
    async fn report_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(recorder) = self.reports.clone() else {
            return;
        };
        let mut wait = self.report_check.min(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {
                    let _ = recorder.flush();
                    return;
                }
            }
            wait = self.report_check;
            let today = tlsrpt::today();
            let due = {
                let r = recorder.clone();
                tokio::task::spawn_blocking(move || r.due_reports(today)).await
            };
            let due = match due {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    warn!(error = %e, "TLS reports: cannot read the journal");
                    continue;
                }
                Err(_) => continue,
            };
            for (day, domain, aggregate) in due {
                if let Err(e) = self.send_report(&recorder, day, &domain, &aggregate).await {
                    warn!(domain, error = %e, "TLS report not sent; will try again");
                }
            }
            if let Err(e) = recorder.prune(today) {
                warn!(error = %e, "TLS reports: cannot prune old journals");
            }
        }
    }

    async fn send_report(
        &self,
        recorder: &tlsrpt::Recorder,
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
            // The domain asks for no (mailed) reports.
            recorder.mark_sent(day, domain)?;
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
            data,
            local: Vec::new(),
            remote: Vec::new(),
            received_at: now,
        };
        for to in &rua {
            let domain = hato_store::recipient_domain(to);
            if self.local_domains.contains(&domain) {
                let address = crate::policy::normalize_address(to).unwrap_or(to.clone());
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
        recorder.mark_sent(day, domain)?;
        info!(domain, day = %day, to = %rua.join(","), failures = aggregate.total_failed(), successes = aggregate.total_successful(), "TLS report sent");
        Ok(())
    }

    /// Records a temporary failure. Returns the entry with a `failed` report if it expired
    /// (to bounce), or with a `delayed` report when it has now waited `delay_warning` (once:
    /// the first attempt after that point; a crash at the wrong moment may repeat it).
    async fn defer(
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
    async fn bounce(&self, failed: Vec<(QueueEntry, RecipientReport)>, message: &[u8], now: i64) {
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
            if let Err(err) = self.store.queue_delivered(e.id, e.claim).await {
                error!(queue_id = e.id, error = %err, "cannot remove the bounced entry");
            }
        }
    }

    /// Opens a connection to one address and runs one transaction on it. Returns the outcome
    /// (None: no SMTP session, with the error), the TLS facts, and the connection if it can take
    /// another transaction.
    async fn attempt(
        &self,
        host: &str,
        addr: SocketAddr,
        txn: Transaction,
        plaintext: bool,
        ctx: &AttemptCtx<'_>,
    ) -> (
        Option<TransactionOutcome>,
        TlsFacts,
        Option<String>,
        Option<Connection>,
    ) {
        let mut conn = match self.open(host, addr, plaintext, ctx).await {
            Ok(c) => c,
            Err((facts, error)) => return (None, facts, Some(error), None),
        };
        let (outcome, error) = self.transact(&mut conn, txn).await;
        let facts = conn.facts.clone();
        let open = (!conn.closed).then_some(conn);
        (outcome, facts, error, open)
    }

    /// TCP connection to one address, with a fresh client session (the greeting is read by
    /// the first transaction).
    async fn open(
        &self,
        host: &str,
        addr: SocketAddr,
        plaintext: bool,
        ctx: &AttemptCtx<'_>,
    ) -> Result<Connection, (TlsFacts, String)> {
        let mut facts = TlsFacts {
            host: host.to_owned(),
            ip: Some(addr.ip()),
            ..TlsFacts::default()
        };
        let smarthost = self.smarthost_for(host, addr);
        if let Some(sh) = smarthost {
            // What the smarthost connection demands, for the recorded TLS facts.
            facts.policy = match (sh.tls, sh.verify) {
                (SmarthostTls::None, _) => SecurityLevel::None,
                (_, true) => SecurityLevel::Verify,
                (_, false) => SecurityLevel::Encrypt,
            };
        }
        // What this destination demands: the policy table (and minimum), REQUIRETLS, and an
        // MTA-STS policy in enforce mode for MX hosts.
        let mut verify = None;
        let mut tls = TlsRequirement::None;
        let mut dane = None;
        let mut sts_testing = false;
        if smarthost.is_none() {
            // RFC 7672: TLSA records of the MX host, DNSSEC-validated, for DANE destinations.
            let dane_host = match &self.dane {
                Some(r)
                    if ctx.kind == HopKind::Mx
                        && !ctx.tls_optional
                        && self.table.wants_dane(ctx.domain) =>
                {
                    Some(r.lookup(host, addr.port()).await)
                }
                _ => None,
            };
            if let Some(h) = &dane_host {
                facts.tlsa = h.tlsa.records().to_vec();
            }
            match dane_host.as_ref().map(|d| d.status()) {
                Some(TlsaStatus::Failed) => {
                    facts.report = Some((FailureType::DnssecInvalid, "tlsa-lookup-failed".into()))
                }
                Some(TlsaStatus::Unusable) => {
                    facts.report = Some((FailureType::TlsaInvalid, "no-usable-tlsa".into()))
                }
                _ => {}
            }
            let mut req = self
                .table
                .requirements(
                    ctx.domain,
                    host,
                    dane_host.as_ref().map(|d| d.status()),
                    ctx.requiretls,
                )
                .map_err(|why| (facts.clone(), format!("451 4.7.5 {why}")))?;
            let enforced = matches!((ctx.kind, ctx.sts), (HopKind::Mx, Some(p)) if p.mode == StsMode::Enforce)
                && !ctx.tls_optional;
            if enforced && let Some(p) = ctx.sts {
                req = req
                    .with_mta_sts(p, host)
                    .map_err(|why| (facts.clone(), format!("451 4.7.5 {why}")))?;
            }
            facts.policy = req.applied;
            if matches!(req.verification, Verification::Dane { .. }) {
                if let Some(h) = &dane_host
                    && let Some(v) = h.verifier()
                {
                    dane = Some((v, h.base_domain.clone()));
                    verify = Some(VerifiedBy::Dane);
                }
            } else if req.verification_required() {
                verify = Some(if enforced {
                    VerifiedBy::MtaSts
                } else {
                    VerifiedBy::WebPki
                });
            }
            tls = if plaintext {
                TlsRequirement::None
            } else {
                req.tls
            };
            // RFC 8461 5: mode testing delivers as usual but reports what would have failed.
            sts_testing = verify.is_none()
                && matches!((ctx.kind, ctx.sts), (HopKind::Mx, Some(p)) if p.mode == StsMode::Testing);
        }
        let Some(slot) = self.ip_slot(addr.ip()).await else {
            let why = format!(
                "451 4.4.5 {addr}: {} connections already open (delivery.per_ip)",
                self.per_ip_limit
            );
            return Err((facts, why));
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((facts, format!("451 4.4.1 connect to {addr}: {e}"))),
            Err(_) => return Err((facts, format!("451 4.4.1 connect to {addr}: timed out"))),
        };
        let _ = tcp.set_nodelay(true);
        let mut config = ClientConfig::new(self.hostname.clone());
        if let Some(sh) = smarthost {
            config.auth = sh.credentials.clone();
            config.tls = match sh.tls {
                SmarthostTls::None => TlsRequirement::None,
                SmarthostTls::Starttls | SmarthostTls::Implicit => TlsRequirement::Required,
            };
            let io = if sh.tls == SmarthostTls::Implicit {
                config.already_tls = true;
                let limit = Duration::from_secs(60);
                let connector = &sh.connector;
                let verify = sh.verify.then_some(VerifiedBy::WebPki);
                match self
                    .handshake(connector, host, addr, tcp, limit, &mut facts, verify)
                    .await
                {
                    Some(tls) => Io::Tls(Box::new(tls)),
                    None => {
                        let why = facts.error.clone().unwrap_or_default();
                        return Err((facts, format!("451 4.7.5 {addr}: {why}")));
                    }
                }
            } else {
                Io::Plain(tcp)
            };
            let mut session = ClientSession::new(config);
            session.set_tls_verified(sh.verify && sh.tls == SmarthostTls::Implicit);
            return Ok(Connection {
                session,
                io,
                facts,
                host: host.to_owned(),
                addr,
                closed: false,
                verify: sh.verify.then_some(VerifiedBy::WebPki),
                dane: None,
                sts_testing: false,
                _slot: slot,
            });
        }
        config.tls = tls;
        Ok(Connection {
            session: ClientSession::new(config),
            io: Io::Plain(tcp),
            facts,
            host: host.to_owned(),
            addr,
            closed: false,
            verify,
            dane,
            sts_testing,
            _slot: slot,
        })
    }

    /// Runs one transaction on a connection: returns its outcome (None if the session could not
    /// take it) and, if the connection ended, why. `conn.closed` tells whether it can be reused.
    async fn transact(
        &self,
        conn: &mut Connection,
        txn: Transaction,
    ) -> (Option<TransactionOutcome>, Option<String>) {
        // For a server without 8BITMIME: the message again, converted to 7 bit (RFC 6152 3).
        let original = txn.clone();
        let mut downgraded = false;
        let mut pending: Option<Transaction> = None;
        if conn.session.next_transaction(txn).is_err() {
            return (None, Some("451 4.3.0 connection not ready".into()));
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
                    None if outcome.is_some() => return (outcome, None),
                    None => conn.session.quit(),
                },
                Some(ClientAction::Done(c)) => {
                    conn.io.shutdown().await;
                    conn.closed = true;
                    let error = c.failure.as_ref().map(|f| {
                        let mut s = f.to_string();
                        if let Some(e) = &conn.facts.error {
                            s = format!("{s} ({e})");
                        }
                        format!("451 4.4.2 {}: {s}", conn.addr)
                    });
                    return (outcome, error);
                }
                _ => {}
            }
        }
    }

    /// Ends a connection politely (QUIT).
    async fn close(&self, mut conn: Connection) {
        if conn.closed {
            return;
        }
        conn.session.quit();
        loop {
            if let Some(ClientAction::Done(_)) = self.step(&mut conn).await {
                conn.io.shutdown().await;
                return;
            }
        }
    }

    /// One poll of the session with its I/O done; returns the actions that concern the caller
    /// (TransactionDone, Ready, Done).
    async fn step(&self, conn: &mut Connection) -> Option<ClientAction> {
        let session = &mut conn.session;
        let limit = session.timeout().unwrap_or(Duration::from_secs(300));
        match session.poll() {
            ClientAction::Send(bytes) => {
                match tokio::time::timeout(limit, conn.io.write(&bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => session.connection_lost(),
                    Err(_) => session.timed_out(),
                }
            }
            ClientAction::NeedInput => {
                let mut buf = [0u8; 16 * 1024];
                match tokio::time::timeout(limit, conn.io.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => session.connection_lost(),
                    Ok(Ok(n)) => session.feed(&buf[..n]),
                    Err(_) => session.timed_out(),
                }
            }
            ClientAction::StartTls => self.starttls(conn, limit).await,
            other => return Some(other),
        }
        None
    }

    async fn starttls(&self, conn: &mut Connection, limit: Duration) {
        let Io::Plain(tcp) = std::mem::replace(&mut conn.io, Io::Closed) else {
            conn.session.tls_failed();
            return;
        };
        let (host, addr) = (conn.host.clone(), conn.addr);
        let verify = conn.verify;
        // DANE: a connector checking the TLSA records, SNI the TLSA base domain (RFC 7672 8.1).
        let dane = match &conn.dane {
            Some((v, sni)) => match v.client_config() {
                Ok(c) => Some((TlsConnector::from(Arc::new(c)), sni.clone())),
                Err(e) => {
                    conn.facts.error = Some(format!("DANE client set-up: {e}"));
                    conn.session.tls_failed();
                    return;
                }
            },
            None => None,
        };
        let would = (conn.sts_testing && dane.is_none())
            .then(|| Arc::new(Lenient::would_verify(self.webpki.clone())));
        let testing = match &would {
            Some(w) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                match rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                {
                    Ok(b) => Some(TlsConnector::from(Arc::new(
                        b.dangerous()
                            .with_custom_certificate_verifier(w.clone())
                            .with_no_client_auth(),
                    ))),
                    Err(_) => None,
                }
            }
            None => None,
        };
        let connector = match (&dane, &testing, self.smarthost_for(&host, addr)) {
            (Some((c, _)), _, _) => c,
            (None, _, Some(sh)) => &sh.connector,
            (None, _, None) if verify.is_some() => &self.tls_verify,
            (None, Some(c), None) => c,
            (None, None, None) => &self.tls_any,
        };
        let name = dane.as_ref().map(|(_, sni)| sni.as_str()).unwrap_or(&host);
        let done = self
            .handshake(connector, name, addr, tcp, limit, &mut conn.facts, verify)
            .await;
        if let (Some(_), Some((v, _))) = (&done, &conn.dane) {
            conn.facts.dane = v.matched().map(|m| m.describe());
        }
        if let (Some(_), Some(w)) = (&done, &would)
            && let Some(e) = w.take_failure()
        {
            let (kind, code) = FailureType::classify_tls_error(&e);
            info!(host = %host, error = %e, "MTA-STS testing: the certificate would not verify under enforce; delivering anyway");
            conn.facts.report = Some((kind, code.into()));
        }
        match done {
            Some(tls) => {
                conn.io = Io::Tls(Box::new(tls));
                conn.session.tls_established();
                conn.session.set_tls_verified(verify.is_some());
            }
            None => conn.session.tls_failed(),
        }
    }

    /// The client TLS handshake on `tcp`; fills `facts` (version, cipher, verified or error).
    #[allow(clippy::too_many_arguments)]
    async fn handshake(
        &self,
        connector: &TlsConnector,
        host: &str,
        addr: SocketAddr,
        tcp: TcpStream,
        limit: Duration,
        facts: &mut TlsFacts,
        verify: Option<VerifiedBy>,
    ) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            Some(ip) => ServerName::IpAddress(ip.into()),
            None => match ServerName::try_from(host.to_owned()) {
                Ok(n) => n,
                Err(_) => ServerName::IpAddress(addr.ip().into()),
            },
        };
        match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                let c = tls.get_ref().1;
                facts.version = hato_tls::version_name(c);
                facts.cipher = hato_tls::cipher_name(c);
                facts.verified = verify;
                Some(tls)
            }
            Ok(Err(e)) => {
                facts.error = Some(format!("TLS handshake failed: {e}"));
                let (kind, code) = match e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>())
                {
                    Some(tls) => FailureType::classify_tls_error(tls),
                    None => (FailureType::ValidationFailure, "handshake-failed"),
                };
                facts.report = Some((kind, code.into()));
                None
            }
            Err(_) => {
                facts.error = Some("TLS handshake timed out".into());
                facts.report = Some((FailureType::ValidationFailure, "handshake-timeout".into()));
                None
            }
        }
    }
}

/// An SMTP connection to one address (see [`Scheduler::attempt`]).
struct Connection {
    session: ClientSession,
    io: Io,
    facts: TlsFacts,
    host: String,
    addr: SocketAddr,
    /// The session is over (Done): not reusable.
    closed: bool,
    /// The certificate must verify (WebPKI roots plus `ca_file`, or DANE), and what asked for it.
    verify: Option<VerifiedBy>,
    /// DANE: the verifier built from the host's TLSA records, and the TLSA base domain (SNI).
    dane: Option<(Arc<DaneVerifier>, String)>,
    /// MTA-STS `testing`: check the certificate against WebPKI without enforcing it.
    sts_testing: bool,
    /// The `delivery.per_ip` slot, freed with the connection.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// How a domain's mail is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HopKind {
    /// Its MX hosts (MTA-STS applies).
    Mx,
    /// A `[[route]]`.
    Route,
    /// `[delivery.smarthost]`.
    Smarthost,
}

/// The next hops of a domain for one scheduling round.
struct Plan {
    /// (host name, address) in the order to try.
    hops: Vec<(String, SocketAddr)>,
    kind: HopKind,
    /// The domain's MTA-STS policy in force (enforce or testing).
    sts: Option<StsPolicy>,
}

/// What one message's delivery attempts must respect.
struct AttemptCtx<'a> {
    domain: &'a str,
    kind: HopKind,
    sts: Option<&'a StsPolicy>,
    requiretls: bool,
    /// `TLS-Required: No` (RFC 8689 5): MTA-STS does not stop the message.
    tls_optional: bool,
}

/// The message's header has `TLS-Required: No` (RFC 8689 5).
fn tls_required_no(message: &[u8]) -> bool {
    hato_smtp::message::header_value(message, "TLS-Required")
        .is_some_and(|v| v.eq_ignore_ascii_case("no"))
}

/// The SMTP transaction for the entries of one message.
fn transaction(entries: &[QueueEntry], message: &[u8]) -> Transaction {
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
    let mut t = Transaction::new(mail_from, std::iter::empty(), message.to_vec());
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

fn report(
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
fn status_of(line: &str) -> String {
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

fn one_line(r: &Reply) -> String {
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

/// A connection-level failure that another host may not have, with nothing delivered.
fn try_elsewhere(o: &TransactionOutcome) -> bool {
    o.failure.as_ref().is_some_and(|f| f.try_next_host())
        && o.recipients
            .iter()
            .all(|r| r.status != RecipientStatus::Delivered)
}

/// One log line per recipient of an attempt.
fn log_attempt(
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

fn tls_text(f: &TlsFacts) -> String {
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

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Closed,
}

impl Io {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
            Io::Closed => Ok(0),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
            Io::Closed => Ok(()),
        };
    }
}

/// A verifier that never refuses a certificate (opportunistic TLS: `may`, `encrypt`, as Postfix
/// does below `verify`) while the handshake signatures are still checked, so the session keys
/// are real. For MTA-STS `testing` (RFC 8461 5) it also checks the chain against WebPKI and
/// keeps the failure for the TLS report.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// Some: check the chain and remember why it would fail.
    failure: Option<Mutex<Option<rustls::Error>>>,
}

impl Lenient {
    fn accept_any(webpki: Arc<rustls::client::WebPkiServerVerifier>) -> Lenient {
        Lenient {
            webpki,
            failure: None,
        }
    }

    fn would_verify(webpki: Arc<rustls::client::WebPkiServerVerifier>) -> Lenient {
        Lenient {
            webpki,
            failure: Some(Mutex::new(None)),
        }
    }

    fn take_failure(&self) -> Option<rustls::Error> {
        self.failure
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(slot) = &self.failure
            && let Err(e) = self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_reply_line() {
        assert_eq!(status_of("550 5.1.1 no such user"), "5.1.1");
        assert_eq!(status_of("554 no"), "5.0.0");
        assert_eq!(status_of("451 4.4.1 connect failed"), "4.4.1");
        assert_eq!(status_of("450 busy"), "4.0.0");
    }

    #[test]
    fn route_hosts_parse() {
        use std::net::Ipv4Addr;
        assert_eq!(
            RouteHost::parse("[192.0.2.5]:25"),
            Some(RouteHost::Ip(
                IpAddr::from(Ipv4Addr::new(192, 0, 2, 5)),
                Some(25)
            ))
        );
        assert_eq!(
            RouteHost::parse("mx.partner.example:2525"),
            Some(RouteHost::Name("mx.partner.example".into(), Some(2525)))
        );
        assert_eq!(
            RouteHost::parse("MX.partner.example"),
            Some(RouteHost::Name("mx.partner.example".into(), None))
        );
        assert!(RouteHost::parse("[2001:db8::5]").is_some());
        assert_eq!(RouteHost::parse("mx:0"), None);
        assert_eq!(RouteHost::parse("[nope]:25"), None);
        assert_eq!(RouteHost::parse("bad host"), None);
    }
}
