//! Write ioends: runs of dirty blocks that are contiguous in the file and on disk, with equal
//! flags, gathered into one bio; the builder that gathers them; and what happens when the bio
//! completes.
//!
//! Owns: each [`Ioend`] holds a reference to every folio it writes (those folios are under
//! writeback, which keeps their bytes stable), the file and the filesystem's ops. The
//! [`IoendBuilder`] holds the one ioend being gathered; everything it has added is already
//! counted in the folios' pending write bytes.
//!
//! Completion (inside `BlockDevice::poll`): an error is recorded on the mapping (errseq) and on
//! the folios; then either the folios' pending bytes are counted down and writeback ends where
//! they reach zero (plain overwrites inside the on-disk size), or the ioend is queued on the
//! context for filesystem work (UNWRITTEN, SHARED, or ending past the on-disk size) and its
//! folios stay under writeback until that work is done. Write-through ioends (O_SYNC) report to
//! a [`WriteTracker`] instead and are never queued: the writer finishes them itself.
//!
//! Lock order: completion takes the mapping lock (`end_writeback`) and the context's queue
//! lock, one at a time; the builder takes none.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct iomap_ioend` | [`Ioend`] | one bio per ioend (capped at `max_io_bytes` and 64 segments) |
//! | `iomap_can_add_to_ioend`, `iomap_add_to_ioend` | [`IoendBuilder::add`] | |
//! | `iomap_submit_ioend` | [`IoendBuilder::submit`] | |
//! | `iomap_finish_ioend` / `xfs_end_bio` deferral | `Ioend::complete` | |
//! | `ifs->write_bytes_pending`, `iomap_finish_folio_write` | folio pending write bytes | |

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use intrusive_collections::{intrusive_adapter, LinkedListAtomicLink};

use super::context::{Counters, IomapContext};
use super::file::IomapFile;
use super::ops::IomapOps;
use super::types::IoendFlags;
use crate::block::{Bio, BioComplete, BioEnd, BioFlags, BioOp, BIO_MAX_SEGMENTS, SECTOR_SIZE};
use crate::pagecache::Folio;
use crate::platform::{wait_until, Platform};
use crate::{Errno, Result};

/// A folio range an ioend writes.
struct Part {
    folio: Arc<Folio>,
    offset: u32,
    len: u32,
}

/// A write in flight. See the module documentation.
pub(crate) struct Ioend {
    link: LinkedListAtomicLink,
    me: Weak<Ioend>,
    pub(crate) file: Arc<IomapFile>,
    pub(crate) ops: Arc<dyn IomapOps>,
    /// File byte offset.
    pub(crate) offset: u64,
    /// Bytes, clamped to the in-core size when built.
    pub(crate) size: u64,
    pub(crate) flags: IoendFlags,
    parts: heapless::Vec<Part, BIO_MAX_SEGMENTS>,
    /// 0, or the errno code of the failure.
    error: AtomicI32,
    tracker: Option<Arc<WriteTracker>>,
}

intrusive_adapter!(pub(crate) IoendAdapter = Arc<Ioend>: Ioend { link => LinkedListAtomicLink });

impl Ioend {
    /// The I/O error, if the write failed.
    pub(crate) fn error(&self) -> Option<Errno> {
        match self.error.load(Ordering::Acquire) {
            0 => None,
            c => Some(Errno::from_code(c).unwrap_or(Errno::EIO)),
        }
    }

    /// One past the last file byte.
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.size
    }

    /// Counts the written bytes down on every folio and ends writeback where none are left.
    pub(crate) fn end_folios(&self) {
        for p in &self.parts {
            if p.folio.end_write_pending(p.len) {
                self.file.mapping().end_writeback(&p.folio);
            }
        }
    }

    fn needs_fs_work(&self) -> bool {
        self.flags.intersects(IoendFlags::UNWRITTEN | IoendFlags::SHARED)
            || self.end() > self.file.disk_size()
    }
}

