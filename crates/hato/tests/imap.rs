//! IMAP with real clients against the real binary: Python's imaplib (STARTTLS and implicit TLS)
//! and curl (imap/imaps), plus byte-level conversations for the security rules (LOGINDISABLED
//! before TLS, STARTTLS injection, huge literals). Mail reaches the INBOX over SMTP first. Each
//! test starts its own server.

mod common;

use common::*;

#[test]
fn before_tls_login_is_disabled_and_starttls_enables_it() {
    let (server, r) = imap_py_new(
        &[],
        r#"
s, r = plain()
out("GREETING", r.line())
r.send(b"a CAPABILITY\r\n")
out("CAPS", " ".join(r.until("a")))
r.send(b"b LOGIN " + USER.encode() + b" \"" + PASS.encode() + b"\"\r\n")
out("LOGIN", r.until("b")[-1])
r.send(b"c AUTHENTICATE PLAIN\r\n")
out("AUTH", r.until("c")[-1])
r.send(b"d SELECT INBOX\r\n")
out("SELECT", r.until("d")[-1])
s.close()
# imaplib over STARTTLS: login works after TLS.
c = imaplib.IMAP4("127.0.0.1", IMAP)
c.starttls(ssl_context=ctx)
out("TLSCAPS", " ".join(c.capabilities))
typ, data = c.login(USER, PASS)
out("TLSLOGIN", typ)
typ, data = c.noop()
out("NOOP", typ)
typ, data = c.logout()
out("LOGOUT", typ)
# A wrong password is refused.
c = imaplib.IMAP4_SSL("127.0.0.1", IMAPS, ssl_context=ctx)
try:
    c.login(USER, "wrong")
    out("BADPASS", "accepted")
except imaplib.IMAP4.error as e:
    out("BADPASS", str(e))
# AUTHENTICATE PLAIN (SASL-IR by imaplib) works.
c = imaplib.IMAP4_SSL("127.0.0.1", IMAPS, ssl_context=ctx)
typ, _ = c.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (USER, PASS)).encode())
out("AUTHPLAIN", typ)
c.logout()
"#,
    );
    let caps = get(&r, "CAPS");
    assert!(get(&r, "GREETING").starts_with("* OK"), "{r:?}");
    assert!(
        caps.contains("STARTTLS") && caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH=PLAIN"), "{caps}");
    assert!(get(&r, "LOGIN").contains("NO [PRIVACYREQUIRED]"), "{r:?}");
    assert!(get(&r, "AUTH").contains("NO [PRIVACYREQUIRED]"), "{r:?}");
    assert!(get(&r, "SELECT").starts_with("d BAD"), "{r:?}");
    let tls_caps = get(&r, "TLSCAPS");
    assert!(
        !tls_caps.contains("LOGINDISABLED") && !tls_caps.contains("STARTTLS"),
        "{tls_caps}"
    );
    assert!(
        tls_caps.contains("AUTH=PLAIN") && tls_caps.contains("IDLE"),
        "{tls_caps}"
    );
    assert!(!tls_caps.contains("QUOTA"), "{tls_caps}");
    assert_eq!(get(&r, "TLSLOGIN"), "OK");
    assert_eq!(get(&r, "NOOP"), "OK");
    assert_eq!(get(&r, "LOGOUT"), "BYE");
    assert!(get(&r, "BADPASS").contains("AUTHENTICATIONFAILED"), "{r:?}");
    assert_eq!(get(&r, "AUTHPLAIN"), "OK");
    let logs = server.logs();
    assert!(
        logs.contains("login ok") && logs.contains("TLSv1."),
        "login not logged with TLS facts:\n{logs}"
    );
    assert!(!logs.contains(PASSWORD), "the password was logged");
}

#[test]
fn starttls_injection_is_not_executed() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
s, r = plain()
r.line()
# One write: STARTTLS and a LOGIN that must never run.
r.send(b"a STARTTLS\r\nb LOGIN " + USER.encode() + b" \"" + PASS.encode() + b"\"\r\n")
out("STARTTLS", r.line())
out("LEFTOVER", repr(r.buf))
t = ctx.wrap_socket(s, server_hostname="localhost")
r = Raw(t)
r.send(b"c SELECT INBOX\r\n")
lines = r.until("c")
out("AFTER", " | ".join(lines))
r.send(b"d CAPABILITY\r\n")
out("CAPS", " ".join(r.until("d")))
"#,
    );
    assert!(get(&r, "STARTTLS").starts_with("a OK"), "{r:?}");
    assert_eq!(get(&r, "LEFTOVER"), "b''");
    let after = get(&r, "AFTER");
    assert!(
        !after.contains("b "),
        "the injected LOGIN was answered: {after}"
    );
    assert!(after.starts_with("c BAD"), "{after}");
    assert!(get(&r, "CAPS").contains("AUTH=PLAIN"), "{r:?}");
}

#[test]
fn delivered_mail_is_fetched_over_imaps_and_curl() {
    let server = TestServer::start();
    let msgs = vec![
        message("first message", "one"),
        message("second message", "two"),
    ];
    let stored = deliver_to_alice(&server, &msgs);
    let r = imap_py(
        &server,
        r#"
c = login()
typ, data = c.select("INBOX")
out("EXISTS", data[0].decode())
out("SELECTRESP", repr(c.untagged_responses.get("UIDVALIDITY")))
typ, data = c.fetch("1", "(BODY.PEEK[])")
out("PEEK", data[0][1].hex())
typ, data = c.fetch("1", "(FLAGS)")
out("FLAGS_AFTER_PEEK", flat(data))
typ, data = c.fetch("1", "(RFC822)")
out("RFC822", data[0][1].hex())
typ, data = c.fetch("1", "(FLAGS)")
out("FLAGS_AFTER_RFC822", flat(data))
typ, data = c.fetch("2", "(ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE UID)")
out("META", flat(data))
typ, data = c.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
out("PARTS", repr(flat(data)))
typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
out("UIDFETCH", flat(data))
c.logout()
"#,
    );
    assert_eq!(get(&r, "EXISTS"), "2");
    assert_eq!(unhex(get(&r, "PEEK")), stored[0].as_bytes());
    assert_eq!(unhex(get(&r, "RFC822")), stored[0].as_bytes());
    assert!(!get(&r, "FLAGS_AFTER_PEEK").contains("\\Seen"), "{r:?}");
    assert!(get(&r, "FLAGS_AFTER_RFC822").contains("\\Seen"), "{r:?}");
    let meta = get(&r, "META");
    assert!(meta.contains("\"second message\""), "{meta}");
    assert!(
        meta.contains("\"Bob\" NIL \"bob\" \"sender.example\""),
        "{meta}"
    );
    assert!(meta.contains("BODYSTRUCTURE (\"TEXT\" \"PLAIN\""), "{meta}");
    assert!(
        meta.contains(&format!("RFC822.SIZE {}", stored[1].len())),
        "{meta}"
    );
    assert!(
        meta.contains("INTERNALDATE \"") && meta.contains("UID 2"),
        "{meta}"
    );
    let parts = get(&r, "PARTS");
    assert!(
        parts.contains("Subject: second message") && parts.contains("two"),
        "{parts}"
    );
    let uf = get(&r, "UIDFETCH");
    assert!(uf.contains("UID 1") && uf.contains("UID 2"), "{uf}");

    // curl over implicit TLS and over STARTTLS.
    let creds = credentials();
    for (args, url, want) in [
        (
            &["-k"][..],
            format!("imaps://127.0.0.1:{}/INBOX;UID=2", server.ports.imaps),
            &stored[1],
        ),
        (
            &["-k", "--ssl-reqd"],
            format!("imap://127.0.0.1:{}/INBOX;UID=1", server.ports.imap),
            &stored[0],
        ),
    ] {
        let out = curl(&[args, &["-u", &creds, &url]].concat());
        assert!(out.status.success(), "{}", out.all());
        assert_eq!(&out.stdout, want, "{}", out.all());
    }
}

