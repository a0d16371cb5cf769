//! "250 OK after DATA means the message is on disk": kill -9 the server while 8 clients send, then
//! check that every acknowledged message is stored exactly once and complete.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// 8 threads send over the MX port (plaintext) until the stop file appears; each token whose DATA got
/// a 250 is appended to the ack file right after the reply, before anything else happens.
const SENDERS: &str = r#"
import os, smtplib, sys, threading, time
port, ack_path, stop_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
ack = open(ack_path, "a")
def message(tok, n):
    lines = ["From: <load@outside.example>", "To: <alice@example.test>", "Subject: " + tok, ""]
    for i in range(40 + (n * 37) % 160):
        lines.append("%s line %d %s" % (tok, i, "x" * 64))
    lines.append("END " + tok)
    return "\r\n".join(lines) + "\r\n"
def worker(t):
    n = 0
    while not os.path.exists(stop_path):
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=5)
            s.ehlo("load%d.example" % t)
            while not os.path.exists(stop_path):
                tok = "tok-%d-%d" % (t, n)
                n += 1
                s.sendmail("load@outside.example", ["alice@example.test"], message(tok, n))
                with lock:
                    ack.write(tok + "\n")
                    ack.flush()
        except Exception:
            time.sleep(0.02)
threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join()
print("done")
"#;

fn acked(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let mut server = TestServer::start();
    let ack_path = server.dir.path().join("acked.txt");
    let stop_path = server.dir.path().join("stop");
    let mut senders = python_cmd(SENDERS, &[&server.ports.smtp.to_string()])
        .arg(&ack_path)
        .arg(&stop_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");

    // Kill mid-stream: after ~1.5 s or 100 acknowledgements, whichever comes first (but after at least one).
    let start = Instant::now();
    loop {
        let n = acked(&ack_path).len();
        if n >= 100 || (n > 0 && start.elapsed() > Duration::from_millis(1500)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no message acknowledged within 20 s: {}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    std::fs::write(&stop_path, "").unwrap();
    let status = wait_exit(&mut senders, Duration::from_secs(30), "the Python senders");
    assert!(status.success(), "senders failed");

    let acked = acked(&ack_path);
    assert!(!acked.is_empty());
    eprintln!("killed after {} acknowledged messages", acked.len());
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a token was acknowledged twice");

    // Opening the store after the crash recovers it; every stored message is whole.
    let inbox = server.inbox(USER);
    let mut stored: HashMap<String, usize> = HashMap::new();
    for m in &inbox {
        let subject = header_values(m, "Subject");
        assert_eq!(subject.len(), 1, "{m:?}");
        let tok = subject[0].clone();
        assert!(
            m.ends_with(&format!("\r\nEND {tok}\r\n")),
            "stored message {tok} is incomplete: ...{:?}",
            &m[m.len().saturating_sub(200)..]
        );
        assert!(m.starts_with("Return-Path: <load@outside.example>\r\nReceived: "));
        *stored.entry(tok).or_default() += 1;
    }
    let duplicates: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "stored more than once: {duplicates:?}"
    );
    eprintln!("{} messages stored", inbox.len());
    let lost: Vec<&String> = acked.iter().filter(|t| !stored.contains_key(*t)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost after kill -9: {lost:?}",
        lost.len(),
        acked.len()
    );

    // The server starts again on the same data and keeps working.
    server.spawn();
    let mut c = Raw::hello(server.ports.smtp, "after.example");
    c.deliver(
        "after@outside.example",
        USER,
        "Subject: after the crash\r\n\r\nstill here\r\n",
    );
    c.expect("QUIT", "221");
    assert_eq!(server.inbox(USER).len(), inbox.len() + 1);
}

/// A message whose data is arriving when the server stops may finish for a few seconds: it
/// is stored and acknowledged, and only then does the session get its 421.
#[test]
fn sigterm_lets_the_message_being_sent_finish() {
    let mut server = TestServer::start();
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.envelope("someone@outside.example", USER);
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    signal(server.pid(), "TERM");
    assert_eq!(
        c.silent(Duration::from_secs(1)),
        "",
        "nothing said mid-message"
    );
    let r = c.data("second half\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r:?}");
    let (all, _) = c.until_closed(Duration::from_secs(8));
    assert!(all.starts_with("421 4.3.2"), "{all:?}");
    let status = server.wait_exit(Duration::from_secs(12), "hato did not exit after SIGTERM");
    assert!(status.success(), "{status}\n{}", server.logs());
    server.spawn();
    let inbox = server.inbox(USER);
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].contains("first half\r\nsecond half\r\n"),
        "{}",
        inbox[0]
    );
}

#[test]
fn sigterm_tells_sessions_421_and_exits_cleanly() {
    let mut server = TestServer::start();
    let mut c = Raw::hello(server.ports.smtp, "client.example");
    c.expect("MAIL FROM:<someone@outside.example>", "250");
    signal(server.pid(), "TERM");
    let (all, took) = c.until_closed(Duration::from_secs(8));
    assert!(all.starts_with("421 4.3.2"), "{all:?}");
    assert!(
        took < Duration::from_secs(5),
        "session not ended for {took:?}"
    );
    // New connections are refused, and the process exits with success.
    let status = server.wait_exit(Duration::from_secs(12), "hato did not exit after SIGTERM");
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        server.logs()
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.ports.smtp)).is_err());
    // Restart on the same data.
    server.spawn();
    Raw::hello(server.ports.smtp, "again.example");
}
