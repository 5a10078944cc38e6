//! O_SYNC / O_DSYNC buffered writes written through to disk without dirtying the cache.
//!
//! For every chunk of a synchronous write whose blocks are plain overwrites, the folio's
//! affected blocks (the written range rounded out to blocks; the edges were read or zeroed by
//! `write_begin`, so they are valid) are written straight from the locked, uptodate folio: the
//! folio is put under writeback (stable while the bio reads it), the run joins a write-through
//! ioend (contiguous chunks merge into one bio), and the folio is unlocked clean. When the
//! write is done the bios are waited for, then durability is arranged once:
//!
//! - a single bio and nothing to commit: the bio carried FUA, nothing else is issued;
//! - the write extended the on-disk size: [`IomapOps::ioend_done`] records the new size, and
//!   [`IomapOps::commit`] makes it durable (its PREFLUSH+FUA also covers the data);
//! - O_SYNC, a mapping flagged DIRTY, inline data, or chunks that fell back: commit; if the
//!   filesystem had nothing to commit, one device flush.
//!
//! Where write-through cannot be used, the chunk is dirtied as usual and the range is written
//! back (integrity writeback + wait) before the commit: when the mapping is not MAPPED (HOLE and
//! DELALLOC need allocation, UNWRITTEN needs conversion), is SHARED or has a srcmap (copy on
//! write), is NEW (just allocated: metadata not yet committed), or when the folio is already
//! dirty or under writeback (its other dirty blocks belong to writeback's tagged walk). INLINE
//! data is written into the inode by the write itself and committed.
//!
//! Errors: a failed bio is recorded on the mapping (other openers see it once) and returned to
//! the writer, consuming it for the writer's own opener. The cached data stays (clean), as with
//! a failed writeback in Linux.
//!
//! Lock order: the folio lock is held while a chunk joins an ioend; the pending ioend is
//! submitted before the writer could wait for one of its folios.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `generic_write_sync` after a buffered write (dirty + fsync the range) | the fallback |
//! | write-through for O_SYNC buffered writes (Dave Chinner's 2023 proposal, not merged) | `WriteThrough` |
//! | `REQ_FUA` on pure-overwrite O_DSYNC direct writes | FUA on the single write-through bio |

use alloc::sync::Arc;

use super::file::{IomapFile, OpenFile};
use super::ioend::{IoendBuilder, Run, WriteTracker};
use super::iter::IomapIter;
use super::ops::IomapOps;
use super::sync::write_and_wait;
use super::types::{IoendDone, IoendFlags, IomapFlags, IomapType};
use super::write::WriteFlags;
use crate::block::{sync::flush, BioFlags};
use crate::pagecache::LockedFolio;
use crate::Result;

/// The write-through state of one synchronous write. See the module documentation.
pub(crate) struct WriteThrough {
    builder: IoendBuilder,
    tracker: Arc<WriteTracker>,
    /// File range written through.
    through: Option<(u64, u64)>,
    /// File range dirtied instead.
    dirtied: Option<(u64, u64)>,
    /// Something needs a metadata commit whatever the size (DIRTY mapping, inline data).
    meta: bool,
    /// A chunk was dirtied since the write path last throttled.
    dirtied_since_throttle: bool,
}

fn widen(r: &mut Option<(u64, u64)>, start: u64, end: u64) {
    *r = Some(match *r {
        Some((s, e)) => (s.min(start), e.max(end)),
        None => (start, end),
    });
}

impl WriteThrough {
    pub(crate) fn new(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>) -> Self {
        let tracker = WriteTracker::new(file.ctx().platform().clone());
        Self {
            builder: IoendBuilder::with_tracker(file.clone(), ops.clone(), tracker.clone()),
            tracker,
            through: None,
            dirtied: None,
            meta: false,
            dirtied_since_throttle: false,
        }
    }

    /// Submits the ioend being gathered (before anyone may wait for its folios).
    pub(crate) fn submit_pending(&mut self) {
        self.builder.submit(BioFlags::empty());
    }

