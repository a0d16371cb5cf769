//! Mailbox syntax: RFC 5321 §4.1.2 (`Mailbox`, `Local-part`, `Domain`,
//! `address-literal`), §4.1.3 (address literals), §4.5.3.1 (size limits), extended by
//! RFC 6531 §3.3 (UTF-8 in local parts and U-label domains).
//!
//! ```text
//! Mailbox        = Local-part "@" ( Domain / address-literal )
//! Local-part     = Dot-string / Quoted-string
//! Dot-string     = Atom *("."  Atom)
//! Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
//! Domain         = sub-domain *("." sub-domain)
//! address-literal = "[" ( IPv4-address-literal / IPv6-address-literal ) "]"
//! ```
//!
//! Decisions:
//! * UTF-8 is accepted in atoms, quoted strings and domain labels (RFC 6531) and
//!   flagged by [`Address::is_utf8`]; the session requires the `SMTPUTF8` MAIL
//!   parameter before accepting such an address. Control characters (C0, DEL, C1),
//!   non-ASCII white space and invisible formatting characters (bidi overrides,
//!   zero-width characters) are rejected everywhere.
//! * The only white space allowed is an ASCII space inside a quoted local part.
//! * Length limits: mailbox 254 octets (a 256-octet path minus the angle brackets),
//!   local part 64 octets (as written, including quotes), domain labels 63 octets.
//! * Relay tricks are *not* interpreted: `user%other@local`, `other!user@local` and
//!   `"user@other"@local` are all local parts of domain `local`; `user@other@local`
//!   and a source route (`@a:user@b`) are syntax errors for a bare mailbox (the
//!   session strips a source route from a *path* before calling [`Address::parse`]).
//! * General address literals (`[tag:content]` other than `IPv6:`) are rejected.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Maximum length of a mailbox (RFC 5321 §4.5.3.1.3 path of 256 minus `<>`).
pub const MAX_MAILBOX_LEN: usize = 254;
/// Maximum length of a local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;
/// Maximum length of a domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Maximum length of one domain label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a mailbox failed to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum AddressError {
    #[error("empty address")]
    Empty,
    #[error("address longer than {MAX_MAILBOX_LEN} octets")]
    TooLong,
    #[error("missing '@'")]
    MissingAt,
    #[error("invalid local part")]
    InvalidLocalPart,
    #[error("local part longer than {MAX_LOCAL_PART_LEN} octets")]
    LocalPartTooLong,
    #[error("invalid domain")]
    InvalidDomain,
    #[error("invalid address literal")]
    InvalidLiteral,
}

/// A syntactically valid RFC 5321 mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// Local part in unquoted form (quotes and quoted-pair backslashes removed).
    local: String,
    /// Domain as written; for an address literal including the brackets.
    domain: String,
    /// The local part is not a valid Dot-string and must be quoted when rendered.
    quoted: bool,
    literal: bool,
}

