//! A small in-memory extent filesystem over any [`BlockDevice`]: the engine's **test double**.
//! It is compiled in normal builds so the portable suite ([`selftest`](super::selftest)) can run
//! in any kernel, but it is not a real filesystem (see frond for that).
//!
//! What it offers the tests:
//!
//! - every mapping type: HOLE, DELALLOC (the default write policy, converted to UNWRITTEN in the
//!   writeback mapping call), MAPPED, UNWRITTEN (fallocate, or the `Unwritten` policy), INLINE
//!   (inline files up to [`MemFsConfig::inline_capacity`], moved to blocks when a write grows
//!   past it), and the NEW and BOUNDARY flags;
//! - direct I/O: DIRECT writes allocate UNWRITTEN + NEW blocks (MAPPED under the `Mapped`
//!   policy); inline data and DELALLOC answer `ENOTBLK` (continue buffered);
//! - reflink: block reference counts ([`RefCounts`]), a COW fork per file (staging
//!   reservations and allocations, remapped at completion or cancelled on error), clone and
//!   dedupe ([`MemFile::clone_range_from`], [`MemFile::dedupe_from`]), unshare, and
//!   [`MemFs::check`], which verifies every block's reference count against the extents;
//! - DAX: [`MemFs::set_dax`] makes the files' `dax_*` operations copy through a
//!   [`DaxDevice`] (DAX writes allocate MAPPED + NEW blocks, staging at once);
//! - completion work: unwritten conversion, COW remap / cancel and the on-disk size, logged for
//!   inspection;
//! - counters of `next` calls per operation, closing calls, validity checks, commits;
//! - hooks that run at a chosen mapping call or validity check (to change the mapping between
//!   the mapping call and the folio lock);
//! - persistence: [`MemFs::commit`] writes one checksummed metadata record (files, committed
//!   sizes, inline bytes, allocated extents) at the start of the device with PREFLUSH + FUA, and
//!   [`MemFs::mount`] reads it back, so durability and crash tests can remount.
//!
//! Simplifications (it is a double): one metadata record rewritten per commit; blocks of the
//! `Mapped` policy are allocated before their data is written (a crash may expose stale blocks,
//! which the delalloc and unwritten policies avoid); no free-space accounting for delalloc
//! reservations (ENOSPC shows up at conversion); reference counts per block in memory
//! (rebuilt from the extents at mount); COW staging is not persistent (a remount frees it, as
//! XFS recovers its COW fork at mount).
//!
//! Lock order: file state > filesystem state > hook list; commit snapshots the file list before
//! locking files. The engine is never called with a test-fs lock held, and `next` /
//! `is_valid` never wait for folios; unstuffing inline data writes its block synchronously
//! (device I/O only, no completion processing).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | XFS data fork + delalloc + unwritten extents | [`ExtentMap`] per [`MemFile`] |
//! | XFS COW fork, refcount B+tree, `xfs_reflink_*` | `cow` ExtentMap per file, [`RefCounts`], `cow.rs` |
//! | `xfs_buffered_write_iomap_begin/end`, `xfs_map_blocks`, `xfs_end_ioend` | `impl IomapOps for MemFile` |
//! | log force on fsync | [`MemFs::commit`] |
//! | gfs2 stuffed inodes | inline files |

mod alloc_map;
mod check;
mod cow;
pub mod extents;
mod file;
mod file_io;
mod hooks;
pub mod meta;
mod ops_impl;
mod refcount;
pub mod trace;

pub use alloc_map::BlockAlloc;
pub use extents::{ExtKind, Extent, ExtentMap};
pub use file::{AllocPolicy, MemFile};
pub use hooks::{HookFn, HookPoint};
pub use refcount::RefCounts;
pub use trace::{TraceCounts, TraceDisk, TraceOp};

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;

use self::hooks::{FsHooks, HookSlot};
use self::meta::FileRecord;
use super::context::IomapContext;
use super::dax::DaxDevice;
use super::types::{IoendDone, IomapOp};
use crate::block::sync::{read_at, write_at};
use crate::block::{BioFlags, BlockDevice};
use crate::{Errno, Result};

/// How a [`MemFs`] is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemFsConfig {
    /// Block size (must equal the context's).
    pub block_size: u64,
    /// Blocks at the start of the device reserved for the metadata record.
    pub meta_blocks: u64,
    /// Largest inline file in bytes (at most one block and one page).
    pub inline_capacity: usize,
    /// How new files allocate on write.
    pub policy: AllocPolicy,
}

