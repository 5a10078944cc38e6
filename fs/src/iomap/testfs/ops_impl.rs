//! The test filesystem's side of the engine contract: `impl IomapOps for MemFile`.
//!
//! - `next`: finishes the previous mapping (after a short write into NEW delalloc, the unused
//!   reservation without dirty cache is punched), then maps `req.pos`:
//!   - writes (WRITE, ZERO, UNSHARE, also DIRECT / DAX) over shared blocks or existing COW
//!     staging get the staging extent (reserved as DELALLOC for buffered writes, allocated at
//!     once for DIRECT and DAX) flagged SHARED, with the old data as srcmap (see `cow`);
//!   - otherwise an extent as it is (write mappings trimmed to exclusive blocks); a hole as
//!     HOLE, or for WRITE a new reservation / allocation over the hole part of the request
//!     (NEW): DELALLOC, MAPPED or UNWRITTEN by policy, UNWRITTEN for DIRECT (MAPPED under the
//!     `Mapped` policy), MAPPED for DAX; UNSHARE never allocates;
//!   - WRITEBACK: COW staging first (DELALLOC staging allocated), then a DELALLOC extent is
//!     allocated (as UNWRITTEN) from its start to the end of the request;
//!   - DIRECT over inline data or DELALLOC answers `ENOTBLK` (continue buffered).
//!
//!   Inline files map block 0 as INLINE until a write or zero reaches past the inline capacity,
//!   which moves the data to a written block first. Every mapping carries the mapping sequence
//!   as its validity.
//! - `is_valid`: the validity equals the current mapping sequence.
//! - `ioend_done`: on error, cancels COW staging of a SHARED range; otherwise remaps SHARED
//!   ranges (COW staging into the data fork, old blocks lose an owner), converts UNWRITTEN
//!   blocks, and raises the on-disk size to `min(end, in-core size)` (`end` itself for DIRECT,
//!   which completes before the engine raises the in-core size).
//! - `commit`: the filesystem-wide metadata record (see [`MemFs::commit`]).
//!
//! Lock order: the file state lock is taken inside each call and released before hooks run.
//! Linux <-> here: `xfs_buffered_write_iomap_begin/end`, `xfs_direct_write_iomap_begin`,
//! `xfs_map_blocks`, `xfs_end_ioend`, `xfs_iomap_write_unwritten`, `xfs_dio_write_end_io`.

use alloc::vec;
use alloc::vec::Vec;

use super::extents::{ExtKind, Extent};
use super::file::{prev_disk_end, AllocPolicy, FileState, MemFile};
use super::hooks::HookPoint;
use super::MemFs;
use crate::block::sync::write_at;
use crate::block::BioFlags;
use crate::iomap::file::MAX_FILE_SIZE;
use crate::iomap::ops::IomapOps;
use crate::iomap::types::{
    IoendDone, IoendFlags, Iomap, IomapFlags, IomapOp, IomapPair, IomapType, MapDone, MapRequest, NULL_ADDR,
};
use crate::{Errno, Result};

impl MemFile {
    pub(crate) fn iomap_of(&self, e: &Extent, bs: u64) -> Iomap {
        let (kind, addr) = match e.kind {
            ExtKind::Delalloc => (IomapType::Delalloc, NULL_ADDR),
            ExtKind::Mapped(d) => (IomapType::Mapped, d * bs),
            ExtKind::Unwritten(d) => (IomapType::Unwritten, d * bs),
        };
        let mut m = Iomap::new(e.start * bs, e.len * bs, addr, kind);
        if e.boundary {
            m.flags |= IomapFlags::BOUNDARY;
        }
        m
    }

    /// Moves inline data into a newly allocated written block (synchronous write).
    fn unstuff(&self, fs: &MemFs, st: &mut FileState) -> Result<()> {
        let Some(area) = st.inline.as_ref() else { return Ok(()) };
        let bs = fs.block_size();
        let (d, _) = fs.alloc_blocks(1, None)?;
        let mut block = vec![0u8; bs as usize];
        let size = (self.file().size() as usize).min(area.len());
        block[..size].copy_from_slice(&area[..size]);
        let ctx = fs.ctx();
        if let Err(e) = write_at(&**ctx.device(), ctx.platform(), d * bs, &block, BioFlags::empty()) {
            fs.put_blocks(d, 1)?;
            return Err(e);
        }
        st.inline = None;
        st.extents.insert(Extent { start: 0, len: 1, kind: ExtKind::Mapped(d), boundary: false });
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }

