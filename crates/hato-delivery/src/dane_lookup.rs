//! DNSSEC-validated lookups for DANE SMTP (RFC 7672 section 2): the TLSA records of
//! `_<port>._tcp.<host>` with their DNSSEC status, whether an MX host's address records are
//! secure, and the TLSA base domain of a host reached through a CNAME chain.
//!
//! [`DaneResolver`] is a hickory-resolver 0.26 resolver with validation switched on
//! (`ResolverOpts::validate`, set by `ResolverBuilder::with_trust_anchor`) against the configured
//! (or the system's) nameservers. hickory validates itself, as a security-aware stub: the
//! upstream resolver only has to pass DNSSEC records through (DO bit), and the chain is checked
//! from the trust anchor (by default the IANA root KSKs compiled into hickory-proto). What this
//! module relies on, from the hickory 0.26 sources (`hickory-net` `dnssec/mod.rs`,
//! `hickory-resolver` `caching_client.rs`):
//!
//! * every record of a validated answer carries `Record::proof` (`Proof::Secure`, `Insecure`,
//!   `Bogus`, `Indeterminate`); an answer with a bogus record set comes back as
//!   `DnsError::DnssecBogus`;
//! * a negative answer (NXDOMAIN/NODATA) comes back as `DnsError::NoRecordsFound` whose
//!   `authorities` keep their proofs: secure SOA/NSEC/NSEC3 records are an authenticated
//!   denial; insecure ones (or none at all: hickory only lets an unproven negative answer
//!   through once it proved the zone insecure) an insecure one. A denial that fails to
//!   validate is `DnssecBogus` or `DnsError::Nsec` with its proof;
//! * everything else (SERVFAIL, REFUSED, timeouts) is a lookup failure.
//!
//! The outcomes follow RFC 7672 2.1.1 and 2.2: a secure TLSA RRset (possibly empty: an
//! authenticated denial) decides; an insecure one means DANE does not apply; a bogus or failed
//! lookup means the host must not be used without DANE (never plaintext instead).
//!
//! hickory 0.26 judges a single response holding a CNAME and the negative answer for its
//! target (what BIND or Knot send for an alias whose target lacks the type) as bogus: its
//! NSEC check only looks at the query name. [`DaneResolver::host_security`] therefore walks a
//! CNAME chain itself, one `CNAME` query per link, and asks for the addresses at its end (this
//! also gives the per-link status RFC 7672 2.2.3 needs); the TLSA and MX lookups ask again link
//! by link when hickory calls an answer bogus, and keep the verdict unless a CNAME is involved.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tracing::debug;

use crate::dane::{self, Tlsa};
use crate::dane_verify::DaneVerifier;
use crate::tls_policy::TlsaStatus;
use hato_dns::{DnsConfig, absolute, normalize, resolver_builder};

/// Most CNAME links followed for an MX host's addresses.
const MAX_CNAME_LINKS: usize = 8;

pub use hato_dns::TrustAnchor;

/// The validating resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DaneSetupError {
    #[error(transparent)]
    TrustAnchor(#[from] hato_dns::TrustAnchorError),
    #[error("cannot set up the validating DNS resolver: {0}")]
    Resolver(#[from] NetError),
}

/// The DNSSEC status of an answer (RFC 4035 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Security {
    /// A chain of signatures from the trust anchor.
    Secure,
    /// Provably unsigned (an unsigned zone, or below an insecure delegation).
    Insecure,
    /// The lookup failed or could not be validated for lack of data.
    Indeterminate,
    /// Validation failed: bad or missing signatures where they must be.
    Bogus,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
            Security::Indeterminate => "indeterminate",
            Security::Bogus => "bogus",
        }
    }

    fn of(proof: Proof) -> Security {
        match proof {
            Proof::Secure => Security::Secure,
            Proof::Insecure => Security::Insecure,
            Proof::Bogus => Security::Bogus,
            Proof::Indeterminate => Security::Indeterminate,
        }
    }

    fn is_failure(self) -> bool {
        matches!(self, Security::Bogus | Security::Indeterminate)
    }
}

