//! The locked-folio guard: proof that the caller holds a folio's lock, and the only way to
//! touch the folio's bytes.
//!
//! Owns: one folio reference and the folio lock. Dropping the guard unlocks and wakes waiters.
//! The guard is `Send`: a read submitted under the lock may hand it to the completion, which
//! unlocks (Linux unlocks a folio in the read end_io).
//!
//! Byte access: [`LockedFolio::data`] borrows the bytes shared, [`LockedFolio::data_mut`]
//! exclusively. Writers first wait for writeback to end ("stable pages"): a device reading the
//! folio for writeback never sees the CPU change it underneath, so a `&mut [u8]` never aliases
//! an in-flight DMA read.
//!
//! Unfilled bytes: a folio created by
//! [`Mapping::find_or_create_for_overwrite`](super::Mapping::find_or_create_for_overwrite) is
//! not zeroed in the blocks the caller is about to overwrite; the guard records that range
//! ([`LockedFolio::unfilled`]) and owes it. [`LockedFolio::copy_in`] pays the debt: it hands
//! the caller the range to write and zeroes whatever of the unfilled bytes the copy did not
//! reach. Every other way to see bytes ([`LockedFolio::data`], [`LockedFolio::data_mut`],
//! [`LockedFolio::read_at`], [`LockedFolio::write_at`]) and the unlock (drop) zero the
//! unfilled range first, so no byte the platform handed out unzeroed is ever read by the CPU,
//! copied to a reader, or seen by another lock holder. [`LockedFolio::zero`] only writes, and
//! leaves the debt alone. A folio created for a read
//! ([`Mapping::add_folio_for_read`](super::Mapping::add_folio_for_read)) owes its whole memory
//! as a *read debt*: the zeroing then covers only the blocks that are not uptodate, so what the
//! device read (or the reader zeroed) and marked uptodate stays, and what a failed or never
//! issued read left behind is zeroed before anyone sees it. The remaining way to reach the
//! memory is a device through the `unsafe` [`Folio::io_segment`](super::Folio::io_segment):
//! its contract forbids write I/O (device reads of memory) over unfilled bytes; read I/O into
//! them is harmless.
//!
//! Lock order: the folio lock ranks below the invalidate lock and above the mapping and LRU
//! locks (see [`folio`](super::folio)); a guard may be held across waits.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `folio_lock` ... `folio_unlock` | [`Folio::lock`](super::Folio::lock) ... drop | |
//! | `kmap_local_folio`, `memcpy_to_folio`, `folio_zero_range` | [`LockedFolio::data`], [`LockedFolio::write_at`], [`LockedFolio::zero`] | |
//! | `copy_folio_from_iter_atomic` into a folio that is not uptodate | [`LockedFolio::copy_in`] | Linux never zeroes page-cache pages; here only the bytes a copy is about to cover are left unzeroed, and only until the copy |
//! | `folio_wait_stable` before modifying | implicit in [`LockedFolio::data_mut`] | |
//! | `folio_clear_uptodate`, `iomap_clear_range_dirty` | [`LockedFolio::clear_uptodate`], [`LockedFolio::clear_dirty_range`] | |

use alloc::sync::Arc;
use core::ops::{Deref, Range};
use core::sync::atomic::{AtomicU64, Ordering};

use super::folio::{Folio, FolioFlags};
use crate::{Errno, Result};

/// A folio whose lock the holder owns. See the module documentation.
pub struct LockedFolio {
    folio: Arc<Folio>,
    /// The unfilled byte range (see the module docs), packed `start << 32 | end`; 0 for none.
    /// An atomic only so that the guard stays `Sync`: it is touched by the lock holder alone.
    unfilled: AtomicU64,
}

/// Set in the packed debt when it is a read's (see [`Debt::Read`]).
const READ_DEBT: u64 = 1 << 63;

/// What a new folio's guard owes for its unfilled bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Debt {
    /// Every unfilled byte is zeroed before it can be read (a buffered write's overwrite).
    Overwrite,
    /// Only the unfilled bytes of blocks that are not uptodate are zeroed: the blocks a device
    /// read filled (marked uptodate at its completion) or the engine zeroed keep their bytes
    /// (a readahead folio).
    Read,
}

