//! The porting surface: what a kernel supplies to run Foliage.
//!
//! A kernel that adopts Foliage implements [`Platform`] once, and [`BlockDevice`] once per
//! disk driver it brings (or uses the virtio-blk driver here). Nothing else: no threads, no
//! interrupts, no allocator beyond `alloc`.
//!
//! # Waiting
//!
//! Foliage waits in exactly one way, through [`wait_until`]:
//!
//! ```text
//! while !done() { kick(); platform.park(key, &done) }
//! ```
//!
//! `kick` is whatever makes progress on the thing waited for: for I/O that is
//! [`BlockDevice::poll`] of the device the I/O went to, so a kernel without interrupts and
//! without threads makes progress by polling alone. `park` defaults to a CPU relax hint (a
//! polling wait). A kernel with a scheduler overrides [`Platform::park`] / [`Platform::unpark`]:
//! park registers the caller on `key`, re-checks `done`, and sleeps; Foliage calls `unpark(key)`
//! after every state change a waiter may be waiting for. Override them only if completions
//! arrive without Foliage polling (interrupts, or a poller thread), otherwise a parked waiter
//! has nobody to wake it.
//!
//! Rule for callers: never wait while holding a spin lock that a completion path takes.
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | `alloc_pages(gfp, order)` + `page_to_phys` | [`Platform::alloc_pages`] -> [`PageRun`] |
//! | `alloc_pages(gfp \| __GFP_ZERO, order)` | [`Platform::alloc_pages_zeroed`] |
//! | `dma_map_single` (identity IOMMU) | [`Platform::dma_address`] |
//! | `ktime_get_ns` | [`Platform::now_ns`] |
//! | `wait_on_bit` / `wake_up_bit` | [`wait_until`] + [`Platform::park`] / [`Platform::unpark`] |
//!
//! [`BlockDevice`]: crate::block::BlockDevice
//! [`BlockDevice::poll`]: crate::block::BlockDevice::poll

use alloc::sync::Arc;
use core::ptr::NonNull;

use crate::errno::{Errno, Result};

/// The page size Foliage allocates in. Folio memory and DMA buffers are multiples of it.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A run of `2^order` physically contiguous pages: its kernel-virtual address and the physical
/// (bus) address a device uses for it.
///
/// A `PageRun` is a plain descriptor, not an owner: it is handed back with
/// [`Platform::free_pages`]. [`DmaBuffer`] is the owning, safe wrapper.
#[derive(Debug, PartialEq, Eq)]
pub struct PageRun {
    virt: NonNull<u8>,
    phys: u64,
    order: u8,
}

// SAFETY: a PageRun is an address range; access to the memory it names is governed by its owner.
unsafe impl Send for PageRun {}
// SAFETY: as above; `&PageRun` only exposes addresses.
unsafe impl Sync for PageRun {}

impl PageRun {
    /// Describes `2^order` pages at `virt` (kernel-virtual) and `phys` (device-visible).
    ///
    /// # Safety
    ///
    /// `[virt, virt + PAGE_SIZE << order)` must be valid, writable memory that is physically
    /// contiguous at `phys`, exclusively owned by whoever receives this descriptor.
    pub unsafe fn from_raw(virt: NonNull<u8>, phys: u64, order: u32) -> Self {
        Self { virt, phys, order: order as u8 }
    }

    /// Kernel-virtual address of the first byte.
    pub fn virt(&self) -> NonNull<u8> {
        self.virt
    }

    /// Physical (device-visible) address of the first byte.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// log2 of the number of pages.
    pub fn order(&self) -> u32 {
        self.order as u32
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        PAGE_SIZE << self.order
    }

    /// Always false: a run holds at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a kernel provides to Foliage. See the module documentation.
pub trait Platform: Send + Sync {
    /// Allocates `2^order` physically contiguous pages that devices can DMA to, aligned to at
    /// least [`PAGE_SIZE`] (naturally aligned where the allocator can). Contents are unspecified
    /// (whatever the memory held before): Foliage writes every byte it hands out before any
    /// byte of it is read (the page cache's overwrite path), or asks for
    /// [`Platform::alloc_pages_zeroed`]. `None` when memory is short: Foliage falls back to
    /// smaller orders or reports `ENOMEM`.
    fn alloc_pages(&self, order: u32) -> Option<PageRun>;

