//! Mapping and folio behaviour: creation orders and fallbacks, per-block state, the
//! dirty/writeback state table, truncate, invalidate, waits, budget and accounting.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use std::vec::Vec;

use super::common::{cache_with, setup, writeback, TestHooks, TestPlatform};
use crate::pagecache::bench::{folio_overhead_bytes, run_with};
use crate::pagecache::{CacheConfig, FolioBatch, Mark, PageCache, WritebackReason, FOLIO_BATCH, MAX_INDEX};
use crate::Errno;

#[test]
fn find_or_create_clamps_and_aligns_the_order() {
    let (_p, cache, mapping) = setup(4096);
    assert_eq!(cache.max_order(), 9);
    let f = mapping.find_or_create(3, 9).unwrap();
    assert_eq!((f.index(), f.order()), (3, 0), "index 3 allows order 0 only");
    drop(f);
    let f = mapping.find_or_create(512, 12).unwrap();
    assert_eq!((f.index(), f.order()), (512, 9), "clamped to max_order");
    assert_eq!(f.size(), 2 << 20);
    drop(f);
    let f = mapping.find_or_create(40, 4).unwrap();
    assert_eq!((f.index(), f.order()), (40, 3), "index 40 is 8-aligned");
    drop(f);
    let s = cache.stats();
    assert_eq!((s.misses, s.hits), (3, 0));
    assert_eq!(s.cached_bytes, 4096 + (2 << 20) + 8 * 4096);
    assert_eq!(mapping.find_or_create(MAX_INDEX + 1, 0).err(), Some(Errno::EFBIG));
    assert_eq!(mapping.add_folio(MAX_INDEX + 1, 0).err(), Some(Errno::EFBIG));
    assert_eq!(mapping.add_folio(MAX_INDEX, 1).err(), Some(Errno::EINVAL), "misaligned");
    assert_eq!(mapping.add_folio(0, 10).err(), Some(Errno::EINVAL), "above max_order");
    let last = mapping.add_folio(MAX_INDEX & !1, 1).unwrap();
    assert_eq!(last.end_pos(), (MAX_INDEX + 1) << 12, "the last folio ends at the largest file size");
    drop(last);
    assert_eq!(mapping.get(3).map(|f| f.index()), Some(3));
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn find_or_create_falls_back_when_part_of_the_range_is_cached() {
    let (_p, cache, mapping) = setup(4096);
    drop(mapping.find_or_create(5, 0).unwrap());
    let f = mapping.find_or_create(4, 2).unwrap();
    assert_eq!((f.index(), f.order()), (4, 0));
    assert_eq!(cache.stats().order_fallbacks, 2, "order 2 -> 1 -> 0");
    drop(f);
    let f = mapping.find_or_create(6, 1).unwrap();
    assert_eq!((f.index(), f.order()), (6, 1));
}

#[test]
fn find_or_create_falls_back_when_memory_is_short() {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 4096, 9);
    let mapping = cache.new_mapping(4096).unwrap();
    platform.max_alloc_order.store(1, Ordering::SeqCst);
    let f = mapping.find_or_create(0, 4).unwrap();
    assert_eq!(f.order(), 1);
    assert_eq!(cache.stats().order_fallbacks, 3);
    drop(f);
    platform.fail_all.store(true, Ordering::SeqCst);
    assert_eq!(mapping.find_or_create(64, 4).err(), Some(Errno::ENOMEM));
    assert_eq!(cache.stats().alloc_failures, 1);
    assert_eq!(cache.cached_bytes(), platform.live(), "failed allocations leave no charge");
    assert_eq!(cache.cached_bytes(), 8192);
}

