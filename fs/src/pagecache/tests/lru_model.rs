//! LRU and reclaim model test: random operations on three mappings sharing a small budget,
//! checking after every reclaim that nothing dirty, locked, under writeback or in use was
//! dropped, that reclaim freed what it could, that the cache is within budget whenever it can
//! be, and that every byte is accounted for.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::vec::Vec;

use super::common::{TestHooks, TestPlatform};
use crate::pagecache::testutil::Rng;
use crate::pagecache::{CacheConfig, Folio, FolioBatch, LockedFolio, Mapping, Mark, PageCache, MAX_INDEX};
use crate::Errno;

struct World {
    platform: Arc<TestPlatform>,
    cache: Arc<PageCache>,
    mappings: Vec<Arc<Mapping>>,
    pins: Vec<Arc<Folio>>,
    locks: Vec<(usize, LockedFolio)>,
    writeback: Vec<(usize, Arc<Folio>)>,
    seed: u64,
    op: usize,
}

/// A folio seen in a census, and whether reclaim may take it.
struct Seen {
    weak: Weak<Folio>,
    size: u64,
    reclaimable: bool,
}

impl Drop for World {
    fn drop(&mut self) {
        // Dropping a mapping waits for writeback and folio locks: end ours first, so a failed
        // assertion fails the test instead of hanging it.
        self.locks.clear();
        for (m, f) in core::mem::take(&mut self.writeback) {
            self.mappings[m].end_writeback(&f);
        }
    }
}

impl World {
    fn ctx(&self) -> String {
        std::format!("seed {:#x} op {}", self.seed, self.op)
    }

    fn all_folios(&self, m: usize) -> Vec<Arc<Folio>> {
        let mut out = Vec::new();
        let mut at = Some(0);
        while let Some(start) = at {
            let mut batch = FolioBatch::new();
            at = self.mappings[m].get_folios(start, MAX_INDEX, &mut batch);
            out.extend(batch);
        }
        out
    }

    /// Every attached folio, classified. Reclaimable: clean, not under writeback, unlocked,
    /// and referenced only by its mapping and the LRU.
    fn census(&self) -> Vec<Seen> {
        let mut seen = Vec::new();
        for m in 0..self.mappings.len() {
            for f in self.all_folios(m) {
                // Our temporary reference makes 3 for an unused folio.
                let reclaimable =
                    !f.is_dirty() && !f.is_writeback() && !f.is_locked() && Arc::strong_count(&f) == 3;
                seen.push(Seen { weak: Arc::downgrade(&f), size: f.size() as u64, reclaimable });
            }
        }
        seen
    }

    fn locked_by_us(&self, folio: &Arc<Folio>) -> bool {
        self.locks.iter().any(|(_, l)| Arc::ptr_eq(l.folio(), folio))
    }

    fn index_locked_by_us(&self, m: usize, index: u64) -> bool {
        self.locks.iter().any(|(lm, l)| *lm == m && l.contains_index(index))
    }

    /// Accounting and LRU invariants of the quiescent state.
    fn check(&self) {
        let ctx = self.ctx();
        let mut attached_bytes = 0;
        let mut attached = 0;
        let mut dirty = 0;
        for (m, mapping) in self.mappings.iter().enumerate() {
            let folios = self.all_folios(m);
            let pages: u64 = folios.iter().map(|f| f.nr_pages()).sum();
            let dirty_pages: u64 = folios.iter().filter(|f| f.is_dirty()).map(|f| f.nr_pages()).sum();
            assert_eq!(mapping.nr_pages(), pages, "{ctx}: nr_pages of mapping {m}");
            assert_eq!(mapping.nr_dirty(), dirty_pages, "{ctx}: nr_dirty of mapping {m}");
            for f in &folios {
                assert!(f.is_on_lru() && f.belongs_to(mapping), "{ctx}: {f:?}");
                assert_eq!(mapping.is_marked(f.index(), Mark::Writeback), f.is_writeback(), "{ctx}: {f:?}");
                assert_eq!(mapping.is_marked(f.index(), Mark::Dirty), f.is_dirty(), "{ctx}: {f:?}");
            }
            attached += folios.len();
            attached_bytes += pages * 4096;
            dirty += dirty_pages * 4096;
        }
        // Folios we still reference after they left their mapping.
        let mut orphans: Vec<&Arc<Folio>> = Vec::new();
        let held = self.pins.iter().chain(self.locks.iter().map(|(_, l)| l.folio()));
        for f in held {
            if !f.is_attached() && !orphans.iter().any(|o| Arc::ptr_eq(o, f)) {
                orphans.push(f);
            }
        }
        let orphan_bytes: u64 = orphans.iter().map(|f| f.size() as u64).sum();
        let s = self.cache.stats();
        assert_eq!(s.cached_bytes, attached_bytes + orphan_bytes, "{ctx}: cached bytes");
        assert_eq!(s.cached_bytes, self.platform.live(), "{ctx}: platform memory");
        assert_eq!((s.active_folios + s.inactive_folios) as usize, attached, "{ctx}: LRU length");
        assert_eq!(s.dirty_bytes, dirty, "{ctx}: dirty bytes");
        let wb: u64 = self.writeback.iter().map(|(_, f)| f.size() as u64).sum();
        assert_eq!(s.writeback_bytes, wb, "{ctx}: writeback bytes");
    }

