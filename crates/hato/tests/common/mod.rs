//! Test harness: starts the real `hato` binary on ephemeral loopback ports with a temporary data
//! directory, and helpers to run real clients (swaks, curl, openssl, python3) against it.
//!
//! By concern: this file (the server under test and its configuration), [`run`] (external
//! programs: python3, curl, fetchmail, ...), [`smtp`] (SMTP conversations), [`mail`] (stored
//! messages), [`certs`] (certificates and `openssl s_client`), [`imap`] (the Python IMAP prelude).
#![allow(dead_code)]

mod certs;
mod imap;
mod mail;
mod run;
mod smtp;

#[allow(unused_imports)]
pub use {certs::*, imap::*, mail::*, run::*, smtp::*};

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hato");
pub const DOMAIN: &str = "example.test";
pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    /// POP3 with STLS (0: no such listener).
    pub pop3: u16,
    /// POP3 over implicit TLS (0: no such listener).
    pub pop3s: u16,
    /// IMAP with STARTTLS (0: no such listener).
    pub imap: u16,
    /// IMAP over implicit TLS (0: no such listener).
    pub imaps: u16,
}

impl Ports {
    /// Free ports for every listener of the test configuration, the POP3 ones included.
    pub fn free() -> Ports {
        // Hold every socket until all are chosen, so the kernel cannot hand out one port twice.
        let held: Vec<TcpListener> = (0..7)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let p: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        Ports {
            smtp: p[0],
            submission: p[1],
            submissions: p[2],
            pop3: p[3],
            pop3s: p[4],
            imap: p[5],
            imaps: p[6],
        }
    }

    /// No IMAP listeners (servers that are stopped and restarted on the same ports hold fewer
    /// ports another process could take meanwhile).
    pub fn without_imap(mut self) -> Ports {
        self.imap = 0;
        self.imaps = 0;
        self
    }

    /// Only the three SMTP listeners (no POP3, no IMAP), each on a port of its own.
    pub fn smtp_only() -> Ports {
        Ports {
            smtp: free_port(),
            submission: free_port(),
            submissions: free_port(),
            pop3: 0,
            pop3s: 0,
            imap: 0,
            imaps: 0,
        }
    }

    /// The ports of the listeners that are configured (non-zero).
    pub fn all(&self) -> Vec<u16> {
        [
            self.smtp,
            self.submission,
            self.submissions,
            self.pop3,
            self.pop3s,
            self.imap,
            self.imaps,
        ]
        .into_iter()
        .filter(|&p| p != 0)
        .collect()
    }
}

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ports: Ports,
    child: Option<Child>,
    pub log: PathBuf,
}

/// The configuration tests use: three SMTP listeners like the default instance, plus a POP3 STLS
/// and a POP3 implicit-TLS listener for the ports that are not 0.
pub fn config_text(dir: &Path, ports: &Ports, extra_listener: &str, extra: &str) -> String {
    let mut text = format!(
        r#"hostname = "localhost"
data_dir = "{data}"
domains = ["{DOMAIN}", "localhost"]
{extra}
[[listener]]
protocol = "smtp"
bind = "127.0.0.1:{smtp}"
tls = "starttls"
{delay}{extra_listener}
[[listener]]
protocol = "submission"
bind = "127.0.0.1:{sub}"
tls = "starttls"
[[listener]]
protocol = "submission"
bind = "127.0.0.1:{subs}"
tls = "implicit"
"#,
        data = dir.join("data").display(),
        delay = if extra_listener.contains("greeting_delay_ms") {
            ""
        } else {
            "greeting_delay_ms = 0\n"
        },
        smtp = ports.smtp,
        sub = ports.submission,
        subs = ports.submissions,
    );
    if !extra.contains("[delivery]") {
        // Tests that do not configure delivery keep remote mail queued (nothing to reach).
        text = text.replacen(
            "\n[[listener]]",
            "\n[delivery]\nhold = true\n[[listener]]",
            1,
        );
    }
    for (protocol, port, tls) in [
        ("pop3", ports.pop3, "starttls"),
        ("pop3", ports.pop3s, "implicit"),
        ("imap", ports.imap, "starttls"),
        ("imap", ports.imaps, "implicit"),
    ] {
        if port != 0 {
            text.push_str(&format!(
                "[[listener]]\nprotocol = \"{protocol}\"\nbind = \"127.0.0.1:{port}\"\ntls = \"{tls}\"\n"
            ));
        }
    }
    text
}

