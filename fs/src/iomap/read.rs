//! Buffered read: copying file data out of the page cache, filling folios that are missing or
//! partly valid, and starting readahead.
//!
//! [`read`] walks the requested range (clamped at the in-core size: reads at or after EOF return
//! 0) folio by folio. A missing folio starts synchronous readahead (see [`readahead`](mod@super::readahead));
//! a cached folio holding the readahead marker starts the next window asynchronously. Each folio
//! is locked for the copy (byte access needs the lock). A folio whose requested blocks are not
//! all uptodate is filled: its non-uptodate blocks are read, only those ([`fill_folio`]), and
//! the copy waits for that.
//!
//! Per mapping and block run (`read_step_into_folio`, shared with readahead): INLINE copies the
//! inline bytes and zeroes the rest; a run needs no I/O and is zeroed when its source is not
//! MAPPED, is NEW, or lies at or after EOF; otherwise it is read from disk. The block containing
//! EOF is read whole (writeback zeroes the bytes after EOF before writing it).
//!
//! Errors: a failed read leaves the folio not uptodate and the call returns `EIO` (or the bytes
//! copied before it).
//!
//! Lock order: invalidate lock (shared, only while adding folios) > folio lock.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `filemap_read`, `filemap_get_pages` | [`read`] | folio lock taken for every copy |
//! | `iomap_read_folio` / `filemap_read_folio` | [`fill_folio`] | reads only non-uptodate blocks (as iomap does) |
//! | `iomap_readpage_iter`, `iomap_block_needs_zeroing`, `iomap_read_inline_data` | `read_step_into_folio` | |
//! | `iomap_is_partially_uptodate` | `Folio::is_range_uptodate` before filling | |

use alloc::sync::Arc;
use alloc::vec;

use super::file::{IomapFile, OpenFile};
use super::iter::{iterate, IomapIter, Step};
use super::ops::IomapOps;
use super::read_io::{copy_unread, zero_unread, FolioRead, ReadBuilder};
use super::readahead::readahead;
use super::types::{Iomap, IomapFlags, IomapOp, IomapType};
use crate::pagecache::{Folio, LockedFolio};
use crate::platform::{PAGE_SHIFT, PAGE_SIZE};
use crate::{Errno, Result};

/// True when a block at `pos` read through `src` needs no I/O: it reads as zeros.
pub(crate) fn block_needs_zeroing(src: &Iomap, pos: u64, size: u64) -> bool {
    src.kind != IomapType::Mapped || src.flags.contains(IomapFlags::NEW) || pos >= size
}

/// Copies the INLINE mapping `m` into a locked, not uptodate `folio`: the inline bytes up to
/// EOF (`size`), zeros after them up to the mapping's end. `EIO` when the inline data would be
/// longer than the mapping, cross a page, or start outside the folio.
pub(crate) fn inline_into_folio(ops: &dyn IomapOps, folio: &Folio, m: &Iomap, size: u64) -> Result<()> {
    let in_page = m.offset & (PAGE_SIZE as u64 - 1);
    let bytes = size.checked_sub(m.offset).ok_or(Errno::EIO)?;
    if bytes > m.length
        || in_page + bytes > PAGE_SIZE as u64
        || m.offset < folio.pos()
        || m.offset >= folio.end_pos()
    {
        return Err(Errno::EIO);
    }
    let off = (m.offset - folio.pos()) as usize;
    let end = (m.end().min(folio.end_pos()) - folio.pos()) as usize;
    let bytes = bytes as usize;
    if folio.is_uptodate() {
        return Ok(());
    }
    let mut tmp = vec![0u8; bytes];
    ops.read_inline(m, &mut tmp)?;
    copy_unread(folio, off, bytes, Some(&tmp))?;
    if end > off + bytes {
        zero_unread(folio, off + bytes, end - off - bytes)?;
    }
    Ok(())
}

