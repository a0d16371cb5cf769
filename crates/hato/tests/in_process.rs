//! The server as a library call: `app::Server::bind` then `run_until(shutdown)` in the test's
//! own runtime, with real sockets and Python's smtplib as the client. Shows the embedding path
//! the integration tests may use instead of spawning the binary.

use std::sync::Arc;
use std::time::Duration;

use hato::app::Server;
use hato::config::{Config, Protocol};
use hato_store::sqlite::SqliteStore;
use hato_store::{Directory, Mailstore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_in_process_and_stops_on_the_shutdown_future() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
hostname = "mail.example.test"
domains = ["example.test"]
data_dir = "{}"

[[listener]]
protocol = "smtp"
bind = "127.0.0.1:0"
tls = "none"
greeting_delay_ms = 0

[delivery]
hold = true
"#,
        dir.path().display()
    );
    let config = Config::parse(&text, &dir.path().join("hato.toml")).unwrap();
    let store = Arc::new(SqliteStore::open(&config.db_path()).unwrap());
    let hash = hato::auth::hash_password("secret").unwrap();
    store
        .create_account("alice@example.test", &hash)
        .await
        .unwrap();
    let server = Server::bind(config, store.clone(), None).await.unwrap();
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].0, Protocol::Smtp);
    let port = addrs[0].1.port();
    assert_ne!(port, 0, "the bound port is reported");
    let metrics = server.metrics();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until(async {
        let _ = stop_rx.await;
    }));

    // A real client: smtplib over TCP.
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=10)
s.ehlo("client.example")
s.sendmail("someone@outside.example", ["alice@example.test"],
           "Subject: in-process\r\n\r\nhello from the library\r\n")
s.quit()
print("sent")
"#
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .expect("python3 is needed (apt-get install python3)");
    assert!(
        out.status.success(),
        "smtplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let account = store.account("alice@example.test").await.unwrap().unwrap();
    let inbox = store
        .mailbox_by_name(account.id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    let messages = store.messages(inbox.id).await.unwrap();
    assert_eq!(messages.len(), 1);
    let data = store
        .message_data(inbox.id, messages[0].uid)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("hello from the library"), "{text}");
    assert!(text.contains("Received: from client.example"), "{text}");

    // The metrics hook counted the connection and the message, in Prometheus text format.
    let exposition = metrics.render();
    for (series, value) in [
        (r#"hato_connections_total{service="smtp",tls="none"}"#, 1.0),
        (r#"hato_messages_accepted_total{service="smtp"}"#, 1.0),
        (r#"hato_recipients_accepted_total{service="smtp"}"#, 1.0),
    ] {
        assert_eq!(
            sample(&exposition, series),
            Some(value),
            "{series} in:\n{exposition}"
        );
    }
    assert!(
        exposition.contains("# TYPE hato_connections_total counter"),
        "{exposition}"
    );

    // The shutdown future stops the listeners and returns.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the server stops after the shutdown future")
        .unwrap()
        .unwrap();
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "nothing listens after shutdown");
}

/// The value of one series in a Prometheus text exposition.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
