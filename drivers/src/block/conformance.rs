//! Block device conformance: a portable [`SUITE`] of self-tests any [`BlockDevice`] must pass.
//!
//! The suite runs on the device named `"scratch0"` in the [`TestEnv`] (its contents are
//! destroyed). The host runs it on [`RamDisk`](super::RamDisk) from `cargo test`; the kernel runs
//! it on every virtio-blk configuration it boots with; another kernel runs it on its own driver
//! to prove its port. It checks the contract in [`block`](super): data round trips across the
//! whole device including its last block, flush / FUA / PREFLUSH, refusal of out-of-range and
//! malformed bios with the right error (exactly one completion each), 256 bios in flight each
//! verified, many-segment scatter-gather, DISCARD / WRITE_ZEROES (or `EOPNOTSUPP`), the device's
//! own limits, and submission from inside a completion callback.
//!
//! Completions are recorded without locks or allocation (atomics indexed by cookie), so the
//! suite also runs with completions delivered in interrupt context.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | blktests `block/` group, fio `verify=` patterns | [`SUITE`] |
//! | `bio_endio` exactly once | every test counts completions per cookie |

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use super::sync::{dataless, flush, read_at, write_at};
use super::{
    Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, DeviceInfo, Segment, SECTOR_SIZE,
};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, DmaBuffer, Platform};
use crate::selftest::{TestCase, TestEnv, TestFailure, TestResult};
use crate::{ensure, ensure_eq};

/// The name of the device the suite runs on.
pub const DEVICE: &str = "scratch0";

/// The conformance tests.
pub static SUITE: &[TestCase] = &[
    TestCase { name: "conformance::info_is_sane", run: info_is_sane },
    TestCase { name: "conformance::write_flush_read_whole_disk", run: write_flush_read_whole_disk },
    TestCase { name: "conformance::last_block_and_out_of_range", run: last_block_and_out_of_range },
    TestCase { name: "conformance::malformed_bios_rejected_once", run: malformed_bios_rejected_once },
    TestCase { name: "conformance::deep_queue_256_in_flight", run: deep_queue_256_in_flight },
    TestCase { name: "conformance::scatter_gather_many_segments", run: scatter_gather_many_segments },
    TestCase { name: "conformance::discard_and_write_zeroes", run: discard_and_write_zeroes },
    TestCase { name: "conformance::fua_preflush_and_flush", run: fua_preflush_and_flush },
    TestCase { name: "conformance::io_at_the_limits", run: io_at_the_limits },
    TestCase { name: "conformance::submit_from_completion", run: submit_from_completion },
];

/// Extra tests for *strict* drivers, which refuse (`EINVAL`) every bio beyond their own
/// [`DeviceInfo`] limits (more segments, larger segments or requests, longer discards). Lenient
/// devices (RamDisk, a `Queue`) may accept such bios and are not held to this.
pub static STRICT: &[TestCase] =
    &[TestCase { name: "conformance::strict::beyond_limits_einval", run: beyond_limits_einval }];

const PENDING: i32 = i32::MIN;

/// splitmix64: the pattern generator (and the suite's PRNG).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf`, which will live at byte `offset` of the device, with the pattern `seed`: every
/// 8-byte word depends on its device offset, so misplaced data is detected.
fn fill(buf: &mut [u8], offset: u64, seed: u64) {
    for (i, w) in buf.chunks_mut(8).enumerate() {
        let v = mix((offset + 8 * i as u64) ^ seed.rotate_left(17)).to_le_bytes();
        w.copy_from_slice(&v[..w.len()]);
    }
}

