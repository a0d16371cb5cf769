//! Real clients against the real binary: Python's smtplib, swaks, curl and openssl s_client, over real
//! TCP and TLS. Each test starts its own server.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;

/// The one message in `user`'s INBOX whose text contains `token`.
fn stored_with(server: &TestServer, user: &str, token: &str) -> String {
    let found: Vec<String> = server
        .inbox(user)
        .into_iter()
        .filter(|m| m.contains(token))
        .collect();
    assert_eq!(found.len(), 1, "messages containing {token:?}: {found:#?}");
    found.into_iter().next().unwrap()
}

/// The one message in alice's INBOX containing `token`, which came over TLS 1.3: asserts its
/// Return-Path is `<sender>` and its Received header says `with` and names the TLS 1.3 cipher.
/// Returns the message and that header.
fn stored_over_tls(server: &TestServer, token: &str, sender: &str, with: &str) -> (String, String) {
    let msg = stored_with(server, USER, token);
    assert!(
        msg.starts_with(&format!("Return-Path: <{sender}>\r\n")),
        "{msg}"
    );
    let rec = received(&msg);
    assert!(received_with(&rec, with), "{rec}");
    assert!(rec.contains("using TLSv1.3 with cipher"), "{rec}");
    (msg, rec)
}

/// Python prelude: `port`, `user` and `pw` from the arguments [`smtplib`] passes.
const PY_PRELUDE: &str = r#"
import base64, smtplib, sys
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
"#;

/// Runs `script` (after [`PY_UNVERIFIED`] and [`PY_PRELUDE`]) for alice on `port`; the
/// "KEY value" lines it printed.
fn smtplib(port: u16, script: &str) -> HashMap<String, String> {
    let script = format!("{PY_UNVERIFIED}{PY_PRELUDE}{script}");
    results(&python(&script, &[&port.to_string(), USER, PASSWORD]))
}

const SMTPLIB_SUBMISSION: &str = r#"
s = smtplib.SMTP("127.0.0.1", port, timeout=10)
code, _ = s.ehlo("client.example")
print("EHLO1", code)
print("AUTH1", s.has_extn("auth"))
print("STARTTLS1", s.has_extn("starttls"))
try:
    s.login(user, pw)
    print("LOGIN1 ok")
except smtplib.SMTPNotSupportedError:
    print("LOGIN1 refused")
# What the server itself answers to an AUTH before TLS (the client library would not send it).
cred = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
code, msg = s.docmd("AUTH", "PLAIN " + cred)
print("AUTHRAW1", code, msg.decode())
code, _ = s.starttls(context=ctx)
print("STARTTLS", code)
print("TLS", s.sock.version(), s.sock.cipher()[0])
code, _ = s.ehlo("client.example")
print("EHLO2", code)
print("AUTH2", s.esmtp_features.get("auth", "-"))
print("STARTTLS2", s.has_extn("starttls"))
code, msg = s.login(user, pw)
print("LOGIN2", code, msg.decode())
# Without Date and Message-ID: the submission server adds them.
msg = "From: Alice <%s>\r\nTo: %s\r\nSubject: smtplib-sub-token\r\n\r\nHello from smtplib.\r\nsecond line\r\n" % (user, user)
code, m = s.mail(user); print("MAIL", code, m.decode())
code, m = s.rcpt(user); print("RCPT", code, m.decode())
code, m = s.data(msg); print("DATA", code, m.decode())
# With its own Date and Message-ID: nothing is added.
msg = "From: %s\r\nTo: %s\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <own-id@client.example>\r\nSubject: smtplib-own-headers\r\n\r\nbody\r\n" % (user, user)
code, m = s.mail(user); print("MAIL2", code, m.decode())
code, m = s.rcpt(user); print("RCPT2", code, m.decode())
code, m = s.data(msg); print("DATA2", code, m.decode())
code, m = s.quit(); print("QUIT", code)
"#;

