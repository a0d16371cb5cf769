//! Holding up on the open Internet: connection budgets per listener, timeouts that tighten
//! under pressure, refusals on implicit-TLS ports after the handshake, and AUTH that strangers
//! can neither exhaust nor turn against the owner. Real server, real TLS clients (Python).

mod common;

use common::*;

/// Python: `ctx` plus `src(i)`, a distinct loopback source address in its own /24 per `i`
/// (Linux routes all of 127.0.0.0/8 to loopback), so each client is a different stranger.
fn prelude(script: &str) -> String {
    format!(
        "{PY_UNVERIFIED}\nimport socket, smtplib, imaplib, sys, time, threading, base64\n\
         def src(i):\n    return (\"127.%d.%d.1\" % (1 + i // 250, i % 250), 0)\n{script}"
    )
}

/// A connection refused on an implicit-TLS listener is told why over TLS (a client reading
/// plaintext there sees only a TLS error), on submissions and on IMAP.
#[test]
fn implicit_tls_refusals_come_after_the_handshake() {
    let server = TestServer::start_with(
        "",
        &format!("[limits]\nmax_connections_per_ip = 1\n{FAST_AUTH}"),
    );
    const SCRIPT: &str = r#"
for port in sys.argv[1:3]:
    # The first connection takes the address's only slot (its handshake never starts).
    hold = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    time.sleep(0.3)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=10),
                        server_hostname="localhost")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(port, data.decode().strip())
    hold.close()
    time.sleep(0.3)
"#;
    let (subs, imaps) = (
        server.ports.submissions.to_string(),
        server.ports.imaps.to_string(),
    );
    let out = python(&prelude(SCRIPT), &[&subs, &imaps]);
    out.assert_ok();
    assert!(
        out.stdout.contains(&format!(
            "{subs} 421 4.7.0 localhost Too many connections from your address"
        )),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains(&format!(
            "{imaps} * BYE [UNAVAILABLE] Too many connections from your address"
        )),
        "{}",
        out.all()
    );
}

/// Strangers filling port 25 take only its share of the connections: submission and IMAP
/// logins still succeed at once, the flood beyond the share is refused, and idle connections
/// are dropped after the short pressure timeout instead of the 5-minute one, so a sender that
/// comes later gets in.
#[test]
fn port_25_flood_leaves_submission_and_imap_open() {
    let server =
        TestServer::start_with("", &format!("[limits]\nmax_connections = 60\n{FAST_AUTH}"));
    const SCRIPT: &str = r#"
smtp, subs, imaps, n, user, pw = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
flood = [socket.create_connection(("127.0.0.1", smtp), timeout=30, source_address=src(i))
         for i in range(n)]
time.sleep(1)
t = time.time()
c = smtplib.SMTP_SSL("127.0.0.1", subs, context=ctx, timeout=10)
c.login(user, pw)
c.quit()
print("submission_s", round(time.time() - t, 2))
t = time.time()
m = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=ctx, timeout=10)
m.login(user, pw)
m.logout()
print("imap_s", round(time.time() - t, 2))
# The flood beyond port 25's share was told so at once; the rest got the greeting.
admitted = refused = 0
for s in flood:
    s.settimeout(5)
    data = s.recv(4096)
    if b"Too many connections" in data:
        refused += 1
    elif data.startswith(b"220 "):
        admitted += 1
print("admitted", admitted)
print("refused", refused)
# Under pressure the idle ones get 10 s, not 5 minutes: soon the listener has room again.
time.sleep(12)
late = socket.create_connection(("127.0.0.1", smtp), timeout=10, source_address=src(n))
print("late", late.recv(4096)[:4].decode().strip())
"#;
    let args = [
        server.ports.smtp.to_string(),
        server.ports.submissions.to_string(),
        server.ports.imaps.to_string(),
        "90".to_string(),
        USER.to_string(),
        PASSWORD.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(&prelude(SCRIPT), &args);
    assert!(out.status.success(), "{}\n{}", out.all(), server.logs());
    let r = results(&out);
    for login in ["submission_s", "imap_s"] {
        let secs: f64 = get(&r, login).parse().unwrap();
        assert!(secs < 5.0, "{login} took {secs} s during the flood");
    }
    // Port 25's share: half of the 60 connections.
    assert_eq!(get(&r, "admitted"), "30", "{}", out.all());
    assert_eq!(get(&r, "refused"), "60", "{}", out.all());
    assert_eq!(get(&r, "late"), "220", "{}", out.all());
}

/// 100 wrong passwords at once, each from another network, for one account: at most the
/// account's limit of them is checked (535), the rest are refused unchecked (454), and the
/// owner, who logged in from this address before, still gets in.
#[test]
fn concurrent_guesses_neither_exhaust_nor_lock_out() {
    let server = TestServer::start();
    const SCRIPT: &str = r#"
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def login(password, source=None):
    c = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=30, source_address=source)
    c.ehlo("client.example")
    cred = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
    code, _ = c.docmd("AUTH", "PLAIN " + cred)
    try:
        c.quit()
    except Exception:
        pass
    return code
