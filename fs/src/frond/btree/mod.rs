//! The generic checksummed on-disk B+tree, used for every tree frond has: free space by block
//! and by size, reference counts, inode chunks, per-inode extent maps and directories.
//!
//! Owns the node format ([`node`]), lookups and ordered walks ([`search`]), insert/delete with
//! split, borrow and merge ([`modify`]), and the full structural check fsck runs ([`check`]).
//! A tree is a [`Tree`] value (its kind, owner and root block); operations take the
//! [`NodeStore`] that supplies cached, verified nodes and allocates and frees node blocks, so the
//! same code runs over the filesystem's buffer cache and over an in-memory store in tests.
//!
//! Keys are unsigned integers up to 128 bits (8 or 16 bytes on disk), unique per tree; values are
//! fixed-size byte strings. Interior entries are `(key, child)` where `key` is a lower bound of
//! every key in `child`'s subtree and is greater than every key of the previous child. Every node
//! but the root holds at least half its capacity. An empty tree has root 0.
//!
//! Robustness: every node is verified when it is read from disk (identity, owner, level, count,
//! key order, pointer range); descending checks that each child is exactly one level below its
//! parent (so no walk can loop) and that its keys lie within the parent's bounds; depth is capped
//! at [`node::MAX_LEVEL`]. Failures are `Corrupt` with the node and the reason.
//!
//! Lock order: nodes are buffer-cache blocks; see `buf`.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `struct xfs_btree_ops` per tree type | [`Spec`] (sizes + kind) |
//! | `xfs_btree_cur` with per-level path | recursion along the root-to-leaf path |
//! | `xfs_btree_insert` / `xfs_btree_delete` (split, lshift/rshift, join) | [`Tree::insert`] / [`Tree::delete`] |
//! | `xfs_btree_lookup(LE/GE/EQ)` + `xfs_btree_increment` | [`Tree::seek_le`] / [`Tree::seek_ge`] / [`Tree::get`] / [`Tree::walk`] |
//! | low keys updated on every change (`xfs_btree_updkeys`) | lower bounds, lowered only along the leftmost path |
//! | `xfs_btree_check_block` / scrub | `node::verify_node` on read / [`Tree::check`] |

pub mod check;
pub mod modify;
pub mod node;
pub mod search;

#[cfg(test)]
mod tests;

use super::buf::BufRef;
use super::format::{Corrupt, FResult};

/// Which tree a node belongs to (stored in every node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TreeKind {
    /// Free space by start block.
    FreeByBlock = 1,
    /// Free space by (length, start).
    FreeBySize = 2,
    /// Reference counts of shared extents (and CoW staging extents).
    Refcount = 3,
    /// Inode chunks.
    Inodes = 4,
    /// A file's data fork extent map.
    ExtentMap = 5,
    /// A directory's entries.
    Directory = 6,
    /// Trees built by tests.
    #[cfg(test)]
    Test = 7,
}

/// A tree type: kind, name (for messages) and record sizes.
#[derive(Debug)]
pub struct Spec {
    /// The kind stored in nodes.
    pub kind: TreeKind,
    /// Name used in corruption messages.
    pub name: &'static str,
    /// Key bytes (8 or 16).
    pub key_size: usize,
    /// Leaf value bytes.
    pub val_size: usize,
}

/// What a tree needs from the layer that holds its nodes.
pub trait NodeStore {
    /// Block size in bytes.
    fn block_size(&self) -> usize;
    /// Most records per node, or 0 for as many as fit.
    fn node_limit(&self) -> usize;
    /// The range of block numbers a child pointer may hold.
    fn ptr_range(&self) -> (u64, u64);
    /// Node `blk`, from cache or disk. On a disk read the store checks the common header
    /// (magic, CRC, self-address) and then runs `verify` on the bytes.
    fn read(&mut self, blk: u64, verify: &dyn Fn(&[u8]) -> Result<(), Corrupt>) -> FResult<BufRef>;
    /// Records that `buf` was modified (joins the running transaction).
    fn dirty(&mut self, buf: &BufRef);
    /// A new zeroed node block for a tree of `spec` (already dirty).
    fn alloc(&mut self, spec: &Spec) -> FResult<BufRef>;
    /// Gives a node block back.
    fn free(&mut self, spec: &Spec, blk: u64) -> FResult<()>;
}

/// One tree: its type, owner (inode number or 0) and root block (0 = empty).
#[derive(Clone, Copy, Debug)]
pub struct Tree {
    /// The tree type.
    pub spec: &'static Spec,
    /// The owner recorded in every node.
    pub owner: u64,
    /// The root node, 0 when the tree is empty.
    pub root: u64,
}

impl Tree {
    /// A tree of `spec` owned by `owner` rooted at `root`.
    pub fn new(spec: &'static Spec, owner: u64, root: u64) -> Self {
        Self { spec, owner, root }
    }

    /// Reads node `blk`, which must be at `expect_level` when given.
    pub(crate) fn node(&self, s: &mut dyn NodeStore, blk: u64, expect_level: Option<u16>) -> FResult<BufRef> {
        let (lo, hi) = s.ptr_range();
        let name = self.spec.name;
        if !(lo..hi).contains(&blk) {
            return Err(crate::frond_corrupt!(
                "{name} tree of owner {}: node pointer {blk} out of range",
                self.owner
            )
            .into());
        }
        let (spec, owner, limit) = (self.spec, self.owner, s.node_limit());
        let buf =
            s.read(blk, &|b| node::verify_node(b, blk, spec, owner, limit, &|p| (lo..hi).contains(&p)))?;
        if let Some(want) = expect_level {
            let got = node::level(&buf.data());
            if got != want {
                return Err(crate::frond_corrupt!(
                    "{name} node {blk}: level {got} where {want} was expected"
                )
                .into());
            }
        }
        Ok(buf)
    }

    /// Reads child `i` of interior node `parent` and checks it lies within the parent's bounds.
    pub(crate) fn descend(&self, s: &mut dyn NodeStore, parent: &BufRef, i: usize) -> FResult<BufRef> {
        let (blk, lvl, lo, hi) = {
            let p = parent.data();
            let lvl = node::level(&p);
            let g = node::Geo::new(self.spec, lvl, p.len(), s.node_limit());
            let n = node::nrecs(&p);
            let hi = (i + 1 < n).then(|| g.key(&p, i + 1));
            (g.child(&p, i), lvl, g.key(&p, i), hi)
        };
        let child = self.node(s, blk, Some(lvl - 1))?;
        {
            let c = child.data();
            let g = node::Geo::new(self.spec, lvl - 1, c.len(), s.node_limit());
            let n = node::nrecs(&c);
            let (first, last) = (g.key(&c, 0), g.key(&c, n - 1));
            if first < lo || hi.is_some_and(|h| last >= h) {
                return Err(crate::frond_corrupt!(
                    "{} node {blk}: keys outside the bounds its parent {} gives it",
                    self.spec.name,
                    parent.blkno()
                )
                .into());
            }
        }
        Ok(child)
    }

    /// Height of the tree (0 when empty, 1 for a single leaf).
    pub fn height(&self, s: &mut dyn NodeStore) -> FResult<u32> {
        if self.root == 0 {
            return Ok(0);
        }
        let r = self.node(s, self.root, None)?;
        let l = node::level(&r.data()) as u32;
        Ok(l + 1)
    }
}
