//! Test helpers: a recording device for crash tests and a seeded PRNG.
//!
//! [`RecordingDisk`] wraps a [`RamDisk`] and records every completed bio with its flags and, for
//! writes, the bytes written (read back from the RamDisk the moment that bio completes: the
//! RamDisk completes bios one at a time, right after executing each). From the base image and the
//! records any crash state can be rebuilt: [`RecordingDisk::image_after`] (the first `k` bios
//! reached the medium) and [`RecordingDisk::image_volatile_lost`] (also every write not yet made
//! durable by a later flush or FUA is lost). A tiny local stand-in for the block layer's
//! crash recorder, which is being written on another branch.

use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::block::{
    Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceInfo, RamDisk, SECTOR_SIZE,
};
use crate::Result;

/// One completed bio.
#[derive(Clone, Debug)]
pub struct Rec {
    /// The op.
    pub op: BioOp,
    /// Its flags.
    pub flags: BioFlags,
    /// Byte offset.
    pub offset: u64,
    /// Bytes written (writes only).
    pub data: Vec<u8>,
}

/// A RamDisk that records every bio. See the module docs.
pub struct RecordingDisk {
    inner: Arc<RamDisk>,
    base: Vec<u8>,
    recs: Arc<Mutex<Vec<Rec>>>,
}

struct Tap {
    inner: Arc<RamDisk>,
    recs: Arc<Mutex<Vec<Rec>>>,
    op: BioOp,
    flags: BioFlags,
    offset: u64,
    len: u64,
    end: BioEnd,
}

impl BioComplete for Tap {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        if result.is_ok() {
            let mut data = Vec::new();
            if self.op == BioOp::Write {
                data = alloc::vec![0u8; self.len as usize];
                self.inner.peek(self.offset, &mut data);
            }
            self.recs.lock().push(Rec { op: self.op, flags: self.flags, offset: self.offset, data });
        }
        self.end.clone().complete(result);
    }
}

impl RecordingDisk {
    /// Records on top of `inner` from its current contents on.
    pub fn new(inner: Arc<RamDisk>) -> Self {
        let base = inner.snapshot();
        Self { inner, base, recs: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The recorded bios so far.
    pub fn records(&self) -> Vec<Rec> {
        self.recs.lock().clone()
    }

    /// Number of recorded bios.
    pub fn len(&self) -> usize {
        self.recs.lock().len()
    }

    /// The image if exactly the first `k` bios reached the medium.
    pub fn image_after(&self, k: usize) -> Vec<u8> {
        let mut img = self.base.clone();
        for r in self.recs.lock().iter().take(k) {
            if r.op == BioOp::Write {
                img[r.offset as usize..r.offset as usize + r.data.len()].copy_from_slice(&r.data);
            }
        }
        img
    }

    /// The image after `k` bios when the device cache is lost: only writes made durable by a
    /// later flush (a FLUSH, a PREFLUSH, or their own FUA) within the first `k` bios survive.
    pub fn image_volatile_lost(&self, k: usize) -> Vec<u8> {
        let recs = self.recs.lock();
        let recs = &recs[..k.min(recs.len())];
        // The last barrier: writes before it (and FUA writes anywhere) are durable.
        let mut durable_upto = 0;
        for (i, r) in recs.iter().enumerate() {
            if r.op == BioOp::Flush || r.flags.contains(BioFlags::PREFLUSH) {
                durable_upto = i;
            }
        }
        let mut img = self.base.clone();
        for (i, r) in recs.iter().enumerate() {
            if r.op == BioOp::Write && (i < durable_upto || r.flags.contains(BioFlags::FUA)) {
                img[r.offset as usize..r.offset as usize + r.data.len()].copy_from_slice(&r.data);
            }
        }
        img
    }
}

impl BlockDevice for RecordingDisk {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }

    fn submit(&self, mut bio: Bio) {
        let tap = Tap {
            inner: self.inner.clone(),
            recs: self.recs.clone(),
            op: bio.op,
            flags: bio.flags,
            offset: bio.sector * SECTOR_SIZE,
            len: bio.bytes(),
            end: bio.end.clone(),
        };
        bio.end = BioEnd::new(Arc::new(tap), 0);
        self.inner.submit(bio);
    }

    fn poll(&self) -> usize {
        self.inner.poll()
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

/// splitmix64: a small, seedable PRNG for model-based tests.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A RamDisk whose writes (and flushes) start failing with EIO once `fail_after` of them have
/// been submitted; reads keep working.
pub struct FailingDisk {
    inner: Arc<RamDisk>,
    writes: core::sync::atomic::AtomicUsize,
    fail_after: core::sync::atomic::AtomicUsize,
}

impl FailingDisk {
    /// Writes fail after `fail_after` more (usize::MAX: never).
    pub fn new(inner: Arc<RamDisk>) -> Self {
        Self {
            inner,
            writes: core::sync::atomic::AtomicUsize::new(0),
            fail_after: core::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }

    /// From now on, allow `n` more writes, then fail.
    pub fn fail_after(&self, n: usize) {
        let done = self.writes.load(core::sync::atomic::Ordering::SeqCst);
        self.fail_after.store(done + n, core::sync::atomic::Ordering::SeqCst);
    }
}

impl BlockDevice for FailingDisk {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }

    fn submit(&self, bio: Bio) {
        use core::sync::atomic::Ordering;
        if bio.op != BioOp::Read {
            let n = self.writes.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail_after.load(Ordering::SeqCst) {
                bio.end.complete(Err(crate::Errno::EIO));
                return;
            }
        }
        self.inner.submit(bio);
    }

    fn poll(&self) -> usize {
        self.inner.poll()
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}