    /// Whether the chunk just copied into `folio` under the iterator's mapping can be written
    /// through.
    pub(crate) fn eligible(&self, it: &IomapIter, folio: &LockedFolio) -> bool {
        let m = it.iomap();
        m.kind == IomapType::Mapped
            && !m.flags.intersects(IomapFlags::SHARED | IomapFlags::NEW)
            && it.srcmap().is_hole()
            && !folio.is_dirty()
            && !folio.is_writeback()
    }

    /// Writes the blocks of `[off, off + len)` of `folio` through.
    pub(crate) fn add(
        &mut self,
        file: &IomapFile,
        it: &IomapIter,
        folio: &LockedFolio,
        off: usize,
        len: usize,
    ) -> Result<()> {
        let bs = file.block_size() as usize;
        let b0 = off & !(bs - 1);
        let b1 = ((off + len + bs - 1) & !(bs - 1)).min(folio.size());
        let pos0 = folio.pos() + b0 as u64;
        let m = *it.iomap();
        let disk = m.disk_addr(pos0)?;
        file.mapping().start_writeback(folio)?;
        if m.flags.contains(IomapFlags::DIRTY) {
            self.meta = true;
        }
        self.builder.add(Run {
            folio: folio.folio(),
            offset: b0,
            len: b1 - b0,
            pos: pos0,
            disk,
            flags: IoendFlags::empty(),
            boundary: m.flags.contains(IomapFlags::BOUNDARY) && pos0 == m.offset,
            eof: file.size(),
        });
        let start = folio.pos() + off as u64;
        widen(&mut self.through, start, start + len as u64);
        Ok(())
    }

    /// A chunk in `[start, end)` was dirtied instead.
    pub(crate) fn note_dirtied(&mut self, start: u64, end: u64) {
        widen(&mut self.dirtied, start, end);
        self.dirtied_since_throttle = true;
    }

    /// Whether the write path must throttle before its next chunk (a chunk was dirtied since
    /// the last time); if so, the pending ioend is submitted first, because the throttle may
    /// wait for writeback, including that of our own folios.
    pub(crate) fn take_dirtied(&mut self) -> bool {
        if !core::mem::take(&mut self.dirtied_since_throttle) {
            return false;
        }
        self.submit_pending();
        true
    }

    /// A chunk went into inline data.
    pub(crate) fn note_inline(&mut self) {
        self.meta = true;
    }

    /// Submits, waits, and makes the write durable (see the module documentation).
    pub(crate) fn finish(
        mut self,
        file: &Arc<IomapFile>,
        ops: &Arc<dyn IomapOps>,
        open: &mut OpenFile,
        flags: WriteFlags,
    ) -> Result<()> {
        if self.through.is_none() && self.dirtied.is_none() && !self.meta {
            return Ok(());
        }
        let ctx = file.ctx();
        let sync = flags.contains(WriteFlags::SYNC);
        let extends = self.through.is_some_and(|(_, e)| e > file.disk_size());
        let fua = self.builder.submitted == 0
            && self.builder.has_open()
            && !extends
            && !sync
            && !self.meta
            && self.dirtied.is_none();
        self.builder.submit(if fua { BioFlags::FUA } else { BioFlags::empty() });
        if let Err(e) = self.tracker.wait(ctx) {
            let _ = file.mapping().check_and_advance(&mut open.wb_err);
            return Err(e);
        }
        if let Some((s, e)) = self.dirtied {
            // Errors are recorded on the mapping and reported below.
            let _ = write_and_wait(file, ops, s, e);
        }
        file.mapping().check_and_advance(&mut open.wb_err)?;
        if let (true, Some((s, e))) = (extends, self.through) {
            let end = e.min(file.size());
            if end > s {
                ops.ioend_done(&IoendDone {
                    offset: s,
                    size: end - s,
                    flags: IoendFlags::empty(),
                    error: None,
                })?;
            }
        }
        let committed =
            if sync || extends || self.meta || self.dirtied.is_some() { ops.commit(!sync)? } else { false };
        if !committed && !fua {
            flush(&**ctx.device(), &**ctx.platform())?;
        }
        Ok(())
    }
}
