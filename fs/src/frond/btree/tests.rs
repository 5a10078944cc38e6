//! B+tree tests: a model-based property test against `BTreeMap` at several block sizes and node
//! limits, and corruption detection.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::node::{self, Geo};
use super::*;
use crate::frond::buf::Buf;
use crate::frond::format::{seal, Error};
use crate::frond::testutil::Rng;
use crate::Errno;

static TEST16: Spec = Spec { kind: TreeKind::Test, name: "test", key_size: 16, val_size: 16 };
static TEST8: Spec = Spec { kind: TreeKind::Test, name: "test", key_size: 8, val_size: 24 };

/// Nodes in memory; "disk reads" happen only after `drop_cache` (then every node is verified).
pub(crate) struct MemStore {
    bs: usize,
    limit: usize,
    disk: BTreeMap<u64, Vec<u8>>,
    cache: BTreeMap<u64, crate::frond::buf::BufRef>,
    next: u64,
    freed: alloc::collections::BTreeSet<u64>,
    pub reads: u64,
}

impl MemStore {
    pub(crate) fn new(bs: usize, limit: usize) -> Self {
        Self {
            bs,
            limit,
            disk: BTreeMap::new(),
            cache: BTreeMap::new(),
            next: 100,
            freed: Default::default(),
            reads: 0,
        }
    }

    /// Writes every cached node "to disk" (sealed) and empties the cache.
    fn drop_cache(&mut self) {
        for (b, buf) in core::mem::take(&mut self.cache) {
            let mut d = buf.data().to_vec();
            seal(&mut d);
            self.disk.insert(b, d);
        }
    }

    fn live(&self) -> usize {
        (self.next - 100) as usize - self.freed.len()
    }
}

impl NodeStore for MemStore {
    fn block_size(&self) -> usize {
        self.bs
    }
    fn node_limit(&self) -> usize {
        self.limit
    }
    fn ptr_range(&self) -> (u64, u64) {
        (100, 1 << 40)
    }
    fn read(
        &mut self,
        blk: u64,
        verify: &dyn Fn(&[u8]) -> Result<(), crate::frond::format::Corrupt>,
    ) -> FResult<BufRef> {
        if let Some(b) = self.cache.get(&blk) {
            return Ok(b.clone());
        }
        let d = self.disk.get(&blk).cloned().unwrap_or_else(|| alloc::vec![0; self.bs]);
        self.reads += 1;
        crate::frond::format::verify_header(&d, crate::frond::format::MAGIC_BTREE, blk, "test")?;
        verify(&d)?;
        let b = Arc::new(Buf::for_test(blk, d));
        self.cache.insert(blk, b.clone());
        Ok(b)
    }
    fn dirty(&mut self, _buf: &BufRef) {}
    fn alloc(&mut self, _spec: &Spec) -> FResult<BufRef> {
        let blk = self.freed.pop_first().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        let b = Arc::new(Buf::for_test(blk, alloc::vec![0; self.bs]));
        self.cache.insert(blk, b.clone());
        Ok(b)
    }
    fn free(&mut self, _spec: &Spec, blk: u64) -> FResult<()> {
        assert!(self.freed.insert(blk), "double free of node {blk}");
        self.cache.remove(&blk);
        self.disk.remove(&blk);
        Ok(())
    }
}

fn val(k: u128, salt: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&(k as u64 ^ salt).to_le_bytes());
    v[8..].copy_from_slice(&salt.to_le_bytes());
    v
}

fn check_against(t: &Tree, s: &mut MemStore, model: &BTreeMap<u128, [u8; 16]>, seed: u64) {
    let mut recs = Vec::new();
    let mut nodes = 0;
    let st = t
        .check(s, &mut |_| nodes += 1, &mut |k, v| recs.push((k, v.to_vec())))
        .unwrap_or_else(|e| panic!("seed {seed:#x}: check failed: {e}"));
    let want: Vec<(u128, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.to_vec())).collect();
    assert!(recs == want, "seed {seed:#x}: tree contents differ from the model");
    assert_eq!(st.records as usize, model.len(), "seed {seed:#x}");
    assert_eq!(nodes, s.live(), "seed {seed:#x}: leaked or lost nodes");
}