impl Address {
    /// Parses an RFC 5321 `Mailbox` (no angle brackets, no source route).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > MAX_MAILBOX_LEN {
            return Err(AddressError::TooLong);
        }
        let (local, written_len) = if s.starts_with('"') {
            parse_quoted(s)?
        } else {
            let end = s.find('@').ok_or(AddressError::MissingAt)?;
            let local = &s[..end];
            if !is_dot_string(local) {
                return Err(AddressError::InvalidLocalPart);
            }
            (local.to_string(), end)
        };
        if written_len > MAX_LOCAL_PART_LEN {
            return Err(AddressError::LocalPartTooLong);
        }
        if local.is_empty() {
            return Err(AddressError::InvalidLocalPart);
        }
        let rest = &s[written_len..];
        let domain = rest.strip_prefix('@').ok_or(AddressError::MissingAt)?;
        let literal = domain.starts_with('[');
        if literal {
            validate_address_literal(domain)?;
        } else if !is_valid_domain(domain) {
            return Err(AddressError::InvalidDomain);
        }
        let quoted = !is_dot_string(&local);
        Ok(Address {
            local,
            domain: domain.to_string(),
            quoted,
            literal,
        })
    }

    /// Builds the address used for the special RCPT path `<Postmaster>` (RFC 5321
    /// §4.1.1.3): local part `Postmaster` at the given (server) domain.
    pub(crate) fn postmaster(domain: &str) -> Address {
        Address {
            local: "Postmaster".to_string(),
            domain: domain.to_string(),
            quoted: false,
            literal: domain.starts_with('['),
        }
    }

    /// Local part in unquoted form (`"a b"@x` gives `a b`).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// Domain as written (`[192.0.2.1]` for an address literal).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain is an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
    pub fn is_domain_literal(&self) -> bool {
        self.literal
    }

    /// The local part is not a Dot-string and needs quoting when rendered.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The address contains non-ASCII characters (RFC 6531); needs `SMTPUTF8`.
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// Lower-cased `local@domain` for lookups.
    ///
    /// This is the lower-cased [`Display`](fmt::Display) form, so a local part that
    /// needs quoting stays quoted (`"user@other"@local` normalises to
    /// `"user@other"@local`, never to the ambiguous `user@other@local`). For every
    /// ordinary address it is exactly `local.to_lowercase() + "@" + domain.to_lowercase()`.
    pub fn normalized(&self) -> String {
        self.to_string().to_lowercase()
    }
}

impl fmt::Display for Address {
    /// RFC 5321 form: `local@domain`, quoting the local part when needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// Characters that are never acceptable anywhere in an address: controls, non-ASCII
/// white space and invisible formatting characters that could disguise an address.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || (!c.is_ascii() && c.is_whitespace())
        || matches!(c,
            '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// RFC 5322 `atext` (as used by RFC 5321 `Atom`) plus RFC 6531 UTF-8.
fn is_atext(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        !is_forbidden_char(c)
    }
}

/// RFC 5321 `Dot-string`.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Parses a leading RFC 5321 `Quoted-string`; returns the unquoted content and the
/// number of bytes consumed (including both quotes).
fn parse_quoted(s: &str) -> Result<(String, usize), AddressError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                // quoted-pairSMTP = %d92 %d32-126
                Some((_, e)) if (' '..='~').contains(&e) => out.push(e),
                _ => return Err(AddressError::InvalidLocalPart),
            },
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126 (plus UTF-8, RFC 6531)
            ' '..='~' => out.push(c),
            c if !c.is_ascii() && !is_forbidden_char(c) => out.push(c),
            _ => return Err(AddressError::InvalidLocalPart),
        }
    }
    Err(AddressError::InvalidLocalPart)
}

/// RFC 5321 `Domain` (LDH labels, RFC 6531 U-labels), no trailing dot, no empty labels.
pub(crate) fn is_valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DOMAIN_LEN
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| {
                    if c.is_ascii() {
                        c.is_ascii_alphanumeric() || c == '-'
                    } else {
                        // U-label characters; ideographic/fullwidth full stops would
                        // act as label separators after IDNA mapping: reject them.
                        !is_forbidden_char(c) && !matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
                    }
                })
        })
}

