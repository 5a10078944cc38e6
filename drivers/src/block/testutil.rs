//! Test helpers shared by the block layer's tests: a completion recorder, bio builders over
//! plain host buffers, a probe device that records (and checks) every request a driver sees,
//! and a small seeded PRNG.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use spin::Mutex;

use super::prng::SplitMix64;
use super::{
    Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, DeviceInfo, RamDisk, Segment,
};
use crate::errno::Result;

/// Records every completion (cookie, result) in completion order.
#[derive(Default)]
pub struct Done {
    log: Mutex<Vec<(u64, Result<()>)>>,
}

impl Done {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn end(self: &Arc<Self>, cookie: u64) -> BioEnd {
        BioEnd::new(self.clone(), cookie)
    }

    /// Every completion so far.
    pub fn all(&self) -> Vec<(u64, Result<()>)> {
        self.log.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.log.lock().len()
    }

    /// The result of `cookie`; asserts it completed at most once.
    pub fn result(&self, cookie: u64) -> Option<Result<()>> {
        let log = self.log.lock();
        let hits: Vec<_> = log.iter().filter(|(c, _)| *c == cookie).map(|(_, r)| *r).collect();
        assert!(hits.len() <= 1, "cookie {cookie} completed {} times", hits.len());
        hits.first().copied()
    }

    /// Asserts cookies `0..n` each completed exactly once with `expect(cookie)`.
    pub fn assert_each(&self, n: u64, expect: impl Fn(u64) -> Result<()>) {
        assert_eq!(self.len() as u64, n, "completions: {:?}", self.all());
        for c in 0..n {
            assert_eq!(self.result(c), Some(expect(c)), "cookie {c}");
        }
    }
}

impl BioComplete for Done {
    fn complete(&self, cookie: u64, result: Result<()>) {
        self.log.lock().push((cookie, result));
    }
}

/// A segment over `buf[off..off + len]` (host: physical == virtual) that a device only reads
/// (write sources). For read destinations use [`seg_mut`].
pub fn seg(buf: &[u8], off: usize, len: usize) -> Segment {
    let s = &buf[off..off + len];
    let ptr = NonNull::new(s.as_ptr() as *mut u8).expect("non-null");
    // SAFETY: test buffers outlive the bios built on them (every test drives its bios to
    // completion before dropping the buffers), and the host platform maps phys == virt.
    unsafe { Segment::new(ptr, ptr.as_ptr() as u64, len as u32) }
}

/// A segment over `len` bytes at `base + off`, for memory a device writes into. Take `base`
/// once (`as_mut_ptr()`), build every segment of that buffer from it, and touch the buffer
/// again only after its bios completed, so the device's writes go through the one raw pointer.
pub fn seg_mut(base: *mut u8, off: usize, len: usize) -> Segment {
    let ptr = NonNull::new(base.wrapping_add(off)).expect("non-null");
    // SAFETY: as for `seg`; the caller keeps the buffer alive and unused until completion.
    unsafe { Segment::new(ptr, ptr.as_ptr() as u64, len as u32) }
}

/// A bio of `op` at `sector` over the given segments.
pub fn bio(op: BioOp, sector: u64, segs: &[Segment], flags: BioFlags, end: BioEnd) -> Bio {
    let mut b = Bio::new(op, sector, end);
    b.flags = flags;
    for s in segs {
        b.push(*s).expect("segment fits");
    }
    b
}

/// A RamDisk of `bytes` with logical block size `lbs`, its facts adjusted by `f`.
pub fn disk(bytes: u64, lbs: u32, f: impl FnOnce(&mut DeviceInfo)) -> Arc<RamDisk> {
    let mut d = RamDisk::new(bytes, lbs).expect("ramdisk");
    let mut info = d.info();
    f(&mut info);
    d.set_info(info);
    Arc::new(d)
}

/// A deterministic byte pattern for `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// What a driver saw of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub op: BioOp,
    pub flags: BioFlags,
    pub sector: u64,
    pub segs: Vec<u32>,
    pub sectors: u64,
}

/// A driver in front of a RamDisk that records every request and checks it against the
/// device's limits (the checks a strict hardware driver would make).
pub struct Probe {
    pub disk: Arc<RamDisk>,
    seen: Mutex<Vec<Seen>>,
    violations: Mutex<Vec<String>>,
}

impl Probe {
    pub fn new(disk: Arc<RamDisk>) -> Arc<Self> {
        Arc::new(Self { disk, seen: Mutex::new(Vec::new()), violations: Mutex::new(Vec::new()) })
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    pub fn take_seen(&self) -> Vec<Seen> {
        core::mem::take(&mut *self.seen.lock())
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().clone()
    }

    fn check(&self, info: &DeviceInfo, bio: &Bio) {
        let mut v = Vec::new();
        if bio.segments.len() > info.max_segments as usize {
            v.push(alloc::format!("{} segments", bio.segments.len()));
        }
        if bio.segments.iter().any(|s| s.len() > info.max_segment_bytes) {
            v.push(String::from("segment too large"));
        }
        if bio.op.has_data() && bio.bytes() > info.max_request_bytes as u64 {
            v.push(alloc::format!("{} bytes", bio.bytes()));
        }
        if bio.op == BioOp::Discard && bio.dataless_sectors > info.max_discard_sectors as u64 {
            v.push(String::from("discard too large"));
        }
        if bio.op == BioOp::WriteZeroes && bio.dataless_sectors > info.max_write_zeroes_sectors as u64 {
            v.push(String::from("write-zeroes too large"));
        }
        if bio.flags.contains(BioFlags::PREFLUSH) {
            v.push(String::from("PREFLUSH reached the driver"));
        }
        if bio.flags.contains(BioFlags::FUA) && !info.features.contains(DeviceFeatures::FUA) {
            v.push(String::from("FUA on a device without FUA"));
        }
        if self.disk.in_flight() >= info.queue_depth as usize {
            v.push(alloc::format!("queue depth {} exceeded", info.queue_depth));
        }
        self.violations.lock().extend(v);
    }
}

impl BlockDevice for Probe {
    fn info(&self) -> DeviceInfo {
        self.disk.info()
    }

    fn submit(&self, bio: Bio) {
        self.check(&self.disk.info(), &bio);
        self.seen.lock().push(Seen {
            op: bio.op,
            flags: bio.flags,
            sector: bio.sector,
            segs: bio.segments.iter().map(|s| s.len()).collect(),
            sectors: bio.sectors(),
        });
        self.disk.submit(bio);
    }

    fn poll(&self) -> usize {
        self.disk.poll()
    }

    fn in_flight(&self) -> usize {
        self.disk.in_flight()
    }
}

/// Polls `dev` until nothing is in flight; fails the test instead of hanging.
pub fn drain(dev: &dyn BlockDevice) {
    for _ in 0..100_000 {
        if dev.in_flight() == 0 {
            return;
        }
        dev.poll();
    }
    panic!("device did not drain: {} in flight", dev.in_flight());
}

/// The tests' seeded generator.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
}