impl std::fmt::Display for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLSA records of one `_<port>._tcp.<name>` (RFC 7672 2.2.3, with 2.1.1 for failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaLookup {
    /// Validated: these records (all of them, usable or not, RFC 7672 3.1). Empty: the
    /// absence of TLSA records was proven (NXDOMAIN/NODATA with valid NSEC/NSEC3).
    Secure(Vec<Tlsa>),
    /// The name is in an unsigned zone: whatever TLSA records it has are ignored, DANE does not
    /// apply (RFC 7672 2.2).
    Insecure,
    /// Validation failed (bad signatures, missing DNSSEC records under a signed parent).
    Bogus(String),
    /// The lookup failed (SERVFAIL, REFUSED, timeout): the records may exist.
    Indeterminate(String),
}

impl TlsaLookup {
    /// What the outcome means for the TLS policy ([`crate::tls_policy::PolicyTable::requirements`]).
    pub fn status(&self) -> TlsaStatus {
        match self {
            TlsaLookup::Secure(records) if dane::any_usable(records) => TlsaStatus::Usable,
            TlsaLookup::Secure(records) if !records.is_empty() => TlsaStatus::Unusable,
            TlsaLookup::Secure(_) | TlsaLookup::Insecure => TlsaStatus::NotApplicable,
            TlsaLookup::Bogus(_) | TlsaLookup::Indeterminate(_) => TlsaStatus::Failed,
        }
    }

    /// The validated records (empty unless [`TlsaLookup::Secure`]).
    pub fn records(&self) -> &[Tlsa] {
        match self {
            TlsaLookup::Secure(records) => records,
            _ => &[],
        }
    }

    /// A short description for logs, e.g. `secure, 2 records (1 usable)`, `bogus: ...`.
    pub fn describe(&self) -> String {
        match self {
            TlsaLookup::Secure(records) if records.is_empty() => "secure, no records".into(),
            TlsaLookup::Secure(records) => format!(
                "secure, {} record{} ({} usable)",
                records.len(),
                if records.len() == 1 { "" } else { "s" },
                records.iter().filter(|r| r.is_usable()).count()
            ),
            TlsaLookup::Insecure => "insecure".into(),
            TlsaLookup::Bogus(detail) => format!("bogus: {detail}"),
            TlsaLookup::Indeterminate(detail) => format!("lookup failed: {detail}"),
        }
    }
}

/// Whether an MX host's address records are DNSSEC-secure (RFC 7672 2.2.3: DANE applies to a
/// host only then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSecurity {
    /// The host name as asked (lower case, no trailing dot).
    pub name: String,
    /// The status that decides whether DANE applies: that of the first link (the CNAME at
    /// `name`, or its A/AAAA records), unless a later link or the address lookup failed or was
    /// bogus, which is that failure.
    pub security: Security,
    /// Why the status is not `Secure`, for logs.
    pub detail: Option<String>,
    /// The end of the CNAME chain when `name` is an alias and every link and the addresses are
    /// secure: the TLSA base domain tried first (RFC 7672 2.2.3).
    pub expanded: Option<String>,
    /// The validated addresses (for logs and comparison; the connection may use the router's).
    pub addresses: Vec<IpAddr>,
}

/// The DANE outcome for one MX host (or the domain itself for an implicit MX, RFC 7672 2.2.2),
/// per RFC 7672 2.2.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneHost {
    /// The host as asked (lower case, no trailing dot).
    pub host: String,
    pub port: u16,
    /// The TLSA records and their status. [`TlsaLookup::Insecure`] also when the host's address
    /// records are insecure (then no TLSA lookup is made); a bogus or failed address lookup is
    /// reported here as bogus or indeterminate.
    pub tlsa: TlsaLookup,
    /// Where the records were looked up: the CNAME-expanded name or the host itself. The SNI
    /// to send (RFC 7671: a DANE client sends the TLSA base domain as SNI).
    pub base_domain: String,
    /// The reference identifiers a DANE-TA(2) server certificate must match one of (RFC 7672
    /// 3.2.2): the base domain, the host name, and the expanded name of a secure CNAME chain.
    pub names: Vec<String>,
    /// The DNSSEC status of the host's address records.
    pub address_security: Security,
}

impl DaneHost {
    /// What the outcome means for the TLS policy ([`crate::tls_policy::PolicyTable::requirements`]).
    pub fn status(&self) -> TlsaStatus {
        self.tlsa.status()
    }

