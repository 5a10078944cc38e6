//! Concurrency: racing creation, lookups racing truncate, and a mixed stress of writers, a
//! flusher, reclaim and truncate, each ending with exact accounting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::vec::Vec;

use super::common::{cache_with, writeback, TestHooks, TestPlatform};
use crate::pagecache::testutil::Rng;
use crate::pagecache::{CacheConfig, FolioBatch, Mapping, PageCache, MAX_INDEX};
use crate::Errno;

/// Every cached folio of `mapping`, in order.
fn folios_of(mapping: &Mapping) -> Vec<Arc<crate::pagecache::Folio>> {
    let mut all = Vec::new();
    let mut at = Some(0);
    while let Some(start) = at {
        let mut batch = FolioBatch::new();
        at = mapping.get_folios(start, MAX_INDEX, &mut batch);
        all.extend(batch);
    }
    all
}

/// Accounting invariants of a quiescent cache with one mapping.
fn check_quiescent(platform: &TestPlatform, cache: &PageCache, mapping: &Mapping, ctx: &str) {
    let folios = folios_of(mapping);
    let pages: u64 = folios.iter().map(|f| f.nr_pages()).sum();
    let dirty: u64 = folios.iter().filter(|f| f.is_dirty()).map(|f| f.nr_pages()).sum();
    assert_eq!(mapping.nr_pages(), pages, "{ctx}: nr_pages");
    assert_eq!(mapping.nr_dirty(), dirty, "{ctx}: nr_dirty");
    assert_eq!(cache.dirty_bytes(), dirty * 4096, "{ctx}: dirty bytes");
    assert_eq!(cache.writeback_bytes(), 0, "{ctx}: writeback bytes");
    assert!(folios.iter().all(|f| f.belongs_to(mapping) && !f.is_locked()), "{ctx}: folio state");
    // Nothing else holds folios: the cache holds exactly the mapping's folios.
    assert_eq!(cache.cached_bytes(), pages * 4096, "{ctx}: cached bytes");
    assert_eq!(cache.cached_bytes(), platform.live(), "{ctx}: platform memory");
    let s = cache.stats();
    assert_eq!((s.active_folios + s.inactive_folios) as usize, folios.len(), "{ctx}: LRU holds every folio");
    for f in &folios {
        assert!(f.is_on_lru(), "{ctx}: {f:?} off the LRU");
    }
}

#[test]
fn racing_find_or_create_with_mixed_orders_agree_on_one_folio_per_index() {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 1 << 16, 9);
    let mapping = cache.new_mapping(4096).unwrap();
    const THREADS: usize = 4;
    for round in 0..100u64 {
        let base = round * 64;
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS as u64)
            .map(|t| {
                let (m, b) = (mapping.clone(), barrier.clone());
                thread::spawn(move || {
                    b.wait();
                    let index = base + 8 + t;
                    let order = [3u32, 0, 1, 2][t as usize];
                    (index, m.find_or_create(index, order).unwrap().unlock())
                })
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (index, folio) in &got {
            assert!(folio.contains_index(*index) && folio.belongs_to(&mapping), "round {round}");
        }
        for (i, a) in &got {
            for (_, b) in &got {
                if b.contains_index(*i) {
                    assert!(Arc::ptr_eq(a, b), "round {round}: two folios cover index {i}");
                }
            }
        }
    }
    check_quiescent(&platform, &cache, &mapping, "after racing creation");
}

