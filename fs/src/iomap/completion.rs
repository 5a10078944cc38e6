//! Finishing queued ioends: the filesystem's completion work, then the end of folio writeback.
//!
//! [`IomapContext::process_completions`] takes every queued ioend, sorts them by file and
//! offset, merges runs that are contiguous with equal flags and equal outcome into one
//! [`IomapOps::ioend_done`](super::IomapOps::ioend_done) call (fewer metadata transactions, as
//! XFS's `xfs_ioend_try_merge`), records a failing completion on the file's mapping, and then
//! ends writeback of the ioends' folios. The folios stay under writeback until the metadata
//! work is done, so anyone waiting for writeback (fsync, truncate) also waits for it.
//!
//! Runs in process context: from [`IomapContext::kick`] (the page cache's kick hook), from fsync
//! and integrity writeback. Several callers may process at once; each takes a disjoint batch.
//!
//! Lock order: the queue lock is held only to take the list; the filesystem is called with no
//! engine lock held.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xfs_end_io` work: `list_sort` + `xfs_ioend_try_merge` + `xfs_end_ioend` | [`IomapContext::process_completions`] |
//! | `iomap_finish_ioends` | `Ioend::end_folios` per merged ioend |

use alloc::sync::Arc;
use alloc::vec::Vec;

use intrusive_collections::LinkedList;

use super::context::{Counters, IomapContext};
use super::ioend::{Ioend, IoendAdapter};
use super::types::IoendDone;

impl IomapContext {
    /// Finishes every queued ioend (see the module documentation); returns how many.
    pub fn process_completions(&self) -> usize {
        let mut list = {
            let mut q = self.completions.lock();
            if q.is_empty() {
                return 0;
            }
            core::mem::replace(&mut *q, LinkedList::new(IoendAdapter::new()))
        };
        let mut batch: Vec<Arc<Ioend>> = Vec::new();
        while let Some(e) = list.pop_front() {
            batch.push(e);
        }
        batch.sort_by_key(|e| (Arc::as_ptr(&e.file) as usize, e.offset));
        let n = batch.len();
        let mut i = 0;
        while i < n {
            let first = &batch[i];
            let mut end = first.end();
            let mut j = i + 1;
            while j < n {
                let e = &batch[j];
                let joins = Arc::ptr_eq(&e.file, &first.file)
                    && e.flags == first.flags
                    && e.error() == first.error()
                    && e.offset == end;
                if !joins {
                    break;
                }
                end = e.end();
                j += 1;
            }
            let done = IoendDone {
                offset: first.offset,
                size: end - first.offset,
                flags: first.flags,
                error: first.error(),
            };
            Counters::add(&self.counters.ioend_done_calls, 1);
            if let Err(e) = first.ops.ioend_done(&done) {
                first.file.mapping().set_error(e);
            }
            for e in &batch[i..j] {
                e.end_folios();
            }
            i = j;
        }
        n
    }
}
