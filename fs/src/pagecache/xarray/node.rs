//! One 64-slot radix-tree node and the encoding of its slots.
//!
//! This is the only place in the XArray that uses `unsafe`: a slot is one machine word that
//! holds one of four things, told apart by its two low bits.
//!
//! | word | meaning |
//! |---|---|
//! | `0` | empty |
//! | `ptr`, low bits `00` | an entry: `Arc::<T>::into_raw` (the tree owns that strong reference) |
//! | `ptr \| 0b10` | a child node: `Box::<Node<T>>::into_raw` (the tree owns the box) |
//! | `(canonical << 2) \| 0b01` | a sibling: this slot belongs to the multi-index entry whose canonical slot is `canonical` in the same node |
//!
//! Entry pointers need two free low bits, so `T` must be aligned to at least 4 bytes; that is
//! checked at compile time where an entry is stored.
//!
//! The safe surface ([`Slot`], [`SlotMut`], [`Taken`]) hands out borrows tied to the node, so
//! the rest of the XArray is ordinary safe Rust.
//!
//! Locking: none here; the XArray's owner serialises (`&` to read, `&mut` to change).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `struct xa_node` (576 bytes: slots, marks, shift, offset, count, nr_values, parent, rcu) | [`Node`] (slots, marks, shift, count: no parent pointer, walks keep their own path) |
//! | internal entries (`xa_mk_node`, `xa_mk_sibling`) | tagged words as above |

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use super::marks::MARK_COUNT;

/// Index bits consumed per level.
pub(super) const NODE_SHIFT: u32 = 6;
/// Slots per node.
pub(super) const NODE_SLOTS: usize = 1 << NODE_SHIFT;
/// Mask of an index's slot offset within a node.
pub(super) const NODE_MASK: u64 = (NODE_SLOTS as u64) - 1;
/// The largest shift a node can have: its 64 slots then cover all 2^64 indices (only 16 used).
pub(super) const MAX_SHIFT: u32 = 60;

const TAG_MASK: usize = 0b11;
const TAG_ENTRY: usize = 0b00;
const TAG_SIBLING: usize = 0b01;
const TAG_NODE: usize = 0b10;

/// A radix-tree node: 64 slots, one summary bitmap per mark, the shift of its level.
pub(super) struct Node<T> {
    slots: [usize; NODE_SLOTS],
    /// Per mark: bit `i` set when slot `i` is a marked entry (canonical slot only) or a node
    /// with at least one marked entry below it.
    pub(super) marks: [u64; MARK_COUNT],
    /// log2 of the number of indices one slot covers.
    shift: u8,
    /// Non-empty slots (entries, siblings and nodes).
    count: u8,
    _owns: PhantomData<(Arc<T>, Box<Node<T>>)>,
}

/// A read-only view of one slot.
pub(super) enum Slot<'a, T> {
    Empty,
    /// Part of the multi-index entry whose canonical slot is the given offset.
    Sibling(usize),
    Entry(EntryRef<'a, T>),
    Node(&'a Node<T>),
}

/// A mutable view of one slot (only child nodes are handed out mutably).
pub(super) enum SlotMut<'a, T> {
    Empty,
    Sibling(usize),
    Entry,
    Node(&'a mut Node<T>),
}

/// What [`Node::take`] removed from a slot.
pub(super) enum Taken<T> {
    Empty,
    Sibling,
    Entry(Arc<T>),
    Node(Box<Node<T>>),
}

/// A borrowed entry: the `T` behind an `Arc` the tree owns.
pub(super) struct EntryRef<'a, T> {
    ptr: *const T,
    _node: PhantomData<&'a T>,
}

impl<'a, T> EntryRef<'a, T> {
    /// The entry.
    pub(super) fn get(&self) -> &'a T {
        // SAFETY: `ptr` came from `Arc::into_raw` and the tree holds that strong reference for
        // as long as the slot is borrowed (`'a` is tied to a borrow of the node).
        unsafe { &*self.ptr }
    }

    /// A new strong reference to the entry.
    pub(super) fn to_arc(&self) -> Arc<T> {
        // SAFETY: as in `get`: `ptr` is a live `Arc::into_raw` pointer owned by the tree. The
        // `ManuallyDrop` keeps the tree's reference count untouched; cloning adds ours.
        let owned = ManuallyDrop::new(unsafe { Arc::from_raw(self.ptr) });
        Arc::clone(&owned)
    }
}

impl<T> Node<T> {
    /// An empty node at `shift`.
    pub(super) fn new(shift: u32) -> Box<Self> {
        debug_assert!(shift <= MAX_SHIFT && shift.is_multiple_of(NODE_SHIFT));
        Box::new(Self {
            slots: [0; NODE_SLOTS],
            marks: [0; MARK_COUNT],
            shift: shift as u8,
            count: 0,
            _owns: PhantomData,
        })
    }

    pub(super) fn shift(&self) -> u32 {
        self.shift as u32
    }

    pub(super) fn count(&self) -> usize {
        self.count as usize
    }

    pub(super) fn is_empty_slot(&self, offset: usize) -> bool {
        self.slots[offset] == 0
    }

    /// The slot offset `index` falls in (the node must cover `index`).
    pub(super) fn offset_of(&self, index: u64) -> usize {
        ((index >> self.shift) & NODE_MASK) as usize
    }