/// Checks `buf` (read from byte `offset`) against pattern `seed`; names the first bad byte.
fn check(buf: &[u8], offset: u64, seed: u64, what: &str) -> TestResult {
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
struct Tracker {
    results: Vec<AtomicI32>,
    order: Vec<AtomicU32>,
    done: AtomicUsize,
    anomalies: AtomicUsize,
}

impl Tracker {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            results: (0..n).map(|_| AtomicI32::new(PENDING)).collect(),
            order: (0..n).map(|_| AtomicU32::new(u32::MAX)).collect(),
            done: AtomicUsize::new(0),
            anomalies: AtomicUsize::new(0),
        })
    }

    fn end(self: &Arc<Self>, cookie: usize) -> BioEnd {
        BioEnd::new(self.clone(), cookie as u64)
    }

    fn result(&self, cookie: usize) -> Option<Result<()>> {
        match self.results[cookie].load(Ordering::Acquire) {
            PENDING => None,
            0 => Some(Ok(())),
            e => Some(Err(Errno::from_code(e).unwrap_or(Errno::EIO))),
        }
    }

    /// Waits until `n` completions arrived, polling `dev`.
    fn wait(&self, dev: &dyn BlockDevice, platform: &dyn Platform, n: usize) {
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
    fn all_ok(&self, what: &str) -> TestResult {
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
    fn completion_order(&self) -> Vec<u32> {
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
fn seg(buf: &DmaBuffer, at: usize, len: usize) -> Segment {
    debug_assert!(at + len <= buf.len());
    let virt =
        NonNull::new(buf.as_slice().as_ptr().wrapping_add(at) as *mut u8).unwrap_or(NonNull::dangling());
    // SAFETY: the range lies inside a DMA buffer that every test keeps alive (and untouched by
    // the CPU) until the bio carrying the segment has completed.
    unsafe { Segment::new(virt, buf.phys() + at as u64, len as u32) }
}

/// A data bio at byte `offset` over `segs`.
fn data_bio(op: BioOp, flags: BioFlags, offset: u64, segs: &[Segment], end: BioEnd) -> Bio {
    let mut bio = Bio::new(op, offset / SECTOR_SIZE, end);
    bio.flags = flags;
    for &s in segs {
        let _ = bio.push(s);
    }
    bio
}

/// Submits `bio` and waits for its outcome.
fn one(dev: &dyn BlockDevice, platform: &dyn Platform, mut bio: Bio) -> Result<()> {
    let t = Tracker::new(1);
    bio.end = t.end(0);
    dev.submit(bio);
    t.wait(dev, platform, 1);
    t.result(0).unwrap_or(Err(Errno::EIO))
}

fn setup(env: &TestEnv) -> core::result::Result<(Arc<dyn BlockDevice>, DeviceInfo), TestFailure> {
    let dev = env.device(DEVICE)?;
    let info = dev.info();
    ensure!(dev.in_flight() == 0, "{DEVICE} has {} bios in flight before the test", dev.in_flight());
    Ok((dev, info))
}

/// Single-segment chunk size for bulk I/O on this device, at most `cap` bytes.
fn chunk(info: &DeviceInfo, cap: u64) -> u64 {
    let lbs = u64::from(info.logical_block_size);
    let max = u64::from(info.max_request_bytes.min(info.max_segment_bytes)).min(cap).max(lbs);
    max / lbs * lbs
}

fn info_is_sane(env: &TestEnv) -> TestResult {
    let (dev, i) = setup(env)?;
    let lbs = i.logical_block_size;
    ensure!(lbs.is_power_of_two() && (512..=65536).contains(&lbs), "logical block size {lbs}");
    ensure!(
        i.physical_block_size >= lbs && i.physical_block_size.is_power_of_two(),
        "physical block size {} vs logical {lbs}",
        i.physical_block_size
    );
    ensure!(i.sectors > 0, "empty device");
    ensure_eq!(i.sectors % (u64::from(lbs) / SECTOR_SIZE), 0, "capacity in whole logical blocks");
    ensure!(i.max_segments >= 1 && i.queue_depth >= 1, "segments {} depth {}", i.max_segments, i.queue_depth);
    ensure!(i.max_segment_bytes >= lbs && i.max_request_bytes >= lbs, "limits below one block: {i:?}");
    ensure!(i.dma_alignment >= 1 && i.dma_alignment.is_power_of_two(), "dma alignment {}", i.dma_alignment);
    let discard = i.features.contains(DeviceFeatures::DISCARD);
    ensure_eq!(discard, i.max_discard_sectors > 0, "DISCARD feature vs max_discard_sectors");
    let wz = i.features.contains(DeviceFeatures::WRITE_ZEROES);
    ensure_eq!(wz, i.max_write_zeroes_sectors > 0, "WRITE_ZEROES feature vs max_write_zeroes_sectors");
    ensure_eq!(dev.poll(), 0, "poll of an idle device completes nothing");
    Ok(())
}

fn write_flush_read_whole_disk(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let size = info.capacity_bytes();
    let step = chunk(&info, 1 << 20);
    const DEPTH: usize = 8;
    let seed = 0x5EED_0001;
    let mut bufs = Vec::new();
    for _ in 0..DEPTH {
        bufs.push(DmaBuffer::new(p, step as usize)?);
    }
    for (op, what) in [(BioOp::Write, "write"), (BioOp::Read, "read back")] {
        let mut offset = 0u64;
        while offset < size {
            let t = Tracker::new(DEPTH);
            let mut batch = Vec::new();
            for (k, b) in bufs.iter_mut().enumerate() {
                if offset >= size {
                    break;
                }
                let len = step.min(size - offset);
                if op == BioOp::Write {
                    fill(&mut b.as_mut_slice()[..len as usize], offset, seed);
                } else {
                    b.as_mut_slice().fill(0);
                }
                dev.submit(data_bio(op, BioFlags::empty(), offset, &[seg(b, 0, len as usize)], t.end(k)));
                batch.push((offset, len));
                offset += len;
            }
            t.wait(&*dev, &**p, batch.len());
            for (k, &(off, len)) in batch.iter().enumerate() {
                ensure_eq!(t.result(k), Some(Ok(())), "{what} of {len} bytes at {off:#x}");
                if op == BioOp::Read {
                    check(&bufs[k].as_slice()[..len as usize], off, seed, what)?;
                }
            }
        }
        if op == BioOp::Write {
            flush(&*dev, &**p)?;
        }
    }
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

fn last_block_and_out_of_range(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = u64::from(info.logical_block_size);
    let last = info.capacity_bytes() - lbs;
    let mut b = DmaBuffer::new(p, 2 * lbs as usize)?;
    fill(&mut b.as_mut_slice()[..lbs as usize], last, 77);
    let s1 = seg(&b, 0, lbs as usize);
    ensure_eq!(
        one(&*dev, &**p, data_bio(BioOp::Write, BioFlags::FUA, last, &[s1], Tracker::new(1).end(0))),
        Ok(())
    );
    b.as_mut_slice().fill(0);
    let s1 = seg(&b, 0, lbs as usize);
    ensure_eq!(
        one(&*dev, &**p, data_bio(BioOp::Read, BioFlags::empty(), last, &[s1], Tracker::new(1).end(0))),
        Ok(())
    );
    check(&b.as_slice()[..lbs as usize], last, 77, "last block")?;
    let s2 = seg(&b, 0, 2 * lbs as usize);
    let end = Tracker::new(1).end(0);
    let cases: [(&str, Bio); 4] = [
        ("read at capacity", data_bio(BioOp::Read, BioFlags::empty(), last + lbs, &[s1], end.clone())),
        ("read across the end", data_bio(BioOp::Read, BioFlags::empty(), last, &[s2], end.clone())),
        ("write across the end", data_bio(BioOp::Write, BioFlags::empty(), last, &[s2], end.clone())),
        ("read at a sector that overflows", {
            let mut bio = data_bio(BioOp::Read, BioFlags::empty(), 0, &[s1], end.clone());
            bio.sector = u64::MAX - 1;
            bio
        }),
    ];
    for (what, bio) in cases {
        ensure_eq!(one(&*dev, &**p, bio), Err(Errno::EINVAL), "{what}");
    }
    for (op, feature) in
        [(BioOp::Discard, DeviceFeatures::DISCARD), (BioOp::WriteZeroes, DeviceFeatures::WRITE_ZEROES)]
    {
        let want = if info.features.contains(feature) { Errno::EINVAL } else { Errno::EOPNOTSUPP };
        let r = one(&*dev, &**p, Bio::dataless(op, last / SECTOR_SIZE, 2 * lbs / SECTOR_SIZE, end.clone()));
        ensure_eq!(r, Err(want), "{op:?} across the end");
    }
    // The last block is intact after the refused bios.
    b.as_mut_slice().fill(0);
    read_at(&*dev, p, last, &mut b.as_mut_slice()[..lbs as usize])?;
    check(&b.as_slice()[..lbs as usize], last, 77, "last block after refused bios")?;
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

fn malformed_bios_rejected_once(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as usize;
    let b = DmaBuffer::new(p, 2 * lbs)?;
    let t = Tracker::new(8);
    let mut want: Vec<(&str, Errno)> = Vec::new();
    let mut submit = |what: &'static str, bio: Bio, e: Errno| {
        want.push((what, e));
        dev.submit(bio);
    };
    submit("read without segments", Bio::new(BioOp::Read, 0, t.end(0)), Errno::EINVAL);
    let odd = seg(&b, 0, lbs + 512 - if lbs == 512 { 256 } else { 0 });
    submit(
        "segment not a multiple of the block size",
        data_bio(BioOp::Write, BioFlags::empty(), 0, &[odd], t.end(1)),
        Errno::EINVAL,
    );
    let mut f = Bio::flush(t.end(2));
    let _ = f.push(seg(&b, 0, lbs));
    submit("flush carrying data", f, Errno::EINVAL);
    let mut r = data_bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&b, 0, lbs)], t.end(3));
    r.dataless_sectors = 1;
    submit("read with a dataless length", r, Errno::EINVAL);
    let mut m = data_bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&b, 0, lbs)], t.end(4));
    if lbs > 512 {
        m.sector = 1;
        submit("sector not aligned to the logical block", m, Errno::EINVAL);
    } else {
        m.sector = info.sectors;
        submit("read just past the end", m, Errno::EINVAL);
    }
    let dl = |op| {
        if info.features.contains(if op == BioOp::Discard {
            DeviceFeatures::DISCARD
        } else {
            DeviceFeatures::WRITE_ZEROES
        }) {
            Errno::EINVAL
        } else {
            Errno::EOPNOTSUPP
        }
    };
    submit("discard of zero sectors", Bio::dataless(BioOp::Discard, 0, 0, t.end(5)), dl(BioOp::Discard));
    let mut wz = Bio::dataless(BioOp::WriteZeroes, 0, (lbs / 512) as u64, t.end(6));
    let _ = wz.push(seg(&b, 0, lbs));
    submit("write-zeroes carrying data", wz, dl(BioOp::WriteZeroes));
    let mut z = data_bio(BioOp::Write, BioFlags::empty(), 0, &[seg(&b, 0, lbs)], t.end(7));
    z.segments.clear();
    let _ = z.push(seg(&b, 0, 0));
    submit("zero-length segment", z, Errno::EINVAL);
    t.wait(&*dev, &**p, 8);
    ensure_eq!(t.anomalies.load(Ordering::Acquire), 0, "each bio completes exactly once");
    for (k, (what, e)) in want.iter().enumerate() {
        ensure_eq!(t.result(k), Some(Err(*e)), "{what}");
    }
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

