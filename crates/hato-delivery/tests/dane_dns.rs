//! DNSSEC-validated TLSA lookups against a signed zone served in-process
//! ([`hato_delivery::testing`], feature `test-support`, enabled for this crate's tests by its
//! self dev-dependency).
//!
//! The tree: `test.` is signed, and its key is the resolver's trust anchor (for the name
//! `test.`); `insecure.test.` is an unsigned child with a provably insecure delegation (an
//! NSEC at the cut without DS); `signed.test.` a signed child (DS at the cut).

use std::net::IpAddr;
use std::str::FromStr;

use hato_delivery::dane::Tlsa;
use hato_delivery::dane_lookup::{DaneResolver, Security, TlsaLookup, TrustAnchor};
use hato_delivery::testing::{
    DnsServer, DnsTree, a, aaaa, cname, mx, silent_nameserver, tlsa as tlsa_record,
    unrelated_trust_anchor,
};
use hato_delivery::tls_policy::TlsaStatus;

/// A DANE-EE(3) SPKI(1) SHA-256(1) record with made-up data (the lookup does not care).
fn ee(fill: u8) -> Tlsa {
    Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: vec![fill; 32],
    }
}

/// The records of the test tree, and what the TLSA records are.
struct Tree {
    dns: DnsServer,
    /// `_25._tcp.mx.test.`
    mx: Tlsa,
}

/// Starts the server for the test tree; `mx` is the record published for `mx.test.`.
async fn tree(mx_record: Tlsa) -> Tree {
    let mut tree = DnsTree::new();
    tree.zone("insecure.test", false)
        .zone("signed.test", true)
        .add_all([
            mx("test.", 10, "mx.test."),
            // A secure host with a DANE-EE record.
            a("mx.test.", "192.0.2.1"),
            aaaa("mx.test.", "2001:db8::1"),
            tlsa_record("_25._tcp.mx.test.", &mx_record),
            // Secure, without TLSA records (NXDOMAIN for the TLSA name).
            a("notlsa.test.", "192.0.2.2"),
            // Secure, only an unusable record (PKIX-EE).
            a("unusable.test.", "192.0.2.3"),
            tlsa_record("_25._tcp.unusable.test.", &Tlsa { usage: 1, ..ee(3) }),
            // A secure CNAME chain: the records at its end come first.
            cname("alias.test.", "mx2.test."),
            a("mx2.test.", "192.0.2.4"),
            tlsa_record("_25._tcp.mx2.test.", &ee(4)),
            tlsa_record("_25._tcp.alias.test.", &ee(40)),
            // A secure CNAME chain to a host without TLSA: the alias's own records.
            cname("alias2.test.", "notlsa.test."),
            tlsa_record("_25._tcp.alias2.test.", &ee(5)),
            // TLSA names that are aliases (RFC 7671 7): to a TLSA RRset, and to nothing (the
            // server's answer holds the CNAME and the NXDOMAIN proof for its target).
            a("tlsalias.test.", "192.0.2.8"),
            cname("_25._tcp.tlsalias.test.", "_25._tcp.mx.test."),
            a("tlsdangling.test.", "192.0.2.9"),
            cname("_25._tcp.tlsdangling.test.", "_25._tcp.notlsa.test."),
            // First link secure, target insecure: only the original name counts.
            cname("toinsecure.test.", "mx.insecure.test."),
            tlsa_record("_25._tcp.toinsecure.test.", &ee(6)),
            // The TLSA lookup gets SERVFAIL.
            a("servfail.test.", "192.0.2.5"),
            // A TLSA RRset whose data no longer matches its signature.
            a("tampered.test.", "192.0.2.6"),
            tlsa_record("_25._tcp.tampered.test.", &ee(7)),
            // The unsigned child zone.
            mx("insecure.test.", 10, "mx.insecure.test."),
            a("mx.insecure.test.", "192.0.2.7"),
            tlsa_record("_25._tcp.mx.insecure.test.", &ee(9)),
            // The signed child zone (its own key, a DS record in test.).
            mx("signed.test.", 10, "mx.signed.test."),
            a("mx.signed.test.", "192.0.2.10"),
            tlsa_record("_25._tcp.mx.signed.test.", &ee(10)),
            // An MX RRset whose data no longer matches its signature.
            a("mx.forged.signed.test.", "192.0.2.11"),
            mx("forged.signed.test.", 10, "mx.signed.test."),
        ])
        .tamper(tlsa_record("_25._tcp.tampered.test.", &ee(8)))
        .tamper(mx("forged.signed.test.", 10, "mx.forged.signed.test."))
        .servfail("_25._tcp.servfail.test.");
    Tree {
        dns: tree.serve().await,
        mx: mx_record,
    }
}

fn resolver(tree: &Tree) -> DaneResolver {
    DaneResolver::new(&tree.dns.dns_config(), &tree.dns.trust_anchor()).unwrap()
}

