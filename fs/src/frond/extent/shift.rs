//! Collapse range and insert range: shifting every extent after a point left or right.
//!
//! Collapse unmaps `[fb, fb + count)` and moves every later extent `count` blocks left,
//! in ascending order; insert splits the extent at `fb` and moves every extent from `fb` on
//! `count` blocks right, in descending order. Each move is its own transaction step, and the
//! order guarantees every intermediate state has non-overlapping extents (deviation: XFS
//! finishes an interrupted shift from a logged intent; here a crash leaves a consistent file
//! with the shift partly done). The inode size moves with the extents. COW staging from `fb`
//! on is cancelled first.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_collapse_file_space` / `xfs_bmap_collapse_extents` | [`FsState::collapse`] |
//! | `xfs_insert_file_space` / `xfs_bmap_insert_extents` + `xfs_bmap_split_extent` | [`FsState::insert`] |

use alloc::vec::Vec;

use super::fork::{insert_merge, insert_real, lookup, remove_range};
use super::ops::check_range;
use super::record::{Ext, ExtState};
use super::MAX_FILE_BLOCKS;
use crate::frond::format::FResult;
use crate::frond::state::{FsState, Pool};
use crate::Errno;

impl FsState {
    fn move_extent(&mut self, ino: u64, from: u64, to: u64, e: Ext) -> FResult<()> {
        if e.state == ExtState::Delalloc {
            let map = self.dmap(ino)?;
            map.remove(&from);
            let released = insert_merge(map, to, e);
            self.delalloc_reserved = self.delalloc_reserved.saturating_sub(released);
            return self.bump_seq(ino);
        }
        let need = self.bmap_blocks(ino, 2)?;
        let (lo, hi) = (from.min(to), from.max(to) + e.len);
        self.op(need, 4 * need as usize + 8, Pool::Reserve, |st| {
            st.fork_edit(ino, lo, hi, |_, map| {
                map.remove(&from);
                insert_real(map, to, e);
                Ok(())
            })
        })
    }

    /// Removes `[fb, fb + count)` from the file and shifts everything after it left; the size
    /// shrinks by `count` blocks. `EINVAL` unless the range ends before the end of the file.
    pub fn collapse(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let bs = self.bs() as u64;
        let size = self.inode(ino)?.size;
        if (fb + count).saturating_mul(bs) >= size {
            return Err(Errno::EINVAL.into());
        }
        self.cow_cancel(ino, fb, MAX_FILE_BLOCKS - fb)?;
        self.punch_data(ino, fb, count)?;
        // Extents move left one by one, in ascending order; `cursor` is past the last one
        // moved (in its old position), so each moves once.
        let mut cursor = fb + count;
        loop {
            let next = self.dmap(ino)?.range(cursor..).next().map(|(&s, e)| (s, *e));
            let Some((s, e)) = next else { break };
            self.move_extent(ino, s, s - count, e)?;
            cursor = s + e.len;
        }
        self.op(0, 2, Pool::Reserve, |st| {
            let i = st.inode(ino)?;
            i.size -= count * bs;
            i.disk_size = i.disk_size.min(i.size);
            st.mark_inode_dirty(ino);
            Ok(())
        })
    }

    /// Inserts a hole of `count` blocks at `fb`, shifting everything from `fb` on right; the
    /// size grows by `count` blocks. `EINVAL` when `fb` is at or past the end of the file,
    /// `EFBIG` when the file would grow past the largest size.
    pub fn insert(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let bs = self.bs() as u64;
        let size = self.inode(ino)?.size;
        if fb.saturating_mul(bs) >= size {
            return Err(Errno::EINVAL.into());
        }
        let last_end = self.dmap(ino)?.iter().next_back().map_or(0, |(&s, e)| s + e.len);
        if last_end.max(size.div_ceil(bs)).saturating_add(count) > MAX_FILE_BLOCKS {
            return Err(Errno::EFBIG.into());
        }
        self.cow_cancel(ino, fb, MAX_FILE_BLOCKS - fb)?;
        // Split the extent straddling fb so that everything from fb on moves whole.
        if let Some((s, e)) = lookup(self.dmap(ino)?, fb) {
            if s < fb {
                if e.is_real() {
                    let need = self.bmap_blocks(ino, 2)?;
                    self.op(need, 4 * need as usize + 8, Pool::Reserve, |st| {
                        st.fork_edit(ino, s, s + e.len, |_, map| {
                            let pieces = remove_range(map, s, e.len);
                            for (p, x) in pieces {
                                map.insert(p, x.slice(0, fb - p));
                                map.insert(fb, x.slice(fb - p, x.len - (fb - p)));
                            }
                            Ok(())
                        })
                    })?;
                } else {
                    let map = self.dmap(ino)?;
                    map.remove(&s);
                    let mut left = e.slice(0, fb - s);
                    left.ind = e.ind;
                    map.insert(s, left);
                    map.insert(fb, e.slice(fb - s, e.len - (fb - s)));
                }
            }
        }
        let movers: Vec<(u64, Ext)> = self.dmap(ino)?.range(fb..).rev().map(|(&s, e)| (s, *e)).collect();
        for (s, e) in movers {
            self.move_extent(ino, s, s + count, e)?;
        }
        self.op(0, 2, Pool::Reserve, |st| {
            let i = st.inode(ino)?;
            i.size += count * bs;
            st.mark_inode_dirty(ino);
            Ok(())
        })
    }
}
