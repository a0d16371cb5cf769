//! The server's EHLO keywords (RFC 5321 §4.1.1.1, RFC 1869 §4.3).

use crate::reply::Reply;

/// At most this many AUTH mechanisms are remembered.
const MAX_AUTH_MECHANISMS: usize = 32;

/// What the server announced in its EHLO reply. After STARTTLS this is replaced by
/// the post-TLS EHLO reply (RFC 3207 §4.2); after a HELO fallback everything is
/// `false`/empty and `esmtp` is `false`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// The server answered EHLO (not HELO).
    pub esmtp: bool,
    /// First word of the EHLO/HELO reply (the server's name, not verified).
    pub domain: String,
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: `None` = not announced; `Some(0)` = announced without a fixed
    /// limit; `Some(n)` = messages larger than `n` octets are refused.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3030.
    pub chunking: bool,
    /// RFC 3030 (BODY=BINARYMIME); recorded, never used.
    pub binarymime: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 3461.
    pub dsn: bool,
    /// RFC 8689.
    pub requiretls: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 4954 SASL mechanisms, upper case (`AUTH` and the old `AUTH=` form).
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Parses a positive EHLO reply (one keyword line per text line after the first).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut lines = reply.text.split('\n');
        let mut caps = Capabilities {
            esmtp: true,
            domain: first_word(lines.next().unwrap_or("")),
            ..Capabilities::default()
        };
        for line in lines {
            let mut words = line.split([' ', '=']).filter(|w| !w.is_empty());
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    // A value that is not a number: the extension is there, the limit unknown.
                    let limit = words.next().and_then(|v| v.parse::<u64>().ok());
                    caps.size = Some(limit.unwrap_or(0));
                }
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "BINARYMIME" => caps.binarymime = true,
                "STARTTLS" => caps.starttls = true,
                "DSN" => caps.dsn = true,
                "REQUIRETLS" => caps.requiretls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    for mech in words {
                        let mech = mech.to_ascii_uppercase();
                        if caps.auth.len() < MAX_AUTH_MECHANISMS && !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// The capabilities after a HELO fallback: none.
    pub fn from_helo(reply: &Reply) -> Capabilities {
        Capabilities {
            domain: first_word(reply.text.split('\n').next().unwrap_or("")),
            ..Capabilities::default()
        }
    }

    /// The SASL mechanism is offered (case-insensitive).
    pub fn has_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }
}

fn first_word(line: &str) -> String {
    line.split(' ')
        .next()
        .unwrap_or("")
        .chars()
        .take(255)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_keywords() {
        let r = Reply::without_status(
            250,
            "mx.example Hello client\nPIPELINING\nSIZE 10240000\n8BITMIME\nsmtputf8\nCHUNKING\n\
             BINARYMIME\nSTARTTLS\nDSN\nREQUIRETLS\nENHANCEDSTATUSCODES\nAUTH PLAIN login CRAM-MD5\n\
             AUTH=LOGIN XOAUTH2\nVRFY\nX-UNKNOWN 1 2",
        );
        let c = Capabilities::from_ehlo(&r);
        assert_eq!(
            c,
            Capabilities {
                esmtp: true,
                domain: "mx.example".into(),
                pipelining: true,
                size: Some(10_240_000),
                eightbitmime: true,
                smtputf8: true,
                chunking: true,
                binarymime: true,
                starttls: true,
                dsn: true,
                requiretls: true,
                enhanced_status_codes: true,
                auth: vec![
                    "PLAIN".into(),
                    "LOGIN".into(),
                    "CRAM-MD5".into(),
                    "XOAUTH2".into()
                ],
            }
        );
        assert!(c.has_auth("plain"));
        assert!(!c.has_auth("GSSAPI"));
    }

    #[test]
    fn first_line_is_not_a_keyword() {
        let c = Capabilities::from_ehlo(&Reply::without_status(250, "STARTTLS"));
        assert!(!c.starttls);
        assert_eq!(c.domain, "STARTTLS");
    }

    #[test]
    fn size_variants() {
        let size = |line: &str| {
            Capabilities::from_ehlo(&Reply::without_status(250, format!("mx\n{line}"))).size
        };
        assert_eq!(size("SIZE"), Some(0));
        assert_eq!(size("SIZE 0"), Some(0));
        assert_eq!(size("SIZE 1000"), Some(1000));
        assert_eq!(size("SIZE lots"), Some(0));
        assert_eq!(size("SIZE 99999999999999999999999"), Some(0));
        assert_eq!(size("PIPELINING"), None);
    }

    #[test]
    fn keyword_lookalikes_do_not_count() {
        let c = Capabilities::from_ehlo(&Reply::without_status(
            250,
            "mx\nXXXXXXXA\nSTARTTLSX\nX-STARTTLS\nPIPELINING2",
        ));
        assert!(!c.starttls);
        assert!(!c.pipelining);
    }

    #[test]
    fn auth_mechanisms_bounded() {
        let mut text = "mx".to_string();
        for i in 0..100 {
            text.push_str(&format!("\nAUTH M{i} PLAIN"));
        }
        let c = Capabilities::from_ehlo(&Reply::without_status(250, text));
        assert_eq!(c.auth.len(), MAX_AUTH_MECHANISMS);
        assert!(c.has_auth("PLAIN"));
    }

    #[test]
    fn helo_has_nothing() {
        let c = Capabilities::from_helo(&Reply::without_status(250, "mx.example hi"));
        assert_eq!(
            c,
            Capabilities {
                domain: "mx.example".into(),
                ..Capabilities::default()
            }
        );
    }
}