    pub(super) fn slot(&self, offset: usize) -> Slot<'_, T> {
        let word = self.slots[offset];
        if word == 0 {
            return Slot::Empty;
        }
        match word & TAG_MASK {
            TAG_ENTRY => Slot::Entry(EntryRef { ptr: word as *const T, _node: PhantomData }),
            TAG_SIBLING => Slot::Sibling(word >> 2),
            // SAFETY: node words come from `Box::into_raw` in `put_node` and stay owned by this
            // slot until `take`; the shared borrow of `self` keeps them alive and unaliased by
            // any `&mut`.
            _ => Slot::Node(unsafe { &*((word & !TAG_MASK) as *const Node<T>) }),
        }
    }

    pub(super) fn slot_mut(&mut self, offset: usize) -> SlotMut<'_, T> {
        let word = self.slots[offset];
        if word == 0 {
            return SlotMut::Empty;
        }
        match word & TAG_MASK {
            TAG_ENTRY => SlotMut::Entry,
            TAG_SIBLING => SlotMut::Sibling(word >> 2),
            // SAFETY: as in `slot`, and the exclusive borrow of `self` makes this the only
            // reference to the child.
            _ => SlotMut::Node(unsafe { &mut *((word & !TAG_MASK) as *mut Node<T>) }),
        }
    }

    /// The entry whose canonical slot is `offset`, if that slot holds one.
    pub(super) fn entry(&self, offset: usize) -> Option<EntryRef<'_, T>> {
        match self.slot(offset) {
            Slot::Entry(e) => Some(e),
            _ => None,
        }
    }

    /// Number of slots of the entry whose canonical slot is `canonical` (1 + its siblings).
    pub(super) fn span(&self, canonical: usize) -> usize {
        let sibling = (canonical << 2) | TAG_SIBLING;
        1 + self.slots[canonical + 1..].iter().take_while(|&&w| w == sibling).count()
    }

    /// Stores an entry in an empty slot.
    pub(super) fn put_entry(&mut self, offset: usize, entry: Arc<T>) {
        const { assert!(core::mem::align_of::<T>() >= 4, "XArray entries need 4-byte alignment") };
        debug_assert_eq!(self.slots[offset], 0);
        let word = Arc::into_raw(entry) as usize;
        debug_assert_eq!(word & TAG_MASK, TAG_ENTRY);
        self.slots[offset] = word;
        self.count += 1;
    }

    /// Replaces the entry in canonical slot `offset`, returning the old one.
    pub(super) fn replace_entry(&mut self, offset: usize, entry: Arc<T>) -> Arc<T> {
        const { assert!(core::mem::align_of::<T>() >= 4, "XArray entries need 4-byte alignment") };
        let old = self.slots[offset];
        assert_eq!(old & TAG_MASK, TAG_ENTRY, "replace_entry on a non-entry slot");
        assert_ne!(old, 0, "replace_entry on an empty slot");
        self.slots[offset] = Arc::into_raw(entry) as usize;
        // SAFETY: `old` is a non-empty entry word: an `Arc::into_raw` pointer whose strong
        // reference the slot owned; ownership moves to the caller.
        unsafe { Arc::from_raw(old as *const T) }
    }

    /// Makes empty slot `offset` a sibling of the entry at `canonical`.
    pub(super) fn put_sibling(&mut self, offset: usize, canonical: usize) {
        debug_assert_eq!(self.slots[offset], 0);
        debug_assert!(canonical < offset);
        self.slots[offset] = (canonical << 2) | TAG_SIBLING;
        self.count += 1;
    }

    /// Stores a child node in an empty slot.
    pub(super) fn put_node(&mut self, offset: usize, node: Box<Node<T>>) {
        debug_assert_eq!(self.slots[offset], 0);
        let word = Box::into_raw(node) as usize;
        debug_assert_eq!(word & TAG_MASK, 0);
        self.slots[offset] = word | TAG_NODE;
        self.count += 1;
    }

    /// Empties slot `offset` and hands back what it owned. Mark bits are the caller's.
    pub(super) fn take(&mut self, offset: usize) -> Taken<T> {
        let word = core::mem::replace(&mut self.slots[offset], 0);
        if word == 0 {
            return Taken::Empty;
        }
        self.count -= 1;
        match word & TAG_MASK {
            // SAFETY: an entry word is an `Arc::into_raw` pointer owned by the slot, which no
            // longer refers to it.
            TAG_ENTRY => Taken::Entry(unsafe { Arc::from_raw(word as *const T) }),
            TAG_SIBLING => Taken::Sibling,
            // SAFETY: a node word is a `Box::into_raw` pointer owned by the slot, which no
            // longer refers to it.
            _ => Taken::Node(unsafe { Box::from_raw((word & !TAG_MASK) as *mut Node<T>) }),
        }
    }

    /// Counts the nodes of this subtree, this one included.
    #[cfg(test)]
    pub(super) fn subtree_nodes(&self) -> usize {
        1 + (0..NODE_SLOTS)
            .map(|i| match self.slot(i) {
                Slot::Node(child) => child.subtree_nodes(),
                _ => 0,
            })
            .sum::<usize>()
    }
}

impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        for offset in 0..NODE_SLOTS {
            // Entries drop their Arc; nodes drop recursively (depth <= 11).
            drop(self.take(offset));
        }
    }
}
