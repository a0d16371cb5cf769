//! The lookup trait: the combining rules on fixed answers, and the hickory resolver over real
//! sockets against the in-test DNS server.

use std::net::IpAddr;

use hato_dns::testing::{DnsTree, Fixed, a, aaaa, cname, mx, txt};
use hato_dns::{Answer, Family, HickoryResolver, Resolver, addresses, confirmed_reverse_name};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn addresses_combine_families() {
    let dns = Fixed::new()
        .ip("both.example", "192.0.2.1")
        .ip("both.example", "2001:db8::1")
        .ip("v4.example", "192.0.2.2")
        .txt("text.example", "x")
        .fail("broken.example");
    assert_eq!(
        addresses(&dns, "both.example", true, true).await,
        Answer::Found(vec![ip("192.0.2.1"), ip("2001:db8::1")])
    );
    assert_eq!(
        addresses(&dns, "both.example", false, true).await,
        Answer::Found(vec![ip("2001:db8::1")])
    );
    // No AAAA is NODATA, not a failure: the A record is enough.
    assert_eq!(
        addresses(&dns, "v4.example", true, true).await,
        Answer::Found(vec![ip("192.0.2.2")])
    );
    assert_eq!(
        addresses(&dns, "v4.example", false, true).await,
        Answer::NoData
    );
    assert_eq!(
        addresses(&dns, "text.example", true, true).await,
        Answer::NoData
    );
    assert_eq!(
        addresses(&dns, "none.example", true, true).await,
        Answer::NxDomain
    );
    assert!(matches!(
        addresses(&dns, "broken.example", true, true).await,
        Answer::Failed(_)
    ));
}

#[tokio::test]
async fn reverse_name_must_be_confirmed_forward() {
    let dns = Fixed::new()
        // Confirmed: the PTR name has the address.
        .ptr("192.0.2.10", "Mail.Example.")
        .ip("mail.example", "192.0.2.10")
        // Not confirmed: the PTR name points elsewhere (a forged PTR).
        .ptr("192.0.2.20", "bank.example")
        .ip("bank.example", "198.51.100.1")
        // The second PTR name confirms.
        .ptr("192.0.2.30", "nothing.example")
        .ptr("192.0.2.30", "second.example")
        .ip("second.example", "192.0.2.30");
    for (address, name) in [
        ("192.0.2.10", Some("mail.example")),
        ("192.0.2.20", None),
        ("192.0.2.30", Some("second.example")),
        ("192.0.2.99", None),
    ] {
        assert_eq!(
            confirmed_reverse_name(&dns, ip(address)).await.as_deref(),
            name,
            "{address}"
        );
    }
}

#[tokio::test]
async fn hickory_resolver_over_real_sockets() {
    let mut tree = DnsTree::new();
    tree.zone("remote.test", false)
        .add(mx("remote.test", 10, "mx.remote.test"))
        .add(a("mx.remote.test", "127.0.0.1"))
        .add(aaaa("mx.remote.test", "::1"))
        .add(cname("alias.remote.test", "mx.remote.test"))
        .add(txt("_mta-sts.remote.test", "v=STSv1; id=1"));
    let server = tree.serve().await;
    let dns = HickoryResolver::new(&server.dns_config()).unwrap();
    match dns.mx("remote.test").await {
        Answer::Found(records) => {
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].0, 10);
            assert_eq!(records[0].1.trim_end_matches('.'), "mx.remote.test");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        dns.ip("alias.remote.test", Family::V4).await,
        Answer::Found(vec![ip("127.0.0.1")])
    );
    assert_eq!(
        dns.ip("mx.remote.test", Family::V6).await,
        Answer::Found(vec![ip("::1")])
    );
    assert_eq!(
        dns.txt("_mta-sts.remote.test").await,
        Answer::Found(vec!["v=STSv1; id=1".to_owned()])
    );
    assert_eq!(dns.mx("nonexistent.remote.test").await, Answer::NxDomain);
    assert_eq!(dns.txt("mx.remote.test").await, Answer::NoData);
    assert_eq!(dns.mx("[192.0.2.1]").await, Answer::NxDomain);
}
