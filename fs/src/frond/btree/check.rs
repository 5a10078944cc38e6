//! Full structural check of a tree, for fsck: every node verified, levels exact, keys within
//! their parent's bounds, non-root nodes at least half full, no node reachable twice.
//!
//! Lock order: runs under the metadata lock (nodes come from the store).
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_btree_check_block` + scrub's btree walk (`xchk_btree`) | [`Tree::check`] |

use alloc::collections::BTreeSet;

use super::node::{level, nrecs, Geo};
use super::{NodeStore, Tree};
use crate::frond::buf::BufRef;
use crate::frond::format::FResult;
use crate::frond_corrupt;

/// What a check saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Nodes.
    pub nodes: u64,
    /// Leaf records.
    pub records: u64,
    /// Height (0 = empty).
    pub height: u32,
}

impl Tree {
    /// Checks the whole tree. `on_node(blkno)` sees every node block and `on_rec(key, value)`
    /// every record in key order. The first structural problem is returned as corruption.
    pub fn check(
        &self,
        s: &mut dyn NodeStore,
        on_node: &mut dyn FnMut(u64),
        on_rec: &mut dyn FnMut(u128, &[u8]),
    ) -> FResult<TreeStats> {
        let mut st = TreeStats::default();
        if self.root == 0 {
            return Ok(st);
        }
        let root = self.node(s, self.root, None)?;
        st.height = level(&root.data()) as u32 + 1;
        let mut seen = BTreeSet::new();
        self.check_in(s, &root, true, &mut seen, &mut st, on_node, on_rec)?;
        Ok(st)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_in(
        &self,
        s: &mut dyn NodeStore,
        buf: &BufRef,
        is_root: bool,
        seen: &mut BTreeSet<u64>,
        st: &mut TreeStats,
        on_node: &mut dyn FnMut(u64),
        on_rec: &mut dyn FnMut(u128, &[u8]),
    ) -> FResult<()> {
        let blk = buf.blkno();
        if !seen.insert(blk) {
            return Err(frond_corrupt!(
                "{} node {blk}: reachable twice (cycle or shared node)",
                self.spec.name
            )
            .into());
        }
        on_node(blk);
        st.nodes += 1;
        let (lvl, n) = {
            let b = buf.data();
            (level(&b), nrecs(&b))
        };
        let g = Geo::new(self.spec, lvl, s.block_size(), s.node_limit());
        if !is_root && n < g.min() {
            return Err(frond_corrupt!(
                "{} node {blk}: {n} records, below the minimum {}",
                self.spec.name,
                g.min()
            )
            .into());
        }
        if lvl == 0 {
            let b = buf.data();
            for i in 0..n {
                on_rec(g.key(&b, i), g.val(&b, i));
            }
            st.records += n as u64;
            return Ok(());
        }
        for i in 0..n {
            let child = self.descend(s, buf, i)?;
            self.check_in(s, &child, false, seen, st, on_node, on_rec)?;
        }
        Ok(())
    }
}
