//! Smarthost mode and `relay_networks`, end to end with two real hato processes: a "provider"
//! (submission with AUTH, `delivery.hold = true` so relayed mail stays in its queue) and the
//! sending hato whose `[delivery.smarthost]` points at the provider's submission listener.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const BOB: &str = "bob@anywhere.example";

/// The provider: the standard test server (account USER), outbound on hold.
fn provider() -> TestServer {
    TestServer::start()
}

/// The sender: smarthost = the provider's submission listener for `tls` (`starttls` or
/// `implicit`), credentials from a password file. With `ca_file` the provider's certificate is
/// verified against it, for the name `localhost`; without, the smarthost is `[127.0.0.1]`.
fn sender(provider: &TestServer, tls: &str, password: &str, ca: Option<&Path>) -> TestServer {
    let port = match tls {
        "implicit" => provider.ports.submissions,
        _ => provider.ports.submission,
    };
    let (host, more) = match ca {
        Some(ca) => ("localhost", ca_file(ca)),
        None => ("[127.0.0.1]", String::new()),
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("smarthost.password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let extra = format!(
        "{FAST_AUTH}[delivery]\nretry = [\"1h\"]\n[delivery.smarthost]\nhost = \"{host}:{port}\"\n\
         tls = \"{tls}\"\nusername = \"{USER}\"\npassword_file = \"{}\"\n{more}",
        pw.display()
    );
    TestServer::start_in(dir, "", &extra)
}

/// Mail for a remote domain goes to the provider, which authenticates us and queues it.
fn relayed_through(provider: &TestServer, tx: &TestServer, subject: &str) {
    submit(tx, BOB, subject);
    wait_until(
        "the provider queued the message",
        Duration::from_secs(30),
        || provider.queue().iter().any(|e| e.recipient == BOB),
        || format!("sender:\n{}\nprovider:\n{}", tx.logs(), provider.logs()),
    );
    tx.wait_queue_empty(Duration::from_secs(10));
    let q = provider.queue();
    let entry = q.iter().find(|e| e.recipient == BOB).unwrap();
    assert_eq!(entry.sender, USER);
    let msg = provider.blob(entry.blob).expect("queued copy");
    assert!(msg.contains(&format!("Subject: {subject}")), "{msg}");
    // The provider's own Received header (the first): authenticated, under TLS.
    let received = received(&msg);
    assert!(received_with(&received, "ESMTPSA"), "{received}");
    assert!(received.contains("using TLS"), "{received}");
}

/// Waits until an attempt was recorded; the error of the first queue entry.
fn first_error(tx: &TestServer) -> String {
    tx.wait_queue("an attempt was recorded", Duration::from_secs(30), |q| {
        q.iter().any(|e| e.attempts > 0)
    });
    tx.queue()[0].last_error.clone().unwrap_or_default()
}

#[test]
fn smarthost_starttls_with_auth() {
    let provider = provider();
    let tx = sender(&provider, "starttls", PASSWORD, None);
    // Unverified (no ca_file): a loud warning at start-up.
    tx.wait_for_log("SMARTHOST CERTIFICATE NOT VERIFIED", Duration::from_secs(5));
    relayed_through(&provider, &tx, "via starttls");
    provider.wait_for_log("AUTH ok", Duration::from_secs(5));
}

#[test]
fn smarthost_implicit_tls() {
    let provider = provider();
    let tx = sender(&provider, "implicit", PASSWORD, None);
    relayed_through(&provider, &tx, "via implicit TLS");
}

#[test]
fn smarthost_verified_with_ca_file() {
    let provider = provider();
    let ca = provider.cert();
    let tx = sender(&provider, "starttls", PASSWORD, Some(&ca));
    relayed_through(&provider, &tx, "verified");
    let logs = tx.logs();
    assert!(
        !logs.contains("SMARTHOST CERTIFICATE NOT VERIFIED"),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("delivery attempt") && l.contains(" verified")),
        "{logs}"
    );
}

