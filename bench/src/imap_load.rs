//! hato-imap-load: an IMAP load generator.
//!
//! Three modes, all over implicit TLS (IMAPS):
//!
//! - mix (default): C clients each LOGIN, SELECT INBOX, then run a weighted mix of
//!   FETCH 1:* (FLAGS), FETCH n BODY.PEEK[], SEARCH UNSEEN, SEARCH SUBJECT x,
//!   STORE n +FLAGS (\Seen), APPEND and NOOP for D seconds or N operations; reports
//!   operations per second and latency per operation type and overall.
//! - `--append-only N`: C clients APPEND N messages between them (to preload a mailbox).
//! - `--idle-connections N`: open N connections, each LOGIN + SELECT + IDLE, report
//!   when all are idling, then hold them (so a script can measure the server's memory).

#![forbid(unsafe_code)]

mod common;
mod tls;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use common::{RunOpts, XorShift, json_str, micros, percentile_ms, rfc5322_date};

/// Longest response line accepted (literals are read separately).
const MAX_LINE: usize = 1024 * 1024;
/// Largest literal accepted in a response.
const MAX_LITERAL: usize = 64 * 1024 * 1024;

/// IMAP load generator over implicit TLS: operations per second per operation type,
/// latency, and idle connections for memory measurements.
///
/// Exit status: 0 when every operation succeeded, 2 when some failed, 1 on a fatal error.
#[derive(Parser, Debug)]
#[command(
    name = "hato-imap-load",
    version,
    about,
    long_about,
    after_long_help = "Examples:\n  \
    # 20 s of the default mix with 16 clients against hato's development IMAPS listener\n  \
    hato-imap-load --server 127.0.0.1:5993 --insecure --login bench@example.test:secret\n\n  \
    # preload 1000 messages, then hold 1000 idle connections until killed\n  \
    hato-imap-load --insecure --login bench@example.test:secret --append-only 1000\n  \
    hato-imap-load --insecure --login bench@example.test:secret --idle-connections 1000 --ready-file /tmp/ready"
)]
struct Args {
    /// Server address, host:port (implicit TLS).
    #[arg(long, default_value = "127.0.0.1:5993")]
    server: String,

    /// Credentials for LOGIN, USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD")]
    login: String,

    /// Mailbox to SELECT and APPEND to.
    #[arg(long, default_value = "INBOX")]
    mailbox: String,

    /// Concurrent clients (in --idle-connections mode: connections being set up at once).
    #[arg(short = 'c', long, default_value_t = 16)]
    concurrency: u64,

    /// Seconds to run the mix (ignored when --ops is given).
    #[arg(short = 'd', long, default_value_t = 20)]
    duration: u64,

    /// Stop the mix after this many operations in all instead of after --duration.
    #[arg(short = 'n', long)]
    ops: Option<u64>,

    /// Operation weights, e.g. "fetch_flags=1,fetch_body=3,search_unseen=1,search_subject=1,store=2,append=1,noop=1".
    #[arg(
        long,
        default_value = "fetch_flags=1,fetch_body=3,search_unseen=1,search_subject=1,store=2,append=1,noop=1"
    )]
    mix: String,

    /// Text for SEARCH SUBJECT.
    #[arg(long, default_value = "message 7")]
    subject: String,

    /// Approximate size of appended messages in bytes.
    #[arg(short = 's', long, default_value_t = 2048)]
    size: usize,

    /// Only APPEND this many messages (C clients), then report and exit.
    #[arg(long, value_name = "N", conflicts_with = "idle_connections")]
    append_only: Option<u64>,

    /// Open N connections, LOGIN + SELECT + IDLE on each, then hold them for --hold seconds.
    #[arg(long, value_name = "N")]
    idle_connections: Option<u64>,

    /// Seconds to hold idle connections once all are idling (the script kills us earlier).
    #[arg(long, default_value_t = 3600)]
    hold: u64,

    /// File written ("ready N") once all idle connections are idling.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,

    #[command(flatten)]
    tls_opts: tls::TlsArgs,

    #[command(flatten)]
    run: RunOpts,
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::main_with("hato-imap-load", args.run.threads, run(args))
}

