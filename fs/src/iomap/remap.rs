//! Clone range and dedupe range: the generic part around a filesystem's extent sharing
//! (Linux's `remap_file_range_prep` + `generic_remap_checks` + XFS's `xfs_reflink_remap_prep`).
//!
//! [`clone_range`] and [`dedupe_range`] check the request, take both mappings' invalidate locks
//! exclusively (in address order; once for one file), wait for direct I/O in flight on both,
//! write back both ranges, for dedupe compare the contents (equal or nothing happens), for a
//! clone past the destination's EOF zero `[dest size, pos_out)` first, drop the destination's
//! cache over the range, and then call the filesystem's `share` with a [`RemapRange`]. A clone
//! then raises the destination's in-core size to `max(size, pos_out + len)`; the filesystem
//! records the on-disk size in `share` (at least [`RemapRange::new_size`]).
//!
//! Request rules (both operations):
//!
//! - both files on one engine context (`EXDEV` otherwise), positions block aligned (`EINVAL`),
//!   no wrap-around (`EINVAL`), the destination end within the largest file size (`EFBIG`);
//! - `len == 0`: a dedupe does nothing (`Ok`, 0 bytes); a clone goes to the source's EOF (0
//!   bytes when `pos_in` is the size, `EINVAL` past it);
//! - `pos_in` at or past the source's size: `EINVAL`; the length is clamped to the source;
//!   dedupe: both ranges inside their files (`EINVAL`);
//! - a length that is not a block multiple must end at the source's EOF, and then may only
//!   clone the partial EOF block when it becomes the destination's EOF block
//!   (`pos_out + len >= dest size`); otherwise `EINVAL` (no silent shortening);
//! - overlapping ranges of one file: `EINVAL`.
//!
//! Lock order: invalidate locks (both, address order) > file writeback flag > folio locks. The
//! caller holds both files' I/O locks exclusively (Linux `lock_two_nondirectories`).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `vfs_clone_file_range` / `generic_remap_checks` / `generic_remap_check_len` | [`clone_range`] | no `REMAP_FILE_CAN_SHORTEN` |
//! | `vfs_dedupe_file_range_one`, `vfs_dedupe_file_range_compare` | [`dedupe_range`] | compares the device contents after write-back |
//! | `xfs_reflink_remap_prep` (`inode_dio_wait`, zero past EOF, `xfs_flush_unmap_range`) | the preparation steps | |
//! | `xfs_reflink_remap_blocks` + `xfs_reflink_update_dest` | the `share` callback + size update | |

use alloc::sync::Arc;

use super::dio::read_uncached;
use super::file::{IomapFile, MAX_FILE_SIZE};
use super::ops::IomapOps;
use super::sync::write_and_wait;
use super::zero::zero_range;
use crate::platform::DmaBuffer;
use crate::{Errno, Result};

/// One side of a remap: the file and its filesystem callbacks.
#[derive(Clone, Copy)]
pub struct RemapFile<'a> {
    /// The engine object.
    pub file: &'a Arc<IomapFile>,
    /// The filesystem's callbacks for it.
    pub ops: &'a Arc<dyn IomapOps>,
}

/// What the filesystem's `share` callback does: make `blocks` blocks of the destination from
/// `pos_out` share the source's blocks from `pos_in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemapRange {
    /// Source byte position (block aligned).
    pub pos_in: u64,
    /// Destination byte position (block aligned).
    pub pos_out: u64,
    /// Bytes of data (not a block multiple only when the range ends at the source's EOF).
    pub len: u64,
    /// Blocks to share (`len` rounded up to blocks).
    pub blocks: u64,
    /// The destination's size afterwards: the filesystem records at least this on disk.
    pub new_size: u64,
}

/// What a dedupe did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeOutcome {
    /// The contents were equal; this many bytes now share blocks.
    Deduped(u64),
    /// The contents differ: nothing changed (not an error, as Linux's `FILE_DEDUPE_RANGE_DIFFERS`).
    Differs,
}

/// Checks a request; `None` when there is nothing to do, else the clamped length and the
/// block-rounded length.
fn check(
    src: &IomapFile,
    pos_in: u64,
    dst: &IomapFile,
    pos_out: u64,
    len: u64,
    dedupe: bool,
) -> Result<Option<(u64, u64)>> {
    if !Arc::ptr_eq(src.ctx(), dst.ctx()) {
        return Err(Errno::EXDEV);
    }
    let bs = src.block_size();
    let same = core::ptr::eq(src, dst);
    let (size_in, size_out) = (src.size(), dst.size());
    let mut len = len;
    if len == 0 {
        if dedupe || pos_in == size_in {
            return Ok(None);
        }
        if pos_in > size_in {
            return Err(Errno::EINVAL);
        }
        len = size_in - pos_in;
    }
    if !pos_in.is_multiple_of(bs) || !pos_out.is_multiple_of(bs) {
        return Err(Errno::EINVAL);
    }
    let (Some(in_end), Some(out_end)) = (pos_in.checked_add(len), pos_out.checked_add(len)) else {
        return Err(Errno::EINVAL);
    };
    if dedupe && (pos_in >= size_in || in_end > size_in || pos_out >= size_out || out_end > size_out) {
        return Err(Errno::EINVAL);
    }
    if pos_in >= size_in {
        return Err(Errno::EINVAL);
    }
    len = len.min(size_in - pos_in);
    let blen = if pos_in + len == size_in && (!dedupe || pos_out + len == size_out) {
        size_in.div_ceil(bs) * bs - pos_in
    } else if len.is_multiple_of(bs) {
        len
    } else {
        return Err(Errno::EINVAL);
    };
    if !len.is_multiple_of(bs) && pos_out + len < size_out {
        return Err(Errno::EINVAL);
    }
    if pos_out.checked_add(blen).is_none_or(|e| e > MAX_FILE_SIZE) {
        return Err(Errno::EFBIG);
    }
    if same && pos_out + blen > pos_in && pos_out < pos_in + blen {
        return Err(Errno::EINVAL);
    }
    Ok(Some((len, blen)))
}

