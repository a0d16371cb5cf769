//! The command line: `hato serve`, `check-config`, `user`, `alias`, `queue`, `dns`.
//!
//! `hato serve` runs the server (see `server`); `hato user ...` and `hato alias ...` manage
//! accounts in the same data directory, also while the server runs.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hato_store::Store;
use hato_store::sqlite::SqliteStore;

use crate::config::Config;
use crate::{app, auth, config, dns_records, https, outbound};

#[derive(Parser)]
#[command(
    name = "hato",
    version,
    about = "A mail server that makes secure mail the default",
    long_about = "A mail server that makes secure mail the default.\n\n\
Without --config, `hato serve` starts a self-contained development instance on 127.0.0.1 \
(SMTP 2525, submission 5587 with STARTTLS, submissions 5465 with implicit TLS, POP3 5110/5995, \
IMAP 5143/5993), a self-signed certificate and the store in ./hato-data. Add a user with \
`hato user add you@localhost`; see README.md for the configuration file."
)]
struct Cli {
    /// Configuration file (TOML). Without it, the built-in development defaults are used.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "HATO_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail server.
    Serve,
    /// Check the configuration and certificates, then exit.
    CheckConfig,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage aliases (extra addresses that deliver to an account).
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Inspect and manage the outbound queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print the DNS records to publish (MX, SPF, DMARC, MTA-STS, TLS-RPT, SRV, TLSA).
    Dns {
        /// Only this local domain (default: all).
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        /// The server's public address, for its A/AAAA records (repeat for IPv4 and IPv6;
        /// default: placeholders).
        #[arg(long, value_name = "ADDRESS")]
        ip: Vec<std::net::IpAddr>,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued recipients: id, sender, recipient, attempts, next attempt, last error.
    List,
    /// Show every field of one entry, including the TLS facts of the last attempt.
    Show { id: i64 },
    /// Try now: one entry, or all with --all.
    Retry {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        #[arg(long)]
        all: bool,
    },
    /// Remove an entry without delivery and without a bounce.
    Delete { id: i64 },
    /// Give up on an entry: the sender gets a bounce (DSN).
    Bounce { id: i64 },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (with INBOX, Sent, Drafts, Trash, Junk, Archive).
    Add {
        /// The account's address, e.g. alice@example.com; also its login name.
        address: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Delete an account and all its mail.
    Del { address: String },
    /// Change an account's password.
    Passwd {
        address: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Deliver mail for ALIAS to the account TARGET; TARGET may also send as ALIAS.
    Add { alias: String, target: String },
    /// Remove an alias.
    Del { alias: String },
    /// List aliases.
    List,
}

/// Parses the command line and runs the command; the process exit code.
pub fn main() -> std::process::ExitCode {
    release_big_buffers();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hato: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hato: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Memory for big buffers (messages in transit, argon2) goes back to the system when freed.
/// glibc otherwise raises its mmap threshold after the first big buffer is freed and keeps
/// every later one in its heaps: measured, 8 messages of 24 MiB received at once left hato at
/// +206 MiB afterwards (+6 MiB with this), with a peak of +280 MiB (+172 MiB with this).
fn release_big_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HATO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default_instance()),
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data_dir {}: check `data_dir` and permissions",
            config.data_dir.display()
        )
    })?;
    let path = config.db_path();
    let store = SqliteStore::open(&path)
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    Ok(Arc::new(store))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config, cli.config.as_deref()).await,
        Command::CheckConfig => {
            let tls = setup_tls(&config)?;
            let delivery = outbound::check(&config)?;
            println!(
                "configuration OK: {} listener(s); TLS: {}; delivery: {delivery}",
                config.listeners.len(),
                tls.map(|t| t.1).unwrap_or_else(|| "none".into())
            );
            Ok(())
        }
        Command::User { command } => user_command(&config, command).await,
        Command::Alias { command } => alias_command(&config, command).await,
        Command::Queue { command } => queue_command(&config, command).await,
        Command::Dns { domain, ip } => dns_command(&config, domain.as_deref(), &ip),
    }
}