print("owner_before", login(pw))
codes = []
def guess(i):
    codes.append(login("guess%d" % i, src(i)))
threads = [threading.Thread(target=guess, args=(i,)) for i in range(100)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("checked", codes.count(535))
print("refused", codes.count(454))
print("other", len(codes) - codes.count(535) - codes.count(454))
print("owner_after", login(pw))
"#;
    let port = server.ports.submissions.to_string();
    let out = python(&prelude(SCRIPT), &[&port, USER, PASSWORD]);
    out.assert_ok();
    let r = results(&out);
    assert_eq!(get(&r, "owner_before"), "235", "{}", out.all());
    let checked: u32 = get(&r, "checked").parse().unwrap();
    // The limit (10), plus the slow lane's one check once the account is over it.
    assert!((10..=11).contains(&checked), "{}", out.all());
    assert_eq!(get(&r, "other"), "0", "{}", out.all());
    assert_eq!(get(&r, "owner_after"), "235", "{}", out.all());
}

/// The memory all sessions may hold for messages in transit is bounded: sessions hold message
/// data in memory up to 256 KiB (then it goes to the spool), and a message that would pass the
/// budget is answered 452 4.3.1 at its end while those holding the memory go through; the
/// refused sender's retry is accepted once there is room.
#[test]
fn messages_in_transit_stay_within_the_memory_budget() {
    let server = TestServer::start_with(
        "",
        &format!("[limits]\nmax_message_size = 2000000\nmax_data_in_flight = 524288\n{FAST_AUTH}"),
    );
    const SCRIPT: &str = r#"
port, rcpt = int(sys.argv[1]), sys.argv[2]
def sender():
    return in_data(port, rcpt)
line = b"y" * 998 + b"\r\n"
# a and b each hold 200 kB (under the 256 KiB that go to the spool); c cannot get its share.
a, a_reply = sender()
b, b_reply = sender()
c, c_reply = sender()
a.sendall(b"Subject: a\r\n\r\n" + line * 200)
b.sendall(b"Subject: b\r\n\r\n" + line * 200)
time.sleep(0.5)
c.sendall(b"Subject: c\r\n\r\n" + line * 200)
time.sleep(0.5)
c.sendall(b".\r\n")
print("c", c_reply())
a.sendall(b".\r\n")
print("a", a_reply())
b.sendall(b".\r\n")
print("b", b_reply())
d, d_reply = sender()
d.sendall(b"Subject: c again\r\n\r\n" + line * 200 + b".\r\n")
print("retry", d_reply())
"#;
    let port = server.ports.smtp.to_string();
    let out = python(&prelude(&format!("{SMTP_RAW}{SCRIPT}")), &[&port, USER]);
    let r = results(&out);
    assert!(get(&r, "c").starts_with("452 4.3.1 "), "{}", out.all());
    assert!(get(&r, "a").starts_with("250 2.0.0 "), "{}", out.all());
    assert!(get(&r, "b").starts_with("250 2.0.0 "), "{}", out.all());
    assert!(get(&r, "retry").starts_with("250 2.0.0 "), "{}", out.all());
    assert_eq!(server.inbox(USER).len(), 3);
}

