//! Untorn writes of several blocks (`pwritev2(RWF_ATOMIC)` longer than a block), as XFS writes
//! them without atomic-write hardware: out of place, then one remap transaction.
//!
//! [`File::write_atomic`](super::File::write_atomic) checks the rules (in `file`); a write of
//! one block goes the ordinary direct path (one bio into one block). A longer one, under the
//! inode's rw lock held exclusively:
//!
//! 1. a write starting past EOF first extends the size to its start (the old EOF block's tail
//!    zeroed, as a clone does); inline data moves to a block;
//! 2. dirty cache over the range is written back and the range's cache dropped;
//! 3. every block of the range gets COW staging ([`Frond::cow_stage_all`]: new blocks,
//!    recorded on disk as staging so a crash frees them at the next mount);
//! 4. the data is written to the staging blocks and waited for (an error cancels the staging:
//!    the file is unchanged);
//! 5. one frond operation ([`Frond::cow_remap_atomic`]) maps all the staging blocks written
//!    into the data fork, releases the old blocks, and sets the size when the write extends
//!    the file: one transaction, so after a crash the range is wholly old or wholly new.
//!
//! Lock order: the inode's rw lock (held by the caller), then the engine, then the map lock
//! around frond's calls.
//!
//! # Linux <-> here
//!
//! | Linux (XFS, 6.16+) | here |
//! |---|---|
//! | `xfs_file_dio_write_atomic` falling back to `xfs_atomic_write_cow_iomap_begin` | [`File::write_atomic_blocks`] |
//! | `xfs_reflink_allocate_cow` (all blocks, shared or not) | [`Frond::cow_stage_all`] |
//! | `xfs_reflink_end_atomic_cow` | [`Frond::cow_remap_atomic`] |
//! | `STATX_WRITE_ATOMIC`: unit min = block size, unit max (2 MiB on a 2 GiB XFS, 4 KiB blocks) | [`ATOMIC_WRITE_MAX`] |
//!
//! [`Frond::cow_stage_all`]: crate::frond::Frond::cow_stage_all
//! [`Frond::cow_remap_atomic`]: crate::frond::Frond::cow_remap_atomic

use super::file::File;
use crate::block::sync::write_at;
use crate::block::BioFlags;
use crate::frond::{Fork, MapKind};
use crate::iomap::write_and_wait;
use crate::{Errno, Result};

/// The largest untorn write: what XFS reports as `stx_atomic_write_unit_max` on the reference
/// filesystem (Linux 6.18, `mkfs.xfs -m reflink=1 -b size=4096`, 2 GiB). The smallest is the
/// filesystem block size.
pub const ATOMIC_WRITE_MAX: u64 = 2 << 20;

impl File {
    /// Writes `data` (a whole number of blocks) at the block-aligned `pos` untorn, out of place.
    /// The rw lock is held exclusively by the caller. See the module docs.
    pub(crate) fn write_atomic_blocks(&self, pos: u64, data: &[u8]) -> Result<usize> {
        let bs = self.fs().block_size();
        let len = data.len() as u64;
        let end = pos.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > self.fs().max_file_size() {
            return Err(Errno::EFBIG);
        }
        let ino = self.ino();
        let ops = &self.inode().ops;
        let frond = self.fs().frond();
        if frond.map(ino, 0, 1, Fork::Data)?.kind == MapKind::Inline {
            ops.mutate(|f| f.unstuff(ino))?;
        }
        if pos > self.size() {
            self.truncate_locked(pos)?;
        }
        let old_size = self.size();
        let file = self.inode().file();
        write_and_wait(file, self.inode().ops(), pos, end)?;
        file.mapping().invalidate_range(pos, end)?;
        let (fb, count) = (pos / bs, len / bs);
        ops.mutate(|f| f.cow_stage_all(ino, fb, count))?;
        let written = self.write_staging(fb, count, data);
        let new_size = (end > old_size).then_some(end);
        let remapped = written.and_then(|()| ops.mutate(|f| f.cow_remap_atomic(ino, fb, count, new_size)));
        if let Err(e) = remapped {
            // Nothing of the write is visible; the staging blocks go back.
            let _ = ops.mutate(|f| f.cow_cancel(ino, fb, count));
            return Err(e);
        }
        if let Some(s) = new_size {
            file.set_size(s);
            file.set_disk_size(s);
        }
        self.after_write(old_size);
        Ok(data.len())
    }

    /// Writes `data` into the COW staging blocks of file blocks `[fb, fb + count)`.
    fn write_staging(&self, fb: u64, count: u64, data: &[u8]) -> Result<()> {
        let bs = self.fs().block_size();
        let dev = self.fs().ctx().device();
        let mut b = fb;
        while b < fb + count {
            let m = self.fs().frond().map(self.ino(), b, fb + count - b, Fork::Cow)?;
            if !matches!(m.kind, MapKind::Mapped | MapKind::Unwritten) {
                return Err(Errno::EIO);
            }
            let at = ((b - fb) * bs) as usize;
            let part = &data[at..at + (m.len * bs) as usize];
            write_at(&**dev, self.fs().platform(), m.disk_block * bs, part, BioFlags::empty())?;
            b += m.len;
        }
        Ok(())
    }
}
