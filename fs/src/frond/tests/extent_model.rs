//! Extent operations against a simple model: per file block a state and a disk block, per disk
//! block the number of files mapping it. Every answer of `map` is compared with the model, new
//! blocks are checked never to be in use already, and fsck checks reference counts and space
//! accounting at the end.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::*;
use crate::frond::engine::{Fork, MapKind};
use crate::frond::inode::S_IFREG;
use crate::frond::testutil::Rng;
use crate::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum B {
    Delalloc,
    Written(u64),
    Unwritten(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum C {
    Delalloc,
    Real(u64),
}

#[derive(Default, Clone)]
struct File {
    data: BTreeMap<u64, B>,
    cow: BTreeMap<u64, C>,
    size_blocks: u64,
}

struct Model {
    files: Vec<File>,
    refs: BTreeMap<u64, u32>,
}

impl Model {
    fn disk(b: &B) -> Option<u64> {
        match b {
            B::Written(d) | B::Unwritten(d) => Some(*d),
            B::Delalloc => None,
        }
    }

    fn in_use(&self, d: u64) -> bool {
        self.refs.contains_key(&d) || self.files.iter().any(|f| f.cow.values().any(|c| *c == C::Real(d)))
    }

    fn unref(&mut self, d: u64) {
        let c = self.refs.get_mut(&d).expect("unref of unmapped block");
        *c -= 1;
        if *c == 0 {
            self.refs.remove(&d);
        }
    }

    fn punch(&mut self, f: usize, fb: u64, n: u64) {
        let gone: Vec<(u64, B)> = self.files[f].data.range(fb..fb + n).map(|(&k, &v)| (k, v)).collect();
        for (k, b) in gone {
            self.files[f].data.remove(&k);
            if let Some(d) = Self::disk(&b) {
                self.unref(d);
            }
        }
        let cg: Vec<u64> = self.files[f].cow.range(fb..fb + n).map(|(&k, _)| k).collect();
        for k in cg {
            self.files[f].cow.remove(&k);
        }
    }
}

/// Compares the whole data and COW forks of every file with the model.
fn verify(fs: &Frond, inos: &[u64], m: &Model, span: u64, ctx: &str) {
    for (f, &ino) in inos.iter().enumerate() {
        for fork in [Fork::Data, Fork::Cow] {
            let mut fb = 0;
            while fb < span {
                let mp = fs.map(ino, fb, span - fb, fork).unwrap();
                assert!(mp.len >= 1 && mp.file_block == fb, "{ctx}: bad mapping {mp:?}");
                for i in 0..mp.len {
                    let b = fb + i;
                    let want = match fork {
                        Fork::Data => match m.files[f].data.get(&b) {
                            None => (MapKind::Hole, 0, false),
                            Some(B::Delalloc) => (MapKind::Delalloc, 0, false),
                            Some(B::Written(d)) => (MapKind::Mapped, *d, m.refs[d] > 1),
                            Some(B::Unwritten(d)) => (MapKind::Unwritten, *d, m.refs[d] > 1),
                        },
                        Fork::Cow => match m.files[f].cow.get(&b) {
                            None => (MapKind::Hole, 0, false),
                            Some(C::Delalloc) => (MapKind::Delalloc, 0, false),
                            Some(C::Real(d)) => (MapKind::Unwritten, *d, false),
                        },
                    };
                    let disk = if mp.disk_block == 0 { 0 } else { mp.disk_block + i };
                    let got = (mp.kind, disk, mp.shared);
                    assert_eq!(got, want, "{ctx}: file {f} {fork:?} block {b} (mapping {mp:?})");
                }
                fb += mp.len;
            }
        }
    }
}

/// Learns what the fs mapped in `[fb, fb + n)` of file `f` after an allocation and checks the
/// new blocks were not in use.
fn learn_data(fs: &Frond, ino: u64, m: &mut Model, f: usize, fb: u64, n: u64, ctx: &str) {
    let mut b = fb;
    while b < fb + n {
        let mp = fs.map(ino, b, fb + n - b, Fork::Data).unwrap();
        for i in 0..mp.len {
            let cur = m.files[f].data.get(&(b + i)).copied();
            let new = match mp.kind {
                MapKind::Mapped => Some(B::Written(mp.disk_block + i)),
                MapKind::Unwritten => Some(B::Unwritten(mp.disk_block + i)),
                MapKind::Delalloc => Some(B::Delalloc),
                MapKind::Hole | MapKind::Inline => None,
            };
            if new != cur {
                let d = Model::disk(new.as_ref().unwrap()).expect("allocation produced a real block");
                assert!(
                    matches!(cur, None | Some(B::Delalloc)),
                    "{ctx}: block {} changed from {cur:?}",
                    b + i
                );
                assert!(!m.in_use(d), "{ctx}: disk block {d} allocated twice");
                m.refs.insert(d, 1);
                m.files[f].data.insert(b + i, new.unwrap());
            }
        }
        b += mp.len;
    }
}

fn run(bs: u32, seed: u64, ops: usize) {
    let bytes = (8u64 << 20).max(1500 * bs as u64);
    let (disk, fs) = fresh_with(bs, bytes, MkfsOptions { node_cap: 6, ..Default::default() });
    let root = fs.root_ino();
    const NF: usize = 3;
    const SPAN: u64 = 4000;
    let inos: Vec<u64> = (0..NF)
        .map(|i| fs.create(root, alloc::format!("f{i}").as_bytes(), S_IFREG | 0o644, 0, 0).unwrap())
        .collect();
    let mut m = Model { files: alloc::vec![File::default(); NF], refs: BTreeMap::new() };
    for (f, &ino) in inos.iter().enumerate() {
        fs.set_size(ino, 300 * bs as u64).unwrap();
        m.files[f].size_blocks = 300;
    }
    let mut rng = Rng(seed);
    for op in 0..ops {
        let f = rng.below(NF as u64) as usize;
        let ino = inos[f];
        let fb = rng.below(300);
        let n = 1 + rng.below(24);
        let kind = rng.below(16);
        let ctx = alloc::format!("seed {seed:#x} bs {bs} op {op} kind {kind} file {f} fb {fb} n {n}");
        if std::env::var("FROND_TRACE").is_ok() {
            std::println!("{ctx}");
        }
        match kind {
            0 | 1 => {
                let r = fs.reserve_delalloc(ino, fb, n, Fork::Data);
                match m.files[f].data.get(&fb) {
                    Some(_) => assert_eq!(r, Err(Errno::EINVAL), "{ctx}"),
                    None => {
                        let got = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        let next = m.files[f].data.range(fb..).next().map_or(u64::MAX, |(&k, _)| k);
                        assert_eq!(got, n.min(next - fb), "{ctx}");
                        for b in fb..fb + got {
                            m.files[f].data.insert(b, B::Delalloc);
                        }
                    }
                }
            }
            2 => {
                fs.punch_delalloc(ino, fb, n, Fork::Data).unwrap();
                let del: Vec<u64> = m.files[f]
                    .data
                    .range(fb..fb + n)
                    .filter(|(_, b)| **b == B::Delalloc)
                    .map(|(&k, _)| k)
                    .collect();
                for k in del {
                    m.files[f].data.remove(&k);
                }
            }
            3 | 4 => {
                let unwritten = kind == 3;
                let before = m.files[f].data.get(&fb).copied();
                let mp =
                    fs.allocate(ino, fb, n, unwritten, Fork::Data).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(mp.file_block, fb, "{ctx}");
                match before {
                    Some(B::Written(_)) | Some(B::Unwritten(_)) => {}
                    _ => {
                        assert!(matches!(mp.kind, MapKind::Mapped | MapKind::Unwritten), "{ctx}: {mp:?}");
                        assert_eq!(mp.kind == MapKind::Unwritten, unwritten, "{ctx}");
                        learn_data(&fs, ino, &mut m, f, fb, n, &ctx);
                    }
                }
            }
            5 => {
                fs.convert_unwritten(ino, fb, n).unwrap();
                for b in fb..fb + n {
                    if let Some(B::Unwritten(d)) = m.files[f].data.get(&b).copied() {
                        m.files[f].data.insert(b, B::Written(d));
                    }
                }
            }
            6 => {
                fs.punch(ino, fb, n).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                m.punch(f, fb, n);
            }
            7 => {
                let g = rng.below(NF as u64) as usize;
                let to = rng.below(300);
                let r = fs.clone_extents(ino, fb, inos[g], to, n);
                let overlap = f == g && fb < to + n && to < fb + n;
                let delalloc = m.files[f].data.range(fb..fb + n).any(|(_, b)| *b == B::Delalloc);
                if overlap {
                    assert_eq!(r, Err(Errno::EINVAL), "{ctx}");
                } else if delalloc {
                    assert_eq!(r, Err(Errno::EBUSY), "{ctx}");
                } else {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let src: Vec<(u64, B)> =
                        m.files[f].data.range(fb..fb + n).map(|(&k, &v)| (k, v)).collect();
                    m.punch(g, to, n);
                    for (k, b) in src {
                        let d = Model::disk(&b).unwrap();
                        *m.refs.get_mut(&d).unwrap() += 1;
                        m.files[g].data.insert(to + (k - fb), b);
                    }
                }
            }
            8 => {
                fs.cow_prepare(ino, fb, n).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                for b in fb..fb + n {
                    let shared =
                        m.files[f].data.get(&b).and_then(Model::disk).is_some_and(|d| m.refs[&d] > 1);
                    let mp = fs.map(ino, b, 1, Fork::Cow).unwrap();
                    match (shared, m.files[f].cow.get(&b).copied()) {
                        (true, None | Some(C::Delalloc)) => {
                            assert_eq!(mp.kind, MapKind::Unwritten, "{ctx}: block {b} not staged");
                            assert!(!m.in_use(mp.disk_block), "{ctx}: staging block reused");
                            m.files[f].cow.insert(b, C::Real(mp.disk_block));
                        }
                        (false, None) => {
                            assert_eq!(mp.kind, MapKind::Hole, "{ctx}: block {b} staged needlessly")
                        }
                        _ => {}
                    }
                }
            }
            9 => {
                fs.cow_remap(ino, fb, n).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let staged: Vec<(u64, C)> = m.files[f].cow.range(fb..fb + n).map(|(&k, &v)| (k, v)).collect();
                for (k, c) in staged {
                    if let C::Real(d2) = c {
                        if let Some(old) = m.files[f].data.get(&k).copied() {
                            if let Some(d) = Model::disk(&old) {
                                m.unref(d);
                            }
                        }
                        m.files[f].data.insert(k, B::Written(d2));
                        m.refs.insert(d2, 1);
                        m.files[f].cow.remove(&k);
                    }
                }
            }
            10 => {
                fs.cow_cancel(ino, fb, n).unwrap();
                let cg: Vec<u64> = m.files[f].cow.range(fb..fb + n).map(|(&k, _)| k).collect();
                for k in cg {
                    m.files[f].cow.remove(&k);
                }
            }
            11 => {
                let size = m.files[f].size_blocks;
                let r = fs.collapse(ino, fb, n);
                if fb + n >= size {
                    assert_eq!(r, Err(Errno::EINVAL), "{ctx}");
                } else {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let cg: Vec<u64> = m.files[f].cow.range(fb..).map(|(&k, _)| k).collect();
                    for k in cg {
                        m.files[f].cow.remove(&k);
                    }
                    m.punch(f, fb, n);
                    let tail: Vec<(u64, B)> =
                        m.files[f].data.range(fb + n..).map(|(&k, &v)| (k, v)).collect();
                    for (k, b) in tail {
                        m.files[f].data.remove(&k);
                        m.files[f].data.insert(k - n, b);
                    }
                    m.files[f].size_blocks -= n;
                    assert_eq!(fs.stat(ino).unwrap().size, m.files[f].size_blocks * bs as u64, "{ctx}");
                }
            }
            12 => {
                let size = m.files[f].size_blocks;
                let r = fs.insert(ino, fb, n);
                if fb >= size {
                    assert_eq!(r, Err(Errno::EINVAL), "{ctx}");
                } else if size + n > 400 {
                    // Keep files within the checked span: undo by collapsing right away.
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    fs.collapse(ino, fb, n).unwrap_or_else(|e| panic!("{ctx}: undo: {e}"));
                    let cg: Vec<u64> = m.files[f].cow.range(fb..).map(|(&k, _)| k).collect();
                    for k in cg {
                        m.files[f].cow.remove(&k);
                    }
                } else {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    let cg: Vec<u64> = m.files[f].cow.range(fb..).map(|(&k, _)| k).collect();
                    for k in cg {
                        m.files[f].cow.remove(&k);
                    }
                    let tail: Vec<(u64, B)> =
                        m.files[f].data.range(fb..).rev().map(|(&k, &v)| (k, v)).collect();
                    for (k, b) in tail {
                        m.files[f].data.remove(&k);
                        m.files[f].data.insert(k + n, b);
                    }
                    m.files[f].size_blocks += n;
                }
            }
            14 => {
                let r = fs.reserve_delalloc(ino, fb, n, Fork::Cow);
                match m.files[f].cow.get(&fb) {
                    Some(_) => assert_eq!(r, Err(Errno::EINVAL), "{ctx}"),
                    None => {
                        let got = r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        let next = m.files[f].cow.range(fb..).next().map_or(u64::MAX, |(&k, _)| k);
                        assert_eq!(got, n.min(next - fb), "{ctx}");
                        for b in fb..fb + got {
                            m.files[f].cow.insert(b, C::Delalloc);
                        }
                    }
                }
            }
            15 => {
                let before = m.files[f].cow.get(&fb).copied();
                let mp = fs.allocate(ino, fb, n, true, Fork::Cow).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if !matches!(before, Some(C::Real(_))) {
                    let mut b = fb;
                    while b < fb + mp.len {
                        let c = fs.map(ino, b, fb + mp.len - b, Fork::Cow).unwrap();
                        assert_eq!(c.kind, MapKind::Unwritten, "{ctx}");
                        for i in 0..c.len {
                            let d = c.disk_block + i;
                            match m.files[f].cow.get(&(b + i)) {
                                Some(C::Real(known)) => assert_eq!(*known, d, "{ctx}"),
                                _ => {
                                    assert!(!m.in_use(d), "{ctx}: staging block {d} reused");
                                    m.files[f].cow.insert(b + i, C::Real(d));
                                }
                            }
                        }
                        b += c.len;
                    }
                }
            }
            _ => {
                // A point lookup in the middle of everything.
                let mp = fs.map(ino, fb, n, Fork::Data).unwrap();
                assert!(mp.len <= n && mp.len >= 1, "{ctx}");
            }
        }
        if op % 50 == 49 {
            verify(&fs, &inos, &m, SPAN, &ctx);
        }
    }
    verify(&fs, &inos, &m, SPAN, "final");
    // Delalloc does not survive a remount: write it back (allocate) first, then check on disk.
    for (f, &ino) in inos.iter().enumerate() {
        let dl: Vec<u64> =
            m.files[f].data.iter().filter(|(_, b)| **b == B::Delalloc).map(|(&k, _)| k).collect();
        for k in dl {
            if m.files[f].data.get(&k) == Some(&B::Delalloc) {
                fs.allocate(ino, k, SPAN, false, Fork::Data).unwrap();
                learn_data(&fs, ino, &mut m, f, k, SPAN - k, "writeback");
            }
        }
    }
    assert_clean(&fs);
    let fs = remount(&disk, fs);
    for f in m.files.iter_mut() {
        f.cow.clear();
    }
    verify(&fs, &inos, &m, SPAN, "after remount");
    assert_clean(&fs);
    // Everything freed: the space comes back exactly.
    let before = fs.statfs().unwrap().free;
    for &ino in &inos {
        fs.truncate(ino, 0).unwrap();
    }
    fs.checkpoint().unwrap();
    let after = fs.statfs().unwrap().free;
    let mapped: u64 = m.refs.len() as u64;
    assert!(after >= before + mapped, "seed {seed:#x}: freed {} of {mapped} blocks", after - before);
    assert_clean(&fs);
    assert_eq!(fs.state.lock().delalloc_reserved, 0, "seed {seed:#x}: delalloc reservation leaked");
}

#[test]
fn extent_ops_match_the_model_1k() {
    run(1024, 0xE47_0001, 1500);
}

#[test]
fn extent_ops_match_the_model_4k() {
    run(4096, 0xE47_0002, 1500);
}

#[test]
fn extent_ops_match_the_model_64k() {
    run(65536, 0xE47_0003, 300);
}

/// More seeds: FROND_SEEDS=n (default 2) and FROND_BS=block size (default 1024) for a longer
/// local soak.
#[test]
fn extent_ops_more_seeds() {
    let bs = std::env::var("FROND_BS").ok().and_then(|v| v.parse().ok()).unwrap_or(1024u32);
    for s in 0..std::env::var("FROND_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2u64) {
        run(bs, 0xE47_1000 + s, 800);
    }
}
