//! [`copy_around`]: filling the parts of copy-on-write destination blocks that a DAX write
//! does not cover (§10 of the behaviour reference).
//!
//! For `[pos, pos + len)` and an alignment (the block size), the head
//! `[round_down(pos), pos)` and the tail `[pos + len, round_up(pos + len))` of the destination
//! are copied from the source at the same file offsets, or zeroed when the source is not
//! MAPPED (a hole, unwritten, or no srcmap at all). When the range is aligned on both ends
//! everything is copied (or zeroed): the page-fault case, where the whole block is unshared
//! before anything is written to it.
//!
//! Lock order: none. Linux <-> here: `dax_iomap_copy_around` (`fs/dax.c`), same rules; the
//! source is a mapping on the same device instead of a kernel address.

use super::device::DaxDevice;
use crate::iomap::types::{Iomap, IomapType};
use crate::{Errno, Result};

/// Copies (or zeroes) around `[pos, pos + len)` into `dst` from `src`. See the module
/// documentation. `EINVAL` when `align` is not a power of two or `dst` (or a MAPPED `src`) does
/// not cover the aligned range.
pub fn copy_around(
    dax: &dyn DaxDevice,
    pos: u64,
    len: u64,
    align: u64,
    src: &Iomap,
    dst: &Iomap,
) -> Result<()> {
    if !align.is_power_of_two() || len == 0 {
        return Err(Errno::EINVAL);
    }
    let end = pos.checked_add(len).ok_or(Errno::EINVAL)?;
    let start = pos & !(align - 1);
    let aligned_end = end.checked_next_multiple_of(align).ok_or(Errno::EINVAL)?;
    let zero = src.kind != IomapType::Mapped;
    let covers = |m: &Iomap| m.has_addr() && m.offset <= start && aligned_end <= m.end();
    if !covers(dst) || (!zero && !covers(src)) {
        return Err(Errno::EINVAL);
    }
    let fill = |from: u64, to: u64| -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let d = dst.disk_addr(from)?;
        if zero {
            dax.zero(d, to - from)
        } else {
            dax.copy(src.disk_addr(from)?, d, to - from)
        }
    };
    if start == pos && end == aligned_end {
        return fill(pos, end);
    }
    fill(start, pos)?;
    fill(end, aligned_end)
}
