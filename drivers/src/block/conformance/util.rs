//! Shared helpers of the conformance suite: the offset-dependent data pattern, a lock-free
//! completion tracker (usable from interrupt context), and bio construction.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use super::DEVICE;
use crate::block::{
    Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceInfo, Segment, SECTOR_SIZE,
};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, DmaBuffer, Platform};
use crate::selftest::{TestEnv, TestFailure, TestResult};
use crate::{ensure, ensure_eq};

pub(super) const PENDING: i32 = i32::MIN;

/// splitmix64: the pattern generator (and the suite's PRNG).
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf`, which will live at byte `offset` of the device, with the pattern `seed`: every
/// 8-byte word depends on its device offset, so misplaced data is detected.
pub(super) fn fill(buf: &mut [u8], offset: u64, seed: u64) {
    for (i, w) in buf.chunks_mut(8).enumerate() {
        let v = mix((offset + 8 * i as u64) ^ seed.rotate_left(17)).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

/// Checks `buf` (read from byte `offset`) against pattern `seed`; names the first bad byte.
pub(super) fn check(buf: &[u8], offset: u64, seed: u64, what: &str) -> TestResult {
    for (i, w) in buf.chunks(8).enumerate() {
        let v = mix((offset + 8 * i as u64) ^ seed.rotate_left(17)).to_le_bytes();
        if w != &v[..w.len()] {
            return Err(TestFailure(format!(
                "{what}: data mismatch at device byte {:#x} (read {:02x?}, want {:02x?})",
                offset + 8 * i as u64,
                w,
                &v[..w.len()]
            )));
        }
    }
    Ok(())
}

/// Completion recorder for many bios, told apart by cookie; lock- and allocation-free.
pub(super) struct Tracker {
    results: Vec<AtomicI32>,
    order: Vec<AtomicU32>,
    done: AtomicUsize,
    pub(super) anomalies: AtomicUsize,
}

impl Tracker {
    pub(super) fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            results: (0..n).map(|_| AtomicI32::new(PENDING)).collect(),
            order: (0..n).map(|_| AtomicU32::new(u32::MAX)).collect(),
            done: AtomicUsize::new(0),
            anomalies: AtomicUsize::new(0),
        })
    }

    pub(super) fn end(self: &Arc<Self>, cookie: usize) -> BioEnd {
        BioEnd::new(self.clone(), cookie as u64)
    }

    pub(super) fn result(&self, cookie: usize) -> Option<Result<()>> {
        match self.results[cookie].load(Ordering::Acquire) {
            PENDING => None,
            0 => Some(Ok(())),
            e => Some(Err(Errno::from_code(e).unwrap_or(Errno::EIO))),
        }
    }

    /// Waits until `n` completions arrived, polling `dev`.
    pub(super) fn wait(&self, dev: &dyn BlockDevice, platform: &dyn Platform, n: usize) {
        wait_until(
            platform,
            self as *const Self as usize,
            &|| self.done.load(Ordering::Acquire) >= n,
            &|| {
                dev.poll();
            },
        );
    }

    /// Fails unless every cookie completed exactly once, successfully.
    pub(super) fn all_ok(&self, what: &str) -> TestResult {
        ensure_eq!(self.anomalies.load(Ordering::Acquire), 0, "{what}: duplicate or unknown completions");
        for i in 0..self.results.len() {
            match self.result(i) {
                Some(Ok(())) => {}
                other => return Err(TestFailure(format!("{what}: bio {i} completed with {other:?}"))),
            }
        }
        Ok(())
    }

    /// The cookies in completion order.
    pub(super) fn completion_order(&self) -> Vec<u32> {
        let n = self.done.load(Ordering::Acquire).min(self.order.len());
        self.order[..n].iter().map(|o| o.load(Ordering::Acquire)).collect()
    }
}

impl BioComplete for Tracker {
    fn complete(&self, cookie: u64, result: Result<()>) {
        let code = match result {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        match self.results.get(cookie as usize) {
            Some(slot) if slot.swap(code, Ordering::AcqRel) == PENDING => {}
            _ => {
                self.anomalies.fetch_add(1, Ordering::AcqRel);
            }
        }
        let at = self.done.fetch_add(1, Ordering::AcqRel);
        if let Some(o) = self.order.get(at) {
            o.store(cookie as u32, Ordering::Release);
        }
    }
}

/// A segment over `len` bytes of `buf` at `at`.
pub(super) fn seg(buf: &DmaBuffer, at: usize, len: usize) -> Segment {
    debug_assert!(at + len <= buf.len());
    let virt =
        NonNull::new(buf.as_slice().as_ptr().wrapping_add(at) as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: the range lies inside a DMA buffer that every test keeps alive (and untouched by
    // the CPU) until the bio carrying the segment has completed.
    unsafe { Segment::new(virt, buf.phys() + at as u64, len as u32) }
}

/// A data bio at byte `offset` over `segs`.
pub(super) fn data_bio(op: BioOp, flags: BioFlags, offset: u64, segs: &[Segment], end: BioEnd) -> Bio {
    let mut bio = Bio::new(op, offset / SECTOR_SIZE, end);
    bio.flags = flags;
    for &s in segs {
        let _ = bio.push(s);
    }
    bio
}

/// Submits `bio` and waits for its outcome.
pub(super) fn one(dev: &dyn BlockDevice, platform: &dyn Platform, mut bio: Bio) -> Result<()> {
    let t = Tracker::new(1);
    bio.end = t.end(0);
    dev.submit(bio);
    t.wait(dev, platform, 1);
    t.result(0).unwrap_or(Err(Errno::EIO))
}

pub(super) fn setup(env: &TestEnv) -> core::result::Result<(Arc<dyn BlockDevice>, DeviceInfo), TestFailure> {
    let dev = env.device(DEVICE)?;
    let info = dev.info();
    ensure!(dev.in_flight() == 0, "{DEVICE} has {} bios in flight before the test", dev.in_flight());
    Ok((dev, info))
}

/// Single-segment chunk size for bulk I/O on this device, at most `cap` bytes.
pub(super) fn chunk(info: &DeviceInfo, cap: u64) -> u64 {
    let lbs = u64::from(info.logical_block_size);
    let max = u64::from(info.max_request_bytes.min(info.max_segment_bytes)).min(cap).max(lbs);
    max / lbs * lbs
}