impl MemFsConfig {
    /// 64 KiB of metadata, 256 bytes of inline capacity, delayed allocation.
    pub fn new(block_size: u64) -> Self {
        Self {
            block_size,
            meta_blocks: (65536 / block_size).max(1),
            inline_capacity: 256,
            policy: AllocPolicy::Delalloc,
        }
    }
}

/// Counters of the filesystem's callbacks (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemFsCounts {
    /// `next` calls for buffered reads (op empty), not counting closing calls.
    pub map_read: u64,
    /// ... for WRITE.
    pub map_write: u64,
    /// ... for ZERO.
    pub map_zero: u64,
    /// ... for WRITEBACK.
    pub map_writeback: u64,
    /// ... for anything else.
    pub map_other: u64,
    /// Closing calls (`len == 0`).
    pub finish: u64,
    /// `is_valid` calls.
    pub valid_checks: u64,
    /// `ioend_done` calls.
    pub ioend_done: u64,
    /// Commits that wrote the metadata record.
    pub commits: u64,
    /// `commit` calls that had nothing to write.
    pub empty_commits: u64,
}

impl MemFsCounts {
    /// Mapping calls of every operation (closing calls excluded).
    pub fn maps(&self) -> u64 {
        self.map_read + self.map_write + self.map_zero + self.map_writeback + self.map_other
    }
}

