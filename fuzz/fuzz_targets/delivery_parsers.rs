//! The small parsers of outbound delivery, on arbitrary input:
//! - `hato_delivery::mta_sts::{parse_txt, parse_policy}` (DNS TXT record, HTTPS policy);
//! - `hato_delivery::tlsrpt::parse_txt` (TLS-RPT TXT record);
//! - `hato_smtp::dsn` decoders: `Orcpt::parse` (xtext, RFC 6533 utf-8-addr), `parse_envid`,
//!   `Notify::parse`, `DsnRet::parse`;
//! - `hato_delivery::route::received_count` (loop detection);
//! - `hato_smtp::client::downgrade_8bit` (8BITMIME downgrade to quoted-printable);
//! - `hato_smtp::Address::parse` and `hato_smtp::message::header_value`;
//! - `hato_delivery::dsn::build` with the input as the returned message and its pieces as
//!   the remote server's reply text and host name.
//!
//! Input: any bytes. Text parsers get the input as (lossy) UTF-8; record sets are the
//! input split at NUL.
//!
//! Checked: no panic, and what each parser promises: a parsed STS id is 1-32
//! alphanumerics; a parsed policy's `max_age` is capped and its MX patterns are lower
//! case and match a host of their own shape; a TLS-RPT record has 1 to `MAX_RUA` URIs;
//! the `Received:` count is at most the number of lines; downgraded output is 7-bit,
//! CRLF-only, and downgrades to itself; parsed addresses and ORCPTs round-trip; the DSN
//! is CRLF-only, a `multipart/report` of three parts, and the remote reply stays on its
//! one `Diagnostic-Code:` line.
#![no_main]

use hato_delivery::dsn::{self, DsnInput, RecipientReport, ReturnContent};
use hato_delivery::{mta_sts, route, tlsrpt};
use hato_fuzz::lossy;
use hato_imap::ParsedMessage;
use hato_imap::response::BodyStructure;
use hato_smtp::{Address, DsnRet, Notify, Orcpt, downgrade_8bit};
use libfuzzer_sys::fuzz_target;

fn crlf_only(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

fn text_parsers(s: &str) {
    if let Ok(o) = Orcpt::parse(s) {
        assert!(!o.address.is_empty());
        let shown = o.to_string();
        let (ty, addr) = shown.split_once(';').unwrap();
        assert_eq!(ty, o.addr_type.as_str());
        assert_eq!(addr, o.address);
    }
    if let Ok(e) = hato_smtp::dsn::parse_envid(s) {
        assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "ENVID {e:?}");
    }
    if let Ok(n) = Notify::parse(s) {
        assert_eq!(Notify::parse(&n.to_string()), Ok(n), "NOTIFY round trip");
    }
    let _ = DsnRet::parse(s);
    if let Ok(a) = Address::parse(s) {
        assert_eq!(
            Address::parse(&a.to_string()).as_ref(),
            Ok(&a),
            "address round trip"
        );
        assert!(a.to_string().len() <= s.len());
    }
}

fn policies(data: &[u8]) {
    let Ok(p) = mta_sts::parse_policy(data) else {
        return;
    };
    assert!(p.max_age <= mta_sts::MAX_MAX_AGE);
    assert!(p.mode == mta_sts::Mode::None || !p.mx.is_empty());
    for pattern in &p.mx {
        assert_eq!(*pattern, pattern.to_ascii_lowercase());
        let host = match pattern.strip_prefix("*.") {
            Some(suffix) => format!("mx.{suffix}"),
            None => pattern.clone(),
        };
        assert!(p.mx_matches(&host), "{pattern:?} does not match {host:?}");
        assert!(p.mx_matches(&host.to_ascii_uppercase()));
        let _ = p.check(&host, false);
    }
}

fn records(records: &[String]) {
    if let Ok(Some(r)) = mta_sts::parse_txt(records) {
        assert!((1..=32).contains(&r.id.len()));
        assert!(r.id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
    if let Ok(Some(r)) = tlsrpt::parse_txt(records) {
        assert!(!r.rua.is_empty() && r.rua.len() <= tlsrpt::MAX_RUA);
        for a in r.mailto() {
            assert!(
                !a.chars().any(|c| c.is_control() || c.is_whitespace()),
                "{a:?}"
            );
            assert!(a.contains('@'));
        }
    }
}

fn downgrade(data: &[u8]) {
    let Ok(out) = downgrade_8bit(data) else {
        return;
    };
    assert!(out.is_ascii(), "8-bit octets after downgrade");
    assert!(crlf_only(&out), "bare CR/LF after downgrade");
    assert!(
        downgrade_8bit(&out).as_ref() == Ok(&out),
        "downgrade is not idempotent: {:?}",
        lossy(&out)
    );
}

fn report(data: &[u8], fields: &[String]) {
    let field = |i: usize| fields.get(i).cloned().unwrap_or_default();
    let diagnostic = field(1);
    let input = DsnInput {
        reporting_mta: "mx.example",
        envelope_sender: "sender@example.org",
        envelope_id: fields.get(4).map(String::as_str),
        arrival_date: 1_700_000_000,
        recipients: vec![RecipientReport {
            final_recipient: format!("a{}@example.net", field(3)),
            original_recipient: fields.get(5).cloned(),
            action: dsn::Action::Failed,
            status: "5.1.1".into(),
            remote_mta: Some(field(2)),
            diagnostic: Some(diagnostic),
            last_attempt: Some(1_700_000_100),
            will_retry_until: None,
            tls: None,
        }],
        original: data,
        ret: if data.first().is_some_and(|b| b & 1 == 1) {
            ReturnContent::Full
        } else {
            ReturnContent::Headers
        },
        max_full_size: dsn::DEFAULT_MAX_FULL_SIZE,
        now: 1_700_000_200,
    };
    let d = dsn::build(&input).expect("a DSN for a failed recipient");
    assert!(crlf_only(&d.message), "bare CR/LF in the DSN");
    let text = String::from_utf8_lossy(&d.message);
    // The report itself, before the returned message (which may say anything).
    let report = text
        .split("Content-Description: Undelivered Message")
        .next()
        .unwrap();
    let diag_lines = report
        .split("\r\n")
        .filter(|l| l.starts_with("Diagnostic-Code:"))
        .count();
    assert_eq!(diag_lines, 1, "Diagnostic-Code: lines");
    match ParsedMessage::parse(&d.message).body_structure(false) {
        BodyStructure::Multi { parts, subtype, .. } => {
            assert_eq!(subtype, b"REPORT");
            assert_eq!(parts.len(), 3, "DSN parts");
        }
        other => panic!("DSN is not multipart: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let fields: Vec<String> = s.split('\0').map(str::to_owned).collect();

    text_parsers(&s);
    for f in &fields {
        text_parsers(f);
    }
    records(&fields);
    policies(data);

    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(route::received_count(data) <= lines);
    if let Some(v) = hato_smtp::message::header_value(data, "Received") {
        assert!(
            // A bare CR is not a line end for this parser (CRLF and LF are): it may stay.
            !v.contains('\n'),
            "unfolded value keeps a line break"
        );
    }
    let _ = tlsrpt::is_report_message(data);

    downgrade(data);
    report(data, &fields);
});
