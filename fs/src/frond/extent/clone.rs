//! Reflink: sharing extents between files (clone range, dedupe range).
//!
//! [`FsState::clone_extents`] maps the source's real extents into the destination range,
//! replacing whatever the destination had there, and adds one reference to every shared
//! block. Holes in the source become holes in the destination. It runs one source extent per
//! transaction step (each step leaves a consistent filesystem), like XFS's remap loop. Delalloc
//! in the source must have been written back first (`EBUSY` otherwise). Both inodes get the
//! REFLINK flag. Dedupe is the same operation after the engine has compared the contents.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_reflink_remap_blocks` / `xfs_reflink_remap_extent` | [`FsState::clone_extents`] |
//! | `xfs_reflink_set_inode_flag` | REFLINK on both inodes |

use alloc::vec::Vec;

use super::fork::{insert_real, remove_range};
use super::ops::check_range;
use super::record::Ext;
use crate::frond::format::FResult;
use crate::frond::inode::FLAG_REFLINK;
use crate::frond::state::{FsState, Pool};
use crate::Errno;

impl FsState {
    /// Makes `[dst_fb, dst_fb + count)` of `dst` share the blocks of `[src_fb, src_fb + count)`
    /// of `src`. `EINVAL` for overlapping ranges of one file; `EBUSY` when the source range
    /// holds delayed allocations.
    pub fn clone_extents(&mut self, src: u64, src_fb: u64, dst: u64, dst_fb: u64, count: u64) -> FResult<()> {
        check_range(src_fb, count)?;
        check_range(dst_fb, count)?;
        self.check_extent_file(src)?;
        self.check_extent_file(dst)?;
        if src == dst && src_fb < dst_fb + count && dst_fb < src_fb + count {
            return Err(Errno::EINVAL.into());
        }
        let pieces: Vec<(u64, Ext)> = {
            let mut tmp = self.dmap(src)?.clone();
            remove_range(&mut tmp, src_fb, count)
        };
        if pieces.iter().any(|(_, e)| !e.is_real()) {
            return Err(Errno::EBUSY.into());
        }
        for ino in [src, dst] {
            if self.inode(ino)?.flags & FLAG_REFLINK == 0 {
                self.op(0, 2, Pool::Normal, |st| {
                    st.inode(ino)?.flags |= FLAG_REFLINK;
                    st.mark_inode_dirty(ino);
                    Ok(())
                })?;
            }
        }
        // Replace the destination range, then share the source pieces one by one.
        self.punch(dst, dst_fb, count)?;
        for (fb, e) in pieces {
            let to = dst_fb + (fb - src_fb);
            let need = self.bmap_blocks(dst, 2)? + self.refcount_blocks(e.len.min(64) + 2)?;
            self.op(need, 4 * need as usize + 16, Pool::Normal, |st| {
                if let Some((s, n)) = st.refcount_adjust(e.disk, e.len, 1)?.first() {
                    // +1 never frees; a zero-count range here means the map was corrupt.
                    return Err(crate::frond_corrupt!(
                        "refcount of blocks {s}+{n} fell to zero while cloning"
                    )
                    .into());
                }
                st.fork_edit(dst, to, to + e.len, |_, map| {
                    remove_range(map, to, e.len);
                    insert_real(map, to, e);
                    Ok(())
                })
            })?;
        }
        self.bump_seq(src)
    }
}
