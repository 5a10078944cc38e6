//! `mode=bench` (`cargo xtask bench`): block benchmarks, Foliage's virtio-blk driver against
//! virtio-drivers' blocking `VirtIOBlk`, in the same boot.
//!
//! xtask attaches three identical disks: `bench0` (Foliage's driver), `bench1` (virtio-drivers'
//! `VirtIOBlk`, probed here on that PCI function) and `bench2` (Foliage's driver without
//! indirect descriptors, i.e. without virtio-drivers' per-request allocation). Every disk's
//! region is written once before anything is timed (no figure pays for the host allocating
//! blocks of a sparse image). Each workload then runs in [`ROUNDS`] interleaved slices (ours,
//! theirs, ours without indirect; the order rotates every round) and each driver's figure is
//! its total work over its total time, so load from elsewhere on the host hits all of them
//! alike.
//!
//! Sequential workloads: 1 MiB requests at queue depth 32; random: 4 KiB requests at random
//! 4 KiB-aligned offsets at queue depth 1 and 32. `VirtIOBlk` is blocking, so it always runs at
//! depth 1. Output, one line each:
//!
//! ```text
//! bench <name> <value> <unit>
//! bench virtio_drivers_<name> <value> <unit>
//! bench <name>_vs_virtio_drivers <ours / theirs> x
//! bench <name>_direct_desc <value> <unit>          (queue depth 32 random workloads only)
//! ```

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use foliage_drivers::block::{Bio, BioComplete, BioEnd, BioOp, BlockDevice, Segment};
use foliage_drivers::platform::{DmaBuffer, Platform};
use foliage_drivers::virtio::{self, Options};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;

use crate::disks::Disk;
use crate::exit::{exit, ExitCode};
use crate::hal::KernelHal;

const MIB: u64 = 1 << 20;
/// The region every workload stays in (written once before timing).
const REGION: u64 = 256 * MIB;
/// Slices per workload and driver.
const ROUNDS: usize = 16;
/// Most requests in flight.
const DEPTH: usize = 32;

/// One workload.
#[derive(Clone, Copy)]
struct Load {
    name: &'static str,
    op: BioOp,
    random: bool,
    depth: usize,
    bytes: u64,
    /// Requests per driver, over all rounds.
    ops: usize,
}

const LOADS: [Load; 6] = [
    Load { name: "blk_seq_write_mib_s", op: BioOp::Write, random: false, depth: 32, bytes: MIB, ops: 1024 },
    Load { name: "blk_seq_read_mib_s", op: BioOp::Read, random: false, depth: 32, bytes: MIB, ops: 1024 },
    Load {
        name: "blk_rand4k_write_iops_qd1",
        op: BioOp::Write,
        random: true,
        depth: 1,
        bytes: 4096,
        ops: 4000,
    },
    Load {
        name: "blk_rand4k_write_iops_qd32",
        op: BioOp::Write,
        random: true,
        depth: 32,
        bytes: 4096,
        ops: 8000,
    },
    Load {
        name: "blk_rand4k_read_iops_qd1",
        op: BioOp::Read,
        random: true,
        depth: 1,
        bytes: 4096,
        ops: 4000,
    },
    Load {
        name: "blk_rand4k_read_iops_qd32",
        op: BioOp::Read,
        random: true,
        depth: 32,
        bytes: 4096,
        ops: 8000,
    },
];

impl Load {
    /// Byte offset of request `i`.
    fn offset(&self, i: usize) -> u64 {
        if self.random {
            mix(i as u64 ^ (self.name.len() as u64) << 40) % (REGION / 4096) * 4096
        } else {
            (i as u64 * self.bytes) % REGION
        }
    }

    /// The figure for `ops` requests in `ns` nanoseconds.
    fn figure(&self, ops: usize, ns: u64) -> f64 {
        let secs = ns.max(1) as f64 / 1e9;
        if self.random {
            ops as f64 / secs
        } else {
            (ops as u64 * self.bytes) as f64 / MIB as f64 / secs
        }
    }

