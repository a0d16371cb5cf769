//! The DNS records an administrator publishes for hato (`hato dns`), as zone-file lines, each with
//! a one-line comment saying what it is for and whether it is required, recommended or optional:
//!
//! - the server's name: A/AAAA (placeholders unless the addresses are given), SPF for the HELO name
//!   (RFC 7208 2.3), and DANE-EE `TLSA 3 1 1` (RFC 7672, RFC 7218) from the certificate's public
//!   key when a certificate is given;
//! - per local domain: MX (RFC 5321 5.1), SPF `v=spf1 mx -all` (RFC 7208), DMARC (RFC 7489, a
//!   recommendation), MTA-STS `_mta-sts` TXT with the id of the policy the `https` listener
//!   serves and `mta-sts.<domain>` CNAME (RFC 8461 3.1, 3.3), TLS-RPT (RFC 8460 3, optional), and
//!   the client autoconfiguration SRV records of RFC 6186 and RFC 8314 5.1, with target `.`
//!   ("not available", RFC 6186 3.4) for services without a listener.
//!
//! Nothing here does I/O: the caller reads the configuration and the certificate.

use std::fmt;
use std::net::IpAddr;

use crate::mta_sts_policy::{StsMode, StsPolicy};

/// How a listener is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    None,
    Starttls,
    Implicit,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp,
    Submission,
    Pop3,
    Imap,
    Https,
}

/// A configured listener, as far as DNS is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub service: Service,
    pub tls: Tls,
    pub port: u16,
}

/// What the records are generated from.
#[derive(Debug, Clone, Copy)]
pub struct ZoneInput<'a> {
    /// The server's name (MX target, EHLO name).
    pub hostname: &'a str,
    /// The local domains to print records for.
    pub domains: &'a [String],
    /// The listeners.
    pub endpoints: &'a [Endpoint],
    /// The MTA-STS policy (printed only when an `https` endpoint serves it).
    pub mta_sts: &'a StsPolicy,
    /// The server's public addresses; empty: placeholders.
    pub addresses: &'a [IpAddr],
    /// The DER leaf certificate for `hostname`, for the TLSA record; None: no TLSA record.
    pub certificate: Option<&'a [u8]>,
}

/// One resource record and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute, with the trailing dot.
    pub name: String,
    pub rtype: &'static str,
    /// The RDATA in zone-file syntax.
    pub data: String,
    /// One line, no leading `;`.
    pub comment: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "; {}\n{} IN {} {}",
            self.comment, self.name, self.rtype, self.data
        )
    }
}

/// The records to publish and what could not be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub hostname: String,
    /// Problems of the configuration the admin should know about (one line each).
    pub warnings: Vec<String>,
    pub records: Vec<Record>,
}

impl fmt::Display for Zone {
    /// Zone-file text: a header, the warnings as comments, then each record after its comment,
    /// separated by blank lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "; DNS records for hato on {} (zone-file syntax; the TTL is the zone's default)",
            self.hostname
        )?;
        for w in &self.warnings {
            writeln!(f, "; warning: {w}")?;
        }
        for r in &self.records {
            write!(f, "\n{r}\n")?;
        }
        Ok(())
    }
}

