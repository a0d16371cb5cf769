//! The DANE certificate verifier: real TLS handshakes on 127.0.0.1 (a tokio-rustls server with
//! rcgen certificates) where the client authenticates the server by TLSA records, and
//! `DaneVerifier::verify_chain` for the chain rules without a handshake.

use std::sync::Arc;

use hato_delivery::dane::Tlsa;
use hato_delivery::dane_verify::{DaneVerified, DaneVerifier};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PublicKeyData,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A certificate with its key.
struct Leaf {
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl Leaf {
    fn spki(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }
}

fn self_signed(name: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Leaf {
        der: cert.der().clone(),
        key,
    }
}

fn expired_self_signed(name: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = date_time_ymd(2001, 1, 1);
    params.not_after = date_time_ymd(2002, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Leaf {
        der: cert.der().clone(),
        key,
    }
}

fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn issued(ca: &CertifiedIssuer<'static, KeyPair>, name: &str, expired: bool) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    if expired {
        params.not_before = date_time_ymd(2001, 1, 1);
        params.not_after = date_time_ymd(2002, 1, 1);
    }
    let cert = params.signed_by(&key, ca).unwrap();
    Leaf {
        der: cert.der().clone(),
        key,
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// A TLS server on 127.0.0.1 presenting `chain` (with the key of its first certificate) to
/// one client, which gets "hello" once the handshake succeeded.
async fn serve(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> std::net::SocketAddr {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.write_all(b"hello").await;
            let _ = tls.shutdown().await;
        }
    });
    addr
}

/// Connects with a DANE verifier; Ok(the match) or Err(the handshake error).
async fn connect(
    addr: std::net::SocketAddr,
    records: Vec<Tlsa>,
    reference: &[&str],
) -> Result<DaneVerified, String> {
    let verifier = Arc::new(DaneVerifier::new(records, names(reference)));
    let config = verifier.client_config().unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    // The SNI is the MX host; the verifier ignores it.
    let sni = ServerName::try_from("mx.example.net").unwrap();
    let mut tls = connector
        .connect(sni, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    tls.read_to_end(&mut hello).await.unwrap();
    assert_eq!(hello, b"hello");
    Ok(verifier.matched().expect("a match is recorded"))
}

#[tokio::test]
async fn dane_ee_spki_sha256_authenticates_without_name_or_date_checks() {
    // Expired, self-signed, named after some other host: DANE-EE(3) checks none of that
    // (RFC 7672 3.1.1).
    let leaf = expired_self_signed("unrelated.example");
    let addr = serve(vec![leaf.der.clone()], &leaf.key).await;
    let records = vec![
        Tlsa::for_selected(3, 1, 1, b"some other key"),
        Tlsa::for_selected(3, 1, 1, &leaf.spki()),
    ];
    let matched = connect(addr, records, &["mx.example.net"]).await.unwrap();
    assert_eq!(matched.describe(), "DANE-EE(3) SPKI(1) SHA2-256(1)");
    assert_eq!((matched.depth, matched.name), (0, None));
}

#[tokio::test]
async fn dane_ee_full_certificate() {
    let leaf = self_signed("mx.example.net");
    let addr = serve(vec![leaf.der.clone()], &leaf.key).await;
    let matched = connect(
        addr,
        vec![Tlsa::for_selected(3, 0, 0, &leaf.der)],
        &["mx.example.net"],
    )
    .await
    .unwrap();
    assert_eq!(matched.to_string(), "DANE-EE(3) Cert(0) Full(0)");
}

#[tokio::test]
async fn a_mismatch_fails_the_handshake() {
    let leaf = self_signed("mx.example.net");
    let other = self_signed("mx.example.net");
    let addr = serve(vec![leaf.der.clone()], &leaf.key).await;
    let records = vec![
        Tlsa::for_selected(3, 1, 1, &other.spki()),
        // Unusable records never authenticate, even when they match.
        Tlsa::for_selected(1, 1, 1, &leaf.spki()),
        Tlsa::for_selected(0, 0, 1, &leaf.der),
    ];
    let err = connect(addr, records, &["mx.example.net"])
        .await
        .unwrap_err();
    assert!(err.contains("no TLSA record matched"), "{err}");
}

#[tokio::test]
async fn dane_ta_authenticates_the_chain_and_checks_the_name() {
    let ca = new_ca();
    let leaf = issued(&ca, "mx.example.net", false);
    let chain = vec![leaf.der.clone(), ca.der().clone()];
    let records = vec![Tlsa::for_selected(2, 0, 1, ca.der())];

    let addr = serve(chain.clone(), &leaf.key).await;
    let matched = connect(addr, records.clone(), &["mx.example.net"])
        .await
        .unwrap();
    assert_eq!(matched.describe(), "DANE-TA(2) Cert(0) SHA2-256(1)");
    assert_eq!(matched.depth, 1);
    assert_eq!(matched.name.as_deref(), Some("mx.example.net"));

    // Any of the reference identifiers (e.g. the original name of a CNAME-expanded host).
    let addr = serve(chain.clone(), &leaf.key).await;
    let matched = connect(
        addr,
        records.clone(),
        &["mx.hosting.example", "MX.Example.NET."],
    )
    .await
    .unwrap();
    assert_eq!(matched.name.as_deref(), Some("mx.example.net"));

    // The leaf is not for this host: fails, although the trust anchor matched.
    let addr = serve(chain, &leaf.key).await;
    let err = connect(addr, records, &["other.example.net"])
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("name"), "{err}");
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn dane_ta_rules() {
    let ca = new_ca();
    let leaf = issued(&ca, "mx.example.net", false);
    let verify = |records: Vec<Tlsa>, reference: &[&str], chain: &[CertificateDer<'static>]| {
        DaneVerifier::new(records, names(reference)).verify_chain(&chain[0], &chain[1..], now())
    };
    let full = [leaf.der.clone(), ca.der().clone()];
    // 2 0 1: the anchor's certificate, the record of most cases below.
    let anchor = Tlsa::for_selected(2, 0, 1, ca.der());
    // A leaf sent with the anchor, checked against that record for the MX host name.
    let verify_leaf = |presented: &Leaf| {
        verify(
            vec![anchor.clone()],
            &["mx.example.net"],
            &[presented.der.clone(), ca.der().clone()],
        )
    };

    // 2 1 1: the anchor's public key.
    let ca_spki = ca.key().subject_public_key_info();
    let v = verify(
        vec![Tlsa::for_selected(2, 1, 1, &ca_spki)],
        &["mx.example.net"],
        &full,
    )
    .unwrap();
    assert_eq!(v.describe(), "DANE-TA(2) SPKI(1) SHA2-256(1)");

    // The server must send the trust anchor (RFC 7672 3.1.2): without it nothing matches.
    let err = verify(vec![anchor.clone()], &["mx.example.net"], &full[..1]).unwrap_err();
    assert!(err.to_string().contains("no TLSA record matched"), "{err}");

    // Unlike DANE-EE, the leaf's dates count under DANE-TA.
    let expired = issued(&ca, "mx.example.net", true);
    let err = verify_leaf(&expired).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");

    // A wildcard in the leftmost label matches.
    let wild = issued(&ca, "*.example.net", false);
    let v = verify_leaf(&wild).unwrap();
    assert_eq!(v.name.as_deref(), Some("mx.example.net"));

    // A leaf not issued by the matched anchor: the signature check fails.
    let other_ca = new_ca();
    let stranger = issued(&other_ca, "mx.example.net", false);
    assert!(verify_leaf(&stranger).is_err());

    // Rollover: the first matching record's anchor does not validate the chain, the second
    // record's does.
    let records = vec![Tlsa::for_selected(2, 0, 1, other_ca.der()), anchor.clone()];
    let v = verify(
        records,
        &["mx.example.net"],
        &[leaf.der.clone(), other_ca.der().clone(), ca.der().clone()],
    )
    .unwrap();
    assert_eq!((v.depth, v.record.data.clone()), (2, anchor.data.clone()));

    // DANE-EE wins over DANE-TA and needs no name.
    let v = verify(
        vec![anchor.clone(), Tlsa::for_selected(3, 1, 2, &leaf.spki())],
        &[],
        &full,
    )
    .unwrap();
    assert_eq!(v.describe(), "DANE-EE(3) SPKI(1) SHA2-512(2)");

    // DANE-TA without any reference identifier cannot succeed.
    assert!(verify(vec![anchor.clone()], &[], &full).is_err());

    // Garbage in the chain is an error, not a match.
    let junk = CertificateDer::from(b"junk".to_vec());
    assert!(
        verify(
            vec![anchor.clone()],
            &["mx.example.net"],
            &[leaf.der.clone(), junk],
        )
        .is_err()
    );
}
