//! DNSSEC-validated TLSA lookups against a signed zone served in-process.
//!
//! hickory-server 0.26 can sign an in-memory zone itself (`InMemoryZoneHandler::
//! add_zone_signing_key_mut`/`secure_zone_mut`), but only with its `dnssec-ring` feature, and
//! that feature adds a parameter to `InMemoryZoneHandler::empty`, which would break the
//! `hato` crate's tests in a workspace-wide build (cargo unifies the features of
//! dev-dependencies). So the zones here are signed in the test with hickory-proto's DNSSEC
//! signing (Ed25519 keys from ring, `RRSIG::from_rrset`, an NSEC chain built here), and served
//! by a small authoritative [`RequestHandler`] on 127.0.0.1 (UDP and TCP). No external tools.
//!
//! The tree: `test.` is signed, and its key is the resolver's trust anchor (for the name
//! `test.`); `insecure.test.` is an unsigned child with a provably insecure delegation (an
//! NSEC at the cut without DS).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hato_delivery::dane::Tlsa;
use hato_delivery::dane_lookup::{DaneResolver, Security, TlsaLookup, TrustAnchor};
use hato_delivery::policy::TlsaStatus;
use hato_delivery::route::DnsConfig;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::dnssec::crypto::Ed25519SigningKey;
use hickory_server::proto::dnssec::rdata::{DNSKEY, DNSSECRData, NSEC, RRSIG};
use hickory_server::proto::dnssec::{DnssecSigner, SigningKey, TrustAnchors};
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TLSA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

const TTL: u32 = 300;

fn name(n: &str) -> Name {
    Name::from_str(n).unwrap()
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), TTL, data)
}

fn a(owner: &str, ip: &str) -> Record {
    record(owner, RData::A(A(Ipv4Addr::from_str(ip).unwrap())))
}

fn aaaa(owner: &str, ip: &str) -> Record {
    record(owner, RData::AAAA(AAAA(Ipv6Addr::from_str(ip).unwrap())))
}

fn cname(owner: &str, target: &str) -> Record {
    record(owner, RData::CNAME(CNAME(name(target))))
}

fn tlsa_record(owner: &str, t: &Tlsa) -> Record {
    record(
        owner,
        RData::TLSA(TLSA::new(
            CertUsage::from(t.usage),
            Selector::from(t.selector),
            Matching::from(t.matching),
            t.data.clone(),
        )),
    )
}

fn soa_ns(origin: &str) -> Vec<Record> {
    vec![
        record(
            origin,
            RData::SOA(SOA::new(
                name(&format!("ns.{origin}")),
                name(&format!("hostmaster.{origin}")),
                1,
                3600,
                600,
                86_400,
                60,
            )),
        ),
        record(origin, RData::NS(NS(name(&format!("ns.{origin}"))))),
    ]
}

/// A DANE-EE(3) SPKI(1) SHA-256(1) record with made-up data (the lookup does not care).
fn ee(fill: u8) -> Tlsa {
    Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: vec![fill; 32],
    }
}

/// A zone key (Ed25519, flags 257) and its signer.
struct ZoneKey {
    signer: DnssecSigner,
    dnskey: DNSKEY,
}

fn zone_key(origin: &str) -> ZoneKey {
    let pkcs8 = Ed25519SigningKey::generate_pkcs8().unwrap();
    let key = Ed25519SigningKey::from_pkcs8(&pkcs8).unwrap();
    let dnskey = DNSKEY::from_key(&key.to_public_key().unwrap());
    let signer = DnssecSigner::new(
        dnskey.clone(),
        Box::new(key),
        name(origin),
        Duration::from_secs(2 * 86_400),
    );
    ZoneKey { signer, dnskey }
}

/// One zone: its RRsets by owner name (canonical order), RRSIGs attached when signed.
struct Zone {
    origin: Name,
    signed: bool,
    names: BTreeMap<Name, Vec<RecordSet>>,
}

