//! The COW fork: per-inode staging extents for writes to shared blocks.
//!
//! Owns the copy-on-write life cycle. The COW fork is in-core only (`Inode::cow`); staging
//! blocks are recorded on disk as COW-domain records in the refcount tree, so blocks staged
//! when the system crashed are freed at the next mount. A write to a shared range first gets
//! staging space: [`FsState::cow_prepare`] allocates blocks for the shared parts (direct I/O),
//! or the engine reserves delalloc in the COW fork (`reserve_delalloc(.., Fork::Cow)`) and
//! allocates it at writeback (`allocate(.., Fork::Cow)`). When the write completes,
//! [`FsState::cow_remap`] moves the staging extents into the data fork, one extent per
//! transaction: the old blocks lose a reference (freed at zero), the new ones are mapped
//! written, the staging record goes. An untorn write of several blocks stages all of its range
//! ([`FsState::cow_stage_all`], shared or not) and remaps it in one transaction
//! ([`FsState::cow_remap_atomic`]). On an I/O error [`FsState::cow_cancel`] frees the staging
//! blocks and leaves the data fork untouched.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_reflink_allocate_cow` | [`FsState::cow_prepare`] |
//! | `xfs_reflink_allocate_cow` for `IOMAP_ATOMIC` (`xfs_atomic_write_cow_iomap_begin`) | [`FsState::cow_stage_all`] |
//! | `xfs_reflink_end_cow` (per-extent transactions) | [`FsState::cow_remap`] |
//! | `xfs_reflink_end_atomic_cow` (one transaction) | [`FsState::cow_remap_atomic`] |
//! | `xfs_reflink_cancel_cow_range` | [`FsState::cow_cancel`] |
//! | `xfs_reflink_unshare` | [`FsState::cow_prepare`] + engine copy + [`FsState::cow_remap`] |

use alloc::vec::Vec;

use super::extent::fork::{insert_real, lookup, next_start, remove_range, Fork};
use super::extent::ops::{check_range, MapKind};
use super::extent::record::{Ext, ExtState};
use super::extent::MAX_FILE_BLOCKS;
use super::format::FResult;
use super::inode::FLAG_REFLINK;
use super::state::{FsState, Pool};
use crate::Errno;

/// One real COW extent to move into the data fork: file blocks `[pos, pos + len)` staged at
/// disk block `disk`.
struct RemapStep {
    pos: u64,
    len: u64,
    disk: u64,
}

impl RemapStep {
    /// Blocks the remap may need (bmap and refcount tree growth), as [`FsState::op`] takes them.
    fn need(&self, st: &mut FsState, ino: u64) -> FResult<u64> {
        // The data fork range may hold several extents: each is unmapped in this step.
        let old = {
            let mut tmp = st.dmap(ino)?.clone();
            remove_range(&mut tmp, self.pos, self.len).len() as u64
        };
        Ok(st.bmap_blocks(ino, 2)? + st.refcount_blocks(old + 2)?)
    }
}

