//! The Foliage kernel: a small x86_64 kernel that boots under QEMU (PVH), brings up memory, the
//! console, the clock and PCI, and then runs the demonstration (`cargo xtask run`), the self-test
//! suites (`cargo xtask test`), the benchmarks (`cargo xtask bench`) or op-log replays
//! (`cargo xtask replay`).
//!
//! It is built for the host target (`x86_64-unknown-linux-gnu`) as a freestanding static ELF:
//! see `build.rs` for the link arguments and `qemu/kernel.ld` for the layout. It also serves as
//! the reference port: `platform.rs` is the whole `Platform` a kernel supplies.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[macro_use]
mod serial;
mod arch;
mod bench;
mod boot;
mod cmdline;
mod demo;
mod disks;
mod exit;
mod hal;
mod io;
mod ktest;
mod libc;
mod mem;
mod pci;
mod platform;
mod pvh;
mod replay;
mod time;

use alloc::vec::Vec;

use foliage_drivers::selftest::TestEnv;

use crate::exit::{exit, ExitCode};

static PCI: spin::Once<(pci::Cam, Vec<pci::PciFunction>)> = spin::Once::new();

/// The PCI functions found at boot.
pub fn pci_functions() -> &'static [pci::PciFunction] {
    PCI.get().map(|(_, f)| f.as_slice()).unwrap_or(&[])
}

/// The configuration access mechanism found at boot.
pub fn pci_cam() -> pci::Cam {
    PCI.get().map(|(c, _)| *c).unwrap_or(pci::Cam::PortIo)
}

#[no_mangle]
extern "C" fn kernel_main(start_info: u64) -> ! {
    serial::init();
    arch::gdt::init();
    arch::idt::init();
    let Some(boot) = pvh::parse(start_info) else {
        println!("no PVH start info at {start_info:#x}: cannot find memory");
        exit(ExitCode::Fail);
    };
    let Some(layout) = mem::init(boot.memmap) else {
        println!("no usable memory region in the memory map");
        exit(ExitCode::Fail);
    };
    let tsc_hz = time::init();
    let cmd = cmdline::parse(boot.cmdline);
    println!("Foliage kernel {} (x86_64, PVH)", env!("CARGO_PKG_VERSION"));
    println!("command line: {:?}", boot.cmdline);
    println!("TSC: {} MHz", tsc_hz / 1_000_000);
    println!("memory map:");
    for e in boot.memmap {
        println!("  {:#012x}-{:#012x} {:>9} KiB {}", e.addr, e.addr + e.size, e.size / 1024, e.kind_name());
    }
    println!(
        "heap {} MiB at {:#x}, page frames {} MiB at {:#x} ({} MiB usable)",
        (layout.heap.1 - layout.heap.0) >> 20,
        layout.heap.0,
        (layout.frames.1 - layout.frames.0) >> 20,
        layout.frames.0,
        layout.usable_bytes >> 20
    );
    let cam = pci::detect_cam();
    let functions = pci::enumerate(cam);
    println!("PCI ({:?}): {} functions", cam, functions.len());
    for f in &functions {
        let assigned = if f.vendor == 0x1af4 { pci::assign_bars(cam, f.df) } else { 0 };
        println!(
            "  {:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x} {}{}",
            f.df.bus,
            f.df.device,
            f.df.function,
            f.vendor,
            f.device,
            f.class,
            f.subclass,
            f.describe(),
            if assigned > 0 { " (BARs assigned)" } else { "" }
        );
    }
    PCI.call_once(|| (cam, functions));
    let platform = platform::KernelPlatform::arc(&layout);
    let found = disks::discover(&platform);
    disks::describe(&found);
    if cmd.mode == cmdline::Mode::Bench {
        bench::run(&platform, found, cmd.filter);
    }
    let installed = disks::install(found);
    if cmd.blkirq {
        for d in installed {
            match disks::enable_interrupts(d) {
                Ok(()) => println!("disk {}: completion by interrupt", d.name),
                Err(e) => println!("disk {}: interrupts not available: {e}", d.name),
            }
        }
    }
    match cmd.mode {
        cmdline::Mode::Test => {
            let mut env = TestEnv::new(platform);
            disks::add_to(&mut env, installed);
            ktest::main(cmd.filter, &env, ktest::Tables { selfcheck: cmd.selfcheck, blkdebug: cmd.blkdebug })
        }
        cmdline::Mode::Replay => replay::run(&platform),
        cmdline::Mode::Run | cmdline::Mode::Bench => demo::run(&platform, installed, cache_budget(&layout)),
    }
}

/// The page-cache budget of a mount: a quarter of the page-frame memory, 16 MiB to 256 MiB.
fn cache_budget(layout: &mem::Layout) -> u64 {
    ((layout.frames.1 - layout.frames.0) / 4).clamp(16 << 20, 256 << 20)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::force_write(format_args!("\nPANIC: {info}\n"));
    ktest::report_abort("panic");
    exit(ExitCode::Panic)
}
