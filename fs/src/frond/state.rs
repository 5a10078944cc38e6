//! The mounted filesystem's metadata state and its operation/transaction discipline.
//!
//! Owns [`FsState`]: the superblock, buffer cache, journal, root block, allocator bookkeeping
//! (busy lists, reservations), the in-core inodes, and the shutdown flag. Every metadata
//! operation runs inside [`FsState::op`], which
//!
//! 1. refuses to start on a shut-down filesystem (`EIO`);
//! 2. makes room in the log for the operation's worst case (commit, then checkpoint if needed);
//! 3. reserves the operation's worst-case block needs up front (`ENOSPC` before anything
//!    changes; the busy lists are flushed first when only busy blocks stand in the way);
//! 4. runs the operation; on success encodes the changed root block and inodes into their
//!    buffers (unsealed: their CRCs are computed once, when the transaction commits, by the
//!    buffers' sealers, not at every operation); on failure after anything was changed, shuts the filesystem down (the running
//!    transaction is never committed, so the disk keeps the last committed state).
//!
//! The running transaction accumulates operations until [`FsState::commit`] (sync/fsync, log
//! pressure, a large transaction, unmount). [`FsState::checkpoint`] commits and then writes
//! everything home, emptying the log.
//!
//! Lock order: the whole state sits under the filesystem's metadata lock (see `mount`).
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_trans_alloc(resblks)` + `xfs_trans_commit` | [`FsState::op`] (reservation, then join the running transaction) |
//! | `xfs_log_force` | [`FsState::commit`] |
//! | `xfs_ail_push_all_sync` | [`FsState::checkpoint`] |
//! | `xfs_force_shutdown(SHUTDOWN_CORRUPT_INCORE)` on a dirty transaction cancel | [`FsState::shut_down`] |
//! | `m_resblks` reserve pool, `m_alloc_set_aside` | `resblks`, `set_aside` |
//! | busy extents (`xfs_extent_busy`) | `busy_commit` (freed data) / `busy_ckpt` (freed metadata) |

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;

use super::btree::{NodeStore, Spec, TreeKind};
use super::buf::{seal_header, BufCache, BufRef};
use super::extset::ExtentSet;
use super::format::{verify_header, Corrupt, Error, FResult, MAGIC_BTREE, MAGIC_ROOT};
use super::inode::Inode;
use super::io::MetaIo;
use super::journal::Journal;
use super::superblock::{RootBlock, Superblock, FREELIST_CAP};
use crate::Errno;

/// Blocks never handed out by ordinary reservations (free-list refills and free-space tree
/// growth draw on them), like XFS's `m_alloc_set_aside`: the free list's capacity, or a
/// sixteenth of a small data area (at least 16 blocks).
pub fn set_aside(data_blocks: u64) -> u64 {
    (data_blocks / 16).clamp(16, FREELIST_CAP as u64)
}

/// In-core inodes kept before clean ones are evicted.
pub const INODE_CACHE: usize = 4096;

/// How an operation reserves space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Ordinary operations: may not touch the reserve pool.
    Normal,
    /// I/O completion work (unwritten conversion, COW remap, size updates, delalloc
    /// conversion) that must not fail for space: may use the reserve pool.
    Reserve,
}

/// The metadata state of one mounted filesystem. See the module docs.
pub struct FsState {
    /// Device access.
    pub io: MetaIo,
    /// Geometry.
    pub sb: Superblock,
    /// Cached metadata blocks.
    pub cache: BufCache,
    /// The log.
    pub journal: Journal,
    /// The root block as of the running transaction.
    pub root: RootBlock,
    /// The root block changed since it was last encoded into its buffer.
    pub root_dirty: bool,
    /// Blocks freed in the running transaction (not reusable until it commits).
    pub busy_commit: ExtentSet,
    /// Freed metadata blocks (not reusable until the next checkpoint).
    pub busy_ckpt: ExtentSet,
    /// Blocks reserved by delayed allocations (in-core only).
    pub delalloc_reserved: u64,
    /// The reserve pool for completion-time work.
    pub resblks: u64,
    /// Blocks kept back for the allocator's own needs ([`set_aside`]).
    pub set_aside: u64,
    /// Bumped by every metadata change (detects "failed after changing something").
    pub changes: u64,
    /// `changes` at the start of the running operation, moved forward over self-contained
    /// changes (a free-list refill) that leave the metadata consistent on their own.
    pub op_base: u64,
    /// Set when an operation failed half-way: everything after fails with `EIO`.
    pub shutdown: Option<String>,
    /// In-core inodes.
    pub inodes: BTreeMap<u64, Inode>,
    /// In-core inodes changed since they were last encoded into their chunk buffers.
    pub dirty_inodes: BTreeSet<u64>,
    /// Inode chunks with free slots (loaded on first inode allocation).
    pub free_chunks: Option<BTreeSet<u64>>,
    /// The last corruption reported (for messages).
    pub last_corruption: Option<String>,
    /// Inodes held open by the file API (open count per inode): dropping their last link puts
    /// them on the orphan list but does not free them until [`Frond::unpin`](super::Frond::unpin).
    pub pinned: BTreeMap<u64, u32>,
}

impl FsState {
    /// A state over `io` for geometry `sb`, with the given journal and root block.
    pub fn new(io: MetaIo, sb: Superblock, journal: Journal, root: RootBlock) -> Self {
        let data = sb.block_count - sb.data_start;
        let cache_blocks = ((32usize << 20) >> sb.block_log).max(256);
        Self {
            io,
            sb,
            cache: BufCache::new(cache_blocks),
            journal,
            root,
            root_dirty: false,
            busy_commit: ExtentSet::new(),
            busy_ckpt: ExtentSet::new(),
            delalloc_reserved: 0,
            resblks: (data / 20).min(8192),
            set_aside: set_aside(data),
            changes: 0,
            op_base: 0,
            shutdown: None,
            inodes: BTreeMap::new(),
            dirty_inodes: BTreeSet::new(),
            free_chunks: None,
            last_corruption: None,
            pinned: BTreeMap::new(),
        }
    }

    /// Block size in bytes.
    pub fn bs(&self) -> usize {
        self.sb.block_size()
    }

    /// Marks the root block changed.
    pub fn touch_root(&mut self) {
        self.root_dirty = true;
        self.changes += 1;
    }

    /// Blocks an ordinary (or reserve-pool) reservation can still take.
    pub fn available(&self, pool: Pool) -> u64 {
        let keep = self.set_aside
            + if pool == Pool::Normal { self.resblks } else { 0 }
            + self.delalloc_reserved
            + self.busy_commit.total()
            + self.busy_ckpt.total();
        self.root.free_blocks.saturating_sub(keep)
    }

    /// Records corruption seen at run time and returns it as an error.
    pub fn corrupt(&mut self, c: Corrupt) -> Error {
        log::error!("frond: corruption: {c}");
        self.last_corruption = Some(c.0.clone());
        Error::Corrupt(c)
    }

    /// Shuts the filesystem down after a failure that left the running transaction half-done.
    pub fn shut_down(&mut self, why: &Error) {
        if self.shutdown.is_none() {
            log::error!("frond: shutting down after a failed metadata operation: {why}");
            self.shutdown = Some(alloc::format!("{why}"));
        }
        self.cache.discard_running();
        self.inodes.clear();
        self.dirty_inodes.clear();
        self.free_chunks = None;
    }

    /// Runs one metadata operation that may allocate up to `blocks` blocks and dirty about
    /// `log_blocks` metadata blocks. See the module docs.
    pub fn op<T>(
        &mut self,
        blocks: u64,
        log_blocks: usize,
        pool: Pool,
        f: impl FnOnce(&mut Self) -> FResult<T>,
    ) -> FResult<T> {
        if self.shutdown.is_some() {
            return Err(Errno::EIO.into());
        }
        self.ensure_log(log_blocks)?;
        if self.available(pool) < blocks {
            if !self.busy_commit.is_empty() || !self.busy_ckpt.is_empty() {
                self.checkpoint()?;
            }
            if self.available(pool) < blocks {
                return Err(Errno::ENOSPC.into());
            }
        }
        self.op_base = self.changes;
        match f(self) {
            Ok(v) => {
                self.encode_changes()?;
                // Operations are sized so the running transaction always fits the log; one
                // that does not could never commit (the next commit shuts the filesystem down).
                debug_assert!(
                    self.journal.tx_blocks(self.cache.running_count()) <= self.journal.free_blocks(),
                    "running transaction of {} blocks outgrew the log",
                    self.cache.running_count()
                );
                if self.inodes.len() > INODE_CACHE {
                    self.evict_inodes();
                }
                Ok(v)
            }
            Err(e) => {
                if let Error::Corrupt(c) = &e {
                    self.last_corruption = Some(c.0.clone());
                }
                if self.changes != self.op_base {
                    self.shut_down(&e);
                }
                Err(e)
            }
        }
    }

    /// Drops in-core inodes that hold nothing the disk does not: encoded, no delayed
    /// allocation, no COW staging, in-core size equal to the on-disk size.
    pub fn evict_inodes(&mut self) {
        use super::extent::record::ExtState;
        let dirty = &self.dirty_inodes;
        let pinned = &self.pinned;
        self.inodes.retain(|ino, i| {
            dirty.contains(ino)
                || pinned.contains_key(ino)
                || !i.cow.is_empty()
                || i.size != i.disk_size
                || i.dmap.as_ref().is_some_and(|m| m.values().any(|e| e.state == ExtState::Delalloc))
        });
    }

    /// Called at the start of every public call: commits (at a call boundary) when the running
    /// transaction holds more than half of what the log can take, and checkpoints when the log
    /// has no room for half a transaction. So a call normally runs without committing in its
    /// middle; only calls that dirty more than a quarter of the log roll.
    pub fn begin_call(&mut self) -> FResult<()> {
        if self.shutdown.is_some() {
            return Ok(());
        }
        let max = self.journal.max_images();
        let running = self.cache.running_count();
        if running > max / 2 || self.journal.tx_blocks(running + max / 4) > self.journal.free_blocks() {
            self.commit()?;
        }
        if self.journal.tx_blocks(max / 2) > self.journal.free_blocks() {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn ensure_log(&mut self, est: usize) -> FResult<()> {
        let max = self.journal.max_images();
        let est = est.min(max / 4);
        let running = self.cache.running_count();
        // Commit only when the running transaction could not take this operation's worst case:
        // operations stay together in one transaction (atomic together) as long as they fit.
        if running + est > max || self.journal.tx_blocks(running + est) > self.journal.free_blocks() {
            self.commit()?;
        }
        if self.journal.tx_blocks(est) > self.journal.free_blocks() {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Encodes the root block and dirty inodes into their buffers.
    pub fn encode_changes(&mut self) -> FResult<()> {
        if self.root_dirty {
            if self.root.freelist.len() > FREELIST_CAP {
                return Err(Corrupt(alloc::format!(
                    "allocator free list overflowed ({} blocks)",
                    self.root.freelist.len()
                ))
                .into());
            }
            let (blk, sbc) = (self.sb.root_block, self.sb);
            let buf = self.cache.read(&self.io, blk, seal_header, &|b| {
                verify_header(b, MAGIC_ROOT, blk, "root")?;
                RootBlock::decode(b, &sbc).map(|_| ())
            })?;
            // Unsealed: the cache seals the block when the transaction commits.
            self.root.encode_unsealed(&mut buf.data(), blk);
            self.cache.mark_dirty(&buf);
            self.root_dirty = false;
        }
        let dirty = core::mem::take(&mut self.dirty_inodes);
        for ino in dirty {
            self.write_inode(ino)?;
        }
        Ok(())
    }

    /// Makes every change so far durable: commits the running transaction (PREFLUSH + FUA on
    /// the commit record). Returns whether anything was committed.
    pub fn commit(&mut self) -> FResult<bool> {
        if self.shutdown.is_some() {
            return Err(Errno::EIO.into());
        }
        self.encode_changes()?;
        let n = self.cache.running_count();
        if n == 0 {
            return Ok(false);
        }
        if self.journal.tx_blocks(n) > self.journal.free_blocks() {
            // The checkpoint cannot run with uncommitted changes in the buffers; ops are sized
            // so this never happens.
            let e = Error::Errno(Errno::EIO);
            self.shut_down(&e);
            return Err(e);
        }
        let imgs = self.cache.take_running();
        if let Err(e) = self.journal.commit(&self.io, &imgs) {
            self.shut_down(&e);
            return Err(e);
        }
        self.busy_commit.clear();
        Ok(true)
    }

    /// Commits, then writes every committed block home and empties the log.
    pub fn checkpoint(&mut self) -> FResult<()> {
        self.commit()?;
        let logged = self.cache.logged();
        if let Err(e) = self.journal.checkpoint(&self.io, &logged) {
            self.shut_down(&e);
            return Err(e);
        }
        self.cache.checkpointed();
        self.busy_ckpt.clear();
        self.busy_commit.clear();
        Ok(())
    }

    /// Reads a B+tree node block (verified on a disk read).
    fn read_node(&mut self, blk: u64, verify: &dyn Fn(&[u8]) -> Result<(), Corrupt>) -> FResult<BufRef> {
        let r = self.cache.read(&self.io, blk, seal_header, &|b| {
            verify_header(b, MAGIC_BTREE, blk, "btree")?;
            verify(b)
        });
        if let Err(Error::Corrupt(c)) = r {
            return Err(self.corrupt(c));
        }
        r
    }
}

impl NodeStore for FsState {
    fn block_size(&self) -> usize {
        self.bs()
    }

    fn node_limit(&self) -> usize {
        self.sb.node_cap as usize
    }

    fn ptr_range(&self) -> (u64, u64) {
        (self.sb.data_start, self.sb.block_count)
    }

    fn read(&mut self, blk: u64, verify: &dyn Fn(&[u8]) -> Result<(), Corrupt>) -> FResult<BufRef> {
        self.read_node(blk, verify)
    }

    fn dirty(&mut self, buf: &BufRef) {
        self.cache.mark_dirty(buf);
        self.changes += 1;
    }

    fn alloc(&mut self, spec: &Spec) -> FResult<BufRef> {
        let blk = match spec.kind {
            TreeKind::FreeByBlock | TreeKind::FreeBySize => {
                let b =
                    self.root.freelist.pop().ok_or_else(|| {
                        Error::Corrupt(Corrupt(String::from("allocator free list exhausted")))
                    })?;
                self.touch_root();
                b
            }
            _ => self.alloc_meta_block()?,
        };
        self.changes += 1;
        Ok(self.cache.create(blk, self.bs(), seal_header))
    }

    fn free(&mut self, spec: &Spec, blk: u64) -> FResult<()> {
        self.cache.forget(blk);
        self.changes += 1;
        match spec.kind {
            TreeKind::FreeByBlock | TreeKind::FreeBySize => {
                self.root.freelist.push(blk);
                self.touch_root();
                Ok(())
            }
            _ => self.free_meta_block(blk),
        }
    }
}
