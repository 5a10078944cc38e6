//! XArray: a 64-way radix tree from `u64` indices to `Arc<T>` entries, with multi-index
//! entries and three marks.
//!
//! Owns: the tree nodes and one strong reference per stored entry. An entry of order `n`
//! covers the `2^n` indices starting at an index aligned to `2^n`; it is stored once, in the
//! node whose level it fits (`shift <= n < shift + 6`), as a canonical slot followed by
//! `2^(n - shift) - 1` sibling slots (see `node.rs` for the encoding). Marks live on canonical
//! slots and are summarised per node (see [`marks`]). Nodes are created on demand and freed as
//! soon as they become empty; the tree grows and shrinks in height as needed.
//!
//! Locking is the caller's: the XArray is a plain data structure (`&self` to read, `&mut self`
//! to change). The page cache keeps each mapping's XArray under that mapping's spin lock.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `xa_load` | [`XArray::load`] / [`XArray::get`] | `get` returns a new strong reference |
//! | `xa_store` / `xa_store_range` with `xas_set_order` | [`XArray::store`] | fails with `EEXIST` instead of overwriting a different entry |
//! | `xas_create_range` + conflict check in `__filemap_add_folio` | [`XArray::insert`] | |
//! | `xa_erase` | [`XArray::erase`] | erases the whole multi-index entry covering the index |
//! | `xa_set_mark` / `xa_clear_mark` / `xa_get_mark` | [`XArray::set_mark`] ... | |
//! | `xa_find` / `xas_find_marked` / `xa_for_each_*` | [`XArray::find`], [`XArray::find_marked`], [`XArray::iter_from`], [`XArray::iter_marked`] | |
//! | RCU readers, `xa_lock` | none: the owner's lock | no lock-free readers |
//! | head pointer holding a lone entry at index 0 | always a node | simpler; one node for tiny files |

pub mod iter;
pub mod marks;
mod node;

#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::sync::Arc;

use crate::{Errno, Result};
pub use iter::{Found, Iter};
pub use marks::{Mark, MARK_COUNT};
use node::{Node, Slot, SlotMut, Taken, MAX_SHIFT, NODE_SHIFT};

/// Largest order an entry may have.
pub const MAX_ORDER: u32 = 63;

/// A radix tree of `Arc<T>` entries. See the module documentation.
pub struct XArray<T> {
    root: Option<Box<Node<T>>>,
    /// Stored entries (a multi-index entry counts once).
    entries: usize,
    /// Allocated nodes.
    nodes: usize,
}

impl<T> Default for XArray<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// True when a node of `shift` rooted at index 0 covers `index`.
fn root_covers(shift: u32, index: u64) -> bool {
    shift >= MAX_SHIFT || index >> (shift + NODE_SHIFT) == 0
}

/// The shift of the level an entry of `order` lives on.
fn level_of(order: u32) -> u32 {
    order / NODE_SHIFT * NODE_SHIFT
}

impl<T> XArray<T> {
    /// An empty XArray. Allocates nothing.
    pub const fn new() -> Self {
        Self { root: None, entries: 0, nodes: 0 }
    }

    /// Number of entries (a multi-index entry counts once).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Number of tree nodes currently allocated.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Heap bytes used by the tree itself (nodes; not the entries).
    pub fn memory_bytes(&self) -> usize {
        self.nodes * core::mem::size_of::<Node<T>>()
    }

    /// Size of one node in bytes.
    pub const fn node_bytes() -> usize {
        core::mem::size_of::<Node<T>>()
    }

    /// The entry covering `index`.
    pub fn load(&self, index: u64) -> Option<&T> {
        let (node, canonical) = self.locate(index)?;
        node.entry(canonical).map(|e| e.get())
    }

    /// A new strong reference to the entry covering `index`.
    pub fn get(&self, index: u64) -> Option<Arc<T>> {
        let (node, canonical) = self.locate(index)?;
        node.entry(canonical).map(|e| e.to_arc())
    }

    /// First index and order of the entry covering `index`.
    pub fn entry_range(&self, index: u64) -> Option<(u64, u32)> {
        let (node, canonical) = self.locate(index)?;
        let shift = node.shift();
        let span = node.span(canonical) as u64;
        let first = (index >> shift & !node::NODE_MASK | canonical as u64) << shift;
        Some((first, shift + span.trailing_zeros()))
    }

    /// The node and canonical slot of the entry covering `index`.
    fn locate(&self, index: u64) -> Option<(&Node<T>, usize)> {
        let mut node = self.root.as_deref()?;
        if !root_covers(node.shift(), index) {
            return None;
        }
        loop {
            let offset = node.offset_of(index);
            match node.slot(offset) {
                Slot::Empty => return None,
                Slot::Sibling(canonical) => return Some((node, canonical)),
                Slot::Entry(_) => return Some((node, offset)),
                Slot::Node(child) => node = child,
            }
        }
    }