#[test]
fn block_size_sets_the_minimum_order_and_block_count() {
    let (_p, cache, m16k) = setup(16384);
    assert_eq!(m16k.min_order(), 2);
    let f = m16k.find_or_create(5, 0).unwrap();
    assert_eq!((f.index(), f.order(), f.blocks_per_folio()), (4, 2, 1));
    assert!(f.contains_index(5));
    drop(f);
    let m1k = cache.new_mapping(1024).unwrap();
    let f = m1k.find_or_create(0, 0).unwrap();
    assert_eq!((f.blocks_per_folio(), f.block_size()), (4, 1024));
    for bad in [512usize, 3000, 131072, 0] {
        assert_eq!(cache.new_mapping(bad).err(), Some(Errno::EINVAL), "block size {bad}");
    }
    let small = PageCache::new(
        TestPlatform::new(false),
        CacheConfig { budget_bytes: 1 << 20, background_dirty_bytes: 0, hard_dirty_bytes: 0, max_order: 2 },
    )
    .unwrap();
    assert_eq!(small.new_mapping(32768).err(), Some(Errno::EINVAL), "block larger than the largest folio");
}

#[test]
fn cache_config_is_validated() {
    let p = TestPlatform::new(false);
    let bad = [
        CacheConfig { budget_bytes: 100, ..CacheConfig::new(100) },
        CacheConfig { background_dirty_bytes: 10, hard_dirty_bytes: 5, ..CacheConfig::new(1 << 20) },
        CacheConfig { hard_dirty_bytes: 2 << 20, ..CacheConfig::new(1 << 20) },
        CacheConfig { max_order: 17, ..CacheConfig::new(1 << 20) },
    ];
    for config in bad {
        assert_eq!(PageCache::new(p.clone(), config).err().map(|_| ()), Some(()), "{config:?}");
    }
    let cache = PageCache::new(p, CacheConfig::new(1 << 20)).unwrap();
    assert_eq!(cache.set_dirty_thresholds(10, 5).err(), Some(Errno::EINVAL));
    assert_eq!(cache.set_dirty_thresholds(0, 2 << 20).err(), Some(Errno::EINVAL));
    assert_eq!(cache.set_budget(100).err(), Some(Errno::EINVAL));
    assert_eq!(cache.set_budget(4096).err(), Some(Errno::EINVAL), "below the hard threshold");
    assert!(cache.set_budget(2 << 20).is_ok());
}

#[test]
fn per_block_uptodate_and_dirty_bits() {
    let (_p, cache, mapping) = setup(1024);
    let f = mapping.find_or_create(0, 0).unwrap();
    assert_eq!(f.blocks_per_folio(), 4);
    assert_eq!(f.mark_uptodate_range(1024, 1024), Ok(false));
    assert!(f.is_block_uptodate(1) && !f.is_block_uptodate(0) && !f.is_block_uptodate(2));
    assert_eq!(f.is_range_uptodate(1100, 900), Ok(true));
    assert_eq!(f.is_range_uptodate(1000, 100), Ok(false));
    assert!(!f.is_uptodate());
    assert_eq!(f.mark_uptodate_range(0, 1), Ok(false), "a partial range marks its whole block");
    assert_eq!(f.mark_uptodate_range(2048, 2048), Ok(true), "all blocks -> folio uptodate");
    assert!(f.is_uptodate());
    assert_eq!(f.mark_uptodate_range(4000, 100), Err(Errno::EINVAL));
    assert_eq!(f.mark_uptodate_range(usize::MAX, 2), Err(Errno::EINVAL));

    // Dirty blocks 1 and 3 (§4 T1's setup).
    assert_eq!(mapping.mark_dirty(&f, 1024, 1024), Ok(true));
    assert_eq!(mapping.mark_dirty(&f, 3072, 10), Ok(false), "already dirty");
    assert_eq!(f.dirty_runs().collect::<Vec<_>>(), [(1024, 2048), (3072, 4096)]);
    assert_eq!(f.next_dirty_run(2048, 4096), Ok(Some((3072, 4096))));
    assert_eq!(f.next_dirty_run(0, 1024), Ok(None));
    assert_eq!(f.next_dirty_run(3000, 2000), Err(Errno::EINVAL));
    assert!(f.is_block_dirty(1) && f.is_block_dirty(3) && !f.is_block_dirty(0) && !f.is_block_dirty(9));
    assert_eq!(cache.dirty_bytes(), 4096);
    assert!(mapping.clear_dirty_for_io(&f));
    assert_eq!(f.dirty_runs().count(), 2, "block bits survive clear_dirty_for_io");
    f.clear_dirty_range(0, 4096).unwrap();
    assert_eq!(f.dirty_runs().count(), 0);
    assert_eq!(f.clear_dirty_range(1, 4096), Err(Errno::EINVAL));
    f.clear_uptodate();
    assert!(!f.is_uptodate() && !f.is_block_uptodate(2));
    assert_eq!(mapping.mark_dirty(&f, 4000, 97), Err(Errno::EINVAL));
    assert_eq!(mapping.mark_dirty(&f, 0, 0), Ok(false));
    assert!(!f.is_dirty());
}

