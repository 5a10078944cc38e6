//! [`FrondFs`]: one mounted frond filesystem with its page cache and engine context.
//!
//! Owns the mount (frond's [`Frond`]), the page cache and [`IomapContext`] of this mount, the
//! in-core inode table (inodes that are open or have cached data; clean, closed ones are
//! evicted by [`FrondFs::background_work`]) and the namespace lock. Mount registers the page
//! cache's writeback hooks (`hooks`); [`FrondFs::background_work`] is what a kernel's worker or
//! idle loop calls: it polls the device and finishes completions, writes back dirty data
//! beyond the background threshold, reclaims cache over budget and evicts unused inodes.
//!
//! Lock order: namespace lock > inode table lock (a leaf: never held across other calls).
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `mount(2)` / `xfs_fs_fill_super` | [`FrondFs::mount`] | one page cache per mount (its budget in [`MountOptions`]) |
//! | `umount(2)` | [`FrondFs::unmount`] | `EBUSY` while any other handle (an open [`File`](super::File)) exists |
//! | `statfs(2)`, `syncfs(2)` | [`FrondFs::statfs`], [`FrondFs::sync`] | |
//! | inode cache (`icache`, `iget`, `evict`) | the inode table | |
//! | flusher threads + kswapd | [`FrondFs::background_work`] | called by the kernel |

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::hooks::MountHooks;
use super::inode::Inode;
use crate::block::BlockDevice;
use crate::frond::{Frond, FsckReport, MountError, StatFs};
use crate::iomap::{
    write_and_wait, writeback_range, IomapConfig, IomapContext, WritebackMode, MAX_FILE_SIZE,
};
use crate::pagecache::{CacheConfig, PageCache, DEFAULT_MAX_ORDER};
use crate::platform::Platform;
use crate::{Errno, Result};

/// Inodes kept in the table before clean, closed ones are evicted.
pub const INODE_TABLE_TARGET: usize = 1024;

/// How a filesystem is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Page-cache budget in bytes (dirty thresholds: background 10 %, hard 20 %).
    pub cache_bytes: u64,
    /// Largest folio order.
    pub max_order: u32,
    /// Engine tuning.
    pub iomap: IomapConfig,
    /// Bytes one background writeback pass writes at most.
    pub writeback_chunk_bytes: u64,
}

impl MountOptions {
    /// A mount with a page cache of `cache_bytes`, default folio orders and tuning.
    pub fn new(cache_bytes: u64) -> Self {
        Self {
            cache_bytes,
            max_order: DEFAULT_MAX_ORDER,
            iomap: IomapConfig::default(),
            writeback_chunk_bytes: 16 << 20,
        }
    }
}

/// What one [`FrondFs::background_work`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackgroundReport {
    /// Completed ioends finished.
    pub completions: usize,
    /// Bytes of folios background writeback started.
    pub written_bytes: u64,
    /// Bytes of clean cache reclaimed.
    pub reclaimed_bytes: u64,
    /// In-core inodes evicted.
    pub evicted: usize,
}

/// A mounted frond filesystem. See the module docs.
pub struct FrondFs {
    pub(crate) frond: Arc<Frond>,
    pub(crate) ctx: Arc<IomapContext>,
    pub(crate) cache: Arc<PageCache>,
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) opts: MountOptions,
    pub(crate) inodes: Mutex<BTreeMap<u64, Arc<Inode>>>,
    /// Namespace calls, open and last close.
    pub(crate) ns: Mutex<()>,
}

impl FrondFs {
    /// Mounts the frond filesystem on `dev` (usually a [`Queue`](crate::block::Queue) in front of
    /// the driver). A corrupt image is refused with the reason.
    pub fn mount(
        dev: Arc<dyn BlockDevice>,
        platform: Arc<dyn Platform>,
        opts: MountOptions,
    ) -> core::result::Result<Arc<Self>, MountError> {
        let frond = Arc::new(Frond::mount(dev.clone(), platform.clone())?);
        let bs = frond.block_size() as u64;
        let mut cc = CacheConfig::new(opts.cache_bytes);
        cc.max_order = opts.max_order;
        let cache = PageCache::new(platform.clone(), cc)?;
        let ctx = IomapContext::new(dev, cache.clone(), bs, opts.iomap)?;
        let fs = Arc::new(Self {
            frond,
            ctx,
            cache: cache.clone(),
            platform,
            opts,
            inodes: Mutex::new(BTreeMap::new()),
            ns: Mutex::new(()),
        });
        cache.set_writeback_hooks(Arc::new(MountHooks::new(&fs)));
        Ok(fs)
    }

    /// Writes everything back and unmounts (the log is left clean). `EBUSY` while another
    /// handle of the mount exists (an open [`File`](super::File) holds one); the caller's
    /// handle is consumed either way.
    pub fn unmount(self: Arc<Self>) -> Result<()> {
        self.sync()?;
        let fs = Arc::try_unwrap(self).map_err(|_| Errno::EBUSY)?;
        fs.cache.clear_writeback_hooks();
        let inodes: Vec<Arc<Inode>> = core::mem::take(&mut *fs.inodes.lock()).into_values().collect();
        for i in &inodes {
            i.file().mapping().truncate(0);
        }
        drop(inodes);
        let FrondFs { frond, .. } = fs;
        let frond = Arc::try_unwrap(frond).map_err(|_| Errno::EBUSY)?;
        frond.unmount()
    }

    /// The root directory.
    pub fn root(&self) -> u64 {
        self.frond.root_ino()
    }

    /// The metadata layer (for tools and tests).
    pub fn frond(&self) -> &Arc<Frond> {
        &self.frond
    }

    /// The engine context.
    pub fn ctx(&self) -> &Arc<IomapContext> {
        &self.ctx
    }

