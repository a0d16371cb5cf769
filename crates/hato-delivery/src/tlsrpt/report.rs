//! The report (RFC 8460 4): its JSON ([`build_report`]), id, attachment name and gzip, and the
//! UTC days reports cover.

use std::io::Write;

use time::{Date, OffsetDateTime};

use super::json::{
    DateRangeJson, PolicyResultJson, ReportJson, SummaryJson, details_json, policy_json,
};
use super::model::Aggregate;
use super::normalize_domain;

/// The report of one domain and day as JSON (RFC 8460 4.4): `date-range` is the whole UTC
/// day, `00:00:00Z` to `23:59:59Z` (as in the RFC's example); one `policies` entry per policy
/// with its summary and, when there were failures, `failure-details`.
pub fn build_report(
    day: Date,
    domain: &str,
    aggregate: &Aggregate,
    organization_name: &str,
    contact_info: &str,
    report_id: &str,
) -> String {
    let domain = normalize_domain(domain);
    let report = ReportJson {
        organization_name: organization_name.to_owned(),
        date_range: DateRangeJson {
            start: format!("{}T00:00:00Z", day_text(day)),
            end: format!("{}T23:59:59Z", day_text(day)),
        },
        contact_info: contact_info.to_owned(),
        report_id: report_id.to_owned(),
        policies: aggregate
            .policies
            .iter()
            .map(|(policy, counts)| PolicyResultJson {
                policy: policy_json(&domain, policy),
                summary: SummaryJson {
                    successful: counts.successful,
                    failed: counts.failed,
                },
                failure_details: details_json(counts),
            })
            .collect(),
    };
    serde_json::to_string(&report).expect("a report always serializes")
}

/// A report id for the report of `domain` on `day`: `2024-05-01.example.com@<submitter>`, in
/// the `msg-id` form the subject needs (RFC 8460 5.3). The same for the same report, so a
/// report sent again after a crash can be recognised as a duplicate.
pub fn report_id(day: Date, domain: &str, submitter: &str) -> String {
    format!(
        "{}.{}@{}",
        day_text(day),
        normalize_domain(domain),
        normalize_domain(submitter)
    )
}

/// The attachment's name (RFC 8460 5.3):
/// `<submitter>!<domain>!<begin>!<end>!<unique-id>.json.gz` with the day's first and last
/// second as Unix times and `unique_id` reduced to letters and digits.
pub fn report_filename(submitter: &str, domain: &str, day: Date, unique_id: &str) -> String {
    let (begin, end) = day_bounds(day);
    let unique: String = unique_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = format!(
        "{}!{}!{begin}!{end}",
        normalize_domain(submitter),
        normalize_domain(domain)
    );
    if !unique.is_empty() {
        name.push('!');
        name.push_str(&unique);
    }
    name.push_str(".json.gz");
    name
}

/// The report gzipped (for the mail attachment and an HTTPS POST as `application/tlsrpt+gzip`).
pub fn gzip(json: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(json.as_bytes())
        .and_then(|()| encoder.finish())
        .expect("writing to a Vec does not fail")
}

// ---------------------------------------------------------------------------------------------
// Days

/// The UTC day of a Unix time.
pub fn utc_day(unix: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date())
        .unwrap_or(Date::MIN)
}

/// The UTC day now.
pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// The first and last second of a UTC day, as Unix times.
pub fn day_bounds(day: Date) -> (i64, i64) {
    let begin = day.midnight().assume_utc().unix_timestamp();
    (begin, begin + 86_399)
}

