//! The composition root: builds hato's services once (store, policy and auth throttling, TLS and
//! certificates, DNS, connection limits, shutdown, the queue waker) and hands each listener only
//! what its protocol uses, then runs them with the outbound scheduler until a signal stops them.
//!
//! This is the only module that knows every protocol; the protocol drivers (`smtp`, `pop3`,
//! `imap`, `https`) and the outbound scheduler (`delivery`) never import it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hato_store::Store;
use hato_tls::CertResolver;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::access::Access;
use crate::auth::Authenticator;
use crate::config::{BareLineEndings, Config, Listener as ListenerConfig, Protocol, TlsMode};
use crate::https::{HttpsService, Site};
use crate::imap::{HeaderCache, ImapService};
use crate::metrics::Metrics;
use crate::net::{Budget, ConnectionLimits, Listener, ServerTls, Service, Timeouts};
use crate::pop3::{MaildropLocks, Pop3Service};
use crate::smtp::SmtpService;

/// Memory for the IMAP header cache: about 20,000 messages' headers.
const HEADER_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Time for a mail listener's TLS handshake (implicit TLS or after STARTTLS/STLS).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the start-up summary says of a listener.
struct Described {
    protocol: Protocol,
    tls: TlsMode,
    require_tls: bool,
    bind: SocketAddr,
}

/// A bound, not yet serving, instance: created by [`Server::bind`] so start-up errors (ports in
/// use, certificates) surface before anything is announced.
pub struct Server {
    config: Config,
    dns: Result<Arc<dyn hato_dns::Resolver>, String>,
    listeners: Vec<(Listener, Described)>,
    store: Arc<dyn Store>,
    limits: Arc<ConnectionLimits>,
    outbound: Arc<tokio::sync::Notify>,
    /// Memory for mail in transit: SMTP and IMAP sessions and outbound delivery share it.
    data_budget: Arc<crate::net::DataBudget>,
    resolver: Option<Arc<CertResolver>>,
    tls_summary: String,
    shutdown_tx: watch::Sender<bool>,
    metrics: Metrics,
}

