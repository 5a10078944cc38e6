//! The test filesystem's block reference counts: how many extents (of every file's data and
//! COW forks) point at a block, stored only for shared blocks (count >= 2), as XFS's refcount
//! B+tree stores only shared extents. A block the allocator holds and that has no entry has
//! one owner; a free block has none.
//!
//! Owns: the shared-block map. Locking: none of its own (lives under the filesystem's lock, next
//! to the allocator). Linux <-> here: XFS `xfs_refcount_*` (increase on remap, decrease on
//! unmap, free at zero), per block instead of per extent.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::alloc_map::BlockAlloc;
use crate::{Errno, Result};

/// Reference counts of shared blocks. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefCounts {
    shared: BTreeMap<u64, u32>,
}

impl RefCounts {
    /// No shared block.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reference count of `block` (0 when free).
    pub fn count(&self, alloc: &BlockAlloc, block: u64) -> u32 {
        match self.shared.get(&block) {
            Some(&c) => c,
            None if alloc.is_free(block) => 0,
            None => 1,
        }
    }

    /// Whether `block` has more than one owner.
    pub fn is_shared(&self, block: u64) -> bool {
        self.shared.contains_key(&block)
    }

    /// From `block` on, up to `max` blocks: whether the first is shared, and how many blocks in
    /// a row share that state.
    pub fn run(&self, block: u64, max: u64) -> (bool, u64) {
        let end = block.saturating_add(max);
        if self.is_shared(block) {
            let mut b = block;
            for (&k, _) in self.shared.range(block..end) {
                if k != b {
                    break;
                }
                b += 1;
            }
            (true, b - block)
        } else {
            let next = self.shared.range(block..end).next().map_or(end, |(&k, _)| k);
            (false, next - block)
        }
    }

    /// Adds one owner to every block of `[start, start + len)` (all allocated).
    pub fn share(&mut self, alloc: &BlockAlloc, start: u64, len: u64) -> Result<()> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        if (start..end).any(|b| alloc.is_free(b)) {
            return Err(Errno::EINVAL);
        }
        for b in start..end {
            *self.shared.entry(b).or_insert(1) += 1;
        }
        Ok(())
    }

    /// Drops one owner of every block of `[start, start + len)`, freeing those left with none.
    pub fn put(&mut self, alloc: &mut BlockAlloc, start: u64, len: u64) -> Result<()> {
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        if self.shared.range(start..end).next().is_none() {
            return alloc.free(start, len);
        }
        let mut run_start = None;
        for b in start..end {
            let last_owner = match self.shared.get_mut(&b) {
                Some(c) => {
                    *c -= 1;
                    if *c == 1 {
                        self.shared.remove(&b);
                    }
                    false
                }
                None => true,
            };
            match (last_owner, run_start) {
                (true, None) => run_start = Some(b),
                (false, Some(s)) => {
                    alloc.free(s, b - s)?;
                    run_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run_start {
            alloc.free(s, end - s)?;
        }
        Ok(())
    }

    /// Records one more owner of an already allocated `block` (mount of shared extents).
    pub fn add_owner(&mut self, block: u64) {
        *self.shared.entry(block).or_insert(1) += 1;
    }

    /// Every shared block and its count.
    pub fn shared_blocks(&self) -> Vec<(u64, u32)> {
        self.shared.iter().map(|(&b, &c)| (b, c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_put_and_runs() {
        let mut a = BlockAlloc::new(0, 100);
        let mut r = RefCounts::new();
        let (s, n) = a.alloc(10, None).unwrap();
        assert_eq!((s, n), (0, 10));
        r.share(&a, 2, 3).unwrap();
        assert_eq!((r.count(&a, 1), r.count(&a, 2), r.count(&a, 50)), (1, 2, 0));
        assert_eq!(r.run(0, 10), (false, 2));
        assert_eq!(r.run(2, 10), (true, 3));
        assert_eq!(r.run(5, 3), (false, 3));
        assert_eq!(r.share(&a, 50, 1), Err(Errno::EINVAL), "free blocks cannot be shared");
        r.put(&mut a, 0, 10).unwrap();
        assert!(a.is_free(0) && a.is_free(9) && !a.is_free(2) && !a.is_free(4));
        assert_eq!(r.count(&a, 3), 1);
        assert!(r.shared_blocks().is_empty());
        r.put(&mut a, 2, 3).unwrap();
        assert_eq!(a, BlockAlloc::new(0, 100));
    }
}
