//! Read I/O: gathering block runs of folios into read bios, and completing them.
//!
//! A folio being read has a [`FolioRead`]: who owns its lock (the read itself for readahead,
//! which unlocks at completion; or the caller, who waits), whether any part failed, and a
//! bias of one pending byte so completions cannot finish the folio before every run was added
//! (Linux's `read_bytes_pending` bias). [`ReadBuilder`] merges runs that are contiguous on disk
//! into one bio (across folios) up to `max_io_bytes` and 64 segments.
//!
//! Completion (inside `BlockDevice::poll`): each run's blocks become uptodate (or the folio is
//! marked failed); the run's bytes are counted down, and at zero the folio's read is finished:
//! the owned lock is dropped (with the error flag set on failure), waiters are woken. A
//! readahead folio starts unzeroed: dropping its lock zeroes the blocks still not uptodate
//! (a failed run's, or ones never issued) - every read of the folio has completed by then, so
//! no DMA targets them (see [`readahead`](mod@super::readahead) for the invariant).
//!
//! Blocks that need no I/O (holes, unwritten, new, beyond EOF) are zeroed in place with
//! [`zero_unread`], through a raw pointer limited to those bytes: other blocks of the same folio
//! may be under DMA at that moment, so no slice of the whole folio may exist.
//!
//! Lock order: the folio lock (owned or borrowed) is held across the whole read; the builder
//! and completions take no other lock than the `FolioRead` guard slot (a leaf).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `struct iomap_readpage_ctx` (`cur_folio`, `bio`) | [`ReadBuilder`] + [`FolioRead`] |
//! | `iomap_read_end_io`, `iomap_finish_folio_read` | `ReadBio::complete` |
//! | `folio_zero_range` + `iomap_set_range_uptodate` for holes | [`zero_unread`] + `mark_uptodate_range` |

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

use super::context::{Counters, IomapContext};
use crate::block::{Bio, BioComplete, BioEnd, BioOp, BIO_MAX_SEGMENTS, SECTOR_SIZE};
use crate::pagecache::{Folio, LockedFolio};
use crate::platform::{wait_until, Platform};
use crate::{Errno, Result};

/// One folio under read. See the module documentation.
pub(crate) struct FolioRead {
    folio: Arc<Folio>,
    guard: Mutex<Option<LockedFolio>>,
    failed: AtomicBool,
    done: AtomicBool,
    /// Whether completed runs are marked uptodate (not for a write's read-modify-write, which
    /// marks the blocks only once the copy into them is complete).
    mark_uptodate: bool,
    platform: Arc<dyn Platform>,
}

impl FolioRead {
    fn new(
        folio: Arc<Folio>,
        guard: Option<LockedFolio>,
        mark_uptodate: bool,
        platform: &Arc<dyn Platform>,
    ) -> Arc<Self> {
        folio.add_read_pending(1);
        Arc::new(Self {
            folio,
            guard: Mutex::new(guard),
            failed: AtomicBool::new(false),
            done: AtomicBool::new(false),
            mark_uptodate,
            platform: platform.clone(),
        })
    }

    /// A read that owns the folio lock and drops it when the read is finished (readahead).
    pub(crate) fn owning(locked: LockedFolio, platform: &Arc<dyn Platform>) -> Arc<Self> {
        let folio = locked.folio().clone();
        Self::new(folio, Some(locked), true, platform)
    }

    /// A read of a folio the caller holds locked and waits for.
    pub(crate) fn borrowed(locked: &LockedFolio, platform: &Arc<dyn Platform>) -> Arc<Self> {
        Self::new(locked.folio().clone(), None, true, platform)
    }

    /// A read-modify-write read of a folio the caller holds locked: blocks are not marked
    /// uptodate at completion.
    pub(crate) fn for_rmw(locked: &LockedFolio, platform: &Arc<dyn Platform>) -> Arc<Self> {
        Self::new(locked.folio().clone(), None, false, platform)
    }

    /// The folio.
    pub(crate) fn folio(&self) -> &Arc<Folio> {
        &self.folio
    }

    /// Every run is added: drops the bias (finishing the read if nothing is in flight).
    pub(crate) fn end_submission(&self) {
        if self.folio.end_read_pending(1) {
            self.finish();
        }
    }

    fn finish(&self) {
        let guard = self.guard.lock().take();
        if let Some(g) = guard {
            if self.failed.load(Ordering::Acquire) {
                g.set_error();
            }
            drop(g);
        }
        self.done.store(true, Ordering::Release);
        self.platform.unpark(self.key());
    }

    fn key(&self) -> usize {
        self as *const Self as usize
    }

