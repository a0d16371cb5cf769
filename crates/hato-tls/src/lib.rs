//! hato-tls: server certificates for every TLS listener.
//!
//! - Loads PEM certificate chains and keys, and validates them the way an admin needs at start-up:
//!   readable, key matches the certificate, not expired, names cover the configured hostname
//!   (RFC 6125 DNS-ID matching, with a left-most `*` wildcard). Each failure is one clear error
//!   naming the file and what to do.
//! - Selects a certificate by SNI among several ([`CertResolver`] implements rustls'
//!   `ResolvesServerCert`); the default is the first certificate covering the hostname.
//! - Reloads in place (SIGHUP, or when the files change, e.g. a certbot renewal) without dropping
//!   connections: new handshakes use the new certificate, running ones keep theirs.
//! - Generates a self-signed development certificate once into the data directory.
//! - Builds the rustls server configuration: TLS 1.2 and 1.3 only, ring provider.
//! - For TLS clients, [`verify::ServerVerifier`]: a rustls certificate verifier from a decision
//!   on the chain, with the handshake signatures checked alike for every client.
//!
//! Must never: start with a certificate that does not match its key, or silently serve an expired one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub use hato_wire::TlsInfo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub mod verify;

/// A certificate that expires within this many days starts with a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source} (check the path and that hato may read it)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error(
        "{path} contains no PEM private key (expected -----BEGIN PRIVATE KEY----- or similar): {reason}"
    )]
    NoKey { path: PathBuf, reason: String },
    #[error("{path}: unusable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "the key {key} does not match the certificate {cert}: configure the key that belongs to this certificate"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: cannot parse the certificate: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: the certificate expired on {not_after}: renew it")]
    Expired { path: PathBuf, not_after: String },
    #[error("{path}: the certificate is not valid before {not_before}: check the system clock")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error(
        "no certificate covers hostname {hostname:?} (names found: {names}): use a certificate issued for it or change `hostname`"
    )]
    HostnameNotCovered { hostname: String, names: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// Where one certificate and its key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One loaded and validated certificate.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub paths: CertPaths,
    pub key: Arc<CertifiedKey>,
    /// DNS names (lower-case) and IP addresses from subjectAltName.
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
    modified: (Option<SystemTime>, Option<SystemTime>),
}

