//! Page-cache statistics: the live counters and the snapshot callers read.
//!
//! Owns: one set of atomic counters per [`PageCache`](super::PageCache). Gauges (bytes cached,
//! dirty, under writeback) are exact: they change in the same step as the state they count.
//! Event counters (hits, misses, reclaimed, ...) only grow.
//!
//! Locking: none; relaxed-enough atomics (acquire/release), read without a lock.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `NR_FILE_PAGES`, `NR_FILE_DIRTY`, `NR_WRITEBACK` | `cached_bytes`, `dirty_bytes`, `writeback_bytes` |
//! | `PGSCAN_*`, `PGSTEAL_*`, page-cache hit/miss tracing | `scanned`, `reclaimed_*`, `hits`, `misses` |

use core::sync::atomic::{AtomicU64, Ordering};

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub cached_bytes: AtomicU64,
    pub folios: AtomicU64,
    pub dirty_bytes: AtomicU64,
    pub writeback_bytes: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub scanned: AtomicU64,
    pub reclaimed_folios: AtomicU64,
    pub reclaimed_bytes: AtomicU64,
    pub writeback_requests: AtomicU64,
    pub throttled: AtomicU64,
    pub order_fallbacks: AtomicU64,
    pub alloc_failures: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::AcqRel);
    }

    pub fn sub(c: &AtomicU64, n: u64) {
        let prev = c.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(prev >= n, "counter underflow: {prev} - {n}");
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Acquire)
    }
}

/// A snapshot of a page cache's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of folio memory allocated by the cache and not yet freed (the budgeted figure).
    pub cached_bytes: u64,
    /// Folios allocated and not yet freed.
    pub folios: u64,
    /// Bytes in dirty folios.
    pub dirty_bytes: u64,
    /// Bytes in folios under writeback.
    pub writeback_bytes: u64,
    /// Folios on the active list.
    pub active_folios: u64,
    /// Folios on the inactive list.
    pub inactive_folios: u64,
    /// Lookups (and find-or-create calls) that found a folio.
    pub hits: u64,
    /// Lookups (and find-or-create calls) that did not.
    pub misses: u64,
    /// Folios reclaim looked at.
    pub scanned: u64,
    /// Folios reclaim dropped.
    pub reclaimed_folios: u64,
    /// Bytes reclaim freed.
    pub reclaimed_bytes: u64,
    /// Calls of the writeback hook (reclaim meeting dirty folios, dirty thresholds).
    pub writeback_requests: u64,
    /// Writers that blocked in `balance_dirty` above the hard threshold.
    pub throttled: u64,
    /// Folio creations that fell back to a smaller order.
    pub order_fallbacks: u64,
    /// Folio creations that failed for lack of memory.
    pub alloc_failures: u64,
}

impl Counters {
    pub fn snapshot(&self, active: u64, inactive: u64) -> CacheStats {
        CacheStats {
            cached_bytes: Self::get(&self.cached_bytes),
            folios: Self::get(&self.folios),
            dirty_bytes: Self::get(&self.dirty_bytes),
            writeback_bytes: Self::get(&self.writeback_bytes),
            active_folios: active,
            inactive_folios: inactive,
            hits: Self::get(&self.hits),
            misses: Self::get(&self.misses),
            scanned: Self::get(&self.scanned),
            reclaimed_folios: Self::get(&self.reclaimed_folios),
            reclaimed_bytes: Self::get(&self.reclaimed_bytes),
            writeback_requests: Self::get(&self.writeback_requests),
            throttled: Self::get(&self.throttled),
            order_fallbacks: Self::get(&self.order_fallbacks),
            alloc_failures: Self::get(&self.alloc_failures),
        }
    }
}
