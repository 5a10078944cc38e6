//! Direct writes: [`direct_write_batch`] (and through it `direct_write`).
//!
//! Per batch: reject overlapping requests (`EINVAL`, all of them); run requests one at a time
//! when two of them share a filesystem block (their sub-block zeroing or read-around would race
//! with each other's data); check every request; wait for other direct I/O when a request is not
//! block aligned; zero `[EOF, furthest start)` once when requests start past EOF; register the
//! I/O; group back-to-back requests into walks; write back and invalidate each walk's block
//! range (a walk whose cache cannot be dropped goes buffered as a whole); map each walk once
//! (op `WRITE | DIRECT`) and submit every bio; wait for all; complete each request
//! (`complete`; the back-to-back requests of a walk whose bios all succeeded together, one
//! call for their joined ranges; if that call fails, each of them fails), invalidate each
//! walk's range again; drop the registration; O_DSYNC / O_SYNC
//! commit once if any request needs it; finally the requests (or their rests, after `ENOTBLK`)
//! that go buffered.
//!
//! Lock order: see the module documentation of [`dio`](super).
//! Linux <-> here: `iomap_dio_rw` for writes (`kiocb_invalidate_pages`, `iomap_dio_iter`,
//! `iomap_dio_complete`, `kiocb_invalidate_post_direct_write`, `generic_write_sync`),
//! `xfs_file_dio_write_unaligned` (`inode_dio_wait`), `direct_write_fallback`.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use super::complete::complete_write;
use super::map::{push_range, write_mapping, DoneRange, WriteState};
use super::run::DioRun;
use super::walk::{group, pieces, Walk};
use super::{block_range, check_alignment, dio_begin, DioWrite};
use crate::block::sync::flush;
use crate::iomap::context::Counters;
use crate::iomap::copy::SliceSource;
use crate::iomap::file::{IomapFile, OpenFile, MAX_FILE_SIZE};
use crate::iomap::iter::iterate;
use crate::iomap::ops::IomapOps;
use crate::iomap::sync::write_and_wait;
use crate::iomap::types::IomapOp;
use crate::iomap::write::{write, WriteFlags};
use crate::iomap::zero::zero_range;
use crate::{Errno, Result};

/// How one request of a write batch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Finished already (its result is set).
    Done,
    /// To the device.
    Direct,
    /// Through the cache as a whole.
    Buffered,
}

/// Writes every request of `reqs` directly, all bios in flight together. See the module
/// documentation of [`dio`](super). Returns each request's result; overlapping requests are all
/// `EINVAL`.
pub fn direct_write_batch(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    reqs: &[DioWrite<'_>],
    flags: WriteFlags,
) -> Vec<Result<usize>> {
    let n = reqs.len();
    let bs = file.block_size();
    if overlapping(reqs, 1) {
        return vec![Err(Errno::EINVAL); n];
    }
    if n > 1 && overlapping(reqs, bs) {
        return reqs
            .iter()
            .flat_map(|r| direct_write_batch(file, ops, open, core::slice::from_ref(r), flags))
            .collect();
    }
    let mut results: Vec<Result<usize>> = vec![Ok(0); n];
    let mut plans = vec![Plan::Done; n];
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
                plans[i] = Plan::Direct;
            }
        }
    }
    if unaligned {
        file.mapping().wait_dio();
    }
    zero_past_eof(file, ops, reqs, &mut plans, &mut results);
    let guard = dio_begin(file);
    let spans = (0..n)
        .filter(|&i| plans[i] == Plan::Direct)
        .map(|i| (i, reqs[i].pos, reqs[i].data.len() as u64))
        .collect();
    let mut walks = group(spans);
    walks.retain(|w| {
        let (start, end) = block_range(w.start, w.end - w.start, bs);
        let flushed =
            if file.needs_writeback(start, end) { write_and_wait(file, ops, start, end) } else { Ok(()) };
        let verdict = match flushed {
            Err(e) => Err(e),
            Ok(()) if file.mapping().invalidate_range(start, end).is_err() => Ok(Plan::Buffered),
            Ok(()) => return true,
        };
        for &(i, _, _) in &w.reqs {
            match verdict {
                Err(e) => (results[i], plans[i]) = (Err(e), Plan::Done),
                Ok(p) => plans[i] = p,
            }
        }
        false
    });
    let fua_ok = flags.contains(WriteFlags::DSYNC) && !flags.contains(WriteFlags::SYNC);
    let mut states: Vec<WriteState> =
        (0..n).map(|_| WriteState::new(file.size(), file.disk_size(), fua_ok)).collect();
    let mut walked: Vec<u64> = vec![0; n];
    let errors = {
        let mut run = DioRun::new(file.ctx(), n);
        for w in &walks {
            let progress =
                iterate(&**ops, w.start, w.end - w.start, IomapOp::WRITE | IomapOp::DIRECT, bs, |it| {
                    pieces(w, it, |i, pos, piece| {
                        let at = reqs[i].data.as_ptr().wrapping_add((piece.pos - pos) as usize);
                        let src = NonNull::new(at as *mut u8).ok_or(Errno::EFAULT)?;
                        // SAFETY: `src` points at `piece.len` bytes inside request `i`'s data,
                        // borrowed until the run finished; bios only read it.
                        unsafe { write_mapping(&mut run, i, &**ops, piece, src, bs, &mut states[i]) }
                    })
                });
            for &(i, pos, len) in &w.reqs {
                walked[i] = w.covered(progress.done, pos, len);
                if let Some(e) = progress.error.filter(|&e| e != Errno::ENOTBLK && walked[i] < len) {
                    run.fail(i, e);
                }
            }
        }
        run.finish()
    };
    let mut commit = false;
    for group in completion_groups(&walks, &errors) {
        let mut ranges: Vec<DoneRange> = Vec::new();
        for &i in &group {
            for r in &states[i].ranges {
                push_range(&mut ranges, r.offset, r.len, r.flags);
            }
        }
        let outcome = complete_write(file, &**ops, &ranges, errors[group[0]], true);
        for &i in &group {
            match outcome {
                Err(e) => results[i] = Err(e),
                Ok(()) => {
                    commit |= states[i].needs_commit || flags.contains(WriteFlags::SYNC);
                    results[i] = Ok(walked[i] as usize);
                }
            }
        }
    }
    for w in &walks {
        // A racing buffered read may have cached old bytes (or zeros of an unwritten extent).
        let (start, end) = block_range(w.start, w.end - w.start, bs);
        let _ = file.mapping().invalidate_range(start, end);
    }
    drop(guard);
    if commit && flags.intersects(WriteFlags::DSYNC | WriteFlags::SYNC) {
        if let Err(e) = sync_after(file, ops, flags) {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e);
            }
        }
    }
    for (i, r) in reqs.iter().enumerate() {
        let done = match (plans[i], &results[i]) {
            (Plan::Buffered, _) => 0,
            (Plan::Direct, Ok(d)) if *d < r.data.len() => *d,
            _ => continue,
        };
        Counters::add(&file.ctx().counters.dio_fallbacks, 1);
        results[i] = match write_buffered(file, ops, open, r.pos + done as u64, &r.data[done..], flags) {
            Ok(k) => Ok(done + k),
            Err(_) if done > 0 => Ok(done),
            Err(e) => Err(e),
        };
    }
    results
}