impl Zone {
    /// Groups the records into RRsets; with a key, adds the DNSKEY and the NSEC chain and
    /// signs every authoritative RRset (not the NS RRset of a delegation).
    fn new(origin: &str, records: Vec<Record>, key: Option<&ZoneKey>) -> Zone {
        let origin = name(origin);
        let mut names: BTreeMap<Name, Vec<RecordSet>> = BTreeMap::new();
        let add = |r: Record, names: &mut BTreeMap<Name, Vec<RecordSet>>| {
            let sets = names.entry(r.name.clone()).or_default();
            match sets.iter_mut().find(|s| s.record_type() == r.record_type()) {
                Some(set) => {
                    set.add_rdata(r.data);
                }
                None => {
                    let mut set = RecordSet::with_ttl(r.name.clone(), r.record_type(), TTL);
                    set.add_rdata(r.data);
                    sets.push(set);
                }
            }
        };
        for r in records {
            add(r, &mut names);
        }
        let Some(key) = key else {
            return Zone {
                origin,
                signed: false,
                names,
            };
        };
        add(
            Record::from_rdata(
                origin.clone(),
                TTL,
                RData::DNSSEC(DNSSECRData::DNSKEY(key.dnskey.clone())),
            ),
            &mut names,
        );
        // The NSEC chain (RFC 4034 4): each owner name points to the next in canonical order,
        // the last one back to the apex.
        let owners: Vec<Name> = names.keys().cloned().collect();
        for (i, owner) in owners.iter().enumerate() {
            let next = owners[(i + 1) % owners.len()].clone();
            let is_cut = *owner != origin
                && names[owner]
                    .iter()
                    .any(|s| s.record_type() == RecordType::NS);
            let types: Vec<RecordType> = if is_cut {
                vec![RecordType::NS]
            } else {
                names[owner].iter().map(|s| s.record_type()).collect()
            };
            add(
                Record::from_rdata(
                    owner.clone(),
                    TTL,
                    RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types))),
                ),
                &mut names,
            );
        }
        let inception = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        for (owner, sets) in names.iter_mut() {
            let is_cut = *owner != origin && sets.iter().any(|s| s.record_type() == RecordType::NS);
            for set in sets.iter_mut() {
                if is_cut && set.record_type() == RecordType::NS {
                    continue;
                }
                let rrsig = RRSIG::from_rrset(set, DNSClass::IN, inception, &key.signer).unwrap();
                set.insert_rrsig(Record::from_rdata(
                    owner.clone(),
                    TTL,
                    RData::DNSSEC(DNSSECRData::RRSIG(rrsig)),
                ));
            }
        }
        Zone {
            origin,
            signed: true,
            names,
        }
    }

    /// Replaces the data of a signed RRset but keeps its (now wrong) signature.
    fn tamper(&mut self, owner: &str, data: RData) {
        let sets = self.names.get_mut(&name(owner)).unwrap();
        let set = sets
            .iter_mut()
            .find(|s| s.record_type() == data.record_type())
            .unwrap();
        let rrsigs = set.rrsigs().to_vec();
        let mut forged = RecordSet::with_ttl(name(owner), data.record_type(), TTL);
        forged.add_rdata(data);
        for sig in rrsigs {
            forged.insert_rrsig(sig);
        }
        *set = forged;
    }

    fn set(&self, owner: &Name, kind: RecordType) -> Option<&RecordSet> {
        self.names
            .get(owner)?
            .iter()
            .find(|s| s.record_type() == kind)
    }

    /// The RRset's records followed by its RRSIGs.
    fn with_sigs(set: &RecordSet) -> Vec<Record> {
        set.records_without_rrsigs()
            .chain(set.rrsigs().iter())
            .cloned()
            .collect()
    }

    /// The NSEC RRset whose owner/next interval covers `qname` (with the wrap-around at the
    /// end of the chain).
    fn covering_nsec(&self, qname: &Name) -> Option<&RecordSet> {
        self.names.values().flatten().find(|s| {
            let Some(RData::DNSSEC(DNSSECRData::NSEC(nsec))) =
                s.records_without_rrsigs().next().map(|r| &r.data)
            else {
                return false;
            };
            let owner = s.name();
            let next = nsec.next_domain_name();
            qname > owner && (qname < next || next <= owner)
        })
    }

    /// Whether a name is at or below a delegation (its data is the child zone's).
    fn is_below_cut(&self, n: &Name) -> bool {
        self.names.iter().any(|(owner, sets)| {
            *owner != self.origin
                && owner.zone_of(n)
                && sets.iter().any(|s| s.record_type() == RecordType::NS)
        })
    }

    /// Whether a name exists: an owner name or an empty non-terminal above one.
    fn exists(&self, n: &Name) -> bool {
        self.names.keys().any(|owner| n.zone_of(owner))
    }

    /// (rcode, answer section, authority section) for a question. A CNAME is chased within the
    /// zone, as BIND and Knot do: the answer for its target follows it, positive or negative.
    fn answer(&self, qname: &Name, kind: RecordType) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        let soa = Zone::with_sigs(self.set(&self.origin, RecordType::SOA).unwrap());
        if let Some(set) = self.set(qname, kind) {
            return (ResponseCode::NoError, Zone::with_sigs(set), Vec::new());
        }
        if kind != RecordType::CNAME
            && let Some(set) = self.set(qname, RecordType::CNAME)
        {
            let mut answers = Zone::with_sigs(set);
            let target = match set.records_without_rrsigs().next().map(|r| &r.data) {
                Some(RData::CNAME(target)) => target.0.clone(),
                _ => unreachable!("a CNAME RRset"),
            };
            if !self.origin.zone_of(&target) || self.is_below_cut(&target) {
                return (ResponseCode::NoError, answers, Vec::new());
            }
            let (rcode, more, authority) = self.answer(&target, kind);
            answers.extend(more);
            return (rcode, answers, authority);
        }
        let mut authority = soa;
        if self.names.contains_key(qname) {
            // NODATA: the NSEC at the name shows its types.
            if let Some(nsec) = self.set(qname, RecordType::NSEC) {
                authority.extend(Zone::with_sigs(nsec));
            }
            return (ResponseCode::NoError, Vec::new(), authority);
        }
        let mut proofs: Vec<&RecordSet> = Vec::new();
        if self.signed {
            proofs.extend(self.covering_nsec(qname));
        }
        if self.exists(qname) {
            // An empty non-terminal: NODATA, proven by the NSEC covering it.
            for p in proofs {
                authority.extend(Zone::with_sigs(p));
            }
            return (ResponseCode::NoError, Vec::new(), authority);
        }
        // NXDOMAIN: the name and the wildcard at its closest encloser are covered.
        let mut encloser = qname.base_name();
        while encloser != self.origin && !self.exists(&encloser) {
            encloser = encloser.base_name();
        }
        if self.signed {
            let wildcard = encloser.prepend_label("*").unwrap();
            if let Some(w) = self.covering_nsec(&wildcard)
                && !proofs.iter().any(|p| p.name() == w.name())
            {
                proofs.push(w);
            }
        }
        for p in proofs {
            authority.extend(Zone::with_sigs(p));
        }
        (ResponseCode::NXDomain, Vec::new(), authority)
    }
}