impl LoadedCert {
    /// Whether this certificate is valid for `name` (RFC 6125 6.4: exact, or `*.` on the left-most label).
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| name_matches(n, &name))
    }

    /// Days until expiry (negative when expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    pub fn not_after_string(&self) -> String {
        format_unix(self.not_after)
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        // A wildcard matches exactly one label, never an empty one.
        match name.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        }
    } else {
        pattern == name
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn format_unix(t: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and validates one certificate chain + key (not the hostname: see [`CertResolver::load`]).
pub fn load_pair(paths: &CertPaths) -> Result<LoadedCert, TlsError> {
    load_pair_at(paths, now_unix())
}

fn load_pair_at(paths: &CertPaths, now: i64) -> Result<LoadedCert, TlsError> {
    let modified = (mtime(&paths.cert), mtime(&paths.key));
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let cert_pem = read(&paths.cert)?;
    let key_pem = read(&paths.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Parse {
            path: paths.cert.clone(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: paths.cert.clone(),
        });
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: paths.key.clone(),
        reason: e.to_string(),
    })?;

    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| TlsError::Parse {
            path: paths.cert.clone(),
            reason: e.to_string(),
        })?;
    let validity = x509.validity();
    let not_after = validity.not_after.timestamp();
    let not_before = validity.not_before.timestamp();
    if now > not_after {
        return Err(TlsError::Expired {
            path: paths.cert.clone(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: paths.cert.clone(),
            not_before: validity.not_before.to_string(),
        });
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                x509_parser::extensions::GeneralName::DNSName(n) => {
                    names.push(n.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let ip: Option<std::net::IpAddr> = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(Into::into),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(Into::into),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }

    let signing_key =
        provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: paths.key.clone(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::KeyMismatch {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
            });
        }
    }
    Ok(LoadedCert {
        paths: paths.clone(),
        key: Arc::new(certified),
        names,
        not_after,
        modified,
    })
}

/// The SNI-aware, reloadable certificate set shared by every TLS listener.
#[derive(Debug)]
pub struct CertResolver {
    hostname: String,
    paths: Vec<CertPaths>,
    certs: RwLock<Arc<Vec<LoadedCert>>>,
}

impl CertResolver {
    /// Loads every certificate; at least one must cover `hostname`. Returns the resolver and
    /// warnings (e.g. a certificate expiring within [`EXPIRY_WARNING_DAYS`]).
    pub fn load(paths: Vec<CertPaths>, hostname: &str) -> Result<(Self, Vec<String>), TlsError> {
        let (certs, warnings) = Self::load_all(&paths, hostname)?;
        Ok((
            CertResolver {
                hostname: hostname.to_ascii_lowercase(),
                paths,
                certs: RwLock::new(Arc::new(certs)),
            },
            warnings,
        ))
    }

    fn load_all(
        paths: &[CertPaths],
        hostname: &str,
    ) -> Result<(Vec<LoadedCert>, Vec<String>), TlsError> {
        let now = now_unix();
        let mut certs = Vec::with_capacity(paths.len());
        let mut warnings = Vec::new();
        for p in paths {
            let c = load_pair_at(p, now)?;
            let days = c.days_left(now);
            if days < EXPIRY_WARNING_DAYS {
                warnings.push(format!(
                    "{}: the certificate expires in {} day(s), on {}: renew it soon",
                    p.cert.display(),
                    days,
                    c.not_after_string()
                ));
            }
            certs.push(c);
        }
        // The default certificate (no or unknown SNI) is the first covering the hostname.
        match certs.iter().position(|c| c.covers(hostname)) {
            Some(i) => certs.swap(0, i),
            None => {
                let names: Vec<String> = certs.iter().flat_map(|c| c.names.clone()).collect();
                return Err(TlsError::HostnameNotCovered {
                    hostname: hostname.to_owned(),
                    names: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
        Ok((certs, warnings))
    }

    /// Re-reads every file and swaps the set in atomically. On error the old set stays in use.
    pub fn reload(&self) -> Result<Vec<String>, TlsError> {
        let (certs, warnings) = Self::load_all(&self.paths, &self.hostname)?;
        *self.certs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certs);
        Ok(warnings)
    }

    /// Whether any certificate or key file changed on disk since it was loaded.
    pub fn files_changed(&self) -> bool {
        self.current()
            .iter()
            .any(|c| (mtime(&c.paths.cert), mtime(&c.paths.key)) != c.modified)
    }

    /// The certificates in use now, the default one first.
    pub fn current(&self) -> Arc<Vec<LoadedCert>> {
        self.certs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current();
        let chosen = sni
            .and_then(|name| certs.iter().find(|c| c.covers(name)))
            .or_else(|| certs.first());
        chosen.map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.select(client_hello.server_name())
    }
}

/// The rustls server configuration for all listeners: TLS 1.2 and 1.3, ring, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Arc::new(config)
}

/// Facts about an established TLS session, for logs and Received headers.
pub fn session_facts(conn: &rustls::ServerConnection) -> TlsInfo {
    TlsInfo {
        version: version_name(conn).unwrap_or_else(|| "unknown".to_owned()),
        cipher: cipher_name(conn).unwrap_or_else(|| "unknown".to_owned()),
        sni: conn.server_name().map(str::to_owned),
    }
}

/// The negotiated protocol version as hato logs it ("TLSv1.3", "TLSv1.2"), client or server
/// side; None before the handshake.
pub fn version_name(conn: &rustls::CommonState) -> Option<String> {
    conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        v => format!("{v:?}"),
    })
}

/// The negotiated cipher suite's IANA name (RFC 8446 B.4), client or server side.
pub fn cipher_name(conn: &rustls::CommonState) -> Option<String> {
    conn.negotiated_cipher_suite().map(|s| {
        let name = s
            .suite()
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:?}", s.suite()));
        // rustls says TLS13_AES_256_GCM_SHA384; the IANA name is TLS_AES_256_GCM_SHA384.
        match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name,
        }
    })
}

