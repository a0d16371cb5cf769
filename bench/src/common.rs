//! What both load generators share: the runtime around `run`, the run id, timing and JSON
//! helpers, message dates and a small PRNG.

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Options of every run.
#[derive(clap::Args, Debug)]
pub struct RunOpts {
    /// Seconds to wait for connect, the TLS handshake, each reply and each write.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,

    /// Runtime worker threads for the client (keep low: it shares the cores with the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Print the results as one JSON object (one key per line) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl RunOpts {
    /// `--timeout` (at least a second).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }
}

/// Runs `run` on a multi-threaded tokio runtime of `threads` workers; a fatal error is printed
/// as `NAME: error: ...` and exits with status 1.
pub fn main_with(
    name: &str,
    threads: usize,
    run: impl Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run),
        Err(e) => Err(anyhow::Error::new(e).context("starting the tokio runtime")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Distinguishes the messages of one run from those of others: the time in microseconds (hex)
/// and the process id.
pub fn run_id() -> String {
    format!(
        "{:x}.{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0),
        std::process::id()
    )
}

/// The next number below `limit` from `next` (each is handed out once, across workers).
pub fn claim(next: &AtomicU64, limit: u64) -> Option<u64> {
    let n = next.fetch_add(1, Ordering::Relaxed);
    (n < limit).then_some(n)
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Nearest-rank percentile `p` (0 to 1), in ms, of sorted microsecond values (not empty).
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    let n = sorted_us.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted_us[rank - 1] as f64 / 1000.0
}

pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `Tue, 05 May 2026 13:04:05 +0000`
pub fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[(days + 4).rem_euclid(7) as usize];
    format!(
        "{weekday}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |s| rfc5322_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_777_986_245), "Tue, 05 May 2026 13:04:05 +0000");
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
