//! MX routing against a real DNS server: `hato_dns::testing`'s in-test server answers from the
//! zone `example.test.` (and the reverse zone `2.0.192.in-addr.arpa.`) on
//! 127.0.0.1:<ephemeral> (UDP and TCP), and [`Router`] resolves over real sockets.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hato_delivery::route::{
    AddressOrder, DnsConfig, LocalIdentity, Route, RouteError, Router, prune_self,
};
use hato_dns::testing::{
    DnsServer, DnsTree, a, aaaa, cname, mx, ptr, record, silent_nameserver, txt,
};
use hickory_resolver::proto::rr::RData;
use hickory_resolver::proto::rr::rdata::TXT;

const ZONE: &str = "example.test.";

/// A name in no zone of the test server (which answers for everything below `test.`):
/// REFUSED.
const ELSEWHERE: &str = "elsewhere.example";

/// The test zone and the reverse zone.
fn tree() -> DnsTree {
    let mut tree = DnsTree::new();
    tree.zone(ZONE, false).add_all([
        // Two MX at preference 10, one at 20 (an alias, as found in the wild).
        mx("multi.example.test.", 10, "mx1.example.test."),
        mx("multi.example.test.", 10, "mx2.example.test."),
        mx("multi.example.test.", 20, "backup.example.test."),
        a("mx1.example.test.", "192.0.2.1"),
        aaaa("mx1.example.test.", "2001:db8::1"),
        a("mx2.example.test.", "192.0.2.2"),
        cname("backup.example.test.", "mx3.example.test."),
        aaaa("mx3.example.test.", "2001:db8::3"),
        // No MX: implicit MX with the domain's own addresses.
        a("implicit.example.test.", "192.0.2.10"),
        aaaa("implicit.example.test.", "2001:db8::10"),
        // RFC 7505 null MX.
        mx("nullmx.example.test.", 0, "."),
        // The domain is an alias of another domain: its MX is followed.
        cname("alias.example.test.", "multi.example.test."),
        // The only MX host does not exist.
        mx("dangling.example.test.", 10, "missing.example.test."),
        // Exists (a TXT record) but has neither MX nor addresses.
        txt("empty.example.test.", "v=spf1 -all"),
        // MTA-STS: the record split into two strings (they are concatenated), next to SPF.
        record(
            "_mta-sts.multi.example.test.",
            RData::TXT(TXT::new(vec![
                "v=STSv1; ".into(),
                "id=20260101T000000;".into(),
            ])),
        ),
        txt("_mta-sts.multi.example.test.", "v=spf1 -all"),
        // The MX is this server.
        mx("self.example.test.", 10, "mail.example.test."),
        a("mail.example.test.", "192.0.2.99"),
    ]);
    // Reverse DNS for 192.0.2.0/24: .1 names mx1 (whose A record is .1: confirmed); .2 names
    // mail.example.test (whose A record is .99: not confirmed).
    tree.zone("2.0.192.in-addr.arpa.", false).add_all([
        ptr("1.2.0.192.in-addr.arpa.", "MX1.example.test."),
        ptr("2.2.0.192.in-addr.arpa.", "mail.example.test."),
    ]);
    tree
}

async fn start_dns() -> DnsServer {
    start_dns_on(true, true).await
}

/// A server listening on UDP and/or TCP (the same port).
async fn start_dns_on(with_udp: bool, with_tcp: bool) -> DnsServer {
    tree().serve_on(with_udp, with_tcp).await
}

/// A server that answers every query with SERVFAIL.
async fn start_servfail() -> DnsServer {
    let mut tree = tree();
    tree.servfail_everything();
    tree.serve().await
}

