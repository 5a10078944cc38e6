//! Direct I/O: reads and writes between the caller's buffer and the device, bypassing the page
//! cache but coherent with it.
//!
//! # Entry points (what a file API calls)
//!
//! ```text
//! direct_read(&file, &ops, &mut open, pos, &mut buf)?            -> bytes read (0 at EOF)
//! direct_write(&file, &ops, &mut open, pos, &data, WriteFlags)?   -> bytes written
//! direct_read_batch(&file, &ops, &mut open, &mut [DioRead])       -> Vec<Result<bytes>>
//! direct_write_batch(&file, &ops, &mut open, &[DioWrite], flags)  -> Vec<Result<bytes>>
//! ```
//!
//! The batch calls are the asynchronous form (queue depth > 1 for a synchronous API): every
//! bio of every request is submitted before the call waits, then each request is completed.
//! Requests lying back to back are mapped by one iteration (one mapping call per extent, not
//! per request; `walk`), and back-to-back write requests whose bios all succeeded complete
//! together (one [`IomapOps::ioend_done`] call for their joined ranges; if it fails, each of
//! them fails). The requests of one write batch must not overlap (`EINVAL`); write
//! requests that share a filesystem block run one after the other (their sub-block zeroing
//! would race with each other's data). Sequential 1 MiB requests from physically contiguous
//! buffers go out exactly as the raw block baseline's bios do: one bio of one segment each,
//! no flush, all in flight together.
//!
//! Files: `read` and `write` (the batches), `walk` (grouping), `map` (what one mapping
//! becomes), `run` (bios, memory, waiting), `complete` (completion work).
//!
//! # Rules
//!
//! - **Alignment**: `pos` and the length are multiples of the device's logical block size, and
//!   the buffer's address a multiple of the device's `dma_alignment` (`EINVAL` otherwise, as
//!   Linux). The filesystem block size is not required: sub-block writes are handled (below).
//! - **Memory**: bios point straight at the caller's buffer where
//!   [`Platform::dma_address`](crate::platform::Platform::dma_address) accepts it (whole, or page
//!   by page), through bounce buffers otherwise (see `run`).
//! - **Reads**: at or past EOF return 0; the range is clamped to EOF (the I/O is rounded up to
//!   the logical block size, and the bytes of the buffer past EOF are zeroed); dirty cache over
//!   the range is written back first (clean cache is left alone); HOLE and UNWRITTEN read as
//!   zeros.
//! - **Writes**: the range (rounded out to filesystem blocks) is written back and invalidated
//!   first; if invalidation fails (someone dirtied it again) the whole request is done buffered
//!   instead. Mapping by mapping (op `WRITE | DIRECT`) the filesystem allocates; sub-block edges
//!   of new, unwritten or copy-on-write blocks are zeroed or read around from the srcmap (see
//!   `map`). At completion ([`IomapOps::ioend_done`] with [`IoendFlags::DIRECT`](crate::iomap::IoendFlags::DIRECT)):
//!   unwritten conversion, COW remap (or cancel after an I/O error, the old data intact), the
//!   on-disk size; then the in-core size; then the range is invalidated again (a buffered read
//!   that raced with the write may have cached old bytes or zeros of an unwritten extent).
//!   Sub-block writes first wait for other direct I/O of the file (Linux's unaligned rule). A
//!   write starting past EOF first zeroes `[EOF, pos)` through the cache (the old EOF block's
//!   tail), as a buffered write does.
//! - **Not for direct I/O**: a filesystem answers `next` with `Err(ENOTBLK)` (inline data,
//!   delayed allocation, anything it will not map for direct I/O): what was done directly
//!   completes, and the rest of the request continues as buffered I/O (a write is then
//!   written back and invalidated, so it is on disk on return as a direct write would be).
//!   An INLINE mapping is copied directly instead.
//! - **O_DSYNC / O_SYNC** ([`WriteFlags`]): O_DSYNC pure overwrites go out with FUA and nothing
//!   else; otherwise the filesystem commits after completion ([`IomapOps::commit`]), or the
//!   device is flushed when it had nothing to commit.
//! - **Errors**: any bio error fails the request with that error (no partial count, as Linux);
//!   an error of the mapping walk fails it too unless it is `ENOTBLK`. Direct I/O errors are
//!   returned to the caller, not recorded for fsync.
//!
//! # Coherence: the design choice
//!
//! Linux's model is used: write back (and for writes invalidate) the cache over the range
//! before the I/O, invalidate again after a write completed, and count direct I/O in flight on
//! the mapping ([`Mapping::dio_begin`](crate::pagecache::Mapping::dio_begin)). Truncate, punch
//! hole, clone / dedupe ([`remap`](crate::iomap::remap)) and [`invalidate_cache`] take the
//! mapping's invalidate lock exclusively and then wait for the count to drop to zero; a direct
//! I/O registers under that lock held shared, so none can start while they work and none they
//! did not wait for is still in flight.
//!
//! The alternative (the 2019 proposal: serve direct I/O through folios that are already cached,
//! locking their entries) was not taken. It saves a device round trip only when the range is
//! cached, and to stay correct under concurrency it needs what this model avoids: an entry
//! state that excludes readahead, writeback and truncate per range; a rule for a folio under
//! writeback (wait, which is the flush anyway); and either giving up "the data is on the
//! device when the write returns" or writing the folio through, which is a buffered O_DSYNC
//! write (already available as write-through). With flush + invalidate every case reduces to
//! two existing, tested primitives plus one counter. Its cost shows in the benchmark rows
//! `direct_read_cached_mib_s` (a direct read of a range the cache holds clean: it still reads
//! the device) against `buffered_read_warm_mib_s`.
//!
//! # Locking (the caller's part)
//!
//! Callers follow Linux's `i_rwsem` rule: direct reads and aligned, non-extending direct writes
//! may run alongside each other (shared); buffered writes, truncate, punch, clone, and direct
//! writes that extend the file or are not filesystem-block aligned are exclusive. The engine
//! itself only holds the invalidate lock shared for the instant it registers the I/O.
//!
//! Lock order: invalidate lock (shared, briefly) > file writeback flag > folio locks (during the
//! flush and invalidation); no engine lock is held while bios are in flight or while the
//! filesystem is called.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `iomap_dio_rw` / `__iomap_dio_rw` | [`direct_read`], [`direct_write`] | synchronous; batches for depth |
//! | `kiocb_write_and_wait`, `kiocb_invalidate_pages`, `kiocb_invalidate_post_direct_write` | the flush / invalidate steps | |
//! | `inode_dio_begin` / `inode_dio_end` / `inode_dio_wait` | `Mapping::dio_begin` / guard drop / `Mapping::wait_dio` | registration under the invalidate lock |
//! | `-ENOTBLK` fallback (`direct_write_fallback`) | `ENOTBLK` from `next` | |
//! | AIO (`io_submit` of N iocbs) | [`direct_write_batch`], [`direct_read_batch`] | one call, N requests |
//! | `dops->end_io` per iocb | one `ioend_done` per run of back-to-back successful requests | joined ranges |

