//! Device interrupts: the local APIC (xAPIC, MMIO at [`LAPIC_BASE`]), the legacy 8259 PICs
//! (remapped and masked so they can never deliver), MSI messages, and masking interrupts on
//! this CPU (`local_irq_save`).
//!
//! The kernel runs with interrupts off until a driver switches interrupt-driven completion on
//! ([`enable`]); exceptions never depend on it.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `local_irq_save` / `local_irq_restore` | [`save_disable`] / [`restore`], [`IrqOff`] |
//! | `setup_local_APIC` + `legacy_pic->init(0)` + mask | [`init`] |
//! | `__irq_msi_compose_msg` (fixed, edge, physical destination) | [`msi_message`] |

use core::sync::atomic::{AtomicBool, Ordering};

use foliage_drivers::virtio::{IrqControl, MsiMessage};

use super::idt::{IRQ_BASE, IRQ_COUNT};
use super::LAPIC_BASE;
use crate::io::outb;

const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_SVR: u64 = 0xF0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;
const REG_LVT_ERROR: u64 = 0x370;
const LVT_MASKED: u32 = 1 << 16;
const SVR_ENABLE: u32 = 1 << 8;
const RFLAGS_IF: u64 = 1 << 9;

/// The vector the APIC uses for spurious interrupts: the last device vector (its low four bits
/// are all ones, as older APICs require). Drivers never get it.
pub const SPURIOUS_VECTOR: u8 = IRQ_BASE + IRQ_COUNT as u8 - 1;

static READY: AtomicBool = AtomicBool::new(false);

fn read(reg: u64) -> u32 {
    // SAFETY: the local APIC page is identity mapped uncached; reading a register has no
    // side effect beyond the read.
    unsafe { core::ptr::read_volatile((LAPIC_BASE + reg) as *const u32) }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as `read`; the registers written here are the architected ones for setup.
    unsafe { core::ptr::write_volatile((LAPIC_BASE + reg) as *mut u32, value) }
}

/// Sets up the interrupt controllers once: the 8259 PICs remapped to 32..47 and fully masked
/// (QEMU leaves them unprogrammed, with vector base 0, and LINT0 in ExtINT mode: an unmasked
/// timer tick would arrive as vector 0), the local APIC software-enabled with every local
/// vector masked.
pub fn init() {
    if READY.swap(true, Ordering::AcqRel) {
        return;
    }
    for (port, value) in [
        (0x20, 0x11), // ICW1: init, ICW4 follows
        (0xA0, 0x11),
        (0x21, IRQ_BASE),     // ICW2: vector base
        (0xA1, IRQ_BASE + 8), //
        (0x21, 4),            // ICW3: slave on IRQ2
        (0xA1, 2),
        (0x21, 1), // ICW4: 8086 mode
        (0xA1, 1),
        (0x21, 0xFF), // OCW1: mask everything
        (0xA1, 0xFF),
    ] {
        outb(port, value);
    }
    for reg in [REG_LVT_TIMER, REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERROR] {
        write(reg, LVT_MASKED);
    }
    write(REG_TPR, 0);
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
}

/// This CPU's local APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// The MSI message that delivers `vector` to this CPU (fixed delivery, edge, physical
/// destination mode).
pub fn msi_message(vector: u8) -> MsiMessage {
    MsiMessage { address: LAPIC_BASE | u64::from(id() & 0xFF) << 12, data: u32::from(vector) }
}

/// Disables interrupts on this CPU; returns whether they were enabled.
pub fn save_disable() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS and clears IF. The push stays clear of the red zone (the host target
    // keeps one) by moving below it first.
    unsafe {
        core::arch::asm!(
            "sub rsp, 128",
            "pushfq",
            "pop {}",
            "add rsp, 128",
            "cli",
            out(reg) flags,
        )
    };
    flags & RFLAGS_IF != 0
}

/// Re-enables interrupts if `was_enabled`.
pub fn restore(was_enabled: bool) {
    if was_enabled {
        // SAFETY: enabling interrupts is sound once the IDT is loaded (done at boot).
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    }
}

/// Enables interrupts on this CPU (after [`init`]).
pub fn enable() {
    init();
    restore(true);
}

/// Disables interrupts on this CPU.
pub fn disable() {
    save_disable();
}

/// True when interrupts are enabled on this CPU.
pub fn enabled() -> bool {
    let on = save_disable();
    restore(on);
    on
}

/// Interrupts masked on this CPU while alive.
pub struct IrqOff(bool);

impl IrqOff {
    /// Masks interrupts.
    pub fn new() -> Self {
        Self(save_disable())
    }
}

impl Drop for IrqOff {
    fn drop(&mut self) {
        restore(self.0)
    }
}

/// The driver-facing [`IrqControl`] of this CPU.
pub struct Cpu;

impl IrqControl for Cpu {
    fn save_disable(&self) -> bool {
        save_disable()
    }

    fn restore(&self, was_enabled: bool) {
        restore(was_enabled)
    }
}

/// The one instance drivers get.
pub static CPU: Cpu = Cpu;
