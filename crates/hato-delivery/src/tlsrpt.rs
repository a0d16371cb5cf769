//! SMTP TLS Reporting (RFC 8460), the sending side: what a domain asks for, what hato counts,
//! and the daily report.
//!
//! * [`parse_txt`]: the `_smtp._tls.<domain>` TXT record (RFC 8460 3): exactly one record
//!   starting with `v=TLSRPTv1`, its `rua` list of `mailto:` (RFC 6068, percent-decoded) and
//!   `https:` URIs; unknown fields are ignored.
//! * [`Recorder`]: counts TLS sessions per UTC day, policy domain and policy (RFC 8460 4.1,
//!   4.4), successes and failures, failures per distinct failure detail. `record` only updates
//!   an in-memory table; a background thread appends the new counts to a journal every few
//!   seconds (and [`Recorder::flush`], and dropping the last handle), so a crash loses at most
//!   those seconds. The journal is one JSON-lines file per UTC day in the recorder's directory
//!   (`data_dir/tls-rpt/2024-05-01.jsonl`); each line holds counts to add. A line that does not
//!   parse (the last one, cut by a crash) is skipped, and the next append starts on a new line.
//!   A journal that grows past [`RecorderOptions::compact_threshold`] is rewritten with one line
//!   per domain and policy (temporary file, sync, rename).
//! * [`due_reports`], [`mark_sent`], [`prune`]: the complete days (at most [`DUE_WINDOW_DAYS`]
//!   back) whose report for a domain has not been sent yet; `<day>.sent` lists the domains whose
//!   report went out, so each (day, domain) report is sent at most once (RFC 8460 4.1: one
//!   report per day); journals older than [`KEEP_DAYS`] are removed.
//! * [`build_report`]: the JSON report (RFC 8460 4.4, with erratum 6241: `mx-host` is an array),
//!   covering the UTC day `00:00:00Z`–`23:59:59Z`.
//! * [`report_message`]: the report as mail (RFC 8460 5.3): `multipart/report;
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};
use tracing::{debug, warn};

use crate::dane::Tlsa;
use crate::dane_verify::DaneFailure;
use crate::mta_sts;
use crate::mta_sts_fetch::ResultType;

/// The DNS name of the TXT record (RFC 8460 3).
pub fn txt_name(domain: &str) -> String {
    format!("_smtp._tls.{}", normalize_domain(domain))
}

/// How often the recorder's background thread appends new counts to the journal by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// A journal larger than this (and than twice its size after the last compaction) is compacted.
pub const DEFAULT_COMPACT_THRESHOLD: u64 = 1024 * 1024;
/// How many complete days back [`due_reports`] looks: yesterday and the day before (a report
/// missed by an outage over midnight is still sent; older ones are not).
pub const DUE_WINDOW_DAYS: i64 = 2;
/// Journals and sent lists older than this many days are removed by [`prune`] by default.
pub const KEEP_DAYS: i64 = 7;
/// At most this many `rua` URIs of a record are used (the rest are listed as ignored), so a
/// record cannot make hato send a report to hundreds of addresses.
pub const MAX_RUA: usize = 10;
/// Distinct policies kept per domain and day; sessions under further policies are not counted.
pub const MAX_POLICIES: usize = 64;
/// Distinct failure details kept per policy and day; further failures count in the summary only.
pub const MAX_FAILURE_DETAILS: usize = 256;
/// Longest text kept in a policy string, host name, reason code or information field.
const MAX_FIELD: usize = 512;
/// Most policy strings kept per policy (an MTA-STS policy has one per line).
const MAX_POLICY_STRINGS: usize = 128;

// ---------------------------------------------------------------------------------------------
// The TXT record (RFC 8460 3)

/// One reporting URI of the `rua` field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rua {
    /// `mailto:`: the address, percent-decoded (RFC 6068), header fields (`?subject=`) dropped.
    Mailto(String),
    /// `https:`: the URI as published (reports are POSTed there, RFC 8460 5.4).
    Https(String),
}

impl fmt::Display for Rua {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rua::Mailto(address) => write!(f, "mailto:{address}"),
            Rua::Https(uri) => f.write_str(uri),
        }
    }
}

/// A parsed `v=TLSRPTv1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptRecord {
    /// Where to send reports, in the record's order, duplicates removed; never empty.
    pub rua: Vec<Rua>,
    /// URIs that were not used: unknown schemes, invalid `mailto:` addresses, beyond
    /// [`MAX_RUA`] (for logs).
    pub ignored: Vec<String>,
}

impl TlsRptRecord {
    /// The `mailto:` addresses.
    pub fn mailto(&self) -> Vec<&str> {
        self.rua
            .iter()
            .filter_map(|r| match r {
                Rua::Mailto(address) => Some(address.as_str()),
                Rua::Https(_) => None,
            })
            .collect()
    }

    /// The `https:` URIs.
    pub fn https(&self) -> Vec<&str> {
        self.rua
            .iter()
            .filter_map(|r| match r {
                Rua::Https(uri) => Some(uri.as_str()),
                Rua::Mailto(_) => None,
            })
            .collect()
    }
}

/// Why a TXT record set was refused. Like no record at all, it means: send no report
/// (RFC 8460 3: "If the number of resulting records is not one, senders MUST assume the
/// recipient domain does not implement TLSRPT").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("more than one TLSRPT TXT record")]
    SeveralRecords,
    #[error("invalid TLSRPT TXT record: {0}")]
    BadRecord(String),
}

/// Parses the TXT strings found at `_smtp._tls.<domain>` ([`txt_name`]; each record's strings
/// already joined, as [`crate::route::Router::txt`] returns them). Records not starting with
/// `v=TLSRPTv1` are ignored; none: `Ok(None)`; several: [`RecordError::SeveralRecords`]. The
/// record needs a `rua` field with at least one usable `mailto:` or `https:` URI; other fields
/// are ignored (RFC 8460 3: extensions).
pub fn parse_txt(records: &[String]) -> Result<Option<TlsRptRecord>, RecordError> {
    let candidates: Vec<&str> = records
        .iter()
        .map(|r| r.trim_start_matches([' ', '\t']))
        .filter(|r| {
            r.strip_prefix("v=TLSRPTv1").is_some_and(|rest| {
                let rest = rest.trim_start_matches([' ', '\t']);
                rest.is_empty() || rest.starts_with(';')
            })
        })
        .collect();
    let record = match candidates.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(RecordError::SeveralRecords),
    };
    let bad = |m: String| RecordError::BadRecord(m);
    let mut rua_value = None;
    for field in record.split(';').skip(1) {
        let field = field.trim_matches([' ', '\t']);
        if field.is_empty() {
            continue; // a trailing ";"
        }
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad(format!("field {field:?} has no '='")))?;
        let key = key.trim_end_matches([' ', '\t']);
        if key.is_empty() {
            return Err(bad(format!("field {field:?} has no name")));
        }
        if key == "rua" {
            if rua_value.is_some() {
                return Err(bad("more than one rua field".into()));
            }
            rua_value = Some(value.trim_matches([' ', '\t']));
        }
        // Other fields are extensions: ignored.
    }
    let value = rua_value.ok_or_else(|| bad("no rua field".into()))?;
    let mut rua: Vec<Rua> = Vec::new();
    let mut ignored = Vec::new();
    for uri in value.split(',') {
        let uri = uri.trim_matches([' ', '\t']);
        if uri.is_empty() {
            continue;
        }
        let parsed = parse_uri(uri);
        if parsed.is_empty() {
            ignored.push(uri.to_owned());
        }
        for r in parsed {
            if rua.contains(&r) {
                continue;
            }
            if rua.len() >= MAX_RUA {
                ignored.push(r.to_string());
            } else {
                rua.push(r);
            }
        }
    }
    if rua.is_empty() {
        return Err(bad(format!(
            "no usable mailto: or https: URI in rua={value:?}"
        )));
    }
    Ok(Some(TlsRptRecord { rua, ignored }))
}