/// [`config_text`] with other local domains than [`DOMAIN`] and `localhost`.
pub fn config_text_domains(
    dir: &Path,
    ports: &Ports,
    domains: &[&str],
    extra_listener: &str,
    extra: &str,
) -> String {
    let list = domains
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    config_text(dir, ports, extra_listener, extra).replacen(
        &format!("domains = [\"{DOMAIN}\", \"localhost\"]"),
        &format!("domains = [{list}]"),
        1,
    )
}

/// A configuration in `dir` with SMTP listeners only ([`Ports::smtp_only`]); `extra` goes at
/// the top level. Returns its path and the ports.
pub fn write_config(dir: &Path, extra: &str) -> (PathBuf, Ports) {
    let ports = Ports::smtp_only();
    let path = dir.join("hato.toml");
    std::fs::write(&path, config_text(dir, &ports, "", extra)).unwrap();
    (path, ports)
}

/// `hato --config <config> check-config`.
pub fn check_config(config: &Path) -> CmdOutput {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).arg("check-config");
    run(cmd, None)
}

/// Writes each top-level `extra` in turn into a test configuration in `dir` and asserts that
/// `check-config` refuses it with an error naming the paired needle.
pub fn assert_config_errors(dir: &Path, cases: &[(&str, &str)]) {
    let ports = Ports::free();
    for (extra, needle) in cases {
        let config = dir.join("hato.toml");
        std::fs::write(&config, config_text(dir, &ports, "", extra)).unwrap();
        let out = check_config(&config);
        assert!(!out.status.success(), "{extra}: accepted: {}", out.all());
        assert!(out.stderr.contains(needle), "{extra}: {}", out.all());
    }
}

pub const FAST_AUTH: &str = "[auth]\nfailure_delay_ms = 50\n";

impl TestServer {
    /// Starts hato with the standard test configuration and one account (USER/PASSWORD).
    pub fn start() -> TestServer {
        Self::start_with("", FAST_AUTH)
    }

