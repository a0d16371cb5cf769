//! Test support (feature `test-support`, off by default): an in-process authoritative DNS
//! server for a private DNSSEC tree, for tests of DNS lookups, DANE and delivery to DANE
//! destinations (hato-delivery's `tests/dane_dns.rs`, the `hato` crate's `tests/dane.rs`), and
//! [`Fixed`], a [`Resolver`] of fixed answers for tests that need no server.
//!
//! hickory-server 0.26 can sign an in-memory zone itself (`InMemoryZoneHandler::
//! add_zone_signing_key_mut`/`secure_zone_mut`), but only with its `dnssec-ring` feature, and
//! that feature adds a parameter to `InMemoryZoneHandler::empty`, which would break the other
//! tests that build zones with it (cargo unifies the features of dev-dependencies in a
//! workspace-wide build). So the zones here are signed with hickory-proto's DNSSEC signing
//! (Ed25519 keys from ring, `RRSIG::from_rrset`, an NSEC chain built here), and served by a
//! small authoritative [`RequestHandler`] on 127.0.0.1 (UDP and TCP, the same port). No
//! external tools.
//!
//! The tree: [`ANCHOR_ZONE`] (`test.`) is signed, and its key is the trust anchor
//! ([`DnsServer::trust_anchor`], or [`DnsServer::trust_anchor_text`] for a file in zone-file
//! format, `[dns] trust_anchor`). Child zones are delegated from the closest enclosing zone:
//! a signed child gets a DS record there (a secure delegation), an unsigned one only the NS
//! record, whose NSEC at the cut proves the delegation insecure. Records go to the deepest zone
//! that contains their owner name.
//!
//! Unsigned zones outside the tree (a reverse zone such as `2.0.192.in-addr.arpa.`) are served
//! authoritatively too, but not delegated from anywhere. Names in no zone get REFUSED.
//! [`DnsTree::servfail_everything`] makes a server that answers every question with SERVFAIL,
//! [`DnsTree::serve_on`] one that listens on UDP or TCP alone, and [`DnsTree::ttl`] sets the
//! TTL of every record (0: resolvers see every change at once). [`DnsServer::replace`] and
//! [`DnsServer::remove`] change records while the server runs (the zones are signed again).
//!
//! ```text
//! let mut tree = DnsTree::new();
//! tree.zone("remote.test", true)
//!     .add(mx("remote.test", 10, "mx.remote.test"))
//!     .add(a("mx.remote.test", "127.0.0.1"))
//!     .add(tlsa("_25._tcp.mx.remote.test", &record));
//! let dns = tree.serve().await; // or tree.serve_in_background() outside a runtime
//! let resolver = hato_delivery::dane_lookup::DaneResolver::new(&dns.dns_config(), &dns.trust_anchor())?;
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::dnssec::crypto::Ed25519SigningKey;
use hickory_resolver::proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, NSEC, RRSIG};
use hickory_resolver::proto::dnssec::{
    DigestType, DnssecSigner, PublicKey, SigningKey, TrustAnchors,
};
use hickory_resolver::proto::op::{Metadata, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TXT};
use hickory_resolver::proto::rr::{
    DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType,
};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::{Answer, DnsConfig, Family, Resolver, TrustAnchor};

/// The zone whose key is the trust anchor.
pub const ANCHOR_ZONE: &str = "test.";

/// The TTL of every record (unless [`DnsTree::ttl`] says otherwise).
pub const TTL: u32 = 300;

/// An absolute or relative name (relative names are taken as absolute); panics if invalid.
pub fn name(n: &str) -> Name {
    let mut name = Name::from_str(n).unwrap_or_else(|e| panic!("bad DNS name {n:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// A record with [`TTL`].
pub fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), TTL, data)
}

pub fn a(owner: &str, ip: &str) -> Record {
    record(owner, RData::A(A(Ipv4Addr::from_str(ip).unwrap())))
}

pub fn aaaa(owner: &str, ip: &str) -> Record {
    record(owner, RData::AAAA(AAAA(Ipv6Addr::from_str(ip).unwrap())))
}

