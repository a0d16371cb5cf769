//! POP3 with real clients against the real binary: Python's poplib (STLS and implicit TLS), curl,
//! fetchmail and openssl s_client, plus byte-exact conversations for the security rules (STLS
//! injection, the maildrop lock, deletion only at QUIT, the AUTH throttle shared with SMTP). Mail
//! reaches the INBOX over SMTP first. Each test starts its own server.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A message as a sender would submit it, its body of `body_lines`.
fn message_lines(subject: &str, body_lines: &[&str]) -> String {
    message(subject, &body_lines.join("\r\n"))
}

/// Delivers `n` small numbered messages to alice over SMTP.
fn deliver_numbered(server: &TestServer, n: usize) -> Vec<String> {
    let msgs: Vec<String> = (1..=n)
        .map(|i| {
            message_lines(
                &format!("pop3 test {i}"),
                &[&format!("line one of {i}"), "line two", "line three"],
            )
        })
        .collect();
    deliver_to_alice(server, &msgs)
}

/// A server with `n` small numbered messages delivered to alice; the messages as stored.
fn server_with_numbered(n: usize) -> (TestServer, Vec<String>) {
    let server = TestServer::start();
    let stored = deliver_numbered(&server, n);
    (server, stored)
}

/// The reply to QUIT (without CRLF) with `left` (`1 message`, `2 messages`) left.
fn signing_off(left: &str) -> String {
    format!("+OK localhost POP3 server signing off ({left} left)")
}

/// The "n size" lines (joined by `|`) a LIST of `stored` must show.
fn list_lines(stored: &[String]) -> String {
    stored
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}", i + 1, m.len()))
        .collect::<Vec<_>>()
        .join("|")
}

/// Python prelude: `port` (POP3 over implicit TLS), `stls_port` (POP3 with STLS), `smtp_port`,
/// `user` and `pw` from the arguments [`poplib`] passes, `hexlines` (poplib's
/// unstuffed lines back to message bytes, as hex), `text` (a response or the `-ERR` line of an
/// exception), `attempt` (a command's response, `+OK` or `-ERR`), `joined` (multi-line response
/// lines joined by `|`), `listing` and `retrieved` (print a multi-line response, or a message
/// RETR or TOP got, under a key), `drop` (close without QUIT) and `login` (USER/PASS over
/// implicit TLS, optionally retrying while the maildrop is `[IN-USE]`).
const PY_PRELUDE: &str = r#"
import base64, poplib, socket, sys, time
port, stls_port, smtp_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
user, pw = sys.argv[4], sys.argv[5]
def hexlines(lines):
    return b"".join(l + b"\r\n" for l in lines).hex()
def text(x):
    if isinstance(x, Exception):
        x = x.args[0]
    return x.decode() if isinstance(x, bytes) else str(x)
def attempt(f, *args):
    try:
        return text(f(*args))
    except poplib.error_proto as e:
        return text(e)
def joined(lines):
    return "|".join(l.decode() for l in lines)
def listing(key, response):
    # A multi-line response (resp, lines, octets): the status line as key + "RESP", the lines
    # joined by "|" as key.
    resp, lines, _ = response
    print(key + "RESP", text(resp))
    print(key, joined(lines))
def retrieved(key, response):
    # RETR's or TOP's response (resp, lines, octets): the status line as key + "RESP", the
    # message as hex as key, and the octets poplib counted as key + "OCTETS".
    resp, lines, octets = response
    print(key + "RESP", text(resp))
    print(key, hexlines(lines))
    print(key + "OCTETS", octets)
def drop(p):
    # Close the TCP connection without QUIT (and without a TLS close_notify).
    p.sock.shutdown(socket.SHUT_RDWR)
    p.sock.close()
    p.file.close()
def login(retry_in_use=0.0):
    # Logs in over implicit TLS; retries while the maildrop is still locked (a dropped
    # connection is noticed by the server asynchronously). Returns (connection, attempts).
    start = time.time()
    attempts = 0
    while True:
        attempts += 1
        p = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=ctx)
        p.user(user)
        try:
            p.pass_(pw)
            return p, attempts
        except poplib.error_proto as e:
            p.close()
            if b"[IN-USE]" not in e.args[0] or time.time() - start > retry_in_use:
                raise
            time.sleep(0.05)
"#;

/// Runs `script` after the prelude for alice against `server`.
fn poplib(server: &TestServer, script: &str) -> HashMap<String, String> {
    let ports = [server.ports.pop3s, server.ports.pop3, server.ports.smtp].map(|p| p.to_string());
    results(&python(
        &format!("{PY_UNVERIFIED}{PY_PRELUDE}{script}"),
        &[&ports[0], &ports[1], &ports[2], USER, PASSWORD],
    ))
}

const GREETING: &str = "+OK localhost hato POP3 server ready\r\n";
const CAPA_PLAIN: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
    AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION hato\r\n.\r\n";
