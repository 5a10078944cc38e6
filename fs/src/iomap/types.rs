//! The mapping vocabulary shared by the engine and every filesystem: [`Iomap`] (one extent of a
//! file and where its bytes live), its [`IomapType`] and [`IomapFlags`], the operation a
//! mapping is asked for ([`IomapOp`]), and the request / outcome records the iterator passes to
//! the filesystem's [`IomapOps::next`](super::IomapOps::next).
//!
//! Owns no state. Lock order: none (plain values).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct iomap` (`addr`, `offset`, `length`, `type`, `flags`, `validity_cookie`) | [`Iomap`] | no `bdev`/`dax_dev`/`inline_data` pointer: one device per [`IomapContext`](super::IomapContext), inline bytes through [`IomapOps::read_inline`](super::IomapOps::read_inline) |
//! | `IOMAP_HOLE/DELALLOC/MAPPED/UNWRITTEN/INLINE` | [`IomapType`] | |
//! | `IOMAP_F_NEW/DIRTY/SHARED/BOUNDARY`, `IOMAP_F_SIZE_CHANGED/STALE` | [`IomapFlags`] | |
//! | `IOMAP_WRITE/ZERO/REPORT/DIRECT/NOWAIT/OVERWRITE_ONLY/UNSHARE/DAX` | [`IomapOp`] | plus `WRITEBACK` (Linux: a separate `->writeback_range`) |
//! | `IOMAP_NULL_ADDR` | [`NULL_ADDR`] | |
//! | srcmap with `type == IOMAP_HOLE` = "no source" | [`Iomap::NONE`] / [`Iomap::is_hole`] | |

use crate::{Errno, Result};

/// The disk address of mappings that have none (HOLE, DELALLOC, INLINE).
pub const NULL_ADDR: u64 = u64::MAX;

/// What a range of a file is backed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IomapType {
    /// No blocks: reads return zeros; a write needs the filesystem to allocate.
    Hole,
    /// Space reserved, no disk address yet (delayed allocation): reads zeros unless cached;
    /// buffered writes only. Writeback asks again with [`IomapOp::WRITEBACK`] and gets an
    /// allocated mapping.
    Delalloc,
    /// Allocated, holding valid data at `addr`.
    Mapped,
    /// Allocated at `addr`, not yet written: reads zeros; written data is converted at I/O
    /// completion.
    Unwritten,
    /// The data lives in the inode (see [`IomapOps::read_inline`](super::IomapOps::read_inline)).
    Inline,
}

bitflags::bitflags! {
    /// Mapping flags. NEW, DIRTY, SHARED and BOUNDARY are set by the filesystem; SIZE_CHANGED
    /// and STALE by the engine (a filesystem returning them gets `EIO`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct IomapFlags: u16 {
        /// Newly allocated or reserved by this mapping call: blocks read as zeros (a buffered
        /// write zeroes the unwritten parts of a block instead of reading it).
        const NEW = 1 << 0;
        /// Metadata needed to read the data is not yet committed: fdatasync must commit.
        const DIRTY = 1 << 1;
        /// The mapping is a copy-on-write destination; the old data is in the srcmap.
        const SHARED = 1 << 2;
        /// Never merge write I/O across the start of this mapping.
        const BOUNDARY = 1 << 3;
        /// Set by the engine: the operation changed the in-core file size.
        const SIZE_CHANGED = 1 << 8;
        /// Set by the engine: the mapping went stale under it and must be looked up again.
        const STALE = 1 << 9;
    }
}

impl IomapFlags {
    /// The flags only the engine may set.
    pub const CORE: IomapFlags = IomapFlags::SIZE_CHANGED.union(IomapFlags::STALE);
}

bitflags::bitflags! {
    /// The operation a mapping is asked for (Linux's `IOMAP_*` iterator flags). The empty set is
    /// a buffered read.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct IomapOp: u32 {
        /// A write (buffered or direct): the filesystem reserves or allocates.
        const WRITE = 1 << 0;
        /// Zeroing a range.
        const ZERO = 1 << 1;
        /// Reporting the mapping (fiemap, seek data/hole).
        const REPORT = 1 << 2;
        /// Direct I/O.
        const DIRECT = 1 << 4;
        /// Do not block.
        const NOWAIT = 1 << 5;
        /// Only pure overwrites of allocated, written blocks are allowed.
        const OVERWRITE_ONLY = 1 << 6;
        /// Unsharing reflinked blocks (with WRITE; holes are not allocated).
        const UNSHARE = 1 << 7;
        /// DAX access (alone for reads, with WRITE or ZERO).
        const DAX = 1 << 8;
        /// The writeback mapping call: the filesystem must return an allocated mapping (it
        /// converts delayed allocations here) or a hole.
        const WRITEBACK = 1 << 9;
    }
}

