//! [`MemTarget`]: the byte-level reference model of the op-log semantics (the same rules as
//! `fs/oracle/model.py`), a file that is a `Vec<u8>`. It has no blocks and no cache; its
//! EINVAL rules are the Linux VFS checks a valid fsx log never triggers.

use alloc::vec::Vec;

use super::target::ReplayTarget;
use crate::{Errno, Result};

const BS: u64 = 4096;

/// A file in memory.
#[derive(Default)]
pub struct MemTarget {
    data: Vec<u8>,
}

impl MemTarget {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn set_size(&mut self, n: u64) {
        self.data.resize(n as usize, 0);
    }

    fn zero(&mut self, a: u64, b: u64) {
        let b = b.min(self.len());
        if b > a {
            self.data[a as usize..b as usize].fill(0);
        }
    }

    fn check_remap(&self, src: u64, len: u64, dst: u64) -> Result<()> {
        let size = self.len();
        if !src.is_multiple_of(BS) || !dst.is_multiple_of(BS) || src >= size {
            return Err(Errno::EINVAL);
        }
        if src + len > size || (!len.is_multiple_of(BS) && src + len != size) {
            return Err(Errno::EINVAL);
        }
        if dst < src + len && src < dst + len {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

impl ReplayTarget for MemTarget {
    fn size(&mut self) -> Result<u64> {
        Ok(self.len())
    }

    fn write(&mut self, off: u64, data: &[u8], _direct: bool) -> Result<()> {
        let end = off + data.len() as u64;
        if end > self.len() {
            self.set_size(end);
        }
        self.data[off as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn write_atomic(&mut self, off: u64, data: &[u8]) -> Result<()> {
        self.write(off, data, true)
    }

    fn read(&mut self, off: u64, buf: &mut [u8], _direct: bool) -> Result<usize> {
        let n = (buf.len() as u64).min(self.len().saturating_sub(off)) as usize;
        buf[..n].copy_from_slice(&self.data[off as usize..off as usize + n]);
        Ok(n)
    }

    fn truncate(&mut self, size: u64) -> Result<()> {
        self.set_size(size);
        Ok(())
    }

    fn fallocate(&mut self, off: u64, len: u64, keep_size: bool, _unshare: bool) -> Result<()> {
        if !keep_size && off + len > self.len() {
            self.set_size(off + len);
        }
        Ok(())
    }

    fn punch_hole(&mut self, off: u64, len: u64) -> Result<()> {
        self.zero(off, off + len);
        Ok(())
    }

    fn zero_range(&mut self, off: u64, len: u64, keep_size: bool) -> Result<()> {
        if !keep_size && off + len > self.len() {
            self.set_size(off + len);
        }
        self.zero(off, off + len);
        Ok(())
    }

    fn collapse_range(&mut self, off: u64, len: u64) -> Result<()> {
        if !off.is_multiple_of(BS) || !len.is_multiple_of(BS) || len == 0 || off + len >= self.len() {
            return Err(Errno::EINVAL);
        }
        self.data.drain(off as usize..(off + len) as usize);
        Ok(())
    }

    fn insert_range(&mut self, off: u64, len: u64) -> Result<()> {
        if !off.is_multiple_of(BS) || !len.is_multiple_of(BS) || len == 0 || off >= self.len() {
            return Err(Errno::EINVAL);
        }
        let at = off as usize;
        self.data.splice(at..at, core::iter::repeat_n(0u8, len as usize));
        Ok(())
    }

    fn clone_range(&mut self, src: u64, len: u64, dst: u64) -> Result<()> {
        self.check_remap(src, len, dst)?;
        let chunk: Vec<u8> = self.data[src as usize..(src + len) as usize].to_vec();
        self.write(dst, &chunk, false)
    }

    fn dedupe_range(&mut self, src: u64, len: u64, dst: u64) -> Result<bool> {
        self.check_remap(src, len, dst)?;
        if dst + len > self.len() {
            return Err(Errno::EINVAL);
        }
        let (s, d) = (src as usize, dst as usize);
        Ok(self.data[s..s + len as usize] == self.data[d..d + len as usize])
    }

    fn copy_range(&mut self, src: u64, len: u64, dst: u64) -> Result<u64> {
        if dst < src + len && src < dst + len {
            return Err(Errno::EINVAL);
        }
        let n = len.min(self.len().saturating_sub(src));
        if n > 0 {
            let chunk: Vec<u8> = self.data[src as usize..(src + n) as usize].to_vec();
            self.write(dst, &chunk, false)?;
        }
        Ok(n)
    }

    fn fsync(&mut self) -> Result<()> {
        Ok(())
    }

    fn close_open(&mut self) -> Result<()> {
        Ok(())
    }
}
