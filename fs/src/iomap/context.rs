//! The per-filesystem engine context: the device, the page cache, the block size, tuning, the
//! queue of finished writes that still need filesystem work, and statistics.
//!
//! Owns: the completion queue (an intrusive list of ioends: queueing from a bio completion
//! allocates nothing) and the counters. A filesystem creates one [`IomapContext`] per mounted
//! device and one [`IomapFile`] per inode from it.
//!
//! Progress rule: bio completions run inside [`BlockDevice::poll`] and do only the cheap part
//! (counting down, ending writeback of plain overwrites). Ioends that need filesystem work wait
//! on the queue until someone calls [`IomapContext::process_completions`]: the integrity
//! writeback / fsync path does, and so does [`IomapContext::kick`], which the filesystem must
//! call from the page cache's [`WritebackHooks::kick`](crate::pagecache::WritebackHooks::kick)
//! (every page-cache wait kicks, so a waiter on folio writeback finishes the work it waits
//! for). Without that hook, waits on a polled device never end.
//!
//! Lock order: the completion-queue spin lock is a leaf, held only to link or take ioends
//! (never while calling the filesystem or ending writeback).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct xfs_mount` + `m_unwritten_workqueue`, `xfs_end_io` work item | [`IomapContext`] completion queue + [`IomapContext::process_completions`] | run by waiters and the kick hook instead of a workqueue |
//! | `iomap_ioend_bioset` | none: an `Arc` per ioend | |
//! | IRQ completion + `blk_poll` | [`IomapContext::kick`] | |

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use intrusive_collections::LinkedList;
use spin::Mutex;

use super::file::IomapFile;
use super::ioend::IoendAdapter;
use crate::block::BlockDevice;
use crate::pagecache::{PageCache, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::platform::{Platform, PAGE_SIZE};
use crate::{Errno, Result};

/// Engine tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IomapConfig {
    /// Largest write ioend (one bio) and read bio in bytes.
    pub max_io_bytes: u64,
    /// Largest readahead window in bytes.
    pub readahead_max_bytes: u64,
}

impl Default for IomapConfig {
    fn default() -> Self {
        Self { max_io_bytes: 4 << 20, readahead_max_bytes: 2 << 20 }
    }
}

/// Engine counters (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IomapStats {
    /// Read bios submitted.
    pub read_bios: u64,
    /// Bytes they read.
    pub read_bytes: u64,
    /// Write ioends (one bio each) submitted by writeback.
    pub ioends: u64,
    /// Bytes they wrote.
    pub ioend_bytes: u64,
    /// Write-through bios submitted by O_SYNC / O_DSYNC writes.
    pub writethrough_bios: u64,
    /// Ioends queued for filesystem completion work.
    pub ioends_queued: u64,
    /// Calls of `ioend_done` (after merging).
    pub ioend_done_calls: u64,
    /// Readahead windows submitted.
    pub readahead_windows: u64,
    /// Mappings found stale after locking a folio (write and writeback paths).
    pub stale_mappings: u64,
    /// Folios written by writeback.
    pub folios_written: u64,
    /// Data bios of direct I/O (reads and writes, sub-block zeroing and read-around included).
    pub dio_bios: u64,
    /// Bytes they moved.
    pub dio_bytes: u64,
    /// Bytes of them that went through a bounce buffer (the caller's memory was not DMA-able).
    pub dio_bounced_bytes: u64,
    /// Direct I/O requests that continued as buffered I/O (a mapping not for direct I/O, or a
    /// cache range that could not be invalidated).
    pub dio_fallbacks: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub read_bios: AtomicU64,
    pub read_bytes: AtomicU64,
    pub ioends: AtomicU64,
    pub ioend_bytes: AtomicU64,
    pub writethrough_bios: AtomicU64,
    pub ioends_queued: AtomicU64,
    pub ioend_done_calls: AtomicU64,
    pub readahead_windows: AtomicU64,
    pub stale_mappings: AtomicU64,
    pub folios_written: AtomicU64,
    pub dio_bios: AtomicU64,
    pub dio_bytes: AtomicU64,
    pub dio_bounced_bytes: AtomicU64,
    pub dio_fallbacks: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> IomapStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IomapStats {
            read_bios: g(&self.read_bios),
            read_bytes: g(&self.read_bytes),
            ioends: g(&self.ioends),
            ioend_bytes: g(&self.ioend_bytes),
            writethrough_bios: g(&self.writethrough_bios),
            ioends_queued: g(&self.ioends_queued),
            ioend_done_calls: g(&self.ioend_done_calls),
            readahead_windows: g(&self.readahead_windows),
            stale_mappings: g(&self.stale_mappings),
            folios_written: g(&self.folios_written),
            dio_bios: g(&self.dio_bios),
            dio_bytes: g(&self.dio_bytes),
            dio_bounced_bytes: g(&self.dio_bounced_bytes),
            dio_fallbacks: g(&self.dio_fallbacks),
        }
    }
}

/// The per-filesystem engine state. See the module documentation.
pub struct IomapContext {
    dev: Arc<dyn BlockDevice>,
    cache: Arc<PageCache>,
    block_size: u64,
    config: IomapConfig,
    pub(crate) completions: Mutex<LinkedList<IoendAdapter>>,
    pub(crate) counters: Counters,
}

impl IomapContext {
    /// A context for a filesystem of `block_size`-byte blocks on `dev` (usually a
    /// [`Queue`](crate::block::Queue) in front of the driver), caching in `cache`. `EINVAL` when
    /// the block size is not a power of two in `[1 KiB, 64 KiB]`, is smaller than the device's
    /// logical block size or larger than the cache's largest folio, or when
    /// `config.max_io_bytes` is below a block or above 1 GiB.
    pub fn new(
        dev: Arc<dyn BlockDevice>,
        cache: Arc<PageCache>,
        block_size: u64,
        config: IomapConfig,
    ) -> Result<Arc<Self>> {
        let bs = block_size as usize;
        let ok = bs.is_power_of_two()
            && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
            && block_size >= dev.info().logical_block_size as u64
            && bs <= PAGE_SIZE << cache.max_order()
            && config.max_io_bytes >= block_size
            && config.max_io_bytes <= 1 << 30;
        if !ok {
            return Err(Errno::EINVAL);
        }
        Ok(Arc::new(Self {
            dev,
            cache,
            block_size,
            config,
            completions: Mutex::new(LinkedList::new(IoendAdapter::new())),
            counters: Counters::default(),
        }))
    }

    /// The device I/O goes to.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// The page cache.
    pub fn cache(&self) -> &Arc<PageCache> {
        &self.cache
    }

    /// The platform (the cache's).
    pub fn platform(&self) -> &Arc<dyn Platform> {
        self.cache.platform()
    }

    /// Filesystem block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Tuning.
    pub fn config(&self) -> &IomapConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IomapStats {
        self.counters.snapshot()
    }

    /// A new per-file object of in-core (and on-disk) size `size`. `EFBIG` beyond the largest
    /// file size.
    pub fn new_file(self: &Arc<Self>, size: u64) -> Result<Arc<IomapFile>> {
        IomapFile::new(self, size)
    }

    /// Makes progress on outstanding I/O: polls the device, then finishes queued ioends. The
    /// filesystem's page-cache kick hook calls this.
    pub fn kick(&self) {
        self.dev.poll();
        self.process_completions();
    }
}
