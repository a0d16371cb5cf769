//! The `https` listener end to end: `hato serve` with an `https` listener and `[mta_sts]` serves
//! the policy to curl, logs the id to publish and warns about policy hosts its certificate does
//! not cover; `hato dns` prints the `_mta-sts` TXT id of exactly the policy served and the TLSA
//! record of the certificate (checked against openssl).

mod common;

use common::*;

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: localhost\r\nmax_age: 86400\r\n";

/// curl https://`host`:`port``path` with `host` resolved to 127.0.0.1 and `ca` as the only CA:
/// the status and the body.
fn get_https(
    port: u16,
    ca: &std::path::Path,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (u16, String) {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let ca = ca.display().to_string();
    let url = format!("https://{host}:{port}{path}");
    let mut args = vec!["--http1.1", "-w", "\n%{http_code}", "--resolve", &resolve];
    args.extend(["--cacert", &ca]);
    args.extend(extra);
    args.push(&url);
    let out = curl(&args);
    out.assert_ok();
    let (body, status) = out.stdout.rsplit_once('\n').expect("a status line");
    (status.parse().expect("a status"), body.to_string())
}

#[test]
fn mta_sts_policy_is_served_and_published() {
    require_tool("openssl", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(
        dir.path(),
        "mail",
        &["localhost", "mta-sts.example.test"],
        30,
    );
    let port = free_port();
    let listener = format!(
        "[[listener]]\nprotocol = \"https\"\nbind = \"127.0.0.1:{port}\"\ntls = \"implicit\"\n"
    );
    let extra = format!(
        "{FAST_AUTH}{}[mta_sts]\nmode = \"enforce\"\nmax_age = 86400\n",
        tls_config(&cert, &key)
    );
    let s = TestServer::start_in(dir, &listener, &extra);

    let (status, body) = get_https(
        port,
        &cert,
        "mta-sts.example.test",
        "/.well-known/mta-sts.txt",
        &[],
    );
    assert_eq!((status, body.as_str()), (200, POLICY));
    let (status, _) = get_https(
        port,
        &cert,
        "mta-sts.example.test",
        "/.well-known/mta-sts.txt",
        &["-H", "Host: mta-sts.other.test"],
    );
    assert_eq!(status, 404);

    let digest = ring::digest::digest(&ring::digest::SHA256, POLICY.as_bytes());
    let id: String = digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.wait_for_log(
        &format!("v=STSv1; id={id}"),
        std::time::Duration::from_secs(5),
    );
    let logs = s.logs();
    assert!(
        logs.contains("no certificate covers these MTA-STS policy hosts")
            && logs.contains("mta-sts.localhost"),
        "{logs}"
    );

    let dns = s.cli(&["dns"], None);
    dns.assert_ok();
    let out = &dns.stdout;
    assert!(
        out.contains(&format!(
            "\n_mta-sts.example.test. IN TXT \"v=STSv1; id={id}\"\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("\nmta-sts.example.test. IN CNAME localhost.\n"),
        "{out}"
    );
    assert!(
        out.contains("\nexample.test. IN MX 10 localhost.\n"),
        "{out}"
    );
    assert!(out.contains("\nlocalhost. IN A <IPv4 address>\n"), "{out}");
    assert!(
        out.contains("; warning: the https listener is on port"),
        "{out}"
    );
    let script = format!(
        "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
        cert.display()
    );
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &script]);
    let openssl = run(sh, None);
    openssl.assert_ok();
    let spki = openssl
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(
        out.contains(&format!("\n_25._tcp.localhost. IN TLSA 3 1 1 {spki}\n")),
        "{out}"
    );
    assert!(dns.stderr.contains("mta-sts.localhost"), "{}", dns.stderr);

    let one = s.cli(
        &[
            "dns",
            "--domain",
            "Example.test",
            "--ip",
            "192.0.2.7",
            "--ip",
            "2001:db8::7",
        ],
        None,
    );
    one.assert_ok();
    assert!(
        one.stdout.contains("\nlocalhost. IN A 192.0.2.7\n"),
        "{}",
        one.stdout
    );
    assert!(
        one.stdout.contains("\nlocalhost. IN AAAA 2001:db8::7\n"),
        "{}",
        one.stdout
    );
    assert!(!one.stdout.contains("_dmarc.localhost."), "{}", one.stdout);
    let bad = s.cli(&["dns", "--domain", "other.test"], None);
    assert!(!bad.status.success());
    assert!(
        bad.stderr.contains("not one of the local domains"),
        "{}",
        bad.stderr
    );
}
