//! Writeback: walking a file's dirty folios and turning their dirty block runs into ioends.
//!
//! [`writeback_range`] in [`WritebackMode::Integrity`] (fsync, sync) first tags every DIRTY
//! folio of the range TOWRITE and then walks TOWRITE, so folios dirtied during the walk do not
//! keep it going (no livelock); it locks every folio, waits for folios already under writeback,
//! continues after errors and reports the first. [`WritebackMode::Background`] walks DIRTY with
//! a byte budget, skips folios that are locked or under writeback, and stops at the first error
//! or when the budget is spent. One walker per file at a time: integrity waits for another,
//! background skips the file.
//!
//! Per folio (locked, dirty flag cleared for I/O): a folio wholly beyond EOF writes nothing; one
//! straddling EOF has its bytes after EOF zeroed and is written up to the block containing EOF.
//! Writeback starts before anything is submitted (one pending "bias" byte keeps completions
//! from ending it early). Each dirty block run asks the filesystem for its mapping through
//! [`IomapOps::next`] with [`IomapOp::WRITEBACK`]; the mapping is cached across runs and folios
//! while it covers the position and the filesystem says it is valid (checked once per folio),
//! so calls are per extent. HOLE runs are skipped (nothing to write to); DELALLOC or INLINE
//! there is a filesystem bug (`EIO`). MAPPED / UNWRITTEN runs join the open ioend when
//! logically and physically contiguous with equal flags, not starting a BOUNDARY mapping, and
//! under the size cap; otherwise the open ioend is submitted (many in flight) and a new one
//! begun. Dirty bits are cleared; errors are recorded on the mapping and the folio is not
//! re-dirtied (Linux's choice: fsync reports the loss).
//!
//! Lock order: writeback flag > folio lock (one at a time). A walker never waits for a folio's
//! writeback while holding its lock or an unsubmitted ioend.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `write_cache_pages` / `writeback_iter`, `tag_pages_for_writeback` | [`writeback_range`] | no cyclic `writeback_index` |
//! | `WB_SYNC_ALL` / `WB_SYNC_NONE` + `nr_to_write` | [`WritebackMode`] | budget in bytes |
//! | `iomap_writepage_map`, `iomap_writepage_handle_eof` | `write_folio` | |
//! | `xfs_map_blocks` + `xfs_imap_valid` cache | `next(WRITEBACK)` + cached mapping + `is_valid` | |
//! | `I_SYNC` inode writeback exclusion | the file's writeback flag | |

use alloc::sync::Arc;

use super::context::Counters;
use super::file::{IomapFile, MAX_FILE_SIZE};
use super::ioend::{IoendBuilder, Run};
use super::ops::IomapOps;
use super::sync::wait_folio_writeback;
use super::types::{IoendFlags, Iomap, IomapFlags, IomapOp, IomapType, MapRequest};
use crate::block::BioFlags;
use crate::pagecache::{Folio, FolioBatch, LockedFolio, Mark, MAX_INDEX};
use crate::platform::PAGE_SHIFT;
use crate::{Errno, Result};

/// How a writeback walk behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritebackMode {
    /// Data integrity: every folio dirty at the start is written; waits where needed.
    Integrity,
    /// Background: at most about `budget_bytes` of folios, never waiting.
    Background {
        /// Bytes of folios to write before stopping.
        budget_bytes: u64,
    },
}

/// What a walk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WritebackOutcome {
    /// Folios written (including ones that turned out to have nothing to write).
    pub folios: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Ioends submitted.
    pub ioends: u64,
}

/// The walk's state (Linux's `iomap_writepage_ctx`).
struct WbCtx {
    builder: IoendBuilder,
    cached: Option<Iomap>,
    range_end: u64,
}

impl WbCtx {
    /// The writeback mapping covering `pos`: the cached one or a new `next` call.
    fn map(&mut self, file: &IomapFile, ops: &dyn IomapOps, pos: u64) -> Result<Iomap> {
        if let Some(m) = self.cached.filter(|m| m.contains(pos)) {
            return Ok(m);
        }
        let bs = file.block_size();
        let len = self.range_end.min(MAX_FILE_SIZE).saturating_sub(pos).max(bs);
        let req = MapRequest { pos, len, op: IomapOp::WRITEBACK };
        let pair = ops.next(req, None)?.ok_or(Errno::EIO)?;
        pair.iomap.check_for(pos, bs)?;
        self.cached = Some(pair.iomap);
        Ok(pair.iomap)
    }
}

