//! The `https` listener: the MTA-STS policy host (RFC 8461 3.2, 3.3) of every local domain, and
//! nothing else.
//!
//! - One policy for all local domains, from `[mta_sts]` ([`StsPolicy`]): `version: STSv1`, `mode`,
//!   one `mx` line per MX host pattern, `max_age`, CRLF line endings. Its `id` (published in the
//!   `_mta-sts.<domain>` TXT record) is derived from the policy text (SHA-256), so the record
//!   `hato dns` prints and the policy served always agree, and the id changes exactly when the
//!   text does.
//! - `GET` (or `HEAD`) `/.well-known/mta-sts.txt` with `Host: mta-sts.<local domain>` gets `200`
//!   and the policy as `text/plain`. Another path or a host that is not ours: `404`; the policy
//!   path with another method: `405`; a Host that is ours but is not the TLS server name (SNI) the
//!   client asked for: `421`; a missing or repeated Host (HTTP/1.1): `400`. Never a redirect
//!   (RFC 8461 3.3: senders must not follow them).
//! - TLS with the server's certificates ([`hato_tls::CertResolver`]: SNI selection, reloads),
//!   TLS 1.2/1.3, ring, ALPN `http/1.1`. The certificate must cover `mta-sts.<domain>`: see
//!   [`uncovered_hosts`] (checked at start-up).
//! - HTTP/1.1 only (hyper), one request per connection (no keep-alive), request head within
//!   [`HEADER_TIMEOUT`] and 16 KiB, the whole connection within [`CONNECTION_TIMEOUT`].
//!   Connection limits (global and per client address) are the server's, applied in `server.rs`
//!   before the service is called (`crate::net`).
//!
//! Must never: answer for a domain that is not local, redirect, or read a request body.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hato_tls::CertResolver;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::info;

use crate::net::{self, Connection, ServerTls, Shutdown};

pub use crate::mta_sts_policy::{StsMode, StsPolicy};

/// Where senders fetch the policy (RFC 8461 3.3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/mta-sts.txt";
/// Time for the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the request line and headers after the handshake.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the whole connection, handshake included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Request line and headers larger than this are refused (hyper's minimum is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The policy host of `domain`: `mta-sts.<domain>` (lower case, no trailing dot).
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{}", normalize(domain))
}

/// The policy hosts of `domains` that no loaded certificate covers (to warn about at start-up:
/// senders refuse a policy served with a certificate for another name).
pub fn uncovered_hosts(resolver: &CertResolver, domains: &[String]) -> Vec<String> {
    let certs = resolver.current();
    domains
        .iter()
        .map(|d| policy_host(d))
        .filter(|host| !certs.iter().any(|c| c.covers(host)))
        .collect()
}

/// What one `https` listener serves: built once at start-up, shared by its connections.
pub struct Site {
    /// `mta-sts.<domain>` for each local domain, sorted.
    hosts: Vec<String>,
    policy: Bytes,
    id: String,
    /// Certificates with ALPN `http/1.1`, and [`HANDSHAKE_TIMEOUT`].
    tls: ServerTls,
    // The constants above; fields so that tests can shorten them.
    header_timeout: Duration,
    connection_timeout: Duration,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("hosts", &self.hosts)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// Serves `policy` for `mta-sts.<domain>` of each of `domains`, with the certificates of
    /// `resolver` (the same set as the mail listeners; reloads apply).
    pub fn new(policy: &StsPolicy, domains: &[String], resolver: Arc<CertResolver>) -> Site {
        let mut hosts: Vec<String> = domains.iter().map(|d| policy_host(d)).collect();
        hosts.sort();
        hosts.dedup();
        let mut tls = (*hato_tls::server_config(resolver)).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Site {
            hosts,
            policy: Bytes::from(policy.text()),
            id: policy.id(),
            tls: ServerTls::new(Arc::new(tls), HANDSHAKE_TIMEOUT),
            header_timeout: HEADER_TIMEOUT,
            connection_timeout: CONNECTION_TIMEOUT,
        }
    }

