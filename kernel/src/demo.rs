//! `cargo xtask run`: show the system doing its job.
//!
//! A disk write / read-back check of the first, middle and last sector of the first virtio-blk
//! disk, through Foliage's virtio-blk driver and the `BlockDevice` interface (the blocking
//! helpers submit a bio and poll for its completion).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::block::sync::{flush, read_at, write_at};
use foliage_drivers::block::{BioFlags, BlockDevice};
use foliage_drivers::platform::Platform;

use crate::disks::Disk;
use crate::exit::{exit, ExitCode};

fn pattern(offset: u64, i: usize) -> u8 {
    ((offset / 512) as usize * 31 + i * 7 + 1) as u8
}

/// Runs the demonstration and ends the run.
pub fn run(platform: &Arc<dyn Platform>, disks: &[Disk]) -> ! {
    let Some(disk) = disks.first() else {
        println!("no virtio-blk disk found");
        exit(ExitCode::Fail);
    };
    let dev: &dyn BlockDevice = &*disk.dev;
    let info = dev.info();
    let lbs = info.logical_block_size as u64;
    let size = info.capacity_bytes();
    println!(
        "disk: {} (virtio-blk), {} sectors ({} MiB), {} queue(s) of {}",
        disk.name,
        info.sectors,
        size >> 20,
        disk.dev.num_queues(),
        disk.dev.queue_stats(0).map(|s| s.size).unwrap_or(0)
    );
    let t0 = platform.now_ns();
    for offset in [0, size / 2 / lbs * lbs, size - lbs] {
        let buf: Vec<u8> = (0..lbs as usize).map(|i| pattern(offset, i)).collect();
        let mut back = vec![0u8; lbs as usize];
        let r = write_at(dev, platform, offset, &buf, BioFlags::FUA)
            .and_then(|()| flush(dev, &**platform))
            .and_then(|()| read_at(dev, platform, offset, &mut back));
        if let Err(e) = r {
            println!("disk check: sector {}: {e}", offset / 512);
            exit(ExitCode::Fail);
        }
        if back != buf {
            println!("disk check: sector {} read back different data", offset / 512);
            exit(ExitCode::Fail);
        }
        println!("disk check: sector {} written and read back", offset / 512);
    }
    let s = disk.dev.stats();
    println!(
        "disk check ok ({} us; {} bios, {} notifications)",
        (platform.now_ns() - t0) / 1000,
        s.completed,
        s.notifies
    );
    exit(ExitCode::Pass)
}
