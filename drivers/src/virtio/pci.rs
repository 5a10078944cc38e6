//! virtio-blk over PCI: probing a function, and MSI-X routing of queue interrupts.
//!
//! Owns: [`probe`] (transport + driver for one PCI function) and [`PciMsix`], the
//! [`InterruptRouting`] that programs the function's MSI-X table and the virtio common
//! configuration's `queue_msix_vector` registers. virtio-drivers 0.13's `PciTransport` keeps its
//! common-configuration pointer private and has no MSI-X support, so this module finds the
//! virtio common-configuration capability and the MSI-X capability itself and writes those few
//! registers directly; it does so only with the driver's transport lock held (the transport
//! also writes `queue_select`).
//!
//! Lock order: the driver's transport lock, then `PciMsix`'s configuration-access lock.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `virtio_pci_modern_probe` | virtio-drivers' `PciTransport::new`, in [`probe`] |
//! | `pci_alloc_irq_vectors(PCI_IRQ_MSIX)` + `vp_modern_queue_vector` | [`PciMsix`] (entry `queue + 1`, entry 0 = config, unused) |
//! | `pci_msix_write_msg` / mask bits | `PciMsix::route` |
//!
//! Deliberate deviation: no INTx fallback (a function without MSI-X polls only).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::Hal;

use super::device::VirtioBlk;
use super::irq::{InterruptRouting, MsiMessage};
use super::setup::Options;
use crate::errno::{Errno, Result};
use crate::platform::Platform;

const CAP_ID_MSIX: u8 = 0x11;
const CAP_ID_VENDOR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `queue_select` in `virtio_pci_common_cfg`.
const COMMON_QUEUE_SELECT: usize = 22;
/// `queue_msix_vector`.
const COMMON_QUEUE_MSIX_VECTOR: usize = 26;
/// `msix_config`.
const COMMON_MSIX_CONFIG: usize = 16;
/// `VIRTIO_MSI_NO_VECTOR`.
const NO_VECTOR: u16 = 0xFFFF;
const MSIX_ENABLE: u32 = 1 << 31;
const MSIX_FUNCTION_MASK: u32 = 1 << 30;
const ENTRY_MASKED: u32 = 1;

/// Sets up the virtio-blk device at `df`: builds the PCI transport, finds MSI-X (for
/// [`VirtioBlk::enable_interrupts`]) unless `options` already carries a routing, and runs
/// [`VirtioBlk::new`]. The function's memory BARs must be assigned and memory decoding and bus
/// mastering enabled.
pub fn probe<H, C>(
    cam: C,
    df: DeviceFunction,
    platform: Arc<dyn Platform>,
    mut options: Options,
) -> Result<VirtioBlk<PciTransport>>
where
    H: Hal + 'static,
    C: ConfigurationAccess + Clone + Send + 'static,
{
    let mut root = PciRoot::new(cam.clone());
    let transport = PciTransport::new::<H, C>(&mut root, df).map_err(|_| Errno::ENODEV)?;
    if options.routing.is_none() {
        if let Some(m) = PciMsix::find::<H>(&mut root, cam, df) {
            options.routing = Some(Box::new(m));
        }
    }
    VirtioBlk::new::<H>(transport, platform, options)
}

/// MSI-X routing for one virtio PCI function (see the module docs).
pub struct PciMsix<C: ConfigurationAccess> {
    cam: spin::Mutex<C>,
    df: DeviceFunction,
    cap: u8,
    entries: u16,
    table: NonNull<u32>,
    common: NonNull<u8>,
    enabled: AtomicBool,
}

// SAFETY: the MMIO pointers name device registers, written only under the driver's transport
// lock (and `cam` under its own lock); nothing about them is tied to a thread.
unsafe impl<C: ConfigurationAccess + Send> Send for PciMsix<C> {}
// SAFETY: as above: shared access only reaches the registers through `route`, serialised by the
// transport lock the driver holds when calling it.
unsafe impl<C: ConfigurationAccess + Send> Sync for PciMsix<C> {}

/// The MMIO address of `offset` in memory BAR `bar`, mapped through the Hal.
fn bar_address<H: Hal, C: ConfigurationAccess>(
    root: &mut PciRoot<C>,
    df: DeviceFunction,
    bar: u8,
    offset: u32,
    len: u32,
) -> Option<NonNull<u8>> {
    let info = root.bar_info(df, bar).ok()??;
    let (address, size) = info.memory_address_size()?;
    if address == 0 || u64::from(offset) + u64::from(len) > size {
        return None;
    }
    // SAFETY: the range lies inside an assigned memory BAR of this function.
    Some(unsafe { H::mmio_phys_to_virt(address + u64::from(offset), len as usize) })
}

