//! `mode=bench` (`cargo xtask bench`): block benchmarks on the disk named `bench0`.
//!
//! Each figure is measured through Foliage's virtio-blk driver and then, in the same boot and on
//! the same PCI function (our driver is dropped, which resets the device), through
//! virtio-drivers' blocking `VirtIOBlk` (one request at a time: it has no queue depth to
//! offer), and printed as
//!
//! ```text
//! bench <name> <value> <unit>
//! bench virtio_drivers_<name> <value> <unit>
//! bench <name>_vs_virtio_drivers <ours / theirs> x
//! ```
//!
//! Sequential figures use 1 MiB requests at queue depth 32; random ones 4 KiB requests at a
//! random 4 KiB-aligned offset, at queue depth 1 and 32. The region is written once before
//! anything is timed, so no figure pays for the host allocating blocks of the sparse image.
//! The `_direct_desc` figures re-probe our driver without indirect descriptors (no allocation
//! per request) to show what the indirect tables cost.

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
/// Bytes moved by each sequential figure.
const SEQ_BYTES: u64 = 256 * MIB;
/// The region random I/O lands in.
const RAND_SPAN: u64 = 256 * MIB;
/// Random requests per queue-depth-1 figure.
const RAND_OPS_QD1: usize = 4000;
/// Random requests per queue-depth-32 figure.
const RAND_OPS_QD32: usize = 16000;

/// One workload.
#[derive(Clone, Copy)]
struct Load {
    name: &'static str,
    op: BioOp,
    random: bool,
    depth: usize,
    bytes: u64,
    ops: usize,
}

const LOADS: [Load; 6] = [
    Load {
        name: "blk_seq_write_mib_s",
        op: BioOp::Write,
        random: false,
        depth: 32,
        bytes: MIB,
        ops: (SEQ_BYTES / MIB) as usize,
    },
    Load {
        name: "blk_seq_read_mib_s",
        op: BioOp::Read,
        random: false,
        depth: 32,
        bytes: MIB,
        ops: (SEQ_BYTES / MIB) as usize,
    },
    Load {
        name: "blk_rand4k_write_iops_qd1",
        op: BioOp::Write,
        random: true,
        depth: 1,
        bytes: 4096,
        ops: RAND_OPS_QD1,
    },
    Load {
        name: "blk_rand4k_write_iops_qd32",
        op: BioOp::Write,
        random: true,
        depth: 32,
        bytes: 4096,
        ops: RAND_OPS_QD32,
    },
    Load {
        name: "blk_rand4k_read_iops_qd1",
        op: BioOp::Read,
        random: true,
        depth: 1,
        bytes: 4096,
        ops: RAND_OPS_QD1,
    },
    Load {
        name: "blk_rand4k_read_iops_qd32",
        op: BioOp::Read,
        random: true,
        depth: 32,
        bytes: 4096,
        ops: RAND_OPS_QD32,
    },
];

impl Load {
    fn offset(&self, i: usize) -> u64 {
        if self.random {
            mix(i as u64 ^ self.name.len() as u64) % (RAND_SPAN / 4096) * 4096
        } else {
            (i as u64 * self.bytes) % SEQ_BYTES
        }
    }

