//! What is counted (RFC 8460 4.3, 4.4): the policy a session was held to ([`PolicyDesc`]), how
//! it ended ([`SessionResult`], [`FailureDetail`], [`FailureType`]) and the counts of a domain
//! and day ([`Aggregate`]), with the caps that bound them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::Date;

use super::normalize_domain;
use crate::dane::Tlsa;
use crate::dane_verify::DaneFailure;
use crate::mta_sts;
use crate::mta_sts_fetch::ResultType;

/// Distinct policies kept per domain and day; sessions under further policies are not counted.
pub const MAX_POLICIES: usize = 64;
/// Distinct failure details kept per policy and day; further failures count in the summary only.
pub const MAX_FAILURE_DETAILS: usize = 256;
/// Longest text kept in a policy string, host name, reason code or information field.
const MAX_FIELD: usize = 512;
/// Most policy strings kept per policy (an MTA-STS policy has one per line).
const MAX_POLICY_STRINGS: usize = 128;

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

    pub(super) fn cleaned(mut self) -> PolicyDesc {
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

    pub(super) fn cleaned(mut self) -> FailureDetail {
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
    ///
    /// [`utc_day`]: super::utc_day
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

    /// Adds counts (stored ones read back, or another aggregate).
    pub(super) fn add_counts(
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

/// A report or stored field: controls become spaces, at most [`MAX_FIELD`] bytes.
pub(super) fn clean_field(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(&mut out, MAX_FIELD);
    out.trim().to_owned()
}

pub(super) fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::tlsrpt::test_support::{failure, sts_policy};

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
}