fn wrong_resolver(tree: &Tree) -> DaneResolver {
    DaneResolver::new(&tree.dns.dns_config(), &unrelated_trust_anchor()).unwrap()
}

#[tokio::test]
async fn secure_tlsa_records() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    assert_eq!(
        r.tlsa("mx.test", 25).await,
        TlsaLookup::Secure(vec![t.mx.clone()])
    );
    let host = r.lookup("MX.test.", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![t.mx.clone()]));
    assert_eq!(host.status(), TlsaStatus::Usable);
    assert_eq!(host.base_domain, "mx.test");
    assert_eq!(host.names, vec!["mx.test".to_string()]);
    assert_eq!(host.address_security, Security::Secure);
    assert!(host.verifier().is_some());
    let security = r.host_security("mx.test").await;
    assert_eq!(security.security, Security::Secure, "{security:?}");
    let mut addresses = security.addresses;
    addresses.sort();
    assert_eq!(
        addresses,
        vec![
            IpAddr::from_str("192.0.2.1").unwrap(),
            IpAddr::from_str("2001:db8::1").unwrap()
        ]
    );
    // Another port, no records: an authenticated denial.
    assert_eq!(r.tlsa("mx.test", 465).await, TlsaLookup::Secure(vec![]));
}

#[tokio::test]
async fn mx_rrset_security() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    assert_eq!(r.probe("test.").await, Security::Secure);
    assert_eq!(r.probe("insecure.test").await, Security::Insecure);
    assert_eq!(r.probe(".").await, Security::Indeterminate, "not served");
    assert_eq!(r.mx_security("test").await, Security::Secure);
    // No MX (implicit MX): the denial is secure.
    assert_eq!(r.mx_security("mx.test").await, Security::Secure);
    assert_eq!(r.mx_security("nothere.test").await, Security::Secure);
    // An alias domain: its MX through the CNAME.
    assert_eq!(r.mx_security("alias.test").await, Security::Secure);
    assert_eq!(r.mx_security("insecure.test").await, Security::Insecure);
    assert_eq!(
        r.mx_security("elsewhere.example").await,
        Security::Indeterminate
    );
    let wrong = wrong_resolver(&t);
    assert_eq!(wrong.mx_security("test").await, Security::Bogus);
    assert_eq!(wrong.probe("test").await, Security::Bogus);
}

#[tokio::test]
async fn signed_child_zone() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // A secure delegation (DS in test.) to a zone with its own key.
    assert_eq!(r.probe("signed.test").await, Security::Secure);
    assert_eq!(r.mx_security("signed.test").await, Security::Secure);
    let host = r.lookup("mx.signed.test", 25).await;
    assert_eq!(host.address_security, Security::Secure);
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(10)]));
    assert_eq!(
        r.lookup("nothere.signed.test", 25).await.address_security,
        Security::Secure,
        "a secure denial"
    );
    // An MX RRset changed after signing.
    assert_eq!(r.mx_security("forged.signed.test").await, Security::Bogus);
    let wrong = wrong_resolver(&t);
    assert_eq!(wrong.probe("signed.test").await, Security::Bogus);
}

#[tokio::test]
async fn secure_denial_and_unusable_records() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    let host = r.lookup("notlsa.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![]));
    assert_eq!(host.status(), TlsaStatus::NotApplicable);
    assert!(host.verifier().is_none());

    let host = r.lookup("unusable.test", 25).await;
    assert_eq!(host.tlsa.records().len(), 1);
    assert_eq!(host.status(), TlsaStatus::Unusable);
    assert!(host.verifier().is_none());
}

#[tokio::test]
async fn insecure_zone() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // The TLSA record exists but is not signed: ignored.
    assert_eq!(r.tlsa("mx.insecure.test", 25).await, TlsaLookup::Insecure);
    let security = r.host_security("mx.insecure.test").await;
    assert_eq!(security.security, Security::Insecure, "{security:?}");
    assert_eq!(
        security.addresses,
        vec![IpAddr::from_str("192.0.2.7").unwrap()]
    );
    let host = r.lookup("mx.insecure.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Insecure);
    assert_eq!(host.status(), TlsaStatus::NotApplicable);
    assert_eq!(host.address_security, Security::Insecure);
}

