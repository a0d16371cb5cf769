//! The accept loop and what a protocol implements to be served by it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hato_wire::TlsInfo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, info, info_span, warn};

use super::{Budget, ClientStream, ConnectionLimits, ServerTls, Shutdown};

/// A protocol served on a listener.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// The protocol's name in logs ("smtp", "imap", ...).
    fn name(&self) -> &'static str;
    /// The refusal written when a connection limit is reached, in the protocol's words (over
    /// TLS on implicit-TLS listeners; empty: close without a word).
    fn busy_reply(&self, why: &str) -> Vec<u8>;
    /// Serves one admitted connection to its end; returns the counts for the disconnect line.
    async fn serve(&self, conn: Connection) -> anyhow::Result<String>;
}

/// An admitted connection, handed to [`Service::serve`].
pub struct Connection {
    pub stream: ClientStream,
    pub peer: SocketAddr,
    /// Set when the listener is implicit TLS: the handshake is done.
    pub tls: Option<TlsInfo>,
}

/// A bound listening socket and what it serves.
pub struct Listener {
    pub socket: TcpListener,
    pub service: Arc<dyn Service>,
    /// Implicit TLS (RFC 8314): the handshake happens before the service sees the connection.
    pub implicit_tls: Option<ServerTls>,
    /// For STARTTLS/STLS on a plain listener (None: no certificates).
    pub starttls: Option<ServerTls>,
    /// This listener's share of the connections.
    pub budget: Arc<Budget>,
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Accepts connections until shutdown; each one is its own task (a panic in one session
    /// never touches another).
    pub async fn run(self, limits: Arc<ConnectionLimits>, mut shutdown: Shutdown) {
        let bind = self.local_addr();
        // The socket stays with this loop (closed when it ends); connections share the rest.
        let Listener {
            socket,
            service,
            implicit_tls,
            starttls,
            budget,
        } = self;
        let this = Arc::new(Handler {
            service,
            implicit_tls,
            starttls,
            budget,
        });
        loop {
            let (stream, peer) = tokio::select! {
                r = socket.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(listener = %bind, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let span = info_span!("session", id = %session_id(), listener = %bind, peer = %peer);
            let (this, limits) = (this.clone(), limits.clone());
            tokio::spawn(
                async move { this.connection(stream, peer, &limits).await }.instrument(span),
            );
        }
    }
}

/// What a listener's connections share.
struct Handler {
    service: Arc<dyn Service>,
    implicit_tls: Option<ServerTls>,
    starttls: Option<ServerTls>,
    budget: Arc<Budget>,
}

impl Handler {
    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        limits: &Arc<ConnectionLimits>,
    ) {
        let started = Instant::now();
        let admission = match limits.admit(peer.ip(), &self.budget).await {
            Ok(a) => a,
            Err(why) => {
                warn!("refused: {}", why.text().to_lowercase());
                crate::metrics::connection_refused(self.service.name(), why.label());
                self.refuse(stream, why.text()).await;
                return;
            }
        };
        crate::metrics::connection_accepted(self.service.name(), self.implicit_tls.is_some());
        info!(
            protocol = self.service.name(),
            tls = if self.implicit_tls.is_some() {
                "Implicit"
            } else if self.starttls.is_some() {
                "Starttls"
            } else {
                "None"
            },
            "connect"
        );
        let pressure = admission.pressure();
        let result = async {
            let conn = match &self.implicit_tls {
                Some(tls) => {
                    let (stream, facts) = tls.accept(stream, &pressure).await?;
                    Connection {
                        stream: ClientStream::tls(stream, pressure),
                        peer,
                        tls: Some(facts),
                    }
                }
                None => Connection {
                    stream: ClientStream::plain(stream, self.starttls.clone(), pressure),
                    peer,
                    tls: None,
                },
            };
            self.service.serve(conn).await
        }
        .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(counts) => info!(duration_ms, counts = %counts, "disconnect"),
            Err(e) => info!(duration_ms, error = %e, "disconnect"),
        }
    }
}

/// TLS handshakes at once for refusals on implicit-TLS listeners; past this, refused
/// connections are closed without a word (a flood must not buy handshakes).
const REFUSAL_HANDSHAKES: usize = 16;
/// How long a refused client gets to complete its handshake.
const REFUSAL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

impl Handler {
    /// Says why a connection is refused, in the protocol's words: in plaintext on a plain
    /// listener; on an implicit-TLS listener after the handshake (a client would read plaintext
    /// as a TLS error), or not at all when too many refusals are under way.
    async fn refuse(&self, mut stream: TcpStream, why: &str) {
        let reply = self.service.busy_reply(why);
        if reply.is_empty() {
            return;
        }
        let Some(tls) = &self.implicit_tls else {
            let _ = stream.write_all(&reply).await;
            return;
        };
        static HANDSHAKES: tokio::sync::Semaphore =
            tokio::sync::Semaphore::const_new(REFUSAL_HANDSHAKES);
        let Ok(_permit) = HANDSHAKES.try_acquire() else {
            return;
        };
        let tls = tls.clone().with_timeout(REFUSAL_HANDSHAKE_TIMEOUT);
        if let Ok((mut s, _)) = tls.accept(stream, &Default::default()).await {
            let _ = tokio::time::timeout(REFUSAL_HANDSHAKE_TIMEOUT, async {
                let _ = s.write_all(&reply).await;
                // close_notify, so the client reads the reply as the end of the session.
                let _ = s.shutdown().await;
            })
            .await;
        }
    }
}

fn session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt: u16 = rand::random();
    format!("{:X}{:04X}{n:X}", hato_wire::date::unix_now(), salt)
}
