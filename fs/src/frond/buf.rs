//! The metadata buffer cache: cached metadata blocks, their transaction state, and their
//! checksums.
//!
//! Owns every in-memory copy of a metadata block. A block is read once, its checksum and header
//! verified by the caller's verifier on that read (never again while cached), and handed out as
//! a [`BufRef`]. Modifying a block means changing its bytes under [`Buf::data`] and calling
//! [`BufCache::mark_dirty`], which joins it to the running transaction. At commit the journal
//! takes the running set ([`BufCache::take_running`]): each block is sealed (checksum computed)
//! and its image logged; the block then waits as "logged" until a checkpoint writes it home.
//! Blocks are never written in place before their image is durable in the log (write-ahead).
//!
//! Clean, unreferenced blocks are evicted beyond a soft capacity (least recently used first).
//! Freed metadata blocks are forgotten ([`BufCache::forget`]) so a stale image is never written
//! over a block that has been reused for data.
//!
//! Lock order: the cache itself lives under the filesystem's metadata lock; each block's bytes
//! have their own spin lock, only ever taken by the metadata lock holder, so any order among
//! block locks is deadlock-free.
//!
//! # Linux <-> here
//!
//! | Linux (XFS / jbd2) | here |
//! |---|---|
//! | `xfs_buf` + `xfs_buf_read` with `b_ops->verify_read` | [`Buf`] + [`BufCache::read`] with a verifier |
//! | `xfs_trans_log_buf` / `jbd2_journal_dirty_metadata` | [`BufCache::mark_dirty`] |
//! | `b_ops->verify_write` + `xfs_update_cksum` at write | the per-block [`Sealer`] run at commit |
//! | `xfs_buf_stale` / `jbd2_journal_forget` | [`BufCache::forget`] |
//! | buffer LRU + shrinker | [`BufCache::evict`] (clean, unreferenced, oldest first) |

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::{Mutex, MutexGuard};

use super::format::{seal, Corrupt, FResult};
use super::io::MetaIo;

/// Computes a block's checksum(s) in place before it is logged or written.
pub type Sealer = fn(&mut [u8]);

/// The default sealer: the common header's CRC over the whole block.
pub fn seal_header(b: &mut [u8]) {
    seal(b)
}

/// One cached metadata block.
pub struct Buf {
    blkno: u64,
    data: Mutex<alloc::boxed::Box<[u8]>>,
}

/// A shared handle to a cached block.
pub type BufRef = Arc<Buf>;

impl Buf {
    /// The block's address.
    pub fn blkno(&self) -> u64 {
        self.blkno
    }

    /// A free-standing buffer (test stores).
    #[cfg(test)]
    pub(crate) fn for_test(blkno: u64, data: Vec<u8>) -> Self {
        Self { blkno, data: Mutex::new(data.into_boxed_slice()) }
    }

    /// The block's bytes (lock held while the guard lives).
    pub fn data(&self) -> MutexGuard<'_, alloc::boxed::Box<[u8]>> {
        self.data.lock()
    }
}

struct Entry {
    buf: BufRef,
    sealer: Sealer,
    tick: u64,
}

/// Counters for tests and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups served from memory.
    pub hits: u64,
    /// Blocks read from the device.
    pub reads: u64,
    /// Blocks evicted.
    pub evictions: u64,
}

/// The cache. See the module docs.
pub struct BufCache {
    entries: BTreeMap<u64, Entry>,
    running: BTreeSet<u64>,
    logged: BTreeSet<u64>,
    tick: u64,
    capacity: usize,
    stats: CacheStats,
}

impl BufCache {
    /// An empty cache that keeps at most about `capacity` clean blocks.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            running: BTreeSet::new(),
            logged: BTreeSet::new(),
            tick: 0,
            capacity: capacity.max(16),
            stats: CacheStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The cached block `blkno`, reading and verifying it on a miss. `verify` sees the bytes
    /// as read from the device; a block that fails it is not cached.
    pub fn read(
        &mut self,
        io: &MetaIo,
        blkno: u64,
        sealer: Sealer,
        verify: &dyn Fn(&[u8]) -> Result<(), Corrupt>,
    ) -> FResult<BufRef> {
        self.tick += 1;
        if let Some(e) = self.entries.get_mut(&blkno) {
            e.tick = self.tick;
            self.stats.hits += 1;
            return Ok(e.buf.clone());
        }
        let mut data = alloc::vec![0u8; io.block_size()].into_boxed_slice();
        io.read_blocks(blkno, &mut data)?;
        self.stats.reads += 1;
        verify(&data)?;
        let buf = Arc::new(Buf { blkno, data: Mutex::new(data) });
        self.entries.insert(blkno, Entry { buf: buf.clone(), sealer, tick: self.tick });
        self.evict();
        Ok(buf)
    }

    /// A new, zeroed block at `blkno` (a freshly allocated metadata block: nothing is read),
    /// already part of the running transaction.
    pub fn create(&mut self, blkno: u64, block_size: usize, sealer: Sealer) -> BufRef {
        self.tick += 1;
        let buf = Arc::new(Buf { blkno, data: Mutex::new(alloc::vec![0u8; block_size].into_boxed_slice()) });
        self.entries.insert(blkno, Entry { buf: buf.clone(), sealer, tick: self.tick });
        self.running.insert(blkno);
        buf
    }

