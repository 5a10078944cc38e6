//! The test filesystem's block allocator: free extents in a `BTreeMap` (start -> length),
//! first fit with a goal (so a file's successive allocations stay contiguous), merged on free.
//!
//! Owns: the free-extent map. Locking: none of its own (lives under the filesystem's lock).
//! Linux <-> here: XFS's by-block / by-size free-space B+trees, reduced to one map.

use alloc::collections::BTreeMap;

use crate::{Errno, Result};

/// Free space of a device, in blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockAlloc {
    free: BTreeMap<u64, u64>,
}

impl BlockAlloc {
    /// Blocks `[start, end)` free.
    pub fn new(start: u64, end: u64) -> Self {
        let mut free = BTreeMap::new();
        if start < end {
            free.insert(start, end - start);
        }
        Self { free }
    }

    /// Free blocks in total.
    pub fn free_blocks(&self) -> u64 {
        self.free.values().sum()
    }

    /// Whether `block` is free.
    pub fn is_free(&self, block: u64) -> bool {
        self.free.range(..=block).next_back().is_some_and(|(&s, &l)| block < s + l)
    }

    /// Allocates up to `want` blocks, preferably starting at `goal`, else the first extent large
    /// enough, else the largest; returns `(start, count)`, `None` when nothing is free.
    pub fn alloc(&mut self, want: u64, goal: Option<u64>) -> Option<(u64, u64)> {
        if want == 0 {
            return None;
        }
        let at_goal = goal.and_then(|g| {
            let (&s, &l) = self.free.range(..=g).next_back()?;
            (g < s + l).then(|| (g, s + l - g))
        });
        let (start, avail) = at_goal
            .or_else(|| self.free.iter().find(|(_, &l)| l >= want).map(|(&s, &l)| (s, l)))
            .or_else(|| self.free.iter().max_by_key(|(_, &l)| l).map(|(&s, &l)| (s, l)))?;
        let got = want.min(avail);
        self.take(start, got).ok()?;
        Some((start, got))
    }

    /// Marks `[start, start + len)` used; `EINVAL` unless all of it is free.
    pub fn take(&mut self, start: u64, len: u64) -> Result<()> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        let (&s, &l) = self.free.range(..=start).next_back().ok_or(Errno::EINVAL)?;
        if len == 0 || end > s + l {
            return Err(Errno::EINVAL);
        }
        self.free.remove(&s);
        if s < start {
            self.free.insert(s, start - s);
        }
        if end < s + l {
            self.free.insert(end, s + l - end);
        }
        Ok(())
    }

    /// Frees `[start, start + len)`; `EINVAL` if any of it is already free.
    pub fn free(&mut self, start: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        let before = self.free.range(..end).next_back().map(|(&s, &l)| (s, l));
        if before.is_some_and(|(s, l)| s + l > start) {
            return Err(Errno::EINVAL);
        }
        let (mut s, mut e) = (start, end);
        if let Some((ps, pl)) = before.filter(|&(ps, pl)| ps + pl == start) {
            self.free.remove(&ps);
            s = ps;
            let _ = pl;
        }
        if let Some(nl) = self.free.remove(&end) {
            e = end + nl;
        }
        self.free.insert(s, e - s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_merge_and_goal() {
        let mut a = BlockAlloc::new(10, 100);
        assert_eq!(a.alloc(5, None), Some((10, 5)));
        assert_eq!(a.alloc(5, Some(15)), Some((15, 5)));
        assert_eq!(a.alloc(5, Some(50)), Some((50, 5)));
        assert!(!a.is_free(52) && a.is_free(55) && a.is_free(20));
        assert_eq!(a.free(15, 5), Ok(()));
        assert_eq!(a.free(16, 1), Err(Errno::EINVAL), "double free");
        assert_eq!(a.free(10, 5), Ok(()));
        assert_eq!(a.free(50, 5), Ok(()));
        assert_eq!(a, BlockAlloc::new(10, 100), "everything merged back");
        assert_eq!(a.take(20, 100), Err(Errno::EINVAL));
        assert_eq!(a.alloc(200, None), Some((10, 90)), "the largest when nothing fits");
        assert_eq!(a.alloc(1, None), None);
    }
}