fn deep_queue_256_in_flight(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    const N: usize = 256;
    let lbs = info.logical_block_size as usize;
    let blocks = info.capacity_bytes() / lbs as u64;
    ensure!(blocks >= 2 * N as u64, "{DEVICE} needs at least {} blocks", 2 * N);
    // Distinct blocks spread over the device, visited in a shuffled order.
    let mut picks: Vec<u64> =
        (0..N as u64).map(|i| i * (blocks / N as u64) + (mix(i) % (blocks / N as u64))).collect();
    for i in (1..N).rev() {
        picks.swap(i, (mix(0xD1CE ^ i as u64) % (i as u64 + 1)) as usize);
    }
    let mut buf = DmaBuffer::new(p, N * lbs)?;
    for (k, &blk) in picks.iter().enumerate() {
        fill(&mut buf.as_mut_slice()[k * lbs..(k + 1) * lbs], blk * lbs as u64, 256);
    }
    let t = Tracker::new(N);
    for (k, &blk) in picks.iter().enumerate() {
        dev.submit(data_bio(
            BioOp::Write,
            BioFlags::empty(),
            blk * lbs as u64,
            &[seg(&buf, k * lbs, lbs)],
            t.end(k),
        ));
    }
    t.wait(&*dev, &**p, N);
    t.all_ok("256 writes")?;
    buf.as_mut_slice().fill(0);
    let t = Tracker::new(N);
    let mut peak = 0;
    for (k, &blk) in picks.iter().enumerate() {
        dev.submit(data_bio(
            BioOp::Read,
            BioFlags::empty(),
            blk * lbs as u64,
            &[seg(&buf, k * lbs, lbs)],
            t.end(k),
        ));
        peak = peak.max(dev.in_flight());
    }
    t.wait(&*dev, &**p, N);
    t.all_ok("256 reads")?;
    for (k, &blk) in picks.iter().enumerate() {
        check(&buf.as_slice()[k * lbs..(k + 1) * lbs], blk * lbs as u64, 256, "deep-queue read")?;
    }
    let mut order = t.completion_order();
    ensure_eq!(order.len(), N);
    order.sort_unstable();
    ensure!(
        order.iter().enumerate().all(|(i, &c)| c as usize == i),
        "completion cookies are not a permutation"
    );
    ensure!((1..=N).contains(&peak), "in_flight peaked at {peak}");
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

fn scatter_gather_many_segments(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as usize;
    let max_seg = (info.max_segment_bytes as usize / lbs).max(1);
    let nseg = (info.max_segments as usize).min(super::BIO_MAX_SEGMENTS);
    // Segment k is (1 + k % 3) blocks (bounded by the segment limit), within the request limit.
    let mut lens = Vec::new();
    let mut total = 0usize;
    for k in 0..nseg {
        let l = (1 + k % 3).min(max_seg) * lbs;
        if total + l > info.max_request_bytes as usize {
            break;
        }
        lens.push(l);
        total += l;
    }
    ensure!(!lens.is_empty());
    let offset = (info.capacity_bytes() / 2) / lbs as u64 * lbs as u64;
    ensure!(offset + total as u64 <= info.capacity_bytes(), "{DEVICE} too small for {total} bytes");
    // Segments live in reverse order in memory, with a one-block gap between neighbours.
    let mut mem = DmaBuffer::new(p, total + lens.len() * lbs)?;
    let mut places = Vec::new();
    let mut at = mem.len();
    for &l in &lens {
        at -= l + lbs;
        places.push(at);
    }
    let mut pos = offset;
    for (k, &l) in lens.iter().enumerate() {
        fill(&mut mem.as_mut_slice()[places[k]..places[k] + l], pos, 0x56);
        pos += l as u64;
    }
    let segs: Vec<Segment> = lens.iter().zip(&places).map(|(&l, &a)| seg(&mem, a, l)).collect();
    let w = data_bio(BioOp::Write, BioFlags::empty(), offset, &segs, Tracker::new(1).end(0));
    ensure_eq!(one(&*dev, &**p, w), Ok(()), "write of {} segments", segs.len());
    // Read back contiguously, then scattered again, and compare both.
    let mut flat = alloc::vec![0u8; total];
    read_at(&*dev, p, offset, &mut flat)?;
    check(&flat, offset, 0x56, "contiguous read of a scattered write")?;
    mem.as_mut_slice().fill(0);
    let r = data_bio(BioOp::Read, BioFlags::empty(), offset, &segs, Tracker::new(1).end(0));
    ensure_eq!(one(&*dev, &**p, r), Ok(()), "scattered read");
    let mut pos = offset;
    for (k, &l) in lens.iter().enumerate() {
        check(&mem.as_slice()[places[k]..places[k] + l], pos, 0x56, "scattered read")?;
        pos += l as u64;
    }
    Ok(())
}

fn discard_and_write_zeroes(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as u64;
    let blocks = 64u64.min(info.capacity_bytes() / lbs);
    ensure!(blocks >= 48, "{DEVICE} too small");
    let base = 0u64;
    let mut data = alloc::vec![0u8; (blocks * lbs) as usize];
    fill(&mut data, base, 0xD15C);
    write_at(&*dev, p, base, &data, BioFlags::empty())?;
    let zeroed = (8 * lbs, 16 * lbs);
    let discarded = (32 * lbs, 8 * lbs);
    let wz = dataless(&*dev, &**p, BioOp::WriteZeroes, base + zeroed.0, zeroed.1);
    let can_wz = info.features.contains(DeviceFeatures::WRITE_ZEROES);
    ensure_eq!(wz, if can_wz { Ok(()) } else { Err(Errno::EOPNOTSUPP) }, "write-zeroes");
    let dc = dataless(&*dev, &**p, BioOp::Discard, base + discarded.0, discarded.1);
    let can_discard = info.features.contains(DeviceFeatures::DISCARD);
    ensure_eq!(dc, if can_discard { Ok(()) } else { Err(Errno::EOPNOTSUPP) }, "discard");
    let mut back = alloc::vec![0u8; data.len()];
    read_at(&*dev, p, base, &mut back)?;
    for blk in 0..blocks {
        let at = blk * lbs;
        let r = &back[at as usize..(at + lbs) as usize];
        let in_zeroed = at >= zeroed.0 && at < zeroed.0 + zeroed.1;
        let in_discarded = at >= discarded.0 && at < discarded.0 + discarded.1;
        if in_zeroed && can_wz {
            ensure!(r.iter().all(|&b| b == 0), "block {blk} not zero after WRITE_ZEROES");
        } else if in_discarded && can_discard {
            // Contents after DISCARD are the device's choice.
        } else {
            check(r, base + at, 0xD15C, "block outside the zeroed / discarded ranges")?;
        }
    }
    Ok(())
}

fn fua_preflush_and_flush(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as u64;
    let at = info.capacity_bytes() / 4 / lbs * lbs;
    let flag_sets = [BioFlags::FUA, BioFlags::PREFLUSH, BioFlags::FUA | BioFlags::PREFLUSH, BioFlags::META];
    let mut buf = alloc::vec![0u8; 4 * lbs as usize];
    for (k, flags) in flag_sets.iter().enumerate() {
        let off = at + k as u64 * lbs;
        fill(&mut buf[..lbs as usize], off, 0xF0A);
        write_at(&*dev, p, off, &buf[..lbs as usize], *flags)?;
    }
    flush(&*dev, &**p)?;
    let t = Tracker::new(3);
    for k in 0..3 {
        let mut f = Bio::flush(t.end(k));
        f.flags = if k == 1 { BioFlags::PREFLUSH } else { BioFlags::empty() };
        dev.submit(f);
    }
    t.wait(&*dev, &**p, 3);
    t.all_ok("three flushes in flight")?;
    read_at(&*dev, p, at, &mut buf)?;
    check(&buf, at, 0xF0A, "FUA / PREFLUSH writes")?;
    let mut r = Bio::new(BioOp::Read, at / SECTOR_SIZE, Tracker::new(1).end(0));
    r.flags = BioFlags::FUA | BioFlags::PREFLUSH;
    let b = DmaBuffer::new(p, lbs as usize)?;
    let _ = r.push(seg(&b, 0, lbs as usize));
    ensure_eq!(one(&*dev, &**p, r), Ok(()), "read with FUA | PREFLUSH");
    check(b.as_slice(), at, 0xF0A, "read with FUA | PREFLUSH")?;
    Ok(())
}

/// Most memory a limits test allocates.
const MEM_CAP: u64 = 8 << 20;

fn io_at_the_limits(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = u64::from(info.logical_block_size);
    let cap = info.capacity_bytes();
    // One segment as large as allowed (within what the test can afford).
    let exact = u64::from(info.max_segment_bytes).min(cap).min(MEM_CAP) / lbs * lbs;
    let b = DmaBuffer::new(p, exact as usize)?;
    let r =
        data_bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&b, 0, exact as usize)], Tracker::new(1).end(0));
    ensure_eq!(one(&*dev, &**p, r), Ok(()), "read of {exact} bytes in one segment");
    // A request as large as allowed, in as few segments as allowed.
    let per_seg = u64::from(info.max_segment_bytes) / lbs * lbs;
    let req =
        u64::from(info.max_request_bytes).min(cap).min(MEM_CAP).min(per_seg * u64::from(info.max_segments))
            / lbs
            * lbs;
    let b = DmaBuffer::new(p, req as usize)?;
    let mut segs = Vec::new();
    let mut at = 0;
    while at < req {
        let l = per_seg.min(req - at);
        segs.push(seg(&b, at as usize, l as usize));
        at += l;
    }
    let r = data_bio(BioOp::Read, BioFlags::empty(), cap - req, &segs, Tracker::new(1).end(0));
    ensure_eq!(
        one(&*dev, &**p, r),
        Ok(()),
        "read of {req} bytes in {} segments ending at the last block",
        segs.len()
    );
    for (op, max, feature) in [
        (BioOp::Discard, info.max_discard_sectors, DeviceFeatures::DISCARD),
        (BioOp::WriteZeroes, info.max_write_zeroes_sectors, DeviceFeatures::WRITE_ZEROES),
    ] {
        if info.features.contains(feature) {
            let n = u64::from(max).min(cap / SECTOR_SIZE) / (lbs / SECTOR_SIZE) * (lbs / SECTOR_SIZE);
            ensure_eq!(
                dataless(&*dev, &**p, op, 0, n * SECTOR_SIZE),
                Ok(()),
                "{op:?} of {n} sectors (limit {max})"
            );
        }
    }
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