fn pack(r: &Range<usize>, debt: Debt) -> u64 {
    if r.start >= r.end {
        0
    } else {
        let kind = if debt == Debt::Read { READ_DEBT } else { 0 };
        kind | ((r.start as u64) << 32) | r.end as u64
    }
}

fn unpack(v: u64) -> (Range<usize>, Debt) {
    let debt = if v & READ_DEBT != 0 { Debt::Read } else { Debt::Overwrite };
    (((v & !READ_DEBT) >> 32) as usize..(v & u32::MAX as u64) as usize, debt)
}

impl LockedFolio {
    /// Wraps a folio whose `LOCKED` bit the caller has just set.
    pub(super) fn from_locked(folio: Arc<Folio>) -> Self {
        debug_assert!(folio.is_locked());
        Self { folio, unfilled: AtomicU64::new(0) }
    }

    /// Wraps a new folio whose `LOCKED` bit is set and whose bytes `unfilled` hold whatever
    /// the platform left there (every other byte is initialised).
    pub(super) fn from_locked_unfilled(folio: Arc<Folio>, unfilled: Range<usize>, debt: Debt) -> Self {
        debug_assert!(folio.is_locked() && unfilled.end <= folio.size());
        Self { folio, unfilled: AtomicU64::new(pack(&unfilled, debt)) }
    }

    /// The bytes this guard still owes (see the module docs); empty for all but a folio just
    /// created for an overwrite or a read.
    pub fn unfilled(&self) -> Range<usize> {
        unpack(self.unfilled.load(Ordering::Relaxed)).0
    }

    /// Zeroes the unfilled bytes, if any: from here on every byte of the folio is initialised.
    fn settle(&self) {
        let (r, debt) = unpack(self.unfilled.swap(0, Ordering::Relaxed));
        self.zero_owed(r, debt);
    }

    /// Zeroes the owed bytes `r` (all of them for an overwrite's debt, those of blocks not
    /// uptodate for a read's). `r` lies inside the unfilled range, itself inside the folio.
    fn zero_owed(&self, r: Range<usize>, debt: Debt) {
        if r.start >= r.end || (debt == Debt::Read && self.folio.is_uptodate()) {
            return;
        }
        let base = self.folio.virt().as_ptr();
        // SAFETY (both writes): `[a, b)` lies inside `r`, inside the folio's memory (checked
        // at creation), which lives while we hold a reference; the lock excludes every other
        // CPU accessor, no slice of the folio is alive (any slice would have settled first),
        // and no device touches the bytes now: write I/O never covers unfilled bytes
        // (`io_segment`'s contract; a folio with unfilled bytes has had no dirty bytes yet, so
        // it is not under writeback), and read I/O into them has completed (the reader holding
        // a read debt settles only once every read of the folio ended).
        let zero = |a: usize, b: usize| unsafe { core::ptr::write_bytes(base.add(a), 0, b - a) };
        if debt == Debt::Overwrite {
            zero(r.start, r.end);
            return;
        }
        let bs = self.folio.block_size();
        let mut run: Option<usize> = None;
        let mut b = r.start - r.start % bs;
        while b < r.end {
            let owed = !self.folio.is_block_uptodate(b / bs);
            match (owed, run) {
                (true, None) => run = Some(b.max(r.start)),
                (false, Some(a)) => {
                    zero(a, b);
                    run = None;
                }
                _ => {}
            }
            b += bs;
        }
        if let Some(a) = run {
            zero(a, r.end);
        }
    }

    /// The folio reference.
    pub fn folio(&self) -> &Arc<Folio> {
        &self.folio
    }

    /// Unlocks and returns the reference.
    pub fn unlock(self) -> Arc<Folio> {
        self.folio.clone()
    }

    fn check(&self, offset: usize, len: usize) -> Result<core::ops::Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.folio.size() => Ok(offset..end),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The folio's bytes (the unfilled ones zeroed first).
    pub fn data(&self) -> &[u8] {
        self.settle();
        // SAFETY: the folio memory is `size()` bytes, initialised (zeroed at allocation, or
        // settled just above) and alive while we hold a reference. Holding the lock excludes
        // every other CPU accessor (all byte access goes through a guard), and devices only
        // write to the folio while the lock holder lets them (`io_segment`'s contract).
        unsafe { core::slice::from_raw_parts(self.folio.virt().as_ptr(), self.folio.size()) }
    }

