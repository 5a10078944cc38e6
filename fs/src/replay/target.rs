//! What a file implementation provides to the replayer.

use crate::Result;

/// One open file the replayer drives. Each method is one system call of the Linux reference
/// (`fs/oracle/apply.py`), with Linux's errors.
pub trait ReplayTarget {
    /// Current file size.
    fn size(&mut self) -> Result<u64>;
    /// `pwrite` (with `O_DIRECT` when `direct`); writes all of `data`.
    fn write(&mut self, off: u64, data: &[u8], direct: bool) -> Result<()>;
    /// One untorn `O_DIRECT` write (`pwritev2(RWF_ATOMIC)`).
    fn write_atomic(&mut self, off: u64, data: &[u8]) -> Result<()>;
    /// One `pread` (with `O_DIRECT` when `direct`): bytes read, short only at end of file.
    fn read(&mut self, off: u64, buf: &mut [u8], direct: bool) -> Result<usize>;
    /// `ftruncate`.
    fn truncate(&mut self, size: u64) -> Result<()>;
    /// `fallocate(0 | KEEP_SIZE | UNSHARE_RANGE)`.
    fn fallocate(&mut self, off: u64, len: u64, keep_size: bool, unshare: bool) -> Result<()>;
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
    fn punch_hole(&mut self, off: u64, len: u64) -> Result<()>;
    /// `fallocate(ZERO_RANGE [| KEEP_SIZE])`.
    fn zero_range(&mut self, off: u64, len: u64, keep_size: bool) -> Result<()>;
    /// `fallocate(COLLAPSE_RANGE)`.
    fn collapse_range(&mut self, off: u64, len: u64) -> Result<()>;
    /// `fallocate(INSERT_RANGE)`.
    fn insert_range(&mut self, off: u64, len: u64) -> Result<()>;
    /// `FICLONERANGE` within the file.
    fn clone_range(&mut self, src: u64, len: u64, dst: u64) -> Result<()>;
    /// `FIDEDUPERANGE` within the file: `Ok(true)` if the ranges were equal (now shared).
    fn dedupe_range(&mut self, src: u64, len: u64, dst: u64) -> Result<bool>;
    /// One `copy_file_range` call within the file: bytes copied (0 at end of file).
    fn copy_range(&mut self, src: u64, len: u64, dst: u64) -> Result<u64>;
    /// `fsync`.
    fn fsync(&mut self) -> Result<()>;
    /// Close the file, write back its dirty data, drop its cached pages, reopen it.
    fn close_open(&mut self) -> Result<()>;
}
