//! DANE (RFC 7672) end to end through the real binary: an in-process DNS server for a private
//! DNSSEC tree under `test.` (`hato_delivery::testing`, feature `test-support`), a receiving
//! hato with a known certificate, and a sending hato with `[delivery] tls_policy = "dane"`,
//! `[dns] nameservers` pointing at that server and `[dns] trust_anchor` holding the key of
//! `test.`.
//!
//! The TLSA owner is `_<port>._tcp.<mx host>` with the receiver's ephemeral SMTP port (delivery
//! connects to `[delivery] port`), so the DNS tree is built after the receiver has started.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hato_delivery::dane::Tlsa;
use hato_delivery::testing::{DnsServer, DnsTree, a, mx, tlsa, tlsa_for};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const MX_HOST: &str = "mx.remote.test";

/// A receiver certificate: its PEM files and DER certificates (to compute TLSA records).
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    /// DER of the leaf.
    leaf: Vec<u8>,
    /// DER of the issuing CA, when there is one (then `cert` holds leaf + CA).
    ca: Option<Vec<u8>>,
}

/// A self-signed certificate for the MX host (and `localhost`, the receiver's hostname).
fn self_signed(dir: &Path) -> Cert {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![MX_HOST.to_string(), "localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    write_cert(
        dir,
        "self",
        &cert.pem(),
        &key.serialize_pem(),
        cert.der(),
        None,
    )
}

/// A test CA and a leaf it signed for `names`; the certificate file holds the leaf and the CA
/// (a DANE-TA server must send its trust anchor, RFC 7672 3.1.2).
fn ca_and_leaf(dir: &Path, names: &[&str]) -> Cert {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hato DANE-TA test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    write_cert(
        dir,
        "leaf",
        &chain,
        &key.serialize_pem(),
        leaf.der(),
        Some(ca.der().to_vec()),
    )
}

