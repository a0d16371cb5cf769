//! IMAP interoperability with real clients against the real binary: the LIST forms Python's
//! imaplib sends, mbsync (isync) syncing a whole account both ways, fetchmail over IMAPS, a
//! 10,000-message mailbox, malformed MIME, and four concurrent sessions on one mailbox. Each test
//! starts its own server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

// ---- LIST forms -------------------------------------------------------------------------------

#[test]
fn imaplib_list_forms_are_accepted() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
c = login()
c.debug = 0
def sent(f):
    # What imaplib writes: capture it from its send().
    lines = []
    orig = c.send
    def spy(data):
        lines.append(data)
        orig(data)
    c.send = spy
    try:
        typ, data = f()
        res = typ + " " + " | ".join(x.decode() for x in data if x)
    except imaplib.IMAP4.error as e:
        res = "ERR " + str(e)
    finally:
        c.send = orig
    return repr(lines[0].split(b" ", 1)[1]) + " -> " + res
out("LIST_DEFAULT", sent(lambda: c.list()))
out("LIST_QUOTED_REF", sent(lambda: c.list('""', '*')))
out("LIST_QUOTED_PAT", sent(lambda: c.list('""', '"*"')))
out("LIST_PERCENT", sent(lambda: c.list('""', '%')))
out("LIST_INBOX", sent(lambda: c.list('""', 'INBOX')))
out("LIST_ATOM_REF", sent(lambda: c.list('INBOX', '*')))
out("LSUB_DEFAULT", sent(lambda: c.lsub()))
out("LIST_EMPTY_REF", sent(lambda: c.list('', '*')))
out("LIST_NONE_REF", sent(lambda: c.list(None, '*')))
c.logout()
"#,
    );
    for key in [
        "LIST_DEFAULT",
        "LIST_QUOTED_REF",
        "LIST_QUOTED_PAT",
        "LIST_PERCENT",
        "LIST_INBOX",
    ] {
        let v = get(&r, key);
        assert!(v.contains("-> OK") && v.contains("\"INBOX\""), "{key}: {v}");
    }
    assert!(
        get(&r, "LIST_DEFAULT").starts_with("b'LIST \"\" *"),
        "{r:?}"
    );
    assert!(get(&r, "LIST_ATOM_REF").contains("-> OK"), "{r:?}");
    assert!(get(&r, "LSUB_DEFAULT").contains("-> OK"), "{r:?}");
    // `list('', '*')` makes imaplib send `LIST  *` (two spaces, no reference) and `list(None,
    // '*')` `LIST *`: neither is RFC 9051/3501 syntax (the reference is required and may only
    // be empty as `""`); hato answers BAD and the session goes on.
    assert!(get(&r, "LIST_EMPTY_REF").contains("ERR"), "{r:?}");
    assert!(get(&r, "LIST_NONE_REF").contains("ERR"), "{r:?}");
}

// ---- mbsync -----------------------------------------------------------------------------------

/// The Maildir files of `folder` (cur and new), with their contents.
fn maildir_files(folder: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap();
            out.push((p, data));
        }
    }
    out.sort();
    out
}

/// `data` without mbsync's `X-TUID:` header line.
fn without_tuid(data: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if !line.starts_with("X-TUID: ") {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn mbsync(home: &Path, rc: &Path) -> CmdOutput {
    require_tool("mbsync", "isync");
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "mbsync", "-V", "-c"])
        .arg(rc)
        .arg("-a")
        .env("HOME", home);
    let out = run(cmd, None);
    assert!(out.status.success(), "mbsync failed:\n{}", out.all());
    // mbsync reports protocol trouble it works around as warnings: hato must cause none.
    let complaints: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("warning") || l.contains("error") || l.contains("unexpected")
        })
        .collect();
    assert!(complaints.is_empty(), "mbsync complained:\n{}", out.all());
    out
}

/// Messages of one mailbox through imaplib: UID, flags and bytes (`UID FLAGS hex` lines).
const PY_DUMP: &str = r#"
def dump(c, box):
    typ, data = c.select('"%s"' % box)
    n = int(data[0])
    res = []
    if n:
        typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        for x in data:
            if isinstance(x, tuple):
                m = re.search(r"UID (\d+) FLAGS \(([^)]*)\)", x[0].decode())
                res.append((int(m.group(1)), m.group(2), x[1]))
    return res
"#;

