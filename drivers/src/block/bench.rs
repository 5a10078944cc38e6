//! Block benchmarks over any [`BlockDevice`]: the workloads behind `cargo xtask bench`'s
//! `blk_*` figures, so another kernel can measure its own driver the same way.
//!
//! A [`Workload`] is an op, a request size, a queue depth and a request count, either
//! sequential or at random 4 KiB-aligned offsets, inside a region at the start of the device.
//! [`run_slice`] runs part of a workload (so a caller can interleave drivers); [`run`] prefills
//! the region and runs whole workloads, returning `(name, value, unit)` rows. Completions are
//! recorded with atomics only (no locks, no allocation per request), and the device is polled
//! the way [`wait_until`](crate::platform::wait_until) does: a [`Platform::park`] after every
//! poll that completed nothing.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `fio --rw=write --bs=1M --iodepth=32` (and `read`) | `blk_seq_*_mib_s` |
//! | `fio --rw=randwrite --bs=4k --iodepth=1/32` (and `randread`) | `blk_rand4k_*_iops_qd*` |

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Bio, BioComplete, BioEnd, BioOp, BlockDevice, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{DmaBuffer, Platform};

/// One benchmark figure: name, value, unit.
pub type Row = (String, f64, &'static str);

const MIB: u64 = 1 << 20;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// Figure name.
    pub name: &'static str,
    /// Read or write.
    pub op: BioOp,
    /// Random offsets (else sequential, wrapping in the region).
    pub random: bool,
    /// Requests in flight.
    pub depth: usize,
    /// Bytes per request.
    pub bytes: u64,
    /// Requests in the whole workload.
    pub ops: usize,
}

/// The standard workloads: sequential 1 MiB at queue depth 32, random 4 KiB at depth 1 and 32.
pub const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "blk_seq_write_mib_s",
        op: BioOp::Write,
        random: false,
        depth: 32,
        bytes: MIB,
        ops: 1024,
    },
    Workload { name: "blk_seq_read_mib_s", op: BioOp::Read, random: false, depth: 32, bytes: MIB, ops: 1024 },
    Workload {
        name: "blk_rand4k_write_iops_qd1",
        op: BioOp::Write,
        random: true,
        depth: 1,
        bytes: 4096,
        ops: 4000,
    },
    Workload {
        name: "blk_rand4k_write_iops_qd32",
        op: BioOp::Write,
        random: true,
        depth: 32,
        bytes: 4096,
        ops: 8000,
    },
    Workload {
        name: "blk_rand4k_read_iops_qd1",
        op: BioOp::Read,
        random: true,
        depth: 1,
        bytes: 4096,
        ops: 4000,
    },
    Workload {
        name: "blk_rand4k_read_iops_qd32",
        op: BioOp::Read,
        random: true,
        depth: 32,
        bytes: 4096,
        ops: 8000,
    },
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Workload {
    /// Byte offset of request `i` in a region of `region` bytes.
    pub fn offset(&self, i: usize, region: u64) -> u64 {
        if self.random {
            let blocks = (region / 4096).max(1);
            mix(i as u64 ^ (self.name.len() as u64) << 40) % blocks * 4096
        } else {
            (i as u64 * self.bytes) % region.max(self.bytes)
        }
    }

    /// The figure for `ops` requests done in `ns` nanoseconds (MiB/s or IOPS).
    pub fn figure(&self, ops: usize, ns: u64) -> f64 {
        let secs = ns.max(1) as f64 / 1e9;
        if self.random {
            ops as f64 / secs
        } else {
            (ops as u64 * self.bytes) as f64 / MIB as f64 / secs
        }
    }

    /// The figure's unit.
    pub fn unit(&self) -> &'static str {
        if self.random {
            "IOPS"
        } else {
            "MiB/s"
        }
    }
}

/// Completion flags of the in-flight slots.
struct Slots {
    busy: Vec<AtomicBool>,
    completed: AtomicUsize,
    errors: AtomicUsize,
}

impl BioComplete for Slots {
    fn complete(&self, cookie: u64, result: Result<()>) {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(b) = self.busy.get(cookie as usize) {
            b.store(false, Ordering::Release);
        }
        self.completed.fetch_add(1, Ordering::AcqRel);
    }
}

/// One buffer per request in flight, each `bytes` long, filled with a pattern.
pub fn buffers(platform: &Arc<dyn Platform>, depth: usize, bytes: u64) -> Result<Vec<DmaBuffer>> {
    let len = usize::try_from(bytes).map_err(|_| Errno::EINVAL)?;
    let mut bufs = Vec::new();
    for i in 0..depth {
        let mut b = DmaBuffer::new(platform, len)?;
        b.as_mut_slice().fill(i as u8 ^ 0xA5);
        bufs.push(b);
    }
    Ok(bufs)
}

