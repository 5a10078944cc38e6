//! RamDisk: a [`BlockDevice`] in memory, for tests on the host and in the kernel.
//!
//! Bios are queued by `submit` and carried out by `poll`, so the asynchronous contract (nothing
//! is done until completion is reported) is exercised the way a real device exercises it. A bio
//! changes the medium when it completes, in completion order. Every op is counted ([`IoStats`])
//! and optionally traced ([`RamDisk::set_trace`]) so tests can assert exact I/O ("one device
//! read").
//!
//! Test knobs, changeable at any time:
//!
//! - [`RamDisk::set_completion_order`]: FIFO (the default: each `poll` runs everything pending,
//!   including bios submitted by completion callbacks during that poll), reverse, or a seeded
//!   shuffle of the batch a `poll` takes, so upper layers' many-in-flight logic sees completions
//!   out of submission order;
//! - [`RamDisk::set_poll_budget`]: at most N completions per `poll`, so requests stay in flight
//!   across polls;
//! - [`RamDisk::peak_in_flight`]: the most bios ever in flight at once (queue-depth checks).
//!
//! RamDisk does not enforce its own `queue_depth`: it accepts any number of bios, and
//! [`RamDisk::peak_in_flight`] lets a test check that a layer above respected the limit.
//!
//! Lock order: `knobs`, then `pending`, then `data`, then `stats`, then `trace` (never two of
//! the first three at once in practice); completions run with none held.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use super::prng::SplitMix64;
use super::{validate, Bio, BioOp, BlockDevice, DeviceFeatures, DeviceInfo, SECTOR_SIZE};
use crate::errno::{Errno, Result};

/// Counters of the I/O a device carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Completed READ bios.
    pub reads: u64,
    /// Completed WRITE bios.
    pub writes: u64,
    /// Completed FLUSH bios (and FUA writes' implied flushes are not counted here).
    pub flushes: u64,
    /// WRITE bios that carried FUA.
    pub fua_writes: u64,
    /// Completed DISCARD bios.
    pub discards: u64,
    /// Completed WRITE_ZEROES bios.
    pub write_zeroes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written (WRITE only).
    pub write_bytes: u64,
    /// Bios that completed with an error.
    pub errors: u64,
}

/// One traced I/O: op, flags-FUA, byte offset and byte length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// The op.
    pub op: BioOp,
    /// Whether FUA was set.
    pub fua: bool,
    /// Byte offset on the device.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
}

/// The order in which one [`RamDisk::poll`] completes the bios it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionOrder {
    /// Submission order (the default).
    Fifo,
    /// Each poll takes the pending batch and completes it newest first.
    Reverse,
    /// Each poll takes the pending batch and completes it in a pseudo-random order drawn from a
    /// generator seeded with `seed` (the generator advances across polls; same seed and same
    /// submissions give the same order).
    Shuffle {
        /// Seed of the generator.
        seed: u64,
    },
}

struct Knobs {
    order: CompletionOrder,
    rng: SplitMix64,
    budget: Option<usize>,
}

/// An in-memory block device.
pub struct RamDisk {
    info: DeviceInfo,
    data: Mutex<Vec<u8>>,
    pending: Mutex<VecDeque<Bio>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    knobs: Mutex<Knobs>,
    stats: Mutex<IoStats>,
    trace: Mutex<Option<Vec<TraceEntry>>>,
}

impl RamDisk {
    /// A zero-filled disk of `bytes` bytes (rounded down to the logical block size) with the
    /// given logical block size (512 .. 65536, a power of two).
    pub fn new(bytes: u64, logical_block_size: u32) -> Result<Self> {
        if !logical_block_size.is_power_of_two() || !(512..=65536).contains(&logical_block_size) {
            return Err(Errno::EINVAL);
        }
        let bytes = bytes / logical_block_size as u64 * logical_block_size as u64;
        let len = usize::try_from(bytes).map_err(|_| Errno::EINVAL)?;
        Ok(Self::from_image(vec![0; len], logical_block_size))
    }