    /// Stores `entry` over the `2^order` indices at `index`, which must be aligned to
    /// `2^order` (`EINVAL` otherwise, or when `order > MAX_ORDER`). Fails with `EEXIST`, changing
    /// nothing, when any of those indices is occupied. On failure the entry is handed back.
    pub fn insert(
        &mut self,
        index: u64,
        order: u32,
        entry: Arc<T>,
    ) -> core::result::Result<(), (Errno, Arc<T>)> {
        if order > MAX_ORDER || index & ((1u64 << order) - 1) != 0 {
            return Err((Errno::EINVAL, entry));
        }
        if self.occupied(index, order) {
            return Err((Errno::EEXIST, entry));
        }
        let level = level_of(order);
        self.grow(index, level);
        let mut nodes = 0;
        let mut node = self.root.as_deref_mut().expect("grow made a root");
        while node.shift() > level {
            let offset = node.offset_of(index);
            if node.is_empty_slot(offset) {
                node.put_node(offset, Node::new(node.shift() - NODE_SHIFT));
                nodes += 1;
            }
            node = match node.slot_mut(offset) {
                SlotMut::Node(child) => child,
                _ => unreachable!("occupied() ruled out entries on the path"),
            };
        }
        let offset = node.offset_of(index);
        let span = 1usize << (order - level);
        node.put_entry(offset, entry);
        for sibling in offset + 1..offset + span {
            node.put_sibling(sibling, offset);
        }
        self.nodes += nodes;
        self.entries += 1;
        Ok(())
    }

    /// Stores `entry` over the `2^order` indices at `index`: replaces the entry that occupies
    /// exactly that range (keeping its marks) and returns it, or inserts into a free range.
    /// `EEXIST` when the range overlaps a different entry, `EINVAL` when misaligned.
    pub fn store(&mut self, index: u64, order: u32, entry: Arc<T>) -> Result<Option<Arc<T>>> {
        if self.entry_range(index) == Some((index, order)) {
            let root = self.root.as_deref_mut().expect("an entry implies a root");
            return Ok(Some(replace_in(root, index, entry)));
        }
        match self.insert(index, order, entry) {
            Ok(()) => Ok(None),
            Err((e, _entry)) => Err(e),
        }
    }

    /// True when any index in the aligned range `[index, index + 2^order)` is occupied.
    /// Only the slots of the range are looked at (not the next entry after it, wherever that is).
    pub fn occupied(&self, index: u64, order: u32) -> bool {
        let Some(root) = self.root.as_deref() else { return false };
        let last = index.saturating_add((1u64 << order) - 1);
        iter::any_in(root, 0, index, last)
    }

    /// Adds levels above the root until it covers `index` and reaches `level`.
    fn grow(&mut self, index: u64, level: u32) {
        let Some(mut root) = self.root.take() else {
            let mut shift = level;
            while !root_covers(shift, index) {
                shift += NODE_SHIFT;
            }
            self.root = Some(Node::new(shift));
            self.nodes += 1;
            return;
        };
        while !(root_covers(root.shift(), index) && root.shift() >= level) {
            let mut parent = Node::new(root.shift() + NODE_SHIFT);
            for m in 0..MARK_COUNT {
                if root.marks[m] != 0 {
                    parent.marks[m] |= 1;
                }
            }
            parent.put_node(0, root);
            self.nodes += 1;
            root = parent;
        }
        self.root = Some(root);
    }

    /// Removes levels above the root while the root holds only a child node in slot 0.
    fn shrink(&mut self) {
        while let Some(root) = self.root.as_deref_mut() {
            if root.count() == 0 {
                self.root = None;
                self.nodes -= 1;
                return;
            }
            if root.count() != 1 || !matches!(root.slot(0), Slot::Node(_)) {
                return;
            }
            let Taken::Node(child) = root.take(0) else { unreachable!("slot 0 is a node") };
            self.root = Some(child);
            self.nodes -= 1;
        }
    }

    /// Removes the entry covering `index` (all its indices and marks) and returns it.
    pub fn erase(&mut self, index: u64) -> Option<Arc<T>> {
        let root = self.root.as_deref_mut()?;
        if !root_covers(root.shift(), index) {
            return None;
        }
        let mut freed = 0;
        let entry = erase_in(root, index, &mut freed);
        self.nodes -= freed;
        if entry.is_some() {
            self.entries -= 1;
            self.shrink();
        }
        entry
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.root = None;
        self.entries = 0;
        self.nodes = 0;
    }

    /// Sets `mark` on the entry covering `index`; false when there is no entry.
    pub fn set_mark(&mut self, index: u64, mark: Mark) -> bool {
        match self.root.as_deref_mut() {
            Some(root) if root_covers(root.shift(), index) => marks::set_in(root, index, mark),
            _ => false,
        }
    }

