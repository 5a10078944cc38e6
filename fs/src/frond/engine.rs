//! The extent interface the iomap engine calls (thread-safe wrappers on [`Frond`]).
//!
//! Everything here is per extent and O(log n); block numbers are in filesystem blocks. The
//! engine's single mapping callback is answered by [`Frond::map`] (the COW fork consulted first
//! for writes), and its completion hooks by [`Frond::convert_unwritten`], [`Frond::cow_remap`],
//! [`Frond::cow_cancel`] and [`Frond::set_disk_size`]. [`Frond::fsync`] makes every metadata
//! change durable.
//!
//! Lock order: every call takes the metadata lock for its whole duration, including any metadata
//! I/O (device completions never take it).
//!
//! # Linux <-> here
//!
//! | Linux (XFS iomap ops) | here |
//! |---|---|
//! | `xfs_read_iomap_begin` / `xfs_buffered_write_iomap_begin` lookups | [`Frond::map`] |
//! | `xfs_bmapi_reserve_delalloc` / `xfs_bmap_punch_delalloc_range` | [`Frond::reserve_delalloc`] / [`Frond::punch_delalloc`] |
//! | `xfs_bmapi_convert_delalloc`, `xfs_iomap_write_direct` | [`Frond::allocate`] |
//! | `xfs_iomap_write_unwritten` | [`Frond::convert_unwritten`] |
//! | `xfs_reflink_allocate_cow` / `_end_cow` / `_cancel_cow_range` | [`Frond::cow_prepare`] / [`Frond::cow_remap`] / [`Frond::cow_cancel`] |
//! | atomic COW writes: `xfs_atomic_write_cow_iomap_begin` / `xfs_reflink_end_atomic_cow` | [`Frond::cow_stage_all`] / [`Frond::cow_remap_atomic`] |
//! | `xfs_free_file_space`, `xfs_itruncate_extents` | [`Frond::punch`], [`Frond::truncate`] |
//! | `xfs_collapse_file_space` / `xfs_insert_file_space` | [`Frond::collapse`] / [`Frond::insert`] |
//! | `xfs_reflink_remap_blocks` | [`Frond::clone_extents`] |
//! | `xfs_setfilesize` (ioend) | [`Frond::set_disk_size`] |
//! | `xfs_log_force_seq` from fsync | [`Frond::fsync`], [`Frond::commit`] |
//! | VFS inode references of open files keeping an unlinked inode (`xfs_inactive` at last iput) | [`Frond::pin`] / [`Frond::unpin`] |

pub use super::extent::fork::Fork;
pub use super::extent::ops::{MapKind, Mapping};
use super::mount::Frond;
use crate::Result;

impl Frond {
    /// The mapping of `fork` at `file_block` (at most `count` blocks).
    pub fn map(&self, ino: u64, file_block: u64, count: u64, fork: Fork) -> Result<Mapping> {
        self.with(|st| st.map(ino, file_block, count, fork))
    }

    /// The inode's mapping sequence number (the engine's validity cookie).
    pub fn mapping_seq(&self, ino: u64) -> Result<u64> {
        self.with(|st| Ok(st.inode(ino)?.seq))
    }

    /// Reserves delayed allocation in the hole at `file_block` (up to `count` blocks);
    /// returns the blocks reserved. `ENOSPC` is reported here, never at writeback.
    pub fn reserve_delalloc(&self, ino: u64, file_block: u64, count: u64, fork: Fork) -> Result<u64> {
        self.with(|st| st.reserve_delalloc(ino, file_block, count, fork))
    }

    /// Drops delayed allocations in the range (short write, truncate).
    pub fn punch_delalloc(&self, ino: u64, file_block: u64, count: u64, fork: Fork) -> Result<()> {
        self.with(|st| st.punch_delalloc(ino, file_block, count, fork))
    }

    /// Allocates blocks for the delalloc extent or hole at `file_block` (at most `count`,
    /// possibly fewer); returns the mapping now covering `file_block`.
    pub fn allocate(
        &self,
        ino: u64,
        file_block: u64,
        count: u64,
        unwritten: bool,
        fork: Fork,
    ) -> Result<Mapping> {
        self.with(|st| st.allocate(ino, file_block, count, unwritten, fork))
    }

    /// Converts unwritten extents in the range to written (I/O completion).
    pub fn convert_unwritten(&self, ino: u64, file_block: u64, count: u64) -> Result<()> {
        self.with(|st| st.convert_unwritten(ino, file_block, count))
    }

    /// Allocates COW staging blocks for the shared parts of the range; returns blocks staged.
    pub fn cow_prepare(&self, ino: u64, file_block: u64, count: u64) -> Result<u64> {
        self.with(|st| st.cow_prepare(ino, file_block, count))
    }

    /// Allocates COW staging blocks for every block of the range not yet staged, shared or not
    /// (an untorn write of several blocks); returns blocks staged.
    pub fn cow_stage_all(&self, ino: u64, file_block: u64, count: u64) -> Result<u64> {
        self.with(|st| st.cow_stage_all(ino, file_block, count))
    }

