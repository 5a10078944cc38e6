//! `fallocate(2)`: preallocation, punch hole, zero range, collapse range, insert range and
//! unshare, with Linux's argument checks.
//!
//! - checks (as `vfs_fallocate`): unknown bits `EOPNOTSUPP`; PUNCH_HOLE needs KEEP_SIZE
//!   (`EOPNOTSUPP`), PUNCH_HOLE / ZERO_RANGE / COLLAPSE / INSERT exclude each other and
//!   COLLAPSE / INSERT take no other flag (`EINVAL`); `len == 0` `EINVAL`; `EBADF` without
//!   write access; `EISDIR` on a directory; `EFBIG` past the largest file.
//! - allocate (0 / KEEP_SIZE / UNSHARE): holes and delalloc in the range become UNWRITTEN
//!   blocks (read as zeros); without KEEP_SIZE the size grows to the range end. UNSHARE: each
//!   shared extent in the range (clamped to the size) is rewritten through the cache, so the
//!   copy-on-write write path gives it private blocks, and written back.
//! - punch hole: the engine's punch (write back and drop the cache over the range, zero the
//!   partial blocks at the ends) with frond unmapping the whole blocks (shared blocks lose a
//!   reference, COW staging is cancelled).
//! - zero range: punch, then preallocate the whole blocks (UNWRITTEN), partial blocks zeroed
//!   through the cache; the size grows to the range end unless KEEP_SIZE.
//! - collapse / insert: offset and length block aligned (`EINVAL`); collapse must end before
//!   EOF, insert must start before EOF (`EINVAL`), insert must not pass the largest file
//!   (`EFBIG`). The cache from the offset on is written back and dropped, frond shifts the
//!   extents, the size changes by `len`.
//!
//! Lock order: the inode's rw lock exclusively, then the engine (invalidate lock), then the map
//! lock around frond's extent changes.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `vfs_fallocate` checks | [`File::fallocate`] | |
//! | `xfs_alloc_file_space` | allocate | |
//! | `xfs_free_file_space` | punch hole | |
//! | `xfs_zero_file_space` (punch + preallocate) | zero range | |
//! | `xfs_collapse_file_space` / `xfs_insert_file_space` | collapse / insert | |
//! | `xfs_reflink_unshare` (`iomap_file_unshare`) | unshare | rewrites through the cache (the engine's UNSHARE op is not there yet) |

use alloc::vec;

use super::file::File;
use crate::frond::{Fork, MapKind};
use crate::iomap::{self, write_and_wait};
use crate::{Errno, Result};

bitflags::bitflags! {
    /// `fallocate(2)` modes (Linux values).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FallocFlags: u32 {
        /// Do not change the size.
        const KEEP_SIZE = 0x01;
        /// Deallocate (with KEEP_SIZE).
        const PUNCH_HOLE = 0x02;
        /// Remove a block-aligned range, shifting the rest down.
        const COLLAPSE_RANGE = 0x08;
        /// Zero a range (preallocated, reads as zeros).
        const ZERO_RANGE = 0x10;
        /// Insert a block-aligned hole, shifting the rest up.
        const INSERT_RANGE = 0x20;
        /// Give shared blocks in the range private copies.
        const UNSHARE_RANGE = 0x40;
    }
}