impl BioComplete for Ioend {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        if let Err(e) = result {
            self.error.store(e.code(), Ordering::Release);
            self.file.mapping().set_error(e);
            for p in &self.parts {
                p.folio.set_error();
            }
        }
        if let Some(t) = &self.tracker {
            self.end_folios();
            t.finish_one(result.err());
            return;
        }
        if self.needs_fs_work() {
            if let Some(me) = self.me.upgrade() {
                let ctx = self.file.ctx();
                Counters::add(&ctx.counters.ioends_queued, 1);
                ctx.completions.lock().push_back(me);
                return;
            }
        }
        self.end_folios();
    }
}

/// Counts the write-through bios of one O_SYNC write and keeps their first error.
pub(crate) struct WriteTracker {
    pending: AtomicUsize,
    error: AtomicI32,
    platform: Arc<dyn Platform>,
}

impl WriteTracker {
    pub(crate) fn new(platform: Arc<dyn Platform>) -> Arc<Self> {
        Arc::new(Self { pending: AtomicUsize::new(0), error: AtomicI32::new(0), platform })
    }

    fn key(&self) -> usize {
        self as *const Self as usize
    }

    fn finish_one(&self, error: Option<Errno>) {
        if let Some(e) = error {
            let _ = self.error.compare_exchange(0, e.code(), Ordering::AcqRel, Ordering::Acquire);
        }
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.platform.unpark(self.key());
    }

    /// Waits (kicking the context) until every bio finished; returns the first error.
    pub(crate) fn wait(&self, ctx: &IomapContext) -> Result<()> {
        wait_until(&*self.platform, self.key(), &|| self.pending.load(Ordering::Acquire) == 0, &|| {
            ctx.kick()
        });
        match self.error.load(Ordering::Acquire) {
            0 => Ok(()),
            c => Err(Errno::from_code(c).unwrap_or(Errno::EIO)),
        }
    }
}

/// The ioend being gathered.
struct OpenIoend {
    offset: u64,
    /// One past the last file byte added (block aligned).
    end: u64,
    /// One past the last byte inside the in-core size at the time of adding.
    size_end: u64,
    disk_start: u64,
    disk_next: u64,
    flags: IoendFlags,
    parts: heapless::Vec<Part, BIO_MAX_SEGMENTS>,
}

impl OpenIoend {
    fn bytes(&self) -> u64 {
        self.disk_next - self.disk_start
    }
}

/// Gathers runs into ioends and submits them (Linux's writeback context, `wpc`).
pub(crate) struct IoendBuilder {
    file: Arc<IomapFile>,
    ops: Arc<dyn IomapOps>,
    open: Option<OpenIoend>,
    tracker: Option<Arc<WriteTracker>>,
    /// Ioends submitted.
    pub(crate) submitted: u64,
}

/// A run to add: `len` bytes at byte `offset` of `folio`, file position `pos`, disk byte `disk`.
pub(crate) struct Run<'a> {
    pub folio: &'a Arc<Folio>,
    pub offset: usize,
    pub len: usize,
    pub pos: u64,
    pub disk: u64,
    pub flags: IoendFlags,
    /// The run starts a BOUNDARY mapping: never merge it behind earlier runs.
    pub boundary: bool,
    /// The in-core size the run is clamped to for the on-disk size update.
    pub eof: u64,
}

impl IoendBuilder {
    /// A builder for writeback of `file`.
    pub(crate) fn new(file: Arc<IomapFile>, ops: Arc<dyn IomapOps>) -> Self {
        Self { file, ops, open: None, tracker: None, submitted: 0 }
    }

    /// A builder for write-through bios reporting to `tracker`.
    pub(crate) fn with_tracker(
        file: Arc<IomapFile>,
        ops: Arc<dyn IomapOps>,
        tracker: Arc<WriteTracker>,
    ) -> Self {
        Self { file, ops, open: None, tracker: Some(tracker), submitted: 0 }
    }

    /// True while an ioend is being gathered.
    pub(crate) fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether `run` may continue `open` (size aside).
    fn continues(open: &OpenIoend, run: &Run<'_>) -> bool {
        open.flags == run.flags
            && !run.boundary
            && open.end == run.pos
            && open.disk_next == run.disk
            && (!open.parts.is_full() || Self::extends_last(open, run))
    }