fn write_cert(
    dir: &Path,
    stem: &str,
    chain_pem: &str,
    key_pem: &str,
    leaf: &[u8],
    ca: Option<Vec<u8>>,
) -> Cert {
    // Never overwrite another certificate's files (the receiver reloads changed files).
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (cert, key) = (
        dir.join(format!("{stem}{n}-cert.pem")),
        dir.join(format!("{stem}{n}-key.pem")),
    );
    std::fs::write(&cert, chain_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    Cert {
        cert,
        key,
        leaf: leaf.to_vec(),
        ca,
    }
}

/// The receiving MTA for the local `domains` (account `bob@<domain>` each), with `cert`.
fn receiver(domains: &[&str], cert: &Cert) -> TestServer {
    let users: Vec<String> = domains.iter().map(|d| format!("bob@{d}")).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let tls = format!("{}{FAST_AUTH}", tls_config(&cert.cert, &cert.key));
    TestServer::start_domains(domains, &users, &tls)
}

/// The sending hato (example.test, alice) with `tls_policy = "dane"`, delivering to `port`, the
/// DNS server as its only nameserver and the key of `test.` as its trust anchor (written to
/// `dir`).
fn sender(port: u16, dns: &DnsServer, dir: &Path) -> TestServer {
    let anchor = dir.join("test.key");
    std::fs::write(&anchor, dns.trust_anchor_text()).unwrap();
    TestServer::start_with(
        "",
        &format!(
            "{FAST_AUTH}[delivery]\nretry = [\"1s\"]\nport = {port}\nconnect_timeout_secs = 5\n\
             tls_policy = \"dane\"\n[dns]\nnameservers = [\"{}\"]\ntimeout_secs = 2\n\
             trust_anchor = \"{}\"\n",
            dns.addr(),
            anchor.display()
        ),
    )
}

/// `_<port>._tcp.<host>`.
fn tlsa_owner(host: &str, port: u16) -> String {
    format!("_{port}._tcp.{host}")
}

/// A secure delivery domain `domain` (a signed child zone of `test.`): MX 10 mx.<domain>,
/// mx.<domain> A 127.0.0.1, and the `records` as its TLSA RRset for `port`.
fn secure_domain(tree: &mut DnsTree, domain: &str, port: u16, records: &[Tlsa]) {
    let host = format!("mx.{domain}");
    tree.zone(domain, true)
        .add(mx(domain, 10, &host))
        .add(a(&host, "127.0.0.1"));
    for r in records {
        tree.add(tlsa(&tlsa_owner(&host, port), r));
    }
}

/// The sender's "delivery attempt" log lines for `rcpt`.
fn attempts(tx: &TestServer, rcpt: &str) -> Vec<String> {
    tx.logs()
        .lines()
        .filter(|l| l.contains("delivery attempt") && l.contains(rcpt))
        .map(str::to_owned)
        .collect()
}

/// Waits until `rcpt`'s queue entry has failed at least twice; returns it. The receiver never
/// saw the message (checked by the callers).
fn wait_deferred(tx: &TestServer, rcpt: &str) -> hato_store::QueueEntry {
    let entry = || tx.queue().into_iter().find(|e| e.recipient == rcpt);
    wait_until(
        "two deferred attempts",
        Duration::from_secs(30),
        || entry().is_some_and(|e| e.attempts >= 2),
        || tx.logs(),
    );
    entry().unwrap()
}

/// The sender never fell back to plaintext, and the receiver took no message (and no
/// recipient: neither over TLS nor in plaintext).
fn assert_nothing_accepted(tx: &TestServer, rx: &TestServer) {
    assert!(
        !tx.logs().contains("retrying in plaintext"),
        "{}",
        tx.logs()
    );
    let log = rx.logs();
    assert!(
        !log.contains("message accepted") && !log.contains("alice@example.test"),
        "the receiver got mail: {log}"
    );
}

/// The Received header the receiver added (the first one) shows TLS.
fn assert_received_over_tls(msg: &str) {
    let received = received(msg);
    assert!(
        received.contains("using TLS") && received_with(&received, "ESMTPS"),
        "the receiver's Received header does not show TLS: {received}"
    );
}

/// Waits until `rcpt` got the message with `subject` from `tx` over TLS and its queue entry is
/// gone; asserts that one of the sender's "delivery attempt" log lines for `rcpt` contains all
/// of `attempt`.
fn delivered_over_tls(
    rx: &TestServer,
    tx: &TestServer,
    rcpt: &str,
    subject: &str,
    attempt: &[&str],
) {
    let inbox = rx.wait_inbox(rcpt, 1, Duration::from_secs(30));
    assert!(
        inbox[0].contains(&format!("Subject: {subject}")),
        "{}",
        inbox[0]
    );
    assert_received_over_tls(&inbox[0]);
    wait_until(
        "the queue entry goes",
        Duration::from_secs(10),
        || !tx.queue().iter().any(|e| e.recipient == rcpt),
        || tx.logs(),
    );
    assert!(
        attempts(tx, rcpt)
            .iter()
            .any(|l| attempt.iter().all(|a| l.contains(a))),
        "{}",
        tx.logs()
    );
}

/// (a) A secure zone with a DANE-EE(3) SPKI(1) SHA-256(1) record of the receiver's key:
/// delivered over TLS authenticated by DANE.
#[test]
fn dane_ee_record_authenticates_the_receiver() {
    let certs = tempfile::tempdir().unwrap();
    let cert = self_signed(certs.path());
    let rx = receiver(&["remote.test"], &cert);
    let port = rx.ports.smtp;
    let mut tree = DnsTree::new();
    // A stale record next to the right one: one match is enough (RFC 7671 8).
    secure_domain(
        &mut tree,
        "remote.test",
        port,
        &[
            tlsa_for(3, 1, 1, &self_signed(certs.path()).leaf),
            tlsa_for(3, 1, 1, &cert.leaf),
        ],
    );
    let dns = tree.serve_in_background();
    let tx = sender(port, &dns, certs.path());
    submit(&tx, "bob@remote.test", "dane-ee");
    let ee = "verified (DANE: DANE-EE(3) SPKI(1) SHA2-256(1))";
    delivered_over_tls(
        &rx,
        &tx,
        "bob@remote.test",
        "dane-ee",
        &[MX_HOST, "TLSv1.3", ee],
    );
}

/// (b) A secure zone whose only TLSA record matches another key: the handshake fails, the
/// message waits (never plaintext) and the receiver gets nothing.
#[test]
fn mismatching_tlsa_record_defers() {
    let certs = tempfile::tempdir().unwrap();
    let cert = self_signed(certs.path());
    let other = self_signed(certs.path());
    let rx = receiver(&["remote.test"], &cert);
    let port = rx.ports.smtp;
    let mut tree = DnsTree::new();
    let record = tlsa_for(3, 1, 1, &other.leaf);
    secure_domain(&mut tree, "remote.test", port, &[record]);
    let dns = tree.serve_in_background();
    let tx = sender(port, &dns, certs.path());
    submit(&tx, "bob@remote.test", "wrong key");
    let e = wait_deferred(&tx, "bob@remote.test");
    let error = e.last_error.clone().unwrap_or_default();
    let tls = e.last_tls.clone().unwrap_or_default();
    assert!(error.starts_with("4"), "{e:?}");
    assert!(
        tls.contains("\"policy\":\"dane\"")
            && tls.contains("\"verified\":null")
            && tls.contains("no TLSA record matched"),
        "{e:?}"
    );
    // `hato queue show` tells why.
    let show = tx.cli(&["queue", "show", &e.id.to_string()], None);
    show.assert_ok();
    assert!(
        show.stdout.contains("\"policy\":\"dane\""),
        "{}",
        show.stdout
    );
    assert_nothing_accepted(&tx, &rx);
}

/// (c) An insecure zone (an unsigned child of `test.`, provably: NSEC at the cut without DS)
/// with no TLSA records: DANE does not apply, delivered with opportunistic TLS like `may`.
#[test]
fn insecure_zone_is_delivered_like_may() {
    let certs = tempfile::tempdir().unwrap();
    let cert = self_signed(certs.path());
    let rx = receiver(&["plain.test"], &cert);
    let mut tree = DnsTree::new();
    tree.zone("plain.test", false)
        .add(mx("plain.test", 10, "mx.plain.test"))
        .add(a("mx.plain.test", "127.0.0.1"));
    let dns = tree.serve_in_background();
    let tx = sender(rx.ports.smtp, &dns, certs.path());
    submit(&tx, "bob@plain.test", "insecure zone");
    let attempt = ["mx.plain.test", "TLSv1.3", "unverified"];
    delivered_over_tls(&rx, &tx, "bob@plain.test", "insecure zone", &attempt);
}

/// (d) Bogus answers: a TLSA RRset and an MX RRset whose data no longer match their
/// signatures. Both destinations wait; the receiver (which would accept either) gets nothing.
#[test]
fn bogus_tlsa_or_mx_defers() {
    let certs = tempfile::tempdir().unwrap();
    let cert = self_signed(certs.path());
    let rx = receiver(&["badtlsa.test", "badmx.test"], &cert);
    let port = rx.ports.smtp;
    let right = tlsa_for(3, 1, 1, &cert.leaf);
    let mut tree = DnsTree::new();
    // A forger replaced the signed record by one that matches the receiver: bogus all the same.
    let signed = tlsa_for(3, 1, 1, &self_signed(certs.path()).leaf);
    secure_domain(&mut tree, "badtlsa.test", port, &[signed]);
    tree.tamper(tlsa(&tlsa_owner("mx.badtlsa.test", port), &right));
    // The MX RRset was changed to point at another host (with a matching TLSA record).
    secure_domain(&mut tree, "badmx.test", port, std::slice::from_ref(&right));
    tree.add(a("evil.badmx.test", "127.0.0.1"))
        .add(tlsa(&tlsa_owner("evil.badmx.test", port), &right))
        .tamper(mx("badmx.test", 10, "evil.badmx.test"));
    let dns = tree.serve_in_background();
    let tx = sender(port, &dns, certs.path());
    submit(&tx, "bob@badtlsa.test", "bogus tlsa");
    submit(&tx, "bob@badmx.test", "bogus mx");

    let e = wait_deferred(&tx, "bob@badtlsa.test");
    let error = e.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("451 4.7.5") && error.contains("TLSA lookup for mx.badtlsa.test failed"),
        "{e:?}"
    );
    let e = wait_deferred(&tx, "bob@badmx.test");
    let error = e.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("451 4.7.5") && error.contains("MX records of badmx.test"),
        "{e:?}"
    );
    assert_nothing_accepted(&tx, &rx);
}