    /// Remaps the staging of the whole range into the data fork in one transaction, setting
    /// both sizes to `size` when given (completion of an untorn write).
    pub fn cow_remap_atomic(&self, ino: u64, file_block: u64, count: u64, size: Option<u64>) -> Result<()> {
        self.with(|st| st.cow_remap_atomic(ino, file_block, count, size))
    }

    /// Remaps written COW staging extents in the range into the data fork (I/O completion).
    pub fn cow_remap(&self, ino: u64, file_block: u64, count: u64) -> Result<()> {
        self.with(|st| st.cow_remap(ino, file_block, count))
    }

    /// Cancels COW staging in the range (I/O error): staging blocks freed, data fork untouched.
    pub fn cow_cancel(&self, ino: u64, file_block: u64, count: u64) -> Result<()> {
        self.with(|st| st.cow_cancel(ino, file_block, count))
    }

    /// Unmaps the range (punch hole): shared blocks lose a reference, others are freed.
    pub fn punch(&self, ino: u64, file_block: u64, count: u64) -> Result<()> {
        self.with(|st| st.punch(ino, file_block, count))
    }

    /// Unmaps every block from `from_block` on.
    pub fn truncate_blocks(&self, ino: u64, from_block: u64) -> Result<()> {
        self.with(|st| st.truncate_blocks(ino, from_block))
    }

    /// Sets both sizes to `size` and unmaps the blocks wholly beyond it.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<()> {
        self.with(|st| st.truncate(ino, size))
    }

    /// Removes `count` blocks at `file_block`, shifting the rest of the file left.
    pub fn collapse(&self, ino: u64, file_block: u64, count: u64) -> Result<()> {
        self.with(|st| st.collapse(ino, file_block, count))
    }

    /// Inserts a hole of `count` blocks at `file_block`, shifting the rest of the file right.
    pub fn insert(&self, ino: u64, file_block: u64, count: u64) -> Result<()> {
        self.with(|st| st.insert(ino, file_block, count))
    }

    /// Shares `count` blocks of `src` at `src_block` into `dst` at `dst_block` (clone range;
    /// dedupe after the engine's compare).
    pub fn clone_extents(
        &self,
        src: u64,
        src_block: u64,
        dst: u64,
        dst_block: u64,
        count: u64,
    ) -> Result<()> {
        self.with(|st| st.clone_extents(src, src_block, dst, dst_block, count))
    }

    /// Sets the in-core size (no transaction).
    pub fn set_size(&self, ino: u64, size: u64) -> Result<()> {
        self.with(|st| st.set_size(ino, size))
    }

    /// Records the on-disk size in a transaction (ioend completion).
    pub fn set_disk_size(&self, ino: u64, size: u64) -> Result<()> {
        self.with(|st| st.set_disk_size(ino, size))
    }

    /// Reads inline data.
    pub fn read_inline(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.with(|st| st.read_inline(ino, offset, buf))
    }

    /// Writes inline data (`EFBIG` when it does not fit: un-stuff first).
    pub fn write_inline(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        self.with(|st| st.write_inline(ino, offset, data))
    }

    /// Moves inline data to a block.
    pub fn unstuff(&self, ino: u64) -> Result<()> {
        self.with(|st| st.unstuff(ino))
    }

    /// Commits the running transaction (its commit record carries PREFLUSH + FUA); returns
    /// whether there was anything to commit. Unlike [`Frond::sync`] it issues no flush when
    /// there was not (the iomap engine's `commit` contract: the caller flushes).
    pub fn commit(&self) -> Result<bool> {
        self.with(|st| st.commit())
    }

    /// Pins `ino` for an opener (the file API's open count): while pinned, dropping its last
    /// link leaves it on the orphan list instead of freeing it.
    pub fn pin(&self, ino: u64) -> Result<()> {
        self.with(|st| {
            st.inode(ino)?;
            *st.pinned.entry(ino).or_insert(0) += 1;
            Ok(())
        })
    }

    /// Drops one pin of `ino`; the last one frees the inode if its last link is gone (it is
    /// on the orphan list). Returns whether the inode was freed.
    pub fn unpin(&self, ino: u64) -> Result<bool> {
        self.with(|st| {
            let last = match st.pinned.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    st.pinned.remove(&ino);
                    true
                }
                None => return Err(crate::Errno::EINVAL.into()),
            };
            if last && st.inode(ino)?.nlink == 0 {
                st.release_inode(ino)?;
                return Ok(true);
            }
            Ok(false)
        })
    }

    /// Makes every metadata change so far durable (fsync / fdatasync): commits the running
    /// transaction with PREFLUSH + FUA, or flushes the device when nothing needed committing.
    pub fn fsync(&self, _ino: u64) -> Result<()> {
        self.sync()
    }
}