    /// The TLS side of the listener (the handshake happens before [`serve_tls`]).
    pub fn tls(&self) -> ServerTls {
        self.tls.clone()
    }

    /// The host names served (`mta-sts.<domain>`), sorted.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The policy id the `_mta-sts` TXT records must carry.
    pub fn policy_id(&self) -> &str {
        &self.id
    }

    /// The answer to one request; `sni` is the server name the client sent in the TLS
    /// handshake.
    fn respond<B>(&self, request: &Request<B>, sni: Option<&str>) -> Response<Full<Bytes>> {
        let host = match request_host(request) {
            Ok(Some(host)) => host,
            Ok(None) => match sni {
                // HTTP/1.0 without Host: the TLS server name says which policy is wanted.
                Some(sni) if request.version() < Version::HTTP_11 => normalize(sni),
                _ => return plain(StatusCode::BAD_REQUEST, "missing Host header\r\n"),
            },
            Err(why) => return plain(StatusCode::BAD_REQUEST, why),
        };
        if self.hosts.binary_search(&host).is_err() {
            return plain(StatusCode::NOT_FOUND, "not found\r\n");
        }
        if sni.is_some_and(|sni| normalize(sni) != host) {
            return plain(
                StatusCode::MISDIRECTED_REQUEST,
                "the Host header differs from the TLS server name\r\n",
            );
        }
        if request.uri().path() != WELL_KNOWN_PATH {
            return plain(StatusCode::NOT_FOUND, "not found\r\n");
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\r\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let mut response = Response::new(Full::new(self.policy.clone()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
    }
}

/// The host a request is for, lower case, without port or trailing dot: the authority of an
/// absolute-form target, else the Host header (RFC 9112 3.2, 3.2.2). `Ok(None)`: neither.
fn request_host<B>(request: &Request<B>) -> Result<Option<String>, &'static str> {
    let mut values = request.headers().get_all(HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err("more than one Host header\r\n");
    }
    if let Some(authority) = request.uri().authority() {
        return Ok(Some(normalize(authority.host())));
    }
    let Some(header) = header else {
        return Ok(None);
    };
    let authority = header
        .to_str()
        .ok()
        .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok())
        .filter(|a| !a.as_str().contains('@') && valid_port(a.as_str()))
        .ok_or("invalid Host header\r\n")?;
    Ok(Some(normalize(authority.host())))
}

/// Whether the port of a Host value, if any, is a number (http's parser lets `host:x` through).
fn valid_port(authority: &str) -> bool {
    let after_host = &authority[authority.rfind(']').map_or(0, |i| i + 1)..];
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok(),
        None => true,
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The `https` service of a listener.
pub struct HttpsService {
    pub site: Arc<Site>,
    pub shutdown: Shutdown,
}

#[async_trait::async_trait]
impl net::Service for HttpsService {
    fn name(&self) -> &'static str {
        "https"
    }

    /// The client expects a TLS handshake: nothing readable can be said.
    fn busy_reply(&self, _why: &str) -> Vec<u8> {
        Vec::new()
    }

    async fn serve(&self, conn: Connection) -> anyhow::Result<String> {
        let sni = conn.tls.and_then(|t| t.sni);
        serve_tls(
            conn.stream,
            sni,
            self.site.clone(),
            self.shutdown.clone(),
            tokio::time::Instant::now(),
        )
        .await
    }
}

/// Serves one accepted connection: the TLS handshake, then one HTTP/1.1 request. Stops early
/// (after the response in progress) when `shutdown` becomes true. Returns the counts for the
/// disconnect log line.
pub async fn serve(
    stream: TcpStream,
    site: Arc<Site>,
    shutdown: Shutdown,
) -> anyhow::Result<String> {
    let started = tokio::time::Instant::now();
    let (tls, facts) = site
        .tls
        .accept(stream, &crate::net::Pressure::default())
        .await?;
    serve_tls(tls, facts.sni, site, shutdown, started).await
}

/// Serves one HTTP/1.1 request on an established TLS stream; `sni` is the server name the
/// client asked for, `started` when the connection was accepted.
pub async fn serve_tls<S>(
    tls: S,
    sni: Option<String>,
    site: Arc<Site>,
    mut shutdown: Shutdown,
    started: tokio::time::Instant,
) -> anyhow::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let requests = Arc::new(AtomicUsize::new(0));
    let service = {
        let (site, requests) = (site.clone(), requests.clone());
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            requests.fetch_add(1, Ordering::Relaxed);
            let response = site.respond(&request, sni.as_deref());
            info!(
                method = %request.method(),
                host = request.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("-"),
                path = request.uri().path(),
                status = response.status().as_u16(),
                "https request"
            );
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(site.header_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    let connection = http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let remaining = site.connection_timeout.saturating_sub(started.elapsed());
    let result = tokio::time::timeout(remaining, async {
        tokio::select! {
            result = connection.as_mut() => result,
            Ok(()) = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.as_mut().await
            }
        }
    })
    .await;
    let n = requests.load(Ordering::Relaxed);
    match result {
        Ok(Ok(())) => Ok(format!("requests={n}")),
        Ok(Err(e)) => Err(anyhow::anyhow!("HTTP: {e} (requests={n})")),
        Err(_) => Err(anyhow::anyhow!(
            "connection took longer than {} s (requests={n})",
            site.connection_timeout.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::{Path, PathBuf};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::mta_sts_policy::{DEFAULT_MAX_AGE, MAX_MAX_AGE};

    const TEXT: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.backup.example.test\r\nmax_age: 86400\r\n";

    fn policy() -> StsPolicy {
        StsPolicy {
            mode: StsMode::Enforce,
            mx: vec!["mail.example.test".into(), "*.backup.example.test".into()],
            max_age: 86_400,
        }
    }

    #[test]
    fn policy_text_is_exact() {
        assert_eq!(policy().text(), TEXT);
        let defaults = StsPolicy {
            mode: StsMode::default(),
            mx: vec!["Mail.Example.COM.".into()],
            max_age: DEFAULT_MAX_AGE,
        };
        assert_eq!(
            defaults.text(),
            "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
        );
        let none = StsPolicy {
            mode: StsMode::None,
            mx: vec![],
            max_age: 0,
        };
        assert_eq!(
            none.text(),
            "version: STSv1\r\nmode: none\r\nmax_age: 0\r\n"
        );
        // What a sender (hato's own MTA-STS client) reads back.
        let parsed = hato_delivery::mta_sts::parse_policy(TEXT.as_bytes()).unwrap();
        assert_eq!(parsed.mode, hato_delivery::mta_sts::Mode::Enforce);
        assert_eq!(parsed.mx, ["mail.example.test", "*.backup.example.test"]);
        assert_eq!(parsed.max_age, 86_400);
    }

    #[test]
    fn id_is_derived_from_the_text() {
        // printf '<TEXT>' | sha256sum: a2992a691bc5bf9a4dc0f16fe5fa522e4c1c9613808e1daeaef2f2d115f97a71
        assert_eq!(policy().id(), "a2992a691bc5bf9a4dc0");
        assert_eq!(policy().id(), policy().id());
        assert_eq!(policy().txt_record(), "v=STSv1; id=a2992a691bc5bf9a4dc0");
        let record = hato_delivery::mta_sts::parse_txt(&[policy().txt_record()])
            .unwrap()
            .unwrap();
        assert_eq!(record.id, policy().id());
        // The same text (after normalisation) has the same id ...
        let mut same = policy();
        same.mx[0] = "MAIL.example.test.".into();
        assert_eq!(same.id(), policy().id());
        // ... and any change of the text changes it.
        let mut ids = vec![policy().id()];
        let mut p = policy();
        p.mode = StsMode::Testing;
        ids.push(p.id());
        let mut p = policy();
        p.max_age += 1;
        ids.push(p.id());
        let mut p = policy();
        p.mx.reverse();
        ids.push(p.id());
        let mut p = policy();
        p.mx.push("mx2.example.test".into());
        ids.push(p.id());
        for id in &ids {
            assert!(id.len() == 20 && id.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
    }

    #[test]
    fn validation() {
        assert_eq!(policy().validate(), Ok(()));
        let with = |mode, mx: &[&str], max_age| StsPolicy {
            mode,
            mx: mx.iter().map(|s| s.to_string()).collect(),
            max_age,
        };
        assert_eq!(with(StsMode::None, &[], 0).validate(), Ok(()));
        assert_eq!(
            with(StsMode::Testing, &["localhost"], MAX_MAX_AGE).validate(),
            Ok(())
        );
        let e = with(StsMode::Enforce, &[], 1).validate().unwrap_err();
        assert!(e.contains("at least one mx"), "{e}");
        for bad in ["", "*", "a.*.example", "mail example", "*.", "-a.example"] {
            let e = with(StsMode::Testing, &[bad], 1).validate().unwrap_err();
            assert!(e.contains("not an MX host name"), "{bad}: {e}");
        }
        let e = with(StsMode::Testing, &["mx.example"], MAX_MAX_AGE + 1)
            .validate()
            .unwrap_err();
        assert!(e.contains("max_age"), "{e}");
    }

    /// A self-signed certificate for the policy hosts of example.test and second.test (not
    /// third.test) and the server's name, loaded as the server loads its certificates.
    struct Pki {
        _dir: tempfile::TempDir,
        cert_pem: PathBuf,
        cert_der: Vec<u8>,
        resolver: Arc<CertResolver>,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "mail.example.test",
            "mta-sts.example.test",
            "mta-sts.second.test",
        ];
        let generated =
            rcgen::generate_simple_self_signed(names.map(String::from).to_vec()).unwrap();
        let paths = hato_tls::CertPaths {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&paths.cert, generated.cert.pem()).unwrap();
        std::fs::write(&paths.key, generated.signing_key.serialize_pem()).unwrap();
        let (resolver, _) = CertResolver::load(vec![paths.clone()], "mail.example.test").unwrap();
        Pki {
            _dir: dir,
            cert_pem: paths.cert,
            cert_der: generated.cert.der().to_vec(),
            resolver: Arc::new(resolver),
        }
    }

    fn domains() -> Vec<String> {
        ["example.test", "Second.test.", "third.test"]
            .map(String::from)
            .to_vec()
    }

    fn site(pki: &Pki) -> Site {
        Site::new(&policy(), &domains(), pki.resolver.clone())
    }

    #[test]
    fn hosts_and_certificate_coverage() {
        let pki = pki();
        let site = site(&pki);
        assert_eq!(
            site.hosts(),
            [
                "mta-sts.example.test",
                "mta-sts.second.test",
                "mta-sts.third.test"
            ]
        );
        assert_eq!(site.policy_id(), policy().id());
        assert_eq!(
            uncovered_hosts(&pki.resolver, &domains()),
            ["mta-sts.third.test"]
        );
    }

    async fn answer(
        site: &Site,
        request: Request<()>,
        sni: Option<&str>,
    ) -> (StatusCode, hyper::HeaderMap, Bytes) {
        let response = site.respond(&request, sni);
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    fn get(uri: &str, host: &str) -> Request<()> {
        Request::get(uri).header(HOST, host).body(()).unwrap()
    }

    #[tokio::test]
    async fn requests() {
        let pki = pki();
        let site = site(&pki);
        let sni = Some("mta-sts.example.test");
        let ok = |(status, headers, body): (StatusCode, hyper::HeaderMap, Bytes)| {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[CONTENT_TYPE], "text/plain");
            assert_eq!(body, TEXT.as_bytes());
        };
        ok(answer(&site, get(WELL_KNOWN_PATH, "mta-sts.example.test"), sni).await);
        // Port, case, trailing dot; a query; no SNI (a client that connected by address).
        ok(answer(
            &site,
            get(WELL_KNOWN_PATH, "MTA-STS.Example.test.:5443"),
            sni,
        )
        .await);
        ok(answer(
            &site,
            get("/.well-known/mta-sts.txt?x=1", "mta-sts.example.test"),
            sni,
        )
        .await);
        ok(answer(&site, get(WELL_KNOWN_PATH, "mta-sts.third.test"), None).await);
        // An absolute-form target names the host (RFC 9112 3.2.2).
        let absolute = get(
            "https://mta-sts.example.test/.well-known/mta-sts.txt",
            "mta-sts.other.test",
        );
        ok(answer(&site, absolute, sni).await);
        // HTTP/1.0 without Host: the TLS server name.
        let old = Request::get(WELL_KNOWN_PATH)
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        ok(answer(&site, old, sni).await);
        let head = Request::head(WELL_KNOWN_PATH)
            .header(HOST, "mta-sts.example.test")
            .body(())
            .unwrap();
        assert_eq!(answer(&site, head, sni).await.0, StatusCode::OK);

        let status = |r: (StatusCode, hyper::HeaderMap, Bytes)| r.0;
        for path in [
            "/",
            "/.well-known/mta-sts.txt/",
            "/.well-known/MTA-STS.txt",
            "/x",
        ] {
            assert_eq!(
                status(answer(&site, get(path, "mta-sts.example.test"), sni).await),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        for host in [
            "mta-sts.other.test",
            "example.test",
            "mail.example.test",
            "192.0.2.1",
        ] {
            assert_eq!(
                status(answer(&site, get(WELL_KNOWN_PATH, host), sni).await),
                StatusCode::NOT_FOUND,
                "{host}"
            );
        }
        let (s, headers, _) = answer(
            &site,
            Request::post(WELL_KNOWN_PATH)
                .header(HOST, "mta-sts.example.test")
                .body(())
                .unwrap(),
            sni,
        )
        .await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[ALLOW], "GET, HEAD");
        // Ours, but not the name the TLS session was set up for.
        assert_eq!(
            status(answer(&site, get(WELL_KNOWN_PATH, "mta-sts.second.test"), sni).await),
            StatusCode::MISDIRECTED_REQUEST
        );
        // HTTP/1.1 needs exactly one valid Host (RFC 9112 3.2).
        let none = Request::get(WELL_KNOWN_PATH).body(()).unwrap();
        assert_eq!(
            status(answer(&site, none, sni).await),
            StatusCode::BAD_REQUEST
        );
        let two = Request::get(WELL_KNOWN_PATH)
            .header(HOST, "mta-sts.example.test")
            .header(HOST, "mta-sts.example.test")
            .body(())
            .unwrap();
        assert_eq!(
            status(answer(&site, two, sni).await),
            StatusCode::BAD_REQUEST
        );
        for bad in ["user@mta-sts.example.test", "mta-sts.example.test:x", "a b"] {
            assert_eq!(
                status(answer(&site, get(WELL_KNOWN_PATH, bad), sni).await),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    /// [`serve`] behind a test accept loop on 127.0.0.1:<ephemeral>; each connection's result
    /// is sent to `results`.
    struct Live {
        port: u16,
        shutdown: watch::Sender<bool>,
        results: mpsc::UnboundedReceiver<anyhow::Result<String>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Live {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(site: Site) -> Live {
        let site = Arc::new(site);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (tx, results) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (site, shutdown, tx) = (site.clone(), shutdown_rx.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(serve(stream, site, shutdown).await);
                });
            }
        });
        Live {
            port,
            shutdown,
            results,
            task,
        }
    }

    impl Live {
        async fn result(&mut self) -> anyhow::Result<String> {
            tokio::time::timeout(Duration::from_secs(10), self.results.recv())
                .await
                .expect("the connection ended")
                .unwrap()
        }
    }

    struct Fetched {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    /// curl to https://`url_host`:`port``path`, `url_host` resolved to 127.0.0.1, the test
    /// certificate as the only CA.
    async fn curl(port: u16, ca: &Path, url_host: &str, path: &str, extra: &[&str]) -> Fetched {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-i", "--http1.1", "--max-time", "10", "--resolve"])
            .arg(format!("{url_host}:{port}:127.0.0.1"))
            .arg("--cacert")
            .arg(ca)
            .args(extra)
            .arg(format!("https://{url_host}:{port}{path}"))
            .output()
            .await
            .expect("curl is needed for this test: apt-get install curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let split = out
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&out.stdout[..split]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        Fetched {
            status,
            head,
            body: out.stdout[split + 4..].to_vec(),
        }
    }

    #[tokio::test]
    async fn curl_fetches_the_policy() {
        let pki = pki();
        let mut live = start(site(&pki)).await;
        let (port, ca, host) = (live.port, pki.cert_pem.clone(), "mta-sts.example.test");

        let r = curl(port, &ca, host, WELL_KNOWN_PATH, &[]).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.body, TEXT.as_bytes());
        assert!(
            r.head.contains("\r\ncontent-type: text/plain\r\n"),
            "{}",
            r.head
        );
        assert!(
            r.head
                .contains(&format!("\r\ncontent-length: {}\r\n", TEXT.len()))
        );
        assert!(r.head.contains("\r\nconnection: close\r\n"), "{}", r.head);
        assert!(!r.head.contains("location:"), "{}", r.head);
        assert_eq!(live.result().await.unwrap(), "requests=1");

        let r = curl(port, &ca, "mta-sts.second.test", WELL_KNOWN_PATH, &[]).await;
        assert_eq!((r.status, r.body.as_slice()), (200, TEXT.as_bytes()));
        let r = curl(port, &ca, host, WELL_KNOWN_PATH, &["-I"]).await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert!(
            r.head
                .contains(&format!("\r\ncontent-length: {}\r\n", TEXT.len()))
        );

        let r = curl(
            port,
            &ca,
            host,
            WELL_KNOWN_PATH,
            &["-X", "POST", "-d", "x=1"],
        )
        .await;
        assert_eq!(r.status, 405);
        assert!(r.head.contains("\r\nallow: get, head"), "{}", r.head);
        // Other paths and unknown hosts: 404; a Host header naming another served host than the
        // TLS server name: 421 (misdirected).
        for (path, args, status) in [
            ("/", &[][..], 404),
            ("/.well-known/other.txt", &[], 404),
            (WELL_KNOWN_PATH, &["-H", "Host: mta-sts.other.test"], 404),
            (WELL_KNOWN_PATH, &["-H", "Host: mta-sts.second.test"], 421),
        ] {
            let r = curl(port, &ca, host, path, args).await;
            assert_eq!(r.status, status, "{path} {args:?}");
        }
        for _ in 0..7 {
            assert_eq!(live.result().await.unwrap(), "requests=1");
        }
    }

    /// A TLS client trusting the test certificate, offering ALPN http/1.1.
    async fn tls_connect(port: u16, pki: &Pki) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                pki.cert_der.clone(),
            ))
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("mta-sts.example.test").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn slow_clients_are_cut_off() {
        let pki = pki();
        let mut site = site(&pki);
        site.tls = site.tls.clone().with_timeout(Duration::from_millis(300));
        site.header_timeout = Duration::from_millis(300);
        let mut live = start(site).await;

        // No ClientHello.
        let started = std::time::Instant::now();
        let _tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, live.port))
            .await
            .unwrap();
        let e = live.result().await.unwrap_err().to_string();
        assert!(e.contains("TLS handshake timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // A handshake (ALPN http/1.1 agreed), then half a request head.
        let mut tls = tls_connect(live.port, &pki).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta")
            .await
            .unwrap();
        let e = live.result().await.unwrap_err().to_string();
        assert!(e.contains("timeout") && e.contains("requests=0"), "{e}");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;

        // A complete request over the same kind of connection still works.
        let mut tls = tls_connect(live.port, &pki).await;
        tls.write_all(
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n",
        )
        .await
        .unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response))
            .await
            .unwrap()
            .ok();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with(TEXT), "{response}");
        assert_eq!(live.result().await.unwrap(), "requests=1");
    }

    #[tokio::test]
    async fn shutdown_closes_an_idle_connection() {
        let pki = pki();
        let mut live = start(site(&pki)).await;
        let mut tls = tls_connect(live.port, &pki).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        live.shutdown.send(true).unwrap();
        let result = live.result().await;
        assert!(started.elapsed() < Duration::from_secs(5), "{result:?}");
        assert_eq!(result.unwrap(), "requests=0");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
        assert!(rest.is_empty());
    }

    /// hato's own MTA-STS client against this listener, with DNS from the records `hato dns`
    /// prints: `_mta-sts` TXT (the id), `mta-sts.` CNAME to the host name, its A record.
    #[tokio::test]
    async fn hatos_mta_sts_client_accepts_the_policy() {
        use crate::dns_records::{Endpoint, Service, Tls, ZoneInput, zone};
        use hato_delivery::mta_sts_fetch::{FetchConfig, Source, StsConfig, StsResolver};
        use hato_delivery::route::{AddressOrder, Router};

        let pki = pki();
        let live = start(site(&pki)).await;
        let endpoints = [Endpoint {
            service: Service::Https,
            tls: Tls::Implicit,
            port: live.port,
        }];
        let records = zone(&ZoneInput {
            hostname: "mail.example.test",
            domains: &["example.test".to_string()],
            endpoints: &endpoints,
            mta_sts: &policy(),
            addresses: &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            certificate: Some(&pki.cert_der),
        })
        .unwrap()
        .records;
        // The A, CNAME and TXT records, served by the in-test DNS server (an unsigned zone).
        let mut tree = hato_dns::testing::DnsTree::new();
        tree.zone("example.test", false);
        for r in &records {
            tree.add(match r.rtype {
                "A" => hato_dns::testing::a(&r.name, &r.data),
                "CNAME" => hato_dns::testing::cname(&r.name, &r.data),
                "TXT" => {
                    hato_dns::testing::txt(&r.name, &r.data.trim_matches('"').replace("\\\"", "\""))
                }
                _ => continue,
            });
        }
        let dns = tree.serve().await;
        let mut config = dns.dns_config();
        config.timeout = Duration::from_secs(2);
        config.attempts = 1;
        let router = Router::new(&config, AddressOrder::Ipv4First).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                pki.cert_der.clone(),
            ))
            .unwrap();
        let resolver = StsResolver::new(
            router,
            StsConfig {
                fetch: FetchConfig {
                    https_port: live.port,
                    timeout: Duration::from_secs(10),
                    roots,
                },
                cache: None,
                retry_failed_fetch_after: Duration::ZERO,
            },
        )
        .unwrap();
        let lookup = resolver.policy_for("example.test").await;
        assert_eq!(lookup.problem, None);
        let active = lookup.policy.expect("a policy");
        assert_eq!(active.id, policy().id());
        assert_eq!(active.source, Source::Fresh);
        assert_eq!(active.policy.mode, hato_delivery::mta_sts::Mode::Enforce);
        assert_eq!(
            active.policy.mx,
            ["mail.example.test", "*.backup.example.test"]
        );
        assert_eq!(active.policy.max_age, 86_400);
        assert!(active.policy.mx_matches("mail.example.test"));
    }
}
