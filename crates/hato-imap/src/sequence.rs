//! Sequence sets (RFC 9051 §9 `sequence-set`, RFC 3501 §9) and the `$` saved-result
//! reference (RFC 5182 SEARCHRES), plus [`NumberSet`], the normalised form used in
//! responses (`VANISHED`, `COPYUID`, `MODIFIED`, `ESEARCH ALL`).
//!
//! A set is never expanded: `1:4294967295` is one range, so a client cannot make the
//! server allocate in proportion to the numbers it names.

use std::fmt;
use std::ops::RangeInclusive;

/// One end of a range: a non-zero number or `*` ("the largest number in use").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeqNo {
    /// A non-zero message sequence number or UID.
    Value(u32),
    /// `*`: the largest sequence number / UID in use (RFC 9051 §9 `seq-number`).
    Largest,
}

impl SeqNo {
    fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNo::Value(v) => v,
            SeqNo::Largest => largest,
        }
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNo::Value(v) => write!(f, "{v}"),
            SeqNo::Largest => f.write_str("*"),
        }
    }
}

/// `a:b` as sent (either end may be the larger: RFC 9051 §9 "a range ... in either order").
/// A single number `n` is the range `n:n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqRange {
    pub start: SeqNo,
    pub end: SeqNo,
}

impl SeqRange {
    pub fn single(n: SeqNo) -> SeqRange {
        SeqRange { start: n, end: n }
    }
}

impl fmt::Display for SeqRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}:{}", self.start, self.end)
        }
    }
}

/// A `sequence-set` of a command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SequenceSet {
    /// `$`: the result saved by the last `SEARCH RETURN (SAVE)` (RFC 5182 §2.1); the session
    /// keeps it.
    Saved,
    /// One or more ranges, in the order sent (never empty).
    Ranges(Vec<SeqRange>),
}

impl SequenceSet {
    /// A set of one number.
    pub fn single(n: u32) -> SequenceSet {
        SequenceSet::Ranges(vec![SeqRange::single(SeqNo::Value(n))])
    }

    /// `a:b`.
    pub fn range(a: SeqNo, b: SeqNo) -> SequenceSet {
        SequenceSet::Ranges(vec![SeqRange { start: a, end: b }])
    }

    /// Whether the set mentions `*`.
    pub fn uses_largest(&self) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(r) => r
                .iter()
                .any(|r| r.start == SeqNo::Largest || r.end == SeqNo::Largest),
        }
    }

    /// The numbers named, with `*` standing for `largest` (the number of messages for
    /// sequence numbers, the largest UID in use for UIDs; 0 for an empty mailbox, when `*`
    /// names nothing). Reversed ranges are put in order; the result is sorted and merged.
    /// `None` for [`SequenceSet::Saved`], which the session resolves itself.
    ///
    /// Whether numbers beyond `largest` are an error (sequence numbers: RFC 9051 §6.4.5
    /// BAD) or simply match nothing (UIDs) is the caller's decision: see
    /// [`SequenceSet::max_value`].
    pub fn resolve(&self, largest: u32) -> Option<NumberSet> {
        let SequenceSet::Ranges(ranges) = self else {
            return None;
        };
        let mut set = NumberSet::new();
        for r in ranges {
            let (a, b) = (r.start.resolve(largest), r.end.resolve(largest));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let lo = lo.max(1);
            if hi >= lo {
                set.insert_range(lo, hi);
            }
        }
        Some(set)
    }

    /// The largest explicit number in the set (ignoring `*`), to check sequence numbers
    /// against the mailbox size. `None` for `$` or a set of only `*`.
    pub fn max_value(&self) -> Option<u32> {
        let SequenceSet::Ranges(ranges) = self else {
            return None;
        };
        ranges
            .iter()
            .flat_map(|r| [r.start, r.end])
            .filter_map(|n| match n {
                SeqNo::Value(v) => Some(v),
                SeqNo::Largest => None,
            })
            .max()
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceSet::Saved => f.write_str("$"),
            SequenceSet::Ranges(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

/// A normalised set of non-zero numbers: sorted, disjoint, non-adjacent inclusive ranges.
/// Displays in the compact IMAP form (`1:3,5,7:9`); an empty set displays as nothing, so
/// callers must not put an empty set on the wire where the grammar needs one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NumberSet {
    ranges: Vec<(u32, u32)>,
}

impl NumberSet {
    pub fn new() -> NumberSet {
        NumberSet::default()
    }

    /// The set of the given numbers (any order, duplicates allowed, zeros ignored).
    pub fn from_numbers<I: IntoIterator<Item = u32>>(numbers: I) -> NumberSet {
        let mut v: Vec<u32> = numbers.into_iter().filter(|&n| n != 0).collect();
        v.sort_unstable();
        v.dedup();
        let mut set = NumberSet::new();
        for n in v {
            set.push_sorted(n);
        }
        set
    }

    /// Appends `n`, which must be greater than every member (fast path for ascending input).
    fn push_sorted(&mut self, n: u32) {
        match self.ranges.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(n) => *hi = n,
            _ => self.ranges.push((n, n)),
        }
    }

    /// Adds `lo..=hi` (`lo` ≥ 1, `lo` ≤ `hi`), merging with overlapping or adjacent ranges.
    pub fn insert_range(&mut self, lo: u32, hi: u32) {
        debug_assert!(lo >= 1 && lo <= hi);
        let (mut lo, mut hi) = (lo.max(1), hi);
        if hi < lo {
            return;
        }
        // First range that could touch [lo, hi]: its end + 1 >= lo.
        let start = self
            .ranges
            .partition_point(|&(_, h)| h.saturating_add(1) < lo);
        let mut end = start;
        while end < self.ranges.len() && self.ranges[end].0 <= hi.saturating_add(1) {
            lo = lo.min(self.ranges[end].0);
            hi = hi.max(self.ranges[end].1);
            end += 1;
        }
        self.ranges.splice(start..end, [(lo, hi)]);
    }

    pub fn insert(&mut self, n: u32) {
        if n != 0 {
            self.insert_range(n, n);
        }
    }

    pub fn contains(&self, n: u32) -> bool {
        let i = self.ranges.partition_point(|&(_, h)| h < n);
        self.ranges.get(i).is_some_and(|&(l, _)| l <= n)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(l, h)| u64::from(h - l) + 1).sum()
    }

    pub fn min(&self) -> Option<u32> {
        self.ranges.first().map(|r| r.0)
    }

    pub fn max(&self) -> Option<u32> {
        self.ranges.last().map(|r| r.1)
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInclusive<u32>> + '_ {
        self.ranges.iter().map(|&(l, h)| l..=h)
    }

    /// Every number, ascending (lazily: a huge range costs nothing until iterated).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(l, h)| l..=h)
    }
}

