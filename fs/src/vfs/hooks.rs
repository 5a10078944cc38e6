//! The page cache's writeback hooks for one mount.
//!
//! `kick` polls the device and finishes queued completions (the engine's
//! [`IomapContext::kick`](crate::iomap::IomapContext::kick)); `request_writeback` runs background
//! writeback over the inodes with dirty cache until the requested bytes were started (it never
//! waits for a folio lock: background writeback skips locked folios).
//!
//! Lock order: called with no file-API lock required; takes the inode table lock briefly.
//! Linux <-> here: `wb_start_background_writeback` / `wakeup_flusher_threads` run inline.

use alloc::sync::{Arc, Weak};

use super::fs::FrondFs;
use crate::iomap::IomapContext;
use crate::pagecache::{WritebackHooks, WritebackRequest};

/// See the module docs.
pub(crate) struct MountHooks {
    fs: Weak<FrondFs>,
    ctx: Weak<IomapContext>,
}

impl MountHooks {
    pub(crate) fn new(fs: &Arc<FrondFs>) -> Self {
        Self { fs: Arc::downgrade(fs), ctx: Arc::downgrade(fs.ctx()) }
    }
}

impl WritebackHooks for MountHooks {
    fn request_writeback(&self, request: WritebackRequest) {
        if let Some(fs) = self.fs.upgrade() {
            fs.writeback_some(request.bytes.max(1));
        }
    }

    fn kick(&self) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.kick();
        }
    }
}