fn beyond_limits_einval(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = u64::from(info.logical_block_size);
    let cap = info.capacity_bytes();
    let mut checked = 0;
    for (op, max, feature) in [
        (BioOp::Discard, info.max_discard_sectors, DeviceFeatures::DISCARD),
        (BioOp::WriteZeroes, info.max_write_zeroes_sectors, DeviceFeatures::WRITE_ZEROES),
    ] {
        let over = u64::from(max) + lbs / SECTOR_SIZE;
        if info.features.contains(feature) && over * SECTOR_SIZE <= cap {
            let r = one(&*dev, &**p, Bio::dataless(op, 0, over, Tracker::new(1).end(0)));
            ensure_eq!(r, Err(Errno::EINVAL), "{op:?} of {over} sectors, limit {max}");
            checked += 1;
        }
    }
    let seg_over = u64::from(info.max_segment_bytes) + lbs;
    if seg_over <= cap.min(MEM_CAP) {
        let b = DmaBuffer::new(p, seg_over as usize)?;
        let r = data_bio(
            BioOp::Read,
            BioFlags::empty(),
            0,
            &[seg(&b, 0, seg_over as usize)],
            Tracker::new(1).end(0),
        );
        ensure_eq!(one(&*dev, &**p, r), Err(Errno::EINVAL), "segment of {seg_over} bytes");
        checked += 1;
    }
    let req_over = u64::from(info.max_request_bytes) + lbs;
    let per_seg = u64::from(info.max_segment_bytes) / lbs * lbs;
    if req_over <= cap.min(MEM_CAP) && req_over.div_ceil(per_seg) <= u64::from(info.max_segments) {
        let b = DmaBuffer::new(p, req_over as usize)?;
        let mut segs = Vec::new();
        let mut at = 0;
        while at < req_over {
            let l = per_seg.min(req_over - at);
            segs.push(seg(&b, at as usize, l as usize));
            at += l;
        }
        let r = data_bio(BioOp::Read, BioFlags::empty(), 0, &segs, Tracker::new(1).end(0));
        ensure_eq!(one(&*dev, &**p, r), Err(Errno::EINVAL), "request of {req_over} bytes");
        checked += 1;
    }
    let nseg = info.max_segments as usize;
    if nseg < super::BIO_MAX_SEGMENTS {
        let b = DmaBuffer::new(p, (nseg + 1) * lbs as usize)?;
        let segs: Vec<Segment> = (0..=nseg).map(|k| seg(&b, k * lbs as usize, lbs as usize)).collect();
        let r = data_bio(BioOp::Read, BioFlags::empty(), 0, &segs, Tracker::new(1).end(0));
        ensure_eq!(
            one(&*dev, &**p, r),
            Err(Errno::EINVAL),
            "{} segments on a device taking {nseg}",
            nseg + 1
        );
        checked += 1;
    }
    ensure!(checked > 0 || info.max_segments as usize >= super::BIO_MAX_SEGMENTS, "no limit was testable");
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

/// Resubmits a read of the same block from its own completion until `left` runs out.
struct Chain {
    dev: Arc<dyn BlockDevice>,
    seg: Segment,
    offset: u64,
    left: AtomicUsize,
    done: AtomicUsize,
    errors: AtomicUsize,
    me: spin::Once<alloc::sync::Weak<Chain>>,
}

impl Chain {
    fn next(self: &Arc<Self>) {
        let bio =
            data_bio(BioOp::Read, BioFlags::empty(), self.offset, &[self.seg], BioEnd::new(self.clone(), 0));
        self.dev.submit(bio);
    }
}

impl BioComplete for Chain {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::AcqRel);
        }
        let more = self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(1)).is_ok();
        if more {
            if let Some(me) = self.me.get().and_then(|w| w.upgrade()) {
                me.next();
            }
        }
        self.done.fetch_add(1, Ordering::AcqRel);
    }
}