    /// The folio's bytes, mutably (the unfilled ones zeroed first). Waits for writeback to end
    /// first (stable pages).
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.folio.wait_writeback();
        self.settle();
        // SAFETY: as in `data`; `&mut self` makes this the only borrow through the guard, and
        // with writeback finished no device reads the memory (writeback starts only under the
        // lock, which we hold).
        unsafe { core::slice::from_raw_parts_mut(self.folio.virt().as_ptr(), self.folio.size()) }
    }

    /// Lets `fill` write `[offset, offset + len)` and return how many leading bytes of it it
    /// wrote (a short copy returns fewer); returns that count (at most `len`). Afterwards no
    /// byte is unfilled: the unfilled bytes outside `[offset, offset + written)` are zeroed.
    /// The one way to write into unfilled bytes without zeroing them first (the buffered write
    /// copy). Waits for writeback first. `EINVAL` outside the folio.
    pub fn copy_in(
        &mut self,
        offset: usize,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize> {
        let range = self.check(offset, len)?;
        self.folio.wait_writeback();
        let (owed, debt) = unpack(self.unfilled.load(Ordering::Relaxed));
        let base = self.folio.virt().as_ptr();
        // SAFETY: `range` is inside the folio (checked); the lock and `&mut self` exclude every
        // other accessor, writeback is over, and no other slice of the folio is alive. `fill`
        // may only write the slice: its unfilled bytes are never read through it (`&mut [u8]`
        // of bytes that are then written, which the closure's contract is).
        let dst = unsafe { core::slice::from_raw_parts_mut(base.add(range.start), len) };
        let written = fill(dst).min(len);
        if owed.start < owed.end {
            let done = range.start..range.start + written;
            // The slice handed to `fill` is dead.
            for (a, b) in [(owed.start, owed.end.min(done.start)), (owed.start.max(done.end), owed.end)] {
                self.zero_owed(a..b, debt);
            }
            self.unfilled.store(0, Ordering::Relaxed);
        }
        Ok(written)
    }

    /// Copies `buf.len()` bytes at `offset` out of the folio.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let range = self.check(offset, buf.len())?;
        buf.copy_from_slice(&self.data()[range]);
        Ok(())
    }

    /// Copies `buf` into the folio at `offset` (waits for writeback first).
    pub fn write_at(&mut self, offset: usize, buf: &[u8]) -> Result<()> {
        let range = self.check(offset, buf.len())?;
        self.data_mut()[range].copy_from_slice(buf);
        Ok(())
    }

    /// Zeroes `[offset, offset + len)` (waits for writeback first). Only writes: unfilled bytes
    /// elsewhere stay unfilled.
    pub fn zero(&mut self, offset: usize, len: usize) -> Result<()> {
        let range = self.check(offset, len)?;
        self.folio.wait_writeback();
        // SAFETY: inside the folio (checked); the lock and `&mut self` exclude other accessors
        // and writeback is over. No slice is formed, only bytes written.
        unsafe { core::ptr::write_bytes(self.folio.virt().as_ptr().add(range.start), 0, range.len()) };
        Ok(())
    }

    /// Clears the folio's uptodate flag and every per-block uptodate bit (after a read error).
    pub fn clear_uptodate(&self) {
        self.folio.clear_blocks_uptodate();
        self.folio.test_and_clear(FolioFlags::UPTODATE);
    }

    /// Clears the per-block dirty bits of the blocks touched by `[offset, offset + len)`
    /// (done by writeback once those blocks are in a bio). The folio flag is
    /// [`Mapping::clear_dirty_for_io`](super::Mapping::clear_dirty_for_io)'s business.
    pub fn clear_dirty_range(&self, offset: usize, len: usize) -> Result<()> {
        self.check(offset, len)?;
        self.folio.clear_blocks_dirty(offset, len);
        Ok(())
    }
}

impl Deref for LockedFolio {
    type Target = Folio;

    fn deref(&self) -> &Folio {
        &self.folio
    }
}

impl Drop for LockedFolio {
    fn drop(&mut self) {
        // The next lock holder may read any byte.
        self.settle();
        self.folio.unlock_raw();
    }
}

impl core::fmt::Debug for LockedFolio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("LockedFolio").field(&*self.folio).finish()
    }
}
