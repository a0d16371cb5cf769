//! The lookups, as a trait over hickory so tests can substitute answers.

use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::DnsConfig;

/// How one DNS question ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(Vec<T>),
    /// NOERROR without records of the type (NODATA).
    NoData,
    NxDomain,
    /// SERVFAIL, REFUSED, timeout, network error: the caller may try again later.
    Failed(String),
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

/// DNS lookups. Names are domain names as text (IDNs in U- or A-labels, a trailing dot or
/// not); an invalid name is answered `NxDomain`.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// MX records: (preference, exchange), CNAMEs followed by the resolver.
    async fn mx(&self, name: &str) -> Answer<(u16, String)>;
    /// A or AAAA records, CNAMEs followed.
    async fn ip(&self, name: &str, family: Family) -> Answer<IpAddr>;
    /// TXT records, each record's strings concatenated (RFC 7208 3.3, RFC 8461 3.1).
    async fn txt(&self, name: &str) -> Answer<String>;
    /// PTR names of an address, lower case without the final dot.
    async fn ptr(&self, ip: IpAddr) -> Answer<String>;
}

/// A and AAAA of `name` (the families asked for; A first): found if either family has
/// addresses; otherwise NXDOMAIN only if every family says so, a failure if either failed.
pub async fn addresses(dns: &dyn Resolver, name: &str, v4: bool, v6: bool) -> Answer<IpAddr> {
    let (a, aaaa) = tokio::join!(
        async {
            match v4 {
                true => dns.ip(name, Family::V4).await,
                false => Answer::NoData,
            }
        },
        async {
            match v6 {
                true => dns.ip(name, Family::V6).await,
                false => Answer::NoData,
            }
        }
    );
    let mut found = Vec::new();
    let mut failure = None;
    let mut nx = 0;
    for answer in [a, aaaa] {
        match answer {
            Answer::Found(a) => found.extend(a),
            Answer::NoData => {}
            Answer::NxDomain => nx += 1,
            Answer::Failed(detail) => failure = Some(detail),
        }
    }
    if !found.is_empty() {
        return Answer::Found(found);
    }
    if let Some(detail) = failure {
        return Answer::Failed(detail);
    }
    if nx > 0 {
        Answer::NxDomain
    } else {
        Answer::NoData
    }
}

/// The forward-confirmed reverse DNS name of `ip` (FCrDNS, RFC 8601 2.7.3): a PTR name whose
/// A/AAAA records include `ip`, lower case without the final dot. None when there is no PTR,
/// none confirms (the first five are tried), or the lookups fail (the caller shows the address
/// only).
pub async fn confirmed_reverse_name(dns: &dyn Resolver, ip: IpAddr) -> Option<String> {
    let Answer::Found(names) = dns.ptr(ip).await else {
        return None;
    };
    for name in names.into_iter().take(5) {
        if let Answer::Found(found) = addresses(dns, &name, true, true).await
            && found.contains(&ip)
        {
            return Some(name);
        }
    }
    None
}

/// Lower case, no trailing dot ("" for the root).
pub fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The absolute DNS name of a domain (IDNs in A-labels), or None if invalid.
pub fn absolute(domain: &str) -> Option<Name> {
    if domain.is_empty() || domain.starts_with('[') {
        return None;
    }
    let mut name = Name::from_utf8(domain).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The real resolver: hickory over the configured (or the system's) nameservers.
#[derive(Clone)]
pub struct HickoryResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver").finish_non_exhaustive()
    }
}

impl HickoryResolver {
    /// Needs a tokio runtime.
    pub fn new(config: &DnsConfig) -> Result<HickoryResolver, NetError> {
        Ok(HickoryResolver {
            resolver: crate::resolver_builder(config)?.build()?,
        })
    }

    async fn records<T>(
        &self,
        name: &str,
        kind: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Answer<T> {
        let Some(name) = absolute(&normalize(name)) else {
            return Answer::NxDomain;
        };
        match self.resolver.lookup(name, kind).await {
            Ok(lookup) => found(lookup.answers().iter().filter_map(|r| pick(&r.data))),
            Err(e) => classify(&e),
        }
    }
}

#[async_trait::async_trait]
impl Resolver for HickoryResolver {
    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.records(name, RecordType::MX, |d| match d {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        })
        .await
    }

    async fn ip(&self, name: &str, family: Family) -> Answer<IpAddr> {
        let kind = match family {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        };
        self.records(name, kind, |d| match d {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .await
    }

    async fn txt(&self, name: &str) -> Answer<String> {
        self.records(name, RecordType::TXT, |d| match d {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .await
    }

    async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        match self.resolver.reverse_lookup(ip).await {
            Ok(lookup) => found(lookup.answers().iter().filter_map(|r| match &r.data {
                RData::PTR(ptr) => Some(normalize(&ptr.0.to_ascii())),
                _ => None,
            })),
            Err(e) => classify(&e),
        }
    }
}

fn found<T>(records: impl Iterator<Item = T>) -> Answer<T> {
    let records: Vec<T> = records.collect();
    if records.is_empty() {
        Answer::NoData
    } else {
        Answer::Found(records)
    }
}

fn classify<T>(e: &NetError) -> Answer<T> {
    if e.is_nx_domain() {
        Answer::NxDomain
    } else if e.is_no_records_found() {
        Answer::NoData
    } else {
        Answer::Failed(e.to_string())
    }
}