fn router(addr: SocketAddr, tcp_only: bool, order: AddressOrder) -> Router {
    let config = DnsConfig {
        nameservers: vec![addr],
        timeout: Duration::from_secs(2),
        attempts: 1,
        tcp_only,
    };
    Router::new(&config, order).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn summary(route: &Route) -> Vec<(u16, String, Vec<IpAddr>)> {
    route
        .hosts
        .iter()
        .map(|h| (h.preference, h.name.clone(), h.addresses.clone()))
        .collect()
}

async fn check_multi(router: &Router, domain: &str) {
    let route = router.route(domain).await.unwrap();
    assert!(!route.implicit);
    let hosts = summary(&route);
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    let mut best: Vec<&str> = hosts[..2].iter().map(|h| h.1.as_str()).collect();
    best.sort();
    assert_eq!(best, vec!["mx1.example.test", "mx2.example.test"]);
    assert!(hosts[..2].iter().all(|h| h.0 == 10));
    let mx1 = hosts.iter().find(|h| h.1 == "mx1.example.test").unwrap();
    assert_eq!(
        mx1.2,
        vec![ip("2001:db8::1"), ip("192.0.2.1")],
        "IPv6 first"
    );
    assert_eq!(
        hosts[2],
        (20, "backup.example.test".into(), vec![ip("2001:db8::3")]),
        "an MX host that is a CNAME is followed"
    );
}

#[tokio::test]
async fn mx_resolution_over_udp_and_tcp() {
    // A UDP-only server for the default transport, a TCP-only one for `tcp_only`: each
    // answer must have come over that transport.
    for tcp_only in [false, true] {
        let dns = start_dns_on(!tcp_only, tcp_only).await;
        let r = router(dns.addr(), tcp_only, AddressOrder::Ipv6First);
        check_multi(&r, "multi.example.test").await;
        check_multi(&r, "MULTI.example.test.").await;
        check_multi(&r, "alias.example.test").await;
    }
}

#[tokio::test]
async fn equal_preferences_are_shuffled() {
    let dns = start_dns().await;
    let r = router(dns.addr(), false, AddressOrder::Ipv6First);
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let route = r.route("multi.example.test").await.unwrap();
        firsts.insert(route.hosts[0].name.clone());
    }
    assert_eq!(firsts.len(), 2, "{firsts:?}");
}

#[tokio::test]
async fn implicit_mx_and_address_families() {
    let dns = start_dns().await;
    let route = router(dns.addr(), false, AddressOrder::Ipv6First)
        .route("implicit.example.test")
        .await
        .unwrap();
    assert!(route.implicit);
    assert_eq!(
        summary(&route),
        vec![(
            0,
            "implicit.example.test".into(),
            vec![ip("2001:db8::10"), ip("192.0.2.10")]
        )]
    );
    let v4 = router(dns.addr(), false, AddressOrder::Ipv4Only)
        .route("implicit.example.test")
        .await
        .unwrap();
    assert_eq!(v4.hosts[0].addresses, vec![ip("192.0.2.10")]);
    let v4first = router(dns.addr(), false, AddressOrder::Ipv4First)
        .route("implicit.example.test")
        .await
        .unwrap();
    assert_eq!(
        v4first.hosts[0].addresses,
        vec![ip("192.0.2.10"), ip("2001:db8::10")]
    );
}