/// The requests of `walks` (all going direct) in the groups completed together: back-to-back
/// requests of one walk whose bios all succeeded form one group (their ranges join, so the
/// filesystem converts and sizes them in one call, not one per request); a request with a bio
/// error is a group of its own (its error goes to the filesystem with its ranges only).
fn completion_groups(walks: &[Walk], errors: &[Option<Errno>]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for w in walks {
        let mut open = false;
        for &(i, _, _) in &w.reqs {
            match groups.last_mut() {
                Some(g) if open && errors[i].is_none() => g.push(i),
                _ => groups.push(vec![i]),
            }
            open = errors[i].is_none();
        }
    }
    groups
}

/// Zeroes `[EOF, furthest start)` once when requests start past EOF: the old EOF block's tail
/// and the gaps read as zeros (through the cache, as a buffered write does; the flush of each
/// walk writes back what it overlaps). A failure fails those requests.
fn zero_past_eof(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    reqs: &[DioWrite<'_>],
    plans: &mut [Plan],
    results: &mut [Result<usize>],
) {
    let size = file.size();
    let beyond = |i: usize| plans[i] == Plan::Direct && reqs[i].pos > size;
    let Some(furthest) = (0..reqs.len()).filter(|&i| beyond(i)).map(|i| reqs[i].pos).max() else { return };
    if let Err(e) = zero_range(file, ops, size, furthest - size) {
        for i in 0..reqs.len() {
            if plans[i] == Plan::Direct && reqs[i].pos > size {
                results[i] = Err(e);
                plans[i] = Plan::Done;
            }
        }
    }
}

/// True when two requests overlap once rounded out to `unit` (1: byte overlap; the block
/// size: they share a block).
fn overlapping(reqs: &[DioWrite<'_>], unit: u64) -> bool {
    let mut ranges: Vec<(u64, u64)> = reqs
        .iter()
        .filter(|r| !r.data.is_empty())
        .map(|r| {
            let end = r.pos.saturating_add(r.data.len() as u64);
            (r.pos / unit, end.div_ceil(unit))
        })
        .collect();
    ranges.sort_unstable();
    ranges.windows(2).any(|w| w[1].0 < w[0].1)
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
    write_and_wait(file, ops, pos, pos + n as u64)?;
    let (start, end) = block_range(pos, n as u64, file.block_size());
    let _ = file.mapping().invalidate_range(start, end);
    Ok(n)
}