#[test]
fn single_block_folio_uses_the_folio_flags() {
    let (_p, _cache, mapping) = setup(4096);
    let f = mapping.find_or_create(0, 0).unwrap();
    assert_eq!(f.block_state_heap_bytes(), 0, "no bitmap for one block");
    assert_eq!(f.is_range_uptodate(0, 10), Ok(false));
    assert_eq!(f.mark_uptodate_range(0, 10), Ok(true));
    assert!(!f.is_block_dirty(0));
    mapping.mark_dirty(&f, 5, 5).unwrap();
    assert!(f.is_block_dirty(0));
    assert_eq!(f.dirty_runs().collect::<Vec<_>>(), [(0, 4096)]);
}

#[test]
fn pending_byte_counters() {
    let (_p, _cache, mapping) = setup(1024);
    let f = mapping.find_or_create(0, 2).unwrap();
    f.add_read_pending(8192);
    assert!(!f.end_read_pending(4096));
    assert_eq!(f.read_pending(), 4096);
    assert!(f.end_read_pending(4096));
    f.add_write_pending(1024);
    assert!(f.end_write_pending(1024));
    assert_eq!(f.write_pending(), 0);
}

#[test]
fn bytes_per_folio_overhead() {
    // Real folios: 1024 contiguous 4 KiB folios, then 1024 contiguous 64 KiB folios.
    const N: u64 = 1024;
    for (order, name, bound) in [(0u32, "4k", 120.0), (4, "64k", 260.0)] {
        let platform = TestPlatform::new(false);
        let cache = cache_with(&platform, N << order, 9);
        let mapping = cache.new_mapping(4096).unwrap();
        let mut heap = 0;
        for i in 0..N {
            heap += mapping.add_folio(i << order, order).unwrap().block_state_heap_bytes();
        }
        let folio_struct = core::mem::size_of::<crate::pagecache::Folio>() + 16;
        let measured = (folio_struct * N as usize + heap + mapping.xarray_bytes()) as f64 / N as f64;
        std::println!("pagecache bytes per folio ({name}): {measured:.1}");
        assert_eq!(measured, folio_overhead_bytes(order, 4096, N), "bench figure matches real folios");
        // Per-block state within Linux's budget: 16 bytes + 2 bits/block (rounded to words),
        // plus the 8-byte folio->private pointer Linux pays in struct folio.
        let blocks = 1usize << order;
        let ours = 8 + 16 + heap / N as usize;
        let linux = 8 + 16 + (2 * blocks).div_ceil(64) * 8;
        if blocks > 1 {
            assert!(ours <= linux, "{name}: {ours} > {linux}");
        }
        assert!(measured < bound, "{name}: {measured}");
    }
}

#[test]
fn bench_produces_every_row() {
    let rows = run_with(&crate::platform::StdPlatform::new(), 64);
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    for want in [
        "xarray_lookup_ns",
        "xarray_lookup_ns_vs_btreemap",
        "xarray_store_ns",
        "xarray_store_ns_vs_btreemap",
        "xarray_marked_walk_ns",
        "xarray_marked_walk_ns_vs_btreemap",
        "pagecache_bytes_per_folio_4k",
        "pagecache_bytes_per_folio_64k",
    ] {
        assert!(names.contains(&want), "missing {want}");
    }
}