/// One mapping: `[offset, offset + length)` of the file is `kind`, at disk byte `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Iomap {
    /// File byte offset of the mapping's start.
    pub offset: u64,
    /// Length in bytes (> 0 for every mapping the filesystem returns).
    pub length: u64,
    /// Disk byte address of `offset` ([`NULL_ADDR`] for HOLE, DELALLOC and INLINE).
    pub addr: u64,
    /// What backs the range.
    pub kind: IomapType,
    /// Flags.
    pub flags: IomapFlags,
    /// The filesystem's validity cookie (a mapping sequence number) taken when it built the
    /// mapping; [`IomapOps::is_valid`](super::IomapOps::is_valid) compares it.
    pub validity: u64,
}

impl Iomap {
    /// "No mapping": the srcmap value meaning "no separate source".
    pub const NONE: Iomap = Iomap::hole(0, 0);

    /// A hole over `[offset, offset + length)`.
    pub const fn hole(offset: u64, length: u64) -> Self {
        Self {
            offset,
            length,
            addr: NULL_ADDR,
            kind: IomapType::Hole,
            flags: IomapFlags::empty(),
            validity: 0,
        }
    }

    /// A mapping of `kind` over `[offset, offset + length)` at disk byte `addr`.
    pub const fn new(offset: u64, length: u64, addr: u64, kind: IomapType) -> Self {
        Self { offset, length, addr, kind, flags: IomapFlags::empty(), validity: 0 }
    }

    /// With `flags` added.
    pub const fn with_flags(mut self, flags: IomapFlags) -> Self {
        self.flags = self.flags.union(flags);
        self
    }

    /// With validity cookie `validity`.
    pub const fn with_validity(mut self, validity: u64) -> Self {
        self.validity = validity;
        self
    }

    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }

    /// True when the mapping covers byte `pos`.
    pub fn contains(&self, pos: u64) -> bool {
        pos >= self.offset && pos < self.end()
    }

    /// True for HOLE (as a srcmap: "no source").
    pub fn is_hole(&self) -> bool {
        self.kind == IomapType::Hole
    }

    /// True when the mapping has a disk address (MAPPED or UNWRITTEN).
    pub fn has_addr(&self) -> bool {
        matches!(self.kind, IomapType::Mapped | IomapType::Unwritten)
    }

    /// The disk byte address of file byte `pos` (inside the mapping, MAPPED or UNWRITTEN).
    pub fn disk_addr(&self, pos: u64) -> Result<u64> {
        if !self.has_addr() || !self.contains(pos) {
            return Err(Errno::EIO);
        }
        self.addr.checked_add(pos - self.offset).ok_or(Errno::EIO)
    }

    /// Checks a mapping a filesystem returned for a request at `pos`: it covers `pos`, has a
    /// length, carries no engine-only flag, is aligned to `block_size` (every type but INLINE),
    /// and MAPPED / UNWRITTEN have an aligned, non-overflowing disk address. `EIO` otherwise.
    /// (A hole "to the end of the file" may use [`MAX_FILE_SIZE`](super::MAX_FILE_SIZE) as its
    /// end: it is aligned to every block size.)
    pub fn check_for(&self, pos: u64, block_size: u64) -> Result<()> {
        let bs_mask = block_size - 1;
        let ok = self.length > 0
            && self.offset.checked_add(self.length).is_some()
            && self.contains(pos)
            && !self.flags.intersects(IomapFlags::CORE);
        if !ok {
            return Err(Errno::EIO);
        }
        match self.kind {
            IomapType::Mapped | IomapType::Unwritten => {
                let aligned =
                    self.offset & bs_mask == 0 && self.length & bs_mask == 0 && self.addr & bs_mask == 0;
                if !aligned || self.addr == NULL_ADDR || self.addr.checked_add(self.length).is_none() {
                    return Err(Errno::EIO);
                }
            }
            IomapType::Hole | IomapType::Delalloc
                if self.offset & bs_mask != 0 || self.length & bs_mask != 0 =>
            {
                return Err(Errno::EIO)
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the filesystem returns for a mapping request: the mapping and its source map (for
/// copy-on-write: where the old data is read from; [`Iomap::NONE`] or any HOLE when there is
/// none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IomapPair {
    /// The mapping the operation writes to (or reads from).
    pub iomap: Iomap,
    /// The source of old data for read-modify-write; HOLE = none.
    pub srcmap: Iomap,
}

impl IomapPair {
    /// A mapping without a source map.
    pub fn new(iomap: Iomap) -> Self {
        Self { iomap, srcmap: Iomap::NONE }
    }

    /// A mapping with a source map.
    pub fn with_srcmap(iomap: Iomap, srcmap: Iomap) -> Self {
        Self { iomap, srcmap }
    }
}

/// A mapping request: the range still to do and the operation. `len == 0` is the closing call
/// of an iteration (the filesystem finishes the previous mapping and returns `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    /// File byte position.
    pub pos: u64,
    /// Bytes still to map from `pos` (0 on the closing call).
    pub len: u64,
    /// The operation.
    pub op: IomapOp,
}

impl MapRequest {
    /// True for the closing call.
    pub fn is_finish(&self) -> bool {
        self.len == 0
    }
}

/// The outcome of the previous mapping, passed with the next request (Linux's `iomap_end`
/// arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDone {
    /// Where the engine started using the mapping.
    pub pos: u64,
    /// How many bytes of it the engine was offered (`iomap_length`).
    pub len: u64,
    /// How many it processed (`<= len`).
    pub processed: u64,
    /// The mapping as the engine left it (STALE / SIZE_CHANGED set by the engine).
    pub iomap: Iomap,
    /// Its source map.
    pub srcmap: Iomap,
    /// The error that stopped the operation, if any.
    pub error: Option<Errno>,
}

bitflags::bitflags! {
    /// What kind of write an ioend carried (ioends merge only with equal flags).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct IoendFlags: u8 {
        /// Written into UNWRITTEN blocks: convert at completion.
        const UNWRITTEN = 1 << 0;
        /// Written into a copy-on-write destination: remap (or cancel on error) at completion.
        const SHARED = 1 << 1;
        /// Direct I/O (and DAX): completed in the writer's context, the range exactly as
        /// written, the in-core size raised after completion (see [`IomapOps::ioend_done`](super::IomapOps::ioend_done)).
        const DIRECT = 1 << 2;
    }
}