    /// A disk holding `image` (its length is rounded down to the logical block size).
    pub fn from_image(mut image: Vec<u8>, logical_block_size: u32) -> Self {
        let lbs = logical_block_size.max(512) as usize;
        image.truncate(image.len() / lbs * lbs);
        let info = DeviceInfo {
            logical_block_size: lbs as u32,
            physical_block_size: lbs as u32,
            sectors: image.len() as u64 / SECTOR_SIZE,
            max_segments: super::BIO_MAX_SEGMENTS as u16,
            max_segment_bytes: 1 << 22,
            max_request_bytes: 1 << 22,
            queue_depth: 256,
            dma_alignment: 1,
            max_discard_sectors: u32::MAX,
            max_write_zeroes_sectors: u32::MAX,
            features: DeviceFeatures::FLUSH | DeviceFeatures::DISCARD | DeviceFeatures::WRITE_ZEROES,
        };
        Self {
            info,
            data: Mutex::new(image),
            pending: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            knobs: Mutex::new(Knobs { order: CompletionOrder::Fifo, rng: SplitMix64::new(0), budget: None }),
            stats: Mutex::new(IoStats::default()),
            trace: Mutex::new(None),
        }
    }

    /// Changes the reported device facts (features, limits); capacity and block size stay.
    pub fn set_info(&mut self, mut info: DeviceInfo) {
        info.sectors = self.info.sectors;
        info.logical_block_size = self.info.logical_block_size;
        self.info = info;
    }

    /// A copy of the whole medium.
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.lock().clone()
    }

    /// Reads the medium directly (no bio, not counted).
    pub fn peek(&self, offset: u64, buf: &mut [u8]) {
        let data = self.data.lock();
        let off = offset as usize;
        buf.copy_from_slice(&data[off..off + buf.len()]);
    }

    /// Writes the medium directly (no bio, not counted): for building test images.
    pub fn poke(&self, offset: u64, buf: &[u8]) {
        let mut data = self.data.lock();
        let off = offset as usize;
        data[off..off + buf.len()].copy_from_slice(buf);
    }

    /// I/O counters so far.
    pub fn stats(&self) -> IoStats {
        *self.stats.lock()
    }

    /// Resets the counters (and the in-flight high-water mark to the current in-flight count).
    pub fn reset_stats(&self) {
        *self.stats.lock() = IoStats::default();
        self.peak_in_flight.store(self.in_flight.load(Ordering::Acquire), Ordering::Release);
    }

    /// The most bios that were ever in flight at once (since creation or [`RamDisk::reset_stats`]).
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Acquire)
    }

    /// Sets the order in which each `poll` completes the bios it takes (see [`CompletionOrder`]).
    pub fn set_completion_order(&self, order: CompletionOrder) {
        let mut k = self.knobs.lock();
        k.order = order;
        if let CompletionOrder::Shuffle { seed } = order {
            k.rng = SplitMix64::new(seed);
        }
    }

    /// Limits each `poll` to at most `budget` completions (`None`: no limit). A budget of 0 is
    /// taken as 1, so polling always makes progress.
    pub fn set_poll_budget(&self, budget: Option<usize>) {
        self.knobs.lock().budget = budget.map(|b| b.max(1));
    }

    /// Starts (`true`) or stops tracing each completed op.
    pub fn set_trace(&self, on: bool) {
        *self.trace.lock() = if on { Some(Vec::new()) } else { None };
    }

    /// Takes the trace collected so far (tracing stays on).
    pub fn take_trace(&self) -> Vec<TraceEntry> {
        self.trace.lock().as_mut().map(core::mem::take).unwrap_or_default()
    }

    fn execute(&self, bio: &Bio) -> Result<()> {
        validate(&self.info, bio)?;
        let offset = (bio.sector * SECTOR_SIZE) as usize;
        let mut data = self.data.lock();
        match bio.op {
            BioOp::Read => {
                let mut pos = offset;
                for seg in &bio.segments {
                    let len = seg.len() as usize;
                    // SAFETY: the submitter guaranteed the segment memory is valid, exclusively
                    // lent to this bio until completion; `validate` bounded the range.
                    unsafe { core::ptr::copy_nonoverlapping(data[pos..].as_ptr(), seg.virt().as_ptr(), len) };
                    pos += len;
                }
            }
            BioOp::Write => {
                let mut pos = offset;
                for seg in &bio.segments {
                    let len = seg.len() as usize;
                    // SAFETY: as above; the segment memory is readable until completion.
                    unsafe {
                        core::ptr::copy_nonoverlapping(seg.virt().as_ptr(), data[pos..].as_mut_ptr(), len)
                    };
                    pos += len;
                }
            }
            BioOp::Discard | BioOp::WriteZeroes => {
                let len = bio.bytes() as usize;
                data[offset..offset + len].fill(0);
            }
            BioOp::Flush => {}
        }
        Ok(())
    }

    /// Carries out `bio` and reports its completion (no lock held while completing).
    fn finish(&self, bio: Bio) {
        let result = self.execute(&bio);
        self.account(&bio, result.is_ok());
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        bio.end.complete(result);
    }

    fn account(&self, bio: &Bio, ok: bool) {
        let mut s = self.stats.lock();
        if !ok {
            s.errors += 1;
            return;
        }
        match bio.op {
            BioOp::Read => {
                s.reads += 1;
                s.read_bytes += bio.bytes();
            }
            BioOp::Write => {
                s.writes += 1;
                s.write_bytes += bio.bytes();
                if bio.flags.contains(super::BioFlags::FUA) {
                    s.fua_writes += 1;
                }
            }
            BioOp::Flush => s.flushes += 1,
            BioOp::Discard => s.discards += 1,
            BioOp::WriteZeroes => s.write_zeroes += 1,
        }
        drop(s);
        if let Some(t) = self.trace.lock().as_mut() {
            t.push(TraceEntry {
                op: bio.op,
                fua: bio.flags.contains(super::BioFlags::FUA),
                offset: bio.sector * SECTOR_SIZE,
                len: bio.bytes(),
            });
        }
    }
}

