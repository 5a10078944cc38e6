//! Folio: a power-of-two run of physically contiguous pages caching part of one file.
//!
//! Owns: the folio's memory (from the [`Platform`], zeroed at allocation except the blocks an
//! overwrite is about to fill, see [`LockedFolio`]; handed back when the last reference goes), its atomic flags, its per-block state and its LRU link.
//!
//! References: an `Arc<Folio>` *is* a folio reference; the strong count is the refcount. The
//! mapping's XArray holds one while the folio is in the cache, the LRU list holds one while
//! the folio is linked there, and every lookup returns a new one. Memory is freed (and the
//! cache's byte count lowered) in `Drop`, so the cache's accounting is exact at every moment.
//!
//! Locking: the `LOCKED` flag is a sleeping bit lock, taken with [`Folio::lock`] /
//! [`Folio::try_lock`], which return a [`LockedFolio`] guard that unlocks on drop. Waits for
//! the lock or for writeback use [`wait_until`](crate::platform::wait_until) with the cache's
//! kick, and every unlock / end of writeback calls `Platform::unpark(folio address)`.
//! Flags `ON_LRU` and `ACTIVE` change only under the cache's LRU lock; `ATTACHED` only under
//! both the folio lock and the mapping lock; the rest are free atomics.
//!
//! Lock order (whole page cache): invalidate lock > folio lock > mapping lock | LRU lock
//! (the mapping and LRU locks are never held together, and nothing waits while holding
//! either).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct folio` + `folio_get`/`folio_put` | `Arc<Folio>` | refcount is the Arc count |
//! | `PG_locked`, `folio_lock`, `folio_trylock`, `folio_unlock` | [`Folio::lock`], [`Folio::try_lock`], drop of [`LockedFolio`] | a typestate guard |
//! | `PG_uptodate/dirty/writeback/error/referenced/active/lru` | [`FolioFlags`] | |
//! | `folio->mapping` (cleared on removal) | a `Weak<Mapping>` fixed at creation + `ATTACHED` flag | a folio never changes mapping |
//! | `folio->private` = `iomap_folio_state` | [`BlockState`](super::block_state) inline | allocated with the folio |
//! | `folio_wait_writeback`, `folio_mark_accessed` | [`Folio::wait_writeback`], [`Folio::mark_accessed`] | activation is done lazily by reclaim |

use alloc::sync::{Arc, Weak};
use core::fmt;
use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use intrusive_collections::LinkedListAtomicLink;

use super::block_state::{pending_add, pending_sub, BlockState};
use super::cache::CacheCore;
use super::locked::{Debt, LockedFolio};
use super::mapping::Mapping;
use crate::block::Segment;
use crate::platform::{PageRun, PAGE_SHIFT, PAGE_SIZE};
use crate::{Errno, Result};

bitflags::bitflags! {
    /// Folio state bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct FolioFlags: u32 {
        /// Locked (held by a [`LockedFolio`]).
        const LOCKED = 1 << 0;
        /// Every block holds valid data.
        const UPTODATE = 1 << 1;
        /// Some block differs from the disk.
        const DIRTY = 1 << 2;
        /// Write I/O is in flight.
        const WRITEBACK = 1 << 3;
        /// An I/O error happened.
        const ERROR = 1 << 4;
        /// Accessed since reclaim last looked.
        const REFERENCED = 1 << 5;
        /// On the active LRU list (else inactive).
        const ACTIVE = 1 << 6;
        /// Linked on an LRU list.
        const ON_LRU = 1 << 7;
        /// In its mapping's XArray.
        const ATTACHED = 1 << 8;
    }
}

/// A folio. See the module documentation.
pub struct Folio {
    index: u64,
    virt: NonNull<u8>,
    phys: u64,
    flags: AtomicU32,
    order: u8,
    block_shift: u8,
    blocks: BlockState,
    pub(super) lru: LinkedListAtomicLink,
    mapping: Weak<Mapping>,
    core: Arc<CacheCore>,
}

