//! DAX: file I/O straight to and from byte-addressable memory ([`DaxDevice`]), without the page
//! cache, driven by the same mapping callback (op [`IomapOp::DAX`]).
//!
//! # Entry points
//!
//! ```text
//! dax_read(&dax, &file, &ops, pos, &mut buf)?               -> bytes read (0 at EOF)
//! dax_write(&dax, &file, &ops, pos, &data)?                 -> bytes written
//! dax_zero_range(&dax, &file, &ops, pos, len)?
//! dax_truncate(&dax, &file, &ops, new_size, fs_truncate)?
//! copy_around(&dax, pos, len, align, &srcmap, &dst)?
//! ```
//!
//! # Rules
//!
//! - **Read** (op `DAX`): clamped to EOF; MAPPED is copied from the device, HOLE / UNWRITTEN /
//!   DELALLOC read as zeros; INLINE is copied from the inode.
//! - **Write** (op `DAX | WRITE`): the filesystem allocates (DAX has no writeback, so no delayed
//!   allocation). Per mapping: copy-on-write (SHARED) first calls [`copy_around`] with the
//!   srcmap for a range that does not cover whole blocks (Linux calls it for every chunk; a
//!   whole-block write overwrites all of it anyway); NEW and UNWRITTEN blocks get their head and
//!   tail zeroed; a plain block has the part past EOF zeroed. Then the data is copied and
//!   persisted. Completion runs right after, as a direct write's: [`IomapOps::ioend_done`] with
//!   [`IoendFlags::DIRECT`](crate::iomap::IoendFlags::DIRECT) (conversion, COW remap, on-disk
//!   size; COW cancel after an error), then the in-core size. A write starting past EOF first
//!   zeroes `[EOF, pos)`.
//! - **Zero range** (op `DAX | ZERO`): HOLE / UNWRITTEN are skipped; shared blocks are zeroed in
//!   their staging, copied around, and remapped; MAPPED blocks are zeroed in place. The size does
//!   not change.
//! - **Truncate**: up: zero `[old, new)`, set the size; down: zero from the new EOF to its block's
//!   end, set the size; then the filesystem's part (`fs_truncate`), under the exclusive
//!   invalidate lock after direct and DAX I/O in flight drained.
//!
//! DAX reads and writes register like direct I/O ([`Mapping::dio_begin`](crate::pagecache::Mapping::dio_begin)),
//! so truncate, punch and clone wait for them. Caller locking is the direct-I/O rule.
//!
//! Lock order: invalidate lock (shared, briefly; exclusive in truncate) > the device's own lock.
//! No engine lock is held while the filesystem is called.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `dax_iomap_rw`, `dax_iomap_iter` | [`dax_read`], [`dax_write`] | no mmap / fault path |
//! | `dax_iomap_copy_around` | [`copy_around`] | skipped for whole-block write chunks |
//! | `dax_zero_range`, `dax_truncate_page` | [`dax_zero_range`], [`dax_truncate`] | |
//! | `xfs_dax_write_iomap_end` (COW end) | completion as a direct write | |
//! | NVDIMM via ACPI NFIT | [`RamDax`] (memory-backed region) | no NFIT parsing |

mod copy;
mod device;

pub use copy::copy_around;
pub use device::{check_range, DaxDevice, RamDax};

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::dio::{complete_write, dio_begin, push_range, DoneRange};
use super::file::{IomapFile, MAX_FILE_SIZE};
use super::iter::{iterate, IomapIter, Step};
use super::ops::IomapOps;
use super::types::{IoendFlags, Iomap, IomapFlags, IomapOp, IomapType};
use crate::{Errno, Result};

