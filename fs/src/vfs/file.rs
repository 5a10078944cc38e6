//! [`File`]: an open file: positional read and write with the open flags' semantics, fsync,
//! fdatasync, truncate, stat. fallocate, the remap calls and seek are in their own modules.
//!
//! - read: `EBADF` without read access, `EISDIR` on a directory. Buffered reads go through the
//!   engine under the inode's rw lock held shared.
//! - write: `EBADF` without write access; `O_APPEND` writes at the in-core size (taken under the
//!   exclusive rw lock); `EFBIG` at or past the largest file size (a write crossing it is cut
//!   short); `O_SYNC` / `O_DSYNC` use the engine's write-through.
//! - `O_DIRECT`: position and length must be multiples of the device's logical block size, the
//!   buffer's address a multiple of its DMA alignment (`EINVAL`). Reads and writes go through
//!   the engine's direct I/O ([`iomap::direct_read`] / [`iomap::direct_write`]): bios between
//!   the caller's buffer and the device, no cache folios; the cache over the range is written
//!   back first (and for writes dropped before and after), so direct and buffered I/O stay
//!   coherent. frond's side of the mapping (allocation of unwritten blocks, COW staging,
//!   completion) is `dio_map`. Inline data continues as buffered I/O (written back before the
//!   call returns). Locking as XFS: direct reads, and direct writes that are filesystem-block
//!   aligned and end inside the file, hold the rw lock shared (several run in parallel);
//!   sub-block, extending and `O_APPEND` direct writes hold it exclusively.
//! - `RWF_ATOMIC` ([`File::write_atomic`]): one block is a direct write with one bio; a longer
//!   write (up to 2 MiB) goes out of place and is remapped in one transaction (`atomic`).
//! - fsync / fdatasync: the engine's integrity writeback, the errseq check (a writeback error is
//!   reported once per open file), frond's commit (PREFLUSH + FUA) or a flush.
//! - close: [`File`]'s drop (or [`File::close`], which reports errors): the last close of an
//!   unlinked inode frees it.
//!
//! Lock order: the inode's rw lock, then the per-open state lock (never held across I/O), then
//! the engine.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `pread64` / `pwrite64` (`xfs_file_read_iter` / `xfs_file_buffered_write`) | [`File::read`] / [`File::write`] | positional only |
//! | `xfs_file_dio_read`, `xfs_file_dio_write_aligned` / `_unaligned` | `O_DIRECT` above | the shared lock is kept for non-extending block-aligned writes only (no demotion after an exclusive extending write) |
//! | `xfs_file_write_iter` with `IOCB_ATOMIC` | [`File::write_atomic`] | several blocks always out of place (XFS writes in place when the device supports atomic writes) |
//! | `xfs_file_fsync` | [`File::fsync`], [`File::fdatasync`] | |
//! | `ftruncate` / `xfs_setattr_size` | [`File::truncate`] | |
//! | `fput` / `iput` | [`File::close`], drop | |

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use spin::Mutex;

use super::flags::OpenFlags;
use super::fs::FrondFs;
use super::inode::Inode;
use crate::frond::Stat;
use crate::iomap::{self, OpenFile, SliceSource, WriteFlags};
use crate::platform::DmaBuffer;
use crate::{Errno, Result};

/// An open file. See the module docs.
pub struct File {
    fs: Arc<FrondFs>,
    inode: Arc<Inode>,
    flags: OpenFlags,
    open: Mutex<OpenFile>,
    closed: bool,
}

impl File {
    pub(crate) fn new(fs: Arc<FrondFs>, inode: Arc<Inode>, flags: OpenFlags) -> Self {
        let open = Mutex::new(inode.file().open());
        Self { fs, inode, flags, open, closed: false }
    }

    /// The filesystem.
    pub fn fs(&self) -> &Arc<FrondFs> {
        &self.fs
    }

    /// The in-core inode.
    pub fn inode(&self) -> &Arc<Inode> {
        &self.inode
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.inode.ino
    }

    /// The open flags.
    pub fn flags(&self) -> OpenFlags {
        self.flags
    }

    /// The in-core size.
    pub fn size(&self) -> u64 {
        self.inode.file().size()
    }

    pub(crate) fn check_read(&self) -> Result<()> {
        if !self.flags.readable() {
            return Err(Errno::EBADF);
        }
        if self.inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        Ok(())
    }

    pub(crate) fn check_write(&self) -> Result<()> {
        if !self.flags.writable() {
            return Err(Errno::EBADF);
        }
        if self.inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        Ok(())
    }