/// One URI of `rua`: a `mailto:` may name several addresses (RFC 6068: `%2C`-separated once
/// decoded); unknown schemes and invalid URIs yield nothing.
fn parse_uri(uri: &str) -> Vec<Rua> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Vec::new();
    };
    if scheme.eq_ignore_ascii_case("mailto") {
        let to = rest.split_once('?').map_or(rest, |(to, _)| to);
        let Some(decoded) = percent_decode(to) else {
            return Vec::new();
        };
        decoded
            .split(',')
            .map(str::trim)
            .filter(|a| valid_address(a))
            .map(|a| Rua::Mailto(a.to_owned()))
            .collect()
    } else if scheme.eq_ignore_ascii_case("https") {
        let Some(after) = rest.strip_prefix("//") else {
            return Vec::new();
        };
        let authority = after.split(['/', '?', '#']).next().unwrap_or("");
        let valid = !authority.is_empty()
            && !authority.contains('@')
            && uri.chars().all(|c| c.is_ascii_graphic());
        if valid {
            vec![Rua::Https(format!("https:{rest}"))]
        } else {
            Vec::new()
        }
    } else {
        Vec::new()
    }
}

/// RFC 3986 percent-decoding to UTF-8; None for a bad escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A plausible addr-spec to put in `RCPT TO:<...>`: `local@domain`, no spaces, controls or
/// angle brackets.
fn valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && address.len() <= 254
        && !domain.starts_with('.')
        && !address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ','))
}

// ---------------------------------------------------------------------------------------------
// What is counted (RFC 8460 4.3, 4.4)

/// `policy-type` (RFC 8460 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PolicyType {
    /// An MTA-STS policy (RFC 8461) was applied.
    #[serde(rename = "sts")]
    Sts,
    /// DANE TLSA records (RFC 7672) were applied.
    #[serde(rename = "tlsa")]
    Tlsa,
    /// Neither.
    #[serde(rename = "no-policy-found")]
    NoPolicyFound,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy a session was held to: `policy-type`, `policy-string` and `mx-host` of the
/// report (RFC 8460 4.4). Sessions under different descriptions are counted apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyDesc {
    pub policy_type: PolicyType,
    /// MTA-STS: the policy's lines; TLSA: each record in presentation format
    /// (`3 1 1 0A1B...`); none: empty.
    pub policy_strings: Vec<String>,
    /// MTA-STS: the policy's `mx` patterns; TLSA: the MX host the records belong to.
    pub mx_hosts: Vec<String>,
}

impl PolicyDesc {
    /// An MTA-STS policy, its lines rebuilt from the parsed policy (`version: STSv1`, `mode`,
    /// each `mx`, `max_age`).
    pub fn sts(policy: &mta_sts::Policy) -> PolicyDesc {
        let mut lines = vec![
            "version: STSv1".to_owned(),
            format!("mode: {}", policy.mode),
        ];
        lines.extend(policy.mx.iter().map(|mx| format!("mx: {mx}")));
        lines.push(format!("max_age: {}", policy.max_age));
        PolicyDesc {
            policy_type: PolicyType::Sts,
            policy_strings: lines,
            mx_hosts: policy.mx.clone(),
        }
    }

    /// The TLSA records of `mx_host` (all of them, usable or not, as validated).
    pub fn tlsa(records: &[Tlsa], mx_host: &str) -> PolicyDesc {
        PolicyDesc {
            policy_type: PolicyType::Tlsa,
            policy_strings: records.iter().map(tlsa_text).collect(),
            mx_hosts: vec![normalize_domain(mx_host)],
        }
    }

    /// No MTA-STS policy and no TLSA records.
    pub fn no_policy_found() -> PolicyDesc {
        PolicyDesc {
            policy_type: PolicyType::NoPolicyFound,
            policy_strings: Vec::new(),
            mx_hosts: Vec::new(),
        }
    }

    fn cleaned(mut self) -> PolicyDesc {
        self.policy_strings.truncate(MAX_POLICY_STRINGS);
        self.mx_hosts.truncate(MAX_POLICY_STRINGS);
        for s in &mut self.policy_strings {
            *s = clean_field(s);
        }
        for h in &mut self.mx_hosts {
            *h = clean_field(&h.trim_end_matches('.').to_ascii_lowercase());
        }
        self
    }
}