/// The operations of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    FetchFlags,
    FetchBody,
    SearchUnseen,
    SearchSubject,
    Store,
    Append,
    Noop,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::FetchFlags,
        Op::FetchBody,
        Op::SearchUnseen,
        Op::SearchSubject,
        Op::Store,
        Op::Append,
        Op::Noop,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::FetchFlags => "fetch_flags",
            Op::FetchBody => "fetch_body",
            Op::SearchUnseen => "search_unseen",
            Op::SearchSubject => "search_subject",
            Op::Store => "store",
            Op::Append => "append",
            Op::Noop => "noop",
        }
    }
}

fn parse_mix(s: &str) -> anyhow::Result<Vec<(Op, u32)>> {
    let mut mix = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = part
            .split_once('=')
            .ok_or_else(|| anyhow!("--mix: expected name=weight, got {part:?}"))?;
        let op = Op::ALL
            .into_iter()
            .find(|o| o.name() == name.trim())
            .ok_or_else(|| anyhow!("--mix: unknown operation {name:?}"))?;
        let w: u32 = w
            .trim()
            .parse()
            .with_context(|| format!("--mix: bad weight in {part:?}"))?;
        if w > 0 {
            mix.push((op, w));
        }
    }
    if mix.is_empty() {
        bail!("--mix: no operation with a positive weight");
    }
    Ok(mix)
}

/// Connection settings shared by every client.
struct Params {
    server: String,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    user: String,
    password: String,
    mailbox: String,
    timeout: Duration,
}

type Stream = BufReader<TlsStream<TcpStream>>;

/// An error of one command: the label groups failures in the report.
#[derive(Debug)]
struct ImapError {
    label: String,
    detail: String,
    /// The connection can't be used any more (I/O error, timeout, BYE).
    fatal: bool,
}

impl ImapError {
    fn io(stage: &str, e: impl std::fmt::Display) -> Self {
        ImapError {
            label: format!("{stage} I/O"),
            detail: e.to_string(),
            fatal: true,
        }
    }
}

impl std::fmt::Display for ImapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.label, self.detail)
    }
}

/// One IMAP session over TLS.
struct Session {
    stream: Stream,
    tag: u64,
    /// Messages in the selected mailbox, as last reported by the server.
    exists: u64,
    timeout: Duration,
    line: Vec<u8>,
}

impl Session {
    /// Connect, TLS, greeting, LOGIN, SELECT.
    async fn open(p: &Params) -> Result<Session, ImapError> {
        let t = p.timeout;
        let tcp = timeout(t, TcpStream::connect(&p.server))
            .await
            .map_err(|_| ImapError::io("connect", "timeout"))?
            .map_err(|e| ImapError::io("connect", e))?;
        let _ = tcp.set_nodelay(true);
        let tls = timeout(t, p.connector.connect(p.server_name.clone(), tcp))
            .await
            .map_err(|_| ImapError::io("TLS", "timeout"))?
            .map_err(|e| ImapError::io("TLS", e))?;
        let mut s = Session {
            stream: BufReader::new(tls),
            tag: 0,
            exists: 0,
            timeout: t,
            line: Vec::new(),
        };
        s.read_line("greeting").await?;
        if !s.line.starts_with(b"* OK") {
            return Err(ImapError {
                label: "greeting".into(),
                detail: String::from_utf8_lossy(&s.line).trim_end().into(),
                fatal: true,
            });
        }
        let login = format!("LOGIN {} {}", quote(&p.user), quote(&p.password));
        s.command("LOGIN", &login).await?;
        s.command("SELECT", &format!("SELECT {}", quote(&p.mailbox)))
            .await?;
        Ok(s)
    }