    /// The certificate verifier for a connection to this host when usable TLSA records demand
    /// DANE authentication ([`TlsaStatus::Usable`]); one per connection (it records the match).
    pub fn verifier(&self) -> Option<Arc<DaneVerifier>> {
        (self.status() == TlsaStatus::Usable).then(|| {
            Arc::new(DaneVerifier::new(
                self.tlsa.records().to_vec(),
                self.names.clone(),
            ))
        })
    }
}

/// DNSSEC-validating lookups for DANE.
#[derive(Clone)]
pub struct DaneResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for DaneResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaneResolver").finish_non_exhaustive()
    }
}

/// How one validated question ended.
enum Answer {
    /// Records (RRSIGs left out) and the status of the whole answer.
    Records(Vec<Record>, Security),
    /// NXDOMAIN or NODATA, and the status of the denial.
    NoRecords(Security),
    /// Bogus or indeterminate.
    Failed(Security, String),
}

/// Why a CNAME chain could not be followed to its end.
enum CnameBreak {
    /// The CNAME question of a link failed: its status, and what failed.
    Failed(Security, String),
    /// More than [`MAX_CNAME_LINKS`] links.
    TooLong,
}

impl DaneResolver {
    /// A validating resolver with the configured (or the system's) nameservers and the trust
    /// anchor. Needs a tokio runtime. The nameservers must pass DNSSEC records through (any
    /// DNSSEC-aware recursive resolver does; a stub that strips RRSIGs makes every signed name
    /// bogus).
    pub fn new(config: &DnsConfig, anchor: &TrustAnchor) -> Result<DaneResolver, DaneSetupError> {
        let anchors = anchor.load()?;
        let mut builder = resolver_builder(config)?.with_trust_anchor(anchors);
        let options = builder.options_mut();
        // Set by with_trust_anchor as well; explicit, since everything here depends on it.
        options.validate = true;
        options.edns0 = true;
        // Keep the CNAME records of a chain in the answer: their proofs count too.
        options.preserve_intermediates = true;
        Ok(DaneResolver {
            resolver: builder.build()?,
        })
    }

    /// The DNSSEC status of `zone`'s SOA RRset: a start-up check that validation works through
    /// the configured nameservers (`probe(".")` must be `Secure` with the root trust anchor;
    /// anything else means every DANE destination will be deferred, e.g. a forwarder that
    /// strips RRSIGs, or a wrong clock).
    pub async fn probe(&self, zone: &str) -> Security {
        let name = if zone.trim().trim_end_matches('.').is_empty() {
            Name::root()
        } else {
            match absolute(&normalize(zone)) {
                Some(name) => name,
                None => return Security::Indeterminate,
            }
        };
        match self.query(name, RecordType::SOA).await {
            Answer::Records(_, security) | Answer::NoRecords(security) => security,
            Answer::Failed(security, _) => security,
        }
    }

    /// The DNSSEC status of `domain`'s MX RRset (RFC 7672 2.2.1), CNAMEs followed; a denial
    /// (no MX: the implicit MX, RFC 7672 2.2.2) has the status of the denial. The router
    /// ([`crate::route::Router`]) does not validate: when DANE applies, a `Bogus` or
    /// `Indeterminate` MX RRset means the destination must be deferred (a forged MX could
    /// lead to a host with its own valid TLSA records). With `Insecure` the MX hosts may still
    /// use DANE (RFC 7672 2.2.1 allows it; Postfix does not).
    pub async fn mx_security(&self, domain: &str) -> Security {
        let Some(name) = absolute(&normalize(domain)) else {
            return Security::Indeterminate;
        };
        let security = match self.query_chain(name.clone(), RecordType::MX).await {
            Answer::Records(_, security) | Answer::NoRecords(security) => security,
            Answer::Failed(security, detail) => {
                debug!(%name, %detail, "MX lookup failed");
                security
            }
        };
        debug!(%name, %security, "MX RRset");
        security
    }

