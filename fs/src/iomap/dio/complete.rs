//! Completion work of a direct write: the filesystem's [`IomapOps::ioend_done`] with
//! [`IoendFlags::DIRECT`] (unwritten conversion, copy-on-write remap or cancel, on-disk size),
//! then the in-core size.
//!
//! Called in the writer's context once every bio of the request completed (never from a bio
//! completion). A range needs the filesystem when it has flags (UNWRITTEN / SHARED: on error
//! too, so a failed COW write is cancelled) or, on success, when it ends past the on-disk size.
//! The in-core size grows to the end of the write only after all of that succeeded, so a
//! reader never sees a size whose bytes are still unwritten extents or unremapped staging.
//!
//! Lock order: none held while calling the filesystem.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `iomap_dio_complete` -> `dops->end_io` (`xfs_dio_write_end_io`: COW end, unwritten conversion, `i_size_write` + `xfs_setfilesize`) | [`complete_write`] |

use super::map::DoneRange;
use crate::iomap::context::Counters;
use crate::iomap::file::IomapFile;
use crate::iomap::ops::IomapOps;
use crate::iomap::types::{IoendDone, IoendFlags};
use crate::{Errno, Result};

/// Runs the completion work of `ranges` (written by one request that ended with `error`),
/// then (with `grow`) raises the in-core size to the end of the write. Returns the request's
/// error, or the first error of the filesystem's completion work.
pub(crate) fn complete_write(
    file: &IomapFile,
    ops: &dyn IomapOps,
    ranges: &[DoneRange],
    error: Option<Errno>,
    grow: bool,
) -> Result<()> {
    let disk_size = file.disk_size();
    let mut first = error;
    let mut end = 0;
    for r in ranges {
        let r_end = r.offset + r.len;
        end = end.max(r_end);
        let needed = !r.flags.is_empty() || (error.is_none() && r_end > disk_size);
        if !needed {
            continue;
        }
        Counters::add(&file.ctx().counters.ioend_done_calls, 1);
        let done = IoendDone { offset: r.offset, size: r.len, flags: r.flags | IoendFlags::DIRECT, error };
        if let Err(e) = ops.ioend_done(&done) {
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        return Err(e);
    }
    if grow && end > file.size() {
        file.set_size(end);
    }
    Ok(())
}
