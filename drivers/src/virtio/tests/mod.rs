//! Host tests of the virtio-blk driver against a fake virtio device (see [`fake`]).

mod fake;

use std::sync::{Arc, Mutex};

use fake::{Fake, FakeConfig, FakeTransport, Order, TestHal};

use super::config::BlkFeatures;
use super::wire::{T_DISCARD, T_FLUSH, T_GET_ID, T_IN, T_OUT, T_WRITE_ZEROES};
use super::*;
use crate::block::conformance::{DEVICE, STRICT, SUITE};
use crate::block::sync::{dataless, read_at, write_at};
use crate::block::{Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{DmaBuffer, PageRun, Platform, StdPlatform};
use crate::selftest::{run, NoObserver, TestEnv};

type Dev = VirtioBlk<FakeTransport>;

fn probe_with(fake: &Arc<Fake>, options: Options) -> Result<Dev> {
    VirtioBlk::new::<TestHal>(fake.transport(), StdPlatform::arc(), options)
}

fn probe(fake: &Arc<Fake>) -> Dev {
    probe_with(fake, Options::default()).expect("probe")
}

/// Records completions by cookie, in order.
#[derive(Default)]
struct Rec {
    done: Mutex<Vec<(u64, Result<()>)>>,
}

impl BioComplete for Rec {
    fn complete(&self, cookie: u64, result: Result<()>) {
        self.done.lock().unwrap().push((cookie, result));
    }
}

impl Rec {
    fn new() -> Arc<Rec> {
        Arc::new(Rec::default())
    }
    fn end(self: &Arc<Self>, cookie: u64) -> BioEnd {
        BioEnd::new(self.clone(), cookie)
    }
    fn taken(&self) -> Vec<(u64, Result<()>)> {
        std::mem::take(&mut *self.done.lock().unwrap())
    }
    fn count(&self) -> usize {
        self.done.lock().unwrap().len()
    }
}

fn seg(buf: &DmaBuffer, at: usize, len: usize) -> Segment {
    let virt = std::ptr::NonNull::new(buf.as_slice()[at..].as_ptr() as *mut u8).unwrap();
    // SAFETY: each test keeps `buf` alive and untouched until the bio completes.
    unsafe { Segment::new(virt, buf.phys() + at as u64, len as u32) }
}

fn bio(op: BioOp, flags: BioFlags, sector: u64, segs: &[Segment], end: BioEnd) -> Bio {
    let mut b = Bio::new(op, sector, end);
    b.flags = flags;
    for &s in segs {
        b.push(s).unwrap();
    }
    b
}

fn ops(fake: &Fake) -> Vec<u32> {
    fake.state().log.iter().map(|o| o.kind).collect()
}

fn run_conformance(dev: Arc<dyn BlockDevice>) {
    let mut env = TestEnv::new(StdPlatform::arc());
    env.add_device(DEVICE, dev);
    let mut out = String::new();
    let mut s = run(SUITE, "", &env, &mut out, &mut NoObserver);
    s.add(&run(STRICT, "", &env, &mut out, &mut NoObserver));
    assert_eq!((s.passed, s.failed), (SUITE.len() + STRICT.len(), 0), "{out}");
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
fn out_of_order_completions_each_exactly_once() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    fake.state().order = Order::Reverse;
    let p = StdPlatform::arc();
    let mut buf = DmaBuffer::new(&p, 64 * 512).unwrap();
    for (i, b) in buf.as_mut_slice().chunks_mut(512).enumerate() {
        b.fill(i as u8 + 1);
    }
    let rec = Rec::new();
    for i in 0..64 {
        dev.submit(bio(
            BioOp::Write,
            BioFlags::empty(),
            2 * i as u64,
            &[seg(&buf, i * 512, 512)],
            rec.end(i as u64),
        ));
    }
    assert_eq!(dev.in_flight(), 64);
    assert_eq!(dev.poll(), 0, "nothing completes before the device does");
    assert_eq!(fake.state().held(), 64);
    fake.complete(usize::MAX);
    assert_eq!(dev.poll(), 64);
    let done = rec.taken();
    let cookies: Vec<u64> = done.iter().map(|d| d.0).collect();
    assert_eq!(cookies, (0..64).rev().collect::<Vec<u64>>(), "reaped in the device's (reverse) order");
    assert!(done.iter().all(|d| d.1.is_ok()));
    assert_eq!(dev.in_flight(), 0);
    assert_eq!(dev.poll(), 0);
    let st = fake.state();
    for i in 0..64usize {
        assert!(st.disk[2 * i * 512..(2 * i + 1) * 512].iter().all(|&b| b == i as u8 + 1), "block {i}");
    }
    assert!(st.log[1..].iter().all(|o| o.indirect && o.data_descs == 1));
}

#[test]
fn preflush_write_fua_is_flush_write_flush_in_sequence() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    fake.state().log.clear();
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 1024).unwrap();
    let rec = Rec::new();
    dev.submit(bio(BioOp::Write, BioFlags::PREFLUSH | BioFlags::FUA, 8, &[seg(&buf, 0, 1024)], rec.end(7)));
    assert_eq!(dev.poll(), 0, "the poll rings the doorbell");
    assert_eq!(ops(&fake), [T_FLUSH], "the write waits for the preflush");
    for (k, want) in [[T_FLUSH, T_OUT].as_slice(), &[T_FLUSH, T_OUT, T_FLUSH]].iter().enumerate() {
        fake.complete(1);
        assert_eq!(dev.poll(), 0, "step {k} is not the bio's completion");
        assert_eq!(ops(&fake), *want);
        assert_eq!(dev.in_flight(), 1);
    }
    fake.complete(1);
    assert_eq!(dev.poll(), 1);
    assert_eq!(rec.taken(), [(7, Ok(()))]);
    let st = fake.state();
    assert_eq!((st.log[1].sector, st.log[1].bytes), (8, 1024));
    assert_eq!(st.held(), 0);
}

