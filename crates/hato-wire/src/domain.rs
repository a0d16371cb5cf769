//! Domain names as hato compares and stores them.

/// The lookup form of a domain: IDNA A-labels, lower case (UTS 46 mapping, RFC 5890), without
/// surrounding white space. An address literal (`[192.0.2.1]`, RFC 5321 4.1.3) is only
/// lower-cased. None for what cannot be a domain name.
pub fn normalize(domain: &str) -> Option<String> {
    let domain = domain.trim();
    if domain.starts_with('[') {
        return Some(domain.to_ascii_lowercase());
    }
    idna::domain_to_ascii(domain).ok().filter(|d| !d.is_empty())
}

/// The lookup form of an address: local part lower-cased, domain by [`normalize`].
pub fn normalize_address(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let domain = normalize(domain)?;
    Some(format!("{}@{domain}", local.to_lowercase()))
}

/// A host or domain name in LDH form (RFC 1123 2.1, RFC 5890 A-labels): labels of letters,
/// digits and hyphens, not starting or ending with a hyphen, at most 63 octets each and 253 in all.
pub fn is_ldh_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idna_and_case() {
        assert_eq!(normalize("Example.COM").as_deref(), Some("example.com"));
        assert_eq!(
            normalize("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(normalize("[IPv6:::1]").as_deref(), Some("[ipv6:::1]"));
        assert_eq!(normalize(""), None);
        assert_eq!(
            normalize_address("Alice@Bücher.example").as_deref(),
            Some("alice@xn--bcher-kva.example")
        );
        assert_eq!(normalize_address("no-at-sign"), None);
        assert!(is_ldh_name("mail.example.com"));
        assert!(is_ldh_name("xn--bcher-kva.example"));
        assert!(!is_ldh_name("-bad.example"));
        assert!(!is_ldh_name("a..b"));
        assert!(!is_ldh_name("under_score.example"));
        assert!(!is_ldh_name(&"a".repeat(64)));
    }
}
