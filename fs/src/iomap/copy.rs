//! Where buffered-write data comes from: [`CopySource`], a cursor over the caller's bytes that
//! may deliver fewer bytes than asked (Linux's `iov_iter` with a user page that faults).
//!
//! The write path first asks [`CopySource::prepare`] how much can be had (0 means nothing:
//! `EFAULT`), then copies into a locked folio with [`CopySource::copy_to`], which may come up
//! short; only bytes the write path accepts are consumed with [`CopySource::advance`]. Kernel
//! callers pass a [`SliceSource`]; tests use sources that fault on purpose.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `fault_in_iov_iter_readable` | [`CopySource::prepare`] |
//! | `copy_folio_from_iter_atomic` | [`CopySource::copy_to`] |
//! | `iov_iter_advance` / `iov_iter_revert` | [`CopySource::advance`] (copy does not advance) |

/// A source of write data. See the module documentation.
pub trait CopySource {
    /// Bytes not yet consumed.
    fn remaining(&self) -> usize;

    /// Makes up to `len` of the next bytes available; returns how many are (0: none, the write
    /// fails with `EFAULT`).
    fn prepare(&mut self, len: usize) -> usize;

    /// Copies the next bytes into `dst` without consuming them; returns how many were copied
    /// (fewer than `dst.len()` on a fault). `dst` may be folio memory not yet written (see
    /// [`LockedFolio::copy_in`](crate::pagecache::LockedFolio::copy_in)): only write to it,
    /// never read it.
    fn copy_to(&mut self, dst: &mut [u8]) -> usize;

    /// Consumes `n` bytes.
    fn advance(&mut self, n: usize);
}

/// A [`CopySource`] over a byte slice: never faults.
pub struct SliceSource<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> SliceSource<'a> {
    /// A source delivering `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }
}

impl CopySource for SliceSource<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn prepare(&mut self, len: usize) -> usize {
        len.min(self.remaining())
    }

    fn copy_to(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.remaining());
        dst[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        n
    }

    fn advance(&mut self, n: usize) {
        self.at = (self.at + n).min(self.data.len());
    }
}

/// A [`CopySource`] of zeros (zeroing through the write path).
pub(crate) struct ZeroSource {
    left: usize,
}

impl ZeroSource {
    pub(crate) fn new(len: usize) -> Self {
        Self { left: len }
    }
}

impl CopySource for ZeroSource {
    fn remaining(&self) -> usize {
        self.left
    }

    fn prepare(&mut self, len: usize) -> usize {
        len.min(self.left)
    }

    fn copy_to(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.left);
        dst[..n].fill(0);
        n
    }

    fn advance(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n);
    }
}