/// A TLSA record in presentation format: `usage selector matching HEX` (RFC 6698 2.2).
fn tlsa_text(record: &Tlsa) -> String {
    let mut s = format!("{} {} {} ", record.usage, record.selector, record.matching);
    for b in &record.data {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// `result-type` of a failure (RFC 8460 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureType {
    /// 4.3.1: the server does not offer STARTTLS (or it failed) where a policy required TLS.
    StarttlsNotSupported,
    /// The certificate does not match the host name (MTA-STS / WebPKI).
    CertificateHostMismatch,
    CertificateExpired,
    /// The certificate does not chain to a trusted root.
    CertificateNotTrusted,
    /// Any other failure to negotiate or validate TLS (also a DANE mismatch).
    ValidationFailure,
    /// 4.3.2: DNSSEC-validated TLSA records, none of them usable/valid.
    TlsaInvalid,
    /// The TLSA lookup returned no valid answer (bogus, or it failed).
    DnssecInvalid,
    /// Configured to require DANE, but no DNSSEC-validated TLSA records.
    DaneRequired,
    /// 4.3.2.1: the MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// The MTA-STS policy was invalid.
    StsPolicyInvalid,
    /// The MTA-STS policy host's certificate did not validate.
    StsWebpkiInvalid,
}

impl FailureType {
    pub const ALL: [FailureType; 11] = [
        FailureType::StarttlsNotSupported,
        FailureType::CertificateHostMismatch,
        FailureType::CertificateExpired,
        FailureType::CertificateNotTrusted,
        FailureType::ValidationFailure,
        FailureType::TlsaInvalid,
        FailureType::DnssecInvalid,
        FailureType::DaneRequired,
        FailureType::StsPolicyFetchError,
        FailureType::StsPolicyInvalid,
        FailureType::StsWebpkiInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::StarttlsNotSupported => "starttls-not-supported",
            FailureType::CertificateHostMismatch => "certificate-host-mismatch",
            FailureType::CertificateExpired => "certificate-expired",
            FailureType::CertificateNotTrusted => "certificate-not-trusted",
            FailureType::ValidationFailure => "validation-failure",
            FailureType::TlsaInvalid => "tlsa-invalid",
            FailureType::DnssecInvalid => "dnssec-invalid",
            FailureType::DaneRequired => "dane-required",
            FailureType::StsPolicyFetchError => "sts-policy-fetch-error",
            FailureType::StsPolicyInvalid => "sts-policy-invalid",
            FailureType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// The result type and a stable `failure-reason-code` for a failed TLS handshake with the
    /// MX host: certificate name → `certificate-host-mismatch`, expired →
    /// `certificate-expired`, unknown issuer, bad signature, revoked, wrong purpose →
    /// `certificate-not-trusted`; anything else → `validation-failure`, among them a chain no
    /// TLSA record matched (the [`DaneFailure`] of the DANE verifier: code `dane-no-match`).
    /// The code names the rustls error kind without its variable context (times, names), so
    /// failures of one kind count as one failure detail.
    pub fn classify_tls_error(err: &rustls::Error) -> (FailureType, &'static str) {
        use rustls::CertificateError as C;
        match err {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    (FailureType::CertificateHostMismatch, "not-valid-for-name")
                }
                C::Expired | C::ExpiredContext { .. } => {
                    (FailureType::CertificateExpired, "expired")
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    (FailureType::ValidationFailure, "not-valid-yet")
                }
                C::UnknownIssuer => (FailureType::CertificateNotTrusted, "unknown-issuer"),
                C::BadSignature => (FailureType::CertificateNotTrusted, "bad-signature"),
                C::Revoked => (FailureType::CertificateNotTrusted, "revoked"),
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                    (FailureType::CertificateNotTrusted, "invalid-purpose")
                }
                C::BadEncoding => (FailureType::ValidationFailure, "bad-encoding"),
                C::Other(other) => {
                    let error: &(dyn std::error::Error + 'static) = &*other.0;
                    if error.downcast_ref::<DaneFailure>().is_some() {
                        (FailureType::ValidationFailure, "dane-no-match")
                    } else {
                        (FailureType::ValidationFailure, "certificate-rejected")
                    }
                }
                _ => (FailureType::ValidationFailure, "invalid-certificate"),
            },
            rustls::Error::NoCertificatesPresented => {
                (FailureType::ValidationFailure, "no-certificate")
            }
            rustls::Error::AlertReceived(_) => (FailureType::ValidationFailure, "alert-received"),
            rustls::Error::PeerIncompatible(_) => {
                (FailureType::ValidationFailure, "peer-incompatible")
            }
            _ => (FailureType::ValidationFailure, "handshake-failed"),
        }
    }
}

impl fmt::Display for FailureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ResultType> for FailureType {
    fn from(r: ResultType) -> FailureType {
        match r {
            ResultType::StsPolicyFetchError => FailureType::StsPolicyFetchError,
            ResultType::StsPolicyInvalid => FailureType::StsPolicyInvalid,
            ResultType::StsWebpkiInvalid => FailureType::StsWebpkiInvalid,
        }
    }
}

/// One entry of `failure-details` (RFC 8460 4.4) without its count. Failed sessions with equal
/// details are counted together, so keep the fields stable (no times or counters in
/// `failure_reason_code`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailureDetail {
    pub result_type: FailureType,
    /// The address hato connected from.
    pub sending_mta_ip: Option<IpAddr>,
    /// The MX host name connected to.
    pub receiving_mx_hostname: Option<String>,
    /// The name in the server's greeting (220), if known.
    pub receiving_mx_helo: Option<String>,
    pub receiving_ip: Option<IpAddr>,
    /// A URI with more information (RFC 8460 4.4 `additional-information`).
    pub additional_information: Option<String>,
    /// Free text, e.g. the code from [`FailureType::classify_tls_error`].
    pub failure_reason_code: Option<String>,
}

impl FailureDetail {
    /// A detail with only the result type.
    pub fn new(result_type: FailureType) -> FailureDetail {
        FailureDetail {
            result_type,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            additional_information: None,
            failure_reason_code: None,
        }
    }

    fn cleaned(mut self) -> FailureDetail {
        let host = |h: Option<String>| {
            h.map(|h| clean_field(&h.trim_end_matches('.').to_ascii_lowercase()))
                .filter(|h| !h.is_empty())
        };
        self.receiving_mx_hostname = host(self.receiving_mx_hostname);
        self.receiving_mx_helo = host(self.receiving_mx_helo);
        let text = |t: Option<String>| t.map(|t| clean_field(&t)).filter(|t| !t.is_empty());
        self.additional_information = text(self.additional_information);
        self.failure_reason_code = text(self.failure_reason_code);
        self
    }
}

/// How a session ended for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionResult {
    /// TLS was negotiated and met the policy.
    Success,
    Failure(FailureDetail),
}

/// One TLS session (or one policy failure that stopped a session from happening) to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// The policy domain (RFC 8460 1.1; lower case A-labels): the recipient domain for
    /// MTA-STS.
    pub policy_domain: String,
    pub policy: PolicyDesc,
    /// The UTC day the session belongs to ([`utc_day`]).
    pub day: Date,
    pub result: SessionResult,
}

/// The counts under one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCounts {
    /// `total-successful-session-count`.
    pub successful: u64,
    /// `total-failure-session-count` (also failures beyond [`MAX_FAILURE_DETAILS`]).
    pub failed: u64,
    /// `failure-details` with `failed-session-count`.
    pub failure_details: BTreeMap<FailureDetail, u64>,
}

/// All counts of one domain and day: one entry of `policies` per policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub policies: BTreeMap<PolicyDesc, PolicyCounts>,
}

impl Aggregate {
    /// Counts one session (a policy beyond [`MAX_POLICIES`] is not counted: false).
    pub fn add(&mut self, policy: PolicyDesc, result: SessionResult) -> bool {
        match result {
            SessionResult::Success => self.add_counts(policy, 1, 0, std::iter::empty()),
            SessionResult::Failure(detail) => {
                self.add_counts(policy, 0, 1, std::iter::once((detail, 1)))
            }
        }
    }