pub fn cname(owner: &str, target: &str) -> Record {
    record(owner, RData::CNAME(CNAME(name(target))))
}

pub fn mx(owner: &str, preference: u16, exchange: &str) -> Record {
    record(owner, RData::MX(MX::new(preference, name(exchange))))
}

pub fn txt(owner: &str, text: &str) -> Record {
    record(owner, RData::TXT(TXT::new(vec![text.to_owned()])))
}

pub fn ptr(owner: &str, target: &str) -> Record {
    record(owner, RData::PTR(PTR(name(target))))
}

/// SOA (its minimum, the negative-caching TTL, is `ttl` too), NS and `ns.<origin>` A.
fn soa_ns(origin: &Name, ttl: u32) -> Vec<Record> {
    let ns = origin.prepend_label("ns").unwrap();
    vec![
        Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                ns.clone(),
                origin.prepend_label("hostmaster").unwrap(),
                1,
                3600,
                600,
                86_400,
                ttl,
            )),
        ),
        Record::from_rdata(origin.clone(), ttl, RData::NS(NS(ns.clone()))),
        Record::from_rdata(ns, ttl, RData::A(A(Ipv4Addr::LOCALHOST))),
    ]
}

/// A zone key (Ed25519, flags 257) and its signer.
struct ZoneKey {
    signer: DnssecSigner,
    dnskey: DNSKEY,
}

impl ZoneKey {
    fn generate(origin: &Name) -> ZoneKey {
        let pkcs8 = Ed25519SigningKey::generate_pkcs8().unwrap();
        let key = Ed25519SigningKey::from_pkcs8(&pkcs8).unwrap();
        let dnskey = DNSKEY::from_key(&key.to_public_key().unwrap());
        let signer = DnssecSigner::new(
            dnskey.clone(),
            Box::new(key),
            origin.clone(),
            Duration::from_secs(2 * 86_400),
        );
        ZoneKey { signer, dnskey }
    }

    /// The DS record for this key at `origin` (SHA-256).
    fn ds(&self, origin: &Name) -> Record {
        let digest = self
            .dnskey
            .to_digest(origin, DigestType::SHA256)
            .expect("DNSKEY digest");
        let ds = DS::new(
            self.dnskey.calculate_key_tag().expect("key tag"),
            self.dnskey.public_key().algorithm(),
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        );
        Record::from_rdata(origin.clone(), TTL, RData::DNSSEC(DNSSECRData::DS(ds)))
    }
}

/// A trust anchor for [`ANCHOR_ZONE`] with a fresh key that signs nothing: every answer
/// under it is bogus.
pub fn unrelated_trust_anchor() -> TrustAnchor {
    anchor_for(&ZoneKey::generate(&name(ANCHOR_ZONE)).dnskey)
}

fn anchor_for(key: &DNSKEY) -> TrustAnchor {
    let mut anchors = TrustAnchors::empty();
    anchors.insert_with_name(key.public_key(), LowerName::new(&name(ANCHOR_ZONE)));
    TrustAnchor::Keys(Arc::new(anchors))
}

/// One zone of a [`DnsTree`] before it is built.
struct ZoneSpec {
    origin: Name,
    key: Option<ZoneKey>,
}

/// A private DNS tree under [`ANCHOR_ZONE`] (and unsigned zones outside it): its zones,
/// records, tampered RRsets and names that get SERVFAIL. Built and signed by
/// [`DnsTree::serve`].
pub struct DnsTree {
    zones: Vec<ZoneSpec>,
    records: Vec<Record>,
    tampered: Vec<Record>,
    servfail: Vec<Name>,
    servfail_everything: bool,
    ttl: u32,
}

impl Default for DnsTree {
    fn default() -> DnsTree {
        DnsTree::new()
    }
}

impl DnsTree {
    /// The signed [`ANCHOR_ZONE`] alone (SOA, NS, `ns.test.`).
    pub fn new() -> DnsTree {
        let origin = name(ANCHOR_ZONE);
        DnsTree {
            zones: vec![ZoneSpec {
                key: Some(ZoneKey::generate(&origin)),
                origin,
            }],
            records: Vec::new(),
            tampered: Vec::new(),
            servfail: Vec::new(),
            servfail_everything: false,
            ttl: TTL,
        }
    }

