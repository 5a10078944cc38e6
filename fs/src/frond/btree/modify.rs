//! Insert, update and delete, with node split, redistribution and merge.
//!
//! Nothing on disk changes before an operation knows it will succeed: a duplicate insert or a
//! delete of a missing key fails while descending, before any node is dirtied (the only change
//! made on the way down, lowering the leftmost bound, happens only for a key smaller than every
//! key in the tree, which cannot be a duplicate).
//!
//! Lock order: runs under the metadata lock; holds at most a parent and two children's buffer
//! locks at once, only ever taken by the metadata lock holder.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_btree_insrec` + `xfs_btree_split` | `Tree::insert` (split at half, rounded) |
//! | `xfs_btree_delrec` (lshift / rshift / join) | `Tree::delete` (redistribute or merge) |
//! | `xfs_btree_kill_root` / `xfs_btree_new_root` | root collapse / new root in `delete` / `insert` |

use alloc::vec::Vec;

use super::node::{init_node, level, nrecs, set_nrecs, Geo};
use super::{NodeStore, Tree};
use crate::frond::buf::BufRef;
use crate::frond::format::FResult;
use crate::Errno;

/// A split's result: the separator key and the new right node.
type Split = Option<(u128, u64)>;

impl Tree {
    fn geo_at(&self, s: &dyn NodeStore, lvl: u16) -> Geo {
        Geo::new(self.spec, lvl, s.block_size(), s.node_limit())
    }

    /// Inserts `(key, val)`; `EEXIST` when `key` is present.
    pub fn insert(&mut self, s: &mut dyn NodeStore, key: u128, val: &[u8]) -> FResult<()> {
        debug_assert_eq!(val.len(), self.spec.val_size);
        if self.root == 0 {
            let leaf = s.alloc(self.spec)?;
            let g = self.geo_at(s, 0);
            let mut b = leaf.data();
            init_node(&mut b, leaf.blkno(), self.spec, self.owner, 0);
            g.insert_at(&mut b, 0, 0, key, val);
            self.root = leaf.blkno();
            return Ok(());
        }
        let root = self.node(s, self.root, None)?;
        if let Some((sep, right)) = self.insert_in(s, &root, key, val)? {
            let (lvl, low) = {
                let b = root.data();
                let lvl = level(&b);
                (lvl, self.geo_at(s, lvl).key(&b, 0))
            };
            let top = s.alloc(self.spec)?;
            let g = self.geo_at(s, lvl + 1);
            let mut b = top.data();
            init_node(&mut b, top.blkno(), self.spec, self.owner, lvl + 1);
            g.insert_at(&mut b, 0, 0, low, &root.blkno().to_le_bytes());
            g.insert_at(&mut b, 1, 1, sep, &right.to_le_bytes());
            self.root = top.blkno();
        }
        Ok(())
    }

    fn insert_in(&self, s: &mut dyn NodeStore, buf: &BufRef, key: u128, val: &[u8]) -> FResult<Split> {
        let (lvl, n) = {
            let b = buf.data();
            (level(&b), nrecs(&b))
        };
        let g = self.geo_at(s, lvl);
        if lvl == 0 {
            let i = {
                let b = buf.data();
                let i = g.lower_bound(&b, n, key);
                if i < n && g.key(&b, i) == key {
                    return Err(Errno::EEXIST.into());
                }
                i
            };
            return self.put_at(s, buf, g, n, i, key, val);
        }
        let i = {
            let mut b = buf.data();
            let i = g.child_index(&b, n, key);
            if key < g.key(&b, 0) {
                g.set_key(&mut b, 0, key);
                drop(b);
                s.dirty(buf);
            }
            i
        };
        let child = self.descend(s, buf, i)?;
        match self.insert_in(s, &child, key, val)? {
            None => Ok(None),
            Some((sep, right)) => self.put_at(s, buf, g, n, i + 1, sep, &right.to_le_bytes()),
        }
    }

