//! Brute-force throttling that a stranger cannot turn against the owner.
//!
//! Failed checks are counted in the store ([`hato_store::SharedState`]), so every node of one
//! database sees the same counts, per client address, per network (/24 for IPv4, /64 for IPv6)
//! and per account, each for `failure_window_secs` from its first failure. The policy:
//!
//! - A check is counted *before* it is made (a reservation, taken back if the password was
//!   right or the check could not be made), so concurrent guesses cannot all pass a limit that
//!   was read before any of them failed: at most the configured number of wrong passwords per
//!   address, network and account is ever checked in a window.
//! - An address or network over its limit gets no check until the window ends.
//! - An account over its limit (under attack) still admits the networks it logged in from
//!   before ([`KNOWN_TTL`]): the owner keeps their mail. Other networks are slowed down, not
//!   locked out: one check per account every `failure_window_secs / max_failures_per_account`
//!   (the slow lane), so the owner on a new network gets in after a few tries while a guesser
//!   gets no more than that rate. The first time an account goes over its limit in a window
//!   is logged as a warning (the owner's alarm; the admin UI will show it too).
//!
//! Compared with Postfix's anvil (connection and AUTH rates per client, no per-account view),
//! Dovecot's auth_penalty (a growing delay per client address) and fail2ban (bans addresses
//! after log matches): hato limits per address and network too, and adds the per-account limit
//! with the known-network exemption, which neither gives, without locking the owner out.

use std::net::IpAddr;

use hato_store::Store;

use crate::config::AuthConfig;

/// Keys longer than this are hashed: a user name is the client's to choose, and the store
/// bounds its keys (`hato_store::MAX_STATE_KEY`).
const MAX_PLAIN_KEY: usize = 200;

/// How long a network that logged in to an account counts as the owner's.
pub(super) const KNOWN_TTL: i64 = 30 * 86_400;

/// The store keys of one attempt's limits.
pub(super) struct Keys {
    pub(super) ip: String,
    pub(super) net: String,
    pub(super) user: String,
    /// Cache key: this network logged in to this account before.
    known: String,
    /// Lease: the account's slow lane is taken until its interval ends.
    slow: String,
    /// Lease: the account's over-limit warning was logged in this window.
    alarm: String,
}

impl Keys {
    pub(super) fn new(ip: IpAddr, user: &str) -> Keys {
        let user_key = if user.len() <= MAX_PLAIN_KEY {
            user.to_owned()
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, user.as_bytes());
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        };
        let net = network(ip);
        Keys {
            ip: format!("auth:ip:{ip}"),
            known: format!("auth:known:{net}:{user_key}"),
            net: format!("auth:net:{net}"),
            slow: format!("auth:slow:{user_key}"),
            alarm: format!("auth:alarm:{user_key}"),
            user: format!("auth:user:{user_key}"),
        }
    }
}

/// The network an address belongs to for throttling: its /24 (IPv4) or /64 (IPv6), where one
/// client usually has all its addresses.
pub(super) fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Why an attempt gets no check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The address or its network is over its limit.
    Address,
    /// The account is over its limit, this network never logged in to it, and the slow lane
    /// is taken.
    Account,
}

/// An attempt that passed the read-only look at the limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admitted {
    /// The account's limit does not apply (a known network, or the slow lane).
    exempt: bool,
}

/// A check counted in advance: [`Throttle::release`] takes it back.
pub(super) struct Reservation {
    keys_held: [bool; 3],
}

/// The throttle over the store's counters.
pub(super) struct Throttle<'a> {
    pub(super) store: &'a dyn Store,
    pub(super) config: &'a AuthConfig,
    /// The window in seconds (throttling is off without one).
    pub(super) window: i64,
}

fn logged<T: Default>(r: hato_store::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "authentication throttling: cannot {what}");
        T::default()
    })
}

