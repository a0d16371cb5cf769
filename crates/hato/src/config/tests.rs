use super::*;

fn parse(s: &str) -> anyhow::Result<Config> {
    Config::parse(s, Path::new("hato.toml"))
}

/// `text` is refused with an error that names `fragment` (the key, the line, the fix).
#[track_caller]
fn assert_rejected(text: &str, fragment: &str) {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => assert!(e.to_string().contains(fragment), "{text}: {e}"),
    }
}

#[test]
fn default_instance_is_valid() {
    let c = Config::default_instance();
    assert_eq!(c.listeners.len(), 7);
    assert!(c.listeners[5].protocol == Protocol::Imap && c.listeners[5].require_tls());
    assert!(c.listeners[6].tls == TlsMode::Implicit);
    assert!(c.listeners[1].require_tls());
    assert!(!c.listeners[0].require_tls());
    assert_eq!(c.local_domains(), vec!["localhost"]);
}

#[test]
fn full_example_parses() {
    let c = parse(
        r#"
hostname = "mail.example.com"
data_dir = "/var/lib/hato"
domains = ["example.com"]
[tls]
cert = "/etc/hato/fullchain.pem"
key = "/etc/hato/privkey.pem"
[[listener]]
protocol = "smtp"
bind = "0.0.0.0:25"
tls = "starttls"
require_tls = false
[[listener]]
protocol = "submission"
bind = "0.0.0.0:587"
tls = "starttls"
require_tls = true
[[listener]]
protocol = "submission"
bind = "0.0.0.0:465"
tls = "implicit"
"#,
    )
    .unwrap();
    assert_eq!(c.listeners[2].tls, TlsMode::Implicit);
    assert_eq!(c.local_domains(), vec!["example.com"]);
}

#[test]
fn relay_networks_parse_and_match() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let n = IpNet::parse("192.168.0.0/24").unwrap();
    assert!(n.contains(ip("192.168.0.7")) && !n.contains(ip("192.168.1.7")));
    assert!(n.contains(ip("::ffff:192.168.0.9")));
    assert!(!n.contains(ip("2001:db8::1")));
    let h = IpNet::parse("10.0.0.5").unwrap();
    assert!(h.contains(ip("10.0.0.5")) && !h.contains(ip("10.0.0.6")));
    assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    let v6 = IpNet::parse("2001:db8::/32").unwrap();
    assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
    for bad in [
        "192.168.0.1/24",
        "10.0.0.0/33",
        "10.0.0.0/",
        "nope",
        "10.0.0.0/+8",
        "",
    ] {
        assert_eq!(IpNet::parse(bad), None, "{bad}");
    }
    let base = "[[listener]]\nprotocol=\"smtp\"\nbind=\"127.0.0.1:1\"\n";
    let c = parse(&format!(
        "relay_networks = [\"127.0.0.1\", \"10.0.0.0/8\"]\n{base}"
    ))
    .unwrap();
    assert_eq!(c.relay_nets().len(), 2);
    assert_rejected(
        &format!("relay_networks = [\"10.0.0.1/8\"]\n{base}"),
        "`relay_networks`",
    );
}

#[test]
fn smarthost_section() {
    let base = "[[listener]]\nprotocol=\"smtp\"\nbind=\"127.0.0.1:1\"\n";
    let c = parse(&format!(
        "[delivery.smarthost]\nhost = \"smtp.provider.example\"\nusername = \"me\"\npassword = \"pw\"\n{base}"
    ))
    .unwrap();
    let sh = c.delivery.smarthost.unwrap();
    assert_eq!(sh.tls, SmarthostTls::Starttls);
    assert_eq!(sh.target().unwrap().1, 587);
    assert!(!format!("{sh:?}").contains("pw"));
    assert_eq!(sh.credentials().unwrap().unwrap().1, "pw");
    for (bad, key) in [
        (
            "host = \"x.example\"\ntls = \"none\"\nusername = \"me\"\npassword = \"pw\"\n",
            "delivery.smarthost.tls",
        ),
        ("host = \"x.example\"\nusername = \"me\"\n", "password_file"),
        ("host = \"bad host\"\n", "delivery.smarthost.host"),
        ("host = \"x.example\"\npassword = \"pw\"\n", "username"),
        ("host = \"x.example\"\ntls = \"plain\"\n", "plain"),
    ] {
        assert_rejected(&format!("[delivery.smarthost]\n{bad}{base}"), key);
    }
}