#[test]
fn smtplib_submission_starttls_auth_and_send() {
    let server = TestServer::start();
    let r = smtplib(server.ports.submission, SMTPLIB_SUBMISSION);
    // Before TLS: STARTTLS offered, AUTH neither offered nor accepted.
    assert_eq!(get(&r, "EHLO1"), "250");
    assert_eq!(get(&r, "AUTH1"), "False", "AUTH advertised before TLS");
    assert_eq!(get(&r, "STARTTLS1"), "True");
    assert_eq!(get(&r, "LOGIN1"), "refused");
    assert!(
        get(&r, "AUTHRAW1").starts_with("530 5.7.0"),
        "AUTH before TLS: {}",
        get(&r, "AUTHRAW1")
    );
    // After TLS.
    assert_eq!(get(&r, "STARTTLS"), "220");
    assert!(get(&r, "TLS").starts_with("TLSv1.3 "), "{}", get(&r, "TLS"));
    assert_eq!(get(&r, "EHLO2"), "250");
    let auth = get(&r, "AUTH2");
    assert!(
        auth.split_whitespace().any(|m| m == "PLAIN")
            && auth.split_whitespace().any(|m| m == "LOGIN"),
        "AUTH mechanisms after TLS: {auth}"
    );
    assert_eq!(get(&r, "STARTTLS2"), "False", "STARTTLS offered inside TLS");
    for (key, reply) in [
        ("LOGIN2", "235 2.7.0"),
        ("MAIL", "250 2.1.0"),
        ("RCPT", "250 2.1.5"),
        ("DATA", "250 2.0.0"),
        ("DATA2", "250 2.0.0"),
    ] {
        let got = get(&r, key);
        assert!(got.starts_with(reply), "{key}: {got}");
    }
    assert_eq!(get(&r, "QUIT"), "221");

    let (msg, rec) = stored_over_tls(&server, "smtplib-sub-token", USER, "ESMTPSA");
    // The cipher by its standard (IANA/OpenSSL) name, as the client negotiated it, e.g.
    // "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)" as the README shows.
    let cipher = get(&r, "TLS").split_whitespace().nth(1).unwrap().to_owned();
    assert!(
        rec.contains(&format!("(using TLSv1.3 with cipher {cipher})")),
        "Received does not name the cipher {cipher}: {rec}"
    );
    assert!(rec.contains("client.example"), "HELO name missing: {rec}");
    assert_eq!(header_values(&msg, "Date").len(), 1, "{msg}");
    let mid = header_values(&msg, "Message-ID");
    assert_eq!(mid.len(), 1, "{msg}");
    assert!(
        mid[0].starts_with('<') && mid[0].ends_with('>') && mid[0].contains('@'),
        "{mid:?}"
    );
    assert_eq!(header_values(&msg, "Subject"), vec!["smtplib-sub-token"]);
    assert_eq!(body(&msg), "Hello from smtplib.\r\nsecond line\r\n");
    assert!(only_crlf(&msg));

    let own = stored_with(&server, USER, "smtplib-own-headers");
    assert_eq!(
        header_values(&own, "Date"),
        vec!["Mon, 1 Jan 2024 00:00:00 +0000"],
        "{own}"
    );
    assert_eq!(
        header_values(&own, "Message-ID"),
        vec!["<own-id@client.example>"],
        "{own}"
    );
}

const SMTPLIB_SSL: &str = r#"
s = smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=ctx)
print("TLS", s.sock.version())
code, _ = s.ehlo("implicit.example")
print("EHLO", code)
print("STARTTLS", s.has_extn("starttls"))
print("AUTH", s.esmtp_features.get("auth", "-"))
code, msg = s.login(user, pw)
print("LOGIN", code)
msg = "From: %s\r\nTo: %s\r\nSubject: smtplib-ssl-token\r\n\r\nover implicit TLS\r\n" % (user, user)
print("SEND", s.sendmail(user, [user], msg))
s.quit()
"#;

#[test]
fn smtplib_implicit_tls_login_and_send() {
    let server = TestServer::start();
    let r = smtplib(server.ports.submissions, SMTPLIB_SSL);
    assert_eq!(get(&r, "TLS"), "TLSv1.3");
    assert_eq!(get(&r, "EHLO"), "250");
    assert_eq!(
        get(&r, "STARTTLS"),
        "False",
        "STARTTLS offered on implicit TLS"
    );
    assert!(get(&r, "AUTH").contains("PLAIN"), "{}", get(&r, "AUTH"));
    assert_eq!(get(&r, "LOGIN"), "235");
    assert_eq!(get(&r, "SEND"), "{}", "refused recipients");
    let (msg, _) = stored_over_tls(&server, "smtplib-ssl-token", USER, "ESMTPSA");
    assert_eq!(body(&msg), "over implicit TLS\r\n");
}

/// `swaks --server 127.0.0.1:PORT ARGS MORE --header "Subject: SUBJECT"` (`args` split at
/// white space, `more` as they are), and `--body BODY` if given; asserts it succeeded.
fn swaks(port: u16, args: &str, more: &[&str], subject: &str, body: Option<&str>) -> CmdOutput {
    require_tool("swaks", "swaks");
    let mut cmd = Command::new("swaks");
    cmd.arg("--server")
        .arg(format!("127.0.0.1:{port}"))
        .args(args.split_whitespace())
        .args(more)
        .args(["--header", &format!("Subject: {subject}")]);
    if let Some(body) = body {
        cmd.args(["--body", body]);
    }
    let out = run(cmd, None);
    assert!(out.status.success(), "swaks failed:\n{}", out.all());
    out
}

