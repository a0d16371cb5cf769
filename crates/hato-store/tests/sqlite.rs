//! Tests of the SQLite backend: the conformance suite, migrations, group commit (batching and
//! per-request isolation), several stores on one file, durability of acknowledged deliveries
//! when the process is killed with SIGKILL mid-stream (the test re-executes this test binary in a
//! child mode selected by an environment variable), speed of 10,000-UID mailbox operations and
//! change notifications, outbound queue claims and shared state (leases, counters, TLS report
//! marks) by two stores on one file. (The schema upgrades are unit tests in
//! `src/sqlite/schema.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hato_store::sqlite::{SCHEMA_VERSION, SqliteStore};
use hato_store::{
    AccountId, Deliver, Delivery, DeliveryReceipt, Directory, Expunge, FlagOp, Mailbox,
    MailboxStatus, Mailstore, MessageEntry, Queue, SharedState, Store, StoreError, conformance,
};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

fn delivery(n: u64, local: Vec<AccountId>, remote: Vec<String>) -> Delivery {
    Delivery {
        sender: format!("sender{n}@remote.test"),
        data: message(n).into(),
        local,
        remote,
        received_at: 1_700_000_000 + n as i64,
    }
}

fn message(n: u64) -> Vec<u8> {
    let filler = "x".repeat(76);
    let mut m = format!("Subject: test {n}\r\nX-N: {n}\r\n\r\n");
    for _ in 0..40 {
        m.push_str(&filler);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

fn local_copy(n: u64) -> Vec<u8> {
    let mut v = format!("Return-Path: <sender{n}@remote.test>\r\n").into_bytes();
    v.extend_from_slice(&message(n));
    v
}

/// The `X-N` marker of a stored message.
fn marker(blob: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(blob).ok()?;
    let start = text.find("\r\nX-N: ")? + 7;
    let end = start + text[start..].find("\r\n")?;
    text[start..end].parse().ok()
}

/// A temporary directory (removed when dropped) and the database path in it.
fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hato.db");
    (dir, path)
}

/// Two stores on one new file: two processes' worth of connections (a server and the CLI, or
/// two nodes).
fn two_stores() -> (tempfile::TempDir, SqliteStore, SqliteStore) {
    let (dir, path) = temp_db();
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    (dir, a, b)
}

/// `a` for even `n`, `b` for odd: spreads work over two stores on one file.
fn alternate(n: u64, a: &SqliteStore, b: &SqliteStore) -> SqliteStore {
    if n.is_multiple_of(2) {
        a.clone()
    } else {
        b.clone()
    }
}

async fn account(store: &SqliteStore, address: &str) -> AccountId {
    store.create_account(address, HASH).await.unwrap().id
}

async fn inbox(store: &dyn Store, account: AccountId) -> Mailbox {
    store
        .mailboxes(account)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == "INBOX")
        .unwrap()
}

async fn inbox_id(store: &dyn Store, account: AccountId) -> i64 {
    inbox(store, account).await.id
}

async fn inbox_entries(store: &dyn Store, account: AccountId) -> Vec<MessageEntry> {
    store
        .messages(inbox_id(store, account).await)
        .await
        .unwrap()
}

fn uids(entries: &[MessageEntry]) -> Vec<u32> {
    entries.iter().map(|e| e.uid).collect()
}

async fn status(store: &dyn Store, mailbox: i64) -> MailboxStatus {
    store.mailbox_status(mailbox).await.unwrap().unwrap()
}