#[test]
fn dirty_and_writeback_follow_the_state_table() {
    let (_p, cache, mapping) = setup(4096);
    let f = mapping.find_or_create(8, 3).unwrap();
    // dirty: flag + DIRTY mark + accounting
    assert_eq!(mapping.mark_dirty(&f, 0, 100), Ok(true));
    assert!(f.is_dirty() && mapping.is_marked(8, Mark::Dirty) && mapping.is_marked(15, Mark::Dirty));
    assert_eq!((mapping.nr_dirty(), cache.dirty_bytes()), (8, 32768));
    assert_eq!(mapping.tag_for_writeback(0, 100), 1);
    assert!(mapping.is_marked(8, Mark::Towrite));
    // clear dirty for I/O: flag cleared, marks kept
    assert!(mapping.clear_dirty_for_io(&f));
    assert!(!mapping.clear_dirty_for_io(&f));
    assert!(!f.is_dirty() && mapping.is_marked(8, Mark::Dirty));
    assert_eq!((mapping.nr_dirty(), cache.dirty_bytes()), (0, 0));
    // start writeback: WRITEBACK set, DIRTY cleared (clean), TOWRITE cleared
    mapping.start_writeback(&f).unwrap();
    assert_eq!(mapping.start_writeback(&f).err(), Some(Errno::EBUSY));
    assert!(f.is_writeback() && mapping.is_marked(8, Mark::Writeback));
    assert!(!mapping.is_marked(8, Mark::Dirty) && !mapping.is_marked(8, Mark::Towrite));
    assert_eq!((mapping.nr_writeback(), cache.writeback_bytes()), (8, 32768));
    // end writeback (no lock needed): cleared
    let folio = f.unlock();
    mapping.end_writeback(&folio);
    assert!(!folio.is_writeback() && !mapping.is_marked(8, Mark::Writeback));
    assert_eq!((mapping.nr_writeback(), cache.writeback_bytes()), (0, 0));

    // Re-dirtied between clear_dirty_for_io and start_writeback: DIRTY mark stays.
    let f = folio.lock();
    mapping.mark_dirty(&f, 0, 1).unwrap();
    assert!(mapping.clear_dirty_for_io(&f));
    mapping.mark_dirty(&f, 0, 1).unwrap();
    mapping.start_writeback(&f).unwrap();
    assert!(mapping.is_marked(8, Mark::Dirty) && mapping.is_marked(8, Mark::Writeback));
    mapping.end_writeback(&folio);
    assert!(mapping.is_marked(8, Mark::Dirty) && f.is_dirty());
    assert!(mapping.cancel_dirty(&f));
    assert!(!mapping.is_marked(8, Mark::Dirty) && cache.dirty_bytes() == 0);

    // A folio of another mapping is refused.
    let other = cache.new_mapping(4096).unwrap();
    assert_eq!(other.mark_dirty(&f, 0, 1), Err(Errno::EINVAL));
    assert_eq!(other.start_writeback(&f), Err(Errno::EINVAL));
    assert!(!other.clear_dirty_for_io(&f));
}

#[test]
fn writeback_walk_writes_each_dirty_folio_once() {
    let (_p, cache, mapping) = setup(4096);
    for i in [0u64, 3, 9, 100, 4096] {
        let f = mapping.find_or_create(i, 0).unwrap();
        mapping.mark_dirty(&f, 0, 4096).unwrap();
    }
    drop(mapping.find_or_create(50, 0).unwrap()); // clean
    assert_eq!(writeback(&mapping, true), [0, 3, 9, 100, 4096]);
    assert_eq!(writeback(&mapping, true), Vec::<u64>::new());
    assert_eq!((cache.dirty_bytes(), cache.writeback_bytes(), mapping.nr_dirty()), (0, 0, 0));
    for m in Mark::ALL {
        assert!(mapping.next_marked(0, m).is_none(), "{m:?} left behind");
    }
}

