//! MTA-STS (RFC 8461), the parts without I/O: the `_mta-sts` TXT record, the policy file, MX
//! pattern matching and what a policy means for one delivery attempt. Fetching the policy
//! (HTTPS with a verified certificate for `mta-sts.<domain>`, no redirects) and caching it by id
//! and max_age are in [`crate::mta_sts_fetch`].

use std::fmt;

/// Where the policy of `domain` is published (RFC 8461 3.3).
pub fn policy_url(domain: &str) -> String {
    format!(
        "https://mta-sts.{}/.well-known/mta-sts.txt",
        domain.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// The DNS name of the TXT record (RFC 8461 3.1).
pub fn txt_name(domain: &str) -> String {
    format!(
        "_mta-sts.{}",
        domain.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// Policies larger than this are refused (RFC 8461 3.3 suggests 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;
/// Largest `max_age` allowed (RFC 8461 3.2: about one year).
pub const MAX_MAX_AGE: u64 = 31_557_600;

/// Why a TXT record or policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    #[error("more than one MTA-STS TXT record")]
    SeveralRecords,
    #[error("invalid MTA-STS TXT record: {0}")]
    BadRecord(String),
    #[error("invalid MTA-STS policy: {0}")]
    BadPolicy(String),
}

/// The `_mta-sts` TXT record: `v=STSv1; id=20160831085700Z;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    /// Changes whenever the policy changes (1–32 alphanumerics).
    pub id: String,
}

/// The TXT strings found at `_mta-sts.<domain>` (each record's strings already joined).
/// Records not starting with `v=STSv1` are ignored; none: `Ok(None)` (no MTA-STS); more than
/// one: an error, which RFC 8461 3.1 says to treat as "no policy".
pub fn parse_txt(records: &[String]) -> Result<Option<StsRecord>, StsError> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim_start();
            r.starts_with("v=STSv1") && {
                let rest = &r["v=STSv1".len()..];
                rest.is_empty() || rest.starts_with(';') || rest.starts_with([' ', '\t'])
            }
        })
        .collect();
    let record = match sts.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(StsError::SeveralRecords),
    };
    let mut id = None;
    for (index, field) in record.split(';').enumerate() {
        let field = field.trim_matches([' ', '\t']);
        if field.is_empty() {
            continue;
        }
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| StsError::BadRecord(format!("field {field:?} has no '='")))?;
        match key {
            "v" if index == 0 => {}
            "id" => {
                if value.is_empty()
                    || value.len() > 32
                    || !value.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    return Err(StsError::BadRecord(format!("bad id {value:?}")));
                }
                id = Some(value.to_owned());
            }
            _ => {} // Extensions are ignored.
        }
    }
    id.map(|id| Some(StsRecord { id }))
        .ok_or_else(|| StsError::BadRecord("no id".into()))
}

/// `mode` of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Deliver anyway, report failures (TLS-RPT).
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        })
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: `mail.example.com` or `*.example.com` (one leftmost label), lower case.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

/// Parses a policy body (RFC 8461 3.2): `key: value` lines (CRLF or LF); `version: STSv1`,
/// `mode`, `max_age` required, at least one `mx` unless mode is `none`; unknown keys ignored.
pub fn parse_policy(body: &[u8]) -> Result<Policy, StsError> {
    let bad = |m: String| StsError::BadPolicy(m);
    if body.len() > MAX_POLICY_SIZE {
        return Err(bad(format!("larger than {MAX_POLICY_SIZE} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8".into()))?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("line {line:?} is not key: value")))?;
        let value = value.trim_matches([' ', '\t']);
        match key.trim() {
            "version" => version = Some(value.to_owned()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(bad(format!("unknown mode {other:?}"))),
                })
            }
            "max_age" => {
                let age: u64 = value
                    .parse()
                    .ok()
                    .filter(|_| value.len() <= 10 && value.chars().all(|c| c.is_ascii_digit()))
                    .ok_or_else(|| bad(format!("bad max_age {value:?}")))?;
                max_age = Some(age.min(MAX_MAX_AGE));
            }
            "mx" => {
                let pattern = value.trim_end_matches('.').to_ascii_lowercase();
                let host = pattern.strip_prefix("*.").unwrap_or(&pattern);
                if host.is_empty() || host.contains('*') || !host.contains('.') {
                    return Err(bad(format!("bad mx pattern {value:?}")));
                }
                mx.push(pattern);
            }
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err(bad("version is not STSv1".into()));
    }
    let mode = mode.ok_or_else(|| bad("no mode".into()))?;
    let max_age = max_age.ok_or_else(|| bad("no max_age".into()))?;
    if mx.is_empty() && mode != Mode::None {
        return Err(bad("no mx".into()));
    }
    Ok(Policy { mode, mx, max_age })
}

