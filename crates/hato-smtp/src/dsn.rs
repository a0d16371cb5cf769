//! RFC 3461 DSN parameters, shared by the server session (which parses them from
//! `MAIL`/`RCPT` commands) and the client (which sends them on):
//!
//! * the values: `RET` ([`DsnRet`], §4.3), `ENVID` ([`parse_envid`], §4.4), `NOTIFY`
//!   ([`Notify`], §4.1), `ORCPT` ([`Orcpt`], §4.2, with the RFC 6533 §3 `utf-8`
//!   address type);
//! * xtext (RFC 3461 §4) and utf-8-addr-xtext / utf-8-addr-unitext (RFC 6533 §3),
//!   encoding and decoding;
//! * the string forms the outbound queue stores (`hato-store`'s `DsnParams` /
//!   `QueueParams`): `RET` as `FULL`/`HDRS` ([`DsnRet::as_str`]), `NOTIFY` as `NEVER`
//!   or a comma list such as `SUCCESS,FAILURE` ([`Notify`]'s `Display`), `ORCPT` as
//!   `addr-type;decoded-address` such as `rfc822;bob@example.com` ([`Orcpt`]'s
//!   `Display`), `ENVID` decoded. See [`RcptDsn::to_strings`].

use std::fmt;
use std::fmt::Write as _;

use thiserror::Error;

/// Longest accepted `ENVID` value as sent, i.e. xtext-encoded (RFC 3461 §4.4).
pub const ENVID_MAX: usize = 100;

/// Longest accepted `ORCPT` value as sent, `addr-type ";" xtext` (RFC 3461 §4.2:
/// "the entire ORCPT parameter MAY be up to 500 characters").
pub const ORCPT_MAX: usize = 500;

/// Why a DSN parameter value is refused. The server session answers
/// `501 5.5.4 Invalid <PARAMETER> parameter: <this text>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum DsnError {
    /// The parameter was given without `=value`.
    #[error("value required")]
    NoValue,
    /// Not xtext (RFC 3461 §4: `+` must start `+HH`; only `!`..`~` except `=`), or
    /// not utf-8-addr-xtext/unitext (RFC 6533 §3: `\x{HEX}` escapes).
    #[error("malformed xtext")]
    BadXtext,
    /// The decoded value is not printable US-ASCII (RFC 3461 §4.2, §4.4).
    #[error("not printable US-ASCII")]
    NotPrintable,
    /// A decoded `utf-8` address contains control characters.
    #[error("control character in address")]
    Control,
    /// Over [`ENVID_MAX`] / [`ORCPT_MAX`] characters.
    #[error("longer than {0} characters")]
    TooLong(usize),
    #[error("FULL or HDRS expected")]
    Ret,
    #[error("NEVER or a list of SUCCESS, FAILURE, DELAY expected")]
    Notify,
    /// RFC 3461 §4.1: NEVER must appear alone.
    #[error("NEVER cannot be combined with other values")]
    NeverCombined,
    /// Not `addr-type;address` with a non-empty address.
    #[error("addr-type;address expected")]
    Orcpt,
    /// An address type other than `rfc822` and `utf-8`.
    #[error("address type rfc822 or utf-8 expected")]
    AddrType,
}

/// DSN `RET` (RFC 3461 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DsnRet {
    Full,
    Headers,
}

impl DsnRet {
    /// `"FULL"` or `"HDRS"`: the parameter value, also the form the queue stores.
    pub fn as_str(self) -> &'static str {
        match self {
            DsnRet::Full => "FULL",
            DsnRet::Headers => "HDRS",
        }
    }

    /// `FULL` or `HDRS`, case-insensitive.
    pub fn parse(value: &str) -> Result<DsnRet, DsnError> {
        if value.eq_ignore_ascii_case("FULL") {
            Ok(DsnRet::Full)
        } else if value.eq_ignore_ascii_case("HDRS") {
            Ok(DsnRet::Headers)
        } else {
            Err(DsnError::Ret)
        }
    }
}