#[test]
fn get_folios_batches_resume_where_they_stopped() {
    let (_p, _cache, mapping) = setup(4096);
    for i in 0..40u64 {
        drop(mapping.find_or_create(i * 2, 0).unwrap());
    }
    let mut seen = Vec::new();
    let mut at = Some(0);
    let mut calls = 0;
    while let Some(start) = at {
        let mut batch = FolioBatch::new();
        at = mapping.get_folios(start, MAX_INDEX, &mut batch);
        seen.extend(batch.iter().map(|f| f.index()));
        calls += 1;
    }
    assert_eq!(seen, (0..40).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(calls, 40usize.div_ceil(FOLIO_BATCH));
    let mut batch = FolioBatch::new();
    assert_eq!(mapping.get_folios(11, 20, &mut batch), None);
    assert_eq!(batch.iter().map(|f| f.index()).collect::<Vec<_>>(), [12, 14, 16, 18, 20]);
}

#[test]
fn truncate_drops_whole_folios_and_reports_the_straddler() {
    let (_p, cache, mapping) = setup(4096);
    for i in 0..16u64 {
        let f = mapping.find_or_create(i, 0).unwrap();
        mapping.mark_dirty(&f, 0, 4096).unwrap();
    }
    let big = mapping.find_or_create(16, 2).unwrap().unlock();
    let held = mapping.get(5).unwrap();
    assert_eq!(cache.dirty_bytes(), 16 * 4096);
    let straddler = mapping.truncate(5000).expect("folio 1 straddles byte 5000");
    assert_eq!(straddler.index(), 1);
    assert!(straddler.belongs_to(&mapping) && straddler.is_dirty());
    assert_eq!((mapping.nr_folios(), mapping.nr_pages()), (2, 2));
    assert_eq!(
        (mapping.nr_dirty(), cache.dirty_bytes()),
        (2, 8192),
        "dirty state of dropped folios cancelled"
    );
    assert!(!big.is_attached() && !held.belongs_to(&mapping) && !held.is_dirty());
    assert!(mapping.get_locked(5).is_none());
    assert!(mapping.truncate(8192).is_none(), "aligned: no straddler");
    assert_eq!(mapping.nr_folios(), 2);
    // Memory: the held folio stays allocated until its last reference goes.
    let before = cache.cached_bytes();
    drop(held);
    assert_eq!(cache.cached_bytes(), before - 4096);
    drop(big);
    assert_eq!(cache.cached_bytes(), 2 * 4096);
    assert_eq!(cache.stats().inactive_folios, 2);
}

#[test]
fn truncate_range_reports_both_edges() {
    let (_p, _cache, mapping) = setup(4096);
    drop(mapping.find_or_create(0, 2).unwrap()); // [0, 16K)
    drop(mapping.find_or_create(4, 0).unwrap()); // [16K, 20K)
    drop(mapping.find_or_create(8, 3).unwrap()); // [32K, 64K)
    let edges = mapping.truncate_range(1000, 40000);
    assert_eq!(edges.head.map(|f| f.index()), Some(0));
    assert_eq!(edges.tail.map(|f| f.index()), Some(8));
    assert_eq!(mapping.nr_folios(), 2, "[16K, 20K) dropped");
    let edges = mapping.truncate_range(100, 200);
    let (h, t) = (edges.head.unwrap(), edges.tail.unwrap());
    assert!(Arc::ptr_eq(&h, &t), "one folio holds both edges");
    assert!(mapping.truncate_range(5, 5).head.is_none());
}

#[test]
fn truncate_waits_for_writeback() {
    let (_p, _cache, mapping) = setup(4096);
    let f = mapping.find_or_create(3, 0).unwrap();
    mapping.mark_dirty(&f, 0, 4096).unwrap();
    assert!(mapping.clear_dirty_for_io(&f));
    mapping.start_writeback(&f).unwrap();
    let folio = f.unlock();
    let ender = {
        let (m, folio) = (mapping.clone(), folio.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            let attached = folio.is_attached();
            m.end_writeback(&folio);
            attached
        })
    };
    assert!(mapping.truncate(0).is_none());
    assert!(!folio.is_writeback() && !folio.is_attached());
    assert!(ender.join().unwrap(), "truncate must not drop a folio under writeback");
}

