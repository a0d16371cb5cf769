//! Where mail for a domain goes: MX resolution per RFC 5321 section 5.1, null MX (RFC 7505),
//! implicit MX, CNAME chains (RFC 1034 3.6.2; RFC 2181 10.3 forbids MX targets that are aliases,
//! but they are common and followed), and loop detection (our own host among the MX hosts).
//!
//! [`Router`] does the DNS queries with hickory-resolver over UDP with TCP fallback (or TCP only)
//! against the system's or configured nameservers. The decisions — ordering, null MX, pruning
//! of the local host, classifying errors as permanent or transient — are pure functions here, so
//! they are unit-tested without DNS.

use std::net::IpAddr;

use std::sync::Arc;

use hato_dns::hickory_resolver::net::NetError;
use hato_dns::{Answer, HickoryResolver, Resolver, absolute, normalize};
use rand::Rng;
use rand::seq::SliceRandom;

/// Which address families are tried, in which order, for each MX host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressOrder {
    /// IPv6 addresses first, then IPv4 (the default).
    #[default]
    Ipv6First,
    Ipv4First,
    Ipv4Only,
    Ipv6Only,
}

/// One host to try, with its addresses in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Lower-case, without the trailing dot.
    pub name: String,
    pub preference: u16,
    pub addresses: Vec<IpAddr>,
}

/// The hosts for a domain, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub domain: String,
    /// True when the domain had no MX and its own addresses are used (RFC 5321 5.1).
    pub implicit: bool,
    pub hosts: Vec<MxHost>,
}

/// Why no route was found. [`RouteError::is_permanent`] decides bounce or retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// RFC 7505 null MX: the domain accepts no mail.
    #[error("{domain} does not accept mail (null MX)")]
    NullMx { domain: String },
    /// NXDOMAIN for the domain itself.
    #[error("domain {domain} does not exist")]
    NoSuchDomain { domain: String },
    /// Not a valid domain name.
    #[error("invalid domain name {domain:?}")]
    InvalidDomain { domain: String },
    /// The domain exists but neither it (no MX) nor any of its MX hosts has an address.
    #[error("no mail host for {domain}: {detail}")]
    NoMailHost { domain: String, detail: String },
    /// The best MX host is this server itself (RFC 5321 5.1): delivering would loop.
    #[error("mail for {domain} loops back to myself ({host})")]
    Loop { domain: String, host: String },
    /// SERVFAIL, REFUSED, timeout, network error: try again later.
    #[error("DNS lookup for {domain} failed temporarily: {detail}")]
    Temporary { domain: String, detail: String },
}

impl RouteError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, RouteError::Temporary { .. })
    }

    /// SMTP reply code for logs and DSNs.
    pub fn reply_code(&self) -> u16 {
        match self {
            RouteError::NullMx { .. } => 556,
            RouteError::Loop { .. } => 554,
            RouteError::Temporary { .. } => 451,
            _ => 550,
        }
    }

    /// RFC 3463 enhanced status code.
    pub fn status(&self) -> &'static str {
        match self {
            RouteError::NullMx { .. } => "5.1.10",
            RouteError::NoSuchDomain { .. } | RouteError::InvalidDomain { .. } => "5.1.2",
            RouteError::NoMailHost { .. } => "5.4.4",
            RouteError::Loop { .. } => "5.4.6",
            RouteError::Temporary { .. } => "4.4.3",
        }
    }

    /// `code status text`, the form used in `last_error` and `Diagnostic-Code`.
    pub fn diagnostic(&self) -> String {
        format!("{} {} {self}", self.reply_code(), self.status())
    }
}

/// How hato recognises itself among MX hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalIdentity {
    /// hato's host names (e.g. `hostname` from the configuration); compared case-insensitively.
    pub hostnames: Vec<String>,
    /// Addresses hato listens on (unspecified addresses always count as local).
    pub addresses: Vec<IpAddr>,
}

