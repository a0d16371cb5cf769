//! Connecting: TCP, STARTTLS or implicit TLS, and certificate verification by WebPKI, DANE or
//! MTA-STS; the TLS facts of each session for the queue, the logs, DSNs and TLS reports.

use hato_tls::verify::{ChainCheck, PresentedChain, ServerVerifier};

use super::*;

/// An SMTP connection to one address (see [`Scheduler::attempt`]).
pub(super) struct Connection {
    pub(super) session: ClientSession,
    pub(super) io: Io,
    pub(super) facts: TlsFacts,
    pub(super) host: String,
    pub(super) addr: SocketAddr,
    /// The session is over (Done): not reusable.
    pub(super) closed: bool,
    /// The certificate must verify (WebPKI roots plus `ca_file`, or DANE), and what asked for it.
    pub(super) verify: Option<VerifiedBy>,
    /// DANE: the verifier built from the host's TLSA records, and the TLSA base domain (SNI).
    pub(super) dane: Option<(Arc<DaneVerifier>, String)>,
    /// MTA-STS `testing`: check the certificate against WebPKI without enforcing it.
    pub(super) sts_testing: bool,
    /// The `delivery.per_ip` slot, freed with the connection.
    pub(super) _slot: tokio::sync::OwnedSemaphorePermit,
}

pub(super) enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Closed,
}

impl Io {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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

    pub(super) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
            Io::Closed => Ok(0),
        }
    }

    pub(super) async fn shutdown(&mut self) {
        let _ = match self {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
            Io::Closed => Ok(()),
        };
    }
}

/// Why no connection to an address could be opened. `Display` is the reply line recorded for
/// the recipients (queue, logs, DSN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ConnectError {
    /// The destination's TLS requirements (policy table, REQUIRETLS, MTA-STS, DANE) cannot be
    /// met with this host.
    Policy(String),
    /// `delivery.per_ip` connections to the address are already open.
    PerIp { addr: SocketAddr, limit: usize },
    /// TCP connect failed or timed out.
    Connect { addr: SocketAddr, error: String },
    /// The implicit-TLS handshake (smarthost) failed.
    Tls { addr: SocketAddr, error: String },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Policy(why) => write!(f, "451 4.7.5 {why}"),
            ConnectError::PerIp { addr, limit } => write!(
                f,
                "451 4.4.5 {addr}: {limit} connections already open (delivery.per_ip)"
            ),
            ConnectError::Connect { addr, error } => {
                write!(f, "451 4.4.1 connect to {addr}: {error}")
            }
            ConnectError::Tls { addr, error } => write!(f, "451 4.7.5 {addr}: {error}"),
        }
    }
}

/// A failed [`Scheduler::open`]: why, and the TLS facts gathered until then.
pub(super) struct Unopened {
    pub(super) facts: TlsFacts,
    pub(super) error: ConnectError,
}

impl Unopened {
    fn new(facts: &TlsFacts, error: ConnectError) -> Unopened {
        Unopened {
            facts: facts.clone(),
            error,
        }
    }
}

/// A verifier that never refuses a certificate (opportunistic TLS: `may`, `encrypt`, as Postfix
/// does below `verify`) while the handshake signatures are still checked, so the session keys
/// are real. For MTA-STS `testing` (RFC 8461 5) it also checks the chain against WebPKI and
/// keeps the failure for the TLS report.
#[derive(Debug)]
pub(super) struct Lenient {
    pub(super) webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// Some: check the chain and remember why it would fail.
    pub(super) failure: Option<Mutex<Option<rustls::Error>>>,
}

impl Lenient {
    pub(super) fn accept_any(
        webpki: Arc<rustls::client::WebPkiServerVerifier>,
    ) -> ServerVerifier<Lenient> {
        Lenient::verifier(webpki, None)
    }

    pub(super) fn would_verify(
        webpki: Arc<rustls::client::WebPkiServerVerifier>,
    ) -> ServerVerifier<Lenient> {
        Lenient::verifier(webpki, Some(Mutex::new(None)))
    }

    /// The handshake signatures are checked with the ring provider's algorithms, those `webpki`
    /// is built with.
    fn verifier(
        webpki: Arc<rustls::client::WebPkiServerVerifier>,
        failure: Option<Mutex<Option<rustls::Error>>>,
    ) -> ServerVerifier<Lenient> {
        ServerVerifier::new(
            Lenient { webpki, failure },
            &rustls::crypto::ring::default_provider(),
        )
    }

    pub(super) fn take_failure(&self) -> Option<rustls::Error> {
        self.failure
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl ChainCheck for Lenient {
    fn check_chain(&self, chain: PresentedChain<'_>) -> Result<(), rustls::Error> {
        if let Some(slot) = &self.failure
            && let Err(e) = self.webpki.verify_server_cert(
                chain.end_entity,
                chain.intermediates,
                chain.server_name,
                chain.ocsp_response,
                chain.now,
            )
        {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
        Ok(())
    }
}

impl Scheduler {
    /// TCP connection to one address, with a fresh client session (the greeting is read by
    /// the first transaction).
    pub(super) async fn open(
        &self,
        host: &str,
        addr: SocketAddr,
        plaintext: bool,
        ctx: &AttemptCtx<'_>,
    ) -> Result<Connection, Unopened> {
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
                .map_err(|why| Unopened::new(&facts, ConnectError::Policy(why)))?;
            let enforced = matches!((ctx.kind, ctx.sts), (HopKind::Mx, Some(p)) if p.mode == StsMode::Enforce)
                && !ctx.tls_optional;
            if enforced && let Some(p) = ctx.sts {
                req = req
                    .with_mta_sts(p, host)
                    .map_err(|why| Unopened::new(&facts, ConnectError::Policy(why)))?;
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
            let error = ConnectError::PerIp {
                addr,
                limit: self.per_ip_limit,
            };
            return Err(Unopened { facts, error });
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let error = ConnectError::Connect {
                    addr,
                    error: e.to_string(),
                };
                return Err(Unopened { facts, error });
            }
            Err(_) => {
                let error = ConnectError::Connect {
                    addr,
                    error: "timed out".into(),
                };
                return Err(Unopened { facts, error });
            }
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
                        let error = ConnectError::Tls {
                            addr,
                            error: facts.error.clone().unwrap_or_default(),
                        };
                        return Err(Unopened { facts, error });
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

    /// Ends a connection politely (QUIT).
    pub(super) async fn close(&self, mut conn: Connection) {
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
    pub(super) async fn step(&self, conn: &mut Connection) -> Option<ClientAction> {
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

    pub(super) async fn starttls(&self, conn: &mut Connection, limit: Duration) {
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
    pub(super) async fn handshake(
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
