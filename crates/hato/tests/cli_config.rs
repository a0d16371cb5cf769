//! The command line (accounts, aliases, --config anywhere / HATO_CONFIG), start-up validation of the
//! configuration and certificates, the zero-configuration instance, and certificate reload.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn hato(args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("HATO_CONFIG");
    run(cmd, stdin)
}

fn assert_fails(out: &CmdOutput, needles: &[&str]) {
    assert!(!out.status.success(), "should have failed:\n{}", out.all());
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "error does not mention {n:?}:\n{}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts and aliases.

/// `hato user COMMAND ADDRESS --password-stdin` on `server`, `password` on stdin.
fn user(server: &TestServer, command: &str, address: &str, password: &str) -> CmdOutput {
    server.cli(
        &["user", command, address, "--password-stdin"],
        Some(password),
    )
}

/// `hato alias ARGS` on `server`.
fn alias(server: &TestServer, args: &[&str]) -> CmdOutput {
    server.cli(&[&["alias"], args].concat(), None)
}

/// Asserts that the command succeeded and printed `expect`.
fn assert_prints(out: &CmdOutput, expect: &str) {
    out.assert_ok();
    assert!(out.stdout.contains(expect), "{}", out.all());
}

#[test]
fn user_and_alias_commands() {
    let server = TestServer::start();
    let out = user(&server, "add", "bob@example.test", "bob pw 1\n");
    assert_prints(&out, "created bob@example.test");
    // Addresses are normalised.
    user(&server, "add", "Carol@EXAMPLE.test", "carol pw").assert_ok();
    let list = server.cli(&["user", "list"], None);
    list.assert_ok();
    let mut names: Vec<&str> = list.stdout.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "alice@example.test",
            "bob@example.test",
            "carol@example.test"
        ]
    );

    // Duplicates are refused with a clear message, also in another case.
    for dup in ["bob@example.test", "BOB@example.test"] {
        let out = user(&server, "add", dup, "x");
        assert_fails(&out, &["bob@example.test", "already exists"]);
    }
    let out = user(&server, "add", "not-an-address", "x");
    assert_fails(&out, &["not-an-address", "not a valid address"]);
    assert_fails(&user(&server, "add", "dave@example.test", "\n"), &["empty"]);
    let out = user(&server, "add", "erin@elsewhere.example", "pw");
    out.assert_ok();
    assert!(
        out.stderr.contains("not one of the local domains"),
        "{}",
        out.all()
    );

    // passwd: the running server uses the new password at once (and forgets the old one, even if
    // it verified it recently).
    let login = |pw: &str| {
        let auth = auth_plain_cmd("bob@example.test", pw);
        smtp_conv(server.ports.submissions, true, &["EHLO cli.example", &auth])
    };
    assert_replies(&login("bob pw 1"), &["220", "250", "235 2.7.0"]);
    let out = user(&server, "passwd", "bob@example.test", "bob pw 2\n");
    assert_prints(&out, "password changed");
    assert_replies(&login("bob pw 2"), &["220", "250", "235 2.7.0"]);
    assert_replies(&login("bob pw 1"), &["220", "250", "535 5.7.8"]);
    let out = user(&server, "passwd", "nobody@example.test", "x");
    assert_fails(&out, &["no account nobody@example.test"]);

    // Aliases.
    let out = alias(&server, &["add", "sales@example.test", "bob@example.test"]);
    assert_prints(&out, "sales@example.test -> bob@example.test");
    let out = alias(
        &server,
        &["add", "sales@example.test", "alice@example.test"],
    );
    assert_fails(&out, &["sales@example.test"]);
    let out = alias(&server, &["add", "alice@example.test", "bob@example.test"]);
    assert_fails(&out, &["alice@example.test"]);
    let out = alias(&server, &["add", "info@example.test", "ghost@example.test"]);
    assert_fails(&out, &["ghost@example.test"]);
    let list = alias(&server, &["list"]);
    list.assert_ok();
    assert_eq!(list.stdout.trim(), "sales@example.test -> bob@example.test");
    // Mail to the alias reaches bob while the server runs.
    let mut c = Raw::hello(server.ports.smtp, "cli.example");
    c.deliver(
        "x@outside.example",
        "Sales@Example.Test",
        "Subject: for sales\r\n\r\nhi\r\n",
    );
    c.expect("QUIT", "221");
    assert_eq!(server.inbox("bob@example.test").len(), 1);

    let out = alias(&server, &["del", "sales@example.test"]);
    assert_prints(&out, "removed sales@example.test");
    assert_eq!(alias(&server, &["list"]).stdout.trim(), "");
    let out = alias(&server, &["del", "sales@example.test"]);
    assert_fails(&out, &["no alias"]);

    // del: the account is gone, and refused at RCPT.
    let out = server.cli(&["user", "del", "bob@example.test"], None);
    assert_prints(&out, "deleted bob@example.test");
    let list = server.cli(&["user", "list"], None);
    assert!(!list.stdout.contains("bob@"), "{}", list.stdout);
    assert_fails(
        &server.cli(&["user", "del", "bob@example.test"], None),
        &["no account"],
    );
    let mut c = Raw::hello(server.ports.smtp, "cli.example");
    c.expect("MAIL FROM:<x@outside.example>", "250");
    c.expect("RCPT TO:<bob@example.test>", "550 5.1.1");
}