#[tokio::test]
async fn permanent_failures() {
    let dns = start_dns().await;
    let r = router(dns.addr(), false, AddressOrder::Ipv6First);

    let err = r.route("nullmx.example.test").await.unwrap_err();
    assert_eq!(
        err,
        RouteError::NullMx {
            domain: "nullmx.example.test".into()
        }
    );
    assert!(err.is_permanent());
    assert!(err.diagnostic().starts_with("556 5.1.10 "));

    let err = r.route("nothere.example.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NoSuchDomain { .. }), "{err:?}");
    assert!(err.is_permanent());

    let err = r.route("dangling.example.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NoMailHost { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.example.test"), "{err}");

    let err = r.route("empty.example.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NoMailHost { .. }), "{err:?}");

    let err = r.route("").await.unwrap_err();
    assert!(matches!(err, RouteError::InvalidDomain { .. }), "{err:?}");
}

#[tokio::test]
async fn transient_failures() {
    // A zone the server is not authoritative for: REFUSED.
    let dns = start_dns().await;
    let err = router(dns.addr(), false, AddressOrder::Ipv6First)
        .route(ELSEWHERE)
        .await
        .unwrap_err();
    assert!(matches!(err, RouteError::Temporary { .. }), "{err:?}");
    assert!(!err.is_permanent());
    assert!(err.diagnostic().starts_with("451 4.4.3 "));

    // SERVFAIL from the nameserver.
    let servfail = start_servfail().await;
    let err = router(servfail.addr(), false, AddressOrder::Ipv6First)
        .route("multi.example.test")
        .await
        .unwrap_err();
    assert!(matches!(err, RouteError::Temporary { .. }), "{err:?}");

    // A nameserver that never answers: timeout.
    let (_silent, config) = silent_nameserver().await;
    let r = Router::new(&config, AddressOrder::Ipv6First).unwrap();
    let started = std::time::Instant::now();
    let err = r.route("multi.example.test").await.unwrap_err();
    assert!(matches!(err, RouteError::Temporary { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn destination_is_ourselves() {
    let dns = start_dns().await;
    let r = router(dns.addr(), false, AddressOrder::Ipv6First);
    let me = LocalIdentity {
        hostnames: vec!["mail.example.test".into()],
        addresses: vec![],
    };
    let route = r.route("self.example.test").await.unwrap();
    let err = prune_self(route, &me).unwrap_err();
    assert!(matches!(err, RouteError::Loop { .. }), "{err:?}");
    assert!(err.diagnostic().starts_with("554 5.4.6 "));

    // By address: we are mx2 (preference 10) → everything at 10 and worse goes → loop; we are
    // the backup (20) → only the preference-10 hosts remain.
    let route = r.route("multi.example.test").await.unwrap();
    let by_addr = LocalIdentity {
        hostnames: vec![],
        addresses: vec![ip("192.0.2.2")],
    };
    assert!(prune_self(route.clone(), &by_addr).is_err());
    let backup = LocalIdentity {
        hostnames: vec!["backup.example.test".into()],
        addresses: vec![],
    };
    let pruned = prune_self(route, &backup).unwrap();
    assert_eq!(pruned.hosts.len(), 2);
    assert!(pruned.hosts.iter().all(|h| h.preference == 10));
}

#[tokio::test]
async fn txt_records_for_mta_sts() {
    use hato_delivery::mta_sts;
    let dns = start_dns().await;
    let r = router(dns.addr(), false, AddressOrder::Ipv6First);
    let records = r
        .txt(&mta_sts::txt_name("multi.example.test"))
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        mta_sts::parse_txt(&records).unwrap(),
        Some(mta_sts::StsRecord {
            id: "20260101T000000".into()
        })
    );
    // No record, no domain: empty, not an error.
    assert!(
        r.txt("_mta-sts.implicit.example.test")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        r.txt("_mta-sts.nothere.example.test")
            .await
            .unwrap()
            .is_empty()
    );
    // Not answerable: a temporary error.
    assert!(r.txt(&format!("_mta-sts.{ELSEWHERE}")).await.is_err());
}

/// Forward-confirmed reverse DNS: a PTR name counts only if it resolves back to the address.
#[tokio::test]
async fn reverse_names_are_forward_confirmed() {
    let dns = start_dns().await;
    let r = router(dns.addr(), false, AddressOrder::default());
    assert_eq!(
        r.reverse_name(ip("192.0.2.1")).await.as_deref(),
        Some("mx1.example.test")
    );
    assert_eq!(
        r.reverse_name(ip("192.0.2.2")).await,
        None,
        "PTR not confirmed"
    );
    assert_eq!(r.reverse_name(ip("192.0.2.3")).await, None, "no PTR");
}
