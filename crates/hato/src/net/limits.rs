//! Connection limits: one budget for the whole server and one per client address.

use std::collections::HashMap;
use std::net::IpAddr;
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

/// An admitted connection's slots, released when it is dropped, however the connection ends.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was not admitted, as said to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooMany,
    TooManyFromAddress,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::TooMany => "Too many connections",
            Refusal::TooManyFromAddress => "Too many connections from your address",
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooMany => "busy",
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

    /// Takes a slot for a connection from `ip`.
    pub async fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::TooMany)?;
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
        Ok(Admission {
            _permit: permit,
            limits: self.clone(),
            ip,
        })
    }

    /// Waits until every connection has ended, at most `timeout`; false if some remain.
    pub async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.connections.acquire_many(self.max as u32))
            .await
            .is_ok()
    }
}
