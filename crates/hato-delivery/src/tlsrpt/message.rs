//! The report as mail (RFC 8460 5.3): [`report_message`], [`is_report_message`], and the
//! helpers that keep header fields single-line and short.

use base64::Engine as _;
use time::Date;

use super::model::truncate_chars;
use super::normalize_domain;
use super::report::{day_text, gzip, report_filename};

/// The report message (RFC 8460 5.3), CRLF line endings, to submit with the null reverse-path
/// `<>` to the `mailto:` addresses in `to`. `from` is an address of the submitter (e.g.
/// `postmaster@<host>`), `submitter` the reporting domain, `json` from [`build_report`] for
/// `domain` and `day`, `now` Unix seconds (`Date`).
///
/// [`build_report`]: super::build_report
#[allow(clippy::too_many_arguments)]
pub fn report_message(
    from: &str,
    to: &[String],
    domain: &str,
    submitter: &str,
    report_id: &str,
    json: &str,
    day: Date,
    now: i64,
) -> Vec<u8> {
    let domain = clean_header(&normalize_domain(domain));
    let submitter = clean_header(&normalize_domain(submitter));
    let report_id = clean_header(report_id);
    let boundary = format!("hato-tlsrpt-{:032x}", rand::random::<u128>());
    let message_id = format!("<{:032x}.tlsrpt@{submitter}>", rand::random::<u128>());
    let filename = report_filename(&submitter, &domain, day, &unique_id(&report_id));
    let to: Vec<String> = to.iter().map(|a| clean_header(a)).collect();

    let mut m = String::new();
    let mut header = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(value);
        m.push_str("\r\n");
    };
    header("From", &clean_header(from));
    header("To", &to.join(",\r\n "));
    let subject_one_line =
        format!("Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>");
    if subject_one_line.len() + "Subject: ".len() <= 78 {
        header("Subject", &subject_one_line);
    } else {
        // Folded as in the RFC's example (5.3); unfolding gives the one-line form.
        header(
            "Subject",
            &format!(
                "Report Domain: {domain}\r\n Submitter: {submitter}\r\n Report-ID: <{report_id}>"
            ),
        );
    }
    header("Date", &hato_wire::date::rfc5322(now));
    header("Message-ID", &message_id);
    header("TLS-Report-Domain", &domain);
    header("TLS-Report-Submitter", &submitter);
    header("Auto-Submitted", "auto-generated");
    header("TLS-Required", "No");
    header("MIME-Version", "1.0");
    header(
        "Content-Type",
        &format!("multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"{boundary}\""),
    );
    m.push_str("\r\nThis is a multipart message in MIME format.\r\n\r\n");

    m.push_str(&format!(
        "--{boundary}\r\n\
         Content-Type: text/plain; charset=\"us-ascii\"\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n\
         This is an aggregate TLS report from {submitter}\r\n\
         for the policy domain {domain}, covering {day} 00:00 to 24:00 UTC\r\n\
         (SMTP TLS Reporting, RFC 8460). The report is the attached\r\n\
         gzipped JSON file.\r\n\
         \r\n\
         You receive it because the \"rua\" field of the TLSRPT record of\r\n\
         {domain} (_smtp._tls.{domain}) names this address.\r\n\
         \r\n",
        day = day_text(day),
    ));
    m.push_str(&format!(
        "--{boundary}\r\n\
         Content-Type: application/tlsrpt+gzip;\r\n\tname=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment;\r\n\tfilename=\"{filename}\"\r\n\
         \r\n"
    ));
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzip(json));
    for chunk in encoded.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        m.push_str("\r\n");
    }
    m.push_str(&format!("\r\n--{boundary}--\r\n"));
    m.into_bytes()
}

/// Whether a message is a TLS report (it has `TLS-Report-Domain`): the session that delivers
/// it should not be counted in the next report (RFC 8460 3), and TLS failures must not stop it.
pub fn is_report_message(message: &[u8]) -> bool {
    hato_smtp::message::header_value(message, "TLS-Report-Domain").is_some()
}

