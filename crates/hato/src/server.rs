//! The tokio edge: binds listeners, accepts connections, applies connection limits, performs TLS
//! handshakes (STARTTLS and implicit, RFC 3207/2595 and RFC 8314) and hands each connection to its
//! protocol driver (`smtp.rs`, `pop3.rs`, `imap.rs`). Protocol rules live in the sans-IO crates, not here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hato_store::Store;
use hato_tls::CertResolver;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{BareLineEndings, Config, Listener, Protocol, TlsMode};
use crate::policy::Policy;

/// Everything a connection needs, shared by all listeners.
/// Memory for [`Shared::header_cache`]: about 20,000 messages' headers.
const HEADER_CACHE_BYTES: usize = 16 * 1024 * 1024;

pub(crate) struct Shared {
    pub hostname: String,
    pub policy: Policy,
    pub acceptor: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    pub command_timeout: Duration,
    pub unauthenticated_timeout: Duration,
    pub data_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// Accounts whose maildrop a POP3 session holds (RFC 1939 exclusive lock).
    pub pop3_locks: Mutex<std::collections::HashSet<hato_store::AccountId>>,
    /// Wakes the outbound delivery scheduler when mail for remote recipients was queued.
    pub outbound: Arc<tokio::sync::Notify>,
    /// Decoded header fields of messages, for IMAP SEARCH on header keys.
    pub header_cache: crate::imap::HeaderCache,
    /// For the reverse DNS name of SMTP clients (Received headers); None without a resolver.
    pub dns: Option<hato_delivery::route::Router>,
}

/// The protocol-specific configuration of a listener.
pub(crate) enum ProtocolConfig {
    Smtp(Arc<hato_smtp::Config>),
    Pop3(Arc<hato_pop3::Config>),
    Imap(Arc<hato_imap::Config>),
    Https(Arc<crate::https::Site>),
}

pub(crate) struct ListenerCtx {
    pub protocol: Protocol,
    pub tls: TlsMode,
    pub bind: SocketAddr,
    pub greeting_delay: Duration,
    pub config: ProtocolConfig,
    pub require_tls: bool,
}

/// A bound, not yet serving, instance: created by [`Server::bind`] so start-up errors (ports in
/// use, certificates) surface before anything is announced.
pub struct Server {
    config: Config,
    listeners: Vec<(TcpListener, Arc<ListenerCtx>)>,
    shared: Arc<Shared>,
    resolver: Option<Arc<CertResolver>>,
    tls_summary: String,
    shutdown_tx: watch::Sender<bool>,
}

