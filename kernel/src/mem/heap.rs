//! The kernel heap: slab caches for small objects ([`super::slab`]) over a buddy allocator
//! (buddy_system_allocator's `Heap`) for everything else and for the slabs, over one physical
//! range.
//!
//! Allocations up to [`super::slab::MAX_OBJECT`] (size and alignment) come from the slab
//! caches in O(1); bigger ones from the buddy allocator, whose free walks the free list of the
//! block's size class and so must not see the small-object churn (see the slab module).
//!
//! Interrupt-safe: every allocator call runs with interrupts masked on this CPU, because
//! completion callbacks run in interrupt context when a driver completes by interrupt, and
//! they may free memory (an `Arc` dropped last, virtio-drivers' per-request indirect table).
//! Without the mask an interrupt arriving while the allocator lock is held would spin forever.
//!
//! Lock order: the heap lock is a leaf (taken with interrupts masked, nothing taken inside).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `kmalloc` (slab caches up to 8 KiB, the page allocator above) | [`GlobalAlloc`] for [`KernelHeap`] |

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use buddy_system_allocator::Heap;
use spin::Mutex;

use super::slab::{class_of, Backing, SlabStats, Slabs, SLAB_LAYOUT};
use crate::arch::apic::IrqOff;

struct Buddy(Heap<33>);

impl Backing for Buddy {
    fn alloc_slab(&mut self) -> *mut u8 {
        self.0.alloc(SLAB_LAYOUT).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn free_slab(&mut self, slab: *mut u8) {
        // SAFETY: the caller's contract: `slab` came from `alloc_slab` with SLAB_LAYOUT.
        unsafe { self.0.dealloc(NonNull::new_unchecked(slab), SLAB_LAYOUT) }
    }
}

struct Inner {
    buddy: Buddy,
    slabs: Slabs,
    /// Bytes requested by live allocations.
    user: usize,
}

/// The global allocator. See the module docs.
pub struct KernelHeap(Mutex<Inner>);

// SAFETY: small layouts go to the slab caches, whose objects are aligned to their class (a
// power of two at least the layout's size and alignment) and belong to one allocation until
// freed; the rest goes to the buddy heap, a correct allocator. `dealloc` gets the layout of
// the allocation (GlobalAlloc's contract), so it picks the same side `alloc` did. Interrupts
// are masked around each call (see the module docs).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _irq = IrqOff::new();
        let mut h = self.0.lock();
        let Inner { buddy, slabs, user } = &mut *h;
        let p = match class_of(layout) {
            Some((class, _)) => slabs.alloc(class, buddy),
            None => buddy.0.alloc(layout).map_or(ptr::null_mut(), NonNull::as_ptr),
        };
        if !p.is_null() {
            *user += layout.size();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _irq = IrqOff::new();
        let mut h = self.0.lock();
        let Inner { buddy, slabs, user } = &mut *h;
        *user -= layout.size();
        match class_of(layout) {
            // SAFETY: the caller's contract: `ptr` came from `alloc(layout)`, which took the
            // same class.
            Some((class, _)) => unsafe { slabs.dealloc(ptr, class, buddy) },
            // SAFETY: as above, from the buddy heap with this layout.
            None => unsafe { buddy.0.dealloc(NonNull::new_unchecked(ptr), layout) },
        }
    }
}

#[global_allocator]
static HEAP: KernelHeap =
    KernelHeap(Mutex::new(Inner { buddy: Buddy(Heap::empty()), slabs: Slabs::new(), user: 0 }));

/// Gives `[start, start + size)` to the heap.
pub fn init(start: u64, size: u64) {
    let _irq = IrqOff::new();
    // SAFETY: the range is usable RAM from the memory map, above the kernel image, identity
    // mapped, and handed to the heap exclusively (the frame allocator gets a disjoint range).
    unsafe { HEAP.0.lock().buddy.0.init(start as usize, size as usize) };
}

/// (bytes requested by live allocations, bytes the heap manages).
pub fn stats() -> (usize, usize) {
    let _irq = IrqOff::new();
    let h = HEAP.0.lock();
    (h.user, h.buddy.0.stats_total_bytes())
}

/// The slab caches' counters.
pub fn slab_stats() -> SlabStats {
    let _irq = IrqOff::new();
    HEAP.0.lock().slabs.stats()
}
