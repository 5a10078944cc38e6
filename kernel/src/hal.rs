//! virtio-drivers' `Hal` for this kernel: DMA pages from the frame allocator, identity mapping
//! for MMIO and shared buffers (no IOMMU, no bounce).

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::mem::frames;

/// The kernel's virtio HAL.
pub struct KernelHal;

// SAFETY: dma_alloc returns zeroed, page-aligned, exclusively owned identity-mapped memory;
// mmio_phys_to_virt and share return identity-mapped addresses.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let order = pages.max(1).next_power_of_two().trailing_zeros();
        match frames::alloc(order) {
            Some(phys) => {
                // SAFETY: a fresh, exclusively owned run of `2^order >= pages` pages.
                unsafe { core::ptr::write_bytes(phys as *mut u8, 0, pages * 4096) };
                (phys, NonNull::new(phys as *mut u8).expect("frames never start at 0"))
            }
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        frames::free(paddr, pages.max(1).next_power_of_two().trailing_zeros());
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("BARs are never at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}
