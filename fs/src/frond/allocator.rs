//! Block allocation: free space in two B+trees (by block and by size), the free list that
//! feeds their own growth, and busy-extent avoidance.
//!
//! Owns the free-space trees ([`BNO`]: start -> length; [`CNT`]: (length, start) -> nothing),
//! which always hold the same set of maximal free extents (adjacent free extents are merged), and
//! the root block's free list (Linux: the AGFL), from which the free-space trees take their own
//! nodes so allocating never recurses. [`FsState::fix_freelist`] refills the list before every
//! allocation or free to cover the worst case of that call (two record inserts per tree, each
//! splitting up to height + 1 nodes) and trims it when merges have overfilled it.
//!
//! Accounting: the root block's `free_blocks` counts every block the allocator owns: free
//! extents, free-list blocks and free-space tree nodes. So moving blocks between those never
//! changes it, and allocating n blocks for anything else lowers it by exactly n. A fixed
//! set-aside ([`super::state::set_aside`]) covers free-list and free-space-tree needs.
//!
//! Busy extents: blocks freed in the running transaction may not be reused until it commits
//! (a crash would otherwise expose another file's data through the old owner), and freed
//! metadata blocks not until the next checkpoint (the log may still hold their images).
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | bnobt / cntbt | [`BNO`] / [`CNT`] |
//! | `xfs_alloc_fix_freelist` + AGFL | [`FsState::fix_freelist`] + `RootBlock::freelist` |
//! | `xfs_alloc_vextent` (near-bno, then by-size) | [`FsState::alloc_extent`] |
//! | `xfs_free_extent` / `xfs_free_ag_extent` (merge with neighbours) | [`FsState::free_extent`] |
//! | `xfs_extent_busy_trim` | gaps between busy ranges (`ExtentSet::largest_gap`) |

use alloc::vec::Vec;

use super::btree::{Spec, Tree, TreeKind};
use super::extset::ExtentSet;
use super::format::{get64, FResult};
use super::state::FsState;
use super::superblock::FREELIST_CAP;
use crate::frond_corrupt;
use crate::Errno;

/// Free space by start block: key = start, value = length (u64).
pub static BNO: Spec =
    Spec { kind: TreeKind::FreeByBlock, name: "free-space (by block)", key_size: 8, val_size: 8 };
/// Free space by size: key = (length << 64) | start, no value.
pub static CNT: Spec =
    Spec { kind: TreeKind::FreeBySize, name: "free-space (by size)", key_size: 16, val_size: 0 };

/// The by-size key of an extent.
pub fn cnt_key(len: u64, start: u64) -> u128 {
    (len as u128) << 64 | start as u128
}

/// Largest extent one allocation returns.
pub const MAX_ALLOC: u64 = 1 << 21;

impl FsState {
    /// The by-block tree.
    pub fn bno(&self) -> Tree {
        Tree::new(&BNO, 0, self.root.bno_root)
    }

    /// The by-size tree.
    pub fn cnt(&self) -> Tree {
        Tree::new(&CNT, 0, self.root.cnt_root)
    }

    fn set_bno(&mut self, t: Tree) {
        if t.root != self.root.bno_root {
            self.root.bno_root = t.root;
            self.touch_root();
        }
    }

    fn set_cnt(&mut self, t: Tree) {
        if t.root != self.root.cnt_root {
            self.root.cnt_root = t.root;
            self.touch_root();
        }
    }

    fn bno_insert(&mut self, start: u64, len: u64) -> FResult<()> {
        let mut t = self.bno();
        let r = t.insert(self, start as u128, &len.to_le_bytes());
        self.set_bno(t);
        r
    }

    fn bno_delete(&mut self, start: u64) -> FResult<()> {
        let mut t = self.bno();
        let r = t.delete(self, start as u128).map(|_| ());
        self.set_bno(t);
        r
    }

    fn bno_update(&mut self, start: u64, len: u64) -> FResult<()> {
        let t = self.bno();
        t.update(self, start as u128, &len.to_le_bytes())
    }

    fn cnt_insert(&mut self, len: u64, start: u64) -> FResult<()> {
        let mut t = self.cnt();
        let r = t.insert(self, cnt_key(len, start), &[]);
        self.set_cnt(t);
        r
    }

    fn cnt_delete(&mut self, len: u64, start: u64) -> FResult<()> {
        let mut t = self.cnt();
        let r = t.delete(self, cnt_key(len, start)).map(|_| ());
        self.set_cnt(t);
        r
    }

    /// Validates a free extent read from a tree.
    fn free_rec(&mut self, s: u64, l: u64) -> FResult<(u64, u64)> {
        if l == 0 || s < self.sb.data_start || s.checked_add(l).is_none_or(|e| e > self.sb.block_count) {
            let c = frond_corrupt!("free-space record {s}+{l} outside the data area");
            return Err(self.corrupt(c));
        }
        Ok((s, l))
    }

    /// The free extent containing or preceding `blk`: (start, length).
    fn free_le(&mut self, blk: u64) -> FResult<Option<(u64, u64)>> {
        let t = self.bno();
        match t.seek_le(self, blk as u128)? {
            Some((k, v)) => Ok(Some(self.free_rec(k as u64, get64(&v, 0))?)),
            None => Ok(None),
        }
    }