#[test]
fn config_anywhere_and_from_environment() {
    let server = TestServer::start();
    let cfg = server.config.to_str().unwrap();
    let out = hato(&["user", "list", "--config", cfg], None);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), USER);
    let out = hato(&["user", "--config", cfg, "list"], None);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), USER);
    let mut cmd = Command::new(BIN);
    cmd.args(["user", "list"]).env("HATO_CONFIG", cfg);
    let out = run(cmd, None);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), USER);
    let mut cmd = Command::new(BIN);
    cmd.args(["alias", "add", "team@example.test", USER])
        .env("HATO_CONFIG", cfg);
    run(cmd, None).assert_ok();
    let out = hato(&["alias", "list", "-c", cfg], None);
    assert_eq!(out.stdout.trim(), "team@example.test -> alice@example.test");
}

// ---------------------------------------------------------------------------------------------
// Start-up validation.

/// `hato --config F serve` must exit non-zero within a few seconds with one error line.
fn serve_fails(config: &Path) -> String {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("HATO_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "hato serve with a bad configuration",
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !status.success(),
        "hato started with a bad configuration:\n{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "slow to refuse: {:?}",
        start.elapsed()
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    assert!(errors[0].starts_with("hato: error: "), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("is running"),
        "announced before failing: {stdout}"
    );
    errors[0].to_owned()
}

/// [`serve_fails`] with a configuration in `dir` naming `cert` and `key`.
fn tls_serve_fails(dir: &Path, cert: &Path, key: &Path) -> String {
    serve_fails(&write_config(dir, &tls_config(cert, key)).0)
}

fn line_of(config: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn startup_refuses_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = write_config(dir.path(), "[limits]\nmax_recipient = 5\n");
    let err = serve_fails(&cfg);
    assert!(err.contains("max_recipient"), "{err}");
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!("line {}", line_of(&cfg, "max_recipient"))),
        "{err}"
    );
    // check-config says the same.
    let out = hato(&["--config", cfg.to_str().unwrap(), "check-config"], None);
    assert_fails(&out, &["max_recipient"]);
}

#[test]
fn startup_refuses_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = write_config(dir.path(), "[limits]\nmax_recipients = \"many\"\n");
    let err = serve_fails(&cfg);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!("line {}", line_of(&cfg, "max_recipients"))),
        "{err}"
    );
    assert!(err.contains("\"many\""), "{err}");
}

#[test]
fn startup_refuses_unreadable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-cert.pem");
    let (_, key) = make_cert(dir.path(), "real", &["localhost"], 30);
    let err = tls_serve_fails(dir.path(), &missing, &key);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    // A file that is not PEM.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let err = tls_serve_fails(dir.path(), &garbage, &key);
    assert!(err.contains(garbage.to_str().unwrap()), "{err}");
}

#[test]
fn startup_refuses_key_not_matching_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = make_cert(dir.path(), "a", &["localhost"], 30);
    let (_, key_b) = make_cert(dir.path(), "b", &["localhost"], 30);
    let err = tls_serve_fails(dir.path(), &cert_a, &key_b);
    assert!(err.contains(cert_a.to_str().unwrap()), "{err}");
    assert!(err.contains(key_b.to_str().unwrap()), "{err}");
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn startup_refuses_certificate_not_covering_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "other", &["other.example"], 30);
    let err = tls_serve_fails(dir.path(), &cert, &key);
    assert!(err.contains("hostname"), "{err}");
    assert!(err.contains("localhost"), "{err}");
    assert!(err.contains("other.example"), "{err}");
}

