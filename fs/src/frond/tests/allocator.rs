//! Allocator: alloc/free property test against a model, free-space tree consistency, exact
//! accounting, and ENOSPC exactness.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::*;
use crate::frond::extset::ExtentSet;
use crate::frond::format::{get64, Error};
use crate::frond::state::{FsState, Pool};
use crate::frond::testutil::Rng;
use crate::Errno;

/// Checks the free-space trees against each other, against the model of allocated blocks, and
/// the root block's count: free extents + free list + tree nodes == free_blocks.
fn check_space(st: &mut FsState, allocated: &ExtentSet, ctx: &str) {
    let mut nodes = 0u64;
    let mut bno = Vec::new();
    let t = st.bno();
    t.check(st, &mut |_| nodes += 1, &mut |k, v| bno.push((k as u64, get64(v, 0)))).unwrap();
    let mut cnt = BTreeSet::new();
    let t = st.cnt();
    t.check(st, &mut |_| nodes += 1, &mut |k, _| {
        cnt.insert((k as u64, (k >> 64) as u64));
    })
    .unwrap();
    let by_block: BTreeSet<(u64, u64)> = bno.iter().copied().collect();
    assert_eq!(by_block, cnt, "{ctx}: by-block and by-size trees differ");
    let mut prev_end = 0;
    let mut free = 0;
    for &(s, l) in &bno {
        assert!(s > prev_end || prev_end == 0, "{ctx}: free extents {s} not merged or overlapping");
        assert!(!allocated.overlaps(s, l), "{ctx}: free extent {s}+{l} overlaps allocated blocks");
        prev_end = s + l;
        free += l;
    }
    for &b in &st.root.freelist {
        assert!(!allocated.contains(b), "{ctx}: free-list block {b} also allocated");
    }
    let total = free + st.root.freelist.len() as u64 + nodes;
    assert_eq!(total, st.root.free_blocks, "{ctx}: free-block count");
}

fn property(bs: u32, node_cap: u32, ops: usize, seed: u64) {
    let blocks = if bs >= 65536 { 1024 } else { 4096 };
    let (_disk, fs) = fresh_with(bs, blocks * bs as u64, MkfsOptions { node_cap, ..Default::default() });
    let mut st = fs.state.lock();
    let initial = st.root.free_blocks;
    let mut rng = Rng(seed);
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut allocated = ExtentSet::new();
    for op in 0..ops {
        let ctx = alloc::format!("seed {seed:#x} bs {bs} op {op}");
        if live.is_empty() || rng.below(10) < 6 {
            let max = 1 + rng.below(40);
            let min = 1 + rng.below(max);
            let goal = st.sb.data_start + rng.below(st.sb.block_count - st.sb.data_start);
            let r = st.op(max, 64, Pool::Normal, |st| st.alloc_extent(goal, min, max));
            match r {
                Ok((s, l)) => {
                    assert!(l >= min && l <= max, "{ctx}: got {l} of {min}..={max}");
                    assert!(!allocated.overlaps(s, l), "{ctx}: {s}+{l} allocated twice");
                    allocated.insert(s, l);
                    live.push((s, l));
                }
                Err(Error::Errno(Errno::ENOSPC)) => {}
                Err(e) => panic!("{ctx}: {e} (shutdown: {:?})", st.shutdown),
            }
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let (s, l) = live.swap_remove(i);
            // Free a random part, keep the rest live.
            let a = rng.below(l);
            let n = 1 + rng.below(l - a);
            let meta = rng.below(2) == 0;
            st.op(0, 64, Pool::Reserve, |st| st.free_extent(s + a, n, meta))
                .unwrap_or_else(|e| panic!("{ctx}: {e} (shutdown {:?})", st.shutdown));
            allocated.remove(s + a, n);
            if a > 0 {
                live.push((s, a));
            }
            if a + n < l {
                live.push((s + a + n, l - a - n));
            }
        }
        assert_eq!(st.root.free_blocks, initial - allocated.total(), "{ctx}: accounting");
        if op % 500 == 499 {
            check_space(&mut st, &allocated, &ctx);
            if rng.below(2) == 0 {
                st.checkpoint().unwrap();
            }
        }
    }
    check_space(&mut st, &allocated, "end");
    for (s, l) in live {
        st.op(0, 64, Pool::Reserve, |st| st.free_extent(s, l, false))
            .unwrap_or_else(|e| panic!("seed {seed:#x}: drain {s}+{l}: {e} (shutdown {:?})", st.shutdown));
    }
    st.checkpoint().unwrap();
    assert_eq!(st.root.free_blocks, initial, "seed {seed:#x}: all space back");
    check_space(&mut st, &ExtentSet::new(), "drained");
    drop(st);
    assert_clean(&fs);
}

