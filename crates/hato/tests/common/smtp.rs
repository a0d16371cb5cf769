//! SMTP conversations: raw sockets, scripted conversations in Python with real TLS (shared with
//! POP3), delivery over the MX port and submission with AUTH.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{CmdOutput, PASSWORD, PY_UNVERIFIED, TestServer, USER, python, python_cmd, run};

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

    /// Reads the greeting and asserts it is a 220.
    pub fn greeted(port: u16) -> Raw {
        let mut r = Raw::connect(port);
        let g = r.reply();
        assert!(g.starts_with("220 "), "greeting: {g:?}");
        r
    }

    /// [`Raw::greeted`], then `EHLO name` (asserted 250).
    pub fn hello(port: u16, name: &str) -> Raw {
        let mut r = Raw::greeted(port);
        r.expect(&format!("EHLO {name}"), "250");
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

    /// `MAIL FROM:<from>` (asserted `250 2.1.0`) and `RCPT TO:<rcpt>` (`250 2.1.5`), then
    /// `DATA` (354).
    pub fn envelope(&mut self, from: &str, rcpt: &str) {
        self.expect(&format!("MAIL FROM:<{from}>"), "250 2.1.0");
        self.expect(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5");
        self.expect("DATA", "354");
    }

    /// After DATA: sends `text` (CRLF line endings, ending in CRLF) and the final dot in one
    /// write; returns the reply.
    pub fn data(&mut self, text: &str) -> String {
        self.send(format!("{text}.\r\n").as_bytes());
        self.reply()
    }

    /// [`Raw::envelope`] and [`Raw::data`]: one message, asserted accepted (`250 2.0.0`).
    pub fn deliver(&mut self, from: &str, rcpt: &str, text: &str) {
        self.envelope(from, rcpt);
        let r = self.data(text);
        assert!(r.starts_with("250 2.0.0"), "{r:?}");
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

/// The Python program behind [`conversation`]: the steps on one connection, the recordings
/// separated by `\x1e`.
const CONVERSATION: &str = r#"
import socket, sys, time
port = int(sys.argv[1]); implicit = sys.argv[2] == "implicit"; steps = sys.argv[3:]
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
def multi(s):
    text = first = readline(s)
    if first.startswith(b"+OK"):
        while True:
            line = readline(s)
            text += line
            if line in (b".\r\n", b""):
                break
    return text.decode("utf-8", "replace")
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if implicit:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    for step in steps:
        op, _, arg = step.partition(":")
        if op == "reply":
            out.append(reply(s))
        elif op == "line":
            out.append(readline(s).decode("utf-8", "replace"))
        elif op == "multi":
            out.append(multi(s))
        elif op == "send":
            s.sendall(arg.encode("utf-8", "surrogateescape"))
        elif op == "tls":
            s = ctx.wrap_socket(s, server_hostname="localhost")
            if arg == "version":
                out.append("TLS %s" % s.version())
            else:
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
            except OSError:
                out.append("EOF" + got.decode("utf-8", "replace"))
            s.settimeout(10)
        elif op == "sleep":
            time.sleep(float(arg))
        elif op == "touch":
            open(arg, "w").close()
        else:
            raise Exception("unknown step " + step)
except Exception as e:
    out.append("ERROR %s: %s" % (type(e).__name__, e))
sys.stdout.write("\x1e".join(out))
"#;

/// The command [`conversation`] runs (to start it in the background).
pub fn conversation_cmd(port: u16, implicit: bool, steps: &[&str]) -> Command {
    let mut args = vec![
        port.to_string(),
        if implicit { "implicit" } else { "plain" }.to_owned(),
    ];
    args.extend(steps.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python_cmd(&format!("{PY_UNVERIFIED}{CONVERSATION}"), &args)
}

/// The recordings of a finished [`conversation_cmd`].
pub fn conversation_result(out: &CmdOutput) -> Vec<String> {
    assert!(out.status.success(), "python failed: {}", out.all());
    if out.stdout.is_empty() {
        return Vec::new();
    }
    out.stdout.split('\x1e').map(str::to_owned).collect()
}

/// A scripted conversation in Python (`socket` + `ssl`), byte-exact, with real TLS.
///
/// `implicit`: TLS from the first byte. Steps: `reply` (read one SMTP reply, multi-line ones
/// whole), `line` (one line), `multi` (a POP3 status line and, after `+OK`, the lines up to the
/// terminating `.`), `send:TEXT` (one write, TEXT as given, CRLFs included), `tls` (handshake
/// now; records "TLS <version> <cipher>", `tls:version` only "TLS <version>"), `silence:SECS`
/// (records "SILENT" if nothing arrives within SECS, else what arrived, "EOF" if closed),
/// `eof:SECS` (records "EOF<rest>" if the server closes within SECS, else "OPEN<rest>"),
/// `sleep:SECS`, `touch:PATH` (creates the file PATH, to tell the test how far the
/// conversation got). Returns one entry per recording step; an exception ends the script with
/// "ERROR ...".
pub fn conversation(port: u16, implicit: bool, steps: &[&str]) -> Vec<String> {
    conversation_result(&run(conversation_cmd(port, implicit, steps), None))
}

/// [`conversation`] steps for an SMTP dialogue: read the greeting, then send each of `lines`
/// (CRLF added) and read its reply. The steps `tls`, `silence:…`, `eof:…` and `sleep:…` are
/// taken as they are.
pub fn smtp_steps(lines: &[&str]) -> Vec<String> {
    let mut steps = vec!["reply".to_owned()];
    for &line in lines {
        let op = line.split(':').next().unwrap_or_default();
        if line == "tls" || matches!(op, "silence" | "eof" | "sleep") {
            steps.push(line.to_string());
        } else {
            steps.push(format!("send:{line}\r\n"));
            steps.push("reply".to_owned());
        }
    }
    steps
}

/// The SMTP dialogue [`smtp_steps`] of `lines` on `port` (`implicit`: TLS from the first
/// byte): the greeting and one recording per line.
pub fn smtp_conv(port: u16, implicit: bool, lines: &[&str]) -> Vec<String> {
    let steps = smtp_steps(lines);
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    conversation(port, implicit, &steps)
}

/// `EHLO client.example` and then `lines` over implicit TLS on the submissions port: the
/// greeting, the EHLO reply and one recording per line.
pub fn submissions(server: &TestServer, lines: &[&str]) -> Vec<String> {
    submissions_from(server, "client.example", lines)
}

/// [`submissions`] from the client that says `EHLO <client>`.
pub fn submissions_from(server: &TestServer, client: &str, lines: &[&str]) -> Vec<String> {
    let ehlo = format!("EHLO {client}");
    let mut all = vec![ehlo.as_str()];
    all.extend(lines);
    smtp_conv(server.ports.submissions, true, &all)
}

/// The SMTP dialogue on `port` in plaintext: EHLO, STARTTLS (in the same write followed by
/// the lines `injected`, if any), the TLS handshake, then `lines` ([`smtp_conv`]). Asserts the
/// greeting, the EHLO, the 220 to STARTTLS and a TLS 1.3 handshake; returns the recordings
/// after the handshake.
pub fn starttls_conv(port: u16, injected: Option<&str>, lines: &[&str]) -> Vec<String> {
    let starttls = match injected {
        Some(injected) => format!("STARTTLS\r\n{injected}"),
        None => "STARTTLS".to_owned(),
    };
    let mut all = vec!["EHLO client.example", &starttls, "tls"];
    all.extend(lines);
    let got = smtp_conv(port, false, &all);
    assert_replies(&got, &["220 ", "250", "220 ", "TLS TLSv1.3 "]);
    got[4..].to_vec()
}

/// Asserts `got[i]` starts with `expect[i]` for each i, showing the whole conversation otherwise.
pub fn assert_replies(got: &[String], expect: &[&str]) {
    let ok = got.len() >= expect.len() && got.iter().zip(expect).all(|(g, e)| g.starts_with(e));
    assert!(
        ok,
        "conversation mismatch\nexpected prefixes: {expect:#?}\ngot: {got:#?}"
    );
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

/// [`smtp_deliver`] of `messages` to alice on `server`; asserts her INBOX then holds exactly
/// as many messages, and returns them as stored.
pub fn deliver_to_alice(server: &TestServer, messages: &[String]) -> Vec<String> {
    smtp_deliver(server.ports.smtp, USER, messages);
    let stored = server.inbox(USER);
    assert_eq!(stored.len(), messages.len(), "{stored:#?}");
    stored
}

/// A message as a sender would submit it (CRLF line endings, ending in CRLF).
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Bob <bob@sender.example>\r\nTo: {USER}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@sender.example>\r\n\r\n{body}\r\n",
        subject.replace(' ', "-")
    )
}

/// Python prelude: `login(s)` on an smtplib connection `s` to alice's submission listener
/// (STARTTLS, then AUTH); `port`, `user`, `password` from the first three arguments.
pub const PY_SUBMIT: &str = r#"
import smtplib, sys
port, user, password = sys.argv[1:4]
def login():
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
    s.starttls(context=ctx)
    s.login(user, password)
    return s
"#;

/// Runs `script` after [`PY_UNVERIFIED`] and [`PY_SUBMIT`] for alice on `server`'s submission
/// listener; `args` follow the three arguments of [`PY_SUBMIT`].
pub fn python_submit(server: &TestServer, script: &str, args: &[&str]) -> CmdOutput {
    let port = server.ports.submission.to_string();
    let mut all = vec![port.as_str(), USER, PASSWORD];
    all.extend(args);
    python(&format!("{PY_UNVERIFIED}{PY_SUBMIT}{script}"), &all)
}

/// Submits one message from alice to `to` (addresses separated by commas) over submission
/// (STARTTLS + AUTH) with smtplib.
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
to, subject, mail_params, rcpt_params, headers = sys.argv[4:9]
s = login()
msg = "From: %s\r\nTo: %s\r\nSubject: %s\r\n%s\r\nHello from the delivery test.\r\n" % (user, to, subject, headers)
s.sendmail(user, to.split(","), msg, mail_options=mail_params.split(), rcpt_options=rcpt_params.split())
s.quit()
"#;
    let headers = if headers.is_empty() {
        String::new()
    } else {
        format!("{headers}\r\n")
    };
    python_submit(
        server,
        SCRIPT,
        &[to, subject, mail_params, rcpt_params, &headers],
    )
    .assert_ok();
}

/// base64 of `alice`'s AUTH PLAIN credentials ("\0user\0password").
pub fn auth_plain(user: &str, password: &str) -> String {
    base64(format!("\0{user}\0{password}").as_bytes())
}

/// The command `AUTH PLAIN <credentials>`.
pub fn auth_plain_cmd(user: &str, password: &str) -> String {
    format!("AUTH PLAIN {}", auth_plain(user, password))
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