/// The development certificate: generated once into `dir` (`selfsigned-cert.pem`,
/// `selfsigned-key.pem`, key mode 0600) for `hostname`, `localhost` and 127.0.0.1/::1, and
/// regenerated when the existing one does not cover `hostname` or has expired.
/// Returns the paths and whether a new certificate was generated.
pub fn ensure_self_signed(dir: &Path, hostname: &str) -> Result<(CertPaths, bool), TlsError> {
    let paths = CertPaths {
        cert: dir.join("selfsigned-cert.pem"),
        key: dir.join("selfsigned-key.pem"),
    };
    if let Ok(existing) = load_pair(&paths)
        && existing.covers(hostname)
    {
        return Ok((paths, false));
    }
    let mut names = vec![hostname.to_ascii_lowercase()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_private(&paths.key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&paths.cert, generated.cert.pem()).map_err(|source| TlsError::Write {
        path: paths.cert.clone(),
        source,
    })?;
    Ok((paths, true))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|source| TlsError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, name: &str, params: rcgen::CertificateParams) -> CertPaths {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let paths = CertPaths {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
        paths
    }

    fn params(names: &[&str]) -> rcgen::CertificateParams {
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
    }

    #[test]
    fn wildcard_rules() {
        assert!(name_matches("*.example.com", "mail.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(name_matches("mail.example.com", "mail.example.com"));
    }

    #[test]
    fn loads_valid_pair_and_selects_by_sni() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", params(&["mail.example.com"]));
        let b = write_cert(dir.path(), "b", params(&["*.other.example"]));
        let (r, warnings) = CertResolver::load(vec![b, a], "MAIL.example.com").unwrap();
        assert!(warnings.is_empty());
        let certs = r.current();
        assert!(
            certs[0].covers("mail.example.com"),
            "default covers hostname"
        );
        let by_sni = r.select(Some("imap.other.example")).unwrap();
        assert!(Arc::ptr_eq(&by_sni, &certs[1].key));
        let unknown = r.select(Some("nothing.example")).unwrap();
        assert!(Arc::ptr_eq(&unknown, &certs[0].key));
    }

    #[test]
    fn rejects_mismatched_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", params(&["mail.example.com"]));
        let b = write_cert(dir.path(), "b", params(&["mail.example.com"]));
        let mixed = CertPaths {
            cert: a.cert,
            key: b.key,
        };
        let err = load_pair(&mixed).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("b.key"));
    }

    #[test]
    fn rejects_hostname_not_covered() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", params(&["other.example"]));
        let err = CertResolver::load(vec![a], "mail.example.com").unwrap_err();
        assert!(matches!(err, TlsError::HostnameNotCovered { .. }), "{err}");
        assert!(err.to_string().contains("other.example"));
    }

    #[test]
    fn expired_is_an_error_and_near_expiry_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = params(&["mail.example.com"]);
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let expired = write_cert(dir.path(), "old", p);
        let err = load_pair(&expired).unwrap_err();
        assert!(matches!(err, TlsError::Expired { .. }), "{err}");

        let mut p = params(&["mail.example.com"]);
        let soon = time::OffsetDateTime::now_utc() + time::Duration::days(5);
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = soon;
        let near = write_cert(dir.path(), "near", p);
        let (_, warnings) = CertResolver::load(vec![near], "mail.example.com").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("expires in"));
    }

    #[test]
    fn unreadable_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CertPaths {
            cert: dir.path().join("nope.crt"),
            key: dir.path().join("nope.key"),
        };
        assert!(matches!(
            load_pair(&missing).unwrap_err(),
            TlsError::Read { .. }
        ));
        let a = write_cert(dir.path(), "a", params(&["mail.example.com"]));
        std::fs::write(&a.cert, "not a certificate").unwrap();
        assert!(matches!(
            load_pair(&a).unwrap_err(),
            TlsError::NoCertificate { .. }
        ));
        let b = write_cert(dir.path(), "b", params(&["mail.example.com"]));
        std::fs::write(&b.key, "").unwrap();
        assert!(matches!(load_pair(&b).unwrap_err(), TlsError::NoKey { .. }));
    }

    #[test]
    fn reload_swaps_and_keeps_old_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", params(&["mail.example.com"]));
        let (r, _) = CertResolver::load(vec![a.clone()], "mail.example.com").unwrap();
        let before = r.current()[0].key.clone();
        assert!(!r.files_changed());
        // A renewal: new certificate and key in the same files.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let renewed = write_cert(dir.path(), "a", params(&["mail.example.com"]));
        assert_eq!(renewed, a);
        assert!(r.files_changed());
        r.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &r.current()[0].key));
        // A broken renewal keeps serving the previous certificate.
        let good = r.current()[0].key.clone();
        std::fs::write(&a.key, "garbage").unwrap();
        assert!(r.reload().is_err());
        assert!(Arc::ptr_eq(&good, &r.current()[0].key));
    }

    #[test]
    fn self_signed_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, created) = ensure_self_signed(dir.path(), "localhost").unwrap();
        assert!(created);
        let (again, created) = ensure_self_signed(dir.path(), "localhost").unwrap();
        assert!(!created);
        assert_eq!(paths, again);
        let c = load_pair(&paths).unwrap();
        assert!(c.covers("localhost") && c.covers("127.0.0.1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A different hostname regenerates.
        let (_, created) = ensure_self_signed(dir.path(), "mail.example.com").unwrap();
        assert!(created);
        assert!(load_pair(&paths).unwrap().covers("mail.example.com"));
    }
}
