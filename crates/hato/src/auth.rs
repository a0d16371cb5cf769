//! Who may log in: argon2id password verification (RFC 4954 AUTH, POP3, IMAP LOGIN and
//! AUTHENTICATE) with brute-force throttling counted in the store (shared by every protocol
//! and node), a delay after each failure, and a per-process cache of verified passwords.
//!
//! Must never: say whether an account exists (unknown users cost the same argon2 run), keep a
//! password in clear, or log one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use hato_store::Store;
use hato_wire::AuthOutcome;
use hato_wire::date::unix_now;
use hato_wire::domain::normalize_address;
use tracing::info;

use crate::config::AuthConfig;

/// Hashes a password as an argon2id PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

fn verify_password(password: &str, phc: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Failed logins are counted in the store ([`hato_store::SharedState`] counters), so every node
/// of one database sees the same counts: a client that spreads its guesses over the nodes is
/// throttled as if it talked to one. A count lives for `failure_window_secs` from the first
/// failure of its key.
struct Failures {
    ip: String,
    user: String,
}

/// Keys longer than this are hashed: a user name is the client's to choose, and the store
/// bounds its keys (`hato_store::MAX_STATE_KEY`).
const MAX_PLAIN_KEY: usize = 200;

impl Failures {
    fn new(ip: IpAddr, user: &str) -> Failures {
        let user = if user.len() <= MAX_PLAIN_KEY {
            format!("auth:user:{user}")
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            format!("auth:user#{hex}")
        };
        Failures {
            ip: format!("auth:ip:{ip}"),
            user,
        }
    }
}

/// Recently verified credentials, so a client that logs in on every connection (phones, printers,
/// load) does not cost an argon2 computation each time (Dovecot's auth cache does the same). An entry
/// holds an HMAC of the password under a key that lives only in this process, and the PHC string it
/// was verified against: a password change (new PHC string) invalidates it.
struct VerifiedCache {
    key: ring::hmac::Key,
    entries: HashMap<String, (ring::hmac::Tag, String, Instant)>,
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);
const VERIFIED_MAX: usize = 10_000;

impl VerifiedCache {
    fn new() -> anyhow::Result<VerifiedCache> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        Ok(VerifiedCache {
            key,
            entries: HashMap::new(),
        })
    }

    fn message(user: &str, password: &str) -> Vec<u8> {
        [user.as_bytes(), &[0], password.as_bytes()].concat()
    }

    fn hit(&self, user: &str, password: &str, phc: &str) -> bool {
        match self.entries.get(user) {
            Some((tag, hash, at)) if hash == phc && at.elapsed() < VERIFIED_TTL => {
                // verify() compares in constant time.
                ring::hmac::verify(&self.key, &Self::message(user, password), tag.as_ref()).is_ok()
            }
            _ => false,
        }
    }

    fn insert(&mut self, user: &str, password: &str, phc: &str) {
        if self.entries.len() >= VERIFIED_MAX {
            self.entries
                .retain(|_, (_, _, at)| at.elapsed() < VERIFIED_TTL);
            if self.entries.len() >= VERIFIED_MAX {
                self.entries.clear();
            }
        }
        let tag = ring::hmac::sign(&self.key, &Self::message(user, password));
        self.entries
            .insert(user.to_owned(), (tag, phc.to_owned(), Instant::now()));
    }
}

