//! The page-frame allocator: naturally aligned runs of 2^order physically contiguous 4 KiB
//! pages (a buddy allocator, buddy_system_allocator's `FrameAllocator`), the memory behind
//! folios and DMA buffers. Interrupt-safe like the heap (see `heap.rs`): DMA buffers may be
//! freed from completion callbacks in interrupt context.

use buddy_system_allocator::LockedFrameAllocator;

use crate::arch::apic::IrqOff;
use core::sync::atomic::{AtomicUsize, Ordering};

static FRAMES: LockedFrameAllocator<33> = LockedFrameAllocator::new();
static TOTAL: AtomicUsize = AtomicUsize::new(0);
static USED: AtomicUsize = AtomicUsize::new(0);

/// Gives the page frames of `[start, end)` (page aligned) to the allocator.
pub fn init(start: u64, end: u64) {
    let _irq = IrqOff::new();
    FRAMES.lock().add_frame((start >> 12) as usize, (end >> 12) as usize);
    TOTAL.store(((end - start) >> 12) as usize, Ordering::Relaxed);
}

/// Allocates `2^order` contiguous pages, naturally aligned; returns the physical address.
pub fn alloc(order: u32) -> Option<u64> {
    if order > 20 {
        return None;
    }
    let frame = {
        let _irq = IrqOff::new();
        FRAMES.lock().alloc(1 << order)?
    };
    USED.fetch_add(1 << order, Ordering::Relaxed);
    Some((frame as u64) << 12)
}

/// Returns a run from [`alloc`].
pub fn free(phys: u64, order: u32) {
    {
        let _irq = IrqOff::new();
        FRAMES.lock().dealloc((phys >> 12) as usize, 1 << order);
    }
    USED.fetch_sub(1 << order, Ordering::Relaxed);
}

/// (pages in use, pages managed).
pub fn stats() -> (usize, usize) {
    (USED.load(Ordering::Relaxed), TOTAL.load(Ordering::Relaxed))
}