    /// Adds a zone with its SOA, NS and `ns.<origin>`. Below [`ANCHOR_ZONE`], a child zone:
    /// `signed`, with its own key and a DS record in the parent (a secure delegation), else
    /// unsigned (a provably insecure delegation when the parent is signed). Outside it (e.g. a
    /// reverse zone `2.0.192.in-addr.arpa.`), an unsigned zone served authoritatively but
    /// delegated from nowhere (`signed` must be false).
    pub fn zone(&mut self, origin: &str, signed: bool) -> &mut DnsTree {
        let origin = name(origin);
        assert!(
            origin != name(ANCHOR_ZONE),
            "{ANCHOR_ZONE} is always in the tree"
        );
        assert!(
            !signed || name(ANCHOR_ZONE).zone_of(&origin),
            "{origin} is not below {ANCHOR_ZONE}: it can only be unsigned"
        );
        assert!(
            !self.zones.iter().any(|z| z.origin == origin),
            "zone {origin} added twice"
        );
        self.zones.push(ZoneSpec {
            key: signed.then(|| ZoneKey::generate(&origin)),
            origin,
        });
        self
    }

    /// Adds a record to the deepest zone containing its owner name.
    pub fn add(&mut self, record: Record) -> &mut DnsTree {
        self.records.push(record);
        self
    }

    /// Adds several records ([`DnsTree::add`]).
    pub fn add_all(&mut self, records: impl IntoIterator<Item = Record>) -> &mut DnsTree {
        self.records.extend(records);
        self
    }

    /// After signing, replaces the data of the RRset with this record's owner and type by this
    /// record's data, keeping the old signatures (which then fail validation). The RRset must
    /// exist in a signed zone.
    pub fn tamper(&mut self, record: Record) -> &mut DnsTree {
        self.tampered.push(record);
        self
    }

    /// Queries for exactly this name get SERVFAIL.
    pub fn servfail(&mut self, owner: &str) -> &mut DnsTree {
        self.servfail.push(name(owner));
        self
    }

    /// Every query gets SERVFAIL (a broken nameserver).
    pub fn servfail_everything(&mut self) -> &mut DnsTree {
        self.servfail_everything = true;
        self
    }

    /// The TTL of every record, the SOA minimum (negative caching) included, instead of
    /// [`TTL`]. 0: a resolver sees every change ([`DnsServer::replace`]) at once.
    pub fn ttl(&mut self, ttl: u32) -> &mut DnsTree {
        self.ttl = ttl;
        self
    }

    /// The trust anchor for [`ANCHOR_ZONE`] (also [`DnsServer::trust_anchor`]).
    pub fn trust_anchor(&self) -> TrustAnchor {
        anchor_for(&self.anchor_key().dnskey)
    }

    /// The trust anchor as DNSKEY lines in zone-file format (`test. 300 IN DNSKEY 257 3 15
    /// ...`), to write to a file for [`TrustAnchor::File`] (`[dns] trust_anchor`).
    pub fn trust_anchor_text(&self) -> String {
        format!(
            "{ANCHOR_ZONE} {TTL} IN DNSKEY {}\n",
            self.anchor_key().dnskey
        )
    }

    fn anchor_key(&self) -> &ZoneKey {
        self.zones[0]
            .key
            .as_ref()
            .expect("the anchor zone is signed")
    }