/// Spawns every delivery at once (each on its store) and returns the results in order.
async fn deliver_all(
    jobs: impl IntoIterator<Item = (SqliteStore, Delivery)>,
) -> Vec<hato_store::Result<DeliveryReceipt>> {
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|(store, d)| tokio::spawn(async move { store.deliver(d).await }))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/hato.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    store.create_account("x@example.com", HASH).await.unwrap();
    assert!(path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data() {
    let (_dir, path) = temp_db();
    let (account, receipt) = {
        let store = SqliteStore::open(&path).unwrap();
        let account = store
            .create_account("keep@example.com", HASH)
            .await
            .unwrap();
        store
            .add_alias("alias@example.com", "keep@example.com")
            .await
            .unwrap();
        let receipt = store
            .deliver(delivery(1, vec![account.id], vec!["r@remote.test".into()]))
            .await
            .unwrap();
        (account, receipt)
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.commit_count(), 0);
    assert_eq!(
        store.account("keep@example.com").await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(
        store.resolve("alias@example.com").await.unwrap(),
        Some(account.id)
    );
    let entries = inbox_entries(&store, account.id).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(Some(entries[0].blob), receipt.local_blob);
    assert_eq!(
        store.blob(entries[0].blob).await.unwrap(),
        Some(local_copy(1))
    );
    let queue = store.queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(store.blob(queue[0].blob).await.unwrap(), Some(message(1)));
    // UID assignment continues where it was.
    store
        .deliver(delivery(2, vec![account.id], vec![]))
        .await
        .unwrap();
    assert_eq!(uids(&inbox_entries(&store, account.id).await), [1, 2]);
}

#[test]
fn future_schema_is_refused() {
    let (_dir, path) = temp_db();
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("want SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn garbage_file_is_an_error_not_a_panic() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Backend(message)) => assert!(!message.is_empty()),
        other => panic!("want Backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_all_land_with_unique_uids() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let a = account(&store, "a@example.com").await;
    let b = account(&store, "b@example.com").await;
    let commits_before = store.commit_count();

    let results = deliver_all((0..200u64).map(|n| {
        let remote = vec![format!("r{n}@remote.test")];
        (store.clone(), delivery(n, vec![a, b], remote))
    }))
    .await;
    for (n, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|e| panic!("delivery {n} failed: {e}"));
    }
    let commits = store.commit_count() - commits_before;
    eprintln!("200 concurrent deliveries: {commits} commits");
    assert!(
        commits < 200,
        "no group commit: {commits} commits for 200 deliveries"
    );

    for account in [a, b] {
        let entries = inbox_entries(&store, account).await;
        assert_eq!(uids(&entries), (1..=200).collect::<Vec<_>>());
        let mut modseqs: Vec<u64> = entries.iter().map(|e| e.modseq).collect();
        modseqs.dedup();
        assert_eq!(
            modseqs.len(),
            200,
            "modseqs must be distinct and increasing"
        );
        assert!(entries.windows(2).all(|w| w[0].modseq < w[1].modseq));
        let mut seen = BTreeSet::new();
        for e in &entries {
            let data = store.blob(e.blob).await.unwrap().unwrap();
            let n = marker(&data).unwrap();
            assert_eq!(data, local_copy(n));
            assert!(seen.insert(n));
        }
    }
    assert_eq!(store.queue().await.unwrap().len(), 200);
}

/// Holds the database's write lock from a separate connection so that requests pile up in the
/// writer's channel; released after `hold`.
fn hold_write_lock(path: &Path, hold: Duration) -> std::thread::JoinHandle<()> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_batches_waiting_requests() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let a = account(&store, "a@example.com").await;
    let before = store.commit_count();

    let lock = hold_write_lock(&path, Duration::from_millis(500));
    let results =
        deliver_all((0..200u64).map(|n| (store.clone(), delivery(n, vec![a], vec![])))).await;
    for result in results {
        result.unwrap();
    }
    lock.join().unwrap();
    let commits = store.commit_count() - before;
    // The first request may go alone; everything that queued behind the lock shares one commit
    // (two if the queue exceeded MAX_BATCH or a request arrived late).
    assert!(commits <= 4, "{commits} commits for 200 deliveries");
    assert_eq!(inbox_entries(&store, a).await.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_request_rolls_back_only_itself() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let a = account(&store, "a@example.com").await;
    let before = store.commit_count();

    let lock = hold_write_lock(&path, Duration::from_millis(500));
    let mut tasks = Vec::new();
    for n in 0..41u64 {
        let store = Arc::clone(&store);
        // Delivery 20 names a missing account after a valid one and has a remote recipient.
        let local = if n == 20 { vec![a, 999_999] } else { vec![a] };
        let remote = vec![format!("r{n}@remote.test")];
        tasks.push(tokio::spawn(async move {
            (n, store.deliver(delivery(n, local, remote)).await)
        }));
        tokio::task::yield_now().await;
    }
    for task in tasks {
        let (n, result) = task.await.unwrap();
        if n == 20 {
            assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        } else {
            result.unwrap_or_else(|e| panic!("delivery {n} failed: {e}"));
        }
    }
    lock.join().unwrap();
    let commits = store.commit_count() - before;
    assert!(commits <= 3, "the batch did not share a commit: {commits}");

    let entries = inbox_entries(&*store, a).await;
    assert_eq!(entries.len(), 40);
    assert_eq!(uids(&entries), (1..=40).collect::<Vec<_>>());
    let mut markers = BTreeSet::new();
    for e in &entries {
        markers.insert(marker(&store.blob(e.blob).await.unwrap().unwrap()).unwrap());
    }
    assert!(!markers.contains(&20));
    let queue = store.queue().await.unwrap();
    assert_eq!(queue.len(), 40);
    assert!(!queue.iter().any(|q| q.recipient == "r20@remote.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_uid_space() {
    let (_dir, first, second) = two_stores();
    let a = account(&first, "a@example.com").await;
    assert_eq!(second.resolve("A@example.com").await.unwrap(), Some(a));

    let results = deliver_all(
        (0..100u64).map(|n| (alternate(n, &first, &second), delivery(n, vec![a], vec![]))),
    )
    .await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(
        uids(&inbox_entries(&first, a).await),
        (1..=100).collect::<Vec<_>>()
    );
}

/// Records an `ACK n local_blob queue_blob` line (libtest may prefix the first one).
fn parse_ack(line: &str, acked: &mut BTreeMap<u64, (i64, i64)>) {
    let Some(start) = line.find("ACK ") else {
        return;
    };
    let fields: Vec<i64> = line[start + 4..]
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "bad line {line:?}");
    acked.insert(fields[0] as u64, (fields[1], fields[2]));
}

/// Database path; its presence selects the child mode of [`kill9_child`].
const CHILD_ENV: &str = "HATO_STORE_KILL9_CHILD_DB";
/// First delivery number of the child (unique per round).
const CHILD_BASE_ENV: &str = "HATO_STORE_KILL9_CHILD_BASE";

/// Child mode of [`acknowledged_deliveries_survive_kill_9`]: delivers from 16 tasks at once and
/// prints `ACK n local_blob queue_blob` for every acknowledged delivery. Does nothing in a
/// normal test run.
#[test]
fn kill9_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let base: u64 = std::env::var(CHILD_BASE_ENV).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).unwrap());
        let a = store.resolve("a@kill.test").await.unwrap().unwrap();
        let b = store.resolve("b@kill.test").await.unwrap().unwrap();
        let next = Arc::new(AtomicU64::new(base));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (store, next) = (Arc::clone(&store), Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let remote = vec![format!("r{n}@remote.test")];
                    let receipt = match store.deliver(delivery(n, vec![a, b], remote)).await {
                        Ok(receipt) => receipt,
                        Err(e) => {
                            eprintln!("child: delivery {n} failed: {e}");
                            std::process::exit(3);
                        }
                    };
                    let line = format!(
                        "ACK {n} {} {}\n",
                        receipt.local_blob.unwrap(),
                        receipt.queue_blob.unwrap()
                    );
                    let mut out = std::io::stdout().lock();
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        std::process::exit(4);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// Runs one child from delivery number `base`, SIGKILLs it mid-stream after a varying number of
/// acknowledgements while `store` (this process) writes too, and returns what it acknowledged
/// plus the accounts this process created meanwhile.
fn run_and_kill_child(
    path: &Path,
    base: u64,
    store: &SqliteStore,
    runtime: &tokio::runtime::Runtime,
) -> (BTreeMap<u64, (i64, i64)>, Vec<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env(CHILD_BASE_ENV, base.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Drain the child's stdout at once on its own thread: a full pipe would stall the child in
    // `write` with nothing in flight, and the kill would hit an idle process.
    let stdout = child.stdout.take().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let reader = {
        let count = Arc::clone(&count);
        std::thread::spawn(move || {
            let mut acked = BTreeMap::new();
            for line in BufReader::new(stdout).lines() {
                parse_ack(&line.unwrap(), &mut acked);
                count.store(acked.len() as u64, Ordering::Relaxed);
            }
            acked
        })
    };

    let kill_after = 200 + (u64::from(std::process::id()) * 7 + base) % 300;
    let mut cli_accounts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let acks = count.load(Ordering::Relaxed);
        if acks >= kill_after {
            break;
        }
        assert!(Instant::now() < deadline, "child too slow: {acks} acks");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child ended early: {status:?}");
        }
        // Write early in the round only: contention sends the child's writer into SQLite's
        // busy back-off, and a kill during that sleep would find nothing in flight.
        if acks >= 50 * (cli_accounts.len() as u64 + 1) && cli_accounts.len() < 2 {
            let address = format!("cli{base}-{}@kill.test", cli_accounts.len());
            runtime
                .block_on(store.create_account(&address, HASH))
                .unwrap();
            cli_accounts.push(address);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "child must die mid-stream: {status:?}"
        );
    }
    // Everything the child wrote before dying was acknowledged.
    (reader.join().unwrap(), cli_accounts)
}

/// Checks that every acknowledged delivery is complete in a freshly opened store and that every
/// visible delivery is complete (in both INBOXes and the queue, with intact blobs) or absent.
async fn verify_after_kill(
    store: &SqliteStore,
    accounts: [AccountId; 2],
    acked: &BTreeMap<u64, (i64, i64)>,
    cli_accounts: &[String],
) {
    for address in cli_accounts {
        assert!(
            store.account(address).await.unwrap().is_some(),
            "{address} lost"
        );
    }
    let mut per_account = Vec::new();
    for account in accounts {
        let mailbox = inbox(store, account).await;
        let entries = store.messages(mailbox.id).await.unwrap();
        let mut found: BTreeMap<u64, i64> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.uid as usize, i + 1, "UIDs must be dense 1..");
            let data = store
                .blob(e.blob)
                .await
                .unwrap()
                .expect("entry without blob");
            let n = marker(&data).expect("unreadable blob");
            assert_eq!(data, local_copy(n), "blob of delivery {n} is incomplete");
            assert_eq!(e.size, data.len() as u64);
            assert!(found.insert(n, e.blob).is_none(), "delivery {n} twice");
        }
        assert_eq!(mailbox.uidnext as usize, entries.len() + 1);
        per_account.push(found);
    }
    let mut queued: BTreeMap<u64, i64> = BTreeMap::new();
    for q in store.queue().await.unwrap() {
        let n: u64 = q
            .recipient
            .trim_start_matches('r')
            .trim_end_matches("@remote.test")
            .parse()
            .unwrap();
        let data = store
            .blob(q.blob)
            .await
            .unwrap()
            .expect("queue entry without blob");
        assert_eq!(
            data,
            message(n),
            "queued blob of delivery {n} is incomplete"
        );
        assert!(
            queued.insert(n, q.blob).is_none(),
            "delivery {n} queued twice"
        );
    }
    // Nothing half-visible: each delivery is in both INBOXes and the queue, or nowhere.
    let keys = |m: &BTreeMap<u64, i64>| m.keys().copied().collect::<Vec<_>>();
    assert_eq!(keys(&per_account[0]), keys(&per_account[1]));
    assert_eq!(keys(&per_account[0]), keys(&queued));
    // Every acknowledged delivery is there, with the blobs its receipt named.
    for (n, (local_blob, queue_blob)) in acked {
        assert_eq!(
            per_account[0].get(n),
            Some(local_blob),
            "acknowledged delivery {n} lost"
        );
        assert_eq!(
            per_account[1].get(n),
            Some(local_blob),
            "acknowledged delivery {n} lost"
        );
        assert_eq!(
            queued.get(n),
            Some(queue_blob),
            "acknowledged delivery {n} lost"
        );
    }
    eprintln!(
        "kill -9: {} acknowledged, {} committed deliveries found",
        acked.len(),
        per_account[0].len()
    );
}