/// DSN `NOTIFY` (RFC 3461 §4.1): all `false` is `NOTIFY=NEVER`.
///
/// `Display` gives the parameter value, also the form the queue stores: `NEVER`, or
/// the requested kinds in the order `SUCCESS,FAILURE,DELAY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };

    /// `NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE`, `DELAY`
    /// (case-insensitive; repeating a kind is harmless). `NEVER` combined with
    /// anything else, an empty item or an unknown word is an error.
    pub fn parse(value: &str) -> Result<Notify, DsnError> {
        let mut n = Notify::NEVER;
        let (mut never, mut other) = (false, false);
        for item in value.split(',') {
            if item.eq_ignore_ascii_case("NEVER") {
                never = true;
                continue;
            }
            if item.eq_ignore_ascii_case("SUCCESS") {
                n.success = true;
            } else if item.eq_ignore_ascii_case("FAILURE") {
                n.failure = true;
            } else if item.eq_ignore_ascii_case("DELAY") {
                n.delay = true;
            } else {
                return Err(DsnError::Notify);
            }
            other = true;
        }
        if never && other {
            return Err(DsnError::NeverCombined);
        }
        Ok(n)
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Notify::NEVER {
            return f.write_str("NEVER");
        }
        let kinds = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ];
        let mut sep = "";
        for (_, name) in kinds.iter().filter(|(on, _)| *on) {
            f.write_str(sep)?;
            f.write_str(name)?;
            sep = ",";
        }
        Ok(())
    }
}

/// The address type of an `ORCPT` (RFC 3461 §4.2, RFC 6533 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrType {
    /// `rfc822`: an xtext-encoded US-ASCII address.
    Rfc822,
    /// `utf-8` (RFC 6533): utf-8-addr-xtext or utf-8-addr-unitext.
    Utf8,
}

impl AddrType {
    /// `"rfc822"` or `"utf-8"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Rfc822 => "rfc822",
            AddrType::Utf8 => "utf-8",
        }
    }
}

/// A decoded `ORCPT` parameter: the address type the client gave and the original
/// recipient address, decoded.
///
/// `Display` gives `addr-type;address` with the address decoded, e.g.
/// `rfc822;bob@example.com` or `utf-8;jörg@example.com`: the form the queue stores
/// and the DSN's `Original-Recipient` field uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Orcpt {
    pub addr_type: AddrType,
    pub address: String,
}

impl Orcpt {
    /// Parses an `ORCPT` value: `rfc822;xtext` (decoded address printable US-ASCII)
    /// or `utf-8;utf-8-addr-xtext/unitext` (no control characters). The address type
    /// is case-insensitive; the address must not be empty; the value may be at most
    /// [`ORCPT_MAX`] characters.
    pub fn parse(value: &str) -> Result<Orcpt, DsnError> {
        if value.chars().count() > ORCPT_MAX {
            return Err(DsnError::TooLong(ORCPT_MAX));
        }
        let (ty, encoded) = value.split_once(';').ok_or(DsnError::Orcpt)?;
        if encoded.is_empty() {
            return Err(DsnError::Orcpt);
        }
        if ty.eq_ignore_ascii_case("rfc822") {
            Ok(Orcpt {
                addr_type: AddrType::Rfc822,
                address: printable_ascii(decode_xtext(encoded)?)?,
            })
        } else if ty.eq_ignore_ascii_case("utf-8") {
            let address = decode_utf8_addr(encoded)?;
            if address.chars().any(char::is_control) {
                return Err(DsnError::Control);
            }
            Ok(Orcpt {
                addr_type: AddrType::Utf8,
                address,
            })
        } else {
            Err(DsnError::AddrType)
        }
    }
}

impl fmt::Display for Orcpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.addr_type.as_str(), self.address)
    }
}

/// Parses an `ENVID` value (RFC 3461 §4.4): xtext, at most [`ENVID_MAX`] characters
/// as sent, printable US-ASCII once decoded. Returns the decoded envelope identifier.
pub fn parse_envid(value: &str) -> Result<String, DsnError> {
    if value.chars().count() > ENVID_MAX {
        return Err(DsnError::TooLong(ENVID_MAX));
    }
    printable_ascii(decode_xtext(value)?)
}

