//! MTA-STS (RFC 8461), the I/O: policy discovery, the HTTPS fetch and the policy cache.
//!
//! * [`StsFetcher`] fetches `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 3.3):
//!   the host is resolved through the same [`Router`] as the MX hosts, the certificate must be
//!   valid for `mta-sts.<domain>` under the configured trust anchors (WebPKI roots from
//!   `webpki-roots` by default), HTTP/1.1 (hyper), redirects are never followed (3xx is a
//!   failure), only `200` counts, the media type must be `text/plain`, the body is read up to
//!   [`MAX_POLICY_SIZE`] and no further, and the whole fetch has one time limit.
//! * [`StsResolver`] applies RFC 8461 3.1, 5 and 5.1: the `_mta-sts` TXT record's `id` decides
//!   whether the cached policy is current; a new id means a fetch; a failed fetch, a missing or
//!   invalid TXT record or a failed TXT lookup keep the cached policy in force until its
//!   `max_age` runs out (an attacker who blocks DNS or HTTPS must not switch MTA-STS off).
//!   `mode: none` policies are cached like any other. Lookups for one domain are serialised
//!   (one async mutex per domain), so concurrent deliveries never fetch the same policy twice.
//!   Failed fetches of one TXT id are not retried for a while
//!   ([`StsConfig::retry_failed_fetch_after`]) so a dead policy host does not stall every
//!   delivery attempt to its domain for the full fetch timeout.
//! * The cache is persistent when [`StsConfig::cache`] is set (RFC 8461 5.1 "senders SHOULD
//!   cache ... persistently"): a [`PolicyCache`] (the server's is its store, shared by every
//!   node of one database) holds one small entry per domain, read back lazily at the first
//!   lookup of that domain, and again before fetching a policy id the memory copy does not
//!   have (another node may have fetched it). The entry is versioned text ([`CACHE_FORMAT`] on
//!   the first line) with the policy body kept raw and parsed again through [`parse_policy`]
//!   when loaded; an unusable entry is removed.
//!
//! Not done: proactive refresh (RFC 8461 5.1 suggests refreshing cached policies before they
//! expire, e.g. in the background, so that a policy stays in force even when no mail went to the
//! domain for a while and the policy host is unreachable exactly when mail is sent). Here a
//! policy is refreshed only when a lookup sees a new TXT id or an expired cache entry. A
//! background task could call [`StsResolver::policy_for`] for each cached domain whose entry is
//! within a day of expiry.
//!
//! Every lookup says what went wrong on the way ([`StsLookup::problem`]) even when a cached
//! policy was used, with the RFC 8460 4.3 result type for TLS-RPT ([`ResultType`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::warn;

use crate::mta_sts::{
    MAX_MAX_AGE, MAX_POLICY_SIZE, Mode, Policy, StsError, parse_policy, parse_txt,
};
use crate::route::Router;
use crate::state::PolicyCache;

/// The path of the policy on the policy host (RFC 8461 3.3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/mta-sts.txt";
/// First line of every cache entry; an entry with another first line is ignored (and removed).
pub const CACHE_FORMAT: &str = "hato-mta-sts-cache 1";
/// The fetch's overall time limit by default (RFC 8461 3.3 leaves it to the sender; 60 s is
/// the common choice).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failed fetch of one TXT id is remembered by default.
pub const DEFAULT_RETRY_FAILED_FETCH_AFTER: Duration = Duration::from_secs(5 * 60);
/// Time limit for the TCP connection to one address of the policy host (the overall limit
/// still applies).
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Largest cache entry used (the body plus a few header lines).
const MAX_CACHE_ENTRY: usize = MAX_POLICY_SIZE + 1024;

/// The webpki-roots trust anchors (Mozilla's root program), the default for the fetch.
pub fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Adds the certificates of a PEM file to `roots` (a private CA, or a test CA); returns how
/// many were added. Start from [`webpki_roots()`] to add to the defaults, from
/// `RootCertStore::empty()` to replace them.
pub fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<usize, StsSetupError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |detail: String| StsSetupError::Roots {
        path: path.to_owned(),
        detail,
    };
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(added)
}

