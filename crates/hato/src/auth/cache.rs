//! The per-process cache of recently verified passwords.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Recently verified credentials, so a client that logs in on every connection (phones, printers,
/// load) does not cost an argon2 computation each time (Dovecot's auth cache does the same). An entry
/// holds an HMAC of the password under a key that lives only in this process, and the PHC string it
/// was verified against: a password change (new PHC string) invalidates it.
pub(super) struct VerifiedCache {
    key: ring::hmac::Key,
    entries: HashMap<String, (ring::hmac::Tag, String, Instant)>,
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);
const VERIFIED_MAX: usize = 10_000;

impl VerifiedCache {
    pub(super) fn new() -> anyhow::Result<VerifiedCache> {
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

    pub(super) fn hit(&self, user: &str, password: &str, phc: &str) -> bool {
        match self.entries.get(user) {
            Some((tag, hash, at)) if hash == phc && at.elapsed() < VERIFIED_TTL => {
                // verify() compares in constant time.
                ring::hmac::verify(&self.key, &Self::message(user, password), tag.as_ref()).is_ok()
            }
            _ => false,
        }
    }

    /// What identifies one set of credentials without keeping the password: its HMAC.
    pub(super) fn credentials_id(&self, user: &str, password: &str) -> Vec<u8> {
        ring::hmac::sign(&self.key, &Self::message(user, password))
            .as_ref()
            .to_vec()
    }

    pub(super) fn insert(&mut self, user: &str, password: &str, phc: &str) {
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
