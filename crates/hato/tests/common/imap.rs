//! IMAP tests' Python prelude and runner.

use std::collections::HashMap;

use super::{PASSWORD, PY_UNVERIFIED, TestServer, USER, deliver_to_alice, python, results};

/// Python prelude: arguments (imap port, imaps port, smtp port, user, password), `ctx` (an
/// unverifying TLS context), `out()` (a "KEY value" line), `login()` (imaplib over implicit
/// TLS), `deliver()` (a message to the user over SMTP), `flat()` (imaplib data as text), `Raw`
/// (byte-level conversations: `line()` and `until(tag)` as text; `response()`, `responses(tag)`
/// and `cmd(tag, text)` with literals, as `(text, [literal bytes])`), `plain()` (a socket to
/// the plaintext port and a `Raw` on it, greeting unread) and `conn()` (a logged-in `Raw` over
/// implicit TLS).
const PY_PRELUDE: &str = r#"
import imaplib, smtplib, socket, sys, time, re, threading, random
IMAP, IMAPS, SMTP, USER, PASS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def out(k, v):
    print(k, v, flush=True)
def login():
    c = imaplib.IMAP4_SSL("127.0.0.1", IMAPS, ssl_context=ctx)
    c.login(USER, PASS)
    return c
def deliver(subject, body="hello"):
    msg = "From: Bob <bob@sender.example>\r\nTo: %s\r\nSubject: %s\r\n\r\n%s\r\n" % (USER, subject, body)
    s = smtplib.SMTP("127.0.0.1", SMTP)
    s.sendmail("bob@sender.example", [USER], msg)
    s.quit()
def flat(data):
    return b" ".join(x if isinstance(x, bytes) else b" ".join(x) for x in data if x is not None).decode("latin1")
class Raw:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""
    def send(self, b):
        self.s.sendall(b)
    def fill(self, timeout):
        self.s.settimeout(timeout)
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError(self.buf)
        self.buf += d
    def raw_line(self, timeout=30):
        while b"\r\n" not in self.buf:
            self.fill(timeout)
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l
    def line(self, timeout=5):
        return self.raw_line(timeout).decode("latin1")
    def until(self, tag, timeout=5):
        lines = []
        while True:
            l = self.line(timeout)
            lines.append(l)
            if l.startswith(tag + " "):
                return lines
    # One response: a line, with its literals (returned as (text, [literal bytes])).
    def response(self, timeout=30):
        text = b""
        lits = []
        while True:
            l = self.raw_line(timeout)
            text += l
            m = re.search(rb"\{(\d+)\}$", l)
            if not m:
                return text.decode("latin1"), lits
            n = int(m.group(1))
            while len(self.buf) < n:
                self.fill(timeout)
            lits.append(self.buf[:n])
            text += b"<literal>"
            self.buf = self.buf[n:]
    def responses(self, tag, timeout=60):
        lines = []
        while True:
            t, lits = self.response(timeout)
            lines.append((t, lits))
            if t.startswith(tag + " "):
                return lines
    def cmd(self, tag, text, timeout=60):
        self.send(("%s %s\r\n" % (tag, text)).encode())
        return self.responses(tag, timeout)
def plain():
    s = socket.create_connection(("127.0.0.1", IMAP))
    return s, Raw(s)
def conn():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", IMAPS)), server_hostname="localhost")
    r = Raw(s)
    r.raw_line()
    r.cmd("L", "LOGIN \"%s\" \"%s\"" % (USER, PASS))
    return r
"#;

/// Runs `script` after the IMAP prelude against `server`; the "KEY value" lines it printed.
/// Panics with the server's log if the script fails.
pub fn imap_py(server: &TestServer, script: &str) -> HashMap<String, String> {
    let full = format!("{PY_UNVERIFIED}{PY_PRELUDE}\n{script}");
    let ports = [
        server.ports.imap.to_string(),
        server.ports.imaps.to_string(),
        server.ports.smtp.to_string(),
    ];
    let out = python(&full, &[&ports[0], &ports[1], &ports[2], USER, PASSWORD]);
    if !out.status.success() {
        panic!(
            "script failed:\n{}\nserver log:\n{}",
            out.all(),
            server.logs()
        );
    }
    results(&out)
}

/// A new server (default configuration) with `messages` delivered to alice, and what `script`
/// printed when run against it ([`imap_py`]).
pub fn imap_py_new(messages: &[String], script: &str) -> (TestServer, HashMap<String, String>) {
    let server = TestServer::start();
    if !messages.is_empty() {
        deliver_to_alice(&server, messages);
    }
    let r = imap_py(&server, script);
    (server, r)
}
