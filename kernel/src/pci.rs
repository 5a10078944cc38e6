//! PCI configuration access and enumeration.
//!
//! Two configuration access mechanisms: legacy port I/O (0xCF8/0xCFC, 256 bytes per function)
//! and PCIe ECAM (memory mapped, 4 KiB per function). On q35 the ECAM window is read from the
//! MCH's PCIEXBAR register (firmware programs it; QEMU's default is 0xB000_0000). Both implement
//! virtio-drivers' `ConfigurationAccess`, so its `PciRoot` and PCI transport run on either.
//!
//! Enumeration walks bus 0 and every bus behind a PCI-PCI bridge. Memory BARs the firmware left
//! unassigned (microvm has no firmware) are given addresses from a window in the 32-bit MMIO hole.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

use crate::io::{inl, outl};

/// How configuration space is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cam {
    /// Ports 0xCF8 / 0xCFC.
    PortIo,
    /// Memory-mapped ECAM at this physical (identity-mapped) address.
    Ecam(u64),
}

impl Cam {
    fn port_address(df: DeviceFunction, offset: u8) -> u32 {
        0x8000_0000
            | (df.bus as u32) << 16
            | (df.device as u32) << 11
            | (df.function as u32) << 8
            | (offset as u32 & 0xFC)
    }

    fn ecam_ptr(base: u64, df: DeviceFunction, offset: u8) -> *mut u32 {
        (base
            + ((df.bus as u64) << 20
                | (df.device as u64) << 15
                | (df.function as u64) << 12
                | (offset as u64 & 0xFFC))) as *mut u32
    }

    /// Reads a 32-bit configuration register.
    pub fn read(&self, df: DeviceFunction, offset: u8) -> u32 {
        match *self {
            Cam::PortIo => {
                outl(0xCF8, Self::port_address(df, offset));
                inl(0xCFC)
            }
            // SAFETY: the ECAM window is identity mapped uncached and covers every bus/device/function.
            Cam::Ecam(base) => unsafe { core::ptr::read_volatile(Self::ecam_ptr(base, df, offset)) },
        }
    }

    /// Writes a 32-bit configuration register.
    pub fn write(&self, df: DeviceFunction, offset: u8, value: u32) {
        match *self {
            Cam::PortIo => {
                outl(0xCF8, Self::port_address(df, offset));
                outl(0xCFC, value);
            }
            // SAFETY: as `read`.
            Cam::Ecam(base) => unsafe { core::ptr::write_volatile(Self::ecam_ptr(base, df, offset), value) },
        }
    }
}

impl ConfigurationAccess for Cam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        self.read(df, offset)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        self.write(df, offset, data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

/// One PCI function found by enumeration.
#[derive(Clone, Copy, Debug)]
pub struct PciFunction {
    /// Its address.
    pub df: DeviceFunction,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
}

impl PciFunction {
    /// A short description for the boot log.
    pub fn describe(&self) -> &'static str {
        match (self.vendor, self.device, self.class) {
            (0x1af4, 0x1001 | 0x1042, _) => "virtio-blk",
            (0x1af4, _, _) => "virtio",
            (_, _, 0x06) => "bridge",
            (_, _, 0x01) => "storage controller",
            (_, _, 0x02) => "network controller",
            (_, _, 0x03) => "display controller",
            _ => "device",
        }
    }
}

/// Finds the configuration mechanism: ECAM on q35 when PCIEXBAR is enabled, else port I/O.
pub fn detect_cam() -> Cam {
    let host = DeviceFunction { bus: 0, device: 0, function: 0 };
    let id = Cam::PortIo.read(host, 0);
    if id == 0x29C0_8086 {
        let lo = Cam::PortIo.read(host, 0x60) as u64;
        let hi = Cam::PortIo.read(host, 0x64) as u64;
        if lo & 1 != 0 {
            let base = (hi << 32 | lo) & 0xF_F000_0000;
            if base != 0 && base < 1 << 32 {
                return Cam::Ecam(base);
            }
        }
    }
    Cam::PortIo
}

/// Enumerates bus 0 and every bus behind a bridge.
pub fn enumerate(cam: Cam) -> Vec<PciFunction> {
    let mut found = Vec::new();
    let mut buses = alloc::vec![0u8];
    let mut seen = [false; 256];
    while let Some(bus) = buses.pop() {
        if core::mem::replace(&mut seen[bus as usize], true) {
            continue;
        }
        for device in 0..32u8 {
            for function in 0..8u8 {
                let df = DeviceFunction { bus, device, function };
                let id = cam.read(df, 0);
                if id & 0xFFFF == 0xFFFF {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let class_reg = cam.read(df, 8);
                let f = PciFunction {
                    df,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                    class: (class_reg >> 24) as u8,
                    subclass: (class_reg >> 16) as u8,
                };
                let header = (cam.read(df, 0x0C) >> 16) as u8;
                if header & 0x7F == 1 {
                    buses.push((cam.read(df, 0x18) >> 8) as u8);
                }
                found.push(f);
                if function == 0 && header & 0x80 == 0 {
                    break;
                }
            }
        }
    }
    found.sort_by_key(|f| (f.df.bus, f.df.device, f.df.function));
    found
}

static NEXT_MMIO: AtomicU64 = AtomicU64::new(0xC000_0000);
const MMIO_LIMIT: u64 = 0xFE00_0000;

/// Gives every unassigned memory BAR of `df` an address in the 32-bit MMIO window, and enables
/// memory decoding and bus mastering. Returns how many BARs were assigned.
pub fn assign_bars(cam: Cam, df: DeviceFunction) -> usize {
    let mut assigned = 0;
    let mut bar = 0u8;
    while bar < 6 {
        let off = 0x10 + bar * 4;
        let orig = cam.read(df, off);
        if orig & 1 == 1 {
            bar += 1; // I/O BAR: leave it
            continue;
        }
        let is64 = (orig >> 1) & 3 == 2;
        cam.write(df, off, 0xFFFF_FFFF);
        let mask = cam.read(df, off) & !0xF;
        cam.write(df, off, orig);
        let size = (!mask).wrapping_add(1) as u64;
        let current = (orig & !0xF) as u64 | if is64 { (cam.read(df, off + 4) as u64) << 32 } else { 0 };
        if mask != 0 && current == 0 {
            let addr = NEXT_MMIO.load(Ordering::Relaxed).next_multiple_of(size.max(4096));
            if addr + size <= MMIO_LIMIT {
                NEXT_MMIO.store(addr + size, Ordering::Relaxed);
                cam.write(df, off, addr as u32 | (orig & 0xF));
                if is64 {
                    cam.write(df, off + 4, 0);
                }
                assigned += 1;
            }
        }
        bar += if is64 { 2 } else { 1 };
    }
    let cmd = cam.read(df, 4);
    cam.write(df, 4, cmd | 0x6); // memory space, bus master
    assigned
}
