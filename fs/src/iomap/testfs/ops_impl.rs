//! The test filesystem's side of the engine contract: `impl IomapOps for MemFile`.
//!
//! - `next`: finishes the previous mapping (after a short write into NEW delalloc, the unused
//!   reservation without dirty cache is punched), then maps `req.pos`: an extent as it is; a
//!   hole as HOLE, or for WRITE a new reservation / allocation over the hole part of the request
//!   (NEW); for WRITEBACK a DELALLOC extent is allocated (as UNWRITTEN) first, from its start
//!   to the end of the request. Inline files map
//!   block 0 as INLINE until a write or zero reaches past the inline capacity, which moves the
//!   data to a written block first. Every mapping carries the mapping sequence as its validity.
//! - `is_valid`: the validity equals the current mapping sequence.
//! - `ioend_done`: converts UNWRITTEN blocks of a successful write and raises the on-disk size
//!   to `min(end, in-core size)`.
//! - `commit`: the filesystem-wide metadata record (see [`MemFs::commit`]).
//!
//! Lock order: the file state lock is taken inside each call and released before hooks run.
//! Linux <-> here: `xfs_buffered_write_iomap_begin/end`, `xfs_map_blocks`, `xfs_end_ioend`,
//! `xfs_iomap_write_unwritten`.

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
    fn iomap_of(&self, e: &Extent, bs: u64) -> Iomap {
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
            fs.free_blocks_at(d, 1)?;
            return Err(e);
        }
        st.inline = None;
        st.extents.insert(Extent { start: 0, len: 1, kind: ExtKind::Mapped(d), boundary: false });
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }

    /// Builds the mapping for `req` (file state locked).
    fn map_locked(&self, fs: &MemFs, st: &mut FileState, req: &MapRequest) -> Result<Iomap> {
        let bs = fs.block_size();
        if st.inline.is_some() {
            let writes = req.op.intersects(IomapOp::WRITE | IomapOp::ZERO);
            if writes && req.pos.saturating_add(req.len) > fs.config().inline_capacity as u64 {
                self.unstuff(fs, st)?;
            } else if req.pos < bs {
                return Ok(Iomap::new(0, bs, NULL_ADDR, IomapType::Inline));
            }
        }
        let max_blocks = MAX_FILE_SIZE / bs;
        let block = req.pos / bs;
        let want_end = req.pos.saturating_add(req.len).div_ceil(bs).min(max_blocks);
        match st.extents.lookup(block) {
            Ok(e) if e.kind == ExtKind::Delalloc && req.op.contains(IomapOp::WRITEBACK) => {
                // Convert the reservation from its start up to the end of the request (the
                // whole extent when writeback covers it).
                let want = want_end.max(block + 1).min(e.end()) - e.start;
                let (d, got) = fs.alloc_blocks(want, prev_disk_end(&st.extents, e.start))?;
                st.extents.set(e.start, got, Some(ExtKind::Unwritten(d)));
                self.bump_seq();
                fs.mark_meta_dirty();
                let piece =
                    Extent { start: e.start, len: got, kind: ExtKind::Unwritten(d), boundary: e.boundary };
                Ok(self.iomap_of(&piece, bs))
            }
            Ok(e) => Ok(self.iomap_of(&e, bs)),
            Err(next) => {
                let hole_end = next.min(max_blocks);
                if !req.op.contains(IomapOp::WRITE) || req.op.contains(IomapOp::WRITEBACK) {
                    return Ok(Iomap::hole(block * bs, (hole_end - block) * bs));
                }
                let want = want_end.min(hole_end).max(block + 1) - block;
                let piece = match st.policy {
                    AllocPolicy::Delalloc => {
                        Extent { start: block, len: want, kind: ExtKind::Delalloc, boundary: false }
                    }
                    policy => {
                        let (d, got) = fs.alloc_blocks(want, prev_disk_end(&st.extents, block))?;
                        let kind = if policy == AllocPolicy::Mapped {
                            ExtKind::Mapped(d)
                        } else {
                            ExtKind::Unwritten(d)
                        };
                        fs.mark_meta_dirty();
                        Extent { start: block, len: got, kind, boundary: false }
                    }
                };
                st.extents.insert(piece);
                self.bump_seq();
                Ok(self.iomap_of(&piece, bs).with_flags(IomapFlags::NEW))
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
        let iomap = {
            let mut st = self.state.lock();
            let m = self.map_locked(&fs, &mut st, &req)?;
            m.with_validity(self.file().mapping().seq())
        };
        fs.fire(self, HookPoint::AfterMap(req.op));
        Ok(Some(IomapPair::new(iomap)))
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
        if done.error.is_some() {
            return Ok(());
        }
        let bs = fs.block_size();
        if done.flags.contains(IoendFlags::UNWRITTEN) {
            let (first, last) = (done.offset / bs, (done.offset + done.size).div_ceil(bs));
            if self.state.lock().extents.convert_unwritten(first, last) > 0 {
                self.bump_seq();
                fs.mark_meta_dirty();
            }
        }
        let new_size = (done.offset + done.size).min(self.file().size());
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
