//! Clone range (`FICLONERANGE`), dedupe range (`FIDEDUPERANGE`) and copy range
//! (`copy_file_range`).
//!
//! Checks, as Linux's `generic_remap_file_range_prep` / `generic_copy_file_checks`: both files
//! on this mount (`EXDEV`), regular files (`EISDIR` / `EINVAL`), the source readable and the
//! destination writable and not `O_APPEND` (`EBADF`); clone and dedupe offsets block aligned
//! (`EINVAL`); `len == 0` means "to the source's EOF" for clone (nothing at EOF) and nothing for
//! dedupe; `pos_in` at or past the source's EOF is `EINVAL`; dedupe ranges must lie within both
//! files (`EINVAL`, never clamped); clone clamps the length to the source's EOF, and a clamped
//! clone is `EINVAL` (no `REMAP_FILE_CAN_SHORTEN`); a length that is not a whole number of
//! blocks is kept only when it ends at the source's EOF (dedupe: and the destination's) and
//! the range becomes (or passes) the destination's EOF, else dedupe cuts it to whole blocks and
//! clone refuses it (`EINVAL`); overlapping ranges of one file `EINVAL`; ranges past the
//! largest file `EFBIG` (clone) or `EOVERFLOW`-free clamping (copy).
//!
//! Clone: both ranges are written back and waited for; if the destination starts past its EOF
//! the gap is zeroed first (generic/515); the destination's cache over the range is dropped;
//! frond shares the extents (holes stay holes) and the destination grows to
//! `max(size, pos_out + len)`. Dedupe compares the ranges through the cache first: different
//! contents change nothing ([`DedupeOutcome::Differs`]). Copy clones when the ranges allow it
//! and copies through the cache otherwise (returns the bytes copied, 0 at the source's EOF).
//!
//! Lock order: the rw locks of both inodes exclusively, lower inode number first (one lock when
//! both are the same inode).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `vfs_clone_file_range` + `xfs_reflink_remap_range` | [`File::clone_range`] |
//! | `vfs_dedupe_file_range_one` | [`File::dedupe_range`] |
//! | `vfs_copy_file_range` (reflink, else `splice`) | [`File::copy_range`] |

use alloc::sync::Arc;
use alloc::vec;

use spin::RwLockWriteGuard;

use super::file::File;
use super::flags::OpenFlags;
use crate::iomap::write_and_wait;
use crate::{Errno, Result};

/// What a dedupe did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeOutcome {
    /// The ranges were equal and now share blocks (`FILE_DEDUPE_RANGE_SAME`); bytes deduped.
    Same(u64),
    /// The contents differ; nothing changed (`FILE_DEDUPE_RANGE_DIFFERS`).
    Differs,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Clone,
    Dedupe,
}

/// Exclusive rw locks of one or two inodes, in inode-number order.
struct Locked2<'a> {
    _a: RwLockWriteGuard<'a, ()>,
    _b: Option<RwLockWriteGuard<'a, ()>>,
}

fn lock2<'a>(src: &'a File, dst: &'a File) -> Locked2<'a> {
    if Arc::ptr_eq(src.inode(), dst.inode()) {
        return Locked2 { _a: src.inode().rw.write(), _b: None };
    }
    let (first, second) = if src.ino() < dst.ino() { (src, dst) } else { (dst, src) };
    let a = first.inode().rw.write();
    let b = second.inode().rw.write();
    Locked2 { _a: a, _b: Some(b) }
}

impl File {
    /// The checks every remap and copy does on the pair of files.
    fn check_pair(&self, src: &File) -> Result<()> {
        if !Arc::ptr_eq(self.fs(), src.fs()) {
            return Err(Errno::EXDEV);
        }
        if src.inode().is_dir() || self.inode().is_dir() {
            return Err(Errno::EISDIR);
        }
        if !src.inode().is_reg() || !self.inode().is_reg() {
            return Err(Errno::EINVAL);
        }
        if !src.flags().readable() || !self.flags().writable() || self.flags().contains(OpenFlags::APPEND) {
            return Err(Errno::EBADF);
        }
        Ok(())
    }