    /// Waits (kicking) until the read finished; `EIO` if any part failed.
    pub(crate) fn wait(&self, ctx: &IomapContext) -> Result<()> {
        wait_until(&*self.platform, self.key(), &|| self.done.load(Ordering::Acquire), &|| ctx.kick());
        if self.failed.load(Ordering::Acquire) {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }
}

/// Writes zeros over `[offset, offset + len)` of a folio being read and marks those blocks
/// uptodate. `EINVAL` outside the folio.
///
/// Only for blocks that are not uptodate, of a folio whose lock the caller holds (directly or
/// through a [`FolioRead`] it is building): nobody else reads or writes those bytes then (no
/// reader copies non-uptodate blocks, and non-uptodate blocks are never dirty, so no write bio
/// carries them), while other blocks of the folio may be under DMA.
pub(crate) fn zero_unread(folio: &Folio, offset: usize, len: usize) -> Result<()> {
    fill_raw(folio, offset, len, None)?;
    folio.mark_uptodate_range(offset, len)?;
    Ok(())
}

/// As [`zero_unread`], copying `src` (exactly `len` bytes) instead of zeros.
pub(crate) fn copy_unread(folio: &Folio, offset: usize, len: usize, src: Option<&[u8]>) -> Result<()> {
    fill_raw(folio, offset, len, src)?;
    folio.mark_uptodate_range(offset, len)?;
    Ok(())
}

/// Zeroes `[offset, offset + len)` of a locked folio's non-uptodate blocks without marking
/// anything (a write's preparation: the blocks become uptodate only once the copy succeeded).
/// Same contract as [`zero_unread`].
pub(crate) fn zero_bytes(folio: &Folio, offset: usize, len: usize) -> Result<()> {
    fill_raw(folio, offset, len, None)
}

fn fill_raw(folio: &Folio, offset: usize, len: usize, src: Option<&[u8]>) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= folio.size() => {}
        _ => return Err(Errno::EINVAL),
    }
    if src.is_some_and(|s| s.len() != len) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `[offset, offset + len)` is inside the folio's memory (checked above), which lives
    // while we hold a reference; per the callers' contract (see `zero_unread`) the caller holds
    // the folio lock and the bytes belong to non-uptodate blocks, so no other CPU access or DMA
    // touches this range. Only this range is accessed (no slice of the whole folio is formed).
    unsafe {
        let dst = folio.virt().as_ptr().add(offset);
        match src {
            Some(s) => core::ptr::copy_nonoverlapping(s.as_ptr(), dst, len),
            None => core::ptr::write_bytes(dst, 0, len),
        }
    }
    Ok(())
}

struct ReadPart {
    fr: Arc<FolioRead>,
    offset: u32,
    len: u32,
}

/// A read bio's completion.
struct ReadBio {
    parts: heapless::Vec<ReadPart, BIO_MAX_SEGMENTS>,
}

impl BioComplete for ReadBio {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        for p in &self.parts {
            let marked = result.is_ok()
                && (!p.fr.mark_uptodate
                    || p.fr.folio.mark_uptodate_range(p.offset as usize, p.len as usize).is_ok());
            if !marked {
                p.fr.failed.store(true, Ordering::Release);
            }
            if p.fr.folio.end_read_pending(p.len) {
                p.fr.finish();
            }
        }
    }
}

struct OpenRead {
    disk_start: u64,
    disk_next: u64,
    parts: heapless::Vec<ReadPart, BIO_MAX_SEGMENTS>,
}

/// Gathers read runs into bios. Submits what it holds when dropped.
pub(crate) struct ReadBuilder<'a> {
    ctx: &'a IomapContext,
    open: Option<OpenRead>,
}

impl<'a> ReadBuilder<'a> {
    pub(crate) fn new(ctx: &'a IomapContext) -> Self {
        Self { ctx, open: None }
    }

    fn extends_last(open: &OpenRead, fr: &Arc<FolioRead>, offset: usize) -> bool {
        open.parts
            .last()
            .is_some_and(|p| Arc::ptr_eq(&p.fr, fr) && p.offset as usize + p.len as usize == offset)
    }

    /// Adds a read of `len` bytes at byte `offset` of `fr`'s folio from disk byte `disk`.
    pub(crate) fn add(&mut self, fr: &Arc<FolioRead>, offset: usize, len: usize, disk: u64) {
        let len32 = len as u32;
        fr.folio.add_read_pending(len32);
        let max = self.ctx.config().max_io_bytes;
        let joins = self.open.as_ref().is_some_and(|o| {
            o.disk_next == disk
                && o.disk_next - o.disk_start + len as u64 <= max
                && (!o.parts.is_full() || Self::extends_last(o, fr, offset))
        });
        if !joins {
            self.submit();
            self.open = Some(OpenRead { disk_start: disk, disk_next: disk, parts: heapless::Vec::new() });
        }
        let Some(open) = self.open.as_mut() else { return };
        if Self::extends_last(open, fr, offset) {
            if let Some(last) = open.parts.last_mut() {
                last.len += len32;
            }
        } else {
            let pushed = open.parts.push(ReadPart { fr: fr.clone(), offset: offset as u32, len: len32 });
            debug_assert!(pushed.is_ok(), "room was checked");
        }
        open.disk_next += len as u64;
    }

    /// Submits the gathered bio, if any.
    pub(crate) fn submit(&mut self) {
        let Some(open) = self.open.take() else { return };
        let bytes = open.disk_next - open.disk_start;
        let done = Arc::new(ReadBio { parts: open.parts });
        let mut bio = Bio::new(BioOp::Read, open.disk_start / SECTOR_SIZE, BioEnd::new(done.clone(), 0));
        for p in &done.parts {
            // SAFETY: the folio stays locked (by the caller or by the FolioRead, which unlocks
            // only when this bio and every other read of it completed), the ReadBio holds a
            // reference to it, and nobody touches non-uptodate blocks while they are read.
            match unsafe { p.fr.folio.io_segment(p.offset as usize, p.len as usize) } {
                Ok(seg) => {
                    let _ = bio.push(seg);
                }
                Err(e) => {
                    debug_assert!(false, "read part outside its folio");
                    return bio.end.complete(Err(e));
                }
            }
        }
        Counters::add(&self.ctx.counters.read_bios, 1);
        Counters::add(&self.ctx.counters.read_bytes, bytes);
        self.ctx.device().submit(bio);
    }
}

impl Drop for ReadBuilder<'_> {
    fn drop(&mut self) {
        self.submit();
    }
}