const CAPA_TLS: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
    AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION hato\r\n.\r\n";
const TLS_ACTIVE: &str = "-ERR Command not permitted when TLS active";
const THROTTLED: &str =
    "-ERR [SYS/TEMP] Too many failed authentication attempts, try again later\r\n";

/// The capabilities of a CAPA response (`capa`, as on the wire) as [`joined`] lines.
fn capa_lines(capa: &str) -> String {
    let lines: Vec<&str> = capa.split("\r\n").collect();
    // The status line first; the terminating "." and the empty rest after its CRLF last.
    lines[1..lines.len() - 2].join("|")
}

/// A POP3 [`conversation`] with `server` over implicit TLS: reads the greeting (asserted), then
/// `steps`; their recordings.
fn pop3s_conv(server: &TestServer, steps: &[&str]) -> Vec<String> {
    greeted(conversation(
        server.ports.pop3s,
        true,
        &with_greeting(steps),
    ))
}

/// [`pop3s_conv`] in plaintext, on the STLS listener.
fn stls_conv(server: &TestServer, steps: &[&str]) -> Vec<String> {
    greeted(conversation(
        server.ports.pop3,
        false,
        &with_greeting(steps),
    ))
}

/// `steps` after a step reading the greeting.
fn with_greeting<'a>(steps: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["line"];
    all.extend(steps);
    all
}

/// The recordings after the first, the greeting (asserted).
fn greeted(mut got: Vec<String>) -> Vec<String> {
    assert_eq!(got.first().map(String::as_str), Some(GREETING), "{got:#?}");
    got.remove(0);
    got
}

/// The step that sends USER alice and PASS `password` in one write.
fn user_pass(password: &str) -> String {
    format!("send:USER {USER}\r\nPASS {password}\r\n")
}

// ---------------------------------------------------------------------------------------------
// poplib

/// UIDL over implicit TLS, then QUIT (deletes nothing).
const POPLIB_UIDL: &str = r#"
p, _ = login(retry_in_use=5)
listing("UIDL", p.uidl())
print("QUIT", text(p.quit()))
"#;

