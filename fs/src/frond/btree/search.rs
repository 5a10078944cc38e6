//! Lookups and ordered walks. All are O(log n) per record found (a walk is O(log n + k)).
//!
//! Lock order: runs under the metadata lock; takes one buffer lock at a time.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_btree_lookup(XFS_LOOKUP_LE / GE / EQ)` | [`Tree::seek_le`] / [`Tree::seek_ge`] / [`Tree::get`] |
//! | `xfs_btree_query_range` | [`Tree::walk`] |

use alloc::vec::Vec;

use super::node::{level, nrecs, Geo};
use super::{NodeStore, Tree};
use crate::frond::buf::BufRef;
use crate::frond::format::FResult;

/// A record: key and value bytes.
pub type Rec = (u128, Vec<u8>);

impl Tree {
    fn geo(&self, s: &dyn NodeStore, b: &[u8]) -> Geo {
        Geo::new(self.spec, level(b), b.len(), s.node_limit())
    }

    /// The value stored under exactly `key`.
    pub fn get(&self, s: &mut dyn NodeStore, key: u128) -> FResult<Option<Vec<u8>>> {
        Ok(self.seek_le(s, key)?.filter(|r| r.0 == key).map(|r| r.1))
    }

    /// The record with the greatest key <= `key`.
    pub fn seek_le(&self, s: &mut dyn NodeStore, key: u128) -> FResult<Option<Rec>> {
        if self.root == 0 {
            return Ok(None);
        }
        let root = self.node(s, self.root, None)?;
        self.seek_le_in(s, &root, key)
    }

    fn seek_le_in(&self, s: &mut dyn NodeStore, buf: &BufRef, key: u128) -> FResult<Option<Rec>> {
        let (lvl, i, n) = {
            let b = buf.data();
            let g = self.geo(s, &b);
            let n = nrecs(&b);
            if level(&b) == 0 {
                let i = g.lower_bound(&b, n, key);
                let i = if i < n && g.key(&b, i) == key { Some(i) } else { i.checked_sub(1) };
                return Ok(i.map(|i| (g.key(&b, i), g.val(&b, i).to_vec())));
            }
            if key < g.key(&b, 0) {
                return Ok(None);
            }
            (level(&b), g.child_index(&b, n, key), n)
        };
        debug_assert!(lvl > 0 && i < n);
        let child = self.descend(s, buf, i)?;
        if let Some(r) = self.seek_le_in(s, &child, key)? {
            return Ok(Some(r));
        }
        if i == 0 {
            return Ok(None);
        }
        let left = self.descend(s, buf, i - 1)?;
        self.edge(s, left, false)
    }

    /// The record with the least key >= `key`.
    pub fn seek_ge(&self, s: &mut dyn NodeStore, key: u128) -> FResult<Option<Rec>> {
        if self.root == 0 {
            return Ok(None);
        }
        let root = self.node(s, self.root, None)?;
        self.seek_ge_in(s, &root, key)
    }

    fn seek_ge_in(&self, s: &mut dyn NodeStore, buf: &BufRef, key: u128) -> FResult<Option<Rec>> {
        let (i, n) = {
            let b = buf.data();
            let g = self.geo(s, &b);
            let n = nrecs(&b);
            if level(&b) == 0 {
                let i = g.lower_bound(&b, n, key);
                return Ok((i < n).then(|| (g.key(&b, i), g.val(&b, i).to_vec())));
            }
            (g.child_index(&b, n, key), n)
        };
        let child = self.descend(s, buf, i)?;
        if let Some(r) = self.seek_ge_in(s, &child, key)? {
            return Ok(Some(r));
        }
        if i + 1 >= n {
            return Ok(None);
        }
        let right = self.descend(s, buf, i + 1)?;
        self.edge(s, right, true)
    }

    /// The first (`first`) or last record of the subtree at `buf`.
    fn edge(&self, s: &mut dyn NodeStore, mut buf: BufRef, first: bool) -> FResult<Option<Rec>> {
        loop {
            let (lvl, n) = {
                let b = buf.data();
                (level(&b), nrecs(&b))
            };
            let i = if first { 0 } else { n - 1 };
            if lvl == 0 {
                let b = buf.data();
                let g = self.geo(s, &b);
                return Ok(Some((g.key(&b, i), g.val(&b, i).to_vec())));
            }
            buf = self.descend(s, &buf, i)?;
        }
    }

    /// Calls `f(key, value)` for every record with key >= `from`, in key order, until `f`
    /// returns `Ok(false)`. `f` must not change the tree.
    pub fn walk(
        &self,
        s: &mut dyn NodeStore,
        from: u128,
        f: &mut dyn FnMut(u128, &[u8]) -> FResult<bool>,
    ) -> FResult<()> {
        if self.root == 0 {
            return Ok(());
        }
        let root = self.node(s, self.root, None)?;
        self.walk_in(s, &root, from, f).map(|_| ())
    }

    fn walk_in(
        &self,
        s: &mut dyn NodeStore,
        buf: &BufRef,
        from: u128,
        f: &mut dyn FnMut(u128, &[u8]) -> FResult<bool>,
    ) -> FResult<bool> {
        let (lvl, start, n) = {
            let b = buf.data();
            let g = self.geo(s, &b);
            let n = nrecs(&b);
            let start = if level(&b) == 0 { g.lower_bound(&b, n, from) } else { g.child_index(&b, n, from) };
            (level(&b), start, n)
        };
        if lvl == 0 {
            let b = buf.data();
            let g = self.geo(s, &b);
            for i in start..n {
                if !f(g.key(&b, i), g.val(&b, i))? {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        for i in start..n {
            let child = self.descend(s, buf, i)?;
            if !self.walk_in(s, &child, from, f)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