    pub fn start_with(extra_listener: &str, extra: &str) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), extra_listener, extra)
    }

    /// Like [`TestServer::start_with`], in a directory the caller prepared (e.g. with certificates).
    pub fn start_in(dir: tempfile::TempDir, extra_listener: &str, extra: &str) -> TestServer {
        Self::launch(dir, Ports::free, &[USER], |dir, ports| {
            config_text(dir, ports, extra_listener, extra)
        })
    }

    /// Starts hato for the local `domains` with the accounts `users` (password [`PASSWORD`]);
    /// `extra` is top-level configuration (e.g. `[delivery]`), written after `domains`.
    pub fn start_domains(domains: &[&str], users: &[&str], extra: &str) -> TestServer {
        Self::launch(
            tempfile::tempdir().unwrap(),
            || Ports::free().without_imap(),
            users,
            |dir, ports| config_text_domains(dir, ports, domains, "", extra),
        )
    }

    /// Writes the configuration `config` makes for ports from `ports`, adds the `users`
    /// (password [`PASSWORD`]) and starts the server.
    fn launch(
        dir: tempfile::TempDir,
        ports: impl Fn() -> Ports,
        users: &[&str],
        config: impl Fn(&Path, &Ports) -> String,
    ) -> TestServer {
        let mut s = TestServer {
            log: dir.path().join("hato.log"),
            config: dir.path().join("hato.toml"),
            ports: ports(),
            child: None,
            dir,
        };
        std::fs::write(&s.config, config(s.dir.path(), &s.ports)).unwrap();
        for u in users {
            s.cli(&["user", "add", u, "--password-stdin"], Some(PASSWORD))
                .assert_ok();
        }
        // A port picked by `free_port` can be taken by someone else (another test's server or a
        // client's ephemeral port) before hato binds it: pick new ones and try again.
        for _ in 0..5 {
            match s.try_spawn() {
                Ok(()) => return s,
                Err(e) if e.contains("already in use") => {
                    s.ports = ports();
                    std::fs::write(&s.config, config(s.dir.path(), &s.ports)).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free ports after 5 attempts: {}", s.logs());
    }

    pub fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    /// Starts the server and waits until every port accepts; Err (with the log) if it exits.
    pub fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("HATO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start hato");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in self.ports.all() {
            loop {
                if let Ok(probe) = TcpStream::connect(("127.0.0.1", port)) {
                    // Wait (briefly) until the server has closed the probe, so that it no longer
                    // counts against per-IP connection limits when the test connects.
                    let _ = probe.shutdown(std::net::Shutdown::Write);
                    let _ = probe.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = (&probe).read_to_end(&mut Vec::new());
                    break;
                }
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    self.child = None;
                    return Err(format!("hato exited with {status}: {}", self.logs()));
                }
                assert!(
                    Instant::now() < deadline,
                    "hato did not start: {}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The exit status, if the server process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap();
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Waits until the server process exits (panics after `wait`); its exit status.
    pub fn wait_exit(&mut self, wait: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("hato.db")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("data/tls/selfsigned-cert.pem")
    }

    /// Runs `hato --config <cfg> ARGS` with optional stdin.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config).args(args);
        run(cmd, stdin)
    }

    /// `hato user add ADDRESS --password-stdin` with `password` (asserted to succeed).
    pub fn add_user(&self, address: &str, password: &str) {
        self.cli(
            &["user", "add", address, "--password-stdin"],
            Some(password),
        )
        .assert_ok();
    }

    /// Runs `f` on the server's store ([`with_store`]).
    pub fn with_store<T, F>(&self, f: impl FnOnce(hato_store::sqlite::SqliteStore) -> F) -> T
    where
        F: Future<Output = T>,
    {
        with_store(&self.db(), f)
    }

    /// Messages in the INBOX of `address`, as stored (bytes).
    pub fn inbox(&self, address: &str) -> Vec<String> {
        self.with_store(|store| async move {
            use hato_store::{Directory, Mailstore};
            let account = store.account(address).await.unwrap().expect("account");
            let inbox = store
                .mailboxes(account.id)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.name == "INBOX")
                .unwrap();
            let mut out = Vec::new();
            for m in store.messages(inbox.id).await.unwrap() {
                let blob = store.blob(m.blob).await.unwrap().unwrap();
                out.push(String::from_utf8_lossy(&blob).into_owned());
            }
            out
        })
    }

    /// The one message in the INBOX of `address` (asserted to be the only one).
    pub fn only_message(&self, address: &str) -> String {
        let mut inbox = self.inbox(address);
        assert_eq!(inbox.len(), 1, "{address}'s INBOX: {inbox:#?}");
        inbox.remove(0)
    }

    /// One stored blob (e.g. the copy a queue entry references).
    pub fn blob(&self, id: hato_store::BlobId) -> Option<String> {
        self.with_store(|store| async move {
            use hato_store::Mailstore;
            store
                .blob(id)
                .await
                .unwrap()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
    }

    /// Remote recipients waiting in the outbound queue.
    pub fn queue(&self) -> Vec<hato_store::QueueEntry> {
        self.with_store(|store| async move {
            use hato_store::Queue;
            store.queue().await.unwrap()
        })
    }

    /// Waits until the log contains `needle` (panics with the log after `wait`).
    pub fn wait_for_log(&self, needle: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the log never showed {needle:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `address`'s INBOX holds at least `n` messages; returns them.
    pub fn wait_inbox(&self, address: &str, n: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        loop {
            let inbox = self.inbox(address);
            if inbox.len() >= n {
                return inbox;
            }
            assert!(
                Instant::now() < deadline,
                "{address} got {} of {n} messages within {wait:?}; log:\n{}",
                inbox.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `f` holds for the outbound queue (panics with the log after `wait`, saying
    /// that `what` did not happen).
    pub fn wait_queue(
        &self,
        what: &str,
        wait: Duration,
        f: impl Fn(&[hato_store::QueueEntry]) -> bool,
    ) {
        wait_until(what, wait, || f(&self.queue()), || self.logs());
    }

    /// Waits until the outbound queue is empty.
    pub fn wait_queue_empty(&self, wait: Duration) {
        self.wait_queue("queue empties", wait, |q| q.is_empty());
    }

    /// Waits until the first queue entry has had an attempt (a failed one: it is still
    /// queued); returns it.
    pub fn wait_deferred(&self, what: &str) -> hato_store::QueueEntry {
        self.wait_queue(what, Duration::from_secs(20), |q| {
            q.first().is_some_and(|e| e.attempts >= 1)
        });
        self.queue()[0].clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `f` on the store in the database file `db` (opened anew, on a runtime of its own).
pub fn with_store<T, F>(db: &Path, f: impl FnOnce(hato_store::sqlite::SqliteStore) -> F) -> T
where
    F: Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { f(hato_store::sqlite::SqliteStore::open(db).unwrap()).await })
}

pub fn wait_until(
    what: &str,
    wait: Duration,
    mut f: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + wait;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {wait:?}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a child process to exit within `wait`; kills it and panics otherwise.
pub fn wait_exit(child: &mut Child, wait: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal (`"TERM"`, `"HUP"`, ...) with the shell's `kill` builtin (no procps needed).
pub fn signal(pid: u32, sig: &str) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("kill -{sig} {pid}"));
    run(cmd, None).assert_ok();
}