/// An authoritative server for several zones; SERVFAIL for some names.
struct Authoritative {
    zones: Vec<Zone>,
    servfail: Vec<Name>,
}

impl Authoritative {
    fn respond(&self, qname: &Name, kind: RecordType) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        if self.servfail.contains(qname) {
            return (ResponseCode::ServFail, Vec::new(), Vec::new());
        }
        let mut zones: Vec<&Zone> = self
            .zones
            .iter()
            .filter(|z| z.origin.zone_of(qname))
            .collect();
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin.num_labels()));
        // DS records live in the parent zone (RFC 4035 3.1.4.1).
        if kind == RecordType::DS && zones.first().is_some_and(|z| z.origin == *qname) {
            zones.remove(0);
        }
        match zones.first() {
            Some(zone) => zone.answer(qname, kind),
            None => (ResponseCode::Refused, Vec::new(), Vec::new()),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Authoritative {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let query = request.queries.queries().first().expect("one question");
        let qname = Name::from(query.name().clone());
        let (rcode, answers, authority) = self.respond(&qname, query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = rcode != ResponseCode::Refused;
        metadata.response_code = rcode;
        let response = MessageResponseBuilder::new(&request.queries, request.edns.as_ref()).build(
            metadata,
            answers.iter(),
            authority.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        response_handle
            .send_response(response)
            .await
            .expect("send the response")
    }
}

/// The records of the test tree, and what the TLSA records are.
struct Tree {
    dns: Dns,
    key: ZoneKey,
    /// `_25._tcp.mx.test.`
    mx: Tlsa,
}

struct Dns {
    addr: SocketAddr,
    _server: Server<Authoritative>,
}

async fn serve(handler: Authoritative) -> Dns {
    // Same port for UDP and TCP (retry if the TCP port happens to be taken).
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    Dns {
        addr,
        _server: server,
    }
}

/// Starts the server for the test tree; `mx` is the record published for `mx.test.`.
async fn tree(mx: Tlsa) -> Tree {
    let key = zone_key("test.");
    let mut records = soa_ns("test.");
    records.extend([
        a("ns.test.", "127.0.0.1"),
        record("test.", RData::MX(MX::new(10, name("mx.test.")))),
        // A secure host with a DANE-EE record.
        a("mx.test.", "192.0.2.1"),
        aaaa("mx.test.", "2001:db8::1"),
        tlsa_record("_25._tcp.mx.test.", &mx),
        // Secure, without TLSA records (NXDOMAIN for the TLSA name).
        a("notlsa.test.", "192.0.2.2"),
        // Secure, only an unusable record (PKIX-EE).
        a("unusable.test.", "192.0.2.3"),
        tlsa_record("_25._tcp.unusable.test.", &Tlsa { usage: 1, ..ee(3) }),
        // A secure CNAME chain: the records at its end come first.
        cname("alias.test.", "mx2.test."),
        a("mx2.test.", "192.0.2.4"),
        tlsa_record("_25._tcp.mx2.test.", &ee(4)),
        tlsa_record("_25._tcp.alias.test.", &ee(40)),
        // A secure CNAME chain to a host without TLSA: the alias's own records.
        cname("alias2.test.", "notlsa.test."),
        tlsa_record("_25._tcp.alias2.test.", &ee(5)),
        // TLSA names that are aliases (RFC 7671 7): to a TLSA RRset, and to nothing (the
        // server's answer holds the CNAME and the NXDOMAIN proof for its target).
        a("tlsalias.test.", "192.0.2.8"),
        cname("_25._tcp.tlsalias.test.", "_25._tcp.mx.test."),
        a("tlsdangling.test.", "192.0.2.9"),
        cname("_25._tcp.tlsdangling.test.", "_25._tcp.notlsa.test."),
        // First link secure, target insecure: only the original name counts.
        cname("toinsecure.test.", "mx.insecure.test."),
        tlsa_record("_25._tcp.toinsecure.test.", &ee(6)),
        // The TLSA lookup gets SERVFAIL.
        a("servfail.test.", "192.0.2.5"),
        // A TLSA RRset whose data no longer matches its signature.
        a("tampered.test.", "192.0.2.6"),
        tlsa_record("_25._tcp.tampered.test.", &ee(7)),
        // The unsigned child zone.
        record("insecure.test.", RData::NS(NS(name("ns.insecure.test.")))),
    ]);
    let mut signed = Zone::new("test.", records, Some(&key));
    let forged = ee(8);
    signed.tamper("_25._tcp.tampered.test.", tlsa_record("x.", &forged).data);
    let mut child = soa_ns("insecure.test.");
    child.extend([
        a("ns.insecure.test.", "127.0.0.1"),
        record(
            "insecure.test.",
            RData::MX(MX::new(10, name("mx.insecure.test."))),
        ),
        a("mx.insecure.test.", "192.0.2.7"),
        tlsa_record("_25._tcp.mx.insecure.test.", &ee(9)),
    ]);
    let unsigned = Zone::new("insecure.test.", child, None);
    let dns = serve(Authoritative {
        zones: vec![signed, unsigned],
        servfail: vec![name("_25._tcp.servfail.test.")],
    })
    .await;
    Tree { dns, key, mx }
}

fn config(addr: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![addr],
        timeout: Duration::from_secs(2),
        attempts: 1,
        tcp_only: false,
    }
}

/// The test zone's key as the trust anchor for `test.`.
fn anchor(key: &DNSKEY) -> TrustAnchor {
    let mut anchors = TrustAnchors::empty();
    anchors.insert_with_name(key.public_key(), LowerName::new(&name("test.")));
    TrustAnchor::Keys(Arc::new(anchors))
}

fn resolver(tree: &Tree) -> DaneResolver {
    DaneResolver::new(&config(tree.dns.addr), &anchor(&tree.key.dnskey)).unwrap()
}

#[tokio::test]
async fn secure_tlsa_records() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    assert_eq!(
        r.tlsa("mx.test", 25).await,
        TlsaLookup::Secure(vec![t.mx.clone()])
    );
    let host = r.lookup("MX.test.", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![t.mx.clone()]));
    assert_eq!(host.status(), TlsaStatus::Usable);
    assert_eq!(host.base_domain, "mx.test");
    assert_eq!(host.names, vec!["mx.test".to_string()]);
    assert_eq!(host.address_security, Security::Secure);
    assert!(host.verifier().is_some());
    let security = r.host_security("mx.test").await;
    assert_eq!(security.security, Security::Secure, "{security:?}");
    let mut addresses = security.addresses;
    addresses.sort();
    assert_eq!(
        addresses,
        vec![
            IpAddr::from_str("192.0.2.1").unwrap(),
            IpAddr::from_str("2001:db8::1").unwrap()
        ]
    );
    // Another port, no records: an authenticated denial.
    assert_eq!(r.tlsa("mx.test", 465).await, TlsaLookup::Secure(vec![]));
}

