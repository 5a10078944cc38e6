//! The LRU lists: one active and one inactive intrusive list for the whole cache.
//!
//! Owns: one folio reference per linked folio (the lists hold `Arc<Folio>` through the folio's
//! embedded `LinkedListAtomicLink`, so linking allocates nothing). New folios go to the head
//! of the inactive list; reclaim takes from the tail. The `ON_LRU` and `ACTIVE` folio flags say
//! which list a folio is on; they change only here, under the cache's LRU lock (`&mut Lru`).
//!
//! Lock order: the LRU lock is a leaf; it is never held together with a mapping lock and
//! nothing waits under it.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `lruvec` with `LRU_INACTIVE_FILE` / `LRU_ACTIVE_FILE`, `lru_lock` | [`Lru`] under `PageCache::lru` | one lruvec per cache; no per-CPU folio batches |
//! | `lruvec_add_folio`, `lruvec_del_folio` | [`Lru::add`], [`Lru::remove`] | |
//! | `isolate_lru_folios` | [`Lru::pop_inactive`] (reclaim keeps what it pops on a local list) | |

use alloc::sync::Arc;

use intrusive_collections::{intrusive_adapter, LinkedList, LinkedListAtomicLink};

use super::folio::{Folio, FolioFlags};

intrusive_adapter!(pub(crate) LruAdapter = Arc<Folio>: Folio { lru => LinkedListAtomicLink });

/// The active and inactive lists.
pub(crate) struct Lru {
    active: LinkedList<LruAdapter>,
    inactive: LinkedList<LruAdapter>,
    nr_active: usize,
    nr_inactive: usize,
}

impl Lru {
    pub(crate) fn new() -> Self {
        Self {
            active: LinkedList::new(LruAdapter::new()),
            inactive: LinkedList::new(LruAdapter::new()),
            nr_active: 0,
            nr_inactive: 0,
        }
    }

    /// Folios on (active, inactive).
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.nr_active, self.nr_inactive)
    }

    /// Links a folio at the head of the inactive list.
    pub(crate) fn add(&mut self, folio: Arc<Folio>) {
        self.push_inactive(folio);
    }

    /// Links a folio at the head of the inactive list.
    pub(crate) fn push_inactive(&mut self, folio: Arc<Folio>) {
        debug_assert!(!folio.is_on_lru());
        folio.test_and_clear(FolioFlags::ACTIVE);
        folio.test_and_set(FolioFlags::ON_LRU);
        self.inactive.push_front(folio);
        self.nr_inactive += 1;
    }

    /// Links a folio back at the tail of the inactive list (reclaim returning folios it
    /// isolated but did not get to look at).
    pub(crate) fn push_inactive_tail(&mut self, folio: Arc<Folio>) {
        debug_assert!(!folio.is_on_lru());
        folio.test_and_clear(FolioFlags::ACTIVE);
        folio.test_and_set(FolioFlags::ON_LRU);
        self.inactive.push_back(folio);
        self.nr_inactive += 1;
    }

    /// Links a folio at the head of the active list.
    pub(crate) fn push_active(&mut self, folio: Arc<Folio>) {
        debug_assert!(!folio.is_on_lru());
        folio.test_and_set(FolioFlags::ACTIVE);
        folio.test_and_set(FolioFlags::ON_LRU);
        self.active.push_front(folio);
        self.nr_active += 1;
    }

    /// Unlinks the inactive tail.
    pub(crate) fn pop_inactive(&mut self) -> Option<Arc<Folio>> {
        let folio = self.inactive.pop_back()?;
        self.nr_inactive -= 1;
        folio.test_and_clear(FolioFlags::ON_LRU);
        Some(folio)
    }

    /// Unlinks the active tail.
    pub(crate) fn pop_active(&mut self) -> Option<Arc<Folio>> {
        let folio = self.active.pop_back()?;
        self.nr_active -= 1;
        folio.test_and_clear(FolioFlags::ON_LRU | FolioFlags::ACTIVE);
        Some(folio)
    }

    /// Unlinks `folio` from whichever list it is on; `None` if it is on none (isolated by
    /// reclaim, or never added).
    pub(crate) fn remove(&mut self, folio: &Folio) -> Option<Arc<Folio>> {
        if !folio.is_on_lru() {
            return None;
        }
        let active = folio.is_active();
        let list = if active { &mut self.active } else { &mut self.inactive };
        // SAFETY: `ON_LRU` and `ACTIVE` change only under the LRU lock, which `&mut self`
        // proves we hold; together they say the folio is linked on exactly `list`.
        let taken = unsafe { list.cursor_mut_from_ptr(folio) }.remove()?;
        if active {
            self.nr_active -= 1;
        } else {
            self.nr_inactive -= 1;
        }
        taken.test_and_clear(FolioFlags::ON_LRU | FolioFlags::ACTIVE);
        Some(taken)
    }
}
