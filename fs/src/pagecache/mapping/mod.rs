//! Mapping (address space): the cached folios of one file and the per-file state around them.
//!
//! Owns: an [`XArray`] of the file's folios (one reference each) under a spin lock, the
//! file's dirty and writeback page counts, the mapping sequence counter (the iomap validity
//! cookie), the errseq writeback error, the in-flight direct-I/O count and the invalidate lock.
//! Created by [`PageCache::new_mapping`](super::PageCache::new_mapping) as an `Arc<Mapping>`.
//!
//! Folio identity: a folio is created for one mapping and keeps a `Weak` back-reference plus an
//! `ATTACHED` flag. Insertion and removal happen with the folio locked *and* under the mapping
//! lock, so a caller that locked a folio it looked up checks [`Folio::belongs_to`] once and can
//! rely on it until it unlocks (the truncate race check).
//!
//! Lock order: invalidate lock > folio lock > mapping lock. The mapping lock is held only for
//! XArray work and counter updates: never across a wait, an allocation from the platform, or a
//! hook call, and never together with the LRU lock. Writeback completion
//! ([`Mapping::end_writeback`]) takes it from whatever context polls the device, which is safe
//! because nobody waits while holding it.
//!
//! Teardown: dropping the last `Arc<Mapping>` truncates everything (waiting for writeback and
//! cancelling dirty state), like Linux's `truncate_inode_pages_final`; call
//! [`Mapping::truncate`] with 0 first if you would rather do that at a time of your choosing.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct address_space` (`i_pages`, `nrpages`, `wb_err`, `invalidate_lock`) | [`Mapping`] | |
//! | `filemap_get_folio`, `__filemap_get_folio(FGP_LOCK\|FGP_CREAT)` | [`Mapping::get`], [`Mapping::get_locked`], [`Mapping::find_or_create`] | new folios are zeroed |
//! | `filemap_add_folio` (readahead) | [`Mapping::add_folio`], [`Mapping::add_folio_for_read`] | the latter is unzeroed; its guard zeroes the blocks left not uptodate |
//! | `__filemap_get_folio(FGP_WRITEBEGIN)` in `iomap_get_folio` | [`Mapping::find_or_create_for_overwrite`] | only the blocks the write covers wholly stay unzeroed, until the copy |
//! | `filemap_add_folio` | inside `find_or_create` | folios are born locked, as in Linux |
//! | `filemap_get_folios`, `filemap_get_folios_tag` | [`Mapping::get_folios`], [`Mapping::get_folios_tag`] | batches of [`FOLIO_BATCH`] |
//! | `mapping_set_error` + `errseq` | [`Mapping::set_error`], [`Mapping::check_and_advance`] | |
//! | `inode_dio_begin/end`, `inode_dio_wait` | [`Mapping::dio_begin`] ([`DioGuard`]), [`Mapping::wait_dio`] | |
//! | `filemap_invalidate_lock` (rw_semaphore) | [`Mapping::invalidate_lock`] (spin `RwLock`) | spins instead of sleeping |
//! | XFS per-fork sequence / `iomap_valid` | [`Mapping::seq`], [`Mapping::bump_seq`] | one counter per mapping |

mod truncate;
mod writeback;

pub use truncate::TruncateEdges;

use alloc::sync::{Arc, Weak};
use core::ops::Range;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::{Mutex, RwLock};

use super::cache::PageCache;
use super::errseq::{ErrSeq, ErrSeqCell};
use super::folio::{Folio, FolioFlags};
use super::locked::{Debt, LockedFolio};
use super::stats::Counters;
use super::xarray::{Mark, XArray};
use crate::platform::{PAGE_SHIFT, PAGE_SIZE};
use crate::{Errno, Result};

/// Folios returned per batch by the range lookups.
pub const FOLIO_BATCH: usize = 16;
/// A batch of referenced folios (fixed capacity: filling one allocates nothing).
pub type FolioBatch = heapless::Vec<Arc<Folio>, FOLIO_BATCH>;
/// Largest page index a folio may cover (files up to `i64::MAX` bytes, as Linux).
pub const MAX_INDEX: u64 = (i64::MAX as u64) >> PAGE_SHIFT;

/// The XArray and the page count it covers: what the mapping lock protects.
pub(super) struct Tree {
    pub(super) xa: XArray<Folio>,
    pub(super) nr_pages: u64,
}

/// The cached state of one file. See the module documentation.
pub struct Mapping {
    cache: Arc<PageCache>,
    me: Weak<Mapping>,
    block_shift: u32,
    min_order: u32,
    tree: Mutex<Tree>,
    nr_dirty: AtomicU64,
    nr_writeback: AtomicU64,
    seq: AtomicU64,
    wb_err: ErrSeqCell,
    dio: AtomicUsize,
    invalidate: RwLock<()>,
}