fn uidl(server: &TestServer) -> Vec<String> {
    let r = poplib(server, POPLIB_UIDL);
    assert!(get(&r, "QUIT").starts_with("+OK localhost POP3 server signing off"));
    get(&r, "UIDL")
        .split('|')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

const POPLIB_STLS: &str = r#"
p = poplib.POP3("127.0.0.1", stls_port, timeout=10)
print("WELCOME", text(p.getwelcome()))
listing("CAPA1", p._longcmd("CAPA"))
print("POPLIBCAPA1", ",".join(sorted(p.capa())))
print("USER1", attempt(p.user, user))
print("PASS1", attempt(p.pass_, pw))
cred = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
print("AUTH1", attempt(p._shortcmd, "AUTH PLAIN " + cred))
print("STLS", text(p.stls(context=ctx)))
print("TLS", p.sock.version())
listing("CAPA2", p._longcmd("CAPA"))
print("POPLIBCAPA2", ",".join(sorted(p.capa())))
print("STLS2", attempt(p._shortcmd, "STLS"))
print("USER2", text(p.user(user)))
print("PASS2", text(p.pass_(pw)))
print("STAT", text(p._shortcmd("STAT")))
listing("LIST", p.list())
print("LIST1", text(p.list(1)))
listing("UIDL", p.uidl())
print("UIDL2", text(p.uidl(2)))
for i in (1, 2, 3):
    retrieved("RETR%d" % i, p.retr(i))
retrieved("TOP12", p.top(1, 2))
retrieved("TOP10", p.top(1, 0))
print("RETR4", attempt(p.retr, 4))
print("DELE", text(p.dele(1)))
print("DELEAGAIN", attempt(p.dele, 1))
print("RETRDELETED", attempt(p.retr, 1))
print("STAT2", text(p._shortcmd("STAT")))
listing("LIST2", p.list())
print("QUIT", text(p.quit()))
"#;

#[test]
fn poplib_stls_capabilities_commands_and_stable_uidls() {
    let (mut server, stored) = server_with_numbered(3);

    // UIDLs: one per message, distinct, identical across sessions.
    let first = uidl(&server);
    assert_eq!(first.len(), 3, "{first:?}");
    let ids: Vec<&str> = first
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (n, id) = l.split_once(' ').unwrap();
            assert_eq!(n, (i + 1).to_string(), "{first:?}");
            assert!(
                !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "{id:?}"
            );
            id
        })
        .collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert_eq!(uidl(&server), first);

    let r = poplib(&server, POPLIB_STLS);
    // Before TLS: STLS offered, no USER/SASL, and no password is accepted.
    assert_eq!(get(&r, "WELCOME"), GREETING.trim_end());
    assert_eq!(get(&r, "CAPA1"), capa_lines(CAPA_PLAIN));
    assert_eq!(
        get(&r, "POPLIBCAPA1"),
        "AUTH-RESP-CODE,IMPLEMENTATION,PIPELINING,RESP-CODES,STLS,TOP,UIDL"
    );
    let refused = "-ERR [AUTH] Must issue STLS command first";
    assert_eq!(get(&r, "USER1"), refused);
    assert_eq!(get(&r, "PASS1"), refused);
    assert_eq!(get(&r, "AUTH1"), refused);
    // After STLS: USER and SASL PLAIN, no STLS.
    assert_eq!(get(&r, "STLS"), "+OK Begin TLS negotiation");
    assert_eq!(get(&r, "TLS"), "TLSv1.3");
    assert_eq!(get(&r, "CAPA2"), capa_lines(CAPA_TLS));
    assert_eq!(
        get(&r, "POPLIBCAPA2"),
        "AUTH-RESP-CODE,IMPLEMENTATION,PIPELINING,RESP-CODES,SASL,TOP,UIDL,USER"
    );
    assert_eq!(get(&r, "STLS2"), TLS_ACTIVE);
    assert_eq!(get(&r, "USER2"), "+OK send PASS");
    assert_eq!(get(&r, "PASS2"), "+OK maildrop locked and ready");

    // The listing matches the store; sizes are the octets RETR sends (CRLF line endings).
    let sizes: Vec<usize> = stored.iter().map(String::len).collect();
    let total: usize = sizes.iter().sum();
    assert_eq!(get(&r, "STAT"), format!("+OK 3 {total}"));
    assert_eq!(
        get(&r, "LISTRESP"),
        format!("+OK 3 messages ({total} octets)")
    );
    assert_eq!(get(&r, "LIST"), list_lines(&stored));
    assert_eq!(get(&r, "LIST1"), format!("+OK 1 {}", sizes[0]));
    assert_eq!(get(&r, "UIDLRESP"), "+OK unique-id listing follows");
    assert_eq!(get(&r, "UIDL"), first.join("|"));
    assert_eq!(get(&r, "UIDL2"), format!("+OK {}", first[1]));
    for (i, m) in stored.iter().enumerate() {
        let n = i + 1;
        assert_eq!(
            get(&r, &format!("RETR{n}RESP")),
            format!("+OK {} octets", m.len())
        );
        let got = unhex_text(get(&r, &format!("RETR{n}")));
        assert_eq!(&got, m, "RETR {n}");
        assert_eq!(get(&r, &format!("RETR{n}OCTETS")), m.len().to_string());
        assert!(
            m.ends_with(&format!(
                "\r\n\r\nline one of {n}\r\nline two\r\nline three\r\n"
            )),
            "{m}"
        );
        assert!(
            m.starts_with("Return-Path: <bob@sender.example>\r\n"),
            "{m}"
        );
    }
    // TOP: the header, the empty line and the first n body lines.
    let head = headers(&stored[0]);
    assert_eq!(get(&r, "TOP12RESP"), "+OK top of message follows");
    assert_eq!(
        unhex_text(get(&r, "TOP12")),
        format!("{head}\r\n\r\nline one of 1\r\nline two\r\n")
    );
    assert_eq!(unhex_text(get(&r, "TOP10")), format!("{head}\r\n\r\n"));
    assert_eq!(
        get(&r, "RETR4"),
        "-ERR no such message, only 3 messages in maildrop"
    );
    // DELE marks; the listing hides the message; QUIT removes it.
    assert_eq!(get(&r, "DELE"), "+OK message 1 deleted");
    assert_eq!(get(&r, "DELEAGAIN"), "-ERR message 1 already deleted");
    assert_eq!(get(&r, "RETRDELETED"), "-ERR message 1 already deleted");
    assert_eq!(get(&r, "STAT2"), format!("+OK 2 {}", sizes[1] + sizes[2]));
    assert_eq!(
        get(&r, "LIST2RESP"),
        format!("+OK 2 messages ({} octets)", sizes[1] + sizes[2])
    );
    assert_eq!(get(&r, "LIST2"), format!("2 {}|3 {}", sizes[1], sizes[2]));
    assert_eq!(get(&r, "QUIT"), signing_off("2 messages"));
    assert_eq!(server.inbox(USER), stored[1..].to_vec());

    // The remaining messages keep their unique-ids (renumbered), also after a restart.
    let after = uidl(&server);
    let expect = vec![format!("1 {}", ids[1]), format!("2 {}", ids[2])];
    assert_eq!(after, expect);
    server.kill();
    server.spawn();
    assert_eq!(uidl(&server), expect);
    assert_eq!(server.inbox(USER), stored[1..].to_vec());
}