/// Verifies credentials for every protocol; built once by the server.
pub struct Authenticator {
    store: Arc<dyn Store>,
    verified: Mutex<VerifiedCache>,
    auth: AuthConfig,
    /// A valid hash to verify against for unknown users, so timing does not reveal which exist.
    dummy_hash: String,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, auth: AuthConfig) -> anyhow::Result<Authenticator> {
        Ok(Authenticator {
            store,
            auth,
            verified: Mutex::new(VerifiedCache::new()?),
            dummy_hash: hash_password("hato-dummy-password")?,
        })
    }

    /// The failure window in seconds; None (no throttling) for 0, where a count would expire
    /// at once.
    fn window(&self) -> Option<i64> {
        match i64::try_from(self.auth.failure_window_secs) {
            Ok(0) => None,
            Ok(secs) => Some(secs),
            Err(_) => Some(i64::MAX / 2),
        }
    }

    /// Over a failure limit at `now`? A store error counts as not throttled (logged): the
    /// argon2 verification still bounds the guessing rate, and the account lookup fails then
    /// anyway.
    async fn throttled(&self, keys: &Failures, now: i64) -> bool {
        if self.window().is_none() {
            return false;
        }
        let (ip, user) = tokio::join!(
            self.store.counter(&keys.ip, now),
            self.store.counter(&keys.user, now)
        );
        let count = |r: hato_store::Result<u32>| {
            r.unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the authentication failure count");
                0
            })
        };
        count(ip) >= self.auth.max_failures_per_ip
            || count(user) >= self.auth.max_failures_per_account
    }

    /// Counts one failure for the client IP and for the account name.
    async fn count_failure(&self, keys: &Failures, now: i64) {
        let Some(window) = self.window() else {
            return;
        };
        let (ip, user) = tokio::join!(
            self.store.counter_bump(&keys.ip, window, now),
            self.store.counter_bump(&keys.user, window, now)
        );
        if let Err(e) = ip.and(user) {
            tracing::error!(error = %e, "cannot count an authentication failure");
        }
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

    /// Checks credentials. Returns the verdict and the account on success.
    pub async fn authenticate(
        &self,
        ip: IpAddr,
        authzid: Option<&str>,
        username: &str,
        password: &str,
    ) -> (AuthOutcome, Option<hato_store::Account>) {
        let user = normalize_address(username).unwrap_or_else(|| username.to_lowercase());
        let keys = Failures::new(ip, &user);
        if self.throttled(&keys, unix_now()).await {
            crate::metrics::auth_attempt("throttled");
            return (AuthOutcome::Throttled, None);
        }
        let account = self.store.account(&user).await.ok().flatten();
        // An authorization identity other than the user itself is not supported.
        let authz_ok = authzid
            .filter(|z| !z.is_empty())
            .is_none_or(|z| normalize_address(z).as_deref() == Some(user.as_str()));
        let hash = account
            .as_ref()
            .map(|a| a.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let cached = account.is_some()
            && self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .hit(&user, password, &hash);
        let ok = cached || {
            let (pw, h) = (password.to_owned(), hash.clone());
            let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &h))
                .await
                .unwrap_or(false);
            if ok && account.is_some() {
                self.verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(&user, password, &hash);
            }
            ok
        };
        if ok
            && authz_ok
            && let Some(account) = account
        {
            crate::metrics::auth_attempt("ok");
            return (AuthOutcome::Ok, Some(account));
        }
        crate::metrics::auth_attempt("failed");
        self.count_failure(&keys, unix_now()).await;
        tokio::time::sleep(Duration::from_millis(self.auth.failure_delay_ms)).await;
        (AuthOutcome::Failed, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_user_names_are_hashed_into_the_key() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let short = Failures::new(ip, "alice@example.com");
        assert_eq!(short.ip, "auth:ip:192.0.2.7");
        assert_eq!(short.user, "auth:user:alice@example.com");
        let long = Failures::new(ip, &"a".repeat(10_000));
        assert!(long.user.starts_with("auth:user#"), "{}", long.user);
        assert!(long.user.len() <= hato_store::MAX_STATE_KEY);
        assert_ne!(long.user, Failures::new(ip, &"a".repeat(10_001)).user);
    }

    /// Two servers on one store (two nodes): failures counted by one throttle the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_are_shared_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(hato_store::sqlite::SqliteStore::open(&dir.path().join("hato.db")).unwrap());
        let hash = hash_password("right").unwrap();
        store
            .create_account("bob@example.com", &hash)
            .await
            .unwrap();
        let auth = AuthConfig {
            failure_delay_ms: 0,
            max_failures_per_ip: 3,
            max_failures_per_account: 100,
            failure_window_secs: 900,
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

    #[test]
    fn hashes_are_argon2id_phc() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("wrong", &h));
    }
}
