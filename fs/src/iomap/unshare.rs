//! Unshare: making a range of a reflinked file exclusive (`fallocate(FALLOC_FL_UNSHARE_RANGE)`).
//!
//! [`unshare_range`] walks `[pos, pos + len)` (clamped to the in-core size) with op
//! `WRITE | UNSHARE`. The filesystem answers shared blocks with their COW staging flagged
//! [`IomapFlags::SHARED`] and the old data as a MAPPED srcmap; every other mapping is skipped
//! (nothing to unshare, and holes are never allocated). For the shared ones, chunk by chunk
//! (folio sized), the folio is locked, its validity checked (stale: map again), the blocks of
//! the range that are not uptodate are read from the srcmap (zeroed past EOF), and the range is
//! marked dirty: writeback then sends it to the staging blocks and the filesystem remaps them
//! at completion, exactly as for a write. Finally the range is written back and waited for, so
//! the file owns its blocks when the call returns.
//!
//! Lock order: one folio lock at a time; the filesystem's `is_valid` is called under it. The
//! caller serialises unshare with writes and truncate (it is a write).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `iomap_file_unshare`, `iomap_unshare_iter` (`__iomap_write_begin` with `IOMAP_UNSHARE`) | [`unshare_range`] |
//! | `xfs_reflink_unshare` (`filemap_write_and_wait_range` afterwards) | the final write-back |

use alloc::sync::Arc;

use super::context::Counters;
use super::file::{IomapFile, MAX_FILE_SIZE};
use super::iter::{iterate, IomapIter, Step};
use super::ops::IomapOps;
use super::read::read_step_into_folio;
use super::read_io::{FolioRead, ReadBuilder};
use super::sync::write_and_wait;
use super::types::{IomapFlags, IomapOp, IomapType};
use super::write::order_for;
use crate::platform::{PAGE_SHIFT, PAGE_SIZE};
use crate::{Errno, Result};

/// Makes `[pos, pos + len)` of `file` exclusive. See the module documentation.
pub fn unshare_range(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, pos: u64, len: u64) -> Result<()> {
    let end = pos.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::EINVAL)?;
    let end = end.min(file.size());
    if pos >= end {
        return Ok(());
    }
    let op = IomapOp::WRITE | IomapOp::UNSHARE;
    let progress = iterate(&**ops, pos, end - pos, op, file.block_size(), |it| {
        let m = it.iomap();
        if !m.flags.contains(IomapFlags::SHARED) || it.srcmap().kind != IomapType::Mapped {
            return Step::done(it.length());
        }
        unshare_chunks(file, ops, it)
    });
    progress.strict()?;
    write_and_wait(file, ops, pos, end)
}

/// The chunk loop over one shared mapping.
fn unshare_chunks(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, it: &mut IomapIter) -> Step {
    let ctx = file.ctx();
    let mapping = file.mapping();
    let max_chunk = (PAGE_SIZE as u64) << ctx.cache().max_order();
    let length = it.length();
    let mut done = 0u64;
    while done < length {
        let p = it.pos() + done;
        let bytes = (max_chunk - (p & (max_chunk - 1))).min(length - done) as usize;
        mapping.balance_dirty();
        let folio = match mapping.find_or_create(p >> PAGE_SHIFT, order_for(bytes)) {
            Ok(f) => f,
            Err(e) => return Step::failed(done, e),
        };
        if !ops.is_valid(it.iomap()) {
            it.mark_stale();
            Counters::add(&ctx.counters.stale_mappings, 1);
            return Step::done(done);
        }
        let off = (p - folio.pos()) as usize;
        let n = bytes.min(folio.size() - off);
        let filled = match folio.is_range_uptodate(off, n) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let fr = FolioRead::borrowed(&folio, ctx.platform());
                let stepped = {
                    let mut rb = ReadBuilder::new(ctx);
                    read_step_into_folio(file, ops, &mut rb, &fr, it, file.size())
                };
                fr.end_submission();
                let waited = fr.wait(ctx);
                stepped.and(waited)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = filled.and_then(|_| mapping.mark_dirty(&folio, off, n).map(|_| ())) {
            return Step::failed(done, e);
        }
        drop(folio);
        done += n as u64;
    }
    Step::done(done)
}
