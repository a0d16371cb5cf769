//! Outbound delivery end to end with real parts: an in-test DNS server
//! (`hato_delivery::testing`, feature `test-support`, on 127.0.0.1, UDP and TCP) with MX records
//! for `remote.test`, a second hato as the receiving MTA (STARTTLS with its self-signed
//! certificate), and the sending hato whose `[delivery] port` points at the receiver's smtp
//! listener.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hato_delivery::testing::{DnsServer, DnsTree, a, mx, txt};
use hato_dns::hickory_resolver::proto::rr::Record;

const BOB: &str = "bob@remote.test";

/// A DNS server for `remote.test.` (an unsigned zone: MX 10 mx.remote.test, mx.remote.test A
/// 127.0.0.1; a null MX `null.remote.test`; `fallback.remote.test` with a dead best MX),
/// running on its own tokio runtime until dropped.
fn start_dns() -> DnsServer {
    start_dns_with(Vec::new())
}

/// [`start_dns`] with more records in the `remote.test.` zone.
fn start_dns_with(extra: Vec<Record>) -> DnsServer {
    let mut tree = DnsTree::new();
    tree.zone("remote.test", false)
        .add(mx("remote.test", 10, "mx.remote.test"))
        .add(a("mx.remote.test", "127.0.0.1"))
        // RFC 7505 null MX.
        .add(mx("null.remote.test", 0, "."))
        // The best MX is down (nothing listens on 127.0.0.2); the second is the receiver.
        .add(mx("fallback.remote.test", 10, "down.remote.test"))
        .add(mx("fallback.remote.test", 20, "mx.remote.test"))
        .add(a("down.remote.test", "127.0.0.2"))
        .add_all(extra);
    tree.serve_in_background()
}

/// The first message in alice's INBOX on `tx` (a report to the sender), once it is there.
fn first_report(tx: &TestServer) -> String {
    tx.wait_inbox(USER, 1, Duration::from_secs(20)).remove(0)
}

/// `hato queue list` (asserted to succeed).
fn queue_list(tx: &TestServer) -> String {
    let list = tx.cli(&["queue", "list"], None);
    list.assert_ok();
    list.stdout
}

/// The receiving MTA: local domain `domain`, account `bob@<domain>`.
fn receiver(domain: &str) -> TestServer {
    TestServer::start_domains(&[domain], &[&format!("bob@{domain}")], FAST_AUTH)
}

/// The sending hato (example.test, alice), delivering to port `port` with the DNS at `dns`.
/// `more` continues the `[delivery]` table (and may add `[[route]]`s).
fn sender(port: u16, dns: Option<SocketAddr>, more: &str) -> TestServer {
    let dns = dns
        .map(|a| format!("[dns]\nnameservers = [\"{a}\"]\ntimeout_secs = 2\n"))
        .unwrap_or_default();
    TestServer::start_with(
        "",
        &format!(
            "{FAST_AUTH}[delivery]\nretry = [\"1s\"]\nport = {port}\nconnect_timeout_secs = 5\n{more}{dns}"
        ),
    )
}

#[test]
fn delivers_via_mx_with_starttls() {
    let dns = start_dns();
    let rx = receiver("remote.test");
    let tx = sender(rx.ports.smtp, Some(dns.addr()), "");
    submit(&tx, BOB, "via MX");
    let inbox = rx.wait_inbox(BOB, 1, Duration::from_secs(20));
    let msg = &inbox[0];
    assert!(msg.contains("Subject: via MX"), "{msg}");
    let received = received(msg);
    assert!(
        received.contains("using TLSv1.3") && received_with(&received, "ESMTPS"),
        "receiver's Received header does not show TLS: {received}"
    );
    // The sender's own Received header (submission) is below it.
    assert_eq!(header_values(msg, "Received").len(), 2, "{msg}");
    tx.wait_queue_empty(Duration::from_secs(10));
    let log = tx.logs();
    assert!(
        log.contains("delivery attempt")
            && log.contains("mx.remote.test")
            && log.contains("TLSv1.3"),
        "{log}"
    );
}

#[test]
fn retries_until_the_receiver_is_up() {
    let dns = start_dns();
    let mut rx = receiver("remote.test");
    rx.kill();
    let tx = sender(rx.ports.smtp, Some(dns.addr()), "");
    submit(&tx, BOB, "retried");
    let e = tx.wait_deferred("a failed attempt");
    assert!(
        e.last_error.as_deref().unwrap_or("").contains("connect"),
        "{e:?}"
    );
    let list = queue_list(&tx);
    assert!(list.contains(BOB), "{list}");
    rx.spawn();
    let inbox = rx.wait_inbox(BOB, 1, Duration::from_secs(30));
    assert!(inbox[0].contains("Subject: retried"));
    tx.wait_queue_empty(Duration::from_secs(10));
}

#[test]
fn unknown_user_bounces_to_the_sender() {
    let dns = start_dns();
    let rx = receiver("remote.test");
    let tx = sender(rx.ports.smtp, Some(dns.addr()), "");
    submit(&tx, "nobody@remote.test", "will bounce");
    let dsn = first_report(&tx);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("nobody@remote.test"), "{dsn}");
    assert!(dsn.contains("Return-Path: <>"), "{dsn}");
    tx.wait_queue_empty(Duration::from_secs(10));
    assert!(rx.inbox(BOB).is_empty());
}

#[test]
fn explicit_route_to_host_and_port() {
    let rx = receiver("partner.test");
    // No [dns]: the route alone decides; the port comes from the route, not [delivery].
    let tx = sender(free_port(), None, &route("partner.test", rx.ports.smtp));
    submit(&tx, "bob@partner.test", "routed");
    let inbox = rx.wait_inbox("bob@partner.test", 1, Duration::from_secs(20));
    assert!(inbox[0].contains("Subject: routed"));
}