/// (doorbells since `n0`, requests the device has seen and holds).
fn told(fake: &Fake, n0: u64) -> (u64, usize) {
    let st = fake.state();
    (st.notifies - n0, st.held())
}

#[test]
fn doorbell_rings_per_kick_batch_or_at_poll() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 512).unwrap();
    let rec = Rec::new();
    let n0 = fake.state().notifies;
    let read = |i: u64| bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, 0, 512)], rec.end(i));
    for i in 0..5 {
        dev.submit(read(i));
    }
    assert_eq!(told(&fake, n0), (0, 0), "5 < kick_batch: not yet told");
    assert_eq!(dev.poll(), 0);
    assert_eq!(told(&fake, n0), (1, 5), "the poll rang once for all five");
    for i in 5..45 {
        dev.submit(read(i));
    }
    assert_eq!(told(&fake, n0), (3, 37), "rung at 16 and 32 more");
    dev.poll();
    assert_eq!(told(&fake, n0), (4, 45));
    dev.poll();
    assert_eq!(fake.state().notifies - n0, 4, "nothing new: no doorbell");
    fake.complete(usize::MAX);
    while rec.count() < 45 {
        dev.poll();
    }
    let total = fake.state().notifies;
    assert_eq!(dev.stats().notifies, total, "the driver counts every doorbell (GET_ID's too)");
    assert_eq!(total - n0, 4);
    // kick_batch 1: every submission rings.
    let eager = Fake::new(FakeConfig::default());
    let dev = probe_with(&eager, Options { kick_batch: 1, ..Default::default() }).unwrap();
    eager.state().hold = true;
    let n0 = eager.state().notifies;
    for i in 0..3 {
        dev.submit(read(i));
    }
    assert_eq!(told(&eager, n0), (3, 3));
}

#[test]
fn device_without_cache_needs_no_flushes() {
    let fake = Fake::new(FakeConfig {
        features: FakeConfig::default().features - BlkFeatures::FLUSH,
        ..Default::default()
    });
    let dev = probe(&fake);
    let p = StdPlatform::arc();
    assert!(!dev.info().features.contains(DeviceFeatures::FLUSH));
    write_at(&dev, &p, 0, &[1u8; 512], BioFlags::FUA | BioFlags::PREFLUSH).unwrap();
    crate::block::sync::flush(&dev, &*p).unwrap();
    assert_eq!(ops(&fake), [T_GET_ID, T_OUT]);
}

