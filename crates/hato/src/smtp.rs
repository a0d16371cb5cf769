//! The SMTP driver: runs one connection of an `smtp` or `submission` listener through the sans-IO
//! [`hato_smtp::Session`], answering its questions with [`Authenticator`], [`Access`] and the store. It moves bytes,
//! applies timeouts and logs; every SMTP rule lives in `hato-smtp`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hato_delivery::dsn;
use hato_smtp::{Action, Session};
use hato_store::{Account, Delivery, MessageData, QueueParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, error, info, warn};

use crate::access::{Access, Target};
use crate::auth::Authenticator;
use crate::config::Protocol;
use crate::net::{self, ClientStream, Connection, Input, Shutdown, Timeouts, write_with_timeout};
use crate::spool::{SPOOL_AT, Spool};
use hato_wire::date::unix_now;

/// The `smtp` and `submission` service: what its connections need, built once per listener.
pub struct SmtpService {
    pub config: Arc<hato_smtp::Config>,
    /// `Smtp` (port 25: anyone may send to local domains) or `Submission` (AUTH required).
    pub protocol: Protocol,
    /// Wait this long before the greeting; a client that talks first is an early talker.
    pub greeting_delay: std::time::Duration,
    pub hostname: String,
    pub auth: Arc<Authenticator>,
    pub access: Arc<Access>,
    pub timeouts: Timeouts,
    pub shutdown: Shutdown,
    /// Wakes the outbound scheduler when mail for remote recipients was queued.
    pub outbound: Arc<tokio::sync::Notify>,
    /// For the reverse DNS name of clients (Received headers); None without a resolver.
    pub dns: Option<Arc<dyn hato_dns::Resolver>>,
    /// Memory for message data in transit, shared by every SMTP listener.
    pub data_budget: Arc<net::DataBudget>,
    /// Where message data goes once a message passes [`spool::SPOOL_AT`].
    pub spool_dir: Arc<std::path::Path>,
}

#[async_trait::async_trait]
impl net::Service for SmtpService {
    fn name(&self) -> &'static str {
        self.protocol.name()
    }

    fn busy_reply(&self, why: &str) -> Vec<u8> {
        format!("421 4.7.0 {} {why}, try again later\r\n", self.hostname).into_bytes()
    }

    /// Serves one SMTP connection; returns the counts for the disconnect log line.
    async fn serve(&self, conn: Connection) -> anyhow::Result<String> {
        let Connection {
            mut stream,
            peer,
            tls,
        } = conn;
        let smtp_peer = hato_smtp::Peer {
            ip: peer.ip(),
            port: peer.port(),
            reverse_name: None,
        };
        // The client's forward-confirmed reverse name, looked up while the session runs (the
        // greeting is not held for it); the Received header uses it if it is known by then.
        let reverse = self.dns.clone().map(|dns| {
            let ip = peer.ip();
            tokio::spawn(async move {
                tokio::time::timeout(
                    REVERSE_LOOKUP_TIMEOUT,
                    hato_dns::confirmed_reverse_name(dns.as_ref(), ip),
                )
                .await
                .ok()
                .flatten()
            })
        });
        let mut conn = Conn {
            svc: self,
            ip: peer.ip(),
            account: None,
            targets: HashMap::new(),
            shutdown: self.shutdown.clone(),
            reverse,
            reverse_name: None,
            stopping: None,
            data_share: self.data_budget.share(),
            spool: Spool::new(self.spool_dir.clone()),
        };
        let mut session = Session::new(self.config.clone(), smtp_peer, tls);
        conn.greet(&mut session, &mut stream).await?;
        while let Step::StartTls = conn.drive(&mut session, &mut stream).await? {
            let facts = stream.start_tls().await?;
            session.tls_established(facts);
            conn.account = None;
            conn.targets.clear();
        }
        let stats = session.stats();
        Ok(format!(
            "accepted={} rejected={} errors={}",
            stats.messages_accepted, stats.messages_rejected, stats.errors
        ))
    }
}