const POPLIB_IMPLICIT: &str = r#"
cred = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
# AUTH PLAIN with an initial response.
p = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=ctx)
print("WELCOME", text(p.getwelcome()))
print("TLS", p.sock.version())
listing("CAPA", p._longcmd("CAPA"))
print("STLS", attempt(p._shortcmd, "STLS"))
resp, lines, _ = p._longcmd("AUTH")
print("MECHS", text(resp), joined(lines))
print("AUTHLOGIN", attempt(p._shortcmd, "AUTH LOGIN"))
print("AUTH", text(p._shortcmd("AUTH PLAIN " + cred)))
print("STAT", text(p._shortcmd("STAT")))
print("QUIT", text(p.quit()))
# AUTH PLAIN with an empty challenge.
p = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=ctx)
print("CHALLENGE", text(p._shortcmd("AUTH PLAIN")))
print("AUTH2", text(p._shortcmd(cred)))
retrieved("RETR", p.retr(1))
print("QUIT2", text(p.quit()))
# USER/PASS.
p = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=ctx)
print("USER", text(p.user(user)))
print("PASS", text(p.pass_(pw)))
print("STAT3", text(p._shortcmd("STAT")))
print("QUIT3", text(p.quit()))
"#;

#[test]
fn poplib_implicit_tls_auth_plain_and_user_pass() {
    let (server, stored) = server_with_numbered(1);
    let r = poplib(&server, POPLIB_IMPLICIT);
    let size = stored[0].len();
    assert_eq!(get(&r, "WELCOME"), GREETING.trim_end());
    assert_eq!(get(&r, "TLS"), "TLSv1.3");
    assert_eq!(get(&r, "CAPA"), capa_lines(CAPA_TLS));
    assert_eq!(get(&r, "STLS"), TLS_ACTIVE);
    assert_eq!(get(&r, "MECHS"), "+OK PLAIN");
    assert_eq!(
        get(&r, "AUTHLOGIN"),
        "-ERR Unrecognized authentication type"
    );
    assert_eq!(get(&r, "AUTH"), "+OK maildrop locked and ready");
    assert_eq!(get(&r, "STAT"), format!("+OK 1 {size}"));
    assert_eq!(get(&r, "QUIT"), signing_off("1 message"));
    assert_eq!(get(&r, "CHALLENGE"), "+ ");
    assert_eq!(get(&r, "AUTH2"), "+OK maildrop locked and ready");
    assert_eq!(unhex_text(get(&r, "RETR")), stored[0]);
    assert_eq!(get(&r, "QUIT2"), signing_off("1 message"));
    assert_eq!(get(&r, "USER"), "+OK send PASS");
    assert_eq!(get(&r, "PASS"), "+OK maildrop locked and ready");
    assert_eq!(get(&r, "STAT3"), format!("+OK 1 {size}"));
    assert_eq!(server.inbox(USER), stored);
}

// ---------------------------------------------------------------------------------------------
// UPDATE state and the maildrop lock

const POPLIB_DELETE_WITHOUT_QUIT: &str = r#"
p, _ = login()
print("DELE1", text(p.dele(1)))
print("DELE2", text(p.dele(2)))
print("STAT", text(p._shortcmd("STAT")))
drop(p)
# The server notices the dropped connection and releases the lock: nothing was deleted.
p, attempts = login(retry_in_use=5)
print("STAT2", text(p._shortcmd("STAT")))
print("DELE3", text(p.dele(1)))
print("RSET", text(p.rset()))
print("STAT3", text(p._shortcmd("STAT")))
print("QUIT", text(p.quit()))
"#;

#[test]
fn messages_are_removed_only_at_quit() {
    let (server, stored) = server_with_numbered(2);
    let total = stored[0].len() + stored[1].len();
    let r = poplib(&server, POPLIB_DELETE_WITHOUT_QUIT);
    assert_eq!(get(&r, "DELE1"), "+OK message 1 deleted");
    assert_eq!(get(&r, "DELE2"), "+OK message 2 deleted");
    assert_eq!(get(&r, "STAT"), "+OK 0 0");
    // Dropped without QUIT: both messages are still there.
    assert_eq!(get(&r, "STAT2"), format!("+OK 2 {total}"));
    // DELE, RSET, QUIT: still there.
    assert_eq!(get(&r, "DELE3"), "+OK message 1 deleted");
    assert_eq!(
        get(&r, "RSET"),
        format!("+OK maildrop has 2 messages ({total} octets)")
    );
    assert_eq!(get(&r, "STAT3"), format!("+OK 2 {total}"));
    assert_eq!(get(&r, "QUIT"), signing_off("2 messages"));
    assert_eq!(server.inbox(USER), stored);
}