impl BlockDevice for RamDisk {
    fn info(&self) -> DeviceInfo {
        self.info
    }

    fn submit(&self, bio: Bio) {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::AcqRel);
        self.pending.lock().push_back(bio);
    }

    fn poll(&self) -> usize {
        let (order, budget) = {
            let k = self.knobs.lock();
            (k.order, k.budget.unwrap_or(usize::MAX))
        };
        if order == CompletionOrder::Fifo {
            let mut n = 0;
            while n < budget {
                let Some(bio) = self.pending.lock().pop_front() else { break };
                self.finish(bio);
                n += 1;
            }
            return n;
        }
        let mut batch: Vec<Bio> = {
            let mut pending = self.pending.lock();
            let take = budget.min(pending.len());
            pending.drain(..take).collect()
        };
        match order {
            CompletionOrder::Reverse => batch.reverse(),
            CompletionOrder::Shuffle { .. } => {
                let mut k = self.knobs.lock();
                for i in (1..batch.len()).rev() {
                    let j = k.rng.below(i as u64 + 1) as usize;
                    batch.swap(i, j);
                }
            }
            CompletionOrder::Fifo => {}
        }
        let n = batch.len();
        for bio in batch {
            self.finish(bio);
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::sync::{dataless, flush, read_at, write_at};
    use crate::block::BioFlags;
    use crate::platform::StdPlatform;

    #[test]
    fn write_flush_read_back_and_stats() {
        let p = StdPlatform::arc();
        let d = RamDisk::new(1 << 20, 512).unwrap();
        let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        write_at(&d, &p, 4096, &pattern, BioFlags::empty()).unwrap();
        flush(&d, &*p).unwrap();
        let mut back = vec![0u8; 8192];
        read_at(&d, &p, 4096, &mut back).unwrap();
        assert_eq!(back, pattern);
        let s = d.stats();
        assert_eq!((s.reads, s.writes, s.flushes, s.read_bytes, s.write_bytes), (1, 1, 1, 8192, 8192));
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn rejects_out_of_range_and_misaligned() {
        let p = StdPlatform::arc();
        let d = RamDisk::new(64 * 1024, 4096).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(read_at(&d, &p, 64 * 1024, &mut buf), Err(Errno::EINVAL));
        assert_eq!(read_at(&d, &p, 512, &mut buf), Err(Errno::EINVAL));
        assert_eq!(read_at(&d, &p, 0, &mut buf[..512]), Err(Errno::EINVAL));
        read_at(&d, &p, 60 * 1024, &mut buf).unwrap();
        assert_eq!(
            d.stats().errors,
            1,
            "only the out-of-range read reaches the device; misaligned ones are refused first"
        );
    }

    #[test]
    fn write_zeroes_and_discard_clear_the_range() {
        let p = StdPlatform::arc();
        let d = RamDisk::new(64 * 1024, 512).unwrap();
        write_at(&d, &p, 0, &[0xAA; 8192], BioFlags::empty()).unwrap();
        dataless(&d, &*p, BioOp::WriteZeroes, 512, 1024).unwrap();
        dataless(&d, &*p, BioOp::Discard, 4096, 512).unwrap();
        let mut back = vec![0u8; 8192];
        read_at(&d, &p, 0, &mut back).unwrap();
        assert!(back[..512].iter().all(|&b| b == 0xAA));
        assert!(back[512..1536].iter().all(|&b| b == 0));
        assert!(back[1536..4096].iter().all(|&b| b == 0xAA));
        assert!(back[4096..4608].iter().all(|&b| b == 0));
        assert!(back[4608..].iter().all(|&b| b == 0xAA));
    }

    /// Records the cookies of completed bios, in completion order.
    struct Order(Mutex<Vec<u64>>);

    impl crate::block::BioComplete for Order {
        fn complete(&self, cookie: u64, result: Result<()>) {
            assert_eq!(result, Ok(()));
            self.0.lock().push(cookie);
        }
    }

    /// Submits `n` one-block reads (cookies 0..n) of block `i` into `bufs[i]`.
    fn submit_reads(d: &RamDisk, order: &alloc::sync::Arc<Order>, bufs: &mut [Vec<u8>]) {
        for (i, buf) in bufs.iter_mut().enumerate() {
            let mut bio = Bio::new(BioOp::Read, i as u64, crate::block::BioEnd::new(order.clone(), i as u64));
            let ptr = core::ptr::NonNull::new(buf.as_mut_ptr()).unwrap();
            // SAFETY: `buf` outlives the bio: every test polls until all bios completed.
            bio.push(unsafe { crate::block::Segment::new(ptr, ptr.as_ptr() as u64, 512) }).unwrap();
            d.submit(bio);
        }
    }

    #[test]
    fn completion_order_knob_reverses_and_shuffles_reproducibly() {
        let d = RamDisk::new(64 * 1024, 512).unwrap();
        let mut bufs = vec![vec![0u8; 512]; 6];

        d.set_completion_order(CompletionOrder::Reverse);
        let rev = alloc::sync::Arc::new(Order(Mutex::new(Vec::new())));
        submit_reads(&d, &rev, &mut bufs);
        assert_eq!(d.poll(), 6);
        assert_eq!(*rev.0.lock(), vec![5, 4, 3, 2, 1, 0]);

        let mut runs = Vec::new();
        for _ in 0..2 {
            d.set_completion_order(CompletionOrder::Shuffle { seed: 42 });
            let o = alloc::sync::Arc::new(Order(Mutex::new(Vec::new())));
            submit_reads(&d, &o, &mut bufs);
            assert_eq!(d.poll(), 6);
            let got = o.0.lock().clone();
            let mut sorted = got.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4, 5], "a shuffle is a permutation");
            runs.push(got);
        }
        assert_eq!(runs[0], runs[1], "same seed, same order");
        assert_ne!(runs[0], vec![0, 1, 2, 3, 4, 5], "seed 42 does not happen to give FIFO order");
        assert_eq!(d.stats().reads, 18);
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn poll_budget_keeps_bios_in_flight_and_peak_is_tracked() {
        let d = RamDisk::new(64 * 1024, 512).unwrap();
        d.set_poll_budget(Some(2));
        let mut bufs = vec![vec![0u8; 512]; 5];
        let o = alloc::sync::Arc::new(Order(Mutex::new(Vec::new())));
        submit_reads(&d, &o, &mut bufs);
        assert_eq!(d.peak_in_flight(), 5);
        assert_eq!(d.poll(), 2);
        assert_eq!(d.in_flight(), 3);
        assert_eq!(*o.0.lock(), vec![0, 1]);
        d.set_completion_order(CompletionOrder::Reverse);
        assert_eq!(d.poll(), 2);
        assert_eq!(*o.0.lock(), vec![0, 1, 3, 2], "reverse applies to the batch a poll takes");
        assert_eq!(d.poll(), 1);
        assert_eq!(d.poll(), 0);
        assert_eq!(d.in_flight(), 0);
        d.reset_stats();
        assert_eq!(d.peak_in_flight(), 0);
        assert_eq!(d.stats(), IoStats::default());
    }
}