#[test]
fn flags_persist_and_condstore() {
    let (_server, r) = imap_py_new(
        &[message("flag me", "x")],
        r#"
c = login()
c.select("INBOX")
typ, data = c.store("1", "+FLAGS", "(\\Flagged $Custom)")
out("STORE", flat(data))
c.logout()
c = login()
typ, data = c.select("INBOX", readonly=True)
typ, data = c.fetch("1", "(FLAGS MODSEQ)")
out("PERSISTED", flat(data))
typ, data = c.store("1", "+FLAGS", "(\\Seen)")
out("RO_STORE", typ)
c.logout()
c = login()
c.select("INBOX")
typ, data = c.fetch("1", "(MODSEQ)")
m = int(re.search(r"MODSEQ \((\d+)\)", flat(data)).group(1))
typ, data = c.store("1", "-FLAGS.SILENT", "($Custom)")
out("SILENT", repr(data))
typ, data = c._simple_command("STORE", "1", "(UNCHANGEDSINCE %d)" % m, "+FLAGS", "(\\Answered)")
out("UNCHANGED", typ + " " + repr(c.untagged_responses.get("MODIFIED")))
typ, data = c.fetch("1", "(FLAGS)")
out("FINAL", flat(data))
c.logout()
"#,
    );
    assert!(
        get(&r, "STORE").contains("\\Flagged") && get(&r, "STORE").contains("$Custom"),
        "{r:?}"
    );
    let p = get(&r, "PERSISTED");
    assert!(
        p.contains("\\Flagged") && p.contains("$Custom") && p.contains("MODSEQ"),
        "{p}"
    );
    assert_eq!(get(&r, "RO_STORE"), "NO");
    assert_eq!(get(&r, "SILENT"), "[None]");
    assert!(
        get(&r, "UNCHANGED").contains("MODIFIED") || get(&r, "UNCHANGED").starts_with("OK"),
        "{r:?}"
    );
    let f = get(&r, "FINAL");
    assert!(
        f.contains("\\Flagged") && !f.contains("$Custom") && !f.contains("\\Answered"),
        "{f}"
    );
}

#[test]
fn two_sessions_see_each_others_changes_and_idle_reports_delivery() {
    let (_server, r) = imap_py_new(
        &[message("one", "1")],
        r#"
a = login()
b = login()
a.select("INBOX")
b.select("INBOX")
deliver("two")
typ, data = b.noop()
out("B_EXISTS", repr(b.untagged_responses.get("EXISTS")))
a.noop()
a.store("1", "+FLAGS", "(\\Deleted)")
a.expunge()
typ, data = b.noop()
out("B_EXPUNGE", repr(b.untagged_responses.get("EXPUNGE")))
b.logout()
a.logout()
# IDLE over a raw TLS connection: a delivery shows up within a second.
r = conn()
r.send(b"b SELECT INBOX\r\n")
r.until("b")
r.send(b"c IDLE\r\n")
out("IDLING", r.line())
deliver("three")
t0 = time.time()
line = r.line(timeout=5)
out("IDLE_LINE", line)
out("IDLE_SECS", "%.3f" % (time.time() - t0))
r.send(b"DONE\r\n")
out("DONE", r.until("c")[-1])
r.send(b"d LOGOUT\r\n")
r.until("d")
"#,
    );
    assert!(get(&r, "B_EXISTS").contains("b'2'"), "{r:?}");
    assert!(get(&r, "B_EXPUNGE").contains("b'1'"), "{r:?}");
    assert!(get(&r, "IDLING").starts_with("+ "), "{r:?}");
    assert_eq!(get(&r, "IDLE_LINE"), "* 2 EXISTS");
    let secs: f64 = get(&r, "IDLE_SECS").parse().unwrap();
    assert!(secs < 1.0, "IDLE took {secs} s");
    assert!(get(&r, "DONE").starts_with("c OK"), "{r:?}");
}

