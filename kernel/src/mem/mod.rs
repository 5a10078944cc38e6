//! Physical memory: the heap (`alloc`) and the page-frame allocator (physically contiguous,
//! DMA-able runs for folios and device buffers), both carved from the PVH memory map.
//!
//! All RAM below 4 GiB is identity mapped, so a physical address is also the kernel-virtual
//! address. The largest usable region above the kernel image is split: a quarter (16 MiB ..
//! 512 MiB) becomes the heap, the rest page frames.

pub mod frames;
pub mod heap;
pub mod slab;

use crate::pvh::MemEntry;

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// What [`init`] set up.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Usable RAM reported by the memory map, bytes.
    pub usable_bytes: u64,
    /// Heap range.
    pub heap: (u64, u64),
    /// Page frame range.
    pub frames: (u64, u64),
}

const IDENTITY_LIMIT: u64 = 1 << 32;
const PAGE: u64 = 4096;

/// Sets up the heap and the frame allocator from the memory map.
pub fn init(memmap: &[MemEntry]) -> Option<Layout> {
    let kernel_end = core::ptr::addr_of!(__kernel_end) as u64;
    let mut usable = 0u64;
    let mut best: Option<(u64, u64)> = None;
    for e in memmap.iter().filter(|e| e.usable()) {
        usable += e.size;
        let start = e.addr.max(kernel_end).max(1 << 20).next_multiple_of(PAGE);
        let end = (e.addr + e.size).min(IDENTITY_LIMIT) / PAGE * PAGE;
        if end > start && best.is_none_or(|(s, t)| end - start > t - s) {
            best = Some((start, end));
        }
    }
    let (start, end) = best?;
    let total = end - start;
    let heap_bytes = (total / 4).clamp(16 << 20, 512 << 20).min(total / 2) / PAGE * PAGE;
    let heap = (start, start + heap_bytes);
    let frames = (heap.1, end);
    heap::init(heap.0, heap.1 - heap.0);
    frames::init(frames.0, frames.1);
    Some(Layout { usable_bytes: usable, heap, frames })
}

/// The kernel image's physical range.
pub fn kernel_range() -> (u64, u64) {
    (core::ptr::addr_of!(__kernel_start) as u64, core::ptr::addr_of!(__kernel_end) as u64)
}
