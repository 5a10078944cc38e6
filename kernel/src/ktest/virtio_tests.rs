//! virtio-blk driver tests against QEMU's real device: the disks xtask attaches to the test
//! boot (`scratch0`, `scratch1`, `mq` with `num-queues=4`, `lba4k` with 4 KiB logical blocks,
//! `ro` read-only with a known pattern), queue sizes and limits as QEMU offers them, multi-queue
//! I/O, two disks at once, the read-only disk, the portable conformance suite re-run on the
//! 4 KiB and multi-queue disks, and interrupt-driven completion through MSI-X.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use foliage_drivers::block::conformance;
use foliage_drivers::block::sync::{dataless, flush, read_at, write_at};
use foliage_drivers::block::{
    Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, Segment,
};
use foliage_drivers::platform::{wait_until, DmaBuffer, Platform};
use foliage_drivers::selftest::{self, NoObserver, TestCase, TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq, Errno};

use crate::arch::apic;
use crate::disks::{self, Disk};

/// The disks the test boot carries (xtask's `kernel` profile).
pub const DISKS: [&str; 5] = ["scratch0", "scratch1", "mq", "lba4k", "ro"];
/// Size of the read-only disk's image and the pattern xtask writes into it.
pub const RO_MAGIC: &[u8; 16] = b"FOLIAGE-RO-IMAGE";

/// The byte xtask writes at offset `i` of the read-only image (after the magic).
pub fn ro_byte(i: u64) -> u8 {
    ((i / 512) * 7 + 3 + i % 512) as u8
}

fn disk(name: &str) -> Result<&'static Disk, TestFailure> {
    disks::get(name).ok_or_else(|| TestFailure(format!("no virtio-blk disk named {name:?}")))
}

const PENDING: i32 = i32::MIN;

/// Lock-free completion recorder (usable from interrupt context).
struct Batch {
    results: Vec<AtomicI32>,
    done: AtomicUsize,
}

impl Batch {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            results: (0..n).map(|_| AtomicI32::new(PENDING)).collect(),
            done: AtomicUsize::new(0),
        })
    }

    fn end(self: &Arc<Self>, i: usize) -> BioEnd {
        BioEnd::new(self.clone(), i as u64)
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Acquire)
    }

    fn wait(&self, dev: &dyn BlockDevice, p: &dyn Platform) {
        let n = self.results.len();
        wait_until(p, self as *const Self as usize, &|| self.done() >= n, &|| {
            dev.poll();
        });
    }

    fn all_ok(&self, what: &str) -> TestResult {
        ensure_eq!(self.done(), self.results.len(), "{what}: completions");
        for (i, r) in self.results.iter().enumerate() {
            let v = r.load(Ordering::Acquire);
            ensure!(v == 0, "{what}: bio {i} ended with {:?}", Errno::from_code(v));
        }
        Ok(())
    }
}