    fn unit(&self) -> &'static str {
        if self.random {
            "IOPS"
        } else {
            "MiB/s"
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Completion flags of the in-flight slots.
struct Slots {
    busy: Vec<AtomicBool>,
    completed: AtomicUsize,
    errors: AtomicUsize,
}

impl BioComplete for Slots {
    fn complete(&self, cookie: u64, result: foliage_drivers::Result<()>) {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(b) = self.busy.get(cookie as usize) {
            b.store(false, Ordering::Release);
        }
        self.completed.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs requests `range` of `load` on `dev`, `load.depth` in flight; returns the nanoseconds.
fn run_ours(
    dev: &dyn BlockDevice,
    p: &dyn Platform,
    load: &Load,
    range: core::ops::Range<usize>,
    bufs: &[DmaBuffer],
) -> Result<u64, &'static str> {
    let slots = Arc::new(Slots {
        busy: (0..load.depth).map(|_| AtomicBool::new(false)).collect(),
        completed: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
    });
    let total = range.len();
    let mut next = range.start;
    let t0 = p.now_ns();
    while slots.completed.load(Ordering::Acquire) < total {
        for (i, busy) in slots.busy.iter().enumerate() {
            if next < range.end && !busy.load(Ordering::Acquire) {
                busy.store(true, Ordering::Relaxed);
                let buf = &bufs[i];
                let virt = NonNull::new(buf.as_slice().as_ptr() as *mut u8).ok_or("null buffer")?;
                // SAFETY: slot i's buffer is not reused until its bio completes (busy flag).
                let seg = unsafe { Segment::new(virt, buf.phys(), load.bytes as u32) };
                let mut bio =
                    Bio::new(load.op, load.offset(next) / 512, BioEnd::new(slots.clone(), i as u64));
                bio.push(seg).map_err(|_| "segment")?;
                dev.submit(bio);
                next += 1;
            }
        }
        // Poll as `wait_until` does: a pause between empty polls (under TCG it also lets QEMU's
        // own threads run).
        if dev.poll() == 0 {
            p.park(0, &|| false);
        }
    }
    let ns = p.now_ns() - t0;
    if slots.errors.load(Ordering::Acquire) > 0 {
        return Err("I/O errors during the benchmark");
    }
    Ok(ns)
}

/// Runs requests `range` of `load` through virtio-drivers' blocking driver.
fn run_theirs(
    blk: &mut VirtIOBlk<KernelHal, PciTransport>,
    p: &dyn Platform,
    load: &Load,
    range: core::ops::Range<usize>,
    buf: &mut DmaBuffer,
) -> Result<u64, &'static str> {
    let len = load.bytes as usize;
    let t0 = p.now_ns();
    for i in range {
        let block = (load.offset(i) / 512) as usize;
        let r = match load.op {
            BioOp::Write => blk.write_blocks(block, &buf.as_slice()[..len]),
            _ => blk.read_blocks(block, &mut buf.as_mut_slice()[..len]),
        };
        r.map_err(|_| "virtio-drivers I/O error")?;
    }
    Ok(p.now_ns() - t0)
}

fn print(name: &str, value: f64, unit: &str) {
    println!("bench {name} {value:.3} {unit}");
}

fn fail(what: &str) -> ! {
    println!("bench: {what}");
    exit(ExitCode::Fail)
}

fn take(disks: &mut Vec<Disk>, name: &str) -> Disk {
    match disks.iter().position(|d| d.name == name) {
        Some(i) => disks.swap_remove(i),
        None => fail(&format!("no disk named {name}")),
    }
}

/// Runs the benchmarks and ends the run.
pub fn run(p: &Arc<dyn Platform>, mut disks: Vec<Disk>) -> ! {
    let ours = take(&mut disks, "bench0");
    let theirs_disk = take(&mut disks, "bench1");
    let bench2 = take(&mut disks, "bench2");
    let mut bufs = Vec::new();
    for i in 0..DEPTH {
        let mut b = DmaBuffer::new(p, MIB as usize).unwrap_or_else(|_| fail("out of DMA memory"));
        b.as_mut_slice().fill(i as u8 ^ 0xA5);
        bufs.push(b);
    }
    // bench2 without indirect descriptors: drop the default driver (resets the device) first.
    let direct_df = bench2.df;
    if Arc::try_unwrap(bench2.dev).is_err() {
        fail("bench2's driver is still shared");
    }
    let direct = virtio::probe::<KernelHal, _>(
        crate::pci_cam(),
        direct_df,
        p.clone(),
        Options { indirect: false, ..Options::default() },
    )
    .unwrap_or_else(|_| fail("probing bench2 without indirect descriptors"));
    // bench1 through virtio-drivers: our driver instance must be gone (reset) first.
    let theirs_df = theirs_disk.df;
    if Arc::try_unwrap(theirs_disk.dev).is_err() {
        fail("bench1's driver is still shared");
    }
    let mut root = PciRoot::new(crate::pci_cam());
    let transport = PciTransport::new::<KernelHal, _>(&mut root, theirs_df)
        .unwrap_or_else(|_| fail("virtio-drivers transport"));
    let mut theirs =
        VirtIOBlk::<KernelHal, _>::new(transport).unwrap_or_else(|_| fail("virtio-drivers VirtIOBlk"));
    // It polls for completion like ours; the device need not raise interrupts nobody takes.
    theirs.disable_interrupts();
    let mut their_buf = DmaBuffer::new(p, MIB as usize).unwrap_or_else(|_| fail("out of DMA memory"));
    // Write every region once, untimed.
    let fill = Load {
        name: "fill",
        op: BioOp::Write,
        random: false,
        depth: DEPTH,
        bytes: MIB,
        ops: (REGION / MIB) as usize,
    };
    for dev in [&*ours.dev as &dyn BlockDevice, &direct] {
        if let Err(e) = run_ours(dev, &**p, &fill, 0..fill.ops, &bufs) {
            fail(e);
        }
    }
    if let Err(e) = run_theirs(&mut theirs, &**p, &fill, 0..fill.ops, &mut their_buf) {
        fail(e);
    }
    for load in &LOADS {
        let (mut t_ours, mut t_theirs, mut t_direct) = (0u64, 0u64, 0u64);
        let per = load.ops / ROUNDS;
        for r in 0..ROUNDS {
            let range = r * per..(r + 1) * per;
            // Rotate who goes first, so whatever one slice leaves behind in QEMU or the host
            // (busy worker threads, page cache) favours no driver.
            for k in 0..3 {
                let range = range.clone();
                match (k + r) % 3 {
                    0 => t_ours += run_ours(&*ours.dev, &**p, load, range, &bufs).unwrap_or_else(|e| fail(e)),
                    1 => {
                        t_theirs += run_theirs(&mut theirs, &**p, load, range, &mut their_buf)
                            .unwrap_or_else(|e| fail(e))
                    }
                    _ if load.random && load.depth > 1 => {
                        t_direct += run_ours(&direct, &**p, load, range, &bufs).unwrap_or_else(|e| fail(e))
                    }
                    _ => {}
                }
            }
        }
        let n = per * ROUNDS;
        let (a, b) = (load.figure(n, t_ours), load.figure(n, t_theirs));
        print(load.name, a, load.unit());
        print(&format!("virtio_drivers_{}", load.name), b, load.unit());
        print(&format!("{}_vs_virtio_drivers", load.name), a / b.max(f64::MIN_POSITIVE), "x");
        if t_direct > 0 {
            print(&format!("{}_direct_desc", load.name), load.figure(n, t_direct), load.unit());
        }
    }
    exit(ExitCode::Pass)
}