/// Writes back the dirty cache of bytes `[start, end)` of `file`. See the module
/// documentation. Errors are also recorded on the mapping.
pub fn writeback_range(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    start: u64,
    end: u64,
    mode: WritebackMode,
) -> Result<WritebackOutcome> {
    let mut out = WritebackOutcome::default();
    if start >= end || start >= MAX_FILE_SIZE {
        return Ok(out);
    }
    let integrity = mode == WritebackMode::Integrity;
    let Some(_walker) = file.writeback_begin(integrity) else { return Ok(out) };
    let mapping = file.mapping();
    let (first, last) = (start >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT).min(MAX_INDEX));
    let mark = if integrity {
        mapping.tag_for_writeback(first, last);
        Mark::Towrite
    } else {
        Mark::Dirty
    };
    let mut wpc =
        WbCtx { builder: IoendBuilder::new(file.clone(), ops.clone()), cached: None, range_end: end };
    let mut first_err = None;
    let mut at = first;
    'walk: loop {
        let mut batch = FolioBatch::new();
        let resume = mapping.get_folios_tag(at, last, mark, &mut batch);
        for folio in batch {
            if let WritebackMode::Background { budget_bytes } = mode {
                if out.bytes >= budget_bytes {
                    break 'walk;
                }
            }
            match write_one(&mut wpc, file, ops, folio, integrity) {
                Ok(Some(bytes)) => {
                    out.folios += 1;
                    out.bytes += bytes;
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                    if !integrity {
                        break 'walk;
                    }
                }
            }
        }
        match resume {
            Some(next) => at = next,
            None => break,
        }
    }
    wpc.builder.submit(BioFlags::empty());
    out.ioends = wpc.builder.submitted;
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Locks one folio found by the walk and writes it if it is still dirty; `Some(bytes)` when it
/// was written.
fn write_one(
    wpc: &mut WbCtx,
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    folio: Arc<Folio>,
    integrity: bool,
) -> Result<Option<u64>> {
    let mapping = file.mapping();
    let locked = loop {
        let locked = if integrity {
            folio.lock()
        } else {
            match folio.try_lock() {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        if !locked.belongs_to(mapping) {
            return Ok(None);
        }
        if !locked.is_writeback() {
            break locked;
        }
        if !integrity {
            return Ok(None);
        }
        // Wait without the lock and without an unsubmitted ioend of ours.
        drop(locked);
        wpc.builder.submit(BioFlags::empty());
        wait_folio_writeback(file.ctx(), &folio);
    };
    if !mapping.clear_dirty_for_io(&locked) {
        // Clean: only stale DIRTY / TOWRITE marks to settle.
        mapping.cancel_dirty(&locked);
        return Ok(None);
    }
    write_folio(wpc, file, &**ops, locked).map(Some)
}

/// Writes one locked folio whose dirty flag was cleared for I/O; returns its size.
fn write_folio(wpc: &mut WbCtx, file: &IomapFile, ops: &dyn IomapOps, mut folio: LockedFolio) -> Result<u64> {
    let mapping = file.mapping();
    let ctx = file.ctx();
    let size = file.size();
    let fpos = folio.pos();
    let fsize = folio.size() as u64;
    if fpos >= size {
        // Wholly beyond EOF (truncated under us): nothing to write; settle the marks.
        mapping.start_writeback(&folio)?;
        folio.clear_dirty_range(0, folio.size())?;
        mapping.end_writeback(&folio);
        return Ok(fsize);
    }
    let end_pos = folio.end_pos().min(size);
    if end_pos < folio.end_pos() {
        let off = (size - fpos) as usize;
        folio.zero(off, folio.size() - off)?;
    }
    mapping.start_writeback(&folio)?;
    folio.add_write_pending(1);
    Counters::add(&ctx.counters.folios_written, 1);
    if let Some(m) = wpc.cached {
        if !ops.is_valid(&m) {
            wpc.cached = None;
            Counters::add(&ctx.counters.stale_mappings, 1);
        }
    }
    let bs = file.block_size();
    let limit = (((end_pos - fpos) + bs - 1) & !(bs - 1)).min(fsize) as usize;
    let result = write_runs(wpc, file, ops, &folio, limit, size);
    folio.clear_dirty_range(0, folio.size())?;
    if let Err(e) = result {
        mapping.set_error(e);
        folio.set_error();
    }
    if folio.end_write_pending(1) {
        mapping.end_writeback(&folio);
    }
    result.map(|_| fsize)
}

/// Adds every dirty run of `folio` below byte `limit` to ioends.
fn write_runs(
    wpc: &mut WbCtx,
    file: &IomapFile,
    ops: &dyn IomapOps,
    folio: &LockedFolio,
    limit: usize,
    size: u64,
) -> Result<()> {
    let fpos = folio.pos();
    let mut from = 0;
    while let Some((s, e)) = folio.next_dirty_run(from, limit)? {
        from = e;
        let run_end = fpos + e.min(limit) as u64;
        let mut p = fpos + s as u64;
        while p < run_end {
            let m = wpc.map(file, ops, p)?;
            let sub_end = run_end.min(m.end());
            match m.kind {
                IomapType::Hole => {}
                IomapType::Mapped | IomapType::Unwritten => wpc.builder.add(Run {
                    folio: folio.folio(),
                    offset: (p - fpos) as usize,
                    len: (sub_end - p) as usize,
                    pos: p,
                    disk: m.disk_addr(p)?,
                    flags: IoendFlags::for_iomap(&m),
                    boundary: m.flags.contains(IomapFlags::BOUNDARY) && p == m.offset,
                    eof: size,
                }),
                IomapType::Delalloc | IomapType::Inline => return Err(Errno::EIO),
            }
            p = sub_end;
        }
        if e >= limit {
            break;
        }
    }
    Ok(())
}
