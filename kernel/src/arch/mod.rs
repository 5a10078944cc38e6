//! x86_64 CPU setup: the GDT with a TSS and IST stacks, the IDT and exception reporting, and
//! small register helpers; the local APIC and MSI for device interrupts.

pub mod apic;
pub mod gdt;
pub mod idt;

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Physical (= virtual, identity mapped) address of the local APIC.
pub const LAPIC_BASE: u64 = 0xFEE0_0000;

/// Signals end-of-interrupt to the local APIC.
pub fn apic_eoi() {
    // SAFETY: the local APIC page is identity mapped (uncached, 3-4 GiB); writing 0 to the EOI
    // register is the architected way to end an interrupt and harmless when none is in service.
    unsafe { core::ptr::write_volatile((LAPIC_BASE + 0xB0) as *mut u32, 0) };
}