impl LocalIdentity {
    /// Whether a host with this name or one of these addresses is this server.
    pub fn is_local(&self, host: &str, addresses: &[IpAddr]) -> bool {
        let host = normalize(host);
        self.hostnames.iter().any(|h| normalize(h) == host)
            || addresses
                .iter()
                .any(|a| a.is_unspecified() || self.addresses.contains(a))
    }
}

/// Drops this server and every host of equal or worse preference from a route (RFC 5321 5.1:
/// "if the SMTP client finds its own name among the MX records, it MUST discard it and all
/// records with equal or higher preference"). Nothing left: [`RouteError::Loop`].
pub fn prune_self(mut route: Route, me: &LocalIdentity) -> Result<Route, RouteError> {
    let own = route
        .hosts
        .iter()
        .filter(|h| me.is_local(&h.name, &h.addresses))
        .map(|h| h.preference)
        .min();
    if let Some(own) = own {
        let host = route
            .hosts
            .iter()
            .find(|h| h.preference == own && me.is_local(&h.name, &h.addresses))
            .map(|h| h.name.clone())
            .unwrap_or_default();
        route.hosts.retain(|h| h.preference < own);
        if route.hosts.is_empty() {
            return Err(RouteError::Loop {
                domain: route.domain,
                host,
            });
        }
    }
    Ok(route)
}

/// MX records as (preference, host) in the order to try them: ascending preference, random
/// order among equal preferences (RFC 5321 5.1), duplicates removed. Host names are normalised.
pub fn order_mx<R: Rng + ?Sized>(records: &[(u16, String)], rng: &mut R) -> Vec<(u16, String)> {
    let mut records: Vec<(u16, String)> = records.iter().map(|(p, h)| (*p, normalize(h))).collect();
    records.sort();
    records.dedup_by(|a, b| a.1 == b.1);
    records.shuffle(rng);
    // Stable sort by preference keeps the random order within each preference.
    records.sort_by_key(|(p, _)| *p);
    records
}

/// RFC 7505: an MX whose exchange is the root (`.`) says the domain accepts no mail. hato treats
/// any such record as a null MX, even next to other (misconfigured) MX records.
pub fn is_null_mx(records: &[(u16, String)]) -> bool {
    records.iter().any(|(_, host)| normalize(host).is_empty())
}

/// Most `Received` header fields a message may carry before it is considered looping
/// (RFC 5321 6.3; Postfix `hopcount_limit`).
pub const MAX_HOPS: usize = 50;

/// The number of `Received:` fields in a message's header (RFC 5321 6.3 loop detection: above
/// [`MAX_HOPS`] the message is bounced with 554 5.4.6 instead of relayed again).
pub fn received_count(message: &[u8]) -> usize {
    let mut count = 0;
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        if at_line_start {
            let rest = &message[i..];
            // The empty line ends the header.
            if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
                break;
            }
            if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"received:") {
                count += 1;
            }
        }
        at_line_start = message[i] == b'\n';
        i += 1;
    }
    count
}

/// Orders one host's addresses by family.
pub fn order_addresses(mut addresses: Vec<IpAddr>, order: AddressOrder) -> Vec<IpAddr> {
    match order {
        AddressOrder::Ipv6First => addresses.sort_by_key(|a| a.is_ipv4()),
        AddressOrder::Ipv4First => addresses.sort_by_key(|a| a.is_ipv6()),
        AddressOrder::Ipv4Only => addresses.retain(IpAddr::is_ipv4),
        AddressOrder::Ipv6Only => addresses.retain(IpAddr::is_ipv6),
    }
    let mut seen = Vec::with_capacity(addresses.len());
    addresses.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    addresses
}

pub use hato_dns::DnsConfig;

