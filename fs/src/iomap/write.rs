//! Buffered write: copying data into the page cache, block by block state, and the i_size
//! rules. Zeroing through the cache uses the same chunk loop.
//!
//! [`write()`] (Linux's `iomap_file_buffered_write`): a write starting past EOF first zeroes
//! `[EOF, pos)` through [`zero_range`] (XFS policy: the old EOF block's tail
//! and any written blocks in the gap). Then, mapping by mapping (op WRITE), chunk by chunk
//! (chunks are the largest folio size, halved after a short copy, never below a page):
//!
//! 1. throttle ([`Mapping::balance_dirty`](crate::pagecache::Mapping::balance_dirty); for a
//!    synchronous write only after a chunk that was dirtied, its pending write-through bio
//!    submitted first) and make the source bytes available (none: `EFAULT`);
//! 2. `write_begin`: get the folio locked (order from the chunk length; a new folio is left
//!    unzeroed in the blocks the chunk covers wholly, see
//!    [`Mapping::find_or_create_for_overwrite`](crate::pagecache::Mapping::find_or_create_for_overwrite)),
//!    ask the filesystem
//!    whether the mapping is still valid (if not: STALE, the iterator maps again at this
//!    position), then prepare the blocks the write only partly covers and that are not
//!    uptodate: zero the parts outside the write when the block needs no read (source not
//!    MAPPED, NEW, or at/after EOF), else read the block from the source map (synchronously, one
//!    bio per disk-contiguous run: one device read for a small write into a mapped block);
//!    INLINE reads the inline data instead;
//! 3. copy from the source with [`LockedFolio::copy_in`], which zeroes the unzeroed bytes a
//!    short copy did not reach (so no byte of the platform's old memory is ever read, written
//!    back or returned by a read);
//! 4. `write_end`: a short copy into blocks that were not uptodate counts as 0 bytes and leaves
//!    them not uptodate (a partly copied block never looks valid; the read-modify-write read
//!    does not mark blocks either); otherwise the touched blocks become uptodate, the written
//!    blocks dirty (per block), and the in-core size grows before the folio is unlocked. INLINE
//!    writes go into the inode (never dirty). O_SYNC / O_DSYNC writes hand eligible blocks to
//!    write-through instead of dirtying them (see [`writethrough`](super::writethrough)).
//!
//! A rejected short copy drops the cache past EOF in the failed range, halves the chunk and
//! retries with what was copied. The result is the bytes written if any, else the error.
//!
//! Lock order: one folio lock at a time; the filesystem's `is_valid` is called under it.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `iomap_write_iter`, `iomap_zero_iter` | `write_chunks` | one loop for both |
//! | `iomap_write_begin`, `__iomap_write_begin`, `iomap_read_folio_range` | `write_begin`, `prepare_blocks` | RMW reads do not mark blocks uptodate before the copy; new folios are zeroed outside the blocks the chunk overwrites (Linux zeroes nothing) |
//! | `iomap_write_end`, `__iomap_write_end`, `iomap_write_end_inline` | `write_end` | the short-copy check is per range, not per folio |
//! | `iomap_write_failed` | `write_failed` | |
//! | `IOCB_DSYNC` + `generic_write_sync` | [`WriteFlags`] + write-through | see `writethrough` |

use alloc::sync::Arc;

use super::context::Counters;
use super::copy::CopySource;
use super::file::{IomapFile, OpenFile, MAX_FILE_SIZE};
use super::iter::{iterate, IomapIter, Step};
use super::ops::IomapOps;
use super::read::{block_needs_zeroing, inline_into_folio};
use super::read_io::{zero_bytes, FolioRead, ReadBuilder};
use super::types::{IomapOp, IomapType};
use super::writethrough::WriteThrough;
use super::zero::zero_range;
use crate::pagecache::LockedFolio;
use crate::platform::{PAGE_SHIFT, PAGE_SIZE};
use crate::{Errno, Result};

bitflags::bitflags! {
    /// Buffered-write modes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct WriteFlags: u32 {
        /// O_DSYNC: data and the metadata needed to read it are durable on return.
        const DSYNC = 1 << 0;
        /// O_SYNC: as DSYNC, plus the rest of the inode metadata.
        const SYNC = 1 << 1;
    }
}

/// What a chunk loop does besides copying.
pub(crate) struct ChunkMode<'a> {
    /// Grow the in-core size past the written bytes (writes yes, zeroing no).
    pub update_size: bool,
    /// Write eligible blocks through instead of dirtying them.
    pub wt: Option<&'a mut WriteThrough>,
}

/// Folio order for a chunk of `len` bytes (Linux `fgf_set_order`).
pub(crate) fn order_for(len: usize) -> u32 {
    if len <= PAGE_SIZE {
        0
    } else {
        (usize::BITS - 1 - len.leading_zeros()) - PAGE_SHIFT
    }
}

