//! The per-file engine object ([`IomapFile`]) and the per-open-file state ([`OpenFile`]).
//!
//! [`IomapFile`] owns the file's page-cache [`Mapping`], the in-core size (`i_size`, changed by
//! the engine's writes and truncates, read by everyone), the on-disk size as the filesystem last
//! recorded it (the filesystem updates it in its completion work and truncate; the engine reads
//! it to decide whether a finished write needs filesystem work), and a flag that lets one
//! writeback walker at a time work on the file. A filesystem keeps one per inode
//! (`Arc<IomapFile>`) next to its implementation of [`IomapOps`](super::IomapOps).
//!
//! [`OpenFile`] is what an opener keeps: its readahead window and its errseq snapshot (fsync
//! reports a writeback error once per opener).
//!
//! Caller rules (Linux's `i_rwsem`): buffered writes, truncate, zero range and punch hole of a
//! file are serialised by the caller; reads may run alongside each other and alongside
//! writeback and reclaim. The engine itself takes the mapping's invalidate lock shared when a
//! read adds folios, and exclusively in truncate and punch hole.
//!
//! Lock order: the writeback flag is taken before any folio lock and is never waited for while
//! holding one.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct inode` `i_size`, `i_mapping`; XFS `i_disk_size` | [`IomapFile`] | the on-disk size is mirrored here for the append test |
//! | `struct file` `f_ra`, `f_wb_err` | [`OpenFile`] | |
//! | `I_SYNC` (one writeback of an inode at a time) | the writeback flag | integrity writeback waits for it, background skips |

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::context::IomapContext;
use super::readahead::FileRa;
use crate::pagecache::{ErrSeq, Mapping, Mark, MAX_INDEX};
use crate::platform::{wait_until, PAGE_SHIFT};
use crate::{Errno, Result};

/// Largest file size in bytes (the page cache's index limit).
pub const MAX_FILE_SIZE: u64 = (MAX_INDEX + 1) << PAGE_SHIFT;

/// The engine's view of one file. See the module documentation.
pub struct IomapFile {
    ctx: Arc<IomapContext>,
    mapping: Arc<Mapping>,
    size: AtomicU64,
    disk_size: AtomicU64,
    wb_busy: AtomicBool,
}

/// What one opener of a file keeps.
#[derive(Clone, Debug)]
pub struct OpenFile {
    /// Readahead state.
    pub ra: FileRa,
    /// Writeback-error snapshot for fsync.
    pub wb_err: ErrSeq,
}

impl IomapFile {
    pub(super) fn new(ctx: &Arc<IomapContext>, size: u64) -> Result<Arc<Self>> {
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let mapping = ctx.cache().new_mapping(ctx.block_size() as usize)?;
        Ok(Arc::new(Self {
            ctx: ctx.clone(),
            mapping,
            size: AtomicU64::new(size),
            disk_size: AtomicU64::new(size),
            wb_busy: AtomicBool::new(false),
        }))
    }

    /// The engine context.
    pub fn ctx(&self) -> &Arc<IomapContext> {
        &self.ctx
    }

    /// The page-cache mapping.
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }

    /// Filesystem block size.
    pub fn block_size(&self) -> u64 {
        self.ctx.block_size()
    }

    /// In-core size.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Sets the in-core size (the engine's write and truncate paths; a filesystem at inode load).
    pub fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
    }

    /// The size the filesystem's metadata records.
    pub fn disk_size(&self) -> u64 {
        self.disk_size.load(Ordering::Acquire)
    }

    /// Records the size the filesystem's metadata now holds (completion work, truncate).
    pub fn set_disk_size(&self, size: u64) {
        self.disk_size.store(size, Ordering::Release);
    }

    /// State for a new opener: a fresh readahead window and an errseq sample.
    pub fn open(&self) -> OpenFile {
        OpenFile {
            ra: FileRa::new(self.ctx.config().readahead_max_bytes),
            wb_err: self.mapping.sample_error(),
        }
    }

    /// True when a folio overlapping bytes `[start, end)` carries `mark`.
    pub fn range_has_mark(&self, start: u64, end: u64, mark: Mark) -> bool {
        if start >= end {
            return false;
        }
        let last = (end - 1) >> PAGE_SHIFT;
        self.mapping.next_marked(start >> PAGE_SHIFT, mark).is_some_and(|f| f.index() <= last)
    }

    /// True when bytes `[start, end)` have dirty cache.
    pub fn has_dirty_cache(&self, start: u64, end: u64) -> bool {
        self.range_has_mark(start, end, Mark::Dirty)
    }

    /// True when bytes `[start, end)` have dirty cache or cache under writeback.
    pub fn needs_writeback(&self, start: u64, end: u64) -> bool {
        self.has_dirty_cache(start, end) || self.range_has_mark(start, end, Mark::Writeback)
    }

    /// Takes the file's writeback flag; with `wait`, waits (kicking) until it is free, else gives
    /// up at once.
    pub(super) fn writeback_begin(&self, wait: bool) -> Option<WritebackGuard<'_>> {
        loop {
            if self.wb_busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Some(WritebackGuard { file: self });
            }
            if !wait {
                return None;
            }
            let key = self.wb_key();
            wait_until(&**self.ctx.platform(), key, &|| !self.wb_busy.load(Ordering::Acquire), &|| {
                self.ctx.kick()
            });
        }
    }

    fn wb_key(&self) -> usize {
        &self.wb_busy as *const AtomicBool as usize
    }
}

/// Holds a file's writeback flag.
pub(super) struct WritebackGuard<'a> {
    file: &'a IomapFile,
}

impl Drop for WritebackGuard<'_> {
    fn drop(&mut self) {
        self.file.wb_busy.store(false, Ordering::Release);
        self.file.ctx.platform().unpark(self.file.wb_key());
    }
}
