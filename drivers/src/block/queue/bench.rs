//! Request-layer benchmarks: the cost the queue adds per bio, and what merging and splitting
//! do, over a RamDisk (so the figures are the layer's own overhead plus a memcpy).
//!
//! [`run`] returns `(name, value, unit)` rows for `cargo xtask bench`. Timing uses
//! [`Platform::now_ns`]; memory comes from [`DmaBuffer`]s, so this runs in the kernel too.
//!
//! | row | what |
//! |---|---|
//! | `queue.rand4k.bios_per_s` | 4 KiB writes at scattered sectors, 32 in flight, depth 32: no merging |
//! | `queue.seq4k_plugged.bios_per_request` | 4 KiB sequential writes under a plug, 128 KiB requests |
//! | `queue.seq4k_plugged.bios_per_s` | the same, bios per second |
//! | `queue.split1m.mib_per_s` | 1 MiB writes split into 64 KiB requests |
//! | `ramdisk.rand4k.bios_per_s` | the RamDisk alone, for reference |

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::Queue;
use crate::block::{Bio, BioComplete, BioEnd, BioOp, BlockDevice, RamDisk, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{DmaBuffer, Platform};

/// Counts completions and errors.
#[derive(Default)]
struct Counter {
    done: AtomicUsize,
    errors: AtomicUsize,
}

impl BioComplete for Counter {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.done.fetch_add(1, Ordering::Release);
    }
}

/// A bio writing `len` bytes of `buf` at `sector`.
fn write_bio(buf: &DmaBuffer, len: usize, sector: u64, end: BioEnd) -> Result<Bio> {
    let virt = NonNull::new(buf.as_slice().as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
    // SAFETY: `buf` outlives every bio built on it (each run drains the device before
    // returning), is DMA-able at `buf.phys()`, and nothing writes it while bios are in flight.
    let seg = unsafe { Segment::new(virt, buf.phys(), len as u32) };
    let mut bio = Bio::new(BioOp::Write, sector, end);
    bio.push(seg).map_err(|_| Errno::EINVAL)?;
    Ok(bio)
}

/// Submits `n` bios from `make`, keeping at most `window` in flight; returns elapsed ns.
fn pump(
    dev: &dyn BlockDevice,
    platform: &dyn Platform,
    n: usize,
    window: usize,
    mut make: impl FnMut(usize, BioEnd) -> Result<Bio>,
) -> Result<u64> {
    let counter = Arc::new(Counter::default());
    let target: Arc<dyn BioComplete> = counter.clone();
    let start = platform.now_ns();
    let mut submitted = 0;
    while counter.done.load(Ordering::Acquire) < n {
        while submitted < n && submitted - counter.done.load(Ordering::Acquire) < window {
            dev.submit(make(submitted, BioEnd::new(target.clone(), submitted as u64))?);
            submitted += 1;
        }
        dev.poll();
    }
    let elapsed = platform.now_ns().saturating_sub(start).max(1);
    if counter.errors.load(Ordering::Acquire) != 0 {
        return Err(Errno::EIO);
    }
    Ok(elapsed)
}

fn per_s(count: usize, ns: u64) -> f64 {
    count as f64 * 1e9 / ns as f64
}

fn disk(bytes: u64, f: impl FnOnce(&mut crate::block::DeviceInfo)) -> Result<Arc<RamDisk>> {
    let mut d = RamDisk::new(bytes, 512)?;
    let mut info = d.info();
    f(&mut info);
    d.set_info(info);
    Ok(Arc::new(d))
}

/// How much work each benchmark does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchSize {
    /// 4 KiB bios in the random-write runs.
    pub rand4k_bios: usize,
    /// Plugged batches of 256 sequential 4 KiB bios.
    pub plugged_batches: usize,
    /// 1 MiB bios in the split run.
    pub split_bios: usize,
}

impl BenchSize {
    /// The sizes `cargo xtask bench` uses.
    pub const STANDARD: Self = Self { rand4k_bios: 20_000, plugged_batches: 80, split_bios: 400 };
}

/// Runs every benchmark and returns `(name, value, unit)` rows (see the module table).
pub fn run(platform: &Arc<dyn Platform>, size: BenchSize) -> Result<Vec<(&'static str, f64, &'static str)>> {
    let mut rows = Vec::new();
    let buf = DmaBuffer::new(platform, 1 << 20)?;
    let disk_bytes = 64 << 20;
    let scatter = |i: usize| (i as u64).wrapping_mul(2_654_435_761) % ((disk_bytes / 4096) - 1) * 8;

    // Random 4 KiB writes through the queue, and on the bare RamDisk.
    let n = size.rand4k_bios.max(1);
    let d = disk(disk_bytes, |i| i.queue_depth = 32)?;
    let q = Queue::new(d.clone());
    let ns = pump(&q, &**platform, n, 32, |i, end| write_bio(&buf, 4096, scatter(i), end))?;
    rows.push(("queue.rand4k.bios_per_s", per_s(n, ns), "bios/s"));
    let ns = pump(&*d, &**platform, n, 32, |i, end| write_bio(&buf, 4096, scatter(i), end))?;
    rows.push(("ramdisk.rand4k.bios_per_s", per_s(n, ns), "bios/s"));

    // Sequential 4 KiB writes under a plug, batches of 256.
    let d = disk(disk_bytes, |i| i.max_request_bytes = 128 << 10)?;
    let q = Queue::new(d.clone());
    let batches = size.plugged_batches.max(1);
    let counter = Arc::new(Counter::default());
    let target: Arc<dyn BioComplete> = counter.clone();
    let start = platform.now_ns();
    for b in 0..batches {
        let _plug = q.plug();
        for i in 0..256 {
            let sector = ((b * 256 + i) as u64 * 8) % (disk_bytes / 512 - 8);
            q.submit(write_bio(&buf, 4096, sector, BioEnd::new(target.clone(), 0))?);
        }
    }
    while counter.done.load(Ordering::Acquire) < batches * 256 {
        q.poll();
    }
    let ns = platform.now_ns().saturating_sub(start).max(1);
    let requests = q.stats().requests.max(1);
    rows.push(("queue.seq4k_plugged.bios_per_request", (batches * 256) as f64 / requests as f64, "bios"));
    rows.push(("queue.seq4k_plugged.bios_per_s", per_s(batches * 256, ns), "bios/s"));

    // 1 MiB writes split to 64 KiB requests.
    let d = disk(disk_bytes, |i| i.max_request_bytes = 64 << 10)?;
    let q = Queue::new(d);
    let n = size.split_bios.max(1);
    let ns = pump(&q, &**platform, n, 4, |i, end| write_bio(&buf, 1 << 20, (i as u64 % 60) * 2048, end))?;
    rows.push(("queue.split1m.mib_per_s", per_s(n, ns), "MiB/s"));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::StdPlatform;

    #[test]
    fn bench_rows_are_complete_and_merging_is_measured() {
        let size = BenchSize { rand4k_bios: 300, plugged_batches: 3, split_bios: 6 };
        let rows = run(&StdPlatform::arc(), size).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "queue.rand4k.bios_per_s",
                "ramdisk.rand4k.bios_per_s",
                "queue.seq4k_plugged.bios_per_request",
                "queue.seq4k_plugged.bios_per_s",
                "queue.split1m.mib_per_s",
            ]
        );
        assert_eq!(rows[2].1, 32.0, "256 plugged 4 KiB bios make eight 128 KiB requests");
        assert!(rows.iter().all(|r| r.1 > 0.0));
    }
}
