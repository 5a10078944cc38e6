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
//! The requests of one write batch must not overlap (`EINVAL`).
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

mod complete;
mod map;
mod run;

pub use run::BOUNCE_MAX;

pub(crate) use self::complete::complete_write;
pub(crate) use self::map::{push_range, DoneRange};

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use self::map::{read_mapping, write_mapping, WriteState};
use self::run::DioRun;
use super::context::Counters;
use super::copy::SliceSource;
use super::file::{IomapFile, OpenFile, MAX_FILE_SIZE};
use super::iter::{iterate, Progress, Step};
use super::ops::IomapOps;
use super::read::read;
use super::sync::write_and_wait;
use super::types::IomapOp;
use super::write::{write, WriteFlags};
use super::zero::zero_range;
use crate::block::sync::flush;
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

/// What happened to one request of a batch before completion.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Finished already (the result is in the results vector).
    Done,
    /// Done directly, then (from the byte count of the walk) buffered if the walk said ENOTBLK.
    Direct { rlen: u64, io_len: u64 },
    /// Done buffered as a whole.
    Buffered,
}

/// Reads every request of `reqs` directly, all bios in flight together. See the module
/// documentation. Returns each request's result.
pub fn direct_read_batch(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    reqs: &mut [DioRead<'_>],
) -> Vec<Result<usize>> {
    let n = reqs.len();
    let mut results: Vec<Result<usize>> = vec![Ok(0); n];
    let mut plans = vec![Plan::Done; n];
    let bs = file.block_size();
    let guard = dio_begin(file);
    let size = file.size();
    let lbs = file.ctx().device().info().logical_block_size.max(1) as u64;
    for (i, r) in reqs.iter().enumerate() {
        if let Err(e) = check_alignment(file, r.pos, r.buf.len(), r.buf.as_ptr() as usize) {
            results[i] = Err(e);
            continue;
        }
        if r.buf.is_empty() || r.pos >= size {
            continue;
        }
        let rlen = (r.buf.len() as u64).min(size - r.pos);
        let io_len = rlen.div_ceil(lbs) * lbs;
        if file.needs_writeback(r.pos, r.pos + io_len) {
            if let Err(e) = write_and_wait(file, ops, r.pos, r.pos + io_len) {
                results[i] = Err(e);
                continue;
            }
        }
        plans[i] = Plan::Direct { rlen, io_len };
    }
    let mut walks: Vec<Option<Progress>> = vec![None; n];
    let errors = {
        let mut run = DioRun::new(file.ctx(), n);
        for (i, r) in reqs.iter_mut().enumerate() {
            let Plan::Direct { io_len, .. } = plans[i] else { continue };
            let (pos, base) = (r.pos, r.buf.as_mut_ptr());
            let walk = iterate(&**ops, pos, io_len, IomapOp::DIRECT, bs, |it| {
                let Some(dst) = NonNull::new(base.wrapping_add((it.pos() - pos) as usize)) else {
                    return Step::failed(0, Errno::EFAULT);
                };
                // SAFETY: `dst` points at `it.length()` bytes inside `r.buf` (the walk stays in
                // `[pos, pos + io_len)`, `io_len <= buf.len()`), exclusively borrowed until the
                // run finished.
                match unsafe { read_mapping(&mut run, i, &**ops, it, dst, size, false) } {
                    Ok(done) => Step::done(done),
                    Err(e) => Step::failed(0, e),
                }
            });
            if let Some(e) = walk.error.filter(|&e| e != Errno::ENOTBLK) {
                run.tracker(i).fail(e);
            }
            walks[i] = Some(walk);
        }
        run.finish()
    };
    drop(guard);
    for (i, r) in reqs.iter_mut().enumerate() {
        let Plan::Direct { rlen, io_len } = plans[i] else { continue };
        if let Some(e) = errors[i] {
            results[i] = Err(e);
            continue;
        }
        let walked = walks[i].map_or(0, |w| w.done);
        if walked >= io_len {
            r.buf[rlen as usize..io_len as usize].fill(0);
            results[i] = Ok(rlen as usize);
            continue;
        }
        // ENOTBLK: the rest goes through the cache.
        Counters::add(&file.ctx().counters.dio_fallbacks, 1);
        let done = walked.min(rlen) as usize;
        let rest = read(file, ops, open, r.pos + done as u64, &mut r.buf[done..rlen as usize]);
        results[i] = match rest {
            Ok(k) => Ok(done + k),
            Err(_) if done > 0 => Ok(done),
            Err(e) => Err(e),
        };
    }
    results
}

/// Writes every request of `reqs` directly, all bios in flight together. See the module
/// documentation. Returns each request's result; overlapping requests are all `EINVAL`.
pub fn direct_write_batch(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    reqs: &[DioWrite<'_>],
    flags: WriteFlags,
) -> Vec<Result<usize>> {
    let n = reqs.len();
    let mut results: Vec<Result<usize>> = vec![Ok(0); n];
    let mut plans = vec![Plan::Done; n];
    let bs = file.block_size();
    if overlapping(reqs) {
        return vec![Err(Errno::EINVAL); n];
    }
    let mut unaligned = false;
    for (i, r) in reqs.iter().enumerate() {
        let len = r.data.len() as u64;
        let checked = check_alignment(file, r.pos, r.data.len(), r.data.as_ptr() as usize).and_then(|_| {
            match r.pos.checked_add(len) {
                Some(end) if end <= MAX_FILE_SIZE => Ok(()),
                _ => Err(Errno::EFBIG),
            }
        });
        match checked {
            Err(e) => results[i] = Err(e),
            Ok(()) if len == 0 => {}
            Ok(()) => {
                unaligned |= !r.pos.is_multiple_of(bs) || !len.is_multiple_of(bs);
                plans[i] = Plan::Direct { rlen: len, io_len: len };
            }
        }
    }
    if unaligned {
        file.mapping().wait_dio();
    }
    // Writes starting past EOF: the old EOF block's tail and the gaps read as zeros (through
    // the cache, as a buffered write does; the flush below writes back what it overlaps). One
    // zeroing up to the furthest start covers every request of the batch.
    let size = file.size();
    let beyond = reqs.iter().zip(&plans).filter(|(r, p)| matches!(p, Plan::Direct { .. }) && r.pos > size);
    if let Some(furthest) = beyond.map(|(r, _)| r.pos).max() {
        if let Err(e) = zero_range(file, ops, size, furthest - size) {
            for (i, r) in reqs.iter().enumerate() {
                if matches!(plans[i], Plan::Direct { .. }) && r.pos > size {
                    results[i] = Err(e);
                    plans[i] = Plan::Done;
                }
            }
        }
    }
    let guard = dio_begin(file);
    for (i, r) in reqs.iter().enumerate() {
        if !matches!(plans[i], Plan::Direct { .. }) {
            continue;
        }
        let (start, end) = block_range(r.pos, r.data.len() as u64, bs);
        if file.needs_writeback(start, end) {
            if let Err(e) = write_and_wait(file, ops, start, end) {
                results[i] = Err(e);
                plans[i] = Plan::Done;
                continue;
            }
        }
        if file.mapping().invalidate_range(start, end).is_err() {
            plans[i] = Plan::Buffered;
        }
    }
    let fua_ok = flags.contains(WriteFlags::DSYNC) && !flags.contains(WriteFlags::SYNC);
    let mut states: Vec<WriteState> =
        (0..n).map(|_| WriteState::new(file.size(), file.disk_size(), fua_ok)).collect();
    let mut walks: Vec<Option<Progress>> = vec![None; n];
    let errors = {
        let mut run = DioRun::new(file.ctx(), n);
        for (i, r) in reqs.iter().enumerate() {
            let Plan::Direct { io_len, .. } = plans[i] else { continue };
            let (pos, base) = (r.pos, r.data.as_ptr());
            let ws = &mut states[i];
            let walk = iterate(&**ops, pos, io_len, IomapOp::WRITE | IomapOp::DIRECT, bs, |it| {
                let Some(src) = NonNull::new(base.wrapping_add((it.pos() - pos) as usize) as *mut u8) else {
                    return Step::failed(0, Errno::EFAULT);
                };
                // SAFETY: `src` points at `it.length()` bytes inside `r.data`, borrowed until
                // the run finished; bios only read it.
                match unsafe { write_mapping(&mut run, i, &**ops, it, src, bs, ws) } {
                    Ok(done) => Step::done(done),
                    Err(e) => Step::failed(0, e),
                }
            });
            if let Some(e) = walk.error.filter(|&e| e != Errno::ENOTBLK) {
                run.tracker(i).fail(e);
            }
            walks[i] = Some(walk);
        }
        run.finish()
    };
    let mut commit = false;
    for (i, r) in reqs.iter().enumerate() {
        let Plan::Direct { .. } = plans[i] else { continue };
        let completed = complete_write(file, &**ops, &states[i].ranges, errors[i], true);
        let (start, end) = block_range(r.pos, r.data.len() as u64, bs);
        // A racing buffered read may have cached old bytes (or zeros of an unwritten extent).
        let _ = file.mapping().invalidate_range(start, end);
        match completed {
            Err(e) => results[i] = Err(e),
            Ok(()) => {
                commit |= states[i].needs_commit || flags.contains(WriteFlags::SYNC);
                results[i] = Ok(walks[i].map_or(0, |w| w.done) as usize);
            }
        }
    }
    drop(guard);
    let sync = flags.intersects(WriteFlags::DSYNC | WriteFlags::SYNC);
    if sync && commit {
        if let Err(e) = sync_after(file, ops, flags) {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e);
            }
        }
    }
    for (i, r) in reqs.iter().enumerate() {
        let done = match (plans[i], &results[i]) {
            (Plan::Buffered, _) => 0,
            (Plan::Direct { io_len, .. }, Ok(d)) if (*d as u64) < io_len => *d,
            _ => continue,
        };
        Counters::add(&file.ctx().counters.dio_fallbacks, 1);
        let rest = write_buffered(file, ops, open, r.pos + done as u64, &r.data[done..], flags);
        results[i] = match rest {
            Ok(k) => Ok(done + k),
            Err(_) if done > 0 => Ok(done),
            Err(e) => Err(e),
        };
    }
    results
}