const POPLIB_LOCK: &str = r#"
a, _ = login()
# A second session of the same account, while the first holds the maildrop.
b = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=ctx)
print("B_USER", text(b.user(user)))
print("B_PASS", attempt(b.pass_, pw))
print("B_CLOSED", b.file.read() == b"")
b.close()
# The same account under another spelling.
b = poplib.POP3_SSL("127.0.0.1", port, timeout=10, context=ctx)
b.user(user.upper())
print("B_UPPER", attempt(b.pass_, pw))
b.close()
# Also with AUTH PLAIN, and over STLS.
c = poplib.POP3("127.0.0.1", stls_port, timeout=10)
c.stls(context=ctx)
cred = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
print("C_AUTH", attempt(c._shortcmd, "AUTH PLAIN " + cred))
c.close()
# The first session is unaffected.
print("A_STAT", text(a._shortcmd("STAT")))
print("A_QUIT", text(a.quit()))
# After QUIT the lock is free.
d, attempts = login()
print("D_STAT", text(d._shortcmd("STAT")))
# After a dropped connection the lock is free again (once the server noticed).
drop(d)
e, attempts = login(retry_in_use=5)
print("E_STAT", text(e._shortcmd("STAT")))
print("E_QUIT", text(e.quit()))
"#;

#[test]
fn maildrop_lock_refuses_a_second_session_until_the_first_ends() {
    let (server, stored) = server_with_numbered(1);
    let r = poplib(&server, POPLIB_LOCK);
    let in_use = "-ERR [IN-USE] Maildrop is locked by another session";
    assert_eq!(get(&r, "B_USER"), "+OK send PASS");
    assert_eq!(get(&r, "B_PASS"), in_use);
    assert_eq!(get(&r, "B_CLOSED"), "True", "IN-USE must close");
    assert_eq!(get(&r, "B_UPPER"), in_use);
    assert_eq!(get(&r, "C_AUTH"), in_use);
    let stat = format!("+OK 1 {}", stored[0].len());
    assert_eq!(get(&r, "A_STAT"), stat);
    assert_eq!(get(&r, "A_QUIT"), signing_off("1 message"));
    assert_eq!(get(&r, "D_STAT"), stat);
    assert_eq!(get(&r, "E_STAT"), stat);
    assert_eq!(server.inbox(USER), stored);
}