impl Throttle<'_> {
    /// The read-only look at the limits, before anything else (a cached password included):
    /// refusals, the bulk of an attack, write nothing. A store error counts as no failure
    /// (logged): the bounded argon2 checks still limit the guessing rate.
    pub(super) async fn admit(&self, keys: &Keys, now: i64) -> Result<Admitted, Refused> {
        let c = self.config;
        let store = self.store;
        let (ip, net, user) = tokio::join!(
            store.counter(&keys.ip, now),
            store.counter(&keys.net, now),
            store.counter(&keys.user, now)
        );
        let read = |r| logged(r, "read a failure count");
        if read(ip) >= c.max_failures_per_ip || read(net) >= c.max_failures_per_network {
            return Err(Refused::Address);
        }
        if read(user) < c.max_failures_per_account {
            return Ok(Admitted { exempt: false });
        }
        self.alarm(keys, now).await;
        if self.known(keys, now).await || self.slow_lane(keys, now).await {
            Ok(Admitted { exempt: true })
        } else {
            Err(Refused::Account)
        }
    }

    /// Counts the check about to be made (argon2), or refuses it.
    pub(super) async fn reserve(
        &self,
        keys: &Keys,
        admitted: Admitted,
        now: i64,
    ) -> Result<Reservation, Refused> {
        let (c, store, exempt) = (self.config, self.store, admitted.exempt);
        // The reservation: each bump is atomic, so of N concurrent attempts only those within
        // the limits go on.
        let (ip, net, user) = tokio::join!(
            store.counter_bump(&keys.ip, self.window, now),
            store.counter_bump(&keys.net, self.window, now),
            store.counter_bump(&keys.user, self.window, now)
        );
        let reservation = Reservation {
            keys_held: [ip.is_ok(), net.is_ok(), user.is_ok()],
        };
        let bumped = |r: hato_store::Result<u32>| logged(r, "count a failure");
        let over = bumped(ip) > c.max_failures_per_ip
            || bumped(net) > c.max_failures_per_network
            || (!exempt && bumped(user) > c.max_failures_per_account);
        if over {
            self.release(keys, reservation, now).await;
            return Err(if exempt {
                Refused::Address
            } else {
                Refused::Account
            });
        }
        Ok(reservation)
    }

    /// Takes a reservation back: the password was right, or no check was made.
    pub(super) async fn release(&self, keys: &Keys, r: Reservation, now: i64) {
        let held = [&keys.ip, &keys.net, &keys.user]
            .into_iter()
            .zip(r.keys_held)
            .filter_map(|(key, held)| held.then_some(key));
        for key in held {
            let r = self.store.counter_release(key, now).await;
            logged(r, "take a count back");
        }
    }

    /// Remembers that the client's network logged in to the account.
    pub(super) async fn remember(&self, keys: &Keys, now: i64) {
        let r = self
            .store
            .cache_put(&keys.known, b"", now.saturating_add(KNOWN_TTL))
            .await;
        logged(r, "remember a known network");
    }

    async fn known(&self, keys: &Keys, now: i64) -> bool {
        let r = self.store.cache_get(&keys.known, now).await;
        logged(r, "read a known network").is_some()
    }

    /// One check per account per interval from networks the account does not know.
    async fn slow_lane(&self, keys: &Keys, now: i64) -> bool {
        let every = (self.window / i64::from(self.config.max_failures_per_account.max(1))).max(1);
        let owner = format!("{now}:{}", rand::random::<u64>());
        let r = self
            .store
            .lease_acquire(&keys.slow, &owner, every, now)
            .await;
        logged(r, "take the slow lane")
    }

    /// The owner's alarm: logged once per window and account, on every node together.
    async fn alarm(&self, keys: &Keys, now: i64) {
        let owner = format!("{now}:{}", rand::random::<u64>());
        let first = self
            .store
            .lease_acquire(&keys.alarm, &owner, self.window, now)
            .await;
        if logged(first, "note the alarm") {
            let account = keys.user.trim_start_matches("auth:user:");
            tracing::warn!(
                account,
                limit = self.config.max_failures_per_account,
                window_secs = self.window,
                "PASSWORD ATTACK: too many failed logins for this account; networks it logged in from before are still admitted, others slowed to one try per interval"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_keys() {
        assert_eq!(network("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network("::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let short = Keys::new(ip, "alice@example.com");
        assert_eq!(short.ip, "auth:ip:192.0.2.7");
        assert_eq!(short.net, "auth:net:192.0.2.0/24");
        assert_eq!(short.user, "auth:user:alice@example.com");
        assert_eq!(short.known, "auth:known:192.0.2.0/24:alice@example.com");
        let long = Keys::new(ip, &"a".repeat(10_000));
        assert!(long.user.starts_with("auth:user:#"), "{}", long.user);
        for key in [&long.user, &long.known, &long.slow, &long.alarm] {
            assert!(key.len() <= hato_store::MAX_STATE_KEY);
        }
        assert_ne!(long.user, Keys::new(ip, &"a".repeat(10_001)).user);
    }
}