#[test]
fn queue_commands() {
    let dead = free_port();
    let tx = routed_sender(dead, "");
    let empty = queue_list(&tx);
    assert!(empty.contains("empty"), "{empty}");
    submit(&tx, BOB, "one");
    submit(&tx, "carol@remote.test", "two");
    tx.wait_queue("failed attempts", Duration::from_secs(20), |q| {
        q.len() == 2 && q.iter().all(|e| e.attempts >= 1)
    });
    let list = queue_list(&tx);
    assert!(
        list.contains(BOB)
            && list.contains("carol@remote.test")
            && list.contains(USER)
            && list.contains("connect"),
        "{list}"
    );
    let q = tx.queue();
    let bob = q.iter().find(|e| e.recipient == BOB).unwrap().id;
    let carol = q.iter().find(|e| e.recipient != BOB).unwrap().id;
    let show = tx.cli(&["queue", "show", &bob.to_string()], None);
    show.assert_ok();
    assert!(
        show.stdout.contains("recipient:        bob@remote.test")
            && show.stdout.contains("last error:")
            && show.stdout.contains("last TLS:"),
        "{}",
        show.stdout
    );
    let retry = tx.cli(&["queue", "retry", "--all"], None);
    retry.assert_ok();
    assert!(retry.stdout.contains("due now"), "{}", retry.stdout);
    tx.cli(&["queue", "retry", &bob.to_string()], None)
        .assert_ok();
    assert!(!tx.cli(&["queue", "retry", "999999"], None).status.success());
    tx.cli(&["queue", "delete", &carol.to_string()], None)
        .assert_ok();
    assert!(
        !tx.cli(&["queue", "delete", &carol.to_string()], None)
            .status
            .success()
    );
    assert_eq!(tx.queue().len(), 1);
    // Bounce: the running scheduler sends the DSN to alice and drops the entry.
    tx.cli(&["queue", "bounce", &bob.to_string()], None)
        .assert_ok();
    let inbox = tx.wait_inbox(USER, 1, Duration::from_secs(20));
    assert!(
        inbox[0].contains("multipart/report") && inbox[0].contains(BOB),
        "{}",
        inbox[0]
    );
    tx.wait_queue_empty(Duration::from_secs(10));
}

#[test]
fn delivery_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_config_errors(
        dir.path(),
        &[
            ("[delivery]\nretry = [\"soon\"]\n", "delivery.retry"),
            (
                "[delivery]\ntls_policy = \"maybe\"\n",
                "delivery.tls_policy",
            ),
            ("[delivery]\nconcurrency = 0\n", "delivery"),
            ("[delivery]\nbogus = 1\n", "bogus"),
            (
                "[[route]]\ndomain = \"x.test\"\nhost = \"bad host\"\n",
                "route.host",
            ),
            ("[dns]\nnameservers = [\"nope\"]\n", "nameservers"),
            (
                "[delivery]\nca_file = \"/nonexistent/ca.pem\"\n",
                "delivery.ca_file",
            ),
        ],
    );
}

/// A fake MTA (Python) that offers STARTTLS but answers the TLS ClientHello with garbage, and
/// otherwise accepts mail. Serves up to `connections` connections (20 s idle limit), then prints
/// every command it received, one per line.
struct BrokenTlsMta {
    py: PyChild,
    port: u16,
}

/// Python prelude of the fake MTAs: `listen(backlog, timeout)`, a listening socket on an
/// ephemeral port of 127.0.0.1, whose number it prints first; `smtp_session(c, name, ehlo,
/// command, data)`, one plaintext SMTP session on the connection `c`: the greeting `220 NAME
/// ESMTP`, `ehlo` (bytes) for EHLO, DATA read up to the final dot and answered with what
/// `data(lines)` returns (the session ends without a reply on None; default 250), QUIT
/// answered with 221, anything else with 250; `command(cmd, line)` sees every command line
/// first and may answer it itself (True; "stop": the session ends).
const FAKE_MTA: &str = r#"
import socket, sys, threading, time
def listen(backlog, timeout):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(backlog)
    srv.settimeout(timeout)
    print(srv.getsockname()[1], flush=True)
    return srv
def smtp_session(c, name, ehlo, command=None, data=None):
    f = c.makefile("rb")
    c.sendall(b"220 %s ESMTP\r\n" % name)
    while True:
        line = f.readline()
        if not line:
            return
        cmd = line.strip().upper()
        answered = command(cmd, line) if command else False
        if answered == "stop":
            return
        if answered:
            continue
        if cmd.startswith(b"EHLO"):
            c.sendall(ehlo)
        elif cmd == b"DATA":
            c.sendall(b"354 go\r\n")
            lines = []
            while True:
                l = f.readline()
                if l in (b".\r\n", b""):
                    break
                lines.append(l)
            reply = data(lines) if data else b"250 2.0.0 stored\r\n"
            if reply is None:
                return
            c.sendall(reply)
        elif cmd == b"QUIT":
            c.sendall(b"221 bye\r\n")
            return
        else:
            c.sendall(b"250 2.0.0 ok\r\n")
"#;

/// Starts the fake MTA `script` (after [`FAKE_MTA`]) with `args`; it and its port.
fn fake_mta(script: &str, args: &[&str]) -> (PyChild, u16) {
    let mut py = PyChild::spawn(&format!("{FAKE_MTA}{script}"), args);
    let port = py.line().trim().parse().expect("fake MTA port");
    (py, port)
}

impl BrokenTlsMta {
    fn start(connections: usize) -> BrokenTlsMta {
        BrokenTlsMta::with_capabilities(connections, "STARTTLS")
    }

