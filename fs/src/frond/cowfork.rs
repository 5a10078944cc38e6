//! The COW fork: per-inode staging extents for writes to shared blocks.
//!
//! Owns the copy-on-write life cycle. The COW fork is in-core only (`Inode::cow`); staging
//! blocks are recorded on disk as COW-domain records in the refcount tree, so blocks staged
//! when the system crashed are freed at the next mount. A write to a shared range first gets
//! staging space: [`FsState::cow_prepare`] allocates blocks for the shared parts (direct I/O),
//! or the engine reserves delalloc in the COW fork (`reserve_delalloc(.., Fork::Cow)`) and
//! allocates it at writeback (`allocate(.., Fork::Cow)`). When the write completes,
//! [`FsState::cow_remap`] moves the staging extents into the data fork, one extent per
//! transaction: the old blocks lose a reference (freed at zero), the new ones are mapped
//! written, the staging record goes. On an I/O error [`FsState::cow_cancel`] frees the staging
//! blocks and leaves the data fork untouched.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_reflink_allocate_cow` | [`FsState::cow_prepare`] |
//! | `xfs_reflink_end_cow` (per-extent transactions) | [`FsState::cow_remap`] |
//! | `xfs_reflink_cancel_cow_range` | [`FsState::cow_cancel`] |
//! | `xfs_reflink_unshare` | [`FsState::cow_prepare`] + engine copy + [`FsState::cow_remap`] |

use alloc::vec::Vec;

use super::extent::fork::{insert_real, lookup, next_start, remove_range, Fork};
use super::extent::ops::check_range;
use super::extent::record::{Ext, ExtState};
use super::extent::MAX_FILE_BLOCKS;
use super::format::FResult;
use super::inode::FLAG_REFLINK;
use super::state::{FsState, Pool};

impl FsState {
    /// Allocates COW staging blocks for every shared, not yet staged part of
    /// `[fb, fb + count)` (direct I/O writes and unshare). Returns the blocks allocated.
    pub fn cow_prepare(&mut self, ino: u64, fb: u64, count: u64) -> FResult<u64> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        if self.inode(ino)?.flags & FLAG_REFLINK == 0 {
            return Ok(0);
        }
        let end = fb + count;
        let mut pos = fb;
        let mut total = 0;
        while pos < end {
            let m = self.map(ino, pos, end - pos, Fork::Data)?;
            let step = m.len;
            if m.shared {
                // Skip what the COW fork already covers.
                let mut p = pos;
                while p < pos + step {
                    let c = self.map(ino, p, pos + step - p, Fork::Cow)?;
                    if c.kind == super::extent::ops::MapKind::Hole {
                        self.allocate(ino, p, c.len, true, Fork::Cow)?;
                        let got = self.map(ino, p, c.len, Fork::Cow)?;
                        total += got.len;
                        p += got.len;
                    } else if c.kind == super::extent::ops::MapKind::Delalloc {
                        let got = self.allocate(ino, p, c.len, true, Fork::Cow)?;
                        total += got.len;
                        p += got.len;
                    } else {
                        p += c.len;
                    }
                }
            }
            pos += step;
        }
        Ok(total)
    }

    /// Moves the real COW extents in `[fb, fb + count)` into the data fork (write completion).
    pub fn cow_remap(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let end = fb + count;
        let mut pos = fb;
        while pos < end {
            let cow = &self.inode(ino)?.cow;
            let (s, e) = match lookup(cow, pos) {
                Some(x) => x,
                None => match next_start(cow, pos).filter(|&s| s < end) {
                    Some(s) => {
                        pos = s;
                        continue;
                    }
                    None => break,
                },
            };
            let l = (s + e.len).min(end) - pos;
            if !e.is_real() {
                pos += l;
                continue;
            }
            let d = e.disk + (pos - s);
            let reflink = self.inode(ino)?.flags & FLAG_REFLINK != 0;
            // The data fork range may hold several extents: each is unmapped in this step.
            let old: Vec<(u64, Ext)> = {
                let map = self.dmap(ino)?;
                let mut tmp = map.clone();
                remove_range(&mut tmp, pos, l)
            };
            let need = self.bmap_blocks(ino, 2)? + self.refcount_blocks(old.len() as u64 + 2)?;
            self.op(need, 4 * need as usize + 16, Pool::Reserve, |st| {
                st.fork_edit(ino, pos, pos + l, |_, map| {
                    remove_range(map, pos, l);
                    insert_real(map, pos, Ext::real(d, l, ExtState::Written));
                    Ok(())
                })?;
                for (_, o) in &old {
                    match o.state {
                        ExtState::Delalloc => {
                            st.delalloc_reserved = st.delalloc_reserved.saturating_sub(o.len + o.ind);
                        }
                        _ => st.unmap_blocks(o.disk, o.len, reflink)?,
                    }
                }
                st.cow_record_remove(d, l)?;
                let cow = &mut st.inode(ino)?.cow;
                remove_range(cow, pos, l);
                Ok(())
            })?;
            pos += l;
        }
        Ok(())
    }

    /// Drops the COW fork over `[fb, fb + count)`: staging blocks are freed, delalloc released.
    /// The data fork is untouched (I/O error, truncate, punch).
    pub fn cow_cancel(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        let end = fb.saturating_add(count).min(MAX_FILE_BLOCKS);
        if self.inode(ino)?.cow.is_empty() {
            return Ok(());
        }
        loop {
            let cow = &self.inode(ino)?.cow;
            let first = match lookup(cow, fb) {
                Some(x) => Some(x),
                None => next_start(cow, fb).filter(|&s| s < end).and_then(|s| cow.get(&s).map(|e| (s, *e))),
            };
            let Some((s, e)) = first else { break };
            let a = s.max(fb);
            let l = (s + e.len).min(end) - a;
            if !e.is_real() {
                let cow = &mut self.inode(ino)?.cow;
                let removed = remove_range(cow, a, l);
                let r: u64 = removed.iter().map(|(_, p)| p.len + p.ind).sum();
                self.delalloc_reserved = self.delalloc_reserved.saturating_sub(r);
                self.bump_seq(ino)?;
                continue;
            }
            let d = e.disk + (a - s);
            let need = self.refcount_blocks(2)?;
            self.op(need, 4 * need as usize + 8, Pool::Reserve, |st| {
                st.cow_record_remove(d, l)?;
                st.free_extent(d, l, false)?;
                let cow = &mut st.inode(ino)?.cow;
                remove_range(cow, a, l);
                st.bump_seq(ino)
            })?;
        }
        Ok(())
    }

    /// Cancels every in-core COW fork (unmount).
    pub fn cancel_all_cow(&mut self) -> FResult<()> {
        let inos: Vec<u64> = self.inodes.iter().filter(|(_, i)| !i.cow.is_empty()).map(|(&n, _)| n).collect();
        for ino in inos {
            self.cow_cancel(ino, 0, MAX_FILE_BLOCKS)?;
        }
        Ok(())
    }
}