    /// The figure for `ns` nanoseconds of this load.
    fn figure(&self, ns: u64) -> (f64, &'static str) {
        let secs = ns.max(1) as f64 / 1e9;
        if self.random {
            (self.ops as f64 / secs, "IOPS")
        } else {
            ((self.ops as u64 * self.bytes) as f64 / MIB as f64 / secs, "MiB/s")
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

/// Runs `load` on `dev` with `load.depth` bios in flight; returns the elapsed nanoseconds.
fn run_ours(
    dev: &dyn BlockDevice,
    p: &Arc<dyn Platform>,
    load: &Load,
    bufs: &[DmaBuffer],
) -> Result<u64, &'static str> {
    let slots = Arc::new(Slots {
        busy: (0..load.depth).map(|_| AtomicBool::new(false)).collect(),
        completed: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
    });
    let t0 = p.now_ns();
    let mut next = 0;
    while slots.completed.load(Ordering::Acquire) < load.ops {
        for (i, busy) in slots.busy.iter().enumerate() {
            if next < load.ops && !busy.load(Ordering::Acquire) {
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
        dev.poll();
    }
    let ns = p.now_ns() - t0;
    if slots.errors.load(Ordering::Acquire) > 0 {
        return Err("I/O errors during the benchmark");
    }
    Ok(ns)
}

/// Runs `load` through virtio-drivers' blocking driver (one request at a time).
fn run_theirs(
    blk: &mut VirtIOBlk<KernelHal, PciTransport>,
    p: &dyn Platform,
    load: &Load,
    buf: &mut DmaBuffer,
) -> Result<u64, &'static str> {
    let len = load.bytes as usize;
    let t0 = p.now_ns();
    for i in 0..load.ops {
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

/// Runs the benchmarks on `bench0` and ends the run.
pub fn run(p: &Arc<dyn Platform>, disks: Vec<Disk>) -> ! {
    let Some(disk) = disks.into_iter().find(|d| d.name == "bench0") else { fail("no disk named bench0") };
    let df = disk.df;
    let need = SEQ_BYTES.max(RAND_SPAN);
    if disk.dev.info().capacity_bytes() < need {
        fail("bench0 is too small");
    }
    let mut bufs = Vec::new();
    for _ in 0..32 {
        bufs.push(DmaBuffer::new(p, MIB as usize).unwrap_or_else(|_| fail("out of DMA memory")));
    }
    for (i, b) in bufs.iter_mut().enumerate() {
        b.as_mut_slice().fill(i as u8 ^ 0xA5);
    }
    // Write the whole region once, untimed.
    let fill = Load {
        name: "fill",
        op: BioOp::Write,
        random: false,
        depth: 32,
        bytes: MIB,
        ops: (need / MIB) as usize,
    };
    if let Err(e) = run_ours(&*disk.dev, p, &fill, &bufs) {
        fail(e);
    }
    let mut ours = [0.0f64; LOADS.len()];
    let mut units = [""; LOADS.len()];
    for (k, load) in LOADS.iter().enumerate() {
        match run_ours(&*disk.dev, p, load, &bufs) {
            Ok(ns) => (ours[k], units[k]) = load.figure(ns),
            Err(e) => fail(e),
        }
        print(load.name, ours[k], units[k]);
    }
    // The same device without indirect descriptors (no per-request allocation). Dropping the
    // only handle resets the device.
    if Arc::try_unwrap(disk.dev).is_err() {
        fail("bench0's driver is still shared");
    }
    let direct = virtio::probe::<KernelHal, _>(
        crate::pci_cam(),
        df,
        p.clone(),
        Options { indirect: false, ..Options::default() },
    )
    .unwrap_or_else(|_| fail("re-probe without indirect descriptors"));
    for load in LOADS.iter().filter(|l| l.random && l.depth > 1) {
        match run_ours(&direct, p, load, &bufs) {
            Ok(ns) => {
                let (v, unit) = load.figure(ns);
                print(&alloc::format!("{}_direct_desc", load.name), v, unit);
            }
            Err(e) => fail(e),
        }
    }
    drop(direct);
    // virtio-drivers' own driver on the same function.
    let mut root = PciRoot::new(crate::pci_cam());
    let transport =
        PciTransport::new::<KernelHal, _>(&mut root, df).unwrap_or_else(|_| fail("virtio-drivers transport"));
    let mut blk =
        VirtIOBlk::<KernelHal, _>::new(transport).unwrap_or_else(|_| fail("virtio-drivers VirtIOBlk"));
    // It polls for completion too; the device need not raise interrupts nobody takes.
    blk.disable_interrupts();
    let mut buf = bufs.pop().unwrap_or_else(|| fail("no buffer"));
    for (k, load) in LOADS.iter().enumerate() {
        let theirs = match run_theirs(&mut blk, &**p, load, &mut buf) {
            Ok(ns) => load.figure(ns).0,
            Err(e) => fail(e),
        };
        print(&alloc::format!("virtio_drivers_{}", load.name), theirs, units[k]);
        print(
            &alloc::format!("{}_vs_virtio_drivers", load.name),
            ours[k] / theirs.max(f64::MIN_POSITIVE),
            "x",
        );
    }
    exit(ExitCode::Pass)
}