#[derive(Default)]
struct Counters {
    map_read: AtomicU64,
    map_write: AtomicU64,
    map_zero: AtomicU64,
    map_writeback: AtomicU64,
    map_other: AtomicU64,
    finish: AtomicU64,
    valid_checks: AtomicU64,
    ioend_done: AtomicU64,
    commits: AtomicU64,
    empty_commits: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct FsState {
    alloc: BlockAlloc,
    refs: RefCounts,
    files: BTreeMap<u64, Arc<MemFile>>,
    next_id: u64,
}

/// The test filesystem. See the module documentation.
pub struct MemFs {
    me: Weak<MemFs>,
    ctx: Arc<IomapContext>,
    cfg: MemFsConfig,
    state: Mutex<FsState>,
    meta_dirty: AtomicBool,
    counters: Counters,
    hooks: Mutex<Vec<HookSlot>>,
    ioend_log: Mutex<Vec<IoendDone>>,
    dax: Mutex<Option<Arc<dyn DaxDevice>>>,
}

impl MemFs {
    fn new(ctx: &Arc<IomapContext>, cfg: MemFsConfig) -> Result<Arc<Self>> {
        let bs = cfg.block_size;
        let total = ctx.device().info().capacity_bytes() / bs;
        let ok = bs == ctx.block_size()
            && cfg.meta_blocks > 0
            && cfg.meta_blocks < total
            && cfg.inline_capacity as u64 <= bs.min(crate::platform::PAGE_SIZE as u64);
        if !ok {
            return Err(Errno::EINVAL);
        }
        let fs = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            ctx: ctx.clone(),
            cfg,
            state: Mutex::new(FsState {
                alloc: BlockAlloc::new(cfg.meta_blocks, total),
                refs: RefCounts::new(),
                files: BTreeMap::new(),
                next_id: 1,
            }),
            meta_dirty: AtomicBool::new(false),
            counters: Counters::default(),
            hooks: Mutex::new(Vec::new()),
            ioend_log: Mutex::new(Vec::new()),
            dax: Mutex::new(None),
        });
        ctx.cache().set_writeback_hooks(Arc::new(FsHooks::new(&fs)));
        Ok(fs)
    }

    /// A new, empty filesystem on the context's device (writes an empty metadata record) with
    /// its page-cache hooks registered.
    pub fn format(ctx: &Arc<IomapContext>, cfg: MemFsConfig) -> Result<Arc<Self>> {
        let fs = Self::new(ctx, cfg)?;
        fs.meta_dirty.store(true, Ordering::Release);
        fs.commit()?;
        Ok(fs)
    }

    /// Reads the filesystem from the context's device: `EINVAL` without a record, `EUCLEAN` for
    /// a corrupt one (bad checksum, overlapping or out-of-range extents).
    pub fn mount(ctx: &Arc<IomapContext>, cfg: MemFsConfig) -> Result<Arc<Self>> {
        let fs = Self::new(ctx, cfg)?;
        let mut buf = vec![0u8; (cfg.meta_blocks * cfg.block_size) as usize];
        read_at(&**ctx.device(), ctx.platform(), 0, &mut buf)?;
        let records = meta::decode(&buf)?;
        let mut max_id = 0;
        for r in records {
            let file = MemFile::from_record(&fs, &r)?;
            let mut st = fs.state.lock();
            for e in &r.extents {
                let d = e.kind.disk().ok_or(Errno::EUCLEAN)?;
                if st.alloc.take(d, e.len).is_err() {
                    // Shared with an extent seen before (a clone): one more owner per block.
                    let FsState { alloc, refs, .. } = &mut *st;
                    for b in d..d.checked_add(e.len).ok_or(Errno::EUCLEAN)? {
                        if alloc.is_free(b) {
                            alloc.take(b, 1).map_err(|_| Errno::EUCLEAN)?;
                        } else {
                            refs.add_owner(b);
                        }
                    }
                }
            }
            if st.files.insert(r.id, file).is_some() {
                return Err(Errno::EUCLEAN);
            }
            max_id = max_id.max(r.id);
        }
        fs.state.lock().next_id = max_id + 1;
        Ok(fs)
    }

    /// The engine context.
    pub fn ctx(&self) -> &Arc<IomapContext> {
        &self.ctx
    }

    /// Makes file data reachable through `dax` (the same bytes as the context's device): the
    /// files' `dax_*` operations use it.
    pub fn set_dax(&self, dax: Arc<dyn DaxDevice>) {
        *self.dax.lock() = Some(dax);
    }

    /// The DAX device, if set.
    pub fn dax(&self) -> Option<Arc<dyn DaxDevice>> {
        self.dax.lock().clone()
    }

    /// The layout.
    pub fn config(&self) -> &MemFsConfig {
        &self.cfg
    }

    /// Block size.
    pub fn block_size(&self) -> u64 {
        self.cfg.block_size
    }

    /// Creates an empty file using the configured policy.
    pub fn create(&self) -> Result<Arc<MemFile>> {
        self.create_with(self.cfg.policy, false)
    }

    /// Creates an empty inline file.
    pub fn create_inline(&self) -> Result<Arc<MemFile>> {
        self.create_with(self.cfg.policy, true)
    }

    /// Creates an empty file with `policy`, inline or not.
    pub fn create_with(&self, policy: AllocPolicy, inline: bool) -> Result<Arc<MemFile>> {
        let me = self.me.upgrade().ok_or(Errno::EIO)?;
        let mut st = self.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        drop(st);
        let file = MemFile::new(&me, id, policy, inline.then(|| vec![0u8; self.cfg.inline_capacity]))?;
        self.state.lock().files.insert(id, file.clone());
        self.mark_meta_dirty();
        Ok(file)
    }

    /// The file with `id`.
    pub fn file(&self, id: u64) -> Option<Arc<MemFile>> {
        self.state.lock().files.get(&id).cloned()
    }

    /// Every file.
    pub fn files(&self) -> Vec<Arc<MemFile>> {
        self.state.lock().files.values().cloned().collect()
    }

    /// Free blocks.
    pub fn free_blocks(&self) -> u64 {
        self.state.lock().alloc.free_blocks()
    }

    /// Whether disk block `block` is free.
    pub fn is_block_free(&self, block: u64) -> bool {
        self.state.lock().alloc.is_free(block)
    }

    pub(crate) fn alloc_blocks(&self, want: u64, goal: Option<u64>) -> Result<(u64, u64)> {
        self.state.lock().alloc.alloc(want, goal).ok_or(Errno::ENOSPC)
    }

    pub(crate) fn take_blocks(&self, start: u64, len: u64) -> Result<()> {
        self.state.lock().alloc.take(start, len)
    }

    /// Drops one owner of each block of `[start, start + len)` (freeing unshared ones).
    pub(crate) fn put_blocks(&self, start: u64, len: u64) -> Result<()> {
        let mut st = self.state.lock();
        let FsState { alloc, refs, .. } = &mut *st;
        refs.put(alloc, start, len)
    }

    /// Adds one owner to each block of `[start, start + len)` (reflink).
    pub(crate) fn share_blocks(&self, start: u64, len: u64) -> Result<()> {
        let st = &mut *self.state.lock();
        st.refs.share(&st.alloc, start, len)
    }

    /// From disk block `block` on (at most `max` blocks): whether it is shared, and how many
    /// blocks in a row are in the same state.
    pub(crate) fn shared_run(&self, block: u64, max: u64) -> (bool, u64) {
        self.state.lock().refs.run(block, max)
    }

    /// The reference count of disk block `block` (0: free).
    pub fn refcount(&self, block: u64) -> u32 {
        let st = self.state.lock();
        st.refs.count(&st.alloc, block)
    }

    /// Every shared block with its count.
    pub fn shared_blocks(&self) -> Vec<(u64, u32)> {
        self.state.lock().refs.shared_blocks()
    }

    /// Total blocks of the device and blocks in use (for consistency checks).
    pub(crate) fn space(&self) -> (u64, u64) {
        let total = self.ctx.device().info().capacity_bytes() / self.cfg.block_size;
        (total, total - self.cfg.meta_blocks - self.free_blocks())
    }

    pub(crate) fn mark_meta_dirty(&self) {
        self.meta_dirty.store(true, Ordering::Release);
    }

    /// Whether metadata changed since the last commit.
    pub fn meta_dirty(&self) -> bool {
        self.meta_dirty.load(Ordering::Acquire)
    }

    /// Writes the metadata record if anything changed (PREFLUSH + FUA); returns whether it
    /// wrote.
    pub fn commit(&self) -> Result<bool> {
        if !self.meta_dirty.swap(false, Ordering::AcqRel) {
            bump(&self.counters.empty_commits);
            return Ok(false);
        }
        let files = self.files();
        let records: Vec<FileRecord> = files.iter().map(|f| f.record()).collect();
        let bs = self.cfg.block_size as usize;
        let written = meta::encode(&records, self.cfg.meta_blocks as usize * bs).and_then(|mut buf| {
            buf.resize(buf.len().div_ceil(bs) * bs, 0);
            let dev: &dyn BlockDevice = &**self.ctx.device();
            write_at(dev, self.ctx.platform(), 0, &buf, BioFlags::PREFLUSH | BioFlags::FUA)
        });
        if let Err(e) = written {
            self.meta_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        bump(&self.counters.commits);
        Ok(true)
    }

    /// A snapshot of the counters.
    pub fn counts(&self) -> MemFsCounts {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemFsCounts {
            map_read: g(&c.map_read),
            map_write: g(&c.map_write),
            map_zero: g(&c.map_zero),
            map_writeback: g(&c.map_writeback),
            map_other: g(&c.map_other),
            finish: g(&c.finish),
            valid_checks: g(&c.valid_checks),
            ioend_done: g(&c.ioend_done),
            commits: g(&c.commits),
            empty_commits: g(&c.empty_commits),
        }
    }

    /// Resets the counters and the ioend log.
    pub fn reset_counts(&self) {
        let c = &self.counters;
        for a in [
            &c.map_read,
            &c.map_write,
            &c.map_zero,
            &c.map_writeback,
            &c.map_other,
            &c.finish,
            &c.valid_checks,
            &c.ioend_done,
            &c.commits,
            &c.empty_commits,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.ioend_log.lock().clear();
    }

    /// The completion work done so far (each `ioend_done` call, in order).
    pub fn ioend_log(&self) -> Vec<IoendDone> {
        self.ioend_log.lock().clone()
    }

    pub(crate) fn count_map(&self, op: IomapOp) {
        let c = &self.counters;
        let counter = if op.is_empty() {
            &c.map_read
        } else if op.contains(IomapOp::WRITEBACK) {
            &c.map_writeback
        } else if op.contains(IomapOp::ZERO) {
            &c.map_zero
        } else if op.contains(IomapOp::WRITE) {
            &c.map_write
        } else {
            &c.map_other
        };
        bump(counter);
    }

    pub(crate) fn count_finish(&self) {
        bump(&self.counters.finish);
    }

    pub(crate) fn count_valid(&self) {
        bump(&self.counters.valid_checks);
    }

    pub(crate) fn log_ioend(&self, done: &IoendDone) {
        bump(&self.counters.ioend_done);
        self.ioend_log.lock().push(*done);
    }
}
