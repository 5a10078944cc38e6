//! frond's answers to the engine's direct-I/O mapping calls (op `DIRECT`, with `WRITE` for
//! writes): what [`IomapOps::next`](crate::iomap::IomapOps::next) returns for
//! [`iomap::direct_read`](crate::iomap::direct_read) and
//! [`iomap::direct_write`](crate::iomap::direct_write).
//!
//! - reads: the data fork as it is: MAPPED is read, HOLE and UNWRITTEN read as zeros, INLINE
//!   is copied from the inode. DELALLOC answers `ENOTBLK`: the engine wrote back the dirty
//!   cache over the range first, so a reservation still there has no data on disk; the rest of
//!   the read goes through the cache (which reads it as zeros), as Linux's `-EIO` for a
//!   delalloc extent under direct I/O would otherwise fail the read.
//! - writes, in this order:
//!   - inline data answers `ENOTBLK`: the engine writes the request buffered (which moves the
//!     data to a block once the write reaches past the inline area, as any direct write does:
//!     its length is at least one logical block) and writes it back before returning;
//!   - COW staging over the position (left by buffered writes or an earlier direct write):
//!     delalloc staging is allocated now; the staging extent is answered SHARED with the data
//!     extent as srcmap (cut to the shorter of the two);
//!   - a shared data extent (MAPPED or UNWRITTEN, reference count > 1): staging blocks are
//!     allocated in the COW fork now (`cow_prepare`) and answered SHARED over the data extent;
//!   - a hole, or delalloc without cached data (the engine flushed the range): blocks are
//!     allocated UNWRITTEN (flag NEW) for the request's part of it, as XFS's
//!     `xfs_direct_write_iomap_begin` allocates over holes and delalloc alike;
//!   - MAPPED or UNWRITTEN exclusive blocks: as they are.
//!
//!   A SHARED answer's own type is MAPPED when the srcmap is MAPPED (the engine reads the
//!   sub-block edges around from the old data) and UNWRITTEN otherwise (the engine zeroes
//!   them). Never HOLE or DELALLOC (the engine fails those with `EIO`).
//! - completion ([`IomapOps::ioend_done`](crate::iomap::IomapOps::ioend_done) with
//!   `IoendFlags::DIRECT`, see `mapping`): SHARED ranges are remapped into the data fork,
//!   UNWRITTEN ranges converted, the on-disk size raised to the end of the write (the engine
//!   raises the in-core size only afterwards); after an I/O error the staging is cancelled (the
//!   old data intact) and new blocks stay UNWRITTEN (read as zeros). Each is a frond
//!   transaction made after every data bio completed: data before the metadata exposing it.
//!
//! Lock order: called with the inode's map lock held (taken in `next`), frond's metadata lock
//! inside each frond call.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here | deviation |
//! |---|---|---|
//! | `xfs_read_iomap_begin` (direct) | `map_direct_read` | DELALLOC: `ENOTBLK` (continue buffered) instead of iomap's `-EIO` |
//! | `xfs_direct_write_iomap_begin` (`xfs_iomap_write_direct`, `imap_needs_alloc`) | `map_direct_write` | inline data (XFS has none for regular files): `ENOTBLK` |
//! | `xfs_reflink_allocate_cow(.., convert_now)` | staging allocated at mapping time | |
//! | `xfs_dio_write_end_io` | `ioend_done` with DIRECT | |

use super::inode::InodeOps;
use crate::frond::{Fork, MapKind, Mapping};
use crate::iomap::{IomapFlags, IomapPair, IomapType, MapRequest};
use crate::{Errno, Result};

/// Whether `kind` has blocks (MAPPED or UNWRITTEN).
fn is_real(kind: MapKind) -> bool {
    matches!(kind, MapKind::Mapped | MapKind::Unwritten)
}

impl InodeOps {
    /// Direct reads. See the module docs.
    pub(super) fn map_direct_read(&self, req: &MapRequest) -> Result<IomapPair> {
        let (fb, count) = self.blocks(req.pos, req.len);
        let m = self.map(fb, count, Fork::Data)?;
        if m.kind == MapKind::Delalloc {
            return Err(Errno::ENOTBLK);
        }
        Ok(IomapPair::new(self.iomap_of(&m)))
    }

    /// Direct writes. See the module docs.
    pub(super) fn map_direct_write(&self, req: &MapRequest) -> Result<IomapPair> {
        let (fb, count) = self.blocks(req.pos, req.len);
        if self.map(fb, count, Fork::Data)?.kind == MapKind::Inline {
            return Err(Errno::ENOTBLK);
        }
        let mut cow = self.map(fb, count, Fork::Cow)?;
        if cow.kind == MapKind::Delalloc {
            cow = self.frond.allocate(self.ino, fb, cow.len, true, Fork::Cow)?;
            self.bump();
        }
        let data = self.map(fb, cow.len, Fork::Data)?;
        if is_real(cow.kind) {
            return Ok(self.direct_cow_pair(cow, data));
        }
        match data.kind {
            MapKind::Hole | MapKind::Delalloc => {
                let m = self.frond.allocate(self.ino, fb, data.len, true, Fork::Data)?;
                self.bump();
                Ok(IomapPair::new(self.iomap_of(&m).with_flags(IomapFlags::NEW)))
            }
            MapKind::Mapped | MapKind::Unwritten if data.shared => {
                self.frond.cow_prepare(self.ino, fb, data.len)?;
                self.bump();
                let c = self.map(fb, data.len, Fork::Cow)?;
                if !is_real(c.kind) {
                    return Err(Errno::EIO);
                }
                Ok(self.direct_cow_pair(c, data))
            }
            MapKind::Inline => Err(Errno::ENOTBLK),
            MapKind::Mapped | MapKind::Unwritten => Ok(IomapPair::new(self.iomap_of(&data))),
        }
    }

    /// A direct write's COW pair: the staging extent `cow` (allocated) as SHARED over `data`
    /// (srcmap), cut to the shorter; MAPPED when the old data is (read around), else UNWRITTEN.
    fn direct_cow_pair(&self, cow: Mapping, data: Mapping) -> IomapPair {
        let len = cow.len.min(data.len);
        let src = self.iomap_of(&Mapping { len, ..data });
        let kind = if src.kind == IomapType::Mapped { IomapType::Mapped } else { IomapType::Unwritten };
        let mut staging = self.iomap_of(&Mapping { len, ..cow });
        staging.kind = kind;
        IomapPair::with_srcmap(staging.with_flags(IomapFlags::SHARED), src)
    }
}
