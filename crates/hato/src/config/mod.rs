//! The configuration file (TOML) and the zero-configuration default.
//!
//! Parsing rejects unknown keys and wrong types; [`Config::validate`] checks what parsing cannot
//! (names, duplicate binds, limits). Every error names the key and says what to do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// EHLO name, Received headers, certificate name check.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Where the store and generated certificates live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Domains hato is the final destination for. Empty: just `hostname`.
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub dns: DnsSection,
    /// Explicit next hops per destination domain (instead of MX lookup).
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Client networks (`192.168.0.0/24`, `10.0.0.5`, `2001:db8::/64`) that may relay through
    /// `smtp` listeners without AUTH (printers, legacy devices). Empty: nobody.
    #[serde(default)]
    pub relay_networks: Vec<String>,
    /// `[mta_sts]`: the MTA-STS policy `https` listeners serve.
    #[serde(default)]
    pub mta_sts: MtaStsConfig,
}

/// `[mta_sts]`: the MTA-STS policy (RFC 8461) that `https` listeners serve for every local
/// domain at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaStsConfig {
    /// `testing` (senders deliver anyway and report failures), `enforce` (senders deliver only
    /// to the `mx` hosts over verified TLS) or `none` (the policy is withdrawn).
    pub mode: crate::mta_sts_policy::StsMode,
    /// The MX host names senders may deliver to (`*.example.com` matches one label). Empty:
    /// `[hostname]`.
    pub mx: Vec<String>,
    /// Seconds senders may cache the policy (at most 31557600, about a year).
    pub max_age: u64,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        MtaStsConfig {
            mode: crate::mta_sts_policy::StsMode::Testing,
            mx: Vec::new(),
            max_age: crate::mta_sts_policy::DEFAULT_MAX_AGE,
        }
    }
}

/// A parsed `relay_networks` entry: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `a.b.c.d`, `a.b.c.d/n`, `v6`, `v6/n`; host bits must be zero.
    pub fn parse(s: &str) -> Option<IpNet> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s.trim(), None),
        };
        let addr: std::net::IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        let net = IpNet { addr, prefix };
        (net.mask(addr) == Some(Self::bits(addr))).then_some(net)
    }

    fn bits(ip: std::net::IpAddr) -> u128 {
        match ip {
            std::net::IpAddr::V4(a) => u32::from(a) as u128,
            std::net::IpAddr::V6(a) => u128::from(a),
        }
    }

    /// `ip` with the host bits cleared, if it is of the same family.
    fn mask(&self, ip: std::net::IpAddr) -> Option<u128> {
        let width: u32 = match (self.addr, ip) {
            (std::net::IpAddr::V4(_), std::net::IpAddr::V4(_)) => 32,
            (std::net::IpAddr::V6(_), std::net::IpAddr::V6(_)) => 128,
            _ => return None,
        };
        let host = width - u32::from(self.prefix);
        let mask = if host >= 128 {
            0
        } else {
            (u128::MAX >> (128 - width)) & !((1u128 << host) - 1)
        };
        Some(Self::bits(ip) & mask)
    }

    /// Whether `ip` is inside the network (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.mask(ip) == Some(Self::bits(self.addr))
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `[delivery]`: the outbound queue scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Delays after the 1st, 2nd, ... failed attempt (the last repeats), e.g. "1m", "5m".
    pub retry: Vec<String>,
    /// How long a message may wait in the queue before it bounces.
    pub max_lifetime: String,
    /// Deliveries (connections) at once, in all.
    pub concurrency: usize,
    /// Deliveries at once per destination domain.
    pub per_domain: usize,
    /// Connections at once per destination IP address (many domains share big providers' MX).
    pub per_ip: usize,
    /// Destination SMTP port (25; other values only for tests or unusual networks).
    pub port: u16,
    /// Default TLS security level: none, may, encrypt, verify.
    pub tls_policy: String,
    /// No destination gets less than this (the table and the default are raised to it).
    pub tls_minimum: String,
    /// `[delivery.tls_policies]`: level per destination domain (`".example.org"`: its
    /// subdomains), like Postfix's smtp_tls_policy_maps.
    pub tls_policies: std::collections::BTreeMap<String, String>,
    /// Honour other domains' MTA-STS policies (RFC 8461); policies are cached in the store.
    pub mta_sts: bool,
    /// The HTTPS port MTA-STS policies are fetched from (443; other values only for tests).
    pub mta_sts_port: u16,
    /// Send daily SMTP TLS reports (RFC 8460) to domains that publish `_smtp._tls`.
    pub tls_reports: bool,
    /// Seconds between looks for complete days to report (3600; smaller only for tests).
    pub tls_report_check_secs: u64,
    /// Extra PEM CA certificates for `verify` and MTA-STS, besides the public WebPKI roots.
    pub ca_file: Option<PathBuf>,
    /// What a bounce returns of the original message when the sender gave no DSN `RET`:
    /// `headers` (RFC 3462 text/rfc822-headers) or `full` (the message, up to 50 kB).
    pub bounce_return: BounceReturn,
    /// Send the sender a "delayed" notice (RFC 3464) once a message has waited this long
    /// (e.g. "4h"); unset: no delay notices.
    pub delay_warning: Option<String>,
    /// Seconds to wait for a TCP connection to a mail host.
    pub connect_timeout_secs: u64,
    /// Keep outbound mail queued without attempting it (Postfix `defer_transports = smtp`).
    pub hold: bool,
    /// `[delivery.smarthost]`: all remote mail goes to this host (`[[route]]` still wins).
    pub smarthost: Option<SmarthostConfig>,
}