/// Why a fetcher or resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StsSetupError {
    #[error("TLS configuration for MTA-STS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("MTA-STS trust anchors {path:?}: {detail}")]
    Roots { path: PathBuf, detail: String },
}

/// How policies are fetched.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The policy host's HTTPS port: 443 (RFC 8461 3.3); other values are for tests.
    pub https_port: u16,
    /// Overall limit for one fetch: resolving, connecting, TLS, request and body.
    pub timeout: Duration,
    /// Trust anchors for the policy host's certificate.
    pub roots: RootCertStore,
}

impl Default for FetchConfig {
    fn default() -> FetchConfig {
        FetchConfig {
            https_port: 443,
            timeout: DEFAULT_FETCH_TIMEOUT,
            roots: webpki_roots(),
        }
    }
}

/// A fetched, valid policy and the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPolicy {
    pub policy: Policy,
    pub body: Vec<u8>,
}

/// The TLS-RPT result types of RFC 8460 4.3 that concern the policy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultType {
    /// `sts-policy-fetch-error`: the policy could not be retrieved (DNS, connection, TLS other
    /// than the certificate, HTTP status, redirect, media type, timeout).
    StsPolicyFetchError,
    /// `sts-policy-invalid`: a policy was retrieved but is not valid (syntax, size).
    StsPolicyInvalid,
    /// `sts-webpki-invalid`: the policy host's certificate did not validate.
    StsWebpkiInvalid,
}

impl ResultType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

impl std::fmt::Display for ResultType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The policy host has no address, or the lookup failed.
    #[error("cannot resolve the policy host: {0}")]
    Resolve(String),
    #[error("cannot connect to the policy host: {0}")]
    Connect(String),
    /// Untrusted issuer, wrong name, expired, ...
    #[error("policy host certificate not valid: {0}")]
    Certificate(String),
    /// The TLS handshake failed for another reason.
    #[error("TLS with the policy host failed: {0}")]
    Tls(String),
    /// The HTTP exchange failed (connection closed, malformed response, ...).
    #[error("HTTP request for the policy failed: {0}")]
    Http(String),
    /// RFC 8461 3.3: redirects must not be followed.
    #[error("policy host answered with a redirect (HTTP {0}), not followed")]
    Redirect(u16),
    #[error("policy host answered HTTP {0}")]
    Status(u16),
    /// The media type was not `text/plain` (or absent).
    #[error("policy has content type {0:?}, not text/plain")]
    ContentType(String),
    #[error("policy larger than {MAX_POLICY_SIZE} bytes")]
    TooLarge,
    #[error("{0}")]
    Invalid(StsError),
    #[error("policy fetch timed out after {0:?}")]
    Timeout(Duration),
}

impl FetchError {
    /// The RFC 8460 result type to report.
    pub fn result_type(&self) -> ResultType {
        match self {
            FetchError::Certificate(_) => ResultType::StsWebpkiInvalid,
            FetchError::TooLarge | FetchError::Invalid(_) => ResultType::StsPolicyInvalid,
            _ => ResultType::StsPolicyFetchError,
        }
    }
}

/// Fetches policies over HTTPS. Cheap to clone.
#[derive(Clone)]
pub struct StsFetcher {
    router: Router,
    connector: TlsConnector,
    https_port: u16,
    timeout: Duration,
}

