//! The recorder and its journal: [`Recorder`] counts sessions in memory and appends them to one
//! JSON-lines file per UTC day; [`load_day`] reads a day back; [`due_reports`], [`mark_sent`]
//! and [`prune`] decide which reports go out and which files go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use time::Date;
use tracing::{debug, warn};

use super::json::{JournalLine, details_json, from_journal, policy_json};
use super::model::{Aggregate, SessionEvent, SessionResult, clean_field};
use super::normalize_domain;
use super::report::{day_text, days_before, parse_day};

/// How often the recorder's background thread appends new counts to the journal by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// A journal larger than this (and than twice its size after the last compaction) is compacted.
pub const DEFAULT_COMPACT_THRESHOLD: u64 = 1024 * 1024;
/// How many complete days back [`due_reports`] looks: yesterday and the day before (a report
/// missed by an outage over midnight is still sent; older ones are not).
pub const DUE_WINDOW_DAYS: i64 = 2;
/// Journals and sent lists older than this many days are removed by [`prune`] by default.
pub const KEEP_DAYS: i64 = 7;

fn journal_path(dir: &Path, day: Date) -> PathBuf {
    dir.join(format!("{}.jsonl", day_text(day)))
}

fn sent_path(dir: &Path, day: Date) -> PathBuf {
    dir.join(format!("{}.sent", day_text(day)))
}

/// Settings of a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// How often a background thread appends new counts to the journal; None: no thread, only
    /// [`Recorder::flush`] (and dropping the last handle) write.
    pub flush_interval: Option<Duration>,
    /// Compact a day's journal when it grows beyond this and twice its last compacted size.
    pub compact_threshold: u64,
}

impl Default for RecorderOptions {
    fn default() -> RecorderOptions {
        RecorderOptions {
            flush_interval: Some(DEFAULT_FLUSH_INTERVAL),
            compact_threshold: DEFAULT_COMPACT_THRESHOLD,
        }
    }
}

/// Counts TLS sessions for the reports. Cheap to clone (one shared state) and to call from many
/// tasks: [`Recorder::record`] takes a mutex for a map update, never does I/O.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    compact_threshold: u64,
    /// Counts not yet in the journal, per (day, domain).
    pending: Mutex<HashMap<(Date, String), Aggregate>>,
    /// Held while writing the journal; the size of each day's journal after its last compaction.
    io: Mutex<HashMap<Date, u64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            warn!(dir = %self.dir.display(), "TLS-RPT: cannot write the journal: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// A recorder writing to `dir` (created if missing, e.g. `data_dir/tls-rpt`), flushing every
    /// [`DEFAULT_FLUSH_INTERVAL`] from a background thread.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Recorder> {
        Recorder::open_with(dir, RecorderOptions::default())
    }

    pub fn open_with(dir: impl Into<PathBuf>, options: RecorderOptions) -> io::Result<Recorder> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let inner = Arc::new(Inner {
            dir,
            compact_threshold: options.compact_threshold,
            pending: Mutex::new(HashMap::new()),
            io: Mutex::new(HashMap::new()),
        });
        if let Some(interval) = options.flush_interval {
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("tls-rpt-flush".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(interval);
                        let Some(inner) = weak.upgrade() else { break };
                        if let Err(e) = inner.flush() {
                            warn!(dir = %inner.dir.display(), "TLS-RPT: cannot write the journal: {e}");
                        }
                    }
                })?;
        }
        Ok(Recorder { inner })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Counts one session. Strings are cleaned (control characters, length) and host names
    /// lower-cased; an event without a policy domain is ignored.
    pub fn record(&self, event: SessionEvent) {
        let domain = clean_field(&normalize_domain(&event.policy_domain));
        if domain.is_empty() {
            return;
        }
        let policy = event.policy.cleaned();
        let result = match event.result {
            SessionResult::Success => SessionResult::Success,
            SessionResult::Failure(detail) => SessionResult::Failure(detail.cleaned()),
        };
        let mut pending = lock(&self.inner.pending);
        let aggregate = pending.entry((event.day, domain)).or_default();
        if !aggregate.add(policy, result) {
            debug!("TLS-RPT: too many policies for one domain and day, session not counted");
        }
    }

    /// Writes the counts recorded so far to the journal (and syncs it). On an error the counts
    /// stay pending for the next flush.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    /// [`flush`](Recorder::flush), then [`due_reports`] of this recorder's directory.
    pub fn due_reports(&self, today: Date) -> io::Result<Vec<(Date, String, Aggregate)>> {
        self.flush()?;
        due_reports(&self.inner.dir, today)
    }

    /// [`mark_sent`] in this recorder's directory.
    pub fn mark_sent(&self, day: Date, domain: &str) -> io::Result<()> {
        mark_sent(&self.inner.dir, day, domain)
    }

    /// [`prune`] in this recorder's directory, keeping [`KEEP_DAYS`].
    pub fn prune(&self, today: Date) -> io::Result<usize> {
        let _io = lock(&self.inner.io);
        prune(&self.inner.dir, today, KEEP_DAYS)
    }
}