    /// As [`Platform::alloc_pages`], every byte zero: DMA buffers, virtio rings and folios that
    /// are not wholly overwritten. The default zeroes what `alloc_pages` returned; override it
    /// when the allocator knows memory that is already zero (fresh pages from a hypervisor, a
    /// pre-zeroed pool).
    fn alloc_pages_zeroed(&self, order: u32) -> Option<PageRun> {
        let run = self.alloc_pages(order)?;
        // SAFETY: the run is freshly allocated, exclusively ours and `run.len()` bytes long.
        unsafe { core::ptr::write_bytes(run.virt().as_ptr(), 0, run.len()) };
        Some(run)
    }

    /// Returns pages to the platform.
    ///
    /// # Safety
    ///
    /// `run` came from [`Platform::alloc_pages`] or [`Platform::alloc_pages_zeroed`] of this
    /// platform, and neither the CPU nor a device accesses the memory any more.
    unsafe fn free_pages(&self, run: PageRun);

    /// The device-visible address of `[ptr, ptr + len)` if a device can DMA to that range as
    /// one contiguous piece, else `None` (Foliage then bounces through pages of its own).
    fn dma_address(&self, ptr: *const u8, len: usize) -> Option<u64>;

    /// A monotonic clock in nanoseconds.
    fn now_ns(&self) -> u64;

    /// Waits a little for `key`'s state to change; returns when `done()` may be true. The
    /// default is a CPU relax hint: a polling wait. See the module docs before overriding.
    fn park(&self, key: usize, done: &dyn Fn() -> bool) {
        let _ = (key, done);
        core::hint::spin_loop();
    }

    /// Wakes every waiter parked on `key`. The default does nothing (polling waits).
    fn unpark(&self, key: usize) {
        let _ = key;
    }
}

/// Waits until `done()` is true: the one wait loop Foliage uses (see the module docs).
pub fn wait_until(platform: &dyn Platform, key: usize, done: &dyn Fn() -> bool, kick: &dyn Fn()) {
    while !done() {
        kick();
        if done() {
            break;
        }
        platform.park(key, done);
    }
}

/// An owned, zero-initialised, physically contiguous buffer for I/O, freed on drop.
pub struct DmaBuffer {
    run: Option<PageRun>,
    len: usize,
    platform: Arc<dyn Platform>,
}

impl DmaBuffer {
    /// Allocates `len` bytes (rounded up to whole pages, at least one), zeroed.
    pub fn new(platform: &Arc<dyn Platform>, len: usize) -> Result<Self> {
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let order = pages.next_power_of_two().trailing_zeros();
        let run = platform.alloc_pages_zeroed(order).ok_or(Errno::ENOMEM)?;
        Ok(Self { run: Some(run), len, platform: platform.clone() })
    }

    fn run(&self) -> &PageRun {
        self.run.as_ref().expect("DmaBuffer run present until drop")
    }

    /// Length in bytes as requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device-visible address of byte 0.
    pub fn phys(&self) -> u64 {
        self.run().phys()
    }

    /// The buffer's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the run is valid for `len <= run.len()` bytes while we own it; shared borrow.
        unsafe { core::slice::from_raw_parts(self.run().virt().as_ptr(), self.len) }
    }

    /// The buffer's bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.run().virt().as_ptr(), self.len) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            // SAFETY: the run came from this platform, and the buffer is no longer borrowed, so
            // neither CPU nor device can still be using it (in-flight bios borrow the buffer).
            unsafe { self.platform.free_pages(run) };
        }
    }
}

/// What [`StdPlatform`] fills fresh unzeroed pages with in debug builds (and the poisoning test
/// platforms of the page-cache tests use).
pub const POISON: u8 = 0xA5;

