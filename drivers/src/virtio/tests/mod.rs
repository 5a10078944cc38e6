//! Host tests of the virtio-blk driver against a fake virtio device (`fake`, behind the
//! `transport` the driver talks to): probing, conformance on several device shapes and the
//! probe-time refusals here; request sequencing and errors in `requests`; queue depth, descriptor
//! exhaustion, several queues and interrupts in `queues`.

mod fake;
mod queues;
mod requests;
mod transport;

use std::sync::{Arc, Mutex};

use fake::{Fake, FakeConfig, Order};
use transport::{FakeTransport, TestHal};

use super::config::BlkFeatures;
use super::wire::{T_DISCARD, T_GET_ID, T_OUT};
use super::*;
use crate::block::conformance::{DEVICE, STRICT, SUITE};
use crate::block::sync::{dataless, read_at, write_at};
use crate::block::{Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{DmaBuffer, PageRun, Platform, StdPlatform};
use crate::selftest::{run, NoObserver, TestEnv};

pub(super) type Dev = VirtioBlk<FakeTransport>;

pub(super) fn probe_with(fake: &Arc<Fake>, options: Options) -> Result<Dev> {
    VirtioBlk::new::<TestHal>(fake.transport(), StdPlatform::arc(), options)
}

pub(super) fn probe(fake: &Arc<Fake>) -> Dev {
    probe_with(fake, Options::default()).expect("probe")
}

/// Records completions by cookie, in order.
#[derive(Default)]
pub(super) struct Rec {
    done: Mutex<Vec<(u64, Result<()>)>>,
}

impl BioComplete for Rec {
    fn complete(&self, cookie: u64, result: Result<()>) {
        self.done.lock().unwrap().push((cookie, result));
    }
}

impl Rec {
    pub(super) fn new() -> Arc<Rec> {
        Arc::new(Rec::default())
    }
    pub(super) fn end(self: &Arc<Self>, cookie: u64) -> BioEnd {
        BioEnd::new(self.clone(), cookie)
    }
    pub(super) fn taken(&self) -> Vec<(u64, Result<()>)> {
        std::mem::take(&mut *self.done.lock().unwrap())
    }
    pub(super) fn count(&self) -> usize {
        self.done.lock().unwrap().len()
    }
}

pub(super) fn seg(buf: &DmaBuffer, at: usize, len: usize) -> Segment {
    let virt = std::ptr::NonNull::new(buf.as_slice()[at..].as_ptr() as *mut u8).unwrap();
    // SAFETY: each test keeps `buf` alive and untouched until the bio completes.
    unsafe { Segment::new(virt, buf.phys() + at as u64, len as u32) }
}

pub(super) fn bio(op: BioOp, flags: BioFlags, sector: u64, segs: &[Segment], end: BioEnd) -> Bio {
    let mut b = Bio::new(op, sector, end);
    b.flags = flags;
    for &s in segs {
        b.push(s).unwrap();
    }
    b
}

pub(super) fn ops(fake: &Fake) -> Vec<u32> {
    fake.state().log.iter().map(|o| o.kind).collect()
}

pub(super) fn run_conformance(dev: Arc<dyn BlockDevice>) {
    let mut env = TestEnv::new(StdPlatform::arc());
    env.add_device(DEVICE, dev);
    let mut out = String::new();
    let mut s = run(SUITE, "", &env, &mut out, &mut NoObserver);
    s.add(&run(STRICT, "", &env, &mut out, &mut NoObserver));
    std::print!("{out}");
    assert_eq!((s.passed, s.failed), (SUITE.len() + STRICT.len(), 0), "{out}");
}

/// (doorbells since `n0`, requests the device has seen and holds).
pub(super) fn told(fake: &Fake, n0: u64) -> (u64, usize) {
    let st = fake.state();
    (st.notifies - n0, st.held())
}

#[test]
fn probe_negotiates_reads_config_and_serial() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    assert_eq!(dev.serial(), "fake-serial-01");
    assert_eq!(dev.num_queues(), 1);
    assert_eq!(dev.queue_stats(0).unwrap().size, 256);
    assert!(dev.indirect());
    let accepted = BlkFeatures::from_bits_retain(fake.state().driver_features);
    assert!(accepted.contains(BlkFeatures::VERSION_1 | BlkFeatures::RING_INDIRECT_DESC | BlkFeatures::FLUSH));
    assert!(!accepted.contains(BlkFeatures::RING_EVENT_IDX), "EVENT_IDX must not be negotiated");
    let i = dev.info();
    assert_eq!((i.logical_block_size, i.sectors, i.max_segments, i.queue_depth), (512, 4096, 64, 256));
    assert_eq!(i.features, DeviceFeatures::FLUSH | DeviceFeatures::DISCARD | DeviceFeatures::WRITE_ZEROES);
    assert_eq!(i.max_discard_sectors, 1 << 16);
    assert_eq!(ops(&fake), [T_GET_ID]);
    assert_eq!(dev.in_flight(), 0);
    let odd = Fake::new(FakeConfig { serial: Some(b"ab\x01c\0zz"), ..Default::default() });
    assert_eq!(probe(&odd).serial(), "ab?c");
    let none = Fake::new(FakeConfig { serial: None, ..Default::default() });
    assert_eq!(probe(&none).serial(), "");
}