/// `delivery.bounce_return`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BounceReturn {
    Headers,
    Full,
}

/// How the smarthost connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTls {
    /// STARTTLS required (no plaintext fallback).
    Starttls,
    /// TLS from the first byte (RFC 8314, port 465).
    Implicit,
    /// Plaintext; AUTH is then refused (configuration error with `username`).
    None,
}

/// `[delivery.smarthost]`: the relay host (provider submission server).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmarthostConfig {
    /// `smtp.provider.example:587`, `[192.0.2.7]:465`, or a name (port: 587, 465 implicit, 25 none).
    pub host: String,
    #[serde(default = "default_smarthost_tls")]
    pub tls: SmarthostTls,
    /// AUTH user name (PLAIN or LOGIN, only under TLS).
    pub username: Option<String>,
    /// The password inline; prefer `password_file`.
    pub password: Option<String>,
    /// A file whose first line is the password (mode 0600, readable by hato only).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates to verify the smarthost's certificate against (its name must match).
    /// Without it the connection is encrypted but the certificate is not checked.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for SmarthostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmarthostConfig")
            .field("host", &self.host)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn default_smarthost_tls() -> SmarthostTls {
    SmarthostTls::Starttls
}

impl SmarthostConfig {
    /// Host name (or `[ip]`) and port to connect to.
    pub fn target(&self) -> Option<(RouteHost, u16)> {
        let h = RouteHost::parse(&self.host)?;
        let default = match self.tls {
            SmarthostTls::Starttls => 587,
            SmarthostTls::Implicit => 465,
            SmarthostTls::None => 25,
        };
        let port = match &h {
            RouteHost::Ip(_, p) | RouteHost::Name(_, p) => p.unwrap_or(default),
        };
        Some((h, port))
    }

    /// The AUTH credentials (reads `password_file`).
    pub fn credentials(&self) -> anyhow::Result<Option<(String, String)>> {
        let Some(user) = &self.username else {
            return Ok(None);
        };
        let password = match (&self.password, &self.password_file) {
            (Some(p), None) => p.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "`delivery.smarthost.password_file`: cannot read {}: {e}",
                        path.display()
                    )
                })?;
                let line = text.lines().next().unwrap_or("").to_owned();
                anyhow::ensure!(
                    !line.is_empty(),
                    "`delivery.smarthost.password_file`: {} is empty",
                    path.display()
                );
                line
            }
            _ => anyhow::bail!(
                "`delivery.smarthost`: with `username`, set exactly one of `password` and `password_file`"
            ),
        };
        Ok(Some((user.clone(), password)))
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry: ["1m", "5m", "15m", "30m", "1h"].map(String::from).to_vec(),
            max_lifetime: "5d".into(),
            concurrency: 20,
            per_domain: 5,
            per_ip: 10,
            port: 25,
            tls_policy: "may".into(),
            tls_minimum: "none".into(),
            tls_policies: Default::default(),
            mta_sts: true,
            mta_sts_port: 443,
            tls_reports: true,
            tls_report_check_secs: 3600,
            ca_file: None,
            delay_warning: None,
            bounce_return: BounceReturn::Headers,
            connect_timeout_secs: 30,
            hold: false,
            smarthost: None,
        }
    }
}