impl Server {
    pub async fn bind(
        config: Config,
        store: Arc<dyn Store>,
        tls: Option<(Arc<CertResolver>, String)>,
    ) -> anyhow::Result<Server> {
        let https_site = https_site(&config, tls.as_ref().map(|t| &t.0));
        let mut listeners = Vec::new();
        for l in &config.listeners {
            if l.tls != TlsMode::None && tls.is_none() {
                anyhow::bail!("listener {}: TLS configured but no certificate", l.bind);
            }
            let sock = TcpListener::bind(l.bind).await.map_err(|e| {
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
            let bind = sock.local_addr()?;
            let ctx = listener_ctx(&config, l, bind, https_site.as_ref())?;
            listeners.push((sock, Arc::new(ctx)));
        }
        let (shutdown_tx, shutdown) = watch::channel(false);
        let policy = Policy::new(
            store,
            config.local_domains(),
            &config.hostname,
            config.auth.clone(),
            config.relay_nets(),
        )?
        .with_quota(config.limits.quota_bytes);
        let (resolver, tls_summary) = match tls {
            Some((r, s)) => (Some(r), s),
            None => (None, "none".into()),
        };
        let acceptor = resolver
            .as_ref()
            .map(|r| TlsAcceptor::from(hato_tls::server_config(r.clone())));
        let limits = &config.limits;
        let shared = Arc::new(Shared {
            hostname: config.hostname.clone(),
            policy,
            acceptor,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: limits.max_connections_per_ip,
            command_timeout: Duration::from_secs(limits.command_timeout_secs),
            unauthenticated_timeout: Duration::from_secs(limits.unauthenticated_timeout_secs),
            data_timeout: Duration::from_secs(limits.data_timeout_secs),
            shutdown,
            pop3_locks: Mutex::new(Default::default()),
            outbound: Arc::new(tokio::sync::Notify::new()),
            header_cache: crate::imap::HeaderCache::new(HEADER_CACHE_BYTES),
            dns: {
                let dns = hato_delivery::route::DnsConfig {
                    nameservers: config.dns.nameservers.clone(),
                    timeout: Duration::from_secs(config.dns.timeout_secs),
                    ..Default::default()
                };
                match hato_delivery::route::Router::new(&dns, Default::default()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        warn!(error = %e, "no DNS resolver: Received headers show client addresses only");
                        None
                    }
                }
            },
        });
        Ok(Server {
            config,
            listeners,
            shared,
            resolver,
            tls_summary,
            shutdown_tx,
        })
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

    /// Serves until SIGINT/SIGTERM, then lets running sessions finish (up to 10 s).
    pub async fn run(self) -> anyhow::Result<()> {
        let Server {
            config,
            listeners,
            shared,
            resolver,
            shutdown_tx,
            ..
        } = self;
        // Install every handler before serving: a signal that arrives before its handler exists
        // would kill the process with its default action.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        if let Some(r) = resolver {
            let check = config
                .tls
                .as_ref()
                .map(|t| t.reload_check_secs)
                .unwrap_or(10);
            tokio::spawn(reload_certificates(r, hup, check));
        }
        crate::delivery::spawn(
            &config,
            shared.policy.store().clone(),
            shared.outbound.clone(),
            shared.shutdown.clone(),
        )?;
        for (sock, ctx) in listeners {
            tokio::spawn(accept_loop(sock, ctx, shared.clone()));
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("shutting down: no new connections, telling sessions to finish");
        let _ = shutdown_tx.send(true);
        let max = config.limits.max_connections as u32;
        let drained = tokio::time::timeout(
            Duration::from_secs(10),
            shared.connections.acquire_many(max),
        )
        .await;
        if drained.is_err() {
            warn!("some sessions did not finish within 10 s");
        }
        info!("stopped");
        Ok(())
    }
}

/// The MTA-STS policy host shared by all `https` listeners (None without such a listener or
/// without certificates). Logs the policy id to publish and the policy hosts the certificates
/// do not cover.
fn https_site(
    config: &Config,
    resolver: Option<&Arc<CertResolver>>,
) -> Option<Arc<crate::https::Site>> {
    let resolver = resolver?;
    if !config
        .listeners
        .iter()
        .any(|l| l.protocol == Protocol::Https)
    {
        return None;
    }
    let domains = config.local_domains();
    let site = crate::https::Site::new(&config.mta_sts_policy(), &domains, resolver.clone());
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

fn listener_ctx(
    config: &Config,
    l: &Listener,
    bind: SocketAddr,
    https: Option<&Arc<crate::https::Site>>,
) -> anyhow::Result<ListenerCtx> {
    let lim = &config.limits;
    let protocol_config = match l.protocol {
        Protocol::Smtp | Protocol::Submission => {
            ProtocolConfig::Smtp(Arc::new(hato_smtp::Config {
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
            }))
        }
        Protocol::Pop3 => ProtocolConfig::Pop3(Arc::new(hato_pop3::Config {
            hostname: config.hostname.clone(),
            stls: l.tls == TlsMode::Starttls,
            max_errors: lim.max_errors,
            max_command_line: lim.max_command_line,
        })),
        Protocol::Imap => {
            let mut limits = hato_imap::Limits::default();
            limits.max_append_literal = lim.max_message_size as u64;
            limits.max_command = limits
                .max_command
                .max(limits.max_append_literal.saturating_add(1024 * 1024));
            ProtocolConfig::Imap(Arc::new(hato_imap::Config {
                hostname: config.hostname.clone(),
                starttls: l.tls == TlsMode::Starttls,
                limits,
                pre_auth_limits: hato_imap::Limits::pre_auth(),
                max_errors: lim.max_errors.max(1),
                quota_bytes: lim.quota_bytes,
            }))
        }
        Protocol::Https => ProtocolConfig::Https(
            https
                .cloned()
                .with_context(|| format!("listener {}: https needs a certificate", l.bind))?,
        ),
    };
    Ok(ListenerCtx {
        protocol: l.protocol,
        tls: l.tls,
        bind,
        greeting_delay: Duration::from_millis(l.greeting_delay_ms()),
        config: protocol_config,
        require_tls: l.require_tls(),
    })
}

/// Reloads certificates on SIGHUP and when their files change (e.g. certbot renewals).
async fn reload_certificates(
    resolver: Arc<CertResolver>,
    mut hup: tokio::signal::unix::Signal,
    check_secs: u64,
) {
    let period = Duration::from_secs(check_secs.max(1));
    loop {
        let reason = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tokio::time::sleep(period), if check_secs > 0 => {
                if !resolver.files_changed() { continue; }
                "files changed"
            }
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

async fn accept_loop(sock: TcpListener, ctx: Arc<ListenerCtx>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            r = sock.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(listener = %ctx.bind, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let id = session_id();
        let span = info_span!("session", id = %id, listener = %ctx.bind, peer = %peer);
        let (ctx, shared) = (ctx.clone(), shared.clone());
        // Each session is its own task: a panic in one never touches another.
        tokio::spawn(connection(stream, peer, ctx, shared).instrument(span));
    }
}

fn session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt: u16 = rand::random();
    format!("{:X}{:04X}{n:X}", unix_now(), salt)
}

pub(crate) use hato_wire::date::unix_now;

/// The refusal sent when a connection limit is reached, in the listener's protocol.
fn busy_reply(protocol: Protocol, hostname: &str, why: &str) -> String {
    match protocol {
        Protocol::Smtp | Protocol::Submission => {
            format!("421 4.7.0 {hostname} {why}, try again later\r\n")
        }
        Protocol::Pop3 => format!("-ERR [SYS/TEMP] {why}, try again later\r\n"),
        Protocol::Imap => format!("* BYE [UNAVAILABLE] {why}, try again later\r\n"),
        // The client expects a TLS handshake: nothing readable can be said.
        Protocol::Https => String::new(),
    }
}

/// How many 10 ms waits a connection over `max_connections_per_ip` gets before its 421.
const PER_IP_GRACE_STEPS: usize = 20;

/// Releases the per-IP connection slot when the connection ends, however it ends.
struct IpSlot<'a> {
    shared: &'a Shared,
    ip: IpAddr,
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
) {
    let started = Instant::now();
    let Ok(_permit) = shared.connections.clone().try_acquire_owned() else {
        warn!("refused: too many connections");
        let msg = busy_reply(ctx.protocol, &shared.hostname, "Too many connections");
        let _ = stream.write_all(msg.as_bytes()).await;
        return;
    };
    let ip = peer.ip();
    let admit = || {
        let mut map = shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n < shared.max_per_ip {
            *n += 1;
            true
        } else {
            false
        }
    };
    // A client at its limit that reconnects at once may be a moment ahead of its previous
    // connection's clean-up (the slot is freed just after the socket closes): grant a grace.
    let mut admitted = admit();
    for _ in 0..PER_IP_GRACE_STEPS {
        if admitted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        admitted = admit();
    }
    let _slot = admitted.then(|| IpSlot {
        shared: &shared,
        ip,
    });
    if !admitted {
        warn!("refused: too many connections from this address");
        let msg = busy_reply(
            ctx.protocol,
            &shared.hostname,
            "Too many connections from your address",
        );
        let _ = stream.write_all(msg.as_bytes()).await;
        return;
    }
    info!(protocol = ctx.protocol.name(), tls = ?ctx.tls, "connect");
    let result = match &ctx.config {
        ProtocolConfig::Smtp(config) => {
            crate::smtp::serve(stream, peer, config.clone(), &ctx, &shared).await
        }
        ProtocolConfig::Pop3(config) => {
            crate::pop3::serve(stream, peer, config.clone(), &ctx, &shared).await
        }
        ProtocolConfig::Imap(config) => {
            crate::imap::serve(stream, peer, config.clone(), &ctx, &shared).await
        }
        ProtocolConfig::Https(site) => {
            crate::https::serve(stream, site.clone(), shared.shutdown.clone()).await
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(counts) => info!(duration_ms, counts = %counts, "disconnect"),
        Err(e) => info!(duration_ms, error = %e, "disconnect"),
    }
}

/// Performs the TLS handshake on an accepted connection (implicit TLS, or after STARTTLS/STLS).
pub(crate) async fn handshake(
    shared: &Shared,
    stream: TcpStream,
) -> anyhow::Result<(
    tokio_rustls::server::TlsStream<TcpStream>,
    hato_tls::TlsInfo,
)> {
    let acceptor = shared
        .acceptor
        .as_ref()
        .context("TLS requested on a listener without certificates")?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake failed")?;
    let facts = hato_tls::session_facts(tls.get_ref().1);
    info!(version = %facts.version, cipher = %facts.cipher, sni = facts.sni.as_deref().unwrap_or("-"), "TLS established");
    Ok((tls, facts))
}

/// Writes bytes to the client; a client that stops reading is cut off after `timeout`.
pub(crate) async fn write_with_timeout<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(timeout, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    .context("timed out writing to the client")??;
    Ok(())
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
