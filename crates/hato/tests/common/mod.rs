//! Test harness: starts the real `hato` binary on ephemeral loopback ports with a temporary data
//! directory, and helpers to run real clients (swaks, curl, openssl, python3) against it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hato");
pub const DOMAIN: &str = "example.test";
pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "correct horse battery staple";

/// Fails (never skips) when an external client is missing, naming the Debian package.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}`: install the Debian package `{package}` (apt-get install {package}); .ci/run does"
    );
}

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
    if ports.pop3 != 0 {
        text.push_str(&format!(
            "[[listener]]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:{}\"\ntls = \"starttls\"\n",
            ports.pop3
        ));
    }
    if ports.pop3s != 0 {
        text.push_str(&format!(
            "[[listener]]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:{}\"\ntls = \"implicit\"\n",
            ports.pop3s
        ));
    }
    if ports.imap != 0 {
        text.push_str(&format!(
            "[[listener]]\nprotocol = \"imap\"\nbind = \"127.0.0.1:{}\"\ntls = \"starttls\"\n",
            ports.imap
        ));
    }
    if ports.imaps != 0 {
        text.push_str(&format!(
            "[[listener]]\nprotocol = \"imap\"\nbind = \"127.0.0.1:{}\"\ntls = \"implicit\"\n",
            ports.imaps
        ));
    }
    text
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
        let ports = Ports::free();
        let config = dir.path().join("hato.toml");
        std::fs::write(
            &config,
            config_text(dir.path(), &ports, extra_listener, extra),
        )
        .unwrap();
        let mut s = TestServer {
            log: dir.path().join("hato.log"),
            dir,
            config,
            ports,
            child: None,
        };
        s.cli(&["user", "add", USER, "--password-stdin"], Some(PASSWORD))
            .assert_ok();
        // A port picked by `free_port` can be taken by someone else (another test's server or a
        // client's ephemeral port) before hato binds it: pick new ones and try again.
        for _ in 0..5 {
            match s.try_spawn() {
                Ok(()) => return s,
                Err(e) if e.contains("already in use") => {
                    s.ports = Ports::free();
                    std::fs::write(
                        &s.config,
                        config_text(s.dir.path(), &s.ports, extra_listener, extra),
                    )
                    .unwrap();
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

    /// Messages in the INBOX of `address`, as stored (bytes).
    pub fn inbox(&self, address: &str) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use hato_store::{Directory, Mailstore};
            let store = hato_store::sqlite::SqliteStore::open(&self.db()).unwrap();
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

    /// One stored blob (e.g. the copy a queue entry references).
    pub fn blob(&self, id: hato_store::BlobId) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use hato_store::Mailstore;
            let store = hato_store::sqlite::SqliteStore::open(&self.db()).unwrap();
            store
                .blob(id)
                .await
                .unwrap()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
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

    /// Remote recipients waiting in the outbound queue.
    pub fn queue(&self) -> Vec<hato_store::QueueEntry> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use hato_store::Queue;
            let store = hato_store::sqlite::SqliteStore::open(&self.db()).unwrap();
            store.queue().await.unwrap()
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct CmdOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub fn run(mut cmd: Command, stdin: Option<&str>) -> CmdOutput {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    CmdOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs a Python 3 script (given as text) with arguments.
pub fn python(script: &str, args: &[&str]) -> CmdOutput {
    require_tool("python3", "python3");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    run(cmd, None)
}

/// A plaintext SMTP conversation over a raw socket, for byte-exact tests.
pub struct Raw {
    pub stream: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            stream: BufReader::new(s),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).unwrap();
    }

    /// Reads one complete (possibly multi-line) reply.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Whatever arrives until the server closes or `wait` passes.
    pub fn rest(&mut self, wait: Duration) -> String {
        self.stream.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut buf = Vec::new();
        let _ = self.stream.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Raw {
    /// Reads the greeting and asserts it is a 220.
    pub fn greeted(port: u16) -> Raw {
        let mut r = Raw::connect(port);
        let g = r.reply();
        assert!(g.starts_with("220 "), "greeting: {g:?}");
        r
    }

    /// Sends `line` and asserts the reply starts with `expect` (e.g. "250 " or "530 5.7.0").
    pub fn expect(&mut self, line: &str, expect: &str) -> String {
        let r = self.cmd(line);
        assert!(
            r.starts_with(expect),
            "{line:?}: expected a reply starting with {expect:?}, got {r:?}"
        );
        r
    }

    /// Whatever arrives within `wait` (empty if nothing), without waiting for the connection to close.
    pub fn silent(&mut self, wait: Duration) -> String {
        let already = String::from_utf8_lossy(self.stream.buffer()).into_owned();
        if !already.is_empty() {
            return already;
        }
        self.stream.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        let got = match self.stream.get_mut().read(&mut buf) {
            Ok(0) => "<EOF>".to_owned(),
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        };
        self.stream
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        got
    }

    /// Waits until the server closes the connection; returns what it still sent and how long it took.
    pub fn until_closed(&mut self, wait: Duration) -> (String, Duration) {
        let start = Instant::now();
        let rest = self.rest(wait);
        (rest, start.elapsed())
    }
}

/// The reply code of a reply ("250 2.0.0 Ok" -> 250; 0 if there is none).
pub fn code(reply: &str) -> u16 {
    reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The header section of a stored message (up to the empty line).
pub fn headers(msg: &str) -> &str {
    msg.split("\r\n\r\n").next().unwrap_or("")
}

/// The body of a stored message (after the empty line).
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
}

/// Every occurrence of header `name` (case-insensitive), unfolded, without the name.
pub fn header_values(msg: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in headers(msg).split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_owned());
        }
    }
    out.extend(current);
    out
}

/// The first Received header (hato's own), unfolded.
pub fn received(msg: &str) -> String {
    header_values(msg, "Received")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no Received header in {msg:?}"))
}

/// Whether `received` says `with PROTO` exactly (ESMTPS is not ESMTPSA).
pub fn received_with(received: &str, proto: &str) -> bool {
    let words: Vec<&str> = received.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| w[0] == "with" && w[1].trim_end_matches(';') == proto)
}