impl DeliveryConfig {
    pub fn schedule(&self) -> anyhow::Result<hato_delivery::backoff::RetrySchedule> {
        let delays = hato_delivery::backoff::parse_delays(&self.retry)
            .map_err(|e| anyhow::anyhow!("`delivery.retry`: {e}"))?;
        let lifetime = hato_delivery::backoff::parse_duration(&self.max_lifetime)
            .map_err(|e| anyhow::anyhow!("`delivery.max_lifetime`: {e}"))?;
        hato_delivery::backoff::RetrySchedule::new(delays, lifetime)
            .map_err(|e| anyhow::anyhow!("`delivery.retry`/`delivery.max_lifetime`: {e}"))
    }

    /// The TLS policy table: `tls_policy` as the default, `tls_minimum`, `[delivery.tls_policies]`.
    pub fn policy_table(&self) -> anyhow::Result<hato_delivery::tls_policy::PolicyTable> {
        use hato_delivery::tls_policy::{PolicyTable, SecurityLevel};
        let level = |key: &str, value: &str| -> anyhow::Result<SecurityLevel> {
            value
                .parse::<SecurityLevel>()
                .map_err(|e| anyhow::anyhow!("`delivery.{key}`: {e}"))
        };
        let mut table = PolicyTable::new(
            level("tls_policy", &self.tls_policy)?,
            level("tls_minimum", &self.tls_minimum)?,
        );
        for (domain, value) in &self.tls_policies {
            let d = domain.trim().trim_end_matches('.');
            anyhow::ensure!(
                !d.is_empty() && d != "." && !d.contains(['/', ' ', '@', '*']),
                "`delivery.tls_policies`: {domain:?} is not a domain (use \"example.com\" or \".example.com\" for its subdomains)"
            );
            table.insert(d, level(&format!("tls_policies.\"{domain}\""), value)?);
        }
        Ok(table)
    }

    /// Whether some destination may use DANE (then TLSA lookups with DNSSEC are set up).
    pub fn uses_dane(&self) -> bool {
        let dane = |v: &str| v.trim().eq_ignore_ascii_case("dane");
        dane(&self.tls_policy)
            || dane(&self.tls_minimum)
            || self.tls_policies.values().any(|v| dane(v))
    }

    /// `delay_warning` in seconds.
    pub fn delay_warning_secs(&self) -> anyhow::Result<Option<i64>> {
        self.delay_warning
            .as_deref()
            .map(|d| {
                hato_delivery::backoff::parse_duration(d)
                    .map(|d| d.as_secs() as i64)
                    .map_err(|e| anyhow::anyhow!("`delivery.delay_warning`: {e}"))
            })
            .transpose()
    }
}

/// `[dns]`: the resolver used for MX lookups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// `ip:port` of nameservers; empty: the system's (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// Seconds per query and server.
    pub timeout_secs: u64,
    /// DNSSEC trust anchor for DANE: a file of DNSKEY records (zone-file lines); default: the
    /// root zone's keys built into hickory.
    pub trust_anchor: Option<PathBuf>,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            nameservers: Vec::new(),
            timeout_secs: 5,
            trust_anchor: None,
        }
    }
}

/// `[[route]]`: mail for `domain` goes to `host` instead of its MX hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub domain: String,
    /// `[192.0.2.5]:25`, `[2001:db8::5]`, `mx.partner.example:2525` or `mx.partner.example`.
    pub host: String,
}