    async fn read_line(&mut self, stage: &str) -> Result<(), ImapError> {
        self.line.clear();
        let t = self.timeout;
        let fut = async {
            loop {
                let n = (&mut self.stream)
                    .take((MAX_LINE + 1 - self.line.len()) as u64)
                    .read_until(b'\n', &mut self.line)
                    .await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ));
                }
                if self.line.len() > MAX_LINE {
                    return Err(std::io::Error::other("response line too long"));
                }
                // A literal at the end of the line: read it, then the rest of the line.
                match literal_len(&self.line) {
                    Some(len) if len <= MAX_LITERAL => {
                        let start = self.line.len();
                        self.line.resize(start + len, 0);
                        self.stream.read_exact(&mut self.line[start..]).await?;
                    }
                    Some(_) => return Err(std::io::Error::other("literal too large")),
                    None if self.line.ends_with(b"\n") => return Ok(()),
                    None => {}
                }
            }
        };
        timeout(t, fut)
            .await
            .map_err(|_| ImapError::io(stage, "timeout"))?
            .map_err(|e| ImapError::io(stage, e))
    }

    async fn write(&mut self, stage: &str, data: &[u8]) -> Result<(), ImapError> {
        let t = self.timeout;
        let fut = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        timeout(t, fut)
            .await
            .map_err(|_| ImapError::io(stage, "timeout"))?
            .map_err(|e| ImapError::io(stage, e))
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    /// Handles an untagged line; BYE is fatal.
    fn untagged(&mut self, stage: &str) -> Result<(), ImapError> {
        let l = &self.line;
        if l.starts_with(b"* BYE") {
            return Err(ImapError {
                label: format!("{stage} BYE"),
                detail: String::from_utf8_lossy(l).trim_end().into(),
                fatal: true,
            });
        }
        // "* 123 EXISTS"
        if let Some(rest) = l.strip_prefix(b"* ")
            && let Some(sp) = rest.iter().position(|&b| b == b' ')
            && rest[sp + 1..].to_ascii_uppercase().starts_with(b"EXISTS")
            && let Some(n) = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
        {
            self.exists = n;
        }
        Ok(())
    }

    /// Reads until the tagged completion of `tag`; OK or an error labelled by stage.
    async fn complete(&mut self, stage: &str, tag: &str) -> Result<(), ImapError> {
        loop {
            self.read_line(stage).await?;
            if self.line.starts_with(b"* ") {
                self.untagged(stage)?;
                continue;
            }
            if let Some(rest) = self.line.strip_prefix(tag.as_bytes())
                && let Some(rest) = rest.strip_prefix(b" ")
            {
                if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"OK") {
                    return Ok(());
                }
                let status = rest.split(|&b| b == b' ').next().unwrap_or_default();
                return Err(ImapError {
                    label: format!("{stage} {}", String::from_utf8_lossy(status)),
                    detail: String::from_utf8_lossy(&self.line).trim_end().into(),
                    fatal: false,
                });
            }
            // Anything else (continuation requests we did not ask for) is ignored.
        }
    }

    async fn command(&mut self, stage: &str, cmd: &str) -> Result<(), ImapError> {
        let tag = self.next_tag();
        self.write(stage, format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        self.complete(stage, &tag).await
    }

    /// Waits for a "+" continuation request (untagged data may come first).
    async fn continuation(&mut self, stage: &str, tag: &str) -> Result<(), ImapError> {
        loop {
            self.read_line(stage).await?;
            if self.line.starts_with(b"+") {
                return Ok(());
            }
            if self.line.starts_with(b"* ") {
                self.untagged(stage)?;
                continue;
            }
            if self.line.starts_with(tag.as_bytes()) {
                return Err(ImapError {
                    label: format!("{stage} refused"),
                    detail: String::from_utf8_lossy(&self.line).trim_end().into(),
                    fatal: false,
                });
            }
        }
    }

    async fn append(&mut self, mailbox: &str, msg: &[u8]) -> Result<(), ImapError> {
        let tag = self.next_tag();
        let head = format!("{tag} APPEND {} {{{}}}\r\n", quote(mailbox), msg.len());
        self.write("APPEND", head.as_bytes()).await?;
        self.continuation("APPEND", &tag).await?;
        let mut data = Vec::with_capacity(msg.len() + 2);
        data.extend_from_slice(msg);
        data.extend_from_slice(b"\r\n");
        self.write("APPEND", &data).await?;
        self.complete("APPEND", &tag).await
    }

    async fn idle(&mut self) -> Result<(), ImapError> {
        let tag = self.next_tag();
        self.write("IDLE", format!("{tag} IDLE\r\n").as_bytes())
            .await?;
        self.continuation("IDLE", &tag).await
    }

    async fn logout(mut self) {
        let _ = self.command("LOGOUT", "LOGOUT").await;
    }
}