/// Python: `session(port, rcpt)` opens an SMTP session to the MAIL/RCPT point and returns the
/// socket and `reply()` (the last line of the next reply); `in_data(port, rcpt)` goes on into DATA.
const SMTP_RAW: &str = r#"
def session(port, rcpt):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    def reply():
        lines = [f.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(f.readline())
        return lines[-1].decode().strip()
    reply()
    for cmd in ("EHLO c.example", "MAIL FROM:<a@outside.example>", "RCPT TO:<%s>" % rcpt):
        s.sendall(cmd.encode() + b"\r\n")
        reply()
    return s, reply
def in_data(port, rcpt):
    s, reply = session(port, rcpt)
    s.sendall(b"DATA\r\n")
    reply()
    return s, reply
"#;

/// Messages larger than what a session keeps in memory go through the spool file and are
/// stored exactly: a 3 MB DATA message with dot-stuffed lines, and a BDAT message whose chunks
/// cut CRLF pairs apart; nothing is left in the spool directory.
#[test]
fn large_messages_pass_through_the_spool_intact() {
    let server = TestServer::start_with("", FAST_AUTH);
    let script = format!(
        "{SMTP_RAW}{}",
        r#"
port, rcpt = int(sys.argv[1]), sys.argv[2]
body = b"".join(b".line %d " % i + b"z" * (i % 700) + b"\r\n" for i in range(6000))
data = b"Subject: big data\r\n\r\n" + body
s, reply = session(port, rcpt)
s.sendall(b"DATA\r\n")
reply()
s.sendall(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
print("data", reply())
chunked = b"Subject: big bdat\r\n\r\n" + body
s.sendall(b"MAIL FROM:<a@outside.example>\r\nRCPT TO:<%s>\r\n" % rcpt.encode())
reply(); reply()
at, n = 0, 0
while at < len(chunked):
    size = 300001 + n  # odd sizes: chunk ends fall between CR and LF
    chunk = chunked[at:at + size]
    last = at + size >= len(chunked)
    s.sendall(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
    r = reply()
    at, n = at + size, n + 1
print("bdat", r, n)
open(sys.argv[3], "wb").write(data)
"#
    );
    let port = server.ports.smtp.to_string();
    let sent = server.dir.path().join("sent");
    let out = python(&prelude(&script), &[&port, USER, sent.to_str().unwrap()]);
    let r = results(&out);
    assert!(get(&r, "data").starts_with("250 2.0.0 "), "{}", out.all());
    assert!(get(&r, "bdat").starts_with("250 2.0.0 "), "{}", out.all());
    let data = String::from_utf8(std::fs::read(&sent).unwrap()).unwrap();
    assert!(data.len() > 2_000_000, "{}", data.len());
    let inbox = server.inbox(USER);
    assert_eq!(inbox.len(), 2);
    let bdat = data.replace("Subject: big data", "Subject: big bdat");
    for (stored, sent) in inbox.iter().zip([&data, &bdat]) {
        assert!(stored.starts_with("Return-Path: <a@outside.example>\r\nReceived: "));
        assert!(stored.ends_with(sent.as_str()), "stored message differs");
        assert_eq!(stored.find("\r\n\r\n"), stored.find("\r\n\r\n.line 0 "));
    }
    let spool = std::fs::read_dir(server.dir.path().join("data").join("spool")).unwrap();
    assert_eq!(spool.count(), 0, "spool files left behind");
}

/// When message data cannot go to disk (the spool directory is gone), the message is refused
/// with 452 4.3.1 at its end, never accepted and lost; the next one goes through once the
/// directory is back.
#[test]
fn a_spool_failure_is_a_temporary_refusal() {
    let server = TestServer::start_with("", FAST_AUTH);
    let spool = server.dir.path().join("data").join("spool");
    std::fs::remove_dir(&spool).unwrap();
    let script = format!(
        "{SMTP_RAW}{}",
        r#"
port, rcpt, spool = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600 + b".\r\n"
s, reply = session(port, rcpt)
s.sendall(b"DATA\r\n")
reply()
s.sendall(data)
print("gone", reply())
os.mkdir(spool)
s.sendall(b"MAIL FROM:<a@outside.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt.encode())
reply(); reply(); reply()
s.sendall(data)
print("back", reply())
"#
    );
    let port = server.ports.smtp.to_string();
    let out = python(
        &prelude(&format!("import os\n{script}")),
        &[&port, USER, spool.to_str().unwrap()],
    );
    let r = results(&out);
    assert!(get(&r, "gone").starts_with("452 4.3.1 "), "{}", out.all());
    assert!(get(&r, "back").starts_with("250 2.0.0 "), "{}", out.all());
    assert_eq!(server.inbox(USER).len(), 1);
    assert!(server.logs().contains("cannot spool message data"));
}

/// IMAP APPEND messages are held in memory while they arrive, so they count against the same
/// budget: while an SMTP session holds 200 kB of a 524288-octet budget, an APPEND of 400 kB is
/// refused with NO [UNAVAILABLE] before the client sends it; once the SMTP message is stored,
/// the same APPEND goes through.
#[test]
fn imap_append_shares_the_memory_budget() {
    let server = TestServer::start_with(
        "",
        &format!("[limits]\nmax_message_size = 2000000\nmax_data_in_flight = 524288\n{FAST_AUTH}"),
    );
    let script = format!(
        "{SMTP_RAW}{}",
        r#"
s, reply = in_data(SMTP, USER)
s.sendall(b"Subject: held\r\n\r\n" + (b"y" * 998 + b"\r\n") * 200)
time.sleep(0.5)
message = b"Subject: appended\r\n\r\n" + (b"z" * 998 + b"\r\n") * 400
r = conn()
r.send(b"a APPEND INBOX {%d}\r\n" % len(message))
out("BUSY", r.line())
s.sendall(b".\r\n")
out("SMTP", reply())
r.send(b"b APPEND INBOX {%d}\r\n" % len(message))
out("CONT", r.line())
r.send(message + b"\r\n")
out("APPEND", r.until("b")[-1])
"#
    );
    let r = imap_py(&server, &script);
    assert!(get(&r, "BUSY").starts_with("a NO [UNAVAILABLE]"), "{r:?}");
    assert!(get(&r, "SMTP").starts_with("250 2.0.0 "), "{r:?}");
    assert!(get(&r, "CONT").starts_with("+ "), "{r:?}");
    assert!(get(&r, "APPEND").starts_with("b OK [APPENDUID "), "{r:?}");
    assert_eq!(server.inbox(USER).len(), 2);
}