/// Random inserts, deletes, updates, point lookups, LE/GE seeks and range walks, compared with
/// a BTreeMap after every operation (lookups) and periodically (full check).
fn property(bs: usize, limit: usize, ops: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut s = MemStore::new(bs, limit);
    let mut t = Tree::new(&TEST16, 0, 0);
    let mut model: BTreeMap<u128, [u8; 16]> = BTreeMap::new();
    // Fewer distinct keys for big blocks keeps the image (and checksumming it) small.
    let space = (ops as u64 / 3).min(30_000 * 1024 / bs as u64).max(64);
    for op in 0..ops {
        // Keys use both halves of the 128-bit key so 16-byte key handling is exercised.
        let k = ((rng.below(space) as u128) << 64) | rng.below(4) as u128;
        let ctx = || alloc::format!("seed {seed:#x} op {op} bs {bs} limit {limit}");
        match rng.below(10) {
            0..=3 => {
                let v = val(k, op as u64);
                let r = t.insert(&mut s, k, &v);
                match model.entry(k) {
                    alloc::collections::btree_map::Entry::Occupied(_) => {
                        assert_eq!(r, Err(Error::Errno(Errno::EEXIST)), "{}", ctx())
                    }
                    alloc::collections::btree_map::Entry::Vacant(e) => {
                        r.unwrap_or_else(|e| panic!("{}: {e}", ctx()));
                        e.insert(v);
                    }
                }
            }
            4..=6 => {
                let r = t.delete(&mut s, k);
                match model.remove(&k) {
                    Some(v) => assert_eq!(r.unwrap(), v.to_vec(), "{}", ctx()),
                    None => assert_eq!(r, Err(Error::Errno(Errno::ENOENT)), "{}", ctx()),
                }
            }
            7 => {
                let v = val(k, !(op as u64));
                let r = t.update(&mut s, k, &v);
                if let Some(m) = model.get_mut(&k) {
                    r.unwrap();
                    *m = v;
                } else {
                    assert_eq!(r, Err(Error::Errno(Errno::ENOENT)), "{}", ctx());
                }
            }
            8 => {
                let le = t.seek_le(&mut s, k).unwrap();
                let want = model.range(..=k).next_back().map(|(a, b)| (*a, b.to_vec()));
                assert_eq!(le, want, "{} seek_le", ctx());
                let ge = t.seek_ge(&mut s, k).unwrap();
                let want = model.range(k..).next().map(|(a, b)| (*a, b.to_vec()));
                assert_eq!(ge, want, "{} seek_ge", ctx());
                assert_eq!(t.get(&mut s, k).unwrap(), model.get(&k).map(|v| v.to_vec()), "{}", ctx());
            }
            _ => {
                let n = rng.below(20) as usize;
                let mut got = Vec::new();
                t.walk(&mut s, k, &mut |key, _| {
                    got.push(key);
                    Ok(got.len() < n)
                })
                .unwrap();
                let want: Vec<u128> = model.range(k..).map(|(a, _)| *a).take(n.max(1)).collect();
                assert_eq!(got, want, "{} walk", ctx());
            }
        }
        if op % 10_000 == 9_999 {
            check_against(&t, &mut s, &model, seed);
        }
        if op == ops / 2 && bs <= 4096 {
            // Round-trip through "disk": every node is verified on the way back in.
            s.drop_cache();
        }
    }
    s.drop_cache();
    check_against(&t, &mut s, &model, seed);
    // Drain: deleting everything frees every node.
    let keys: Vec<u128> = model.keys().copied().collect();
    for k in keys {
        t.delete(&mut s, k).unwrap();
    }
    assert_eq!((t.root, s.live()), (0, 0), "seed {seed:#x}: drained tree holds nodes");
}

// 200k operations in all (100k at 1 KiB), with small node limits for deep trees.
#[test]
fn property_small_nodes_1k() {
    property(1024, 4, 100_000, 0x5EED_0001);
}

#[test]
fn property_small_nodes_4k() {
    property(4096, 5, 50_000, 0x5EED_0002);
}

#[test]
fn property_small_nodes_64k() {
    property(65536, 6, 50_000, 0x5EED_0003);
}

#[test]
fn property_natural_node_sizes() {
    property(1024, 0, 20_000, 0x5EED_0004);
    property(4096, 0, 10_000, 0x5EED_0005);
    property(65536, 0, 5_000, 0x5EED_0006);
}

#[test]
fn eight_byte_keys_and_destroy() {
    let mut s = MemStore::new(1024, 0);
    let mut t = Tree::new(&TEST8, 9, 0);
    for k in 0..2000u128 {
        t.insert(&mut s, k * 3, &[k as u8; 24]).unwrap();
    }
    assert_eq!(t.height(&mut s).unwrap(), 3);
    assert_eq!(t.seek_le(&mut s, 301).unwrap().unwrap().0, 300);
    assert_eq!(t.seek_ge(&mut s, 301).unwrap().unwrap().0, 303);
    assert_eq!(t.seek_ge(&mut s, 6000).unwrap(), None);
    assert_eq!(t.seek_le(&mut s, u128::MAX).unwrap().unwrap().0, 5997);
    t.destroy(&mut s).unwrap();
    assert_eq!((t.root, s.live()), (0, 0));
}

