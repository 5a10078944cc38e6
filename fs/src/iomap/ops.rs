//! [`IomapOps`]: the one callback interface a filesystem implements for the engine, on its
//! per-inode object, used as `Arc<dyn IomapOps>`.
//!
//! # The contract
//!
//! - [`IomapOps::next`] is the mapping callback, `iomap_begin` and `iomap_end` merged. An
//!   operation over `[pos, pos + len)` first calls `next(req, None)`; the filesystem returns the
//!   mapping covering `req.pos` (and a srcmap for copy-on-write). The engine uses as much of it
//!   as it can, then calls `next` with the rest of the range *and* the outcome of the previous
//!   mapping ([`MapDone`]: how much was processed, the mapping with engine flags, the error). When
//!   the operation is over it calls `next` once more with `req.len == 0` and the last outcome:
//!   the filesystem does its end work (for example punching delalloc reserved beyond a short
//!   write) and returns `None`. If `next` itself fails the engine stops without another call:
//!   the filesystem has finished (or abandoned) the previous mapping itself.
//!   Writeback calls (`op` contains [`IomapOp::WRITEBACK`]) are stateless: `prev` is `None` and
//!   there is no closing call; the filesystem converts delayed allocations there and returns
//!   MAPPED, UNWRITTEN or HOLE.
//!   Calls are per extent: return the whole extent covering `req.pos` (it may extend before
//!   `pos` and beyond `pos + len`), never one block.
//!
//!   Operations and what they need (see the module docs of [`dio`](super::dio),
//!   [`unshare`](super::unshare) and [`dax`](super::dax)):
//!   - `DIRECT` (read) / `DIRECT | WRITE`: a write must get allocated blocks (MAPPED, or
//!     UNWRITTEN + NEW for new ones), never HOLE or DELALLOC; `Err(ENOTBLK)` says "not for
//!     direct I/O here" (inline data, reservations): the engine finishes what it did directly
//!     and continues buffered. The closing call follows as usual.
//!   - Copy on write: a write (`WRITE`, `ZERO`, `WRITE | UNSHARE`, also with `DIRECT` or
//!     `DAX`) over shared blocks returns the staging extent flagged
//!     [`IomapFlags::SHARED`](super::IomapFlags::SHARED) with the old data as the srcmap (SHARED
//!     only together with a srcmap, or with no old data at all); buffered writes may get a
//!     DELALLOC reservation, `DIRECT` and `DAX` need allocated staging. The writeback call
//!     returns the allocated staging flagged SHARED. Mappings offered for in-place writes must
//!     not cover shared blocks. `UNSHARE` never allocates holes.
//!   - `DAX` / `DAX | WRITE` / `DAX | ZERO`: as direct I/O, the address being a byte offset on
//!     the DAX device; no DELALLOC for writes (there is no writeback).
//! - [`IomapOps::is_valid`]: after locking a folio the engine asks whether the mapping it holds
//!   is still current (compare `iomap.validity` with the file's mapping sequence). If not, the
//!   engine unlocks and maps again.
//! - [`IomapOps::ioend_done`]: completion work for written ranges that need it (unwritten
//!   conversion, copy-on-write remap or, when `error` is set, cancel; on-disk size =
//!   `min(end, in-core size)`). Runs in process context (from
//!   [`IomapContext::process_completions`](super::IomapContext::process_completions), or in the
//!   writer's own context for direct and DAX writes), never inside a bio completion. For
//!   buffered writes the folios stay under writeback until it returned. With
//!   [`IoendFlags::DIRECT`](super::IoendFlags::DIRECT) (direct and DAX writes) the range is
//!   exactly what was written (it may start and end inside a block; the whole blocks it touches
//!   were written, sub-block edges zeroed or copied), and the on-disk size becomes `end` if
//!   larger: the engine raises the in-core size only after `ioend_done` returned.
//! - [`IomapOps::read_inline`] / [`IomapOps::write_inline`]: inline data (only for filesystems
//!   that return INLINE mappings).
//! - [`IomapOps::commit`]: make durable the metadata needed to read the data written so far.
//!
//! Lock rule (the one that keeps everything deadlock free): no method may wait for a folio
//! lock, folio writeback or I/O completion processing while holding a filesystem lock that
//! `ioend_done` takes, and `next` / `is_valid` must not wait for folio locks at all (the engine
//! may hold one). Synchronous metadata I/O of its own is fine.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `iomap_ops->iomap_begin` + `->iomap_end` | [`IomapOps::next`] | merged (the 2026 `iomap_next_fn` shape) |
//! | `iomap_writeback_ops->writeback_range` (`->map_blocks`) | `next` with [`IomapOp::WRITEBACK`] | same callback |
//! | `iomap_write_ops->iomap_valid` | [`IomapOps::is_valid`] | |
//! | `xfs_end_ioend` / `->submit_ioend` completion | [`IomapOps::ioend_done`] | called with merged ranges |
//! | `iomap->inline_data` pointer | [`IomapOps::read_inline`], [`IomapOps::write_inline`] | copies instead of a pointer |
//! | `xfs_file_fsync` log force | [`IomapOps::commit`] | |

use super::types::{IoendDone, Iomap, IomapPair, MapDone, MapRequest};
use crate::{Errno, Result};

#[cfg(doc)]
use super::types::IomapOp;

/// The filesystem side of the engine. See the module documentation.
pub trait IomapOps: Send + Sync {
    /// The mapping covering `req.pos` (begin), after finishing `prev` (end). `Ok(None)` only on
    /// the closing call (`req.len == 0`).
    fn next(&self, req: MapRequest, prev: Option<&MapDone>) -> Result<Option<IomapPair>>;

    /// Whether `iomap` still describes the file (its validity cookie is current).
    fn is_valid(&self, iomap: &Iomap) -> bool;

    /// Completion work for a written range. An error return is recorded on the file's mapping
    /// (fsync reports it).
    fn ioend_done(&self, done: &IoendDone) -> Result<()>;

    /// Copies the inline data of `iomap` (an INLINE mapping) from its start into `buf`
    /// (`buf.len()` = in-core size - `iomap.offset`). The default has no inline data: `EIO`.
    fn read_inline(&self, iomap: &Iomap, buf: &mut [u8]) -> Result<()> {
        let _ = (iomap, buf);
        Err(Errno::EIO)
    }

    /// Writes `data` into the inline area of `iomap` at byte `offset` of the mapping and dirties
    /// the inode. The default has no inline data: `EIO`.
    fn write_inline(&self, iomap: &Iomap, offset: u64, data: &[u8]) -> Result<()> {
        let _ = (iomap, offset, data);
        Err(Errno::EIO)
    }

    /// Makes durable the metadata needed to read the data written so far (allocations,
    /// conversions, remaps, the on-disk size; with `datasync == false` also the rest of the
    /// inode). Returns `true` if it wrote a commit; that commit carried PREFLUSH + FUA, so no
    /// separate device flush is needed. `false`: nothing needed committing (the engine flushes).
    fn commit(&self, datasync: bool) -> Result<bool>;
}