fn submit_from_completion(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as usize;
    let b = DmaBuffer::new(p, lbs)?;
    const ROUNDS: usize = 16;
    let chain = Arc::new(Chain {
        dev: dev.clone(),
        seg: seg(&b, 0, lbs),
        offset: 0,
        left: AtomicUsize::new(ROUNDS - 1),
        done: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        me: spin::Once::new(),
    });
    chain.me.call_once(|| Arc::downgrade(&chain));
    chain.next();
    wait_until(&**p, Arc::as_ptr(&chain) as usize, &|| chain.done.load(Ordering::Acquire) >= ROUNDS, &|| {
        dev.poll();
    });
    ensure_eq!(chain.done.load(Ordering::Acquire), ROUNDS);
    ensure_eq!(chain.errors.load(Ordering::Acquire), 0);
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use crate::platform::StdPlatform;
    use crate::selftest::{run, NoObserver};

    fn run_suite(dev: Arc<dyn BlockDevice>) {
        let mut env = TestEnv::new(StdPlatform::arc());
        env.add_device(DEVICE, dev);
        let mut out = alloc::string::String::new();
        let s = run(SUITE, "", &env, &mut out, &mut NoObserver);
        assert_eq!(s.failed, 0, "{out}");
        assert_eq!(s.passed, SUITE.len(), "{out}");
    }

    #[test]
    fn suite_passes_on_ramdisk_512() {
        run_suite(Arc::new(RamDisk::new(4 << 20, 512).unwrap()));
    }

    #[test]
    fn suite_passes_on_ramdisk_4k_without_discard() {
        let mut d = RamDisk::new(4 << 20, 4096).unwrap();
        let mut i = d.info();
        i.features = DeviceFeatures::FLUSH;
        i.max_discard_sectors = 0;
        i.max_write_zeroes_sectors = 0;
        i.max_segments = 8;
        i.max_segment_bytes = 64 << 10;
        i.max_request_bytes = 256 << 10;
        d.set_info(i);
        run_suite(Arc::new(d));
    }

    #[test]
    fn pattern_check_names_the_bad_offset() {
        let mut b = alloc::vec![0u8; 64];
        fill(&mut b, 4096, 9);
        assert!(check(&b, 4096, 9, "x").is_ok());
        b[17] ^= 1;
        let e = check(&b, 4096, 9, "x").unwrap_err();
        assert!(e.0.contains("device byte 0x1010"), "{}", e.0);
        assert!(check(&b, 4096 + 8, 9, "x").is_err(), "pattern depends on the offset");
    }

    #[test]
    fn suite_fails_on_a_device_that_loses_writes() {
        struct Forgetful(RamDisk);
        impl BlockDevice for Forgetful {
            fn info(&self) -> DeviceInfo {
                self.0.info()
            }
            fn submit(&self, mut bio: Bio) {
                if bio.op == BioOp::Write && bio.sector == 0 {
                    bio.op = BioOp::Read; // the write never reaches the medium
                }
                self.0.submit(bio)
            }
            fn poll(&self) -> usize {
                self.0.poll()
            }
            fn in_flight(&self) -> usize {
                self.0.in_flight()
            }
        }
        let mut env = TestEnv::new(StdPlatform::arc());
        env.add_device(DEVICE, Arc::new(Forgetful(RamDisk::new(1 << 20, 512).unwrap())));
        let mut out = alloc::string::String::new();
        let s = run(SUITE, "whole_disk", &env, &mut out, &mut NoObserver);
        assert_eq!((s.passed, s.failed), (0, 1), "{out}");
        assert!(out.contains("data mismatch at device byte 0x0"), "{out}");
    }
}
