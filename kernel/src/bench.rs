//! `mode=bench` (`cargo xtask bench`): block benchmarks, Foliage's virtio-blk driver against
//! virtio-drivers' blocking `VirtIOBlk`, in the same boot.
//!
//! The workloads are the portable ones in `foliage_drivers::block::bench` (sequential 1 MiB at
//! queue depth 32, random 4 KiB at depth 1 and 32). xtask attaches three identical disks:
//! `bench0` (Foliage's driver), `bench1` (virtio-drivers' `VirtIOBlk`, probed here on that PCI
//! function) and `bench2` (Foliage's driver without indirect descriptors, i.e. without
//! virtio-drivers' per-request allocation). Every disk's region is written once before anything
//! is timed. Each workload then runs in [`ROUNDS`] interleaved slices (ours, theirs, ours
//! without indirect; the order rotates every round) and each driver's figure is its total work
//! over its total time, so load from elsewhere on the host hits all of them alike.
//! `VirtIOBlk` is blocking, so it always runs at depth 1. Output, one line each:
//!
//! ```text
//! bench <name> <value> <unit>
//! bench virtio_drivers_<name> <value> <unit>
//! bench <name>_vs_virtio_drivers <ours / theirs> x
//! bench <name>_direct_desc <value> <unit>          (queue depth 32 random workloads only)
//! ```
//!
//! Then the iomap engine's direct-I/O and copy-on-write figures on `bench0`
//! (`foliage_fs::iomap::bench_dio`: `direct_write_seq_mib_s`, `direct_read_seq_mib_s`,
//! `direct_write_rand4k_iops_qd1`, `direct_write_rand4k_iops_qd32`, `cow_write_after_clone_mib_s`,
//! the cached-read pair, `raw_seq_*_qd32_mib_s` measured in rounds interleaved with the direct
//! ones on the same driver, and `direct_*_seq_mib_s_vs_blk` against those). The test filesystem
//! is formatted over the disk after the block workloads are done with it. The iomap engine's
//! buffered figures (`foliage_fs::iomap::bench`) run before them on the same disk, and the
//! filesystem's (`foliage_fs::vfs::bench`: frond formatted over all of `bench0`, `fs_*` rows)
//! after them.
//!
//! `filter=SECTIONS` (from `cargo xtask bench SECTIONS`) runs only the named sections, a comma
//! separated list of `blk` (the driver workloads), `iomap` (buffered), `dio` (direct I/O and
//! COW) and `fs` (the file API); empty runs all. Each section sets up the device state its
//! figures compare (its own prefill), so a section alone measures what it measures in a full
//! run.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use foliage_drivers::block::bench::{buffers, prefill, run_slice, Workload, WORKLOADS};
use foliage_drivers::block::queue::Queue;
use foliage_drivers::block::{BioOp, BlockDevice};
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

