//! [`DaxDevice`]: a byte-addressable device (persistent memory) the DAX paths copy to and from
//! directly, and [`RamDax`], a memory-backed one.
//!
//! A DAX device is the same bytes as a block device: a filesystem keeps its metadata on the
//! [`BlockDevice`] side (bios, flushes, its journal) and moves file data through the DAX side
//! with CPU copies; an iomap's `addr` is a byte offset on both. [`RamDax`] pairs a [`RamDisk`]
//! with its DAX view, which is what the tests use and what the Foliage kernel offers (a region
//! of RAM). A kernel with a real NVDIMM implements [`DaxDevice`] over the region it found in the
//! ACPI NFIT, with `persist` issuing cache-line write-backs and a fence; Foliage's own kernel
//! does not parse the NFIT (the memory-backed region is used instead).
//!
//! Bounds: every method checks its range against [`DaxDevice::size`] (`EINVAL` outside).
//!
//! Lock order: a [`RamDax`] takes the RamDisk's medium lock per call, a leaf.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct dax_device`, `dax_direct_access` (kernel address of a pmem range) | [`DaxDevice`] | copy methods instead of a raw address |
//! | `copy_mc_to_kernel` / `_copy_from_iter_flushcache` | [`DaxDevice::read`] / [`DaxDevice::write`] | |
//! | `arch_wb_cache_pmem` | [`DaxDevice::persist`] | |
//! | `drivers/nvdimm/pmem.c` (block device + DAX on one region) | [`RamDax`] over a [`RamDisk`] | memory-backed, not an NVDIMM |

use alloc::sync::Arc;

use crate::block::{BlockDevice, RamDisk};
use crate::{Errno, Result};

/// A byte-addressable device. See the module documentation.
pub trait DaxDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// Copies `dst.len()` bytes at byte `offset` into `dst`.
    fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()>;

    /// Copies `src` to byte `offset`.
    fn write(&self, offset: u64, src: &[u8]) -> Result<()>;

    /// Zeroes `len` bytes at `offset`.
    fn zero(&self, offset: u64, len: u64) -> Result<()> {
        let zeros = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write(offset + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Copies `len` bytes from byte `from` to byte `to` (the ranges do not overlap).
    fn copy(&self, from: u64, to: u64, len: u64) -> Result<()> {
        let mut buf = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.read(from + done, &mut buf[..n])?;
            self.write(to + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Makes the bytes written to `[offset, offset + len)` durable (cache-line write-back and a
    /// fence on real persistent memory). The default does nothing (memory that is durable as
    /// soon as it is written, or not durable at all).
    fn persist(&self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// Checks `[offset, offset + len)` against a device of `size` bytes.
pub fn check_range(size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// A memory-backed DAX device: the DAX view of a [`RamDisk`]. See the module documentation.
pub struct RamDax {
    disk: Arc<RamDisk>,
    size: u64,
}

impl RamDax {
    /// The DAX view of `disk` (whose block side stays usable for metadata).
    pub fn new(disk: Arc<RamDisk>) -> Arc<Self> {
        let size = disk.info().capacity_bytes();
        Arc::new(Self { disk, size })
    }

    /// The block side.
    pub fn disk(&self) -> &Arc<RamDisk> {
        &self.disk
    }
}

impl DaxDevice for RamDax {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()> {
        check_range(self.size, offset, dst.len() as u64)?;
        self.disk.peek(offset, dst);
        Ok(())
    }

    fn write(&self, offset: u64, src: &[u8]) -> Result<()> {
        check_range(self.size, offset, src.len() as u64)?;
        self.disk.poke(offset, src);
        Ok(())
    }
}
