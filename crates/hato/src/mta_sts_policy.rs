//! The MTA-STS policy hato publishes for its local domains (RFC 8461 3.2): the model, its
//! checks, the policy text and its id. Served by the `https` listener, printed by `hato dns`,
//! read from `[mta_sts]` by the configuration.

/// `[mta_sts] max_age` by default: one week.
pub const DEFAULT_MAX_AGE: u64 = 604_800;
/// The largest `max_age` RFC 8461 3.2 allows (about a year).
pub const MAX_MAX_AGE: u64 = 31_557_600;
/// `mode` of the policy (RFC 8461 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StsMode {
    /// Senders deliver only to a matching MX host over TLS with a valid certificate.
    Enforce,
    /// Senders deliver anyway and report failures (TLS-RPT). The default: start here.
    #[default]
    Testing,
    /// The policy is withdrawn (publish this for `max_age` before removing the records).
    None,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StsMode::Enforce => "enforce",
            StsMode::Testing => "testing",
            StsMode::None => "none",
        }
    }
}

/// The MTA-STS policy of the local domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsPolicy {
    pub mode: StsMode,
    /// MX host names senders may deliver to; `*.example.com` matches one more label.
    pub mx: Vec<String>,
    /// Seconds senders may cache the policy.
    pub max_age: u64,
}

impl StsPolicy {
    /// Checks what the policy file cannot express: the `mx` patterns must be host names (or
    /// `*.` and a host name), at least one unless the mode is `none`; `max_age` at most
    /// [`MAX_MAX_AGE`]. The error says what is wrong, without the key name.
    pub fn validate(&self) -> Result<(), String> {
        if self.mx.is_empty() && self.mode != StsMode::None {
            return Err(format!(
                "mode {:?} needs at least one mx host (RFC 8461 3.2)",
                self.mode.as_str()
            ));
        }
        for pattern in &self.mx {
            let name = pattern.trim_end_matches('.');
            let host = name.strip_prefix("*.").unwrap_or(name);
            if !hato_wire::domain::is_ldh_name(host) {
                return Err(format!(
                    "{pattern:?} is not an MX host name (e.g. \"mail.example.com\" or \"*.example.com\")"
                ));
            }
        }
        if self.max_age > MAX_MAX_AGE {
            return Err(format!(
                "max_age {} is more than {MAX_MAX_AGE} seconds (RFC 8461 3.2)",
                self.max_age
            ));
        }
        Ok(())
    }

    /// The policy file: `key: value` lines ending in CRLF (RFC 8461 3.2), the `mx` patterns in
    /// lower case without a trailing dot, in the configured order.
    pub fn text(&self) -> String {
        let mut text = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for mx in &self.mx {
            text += &format!("mx: {}\r\n", mx.trim_end_matches('.').to_ascii_lowercase());
        }
        text += &format!("max_age: {}\r\n", self.max_age);
        text
    }

    /// The policy id (RFC 8461 3.1: 1 to 32 letters and digits): the first 20 hexadecimal digits
    /// of the SHA-256 of [`StsPolicy::text`], so it changes whenever the policy does.
    pub fn id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.text().as_bytes());
        let mut id = hex(digest.as_ref());
        id.truncate(20);
        id
    }

    /// The text of the `_mta-sts.<domain>` TXT record.
    pub fn txt_record(&self) -> String {
        format!("v=STSv1; id={}", self.id())
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
