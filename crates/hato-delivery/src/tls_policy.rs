//! Outgoing TLS policy: security levels like Postfix's `smtp_tls_security_level`, per
//! destination in a table with a global minimum, mapped to the SMTP client's
//! [`TlsRequirement`] and to what the driver must verify. DANE follows RFC 7672 (section 2.2
//! for what an unusable or failed TLSA lookup means); REQUIRETLS follows RFC 8689.
//!
//! Downgrade resistance is the point: whenever the result says TLS is required, a server
//! without STARTTLS, a failed handshake or a failed verification means *defer*, never
//! plaintext (the client session enforces the first two; the driver the third).
//!
//! [`TlsFacts`] is what every attempt records (queue `last_tls`, logs, DSNs).

use std::fmt;
use std::str::FromStr;

use hato_smtp::client::TlsRequirement;

/// Security level of a destination (Postfix names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityLevel {
    /// Plaintext only: never STARTTLS.
    None,
    /// Opportunistic TLS: STARTTLS when offered, certificate not checked (the default).
    #[default]
    May,
    /// TLS required, certificate not checked.
    Encrypt,
    /// TLS required, certificate chain valid (WebPKI) and matching the MX host name.
    Verify,
    /// Opportunistic DANE (RFC 7672): with usable DNSSEC-validated TLSA records TLS is required
    /// and authenticated by them; with none (or an insecure zone) as `may`; when the TLSA lookup
    /// fails, defer.
    Dane,
}

impl SecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::None => "none",
            SecurityLevel::May => "may",
            SecurityLevel::Encrypt => "encrypt",
            SecurityLevel::Verify => "verify",
            SecurityLevel::Dane => "dane",
        }
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown level name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS security level {0:?} (none, may, encrypt, verify, dane)")]
pub struct UnknownLevel(pub String);

impl FromStr for SecurityLevel {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(SecurityLevel::None),
            "may" => Ok(SecurityLevel::May),
            "encrypt" => Ok(SecurityLevel::Encrypt),
            "verify" => Ok(SecurityLevel::Verify),
            "dane" => Ok(SecurityLevel::Dane),
            _ => Err(UnknownLevel(s.to_owned())),
        }
    }
}

/// How the server's certificate must be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Not checked (any certificate, also self-signed, is accepted). The driver still records
    /// whether it would have verified.
    None,
    /// WebPKI: a chain to a trusted root, valid now, with a name matching one of these
    /// (the MX host name).
    WebPki { names: Vec<String> },
    /// DANE: the certificate must match one of the usable TLSA records (RFC 7672 3, DANE-EE(3)
    /// and DANE-TA(2)); names are the TLSA base domain's candidates for DANE-TA.
    Dane { names: Vec<String> },
}

/// What the driver must do for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// For [`hato_smtp::client::ClientConfig::tls`].
    pub tls: TlsRequirement,
    pub verification: Verification,
    /// The level that produced this (after the minimum, DANE and REQUIRETLS), for the records.
    pub applied: SecurityLevel,
    /// Why: e.g. `table`, `default`, `minimum`, `requiretls`, `dane: no usable TLSA`.
    pub reason: String,
}

impl Requirements {
    /// Whether a failed verification must defer the delivery (instead of being recorded only).
    pub fn verification_required(&self) -> bool {
        !matches!(self.verification, Verification::None)
    }

    /// Adds the recipient domain's MTA-STS policy (RFC 8461 4, 5) to the requirements of one
    /// connection to `mx_host`:
    ///
    /// * `enforce`: an MX host not matching the policy is not used (`Err`: try the next host,
    ///   defer when none is left); otherwise TLS is required and verified, by DANE when usable
    ///   TLSA records already demand it (RFC 8461 2: MTA-STS must never override a failing
    ///   DANE validation), else by WebPKI for the MX host name. This also holds for a
    ///   destination configured as `none`/`may`/`encrypt`: the policy is the receiving
    ///   domain's demand.
    /// * `testing` and `none`: unchanged; for `testing` the driver checks the outcome with
    ///   [`mta_sts::Policy::check`](crate::mta_sts::Policy::check) and reports failures
    ///   (TLS-RPT) without deferring.
    pub fn with_mta_sts(
        mut self,
        policy: &crate::mta_sts::Policy,
        mx_host: &str,
    ) -> Result<Requirements, String> {
        if policy.mode != crate::mta_sts::Mode::Enforce {
            return Ok(self);
        }
        if !policy.mx_matches(mx_host) {
            return Err(format!(
                "MX host {} does not match the MTA-STS policy (enforce)",
                mx_host.trim_end_matches('.')
            ));
        }
        self.tls = TlsRequirement::Required;
        if !matches!(self.verification, Verification::Dane { .. }) {
            self.verification = Verification::WebPki {
                names: vec![mx_host.trim_end_matches('.').to_ascii_lowercase()],
            };
            self.applied = SecurityLevel::Verify;
        }
        self.reason.push_str(", MTA-STS enforce");
        Ok(self)
    }
}