#[test]
fn mbsync_syncs_a_whole_account_both_ways() {
    require_tool("mbsync", "isync");
    let server = TestServer::start();
    deliver_to_alice(
        &server,
        &[
            message("inbox one", "first"),
            message("inbox two", "second\r\n.with a dot line"),
            message("inbox three", "third"),
        ],
    );
    imap_py(
        &server,
        r#"
c = login()
for i in range(2):
    typ, data = c.append("Archive", "(\\Seen)", None, ("From: a@example.test\r\nSubject: archived %d\r\n\r\nold news %d\r\n" % (i, i)).encode())
    assert typ == "OK", data
c.logout()
"#,
    );
    let home = server.dir.path().join("mbsync-home");
    let mail = home.join("Mail");
    std::fs::create_dir_all(&mail).unwrap();
    let rc = home.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount hato\n\
             Host 127.0.0.1\n\
             Port {port}\n\
             User {USER}\n\
             Pass \"{PASSWORD}\"\n\
             SSLType IMAPS\n\
             SSLVersions TLSv1.3\n\
             CertificateFile {cert}\n\
             AuthMechs PLAIN\n\
             \n\
             IMAPStore remote\n\
             Account hato\n\
             \n\
             MaildirStore local\n\
             Path {mail}/\n\
             Inbox {mail}/INBOX\n\
             SubFolders Verbatim\n\
             \n\
             Channel all\n\
             Far :remote:\n\
             Near :local:\n\
             Patterns *\n\
             Create Both\n\
             Expunge Both\n\
             SyncState *\n",
            port = server.ports.imaps,
            cert = server.cert().display(),
            mail = mail.display(),
        ),
    )
    .unwrap();

    // 1. Pull: every folder comes down, messages byte for byte (Maildir stores LF endings).
    let first = mbsync(&home, &rc);
    let inbox = server.inbox(USER);
    assert_eq!(inbox.len(), 3);
    let local_inbox = maildir_files(&mail.join("INBOX"));
    assert_eq!(local_inbox.len(), 3, "{}", first.all());
    // mbsync adds an X-TUID header to the messages it stores (its own bookkeeping).
    let mut local: Vec<Vec<u8>> = local_inbox.iter().map(|f| without_tuid(&f.1)).collect();
    let mut remote: Vec<Vec<u8>> = inbox
        .iter()
        .map(|m| m.replace("\r\n", "\n").into_bytes())
        .collect();
    local.sort();
    remote.sort();
    assert_eq!(local, remote, "INBOX differs after the pull");
    let archive = maildir_files(&mail.join("Archive"));
    assert_eq!(archive.len(), 2, "{}", first.all());
    assert!(
        archive
            .iter()
            .all(|(p, d)| p.to_string_lossy().ends_with(",S")
                && String::from_utf8_lossy(d).contains("old news")),
        "{archive:?}"
    );
    for folder in ["Sent", "Drafts", "Trash", "Junk"] {
        assert!(
            mail.join(folder).join("cur").is_dir(),
            "{folder} not synced"
        );
    }

    // 2. Push: flags changed locally and a new local message go up.
    let target = local_inbox
        .iter()
        .find(|(_, d)| String::from_utf8_lossy(d).contains("Subject: inbox one"))
        .unwrap()
        .0
        .clone();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let base = name.split(":2,").next().unwrap().to_owned();
    let flagged = mail.join("INBOX/cur").join(format!("{base}:2,FS"));
    std::fs::rename(&target, &flagged).unwrap();
    let new = mail.join("INBOX/new/1700000000.hato-test.localhost");
    std::fs::write(
        &new,
        "From: alice@example.test\nTo: bob@sender.example\nSubject: written offline\n\nmade locally\n",
    )
    .unwrap();
    let push = mbsync(&home, &rc);
    let r = imap_py(
        &server,
        &format!(
            "{PY_DUMP}\n{}",
            r#"
c = login()
for uid, flags, body in dump(c, "INBOX"):
    s = re.search(rb"Subject: ([^\r\n]*)", body).group(1).decode()
    out("MSG_" + s.replace(" ", "_"), "%d %s|%s" % (uid, flags, body.hex()))
c.logout()
"#
        ),
    );
    let one = get(&r, "MSG_inbox_one");
    assert!(
        one.contains("\\Flagged") && one.contains("\\Seen"),
        "local flags not pushed: {one}\n{}",
        push.all()
    );
    assert!(!get(&r, "MSG_inbox_two").contains("\\Flagged"), "{r:?}");
    let offline = get(&r, "MSG_written_offline");
    let body = unhex(offline.split('|').nth(1).unwrap());
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("Subject: written offline\r\n") && body.contains("\r\n\r\nmade locally\r\n"),
        "{body:?}"
    );

    // 3. A local deletion is expunged on hato.
    let victim = maildir_files(&mail.join("INBOX"))
        .into_iter()
        .find(|(_, d)| String::from_utf8_lossy(d).contains("Subject: inbox two"))
        .unwrap()
        .0;
    std::fs::remove_file(&victim).unwrap();
    let del = mbsync(&home, &rc);
    let inbox = server.inbox(USER);
    assert_eq!(inbox.len(), 3, "{}", del.all());
    assert!(
        !inbox.iter().any(|m| m.contains("Subject: inbox two")),
        "the local deletion did not reach hato:\n{}",
        del.all()
    );
    // And a last run has nothing left to do: both sides agree.
    mbsync(&home, &rc);
    assert_eq!(maildir_files(&mail.join("INBOX")).len(), 3);
    assert_eq!(server.inbox(USER).len(), 3);
}

