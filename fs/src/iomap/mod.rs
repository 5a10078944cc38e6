//! The iomap engine: file I/O through the page cache driven by one extent-mapping callback per
//! filesystem.
//!
//! # Pieces
//!
//! | module | owns |
//! |---|---|
//! | [`types`] | [`Iomap`], [`IomapType`], [`IomapFlags`], [`IomapOp`], request / outcome records |
//! | [`ops`] | [`IomapOps`]: the filesystem's callbacks (mapping `next`, `is_valid`, `ioend_done`, inline, `commit`) |
//! | [`iter`] | [`iterate`]: the mapping iterator and its continue / stale / livelock rules |
//! | [`context`] | [`IomapContext`]: device, cache, block size, completion queue, counters |
//! | [`mod@file`] | [`IomapFile`] (per inode: mapping, in-core and on-disk size), [`OpenFile`] (per opener) |
//! | [`mod@read`], [`mod@readahead`], `read_io` | buffered read, readahead windows, read bios |
//! | [`mod@write`], [`copy`] | buffered write, the data source trait |
//! | [`writeback`], `ioend`, `completion` | the dirty walk, ioends, completion work |
//! | [`sync`], [`writethrough`] | fsync / fdatasync, O_SYNC / O_DSYNC write-through |
//! | [`zero`] | zero range, truncate, punch hole (cache side) |
//! | [`dio`] | direct I/O (single and batched), coherence with the cache, [`invalidate_cache`] |
//! | [`unshare`] | making reflinked ranges exclusive |
//! | [`remap`] | clone range and dedupe range (the generic part around the filesystem's sharing) |
//! | [`dax`] | DAX: [`dax::DaxDevice`], reads / writes / zeroing / truncate without the cache, [`dax::copy_around`] |
//! | [`testfs`] | an in-memory test filesystem (a test double, compiled in normal builds), with reflink and a COW fork |
//! | [`selftest`] | the portable test suite ([`selftest::SUITE`], device `scratch0`) |
//! | [`mod@bench`], [`bench_dio`] | benchmark rows (buffered; direct I/O and COW) |
//!
//! # Using it (what a filesystem does)
//!
//! ```text
//! ctx  = IomapContext::new(queue, cache, block_size, IomapConfig::default())?;
//! cache.set_writeback_hooks(hooks);       // kick() must call ctx.kick(); request_writeback
//!                                         // runs writeback_range(.., Background) on files
//! file = ctx.new_file(size)?;             // per inode, next to the fs's IomapOps impl
//! open = file.open();                     // per opener: readahead + errseq
//! read(&file, &ops, &mut open, pos, buf)?;
//! write(&file, &ops, &mut open, pos, &mut SliceSource::new(data), WriteFlags::empty())?;
//! fsync(&file, &ops, &mut open, 0, u64::MAX, datasync)?;
//! truncate(&file, &ops, new_size, |size| fs_free_blocks_beyond(size))?;
//! ```
//!
//! # Lock order (engine-wide)
//!
//! file writeback flag > mapping invalidate lock > folio lock (one at a time, except readahead's
//! new folios, taken in index order) > mapping lock | LRU lock | completion-queue lock. The
//! filesystem's `next` and `is_valid` are called with at most one folio lock held and no
//! engine spin lock; `ioend_done` with no lock at all. Rule for filesystems: never wait for folio
//! writeback, a folio lock or I/O completion processing while holding a lock `ioend_done`
//! takes. Callers serialise writes / truncate / zero / punch / clone / unshare of one file
//! (Linux's `i_rwsem`); direct reads and aligned non-extending direct writes may run alongside
//! each other (see [`dio`]). Truncate, punch, clone / dedupe and [`invalidate_cache`] take the
//! invalidate lock exclusively and then wait for direct I/O in flight; direct I/O registers
//! under the invalidate lock held shared for an instant (the exception to the order above:
//! remap takes two invalidate locks, in address order).
//!
//! # Direct I/O, copy on write, DAX: what a filesystem and a file API call
//!
//! ```text
//! // direct I/O (pos, length: logical-block multiples; buffer: DMA-aligned)
//! direct_read(&file, &ops, &mut open, pos, &mut buf)?;
//! direct_write(&file, &ops, &mut open, pos, &data, WriteFlags::DSYNC)?;
//! direct_write_batch(&file, &ops, &mut open, &[DioWrite { pos, data }, ..], flags); // depth > 1
//! // copy on write
//! unshare_range(&file, &ops, pos, len)?;                       // FALLOC_FL_UNSHARE_RANGE
//! clone_range(RemapFile { file: &src, ops: &src_ops }, pos_in,
//!             RemapFile { file: &dst, ops: &dst_ops }, pos_out, len, |r| fs_share(r))?;
//! dedupe_range(.., |r| fs_share(r))?;                           // -> Deduped(n) | Differs
//! // DAX (the same bytes as the block device, through a DaxDevice)
//! dax_read(&dax, &file, &ops, pos, &mut buf)?;  dax_write(&dax, &file, &ops, pos, &data)?;
//! dax_zero_range(..)?;  dax_truncate(&dax, &file, &ops, size, |s| fs_truncate(s))?;
//! invalidate_cache(&file, &ops, start, end)?;                   // drop caches, waits for DIO
//! ```
//!
//! What the filesystem's [`IomapOps`] must do for them (see [`ops`] for the contract):
//!
//! - `next` with [`IomapOp::DIRECT`] | `WRITE`: allocate (UNWRITTEN + NEW is the safe choice
//!   for new blocks), never return HOLE or DELALLOC; answer `Err(ENOTBLK)` for ranges it will
//!   not map for direct I/O (inline data, reservations) and the engine continues buffered.
//! - writes (`WRITE`, `ZERO`, `WRITE | UNSHARE`, with or without `DIRECT` / `DAX`) to shared
//!   blocks: return the COW staging extent flagged [`IomapFlags::SHARED`] with the old data as
//!   srcmap (a reservation for buffered writes; allocated blocks for `DIRECT` and `DAX`); the
//!   writeback call returns the allocated staging flagged SHARED; `UNSHARE` never allocates
//!   holes.
//! - `ioend_done`: SHARED ranges are remapped (staging into the data fork, old blocks lose an
//!   owner) or, with an error, cancelled; UNWRITTEN converted; the on-disk size raised to
//!   `min(end, in-core size)`, or to `end` for [`IoendFlags::DIRECT`] (direct and DAX writes
//!   complete before the engine raises the in-core size). Direct ranges may start and end
//!   inside a block: the whole blocks they touch were written.
//! - clone / dedupe: the `share` callback maps the source's blocks into the destination (one
//!   more owner each, the destination's old blocks and staging there dropped) and records the
//!   destination's on-disk size (at least [`RemapRange::new_size`]).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `fs/iomap/iter.c` | [`iter`] | begin + end merged into `next` |
//! | `fs/iomap/buffered-io.c` | [`mod@read`], [`mod@write`], [`writeback`], [`zero`], [`unshare`] | |
//! | `fs/iomap/ioend.c`, XFS `xfs_end_io` | `ioend`, `completion` | completion work run by waiters and the kick hook |
//! | `mm/readahead.c` | [`mod@readahead`] | |
//! | XFS `xfs_file_fsync` | [`sync`] | |
//! | (not merged) buffered O_SYNC write-through | [`writethrough`] | new |
//! | `fs/iomap/direct-io.c` | [`dio`] | synchronous, with batches for depth; COW sub-block read-around instead of a buffered fallback |
//! | `fs/remap_range.c`, `xfs_reflink_remap_prep` | [`remap`] | |
//! | `fs/dax.c` (iomap parts) | [`dax`] | no mmap / faults; memory-backed region instead of NFIT |

