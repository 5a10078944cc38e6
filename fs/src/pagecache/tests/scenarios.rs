//! The page-cache scenarios of the behaviour reference (§9 T1–T3).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::vec::Vec;

use super::common::setup;
use crate::pagecache::{FolioBatch, Mark, MAX_INDEX};
use crate::Errno;

#[test]
fn t1_order2_folio_at_4_covers_4_to_7() {
    let (_p, _cache, mapping) = setup(4096);
    let folio = mapping.add_folio(4, 2).unwrap().unlock();
    assert_eq!((folio.index(), folio.order(), folio.nr_pages()), (4, 2, 4));
    for index in 4..8 {
        let found = mapping.get(index).expect("lookup inside the folio");
        assert!(Arc::ptr_eq(&found, &folio), "index {index}");
    }
    assert!(mapping.get(3).is_none() && mapping.get(8).is_none());
    assert_eq!(mapping.add_folio(6, 0).err(), Some(Errno::EEXIST), "order-0 insert at 6");
    assert_eq!(mapping.add_folio(5, 2).err(), Some(Errno::EINVAL), "misaligned order-2 at 5");
    assert_eq!(mapping.add_folio(0, 3).err(), Some(Errno::EEXIST), "order-3 at 0 overlaps");
    // find-or-create at 6 returns the existing folio.
    let again = mapping.find_or_create(6, 0).unwrap();
    assert!(Arc::ptr_eq(again.folio(), &folio));
    assert_eq!(mapping.nr_folios(), 1);
    assert_eq!(mapping.nr_pages(), 4);
}

#[test]
fn t2_two_threads_racing_to_create_index_10_get_one_folio() {
    // Many rounds, each a fresh index, so the race is actually run many times.
    let (_p, _cache, mapping) = setup(4096);
    for round in 0..200u64 {
        let index = 10 + 16 * round;
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (m, b) = (mapping.clone(), barrier.clone());
                thread::spawn(move || {
                    b.wait();
                    m.find_or_create(index, 0).unwrap().unlock()
                })
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(Arc::ptr_eq(&got[0], &got[1]), "round {round}: both callers get the same folio");
        assert_eq!(mapping.nr_folios() as u64, round + 1, "round {round}: exactly one folio cached");
        assert!(got[0].belongs_to(&mapping) && got[0].contains_index(index));
    }
}

#[test]
fn t3_integrity_sync_terminates_while_other_pages_keep_being_dirtied() {
    let (_p, _cache, mapping) = setup(4096);
    // The tagged folio: dirty before the sync starts.
    {
        let f = mapping.find_or_create(0, 0).unwrap();
        mapping.mark_dirty(&f, 0, 4096).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dirtied = Arc::new(AtomicU64::new(0));
    // The dirtier: keeps dirtying other folios, cycling over 3000 of them, so folios the sync
    // already wrote are dirty again behind it and untagged ones are dirty ahead of it.
    let dirtier = {
        let (m, stop, dirtied) = (mapping.clone(), stop.clone(), dirtied.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < 5_000_000 {
                let f = m.find_or_create(1 + n % 3000, 0).unwrap();
                m.mark_dirty(&f, 0, 4096).unwrap();
                drop(f);
                dirtied.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        })
    };
    // Let the dirtier get going so some of its folios are dirty when we tag.
    while dirtied.load(Ordering::SeqCst) < 50 {
        thread::yield_now();
    }
    // Integrity sync: tag, then walk TOWRITE, writing each folio (I/O completes at once).
    let tagged = mapping.tag_for_writeback(0, MAX_INDEX);
    assert!(tagged >= 51, "the first folio and the dirtier's first 50 are tagged");
    let mut written = BTreeSet::new();
    let mut at = Some(0);
    while let Some(start) = at {
        let mut batch = FolioBatch::new();
        at = mapping.get_folios_tag(start, MAX_INDEX, Mark::Towrite, &mut batch);
        for folio in batch {
            let locked = folio.lock();
            if !locked.belongs_to(&mapping) || !mapping.clear_dirty_for_io(&locked) {
                continue;
            }
            mapping.start_writeback(&locked).unwrap();
            written.insert(locked.index());
            drop(locked);
            mapping.end_writeback(&folio);
        }
    }
    stop.store(true, Ordering::SeqCst);
    dirtier.join().unwrap();
    assert!(written.contains(&0), "the tagged folio was written");
    assert_eq!(
        written.len(),
        tagged,
        "exactly the tagged folios were written: the walk did not chase new dirt"
    );
    assert!(dirtied.load(Ordering::SeqCst) > 50);
    assert!(!mapping.is_marked(0, Mark::Towrite));
}
