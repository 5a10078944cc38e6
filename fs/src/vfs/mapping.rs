//! frond's mapping callback: `impl IomapOps for InodeOps`.
//!
//! - `next`, reads and reports: the data fork's extent covering the position (INLINE for an
//!   inline file's block 0).
//! - `next`, buffered writes and zeroing: the COW fork first (staging there wins: SHARED, with
//!   the data extent as srcmap); a shared data extent gets a delalloc reservation in the COW
//!   fork (SHARED + srcmap = the old data, so partial blocks are read around from it); a hole
//!   gets a delalloc reservation (NEW; zeroing leaves holes alone); anything else is returned
//!   as it is. A small empty file is written inline (INLINE) until a write or zeroing reaches
//!   past the inline capacity, which first moves the data to a block (`unstuff`).
//! - `next`, direct I/O ([`IomapOp::DIRECT`]): see `dio_map` (reads see MAPPED / UNWRITTEN /
//!   HOLE / INLINE, delalloc `ENOTBLK`; writes allocate UNWRITTEN + NEW over holes and delalloc,
//!   stage COW blocks at once over shared data (SHARED + srcmap), inline data `ENOTBLK`).
//! - `next`, writeback ([`IomapOp::WRITEBACK`]): COW fork delalloc is allocated (MAPPED +
//!   SHARED); data delalloc is allocated UNWRITTEN (converted at completion: a crash never
//!   exposes stale blocks); a shared data extent without staging gets staging blocks now
//!   (dirtied by zeroing, say) so it is never overwritten in place.
//! - end work (the call after a mapping): after a short write, delalloc reserved by it (NEW,
//!   or COW staging) that has no dirty cache is punched again.
//! - `is_valid`: the iomap's cookie equals the mapping sequence (bumped under the map lock by
//!   every extent change made through the file API).
//! - `ioend_done`: on error, COW staging of the range is cancelled; else SHARED ranges are
//!   remapped into the data fork, UNWRITTEN ranges converted; then the on-disk size becomes
//!   `min(end, in-core size)` if that is larger (`end` itself for a direct write, which
//!   completes before the engine raises the in-core size). All in frond transactions.
//! - inline data: frond's inline area; `commit`: frond's journal commit (PREFLUSH + FUA).
//!
//! Lock order: the map lock is taken around frond calls that change or read the maps, never
//! while waiting for a folio or I/O completion.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here | deviation |
//! |---|---|---|
//! | `xfs_read_iomap_begin` | reads | |
//! | `xfs_direct_write_iomap_begin`, `xfs_dio_write_end_io` | `dio_map`, `ioend_done` with DIRECT | see `dio_map` |
//! | `xfs_buffered_write_iomap_begin` (+ `xfs_reflink_allocate_cow` reservation), `xfs_buffered_write_iomap_end` | writes, end work | |
//! | `xfs_map_blocks` + `xfs_bmapi_convert_delalloc` | writeback | |
//! | `xfs_end_ioend` (`xfs_reflink_end_cow`, `xfs_iomap_write_unwritten`, `xfs_setfilesize`, `xfs_reflink_cancel_cow_range`) | `ioend_done` | |
//! | `xfs_iomap_valid` (per-fork sequence numbers) | `is_valid` | the cookie is the page-cache mapping's sequence, bumped under the map lock after every extent change made through the file API, not frond's `mapping_seq` (which restarts when frond evicts and reloads an inode) |
//! | gfs2 stuffed inodes / XFS local format | inline | a new file is written inline while it fits |

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::inode::InodeOps;
use crate::frond::{Fork, MapKind, Mapping};
use crate::iomap::{
    IoendDone, IoendFlags, Iomap, IomapFlags, IomapOp, IomapOps, IomapPair, IomapType, MapDone, MapRequest,
    NULL_ADDR,
};
use crate::{Errno, Result};

/// frond's largest file in blocks.
pub(crate) const MAX_BLOCKS: u64 = crate::frond::extent::MAX_FILE_BLOCKS;

/// Bytes of inline data an inode holds.
pub(crate) const INLINE_CAPACITY: u64 = crate::frond::inode::LITERAL_SIZE as u64;

impl InodeOps {
    /// The blocks covering bytes `[pos, pos + len)` (at least one), capped at the largest file.
    pub(super) fn blocks(&self, pos: u64, len: u64) -> (u64, u64) {
        let fb = (pos / self.bs).min(MAX_BLOCKS - 1);
        let end = pos.saturating_add(len).div_ceil(self.bs).min(MAX_BLOCKS);
        (fb, end.saturating_sub(fb).max(1))
    }

    pub(super) fn iomap_of(&self, m: &Mapping) -> Iomap {
        let (off, len) = (m.file_block * self.bs, m.len * self.bs);
        match m.kind {
            MapKind::Hole => Iomap::hole(off, len),
            MapKind::Delalloc => Iomap::new(off, len, NULL_ADDR, IomapType::Delalloc),
            MapKind::Mapped => Iomap::new(off, len, m.disk_block * self.bs, IomapType::Mapped),
            MapKind::Unwritten => Iomap::new(off, len, m.disk_block * self.bs, IomapType::Unwritten),
            MapKind::Inline => Iomap::new(0, self.bs, NULL_ADDR, IomapType::Inline),
        }
    }