#[test]
fn device_errors_map_to_errno_and_stop_the_plan() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    let p = StdPlatform::arc();
    fake.state().fail_write = Some(3);
    let results: Vec<Result<()>> =
        (0..5u64).map(|i| write_at(&dev, &p, i * 512, &[i as u8; 512], BioFlags::empty())).collect();
    assert_eq!(results, [Ok(()), Ok(()), Err(Errno::EIO), Ok(()), Ok(())]);
    fake.state().unsupported = vec![T_WRITE_ZEROES];
    assert_eq!(dataless(&dev, &*p, BioOp::WriteZeroes, 0, 512), Err(Errno::EOPNOTSUPP));
    // A failing preflush: the data is never sent.
    fake.state().unsupported = vec![T_FLUSH];
    fake.state().log.clear();
    assert_eq!(write_at(&dev, &p, 0, &[9u8; 512], BioFlags::PREFLUSH), Err(Errno::EOPNOTSUPP));
    assert_eq!(ops(&fake), [T_FLUSH]);
    // A failing FUA flush: the write happened, the bio still fails.
    fake.state().log.clear();
    assert_eq!(write_at(&dev, &p, 0, &[9u8; 512], BioFlags::FUA), Err(Errno::EOPNOTSUPP));
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH]);
    assert_eq!(fake.state().disk[0], 9);
    assert_eq!(dev.in_flight(), 0);
    assert!(!dev.is_broken());
}

#[test]
fn bogus_used_entry_resets_device_and_fails_everything() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 3 * 512).unwrap();
    let rec = Rec::new();
    for i in 0..3 {
        dev.submit(bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, i as usize * 512, 512)], rec.end(i)));
    }
    assert_eq!(dev.poll(), 0);
    assert_eq!(fake.state().held(), 3);
    fake.state().bogus_next = true;
    fake.complete(1);
    assert_eq!(dev.poll(), 3);
    let mut done = rec.taken();
    done.sort_by_key(|d| d.0);
    assert_eq!(done, [(0, Err(Errno::EIO)), (1, Err(Errno::EIO)), (2, Err(Errno::EIO))]);
    assert!(dev.is_broken());
    assert!(fake.state().is_reset());
    assert_eq!(dev.in_flight(), 0);
    let mut b = [0u8; 512];
    assert_eq!(read_at(&dev, &p, 0, &mut b), Err(Errno::EIO));
    assert_eq!(dev.stats().rejected, 1);
}

#[test]
fn beyond_limits_is_einval_before_the_device() {
    let fake = Fake::new(FakeConfig {
        seg_max: 4,
        size_max: 4096,
        features: FakeConfig::default().features | BlkFeatures::SIZE_MAX,
        max_discard: 16,
        max_write_zeroes: 8,
        ..Default::default()
    });
    let dev = probe(&fake);
    fake.state().log.clear();
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 8192).unwrap();
    let five: Vec<Segment> = (0..5).map(|k| seg(&buf, k * 512, 512)).collect();
    let rec = Rec::new();
    dev.submit(bio(BioOp::Read, BioFlags::empty(), 0, &five, rec.end(0)));
    dev.submit(bio(BioOp::Write, BioFlags::empty(), 0, &[seg(&buf, 0, 8192)], rec.end(1)));
    dev.submit(Bio::dataless(BioOp::Discard, 0, 17, rec.end(2)));
    dev.submit(Bio::dataless(BioOp::WriteZeroes, 0, 9, rec.end(3)));
    dev.submit(Bio::dataless(BioOp::WriteZeroes, 0, 8, rec.end(4)));
    while rec.count() < 5 {
        dev.poll();
    }
    assert_eq!(
        rec.taken(),
        [
            (0, Err(Errno::EINVAL)),
            (1, Err(Errno::EINVAL)),
            (2, Err(Errno::EINVAL)),
            (3, Err(Errno::EINVAL)),
            (4, Ok(()))
        ]
    );
    let st = fake.state();
    assert_eq!(st.log.len(), 1, "only the valid bio reached the device");
    assert_eq!((st.log[0].kind, st.log[0].sector, st.log[0].bytes), (T_WRITE_ZEROES, 0, 8 * 512));
    assert_eq!(dev.stats().rejected, 4);
}