#[test]
fn delivery_sections() {
    let base = "[[listener]]\nprotocol=\"smtp\"\nbind=\"127.0.0.1:1\"\n";
    let c = parse(base).unwrap();
    assert_eq!(c.delivery.port, 25);
    assert_eq!(c.delivery.concurrency, 20);
    assert!(!c.delivery.hold);
    assert_eq!(
        c.delivery.schedule().unwrap(),
        hato_delivery::backoff::RetrySchedule::default()
    );
    let c = parse(&format!(
        "[delivery]\nretry = [\"1s\", \"2m\"]\nmax_lifetime = \"1h\"\ntls_policy = \"encrypt\"\n\
         tls_minimum = \"may\"\ndelay_warning = \"4h\"\n\
         [delivery.tls_policies]\n\"bank.example\" = \"verify\"\n\".lan.example\" = \"none\"\n\
         [dns]\nnameservers = [\"127.0.0.1:5353\"]\n\
         [[route]]\ndomain = \"partner.example\"\nhost = \"mx.partner.example:2525\"\n{base}"
    ))
    .unwrap();
    {
        use hato_delivery::tls_policy::SecurityLevel;
        let table = c.delivery.policy_table().unwrap();
        assert_eq!(table.default, SecurityLevel::Encrypt);
        assert_eq!(table.minimum, SecurityLevel::May);
        assert_eq!(table.level_for("Bank.Example").0, SecurityLevel::Verify);
        assert_eq!(
            table.level_for("printer.lan.example").0,
            SecurityLevel::None
        );
        assert_eq!(table.level_for("other.example").0, SecurityLevel::Encrypt);
        assert_eq!(c.delivery.delay_warning_secs().unwrap(), Some(4 * 3600));
    }
    assert_eq!(c.dns.nameservers[0].port(), 5353);
    assert_eq!(c.routes[0].host, "mx.partner.example:2525");
    for (bad, key) in [
        ("[delivery]\nretry = []\n", "delivery.retry"),
        (
            "[delivery]\nmax_lifetime = \"forever\"\n",
            "delivery.max_lifetime",
        ),
        (
            "[delivery]\ntls_minimum = \"strong\"\n",
            "delivery.tls_minimum",
        ),
        (
            "[delivery.tls_policies]\n\"a.example\" = \"sometimes\"\n",
            "tls_policies.\"a.example\"",
        ),
        (
            "[delivery.tls_policies]\n\"*.example\" = \"verify\"\n",
            "not a domain",
        ),
        (
            "[delivery]\ndelay_warning = \"soon\"\n",
            "delivery.delay_warning",
        ),
        ("[delivery]\nper_domain = 0\n", "`delivery`"),
        ("[dns]\ntimeout_secs = 0\n", "dns.timeout_secs"),
        (
            "[[route]]\ndomain = \"a.example\"\nhost = \"[1.2.3.4]:25\"\n[[route]]\ndomain = \"A.example\"\nhost = \"[1.2.3.4]\"\n",
            "two [[route]]",
        ),
    ] {
        assert_rejected(&format!("{bad}{base}"), key);
    }
}

