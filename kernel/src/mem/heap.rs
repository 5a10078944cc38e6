//! The kernel heap: a buddy allocator (buddy_system_allocator) over one physical range.

use buddy_system_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap<33> = LockedHeap::empty();

/// Gives `[start, start + size)` to the heap.
pub fn init(start: u64, size: u64) {
    // SAFETY: the range is usable RAM from the memory map, above the kernel image, identity
    // mapped, and handed to the heap exclusively (the frame allocator gets a disjoint range).
    unsafe { HEAP.lock().init(start as usize, size as usize) };
}

/// (bytes requested by live allocations, bytes the heap manages).
pub fn stats() -> (usize, usize) {
    let h = HEAP.lock();
    (h.stats_alloc_user(), h.stats_total_bytes())
}
