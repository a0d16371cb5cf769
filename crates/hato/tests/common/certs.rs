//! Certificates made with the openssl CLI, and `openssl s_client`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{CmdOutput, require_tool, run};

/// Runs `openssl ARGS` (asserted to succeed).
fn openssl(args: &[&str]) {
    require_tool("openssl", "openssl");
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    run(cmd, None).assert_ok();
}

/// `openssl req MODE` with a new EC P-256 key (unencrypted, to `key`), the request or
/// certificate to `out`, subject `subj`, then `more` arguments.
fn req_with_new_key(mode: &str, key: &Path, out: &Path, subj: &str, more: &[&str]) {
    let (key, out) = (key.display().to_string(), out.display().to_string());
    let mut args = vec![
        "req",
        mode,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &out,
        "-subj",
        subj,
    ];
    args.extend(more);
    openssl(&args);
}

/// `subjectAltName=DNS:a,DNS:b` for `names`.
fn san(names: &[&str]) -> String {
    let dns: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    format!("subjectAltName={}", dns.join(","))
}

/// A certificate + key made by the openssl CLI (EC P-256), self-signed for `names`, valid `days`.
pub fn make_cert(dir: &Path, stem: &str, names: &[&str], days: u32) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}-cert.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    let days = days.to_string();
    req_with_new_key(
        "-x509",
        &key,
        &cert,
        &format!("/CN={}", names[0]),
        &["-addext", &san(names), "-days", &days],
    );
    (cert, key)
}

/// A certificate for `names` that expired long ago (made with `openssl ca -selfsign`).
pub fn make_expired_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
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
    req_with_new_key(
        "-new",
        &key,
        &csr,
        &format!("/CN={}", names[0]),
        &["-addext", &san(names)],
    );
    let s = |p: &Path| p.display().to_string();
    openssl(&[
        "ca",
        "-batch",
        "-selfsign",
        "-notext",
        "-config",
        &s(&ca.join("ca.cnf")),
        "-keyfile",
        &s(&key),
        "-in",
        &s(&csr),
        "-out",
        &s(&cert),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200201000000Z",
    ]);
    (cert, key)
}

/// A CA (`<stem>-ca.pem`) and a leaf for `names` signed by it (valid for serverAuth, subject
/// `/CN=mx.remote.test`), made with the openssl CLI in `dir`. Returns (ca, leaf cert, leaf key).
pub fn make_ca_and_leaf(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(format!("{stem}-{n}"));
    let s = |p: &Path| p.display().to_string();
    let (ca, ca_key) = (p("ca.pem"), p("ca.key"));
    req_with_new_key("-x509", &ca_key, &ca, "/CN=hato test CA", &["-days", "2"]);
    let (leaf, key, csr, ext) = (p("leaf.pem"), p("leaf.key"), p("leaf.csr"), p("ext.cnf"));
    std::fs::write(
        &ext,
        format!(
            "{}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            san(names)
        ),
    )
    .unwrap();
    req_with_new_key("-new", &key, &csr, "/CN=mx.remote.test", &[]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-out",
        &s(&leaf),
        "-days",
        "2",
        "-extfile",
        &s(&ext),
    ]);
    (ca, leaf, key)
}

/// `[tls]` with `cert` and `key`.
pub fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// `ca_file = "<path>"`.
pub fn ca_file(path: &Path) -> String {
    format!("ca_file = \"{}\"\n", path.display())
}

/// The base64 body of the first PEM certificate in `text`, whitespace removed (compares certificates).
pub fn first_pem_cert(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    Some(text[start..end].split_whitespace().collect())
}

/// [`first_pem_cert`] of a PEM file.
pub fn pem(path: &Path) -> String {
    first_pem_cert(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `openssl s_client` to `port` (implicit TLS, or `-starttls smtp`), sending `input` after the
/// handshake (`-crlf -ign_eof`: waits until the server closes). SNI is `localhost` unless `extra`
/// says otherwise (`-servername X`, `-noservername`). Returns stdout+stderr and success.
pub fn s_client(port: u16, starttls: bool, extra: &[&str], input: &str) -> CmdOutput {
    s_client_for(port, starttls.then_some("smtp"), extra, input)
}

/// [`s_client`] with `-starttls PROTOCOL` (`smtp`, `pop3`, ...) when given.
pub fn s_client_for(port: u16, starttls: Option<&str>, extra: &[&str], input: &str) -> CmdOutput {
    require_tool("openssl", "openssl");
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-crlf", "-ign_eof", "-showcerts"]);
    if !extra.iter().any(|a| a.contains("servername")) {
        cmd.args(["-servername", "localhost"]);
    }
    if let Some(protocol) = starttls {
        cmd.args(["-starttls", protocol]);
    }
    cmd.args(extra);
    run(cmd, Some(input))
}

/// The certificate `openssl s_client` got on `port` (implicit TLS, SNI `localhost`).
pub fn served_cert(port: u16) -> String {
    let out = s_client(port, false, &[], "quit\n");
    first_pem_cert(&out.all())
        .unwrap_or_else(|| panic!("no certificate from s_client:\n{}", out.all()))
}