impl Server {
    pub async fn bind(
        config: Config,
        store: Arc<dyn Store>,
        tls: Option<(Arc<CertResolver>, String)>,
    ) -> anyhow::Result<Server> {
        let (shutdown_tx, shutdown) = watch::channel(false);
        // Before any listener exists, so every counter lands in the one recorder.
        let metrics = Metrics::install();
        let dns = resolver(&config);
        let auth = Arc::new(Authenticator::new(store.clone(), config.auth.clone())?);
        let access = Arc::new(
            Access::new(
                store.clone(),
                config.local_domains(),
                &config.hostname,
                config.relay_nets(),
            )
            .with_quota(config.limits.quota_bytes),
        );
        let (resolver, tls_summary) = match tls {
            Some((r, s)) => (Some(r), s),
            None => (None, "none".into()),
        };
        let mail_tls = resolver
            .as_ref()
            .map(|r| ServerTls::new(hato_tls::server_config(r.clone()), HANDSHAKE_TIMEOUT));
        let limits = &config.limits;
        let shared = Parts {
            auth,
            access,
            store: store.clone(),
            timeouts: Timeouts {
                command: Duration::from_secs(limits.command_timeout_secs),
                unauthenticated: Duration::from_secs(limits.unauthenticated_timeout_secs),
                data: Duration::from_secs(limits.data_timeout_secs),
            },
            shutdown,
            outbound: Arc::new(tokio::sync::Notify::new()),
            header_cache: Arc::new(HeaderCache::new(HEADER_CACHE_BYTES)),
            pop3_locks: Arc::new(MaildropLocks::default()),
            data_budget: crate::net::DataBudget::new(limits.max_data_in_flight),
            spool_dir: crate::spool::dir(&config.data_dir)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot make the spool directory {}: {e} (it must be writable by hato)",
                        config.data_dir.join("spool").display()
                    )
                })?
                .into(),
            dns: dns.as_ref().ok().cloned(),
            https: https_site(&config, resolver.as_ref()),
        };
        let mut listeners = Vec::new();
        for l in &config.listeners {
            if l.tls != TlsMode::None && mail_tls.is_none() {
                anyhow::bail!("listener {}: TLS configured but no certificate", l.bind);
            }
            let socket = TcpListener::bind(l.bind).await.map_err(|e| {
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrInUse => {
                        "another program uses this port: stop it or change `bind`"
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        "ports below 1024 need root or CAP_NET_BIND_SERVICE"
                    }
                    _ => "check the address",
                };
                anyhow::anyhow!("listener.bind = \"{}\": {e} ({hint})", l.bind)
            })?;
            let bind = socket.local_addr()?;
            let service = service(&config, l, &shared)?;
            let (implicit_tls, starttls) = match (l.protocol, l.tls) {
                (Protocol::Https, _) => (shared.https.as_ref().map(|site| site.tls()), None),
                (_, TlsMode::Implicit) => (mail_tls.clone(), None),
                (_, TlsMode::Starttls) => (None, mail_tls.clone()),
                (_, TlsMode::None) => (None, None),
            };
            let described = Described {
                protocol: l.protocol,
                tls: l.tls,
                require_tls: l.require_tls(),
                bind,
            };
            let listener = Listener {
                socket,
                service,
                implicit_tls,
                starttls,
                budget: Budget::new(l.max_connections(limits)),
            };
            listeners.push((listener, described));
        }
        Ok(Server {
            dns,
            limits: ConnectionLimits::new(limits.max_connections, limits.max_connections_per_ip),
            outbound: shared.outbound,
            data_budget: shared.data_budget,
            config,
            listeners,
            store,
            resolver,
            tls_summary,
            shutdown_tx,
            metrics,
        })
    }

    /// The process's counters (connections, AUTH, messages, deliveries), for `/metrics`.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The human summary printed at start-up.
    pub fn summary(&self, config_path: Option<&std::path::Path>) -> String {
        let mut s = format!(
            "hato {} is running\n  hostname   {}\n  domains    {}\n  data dir   {} (SQLite store hato.db)\n  TLS        {}\n",
            env!("CARGO_PKG_VERSION"),
            self.config.hostname,
            self.config.local_domains().join(", "),
            self.config.data_dir.display(),
            self.tls_summary,
        );
        for (i, (_, l)) in self.listeners.iter().enumerate() {
            let what = match (l.protocol, l.tls) {
                (Protocol::Smtp, TlsMode::None) => "incoming mail, plaintext only",
                (Protocol::Smtp, TlsMode::Starttls) if l.require_tls => {
                    "incoming mail, STARTTLS required"
                }
                (Protocol::Smtp, TlsMode::Starttls) => "incoming mail, STARTTLS offered",
                (Protocol::Smtp, TlsMode::Implicit) => "incoming mail, implicit TLS",
                (Protocol::Submission, TlsMode::None) => "submission, plaintext (AUTH impossible)",
                (Protocol::Submission, TlsMode::Starttls) if l.require_tls => {
                    "submission, STARTTLS required, AUTH required"
                }
                (Protocol::Submission, TlsMode::Starttls) => "submission, STARTTLS, AUTH required",
                (Protocol::Submission, TlsMode::Implicit) => {
                    "submission, implicit TLS, AUTH required"
                }
                (Protocol::Pop3, TlsMode::None) => "POP3, plaintext (login impossible)",
                (Protocol::Pop3, TlsMode::Starttls) => "POP3, STLS required before login",
                (Protocol::Pop3, TlsMode::Implicit) => "POP3, implicit TLS",
                (Protocol::Imap, TlsMode::None) => "IMAP, plaintext (login impossible)",
                (Protocol::Imap, TlsMode::Starttls) => "IMAP, STARTTLS required before login",
                (Protocol::Imap, TlsMode::Implicit) => "IMAP, implicit TLS",
                (Protocol::Https, _) => "HTTPS, MTA-STS policy of the local domains",
            };
            let proto = l.protocol.name();
            let head = if i == 0 { "listeners" } else { "" };
            s += &format!(
                "  {head:<10} {proto:<11} {:<22} {what}\n",
                l.bind.to_string()
            );
        }
        let cfg = config_path
            .map(|p| format!(" --config {}", p.display()))
            .unwrap_or_default();
        let domain = self.config.local_domains()[0].clone();
        s += &format!("  add a user: hato{cfg} user add you@{domain}\n");
        s
    }

    /// The bound address of each listener, in configuration order (a `bind` with port 0 gets
    /// one from the system: tests read it here).
    pub fn local_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(_, d)| (d.protocol, d.bind))
            .collect()
    }

    /// Serves until SIGINT/SIGTERM (certificates reload on SIGHUP), then lets running sessions
    /// finish (up to 10 s).
    pub async fn run(self) -> anyhow::Result<()> {
        // Install every handler before serving: a signal that arrives before its handler exists
        // would kill the process with its default action.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        self.serve(stop, Some(hup)).await
    }

    /// Serves until `stop` completes, then lets running sessions finish (up to 10 s): the
    /// library entry point for embedding and in-process tests.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.serve(stop, None).await
    }

    async fn serve(
        self,
        stop: impl std::future::Future<Output = ()>,
        hup: Option<tokio::signal::unix::Signal>,
    ) -> anyhow::Result<()> {
        let Server {
            config,
            dns,
            listeners,
            store,
            limits,
            outbound,
            data_budget,
            resolver,
            shutdown_tx,
            ..
        } = self;
        if let Some(r) = resolver {
            let check = config
                .tls
                .as_ref()
                .map(|t| t.reload_check_secs)
                .unwrap_or(10);
            tokio::spawn(reload_certificates(r, hup, check));
        }
        let shutdown = shutdown_tx.subscribe();
        crate::outbound::spawn(
            &config,
            store.clone(),
            dns,
            outbound,
            shutdown.clone(),
            data_budget,
        )?;
        tokio::spawn(prune_shared_state(store.clone(), shutdown.clone()));
        let accepting: Vec<_> = listeners
            .into_iter()
            .map(|(listener, _)| tokio::spawn(listener.run(limits.clone(), shutdown.clone())))
            .collect();
        stop.await;
        info!("shutting down: no new connections, telling sessions to finish");
        let _ = shutdown_tx.send(true);
        // The listening sockets are closed when their accept loops have ended.
        for task in accepting {
            let _ = task.await;
        }
        if !limits.drain(Duration::from_secs(10)).await {
            warn!("some sessions did not finish within 10 s");
        }
        info!("stopped");
        Ok(())
    }
}