impl<C: ConfigurationAccess + Send> PciMsix<C> {
    /// Finds the MSI-X capability and the virtio common configuration of `df`; `None` when
    /// the function has either missing or unmapped.
    pub fn find<H: Hal>(root: &mut PciRoot<C>, cam: C, df: DeviceFunction) -> Option<Self> {
        let mut msix = None;
        let mut common = None;
        for cap in root.capabilities(df) {
            if cap.id == CAP_ID_MSIX && msix.is_none() {
                let table = cam.read_word(df, cap.offset + 4);
                msix = Some((cap.offset, (cap.private_header & 0x7FF) + 1, (table & 7) as u8, table & !7));
            } else if cap.id == CAP_ID_VENDOR && (cap.private_header >> 8) as u8 == VIRTIO_PCI_CAP_COMMON_CFG
            {
                let bar = cam.read_word(df, cap.offset + 4) as u8;
                let offset = cam.read_word(df, cap.offset + 8);
                let length = cam.read_word(df, cap.offset + 12);
                if common.is_none() && length >= 32 {
                    common = Some((bar, offset));
                }
            }
        }
        let (cap, entries, table_bar, table_offset) = msix?;
        let (common_bar, common_offset) = common?;
        let table = bar_address::<H, C>(root, df, table_bar, table_offset, u32::from(entries) * 16)?;
        let common = bar_address::<H, C>(root, df, common_bar, common_offset, 32)?;
        Some(Self {
            cam: spin::Mutex::new(cam),
            df,
            cap,
            entries,
            table: table.cast(),
            common,
            enabled: AtomicBool::new(false),
        })
    }

    /// Number of MSI-X table entries.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    fn write_entry(&self, entry: u16, word: usize, value: u32) {
        // SAFETY: entry < entries (checked by callers), so the word lies inside the mapped table.
        unsafe { core::ptr::write_volatile(self.table.as_ptr().add(entry as usize * 4 + word), value) }
    }

    fn write_common16(&self, offset: usize, value: u16) {
        // SAFETY: offsets 16..28 lie inside the (at least 32-byte) mapped common configuration.
        unsafe { core::ptr::write_volatile(self.common.as_ptr().add(offset).cast::<u16>(), value) }
    }

    fn read_common16(&self, offset: usize) -> u16 {
        // SAFETY: as write_common16.
        unsafe { core::ptr::read_volatile(self.common.as_ptr().add(offset).cast::<u16>()) }
    }

    /// Turns MSI-X on for the function (all entries start masked), once.
    fn enable(&self) {
        if self.enabled.swap(true, Ordering::AcqRel) {
            return;
        }
        for e in 0..self.entries {
            self.write_entry(e, 3, ENTRY_MASKED);
        }
        let mut cam = self.cam.lock();
        let ctrl = cam.read_word(self.df, self.cap);
        cam.write_word(self.df, self.cap, (ctrl | MSIX_ENABLE) & !MSIX_FUNCTION_MASK);
        drop(cam);
        self.write_common16(COMMON_MSIX_CONFIG, NO_VECTOR);
    }
}

impl<C: ConfigurationAccess + Send> InterruptRouting for PciMsix<C> {
    fn route(&self, queue: u16, message: Option<MsiMessage>) -> Result<()> {
        let entry = queue.checked_add(1).filter(|&e| e < self.entries).ok_or(Errno::ENOSPC)?;
        match message {
            Some(m) => {
                self.enable();
                self.write_entry(entry, 3, ENTRY_MASKED);
                self.write_entry(entry, 0, m.address as u32);
                self.write_entry(entry, 1, (m.address >> 32) as u32);
                self.write_entry(entry, 2, m.data);
                self.write_entry(entry, 3, 0);
                self.write_common16(COMMON_QUEUE_SELECT, queue);
                self.write_common16(COMMON_QUEUE_MSIX_VECTOR, entry);
                if self.read_common16(COMMON_QUEUE_MSIX_VECTOR) != entry {
                    // The device could not map the vector (it reads back NO_VECTOR).
                    self.write_entry(entry, 3, ENTRY_MASKED);
                    return Err(Errno::EIO);
                }
            }
            None => {
                self.write_common16(COMMON_QUEUE_SELECT, queue);
                self.write_common16(COMMON_QUEUE_MSIX_VECTOR, NO_VECTOR);
                self.write_entry(entry, 3, ENTRY_MASKED);
            }
        }
        Ok(())
    }
}