#[tokio::test]
async fn mx_rrset_security() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    assert_eq!(r.probe("test.").await, Security::Secure);
    assert_eq!(r.probe("insecure.test").await, Security::Insecure);
    assert_eq!(r.probe(".").await, Security::Indeterminate, "not served");
    assert_eq!(r.mx_security("test").await, Security::Secure);
    // No MX (implicit MX): the denial is secure.
    assert_eq!(r.mx_security("mx.test").await, Security::Secure);
    assert_eq!(r.mx_security("nothere.test").await, Security::Secure);
    // An alias domain: its MX through the CNAME.
    assert_eq!(r.mx_security("alias.test").await, Security::Secure);
    assert_eq!(r.mx_security("insecure.test").await, Security::Insecure);
    assert_eq!(
        r.mx_security("elsewhere.example").await,
        Security::Indeterminate
    );
    let other = zone_key("test.");
    let wrong = DaneResolver::new(&config(t.dns.addr), &anchor(&other.dnskey)).unwrap();
    assert_eq!(wrong.mx_security("test").await, Security::Bogus);
    assert_eq!(wrong.probe("test").await, Security::Bogus);
}

#[tokio::test]
async fn secure_denial_and_unusable_records() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    let host = r.lookup("notlsa.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![]));
    assert_eq!(host.status(), TlsaStatus::NotApplicable);
    assert!(host.verifier().is_none());

    let host = r.lookup("unusable.test", 25).await;
    assert_eq!(host.tlsa.records().len(), 1);
    assert_eq!(host.status(), TlsaStatus::Unusable);
    assert!(host.verifier().is_none());
}