/// Lower case, no trailing dot.
fn bare(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A TXT character-string: quoted, `"` and `\` escaped (RFC 1035 5.1).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The SHA-256 of the certificate's SubjectPublicKeyInfo (RFC 6698 2.1: selector 1, matching
/// type 1), in lower-case hexadecimal: the data of a `TLSA 3 1 1` record, which stays valid
/// across renewals that keep the key.
pub fn tlsa_digest(certificate_der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate_der)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    Ok(crate::mta_sts_policy::hex(digest.as_ref()))
}

/// Whether the MTA-STS `mx` pattern matches `host` (RFC 8461 4.1).
fn mx_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (bare(pattern), bare(host));
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// The records for `input`. Fails only when the certificate cannot be parsed.
pub fn zone(input: &ZoneInput<'_>) -> Result<Zone, String> {
    let host = bare(input.hostname);
    let host_fqdn = format!("{host}.");
    let mut warnings = Vec::new();
    let mut records = Vec::new();
    let mut add = |name: String, rtype: &'static str, data: String, comment: String| {
        records.push(Record {
            name,
            rtype,
            data,
            comment,
        })
    };
    let first = |service: Service, tls: Tls| {
        input
            .endpoints
            .iter()
            .find(|e| e.service == service && e.tls == tls)
            .map(|e| e.port)
    };

    if !host.contains('.') {
        warnings.push(format!(
            "hostname {host:?} is not a public name: set `hostname` to the server's name in DNS (these records are examples)"
        ));
    }
    let smtp: Vec<&Endpoint> = input
        .endpoints
        .iter()
        .filter(|e| e.service == Service::Smtp && e.port == 25)
        .collect();
    if smtp.is_empty() {
        warnings
            .push("no smtp listener on port 25: other mail servers deliver to port 25 only".into());
    } else if smtp.iter().all(|e| e.tls != Tls::Starttls) {
        warnings.push(
            "the smtp listener on port 25 does not offer STARTTLS: MTA-STS (enforce) and DANE need it".into(),
        );
    }
    let https = input
        .endpoints
        .iter()
        .find(|e| e.service == Service::Https && e.tls == Tls::Implicit);
    match https {
        None => warnings.push(
            "no https listener: hato serves no MTA-STS policy, so no MTA-STS records are printed (add a [[listener]] with protocol = \"https\", port 443)".into(),
        ),
        Some(e) if e.port != 443 => warnings.push(format!(
            "the https listener is on port {}: senders fetch MTA-STS policies from port 443 only (forward 443 to it)",
            e.port
        )),
        Some(_) => {}
    }
    if https.is_some()
        && input.mta_sts.mode != StsMode::None
        && !input.mta_sts.mx.iter().any(|p| mx_matches(p, &host))
    {
        warnings.push(format!(
            "the MTA-STS policy's mx ({}) does not match {host}, the MX host below: senders would refuse it in enforce mode",
            input.mta_sts.mx.join(", ")
        ));
    }
    if input.certificate.is_none() {
        warnings.push("no [tls] certificate configured: no TLSA (DANE) record".into());
    }

    // The server's name.
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = input.addresses.iter().partition(|a| a.is_ipv4());
    if input.addresses.is_empty() {
        add(
            host_fqdn.clone(),
            "A",
            "<IPv4 address>".into(),
            format!("required: replace with the public IPv4 address of {host} (or pass --ip)"),
        );
        add(
            host_fqdn.clone(),
            "AAAA",
            "<IPv6 address>".into(),
            format!(
                "required if the server has IPv6: replace with the public IPv6 address of {host}, or leave out"
            ),
        );
    }
    for a in &v4 {
        add(
            host_fqdn.clone(),
            "A",
            a.to_string(),
            format!("required: the IPv4 address of {host}"),
        );
    }
    for a in &v6 {
        add(
            host_fqdn.clone(),
            "AAAA",
            a.to_string(),
            format!("required: the IPv6 address of {host}"),
        );
    }
    let domains: Vec<String> = input.domains.iter().map(|d| bare(d)).collect();
    // One name must not have two SPF records (RFC 7208 3.2): when the hostname is also a mail
    // domain, its domain SPF record (`mx`) covers the HELO name as well.
    if !domains.contains(&host) {
        add(
            host_fqdn.clone(),
            "TXT",
            quoted("v=spf1 a -all"),
            format!(
                "recommended: SPF for the HELO name {host}: only this server uses it (RFC 7208 2.3)"
            ),
        );
    }
    if let Some(der) = input.certificate {
        add(
            format!("_25._tcp.{host_fqdn}"),
            "TLSA",
            format!("3 1 1 {}", tlsa_digest(der)?),
            "optional, only in a DNSSEC-signed zone: DANE for SMTP (RFC 7672), the certificate's public key; publish a new key's record before the certificate changes to it".into(),
        );
    }

    // Each mail domain.
    let srv = [
        (
            "_submissions",
            Service::Submission,
            Tls::Implicit,
            0,
            "submission with implicit TLS",
        ),
        (
            "_submission",
            Service::Submission,
            Tls::Starttls,
            10,
            "submission with STARTTLS",
        ),
        (
            "_imaps",
            Service::Imap,
            Tls::Implicit,
            0,
            "IMAP with implicit TLS",
        ),
        (
            "_imap",
            Service::Imap,
            Tls::Starttls,
            10,
            "IMAP with STARTTLS",
        ),
        (
            "_pop3s",
            Service::Pop3,
            Tls::Implicit,
            20,
            "POP3 with implicit TLS",
        ),
        ("_pop3", Service::Pop3, Tls::Starttls, 30, "POP3 with STLS"),
    ];
    for domain in &domains {
        let fqdn = format!("{domain}.");
        add(
            fqdn.clone(),
            "MX",
            format!("10 {host_fqdn}"),
            format!("required: mail for {domain} goes to {host} (RFC 5321 5.1)"),
        );
        add(
            fqdn.clone(),
            "TXT",
            quoted("v=spf1 mx -all"),
            format!("recommended: SPF: only the MX hosts send mail from {domain} (RFC 7208)"),
        );
        add(
            format!("_dmarc.{fqdn}"),
            "TXT",
            quoted(&format!(
                "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"
            )),
            format!(
                "recommendation: DMARC (RFC 7489): quarantine mail that fails SPF and DKIM alignment, reports to postmaster@{domain} (p=none to observe first)"
            ),
        );
        if https.is_some() {
            add(
                format!("_mta-sts.{fqdn}"),
                "TXT",
                quoted(&input.mta_sts.txt_record()),
                format!(
                    "recommended: MTA-STS (RFC 8461 3.1), the id of the policy hato serves (mode {}); it changes with [mta_sts]: update this record then",
                    input.mta_sts.mode.as_str()
                ),
            );
            add(
                format!("mta-sts.{fqdn}"),
                "CNAME",
                host_fqdn.clone(),
                format!(
                    "recommended: the MTA-STS policy host, https://mta-sts.{domain}/.well-known/mta-sts.txt is served by hato (the certificate must cover mta-sts.{domain})"
                ),
            );
        }
        add(
            format!("_smtp._tls.{fqdn}"),
            "TXT",
            quoted(&format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}")),
            format!(
                "optional: TLS reports (RFC 8460) from other servers to tlsrpt@{domain} (create that account or alias)"
            ),
        );
        for (label, service, tls, priority, what) in srv {
            let (data, comment) = match first(service, tls) {
                Some(port) => (
                    format!("{priority} 1 {port} {host_fqdn}"),
                    format!("recommended: mail clients find {what} here (RFC 6186, RFC 8314)"),
                ),
                None => (
                    "0 0 0 .".into(),
                    format!("recommended: tells mail clients there is no {what} (RFC 6186 3.4)"),
                ),
            };
            add(format!("{label}._tcp.{fqdn}"), "SRV", data, comment);
        }
    }
    Ok(Zone {
        hostname: host,
        warnings,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(list: &[(Service, Tls, u16)]) -> Vec<Endpoint> {
        list.iter()
            .map(|&(service, tls, port)| Endpoint { service, tls, port })
            .collect()
    }

    fn policy() -> StsPolicy {
        StsPolicy {
            mode: StsMode::Testing,
            mx: vec!["mail.example.com".into()],
            max_age: 604_800,
        }
    }

    #[test]
    fn sample_configuration() {
        let eps = endpoints(&[
            (Service::Smtp, Tls::Starttls, 25),
            (Service::Submission, Tls::Starttls, 587),
            (Service::Submission, Tls::Implicit, 465),
            (Service::Imap, Tls::Implicit, 993),
            (Service::Https, Tls::Implicit, 443),
        ]);
        let policy = policy();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mail.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let spki_sha256 = crate::mta_sts_policy::hex(
            ring::digest::digest(
                &ring::digest::SHA256,
                &rcgen::PublicKeyData::subject_public_key_info(&key),
            )
            .as_ref(),
        );
        let addresses: Vec<IpAddr> = vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ];
        let domains = vec!["Example.com".to_string()];
        let zone = zone(&ZoneInput {
            hostname: "mail.example.com",
            domains: &domains,
            endpoints: &eps,
            mta_sts: &policy,
            addresses: &addresses,
            certificate: Some(cert.der()),
        })
        .unwrap();
        assert_eq!(zone.warnings, Vec::<String>::new());
        let lines: Vec<String> = zone
            .records
            .iter()
            .map(|r| format!("{} IN {} {}", r.name, r.rtype, r.data))
            .collect();
        let id = policy.id();
        let expected = [
            "mail.example.com. IN A 192.0.2.10".to_string(),
            "mail.example.com. IN AAAA 2001:db8::10".into(),
            "mail.example.com. IN TXT \"v=spf1 a -all\"".into(),
            format!("_25._tcp.mail.example.com. IN TLSA 3 1 1 {spki_sha256}"),
            "example.com. IN MX 10 mail.example.com.".into(),
            "example.com. IN TXT \"v=spf1 mx -all\"".into(),
            "_dmarc.example.com. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com\"".into(),
            format!("_mta-sts.example.com. IN TXT \"v=STSv1; id={id}\""),
            "mta-sts.example.com. IN CNAME mail.example.com.".into(),
            "_smtp._tls.example.com. IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\"".into(),
            "_submissions._tcp.example.com. IN SRV 0 1 465 mail.example.com.".into(),
            "_submission._tcp.example.com. IN SRV 10 1 587 mail.example.com.".into(),
            "_imaps._tcp.example.com. IN SRV 0 1 993 mail.example.com.".into(),
            "_imap._tcp.example.com. IN SRV 0 0 0 .".into(),
            "_pop3s._tcp.example.com. IN SRV 0 0 0 .".into(),
            "_pop3._tcp.example.com. IN SRV 0 0 0 .".into(),
        ];
        assert_eq!(lines, expected);
        // Every record comes with a one-line comment.
        for r in &zone.records {
            assert!(!r.comment.is_empty() && !r.comment.contains('\n'), "{r}");
        }
        let text = zone.to_string();
        assert!(text.starts_with("; DNS records for hato on mail.example.com"));
        assert!(text.contains(
            "\n; required: mail for example.com goes to mail.example.com (RFC 5321 5.1)\nexample.com. IN MX 10 mail.example.com.\n"
        ));
        assert!(text.contains("\n; recommendation: DMARC"));
        assert!(text.contains("\n; optional: TLS reports (RFC 8460)"));
        assert!(text.contains(
            "\n; recommended: mail clients find IMAP with implicit TLS here (RFC 6186, RFC 8314)\n_imaps._tcp.example.com. IN SRV 0 1 993 mail.example.com.\n"
        ));
        assert!(text.contains(
            "; recommended: tells mail clients there is no POP3 with STLS (RFC 6186 3.4)\n_pop3._tcp.example.com. IN SRV 0 0 0 ."
        ));
    }

    #[test]
    fn placeholders_warnings_and_hostname_as_domain() {
        let eps = endpoints(&[
            (Service::Smtp, Tls::None, 2525),
            (Service::Pop3, Tls::Starttls, 110),
            (Service::Pop3, Tls::Implicit, 995),
            (Service::Imap, Tls::Starttls, 143),
        ]);
        let policy = StsPolicy {
            mode: StsMode::Enforce,
            mx: vec!["*.other.example".into()],
            max_age: 86_400,
        };
        let domains = vec!["mail.example.org".to_string(), "example.net".to_string()];
        let z = zone(&ZoneInput {
            hostname: "mail.example.org.",
            domains: &domains,
            endpoints: &eps,
            mta_sts: &policy,
            addresses: &[],
            certificate: None,
        })
        .unwrap();
        assert_eq!(
            z.warnings,
            [
                "no smtp listener on port 25: other mail servers deliver to port 25 only",
                "no https listener: hato serves no MTA-STS policy, so no MTA-STS records are printed (add a [[listener]] with protocol = \"https\", port 443)",
                "no [tls] certificate configured: no TLSA (DANE) record",
            ]
        );
        let find = |name: &str, rtype: &str| -> Vec<String> {
            z.records
                .iter()
                .filter(|r| r.name == name && r.rtype == rtype)
                .map(|r| r.data.clone())
                .collect()
        };
        assert_eq!(find("mail.example.org.", "A"), ["<IPv4 address>"]);
        assert_eq!(find("mail.example.org.", "AAAA"), ["<IPv6 address>"]);
        // The hostname is a mail domain: exactly one SPF record there (RFC 7208 3.2).
        assert_eq!(find("mail.example.org.", "TXT"), ["\"v=spf1 mx -all\""]);
        assert_eq!(find("example.net.", "MX"), ["10 mail.example.org."]);
        assert!(z.records.iter().all(|r| r.rtype != "TLSA"));
        assert!(z.records.iter().all(|r| !r.name.contains("mta-sts")));
        assert_eq!(
            find("_pop3._tcp.example.net.", "SRV"),
            ["30 1 110 mail.example.org."]
        );
        assert_eq!(
            find("_pop3s._tcp.example.net.", "SRV"),
            ["20 1 995 mail.example.org."]
        );
        assert_eq!(
            find("_imap._tcp.example.net.", "SRV"),
            ["10 1 143 mail.example.org."]
        );
        assert_eq!(find("_imaps._tcp.example.net.", "SRV"), ["0 0 0 ."]);
        assert_eq!(find("_submissions._tcp.example.net.", "SRV"), ["0 0 0 ."]);

        // An https listener off port 443, a policy that does not match the MX host, plaintext
        // port 25, a development host name.
        let eps = endpoints(&[
            (Service::Smtp, Tls::None, 25),
            (Service::Https, Tls::Implicit, 5443),
        ]);
        let z = zone(&ZoneInput {
            hostname: "localhost",
            domains: &["localhost".to_string()],
            endpoints: &eps,
            mta_sts: &policy,
            addresses: &["127.0.0.1".parse().unwrap()],
            certificate: None,
        })
        .unwrap();
        assert_eq!(
            z.warnings,
            [
                "hostname \"localhost\" is not a public name: set `hostname` to the server's name in DNS (these records are examples)",
                "the smtp listener on port 25 does not offer STARTTLS: MTA-STS (enforce) and DANE need it",
                "the https listener is on port 5443: senders fetch MTA-STS policies from port 443 only (forward 443 to it)",
                "the MTA-STS policy's mx (*.other.example) does not match localhost, the MX host below: senders would refuse it in enforce mode",
                "no [tls] certificate configured: no TLSA (DANE) record",
            ]
        );
        assert!(
            z.to_string()
                .contains("\n; warning: no [tls] certificate configured")
        );
        let a: Vec<&Record> = z.records.iter().filter(|r| r.rtype == "A").collect();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].data, "127.0.0.1");
        assert!(z.records.iter().all(|r| r.rtype != "AAAA"));
        assert!(
            z.records
                .iter()
                .any(|r| r.name == "_mta-sts.localhost." && r.data.contains(&policy.id()))
        );
    }

    #[test]
    fn wildcard_mx_pattern_matches_the_hostname() {
        assert!(mx_matches("*.example.com", "mail.example.com."));
        assert!(mx_matches("Mail.Example.com.", "mail.example.com"));
        assert!(!mx_matches("*.example.com", "a.mail.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
    }

    #[test]
    fn txt_strings_are_escaped() {
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn tlsa_digest_matches_openssl() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mail.example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ours = tlsa_digest(cert.der()).unwrap();
        assert_eq!(ours.len(), 64);
        // rcgen's own SPKI encoding, hashed with ring.
        let ring_digest = crate::mta_sts_policy::hex(
            ring::digest::digest(
                &ring::digest::SHA256,
                &rcgen::PublicKeyData::subject_public_key_info(&key),
            )
            .as_ref(),
        );
        assert_eq!(ours, ring_digest);
        // And what openssl computes from the PEM certificate (the usual recipe for TLSA 3 1 1).
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("cert.pem");
        std::fs::write(&pem, cert.pem()).unwrap();
        let script = format!(
            "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
            pem.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "openssl failed (apt-get install openssl): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let openssl = String::from_utf8_lossy(&out.stdout);
        assert_eq!(openssl.split_whitespace().next(), Some(ours.as_str()));
        assert!(tlsa_digest(b"not a certificate").is_err());
    }
}