    /// Joins the block to the running transaction.
    pub fn mark_dirty(&mut self, buf: &BufRef) {
        debug_assert!(self.entries.contains_key(&buf.blkno), "dirtying an uncached block");
        self.running.insert(buf.blkno);
    }

    /// Drops the block from the cache whatever its state (it was freed).
    pub fn forget(&mut self, blkno: u64) {
        self.entries.remove(&blkno);
        self.running.remove(&blkno);
        self.logged.remove(&blkno);
    }

    /// Blocks dirtied by the running transaction.
    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// Whether block `blkno` is dirty in the running transaction.
    #[cfg(test)]
    pub fn is_running(&self, blkno: u64) -> bool {
        self.running.contains(&blkno)
    }

    /// Committed blocks not yet written home.
    #[cfg(test)]
    pub fn logged_count(&self) -> usize {
        self.logged.len()
    }

    /// Seals every block of the running transaction and returns them in block order; they
    /// move to the logged set (the caller logs their images now).
    pub fn take_running(&mut self) -> Vec<BufRef> {
        let mut out = Vec::with_capacity(self.running.len());
        for blk in core::mem::take(&mut self.running) {
            if let Some(e) = self.entries.get(&blk) {
                (e.sealer)(&mut e.buf.data());
                out.push(e.buf.clone());
                self.logged.insert(blk);
            }
        }
        out
    }

    /// The logged blocks (to be written home by a checkpoint), in block order.
    pub fn logged(&self) -> Vec<BufRef> {
        self.logged.iter().filter_map(|b| self.entries.get(b)).map(|e| e.buf.clone()).collect()
    }

    /// Marks every logged block as written home (clean).
    pub fn checkpointed(&mut self) {
        self.logged.clear();
        self.evict();
    }

    /// Throws away the running transaction's changes (after a failed operation: the
    /// filesystem is shut down). The affected blocks are dropped so nothing stale is reused.
    pub fn discard_running(&mut self) {
        for blk in core::mem::take(&mut self.running) {
            self.entries.remove(&blk);
            self.logged.remove(&blk);
        }
    }

    /// Evicts clean blocks nobody holds, oldest first, down to the capacity.
    pub fn evict(&mut self) {
        if self.entries.len() <= self.capacity {
            return;
        }
        let mut victims: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter(|(b, e)| {
                !self.running.contains(b) && !self.logged.contains(b) && Arc::strong_count(&e.buf) == 1
            })
            .map(|(&b, e)| (e.tick, b))
            .collect();
        victims.sort_unstable();
        let excess = self.entries.len() - self.capacity;
        // Evict down to three quarters of the capacity so eviction is not run per read.
        let target = excess + self.capacity / 4;
        for &(_, b) in victims.iter().take(target) {
            self.entries.remove(&b);
            self.stats.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use crate::frond::format::{init_header, verify_header, MAGIC_ROOT};
    use crate::platform::StdPlatform;

    #[test]
    fn read_verifies_once_and_dirty_blocks_move_through_states() {
        let disk = Arc::new(RamDisk::new(64 * 1024, 512).unwrap());
        let io = MetaIo::new(disk.clone(), StdPlatform::arc(), 10).unwrap();
        let mut img = alloc::vec![0u8; 1024];
        init_header(&mut img, MAGIC_ROOT, 5);
        seal(&mut img);
        disk.poke(5 * 1024, &img);
        let mut c = BufCache::new(16);
        let v = |b: &[u8]| verify_header(b, MAGIC_ROOT, 5, "root");
        let b = c.read(&io, 5, seal_header, &v).unwrap();
        let _again = c.read(&io, 5, seal_header, &v).unwrap();
        assert_eq!(c.stats(), CacheStats { hits: 1, reads: 1, evictions: 0 });
        // Block 6 is zero: the verifier refuses it and it is not cached.
        let v6 = |b: &[u8]| verify_header(b, MAGIC_ROOT, 6, "root");
        assert!(c.read(&io, 6, seal_header, &v6).is_err());
        assert!(c.read(&io, 6, seal_header, &v6).is_err());
        assert_eq!(c.stats().reads, 3);
        b.data()[100] = 9;
        c.mark_dirty(&b);
        assert_eq!(c.running_count(), 1);
        let taken = c.take_running();
        assert_eq!(taken.len(), 1);
        assert!(verify_header(&taken[0].data(), MAGIC_ROOT, 5, "root").is_ok(), "sealed at take");
        assert_eq!((c.running_count(), c.logged_count()), (0, 1));
        c.checkpointed();
        assert_eq!(c.logged_count(), 0);
        let n = c.create(7, 1024, seal_header);
        assert!(c.is_running(7) && n.data().iter().all(|&x| x == 0));
        c.forget(7);
        assert_eq!(c.running_count(), 0);
    }

    #[test]
    fn eviction_keeps_dirty_and_held_blocks() {
        let mut c = BufCache::new(16);
        let held = c.create(1000, 1024, seal_header);
        for b in 0..40u64 {
            c.create(b, 1024, seal_header);
        }
        c.take_running();
        c.checkpointed();
        assert!(c.entries.len() <= 16);
        assert!(c.entries.contains_key(&1000), "held block survives");
        assert_eq!(held.blkno(), 1000);
    }
}