    /// A fake MTA announcing `capabilities` (comma separated, e.g. "DSN" or "STARTTLS,DSN");
    /// its STARTTLS is broken (answers garbage after 220).
    fn with_capabilities(connections: usize, capabilities: &str) -> BrokenTlsMta {
        const SCRIPT: &str = r#"
n = int(sys.argv[1])
caps = [c for c in sys.argv[2].split(",") if c]
ehlo = "".join("250-%s\r\n" % c for c in ["fake"] + caps[:-1]) + "250 %s\r\n" % (caps[-1] if caps else "HELP")
srv = listen(5, 20)
seen = []
tempfailed = False
def command(cmd, line):
    global tempfailed
    seen.append(line.decode("utf-8", "replace").strip())
    if cmd == b"STARTTLS":
        c.sendall(b"220 go ahead\r\n")
        c.recv(4096)
        c.sendall(b"this is not TLS\r\n" * 4)
        return "stop"
    if cmd.startswith(b"RCPT") and "TEMPFAIL_ONCE" in caps and not tempfailed:
        tempfailed = True
        c.sendall(b"451 4.3.0 try again later\r\n")
        return True
    return False
def data(lines):
    seen.extend("DATA| " + l.decode("utf-8", "replace").rstrip("\r\n") for l in lines)
    return b"250 2.0.0 stored\r\n"
try:
    for _ in range(n):
        c, _ = srv.accept()
        c.settimeout(20)
        smtp_session(c, b"fake", ehlo.encode(), command, data)
        c.close()
except socket.timeout:
    pass
print("\n".join(seen), flush=True)
"#;
        let (py, port) = fake_mta(SCRIPT, &[&connections.to_string(), capabilities]);
        BrokenTlsMta { py, port }
    }

    /// Waits for the script to finish; the commands it saw.
    fn commands(self) -> String {
        self.py.finish(Duration::from_secs(30), "fake MTA")
    }
}

/// `[[route]]` sending `domain` to 127.0.0.1:`port`.
fn route(domain: &str, port: u16) -> String {
    format!("[[route]]\ndomain = \"{domain}\"\nhost = \"[127.0.0.1]:{port}\"\n")
}

/// The sending hato with `remote.test` routed to 127.0.0.1:`port` (e.g. a fake MTA); `more`
/// continues the `[delivery]` table.
fn routed_sender(port: u16, more: &str) -> TestServer {
    sender(
        free_port(),
        None,
        &format!("{more}{}", route("remote.test", port)),
    )
}

#[test]
fn may_falls_back_to_plaintext_after_a_failed_handshake() {
    let mta = BrokenTlsMta::start(2);
    let tx = routed_sender(mta.port, "");
    submit(&tx, BOB, "fallback");
    tx.wait_queue_empty(Duration::from_secs(20));
    let seen = mta.commands();
    assert!(seen.contains("STARTTLS"), "{seen}");
    assert!(seen.contains("MAIL FROM:<alice@example.test>"), "{seen}");
    let log = tx.logs();
    assert!(log.contains("retrying in plaintext"), "{log}");
    assert!(log.contains("tls=plaintext"), "{log}");
}

#[test]
fn encrypt_never_falls_back_to_plaintext() {
    let mta = BrokenTlsMta::start(1);
    let tx = routed_sender(mta.port, "tls_policy = \"encrypt\"\n");
    submit(&tx, BOB, "must be encrypted");
    let e = tx.wait_deferred("a deferred attempt");
    let error = e.last_error.clone().unwrap_or_default();
    assert!(error.contains("TLS"), "{e:?}");
    let tls = e.last_tls.clone().unwrap_or_default();
    assert!(tls.contains("\"policy\":\"encrypt\""), "{tls}");
    let seen = mta.commands();
    assert!(seen.contains("STARTTLS"), "{seen}");
    assert!(!seen.contains("MAIL FROM"), "{seen}");
}

/// `verify` without `ca_file` checks against the public WebPKI roots: a self-signed
/// certificate fails the handshake and the message waits (never plaintext).
#[test]
fn verify_uses_webpki_roots_and_defers_on_an_untrusted_certificate() {
    let rx = receiver("remote.test");
    let tx = routed_sender(rx.ports.smtp, "tls_policy = \"verify\"\n");
    submit(&tx, BOB, "verify me");
    let entry = tx.wait_deferred("a deferred attempt");
    let error = entry.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("4.7.") || error.contains("certificate") || error.contains("TLS"),
        "{error}"
    );
    let tls = entry.last_tls.clone().unwrap_or_default();
    assert!(tls.contains("\"policy\":\"verify\""), "{tls}");
    assert!(tls.to_lowercase().contains("certificate"), "{tls}");
    assert!(rx.inbox(BOB).is_empty());
}

/// The DNS names of the receivers' certificates from a test CA.
const MX_NAMES: &[&str] = &["mx.remote.test", "localhost", "mta-sts.sts.remote.test"];

/// A receiving hato for `domain` (account `user`) with a certificate for [`MX_NAMES`] from a
/// test CA; returns it and the CA file.
fn receiver_with_ca(
    certs: &std::path::Path,
    domain: &str,
    user: &str,
) -> (TestServer, std::path::PathBuf) {
    let (ca, leaf, key) = make_ca_and_leaf(certs, "mx", MX_NAMES);
    let tls = format!("{}{FAST_AUTH}", tls_config(&leaf, &key));
    let rx = TestServer::start_domains(&[domain], &[user], &tls);
    (rx, ca)
}

/// [`receiver_with_ca`] for remote.test (account [`BOB`]) with the DNS for it, the CA and
/// another CA.
struct CaReceiver {
    rx: TestServer,
    dns: DnsServer,
    ca: std::path::PathBuf,
    other_ca: std::path::PathBuf,
    _certs: tempfile::TempDir,
}

fn ca_receiver() -> CaReceiver {
    let dns = start_dns();
    let certs = tempfile::tempdir().unwrap();
    let (rx, ca) = receiver_with_ca(certs.path(), "remote.test", BOB);
    let (other_ca, _, _) = make_ca_and_leaf(certs.path(), "other", MX_NAMES);
    CaReceiver {
        rx,
        dns,
        ca,
        other_ca,
        _certs: certs,
    }
}