#[test]
fn alloc_free_property_1k_small_nodes() {
    property(1024, 4, 4000, 0xA110_0001);
}

#[test]
fn alloc_free_property_4k() {
    property(4096, 0, 3000, 0xA110_0002);
}

#[test]
fn alloc_free_property_64k() {
    property(65536, 5, 1000, 0xA110_0003);
}

#[test]
fn enospc_is_exact_and_leaves_nothing_half_done() {
    for bs in [1024u32, 4096] {
        let (disk, fs) = fresh(bs, 2048 * bs as u64);
        let mut st = fs.state.lock();
        let avail = st.available(Pool::Normal);
        assert_eq!(fs_statfs_free(&mut st), avail);
        let mut got = Vec::new();
        for i in 0..avail {
            let goal = st.sb.data_start;
            let r = st.op(1, 16, Pool::Normal, |st| st.alloc_extent(goal, 1, 1));
            got.push(r.unwrap_or_else(|e| panic!("bs {bs}: allocation {i} of {avail} failed: {e}")).0);
        }
        let changes = st.changes;
        let r = st.op(1, 16, Pool::Normal, |st| st.alloc_extent(0, 1, 1));
        assert_eq!(r, Err(Error::Errno(Errno::ENOSPC)));
        assert_eq!((st.changes, st.shutdown.is_none()), (changes, true), "nothing changed, no shutdown");
        // The reserve pool still serves completion-time work.
        let r = st.op(1, 16, Pool::Reserve, |st| st.alloc_extent(0, 1, 1)).unwrap();
        got.push(r.0);
        for b in got {
            st.op(0, 16, Pool::Reserve, |st| st.free_extent(b, 1, false)).unwrap();
        }
        st.checkpoint().unwrap();
        assert_eq!(st.available(Pool::Normal), avail);
        drop(st);
        assert_clean(&fs);
        fs.unmount().unwrap();
        assert_image_clean(&disk);
    }
}

fn fs_statfs_free(st: &mut FsState) -> u64 {
    st.available(Pool::Normal)
}

