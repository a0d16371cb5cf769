//! hato-load: an SMTP load generator.
//!
//! C workers each speak real SMTP over TCP (optionally TLS) to one server and send N
//! messages between them, K per connection. The figure of merit is the transaction
//! latency (MAIL FROM sent to the final 250 after the message content) and the number
//! of messages per second the server durably accepted.

#![forbid(unsafe_code)]

mod common;
mod message;
mod smtp;
mod tls;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;

use common::{RunOpts, json_str, micros, percentile_ms};
use message::MessageTemplate;
use smtp::{Session, SessionParams, SmtpError, TlsMode};

/// SMTP load generator: sends N messages over C concurrent connections and reports
/// throughput and transaction latency.
///
/// Every reply code is checked; failures are counted by stage and reply. Before the
/// measured run, one preflight connection goes through greeting, EHLO, TLS, AUTH, MAIL
/// FROM and RCPT TO (then RSET, so nothing is delivered): if any of that fails, the run
/// stops with that error instead of counting N identical failures.
///
/// Exit status: 0 when every message was accepted, 2 when some failed, 1 on a fatal error.
#[derive(Parser, Debug)]
#[command(
    name = "hato-load",
    version,
    about,
    long_about,
    after_long_help = "Examples:\n  \
    # hato's development submission listener (self-signed certificate, AUTH required)\n  \
    hato-load --server 127.0.0.1:5587 --tls starttls --insecure \\\n    \
    --auth bench@example.test:secret --to bench@example.test\n\n  \
    # connection reuse: 20 messages per connection, results as JSON\n  \
    hato-load --server 127.0.0.1:5587 --tls starttls --insecure --auth bench@example.test:secret \\\n    \
    --to bench@example.test -n 10000 -c 32 -k 20 --json"
)]
struct Args {
    /// Server address, host:port.
    #[arg(long, default_value = "127.0.0.1:5587")]
    server: String,

    /// Total number of messages to send.
    #[arg(short = 'n', long, default_value_t = 1000)]
    messages: u64,

    /// Number of concurrent connections (workers).
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: u64,

    /// Approximate size of each message in bytes, headers included.
    #[arg(short = 's', long, default_value_t = 4096)]
    size: usize,

    /// Transport security: none, starttls (upgrade before EHLO #2) or implicit (TLS first).
    #[arg(long, value_enum, default_value_t = TlsMode::None)]
    tls: TlsMode,

    /// Authenticate with AUTH PLAIN as USER:PASSWORD (after TLS, if any).
    #[arg(long, value_name = "USER:PASSWORD")]
    auth: Option<String>,

    /// Envelope sender and From: address.
    #[arg(long, default_value = "hato-load@example.test")]
    from: String,

    /// Envelope recipient; repeat for several recipients per message.
    #[arg(
        long = "to",
        value_name = "ADDRESS",
        default_value = "bench@example.test"
    )]
    to: Vec<String>,

    /// Messages sent on one connection before QUIT (1 = a new connection per message).
    #[arg(short = 'k', long, default_value_t = 1)]
    messages_per_connection: u64,

    #[command(flatten)]
    tls_opts: tls::TlsArgs,

    /// Never pipeline, even if the server offers PIPELINING.
    #[arg(long)]
    no_pipelining: bool,

    /// Name sent with EHLO.
    #[arg(long, default_value = "localhost")]
    ehlo: String,

    #[command(flatten)]
    run: RunOpts,
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::main_with("hato-load", args.run.threads, run(args))
}