/// Writes `src` at `pos` through the page cache; returns the bytes written. `flags` asks for
/// O_DSYNC / O_SYNC semantics. `EFBIG` at or past the largest file size.
pub fn write(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    pos: u64,
    src: &mut dyn CopySource,
    flags: WriteFlags,
) -> Result<usize> {
    if src.remaining() == 0 {
        return Ok(0);
    }
    if pos >= MAX_FILE_SIZE {
        return Err(Errno::EFBIG);
    }
    let len = (src.remaining() as u64).min(MAX_FILE_SIZE - pos);
    let size = file.size();
    if pos > size {
        zero_range(file, ops, size, pos - size)?;
    }
    let sync = flags.intersects(WriteFlags::DSYNC | WriteFlags::SYNC);
    let mut wt = sync.then(|| WriteThrough::new(file, ops));
    let progress = iterate(&**ops, pos, len, IomapOp::WRITE, file.block_size(), |it| {
        let mode = ChunkMode { update_size: true, wt: wt.as_mut() };
        write_chunks(file, ops, it, src, mode)
    });
    if let Some(wt) = wt {
        let synced = wt.finish(file, ops, open, flags);
        if progress.done > 0 {
            synced?;
        }
    }
    progress.bytes_or_error().map(|n| n as usize)
}

/// The chunk loop over the iterator's current mapping (writes and zeroing).
pub(crate) fn write_chunks(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    it: &mut IomapIter,
    src: &mut dyn CopySource,
    mut mode: ChunkMode<'_>,
) -> Step {
    let max_chunk = (PAGE_SIZE as u64) << file.ctx().cache().max_order();
    let length = it.length();
    let mut chunk = max_chunk;
    let mut retry: Option<usize> = None;
    let mut done = 0u64;
    while done < length {
        let p = it.pos() + done;
        let mut bytes = (chunk - (p & (chunk - 1))).min(length - done) as usize;
        if let Some(r) = retry.take() {
            bytes = bytes.min(r);
        }
        // Throttle before dirtying more. Write-through chunks dirty nothing, so a synchronous
        // write throttles only after a chunk that fell back to dirtying, and first submits its
        // pending write-through ioend: the throttle may wait for writeback to end.
        let throttle = match mode.wt.as_deref_mut() {
            None => true,
            Some(wt) => wt.take_dirtied(),
        };
        if throttle {
            file.mapping().balance_dirty();
        }
        let avail = src.prepare(bytes);
        if avail == 0 {
            return Step::failed(done, Errno::EFAULT);
        }
        bytes = bytes.min(avail);
        let (mut folio, was_uptodate) = match write_begin(file, ops, it, p, bytes, mode.wt.as_deref_mut()) {
            Ok(Some(f)) => f,
            Ok(None) => return Step::done(done),
            Err(e) => return Step::failed(done, e),
        };
        let off = (p - folio.pos()) as usize;
        bytes = bytes.min((folio.end_pos() - p) as usize);
        let copied = match folio.copy_in(off, bytes, |dst| src.copy_to(dst)) {
            Ok(n) => n,
            Err(e) => return Step::failed(done, e),
        };
        let written = match write_end(file, ops, it, &folio, p, bytes, copied, was_uptodate, &mut mode) {
            Ok(n) => n,
            Err(e) => return Step::failed(done, e),
        };
        drop(folio);
        if written == 0 {
            write_failed(file, p, bytes as u64);
            if copied == 0 && chunk <= PAGE_SIZE as u64 {
                return Step::failed(done, Errno::EFAULT);
            }
            if chunk > PAGE_SIZE as u64 {
                chunk /= 2;
            }
            if copied > 0 {
                retry = Some(copied);
            }
            continue;
        }
        src.advance(written);
        done += written as u64;
    }
    Step::done(done)
}

/// Gets the folio for `[pos, pos + len)` locked and prepared; `None` when the mapping went stale
/// (marked on the iterator). Also returns whether the range was uptodate before preparation.
fn write_begin(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    it: &mut IomapIter,
    pos: u64,
    len: usize,
    wt: Option<&mut WriteThrough>,
) -> Result<Option<(LockedFolio, bool)>> {
    let mapping = file.mapping();
    let index = pos >> PAGE_SHIFT;
    let folio = if it.iomap().kind == IomapType::Inline {
        // The inline data goes into the folio below, around and under the copy.
        mapping.find_or_create(index, order_for(len))?
    } else {
        // A new folio is not zeroed in the blocks this chunk overwrites wholly: the copy fills
        // them (`copy_in` zeroes what a short copy leaves).
        mapping.find_or_create_for_overwrite(index, order_for(len), pos..pos + len as u64)?
    };
    if folio.is_writeback() {
        // It may sit in our own write-through ioend not yet submitted: submit before anyone
        // waits for it (stable pages).
        if let Some(wt) = wt {
            wt.submit_pending();
        }
    }
    if !ops.is_valid(it.iomap()) {
        it.mark_stale();
        Counters::add(&file.ctx().counters.stale_mappings, 1);
        return Ok(None);
    }
    let off = (pos - folio.pos()) as usize;
    let len = len.min(folio.size() - off);
    let was_uptodate = folio.is_range_uptodate(off, len)?;
    if it.iomap().kind == IomapType::Inline {
        if !folio.is_uptodate() {
            inline_into_folio(&**ops, &folio, it.iomap(), file.size())?;
        }
        return Ok(Some((folio, was_uptodate)));
    }
    prepare_blocks(file, it, &folio, pos, len)?;
    Ok(Some((folio, was_uptodate)))
}