    /// The index of the deepest zone containing `n` (`skip`: not this one).
    fn zone_index(&self, n: &Name, skip: Option<usize>) -> Option<usize> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(i, z)| Some(*i) != skip && z.origin.zone_of(n))
            .max_by_key(|(_, z)| z.origin.num_labels())
            .map(|(i, _)| i)
    }

    /// The signed zones, ready to serve.
    fn build(&self) -> Vec<Zone> {
        let ttl = self.ttl;
        let mut records: Vec<Vec<Record>> =
            self.zones.iter().map(|z| soa_ns(&z.origin, ttl)).collect();
        // Delegations: NS (and DS for a signed child) in the closest enclosing zone (none for
        // a zone outside the tree).
        for (i, child) in self.zones.iter().enumerate().skip(1) {
            let Some(parent) = self.zone_index(&child.origin, Some(i)) else {
                continue;
            };
            let ns = child.origin.prepend_label("ns").unwrap();
            records[parent].push(Record::from_rdata(
                child.origin.clone(),
                ttl,
                RData::NS(NS(ns)),
            ));
            if let Some(key) = &child.key {
                let mut ds = key.ds(&child.origin);
                ds.ttl = ttl;
                records[parent].push(ds);
            }
        }
        for r in &self.records {
            let i = self
                .zone_index(&r.name, None)
                .unwrap_or_else(|| panic!("{} is in no zone of the tree", r.name));
            records[i].push(r.clone());
        }
        let mut zones: Vec<Zone> = self
            .zones
            .iter()
            .zip(records)
            .map(|(spec, records)| Zone::new(spec.origin.clone(), records, spec.key.as_ref(), ttl))
            .collect();
        for r in &self.tampered {
            let i = self
                .zone_index(&r.name, None)
                .unwrap_or_else(|| panic!("{} is in no zone of the tree", r.name));
            zones[i].tamper(&r.name, r.data.clone(), ttl);
        }
        zones
    }

    /// Signs the zones and serves them on 127.0.0.1 (UDP and TCP, one port) in the current
    /// tokio runtime, until the [`DnsServer`] is dropped.
    pub async fn serve(self) -> DnsServer {
        self.serve_on(true, true).await
    }

    /// [`DnsTree::serve`] on UDP and/or TCP only (the port of the other is not listened on:
    /// a resolver trying it gets no answer or a refused connection).
    pub async fn serve_on(self, udp: bool, tcp: bool) -> DnsServer {
        assert!(udp || tcp, "a DNS server on neither UDP nor TCP");
        let anchor_text = self.trust_anchor_text();
        let anchor = self.trust_anchor();
        let zones = self.build();
        let state = Arc::new(Mutex::new(State { tree: self, zones }));
        let (server, addr) = listen(
            Authoritative {
                state: state.clone(),
            },
            udp,
            tcp,
        )
        .await;
        DnsServer {
            addr,
            anchor_text,
            anchor,
            state,
            _server: server,
            _runtime: None,
        }
    }

    /// [`DnsTree::serve`] on a tokio runtime of its own (for tests without one, e.g. those
    /// that drive a server binary from `#[test]` functions).
    pub fn serve_in_background(self) -> DnsServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the DNS server");
        let mut server = runtime.block_on(self.serve());
        server._runtime = Some(runtime);
        server
    }
}

/// The tree of a running server and its zones as built from it.
struct State {
    tree: DnsTree,
    zones: Vec<Zone>,
}

/// The running server of a [`DnsTree`]; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    anchor_text: String,
    anchor: TrustAnchor,
    state: Arc<Mutex<State>>,
    // Dropped before the runtime it runs on.
    _server: Server<Authoritative>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl DnsServer {
    /// Where it listens (UDP and TCP): for `[dns] nameservers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A resolver configuration for this server alone (2 s timeout, one attempt).
    pub fn dns_config(&self) -> DnsConfig {
        DnsConfig {
            nameservers: vec![self.addr],
            timeout: Duration::from_secs(2),
            attempts: 1,
            tcp_only: false,
        }
    }

    /// The key of [`ANCHOR_ZONE`] as a trust anchor.
    pub fn trust_anchor(&self) -> TrustAnchor {
        self.anchor.clone()
    }

    /// See [`DnsTree::trust_anchor_text`].
    pub fn trust_anchor_text(&self) -> &str {
        &self.anchor_text
    }

    /// Replaces the records with `owner` and `kind` (none: removes them) by `records` (each
    /// with that owner and type), then builds and signs the zones again; later answers come
    /// from the changed tree. Tampered RRsets ([`DnsTree::tamper`]) stay tampered.
    pub fn replace(&self, owner: &str, kind: RecordType, records: Vec<Record>) {
        let owner = name(owner);
        for r in &records {
            assert!(
                r.name == owner && r.record_type() == kind,
                "{} {} is not a {kind} record of {owner}",
                r.name,
                r.record_type()
            );
        }
        let mut state = self.state.lock().unwrap();
        state
            .tree
            .records
            .retain(|r| !(r.name == owner && r.record_type() == kind));
        state.tree.records.extend(records);
        state.zones = state.tree.build();
    }

    /// Removes the records with `owner` and `kind` ([`DnsServer::replace`] with none).
    pub fn remove(&self, owner: &str, kind: RecordType) {
        self.replace(owner, kind, Vec::new());
    }
}