/// MX resolution against DNS.
#[derive(Clone)]
pub struct Router {
    dns: Arc<dyn Resolver>,
    order: AddressOrder,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with the configured (or the system's) nameservers. Needs a tokio runtime.
    pub fn new(config: &DnsConfig, order: AddressOrder) -> Result<Router, NetError> {
        Ok(Router::with_resolver(
            Arc::new(HickoryResolver::new(config)?),
            order,
        ))
    }

    /// A router over a resolver the caller built (the server's shared one, or a test's).
    pub fn with_resolver(dns: Arc<dyn Resolver>, order: AddressOrder) -> Router {
        Router { dns, order }
    }

    /// The hosts to try for `domain`, best first, each with its addresses.
    pub async fn route(&self, domain: &str) -> Result<Route, RouteError> {
        let domain = normalize(domain);
        if absolute(&domain).is_none() {
            return Err(RouteError::InvalidDomain { domain });
        }
        let records = match self.dns.mx(&domain).await {
            Answer::Found(records) => records,
            Answer::NoData => Vec::new(),
            Answer::NxDomain => return Err(RouteError::NoSuchDomain { domain }),
            Answer::Failed(detail) => return Err(RouteError::Temporary { domain, detail }),
        };
        if is_null_mx(&records) {
            return Err(RouteError::NullMx { domain });
        }
        if records.is_empty() {
            // Implicit MX: the domain itself with preference 0.
            return match self.addresses(&domain).await {
                Answer::Found(addresses) => Ok(Route {
                    hosts: vec![MxHost {
                        name: domain.clone(),
                        preference: 0,
                        addresses,
                    }],
                    domain,
                    implicit: true,
                }),
                Answer::NoData => Err(RouteError::NoMailHost {
                    domain,
                    detail: "no MX and no A/AAAA records".into(),
                }),
                Answer::NxDomain => Err(RouteError::NoSuchDomain { domain }),
                Answer::Failed(detail) => Err(RouteError::Temporary { domain, detail }),
            };
        }

        let ordered = order_mx(&records, &mut rand::rng());
        let mut lookups = tokio::task::JoinSet::new();
        for (index, (_, host)) in ordered.iter().enumerate() {
            let router = self.clone();
            let host = host.clone();
            lookups.spawn(async move {
                let answer = match absolute(&host) {
                    Some(_) => router.addresses(&host).await,
                    None => Answer::NxDomain,
                };
                (index, answer)
            });
        }
        let mut answers: Vec<Option<Answer<IpAddr>>> = (0..ordered.len()).map(|_| None).collect();
        while let Some(joined) = lookups.join_next().await {
            let (index, answer) = joined.map_err(|e| RouteError::Temporary {
                domain: domain.clone(),
                detail: format!("lookup task failed: {e}"),
            })?;
            answers[index] = Some(answer);
        }
        let mut hosts = Vec::new();
        let mut problems = Vec::new();
        let mut temporary = false;
        for ((preference, host), answer) in ordered.into_iter().zip(answers) {
            match answer {
                Some(Answer::Found(addresses)) => hosts.push(MxHost {
                    name: host,
                    preference,
                    addresses,
                }),
                Some(Answer::NoData) => problems.push(format!("{host}: no A/AAAA records")),
                Some(Answer::NxDomain) | None => problems.push(format!("{host}: no such host")),
                Some(Answer::Failed(detail)) => {
                    temporary = true;
                    problems.push(format!("{host}: {detail}"));
                }
            }
        }
        if hosts.is_empty() {
            let detail = problems.join("; ");
            return Err(if temporary {
                RouteError::Temporary { domain, detail }
            } else {
                RouteError::NoMailHost { domain, detail }
            });
        }
        Ok(Route {
            domain,
            implicit: false,
            hosts,
        })
    }

    /// The TXT records of `name` (e.g. `_mta-sts.<domain>`, `_smtp._tls.<domain>`), each
    /// record's strings concatenated (RFC 8461 3.1). NXDOMAIN and no records: empty. `Err` is a
    /// temporary failure (SERVFAIL, timeout): the caller decides (for MTA-STS: use the cached
    /// policy).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let name = normalize(name);
        if absolute(&name).is_none() {
            return Err(format!("invalid name {name:?}"));
        }
        match self.dns.txt(&name).await {
            Answer::Found(records) => Ok(records),
            Answer::NxDomain | Answer::NoData => Ok(Vec::new()),
            Answer::Failed(detail) => Err(detail),
        }
    }