mod complete;
mod map;
mod read;
mod run;
mod walk;
mod write;

pub use read::direct_read_batch;
pub use run::BOUNCE_MAX;
pub use write::direct_write_batch;

pub(crate) use self::complete::complete_write;
pub(crate) use self::map::{push_range, DoneRange};

use alloc::sync::Arc;
use core::ptr::NonNull;

use self::map::{read_mapping, Piece};
use self::run::DioRun;
use super::file::{IomapFile, OpenFile};
use super::iter::{iterate, Step};
use super::ops::IomapOps;
use super::sync::write_and_wait;
use super::types::IomapOp;
use super::write::WriteFlags;
use crate::pagecache::DioGuard;
use crate::{Errno, Result};

/// One request of a direct read batch.
pub struct DioRead<'a> {
    /// File position.
    pub pos: u64,
    /// Where the bytes go.
    pub buf: &'a mut [u8],
}

/// One request of a direct write batch.
#[derive(Clone, Copy)]
pub struct DioWrite<'a> {
    /// File position.
    pub pos: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// Registers a direct I/O on `file`'s mapping. The invalidate lock is taken shared for the
/// instant of the registration: truncate, punch, remap and invalidation hold it exclusively
/// and then wait for the count, so no direct I/O starts under them.
pub(crate) fn dio_begin(file: &IomapFile) -> DioGuard {
    let mapping = file.mapping();
    let _shared = mapping.invalidate_lock().read();
    mapping.dio_begin()
}

