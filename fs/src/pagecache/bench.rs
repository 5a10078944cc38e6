//! Page-cache benchmarks: XArray against `BTreeMap`, and the per-folio memory overhead.
//!
//! [`run`] returns `(name, value, unit)` rows and needs only a clock, so the host (`cargo xtask
//! bench`) and the kernel can both call it. Not part of the test run (a smoke test runs a tiny
//! size only to check the rows are produced).
//!
//! What is measured, at 1 Mi entries (dense indices `0..2^20`: a 4 GiB file of 4 KiB folios):
//!
//! - `xarray_store_ns`: inserting every index in a random order (order-0 entries; the entries'
//!   `Arc`s are built beforehand), per entry.
//! - `xarray_lookup_ns`: `load` of every index in another random order, per lookup.
//! - `xarray_marked_walk_ns`: with a random eighth of the entries marked, a full walk of the
//!   marked entries, per marked entry. The `BTreeMap` counterpart keeps the mark in the value
//!   and filters a full iteration (a BTreeMap has no per-subtree summaries).
//!   `xarray_sparse_marked_walk_ns`: the same with a random 1/1024th marked (a few dirty
//!   folios in a large cached file), where the per-node summaries skip unmarked subtrees.
//! - each `<name>_vs_btreemap`: the XArray figure over the `BTreeMap<u64, Arc<_>>` figure.
//! - `pagecache_bytes_per_folio_4k` / `_64k`: everything a cached folio costs besides its
//!   data, with 4 KiB blocks: the `Arc` header and `Folio` struct (flags, index, memory
//!   descriptor, per-block counters, LRU links, back-references), the per-block bitmap's heap
//!   words, and its share of XArray nodes in a densely populated mapping (4096 folios).
//!
//! Locking: none (private structures on the caller's thread). Linux <-> here: no counterpart;
//! the figures to compare with are Linux's 64-byte `struct page` per 4 KiB and ~9 bytes of
//! `xa_node` per slot.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;

use super::block_state::BlockState;
use super::folio::Folio;
use super::xarray::{Mark, XArray};
use crate::platform::{Platform, PAGE_SIZE};

/// One benchmark result: name, value, unit.
pub type BenchRow = (&'static str, f64, &'static str);

/// Entries used by [`run`].
pub const BENCH_ENTRIES: usize = 1 << 20;

/// Runs every page-cache benchmark at [`BENCH_ENTRIES`] entries.
pub fn run(clock: &dyn Platform) -> Vec<BenchRow> {
    run_with(clock, BENCH_ENTRIES)
}

