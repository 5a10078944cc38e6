//! A set of block ranges kept merged: the busy lists, and bookkeeping in fsck and tests.
//!
//! Owns nothing on disk and takes no locks.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | the busy-extent rbtree (`xfs_extent_busy`) | [`ExtentSet`] (a merged `BTreeMap`) |
//! | `xfs_bitmap` in repair | [`ExtentSet`] |

use alloc::collections::BTreeMap;

/// Disjoint, merged ranges `[start, start + len)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtentSet {
    map: BTreeMap<u64, u64>,
    total: u64,
}

impl ExtentSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks in the set.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.total = 0;
    }

    /// Adds `[start, start + len)` (overlaps with existing ranges are fine).
    pub fn insert(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.remove(start, len);
        let mut s = start;
        let mut e = start + len;
        if let Some((&ls, &ll)) = self.map.range(..s).next_back() {
            if ls + ll == s {
                self.map.remove(&ls);
                s = ls;
                self.total -= ll;
            }
        }
        if let Some(&rl) = self.map.get(&e) {
            self.map.remove(&e);
            self.total -= rl;
            e += rl;
        }
        self.map.insert(s, e - s);
        self.total += e - s;
    }

    /// Removes `[start, start + len)`.
    pub fn remove(&mut self, start: u64, len: u64) {
        let end = start + len;
        let mut hit: alloc::vec::Vec<(u64, u64)> = alloc::vec::Vec::new();
        if let Some((&s, &l)) = self.map.range(..start).next_back() {
            if s + l > start {
                hit.push((s, l));
            }
        }
        hit.extend(self.map.range(start..end).map(|(&s, &l)| (s, l)));
        for (s, l) in hit {
            self.map.remove(&s);
            self.total -= l;
            if s < start {
                self.map.insert(s, start - s);
                self.total += start - s;
            }
            if s + l > end {
                self.map.insert(end, s + l - end);
                self.total += s + l - end;
            }
        }
    }

    /// Whether any block of `[start, start + len)` is in the set.
    #[cfg(test)]
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        let end = start + len;
        if let Some((&s, &l)) = self.map.range(..=start).next_back() {
            if s + l > start {
                return true;
            }
        }
        self.map.range(start..end).next().is_some()
    }

    /// Whether block `b` is in the set.
    #[cfg(test)]
    pub fn contains(&self, b: u64) -> bool {
        self.overlaps(b, 1)
    }

    /// The longest run of blocks in `[start, end)` not in the set, the first such when several
    /// are equally long, stopping early once a run of `enough` blocks is found.
    pub fn largest_gap(&self, start: u64, end: u64, enough: u64) -> Option<(u64, u64)> {
        let mut best: Option<(u64, u64)> = None;
        let mut pos = start;
        let consider = |a: u64, b: u64, best: &mut Option<(u64, u64)>| {
            if b > a && best.is_none_or(|(_, l)| b - a > l) {
                *best = Some((a, b - a));
            }
        };
        if let Some((&s, &l)) = self.map.range(..start).next_back() {
            pos = pos.max(s + l);
        }
        for (&s, &l) in self.map.range(start..end) {
            consider(pos, s.min(end), &mut best);
            if best.is_some_and(|(_, l)| l >= enough) {
                return best;
            }
            pos = s + l;
        }
        consider(pos.min(end), end, &mut best);
        best
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &l)| (s, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_remove_splits_and_gaps() {
        let mut s = ExtentSet::new();
        s.insert(10, 5);
        s.insert(15, 5);
        s.insert(30, 2);
        assert_eq!(s.iter().collect::<alloc::vec::Vec<_>>(), [(10, 10), (30, 2)]);
        assert_eq!(s.total(), 12);
        s.remove(12, 3);
        assert_eq!(s.iter().collect::<alloc::vec::Vec<_>>(), [(10, 2), (15, 5), (30, 2)]);
        assert!(s.overlaps(11, 1) && !s.overlaps(12, 3) && s.contains(31) && !s.contains(32));
        assert_eq!(s.largest_gap(0, 40, 100), Some((0, 10)));
        assert_eq!(s.largest_gap(11, 40, 100), Some((20, 10)));
        assert_eq!(s.largest_gap(11, 40, 3), Some((12, 3)));
        assert_eq!(s.largest_gap(15, 20, 1), None);
        s.insert(0, 100);
        assert_eq!((s.iter().count(), s.total()), (1, 100));
    }
}