#[tokio::test]
async fn cname_expansion_per_rfc7672() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);

    // Secure chain: the expanded name's records, both names as reference identifiers.
    let security = r.host_security("alias.test").await;
    assert_eq!(
        (security.security, security.expanded.as_deref()),
        (Security::Secure, Some("mx2.test"))
    );
    let host = r.lookup("alias.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(4)]));
    assert_eq!(host.base_domain, "mx2.test");
    assert_eq!(
        host.names,
        vec!["mx2.test".to_string(), "alias.test".into()]
    );

    // Secure chain, nothing at its end: the alias's own records.
    let host = r.lookup("alias2.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(5)]));
    assert_eq!(host.base_domain, "alias2.test");
    assert_eq!(
        host.names,
        vec!["alias2.test".to_string(), "notlsa.test".into()]
    );

    // Only the first link is secure: the original name only.
    let security = r.host_security("toinsecure.test").await;
    assert_eq!(
        (security.security, security.expanded.as_deref()),
        (Security::Secure, None)
    );
    let host = r.lookup("toinsecure.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(6)]));
    assert_eq!(host.base_domain, "toinsecure.test");
    assert_eq!(host.names, vec!["toinsecure.test".to_string()]);
}

#[tokio::test]
async fn tlsa_names_that_are_aliases() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    let host = r.lookup("tlsalias.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![t.mx.clone()]));
    assert_eq!(host.base_domain, "tlsalias.test");
    // hickory alone calls this answer bogus (CNAME + NXDOMAIN for the target in one
    // response); asked link by link it is a secure denial.
    let host = r.lookup("tlsdangling.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![]), "{host:?}");
}

#[tokio::test]
async fn bogus_answers() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // A record changed after signing.
    let lookup = r.tlsa("tampered.test", 25).await;
    assert!(matches!(lookup, TlsaLookup::Bogus(_)), "{lookup:?}");
    assert_eq!(lookup.status(), TlsaStatus::Failed);
    let host = r.lookup("tampered.test", 25).await;
    assert!(matches!(host.tlsa, TlsaLookup::Bogus(_)), "{host:?}");

    // The wrong key as the trust anchor: everything under test. is bogus, the addresses too.
    let wrong = wrong_resolver(&t);
    let lookup = wrong.tlsa("mx.test", 25).await;
    assert!(matches!(lookup, TlsaLookup::Bogus(_)), "{lookup:?}");
    let host = wrong.lookup("mx.test", 25).await;
    assert_eq!(host.address_security, Security::Bogus, "{host:?}");
    assert_eq!(host.status(), TlsaStatus::Failed);
    assert!(host.verifier().is_none());

    // The default anchor (the root KSKs) cannot validate a private tree either.
    let root = DaneResolver::new(&t.dns.dns_config(), &TrustAnchor::Root).unwrap();
    assert_eq!(
        root.lookup("mx.test", 25).await.status(),
        TlsaStatus::Failed
    );
}

#[tokio::test]
async fn lookup_failures_are_indeterminate() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // SERVFAIL for the TLSA name, under a signed zone: may exist, so the host must not be used.
    let host = r.lookup("servfail.test", 25).await;
    assert_eq!(host.address_security, Security::Secure);
    assert!(
        matches!(host.tlsa, TlsaLookup::Indeterminate(_)),
        "{host:?}"
    );
    assert_eq!(host.status(), TlsaStatus::Failed);

    // A server that refuses (not authoritative).
    let lookup = r.tlsa("mx.elsewhere.example", 25).await;
    assert!(matches!(lookup, TlsaLookup::Indeterminate(_)), "{lookup:?}");
    let host = r.lookup("mx.elsewhere.example", 25).await;
    assert_eq!(host.status(), TlsaStatus::Failed);

    // A nameserver that never answers.
    let (_silent, config) = silent_nameserver().await;
    let r = DaneResolver::new(&config, &t.dns.trust_anchor()).unwrap();
    let lookup = r.tlsa("mx.test", 25).await;
    assert!(matches!(lookup, TlsaLookup::Indeterminate(_)), "{lookup:?}");
}

#[tokio::test]
async fn trust_anchor_from_a_file() {
    let t = tree(ee(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.key");
    std::fs::write(&path, t.dns.trust_anchor_text()).unwrap();
    let r = DaneResolver::new(&t.dns.dns_config(), &TrustAnchor::File(path.clone())).unwrap();
    assert_eq!(
        r.tlsa("mx.test", 25).await,
        TlsaLookup::Secure(vec![t.mx.clone()])
    );
    std::fs::write(&path, "not a key\n").unwrap();
    assert!(DaneResolver::new(&t.dns.dns_config(), &TrustAnchor::File(path)).is_err());
}

/// From DNS to the handshake: the TLSA record of `mx.test.` is the SPKI digest of the test
/// server's certificate; the verifier built from the lookup authenticates it.
#[tokio::test]
async fn lookup_then_handshake() {
    use std::sync::Arc;

    use rcgen::{CertificateParams, KeyPair, PublicKeyData};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["mx.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let record = Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info())
            .as_ref()
            .to_vec(),
    };
    assert_eq!(
        hato_delivery::testing::tlsa_for(3, 1, 1, cert.der()),
        record
    );
    let t = tree(record).await;
    let host = resolver(&t).lookup("mx.test", 25).await;
    let verifier = host.verifier().expect("usable TLSA records");

    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.shutdown().await;
        }
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(verifier.client_config().unwrap()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sni = ServerName::try_from(host.base_domain.clone()).unwrap();
    connector.connect(sni, tcp).await.unwrap();
    assert_eq!(
        verifier.matched().map(|m| m.describe()).as_deref(),
        Some("DANE-EE(3) SPKI(1) SHA2-256(1)")
    );
}