impl std::fmt::Debug for StsFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsFetcher")
            .field("https_port", &self.https_port)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Aborts a spawned task when dropped (the HTTP connection driver of one fetch).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl StsFetcher {
    /// A fetcher resolving policy hosts through `router` (needs a tokio runtime to fetch).
    pub fn new(router: Router, config: FetchConfig) -> Result<StsFetcher, StsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(config.roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(StsFetcher {
            router,
            connector: TlsConnector::from(Arc::new(tls)),
            https_port: config.https_port,
            timeout: config.timeout,
        })
    }

    /// Fetches and parses the policy of `domain` (lower case A-labels, no trailing dot).
    pub async fn fetch(&self, domain: &str) -> Result<FetchedPolicy, FetchError> {
        let host = format!(
            "mta-sts.{}",
            domain.trim_end_matches('.').to_ascii_lowercase()
        );
        match tokio::time::timeout(self.timeout, self.fetch_from(&host)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_from(&self, host: &str) -> Result<FetchedPolicy, FetchError> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| FetchError::Resolve(format!("{host}: {e}")))?;
        let addresses = self
            .router
            .host_addresses(host)
            .await
            .map_err(|e| FetchError::Resolve(format!("{host}: {e}")))?;
        if addresses.is_empty() {
            return Err(FetchError::Resolve(format!("{host} has no address")));
        }
        let tcp = self.connect(&addresses).await?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(tls_error)?;

        let http = |e: hyper::Error| FetchError::Http(e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(32 * 1024)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(http)?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let authority = if self.https_port == 443 {
            host.to_owned()
        } else {
            format!("{host}:{}", self.https_port)
        };
        let request = Request::get(WELL_KNOWN_PATH)
            .header(HOST, authority)
            .header(USER_AGENT, "hato (MTA-STS)")
            .header(CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(http)?;

        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        let content_type = match response.headers().get(CONTENT_TYPE) {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None => return Err(FetchError::ContentType(String::new())),
        };
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("text/plain") {
            return Err(FetchError::ContentType(content_type));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_POLICY_SIZE as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body =
            Vec::with_capacity(declared.unwrap_or(1024).min(MAX_POLICY_SIZE as u64) as usize);
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(http)?;
            if let Ok(data) = frame.into_data() {
                if body.len() + data.len() > MAX_POLICY_SIZE {
                    return Err(FetchError::TooLarge);
                }
                body.extend_from_slice(&data);
            }
        }
        let policy = parse_policy(&body).map_err(FetchError::Invalid)?;
        Ok(FetchedPolicy { policy, body })
    }

    /// A TCP connection to the first address that accepts.
    async fn connect(&self, addresses: &[IpAddr]) -> Result<TcpStream, FetchError> {
        let mut problems = Vec::new();
        for ip in addresses {
            let addr = SocketAddr::new(*ip, self.https_port);
            match tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => problems.push(format!("{addr}: {e}")),
                Err(_) => problems.push(format!("{addr}: timed out")),
            }
        }
        Err(FetchError::Connect(problems.join("; ")))
    }
}

/// Sorts a failed handshake into certificate problems (`sts-webpki-invalid`) and the rest.
fn tls_error(e: std::io::Error) -> FetchError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(
            err @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) => FetchError::Certificate(err.to_string()),
        Some(err) => FetchError::Tls(err.to_string()),
        None => FetchError::Tls(e.to_string()),
    }
}

/// Where a policy in a lookup result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Fetched during this lookup.
    Fresh,
    /// From the cache (memory or disk).
    Cache,
}

/// The policy in force for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePolicy {
    pub policy: Policy,
    /// The TXT record's id the policy was fetched under.
    pub id: String,
    pub source: Source,
    pub fetched_at: SystemTime,
    /// `fetched_at` + `max_age` (at most [`MAX_MAX_AGE`]).
    pub expires: SystemTime,
}

/// Something that went wrong during a lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsProblem {
    /// The TXT lookup failed temporarily, or the record was invalid or not unique (RFC 8461
    /// 3.1: then the domain counts as having no live policy).
    #[error("MTA-STS TXT record: {0}")]
    Txt(String),
    /// The policy could not be fetched or was invalid. `repeated`: this is the remembered
    /// failure of an earlier fetch of the same id (no new fetch was tried).
    #[error("MTA-STS policy fetch: {error}")]
    Fetch { error: FetchError, repeated: bool },
}

impl StsProblem {
    /// The RFC 8460 result type, for fetch failures.
    pub fn result_type(&self) -> Option<ResultType> {
        match self {
            StsProblem::Txt(_) => None,
            StsProblem::Fetch { error, .. } => Some(error.result_type()),
        }
    }
}

