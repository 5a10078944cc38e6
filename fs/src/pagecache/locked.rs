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
//! Lock order: the folio lock ranks below the invalidate lock and above the mapping and LRU
//! locks (see [`folio`](super::folio)); a guard may be held across waits.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `folio_lock` ... `folio_unlock` | [`Folio::lock`](super::Folio::lock) ... drop |
//! | `kmap_local_folio`, `memcpy_to_folio`, `folio_zero_range` | [`LockedFolio::data`], [`LockedFolio::write_at`], [`LockedFolio::zero`] |
//! | `folio_wait_stable` before modifying | implicit in [`LockedFolio::data_mut`] |
//! | `folio_clear_uptodate`, `iomap_clear_range_dirty` | [`LockedFolio::clear_uptodate`], [`LockedFolio::clear_dirty_range`] |

use alloc::sync::Arc;
use core::ops::Deref;

use super::folio::{Folio, FolioFlags};
use crate::{Errno, Result};

/// A folio whose lock the holder owns. See the module documentation.
pub struct LockedFolio {
    folio: Arc<Folio>,
}

impl LockedFolio {
    /// Wraps a folio whose `LOCKED` bit the caller has just set.
    pub(super) fn from_locked(folio: Arc<Folio>) -> Self {
        debug_assert!(folio.is_locked());
        Self { folio }
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

    /// The folio's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: the folio memory is `size()` bytes, initialised (zeroed at allocation) and
        // alive while we hold a reference. Holding the lock excludes every other CPU accessor
        // (all byte access goes through a guard), and devices only write to the folio while
        // the lock holder lets them (`io_segment`'s contract).
        unsafe { core::slice::from_raw_parts(self.folio.virt().as_ptr(), self.folio.size()) }
    }

    /// The folio's bytes, mutably. Waits for writeback to end first (stable pages).
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.folio.wait_writeback();
        // SAFETY: as in `data`; `&mut self` makes this the only borrow through the guard, and
        // with writeback finished no device reads the memory (writeback starts only under the
        // lock, which we hold).
        unsafe { core::slice::from_raw_parts_mut(self.folio.virt().as_ptr(), self.folio.size()) }
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

    /// Zeroes `[offset, offset + len)` (waits for writeback first).
    pub fn zero(&mut self, offset: usize, len: usize) -> Result<()> {
        let range = self.check(offset, len)?;
        self.data_mut()[range].fill(0);
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
        self.folio.unlock_raw();
    }
}

impl core::fmt::Debug for LockedFolio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("LockedFolio").field(&*self.folio).finish()
    }
}