/// The MTA-STS policy host shared by all `https` listeners (None without such a listener or
/// without certificates). Logs the policy id to publish and the policy hosts the certificates
/// do not cover.
fn https_site(config: &Config, resolver: Option<&Arc<CertResolver>>) -> Option<Arc<Site>> {
    let resolver = resolver?;
    if !config
        .listeners
        .iter()
        .any(|l| l.protocol == Protocol::Https)
    {
        return None;
    }
    let domains = config.local_domains();
    let site = Site::new(&config.mta_sts_policy(), &domains, resolver.clone());
    info!(
        hosts = %site.hosts().join(", "),
        id = site.policy_id(),
        "MTA-STS policy served; the _mta-sts TXT records must say \"v=STSv1; id={}\" (hato dns prints them)",
        site.policy_id()
    );
    let uncovered = crate::https::uncovered_hosts(resolver, &domains);
    if !uncovered.is_empty() {
        warn!(
            hosts = %uncovered.join(", "),
            "no certificate covers these MTA-STS policy hosts: senders will not accept the policy; add the names to the certificate"
        );
    }
    Some(Arc::new(site))
}

/// What the services share, built once.
struct Parts {
    auth: Arc<Authenticator>,
    access: Arc<Access>,
    store: Arc<dyn Store>,
    timeouts: Timeouts,
    shutdown: crate::net::Shutdown,
    outbound: Arc<tokio::sync::Notify>,
    header_cache: Arc<HeaderCache>,
    pop3_locks: Arc<MaildropLocks>,
    data_budget: Arc<crate::net::DataBudget>,
    spool_dir: Arc<std::path::Path>,
    /// For the reverse DNS name of SMTP clients (Received headers); None without a resolver.
    dns: Option<Arc<dyn hato_dns::Resolver>>,
    https: Option<Arc<Site>>,
}

/// The one DNS resolver, shared by inbound (FCrDNS), outbound (MX, MTA-STS, TLS-RPT) and
/// the services to come; the error says why there is none.
fn resolver(config: &Config) -> Result<Arc<dyn hato_dns::Resolver>, String> {
    match hato_dns::HickoryResolver::new(&config.dns_config()) {
        Ok(r) => Ok(Arc::new(r)),
        Err(e) => {
            warn!(error = %e, "no DNS resolver: Received headers show client addresses only, and mail to domains without [[route]] is deferred");
            Err(e.to_string())
        }
    }
}

