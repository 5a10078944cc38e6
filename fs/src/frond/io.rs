//! Metadata I/O: block reads with the blocking helpers, and batched asynchronous writes.
//!
//! Owns [`MetaIo`], the handle every frond layer uses to reach the device. Writes of many
//! blocks (journal commits, checkpoints) are sorted, merged into runs of adjacent blocks, copied
//! into DMA buffers, submitted as bios together (one per run, split at the device's request
//! limit) and waited for as a batch, polling the device. Takes no locks of its own; completions
//! touch only the batch's atomic counters.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xfs_buf_submit` per buffer, plugged and merged by the block layer | [`MetaIo::write_batch`] (merges itself) |
//! | `submit_bio_wait` | [`MetaIo::read_blocks`] / [`MetaIo::write_block`] |
//! | `blkdev_issue_flush` | [`MetaIo::flush`] |

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::block::sync::{flush, read_at, write_at};
use crate::block::{Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, Segment, SECTOR_SIZE};
use crate::platform::{wait_until, DmaBuffer, Platform};
use crate::{Errno, Result};

/// Counts the outstanding bios of one batch and keeps the first error. Each completion
/// unparks the waiter (the platform's waiting rule), so a kernel whose completions arrive by
/// interrupt can sleep in `park`.
struct BatchCompletion {
    remaining: AtomicUsize,
    error: AtomicI32,
    platform: Arc<dyn Platform>,
}

impl BatchCompletion {
    fn key(&self) -> usize {
        self as *const Self as usize
    }
}

impl BioComplete for BatchCompletion {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        if let Err(e) = result {
            let _ = self.error.compare_exchange(0, e.code(), Ordering::AcqRel, Ordering::Acquire);
        }
        self.remaining.fetch_sub(1, Ordering::AcqRel);
        self.platform.unpark(self.key());
    }
}

/// The device, the platform and the block size: everything metadata I/O needs.
#[derive(Clone)]
pub struct MetaIo {
    dev: Arc<dyn BlockDevice>,
    platform: Arc<dyn Platform>,
    block_log: u32,
}

impl MetaIo {
    /// I/O in blocks of `1 << block_log` bytes. `EINVAL` when the device's logical block size
    /// does not divide the block size.
    pub fn new(dev: Arc<dyn BlockDevice>, platform: Arc<dyn Platform>, block_log: u32) -> Result<Self> {
        let lbs = dev.info().logical_block_size as u64;
        if lbs == 0 || !(1u64 << block_log).is_multiple_of(lbs) {
            return Err(Errno::EINVAL);
        }
        Ok(Self { dev, platform, block_log })
    }

    /// The device.
    pub fn dev(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<dyn Platform> {
        &self.platform
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> usize {
        1 << self.block_log
    }

    /// Reads `buf.len() / block_size` blocks starting at `blkno`.
    pub fn read_blocks(&self, blkno: u64, buf: &mut [u8]) -> Result<()> {
        let off = blkno.checked_mul(1 << self.block_log).ok_or(Errno::EINVAL)?;
        read_at(&*self.dev, &self.platform, off, buf)
    }

    /// Writes one or more whole blocks at `blkno` and waits.
    pub fn write_block(&self, blkno: u64, data: &[u8], flags: BioFlags) -> Result<()> {
        let off = blkno.checked_mul(1 << self.block_log).ok_or(Errno::EINVAL)?;
        write_at(&*self.dev, &self.platform, off, data, flags | BioFlags::META)
    }

    /// Flushes the device's volatile cache.
    pub fn flush(&self) -> Result<()> {
        flush(&*self.dev, &*self.platform)
    }

    /// Writes every `(blkno, image)` (each one block) and waits for all of them. Adjacent
    /// blocks go out as one bio. The first device error is returned after all have completed.
    pub fn write_batch(&self, blocks: &mut [(u64, &[u8])]) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let bs = self.block_size();
        blocks.sort_unstable_by_key(|b| b.0);
        let info = self.dev.info();
        let max_bytes = (info.max_request_bytes.min(info.max_segment_bytes) as usize).max(bs);
        let per_bio = (max_bytes / bs).max(1);
        // Group into runs of adjacent blocks, each at most `per_bio` long.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < blocks.len() {
            let mut j = i + 1;
            while j < blocks.len() && j - i < per_bio && blocks[j].0 == blocks[j - 1].0 + 1 {
                j += 1;
            }
            runs.push((i, j));
            i = j;
        }
        let batch = Arc::new(BatchCompletion {
            remaining: AtomicUsize::new(0),
            error: AtomicI32::new(0),
            platform: self.platform.clone(),
        });
        let mut buffers: Vec<DmaBuffer> = Vec::with_capacity(runs.len());
        for &(a, b) in &runs {
            let mut buf = DmaBuffer::new(&self.platform, (b - a) * bs)?;
            for (k, (_, img)) in blocks[a..b].iter().enumerate() {
                buf.as_mut_slice()[k * bs..(k + 1) * bs].copy_from_slice(img);
            }
            buffers.push(buf);
        }
        // Build every bio before submitting any, so an error leaves nothing in flight.
        let mut bios: Vec<Bio> = Vec::with_capacity(runs.len());
        for (&(a, _), buf) in runs.iter().zip(&buffers) {
            let sector = (blocks[a].0 << self.block_log) / SECTOR_SIZE;
            let mut bio = Bio::new(BioOp::Write, sector, BioEnd::new(batch.clone(), 0));
            bio.flags = BioFlags::META;
            let virt = NonNull::new(buf.as_slice().as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
            // SAFETY: `buffers` owns the memory and outlives the wait below, which returns only
            // once every bio of this batch has completed; the CPU does not touch it meanwhile.
            let seg = unsafe { Segment::new(virt, buf.phys(), buf.len() as u32) };
            bio.push(seg).map_err(|_| Errno::EINVAL)?;
            bios.push(bio);
        }
        batch.remaining.store(bios.len(), Ordering::Release);
        for bio in bios {
            self.dev.submit(bio);
        }
        let key = batch.key();
        wait_until(&*self.platform, key, &|| batch.remaining.load(Ordering::Acquire) == 0, &|| {
            self.dev.poll();
        });
        drop(buffers);
        match batch.error.load(Ordering::Acquire) {
            0 => Ok(()),
            e => Err(Errno::from_code(e).unwrap_or(Errno::EIO)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use crate::platform::StdPlatform;
    use alloc::vec;

    #[test]
    fn batch_merges_adjacent_blocks_into_one_bio() {
        let disk = Arc::new(RamDisk::new(64 * 1024, 512).unwrap());
        let io = MetaIo::new(disk.clone(), StdPlatform::arc(), 10).unwrap();
        let imgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i + 1; 1024]).collect();
        let mut list: Vec<(u64, &[u8])> =
            vec![(7, &imgs[0]), (3, &imgs[1]), (4, &imgs[2]), (5, &imgs[3]), (20, &imgs[4])];
        io.write_batch(&mut list).unwrap();
        assert_eq!(disk.stats().writes, 3, "runs {{3,4,5}}, {{7}}, {{20}}");
        let mut back = vec![0u8; 1024 * 3];
        io.read_blocks(3, &mut back).unwrap();
        assert!(back[..1024].iter().all(|&b| b == 2) && back[2048..].iter().all(|&b| b == 4));
        let mut one = vec![0u8; 1024];
        io.read_blocks(20, &mut one).unwrap();
        assert!(one.iter().all(|&b| b == 5));
        assert!(MetaIo::new(Arc::new(RamDisk::new(65536, 4096).unwrap()), StdPlatform::arc(), 10).is_err());
    }
}