#[test]
fn startup_refuses_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_expired_cert(dir.path(), "old", &["localhost"]);
    let err = tls_serve_fails(dir.path(), &cert, &key);
    assert!(err.contains(cert.to_str().unwrap()), "{err}");
    assert!(err.contains("expired"), "{err}");
}

#[test]
fn startup_refuses_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let ports = Ports {
        submission: port,
        ..Ports::smtp_only()
    };
    let cfg = dir.path().join("hato.toml");
    std::fs::write(&cfg, config_text(dir.path(), &ports, "", "")).unwrap();
    let err = serve_fails(&cfg);
    assert!(err.contains("listener.bind"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    drop(busy);
}

#[test]
fn certificate_expiring_soon_starts_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "soon", &["localhost"], 5);
    let extra = format!("{}{FAST_AUTH}", tls_config(&cert, &key));
    let server = TestServer::start_in(dir, "", &extra);
    let logs = server.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("expires in"))
        .unwrap_or_else(|| panic!("no expiry warning:\n{logs}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(cert.to_str().unwrap()), "{warning}");
    assert!(
        warning.contains("4 day") || warning.contains("5 day"),
        "{warning}"
    );
    // And it serves that certificate.
    assert_eq!(served_cert(server.ports.submissions), pem(&cert));
}

#[test]
fn check_config_ok() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "good", &["localhost", "mail.example.test"], 90);
    let (cfg, ports) = write_config(dir.path(), &tls_config(&cert, &key));
    let out = hato(&["--config", cfg.to_str().unwrap(), "check-config"], None);
    out.assert_ok();
    assert!(out.stdout.contains("OK"), "{}", out.all());
    assert!(out.stdout.contains("3 listener"), "{}", out.all());
    // check-config does not start anything.
    TcpListener::bind(("127.0.0.1", ports.smtp)).expect("check-config bound a port");
    // The generated development certificate is fine too.
    let dir2 = tempfile::tempdir().unwrap();
    let (cfg2, _) = write_config(dir2.path(), "");
    let out = hato(&["check-config", "--config", cfg2.to_str().unwrap()], None);
    out.assert_ok();
    assert!(out.stdout.contains("OK"), "{}", out.all());
    // A DNSSEC trust anchor that cannot be read is named.
    let dir3 = tempfile::tempdir().unwrap();
    let anchor = dir3.path().join("anchor.keys");
    std::fs::write(&anchor, "this is not a DNSKEY record\n").unwrap();
    let (cfg3, _) = write_config(
        dir3.path(),
        &format!("[dns]\ntrust_anchor = \"{}\"\n", anchor.display()),
    );
    let out = hato(&["check-config", "--config", cfg3.to_str().unwrap()], None);
    assert!(!out.status.success(), "{}", out.all());
    assert!(out.all().contains("dns.trust_anchor"), "{}", out.all());
}

// ---------------------------------------------------------------------------------------------
// Zero configuration.

