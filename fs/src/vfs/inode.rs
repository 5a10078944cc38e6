//! The in-core inode of the file API: the engine's per-file object, frond's mapping callback
//! object, the rw lock and the open count.
//!
//! Owns [`Inode`] (one per frond inode in use: in the mount's inode table while it is open or
//! has cached data) and `InodeOps`, the object implementing
//! [`IomapOps`](crate::iomap::IomapOps) for it (in `mapping`). `InodeOps` holds the map lock:
//! every change of the inode's extent maps made through the file API runs under it and bumps
//! the page-cache mapping's sequence (the validity cookie of every iomap) before releasing it,
//! so "look up + read the sequence" in the mapping callback is atomic against changes.
//!
//! Lock order: rw lock > (engine locks) > map lock > frond's metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `struct xfs_inode` (in-core), `i_rwsem`, `i_mapping` | [`Inode`] |
//! | `ip->i_df` / `i_cowfp` sequence numbers, `xfs_iomap_valid` | the mapping sequence bumped under the map lock |

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use spin::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::frond::{Frond, SetAttr, S_IFDIR, S_IFMT, S_IFREG};
use crate::iomap::{IomapFile, IomapOps};
use crate::Result;

/// frond's side of the engine for one inode (see `mapping` for the callbacks).
pub(crate) struct InodeOps {
    pub(crate) ino: u64,
    pub(crate) frond: Arc<Frond>,
    pub(crate) file: Arc<IomapFile>,
    pub(crate) bs: u64,
    /// Serialises extent-map changes with the sequence bump (see the module docs).
    pub(crate) map_lock: Mutex<()>,
    /// Data was written since the times were last recorded (mtime / ctime pending).
    pub(crate) times_dirty: AtomicBool,
}

impl InodeOps {
    /// Runs `f` (a change of the extent maps) under the map lock and bumps the mapping
    /// sequence, so every iomap built before it is stale.
    pub(crate) fn mutate<T>(&self, f: impl FnOnce(&Frond) -> Result<T>) -> Result<T> {
        let _g = self.map_lock.lock();
        let r = f(&self.frond);
        self.file.mapping().bump_seq();
        r
    }

    /// Records pending modification times (a transaction joining the running one).
    pub(crate) fn flush_times(&self) -> Result<()> {
        if self.times_dirty.swap(false, Ordering::AcqRel) {
            let now = self.file.ctx().platform().now_ns() as i64;
            let a = SetAttr { mtime: Some(now), ..SetAttr::default() };
            if let Err(e) = self.frond.setattr(self.ino, &a) {
                self.times_dirty.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Linux's `i_rwsem`: a reader-writer lock that lets a waiting writer in before new readers
/// (a stream of overlapping readers cannot starve a writer). Not reentrant.
pub(crate) struct RwSem {
    lock: RwLock<()>,
    writers_waiting: AtomicUsize,
}

impl RwSem {
    fn new() -> Self {
        Self { lock: RwLock::new(()), writers_waiting: AtomicUsize::new(0) }
    }

    /// Shared: readers.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ()> {
        loop {
            if self.writers_waiting.load(Ordering::Acquire) == 0 {
                if let Some(g) = self.lock.try_read() {
                    return g;
                }
            }
            core::hint::spin_loop();
        }
    }

    /// Exclusive: writers, truncate, fallocate, clone.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, ()> {
        self.writers_waiting.fetch_add(1, Ordering::AcqRel);
        let g = self.lock.write();
        self.writers_waiting.fetch_sub(1, Ordering::AcqRel);
        g
    }
}

/// One in-core inode. See the module docs.
pub struct Inode {
    pub(crate) ino: u64,
    pub(crate) mode: u32,
    pub(crate) ops: Arc<InodeOps>,
    /// The same object as `ops`, as the engine takes it.
    pub(crate) dyn_ops: Arc<dyn IomapOps>,
    /// Linux's `i_rwsem`.
    pub(crate) rw: RwSem,
    /// Open files of this inode.
    pub(crate) opens: AtomicU32,
}

impl Inode {
    pub(crate) fn new(frond: &Arc<Frond>, ino: u64, mode: u32, file: Arc<IomapFile>) -> Arc<Self> {
        let bs = file.block_size();
        let ops = Arc::new(InodeOps {
            ino,
            frond: frond.clone(),
            file,
            bs,
            map_lock: Mutex::new(()),
            times_dirty: AtomicBool::new(false),
        });
        let dyn_ops: Arc<dyn IomapOps> = ops.clone();
        Arc::new(Self { ino, mode, ops, dyn_ops, rw: RwSem::new(), opens: AtomicU32::new(0) })
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The engine's file object.
    pub fn file(&self) -> &Arc<IomapFile> {
        &self.ops.file
    }

    /// The mapping callbacks as the engine takes them.
    pub fn ops(&self) -> &Arc<dyn IomapOps> {
        &self.dyn_ops
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    /// Whether this is a regular file.
    pub fn is_reg(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether it has dirty cache or cache under writeback.
    pub(crate) fn has_dirty(&self) -> bool {
        self.file().needs_writeback(0, u64::MAX)
    }

    /// Open files of this inode.
    pub(crate) fn open_count(&self) -> u32 {
        self.opens.load(Ordering::Acquire)
    }
}