#[tokio::test]
async fn insecure_zone() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // The TLSA record exists but is not signed: ignored.
    assert_eq!(r.tlsa("mx.insecure.test", 25).await, TlsaLookup::Insecure);
    let security = r.host_security("mx.insecure.test").await;
    assert_eq!(security.security, Security::Insecure, "{security:?}");
    assert_eq!(
        security.addresses,
        vec![IpAddr::from_str("192.0.2.7").unwrap()]
    );
    let host = r.lookup("mx.insecure.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Insecure);
    assert_eq!(host.status(), TlsaStatus::NotApplicable);
    assert_eq!(host.address_security, Security::Insecure);
}

#[tokio::test]
async fn cname_expansion_per_rfc7672() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);

    // Secure chain: the expanded name's records, both names as reference identifiers.
    let security = r.host_security("alias.test").await;
    assert_eq!(
        (security.security, security.expanded.as_deref()),
        (Security::Secure, Some("mx2.test"))
    );
    let host = r.lookup("alias.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(4)]));
    assert_eq!(host.base_domain, "mx2.test");
    assert_eq!(
        host.names,
        vec!["mx2.test".to_string(), "alias.test".into()]
    );

    // Secure chain, nothing at its end: the alias's own records.
    let host = r.lookup("alias2.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(5)]));
    assert_eq!(host.base_domain, "alias2.test");
    assert_eq!(
        host.names,
        vec!["alias2.test".to_string(), "notlsa.test".into()]
    );

    // Only the first link is secure: the original name only.
    let security = r.host_security("toinsecure.test").await;
    assert_eq!(
        (security.security, security.expanded.as_deref()),
        (Security::Secure, None)
    );
    let host = r.lookup("toinsecure.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![ee(6)]));
    assert_eq!(host.base_domain, "toinsecure.test");
    assert_eq!(host.names, vec!["toinsecure.test".to_string()]);
}

#[tokio::test]
async fn tlsa_names_that_are_aliases() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    let host = r.lookup("tlsalias.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![t.mx.clone()]));
    assert_eq!(host.base_domain, "tlsalias.test");
    // hickory alone calls this answer bogus (CNAME + NXDOMAIN for the target in one
    // response); asked link by link it is a secure denial.
    let host = r.lookup("tlsdangling.test", 25).await;
    assert_eq!(host.tlsa, TlsaLookup::Secure(vec![]), "{host:?}");
}

#[tokio::test]
async fn bogus_answers() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // A record changed after signing.
    let lookup = r.tlsa("tampered.test", 25).await;
    assert!(matches!(lookup, TlsaLookup::Bogus(_)), "{lookup:?}");
    assert_eq!(lookup.status(), TlsaStatus::Failed);
    let host = r.lookup("tampered.test", 25).await;
    assert!(matches!(host.tlsa, TlsaLookup::Bogus(_)), "{host:?}");

    // The wrong key as the trust anchor: everything under test. is bogus, the addresses too.
    let other = zone_key("test.");
    let wrong = DaneResolver::new(&config(t.dns.addr), &anchor(&other.dnskey)).unwrap();
    let lookup = wrong.tlsa("mx.test", 25).await;
    assert!(matches!(lookup, TlsaLookup::Bogus(_)), "{lookup:?}");
    let host = wrong.lookup("mx.test", 25).await;
    assert_eq!(host.address_security, Security::Bogus, "{host:?}");
    assert_eq!(host.status(), TlsaStatus::Failed);
    assert!(host.verifier().is_none());

    // The default anchor (the root KSKs) cannot validate a private tree either.
    let root = DaneResolver::new(&config(t.dns.addr), &TrustAnchor::Root).unwrap();
    assert_eq!(
        root.lookup("mx.test", 25).await.status(),
        TlsaStatus::Failed
    );
}

#[tokio::test]
async fn lookup_failures_are_indeterminate() {
    let t = tree(ee(1)).await;
    let r = resolver(&t);
    // SERVFAIL for the TLSA name, under a signed zone: may exist, so the host must not be used.
    let host = r.lookup("servfail.test", 25).await;
    assert_eq!(host.address_security, Security::Secure);
    assert!(
        matches!(host.tlsa, TlsaLookup::Indeterminate(_)),
        "{host:?}"
    );
    assert_eq!(host.status(), TlsaStatus::Failed);

    // A server that refuses (not authoritative).
    let lookup = r.tlsa("mx.elsewhere.example", 25).await;
    assert!(matches!(lookup, TlsaLookup::Indeterminate(_)), "{lookup:?}");
    let host = r.lookup("mx.elsewhere.example", 25).await;
    assert_eq!(host.status(), TlsaStatus::Failed);

    // A nameserver that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = DnsConfig {
        nameservers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_millis(300),
        attempts: 1,
        tcp_only: false,
    };
    let r = DaneResolver::new(&config, &anchor(&t.key.dnskey)).unwrap();
    let lookup = r.tlsa("mx.test", 25).await;
    assert!(matches!(lookup, TlsaLookup::Indeterminate(_)), "{lookup:?}");
}

