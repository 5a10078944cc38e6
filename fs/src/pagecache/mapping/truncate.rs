//! Removing folios from a mapping: truncate, invalidate, and the removal reclaim does.
//!
//! Every removal holds the folio lock and takes the mapping lock to erase the XArray entry and
//! clear `ATTACHED`; the LRU link is dropped afterwards under the LRU lock (the two locks are
//! never nested). A folio's memory is freed when its last reference goes, so a caller still
//! holding a truncated folio keeps valid (orphaned) memory.
//!
//! - [`Mapping::truncate`] / [`Mapping::truncate_range`]: drop every folio lying wholly inside
//!   the byte range, waiting for writeback and cancelling dirty state (data past EOF is
//!   dead). Folios straddling an edge are not touched but handed back, so the caller (the
//!   iomap engine) can zero the part beyond EOF or inside a punched hole.
//! - [`Mapping::invalidate_range`]: drop every folio overlapping the range that is clean,
//!   after waiting for writeback; a dirty one is left in place and the call returns `EBUSY`
//!   (the caller writes back first, as direct I/O does).
//!
//! Neither stops concurrent creation of new folios in the range: callers hold the
//! [invalidate lock](Mapping::invalidate_lock) exclusively for that, as in Linux.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `truncate_inode_pages_range` | [`Mapping::truncate_range`] | partial folios are reported, not zeroed or split |
//! | `truncate_inode_pages_final` | `Drop for Mapping` | |
//! | `invalidate_inode_pages2_range` | [`Mapping::invalidate_range`] | no `launder_folio`: dirty -> `EBUSY` (iomap has none either) |
//! | `__remove_mapping` (vmscan) | `remove_for_reclaim` | |

use alloc::sync::Arc;

use super::{FolioBatch, Mapping};
use crate::pagecache::folio::{Folio, FolioFlags};
use crate::pagecache::locked::LockedFolio;
use crate::platform::PAGE_SHIFT;
use crate::{Errno, Result};

/// The folios a range truncation left in place because they straddle its edges.
#[derive(Debug, Default)]
pub struct TruncateEdges {
    /// The folio containing the first byte of the range, if it begins before it.
    pub head: Option<Arc<Folio>>,
    /// The folio containing the last byte of the range, if it ends after it (may be the same
    /// folio as `head`).
    pub tail: Option<Arc<Folio>>,
}

impl Mapping {
    /// Removes a locked folio of this mapping from the XArray and the LRU. False if it was no
    /// longer in the mapping.
    fn remove_locked(&self, folio: &LockedFolio) -> bool {
        debug_assert!(!folio.is_writeback() && !folio.is_dirty());
        let erased = {
            let mut tree = self.tree().lock();
            if !folio.belongs_to(self) {
                return false;
            }
            let erased = tree.xa.erase(folio.index());
            debug_assert!(erased.as_ref().is_some_and(|e| Arc::ptr_eq(e, folio.folio())));
            folio.test_and_clear(FolioFlags::ATTACHED);
            tree.nr_pages -= folio.nr_pages();
            erased
        };
        self.cache().lru_remove(folio);
        drop(erased);
        true
    }

    /// Removes an isolated, locked, clean folio if the XArray's and the caller's are its only
    /// references (reclaim). False leaves everything as it was.
    pub(in crate::pagecache) fn remove_for_reclaim(&self, folio: &LockedFolio) -> bool {
        let erased = {
            let mut tree = self.tree().lock();
            if !folio.belongs_to(self)
                || folio.is_dirty()
                || folio.is_writeback()
                || Arc::strong_count(folio.folio()) != 2
            {
                return false;
            }
            let erased = tree.xa.erase(folio.index());
            folio.test_and_clear(FolioFlags::ATTACHED);
            tree.nr_pages -= folio.nr_pages();
            erased
        };
        drop(erased);
        true
    }

    /// Drops every folio from byte `offset` on (see [`Mapping::truncate_range`]); returns the
    /// folio straddling `offset`, whose part beyond `offset` the caller zeroes.
    pub fn truncate(&self, offset: u64) -> Option<Arc<Folio>> {
        self.truncate_range(offset, u64::MAX).head
    }

    /// Drops every folio lying wholly inside bytes `[start, end)`: waits for its writeback,
    /// cancels its dirty state, removes it. Returns the folios straddling the edges.
    pub fn truncate_range(&self, start: u64, end: u64) -> TruncateEdges {
        let mut edges = TruncateEdges::default();
        if start >= end {
            return edges;
        }
        let (first, last) = (start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT);
        self.for_each_folio(first, last, |folio| {
            let (pos, end_pos) = (folio.pos(), folio.end_pos());
            if pos < start || end_pos > end {
                if pos < start {
                    edges.head = Some(folio.clone());
                }
                if end_pos > end {
                    edges.tail = Some(folio);
                }
                return;
            }
            let locked = folio.lock();
            if !locked.belongs_to(self) {
                return;
            }
            locked.wait_writeback();
            self.cancel_dirty(&locked);
            self.remove_locked(&locked);
        });
        edges
    }

    /// Drops every clean folio overlapping bytes `[start, end)` after waiting for its
    /// writeback. `EBUSY` if a dirty folio had to be left (all others are still dropped).
    pub fn invalidate_range(&self, start: u64, end: u64) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let mut busy = false;
        self.for_each_folio(start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT, |folio| {
            let locked = folio.lock();
            if !locked.belongs_to(self) {
                return;
            }
            locked.wait_writeback();
            if locked.is_dirty() {
                busy = true;
                return;
            }
            self.remove_locked(&locked);
        });
        if busy {
            Err(Errno::EBUSY)
        } else {
            Ok(())
        }
    }

    /// Calls `f` with a reference to each folio covering pages in `[first, last]`, in batches,
    /// without holding the mapping lock during the calls.
    fn for_each_folio(&self, first: u64, last: u64, mut f: impl FnMut(Arc<Folio>)) {
        let mut at = Some(first);
        while let Some(start) = at {
            let mut batch = FolioBatch::new();
            at = self.get_folios(start, last, &mut batch);
            for folio in batch {
                f(folio);
            }
        }
    }
}
