//! Dovecot's imaptest (tools/imaptest, MIT) against the real server over implicit TLS: its 71
//! scripted test groups with no failure, and a stress run of random commands from several
//! clients without a protocol error. A third party's judge of IMAP, as issue 14 asks.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// The imaptest binary: `HATO_IMAPTEST`, or where `.ci/run` builds it.
fn imaptest() -> PathBuf {
    let bin = std::env::var_os("HATO_IMAPTEST")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/imaptest/src/imaptest")
        });
    assert!(
        bin.exists(),
        "this test needs imaptest at {}: build it with `sudo tools/imaptest/build.sh target/imaptest` \
         (.ci/run does), or set HATO_IMAPTEST to the binary",
        bin.display()
    );
    bin
}

fn run(server: &TestServer, extra: &[String]) -> String {
    let mut args = vec![
        "host=127.0.0.1".to_string(),
        format!("port={}", server.ports.imaps),
        "ssl=any-cert".to_string(),
        format!("user={USER}"),
        format!("pass={PASSWORD}"),
    ];
    args.extend(extra.iter().cloned());
    let out = Command::new(imaptest())
        .args(&args)
        .output()
        .expect("running imaptest");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn imaptest_scripts_all_pass() {
    let server = TestServer::start();
    let tests = imaptest().parent().unwrap().join("tests");
    let out = run(&server, &[format!("test={}", tests.display())]);
    let summary = out
        .lines()
        .find(|l| l.contains("test groups:"))
        .unwrap_or_else(|| panic!("no summary from imaptest:\n{out}"));
    assert!(summary.contains(" 0 failed"), "{summary}\n{out}");
    assert!(
        out.contains("base protocol: 0/") && out.contains("extensions: 0/"),
        "{out}"
    );
}

/// Random commands (LIST, STATUS, SELECT, FETCH, STORE with keywords, EXPUNGE, APPEND) from
/// five clients at once on one mailbox for eight seconds: imaptest checks every response
/// against what it knows of the mailbox and reports each inconsistency as an error.
#[test]
fn imaptest_stress_finds_no_error() {
    let server = TestServer::start();
    let mbox = server.dir.path().join("stress.mbox");
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "From sender{i}@example.org Mon Dec  7 10:00:00 2026\nFrom: Sender {i} <sender{i}@example.org>\n\
             To: {USER}\nSubject: stress {i}\nDate: Mon, 7 Dec 2026 10:{:02}:00 +0000\nMessage-ID: <s{i}@example.org>\n\n",
            i % 60
        ));
        for j in 0..(i % 30 + 1) {
            text.push_str(&format!("line {j} of message {i}\n"));
        }
        text.push('\n');
    }
    std::fs::write(&mbox, text).unwrap();
    let out = run(
        &server,
        &[
            format!("mbox={}", mbox.display()),
            "clients=5".into(),
            "secs=8".into(),
        ],
    );
    assert!(out.contains("Totals:"), "imaptest did not finish:\n{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("Error:")).collect();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}
