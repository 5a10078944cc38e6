//! The data fork: loading it into the in-core map, editing it, and keeping the on-disk form
//! (inline records or the extent-map tree) equal to the in-core real extents.
//!
//! Every change goes through [`FsState::fork_edit`]: it snapshots the real extents around the
//! edited range, lets the caller change the in-core map, and applies the difference (records
//! removed, records added) to disk. The inline list becomes a tree when it outgrows the literal
//! area and goes back inline when the tree shrinks to half of it.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_iread_extents` | [`FsState::load_dmap`] |
//! | `xfs_bmap_add_extent_*` / `xfs_bmap_del_extent_*` updating iext + bmbt together | [`FsState::fork_edit`] (edit in core, apply the difference on disk) |
//! | `xfs_bmap_extents_to_btree` / `xfs_bmap_btree_to_extents` | inline list <-> tree conversion in `write_fork` |

use alloc::vec::Vec;

use super::record::*;
use super::MAX_FILE_BLOCKS;
use crate::frond::btree::Tree;
use crate::frond::format::FResult;
use crate::frond::inode::{Format, INLINE_EXTENTS, LITERAL_SIZE, S_IFDIR};
use crate::frond::state::FsState;
use crate::frond_corrupt;

/// Which fork an extent operation addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fork {
    /// The data fork (the file's committed mapping).
    Data,
    /// The COW fork (staging for writes to shared blocks).
    Cow,
}

/// The extent covering `fb`: (start, extent).
pub fn lookup(map: &ExtMap, fb: u64) -> Option<(u64, Ext)> {
    map.range(..=fb).next_back().filter(|(&s, e)| s + e.len > fb).map(|(&s, e)| (s, *e))
}

/// Start of the first extent at or after `fb`.
pub fn next_start(map: &ExtMap, fb: u64) -> Option<u64> {
    map.range(fb..).next().map(|(&s, _)| s)
}

/// Removes `[start, start + len)` from `map`, splitting extents at the edges. Returns the
/// removed pieces; a delalloc piece carries its extent's `ind` only when the whole extent went.
pub fn remove_range(map: &mut ExtMap, start: u64, len: u64) -> Vec<(u64, Ext)> {
    let end = start.saturating_add(len);
    let mut hits: Vec<(u64, Ext)> = Vec::new();
    if let Some((s, e)) = lookup(map, start) {
        if s < start {
            hits.push((s, e));
        }
    }
    hits.extend(map.range(start..end).map(|(&s, e)| (s, *e)));
    let mut removed = Vec::new();
    for (s, e) in hits {
        map.remove(&s);
        let e_end = s + e.len;
        let (a, b) = (s.max(start), e_end.min(end));
        let mut kept_ind = false;
        if s < a {
            let mut left = e.slice(0, a - s);
            left.ind = e.ind;
            kept_ind = true;
            map.insert(s, left);
        }
        if b < e_end {
            let mut right = e.slice(b - s, e_end - b);
            if !kept_ind {
                right.ind = e.ind;
                kept_ind = true;
            }
            map.insert(b, right);
        }
        let mut piece = e.slice(a - s, b - a);
        if !kept_ind {
            piece.ind = e.ind;
        }
        removed.push((a, piece));
    }
    removed
}

/// Inserts `e` at `fb` (the range must be free) and merges it with joinable neighbours.
/// Merged delalloc extents keep the larger of their metadata reservations (one extent needs one
/// worst case); the rest is returned, for the caller to give back.
#[must_use = "a merge of delalloc extents returns reservation to release"]
pub fn insert_merge(map: &mut ExtMap, fb: u64, e: Ext) -> u64 {
    let mut start = fb;
    let mut cur = e;
    let mut released = 0;
    if let Some((&ls, le)) = map.range(..fb).next_back() {
        if ls + le.len == fb && le.joins(&cur) {
            let mut m = *le;
            m.len += cur.len;
            m.ind = le.ind.max(cur.ind);
            released += le.ind.min(cur.ind);
            map.remove(&ls);
            start = ls;
            cur = m;
        }
    }
    let end = start + cur.len;
    if let Some(re) = map.get(&end).copied() {
        if cur.joins(&re) {
            cur.len += re.len;
            released += cur.ind.min(re.ind);
            cur.ind = cur.ind.max(re.ind);
            map.remove(&end);
        }
    }
    map.insert(start, cur);
    released
}

