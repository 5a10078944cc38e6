//! Zeroing, truncate and the page-cache side of punch hole.
//!
//! - [`zero_range`]: HOLE and UNWRITTEN ranges already read as zeros and are skipped, unless
//!   the range has dirty or under-writeback cache: then the range is written back once and
//!   mapped again (the unwritten extent may have become written; the classic bug is skipping an
//!   unwritten extent with dirty cache over it). Everything else is zeroed through the cache
//!   (read-modify-write of partial blocks as a write does; dirtied, not written to disk). The
//!   in-core size does not change.
//! - [`truncate_page`]: zero from `pos` to the end of its block.
//! - [`truncate`]: up: zero `[old size, new size)`, set the size. Down: zero the partial EOF
//!   block (with the old size still in effect, so the block is read if needed), set the size,
//!   drop every folio beyond EOF (waiting for writeback, cancelling dirty state), zero the part
//!   of the straddling folio beyond EOF. The filesystem's own work (freeing blocks beyond EOF,
//!   recording the size) runs last, still under the exclusive invalidate lock.
//! - [`punch_hole`]: write back and drop the cache over the range (whole blocks; the parts of
//!   straddling folios inside the range are zeroed in the cache), let the filesystem unmap the
//!   whole blocks, then zero the partial blocks at both ends through the cache (clamped to the
//!   size, which does not change).
//!
//! Lock order: truncate and punch hole hold the mapping's invalidate lock exclusively (no read
//! adds folios meanwhile, no direct I/O starts) across their cache work and the filesystem
//! callback, after waiting for the direct I/O already in flight (the blocks they free may be
//! under it); they take folio locks under it and wait for writeback, never for the invalidate
//! lock itself.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `iomap_zero_range`, `iomap_zero_iter_flush_and_stale` | [`zero_range`] |
//! | `iomap_truncate_page` | [`truncate_page`] |
//! | `xfs_setattr_size` (zero, `truncate_setsize`, `xfs_itruncate_extents`) | [`truncate`] |
//! | `xfs_free_file_space` (`xfs_flush_unmap_range`, unmap, zero partial blocks) | [`punch_hole`] |

use alloc::sync::Arc;

use super::copy::ZeroSource;
use super::file::{IomapFile, MAX_FILE_SIZE};
use super::iter::{iterate, Step};
use super::ops::IomapOps;
use super::sync::write_and_wait;
use super::types::{IomapOp, IomapType};
use super::write::{write_chunks, ChunkMode};
use crate::pagecache::Folio;
use crate::{Errno, Result};

/// Zeroes bytes `[pos, pos + len)` through the page cache. See the module documentation.
pub fn zero_range(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, pos: u64, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let end = pos.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::EFBIG)?;
    let mut range_dirty = file.needs_writeback(pos, end);
    let progress = iterate(&**ops, pos, len, IomapOp::ZERO, file.block_size(), |it| {
        if matches!(it.read_source().kind, IomapType::Hole | IomapType::Unwritten) {
            if !range_dirty {
                return Step::done(it.length());
            }
            range_dirty = false;
            if let Err(e) = write_and_wait(file, ops, it.pos(), it.pos() + it.remaining()) {
                return Step::failed(0, e);
            }
            it.mark_stale();
            return Step::done(0);
        }
        let mut zeros = ZeroSource::new(it.length() as usize);
        write_chunks(file, ops, it, &mut zeros, ChunkMode { update_size: false, wt: None })
    });
    progress.strict().map(|_| ())
}

/// Zeroes from `pos` to the end of its block (nothing when `pos` is block aligned).
pub fn truncate_page(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, pos: u64) -> Result<()> {
    let bs = file.block_size();
    let off = pos & (bs - 1);
    if off == 0 {
        return Ok(());
    }
    zero_range(file, ops, pos, bs - off)
}

/// Zeroes the bytes of `folio` in `[start, end)` (file positions) in the cache only.
fn zero_cached(folio: &Arc<Folio>, file: &IomapFile, start: u64, end: u64) -> Result<()> {
    let mut locked = folio.lock();
    if !locked.belongs_to(file.mapping()) {
        return Ok(());
    }
    let s = start.max(locked.pos());
    let e = end.min(locked.end_pos());
    if s < e {
        let off = (s - locked.pos()) as usize;
        locked.zero(off, (e - s) as usize)?;
    }
    Ok(())
}

/// Changes the file size to `new_size`; `fs_truncate(new_size)` is the filesystem's part
/// (free blocks beyond EOF, record the size), called last under the exclusive invalidate lock.
/// `EFBIG` past the largest file size.
pub fn truncate(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    new_size: u64,
    fs_truncate: impl FnOnce(u64) -> Result<()>,
) -> Result<()> {
    if new_size > MAX_FILE_SIZE {
        return Err(Errno::EFBIG);
    }
    let mapping = file.mapping().clone();
    let _exclusive = mapping.invalidate_lock().write();
    mapping.wait_dio();
    let old = file.size();
    if new_size >= old {
        if new_size > old {
            zero_range(file, ops, old, new_size - old)?;
            file.set_size(new_size);
        }
        return fs_truncate(new_size);
    }
    truncate_page(file, ops, new_size)?;
    file.set_size(new_size);
    if let Some(edge) = mapping.truncate(new_size) {
        zero_cached(&edge, file, new_size, u64::MAX)?;
    }
    fs_truncate(new_size)
}

/// Punches a hole over `[start, start + len)`: `unmap(first, end)` is the filesystem's part,
/// unmapping the whole blocks `[first, end)` (byte positions, block aligned). The size does not
/// change. See the module documentation.
pub fn punch_hole(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    start: u64,
    len: u64,
    unmap: impl FnOnce(u64, u64) -> Result<()>,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let end = start.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::EINVAL)?;
    let bs = file.block_size();
    let (outer_start, outer_end) = (start & !(bs - 1), (end + bs - 1) & !(bs - 1));
    let (inner_start, inner_end) = ((start + bs - 1) & !(bs - 1), end & !(bs - 1));
    let mapping = file.mapping().clone();
    let _exclusive = mapping.invalidate_lock().write();
    mapping.wait_dio();
    write_and_wait(file, ops, outer_start, outer_end)?;
    if inner_start < inner_end {
        let edges = mapping.truncate_range(inner_start, inner_end);
        for f in [edges.head, edges.tail].into_iter().flatten() {
            zero_cached(&f, file, inner_start, inner_end)?;
        }
        unmap(inner_start, inner_end)?;
    }
    let size = file.size();
    let zero = |s: u64, e: u64| -> Result<()> {
        let e = e.min(size);
        if s < e {
            zero_range(file, ops, s, e - s)
        } else {
            Ok(())
        }
    };
    if inner_start >= inner_end {
        zero(start, end)
    } else {
        zero(start, inner_start)?;
        zero(inner_end, end)
    }
}