#[test]
fn zero_config_development_instance() {
    for port in [2525, 5587, 5465] {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            panic!(
                "this test runs `hato serve` without configuration, which needs 127.0.0.1:{port}: {e} \
                 (stop whatever uses the port)"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let stdout_path = dir.path().join("stdout.txt");
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("HATO_CONFIG")
        .env_remove("HATO_LOG")
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in [2525, 5587, 5465] {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = child.try_wait().unwrap() {
                panic!(
                    "hato serve exited with {s}: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "hato serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Let the summary reach the file.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&stdout_path)
        .unwrap()
        .contains("user add")
    {
        assert!(Instant::now() < deadline, "no summary");
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = dir.path().join("hato-data");
    assert!(data.join("tls/selfsigned-cert.pem").is_file());
    assert!(data.join("hato.db").is_file());

    // A user added with the CLI (same cwd, no config) is usable at once.
    let mut cmd = Command::new(BIN);
    cmd.args(["user", "add", "dev@localhost", "--password-stdin"])
        .current_dir(dir.path())
        .env_remove("HATO_CONFIG");
    run(cmd, Some("dev password")).assert_ok();
    let auth = auth_plain_cmd("dev@localhost", "dev password");
    let got = smtp_conv(5465, true, &["EHLO dev.example", &auth]);
    assert_replies(&got, &["220 localhost", "250", "235 2.7.0"]);

    // SIGTERM: a clean, quick exit.
    signal(child.id(), "TERM");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(15),
        "hato serve after SIGTERM",
    );
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}\n{stderr}");
    for needle in [
        "127.0.0.1:2525",
        "127.0.0.1:5587",
        "127.0.0.1:5465",
        "hato user add you@localhost",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    let warning = stderr
        .lines()
        .find(|l| l.contains("SELF-SIGNED"))
        .unwrap_or_else(|| panic!("no self-signed warning on stderr:\n{stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        !stdout.contains("SELF-SIGNED"),
        "the warning belongs on stderr"
    );
}

// ---------------------------------------------------------------------------------------------
// Certificate reload.

/// Replaces `cert`/`key` with the files `from_cert`/`from_key` atomically (rename).
fn install(from: &(PathBuf, PathBuf), cert: &Path, key: &Path) {
    let tmp_c = cert.with_extension("tmp");
    let tmp_k = key.with_extension("tmp");
    std::fs::copy(&from.0, &tmp_c).unwrap();
    std::fs::copy(&from.1, &tmp_k).unwrap();
    std::fs::rename(&tmp_k, key).unwrap();
    std::fs::rename(&tmp_c, cert).unwrap();
}

/// A TLS session opened before a reload, used after it (Python, implicit TLS).
struct OldSession(PyChild);

const OLD_SESSION: &str = r#"
import socket, sys, base64
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
f = s.makefile("rb")
def reply():
    text = b""
    while True:
        line = f.readline()
        text += line
        if len(line) < 4 or line[3:4] != b"-":
            return text.decode().split("\r\n")[-2] if text.endswith(b"\r\n") else text.decode()
print("CERT", "".join(ssl.DER_cert_to_PEM_cert(s.getpeercert(True)).split("\n")[1:-2]), flush=True)
print("GREETING", reply(), flush=True)
sys.stdin.readline()
def cmd(c):
    s.sendall(c.encode() + b"\r\n")
    return reply()
print("EHLO", cmd("EHLO old.example"), flush=True)
print("AUTH", cmd("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()), flush=True)
print("MAIL", cmd("MAIL FROM:<%s>" % user), flush=True)
print("RCPT", cmd("RCPT TO:<%s>" % user), flush=True)
print("DATA", cmd("DATA"), flush=True)
print("END", cmd("Subject: old session after reload\r\n\r\nstill works\r\n."), flush=True)
print("QUIT", cmd("QUIT"), flush=True)
"#;

impl OldSession {
    fn open(port: u16) -> (OldSession, String) {
        let script = format!("{PY_UNVERIFIED}{OLD_SESSION}");
        let mut py = PyChild::spawn(&script, &[&port.to_string(), USER, PASSWORD]);
        let line = py.line();
        let cert = line
            .strip_prefix("CERT ")
            .unwrap_or_else(|| panic!("old session: {line:?}"))
            .trim()
            .to_owned();
        let greeting = py.line();
        assert!(greeting.starts_with("GREETING 220"), "{greeting:?}");
        (OldSession(py), cert)
    }

    /// Runs a whole authenticated transaction on the old session; returns its log.
    fn finish(mut self) -> String {
        self.0.send("go\n");
        self.0.finish(Duration::from_secs(10), "old session")
    }
}

fn assert_old_session_works(log: &str) {
    for expect in [
        "EHLO 250 ",
        "AUTH 235 2.7.0",
        "MAIL 250 2.1.0",
        "RCPT 250 2.1.5",
        "DATA 354",
        "END 250 2.0.0",
        "QUIT 221",
    ] {
        assert!(
            log.lines().any(|l| l.starts_with(expect)),
            "old session: missing {expect:?}:\n{log}"
        );
    }
}

fn wait_for_cert(port: u16, want: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        if served_cert(port) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served after {wait:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server whose certificate files can be replaced, and a session opened before any reload.
struct Reload {
    server: TestServer,
    /// Where to make other certificates.
    certs: PathBuf,
    /// The files the server reads.
    cert: PathBuf,
    key: PathBuf,
    /// The first certificate (served now).
    old: String,
    session: OldSession,
}

fn reload_server(reload_check_secs: u64) -> Reload {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let first = make_cert(&certs, "first", &["localhost"], 30);
    let cert = dir.path().join("live-cert.pem");
    let key = dir.path().join("live-key.pem");
    install(&first, &cert, &key);
    let extra = format!(
        "{}reload_check_secs = {reload_check_secs}\n{FAST_AUTH}",
        tls_config(&cert, &key)
    );
    let server = TestServer::start_in(dir, "", &extra);
    let port = server.ports.submissions;
    let old = pem(&cert);
    assert_eq!(served_cert(port), old);
    let (session, seen) = OldSession::open(port);
    assert_eq!(seen, old);
    Reload {
        server,
        certs,
        cert,
        key,
        old,
        session,
    }
}

#[test]
fn certificate_reload_when_files_change() {
    let r = reload_server(1);
    let (server, certs, cert, key, old) = (&r.server, &r.certs, &r.cert, &r.key, r.old.as_str());
    let port = server.ports.submissions;

    let second = make_cert(certs, "second", &["localhost"], 60);
    install(&second, cert, key);
    let new = pem(cert);
    assert_ne!(new, old);
    wait_for_cert(port, &new, Duration::from_secs(10));
    // STARTTLS connections get it too.
    let out = s_client(server.ports.submission, true, &[], "quit\n");
    assert_eq!(first_pem_cert(&out.all()).as_deref(), Some(new.as_str()));

    assert_old_session_works(&r.session.finish());
    server.wait_for_log("certificates reloaded", Duration::from_secs(5));
}

#[test]
fn certificate_reload_on_sighup_keeps_old_set_on_failure() {
    // 0: no polling, only SIGHUP.
    let r = reload_server(0);
    let (server, certs, cert, key, old) = (&r.server, &r.certs, &r.cert, &r.key, r.old.as_str());
    let port = server.ports.submissions;
    let hup = || signal(server.pid(), "HUP");

    // A broken pair (key of another certificate): the reload fails, the old certificate stays.
    let second = make_cert(certs, "second", &["localhost"], 60);
    let third = make_cert(certs, "third", &["localhost"], 60);
    install(&(second.0.clone(), third.1.clone()), cert, key);
    hup();
    server.wait_for_log("certificate reload failed", Duration::from_secs(10));
    assert_eq!(served_cert(port), old);

    // A good pair, not noticed without SIGHUP (reload_check_secs = 0) ...
    install(&second, cert, key);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        served_cert(port),
        old,
        "reloaded without SIGHUP although reload_check_secs = 0"
    );
    // ... and served after it.
    hup();
    wait_for_cert(port, &pem(cert), Duration::from_secs(10));
    assert_old_session_works(&r.session.finish());
    assert!(server.logs().contains("certificates reloaded"));
    // Still alive and well after the signals.
    Raw::hello(server.ports.smtp, "after.example");
}

#[test]
fn certificate_selected_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let main = make_cert(dir.path(), "main", &["localhost"], 30);
    let other = make_cert(
        dir.path(),
        "other",
        &["other.example", "*.wild.example"],
        30,
    );
    let extra = format!(
        "{}[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n{FAST_AUTH}",
        tls_config(&main.0, &main.1),
        other.0.display(),
        other.1.display()
    );
    let server = TestServer::start_in(dir, "", &extra);
    let cert_for = |extra: &[&str]| {
        let out = s_client(server.ports.submissions, false, extra, "quit\n");
        first_pem_cert(&out.all()).unwrap_or_else(|| panic!("{}", out.all()))
    };
    let (main_pem, other_pem) = (pem(&main.0), pem(&other.0));
    assert_eq!(cert_for(&["-servername", "localhost"]), main_pem);
    assert_eq!(cert_for(&["-servername", "other.example"]), other_pem);
    assert_eq!(cert_for(&["-servername", "mx.wild.example"]), other_pem);
    assert_eq!(cert_for(&["-servername", "unknown.example"]), main_pem);
    assert_eq!(cert_for(&["-noservername"]), main_pem);
    // STARTTLS selects by SNI as well.
    let out = s_client(
        server.ports.submission,
        true,
        &["-servername", "other.example"],
        "quit\n",
    );
    assert_eq!(first_pem_cert(&out.all()), Some(other_pem));
}

#[test]
fn startup_refuses_cert_without_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = make_cert(dir.path(), "lonely", &["localhost"], 30);
    let (cfg, _) = write_config(
        dir.path(),
        &format!("[tls]\ncert = \"{}\"\n", cert.display()),
    );
    let err = serve_fails(&cfg);
    assert!(err.contains("`tls`"), "{err}");
    assert!(err.contains("key"), "{err}");
}

#[test]
fn json_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = write_config(dir.path(), "");
    let out = hato(
        &[
            "--log-format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
            "check-config",
        ],
        None,
    );
    out.assert_ok();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(!lines.is_empty(), "no log lines");
    for l in &lines {
        assert!(
            l.starts_with('{') && l.ends_with('}'),
            "not a JSON line: {l}"
        );
    }
    assert!(out.stderr.contains("SELF-SIGNED"), "{}", out.stderr);
    assert!(out.stderr.contains("\"level\":\"WARN\""), "{}", out.stderr);
}