/// Letters and digits derived from the report id (for the filename's unique-id).
fn unique_id(report_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, report_id.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A header-field-safe single line: control characters become spaces, cut well below 998.
fn clean_header(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(&mut out, 320);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use mail_parser::{MessageParser, MimeHeaders};
    use time::macros::date;

    use super::*;
    use crate::tlsrpt::test_support::sts_policy;
    use crate::tlsrpt::{Aggregate, SessionResult, build_report, day_bounds, report_id};

    #[test]
    fn report_message_format() {
        let day = date!(2024 - 05 - 01);
        let mut agg = Aggregate::default();
        agg.add(sts_policy(), SessionResult::Success);
        let id = report_id(day, "example.net", "mail.sender.example");
        let json = build_report(
            day,
            "example.net",
            &agg,
            "Sender",
            "postmaster@sender.example",
            &id,
        );
        let to = vec![
            "tlsrpt@example.net".to_string(),
            "x+y@example.org".to_string(),
        ];
        let now = 1_714_608_000; // 2024-05-02T00:00:00Z
        let message = report_message(
            "postmaster@mail.sender.example",
            &to,
            "Example.NET",
            "mail.sender.example",
            &id,
            &json,
            day,
            now,
        );

        // CRLF only, short lines.
        let text = std::str::from_utf8(&message).unwrap();
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
        assert!(text.split("\r\n").all(|l| l.len() <= 998));
        assert!(is_report_message(&message));
        assert!(!is_report_message(
            b"Subject: hello\r\n\r\nTLS-Report-Domain: x\r\n"
        ));

        let parsed = MessageParser::default().parse(&message).unwrap();
        let unfolded = |name: &str| {
            hato_smtp::message::header_value(&message, name).unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(
            parsed.subject().unwrap(),
            "Report Domain: example.net Submitter: mail.sender.example Report-ID: <2024-05-01.example.net@mail.sender.example>"
        );
        assert_eq!(unfolded("TLS-Report-Domain"), "example.net");
        assert_eq!(unfolded("TLS-Report-Submitter"), "mail.sender.example");
        assert_eq!(unfolded("Auto-Submitted"), "auto-generated");
        assert_eq!(unfolded("TLS-Required"), "No");
        assert_eq!(unfolded("MIME-Version"), "1.0");
        assert_eq!(unfolded("From"), "postmaster@mail.sender.example");
        assert_eq!(unfolded("Date"), "Thu, 02 May 2024 00:00:00 +0000");
        assert!(unfolded("Message-ID").ends_with(".tlsrpt@mail.sender.example>"));
        let recipients: Vec<&str> = parsed
            .to()
            .unwrap()
            .iter()
            .filter_map(|a| a.address())
            .collect();
        assert_eq!(recipients, ["tlsrpt@example.net", "x+y@example.org"]);

        let ct = parsed.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));
        assert!(ct.attribute("boundary").is_some());

        assert_eq!(parsed.parts.len(), 3); // the multipart and its two parts
        let text_part = parsed.body_text(0).unwrap();
        assert!(text_part.contains("aggregate TLS report from mail.sender.example"));
        let attachment = parsed.attachment(0).unwrap();
        let act = attachment.content_type().unwrap();
        assert_eq!(act.ctype(), "application");
        assert_eq!(act.subtype(), Some("tlsrpt+gzip"));
        let (begin, end) = day_bounds(day);
        assert_eq!((begin, end), (1_714_521_600, 1_714_607_999));
        let filename = attachment.attachment_name().unwrap();
        assert_eq!(
            filename,
            format!(
                "mail.sender.example!example.net!1714521600!1714607999!{}.json.gz",
                unique_id(&id)
            )
        );
        assert!(unique_id(&id).chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(act.attribute("name"), Some(filename));
        assert_eq!(attachment.content_transfer_encoding(), Some("base64"));

        // The attachment is the gzipped report.
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(attachment.contents())
            .read_to_string(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, json);
    }

    #[test]
    fn long_subjects_are_folded() {
        let day = date!(2024 - 05 - 01);
        let domain = format!("{}.example", "d".repeat(60));
        let submitter = format!("{}.sender.example", "s".repeat(60));
        let id = report_id(day, &domain, &submitter);
        let message = report_message(
            "postmaster@sender.example",
            &["r@example.net".into()],
            &domain,
            &submitter,
            &id,
            "{}",
            day,
            0,
        );
        let text = std::str::from_utf8(&message).unwrap();
        assert!(text.contains(&format!("Subject: Report Domain: {domain}\r\n Submitter:")));
        let parsed = MessageParser::default().parse(&message).unwrap();
        assert_eq!(
            parsed.subject().unwrap(),
            format!("Report Domain: {domain} Submitter: {submitter} Report-ID: <{id}>")
        );
        // Header injection through the inputs is not possible.
        let message = report_message(
            "a@b\r\nBcc: evil@example.com",
            &["r@example.net".into()],
            "example.net\r\nX-Evil: 1",
            "sender.example",
            "id@x",
            "{}",
            day,
            0,
        );
        let header = std::str::from_utf8(&message)
            .unwrap()
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_owned();
        assert!(
            !header
                .lines()
                .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Evil:"))
        );
    }
}