#[test]
fn swaks_mx_with_starttls_is_esmtps() {
    let server = TestServer::start();
    // Debian's swaks 20201014 does not verify certificates and has no --tls-verify=no; newer ones do not verify by default either.
    let out = swaks(
        server.ports.smtp,
        "--tls --helo sender.example --from someone@outside.example --to alice@example.test",
        &[],
        "swaks-tls-token",
        Some("sent by swaks over STARTTLS"),
    );
    assert!(out.stdout.contains("<~  250 2.0.0"), "{}", out.stdout);
    let (msg, rec) = stored_over_tls(
        &server,
        "swaks-tls-token",
        "someone@outside.example",
        "ESMTPS",
    );
    assert!(rec.contains("sender.example"), "{rec}");
    assert!(rec.contains("for <alice@example.test>"), "{rec}");
    assert!(body(&msg).contains("sent by swaks over STARTTLS"), "{msg}");
}

#[test]
fn swaks_mx_without_tls_is_esmtp() {
    let server = TestServer::start();
    swaks(
        server.ports.smtp,
        "--helo plain.example --from someone@outside.example --to alice@example.test",
        &[],
        "swaks-plain-token",
        Some("sent by swaks in plaintext"),
    );
    let msg = stored_with(&server, USER, "swaks-plain-token");
    let rec = received(&msg);
    assert!(received_with(&rec, "ESMTP"), "{rec}");
    assert!(!rec.contains("TLS"), "plaintext hop claims TLS: {rec}");
    // MX: no Date/Message-ID are added for other servers' mail (swaks sends its own Date).
    assert_eq!(header_values(&msg, "Date").len(), 1, "{msg}");
}

#[test]
fn swaks_submission_with_auth() {
    let server = TestServer::start();
    let out = swaks(
        server.ports.submission,
        &format!("--tls --auth-user {USER} --from {USER} --to {USER}"),
        &["--auth-password", PASSWORD],
        "swaks-sub-token",
        None,
    );
    assert!(out.stdout.contains("<~  235 2.7.0"), "{}", out.stdout);
    let msg = stored_with(&server, USER, "swaks-sub-token");
    assert!(received_with(&received(&msg), "ESMTPSA"), "{msg}");
}

/// curl submits a message with the subject `token` (and a line starting with a dot) as alice
/// to `rcpts`, over `scheme` (`smtp`: STARTTLS required, `smtps`) on `port`; asserts success.
fn curl_send(server: &TestServer, scheme: &str, port: u16, rcpts: &[&str], token: &str) {
    let file = server.dir.path().join(format!("{token}.eml"));
    std::fs::write(
        &file,
        format!(
            "From: {USER}\r\nTo: {USER}\r\nSubject: {token}\r\n\r\nsent by curl\r\n.leading dot\r\n"
        ),
    )
    .unwrap();
    let url = format!("{scheme}://127.0.0.1:{port}/curl.example");
    let creds = credentials();
    let mut args = vec![url.as_str(), "--ssl-reqd", "--insecure", "--user", &creds];
    args.extend(["--mail-from", USER]);
    for r in rcpts {
        args.extend(["--mail-rcpt", r]);
    }
    let file = file.display().to_string();
    args.extend(["--upload-file", &file]);
    let out = curl(&args);
    assert!(out.status.success(), "curl failed:\n{}", out.all());
}

#[test]
fn curl_submission_starttls() {
    let server = TestServer::start();
    let port = server.ports.submission;
    curl_send(&server, "smtp", port, &[USER], "curl-starttls-token");
    let msg = stored_with(&server, USER, "curl-starttls-token");
    let rec = received(&msg);
    assert!(received_with(&rec, "ESMTPSA"), "{rec}");
    assert!(rec.contains("using TLSv1.3"), "{rec}");
    // curl dot-stuffs, the server unstuffs.
    assert_eq!(body(&msg), "sent by curl\r\n.leading dot\r\n");
    assert!(server.queue().is_empty());
}

