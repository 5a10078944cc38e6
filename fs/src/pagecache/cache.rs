//! The page-cache instance: memory budget, LRU lists, dirty thresholds, hooks and statistics.
//!
//! Owns: the LRU lists (see [`lru`](super::lru)), the byte budget and every cache-wide
//! counter. Nothing is global: a kernel or filesystem creates a [`PageCache`] with an
//! `Arc<dyn Platform>` and a [`CacheConfig`], then one [`Mapping`] per file from it.
//!
//! The part folios need after the cache handle is gone (the platform to free their memory,
//! the byte accounting, the kick for waits) lives in a separate `CacheCore` that every folio
//! references; the LRU lists, which hold folio references, live only in the `PageCache`, so
//! there is no reference cycle.
//!
//! Budget: every folio allocation is charged against the budget *before* memory is taken from
//! the platform (a compare-and-swap on the cached-bytes gauge), so the cache never exceeds it.
//! When a charge fails the allocator reclaims (see [`reclaim`](super::reclaim)) and retries
//! once, then the caller falls back to a smaller order, then gets `ENOMEM`.
//!
//! Dirty throttling: [`PageCache::balance_dirty`] is the hook a writer calls before dirtying
//! more (before it locks the folio it will write). Above the background threshold it asks the
//! filesystem's [`WritebackHooks`] for writeback; above the hard threshold it blocks, kicking,
//! until dirty + writeback bytes fall to the hard threshold.
//!
//! Lock order: the LRU lock is a leaf (never held with a mapping lock, never across a wait or
//! a hook call). Hooks are called with no page-cache lock held.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | memcg limit / `totalram_pages` | [`CacheConfig::budget_bytes`] | a hard budget for the whole cache |
//! | `dirty_background_bytes`, `dirty_bytes` | [`CacheConfig::background_dirty_bytes`], [`CacheConfig::hard_dirty_bytes`] | counted as dirty + writeback, like Linux |
//! | `balance_dirty_pages_ratelimited` | [`PageCache::balance_dirty`] | no rate limiting or pause curve: block above the hard limit |
//! | flusher threads, `wakeup_flusher_threads` | [`WritebackHooks::request_writeback`] | the fs decides how (inline or a worker) |
//! | IRQ-driven completion | [`WritebackHooks::kick`] (poll devices) called from every wait | |

use alloc::sync::{Arc, Weak};
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, RwLock};

use super::folio::Folio;
use super::locked::{Debt, LockedFolio};
use super::lru::Lru;
use super::mapping::Mapping;
use super::stats::{CacheStats, Counters};
use crate::platform::{wait_until, Platform, PAGE_SHIFT, PAGE_SIZE};
use crate::{Errno, Result};

/// Default largest folio order: 2 MiB folios with 4 KiB pages.
pub const DEFAULT_MAX_ORDER: u32 = 9;
/// Largest configurable folio order (256 MiB folios; pending-byte counters are 32-bit).
pub const MAX_FOLIO_ORDER: u32 = 16;
/// Smallest and largest block sizes a mapping may have.
pub const MIN_BLOCK_SIZE: usize = 1024;
/// See [`MIN_BLOCK_SIZE`].
pub const MAX_BLOCK_SIZE: usize = 65536;

/// How a [`PageCache`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes of folio memory the cache may hold.
    pub budget_bytes: u64,
    /// Dirty + writeback bytes above which writers ask for background writeback.
    pub background_dirty_bytes: u64,
    /// Dirty + writeback bytes above which writers block.
    pub hard_dirty_bytes: u64,
    /// Largest folio order created.
    pub max_order: u32,
}

impl CacheConfig {
    /// A budget with Linux-like default thresholds (background 10 %, hard 20 %) and
    /// [`DEFAULT_MAX_ORDER`].
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            budget_bytes,
            background_dirty_bytes: budget_bytes / 10,
            hard_dirty_bytes: budget_bytes / 5,
            max_order: DEFAULT_MAX_ORDER,
        }
    }

    fn validate(&self) -> Result<()> {
        let ok = self.budget_bytes >= PAGE_SIZE as u64
            && self.background_dirty_bytes <= self.hard_dirty_bytes
            && self.hard_dirty_bytes <= self.budget_bytes
            && self.max_order <= MAX_FOLIO_ORDER;
        if ok {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }
}

/// Why the cache asks for writeback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritebackReason {
    /// Reclaim met dirty folios it may not drop.
    Reclaim,
    /// Dirty memory passed the background threshold.
    Background,
    /// A writer is blocked above the hard threshold and no writeback is in flight.
    Throttle,
}

/// A request for writeback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritebackRequest {
    /// Why.
    pub reason: WritebackReason,
    /// How many dirty bytes the cache would like cleaned.
    pub bytes: u64,
}

/// What the filesystem (or kernel) registers with the cache.
///
/// Both methods are called with no page-cache lock held, possibly by a thread that holds one
/// folio lock (a writer allocating its next folio): they must not wait for a folio lock.
/// Linux runs writeback in flusher threads; here `request_writeback` may write inline (with
/// `try_lock`) or hand the work to a worker.
pub trait WritebackHooks: Send + Sync {
    /// Start writeback of dirty folios.
    fn request_writeback(&self, request: WritebackRequest);