    /// Releases our locks and ends our writeback on mapping `m` (before truncating it).
    fn quiesce(&mut self, m: usize) {
        self.locks.retain(|(lm, _)| *lm != m);
        let (ours, rest): (Vec<_>, Vec<_>) = self.writeback.drain(..).partition(|(wm, _)| *wm == m);
        self.writeback = rest;
        for (_, f) in ours {
            self.mappings[m].end_writeback(&f);
        }
    }

    fn reclaim(&mut self, target: u64) {
        let ctx = self.ctx();
        let before = self.census();
        let reclaimable: u64 = before.iter().filter(|s| s.reclaimable).map(|s| s.size).sum();
        let cached = self.cache.cached_bytes();
        let out = self.cache.reclaim(target);
        assert_eq!(cached - self.cache.cached_bytes(), out.freed_bytes, "{ctx}: freed bytes accounted");
        if reclaimable >= target {
            assert!(
                out.freed_bytes >= target,
                "{ctx}: freed {} of {target} with {reclaimable} free",
                out.freed_bytes
            );
        } else {
            assert_eq!(out.freed_bytes, reclaimable, "{ctx}: reclaim must free everything it can");
        }
        for s in &before {
            if !s.reclaimable {
                let f = s.weak.upgrade().unwrap_or_else(|| panic!("{ctx}: a protected folio was freed"));
                assert!(f.is_attached(), "{ctx}: a protected folio was dropped: {f:?}");
            }
        }
        self.check();
    }

    /// Bytes reclaim cannot free now (including folios we hold after they left the cache).
    fn unreclaimable_bytes(&self) -> u64 {
        let reclaimable: u64 = self.census().iter().filter(|s| s.reclaimable).map(|s| s.size).sum();
        self.cache.cached_bytes() - reclaimable
    }
}

