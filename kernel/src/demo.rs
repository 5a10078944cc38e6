//! `cargo xtask run`: show the system doing its job.
//!
//! Today: a disk write / read-back check on the first virtio-blk disk (first and last sector),
//! through virtio-drivers' blocking driver.

use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::platform::Platform;
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;

use crate::exit::{exit, ExitCode};
use crate::hal::KernelHal;

fn pattern(sector: u64, i: usize) -> u8 {
    (sector as usize * 31 + i * 7 + 1) as u8
}

/// Runs the demonstration and ends the run.
pub fn run(platform: &Arc<dyn Platform>) -> ! {
    let cam = crate::pci_cam();
    let Some(f) =
        crate::pci_functions().iter().find(|f| f.vendor == 0x1af4 && matches!(f.device, 0x1001 | 0x1042))
    else {
        println!("no virtio-blk disk found");
        exit(ExitCode::Fail);
    };
    let mut root = PciRoot::new(cam);
    let transport = match PciTransport::new::<KernelHal, _>(&mut root, f.df) {
        Ok(t) => t,
        Err(e) => {
            println!("virtio-blk transport: {e:?}");
            exit(ExitCode::Fail);
        }
    };
    let mut blk = match VirtIOBlk::<KernelHal, _>::new(transport) {
        Ok(b) => b,
        Err(e) => {
            println!("virtio-blk init: {e:?}");
            exit(ExitCode::Fail);
        }
    };
    let sectors = blk.capacity();
    println!("disk: virtio-blk, {} sectors ({} MiB)", sectors, (sectors * SECTOR_SIZE as u64) >> 20);
    let t0 = platform.now_ns();
    for sector in [0, sectors / 2, sectors - 1] {
        let buf: alloc::vec::Vec<u8> = (0..SECTOR_SIZE).map(|i| pattern(sector, i)).collect();
        let mut back = vec![0u8; SECTOR_SIZE];
        if let Err(e) =
            blk.write_blocks(sector as usize, &buf).and_then(|_| blk.read_blocks(sector as usize, &mut back))
        {
            println!("disk check: sector {sector}: {e:?}");
            exit(ExitCode::Fail);
        }
        if back != buf {
            println!("disk check: sector {sector} read back different data");
            exit(ExitCode::Fail);
        }
        println!("disk check: sector {sector} written and read back");
    }
    println!("disk check ok ({} us)", (platform.now_ns() - t0) / 1000);
    exit(ExitCode::Pass)
}