impl FromIterator<u32> for NumberSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> NumberSet {
        NumberSet::from_numbers(iter)
    }
}

impl fmt::Display for NumberSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(l, h)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if l == h {
                write!(f, "{l}")?;
            } else {
                write!(f, "{l}:{h}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(SeqNo, SeqNo)]) -> SequenceSet {
        SequenceSet::Ranges(
            ranges
                .iter()
                .map(|&(start, end)| SeqRange { start, end })
                .collect(),
        )
    }

    use SeqNo::{Largest, Value as V};

    #[test]
    fn resolve_star_and_reversed() {
        let s = set(&[(V(5), V(2)), (V(9), Largest)]);
        assert_eq!(s.resolve(12).unwrap().to_string(), "2:5,9:12");
        // n:* with n beyond the largest means largest:n (RFC 9051 §9).
        let s = set(&[(V(20), Largest)]);
        assert_eq!(s.resolve(12).unwrap().to_string(), "12:20");
        // Empty mailbox: `*` names nothing.
        assert!(set(&[(Largest, Largest)]).resolve(0).unwrap().is_empty());
        assert_eq!(
            set(&[(V(3), Largest)]).resolve(0).unwrap().to_string(),
            "1:3"
        );
        assert_eq!(SequenceSet::Saved.resolve(3), None);
    }

    #[test]
    fn resolve_huge_range_is_one_range() {
        let s = set(&[(V(1), V(u32::MAX)), (V(7), V(7))]);
        let r = s.resolve(10).unwrap();
        assert_eq!(r.ranges().count(), 1);
        assert_eq!(r.len(), u64::from(u32::MAX));
        assert_eq!(s.max_value(), Some(u32::MAX));
    }

    #[test]
    fn number_set_merges() {
        let mut s = NumberSet::new();
        for n in [5, 1, 3, 2, 9, 10, 4, 11, 20] {
            s.insert(n);
        }
        assert_eq!(s.to_string(), "1:5,9:11,20");
        s.insert_range(6, 8);
        assert_eq!(s.to_string(), "1:11,20");
        s.insert_range(12, 19);
        assert_eq!(s.to_string(), "1:20");
        assert!(s.contains(1) && s.contains(20) && !s.contains(21) && !s.contains(0));
        assert_eq!(s.len(), 20);
        s.insert(u32::MAX);
        s.insert_range(u32::MAX - 1, u32::MAX);
        assert_eq!(s.to_string(), format!("1:20,{}:{}", u32::MAX - 1, u32::MAX));
        assert_eq!(
            NumberSet::from_numbers([3, 1, 2, 2, 0, 7]).to_string(),
            "1:3,7"
        );
    }

    #[test]
    fn display_sequence_set() {
        assert_eq!(set(&[(V(1), Largest), (V(4), V(4))]).to_string(), "1:*,4");
        assert_eq!(SequenceSet::Saved.to_string(), "$");
        assert!(set(&[(V(1), Largest)]).uses_largest());
        assert!(!SequenceSet::single(3).uses_largest());
    }

    proptest::proptest! {
        #[test]
        fn number_set_matches_model(nums in proptest::collection::vec(1u32..200, 0..60)) {
            let s = NumberSet::from_numbers(nums.iter().copied());
            let mut incr = NumberSet::new();
            for &n in &nums { incr.insert(n); }
            proptest::prop_assert_eq!(&s, &incr);
            let model: std::collections::BTreeSet<u32> = nums.iter().copied().collect();
            proptest::prop_assert_eq!(s.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            for n in 0..210 { proptest::prop_assert_eq!(s.contains(n), model.contains(&n)); }
            // Ranges are disjoint and non-adjacent.
            let r: Vec<_> = s.ranges().collect();
            for w in r.windows(2) { proptest::prop_assert!(w[0].end() + 1 < *w[1].start()); }
        }
    }
}
