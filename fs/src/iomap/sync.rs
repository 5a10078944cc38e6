//! fsync / fdatasync and the waits they are built from.
//!
//! [`fsync`] of a range: integrity writeback of the range, wait for it (which includes the
//! filesystem's completion work: folios stay under writeback until it is done), report a
//! writeback error once per opener (errseq; an error stops here, before any commit), then
//! [`IomapOps::commit`]. The commit is written with PREFLUSH + FUA, so the data writes that
//! completed before it are durable first; when the filesystem had nothing to commit, one device
//! flush is issued instead. Ordering is by completion: every data write completed before the
//! commit (or flush) is submitted.
//!
//! Waits kick the context (poll the device, finish queued ioends), so they make progress on a
//! polled device even without the page-cache hooks.
//!
//! Lock order: none held while waiting.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xfs_file_fsync`: `file_write_and_wait_range`, log force, `blkdev_issue_flush` | [`fsync`] |
//! | `filemap_write_and_wait_range` | [`write_and_wait`] |
//! | `filemap_fdatawait_range` (`__filemap_fdatawait_range`) | [`wait_writeback_range`] |
//! | `file_check_and_advance_wb_err` | `Mapping::check_and_advance` with the opener's snapshot |

use alloc::sync::Arc;

use super::context::IomapContext;
use super::file::{IomapFile, OpenFile, MAX_FILE_SIZE};
use super::ops::IomapOps;
use super::writeback::{writeback_range, WritebackMode};
use crate::block::sync::flush;
use crate::pagecache::{Folio, Mark, MAX_INDEX};
use crate::platform::{wait_until, PAGE_SHIFT};
use crate::Result;

/// Waits (kicking the context) until `folio` is not under writeback. The wait key is the
/// folio's address, the key the page cache unparks when writeback ends.
pub(crate) fn wait_folio_writeback(ctx: &IomapContext, folio: &Arc<Folio>) {
    let key = Arc::as_ptr(folio) as usize;
    wait_until(&**ctx.platform(), key, &|| !folio.is_writeback(), &|| ctx.kick());
}

/// Waits for every folio of bytes `[start, end)` under writeback, then finishes queued
/// completion work.
pub fn wait_writeback_range(file: &IomapFile, start: u64, end: u64) {
    let ctx = file.ctx();
    if start < end && start < MAX_FILE_SIZE {
        let last = ((end - 1) >> PAGE_SHIFT).min(MAX_INDEX);
        let mut at = start >> PAGE_SHIFT;
        while let Some(folio) = file.mapping().next_marked(at, Mark::Writeback) {
            if folio.index() > last {
                break;
            }
            wait_folio_writeback(ctx, &folio);
            at = folio.index() + folio.nr_pages();
        }
    }
    ctx.process_completions();
}

/// Integrity writeback of bytes `[start, end)` and a wait for it. Returns the walk's first error
/// (errors are also recorded on the mapping).
pub fn write_and_wait(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, start: u64, end: u64) -> Result<()> {
    let walked = writeback_range(file, ops, start, end, WritebackMode::Integrity);
    wait_writeback_range(file, start, end);
    walked.map(|_| ())
}

/// fsync (`datasync == false`) or fdatasync of bytes `[start, end)` for the opener `open`. See
/// the module documentation.
pub fn fsync(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    start: u64,
    end: u64,
    datasync: bool,
) -> Result<()> {
    // The walk's errors are on the mapping; the errseq check reports them once per opener.
    let _ = write_and_wait(file, ops, start, end);
    file.mapping().check_and_advance(&mut open.wb_err)?;
    let ctx = file.ctx();
    if !ops.commit(datasync)? {
        flush(&**ctx.device(), &**ctx.platform())?;
    }
    Ok(())
}