#[test]
fn invalidate_drops_clean_folios_and_refuses_dirty_ones() {
    let (_p, cache, mapping) = setup(4096);
    for i in 0..8u64 {
        drop(mapping.find_or_create(i, 0).unwrap());
    }
    {
        let f = mapping.get_locked(4).unwrap();
        mapping.mark_dirty(&f, 0, 1).unwrap();
    }
    let held = mapping.get(2).unwrap();
    assert_eq!(mapping.invalidate_range(4096, 7 * 4096), Err(Errno::EBUSY));
    let left: Vec<u64> = (0..8).filter(|&i| mapping.get(i).is_some()).collect();
    assert_eq!(left, [0, 4, 7], "clean folios dropped even while referenced; dirty kept");
    assert!(!held.is_attached());
    writeback(&mapping, true);
    assert_eq!(mapping.invalidate_range(0, u64::MAX), Ok(()));
    assert_eq!(mapping.nr_folios(), 0);
    assert_eq!(mapping.invalidate_range(10, 10), Ok(()));
    drop(held);
    assert_eq!(cache.cached_bytes(), 0);
    assert_eq!(cache.stats().active_folios + cache.stats().inactive_folios, 0);
}

#[test]
fn waits_poll_the_kick_without_threads() {
    // One CPU, no interrupts: writeback ends only when the kick polls the "device".
    let (_p, cache, mapping) = setup(4096);
    let hooks = TestHooks::new();
    cache.set_writeback_hooks(hooks.clone());
    let f = mapping.find_or_create(0, 0).unwrap();
    mapping.mark_dirty(&f, 0, 1).unwrap();
    mapping.clear_dirty_for_io(&f);
    mapping.start_writeback(&f).unwrap();
    let folio = f.unlock();
    {
        let (m, folio) = (Arc::downgrade(&mapping), folio.clone());
        hooks.on_kick(move || {
            if let Some(m) = m.upgrade() {
                if folio.is_writeback() {
                    m.end_writeback(&folio);
                }
            }
        });
    }
    folio.wait_writeback();
    assert!(!folio.is_writeback());
    assert_eq!(hooks.kicks.load(Ordering::SeqCst), 1);
    // The folio lock: the kick releases a lock held "by the device".
    let locked = folio.lock();
    let slot = Arc::new(std::sync::Mutex::new(Some(locked)));
    {
        let slot = slot.clone();
        hooks.on_kick(move || drop(slot.lock().unwrap().take()));
    }
    assert!(folio.try_lock().is_none());
    let again = folio.lock();
    assert!(again.is_locked());
    drop(again);
    // DIO: the kick completes the direct I/O.
    let guard = mapping.dio_begin();
    assert_eq!(mapping.dio_in_flight(), 1);
    let slot = Arc::new(std::sync::Mutex::new(Some(guard)));
    {
        let slot = slot.clone();
        hooks.on_kick(move || drop(slot.lock().unwrap().take()));
    }
    mapping.wait_dio();
    assert_eq!(mapping.dio_in_flight(), 0);
}

#[test]
fn waits_sleep_and_are_woken_with_a_scheduler() {
    // park really sleeps (up to 2 s) until unpark: every wake must come from an unpark.
    let platform = TestPlatform::new(true);
    let cache = cache_with(&platform, 1024, 9);
    let mapping = cache.new_mapping(4096).unwrap();
    let f = mapping.find_or_create(0, 0).unwrap();
    let folio = f.folio().clone();
    let waiter = {
        let folio = folio.clone();
        thread::spawn(move || folio.lock().index())
    };
    thread::sleep(Duration::from_millis(20));
    drop(f);
    assert_eq!(waiter.join().unwrap(), 0);

    let f = folio.lock();
    mapping.start_writeback(&f).unwrap();
    drop(f);
    let waiter = {
        let folio = folio.clone();
        thread::spawn(move || folio.wait_writeback())
    };
    thread::sleep(Duration::from_millis(20));
    mapping.end_writeback(&folio);
    waiter.join().unwrap();

    let guard = mapping.dio_begin();
    let waiter = {
        let m = mapping.clone();
        thread::spawn(move || m.wait_dio())
    };
    thread::sleep(Duration::from_millis(20));
    drop(guard);
    waiter.join().unwrap();
    assert!(platform.parks.load(Ordering::SeqCst) > 0, "the waits did park");
    assert_eq!(platform.park_timeouts.load(Ordering::SeqCst), 0, "every park was ended by an unpark");
}