    fn seq(&self) -> u64 {
        self.file.mapping().seq()
    }

    pub(super) fn bump(&self) {
        self.file.mapping().bump_seq();
    }

    pub(super) fn map(&self, fb: u64, count: u64, fork: Fork) -> Result<Mapping> {
        self.frond.map(self.ino, fb, count, fork)
    }

    /// Whether the file has no extent at all (a candidate for inline data).
    fn is_empty_file(&self) -> Result<bool> {
        let m = self.map(0, MAX_BLOCKS, Fork::Data)?;
        Ok(m.kind == MapKind::Hole && m.len == MAX_BLOCKS)
    }

    /// A COW pair: `cow` (the staging extent) as SHARED over `data` (the old data, srcmap),
    /// both cut to the shorter.
    fn cow_pair(&self, cow: Mapping, data: Mapping) -> IomapPair {
        let len = cow.len.min(data.len);
        let c = Mapping { len, ..cow };
        let d = Mapping { len, ..data };
        IomapPair::with_srcmap(self.iomap_of(&c).with_flags(IomapFlags::SHARED), self.iomap_of(&d))
    }

    /// Reads and reports: the data fork.
    fn map_read(&self, req: &MapRequest) -> Result<IomapPair> {
        let (fb, count) = self.blocks(req.pos, req.len);
        let m = self.map(fb, count, Fork::Data)?;
        Ok(IomapPair::new(self.iomap_of(&m)))
    }

    /// Buffered writes and zeroing. See the module docs.
    fn map_write(&self, req: &MapRequest) -> Result<IomapPair> {
        let zero = req.op.contains(IomapOp::ZERO);
        let end = req.pos.saturating_add(req.len);
        let (fb, count) = self.blocks(req.pos, req.len);
        let first = self.map(fb, count, Fork::Data)?;
        if first.kind == MapKind::Inline {
            if end <= INLINE_CAPACITY {
                return Ok(IomapPair::new(self.iomap_of(&first)));
            }
            self.frond.unstuff(self.ino)?;
            self.bump();
        } else if !zero
            && end <= INLINE_CAPACITY
            && self.file.size() <= INLINE_CAPACITY
            && first.kind == MapKind::Hole
            && self.is_empty_file()?
        {
            return Ok(IomapPair::new(Iomap::new(0, self.bs, NULL_ADDR, IomapType::Inline)));
        }
        let cow = self.map(fb, count, Fork::Cow)?;
        if cow.kind != MapKind::Hole {
            let data = self.map(fb, cow.len, Fork::Data)?;
            return Ok(self.cow_pair(cow, data));
        }
        let data = self.map(fb, cow.len, Fork::Data)?;
        match data.kind {
            MapKind::Hole if zero => Ok(IomapPair::new(self.iomap_of(&data))),
            MapKind::Hole => {
                let n = self.frond.reserve_delalloc(self.ino, fb, data.len, Fork::Data)?;
                self.bump();
                let m = self.map(fb, n, Fork::Data)?;
                Ok(IomapPair::new(self.iomap_of(&m).with_flags(IomapFlags::NEW)))
            }
            MapKind::Unwritten if data.shared && zero => Ok(IomapPair::new(self.iomap_of(&data))),
            MapKind::Mapped | MapKind::Unwritten if data.shared => {
                let n = self.frond.reserve_delalloc(self.ino, fb, data.len, Fork::Cow)?;
                self.bump();
                let cow = self.map(fb, n, Fork::Cow)?;
                Ok(self.cow_pair(cow, data))
            }
            _ => Ok(IomapPair::new(self.iomap_of(&data))),
        }
    }

    /// The writeback mapping call. See the module docs.
    fn map_writeback(&self, req: &MapRequest) -> Result<IomapPair> {
        let (fb, count) = self.blocks(req.pos, req.len);
        let cow = self.map(fb, count, Fork::Cow)?;
        match cow.kind {
            MapKind::Delalloc => {
                let m = self.frond.allocate(self.ino, fb, cow.len, false, Fork::Cow)?;
                self.bump();
                return Ok(IomapPair::new(self.iomap_of(&m).with_flags(IomapFlags::SHARED)));
            }
            MapKind::Mapped | MapKind::Unwritten => {
                return Ok(IomapPair::new(self.iomap_of(&cow).with_flags(IomapFlags::SHARED)));
            }
            _ => {}
        }
        let data = self.map(fb, cow.len, Fork::Data)?;
        match data.kind {
            MapKind::Delalloc => {
                let m = self.frond.allocate(self.ino, fb, data.len, true, Fork::Data)?;
                self.bump();
                Ok(IomapPair::new(self.iomap_of(&m)))
            }
            MapKind::Mapped | MapKind::Unwritten if data.shared => {
                self.frond.cow_prepare(self.ino, fb, data.len)?;
                self.bump();
                let c = self.map(fb, data.len, Fork::Cow)?;
                if c.kind == MapKind::Hole {
                    return Err(Errno::EIO);
                }
                Ok(IomapPair::new(self.iomap_of(&c).with_flags(IomapFlags::SHARED)))
            }
            // Inline data never goes through writeback.
            MapKind::Inline => Err(Errno::EIO),
            _ => Ok(IomapPair::new(self.iomap_of(&data))),
        }
    }