impl IoendFlags {
    /// The ioend flags of a write into `iomap`.
    pub fn for_iomap(iomap: &Iomap) -> Self {
        let mut f = IoendFlags::empty();
        if iomap.kind == IomapType::Unwritten {
            f |= IoendFlags::UNWRITTEN;
        }
        if iomap.flags.contains(IomapFlags::SHARED) {
            f |= IoendFlags::SHARED;
        }
        f
    }
}

/// Completion work handed to [`IomapOps::ioend_done`](super::IomapOps::ioend_done): the file
/// range a finished write covered (possibly several merged ioends) and how it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoendDone {
    /// File byte offset.
    pub offset: u64,
    /// Bytes, clamped to the in-core size when the write was built.
    pub size: u64,
    /// What kind of write it was.
    pub flags: IoendFlags,
    /// The I/O error, if the write failed.
    pub error: Option<Errno>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_for_rejects_what_the_engine_cannot_use() {
        let bs = 4096;
        let m = Iomap::new(4096, 8192, 1 << 20, IomapType::Mapped);
        assert_eq!(m.check_for(4096, bs), Ok(()));
        assert_eq!(m.check_for(12287, bs), Ok(()));
        assert_eq!(m.check_for(12288, bs), Err(Errno::EIO), "past the end");
        assert_eq!(m.check_for(4095, bs), Err(Errno::EIO), "before the start");
        assert_eq!(Iomap { length: 0, ..m }.check_for(4096, bs), Err(Errno::EIO));
        assert_eq!(Iomap { addr: 100, ..m }.check_for(4096, bs), Err(Errno::EIO), "unaligned address");
        assert_eq!(Iomap { addr: NULL_ADDR, ..m }.check_for(4096, bs), Err(Errno::EIO));
        assert_eq!(Iomap { length: 100, ..m }.check_for(4096, bs), Err(Errno::EIO));
        assert_eq!(m.with_flags(IomapFlags::STALE).check_for(4096, bs), Err(Errno::EIO));
        assert_eq!(Iomap::hole(4096, 4096).check_for(5000, bs), Ok(()));
        assert_eq!(Iomap::hole(10, 5).check_for(12, bs), Err(Errno::EIO), "holes are block aligned too");
        assert_eq!(
            Iomap::new(0, 60, NULL_ADDR, IomapType::Inline).check_for(12, bs),
            Ok(()),
            "inline is not"
        );
        assert_eq!(
            Iomap::new(u64::MAX - 10, 100, 0, IomapType::Hole).check_for(u64::MAX - 5, bs),
            Err(Errno::EIO)
        );
        assert_eq!(m.disk_addr(5000), Ok((1 << 20) + 904));
        assert_eq!(Iomap::hole(0, 10).disk_addr(0), Err(Errno::EIO));
    }
}
