//! Ordered search and iteration: "first entry (with mark M) covering an index at or after
//! `start`", and iterators built on it.
//!
//! A search descends from the root into the first slot at or after `start`; with a mark it
//! visits only slots whose summary bit is set, so unmarked subtrees cost one bit test each.
//! A multi-index entry that begins before `start` but covers it is found through the sibling
//! slot `start` lands in.
//!
//! The iterators remember the node the previous entry was found in and scan on from there;
//! they climb back to the root only when that node is exhausted, so a full walk costs one
//! descent per leaf rather than one per entry.
//!
//! Locking: an iterator borrows the XArray, so the owner's lock is held for the whole walk;
//! the page cache's walks copy references out in batches instead of holding it.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xa_find`, `xas_find`, `xas_find_marked` | [`XArray::find`](super::XArray::find), [`XArray::find_marked`](super::XArray::find_marked) |
//! | `xa_for_each_start`, `xa_for_each_marked` | [`Iter`] |

use alloc::sync::Arc;

use super::marks::Mark;
use super::node::{EntryRef, Node, Slot, NODE_SLOTS};
use super::XArray;

/// An entry found by a search: its first index, order and value.
pub struct Found<'a, T> {
    index: u64,
    order: u32,
    entry: EntryRef<'a, T>,
    node: &'a Node<T>,
    base: u64,
}

impl<'a, T> Found<'a, T> {
    /// First index the entry covers (aligned to `2^order`).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The entry covers `2^order` indices.
    pub fn order(&self) -> u32 {
        self.order
    }

    /// Number of indices covered.
    pub fn nr_indices(&self) -> u64 {
        1 << self.order
    }

    /// The entry.
    pub fn get(&self) -> &'a T {
        self.entry.get()
    }

    /// A new strong reference to the entry.
    pub fn to_arc(&self) -> Arc<T> {
        self.entry.to_arc()
    }

    /// The index after the entry's last, or `None` at the top of the index space.
    pub fn next_index(&self) -> Option<u64> {
        self.index.checked_add(self.nr_indices())
    }
}

/// True when the node at `base` covers `index`.
fn node_covers<T>(node: &Node<T>, base: u64, index: u64) -> bool {
    index >= base && ((index - base) >> node.shift()) < NODE_SLOTS as u64
}

fn found<'a, T>(node: &'a Node<T>, base: u64, canonical: usize) -> Option<Found<'a, T>> {
    let entry = node.entry(canonical)?;
    let span = node.span(canonical);
    Some(Found {
        index: base + ((canonical as u64) << node.shift()),
        order: node.shift() + span.trailing_zeros(),
        entry,
        node,
        base,
    })
}

fn marked(node: &Node<impl Sized>, mark: Option<Mark>, offset: usize) -> bool {
    mark.is_none_or(|m| node.marks[m.bit()] & (1 << offset) != 0)
}

/// The first entry (with `mark`, if given) below `node` (at `base`) covering an index at or
/// after `start`. `start` must not lie past the node's range. `boundary` says `start` is known
/// not to fall inside a multi-index entry (it follows the previous entry found), which saves
/// reading the slot `start` lands in.
pub(super) fn find_in<'a, T>(
    node: &'a Node<T>,
    base: u64,
    start: u64,
    mark: Option<Mark>,
    boundary: bool,
) -> Option<Found<'a, T>> {
    let shift = node.shift();
    let first = if start <= base { 0 } else { ((start - base) >> shift) as usize };
    if first >= NODE_SLOTS {
        return None;
    }
    // A multi-index entry beginning before `start` may cover it: its canonical slot is before
    // `first` (and, when searching a mark, carries that mark).
    let earlier = match mark {
        Some(m) => node.marks[m.bit()] & ((1u64 << first) - 1) != 0,
        None => first > 0,
    };
    if !boundary && earlier {
        if let Slot::Sibling(canonical) = node.slot(first) {
            if marked(node, mark, canonical) {
                return found(node, base, canonical);
            }
        }
    }
    let child_base = |i: usize| base + ((i as u64) << shift);
    match mark {
        Some(m) => {
            let mut bits = node.marks[m.bit()] & (!0u64 << first);
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                match node.slot(i) {
                    Slot::Entry(_) => return found(node, base, i),
                    Slot::Node(child) => {
                        let cb = child_base(i);
                        if let Some(f) = find_in(child, cb, start.max(cb), mark, boundary) {
                            return Some(f);
                        }
                    }
                    Slot::Sibling(_) | Slot::Empty => {
                        debug_assert!(false, "mark summary bit on slot {i} without an entry")
                    }
                }
                bits &= bits - 1;
            }
            None
        }
        None => {
            for i in first..NODE_SLOTS {
                match node.slot(i) {
                    Slot::Entry(_) => return found(node, base, i),
                    Slot::Node(child) => {
                        let cb = child_base(i);
                        if let Some(f) = find_in(child, cb, start.max(cb), mark, boundary) {
                            return Some(f);
                        }
                    }
                    Slot::Sibling(_) | Slot::Empty => {}
                }
            }
            None
        }
    }
}

/// Whether an entry below `node` (at `base`) covers an index in `[start, last]`: only the
/// slots of that range are read. `start` must not lie before `base`.
pub(super) fn any_in<T>(node: &Node<T>, base: u64, start: u64, last: u64) -> bool {
    let shift = node.shift();
    let first = ((start - base) >> shift) as usize;
    if first >= NODE_SLOTS {
        return false;
    }
    let end = ((last - base) >> shift).min(NODE_SLOTS as u64 - 1) as usize;
    (first..=end).any(|i| match node.slot(i) {
        Slot::Empty => false,
        // An entry, or a slot a multi-index entry covers.
        Slot::Entry(_) | Slot::Sibling(_) => true,
        Slot::Node(child) => {
            let cb = base + ((i as u64) << shift);
            any_in(child, cb, start.max(cb), last)
        }
    })
}

/// Entries in index order from a start index, optionally only those with a mark, and
/// optionally only those starting at or before a last index.
pub struct Iter<'a, T> {
    xa: &'a XArray<T>,
    next: Option<u64>,
    last: u64,
    mark: Option<Mark>,
    /// The node the previous entry came from, and its base index.
    hint: Option<(&'a Node<T>, u64)>,
    /// `next` follows an entry already returned (so it is an entry boundary).
    boundary: bool,
}

impl<'a, T> Iter<'a, T> {
    pub(super) fn new(xa: &'a XArray<T>, start: u64, last: u64, mark: Option<Mark>) -> Self {
        Self { xa, next: Some(start), last, mark, hint: None, boundary: false }
    }
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = Found<'a, T>;

    fn next(&mut self) -> Option<Found<'a, T>> {
        let start = self.next?;
        let mut hit = None;
        if let Some((node, base)) = self.hint {
            if node_covers(node, base, start) {
                hit = find_in(node, base, start, self.mark, self.boundary);
            }
        }
        let hit = match hit {
            Some(f) => Some(f),
            None => self.xa.search(start, self.mark, self.boundary),
        };
        match hit {
            Some(f) if f.index <= self.last => {
                self.next = f.next_index();
                self.hint = Some((f.node, f.base));
                self.boundary = true;
                Some(f)
            }
            _ => {
                self.next = None;
                None
            }
        }
    }
}
