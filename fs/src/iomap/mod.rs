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
//! | [`testfs`] | an in-memory test filesystem (a test double, compiled in normal builds) |
//! | [`selftest`] | the portable test suite ([`selftest::SUITE`], device `scratch0`) |
//! | [`mod@bench`] | benchmark rows |
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
//! takes. Callers serialise writes / truncate / zero / punch of one file (Linux's `i_rwsem`).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `fs/iomap/iter.c` | [`iter`] | begin + end merged into `next` |
//! | `fs/iomap/buffered-io.c` | [`mod@read`], [`mod@write`], [`writeback`], [`zero`] | |
//! | `fs/iomap/ioend.c`, XFS `xfs_end_io` | `ioend`, `completion` | completion work run by waiters and the kick hook |
//! | `mm/readahead.c` | [`mod@readahead`] | |
//! | XFS `xfs_file_fsync` | [`sync`] | |
//! | (not merged) buffered O_SYNC write-through | [`writethrough`] | new |
//! | `fs/iomap/direct-io.c`, COW, DAX | the next step (issue 6): [`IomapOp::DIRECT`], [`IomapFlags::SHARED`], srcmap and [`IoendFlags::DIRECT`] / [`IoendFlags::SHARED`] are in place | |
//!
//! # Next: direct I/O, copy-on-write, DAX (issue 6) — how they plug in
//!
//! The contract above already carries what they need; nothing in it changes.
//!
//! - **Direct I/O** (`dio.rs`): [`iterate`] with [`IomapOp::DIRECT`] (plus `WRITE`, `NOWAIT`,
//!   `OVERWRITE_ONLY` as asked). Before: alignment check (pos, length and buffer against the
//!   device's logical block size and DMA alignment, `EINVAL`), [`write_and_wait`] over the range,
//!   `Mapping::invalidate_range` for writes (`EBUSY` → fall back to buffered), and a
//!   `Mapping::dio_begin` guard held until completion (truncate and clone wait with
//!   `Mapping::wait_dio`). Per mapping: HOLE / UNWRITTEN reads zero-fill the user buffer; HOLE or
//!   DELALLOC for a write is `EIO`; NEW / UNWRITTEN writes zero the sub-block head and tail (tail
//!   too when reaching EOF) with extra bios; a filesystem answering "not for direct I/O" partway (Linux: `ENOTBLK`, an errno to add) ends the
//!   DIO part and the rest goes buffered. Bios point at the caller's memory (bounced through a
//!   `DmaBuffer` when `Platform::dma_address` refuses). Completion is a write ioend with
//!   [`IoendFlags::DIRECT`] (plus UNWRITTEN / SHARED): it reuses the completion queue and
//!   [`IomapOps::ioend_done`] (conversion, COW remap, size update at completion), then invalidates
//!   the range again. O_DSYNC: pure overwrites (MAPPED, not NEW / SHARED / DIRTY) carry FUA; the
//!   rest commits after completion, exactly as write-through does now.
//! - **Copy on write**: the filesystem returns the COW destination as the iomap with
//!   [`IomapFlags::SHARED`] and the old data as the srcmap. Buffered writes already read
//!   partial blocks from [`IomapIter::read_source`], write-through already refuses SHARED /
//!   srcmap mappings, and writeback already turns SHARED into [`IoendFlags::SHARED`] ioends that
//!   never merge with plain ones and always get `ioend_done` (remap, or cancel on error). Left to
//!   add: `unshare_range` (op UNSHARE, only SHARED iomap over a MAPPED srcmap) and reflink-aware
//!   zeroing (`zero_range` on a SHARED iomap must copy around, not skip).
//! - **DAX** (`dax.rs`): op DAX; the iomap's address is device memory the platform maps.
//!   `copy_around(pos, len, align, srcmap, dst)` copies head and tail from the srcmap (zeros for
//!   HOLE / UNWRITTEN) before the user data; reads of HOLE / UNWRITTEN return zeros. It needs a
//!   `Platform` hook to map device memory, the only porting-surface addition expected.

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

pub use context::{IomapConfig, IomapContext, IomapStats};
pub use copy::{CopySource, SliceSource};
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