impl Mapping {
    pub(super) fn new(cache: Arc<PageCache>, block_shift: u32, min_order: u32) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            cache,
            me: me.clone(),
            block_shift,
            min_order,
            tree: Mutex::new(Tree { xa: XArray::new(), nr_pages: 0 }),
            nr_dirty: AtomicU64::new(0),
            nr_writeback: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            wb_err: ErrSeqCell::new(),
            dio: AtomicUsize::new(0),
            invalidate: RwLock::new(()),
        })
    }

    /// The cache this mapping belongs to.
    pub fn cache(&self) -> &Arc<PageCache> {
        &self.cache
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> usize {
        1 << self.block_shift
    }

    /// Smallest folio order (folios hold at least one block).
    pub fn min_order(&self) -> u32 {
        self.min_order
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.cache.core().counters
    }

    /// Folios cached.
    pub fn nr_folios(&self) -> usize {
        self.tree.lock().xa.len()
    }

    /// Pages cached.
    pub fn nr_pages(&self) -> u64 {
        self.tree.lock().nr_pages
    }

    /// Pages in dirty folios.
    pub fn nr_dirty(&self) -> u64 {
        self.nr_dirty.load(Ordering::Acquire)
    }

    /// Pages in folios under writeback.
    pub fn nr_writeback(&self) -> u64 {
        self.nr_writeback.load(Ordering::Acquire)
    }

    /// Heap bytes of the XArray nodes.
    pub fn xarray_bytes(&self) -> usize {
        self.tree.lock().xa.memory_bytes()
    }

    // ---- lookup -------------------------------------------------------------------------

    fn lookup(&self, index: u64) -> Option<Arc<Folio>> {
        self.tree.lock().xa.get(index)
    }

    /// A reference to the folio covering page `index` (counted as a hit or a miss). The folio
    /// may be truncated at any time after this returns: lock it and check
    /// [`Folio::belongs_to`] before relying on its place in the file. Lookups do not mark the
    /// folio accessed; readers and writers call [`Folio::mark_accessed`] (Linux's
    /// `FGP_ACCESSED`).
    pub fn get(&self, index: u64) -> Option<Arc<Folio>> {
        let found = self.lookup(index);
        let c = if found.is_some() { &self.counters().hits } else { &self.counters().misses };
        Counters::add(c, 1);
        found
    }

    /// The folio covering page `index`, locked and checked to still be in this mapping.
    pub fn get_locked(&self, index: u64) -> Option<LockedFolio> {
        loop {
            let folio = self.get(index)?;
            let locked = folio.lock();
            if locked.belongs_to(self) {
                return Some(locked);
            }
        }
    }

    /// Whether the folio covering `index` carries `mark`.
    pub fn is_marked(&self, index: u64, mark: Mark) -> bool {
        self.tree.lock().xa.get_mark(index, mark)
    }

    /// The folio covering page `index`, locked; created (zeroed, not uptodate) if absent.
    ///
    /// A new folio starts at `index` rounded down to the mapping's minimum order, and has the
    /// requested `order` clamped to `[min_order, max_order]` and lowered to the alignment of
    /// its start. Falls back to smaller orders when part of the range is already cached or
    /// memory is short; `ENOMEM` when not even a minimum-order folio can be had, `EFBIG` past
    /// [`MAX_INDEX`].
    pub fn find_or_create(&self, index: u64, order: u32) -> Result<LockedFolio> {
        self.find_or_create_inner(index, order, 0..0)
    }

    /// As [`Mapping::find_or_create`], for a caller about to overwrite the file bytes
    /// `overwrite`: a folio created here is not zeroed in the blocks lying wholly inside
    /// `overwrite` (a whole-folio overwrite zeroes nothing). Its guard owes those bytes
    /// ([`LockedFolio::unfilled`]): [`LockedFolio::copy_in`] fills them and zeroes what the copy
    /// did not reach, and any other byte access or the unlock zeroes them first, so an
    /// unzeroed byte is never read. A folio found in the cache comes back as is.
    pub fn find_or_create_for_overwrite(
        &self,
        index: u64,
        order: u32,
        overwrite: Range<u64>,
    ) -> Result<LockedFolio> {
        self.find_or_create_inner(index, order, overwrite)
    }

    fn find_or_create_inner(&self, index: u64, order: u32, overwrite: Range<u64>) -> Result<LockedFolio> {
        if index > MAX_INDEX {
            return Err(Errno::EFBIG);
        }
        let start = index & !((1u64 << self.min_order) - 1);
        let order = order
            .clamp(self.min_order, self.cache.max_order().max(self.min_order))
            .min(start.trailing_zeros());
        loop {
            if let Some(folio) = self.lookup(index) {
                let locked = folio.lock();
                if locked.belongs_to(self) {
                    Counters::add(&self.counters().hits, 1);
                    return Ok(locked);
                }
                continue;
            }
            match self.create(start, order, &overwrite) {
                Ok(locked) => {
                    Counters::add(&self.counters().misses, 1);
                    return Ok(locked);
                }
                // Someone cached an overlapping folio first: look again.
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a folio of exactly `order` at `index` and adds it to the mapping, locked
    /// (Linux's `filemap_add_folio`, as readahead uses it). `EINVAL` when `index` is not
    /// aligned to `2^order` or `order` is outside `[min_order, max_order]`, `EFBIG` past
    /// [`MAX_INDEX`], `EEXIST` when any page of the range is cached, `ENOMEM` without memory.
    pub fn add_folio(&self, index: u64, order: u32) -> Result<LockedFolio> {
        self.check_add(index, order)?;
        self.insert_new(index, order, 0..0, Debt::Overwrite)
    }

    /// As [`Mapping::add_folio`], for a reader whose device reads fill the folio: its memory
    /// is not zeroed at all, and its guard owes every byte of every block that is not uptodate
    /// ([`LockedFolio::unfilled`] is the whole folio). The reader zeroes the blocks that need
    /// no I/O (marking them uptodate) and has the device read the others (marked uptodate at
    /// completion); any byte access through the guard, and the unlock, zero the blocks still
    /// not uptodate first - those of a failed or never issued read. Blocks are read into only
    /// through [`Folio::io_segment`] while the guard is held, and the guard is touched again
    /// only after every such read completed.
    pub fn add_folio_for_read(&self, index: u64, order: u32) -> Result<LockedFolio> {
        self.check_add(index, order)?;
        let bytes = PAGE_SIZE << order;
        self.insert_new(index, order, 0..bytes, Debt::Read)
    }

    fn check_add(&self, index: u64, order: u32) -> Result<()> {
        if order < self.min_order || order > self.cache.max_order() || index & ((1u64 << order) - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        if index > MAX_INDEX || MAX_INDEX - index < (1u64 << order) - 1 {
            return Err(Errno::EFBIG);
        }
        Ok(())
    }

    /// Creates and inserts a folio covering `index`, trying `order` then smaller ones.
    fn create(&self, index: u64, mut order: u32, overwrite: &Range<u64>) -> Result<LockedFolio> {
        loop {
            let start = index & !((1u64 << order) - 1);
            let unfilled = self.whole_blocks_within(start, order, overwrite);
            match self.insert_new(start, order, unfilled, Debt::Overwrite) {
                Err(e @ (Errno::EEXIST | Errno::ENOMEM)) => {
                    if order == self.min_order {
                        if e == Errno::ENOMEM {
                            Counters::add(&self.counters().alloc_failures, 1);
                        }
                        return Err(e);
                    }
                    order -= 1;
                    Counters::add(&self.counters().order_fallbacks, 1);
                }
                other => return other,
            }
        }
    }

    /// Allocates a folio of `order` at the aligned `start` and inserts it, locked, unzeroed in
    /// the folio bytes `unfilled`, which its guard owes as `debt` says.
    fn insert_new(&self, start: u64, order: u32, unfilled: Range<usize>, debt: Debt) -> Result<LockedFolio> {
        // A partly cached range fails before any memory is allocated and zeroed.
        if self.tree.lock().xa.occupied(start, order) {
            return Err(Errno::EEXIST);
        }
        let locked = self
            .cache
            .alloc_folio(&self.me, start, order, self.block_shift, unfilled, debt)
            .ok_or(Errno::ENOMEM)?;
        let inserted = {
            let mut tree = self.tree.lock();
            let result = tree.xa.insert(start, order, locked.folio().clone());
            if result.is_ok() {
                locked.test_and_set(FolioFlags::ATTACHED);
                tree.nr_pages += locked.nr_pages();
            }
            result
        };
        match inserted {
            Ok(()) => {
                self.cache.lru_add(locked.folio());
                Ok(locked)
            }
            // The rejected reference and the guard drop here, freeing the folio.
            Err((e, _rejected)) => Err(e),
        }
    }

    /// The bytes of a folio of `order` at page `start` in the blocks lying wholly inside the
    /// file range `range` (folio offsets; empty if none).
    fn whole_blocks_within(&self, start: u64, order: u32, range: &Range<u64>) -> Range<usize> {
        let fpos = start << PAGE_SHIFT;
        let fend = fpos + ((1u64 << PAGE_SHIFT) << order);
        let mask = (1u64 << self.block_shift) - 1;
        let a = range.start.saturating_add(mask) & !mask;
        let b = range.end & !mask;
        let (a, b) = (a.max(fpos), b.min(fend));
        if a < b {
            (a - fpos) as usize..(b - fpos) as usize
        } else {
            0..0
        }
    }

    /// References to the folios covering pages in `[start, last]`, in order, into `batch`
    /// (up to its free capacity). Returns the index to continue from, or `None` when the range
    /// holds no more folios.
    pub fn get_folios(&self, start: u64, last: u64, batch: &mut FolioBatch) -> Option<u64> {
        self.collect(start, last, None, batch)
    }

    /// As [`Mapping::get_folios`], only folios carrying `mark`.
    pub fn get_folios_tag(&self, start: u64, last: u64, mark: Mark, batch: &mut FolioBatch) -> Option<u64> {
        self.collect(start, last, Some(mark), batch)
    }

    fn collect(&self, start: u64, last: u64, mark: Option<Mark>, batch: &mut FolioBatch) -> Option<u64> {
        let tree = self.tree.lock();
        let mut iter = match mark {
            Some(m) => tree.xa.iter_marked(start, last, m),
            None => tree.xa.iter_range(start, last),
        };
        let mut resume = start;
        loop {
            if batch.is_full() {
                return Some(resume);
            }
            let found = iter.next()?;
            let _ = batch.push(found.to_arc());
            match found.next_index() {
                Some(next) if next <= last => resume = next,
                _ => return None,
            }
        }
    }

    /// The first folio carrying `mark` that covers a page at or after `start`, referenced.
    pub fn next_marked(&self, start: u64, mark: Mark) -> Option<Arc<Folio>> {
        self.tree.lock().xa.find_marked(start, mark).map(|f| f.to_arc())
    }

    // ---- sequence, errors, direct I/O, invalidate lock -----------------------------------

    /// The dirty throttle: call before dirtying more of this file, without holding a folio
    /// lock (see [`PageCache::balance_dirty`](super::PageCache::balance_dirty)).
    pub fn balance_dirty(&self) {
        self.cache.balance_dirty();
    }

    /// The mapping sequence: changes whenever the file's block mapping changes.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Records a change of the file's block mapping; returns the new sequence.
    pub fn bump_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records a writeback error for every opener to see once.
    pub fn set_error(&self, err: Errno) {
        self.wb_err.set(err);
    }

    /// The error snapshot a new opener keeps.
    pub fn sample_error(&self) -> ErrSeq {
        self.wb_err.sample()
    }

    /// Reports an error recorded since `since` once, and advances `since` (fsync's check).
    pub fn check_and_advance(&self, since: &mut ErrSeq) -> Result<()> {
        self.wb_err.check_and_advance(since)
    }

    /// Counts a direct I/O in flight until the guard drops.
    pub fn dio_begin(self: &Arc<Self>) -> DioGuard {
        self.dio.fetch_add(1, Ordering::AcqRel);
        DioGuard { mapping: self.clone() }
    }

    /// Direct I/Os in flight.
    pub fn dio_in_flight(&self) -> usize {
        self.dio.load(Ordering::Acquire)
    }

    /// Waits (kicking) until no direct I/O is in flight.
    pub fn wait_dio(&self) {
        let key = &self.dio as *const AtomicUsize as usize;
        self.cache.core().wait(key, &|| self.dio.load(Ordering::Acquire) == 0);
    }

    /// The invalidate lock: shared by paths that add folios from the file's blocks (reads,
    /// faults), exclusive for paths that remove or remap them (truncate, punch, clone).
    pub fn invalidate_lock(&self) -> &RwLock<()> {
        &self.invalidate
    }

    pub(super) fn tree(&self) -> &Mutex<Tree> {
        &self.tree
    }
}

/// A direct I/O in flight on a mapping; dropping it (possibly in the completion) ends it.
pub struct DioGuard {
    mapping: Arc<Mapping>,
}

impl Drop for DioGuard {
    fn drop(&mut self) {
        if self.mapping.dio.fetch_sub(1, Ordering::AcqRel) == 1 {
            let key = &self.mapping.dio as *const AtomicUsize as usize;
            self.mapping.cache.core().platform.unpark(key);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.truncate_range(0, u64::MAX);
    }
}