/// Reads up to `buf.len()` bytes at `pos`; returns the bytes read (0 at or past EOF).
pub fn dax_read(
    dax: &dyn DaxDevice,
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    pos: u64,
    buf: &mut [u8],
) -> Result<usize> {
    let _dio = dio_begin(file);
    let size = file.size();
    if pos >= size || buf.is_empty() {
        return Ok(0);
    }
    let len = (buf.len() as u64).min(size - pos);
    let progress = iterate(&**ops, pos, len, IomapOp::DAX, file.block_size(), |it| {
        let off = (it.pos() - pos) as usize;
        let out = &mut buf[off..off + it.length() as usize];
        match read_mapping(dax, &**ops, it, out, size) {
            Ok(()) => Step::done(it.length()),
            Err(e) => Step::failed(0, e),
        }
    });
    progress.bytes_or_error().map(|n| n as usize)
}

fn read_mapping(
    dax: &dyn DaxDevice,
    ops: &dyn IomapOps,
    it: &IomapIter,
    out: &mut [u8],
    size: u64,
) -> Result<()> {
    let m = it.iomap();
    match m.kind {
        IomapType::Mapped => dax.read(m.disk_addr(it.pos())?, out),
        IomapType::Hole | IomapType::Unwritten | IomapType::Delalloc => {
            out.fill(0);
            Ok(())
        }
        IomapType::Inline => {
            let bytes = size.checked_sub(m.offset).filter(|&b| b <= m.length).ok_or(Errno::EIO)?;
            let mut tmp = vec![0u8; bytes as usize];
            ops.read_inline(m, &mut tmp)?;
            let from = (it.pos() - m.offset) as usize;
            for (i, b) in out.iter_mut().enumerate() {
                *b = tmp.get(from + i).copied().unwrap_or(0);
            }
            Ok(())
        }
    }
}

/// Writes `data` at `pos`; returns the bytes written. See the module documentation.
pub fn dax_write(
    dax: &dyn DaxDevice,
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    pos: u64,
    data: &[u8],
) -> Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    let end = pos.checked_add(data.len() as u64).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::EFBIG)?;
    let _dio = dio_begin(file);
    let size = file.size();
    if pos > size {
        zero_inner(dax, file, ops, size, pos - size)?;
    }
    let bs = file.block_size();
    let (mut ranges, mut failed): (Vec<DoneRange>, Vec<DoneRange>) = (Vec::new(), Vec::new());
    let progress = iterate(&**ops, pos, end - pos, IomapOp::DAX | IomapOp::WRITE, bs, |it| {
        let off = (it.pos() - pos) as usize;
        let bytes = &data[off..off + it.length() as usize];
        let flags = IoendFlags::for_iomap(it.iomap());
        match write_mapping(dax, it, bytes, bs, size) {
            Ok(()) => {
                push_range(&mut ranges, it.pos(), it.length(), flags);
                Step::done(it.length())
            }
            Err(e) => {
                push_range(&mut failed, it.pos(), it.length(), flags);
                Step::failed(0, e)
            }
        }
    });
    finish(file, &**ops, &ranges, &failed, progress.error, true)?;
    progress.bytes_or_error().map(|n| n as usize)
}

/// Completion of a DAX write or zeroing: the copied ranges succeed, the one that failed is
/// completed with the error (COW cancel); the first error is returned.
fn finish(
    file: &IomapFile,
    ops: &dyn IomapOps,
    ok: &[DoneRange],
    failed: &[DoneRange],
    error: Option<Errno>,
    grow: bool,
) -> Result<()> {
    let done = complete_write(file, ops, ok, None, grow);
    if let Some(e) = error {
        let _ = complete_write(file, ops, failed, Some(e), false);
    }
    done
}