/// Zeroes or reads the blocks `[pos, pos + len)` covers only partly and that are not uptodate.
fn prepare_blocks(
    file: &Arc<IomapFile>,
    it: &IomapIter,
    folio: &LockedFolio,
    pos: u64,
    len: usize,
) -> Result<()> {
    let off = (pos - folio.pos()) as usize;
    if folio.is_uptodate() || (off == 0 && len == folio.size()) {
        return Ok(());
    }
    let bs = file.block_size();
    let size = file.size();
    let src = *it.read_source();
    let end = pos + len as u64;
    let first = pos & !(bs - 1);
    let last = (end + bs - 1) & !(bs - 1);
    // Zero first, read after: once a read is in flight no slice of the folio may be formed.
    let mut reads: heapless::Vec<u64, 2> = heapless::Vec::new();
    let mut b = first;
    while b < last {
        let blk = ((b - folio.pos()) / bs) as usize;
        let inside = b >= pos && b + bs <= end;
        if !inside && !folio.is_block_uptodate(blk) {
            if block_needs_zeroing(&src, b, size) {
                // No read is in flight on the folio yet, and its non-uptodate blocks are in no
                // write bio: zeroing them in place is safe, and nothing is marked uptodate.
                if b < pos {
                    zero_bytes(folio, (b - folio.pos()) as usize, (pos - b) as usize)?;
                }
                if end < b + bs {
                    zero_bytes(folio, (end - folio.pos()) as usize, (b + bs - end) as usize)?;
                }
            } else {
                // Only the first and the last block can be partly covered.
                let _ = reads.push(b);
            }
        }
        b += bs;
    }
    if reads.is_empty() {
        return Ok(());
    }
    let ctx = file.ctx();
    let fr = FolioRead::for_rmw(folio, ctx.platform());
    {
        let mut rb = ReadBuilder::new(ctx);
        for &b in &reads {
            rb.add(&fr, (b - folio.pos()) as usize, bs as usize, src.disk_addr(b)?);
        }
    }
    fr.end_submission();
    fr.wait(ctx)
}

/// Finishes a chunk; returns the bytes accepted (0: a short copy into blocks that were not
/// uptodate).
#[allow(clippy::too_many_arguments)]
fn write_end(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    it: &mut IomapIter,
    folio: &LockedFolio,
    pos: u64,
    len: usize,
    copied: usize,
    was_uptodate: bool,
    mode: &mut ChunkMode<'_>,
) -> Result<usize> {
    let off = (pos - folio.pos()) as usize;
    let inline = it.iomap().kind == IomapType::Inline;
    if copied == 0 || (copied < len && !was_uptodate && !inline) {
        return Ok(0);
    }
    if inline {
        let m = *it.iomap();
        ops.write_inline(&m, pos - m.offset, &folio.data()[off..off + copied])?;
        folio.mark_uptodate_range(off, copied)?;
        if let Some(wt) = mode.wt.as_deref_mut() {
            wt.note_inline();
        }
    } else {
        folio.mark_uptodate_range(off, copied)?;
    }
    if mode.update_size && pos + copied as u64 > file.size() {
        file.set_size(pos + copied as u64);
        it.mark_size_changed();
    }
    if !inline {
        match mode.wt.as_deref_mut() {
            Some(wt) if wt.eligible(it, folio) => wt.add(file, it, folio, off, copied)?,
            other => {
                file.mapping().mark_dirty(folio, off, copied)?;
                if let Some(wt) = other {
                    wt.note_dirtied(pos, pos + copied as u64);
                }
            }
        }
    }
    Ok(copied)
}

/// After a rejected short copy: drops the cached folios lying wholly past EOF around the
/// failed range (their contents are dead; Linux only zeroes the range).
fn write_failed(file: &IomapFile, pos: u64, len: u64) {
    let start = pos.max(file.size());
    let max_folio = (PAGE_SIZE as u64) << file.ctx().cache().max_order();
    let end = (pos + len).saturating_add(max_folio - 1) & !(max_folio - 1);
    if start < end {
        let _ = file.mapping().truncate_range(start, end);
    }
}
