//! The tokio edge: binds listeners, accepts connections, runs TLS (STARTTLS and implicit, RFC 3207
//! and RFC 8314) and drives the sans-IO SMTP session from `hato-smtp`, answering its questions with
//! [`Policy`] and the store. Nothing SMTP-specific is decided here; this file moves bytes, applies
//! timeouts and connection limits, and logs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hato_smtp::{Action, Session};
use hato_store::{Account, Delivery, Store};
use hato_tls::CertResolver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::{BareLineEndings, Config, Listener, Protocol, TlsMode};
use crate::policy::{Policy, Target};

/// Everything a connection needs, shared by all listeners.
struct Shared {
    hostname: String,
    policy: Policy,
    acceptor: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    command_timeout: Duration,
    unauthenticated_timeout: Duration,
    data_timeout: Duration,
    shutdown: watch::Receiver<bool>,
}

struct ListenerCtx {
    protocol: Protocol,
    tls: TlsMode,
    bind: SocketAddr,
    greeting_delay: Duration,
    smtp: Arc<hato_smtp::Config>,
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
            listeners.push((sock, Arc::new(listener_ctx(&config, l, bind))));
        }
        let (shutdown_tx, shutdown) = watch::channel(false);
        let policy = Policy::new(
            store,
            config.local_domains(),
            &config.hostname,
            config.auth.clone(),
        )?;
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
                (Protocol::Smtp, TlsMode::Starttls) if l.smtp.require_tls => {
                    "incoming mail, STARTTLS required"
                }
                (Protocol::Smtp, TlsMode::Starttls) => "incoming mail, STARTTLS offered",
                (Protocol::Smtp, TlsMode::Implicit) => "incoming mail, implicit TLS",
                (Protocol::Submission, TlsMode::None) => "submission, plaintext (AUTH impossible)",
                (Protocol::Submission, TlsMode::Starttls) if l.smtp.require_tls => {
                    "submission, STARTTLS required, AUTH required"
                }
                (Protocol::Submission, TlsMode::Starttls) => "submission, STARTTLS, AUTH required",
                (Protocol::Submission, TlsMode::Implicit) => {
                    "submission, implicit TLS, AUTH required"
                }
            };
            let proto = match l.protocol {
                Protocol::Smtp => "smtp",
                Protocol::Submission => "submission",
            };
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