#[test]
fn conformance_on_synchronous_fake() {
    let fake = Fake::new(FakeConfig { sectors: 8192, ..Default::default() });
    run_conformance(Arc::new(probe(&fake)));
}

#[test]
fn conformance_on_threaded_fake_completing_shuffled() {
    let fake = Fake::new(FakeConfig { sectors: 8192, ..Default::default() });
    let dev = Arc::new(probe(&fake));
    fake.state().order = Order::Shuffle(42);
    fake.state().hold = true;
    fake.start_auto();
    run_conformance(dev);
    fake.stop();
}

#[test]
fn conformance_on_4k_blocks_and_small_limits() {
    let fake = Fake::new(FakeConfig {
        sectors: 8192,
        lbs: 4096,
        physical_exp: 1,
        seg_max: 4,
        size_max: 8192,
        features: FakeConfig::default().features | BlkFeatures::SIZE_MAX,
        max_discard: 64,
        ..Default::default()
    });
    let dev = probe(&fake);
    let i = dev.info();
    assert_eq!((i.logical_block_size, i.physical_block_size), (4096, 8192));
    assert_eq!((i.max_segments, i.max_segment_bytes, i.max_request_bytes), (4, 8192, 32768));
    assert_eq!(i.max_discard_sectors, 64);
    run_conformance(Arc::new(dev));
}

#[test]
fn read_only_device_refuses_writes_with_erofs() {
    let fake = Fake::new(FakeConfig {
        features: FakeConfig::default().features | BlkFeatures::RO,
        ..Default::default()
    });
    fake.state().disk[..4].copy_from_slice(b"ROOK");
    let dev = probe(&fake);
    let p = StdPlatform::arc();
    assert!(dev.info().features.contains(DeviceFeatures::READ_ONLY));
    assert_eq!(write_at(&dev, &p, 0, &[1u8; 512], BioFlags::empty()), Err(Errno::EROFS));
    assert_eq!(dataless(&dev, &*p, BioOp::WriteZeroes, 0, 512), Err(Errno::EROFS));
    assert_eq!(dataless(&dev, &*p, BioOp::Discard, 0, 512), Err(Errno::EROFS));
    let mut b = [0u8; 512];
    read_at(&dev, &p, 0, &mut b).unwrap();
    assert_eq!(&b[..4], b"ROOK");
    crate::block::sync::flush(&dev, &*p).unwrap();
    assert!(!ops(&fake).contains(&T_OUT));
    assert!(!ops(&fake).contains(&T_DISCARD));
}

#[test]
fn drop_resets_the_device_and_fails_bios_in_flight() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 1024).unwrap();
    let rec = Rec::new();
    dev.submit(bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&buf, 0, 512)], rec.end(0)));
    dev.submit(bio(BioOp::Read, BioFlags::empty(), 1, &[seg(&buf, 512, 512)], rec.end(1)));
    let resets = fake.state().resets;
    drop(dev);
    assert!(fake.state().resets > resets);
    let mut done = rec.taken();
    done.sort_by_key(|d| d.0);
    assert_eq!(done, [(0, Err(Errno::EIO)), (1, Err(Errno::EIO))]);
}

#[test]
fn dead_device_fails_probe_within_the_timeout() {
    let fake = Fake::new(FakeConfig::default());
    fake.state().dead = true;
    let r = probe_with(&fake, Options { probe_timeout_ns: 20_000_000, ..Default::default() });
    assert_eq!(r.err(), Some(Errno::EIO));
    assert!(fake.state().is_reset());
}

#[test]
fn bad_block_size_and_missing_queues_are_refused() {
    let fake = Fake::new(FakeConfig { lbs: 1000, ..Default::default() });
    assert_eq!(probe_with(&fake, Options::default()).err(), Some(Errno::EINVAL));
    let fake = Fake::new(FakeConfig { queue_size: 2, ..Default::default() });
    assert_eq!(probe_with(&fake, Options::default()).err(), Some(Errno::ENODEV));
}

/// A platform whose DMA addresses disagree with the Hal's.
struct Skewed(StdPlatform);

impl Platform for Skewed {
    fn alloc_pages(&self, order: u32) -> Option<PageRun> {
        self.0.alloc_pages(order)
    }
    fn alloc_pages_zeroed(&self, order: u32) -> Option<PageRun> {
        self.0.alloc_pages_zeroed(order)
    }
    unsafe fn free_pages(&self, run: PageRun) {
        // SAFETY: forwarded.
        unsafe { self.0.free_pages(run) }
    }
    fn dma_address(&self, ptr: *const u8, _len: usize) -> Option<u64> {
        Some(ptr as u64 + 4096)
    }
    fn now_ns(&self) -> u64 {
        self.0.now_ns()
    }
}

#[test]
fn hal_and_platform_must_agree_on_dma_addresses() {
    let fake = Fake::new(FakeConfig::default());
    let r =
        VirtioBlk::new::<TestHal>(fake.transport(), Arc::new(Skewed(StdPlatform::new())), Options::default());
    assert_eq!(r.err(), Some(Errno::EINVAL));
}