    /// Builds the mapping for `req` (file state locked).
    fn map_locked(&self, fs: &MemFs, st: &mut FileState, req: &MapRequest) -> Result<IomapPair> {
        let bs = fs.block_size();
        let direct = req.op.contains(IomapOp::DIRECT);
        let dax = req.op.contains(IomapOp::DAX);
        let writes =
            req.op.intersects(IomapOp::WRITE | IomapOp::ZERO) && !req.op.contains(IomapOp::WRITEBACK);
        if st.inline.is_some() {
            if direct {
                // Inline data is not for direct I/O: the engine continues buffered.
                return Err(Errno::ENOTBLK);
            }
            if writes && req.pos.saturating_add(req.len) > fs.config().inline_capacity as u64 {
                self.unstuff(fs, st)?;
            } else if req.pos < bs {
                return Ok(IomapPair::new(Iomap::new(0, bs, NULL_ADDR, IomapType::Inline)));
            }
        }
        let max_blocks = MAX_FILE_SIZE / bs;
        let block = req.pos / bs;
        let want_end = req.pos.saturating_add(req.len).div_ceil(bs).min(max_blocks).max(block + 1);
        if req.op.contains(IomapOp::WRITEBACK) {
            if let Some(m) = self.cow_for_writeback(fs, st, block, want_end)? {
                return Ok(IomapPair::new(m));
            }
        } else if writes {
            if let Some(pair) = self.cow_for_write(fs, st, req.op, block, want_end)? {
                return Ok(pair);
            }
        }
        match st.extents.lookup(block) {
            Ok(e) if e.kind == ExtKind::Delalloc && req.op.contains(IomapOp::WRITEBACK) => {
                // Convert the reservation from its start up to the end of the request (the
                // whole extent when writeback covers it), in as many pieces as free space
                // comes in, until the piece covering `block` is allocated.
                let mut start = e.start;
                let piece = loop {
                    let want = want_end.min(e.end()) - start;
                    let (d, got) = fs.alloc_blocks(want, prev_disk_end(&st.extents, start))?;
                    st.extents.set(start, got, Some(ExtKind::Unwritten(d)));
                    if start + got > block {
                        let boundary = e.boundary && start == e.start;
                        break Extent { start, len: got, kind: ExtKind::Unwritten(d), boundary };
                    }
                    start += got;
                };
                self.bump_seq();
                fs.mark_meta_dirty();
                Ok(IomapPair::new(self.iomap_of(&piece, bs)))
            }
            Ok(e) if e.kind == ExtKind::Delalloc && direct => Err(Errno::ENOTBLK),
            Ok(e) if e.kind == ExtKind::Delalloc && dax && writes => {
                // DAX has no writeback to convert reservations: allocate now.
                let want = want_end.min(e.end()) - block;
                let (d, got) = fs.alloc_blocks(want, prev_disk_end(&st.extents, block))?;
                st.extents.set(block, got, Some(ExtKind::Mapped(d)));
                self.bump_seq();
                fs.mark_meta_dirty();
                let piece = Extent { start: block, len: got, kind: ExtKind::Mapped(d), boundary: false };
                Ok(IomapPair::new(self.iomap_of(&piece, bs).with_flags(IomapFlags::NEW)))
            }
            Ok(e) if writes || req.op.contains(IomapOp::WRITEBACK) => {
                // Never hand out a write mapping over shared blocks or COW staging.
                let piece = self.trim_exclusive(fs, st, &e, block, want_end);
                Ok(IomapPair::new(self.iomap_of(&piece, bs)))
            }
            Ok(e) => Ok(IomapPair::new(self.iomap_of(&e, bs))),
            Err(next) => {
                let hole_end = next.min(max_blocks);
                let allocates = req.op.contains(IomapOp::WRITE)
                    && !req.op.intersects(IomapOp::WRITEBACK | IomapOp::UNSHARE);
                if !allocates {
                    return Ok(IomapPair::new(Iomap::hole(block * bs, (hole_end - block) * bs)));
                }
                let want = want_end.min(hole_end) - block;
                let kind = match st.policy {
                    _ if dax => Some(true),
                    AllocPolicy::Mapped => Some(true),
                    _ if direct => Some(false),
                    AllocPolicy::Unwritten => Some(false),
                    AllocPolicy::Delalloc => None,
                };
                let piece = match kind {
                    None => Extent { start: block, len: want, kind: ExtKind::Delalloc, boundary: false },
                    Some(written) => {
                        let (d, got) = fs.alloc_blocks(want, prev_disk_end(&st.extents, block))?;
                        let kind = if written { ExtKind::Mapped(d) } else { ExtKind::Unwritten(d) };
                        fs.mark_meta_dirty();
                        Extent { start: block, len: got, kind, boundary: false }
                    }
                };
                st.extents.insert(piece);
                self.bump_seq();
                Ok(IomapPair::new(self.iomap_of(&piece, bs).with_flags(IomapFlags::NEW)))
            }
        }
    }