    /// Make progress on outstanding I/O (poll the devices). Called from every wait the page
    /// cache does, so a kernel without interrupts or threads completes I/O by polling.
    fn kick(&self) {}
}

/// The part of the cache folios reference (no folio references in here).
pub(crate) struct CacheCore {
    pub(crate) platform: Arc<dyn Platform>,
    hooks: RwLock<Option<Arc<dyn WritebackHooks>>>,
    budget: AtomicU64,
    background: AtomicU64,
    hard: AtomicU64,
    pub(crate) counters: Counters,
}

impl CacheCore {
    pub(crate) fn hooks(&self) -> Option<Arc<dyn WritebackHooks>> {
        self.hooks.read().clone()
    }

    /// Waits for `done` on `key`, kicking the registered hooks.
    pub(crate) fn wait(&self, key: usize, done: &dyn Fn() -> bool) {
        let hooks = self.hooks();
        let kick = || {
            if let Some(h) = &hooks {
                h.kick();
            }
        };
        wait_until(&*self.platform, key, done, &kick);
    }

    /// Charges `bytes` against the budget; false (charging nothing) if it would not fit.
    fn try_charge(&self, bytes: u64) -> bool {
        let budget = self.budget.load(Ordering::Acquire);
        self.counters
            .cached_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(bytes).filter(|&total| total <= budget)
            })
            .is_ok()
    }

    /// A folio's memory went back to the platform.
    pub(crate) fn folio_freed(&self, bytes: u64) {
        Counters::sub(&self.counters.cached_bytes, bytes);
        Counters::sub(&self.counters.folios, 1);
    }

    /// The key writers blocked in `balance_dirty` park on.
    pub(crate) fn throttle_key(&self) -> usize {
        self as *const Self as usize
    }

    /// Dirty plus writeback bytes.
    pub(crate) fn dirty_and_writeback(&self) -> u64 {
        Counters::get(&self.counters.dirty_bytes) + Counters::get(&self.counters.writeback_bytes)
    }

    /// Called whenever dirty + writeback bytes went down.
    pub(crate) fn dirty_dropped(&self) {
        self.platform.unpark(self.throttle_key());
    }

    pub(crate) fn request_writeback(&self, hooks: &dyn WritebackHooks, reason: WritebackReason, bytes: u64) {
        Counters::add(&self.counters.writeback_requests, 1);
        hooks.request_writeback(WritebackRequest { reason, bytes });
    }
}

/// A page cache. See the module documentation.
pub struct PageCache {
    core: Arc<CacheCore>,
    pub(super) lru: Mutex<Lru>,
    max_order: u32,
}

impl PageCache {
    /// A cache drawing folio memory from `platform` under `config` (`EINVAL` if the budget is
    /// under a page, the thresholds are not `background <= hard <= budget`, or
    /// `max_order > MAX_FOLIO_ORDER`).
    pub fn new(platform: Arc<dyn Platform>, config: CacheConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let core = CacheCore {
            platform,
            hooks: RwLock::new(None),
            budget: AtomicU64::new(config.budget_bytes),
            background: AtomicU64::new(config.background_dirty_bytes),
            hard: AtomicU64::new(config.hard_dirty_bytes),
            counters: Counters::default(),
        };
        Ok(Arc::new(Self { core: Arc::new(core), lru: Mutex::new(Lru::new()), max_order: config.max_order }))
    }

    pub(crate) fn core(&self) -> &Arc<CacheCore> {
        &self.core
    }

    /// The platform folios come from.
    pub fn platform(&self) -> &Arc<dyn Platform> {
        &self.core.platform
    }

    /// Largest folio order this cache creates.
    pub fn max_order(&self) -> u32 {
        self.max_order
    }