    /// Puts `(key, val)` at index `i` of `buf` (holding `n` records), splitting when full.
    #[allow(clippy::too_many_arguments)]
    fn put_at(
        &self,
        s: &mut dyn NodeStore,
        buf: &BufRef,
        g: Geo,
        n: usize,
        i: usize,
        key: u128,
        val: &[u8],
    ) -> FResult<Split> {
        if n < g.cap {
            g.insert_at(&mut buf.data(), n, i, key, val);
            s.dirty(buf);
            return Ok(None);
        }
        let right = s.alloc(self.spec)?;
        // n + 1 records in all: the left node ends with half (rounded down), the right with
        // the rest; both hold at least the minimum.
        let half = n.div_ceil(2);
        let m = if i < half { half - 1 } else { half };
        {
            let mut l = buf.data();
            let mut r = right.data();
            init_node(&mut r, right.blkno(), self.spec, self.owner, level(&l));
            g.copy_recs(&l, m, n - m, &mut r, 0);
            set_nrecs(&mut r, n - m);
            g.clear_recs(&mut l, m, n);
            set_nrecs(&mut l, m);
            if i < half {
                g.insert_at(&mut l, m, i, key, val);
            } else {
                g.insert_at(&mut r, n - m, i - m, key, val);
            }
        }
        s.dirty(buf);
        let sep = g.key(&right.data(), 0);
        Ok(Some((sep, right.blkno())))
    }

    /// Replaces the value under `key`; `ENOENT` when absent.
    pub fn update(&self, s: &mut dyn NodeStore, key: u128, val: &[u8]) -> FResult<()> {
        if self.root == 0 {
            return Err(Errno::ENOENT.into());
        }
        let mut buf = self.node(s, self.root, None)?;
        loop {
            let (lvl, n) = {
                let b = buf.data();
                (level(&b), nrecs(&b))
            };
            let g = self.geo_at(s, lvl);
            if lvl == 0 {
                let i = g.lower_bound(&buf.data(), n, key);
                if i >= n || g.key(&buf.data(), i) != key {
                    return Err(Errno::ENOENT.into());
                }
                g.set_val(&mut buf.data(), i, val);
                s.dirty(&buf);
                return Ok(());
            }
            let i = g.child_index(&buf.data(), n, key);
            buf = self.descend(s, &buf, i)?;
        }
    }

    /// Removes `key` and returns its value; `ENOENT` when absent.
    pub fn delete(&mut self, s: &mut dyn NodeStore, key: u128) -> FResult<Vec<u8>> {
        if self.root == 0 {
            return Err(Errno::ENOENT.into());
        }
        let root = self.node(s, self.root, None)?;
        let (old, _) = self.delete_in(s, &root, key)?;
        let (lvl, n, only) = {
            let b = root.data();
            let lvl = level(&b);
            let only = if lvl > 0 { self.geo_at(s, lvl).child(&b, 0) } else { 0 };
            (lvl, nrecs(&b), only)
        };
        if n == 0 {
            s.free(self.spec, self.root)?;
            self.root = 0;
        } else if lvl > 0 && n == 1 {
            s.free(self.spec, self.root)?;
            self.root = only;
        }
        Ok(old)
    }

    /// Deletes `key` below `buf`; returns the value and whether `buf` underflowed.
    fn delete_in(&self, s: &mut dyn NodeStore, buf: &BufRef, key: u128) -> FResult<(Vec<u8>, bool)> {
        let (lvl, n) = {
            let b = buf.data();
            (level(&b), nrecs(&b))
        };
        let g = self.geo_at(s, lvl);
        if lvl == 0 {
            let old = {
                let mut b = buf.data();
                let i = g.lower_bound(&b, n, key);
                if i >= n || g.key(&b, i) != key {
                    return Err(Errno::ENOENT.into());
                }
                let old = g.val(&b, i).to_vec();
                g.remove_at(&mut b, n, i);
                old
            };
            s.dirty(buf);
            return Ok((old, n - 1 < g.min()));
        }
        let i = {
            let b = buf.data();
            if key < g.key(&b, 0) {
                return Err(Errno::ENOENT.into());
            }
            g.child_index(&b, n, key)
        };
        let child = self.descend(s, buf, i)?;
        let (old, underflow) = self.delete_in(s, &child, key)?;
        if underflow {
            self.rebalance(s, buf, i)?;
        }
        let n = nrecs(&buf.data());
        Ok((old, n < g.min()))
    }