impl File {
    /// `fallocate(mode, off, len)`. See the module docs.
    pub fn fallocate(&self, mode: FallocFlags, off: u64, len: u64) -> Result<()> {
        use FallocFlags as F;
        let punchy = mode & (F::PUNCH_HOLE | F::ZERO_RANGE | F::COLLAPSE_RANGE | F::INSERT_RANGE);
        if punchy.bits().count_ones() > 1 {
            return Err(if mode.contains(F::PUNCH_HOLE) { Errno::EOPNOTSUPP } else { Errno::EINVAL });
        }
        if mode.contains(F::PUNCH_HOLE) && !mode.contains(F::KEEP_SIZE) {
            return Err(Errno::EOPNOTSUPP);
        }
        if mode.intersects(F::COLLAPSE_RANGE | F::INSERT_RANGE) && mode != punchy {
            return Err(Errno::EINVAL);
        }
        if mode.contains(F::UNSHARE_RANGE) && !punchy.is_empty() {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        self.check_write()?;
        if !self.inode().is_reg() {
            return Err(Errno::ENODEV);
        }
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > self.fs().max_file_size() {
            return Err(Errno::EFBIG);
        }
        let _exclusive = self.inode().rw.write();
        if mode.contains(F::PUNCH_HOLE) {
            self.punch_locked(off, len)
        } else if mode.contains(F::ZERO_RANGE) {
            self.zero_range_locked(off, len, mode.contains(F::KEEP_SIZE))
        } else if mode.contains(F::COLLAPSE_RANGE) {
            self.collapse_locked(off, len)
        } else if mode.contains(F::INSERT_RANGE) {
            self.insert_locked(off, len)
        } else {
            if mode.contains(F::UNSHARE_RANGE) {
                self.unshare_locked(off, len)?;
            }
            self.preallocate(off, len)?;
            if !mode.contains(F::KEEP_SIZE) {
                self.grow_to(end)?;
            }
            Ok(())
        }
    }

    fn bs(&self) -> u64 {
        self.fs().block_size()
    }

    /// Grows the size to `end` if it is smaller (zeroing the old EOF block's tail).
    fn grow_to(&self, end: u64) -> Result<()> {
        if end > self.size() {
            self.truncate_locked(end)?;
        }
        Ok(())
    }

    /// Makes the holes and delalloc of the blocks covering `[off, off + len)` UNWRITTEN blocks.
    fn preallocate(&self, off: u64, len: u64) -> Result<()> {
        let bs = self.bs();
        let ino = self.ino();
        let ops = &self.inode().ops;
        let (mut fb, end) = (off / bs, (off + len).div_ceil(bs));
        while fb < end {
            let m = self.fs().frond.map(ino, fb, end - fb, Fork::Data)?;
            let step = match m.kind {
                MapKind::Hole | MapKind::Delalloc => {
                    ops.mutate(|f| f.allocate(ino, fb, m.len, true, Fork::Data))?.len
                }
                MapKind::Inline => {
                    ops.mutate(|f| f.unstuff(ino))?;
                    continue;
                }
                _ => m.len,
            };
            fb += step.max(1);
        }
        Ok(())
    }

    fn punch_locked(&self, off: u64, len: u64) -> Result<()> {
        let bs = self.bs();
        let ino = self.ino();
        let ops = &self.inode().ops;
        self.unstuff_if_inline()?;
        iomap::punch_hole(self.inode().file(), self.inode().ops(), off, len, |s, e| {
            ops.mutate(|f| f.punch(ino, s / bs, (e - s) / bs))
        })
    }

    fn zero_range_locked(&self, off: u64, len: u64, keep_size: bool) -> Result<()> {
        let bs = self.bs();
        let ino = self.ino();
        let ops = &self.inode().ops;
        self.unstuff_if_inline()?;
        iomap::punch_hole(self.inode().file(), self.inode().ops(), off, len, |s, e| {
            ops.mutate(|f| {
                f.punch(ino, s / bs, (e - s) / bs)?;
                let mut fb = s / bs;
                while fb < e / bs {
                    fb += f.allocate(ino, fb, e / bs - fb, true, Fork::Data)?.len.max(1);
                }
                Ok(())
            })
        })?;
        if !keep_size {
            self.grow_to(off + len)?;
        }
        Ok(())
    }

    /// Inline files have no blocks to punch or shift: move the data to a block first.
    fn unstuff_if_inline(&self) -> Result<()> {
        let ino = self.ino();
        if self.fs().frond.map(ino, 0, 1, Fork::Data)?.kind == MapKind::Inline {
            self.inode().ops.mutate(|f| f.unstuff(ino))?;
        }
        Ok(())
    }

    /// Writes back and drops the cache from `off` to EOF (whole folios, clean after the
    /// writeback; the rw lock keeps them clean).
    fn flush_tail(&self, off: u64) -> Result<()> {
        let file = self.inode().file();
        write_and_wait(file, self.inode().ops(), off, u64::MAX)?;
        file.mapping().invalidate_range(off, u64::MAX)
    }

    fn collapse_locked(&self, off: u64, len: u64) -> Result<()> {
        let bs = self.bs();
        if !off.is_multiple_of(bs) || !len.is_multiple_of(bs) {
            return Err(Errno::EINVAL);
        }
        let size = self.size();
        if off + len >= size {
            return Err(Errno::EINVAL);
        }
        self.unstuff_if_inline()?;
        self.flush_tail(off)?;
        let ino = self.ino();
        self.inode().ops.mutate(|f| f.collapse(ino, off / bs, len / bs))?;
        let file = self.inode().file();
        file.set_size(size - len);
        file.set_disk_size(file.disk_size().min(size - len));
        Ok(())
    }

    fn insert_locked(&self, off: u64, len: u64) -> Result<()> {
        let bs = self.bs();
        if !off.is_multiple_of(bs) || !len.is_multiple_of(bs) {
            return Err(Errno::EINVAL);
        }
        let size = self.size();
        if off >= size {
            return Err(Errno::EINVAL);
        }
        if size.checked_add(len).is_none_or(|s| s > self.fs().max_file_size()) {
            return Err(Errno::EFBIG);
        }
        self.unstuff_if_inline()?;
        self.flush_tail(off)?;
        let ino = self.ino();
        // frond moves the extents and the in-core size; the on-disk size follows in the same
        // call, or a crash would cut off the shifted tail.
        self.inode().ops.mutate(|f| {
            f.insert(ino, off / bs, len / bs)?;
            f.set_disk_size(ino, size + len)
        })?;
        let file = self.inode().file();
        file.set_size(size + len);
        file.set_disk_size(size + len);
        Ok(())
    }

    /// Rewrites the shared extents of `[off, off + len)` (clamped to the size) through the
    /// cache and writes them back: the COW write path gives them private blocks.
    fn unshare_locked(&self, off: u64, len: u64) -> Result<()> {
        let bs = self.bs();
        let size = self.size();
        let end = off.saturating_add(len).min(size);
        let ino = self.ino();
        let mut fb = off / bs;
        while fb * bs < end {
            let last = end.div_ceil(bs);
            let m = self.fs().frond.map(ino, fb, last - fb, Fork::Data)?;
            if m.shared && m.kind == MapKind::Mapped {
                let mut pos = fb * bs;
                let stop = ((fb + m.len) * bs).min(end);
                let mut buf = vec![0u8; (1usize << 20).min((stop - pos) as usize)];
                while pos < stop {
                    let n = (buf.len() as u64).min(stop - pos) as usize;
                    let got = self.read_locked(pos, &mut buf[..n], false)?;
                    if got == 0 {
                        break;
                    }
                    self.write_locked(pos, &buf[..got], false)?;
                    pos += got as u64;
                }
                write_and_wait(self.inode().file(), self.inode().ops(), fb * bs, stop)?;
            }
            fb += m.len.max(1);
        }
        Ok(())
    }
}
