//! The JSON of reports (RFC 8460 4.4) and of the keys under which the recorder stores counts:
//! the serde shapes, built from and read back into the types of [`model`](super::model).

use serde::{Deserialize, Serialize};

use super::model::{FailureDetail, FailureType, PolicyCounts, PolicyDesc, PolicyType};
use super::normalize_domain;

// Field names are those of RFC 8460 4.4 in kebab case, unless renamed; the order of the fields
// is the RFC's, and the order in which they are written.

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct ReportJson {
    pub(super) organization_name: String,
    pub(super) date_range: DateRangeJson,
    pub(super) contact_info: String,
    pub(super) report_id: String,
    pub(super) policies: Vec<PolicyResultJson>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct DateRangeJson {
    #[serde(rename = "start-datetime")]
    pub(super) start: String,
    #[serde(rename = "end-datetime")]
    pub(super) end: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct PolicyResultJson {
    pub(super) policy: PolicyJson,
    pub(super) summary: SummaryJson,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) failure_details: Vec<FailureDetailJson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct PolicyJson {
    policy_type: PolicyType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    policy_string: Vec<String>,
    policy_domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mx_host: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SummaryJson {
    #[serde(rename = "total-successful-session-count")]
    pub(super) successful: u64,
    #[serde(rename = "total-failure-session-count")]
    pub(super) failed: u64,
}

/// A failure detail (RFC 8460 4.4). In a report it carries its `failed-session-count`; without
/// it, it is the `result` under which the recorder stores the count of failed sessions with this
/// detail (the count is never read back from a key). Absent optional fields are left out.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct FailureDetailJson {
    result_type: FailureType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiving_mx_helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receiving_ip: Option<String>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    failed_session_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    additional_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_reason_code: Option<String>,
}

pub(super) fn policy_json(domain: &str, policy: &PolicyDesc) -> PolicyJson {
    PolicyJson {
        policy_type: policy.policy_type,
        policy_string: policy.policy_strings.clone(),
        policy_domain: domain.to_owned(),
        mx_host: policy.mx_hosts.clone(),
    }
}

/// `detail` with `failed_session_count` (None: as a stored key).
fn detail_json(detail: &FailureDetail, failed_session_count: Option<u64>) -> FailureDetailJson {
    FailureDetailJson {
        result_type: detail.result_type,
        sending_mta_ip: detail.sending_mta_ip.map(|ip| ip.to_string()),
        receiving_mx_hostname: detail.receiving_mx_hostname.clone(),
        receiving_mx_helo: detail.receiving_mx_helo.clone(),
        receiving_ip: detail.receiving_ip.map(|ip| ip.to_string()),
        failed_session_count,
        additional_information: detail.additional_information.clone(),
        failure_reason_code: detail.failure_reason_code.clone(),
    }
}

pub(super) fn details_json(counts: &PolicyCounts) -> Vec<FailureDetailJson> {
    counts
        .failure_details
        .iter()
        .map(|(detail, &n)| detail_json(detail, Some(n)))
        .collect()
}

/// The stored key of a policy: its report JSON (with the policy domain).
pub(super) fn policy_key(domain: &str, policy: &PolicyDesc) -> String {
    serde_json::to_string(&policy_json(domain, policy)).unwrap_or_default()
}

/// The stored key of a failure detail.
pub(super) fn detail_key(detail: &FailureDetail) -> String {
    serde_json::to_string(&detail_json(detail, None)).unwrap_or_default()
}

/// A stored policy key back into a policy; None if it does not parse or has no domain.
pub(super) fn policy_from_key(key: &str) -> Option<PolicyDesc> {
    let policy: PolicyJson = serde_json::from_str(key).ok()?;
    if normalize_domain(&policy.policy_domain).is_empty() {
        return None;
    }
    Some(
        PolicyDesc {
            policy_type: policy.policy_type,
            policy_strings: policy.policy_string,
            mx_hosts: policy.mx_host,
        }
        .cleaned(),
    )
}

/// A stored detail key back into a failure detail; None if it does not parse.
pub(super) fn detail_from_key(key: &str) -> Option<FailureDetail> {
    let d: FailureDetailJson = serde_json::from_str(key).ok()?;
    Some(
        FailureDetail {
            result_type: d.result_type,
            sending_mta_ip: d.sending_mta_ip.and_then(|ip| ip.parse().ok()),
            receiving_mx_hostname: d.receiving_mx_hostname,
            receiving_mx_helo: d.receiving_mx_helo,
            receiving_ip: d.receiving_ip.and_then(|ip| ip.parse().ok()),
            additional_information: d.additional_information,
            failure_reason_code: d.failure_reason_code,
        }
        .cleaned(),
    )
}
