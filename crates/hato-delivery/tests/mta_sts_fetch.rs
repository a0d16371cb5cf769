//! MTA-STS discovery, fetch and cache against real servers: `hato_dns::testing`'s in-test DNS
//! server answers `_mta-sts.example.test` TXT and `mta-sts.example.test` A 127.0.0.1 from a
//! zone that the tests change as they go; an HTTPS server (tokio-rustls, certificates from an
//! rcgen test CA) on 127.0.0.1:<ephemeral> serves whatever response a test sets and counts
//! requests.
//! The persistent cache is a [`MemoryPolicyCache`] shared by the resolvers of a test (the
//! server's is its store: the `hato` crate tests it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hato_delivery::mta_sts::Mode;
use hato_delivery::mta_sts_fetch::{
    FetchConfig, FetchError, ResultType, Source, StsConfig, StsLookup, StsProblem, StsResolver,
    add_pem_roots,
};
use hato_delivery::route::{AddressOrder, DnsConfig, Router};
use hato_delivery::state::{MemoryPolicyCache, PolicyCache};
use hato_dns::testing::{DnsServer, DnsTree, a, txt};
use hickory_resolver::proto::rr::RecordType;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ZONE: &str = "example.test.";
const DOMAIN: &str = "example.test";
const POLICY_HOST: &str = "mta-sts.example.test";
/// A name in no zone of the test DNS server (which answers for everything below `test.`):
/// REFUSED.
const ELSEWHERE: &str = "elsewhere.example";

/// The in-process DNS server of the zone.
struct Dns {
    server: DnsServer,
}

impl Dns {
    /// TTL 0 everywhere, so the resolver sees every change of the zone at once.
    async fn start() -> Dns {
        let mut tree = DnsTree::new();
        tree.ttl(0)
            .zone(ZONE, false)
            .add(a("mta-sts.example.test.", "127.0.0.1"));
        Dns {
            server: tree.serve().await,
        }
    }

    /// Replaces the `_mta-sts` TXT records (none: removed).
    async fn set_txt(&self, records: &[&str]) {
        let owner = "_mta-sts.example.test.";
        self.server.replace(
            owner,
            RecordType::TXT,
            records.iter().map(|r| txt(owner, r)).collect(),
        );
    }

    async fn set_id(&self, id: &str) {
        self.set_txt(&[&format!("v=STSv1; id={id};")]).await;
    }
}

/// A test CA and certificates it (or another CA) issued.
struct Pki {
    roots: RootCertStore,
    ca_pem: String,
    /// For `mta-sts.example.test`, by the trusted CA.
    good: Arc<rustls::ServerConfig>,
    /// For `other.example.test`, by the trusted CA.
    wrong_name: Arc<rustls::ServerConfig>,
    /// For `mta-sts.example.test`, by a CA nobody trusts.
    untrusted: Arc<rustls::ServerConfig>,
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hato test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn server_config(ca: &CertifiedIssuer<'static, KeyPair>, host: &str) -> Arc<rustls::ServerConfig> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Arc::new(config)
}

fn pki() -> Pki {
    let trusted = ca();
    let other = ca();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted.der().to_vec()))
        .unwrap();
    Pki {
        roots,
        ca_pem: trusted.pem(),
        good: server_config(&trusted, POLICY_HOST),
        wrong_name: server_config(&trusted, "other.example.test"),
        untrusted: server_config(&other, POLICY_HOST),
    }
}

/// What the HTTPS server does with a request.
#[derive(Clone)]
struct Behaviour {
    /// The raw HTTP response.
    response: Vec<u8>,
    /// Wait this long before answering.
    delay: Duration,
}

/// The in-process HTTPS policy server.
struct Https {
    port: u16,
    requests: Arc<AtomicUsize>,
    /// The request head of the last request.
    last_request: Arc<Mutex<String>>,
    behaviour: Arc<Mutex<Behaviour>>,
    tls: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    task: tokio::task::JoinHandle<()>,
}

