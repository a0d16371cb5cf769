//! Command line syntax (RFC 1939 §3, RFC 2449 §3): a case-insensitive keyword,
//! then arguments separated by spaces.

/// The command keywords the session knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verb {
    Capa,
    User,
    Pass,
    Auth,
    Stls,
    Apop,
    Stat,
    List,
    Uidl,
    Retr,
    Top,
    Dele,
    Rset,
    Noop,
    Quit,
    /// An HTTP request or header line (cross-protocol attack, see the session docs).
    Http,
    Unknown,
}

/// HTTP methods (RFC 9110 §9, plus the HTTP/2 preface `PRI`).
const HTTP_METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI",
];

/// Splits a command line into its keyword and the rest after the first space.
pub(super) fn split_verb(line: &str) -> (Verb, &str) {
    let (word, args) = line.split_once(' ').unwrap_or((line, ""));
    let verb = match word.to_ascii_uppercase().as_str() {
        "CAPA" => Verb::Capa,
        "USER" => Verb::User,
        "PASS" => Verb::Pass,
        "AUTH" => Verb::Auth,
        "STLS" => Verb::Stls,
        "APOP" => Verb::Apop,
        "STAT" => Verb::Stat,
        "LIST" => Verb::List,
        "UIDL" => Verb::Uidl,
        "RETR" => Verb::Retr,
        "TOP" => Verb::Top,
        "DELE" => Verb::Dele,
        "RSET" => Verb::Rset,
        "NOOP" => Verb::Noop,
        "QUIT" => Verb::Quit,
        w if HTTP_METHODS.contains(&w) || (w.len() > 1 && w.ends_with(':')) => Verb::Http,
        _ => Verb::Unknown,
    };
    (verb, args)
}

/// Space-separated arguments (runs of spaces are tolerated).
pub(super) fn arguments(args: &str) -> Vec<&str> {
    args.split(' ').filter(|a| !a.is_empty()).collect()
}

/// A decimal number argument (RFC 1939 §3: message numbers and line counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Number {
    /// Not a plain decimal number: empty, a sign, a non-digit, or a leading zero.
    Invalid,
    /// Well-formed but larger than `u64::MAX`.
    Huge,
    Value(u64),
}

/// Parses `1*DIGIT` without leading zeros (`0` itself is allowed). Rust's own
/// parser would also accept `+1`, which is not a POP3 number.
pub(super) fn number(s: &str) -> Number {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Number::Invalid;
    }
    match s.parse::<u64>() {
        Ok(v) => Number::Value(v),
        Err(_) => Number::Huge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(split_verb("retr 1"), (Verb::Retr, "1"));
        assert_eq!(split_verb("ReTr 1"), (Verb::Retr, "1"));
        assert_eq!(split_verb("QUIT"), (Verb::Quit, ""));
        assert_eq!(split_verb("QUIT "), (Verb::Quit, ""));
        assert_eq!(split_verb("top 1 2"), (Verb::Top, "1 2"));
        assert_eq!(split_verb("PASS  two spaces"), (Verb::Pass, " two spaces"));
    }

    #[test]
    fn unknown_and_http() {
        assert_eq!(split_verb("").0, Verb::Unknown);
        assert_eq!(split_verb("XTND XMIT").0, Verb::Unknown);
        assert_eq!(split_verb("QUITX").0, Verb::Unknown);
        assert_eq!(split_verb("DELETE /x HTTP/1.1").0, Verb::Http);
        assert_eq!(split_verb("DELE 1").0, Verb::Dele);
        assert_eq!(split_verb("GET / HTTP/1.1").0, Verb::Http);
        assert_eq!(split_verb("POST / HTTP/1.1").0, Verb::Http);
        assert_eq!(split_verb("PRI * HTTP/2.0").0, Verb::Http);
        assert_eq!(split_verb("Host: example").0, Verb::Http);
        assert_eq!(split_verb(":").0, Verb::Unknown);
    }

    #[test]
    fn argument_splitting() {
        assert_eq!(arguments(""), Vec::<&str>::new());
        assert_eq!(arguments("1"), ["1"]);
        assert_eq!(arguments(" 1  2 "), ["1", "2"]);
    }

    #[test]
    fn numbers() {
        assert_eq!(number("1"), Number::Value(1));
        assert_eq!(number("0"), Number::Value(0));
        assert_eq!(number("42"), Number::Value(42));
        assert_eq!(number("18446744073709551615"), Number::Value(u64::MAX));
        assert_eq!(number("18446744073709551616"), Number::Huge);
        assert_eq!(number("99999999999999999999999999999999"), Number::Huge);
        for bad in [
            "", "01", "00", "+1", "-1", "1a", "a", " 1", "1 ", "0x1", "1.0", "١",
        ] {
            assert_eq!(number(bad), Number::Invalid, "{bad:?}");
        }
    }
}
