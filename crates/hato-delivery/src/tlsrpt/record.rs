//! The `_smtp._tls.<domain>` TXT record (RFC 8460 3): [`parse_txt`], its `rua` URIs ([`Rua`],
//! RFC 6068 `mailto:` and `https:`) and why a record set is refused ([`RecordError`]).

use std::fmt;

/// At most this many `rua` URIs of a record are used (the rest are listed as ignored), so a
/// record cannot make hato send a report to hundreds of addresses.
pub const MAX_RUA: usize = 10;

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
///
/// [`txt_name`]: super::txt_name
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

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(records: &[&str]) -> Result<Option<TlsRptRecord>, RecordError> {
        parse_txt(&records.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn mailto(a: &str) -> Rua {
        Rua::Mailto(a.into())
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
}