#[test]
fn acknowledged_deliveries_survive_kill_9() {
    let (_dir, path) = temp_db();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = SqliteStore::open(&path).unwrap();
    let accounts = runtime.block_on(async {
        [
            account(&setup, "a@kill.test").await,
            account(&setup, "b@kill.test").await,
        ]
    });
    drop(setup);

    let mut acked = BTreeMap::new();
    let mut cli_accounts = Vec::new();
    // Several rounds: each kill lands at a different point of the commit cycle, and each round
    // starts from the database the previous kill left behind.
    for round in 0..5u64 {
        // This process keeps its own store open and writes while the child delivers (like the
        // CLI next to the server).
        let store = SqliteStore::open(&path).unwrap();
        let (round_acked, round_accounts) =
            run_and_kill_child(&path, round * 1_000_000, &store, &runtime);
        drop(store);
        acked.extend(round_acked);
        cli_accounts.extend(round_accounts);

        let store = SqliteStore::open(&path).unwrap();
        runtime.block_on(verify_after_kill(&store, accounts, &acked, &cli_accounts));
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

async fn mailbox_with(store: &SqliteStore, address: &str, count: u32) -> (AccountId, i64) {
    let account = account(store, address).await;
    let mailbox = store.create_mailbox(account, "Big", None).await.unwrap().id;
    store
        .append(mailbox, message(0).into(), &[], 1_700_000_000)
        .await
        .unwrap();
    let mut n = 1;
    while n < count {
        let uids: Vec<u32> = (1..=n.min(count - n)).collect();
        n += store
            .copy(mailbox, &uids, mailbox)
            .await
            .unwrap()
            .uids
            .len() as u32;
    }
    (account, mailbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_mailbox_operations_are_fast() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let (_, mailbox) = mailbox_with(&store, "bulk@example.com", 20_000).await;
    let uids: Vec<u32> = (1..=10_000).rev().collect();
    let flags = vec!["\\Seen".to_owned(), "$Label1".to_owned()];

    let started = Instant::now();
    let r = store
        .set_flags(mailbox, &uids, FlagOp::Add, &flags, None)
        .await
        .unwrap();
    let set_flags = started.elapsed();
    assert_eq!(r.updated.len(), 10_000);
    let started = Instant::now();
    let r = store
        .set_flags(mailbox, &uids, FlagOp::Add, &flags, Some(1))
        .await
        .unwrap();
    let conditional = started.elapsed();
    assert_eq!(r.modified.len(), 10_000);

    let before = status(&store, mailbox).await;
    let started = Instant::now();
    let status = status(&store, mailbox).await;
    let status_time = started.elapsed();
    assert_eq!((status.messages, status.unseen), (20_000, 10_000));
    let started = Instant::now();
    store
        .set_flags(mailbox, &[20_000], FlagOp::Add, &flags, None)
        .await
        .unwrap();
    let changes = store
        .changes_since(mailbox, before.highest_modseq)
        .await
        .unwrap()
        .unwrap();
    let poll = started.elapsed();
    assert_eq!(changes.changed.len(), 1);
    let started = Instant::now();
    let gone = store.expunge(mailbox, Expunge::Uids(&uids)).await.unwrap();
    let expunge = started.elapsed();
    assert_eq!(gone.len(), 10_000);
    eprintln!(
        "10,000 UIDs: set_flags {set_flags:?}, UNCHANGEDSINCE {conditional:?}, \
         expunge {expunge:?}; 20,000 messages: status {status_time:?}, store+poll {poll:?}"
    );
    // Generous bounds for a loaded debug build on 2 cores; typical values are far lower.
    assert!(
        set_flags < Duration::from_secs(3),
        "set_flags took {set_flags:?}"
    );
    assert!(expunge < Duration::from_secs(3), "expunge took {expunge:?}");
    assert!(poll < Duration::from_secs(1), "poll took {poll:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_commit_announces_every_changed_mailbox() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let mut accounts = Vec::new();
    for n in 0..20 {
        let account = account(&store, &format!("n{n}@example.com")).await;
        accounts.push((account, inbox_id(&store, account).await));
    }
    let mut rx = store.subscribe_changes();
    let before = store.commit_count();
    let lock = hold_write_lock(&path, Duration::from_millis(300));
    let mut jobs = Vec::new();
    for (n, &(account, _)) in accounts.iter().enumerate() {
        // Two deliveries per account in the same batch: one event with the final MODSEQ.
        for k in 0..2u64 {
            jobs.push(delivery(n as u64 * 10 + k, vec![account], vec![]));
        }
        // One failing request in the batch announces nothing of its own.
        if n == 7 {
            jobs.push(delivery(999, vec![account, 123_456_789], vec![]));
        }
    }
    let results = deliver_all(jobs.into_iter().map(|d| (store.clone(), d))).await;
    let failures = results.iter().filter(|r| r.is_err()).count();
    lock.join().unwrap();
    assert_eq!(failures, 1);
    assert!(store.commit_count() - before <= 3);

    let mut latest: BTreeMap<i64, u64> = BTreeMap::new();
    while let Ok(event) = rx.try_recv() {
        assert!(!event.deleted);
        let seen = latest.entry(event.mailbox).or_default();
        assert!(
            event.highest_modseq > *seen,
            "events per mailbox are increasing"
        );
        *seen = event.highest_modseq;
    }
    for &(account, inbox) in &accounts {
        let status = status(&store, inbox).await;
        assert_eq!(status.messages, 2, "account {account}");
        assert_eq!(
            latest.get(&inbox),
            Some(&status.highest_modseq),
            "last event of account {account} carries its HIGHESTMODSEQ"
        );
    }
    assert_eq!(latest.len(), accounts.len());
}

/// Writes by another process (here: another store on the same file, as the CLI would be) are not
/// announced, but polling mailbox_status / changes_since sees them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_process_changes_are_seen_by_polling() {
    let (_dir, server, cli) = two_stores();
    let account = account(&server, "p@example.com").await;
    let inbox = inbox_id(&server, account).await;
    let known = status(&server, inbox).await;

    let mut server_rx = server.subscribe_changes();
    cli.deliver(delivery(1, vec![account], vec![]))
        .await
        .unwrap();
    let polled = status(&server, inbox).await;
    assert!(polled.highest_modseq > known.highest_modseq);
    assert_eq!(polled.messages, 1);
    let changes = server
        .changes_since(inbox, known.highest_modseq)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changes.changed.len(), 1);
    assert!(
        server_rx.try_recv().is_err(),
        "documented: cross-process writes are not announced"
    );
}

/// Two stores (two processes' worth of connections) on one file claim the due queue at the
/// same time: every entry is claimed exactly once. `retry_now(All)` makes every waiting entry due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_claim_the_queue_once() {
    let (_dir, a, b) = two_stores();
    for n in 0..50u64 {
        let remote = (0..4).map(|r| format!("r{r}@d{}.example", n % 5)).collect();
        a.deliver(delivery(n, vec![], remote)).await.unwrap();
    }
    let now = 1_800_000_000;
    let claims: Vec<_> = (0..10)
        .map(|i| {
            let store = alternate(i, &a, &b);
            tokio::spawn(async move { store.due_queue(now, 25, 600).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for claim in claims {
        for group in claim.await.unwrap() {
            assert!(group.entries.iter().all(|e| e.domain() == group.domain));
            ids.extend(group.entries.iter().map(|e| e.id));
        }
    }
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "an entry was claimed twice");
    assert_eq!(total, 200);

    // Each entry fails once and waits; retry_now(All) makes them due again (leases released).
    for entry in a.queue().await.unwrap() {
        let attempt = hato_store::QueueAttempt {
            at: now,
            error: "421 try later".into(),
            next_attempt: now + 3600,
            tls: None,
        };
        assert!(
            b.record_attempt(entry.id, entry.claim, attempt)
                .await
                .unwrap()
        );
    }
    assert!(a.due_queue(now + 1, 1000, 600).await.unwrap().is_empty());
    assert_eq!(
        b.retry_now(hato_store::QueueSelect::All, now + 1)
            .await
            .unwrap(),
        200
    );
    let again: usize = a
        .due_queue(now + 1, 1000, 600)
        .await
        .unwrap()
        .iter()
        .map(|g| g.entries.len())
        .sum();
    assert_eq!(again, 200);
}

/// Writes of another process (a second store on the same file stands in for the CLI) reach
/// `subscribe_changes` receivers within about a second, deletions included; this store's own
/// writes are announced once, not a second time by the watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_writes_are_announced() {
    use tokio::sync::broadcast::error::TryRecvError;
    let (_dir, server, cli) = two_stores();
    let a = account(&server, "w@example.com").await;
    let inbox = inbox_id(&server, a).await;
    let mut rx = server.subscribe_changes();
    // The account was made after the store opened: the watcher learns its mailboxes at its
    // first look (at once on the first subscription); changes from then on are announced.
    tokio::time::sleep(Duration::from_millis(500)).await;

    cli.deliver(delivery(1, vec![a], vec![])).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("announced within the watch interval")
        .unwrap();
    assert_eq!(
        (event.mailbox, event.account, event.deleted),
        (inbox, a, false)
    );
    let status = status(&server, inbox).await;
    assert_eq!(event.highest_modseq, status.highest_modseq);

    // Our own write: one event, and no echo from the watcher afterwards.
    server.deliver(delivery(2, vec![a], vec![])).await.unwrap();
    let own = rx.recv().await.unwrap();
    assert_eq!(own.mailbox, inbox);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)), "no echo");

    // A mailbox deleted elsewhere.
    let other = cli.create_mailbox(a, "Elsewhere", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cli.delete_mailbox(a, "Elsewhere").await.unwrap();
    let deleted = loop {
        let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("deletion announced")
            .unwrap();
        if e.deleted {
            break e;
        }
    };
    assert_eq!((deleted.mailbox, deleted.account), (other.id, a));
}

/// The vanished table keeps the newest 10,000 expunged UIDs per mailbox; asked for changes
/// from before what it forgot, changes_since reports every UID below UIDNEXT that is not in the
/// mailbox (RFC 7162 allows more than was expunged), and recent history stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_history_is_bounded() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let (_, mailbox) = mailbox_with(&store, "v@example.com", 10_100).await;
    // Expunged before the client's MODSEQ: exact history would not mention it again.
    store
        .expunge(mailbox, Expunge::Uids(&[10_080]))
        .await
        .unwrap();
    let before = status(&store, mailbox).await.highest_modseq;
    // 10,050 UIDs expunged in one go (one MODSEQ): over the bound, so that MODSEQ is forgotten.
    let gone: Vec<u32> = (1..=10_050).collect();
    assert_eq!(
        store
            .expunge(mailbox, Expunge::Uids(&gone))
            .await
            .unwrap()
            .len(),
        10_050
    );
    let after_big = status(&store, mailbox).await.highest_modseq;
    // Then two small expunges, remembered exactly.
    store
        .expunge(mailbox, Expunge::Uids(&[10_060]))
        .await
        .unwrap();
    let mid = status(&store, mailbox).await.highest_modseq;
    store
        .expunge(mailbox, Expunge::Uids(&[10_070]))
        .await
        .unwrap();

    let from_before = store.changes_since(mailbox, before).await.unwrap().unwrap();
    let mut want: Vec<u32> = (1..=10_050).collect();
    want.extend([10_060, 10_070, 10_080]);
    assert_eq!(
        from_before.vanished, want,
        "history was forgotten: everything missing below UIDNEXT"
    );
    let from_big = store
        .changes_since(mailbox, after_big)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from_big.vanished, [10_060, 10_070], "exact after the floor");
    let from_mid = store.changes_since(mailbox, mid).await.unwrap().unwrap();
    assert_eq!(from_mid.vanished, [10_070]);
}

