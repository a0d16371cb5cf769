//! Who may log in: argon2id password checks (RFC 4954 AUTH, POP3, IMAP LOGIN and AUTHENTICATE)
//! on a few dedicated threads ([`checker`]), brute-force throttling counted in the store and
//! shared by every protocol and node ([`throttle`]), a delay after each failure, and a
//! per-process cache of verified passwords ([`cache`]).
//!
//! Must never: say whether an account exists (unknown users cost the same argon2 check), keep a
//! password in clear, log one, or run more argon2 checks at once than it has threads for.

mod cache;
mod checker;
mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use hato_store::Store;
use hato_wire::AuthOutcome;
use hato_wire::date::unix_now;
use hato_wire::domain::normalize_address;
use tracing::info;

use crate::config::AuthConfig;
use cache::VerifiedCache;
use checker::Checker;
use throttle::{Keys, Refused, Throttle};

/// Hashes a password as an argon2id PHC string (the argon2 crate's defaults: m = 19 MiB,
/// t = 2, p = 1, OWASP's recommendation; see [`checker`] for what a check costs).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Verifies credentials for every protocol; built once by the server.
pub struct Authenticator {
    store: Arc<dyn Store>,
    verified: Mutex<VerifiedCache>,
    /// Checks under way, by credentials: a login with the same credentials waits for that check
    /// (then finds the password verified) instead of making its own and counting as a guess.
    flights: Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
    auth: AuthConfig,
    checker: Checker,
    /// A valid hash to verify against for unknown users, so timing does not reveal which exist.
    dummy_hash: String,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, auth: AuthConfig) -> anyhow::Result<Authenticator> {
        let threads = match auth.max_concurrent_checks {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Authenticator {
            store,
            checker: Checker::new(threads, Duration::from_millis(auth.check_wait_ms))?,
            auth,
            verified: Mutex::new(VerifiedCache::new()?),
            flights: Mutex::new(HashMap::new()),
            dummy_hash: hash_password("hato-dummy-password")?,
        })
    }

    /// The throttle; None (no throttling) for a window of 0, where a count would expire at once.
    fn throttle(&self) -> Option<Throttle<'_>> {
        let window = match i64::try_from(self.auth.failure_window_secs) {
            Ok(0) => return None,
            Ok(secs) => secs,
            Err(_) => i64::MAX / 2,
        };
        Some(Throttle {
            store: self.store.as_ref(),
            config: &self.auth,
            window,
        })
    }

    /// A POP3 or IMAP login: [`Authenticator::authenticate`], logged with the session's TLS.
    pub async fn login(
        &self,
        ip: IpAddr,
        username: &str,
        password: &str,
        tls: Option<&hato_wire::TlsInfo>,
    ) -> (AuthOutcome, Option<hato_store::Account>) {
        let (verdict, account) = self.authenticate(ip, None, username, password).await;
        match (verdict, account) {
            (AuthOutcome::Ok, Some(a)) => {
                info!(
                    user = %a.address,
                    tls_version = tls.map(|t| t.version.as_str()).unwrap_or("-"),
                    tls_cipher = tls.map(|t| t.cipher.as_str()).unwrap_or("-"),
                    "login ok"
                );
                (AuthOutcome::Ok, Some(a))
            }
            (AuthOutcome::Throttled, _) => {
                tracing::warn!(user = %username, "login refused: too many failures");
                (AuthOutcome::Throttled, None)
            }
            _ => {
                tracing::warn!(user = %username, "login failed");
                (AuthOutcome::Failed, None)
            }
        }
    }

    /// Waits until no check of these credentials is under way, and holds that until dropped.
    async fn flight(&self, user: &str, password: &str) -> Flight<'_> {
        let id = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .credentials_id(user, password);
        let lock = self
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default()
            .clone();
        Flight {
            guard: Some(lock.lock_owned().await),
            flights: &self.flights,
            id,
        }
    }

    /// Checks credentials. Returns the verdict and the account on success. `Throttled` means
    /// no check was made: a limit is reached ([`throttle`]) or no checking thread was free in
    /// time ([`checker`]); the sessions answer it as a temporary failure and close.
    pub async fn authenticate(
        &self,
        ip: IpAddr,
        authzid: Option<&str>,
        username: &str,
        password: &str,
    ) -> (AuthOutcome, Option<hato_store::Account>) {
        let user = normalize_address(username).unwrap_or_else(|| username.to_lowercase());
        let keys = Keys::new(ip, &user);
        let now = unix_now();
        let throttle = self.throttle();
        let admitted = match &throttle {
            Some(t) => match t.admit(&keys, now).await {
                Ok(a) => Some(a),
                Err(why) => return refused(why),
            },
            None => None,
        };
        let account = self.store.account(&user).await.ok().flatten();
        // An authorization identity other than the user itself is not supported.
        let authz_ok = authzid
            .filter(|z| !z.is_empty())
            .is_none_or(|z| normalize_address(z).as_deref() == Some(user.as_str()));
        let hash = account
            .as_ref()
            .map(|a| a.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let hit = || {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .hit(&user, password, &hash)
        };
        let mut cached = account.is_some() && hit();
        // Logins with the same credentials at once (a client opening many connections) make
        // one check: the others wait for it and find the password verified.
        let _flight = if cached || account.is_none() {
            None
        } else {
            let flight = self.flight(&user, password).await;
            cached = hit();
            Some(flight)
        };
        let mut reservation = None;
        if !cached && let (Some(t), Some(a)) = (&throttle, admitted) {
            match t.reserve(&keys, a, now).await {
                Ok(r) => reservation = Some(r),
                Err(why) => return refused(why),
            }
        }
        let ok = if cached {
            true
        } else {
            match self.checker.verify(password, &hash).await {
                Some(ok) => {
                    if ok && account.is_some() {
                        self.verified
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(&user, password, &hash);
                    }
                    ok
                }
                None => {
                    // No thread free in time: no check was made, so nothing counts.
                    if let (Some(t), Some(r)) = (&throttle, reservation) {
                        t.release(&keys, r, now).await;
                    }
                    crate::metrics::auth_attempt("busy");
                    tracing::warn!(
                        "authentication refused: every password checking thread is busy (auth.max_concurrent_checks)"
                    );
                    return (AuthOutcome::Throttled, None);
                }
            }
        };
        if ok
            && authz_ok
            && let Some(account) = account
        {
            if let (Some(t), Some(r)) = (&throttle, reservation) {
                t.release(&keys, r, now).await;
                t.remember(&keys, now).await;
            }
            crate::metrics::auth_attempt("ok");
            return (AuthOutcome::Ok, Some(account));
        }
        crate::metrics::auth_attempt("failed");
        tokio::time::sleep(Duration::from_millis(self.auth.failure_delay_ms)).await;
        (AuthOutcome::Failed, None)
    }
}

