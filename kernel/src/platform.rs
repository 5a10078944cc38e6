//! The kernel's [`Platform`]: page runs from the frame allocator, identity-mapped DMA, the TSC
//! clock, and polling waits (one CPU, no scheduler: the default park/unpark).

use alloc::sync::Arc;
use core::ptr::NonNull;

use foliage_drivers::platform::{PageRun, Platform};

use crate::mem;

/// The platform of this kernel.
pub struct KernelPlatform {
    ram_end: u64,
}

impl KernelPlatform {
    /// The platform, as the `Arc<dyn Platform>` Foliage takes.
    pub fn arc(layout: &mem::Layout) -> Arc<dyn Platform> {
        Arc::new(KernelPlatform { ram_end: layout.frames.1 })
    }
}

impl Platform for KernelPlatform {
    fn alloc_pages(&self, order: u32) -> Option<PageRun> {
        let phys = mem::frames::alloc(order)?;
        // SAFETY: the frame allocator handed out this naturally aligned run exclusively; RAM is
        // identity mapped, so the virtual address equals the physical one.
        Some(unsafe { PageRun::from_raw(NonNull::new(phys as *mut u8)?, phys, order) })
    }

    unsafe fn free_pages(&self, run: PageRun) {
        mem::frames::free(run.phys(), run.order());
    }

    fn dma_address(&self, ptr: *const u8, len: usize) -> Option<u64> {
        let start = ptr as u64;
        let end = start.checked_add(len as u64)?;
        // Everything from 1 MiB to the end of the frame range is identity-mapped RAM.
        (start >= 1 << 20 && end <= self.ram_end).then_some(start)
    }

    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }
}