/// Two stores on one file stand in for two nodes: of their concurrent acquisitions of one lease
/// exactly one wins, bumps of one counter from both are all counted, and a TLS report is marked
/// sent by one of them only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_share_leases_counters_and_report_marks() {
    let (_dir, a, b) = two_stores();
    let now = 1_800_000_000;
    for round in 0..5 {
        let name = format!("pop3:{round}");
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let store = alternate(n, &a, &b);
                let name = name.clone();
                tokio::spawn(async move {
                    store
                        .lease_acquire(&name, &format!("node{}-{n}", n % 2), 60, now)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1, "round {round}");
    }

    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = alternate(n, &a, &b);
            tokio::spawn(async move { store.counter_bump("ip:192.0.2.9", 900, now).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(a.counter("ip:192.0.2.9", now).await.unwrap(), 40);
    assert_eq!(b.counter("ip:192.0.2.9", now).await.unwrap(), 40);

    let (ma, mb) = tokio::join!(
        a.tls_report_mark_sent(20_000, "example.com", now),
        b.tls_report_mark_sent(20_000, "example.com", now)
    );
    assert!(ma.unwrap() ^ mb.unwrap(), "exactly one marks the report");
}

/// The store's size in pages and its auto_vacuum mode, read by another connection.
fn pages_and_mode(path: &Path) -> (i64, i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    let pages = c
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    let mode = c
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    (pages, mode)
}

/// Deleting mail gives its space back to the file system: a new store uses incremental
/// vacuum and its writer hands free pages back (when idle, every few seconds); a store made
/// without it is converted when it is opened.
#[tokio::test]
async fn deleted_space_goes_back_to_the_file_system() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    let a = account(&store, "big@example.test").await;
    let inbox = inbox_id(&store, a).await;
    let line = format!("{}\r\n", "y".repeat(998));
    let big = format!("Subject: big\r\n\r\n{}", line.repeat(8_000)).into_bytes();
    store.append(inbox, big.into(), &[], 0).await.unwrap();
    let (full, mode) = pages_and_mode(&path);
    assert_eq!(mode, 2, "incremental auto_vacuum");
    assert!(full > 1_900, "{full} pages");
    store.delete_account("big@example.test").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (now, _) = pages_and_mode(&path);
        if now < full / 4 {
            break;
        }
        assert!(Instant::now() < deadline, "still {now} of {full} pages");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(store);

    // A store made before incremental vacuum is converted when opened.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("PRAGMA auto_vacuum = 0; VACUUM;").unwrap();
    drop(c);
    assert_eq!(pages_and_mode(&path).1, 0);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(pages_and_mode(&path).1, 2);
    drop(store);
}