#[tokio::test]
async fn trust_anchor_from_a_file() {
    let t = tree(ee(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.key");
    std::fs::write(&path, format!("test. 3600 IN DNSKEY {}\n", t.key.dnskey)).unwrap();
    let r = DaneResolver::new(&config(t.dns.addr), &TrustAnchor::File(path.clone())).unwrap();
    assert_eq!(
        r.tlsa("mx.test", 25).await,
        TlsaLookup::Secure(vec![t.mx.clone()])
    );
    std::fs::write(&path, "not a key\n").unwrap();
    assert!(DaneResolver::new(&config(t.dns.addr), &TrustAnchor::File(path)).is_err());
}

/// From DNS to the handshake: the TLSA record of `mx.test.` is the SPKI digest of the test
/// server's certificate; the verifier built from the lookup authenticates it.
#[tokio::test]
async fn lookup_then_handshake() {
    use rcgen::{CertificateParams, KeyPair, PublicKeyData};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::AsyncWriteExt;

    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["mx.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let record = Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info())
            .as_ref()
            .to_vec(),
    };
    let t = tree(record).await;
    let host = resolver(&t).lookup("mx.test", 25).await;
    let verifier = host.verifier().expect("usable TLSA records");

    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let _ = tls.shutdown().await;
        }
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(verifier.client_config().unwrap()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sni = ServerName::try_from(host.base_domain.clone()).unwrap();
    connector.connect(sni, tcp).await.unwrap();
    assert_eq!(
        verifier.matched().map(|m| m.describe()).as_deref(),
        Some("DANE-EE(3) SPKI(1) SHA2-256(1)")
    );
}