/// Checks a request's alignment: `pos` and `len` to the device's logical block size, the
/// buffer's address to its DMA alignment.
fn check_alignment(file: &IomapFile, pos: u64, len: usize, addr: usize) -> Result<()> {
    let info = file.ctx().device().info();
    let lbs = info.logical_block_size.max(1) as u64;
    let dma = info.dma_alignment.max(1) as usize;
    if !pos.is_multiple_of(lbs) || !(len as u64).is_multiple_of(lbs) || !addr.is_multiple_of(dma) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `pos` directly from the device. See the module documentation.
pub fn direct_read(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    pos: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let mut reqs = [DioRead { pos, buf }];
    direct_read_batch(file, ops, open, &mut reqs).pop().unwrap_or(Err(Errno::EIO))
}

/// Writes `data` at `pos` directly to the device. See the module documentation.
pub fn direct_write(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    pos: u64,
    data: &[u8],
    flags: WriteFlags,
) -> Result<usize> {
    direct_write_batch(file, ops, open, &[DioWrite { pos, data }], flags).pop().unwrap_or(Err(Errno::EIO))
}

/// `[pos, pos + len)` rounded out to blocks of `bs`.
fn block_range(pos: u64, len: u64, bs: u64) -> (u64, u64) {
    (pos & !(bs - 1), (pos + len).div_ceil(bs) * bs)
}

/// Writes back and drops the cache over bytes `[start, end)` after waiting for direct I/O in
/// flight (the invalidation that direct I/O must not race: a drop-caches or fadvise
/// DONTNEED). `EBUSY` when a folio was dirtied again meanwhile.
pub fn invalidate_cache(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, start: u64, end: u64) -> Result<()> {
    let mapping = file.mapping().clone();
    let _exclusive = mapping.invalidate_lock().write();
    mapping.wait_dio();
    write_and_wait(file, ops, start, end)?;
    mapping.invalidate_range(start, end)
}

/// Reads `buf.len()` bytes at `pos` as the mappings and the device hold them, bypassing the
/// cache and the direct-I/O registration: for a caller that holds the invalidate lock
/// exclusively and wrote the range back (dedupe's comparison). `pos` and the length are
/// multiples of the logical block size, the buffer DMA-aligned; bytes past EOF read as the
/// device holds them.
pub(crate) fn read_uncached(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    pos: u64,
    buf: &mut [u8],
) -> Result<()> {
    check_alignment(file, pos, buf.len(), buf.as_ptr() as usize)?;
    let size = file.size();
    let len = buf.len() as u64;
    let base = buf.as_mut_ptr();
    let mut run = DioRun::new(file.ctx(), 1);
    let walk = iterate(&**ops, pos, len, IomapOp::REPORT, file.block_size(), |it| {
        let Some(dst) = NonNull::new(base.wrapping_add((it.pos() - pos) as usize)) else {
            return Step::failed(0, Errno::EFAULT);
        };
        // SAFETY: `dst` points at `it.length()` bytes inside `buf`, exclusively borrowed until
        // the run finished.
        let piece = Piece::of(it, it.pos(), it.length());
        match unsafe { read_mapping(&mut run, 0, &**ops, piece, dst, size, true) } {
            Ok(done) => Step::done(done),
            Err(e) => Step::failed(0, e),
        }
    });
    if let Some(e) = walk.error {
        run.fail(0, e);
    }
    if let Some(e) = run.finish().pop().flatten() {
        return Err(e);
    }
    if walk.done < len {
        return Err(Errno::EIO);
    }
    Ok(())
}