/// RFC 3501 `\Recent`: a message is recent in exactly one session, the first to be notified
/// (SELECT claims; of two sessions idling when mail arrives, one gets it); EXAMINE shows
/// unclaimed messages as recent without taking them; STATUS RECENT counts the unclaimed ones;
/// a client with IMAP4rev2 enabled sees no `\Recent` and takes none.
#[test]
fn recent_is_shown_to_exactly_one_session() {
    let (_server, r) = imap_py_new(
        &[message("r1", "1"), message("r2", "2")],
        r#"
n = [0]
def cmd(r, text):
    n[0] += 1
    tag = "t%d" % n[0]
    r.send(("%s %s\r\n" % (tag, text)).encode())
    lines = r.until(tag)
    if not lines[-1].startswith(tag + " OK"):
        raise Exception(lines)
    return lines
def recent(lines):
    return ",".join(l.split()[1] for l in lines if re.fullmatch(r"\* \d+ RECENT", l))
def flagged(lines):
    return ",".join(l.split()[1] for l in lines if " FETCH " in l and "\\Recent" in l)
def status(r):
    l = [l for l in cmd(r, "STATUS INBOX (MESSAGES RECENT)") if l.startswith("* STATUS")][0]
    return l.split("(")[1].rstrip(")")
z = conn()
out("STATUS_BEFORE", status(z))
a = conn()
out("A_SELECT", recent(cmd(a, "SELECT INBOX")))
out("A_FLAGS", flagged(cmd(a, "FETCH 1:* (FLAGS)")))
out("A_SEARCH", [l for l in cmd(a, "SEARCH RECENT") if l.startswith("* SEARCH")][0])
out("STATUS_AFTER_A", status(z))
b = conn()
out("B_SELECT", recent(cmd(b, "SELECT INBOX")))
out("B_FLAGS", flagged(cmd(b, "FETCH 1:* (FLAGS)")) or "-")
# Both idle when a third message arrives: each gets EXISTS and RECENT, one takes it.
for x in (a, b):
    x.send(b"i IDLE\r\n")
    x.line()
deliver("r3")
a_idle = [a.line(timeout=5), a.line(timeout=5)]
b_idle = [b.line(timeout=5), b.line(timeout=5)]
out("A_IDLE", " | ".join(a_idle))
out("B_IDLE", " | ".join(b_idle))
for x in (a, b):
    x.send(b"DONE\r\n")
    x.until("i")
out("A_3", flagged(cmd(a, "FETCH 3 (FLAGS)")) or "-")
out("B_3", flagged(cmd(b, "FETCH 3 (FLAGS)")) or "-")
out("STATUS_3", status(z))
# A fourth message while nobody looks: EXAMINE shows it recent and leaves it.
deliver("r4")
out("STATUS_4", status(z))
c = conn()
out("C_EXAMINE", recent(cmd(c, "EXAMINE INBOX")))
out("C_FLAGS", flagged(cmd(c, "FETCH 1:* (FLAGS)")))
out("STATUS_AFTER_C", status(z))
# A client with IMAP4rev2 enabled neither sees nor takes it.
e = conn()
cmd(e, "ENABLE IMAP4rev2")
sel = cmd(e, "SELECT INBOX")
out("E_SELECT", "RECENT" in " ".join(sel))
out("E_FLAGS", "\\Recent" in " ".join(cmd(e, "FETCH 1:* (FLAGS)")))
out("STATUS_AFTER_E", status(z))
d = conn()
out("D_SELECT", recent(cmd(d, "SELECT INBOX")))
out("D_FLAGS", flagged(cmd(d, "FETCH 1:* (FLAGS)")))
out("STATUS_AFTER_D", status(z))
# A, still selected, learns of message 4 but not as recent.
out("A_NOOP", " | ".join(cmd(a, "NOOP")))
out("A_4", flagged(cmd(a, "FETCH 4 (FLAGS)")) or "-")
# EXAMINE after the claim: nothing recent.
out("C_AGAIN", recent(cmd(c, "EXAMINE INBOX")))
# A message delivered while C examines is recent for it, and still for the next SELECT.
deliver("r5")
out("C_NOOP", " | ".join(cmd(c, "NOOP")))
out("C_5", flagged(cmd(c, "FETCH 5 (FLAGS)")) or "-")
out("STATUS_5", status(z))
"#,
    );
    // What each step of the script showed, in its order (RECENT counts of SELECT/EXAMINE,
    // the messages FETCH showed \Recent, STATUS of the unclaimed ones).
    for (key, want) in [
        ("STATUS_BEFORE", "MESSAGES 2 RECENT 2"),
        ("A_SELECT", "2"),
        ("A_FLAGS", "1,2"),
        ("A_SEARCH", "* SEARCH 1 2"),
        ("STATUS_AFTER_A", "MESSAGES 2 RECENT 0"),
        ("B_SELECT", "0"),
        ("B_FLAGS", "-"),
        ("STATUS_3", "MESSAGES 3 RECENT 0"),
        ("STATUS_4", "MESSAGES 4 RECENT 1"),
        ("C_EXAMINE", "1"),
        ("C_FLAGS", "4"),
        ("STATUS_AFTER_C", "MESSAGES 4 RECENT 1"),
        ("E_SELECT", "False"),
        ("E_FLAGS", "False"),
        ("STATUS_AFTER_E", "MESSAGES 4 RECENT 1"),
        ("D_SELECT", "1"),
        ("D_FLAGS", "4"),
        ("STATUS_AFTER_D", "MESSAGES 4 RECENT 0"),
        ("A_4", "-"),
        ("C_AGAIN", "0"),
        ("C_5", "5"),
        ("STATUS_5", "MESSAGES 5 RECENT 1"),
    ] {
        assert_eq!(get(&r, key), want, "{key}: {r:?}");
    }
    // Exactly one of the idling sessions got message 3 as recent.
    let (a3, b3) = (get(&r, "A_3"), get(&r, "B_3"));
    assert!((a3, b3) == ("3", "-") || (a3, b3) == ("-", "3"), "{r:?}");
    let (a_idle, b_idle) = (get(&r, "A_IDLE"), get(&r, "B_IDLE"));
    if a3 == "3" {
        assert_eq!(a_idle, "* 3 EXISTS | * 3 RECENT", "{r:?}");
        assert_eq!(b_idle, "* 3 EXISTS | * 0 RECENT", "{r:?}");
    } else {
        assert_eq!(a_idle, "* 3 EXISTS | * 2 RECENT", "{r:?}");
        assert_eq!(b_idle, "* 3 EXISTS | * 1 RECENT", "{r:?}");
    }
    let a_noop = get(&r, "A_NOOP");
    assert!(a_noop.starts_with("* 4 EXISTS | * "), "{a_noop}");
    let c_noop = get(&r, "C_NOOP");
    assert!(c_noop.starts_with("* 5 EXISTS | * 1 RECENT"), "{c_noop}");
}