/// The outcome of the TLSA lookup for `_25._tcp.<mx host>` (RFC 7672 2.2), e.g. from
/// [`crate::dane_lookup::DaneHost::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsaStatus {
    /// DNSSEC-validated TLSA records with at least one usable record.
    Usable,
    /// DNSSEC-validated TLSA records, none of them usable (e.g. only PKIX-TA/PKIX-EE, or an
    /// unknown matching type): the published records still announce STARTTLS support, so TLS
    /// stays mandatory but unauthenticated (RFC 7672 2.2, 3.1.3; Postfix's effective level
    /// `encrypt` for this case).
    Unusable,
    /// No TLSA records (securely denied), or the zone or the host's address records are not
    /// signed (insecure): DANE does not apply.
    NotApplicable,
    /// The lookup failed or the answer was bogus: this host must not be used (try the next MX
    /// host, defer when none is left; never plaintext — the server may well have DANE).
    Failed,
}

/// Per-destination levels, a default and a global minimum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTable {
    /// For destinations without an entry.
    pub default: SecurityLevel,
    /// No destination gets less (e.g. `encrypt` for "never plaintext").
    pub minimum: SecurityLevel,
    /// (pattern, level): `example.com` is that domain only; `.example.com` its subdomains.
    /// The exact match wins, then the longest suffix.
    entries: Vec<(String, SecurityLevel)>,
}

impl Default for PolicyTable {
    fn default() -> PolicyTable {
        PolicyTable {
            default: SecurityLevel::May,
            minimum: SecurityLevel::None,
            entries: Vec::new(),
        }
    }
}

impl PolicyTable {
    pub fn new(default: SecurityLevel, minimum: SecurityLevel) -> PolicyTable {
        PolicyTable {
            default,
            minimum,
            entries: Vec::new(),
        }
    }

    /// Adds (or replaces) an entry.
    pub fn insert(&mut self, pattern: &str, level: SecurityLevel) {
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        self.entries.retain(|(p, _)| *p != pattern);
        self.entries.push((pattern, level));
    }