/// A parsed `route.host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteHost {
    Ip(std::net::IpAddr, Option<u16>),
    Name(String, Option<u16>),
}

impl RouteHost {
    pub fn parse(s: &str) -> Option<RouteHost> {
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            let ip = ip.strip_prefix("IPv6:").unwrap_or(ip).parse().ok()?;
            return match after {
                "" => Some(RouteHost::Ip(ip, None)),
                p => Some(RouteHost::Ip(ip, Some(port(p.strip_prefix(':')?)?))),
            };
        }
        let (name, p) = match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(port(p)?)),
            None => (s, None),
        };
        hato_wire::domain::is_ldh_name(name).then(|| RouteHost::Name(name.to_ascii_lowercase(), p))
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// More certificates, chosen by SNI.
    #[serde(default)]
    pub certificate: Vec<CertificateEntry>,
    /// Seconds between checks of the certificate files for changes (0: only on SIGHUP).
    #[serde(default = "default_reload_check")]
    pub reload_check_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Port 25: mail for local domains from anyone; never relays.
    Smtp,
    /// Ports 587/465: AUTH required, may send anywhere.
    Submission,
    /// Ports 110/995: POP3 (RFC 1939), login only under TLS.
    Pop3,
    /// Ports 143/993: IMAP (RFC 9051), login only under TLS.
    Imap,
    /// Port 443: HTTPS serving the MTA-STS policy of the local domains (RFC 8461); implicit TLS.
    Https,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Https => "https",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plaintext only (no STARTTLS). AUTH is then impossible.
    None,
    /// STARTTLS offered (RFC 3207).
    Starttls,
    /// TLS from the first byte (RFC 8314).
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    Reject,
    Normalize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub protocol: Protocol,
    pub bind: SocketAddr,
    #[serde(default = "default_tls_mode")]
    pub tls: TlsMode,
    /// Refuse MAIL/RCPT/DATA/AUTH before STARTTLS. Default: true for submission, false for smtp.
    pub require_tls: Option<bool>,
    /// What to do with bare CR or LF in DATA.
    #[serde(default = "default_bare")]
    pub bare_line_endings: BareLineEndings,
    /// Milliseconds to wait before the greeting; a client that talks first is rejected.
    /// Default: 500 on smtp listeners, 0 on submission.
    pub greeting_delay_ms: Option<u64>,
    /// Connections at once on this listener. Default: half of `limits.max_connections` on smtp
    /// listeners (strangers' port 25 cannot take the slots of submission, IMAP and POP3), all
    /// of it elsewhere.
    pub max_connections: Option<usize>,
}

impl Listener {
    pub fn require_tls(&self) -> bool {
        match self.tls {
            TlsMode::Implicit => true,
            TlsMode::None => false,
            // POP3 never accepts a login before STLS, whatever the setting.
            TlsMode::Starttls if matches!(self.protocol, Protocol::Pop3 | Protocol::Imap) => true,
            TlsMode::Starttls => self
                .require_tls
                .unwrap_or(self.protocol == Protocol::Submission),
        }
    }

    pub fn max_connections(&self, limits: &Limits) -> usize {
        self.max_connections.unwrap_or(match self.protocol {
            Protocol::Smtp => (limits.max_connections / 2).max(1),
            _ => limits.max_connections,
        })
    }

    pub fn greeting_delay_ms(&self) -> u64 {
        self.greeting_delay_ms.unwrap_or(match self.protocol {
            Protocol::Smtp => 500,
            Protocol::Submission | Protocol::Pop3 | Protocol::Imap | Protocol::Https => 0,
        })
    }
}