/// (e) DANE-TA(2) Cert(0) SHA-256(1) of a test CA; the receiver sends its leaf (named after the
/// MX host) and the CA: delivered, authenticated by DANE-TA. A leaf with another name under the
/// same CA is refused (RFC 7672 3.2.2).
#[test]
fn dane_ta_record_with_a_test_ca() {
    let certs = tempfile::tempdir().unwrap();
    let cert = ca_and_leaf(certs.path(), &[MX_HOST, "localhost"]);
    let rx = receiver(&["remote.test", "othername.test"], &cert);
    let port = rx.ports.smtp;
    let ca = cert.ca.clone().expect("a CA");
    let mut tree = DnsTree::new();
    secure_domain(&mut tree, "remote.test", port, &[tlsa_for(2, 0, 1, &ca)]);
    // The same server and CA as mx.othername.test: the leaf does not carry that name.
    secure_domain(&mut tree, "othername.test", port, &[tlsa_for(2, 0, 1, &ca)]);
    let dns = tree.serve_in_background();
    let tx = sender(port, &dns, certs.path());
    submit(&tx, "bob@remote.test", "dane-ta");
    submit(&tx, "bob@othername.test", "dane-ta, wrong name");
    let ta = "verified (DANE: DANE-TA(2) Cert(0) SHA2-256(1))";
    delivered_over_tls(&rx, &tx, "bob@remote.test", "dane-ta", &[ta]);
    let e = wait_deferred(&tx, "bob@othername.test");
    let tls = e.last_tls.clone().unwrap_or_default();
    assert!(
        tls.contains("\"policy\":\"dane\"")
            && tls.contains("\"verified\":null")
            && tls.contains("not valid for name"),
        "{e:?}"
    );
    assert!(rx.inbox("bob@othername.test").is_empty());
}