/// Loads the configured certificates, or generates the development certificate.
fn setup_tls(config: &Config) -> anyhow::Result<Option<(Arc<hato_tls::CertResolver>, String)>> {
    if config
        .listeners
        .iter()
        .all(|l| l.tls == config::TlsMode::None)
    {
        return Ok(None);
    }
    let mut paths = config.certificate_paths();
    let summary;
    if paths.is_empty() {
        let dir = config.data_dir.join("tls");
        let (p, created) = hato_tls::ensure_self_signed(&dir, &config.hostname)
            .context("cannot create the development certificate")?;
        tracing::warn!(
            cert = %p.cert.display(),
            created,
            "USING A SELF-SIGNED DEVELOPMENT CERTIFICATE: clients will warn and other servers will not trust it; \
             set [tls] cert and key for production"
        );
        summary = format!(
            "self-signed DEVELOPMENT certificate {} (not for production: set [tls] cert/key)",
            p.cert.display()
        );
        paths.push(p);
    } else {
        summary = paths
            .iter()
            .map(|p| p.cert.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
    }
    let (resolver, warnings) = hato_tls::CertResolver::load(paths, &config.hostname)
        .map_err(|e| anyhow::anyhow!("[tls]: {e}"))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(Some((Arc::new(resolver), summary)))
}

async fn serve(config: Config, config_path: Option<&Path>) -> anyhow::Result<()> {
    let tls = setup_tls(&config)?;
    outbound::check(&config)?;
    if !config.relay_networks.is_empty() {
        tracing::warn!(
            networks = %config.relay_networks.join(", "),
            "relay_networks: clients from these networks may relay through smtp listeners without AUTH"
        );
    }
    let store = open_store(&config).await?;
    let server = app::Server::bind(config, store, tls).await?;
    println!("{}", server.summary(config_path));
    server.run().await
}

/// `hato dns`: the records to publish for `config` (the TLSA record from the configured
/// certificate covering `hostname`; the development certificate is never published).
fn dns_command(
    config: &Config,
    domain: Option<&str>,
    addresses: &[std::net::IpAddr],
) -> anyhow::Result<()> {
    use dns_records::{Endpoint, Service, Tls};
    let mut domains = config.local_domains();
    if let Some(d) = domain {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        anyhow::ensure!(
            domains.contains(&d),
            "{d} is not one of the local domains ({})",
            domains.join(", ")
        );
        domains = vec![d];
    }
    let endpoints: Vec<Endpoint> = config
        .listeners
        .iter()
        .map(|l| Endpoint {
            service: match l.protocol {
                config::Protocol::Smtp => Service::Smtp,
                config::Protocol::Submission => Service::Submission,
                config::Protocol::Pop3 => Service::Pop3,
                config::Protocol::Imap => Service::Imap,
                config::Protocol::Https => Service::Https,
            },
            tls: match l.tls {
                config::TlsMode::None => Tls::None,
                config::TlsMode::Starttls => Tls::Starttls,
                config::TlsMode::Implicit => Tls::Implicit,
            },
            port: l.bind.port(),
        })
        .collect();
    let paths = config.certificate_paths();
    let resolver = if paths.is_empty() {
        None
    } else {
        let (resolver, _) = hato_tls::CertResolver::load(paths, &config.hostname)
            .map_err(|e| anyhow::anyhow!("[tls]: {e}"))?;
        Some(resolver)
    };
    // The default certificate is the first, the one covering `hostname`.
    let leaf = resolver.as_ref().and_then(|r| {
        r.current()
            .first()
            .and_then(|c| c.key.cert.first().cloned())
    });
    let policy = config.mta_sts_policy();
    let zone = dns_records::zone(&dns_records::ZoneInput {
        hostname: &config.hostname,
        domains: &domains,
        endpoints: &endpoints,
        mta_sts: &policy,
        addresses,
        certificate: leaf.as_deref(),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{zone}");
    if let Some(r) = &resolver
        && endpoints.iter().any(|e| e.service == Service::Https)
    {
        let uncovered = https::uncovered_hosts(r, &domains);
        if !uncovered.is_empty() {
            eprintln!(
                "warning: no certificate covers {}: senders will not accept the MTA-STS policy; add the names to the certificate",
                uncovered.join(", ")
            );
        }
    }
    Ok(())
}

fn read_password(prompt_for: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from standard input")?;
        s.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password(format!("Password for {prompt_for}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    Ok(password)
}

fn checked_address(config: &Config, address: &str) -> anyhow::Result<String> {
    let normalized = hato_wire::domain::normalize_address(address)
        .filter(|a| hato_smtp::Address::parse(a).is_ok())
        .ok_or_else(|| {
            anyhow::anyhow!("{address:?} is not a valid address (like alice@example.com)")
        })?;
    let domain = normalized.rsplit_once('@').map(|x| x.1).unwrap_or_default();
    if !config.local_domains().iter().any(|d| d == domain) {
        eprintln!(
            "warning: {domain} is not one of the local domains ({}): mail to this address will not be accepted; add it to `domains`",
            config.local_domains().join(", ")
        );
    }
    Ok(normalized)
}

async fn user_command(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match cmd {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let address = checked_address(config, &address)?;
            let password = read_password(&address, password_stdin)?;
            let hash = auth::hash_password(&password)?;
            store.create_account(&address, &hash).await?;
            println!("created {address}");
        }
        UserCommand::List => {
            for a in store.list_accounts().await? {
                println!("{}", a.address);
            }
        }
        UserCommand::Del { address } => {
            let address = hato_wire::domain::normalize_address(&address).unwrap_or(address);
            anyhow::ensure!(
                store.delete_account(&address).await?,
                "no account {address}"
            );
            println!("deleted {address}");
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = hato_wire::domain::normalize_address(&address).unwrap_or(address);
            anyhow::ensure!(
                store.account(&address).await?.is_some(),
                "no account {address}"
            );
            let password = read_password(&address, password_stdin)?;
            let hash = auth::hash_password(&password)?;
            store.set_password(&address, &hash).await?;
            println!("password changed for {address}");
        }
    }
    Ok(())
}

async fn alias_command(config: &Config, cmd: AliasCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match cmd {
        AliasCommand::Add { alias, target } => {
            let alias = checked_address(config, &alias)?;
            let target = hato_wire::domain::normalize_address(&target).unwrap_or(target);
            store.add_alias(&alias, &target).await?;
            println!("{alias} -> {target}");
        }
        AliasCommand::Del { alias } => {
            let alias = hato_wire::domain::normalize_address(&alias).unwrap_or(alias);
            anyhow::ensure!(store.remove_alias(&alias).await?, "no alias {alias}");
            println!("removed {alias}");
        }
        AliasCommand::List => {
            for a in store.list_aliases().await? {
                println!("{} -> {}", a.address, a.target);
            }
        }
    }
    Ok(())
}

fn show_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

async fn queue_command(config: &Config, cmd: QueueCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = hato_wire::date::unix_now();
    match cmd {
        QueueCommand::List => {
            let queue = store.queue().await?;
            if queue.is_empty() {
                println!("the queue is empty");
                return Ok(());
            }
            println!("ID\tSENDER\tRECIPIENT\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR");
            for e in queue {
                let sender = if e.sender.is_empty() { "<>" } else { &e.sender };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    e.id,
                    sender,
                    e.recipient,
                    e.attempts,
                    show_time(e.next_attempt),
                    e.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        QueueCommand::Show { id } => {
            let e = store
                .queue_entry(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no queue entry {id}"))?;
            let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!("id:               {}", e.id);
            println!(
                "sender:           {}",
                if e.sender.is_empty() { "<>" } else { &e.sender }
            );
            println!("recipient:        {}", e.recipient);
            println!("created:          {}", show_time(e.created));
            println!("attempts:         {}", e.attempts);
            println!("next attempt:     {}", show_time(e.next_attempt));
            println!(
                "last attempt:     {}",
                e.last_attempt.map(show_time).unwrap_or_else(|| "-".into())
            );
            println!("last error:       {}", opt(&e.last_error));
            println!("last TLS:         {}", opt(&e.last_tls));
            println!("notify:           {}", opt(&e.dsn.notify));
            println!("orcpt:            {}", opt(&e.dsn.orcpt));
            println!("ret:              {}", opt(&e.dsn.ret));
            println!("envid:            {}", opt(&e.dsn.envid));
            println!("requiretls:       {}", e.requiretls);
            println!("bounce requested: {}", e.bounce_requested);
            println!(
                "leased until:     {}",
                if e.leased_until > now {
                    show_time(e.leased_until)
                } else {
                    "-".into()
                }
            );
            let size = store.blob(e.blob).await?.map(|b| b.len()).unwrap_or(0);
            println!("message size:     {size}");
        }
        QueueCommand::Retry { id, all } => {
            let which = match (id, all) {
                (_, true) => hato_store::QueueSelect::All,
                (Some(id), false) => hato_store::QueueSelect::Id(id),
                (None, false) => anyhow::bail!("give an ID or --all"),
            };
            if let hato_store::QueueSelect::Id(id) = which {
                anyhow::ensure!(
                    store.queue_entry(id).await?.is_some(),
                    "no queue entry {id}"
                );
            }
            let n = store.retry_now(which, now).await?;
            println!("{n} entr{} due now", if n == 1 { "y" } else { "ies" });
        }
        QueueCommand::Delete { id } => {
            anyhow::ensure!(store.queue_delete(id).await?, "no queue entry {id}");
            println!("deleted {id}");
        }
        QueueCommand::Bounce { id } => {
            anyhow::ensure!(
                store
                    .queue_bounce(
                        id,
                        "550 5.0.0 bounced by the administrator (hato queue bounce)",
                        now
                    )
                    .await?,
                "no queue entry {id}"
            );
            println!("{id} will be bounced by the running server");
        }
    }
    Ok(())
}