/// The service of one configured listener, with only what its protocol uses.
fn service(config: &Config, l: &ListenerConfig, parts: &Parts) -> anyhow::Result<Arc<dyn Service>> {
    let lim = &config.limits;
    Ok(match l.protocol {
        Protocol::Smtp | Protocol::Submission => Arc::new(SmtpService {
            config: Arc::new(hato_smtp::Config {
                hostname: config.hostname.clone(),
                mode: if l.protocol == Protocol::Smtp {
                    hato_smtp::Mode::Mx
                } else {
                    hato_smtp::Mode::Submission
                },
                starttls: l.tls == TlsMode::Starttls,
                require_tls: l.require_tls(),
                max_message_size: lim.max_message_size,
                max_recipients: lim.max_recipients,
                max_errors: lim.max_errors,
                max_command_line: lim.max_command_line,
                max_text_line: lim.max_text_line,
                bare_line_endings: match l.bare_line_endings {
                    BareLineEndings::Reject => hato_smtp::BareLinePolicy::Reject,
                    BareLineEndings::Normalize => hato_smtp::BareLinePolicy::Normalize,
                },
                reject_early_talkers: l.greeting_delay_ms() > 0,
            }),
            protocol: l.protocol,
            greeting_delay: Duration::from_millis(l.greeting_delay_ms()),
            hostname: config.hostname.clone(),
            auth: parts.auth.clone(),
            access: parts.access.clone(),
            timeouts: parts.timeouts,
            shutdown: parts.shutdown.clone(),
            outbound: parts.outbound.clone(),
            dns: parts.dns.clone(),
            data_budget: parts.data_budget.clone(),
            spool_dir: parts.spool_dir.clone(),
        }),
        Protocol::Pop3 => Arc::new(Pop3Service {
            config: Arc::new(hato_pop3::Config {
                hostname: config.hostname.clone(),
                stls: l.tls == TlsMode::Starttls,
                max_errors: lim.max_errors,
                max_command_line: lim.max_command_line,
            }),
            auth: parts.auth.clone(),
            store: parts.store.clone(),
            timeouts: parts.timeouts,
            shutdown: parts.shutdown.clone(),
            locks: parts.pop3_locks.clone(),
        }),
        Protocol::Imap => {
            let mut limits = hato_imap::Limits::default();
            limits.max_append_literal = lim.max_message_size as u64;
            limits.max_command = limits
                .max_command
                .max(limits.max_append_literal.saturating_add(1024 * 1024));
            Arc::new(ImapService {
                config: Arc::new(hato_imap::Config {
                    hostname: config.hostname.clone(),
                    starttls: l.tls == TlsMode::Starttls,
                    limits,
                    pre_auth_limits: hato_imap::Limits::pre_auth(),
                    max_errors: lim.max_errors.max(1),
                    quota_bytes: lim.quota_bytes,
                }),
                auth: parts.auth.clone(),
                store: parts.store.clone(),
                timeouts: parts.timeouts,
                shutdown: parts.shutdown.clone(),
                header_cache: parts.header_cache.clone(),
                data_budget: parts.data_budget.clone(),
                spool_dir: parts.spool_dir.clone(),
            })
        }
        Protocol::Https => Arc::new(HttpsService {
            site: parts
                .https
                .clone()
                .with_context(|| format!("listener {}: https needs a certificate", l.bind))?,
            shutdown: parts.shutdown.clone(),
        }),
    })
}

/// How often expired shared state (failure counters, leases, cache entries) is deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Deletes expired shared state now and then: expired rows already count as absent, this only
/// keeps the tables small (every node does it; the deletes are idempotent).
async fn prune_shared_state(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.prune_expired(hato_wire::date::unix_now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned expired shared state"),
            Err(e) => warn!(error = %e, "cannot prune expired shared state"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Reloads certificates on SIGHUP (when `hup` is given) and when their files change (e.g. certbot renewals).
async fn reload_certificates(
    resolver: Arc<CertResolver>,
    mut hup: Option<tokio::signal::unix::Signal>,
    check_secs: u64,
) {
    let period = Duration::from_secs(check_secs.max(1));
    loop {
        let reason = tokio::select! {
            Some(_) = async { hup.as_mut()?.recv().await } => "SIGHUP",
            _ = tokio::time::sleep(period), if check_secs > 0 => {
                if !resolver.files_changed() { continue; }
                "files changed"
            }
            else => return,
        };
        let r = resolver.clone();
        match tokio::task::spawn_blocking(move || r.reload()).await {
            Ok(Ok(warnings)) => {
                info!(reason, "certificates reloaded");
                for w in warnings {
                    warn!("{w}");
                }
            }
            Ok(Err(e)) => {
                error!(reason, error = %e, "certificate reload failed; still serving the previous certificates")
            }
            Err(e) => error!(error = %e, "certificate reload task failed"),
        }
    }
}