impl FsState {
    /// Allocates COW staging blocks for every shared, not yet staged part of
    /// `[fb, fb + count)` (direct I/O writes and unshare). Returns the blocks allocated.
    pub fn cow_prepare(&mut self, ino: u64, fb: u64, count: u64) -> FResult<u64> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        if self.inode(ino)?.flags & FLAG_REFLINK == 0 {
            return Ok(0);
        }
        let end = fb + count;
        let mut pos = fb;
        let mut total = 0;
        while pos < end {
            let m = self.map(ino, pos, end - pos, Fork::Data)?;
            let step = m.len;
            if m.shared {
                total += self.stage(ino, pos, pos + step)?;
            }
            pos += step;
        }
        Ok(total)
    }

    /// Allocates COW staging blocks for every not yet staged block of `[fb, fb + count)`,
    /// shared or not (an untorn write of several blocks is written out of place, then
    /// remapped by [`FsState::cow_remap_atomic`]). Returns the blocks allocated.
    pub fn cow_stage_all(&mut self, ino: u64, fb: u64, count: u64) -> FResult<u64> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        self.stage(ino, fb, fb + count)
    }

    /// Gives `[pos, end)` real COW fork extents: holes and delalloc of the COW fork are
    /// allocated (staging records on disk), real staging is kept. Returns the blocks allocated.
    fn stage(&mut self, ino: u64, pos: u64, end: u64) -> FResult<u64> {
        let mut p = pos;
        let mut total = 0;
        while p < end {
            let c = self.map(ino, p, end - p, Fork::Cow)?;
            if matches!(c.kind, MapKind::Hole | MapKind::Delalloc) {
                let got = self.allocate(ino, p, c.len, true, Fork::Cow)?;
                total += got.len;
                p += got.len;
            } else {
                p += c.len;
            }
        }
        Ok(total)
    }

    /// Moves the real COW extents in `[fb, fb + count)` into the data fork (write completion),
    /// one extent per transaction.
    pub fn cow_remap(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        for step in self.remap_steps(ino, fb, fb + count)? {
            let need = step.need(self, ino)?;
            self.op(need, 4 * need as usize + 16, Pool::Reserve, |st| st.remap_step(ino, &step))?;
        }
        Ok(())
    }

    /// Moves the COW staging of all of `[fb, fb + count)` into the data fork in one operation
    /// (one transaction), and with it sets both sizes to `size` when given: an untorn write of
    /// several blocks becomes visible all at once or not at all. `EIO` (nothing changed) unless
    /// the whole range is staged with real blocks.
    pub fn cow_remap_atomic(&mut self, ino: u64, fb: u64, count: u64, size: Option<u64>) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let steps = self.remap_steps(ino, fb, fb + count)?;
        if steps.iter().map(|s| s.len).sum::<u64>() != count {
            return Err(Errno::EIO.into());
        }
        let mut need = 0;
        for step in &steps {
            need += step.need(self, ino)?;
        }
        self.op(need, 4 * need as usize + 16 * steps.len() + 2, Pool::Reserve, |st| {
            for step in &steps {
                st.remap_step(ino, step)?;
            }
            if let Some(size) = size {
                let i = st.inode(ino)?;
                i.disk_size = size;
                i.size = size;
                st.mark_inode_dirty(ino);
            }
            Ok(())
        })
    }

    /// The real COW extents of `[fb, end)` as remap steps (delalloc staging is skipped).
    fn remap_steps(&mut self, ino: u64, fb: u64, end: u64) -> FResult<Vec<RemapStep>> {
        let mut steps = Vec::new();
        let mut pos = fb;
        let cow = &self.inode(ino)?.cow;
        while pos < end {
            let (s, e) = match lookup(cow, pos) {
                Some(x) => x,
                None => match next_start(cow, pos).filter(|&s| s < end) {
                    Some(s) => {
                        pos = s;
                        continue;
                    }
                    None => break,
                },
            };
            let len = (s + e.len).min(end) - pos;
            if e.is_real() {
                steps.push(RemapStep { pos, len, disk: e.disk + (pos - s) });
            }
            pos += len;
        }
        Ok(steps)
    }

    /// One extent of a remap: the data fork range loses its extents (old blocks lose a
    /// reference, delalloc is released), the staging blocks are mapped written, the staging
    /// record and the COW fork range go.
    fn remap_step(&mut self, ino: u64, step: &RemapStep) -> FResult<()> {
        let &RemapStep { pos, len, disk } = step;
        let reflink = self.inode(ino)?.flags & FLAG_REFLINK != 0;
        let mut old = Vec::new();
        self.fork_edit(ino, pos, pos + len, |_, map| {
            old = remove_range(map, pos, len);
            insert_real(map, pos, Ext::real(disk, len, ExtState::Written));
            Ok(())
        })?;
        for (_, o) in &old {
            match o.state {
                ExtState::Delalloc => {
                    self.delalloc_reserved = self.delalloc_reserved.saturating_sub(o.len + o.ind);
                }
                _ => self.unmap_blocks(o.disk, o.len, reflink)?,
            }
        }
        self.cow_record_remove(disk, len)?;
        let cow = &mut self.inode(ino)?.cow;
        remove_range(cow, pos, len);
        Ok(())
    }

    /// Drops the COW fork over `[fb, fb + count)`: staging blocks are freed, delalloc released.
    /// The data fork is untouched (I/O error, truncate, punch).
    pub fn cow_cancel(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        let end = fb.saturating_add(count).min(MAX_FILE_BLOCKS);
        if self.inode(ino)?.cow.is_empty() {
            return Ok(());
        }
        loop {
            let cow = &self.inode(ino)?.cow;
            let first = match lookup(cow, fb) {
                Some(x) => Some(x),
                None => next_start(cow, fb).filter(|&s| s < end).and_then(|s| cow.get(&s).map(|e| (s, *e))),
            };
            let Some((s, e)) = first else { break };
            let a = s.max(fb);
            let l = (s + e.len).min(end) - a;
            if !e.is_real() {
                let cow = &mut self.inode(ino)?.cow;
                let removed = remove_range(cow, a, l);
                let r: u64 = removed.iter().map(|(_, p)| p.len + p.ind).sum();
                self.delalloc_reserved = self.delalloc_reserved.saturating_sub(r);
                self.bump_seq(ino)?;
                continue;
            }
            let d = e.disk + (a - s);
            let need = self.refcount_blocks(2)?;
            self.op(need, 4 * need as usize + 8, Pool::Reserve, |st| {
                st.cow_record_remove(d, l)?;
                st.free_extent(d, l, false)?;
                let cow = &mut st.inode(ino)?.cow;
                remove_range(cow, a, l);
                st.bump_seq(ino)
            })?;
        }
        Ok(())
    }

    /// Cancels every in-core COW fork (unmount).
    pub fn cancel_all_cow(&mut self) -> FResult<()> {
        let inos: Vec<u64> = self.inodes.iter().filter(|(_, i)| !i.cow.is_empty()).map(|(&n, _)| n).collect();
        for ino in inos {
            self.cow_cancel(ino, 0, MAX_FILE_BLOCKS)?;
        }
        Ok(())
    }
}
