//! One client connection's byte stream, plain or TLS, upgraded in place by STARTTLS.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use hato_wire::TlsInfo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::info;

use super::Pressure;

/// The server side of TLS for a listener: its certificates (chosen by SNI, reloaded in place)
/// and how long a handshake may take.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl ServerTls {
    pub fn new(config: Arc<rustls::ServerConfig>, timeout: Duration) -> ServerTls {
        ServerTls {
            acceptor: TlsAcceptor::from(config),
            timeout,
        }
    }

    /// The same certificates with another handshake timeout.
    pub fn with_timeout(self, timeout: Duration) -> ServerTls {
        ServerTls { timeout, ..self }
    }

    /// Performs the handshake on an accepted TCP stream (in less time under pressure).
    pub async fn accept(
        &self,
        stream: TcpStream,
        pressure: &Pressure,
    ) -> anyhow::Result<(TlsStream<TcpStream>, TlsInfo)> {
        let timeout = pressure.timeout(self.timeout, false);
        let tls = tokio::time::timeout(timeout, self.acceptor.accept(stream))
            .await
            .context("TLS handshake timed out")?
            .context("TLS handshake failed")?;
        let facts = hato_tls::session_facts(tls.get_ref().1);
        info!(version = %facts.version, cipher = %facts.cipher, sni = facts.sni.as_deref().unwrap_or("-"), "TLS established");
        Ok((tls, facts))
    }
}

/// A client's stream: TCP, or TLS over it after implicit TLS or STARTTLS.
pub struct ClientStream {
    inner: Inner,
    tls: Option<ServerTls>,
    pressure: Pressure,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A failed upgrade took the stream: the connection is over.
    Gone,
}

impl ClientStream {
    /// A plain stream that may be upgraded with `tls` later (None: no certificates).
    pub fn plain(stream: TcpStream, tls: Option<ServerTls>, pressure: Pressure) -> ClientStream {
        ClientStream {
            inner: Inner::Plain(stream),
            tls,
            pressure,
        }
    }

    /// A stream whose TLS handshake is done (implicit TLS).
    pub fn tls(stream: TlsStream<TcpStream>, pressure: Pressure) -> ClientStream {
        ClientStream {
            inner: Inner::Tls(Box::new(stream)),
            tls: None,
            pressure,
        }
    }

    /// The listener is nearly full (see [`Pressure`]).
    pub fn under_pressure(&self) -> bool {
        self.pressure.high()
    }

    /// Upgrades to TLS in place (STARTTLS, STLS). The caller has already discarded whatever
    /// the client sent after its command (the sans-IO sessions do).
    pub async fn start_tls(&mut self) -> anyhow::Result<TlsInfo> {
        let tls = self
            .tls
            .take()
            .context("TLS requested on a listener without certificates")?;
        let Inner::Plain(tcp) = std::mem::replace(&mut self.inner, Inner::Gone) else {
            anyhow::bail!("TLS requested twice");
        };
        let (stream, facts) = tls.accept(tcp, &self.pressure).await?;
        self.inner = Inner::Tls(Box::new(stream));
        Ok(facts)
    }

    fn gone() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotConnected, "connection closed")
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Inner::Gone => Poll::Ready(Err(ClientStream::gone())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Inner::Gone => Poll::Ready(Err(ClientStream::gone())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Inner::Gone => Poll::Ready(Err(ClientStream::gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
            Inner::Gone => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Inner::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Inner::Gone => Poll::Ready(Ok(())),
        }
    }
}