/// Builds a 3-level tree "on disk" and returns it with its store (cache dropped).
fn built() -> (Tree, MemStore) {
    let mut s = MemStore::new(1024, 4);
    let mut t = Tree::new(&TEST16, 0, 0);
    for k in 0..16u128 {
        t.insert(&mut s, k * 10, &val(k, 1)).unwrap();
    }
    assert_eq!(t.height(&mut s).unwrap(), 3);
    s.drop_cache();
    (t, s)
}

fn corrupt_msg(t: &Tree, s: &mut MemStore) -> alloc::string::String {
    match t.check(s, &mut |_| {}, &mut |_, _| {}) {
        Err(Error::Corrupt(c)) => c.0,
        other => panic!("corruption not detected: {other:?}"),
    }
}

fn edit(s: &mut MemStore, blk: u64, f: impl FnOnce(&mut Vec<u8>)) {
    let d = s.disk.get_mut(&blk).unwrap();
    f(d);
    seal(d);
}

#[test]
fn corrupt_nodes_are_detected_with_reasons() {
    let g_int = Geo::new(&TEST16, 1, 1024, 4);
    let g_leaf = Geo::new(&TEST16, 0, 1024, 4);
    // Bad checksum.
    let (t, mut s) = built();
    s.disk.get_mut(&t.root).unwrap()[500] ^= 1;
    assert_eq!(corrupt_msg(&t, &mut s), alloc::format!("test block {}: checksum mismatch", t.root));
    // Keys out of order in a leaf.
    let (t, mut s) = built();
    let leaf = *s.disk.iter().find(|(_, d)| node::level(d) == 0).unwrap().0;
    edit(&mut s, leaf, |d| {
        let k = g_leaf.key(d, 0);
        g_leaf.set_key(d, 1, k);
    });
    assert_eq!(corrupt_msg(&t, &mut s), alloc::format!("test node {leaf}: keys out of order at record 1"));
    // Wrong level under the root.
    let (t, mut s) = built();
    let child = g_int.child(&s.disk[&t.root], 0);
    edit(&mut s, child, |d| crate::frond::format::put16(d, 26, 0));
    let m = corrupt_msg(&t, &mut s);
    assert_eq!(m, alloc::format!("test node {child}: level 0 where 1 was expected"));
    // Record count beyond capacity.
    let (t, mut s) = built();
    edit(&mut s, t.root, |d| node::set_nrecs(d, 9));
    assert_eq!(corrupt_msg(&t, &mut s), alloc::format!("test node {}: 9 records (capacity 4)", t.root));
    // A cycle: a child pointer back to the root is caught by the level rule; a pointer to a
    // sibling subtree twice is caught as a node reachable twice.
    let (t, mut s) = built();
    let first_level1 = g_int.child(&s.disk[&t.root], 0);
    edit(&mut s, first_level1, |d| {
        let root = t.root;
        let o = 32 + 16;
        crate::frond::format::put64(d, o, root);
    });
    assert_eq!(corrupt_msg(&t, &mut s), alloc::format!("test node {}: level 2 where 0 was expected", t.root));
    let (t, mut s) = built();
    let (a, b) = (g_int.child(&s.disk[&t.root], 0), g_int.child(&s.disk[&t.root], 1));
    let a0 = g_int.child(&s.disk[&a], 0);
    edit(&mut s, b, |d| crate::frond::format::put64(d, 32 + 16, a0));
    let m = corrupt_msg(&t, &mut s);
    assert!(m.contains("outside the bounds") || m.contains("reachable twice"), "{m}");
    // Out-of-range pointer.
    let (t, mut s) = built();
    edit(&mut s, t.root, |d| crate::frond::format::put64(d, 32 + 16, 5));
    assert_eq!(corrupt_msg(&t, &mut s), alloc::format!("test node {}: child pointer 5 out of range", t.root));
    // Lookups on a corrupt tree fail cleanly too.
    assert!(matches!(t.seek_ge(&mut s, 0), Err(Error::Corrupt(_))));
}

#[test]
fn property_three_record_nodes() {
    property(1024, 3, 20_000, 0x5EED_0007);
}