enum Step {
    Closed,
    StartTls,
}

struct Conn<'a> {
    svc: &'a SmtpService,
    ip: IpAddr,
    account: Option<Account>,
    /// Where each accepted recipient goes, by normalised address, filled at RCPT.
    targets: HashMap<String, Target>,
    shutdown: Shutdown,
    /// The reverse lookup under way, then its result.
    reverse: Option<tokio::task::JoinHandle<Option<String>>>,
    reverse_name: Option<String>,
    /// The server is stopping: the end of the grace for the message under way.
    stopping: Option<Instant>,
    /// What the session holds of message data, within the server's budget.
    data_share: net::DataShare,
    /// The part of the message under way that went to disk.
    spool: Spool,
}

/// How long a message whose data is arriving when the server stops may take to finish (the
/// server waits 10 s for all sessions).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the client's reverse DNS lookup may take (PTR and the confirming A/AAAA).
const REVERSE_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Conn<'_> {
    /// Sends the greeting, after the listener's delay; bytes that arrive first mark an early talker.
    async fn greet(&mut self, session: &mut Session, io: &mut ClientStream) -> anyhow::Result<()> {
        if !self.svc.greeting_delay.is_zero() {
            let mut buf = [0u8; 512];
            tokio::select! {
                _ = tokio::time::sleep(self.svc.greeting_delay) => {}
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

    async fn drive(&mut self, s: &mut Session, io: &mut ClientStream) -> anyhow::Result<Step> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.poll() {
                Action::NeedInput => {
                    if let Some((at, bytes)) = s.take_data(SPOOL_AT)
                        && let Err(e) = self.spool.write(at, bytes).await
                    {
                        error!(error = %e, dir = %self.svc.spool_dir.display(), "cannot spool message data: refused with 452 at its end");
                        s.refuse_data();
                    }
                    if !self.data_share.set(s.data_held()) {
                        warn!(
                            held = s.data_held(),
                            "no room for this message (limits.max_data_in_flight): refused with 452 at its end"
                        );
                        crate::metrics::message_refused(self.svc.protocol.name(), "no_room");
                        s.refuse_data();
                        self.data_share.set(s.data_held());
                    }
                    self.write_out(io, s.output()).await?;
                    let mut timeout = if s.in_data() {
                        self.svc.timeouts.data
                    } else if self.svc.protocol == Protocol::Submission && s.auth_user().is_none() {
                        self.svc.timeouts.unauthenticated
                    } else {
                        self.svc.timeouts.command
                    };
                    // Stopping: a message whose data is arriving may finish within the grace.
                    if let Some(deadline) = self.stopping {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if !s.in_data() || left.is_zero() {
                            s.shutdown();
                            continue;
                        }
                        timeout = timeout.min(left);
                    }
                    let logged_in = s.auth_user().is_some();
                    match net::read_input(io, &mut buf, timeout, logged_in, &mut self.shutdown)
                        .await?
                    {
                        Input::Data(n) => s.feed(&buf[..n]),
                        Input::Closed => return Ok(Step::Closed),
                        Input::TimedOut if self.stopping.is_some() => s.shutdown(),
                        Input::TimedOut => s.timeout(),
                        Input::Shutdown if s.in_data() => {
                            info!("shutting down: letting the message being sent finish");
                            self.stopping = Some(Instant::now() + SHUTDOWN_GRACE);
                        }
                        Input::Shutdown => s.shutdown(),
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
                        .svc
                        .auth
                        .authenticate(self.ip, authzid.as_deref(), &username, password.expose())
                        .await;
                    match (&verdict, &account) {
                        (hato_wire::AuthOutcome::Ok, Some(a)) => {
                            info!(user = %a.address, "AUTH ok")
                        }
                        (hato_wire::AuthOutcome::Throttled, _) => {
                            warn!(user = %username, "AUTH refused: too many failures")
                        }
                        _ => warn!(user = %username, "AUTH failed"),
                    }
                    self.account = account;
                    s.auth_result(verdict);
                }
                Action::CheckSender { address } => {
                    let r = match self.svc.protocol {
                        Protocol::Submission => {
                            self.svc
                                .access
                                .check_sender(self.account.as_ref().map(|a| a.id), address.as_ref())
                                .await
                        }
                        // Port 25 takes any sender (SPF/DMARC come later).
                        _ => Ok(()),
                    };
                    s.sender_result(r);
                }
                Action::CheckRecipient { address } => {
                    let authenticated =
                        self.svc.protocol == Protocol::Submission && self.account.is_some();
                    // Printers and legacy devices: `relay_networks` may relay through `smtp`
                    // listeners without AUTH (never through submission, which always wants AUTH).
                    let network = match self.svc.protocol {
                        Protocol::Smtp if !authenticated => self.svc.access.relay_network(self.ip),
                        _ => None,
                    };
                    let may_relay = authenticated || network.is_some();
                    let r = self
                        .svc
                        .access
                        .check_recipient(&address, may_relay)
                        .await
                        .map(|t| {
                            if let (Target::Remote, Some(net)) = (t, network) {
                                info!(rcpt = %address, client = %self.ip, network = %net, tls = s.is_tls(), "relay permitted by relay_networks (no AUTH)");
                            }
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

    /// Writes pending replies and logs the refusals among them.
    async fn write_out(&self, io: &mut ClientStream, out: Vec<u8>) -> anyhow::Result<()> {
        log_replies(&out);
        write_with_timeout(io, &out, self.svc.timeouts.command).await
    }

    async fn deliver(&mut self, mut env: hato_smtp::Envelope) -> Result<String, hato_smtp::Reply> {
        if let Some(lookup) = self.reverse.take_if(|h| h.is_finished()) {
            self.reverse_name = lookup.await.ok().flatten();
            if let Some(name) = &self.reverse_name {
                debug!(client = %self.ip, name = %name, "reverse DNS");
            }
        }
        env.peer.reverse_name = self.reverse_name.clone();
        let id = queue_id();
        let now = unix_now();
        let date = hato_wire::date::rfc5322(now);
        let hostname = &self.svc.hostname;
        let mut head = env.received_header(hostname, &id, &date).into_bytes();
        let spooled = env.body_offset > 0;
        if !spooled {
            self.spool.discard();
        }
        if self.svc.protocol == Protocol::Submission {
            // RFC 6409 8.2/8.3: a submission server may add missing Date and Message-ID.
            let start = if spooled {
                self.spool.start()
            } else {
                &env.body
            };
            if !hato_smtp::message::header_present(start, "Date") {
                head.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
            }
            if !hato_smtp::message::header_present(start, "Message-ID") {
                head.extend_from_slice(format!("Message-ID: <{id}@{hostname}>\r\n").as_bytes());
            }
        }
        let body = std::mem::take(&mut env.body);
        let data: MessageData = if spooled {
            // Header lines, the spool file, the rest: streamed into the store, never whole in
            // memory.
            self.spool
                .message(head, env.body_offset, body)
                .map_err(|e| {
                    error!(queue_id = %id, error = %e, "the spooled message is incomplete");
                    local_error()
                })?
        } else {
            // The new header lines go in front of the body in place: one copy of the message in
            // memory, not two.
            let mut data = body;
            data.splice(0..0, head);
            data.into()
        };
        let size = data.len();

        let mut local = Vec::new();
        let mut remote = Vec::new();
        let mut remote_dsn = Vec::new();
        // Local recipients that asked for NOTIFY=SUCCESS: "delivered" once stored.
        let mut success = Vec::new();
        for (r, dsn) in env.recipients_with_dsn() {
            match self.targets.get(&r.normalized()) {
                Some(Target::Local(account)) => {
                    local.push(*account);
                    let (notify, orcpt) = dsn.to_strings();
                    if dsn::notify_wants(notify.as_deref(), dsn::Action::Delivered) {
                        success.push(dsn::RecipientReport {
                            final_recipient: r.to_string(),
                            original_recipient: orcpt,
                            action: dsn::Action::Delivered,
                            status: "2.0.0".into(),
                            remote_mta: None,
                            diagnostic: None,
                            last_attempt: Some(now),
                            will_retry_until: None,
                            tls: None,
                        });
                    }
                }
                Some(Target::Remote) => {
                    remote.push(r.to_string());
                    remote_dsn.push(dsn.to_strings());
                }
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
            received_at: now,
        };
        let (nlocal, nremote) = (delivery.local.len(), delivery.remote.len());
        // The report returns the header only: keep just that, not a copy of the whole message.
        let data_for_report = (!success.is_empty()).then(|| match delivery.data.as_slice() {
            Some(d) => dsn::header_of(d).to_vec(),
            None => delivery
                .data
                .prefix(REPORT_HEADER_MAX)
                .map(|d| dsn::header_of(&d).to_vec())
                .unwrap_or_default(),
        });
        // RFC 3461 / RFC 8689 parameters travel with the remote recipients (same order).
        let params = QueueParams {
            ret: env.ret.map(|r| r.as_str().to_owned()),
            envid: env.envid.clone(),
            requiretls: env.requiretls,
            recipients: remote_dsn,
        };
        match self
            .svc
            .access
            .store()
            .deliver_with_params(delivery, params)
            .await
        {
            Ok(_) => {
                if let Some(data) = data_for_report {
                    self.report_success(&env, success, &data, now).await;
                }
                if nremote > 0 {
                    self.svc.outbound.notify_one();
                }
                info!(
                    queue_id = %id,
                    size,
                    from = %env.sender.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                    recipients = env.recipients.len(),
                    local = nlocal,
                    remote = nremote,
                    tls = env.tls.is_some(),
                    requiretls = env.requiretls,
                    user = env.auth_user.as_deref().unwrap_or("-"),
                    "message accepted"
                );
                crate::metrics::message_accepted(self.svc.protocol.name(), env.recipients.len());
                Ok(id)
            }
            Err(e) => {
                error!(queue_id = %id, error = %e, "storing the message failed");
                Err(local_error())
            }
        }
    }
}

impl Conn<'_> {
    /// RFC 3461 NOTIFY=SUCCESS for local recipients: a "delivered" DSN to the sender, with the
    /// message header. Best effort: the message itself is already safe.
    async fn report_success(
        &self,
        env: &hato_smtp::Envelope,
        recipients: Vec<dsn::RecipientReport>,
        data: &[u8],
        now: i64,
    ) {
        let sender = env
            .sender
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let input = dsn::DsnInput {
            reporting_mta: &self.svc.hostname,
            envelope_sender: &sender,
            envelope_id: env.envid.as_deref(),
            arrival_date: now,
            recipients,
            original: data,
            ret: dsn::ReturnContent::Headers,
            max_full_size: dsn::DEFAULT_MAX_FULL_SIZE,
            now,
        };
        // None for the null sender: never a report about a report.
        let Some(d) = dsn::build(&input) else { return };
        let access = &self.svc.access;
        let store = access.store().as_ref();
        match crate::local_mail::store_dsn(store, |d| access.is_local_domain(d), d, now).await {
            Ok(_) => {
                info!(to = %sender, "delivery status notification sent (NOTIFY=SUCCESS)");
                self.svc.outbound.notify_one();
            }
            Err(e) => warn!(error = %e, "cannot store the success notification"),
        }
    }
}

/// The most of a message's start searched for its header section (NOTIFY=SUCCESS reports).
const REPORT_HEADER_MAX: usize = 1024 * 1024;

fn local_error() -> hato_smtp::Reply {
    hato_smtp::Reply::new(451, (4, 3, 0), "Local error in processing, try again later")
}

fn queue_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xFFFFF;
    let r: u16 = rand::random();
    format!("{:X}{:05X}{r:04X}", unix_now(), n)
}

/// Writes the session's pending replies and logs the refusals among them.
fn log_replies(out: &[u8]) {
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
}
