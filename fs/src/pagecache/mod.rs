//! The page cache: multi-page folios of file data, indexed per file by an XArray, kept on
//! global LRU lists under a byte budget, with the dirty/writeback bookkeeping the iomap engine
//! builds on.
//!
//! # Pieces
//!
//! | module | owns |
//! |---|---|
//! | [`xarray`] | the radix tree: multi-index entries, DIRTY/WRITEBACK/TOWRITE marks, ordered and marked walks |
//! | [`folio`](Folio) | one folio: memory from the `Platform`, flags, refcount (`Arc`), per-block state, LRU link |
//! | [`LockedFolio`] | the lock guard and the only byte access; the unzeroed bytes a new folio owes its writer |
//! | [`Mapping`] | one file's folios, dirty/writeback accounting, sequence, errseq, DIO count, invalidate lock |
//! | [`PageCache`] | the budget, LRU lists, dirty thresholds, hooks, statistics; [`PageCache::reclaim`] |
//!
//! # Using it (what the iomap engine does)
//!
//! ```text
//! cache   = PageCache::new(platform, CacheConfig::new(budget))?;
//! cache.set_writeback_hooks(fs_hooks);                // writeback requests + device kick
//! mapping = cache.new_mapping(block_size)?;           // one per file
//! cache.balance_dirty();                              // before dirtying more
//! folio   = mapping.find_or_create(index, order)?;    // locked; check mapping.seq() here
//! folio.write_at(off, bytes)?; folio.mark_uptodate_range(off, len)?;
//! // or, for a writer about to overwrite [pos, end): a new folio is left unzeroed in the
//! // blocks inside it, and the copy goes through copy_in (which zeroes what it missed)
//! folio   = mapping.find_or_create_for_overwrite(index, order, pos..end)?;
//! copied  = folio.copy_in(off, len, |dst| copy_from_user(dst))?;
//! mapping.mark_dirty(&folio, off, len)?;              // unlock = drop(folio)
//! // writeback
//! mapping.tag_for_writeback(first, last);
//! mapping.get_folios_tag(first, last, Mark::Towrite, &mut batch) -> lock, belongs_to,
//!     clear_dirty_for_io, dirty_runs, start_writeback, clear_dirty_range, submit, unlock;
//! mapping.end_writeback(&folio)                       // in the bio completion
//! ```
//!
//! # Lock order
//!
//! invalidate lock (spin `RwLock`, per mapping) > folio lock (bit lock, may be held across
//! waits) > mapping lock (spin, per mapping) | LRU lock (spin, per cache). The mapping and LRU
//! locks are leaves, never held together, never held across a wait, an allocation from the
//! platform, or a hook call. Waits (folio lock, writeback, DIO, dirty throttle) go through
//! [`wait_until`](crate::platform::wait_until) with the registered kick; every state change a
//! waiter may wait for calls `Platform::unpark` with the waited-on key.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct page`/`struct folio`, `folio_get/put` | [`Folio`], `Arc<Folio>` | |
//! | `address_space` | [`Mapping`] | |
//! | global LRU + memcg limits + kswapd | [`PageCache`] budget + [`PageCache::reclaim`] called by the kernel | no background thread: the kernel calls reclaim from its worker or idle loop; allocation reclaims directly |
//! | `iomap_folio_state` | per-block bits inside [`Folio`] | allocated with the folio |
//! | RCU page-cache lookups | lookups under the mapping spin lock | no RCU in a portable `no_std` crate |

pub mod bench;
mod block_state;
mod cache;
mod errseq;
mod folio;
mod locked;
mod lru;
mod mapping;
mod reclaim;
mod stats;
pub mod xarray;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use cache::{
    CacheConfig, PageCache, WritebackHooks, WritebackReason, WritebackRequest, DEFAULT_MAX_ORDER,
    MAX_BLOCK_SIZE, MAX_FOLIO_ORDER, MIN_BLOCK_SIZE,
};
pub use errseq::{ErrSeq, ErrSeqCell};
pub use folio::{DirtyRuns, Folio, FolioFlags};
pub use locked::LockedFolio;
pub use mapping::{DioGuard, FolioBatch, Mapping, TruncateEdges, FOLIO_BATCH, MAX_INDEX};
pub use reclaim::ReclaimOutcome;
pub use stats::CacheStats;
pub use xarray::{Mark, XArray};