/// Handles the part of `fr`'s folio that the iterator's current mapping covers: zeroes the
/// non-uptodate runs that need no I/O and adds the others to `rb`. `size` is the in-core size.
pub(crate) fn read_step_into_folio(
    file: &IomapFile,
    ops: &Arc<dyn IomapOps>,
    rb: &mut ReadBuilder<'_>,
    fr: &Arc<FolioRead>,
    it: &IomapIter,
    size: u64,
) -> Result<()> {
    let folio = fr.folio();
    let fpos = folio.pos();
    let p = it.pos().max(fpos);
    let e = (it.pos() + it.length()).min(folio.end_pos());
    if p >= e {
        return Ok(());
    }
    if it.iomap().kind == IomapType::Inline {
        if it.pos() != it.iomap().offset {
            return Err(Errno::EIO);
        }
        return inline_into_folio(&**ops, folio, it.iomap(), size);
    }
    let bs = file.block_size();
    let shift = bs.trailing_zeros();
    let src = *it.read_source();
    let uptodate = |b: u64| folio.is_block_uptodate(((b - fpos) >> shift) as usize);
    let mut b = p & !(bs - 1);
    while b < e {
        if uptodate(b) {
            b += bs;
            continue;
        }
        let zero = block_needs_zeroing(&src, b, size);
        let mut r = b + bs;
        while r < e && !uptodate(r) && block_needs_zeroing(&src, r, size) == zero {
            r += bs;
        }
        let (off, len) = ((b - fpos) as usize, (r.min(folio.end_pos()) - b) as usize);
        if zero {
            zero_unread(folio, off, len)?;
        } else {
            rb.add(fr, off, len, src.disk_addr(b)?);
        }
        b = r;
    }
    Ok(())
}

/// Reads every non-uptodate block of a locked folio (synchronously, holding the lock). `EIO`
/// when a read failed (the folio stays not uptodate).
pub fn fill_folio(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, folio: &LockedFolio) -> Result<()> {
    if folio.is_uptodate() {
        return Ok(());
    }
    let ctx = file.ctx();
    let fr = FolioRead::borrowed(folio, ctx.platform());
    let size = file.size();
    let progress = {
        let mut rb = ReadBuilder::new(ctx);
        iterate(&**ops, folio.pos(), folio.size() as u64, IomapOp::empty(), file.block_size(), |it| {
            match read_step_into_folio(file, ops, &mut rb, &fr, it, size) {
                Ok(()) => Step::done(it.length()),
                Err(e) => Step::failed(0, e),
            }
        })
    };
    fr.end_submission();
    let waited = fr.wait(ctx);
    progress.strict()?;
    waited
}

/// Reads up to `buf.len()` bytes at `pos` into `buf` through the page cache; returns the bytes
/// read (0 at or after EOF).
pub fn read(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    pos: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let size = file.size();
    if pos >= size || buf.is_empty() {
        return Ok(0);
    }
    let end = pos.saturating_add(buf.len() as u64).min(size);
    let last_index = (end - 1) >> PAGE_SHIFT;
    let mapping = file.mapping();
    let mut done = 0usize;
    while pos + (done as u64) < end {
        let p = pos + done as u64;
        let index = p >> PAGE_SHIFT;
        let folio = match mapping.get(index) {
            Some(f) => {
                if let Some(w) = open.ra.on_hit(f.index(), f.nr_pages()) {
                    readahead(file, ops, w);
                }
                f
            }
            None => {
                let w = open.ra.on_miss(index, last_index - index + 1);
                readahead(file, ops, w);
                match mapping.get(index) {
                    Some(f) => f,
                    None => {
                        let _shared = mapping.invalidate_lock().read();
                        match mapping.find_or_create(index, 0) {
                            Ok(locked) => locked.unlock(),
                            Err(e) if done == 0 => return Err(e),
                            Err(_) => break,
                        }
                    }
                }
            }
        };
        let locked = folio.lock();
        if !locked.belongs_to(mapping) {
            continue;
        }
        // The size may have dropped (truncate) while we waited for the folio.
        let end_now = end.min(file.size());
        if p >= end_now {
            break;
        }
        let off = (p - locked.pos()) as usize;
        let n = (end_now.min(locked.end_pos()) - p) as usize;
        if !locked.is_range_uptodate(off, n)? {
            if let Err(e) = fill_folio(file, ops, &locked) {
                if done == 0 {
                    return Err(e);
                }
                break;
            }
        }
        locked.read_at(off, &mut buf[done..done + n])?;
        locked.mark_accessed();
        done += n;
        open.ra.note_read((p + n as u64 - 1) >> PAGE_SHIFT);
    }
    Ok(done)
}
