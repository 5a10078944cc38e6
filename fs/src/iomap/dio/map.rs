//! What direct I/O does with one mapping: the bios of a read or a write, sub-block zeroing of
//! new and unwritten blocks, copy-on-write read-around, inline copies, and the ranges that need
//! completion work.
//!
//! Write rules, per mapping (the offered range is `[pos, end)`, its blocks
//! `[round_down(pos), round_up(end))`):
//!
//! | mapping | head `[block start, pos)` | tail `[end, block end)` | completion |
//! |---|---|---|---|
//! | MAPPED | zeroed if beyond EOF | zeroed if `end >= i_size` | size if extending |
//! | MAPPED + NEW, UNWRITTEN | zeroed | zeroed | conversion, size |
//! | SHARED + MAPPED srcmap | read from the srcmap | read from the srcmap (zeroed if `end >= i_size`) | COW remap, size |
//! | SHARED, other srcmap | zeroed | zeroed | COW remap, size |
//! | INLINE | (copied into the inode) | | size |
//! | HOLE, DELALLOC | `EIO`: a filesystem must allocate, or answer `ENOTBLK` | | |
//!
//! Reads: MAPPED is read into the caller's buffer, HOLE and UNWRITTEN are zero-filled in
//! place, INLINE is copied, DELALLOC is `EIO`.
//!
//! FUA (O_DSYNC without O_SYNC): only pure overwrites (MAPPED, no NEW / SHARED / DIRTY, no
//! srcmap, inside the on-disk size) carry FUA; any other mapping makes the call commit after
//! completion.
//!
//! Lock order: none taken; the filesystem's inline callbacks are called without engine locks.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `iomap_dio_bio_iter` (`need_zeroout`, `use_fua`, `iomap_dio_zero`) | [`write_mapping`], [`read_mapping`] |
//! | `iomap_dio_hole_iter` | zero fill in [`read_mapping`] |
//! | `iomap_dio_inline_iter` | INLINE arms |
//! | XFS: unaligned COW direct I/O falls back to buffered | read-around from the srcmap (no fallback) |

use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use super::run::DioRun;
use crate::block::{BioFlags, BioOp};
use crate::iomap::iter::IomapIter;
use crate::iomap::ops::IomapOps;
use crate::iomap::types::{IoendFlags, Iomap, IomapFlags, IomapType};
use crate::{Errno, Result};

/// A written range that may need completion work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DoneRange {
    pub offset: u64,
    pub len: u64,
    pub flags: IoendFlags,
}

/// Appends a range, merging it into the last one when contiguous with equal flags.
pub(crate) fn push_range(v: &mut Vec<DoneRange>, offset: u64, len: u64, flags: IoendFlags) {
    if let Some(last) = v.last_mut() {
        if last.flags == flags && last.offset + last.len == offset {
            last.len += len;
            return;
        }
    }
    v.push(DoneRange { offset, len, flags });
}

/// The state of one direct write across its mappings.
pub(crate) struct WriteState {
    /// In-core size when the write started.
    pub size: u64,
    /// On-disk size when the write started.
    pub disk_size: u64,
    /// O_DSYNC without O_SYNC: pure overwrites may use FUA.
    pub fua_ok: bool,
    /// A mapping was not a pure overwrite (an O_DSYNC / O_SYNC write must commit).
    pub needs_commit: bool,
    /// The ranges written, for completion.
    pub ranges: Vec<DoneRange>,
}

impl WriteState {
    pub(crate) fn new(size: u64, disk_size: u64, fua_ok: bool) -> Self {
        Self { size, disk_size, fua_ok, needs_commit: false, ranges: Vec::new() }
    }
}

/// One sub-block edge of a write: zeroed, read around from the srcmap, or left alone.
enum Edge {
    Keep,
    Zero,
    ReadAround,
}

/// The block read for read-around (head and tail in one block share the read).
struct AroundCache {
    block: u64,
    idx: usize,
}

#[allow(clippy::too_many_arguments)]
fn submit_edge(
    run: &mut DioRun<'_>,
    req: usize,
    flags: BioFlags,
    m: &Iomap,
    src: &Iomap,
    (from, to): (u64, u64),
    bs: u64,
    edge: Edge,
    cache: &mut Option<AroundCache>,
) -> Result<()> {
    let len = (to - from) as usize;
    match edge {
        Edge::Keep => Ok(()),
        Edge::Zero => run.submit_zeros(req, flags, m.disk_addr(from)?, len, bs as usize),
        Edge::ReadAround => {
            let block = from & !(bs - 1);
            let idx = match cache {
                Some(c) if c.block == block => c.idx,
                _ => {
                    let idx = run.read_block(src.disk_addr(block)?, bs as usize)?;
                    *cache = Some(AroundCache { block, idx });
                    idx
                }
            };
            run.submit_held(req, flags, idx, (from - block) as usize, len, m.disk_addr(from)?)
        }
    }
}

/// The part `[pos, pos + len)` of one mapping (`m`, with srcmap `src`) that one request covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Piece {
    pub m: Iomap,
    pub src: Iomap,
    pub pos: u64,
    pub len: u64,
}

impl Piece {
    /// The iterator's current mapping, cut to `[pos, pos + len)` (inside what it offers).
    pub(crate) fn of(it: &IomapIter, pos: u64, len: u64) -> Self {
        Self { m: *it.iomap(), src: *it.srcmap(), pos, len }
    }
}