/// Runs requests `range` of `w` in a region of `region` bytes, `w.depth` in flight, with
/// `bufs[i]` as the memory of slot `i`; returns the elapsed nanoseconds. Any I/O error fails
/// the run (`EIO`, or the error itself for a refused request).
pub fn run_slice(
    dev: &dyn BlockDevice,
    platform: &dyn Platform,
    w: &Workload,
    region: u64,
    range: Range<usize>,
    bufs: &[DmaBuffer],
) -> Result<u64> {
    if w.depth == 0 || bufs.len() < w.depth || bufs.iter().any(|b| (b.len() as u64) < w.bytes) {
        return Err(Errno::EINVAL);
    }
    let len = u32::try_from(w.bytes).map_err(|_| Errno::EINVAL)?;
    let slots = Arc::new(Slots {
        busy: (0..w.depth).map(|_| AtomicBool::new(false)).collect(),
        completed: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
    });
    let total = range.len();
    let mut next = range.start;
    let t0 = platform.now_ns();
    while slots.completed.load(Ordering::Acquire) < total {
        for (i, busy) in slots.busy.iter().enumerate() {
            if next < range.end && !busy.load(Ordering::Acquire) {
                busy.store(true, Ordering::Relaxed);
                let buf = &bufs[i];
                let virt = NonNull::new(buf.as_slice().as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
                // SAFETY: slot i's buffer is lent to one bio at a time (the busy flag) and lives
                // (borrowed by this function) until every bio has completed.
                let seg = unsafe { Segment::new(virt, buf.phys(), len) };
                let mut bio =
                    Bio::new(w.op, w.offset(next, region) / 512, BioEnd::new(slots.clone(), i as u64));
                bio.push(seg).map_err(|_| Errno::EINVAL)?;
                dev.submit(bio);
                next += 1;
            }
        }
        if dev.poll() == 0 {
            platform.park(Arc::as_ptr(&slots) as usize, &|| false);
        }
    }
    let ns = platform.now_ns() - t0;
    if slots.errors.load(Ordering::Acquire) > 0 {
        return Err(Errno::EIO);
    }
    Ok(ns)
}

/// Writes the first `region` bytes once (1 MiB requests, depth 32), so no figure pays for a
/// thin-provisioned device allocating blocks.
pub fn prefill(dev: &dyn BlockDevice, platform: &Arc<dyn Platform>, region: u64) -> Result<()> {
    let fill = Workload {
        name: "prefill",
        op: BioOp::Write,
        random: false,
        depth: 32,
        bytes: MIB,
        ops: region.div_ceil(MIB) as usize,
    };
    let bufs = buffers(platform, fill.depth, fill.bytes)?;
    run_slice(dev, &**platform, &fill, region, 0..fill.ops, &bufs).map(|_| ())
}

/// Prefills `region` bytes (a multiple of 1 MiB, within the device) and runs `workloads` once
/// each; returns one row per workload.
pub fn run(
    dev: &dyn BlockDevice,
    platform: &Arc<dyn Platform>,
    region: u64,
    workloads: &[Workload],
) -> Result<Vec<Row>> {
    if region == 0 || !region.is_multiple_of(MIB) || region > dev.info().capacity_bytes() {
        return Err(Errno::EINVAL);
    }
    prefill(dev, platform, region)?;
    let mut rows = Vec::new();
    for w in workloads {
        let bufs = buffers(platform, w.depth, w.bytes)?;
        let ns = run_slice(dev, &**platform, w, region, 0..w.ops, &bufs)?;
        rows.push((String::from(w.name), w.figure(w.ops, ns), w.unit()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use crate::platform::StdPlatform;

    #[test]
    fn rows_name_every_workload_and_the_io_happens() {
        let p = StdPlatform::arc();
        let d = RamDisk::new(8 << 20, 512).unwrap();
        let small: Vec<Workload> = WORKLOADS.iter().map(|w| Workload { ops: w.ops / 64, ..*w }).collect();
        let rows = run(&d, &p, 4 << 20, &small).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>());
        assert_eq!(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ["MiB/s", "MiB/s", "IOPS", "IOPS", "IOPS", "IOPS"]
        );
        assert!(rows.iter().all(|r| r.1.is_finite() && r.1 > 0.0), "{rows:?}");
        let s = d.stats();
        let writes: usize = small.iter().filter(|w| w.op == BioOp::Write).map(|w| w.ops).sum();
        let reads: usize = small.iter().filter(|w| w.op == BioOp::Read).map(|w| w.ops).sum();
        assert_eq!((s.writes, s.reads, s.errors), ((writes + 4) as u64, reads as u64, 0));
        assert_eq!(s.write_bytes, 4 * MIB + 16 * MIB + 62 * 4096 + 125 * 4096);
    }

    #[test]
    fn offsets_stay_inside_the_region_and_are_aligned() {
        for w in &WORKLOADS {
            for i in 0..10_000 {
                let o = w.offset(i, 256 * MIB);
                assert!(o + w.bytes <= 256 * MIB && o.is_multiple_of(4096), "{} #{i}: {o}", w.name);
            }
        }
        assert_eq!(WORKLOADS[0].offset(3, 256 * MIB), 3 * MIB);
        assert_eq!(WORKLOADS[0].offset(256, 256 * MIB), 0, "sequential wraps in the region");
    }

    #[test]
    fn errors_and_bad_arguments_fail_the_run() {
        let p = StdPlatform::arc();
        let d = RamDisk::new(2 << 20, 512).unwrap();
        assert_eq!(run(&d, &p, 3 << 20, &WORKLOADS[..1]), Err(Errno::EINVAL), "region beyond the device");
        assert_eq!(run(&d, &p, 1000, &WORKLOADS[..1]), Err(Errno::EINVAL), "region not whole MiB");
        let bufs = buffers(&p, 1, 4096).unwrap();
        let deep = Workload { depth: 2, ..WORKLOADS[2] };
        assert_eq!(
            run_slice(&d, &*p, &deep, MIB, 0..4, &bufs),
            Err(Errno::EINVAL),
            "fewer buffers than depth"
        );
        // A request the device refuses (beyond its end) fails the run.
        let beyond = Workload { random: false, bytes: 4096, ..WORKLOADS[2] };
        assert_eq!(run_slice(&d, &*p, &beyond, 4 << 20, 600..601, &bufs), Err(Errno::EIO));
    }
}