    /// The clone / dedupe range checks (sizes read under the locks), Linux's
    /// `generic_remap_file_range_prep` + `generic_remap_checks`. Returns the length to share in
    /// bytes (0: nothing to do).
    fn remap_prep(&self, src: &File, pos_in: u64, pos_out: u64, len: u64, kind: Kind) -> Result<u64> {
        let bs = self.fs().block_size();
        let size_in = src.size();
        let size_out = self.size();
        // Zero length: dedupe does nothing, clone goes to the source's EOF.
        let req = match (len, kind) {
            (0, Kind::Dedupe) => return Ok(0),
            (0, Kind::Clone) if pos_in == size_in => return Ok(0),
            (0, Kind::Clone) if pos_in > size_in => return Err(Errno::EINVAL),
            (0, Kind::Clone) => size_in - pos_in,
            _ => len,
        };
        if !pos_in.is_multiple_of(bs) || !pos_out.is_multiple_of(bs) {
            return Err(Errno::EINVAL);
        }
        let end_in = pos_in.checked_add(req).ok_or(Errno::EINVAL)?;
        let end_out = pos_out.checked_add(req).ok_or(Errno::EINVAL)?;
        // Dedupe needs both ranges within EOF (never shortened to it).
        if kind == Kind::Dedupe
            && (pos_in >= size_in || end_in > size_in || pos_out >= size_out || end_out > size_out)
        {
            return Err(Errno::EINVAL);
        }
        if pos_in >= size_in {
            return Err(Errno::EINVAL);
        }
        let mut len = req.min(size_in - pos_in);
        if pos_out.saturating_add(len) > self.fs().max_file_size() {
            return Err(Errno::EFBIG);
        }
        // An unaligned length is kept only when it reaches the source's EOF (and, for dedupe,
        // the destination's); otherwise it is cut to whole blocks, which only dedupe accepts
        // (REMAP_FILE_CAN_SHORTEN).
        let to_eof = pos_in + len == size_in && (kind == Kind::Clone || pos_out + len == size_out);
        let blocks_len = if to_eof {
            size_in.next_multiple_of(bs) - pos_in
        } else {
            len -= len % bs;
            len
        };
        if Arc::ptr_eq(src.inode(), self.inode())
            && pos_out + blocks_len > pos_in
            && pos_out < pos_in + blocks_len
        {
            return Err(Errno::EINVAL);
        }
        if len != req && kind == Kind::Clone {
            return Err(Errno::EINVAL);
        }
        // A partial last block may only land where it becomes (or passes) the destination's
        // EOF: the source's bytes past its EOF must not appear inside the destination.
        if !len.is_multiple_of(bs) && pos_out + len < size_out {
            return Err(Errno::EINVAL);
        }
        Ok(len)
    }

    /// Writes back both ranges and drops the destination's cache over its range.
    fn remap_flush(&self, src: &File, pos_in: u64, pos_out: u64, len: u64) -> Result<()> {
        let bs = self.fs().block_size();
        let rl = len.div_ceil(bs) * bs;
        write_and_wait(src.inode().file(), src.inode().ops(), pos_in, pos_in + rl)?;
        let dst = self.inode().file();
        write_and_wait(dst, self.inode().ops(), pos_out, pos_out + rl)?;
        dst.mapping().invalidate_range(pos_out, pos_out + rl)
    }

    /// Shares the blocks (frond) and grows the destination if needed. Locks held.
    fn remap_blocks(&self, src: &File, pos_in: u64, pos_out: u64, len: u64) -> Result<()> {
        let bs = self.fs().block_size();
        let (si, di) = (src.ino(), self.ino());
        let blocks = len.div_ceil(bs);
        self.inode().ops.mutate(|f| f.clone_extents(si, pos_in / bs, di, pos_out / bs, blocks))?;
        src.inode().file().mapping().bump_seq();
        let end = pos_out + len;
        let file = self.inode().file();
        if end > file.size() {
            self.inode().ops.mutate(|f| f.set_disk_size(di, end))?;
            file.set_size(end);
            file.set_disk_size(end);
        }
        Ok(())
    }