#[test]
fn lru_and_reclaim_model() {
    let seed = 0x1_2u64 << 32 | 0x5eed;
    println!("lru model seed = {seed:#x}");
    let mut rng = Rng::new(seed);
    let platform = TestPlatform::new(false);
    let budget0 = 64 * 4096;
    let config =
        CacheConfig { budget_bytes: budget0, background_dirty_bytes: 0, hard_dirty_bytes: 0, max_order: 4 };
    let cache = PageCache::new(platform.clone(), config).unwrap();
    let hooks = TestHooks::new();
    cache.set_writeback_hooks(hooks.clone());
    let mappings = [4096usize, 1024, 16384].iter().map(|&bs| cache.new_mapping(bs).unwrap()).collect();
    let mut w = World {
        platform,
        cache,
        mappings,
        pins: Vec::new(),
        locks: Vec::new(),
        writeback: Vec::new(),
        seed,
        op: 0,
    };
    const OPS: usize = 100_000;
    let mut reclaims = 0;
    let mut prev_cached = 0;
    for op in 0..OPS {
        w.op = op;
        let m = rng.below(3) as usize;
        let mapping = w.mappings[m].clone();
        let index = rng.below(96);
        match rng.below(100) {
            0..=24 => {
                if w.index_locked_by_us(m, index) {
                    continue;
                }
                let order = rng.below(5) as u32;
                match mapping.find_or_create(index, order) {
                    Ok(l) => {
                        if rng.chance(30) {
                            let off = rng.below(l.size() as u64) as usize;
                            mapping.mark_dirty(&l, off, 1).unwrap();
                        }
                        if rng.chance(15) && w.pins.len() < 12 {
                            w.pins.push(l.folio().clone());
                        }
                        if rng.chance(8) && w.locks.len() < 3 {
                            w.locks.push((m, l));
                        }
                    }
                    Err(e) => {
                        assert_eq!(e, Errno::ENOMEM, "{}", w.ctx());
                        let min = 4096u64 << mapping.min_order();
                        let stuck = w.unreclaimable_bytes();
                        assert!(stuck + min > w.cache.budget(), "{}: ENOMEM with {stuck} stuck", w.ctx());
                    }
                }
            }
            25..=39 => {
                if let Some(f) = mapping.get(index) {
                    if rng.chance(70) {
                        f.mark_accessed();
                    }
                    if rng.chance(20) && w.pins.len() < 12 {
                        w.pins.push(f);
                    }
                }
            }
            40..=47 => {
                if !w.pins.is_empty() {
                    w.pins.swap_remove(rng.below(w.pins.len() as u64) as usize);
                }
            }
            48..=51 => {
                if !w.locks.is_empty() {
                    w.locks.swap_remove(rng.below(w.locks.len() as u64) as usize);
                }
            }
            52..=61 => {
                let Some(f) = mapping.get(index) else { continue };
                if w.locked_by_us(&f) {
                    continue;
                }
                let l = f.lock();
                if l.belongs_to(&mapping) {
                    let off = rng.below(l.size() as u64) as usize;
                    let len = 1 + rng.below((l.size() - off) as u64) as usize;
                    mapping.mark_dirty(&l, off, len).unwrap();
                }
            }
            62..=67 => {
                if w.writeback.len() >= 8 {
                    continue;
                }
                let Some(f) = mapping.next_marked(index, Mark::Dirty) else { continue };
                if w.locked_by_us(&f) || f.is_writeback() {
                    continue;
                }
                let l = f.lock();
                if l.belongs_to(&mapping) && mapping.clear_dirty_for_io(&l) {
                    mapping.start_writeback(&l).unwrap();
                    drop(l);
                    w.writeback.push((m, f));
                }
            }
            68..=73 => {
                if !w.writeback.is_empty() {
                    let (wm, f) = w.writeback.swap_remove(rng.below(w.writeback.len() as u64) as usize);
                    w.mappings[wm].end_writeback(&f);
                }
            }
            74..=76 => {
                w.quiesce(m);
                let offset = rng.below(100 * 4096);
                let edge = mapping.truncate(offset);
                for f in w.all_folios(m) {
                    let straddles = edge.as_ref().is_some_and(|e| Arc::ptr_eq(e, &f));
                    assert!(
                        f.end_pos() <= offset || straddles,
                        "{}: {f:?} survived truncate({offset})",
                        w.ctx()
                    );
                }
                w.check();
            }
            77..=78 => {
                w.quiesce(m);
                let start = rng.below(100 * 4096);
                let end = start + rng.below(32 * 4096);
                let dirty_inside =
                    w.all_folios(m).iter().any(|f| f.is_dirty() && f.pos() < end && f.end_pos() > start);
                let got = mapping.invalidate_range(start, end);
                assert_eq!(got.is_err(), dirty_inside && start < end, "{}: invalidate", w.ctx());
                for f in w.all_folios(m) {
                    if f.pos() < end && f.end_pos() > start {
                        assert!(f.is_dirty(), "{}: clean {f:?} survived invalidate", w.ctx());
                    }
                }
                w.check();
            }
            79..=91 => {
                reclaims += 1;
                let target = rng.below(2 * w.cache.budget());
                w.reclaim(target);
            }
            92..=95 => {
                let budget = (16 + rng.below(96)) * 4096;
                w.cache.set_budget(budget).unwrap();
                let within = w.cache.shrink_to_budget();
                assert_eq!(within, w.cache.cached_bytes() <= budget, "{}", w.ctx());
                if w.unreclaimable_bytes() <= budget {
                    assert!(within, "{}: could have been brought within budget", w.ctx());
                }
                w.check();
            }
            _ => {
                for f in &w.pins {
                    f.mark_accessed();
                }
            }
        }
        let ctx = w.ctx();
        let cached = w.cache.cached_bytes();
        // Over budget only after a budget cut reclaim could not meet, and then never growing.
        assert!(cached <= w.cache.budget() || cached <= prev_cached, "{ctx}: over budget");
        prev_cached = cached;
        assert_eq!(w.cache.cached_bytes(), w.platform.live(), "{ctx}: platform memory");
        if op % 500 == 0 {
            w.check();
        }
    }
    w.check();
    assert!(reclaims > 10_000);
    let s = w.cache.stats();
    println!("lru model stats: {s:?}");
    assert!(s.reclaimed_folios > 1000 && s.writeback_requests > 0, "the model exercised reclaim: {s:?}");
    assert!(hooks.request_count.load(Ordering::SeqCst) > 0);
    let (platform, cache) = (w.platform.clone(), w.cache.clone());
    drop(w);
    assert_eq!((cache.cached_bytes(), cache.dirty_bytes(), platform.live()), (0, 0, 0));
}
