//! Connection limits: one budget for the whole server, one per listener (so a flood on port 25
//! cannot take the slots of submission, IMAP and POP3), and one per client address, checked in
//! that order backwards: a connection refused for its address holds no other slot, even during
//! its grace. A listener whose budget is three quarters used is under pressure: its sessions
//! wait less for clients that have not logged in ([`Pressure`]), as Postfix's stress mode does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many 10 ms waits a connection over the per-address limit gets before its refusal.
const PER_IP_GRACE_STEPS: usize = 20;

pub struct ConnectionLimits {
    max: usize,
    connections: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

/// One listener's share of the connections.
pub struct Budget {
    max: usize,
    slots: Arc<Semaphore>,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            slots: Arc::new(Semaphore::new(max)),
        })
    }

    fn under_pressure(&self) -> bool {
        let used = self.max.saturating_sub(self.slots.available_permits());
        used.saturating_mul(4) >= self.max.saturating_mul(3)
    }
}

/// Whether a connection's listener is nearly full: then clients that have not logged in get
/// [`PRESSURE_TIMEOUT`] at most for each wait (`net::read_input`), the TLS handshake included.
#[derive(Clone, Default)]
pub struct Pressure(Option<Arc<Budget>>);

/// The longest wait for a client that has not logged in while its listener is under pressure.
pub const PRESSURE_TIMEOUT: Duration = Duration::from_secs(10);

impl Pressure {
    pub fn high(&self) -> bool {
        self.0.as_ref().is_some_and(|b| b.under_pressure())
    }

    /// `timeout`, shortened under pressure for a client that has not logged in.
    pub fn timeout(&self, timeout: Duration, logged_in: bool) -> Duration {
        if !logged_in && self.high() {
            timeout.min(PRESSURE_TIMEOUT)
        } else {
            timeout
        }
    }
}

/// An admitted connection's slots, released when it is dropped, however the connection ends.
pub struct Admission {
    _global: OwnedSemaphorePermit,
    _listener: OwnedSemaphorePermit,
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    budget: Arc<Budget>,
}

impl Admission {
    pub fn pressure(&self) -> Pressure {
        Pressure(Some(self.budget.clone()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits.release_ip(self.ip);
    }
}

/// Why a connection was not admitted, as said to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooMany,
    /// The listener's own budget is used up.
    ListenerFull,
    TooManyFromAddress,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::TooMany | Refusal::ListenerFull => "Too many connections",
            Refusal::TooManyFromAddress => "Too many connections from your address",
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooMany => "busy",
            Refusal::ListenerFull => "listener_busy",
            Refusal::TooManyFromAddress => "per_address",
        }
    }
}

impl ConnectionLimits {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max,
            connections: Arc::new(Semaphore::new(max)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    /// Takes the slots for a connection from `ip` on a listener with `budget`.
    pub async fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        budget: &Arc<Budget>,
    ) -> Result<Admission, Refusal> {
        let take = || {
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n < self.max_per_ip {
                *n += 1;
                true
            } else {
                false
            }
        };
        // A client at its limit that reconnects at once may be a moment ahead of its previous
        // connection's clean-up (the slot is freed just after the socket closes): grant a grace.
        let mut admitted = take();
        for _ in 0..PER_IP_GRACE_STEPS {
            if admitted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            admitted = take();
        }
        if !admitted {
            return Err(Refusal::TooManyFromAddress);
        }
        // From here the address's slot is taken: a refusal gives it back.
        let release_ip = || self.release_ip(ip);
        let listener = match budget.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                release_ip();
                return Err(Refusal::ListenerFull);
            }
        };
        let global = match self.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                release_ip();
                return Err(Refusal::TooMany);
            }
        };
        Ok(Admission {
            _global: global,
            _listener: listener,
            limits: self.clone(),
            ip,
            budget: budget.clone(),
        })
    }

    fn release_ip(&self, ip: IpAddr) {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Waits until every connection has ended, at most `timeout`; false if some remain.
    pub async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.connections.acquire_many(self.max as u32))
            .await
            .is_ok()
    }
}

/// The memory all sessions together may hold for message data in transit
/// (`limits.max_data_in_flight`): each session's [`DataShare`] grows and shrinks within it.
pub struct DataBudget {
    max: usize,
    used: AtomicUsize,
    /// Woken when bytes are given back ([`DataBudget::hold`] waits on it).
    freed: tokio::sync::Notify,
}

impl DataBudget {
    pub fn new(max: usize) -> Arc<DataBudget> {
        Arc::new(DataBudget {
            max,
            used: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// A share of nothing yet, given back when dropped.
    pub fn share(self: &Arc<Self>) -> DataShare {
        DataShare {
            budget: self.clone(),
            held: 0,
        }
    }

    fn grow(&self, by: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(by).filter(|&n| n <= self.max)
            })
            .is_ok()
    }

    fn shrink(&self, by: usize) {
        if by > 0 {
            self.used.fetch_sub(by, Ordering::AcqRel);
            self.freed.notify_waiters();
        }
    }

    /// A share of `bytes` (at most the whole budget), waiting until there is room: for work
    /// that can wait (outbound delivery reading a queued message) rather than be refused.
    pub async fn hold(self: &Arc<Self>, bytes: usize) -> DataShare {
        let bytes = bytes.min(self.max);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.grow(bytes) {
                return DataShare {
                    budget: self.clone(),
                    held: bytes,
                };
            }
            freed.await;
        }
    }

