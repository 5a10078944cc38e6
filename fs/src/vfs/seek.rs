//! `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)`.
//!
//! Data is what reads back other than from a hole: written extents, delayed allocations (dirty
//! cache), inline data, and unwritten extents where the page cache holds folios (dirty or
//! uptodate data not yet converted); everything else is a hole, and EOF is a hole. An offset
//! at or past the size is `ENXIO`, so is SEEK_DATA finding no data before EOF.
//!
//! Lock order: the inode's rw lock shared, then frond's metadata lock per extent lookup.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `iomap_seek_data` / `iomap_seek_hole` (+ `mapping_seek_hole_data` for unwritten) | [`File::seek`] | an unwritten extent with any cached folio counts as data per folio, not per block |

use super::file::File;
use super::flags::Whence;
use crate::frond::{Fork, MapKind};
use crate::platform::PAGE_SHIFT;
use crate::{Errno, Result};

impl File {
    /// The offset of the first data ([`Whence::Data`]) or hole ([`Whence::Hole`]) at or after
    /// `off`. See the module docs.
    pub fn seek(&self, off: u64, whence: Whence) -> Result<u64> {
        if self.inode().is_dir() {
            return Err(Errno::EINVAL);
        }
        let _shared = self.inode().rw.read();
        let size = self.size();
        if off >= size {
            return Err(Errno::ENXIO);
        }
        let want_data = whence == Whence::Data;
        let bs = self.fs().block_size();
        let last = size.div_ceil(bs);
        let mut fb = off / bs;
        while fb < last {
            let m = self.fs().frond.map(self.ino(), fb, last - fb, Fork::Data)?;
            let len = m.len.max(1);
            let seg_start = (fb * bs).max(off);
            match m.kind {
                MapKind::Hole if want_data => {}
                MapKind::Hole => return Ok(seg_start),
                MapKind::Unwritten => {
                    // Per page: cached pages are data, the rest is hole.
                    let seg_end = ((fb + len) * bs).min(size);
                    let mut p = seg_start;
                    while p < seg_end {
                        let cached = self.inode().file().mapping().get(p >> PAGE_SHIFT).is_some();
                        if cached == want_data {
                            return Ok(p);
                        }
                        p = ((p >> PAGE_SHIFT) + 1) << PAGE_SHIFT;
                    }
                }
                _ if want_data => return Ok(seg_start),
                _ => {}
            }
            fb += len;
        }
        if want_data {
            Err(Errno::ENXIO)
        } else {
            Ok(size)
        }
    }
}
