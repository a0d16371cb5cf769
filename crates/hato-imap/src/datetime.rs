//! IMAP dates (RFC 9051 §9 `date`, used by SEARCH) and date-times (`date-time`, used by
//! APPEND and `INTERNALDATE`), with conversions to and from Unix seconds.
//!
//! The civil-calendar arithmetic is the proleptic Gregorian calendar ("days from civil"),
//! valid for every year IMAP can express (four digits).

use std::fmt;

pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A calendar date without time or zone (SEARCH BEFORE/ON/SINCE/SENT*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    /// 1..=12
    pub month: u8,
    /// 1..=31, valid for the month
    pub day: u8,
}

/// A date-time with its zone, as in APPEND and INTERNALDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Zone offset east of UTC in minutes (`+0200` is 120), within ±(99*60+59).
    pub offset_minutes: i16,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(i64::from(year)) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Date {
    /// A valid date, or `None` (e.g. 30 February).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        (year <= 9999 && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
            .then_some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        )
    }

    /// Unix seconds of 00:00:00 of this date in the zone `offset_minutes` east of UTC.
    pub fn start_unix(self, offset_minutes: i16) -> i64 {
        self.days_since_epoch() * 86_400 - i64::from(offset_minutes) * 60
    }
}

impl fmt::Display for Date {
    /// `d-Mon-yyyy` (RFC 9051 `date-text`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{:04}",
            self.day,
            MONTHS[usize::from(self.month - 1)],
            self.year
        )
    }
}

impl DateTime {
    /// Unix seconds.
    pub fn to_unix(self) -> i64 {
        self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    /// The date-time of `unix` seconds shown in the zone `offset_minutes` east of UTC, or
    /// `None` outside years 0..=9999 or for an offset beyond ±99:59.
    pub fn from_unix(unix: i64, offset_minutes: i16) -> Option<DateTime> {
        if offset_minutes.unsigned_abs() > 99 * 60 + 59 {
            return None;
        }
        let local = unix.checked_add(i64::from(offset_minutes) * 60)?;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let date = Date::new(u16::try_from(y).ok()?, m as u8, d as u8)?;
        Some(DateTime {
            date,
            hour: (secs / 3600) as u8,
            minute: (secs % 3600 / 60) as u8,
            second: (secs % 60) as u8,
            offset_minutes,
        })
    }
}

impl fmt::Display for DateTime {
    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"` without the quotes; the day is space-padded
    /// (`date-day-fixed`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        write!(
            f,
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.date.day,
            MONTHS[usize::from(self.date.month - 1)],
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            off / 60,
            off % 60
        )
    }
}

/// The month number (1..=12) of a three-letter name, case-insensitively.
pub(crate) fn month_from_name(name: &[u8]) -> Option<u8> {
    MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| i as u8 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        let d = Date::new(1970, 1, 1).unwrap();
        assert_eq!(d.days_since_epoch(), 0);
        let dt = DateTime {
            date: Date::new(1996, 7, 17).unwrap(),
            hour: 2,
            minute: 44,
            second: 25,
            offset_minutes: -7 * 60,
        };
        // RFC 3501 example "17-Jul-1996 02:44:25 -0700" = 1996-07-17T09:44:25Z
        assert_eq!(dt.to_unix(), 837_596_665);
        assert_eq!(dt.to_string(), "17-Jul-1996 02:44:25 -0700");
        assert_eq!(DateTime::from_unix(837_596_665, -420), Some(dt));
        let early = DateTime::from_unix(0, 0).unwrap();
        assert_eq!(early.to_string(), " 1-Jan-1970 00:00:00 +0000");
        assert_eq!(Date::new(2024, 2, 9).unwrap().to_string(), "9-Feb-2024");
    }

    #[test]
    fn validity() {
        assert!(Date::new(2024, 2, 29).is_some());
        assert!(Date::new(2023, 2, 29).is_none());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
        assert!(Date::new(2000, 13, 1).is_none());
        assert!(Date::new(2000, 4, 31).is_none());
        assert!(Date::new(2000, 4, 0).is_none());
        assert!(DateTime::from_unix(i64::MAX, 0).is_none());
        assert!(DateTime::from_unix(0, 6000).is_none());
        assert_eq!(month_from_name(b"jUL"), Some(7));
        assert_eq!(month_from_name(b"Jux"), None);
    }

    proptest::proptest! {
        #[test]
        fn unix_round_trip(secs in -62_135_596_800i64..253_402_300_799, off in -5999i16..=5999) {
            if let Some(dt) = DateTime::from_unix(secs, off) {
                proptest::prop_assert_eq!(dt.to_unix(), secs);
            }
        }
    }
}