#[test]
fn verify_with_ca_file_delivers_or_defers() {
    let r = ca_receiver();
    let (rx, dns) = (&r.rx, &r.dns);
    // The right CA: delivered, the attempt logged as verified.
    let verify = |ca: &std::path::Path| format!("tls_policy = \"verify\"\n{}", ca_file(ca));
    let tx = sender(rx.ports.smtp, Some(dns.addr()), &verify(&r.ca));
    submit(&tx, BOB, "verified");
    rx.wait_inbox(BOB, 1, Duration::from_secs(20));
    tx.wait_queue_empty(Duration::from_secs(10));
    assert!(tx.logs().contains(" verified"), "{}", tx.logs());
    // Another CA: deferred, never sent in plaintext.
    let tx2 = sender(rx.ports.smtp, Some(dns.addr()), &verify(&r.other_ca));
    submit(&tx2, BOB, "not verified");
    let e = tx2.wait_deferred("a deferred attempt");
    let tls = e.last_tls.clone().unwrap_or_default();
    assert!(
        tls.contains("\"policy\":\"verify\"") && tls.to_lowercase().contains("certificate"),
        "{e:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.inbox(BOB).len(), 1);
}

#[test]
fn eight_bit_message_is_converted_for_a_server_without_8bitmime() {
    const SCRIPT: &str = r#"
to = sys.argv[4]
s = login()
msg = ("From: %s\r\nTo: %s\r\nSubject: 8bit\r\n\r\nGr\u00fc\u00dfe aus K\u00f6ln\r\n" % (user, to)).encode("utf-8")
s.sendmail(user, [to], msg, mail_options=["BODY=8BITMIME"])
s.quit()
"#;
    let mta = BrokenTlsMta::start(1);
    let tx = routed_sender(mta.port, "tls_policy = \"none\"\n");
    python_submit(&tx, SCRIPT, &[BOB]).assert_ok();
    tx.wait_queue_empty(Duration::from_secs(20));
    let seen = mta.commands();
    assert!(!seen.contains("STARTTLS"), "{seen}");
    assert!(!seen.contains("BODY=8BITMIME"), "{seen}");
    assert!(
        seen.contains("DATA| Gr=C3=BC=C3=9Fe aus K=C3=B6ln"),
        "{seen}"
    );
    assert!(
        seen.to_ascii_lowercase()
            .contains("content-transfer-encoding: quoted-printable"),
        "{seen}"
    );
    assert!(seen.lines().all(|l| l.is_ascii()), "{seen}");
}

#[test]
fn null_mx_bounces_at_once() {
    let dns = start_dns();
    let tx = sender(free_port(), Some(dns.addr()), "");
    submit(&tx, "someone@null.remote.test", "null mx");
    let dsn = first_report(&tx);
    assert!(
        dsn.contains("Status: 5.1.10") && dsn.contains("556"),
        "{dsn}"
    );
    assert!(tx.queue().is_empty());
}

#[test]
fn next_mx_when_the_best_is_down() {
    let dns = start_dns();
    let rx = TestServer::start_domains(
        &["remote.test", "fallback.remote.test"],
        &["bob@fallback.remote.test"],
        FAST_AUTH,
    );
    let tx = sender(rx.ports.smtp, Some(dns.addr()), "");
    submit(&tx, "bob@fallback.remote.test", "second mx");
    let inbox = rx.wait_inbox("bob@fallback.remote.test", 1, Duration::from_secs(20));
    assert!(inbox[0].contains("Subject: second mx"));
    // The queue is empty once the attempt is recorded, and it is logged before that.
    tx.wait_queue_empty(Duration::from_secs(10));
    let log = tx.logs();
    assert!(
        log.contains("host=down.remote.test ip=127.0.0.2") && log.contains("host=mx.remote.test"),
        "{log}"
    );
}

#[test]
fn one_connection_carries_several_messages() {
    let mut rx = receiver("remote.test");
    rx.kill();
    let tx = TestServer::start_with(
        "",
        &format!(
            "{FAST_AUTH}[delivery]\nretry = [\"1h\"]\nper_domain = 1\n{}",
            route("remote.test", rx.ports.smtp)
        ),
    );
    for i in 0..3 {
        submit(&tx, BOB, &format!("reuse {i}"));
    }
    tx.wait_queue("three failed attempts", Duration::from_secs(20), |q| {
        q.len() == 3 && q.iter().all(|e| e.attempts >= 1)
    });
    rx.spawn();
    tx.cli(&["queue", "retry", "--all"], None).assert_ok();
    let inbox = rx.wait_inbox(BOB, 3, Duration::from_secs(20));
    for i in 0..3 {
        assert!(
            inbox
                .iter()
                .any(|m| m.contains(&format!("Subject: reuse {i}")))
        );
    }
    // The receiver saw one session with all three messages.
    rx.wait_for_log("accepted=3", Duration::from_secs(10));
}

#[test]
fn kill_9_during_delivery_loses_nothing() {
    // A server that takes the whole message and then never answers the end of the data.
    const SCRIPT: &str = r#"
srv = listen(5, 30)
c, _ = srv.accept()
def data(lines):
    print("GOT-DATA", flush=True)
    time.sleep(20)
smtp_session(c, b"slow", b"250 slow\r\n", data=data)
"#;
    let (mut mta, port) = fake_mta(SCRIPT, &[]);
    let mut tx = routed_sender(port, "tls_policy = \"none\"\n");
    submit(&tx, BOB, "in flight");
    assert_eq!(mta.line().trim(), "GOT-DATA");
    tx.kill();
    mta.kill();
    // The entry survives: still queued (leased by the dead process until its lease expires).
    let q = tx.queue();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].recipient, BOB);
    assert!(q[0].leased_until > 0, "{q:?}");
    assert_eq!(q[0].attempts, 0, "{q:?}");
    tx.spawn();
    let list = queue_list(&tx);
    assert!(list.contains(BOB), "{list}");
    // The restarted scheduler released the dead process's lease: the entry is tried again at
    // once (the fake MTA is gone, so that attempt fails and is recorded), not in 30 minutes.
    tx.wait_queue("a retry after the restart", Duration::from_secs(10), |q| {
        assert_eq!(q.len(), 1, "{q:?}");
        q[0].attempts >= 1
    });
    let q = tx.queue();
    assert!(q[0].last_error.is_some(), "{q:?}");
}

