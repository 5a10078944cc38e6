//! Test doubles: a platform that counts memory, can refuse large allocations and can park for
//! real; writeback hooks built from closures; a synchronous writeback walker.

use std::boxed::Box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use std::vec::Vec;

use crate::pagecache::{
    CacheConfig, FolioBatch, Mapping, Mark, PageCache, WritebackHooks, WritebackRequest, MAX_INDEX,
};
use crate::platform::{PageRun, Platform, StdPlatform, POISON};

/// A host platform that tracks live folio memory and can refuse allocations above an order.
/// Unzeroed allocations are filled with [`POISON`] (and counted), zeroed ones come zeroed.
/// With `parking`, `park` really sleeps on a condition variable until `unpark` (a scheduler's
/// behaviour), and counts sleeps that ended by timeout: a missing `unpark` shows up there.
pub struct TestPlatform {
    inner: StdPlatform,
    pub live_bytes: AtomicU64,
    pub max_alloc_order: AtomicU32,
    pub fail_all: AtomicBool,
    /// Runs handed out by `alloc_pages` (poisoned) and by `alloc_pages_zeroed`.
    pub unzeroed_allocs: AtomicU64,
    pub zeroed_allocs: AtomicU64,
    parking: bool,
    lock: Mutex<()>,
    cv: Condvar,
    pub park_timeouts: AtomicU64,
    pub parks: AtomicU64,
}

impl TestPlatform {
    pub fn new(parking: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: StdPlatform::new(),
            live_bytes: AtomicU64::new(0),
            max_alloc_order: AtomicU32::new(u32::MAX),
            fail_all: AtomicBool::new(false),
            unzeroed_allocs: AtomicU64::new(0),
            zeroed_allocs: AtomicU64::new(0),
            parking,
            lock: Mutex::new(()),
            cv: Condvar::new(),
            park_timeouts: AtomicU64::new(0),
            parks: AtomicU64::new(0),
        })
    }

    pub fn live(&self) -> u64 {
        self.live_bytes.load(Ordering::SeqCst)
    }

    fn alloc(&self, order: u32, zeroed: bool) -> Option<PageRun> {
        if self.fail_all.load(Ordering::SeqCst) || order > self.max_alloc_order.load(Ordering::SeqCst) {
            return None;
        }
        let run =
            if zeroed { self.inner.alloc_pages_zeroed(order)? } else { self.inner.alloc_pages(order)? };
        if !zeroed {
            // SAFETY: a fresh run, exclusively ours, `run.len()` bytes.
            unsafe { std::ptr::write_bytes(run.virt().as_ptr(), POISON, run.len()) };
        }
        let count = if zeroed { &self.zeroed_allocs } else { &self.unzeroed_allocs };
        count.fetch_add(1, Ordering::SeqCst);
        self.live_bytes.fetch_add(run.len() as u64, Ordering::SeqCst);
        Some(run)
    }
}

impl Platform for TestPlatform {
    fn alloc_pages(&self, order: u32) -> Option<PageRun> {
        self.alloc(order, false)
    }

    fn alloc_pages_zeroed(&self, order: u32) -> Option<PageRun> {
        self.alloc(order, true)
    }

    unsafe fn free_pages(&self, run: PageRun) {
        self.live_bytes.fetch_sub(run.len() as u64, Ordering::SeqCst);
        // SAFETY: forwarded under the caller's guarantee; the run came from `inner`.
        unsafe { self.inner.free_pages(run) }
    }

    fn dma_address(&self, ptr: *const u8, len: usize) -> Option<u64> {
        self.inner.dma_address(ptr, len)
    }

    fn now_ns(&self) -> u64 {
        self.inner.now_ns()
    }