/// Settings shared by all workers.
struct Shared {
    params: SessionParams,
    template: MessageTemplate,
    from: String,
    to: Vec<String>,
    messages: u64,
    per_connection: u64,
    next: AtomicU64,
    done: AtomicU64,
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.messages == 0 || args.concurrency == 0 || args.messages_per_connection == 0 {
        bail!("--messages, --concurrency and --messages-per-connection must be at least 1");
    }
    for addr in std::iter::once(&args.from).chain(&args.to) {
        if addr
            .bytes()
            .any(|b| b <= b' ' || b == b'<' || b == b'>' || b >= 0x7f)
        {
            bail!("invalid address {addr:?}");
        }
    }
    let auth_plain = match &args.auth {
        None => None,
        Some(cred) => {
            let Some((user, password)) = cred.split_once(':') else {
                bail!("--auth must be USER:PASSWORD");
            };
            if args.tls == TlsMode::None {
                eprintln!("hato-load: warning: sending AUTH PLAIN credentials without TLS");
            }
            Some(SessionParams::auth_plain_response(user, password))
        }
    };
    let (connector, server_name) = if args.tls == TlsMode::None {
        (None, None)
    } else {
        let (connector, name) = args.tls_opts.connector(&args.server)?;
        (Some(connector), Some(name))
    };
    let template = MessageTemplate::new(
        &args.from,
        &message::to_header_list(&args.to),
        args.size,
        &common::run_id(),
    );
    let params = SessionParams {
        server: args.server.clone(),
        tls: args.tls,
        connector,
        server_name,
        ehlo_name: args.ehlo.clone(),
        auth_plain,
        timeout: args.run.timeout(),
        allow_pipelining: !args.no_pipelining,
    };

    // Preflight: one full session setup, so a wrong port, certificate, password or
    // missing extension stops the run with one clear message instead of N failures.
    let mut sample = Vec::new();
    template.render(0, &mut sample);
    let fail = |e| anyhow::anyhow!("first connection to {} failed at {e}", args.server);
    let mut pre = Session::open(&params).await.map_err(fail)?;
    pre.probe_envelope(&args.from, &args.to)
        .await
        .map_err(fail)?;
    let pipelining = pre.pipelining();
    if let Some(limit) = pre.caps.size.filter(|&l| l > 0)
        && sample.len() as u64 > limit
    {
        bail!(
            "messages of {} bytes exceed the server's SIZE limit {limit}",
            sample.len()
        );
    }
    pre.quit()
        .await
        .with_context(|| format!("QUIT on the first connection to {}", args.server))?;

