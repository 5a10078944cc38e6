//! Folios created for an overwrite: which bytes stay unzeroed, and that no path lets one be
//! seen before it is written (the platform poisons unzeroed memory with `POISON`).

use std::sync::atomic::Ordering;
use std::vec;

use super::common::setup;
use crate::pagecache::LockedFolio;
use crate::platform::POISON;
use crate::Errno;

/// The folio's bytes as memory holds them, without settling the guard's debt.
fn raw(f: &LockedFolio) -> &[u8] {
    // SAFETY: the test platform fills unzeroed runs with POISON, so every byte is initialised;
    // the test holds the lock and forms no other slice while this one is alive.
    unsafe { std::slice::from_raw_parts(f.virt().as_ptr(), f.size()) }
}

#[test]
fn only_whole_blocks_inside_the_range_stay_unzeroed() {
    let (p, _cache, mapping) = setup(1024);
    let f = mapping.find_or_create_for_overwrite(0, 2, 100..9000).unwrap();
    assert_eq!(f.size(), 16384);
    assert_eq!(f.unfilled(), 1024..8192, "blocks 1..8 lie wholly inside [100, 9000)");
    let bytes = raw(&f);
    assert!(bytes[..1024].iter().all(|&b| b == 0), "the partly covered first block is zeroed");
    assert!(bytes[1024..8192].iter().all(|&b| b == POISON), "the covered blocks are not touched");
    assert!(bytes[8192..].iter().all(|&b| b == 0), "the rest is zeroed");
    assert_eq!(p.unzeroed_allocs.load(Ordering::SeqCst), 1);
    assert_eq!(p.zeroed_allocs.load(Ordering::SeqCst), 0);
}

#[test]
fn a_whole_folio_overwrite_zeroes_nothing_and_a_sub_block_one_everything() {
    let (p, _cache, mapping) = setup(4096);
    let f = mapping.find_or_create_for_overwrite(512, 9, (2 << 20)..(4 << 20)).unwrap();
    assert_eq!((f.index(), f.size(), f.unfilled()), (512, 2 << 20, 0..(2 << 20)));
    assert!(raw(&f).iter().all(|&b| b == POISON));
    drop(f);
    let g = mapping.find_or_create_for_overwrite(0, 0, 10..4000).unwrap();
    assert_eq!(g.unfilled(), 0..0, "no whole block inside");
    assert!(raw(&g).iter().all(|&b| b == 0));
    assert_eq!(p.zeroed_allocs.load(Ordering::SeqCst), 1, "a zeroed allocation for it");
    drop(g);
    // Past the end of the range, or before it: nothing inside this folio.
    let h = mapping.find_or_create_for_overwrite(8, 3, 0..(8 << 12)).unwrap();
    assert_eq!((h.index(), h.unfilled()), (8, 0..0));
}

#[test]
fn a_cached_folio_comes_back_as_is() {
    let (_p, _cache, mapping) = setup(4096);
    let mut f = mapping.find_or_create(0, 0).unwrap();
    f.write_at(0, &[7; 4096]).unwrap();
    drop(f);
    let f = mapping.find_or_create_for_overwrite(0, 0, 0..4096).unwrap();
    assert_eq!(f.unfilled(), 0..0);
    assert_eq!(f.data(), &[7u8; 4096][..]);
}