// SAFETY: the raw memory pointer is only dereferenced through `LockedFolio` (`&`/`&mut` tied to
// holding the folio lock, which excludes other CPU users) or by devices under the contract of
// the `unsafe` `io_segment`. Everything else in the folio is atomics, immutable after
// creation, or (the LRU link) changed only under the LRU lock.
unsafe impl Send for Folio {}
// SAFETY: as above.
unsafe impl Sync for Folio {}

impl Folio {
    /// A new folio, already locked, owning `run`, whose guard owes the bytes `unfilled` as
    /// `debt` says.
    ///
    /// # Safety
    ///
    /// Every byte of the run outside `unfilled` is initialised (zeroed), and `unfilled` lies
    /// inside the run: the guard zeroes `unfilled` before any of it can be read.
    pub(super) unsafe fn new_locked(
        core: Arc<CacheCore>,
        mapping: Weak<Mapping>,
        index: u64,
        block_shift: u32,
        run: PageRun,
        unfilled: Range<usize>,
        debt: Debt,
    ) -> LockedFolio {
        let order = run.order();
        let blocks = (PAGE_SIZE << order) >> block_shift;
        let folio = Arc::new(Folio {
            index,
            virt: run.virt(),
            phys: run.phys(),
            flags: AtomicU32::new(FolioFlags::LOCKED.bits()),
            order: order as u8,
            block_shift: block_shift as u8,
            blocks: BlockState::new(blocks),
            lru: LinkedListAtomicLink::new(),
            mapping,
            core,
        });
        // `run` is a plain descriptor: the folio now owns what it describes (freed in `Drop`).
        LockedFolio::from_locked_unfilled(folio, unfilled, debt)
    }

    /// First page index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// log2 of the number of pages.
    pub fn order(&self) -> u32 {
        self.order as u32
    }

    /// Number of pages.
    pub fn nr_pages(&self) -> u64 {
        1 << self.order
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        PAGE_SIZE << self.order
    }

    /// Byte position in the file.
    pub fn pos(&self) -> u64 {
        self.index << PAGE_SHIFT
    }

    /// Byte position just past the folio.
    pub fn end_pos(&self) -> u64 {
        self.pos() + self.size() as u64
    }

    /// True when the folio covers page `index`.
    pub fn contains_index(&self, index: u64) -> bool {
        index >= self.index && index - self.index < self.nr_pages()
    }

    /// Current flags.
    pub fn flags(&self) -> FolioFlags {
        FolioFlags::from_bits_retain(self.flags.load(Ordering::Acquire))
    }

    fn test(&self, f: FolioFlags) -> bool {
        self.flags.load(Ordering::Acquire) & f.bits() != 0
    }

    /// Sets `f`; returns whether it was already set.
    pub(super) fn test_and_set(&self, f: FolioFlags) -> bool {
        self.flags.fetch_or(f.bits(), Ordering::AcqRel) & f.bits() != 0
    }

    /// Clears `f`; returns whether it was set.
    pub(super) fn test_and_clear(&self, f: FolioFlags) -> bool {
        self.flags.fetch_and(!f.bits(), Ordering::AcqRel) & f.bits() != 0
    }

    /// Held by a [`LockedFolio`].
    pub fn is_locked(&self) -> bool {
        self.test(FolioFlags::LOCKED)
    }
    /// Every block valid.
    pub fn is_uptodate(&self) -> bool {
        self.test(FolioFlags::UPTODATE)
    }
    /// Dirty.
    pub fn is_dirty(&self) -> bool {
        self.test(FolioFlags::DIRTY)
    }
    /// Under writeback.
    pub fn is_writeback(&self) -> bool {
        self.test(FolioFlags::WRITEBACK)
    }
    /// An I/O error was recorded.
    pub fn has_error(&self) -> bool {
        self.test(FolioFlags::ERROR)
    }
    /// Accessed since reclaim last looked.
    pub fn is_referenced(&self) -> bool {
        self.test(FolioFlags::REFERENCED)
    }
    /// On the active list.
    pub fn is_active(&self) -> bool {
        self.test(FolioFlags::ACTIVE)
    }
    /// On an LRU list.
    pub fn is_on_lru(&self) -> bool {
        self.test(FolioFlags::ON_LRU)
    }
    /// In its mapping (not truncated, invalidated or reclaimed).
    pub fn is_attached(&self) -> bool {
        self.test(FolioFlags::ATTACHED)
    }

