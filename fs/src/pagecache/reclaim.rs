//! Reclaim: freeing clean, unused folios from the tail of the inactive list.
//!
//! Owns no state; it is the algorithm over the cache's LRU lists. One pass:
//!
//! 1. Under the LRU lock: age the active list while it is longer than the inactive one, or by
//!    a batch after a pass that freed nothing (referenced folios rotate to the active head with
//!    the bit cleared, the rest move to the inactive head), then pop up to a batch from the inactive tail. A popped folio with its
//!    referenced bit set gets its second chance: bit cleared, moved to the active head. The rest
//!    are *isolated* on a local batch (the reference moves with them), oldest first.
//! 2. Without the LRU lock, per isolated folio: dirty or under writeback -> kept (and counted
//!    for a writeback request); `try_lock` fails -> kept; otherwise, under its mapping's lock,
//!    removed from the mapping only if the mapping and the isolated reference are its only
//!    references. Its memory goes back to the platform when the guard drops.
//! 3. Under the LRU lock again: kept folios still attached to a mapping go back (in use ->
//!    active head, others -> inactive head); isolated folios not examined because the target
//!    was met go back to the inactive tail in their order; detached ones are let go.
//!
//! Reclaim never drops a dirty, locked, under-writeback or referenced-by-anyone folio, never
//! waits, and scans a bounded number of folios (four times the LRU length, enough for every
//! folio to use its second chance and be looked at again), so it always returns. When it met
//! dirty folios and fell short, it calls the filesystem's writeback hook once (asking for the
//! shortfall), with no lock held.
//!
//! Lock order: LRU lock, released; then folio lock (try only) > mapping lock.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `shrink_inactive_list`, `shrink_folio_list` | [`PageCache::reclaim`] | no per-node or memcg lists, no priority loop |
//! | `shrink_active_list` | active-list aging in step 1 | the referenced bit alone decides (no rmap) |
//! | `folio_check_references` second chance | `REFERENCED` test-and-clear | |
//! | `__remove_mapping` refcount freeze | strong count == 2 under the mapping lock | |
//! | dirty folios -> `wakeup_flusher_threads(WB_REASON_VMSCAN)` | [`WritebackHooks::request_writeback`](super::WritebackHooks) with `Reclaim` | XFS never writes from reclaim either |

use alloc::sync::Arc;

use super::cache::{PageCache, WritebackReason};
use super::folio::{Folio, FolioFlags};
use super::lru::Lru;
use super::stats::Counters;

/// Folios isolated per pass.
const BATCH: usize = 32;

/// What a call to [`PageCache::reclaim`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimOutcome {
    /// Bytes of folio memory freed.
    pub freed_bytes: u64,
    /// Folios freed.
    pub freed_folios: u64,
    /// Folios looked at (both lists).
    pub scanned: u64,
    /// Bytes in dirty or under-writeback folios met (not freeable now; a folio met on several
    /// passes counts each time).
    pub dirty_bytes_seen: u64,
}

/// Where a kept folio goes back.
enum Keep {
    Active,
    Inactive,
}

