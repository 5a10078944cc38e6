//! Disk discovery: every virtio-blk PCI function becomes a [`VirtioBlk`] driver instance named
//! by its GET_ID serial (`virtio-<bus>:<dev>.<fn>` when it has none), and the interrupt
//! plumbing that switches those drivers to interrupt-driven completion.
//!
//! Each hardware queue of each disk is given one of the device-interrupt vectors at discovery
//! (round-robin over the 15 usable ones; queues may share a vector). The vector's handler asks
//! every queue routed to it to reap; a driver whose interrupts are off ignores nothing (reaping
//! an idle queue is cheap), so sharing is always safe.
//!
//! Lock order: the registry is written once, before any interrupt can fire, and read without a
//! lock afterwards (including from interrupt handlers).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use foliage_drivers::block::BlockDevice;
use foliage_drivers::platform::Platform;
use foliage_drivers::virtio::{self, Options, VirtioBlk};
use foliage_drivers::Errno;
use virtio_drivers::transport::pci::bus::DeviceFunction;
use virtio_drivers::transport::pci::PciTransport;

use crate::arch::{apic, idt};
use crate::hal::KernelHal;

/// The driver type of a discovered disk.
pub type Driver = VirtioBlk<PciTransport>;

/// One discovered disk.
pub struct Disk {
    /// Its name (the GET_ID serial).
    pub name: String,
    /// The driver.
    pub dev: Arc<Driver>,
    /// Its PCI function.
    pub df: DeviceFunction,
    /// Device-interrupt vector index (0-based from `IRQ_BASE`) of each hardware queue.
    pub vectors: Vec<u8>,
}

/// Device-interrupt vectors the disks may use (the last one is the APIC's spurious vector).
const VECTORS: usize = idt::IRQ_COUNT - 1;

static DISKS: spin::Once<Vec<Disk>> = spin::Once::new();
static INTERRUPTS: [AtomicU64; idt::IRQ_COUNT] = [const { AtomicU64::new(0) }; idt::IRQ_COUNT];

fn is_virtio_blk(f: &crate::pci::PciFunction) -> bool {
    f.vendor == 0x1af4 && matches!(f.device, 0x1001 | 0x1042)
}

/// Probes every virtio-blk function; reports (and skips) the ones that fail.
pub fn discover(platform: &Arc<dyn Platform>) -> Vec<Disk> {
    let mut disks = Vec::new();
    let mut next_vector = 0usize;
    for f in crate::pci_functions().iter().filter(|f| is_virtio_blk(f)) {
        let options = Options { irq_control: Some(&apic::CPU), ..Options::default() };
        match virtio::probe::<KernelHal, _>(crate::pci_cam(), f.df, platform.clone(), options) {
            Ok(dev) => {
                let name = if dev.serial().is_empty() {
                    format!("virtio-{:02x}:{:02x}.{}", f.df.bus, f.df.device, f.df.function)
                } else {
                    String::from(dev.serial())
                };
                let vectors = (0..dev.num_queues())
                    .map(|_| {
                        let v = next_vector % VECTORS;
                        next_vector += 1;
                        v as u8
                    })
                    .collect();
                disks.push(Disk { name, dev: Arc::new(dev), df: f.df, vectors });
            }
            Err(e) => {
                println!("virtio-blk {:02x}:{:02x}.{}: not usable: {e}", f.df.bus, f.df.device, f.df.function)
            }
        }
    }
    disks
}

/// Prints one line per disk.
pub fn describe(disks: &[Disk]) {
    for d in disks {
        let i = d.dev.info();
        println!(
            "disk {}: {} MiB, {} B blocks ({} B physical), {} queue(s) x {} slots{}, {} segments, {:?}",
            d.name,
            i.capacity_bytes() >> 20,
            i.logical_block_size,
            i.physical_block_size,
            d.dev.num_queues(),
            d.dev.queue_stats(0).map(|s| s.size).unwrap_or(0),
            if d.dev.indirect() { " (indirect)" } else { "" },
            i.max_segments,
            i.features,
        );
    }
}

/// Makes `disks` the kernel's disks (once) and registers the interrupt handlers.
pub fn install(disks: Vec<Disk>) -> &'static [Disk] {
    let installed = DISKS.call_once(|| disks);
    for (i, handler) in HANDLERS.iter().enumerate().take(VECTORS) {
        idt::set_irq_handler(i, *handler);
    }
    installed
}

/// The installed disks.
pub fn all() -> &'static [Disk] {
    DISKS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// The installed disk named `name`.
pub fn get(name: &str) -> Option<&'static Disk> {
    all().iter().find(|d| d.name == name)
}

/// Switches `disk` to interrupt-driven completion (and this CPU's interrupts on).
pub fn enable_interrupts(disk: &Disk) -> Result<(), Errno> {
    apic::init();
    let messages: Vec<_> = disk.vectors.iter().map(|&v| apic::msi_message(idt::IRQ_BASE + v)).collect();
    disk.dev.enable_interrupts(&messages)?;
    apic::enable();
    Ok(())
}

/// Switches `disk` back to polling; turns this CPU's interrupts off when no disk uses them.
pub fn disable_interrupts(disk: &Disk) {
    disk.dev.disable_interrupts();
    if !all().iter().any(|d| d.dev.interrupts_enabled()) {
        apic::disable();
    }
}

/// Interrupts taken on device vector index `i` so far.
pub fn interrupts_on_vector(i: usize) -> u64 {
    INTERRUPTS.get(i).map(|c| c.load(Ordering::Relaxed)).unwrap_or(0)
}

/// The work of device vector index `I`: reap every queue routed to it.
fn on_vector<const I: usize>() {
    INTERRUPTS[I].fetch_add(1, Ordering::Relaxed);
    for d in all() {
        for (q, &v) in d.vectors.iter().enumerate() {
            if v as usize == I && d.dev.interrupts_enabled() {
                d.dev.handle_interrupt(q);
            }
        }
    }
}

const HANDLERS: [fn(); idt::IRQ_COUNT] = [
    on_vector::<0>,
    on_vector::<1>,
    on_vector::<2>,
    on_vector::<3>,
    on_vector::<4>,
    on_vector::<5>,
    on_vector::<6>,
    on_vector::<7>,
    on_vector::<8>,
    on_vector::<9>,
    on_vector::<10>,
    on_vector::<11>,
    on_vector::<12>,
    on_vector::<13>,
    on_vector::<14>,
    on_vector::<15>,
];

/// Adds every disk to a test environment under its name.
pub fn add_to(env: &mut foliage_drivers::selftest::TestEnv, disks: &[Disk]) {
    for d in disks {
        env.add_device(&d.name, d.dev.clone() as Arc<dyn BlockDevice>);
    }
}