#[test]
fn delalloc_enospc_at_reservation_time_and_file_level_enospc_is_clean() {
    use crate::frond::engine::Fork;
    use crate::frond::inode::S_IFREG;
    let (disk, fs) = fresh(1024, 2048 * 1024);
    let root = fs.root_ino();
    let ino = fs.create(root, b"big", S_IFREG | 0o644, 0, 0).unwrap();
    let avail = fs.statfs().unwrap().avail;
    // One delalloc extent reserves its blocks plus its indirect blocks (inline map: 2).
    assert_eq!(fs.reserve_delalloc(ino, 0, avail - 2 + 1, Fork::Data), Err(Errno::ENOSPC));
    assert_eq!(fs.reserve_delalloc(ino, 0, avail - 2, Fork::Data), Ok(avail - 2));
    assert_eq!(fs.statfs().unwrap().avail, 0);
    assert_eq!(fs.reserve_delalloc(ino, avail, 1, Fork::Data), Err(Errno::ENOSPC));
    // Writeback never fails for space: it allocates from the reservation (and the reserve pool).
    let mut fb = 0;
    while fb < avail - 2 {
        let m = fs.allocate(ino, fb, avail - 2 - fb, true, Fork::Data).unwrap();
        fb += m.len;
    }
    fs.convert_unwritten(ino, 0, avail - 2).unwrap();
    // A direct-I/O allocation into a hole now fails cleanly.
    assert_eq!(fs.allocate(ino, 100_000, 4, false, Fork::Data).map(|_| ()), Err(Errno::ENOSPC));
    // Creating files fails cleanly once inode chunks cannot be allocated.
    let mut n = 0;
    loop {
        match fs.create(root, alloc::format!("f{n}").as_bytes(), S_IFREG, 0, 0) {
            Ok(_) => n += 1,
            Err(Errno::ENOSPC) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(n < 10_000);
    }
    assert!(!fs.is_shut_down());
    assert_clean(&fs);
    fs.truncate(ino, 0).unwrap();
    let fs = remount(&disk, fs);
    assert!(fs.statfs().unwrap().avail >= avail - 2 - 4 * n as u64);
    assert_clean(&fs);
}

#[test]
fn efbig_and_einval_for_bad_ranges() {
    use crate::frond::engine::Fork;
    use crate::frond::extent::MAX_FILE_BLOCKS;
    use crate::frond::inode::S_IFREG;
    let (_disk, fs) = fresh(4096, 8 << 20);
    let root = fs.root_ino();
    let ino = fs.create(root, b"f", S_IFREG, 0, 0).unwrap();
    assert_eq!(fs.reserve_delalloc(ino, MAX_FILE_BLOCKS - 1, 2, Fork::Data), Err(Errno::EFBIG));
    assert_eq!(fs.allocate(ino, MAX_FILE_BLOCKS, 1, false, Fork::Data).map(|_| ()), Err(Errno::EFBIG));
    assert_eq!(fs.map(ino, 0, 0, Fork::Data).map(|_| ()), Err(Errno::EINVAL));
    assert_eq!(fs.set_size(ino, (MAX_FILE_BLOCKS << 12) + 1), Err(Errno::EFBIG));
    assert_eq!(
        fs.map(root, 0, 1, Fork::Data)
            .map(|_| ())
            .and_then(|_| fs.allocate(root, 0, 1, false, Fork::Data).map(|_| ())),
        Err(Errno::EISDIR)
    );
    assert_eq!(fs.map(999_999_999, 0, 1, Fork::Data).map(|_| ()), Err(Errno::ESTALE));
    assert_clean(&fs);
}

#[test]
fn appending_delalloc_one_block_at_a_time_reserves_one_worst_case() {
    use crate::frond::engine::Fork;
    use crate::frond::inode::S_IFREG;
    let (_disk, fs) = fresh(4096, 8 << 20);
    let root = fs.root_ino();
    let f = fs.create(root, b"log", S_IFREG, 0, 0).unwrap();
    let before = fs.statfs().unwrap().avail;
    for b in 0..100 {
        assert_eq!(fs.reserve_delalloc(f, b, 1, Fork::Data), Ok(1));
    }
    // 100 data blocks plus one extent's indirect reservation (2 for an inline extent map).
    assert_eq!(fs.state.lock().delalloc_reserved, 102);
    assert_eq!(fs.statfs().unwrap().avail, before - 102);
    // A hole in the middle splits the extent: the right part has no metadata reservation of
    // its own (the reserve pool covers it at writeback).
    fs.punch_delalloc(f, 50, 10, Fork::Data).unwrap();
    assert_eq!(fs.state.lock().delalloc_reserved, 92);
    fs.punch_delalloc(f, 0, 100, Fork::Data).unwrap();
    assert_eq!(fs.state.lock().delalloc_reserved, 0);
    assert_eq!(fs.statfs().unwrap().avail, before);
}

/// More seeds for a local soak: FROND_SEEDS=n (default 1), FROND_BS (default 1024).
#[test]
fn alloc_free_more_seeds() {
    let bs = std::env::var("FROND_BS").ok().and_then(|v| v.parse().ok()).unwrap_or(1024u32);
    for s in 0..std::env::var("FROND_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1u64) {
        property(bs, 4, 1500, 0xA110_1000 + s);
    }
}