    /// Clears `mark` on the entry covering `index`; false when there is no entry.
    pub fn clear_mark(&mut self, index: u64, mark: Mark) -> bool {
        match self.root.as_deref_mut() {
            Some(root) if root_covers(root.shift(), index) => marks::clear_in(root, index, mark),
            _ => false,
        }
    }

    /// Whether the entry covering `index` has `mark` (false when there is no entry).
    pub fn get_mark(&self, index: u64, mark: Mark) -> bool {
        self.locate(index).is_some_and(|(node, canonical)| node.marks[mark.bit()] & (1 << canonical) != 0)
    }

    /// True when any entry has `mark`.
    pub fn any_marked(&self, mark: Mark) -> bool {
        self.root.as_deref().is_some_and(|root| root.marks[mark.bit()] != 0)
    }

    pub(crate) fn search(&self, start: u64, mark: Option<Mark>, boundary: bool) -> Option<Found<'_, T>> {
        let root = self.root.as_deref()?;
        if !root_covers(root.shift(), start) {
            return None;
        }
        iter::find_in(root, 0, start, mark, boundary)
    }

    /// The first entry covering an index at or after `start` (it may begin before `start`).
    pub fn find(&self, start: u64) -> Option<Found<'_, T>> {
        self.search(start, None, false)
    }

    /// The first entry with `mark` covering an index at or after `start`.
    pub fn find_marked(&self, start: u64, mark: Mark) -> Option<Found<'_, T>> {
        self.search(start, Some(mark), false)
    }

    /// Entries covering indices in `[start, last]`, in index order.
    pub fn iter_range(&self, start: u64, last: u64) -> Iter<'_, T> {
        Iter::new(self, start, last, None)
    }

    /// Entries covering indices at or after `start`, in index order.
    pub fn iter_from(&self, start: u64) -> Iter<'_, T> {
        Iter::new(self, start, u64::MAX, None)
    }

    /// Entries with `mark` covering indices in `[start, last]`, in index order.
    pub fn iter_marked(&self, start: u64, last: u64, mark: Mark) -> Iter<'_, T> {
        Iter::new(self, start, last, Some(mark))
    }

    /// Sets mark `to` on every entry with mark `from` covering an index in `[start, last]`
    /// (Linux's `tag_pages_for_writeback` does this with DIRTY and TOWRITE). Tags at most
    /// `limit` entries; returns how many it tagged and, if it stopped early, where to resume.
    pub fn tag_range(
        &mut self,
        start: u64,
        last: u64,
        from: Mark,
        to: Mark,
        limit: usize,
    ) -> (usize, Option<u64>) {
        let mut next = Some(start);
        let mut tagged = 0;
        while let Some(at) = next {
            if tagged == limit {
                return (tagged, Some(at));
            }
            let Some(f) = self.find_marked(at, from) else { break };
            let (index, resume) = (f.index(), f.next_index());
            if index > last {
                break;
            }
            self.set_mark(index, to);
            tagged += 1;
            next = resume;
        }
        (tagged, None)
    }

    /// Debug check of every structural invariant; returns the number of entries found.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> usize {
        let Some(root) = self.root.as_deref() else {
            assert_eq!(self.nodes, 0);
            assert_eq!(self.entries, 0);
            return 0;
        };
        assert!(root.count() > 0, "empty root kept");
        assert_eq!(root.subtree_nodes(), self.nodes, "node count");
        let n = tests::check_node(root);
        assert_eq!(n, self.entries, "entry count");
        n
    }
}

fn replace_in<T>(node: &mut Node<T>, index: u64, entry: Arc<T>) -> Arc<T> {
    let offset = node.offset_of(index);
    match node.slot_mut(offset) {
        SlotMut::Node(child) => replace_in(child, index, entry),
        _ => node.replace_entry(offset, entry),
    }
}

/// Erases the entry covering `index` below `node`; counts freed nodes in `freed`.
fn erase_in<T>(node: &mut Node<T>, index: u64, freed: &mut usize) -> Option<Arc<T>> {
    let offset = node.offset_of(index);
    let canonical = match node.slot_mut(offset) {
        SlotMut::Empty => return None,
        SlotMut::Sibling(canonical) => canonical,
        SlotMut::Entry => offset,
        SlotMut::Node(child) => {
            let entry = erase_in(child, index, freed);
            let child_marks = child.marks;
            let child_empty = child.count() == 0;
            if child_empty {
                drop(node.take(offset));
                *freed += 1;
            }
            for (m, child_bits) in child_marks.iter().enumerate() {
                if child_empty || *child_bits == 0 {
                    node.marks[m] &= !(1 << offset);
                }
            }
            return entry;
        }
    };
    let span = node.span(canonical);
    for m in node.marks.iter_mut() {
        *m &= !(1 << canonical);
    }
    for sibling in canonical + 1..canonical + span {
        drop(node.take(sibling));
    }
    match node.take(canonical) {
        Taken::Entry(entry) => Some(entry),
        _ => None,
    }
}
