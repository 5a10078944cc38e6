//! Readahead: the per-opener window ([`FileRa`]) and reading a window of new folios.
//!
//! The window (Linux's `file_ra_state`): `start`, `size` pages, and `async_size` pages at its
//! end whose first page is the *marker*. A read that misses the cache at the end of the window
//! or at the marker, or right after the previous read, is sequential: the window moves past the
//! current one and grows (x4 while small, then x2, up to the maximum). A read that meets the
//! marker folio starts the next window without waiting (asynchronous readahead), so a
//! sequential reader always has the next window in flight. Any other miss is random: only the
//! requested pages are read and the window restarts from there.
//!
//! Folios are created as large as the window allows (the largest order that fits the window,
//! is aligned at its index and is within the cache's maximum), never past EOF, locked and new;
//! their reads own the locks (`FolioRead::owning`) and unlock at completion. One mapping call
//! per extent covers the whole window; runs contiguous on disk go out as one bio across
//! folios.
//!
//! Unzeroed folios: the device overwrites the blocks it reads, so readahead folios are created
//! without zeroing ([`Mapping::add_folio_for_read`](crate::pagecache::Mapping::add_folio_for_read)).
//! Invariant: a byte of such a folio is read by the CPU (or written to a device) only once its
//! block is uptodate or zeroed. Every block is either (a) zeroed by the engine and marked
//! uptodate (holes, unwritten, NEW, at or after EOF, the tail of inline data), (b) read by the
//! device and marked uptodate when that read succeeds, or (c) neither - the read failed (EIO),
//! or was never issued because the mapping call failed. Blocks of (c) stay not uptodate and are
//! zeroed when the read finishes and drops the folio lock (the guard's read debt), before any
//! other lock holder can see them; a later access reads them again.
//!
//! Lock order: the mapping's invalidate lock is held shared while folios are added and their
//! reads submitted (truncate and punch hole hold it exclusively), never while waiting for I/O.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct file_ra_state` | [`FileRa`] | the marker is an index kept in the state, not a folio flag |
//! | `page_cache_sync_ra` / `page_cache_async_ra`, `ondemand_readahead` | [`FileRa::on_miss`], [`FileRa::on_hit`] | no thrash detection, no mmap heuristics |
//! | `get_init_ra_size`, `get_next_ra_size` | same rules | |
//! | `page_cache_ra_order` | folio order from the window size | no gradual order ramp |
//! | `iomap_readahead` | [`readahead`] | |

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::context::Counters;
use super::file::IomapFile;
use super::iter::{iterate, Step};
use super::ops::IomapOps;
use super::read::read_step_into_folio;
use super::read_io::{FolioRead, ReadBuilder};
use super::types::IomapOp;
use crate::platform::{PAGE_SHIFT, PAGE_SIZE};
use crate::Errno;

/// A window to read: first page index and page count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaWindow {
    /// First page index.
    pub start: u64,
    /// Pages.
    pub pages: u64,
}

/// Per-opener readahead state. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRa {
    start: u64,
    size: u64,
    async_size: u64,
    prev_index: Option<u64>,
    max_pages: u64,
}