#[test]
fn budget_is_enforced_by_reclaiming_the_oldest_clean_folios() {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 16, 9);
    let mapping = cache.new_mapping(4096).unwrap();
    for i in 0..16u64 {
        drop(mapping.find_or_create(i, 0).unwrap());
    }
    mapping.get(1).unwrap().mark_accessed();
    assert_eq!(cache.cached_bytes(), 16 * 4096);
    drop(mapping.find_or_create(100, 0).unwrap());
    assert_eq!(cache.cached_bytes(), 16 * 4096, "never over budget");
    assert!(mapping.get(0).is_none(), "the oldest folio went");
    assert!(mapping.get(1).is_some(), "the referenced one got a second chance");
    let s = cache.stats();
    assert_eq!((s.reclaimed_folios, s.reclaimed_bytes), (1, 4096));
    assert_eq!(platform.live(), cache.cached_bytes());
}

#[test]
fn dirty_folios_are_never_reclaimed_and_trigger_writeback_requests() {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 8, 9);
    let hooks = TestHooks::new();
    cache.set_writeback_hooks(hooks.clone());
    let mapping = cache.new_mapping(4096).unwrap();
    for i in 0..8u64 {
        let f = mapping.find_or_create(i, 0).unwrap();
        mapping.mark_dirty(&f, 0, 4096).unwrap();
    }
    assert_eq!(mapping.find_or_create(8, 0).err(), Some(Errno::ENOMEM));
    assert_eq!(mapping.nr_folios(), 8, "dirty folios are never dropped");
    let requests = hooks.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].reason, WritebackReason::Reclaim);
    assert_eq!(requests[0].bytes, 4096, "the shortfall: one page");
    // Once written back they can go.
    writeback(&mapping, false);
    assert_eq!(mapping.find_or_create(8, 0).map(|f| f.index()), Ok(8));
    assert_eq!(mapping.nr_folios(), 8);
    assert!(cache.cached_bytes() <= cache.budget());
}

#[test]
fn balance_dirty_requests_writeback_and_throttles_above_the_hard_limit() {
    let platform = TestPlatform::new(false);
    let budget = 64 * 4096;
    let config = CacheConfig {
        budget_bytes: budget,
        background_dirty_bytes: 4 * 4096,
        hard_dirty_bytes: 8 * 4096,
        max_order: 9,
    };
    let cache = PageCache::new(platform.clone(), config).unwrap();
    let mapping = cache.new_mapping(4096).unwrap();
    let hooks = TestHooks::new();
    cache.set_writeback_hooks(hooks.clone());
    // The "flusher": writes back one folio per request (so the throttle must ask again).
    {
        let m = Arc::downgrade(&mapping);
        hooks.on_writeback(move |_req| {
            if let Some(m) = m.upgrade() {
                if let Some(folio) = m.next_marked(0, Mark::Dirty) {
                    if let Some(l) = folio.try_lock() {
                        if m.clear_dirty_for_io(&l) {
                            m.start_writeback(&l).unwrap();
                            drop(l);
                            m.end_writeback(&folio);
                        }
                    }
                }
            }
        });
    }
    for i in 0..4u64 {
        cache.balance_dirty();
        let f = mapping.find_or_create(i, 0).unwrap();
        mapping.mark_dirty(&f, 0, 1).unwrap();
    }
    assert!(hooks.requests.lock().unwrap().is_empty(), "at the background threshold: nothing asked");
    cache.balance_dirty();
    assert_eq!(hooks.requests.lock().unwrap().len(), 0);
    // Dirty 12 folios without throttling, then throttle.
    for i in 4..12u64 {
        let f = mapping.find_or_create(i, 0).unwrap();
        mapping.mark_dirty(&f, 0, 1).unwrap();
    }
    assert_eq!(cache.dirty_bytes(), 12 * 4096);
    cache.balance_dirty();
    assert!(cache.dirty_bytes() <= 8 * 4096, "returns only under the hard threshold");
    let reqs = hooks.requests.lock().unwrap().clone();
    assert_eq!(reqs[0].reason, WritebackReason::Background);
    assert_eq!(reqs[0].bytes, 8 * 4096);
    assert!(reqs[1..].iter().all(|r| r.reason == WritebackReason::Throttle));
    assert_eq!(reqs.len(), 4, "one background request, then one per folio still over the limit");
    assert_eq!(cache.stats().throttled, 1);
    assert_eq!(cache.dirty_bytes(), 8 * 4096);
}