/// `YYYY-MM-DD`.
pub(super) fn day_text(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

pub(super) fn days_before(day: Date, n: i64) -> Date {
    day.checked_sub(time::Duration::days(n))
        .unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use time::macros::date;

    use super::*;
    use crate::dane::Tlsa;
    use crate::tlsrpt::test_support::{event, failure, quiet, sts_policy, success};
    use crate::tlsrpt::{FailureDetail, FailureType, PolicyDesc, SessionResult};

    /// The example report of RFC 8460 4.8 (`mx-host` an array, erratum 6241), the
    /// `additional-information` URI without the line break of the RFC's layout.
    const RFC_EXAMPLE: &str = r#"{
      "organization-name": "Company-X",
      "date-range": {
        "start-datetime": "2016-04-01T00:00:00Z",
        "end-datetime": "2016-04-01T23:59:59Z"
      },
      "contact-info": "sts-reporting@company-x.example",
      "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
      "policies": [{
        "policy": {
          "policy-type": "sts",
          "policy-string": ["version: STSv1","mode: testing",
                "mx: *.mail.company-y.example","max_age: 86400"],
          "policy-domain": "company-y.example",
          "mx-host": ["*.mail.company-y.example"]
        },
        "summary": {
          "total-successful-session-count": 5326,
          "total-failure-session-count": 303
        },
        "failure-details": [{
          "result-type": "certificate-expired",
          "sending-mta-ip": "2001:db8:abcd:12::1",
          "receiving-mx-hostname": "mx1.mail.company-y.example",
          "failed-session-count": 100
        }, {
          "result-type": "starttls-not-supported",
          "sending-mta-ip": "2001:db8:abcd:13::1",
          "receiving-mx-hostname": "mx2.mail.company-y.example",
          "receiving-ip": "203.0.113.56",
          "failed-session-count": 200,
          "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"
        }, {
          "result-type": "validation-failure",
          "sending-mta-ip": "198.51.100.62",
          "receiving-ip": "203.0.113.58",
          "receiving-mx-hostname": "mx-backup.mail.company-y.example",
          "failed-session-count": 3,
          "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
        }]
      }]
    }"#;

    fn sorted_details(mut v: Value) -> Value {
        for policy in v["policies"].as_array_mut().unwrap() {
            if let Some(details) = policy
                .get_mut("failure-details")
                .and_then(Value::as_array_mut)
            {
                details.sort_by_key(|d| d["result-type"].as_str().unwrap().to_owned());
            }
        }
        v
    }

    #[test]
    fn report_matches_the_rfc_example() {
        let mut agg = Aggregate::default();
        let policy = sts_policy();
        let details = [
            (
                FailureDetail {
                    sending_mta_ip: Some("2001:db8:abcd:12::1".parse().unwrap()),
                    ..failure(FailureType::CertificateExpired, "mx1.mail.company-y.example")
                },
                100,
            ),
            (
                FailureDetail {
                    sending_mta_ip: Some("2001:db8:abcd:13::1".parse().unwrap()),
                    receiving_ip: Some("203.0.113.56".parse().unwrap()),
                    additional_information: Some(
                        "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"
                            .into(),
                    ),
                    ..failure(FailureType::StarttlsNotSupported, "mx2.mail.company-y.example")
                },
                200,
            ),
            (
                FailureDetail {
                    sending_mta_ip: Some("198.51.100.62".parse().unwrap()),
                    receiving_ip: Some("203.0.113.58".parse().unwrap()),
                    failure_reason_code: Some("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED".into()),
                    ..failure(
                        FailureType::ValidationFailure,
                        "mx-backup.mail.company-y.example",
                    )
                },
                3,
            ),
        ];
        agg.add_counts(policy, 5326, 303, details);
        let json = build_report(
            date!(2016 - 04 - 01),
            "company-y.example",
            &agg,
            "Company-X",
            "sts-reporting@company-x.example",
            "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
        );
        let ours: Value = serde_json::from_str(&json).unwrap();
        let rfc: Value = serde_json::from_str(RFC_EXAMPLE).unwrap();
        assert_eq!(sorted_details(ours), sorted_details(rfc));
    }

    #[tokio::test]
    async fn report_json_of_a_small_aggregate() {
        let (rec, _ledger) = quiet();
        let day = date!(2024 - 02 - 29);
        rec.record(success("Example.NET", day, PolicyDesc::no_policy_found()));
        let tlsa = PolicyDesc::tlsa(
            &[Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![0xab; 32],
            }],
            "mx.example.net",
        );
        rec.record(event(
            "example.net",
            day,
            tlsa.clone(),
            SessionResult::Failure(FailureDetail {
                sending_mta_ip: Some("192.0.2.1".parse().unwrap()),
                receiving_mx_helo: Some("mx.example.net".into()),
                receiving_ip: Some("2001:db8::25".parse().unwrap()),
                failure_reason_code: Some("dane-no-match".into()),
                ..failure(FailureType::ValidationFailure, "mx.example.net")
            }),
        ));
        rec.flush().await.unwrap();
        let agg = &rec.counts(day, "example.net").await.unwrap();
        let id = report_id(day, "example.net", "mail.sender.example");
        assert_eq!(id, "2024-02-29.example.net@mail.sender.example");
        let json = build_report(
            day,
            "example.net",
            agg,
            "Sender Org",
            "postmaster@sender.example",
            &id,
        );

        // Exactly these bytes: compact, fields in the RFC's order, absent optional fields left out.
        let tlsa_string = format!("3 1 1 {}", "AB".repeat(32));
        let expected = format!(
            concat!(
                r#"{{"organization-name":"Sender Org","#,
                r#""date-range":{{"start-datetime":"2024-02-29T00:00:00Z","end-datetime":"2024-02-29T23:59:59Z"}},"#,
                r#""contact-info":"postmaster@sender.example","#,
                r#""report-id":"2024-02-29.example.net@mail.sender.example","#,
                r#""policies":["#,
                r#"{{"policy":{{"policy-type":"tlsa","policy-string":["{}"],"policy-domain":"example.net","mx-host":["mx.example.net"]}},"#,
                r#""summary":{{"total-successful-session-count":0,"total-failure-session-count":1}},"#,
                r#""failure-details":[{{"result-type":"validation-failure","sending-mta-ip":"192.0.2.1","#,
                r#""receiving-mx-hostname":"mx.example.net","receiving-mx-helo":"mx.example.net","#,
                r#""receiving-ip":"2001:db8::25","failed-session-count":1,"failure-reason-code":"dane-no-match"}}]}},"#,
                r#"{{"policy":{{"policy-type":"no-policy-found","policy-domain":"example.net"}},"#,
                r#""summary":{{"total-successful-session-count":1,"total-failure-session-count":0}}}}"#,
                r#"]}}"#
            ),
            tlsa_string
        );
        assert_eq!(json, expected);

        // And field by field, parsed back.
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["date-range"]["start-datetime"], "2024-02-29T00:00:00Z");
        assert_eq!(v["policies"].as_array().unwrap().len(), 2);
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "tlsa");
        assert_eq!(p["policy"]["policy-string"], json!([tlsa_string]));
        assert_eq!(p["summary"]["total-failure-session-count"], 1);
        assert_eq!(p["failure-details"][0]["receiving-ip"], "2001:db8::25");
        assert_eq!(p["failure-details"][0]["failed-session-count"], 1);
        let none = &v["policies"][1];
        assert_eq!(
            none["policy"],
            json!({"policy-type": "no-policy-found", "policy-domain": "example.net"})
        );
        assert!(none.get("failure-details").is_none());
    }

    #[test]
    fn days() {
        assert_eq!(utc_day(0), date!(1970 - 01 - 01));
        assert_eq!(utc_day(1_714_607_999), date!(2024 - 05 - 01));
        assert_eq!(utc_day(1_714_608_000), date!(2024 - 05 - 02));
        assert_eq!(day_text(date!(2024 - 01 - 02)), "2024-01-02");
        assert_eq!(
            report_filename(
                "Sub.Example.",
                "dom.example",
                date!(1970 - 01 - 01),
                "a-b.c"
            ),
            "sub.example!dom.example!0!86399!abc.json.gz"
        );
        assert_eq!(
            report_filename("s.example", "d.example", date!(1970 - 01 - 02), ""),
            "s.example!d.example!86400!172799.json.gz"
        );
    }
}
