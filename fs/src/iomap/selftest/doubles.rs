//! Test doubles: for direct I/O a platform that refuses DMA to some memory (forcing bounce
//! buffers or page-sized segments) and a device wrapper that demands a DMA alignment; for the
//! buffered write path a platform that poisons unzeroed pages.
//!
//! Lock order: none. Linux <-> here: an IOMMU-less machine with highmem user pages, and a
//! device with `dma_alignment` (`queue_dma_alignment`).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::block::{Bio, BlockDevice, DeviceInfo};
use crate::platform::{PageRun, Platform, PAGE_SIZE, POISON};

/// Which caller memory a [`PickyPlatform`] lets devices reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaRule {
    /// None: every direct-I/O buffer is bounced.
    Nothing,
    /// Ranges within one page only: buffers go out page by page.
    SinglePages,
}

/// A platform that delegates everything but [`Platform::dma_address`] for caller memory.
pub struct PickyPlatform {
    inner: Arc<dyn Platform>,
    rule: DmaRule,
}

impl PickyPlatform {
    /// `inner` with DMA limited by `rule`.
    pub fn arc(inner: Arc<dyn Platform>, rule: DmaRule) -> Arc<dyn Platform> {
        Arc::new(Self { inner, rule })
    }
}

impl Platform for PickyPlatform {
    fn alloc_pages(&self, order: u32) -> Option<PageRun> {
        self.inner.alloc_pages(order)
    }

    fn alloc_pages_zeroed(&self, order: u32) -> Option<PageRun> {
        self.inner.alloc_pages_zeroed(order)
    }

    unsafe fn free_pages(&self, run: PageRun) {
        // SAFETY: forwarded: the run came from `inner.alloc_pages`.
        unsafe { self.inner.free_pages(run) }
    }

    fn dma_address(&self, ptr: *const u8, len: usize) -> Option<u64> {
        let within_page = (ptr as usize % PAGE_SIZE) + len <= PAGE_SIZE;
        match self.rule {
            DmaRule::Nothing => None,
            DmaRule::SinglePages if within_page => self.inner.dma_address(ptr, len),
            DmaRule::SinglePages => None,
        }
    }

    fn now_ns(&self) -> u64 {
        self.inner.now_ns()
    }

    fn park(&self, key: usize, done: &dyn Fn() -> bool) {
        self.inner.park(key, done)
    }

    fn unpark(&self, key: usize) {
        self.inner.unpark(key)
    }
}

/// A device that reports a larger DMA alignment than the one below it.
pub struct AlignedDisk {
    dev: Arc<dyn BlockDevice>,
    dma_alignment: u32,
}

impl AlignedDisk {
    /// `dev` demanding buffers aligned to `dma_alignment` bytes.
    pub fn arc(dev: Arc<dyn BlockDevice>, dma_alignment: u32) -> Arc<dyn BlockDevice> {
        Arc::new(Self { dev, dma_alignment })
    }
}

impl BlockDevice for AlignedDisk {
    fn info(&self) -> DeviceInfo {
        DeviceInfo { dma_alignment: self.dma_alignment, ..self.dev.info() }
    }

    fn submit(&self, bio: Bio) {
        self.dev.submit(bio)
    }

    fn poll(&self) -> usize {
        self.dev.poll()
    }

    fn in_flight(&self) -> usize {
        self.dev.in_flight()
    }
}

/// A platform that fills every page `alloc_pages` hands out with [`POISON`] (old memory that
/// must never show) and counts unzeroed and zeroed allocations.
pub struct PoisonPlatform {
    inner: Arc<dyn Platform>,
    /// Runs handed out by `alloc_pages` (poisoned).
    pub unzeroed: AtomicU64,
    /// Runs handed out by `alloc_pages_zeroed`.
    pub zeroed: AtomicU64,
}

impl PoisonPlatform {
    /// `inner` with poisoned unzeroed pages.
    pub fn arc(inner: Arc<dyn Platform>) -> Arc<Self> {
        Arc::new(Self { inner, unzeroed: AtomicU64::new(0), zeroed: AtomicU64::new(0) })
    }

    /// (unzeroed, zeroed) allocations so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.unzeroed.load(Ordering::Relaxed), self.zeroed.load(Ordering::Relaxed))
    }
}

impl Platform for PoisonPlatform {
    fn alloc_pages(&self, order: u32) -> Option<PageRun> {
        let run = self.inner.alloc_pages(order)?;
        // SAFETY: a fresh run, exclusively ours, `run.len()` bytes.
        unsafe { core::ptr::write_bytes(run.virt().as_ptr(), POISON, run.len()) };
        self.unzeroed.fetch_add(1, Ordering::Relaxed);
        Some(run)
    }

    fn alloc_pages_zeroed(&self, order: u32) -> Option<PageRun> {
        self.zeroed.fetch_add(1, Ordering::Relaxed);
        self.inner.alloc_pages_zeroed(order)
    }

    unsafe fn free_pages(&self, run: PageRun) {
        // SAFETY: forwarded: the run came from `inner`.
        unsafe { self.inner.free_pages(run) }
    }

    fn dma_address(&self, ptr: *const u8, len: usize) -> Option<u64> {
        self.inner.dma_address(ptr, len)
    }

    fn now_ns(&self) -> u64 {
        self.inner.now_ns()
    }

    fn park(&self, key: usize, done: &dyn Fn() -> bool) {
        self.inner.park(key, done)
    }

    fn unpark(&self, key: usize) {
        self.inner.unpark(key)
    }
}