#[cfg(any(test, feature = "std"))]
mod std_platform {
    use super::*;
    use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
    use std::time::Instant;

    /// A [`Platform`] for hosted use (tests, tools): pages from the global allocator, physical
    /// address = virtual address, waits yield the thread. In debug builds (the host tests)
    /// [`Platform::alloc_pages`] fills fresh pages with [`POISON`], so a byte handed out
    /// before it was written shows up as `0xA5` instead of a lucky zero;
    /// [`Platform::alloc_pages_zeroed`] uses `alloc_zeroed` (no memset for fresh `mmap` memory).
    pub struct StdPlatform {
        epoch: Instant,
    }

    impl StdPlatform {
        /// A new host platform.
        pub fn new() -> Self {
            Self { epoch: Instant::now() }
        }

        /// A new host platform behind the `Arc<dyn Platform>` the rest of Foliage takes.
        pub fn arc() -> Arc<dyn Platform> {
            Arc::new(Self::new())
        }
    }

    impl Default for StdPlatform {
        fn default() -> Self {
            Self::new()
        }
    }

    fn layout(order: u32) -> Layout {
        let len = PAGE_SIZE << order;
        Layout::from_size_align(len, len.min(1 << 21)).expect("valid page layout")
    }

    impl Platform for StdPlatform {
        fn alloc_pages(&self, order: u32) -> Option<PageRun> {
            if order > 20 {
                return None;
            }
            // SAFETY: the layout has a non-zero size.
            let ptr = NonNull::new(unsafe { alloc(layout(order)) })?;
            if cfg!(debug_assertions) {
                // SAFETY: freshly allocated, exclusively ours, `PAGE_SIZE << order` bytes.
                unsafe { core::ptr::write_bytes(ptr.as_ptr(), POISON, PAGE_SIZE << order) };
            }
            // SAFETY: freshly allocated, exclusively owned; on the host phys == virt.
            Some(unsafe { PageRun::from_raw(ptr, ptr.as_ptr() as u64, order) })
        }

        fn alloc_pages_zeroed(&self, order: u32) -> Option<PageRun> {
            if order > 20 {
                return None;
            }
            // SAFETY: the layout has a non-zero size.
            let ptr = NonNull::new(unsafe { alloc_zeroed(layout(order)) })?;
            // SAFETY: freshly allocated, exclusively owned; on the host phys == virt.
            Some(unsafe { PageRun::from_raw(ptr, ptr.as_ptr() as u64, order) })
        }

        unsafe fn free_pages(&self, run: PageRun) {
            // SAFETY: the caller guarantees the run came from `alloc_pages` with this order.
            unsafe { dealloc(run.virt().as_ptr(), layout(run.order())) }
        }

        fn dma_address(&self, ptr: *const u8, _len: usize) -> Option<u64> {
            Some(ptr as u64)
        }

        fn now_ns(&self) -> u64 {
            self.epoch.elapsed().as_nanos() as u64
        }

        fn park(&self, _key: usize, _done: &dyn Fn() -> bool) {
            std::thread::yield_now();
        }
    }
}

#[cfg(any(test, feature = "std"))]
pub use std_platform::StdPlatform;

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn dma_buffer_is_zeroed_page_backed_and_freed() {
        let p = StdPlatform::arc();
        let mut b = DmaBuffer::new(&p, 5000).unwrap();
        assert_eq!(b.len(), 5000);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        assert_eq!(b.phys() % PAGE_SIZE as u64, 0);
        b.as_mut_slice()[4999] = 7;
        assert_eq!(b.as_slice()[4999], 7);
    }

    #[test]
    fn wait_until_kicks_until_done() {
        let p = StdPlatform::new();
        let kicks = AtomicUsize::new(0);
        wait_until(&p, 0, &|| kicks.load(Ordering::Relaxed) >= 3, &|| {
            kicks.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(kicks.load(Ordering::Relaxed), 3);
    }
}
