//! RFC 9208 QUOTA as hato serves it: one quota root per account, one resource (STORAGE).
//!
//! * **One root, named `""`.** Every mailbox of an account shares the account's storage
//!   limit (`[limits] quota_bytes`), so there is exactly one quota root (RFC 9208 §3.2: a
//!   root name is an opaque astring, with no defined relation to mailbox names). We call it
//!   `""` rather than Dovecot's `"User quota"`: the empty root is what the original QUOTA
//!   specification's examples use for "the user's whole account" (RFC 2087 §4.1–§4.3:
//!   `* QUOTAROOT INBOX ""`, `* QUOTA "" (STORAGE 10 512)`), mox does the same, an empty
//!   name can never be mistaken for a mailbox (mailbox names are never empty), and it
//!   carries no English label into the protocol (clients such as Thunderbird show the root
//!   name next to the usage). Clients must treat the name as opaque (§3.2).
//! * **STORAGE only** (RFC 9208 §5.1, `QUOTA=RES-STORAGE`): usage and limit in units of
//!   1024 octets. Each supported resource is announced as `QUOTA=RES-<name>` (§3.1.1);
//!   hato has no message-count limit, so `QUOTA=RES-MESSAGE` is not. Supporting STORAGE
//!   obliges the server to support STATUS `DELETED-STORAGE` (§4.1.4, §5.1), which the
//!   parser accepts (with or without a quota) and the driver answers.
//! * **Only with a limit.** The capabilities are announced only when the session is
//!   configured with [`crate::session::Config::quota_bytes`]. Without a limit there is
//!   nothing true to say: a QUOTA response needs at least one resource (RFC 9208 formal
//!   syntax: `quota-list = "(" quota-resource *(SP quota-resource) ")"`), so GETQUOTA could
//!   only fail, and a QUOTAROOT naming a root without limits would just make clients show
//!   an empty quota. The QUOTA commands are then answered `BAD` like any command of an
//!   extension that is not offered.
//! * **SETQUOTA** (§4.1.3) is parsed in full but never executed: users may not change their
//!   own limit, and the server does not announce `QUOTASET` (which §4.1.3 requires of a
//!   server that implements it). A well-formed SETQUOTA is answered `NO [NOPERM]` (RFC 5530
//!   §3: "the access control system does not permit this user to carry out an operation")
//!   by the session itself; a malformed one `BAD`.
//! * GETQUOTA of any root but `""` is answered `NO [NONEXISTENT]` by the session (§4.1.1:
//!   "NO - getquota error: no such quota root"); GETQUOTA `""` and GETQUOTAROOT go to the
//!   driver, which needs the account's usage from the store: [`quota_data`] and
//!   [`quota_root_data`] build the untagged responses (§4.2.1, §4.2.2).
//! * A command refused because of the quota (APPEND, COPY) is answered
//!   `NO [OVERQUOTA]` (§4.3.1, RFC 5530 §3): [`crate::response::Code::OverQuota`],
//!   [`crate::session::Outcome::over_quota`].

use crate::response::{Data, QuotaResource, Response};

/// The name of the one quota root of an account (see the module documentation).
pub const ROOT: &str = "";

/// The capabilities announced when a quota is configured (RFC 9208 §1, §3.1.1).
pub const CAPABILITIES: [&str; 2] = ["QUOTA", "QUOTA=RES-STORAGE"];

/// Largest `number64` (RFC 9051 §9).
const NUMBER64_MAX: u64 = i64::MAX as u64;

/// Usage in units of 1024 octets, rounded up: a non-empty account never shows 0 and usage
/// is never under-reported.
pub fn usage_kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024).min(NUMBER64_MAX)
}

/// A limit in units of 1024 octets, rounded down: a client is never promised more room
/// than the server grants.
pub fn limit_kib(bytes: u64) -> u64 {
    (bytes / 1024).min(NUMBER64_MAX)
}

/// The STORAGE resource (RFC 9208 §5.1) of an account using `used_bytes` (the sum of its
/// messages' RFC822.SIZE) under a limit of `limit_bytes`.
pub fn storage(used_bytes: u64, limit_bytes: u64) -> QuotaResource {
    QuotaResource {
        name: "STORAGE".to_string(),
        usage: usage_kib(used_bytes),
        limit: limit_kib(limit_bytes),
    }
}

/// `* QUOTA "" (STORAGE <used KiB> <limit KiB>)`: the answer to `GETQUOTA ""`
/// (RFC 9208 §4.1.1, §4.2.1).
pub fn quota_data(used_bytes: u64, limit_bytes: u64) -> Response {
    Response::Data(Data::Quota {
        root: ROOT.to_string(),
        resources: vec![storage(used_bytes, limit_bytes)],
    })
}

/// `* QUOTAROOT <mailbox> ""` followed by `* QUOTA "" (STORAGE ...)`: the answer to
/// `GETQUOTAROOT <mailbox>` for an existing mailbox (RFC 9208 §4.1.2, §4.2.2). The
/// mailbox name is the decoded name from the command; the encoder writes it in modified
/// UTF-7 or UTF-8 as the client expects.
pub fn quota_root_data(mailbox: &str, used_bytes: u64, limit_bytes: u64) -> Vec<Response> {
    vec![
        Response::Data(Data::QuotaRoot {
            mailbox: mailbox.to_string(),
            roots: vec![ROOT.to_string()],
        }),
        quota_data(used_bytes, limit_bytes),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::EncodeOptions;

    fn enc(r: &Response, utf8: bool) -> String {
        String::from_utf8(r.to_bytes(EncodeOptions { utf8 })).unwrap()
    }

    #[test]
    fn kib_rounding() {
        assert_eq!((usage_kib(0), limit_kib(0)), (0, 0));
        assert_eq!((usage_kib(1), limit_kib(1)), (1, 0));
        assert_eq!((usage_kib(1024), limit_kib(1024)), (1, 1));
        assert_eq!((usage_kib(1025), limit_kib(2047)), (2, 1));
        assert_eq!(usage_kib(u64::MAX), u64::MAX.div_ceil(1024));
        assert!(limit_kib(u64::MAX) <= NUMBER64_MAX);
    }

    #[test]
    fn responses() {
        let mib = 1024 * 1024;
        assert_eq!(
            enc(&quota_data(10 * 1024 + 1, 100 * mib), false),
            "* QUOTA \"\" (STORAGE 11 102400)\r\n"
        );
        let r = quota_root_data("INBOX", 0, mib);
        let wire: String = r.iter().map(|r| enc(r, false)).collect();
        assert_eq!(
            wire,
            "* QUOTAROOT \"INBOX\" \"\"\r\n* QUOTA \"\" (STORAGE 0 1024)\r\n"
        );
        // The mailbox name follows the client's encoding.
        let r = &quota_root_data("Entwürfe", 0, mib)[0];
        assert_eq!(enc(r, false), "* QUOTAROOT \"Entw&APw-rfe\" \"\"\r\n");
        assert_eq!(enc(r, true), "* QUOTAROOT \"Entwürfe\" \"\"\r\n");
    }
}