/// The outcome of [`StsResolver::policy_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsLookup {
    /// The policy to apply; None: the domain has no MTA-STS policy (deliver as without).
    pub policy: Option<ActivePolicy>,
    /// What went wrong, also when a cached policy (or none) was used instead.
    pub problem: Option<StsProblem>,
}

impl StsLookup {
    /// The mode of the policy in force, if any.
    pub fn mode(&self) -> Option<Mode> {
        self.policy.as_ref().map(|p| p.policy.mode)
    }

    /// The policy to check MX hosts and TLS against: enforce or testing (a `mode: none`
    /// policy asks for nothing).
    pub fn applicable(&self) -> Option<&Policy> {
        self.policy
            .as_ref()
            .map(|p| &p.policy)
            .filter(|p| p.mode != Mode::None)
    }
}

/// Settings of a [`StsResolver`].
#[derive(Clone)]
pub struct StsConfig {
    pub fetch: FetchConfig,
    /// Where policies are kept across restarts (and shared with other nodes); None: in memory
    /// only.
    pub cache: Option<Arc<dyn PolicyCache>>,
    /// A failed fetch for a TXT id is not tried again before this (the failure is reported
    /// again instead). Zero: every lookup fetches.
    pub retry_failed_fetch_after: Duration,
}

impl std::fmt::Debug for StsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsConfig")
            .field("fetch", &self.fetch)
            .field("cache", &self.cache.is_some())
            .field("retry_failed_fetch_after", &self.retry_failed_fetch_after)
            .finish()
    }
}

impl Default for StsConfig {
    fn default() -> StsConfig {
        StsConfig {
            fetch: FetchConfig::default(),
            cache: None,
            retry_failed_fetch_after: DEFAULT_RETRY_FAILED_FETCH_AFTER,
        }
    }
}

/// A cached policy.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    policy: Policy,
    fetched_at: SystemTime,
    expires: SystemTime,
}

impl Entry {
    fn active(&self, source: Source) -> ActivePolicy {
        ActivePolicy {
            policy: self.policy.clone(),
            id: self.id.clone(),
            source,
            fetched_at: self.fetched_at,
            expires: self.expires,
        }
    }
}

/// A remembered fetch failure.
#[derive(Debug, Clone)]
struct Failure {
    id: String,
    error: FetchError,
    until: SystemTime,
}

/// One domain's state, behind its own async mutex.
#[derive(Debug, Default)]
struct Slot {
    /// The persistent cache was read (or there is none).
    loaded: bool,
    entry: Option<Entry>,
    failure: Option<Failure>,
}