    /// A new, empty mapping (one per file) whose blocks are `block_size` bytes: a power of two
    /// from 1 KiB to 64 KiB, and no larger than the largest folio (`EINVAL` otherwise). Its
    /// folios are never smaller than one block.
    pub fn new_mapping(self: &Arc<Self>, block_size: usize) -> Result<Arc<Mapping>> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(Errno::EINVAL);
        }
        let block_shift = block_size.trailing_zeros();
        let min_order = block_shift.saturating_sub(PAGE_SHIFT);
        if min_order > self.max_order {
            return Err(Errno::EINVAL);
        }
        Ok(Mapping::new(self.clone(), block_shift, min_order))
    }

    /// Registers the filesystem's writeback and kick hooks (replacing any earlier ones).
    pub fn set_writeback_hooks(&self, hooks: Arc<dyn WritebackHooks>) {
        *self.core.hooks.write() = Some(hooks);
    }

    /// Removes the hooks.
    pub fn clear_writeback_hooks(&self) {
        *self.core.hooks.write() = None;
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.core.budget.load(Ordering::Acquire)
    }

    /// Changes the budget (`EINVAL` below the hard dirty threshold or a page). Shrinking it
    /// does not free anything by itself: call [`PageCache::shrink_to_budget`].
    pub fn set_budget(&self, bytes: u64) -> Result<()> {
        if bytes < PAGE_SIZE as u64 || bytes < self.core.hard.load(Ordering::Acquire) {
            return Err(Errno::EINVAL);
        }
        self.core.budget.store(bytes, Ordering::Release);
        Ok(())
    }

    /// Changes the dirty thresholds (`EINVAL` unless `background <= hard <= budget`).
    pub fn set_dirty_thresholds(&self, background: u64, hard: u64) -> Result<()> {
        if background > hard || hard > self.budget() {
            return Err(Errno::EINVAL);
        }
        self.core.background.store(background, Ordering::Release);
        self.core.hard.store(hard, Ordering::Release);
        self.core.dirty_dropped();
        Ok(())
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> CacheStats {
        let (active, inactive) = self.lru.lock().len();
        self.core.counters.snapshot(active as u64, inactive as u64)
    }

    /// Bytes of folio memory currently allocated (the budgeted figure).
    pub fn cached_bytes(&self) -> u64 {
        Counters::get(&self.core.counters.cached_bytes)
    }

    /// Bytes in dirty folios.
    pub fn dirty_bytes(&self) -> u64 {
        Counters::get(&self.core.counters.dirty_bytes)
    }

    /// Bytes in folios under writeback.
    pub fn writeback_bytes(&self) -> u64 {
        Counters::get(&self.core.counters.writeback_bytes)
    }

    /// The dirty throttle a writer calls before dirtying more (see the module docs). Without
    /// registered hooks nothing can clean memory, so it returns at once.
    pub fn balance_dirty(&self) {
        let core = &*self.core;
        let background = core.background.load(Ordering::Acquire);
        let now = core.dirty_and_writeback();
        if now <= background {
            return;
        }
        let Some(hooks) = core.hooks() else { return };
        core.request_writeback(&*hooks, WritebackReason::Background, now - background);
        let hard = core.hard.load(Ordering::Acquire);
        if core.dirty_and_writeback() <= hard {
            return;
        }
        Counters::add(&core.counters.throttled, 1);
        let done = || core.dirty_and_writeback() <= hard;
        let kick = || {
            // With nothing in flight, only more writeback can help.
            let over = core.dirty_and_writeback().saturating_sub(hard);
            if over > 0 && Counters::get(&core.counters.writeback_bytes) == 0 {
                core.request_writeback(&*hooks, WritebackReason::Throttle, over);
            }
            hooks.kick();
        };
        wait_until(&*core.platform, core.throttle_key(), &done, &kick);
    }

    /// Allocates a locked folio of `order` for `mapping` at `index`, charging the budget and
    /// reclaiming once if it is full. Its memory is zeroed except the bytes `unfilled` (within
    /// the folio), which its guard owes as `debt` says (see [`LockedFolio`]). `None` when the memory cannot be
    /// had.
    pub(super) fn alloc_folio(
        &self,
        mapping: &Weak<Mapping>,
        index: u64,
        order: u32,
        block_shift: u32,
        unfilled: Range<usize>,
        debt: Debt,
    ) -> Option<LockedFolio> {
        let bytes = (PAGE_SIZE as u64) << order;
        if !self.core.try_charge(bytes) {
            let over = (self.cached_bytes() + bytes).saturating_sub(self.budget());
            self.reclaim(over);
            if !self.core.try_charge(bytes) {
                return None;
            }
        }
        let unfilled = unfilled.start.min(bytes as usize)..unfilled.end.min(bytes as usize);
        let run = if unfilled.is_empty() {
            self.core.platform.alloc_pages_zeroed(order)
        } else {
            self.core.platform.alloc_pages(order)
        };
        let Some(run) = run else {
            Counters::sub(&self.core.counters.cached_bytes, bytes);
            return None;
        };
        if run.order() != order {
            // A platform bug; hand the run back rather than mis-account it.
            // SAFETY: the run came from this platform's `alloc_pages` and was never used.
            unsafe { self.core.platform.free_pages(run) };
            Counters::sub(&self.core.counters.cached_bytes, bytes);
            return None;
        }
        if !unfilled.is_empty() {
            let base = run.virt().as_ptr();
            // SAFETY: both ranges lie inside the fresh run, which is exclusively ours.
            unsafe {
                core::ptr::write_bytes(base, 0, unfilled.start);
                core::ptr::write_bytes(base.add(unfilled.end), 0, run.len() - unfilled.end);
            }
        }
        Counters::add(&self.core.counters.folios, 1);
        // SAFETY: the run is zeroed outside `unfilled` (by the platform or just above), and
        // `unfilled` was clamped to the run.
        Some(unsafe {
            Folio::new_locked(self.core.clone(), mapping.clone(), index, block_shift, run, unfilled, debt)
        })
    }

    /// Puts a newly cached folio on the inactive list.
    pub(super) fn lru_add(&self, folio: &Arc<Folio>) {
        self.lru.lock().add(folio.clone());
    }

    /// Takes a folio off its LRU list, if it is on one.
    pub(super) fn lru_remove(&self, folio: &Folio) {
        let taken = self.lru.lock().remove(folio);
        drop(taken);
    }
}