/// The DSN parameters of one recipient (`RCPT TO`), as given by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RcptDsn {
    /// `NOTIFY`; `None`: not given (RFC 3461 §4.1: failures and delays are reported).
    pub notify: Option<Notify>,
    /// `ORCPT`; `None`: not given.
    pub orcpt: Option<Orcpt>,
}

impl RcptDsn {
    /// `(NOTIFY, ORCPT)` in the form the queue stores (one element of
    /// `hato_store::QueueParams::recipients`): e.g. `(Some("SUCCESS,FAILURE"),
    /// Some("rfc822;bob@example.com"))`, `(Some("NEVER"), None)`, `(None, None)`.
    pub fn to_strings(&self) -> (Option<String>, Option<String>) {
        (
            self.notify.map(|n| n.to_string()),
            self.orcpt.as_ref().map(Orcpt::to_string),
        )
    }
}

/// The value of a parameter that needs one.
pub(crate) fn value(v: Option<&str>) -> Result<&str, DsnError> {
    v.ok_or(DsnError::NoValue)
}

// ------------------------------------------------------------------------------------
// Encoding and decoding

/// RFC 3461 §4 xtext: printable ASCII except `+` and `=` as is, everything else
/// (per octet) as `+HH`.
pub(crate) fn encode_xtext(value: &str, out: &mut String) {
    for &b in value.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
}

/// The ORCPT parameter value (RFC 3461 §4.2) for a decoded address: `rfc822;xtext`
/// for an ASCII address, `utf-8;utf-8-addr-xtext` (RFC 6533 §3) otherwise.
pub(crate) fn encode_orcpt(address: &str, out: &mut String) {
    if address.is_ascii() {
        out.push_str("rfc822;");
        encode_xtext(address, out);
    } else {
        out.push_str("utf-8;");
        for c in address.chars() {
            // QCHAR: printable ASCII except "+", "=" and "\"; the rest as \x{HEX}.
            if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
                out.push(c);
            } else {
                let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
            }
        }
    }
}

/// Decodes RFC 3461 xtext: `xchar` (`!`..`~` except `+` and `=`) as is, `+HH` as the
/// octet `HH` (upper-case hex per the RFC; lower case is accepted too).
pub(crate) fn decode_xtext(s: &str) -> Result<Vec<u8>, DsnError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = b.get(i + 1..i + 3).ok_or(DsnError::BadXtext)?;
                let (Some(hi), Some(lo)) = (hex_value(hex[0]), hex_value(hex[1])) else {
                    return Err(DsnError::BadXtext);
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            c @ b'!'..=b'~' if c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return Err(DsnError::BadXtext),
        }
    }
    Ok(out)
}