fn response(status: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn policy(mode: &str, max_age: u64) -> Vec<u8> {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: mx.example.test\r\nmx: *.mail.example.test\r\nmax_age: {max_age}\r\n")
        .into_bytes()
}

fn serve_policy(mode: &str, max_age: u64) -> Vec<u8> {
    response(
        "200 OK",
        Some("text/plain; charset=utf-8"),
        &policy(mode, max_age),
    )
}

impl Https {
    async fn start(tls: Arc<rustls::ServerConfig>, response: Vec<u8>) -> Https {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let last_request = Arc::new(Mutex::new(String::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            response,
            delay: Duration::ZERO,
        }));
        let tls = Arc::new(Mutex::new(tls));
        let task = {
            let (requests, last_request, behaviour, tls) = (
                requests.clone(),
                last_request.clone(),
                behaviour.clone(),
                tls.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.lock().unwrap().clone());
                    let (requests, last_request, behaviour) =
                        (requests.clone(), last_request.clone(), behaviour.clone());
                    tokio::spawn(async move {
                        let Ok(mut stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        requests.fetch_add(1, Ordering::SeqCst);
                        *last_request.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
                        let b = behaviour.lock().unwrap().clone();
                        tokio::time::sleep(b.delay).await;
                        let _ = stream.write_all(&b.response).await;
                        let _ = stream.shutdown().await;
                    });
                }
            })
        };
        Https {
            port,
            requests,
            last_request,
            behaviour,
            tls,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn respond(&self, response: Vec<u8>) {
        self.behaviour.lock().unwrap().response = response;
    }

    fn delay(&self, delay: Duration) {
        self.behaviour.lock().unwrap().delay = delay;
    }

    fn certificate(&self, config: &Arc<rustls::ServerConfig>) {
        *self.tls.lock().unwrap() = config.clone();
    }

    /// Stops listening: connections are refused from now on.
    async fn stop(&self) {
        self.task.abort();
        while !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// DNS, PKI and policy server of one test.
struct Env {
    dns: Dns,
    pki: Pki,
    https: Https,
}

impl Env {
    /// `_mta-sts` TXT with id `1`, an enforce policy served.
    async fn start() -> Env {
        let dns = Dns::start().await;
        dns.set_id("1").await;
        let pki = pki();
        let https = Https::start(pki.good.clone(), serve_policy("enforce", 86_400)).await;
        Env { dns, pki, https }
    }

    /// A new policy: the TXT record with `id`, and the policy (`mode`, `max_age`) served.
    async fn publish(&self, id: &str, mode: &str, max_age: u64) {
        self.dns.set_id(id).await;
        self.https.respond(serve_policy(mode, max_age));
    }

    fn router(&self) -> Router {
        let config = DnsConfig {
            nameservers: vec![self.dns.server.addr()],
            timeout: Duration::from_secs(2),
            attempts: 1,
            tcp_only: false,
        };
        Router::new(&config, AddressOrder::Ipv4First).unwrap()
    }

    fn config(&self, cache: Option<&Arc<MemoryPolicyCache>>, retry: Duration) -> StsConfig {
        StsConfig {
            fetch: FetchConfig {
                https_port: self.https.port,
                timeout: Duration::from_secs(3),
                roots: self.pki.roots.clone(),
            },
            cache: cache.map(|c| c.clone() as Arc<dyn PolicyCache>),
            retry_failed_fetch_after: retry,
        }
    }

    fn resolver(&self, cache: Option<&Arc<MemoryPolicyCache>>) -> StsResolver {
        StsResolver::new(self.router(), self.config(cache, Duration::ZERO)).unwrap()
    }
}

fn summary(l: &StsLookup) -> Option<(Mode, String, Source)> {
    l.policy
        .as_ref()
        .map(|p| (p.policy.mode, p.id.clone(), p.source))
}

fn fetch_error(l: &StsLookup) -> &FetchError {
    match &l.problem {
        Some(StsProblem::Fetch { error, .. }) => error,
        other => panic!("expected a fetch problem, got {other:?}"),
    }
}

#[tokio::test]
async fn enforce_policy_is_fetched_then_cached_by_id() {
    let env = Env::start().await;
    let sts = env.resolver(None);

    let first = sts.policy_for("Example.TEST.").await;
    assert_eq!(first.problem, None);
    assert_eq!(
        summary(&first),
        Some((Mode::Enforce, "1".into(), Source::Fresh))
    );
    let active = first.policy.as_ref().unwrap();
    assert_eq!(
        active.policy.mx,
        vec!["mx.example.test", "*.mail.example.test"]
    );
    assert_eq!(
        active.expires.duration_since(active.fetched_at).unwrap(),
        Duration::from_secs(86_400)
    );
    assert!(
        first
            .applicable()
            .unwrap()
            .mx_matches("a.mail.example.test")
    );
    assert_eq!(env.https.requests(), 1);
    let head = env.https.last_request.lock().unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("get /.well-known/mta-sts.txt http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "\r\nhost: mta-sts.example.test:{}\r\n",
            env.https.port
        )),
        "{head}"
    );

    // Same id: the cache, no request.
    let second = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&second),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    assert_eq!(second.problem, None);
    assert_eq!(env.https.requests(), 1);
    assert_eq!(sts.cached(DOMAIN).await.unwrap().id, "1");

    // A new id: fetched again.
    env.publish("2", "testing", 3600).await;
    let third = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&third),
        Some((Mode::Testing, "2".into(), Source::Fresh))
    );
    assert_eq!(env.https.requests(), 2);
    let fourth = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&fourth),
        Some((Mode::Testing, "2".into(), Source::Cache))
    );
    assert_eq!(env.https.requests(), 2);
}

