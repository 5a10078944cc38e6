//! The kernel heap: a buddy allocator (buddy_system_allocator) over one physical range.
//!
//! Interrupt-safe: every allocator call runs with interrupts masked on this CPU, because
//! completion callbacks run in interrupt context when a driver completes by interrupt, and
//! they may free memory (an `Arc` dropped last, virtio-drivers' per-request indirect table).
//! Without the mask an interrupt arriving while the allocator lock is held would spin forever.

use core::alloc::{GlobalAlloc, Layout};

use buddy_system_allocator::LockedHeap;

use crate::arch::apic::IrqOff;

struct IrqSafeHeap(LockedHeap<33>);

// SAFETY: forwards to LockedHeap, a correct global allocator; masking interrupts around each
// call changes nothing about what is returned.
unsafe impl GlobalAlloc for IrqSafeHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _irq = IrqOff::new();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _irq = IrqOff::new();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(LockedHeap::empty());

/// Gives `[start, start + size)` to the heap.
pub fn init(start: u64, size: u64) {
    let _irq = IrqOff::new();
    // SAFETY: the range is usable RAM from the memory map, above the kernel image, identity
    // mapped, and handed to the heap exclusively (the frame allocator gets a disjoint range).
    unsafe { HEAP.0.lock().init(start as usize, size as usize) };
}

/// (bytes requested by live allocations, bytes the heap manages).
pub fn stats() -> (usize, usize) {
    let _irq = IrqOff::new();
    let h = HEAP.0.lock();
    (h.stats_alloc_user(), h.stats_total_bytes())
}