/// Runs requests `range` of `w` through virtio-drivers' blocking driver.
fn run_theirs(
    blk: &mut VirtIOBlk<KernelHal, PciTransport>,
    p: &dyn Platform,
    w: &Workload,
    range: Range<usize>,
    buf: &mut DmaBuffer,
) -> Result<u64, &'static str> {
    let len = w.bytes as usize;
    let t0 = p.now_ns();
    for i in range {
        let block = (w.offset(i, REGION) / 512) as usize;
        let r = match w.op {
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

/// The PCI function of `disk`, with its driver instance gone (which resets the device).
fn release(disk: Disk) -> virtio_drivers::transport::pci::bus::DeviceFunction {
    let df = disk.df;
    if Arc::try_unwrap(disk.dev).is_err() {
        fail(&format!("{}'s driver is still shared", disk.name));
    }
    df
}

/// True when section `name` is selected by `filter` (a comma separated list; empty selects all).
fn selected(filter: &str, name: &str) -> bool {
    filter.is_empty() || filter.split(',').any(|f| f == name)
}

/// Runs the benchmark sections `filter` selects (see the module docs) and ends the run.
pub fn run(p: &Arc<dyn Platform>, mut disks: Vec<Disk>, filter: &str) -> ! {
    let ours = take(&mut disks, "bench0");
    let theirs_df = release(take(&mut disks, "bench1"));
    let direct_df = release(take(&mut disks, "bench2"));
    let direct = virtio::probe::<KernelHal, _>(
        crate::pci_cam(),
        direct_df,
        p.clone(),
        Options { indirect: false, ..Options::default() },
    )
    .unwrap_or_else(|_| fail("probing bench2 without indirect descriptors"));
    let mut root = PciRoot::new(crate::pci_cam());
    let transport = PciTransport::new::<KernelHal, _>(&mut root, theirs_df)
        .unwrap_or_else(|_| fail("virtio-drivers transport"));
    let mut theirs =
        VirtIOBlk::<KernelHal, _>::new(transport).unwrap_or_else(|_| fail("virtio-drivers VirtIOBlk"));
    // It polls for completion like ours; the device need not raise interrupts nobody takes.
    theirs.disable_interrupts();
    if selected(filter, "blk") {
        block_workloads(p, &ours, &direct, &mut theirs);
    }
    drop(theirs);
    drop(direct);
    if selected(filter, "iomap") {
        // The buffered engine over the same disk (its test filesystem, behind the request queue).
        let queue: Arc<dyn BlockDevice> = Arc::new(Queue::new(ours.dev.clone() as Arc<dyn BlockDevice>));
        match foliage_fs::iomap::bench::bench(p, queue) {
            Ok(rows) => rows.iter().for_each(|(name, value, unit)| print(name, *value, unit)),
            Err(e) => fail(&format!("iomap bench: {e}")),
        }
    }
    if selected(filter, "dio") {
        // Direct I/O and copy on write through the iomap engine on bench0 (Foliage's driver),
        // with its ratios against raw rounds on the same driver interleaved with the direct ones.
        match foliage_fs::iomap::bench_dio::dio_bench(p, ours.dev.clone() as Arc<dyn BlockDevice>) {
            Ok(rows) => rows.iter().for_each(|(name, value, unit)| print(name, *value, unit)),
            Err(e) => fail(&format!("direct I/O benchmarks: {e}")),
        }
    }
    if selected(filter, "fs") {
        // The filesystem through the file API (frond formatted over the whole disk).
        match foliage_fs::vfs::bench::bench(p, ours.dev.clone() as Arc<dyn BlockDevice>) {
            Ok(rows) => rows.iter().for_each(|(name, value, unit)| print(name, *value, unit)),
            Err(e) => fail(&format!("fs bench: {e}")),
        }
    }
    exit(ExitCode::Pass)
}

/// The driver workloads on bench0 (ours), bench1 (theirs) and bench2 (ours without indirect
/// descriptors), each region written once first.
fn block_workloads(
    p: &Arc<dyn Platform>,
    ours: &Disk,
    direct: &dyn BlockDevice,
    theirs: &mut VirtIOBlk<KernelHal, PciTransport>,
) {
    let bufs = buffers(p, 32, MIB).unwrap_or_else(|_| fail("out of DMA memory"));
    let mut their_buf = DmaBuffer::new(p, MIB as usize).unwrap_or_else(|_| fail("out of DMA memory"));
    for dev in [&*ours.dev as &dyn BlockDevice, direct] {
        prefill(dev, p, REGION).unwrap_or_else(|_| fail("prefill"));
    }
    let fill = Workload {
        name: "prefill",
        op: BioOp::Write,
        random: false,
        depth: 1,
        bytes: MIB,
        ops: (REGION / MIB) as usize,
    };
    run_theirs(theirs, &**p, &fill, 0..fill.ops, &mut their_buf).unwrap_or_else(|e| fail(e));
    for w in &WORKLOADS {
        let (mut t_ours, mut t_theirs, mut t_direct) = (0u64, 0u64, 0u64);
        let per = w.ops / ROUNDS;
        let with_direct = w.random && w.depth > 1;
        for r in 0..ROUNDS {
            // Rotate who goes first, so whatever one slice leaves behind in QEMU or the host
            // (busy worker threads, page cache) favours no driver.
            for k in 0..3 {
                let range = r * per..(r + 1) * per;
                match (k + r) % 3 {
                    0 => {
                        t_ours += run_slice(&*ours.dev, &**p, w, REGION, range, &bufs)
                            .unwrap_or_else(|_| fail(w.name))
                    }
                    1 => {
                        t_theirs +=
                            run_theirs(theirs, &**p, w, range, &mut their_buf).unwrap_or_else(|e| fail(e))
                    }
                    _ if with_direct => {
                        t_direct +=
                            run_slice(direct, &**p, w, REGION, range, &bufs).unwrap_or_else(|_| fail(w.name))
                    }
                    _ => {}
                }
            }
        }
        let n = per * ROUNDS;
        let (a, b) = (w.figure(n, t_ours), w.figure(n, t_theirs));
        print(w.name, a, w.unit());
        print(&format!("virtio_drivers_{}", w.name), b, w.unit());
        print(&format!("{}_vs_virtio_drivers", w.name), a / b.max(f64::MIN_POSITIVE), "x");
        if with_direct {
            print(&format!("{}_direct_desc", w.name), w.figure(n, t_direct), w.unit());
        }
    }
}