    /// The first free extent starting at or after `blk`.
    fn free_ge(&mut self, blk: u64) -> FResult<Option<(u64, u64)>> {
        let t = self.bno();
        match t.seek_ge(self, blk as u128)? {
            Some((k, v)) => Ok(Some(self.free_rec(k as u64, get64(&v, 0))?)),
            None => Ok(None),
        }
    }

    fn busy(&self) -> ExtentSet {
        let mut b = self.busy_commit.clone();
        for (s, l) in self.busy_ckpt.iter() {
            b.insert(s, l);
        }
        b
    }

    /// Free-list length the next allocation or free needs.
    fn freelist_need(&mut self) -> FResult<usize> {
        let hb = self.bno().height(self)? as usize;
        let hc = self.cnt().height(self)? as usize;
        Ok((2 * (hb + 1) + 2 * (hc + 1)).min(FREELIST_CAP - 16))
    }

    /// Gives free-list blocks back to the trees until the list is comfortably below its
    /// capacity (tree merges put freed nodes on it). Freeing can merge more nodes onto the
    /// list, but every round shrinks the list or the trees, so this ends.
    fn trim_freelist(&mut self) -> FResult<()> {
        let mut guard = 0u64;
        while self.root.freelist.len() > FREELIST_CAP - 16 {
            guard += 1;
            if guard > 1 << 16 {
                return Err(frond_corrupt!("allocator free list cannot be trimmed").into());
            }
            let Some(blk) = self.root.freelist.pop() else { break };
            self.touch_root();
            self.free_raw(blk, 1)?;
            self.busy_ckpt.insert(blk, 1);
        }
        Ok(())
    }

    /// Refills the free list to what the next call needs, or trims it after merges.
    pub fn fix_freelist(&mut self) -> FResult<()> {
        let need = self.freelist_need()?;
        self.trim_freelist()?;
        let mut guard = 0;
        while self.root.freelist.len() < need {
            guard += 1;
            if guard > FREELIST_CAP {
                return Err(frond_corrupt!("allocator free list cannot be refilled").into());
            }
            let want = (need - self.root.freelist.len()) as u64 + 4;
            let Some((a, n, es, el)) = self.find_free(self.sb.data_start, 1, want)? else {
                return Err(Errno::ENOSPC.into());
            };
            self.take(es, el, a, n, true)?;
        }
        Ok(())
    }

    /// Finds a run of `min ..= max` free, non-busy blocks: near `goal` if a whole `max` fits
    /// there, else the best fit by size, else the largest run of at least `min`. Returns the
    /// run and the free extent holding it.
    fn find_free(&mut self, goal: u64, min: u64, max: u64) -> FResult<Option<(u64, u64, u64, u64)>> {
        let busy = self.busy();
        let gap = |s: u64, l: u64| busy.largest_gap(s, s + l, max);
        // Near the goal.
        if let Some((s, l)) = self.free_le(goal)? {
            if s + l > goal {
                if let Some((a, n)) = busy.largest_gap(goal, s + l, max) {
                    if n >= max {
                        return Ok(Some((a, max, s, l)));
                    }
                }
            }
        }
        if let Some((s, l)) = self.free_ge(goal)? {
            if let Some((a, n)) = gap(s, l) {
                if n >= max {
                    return Ok(Some((a, max, s, l)));
                }
            }
        }
        // Best fit by size: the smallest extent that has a non-busy run of `max`.
        let mut from = cnt_key(max, 0);
        loop {
            let mut batch: Vec<(u64, u64)> = Vec::new();
            let t = self.cnt();
            t.walk(self, from, &mut |k, _| {
                batch.push(((k >> 64) as u64, k as u64));
                Ok(batch.len() < 32)
            })?;
            for &(l, s) in &batch {
                self.free_rec(s, l)?;
                if let Some((a, n)) = gap(s, l) {
                    if n >= max {
                        return Ok(Some((a, max, s, l)));
                    }
                }
            }
            match batch.last() {
                Some(&(l, s)) if batch.len() == 32 => from = cnt_key(l, s) + 1,
                _ => break,
            }
        }
        // The largest run of at least `min`, from the largest extents down.
        let mut key = u128::MAX;
        loop {
            let t = self.cnt();
            let Some((k, _)) = t.seek_le(self, key)? else { break };
            let (l, s) = ((k >> 64) as u64, k as u64);
            if l < min {
                break;
            }
            self.free_rec(s, l)?;
            if let Some((a, n)) = gap(s, l) {
                if n >= min {
                    return Ok(Some((a, n.min(max), s, l)));
                }
            }
            if k == 0 {
                break;
            }
            key = k - 1;
        }
        Ok(None)
    }