/// `{123}` or `{123+}` at the end of a line.
fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"\r\n").or(line.strip_suffix(b"\n"))?;
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let digits = &l[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A small RFC 5322 message of about `size` bytes, CRLF line endings.
fn message(n: u64, size: usize, user: &str, run_id: &str) -> Vec<u8> {
    let mut m = format!(
        "Date: {}\r\nFrom: <hato-imap-load@example.test>\r\nTo: <{user}>\r\n\
         Subject: hato-imap-load message {n}\r\n\
         Message-ID: <hato-imap-load.{run_id}.{n}@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        rfc5322_date(SystemTime::now())
    );
    const LINE: &str = "the quick brown fox jumps over the lazy dog 0123456789 hato imap load";
    while m.len() < size {
        m.push_str(LINE);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

#[derive(Default)]
struct Stats {
    /// Per operation: latencies in microseconds of the successful ones.
    ops: BTreeMap<Op, Vec<u64>>,
    failed: u64,
    setup_us: Vec<u64>,
    failures: BTreeMap<String, (u64, String)>,
}

impl Stats {
    fn fail(&mut self, e: &ImapError) {
        self.failed += 1;
        self.failures
            .entry(e.label.clone())
            .or_insert_with(|| (0, e.to_string()))
            .0 += 1;
    }

    fn merge(&mut self, o: Stats) {
        for (op, v) in o.ops {
            self.ops.entry(op).or_default().extend(v);
        }
        self.failed += o.failed;
        self.setup_us.extend(o.setup_us);
        for (k, (n, sample)) in o.failures {
            self.failures.entry(k).or_insert((0, sample)).0 += n;
        }
    }
}

struct Shared {
    params: Params,
    mix: Vec<(Op, u32)>,
    total_weight: u32,
    subject: String,
    size: usize,
    run_id: String,
    /// Operations claimed so far; the limit (u64::MAX when running for a duration).
    next: AtomicU64,
    limit: u64,
    stop: AtomicBool,
    /// Every worker logs in before the timed phase starts.
    ready: tokio::sync::Barrier,
}

impl Shared {
    fn pick(&self, rng: &mut XorShift) -> Op {
        let mut r = (rng.next() % u64::from(self.total_weight)) as u32;
        for &(op, w) in &self.mix {
            if r < w {
                return op;
            }
            r -= w;
        }
        self.mix[0].0
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let Some((user, password)) = args.login.split_once(':') else {
        bail!("--login must be USER:PASSWORD");
    };
    let (connector, server_name) = args.tls_opts.connector(&args.server)?;
    let mix = parse_mix(&args.mix)?;
    let params = Params {
        server: args.server.clone(),
        connector,
        server_name,
        user: user.to_owned(),
        password: password.to_owned(),
        mailbox: args.mailbox.clone(),
        timeout: args.run.timeout(),
    };
    // Preflight: one session, so a wrong port, certificate or password is one clear error.
    let pre = Session::open(&params)
        .await
        .map_err(|e| anyhow!("first connection to {} failed at {e}", args.server))?;
    let exists = pre.exists;
    pre.logout().await;

    if let Some(n) = args.idle_connections {
        return idle(&args, Arc::new(params), n).await;
    }
    let (mix, limit) = match args.append_only {
        Some(n) => (vec![(Op::Append, 1)], n),
        None => (mix, args.ops.unwrap_or(u64::MAX)),
    };
    if limit == 0 {
        bail!("nothing to do: --ops / --append-only must be at least 1");
    }
    if exists == 0
        && mix
            .iter()
            .any(|(op, _)| matches!(op, Op::FetchBody | Op::Store))
    {
        eprintln!(
            "hato-imap-load: warning: {} is empty; FETCH n / STORE n need messages (preload with --append-only)",
            args.mailbox
        );
    }
    let workers = args.concurrency.min(limit);
    let shared = Arc::new(Shared {
        params,
        total_weight: mix.iter().map(|(_, w)| w).sum(),
        mix,
        subject: args.subject.clone(),
        size: args.size,
        run_id: common::run_id(),
        next: AtomicU64::new(0),
        limit,
        stop: AtomicBool::new(false),
        ready: tokio::sync::Barrier::new(workers as usize + 1),
    });
    let timed = args.append_only.is_none() && args.ops.is_none();
    let handles: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(worker(shared.clone(), i)))
        .collect();
    // Timing starts once every client has logged in and selected the mailbox.
    shared.ready.wait().await;
    let start = Instant::now();
    if timed {
        tokio::time::sleep(Duration::from_secs(args.duration.max(1))).await;
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut stats = Stats::default();
    for h in handles {
        stats.merge(h.await.context("a worker panicked")?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let report = report(&args, &mut stats, elapsed, exists);
    print!("{report}");
    Ok(if stats.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn worker(s: Arc<Shared>, index: u64) -> Stats {
    let mut st = Stats::default();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (index + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let t = Instant::now();
    let mut session = match Session::open(&s.params).await {
        Ok(new) => {
            st.setup_us.push(micros(t.elapsed()));
            Some(new)
        }
        Err(e) => {
            st.fail(&e);
            None
        }
    };
    s.ready.wait().await;
    let mut failures_in_a_row = 0u32;
    while !s.stop.load(Ordering::Relaxed) {
        let Some(n) = common::claim(&s.next, s.limit) else {
            break;
        };
        if session.is_none() {
            let t = Instant::now();
            match Session::open(&s.params).await {
                Ok(new) => {
                    st.setup_us.push(micros(t.elapsed()));
                    session = Some(new);
                }
                Err(e) => {
                    st.fail(&e);
                    failures_in_a_row += 1;
                    if failures_in_a_row > 20 {
                        break;
                    }
                    continue;
                }
            }
        }
        let Some(sess) = session.as_mut() else {
            continue;
        };
        let op = s.pick(&mut rng);
        let msgno = if sess.exists > 0 {
            rng.next() % sess.exists + 1
        } else {
            1
        };
        let t = Instant::now();
        let r = match op {
            Op::FetchFlags => sess.command("FETCH", "FETCH 1:* (FLAGS)").await,
            Op::FetchBody => {
                sess.command("FETCH", &format!("FETCH {msgno} BODY.PEEK[]"))
                    .await
            }
            Op::SearchUnseen => sess.command("SEARCH", "SEARCH UNSEEN").await,
            Op::SearchSubject => {
                sess.command("SEARCH", &format!("SEARCH SUBJECT {}", quote(&s.subject)))
                    .await
            }
            Op::Store => {
                sess.command("STORE", &format!("STORE {msgno} +FLAGS (\\Seen)"))
                    .await
            }
            Op::Append => {
                let msg = message(n, s.size, &s.params.user, &s.run_id);
                sess.append(&s.params.mailbox, &msg).await
            }
            Op::Noop => sess.command("NOOP", "NOOP").await,
        };
        match r {
            Ok(()) => {
                failures_in_a_row = 0;
                st.ops.entry(op).or_default().push(micros(t.elapsed()));
            }
            Err(e) => {
                st.fail(&e);
                if e.fatal {
                    session = None;
                }
            }
        }
    }
    if let Some(sess) = session.take() {
        sess.logout().await;
    }
    st
}

/// Opens `n` idling sessions, reports, then holds them.
async fn idle(args: &Args, params: Arc<Params>, n: u64) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..args.concurrency.min(n.max(1)))
        .map(|_| {
            let (p, next) = (params.clone(), next.clone());
            tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut errors = BTreeMap::<String, (u64, String)>::new();
                while common::claim(&next, n).is_some() {
                    let r = match Session::open(&p).await {
                        Ok(mut s) => s.idle().await.map(|()| s),
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(s) => ok.push(s),
                        Err(e) => {
                            errors
                                .entry(e.label.clone())
                                .or_insert_with(|| (0, e.to_string()))
                                .0 += 1
                        }
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    let mut sessions = Vec::new();
    let mut errors = BTreeMap::<String, (u64, String)>::new();
    for h in handles {
        let (ok, errs) = h.await.context("a worker panicked")?;
        sessions.extend(ok);
        for (k, (c, sample)) in errs {
            errors.entry(k).or_insert((0, sample)).0 += c;
        }
    }
    let setup = start.elapsed().as_secs_f64();
    let failed: u64 = errors.values().map(|(c, _)| c).sum();
    let mut out = String::new();
    if args.run.json {
        let _ = write!(
            out,
            "{{\n  \"idle_connections\": {},\n  \"failed\": {failed},\n  \"setup_s\": {setup:.3}\n}}\n",
            sessions.len()
        );
    } else {
        let _ = writeln!(
            out,
            "{} connections idling ({failed} failed) after {setup:.2} s",
            sessions.len()
        );
        for (label, (c, sample)) in &errors {
            let _ = writeln!(out, "  {c} x {label} (e.g. {sample})");
        }
    }
    print!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("ready {}\n", sessions.len()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    drop(sessions);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Nearest-rank percentile in ms of sorted microsecond values (0 for none).
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    percentile_ms(sorted, p)
}

fn report(args: &Args, st: &mut Stats, elapsed: f64, exists: u64) -> String {
    let mut all: Vec<u64> = st.ops.values().flatten().copied().collect();
    all.sort_unstable();
    st.setup_us.sort_unstable();
    let total = all.len() as u64;
    let rate = |c: u64| {
        if elapsed > 0.0 {
            c as f64 / elapsed
        } else {
            0.0
        }
    };
    let mut out = String::new();
    if args.run.json {
        let mut kv: Vec<(String, String)> = vec![
            ("concurrency".into(), args.concurrency.to_string()),
            ("messages_at_start".into(), exists.to_string()),
            ("elapsed_s".into(), format!("{elapsed:.3}")),
            ("ok".into(), total.to_string()),
            ("failed".into(), st.failed.to_string()),
            ("ops_per_s".into(), format!("{:.1}", rate(total))),
            ("latency_ms_p50".into(), format!("{:.3}", pct(&all, 0.5))),
            ("latency_ms_p99".into(), format!("{:.3}", pct(&all, 0.99))),
            (
                "login_select_ms_p50".into(),
                format!("{:.3}", pct(&st.setup_us, 0.5)),
            ),
            (
                "login_select_ms_p99".into(),
                format!("{:.3}", pct(&st.setup_us, 0.99)),
            ),
        ];
        for (op, v) in &mut st.ops {
            v.sort_unstable();
            let n = op.name();
            kv.push((format!("{n}_ok"), v.len().to_string()));
            kv.push((
                format!("{n}_ops_per_s"),
                format!("{:.1}", rate(v.len() as u64)),
            ));
            kv.push((format!("{n}_ms_p50"), format!("{:.3}", pct(v, 0.5))));
            kv.push((format!("{n}_ms_p99"), format!("{:.3}", pct(v, 0.99))));
        }
        let failures: Vec<String> = st
            .failures
            .iter()
            .map(|(k, (c, _))| format!("{k}: {c}"))
            .collect();
        kv.push(("failures".into(), json_str(&failures.join("; "))));
        out.push_str("{\n");
        for (i, (k, v)) in kv.iter().enumerate() {
            let comma = if i + 1 < kv.len() { "," } else { "" };
            let _ = writeln!(out, "  \"{k}\": {v}{comma}");
        }
        out.push_str("}\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{} on {} clients in {elapsed:.2} s ({exists} messages at start): {total} ok, {} failed",
        args.server, args.concurrency, st.failed
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>10} {:>10} {:>10}",
        "operation", "ok", "ops/s", "p50 ms", "p99 ms"
    );
    for (op, v) in &mut st.ops {
        v.sort_unstable();
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>10.1} {:>10.3} {:>10.3}",
            op.name(),
            v.len(),
            rate(v.len() as u64),
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>10.1} {:>10.3} {:>10.3}",
        "all",
        total,
        rate(total),
        pct(&all, 0.5),
        pct(&all, 0.99)
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>10} {:>10.3} {:>10.3}",
        "login+select",
        st.setup_us.len(),
        "",
        pct(&st.setup_us, 0.5),
        pct(&st.setup_us, 0.99)
    );
    for (label, (c, sample)) in &st.failures {
        let _ = writeln!(out, "  failed: {c} x {label} (e.g. {sample})");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}\r\n"), Some(123));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12+}\r\n"), Some(12));
        assert_eq!(literal_len(b"a1 OK done\r\n"), None);
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
    }

    #[test]
    fn mix_and_quote() {
        let m = parse_mix("noop=1, store=0,append=2").unwrap();
        assert_eq!(m, vec![(Op::Noop, 1), (Op::Append, 2)]);
        assert!(parse_mix("bogus=1").is_err());
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn message_shape() {
        let m = message(3, 2048, "u@example.test", "r");
        let t = std::str::from_utf8(&m).unwrap();
        assert!(t.contains("Subject: hato-imap-load message 3\r\n"));
        assert!(t.ends_with("\r\n") && m.len() >= 2048 && m.len() < 2048 + 80);
        assert_eq!(
            rfc5322_date(std::time::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
    }
}