#[test]
fn mapping_sequence_errors_and_invalidate_lock() {
    let (_p, _cache, mapping) = setup(4096);
    assert_eq!(mapping.seq(), 0);
    assert_eq!(mapping.bump_seq(), 1);
    assert_eq!(mapping.seq(), 1);
    let mut fd2 = mapping.sample_error();
    let mut fd1 = mapping.sample_error();
    mapping.set_error(Errno::EIO);
    assert_eq!(mapping.check_and_advance(&mut fd1), Err(Errno::EIO));
    assert_eq!(mapping.check_and_advance(&mut fd2), Err(Errno::EIO));
    assert_eq!(mapping.check_and_advance(&mut fd2), Ok(()));
    assert_eq!(mapping.check_and_advance(&mut fd1), Ok(()));
    {
        let _shared = mapping.invalidate_lock().read();
        assert!(mapping.invalidate_lock().try_write().is_none());
    }
    assert!(mapping.invalidate_lock().try_write().is_some());
}

#[test]
fn dropping_the_mapping_frees_everything() {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 1024, 9);
    let mapping = cache.new_mapping(1024).unwrap();
    for i in 0..10u64 {
        let f = mapping.find_or_create(i * 4, 2).unwrap();
        if i % 2 == 0 {
            mapping.mark_dirty(&f, 0, 1).unwrap();
        }
    }
    let kept = mapping.get(8).unwrap();
    assert_eq!(cache.dirty_bytes(), 5 * 16384);
    drop(mapping);
    assert_eq!(cache.dirty_bytes(), 0);
    assert_eq!(cache.cached_bytes(), 16384, "only the folio still referenced");
    assert!(!kept.is_attached());
    drop(kept);
    assert_eq!((cache.cached_bytes(), platform.live()), (0, 0));
    let s = cache.stats();
    assert_eq!((s.folios, s.active_folios, s.inactive_folios), (0, 0, 0));
}

#[test]
fn locked_folio_byte_access() {
    let (_p, _cache, mapping) = setup(4096);
    let mut f = mapping.find_or_create(0, 1).unwrap();
    assert!(f.data().iter().all(|&b| b == 0), "new folios are zeroed");
    f.write_at(4090, b"abcdefgh").unwrap();
    let mut buf = [0u8; 8];
    f.read_at(4090, &mut buf).unwrap();
    assert_eq!(&buf, b"abcdefgh");
    f.zero(4092, 2).unwrap();
    assert_eq!(&f.data()[4090..4098], b"ab\0\0efgh");
    assert_eq!(f.write_at(8190, b"abc"), Err(Errno::EINVAL));
    assert_eq!(f.zero(usize::MAX, 2), Err(Errno::EINVAL));
    assert_eq!(f.read_at(8192, &mut buf), Err(Errno::EINVAL));
    // SAFETY: the segment is only inspected, never given to a device.
    let seg = unsafe { f.io_segment(4096, 4096) }.unwrap();
    assert_eq!((seg.phys(), seg.len()), (f.phys() + 4096, 4096));
    // SAFETY: as above; both calls fail before building a segment.
    unsafe {
        assert_eq!(f.io_segment(4097, 4096).err(), Some(Errno::EINVAL));
        assert_eq!(f.io_segment(0, 0).err(), Some(Errno::EINVAL));
    }
}
