//! Dirty and writeback state of a mapping's folios: flags, XArray marks and accounting moved
//! together, plus the tagging step of integrity writeback.
//!
//! | action | folio flag | marks | accounting |
//! |---|---|---|---|
//! | [`Mapping::mark_dirty`] | block dirty bits; DIRTY set | DIRTY set (when newly dirty) | dirty += folio |
//! | [`Mapping::clear_dirty_for_io`] | DIRTY cleared | unchanged (start_writeback settles DIRTY) | dirty -= folio |
//! | [`Mapping::start_writeback`] | WRITEBACK set | WRITEBACK set; DIRTY cleared if the folio is clean; TOWRITE cleared | writeback += folio |
//! | [`Mapping::end_writeback`] | WRITEBACK cleared, waiters woken | WRITEBACK cleared | writeback -= folio |
//! | [`Mapping::cancel_dirty`] | DIRTY and block dirty bits cleared | DIRTY, TOWRITE cleared | dirty -= folio |
//!
//! All but `end_writeback` need the folio lock (a [`LockedFolio`]) and a folio of this
//! mapping. `end_writeback` runs from I/O completion, without the folio lock: it serialises on
//! the mapping lock, which nobody holds while waiting.
//!
//! Integrity writeback: [`Mapping::tag_for_writeback`] copies DIRTY to TOWRITE over a range,
//! then the caller walks TOWRITE with [`Mapping::get_folios_tag`] /
//! [`Mapping::next_marked`]. Folios dirtied after the tagging are not tagged, so the walk ends
//! even while writers keep dirtying (Linux's livelock avoidance).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `filemap_dirty_folio` / `__folio_mark_dirty`, `iomap_dirty_folio` + `ifs_set_range_dirty` | [`Mapping::mark_dirty`] |
//! | `folio_clear_dirty_for_io` | [`Mapping::clear_dirty_for_io`] |
//! | `__folio_start_writeback`, `folio_end_writeback` | [`Mapping::start_writeback`], [`Mapping::end_writeback`] |
//! | `folio_cancel_dirty` | [`Mapping::cancel_dirty`] |
//! | `tag_pages_for_writeback` | [`Mapping::tag_for_writeback`] |

use super::Mapping;
use crate::pagecache::folio::{Folio, FolioFlags};
use crate::pagecache::locked::LockedFolio;
use crate::pagecache::stats::Counters;
use crate::pagecache::xarray::Mark;
use crate::{Errno, Result};

/// Entries tagged per hold of the mapping lock.
const TAG_BATCH: usize = 1024;