    /// `FICLONERANGE`: makes `[pos_out, pos_out + len)` of this file share the blocks of
    /// `[pos_in, pos_in + len)` of `src` (`len == 0`: to `src`'s EOF). See the module docs.
    pub fn clone_range(&self, src: &File, pos_in: u64, len: u64, pos_out: u64) -> Result<()> {
        self.check_pair(src)?;
        let _locks = lock2(src, self);
        let len = self.remap_prep(src, pos_in, pos_out, len, Kind::Clone)?;
        if len == 0 {
            return Ok(());
        }
        self.clone_locked(src, pos_in, len, pos_out)
    }

    fn clone_locked(&self, src: &File, pos_in: u64, len: u64, pos_out: u64) -> Result<()> {
        if pos_out > self.size() {
            self.truncate_locked(pos_out)?;
        }
        self.remap_flush(src, pos_in, pos_out, len)?;
        self.remap_blocks(src, pos_in, pos_out, len)?;
        self.inode().ops.times_dirty.store(true, core::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// `FIDEDUPERANGE` for one destination: shares the blocks if the contents are equal.
    /// `len == 0` succeeds without effect. See the module docs.
    pub fn dedupe_range(&self, src: &File, pos_in: u64, len: u64, pos_out: u64) -> Result<DedupeOutcome> {
        self.check_pair(src)?;
        if len == 0 {
            return Ok(DedupeOutcome::Same(0));
        }
        let _locks = lock2(src, self);
        let len = self.remap_prep(src, pos_in, pos_out, len, Kind::Dedupe)?;
        if len == 0 {
            return Ok(DedupeOutcome::Same(0));
        }
        let chunk = (256usize << 10).min(len as usize);
        let (mut a, mut b) = (vec![0u8; chunk], vec![0u8; chunk]);
        let mut done = 0u64;
        while done < len {
            let n = chunk.min((len - done) as usize);
            let got_a = src.read_any(pos_in + done, &mut a[..n])?;
            let got_b = self.read_any(pos_out + done, &mut b[..n])?;
            if got_a != got_b || a[..got_a] != b[..got_b] || got_a == 0 {
                return Ok(DedupeOutcome::Differs);
            }
            done += got_a as u64;
        }
        self.remap_flush(src, pos_in, pos_out, len)?;
        self.remap_blocks(src, pos_in, pos_out, len)?;
        Ok(DedupeOutcome::Same(len))
    }

    /// A buffered read ignoring the open mode (the remap calls read the destination too).
    fn read_any(&self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let file = self.inode().file();
        let mut open = file.open();
        crate::iomap::read(file, self.inode().ops(), &mut open, pos, buf)
    }

    /// `copy_file_range`: copies up to `len` bytes of `src` at `pos_in` to this file at
    /// `pos_out`; returns the bytes copied (0 at or past `src`'s EOF). Shares blocks when the
    /// ranges meet the clone rules, copies through the cache otherwise.
    pub fn copy_range(&self, src: &File, pos_in: u64, len: u64, pos_out: u64) -> Result<u64> {
        self.check_pair(src)?;
        let _locks = lock2(src, self);
        let size_in = src.size();
        if pos_in >= size_in || len == 0 {
            return Ok(0);
        }
        let len = len.min(size_in - pos_in);
        let max = self.fs().max_file_size();
        if pos_out >= max {
            return Err(Errno::EFBIG);
        }
        let len = len.min(max - pos_out);
        if Arc::ptr_eq(src.inode(), self.inode()) && pos_in < pos_out + len && pos_out < pos_in + len {
            return Err(Errno::EINVAL);
        }
        if self.remap_prep(src, pos_in, pos_out, len, Kind::Clone) == Ok(len) {
            self.clone_locked(src, pos_in, len, pos_out)?;
            return Ok(len);
        }
        let mut buf = vec![0u8; (1usize << 20).min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = (buf.len() as u64).min(len - done) as usize;
            let got = src.read_any(pos_in + done, &mut buf[..n])?;
            if got == 0 {
                break;
            }
            match self.write_locked(pos_out + done, &buf[..got], false) {
                Ok(w) => done += w as u64,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }
}