#[test]
fn smarthost_wrong_ca_sends_no_credentials() {
    let provider = provider();
    let dir = tempfile::tempdir().unwrap();
    let (other_ca, _) = make_cert(dir.path(), "other", &["localhost"], 30);
    let tx = sender(&provider, "starttls", PASSWORD, Some(&other_ca));
    submit(&tx, BOB, "wrong ca");
    let error = first_error(&tx);
    assert!(error.contains("TLS"), "{error}");
    assert!(provider.queue().is_empty());
    let plogs = provider.logs();
    assert!(!plogs.contains("AUTH"), "{plogs}");
}

#[test]
fn smarthost_wrong_password_stays_queued() {
    let provider = provider();
    let tx = sender(&provider, "starttls", "not the password", None);
    submit(&tx, BOB, "wrong password");
    let error = first_error(&tx);
    let q = tx.queue();
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(error.starts_with("535"), "{error}");
    assert!(provider.queue().is_empty());
    // No bounce to the sender: still queued, nothing in the INBOX.
    std::thread::sleep(Duration::from_millis(500));
    assert!(tx.inbox(USER).is_empty(), "{:?}", tx.inbox(USER));
    assert_eq!(tx.queue().len(), 1);
    assert!(tx.logs().contains("SMARTHOST REFUSED OUR CREDENTIALS"));
}

#[test]
fn smarthost_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert_config_errors(
        dir.path(),
        &[
            (
                "[delivery.smarthost]\nhost = \"smtp.provider.example:587\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\n",
                "never sent without TLS",
            ),
            (
                "[delivery.smarthost]\nhost = \"smtp.provider.example:587\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n",
                "password_file",
            ),
        ],
    );
}

/// An SMTP transaction on the `smtp` listener without AUTH and without TLS (a printer).
fn printer_send(port: u16, rcpt: &str) -> String {
    let mut r = Raw::hello(port, "printer.lan");
    r.expect("MAIL FROM:<scanner@printer.lan>", "250");
    let reply = r.cmd(&format!("RCPT TO:<{rcpt}>"));
    if reply.starts_with("250") {
        r.expect("DATA", "354");
        r.expect(
            "Subject: scan\r\nFrom: scanner@printer.lan\r\n\r\nscanned page\r\n.",
            "250",
        );
    }
    let _ = r.cmd("QUIT");
    reply
}

/// The standard test server with `relay_networks = [NETWORKS]`.
fn relaying_for(networks: &str) -> TestServer {
    TestServer::start_with("", &format!("relay_networks = [{networks}]\n{FAST_AUTH}"))
}

#[test]
fn relay_networks_allow_printers() {
    let s = relaying_for(r#""10.0.0.5", "127.0.0.0/8""#);
    let reply = printer_send(s.ports.smtp, BOB);
    assert!(reply.starts_with("250"), "{reply}");
    wait_until(
        "the relayed message is queued",
        Duration::from_secs(5),
        || s.queue().iter().any(|e| e.recipient == BOB),
        || s.logs(),
    );
    s.wait_for_log("relay permitted by relay_networks", Duration::from_secs(5));
    // Submission still wants AUTH, whatever the network.
    let mut r = Raw::hello(s.ports.submission, "printer.lan");
    r.expect("STARTTLS", "220");
}

#[test]
fn relay_networks_not_covering_the_client_refuse() {
    let s = relaying_for(r#""192.168.0.0/24", "10.0.0.5""#);
    let reply = printer_send(s.ports.smtp, BOB);
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    assert!(s.queue().is_empty());
    // Local recipients are unaffected.
    let reply = printer_send(s.ports.smtp, USER);
    assert!(reply.starts_with("250"), "{reply}");
    assert!(!s.logs().contains("relay permitted by relay_networks"));
}

#[test]
fn without_relay_networks_never_an_open_relay() {
    let s = TestServer::start();
    let reply = printer_send(s.ports.smtp, BOB);
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
}