impl Mapping {
    /// Marks the blocks touched by `[offset, offset + len)` dirty, and the folio (flag, DIRTY
    /// mark, accounting) when it was clean. Returns whether the folio became dirty. `EINVAL`
    /// when the range is outside the folio or the folio is not in this mapping; a zero-length
    /// range changes nothing.
    pub fn mark_dirty(&self, folio: &LockedFolio, offset: usize, len: usize) -> Result<bool> {
        match offset.checked_add(len) {
            Some(end) if end <= folio.size() => {}
            _ => return Err(Errno::EINVAL),
        }
        if !folio.belongs_to(self) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(false);
        }
        folio.set_blocks_dirty(offset, len);
        if folio.test_and_set(FolioFlags::DIRTY) {
            return Ok(false);
        }
        let mut tree = self.tree().lock();
        tree.xa.set_mark(folio.index(), Mark::Dirty);
        self.nr_dirty.fetch_add(folio.nr_pages(), core::sync::atomic::Ordering::AcqRel);
        Counters::add(&self.counters().dirty_bytes, folio.size() as u64);
        Ok(true)
    }

    /// Clears the folio's dirty flag before writing it; true when it was dirty (then the
    /// caller must write it). Block dirty bits stay for the caller to find the runs, and the
    /// DIRTY mark stays until [`Mapping::start_writeback`].
    pub fn clear_dirty_for_io(&self, folio: &LockedFolio) -> bool {
        if !folio.belongs_to(self) {
            return false;
        }
        let _tree = self.tree().lock();
        if !folio.test_and_clear(FolioFlags::DIRTY) {
            return false;
        }
        self.account_cleaned(folio);
        true
    }

    /// Drops the folio's dirty state without writing it (truncate, punch): flag, block bits,
    /// DIRTY and TOWRITE marks, accounting. True when it was dirty.
    pub fn cancel_dirty(&self, folio: &LockedFolio) -> bool {
        folio.clear_blocks_dirty(0, folio.size());
        if !folio.belongs_to(self) {
            return folio.test_and_clear(FolioFlags::DIRTY);
        }
        let mut tree = self.tree().lock();
        tree.xa.clear_mark(folio.index(), Mark::Dirty);
        tree.xa.clear_mark(folio.index(), Mark::Towrite);
        if !folio.test_and_clear(FolioFlags::DIRTY) {
            return false;
        }
        self.account_cleaned(folio);
        true
    }

    fn account_cleaned(&self, folio: &Folio) {
        let prev = self.nr_dirty.fetch_sub(folio.nr_pages(), core::sync::atomic::Ordering::AcqRel);
        debug_assert!(prev >= folio.nr_pages());
        Counters::sub(&self.counters().dirty_bytes, folio.size() as u64);
        self.cache().core().dirty_dropped();
    }

    /// Puts the folio under writeback: WRITEBACK flag and mark, DIRTY mark cleared if the folio
    /// is clean, TOWRITE mark cleared. `EBUSY` if it already is under writeback, `EINVAL` if it
    /// is not in this mapping.
    pub fn start_writeback(&self, folio: &LockedFolio) -> Result<()> {
        if !folio.belongs_to(self) {
            return Err(Errno::EINVAL);
        }
        let mut tree = self.tree().lock();
        if folio.test_and_set(FolioFlags::WRITEBACK) {
            return Err(Errno::EBUSY);
        }
        let index = folio.index();
        tree.xa.set_mark(index, Mark::Writeback);
        if !folio.is_dirty() {
            tree.xa.clear_mark(index, Mark::Dirty);
        }
        tree.xa.clear_mark(index, Mark::Towrite);
        self.nr_writeback.fetch_add(folio.nr_pages(), core::sync::atomic::Ordering::AcqRel);
        Counters::add(&self.counters().writeback_bytes, folio.size() as u64);
        Ok(())
    }

    /// Ends writeback of the folio (from I/O completion; no folio lock needed): clears the
    /// WRITEBACK mark and flag, and wakes waiters. A folio not under writeback is left alone.
    pub fn end_writeback(&self, folio: &Folio) {
        {
            let mut tree = self.tree().lock();
            if !folio.is_writeback() {
                debug_assert!(false, "end_writeback without writeback: {folio:?}");
                return;
            }
            if folio.belongs_to(self) {
                tree.xa.clear_mark(folio.index(), Mark::Writeback);
            }
            let prev = self.nr_writeback.fetch_sub(folio.nr_pages(), core::sync::atomic::Ordering::AcqRel);
            debug_assert!(prev >= folio.nr_pages());
            Counters::sub(&self.counters().writeback_bytes, folio.size() as u64);
            folio.test_and_clear(FolioFlags::WRITEBACK);
        }
        let core = self.cache().core();
        core.platform.unpark(folio.wait_key());
        core.dirty_dropped();
    }

    /// Tags every DIRTY folio covering pages in `[start, last]` TOWRITE (the first step of an
    /// integrity writeback); returns how many were tagged.
    pub fn tag_for_writeback(&self, start: u64, last: u64) -> usize {
        let mut total = 0;
        let mut at = start;
        loop {
            let (tagged, resume) =
                self.tree().lock().xa.tag_range(at, last, Mark::Dirty, Mark::Towrite, TAG_BATCH);
            total += tagged;
            match resume {
                Some(next) => at = next,
                None => return total,
            }
        }
    }
}