#[test]
fn append_copy_move_search() {
    let (_server, r) = imap_py_new(
        &[
            message("apples", "red fruit"),
            message("pears", "green fruit"),
        ],
        r#"
c = login()
typ, data = c.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nbody\r\n")
out("APPEND", typ + " " + data[0].decode())
typ, data = c.append("NoSuchBox", None, None, b"Subject: x\r\n\r\ny\r\n")
out("APPEND_MISSING", typ + " " + data[0].decode())
c.select("INBOX")
typ, data = c.search(None, "SUBJECT", "pears")
out("SEARCH_SUBJECT", data[0].decode())
# Again (the headers now come from the server's cache), and other header keys.
typ, data = c.search(None, "SUBJECT", "PEARS")
out("SEARCH_SUBJECT_AGAIN", data[0].decode())
typ, data = c.search(None, "OR", "SUBJECT", "apples", "HEADER", "Subject", "pea")
out("SEARCH_HEADER_OR", data[0].decode())
typ, data = c.search(None, "NOT", "SUBJECT", "apples")
out("SEARCH_NOT", data[0].decode())
typ, data = c.search(None, "BODY", "fruit")
out("SEARCH_BODY", data[0].decode())
typ, data = c.uid("SEARCH", "UNSEEN")
out("SEARCH_UNSEEN", data[0].decode())
typ, data = c.copy("1", "Archive")
out("COPY", typ + " " + data[0].decode())
typ, data = c._simple_command("MOVE", "2", "Trash")
out("MOVE", typ + " " + repr(c.untagged_responses.get("OK")) + " " + repr(c.untagged_responses.get("EXPUNGE")))
typ, data = c.status("Archive", "(MESSAGES UIDNEXT UNSEEN)")
out("STATUS_ARCHIVE", data[0].decode())
typ, data = c.status("Trash", "(MESSAGES)")
out("STATUS_TRASH", data[0].decode())
typ, data = c.select("INBOX")
out("INBOX_LEFT", data[0].decode())
c.logout()
"#,
    );
    assert!(get(&r, "APPEND").starts_with("OK [APPENDUID "), "{r:?}");
    assert!(
        get(&r, "APPEND_MISSING").starts_with("NO [TRYCREATE]"),
        "{r:?}"
    );
    assert_eq!(get(&r, "SEARCH_SUBJECT"), "2");
    assert_eq!(get(&r, "SEARCH_SUBJECT_AGAIN"), "2");
    assert_eq!(get(&r, "SEARCH_HEADER_OR"), "1 2");
    assert_eq!(get(&r, "SEARCH_NOT"), "2");
    assert_eq!(get(&r, "SEARCH_BODY"), "1 2");
    assert_eq!(get(&r, "SEARCH_UNSEEN"), "1 2");
    assert!(get(&r, "COPY").starts_with("OK [COPYUID "), "{r:?}");
    let mv = get(&r, "MOVE");
    assert!(
        mv.starts_with("OK") && mv.contains("COPYUID") && mv.contains("b'2'"),
        "{mv}"
    );
    assert!(get(&r, "STATUS_ARCHIVE").contains("MESSAGES 1"), "{r:?}");
    assert!(get(&r, "STATUS_TRASH").contains("MESSAGES 1"), "{r:?}");
    assert_eq!(get(&r, "INBOX_LEFT"), "1");
}

#[test]
fn huge_literals_are_refused_without_allocation() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
# Before login: a synchronising literal far beyond the limit is refused, the connection lives.
s, r = plain()
r.line()
r.send(b"a LOGIN {999999999999}\r\n")
out("PREAUTH", r.line())
r.send(b"b NOOP\r\n")
out("PREAUTH_NOOP", r.until("b")[-1])
s.close()
# After login: APPEND with a huge literal gets NO/BAD [TOOBIG], the session goes on.
r = conn()
r.send(b"b APPEND INBOX {999999999999}\r\n")
out("APPEND", r.line())
r.send(b"c NOOP\r\n")
out("NOOP", r.until("c")[-1])
# A non-synchronising one: its bytes may follow at once, so the server says BYE.
r.send(b"d APPEND INBOX {999999999999+}\r\nxxxx")
lines = []
try:
    while True:
        lines.append(r.line())
except (EOFError, OSError, ssl.SSLError):
    pass
out("NONSYNC", " | ".join(lines))
"#,
    );
    let pre = get(&r, "PREAUTH");
    assert!(pre.starts_with("a BAD") || pre.starts_with("a NO"), "{r:?}");
    assert!(get(&r, "PREAUTH_NOOP").starts_with("b OK"), "{r:?}");
    let app = get(&r, "APPEND");
    assert!(app.contains("TOOBIG"), "{r:?}");
    assert!(get(&r, "NOOP").starts_with("c OK"), "{r:?}");
    assert!(get(&r, "NONSYNC").contains("BYE"), "{r:?}");
}

#[test]
fn mailboxes_list_create_rename_delete_subscribe() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
c = login()
typ, data = c.list()
out("LIST", " | ".join(x.decode() for x in data))
out("CREATE", c.create("Projects/2026")[0])
typ, data = c.list('""', 'Projects*')
out("LIST_P", " | ".join(x.decode() for x in data))
out("CREATE_DUP", c.create("Projects")[0])
out("RENAME", c.rename("Projects/2026", "Projects/Old")[0])
out("SUBSCRIBE", c.subscribe("Projects/Old")[0])
typ, data = c.lsub('""', 'Projects/*')
out("LSUB", " | ".join(x.decode() for x in data if x))
# Another session has the mailbox selected when it is deleted: its messages vanish.
c.append("Projects/Old", None, None, b"Subject: x\r\n\r\ny\r\n")
o = login()
o.select("Projects/Old")
out("DELETE_PARENT", c.delete("Projects")[0])
out("DELETE", c.delete("Projects/Old")[0])
o.noop()
out("OTHER_EXPUNGE", repr(o.untagged_responses.get("EXPUNGE")))
o.logout()
out("DELETE_MISSING", c.delete("Nope")[0])
typ, data = c.list('""', '""')
out("LIST_ROOT", data[0].decode())
typ, data = c._simple_command("LIST", '""', '"%"', "RETURN", "(SPECIAL-USE STATUS (MESSAGES))")
out("LIST_EXT", typ + " " + repr(c.untagged_responses.get("STATUS")))
typ, data = c.namespace()
out("NAMESPACE", data[0].decode())
typ, data = c._simple_command("ENABLE", "CONDSTORE")
out("ENABLE", typ)
typ, data = c.select("INBOX")
out("HIGHESTMODSEQ", repr(c.untagged_responses.get("HIGHESTMODSEQ")))
out("CHECK", c.check()[0])
typ, data = c._simple_command("UNSELECT")
out("UNSELECT", typ)
c.select("INBOX")
out("CLOSE", c.close()[0])
try:
    typ, data = c._simple_command("GETQUOTAROOT", "INBOX")
    out("QUOTA", typ)
except imaplib.IMAP4.error as e:
    out("QUOTA", "BAD")