    fn extends_last(open: &OpenIoend, run: &Run<'_>) -> bool {
        open.parts.last().is_some_and(|p| {
            Arc::ptr_eq(&p.folio, run.folio) && p.offset as usize + p.len as usize == run.offset
        })
    }

    /// Adds a run (the folio is under writeback): it joins the gathered ioend while it
    /// continues it and there is room, the rest starts new ioends (the gathered one is
    /// submitted first).
    pub(crate) fn add(&mut self, mut run: Run<'_>) {
        let max = self.file.ctx().config().max_io_bytes;
        while run.len > 0 {
            let mut room = match &self.open {
                Some(o) if Self::continues(o, &run) => max.saturating_sub(o.bytes()),
                _ => 0,
            };
            if room == 0 {
                self.submit(BioFlags::empty());
                self.open = Some(OpenIoend {
                    offset: run.pos,
                    end: run.pos,
                    size_end: run.pos,
                    disk_start: run.disk,
                    disk_next: run.disk,
                    flags: run.flags,
                    parts: heapless::Vec::new(),
                });
                room = max;
            }
            let piece = (run.len as u64).min(room) as usize;
            let Some(open) = self.open.as_mut() else { return };
            run.folio.add_write_pending(piece as u32);
            if Self::extends_last(open, &run) {
                if let Some(last) = open.parts.last_mut() {
                    last.len += piece as u32;
                }
            } else {
                let pushed = open.parts.push(Part {
                    folio: run.folio.clone(),
                    offset: run.offset as u32,
                    len: piece as u32,
                });
                debug_assert!(pushed.is_ok(), "continues() checked room");
            }
            let piece_end = run.pos + piece as u64;
            open.end = piece_end;
            open.size_end = open.size_end.max(piece_end.min(run.eof).max(run.pos));
            open.disk_next += piece as u64;
            run.offset += piece;
            run.pos = piece_end;
            run.disk += piece as u64;
            run.len -= piece;
            run.boundary = false;
        }
    }

    /// Submits the gathered ioend (if any) with `flags` on its bio.
    pub(crate) fn submit(&mut self, flags: BioFlags) {
        let Some(open) = self.open.take() else { return };
        let ctx = self.file.ctx().clone();
        let bytes = open.bytes();
        let ioend = Arc::new_cyclic(|me| Ioend {
            link: LinkedListAtomicLink::new(),
            me: me.clone(),
            file: self.file.clone(),
            ops: self.ops.clone(),
            offset: open.offset,
            size: open.size_end - open.offset,
            flags: open.flags,
            parts: open.parts,
            error: AtomicI32::new(0),
            tracker: self.tracker.clone(),
        });
        if let Some(t) = &self.tracker {
            t.pending.fetch_add(1, Ordering::AcqRel);
            Counters::add(&ctx.counters.writethrough_bios, 1);
        } else {
            Counters::add(&ctx.counters.ioends, 1);
            Counters::add(&ctx.counters.ioend_bytes, bytes);
        }
        self.submitted += 1;
        let mut bio = Bio::new(BioOp::Write, open.disk_start / SECTOR_SIZE, BioEnd::new(ioend.clone(), 0));
        bio.flags = flags;
        for p in &ioend.parts {
            // SAFETY: the folio is under writeback (its bytes do not change until writeback
            // ends, which happens only when this ioend completes) and the ioend holds a
            // reference to it until then.
            match unsafe { p.folio.io_segment(p.offset as usize, p.len as usize) } {
                Ok(seg) => {
                    let _ = bio.push(seg);
                }
                Err(e) => {
                    debug_assert!(false, "ioend part outside its folio");
                    return bio.end.complete(Err(e));
                }
            }
        }
        ctx.device().submit(bio);
    }
}

impl Drop for IoendBuilder {
    fn drop(&mut self) {
        // Never leave folios under writeback with nothing in flight.
        self.submit(BioFlags::empty());
    }
}