pub mod bench;
pub mod bench_dio;
mod completion;
pub mod context;
pub mod copy;
pub mod dax;
pub mod dio;
pub mod file;
mod ioend;
pub mod iter;
pub mod ops;
pub mod read;
mod read_io;
pub mod readahead;
pub mod remap;
pub mod selftest;
pub mod sync;
pub mod testfs;
pub mod types;
pub mod unshare;
pub mod write;
pub mod writeback;
pub mod writethrough;
pub mod zero;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dio;
#[cfg(test)]
mod tests_dio_shape;

pub use context::{IomapConfig, IomapContext, IomapStats};
pub use copy::{CopySource, SliceSource};
pub use dax::{copy_around, dax_read, dax_truncate, dax_write, dax_zero_range, DaxDevice, RamDax};
pub use dio::{
    direct_read, direct_read_batch, direct_write, direct_write_batch, invalidate_cache, DioRead, DioWrite,
};
pub use file::{IomapFile, OpenFile, MAX_FILE_SIZE};
pub use iter::{iterate, IomapIter, Progress, Step, MAX_STALE_RETRIES};
pub use ops::IomapOps;
pub use read::{fill_folio, read};
pub use readahead::{readahead, FileRa, RaWindow};
pub use remap::{clone_range, dedupe_range, DedupeOutcome, RemapFile, RemapRange};
pub use sync::{fsync, wait_writeback_range, write_and_wait};
pub use types::{
    IoendDone, IoendFlags, Iomap, IomapFlags, IomapOp, IomapPair, IomapType, MapDone, MapRequest, NULL_ADDR,
};
pub use unshare::unshare_range;
pub use write::{write, WriteFlags};
pub use writeback::{writeback_range, WritebackMode, WritebackOutcome};
pub use zero::{punch_hole, truncate, truncate_page, zero_range};