/// `[delivery.tls_policies]` picks the level per destination; DSN parameters from submission
/// go on to a server that announces DSN (RFC 3461 4: RET, ENVID, NOTIFY, ORCPT).
#[test]
fn policy_table_and_dsn_parameters_pass_through() {
    let mta = BrokenTlsMta::with_capabilities(1, "STARTTLS,DSN");
    let tx = routed_sender(
        mta.port,
        "tls_policy = \"encrypt\"\n[delivery.tls_policies]\n\"remote.test\" = \"none\"\n",
    );
    submit_with(
        &tx,
        BOB,
        "with dsn",
        "RET=HDRS ENVID=env42",
        "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Borig@remote.test",
        "",
    );
    tx.wait_queue_empty(Duration::from_secs(20));
    let seen = mta.commands();
    assert!(!seen.contains("STARTTLS"), "table level none: {seen}");
    assert!(
        seen.contains("MAIL FROM:<alice@example.test> RET=HDRS ENVID=env42"),
        "{seen}"
    );
    assert!(
        seen.contains(
            "RCPT TO:<bob@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Borig@remote.test"
        ),
        "{seen}"
    );
    // The server took NOTIFY=SUCCESS over: no "relayed" report from us.
    std::thread::sleep(Duration::from_millis(500));
    assert!(tx.inbox(USER).is_empty(), "{:?}", tx.inbox(USER));
}

/// NOTIFY=SUCCESS to a server without DSN: hato reports "relayed" itself (RFC 3461 4.2);
/// to a local mailbox: "delivered" at once.
#[test]
fn success_notifications_relayed_and_delivered() {
    let mta = BrokenTlsMta::with_capabilities(1, "");
    let tx = routed_sender(mta.port, "");
    submit_with(
        &tx,
        BOB,
        "relay me",
        "ENVID=e-77",
        "NOTIFY=SUCCESS ORCPT=rfc822;bob@remote.test",
        "",
    );
    let report = first_report(&tx);
    assert!(report.contains("Action: relayed"), "{report}");
    assert!(report.contains("Status: 2.0.0"), "{report}");
    assert!(report.contains("Original-Envelope-Id: e-77"), "{report}");
    assert!(
        report.contains("Original-Recipient: rfc822;bob@remote.test"),
        "{report}"
    );
    assert!(
        report.contains("Subject: relay me"),
        "header returned: {report}"
    );
    assert!(
        !report.contains("Hello from the delivery test"),
        "no body: {report}"
    );
    let seen = mta.commands();
    assert!(seen.contains("MAIL FROM:<alice@example.test>"), "{seen}");
    assert!(!seen.contains("NOTIFY"), "not announced, not sent: {seen}");

    // Local: alice writes to herself with NOTIFY=SUCCESS: the message and a "delivered" report.
    submit_with(&tx, USER, "to myself", "", "NOTIFY=SUCCESS", "");
    let inbox = tx.wait_inbox(USER, 3, Duration::from_secs(20));
    let delivered: Vec<_> = inbox
        .iter()
        .filter(|m| m.contains("Action: delivered"))
        .collect();
    assert_eq!(delivered.len(), 1, "{inbox:?}");
    assert!(
        delivered[0].contains("Return-Path: <>") || delivered[0].contains("MAILER-DAEMON"),
        "{}",
        delivered[0]
    );
    // NOTIFY=NEVER: nothing.
    submit_with(&tx, USER, "quietly", "", "NOTIFY=NEVER", "");
    tx.wait_inbox(USER, 4, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tx.inbox(USER).len(), 4);
}

/// `delay_warning`: one "delayed" report once a message has waited that long; it stays queued.
#[test]
fn delay_warning_is_sent_once() {
    let tx = routed_sender(1, "delay_warning = \"1s\"\n");
    submit(&tx, BOB, "slow one");
    let report = first_report(&tx);
    assert!(report.contains("Action: delayed"), "{report}");
    assert!(report.contains("Subject: Delayed Mail"), "{report}");
    assert!(report.contains("Will-Retry-Until:"), "{report}");
    assert!(report.contains("Status: 4."), "{report}");
    // More failed attempts, no second notice; the message is still queued.
    tx.wait_queue("three attempts", Duration::from_secs(20), |q| {
        q.first().is_some_and(|e| e.attempts >= 3)
    });
    assert_eq!(tx.inbox(USER).len(), 1);
    assert_eq!(tx.queue().len(), 1);
}

/// REQUIRETLS (RFC 8689): only over a verified connection to a server announcing it;
/// otherwise the message waits (never sent without). `TLS-Required: No` is the opposite.
#[test]
fn requiretls_needs_a_verified_connection() {
    let r = ca_receiver();
    let (rx, dns) = (&r.rx, &r.dns);
    // Trusted: delivered over verified TLS although the policy is only `may`.
    let tx = sender(rx.ports.smtp, Some(dns.addr()), &ca_file(&r.ca));
    submit_with(&tx, BOB, "secret", "REQUIRETLS", "", "");
    let got = rx.wait_inbox(BOB, 1, Duration::from_secs(20));
    assert!(got[0].contains("Subject: secret"), "{got:?}");
    assert!(tx.logs().contains(" verified"), "{}", tx.logs());
    // Not trusted: a REQUIRETLS message waits, a plain one goes (may: unverified TLS).
    let tx2 = sender(rx.ports.smtp, Some(dns.addr()), &ca_file(&r.other_ca));
    submit_with(&tx2, BOB, "secret two", "REQUIRETLS", "", "");
    submit(&tx2, BOB, "ordinary");
    rx.wait_inbox(BOB, 2, Duration::from_secs(20));
    let e = tx2.wait_deferred("a deferred REQUIRETLS attempt");
    assert!(e.requiretls, "{e:?}");
    let tls = e.last_tls.clone().unwrap_or_default();
    assert!(tls.contains("\"policy\":\"verify\""), "{tls}");
    std::thread::sleep(Duration::from_millis(500));
    let inbox = rx.inbox(BOB);
    assert_eq!(inbox.len(), 2);
    assert!(!inbox.iter().any(|m| m.contains("secret two")), "{inbox:?}");
}