/// The least `limits.max_data_in_flight` (unless messages are smaller): room for what one
/// session holds before it spools, and its read buffer, with room to spare.
pub const MIN_DATA_IN_FLIGHT: usize = 2 * crate::spool::SPOOL_AT;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Bytes of message data all SMTP sessions together may hold in memory (each holds at most
    /// 256 KiB before the rest goes to the spool file); a message that would pass it is
    /// answered 452 4.3.1 at its end (the sender retries).
    pub max_data_in_flight: usize,
    /// Seconds to wait for a command (RFC 5321 4.5.3.2: at least 5 minutes).
    pub command_timeout_secs: u64,
    /// Seconds to wait for a command on submission before AUTH succeeded.
    pub unauthenticated_timeout_secs: u64,
    /// Seconds to wait for each chunk of message data (RFC 5321 4.5.3.2.6: 10 minutes for the end).
    pub data_timeout_secs: u64,
    pub max_command_line: usize,
    pub max_text_line: usize,
    /// Storage per account, in bytes, over all its mailboxes (IMAP QUOTA, RFC 9208). None: no
    /// limit.
    pub quota_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_data_in_flight: 256 * 1024 * 1024,
            command_timeout_secs: 300,
            unauthenticated_timeout_secs: 60,
            data_timeout_secs: 300,
            max_command_line: 512,
            max_text_line: 1000,
            quota_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Delay before answering a failed AUTH, milliseconds.
    pub failure_delay_ms: u64,
    /// Failed AUTHs per client IP within `failure_window_secs` before further attempts are refused.
    pub max_failures_per_ip: u32,
    /// Failed AUTHs per client network (/24, /64) within `failure_window_secs`.
    pub max_failures_per_network: u32,
    /// Failed AUTHs per account within `failure_window_secs` from networks that never logged in
    /// to it; then those networks get one try per `failure_window_secs / max_failures_per_account`.
    pub max_failures_per_account: u32,
    pub failure_window_secs: u64,
    /// Password checks (argon2) at once; 0: the number of cores.
    pub max_concurrent_checks: usize,
    /// How long an AUTH waits for a free check before a temporary failure, milliseconds.
    pub check_wait_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            failure_delay_ms: 1000,
            max_failures_per_ip: 10,
            max_failures_per_network: 30,
            max_failures_per_account: 10,
            failure_window_secs: 900,
            max_concurrent_checks: 0,
            check_wait_ms: 5000,
        }
    }
}

fn default_hostname() -> String {
    "localhost".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./hato-data")
}
fn default_tls_mode() -> TlsMode {
    TlsMode::Starttls
}
fn default_bare() -> BareLineEndings {
    BareLineEndings::Reject
}
fn default_reload_check() -> u64 {
    10
}

/// The listeners of `hato serve` without a configuration file.
pub const DEFAULT_LISTENERS: &str = r#"
[[listener]]
protocol = "smtp"
bind = "127.0.0.1:2525"
tls = "starttls"
[[listener]]
protocol = "submission"
bind = "127.0.0.1:5587"
tls = "starttls"
[[listener]]
protocol = "submission"
bind = "127.0.0.1:5465"
tls = "implicit"
[[listener]]
protocol = "pop3"
bind = "127.0.0.1:5110"
tls = "starttls"
[[listener]]
protocol = "pop3"
bind = "127.0.0.1:5995"
tls = "implicit"
[[listener]]
protocol = "imap"
bind = "127.0.0.1:5143"
tls = "starttls"
[[listener]]
protocol = "imap"
bind = "127.0.0.1:5993"
tls = "implicit"
"#;

