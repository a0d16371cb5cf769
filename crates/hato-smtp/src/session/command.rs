//! Command-line syntax: RFC 5321 §4.1.1 (verbs), §4.1.2 (`Reverse-path`,
//! `Forward-path`, `Path`, `A-d-l` source routes, `Mail-parameters`,
//! `Rcpt-parameters`, `esmtp-param`), RFC 1869 §4.1.2 (parameter syntax) and
//! RFC 3030 §2 (`BDAT chunk-size [LAST]`).
//!
//! These functions are pure: they get one command line (CRLF already removed,
//! already checked for control characters and UTF-8) and return what it says.

use crate::address::{Address, AddressError, is_valid_domain};

/// A command verb (case-insensitive on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
    /// An HTTP method: a cross-protocol request (browser, proxy) hitting the SMTP port.
    Http,
    Unknown,
}

/// Splits a command line into verb and argument string.
///
/// The verb ends at the first space; the argument has leading and trailing spaces
/// removed (clients commonly send a trailing space).
pub(super) fn split_verb(line: &str) -> (Verb, &str) {
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let args = args.trim_matches(' ');
    let v = match verb.to_ascii_uppercase().as_str() {
        "EHLO" => Verb::Ehlo,
        "HELO" => Verb::Helo,
        "MAIL" => Verb::Mail,
        "RCPT" => Verb::Rcpt,
        "DATA" => Verb::Data,
        "BDAT" => Verb::Bdat,
        "RSET" => Verb::Rset,
        "NOOP" => Verb::Noop,
        "QUIT" => Verb::Quit,
        "VRFY" => Verb::Vrfy,
        "EXPN" => Verb::Expn,
        "HELP" => Verb::Help,
        "STARTTLS" => Verb::StartTls,
        "AUTH" => Verb::Auth,
        "GET" | "POST" | "PUT" | "HEAD" | "CONNECT" | "OPTIONS" | "DELETE" => Verb::Http,
        _ => Verb::Unknown,
    };
    (v, args)
}

/// Why a `MAIL FROM:`/`RCPT TO:` argument failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PathError {
    /// `FROM:`/`TO:` missing.
    Syntax,
    /// Missing or unbalanced angle brackets, bad source route, bad mailbox.
    Path,
    /// Malformed `esmtp-param` list.
    Params,
}

/// `MAIL FROM:<path> params` / `RCPT TO:<path> params`, split into the text between
/// the angle brackets and the parameter list.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PathArg<'a> {
    pub inner: &'a str,
    pub params: Vec<Param<'a>>,
}

/// One `esmtp-param`: `keyword[=value]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Param<'a> {
    pub keyword: &'a str,
    pub value: Option<&'a str>,
}

/// Parses `FROM:<...> params` (or `TO:<...> params`); `prefix` is `"FROM:"`/`"TO:"`.
///
/// Spaces between the colon and `<` are tolerated (a common client deviation that
/// is unambiguous); a path without angle brackets is not.
pub(super) fn parse_path_arg<'a>(arg: &'a str, prefix: &str) -> Result<PathArg<'a>, PathError> {
    let p = prefix.len();
    if arg.len() < p || !arg.as_bytes()[..p].eq_ignore_ascii_case(prefix.as_bytes()) {
        return Err(PathError::Syntax);
    }
    // `prefix` is ASCII and matched byte-for-byte, so `p` is a char boundary.
    let rest = arg[p..].trim_start_matches(' ');
    let Some(body) = rest.strip_prefix('<') else {
        return Err(PathError::Path);
    };
    // Find the closing '>' outside of quoted strings.
    let mut in_quote = false;
    let mut escaped = false;
    let mut close = None;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => {
                close = Some(i);
                break;
            }
            '<' if !in_quote => return Err(PathError::Path),
            _ => {}
        }
    }
    let close = close.ok_or(PathError::Path)?;
    let inner = &body[..close];
    let after = &body[close + 1..];
    if !after.is_empty() && !after.starts_with(' ') {
        return Err(PathError::Path);
    }
    let params = parse_params(after)?;
    Ok(PathArg { inner, params })
}

/// RFC 5321 `Mail-parameters` = esmtp-param *(SP esmtp-param)
/// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
/// esmtp-value = 1*(%d33-60 / %d62-126) (plus UTF-8, RFC 6531 §3.3)
fn parse_params(s: &str) -> Result<Vec<Param<'_>>, PathError> {
    let mut out = Vec::new();
    for tok in s.split(' ').filter(|t| !t.is_empty()) {
        let (keyword, value) = match tok.find('=') {
            Some(i) => (&tok[..i], Some(&tok[i + 1..])),
            None => (tok, None),
        };
        let kw_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c != '=' && (('!'..='~').contains(&c) || !c.is_ascii()))
        });
        if !kw_ok || !value_ok {
            return Err(PathError::Params);
        }
        out.push(Param { keyword, value });
    }
    Ok(out)
}