    /// The TLSA records of `_<port>._tcp.<host>` (RFC 7672 2.2.3, RFC 6698 3). A CNAME at
    /// that name is followed; every link must be secure.
    pub async fn tlsa(&self, host: &str, port: u16) -> TlsaLookup {
        let host = normalize(host);
        let Some(name) = tlsa_name(&host, port) else {
            return TlsaLookup::Indeterminate(format!("invalid host name {host:?}"));
        };
        let outcome = match self.query_chain(name.clone(), RecordType::TLSA).await {
            Answer::Records(records, Security::Secure) => TlsaLookup::Secure(
                records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TLSA(t) => Some(Tlsa {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data.clone(),
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
            Answer::Records(_, Security::Insecure) | Answer::NoRecords(Security::Insecure) => {
                TlsaLookup::Insecure
            }
            Answer::Records(_, Security::Bogus) => {
                TlsaLookup::Bogus(format!("{name} TLSA: answer failed validation"))
            }
            Answer::Records(_, Security::Indeterminate) => {
                TlsaLookup::Indeterminate(format!("{name} TLSA: answer not validated"))
            }
            Answer::NoRecords(Security::Secure) => TlsaLookup::Secure(Vec::new()),
            Answer::NoRecords(security) => {
                TlsaLookup::Indeterminate(format!("{name} TLSA: denial of existence is {security}"))
            }
            Answer::Failed(Security::Bogus, detail) => {
                TlsaLookup::Bogus(format!("{name} TLSA: {detail}"))
            }
            Answer::Failed(_, detail) => {
                TlsaLookup::Indeterminate(format!("{name} TLSA: {detail}"))
            }
        };
        debug!(%name, outcome = %outcome.describe(), "TLSA lookup");
        outcome
    }

    /// Whether `host`'s address records are secure, following a CNAME chain link by link
    /// (RFC 7672 2.2.3).
    pub async fn host_security(&self, host: &str) -> HostSecurity {
        let original = normalize(host);
        let mut result = HostSecurity {
            name: original.clone(),
            security: Security::Indeterminate,
            detail: None,
            expanded: None,
            addresses: Vec::new(),
        };
        let Some(name) = absolute(&original) else {
            result.detail = Some(format!("invalid host name {original:?}"));
            return result;
        };
        let (name, links) = match self.follow_cnames(name).await {
            Ok(chain) => chain,
            Err(CnameBreak::Failed(security, detail)) => {
                result.security = security;
                result.detail = Some(detail);
                return result;
            }
            Err(CnameBreak::TooLong) => {
                result.detail = Some(format!("{original}: more than {MAX_CNAME_LINKS} CNAMEs"));
                return result;
            }
        };
        let (v4, v6) = tokio::join!(
            self.query(name.clone(), RecordType::A),
            self.query(name.clone(), RecordType::AAAA)
        );
        let mut addresses_security = Security::Secure;
        for (answer, kind) in [(v4, "A"), (v6, "AAAA")] {
            let security = match answer {
                Answer::Records(records, security) => {
                    result
                        .addresses
                        .extend(records.iter().filter_map(|r| r.data.ip_addr()));
                    security
                }
                Answer::NoRecords(security) => security,
                Answer::Failed(security, detail) => {
                    result.detail = Some(format!("{name} {kind}: {detail}"));
                    security
                }
            };
            addresses_security = addresses_security.max(security);
        }
        let worst = links
            .iter()
            .copied()
            .fold(addresses_security, Security::max);
        result.security = if worst.is_failure() {
            worst
        } else {
            links.first().copied().unwrap_or(addresses_security)
        };
        if !links.is_empty() && worst == Security::Secure {
            result.expanded = Some(normalize(&name.to_ascii()));
        }
        if result.security != Security::Secure && result.detail.is_none() {
            result.detail = Some(if links.is_empty() {
                format!("address records of {original} are {}", result.security)
            } else {
                format!("CNAME chain of {original} is {}", result.security)
            });
        }
        result
    }

    /// Everything DANE needs for one MX host (RFC 7672 2.2.3): the host's address records must
    /// be secure (else [`TlsaLookup::Insecure`] without a TLSA lookup); for a secure CNAME
    /// chain the TLSA records at its end are tried first, then those at the host name itself.
    /// A failed or bogus lookup at either stops there.
    pub async fn lookup(&self, host: &str, port: u16) -> DaneHost {
        let original = normalize(host);
        let security = self.host_security(&original).await;
        let mut outcome = DaneHost {
            host: original.clone(),
            port,
            tlsa: TlsaLookup::Insecure,
            base_domain: original.clone(),
            names: vec![original.clone()],
            address_security: security.security,
        };
        let detail = || security.detail.clone().unwrap_or_default();
        match security.security {
            Security::Bogus => {
                outcome.tlsa = TlsaLookup::Bogus(detail());
                return outcome;
            }
            Security::Indeterminate => {
                outcome.tlsa = TlsaLookup::Indeterminate(detail());
                return outcome;
            }
            Security::Insecure => {
                debug!(host = %original, detail = %detail(), "DANE does not apply");
                return outcome;
            }
            Security::Secure => {}
        }
        if let Some(expanded) = &security.expanded {
            outcome.names.push(expanded.clone());
            match self.tlsa(expanded, port).await {
                TlsaLookup::Secure(records) if !records.is_empty() => {
                    outcome.tlsa = TlsaLookup::Secure(records);
                    outcome.base_domain = expanded.clone();
                    outcome.names.swap(0, 1);
                    return outcome;
                }
                failed @ (TlsaLookup::Bogus(_) | TlsaLookup::Indeterminate(_)) => {
                    outcome.tlsa = failed;
                    outcome.base_domain = expanded.clone();
                    return outcome;
                }
                // None at the expanded name: the host name's own records.
                TlsaLookup::Secure(_) | TlsaLookup::Insecure => {}
            }
        }
        outcome.tlsa = self.tlsa(&original, port).await;
        outcome
    }

    /// One validated question, CNAMEs followed. When hickory calls the answer bogus and `name`
    /// is an alias, the chain is asked for link by link (see the module documentation); the
    /// result has the worst status of the links and the final answer.
    async fn query_chain(&self, name: Name, kind: RecordType) -> Answer {
        let first = self.query(name.clone(), kind).await;
        if !matches!(first, Answer::Failed(Security::Bogus, _)) {
            return first;
        }
        let Ok((target, links)) = self.follow_cnames(name).await else {
            return first;
        };
        if links.is_empty() {
            // Not an alias: the verdict stands.
            return first;
        }
        let chain = links.into_iter().fold(Security::Secure, Security::max);
        match self.query(target, kind).await {
            Answer::Records(records, security) => Answer::Records(records, chain.max(security)),
            Answer::NoRecords(security) => match chain.max(security) {
                failed if failed.is_failure() => {
                    Answer::Failed(failed, format!("CNAME chain is {failed}"))
                }
                security => Answer::NoRecords(security),
            },
            Answer::Failed(..) => first,
        }
    }

    /// Follows the CNAME chain from `name` link by link: the name at its end (`name` itself if
    /// it is no alias) and the security of each link.
    async fn follow_cnames(&self, mut name: Name) -> Result<(Name, Vec<Security>), CnameBreak> {
        let mut links: Vec<Security> = Vec::new();
        loop {
            let target = match self.query(name.clone(), RecordType::CNAME).await {
                Answer::Records(records, security) => records
                    .iter()
                    .find_map(|r| match &r.data {
                        RData::CNAME(target) if r.name == name => Some(target.0.clone()),
                        _ => None,
                    })
                    .map(|target| (target, security)),
                Answer::NoRecords(_) => None,
                Answer::Failed(security, detail) => {
                    return Err(CnameBreak::Failed(
                        security,
                        format!("{name} CNAME: {detail}"),
                    ));
                }
            };
            let Some((target, security)) = target else {
                return Ok((name, links));
            };
            links.push(security);
            if links.len() > MAX_CNAME_LINKS {
                return Err(CnameBreak::TooLong);
            }
            name = target;
        }
    }

    /// One validated question.
    async fn query(&self, name: Name, kind: RecordType) -> Answer {
        match self.resolver.lookup(name, kind).await {
            Ok(lookup) => {
                let records: Vec<Record> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() != RecordType::RRSIG)
                    .cloned()
                    .collect();
                match security_of(&records) {
                    Some(security) => Answer::Records(records, security),
                    None => Answer::NoRecords(Security::Insecure),
                }
            }
            Err(e) => classify(&e),
        }
    }
}

/// The status of a set of records (RRSIGs ignored: only the one used carries a proof): the
/// worst of theirs. None for no records.
fn security_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Option<Security> {
    records
        .into_iter()
        .filter(|r| r.record_type() != RecordType::RRSIG)
        .map(|r| Security::of(r.proof))
        .max()
}

fn classify(e: &NetError) -> Answer {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => {
            // No authority records: hickory let the denial through only after proving the
            // zone insecure (verify_response, "return ok/insecure").
            let security = no
                .authorities
                .as_deref()
                .and_then(|records| security_of(records.iter()))
                .unwrap_or(Security::Insecure);
            if security.is_failure() {
                Answer::Failed(security, format!("denial of existence is {security}"))
            } else {
                Answer::NoRecords(security)
            }
        }
        NetError::Dns(DnsError::DnssecBogus) => {
            Answer::Failed(Security::Bogus, "DNSSEC validation failed".into())
        }
        NetError::Dns(DnsError::Nsec { proof, .. }) => match Security::of(*proof) {
            Security::Secure => Answer::NoRecords(Security::Secure),
            Security::Insecure => Answer::NoRecords(Security::Insecure),
            security => Answer::Failed(security, format!("denial of existence is {security}")),
        },
        other => Answer::Failed(Security::Indeterminate, other.to_string()),
    }
}

/// `_<port>._tcp.<host>.` (RFC 6698 3).
fn tlsa_name(host: &str, port: u16) -> Option<Name> {
    let host = absolute(host)?;
    Name::from_ascii(format!("_{port}._tcp.{}", host.to_ascii())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlsa(usage: u8) -> Tlsa {
        Tlsa {
            usage,
            selector: 1,
            matching: 1,
            data: vec![0; 32],
        }
    }

    #[test]
    fn tlsa_names() {
        assert_eq!(
            tlsa_name("MX.Example.net.", 25).unwrap().to_ascii(),
            "_25._tcp.mx.example.net."
        );
        assert_eq!(
            tlsa_name("bücher.example", 465).unwrap().to_ascii(),
            "_465._tcp.xn--bcher-kva.example."
        );
        assert!(tlsa_name("", 25).is_none());
        assert!(tlsa_name("[192.0.2.1]", 25).is_none());
    }

    #[test]
    fn outcomes_map_to_policy_statuses() {
        assert_eq!(
            TlsaLookup::Secure(vec![tlsa(1), tlsa(3)]).status(),
            TlsaStatus::Usable
        );
        assert_eq!(
            TlsaLookup::Secure(vec![tlsa(1)]).status(),
            TlsaStatus::Unusable
        );
        assert_eq!(
            TlsaLookup::Secure(vec![]).status(),
            TlsaStatus::NotApplicable
        );
        assert_eq!(TlsaLookup::Insecure.status(), TlsaStatus::NotApplicable);
        assert_eq!(TlsaLookup::Bogus("x".into()).status(), TlsaStatus::Failed);
        assert_eq!(
            TlsaLookup::Indeterminate("x".into()).status(),
            TlsaStatus::Failed
        );
        assert_eq!(
            TlsaLookup::Secure(vec![tlsa(1), tlsa(3)]).describe(),
            "secure, 2 records (1 usable)"
        );
        assert_eq!(TlsaLookup::Secure(vec![]).describe(), "secure, no records");
        assert!(TlsaLookup::Insecure.records().is_empty());
    }

    #[test]
    fn worst_status_wins() {
        assert!(Security::Bogus > Security::Indeterminate);
        assert!(Security::Indeterminate > Security::Insecure);
        assert!(Security::Insecure > Security::Secure);
        let mut secure = Record::from_rdata(
            Name::from_ascii("a.example.").unwrap(),
            60,
            RData::A(hickory_resolver::proto::rr::rdata::A::new(192, 0, 2, 1)),
        );
        secure.proof = Proof::Secure;
        let mut insecure = secure.clone();
        insecure.proof = Proof::Insecure;
        assert_eq!(security_of([&secure]), Some(Security::Secure));
        assert_eq!(security_of([&secure, &insecure]), Some(Security::Insecure));
        assert_eq!(security_of([]), None);
    }
}