/// A nameserver that never answers (a UDP socket nobody reads: keep it while it is used) and a
/// resolver configuration for it alone (300 ms timeout, one attempt): for lookups that time out.
pub async fn silent_nameserver() -> (UdpSocket, DnsConfig) {
    let silent = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a UDP socket");
    let config = DnsConfig {
        nameservers: vec![silent.local_addr().expect("its address")],
        timeout: Duration::from_millis(300),
        attempts: 1,
        tcp_only: false,
    };
    (silent, config)
}

async fn listen(
    handler: Authoritative,
    with_udp: bool,
    with_tcp: bool,
) -> (Server<Authoritative>, SocketAddr) {
    // Same port for UDP and TCP (retry if the TCP port happens to be taken).
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP socket");
        let addr = udp.local_addr().expect("its address");
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    let mut server = Server::new(handler);
    if with_udp {
        server.register_socket(udp);
    }
    if with_tcp {
        server.register_listener(tcp, Duration::from_secs(5), 4096);
    }
    (server, addr)
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
    fn new(origin: Name, records: Vec<Record>, key: Option<&ZoneKey>, ttl: u32) -> Zone {
        let mut names: BTreeMap<Name, Vec<RecordSet>> = BTreeMap::new();
        let add = |r: Record, names: &mut BTreeMap<Name, Vec<RecordSet>>| {
            let sets = names.entry(r.name.clone()).or_default();
            match sets.iter_mut().find(|s| s.record_type() == r.record_type()) {
                Some(set) => {
                    set.add_rdata(r.data);
                }
                None => {
                    let mut set = RecordSet::with_ttl(r.name.clone(), r.record_type(), ttl);
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
                ttl,
                RData::DNSSEC(DNSSECRData::DNSKEY(key.dnskey.clone())),
            ),
            &mut names,
        );
        let is_cut = |owner: &Name, sets: &[RecordSet]| {
            *owner != origin && sets.iter().any(|s| s.record_type() == RecordType::NS)
        };
        // The NSEC chain (RFC 4034 4): each owner name points to the next in canonical order,
        // the last one back to the apex. At a delegation only NS and DS are the parent's.
        let owners: Vec<Name> = names.keys().cloned().collect();
        for (i, owner) in owners.iter().enumerate() {
            let next = owners[(i + 1) % owners.len()].clone();
            let sets = &names[owner];
            let types: Vec<RecordType> = sets
                .iter()
                .map(|s| s.record_type())
                .filter(|t| !is_cut(owner, sets) || matches!(t, RecordType::NS | RecordType::DS))
                .collect();
            add(
                Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::DNSSEC(DNSSECRData::NSEC(NSEC::new_cover_self(next, types))),
                ),
                &mut names,
            );
        }
        let inception = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        for (owner, sets) in names.iter_mut() {
            let cut = is_cut(owner, sets);
            for set in sets.iter_mut() {
                if cut && set.record_type() == RecordType::NS {
                    continue;
                }
                let rrsig = RRSIG::from_rrset(set, DNSClass::IN, inception, &key.signer)
                    .expect("sign an RRset");
                set.insert_rrsig(Record::from_rdata(
                    owner.clone(),
                    ttl,
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
    fn tamper(&mut self, owner: &Name, data: RData, ttl: u32) {
        let kind = data.record_type();
        let set = self
            .names
            .get_mut(owner)
            .and_then(|sets| sets.iter_mut().find(|s| s.record_type() == kind))
            .unwrap_or_else(|| panic!("no {kind} RRset at {owner} to tamper with"));
        assert!(
            !set.rrsigs().is_empty(),
            "the {kind} RRset at {owner} is not signed"
        );
        let rrsigs = set.rrsigs().to_vec();
        let mut forged = RecordSet::with_ttl(owner.clone(), kind, ttl);
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
        let soa = Zone::with_sigs(self.set(&self.origin, RecordType::SOA).expect("an SOA"));
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

/// An authoritative server for the zones of a tree; SERVFAIL for some names (or all).
struct Authoritative {
    state: Arc<Mutex<State>>,
}

impl Authoritative {
    fn respond(&self, qname: &Name, kind: RecordType) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        let state = self.state.lock().unwrap();
        if state.tree.servfail_everything || state.tree.servfail.contains(qname) {
            return (ResponseCode::ServFail, Vec::new(), Vec::new());
        }
        let mut zones: Vec<&Zone> = state
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

/// A [`Resolver`] of fixed answers: names without an entry are NXDOMAIN, a name with entries of
/// other types answers NODATA, and [`Fixed::fail`] makes a name fail (SERVFAIL).
#[derive(Debug, Default, Clone)]
pub struct Fixed {
    mx: BTreeMap<String, Vec<(u16, String)>>,
    ip: BTreeMap<String, Vec<std::net::IpAddr>>,
    txt: BTreeMap<String, Vec<String>>,
    ptr: BTreeMap<std::net::IpAddr, Vec<String>>,
    failing: Vec<String>,
}

impl Fixed {
    pub fn new() -> Fixed {
        Fixed::default()
    }

    pub fn mx(mut self, name: &str, preference: u16, exchange: &str) -> Fixed {
        let entry = self.mx.entry(crate::normalize(name)).or_default();
        entry.push((preference, exchange.to_owned()));
        self
    }

    /// An A or AAAA record.
    pub fn ip(mut self, name: &str, ip: &str) -> Fixed {
        let ip = ip.parse().expect("an IP address");
        self.ip.entry(crate::normalize(name)).or_default().push(ip);
        self
    }

    pub fn txt(mut self, name: &str, text: &str) -> Fixed {
        let entry = self.txt.entry(crate::normalize(name)).or_default();
        entry.push(text.to_owned());
        self
    }

    pub fn ptr(mut self, ip: &str, name: &str) -> Fixed {
        let ip = ip.parse().expect("an IP address");
        self.ptr.entry(ip).or_default().push(crate::normalize(name));
        self
    }

    /// Every question about `name` fails (SERVFAIL).
    pub fn fail(mut self, name: &str) -> Fixed {
        self.failing.push(crate::normalize(name));
        self
    }

    fn answer<T: Clone>(&self, name: &str, records: Option<&Vec<T>>) -> Answer<T> {
        let name = crate::normalize(name);
        if self.failing.contains(&name) {
            return Answer::Failed(format!("{name}: SERVFAIL (test)"));
        }
        match records {
            Some(r) if !r.is_empty() => Answer::Found(r.clone()),
            _ if self.mx.contains_key(&name)
                || self.ip.contains_key(&name)
                || self.txt.contains_key(&name) =>
            {
                Answer::NoData
            }
            _ => Answer::NxDomain,
        }
    }
}

#[async_trait::async_trait]
impl Resolver for Fixed {
    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.answer(name, self.mx.get(&crate::normalize(name)))
    }

    async fn ip(&self, name: &str, family: Family) -> Answer<std::net::IpAddr> {
        let all = self.ip.get(&crate::normalize(name));
        let some: Option<Vec<std::net::IpAddr>> = all.map(|v| {
            v.iter()
                .copied()
                .filter(|ip| ip.is_ipv4() == (family == Family::V4))
                .collect()
        });
        self.answer(name, some.as_ref())
    }

    async fn txt(&self, name: &str) -> Answer<String> {
        self.answer(name, self.txt.get(&crate::normalize(name)))
    }

    async fn ptr(&self, ip: std::net::IpAddr) -> Answer<String> {
        match self.ptr.get(&ip) {
            Some(names) => Answer::Found(names.clone()),
            None => Answer::NxDomain,
        }
    }
}