c.logout()
"#,
    );
    let list = get(&r, "LIST");
    for (attr, name) in [
        ("\\Sent", "Sent"),
        ("\\Drafts", "Drafts"),
        ("\\Trash", "Trash"),
        ("\\Junk", "Junk"),
        ("\\Archive", "Archive"),
    ] {
        assert!(
            list.contains(&format!("(\\HasNoChildren {attr}) \"/\" \"{name}\"")),
            "{attr} {name} missing: {list}"
        );
    }
    assert!(list.contains("\"/\" \"INBOX\""), "{list}");
    assert_eq!(get(&r, "CREATE"), "OK");
    let lp = get(&r, "LIST_P");
    assert!(lp.contains("(\\HasChildren) \"/\" \"Projects\""), "{lp}");
    assert!(
        lp.contains("(\\HasNoChildren) \"/\" \"Projects/2026\""),
        "{lp}"
    );
    assert_eq!(get(&r, "CREATE_DUP"), "NO");
    assert_eq!(get(&r, "RENAME"), "OK");
    assert_eq!(get(&r, "SUBSCRIBE"), "OK");
    assert!(get(&r, "LSUB").contains("Projects/Old"), "{r:?}");
    assert_eq!(get(&r, "DELETE_PARENT"), "NO");
    assert_eq!(get(&r, "DELETE"), "OK");
    assert!(get(&r, "OTHER_EXPUNGE").contains("b'1'"), "{r:?}");
    assert_eq!(get(&r, "DELETE_MISSING"), "NO");
    assert!(get(&r, "LIST_ROOT").contains("\\Noselect"), "{r:?}");
    assert!(
        get(&r, "LIST_EXT").starts_with("OK") && get(&r, "LIST_EXT").contains("MESSAGES"),
        "{r:?}"
    );
    assert!(get(&r, "NAMESPACE").contains("((\"\" \"/\"))"), "{r:?}");
    assert_eq!(get(&r, "ENABLE"), "OK");
    assert!(get(&r, "HIGHESTMODSEQ").contains("b'"), "{r:?}");
    assert_eq!(get(&r, "CHECK"), "OK");
    assert_eq!(get(&r, "UNSELECT"), "OK");
    assert_eq!(get(&r, "CLOSE"), "OK");
    assert_ne!(get(&r, "QUOTA"), "OK");
}

#[test]
fn qresync_idle_flag_changes_and_imap4rev2_search() {
    let (_server, r) = imap_py_new(
        &[message("q1", "1"), message("q2", "2"), message("q3", "3")],
        r#"
a = conn()
a.send(b"b ENABLE QRESYNC\r\n")
a.until("b")
a.send(b"c SELECT INBOX\r\n")
sel = a.until("c")
uv = [l for l in sel if "UIDVALIDITY" in l][0].split()[3].rstrip("]")
hm = int([l for l in sel if "HIGHESTMODSEQ" in l][0].split()[3].rstrip("]"))
a.send(b"d UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\n")
a.until("d")
a.send(b"e UID EXPUNGE 2\r\n")
out("EXPUNGE", " | ".join(a.until("e")))
a.send(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % hm)
out("CHANGEDSINCE", " | ".join(a.until("f")))
a.send(b"g UNSELECT\r\n")
a.until("g")
a.send(("h SELECT INBOX (QRESYNC (%s %d 1:3))\r\n" % (uv, hm)).encode())
out("QRESYNC", " | ".join(a.until("h")))
# IDLE while another session changes flags and expunges.
a.send(b"i IDLE\r\n")
a.line()
b = conn()
b.send(b"b SELECT INBOX\r\n")
b.until("b")
b.send(b"c STORE 1 +FLAGS (\\Flagged)\r\n")
b.until("c")
out("IDLE_FLAGS", a.line(timeout=3))
b.send(b"d ENABLE IMAP4rev2\r\n")
out("ENABLE_AFTER_SELECT", b.until("d")[-1])
a.send(b"DONE\r\n")
a.until("i")
c = conn()
c.send(b"b ENABLE IMAP4rev2\r\n")
out("ENABLED", c.until("b")[0])
c.send(b"c SELECT INBOX\r\n")
out("REV2_SELECT", " | ".join(c.until("c")))
c.send(b"d SEARCH ALL\r\n")
out("REV2_SEARCH", " | ".join(c.until("d")))
"#,
    );
    let ex = get(&r, "EXPUNGE");
    assert!(ex.contains("* VANISHED 2") && ex.contains("e OK"), "{ex}");
    let cs = get(&r, "CHANGEDSINCE");
    assert!(cs.contains("* VANISHED (EARLIER) 2"), "{cs}");
    assert!(cs.contains("f OK"), "{cs}");
    let q = get(&r, "QRESYNC");
    assert!(
        q.contains("* VANISHED (EARLIER) 2") && q.contains("h OK [READ-WRITE]"),
        "{q}"
    );
    assert!(q.contains("* 2 EXISTS"), "{q}");
    let idle = get(&r, "IDLE_FLAGS");
    assert!(
        idle.starts_with("* 1 FETCH (UID 1 FLAGS (\\Flagged)"),
        "{idle}"
    );
    assert!(get(&r, "ENABLE_AFTER_SELECT").starts_with("d BAD"), "{r:?}");
    assert!(get(&r, "ENABLED").contains("IMAP4rev2"), "{r:?}");
    let sel = get(&r, "REV2_SELECT");
    assert!(!sel.contains("RECENT"), "{sel}");
    assert!(
        get(&r, "REV2_SEARCH").contains("* ESEARCH (TAG \"d\") ALL 1:2"),
        "{r:?}"
    );
}