#[tokio::test]
async fn mode_none_is_cached_too() {
    let env = Env::start().await;
    env.https.respond(response(
        "200 OK",
        Some("TEXT/PLAIN"),
        b"version: STSv1\nmode: none\nmax_age: 600\n",
    ));
    let sts = env.resolver(None);
    let first = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&first),
        Some((Mode::None, "1".into(), Source::Fresh))
    );
    assert!(first.applicable().is_none());
    let second = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&second),
        Some((Mode::None, "1".into(), Source::Cache))
    );
    assert_eq!(env.https.requests(), 1);
}

#[tokio::test]
async fn no_txt_record_no_policy() {
    let env = Env::start().await;
    env.dns.set_txt(&["v=spf1 -all"]).await;
    let sts = env.resolver(None);
    let l = sts.policy_for(DOMAIN).await;
    assert_eq!(
        l,
        StsLookup {
            policy: None,
            problem: None
        }
    );
    // An address literal or a domain we are not authoritative for: no policy either.
    assert_eq!(sts.policy_for("[127.0.0.1]").await.policy, None);
    let refused = sts.policy_for(ELSEWHERE).await;
    assert_eq!(refused.policy, None);
    assert!(
        matches!(refused.problem, Some(StsProblem::Txt(_))),
        "{refused:?}"
    );
    assert_eq!(env.https.requests(), 0);
}

