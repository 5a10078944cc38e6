//! The test filesystem's wrappers for direct I/O, copy on write (unshare, clone, dedupe) and DAX:
//! thin calls into the engine with this file's callbacks, plus the filesystem's part of clone
//! and dedupe ([`MemFile::share_from`](super::MemFile)) and of DAX truncate.
//!
//! Lock order: none held across engine calls. Linux <-> here: the `xfs_file_*` entry points
//! (`xfs_file_dio_read/write`, `xfs_file_remap_range`, `xfs_reflink_unshare`, DAX paths).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::file::MemFile;
use crate::iomap::dax::{dax_read, dax_truncate, dax_write, dax_zero_range, DaxDevice};
use crate::iomap::file::OpenFile;
use crate::iomap::write::WriteFlags;
use crate::iomap::{
    clone_range, dedupe_range, direct_read, direct_read_batch, direct_write, direct_write_batch,
    invalidate_cache, unshare_range, DedupeOutcome, DioRead, DioWrite, RemapFile,
};
use crate::{Errno, Result};

impl MemFile {
    /// Direct read.
    pub fn direct_read(&self, open: &mut OpenFile, pos: u64, buf: &mut [u8]) -> Result<usize> {
        direct_read(self.file(), &self.ops(), open, pos, buf)
    }

    /// Direct write.
    pub fn direct_write(
        &self,
        open: &mut OpenFile,
        pos: u64,
        data: &[u8],
        flags: WriteFlags,
    ) -> Result<usize> {
        direct_write(self.file(), &self.ops(), open, pos, data, flags)
    }

    /// Direct reads, all in flight together.
    pub fn direct_read_batch(&self, open: &mut OpenFile, reqs: &mut [DioRead<'_>]) -> Vec<Result<usize>> {
        direct_read_batch(self.file(), &self.ops(), open, reqs)
    }

    /// Direct writes, all in flight together.
    pub fn direct_write_batch(
        &self,
        open: &mut OpenFile,
        reqs: &[DioWrite<'_>],
        flags: WriteFlags,
    ) -> Vec<Result<usize>> {
        direct_write_batch(self.file(), &self.ops(), open, reqs, flags)
    }

    /// Makes `[pos, pos + len)` exclusive (and writes it back).
    pub fn unshare(&self, pos: u64, len: u64) -> Result<()> {
        unshare_range(self.file(), &self.ops(), pos, len)
    }

    /// Clones `len` bytes of `src` at `pos_in` to `pos_out` of this file (`len == 0`: to the
    /// source's EOF); returns the bytes cloned.
    pub fn clone_range_from(&self, src: &MemFile, pos_in: u64, pos_out: u64, len: u64) -> Result<u64> {
        let (src_ops, dst_ops) = (src.ops(), self.ops());
        let bs = self.block_size();
        clone_range(
            RemapFile { file: src.file(), ops: &src_ops },
            pos_in,
            RemapFile { file: self.file(), ops: &dst_ops },
            pos_out,
            len,
            |r| self.share_from(src, r.pos_in / bs, r.pos_out / bs, r.blocks, r.new_size),
        )
    }

    /// Dedupes `len` bytes at `pos_out` of this file against `src` at `pos_in`.
    pub fn dedupe_from(&self, src: &MemFile, pos_in: u64, pos_out: u64, len: u64) -> Result<DedupeOutcome> {
        let (src_ops, dst_ops) = (src.ops(), self.ops());
        let bs = self.block_size();
        dedupe_range(
            RemapFile { file: src.file(), ops: &src_ops },
            pos_in,
            RemapFile { file: self.file(), ops: &dst_ops },
            pos_out,
            len,
            |r| self.share_from(src, r.pos_in / bs, r.pos_out / bs, r.blocks, r.new_size),
        )
    }

    /// Writes back and drops the whole cache of the file, after direct I/O in flight.
    pub fn invalidate(&self) -> Result<()> {
        invalidate_cache(self.file(), &self.ops(), 0, u64::MAX)
    }

    fn dax(&self) -> Result<Arc<dyn DaxDevice>> {
        self.fs()?.dax().ok_or(Errno::ENODEV)
    }

    /// DAX read (`ENODEV` without a DAX device).
    pub fn dax_read(&self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        dax_read(&*self.dax()?, self.file(), &self.ops(), pos, buf)
    }

    /// DAX write.
    pub fn dax_write(&self, pos: u64, data: &[u8]) -> Result<usize> {
        dax_write(&*self.dax()?, self.file(), &self.ops(), pos, data)
    }

    /// DAX zero range.
    pub fn dax_zero(&self, pos: u64, len: u64) -> Result<()> {
        dax_zero_range(&*self.dax()?, self.file(), &self.ops(), pos, len)
    }

    /// DAX truncate (freeing blocks beyond the new EOF).
    pub fn dax_truncate(&self, size: u64) -> Result<()> {
        dax_truncate(&*self.dax()?, self.file(), &self.ops(), size, |new| self.fs_truncate(new))
    }
}
