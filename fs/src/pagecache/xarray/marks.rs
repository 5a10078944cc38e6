//! The three XArray marks and their propagation through interior nodes.
//!
//! A mark belongs to an entry and lives on the entry's canonical slot (never on its sibling
//! slots). Each node keeps one 64-bit summary per mark: bit `i` is set exactly when slot `i`
//! is a marked entry, or a child node with any bit of that mark set. The summaries are kept
//! exact on every change (set, clear, erase), so a search for "the next entry with mark M at or
//! after index" descends only into subtrees whose bit is set and never backtracks more than one
//! level per unmarked prefix.
//!
//! Locking: none here; the XArray's owner serialises (`&mut` to change marks).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `XA_MARK_0/1/2`, `PAGECACHE_TAG_DIRTY/WRITEBACK/TOWRITE` | [`Mark::Dirty`], [`Mark::Writeback`], [`Mark::Towrite`] |
//! | `node->marks[]` bitmaps, `xas_set_mark` / `xas_clear_mark` walking up `node->parent` | the same bitmaps, updated by recursion on the way back up (no parent pointers) |

use super::node::{Node, SlotMut};

/// Number of marks.
pub const MARK_COUNT: usize = 3;

/// A mark on an XArray entry (Linux's page-cache tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mark {
    /// The folio is dirty (PAGECACHE_TAG_DIRTY).
    Dirty = 0,
    /// The folio is under writeback (PAGECACHE_TAG_WRITEBACK).
    Writeback = 1,
    /// Tagged for an integrity writeback pass (PAGECACHE_TAG_TOWRITE).
    Towrite = 2,
}

impl Mark {
    /// Every mark.
    pub const ALL: [Mark; MARK_COUNT] = [Mark::Dirty, Mark::Writeback, Mark::Towrite];

    pub(super) fn bit(self) -> usize {
        self as usize
    }
}

/// Sets `mark` on the entry covering `index` below `node`; returns false if there is none.
pub(super) fn set_in<T>(node: &mut Node<T>, index: u64, mark: Mark) -> bool {
    let offset = node.offset_of(index);
    let m = mark.bit();
    match node.slot_mut(offset) {
        SlotMut::Empty => false,
        SlotMut::Sibling(canonical) => {
            node.marks[m] |= 1 << canonical;
            true
        }
        SlotMut::Entry => {
            node.marks[m] |= 1 << offset;
            true
        }
        SlotMut::Node(child) => {
            if set_in(child, index, mark) {
                node.marks[m] |= 1 << offset;
                true
            } else {
                false
            }
        }
    }
}

/// Clears `mark` on the entry covering `index` below `node`, keeping the summaries exact.
/// Returns false if there is no entry.
pub(super) fn clear_in<T>(node: &mut Node<T>, index: u64, mark: Mark) -> bool {
    let offset = node.offset_of(index);
    let m = mark.bit();
    match node.slot_mut(offset) {
        SlotMut::Empty => false,
        SlotMut::Sibling(canonical) => {
            node.marks[m] &= !(1 << canonical);
            true
        }
        SlotMut::Entry => {
            node.marks[m] &= !(1 << offset);
            true
        }
        SlotMut::Node(child) => {
            let found = clear_in(child, index, mark);
            if child.marks[m] == 0 {
                node.marks[m] &= !(1 << offset);
            }
            found
        }
    }
}
