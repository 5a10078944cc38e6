//! Reference counts of shared extents, and the on-disk record of COW staging extents.
//!
//! Owns the refcount tree ([`REFC`]). Like XFS, only blocks shared by two or more mappings
//! have a record (`start -> (length, count)`, count >= 2); a mapped block without a record has
//! count 1. Mapping a block into one more file adds one ([`FsState::refcount_adjust`] with
//! +1); unmapping subtracts one, and a block whose count drops from 1 to 0 is returned to the
//! caller to free. Records are split at the edges of every adjusted range and neighbours with
//! equal counts are merged again afterwards, as XFS does.
//!
//! COW staging extents (blocks allocated for copy-on-write that are not yet remapped into the
//! data fork) are recorded in a second key domain of the same tree (`start | COW_DOMAIN`, count
//! 1), so that staging blocks left by a crash are found and freed at mount.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | refcountbt, `xfs_refcount_increase/decrease_extent` | [`REFC`], [`FsState::refcount_adjust`] |
//! | `XFS_REFC_DOMAIN_COW` records | `COW_DOMAIN` keys ([`FsState::cow_record_add`] / `_remove`) |
//! | `xfs_refcount_recover_cow_leftovers` | [`FsState::recover_cow_leftovers`] |
//! | `xfs_refcount_find_shared` | [`FsState::refcount_of`] |

use alloc::vec::Vec;

use super::btree::{Spec, Tree, TreeKind};
use super::format::{get32, get64, put32, put64, FResult};
use super::state::FsState;
use crate::frond_corrupt;

/// The refcount tree: key = start block (| [`COW_DOMAIN`]), value = length u64 | count u32 | 0.
pub static REFC: Spec = Spec { kind: TreeKind::Refcount, name: "refcount", key_size: 8, val_size: 16 };

/// Key bit marking COW staging records.
pub const COW_DOMAIN: u64 = 1 << 63;

fn val(len: u64, count: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    put64(&mut v, 0, len);
    put32(&mut v, 8, count);
    v
}

/// Decodes a refcount record value: (length, count).
pub fn decode(v: &[u8]) -> (u64, u32) {
    (get64(v, 0), get32(v, 8))
}

impl FsState {
    /// The refcount tree.
    pub fn refc(&self) -> Tree {
        Tree::new(&REFC, 0, self.root.refc_root)
    }

    fn set_refc(&mut self, t: Tree) {
        if t.root != self.root.refc_root {
            self.root.refc_root = t.root;
            self.touch_root();
        }
    }

    fn refc_insert(&mut self, key: u64, len: u64, count: u32) -> FResult<()> {
        let mut t = self.refc();
        let r = t.insert(self, key as u128, &val(len, count));
        self.set_refc(t);
        r
    }

    fn refc_delete(&mut self, key: u64) -> FResult<()> {
        let mut t = self.refc();
        let r = t.delete(self, key as u128).map(|_| ());
        self.set_refc(t);
        r
    }

    /// Validates a record read from the tree: (start, length, count).
    fn refc_rec(&mut self, key: u64, v: &[u8]) -> FResult<(u64, u64, u32)> {
        let (l, c) = decode(v);
        let s = key & !COW_DOMAIN;
        if l == 0 || s < self.sb.data_start || s.checked_add(l).is_none_or(|e| e > self.sb.block_count) {
            let c = frond_corrupt!("refcount record {s}+{l} outside the data area");
            return Err(self.corrupt(c));
        }
        Ok((s, l, c))
    }

    /// The shared-domain record at or before `blk`: (start, length, count).
    fn refc_le(&mut self, blk: u64) -> FResult<Option<(u64, u64, u32)>> {
        let t = self.refc();
        match t.seek_le(self, blk as u128)? {
            Some((k, v)) if (k as u64) < COW_DOMAIN => Ok(Some(self.refc_rec(k as u64, &v)?)),
            _ => Ok(None),
        }
    }

    /// The first shared-domain record at or after `blk`.
    fn refc_ge(&mut self, blk: u64) -> FResult<Option<(u64, u64, u32)>> {
        let t = self.refc();
        match t.seek_ge(self, blk as u128)? {
            Some((k, v)) if (k as u64) < COW_DOMAIN => Ok(Some(self.refc_rec(k as u64, &v)?)),
            _ => Ok(None),
        }
    }

    /// The reference count of mapped block `blk` and how many of the next `len` blocks
    /// (from `blk`) have that same count.
    pub fn refcount_of(&mut self, blk: u64, len: u64) -> FResult<(u32, u64)> {
        if self.root.refc_root == 0 {
            return Ok((1, len));
        }
        if let Some((s, l, c)) = self.refc_le(blk)? {
            if s + l > blk {
                return Ok((c, len.min(s + l - blk)));
            }
        }
        let next = self.refc_ge(blk)?.map_or(u64::MAX, |(s, _, _)| s);
        Ok((1, len.min(next - blk)))
    }

    /// Splits the record straddling `b`, if any, so a record boundary falls at `b`.
    fn refc_split_at(&mut self, b: u64) -> FResult<()> {
        if let Some((s, l, c)) = self.refc_le(b)? {
            if s < b && b < s + l {
                let t = self.refc();
                t.update(self, s as u128, &val(b - s, c))?;
                self.refc_insert(b, s + l - b, c)?;
            }
        }
        Ok(())
    }