    /// End work for the previous mapping: punch unused NEW delalloc after a short write.
    fn end_mapping(&self, fs: &MemFs, prev: &MapDone) {
        let m = &prev.iomap;
        let short = prev.processed < prev.len;
        if !(short && m.kind == IomapType::Delalloc && m.flags.contains(IomapFlags::NEW)) {
            return;
        }
        let bs = fs.block_size();
        let from = (prev.pos + prev.processed).div_ceil(bs).max(m.offset / bs);
        let to = (prev.pos + prev.len).div_ceil(bs).min(m.end() / bs);
        let unused: Vec<u64> =
            (from..to).filter(|&b| !self.file().has_dirty_cache(b * bs, (b + 1) * bs)).collect();
        if unused.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        for b in unused {
            if st.extents.lookup(b).is_ok_and(|e| e.kind == ExtKind::Delalloc) {
                st.extents.remove(b, 1);
            }
        }
        drop(st);
        self.bump_seq();
    }
}

impl IomapOps for MemFile {
    fn next(&self, req: MapRequest, prev: Option<&MapDone>) -> Result<Option<IomapPair>> {
        let fs = self.fs()?;
        if let Some(p) = prev {
            self.end_mapping(&fs, p);
        }
        if req.len == 0 {
            fs.count_finish();
            return Ok(None);
        }
        fs.count_map(req.op);
        let pair = {
            let mut st = self.state.lock();
            let mut pair = self.map_locked(&fs, &mut st, &req)?;
            let seq = self.file().mapping().seq();
            pair.iomap = pair.iomap.with_validity(seq);
            if !pair.srcmap.is_hole() {
                pair.srcmap = pair.srcmap.with_validity(seq);
            }
            pair
        };
        fs.fire(self, HookPoint::AfterMap(req.op));
        Ok(Some(pair))
    }

    fn is_valid(&self, iomap: &Iomap) -> bool {
        if let Ok(fs) = self.fs() {
            fs.count_valid();
            fs.fire(self, HookPoint::ValidCheck);
        }
        iomap.validity == self.file().mapping().seq()
    }

    fn ioend_done(&self, done: &IoendDone) -> Result<()> {
        let fs = self.fs()?;
        fs.log_ioend(done);
        let bs = fs.block_size();
        let (first, last) = (done.offset / bs, (done.offset + done.size).div_ceil(bs));
        if done.error.is_some() {
            if done.flags.contains(IoendFlags::SHARED) {
                self.cow_cancel(&fs, first, last)?;
            }
            return Ok(());
        }
        if done.flags.contains(IoendFlags::SHARED) {
            self.cow_remap(&fs, first, last)?;
        }
        if done.flags.contains(IoendFlags::UNWRITTEN)
            && self.state.lock().extents.convert_unwritten(first, last) > 0
        {
            self.bump_seq();
            fs.mark_meta_dirty();
        }
        let end = done.offset + done.size;
        // Direct (and DAX) writes complete before the engine raises the in-core size.
        let new_size =
            if done.flags.contains(IoendFlags::DIRECT) { end } else { end.min(self.file().size()) };
        if new_size > self.file().disk_size() {
            self.file().set_disk_size(new_size);
            fs.mark_meta_dirty();
        }
        Ok(())
    }

    fn read_inline(&self, _iomap: &Iomap, buf: &mut [u8]) -> Result<()> {
        let st = self.state.lock();
        let area = st.inline.as_ref().ok_or(Errno::EIO)?;
        let src = area.get(..buf.len()).ok_or(Errno::EIO)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_inline(&self, _iomap: &Iomap, offset: u64, data: &[u8]) -> Result<()> {
        let fs = self.fs()?;
        let mut st = self.state.lock();
        let area = st.inline.as_mut().ok_or(Errno::EIO)?;
        let start = usize::try_from(offset).map_err(|_| Errno::EIO)?;
        let dst = start.checked_add(data.len()).and_then(|end| area.get_mut(start..end)).ok_or(Errno::EIO)?;
        dst.copy_from_slice(data);
        fs.mark_meta_dirty();
        Ok(())
    }

    fn commit(&self, _datasync: bool) -> Result<bool> {
        self.fs()?.commit()
    }
}