#[test]
fn shutdown_during_a_session_deletes_nothing() {
    let (mut server, stored) = server_with_numbered(1);
    let marker = server.dir.path().join("dele-done");
    let login = format!("send:USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n");
    let touch = format!("touch:{}", marker.display());
    let mut cmd = conversation_cmd(
        server.ports.pop3s,
        true,
        &["line", &login, "line", "line", "line", &touch, "eof:15"],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("python3");
    wait_until(
        "the client getting to DELE",
        Duration::from_secs(20),
        || marker.exists(),
        String::new,
    );
    signal(server.pid(), "TERM");
    let got = conversation_result(&child.wait_with_output().unwrap().into());
    assert_eq!(
        got,
        [
            GREETING,
            "+OK send PASS\r\n",
            "+OK maildrop locked and ready\r\n",
            "+OK message 1 deleted\r\n",
            "EOF-ERR [SYS/TEMP] localhost POP3 server shutting down\r\n",
        ]
    );
    server.wait_exit(Duration::from_secs(15), "hato did not stop");
    assert_eq!(server.inbox(USER), stored);
}

const POPLIB_NEW_MAIL: &str = r#"
import smtplib
p, _ = login()
print("STAT", text(p._shortcmd("STAT")))
listing("UIDL", p.uidl())
s = smtplib.SMTP("127.0.0.1", smtp_port, timeout=10)
s.sendmail("bob@sender.example", [user],
           "From: bob@sender.example\r\nTo: %s\r\nSubject: arrived-during\r\n\r\nnew\r\n" % user)
s.quit()
print("STAT2", text(p._shortcmd("STAT")))
listing("LIST", p.list())
print("RETR2", attempt(p.retr, 2))
print("DELE", text(p.dele(1)))
print("QUIT", text(p.quit()))
p, _ = login(retry_in_use=5)
listing("UIDL2", p.uidl())
retrieved("NEW", p.retr(1))
print("QUIT2", text(p.quit()))
"#;

#[test]
fn mail_arriving_during_a_session_waits_for_the_next_one() {
    let (server, stored) = server_with_numbered(1);
    let r = poplib(&server, POPLIB_NEW_MAIL);
    // The listing is fixed at login (RFC 1939 5).
    let stat = format!("+OK 1 {}", stored[0].len());
    assert_eq!(get(&r, "STAT"), stat);
    assert_eq!(get(&r, "STAT2"), stat);
    assert_eq!(get(&r, "LIST"), format!("1 {}", stored[0].len()));
    assert_eq!(
        get(&r, "RETR2"),
        "-ERR no such message, only 1 messages in maildrop"
    );
    assert_eq!(get(&r, "DELE"), "+OK message 1 deleted");
    assert!(
        get(&r, "QUIT").starts_with("+OK localhost POP3 server signing off ("),
        "{}",
        get(&r, "QUIT")
    );
    // QUIT removed only the message it deleted; the new one has a new unique-id.
    let now = server.only_message(USER);
    assert!(now.contains("Subject: arrived-during\r\n"), "{now}");
    let (old_id, new_id) = (
        get(&r, "UIDL").split_once(' ').unwrap().1,
        get(&r, "UIDL2").split_once(' ').unwrap().1,
    );
    assert_eq!(get(&r, "UIDL2"), format!("1 {new_id}"));
    assert_ne!(old_id, new_id);
    assert_eq!(unhex_text(get(&r, "NEW")), now);
}

// ---------------------------------------------------------------------------------------------
// Byte-level rules

#[test]
fn too_many_errors_close_the_connection() {
    let server = TestServer::start();
    let got = pop3s_conv(
        &server,
        &[&format!("send:{}", "NOPE\r\n".repeat(11)), "eof:5"],
    );
    assert_eq!(
        got,
        [format!(
            "EOF{}-ERR Too many errors, closing connection\r\n",
            "-ERR Unknown command\r\n".repeat(10)
        )]
    );
}

#[test]
fn stls_discards_commands_pipelined_before_the_handshake() {
    let server = TestServer::start();
    let got = stls_conv(
        &server,
        &[
            "send:STLS\r\nUSER alice@example.test\r\n",
            "line",
            "tls:version",
            "silence:0.5",
            // Nothing of the injected USER survived: PASS has no USER to go with.
            "send:PASS correct horse battery staple\r\n",
            "line",
            "send:CAPA\r\n",
            "multi",
            "send:QUIT\r\n",
            "line",
            "eof:5",
        ],
    );
    assert_eq!(
        got,
        [
            "+OK Begin TLS negotiation\r\n",
            "TLS TLSv1.3",
            "SILENT",
            "-ERR Send USER first\r\n",
            CAPA_TLS,
            "+OK localhost POP3 server signing off\r\n",
            "EOF",
        ]
    );
}

#[test]
fn plaintext_capa_and_refusals_on_the_wire() {
    let server = TestServer::start();
    let got = stls_conv(
        &server,
        &[
            "send:CAPA\r\n",
            "multi",
            "send:USER alice@example.test\r\n",
            "line",
            "send:AUTH PLAIN\r\n",
            "line",
            "send:STAT\r\n",
            "line",
            "send:QUIT\r\n",
            "line",
            "eof:5",
        ],
    );
    assert_eq!(
        got,
        [
            CAPA_PLAIN,
            "-ERR [AUTH] Must issue STLS command first\r\n",
            "-ERR [AUTH] Must issue STLS command first\r\n",
            "-ERR Command not valid in AUTHORIZATION state\r\n",
            "+OK localhost POP3 server signing off\r\n",
            "EOF",
        ]
    );
}

const POPLIB_RETR_ONE: &str = r#"
p, _ = login()
retrieved("RETR", p.retr(1))
print("QUIT", text(p.quit()))
"#;

#[test]
fn dot_stuffing_round_trip() {
    let server = TestServer::start();
    let body = ["first", ".hidden", ".", "..two dots", "", ". space", "last"];
    let original = message_lines("dots", &body);
    let stored = deliver_to_alice(&server, std::slice::from_ref(&original));
    // SMTP removed exactly its own stuffing.
    assert!(stored[0].ends_with(&original), "{:?}", stored[0]);
    let size = stored[0].len();

    // poplib removes POP3's stuffing: the original lines again.
    let r = poplib(&server, POPLIB_RETR_ONE);
    assert_eq!(get(&r, "RETRRESP"), format!("+OK {size} octets"));
    assert_eq!(unhex_text(get(&r, "RETR")), stored[0]);
    assert_eq!(get(&r, "RETROCTETS"), size.to_string());

    // On the wire: every line starting with "." carries one more.
    let got = pop3s_conv(
        &server,
        &[
            &format!("send:USER {USER}\r\nPASS {PASSWORD}\r\nRETR 1\r\nTOP 1 3\r\nQUIT\r\n"),
            "line",
            "line",
            "multi",
            "multi",
            "line",
        ],
    );
    let head = headers(&stored[0]);
    assert_eq!(
        got,
        [
            "+OK send PASS\r\n".to_owned(),
            "+OK maildrop locked and ready\r\n".to_owned(),
            format!(
                "+OK {size} octets\r\n{head}\r\n\r\nfirst\r\n..hidden\r\n..\r\n...two dots\r\n\r\n.. space\r\nlast\r\n.\r\n"
            ),
            format!("+OK top of message follows\r\n{head}\r\n\r\nfirst\r\n..hidden\r\n..\r\n.\r\n"),
            "+OK localhost POP3 server signing off (1 message left)\r\n".to_owned(),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Authentication failures and the shared throttle

const THROTTLE: &str = "[auth]\nfailure_delay_ms = 50\nmax_failures_per_ip = 3\n";

#[test]
fn wrong_passwords_then_throttled_and_the_throttle_counts_for_smtp() {
    let server = TestServer::start_with("", THROTTLE);
    let got = pop3s_conv(
        &server,
        &[
            &user_pass("wrong one"),
            "line",
            "line",
            &format!("send:AUTH PLAIN {}\r\n", auth_plain(USER, "wrong two")),
            "line",
            &user_pass("wrong three"),
            "line",
            "line",
            // The right password, after three failures: refused, and the connection closes.
            &user_pass(PASSWORD),
            "line",
            "line",
            "eof:5",
        ],
    );
    let failed = "-ERR [AUTH] Authentication failed\r\n";
    assert_eq!(
        got,
        [
            "+OK send PASS\r\n",
            failed,
            failed,
            "+OK send PASS\r\n",
            failed,
            "+OK send PASS\r\n",
            THROTTLED,
            "EOF",
        ]
    );
    // A new POP3 connection is refused too.
    let got = pop3s_conv(&server, &[&user_pass(PASSWORD), "line", "line", "eof:5"]);
    assert_eq!(got, ["+OK send PASS\r\n", THROTTLED, "EOF"]);
    // And SMTP AUTH from the same address, with the right password.
    let got = submissions(&server, &[&auth_plain_cmd(USER, PASSWORD)]);
    assert_replies(&got, &["220 ", "250", "454 4.7.0"]);
}

#[test]
fn smtp_auth_failures_count_for_pop3() {
    let server = TestServer::start_with("", THROTTLE);
    // Three failed SMTP AUTHs on submission.
    let auths = ["wrong one", "wrong two", "wrong three"].map(|pw| auth_plain_cmd(USER, pw));
    let got = submissions(&server, &auths.each_ref().map(String::as_str));
    assert_replies(
        &got,
        &["220 ", "250", "535 5.7.8", "535 5.7.8", "535 5.7.8"],
    );
    // POP3 with the right password, over both POP3 listeners.
    let got = pop3s_conv(
        &server,
        &[
            &format!("send:AUTH PLAIN {}\r\n", auth_plain(USER, PASSWORD)),
            "line",
            "eof:5",
        ],
    );
    assert_eq!(got, [THROTTLED, "EOF"]);
    let got = stls_conv(
        &server,
        &[
            "send:STLS\r\n",
            "line",
            "tls:version",
            &user_pass(PASSWORD),
            "line",
            "line",
            "eof:5",
        ],
    );
    assert_eq!(
        got,
        [
            "+OK Begin TLS negotiation\r\n",
            "TLS TLSv1.3",
            "+OK send PASS\r\n",
            THROTTLED,
            "EOF",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// curl, fetchmail, openssl

#[test]
fn curl_retrieves_over_stls_and_lists_over_implicit_tls() {
    let (server, stored) = server_with_numbered(2);
    let creds = credentials();
    let first = format!("pop3://127.0.0.1:{}/1", server.ports.pop3);
    let out = curl(&["--ssl-reqd", "-k", &first, "-u", &creds]);
    out.assert_ok();
    assert_eq!(out.stdout, stored[0]);

    let list = format!("pop3s://127.0.0.1:{}/", server.ports.pop3s);
    let out = curl(&["-k", &list, "-u", &creds]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("1 {}\r\n2 {}\r\n", stored[0].len(), stored[1].len())
    );

    // Without --ssl-reqd curl would log in in plaintext if it could: hato refuses.
    let out = curl(&[&first, "-u", &creds]);
    assert!(!out.status.success(), "{}", out.all());
    assert_eq!(out.stdout, "");
    assert_eq!(server.inbox(USER), stored);
}

#[test]
fn fetchmail_downloads_and_deletes_over_implicit_tls() {
    let server = TestServer::start();
    let mut msgs = Vec::new();
    for i in 1..=3 {
        msgs.push(message_lines(
            &format!("fetchmail {i}"),
            &[&format!("body of {i}"), ".dotted", "end"],
        ));
    }
    let stored = deliver_to_alice(&server, &msgs);

    let mut files = fetchmail(&server, "pop3", server.ports.pop3s, " uidl", "nokeep", 3);
    files.sort_by_key(|f| stored.iter().position(|s| f.contains(&subject(s))));
    for (file, stored) in files.iter().zip(&stored) {
        // fetchmail adds its own Received header after the Return-Path; without that header
        // the file is the stored message, byte for byte.
        assert_eq!(
            without_fetchmail_received(file),
            *stored,
            "fetched:\n{file}"
        );
    }
    assert_eq!(server.inbox(USER), Vec::<String>::new());
}

/// `msg` without the (folded) Received header fetchmail adds (`... with POP3 (fetchmail-...)`).
fn without_fetchmail_received(msg: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut found = 0;
    for line in msg.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) && skipping {
            continue;
        }
        skipping = line.starts_with("Received: from 127.0.0.1 [127.0.0.1]\r\n");
        if skipping {
            found += 1;
            continue;
        }
        out.push_str(line);
    }
    assert_eq!(found, 1, "fetchmail's Received header: {msg}");
    assert!(msg.contains("with POP3 (fetchmail-"), "{msg}");
    out
}

/// The Subject of a stored message, as `Subject: ...` (to pair files with messages).
fn subject(msg: &str) -> String {
    format!("Subject: {}\r\n", header_values(msg, "Subject")[0])
}

#[test]
fn openssl_s_client_starttls_pop3_negotiates_tls13() {
    let server = TestServer::start();
    let out = s_client_for(server.ports.pop3, Some("pop3"), &[], "CAPA\nQUIT\n");
    let all = out.all();
    assert!(out.status.success(), "{all}");
    assert!(all.contains("New, TLSv1.3, Cipher is TLS_"), "{all}");
    assert!(all.contains("Protocol  : TLSv1.3"), "{all}");
    // Inside TLS: the post-STLS capabilities, then the sign-off.
    assert!(all.contains(CAPA_TLS), "{all}");
    assert!(
        all.contains("+OK localhost POP3 server signing off\r\n"),
        "{all}"
    );
}

// ---------------------------------------------------------------------------------------------
// Volume

const POPLIB_MANY: &str = r#"
p, _ = login()
print("STAT", text(p._shortcmd("STAT")))
listing("LIST", p.list())
listing("UIDL", p.uidl())
retrieved("RETR200", p.retr(200))
print("QUIT", text(p.quit()))
"#;

#[test]
fn two_hundred_messages() {
    let server = TestServer::start();
    let msgs: Vec<String> = (1..=200)
        .map(|i| message(&format!("bulk {i}"), &format!("bulk body {i}")))
        .collect();
    let stored = deliver_to_alice(&server, &msgs);
    let total: usize = stored.iter().map(String::len).sum();

    let r = poplib(&server, POPLIB_MANY);
    assert_eq!(get(&r, "STAT"), format!("+OK 200 {total}"));
    assert_eq!(
        get(&r, "LISTRESP"),
        format!("+OK 200 messages ({total} octets)")
    );
    assert_eq!(get(&r, "LIST"), list_lines(&stored));
    let uidl: Vec<&str> = get(&r, "UIDL").split('|').collect();
    assert_eq!(uidl.len(), 200);
    let ids: std::collections::HashSet<&str> = uidl
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (n, id) = l.split_once(' ').unwrap();
            assert_eq!(n, (i + 1).to_string());
            id
        })
        .collect();
    assert_eq!(ids.len(), 200, "unique-ids are not distinct");
    assert_eq!(unhex_text(get(&r, "RETR200")), stored[199]);
    assert!(stored[199].ends_with("bulk body 200\r\n"));
    assert_eq!(get(&r, "QUIT"), signing_off("200 messages"));
}

const POPLIB_SIZES: &str = r#"
p, _ = login()
print("STAT", text(p._shortcmd("STAT")))
print("LIST1", text(p.list(1)))
retrieved("RETR", p.retr(1))
print("QUIT", text(p.quit()))
"#;

/// BDAT (RFC 3030) chunks may end without CRLF and (under `normalize`) carry bare LFs; hato
/// stores them in canonical CRLF form, so LIST/STAT sizes are exactly the octets RETR sends
/// (RFC 1939 5). Under the default policy such a chunked message is refused like a DATA one.
#[test]
fn list_sizes_match_retr_for_a_message_not_in_canonical_form() {
    // One BDAT LAST chunk with that data; the reply to it.
    let bdat = |server: &TestServer| {
        let data = "From: bob@sender.example\r\nSubject: bdat\r\n\r\nline one\nline two";
        let mut r = Raw::hello(server.ports.smtp, "sender.example");
        r.expect("MAIL FROM:<bob@sender.example>", "250");
        r.expect(&format!("RCPT TO:<{USER}>"), "250");
        r.send(format!("BDAT {} LAST\r\n", data.len()).as_bytes());
        r.send(data.as_bytes());
        (r.reply(), r)
    };
    let strict = TestServer::start();
    let (got, _) = bdat(&strict);
    assert!(got.starts_with("554 5.5.0"), "{got}");
    assert!(strict.inbox(USER).is_empty());

    let server = TestServer::start_with("bare_line_endings = \"normalize\"", FAST_AUTH);
    let (got, mut r) = bdat(&server);
    assert!(got.starts_with("250 "), "{got}");
    r.expect("QUIT", "221");
    // What RETR sends is the stored message itself.
    let wire = server.only_message(USER);
    assert!(
        wire.ends_with("\r\n\r\nline one\r\nline two\r\n"),
        "{wire:?}"
    );
    let size = wire.len();

    let r = poplib(&server, POPLIB_SIZES);
    assert_eq!(unhex_text(get(&r, "RETR")), wire);
    assert_eq!(get(&r, "RETRRESP"), format!("+OK {size} octets"));
    assert_eq!(get(&r, "RETROCTETS"), size.to_string());
    assert_eq!(
        get(&r, "LIST1"),
        format!("+OK 1 {size}"),
        "LIST disagrees with RETR"
    );
    assert_eq!(
        get(&r, "STAT"),
        format!("+OK 1 {size}"),
        "STAT disagrees with RETR"
    );
}