/// Writes `piece` from `data` (the caller's bytes at `piece.pos`) for request `req`; returns
/// the bytes processed. The range is recorded in `ws` before any bio is submitted, so a
/// failure still reaches completion (copy-on-write cancel).
///
/// # Safety
///
/// `data` points at `piece.len` bytes of a buffer borrowed for the run's lifetime.
pub(crate) unsafe fn write_mapping(
    run: &mut DioRun<'_>,
    req: usize,
    ops: &dyn IomapOps,
    piece: Piece,
    data: NonNull<u8>,
    bs: u64,
    ws: &mut WriteState,
) -> Result<u64> {
    let Piece { m, src, pos, len } = piece;
    let end = pos + len;
    match m.kind {
        IomapType::Hole | IomapType::Delalloc => return Err(Errno::EIO),
        IomapType::Inline => {
            // SAFETY: the caller's contract: `len` readable bytes at `data`.
            let bytes = unsafe { core::slice::from_raw_parts(data.as_ptr(), len as usize) };
            ws.needs_commit = true;
            push_range(&mut ws.ranges, pos, len, IoendFlags::empty());
            ops.write_inline(&m, pos - m.offset, bytes)?;
            return Ok(len);
        }
        IomapType::Mapped | IomapType::Unwritten => {}
    }
    let shared = m.flags.contains(IomapFlags::SHARED);
    let read_around = shared && src.kind == IomapType::Mapped && !src.flags.contains(IomapFlags::NEW);
    let zero_edges =
        m.kind == IomapType::Unwritten || m.flags.contains(IomapFlags::NEW) || (shared && !read_around);
    let pure = m.kind == IomapType::Mapped
        && !m.flags.intersects(IomapFlags::NEW | IomapFlags::SHARED | IomapFlags::DIRTY)
        && src.is_hole()
        && end <= ws.disk_size;
    let flags = if ws.fua_ok && pure { BioFlags::FUA } else { BioFlags::empty() };
    if !pure {
        ws.needs_commit = true;
    }
    push_range(&mut ws.ranges, pos, len, IoendFlags::for_iomap(&m));
    let head = pos & !(bs - 1);
    let tail_end = end.div_ceil(bs) * bs;
    let mut cache = None;
    if head < pos {
        let edge = if zero_edges || head >= ws.size {
            Edge::Zero
        } else if read_around {
            Edge::ReadAround
        } else {
            Edge::Keep
        };
        submit_edge(run, req, flags, &m, &src, (head, pos), bs, edge, &mut cache)?;
    }
    if end < tail_end {
        let edge = if zero_edges || end >= ws.size {
            Edge::Zero
        } else if read_around {
            Edge::ReadAround
        } else {
            Edge::Keep
        };
        submit_edge(run, req, flags, &m, &src, (end, tail_end), bs, edge, &mut cache)?;
    }
    // SAFETY: forwarded from the caller; a write only reads the bytes.
    unsafe { run.submit_mem(req, BioOp::Write, flags, m.disk_addr(pos)?, data, len as usize)? };
    Ok(len)
}

/// Reads `piece` into `dst` (the caller's buffer at `piece.pos`) for request `req`; returns
/// the bytes processed. `size` is the in-core size (for inline data). DELALLOC is
/// `EIO` unless `delalloc_zero` (a caller that wrote the range back first: a reservation left
/// without cached data reads as zeros).
///
/// # Safety
///
/// `dst` points at `piece.len` bytes of a buffer exclusively borrowed for the run's
/// lifetime.
pub(crate) unsafe fn read_mapping(
    run: &mut DioRun<'_>,
    req: usize,
    ops: &dyn IomapOps,
    piece: Piece,
    dst: NonNull<u8>,
    size: u64,
    delalloc_zero: bool,
) -> Result<u64> {
    let Piece { m, pos, len, .. } = piece;
    match m.kind {
        IomapType::Mapped => {
            // SAFETY: forwarded from the caller.
            unsafe {
                run.submit_mem(req, BioOp::Read, BioFlags::empty(), m.disk_addr(pos)?, dst, len as usize)?
            };
        }
        IomapType::Hole | IomapType::Unwritten => {
            // SAFETY: the caller's contract: `len` writable bytes at `dst`, no bio on them.
            unsafe { core::ptr::write_bytes(dst.as_ptr(), 0, len as usize) };
        }
        IomapType::Delalloc if delalloc_zero => {
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(dst.as_ptr(), 0, len as usize) };
        }
        IomapType::Delalloc => return Err(Errno::EIO),
        IomapType::Inline => {
            let bytes = size.checked_sub(m.offset).filter(|&b| b <= m.length).ok_or(Errno::EIO)?;
            let mut tmp = vec![0u8; bytes as usize];
            ops.read_inline(&m, &mut tmp)?;
            // SAFETY: as above.
            let out = unsafe { core::slice::from_raw_parts_mut(dst.as_ptr(), len as usize) };
            let from = (pos - m.offset) as usize;
            for (i, b) in out.iter_mut().enumerate() {
                *b = tmp.get(from + i).copied().unwrap_or(0);
            }
        }
    }
    Ok(len)
}