    /// The configured level of a destination domain and where it came from.
    pub fn level_for(&self, domain: &str) -> (SecurityLevel, &'static str) {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some((_, level)) = self.entries.iter().find(|(p, _)| *p == domain) {
            return (*level, "table");
        }
        let best = self
            .entries
            .iter()
            .filter(|(p, _)| p.starts_with('.') && domain.ends_with(p.as_str()))
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((_, level)) => (*level, "table"),
            None => (self.default, "default"),
        }
    }

    /// Whether DANE (a TLSA lookup) is needed for this destination.
    pub fn wants_dane(&self, domain: &str) -> bool {
        self.level_for(domain).0 == SecurityLevel::Dane || self.minimum == SecurityLevel::Dane
    }

    /// The requirements for one connection to `mx_host` for mail to `domain`. `tlsa` is the
    /// TLSA outcome for that host (None if not looked up; then DANE counts as not applicable).
    /// `requiretls`: the message carries RFC 8689 REQUIRETLS, which demands verified TLS.
    ///
    /// Returns `Err(reason)` when the delivery must be deferred before connecting (a failed
    /// TLSA lookup under DANE).
    pub fn requirements(
        &self,
        domain: &str,
        mx_host: &str,
        tlsa: Option<TlsaStatus>,
        requiretls: bool,
    ) -> Result<Requirements, String> {
        let (level, source) = self.level_for(domain);
        let mut reason = source.to_owned();
        let names = vec![mx_host.trim_end_matches('.').to_ascii_lowercase()];

        // DANE first: usable TLSA records win over every other level (RFC 7672 2.2: they are
        // the strongest statement of the receiving domain), unless the level is `none`.
        let dane_level = level == SecurityLevel::Dane || self.minimum == SecurityLevel::Dane;
        let mut tls_announced = false;
        if dane_level {
            match tlsa.unwrap_or(TlsaStatus::NotApplicable) {
                TlsaStatus::Usable => {
                    return Ok(Requirements {
                        tls: TlsRequirement::Required,
                        verification: Verification::Dane { names },
                        applied: SecurityLevel::Dane,
                        reason: format!("{reason}, dane: usable TLSA"),
                    });
                }
                TlsaStatus::Failed => {
                    return Err(format!(
                        "TLSA lookup for {mx_host} failed; DANE policy ({source}) defers"
                    ));
                }
                TlsaStatus::Unusable => {
                    tls_announced = true;
                    reason.push_str(", dane: TLSA records, none usable");
                }
                TlsaStatus::NotApplicable => reason.push_str(", dane: no usable TLSA"),
            }
        }
        // The effective level without DANE: max(level, minimum), with dane → may.
        let strength = |l: SecurityLevel| match l {
            SecurityLevel::None => 0,
            SecurityLevel::May | SecurityLevel::Dane => 1,
            SecurityLevel::Encrypt => 2,
            SecurityLevel::Verify => 3,
        };
        let mut applied = if level == SecurityLevel::Dane {
            SecurityLevel::May
        } else {
            level
        };
        if strength(self.minimum) > strength(applied) {
            applied = self.minimum;
            if applied == SecurityLevel::Dane {
                applied = SecurityLevel::May;
            }
            reason.push_str(", raised to the minimum");
        }
        if tls_announced && strength(applied) < strength(SecurityLevel::Encrypt) {
            applied = SecurityLevel::Encrypt;
        }
        if requiretls && strength(applied) < strength(SecurityLevel::Verify) {
            applied = SecurityLevel::Verify;
            reason.push_str(", REQUIRETLS");
        }
        let (tls, verification) = match applied {
            SecurityLevel::None => (TlsRequirement::None, Verification::None),
            SecurityLevel::May | SecurityLevel::Dane => {
                (TlsRequirement::Opportunistic, Verification::None)
            }
            SecurityLevel::Encrypt => (TlsRequirement::Required, Verification::None),
            SecurityLevel::Verify => (TlsRequirement::Required, Verification::WebPki { names }),
        };
        Ok(Requirements {
            tls,
            verification,
            applied,
            reason,
        })
    }
}

/// How the server's certificate was verified in an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    WebPki,
    Dane,
    MtaSts,
}

impl VerifiedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedBy::WebPki => "WebPKI",
            VerifiedBy::Dane => "DANE",
            VerifiedBy::MtaSts => "MTA-STS",
        }
    }
}

/// The TLS facts of one delivery attempt: stored in the queue (`last_tls`, as JSON), logged, and
/// shown in DSNs ([`TlsFacts::human`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFacts {
    pub host: String,
    pub ip: Option<std::net::IpAddr>,
    /// e.g. `TLSv1.3`; None: plaintext.
    pub version: Option<String>,
    /// e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    /// None: not verified (or not checked).
    pub verified: Option<VerifiedBy>,
    /// With [`VerifiedBy::Dane`]: the TLSA record that matched, e.g.
    /// `DANE-EE(3) SPKI(1) SHA2-256(1)` ([`crate::dane_verify::DaneVerified`]).
    pub dane: Option<String>,
    /// The applied level.
    pub policy: SecurityLevel,
    /// Verification or handshake failure, if any.
    pub error: Option<String>,
    /// The failure as TLS-RPT classifies it (RFC 8460 4.3) with a reason code, for the
    /// report; not part of the JSON.
    pub report: Option<(crate::tlsrpt::FailureType, String)>,
    /// The MX host's DNSSEC-validated TLSA records, when they were looked up (DANE), for the
    /// report's policy; not part of the JSON.
    pub tlsa: Vec<crate::dane::Tlsa>,
}