    /// Bytes held by all sessions now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes not held by anyone now.
    pub fn free(&self) -> usize {
        self.max.saturating_sub(self.used())
    }
}

/// One session's part of the [`DataBudget`].
pub struct DataShare {
    budget: Arc<DataBudget>,
    held: usize,
}

impl DataShare {
    /// Makes the share `bytes`; false (the share unchanged) if growing it would pass the budget.
    pub fn set(&mut self, bytes: usize) -> bool {
        if bytes <= self.held {
            self.budget.shrink(self.held - bytes);
        } else if !self.budget.grow(bytes - self.held) {
            return false;
        }
        self.held = bytes;
        true
    }
}

impl DataShare {
    /// Makes the share `bytes` even past the budget: for data a session already took within
    /// the room it was told of (an IMAP APPEND literal announced within
    /// [`DataBudget::free`]), which another session may have taken meanwhile.
    pub fn set_regardless(&mut self, bytes: usize) {
        if bytes <= self.held {
            self.budget.shrink(self.held - bytes);
        } else {
            self.budget
                .used
                .fetch_add(bytes - self.held, Ordering::AcqRel);
        }
        self.held = bytes;
    }
}

impl Drop for DataShare {
    fn drop(&mut self) {
        self.budget.shrink(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// Checked from the narrowest: a refusal holds no slot of the wider budgets.
    #[tokio::test]
    async fn refusals_hold_no_slot() {
        let limits = ConnectionLimits::new(4, 1);
        let (small, big) = (Budget::new(2), Budget::new(4));
        let a = limits.admit(ip(1), &small).await.unwrap();
        let refused = limits.admit(ip(1), &big).await.err();
        assert_eq!(refused, Some(Refusal::TooManyFromAddress));
        let b = limits.admit(ip(2), &small).await.unwrap();
        assert_eq!(
            limits.admit(ip(3), &small).await.err(),
            Some(Refusal::ListenerFull)
        );
        // Neither refusal took a global slot or the address's slot.
        let c = limits.admit(ip(3), &big).await.unwrap();
        let d = limits.admit(ip(4), &big).await.unwrap();
        assert_eq!(
            limits.admit(ip(5), &big).await.err(),
            Some(Refusal::TooMany)
        );
        drop((a, b, c));
        let again = limits.admit(ip(1), &big).await.unwrap();
        drop((d, again));
        assert!(limits.drain(Duration::from_secs(1)).await);
    }

    /// Pressure from three quarters of a listener's budget; it shortens only the waits of
    /// clients that have not logged in.
    #[tokio::test]
    async fn pressure_at_three_quarters() {
        let limits = ConnectionLimits::new(100, 100);
        let budget = Budget::new(4);
        let mut held = Vec::new();
        for i in 0..3 {
            let admission = limits.admit(ip(i), &budget).await.unwrap();
            assert_eq!(admission.pressure().high(), i == 2, "{} in use", i + 1);
            held.push(admission);
        }
        let p = held[0].pressure();
        let long = Duration::from_secs(300);
        assert_eq!(p.timeout(long, false), PRESSURE_TIMEOUT);
        assert_eq!(p.timeout(long, true), long);
        held.pop();
        assert!(!p.high());
        assert_eq!(p.timeout(long, false), long);
        assert!(!Pressure::default().high());
    }

    /// Shares grow within the budget, shrink, and give back what they held when dropped.
    #[test]
    fn data_shares_stay_within_the_budget() {
        let budget = DataBudget::new(100);
        let (mut a, mut b) = (budget.share(), budget.share());
        assert!(a.set(60));
        assert!(!b.set(41), "60 + 41 > 100");
        assert!(b.set(40));
        assert_eq!(budget.used(), 100);
        assert!(a.set(10));
        assert!(b.set(90));
        drop(b);
        assert_eq!(budget.used(), 10);
        assert!(a.set(0));
        assert_eq!(budget.used(), 0);
    }

    /// `hold` waits for room and gets it as soon as another share gives bytes back; a share
    /// larger than the budget is capped at it (it still runs, alone).
    #[tokio::test]
    async fn hold_waits_for_room() {
        let budget = DataBudget::new(100);
        let mut first = budget.share();
        assert!(first.set(80));
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.hold(50).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "50 more than the 20 left");
        assert!(first.set(10));
        let held = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken when room was given back")
            .unwrap();
        assert_eq!(budget.used(), 60);
        drop((held, first));
        assert_eq!(budget.used(), 0);
        let all = budget.hold(1_000).await;
        assert_eq!(budget.used(), 100);
        drop(all);
    }
}