// ---- fetchmail --------------------------------------------------------------------------------

#[test]
fn fetchmail_downloads_the_inbox_over_imaps() {
    let server = TestServer::start();
    let msgs: Vec<String> = (1..=3)
        .map(|i| {
            message(
                &format!("fetchmail {i}"),
                &format!("body {i}\r\n.dotted\r\nend"),
            )
        })
        .collect();
    let stored = deliver_to_alice(&server, &msgs);
    let files = fetchmail(&server, "imap", server.ports.imaps, "", "keep", 3);
    for s in &stored {
        // fetchmail adds its own Received header at the top; the stored message follows.
        let subject = s
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .unwrap()
            .to_owned();
        let file = files
            .iter()
            .find(|f| f.contains(&subject))
            .unwrap_or_else(|| panic!("{subject} not downloaded: {files:#?}"));
        let body = &s[s.find("\r\n\r\n").unwrap()..];
        assert!(file.ends_with(body), "{file:?} vs {s:?}");
    }
    // `keep`: the messages stay, now \Seen.
    assert_eq!(server.inbox(USER).len(), 3);
}

// ---- a 10,000-message mailbox -------------------------------------------------------------------

#[test]
fn ten_thousand_messages() {
    let (_server, r) = imap_py_new(
        &[],
        r#"
N = 10000
def msg(i):
    return ("From: bulk@example.test\r\nSubject: bulk %05d\r\nMessage-ID: <%d@bulk>\r\n\r\nmessage number %d\r\n" % (i, i, i)).encode()
r = conn()
t0 = time.time()
# MULTIAPPEND with LITERAL+: 100 messages per command, a few commands in flight.
batch = 100
pending = []
for b in range(0, N, batch):
    parts = [b"A%d APPEND INBOX" % b]
    for i in range(b + 1, b + batch + 1):
        m = msg(i)
        parts.append(b" {%d+}\r\n" % len(m) + m)
    r.send(b"".join(parts) + b"\r\n")
    pending.append("A%d" % b)
    if len(pending) >= 5:
        t = pending.pop(0)
        res = r.responses(t, 120)
        assert res[-1][0].startswith(t + " OK"), res[-1]
for t in pending:
    res = r.responses(t, 120)
    assert res[-1][0].startswith(t + " OK"), res[-1]
out("T_APPEND", "%.2f" % (time.time() - t0))
t0 = time.time()
res = r.cmd("S", "SELECT INBOX", 120)
out("T_SELECT", "%.2f" % (time.time() - t0))
out("SELECT", " | ".join(x[0] for x in res))
t0 = time.time()
res = r.cmd("F", "FETCH 1:* (FLAGS)", 120)
out("T_FETCH_FLAGS", "%.2f" % (time.time() - t0))
fetches = [x[0] for x in res if x[0].startswith("* ") and " FETCH (" in x[0]]
out("FETCH_FLAGS_N", len(fetches))
out("FETCH_FLAGS_SEQS", int(sum(int(x.split()[1]) for x in fetches) == N * (N + 1) // 2))
out("FETCH_FLAGS_DONE", res[-1][0])
t0 = time.time()
res = r.cmd("U", "UID SEARCH UNSEEN", 120)
out("T_UID_SEARCH", "%.2f" % (time.time() - t0))
found = [x[0] for x in res if x[0].startswith("* SEARCH")][0].split()[2:]
out("UNSEEN_N", len(found))
out("UNSEEN_DONE", res[-1][0])
t0 = time.time()
res = r.cmd("B", "FETCH 9999 BODY[]", 120)
out("T_FETCH_BODY", "%.2f" % (time.time() - t0))
body = [x for x in res if x[0].startswith("* 9999 FETCH")][0][1][0]
out("BODY_OK", int(body == msg(9999)))
out("BODY_DONE", res[-1][0])
t0 = time.time()
res = r.cmd("T", "STORE 1:5000 +FLAGS (\\Seen)", 120)
out("T_STORE", "%.2f" % (time.time() - t0))
stored = [x[0] for x in res if x[0].startswith("* ") and " FETCH (" in x[0] and "\\Seen" in x[0]]
out("STORE_N", len(stored))
out("STORE_DONE", res[-1][0])
res = r.cmd("V", "UID SEARCH UNSEEN", 120)
found = [int(u) for u in [x[0] for x in res if x[0].startswith("* SEARCH")][0].split()[2:]]
out("UNSEEN_AFTER", "%d %d %d %d" % (len(found), min(found), max(found), int(9999 in found)))
res = r.cmd("N", "NOOP")
out("NOOP", res[-1][0])
"#,
    );
    for key in [
        "T_APPEND",
        "T_SELECT",
        "T_FETCH_FLAGS",
        "T_UID_SEARCH",
        "T_FETCH_BODY",
        "T_STORE",
    ] {
        eprintln!("10,000 messages: {key} {} s", get(&r, key));
    }
    assert!(get(&r, "SELECT").contains("* 10000 EXISTS"), "{r:?}");
    assert_eq!(get(&r, "FETCH_FLAGS_N"), "10000");
    assert_eq!(get(&r, "FETCH_FLAGS_SEQS"), "1");
    assert!(get(&r, "FETCH_FLAGS_DONE").starts_with("F OK"), "{r:?}");
    assert_eq!(get(&r, "UNSEEN_N"), "10000");
    assert!(get(&r, "UNSEEN_DONE").starts_with("U OK"), "{r:?}");
    assert_eq!(get(&r, "BODY_OK"), "1");
    assert!(get(&r, "BODY_DONE").starts_with("B OK"), "{r:?}");
    assert_eq!(get(&r, "STORE_N"), "5000");
    assert!(get(&r, "STORE_DONE").starts_with("T OK"), "{r:?}");
    // FETCH 9999 BODY[] (not PEEK) set \Seen on 9999 too.
    assert_eq!(get(&r, "UNSEEN_AFTER"), "4999 5001 10000 0");
    assert!(get(&r, "NOOP").starts_with("N OK"), "{r:?}");
}

// ---- malformed MIME -----------------------------------------------------------------------------

#[test]
fn malformed_mime_is_answered_and_the_connection_stays_usable() {
    let server = TestServer::start();
    // One of them arrives over SMTP too (8-bit header bytes through the whole path).
    deliver_to_alice(
        &server,
        &["From: bob@sender.example\r\nSubject: smtp caf\u{e9}\r\n\r\nvia smtp\r\n".to_string()],
    );
    let r = imap_py(
        &server,
        r#"
msgs = []
# A multipart without its boundary parameter.
msgs.append(b"Subject: no boundary\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n")
# A boundary that never appears in the body; and one that is never closed.
msgs.append(b"Subject: lost boundary\r\nContent-Type: multipart/mixed; boundary=\"zzz\"\r\n\r\n--x\r\n\r\nhello\r\n")
msgs.append(b"Subject: unclosed\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>cut")
# Broken base64 (invalid characters, wrong padding, truncated).
msgs.append(b"Subject: bad base64\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64===\r\nSGVsbG8gd29ybGQ\r\nQQ=\r\n")
msgs.append(b"Subject: bad base64 part\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n--b--\r\n")
# 8-bit header bytes (UTF-8 and Latin-1, in Subject, From and a parameter).
msgs.append("Subject: caf\u00e9 \u65e5\u672c\r\nFrom: J\u00fcrgen <j@example.test>\r\nContent-Type: text/plain; name=\"r\u00e9sum\u00e9.txt\"\r\n\r\nbody\r\n".encode("utf-8"))
msgs.append(b"Subject: latin \xe9\xe8\xff\r\nFrom: \xfc <x@example.test>\r\n\r\nbody\r\n")
# Deeply nested multiparts (far beyond any sane depth).
depth = 200
m = b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
for i in range(1, depth):
    m += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i)
m += b"--b%d\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n" % (depth - 1)
for i in reversed(range(depth)):
    m += b"--b%d--\r\n" % i
msgs.append(m)
# Nested message/rfc822 parts.
inner = b"Subject: inner\r\n\r\ninner body\r\n"
for i in range(50):
    inner = b"Subject: wrap %d\r\nContent-Type: message/rfc822\r\n\r\n" % i + inner
msgs.append(inner)
# No header/body separator at all, and a header-only message without a final CRLF.
msgs.append(b"Subject: no separator\r\nFrom: a@example.test\r\nthis line is not a header\r\nmore\r\n")
msgs.append(b"Subject: only headers")
# Garbage: binary bytes, NUL-free, no structure.
msgs.append(bytes(range(1, 256)) * 4)
# A header line without a colon and an empty Content-Type.
msgs.append(b"Subject: odd\r\nContent-Type:\r\nX-Broken\r\n\r\nbody\r\n")
c = login()
for m in msgs:
    typ, data = c.append("INBOX", None, None, m)
    assert typ == "OK", (m[:40], data)
c.logout()
r = conn()
res = r.cmd("S", "SELECT INBOX")
n = int([x[0] for x in res if x[0].endswith(" EXISTS")][0].split()[1])
out("N", n)
bad = []
for i in range(1, n + 1):
    for items in ["(BODYSTRUCTURE)", "(ENVELOPE)", "(BODY.PEEK[1])", "(BODY)", "(BODY.PEEK[1.MIME] BODY.PEEK[HEADER] BODY.PEEK[TEXT])", "(BINARY.PEEK[1])"]:
        res = r.cmd("F%d" % i, "FETCH %d %s" % (i, items))
        last = res[-1][0]
        fetched = [x for x in res if x[0].startswith("* %d FETCH" % i)]
        # BINARY may refuse an undecodable part with NO [UNKNOWN-CTE]; everything else is OK.
        if items.startswith("(BINARY") and "UNKNOWN-CTE" in last:
            continue
        if not last.startswith("F%d OK" % i) or not fetched:
            bad.append("%d %s: %s" % (i, items, " | ".join(x[0] for x in res)))
res = r.cmd("Z", "FETCH 1:* (BODYSTRUCTURE ENVELOPE)")
out("ALL", res[-1][0])
out("ALL_N", len([x for x in res if x[0].startswith("* ") and " FETCH (" in x[0]]))
out("BAD", repr(bad))
res = r.cmd("N", "NOOP")
out("NOOP", res[-1][0])
res = r.cmd("Q", "SEARCH TEXT innermost")
out("SEARCH", " | ".join(x[0] for x in res))
"#,
    );
    assert_eq!(get(&r, "BAD"), "[]");
    let n: usize = get(&r, "N").parse().unwrap();
    assert_eq!(n, 14);
    assert!(get(&r, "ALL").starts_with("Z OK"), "{r:?}");
    assert_eq!(get(&r, "ALL_N"), "14");
    assert!(get(&r, "NOOP").starts_with("N OK"), "{r:?}");
    assert!(get(&r, "SEARCH").contains("Q OK"), "{r:?}");
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

// ---- concurrency --------------------------------------------------------------------------------

#[test]
fn four_sessions_on_one_mailbox_agree() {
    let (server, r) = imap_py_new(
        &(1..=20)
            .map(|i| message(&format!("seed {i}"), "seed"))
            .collect::<Vec<_>>(),
        r#"
WORKERS, ROUNDS = 4, 40
errors = []
violations = []
finals = {}
stats = {"expunge_seen": 0, "exists_seen": 0, "fetch_flags_seen": 0}
def worker(w):
    try:
        rnd = random.Random(w)
        r = conn()
        res = r.cmd("S", "SELECT INBOX")
        n = int([x[0] for x in res if x[0].endswith(" EXISTS")][0].split()[1])
        def track(res):
            nonlocal n
            for t, _ in res:
                p = t.split()
                if len(p) >= 3 and p[0] == "*" and p[2] == "EXISTS":
                    n = int(p[1])
                elif len(p) >= 3 and p[0] == "*" and p[2] == "EXPUNGE":
                    n -= 1
                    stats["expunge_seen"] += 1
                if len(p) >= 3 and p[0] == "*" and p[2] == "EXISTS":
                    stats["exists_seen"] += 1
        for i in range(ROUNDS):
            op = rnd.choice(["fetch", "fetch", "store", "append", "expunge", "search"])
            tag = "w%dr%d" % (w, i)
            if op == "append":
                m = ("Subject: from %d round %d\r\n\r\nx\r\n" % (w, i)).encode()
                r.send(("%s APPEND INBOX {%d+}\r\n" % (tag, len(m))).encode() + m + b"\r\n")
                res = r.responses(tag)
            elif op == "fetch" and n > 0:
                a = rnd.randint(1, n)
                res = r.cmd(tag, "FETCH %d:* (UID FLAGS)" % a)
                if any(" EXPUNGE" in t or t.startswith("* VANISHED") for t, _ in res):
                    violations.append("%s FETCH: %r" % (tag, res))
            elif op == "search":
                res = r.cmd(tag, "SEARCH ALL")
                if any(" EXPUNGE" in t or t.startswith("* VANISHED") for t, _ in res):
                    violations.append("%s SEARCH: %r" % (tag, res))
            elif op == "store" and n > 0:
                a = rnd.randint(1, n)
                b = min(n, a + rnd.randint(0, 3))
                flag = rnd.choice(["\\Seen", "\\Flagged", "$W%d" % w, "\\Answered"])
                sign = rnd.choice("+-")
                res = r.cmd(tag, "STORE %d:%d %sFLAGS (%s)" % (a, b, sign, flag))
                if any(" EXPUNGE" in t or t.startswith("* VANISHED") for t, _ in res):
                    violations.append("%s STORE: %r" % (tag, res))
            elif op == "expunge" and n > 2:
                a = rnd.randint(1, n)
                res = r.cmd(tag + "d", "STORE %d +FLAGS.SILENT (\\Deleted)" % a)
                track(res)
                res = r.cmd(tag, "EXPUNGE")
            else:
                res = r.cmd(tag, "NOOP")
            track(res)
            if not res[-1][0].startswith(tag + " OK"):
                errors.append("%s %s: %r" % (tag, op, res[-1]))
        finals[w] = r
    except Exception as e:
        errors.append("worker %d: %r" % (w, e))
threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out("STATS", "%d %d" % (stats["expunge_seen"], stats["exists_seen"]))
out("ERRORS", repr(errors))
out("VIOLATIONS", repr(violations))
def uid_flags(r):
    # (sequence number, UID, flags without \Recent) of every message, as r sees them.
    view = []
    for t, _ in r.cmd("f", "FETCH 1:* (UID FLAGS)"):
        m = re.match(r"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)", t)
        if m:
            view.append((int(m.group(1)), int(m.group(2)), " ".join(sorted(m.group(3).replace("\\Recent", "").split()))))
    return view
views = {}
for w, r in sorted(finals.items()):
    r.cmd("n", "NOOP")
    views[w] = sorted(uid_flags(r))
fresh = conn()
fresh.cmd("s", "EXAMINE INBOX")
ref = uid_flags(fresh)
out("WORKERS_DONE", len(finals))
out("REF_N", len(ref))
out("AGREE", int(all(v == sorted(ref) for v in views.values())))
if not all(v == sorted(ref) for v in views.values()):
    out("VIEWS", repr(views) + " REF " + repr(sorted(ref)))
out("SEQ_OK", int([x[0] for x in sorted(ref)] == list(range(1, len(ref) + 1))))
"#,
    );
    assert_eq!(get(&r, "ERRORS"), "[]");
    assert_eq!(get(&r, "VIOLATIONS"), "[]");
    // The sessions did see each other: expunges and new messages were announced.
    let stats: Vec<u32> = get(&r, "STATS")
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    eprintln!(
        "4 sessions: {} EXPUNGE and {} EXISTS responses seen",
        stats[0], stats[1]
    );
    assert!(stats[0] > 0 && stats[1] > 0, "{r:?}");
    assert_eq!(get(&r, "WORKERS_DONE"), "4");
    assert_eq!(get(&r, "AGREE"), "1", "{r:?}");
    assert_eq!(get(&r, "SEQ_OK"), "1", "{r:?}");
    let n: usize = get(&r, "REF_N").parse().unwrap();
    assert!(n > 0, "{r:?}");
    assert_eq!(server.inbox(USER).len(), n);
}