/// Runs every page-cache benchmark at `entries` entries (at least 8).
pub fn run_with(clock: &dyn Platform, entries: usize) -> Vec<BenchRow> {
    let n = entries.max(8);
    let mut rows = Vec::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let store_order = permutation(n, &mut rng);
    let lookup_order = permutation(n, &mut rng);
    let values: Vec<Arc<u64>> = (0..n as u64).map(Arc::new).collect();

    // Store.
    let mut xa: XArray<u64> = XArray::new();
    let t = clock.now_ns();
    for &k in &store_order {
        let _ = xa.insert(k, 0, values[k as usize].clone());
    }
    let xa_store = per(clock.now_ns() - t, n);
    let mut map: BTreeMap<u64, Arc<u64>> = BTreeMap::new();
    let t = clock.now_ns();
    for &k in &store_order {
        map.insert(k, values[k as usize].clone());
    }
    let map_store = per(clock.now_ns() - t, n);

    // Lookup.
    let t = clock.now_ns();
    let mut sum = 0u64;
    for &k in &lookup_order {
        sum = sum.wrapping_add(xa.load(black_box(k)).map_or(0, |v| *v));
    }
    black_box(sum);
    let xa_lookup = per(clock.now_ns() - t, n);
    let t = clock.now_ns();
    let mut sum = 0u64;
    for &k in &lookup_order {
        sum = sum.wrapping_add(map.get(&black_box(k)).map_or(0, |v| **v));
    }
    black_box(sum);
    let map_lookup = per(clock.now_ns() - t, n);

    // Marked walks: a random eighth marked DIRTY, a random 1/1024th marked TOWRITE.
    let mut marked_map: BTreeMap<u64, (Arc<u64>, u8)> = BTreeMap::new();
    let (mut dense, mut sparse) = (0usize, 0usize);
    for (&k, v) in &map {
        let r = rng.next();
        let mut bits = 0u8;
        if r.is_multiple_of(8) {
            xa.set_mark(k, Mark::Dirty);
            dense += 1;
            bits |= 1;
        }
        if (r >> 8).is_multiple_of(1024) {
            xa.set_mark(k, Mark::Towrite);
            sparse += 1;
            bits |= 2;
        }
        marked_map.insert(k, (v.clone(), bits));
    }
    let walk = |mark: Mark, bit: u8, count: usize| {
        let count = count.max(1);
        let t = clock.now_ns();
        let mut sum = 0u64;
        for f in xa.iter_marked(0, u64::MAX, mark) {
            sum = sum.wrapping_add(*f.get());
        }
        black_box(sum);
        let xa_ns = per(clock.now_ns() - t, count);
        let t = clock.now_ns();
        let mut sum = 0u64;
        for (_, (v, m)) in marked_map.range(0..) {
            if *m & bit != 0 {
                sum = sum.wrapping_add(**v);
            }
        }
        black_box(sum);
        (xa_ns, per(clock.now_ns() - t, count))
    };
    let (xa_walk, map_walk) = walk(Mark::Dirty, 1, dense);
    let (xa_sparse, map_sparse) = walk(Mark::Towrite, 2, sparse);

    rows.push(("xarray_store_ns", xa_store, "ns"));
    rows.push(("btreemap_store_ns", map_store, "ns"));
    rows.push(("xarray_store_ns_vs_btreemap", ratio(xa_store, map_store), "x"));
    rows.push(("xarray_lookup_ns", xa_lookup, "ns"));
    rows.push(("btreemap_lookup_ns", map_lookup, "ns"));
    rows.push(("xarray_lookup_ns_vs_btreemap", ratio(xa_lookup, map_lookup), "x"));
    rows.push(("xarray_marked_walk_ns", xa_walk, "ns"));
    rows.push(("btreemap_marked_walk_ns", map_walk, "ns"));
    rows.push(("xarray_marked_walk_ns_vs_btreemap", ratio(xa_walk, map_walk), "x"));
    rows.push(("xarray_sparse_marked_walk_ns", xa_sparse, "ns"));
    rows.push(("btreemap_sparse_marked_walk_ns", map_sparse, "ns"));
    rows.push(("xarray_sparse_marked_walk_ns_vs_btreemap", ratio(xa_sparse, map_sparse), "x"));
    rows.push(("xarray_bytes_per_entry", xa.memory_bytes() as f64 / n as f64, "bytes"));
    rows.push(("pagecache_bytes_per_folio_4k", folio_overhead_bytes(0, 4096, 4096), "bytes"));
    rows.push(("pagecache_bytes_per_folio_64k", folio_overhead_bytes(4, 4096, 4096), "bytes"));
    rows
}

/// Bytes a cached folio of `order` costs besides its data in a mapping of `block_size` blocks
/// (see the module docs), with the XArray share measured over `folios` contiguous folios.
pub fn folio_overhead_bytes(order: u32, block_size: usize, folios: u64) -> f64 {
    let folio = core::mem::size_of::<Folio>() + 2 * core::mem::size_of::<usize>();
    let blocks = (PAGE_SIZE << order) / block_size.max(1);
    let bitmap = BlockState::new(blocks.max(1)).heap_bytes();
    let folios = folios.max(1);
    let mut xa: XArray<u64> = XArray::new();
    let entry = Arc::new(0u64);
    for i in 0..folios {
        let _ = xa.insert(i << order, order, entry.clone());
    }
    let share = xa.memory_bytes() as f64 / folios as f64;
    (folio + bitmap) as f64 + share
}

fn per(ns: u64, n: usize) -> f64 {
    ns as f64 / n as f64
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// xorshift64*: the bench's own PRNG (no dependency).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `0..n` in a random order (Fisher-Yates).
fn permutation(n: usize, rng: &mut XorShift) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n as u64).collect();
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}