/// One check of a set of credentials under way ([`Authenticator::flight`]); the last one out
/// removes the entry.
struct Flight<'a> {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    flights: &'a Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
    id: Vec<u8>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.guard = None;
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            flights.remove(&self.id);
        }
    }
}

/// A refusal without a check (see [`throttle`]).
fn refused(why: Refused) -> (AuthOutcome, Option<hato_store::Account>) {
    crate::metrics::auth_attempt("throttled");
    let by = match why {
        Refused::Address => "address",
        Refused::Account => "account",
    };
    tracing::debug!(by, "authentication refused without a check");
    (AuthOutcome::Throttled, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers on one store (two nodes): failures counted by one throttle the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_shared_through_the_store() {
        let (_dir, store) = bobs_store().await;
        let auth = AuthConfig {
            failure_delay_ms: 0,
            max_failures_per_ip: 3,
            max_failures_per_account: 100,
            failure_window_secs: 900,
            ..AuthConfig::default()
        };
        let node = || Authenticator::new(store.clone(), auth.clone()).unwrap();
        let (a, b) = (node(), node());
        let metrics = crate::metrics::Metrics::install();
        let count = |result: &str| {
            let series = format!("hato_auth_attempts_total{{result=\"{result}\"}}");
            metrics
                .render()
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let before = [count("ok"), count("failed"), count("throttled")];
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            let (verdict, _) = a.authenticate(ip, None, "bob@example.com", "wrong").await;
            assert_eq!(verdict, AuthOutcome::Failed);
        }
        let (verdict, account) = b.authenticate(ip, None, "bob@example.com", "right").await;
        assert_eq!((verdict, account), (AuthOutcome::Throttled, None));
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        let (verdict, _) = b
            .authenticate(other, None, "bob@example.com", "right")
            .await;
        assert_eq!(verdict, AuthOutcome::Ok, "another address is not throttled");
        // Counted by result (other tests in this binary may add to the same counters).
        let after = [count("ok"), count("failed"), count("throttled")];
        assert!(after[0] > before[0] && after[1] >= before[1] + 3 && after[2] > before[2]);
    }

    /// Many logins at once with the right password, from one address, before it is verified:
    /// they share one check instead of counting as that many guesses against the per-address
    /// limit, and all get in; wrong ones at once are still counted and refused past the limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_logins_share_one_check() {
        let (_dir, store) = bobs_store().await;
        let auth = Arc::new(
            Authenticator::new(
                store,
                AuthConfig {
                    failure_delay_ms: 0,
                    max_failures_per_ip: 3,
                    failure_window_secs: 900,
                    ..AuthConfig::default()
                },
            )
            .unwrap(),
        );
        let ip: IpAddr = "192.0.2.20".parse().unwrap();
        let logins = |password: &'static str| {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let auth = auth.clone();
                    tokio::spawn(async move {
                        auth.authenticate(ip, None, "bob@example.com", password)
                            .await
                            .0
                    })
                })
                .collect();
            async move {
                let mut v = Vec::new();
                for t in tasks {
                    v.push(t.await.unwrap());
                }
                v
            }
        };
        let right = logins("right").await;
        assert!(right.iter().all(|v| *v == AuthOutcome::Ok), "{right:?}");
        let other: IpAddr = "192.0.2.21".parse().unwrap();
        let mut wrong = Vec::new();
        for i in 0..6 {
            let guess = format!("guess{i}");
            wrong.push(
                auth.authenticate(other, None, "bob@example.com", &guess)
                    .await
                    .0,
            );
        }
        assert_eq!(
            wrong.iter().filter(|v| **v == AuthOutcome::Failed).count(),
            3
        );
        assert!(
            auth.flights.lock().unwrap().is_empty(),
            "no flight left behind"
        );
    }

    #[test]
    fn hashes_are_argon2id_phc() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(checker::verify_password("s3cret", &h));
        assert!(!checker::verify_password("wrong", &h));
    }

    /// A store with bob@example.com, password "right".
    async fn bobs_store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(hato_store::sqlite::SqliteStore::open(&dir.path().join("hato.db")).unwrap());
        let hash = hash_password("right").unwrap();
        store
            .create_account("bob@example.com", &hash)
            .await
            .unwrap();
        (dir, store)
    }

    async fn one_account(auth: AuthConfig) -> (tempfile::TempDir, Arc<Authenticator>) {
        let (dir, store) = bobs_store().await;
        let auth = AuthConfig {
            failure_delay_ms: 0,
            ..auth
        };
        (dir, Arc::new(Authenticator::new(store, auth).unwrap()))
    }

    /// 100 wrong passwords at the same instant from 100 networks: only the account's limit of
    /// them is checked (the count is reserved before the check), the rest refused unchecked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_guesses_are_checked_at_most_the_limit() {
        let (_dir, auth) = one_account(AuthConfig::default()).await;
        let tries = (0..100u32).map(|i| {
            let auth = auth.clone();
            tokio::spawn(async move {
                let ip = IpAddr::from([10, (i / 200) as u8, (i % 200) as u8, 1]);
                auth.authenticate(ip, None, "bob@example.com", "wrong")
                    .await
                    .0
            })
        });
        let mut verdicts = Vec::new();
        for t in tries.collect::<Vec<_>>() {
            verdicts.push(t.await.unwrap());
        }
        let checked = verdicts
            .iter()
            .filter(|v| **v == AuthOutcome::Failed)
            .count();
        let refused = verdicts
            .iter()
            .filter(|v| **v == AuthOutcome::Throttled)
            .count();
        // The limit, plus at most the one slow-lane check once the account is over it.
        assert!((10..=11).contains(&checked), "checked {checked}");
        assert_eq!(checked + refused, 100);
    }

    /// An attacker cannot lock the owner out: the network the owner logged in from before still
    /// gets in; a new network is slowed to one try per interval, not locked out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_owner_still_gets_in_during_an_attack() {
        let (_dir, auth) = one_account(AuthConfig {
            max_failures_per_account: 5,
            failure_window_secs: 10,
            ..AuthConfig::default()
        })
        .await;
        let home: IpAddr = "198.51.100.7".parse().unwrap();
        let ok = |ip: IpAddr, pw: &'static str| {
            let auth = auth.clone();
            async move { auth.authenticate(ip, None, "bob@example.com", pw).await.0 }
        };
        assert_eq!(ok(home, "right").await, AuthOutcome::Ok);
        // The attack, from addresses in many networks, well past the account's limit.
        for i in 0..20u8 {
            let v = ok(IpAddr::from([203, 0, i, 9]), "wrong").await;
            assert_ne!(v, AuthOutcome::Ok);
        }
        // Home (another address of the same /24, as after a DHCP renewal) gets in, and a wrong
        // password from there is still only a failure.
        let home2: IpAddr = "198.51.100.8".parse().unwrap();
        assert_eq!(ok(home2, "right").await, AuthOutcome::Ok);
        assert_eq!(ok(home, "wrong").await, AuthOutcome::Failed);
        assert_eq!(ok(home, "right").await, AuthOutcome::Ok);
        // A new network while the attacker holds the slow lane (one try per 10 s / 5 = 2 s; this
        // attempt takes it, or it was taken less than 2 s ago): refused unchecked. Once the
        // interval has passed it gets its check.
        let away: IpAddr = "192.0.2.50".parse().unwrap();
        let attacker = ok(IpAddr::from([203, 0, 99, 9]), "wrong").await;
        assert_ne!(attacker, AuthOutcome::Ok);
        assert_eq!(ok(away, "right").await, AuthOutcome::Throttled);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(ok(away, "right").await, AuthOutcome::Ok);
    }

    /// The address and network limits hold for every account; a success does not count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn address_and_network_limits() {
        let (_dir, auth) = one_account(AuthConfig {
            max_failures_per_ip: 2,
            max_failures_per_network: 3,
            max_failures_per_account: 100,
            ..AuthConfig::default()
        })
        .await;
        use AuthOutcome::{Failed, Ok, Throttled};
        let steps = [
            ("192.0.2.1", "bob@example.com", "right", Ok),
            ("192.0.2.1", "bob@example.com", "right", Ok),
            ("192.0.2.1", "bob@example.com", "right", Ok),
            ("192.0.2.1", "x@example.com", "a", Failed),
            ("192.0.2.1", "y@example.com", "b", Failed),
            // The address has had its 2 failures.
            ("192.0.2.1", "bob@example.com", "right", Throttled),
            ("192.0.2.2", "z@example.com", "c", Failed),
            // The /24 has had its 3 failures; the next /24 has not.
            ("192.0.2.3", "bob@example.com", "right", Throttled),
            ("192.0.3.3", "bob@example.com", "right", Ok),
        ];
        for (i, (ip, user, password, want)) in steps.into_iter().enumerate() {
            let ip: IpAddr = ip.parse().unwrap();
            let (got, _) = auth.authenticate(ip, None, user, password).await;
            assert_eq!(got, want, "step {i}: {ip} {user}");
        }
    }
}