/// True when two requests of a batch overlap.
fn overlapping(reqs: &[DioWrite<'_>]) -> bool {
    let mut ranges: Vec<(u64, u64)> = reqs
        .iter()
        .map(|r| (r.pos, r.pos.saturating_add(r.data.len() as u64)))
        .filter(|r| r.0 < r.1)
        .collect();
    ranges.sort_unstable();
    ranges.windows(2).any(|w| w[1].0 < w[0].1)
}

/// `[pos, pos + len)` rounded out to blocks of `bs`.
fn block_range(pos: u64, len: u64, bs: u64) -> (u64, u64) {
    (pos & !(bs - 1), (pos + len).div_ceil(bs) * bs)
}

/// O_DSYNC / O_SYNC after a write that was not all pure FUA overwrites.
fn sync_after(file: &IomapFile, ops: &Arc<dyn IomapOps>, flags: WriteFlags) -> Result<()> {
    let ctx = file.ctx();
    if !ops.commit(!flags.contains(WriteFlags::SYNC))? {
        flush(&**ctx.device(), &**ctx.platform())?;
    }
    Ok(())
}

/// The buffered continuation of a direct write: write, write back, wait, invalidate (so the
/// data is on the device on return, as a direct write's would be).
fn write_buffered(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    pos: u64,
    data: &[u8],
    flags: WriteFlags,
) -> Result<usize> {
    let n = write(file, ops, open, pos, &mut SliceSource::new(data), flags)?;
    let end = pos + n as u64;
    write_and_wait(file, ops, pos, end)?;
    let bs = file.block_size();
    let (start, end) = block_range(pos, n as u64, bs);
    let _ = file.mapping().invalidate_range(start, end);
    Ok(n)
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
        match unsafe { read_mapping(&mut run, 0, &**ops, it, dst, size, true) } {
            Ok(done) => Step::done(done),
            Err(e) => Step::failed(0, e),
        }
    });
    if let Some(e) = walk.error {
        run.tracker(0).fail(e);
    }
    if let Some(e) = run.finish().pop().flatten() {
        return Err(e);
    }
    if walk.done < len {
        return Err(Errno::EIO);
    }
    Ok(())
}