    fn park(&self, _key: usize, done: &dyn Fn() -> bool) {
        if !self.parking {
            std::thread::yield_now();
            return;
        }
        self.parks.fetch_add(1, Ordering::SeqCst);
        let guard = self.lock.lock().unwrap();
        if done() {
            return;
        }
        let (_guard, res) = self.cv.wait_timeout(guard, Duration::from_secs(2)).unwrap();
        if res.timed_out() {
            self.park_timeouts.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn unpark(&self, _key: usize) {
        if self.parking {
            let _guard = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
    }
}

/// A cache of `pages` 4 KiB pages on a counting platform, thresholds at 0 (unused).
pub fn cache_with(platform: &Arc<TestPlatform>, pages: u64, max_order: u32) -> Arc<PageCache> {
    let budget = pages * 4096;
    let config = CacheConfig {
        budget_bytes: budget,
        background_dirty_bytes: budget,
        hard_dirty_bytes: budget,
        max_order,
    };
    PageCache::new(platform.clone(), config).unwrap()
}

/// A 16 MiB cache on a polling test platform, and a mapping of `block_size` blocks.
pub fn setup(block_size: usize) -> (Arc<TestPlatform>, Arc<PageCache>, Arc<Mapping>) {
    let platform = TestPlatform::new(false);
    let cache = cache_with(&platform, 4096, 9);
    let mapping = cache.new_mapping(block_size).unwrap();
    (platform, cache, mapping)
}

type KickFn = Box<dyn Fn() + Send + Sync>;
type WritebackFn = Box<dyn Fn(WritebackRequest) + Send + Sync>;

/// Writeback hooks made of closures, recording what they were asked (the first 1000 requests,
/// and how many there were).
#[derive(Default)]
pub struct TestHooks {
    pub requests: Mutex<Vec<WritebackRequest>>,
    pub request_count: AtomicU64,
    pub kicks: AtomicU64,
    on_kick: Mutex<Option<KickFn>>,
    on_writeback: Mutex<Option<WritebackFn>>,
}

impl TestHooks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn on_kick(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.on_kick.lock().unwrap() = Some(Box::new(f));
    }

    pub fn on_writeback(&self, f: impl Fn(WritebackRequest) + Send + Sync + 'static) {
        *self.on_writeback.lock().unwrap() = Some(Box::new(f));
    }
}

impl WritebackHooks for TestHooks {
    fn request_writeback(&self, request: WritebackRequest) {
        self.request_count.fetch_add(1, Ordering::SeqCst);
        let mut requests = self.requests.lock().unwrap();
        if requests.len() < 1000 {
            requests.push(request);
        }
        drop(requests);
        if let Some(f) = &*self.on_writeback.lock().unwrap() {
            f(request);
        }
    }

    fn kick(&self) {
        self.kicks.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = &*self.on_kick.lock().unwrap() {
            f();
        }
    }
}

/// Writes back a mapping synchronously (the "I/O" completes at once); returns the indices of
/// the folios written, in order. `integrity` tags DIRTY as TOWRITE first and walks TOWRITE,
/// waiting for folios already under writeback; otherwise walks DIRTY and skips those.
pub fn writeback(mapping: &Mapping, integrity: bool) -> Vec<u64> {
    let mark = if integrity {
        mapping.tag_for_writeback(0, MAX_INDEX);
        Mark::Towrite
    } else {
        Mark::Dirty
    };
    let mut written = Vec::new();
    let mut at = Some(0);
    while let Some(start) = at {
        let mut batch = FolioBatch::new();
        at = mapping.get_folios_tag(start, MAX_INDEX, mark, &mut batch);
        for folio in batch {
            let locked = folio.lock();
            if !locked.belongs_to(mapping) {
                continue;
            }
            if locked.is_writeback() {
                if !integrity {
                    continue;
                }
                locked.wait_writeback();
            }
            if !mapping.clear_dirty_for_io(&locked) {
                continue;
            }
            mapping.start_writeback(&locked).unwrap();
            locked.clear_dirty_range(0, locked.size()).unwrap();
            written.push(locked.index());
            drop(locked);
            mapping.end_writeback(&folio);
        }
    }
    written
}
