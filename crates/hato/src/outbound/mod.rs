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
use hato_delivery::route::{LocalIdentity, Router, prune_self};
use hato_delivery::tls_policy::{
    PolicyTable, SecurityLevel, TlsFacts, TlsaStatus, Verification, VerifiedBy,
};
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
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsConnector;
use tracing::{error, info, warn};

use crate::config::{Config, RouteHost, SmarthostConfig, SmarthostTls};
use hato_wire::date::unix_now;

mod connect;
mod outcome;
mod plan;
mod tls_reports;
mod transact;

use connect::*;
use outcome::*;
use plan::*;
use transact::*;

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
    /// Memory for mail in transit, shared with the listeners: a message is read from the
    /// queue only when its size fits (it is held in memory while it is sent)...
    data_budget: Arc<crate::net::DataBudget>,
    /// ...and outbound delivery as a whole holds at most half of it, so slow remote servers
    /// never leave the listeners without room.
    outbound_budget: Arc<crate::net::DataBudget>,
}

/// One destination domain's claimed messages and its running workers.
struct DomainWork {
    queue: std::collections::VecDeque<Vec<QueueEntry>>,
    workers: usize,
    /// Where the domain's mail goes; looked up again after a minute.
    plan: Arc<tokio::sync::OnceCell<Result<Plan, PlanError>>>,
    planned_at: std::time::Instant,
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
    dns: Result<Arc<dyn hato_dns::Resolver>, String>,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    data_budget: Arc<crate::net::DataBudget>,
) -> anyhow::Result<()> {
    let scheduler = Arc::new(Scheduler::new(config, store, dns, data_budget)?);
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
    fn new(
        config: &Config,
        store: Arc<dyn Store>,
        resolver: Result<Arc<dyn hato_dns::Resolver>, String>,
        data_budget: Arc<crate::net::DataBudget>,
    ) -> anyhow::Result<Scheduler> {
        let d = &config.delivery;
        let dns = config.dns_config();
        let (router, router_error) = match resolver {
            Ok(r) => (
                Some(Router::with_resolver(r, Default::default())),
                String::new(),
            ),
            Err(e) => (None, e),
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
                    // In the store: a restarted process and every other node start from the
                    // policies already fetched (RFC 8461 5.1).
                    cache: Some(Arc::new(crate::shared_state::StorePolicyCache::new(
                        store.clone(),
                    ))),
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
        // Counted in the store: the sessions of every node make one report per domain and day.
        let reports = d.tls_reports.then(|| {
            tlsrpt::Recorder::new(Arc::new(crate::shared_state::StoreReportLedger::new(
                store.clone(),
            )))
        });
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
            outbound_budget: crate::net::DataBudget::new(data_budget.max() / 2),
            data_budget,
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
    fn connect_errors_are_reply_lines() {
        let addr: SocketAddr = "192.0.2.1:25".parse().unwrap();
        let cases = [
            (ConnectError::Policy("no TLS".into()), "451 4.7.5 no TLS"),
            (
                ConnectError::PerIp { addr, limit: 2 },
                "451 4.4.5 192.0.2.1:25: 2 connections already open (delivery.per_ip)",
            ),
            (
                ConnectError::Connect {
                    addr,
                    error: "timed out".into(),
                },
                "451 4.4.1 connect to 192.0.2.1:25: timed out",
            ),
            (
                ConnectError::Tls {
                    addr,
                    error: "bad certificate".into(),
                },
                "451 4.7.5 192.0.2.1:25: bad certificate",
            ),
        ];
        for (error, line) in cases {
            assert_eq!(error.to_string(), line);
            assert_eq!(status_of(line), &line[4..9]);
        }
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
