//! The retry schedule of the outbound queue (RFC 5321 4.5.4.1: retry at intervals of at least
//! 30 minutes and give up after at least 4–5 days; hato starts faster because most temporary
//! failures — greylisting, a restarting server — clear within minutes).
//!
//! Pure functions of the entry's creation time, its attempt count and the current time, so the
//! schedule survives restarts without extra state.

use std::time::Duration;

/// Delays after the 1st, 2nd, ... failed attempt; the last one repeats.
pub const DEFAULT_DELAYS: [Duration; 5] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];
/// How long a message may stay in the queue before it bounces (Postfix
/// `maximal_queue_lifetime`).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(5 * 24 * 3600);

/// What to do after a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time (Unix seconds).
    RetryAt(i64),
    /// The maximum lifetime is over: bounce (Status 4.4.7, "delivery time expired").
    Expired,
}

/// A retry schedule; see [`RetrySchedule::after_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    max_lifetime: Duration,
    delay_notice_after: Option<Duration>,
}

/// A schedule that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the retry schedule needs at least one delay")]
    NoDelays,
    #[error("retry delays must be at least one second")]
    ZeroDelay,
    #[error("the maximum queue lifetime must be at least one second")]
    ZeroLifetime,
    #[error("invalid duration {0:?} (use e.g. 30s, 5m, 1h, 5d)")]
    BadDuration(String),
}