    /// The page cache of this mount.
    pub fn cache(&self) -> &Arc<PageCache> {
        &self.cache
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<dyn Platform> {
        &self.platform
    }

    /// Filesystem block size.
    pub fn block_size(&self) -> u64 {
        self.ctx.block_size()
    }

    /// The largest file size.
    pub fn max_file_size(&self) -> u64 {
        MAX_FILE_SIZE.min(super::mapping::MAX_BLOCKS.saturating_mul(self.block_size()))
    }

    /// Filesystem statistics.
    pub fn statfs(&self) -> Result<StatFs> {
        self.frond.statfs()
    }

    /// How many inodes are in core.
    pub fn cached_inodes(&self) -> usize {
        self.inodes.lock().len()
    }

    /// The in-core inodes (a snapshot).
    pub(crate) fn inode_list(&self) -> Vec<Arc<Inode>> {
        self.inodes.lock().values().cloned().collect()
    }

    /// The in-core inode `ino`, loaded if needed.
    pub(crate) fn iget(&self, ino: u64) -> Result<Arc<Inode>> {
        if let Some(i) = self.inodes.lock().get(&ino) {
            return Ok(i.clone());
        }
        let st = self.frond.stat(ino)?;
        let file = self.ctx.new_file(st.size)?;
        let inode = Inode::new(&self.frond, ino, st.mode, file);
        let mut t = self.inodes.lock();
        Ok(t.entry(ino).or_insert(inode).clone())
    }

    /// The in-core inode `ino` if it is loaded.
    pub(crate) fn cached_inode(&self, ino: u64) -> Option<Arc<Inode>> {
        self.inodes.lock().get(&ino).cloned()
    }

    /// Drops `ino` from the table with its cache (dirty data is discarded: its blocks are
    /// about to be freed).
    pub(crate) fn forget(&self, ino: u64) {
        let gone = self.inodes.lock().remove(&ino);
        if let Some(i) = gone {
            i.file().mapping().truncate(0);
        }
    }

    /// Writes back every file's dirty data, waits for it, records pending times, and commits
    /// (PREFLUSH + FUA), or flushes the device when nothing needed committing (`syncfs`).
    /// Returns the first error.
    pub fn sync(&self) -> Result<()> {
        let mut first = None;
        for i in self.inode_list() {
            if let Err(e) = write_and_wait(i.file(), i.ops(), 0, u64::MAX) {
                first.get_or_insert(e);
            }
            if let Err(e) = i.ops.flush_times() {
                first.get_or_insert(e);
            }
        }
        self.ctx.process_completions();
        if let Some(e) = first {
            return Err(e);
        }
        self.frond.sync()
    }

    /// Writes back every file and drops all clean cached data (Linux's `sync; echo 1 >
    /// drop_caches`): later reads come from the device. Returns the first error.
    pub fn drop_caches(&self) -> Result<()> {
        self.sync()?;
        for i in self.inode_list() {
            // Clean after the sync; a folio dirtied meanwhile stays cached (not an error).
            let _ = i.file().mapping().invalidate_range(0, u64::MAX);
        }
        Ok(())
    }

    /// Background writeback of up to `budget` bytes over the inodes with dirty cache; returns
    /// the bytes started.
    pub(crate) fn writeback_some(&self, budget: u64) -> u64 {
        let mut left = budget;
        for i in self.inode_list() {
            if left == 0 {
                break;
            }
            if !i.file().has_dirty_cache(0, u64::MAX) {
                continue;
            }
            let mode = WritebackMode::Background { budget_bytes: left };
            if let Ok(out) = writeback_range(i.file(), i.ops(), 0, u64::MAX, mode) {
                left = left.saturating_sub(out.bytes);
            }
        }
        budget - left
    }

    /// The work a kernel runs from a worker or its idle loop: finish completions, write back
    /// dirty data above the background threshold (one chunk), reclaim clean cache over budget,
    /// evict closed clean inodes beyond [`INODE_TABLE_TARGET`].
    pub fn background_work(&self) -> BackgroundReport {
        let mut r = BackgroundReport::default();
        self.ctx.device().poll();
        r.completions = self.ctx.process_completions();
        let dirty = self.cache.dirty_bytes();
        let threshold = self.opts.cache_bytes / 10;
        if dirty > threshold {
            r.written_bytes = self.writeback_some(self.opts.writeback_chunk_bytes.min(dirty));
        }
        let before = self.cache.cached_bytes();
        self.cache.shrink_to_budget();
        r.reclaimed_bytes = before.saturating_sub(self.cache.cached_bytes());
        r.evicted = self.evict(INODE_TABLE_TARGET);
        r
    }

    /// Evicts closed inodes without dirty or under-writeback cache until at most `target`
    /// remain; returns how many were evicted.
    pub fn evict(&self, target: usize) -> usize {
        let _ns = self.ns.lock();
        let victims: Vec<Arc<Inode>> = {
            let t = self.inodes.lock();
            if t.len() <= target {
                return 0;
            }
            t.values()
                .filter(|i| Arc::strong_count(i) == 1 && i.open_count() == 0 && !i.has_dirty())
                .take(t.len() - target)
                .cloned()
                .collect()
        };
        let mut n = 0;
        for i in victims {
            let mut t = self.inodes.lock();
            // Still unused (strong count: the table and `i`)?
            if Arc::strong_count(&i) == 2 && i.open_count() == 0 && !i.has_dirty() {
                t.remove(&i.ino);
                drop(t);
                i.file().mapping().truncate(0);
                n += 1;
            }
        }
        n
    }

    /// Writes back everything and checks the filesystem (frond's fsck after a checkpoint).
    pub fn fsck(&self) -> Result<FsckReport> {
        self.sync()?;
        self.frond.fsck()
    }
}