/// A threaded fake MTA that records the most connections it had open at once; each DATA
/// takes a while, so parallel deliveries overlap. Returns it (see [`counting_result`]) and its
/// port.
fn counting_mta(messages: usize) -> (PyChild, u16) {
    const SCRIPT: &str = r#"
want = int(sys.argv[1])
srv = listen(50, 30)
lock = threading.Lock()
state = {"open": 0, "max": 0, "msgs": 0}
def serve(c):
    with lock:
        state["open"] += 1
        state["max"] = max(state["max"], state["open"])
    # A session ends at QUIT (the socket may close a moment after the client's next connect).
    counted = [True]
    def leave():
        if counted[0]:
            counted[0] = False
            with lock:
                state["open"] -= 1
    def command(cmd, line):
        if cmd == b"QUIT":
            leave()
        return False
    def data(lines):
        time.sleep(0.3)
        with lock:
            state["msgs"] += 1
        return b"250 2.0.0 stored\r\n"
    try:
        smtp_session(c, b"counting", b"250-counting\r\n250 PIPELINING\r\n", command, data)
    finally:
        leave()
        c.close()
deadline = time.time() + 30
while time.time() < deadline and state["msgs"] < want:
    try:
        srv.settimeout(0.2)
        c, _ = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
time.sleep(0.5)
print("max", state["max"], "msgs", state["msgs"], flush=True)
"#;
    fake_mta(SCRIPT, &[&messages.to_string()])
}

/// The counting MTA's result, once it has finished: the most connections open at once and
/// the messages it took.
fn counting_result(mta: PyChild) -> (usize, usize) {
    let text = mta.finish(Duration::from_secs(40), "counting MTA");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!((words[0], words[2]), ("max", "msgs"), "{text}");
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

/// `delivery.per_ip` caps the connections to one address across domains; without a tight cap
/// the same load runs in parallel (the control that shows the test can fail).
#[test]
fn per_ip_limit_caps_connections_to_one_address() {
    for (per_ip, expect_max) in [(1usize, 1usize), (8, 2)] {
        let (mta, port) = counting_mta(6);
        let tx = TestServer::start_domains(
            &["example.test"],
            &[USER],
            &format!(
                "{FAST_AUTH}[delivery]\nretry = [\"1s\"]\nper_ip = {per_ip}\nconnect_timeout_secs = 3\n{}{}",
                route("a.test", port),
                route("b.test", port)
            ),
        );
        // Each message to both domains, so their deliveries are due at the same moment.
        for i in 0..3 {
            submit(&tx, &format!("x{i}@a.test,y{i}@b.test"), "to a and b");
        }
        tx.wait_queue_empty(Duration::from_secs(30));
        let (max, msgs) = counting_result(mta);
        assert_eq!(msgs, 6);
        if per_ip == 1 {
            assert_eq!(max, expect_max, "per_ip = 1");
        } else {
            assert!(max >= expect_max, "per_ip = {per_ip}: max {max}");
        }
    }
}

/// An MTA-STS delivery: a receiving hato serving a policy for `sts.remote.test`, the DNS that
/// publishes it and a sending hato with one message for bob@sts.remote.test. (Bind every field:
/// the DNS server and the certificates must last as long as the servers.)
struct Sts {
    rx: TestServer,
    tx: TestServer,
    _dns: DnsServer,
    _certs: tempfile::TempDir,
}

/// The receiving hato serves an MTA-STS policy (`mode`, listing `policy_mx`) for
/// `sts.remote.test` over its own https listener, with a certificate from a test CA for
/// `names`; the DNS publishes it: TXT with the id `hato dns` prints, `mta-sts.sts.remote.test`
/// → 127.0.0.1, MX → mx.remote.test. The sending hato trusts the CA and submits one message
/// with `subject`.
fn sts_delivery(mode: &str, policy_mx: &str, names: &[&str], subject: &str) -> Sts {
    let certs = tempfile::tempdir().unwrap();
    let (ca, leaf, key) = make_ca_and_leaf(certs.path(), "sts", names);
    let https = free_port();
    let rx = TestServer::start_domains(
        &["sts.remote.test"],
        &["bob@sts.remote.test"],
        &format!(
            "{}{FAST_AUTH}[mta_sts]\nmode = \"{mode}\"\nmx = [\"{policy_mx}\"]\n\
             [[listener]]\nprotocol = \"https\"\nbind = \"127.0.0.1:{https}\"\ntls = \"implicit\"\n",
            tls_config(&leaf, &key)
        ),
    );
    let printed = rx.cli(&["dns", "--domain", "sts.remote.test"], None);
    let id = printed
        .stdout
        .lines()
        .find(|l| l.starts_with("_mta-sts.sts.remote.test."))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("no _mta-sts record in:\n{}", printed.all()))
        .to_owned();
    let dns = start_dns_with(vec![
        mx("sts.remote.test", 10, "mx.remote.test"),
        txt("_mta-sts.sts.remote.test", &id),
        a("mta-sts.sts.remote.test", "127.0.0.1"),
    ]);
    let tx = sender(
        rx.ports.smtp,
        Some(dns.addr()),
        &format!("mta_sts_port = {https}\n{}", ca_file(&ca)),
    );
    submit(&tx, "bob@sts.remote.test", subject);
    Sts {
        rx,
        tx,
        _dns: dns,
        _certs: certs,
    }
}