impl Default for RetrySchedule {
    /// 1m, 5m, 15m, 30m, 1h, then hourly; 5 days; no delay notice.
    fn default() -> RetrySchedule {
        RetrySchedule {
            delays: DEFAULT_DELAYS.to_vec(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            delay_notice_after: None,
        }
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>, max_lifetime: Duration) -> Result<Self, ScheduleError> {
        if delays.is_empty() {
            return Err(ScheduleError::NoDelays);
        }
        if delays.iter().any(|d| d.as_secs() == 0) {
            return Err(ScheduleError::ZeroDelay);
        }
        if max_lifetime.as_secs() == 0 {
            return Err(ScheduleError::ZeroLifetime);
        }
        Ok(RetrySchedule {
            delays,
            max_lifetime,
            delay_notice_after: None,
        })
    }

    /// Send a "delayed" DSN once a message has waited this long (Postfix `delay_warning_time`).
    pub fn with_delay_notice(mut self, after: Option<Duration>) -> Self {
        self.delay_notice_after = after;
        self
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    /// Unix seconds after which an entry created at `created` expires.
    pub fn expires_at(&self, created: i64) -> i64 {
        created.saturating_add(secs(self.max_lifetime))
    }

    /// The delay after the `attempts`-th failed attempt (1-based; 0 is treated as 1).
    pub fn delay(&self, attempts: u32) -> Duration {
        let index = (attempts.max(1) - 1) as usize;
        self.delays[index.min(self.delays.len() - 1)]
    }

    /// After the `attempts`-th failed attempt (counting it) of an entry created at `created`,
    /// failing at `now`: when to try again, or expired. A retry that would fall after the expiry
    /// is moved to the expiry time, so every message gets one last attempt at the deadline.
    pub fn after_failure(&self, created: i64, attempts: u32, now: i64) -> Next {
        let expires = self.expires_at(created);
        if now >= expires {
            return Next::Expired;
        }
        let next = now.saturating_add(secs(self.delay(attempts)));
        Next::RetryAt(next.min(expires))
    }

    /// Whether a "delayed" notice is due for an entry created at `created`, whose previous
    /// attempt was at `previous_attempt` (None: this is the first), failing again at `now`:
    /// true exactly once, at the first failure at or after `created + delay_notice_after`.
    pub fn delay_notice_due(&self, created: i64, previous_attempt: Option<i64>, now: i64) -> bool {
        let Some(after) = self.delay_notice_after else {
            return false;
        };
        let at = created.saturating_add(secs(after));
        now >= at && previous_attempt.is_none_or(|previous| previous < at)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Parses `30s`, `5m`, `1h`, `5d` (or plain seconds) into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, ScheduleError> {
    let bad = || ScheduleError::BadDuration(text.to_owned());
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// Parses a configured list like `["1m", "5m", "1h"]`.
pub fn parse_delays<S: AsRef<str>>(items: &[S]) -> Result<Vec<Duration>, ScheduleError> {
    items.iter().map(|s| parse_duration(s.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000;

    #[test]
    fn default_schedule_then_hourly() {
        let s = RetrySchedule::default();
        let expected: [i64; 7] = [60, 300, 900, 1800, 3600, 3600, 3600];
        for (i, delay) in expected.iter().enumerate() {
            let attempts = i as u32 + 1;
            assert_eq!(
                s.delay(attempts).as_secs() as i64,
                *delay,
                "attempt {attempts}"
            );
            assert_eq!(
                s.after_failure(T, attempts, T + 10),
                Next::RetryAt(T + 10 + delay)
            );
        }
        assert_eq!(s.delay(0), s.delay(1));
        assert_eq!(s.delay(u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn expiry_after_five_days_with_a_last_attempt_at_the_deadline() {
        let s = RetrySchedule::default();
        let expires = T + 5 * 86_400;
        assert_eq!(s.expires_at(T), expires);
        assert_eq!(
            s.after_failure(T, 100, expires - 60),
            Next::RetryAt(expires)
        );
        assert_eq!(s.after_failure(T, 101, expires), Next::Expired);
        assert_eq!(s.after_failure(T, 101, expires + 1), Next::Expired);
    }

    #[test]
    fn custom_schedule_and_validation() {
        let s = RetrySchedule::new(
            parse_delays(&["10s", "2m"]).unwrap(),
            parse_duration("1h").unwrap(),
        )
        .unwrap();
        assert_eq!(s.after_failure(T, 1, T), Next::RetryAt(T + 10));
        assert_eq!(s.after_failure(T, 2, T + 10), Next::RetryAt(T + 130));
        assert_eq!(s.after_failure(T, 9, T + 1000), Next::RetryAt(T + 1120));
        assert_eq!(s.after_failure(T, 9, T + 3590), Next::RetryAt(T + 3600));
        assert_eq!(s.after_failure(T, 10, T + 3600), Next::Expired);

        let one_hour = Duration::from_secs(3600);
        assert_eq!(
            RetrySchedule::new(vec![], one_hour),
            Err(ScheduleError::NoDelays)
        );
        assert_eq!(
            RetrySchedule::new(vec![Duration::ZERO], one_hour),
            Err(ScheduleError::ZeroDelay)
        );
        assert_eq!(
            RetrySchedule::new(vec![one_hour], Duration::ZERO),
            Err(ScheduleError::ZeroLifetime)
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration(" 2h ").unwrap().as_secs(), 7200);
        assert_eq!(parse_duration("5d").unwrap().as_secs(), 432_000);
        assert_eq!(parse_duration("42").unwrap().as_secs(), 42);
        for bad in ["", "m", "5x", "-5m", "5 m", "99999999999999999999d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn delay_notice_once() {
        let off = RetrySchedule::default();
        assert!(!off.delay_notice_due(T, Some(T), T + 86_400));
        let s = RetrySchedule::default().with_delay_notice(Some(Duration::from_secs(4 * 3600)));
        let at = T + 4 * 3600;
        assert!(!s.delay_notice_due(T, None, at - 1));
        assert!(
            s.delay_notice_due(T, Some(at - 100), at + 5),
            "first failure after 4h"
        );
        assert!(
            s.delay_notice_due(T, None, at),
            "the first attempt itself is late"
        );
        assert!(
            !s.delay_notice_due(T, Some(at), at + 3600),
            "already announced"
        );
        assert!(!s.delay_notice_due(T, Some(at + 5), at + 3600));
    }
}