fn write_mapping(dax: &dyn DaxDevice, it: &IomapIter, data: &[u8], bs: u64, size: u64) -> Result<()> {
    let (m, src) = (it.iomap(), it.srcmap());
    if !m.has_addr() {
        return Err(Errno::EIO);
    }
    let (pos, len) = (it.pos(), it.length());
    let end = pos + len;
    let (head, tail_end) = (pos & !(bs - 1), end.div_ceil(bs) * bs);
    if m.flags.contains(IomapFlags::SHARED) {
        if head < pos || end < tail_end {
            copy_around(dax, pos, len, bs, src, m)?;
        }
    } else {
        let zero_all = m.kind == IomapType::Unwritten || m.flags.contains(IomapFlags::NEW);
        if head < pos && (zero_all || head >= size) {
            dax.zero(m.disk_addr(head)?, pos - head)?;
        }
        if end < tail_end && (zero_all || end >= size) {
            dax.zero(m.disk_addr(end)?, tail_end - end)?;
        }
    }
    let addr = m.disk_addr(pos)?;
    dax.write(addr, data)?;
    dax.persist(m.disk_addr(head)?, tail_end - head)
}

/// Zeroes `[pos, pos + len)` (the size does not change). See the module documentation.
pub fn dax_zero_range(
    dax: &dyn DaxDevice,
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    pos: u64,
    len: u64,
) -> Result<()> {
    let _dio = dio_begin(file);
    zero_inner(dax, file, ops, pos, len)
}

/// Zero range without registering (truncate holds the invalidate lock exclusively).
fn zero_inner(
    dax: &dyn DaxDevice,
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    pos: u64,
    len: u64,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    pos.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::EFBIG)?;
    let bs = file.block_size();
    let (mut ranges, mut failed): (Vec<DoneRange>, Vec<DoneRange>) = (Vec::new(), Vec::new());
    let progress = iterate(&**ops, pos, len, IomapOp::DAX | IomapOp::ZERO, bs, |it| {
        let m = *it.iomap();
        let shared = m.flags.contains(IomapFlags::SHARED);
        if !shared && m.kind != IomapType::Mapped {
            return Step::done(it.length());
        }
        let done = if shared { &mut ranges } else { &mut Vec::new() };
        match zero_mapping(dax, it, &m, bs) {
            Ok(()) => {
                push_range(done, it.pos(), it.length(), IoendFlags::for_iomap(&m));
                Step::done(it.length())
            }
            Err(e) => {
                if shared {
                    push_range(&mut failed, it.pos(), it.length(), IoendFlags::for_iomap(&m));
                }
                Step::failed(0, e)
            }
        }
    });
    finish(file, &**ops, &ranges, &failed, progress.error, false)?;
    progress.strict().map(|_| ())
}

fn zero_mapping(dax: &dyn DaxDevice, it: &IomapIter, m: &Iomap, bs: u64) -> Result<()> {
    let (pos, len) = (it.pos(), it.length());
    dax.zero(m.disk_addr(pos)?, len)?;
    if m.flags.contains(IomapFlags::SHARED) && (!pos.is_multiple_of(bs) || !(pos + len).is_multiple_of(bs)) {
        copy_around(dax, pos, len, bs, it.srcmap(), m)?;
    }
    let (head, tail_end) = (pos & !(bs - 1), (pos + len).div_ceil(bs) * bs);
    dax.persist(m.disk_addr(head)?, tail_end - head)
}

/// Changes the size of a DAX file to `new_size`; `fs_truncate(new_size)` is the filesystem's
/// part, called last. `EFBIG` past the largest file size.
pub fn dax_truncate(
    dax: &dyn DaxDevice,
    file: &Arc<IomapFile>,
    ops: &Arc<dyn IomapOps>,
    new_size: u64,
    fs_truncate: impl FnOnce(u64) -> Result<()>,
) -> Result<()> {
    if new_size > MAX_FILE_SIZE {
        return Err(Errno::EFBIG);
    }
    let mapping = file.mapping().clone();
    let _exclusive = mapping.invalidate_lock().write();
    mapping.wait_dio();
    let old = file.size();
    let bs = file.block_size();
    if new_size > old {
        zero_inner(dax, file, ops, old, new_size - old)?;
    } else if !new_size.is_multiple_of(bs) {
        zero_inner(dax, file, ops, new_size, bs - new_size % bs)?;
    }
    file.set_size(new_size);
    fs_truncate(new_size)
}