/// True when every CR is followed by LF and every LF preceded by CR.
pub fn only_crlf(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

/// base64 of `alice`'s AUTH PLAIN credentials ("\0user\0password").
pub fn auth_plain(user: &str, password: &str) -> String {
    base64(format!("\0{user}\0{password}").as_bytes())
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A scripted SMTP conversation in Python (`socket` + `ssl`), byte-exact, with real TLS.
///
/// `implicit`: TLS from the first byte. Steps: `reply` (read one reply), `send:TEXT` (one write,
/// TEXT as given, CRLFs included), `tls` (handshake now; records "TLS <version> <cipher>"),
/// `silence:SECS` (records "SILENT" if nothing arrives within SECS, else what arrived),
/// `eof:SECS` (records "EOF" if the server closes within SECS, else "OPEN"), `sleep:SECS`.
/// Returns one entry per recording step; an exception ends the script with "ERROR ...".
pub fn pyconv(port: u16, implicit: bool, steps: &[&str]) -> Vec<String> {
    const SCRIPT: &str = r#"
import socket, ssl, sys, time
port = int(sys.argv[1]); implicit = sys.argv[2] == "implicit"; steps = sys.argv[3:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = []
def readline(s):
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        buf += c
    return buf
def reply(s):
    text = b""
    while True:
        line = readline(s)
        text += line
        if len(line) < 4 or line[3:4] != b"-":
            return text.decode("utf-8", "replace")
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if implicit:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    for step in steps:
        op, _, arg = step.partition(":")
        if op == "reply":
            out.append(reply(s))
        elif op == "send":
            s.sendall(arg.encode("utf-8", "surrogateescape"))
        elif op == "tls":
            s = ctx.wrap_socket(s, server_hostname="localhost")
            out.append("TLS %s %s" % (s.version(), s.cipher()[0]))
        elif op == "silence":
            s.settimeout(float(arg))
            try:
                data = s.recv(4096)
                out.append("EOF" if not data else data.decode("utf-8", "replace"))
            except (socket.timeout, TimeoutError):
                out.append("SILENT")
            s.settimeout(10)
        elif op == "eof":
            s.settimeout(float(arg))
            got = b""
            try:
                while True:
                    data = s.recv(4096)
                    if not data:
                        break
                    got += data
                out.append("EOF" + got.decode("utf-8", "replace"))
            except (socket.timeout, TimeoutError):
                out.append("OPEN" + got.decode("utf-8", "replace"))
            except OSError as e:
                out.append("EOF" + got.decode("utf-8", "replace"))
            s.settimeout(10)
        elif op == "sleep":
            time.sleep(float(arg))
        else:
            raise Exception("unknown step " + step)
except Exception as e:
    out.append("ERROR %s: %s" % (type(e).__name__, e))
sys.stdout.write("\x1e".join(out))
"#;
    let mut args = vec![
        port.to_string(),
        if implicit { "implicit" } else { "plain" }.to_owned(),
    ];
    args.extend(steps.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(SCRIPT, &args);
    assert!(out.status.success(), "python failed: {}", out.all());
    if out.stdout.is_empty() {
        return Vec::new();
    }
    out.stdout.split('\x1e').map(str::to_owned).collect()
}

/// Asserts `got[i]` starts with `expect[i]` for each i, showing the whole conversation otherwise.
pub fn assert_replies(got: &[String], expect: &[&str]) {
    let ok = got.len() >= expect.len() && got.iter().zip(expect).all(|(g, e)| g.starts_with(e));
    assert!(
        ok,
        "conversation mismatch\nexpected prefixes: {expect:#?}\ngot: {got:#?}"
    );
}

/// A certificate + key made by the openssl CLI (EC P-256), self-signed for `names`, valid `days`.
pub fn make_cert(dir: &Path, stem: &str, names: &[&str], days: u32) -> (PathBuf, PathBuf) {
    require_tool("openssl", "openssl");
    let cert = dir.join(format!("{stem}-cert.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ])
    .args(["-nodes", "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&cert)
    .args(["-subj", &format!("/CN={}", names[0])])
    .args(["-addext", &format!("subjectAltName={san}")])
    .args(["-days", &days.to_string()]);
    run(cmd, None).assert_ok();
    (cert, key)
}

/// A certificate for `names` that expired long ago (made with `openssl ca -selfsign`).
pub fn make_expired_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    require_tool("openssl", "openssl");
    let ca = dir.join(format!("{stem}-ca"));
    std::fs::create_dir_all(&ca).unwrap();
    std::fs::write(ca.join("index.txt"), "").unwrap();
    std::fs::write(ca.join("serial"), "01\n").unwrap();
    std::fs::write(
        ca.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = CA_default\n[CA_default]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\n\
             serial = {d}/serial\ndefault_md = sha256\npolicy = policy_any\ncopy_extensions = copy\n\
             unique_subject = no\n[policy_any]\ncommonName = supplied\n",
            d = ca.display()
        ),
    )
    .unwrap();
    let cert = dir.join(format!("{stem}-cert.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    let csr = ca.join("req.csr");
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ])
    .args(["-nodes", "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&csr)
    .args(["-subj", &format!("/CN={}", names[0])])
    .args(["-addext", &format!("subjectAltName={san}")]);
    run(cmd, None).assert_ok();
    let mut cmd = Command::new("openssl");
    cmd.args(["ca", "-batch", "-selfsign", "-notext", "-config"])
        .arg(ca.join("ca.cnf"))
        .arg("-keyfile")
        .arg(&key)
        .arg("-in")
        .arg(&csr)
        .arg("-out")
        .arg(&cert)
        .args([
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
        ]);
    run(cmd, None).assert_ok();
    (cert, key)
}

/// The base64 body of the first PEM certificate in `text`, whitespace removed (compares certificates).
pub fn first_pem_cert(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    Some(text[start..end].split_whitespace().collect())
}

/// `openssl s_client` to `port` (implicit TLS, or `-starttls smtp`), sending `input` after the
/// handshake (`-crlf -ign_eof`: waits until the server closes). SNI is `localhost` unless `extra`
/// says otherwise (`-servername X`, `-noservername`). Returns stdout+stderr and success.
pub fn s_client(port: u16, starttls: bool, extra: &[&str], input: &str) -> CmdOutput {
    require_tool("openssl", "openssl");
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-crlf", "-ign_eof", "-showcerts"]);
    if !extra.iter().any(|a| a.contains("servername")) {
        cmd.args(["-servername", "localhost"]);
    }
    if starttls {
        cmd.args(["-starttls", "smtp"]);
    }
    cmd.args(extra);
    run(cmd, Some(input))
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

/// Delivers `messages` (each complete text with CRLF line endings, ending in CRLF) to `rcpt` over
/// one plaintext SMTP session on `port` (the smtp listener), PIPELINING the envelope commands and
/// the next transaction after each end of data. The data is dot-stuffed here. Asserts every reply.
pub fn smtp_deliver(port: u16, rcpt: &str, messages: &[String]) {
    let mut r = Raw::greeted(port);
    let ehlo = r.expect("EHLO sender.example", "250");
    assert!(ehlo.contains("PIPELINING"), "{ehlo}");
    let envelope = format!("MAIL FROM:<bob@sender.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
    let envelope_replies = |r: &mut Raw| {
        for expect in ["250 ", "250 ", "354 "] {
            let got = r.reply();
            assert!(got.starts_with(expect), "expected {expect:?}, got {got:?}");
        }
    };
    if messages.is_empty() {
        r.expect("QUIT", "221");
        return;
    }
    r.send(envelope.as_bytes());
    envelope_replies(&mut r);
    for (i, m) in messages.iter().enumerate() {
        assert!(m.ends_with("\r\n"), "message {i} does not end in CRLF");
        let mut data = String::with_capacity(m.len() + 64);
        for line in m.split_inclusive("\r\n") {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
        }
        data.push_str(".\r\n");
        let more = i + 1 < messages.len();
        if more {
            data.push_str(&envelope);
        }
        r.send(data.as_bytes());
        let got = r.reply();
        assert!(got.starts_with("250 "), "message {i}: {got:?}");
        if more {
            envelope_replies(&mut r);
        }
    }
    r.expect("QUIT", "221");
}

/// Decodes lower- or upper-case hex (as Python's `bytes.hex()` prints it).
pub fn unhex(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    assert!(hex.len().is_multiple_of(2), "odd hex length: {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {hex:?}"))
        })
        .collect()
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

impl TestServer {
    /// Starts hato for the local `domains` with the accounts `users` (password [`PASSWORD`]);
    /// `extra` is top-level configuration (e.g. `[delivery]`), written after `domains`.
    pub fn start_domains(domains: &[&str], users: &[&str], extra: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::free().without_imap();
        let config = dir.path().join("hato.toml");
        let write = |ports: &Ports| {
            std::fs::write(
                &config,
                config_text_domains(dir.path(), ports, domains, "", extra),
            )
            .unwrap()
        };
        write(&ports);
        let mut s = TestServer {
            log: dir.path().join("hato.log"),
            config: config.clone(),
            ports,
            child: None,
            dir,
        };
        for u in users {
            s.cli(&["user", "add", u, "--password-stdin"], Some(PASSWORD))
                .assert_ok();
        }
        for _ in 0..5 {
            match s.try_spawn() {
                Ok(()) => return s,
                Err(e) if e.contains("already in use") => {
                    s.ports = Ports::free().without_imap();
                    std::fs::write(
                        &s.config,
                        config_text_domains(s.dir.path(), &s.ports, domains, "", extra),
                    )
                    .unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free ports after 5 attempts: {}", s.logs());
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
}

/// One value of the "KEY value" lines a test's Python script printed.
pub fn get<'a>(r: &'a HashMap<String, String>, key: &str) -> &'a str {
    r.get(key)
        .unwrap_or_else(|| panic!("no {key} in the script output: {r:#?}"))
}

/// A message as a sender would submit it (CRLF line endings, ending in CRLF).
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Bob <bob@sender.example>\r\nTo: {USER}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@sender.example>\r\n\r\n{body}\r\n",
        subject.replace(' ', "-")
    )
}

/// Parses "KEY rest of line" lines printed by the Python scripts.
pub fn results(out: &CmdOutput) -> HashMap<String, String> {
    assert!(out.status.success(), "script failed:\n{}", out.all());
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Submits one message from alice to `to` over submission (STARTTLS + AUTH) with smtplib.
pub fn submit(server: &TestServer, to: &str, subject: &str) {
    submit_with(server, to, subject, "", "", "");
}

/// [`submit`] with MAIL and RCPT parameters (space separated, e.g. "RET=HDRS ENVID=x") and
/// extra header lines.
pub fn submit_with(
    server: &TestServer,
    to: &str,
    subject: &str,
    mail_params: &str,
    rcpt_params: &str,
    headers: &str,
) {
    const SCRIPT: &str = r#"
import smtplib, ssl, sys
port, user, password, to, subject, mail_params, rcpt_params, headers = sys.argv[1:9]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
s.starttls(context=ctx)
s.login(user, password)
msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n%s\r\nHello from the delivery test.\r\n" % (user, to, subject, headers)
s.sendmail(user, [to], msg, mail_options=mail_params.split(), rcpt_options=rcpt_params.split())
s.quit()
"#;
    let port = server.ports.submission.to_string();
    let headers = if headers.is_empty() {
        String::new()
    } else {
        format!("{headers}\r\n")
    };
    python(
        SCRIPT,
        &[
            &port,
            USER,
            PASSWORD,
            to,
            subject,
            mail_params,
            rcpt_params,
            &headers,
        ],
    )
    .assert_ok();
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