#[test]
fn curl_smtps_local_and_remote_recipient() {
    let server = TestServer::start();
    let port = server.ports.submissions;
    let rcpts = [USER, "bob@remote.example"];
    curl_send(&server, "smtps", port, &rcpts, "curl-smtps-token");
    let msg = stored_with(&server, USER, "curl-smtps-token");
    assert!(received_with(&received(&msg), "ESMTPSA"), "{msg}");

    // The remote recipient is accepted on submission and waits in the outbound queue.
    let queue = server.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].recipient, "bob@remote.example");
    assert_eq!(queue[0].sender, USER);
    assert_eq!(queue[0].attempts, 0);
    let queued = server.blob(queue[0].blob).expect("queued blob");
    assert!(queued.starts_with("Received: "), "queued copy: {queued}");
    assert!(!queued.contains("Return-Path:"), "queued copy: {queued}");
    assert!(queued.contains("curl-smtps-token"));
}

#[test]
fn curl_remote_only_recipient_goes_to_queue() {
    let server = TestServer::start();
    let port = server.ports.submission;
    curl_send(
        &server,
        "smtp",
        port,
        &["bob@remote.example"],
        "curl-remote-token",
    );
    assert!(server.inbox(USER).is_empty());
    let queue = server.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].recipient, "bob@remote.example");
}

/// `openssl s_client` to submission `port` (`starttls`: with STARTTLS) sending EHLO and QUIT:
/// asserts a TLS 1.3 handshake and an EHLO reply inside TLS (the last one in the output) that
/// offers AUTH PLAIN LOGIN and no STARTTLS; returns all of s_client's output.
fn s_client_ehlo(port: u16, starttls: bool) -> String {
    let all = s_client(port, starttls, &[], "EHLO sclient.example\nquit\n").all();
    assert!(all.contains("New, TLSv1.3, Cipher is TLS_"), "{all}");
    let start = all
        .rfind("250-localhost")
        .unwrap_or_else(|| panic!("no EHLO reply after TLS in:\n{all}"));
    let ehlo = all[start..]
        .lines()
        .take_while(|l| l.starts_with("250"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(
        !ehlo.contains("STARTTLS"),
        "STARTTLS offered inside TLS: {ehlo}"
    );
    all
}

#[test]
fn openssl_s_client_starttls_submission() {
    let server = TestServer::start();
    let all = s_client_ehlo(server.ports.submission, true);
    assert!(all.contains("221"), "no reply to QUIT: {all}");
}

#[test]
fn openssl_s_client_implicit_tls() {
    let server = TestServer::start();
    let all = s_client_ehlo(server.ports.submissions, false);
    assert!(all.contains("220 localhost"), "no greeting: {all}");
    // The certificate served is the generated development certificate.
    let served = first_pem_cert(&all).expect("certificate in s_client output");
    let file = std::fs::read_to_string(server.cert()).unwrap();
    assert_eq!(Some(served), first_pem_cert(&file));
}

#[test]
fn openssl_old_tls_versions_are_refused() {
    let server = TestServer::start();
    // SECLEVEL=0 so that the client really offers TLS 1.1 and the server is the one refusing.
    let tls11 = |port, starttls| {
        s_client(
            port,
            starttls,
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
            "quit\n",
        )
    };
    let old = tls11(server.ports.submissions, false);
    let all = old.all();
    assert!(!old.status.success(), "TLS 1.1 handshake succeeded:\n{all}");
    assert!(!all.contains("New, TLSv1.1"), "{all}");
    assert!(!all.contains("220 localhost"), "{all}");
    // Refused by the server (a TLS alert), not by the local OpenSSL configuration.
    assert!(
        all.contains("alert") && all.contains("Protocol  : TLSv1.1"),
        "the server did not refuse a TLS 1.1 ClientHello with an alert:\n{all}"
    );
    // Same on STARTTLS.
    let old = tls11(server.ports.submission, true);
    assert!(
        !old.status.success(),
        "TLS 1.1 via STARTTLS:\n{}",
        old.all()
    );
    assert!(!old.all().contains("New, TLSv1.1"), "{}", old.all());
    // TLS 1.2 is still accepted.
    let tls12 = s_client(server.ports.submissions, false, &["-tls1_2"], "quit\n");
    assert!(
        tls12.all().contains("New, TLSv1.2, Cipher is ECDHE-"),
        "{}",
        tls12.all()
    );
}

#[test]
fn swaks_pipelining_two_recipients() {
    let server = TestServer::start();
    server.add_user("bob@example.test", "bob pw");
    swaks(
        server.ports.smtp,
        "--pipeline --from someone@outside.example --to alice@example.test,bob@example.test",
        &[],
        "swaks-pipeline-token",
        None,
    );
    let a = stored_with(&server, USER, "swaks-pipeline-token");
    let b = stored_with(&server, "bob@example.test", "swaks-pipeline-token");
    // One stored copy for both (single instance), without a "for" clause (two recipients).
    assert_eq!(a, b);
    assert!(!received(&a).contains(" for <"), "{}", received(&a));
}