impl Config {
    /// The zero-configuration instance: localhost, ./hato-data, the three default listeners.
    pub fn default_instance() -> Config {
        Config::parse(DEFAULT_LISTENERS, Path::new("(built-in defaults)"))
            .expect("built-in defaults parse")
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the configuration file {}: {e}", path.display())
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml's message names the key and the line; keep it on one line.
            let msg = e.message().trim().to_string();
            let place = e
                .span()
                .map(|s| {
                    let start = s.start.min(text.len());
                    let line = text[..start].matches('\n').count() + 1;
                    let content = text.lines().nth(line - 1).unwrap_or("").trim();
                    format!(" (line {line}: `{content}`)")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{place}: {msg}", path.display())
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// The parsed `relay_networks` (every entry was checked by `validate`).
    pub fn relay_nets(&self) -> Vec<IpNet> {
        self.relay_networks
            .iter()
            .filter_map(|n| IpNet::parse(n))
            .collect()
    }

    fn validate(&self, path: &Path) -> anyhow::Result<()> {
        let err = |key: &str, msg: String| anyhow::anyhow!("{}: `{key}`: {msg}", path.display());
        if !hato_wire::domain::is_ldh_name(&self.hostname) {
            return Err(err(
                "hostname",
                format!(
                    "{:?} is not a valid host name (e.g. \"mail.example.com\")",
                    self.hostname
                ),
            ));
        }
        for d in &self.domains {
            if !hato_wire::domain::is_ldh_name(d) {
                return Err(err(
                    "domains",
                    format!("{d:?} is not a valid domain (e.g. \"example.com\")"),
                ));
            }
        }
        if self.listeners.is_empty() {
            return Err(err(
                "listener",
                "no [[listener]] configured: add at least one (see README)".into(),
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if self.listeners[..i].iter().any(|o| o.bind == l.bind) {
                return Err(err(
                    "listener.bind",
                    format!("{} is used by two listeners", l.bind),
                ));
            }
            if matches!(l.protocol, Protocol::Pop3 | Protocol::Imap) && l.require_tls.is_some() {
                return Err(err(
                    "listener.require_tls",
                    format!(
                        "{} always requires TLS before login; remove it (listener {})",
                        l.protocol.name().to_uppercase(),
                        l.bind
                    ),
                ));
            }
            if l.max_connections == Some(0) {
                return Err(err(
                    "listener.max_connections",
                    format!("must be positive (listener {})", l.bind),
                ));
            }
            if l.protocol == Protocol::Https && l.tls != TlsMode::Implicit {
                return Err(err(
                    "listener.tls",
                    format!(
                        "https listeners need tls = \"implicit\" (listener {})",
                        l.bind
                    ),
                ));
            }
            if matches!(
                l.protocol,
                Protocol::Pop3 | Protocol::Imap | Protocol::Https
            ) && l.greeting_delay_ms.is_some()
            {
                return Err(err(
                    "listener.greeting_delay_ms",
                    format!(
                        "only for smtp and submission listeners (listener {})",
                        l.bind
                    ),
                ));
            }
            if l.tls != TlsMode::Starttls && l.require_tls.is_some() {
                return Err(err(
                    "listener.require_tls",
                    format!(
                        "only meaningful with tls = \"starttls\" (listener {})",
                        l.bind
                    ),
                ));
            }
        }
        if let Some(tls) = &self.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            return Err(err("tls", "set both `cert` and `key`, or neither".into()));
        }
        let l = &self.limits;
        if l.max_command_line < 512 {
            return Err(err(
                "limits.max_command_line",
                "must be at least 512 (RFC 5321 4.5.3.1.4)".into(),
            ));
        }
        if l.max_text_line < 1000 {
            return Err(err(
                "limits.max_text_line",
                "must be at least 1000 (RFC 5321 4.5.3.1.6)".into(),
            ));
        }
        // A session holds at most this much before the rest goes to the spool file.
        let one_session = l.max_message_size.min(MIN_DATA_IN_FLIGHT);
        if l.max_data_in_flight < one_session {
            return Err(err(
                "limits.max_data_in_flight",
                format!(
                    "{} is less than {one_session}: a session holds up to 256 KiB of a message in memory before the rest goes to disk, so no large message could be received",
                    l.max_data_in_flight
                ),
            ));
        }
        if l.max_recipients == 0 || l.max_message_size == 0 || l.max_connections == 0 {
            return Err(err(
                "limits",
                "max_recipients, max_message_size and max_connections must be positive".into(),
            ));
        }
        let d = &self.delivery;
        d.schedule()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        d.policy_table()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        d.delay_warning_secs()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if d.concurrency == 0 || d.per_domain == 0 || d.per_ip == 0 {
            return Err(err(
                "delivery",
                "concurrency, per_domain and per_ip must be positive".into(),
            ));
        }
        if d.port == 0 || d.connect_timeout_secs == 0 {
            return Err(err(
                "delivery",
                "port and connect_timeout_secs must be positive".into(),
            ));
        }
        self.mta_sts_policy()
            .validate()
            .map_err(|e| err("mta_sts", e))?;
        if self.dns.timeout_secs == 0 {
            return Err(err("dns.timeout_secs", "must be positive".into()));
        }
        for n in &self.relay_networks {
            if IpNet::parse(n).is_none() {
                return Err(err(
                    "relay_networks",
                    format!(
                        "{n:?} is not a network (use \"192.168.0.0/24\", \"10.0.0.5\" or \"2001:db8::/64\"; host bits must be zero)"
                    ),
                ));
            }
        }
        if let Some(sh) = &d.smarthost {
            if sh.target().is_none() {
                return Err(err(
                    "delivery.smarthost.host",
                    format!(
                        "{:?} is not a host (use \"smtp.provider.example:587\" or \"[192.0.2.7]:465\")",
                        sh.host
                    ),
                ));
            }
            if sh.username.is_some() && sh.tls == SmarthostTls::None {
                return Err(err(
                    "delivery.smarthost.tls",
                    "\"none\" with `username`: credentials are never sent without TLS (use \"starttls\" or \"implicit\")".into(),
                ));
            }
            if sh.username.is_some() && sh.password.is_none() && sh.password_file.is_none() {
                return Err(err(
                    "delivery.smarthost",
                    "`username` needs `password_file` (or `password`)".into(),
                ));
            }
            if sh.password.is_some() && sh.password_file.is_some() {
                return Err(err(
                    "delivery.smarthost",
                    "set `password` or `password_file`, not both".into(),
                ));
            }
            if sh.username.is_none() && (sh.password.is_some() || sh.password_file.is_some()) {
                return Err(err(
                    "delivery.smarthost.username",
                    "a password without `username`".into(),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !hato_wire::domain::is_ldh_name(&r.domain) {
                return Err(err(
                    "route.domain",
                    format!("{:?} is not a valid domain", r.domain),
                ));
            }
            if self.routes[..i]
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&r.domain))
            {
                return Err(err(
                    "route.domain",
                    format!("{} has two [[route]] entries", r.domain),
                ));
            }
            if RouteHost::parse(&r.host).is_none() {
                return Err(err(
                    "route.host",
                    format!(
                        "{:?} is not a host (use \"[192.0.2.5]:25\", \"mx.example.net:2525\" or \"mx.example.net\")",
                        r.host
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Local domains, lower-case; `hostname` when none are configured.
    pub fn local_domains(&self) -> Vec<String> {
        if self.domains.is_empty() {
            vec![self.hostname.to_ascii_lowercase()]
        } else {
            self.domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect()
        }
    }

    /// The configured certificates: `[tls] cert`/`key`, then each `[[tls.certificate]]`.
    pub fn certificate_paths(&self) -> Vec<hato_tls::CertPaths> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let first = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        };
        first
            .into_iter()
            .chain(tls.certificate.iter().map(|c| (&c.cert, &c.key)))
            .map(|(cert, key)| hato_tls::CertPaths {
                cert: cert.clone(),
                key: key.clone(),
            })
            .collect()
    }

    /// `[dns]` as the DNS layer takes it.
    pub fn dns_config(&self) -> hato_dns::DnsConfig {
        hato_dns::DnsConfig {
            nameservers: self.dns.nameservers.clone(),
            timeout: std::time::Duration::from_secs(self.dns.timeout_secs),
            ..hato_dns::DnsConfig::default()
        }
    }

    /// The MTA-STS policy `https` listeners serve and `hato dns` prints the id of.
    pub fn mta_sts_policy(&self) -> crate::mta_sts_policy::StsPolicy {
        let m = &self.mta_sts;
        crate::mta_sts_policy::StsPolicy {
            mode: m.mode,
            mx: if m.mx.is_empty() {
                vec![self.hostname.to_ascii_lowercase()]
            } else {
                m.mx.clone()
            },
            max_age: m.max_age,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("hato.db")
    }
}

#[cfg(test)]
mod tests;