    let shared = Arc::new(Shared {
        params,
        template,
        from: args.from.clone(),
        to: args.to.clone(),
        messages: args.messages,
        per_connection: args.messages_per_connection,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let workers = args.concurrency.min(args.messages);
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let progress = (!args.run.json && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(progress(shared.clone())));
    let handles: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut stats = Stats::default();
    for h in handles {
        stats.merge(h.await.context("a worker panicked")?);
    }
    let elapsed = start.elapsed();
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    let cpu = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let report = Report {
        args: &args,
        pipelining,
        message_bytes: sample.len().saturating_sub(3),
        workers,
        elapsed,
        client_cpu_s: cpu,
        stats,
    };
    let all_ok = report.stats.failed == 0;
    if args.run.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

#[derive(Default)]
struct Stats {
    ok: u64,
    failed: u64,
    connections: u64,
    bytes: u64,
    /// Per accepted message: MAIL FROM sent → final reply, in microseconds.
    latencies_us: Vec<u64>,
    /// Per connection: connect → ready for MAIL FROM (TLS, EHLO, AUTH), in microseconds.
    setup_us: Vec<u64>,
    /// Failed messages by label: count and one sample error text.
    failures: BTreeMap<String, (u64, String)>,
    /// Errors that did not fail a message (RSET, QUIT).
    other_errors: BTreeMap<String, (u64, String)>,
}

impl Stats {
    fn fail(&mut self, e: &SmtpError) {
        self.failed += 1;
        count(&mut self.failures, e);
    }

    fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.connections += o.connections;
        self.bytes += o.bytes;
        self.latencies_us.extend(o.latencies_us);
        self.setup_us.extend(o.setup_us);
        for (map, other) in [
            (&mut self.failures, o.failures),
            (&mut self.other_errors, o.other_errors),
        ] {
            for (k, (n, sample)) in other {
                map.entry(k).or_insert((0, sample)).0 += n;
            }
        }
    }
}

fn count(map: &mut BTreeMap<String, (u64, String)>, e: &SmtpError) {
    map.entry(e.label()).or_insert_with(|| (0, e.to_string())).0 += 1;
}

async fn worker(s: Arc<Shared>) -> Stats {
    let mut st = Stats::default();
    let mut session: Option<Session> = None;
    let mut on_connection = 0;
    let mut buf = Vec::new();
    while let Some(n) = common::claim(&s.next, s.messages) {
        if session.is_none() {
            let t = Instant::now();
            match Session::open(&s.params).await {
                Ok(new) => {
                    st.setup_us.push(micros(t.elapsed()));
                    st.connections += 1;
                    session = Some(new);
                    on_connection = 0;
                }
                Err(e) => {
                    // The message claimed for this connection counts as failed.
                    st.fail(&e);
                    s.done.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(sess) = session.as_mut() else {
            continue;
        };
        s.template.render(n, &mut buf);
        match sess.transaction(&s.from, &s.to, &buf).await {
            Ok(latency) => {
                st.ok += 1;
                st.bytes += buf.len() as u64;
                st.latencies_us.push(micros(latency));
            }
            Err(e) => {
                st.fail(&e);
                let reusable = e.connection_usable() && {
                    let r = sess.rset().await;
                    if let Err(e) = &r {
                        count(&mut st.other_errors, e);
                    }
                    r.is_ok()
                };
                if !reusable {
                    session = None;
                }
            }
        }
        s.done.fetch_add(1, Ordering::Relaxed);
        on_connection += 1;
        if on_connection >= s.per_connection
            && let Some(sess) = session.take()
            && let Err(e) = sess.quit().await
        {
            count(&mut st.other_errors, &e);
        }
    }
    if let Some(sess) = session.take()
        && let Err(e) = sess.quit().await
    {
        count(&mut st.other_errors, &e);
    }
    st
}

async fn progress(s: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        eprint!(
            "\r  {}/{} messages",
            s.done.load(Ordering::Relaxed),
            s.messages
        );
    }
}

/// User + system CPU time of this process so far, from /proc (Linux only).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after "(comm)": state is the 1st, utime the 12th, stime the 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux platform this runs on.
    Some((utime + stime) as f64 / 100.0)
}

/// Latency summary in milliseconds.
struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Summary {
    fn of(values_us: &mut [u64]) -> Option<Summary> {
        if values_us.is_empty() {
            return None;
        }
        values_us.sort_unstable();
        let n = values_us.len();
        let pct = |p: f64| percentile_ms(values_us, p);
        Some(Summary {
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: values_us[n - 1] as f64 / 1000.0,
            mean: values_us.iter().sum::<u64>() as f64 / n as f64 / 1000.0,
        })
    }
}

struct Report<'a> {
    args: &'a Args,
    pipelining: bool,
    message_bytes: usize,
    workers: u64,
    elapsed: Duration,
    client_cpu_s: Option<f64>,
    stats: Stats,
}

impl Report<'_> {
    fn rate(&self) -> f64 {
        self.stats.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn text(mut self) -> String {
        use std::fmt::Write as _;
        let a = self.args;
        let latency = Summary::of(&mut self.stats.latencies_us);
        let setup = Summary::of(&mut self.stats.setup_us);
        let secs = self.elapsed.as_secs_f64();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "hato-load → {}: tls={}, auth={}, pipelining={}, C={}, K={}, {} B/message, {} rcpt",
            a.server,
            a.tls,
            if a.auth.is_some() { "PLAIN" } else { "off" },
            if self.pipelining { "yes" } else { "no" },
            self.workers,
            a.messages_per_connection,
            self.message_bytes,
            a.to.len(),
        );
        let _ = writeln!(o, "  messages ok   {}", self.stats.ok);
        let _ = writeln!(o, "  failed        {}", self.stats.failed);
        let _ = writeln!(o, "  connections   {}", self.stats.connections);
        let _ = writeln!(o, "  elapsed       {secs:.3} s");
        let _ = writeln!(
            o,
            "  throughput    {:.1} msg/s ({:.2} MB/s of message data)",
            self.rate(),
            self.stats.bytes as f64 / secs.max(1e-9) / 1e6
        );
        if let Some(l) = latency {
            let _ = writeln!(
                o,
                "  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}   (MAIL → 250 after DATA)",
                l.p50, l.p90, l.p99, l.max, l.mean
            );
        }
        if let Some(l) = setup {
            let _ = writeln!(
                o,
                "  setup ms      p50 {:.2}  p99 {:.2}  max {:.2}   (connect → ready for MAIL: greeting, EHLO{}{})",
                l.p50,
                l.p99,
                l.max,
                if a.tls == TlsMode::None { "" } else { ", TLS" },
                if a.auth.is_some() { ", AUTH" } else { "" },
            );
        }
        if let Some(cpu) = self.client_cpu_s {
            let _ = writeln!(
                o,
                "  client CPU    {cpu:.2} s ({:.0}% of one core; near {}% means the client is the bottleneck)",
                cpu / secs.max(1e-9) * 100.0,
                a.run.threads.max(1) * 100
            );
        }
        for (title, map) in [
            ("failed messages by reply", &self.stats.failures),
            (
                "other errors (did not fail a message)",
                &self.stats.other_errors,
            ),
        ] {
            if !map.is_empty() {
                let _ = writeln!(o, "  {title}:");
                for (label, (n, sample)) in map {
                    let _ = writeln!(o, "    {n:>7}  {label}    e.g. {sample}");
                }
            }
        }
        o
    }

    fn json(mut self) -> String {
        let a = self.args;
        let latency = Summary::of(&mut self.stats.latencies_us);
        let setup = Summary::of(&mut self.stats.setup_us);
        let num = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}"));
        let map = |m: &BTreeMap<String, (u64, String)>| {
            let items: Vec<String> = m
                .iter()
                .map(|(k, (n, _))| format!("{}: {n}", json_str(k)))
                .collect();
            format!("{{{}}}", items.join(", "))
        };
        let fields: Vec<(&str, String)> = vec![
            ("server", json_str(&a.server)),
            ("tls", json_str(&a.tls.to_string())),
            ("auth", (a.auth.is_some()).to_string()),
            ("pipelining", self.pipelining.to_string()),
            ("messages", a.messages.to_string()),
            ("concurrency", self.workers.to_string()),
            (
                "messages_per_connection",
                a.messages_per_connection.to_string(),
            ),
            ("recipients", a.to.len().to_string()),
            ("message_bytes", self.message_bytes.to_string()),
            ("ok", self.stats.ok.to_string()),
            ("failed", self.stats.failed.to_string()),
            ("connections", self.stats.connections.to_string()),
            ("elapsed_s", format!("{:.3}", self.elapsed.as_secs_f64())),
            ("msgs_per_s", format!("{:.3}", self.rate())),
            ("latency_ms_p50", num(latency.as_ref().map(|l| l.p50))),
            ("latency_ms_p90", num(latency.as_ref().map(|l| l.p90))),
            ("latency_ms_p99", num(latency.as_ref().map(|l| l.p99))),
            ("latency_ms_max", num(latency.as_ref().map(|l| l.max))),
            ("latency_ms_mean", num(latency.as_ref().map(|l| l.mean))),
            ("setup_ms_p50", num(setup.as_ref().map(|l| l.p50))),
            ("setup_ms_p99", num(setup.as_ref().map(|l| l.p99))),
            ("client_cpu_s", num(self.client_cpu_s)),
            ("failures", map(&self.stats.failures)),
            ("other_errors", map(&self.stats.other_errors)),
        ];
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("  \"{k}\": {v}"))
            .collect();
        format!("{{\n{}\n}}", body.join(",\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p99, s.max), (50.0, 99.0, 100.0));
    }
}