#[test]
fn copy_in_fills_and_a_short_copy_zeroes_the_rest() {
    let (_p, _cache, mapping) = setup(1024);
    let mut f = mapping.find_or_create_for_overwrite(0, 2, 100..9000).unwrap();
    let n = f
        .copy_in(100, 8900, |d| {
            assert_eq!(d.len(), 8900);
            d[..3000].fill(7);
            3000
        })
        .unwrap();
    assert_eq!(n, 3000);
    assert_eq!(f.unfilled(), 0..0, "the debt is paid");
    let bytes = raw(&f);
    assert!(bytes[..100].iter().all(|&b| b == 0));
    assert!(bytes[100..3100].iter().all(|&b| b == 7));
    assert!(bytes[3100..].iter().all(|&b| b == 0), "what the copy did not reach is zero");
    // A full copy leaves nothing to zero; a copy claiming more than it was given is clamped.
    let mut g = mapping.find_or_create_for_overwrite(4, 2, (4 << 12)..(8 << 12)).unwrap();
    assert_eq!(g.unfilled(), 0..16384);
    assert_eq!(
        g.copy_in(0, 16384, |d| {
            d.fill(3);
            usize::MAX
        }),
        Ok(16384)
    );
    assert!(raw(&g).iter().all(|&b| b == 3));
    assert_eq!(g.copy_in(16000, 1000, |_| 0), Err(Errno::EINVAL), "outside the folio");
}

#[test]
fn a_copy_elsewhere_still_zeroes_every_unfilled_byte() {
    let (_p, _cache, mapping) = setup(1024);
    let mut f = mapping.find_or_create_for_overwrite(0, 2, 0..16384).unwrap();
    assert_eq!(
        f.copy_in(5000, 100, |d| {
            d.fill(9);
            50
        }),
        Ok(50)
    );
    let bytes = raw(&f);
    assert!(bytes[5000..5050].iter().all(|&b| b == 9));
    assert!(bytes[..5000].iter().chain(&bytes[5050..]).all(|&b| b == 0));
}

#[test]
fn every_other_access_and_the_unlock_zero_the_unfilled_bytes_first() {
    let (_p, _cache, mapping) = setup(4096);
    // Unlock without a copy.
    let f = mapping.find_or_create_for_overwrite(0, 2, 0..16384).unwrap();
    assert_eq!(f.unfilled(), 0..16384);
    drop(f);
    let f = mapping.get_locked(0).unwrap();
    assert_eq!(f.unfilled(), 0..0);
    assert!(raw(&f).iter().all(|&b| b == 0), "dropping the guard zeroed the owed bytes");
    drop(f);
    // `unlock` too.
    let f = mapping.find_or_create_for_overwrite(4, 2, 0..(1 << 20)).unwrap();
    let folio = f.unlock();
    let f = folio.lock();
    assert!(raw(&f).iter().all(|&b| b == 0));
    drop(f);
    // `data`, `read_at`, `data_mut` and `write_at`.
    let f = mapping.find_or_create_for_overwrite(8, 0, 0..(1 << 20)).unwrap();
    assert!(f.data().iter().all(|&b| b == 0));
    drop(f);
    let f = mapping.find_or_create_for_overwrite(9, 0, 0..(1 << 20)).unwrap();
    let mut buf = vec![1u8; 10];
    f.read_at(4000, &mut buf).unwrap();
    assert_eq!(buf, vec![0u8; 10]);
    drop(f);
    let mut f = mapping.find_or_create_for_overwrite(10, 0, 0..(1 << 20)).unwrap();
    assert!(f.data_mut().iter().all(|&b| b == 0));
    drop(f);
    let mut f = mapping.find_or_create_for_overwrite(11, 0, 0..(1 << 20)).unwrap();
    f.write_at(10, &[5; 10]).unwrap();
    assert_eq!(f.unfilled(), 0..0);
    let bytes = raw(&f);
    assert!(bytes[10..20].iter().all(|&b| b == 5));
    assert!(bytes[..10].iter().chain(&bytes[20..]).all(|&b| b == 0));
}

#[test]
fn zero_only_writes_and_keeps_the_debt() {
    let (_p, _cache, mapping) = setup(4096);
    let mut f = mapping.find_or_create_for_overwrite(0, 1, 0..8192).unwrap();
    f.zero(0, 100).unwrap();
    assert_eq!(f.unfilled(), 0..8192);
    let bytes = raw(&f);
    assert!(bytes[..100].iter().all(|&b| b == 0));
    assert!(bytes[100..].iter().all(|&b| b == POISON));
    drop(f);
    let f = mapping.get_locked(0).unwrap();
    assert!(f.data().iter().all(|&b| b == 0));
}