#[test]
fn lookups_racing_truncate_never_see_a_truncated_folio_as_cached() {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 1 << 14, 9);
    let mapping = cache.new_mapping(1024).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seed = 0x7a_0001u64;
    println!("truncate race seed = {seed:#x}");
    let truncater = {
        let (m, stop) = (mapping.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(seed);
            for _ in 0..400 {
                for _ in 0..24 {
                    let index = rng.below(64);
                    let f = m.find_or_create(index, rng.below(4) as u32).unwrap();
                    if rng.chance(40) {
                        m.mark_dirty(&f, 0, 1024).unwrap();
                    }
                }
                let offset = rng.below(64 * 4096);
                if let Some(edge) = m.truncate(offset) {
                    assert!(edge.pos() < offset && offset < edge.end_pos(), "seed {seed:#x}");
                }
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let lookers: Vec<_> = (0..3u64)
        .map(|t| {
            let (m, stop) = (mapping.clone(), stop.clone());
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1));
                let mut hits = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let index = rng.below(64);
                    if let Some(locked) = m.get_locked(index) {
                        assert!(locked.belongs_to(&m) && locked.contains_index(index), "seed {seed:#x}");
                        thread::yield_now();
                        assert!(locked.belongs_to(&m), "seed {seed:#x}: truncated under the lock");
                        hits += 1;
                    }
                    if let Some(folio) = m.get(index) {
                        let locked = folio.lock();
                        if locked.belongs_to(&m) {
                            assert!(m.get(index).is_some_and(|f| Arc::ptr_eq(&f, locked.folio())));
                        }
                    }
                }
                hits
            })
        })
        .collect();
    truncater.join().unwrap();
    let hits: u64 = lookers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(hits > 0, "seed {seed:#x}: the lookups did find folios");
    check_quiescent(&platform, &cache, &mapping, "after the race");
    mapping.truncate(0);
    assert_eq!((cache.cached_bytes(), cache.dirty_bytes(), platform.live()), (0, 0, 0));
}

#[test]
fn writers_flusher_reclaim_and_truncate_keep_accounting_exact() {
    let platform = TestPlatform::new(false);
    let budget = 256 * 4096;
    let config = CacheConfig {
        budget_bytes: budget,
        background_dirty_bytes: budget / 4,
        hard_dirty_bytes: budget / 2,
        max_order: 4,
    };
    let cache = PageCache::new(platform.clone(), config).unwrap();
    let hooks = TestHooks::new(); // the flusher thread does the work; requests are recorded
    cache.set_writeback_hooks(hooks.clone());
    let mapping = cache.new_mapping(4096).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seed = 0x5712_0001u64;
    println!("stress seed = {seed:#x}");
    let mut handles = Vec::new();
    for w in 0..2u64 {
        let (m, c) = (mapping.clone(), cache.clone());
        handles.push(thread::spawn(move || {
            let mut rng = Rng::new(seed + w);
            for _ in 0..2000 {
                c.balance_dirty();
                match m.find_or_create(rng.below(1024), rng.below(5) as u32) {
                    Ok(mut f) => {
                        let off = rng.below(f.size() as u64) as usize;
                        f.write_at(off, &[w as u8 + 1]).unwrap();
                        m.mark_dirty(&f, off, 1).unwrap();
                    }
                    Err(e) => assert_eq!(e, Errno::ENOMEM, "seed {seed:#x}"),
                }
            }
        }));
    }
    let background: Vec<_> = (0..3u64)
        .map(|role| {
            let (m, c, stop) = (mapping.clone(), cache.clone(), stop.clone());
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (role << 32));
                while !stop.load(Ordering::SeqCst) {
                    match role {
                        0 => {
                            writeback(&m, rng.chance(20));
                        }
                        1 => {
                            c.reclaim(rng.below(64 * 4096));
                        }
                        _ => {
                            if rng.chance(2) {
                                m.truncate(rng.below(1024 * 4096));
                            }
                            thread::yield_now();
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    for h in background {
        h.join().unwrap();
    }
    assert!(cache.cached_bytes() <= budget, "seed {seed:#x}: over budget");
    check_quiescent(&platform, &cache, &mapping, "after the stress");
    writeback(&mapping, true);
    check_quiescent(&platform, &cache, &mapping, "after the final sync");
    assert_eq!(cache.dirty_bytes(), 0);
    let s = cache.stats();
    println!("stress stats: {s:?}, writeback requests {}", hooks.request_count.load(Ordering::SeqCst));
    assert!(s.reclaimed_folios > 0 && s.hits > 0 && s.misses > 0, "seed {seed:#x}: {s:?}");
    drop(mapping);
    assert_eq!((cache.cached_bytes(), platform.live()), (0, 0));
}