    /// End work for the previous mapping: after a short write, punch the delalloc it reserved
    /// (NEW, or COW staging) where no dirty cache needs it.
    fn end_mapping(&self, prev: &MapDone) -> Result<()> {
        let m = &prev.iomap;
        let reserved = m.flags.intersects(IomapFlags::NEW | IomapFlags::SHARED);
        if prev.processed >= prev.len || m.kind != IomapType::Delalloc || !reserved {
            return Ok(());
        }
        let bs = self.bs;
        let from = (prev.pos + prev.processed).div_ceil(bs).max(m.offset / bs);
        let to = (prev.pos + prev.len).div_ceil(bs).min(m.end() / bs);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for b in from..to {
            if self.file.has_dirty_cache(b * bs, (b + 1) * bs) {
                continue;
            }
            match runs.last_mut() {
                Some((s, l)) if *s + *l == b => *l += 1,
                _ => runs.push((b, 1)),
            }
        }
        if runs.is_empty() {
            return Ok(());
        }
        let fork = if m.flags.contains(IomapFlags::SHARED) { Fork::Cow } else { Fork::Data };
        let _g = self.map_lock.lock();
        for (s, l) in runs {
            self.frond.punch_delalloc(self.ino, s, l, fork)?;
        }
        self.bump();
        Ok(())
    }
}

impl IomapOps for InodeOps {
    fn next(&self, req: MapRequest, prev: Option<&MapDone>) -> Result<Option<IomapPair>> {
        if let Some(p) = prev {
            self.end_mapping(p)?;
        }
        if req.is_finish() {
            return Ok(None);
        }
        let _g = self.map_lock.lock();
        let pair = if req.op.contains(IomapOp::WRITEBACK) {
            self.map_writeback(&req)?
        } else if req.op.contains(IomapOp::DIRECT | IomapOp::WRITE) {
            self.map_direct_write(&req)?
        } else if req.op.contains(IomapOp::DIRECT) {
            self.map_direct_read(&req)?
        } else if req.op.intersects(IomapOp::WRITE | IomapOp::ZERO) {
            self.map_write(&req)?
        } else {
            self.map_read(&req)?
        };
        let seq = self.seq();
        Ok(Some(IomapPair { iomap: pair.iomap.with_validity(seq), srcmap: pair.srcmap.with_validity(seq) }))
    }

    fn is_valid(&self, iomap: &Iomap) -> bool {
        iomap.validity == self.seq()
    }

    fn ioend_done(&self, done: &IoendDone) -> Result<()> {
        let (fb, count) = self.blocks(done.offset, done.size);
        let _g = self.map_lock.lock();
        if done.error.is_some() {
            if done.flags.contains(IoendFlags::SHARED) {
                self.frond.cow_cancel(self.ino, fb, count)?;
                self.bump();
            }
            return Ok(());
        }
        if done.flags.contains(IoendFlags::SHARED) {
            self.frond.cow_remap(self.ino, fb, count)?;
            self.bump();
        } else if done.flags.contains(IoendFlags::UNWRITTEN) {
            self.frond.convert_unwritten(self.ino, fb, count)?;
            self.bump();
        }
        // A direct write completes before the engine raises the in-core size.
        let end = done.offset.saturating_add(done.size);
        let new_size = if done.flags.contains(IoendFlags::DIRECT) { end } else { end.min(self.file.size()) };
        if new_size > self.file.disk_size() {
            self.frond.set_disk_size(self.ino, new_size)?;
            self.file.set_disk_size(new_size);
        }
        Ok(())
    }

    fn read_inline(&self, _iomap: &Iomap, buf: &mut [u8]) -> Result<()> {
        if self.map(0, 1, Fork::Data)?.kind != MapKind::Inline {
            // An empty (possibly truncated-up) file about to become inline: frond has no
            // inline area for it yet, its bytes are zeros.
            buf.fill(0);
            return Ok(());
        }
        let n = self.frond.read_inline(self.ino, 0, buf)?;
        buf[n..].fill(0);
        Ok(())
    }

    fn write_inline(&self, _iomap: &Iomap, offset: u64, data: &[u8]) -> Result<()> {
        let _g = self.map_lock.lock();
        self.frond.write_inline(self.ino, offset, data)?;
        let end = offset.saturating_add(data.len() as u64);
        if end > self.file.disk_size() {
            self.file.set_disk_size(end);
        }
        self.times_dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn commit(&self, datasync: bool) -> Result<bool> {
        if !datasync {
            self.flush_times()?;
        }
        self.frond.commit()
    }
}