impl Inner {
    fn flush(&self) -> io::Result<()> {
        let mut compacted = lock(&self.io);
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Ok(());
        }
        let mut by_day: BTreeMap<Date, Vec<(String, Aggregate)>> = BTreeMap::new();
        for ((day, domain), aggregate) in pending {
            by_day.entry(day).or_default().push((domain, aggregate));
        }
        let mut result = Ok(());
        for (day, entries) in by_day {
            let mut data = Vec::new();
            for (domain, aggregate) in &entries {
                for (policy, counts) in &aggregate.policies {
                    let line = JournalLine {
                        policy: policy_json(domain, policy),
                        successful: counts.successful,
                        failed: counts.failed,
                        failure_details: details_json(counts),
                    };
                    serde_json::to_writer(&mut data, &line).map_err(io::Error::other)?;
                    data.push(b'\n');
                }
            }
            match append(&journal_path(&self.dir, day), &data) {
                Ok(len) => {
                    let base = compacted.get(&day).copied().unwrap_or(0);
                    if len > self.compact_threshold && len > 2 * base {
                        match compact(&self.dir, day) {
                            Ok(new_len) => {
                                compacted.insert(day, new_len);
                            }
                            Err(e) => warn!("TLS-RPT: cannot compact the journal of {day}: {e}"),
                        }
                    }
                }
                Err(e) => {
                    let mut pending = lock(&self.pending);
                    for (domain, aggregate) in entries {
                        pending.entry((day, domain)).or_default().merge(aggregate);
                    }
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        if let Some(&newest) = compacted.keys().max() {
            let oldest = days_before(newest, KEEP_DAYS);
            compacted.retain(|day, _| *day >= oldest);
        }
        result
    }
}

/// Appends `data` to a file, first ending a line a crash left unfinished, and syncs. On an error
/// the file is cut back to its old length (no half-written counts). Returns the new length.
fn append(path: &Path, data: &[u8]) -> io::Result<u64> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut buffer = Vec::with_capacity(data.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            buffer.push(b'\n');
        }
    }
    buffer.extend_from_slice(data);
    let written = file.write_all(&buffer).and_then(|()| file.sync_data());
    match written {
        Ok(()) => Ok(len + buffer.len() as u64),
        Err(e) => {
            let _ = file.set_len(len);
            Err(e)
        }
    }
}

/// Rewrites a day's journal with one line per domain and policy. Returns the new length.
fn compact(dir: &Path, day: Date) -> io::Result<u64> {
    let days = load_day(dir, day)?;
    let mut data = Vec::new();
    for (domain, aggregate) in &days {
        for (policy, counts) in &aggregate.policies {
            let line = JournalLine {
                policy: policy_json(domain, policy),
                successful: counts.successful,
                failed: counts.failed,
                failure_details: details_json(counts),
            };
            serde_json::to_writer(&mut data, &line).map_err(io::Error::other)?;
            data.push(b'\n');
        }
    }
    let path = journal_path(dir, day);
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&data)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(data.len() as u64)
}