impl TlsFacts {
    /// One JSON object (no external serializer needed; all strings escaped).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        let mut field = |key: &str, value: Option<&str>| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&json_string(key));
            out.push(':');
            match value {
                Some(v) => out.push_str(&json_string(v)),
                None => out.push_str("null"),
            }
        };
        field("host", Some(&self.host));
        field("ip", self.ip.map(|ip| ip.to_string()).as_deref());
        field("tls", self.version.as_deref());
        field("cipher", self.cipher.as_deref());
        field("verified", self.verified.map(VerifiedBy::as_str));
        field("dane", self.dane.as_deref());
        field("policy", Some(self.policy.as_str()));
        field("error", self.error.as_deref());
        out.push('}');
        out
    }

    /// One line for humans, e.g. `mx.example.net[192.0.2.1]: TLSv1.3 TLS_AES_256_GCM_SHA384,
    /// verified (WebPKI), policy verify`.
    pub fn human(&self) -> String {
        let mut s = self.host.clone();
        if let Some(ip) = self.ip {
            s.push_str(&format!("[{ip}]"));
        }
        match (&self.version, &self.cipher) {
            (Some(v), Some(c)) => s.push_str(&format!(": {v} {c}")),
            (Some(v), None) => s.push_str(&format!(": {v}")),
            _ => s.push_str(": no TLS (plaintext)"),
        }
        match (self.verified, &self.dane) {
            (Some(by), Some(record)) => {
                s.push_str(&format!(", verified ({}: {record})", by.as_str()))
            }
            (Some(by), None) => s.push_str(&format!(", verified ({})", by.as_str())),
            (None, _) if self.version.is_some() => s.push_str(", not verified"),
            (None, _) => {}
        }
        s.push_str(&format!(", policy {}", self.policy));
        if let Some(e) = &self.error {
            s.push_str(&format!(", {e}"));
        }
        s
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(table: &PolicyTable, domain: &str, tlsa: Option<TlsaStatus>) -> Requirements {
        table
            .requirements(domain, "mx.example.net.", tlsa, false)
            .unwrap()
    }

    #[test]
    fn levels_parse_and_print() {
        for level in [
            SecurityLevel::None,
            SecurityLevel::May,
            SecurityLevel::Encrypt,
            SecurityLevel::Verify,
            SecurityLevel::Dane,
        ] {
            assert_eq!(level.as_str().parse::<SecurityLevel>().unwrap(), level);
        }
        assert_eq!(
            " VERIFY ".parse::<SecurityLevel>().unwrap(),
            SecurityLevel::Verify
        );
        assert!("secure".parse::<SecurityLevel>().is_err());
        assert_eq!(SecurityLevel::default(), SecurityLevel::May);
    }

    #[test]
    fn each_level_maps_to_the_client_requirement() {
        let mut t = PolicyTable::default();
        t.insert("none.example", SecurityLevel::None);
        t.insert("encrypt.example", SecurityLevel::Encrypt);
        t.insert("verify.example", SecurityLevel::Verify);
        let r = req(&t, "other.example", None);
        assert_eq!(
            (r.tls, r.verification, r.applied),
            (
                TlsRequirement::Opportunistic,
                Verification::None,
                SecurityLevel::May
            )
        );
        assert_eq!(r.reason, "default");
        assert_eq!(req(&t, "none.example", None).tls, TlsRequirement::None);
        let r = req(&t, "encrypt.example", None);
        assert_eq!(
            (r.tls, r.verification_required()),
            (TlsRequirement::Required, false)
        );
        let r = req(&t, "verify.example", None);
        assert_eq!(r.tls, TlsRequirement::Required);
        assert_eq!(
            r.verification,
            Verification::WebPki {
                names: vec!["mx.example.net".into()]
            }
        );
        assert!(r.verification_required());
    }

    #[test]
    fn table_lookup_exact_then_longest_suffix() {
        let mut t = PolicyTable::default();
        t.insert(".example.com", SecurityLevel::Encrypt);
        t.insert(".mail.example.com", SecurityLevel::Verify);
        t.insert("Example.com.", SecurityLevel::None);
        assert_eq!(t.level_for("example.com"), (SecurityLevel::None, "table"));
        assert_eq!(t.level_for("a.example.com").0, SecurityLevel::Encrypt);
        assert_eq!(t.level_for("x.mail.example.com").0, SecurityLevel::Verify);
        assert_eq!(
            t.level_for("notexample.com"),
            (SecurityLevel::May, "default")
        );
        t.insert("example.com", SecurityLevel::Verify);
        assert_eq!(
            t.level_for("EXAMPLE.COM.").0,
            SecurityLevel::Verify,
            "replaced"
        );
    }

    #[test]
    fn global_minimum_raises_but_never_lowers() {
        let mut t = PolicyTable::new(SecurityLevel::May, SecurityLevel::Encrypt);
        t.insert("none.example", SecurityLevel::None);
        t.insert("verify.example", SecurityLevel::Verify);
        let r = req(&t, "none.example", None);
        assert_eq!(
            (r.tls, r.applied),
            (TlsRequirement::Required, SecurityLevel::Encrypt)
        );
        assert!(r.reason.contains("minimum"));
        assert_eq!(
            req(&t, "verify.example", None).applied,
            SecurityLevel::Verify
        );
        assert_eq!(req(&t, "x.example", None).applied, SecurityLevel::Encrypt);
    }

    #[test]
    fn dane_per_rfc7672() {
        let mut t = PolicyTable::default();
        t.insert("dane.example", SecurityLevel::Dane);
        assert!(t.wants_dane("dane.example"));
        assert!(!t.wants_dane("other.example"));
        let r = req(&t, "dane.example", Some(TlsaStatus::Usable));
        assert_eq!(r.tls, TlsRequirement::Required);
        assert!(matches!(r.verification, Verification::Dane { .. }));
        assert_eq!(r.applied, SecurityLevel::Dane);
        // No usable TLSA / insecure zone: opportunistic.
        let r = req(&t, "dane.example", Some(TlsaStatus::NotApplicable));
        assert_eq!(
            (r.tls, r.applied),
            (TlsRequirement::Opportunistic, SecurityLevel::May)
        );
        // TLSA records, none usable: TLS required, not authenticated (Postfix: encrypt).
        let r = req(&t, "dane.example", Some(TlsaStatus::Unusable));
        assert_eq!(
            (r.tls, r.applied, r.verification_required()),
            (TlsRequirement::Required, SecurityLevel::Encrypt, false)
        );
        assert!(r.reason.contains("none usable"), "{}", r.reason);
        // ... and under REQUIRETLS verified by WebPKI.
        let r = t
            .requirements(
                "dane.example",
                "mx.example.net",
                Some(TlsaStatus::Unusable),
                true,
            )
            .unwrap();
        assert_eq!(r.applied, SecurityLevel::Verify);
        // Lookup failure: defer before connecting.
        assert!(
            t.requirements(
                "dane.example",
                "mx.example.net",
                Some(TlsaStatus::Failed),
                false
            )
            .is_err()
        );
        // With a minimum of encrypt, no TLSA still means TLS required.
        let mut strict = PolicyTable::new(SecurityLevel::Dane, SecurityLevel::Encrypt);
        strict.insert("x.example", SecurityLevel::Dane);
        let r = req(&strict, "x.example", Some(TlsaStatus::NotApplicable));
        assert_eq!(r.tls, TlsRequirement::Required);
        // A global minimum of dane applies DANE everywhere it is usable.
        let all = PolicyTable::new(SecurityLevel::May, SecurityLevel::Dane);
        assert!(all.wants_dane("any.example"));
        let r = req(&all, "any.example", Some(TlsaStatus::Usable));
        assert_eq!(r.applied, SecurityLevel::Dane);
    }

    #[test]
    fn requiretls_demands_verified_tls() {
        let t = PolicyTable::default();
        let r = t
            .requirements("x.example", "mx.x.example", None, true)
            .unwrap();
        assert_eq!(r.tls, TlsRequirement::Required);
        assert!(matches!(r.verification, Verification::WebPki { .. }));
        assert!(r.reason.contains("REQUIRETLS"));
        // Even a table entry of none cannot switch it off.
        let mut t = PolicyTable::default();
        t.insert("x.example", SecurityLevel::None);
        let r = t
            .requirements("x.example", "mx.x.example", None, true)
            .unwrap();
        assert_eq!(r.tls, TlsRequirement::Required);
    }

    #[test]
    fn mta_sts_enforce_raises_and_filters_hosts() {
        use crate::mta_sts::{Mode, parse_policy};
        let enforce =
            parse_policy(b"version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 86400\n")
                .unwrap();
        let mut t = PolicyTable::default();
        t.insert("plain.example", SecurityLevel::None);
        // may → verify (WebPKI, the MX host's name).
        let r = req(&t, "x.example", None)
            .with_mta_sts(&enforce, "MX.example.net.")
            .unwrap();
        assert_eq!(r.tls, TlsRequirement::Required);
        assert_eq!(
            r.verification,
            Verification::WebPki {
                names: vec!["mx.example.net".into()]
            }
        );
        assert_eq!(r.applied, SecurityLevel::Verify);
        assert!(r.reason.ends_with("MTA-STS enforce"), "{}", r.reason);
        // Even a destination configured as none.
        let r = req(&t, "plain.example", None)
            .with_mta_sts(&enforce, "mx.example.net")
            .unwrap();
        assert_eq!(r.tls, TlsRequirement::Required);
        // A host outside the policy is not used.
        assert!(
            req(&t, "x.example", None)
                .with_mta_sts(&enforce, "mx.elsewhere.example")
                .is_err()
        );
        // DANE stays in charge when usable.
        let mut d = PolicyTable::default();
        d.insert("dane.example", SecurityLevel::Dane);
        let r = req(&d, "dane.example", Some(TlsaStatus::Usable))
            .with_mta_sts(&enforce, "mx.example.net")
            .unwrap();
        assert!(matches!(r.verification, Verification::Dane { .. }));
        assert_eq!(r.applied, SecurityLevel::Dane);
        // testing and none change nothing.
        for mode in [Mode::Testing, Mode::None] {
            let p = crate::mta_sts::Policy {
                mode,
                ..enforce.clone()
            };
            let before = req(&t, "x.example", None);
            assert_eq!(
                before.clone().with_mta_sts(&p, "mx.elsewhere.example"),
                Ok(before)
            );
        }
    }

    #[test]
    fn tls_facts_json_and_human() {
        let facts = TlsFacts {
            host: "mx.example.net".into(),
            ip: Some("192.0.2.1".parse().unwrap()),
            version: Some("TLSv1.3".into()),
            cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            verified: Some(VerifiedBy::WebPki),
            dane: None,
            policy: SecurityLevel::Verify,
            error: None,
            report: None,
            tlsa: Vec::new(),
        };
        assert_eq!(
            facts.to_json(),
            r#"{"host":"mx.example.net","ip":"192.0.2.1","tls":"TLSv1.3","cipher":"TLS_AES_256_GCM_SHA384","verified":"WebPKI","dane":null,"policy":"verify","error":null}"#
        );
        assert_eq!(
            facts.human(),
            "mx.example.net[192.0.2.1]: TLSv1.3 TLS_AES_256_GCM_SHA384, verified (WebPKI), policy verify"
        );
        let plain = TlsFacts {
            host: "mx\"x".into(),
            error: Some("STARTTLS not offered\r\n".into()),
            policy: SecurityLevel::Encrypt,
            ..TlsFacts::default()
        };
        assert!(plain.to_json().contains(r#""host":"mx\"x""#));
        assert!(
            plain
                .to_json()
                .contains(r#""error":"STARTTLS not offered\r\n""#)
        );
        assert_eq!(
            plain.human(),
            "mx\"x: no TLS (plaintext), policy encrypt, STARTTLS not offered\r\n"
        );
        let dane = TlsFacts {
            host: "mx.example.net".into(),
            version: Some("TLSv1.3".into()),
            verified: Some(VerifiedBy::Dane),
            dane: Some("DANE-EE(3) SPKI(1) SHA2-256(1)".into()),
            policy: SecurityLevel::Dane,
            ..TlsFacts::default()
        };
        assert!(
            dane.to_json()
                .contains(r#""verified":"DANE","dane":"DANE-EE(3) SPKI(1) SHA2-256(1)""#)
        );
        assert_eq!(
            dane.human(),
            "mx.example.net: TLSv1.3, verified (DANE: DANE-EE(3) SPKI(1) SHA2-256(1)), policy dane"
        );
    }
}
