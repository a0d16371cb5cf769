//! Password checks on a few dedicated threads, with a queue that has a deadline.
//!
//! An argon2id check with the default parameters (m = 19 MiB, t = 2, p = 1: OWASP's choice)
//! takes about 19 MiB and tens of milliseconds of one core. Run for every AUTH at once, a
//! burst of guesses costs memory without bound; run on the shared blocking pool, each thread
//! keeps its allocator arena afterwards. Here at most `threads` checks run at once, always on
//! the same threads, so their memory is bounded by `threads` × the hash's `m`, and a check that
//! waits longer than `wait` for a thread is not made (the client is told to try again later).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{Semaphore, oneshot};

type Job = Box<dyn FnOnce() + Send>;

pub(super) struct Checker {
    /// One permit per thread: a job is only sent with a permit, so it never waits in the
    /// channel.
    permits: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
    wait: Duration,
}

impl Checker {
    /// Starts `threads` checking threads; they end when the checker is dropped.
    pub(super) fn new(threads: usize, wait: Duration) -> anyhow::Result<Checker> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hato-auth-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| anyhow::anyhow!("cannot start the password checking threads: {e}"))?;
        }
        Ok(Checker {
            permits: Arc::new(Semaphore::new(threads)),
            jobs: Mutex::new(tx),
            wait,
        })
    }

    /// Whether `password` matches the PHC string; None if no thread was free within the wait.
    pub(super) async fn verify(&self, password: &str, phc: &str) -> Option<bool> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let (tx, rx) = oneshot::channel();
        let (password, phc) = (password.to_owned(), phc.to_owned());
        let job: Job = Box::new(move || {
            let ok = verify_password(&password, &phc);
            drop(permit);
            let _ = tx.send(ok);
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .ok()?;
        rx.await.ok()
    }
}

thread_local! {
    /// The argon2 memory of this thread's checks, kept between them: allocated and freed per
    /// check, glibc kept about one more copy of it per check (measured: +19 MiB RSS each).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Whether `password` matches the PHC string (argon2 with the string's own parameters), in
/// this thread's reused memory.
pub(super) fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon2
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut out,
                &mut memory[..blocks],
            )
            .is_ok()
    });
    // Output's equality is constant-time.
    hashed && Output::new(&out).is_ok_and(|out| out == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads, many callers: every check is answered, and a caller that cannot get a
    /// thread within the wait gets None rather than queueing without end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn bounded_and_deadlined() {
        let phc = super::super::hash_password("right").unwrap();
        let checker = Arc::new(Checker::new(2, Duration::from_secs(30)).unwrap());
        let runs = (0..6).map(|i| {
            let (c, phc) = (checker.clone(), phc.clone());
            tokio::spawn(async move {
                let pw = if i % 2 == 0 { "right" } else { "wrong" };
                c.verify(pw, &phc).await
            })
        });
        let results: Vec<_> = futures_join(runs).await;
        assert_eq!(
            results,
            [
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(false)
            ]
        );

        // Both threads busy (held by permits taken here): the next check gives up in time.
        let impatient = Checker::new(2, Duration::from_millis(50)).unwrap();
        let _held = (
            impatient.permits.clone().acquire_owned().await.unwrap(),
            impatient.permits.clone().acquire_owned().await.unwrap(),
        );
        let started = std::time::Instant::now();
        assert_eq!(impatient.verify("right", &phc).await, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The check reads algorithm, version and parameters from the PHC string, and refuses what
    /// it cannot read.
    #[test]
    fn verifies_with_the_strings_own_parameters() {
        use argon2::password_hash::PasswordHasher;
        let params = Params::new(4096, 3, 1, None).unwrap();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i] {
            let phc = Argon2::new(algorithm, Version::V0x13, params.clone())
                .hash_password(b"s3cret")
                .unwrap()
                .to_string();
            assert!(phc.contains("m=4096,t=3,p=1"), "{phc}");
            assert!(verify_password("s3cret", &phc), "{phc}");
            assert!(!verify_password("s3cret ", &phc), "{phc}");
        }
        let phc = super::super::hash_password("pw").unwrap();
        for bad in [
            "",
            "not a phc string",
            &phc.replace("argon2id", "argon2x"),
            &phc.replace("m=19456", "m=1"),
            phc.rsplit_once('$').unwrap().0,
        ] {
            assert!(!verify_password("pw", bad), "{bad}");
        }
    }

    async fn futures_join<T: Send + 'static>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await.unwrap());
        }
        out
    }
}