/// `[limits] quota_bytes`: QUOTA/QUOTA=RES-STORAGE announced, GETQUOTAROOT/GETQUOTA with the
/// account's usage, APPEND and COPY refused with `NO [OVERQUOTA]` past the limit (MOVE is not:
/// same root), SETQUOTA refused, STATUS DELETED-STORAGE, and SMTP refusing mail for the full
/// account with 452 4.2.2 while postmaster stays deliverable.
#[test]
fn quota_limits_imap_and_smtp() {
    let server = TestServer::start_with("", "[limits]\nquota_bytes = 20000\n");
    let r = imap_py(
        &server,
        r#"
deliver("one")
deliver("two")
c = login()
out("CAPS", " ".join(c.capabilities))
typ, data = c.getquotaroot("INBOX")
out("ROOT", typ + " " + flat(data))
typ, data = c.getquota('""')
out("QUOTA", typ + " " + flat(data))
c.select("INBOX")
c.store("1", "+FLAGS", "(\\Deleted)")
typ, data = c.status("INBOX", "(DELETED DELETED-STORAGE SIZE)")
out("STATUS", flat(data))
typ, data = c.fetch("1", "(RFC822.SIZE)")
out("SIZE1", flat(data))
big = b"Subject: big\r\n\r\n" + b"x" * 30000 + b"\r\n"
try:
    typ, data = c.append("INBOX", None, None, big)
    out("APPEND_BIG", typ + " " + flat(data))
except imaplib.IMAP4.error as e:
    out("APPEND_BIG", "NO " + str(e))
small = b"Subject: small\r\n\r\n" + b"y" * 12000 + b"\r\n"
typ, data = c.append("INBOX", None, None, small)
out("APPEND_SMALL", typ)
typ, data = c.copy("3", "Archive")
out("COPY", typ + " " + flat(data))
typ, data = c._simple_command("MOVE", "3", "Archive")
out("MOVE", typ)
typ, data = c._simple_command("SETQUOTA", '""', "(STORAGE 999999)")
out("SETQUOTA", typ + " " + flat(data))
# SMTP checks at RCPT time, before the size is known: the message that crosses the limit
# is accepted, the next one is refused.
deliver("three", ("z" * 70 + "\r\n") * 170)
out("SMTP_CROSS", "accepted")
try:
    deliver("four")
    out("SMTP_FULL", "accepted")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients[USER]
    out("SMTP_FULL", "%d %s" % (code, text.decode()))
s = smtplib.SMTP("127.0.0.1", SMTP)
s.sendmail("bob@sender.example", ["postmaster@example.test"], "Subject: abuse\r\n\r\nreport\r\n")
s.quit()
out("POSTMASTER", "accepted")
c.logout()
"#,
    );
    let caps = get(&r, "CAPS");
    assert!(
        caps.contains("QUOTA") && caps.contains("QUOTA=RES-STORAGE"),
        "{caps}"
    );
    let root = get(&r, "ROOT");
    assert!(root.starts_with("OK"), "{root}");
    assert!(
        root.contains("INBOX \"\"") || root.contains("\"INBOX\" \"\""),
        "{root}"
    );
    // Two small messages: 1 KiB rounded up, limit 20000 bytes = 19 KiB rounded down.
    assert!(root.contains("\"\" (STORAGE 1 19)"), "{root}");
    assert!(get(&r, "QUOTA").contains("\"\" (STORAGE 1 19)"), "{r:?}");
    let status = get(&r, "STATUS");
    let size1: u64 = get(&r, "SIZE1")
        .rsplit("RFC822.SIZE ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .expect("size");
    assert!(
        status.contains("DELETED 1") && status.contains(&format!("DELETED-STORAGE {size1}")),
        "{status}"
    );
    let big = get(&r, "APPEND_BIG");
    assert!(big.contains("OVERQUOTA"), "{big}");
    assert_eq!(get(&r, "APPEND_SMALL"), "OK");
    let copy = get(&r, "COPY");
    assert!(copy.contains("OVERQUOTA"), "{copy}");
    assert_eq!(get(&r, "MOVE"), "OK", "{r:?}");
    assert!(get(&r, "SETQUOTA").contains("NOPERM"), "{r:?}");
    assert_eq!(get(&r, "SMTP_CROSS"), "accepted");
    let full = get(&r, "SMTP_FULL");
    assert!(full.starts_with("452 4.2.2"), "{full}");
    assert_eq!(get(&r, "POSTMASTER"), "accepted");
}

/// APPEND messages larger than what a session keeps in memory go through the spool file and
/// are stored exactly: a 3 MB message from imaplib (synchronising literal), then a MULTIAPPEND
/// of two 1 MB messages as LITERAL+ with the mailbox name as a literal; each is fetched back
/// whole, and nothing is left in the spool directory.
#[test]
fn large_appends_pass_through_the_spool_intact() {
    let (server, r) = imap_py_new(
        &[],
        r#"
import hashlib
def body(tag, n):
    return b"Subject: %s\r\n\r\n" % tag + b"".join(b"%s line %d " % (tag, i) + b"q" * (i % 500) + b"\r\n" for i in range(n))
big = body(b"big", 12000)
c = login()
typ, data = c.append("Archive", None, None, big)
out("APPEND", typ + " " + data[0].decode())
one, two = body(b"one", 4000), body(b"two", 4000)
r = conn()
r.send(b"m APPEND {7+}\r\nArchive {%d+}\r\n" % len(one) + one + b" (\\Seen) {%d+}\r\n" % len(two) + two + b"\r\n")
out("MULTI", r.until("m")[-1])
c.select("Archive")
for i, m in enumerate((big, one, two)):
    typ, data = c.fetch(str(i + 1), "(BODY.PEEK[] RFC822.SIZE)")
    got = data[0][1]
    out("SAME%d" % i, "yes" if got == m else "no %d %d" % (len(got), len(m)))
out("SIZES", " ".join(str(len(m)) for m in (big, one, two)))
c.logout()
"#,
    );
    assert!(get(&r, "APPEND").starts_with("OK [APPENDUID "), "{r:?}");
    assert!(get(&r, "MULTI").starts_with("m OK [APPENDUID "), "{r:?}");
    for i in 0..3 {
        assert_eq!(get(&r, &format!("SAME{i}")), "yes", "{r:?}");
    }
    let sizes: Vec<usize> = get(&r, "SIZES")
        .split(' ')
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(sizes[0] > 2_000_000 && sizes[1] > 1_000_000, "{sizes:?}");
    let spool = std::fs::read_dir(server.dir.path().join("data").join("spool")).unwrap();
    assert_eq!(spool.count(), 0, "spool files left behind");
}

/// When an APPEND message cannot go to disk (the spool directory is gone), the connection
/// ends before the message is acknowledged, never with a message half stored; a small one,
/// which needs no spool, still goes through.
#[test]
fn a_spool_failure_ends_the_append_unacknowledged() {
    let server = TestServer::start();
    std::fs::remove_dir(server.dir.path().join("data").join("spool")).unwrap();
    let r = imap_py(
        &server,
        r#"
big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1000
c = login()
try:
    typ, data = c.append("Archive", None, None, big)
    out("BIG", typ)
except (imaplib.IMAP4.abort, OSError) as e:
    out("BIG", "aborted")
c = login()
typ, data = c.append("Archive", None, None, b"Subject: small\r\n\r\nhi\r\n")
out("SMALL", typ)
typ, data = c.status("Archive", "(MESSAGES)")
out("COUNT", data[0].decode())
"#,
    );
    assert_eq!(get(&r, "BIG"), "aborted", "{r:?}");
    assert_eq!(get(&r, "SMALL"), "OK", "{r:?}");
    assert!(get(&r, "COUNT").contains("MESSAGES 1"), "{r:?}");
    assert!(server.logs().contains("cannot spool an APPEND message"));
}

/// LSUB with `%` shows an unsubscribed parent of a subscribed mailbox as \Noselect (RFC 3501
/// 6.3.9), not the child; LIST (SUBSCRIBED RECURSIVEMATCH) gives a parent CHILDINFO only
/// for subscribed descendants the patterns do not return themselves (RFC 5258 3.5); an
/// RFC 2971 ID of 30 long fields is taken before login; a name that is not modified UTF-7
/// is NO, not BAD.
#[test]
fn lsub_parents_childinfo_long_id_and_impossible_names() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
s, p = plain()
p.line()
fields = " ".join('"k%02d" "%s"' % (i, "v" * 1024) for i in range(30))
p.send(b"i ID (" + fields.encode() + b")\r\n")
out("ID", p.until("i")[-1])
s.close()
r = conn()
for c in ("CREATE p/c", "CREATE q/c", "SUBSCRIBE p/c", "SUBSCRIBE q/c", "SUBSCRIBE q"):
    r.cmd("t", c)
out("LSUB", " | ".join(t for t, _ in r.cmd("l", 'LSUB "" %')))
out("ONE", " | ".join(t for t, _ in r.cmd("m", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (p)')))
out("BOTH", " | ".join(t for t, _ in r.cmd("n", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (p p/c)')))
out("SELECT", r.cmd("o", "SELECT &Jjo!-")[-1][0])
"#,
    );
    assert!(get(&r, "ID").starts_with("i OK"), "{r:?}");
    let lsub = get(&r, "LSUB");
    assert!(lsub.contains(r#"* LSUB (\Noselect) "/" "p""#), "{lsub}");
    assert!(lsub.contains(r#"* LSUB () "/" "q""#), "{lsub}");
    assert!(!lsub.contains("p/c") && !lsub.contains("q/c"), "{lsub}");
    let one = get(&r, "ONE");
    assert!(one.contains(r#""p" ("CHILDINFO" ("SUBSCRIBED"))"#), "{one}");
    let both = get(&r, "BOTH");
    assert!(
        !both.contains("CHILDINFO") && both.contains("p/c"),
        "{both}"
    );
    assert!(get(&r, "SELECT").starts_with("o NO [CANNOT]"), "{r:?}");
}

/// A message for SORT/THREAD: its own Date, From, Message-ID and References.
fn threaded(subject: &str, date: &str, from: &str, id: &str, refs: &str) -> String {
    let refs = if refs.is_empty() {
        String::new()
    } else {
        format!("References: {refs}\r\n")
    };
    format!(
        "From: {from}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Date: {date}\r\nMessage-ID: <{id}>\r\n{refs}\r\nbody of {id}\r\n"
    )
}

fn sort_fixture() -> Vec<String> {
    vec![
        threaded(
            "Plans",
            "Mon, 1 Jan 2024 10:00:00 +0000",
            "Carol <carol@x.example>",
            "1@x",
            "",
        ),
        threaded(
            "Re: Plans",
            "Mon, 1 Jan 2024 12:00:00 +0000",
            "alice@x.example",
            "2@x",
            "<1@x>",
        ),
        threaded(
            "Other",
            "Mon, 1 Jan 2024 09:00:00 +0000",
            "Bob <zed@x.example>",
            "3@x",
            "",
        ),
        threaded(
            "Re: Plans",
            "Mon, 1 Jan 2024 11:00:00 +0000",
            "bob@x.example",
            "4@x",
            "<1@x>",
        ),
        threaded(
            "[list] Fwd: Plans",
            "Mon, 1 Jan 2024 13:00:00 +0000",
            "dan@x.example",
            "5@x",
            "<1@x> <4@x>",
        ),
    ]
}

#[test]
fn sort_with_imaplib() {
    let (_server, r) = imap_py_new(
        &sort_fixture(),
        r#"
c = login()
typ, data = c.capability()
out("CAPS", data[0].decode())
c.select("INBOX")
typ, data = c.sort("(REVERSE DATE)", "UTF-8", "ALL")
out("REVERSE_DATE", typ + " " + data[0].decode())
typ, data = c.sort("(SUBJECT DATE)", "UTF-8", "ALL")
out("SUBJECT", data[0].decode())
# Again: the keys now come from the server's cache.
typ, data = c.sort("(SUBJECT DATE)", "UTF-8", "ALL")
out("SUBJECT_AGAIN", data[0].decode())
typ, data = c.sort("(FROM)", "US-ASCII", "NOT", "SUBJECT", "other")
out("FROM", data[0].decode())
typ, data = c.sort("(DISPLAYFROM)", "UTF-8", "ALL")
out("DISPLAYFROM", data[0].decode())
typ, data = c.uid("SORT", "(REVERSE DATE)", "UTF-8", "UID", "2:4")
out("UID_SORT", data[0].decode())
typ, data = c._simple_command("SORT", "(DATE)", "KOI8-R", "ALL")
out("BADCHARSET", typ + " " + data[0].decode())
c.logout()
"#,
    );
    let caps = get(&r, "CAPS");
    assert!(
        caps.contains(" SORT ") && caps.contains("SORT=DISPLAY"),
        "{caps}"
    );
    assert_eq!(get(&r, "REVERSE_DATE"), "OK 5 2 4 1 3");
    // Base subjects: OTHER (3), PLANS (1, 4, 2, 5 by date).
    assert_eq!(get(&r, "SUBJECT"), "3 1 4 2 5");
    assert_eq!(get(&r, "SUBJECT_AGAIN"), "3 1 4 2 5");
    // Local parts: alice, bob, carol, dan (3 "zed" is left out by the search).
    assert_eq!(get(&r, "FROM"), "2 4 1 5");
    // Display names, else addresses: alice@x, Bob, bob@x, Carol, dan@x.
    assert_eq!(get(&r, "DISPLAYFROM"), "2 3 4 1 5");
    assert_eq!(get(&r, "UID_SORT"), "2 4 3");
    assert!(get(&r, "BADCHARSET").contains("BADCHARSET"), "{r:?}");
}

/// ESORT (RFC 5267 §3): `SORT RETURN (...)` answered with an ESEARCH in sort order.
#[test]
fn esort_with_imaplib() {
    let (_server, r) = imap_py_new(
        &sort_fixture(),
        r#"
c = login()
typ, data = c.capability()
out("CAPS", data[0].decode())
c.select("INBOX")
def esort(name, *args, uid=False):
    if uid:
        typ, data = c.uid("SORT", *args)
    else:
        typ, data = c._simple_command("SORT", *args)
    got = c.untagged_responses.pop("ESEARCH", [None])
    out(name, typ + " " + (got[-1].decode() if got[-1] else "-"))
esort("ALL4", "RETURN (MIN MAX COUNT ALL)", "(DATE)", "UTF-8", "ALL")
esort("REVERSE", "RETURN (MIN MAX)", "(REVERSE DATE)", "UTF-8", "ALL")
esort("EMPTY_RETURN", "RETURN ()", "(SUBJECT DATE)", "UTF-8", "ALL")
esort("UID", "RETURN (ALL COUNT)", "(REVERSE DATE)", "UTF-8", "UID", "2:4", uid=True)
esort("NONE", "RETURN (MIN MAX ALL COUNT)", "(DATE)", "UTF-8", "SUBJECT", "nothing-like-this")
try:
    typ, data = c._simple_command("SORT", "RETURN (SAVE)", "(DATE)", "UTF-8", "ALL")
    out("SAVE", typ)
except c.error as e:
    out("SAVE", "BAD " + str(e))
c.logout()
"#,
    );
    assert!(get(&r, "CAPS").contains(" ESORT"), "{r:?}");
    // DATE order is 3 1 4 2 5 (see sort_with_imaplib): MIN and MAX are its ends.
    let tag = |v: &str| v.split(')').nth(1).unwrap_or_default().trim().to_string();
    let all = get(&r, "ALL4");
    assert!(all.starts_with("OK (TAG \""), "{all}");
    assert_eq!(tag(all), "MIN 3 MAX 5 ALL 3,1,4,2,5 COUNT 5");
    assert_eq!(tag(get(&r, "REVERSE")), "MIN 5 MAX 3");
    assert_eq!(tag(get(&r, "EMPTY_RETURN")), "ALL 3,1,4,2,5");
    assert_eq!(tag(get(&r, "UID")), "UID ALL 2,4,3 COUNT 3");
    assert_eq!(tag(get(&r, "NONE")), "COUNT 0");
    assert!(get(&r, "SAVE").starts_with("BAD"), "{r:?}");
}

#[test]
fn thread_with_imaplib() {
    let (_server, r) = imap_py_new(
        &sort_fixture(),
        r#"
c = login()
typ, data = c.capability()
out("CAPS", data[0].decode())
c.select("INBOX")
typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
out("REFERENCES", typ + " " + data[0].decode())
typ, data = c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
out("ORDEREDSUBJECT", data[0].decode())
typ, data = c.uid("THREAD", "REFERENCES", "US-ASCII", "NOT", "UID", "4")
out("UID_THREAD", data[0].decode())
typ, data = c._simple_command("THREAD", "REFERENCES", "KOI8-R", "ALL")
out("BADCHARSET", typ + " " + data[0].decode())
c.logout()
"#,
    );
    let caps = get(&r, "CAPS");
    assert!(
        caps.contains("THREAD=REFERENCES") && caps.contains("THREAD=ORDEREDSUBJECT"),
        "{caps}"
    );
    // 2 and 4 answer 1, 5 answers 4; siblings and roots by Date.
    assert_eq!(get(&r, "REFERENCES"), "OK (3)(1 (4 5)(2))");
    assert_eq!(get(&r, "ORDEREDSUBJECT"), "(3)(1 (4)(2)(5))");
    // Without 4, its reply 5 hangs under 1 (the dummy for 4 is pruned).
    assert_eq!(get(&r, "UID_THREAD"), "(3)(1 (2)(5))");
    assert!(get(&r, "BADCHARSET").contains("NO [BADCHARSET"), "{r:?}");
}

/// CATENATE (RFC 4469): a message made of a TEXT part and a URL naming a section of an
/// existing message is their concatenation; a URL that names nothing gives NO [BADURL] and
/// appends nothing.
#[test]
fn append_catenate() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
r = conn()
out("CAPS", r.cmd("C", "CAPABILITY")[0][0])
msg = b"From: a@example.com\r\nSubject: base\r\n\r\nbase body\r\n"
r.send(b"A APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
t = r.responses("A")[-1][0]
uv, uid = re.search(r"APPENDUID (\d+) (\d+)", t).groups()
text = b"From: new@example.com\r\nSubject: cat\r\n\r\n"
url = "/INBOX;UIDVALIDITY=%s/;UID=%s/;SECTION=TEXT" % (uv, uid)
r.send(b"B APPEND INBOX (\\Seen) CATENATE (TEXT {%d+}\r\n" % len(text) + text + b" URL \"" + url.encode() + b"\")\r\n")
t = r.responses("B")[-1][0]
out("CAT", t)
new = re.search(r"APPENDUID \d+ (\d+)", t).group(1)
r.cmd("S", "SELECT INBOX")
resp = r.cmd("F", "UID FETCH %s BODY.PEEK[]" % new)
out("SAME", resp[0][1][0] == text + b"base body\r\n")
# A whole message and a partial, within MULTIAPPEND.
t = r.cmd("G", "APPEND INBOX CATENATE (URL \"/INBOX/;UID=%s\") CATENATE (URL \"/INBOX/;UID=%s/;PARTIAL=6.13\")" % (uid, uid))[-1][0]
out("MULTI", t)
resp = r.cmd("H", "FETCH 3:4 BODY.PEEK[]")
out("WHOLE", resp[0][1][0] == msg)
out("PARTIAL", resp[1][1][0].decode())
bad = "/INBOX;UIDVALIDITY=%d/;UID=%s/;SECTION=TEXT" % (int(uv) + 1, uid)
out("BADUV", r.cmd("D", "APPEND INBOX CATENATE (URL \"%s\")" % bad)[-1][0])
out("NOUID", r.cmd("E", "APPEND INBOX CATENATE (TEXT {1+}\r\nx URL \"/INBOX/;UID=999\")")[-1][0])
out("NOBOX", r.cmd("I", "APPEND INBOX (\\Seen) CATENATE (URL \"/INBOX/;UID=%s\") CATENATE (URL \"/Nope/;UID=1\")" % uid)[-1][0])
out("COUNT", r.cmd("J", "STATUS INBOX (MESSAGES)")[0][0])
"#,
    );
    assert!(get(&r, "CAPS").contains(" CATENATE"), "{r:?}");
    assert!(get(&r, "CAT").starts_with("B OK [APPENDUID"), "{r:?}");
    assert_eq!(get(&r, "SAME"), "True", "{r:?}");
    assert!(get(&r, "MULTI").starts_with("G OK [APPENDUID"), "{r:?}");
    assert_eq!(get(&r, "WHOLE"), "True", "{r:?}");
    assert_eq!(get(&r, "PARTIAL"), "a@example.com", "{r:?}");
    assert!(
        get(&r, "BADUV").starts_with("D NO [BADURL \"/INBOX;UIDVALIDITY="),
        "{r:?}"
    );
    assert!(
        get(&r, "NOUID").starts_with("E NO [BADURL \"/INBOX/;UID=999\"]"),
        "{r:?}"
    );
    assert!(
        get(&r, "NOBOX").starts_with("I NO [BADURL \"/Nope/;UID=1\"]"),
        "{r:?}"
    );
    assert!(get(&r, "COUNT").contains("(MESSAGES 4)"), "{r:?}");
}
