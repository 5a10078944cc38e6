//! XArray tests: invariant checker, unit tests, and a model test against a BTreeMap.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::node::{Node, Slot, NODE_SHIFT, NODE_SLOTS};
use super::*;
use crate::pagecache::testutil::Rng;

/// Checks one subtree; returns its entry count.
pub(super) fn check_node<T>(node: &Node<T>) -> usize {
    let mut entries = 0;
    let mut used = 0;
    let mut offset = 0;
    while offset < NODE_SLOTS {
        match node.slot(offset) {
            Slot::Empty => {
                for m in 0..MARK_COUNT {
                    assert_eq!(node.marks[m] & (1 << offset), 0, "mark on empty slot {offset}");
                }
                offset += 1;
            }
            Slot::Sibling(c) => panic!("orphan sibling of {c} at {offset}"),
            Slot::Entry(_) => {
                let span = node.span(offset);
                assert!(span.is_power_of_two(), "span {span}");
                assert_eq!(offset % span, 0, "misaligned multi-index entry");
                for s in offset + 1..offset + span {
                    for m in 0..MARK_COUNT {
                        assert_eq!(node.marks[m] & (1 << s), 0, "mark on sibling slot");
                    }
                }
                entries += 1;
                used += span;
                offset += span;
            }
            Slot::Node(child) => {
                assert_eq!(child.shift() + NODE_SHIFT, node.shift(), "child level");
                assert!(child.count() > 0, "empty child kept");
                for m in 0..MARK_COUNT {
                    let bit = node.marks[m] & (1 << offset) != 0;
                    assert_eq!(bit, child.marks[m] != 0, "summary of mark {m} at slot {offset}");
                }
                entries += check_node(child);
                used += 1;
                offset += 1;
            }
        }
    }
    assert_eq!(used, node.count(), "slot count");
    entries
}

