//! The test filesystem's copy-on-write: mapping writes to shared blocks onto COW staging,
//! remapping staging into the data fork at completion (or cancelling it after an I/O error),
//! and the filesystem's part of clone and dedupe (sharing extents).
//!
//! Model (XFS's COW fork): a file's data fork may point at blocks other files (or other ranges)
//! also point at (reference count > 1, see [`RefCounts`](super::RefCounts)). Its COW fork holds
//! staging: DELALLOC reservations (buffered writes) and allocated blocks (kept as `Unwritten`
//! until remapped). A write to a shared block, or to a block with staging, is mapped to the
//! staging extent with [`IomapFlags::SHARED`] and the old data extent as srcmap (its iomap is
//! MAPPED when a real srcmap exists, so direct writes read around it, UNWRITTEN otherwise, so
//! every path zeroes). Completion of a SHARED write remaps the written staging blocks: the old
//! data blocks lose an owner (freed at zero), the staging becomes written data. An error
//! cancels: the staging is freed, the data fork untouched. Staging that was allocated but never
//! written stays in the COW fork (reused by the next write; dropped by truncate and punch).
//!
//! Lock order: called with the file state lock held (mapping) or takes it (remap, cancel,
//! share), never two file locks at once; the filesystem lock nests inside.
//! Linux <-> here: `xfs_reflink_allocate_cow`, `xfs_reflink_end_cow`,
//! `xfs_reflink_cancel_cow_range`, `xfs_reflink_remap_extent`.

use alloc::vec::Vec;

use super::extents::{ExtKind, Extent};
use super::file::{FileState, MemFile};
use super::MemFs;
use crate::iomap::types::{Iomap, IomapFlags, IomapOp, IomapPair, IomapType};
use crate::{Errno, Result};

impl MemFile {
    /// The data fork at file block `block` as a srcmap and where it ends: a real extent (its
    /// owned blocks and whether they are shared, trimmed to one sharing state and to `limit`),
    /// or none.
    fn data_source(&self, fs: &MemFs, st: &FileState, block: u64, limit: u64) -> (Option<Extent>, bool, u64) {
        match st.extents.lookup(block) {
            Ok(e) => match e.kind.disk() {
                Some(d) => {
                    let skip = block - e.start;
                    let (shared, run) =
                        fs.shared_run(d + skip, (e.len - skip).min(limit.max(block + 1) - block));
                    let piece =
                        Extent { start: block, len: run, kind: advance(e.kind, skip), boundary: false };
                    (Some(piece), shared, block + run)
                }
                None => (None, false, e.end()),
            },
            Err(next) => (None, false, next),
        }
    }

    fn staging_pair(&self, fs: &MemFs, piece: &Extent, src: Option<&Extent>) -> IomapPair {
        let bs = fs.block_size();
        let (offset, length) = (piece.start * bs, piece.len * bs);
        let srcmap = match src {
            Some(s) => {
                let trimmed = Extent { len: piece.len, ..*s };
                self.iomap_of(&trimmed, bs)
            }
            None => Iomap::NONE,
        };
        let kind = if srcmap.is_hole() { IomapType::Unwritten } else { IomapType::Mapped };
        let iomap = match piece.kind {
            ExtKind::Delalloc => Iomap::new(offset, length, crate::iomap::NULL_ADDR, IomapType::Delalloc),
            ExtKind::Mapped(d) | ExtKind::Unwritten(d) => Iomap::new(offset, length, d * bs, kind),
        };
        IomapPair::with_srcmap(iomap.with_flags(IomapFlags::SHARED), srcmap)
    }

    /// Allocates staging blocks for COW-fork blocks `[block, block + want)` (replacing a
    /// reservation there, if any); returns the allocated piece.
    fn allocate_staging(&self, fs: &MemFs, st: &mut FileState, block: u64, want: u64) -> Result<Extent> {
        let (d, got) = fs.alloc_blocks(want, None)?;
        st.cow.set(block, got, Some(ExtKind::Unwritten(d)));
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(Extent { start: block, len: got, kind: ExtKind::Unwritten(d), boundary: false })
    }

    /// The mapping of a write at file block `block` when it must go to COW staging (existing
    /// staging, or shared data blocks); `None` for an ordinary write.
    pub(crate) fn cow_for_write(
        &self,
        fs: &MemFs,
        st: &mut FileState,
        op: IomapOp,
        block: u64,
        want_end: u64,
    ) -> Result<Option<IomapPair>> {
        let allocate_now = op.intersects(IomapOp::DIRECT | IomapOp::DAX);
        let (src, shared, src_end) = self.data_source(fs, st, block, want_end);
        let piece = match st.cow.lookup(block) {
            Ok(c) => {
                let end = c.end().min(src_end);
                let piece =
                    Extent { start: block, len: end - block, kind: advance(c.kind, block - c.start), ..c };
                if allocate_now && piece.kind == ExtKind::Delalloc {
                    self.allocate_staging(fs, st, block, piece.len)?
                } else {
                    piece
                }
            }
            Err(next_cow) if shared => {
                let end = src_end.min(want_end).min(next_cow);
                let piece = if allocate_now {
                    self.allocate_staging(fs, st, block, end - block)?
                } else {
                    let p =
                        Extent { start: block, len: end - block, kind: ExtKind::Delalloc, boundary: false };
                    st.cow.insert(p);
                    p
                };
                self.bump_seq();
                piece
            }
            Err(_) => return Ok(None),
        };
        Ok(Some(self.staging_pair(fs, &piece, src.as_ref())))
    }