/// The counts of one day's journal, per domain. Lines that do not parse (a line cut by a crash)
/// are skipped with a warning; a missing journal is an empty day.
pub fn load_day(dir: &Path, day: Date) -> io::Result<BTreeMap<String, Aggregate>> {
    let path = journal_path(dir, day);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut out: BTreeMap<String, Aggregate> = BTreeMap::new();
    let mut line = Vec::new();
    let mut skipped = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<JournalLine>(text)
            .ok()
            .and_then(from_journal)
        {
            Some((domain, policy, counts)) => {
                out.entry(domain).or_default().add_counts(
                    policy,
                    counts.successful,
                    counts.failed,
                    counts.failure_details,
                );
            }
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        warn!(
            journal = %path.display(),
            "TLS-RPT: skipped {skipped} unreadable journal line(s)"
        );
    }
    Ok(out)
}

/// The days that have a journal in `dir`, oldest first.
fn journal_days(dir: &Path) -> io::Result<Vec<Date>> {
    let mut days = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(days),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(day) = name.strip_suffix(".jsonl").and_then(parse_day) {
            days.push(day);
        }
    }
    days.sort();
    Ok(days)
}

/// The domains whose report of `day` was sent.
fn sent_domains(dir: &Path, day: Date) -> io::Result<BTreeSet<String>> {
    match fs::read(sent_path(dir, day)) {
        Ok(data) => Ok(String::from_utf8_lossy(&data)
            .lines()
            .map(normalize_domain)
            .filter(|d| !d.is_empty())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

/// The reports to send: for each complete day before `today` (at most [`DUE_WINDOW_DAYS`]
/// back), each domain with counted sessions whose report was not marked sent, with its counts.
/// Oldest day first, domains in order. Call [`Recorder::flush`] first (or use
/// [`Recorder::due_reports`]) so the last seconds of the day are in the journal.
pub fn due_reports(dir: &Path, today: Date) -> io::Result<Vec<(Date, String, Aggregate)>> {
    let oldest = days_before(today, DUE_WINDOW_DAYS);
    let mut out = Vec::new();
    for day in journal_days(dir)? {
        if day < oldest || day >= today {
            continue;
        }
        let sent = sent_domains(dir, day)?;
        for (domain, aggregate) in load_day(dir, day)? {
            if !sent.contains(&domain) && !aggregate.is_empty() {
                out.push((day, domain, aggregate));
            }
        }
    }
    Ok(out)
}

/// Records that the report of `domain` for `day` was sent (or must not be: no TLSRPT record),
/// so [`due_reports`] does not return it again. Appended to `<day>.sent` and synced.
pub fn mark_sent(dir: &Path, day: Date, domain: &str) -> io::Result<()> {
    let domain = normalize_domain(domain);
    if domain.is_empty() || domain.contains(['\n', '\r']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid domain {domain:?}"),
        ));
    }
    fs::create_dir_all(dir)?;
    append(&sent_path(dir, day), format!("{domain}\n").as_bytes()).map(|_| ())
}

/// Removes journals and sent lists of days before `today - keep_days`. Returns how many files
/// were removed. Files with other names are left alone.
pub fn prune(dir: &Path, today: Date, keep_days: i64) -> io::Result<usize> {
    let oldest = days_before(today, keep_days);
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let day = [".jsonl", ".sent", ".jsonl.tmp"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .and_then(parse_day);
        if let Some(day) = day
            && day < oldest
        {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::tlsrpt::test_support::{event, failure, quiet, sts_policy};
    use crate::tlsrpt::{FailureType, PolicyDesc};

    #[test]
    fn aggregation_per_domain_day_policy_and_detail() {
        let dir = tempfile::tempdir().unwrap();
        let rec = quiet(dir.path());
        let day = date!(2024 - 05 - 01);
        for _ in 0..3 {
            rec.record(event(
                "Example.COM.",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
        }
        for _ in 0..2 {
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Failure(failure(FailureType::CertificateExpired, "MX1.example.com")),
            ));
        }
        rec.record(event(
            "example.com",
            day,
            sts_policy(),
            SessionResult::Failure(failure(
                FailureType::StarttlsNotSupported,
                "mx2.example.com",
            )),
        ));
        rec.record(event(
            "example.com",
            day,
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
        rec.record(event(
            "other.example",
            day,
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
        rec.record(event(
            "example.com",
            date!(2024 - 05 - 02),
            sts_policy(),
            SessionResult::Success,
        ));
        rec.record(event("", day, sts_policy(), SessionResult::Success));
        rec.flush().unwrap();

        let loaded = load_day(dir.path(), day).unwrap();
        assert_eq!(
            loaded.keys().collect::<Vec<_>>(),
            ["example.com", "other.example"]
        );
        let agg = &loaded["example.com"];
        assert_eq!(agg.policies.len(), 2);
        let sts = &agg.policies[&sts_policy()];
        assert_eq!((sts.successful, sts.failed), (3, 3));
        assert_eq!(
            sts.failure_details[&failure(FailureType::CertificateExpired, "mx1.example.com")],
            2
        );
        assert_eq!(
            sts.failure_details[&failure(FailureType::StarttlsNotSupported, "mx2.example.com")],
            1
        );
        assert_eq!(agg.policies[&PolicyDesc::no_policy_found()].successful, 1);
        assert_eq!((agg.total_successful(), agg.total_failed()), (4, 3));
        assert_eq!(
            load_day(dir.path(), date!(2024 - 05 - 02)).unwrap()["example.com"].total_successful(),
            1
        );
    }

    #[test]
    fn counts_survive_a_restart_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let day = date!(2024 - 05 - 01);
        {
            let rec = quiet(dir.path());
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
            rec.flush().unwrap();
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
            // Dropping the last handle flushes too.
        }
        // A crash in the middle of an append: the last line is cut.
        let path = journal_path(dir.path(), day);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"policy\":{\"policy-type\":\"sts\",\"polic")
            .unwrap();
        drop(file);
        assert_eq!(
            load_day(dir.path(), day).unwrap()["example.com"].total_successful(),
            2
        );

        // After the restart, new counts start on a new line and nothing is lost.
        let rec = quiet(dir.path());
        rec.record(event(
            "example.com",
            day,
            sts_policy(),
            SessionResult::Failure(failure(
                FailureType::CertificateNotTrusted,
                "mx.example.com",
            )),
        ));
        rec.flush().unwrap();
        let agg = &load_day(dir.path(), day).unwrap()["example.com"];
        assert_eq!((agg.total_successful(), agg.total_failed()), (2, 1));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        // Garbage and blank lines in the middle are skipped as well.
        fs::write(&path, format!("\n\u{0}\u{1}garbage\n{text}")).unwrap();
        let agg = &load_day(dir.path(), day).unwrap()["example.com"];
        assert_eq!((agg.total_successful(), agg.total_failed()), (2, 1));
    }

    #[test]
    fn background_flush_and_concurrent_recording() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open_with(
            dir.path(),
            RecorderOptions {
                flush_interval: Some(Duration::from_millis(20)),
                compact_threshold: DEFAULT_COMPACT_THRESHOLD,
            },
        )
        .unwrap();
        let day = date!(2024 - 05 - 01);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        let result = if i % 5 == 0 {
                            SessionResult::Failure(failure(
                                FailureType::ValidationFailure,
                                &format!("mx{t}.example.com"),
                            ))
                        } else {
                            SessionResult::Success
                        };
                        rec.record(event("example.com", day, sts_policy(), result));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The background thread writes without being asked.
        let mut waited = 0;
        loop {
            let loaded = load_day(dir.path(), day).unwrap();
            let total = loaded
                .get("example.com")
                .map_or(0, |a| a.total_successful() + a.total_failed());
            if total == 1000 {
                let agg = &loaded["example.com"];
                assert_eq!(agg.total_failed(), 200);
                assert_eq!(agg.policies[&sts_policy()].failure_details.len(), 4);
                break;
            }
            waited += 1;
            assert!(
                waited < 500,
                "background flush did not write everything: {total}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn journal_compaction_keeps_counts() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::open_with(
            dir.path(),
            RecorderOptions {
                flush_interval: None,
                compact_threshold: 2_000,
            },
        )
        .unwrap();
        let day = date!(2024 - 05 - 01);
        for i in 0..100 {
            rec.record(event(
                "example.com",
                day,
                sts_policy(),
                SessionResult::Success,
            ));
            if i % 3 == 0 {
                rec.record(event(
                    "example.org",
                    day,
                    PolicyDesc::no_policy_found(),
                    SessionResult::Failure(failure(
                        FailureType::StarttlsNotSupported,
                        "mx.example.org",
                    )),
                ));
            }
            rec.flush().unwrap();
        }
        let path = journal_path(dir.path(), day);
        assert!(fs::metadata(&path).unwrap().len() < 4_500);
        let loaded = load_day(dir.path(), day).unwrap();
        assert_eq!(loaded["example.com"].total_successful(), 100);
        assert_eq!(loaded["example.org"].total_failed(), 34);
        assert!(!dir.path().join("2024-05-01.jsonl.tmp").exists());
    }

    #[test]
    fn due_reports_mark_sent_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let rec = quiet(dir.path());
        let today = date!(2024 - 05 - 10);
        for (day, domain) in [
            (date!(2024 - 05 - 01), "old.example"),
            (date!(2024 - 05 - 07), "beyond-window.example"),
            (date!(2024 - 05 - 08), "a.example"),
            (date!(2024 - 05 - 09), "b.example"),
            (date!(2024 - 05 - 09), "a.example"),
            (today, "today.example"),
        ] {
            rec.record(event(
                domain,
                day,
                PolicyDesc::no_policy_found(),
                SessionResult::Success,
            ));
        }
        let due = rec.due_reports(today).unwrap();
        let keys: Vec<(Date, &str)> = due.iter().map(|(d, n, _)| (*d, n.as_str())).collect();
        assert_eq!(
            keys,
            [
                (date!(2024 - 05 - 08), "a.example"),
                (date!(2024 - 05 - 09), "a.example"),
                (date!(2024 - 05 - 09), "b.example"),
            ]
        );
        assert_eq!(due[0].2.total_successful(), 1);

        rec.mark_sent(date!(2024 - 05 - 09), "A.Example.").unwrap();
        mark_sent(dir.path(), date!(2024 - 05 - 08), "a.example").unwrap();
        assert!(mark_sent(dir.path(), today, "").is_err());
        let due = due_reports(dir.path(), today).unwrap();
        let keys: Vec<(Date, &str)> = due.iter().map(|(d, n, _)| (*d, n.as_str())).collect();
        assert_eq!(keys, [(date!(2024 - 05 - 09), "b.example")]);

        // A torn sent list (crash while marking) still ends its line before the next domain.
        let sent = sent_path(dir.path(), date!(2024 - 05 - 09));
        let mut f = OpenOptions::new().append(true).open(&sent).unwrap();
        f.write_all(b"half.exa").unwrap();
        drop(f);
        mark_sent(dir.path(), date!(2024 - 05 - 09), "b.example").unwrap();
        assert!(due_reports(dir.path(), today).unwrap().is_empty());
        // Counts recorded for a sent day later do not bring the report back.
        rec.record(event(
            "b.example",
            date!(2024 - 05 - 09),
            PolicyDesc::no_policy_found(),
            SessionResult::Success,
        ));
        assert!(rec.due_reports(today).unwrap().is_empty());
        // The next day, today's report is due.
        let tomorrow = date!(2024 - 05 - 11);
        let due = rec.due_reports(tomorrow).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].0, due[0].1.as_str()), (today, "today.example"));

        // Prune: older than 7 days before the 10th (the 1st) goes; unknown files stay.
        fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        fs::write(dir.path().join("2024-05-02.sent"), "x.example\n").unwrap();
        assert_eq!(rec.prune(today).unwrap(), 2);
        assert!(!journal_path(dir.path(), date!(2024 - 05 - 01)).exists());
        assert!(journal_path(dir.path(), date!(2024 - 05 - 07)).exists());
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(prune(dir.path(), date!(2024 - 06 - 01), 0).unwrap(), 6);
        assert!(
            due_reports(dir.path(), date!(2024 - 06 - 01))
                .unwrap()
                .is_empty()
        );
        assert!(
            due_reports(&dir.path().join("missing"), today)
                .unwrap()
                .is_empty()
        );
    }
}