    /// Fixes child `i` of `parent` after it underflowed: merge with a sibling when both fit in
    /// one node, else move records from the sibling so both hold at least the minimum.
    fn rebalance(&self, s: &mut dyn NodeStore, parent: &BufRef, i: usize) -> FResult<()> {
        let (plvl, pn) = {
            let b = parent.data();
            (level(&b), nrecs(&b))
        };
        if pn < 2 {
            return Ok(()); // only the root can have one child; delete() collapses it
        }
        let pg = self.geo_at(s, plvl);
        let ri = if i > 0 { i } else { 1 };
        let left = self.descend(s, parent, ri - 1)?;
        let right = self.descend(s, parent, ri)?;
        let sep = pg.key(&parent.data(), ri);
        let clvl = plvl - 1;
        let cg = self.geo_at(s, clvl);
        let (ln, rn) = (nrecs(&left.data()), nrecs(&right.data()));
        if ln + rn <= cg.cap {
            {
                let mut l = left.data();
                let r = right.data();
                cg.copy_recs(&r, 0, rn, &mut l, ln);
                if clvl > 0 {
                    cg.set_key(&mut l, ln, sep);
                }
                set_nrecs(&mut l, ln + rn);
            }
            s.dirty(&left);
            s.free(self.spec, right.blkno())?;
            pg.remove_at(&mut parent.data(), pn, ri);
            s.dirty(parent);
            return Ok(());
        }
        let target = (ln + rn) / 2;
        {
            let mut l = left.data();
            let mut r = right.data();
            if ln < target {
                // Move the first k records of the right node to the end of the left one.
                let k = target - ln;
                cg.copy_recs(&r, 0, k, &mut l, ln);
                if clvl > 0 {
                    cg.set_key(&mut l, ln, sep);
                }
                set_nrecs(&mut l, ln + k);
                cg.shift_recs(&mut r, k, rn - k, 0);
                cg.clear_recs(&mut r, rn - k, rn);
                set_nrecs(&mut r, rn - k);
            } else {
                // Move the last k records of the left node to the front of the right one.
                let k = ln - target;
                if clvl > 0 {
                    cg.set_key(&mut r, 0, sep);
                }
                cg.shift_recs(&mut r, 0, rn, k);
                cg.copy_recs(&l, ln - k, k, &mut r, 0);
                set_nrecs(&mut r, rn + k);
                cg.clear_recs(&mut l, ln - k, ln);
                set_nrecs(&mut l, ln - k);
            }
            let new_sep = cg.key(&r, 0);
            pg.set_key(&mut parent.data(), ri, new_sep);
        }
        s.dirty(&left);
        s.dirty(&right);
        s.dirty(parent);
        Ok(())
    }

    /// Frees every node; the tree becomes empty.
    pub fn destroy(&mut self, s: &mut dyn NodeStore) -> FResult<()> {
        if self.root == 0 {
            return Ok(());
        }
        let root = self.node(s, self.root, None)?;
        self.destroy_in(s, &root)?;
        self.root = 0;
        Ok(())
    }

    fn destroy_in(&self, s: &mut dyn NodeStore, buf: &BufRef) -> FResult<()> {
        let (lvl, n) = {
            let b = buf.data();
            (level(&b), nrecs(&b))
        };
        if lvl > 0 {
            for i in 0..n {
                let child = self.descend(s, buf, i)?;
                self.destroy_in(s, &child)?;
            }
        }
        s.free(self.spec, buf.blkno())
    }
}