/// Inserts a real extent (no reservation can be released by its merges).
pub fn insert_real(map: &mut ExtMap, fb: u64, e: Ext) {
    debug_assert!(e.is_real());
    let released = insert_merge(map, fb, e);
    debug_assert_eq!(released, 0);
}

fn real_overlapping(map: &ExtMap, lo: u64, hi: u64) -> Vec<(u64, Ext)> {
    let mut v: Vec<(u64, Ext)> = Vec::new();
    if let Some((s, e)) = lookup(map, lo) {
        if s < lo && e.is_real() {
            v.push((s, e));
        }
    }
    v.extend(map.range(lo..hi).filter(|(_, e)| e.is_real()).map(|(&s, e)| (s, *e)));
    v
}

impl FsState {
    /// The extent-map tree of `ino`.
    pub fn bmap_tree(&mut self, ino: u64) -> FResult<Tree> {
        let root = self.inode(ino)?.root;
        Ok(Tree::new(&BMAP, ino, root))
    }

    /// Loads the data fork of `ino` into its in-core map (once).
    pub fn load_dmap(&mut self, ino: u64) -> FResult<()> {
        let inode = self.inode(ino)?;
        if inode.dmap.is_some() {
            return Ok(());
        }
        let (format, nrecs, is_dir) = (inode.format, inode.nrecs, inode.mode & 0o170000 == S_IFDIR);
        let (lo, hi) = (self.sb.data_start, self.sb.block_count);
        let mut recs: Vec<(u64, Ext)> = Vec::new();
        match format {
            Format::Inline => {}
            _ if is_dir => {}
            Format::Extents => {
                let lit = self.inodes.get(&ino).map(|i| i.literal.clone()).unwrap_or_default();
                for i in 0..nrecs as usize {
                    recs.push(decode_inline(&lit, i, lo, hi, ino).map_err(|c| self.corrupt(c))?);
                }
            }
            Format::Btree => {
                let t = self.bmap_tree(ino)?;
                let mut bad = None;
                t.walk(self, 0, &mut |k, v| {
                    match decode_val(v, k as u64, lo, hi, ino) {
                        Ok(e) => recs.push((k as u64, e)),
                        Err(c) => {
                            bad = Some(c);
                            return Ok(false);
                        }
                    }
                    Ok(recs.len() as u64 <= nrecs)
                })?;
                if let Some(c) = bad {
                    return Err(self.corrupt(c));
                }
                if recs.len() as u64 != nrecs {
                    return Err(self.corrupt(frond_corrupt!(
                        "inode {ino}: extent tree holds {} records, inode says {nrecs}",
                        recs.len()
                    )));
                }
            }
        }
        let mut map = ExtMap::new();
        let mut end = 0u64;
        for (i, (fb, e)) in recs.into_iter().enumerate() {
            if i > 0 && fb < end {
                return Err(self.corrupt(frond_corrupt!(
                    "inode {ino}: extent at file block {fb} overlaps the previous one"
                )));
            }
            end = fb + e.len;
            if end > MAX_FILE_BLOCKS {
                return Err(self.corrupt(frond_corrupt!(
                    "inode {ino}: extent at file block {fb} runs past the largest file"
                )));
            }
            map.insert(fb, e);
        }
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.dmap = Some(map);
        }
        Ok(())
    }

    /// The loaded data fork map of `ino`.
    pub fn dmap(&mut self, ino: u64) -> FResult<&mut ExtMap> {
        self.load_dmap(ino)?;
        let i = self.inodes.get_mut(&ino).ok_or(crate::Errno::ESTALE)?;
        Ok(i.dmap.get_or_insert_with(ExtMap::new))
    }

    /// Worst-case blocks a fork edit inserting up to `inserts` records may take for the extent
    /// map itself (tree growth, or conversion from inline to a tree).
    pub fn bmap_blocks(&mut self, ino: u64, inserts: u64) -> FResult<u64> {
        let h = match self.inode(ino)?.format {
            Format::Btree => self.bmap_tree(ino)?.height(self)? as u64,
            _ => 0,
        };
        // Converting an inline list needs a few nodes even with small node limits.
        Ok((inserts + 1) * (h + 2) + INLINE_EXTENTS as u64)
    }

    /// Edits the data fork of `ino` around `[start, end)` with `f`, then writes the change of
    /// real extents to disk and bumps the mapping sequence. See the module docs.
    pub fn fork_edit<R>(
        &mut self,
        ino: u64,
        start: u64,
        end: u64,
        f: impl FnOnce(&mut Self, &mut ExtMap) -> FResult<R>,
    ) -> FResult<R> {
        self.load_dmap(ino)?;
        let (lo, hi) = (start.saturating_sub(1), end.saturating_add(1));
        let mut map = self.inodes.get_mut(&ino).and_then(|i| i.dmap.take()).unwrap_or_default();
        let old = real_overlapping(&map, lo, hi);
        let r = f(self, &mut map);
        let new = real_overlapping(&map, lo, hi);
        let nrecs = self.inodes.get(&ino).map_or(0, |i| i.nrecs);
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.dmap = Some(map);
            i.seq += 1;
        }
        let r = r?;
        let removed: Vec<(u64, Ext)> = old.iter().filter(|x| !new.contains(x)).copied().collect();
        let added: Vec<(u64, Ext)> = new.iter().filter(|x| !old.contains(x)).copied().collect();
        // Records after the edit: the on-disk count adjusted by the difference (O(1), not a
        // walk of the whole map).
        let count = (nrecs + added.len() as u64).saturating_sub(removed.len() as u64);
        let delta: i64 = added.iter().map(|(_, e)| e.len as i64).sum::<i64>()
            - removed.iter().map(|(_, e)| e.len as i64).sum::<i64>();
        self.write_fork(ino, &removed, &added, count)?;
        let i = self.inode(ino)?;
        i.nblocks = (i.nblocks as i64 + delta).max(0) as u64;
        self.mark_inode_dirty(ino);
        Ok(r)
    }

    /// Bumps the mapping sequence of `ino` (an in-core-only change such as delalloc).
    pub fn bump_seq(&mut self, ino: u64) -> FResult<()> {
        self.inode(ino)?.seq += 1;
        Ok(())
    }

    fn write_fork(
        &mut self,
        ino: u64,
        removed: &[(u64, Ext)],
        added: &[(u64, Ext)],
        count: u64,
    ) -> FResult<()> {
        if removed.is_empty() && added.is_empty() {
            return Ok(());
        }
        let format = self.inode(ino)?.format;
        match format {
            Format::Inline => {
                Err(frond_corrupt!("inode {ino}: block mapping change on an inline-data file").into())
            }
            Format::Extents if count <= INLINE_EXTENTS as u64 => {
                self.write_inline_extents(ino)?;
                Ok(())
            }
            Format::Extents => {
                // Outgrew the literal area: build a tree from the whole map.
                let recs: Vec<(u64, Ext)> =
                    self.dmap(ino)?.iter().filter(|(_, e)| e.is_real()).map(|(&s, e)| (s, *e)).collect();
                let mut t = Tree::new(&BMAP, ino, 0);
                for (fb, e) in &recs {
                    t.insert(self, *fb as u128, &encode_val(e))?;
                }
                let i = self.inode(ino)?;
                i.format = Format::Btree;
                i.root = t.root;
                i.nrecs = recs.len() as u64;
                i.literal.fill(0);
                self.mark_inode_dirty(ino);
                Ok(())
            }
            Format::Btree => {
                let mut t = self.bmap_tree(ino)?;
                let mut res = Ok(());
                for (fb, _) in removed {
                    res = t.delete(self, *fb as u128).map(|_| ());
                    if res.is_err() {
                        break;
                    }
                }
                if res.is_ok() {
                    for (fb, e) in added {
                        res = t.insert(self, *fb as u128, &encode_val(e));
                        if res.is_err() {
                            break;
                        }
                    }
                }
                let i = self.inode(ino)?;
                i.root = t.root;
                i.nrecs = count;
                self.mark_inode_dirty(ino);
                res?;
                if count <= INLINE_EXTENTS as u64 / 2 {
                    let mut t = self.bmap_tree(ino)?;
                    t.destroy(self)?;
                    let i = self.inode(ino)?;
                    i.format = Format::Extents;
                    i.root = 0;
                    self.write_inline_extents(ino)?;
                }
                Ok(())
            }
        }
    }

    fn write_inline_extents(&mut self, ino: u64) -> FResult<()> {
        let recs: Vec<(u64, Ext)> =
            self.dmap(ino)?.iter().filter(|(_, e)| e.is_real()).map(|(&s, e)| (s, *e)).collect();
        let i = self.inode(ino)?;
        let mut lit = alloc::vec![0u8; LITERAL_SIZE];
        for (k, (fb, e)) in recs.iter().enumerate() {
            encode_inline(&mut lit, k, *fb, e);
        }
        i.literal = lit;
        i.nrecs = recs.len() as u64;
        self.mark_inode_dirty(ino);
        Ok(())
    }
}
