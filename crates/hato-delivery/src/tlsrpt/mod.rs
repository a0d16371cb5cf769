//! SMTP TLS Reporting (RFC 8460), the sending side: what a domain asks for, what hato counts,
//! and the daily report. Everything public is re-exported here (`hato_delivery::tlsrpt::...`);
//! the files below are private modules.
//!
//! * `record.rs`, [`parse_txt`]: the `_smtp._tls.<domain>` TXT record (RFC 8460 3; its name:
//!   [`txt_name`]): exactly one record starting with `v=TLSRPTv1`, its `rua` list of `mailto:`
//!   (RFC 6068, percent-decoded) and `https:` URIs; unknown fields are ignored.
//! * `model.rs`, [`SessionEvent`], [`Aggregate`]: what is counted (RFC 8460 4.3, 4.4): the
//!   policy a session was held to ([`PolicyDesc`]), success or a [`FailureDetail`] with its
//!   [`FailureType`], and the counts per policy, capped at [`MAX_POLICIES`] and
//!   [`MAX_FAILURE_DETAILS`].
//! * `recorder.rs`, [`Recorder`]: counts TLS sessions per UTC day, policy domain and policy
//!   (RFC 8460 4.1, 4.4), successes and failures, failures per distinct failure detail.
//!   `record` only updates an in-memory table; a background task adds the new counts to a
//!   [`ReportLedger`](crate::state::ReportLedger) every few seconds (and [`Recorder::flush`],
//!   and dropping the last handle), so a crash loses at most those seconds. The server's ledger
//!   is its store, so the sessions of every node count towards one report.
//! * `recorder.rs`, [`Recorder::due_reports`], [`Recorder::claim`], [`Recorder::prune`]: the
//!   complete days (at most [`DUE_WINDOW_DAYS`] back) whose report for a domain has not been
//!   sent yet; a report is claimed (marked sent in the ledger) before it is sent, so each
//!   (day, domain) report goes out at most once, by one node (RFC 8460 4.1: one report per
//!   day); counts older than [`KEEP_DAYS`] are removed.
//! * `json.rs`: the serde types of the report JSON and of the keys counts are stored under.
//! * `report.rs`, [`build_report`]: the JSON report (RFC 8460 4.4, with erratum 6241: `mx-host`
//!   is an array), covering the UTC day `00:00:00Z`–`23:59:59Z`; its id, attachment name and
//!   gzip, and UTC days ([`utc_day`], [`today`], [`day_bounds`]).
//! * `message.rs`, [`report_message`]: the report as mail (RFC 8460 5.3): `multipart/report;
//!   report-type="tlsrpt"`, a text/plain part and the gzipped JSON as
//!   `application/tlsrpt+gzip` named `<submitter>!<domain>!<begin>!<end>!<id>.json.gz`, with
//!   `TLS-Report-Domain`, `TLS-Report-Submitter`, `Auto-Submitted: auto-generated` (RFC 3834)
//!   and `TLS-Required: No` (RFC 8689 5; RFC 8460 3: a report must be delivered despite
//!   TLS failures, and that session should not be counted: [`is_report_message`]).
//!
//! This module never sends anything: the scheduler in the `hato` binary records sessions,
//! looks up the TXT record, and submits the message (from the null reverse-path `<>`, so no
//! report ever causes a bounce). Not done here: the HTTPS POST for `https:` URIs, and the DKIM
//! signature RFC 8460 3 requires of reports sent by mail.

mod json;
mod message;
mod model;
mod record;
mod recorder;
mod report;

pub use message::{is_report_message, report_message};
pub use model::{
    Aggregate, FailureDetail, FailureType, MAX_FAILURE_DETAILS, MAX_POLICIES, PolicyCounts,
    PolicyDesc, PolicyType, SessionEvent, SessionResult,
};
pub use record::{MAX_RUA, RecordError, Rua, TlsRptRecord, parse_txt};
pub use recorder::{DEFAULT_FLUSH_INTERVAL, DUE_WINDOW_DAYS, KEEP_DAYS, Recorder, RecorderOptions};
pub use report::{build_report, day_bounds, gzip, report_filename, report_id, today, utc_day};

/// The DNS name of the TXT record (RFC 8460 3).
pub fn txt_name(domain: &str) -> String {
    format!("_smtp._tls.{}", normalize_domain(domain))
}

fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Helpers shared by the tests of the submodules.
#[cfg(test)]
mod test_support {
    use std::sync::Arc;

    use time::Date;

    use super::*;
    use crate::mta_sts;
    use crate::state::MemoryReportLedger;

    pub(super) fn sts_policy() -> PolicyDesc {
        PolicyDesc::sts(&mta_sts::Policy {
            mode: mta_sts::Mode::Testing,
            mx: vec!["*.mail.company-y.example".into()],
            max_age: 86400,
        })
    }

    pub(super) fn failure(result_type: FailureType, mx: &str) -> FailureDetail {
        FailureDetail {
            receiving_mx_hostname: Some(mx.into()),
            ..FailureDetail::new(result_type)
        }
    }

    pub(super) fn event(
        domain: &str,
        day: Date,
        policy: PolicyDesc,
        result: SessionResult,
    ) -> SessionEvent {
        SessionEvent {
            policy_domain: domain.into(),
            policy,
            day,
            result,
        }
    }

    /// A successful session of `domain` on `day` under `policy`.
    pub(super) fn success(domain: &str, day: Date, policy: PolicyDesc) -> SessionEvent {
        event(domain, day, policy, SessionResult::Success)
    }

    /// A recorder without background flushes, and its in-memory ledger.
    pub(super) fn quiet() -> (Recorder, Arc<MemoryReportLedger>) {
        let ledger = Arc::new(MemoryReportLedger::default());
        let recorder = Recorder::with_options(
            ledger.clone(),
            RecorderOptions {
                flush_interval: None,
            },
        );
        (recorder, ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_record_names() {
        assert_eq!(txt_name("Example.COM."), "_smtp._tls.example.com");
    }
}