    /// The addresses of a host name (A and AAAA, CNAMEs followed, in the router's
    /// [`AddressOrder`]), e.g. `mta-sts.<domain>` for the MTA-STS policy fetch. NXDOMAIN and no
    /// records: empty. `Err` is a temporary failure (SERVFAIL, timeout) or an invalid name.
    pub async fn host_addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let host = normalize(host);
        if absolute(&host).is_none() {
            return Err(format!("invalid name {host:?}"));
        }
        match self.addresses(&host).await {
            Answer::Found(addresses) => Ok(addresses),
            Answer::NoData | Answer::NxDomain => Ok(Vec::new()),
            Answer::Failed(detail) => Err(detail),
        }
    }

    /// The forward-confirmed reverse DNS name of `ip` (FCrDNS, RFC 8601 2.7.3): a PTR name
    /// whose A/AAAA records include `ip`, lower case without the final dot. None when there is
    /// no PTR, none confirms, or the lookups fail (the caller shows the address only).
    pub async fn reverse_name(&self, ip: IpAddr) -> Option<String> {
        hato_dns::confirmed_reverse_name(self.dns.as_ref(), ip).await
    }

    /// A and AAAA of `name`, in the router's [`AddressOrder`].
    async fn addresses(&self, name: &str) -> Answer<IpAddr> {
        let v4 = self.order != AddressOrder::Ipv6Only;
        let v6 = self.order != AddressOrder::Ipv4Only;
        match hato_dns::addresses(self.dns.as_ref(), name, v4, v6).await {
            Answer::Found(found) => Answer::Found(order_addresses(found, self.order)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn mx(records: &[(u16, &str)]) -> Vec<(u16, String)> {
        records.iter().map(|(p, h)| (*p, h.to_string())).collect()
    }

    #[test]
    fn mx_order_by_preference_random_among_equals() {
        let records = mx(&[
            (20, "c.example."),
            (10, "A.example."),
            (10, "b.example"),
            (30, "d.example."),
            (10, "a.example"),
        ]);
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let ordered = order_mx(&records, &mut StdRng::seed_from_u64(seed));
            let prefs: Vec<u16> = ordered.iter().map(|(p, _)| *p).collect();
            assert_eq!(prefs, vec![10, 10, 20, 30], "duplicate a.example removed");
            assert_eq!(ordered[2].1, "c.example");
            assert_eq!(ordered[3].1, "d.example");
            firsts.insert(ordered[0].1.clone());
        }
        assert_eq!(
            firsts.len(),
            2,
            "both preference-10 hosts come first sometimes"
        );
    }

    #[test]
    fn null_mx() {
        assert!(is_null_mx(&mx(&[(0, ".")])));
        assert!(is_null_mx(&mx(&[(0, "")])));
        assert!(is_null_mx(&mx(&[(10, "mx.example."), (0, ".")])));
        assert!(!is_null_mx(&mx(&[(0, "mx.example.")])));
        assert!(!is_null_mx(&[]));
    }

    #[test]
    fn address_order() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v4b: IpAddr = "192.0.2.2".parse().unwrap();
        let all = vec![v4, v6, v4b, v4];
        assert_eq!(
            order_addresses(all.clone(), AddressOrder::Ipv6First),
            vec![v6, v4, v4b]
        );
        assert_eq!(
            order_addresses(all.clone(), AddressOrder::Ipv4First),
            vec![v4, v4b, v6]
        );
        assert_eq!(
            order_addresses(all.clone(), AddressOrder::Ipv4Only),
            vec![v4, v4b]
        );
        assert_eq!(order_addresses(all, AddressOrder::Ipv6Only), vec![v6]);
    }

    fn host(name: &str, preference: u16, address: &str) -> MxHost {
        MxHost {
            name: name.into(),
            preference,
            addresses: vec![address.parse().unwrap()],
        }
    }

    #[test]
    fn prune_self_per_rfc5321() {
        let route = Route {
            domain: "example.org".into(),
            implicit: false,
            hosts: vec![
                host("mx1.example.org", 10, "192.0.2.1"),
                host("mx2.example.org", 20, "192.0.2.2"),
                host("backup.example.org", 20, "192.0.2.3"),
                host("last.example.org", 30, "192.0.2.4"),
            ],
        };
        // We are a backup MX (by name): only the better host remains.
        let me = LocalIdentity {
            hostnames: vec!["MX2.example.org.".into()],
            addresses: vec![],
        };
        let pruned = prune_self(route.clone(), &me).unwrap();
        let names: Vec<&str> = pruned.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["mx1.example.org"]);
        // We are the primary (by address): loop.
        let me = LocalIdentity {
            hostnames: vec!["mail.hato.example".into()],
            addresses: vec!["192.0.2.1".parse().unwrap()],
        };
        let err = prune_self(route.clone(), &me).unwrap_err();
        assert_eq!(
            err,
            RouteError::Loop {
                domain: "example.org".into(),
                host: "mx1.example.org".into()
            }
        );
        assert!(err.is_permanent());
        assert!(
            err.diagnostic().starts_with("554 5.4.6 "),
            "{}",
            err.diagnostic()
        );
        // Not us: unchanged. An unspecified address is always local.
        assert_eq!(
            prune_self(route.clone(), &LocalIdentity::default()).unwrap(),
            route
        );
        let mut odd = route;
        odd.hosts[0].addresses = vec!["0.0.0.0".parse().unwrap()];
        assert!(prune_self(odd, &LocalIdentity::default()).is_err());
    }

    #[test]
    fn error_classes() {
        let d = || "example.org".to_string();
        let cases = [
            (RouteError::NullMx { domain: d() }, 556, "5.1.10", true),
            (RouteError::NoSuchDomain { domain: d() }, 550, "5.1.2", true),
            (
                RouteError::InvalidDomain { domain: d() },
                550,
                "5.1.2",
                true,
            ),
            (
                RouteError::NoMailHost {
                    domain: d(),
                    detail: "x".into(),
                },
                550,
                "5.4.4",
                true,
            ),
            (
                RouteError::Temporary {
                    domain: d(),
                    detail: "SERVFAIL".into(),
                },
                451,
                "4.4.3",
                false,
            ),
        ];
        for (e, code, status, permanent) in cases {
            assert_eq!(
                (e.reply_code(), e.status(), e.is_permanent()),
                (code, status, permanent),
                "{e}"
            );
        }
    }

    #[test]
    fn received_fields_are_counted_in_the_header_only() {
        let msg = b"Received: from a\r\n\tby b\r\nRECEIVED: from c\r\nX-Received: no\r\n\
                    Subject: x\r\n\r\nReceived: in the body\r\n";
        assert_eq!(received_count(msg), 2);
        assert_eq!(
            received_count(b"Received: x\nReceived: y\n\nReceived: z\n"),
            2
        );
        assert_eq!(received_count(b""), 0);
        let many = "Received: x\r\n".repeat(MAX_HOPS + 1) + "\r\nbody";
        assert!(received_count(many.as_bytes()) > MAX_HOPS);
    }

    #[test]
    fn absolute_names() {
        assert_eq!(absolute("example.org").unwrap().to_ascii(), "example.org.");
        assert_eq!(
            absolute("bücher.example").unwrap().to_ascii(),
            "xn--bcher-kva.example."
        );
        assert!(absolute("").is_none());
        assert!(absolute("[192.0.2.1]").is_none());
    }
}