#[test]
fn full_queue_makes_submit_poll_for_room() {
    let fake = Fake::new(FakeConfig { queue_size: 8, ..Default::default() });
    let dev = probe(&fake);
    assert_eq!(dev.info().queue_depth, 8);
    assert_eq!(dev.info().max_segments, 6);
    fake.state().hold = true;
    fake.state().order = Order::Shuffle(7);
    fake.start_auto();
    let p = StdPlatform::arc();
    let mut buf = DmaBuffer::new(&p, 100 * 512).unwrap();
    for (i, b) in buf.as_mut_slice().chunks_mut(512).enumerate() {
        b.fill(i as u8);
    }
    let rec = Rec::new();
    for i in 0..100u64 {
        dev.submit(bio(BioOp::Write, BioFlags::empty(), i, &[seg(&buf, i as usize * 512, 512)], rec.end(i)));
        assert!(dev.in_flight() <= 8 + 1);
    }
    while rec.count() < 100 {
        dev.poll();
        std::thread::yield_now();
    }
    fake.stop();
    assert!(rec.taken().iter().all(|d| d.1.is_ok()));
    assert!(dev.stats().room_waits > 0, "100 bios through 8 slots must have waited");
    let st = fake.state();
    assert!((0..100usize).all(|i| st.disk[i * 512..(i + 1) * 512].iter().all(|&b| b == i as u8)));
}

#[test]
fn direct_descriptors_stall_a_step_until_the_ring_has_room() {
    let fake = Fake::new(FakeConfig {
        queue_size: 16,
        features: FakeConfig::default().features - BlkFeatures::RING_INDIRECT_DESC,
        ..Default::default()
    });
    let dev = probe(&fake);
    assert!(!dev.indirect());
    assert_eq!(dev.info().max_segments, 14);
    fake.state().hold = true;
    fake.state().order = Order::Reverse;
    fake.state().log.clear();
    let p = StdPlatform::arc();
    let mut buf = DmaBuffer::new(&p, 22 * 512).unwrap();
    for (i, b) in buf.as_mut_slice().chunks_mut(512).enumerate() {
        b.fill(0x40 + i as u8);
    }
    let a: Vec<Segment> = (0..10).map(|k| seg(&buf, k * 512, 512)).collect();
    let b: Vec<Segment> = (10..22).map(|k| seg(&buf, k * 512, 512)).collect();
    let rec = Rec::new();
    // A: 12 descriptors, held by the device.
    dev.submit(bio(BioOp::Write, BioFlags::empty(), 0, &a, rec.end(1)));
    // B: its preflush takes 2 of the 4 free descriptors; its 14-descriptor write cannot follow.
    dev.submit(bio(BioOp::Write, BioFlags::PREFLUSH, 100, &b, rec.end(2)));
    assert_eq!(dev.poll(), 0);
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH]);
    fake.complete(1); // B's flush (newest first)
    assert_eq!(dev.poll(), 0);
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH], "B's write is stalled, not lost");
    fake.complete(1); // A
    assert_eq!(dev.poll(), 1);
    assert_eq!(rec.taken(), [(1, Ok(()))]);
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH, T_OUT], "B's write went out once A freed the ring");
    fake.complete(1);
    assert_eq!(dev.poll(), 1);
    assert_eq!(rec.taken(), [(2, Ok(()))]);
    let st = fake.state();
    assert!(st.log.iter().all(|o| !o.indirect));
    assert_eq!(st.log[2].data_descs, 12);
    assert!((0..12usize).all(|k| st.disk[(100 * 512) + k * 512] == 0x40 + 10 + k as u8));
}

#[test]
fn threaded_direct_descriptors_pass_conformance() {
    let fake = Fake::new(FakeConfig {
        sectors: 8192,
        queue_size: 32,
        features: FakeConfig::default().features - BlkFeatures::RING_INDIRECT_DESC,
        ..Default::default()
    });
    let dev = Arc::new(probe(&fake));
    fake.state().hold = true;
    fake.state().order = Order::Shuffle(3);
    fake.start_auto();
    run_conformance(dev);
    fake.stop();
}

#[test]
fn multi_queue_spreads_requests_over_queues() {
    let fake = Fake::new(FakeConfig { queues: 3, ..Default::default() });
    let dev = probe(&fake);
    assert_eq!(dev.num_queues(), 3);
    assert_eq!(dev.info().queue_depth, 3 * 256);
    let p = StdPlatform::arc();
    fake.state().hold = true;
    let buf = DmaBuffer::new(&p, 512).unwrap();
    let rec = Rec::new();
    for i in 0..30 {
        dev.submit(bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, 0, 512)], rec.end(i)));
    }
    assert_eq!(dev.poll(), 0);
    fake.complete(usize::MAX);
    assert_eq!(dev.poll(), 30);
    for q in 0..3 {
        assert_eq!(dev.queue_stats(q).unwrap().completed, 10, "queue {q}");
    }
    let st = fake.state();
    for q in 0..3u16 {
        assert_eq!(st.log.iter().filter(|o| o.queue == q && o.kind == T_IN).count(), 10);
    }
    let capped = Fake::new(FakeConfig { queues: 3, ..Default::default() });
    assert_eq!(probe_with(&capped, Options { max_queues: 2, ..Default::default() }).unwrap().num_queues(), 2);
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