/// Strips an RFC 5321 source route (`@a,@b:`) from a path, validating its syntax.
/// RFC 5321 §3.3 / Appendix C: the route is accepted and ignored; the final
/// mailbox is what counts.
fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(AddressError::InvalidLocalPart)?;
    let route = &inner[..colon];
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::InvalidDomain)?;
        if !is_valid_domain(domain) {
            return Err(AddressError::InvalidDomain);
        }
    }
    Ok(&inner[colon + 1..])
}

/// `Reverse-path = Path / "<>"`: `Ok(None)` is the null reverse-path.
pub(super) fn parse_reverse_path(inner: &str) -> Result<Option<Address>, AddressError> {
    if inner.is_empty() {
        return Ok(None);
    }
    Address::parse(strip_source_route(inner)?).map(Some)
}

/// `Forward-path = Path`, plus the special `<Postmaster>` (no domain), which is
/// returned as `Postmaster@<server_domain>`.
pub(super) fn parse_forward_path(
    inner: &str,
    server_domain: &str,
) -> Result<Address, AddressError> {
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(Address::postmaster(server_domain));
    }
    if inner.is_empty() {
        return Err(AddressError::Empty);
    }
    Address::parse(strip_source_route(inner)?)
}

/// Why a BDAT command failed to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BdatError {
    /// The chunk size itself is unreadable: the session cannot know where the chunk
    /// ends.
    BadSize,
    /// The size was readable (so the chunk can be skipped) but the rest is not.
    BadSyntax(u64),
}