    /// `EINVAL` unless `pos` and `len` are multiples of the device's logical block size.
    fn check_direct(&self, pos: u64, len: u64) -> Result<()> {
        let lbs = self.fs.ctx.device().info().logical_block_size.max(1) as u64;
        if !pos.is_multiple_of(lbs) || !len.is_multiple_of(lbs) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes at `pos`; returns the bytes read (0 at or past EOF).
    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        self.check_read()?;
        let direct = self.flags.contains(OpenFlags::DIRECT);
        if direct {
            self.check_direct(pos, buf.len() as u64)?;
        }
        let _shared = self.inode.rw.read();
        self.read_locked(pos, buf, direct)
    }

    /// [`File::read`] with the rw lock held by the caller; `direct` as `O_DIRECT` (alignment
    /// already checked).
    pub(crate) fn read_locked(&self, pos: u64, buf: &mut [u8], direct: bool) -> Result<usize> {
        let (file, ops) = (self.inode.file(), self.inode.ops());
        // The per-open state is copied out and back: no lock is held across the I/O
        // (concurrent readers of one open file race on the readahead state harmlessly, as on
        // Linux's `f_ra`).
        let mut open = self.open.lock().clone();
        let r = if direct {
            iomap::direct_read(file, ops, &mut open, pos, buf)
        } else {
            iomap::read(file, ops, &mut open, pos, buf)
        };
        self.open.lock().ra = open.ra;
        r
    }

    /// Writes `data` at `pos` (at the end of the file with `O_APPEND`); returns the bytes
    /// written. See the module docs.
    pub fn write(&self, pos: u64, data: &[u8]) -> Result<usize> {
        self.check_write()?;
        if self.flags.contains(OpenFlags::DIRECT) {
            return self.write_direct(pos, data, None);
        }
        let _exclusive = self.inode.rw.write();
        let pos = if self.flags.contains(OpenFlags::APPEND) { self.size() } else { pos };
        self.write_locked(pos, data, false)
    }

    /// An `O_DIRECT` write with Linux's (XFS's) locking: a filesystem-block aligned write
    /// inside the file (not `O_APPEND`) runs under the rw lock held shared, alongside direct
    /// reads and other such writes; a sub-block, extending or appending write holds it
    /// exclusively. `atomic`: the length of an RWF_ATOMIC write, whose position must stay a
    /// multiple of it once `O_APPEND` chose it.
    fn write_direct(&self, pos: u64, data: &[u8], atomic: Option<u64>) -> Result<usize> {
        let len = data.len() as u64;
        let bs = self.fs.block_size();
        let append = self.flags.contains(OpenFlags::APPEND);
        if !append && len > 0 && pos.is_multiple_of(bs) && len.is_multiple_of(bs) {
            self.check_direct(pos, len)?;
            let shared = self.inode.rw.read();
            // Under the shared lock the size cannot change (every size change is exclusive).
            if pos.checked_add(len).is_some_and(|end| end <= self.size()) {
                return self.write_direct_locked(pos, data);
            }
            drop(shared);
        }
        let _exclusive = self.inode.rw.write();
        let pos = if append { self.size() } else { pos };
        if atomic.is_some_and(|unit| !pos.is_multiple_of(unit)) {
            return Err(Errno::EINVAL);
        }
        self.write_locked(pos, data, true)
    }