struct Inner {
    router: Router,
    fetcher: StsFetcher,
    cache: Option<Arc<dyn PolicyCache>>,
    retry_failed_fetch_after: Duration,
    slots: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

/// MTA-STS policy discovery with a cache. Cheap to clone (shared state).
#[derive(Clone)]
pub struct StsResolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsResolver")
            .field("fetcher", &self.inner.fetcher)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl StsResolver {
    /// A resolver asking DNS through `router`.
    pub fn new(router: Router, config: StsConfig) -> Result<StsResolver, StsSetupError> {
        let fetcher = StsFetcher::new(router.clone(), config.fetch)?;
        Ok(StsResolver {
            inner: Arc::new(Inner {
                router,
                fetcher,
                cache: config.cache,
                retry_failed_fetch_after: config.retry_failed_fetch_after,
                slots: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The fetcher (e.g. to fetch a policy for diagnostics, without the cache).
    pub fn fetcher(&self) -> &StsFetcher {
        &self.inner.fetcher
    }

    /// The policy in force for mail to `domain` (RFC 8461 5, 5.1), fetching it when the TXT
    /// record announces a policy the cache does not have.
    pub async fn policy_for(&self, domain: &str) -> StsLookup {
        let domain = match normalize_domain(domain) {
            Ok(Some(d)) => d,
            Ok(None) => {
                return StsLookup {
                    policy: None,
                    problem: None,
                };
            }
            Err(e) => {
                return StsLookup {
                    policy: None,
                    problem: Some(StsProblem::Txt(e)),
                };
            }
        };
        let slot = self.slot(&domain);
        let lookup = {
            let mut guard = slot.lock().await;
            self.lookup_locked(&domain, &mut guard).await
        };
        self.release(&domain, slot);
        lookup
    }

    /// The cached, unexpired policy of `domain` without any DNS or HTTPS (reads the persistent
    /// cache if this domain was not looked up yet).
    pub async fn cached(&self, domain: &str) -> Option<ActivePolicy> {
        let domain = normalize_domain(domain).ok()??;
        let slot = self.slot(&domain);
        let active = {
            let mut guard = slot.lock().await;
            self.load_and_expire(&domain, &mut guard, SystemTime::now())
                .await;
            guard.entry.as_ref().map(|e| e.active(Source::Cache))
        };
        self.release(&domain, slot);
        active
    }

    fn slot(&self, domain: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(domain.to_owned()).or_default().clone()
    }

    /// Drops the domain's slot when it holds nothing worth keeping and nobody else uses it,
    /// so the map does not grow with every domain mail was ever sent to.
    fn release(&self, domain: &str, slot: Arc<tokio::sync::Mutex<Slot>>) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. Others only get one under this lock.
        if Arc::strong_count(&slot) == 2
            && let Ok(state) = slot.try_lock()
            && state.entry.is_none()
            && state.failure.is_none()
        {
            drop(state);
            slots.remove(domain);
        }
    }

    /// Loads the persistent cache once (and again when the memory copy expired: another node
    /// may have refreshed it), drops an expired entry and an outdated failure. True if the
    /// persistent cache was read just now.
    async fn load_and_expire(&self, domain: &str, slot: &mut Slot, now: SystemTime) -> bool {
        let expired = slot.entry.as_ref().is_some_and(|e| e.expires <= now);
        if expired {
            // The persistent copy was saved with this expiry and is gone by now too, unless
            // another node refreshed it meanwhile: read it again below.
            slot.entry = None;
        }
        let read = !slot.loaded || expired;
        if read {
            slot.loaded = true;
            if let Some(cache) = &self.inner.cache {
                slot.entry = load_entry(cache.as_ref(), domain)
                    .await
                    .filter(|e| e.expires > now);
            }
        }
        if slot.failure.as_ref().is_some_and(|f| f.until <= now) {
            slot.failure = None;
        }
        read && self.inner.cache.is_some()
    }

    async fn lookup_locked(&self, domain: &str, slot: &mut Slot) -> StsLookup {
        let now = SystemTime::now();
        let fresh_read = self.load_and_expire(domain, slot, now).await;
        let cached = |slot: &Slot, problem: Option<StsProblem>| StsLookup {
            policy: slot.entry.as_ref().map(|e| e.active(Source::Cache)),
            problem,
        };

        // RFC 8461 3.1: no record, an invalid one, several, or a failed lookup all mean "no
        // live policy"; 5.1: a cached policy then stays in force until it expires.
        let record = match self
            .inner
            .router
            .txt(&crate::mta_sts::txt_name(domain))
            .await
        {
            Ok(records) => match parse_txt(&records) {
                Ok(Some(record)) => record,
                Ok(None) => return cached(slot, None),
                Err(e) => return cached(slot, Some(StsProblem::Txt(e.to_string()))),
            },
            Err(e) => return cached(slot, Some(StsProblem::Txt(format!("lookup failed: {e}")))),
        };
        if slot.entry.as_ref().is_some_and(|e| e.id == record.id) {
            return cached(slot, None);
        }
        if let Some(failure) = slot.failure.as_ref().filter(|f| f.id == record.id) {
            let problem = StsProblem::Fetch {
                error: failure.error.clone(),
                repeated: true,
            };
            return cached(slot, Some(problem));
        }
        // Another node (or process) sharing the cache may have fetched this id already.
        if !fresh_read
            && let Some(cache) = &self.inner.cache
            && let Some(entry) = load_entry(cache.as_ref(), domain).await
            && entry.id == record.id
            && entry.expires > now
        {
            slot.entry = Some(entry);
            return cached(slot, None);
        }

        match self.inner.fetcher.fetch(domain).await {
            Ok(fetched) => {
                let fetched_at = SystemTime::now();
                let max_age = fetched.policy.max_age.min(MAX_MAX_AGE);
                let entry = Entry {
                    id: record.id,
                    policy: fetched.policy,
                    fetched_at,
                    expires: fetched_at + Duration::from_secs(max_age),
                };
                if let Some(cache) = &self.inner.cache {
                    let bytes = encode_entry(domain, &entry, &fetched.body);
                    if let Err(e) = cache.save(domain, &bytes, entry.expires).await {
                        warn!(domain = %domain, error = %e, "cannot write the MTA-STS policy cache");
                    }
                }
                slot.failure = None;
                let active = entry.active(Source::Fresh);
                slot.entry = Some(entry);
                StsLookup {
                    policy: Some(active),
                    problem: None,
                }
            }
            Err(error) => {
                if !self.inner.retry_failed_fetch_after.is_zero() {
                    slot.failure = Some(Failure {
                        id: record.id,
                        error: error.clone(),
                        until: now + self.inner.retry_failed_fetch_after,
                    });
                }
                // RFC 8461 5.1: keep using the cached policy; without one, as if no MTA-STS.
                cached(
                    slot,
                    Some(StsProblem::Fetch {
                        error,
                        repeated: false,
                    }),
                )
            }
        }
    }
}

/// Lower-case A-label form without the trailing dot; `Ok(None)` for address literals (no
/// MTA-STS); `Err` for names that cannot be a domain.
fn normalize_domain(domain: &str) -> Result<Option<String>, String> {
    let trimmed = domain.trim().trim_end_matches('.');
    if trimmed.starts_with('[') {
        return Ok(None);
    }
    let invalid = || format!("invalid domain name {domain:?}");
    let name = hickory_resolver::proto::rr::Name::from_utf8(trimmed).map_err(|_| invalid())?;
    let ascii = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let valid = !ascii.is_empty()
        && ascii.len() <= 253
        && ascii.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(Some(ascii))
    } else {
        Err(invalid())
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The cache entry: [`CACHE_FORMAT`], `domain`, `id`, `fetched_at`, `expires` (Unix seconds),
/// an empty line, then the policy body as fetched.
fn encode_entry(domain: &str, entry: &Entry, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{CACHE_FORMAT}\ndomain {domain}\nid {}\nfetched_at {}\nexpires {}\n\n",
        entry.id,
        unix_secs(entry.fetched_at),
        unix_secs(entry.expires),
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn decode_entry(domain: &str, bytes: &[u8]) -> Result<Entry, String> {
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no end of the header")?;
    let header = std::str::from_utf8(&bytes[..split]).map_err(|_| "header not UTF-8")?;
    let body = &bytes[split + 2..];
    let mut lines = header.split('\n');
    if lines.next() != Some(CACHE_FORMAT) {
        return Err("unknown format".into());
    }
    let mut field = |key: &str| -> Result<String, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(key))
            .and_then(|l| l.strip_prefix(' '))
            .map(str::to_owned)
            .ok_or_else(|| format!("no {key}"))
    };
    if field("domain")? != domain {
        return Err("for another domain".into());
    }
    let id = field("id")?;
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("bad id {id:?}"));
    }
    let number = |v: String| v.parse::<u64>().map_err(|_| format!("bad number {v:?}"));
    let fetched_at = number(field("fetched_at")?)?;
    let expires = number(field("expires")?)?;
    let policy = parse_policy(body).map_err(|e| e.to_string())?;
    // Never longer than the policy itself allows, whatever the file says.
    let expires = expires.min(fetched_at.saturating_add(policy.max_age.min(MAX_MAX_AGE)));
    Ok(Entry {
        id,
        policy,
        fetched_at: UNIX_EPOCH + Duration::from_secs(fetched_at),
        expires: UNIX_EPOCH + Duration::from_secs(expires),
    })
}

/// Reads a domain's cache entry; a damaged or unknown one is removed. A cache that fails counts
/// as empty (logged): the policy is then fetched again.
async fn load_entry(cache: &dyn PolicyCache, domain: &str) -> Option<Entry> {
    let bytes = match cache.load(domain).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            warn!(domain, error = %e, "cannot read the MTA-STS policy cache");
            return None;
        }
    };
    let decoded = if bytes.len() > MAX_CACHE_ENTRY {
        Err("too large".to_owned())
    } else {
        decode_entry(domain, &bytes)
    };
    match decoded {
        Ok(entry) => Some(entry),
        Err(e) => {
            warn!(domain, error = %e, "ignoring (and removing) an unusable MTA-STS cache entry");
            if let Err(e) = cache.remove(domain).await {
                warn!(domain, error = %e, "cannot remove an MTA-STS cache entry");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(max_age: u64) -> (Entry, Vec<u8>) {
        let body = format!(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: {max_age}\r\n"
        )
        .into_bytes();
        let fetched_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        (
            Entry {
                id: "abc123".into(),
                policy: parse_policy(&body).unwrap(),
                fetched_at,
                expires: fetched_at + Duration::from_secs(max_age),
            },
            body,
        )
    }

    #[test]
    fn cache_entry_round_trip() {
        let (e, body) = entry(86_400);
        let bytes = encode_entry("example.test", &e, &body);
        assert!(bytes.starts_with(b"hato-mta-sts-cache 1\ndomain example.test\nid abc123\n"));
        let back = decode_entry("example.test", &bytes).unwrap();
        assert_eq!(
            (back.id, back.policy, back.fetched_at, back.expires),
            (e.id, e.policy, e.fetched_at, e.expires)
        );
        assert!(
            decode_entry("other.test", &bytes).is_err(),
            "another domain"
        );
    }

    #[test]
    fn damaged_cache_entries_are_refused() {
        let (e, body) = entry(600);
        let good = String::from_utf8(encode_entry("example.test", &e, &body)).unwrap();
        for bad in [
            good.replace("cache 1", "cache 2"),
            good.replace("id abc123", "id abc-123"),
            good.replace("id abc123\n", ""),
            good.replace("fetched_at 1700000000", "fetched_at soon"),
            good.replace("mode: enforce", "mode: strict"),
            good.replace("\n\n", "\n"),
            String::new(),
        ] {
            assert!(
                decode_entry("example.test", bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        // An entry claiming a later expiry than max_age allows is cut back.
        let long = good.replace("expires 1700000600", "expires 1900000000");
        let back = decode_entry("example.test", long.as_bytes()).unwrap();
        assert_eq!(back.expires, e.expires);
    }

    #[test]
    fn domains_are_normalised() {
        assert_eq!(
            normalize_domain("Example.TEST.").unwrap(),
            Some("example.test".into())
        );
        assert_eq!(
            normalize_domain("bücher.example").unwrap(),
            Some("xn--bcher-kva.example".into())
        );
        assert_eq!(normalize_domain("[192.0.2.1]").unwrap(), None);
        for bad in ["", "a..b", "../etc", "a/b.example", "a b.example"] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn result_types() {
        assert_eq!(
            FetchError::Certificate("x".into()).result_type().as_str(),
            "sts-webpki-invalid"
        );
        assert_eq!(
            FetchError::Invalid(StsError::BadPolicy("x".into()))
                .result_type()
                .as_str(),
            "sts-policy-invalid"
        );
        assert_eq!(
            FetchError::TooLarge.result_type(),
            ResultType::StsPolicyInvalid
        );
        for e in [
            FetchError::Redirect(301),
            FetchError::Status(404),
            FetchError::ContentType("text/html".into()),
            FetchError::Timeout(Duration::from_secs(1)),
            FetchError::Connect("refused".into()),
        ] {
            assert_eq!(e.result_type().as_str(), "sts-policy-fetch-error", "{e}");
        }
    }
}