    /// Worst-case record inserts of an adjust over a range that currently holds `records`
    /// records (each may split `height + 1` nodes): callers size reservations with it.
    pub fn refcount_blocks(&mut self, records: u64) -> FResult<u64> {
        Ok((records + 3) * (self.refc().height(self)? as u64 + 1))
    }

    /// Adds `delta` (+1 or -1) to the count of every block in `[start, start + len)` (all of
    /// which are mapped). Returns the ranges whose count dropped to zero: the caller frees them.
    pub fn refcount_adjust(&mut self, start: u64, len: u64, delta: i32) -> FResult<Vec<(u64, u64)>> {
        debug_assert!(delta == 1 || delta == -1);
        let end = start + len;
        self.refc_split_at(start)?;
        self.refc_split_at(end)?;
        let mut freed = Vec::new();
        let mut pos = start;
        let mut guard = 0u64;
        while pos < end {
            guard += 1;
            if guard > 2 * len + 4 {
                return Err(
                    frond_corrupt!("refcount records around block {start} do not make progress").into()
                );
            }
            let next = self.refc_ge(pos)?;
            match next {
                Some((s, l, c)) if s == pos => {
                    if s + l > end || c < 2 {
                        return Err(frond_corrupt!("refcount record {s}+{l} has count {c}").into());
                    }
                    let n = c as i64 + delta as i64;
                    if n >= 2 {
                        let t = self.refc();
                        t.update(self, s as u128, &val(l, n as u32))?;
                    } else {
                        self.refc_delete(s)?;
                    }
                    pos = s + l;
                }
                other => {
                    let gap_end = other.map_or(end, |(s, _, _)| s.min(end));
                    if delta > 0 {
                        self.refc_insert(pos, gap_end - pos, 2)?;
                    } else {
                        freed.push((pos, gap_end - pos));
                    }
                    pos = gap_end;
                }
            }
        }
        self.refc_coalesce(start.saturating_sub(1), end)?;
        Ok(freed)
    }

    /// Merges neighbouring shared-domain records with equal counts whose boundary lies in
    /// `[from, to]`, keeping the tree canonical after an adjust.
    fn refc_coalesce(&mut self, from: u64, to: u64) -> FResult<()> {
        // Start at the record holding `from`, so a record ending inside the range is seen.
        let mut pos = match self.refc_le(from)? {
            Some((s, l, _)) if s + l >= from => s,
            _ => from,
        };
        let first = pos;
        let mut guard = 0u64;
        while pos <= to {
            guard += 1;
            if guard > 2 * (to - first) + 8 {
                return Err(
                    frond_corrupt!("refcount records around block {from} do not make progress").into()
                );
            }
            let Some((s, l, c)) = self.refc_ge(pos)? else { break };
            if s > to {
                break;
            }
            let end = s + l;
            match self.refc_ge(end)? {
                Some((rs, rl, rc)) if rs == end && rc == c && rs <= to + 1 => {
                    self.refc_delete(rs)?;
                    let t = self.refc();
                    t.update(self, s as u128, &val(l + rl, c))?;
                    pos = s;
                }
                _ => pos = end,
            }
        }
        Ok(())
    }

    /// Records `[start, start + len)` as COW staging blocks.
    pub fn cow_record_add(&mut self, start: u64, len: u64) -> FResult<()> {
        self.refc_insert(start | COW_DOMAIN, len, 1)
    }

    /// Forgets `[start, start + len)` as COW staging blocks (splitting the records it cuts).
    pub fn cow_record_remove(&mut self, start: u64, len: u64) -> FResult<()> {
        let end = start + len;
        let mut pos = start;
        while pos < end {
            let t = self.refc();
            let rec = t.seek_le(self, (pos | COW_DOMAIN) as u128)?;
            let (s, l) = match rec {
                Some((k, v)) if (k as u64) & COW_DOMAIN != 0 => {
                    let (s, l, _) = self.refc_rec(k as u64, &v)?;
                    (s, l)
                }
                _ => return Err(frond_corrupt!("COW staging block {pos} has no staging record").into()),
            };
            if s + l <= pos {
                return Err(frond_corrupt!("COW staging block {pos} has no staging record").into());
            }
            self.refc_delete(s | COW_DOMAIN)?;
            if s < pos {
                self.refc_insert(s | COW_DOMAIN, pos - s, 1)?;
            }
            let cut_end = end.min(s + l);
            if cut_end < s + l {
                self.refc_insert(cut_end | COW_DOMAIN, s + l - cut_end, 1)?;
            }
            pos = cut_end;
        }
        Ok(())
    }

    /// Every COW staging record: (start, length).
    pub fn cow_records(&mut self) -> FResult<Vec<(u64, u64)>> {
        let mut raw = Vec::new();
        let t = self.refc();
        t.walk(self, COW_DOMAIN as u128, &mut |k, v| {
            raw.push((k as u64, v.to_vec()));
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let (s, l, _) = self.refc_rec(k, &v)?;
            out.push((s, l));
        }
        Ok(out)
    }

    /// Frees COW staging blocks left over by a crash (mount) or an unclean in-core teardown.
    pub fn recover_cow_leftovers(&mut self) -> FResult<u64> {
        let recs = self.cow_records()?;
        let mut n = 0;
        for (s, l) in recs {
            self.refc_delete(s | COW_DOMAIN)?;
            self.free_extent(s, l, false)?;
            n += l;
        }
        Ok(n)
    }
}
