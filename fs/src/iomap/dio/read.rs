//! Direct reads: [`direct_read_batch`] (and through it `direct_read`).
//!
//! Per batch: check every request, register the I/O, clamp each to EOF (rounded up to the
//! logical block size), group back-to-back requests into walks, write back dirty cache over
//! each walk, map each walk once (op `DIRECT`) and submit every bio, then wait for all of them.
//! Afterwards each request's buffer past EOF is zeroed; a request whose walk ended with
//! `ENOTBLK` reads the rest through the cache (after the registration is dropped: a buffered
//! read may take the invalidate lock).
//!
//! Lock order: see the module documentation of [`dio`](super).
//! Linux <-> here: `iomap_dio_rw` for reads (`kiocb_write_and_wait`, `iomap_dio_iter`).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use super::map::read_mapping;
use super::run::DioRun;
use super::walk::{group, pieces};
use super::{check_alignment, dio_begin, DioRead};
use crate::iomap::context::Counters;
use crate::iomap::file::{IomapFile, OpenFile};
use crate::iomap::iter::iterate;
use crate::iomap::ops::IomapOps;
use crate::iomap::read::read;
use crate::iomap::sync::write_and_wait;
use crate::iomap::types::IomapOp;
use crate::{Errno, Result};

/// Reads every request of `reqs` directly, all bios in flight together. See the module
/// documentation of [`dio`](super). Returns each request's result.
pub fn direct_read_batch(
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    open: &mut OpenFile,
    reqs: &mut [DioRead<'_>],
) -> Vec<Result<usize>> {
    let n = reqs.len();
    let mut results: Vec<Result<usize>> = vec![Ok(0); n];
    // Per request: (bytes inside EOF, bytes of I/O) when it goes to the device.
    let mut lens: Vec<Option<(u64, u64)>> = vec![None; n];
    let bs = file.block_size();
    let guard = dio_begin(file);
    let size = file.size();
    let lbs = file.ctx().device().info().logical_block_size.max(1) as u64;
    for (i, r) in reqs.iter().enumerate() {
        if let Err(e) = check_alignment(file, r.pos, r.buf.len(), r.buf.as_ptr() as usize) {
            results[i] = Err(e);
        } else if !r.buf.is_empty() && r.pos < size {
            let rlen = (r.buf.len() as u64).min(size - r.pos);
            lens[i] = Some((rlen, rlen.div_ceil(lbs) * lbs));
        }
    }
    let spans = lens.iter().enumerate().filter_map(|(i, l)| l.map(|(_, io)| (i, reqs[i].pos, io))).collect();
    let mut walks = group(spans);
    walks.retain(|w| match file.needs_writeback(w.start, w.end) {
        false => true,
        true => match write_and_wait(file, ops, w.start, w.end) {
            Ok(()) => true,
            Err(e) => {
                for &(i, _, _) in &w.reqs {
                    results[i] = Err(e);
                    lens[i] = None;
                }
                false
            }
        },
    });
    let bases: Vec<*mut u8> = reqs.iter_mut().map(|r| r.buf.as_mut_ptr()).collect();
    let mut walked: Vec<u64> = vec![0; n];
    let errors = {
        let mut run = DioRun::new(file.ctx(), n);
        for w in &walks {
            let progress = iterate(&**ops, w.start, w.end - w.start, IomapOp::DIRECT, bs, |it| {
                pieces(w, it, |i, pos, piece| {
                    let at = bases[i].wrapping_add((piece.pos - pos) as usize);
                    let dst = NonNull::new(at).ok_or(Errno::EFAULT)?;
                    // SAFETY: `dst` points at `piece.len` bytes inside request `i`'s buffer
                    // (the piece lies in `[pos, pos + io_len)`, `io_len <= buf.len()`),
                    // exclusively borrowed until the run finished.
                    unsafe { read_mapping(&mut run, i, &**ops, piece, dst, size, false) }
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
    drop(guard);
    for (i, r) in reqs.iter_mut().enumerate() {
        let Some((rlen, io_len)) = lens[i] else { continue };
        if let Some(e) = errors[i] {
            results[i] = Err(e);
        } else if walked[i] >= io_len {
            r.buf[rlen as usize..io_len as usize].fill(0);
            results[i] = Ok(rlen as usize);
        } else {
            // ENOTBLK: the rest goes through the cache.
            Counters::add(&file.ctx().counters.dio_fallbacks, 1);
            let done = walked[i].min(rlen) as usize;
            results[i] = match read(file, ops, open, r.pos + done as u64, &mut r.buf[done..rlen as usize]) {
                Ok(k) => Ok(done + k),
                Err(_) if done > 0 => Ok(done),
                Err(e) => Err(e),
            };
        }
    }
    results
}