impl BioComplete for Batch {
    fn complete(&self, cookie: u64, result: foliage_drivers::Result<()>) {
        let v = match result {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        if let Some(r) = self.results.get(cookie as usize) {
            r.store(v, Ordering::Release);
        }
        self.done.fetch_add(1, Ordering::AcqRel);
    }
}

fn seg(buf: &DmaBuffer, at: usize, len: usize) -> Segment {
    let virt = NonNull::new(buf.as_slice()[at..].as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: every test keeps `buf` alive and untouched until the bio completes.
    unsafe { Segment::new(virt, buf.phys() + at as u64, len as u32) }
}

fn bio(op: BioOp, offset: u64, s: Segment, end: BioEnd) -> Bio {
    let mut b = Bio::new(op, offset / 512, end);
    let _ = b.push(s);
    b
}

fn tag(buf: &mut [u8], disk: u8, block: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (block as u8).wrapping_mul(13) ^ disk.wrapping_mul(0x5B) ^ (i as u8);
    }
}

fn discovery_names_disks_by_serial(env: &TestEnv) -> TestResult {
    for name in DISKS {
        let d = disk(name)?;
        ensure_eq!(d.dev.serial(), name, "GET_ID serial");
        env.device(name)?;
    }
    ensure!(disks::all().len() >= DISKS.len(), "{} disks", disks::all().len());
    Ok(())
}

fn queue_size_limits_and_features(_: &TestEnv) -> TestResult {
    let d = disk("scratch0")?;
    let i = d.dev.info();
    ensure_eq!(d.dev.num_queues(), 1);
    ensure_eq!(d.dev.queue_stats(0).map(|s| s.size), Some(256), "QEMU offers 256-entry queues");
    ensure!(d.dev.indirect(), "indirect descriptors negotiated");
    ensure_eq!(i.queue_depth, 256);
    ensure_eq!(d.dev.config().seg_max, 254, "QEMU seg_max = queue size - 2");
    ensure_eq!(i.max_segments, 64, "seg_max capped at BIO_MAX_SEGMENTS");
    ensure_eq!((i.logical_block_size, i.physical_block_size, i.sectors), (512, 512, 64 << 11));
    ensure_eq!(i.features, DeviceFeatures::FLUSH | DeviceFeatures::DISCARD | DeviceFeatures::WRITE_ZEROES);
    ensure!(i.max_discard_sectors > 0 && i.max_write_zeroes_sectors > 0);
    ensure_eq!(d.dev.config().num_queues, 1);
    Ok(())
}

fn multi_queue_all_queues_carry_io(env: &TestEnv) -> TestResult {
    let d = disk("mq")?;
    let dev = env.device("mq")?;
    let p = &env.platform;
    ensure_eq!(d.dev.num_queues(), 4, "num-queues=4");
    ensure_eq!(dev.info().queue_depth, 1024);
    let before: Vec<u64> = (0..4).map(|q| d.dev.queue_stats(q).map(|s| s.completed).unwrap_or(0)).collect();
    const N: usize = 256;
    let mut buf = DmaBuffer::new(p, N * 512)?;
    for k in 0..N {
        tag(&mut buf.as_mut_slice()[k * 512..(k + 1) * 512], 2, k);
    }
    let t = Batch::new(N);
    for k in 0..N {
        dev.submit(bio(BioOp::Write, (k as u64 * 97 % 512) * 4096, seg(&buf, k * 512, 512), t.end(k)));
    }
    ensure!(dev.in_flight() > 0, "bios should be in flight");
    t.wait(&*dev, &**p);
    t.all_ok("256 writes over 4 queues")?;
    buf.as_mut_slice().fill(0);
    let t = Batch::new(N);
    for k in 0..N {
        dev.submit(bio(BioOp::Read, (k as u64 * 97 % 512) * 4096, seg(&buf, k * 512, 512), t.end(k)));
    }
    t.wait(&*dev, &**p);
    t.all_ok("256 reads over 4 queues")?;
    let mut want = [0u8; 512];
    for k in 0..N {
        tag(&mut want, 2, k);
        ensure!(buf.as_slice()[k * 512..(k + 1) * 512] == want, "block {k} read back wrong");
    }
    for (q, b) in before.iter().enumerate() {
        let now = d.dev.queue_stats(q).map(|s| s.completed).unwrap_or(0);
        ensure_eq!(now - b, 2 * N as u64 / 4, "queue {q} carried its round-robin share");
    }
    Ok(())
}

fn logical_block_4k(env: &TestEnv) -> TestResult {
    let d = disk("lba4k")?;
    let dev = env.device("lba4k")?;
    let p = &env.platform;
    let i = dev.info();
    ensure_eq!((i.logical_block_size, i.physical_block_size), (4096, 4096));
    ensure_eq!(d.dev.config().blk_size, 4096);
    ensure_eq!(i.capacity_bytes(), 16 << 20);
    let mut b = alloc::vec![0u8; 4096];
    ensure_eq!(read_at(&*dev, p, 0, &mut b[..512]), Err(Errno::EINVAL), "512-byte read");
    let buf = DmaBuffer::new(p, 4096)?;
    let t = Batch::new(2);
    dev.submit(bio(BioOp::Read, 512, seg(&buf, 0, 4096), t.end(0)));
    dev.submit(bio(BioOp::Read, 0, seg(&buf, 0, 2048), t.end(1)));
    t.wait(&*dev, &**p);
    for k in 0..2 {
        ensure_eq!(t.results[k].load(Ordering::Acquire), Errno::EINVAL.code(), "misaligned bio {k}");
    }
    let last = i.capacity_bytes() - 4096;
    tag(&mut b, 4, 1);
    write_at(&*dev, p, last, &b, BioFlags::FUA)?;
    let mut back = alloc::vec![0u8; 4096];
    read_at(&*dev, p, last, &mut back)?;
    ensure!(back == b, "last 4 KiB block read back wrong");
    Ok(())
}

/// Runs the portable conformance suite with `name` standing in for `scratch0`.
fn conformance_on(env: &TestEnv, name: &str) -> TestResult {
    let mut sub = TestEnv::new(env.platform.clone());
    sub.add_device(conformance::DEVICE, env.device(name)?);
    let mut out = String::new();
    let mut s = selftest::run(conformance::SUITE, "", &sub, &mut out, &mut NoObserver);
    s.add(&selftest::run(conformance::STRICT, "", &sub, &mut out, &mut NoObserver));
    ensure!(s.failed == 0 && s.passed > 0, "conformance on {name}: {}\n{out}", s.line());
    Ok(())
}

fn conformance_on_lba4k(env: &TestEnv) -> TestResult {
    conformance_on(env, "lba4k")
}

fn conformance_on_mq(env: &TestEnv) -> TestResult {
    conformance_on(env, "mq")
}

fn read_only_disk(env: &TestEnv) -> TestResult {
    let d = disk("ro")?;
    let dev = env.device("ro")?;
    let p = &env.platform;
    let i = dev.info();
    ensure!(i.features.contains(DeviceFeatures::READ_ONLY), "features {:?}", i.features);
    let rejected = d.dev.stats().rejected;
    let block = alloc::vec![0x55u8; 512];
    ensure_eq!(write_at(&*dev, p, 0, &block, BioFlags::empty()), Err(Errno::EROFS));
    ensure_eq!(write_at(&*dev, p, 4096, &block, BioFlags::FUA), Err(Errno::EROFS));
    ensure_eq!(dataless(&*dev, &**p, BioOp::WriteZeroes, 0, 4096), Err(Errno::EROFS));
    ensure_eq!(dataless(&*dev, &**p, BioOp::Discard, 0, 4096), Err(Errno::EROFS));
    ensure_eq!(d.dev.stats().rejected - rejected, 4, "refused before reaching the device");
    flush(&*dev, &**p)?;
    let mut all = alloc::vec![0u8; i.capacity_bytes() as usize];
    read_at(&*dev, p, 0, &mut all)?;
    ensure!(&all[..16] == RO_MAGIC, "magic: {:?}", &all[..16]);
    for (k, &b) in all.iter().enumerate().skip(16) {
        ensure!(b == ro_byte(k as u64), "byte {k}: {b:#x}, want {:#x}", ro_byte(k as u64));
    }
    Ok(())
}

fn two_disks_independent(env: &TestEnv) -> TestResult {
    let p = &env.platform;
    let devs = [env.device("scratch0")?, env.device("scratch1")?];
    const N: usize = 64;
    let mut bufs = [DmaBuffer::new(p, N * 512)?, DmaBuffer::new(p, N * 512)?];
    for (di, b) in bufs.iter_mut().enumerate() {
        for k in 0..N {
            tag(&mut b.as_mut_slice()[k * 512..(k + 1) * 512], di as u8 + 10, k);
        }
    }
    let ts = [Batch::new(N), Batch::new(N)];
    // Same offsets on both disks, submissions interleaved, all in flight together.
    for k in 0..N {
        for di in 0..2 {
            devs[di].submit(bio(
                BioOp::Write,
                8192 + k as u64 * 512,
                seg(&bufs[di], k * 512, 512),
                ts[di].end(k),
            ));
        }
    }
    for di in 0..2 {
        ts[di].wait(&*devs[di], &**p);
        ts[di].all_ok("writes")?;
    }
    for (di, dev) in devs.iter().enumerate() {
        let mut back = alloc::vec![0u8; N * 512];
        read_at(&**dev, p, 8192, &mut back)?;
        let mut want = [0u8; 512];
        for k in 0..N {
            tag(&mut want, di as u8 + 10, k);
            ensure!(back[k * 512..(k + 1) * 512] == want, "disk {di} block {k} holds the other disk's data");
        }
    }
    Ok(())
}

/// Waits, without polling the device, until `t` has all its completions (or 5 s passed).
fn wait_for_interrupts(t: &Batch, p: &dyn Platform) -> TestResult {
    let deadline = p.now_ns() + 5_000_000_000;
    while t.done() < t.results.len() {
        ensure!(
            p.now_ns() < deadline,
            "{} of {} completions after 5 s without polling",
            t.done(),
            t.results.len()
        );
        core::hint::spin_loop();
    }
    Ok(())
}

fn interrupt_driven_completion(env: &TestEnv) -> TestResult {
    let d = disk("scratch1")?;
    let dev = env.device("scratch1")?;
    let p = &env.platform;
    let was_on = d.dev.interrupts_enabled();
    if !was_on {
        disks::enable_interrupts(d)?;
    }
    ensure!(d.dev.interrupts_enabled() && apic::enabled(), "interrupts switched on");
    let vector = d.vectors[0] as usize;
    let (irq0, vec0) = (d.dev.stats().completed_in_irq, disks::interrupts_on_vector(vector));
    const N: usize = 64;
    let mut buf = DmaBuffer::new(p, N * 512)?;
    for k in 0..N {
        tag(&mut buf.as_mut_slice()[k * 512..(k + 1) * 512], 7, k);
    }
    // Phase 1: submit with interrupts masked, then wait with them on and never poll: every
    // completion must arrive through the interrupt handler.
    let t = Batch::new(N);
    {
        let _off = apic::IrqOff::new();
        for k in 0..N {
            dev.submit(bio(BioOp::Write, k as u64 * 512, seg(&buf, k * 512, 512), t.end(k)));
        }
        ensure_eq!(t.done(), 0, "nothing completes while interrupts are masked and nobody polls");
    }
    wait_for_interrupts(&t, &**p)?;
    t.all_ok("writes completed by interrupt")?;
    ensure_eq!(d.dev.stats().completed_in_irq - irq0, N as u64, "completions reaped in the handler");
    let taken = disks::interrupts_on_vector(vector) - vec0;
    ensure!((1..=N as u64).contains(&taken), "{taken} interrupts on vector {}", vector + 32);
    // Phase 2: interrupts on while submitting (the handler may run between submissions).
    buf.as_mut_slice().fill(0);
    let t = Batch::new(N);
    for k in 0..N {
        dev.submit(bio(BioOp::Read, k as u64 * 512, seg(&buf, k * 512, 512), t.end(k)));
    }
    wait_for_interrupts(&t, &**p)?;
    t.all_ok("reads completed by interrupt")?;
    ensure_eq!(d.dev.stats().completed_in_irq - irq0, 2 * N as u64);
    let mut want = [0u8; 512];
    for k in 0..N {
        tag(&mut want, 7, k);
        ensure!(buf.as_slice()[k * 512..(k + 1) * 512] == want, "block {k} read back wrong");
    }
    if !was_on {
        disks::disable_interrupts(d);
        ensure!(!d.dev.interrupts_enabled(), "interrupts switched off");
        // Polling still completes I/O.
        let mut b = [0u8; 512];
        read_at(&*dev, p, 0, &mut b)?;
        tag(&mut want, 7, 0);
        ensure!(b == want, "polled read after switching interrupts off");
        ensure_eq!(d.dev.stats().completed_in_irq - irq0, 2 * N as u64, "no interrupt completions once off");
    }
    Ok(())
}

/// The virtio-blk driver tests.
pub static TESTS: &[TestCase] = &[
    TestCase { name: "virtio::discovery_names_disks_by_serial", run: discovery_names_disks_by_serial },
    TestCase { name: "virtio::queue_size_limits_and_features", run: queue_size_limits_and_features },
    TestCase { name: "virtio::multi_queue_all_queues_carry_io", run: multi_queue_all_queues_carry_io },
    TestCase { name: "virtio::logical_block_4k", run: logical_block_4k },
    TestCase { name: "virtio::conformance_on_lba4k", run: conformance_on_lba4k },
    TestCase { name: "virtio::conformance_on_mq", run: conformance_on_mq },
    TestCase { name: "virtio::read_only_disk", run: read_only_disk },
    TestCase { name: "virtio::two_disks_independent", run: two_disks_independent },
    TestCase { name: "virtio::interrupt_driven_completion", run: interrupt_driven_completion },
];