/// Decodes RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext: QCHAR (printable ASCII
/// except `+`, `=`, `\`) and non-ASCII characters as is, `\x{HEX}` (1 to 6 hex digits,
/// a Unicode scalar value) as that character.
pub(crate) fn decode_utf8_addr(s: &str) -> Result<String, DsnError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let esc = rest.strip_prefix("\\x{").ok_or(DsnError::BadXtext)?;
            let close = esc.find('}').ok_or(DsnError::BadXtext)?;
            let hex = &esc[..close];
            if hex.is_empty() || hex.len() > 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DsnError::BadXtext);
            }
            let ch = u32::from_str_radix(hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or(DsnError::BadXtext)?;
            out.push(ch);
            rest = &esc[close + 1..];
        } else if (c.is_ascii_graphic() && c != '+' && c != '=') || !c.is_ascii() {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        } else {
            return Err(DsnError::BadXtext);
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// RFC 3461 §4.2/§4.4: "printable (graphic and white space) characters from the
/// US-ASCII repertoire" (SP through `~`).
fn printable_ascii(bytes: Vec<u8>) -> Result<String, DsnError> {
    if !bytes.iter().all(|b| (b' '..=b'~').contains(b)) {
        return Err(DsnError::NotPrintable);
    }
    String::from_utf8(bytes).map_err(|_| DsnError::NotPrintable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encoding() {
        let mut s = String::new();
        encode_xtext("a+b=c d\u{e9}", &mut s);
        assert_eq!(s, "a+2Bb+3Dc+20d+C3+A9");
    }

    #[test]
    fn orcpt_encoding() {
        let mut s = String::new();
        encode_orcpt("user+tag@example.com", &mut s);
        assert_eq!(s, "rfc822;user+2Btag@example.com");
        let mut s = String::new();
        encode_orcpt("jörg+x@bücher.example", &mut s);
        assert_eq!(s, "utf-8;j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example");
    }

    #[test]
    fn xtext_decoding() {
        assert_eq!(decode_xtext("a+2Bb+3dc+20d").unwrap(), b"a+b=c d");
        assert_eq!(decode_xtext("").unwrap(), b"");
        assert_eq!(decode_xtext("+C3+A9").unwrap(), "é".as_bytes());
        for bad in ["+", "+2", "+2G", "a+", "a=b", "a b", "é", "a\u{7f}", "+-1"] {
            assert_eq!(decode_xtext(bad), Err(DsnError::BadXtext), "{bad:?}");
        }
    }

    #[test]
    fn utf8_addr_decoding() {
        assert_eq!(
            decode_utf8_addr("j\\x{F6}rg\\x{2b}x@b\\x{FC}cher.example").unwrap(),
            "jörg+x@bücher.example"
        );
        assert_eq!(
            decode_utf8_addr("jörg@bücher.example").unwrap(),
            "jörg@bücher.example"
        );
        assert_eq!(decode_utf8_addr("\\x{1F600}").unwrap(), "😀");
        for bad in [
            "a+b",
            "a=b",
            "a\\b",
            "\\x",
            "\\x{",
            "\\x{}",
            "\\x{G}",
            "\\x{1234567}",
            "\\x{D800}",
            "\\x{110000}",
            "\\X{41}",
            "a b",
        ] {
            assert_eq!(decode_utf8_addr(bad), Err(DsnError::BadXtext), "{bad:?}");
        }
    }

    #[test]
    fn ret_values() {
        assert_eq!(DsnRet::parse("FULL"), Ok(DsnRet::Full));
        assert_eq!(DsnRet::parse("hdrs"), Ok(DsnRet::Headers));
        assert_eq!(DsnRet::parse("Hdrs"), Ok(DsnRet::Headers));
        assert_eq!(DsnRet::parse("HEADERS"), Err(DsnError::Ret));
        assert_eq!(DsnRet::Full.as_str(), "FULL");
        assert_eq!(DsnRet::Headers.as_str(), "HDRS");
    }

    #[test]
    fn notify_values() {
        assert_eq!(Notify::parse("NEVER"), Ok(Notify::NEVER));
        assert_eq!(Notify::parse("never"), Ok(Notify::NEVER));
        assert_eq!(
            Notify::parse("delay,Success"),
            Ok(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(
            Notify::parse("FAILURE,FAILURE").unwrap().to_string(),
            "FAILURE"
        );
        for bad in [
            "",
            ",",
            "SUCCESS,",
            ",DELAY",
            "SUCCESS,,DELAY",
            "ALWAYS",
            "SUCCESS DELAY",
        ] {
            assert_eq!(Notify::parse(bad), Err(DsnError::Notify), "{bad:?}");
        }
        assert_eq!(Notify::parse("NEVER,SUCCESS"), Err(DsnError::NeverCombined));
        assert_eq!(Notify::parse("DELAY,never"), Err(DsnError::NeverCombined));
        // Display: the stored form, in a fixed order.
        assert_eq!(Notify::NEVER.to_string(), "NEVER");
        assert_eq!(
            Notify::parse("DELAY,FAILURE,SUCCESS").unwrap().to_string(),
            "SUCCESS,FAILURE,DELAY"
        );
        assert_eq!(
            Notify::parse("failure,success").unwrap().to_string(),
            "SUCCESS,FAILURE"
        );
    }

    #[test]
    fn orcpt_values() {
        let o = Orcpt::parse("rfc822;bob+2Btag@example.com").unwrap();
        assert_eq!(o.addr_type, AddrType::Rfc822);
        assert_eq!(o.address, "bob+tag@example.com");
        assert_eq!(o.to_string(), "rfc822;bob+tag@example.com");
        let o = Orcpt::parse("RFC822;a+20b@x").unwrap();
        assert_eq!(o.to_string(), "rfc822;a b@x");
        let o = Orcpt::parse("UTF-8;j\\x{F6}rg@example.com").unwrap();
        assert_eq!(o.addr_type, AddrType::Utf8);
        assert_eq!(o.to_string(), "utf-8;jörg@example.com");
        // An ASCII address may come as utf-8: the type is kept.
        assert_eq!(
            Orcpt::parse("utf-8;bob@example.com").unwrap().to_string(),
            "utf-8;bob@example.com"
        );
        assert_eq!(Orcpt::parse("bob@example.com"), Err(DsnError::Orcpt));
        assert_eq!(Orcpt::parse("rfc822;"), Err(DsnError::Orcpt));
        assert_eq!(Orcpt::parse("x400;c=us"), Err(DsnError::AddrType));
        assert_eq!(Orcpt::parse(";a@b"), Err(DsnError::AddrType));
        assert_eq!(Orcpt::parse("rfc822;a+2"), Err(DsnError::BadXtext));
        assert_eq!(Orcpt::parse("rfc822;jörg@x"), Err(DsnError::BadXtext));
        assert_eq!(Orcpt::parse("rfc822;a+0Db@x"), Err(DsnError::NotPrintable));
        assert_eq!(
            Orcpt::parse("rfc822;j+C3+B6rg@x"),
            Err(DsnError::NotPrintable)
        );
        assert_eq!(Orcpt::parse("utf-8;a\\x{7}b"), Err(DsnError::Control));
        assert_eq!(Orcpt::parse("utf-8;a\\x{85}b"), Err(DsnError::Control));
        // Length: the value as sent, in characters.
        let max = format!("rfc822;{}@x", "a".repeat(ORCPT_MAX - 9));
        assert_eq!(max.len(), ORCPT_MAX);
        assert!(Orcpt::parse(&max).is_ok());
        let over = format!("rfc822;{}@x", "a".repeat(ORCPT_MAX - 8));
        assert_eq!(Orcpt::parse(&over), Err(DsnError::TooLong(ORCPT_MAX)));
        let utf8 = format!("utf-8;{}@x", "é".repeat(ORCPT_MAX - 8));
        assert_eq!(utf8.chars().count(), ORCPT_MAX);
        assert!(Orcpt::parse(&utf8).is_ok());
    }

    #[test]
    fn envid_values() {
        assert_eq!(parse_envid("QQ314159").unwrap(), "QQ314159");
        assert_eq!(parse_envid("a+2Bb+20c").unwrap(), "a+b c");
        assert_eq!(
            parse_envid(&"x".repeat(ENVID_MAX)).unwrap().len(),
            ENVID_MAX
        );
        assert_eq!(
            parse_envid(&"x".repeat(ENVID_MAX + 1)),
            Err(DsnError::TooLong(ENVID_MAX))
        );
        assert_eq!(parse_envid("a+2"), Err(DsnError::BadXtext));
        assert_eq!(parse_envid("a+0Ab"), Err(DsnError::NotPrintable));
        assert_eq!(parse_envid("+7F"), Err(DsnError::NotPrintable));
        assert_eq!(parse_envid("+C3+A9"), Err(DsnError::NotPrintable));
    }

    #[test]
    fn stored_strings() {
        assert_eq!(RcptDsn::default().to_strings(), (None, None));
        let d = RcptDsn {
            notify: Some(Notify::parse("FAILURE,SUCCESS").unwrap()),
            orcpt: Some(Orcpt::parse("rfc822;bob@example.com").unwrap()),
        };
        assert_eq!(
            d.to_strings(),
            (
                Some("SUCCESS,FAILURE".to_string()),
                Some("rfc822;bob@example.com".to_string())
            )
        );
        let d = RcptDsn {
            notify: Some(Notify::NEVER),
            orcpt: None,
        };
        assert_eq!(d.to_strings(), (Some("NEVER".to_string()), None));
    }
}