/// RFC 5321 §4.1.3 `address-literal` (IPv4 or `IPv6:` only).
fn validate_address_literal(d: &str) -> Result<(), AddressError> {
    let inner = d
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(AddressError::InvalidLiteral)?;
    let valid =
        if inner.len() > 5 && inner.is_char_boundary(5) && inner[..5].eq_ignore_ascii_case("IPv6:")
        {
            inner[5..].parse::<Ipv6Addr>().is_ok()
        } else {
            inner.parse::<Ipv4Addr>().is_ok()
        };
    if valid {
        Ok(())
    } else {
        Err(AddressError::InvalidLiteral)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Address {
        Address::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> AddressError {
        match Address::parse(s) {
            Ok(a) => panic!("{s:?} should not parse, got {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn simple() {
        let a = ok("Alice.Smith@Example.COM");
        assert_eq!(a.local_part(), "Alice.Smith");
        assert_eq!(a.domain(), "Example.COM");
        assert!(!a.is_quoted());
        assert!(!a.is_domain_literal());
        assert!(!a.is_utf8());
        assert_eq!(a.normalized(), "alice.smith@example.com");
        assert_eq!(a.to_string(), "Alice.Smith@Example.COM");
    }

    #[test]
    fn atext_specials() {
        let a = ok("a!#$%&'*+-/=?^_`{|}~z@example.com");
        assert_eq!(a.local_part(), "a!#$%&'*+-/=?^_`{|}~z");
        assert!(!a.is_quoted());
    }

    #[test]
    fn single_label_domain() {
        assert_eq!(ok("root@localhost").domain(), "localhost");
    }

    #[test]
    fn relay_tricks_are_local_parts() {
        let a = ok("user%other@local");
        assert_eq!((a.local_part(), a.domain()), ("user%other", "local"));
        let a = ok("other!user@local");
        assert_eq!((a.local_part(), a.domain()), ("other!user", "local"));
        let a = ok("\"user@other\"@local");
        assert_eq!((a.local_part(), a.domain()), ("user@other", "local"));
        assert!(a.is_quoted());
        assert_eq!(a.to_string(), "\"user@other\"@local");
        assert_eq!(a.normalized(), "\"user@other\"@local");
    }

    #[test]
    fn double_at_and_source_route_rejected() {
        assert_eq!(err("user@other@local"), AddressError::InvalidDomain);
        assert_eq!(err("@local:user@other"), AddressError::InvalidLocalPart);
        assert_eq!(err("@local,@x:user@other"), AddressError::InvalidLocalPart);
    }

    #[test]
    fn quoted_local_parts() {
        let a = ok("\"john smith\"@example.com");
        assert_eq!(a.local_part(), "john smith");
        assert!(a.is_quoted());
        assert_eq!(a.to_string(), "\"john smith\"@example.com");

        // Quoting that was not needed is dropped.
        let a = ok("\"john\"@example.com");
        assert_eq!(a.local_part(), "john");
        assert!(!a.is_quoted());
        assert_eq!(a.to_string(), "john@example.com");

        // quoted-pair
        let a = ok(r#""a\"b\\c"@x.example"#);
        assert_eq!(a.local_part(), r#"a"b\c"#);
        assert_eq!(a.to_string(), r#""a\"b\\c"@x.example"#);
        assert_eq!(Address::parse(&a.to_string()).unwrap(), a);

        // dots that are not a valid dot-string need quotes
        let a = ok("\"a..b\"@x");
        assert!(a.is_quoted());
        assert_eq!(a.to_string(), "\"a..b\"@x");
    }

    #[test]
    fn bad_quoted_local_parts() {
        assert_eq!(err("\"unterminated@x"), AddressError::InvalidLocalPart);
        assert_eq!(err("\"a\"b@x"), AddressError::MissingAt);
        assert_eq!(err("\"a\tb\"@x"), AddressError::InvalidLocalPart);
        assert_eq!(err("\"a\\\u{7f}\"@x"), AddressError::InvalidLocalPart);
        assert_eq!(err("\"\"@x"), AddressError::InvalidLocalPart);
        assert_eq!(err("\"ab\\"), AddressError::InvalidLocalPart);
    }

    #[test]
    fn bad_dot_strings() {
        for s in [
            ".a@x",
            "a.@x",
            "a..b@x",
            "a b@x",
            "a\"b@x",
            "a(b)@x",
            "a,b@x",
            "a:b@x",
            "a;b@x",
            "a<b@x",
            "a>b@x",
            "a[b@x",
            "a\\b@x",
            "a\u{0}b@x",
            "a\rb@x",
            "a\nb@x",
            "a\u{7f}@x",
            "a\u{85}@x",
            "a\u{a0}b@x",
            "a\u{202e}b@x",
            "a\u{200b}@x",
        ] {
            assert_eq!(err(s), AddressError::InvalidLocalPart, "{s:?}");
        }
    }

    #[test]
    fn missing_parts() {
        assert_eq!(err(""), AddressError::Empty);
        assert_eq!(err("user"), AddressError::MissingAt);
        assert_eq!(err("@example.com"), AddressError::InvalidLocalPart);
        assert_eq!(err("user@"), AddressError::InvalidDomain);
        assert_eq!(err("<user@example.com>"), AddressError::InvalidLocalPart);
    }

    #[test]
    fn bad_domains() {
        for s in [
            "a@example.com.",
            "a@.example.com",
            "a@exa..mple.com",
            "a@-x.com",
            "a@x-.com",
            "a@ex ample.com",
            "a@ex_ample.com",
            "a@x.com ",
            "a@x.com\r\n",
            "a@x\u{3002}com",
            "a@x\u{200b}.com",
            "a@x/y",
            "a@x:25",
            "x@192.0.2.1]",
        ] {
            assert_eq!(err(s), AddressError::InvalidDomain, "{s:?}");
        }
        let long_label = format!("a@{}.com", "x".repeat(64));
        assert_eq!(err(&long_label), AddressError::InvalidDomain);
        let max_label = format!("a@{}.com", "x".repeat(63));
        ok(&max_label);
    }

    #[test]
    fn address_literals() {
        let a = ok("postmaster@[192.0.2.1]");
        assert!(a.is_domain_literal());
        assert_eq!(a.domain(), "[192.0.2.1]");
        let a = ok("x@[IPv6:2001:db8::1]");
        assert!(a.is_domain_literal());
        let a = ok("x@[ipv6:::1]");
        assert_eq!(a.normalized(), "x@[ipv6:::1]");
        for s in [
            "x@[192.0.2.256]",
            "x@[192.0.2]",
            "x@[1.2.3.4.5]",
            "x@[IPv6:zz::1]",
            "x@[2001:db8::1]",
            "x@[IPv6:192.0.2.1]",
            "x@[tag:stuff]",
            "x@[192.0.2.1",
            "x@[]",
            "x@[ 192.0.2.1]",
            "x@[IPv6:]",
            "x@[192.0.2.1].com",
        ] {
            assert_eq!(err(s), AddressError::InvalidLiteral, "{s:?}");
        }
    }

    #[test]
    fn utf8_addresses() {
        let a = ok("用户@例子.广告");
        assert!(a.is_utf8());
        assert_eq!(a.local_part(), "用户");
        let a = ok("Jörg@Bücher.example");
        assert_eq!(a.normalized(), "jörg@bücher.example");
        let a = ok("\"ü ü\"@x");
        assert!(a.is_utf8() && a.is_quoted());
        let a = ok("ascii@münchen.de");
        assert!(a.is_utf8());
    }

    #[test]
    fn length_limits() {
        let local64 = "l".repeat(64);
        ok(&format!("{local64}@x.example"));
        assert_eq!(
            err(&format!("{}@x.example", "l".repeat(65))),
            AddressError::LocalPartTooLong
        );
        // quoted local part: 64 octets as written including the quotes
        ok(&format!("\"{}\"@x", "q".repeat(62)));
        assert_eq!(
            err(&format!("\"{}\"@x", "q".repeat(63))),
            AddressError::LocalPartTooLong
        );
        // total 254 octets is the maximum
        let domain = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(60)
        );
        let addr = format!("a@{domain}");
        assert_eq!(addr.len(), 254);
        ok(&addr);
        let addr = format!("ab@{domain}");
        assert_eq!(err(&addr), AddressError::TooLong);
        // multi-byte UTF-8 counts octets
        let local = "é".repeat(33); // 66 octets
        assert_eq!(err(&format!("{local}@x")), AddressError::LocalPartTooLong);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a@b.example",
            "\"a b\"@c",
            "\"\\\\\"@x",
            "x@[IPv6:::1]",
            "user%host@local",
            "\"a.\"@b",
            "ü@ü",
        ] {
            let a = ok(s);
            assert_eq!(Address::parse(&a.to_string()).unwrap(), a, "{s}");
        }
    }

    #[test]
    fn postmaster_constructor() {
        let a = Address::postmaster("mx.example");
        assert_eq!(a.to_string(), "Postmaster@mx.example");
        assert_eq!(a.normalized(), "postmaster@mx.example");
    }
}