#[tokio::test]
async fn failed_fetches_are_reported_and_the_cache_stays_in_force() {
    let env = Env::start().await;
    let sts = env.resolver(None);
    assert_eq!(
        summary(&sts.policy_for(DOMAIN).await),
        Some((Mode::Enforce, "1".into(), Source::Fresh))
    );
    let oversize = {
        let mut body = policy("enforce", 600);
        body.resize(70_000, b'\n');
        body
    };
    // Oversized without Content-Length (the body ends with the connection): the limit is
    // enforced while reading.
    let mut streamed =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
    streamed.extend_from_slice(&oversize);

    type Check = fn(&FetchError) -> bool;
    /// What, the response, the certificate (None: the good one), the expected error.
    type Case = (
        &'static str,
        Vec<u8>,
        Option<Arc<rustls::ServerConfig>>,
        Check,
        ResultType,
    );
    let cases: Vec<Case> = vec![
        (
            "404",
            response("404 Not Found", Some("text/plain"), b"no"),
            None,
            |e| *e == FetchError::Status(404),
            ResultType::StsPolicyFetchError,
        ),
        (
            "redirect",
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://mta-sts.example.test/x\r\nContent-Length: 0\r\n\r\n".to_vec(),
            None,
            |e| *e == FetchError::Redirect(301),
            ResultType::StsPolicyFetchError,
        ),
        (
            "content type",
            response("200 OK", Some("text/html"), &policy("enforce", 600)),
            None,
            |e| matches!(e, FetchError::ContentType(ct) if ct == "text/html"),
            ResultType::StsPolicyFetchError,
        ),
        (
            "no content type",
            response("200 OK", None, &policy("enforce", 600)),
            None,
            |e| matches!(e, FetchError::ContentType(_)),
            ResultType::StsPolicyFetchError,
        ),
        (
            "oversize, declared",
            response("200 OK", Some("text/plain"), &oversize),
            None,
            |e| *e == FetchError::TooLarge,
            ResultType::StsPolicyInvalid,
        ),
        (
            "oversize, streamed",
            streamed,
            None,
            |e| *e == FetchError::TooLarge,
            ResultType::StsPolicyInvalid,
        ),
        (
            "invalid policy",
            response("200 OK", Some("text/plain"), b"version: STSv1\nmode: strict\n"),
            None,
            |e| matches!(e, FetchError::Invalid(_)),
            ResultType::StsPolicyInvalid,
        ),
        (
            "garbage instead of HTTP",
            b"SMTP? 220 hello\r\n\r\n".to_vec(),
            None,
            |e| matches!(e, FetchError::Http(_)),
            ResultType::StsPolicyFetchError,
        ),
        (
            "wrong certificate name",
            serve_policy("enforce", 600),
            Some(env.pki.wrong_name.clone()),
            |e| matches!(e, FetchError::Certificate(_)),
            ResultType::StsWebpkiInvalid,
        ),
        (
            "untrusted CA",
            serve_policy("enforce", 600),
            Some(env.pki.untrusted.clone()),
            |e| matches!(e, FetchError::Certificate(_)),
            ResultType::StsWebpkiInvalid,
        ),
    ];
    for (i, (what, reply, cert, check, kind)) in cases.into_iter().enumerate() {
        env.dns.set_id(&format!("bad{i}")).await;
        env.https.respond(reply);
        env.https
            .certificate(cert.as_ref().unwrap_or(&env.pki.good));
        // With a cached policy: still in force, the failure reported.
        let l = sts.policy_for(DOMAIN).await;
        assert_eq!(
            summary(&l),
            Some((Mode::Enforce, "1".into(), Source::Cache)),
            "{what}"
        );
        let error = fetch_error(&l);
        assert!(check(error), "{what}: {error:?}");
        assert_eq!(
            l.problem.as_ref().unwrap().result_type(),
            Some(kind),
            "{what}"
        );
        // Without one: no policy, the failure reported.
        let fresh = env.resolver(None).policy_for(DOMAIN).await;
        assert_eq!(fresh.policy, None, "{what}");
        assert!(check(fetch_error(&fresh)), "{what}: {fresh:?}");
    }
    env.https.certificate(&env.pki.good);

    // Too slow: the overall time limit.
    env.publish("slow", "testing", 600).await;
    env.https.delay(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let l = sts.policy_for(DOMAIN).await;
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(matches!(fetch_error(&l), FetchError::Timeout(_)), "{l:?}");
    assert_eq!(summary(&l).unwrap().1, "1");
    env.https.delay(Duration::ZERO);

    // Policy host down.
    env.dns.set_id("down").await;
    env.https.stop().await;
    let l = sts.policy_for(DOMAIN).await;
    assert!(matches!(fetch_error(&l), FetchError::Connect(_)), "{l:?}");
    assert_eq!(
        l.problem.as_ref().unwrap().result_type(),
        Some(ResultType::StsPolicyFetchError)
    );
    assert_eq!(
        summary(&l),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    let fresh = env.resolver(None).policy_for(DOMAIN).await;
    assert_eq!(fresh.policy, None);

    // No address for the policy host.
    env.dns
        .server
        .remove("mta-sts.example.test.", RecordType::A);
    let l = sts.policy_for(DOMAIN).await;
    assert!(matches!(fetch_error(&l), FetchError::Resolve(_)), "{l:?}");
    assert_eq!(summary(&l).unwrap().1, "1");
}

#[tokio::test]
async fn txt_removed_or_broken_keeps_the_cache_until_max_age() {
    let env = Env::start().await;
    env.https.respond(serve_policy("enforce", 3));
    let cache = Arc::new(MemoryPolicyCache::default());
    let sts = env.resolver(Some(&cache));
    assert_eq!(
        summary(&sts.policy_for(DOMAIN).await),
        Some((Mode::Enforce, "1".into(), Source::Fresh))
    );
    // TXT gone (an attacker stripping it): the cached policy applies.
    env.dns.set_txt(&[]).await;
    let l = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&l),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    assert_eq!(l.problem, None);
    // Two STS records (invalid): the cached policy applies, the problem is reported.
    env.dns.set_txt(&["v=STSv1; id=3;", "v=STSv1; id=4;"]).await;
    let l = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&l),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    assert!(matches!(l.problem, Some(StsProblem::Txt(_))), "{l:?}");
    assert_eq!(l.problem.as_ref().unwrap().result_type(), None);
    assert_eq!(env.https.requests(), 1);

    // After max_age: gone, also from the persistent cache.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    env.dns.set_txt(&[]).await;
    assert_eq!(
        sts.policy_for(DOMAIN).await,
        StsLookup {
            policy: None,
            problem: None
        }
    );
    assert!(sts.cached(DOMAIN).await.is_none());
    assert_eq!(cache.load(DOMAIN).await.unwrap(), None);
}