impl PageCache {
    /// Tries to free at least `target_bytes` of clean, unused folios. See the module docs.
    pub fn reclaim(&self, target_bytes: u64) -> ReclaimOutcome {
        let mut out = ReclaimOutcome::default();
        if target_bytes == 0 {
            return out;
        }
        let limit = {
            let (active, inactive) = self.lru.lock().len();
            4 * (active + inactive) as u64 + BATCH as u64
        };
        let mut isolated: heapless::Vec<Arc<Folio>, BATCH> = heapless::Vec::new();
        let mut kept: heapless::Vec<(Arc<Folio>, Keep), BATCH> = heapless::Vec::new();
        // After a pass that freed nothing, age the active list even when it is the shorter
        // one: the inactive list may hold only folios that cannot go (dirty, in use).
        let mut stalled = false;
        while out.freed_bytes < target_bytes && out.scanned < limit {
            let freed_before = out.freed_bytes;
            {
                let mut lru = self.lru.lock();
                age_active(&mut lru, &mut out.scanned, stalled);
                while !isolated.is_full() {
                    let Some(folio) = lru.pop_inactive() else { break };
                    out.scanned += 1;
                    if folio.test_and_clear(FolioFlags::REFERENCED) {
                        lru.push_active(folio);
                    } else if let Err(folio) = isolated.push(folio) {
                        lru.push_inactive(folio);
                        break;
                    }
                }
                let (active, inactive) = lru.len();
                if isolated.is_empty() && active + inactive == 0 {
                    break;
                }
            }
            // Oldest first; once the target is met the rest go back to the tail unexamined.
            isolated.reverse();
            while out.freed_bytes < target_bytes {
                let Some(folio) = isolated.pop() else { break };
                if let Err(keep) = self.try_free(folio, &mut out) {
                    // `kept` has the same capacity as `isolated`: this cannot fail.
                    let _ = kept.push(keep);
                }
            }
            if !kept.is_empty() || !isolated.is_empty() {
                let mut lru = self.lru.lock();
                for folio in isolated.drain(..) {
                    // A folio detached while isolated is let go: its remover could not unlink it.
                    if folio.is_attached() {
                        lru.push_inactive_tail(folio);
                    }
                }
                for (folio, keep) in kept.drain(..) {
                    if folio.is_attached() {
                        match keep {
                            Keep::Active => lru.push_active(folio),
                            Keep::Inactive => lru.push_inactive(folio),
                        }
                    }
                }
            }
            stalled = out.freed_bytes == freed_before;
        }
        let counters = &self.core().counters;
        Counters::add(&counters.scanned, out.scanned);
        Counters::add(&counters.reclaimed_folios, out.freed_folios);
        Counters::add(&counters.reclaimed_bytes, out.freed_bytes);
        if out.dirty_bytes_seen > 0 && out.freed_bytes < target_bytes {
            if let Some(hooks) = self.core().hooks() {
                // Ask for what is missing, as far as dirty memory can provide it.
                let wanted = (target_bytes - out.freed_bytes).min(self.core().dirty_and_writeback());
                self.core().request_writeback(&*hooks, WritebackReason::Reclaim, wanted);
            }
        }
        out
    }

    /// Reclaims until the cache is within its budget, if it can; true when it is.
    pub fn shrink_to_budget(&self) -> bool {
        let over = self.cached_bytes().saturating_sub(self.budget());
        if over > 0 {
            self.reclaim(over);
        }
        self.cached_bytes() <= self.budget()
    }

    /// Frees one isolated folio if nobody needs it; otherwise says where it goes back.
    fn try_free(&self, folio: Arc<Folio>, out: &mut ReclaimOutcome) -> Result<(), (Arc<Folio>, Keep)> {
        let size = folio.size() as u64;
        if folio.is_dirty() || folio.is_writeback() {
            out.dirty_bytes_seen += size;
            return Err((folio, Keep::Inactive));
        }
        let locked = match Folio::try_lock_owned(folio) {
            Ok(locked) => locked,
            Err(folio) => return Err((folio, Keep::Inactive)),
        };
        if locked.is_dirty() || locked.is_writeback() {
            out.dirty_bytes_seen += size;
            return Err((locked.unlock(), Keep::Inactive));
        }
        if !locked.is_attached() {
            // Truncated while isolated: ours was the LRU's reference; let it go.
            if Arc::strong_count(locked.folio()) == 1 {
                out.freed_bytes += size;
                out.freed_folios += 1;
            }
            drop(locked);
            return Ok(());
        }
        let Some(mapping) = locked.mapping_weak().upgrade() else {
            // The mapping is being torn down; its teardown removes this folio.
            return Err((locked.unlock(), Keep::Inactive));
        };
        let removed = mapping.remove_for_reclaim(&locked);
        if !removed {
            return Err((locked.unlock(), Keep::Active));
        }
        // The guard holds the last reference: dropping it unlocks and frees the memory.
        debug_assert_eq!(Arc::strong_count(locked.folio()), 1);
        drop(locked);
        drop(mapping);
        out.freed_bytes += size;
        out.freed_folios += 1;
        Ok(())
    }
}

/// Moves folios from the active tail while the active list is longer than the inactive one
/// (or, when `force`d, a batch whatever the lengths).
fn age_active(lru: &mut Lru, scanned: &mut u64, force: bool) {
    for _ in 0..BATCH {
        let (active, inactive) = lru.len();
        if active == 0 || (!force && active <= inactive) {
            return;
        }
        let Some(folio) = lru.pop_active() else { return };
        *scanned += 1;
        if folio.test_and_clear(FolioFlags::REFERENCED) {
            lru.push_active(folio);
        } else {
            lru.push_inactive(folio);
        }
    }
}