/// `BDAT SP chunk-size [SP end-marker]`, chunk-size = 1*DIGIT, end-marker = "LAST".
/// A size that does not fit in `u64` saturates (it is certainly over any limit).
pub(super) fn parse_bdat(args: &str) -> Result<(u64, bool), BdatError> {
    let mut toks = args.split(' ').filter(|t| !t.is_empty());
    let size = toks.next().ok_or(BdatError::BadSize)?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BdatError::BadSize);
    }
    let n = size.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    let last = match toks.next() {
        None => false,
        Some(t) if t.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(BdatError::BadSyntax(n)),
    };
    if toks.next().is_some() {
        return Err(BdatError::BadSyntax(n));
    }
    Ok((n, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(split_verb("ehlo x.example"), (Verb::Ehlo, "x.example"));
        assert_eq!(split_verb("MaIl FROM:<a@b>"), (Verb::Mail, "FROM:<a@b>"));
        assert_eq!(split_verb("DATA"), (Verb::Data, ""));
        assert_eq!(split_verb("DATA "), (Verb::Data, ""));
        assert_eq!(split_verb("NOOP  a b "), (Verb::Noop, "a b"));
        assert_eq!(split_verb("starttls"), (Verb::StartTls, ""));
        assert_eq!(split_verb("GET / HTTP/1.1"), (Verb::Http, "/ HTTP/1.1"));
        assert_eq!(split_verb("MAILX"), (Verb::Unknown, ""));
        assert_eq!(split_verb(" MAIL"), (Verb::Unknown, "MAIL"));
        assert_eq!(split_verb(""), (Verb::Unknown, ""));
        assert_eq!(split_verb("ÉHLO x"), (Verb::Unknown, "x"));
    }

    #[test]
    fn path_args() {
        let p = parse_path_arg("FROM:<a@b>", "FROM:").unwrap();
        assert_eq!(p.inner, "a@b");
        assert!(p.params.is_empty());
        let p = parse_path_arg("from: <a@b> SIZE=10  BODY=8BITMIME SMTPUTF8", "FROM:").unwrap();
        assert_eq!(p.inner, "a@b");
        assert_eq!(
            p.params,
            vec![
                Param {
                    keyword: "SIZE",
                    value: Some("10")
                },
                Param {
                    keyword: "BODY",
                    value: Some("8BITMIME")
                },
                Param {
                    keyword: "SMTPUTF8",
                    value: None
                },
            ]
        );
        let p = parse_path_arg("FROM:<>", "FROM:").unwrap();
        assert_eq!(p.inner, "");
        let p = parse_path_arg("TO:<\"a>b\"@c> X=Y", "TO:").unwrap();
        assert_eq!(p.inner, "\"a>b\"@c");
        let p = parse_path_arg("TO:<\"a\\\">b\"@c>", "TO:").unwrap();
        assert_eq!(p.inner, "\"a\\\">b\"@c");
        let p = parse_path_arg("FROM:<a@b> AUTH=<>", "FROM:").unwrap();
        assert_eq!(
            p.params,
            vec![Param {
                keyword: "AUTH",
                value: Some("<>")
            }]
        );
    }

    #[test]
    fn path_arg_errors() {
        assert_eq!(
            parse_path_arg("FROM <a@b>", "FROM:"),
            Err(PathError::Syntax)
        );
        assert_eq!(parse_path_arg("TO:<a@b>", "FROM:"), Err(PathError::Syntax));
        assert_eq!(parse_path_arg("FRO", "FROM:"), Err(PathError::Syntax));
        assert_eq!(parse_path_arg("FROMÉ<a>", "FROM:"), Err(PathError::Syntax));
        assert_eq!(parse_path_arg("FROM:a@b", "FROM:"), Err(PathError::Path));
        assert_eq!(parse_path_arg("FROM:<a@b", "FROM:"), Err(PathError::Path));
        assert_eq!(parse_path_arg("FROM:<a@b>x", "FROM:"), Err(PathError::Path));
        assert_eq!(
            parse_path_arg("FROM:<<a@b>>", "FROM:"),
            Err(PathError::Path)
        );
        assert_eq!(
            parse_path_arg("FROM:<\"a@b>", "FROM:"),
            Err(PathError::Path)
        );
        assert_eq!(
            parse_path_arg("FROM:<a@b> =x", "FROM:"),
            Err(PathError::Params)
        );
        assert_eq!(
            parse_path_arg("FROM:<a@b> -X", "FROM:"),
            Err(PathError::Params)
        );
        assert_eq!(
            parse_path_arg("FROM:<a@b> X=", "FROM:"),
            Err(PathError::Params)
        );
        assert_eq!(
            parse_path_arg("FROM:<a@b> X=a=b", "FROM:"),
            Err(PathError::Params)
        );
        assert_eq!(
            parse_path_arg("FROM:<a@b> X_Y", "FROM:"),
            Err(PathError::Params)
        );
    }

    #[test]
    fn source_routes() {
        assert_eq!(
            parse_reverse_path("@a.example,@b.example:user@d.example")
                .unwrap()
                .unwrap()
                .to_string(),
            "user@d.example"
        );
        assert_eq!(
            parse_forward_path("@local:user@other", "mx")
                .unwrap()
                .to_string(),
            "user@other"
        );
        assert!(parse_forward_path("@:user@d", "mx").is_err());
        assert!(parse_forward_path("@a..b:user@d", "mx").is_err());
        assert!(parse_forward_path("@a,b:user@d", "mx").is_err());
        assert!(parse_forward_path("@a.example", "mx").is_err());
        assert!(parse_forward_path("@a:@b:user@d", "mx").is_err());
    }

    #[test]
    fn postmaster_and_null() {
        assert_eq!(parse_reverse_path("").unwrap(), None);
        assert_eq!(
            parse_forward_path("PostMaster", "mx.example")
                .unwrap()
                .to_string(),
            "Postmaster@mx.example"
        );
        assert_eq!(
            parse_forward_path("postmaster@other.example", "mx.example")
                .unwrap()
                .to_string(),
            "postmaster@other.example"
        );
        assert_eq!(parse_forward_path("", "mx"), Err(AddressError::Empty));
    }

    #[test]
    fn bdat_args() {
        assert_eq!(parse_bdat("10"), Ok((10, false)));
        assert_eq!(parse_bdat("0 LAST"), Ok((0, true)));
        assert_eq!(parse_bdat("7 last"), Ok((7, true)));
        assert_eq!(parse_bdat("99999999999999999999999"), Ok((u64::MAX, false)));
        assert_eq!(parse_bdat(""), Err(BdatError::BadSize));
        assert_eq!(parse_bdat("x"), Err(BdatError::BadSize));
        assert_eq!(parse_bdat("-1"), Err(BdatError::BadSize));
        assert_eq!(parse_bdat("+1"), Err(BdatError::BadSize));
        assert_eq!(parse_bdat("1x LAST"), Err(BdatError::BadSize));
        assert_eq!(parse_bdat("5 FIRST"), Err(BdatError::BadSyntax(5)));
        assert_eq!(parse_bdat("5 LAST LAST"), Err(BdatError::BadSyntax(5)));
    }
}
