//! Blocking helpers over the asynchronous [`BlockDevice`] interface.
//!
//! Each helper submits and then waits with [`wait_until`], kicking the device with
//! [`BlockDevice::poll`], so it works in a kernel with neither interrupts nor threads. Buffers
//! that the platform cannot DMA to (or that break the device's alignment) are bounced through a
//! [`DmaBuffer`]. These are for metadata, tools and tests; the hot paths submit bios themselves.

use alloc::sync::Arc;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, Ordering};

use super::{Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, Segment, SECTOR_SIZE};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, DmaBuffer, Platform};

const PENDING: i32 = i32::MIN;

/// A one-shot completion: [`BioComplete`] that records the outcome of one bio.
pub struct Completion {
    state: AtomicI32,
}

impl Completion {
    /// A pending completion.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { state: AtomicI32::new(PENDING) })
    }

    /// The outcome, once complete.
    pub fn result(&self) -> Option<Result<()>> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            0 => Some(Ok(())),
            e => Some(Err(errno_from(e))),
        }
    }

    /// A [`BioEnd`] that reports to this completion.
    pub fn end(self: &Arc<Self>) -> BioEnd {
        BioEnd::new(self.clone(), 0)
    }

    /// Waits for the outcome, polling `dev`.
    pub fn wait(&self, dev: &dyn BlockDevice, platform: &dyn Platform) -> Result<()> {
        let key = self as *const Self as usize;
        wait_until(platform, key, &|| self.result().is_some(), &|| {
            dev.poll();
        });
        self.result().expect("completed")
    }
}

fn errno_from(code: i32) -> Errno {
    // Completions only store codes of real Errno values; anything else reads as EIO.
    Errno::from_code(code).unwrap_or(Errno::EIO)
}

impl BioComplete for Completion {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        let v = match result {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        self.state.store(v, Ordering::Release);
    }
}

/// Submits `bio` (its completion target is replaced) and waits for it.
pub fn submit_wait(dev: &dyn BlockDevice, platform: &dyn Platform, mut bio: Bio) -> Result<()> {
    let done = Completion::new();
    bio.end = done.end();
    dev.submit(bio);
    done.wait(dev, platform)
}

/// Largest single-segment bio the helpers build for this device.
fn chunk_limit(dev: &dyn BlockDevice) -> usize {
    let info = dev.info();
    let lbs = info.logical_block_size.max(512) as usize;
    let max = (info.max_request_bytes.min(info.max_segment_bytes) as usize).max(lbs);
    max / lbs * lbs
}

fn data_bio(op: BioOp, flags: BioFlags, offset: u64, ptr: *const u8, phys: u64, len: usize) -> Bio {
    let mut bio = Bio::new(op, offset / SECTOR_SIZE, BioEnd::new(Completion::new(), 0));
    bio.flags = flags;
    let virt = NonNull::new(ptr as *mut u8).expect("non-null buffer");
    // SAFETY: the helpers below wait for completion while they hold the borrow of the buffer,
    // and `phys` came from the platform (or is a bounce buffer's) for exactly this range.
    let seg = unsafe { Segment::new(virt, phys, len as u32) };
    bio.push(seg).expect("first segment fits");
    bio
}

fn dma_ok(dev: &dyn BlockDevice, platform: &dyn Platform, ptr: *const u8, len: usize) -> Option<u64> {
    let align = dev.info().dma_alignment.max(1) as usize;
    if !(ptr as usize).is_multiple_of(align) {
        return None;
    }
    platform.dma_address(ptr, len)
}

fn check_range(dev: &dyn BlockDevice, offset: u64, len: usize) -> Result<()> {
    let lbs = dev.info().logical_block_size as u64;
    if !offset.is_multiple_of(lbs) || !(len as u64).is_multiple_of(lbs) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Reads `buf.len()` bytes at byte `offset`. Both must be multiples of the logical block size.
pub fn read_at(
    dev: &dyn BlockDevice,
    platform: &Arc<dyn Platform>,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    check_range(dev, offset, buf.len())?;
    let chunk = chunk_limit(dev);
    let mut done = 0;
    while done < buf.len() {
        let n = chunk.min(buf.len() - done);
        let part = &mut buf[done..done + n];
        let off = offset + done as u64;
        // The device writes through this pointer: derive it from the exclusive borrow.
        let dst = part.as_mut_ptr();
        match dma_ok(dev, &**platform, dst, n) {
            Some(phys) => {
                submit_wait(dev, &**platform, data_bio(BioOp::Read, BioFlags::empty(), off, dst, phys, n))?
            }
            None => {
                let bounce = DmaBuffer::new(platform, n)?;
                let bio = data_bio(
                    BioOp::Read,
                    BioFlags::empty(),
                    off,
                    bounce.as_slice().as_ptr(),
                    bounce.phys(),
                    n,
                );
                submit_wait(dev, &**platform, bio)?;
                part.copy_from_slice(bounce.as_slice());
            }
        }
        done += n;
    }
    Ok(())
}

/// Writes `buf` at byte `offset` with `flags` (e.g. FUA). Both must be multiples of the logical
/// block size.
pub fn write_at(
    dev: &dyn BlockDevice,
    platform: &Arc<dyn Platform>,
    offset: u64,
    buf: &[u8],
    flags: BioFlags,
) -> Result<()> {
    check_range(dev, offset, buf.len())?;
    let chunk = chunk_limit(dev);
    let mut done = 0;
    while done < buf.len() {
        let n = chunk.min(buf.len() - done);
        let part = &buf[done..done + n];
        let off = offset + done as u64;
        match dma_ok(dev, &**platform, part.as_ptr(), n) {
            Some(phys) => {
                submit_wait(dev, &**platform, data_bio(BioOp::Write, flags, off, part.as_ptr(), phys, n))?
            }
            None => {
                let mut bounce = DmaBuffer::new(platform, n)?;
                bounce.as_mut_slice().copy_from_slice(part);
                let bio = data_bio(BioOp::Write, flags, off, bounce.as_slice().as_ptr(), bounce.phys(), n);
                submit_wait(dev, &**platform, bio)?;
            }
        }
        done += n;
    }
    Ok(())
}

/// Flushes the device's volatile cache.
pub fn flush(dev: &dyn BlockDevice, platform: &dyn Platform) -> Result<()> {
    submit_wait(dev, platform, Bio::flush(BioEnd::new(Completion::new(), 0)))
}

/// DISCARDs or WRITE_ZEROes `len` bytes at `offset` (multiples of the logical block size).
pub fn dataless(
    dev: &dyn BlockDevice,
    platform: &dyn Platform,
    op: BioOp,
    offset: u64,
    len: u64,
) -> Result<()> {
    check_range(dev, offset, len as usize)?;
    if !matches!(op, BioOp::Discard | BioOp::WriteZeroes) {
        return Err(Errno::EINVAL);
    }
    let bio = Bio::dataless(op, offset / SECTOR_SIZE, len / SECTOR_SIZE, BioEnd::new(Completion::new(), 0));
    submit_wait(dev, platform, bio)
}