#[derive(Debug)]
struct Item {
    id: u64,
    live: Arc<AtomicUsize>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

fn item(id: u64, live: &Arc<AtomicUsize>) -> Arc<Item> {
    live.fetch_add(1, Ordering::Relaxed);
    Arc::new(Item { id, live: live.clone() })
}

#[test]
fn multi_index_entry_covers_its_range_t1() {
    // §9 T1 at the XArray level: order 2 at index 4 covers 4..=7.
    let live = Arc::new(AtomicUsize::new(0));
    let mut xa = XArray::new();
    xa.insert(4, 2, item(1, &live)).map_err(|(e, _)| e).unwrap();
    for i in 4..8 {
        assert_eq!(xa.load(i).map(|x| x.id), Some(1), "index {i}");
        assert_eq!(xa.entry_range(i), Some((4, 2)));
    }
    assert!(xa.load(3).is_none() && xa.load(8).is_none());
    assert_eq!(xa.insert(6, 0, item(2, &live)).map_err(|(e, _)| e), Err(Errno::EEXIST));
    assert_eq!(xa.insert(5, 2, item(3, &live)).map_err(|(e, _)| e), Err(Errno::EINVAL));
    assert_eq!(xa.insert(0, 3, item(4, &live)).map_err(|(e, _)| e), Err(Errno::EEXIST));
    assert_eq!(xa.len(), 1);
    assert_eq!(live.load(Ordering::Relaxed), 1, "rejected entries are handed back and dropped");
    assert_eq!(xa.erase(6).map(|x| x.id), Some(1), "erase through a sibling index");
    assert!(xa.is_empty());
    assert_eq!(xa.nodes(), 0);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn tree_grows_and_shrinks() {
    let live = Arc::new(AtomicUsize::new(0));
    let mut xa = XArray::new();
    xa.insert(0, 0, item(0, &live)).map_err(|(e, _)| e).unwrap();
    assert_eq!(xa.nodes(), 1);
    xa.insert(u64::MAX, 0, item(1, &live)).map_err(|(e, _)| e).unwrap();
    // 11 levels to reach the top index, shared root.
    assert_eq!(xa.nodes(), 1 + 10 + 10, "old leaf + 10 levels above it + 10 down to MAX");
    assert_eq!(xa.check_invariants(), 2);
    assert_eq!(xa.erase(u64::MAX).map(|x| x.id), Some(1));
    assert_eq!(xa.nodes(), 1, "shrinks back to one leaf");
    xa.insert(1 << 63, 63, item(2, &live)).map_err(|(e, _)| e).unwrap();
    assert_eq!(xa.load(u64::MAX).map(|x| x.id), Some(2));
    assert_eq!(xa.entry_range(u64::MAX - 5), Some((1 << 63, 63)));
    xa.check_invariants();
    assert_eq!(xa.memory_bytes(), xa.nodes() * XArray::<Item>::node_bytes());
    drop(xa);
    assert_eq!(live.load(Ordering::Relaxed), 0, "drop frees every entry");
}

#[test]
fn marks_propagate_and_find_skips_unmarked() {
    let live = Arc::new(AtomicUsize::new(0));
    let mut xa = XArray::new();
    for i in 0..5000u64 {
        xa.insert(i, 0, item(i, &live)).map_err(|(e, _)| e).unwrap();
    }
    assert!(!xa.any_marked(Mark::Dirty));
    assert!(xa.set_mark(4321, Mark::Dirty));
    assert!(xa.set_mark(17, Mark::Towrite));
    assert!(!xa.set_mark(9999, Mark::Dirty), "no entry, no mark");
    assert_eq!(xa.find_marked(0, Mark::Dirty).map(|f| f.index()), Some(4321));
    assert_eq!(xa.find_marked(4322, Mark::Dirty).map(|f| f.index()), None);
    assert_eq!(xa.find_marked(0, Mark::Towrite).map(|f| f.index()), Some(17));
    assert!(xa.get_mark(4321, Mark::Dirty) && !xa.get_mark(4321, Mark::Writeback));
    xa.check_invariants();
    assert!(xa.clear_mark(4321, Mark::Dirty));
    assert!(!xa.any_marked(Mark::Dirty), "clearing the last mark clears the summaries up to the root");
    xa.check_invariants();
    let (tagged, resume) = xa.tag_range(0, u64::MAX, Mark::Towrite, Mark::Dirty, usize::MAX);
    assert_eq!((tagged, resume), (1, None));
    assert_eq!(xa.erase(17).map(|x| x.id), Some(17));
    assert!(!xa.any_marked(Mark::Dirty) && !xa.any_marked(Mark::Towrite), "erase clears marks");
}

#[test]
fn store_replaces_same_range_keeps_marks_and_rejects_overlap() {
    let live = Arc::new(AtomicUsize::new(0));
    let mut xa = XArray::new();
    assert!(xa.store(64, 6, item(1, &live)).unwrap().is_none());
    xa.set_mark(70, Mark::Writeback);
    let old = xa.store(64, 6, item(2, &live)).unwrap();
    assert_eq!(old.map(|o| o.id), Some(1));
    assert!(xa.get_mark(127, Mark::Writeback));
    assert_eq!(xa.load(100).map(|x| x.id), Some(2));
    assert_eq!(xa.store(64, 0, item(3, &live)).err(), Some(Errno::EEXIST));
    assert_eq!(xa.store(0, 7, item(4, &live)).err(), Some(Errno::EEXIST));
    assert_eq!(xa.store(1, 1, item(5, &live)).err(), Some(Errno::EINVAL));
    assert_eq!(xa.store(0, 64, item(6, &live)).err(), Some(Errno::EINVAL));
    xa.check_invariants();
}

#[test]
fn find_reports_entry_covering_start() {
    let live = Arc::new(AtomicUsize::new(0));
    let mut xa = XArray::new();
    xa.insert(512, 9, item(1, &live)).map_err(|(e, _)| e).unwrap();
    xa.insert(2048, 0, item(2, &live)).map_err(|(e, _)| e).unwrap();
    let f = xa.find(700).unwrap();
    assert_eq!((f.index(), f.order(), f.get().id), (512, 9, 1));
    let got: Vec<(u64, u32)> = xa.iter_from(0).map(|f| (f.index(), f.order())).collect();
    assert_eq!(got, [(512, 9), (2048, 0)]);
    let got: Vec<u64> = xa.iter_range(0, 1023).map(|f| f.index()).collect();
    assert_eq!(got, [512]);
    xa.set_mark(600, Mark::Dirty);
    assert_eq!(xa.find_marked(1000, Mark::Dirty).map(|f| f.index()), Some(512));
    assert_eq!(xa.find_marked(1024, Mark::Dirty).map(|f| f.index()), None);
}

/// The model: first index -> (order, id, marks).
type ModelEntry = (u32, u64, [bool; MARK_COUNT]);
type Model = BTreeMap<u64, ModelEntry>;

fn model_covering(model: &Model, index: u64) -> Option<(u64, u32, u64, [bool; MARK_COUNT])> {
    let (&k, &(order, id, marks)) = model.range(..=index).next_back()?;
    (index - k < (1u64 << order)).then_some((k, order, id, marks))
}

fn model_overlaps(model: &Model, index: u64, order: u32) -> bool {
    let last = index + ((1u64 << order) - 1);
    model_covering(model, index).is_some() || model.range(index..=last).next().is_some()
}

fn model_find(model: &Model, start: u64, mark: Option<Mark>) -> Option<(u64, u32, u64)> {
    let ok = |marks: &[bool; MARK_COUNT]| mark.is_none_or(|m| marks[m as usize]);
    if let Some((k, order, id, marks)) = model_covering(model, start) {
        if ok(&marks) {
            return Some((k, order, id));
        }
    }
    model.range(start..).find(|(_, (_, _, marks))| ok(marks)).map(|(&k, &(order, id, _))| (k, order, id))
}

/// Some entry of the model (near a random index), or none.
fn pick(model: &Model, rng: &mut Rng) -> Option<(u64, ModelEntry)> {
    let at = rng.below(1 << 16);
    model.range(at..).next().or_else(|| model.iter().next()).map(|(&k, &v)| (k, v))
}

fn random_order(rng: &mut Rng) -> u32 {
    match rng.below(100) {
        0..=69 => 0,
        70..=79 => 1 + rng.below(3) as u32,
        80..=89 => 4 + rng.below(5) as u32,
        90..=98 => 9 + rng.below(5) as u32,
        _ => 63,
    }
}

fn random_index(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..=96 => rng.below(1 << 16),
        _ => rng.next_u64(),
    }
}

#[test]
fn model_test_against_btreemap() {
    let seed = 0x5eed_0001_u64;
    println!("xarray model test seed = {seed:#x}");
    let mut rng = Rng::new(seed);
    let live = Arc::new(AtomicUsize::new(0));
    let mut xa: XArray<Item> = XArray::new();
    let mut model = Model::new();
    let mut next_id = 0u64;
    const OPS: usize = 120_000;
    for op in 0..OPS {
        let ctx = |what: &str| alloc::format!("seed {seed:#x} op {op}: {what}");
        match rng.below(100) {
            // insert (30%), sometimes deliberately misaligned
            0..=29 => {
                let order = random_order(&mut rng);
                let mut index = random_index(&mut rng);
                if order == 63 {
                    index &= 1 << 63;
                }
                if !rng.chance(5) {
                    index &= !((1u64 << order) - 1);
                }
                next_id += 1;
                let misaligned = index & ((1u64 << order) - 1) != 0;
                if !misaligned {
                    let overlaps = model_overlaps(&model, index, order);
                    assert_eq!(xa.occupied(index, order), overlaps, "{}", ctx("occupied"));
                }
                let expect = if misaligned {
                    Err(Errno::EINVAL)
                } else if model_overlaps(&model, index, order) {
                    Err(Errno::EEXIST)
                } else {
                    Ok(())
                };
                let got = xa.insert(index, order, item(next_id, &live)).map_err(|(e, _)| e);
                assert_eq!(got, expect, "{}", ctx("insert"));
                if got.is_ok() {
                    model.insert(index, (order, next_id, [false; MARK_COUNT]));
                }
            }
            // store: replace an existing entry's range or insert
            30..=34 => {
                let (index, order) = match pick(&model, &mut rng) {
                    Some((k, (o, _, _))) if rng.chance(70) => (k, o),
                    _ => {
                        let o = random_order(&mut rng);
                        (random_index(&mut rng) & !((1u64 << o) - 1) & if o == 63 { 1 << 63 } else { !0 }, o)
                    }
                };
                next_id += 1;
                let exact = model.get(&index).filter(|(o, _, _)| *o == order).copied();
                let got = xa.store(index, order, item(next_id, &live));
                match exact {
                    Some((_, old_id, marks)) => {
                        assert_eq!(
                            got.map(|o| o.map(|x| x.id)),
                            Ok(Some(old_id)),
                            "{}",
                            ctx("store replace")
                        );
                        model.insert(index, (order, next_id, marks));
                    }
                    None if model_overlaps(&model, index, order) => {
                        assert_eq!(got.err(), Some(Errno::EEXIST), "{}", ctx("store overlap"));
                    }
                    None => {
                        assert!(matches!(got, Ok(None)), "{}", ctx("store insert"));
                        model.insert(index, (order, next_id, [false; MARK_COUNT]));
                    }
                }
            }
            // erase (20%): half at a known entry (any of its indices), half random
            35..=54 => {
                let index = match pick(&model, &mut rng) {
                    Some((k, (o, _, _))) if rng.chance(50) => k + (rng.next_u64() & ((1u64 << o) - 1)),
                    _ => random_index(&mut rng),
                };
                let expect = model_covering(&model, index);
                let got = xa.erase(index);
                assert_eq!(got.as_ref().map(|x| x.id), expect.map(|e| e.2), "{}", ctx("erase"));
                if let Some((k, ..)) = expect {
                    model.remove(&k);
                }
            }
            // load
            55..=69 => {
                let index = random_index(&mut rng);
                let expect = model_covering(&model, index);
                assert_eq!(xa.load(index).map(|x| x.id), expect.map(|e| e.2), "{}", ctx("load"));
                assert_eq!(xa.entry_range(index), expect.map(|e| (e.0, e.1)), "{}", ctx("entry_range"));
            }
            // set / clear / get mark
            70..=84 => {
                let index = match pick(&model, &mut rng) {
                    Some((k, (o, _, _))) if rng.chance(80) => k + (rng.next_u64() & ((1u64 << o) - 1)),
                    _ => random_index(&mut rng),
                };
                let mark = Mark::ALL[rng.below(3) as usize];
                let covering = model_covering(&model, index);
                match rng.below(3) {
                    0 => {
                        assert_eq!(xa.set_mark(index, mark), covering.is_some(), "{}", ctx("set_mark"));
                        if let Some((k, ..)) = covering {
                            model.get_mut(&k).unwrap().2[mark as usize] = true;
                        }
                    }
                    1 => {
                        assert_eq!(xa.clear_mark(index, mark), covering.is_some(), "{}", ctx("clear_mark"));
                        if let Some((k, ..)) = covering {
                            model.get_mut(&k).unwrap().2[mark as usize] = false;
                        }
                    }
                    _ => {
                        let expect = covering.is_some_and(|c| c.3[mark as usize]);
                        assert_eq!(xa.get_mark(index, mark), expect, "{}", ctx("get_mark"));
                    }
                }
            }
            // find / find_marked
            85..=94 => {
                let start = random_index(&mut rng);
                let mark = if rng.chance(50) { None } else { Some(Mark::ALL[rng.below(3) as usize]) };
                let got = xa.search(start, mark, false).map(|f| (f.index(), f.order(), f.get().id));
                assert_eq!(got, model_find(&model, start, mark), "{}", ctx("find"));
            }
            // short iteration, marked or not
            95..=97 => {
                let start = random_index(&mut rng);
                let last = start.saturating_add(rng.below(1 << 14));
                let mark = if rng.chance(50) { None } else { Some(Mark::ALL[rng.below(3) as usize]) };
                let got: Vec<u64> = match mark {
                    Some(m) => xa.iter_marked(start, last, m).take(40).map(|f| f.get().id).collect(),
                    None => xa.iter_range(start, last).take(40).map(|f| f.get().id).collect(),
                };
                let mut expect = Vec::new();
                let mut at = Some(start);
                while let Some(s) = at {
                    if expect.len() == 40 {
                        break;
                    }
                    match model_find(&model, s, mark) {
                        Some((k, o, id)) if k <= last => {
                            expect.push(id);
                            at = k.checked_add(1u64 << o);
                        }
                        _ => break,
                    }
                }
                assert_eq!(got, expect, "{}", ctx("iterate"));
            }
            // tag DIRTY -> TOWRITE over a range
            _ => {
                let start = random_index(&mut rng);
                let last = start.saturating_add(rng.below(1 << 12));
                let (n, resume) = xa.tag_range(start, last, Mark::Dirty, Mark::Towrite, usize::MAX);
                assert_eq!(resume, None);
                let mut expect = 0;
                let first = model_covering(&model, start).map_or(start, |c| c.0);
                for (_, e) in model.range_mut(first..=last) {
                    if e.2[Mark::Dirty as usize] {
                        e.2[Mark::Towrite as usize] = true;
                        expect += 1;
                    }
                }
                assert_eq!(n, expect, "{}", ctx("tag_range"));
            }
        }
        if op % 5000 == 0 || op == OPS - 1 {
            assert_eq!(xa.check_invariants(), model.len(), "{}", ctx("invariants"));
            let all: Vec<(u64, u32, u64)> =
                xa.iter_from(0).map(|f| (f.index(), f.order(), f.get().id)).collect();
            let expect: Vec<(u64, u32, u64)> = model.iter().map(|(&k, &(o, id, _))| (k, o, id)).collect();
            assert_eq!(all, expect, "{}", ctx("full iteration"));
            for m in Mark::ALL {
                let got: Vec<u64> = xa.iter_marked(0, u64::MAX, m).map(|f| f.index()).collect();
                let expect: Vec<u64> =
                    model.iter().filter(|(_, v)| v.2[m as usize]).map(|(&k, _)| k).collect();
                assert_eq!(got, expect, "{}", ctx("marked iteration"));
            }
            assert_eq!(live.load(Ordering::Relaxed), model.len(), "{}", ctx("no leaked or lost entries"));
        }
    }
    let keys: Vec<u64> = model.keys().copied().collect();
    for k in keys {
        assert!(xa.erase(k).is_some());
    }
    assert_eq!(xa.nodes(), 0, "seed {seed:#x}: every node freed when empty");
    assert_eq!(xa.memory_bytes(), 0);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}