    /// The writeback mapping at file block `block` when COW staging covers it (allocating a
    /// reservation), or when the data block is shared without staging (allocating staging then:
    /// shared blocks are never written in place); `None` otherwise.
    pub(crate) fn cow_for_writeback(
        &self,
        fs: &MemFs,
        st: &mut FileState,
        block: u64,
        want_end: u64,
    ) -> Result<Option<Iomap>> {
        let piece = match st.cow.lookup(block) {
            Ok(c) if c.kind == ExtKind::Delalloc => {
                self.allocate_staging(fs, st, block, c.end().min(want_end) - block)?
            }
            Ok(c) => c,
            Err(next_cow) => {
                let (src, shared, src_end) = self.data_source(fs, st, block, want_end);
                if !shared || src.is_none() {
                    return Ok(None);
                }
                self.allocate_staging(fs, st, block, src_end.min(want_end).min(next_cow) - block)?
            }
        };
        let bs = fs.block_size();
        let Some(d) = piece.kind.disk() else { return Err(Errno::EIO) };
        let m = Iomap::new(piece.start * bs, piece.len * bs, d * bs, IomapType::Mapped);
        Ok(Some(m.with_flags(IomapFlags::SHARED)))
    }

    /// `e` (the data extent at `block`) trimmed to start at `block` and end before shared
    /// blocks, COW staging and `want_end`: what an in-place write may use.
    pub(crate) fn trim_exclusive(
        &self,
        fs: &MemFs,
        st: &FileState,
        e: &Extent,
        block: u64,
        want_end: u64,
    ) -> Extent {
        let skip = block - e.start;
        let mut len = (e.len - skip).min(want_end.max(block + 1) - block);
        if let Some(d) = e.kind.disk() {
            len = fs.shared_run(d + skip, len).1;
        }
        if let Err(next_cow) = st.cow.lookup(block) {
            len = len.min(next_cow.saturating_sub(block)).max(1);
        }
        Extent { start: block, len, kind: advance(e.kind, skip), boundary: e.boundary && skip == 0 }
    }

    /// Remaps the allocated staging inside file blocks `[first, last)` into the data fork.
    pub(crate) fn cow_remap(&self, fs: &MemFs, first: u64, last: u64) -> Result<()> {
        let mut old = Vec::new();
        let moved = {
            let mut st = self.state.lock();
            let pieces = st.cow.extents_in(first, last);
            let mut moved = 0;
            for p in pieces {
                let Some(d) = p.kind.disk() else { continue };
                old.extend(st.extents.remove(p.start, p.len));
                st.extents.insert(Extent {
                    start: p.start,
                    len: p.len,
                    kind: ExtKind::Mapped(d),
                    boundary: false,
                });
                st.cow.remove(p.start, p.len);
                moved += p.len;
            }
            moved
        };
        for e in old {
            if let Some(d) = e.kind.disk() {
                fs.put_blocks(d, e.len)?;
            }
        }
        if moved > 0 {
            self.bump_seq();
            fs.mark_meta_dirty();
        }
        Ok(())
    }

    /// Drops the staging inside file blocks `[first, last)` (after a failed write).
    pub(crate) fn cow_cancel(&self, fs: &MemFs, first: u64, last: u64) -> Result<()> {
        let removed = self.state.lock().cow.remove(first, last - first);
        for e in &removed {
            if let Some(d) = e.kind.disk() {
                fs.put_blocks(d, e.len)?;
            }
        }
        if !removed.is_empty() {
            self.bump_seq();
            fs.mark_meta_dirty();
        }
        Ok(())
    }

    /// The filesystem's part of clone / dedupe: file blocks `[dst_fb, dst_fb + count)` of
    /// `self` share the blocks of `[src_fb, src_fb + count)` of `src` (holes stay holes), the
    /// blocks `self` had there lose an owner, its staging there is dropped, and the on-disk size
    /// becomes at least `new_size`. `EINVAL` for inline files, `EBUSY` for delayed allocations
    /// in the source (the engine wrote them back first).
    pub(crate) fn share_from(
        &self,
        src: &MemFile,
        src_fb: u64,
        dst_fb: u64,
        count: u64,
        new_size: u64,
    ) -> Result<()> {
        let fs = self.fs()?;
        let pieces = {
            let st = src.state.lock();
            if st.inline.is_some() {
                return Err(Errno::EINVAL);
            }
            st.extents.extents_in(src_fb, src_fb + count)
        };
        if self.is_inline() {
            return Err(Errno::EINVAL);
        }
        if pieces.iter().any(|p| p.kind == ExtKind::Delalloc) {
            return Err(Errno::EBUSY);
        }
        for p in &pieces {
            if let Some(d) = p.kind.disk() {
                fs.share_blocks(d, p.len)?;
            }
        }
        let removed = {
            let mut st = self.state.lock();
            let mut removed = st.extents.remove(dst_fb, count);
            removed.extend(st.cow.remove(dst_fb, count));
            for p in &pieces {
                st.extents.insert(Extent { start: p.start - src_fb + dst_fb, boundary: false, ..*p });
            }
            removed
        };
        for e in removed {
            if let Some(d) = e.kind.disk() {
                fs.put_blocks(d, e.len)?;
            }
        }
        if new_size > self.file().disk_size() {
            self.file().set_disk_size(new_size);
        }
        self.bump_seq();
        src.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }
}

/// `kind` `n` blocks further in.
fn advance(kind: ExtKind, n: u64) -> ExtKind {
    match kind {
        ExtKind::Delalloc => ExtKind::Delalloc,
        ExtKind::Mapped(d) => ExtKind::Mapped(d + n),
        ExtKind::Unwritten(d) => ExtKind::Unwritten(d + n),
    }
}