    /// [`File::write`] at `pos` with the rw lock held exclusively by the caller; `direct` as
    /// `O_DIRECT`.
    pub(crate) fn write_locked(&self, pos: u64, data: &[u8], direct: bool) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let max = self.fs.max_file_size();
        if pos >= max {
            return Err(Errno::EFBIG);
        }
        let data = &data[..(data.len() as u64).min(max - pos) as usize];
        if direct {
            self.check_direct(pos, data.len() as u64)?;
            return self.write_direct_locked(pos, data);
        }
        let file = self.inode.file();
        let old_size = file.size();
        let n = {
            let mut open = self.open.lock().clone();
            let r = iomap::write(
                file,
                self.inode.ops(),
                &mut open,
                pos,
                &mut SliceSource::new(data),
                self.write_flags(),
            );
            self.open.lock().wb_err = open.wb_err;
            r?
        };
        self.after_write(old_size);
        Ok(n)
    }

    /// The engine's direct write (the rw lock held as [`File::write_direct`] chose; alignment
    /// to the logical block size checked, the buffer's to the device's DMA alignment is the
    /// engine's check).
    fn write_direct_locked(&self, pos: u64, data: &[u8]) -> Result<usize> {
        let file = self.inode.file();
        let old_size = file.size();
        let mut open = self.open.lock().clone();
        let r = iomap::direct_write(file, self.inode.ops(), &mut open, pos, data, self.write_flags());
        self.open.lock().wb_err = open.wb_err;
        let n = r?;
        self.after_write(old_size);
        Ok(n)
    }

    /// The engine's write flags for the open flags (`O_SYNC` / `O_DSYNC`).
    fn write_flags(&self) -> WriteFlags {
        if self.flags.contains(OpenFlags::SYNC) {
            WriteFlags::SYNC
        } else if self.flags.contains(OpenFlags::DSYNC) {
            WriteFlags::DSYNC
        } else {
            WriteFlags::empty()
        }
    }

    /// One untorn write (`pwritev2(RWF_ATOMIC)`): the file must be open with `O_DIRECT`, the
    /// length a power of two from the filesystem block size up to
    /// [`ATOMIC_WRITE_MAX`](super::atomic::ATOMIC_WRITE_MAX) (XFS's unit min and max without
    /// atomic-write hardware), and the position a multiple of the length; `EINVAL` otherwise.
    /// One block is an ordinary direct write: the data goes out as one bio (copied into one
    /// DMA-able buffer first when the caller's is not DMA-able as one piece), and whatever else
    /// the block needs (read-around of a shared block) becomes visible only with the
    /// completion's transaction (conversion or COW remap). A longer write goes out of place and
    /// is remapped in one transaction (`atomic`). After a crash it is all there or not at all.
    pub fn write_atomic(&self, pos: u64, data: &[u8]) -> Result<usize> {
        self.check_write()?;
        let len = data.len() as u64;
        let bs = self.fs.block_size();
        let ok = self.flags.contains(OpenFlags::DIRECT)
            && len.is_power_of_two()
            && len >= bs
            && len <= super::atomic::ATOMIC_WRITE_MAX
            && pos.is_multiple_of(len);
        if !ok {
            return Err(Errno::EINVAL);
        }
        if len > bs {
            let _exclusive = self.inode.rw.write();
            let pos = if self.flags.contains(OpenFlags::APPEND) { self.size() } else { pos };
            if !pos.is_multiple_of(len) {
                return Err(Errno::EINVAL);
            }
            return self.write_atomic_blocks(pos, data);
        }
        let platform = self.fs.ctx.platform();
        if platform.dma_address(data.as_ptr(), data.len()).is_some() {
            return self.write_direct(pos, data, Some(len));
        }
        let mut one = DmaBuffer::new(platform, data.len())?;
        one.as_mut_slice().copy_from_slice(data);
        self.write_direct(pos, one.as_slice(), Some(len))
    }

    /// Bookkeeping after data was written: frond's in-core size follows the engine's, the
    /// times are due.
    pub(crate) fn after_write(&self, old_size: u64) {
        let size = self.size();
        if size > old_size {
            // The on-disk size follows at I/O completion; this only keeps frond's in-core view
            // (used by collapse / insert checks) current. It cannot fail for a size the engine
            // accepted.
            let _ = self.fs.frond.set_size(self.inode.ino, size);
        }
        self.inode.ops.times_dirty.store(true, Ordering::Release);
    }

    fn sync_impl(&self, datasync: bool) -> Result<()> {
        if self.inode.is_dir() {
            return self.fs.frond.sync();
        }
        // The errseq sample is copied out and the advanced one stored back (no lock across the
        // I/O); racing fsyncs of one open file may both see an error, never miss one.
        let mut open = self.open.lock().clone();
        let r = iomap::fsync(self.inode.file(), self.inode.ops(), &mut open, 0, u64::MAX, datasync);
        self.open.lock().wb_err = open.wb_err;
        r
    }

    /// `fsync`: data, the metadata to read it and the rest of the inode durable.
    pub fn fsync(&self) -> Result<()> {
        self.sync_impl(false)
    }

    /// `fdatasync`: data and the metadata needed to read it (size included) durable.
    pub fn fdatasync(&self) -> Result<()> {
        self.sync_impl(true)
    }

    /// `ftruncate`: `EBADF` without write access, `EISDIR` on a directory, `EFBIG` past the
    /// largest file.
    pub fn truncate(&self, size: u64) -> Result<()> {
        self.check_write()?;
        let _exclusive = self.inode.rw.write();
        self.truncate_locked(size)
    }

    /// [`File::truncate`] with the rw lock held exclusively.
    pub(crate) fn truncate_locked(&self, size: u64) -> Result<()> {
        if size > self.fs.max_file_size() {
            return Err(Errno::EFBIG);
        }
        let ino = self.inode.ino;
        let file = self.inode.file().clone();
        let ops = &self.inode.ops;
        iomap::truncate(&file, self.inode.ops(), size, |s| {
            ops.mutate(|f| f.truncate(ino, s))?;
            file.set_disk_size(s);
            Ok(())
        })
    }

    /// The attributes (in-core size).
    pub fn stat(&self) -> Result<Stat> {
        self.fs.stat(self.inode.ino)
    }

    /// Closes the file, reporting an error of the last-close work.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        self.fs.release(&self.inode)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            if let Err(e) = self.fs.release(&self.inode) {
                log::warn!("frond: closing inode {}: {e}", self.inode.ino);
            }
        }
    }
}