fn listener_ctx(config: &Config, l: &Listener, bind: SocketAddr) -> ListenerCtx {
    let lim = &config.limits;
    let smtp = hato_smtp::Config {
        hostname: config.hostname.clone(),
        mode: match l.protocol {
            Protocol::Smtp => hato_smtp::Mode::Mx,
            Protocol::Submission => hato_smtp::Mode::Submission,
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
    };
    ListenerCtx {
        protocol: l.protocol,
        tls: l.tls,
        bind,
        greeting_delay: Duration::from_millis(l.greeting_delay_ms()),
        smtp: Arc::new(smtp),
    }
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

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
        let msg = format!(
            "421 4.7.0 {} Too many connections, try again later\r\n",
            shared.hostname
        );
        let _ = stream.write_all(msg.as_bytes()).await;
        return;
    };
    let ip = peer.ip();
    let over = {
        let mut map = shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        *n += 1;
        *n > shared.max_per_ip
    };
    let _slot = IpSlot {
        shared: &shared,
        ip,
    };
    if over {
        warn!("refused: too many connections from this address");
        let msg = format!(
            "421 4.7.0 {} Too many connections from your address, try again later\r\n",
            shared.hostname
        );
        let _ = stream.write_all(msg.as_bytes()).await;
        return;
    }
    info!(protocol = ?ctx.protocol, tls = ?ctx.tls, "connect");

    let smtp_peer = hato_smtp::Peer {
        ip,
        port: peer.port(),
        reverse_name: None,
    };
    let mut conn = Conn {
        shared: &shared,
        ctx: &ctx,
        ip,
        account: None,
        targets: HashMap::new(),
        shutdown: shared.shutdown.clone(),
    };
    let result = match ctx.tls {
        TlsMode::Implicit => {
            let acceptor = shared
                .acceptor
                .clone()
                .expect("TLS listener has an acceptor");
            match handshake(&acceptor, stream).await {
                Ok((tls, info)) => {
                    let session = Session::new(ctx.smtp.clone(), smtp_peer, Some(info));
                    conn.run_tls(session, tls).await
                }
                Err(e) => Err(e),
            }
        }
        _ => {
            let session = Session::new(ctx.smtp.clone(), smtp_peer, None);
            conn.run_plain(session, stream).await
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(stats) => info!(
            duration_ms = elapsed_ms,
            accepted = stats.messages_accepted,
            rejected = stats.messages_rejected,
            errors = stats.errors,
            "disconnect"
        ),
        Err(e) => info!(duration_ms = elapsed_ms, error = %e, "disconnect"),
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> anyhow::Result<(
    tokio_rustls::server::TlsStream<TcpStream>,
    hato_smtp::TlsInfo,
)> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake failed")?;
    let facts = hato_tls::session_facts(tls.get_ref().1);
    info!(version = %facts.version, cipher = %facts.cipher, sni = facts.sni.as_deref().unwrap_or("-"), "TLS established");
    let info = hato_smtp::TlsInfo {
        version: facts.version,
        cipher: facts.cipher,
        sni: facts.sni,
    };
    Ok((tls, info))
}

enum Step {
    Closed,
    StartTls,
}

struct Conn<'a> {
    shared: &'a Shared,
    ctx: &'a ListenerCtx,
    ip: IpAddr,
    account: Option<Account>,
    /// Where each accepted recipient goes, by normalised address, filled at RCPT.
    targets: HashMap<String, Target>,
    shutdown: watch::Receiver<bool>,
}

impl Conn<'_> {
    async fn run_plain(
        &mut self,
        mut session: Session,
        mut stream: TcpStream,
    ) -> anyhow::Result<hato_smtp::session::SessionStats> {
        self.greet(&mut session, &mut stream).await?;
        match self.drive(&mut session, &mut stream).await? {
            Step::Closed => Ok(session.stats()),
            Step::StartTls => {
                let acceptor = self
                    .shared
                    .acceptor
                    .clone()
                    .expect("STARTTLS listener has an acceptor");
                let (tls, info) = handshake(&acceptor, stream).await?;
                session.tls_established(info);
                self.account = None;
                self.targets.clear();
                self.run_tls_after_greeting(session, tls).await
            }
        }
    }

    async fn run_tls(
        &mut self,
        mut session: Session,
        mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    ) -> anyhow::Result<hato_smtp::session::SessionStats> {
        self.greet(&mut session, &mut tls).await?;
        self.run_tls_after_greeting(session, tls).await
    }

    async fn run_tls_after_greeting(
        &mut self,
        mut session: Session,
        mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    ) -> anyhow::Result<hato_smtp::session::SessionStats> {
        match self.drive(&mut session, &mut tls).await? {
            Step::Closed => {}
            // The session never asks twice; treat it as the end.
            Step::StartTls => warn!("STARTTLS requested inside TLS"),
        }
        Ok(session.stats())
    }

    /// Sends the greeting, after the listener's delay; bytes that arrive first mark an early talker.
    async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        session: &mut Session,
        io: &mut S,
    ) -> anyhow::Result<()> {
        if !self.ctx.greeting_delay.is_zero() {
            let mut buf = [0u8; 512];
            tokio::select! {
                _ = tokio::time::sleep(self.ctx.greeting_delay) => {}
                r = io.read(&mut buf) => {
                    let n = r?;
                    if n == 0 { anyhow::bail!("client closed before the greeting"); }
                    info!("early talker: client sent data before the greeting");
                    session.feed(&buf[..n]);
                }
            }
        }
        session.greet();
        Ok(())
    }

    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut Session,
        io: &mut S,
    ) -> anyhow::Result<Step> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.poll() {
                Action::NeedInput => {
                    self.write_out(io, s.output()).await?;
                    let timeout = if s.in_data() {
                        self.shared.data_timeout
                    } else if self.ctx.protocol == Protocol::Submission && s.auth_user().is_none() {
                        self.shared.unauthenticated_timeout
                    } else {
                        self.shared.command_timeout
                    };
                    tokio::select! {
                        r = tokio::time::timeout(timeout, io.read(&mut buf)) => match r {
                            Ok(Ok(0)) => return Ok(Step::Closed),
                            Ok(Ok(n)) => s.feed(&buf[..n]),
                            Ok(Err(e)) => return Err(e.into()),
                            Err(_) => {
                                info!(timeout_s = timeout.as_secs(), "timeout");
                                s.timeout();
                            }
                        },
                        _ = self.shutdown.changed() => s.shutdown(),
                    }
                }
                Action::StartTls => {
                    self.write_out(io, s.output()).await?;
                    return Ok(Step::StartTls);
                }
                Action::Close => {
                    self.write_out(io, s.output()).await?;
                    let _ = io.shutdown().await;
                    return Ok(Step::Closed);
                }
                Action::Authenticate {
                    authzid,
                    username,
                    password,
                } => {
                    let (verdict, account) = self
                        .shared
                        .policy
                        .authenticate(self.ip, authzid.as_deref(), &username, &password)
                        .await;
                    match (&verdict, &account) {
                        (hato_smtp::AuthVerdict::Ok, Some(a)) => {
                            info!(user = %a.address, "AUTH ok")
                        }
                        (hato_smtp::AuthVerdict::Throttled, _) => {
                            warn!(user = %username, "AUTH refused: too many failures")
                        }
                        _ => warn!(user = %username, "AUTH failed"),
                    }
                    self.account = account;
                    s.auth_result(verdict);
                }
                Action::CheckSender { address } => {
                    let r = match self.ctx.protocol {
                        Protocol::Smtp => Ok(()),
                        Protocol::Submission => {
                            self.shared
                                .policy
                                .check_sender(self.account.as_ref().map(|a| a.id), address.as_ref())
                                .await
                        }
                    };
                    s.sender_result(r);
                }
                Action::CheckRecipient { address } => {
                    let may_relay =
                        self.ctx.protocol == Protocol::Submission && self.account.is_some();
                    let r = self
                        .shared
                        .policy
                        .check_recipient(&address, may_relay)
                        .await
                        .map(|t| {
                            self.targets.insert(address.normalized(), t);
                        });
                    s.recipient_result(r);
                }
                Action::Deliver(envelope) => {
                    let r = self.deliver(*envelope).await;
                    s.delivery_result(r);
                }
            }
        }
    }

    /// Writes pending replies; a client that stops reading is cut off after the command timeout.
    async fn write_out<S: AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        out: Vec<u8>,
    ) -> anyhow::Result<()> {
        tokio::time::timeout(self.shared.command_timeout, write_replies(io, out))
            .await
            .context("timed out writing to the client")??;
        Ok(())
    }

    async fn deliver(&mut self, env: hato_smtp::Envelope) -> Result<String, hato_smtp::Reply> {
        let id = queue_id();
        let now = time::OffsetDateTime::now_utc();
        let date = now
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        let hostname = &self.shared.hostname;
        let mut data = env.received_header(hostname, &id, &date).into_bytes();
        if self.ctx.protocol == Protocol::Submission {
            // RFC 6409 8.2/8.3: a submission server may add missing Date and Message-ID.
            if !hato_smtp::message::header_present(&env.body, "Date") {
                data.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
            }
            if !hato_smtp::message::header_present(&env.body, "Message-ID") {
                data.extend_from_slice(format!("Message-ID: <{id}@{hostname}>\r\n").as_bytes());
            }
        }
        data.extend_from_slice(&env.body);
        let size = data.len();

        let mut local = Vec::new();
        let mut remote = Vec::new();
        for r in &env.recipients {
            match self.targets.get(&r.normalized()) {
                Some(Target::Local(account)) => local.push(*account),
                Some(Target::Remote) => remote.push(r.to_string()),
                None => {
                    error!(rcpt = %r, "recipient without a routing decision");
                    return Err(hato_smtp::Reply::new(
                        451,
                        (4, 3, 0),
                        "Internal error, try again later",
                    ));
                }
            }
        }
        self.targets.clear();
        let delivery = Delivery {
            sender: env
                .sender
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            data,
            local,
            remote,
            received_at: now.unix_timestamp(),
        };
        let (nlocal, nremote) = (delivery.local.len(), delivery.remote.len());
        match self.shared.policy.store().deliver(delivery).await {
            Ok(_) => {
                info!(
                    queue_id = %id,
                    size,
                    from = %env.sender.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                    recipients = env.recipients.len(),
                    local = nlocal,
                    remote = nremote,
                    tls = env.tls.is_some(),
                    user = env.auth_user.as_deref().unwrap_or("-"),
                    "message accepted"
                );
                Ok(id)
            }
            Err(e) => {
                error!(queue_id = %id, error = %e, "storing the message failed");
                Err(hato_smtp::Reply::new(
                    451,
                    (4, 3, 0),
                    "Local error in processing, try again later",
                ))
            }
        }
    }
}

fn queue_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xFFFFF;
    let r: u16 = rand::random();
    format!("{:X}{:05X}{r:04X}", unix_now(), n)
}

/// Writes the session's pending replies and logs the refusals among them.
async fn write_replies<S: AsyncWrite + Unpin>(io: &mut S, out: Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    for line in out.split(|&b| b == b'\n') {
        if line.len() >= 4
            && matches!(line[0], b'4' | b'5')
            && line[3] == b' '
            && let Ok(text) = std::str::from_utf8(line)
        {
            info!(reply = %text.trim_end(), "refused");
        } else if !line.is_empty() {
            debug!(reply = %String::from_utf8_lossy(line).trim_end(), "reply");
        }
    }
    io.write_all(&out).await?;
    io.flush().await
}