/// MTA-STS end to end: hato serves its policy over HTTPS, another hato fetches it, delivers
/// only to listed MX hosts over verified TLS, and records that MTA-STS verified it.
#[test]
fn mta_sts_enforce_end_to_end() {
    let Sts {
        rx,
        tx,
        _dns,
        _certs,
    } = sts_delivery("enforce", "mx.remote.test", MX_NAMES, "via sts");
    rx.wait_inbox("bob@sts.remote.test", 1, Duration::from_secs(20));
    tx.wait_for_log("MTA-STS", Duration::from_secs(10));
    let log = tx.logs();
    assert!(
        log.contains("verified (MTA-STS)") || log.contains("MTA-STS"),
        "{log}"
    );
    // The policy is cached in the store (it used to be a file under data_dir/mta-sts).
    let key = hato::shared_state::StorePolicyCache::key("sts.remote.test");
    let key_ref = key.as_str();
    let cached = tx.with_store(|store| async move {
        use hato_store::SharedState;
        store
            .cache_get(key_ref, hato_wire::date::unix_now())
            .await
            .unwrap()
    });
    assert!(
        cached.is_some_and(|c| c.starts_with(b"hato-mta-sts-cache")),
        "no cached policy in the store under {key}"
    );
}

/// An enforce policy that does not list the MX host: the message waits (4.7.5), never sent.
#[test]
fn mta_sts_enforce_refuses_an_unlisted_mx() {
    let unlisted = "elsewhere.remote.test";
    let Sts {
        rx,
        tx,
        _dns,
        _certs,
    } = sts_delivery("enforce", unlisted, MX_NAMES, "not to that mx");
    let error = tx
        .wait_deferred("a deferred attempt")
        .last_error
        .unwrap_or_default();
    assert!(
        error.contains("4.7.5") && error.contains("MTA-STS"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.inbox("bob@sts.remote.test").is_empty());
}

/// `encrypt` towards a server that does not offer STARTTLS: the message waits, nothing is
/// sent in plaintext (downgrade resistance).
#[test]
fn encrypt_defers_when_starttls_is_not_offered() {
    let mta = BrokenTlsMta::with_capabilities(1, "PIPELINING");
    let tx = routed_sender(mta.port, "tls_policy = \"encrypt\"\n");
    submit(&tx, BOB, "no starttls, no mail");
    let error = tx
        .wait_deferred("a deferred attempt")
        .last_error
        .unwrap_or_default();
    assert!(error.to_uppercase().contains("STARTTLS"), "{error}");
    let seen = mta.commands();
    assert!(!seen.contains("MAIL FROM"), "{seen}");
}

/// `verify`: a certificate from a trusted CA that does not name the MX host fails.
#[test]
fn verify_refuses_a_certificate_for_another_name() {
    let dns = start_dns_with(vec![
        mx("wrongname.remote.test", 10, "other.remote.test"),
        a("other.remote.test", "127.0.0.1"),
    ]);
    let certs = tempfile::tempdir().unwrap();
    let (rx, ca) = receiver_with_ca(
        certs.path(),
        "wrongname.remote.test",
        "bob@wrongname.remote.test",
    );
    let tx = sender(
        rx.ports.smtp,
        Some(dns.addr()),
        &format!("tls_policy = \"verify\"\n{}", ca_file(&ca)),
    );
    submit(&tx, "bob@wrongname.remote.test", "wrong name");
    let e = tx.wait_deferred("a deferred attempt");
    let tls = e.last_tls.clone().unwrap_or_default().to_lowercase();
    assert!(
        tls.contains("certificate") && (tls.contains("name") || tls.contains("notvalidforname")),
        "{tls}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.inbox("bob@wrongname.remote.test").is_empty());
}

/// The TLS-RPT counts stored for `domain` today (they used to be a journal file under
/// data_dir/tls-rpt): the domain, then each stored policy and result, one per line.
fn stored_tls_counts(db: &std::path::Path, domain: &str) -> String {
    let day = hato::shared_state::store_day(hato_delivery::tlsrpt::today());
    with_store(db, |store| async move {
        use hato_store::SharedState;
        let rows = store.tls_report_counts(day, domain).await.unwrap();
        rows.iter()
            .map(|r| format!("{} {} {}\n", r.domain, r.policy, r.result))
            .collect()
    })
}

/// TLS-RPT (RFC 8460): sessions to MX hosts are counted per day, and a complete day's report
/// goes to the `rua` of `_smtp._tls.<domain>` (here a local address) as multipart/report with
/// the gzipped JSON, once.
#[test]
fn tls_reports_are_recorded_and_sent() {
    use hato_delivery::tlsrpt::{self, PolicyDesc, SessionEvent, SessionResult};
    let dns = start_dns_with(vec![txt(
        "_smtp._tls.remote.test",
        "v=TLSRPTv1; rua=mailto:alice@example.test",
    )]);
    let rx = receiver("remote.test");
    // Yesterday's counts, as an earlier run of this server left them (in the store, where the
    // journal files under data_dir/tls-rpt used to be).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("hato.db");
    with_store(&db, |store| async {
        let store: Arc<dyn hato_store::Store> = Arc::new(store);
        let recorder = tlsrpt::Recorder::with_options(
            Arc::new(hato::shared_state::StoreReportLedger::new(store)),
            tlsrpt::RecorderOptions {
                flush_interval: None,
            },
        );
        let yesterday = tlsrpt::today().previous_day().unwrap();
        for _ in 0..3 {
            recorder.record(SessionEvent {
                policy_domain: "remote.test".into(),
                policy: PolicyDesc::no_policy_found(),
                day: yesterday,
                result: SessionResult::Success,
            });
        }
        recorder.flush().await.unwrap();
    });
    let tx = TestServer::start_in(
        dir,
        "",
        &format!(
            "{FAST_AUTH}[delivery]\nretry = [\"1s\"]\nport = {}\ntls_report_check_secs = 1\n\
             [dns]\nnameservers = [\"{}\"]\ntimeout_secs = 2\n",
            rx.ports.smtp,
            dns.addr()
        ),
    );
    // Today's session is recorded (and not reported before the day is over).
    submit(&tx, BOB, "counted");
    rx.wait_inbox(BOB, 1, Duration::from_secs(20));
    wait_until(
        "today's counts",
        Duration::from_secs(15),
        || stored_tls_counts(&db, "remote.test").contains("remote.test"),
        || tx.logs(),
    );
    // Yesterday's report arrives in alice's INBOX, once.
    let report = first_report(&tx);
    assert!(
        report.contains("TLS-Report-Domain: remote.test"),
        "{report}"
    );
    assert!(report.contains("report-type=\"tlsrpt\""), "{report}");
    assert!(report.contains("application/tlsrpt+gzip"), "{report}");
    assert!(report.contains("Return-Path: <>"), "{report}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(tx.inbox(USER).len(), 1, "sent once");
}

/// A 4xx to RCPT, then 2xx on the next attempt: retried on the schedule, delivered once; a
/// bounce without RET returns the whole message when `bounce_return = "full"`.
#[test]
fn temporary_failure_then_success_and_full_bounces() {
    let mta = BrokenTlsMta::with_capabilities(2, "TEMPFAIL_ONCE");
    let tx = routed_sender(mta.port, "bounce_return = \"full\"\n");
    submit(&tx, BOB, "second time lucky");
    tx.wait_queue_empty(Duration::from_secs(20));
    let seen = mta.commands();
    assert_eq!(
        seen.matches("RCPT TO:<bob@remote.test>").count(),
        2,
        "{seen}"
    );
    assert_eq!(
        seen.matches("DATA| Subject: second time lucky").count(),
        1,
        "{seen}"
    );
    assert!(tx.inbox(USER).is_empty(), "no bounce, no delay notice");

    // A permanent failure: the bounce carries the message (no RET given, bounce_return full).
    let dns = start_dns();
    let rx = receiver("remote.test");
    let tx = sender(
        rx.ports.smtp,
        Some(dns.addr()),
        "bounce_return = \"full\"\n",
    );
    submit(&tx, "nobody@remote.test", "return all of it");
    let inbox = tx.wait_inbox(USER, 1, Duration::from_secs(20));
    assert!(inbox[0].contains("message/rfc822"), "{}", inbox[0]);
    assert!(
        inbox[0].contains("Hello from the delivery test."),
        "{}",
        inbox[0]
    );
}

/// MTA-STS `testing`: a certificate that would fail under enforce (it does not name the MX)
/// does not stop the mail, and the failure goes to the TLS report as certificate-host-mismatch.
#[test]
fn mta_sts_testing_delivers_and_reports() {
    let names = ["localhost", "mta-sts.sts.remote.test"];
    let Sts {
        rx,
        tx,
        _dns,
        _certs,
    } = sts_delivery("testing", "mx.remote.test", &names, "testing mode");
    rx.wait_inbox("bob@sts.remote.test", 1, Duration::from_secs(20));
    assert!(tx.logs().contains("MTA-STS testing"), "{}", tx.logs());
    wait_until(
        "the failure in the TLS report counts",
        Duration::from_secs(15),
        || {
            let t = stored_tls_counts(&tx.db(), "sts.remote.test");
            t.contains("certificate-host-mismatch") && t.contains("sts.remote.test")
        },
        || tx.logs(),
    );
}

/// The Received header names the client by its forward-confirmed reverse DNS name. The
/// resolver answers 127.0.0.0/8 without the network (/etc/hosts, else RFC 6761: every such
/// PTR is `localhost`, which resolves to 127.0.0.1 only), so 127.0.0.1 is confirmed and
/// 127.0.0.3 is not.
#[test]
fn received_header_has_the_reverse_name() {
    // A greeting delay leaves the lookup time to finish before the message.
    let rx = TestServer::start_with("greeting_delay_ms = 300\n", "");
    const SCRIPT: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20, source_address=(sys.argv[3], 0))
s.sendmail("someone@elsewhere.example", [sys.argv[2]], "Subject: rdns\r\n\r\nhi\r\n")
s.quit()
"#;
    let port = rx.ports.smtp.to_string();
    python(SCRIPT, &[&port, USER, "127.0.0.1"]).assert_ok();
    python(SCRIPT, &[&port, USER, "127.0.0.3"]).assert_ok();
    let inbox = rx.wait_inbox(USER, 2, Duration::from_secs(10));
    // The name depends on /etc/hosts (read first: `localhost`, or the machine's name).
    let confirmed = received(&inbox[0]);
    assert!(
        confirmed.contains(" [127.0.0.1])") && !confirmed.contains(" ([127.0.0.1])"),
        "{confirmed}"
    );
    let unconfirmed = received(&inbox[1]);
    assert!(
        unconfirmed.contains(" ([127.0.0.3])"),
        "PTR not confirmed: {unconfirmed}"
    );
}

/// A large message leaves in pieces read from the store as they are sent (never whole in
/// memory) and arrives exactly as submitted, dot-stuffed lines and all.
#[test]
fn a_large_message_is_sent_in_pieces_intact() {
    const SCRIPT: &str = r#"
to = sys.argv[4]
body = "".join(".line %d %s\r\n" % (i, "w" * (i % 300)) for i in range(12000))
msg = "From: %s\r\nTo: %s\r\nSubject: big one\r\n\r\n%s" % (user, to, body)
open(sys.argv[5], "w", newline="").write(msg)
s = login()
s.sendmail(user, [to], msg)
s.quit()
"#;
    let rx = receiver("partner.test");
    let tx = sender(free_port(), None, &route("partner.test", rx.ports.smtp));
    let sent = tx.dir.path().join("sent.eml");
    python_submit(&tx, SCRIPT, &["bob@partner.test", sent.to_str().unwrap()]).assert_ok();
    let inbox = rx.wait_inbox("bob@partner.test", 1, Duration::from_secs(30));
    let sent = std::fs::read_to_string(&sent).unwrap();
    assert!(sent.len() > 1_500_000, "{}", sent.len());
    assert!(inbox[0].ends_with(&sent), "the message arrived changed");
}