struct CountingCpu {
    saves: std::sync::atomic::AtomicUsize,
    restores: std::sync::atomic::AtomicUsize,
}

impl IrqControl for CountingCpu {
    fn save_disable(&self) -> bool {
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    }
    fn restore(&self, was_enabled: bool) {
        assert!(was_enabled);
        self.restores.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

static CPU: CountingCpu = CountingCpu {
    saves: std::sync::atomic::AtomicUsize::new(0),
    restores: std::sync::atomic::AtomicUsize::new(0),
};

#[derive(Default)]
struct Routes(Mutex<Vec<(u16, Option<MsiMessage>)>>);

impl InterruptRouting for Arc<Routes> {
    fn route(&self, queue: u16, message: Option<MsiMessage>) -> Result<()> {
        self.0.lock().unwrap().push((queue, message));
        Ok(())
    }
}

#[test]
fn interrupts_route_queues_and_the_handler_reaps() {
    let fake = Fake::new(FakeConfig { queues: 3, ..Default::default() });
    let routes = Arc::new(Routes::default());
    let dev = probe_with(
        &fake,
        Options { irq_control: Some(&CPU), routing: Some(Box::new(routes.clone())), ..Default::default() },
    )
    .unwrap();
    let m1 = MsiMessage { address: 0xFEE0_0000, data: 33 };
    let m2 = MsiMessage { address: 0xFEE0_1000, data: 34 };
    assert!(!dev.interrupts_enabled());
    assert!((0..3).all(|q| fake.state().interrupts_suppressed(q)), "polling mode suppresses interrupts");
    let p = StdPlatform::arc();
    let mut b = [0u8; 512];
    read_at(&dev, &p, 0, &mut b).unwrap();
    assert_eq!(CPU.saves.load(std::sync::atomic::Ordering::SeqCst), 0, "polling never masks interrupts");
    assert_eq!(dev.handle_interrupt(0), 0, "a stray interrupt while polling does nothing");
    dev.enable_interrupts(&[m1, m2]).unwrap();
    assert!(dev.interrupts_enabled());
    assert_eq!(*routes.0.lock().unwrap(), [(0, Some(m1)), (1, Some(m2)), (2, Some(m1))]);
    assert!((0..3).all(|q| !fake.state().interrupts_suppressed(q)));
    fake.state().hold = true;
    let buf = DmaBuffer::new(&p, 512).unwrap();
    let rec = Rec::new();
    for i in 0..6 {
        dev.submit(bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, 0, 512)], rec.end(i)));
    }
    fake.complete(usize::MAX);
    let reaped: usize = (0..3).map(|q| dev.handle_interrupt(q)).sum();
    assert_eq!(reaped, 6);
    assert_eq!(dev.handle_interrupt(7), 0, "an unknown queue is ignored");
    let s = dev.stats();
    assert_eq!((s.completed, s.completed_in_irq), (7, 6), "the polled read before, six by interrupt");
    assert_eq!((0..3).map(|q| dev.queue_stats(q).unwrap().interrupts).sum::<u64>(), 3);
    dev.disable_interrupts();
    assert_eq!(routes.0.lock().unwrap()[3..], [(0, None), (1, None), (2, None)]);
    assert!((0..3).all(|q| fake.state().interrupts_suppressed(q)));
    let saves = CPU.saves.load(std::sync::atomic::Ordering::SeqCst);
    assert!(saves > 0);
    assert_eq!(saves, CPU.restores.load(std::sync::atomic::Ordering::SeqCst));
    // Without routing or interrupt control the option is refused.
    let plain = probe(&Fake::new(FakeConfig::default()));
    assert_eq!(plain.enable_interrupts(&[m1]), Err(Errno::EOPNOTSUPP));
    let no_ctl = probe_with(
        &Fake::new(FakeConfig::default()),
        Options { routing: Some(Box::new(routes.clone())), ..Default::default() },
    )
    .unwrap();
    assert_eq!(no_ctl.enable_interrupts(&[m1]), Err(Errno::EINVAL));
    assert_eq!(dev.enable_interrupts(&[]), Err(Errno::EINVAL));
}