impl Policy {
    /// Whether an MX host name matches one of the policy's patterns (RFC 8461 4.1): exactly, or
    /// `*.example.com` matching one label more (`mx.example.com`, not `a.b.example.com`).
    pub fn mx_matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => *pattern == host,
            })
    }

    /// The verdict for delivering to `mx_host` (RFC 8461 4 and 5): in `enforce` mode the host
    /// must match and TLS must be verified (WebPKI, name of the MX host); in `testing` mode
    /// failures are reported but delivery proceeds.
    pub fn check(&self, mx_host: &str, tls_verified: bool) -> Verdict {
        let failure = if !self.mx_matches(mx_host) {
            Some(format!(
                "MX host {mx_host} does not match the MTA-STS policy"
            ))
        } else if !tls_verified {
            Some(format!("TLS to {mx_host} is not verified"))
        } else {
            None
        };
        match (self.mode, failure) {
            (Mode::None, _) | (_, None) => Verdict::Ok,
            (Mode::Testing, Some(reason)) => Verdict::Report(reason),
            (Mode::Enforce, Some(reason)) => Verdict::Defer(reason),
        }
    }
}

/// What a policy says about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Testing mode: deliver, but report this failure (TLS-RPT).
    Report(String),
    /// Enforce mode: do not deliver to this host (try the next MX; defer if none is left).
    Defer(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn txt_records() {
        assert_eq!(
            parse_txt(&s(&["v=STSv1; id=20160831085700Z;"])).unwrap(),
            Some(StsRecord {
                id: "20160831085700Z".into()
            })
        );
        assert_eq!(
            parse_txt(&s(&["v=spf1 -all", "v=STSv1;id=abc"])).unwrap(),
            Some(StsRecord { id: "abc".into() })
        );
        assert_eq!(parse_txt(&s(&["v=spf1 -all"])).unwrap(), None);
        assert_eq!(parse_txt(&s(&["v=STSv10; id=1"])).unwrap(), None);
        assert_eq!(
            parse_txt(&s(&["v=STSv1; id=1", "v=STSv1; id=2"])),
            Err(StsError::SeveralRecords)
        );
        for bad in [
            "v=STSv1;",
            "v=STSv1; id=",
            "v=STSv1; id=a-b",
            "v=STSv1; id=123456789012345678901234567890123",
            "v=STSv1; junk",
        ] {
            assert!(parse_txt(&s(&[bad])).is_err(), "{bad}");
        }
        assert_eq!(txt_name("Example.COM."), "_mta-sts.example.com");
        assert_eq!(
            policy_url("example.com"),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
    }

    #[test]
    fn policy_files() {
        let p = parse_policy(
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n\
              max_age: 604800\r\nfuture: ignored\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, vec!["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 604_800);
        let lf =
            parse_policy(b"version: STSv1\nmode: testing\nmx: MX.example.com.\nmax_age: 86400\n")
                .unwrap();
        assert_eq!(
            (lf.mode, lf.mx[0].as_str()),
            (Mode::Testing, "mx.example.com")
        );
        let none = parse_policy(b"version: STSv1\nmode: none\nmax_age: 99999999999\n");
        assert!(none.is_err(), "max_age too long a number");
        let none = parse_policy(b"version: STSv1\nmode: none\nmax_age: 999999999\n").unwrap();
        assert_eq!((none.mode, none.max_age), (Mode::None, MAX_MAX_AGE));

        for bad in [
            &b"mode: enforce\nmx: a.example\nmax_age: 1\n"[..],
            b"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            b"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            b"version: STSv1\nmode: enforce\nmax_age: 1\n",
            b"version: STSv1\nmode: enforce\nmx: a.example\n",
            b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            b"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            b"version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n",
            b"version: STSv1\nmode enforce\n",
            b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n\xff\n",
        ] {
            assert!(
                parse_policy(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_policy(&vec![b'a'; MAX_POLICY_SIZE + 1]).is_err());
    }

    #[test]
    fn mx_patterns_and_verdicts() {
        let p = parse_policy(
            b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 1\n",
        )
        .unwrap();
        assert!(p.mx_matches("MAIL.example.com."));
        assert!(p.mx_matches("mx1.example.net"));
        assert!(!p.mx_matches("example.net"));
        assert!(!p.mx_matches("a.b.example.net"));
        assert!(!p.mx_matches("evil-example.net"));
        assert!(!p.mx_matches("mail.example.com.evil"));

        assert_eq!(p.check("mail.example.com", true), Verdict::Ok);
        assert!(matches!(
            p.check("mail.example.com", false),
            Verdict::Defer(_)
        ));
        assert!(matches!(
            p.check("other.example.org", true),
            Verdict::Defer(_)
        ));
        let testing = Policy {
            mode: Mode::Testing,
            ..p.clone()
        };
        assert!(matches!(
            testing.check("other.example.org", true),
            Verdict::Report(_)
        ));
        let off = Policy {
            mode: Mode::None,
            ..p
        };
        assert_eq!(off.check("other.example.org", false), Verdict::Ok);
    }
}