    /// True when the folio is in `mapping`. Checked after locking a folio found by lookup:
    /// truncate and reclaim remove folios only while holding their lock, so the answer stays
    /// true for as long as the lock is held.
    pub fn belongs_to(&self, mapping: &Mapping) -> bool {
        self.is_attached() && core::ptr::eq(self.mapping.as_ptr(), mapping)
    }

    pub(super) fn mapping_weak(&self) -> &Weak<Mapping> {
        &self.mapping
    }

    /// Records a use (Linux `folio_mark_accessed`); reclaim gives referenced folios a second
    /// chance.
    pub fn mark_accessed(&self) {
        if !self.test(FolioFlags::REFERENCED) {
            self.test_and_set(FolioFlags::REFERENCED);
        }
    }

    /// Records an I/O error on the folio.
    pub fn set_error(&self) {
        self.test_and_set(FolioFlags::ERROR);
    }

    /// Clears the error flag.
    pub fn clear_error(&self) {
        self.test_and_clear(FolioFlags::ERROR);
    }

    /// Physical (device) address of byte 0.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Kernel-virtual address of byte 0 (raw; byte access goes through [`LockedFolio`]).
    pub fn virt(&self) -> NonNull<u8> {
        self.virt
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// A bio segment for bytes `[offset, offset + len)` of the folio (`EINVAL` if outside it).
    ///
    /// # Safety
    ///
    /// The caller takes on [`Segment::new`]'s contract: until the bio completes, it keeps a
    /// reference to the folio, keeps the folio locked (reads) or under writeback (writes),
    /// and does not touch the range through [`LockedFolio`] byte access. A write (the device
    /// reads the memory) never covers bytes a guard still owes ([`LockedFolio::unfilled`]).
    pub unsafe fn io_segment(&self, offset: usize, len: usize) -> Result<Segment> {
        self.check_range(offset, len)?;
        if len == 0 || len > u32::MAX as usize {
            return Err(Errno::EINVAL);
        }
        // SAFETY: `offset + len <= size`, so the pointer stays inside the folio's memory, which
        // is physically contiguous at `phys`; the caller upholds the rest (see above).
        unsafe {
            let virt = NonNull::new_unchecked(self.virt.as_ptr().add(offset));
            Ok(Segment::new(virt, self.phys + offset as u64, len as u32))
        }
    }

    // ---- locking ----------------------------------------------------------------------

    /// The key waiters park on (the folio's address).
    pub(super) fn wait_key(&self) -> usize {
        self as *const Self as usize
    }

    /// Takes the folio lock if it is free.
    pub fn try_lock(self: &Arc<Self>) -> Option<LockedFolio> {
        if self.test_and_set(FolioFlags::LOCKED) {
            None
        } else {
            Some(LockedFolio::from_locked(self.clone()))
        }
    }

    /// Takes the folio lock if it is free, consuming the reference (handed back on failure).
    pub fn try_lock_owned(self: Arc<Self>) -> core::result::Result<LockedFolio, Arc<Self>> {
        if self.test_and_set(FolioFlags::LOCKED) {
            Err(self)
        } else {
            Ok(LockedFolio::from_locked(self))
        }
    }

    /// Takes the folio lock, waiting (with the cache's kick) while someone else holds it.
    pub fn lock(self: &Arc<Self>) -> LockedFolio {
        loop {
            if let Some(locked) = self.try_lock() {
                return locked;
            }
            self.core.wait(self.wait_key(), &|| !self.is_locked());
        }
    }

    /// Releases the lock bit and wakes waiters (the guard's drop calls this).
    pub(super) fn unlock_raw(&self) {
        let was = self.test_and_clear(FolioFlags::LOCKED);
        debug_assert!(was, "unlock of an unlocked folio");
        self.core.platform.unpark(self.wait_key());
    }

    /// Waits until the folio is not under writeback.
    pub fn wait_writeback(&self) {
        if self.is_writeback() {
            self.core.wait(self.wait_key(), &|| !self.is_writeback());
        }
    }

    // ---- per-block state ----------------------------------------------------------------

    /// Block size of the folio's mapping.
    pub fn block_size(&self) -> usize {
        1 << self.block_shift
    }

    /// Blocks in the folio (at least 1).
    pub fn blocks_per_folio(&self) -> usize {
        self.size() >> self.block_shift
    }

    /// Heap bytes of the per-block bitmap (0 for single-block folios).
    pub fn block_state_heap_bytes(&self) -> usize {
        self.blocks.heap_bytes()
    }

    /// First block and block count touched by `[offset, offset + len)` (`len > 0`).
    fn block_span(&self, offset: usize, len: usize) -> (usize, usize) {
        let first = offset >> self.block_shift;
        let last = (offset + len - 1) >> self.block_shift;
        (first, last - first + 1)
    }

    /// Marks the blocks touched by `[offset, offset + len)` uptodate; the folio becomes
    /// uptodate when all its blocks are. Returns whether the folio is now uptodate. May run in
    /// I/O completion context without the folio lock (the caller's read owns those blocks).
    pub fn mark_uptodate_range(&self, offset: usize, len: usize) -> Result<bool> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(self.is_uptodate());
        }
        if self.blocks.has_bitmap() {
            let (first, count) = self.block_span(offset, len);
            self.blocks.set(first, count);
            if !self.blocks.all_set(0, self.blocks_per_folio()) {
                return Ok(self.is_uptodate());
            }
        }
        self.test_and_set(FolioFlags::UPTODATE);
        Ok(true)
    }

    /// Marks the whole folio uptodate.
    pub fn mark_uptodate(&self) {
        if self.blocks.has_bitmap() {
            self.blocks.set(0, self.blocks_per_folio());
        }
        self.test_and_set(FolioFlags::UPTODATE);
    }

    /// True when every block touched by `[offset, offset + len)` is uptodate.
    pub fn is_range_uptodate(&self, offset: usize, len: usize) -> Result<bool> {
        self.check_range(offset, len)?;
        if self.is_uptodate() || len == 0 {
            return Ok(true);
        }
        if !self.blocks.has_bitmap() {
            return Ok(false);
        }
        let (first, count) = self.block_span(offset, len);
        Ok(self.blocks.all_set(first, count))
    }

    /// Whether block `block` is uptodate (false past the last block).
    pub fn is_block_uptodate(&self, block: usize) -> bool {
        if block >= self.blocks_per_folio() {
            return false;
        }
        self.is_uptodate() || (self.blocks.has_bitmap() && self.blocks.all_set(block, 1))
    }

    /// Whether block `block` has its dirty bit. Single-block folios have no per-block bits:
    /// their one block is dirty when the folio is.
    pub fn is_block_dirty(&self, block: usize) -> bool {
        let n = self.blocks_per_folio();
        if block >= n {
            return false;
        }
        if self.blocks.has_bitmap() {
            self.blocks.all_set(n + block, 1)
        } else {
            self.is_dirty()
        }
    }

    /// Sets the dirty bits of the blocks touched by a non-empty, checked range.
    pub(super) fn set_blocks_dirty(&self, offset: usize, len: usize) {
        if self.blocks.has_bitmap() && len > 0 {
            let (first, count) = self.block_span(offset, len);
            self.blocks.set(self.blocks_per_folio() + first, count);
        }
    }

    /// Clears the dirty bits of the blocks touched by a checked range.
    pub(super) fn clear_blocks_dirty(&self, offset: usize, len: usize) {
        if self.blocks.has_bitmap() && len > 0 {
            let (first, count) = self.block_span(offset, len);
            self.blocks.clear(self.blocks_per_folio() + first, count);
        }
    }

    pub(super) fn clear_blocks_uptodate(&self) {
        if self.blocks.has_bitmap() {
            self.blocks.clear(0, self.blocks_per_folio());
        }
    }

    /// The first run of dirty blocks within `[from, end)`, as a block-aligned byte range
    /// `(start, end)` clipped to whole blocks touching `[from, end)`. A single-block folio has
    /// no per-block bits and reports its whole block (Linux's `iomap_find_dirty_range` without
    /// folio state): callers ask after `clear_dirty_for_io` said the folio was dirty.
    pub fn next_dirty_run(&self, from: usize, end: usize) -> Result<Option<(usize, usize)>> {
        if from > end {
            return Err(Errno::EINVAL);
        }
        self.check_range(from, end - from)?;
        if from == end {
            return Ok(None);
        }
        let (first, count) = self.block_span(from, end - from);
        if !self.blocks.has_bitmap() {
            return Ok(Some((0, self.size())));
        }
        let n = self.blocks_per_folio();
        let Some(start) = self.blocks.next(n + first, n + first + count, true) else {
            return Ok(None);
        };
        let stop = self.blocks.next(start, n + first + count, false).unwrap_or(n + first + count);
        Ok(Some(((start - n) << self.block_shift, (stop - n) << self.block_shift)))
    }

    /// Every run of dirty blocks, in order (see [`Folio::next_dirty_run`]).
    pub fn dirty_runs(&self) -> DirtyRuns<'_> {
        DirtyRuns { folio: self, at: 0 }
    }

    // ---- pending I/O bytes ----------------------------------------------------------------

    /// Adds `bytes` of read I/O in flight on the folio.
    pub fn add_read_pending(&self, bytes: u32) {
        pending_add(self.blocks.read_pending(), bytes)
    }

    /// Retires `bytes` of read I/O; true when none is left pending.
    pub fn end_read_pending(&self, bytes: u32) -> bool {
        pending_sub(self.blocks.read_pending(), bytes)
    }

    /// Adds `bytes` of write I/O in flight on the folio.
    pub fn add_write_pending(&self, bytes: u32) {
        pending_add(self.blocks.write_pending(), bytes)
    }

    /// Retires `bytes` of write I/O; true when none is left pending.
    pub fn end_write_pending(&self, bytes: u32) -> bool {
        pending_sub(self.blocks.write_pending(), bytes)
    }

    /// Read bytes pending.
    pub fn read_pending(&self) -> u32 {
        self.blocks.read_pending().load(Ordering::Acquire)
    }

    /// Write bytes pending.
    pub fn write_pending(&self) -> u32 {
        self.blocks.write_pending().load(Ordering::Acquire)
    }
}

/// Iterator over a folio's dirty block runs as byte ranges `(start, end)`.
pub struct DirtyRuns<'a> {
    folio: &'a Folio,
    at: usize,
}

impl Iterator for DirtyRuns<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let run = self.folio.next_dirty_run(self.at, self.folio.size()).ok().flatten()?;
        self.at = run.1;
        Some(run)
    }
}

impl Drop for Folio {
    fn drop(&mut self) {
        // SAFETY: `virt`/`phys`/`order` describe the run `Folio::new` took from this platform's
        // `alloc_pages` and forgot; this is the last reference, so neither the CPU (byte access
        // needs a reference) nor a device (bios hold a reference, per `io_segment`) uses it.
        unsafe {
            let run = PageRun::from_raw(self.virt, self.phys, self.order as u32);
            self.core.platform.free_pages(run);
        }
        self.core.folio_freed(self.size() as u64);
    }
}

impl fmt::Debug for Folio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Folio")
            .field("index", &self.index)
            .field("order", &self.order)
            .field("flags", &self.flags())
            .finish()
    }
}