/// Runs `f` with both files' invalidate locks held exclusively (taken in address order) and no
/// direct I/O in flight on either.
fn with_both_locked<T>(a: &IomapFile, b: &IomapFile, f: impl FnOnce() -> T) -> T {
    let (ma, mb) = (a.mapping(), b.mapping());
    let same = Arc::ptr_eq(ma, mb);
    let (first, second) = if Arc::as_ptr(ma) <= Arc::as_ptr(mb) { (ma, mb) } else { (mb, ma) };
    let _one = first.invalidate_lock().write();
    let _two = (!same).then(|| second.invalidate_lock().write());
    ma.wait_dio();
    mb.wait_dio();
    f()
}

/// Compares `len` bytes of `src` at `pos_in` with `dst` at `pos_out` as written back.
fn same_contents(
    src: RemapFile<'_>,
    pos_in: u64,
    dst: RemapFile<'_>,
    pos_out: u64,
    len: u64,
) -> Result<bool> {
    const CHUNK: usize = 64 << 10;
    let platform = src.file.ctx().platform();
    let lbs = src.file.ctx().device().info().logical_block_size.max(1) as u64;
    let mut a = DmaBuffer::new(platform, CHUNK)?;
    let mut b = DmaBuffer::new(platform, CHUNK)?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        let io = (n.div_ceil(lbs) * lbs) as usize;
        read_uncached(src.file, src.ops, pos_in + done, &mut a.as_mut_slice()[..io])?;
        read_uncached(dst.file, dst.ops, pos_out + done, &mut b.as_mut_slice()[..io])?;
        if a.as_slice()[..n as usize] != b.as_slice()[..n as usize] {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}

/// The common part of clone and dedupe after the checks, under both locks.
fn remap_locked(
    src: RemapFile<'_>,
    pos_in: u64,
    dst: RemapFile<'_>,
    pos_out: u64,
    (len, blen): (u64, u64),
    dedupe: bool,
    share: impl FnOnce(RemapRange) -> Result<()>,
) -> Result<Option<u64>> {
    write_and_wait(src.file, src.ops, pos_in, pos_in + blen)?;
    write_and_wait(dst.file, dst.ops, pos_out, pos_out + blen)?;
    if dedupe && !same_contents(src, pos_in, dst, pos_out, len)? {
        return Ok(None);
    }
    let size_out = dst.file.size();
    let bs = dst.file.block_size();
    if pos_out > size_out {
        // Old bytes past the destination's EOF must not reappear inside the new size.
        zero_range(dst.file, dst.ops, size_out, pos_out - size_out)?;
        write_and_wait(dst.file, dst.ops, size_out & !(bs - 1), pos_out)?;
    }
    dst.file.mapping().invalidate_range(pos_out, pos_out + blen)?;
    let new_size = if dedupe { size_out } else { size_out.max(pos_out + len) };
    share(RemapRange { pos_in, pos_out, len, blocks: blen / bs, new_size })?;
    if new_size > dst.file.size() {
        dst.file.set_size(new_size);
    }
    Ok(Some(len))
}

/// Clones `len` bytes of `src` at `pos_in` into `dst` at `pos_out` (`len == 0`: to the
/// source's EOF); `share` is the filesystem's part. Returns the bytes cloned. See the module
/// documentation.
pub fn clone_range(
    src: RemapFile<'_>,
    pos_in: u64,
    dst: RemapFile<'_>,
    pos_out: u64,
    len: u64,
    share: impl FnOnce(RemapRange) -> Result<()>,
) -> Result<u64> {
    let Some(lens) = check(src.file, pos_in, dst.file, pos_out, len, false)? else { return Ok(0) };
    with_both_locked(src.file, dst.file, || remap_locked(src, pos_in, dst, pos_out, lens, false, share))
        .map(|n| n.unwrap_or(0))
}

/// Deduplicates `len` bytes of `dst` at `pos_out` against `src` at `pos_in`: if the contents
/// are equal, `share` makes them share blocks (no content, size or time change). See the module
/// documentation.
pub fn dedupe_range(
    src: RemapFile<'_>,
    pos_in: u64,
    dst: RemapFile<'_>,
    pos_out: u64,
    len: u64,
    share: impl FnOnce(RemapRange) -> Result<()>,
) -> Result<DedupeOutcome> {
    let Some(lens) = check(src.file, pos_in, dst.file, pos_out, len, true)? else {
        return Ok(DedupeOutcome::Deduped(0));
    };
    let done =
        with_both_locked(src.file, dst.file, || remap_locked(src, pos_in, dst, pos_out, lens, true, share))?;
    Ok(match done {
        Some(n) => DedupeOutcome::Deduped(n),
        None => DedupeOutcome::Differs,
    })
}
