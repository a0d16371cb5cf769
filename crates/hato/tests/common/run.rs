//! External programs: running them, Python scripts (also long-running ones), curl, fetchmail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use super::{PASSWORD, TestServer, USER, wait_exit};

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

impl From<Output> for CmdOutput {
    fn from(out: Output) -> CmdOutput {
        CmdOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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
    child.wait_with_output().unwrap().into()
}

/// `python3 -c SCRIPT ARGS` (the script given as text).
pub fn python_cmd(script: &str, args: &[&str]) -> Command {
    require_tool("python3", "python3");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    cmd
}

/// Runs a Python 3 script (given as text) with arguments.
pub fn python(script: &str, args: &[&str]) -> CmdOutput {
    run(python_cmd(script, args), None)
}

/// Python prelude: `ctx`, a TLS client context that does not verify the server (the test
/// servers' certificates are self-signed).
pub const PY_UNVERIFIED: &str = r#"
import ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
"#;

/// A Python script running next to the test (a fake server, a client kept open), its stdin and
/// stdout piped.
pub struct PyChild {
    pub child: Child,
    out: BufReader<ChildStdout>,
}

impl PyChild {
    pub fn spawn(script: &str, args: &[&str]) -> PyChild {
        let mut child = python_cmd(script, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let out = BufReader::new(child.stdout.take().unwrap());
        PyChild { child, out }
    }

    /// The next line the script printed (empty at the end of its output).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap_or(0);
        line
    }

    /// Writes `text` to the script's stdin.
    pub fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (at most `wait`) for the script to exit successfully; the rest of its output
    /// (which must fit in the pipe meanwhile).
    pub fn finish(mut self, wait: Duration, what: &str) -> String {
        let status = wait_exit(&mut self.child, wait, what);
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        assert!(status.success(), "{what} failed: {status}\n{rest}");
        rest
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// One value of the "KEY value" lines a test's Python script printed.
pub fn get<'a>(r: &'a HashMap<String, String>, key: &str) -> &'a str {
    r.get(key)
        .unwrap_or_else(|| panic!("no {key} in the script output: {r:#?}"))
}

/// `curl -sS --max-time 20 ARGS`.
pub fn curl(args: &[&str]) -> CmdOutput {
    require_tool("curl", "curl");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"]).args(args);
    run(cmd, None)
}

/// `alice:password`, for curl's `-u`.
pub fn credentials() -> String {
    format!("{USER}:{PASSWORD}")
}

/// Runs fetchmail once for alice against `server` (`protocol` on `port` over implicit TLS,
/// verifying the server's certificate), every message to an MDA that writes one file each;
/// `options` end the poll line (e.g. `uidl`), `keep` is `keep` or `nokeep`. Asserts it
/// fetched `n` messages; returns the files, with CRLF line endings again (fetchmail hands the
/// MDA LF line endings).
pub fn fetchmail(
    server: &TestServer,
    protocol: &str,
    port: u16,
    options: &str,
    keep: &str,
    n: usize,
) -> Vec<String> {
    require_tool("fetchmail", "fetchmail");
    let home = server.dir.path().join("fetchmail-home");
    let out_dir = home.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // One file per message.
    let mda = home.join("mda.sh");
    std::fs::write(
        &mda,
        format!(
            "#!/bin/sh\nexec cat > \"$(mktemp '{}/msg.XXXXXX')\"\n",
            out_dir.display()
        ),
    )
    .unwrap();
    let rc = home.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\n\
             poll localhost via 127.0.0.1 protocol {protocol} service {port}{options}\n\
             \tuser \"{USER}\" password \"{PASSWORD}\"\n\
             \tssl sslcertck sslcertfile \"{cert}\" sslcommonname \"localhost\"\n\
             \t{keep} fetchall\n\
             \tmda \"{mda}\"\n",
            cert = server.cert().display(),
            mda = mda.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        // Its own pid file: as root fetchmail otherwise locks one machine-wide file
        // (/var/run/fetchmail.pid, shared with any other fetchmail on the machine).
        .arg("chmod 600 \"$1\" && chmod 700 \"$2\" && exec timeout 60 fetchmail -f \"$1\" -v --nodetach --pidfile \"$3\"")
        .arg("sh")
        .arg(&rc)
        .arg(&mda)
        .arg(home.join("fetchmail.pid"))
        .env("HOME", &home)
        .env("FETCHMAILHOME", &home);
    let out = run(cmd, None);
    assert!(out.status.success(), "fetchmail failed:\n{}", out.all());
    assert!(
        out.all().contains(&format!("{n} messages for")),
        "fetchmail output:\n{}",
        out.all()
    );
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .replace('\n', "\r\n")
        })
        .collect();
    assert_eq!(files.len(), n, "{files:#?}");
    files
}