    /// Adds counts (from a journal line or another aggregate).
    fn add_counts(
        &mut self,
        policy: PolicyDesc,
        successful: u64,
        failed: u64,
        details: impl IntoIterator<Item = (FailureDetail, u64)>,
    ) -> bool {
        let len = self.policies.len();
        let counts = match self.policies.entry(policy) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                if len >= MAX_POLICIES {
                    return false;
                }
                e.insert(PolicyCounts::default())
            }
        };
        counts.successful = counts.successful.saturating_add(successful);
        counts.failed = counts.failed.saturating_add(failed);
        for (detail, n) in details {
            let known = counts.failure_details.len();
            match counts.failure_details.get_mut(&detail) {
                Some(count) => *count = count.saturating_add(n),
                None if known < MAX_FAILURE_DETAILS => {
                    counts.failure_details.insert(detail, n);
                }
                None => {} // counted in `failed` only
            }
        }
        true
    }

    /// Adds all of `other`'s counts.
    pub fn merge(&mut self, other: Aggregate) {
        for (policy, counts) in other.policies {
            self.add_counts(
                policy,
                counts.successful,
                counts.failed,
                counts.failure_details,
            );
        }
    }

    pub fn total_successful(&self) -> u64 {
        self.policies.values().map(|c| c.successful).sum()
    }

    pub fn total_failed(&self) -> u64 {
        self.policies.values().map(|c| c.failed).sum()
    }

    /// No session counted.
    pub fn is_empty(&self) -> bool {
        self.policies
            .values()
            .all(|c| c.successful == 0 && c.failed == 0)
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON of reports and journal lines (RFC 8460 4.4)

#[derive(Debug, Serialize, Deserialize)]
struct ReportJson {
    #[serde(rename = "organization-name")]
    organization_name: String,
    #[serde(rename = "date-range")]
    date_range: DateRangeJson,
    #[serde(rename = "contact-info")]
    contact_info: String,
    #[serde(rename = "report-id")]
    report_id: String,
    policies: Vec<PolicyResultJson>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DateRangeJson {
    #[serde(rename = "start-datetime")]
    start: String,
    #[serde(rename = "end-datetime")]
    end: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PolicyResultJson {
    policy: PolicyJson,
    summary: SummaryJson,
    #[serde(
        rename = "failure-details",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    failure_details: Vec<FailureDetailJson>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PolicyJson {
    #[serde(rename = "policy-type")]
    policy_type: PolicyType,
    #[serde(
        rename = "policy-string",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    policy_string: Vec<String>,
    #[serde(rename = "policy-domain")]
    policy_domain: String,
    #[serde(rename = "mx-host", default, skip_serializing_if = "Vec::is_empty")]
    mx_host: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SummaryJson {
    #[serde(rename = "total-successful-session-count")]
    successful: u64,
    #[serde(rename = "total-failure-session-count")]
    failed: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FailureDetailJson {
    #[serde(rename = "result-type")]
    result_type: FailureType,
    #[serde(
        rename = "sending-mta-ip",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    sending_mta_ip: Option<String>,
    #[serde(
        rename = "receiving-mx-hostname",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    receiving_mx_hostname: Option<String>,
    #[serde(
        rename = "receiving-mx-helo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    receiving_mx_helo: Option<String>,
    #[serde(
        rename = "receiving-ip",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    receiving_ip: Option<String>,
    #[serde(rename = "failed-session-count")]
    failed_session_count: u64,
    #[serde(
        rename = "additional-information",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    additional_information: Option<String>,
    #[serde(
        rename = "failure-reason-code",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    failure_reason_code: Option<String>,
}

/// One journal line: counts to add for one domain (`policy.policy-domain`) and policy.
#[derive(Debug, Serialize, Deserialize)]
struct JournalLine {
    policy: PolicyJson,
    successful: u64,
    failed: u64,
    #[serde(
        rename = "failure-details",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    failure_details: Vec<FailureDetailJson>,
}

fn policy_json(domain: &str, policy: &PolicyDesc) -> PolicyJson {
    PolicyJson {
        policy_type: policy.policy_type,
        policy_string: policy.policy_strings.clone(),
        policy_domain: domain.to_owned(),
        mx_host: policy.mx_hosts.clone(),
    }
}

fn detail_json(detail: &FailureDetail, count: u64) -> FailureDetailJson {
    FailureDetailJson {
        result_type: detail.result_type,
        sending_mta_ip: detail.sending_mta_ip.map(|ip| ip.to_string()),
        receiving_mx_hostname: detail.receiving_mx_hostname.clone(),
        receiving_mx_helo: detail.receiving_mx_helo.clone(),
        receiving_ip: detail.receiving_ip.map(|ip| ip.to_string()),
        failed_session_count: count,
        additional_information: detail.additional_information.clone(),
        failure_reason_code: detail.failure_reason_code.clone(),
    }
}

fn details_json(counts: &PolicyCounts) -> Vec<FailureDetailJson> {
    counts
        .failure_details
        .iter()
        .map(|(detail, &n)| detail_json(detail, n))
        .collect()
}

/// A journal line back into (domain, policy, counts); None if its domain is empty.
fn from_journal(line: JournalLine) -> Option<(String, PolicyDesc, PolicyCounts)> {
    let domain = normalize_domain(&line.policy.policy_domain);
    if domain.is_empty() {
        return None;
    }
    let policy = PolicyDesc {
        policy_type: line.policy.policy_type,
        policy_strings: line.policy.policy_string,
        mx_hosts: line.policy.mx_host,
    }
    .cleaned();
    let failure_details = line
        .failure_details
        .into_iter()
        .map(|d| {
            let detail = FailureDetail {
                result_type: d.result_type,
                sending_mta_ip: d.sending_mta_ip.and_then(|ip| ip.parse().ok()),
                receiving_mx_hostname: d.receiving_mx_hostname,
                receiving_mx_helo: d.receiving_mx_helo,
                receiving_ip: d.receiving_ip.and_then(|ip| ip.parse().ok()),
                additional_information: d.additional_information,
                failure_reason_code: d.failure_reason_code,
            }
            .cleaned();
            (detail, d.failed_session_count)
        })
        .collect();
    Some((
        domain,
        policy,
        PolicyCounts {
            successful: line.successful,
            failed: line.failed,
            failure_details,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// The report (RFC 8460 4)

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

/// The report message (RFC 8460 5.3), CRLF line endings, to submit with the null reverse-path
/// `<>` to the `mailto:` addresses in `to`. `from` is an address of the submitter (e.g.
/// `postmaster@<host>`), `submitter` the reporting domain, `json` from [`build_report`] for
/// `domain` and `day`, `now` Unix seconds (`Date`).
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
    header("Date", &rfc5322_date(now));
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

/// RFC 5322 date-time in UTC.
fn rfc5322_date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into())
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

/// A report or journal field: controls become spaces, at most [`MAX_FIELD`] bytes.
fn clean_field(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(&mut out, MAX_FIELD);
    out.trim().to_owned()
}

fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
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
fn day_text(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn parse_day(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

fn days_before(day: Date, n: i64) -> Date {
    day.checked_sub(time::Duration::days(n))
        .unwrap_or(Date::MIN)
}

fn journal_path(dir: &Path, day: Date) -> PathBuf {
    dir.join(format!("{}.jsonl", day_text(day)))
}

fn sent_path(dir: &Path, day: Date) -> PathBuf {
    dir.join(format!("{}.sent", day_text(day)))
}

// ---------------------------------------------------------------------------------------------
// The recorder and its journal

/// Settings of a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// How often a background thread appends new counts to the journal; None: no thread, only
    /// [`Recorder::flush`] (and dropping the last handle) write.
    pub flush_interval: Option<Duration>,
    /// Compact a day's journal when it grows beyond this and twice its last compacted size.
    pub compact_threshold: u64,
}

impl Default for RecorderOptions {
    fn default() -> RecorderOptions {
        RecorderOptions {
            flush_interval: Some(DEFAULT_FLUSH_INTERVAL),
            compact_threshold: DEFAULT_COMPACT_THRESHOLD,
        }
    }
}

/// Counts TLS sessions for the reports. Cheap to clone (one shared state) and to call from many
/// tasks: [`Recorder::record`] takes a mutex for a map update, never does I/O.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    compact_threshold: u64,
    /// Counts not yet in the journal, per (day, domain).
    pending: Mutex<HashMap<(Date, String), Aggregate>>,
    /// Held while writing the journal; the size of each day's journal after its last compaction.
    io: Mutex<HashMap<Date, u64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            warn!(dir = %self.dir.display(), "TLS-RPT: cannot write the journal: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// A recorder writing to `dir` (created if missing, e.g. `data_dir/tls-rpt`), flushing every
    /// [`DEFAULT_FLUSH_INTERVAL`] from a background thread.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Recorder> {
        Recorder::open_with(dir, RecorderOptions::default())
    }

    pub fn open_with(dir: impl Into<PathBuf>, options: RecorderOptions) -> io::Result<Recorder> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let inner = Arc::new(Inner {
            dir,
            compact_threshold: options.compact_threshold,
            pending: Mutex::new(HashMap::new()),
            io: Mutex::new(HashMap::new()),
        });
        if let Some(interval) = options.flush_interval {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("tls-rpt-flush".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(interval);
                        let Some(inner) = weak.upgrade() else { break };
                        if let Err(e) = inner.flush() {
                            warn!(dir = %inner.dir.display(), "TLS-RPT: cannot write the journal: {e}");
                        }
                    }
                })?;
        }
        Ok(Recorder { inner })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Counts one session. Strings are cleaned (control characters, length) and host names
    /// lower-cased; an event without a policy domain is ignored.
    pub fn record(&self, event: SessionEvent) {
        let domain = clean_field(&normalize_domain(&event.policy_domain));
        if domain.is_empty() {
            return;
        }
        let policy = event.policy.cleaned();
        let result = match event.result {
            SessionResult::Success => SessionResult::Success,
            SessionResult::Failure(detail) => SessionResult::Failure(detail.cleaned()),
        };
        let mut pending = lock(&self.inner.pending);
        let aggregate = pending.entry((event.day, domain)).or_default();
        if !aggregate.add(policy, result) {
            debug!("TLS-RPT: too many policies for one domain and day, session not counted");
        }
    }

    /// Writes the counts recorded so far to the journal (and syncs it). On an error the counts
    /// stay pending for the next flush.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    /// [`flush`](Recorder::flush), then [`due_reports`] of this recorder's directory.
    pub fn due_reports(&self, today: Date) -> io::Result<Vec<(Date, String, Aggregate)>> {
        self.flush()?;
        due_reports(&self.inner.dir, today)
    }

    /// [`mark_sent`] in this recorder's directory.
    pub fn mark_sent(&self, day: Date, domain: &str) -> io::Result<()> {
        mark_sent(&self.inner.dir, day, domain)
    }

    /// [`prune`] in this recorder's directory, keeping [`KEEP_DAYS`].
    pub fn prune(&self, today: Date) -> io::Result<usize> {
        let _io = lock(&self.inner.io);
        prune(&self.inner.dir, today, KEEP_DAYS)
    }
}

impl Inner {
    fn flush(&self) -> io::Result<()> {
        let mut compacted = lock(&self.io);
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        let mut by_day: BTreeMap<Date, Vec<(String, Aggregate)>> = BTreeMap::new();
        for ((day, domain), aggregate) in pending {
            by_day.entry(day).or_default().push((domain, aggregate));
        }
        let mut result = Ok(());
        for (day, entries) in by_day {
            let mut data = Vec::new();
            for (domain, aggregate) in &entries {
                for (policy, counts) in &aggregate.policies {
                    let line = JournalLine {
                        policy: policy_json(domain, policy),
                        successful: counts.successful,
                        failed: counts.failed,
                        failure_details: details_json(counts),
                    };
                    serde_json::to_writer(&mut data, &line).map_err(io::Error::other)?;
                    data.push(b'\n');
                }
            }
            match append(&journal_path(&self.dir, day), &data) {
                Ok(len) => {
                    let base = compacted.get(&day).copied().unwrap_or(0);
                    if len > self.compact_threshold && len > 2 * base {
                        match compact(&self.dir, day) {
                            Ok(new_len) => {
                                compacted.insert(day, new_len);
                            }
                            Err(e) => warn!("TLS-RPT: cannot compact the journal of {day}: {e}"),
                        }
                    }
                }
                Err(e) => {
                    let mut pending = lock(&self.pending);
                    for (domain, aggregate) in entries {
                        pending.entry((day, domain)).or_default().merge(aggregate);
                    }
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        if let Some(&newest) = compacted.keys().max() {
            let oldest = days_before(newest, KEEP_DAYS);
            compacted.retain(|day, _| *day >= oldest);
        }
        result
    }
}

/// Appends `data` to a file, first ending a line a crash left unfinished, and syncs. On an error
/// the file is cut back to its old length (no half-written counts). Returns the new length.
fn append(path: &Path, data: &[u8]) -> io::Result<u64> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut buffer = Vec::with_capacity(data.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            buffer.push(b'\n');
        }
    }
    buffer.extend_from_slice(data);
    let written = file.write_all(&buffer).and_then(|()| file.sync_data());
    match written {
        Ok(()) => Ok(len + buffer.len() as u64),
        Err(e) => {
            let _ = file.set_len(len);
            Err(e)
        }
    }
}

/// Rewrites a day's journal with one line per domain and policy. Returns the new length.
fn compact(dir: &Path, day: Date) -> io::Result<u64> {
    let days = load_day(dir, day)?;
    let mut data = Vec::new();
    for (domain, aggregate) in &days {
        for (policy, counts) in &aggregate.policies {
            let line = JournalLine {
                policy: policy_json(domain, policy),
                successful: counts.successful,
                failed: counts.failed,
                failure_details: details_json(counts),
            };
            serde_json::to_writer(&mut data, &line).map_err(io::Error::other)?;
            data.push(b'\n');
        }
    }
    let path = journal_path(dir, day);
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&data)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(data.len() as u64)
}

/// The counts of one day's journal, per domain. Lines that do not parse (a line cut by a crash)
/// are skipped with a warning; a missing journal is an empty day.
pub fn load_day(dir: &Path, day: Date) -> io::Result<BTreeMap<String, Aggregate>> {
    let path = journal_path(dir, day);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut out: BTreeMap<String, Aggregate> = BTreeMap::new();
    let mut line = Vec::new();
    let mut skipped = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<JournalLine>(text)
            .ok()
            .and_then(from_journal)
        {
            Some((domain, policy, counts)) => {
                out.entry(domain).or_default().add_counts(
                    policy,
                    counts.successful,
                    counts.failed,
                    counts.failure_details,
                );
            }
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        warn!(
            journal = %path.display(),
            "TLS-RPT: skipped {skipped} unreadable journal line(s)"
        );
    }
    Ok(out)
}

/// The days that have a journal in `dir`, oldest first.
fn journal_days(dir: &Path) -> io::Result<Vec<Date>> {
    let mut days = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(days),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(day) = name.strip_suffix(".jsonl").and_then(parse_day) {
            days.push(day);
        }
    }
    days.sort();
    Ok(days)
}

/// The domains whose report of `day` was sent.
fn sent_domains(dir: &Path, day: Date) -> io::Result<BTreeSet<String>> {
    match fs::read(sent_path(dir, day)) {
        Ok(data) => Ok(String::from_utf8_lossy(&data)
            .lines()
            .map(normalize_domain)
            .filter(|d| !d.is_empty())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

/// The reports to send: for each complete day before `today` (at most [`DUE_WINDOW_DAYS`]
/// back), each domain with counted sessions whose report was not marked sent, with its counts.
/// Oldest day first, domains in order. Call [`Recorder::flush`] first (or use
/// [`Recorder::due_reports`]) so the last seconds of the day are in the journal.
pub fn due_reports(dir: &Path, today: Date) -> io::Result<Vec<(Date, String, Aggregate)>> {
    let oldest = days_before(today, DUE_WINDOW_DAYS);
    let mut out = Vec::new();
    for day in journal_days(dir)? {
        if day < oldest || day >= today {
            continue;
        }
        let sent = sent_domains(dir, day)?;
        for (domain, aggregate) in load_day(dir, day)? {
            if !sent.contains(&domain) && !aggregate.is_empty() {
                out.push((day, domain, aggregate));
            }
        }
    }
    Ok(out)
}

/// Records that the report of `domain` for `day` was sent (or must not be: no TLSRPT record),
/// so [`due_reports`] does not return it again. Appended to `<day>.sent` and synced.
pub fn mark_sent(dir: &Path, day: Date, domain: &str) -> io::Result<()> {
    let domain = normalize_domain(domain);
    if domain.is_empty() || domain.contains(['\n', '\r']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid domain {domain:?}"),
        ));
    }
    fs::create_dir_all(dir)?;
    append(&sent_path(dir, day), format!("{domain}\n").as_bytes()).map(|_| ())
}

/// Removes journals and sent lists of days before `today - keep_days`. Returns how many files
/// were removed. Files with other names are left alone.
pub fn prune(dir: &Path, today: Date, keep_days: i64) -> io::Result<usize> {
    let oldest = days_before(today, keep_days);
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let day = [".jsonl", ".sent", ".jsonl.tmp"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .and_then(parse_day);
        if let Some(day) = day
            && day < oldest
        {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};
    use serde_json::{Value, json};
    use time::macros::date;

    fn txt(records: &[&str]) -> Result<Option<TlsRptRecord>, RecordError> {
        parse_txt(&records.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn mailto(a: &str) -> Rua {
        Rua::Mailto(a.into())
    }

    #[test]
    fn txt_record_names() {
        assert_eq!(txt_name("Example.COM."), "_smtp._tls.example.com");
    }

    #[test]
    fn txt_valid_records() {
        let r = txt(&["v=TLSRPTv1; rua=mailto:reports@example.com"])
            .unwrap()
            .unwrap();
        assert_eq!(r.rua, vec![mailto("reports@example.com")]);
        assert!(r.ignored.is_empty());

        // Several URIs, both schemes, spaces around the separators, a trailing ";", an
        // extension field, other TXT records beside it.
        let r = txt(&[
            "v=spf1 -all",
            "v=TLSRPTv1 ;rua=mailto:a@example.com , https://reports.example.net/tlsrpt?x=1,MAILTO:b@example.org ; ext=foo;",
            "v=STSv1; id=1",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            r.rua,
            vec![
                mailto("a@example.com"),
                Rua::Https("https://reports.example.net/tlsrpt?x=1".into()),
                mailto("b@example.org"),
            ]
        );
        assert_eq!(r.mailto(), vec!["a@example.com", "b@example.org"]);
        assert_eq!(r.https(), vec!["https://reports.example.net/tlsrpt?x=1"]);

        // Unknown schemes and broken URIs are skipped while a usable one remains.
        let r = txt(&[
            "v=TLSRPTv1; rua=http://x.example/,mailto:no-at-sign,mailto:ok@example.com,ftp://y",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.rua, vec![mailto("ok@example.com")]);
        assert_eq!(
            r.ignored,
            vec!["http://x.example/", "mailto:no-at-sign", "ftp://y"]
        );

        // Duplicates collapse.
        let r = txt(&["v=TLSRPTv1; rua=mailto:a@example.com,mailto:a@example.com"])
            .unwrap()
            .unwrap();
        assert_eq!(r.rua, vec![mailto("a@example.com")]);
    }

    #[test]
    fn txt_percent_encoding() {
        // RFC 8460 3: commas and exclamation points in a URI must be encoded; RFC 6068: the
        // address is percent-decoded, an encoded comma separates addresses, hfields are dropped.
        let r = txt(&[
            "v=TLSRPTv1; rua=mailto:tls%2Breports@example.com?subject=TLS%20report,mailto:x%21y@example.net,mailto:one@example.com%2Ctwo@example.com",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            r.rua,
            vec![
                mailto("tls+reports@example.com"),
                mailto("x!y@example.net"),
                mailto("one@example.com"),
                mailto("two@example.com"),
            ]
        );
        // UTF-8 (an internationalised address) decodes; a broken escape does not.
        let r = txt(&["v=TLSRPTv1; rua=mailto:j%C3%B6rg@example.com,mailto:bad%2@example.com"])
            .unwrap()
            .unwrap();
        assert_eq!(r.rua, vec![mailto("jörg@example.com")]);
        assert_eq!(r.ignored, vec!["mailto:bad%2@example.com"]);
        // An encoded space or angle bracket cannot sneak into RCPT TO.
        assert!(
            txt(&["v=TLSRPTv1; rua=mailto:a%20b@example.com,mailto:a%3E@example.com"]).is_err()
        );
    }

    #[test]
    fn txt_not_exactly_one_record() {
        assert_eq!(txt(&[]), Ok(None));
        assert_eq!(txt(&["v=spf1 -all", "hello"]), Ok(None));
        // Wrong versions are other records.
        assert_eq!(txt(&["v=TLSRPTv2; rua=mailto:a@example.com"]), Ok(None));
        assert_eq!(txt(&["v=TLSRPTv10; rua=mailto:a@example.com"]), Ok(None));
        assert_eq!(txt(&["v=tlsrptv1; rua=mailto:a@example.com"]), Ok(None));
        assert_eq!(txt(&["rua=mailto:a@example.com; v=TLSRPTv1"]), Ok(None));
        // Two records: none applies.
        assert_eq!(
            txt(&[
                "v=TLSRPTv1; rua=mailto:a@example.com",
                "v=TLSRPTv1; rua=mailto:b@example.com"
            ]),
            Err(RecordError::SeveralRecords)
        );
        // One v=TLSRPTv1 record and one of another version: the one applies.
        assert!(
            txt(&[
                "v=TLSRPTv1; rua=mailto:a@example.com",
                "v=TLSRPTv2; rua=mailto:b@example.com"
            ])
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn txt_invalid_records() {
        for bad in [
            "v=TLSRPTv1",
            "v=TLSRPTv1;",
            "v=TLSRPTv1; ext=1",
            "v=TLSRPTv1; rua=",
            "v=TLSRPTv1; rua=mailto:a@example.com; junk",
            "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com",
            "v=TLSRPTv1; rua=http://insecure.example/",
            "v=TLSRPTv1; rua=https:relative",
            "v=TLSRPTv1; rua=https://user@host.example/",
        ] {
            assert!(
                matches!(txt(&[bad]), Err(RecordError::BadRecord(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn txt_caps_the_number_of_uris() {
        let list: Vec<String> = (0..15)
            .map(|i| format!("mailto:r{i}@example.com"))
            .collect();
        let r = txt(&[&format!("v=TLSRPTv1; rua={}", list.join(","))])
            .unwrap()
            .unwrap();
        assert_eq!(r.rua.len(), MAX_RUA);
        assert_eq!(r.ignored.len(), 5);
    }

    fn sts_policy() -> PolicyDesc {
        PolicyDesc::sts(&mta_sts::Policy {
            mode: mta_sts::Mode::Testing,
            mx: vec!["*.mail.company-y.example".into()],
            max_age: 86400,
        })
    }

    fn failure(result_type: FailureType, mx: &str) -> FailureDetail {
        FailureDetail {
            receiving_mx_hostname: Some(mx.into()),
            ..FailureDetail::new(result_type)
        }
    }

    fn event(domain: &str, day: Date, policy: PolicyDesc, result: SessionResult) -> SessionEvent {
        SessionEvent {
            policy_domain: domain.into(),
            policy,
            day,
            result,
        }
    }

    fn quiet(dir: &Path) -> Recorder {
        Recorder::open_with(
            dir,
            RecorderOptions {
                flush_interval: None,
                compact_threshold: DEFAULT_COMPACT_THRESHOLD,
            },
        )
        .unwrap()
    }

    #[test]
    fn policy_descriptions() {
        assert_eq!(
            sts_policy().policy_strings,
            vec![
                "version: STSv1",
                "mode: testing",
                "mx: *.mail.company-y.example",
                "max_age: 86400"
            ]
        );
        assert_eq!(sts_policy().mx_hosts, vec!["*.mail.company-y.example"]);
        let tlsa = PolicyDesc::tlsa(
            &[Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![0x0a, 0xbc, 0xff],
            }],
            "MX1.Example.NET.",
        );
        assert_eq!(tlsa.policy_type, PolicyType::Tlsa);
        assert_eq!(tlsa.policy_strings, vec!["3 1 1 0ABCFF"]);
        assert_eq!(tlsa.mx_hosts, vec!["mx1.example.net"]);
    }

    #[test]
    fn failure_types() {
        let names: Vec<&str> = FailureType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "starttls-not-supported",
                "certificate-host-mismatch",
                "certificate-expired",
                "certificate-not-trusted",
                "validation-failure",
                "tlsa-invalid",
                "dnssec-invalid",
                "dane-required",
                "sts-policy-fetch-error",
                "sts-policy-invalid",
                "sts-webpki-invalid",
            ]
        );
        // serde uses the same names.
        for t in FailureType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        assert_eq!(
            FailureType::from(ResultType::StsWebpkiInvalid),
            FailureType::StsWebpkiInvalid
        );
        assert_eq!(
            FailureType::from(ResultType::StsPolicyFetchError).as_str(),
            "sts-policy-fetch-error"
        );
        assert_eq!(
            FailureType::from(ResultType::StsPolicyInvalid),
            FailureType::StsPolicyInvalid
        );

        use rustls::CertificateError as C;
        let cert = |e: C| FailureType::classify_tls_error(&rustls::Error::InvalidCertificate(e));
        assert_eq!(
            cert(C::NotValidForName),
            (FailureType::CertificateHostMismatch, "not-valid-for-name")
        );
        assert_eq!(cert(C::Expired).0, FailureType::CertificateExpired);
        assert_eq!(
            cert(C::UnknownIssuer),
            (FailureType::CertificateNotTrusted, "unknown-issuer")
        );
        assert_eq!(cert(C::BadSignature).0, FailureType::CertificateNotTrusted);
        let dane = C::Other(rustls::OtherError(Arc::new(
            crate::dane_verify::DaneFailure("no match".into()),
        )));
        assert_eq!(
            cert(dane),
            (FailureType::ValidationFailure, "dane-no-match")
        );
        let other = C::Other(rustls::OtherError(Arc::new(io::Error::other("x"))));
        assert_eq!(
            cert(other),
            (FailureType::ValidationFailure, "certificate-rejected")
        );
        assert_eq!(
            FailureType::classify_tls_error(&rustls::Error::NoCertificatesPresented).0,
            FailureType::ValidationFailure
        );
        assert_eq!(
            FailureType::classify_tls_error(&rustls::Error::HandshakeNotComplete),
            (FailureType::ValidationFailure, "handshake-failed")
        );
    }

    #[test]
    fn aggregation_per_domain_day_policy_and_detail() {
        let dir = tempfile::tempdir().unwrap();
        let rec = quiet(dir.path());
        let day = date!(2024 - 05 - 01);
        for _ in 0..3 {
            rec.record(event(
                "Example.COM.",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
        }
        for _ in 0..2 {
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Failure(failure(FailureType::CertificateExpired, "MX1.example.com")),
            ));
        }
        rec.record(event(
            "example.com",
            day,
            sts_policy(),
            SessionResult::Failure(failure(
                FailureType::StarttlsNotSupported,
                "mx2.example.com",
            )),
        ));
        rec.record(event(
            "example.com",
            day,
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
        rec.record(event(
            "other.example",
            day,
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
        rec.record(event(
            "example.com",
            date!(2024 - 05 - 02),
            sts_policy(),
            SessionResult::Success,
        ));
        rec.record(event("", day, sts_policy(), SessionResult::Success));
        rec.flush().unwrap();

        let loaded = load_day(dir.path(), day).unwrap();
        assert_eq!(
            loaded.keys().collect::<Vec<_>>(),
            ["example.com", "other.example"]
        );
        let agg = &loaded["example.com"];
        assert_eq!(agg.policies.len(), 2);
        let sts = &agg.policies[&sts_policy()];
        assert_eq!((sts.successful, sts.failed), (3, 3));
        assert_eq!(
            sts.failure_details[&failure(FailureType::CertificateExpired, "mx1.example.com")],
            2
        );
        assert_eq!(
            sts.failure_details[&failure(FailureType::StarttlsNotSupported, "mx2.example.com")],
            1
        );
        assert_eq!(agg.policies[&PolicyDesc::no_policy_found()].successful, 1);
        assert_eq!((agg.total_successful(), agg.total_failed()), (4, 3));
        assert_eq!(
            load_day(dir.path(), date!(2024 - 05 - 02)).unwrap()["example.com"].total_successful(),
            1
        );
    }

    #[test]
    fn counts_survive_a_restart_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let day = date!(2024 - 05 - 01);
        {
            let rec = quiet(dir.path());
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
            rec.flush().unwrap();
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
            // Dropping the last handle flushes too.
        }
        // A crash in the middle of an append: the last line is cut.
        let path = journal_path(dir.path(), day);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"policy\":{\"policy-type\":\"sts\",\"polic")
            .unwrap();
        drop(file);
        assert_eq!(
            load_day(dir.path(), day).unwrap()["example.com"].total_successful(),
            2
        );

        // After the restart, new counts start on a new line and nothing is lost.
        let rec = quiet(dir.path());
        rec.record(event(
            "example.com",
            day,
            sts_policy(),
            SessionResult::Failure(failure(
                FailureType::CertificateNotTrusted,
                "mx.example.com",
            )),
        ));
        rec.flush().unwrap();
        let agg = &load_day(dir.path(), day).unwrap()["example.com"];
        assert_eq!((agg.total_successful(), agg.total_failed()), (2, 1));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        // Garbage and blank lines in the middle are skipped as well.
        fs::write(&path, format!("\n\u{0}\u{1}garbage\n{text}")).unwrap();
        let agg = &load_day(dir.path(), day).unwrap()["example.com"];
        assert_eq!((agg.total_successful(), agg.total_failed()), (2, 1));
    }

    #[test]
    fn background_flush_and_concurrent_recording() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open_with(
            dir.path(),
            RecorderOptions {
                flush_interval: Some(Duration::from_millis(20)),
                compact_threshold: DEFAULT_COMPACT_THRESHOLD,
            },
        )
        .unwrap();
        let day = date!(2024 - 05 - 01);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        let result = if i % 5 == 0 {
                            SessionResult::Failure(failure(
                                FailureType::ValidationFailure,
                                &format!("mx{t}.example.com"),
                            ))
                        } else {
                            SessionResult::Success
                        };
                        rec.record(event("example.com", day, sts_policy(), result));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The background thread writes without being asked.
        let mut waited = 0;
        loop {
            let loaded = load_day(dir.path(), day).unwrap();
            let total = loaded
                .get("example.com")
                .map_or(0, |a| a.total_successful() + a.total_failed());
            if total == 1000 {
                let agg = &loaded["example.com"];
                assert_eq!(agg.total_failed(), 200);
                assert_eq!(agg.policies[&sts_policy()].failure_details.len(), 4);
                break;
            }
            waited += 1;
            assert!(
                waited < 500,
                "background flush did not write everything: {total}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn journal_compaction_keeps_counts() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open_with(
            dir.path(),
            RecorderOptions {
                flush_interval: None,
                compact_threshold: 2_000,
            },
        )
        .unwrap();
        let day = date!(2024 - 05 - 01);
        for i in 0..100 {
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
            if i % 3 == 0 {
                rec.record(event(
                    "example.org",
                    day,
                    PolicyDesc::no_policy_found(),
                    SessionResult::Failure(failure(
                        FailureType::StarttlsNotSupported,
                        "mx.example.org",
                    )),
                ));
            }
            rec.flush().unwrap();
        }
        let path = journal_path(dir.path(), day);
        assert!(fs::metadata(&path).unwrap().len() < 4_500);
        let loaded = load_day(dir.path(), day).unwrap();
        assert_eq!(loaded["example.com"].total_successful(), 100);
        assert_eq!(loaded["example.org"].total_failed(), 34);
        assert!(!dir.path().join("2024-05-01.jsonl.tmp").exists());
    }

    #[test]
    fn caps_on_policies_and_failure_details() {
        let mut agg = Aggregate::default();
        for i in 0..MAX_FAILURE_DETAILS + 10 {
            agg.add(
                sts_policy(),
                SessionResult::Failure(failure(
                    FailureType::ValidationFailure,
                    &format!("mx{i}.example.com"),
                )),
            );
        }
        let counts = &agg.policies[&sts_policy()];
        assert_eq!(counts.failure_details.len(), MAX_FAILURE_DETAILS);
        assert_eq!(counts.failed, (MAX_FAILURE_DETAILS + 10) as u64);
        for i in 0..MAX_POLICIES + 5 {
            let mut p = PolicyDesc::no_policy_found();
            p.mx_hosts = vec![format!("mx{i}")];
            agg.add(p, SessionResult::Success);
        }
        assert_eq!(agg.policies.len(), MAX_POLICIES);
    }

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

    #[test]
    fn report_json_of_a_small_aggregate() {
        let dir = tempfile::tempdir().unwrap();
        let rec = quiet(dir.path());
        let day = date!(2024 - 02 - 29);
        rec.record(event(
            "Example.NET",
            day,
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
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
        rec.flush().unwrap();
        let agg = &load_day(dir.path(), day).unwrap()["example.net"];
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

    #[test]
    fn due_reports_mark_sent_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let rec = quiet(dir.path());
        let today = date!(2024 - 05 - 10);
        for (day, domain) in [
            (date!(2024 - 05 - 01), "old.example"),
            (date!(2024 - 05 - 07), "beyond-window.example"),
            (date!(2024 - 05 - 08), "a.example"),
            (date!(2024 - 05 - 09), "b.example"),
            (date!(2024 - 05 - 09), "a.example"),
            (today, "today.example"),
        ] {
            rec.record(event(
                domain,
                day,
                PolicyDesc::no_policy_found(),
                SessionResult::Success,
            ));
        }
        let due = rec.due_reports(today).unwrap();
        let keys: Vec<(Date, &str)> = due.iter().map(|(d, n, _)| (*d, n.as_str())).collect();
        assert_eq!(
            keys,
            [
                (date!(2024 - 05 - 08), "a.example"),
                (date!(2024 - 05 - 09), "a.example"),
                (date!(2024 - 05 - 09), "b.example"),
            ]
        );
        assert_eq!(due[0].2.total_successful(), 1);

        rec.mark_sent(date!(2024 - 05 - 09), "A.Example.").unwrap();
        mark_sent(dir.path(), date!(2024 - 05 - 08), "a.example").unwrap();
        assert!(mark_sent(dir.path(), today, "").is_err());
        let due = due_reports(dir.path(), today).unwrap();
        let keys: Vec<(Date, &str)> = due.iter().map(|(d, n, _)| (*d, n.as_str())).collect();
        assert_eq!(keys, [(date!(2024 - 05 - 09), "b.example")]);

        // A torn sent list (crash while marking) still ends its line before the next domain.
        let sent = sent_path(dir.path(), date!(2024 - 05 - 09));
        let mut f = OpenOptions::new().append(true).open(&sent).unwrap();
        f.write_all(b"half.exa").unwrap();
        drop(f);
        mark_sent(dir.path(), date!(2024 - 05 - 09), "b.example").unwrap();
        assert!(due_reports(dir.path(), today).unwrap().is_empty());
        // Counts recorded for a sent day later do not bring the report back.
        rec.record(event(
            "b.example",
            date!(2024 - 05 - 09),
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
        assert!(rec.due_reports(today).unwrap().is_empty());
        // The next day, today's report is due.
        let tomorrow = date!(2024 - 05 - 11);
        let due = rec.due_reports(tomorrow).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0, due[0].1.as_str()), (today, "today.example"));

        // Prune: older than 7 days before the 10th (the 1st) goes; unknown files stay.
        fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        fs::write(dir.path().join("2024-05-02.sent"), "x.example\n").unwrap();
        assert_eq!(rec.prune(today).unwrap(), 2);
        assert!(!journal_path(dir.path(), date!(2024 - 05 - 01)).exists());
        assert!(journal_path(dir.path(), date!(2024 - 05 - 07)).exists());
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(prune(dir.path(), date!(2024 - 06 - 01), 0).unwrap(), 6);
        assert!(
            due_reports(dir.path(), date!(2024 - 06 - 01))
                .unwrap()
                .is_empty()
        );
        assert!(
            due_reports(&dir.path().join("missing"), today)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn days() {
        assert_eq!(utc_day(0), date!(1970 - 01 - 01));
        assert_eq!(utc_day(1_714_607_999), date!(2024 - 05 - 01));
        assert_eq!(utc_day(1_714_608_000), date!(2024 - 05 - 02));
        assert_eq!(day_text(date!(2024 - 01 - 02)), "2024-01-02");
        assert_eq!(parse_day("2024-01-02"), Some(date!(2024 - 01 - 02)));
        for bad in ["2024-1-02", "2024-02-30", "x", "2024-01-02-03", "20240102"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
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
