//! `[dns]`: which nameservers, how long to wait, and where DNSSEC validation starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::{Resolver, ResolverBuilder};

/// DNS settings (`[dns]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Nameservers to ask (`ip:port`); empty: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Per query and server.
    pub timeout: Duration,
    /// Attempts per query and server.
    pub attempts: usize,
    /// Ask over TCP only (networks that filter UDP; tests).
    pub tcp_only: bool,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            tcp_only: false,
        }
    }
}

/// Where DNSSEC validation starts.
#[derive(Clone, Default)]
pub enum TrustAnchor {
    /// The IANA root zone KSKs compiled into hickory-proto 0.26 (KSK-2017, key tag 20326, and
    /// KSK-2024, key tag 38696).
    #[default]
    Root,
    /// A file of DNSKEY records in zone-file format (as read by
    /// `hickory_proto::dnssec::TrustAnchors::from_file`), e.g. a copy of the root keys.
    File(PathBuf),
    /// Keys given in code: tests with their own signed zone, private roots.
    Keys(Arc<TrustAnchors>),
}

impl std::fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustAnchor::Root => f.write_str("Root"),
            TrustAnchor::File(path) => f.debug_tuple("File").field(path).finish(),
            TrustAnchor::Keys(keys) => write!(f, "Keys({} root keys, more named)", keys.len()),
        }
    }
}

/// A trust anchor file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the DNSSEC trust anchor {path}: {detail}")]
pub struct TrustAnchorError {
    pub path: PathBuf,
    pub detail: String,
}

impl TrustAnchor {
    /// The keys (reads a [`TrustAnchor::File`]).
    pub fn load(&self) -> Result<Arc<TrustAnchors>, TrustAnchorError> {
        match self {
            TrustAnchor::Root => Ok(Arc::new(TrustAnchors::default())),
            TrustAnchor::File(path) => {
                TrustAnchors::from_file(path)
                    .map(Arc::new)
                    .map_err(|e| TrustAnchorError {
                        path: path.clone(),
                        detail: e.to_string(),
                    })
            }
            TrustAnchor::Keys(keys) => Ok(keys.clone()),
        }
    }

    /// Reads a [`TrustAnchor::File`] now (no-op for the others), for configuration checks.
    pub fn check(&self) -> Result<(), TrustAnchorError> {
        self.load().map(|_| ())
    }
}

/// A resolver builder for the configured (or the system's) nameservers, shared by the plain resolver ([`crate::HickoryResolver`]) and
/// the DANE resolver (`hato_delivery::dane_lookup`) (which adds DNSSEC validation). Needs a tokio runtime.
pub fn resolver_builder(
    config: &DnsConfig,
) -> Result<ResolverBuilder<TokioRuntimeProvider>, NetError> {
    let mut builder = if config.nameservers.is_empty() {
        Resolver::builder_tokio()?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let connections = if config.tcp_only {
                    vec![tcp]
                } else {
                    vec![udp, tcp]
                };
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = config.timeout;
    options.attempts = config.attempts.max(1);
    // Names are always absolute: no search list.
    options.ndots = 0;
    options.try_tcp_on_error = true;
    Ok(builder)
}