impl FileRa {
    /// An empty window with a maximum of `max_bytes` (at least one page).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            start: 0,
            size: 0,
            async_size: 0,
            prev_index: None,
            max_pages: (max_bytes / PAGE_SIZE as u64).max(1),
        }
    }

    /// The current window `(start, size, async_size)` in pages.
    pub fn window(&self) -> (u64, u64, u64) {
        (self.start, self.size, self.async_size)
    }

    /// The marker page, if the window has an asynchronous part.
    pub fn marker(&self) -> Option<u64> {
        (self.async_size > 0).then(|| self.start + self.size - self.async_size)
    }

    fn init_size(&self, req: u64) -> u64 {
        let r = req.max(1).next_power_of_two();
        let s = if r <= self.max_pages / 32 {
            r * 4
        } else if r <= self.max_pages / 4 {
            r * 2
        } else {
            self.max_pages
        };
        s.min(self.max_pages)
    }

    fn next_size(&self, cur: u64) -> u64 {
        let s = if cur < self.max_pages / 16 { cur * 4 } else { cur * 2 };
        s.clamp(1, self.max_pages)
    }

    fn ramp(&mut self) -> RaWindow {
        self.start += self.size;
        self.size = self.next_size(self.size);
        self.async_size = self.size;
        RaWindow { start: self.start, pages: self.size }
    }

    /// A read of `req` pages missed the cache at `index`: the window to read now.
    pub fn on_miss(&mut self, index: u64, req: u64) -> RaWindow {
        let req = req.clamp(1, self.max_pages);
        let at_window_end =
            self.size > 0 && (index == self.start + self.size || Some(index) == self.marker());
        let after_prev =
            self.prev_index.is_some_and(|p| p + 1 == index) || (index == 0 && self.prev_index.is_none());
        if at_window_end {
            return self.ramp();
        }
        if after_prev {
            self.start = index;
            self.size = self.init_size(req).max(req);
            self.async_size = self.size - req;
            return RaWindow { start: index, pages: self.size };
        }
        // Random access: read what was asked, restart the window here.
        self.start = index;
        self.size = req;
        self.async_size = 0;
        RaWindow { start: index, pages: req }
    }

    /// A read found a cached folio covering pages `[index, index + nr)`: the window to start
    /// asynchronously when it holds the marker.
    pub fn on_hit(&mut self, index: u64, nr: u64) -> Option<RaWindow> {
        let m = self.marker()?;
        (m >= index && m < index + nr).then(|| self.ramp())
    }

    /// Records the last page a read touched.
    pub fn note_read(&mut self, last_index: u64) {
        self.prev_index = Some(last_index);
    }
}

/// The largest folio order for index `idx` inside `[.., end)` with at most `target` and at
/// least `min` (`min` always fits: indices and `end` are `min`-aligned).
fn order_at(idx: u64, end: u64, target: u32, min: u32) -> u32 {
    let mut o = target.max(min).min(idx.trailing_zeros().max(min));
    while o > min && idx + (1u64 << o) > end {
        o -= 1;
    }
    o
}

/// Adds the missing folios of `window` (clipped to EOF) and starts their reads; returns how
/// many folios it started. Does not wait.
pub fn readahead(file: &Arc<IomapFile>, ops: &Arc<dyn IomapOps>, window: RaWindow) -> usize {
    let size = file.size();
    if size == 0 || window.pages == 0 {
        return 0;
    }
    let mapping = file.mapping();
    let min = mapping.min_order();
    let align = |i: u64| i >> min << min;
    let eof_end = ((size - 1) >> PAGE_SHIFT) + 1;
    let end = align(window.start.saturating_add(window.pages).min(eof_end) + (1u64 << min) - 1);
    let target = (63 - window.pages.max(1).leading_zeros()).min(file.ctx().cache().max_order());
    let ctx = file.ctx();
    let platform = ctx.platform();
    let _shared = mapping.invalidate_lock().read();
    let mut reads: Vec<Arc<FolioRead>> = Vec::new();
    let mut idx = align(window.start);
    while idx < end {
        if let Some(f) = mapping.get(idx) {
            idx = f.index() + f.nr_pages();
            continue;
        }
        let mut order = order_at(idx, end, target, min);
        let added = loop {
            match mapping.add_folio_for_read(idx, order) {
                Ok(locked) => break Some(locked),
                Err(Errno::EEXIST | Errno::ENOMEM) if order > min => order -= 1,
                Err(_) => break None,
            }
        };
        let Some(locked) = added else { break };
        idx += 1u64 << order;
        reads.push(FolioRead::owning(locked, platform));
    }
    let (Some(first), Some(last)) = (reads.first(), reads.last()) else { return 0 };
    let (from, to) = (first.folio().pos(), last.folio().end_pos());
    Counters::add(&ctx.counters.readahead_windows, 1);
    let mut rb = ReadBuilder::new(ctx);
    let mut next = 0usize;
    let _ = iterate(&**ops, from, to - from, IomapOp::empty(), file.block_size(), |it| {
        let (p, e) = (it.pos(), it.pos() + it.length());
        while next < reads.len() && reads[next].folio().end_pos() <= p {
            next += 1;
        }
        let mut k = next;
        while k < reads.len() && reads[k].folio().pos() < e {
            if let Err(err) = read_step_into_folio(file, ops, &mut rb, &reads[k], it, size) {
                let done = reads[k].folio().pos().max(p) - p;
                return Step::failed(done, err);
            }
            k += 1;
        }
        Step::done(e - p)
    });
    rb.submit();
    for r in &reads {
        r.end_submission();
    }
    reads.len()
}