#[tokio::test]
async fn expired_policy_is_fetched_again() {
    let env = Env::start().await;
    env.https.respond(serve_policy("enforce", 2));
    let sts = env.resolver(None);
    assert_eq!(
        summary(&sts.policy_for(DOMAIN).await).unwrap().2,
        Source::Fresh
    );
    assert_eq!(
        summary(&sts.policy_for(DOMAIN).await).unwrap().2,
        Source::Cache
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    // Same id, but the cache expired.
    assert_eq!(
        summary(&sts.policy_for(DOMAIN).await).unwrap().2,
        Source::Fresh
    );
    assert_eq!(env.https.requests(), 2);
    // Expired and the fetch fails: no policy any more.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    env.https
        .respond(response("500 Oops", Some("text/plain"), b""));
    let l = sts.policy_for(DOMAIN).await;
    assert_eq!(l.policy, None);
    assert_eq!(*fetch_error(&l), FetchError::Status(500));
}

#[tokio::test]
async fn the_cache_survives_a_restart() {
    let env = Env::start().await;
    let cache = Arc::new(MemoryPolicyCache::default());
    let first = env.resolver(Some(&cache));
    assert_eq!(
        summary(&first.policy_for(DOMAIN).await),
        Some((Mode::Enforce, "1".into(), Source::Fresh))
    );
    let text = String::from_utf8(cache.load(DOMAIN).await.unwrap().unwrap()).unwrap();
    assert!(
        text.starts_with("hato-mta-sts-cache 1\ndomain example.test\nid 1\nfetched_at "),
        "{text}"
    );
    assert!(text.ends_with(std::str::from_utf8(&policy("enforce", 86_400)).unwrap()));
    // One entry, nothing else.
    assert_eq!(cache.len(), 1);
    drop(first);

    // A new resolver on the same cache, with the policy host down and the TXT gone.
    env.https.stop().await;
    env.dns.set_txt(&[]).await;
    let second = env.resolver(Some(&cache));
    let cached = second.cached(DOMAIN).await.unwrap();
    assert_eq!(
        (cached.id.as_str(), cached.policy.mode),
        ("1", Mode::Enforce)
    );
    let l = second.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&l),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    // TXT back with the same id: still the cache, nothing fetched.
    env.dns.set_id("1").await;
    let l = env.resolver(Some(&cache)).policy_for(DOMAIN).await;
    assert_eq!(
        summary(&l),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    assert_eq!(l.problem, None);
    assert_eq!(env.https.requests(), 1);

    // A damaged entry is ignored and removed.
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    cache
        .save(
            DOMAIN,
            b"hato-mta-sts-cache 1\ndomain example.test\nid 1\n",
            later,
        )
        .await
        .unwrap();
    let third = env.resolver(Some(&cache));
    assert!(third.cached(DOMAIN).await.is_none());
    assert!(cache.is_empty());
}

/// Two nodes sharing one cache: the second uses the policy the first fetched, also when the
/// TXT id changes after it had the old policy in memory (it reads the cache before fetching).
#[tokio::test]
async fn nodes_sharing_a_cache_fetch_each_id_once() {
    let env = Env::start().await;
    let cache = Arc::new(MemoryPolicyCache::default());
    let (a, b) = (env.resolver(Some(&cache)), env.resolver(Some(&cache)));
    assert_eq!(
        summary(&a.policy_for(DOMAIN).await),
        Some((Mode::Enforce, "1".into(), Source::Fresh))
    );
    assert_eq!(
        summary(&b.policy_for(DOMAIN).await),
        Some((Mode::Enforce, "1".into(), Source::Cache))
    );
    env.publish("2", "testing", 86_400).await;
    assert_eq!(
        summary(&a.policy_for(DOMAIN).await),
        Some((Mode::Testing, "2".into(), Source::Fresh))
    );
    let l = b.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&l),
        Some((Mode::Testing, "2".into(), Source::Cache))
    );
    assert_eq!(l.problem, None);
    assert_eq!(env.https.requests(), 2, "each id fetched once");
}