#[test]
fn mta_sts_section_and_https_listener() {
    let top = "hostname = \"mail.example.com\"\n";
    let https = "[[listener]]\nprotocol = \"https\"\nbind = \"127.0.0.1:1\"\ntls = \"implicit\"\n";
    let c = parse(&format!("{top}{https}")).unwrap();
    assert_eq!(c.listeners[0].protocol, Protocol::Https);
    let p = c.mta_sts_policy();
    assert_eq!(p.mode, crate::mta_sts_policy::StsMode::Testing);
    assert_eq!(p.mx, ["mail.example.com"]);
    assert_eq!(p.max_age, 604_800);
    let c = parse(&format!(
        "{top}[mta_sts]\nmode = \"enforce\"\nmx = [\"mx1.example.com\", \"*.example.net\"]\nmax_age = 86400\n{https}"
    ))
    .unwrap();
    let p = c.mta_sts_policy();
    assert_eq!(p.mode, crate::mta_sts_policy::StsMode::Enforce);
    assert_eq!(p.mx, ["mx1.example.com", "*.example.net"]);
    assert_eq!(p.max_age, 86_400);
    for (bad, key) in [
        ("[mta_sts]\nmode = \"strict\"\n", "strict"),
        ("[mta_sts]\nmx = [\"bad host\"]\n", "`mta_sts`"),
        ("[mta_sts]\nmax_age = 31557601\n", "`mta_sts`"),
        ("[mta_sts]\nmax_ag = 1\n", "max_ag"),
    ] {
        assert_rejected(&format!("{top}{bad}{https}"), key);
    }
    for (listener, key) in [
        ("tls = \"starttls\"\n", "tls = \"implicit\""),
        ("tls = \"none\"\n", "tls = \"implicit\""),
        ("", "tls = \"implicit\""),
        (
            "tls = \"implicit\"\ngreeting_delay_ms = 5\n",
            "listener.greeting_delay_ms",
        ),
        (
            "tls = \"implicit\"\nrequire_tls = true\n",
            "listener.require_tls",
        ),
    ] {
        let text =
            format!("{top}[[listener]]\nprotocol = \"https\"\nbind = \"127.0.0.1:1\"\n{listener}");
        assert_rejected(&text, key);
    }
}

#[test]
fn errors_name_the_key() {
    for (text, fragment) in [
        ("hostnam = \"x\"\n", "hostnam"),
        ("hostnam = \"x\"\n", "line 1"),
        ("[limits]\nmax_recipients = \"many\"\n", "line 2"),
        (
            "hostname = \"bad host\"\n[[listener]]\nprotocol=\"smtp\"\nbind=\"127.0.0.1:1\"\n",
            "`hostname`",
        ),
        ("hostname = \"a.example\"\n", "listener"),
        (
            "[[listener]]\nprotocol=\"lmtp\"\nbind=\"127.0.0.1:1\"\n",
            "lmtp",
        ),
        (
            "[[listener]]\nprotocol=\"imap\"\nbind=\"127.0.0.1:1\"\nrequire_tls=false\n",
            "IMAP always requires TLS",
        ),
        (
            "[tls]\ncert=\"/x\"\n[[listener]]\nprotocol=\"smtp\"\nbind=\"127.0.0.1:1\"\n",
            "`tls`",
        ),
    ] {
        assert_rejected(text, fragment);
    }
}

#[test]
fn listener_connection_budgets() {
    let base = "[limits]\nmax_connections = 101\n";
    let c = parse(&format!(
        "{base}[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:1\"\n\
         [[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:2\"\n\
         [[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:3\"\nmax_connections = 7\n"
    ))
    .unwrap();
    let budgets: Vec<usize> = c
        .listeners
        .iter()
        .map(|l| l.max_connections(&c.limits))
        .collect();
    assert_eq!(budgets, [50, 101, 7]);
    assert_rejected(
        "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:1\"\nmax_connections = 0\n",
        "listener.max_connections",
    );
    assert_rejected(
        "[limits]\nmax_data_in_flight = 1000\n[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:1\"\n",
        "limits.max_data_in_flight",
    );
}