    /// Removes `[a, a + n)` from the free extent `[es, es + el)`. With `to_freelist` the blocks
    /// go to the free list (still allocator-owned); otherwise they leave the allocator.
    fn take(&mut self, es: u64, el: u64, a: u64, n: u64, to_freelist: bool) -> FResult<()> {
        debug_assert!(es <= a && a + n <= es + el && n > 0);
        // Deletes first (they only free nodes), then hand out the blocks, then the inserts
        // (which may take nodes from the free list).
        self.cnt_delete(el, es)?;
        if a == es {
            self.bno_delete(es)?;
        } else {
            self.bno_update(es, a - es)?;
        }
        if to_freelist {
            self.root.freelist.extend(a..a + n);
        } else {
            self.root.free_blocks = self.root.free_blocks.checked_sub(n).ok_or_else(|| {
                frond_corrupt!("free-block count {} below an allocation of {n}", self.root.free_blocks)
            })?;
        }
        self.touch_root();
        if a > es {
            self.cnt_insert(a - es, es)?;
        }
        let end = es + el;
        if a + n < end {
            self.bno_insert(a + n, end - a - n)?;
            self.cnt_insert(end - a - n, a + n)?;
        }
        Ok(())
    }

    /// Allocates `min ..= max` contiguous blocks, preferring `goal`. `ENOSPC` when no run of
    /// `min` free blocks exists. The caller has reserved the space (see `FsState::op`).
    pub fn alloc_extent(&mut self, goal: u64, min: u64, max: u64) -> FResult<(u64, u64)> {
        debug_assert!(min >= 1 && min <= max);
        let max = max.min(MAX_ALLOC);
        let min = min.min(max);
        // A refill is consistent on its own: if nothing else changed yet in this operation,
        // failing to find space afterwards is a clean ENOSPC.
        let clean = self.changes == self.op_base;
        self.fix_freelist()?;
        if clean {
            self.op_base = self.changes;
        }
        let goal = goal.clamp(self.sb.data_start, self.sb.block_count - 1);
        let Some((a, n, es, el)) = self.find_free(goal, min, max)? else {
            return Err(Errno::ENOSPC.into());
        };
        self.take(es, el, a, n, false)?;
        self.trim_freelist()?;
        Ok((a, n))
    }

    /// Returns `[start, start + len)` to free space. `metadata` blocks stay busy until the next
    /// checkpoint, data blocks until the next commit. Freeing a block that is already free, or
    /// one outside the data area, is corruption.
    pub fn free_extent(&mut self, start: u64, len: u64, metadata: bool) -> FResult<()> {
        self.fix_freelist()?;
        self.free_raw(start, len)?;
        self.trim_freelist()?;
        self.root.free_blocks = self.root.free_blocks.saturating_add(len);
        self.touch_root();
        if metadata {
            self.busy_ckpt.insert(start, len);
        } else {
            self.busy_commit.insert(start, len);
        }
        Ok(())
    }

    /// Inserts `[a, a + n)` into the free-space trees, merging with its neighbours (no
    /// accounting change: callers adjust `free_blocks`).
    fn free_raw(&mut self, a: u64, n: u64) -> FResult<()> {
        if n == 0 || a < self.sb.data_start || a.checked_add(n).is_none_or(|e| e > self.sb.block_count) {
            return Err(frond_corrupt!("freeing blocks {a}+{n} outside the data area").into());
        }
        let left = self.free_le(a)?;
        if let Some((ls, ll)) = left {
            if ls + ll > a {
                return Err(frond_corrupt!("block {a} freed but already free (free extent {ls}+{ll})").into());
            }
        }
        let right = self.free_ge(a)?;
        if let Some((rs, rl)) = right {
            if rs < a + n {
                return Err(
                    frond_corrupt!("block {rs} freed but already free (free extent {rs}+{rl})").into()
                );
            }
        }
        let ml = left.filter(|&(ls, ll)| ls + ll == a);
        let mr = right.filter(|&(rs, _)| rs == a + n);
        if let Some((ls, ll)) = ml {
            self.cnt_delete(ll, ls)?;
        }
        if let Some((rs, rl)) = mr {
            self.cnt_delete(rl, rs)?;
            self.bno_delete(rs)?;
        }
        let s = ml.map_or(a, |(ls, _)| ls);
        let l = ml.map_or(0, |(_, ll)| ll) + n + mr.map_or(0, |(_, rl)| rl);
        if ml.is_some() {
            self.bno_update(s, l)?;
        } else {
            self.bno_insert(s, l)?;
        }
        self.cnt_insert(l, s)
    }

    /// One block for a metadata tree node or an inode chunk.
    pub fn alloc_meta_block(&mut self) -> FResult<u64> {
        let (b, _) = self.alloc_extent(self.sb.data_start, 1, 1)?;
        Ok(b)
    }

    /// Frees a metadata block (busy until the next checkpoint).
    pub fn free_meta_block(&mut self, blk: u64) -> FResult<()> {
        self.cache.forget(blk);
        self.free_extent(blk, 1, true)
    }

    /// Seeds empty free-space trees with `[start, start + len)` (mkfs). The caller has put
    /// enough blocks on the free list for the first nodes.
    pub fn seed_free_space(&mut self, start: u64, len: u64) -> FResult<()> {
        self.bno_insert(start, len)?;
        self.cnt_insert(len, start)?;
        self.touch_root();
        Ok(())
    }
}