#[tokio::test]
async fn concurrent_lookups_fetch_once() {
    let env = Env::start().await;
    env.https.delay(Duration::from_millis(300));
    let sts = env.resolver(None);
    let lookups: Vec<_> = (0..5)
        .map(|_| {
            let sts = sts.clone();
            tokio::spawn(async move { sts.policy_for(DOMAIN).await })
        })
        .collect();
    let mut sources = Vec::new();
    for l in lookups {
        let l = l.await.unwrap();
        assert_eq!(l.problem, None);
        sources.push(summary(&l).unwrap().2);
    }
    assert_eq!(env.https.requests(), 1);
    assert_eq!(sources.iter().filter(|s| **s == Source::Fresh).count(), 1);
}

#[tokio::test]
async fn a_failed_fetch_is_not_repeated_at_once() {
    let env = Env::start().await;
    env.https
        .respond(response("503 Busy", Some("text/plain"), b""));
    let sts = StsResolver::new(env.router(), env.config(None, Duration::from_secs(3600))).unwrap();
    let first = sts.policy_for(DOMAIN).await;
    assert_eq!(first.policy, None);
    assert!(matches!(
        first.problem,
        Some(StsProblem::Fetch {
            error: FetchError::Status(503),
            repeated: false
        })
    ));
    let second = sts.policy_for(DOMAIN).await;
    assert!(matches!(
        second.problem,
        Some(StsProblem::Fetch {
            error: FetchError::Status(503),
            repeated: true
        })
    ));
    assert_eq!(env.https.requests(), 1);
    // A new id is fetched at once.
    env.publish("2", "enforce", 600).await;
    let third = sts.policy_for(DOMAIN).await;
    assert_eq!(
        summary(&third),
        Some((Mode::Enforce, "2".into(), Source::Fresh))
    );
    assert_eq!(env.https.requests(), 2);
}

#[tokio::test]
async fn extra_roots_from_a_pem_file() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, &env.pki.ca_pem).unwrap();
    // The webpki roots plus the test CA.
    let mut roots = hato_delivery::mta_sts_fetch::webpki_roots();
    let before = roots.len();
    assert_eq!(add_pem_roots(&mut roots, &pem).unwrap(), 1);
    assert_eq!(roots.len(), before + 1);
    let mut config = env.config(None, Duration::ZERO);
    config.fetch.roots = roots;
    let sts = StsResolver::new(env.router(), config).unwrap();
    let fetched = sts.fetcher().fetch(DOMAIN).await.unwrap();
    assert_eq!(fetched.policy.mode, Mode::Enforce);
    assert_eq!(fetched.body, policy("enforce", 86_400));
    // The webpki roots alone do not trust the test CA.
    let mut config = env.config(None, Duration::ZERO);
    config.fetch.roots = hato_delivery::mta_sts_fetch::webpki_roots();
    let sts = StsResolver::new(env.router(), config).unwrap();
    let err = sts.fetcher().fetch(DOMAIN).await.unwrap_err();
    assert!(matches!(err, FetchError::Certificate(_)), "{err:?}");
    // A file without certificates is refused.
    std::fs::write(&pem, "nothing here\n").unwrap();
    assert!(add_pem_roots(&mut RootCertStore::empty(), &pem).is_err());
}
