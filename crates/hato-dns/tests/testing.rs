//! The in-test DNS server itself (`hato_dns::testing`): zones outside the tree, servers on UDP
//! or TCP alone, SERVFAIL for everything, TTLs, and records changed while it serves.

use std::net::IpAddr;
use std::time::Duration;

use hato_dns::testing::{DnsServer, DnsTree, a, mx, ptr, txt};
use hato_dns::{Answer, DnsConfig, Family, HickoryResolver, Resolver, resolver_builder};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::rr::RecordType;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn resolver(server: &DnsServer, tcp_only: bool) -> HickoryResolver {
    let config = DnsConfig {
        timeout: Duration::from_millis(500),
        tcp_only,
        ..server.dns_config()
    };
    HickoryResolver::new(&config).unwrap()
}

#[tokio::test]
async fn a_reverse_zone_outside_the_tree_is_served() {
    let mut tree = DnsTree::new();
    tree.zone("example.test", false)
        .add(a("mx1.example.test", "192.0.2.1"));
    tree.zone("2.0.192.in-addr.arpa", false)
        .add(ptr("1.2.0.192.in-addr.arpa", "MX1.example.test"));
    let server = tree.serve().await;
    let dns = resolver(&server, false);
    assert_eq!(
        dns.ptr(ip("192.0.2.1")).await,
        Answer::Found(vec!["mx1.example.test".to_owned()])
    );
    assert_eq!(dns.ptr(ip("192.0.2.2")).await, Answer::NxDomain);
    assert_eq!(
        hato_dns::confirmed_reverse_name(&dns, ip("192.0.2.1"))
            .await
            .as_deref(),
        Some("mx1.example.test")
    );
    // Not delegated from anywhere, and nothing else outside the tree is served: REFUSED.
    assert!(matches!(
        dns.ptr(ip("198.51.100.1")).await,
        Answer::Failed(_)
    ));
    assert!(matches!(
        dns.mx("elsewhere.example").await,
        Answer::Failed(_)
    ));
}

#[test]
#[should_panic(expected = "can only be unsigned")]
fn a_zone_outside_the_tree_cannot_be_signed() {
    DnsTree::new().zone("2.0.192.in-addr.arpa", true);
}

#[tokio::test]
async fn servers_on_udp_or_tcp_alone() {
    for (udp, tcp) in [(true, false), (false, true), (true, true)] {
        let mut tree = DnsTree::new();
        tree.zone("example.test", false)
            .add(mx("example.test", 10, "mx.example.test"));
        let server = tree.serve_on(udp, tcp).await;
        let answered = |a: &Answer<(u16, String)>| matches!(a, Answer::Found(_));
        // The default transport is UDP (TCP after a truncated answer or an error).
        let over_udp = resolver(&server, false).mx("example.test").await;
        let over_tcp = resolver(&server, true).mx("example.test").await;
        assert_eq!(
            answered(&over_tcp),
            tcp,
            "udp {udp}, tcp {tcp}: {over_tcp:?}"
        );
        if udp {
            assert!(answered(&over_udp), "udp {udp}, tcp {tcp}: {over_udp:?}");
        }
    }
}

#[tokio::test]
async fn servfail_everything() {
    let mut tree = DnsTree::new();
    tree.zone("example.test", false)
        .add(mx("example.test", 10, "mx.example.test"));
    tree.servfail_everything();
    let server = tree.serve().await;
    let dns = resolver(&server, false);
    assert!(matches!(dns.mx("example.test").await, Answer::Failed(_)));
    assert!(matches!(dns.txt("test").await, Answer::Failed(_)));
}

#[tokio::test]
async fn records_change_while_serving() {
    let mut tree = DnsTree::new();
    tree.ttl(0)
        .zone("example.test", false)
        .add(a("mta-sts.example.test", "127.0.0.1"))
        .add(txt("_mta-sts.example.test", "v=STSv1; id=1;"));
    let server = tree.serve().await;
    let dns = resolver(&server, false);
    assert_eq!(
        dns.txt("_mta-sts.example.test").await,
        Answer::Found(vec!["v=STSv1; id=1;".to_owned()])
    );
    server.replace(
        "_mta-sts.example.test",
        RecordType::TXT,
        vec![
            txt("_mta-sts.example.test", "v=STSv1; id=2;"),
            txt("_mta-sts.example.test", "v=spf1 -all"),
        ],
    );
    let Answer::Found(mut records) = dns.txt("_mta-sts.example.test").await else {
        panic!("no TXT records");
    };
    records.sort();
    assert_eq!(records, vec!["v=STSv1; id=2;", "v=spf1 -all"]);
    server.remove("_mta-sts.example.test", RecordType::TXT);
    assert_eq!(dns.txt("_mta-sts.example.test").await, Answer::NxDomain);
    server.remove("mta-sts.example.test", RecordType::A);
    assert_eq!(
        dns.ip("mta-sts.example.test", Family::V4).await,
        Answer::NxDomain
    );
    // Back again: TTL 0, no negative caching either.
    server.replace(
        "_mta-sts.example.test",
        RecordType::TXT,
        vec![txt("_mta-sts.example.test", "v=STSv1; id=3;")],
    );
    assert_eq!(
        dns.txt("_mta-sts.example.test").await,
        Answer::Found(vec!["v=STSv1; id=3;".to_owned()])
    );
}

#[tokio::test]
async fn changed_records_of_a_signed_zone_are_signed_again() {
    let mut tree = DnsTree::new();
    tree.zone("secure.test", true)
        .add(txt("secure.test", "before"));
    let server = tree.serve().await;
    server.replace(
        "secure.test",
        RecordType::TXT,
        vec![txt("secure.test", "after")],
    );
    let anchors = server.trust_anchor().load().unwrap();
    let mut builder = resolver_builder(&server.dns_config())
        .unwrap()
        .with_trust_anchor(anchors);
    builder.options_mut().validate = true;
    builder.options_mut().edns0 = true;
    let validating = builder.build().unwrap();
    let lookup = validating
        .lookup("secure.test.", RecordType::TXT)
        .await
        .unwrap();
    let records: Vec<_> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].data.to_string(), "after");
    assert_eq!(records[0].proof, Proof::Secure);
}

#[test]
#[should_panic(expected = "is not a TXT record of")]
fn replaced_records_must_match_the_owner_and_type() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tree = DnsTree::new();
        tree.zone("example.test", false);
        let server = tree.serve().await;
        server.replace(
            "example.test",
            RecordType::TXT,
            vec![a("example.test", "192.0.2.1")],
        );
    });
}
