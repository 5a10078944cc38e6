//! The mapping iterator: walks `[pos, pos + len)` one mapping at a time through
//! [`IomapOps::next`], running a body on each (Linux's `iomap_iter`).
//!
//! [`iterate`] asks for the mapping at the current position, offers the body
//! [`IomapIter::length`] bytes of it, advances by what the body processed, and asks again with
//! the outcome of that mapping. Rules (Linux's `iomap_iter_continue`):
//!
//! - the body returns a [`Step`]: bytes processed and an optional error;
//! - processed > offered is an engine bug: the iteration stops with `EIO`;
//! - an error stops the iteration (the closing call still reports the mapping);
//! - nothing left, or nothing processed without the mapping being marked STALE, stops with
//!   success (no livelock: a body that cannot progress ends the iteration);
//! - STALE with no progress maps again at the same position (revalidation); STALE after
//!   progress simply continues. More than [`MAX_STALE_RETRIES`] stale retries in a row without
//!   progress end the iteration with `EIO` (a filesystem whose mappings are never valid);
//! - a mapping that does not cover the position, is empty, misaligned or carries engine flags
//!   is refused with `EIO` (after a closing call reporting it with no progress).
//!
//! The closing call's own error is returned only if the last mapping saw no progress and no
//! other error happened (Linux returns `iomap_end`'s error only then).
//!
//! Lock order: the iterator holds no lock; bodies take folio locks one at a time.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct iomap_iter`, `iomap_iter()` loop | [`IomapIter`], [`iterate`] | the body is a closure |
//! | `iomap_length`, `iomap_iter_srcmap` | [`IomapIter::length`], [`IomapIter::read_source`] | |
//! | `iomap_iter_advance` + `iter->status` | [`Step`] | |
//! | `IOMAP_F_STALE` retry | [`IomapIter::mark_stale`] | retry count capped |

use super::ops::IomapOps;
use super::types::{Iomap, IomapFlags, IomapOp, MapDone, MapRequest};
use crate::Errno;

/// Stale retries in a row without progress after which the iteration fails with `EIO`.
pub const MAX_STALE_RETRIES: u32 = 1000;

/// What a body did with the mapping it was offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes processed from [`IomapIter::pos`].
    pub advanced: u64,
    /// The error that stopped it, if any.
    pub error: Option<Errno>,
}

impl Step {
    /// Processed `advanced` bytes without error.
    pub fn done(advanced: u64) -> Self {
        Self { advanced, error: None }
    }

    /// Processed `advanced` bytes, then failed with `error`.
    pub fn failed(advanced: u64, error: Errno) -> Self {
        Self { advanced, error: Some(error) }
    }
}

/// The outcome of a whole iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes processed in total.
    pub done: u64,
    /// The error that ended it, if any.
    pub error: Option<Errno>,
}

impl Progress {
    /// `Ok(done)` when something was done or nothing failed, else the error (the convention of
    /// read and write: partial progress wins over a later error).
    pub fn bytes_or_error(self) -> crate::Result<u64> {
        match self.error {
            Some(e) if self.done == 0 => Err(e),
            _ => Ok(self.done),
        }
    }

    /// `Err` whenever an error ended the iteration.
    pub fn strict(self) -> crate::Result<u64> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.done),
        }
    }
}

/// The iterator state a body sees.
pub struct IomapIter {
    op: IomapOp,
    pos: u64,
    remaining: u64,
    iomap: Iomap,
    srcmap: Iomap,
}

impl IomapIter {
    /// Current file position.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Bytes of the operation still to do from [`IomapIter::pos`].
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The operation.
    pub fn op(&self) -> IomapOp {
        self.op
    }

    /// Bytes the body may process from `pos` with this mapping: the rest of the range, clipped
    /// to the mapping and to the srcmap when there is one (Linux `iomap_length`).
    pub fn length(&self) -> u64 {
        let mut n = self.remaining.min(self.iomap.end() - self.pos);
        if !self.srcmap.is_hole() {
            n = n.min(self.srcmap.end().saturating_sub(self.pos));
        }
        n
    }

    /// The mapping.
    pub fn iomap(&self) -> &Iomap {
        &self.iomap
    }

    /// The source map (HOLE: none).
    pub fn srcmap(&self) -> &Iomap {
        &self.srcmap
    }

    /// Where existing data is read from: the srcmap when there is one, else the mapping.
    pub fn read_source(&self) -> &Iomap {
        if self.srcmap.is_hole() {
            &self.iomap
        } else {
            &self.srcmap
        }
    }

    /// Marks the mapping stale: the iteration maps again (at the same position when the body
    /// processed nothing).
    pub fn mark_stale(&mut self) {
        self.iomap.flags |= IomapFlags::STALE;
    }

    /// True once marked stale.
    pub fn is_stale(&self) -> bool {
        self.iomap.flags.contains(IomapFlags::STALE)
    }

    /// Records that the operation changed the in-core size.
    pub fn mark_size_changed(&mut self) {
        self.iomap.flags |= IomapFlags::SIZE_CHANGED;
    }
}

/// Checks a returned pair at `pos`: the mapping covers it, and a non-hole srcmap covers it too.
fn check_pair(iomap: &Iomap, srcmap: &Iomap, pos: u64, block_size: u64) -> crate::Result<()> {
    iomap.check_for(pos, block_size)?;
    if !srcmap.is_hole() {
        srcmap.check_for(pos, block_size)?;
    }
    Ok(())
}

/// Walks `[pos, pos + len)` mapping by mapping with `op`, running `body` on each. See the
/// module documentation for the rules. `block_size` is the filesystem block size mappings are
/// checked against. A zero `len` calls nothing.
pub fn iterate(
    ops: &dyn IomapOps,
    pos: u64,
    len: u64,
    op: IomapOp,
    block_size: u64,
    mut body: impl FnMut(&mut IomapIter) -> Step,
) -> Progress {
    let mut total = 0u64;
    if len == 0 {
        return Progress { done: 0, error: None };
    }
    if pos.checked_add(len).is_none() {
        return Progress { done: 0, error: Some(Errno::EINVAL) };
    }
    let mut it = IomapIter { op, pos, remaining: len, iomap: Iomap::NONE, srcmap: Iomap::NONE };
    let mut prev: Option<MapDone> = None;
    let mut stale_retries = 0u32;
    loop {
        let req = MapRequest { pos: it.pos, len: it.remaining, op };
        let pair = match ops.next(req, prev.as_ref()) {
            Err(e) => return Progress { done: total, error: Some(e) },
            Ok(None) => return Progress { done: total, error: Some(Errno::EIO) },
            Ok(Some(pair)) => pair,
        };
        it.iomap = pair.iomap;
        it.srcmap = pair.srcmap;
        if check_pair(&pair.iomap, &pair.srcmap, it.pos, block_size).is_err() {
            let done = MapDone {
                pos: it.pos,
                len: 0,
                processed: 0,
                iomap: pair.iomap,
                srcmap: pair.srcmap,
                error: Some(Errno::EIO),
            };
            // The mapping is unusable; let the filesystem undo whatever it reserved for it.
            let _ = ops.next(MapRequest { pos: it.pos, len: 0, op }, Some(&done));
            return Progress { done: total, error: Some(Errno::EIO) };
        }
        let start = it.pos;
        let offered = it.length();
        let step = body(&mut it);
        let (advanced, mut error) =
            if step.advanced > offered { (0, Some(Errno::EIO)) } else { (step.advanced, step.error) };
        it.pos += advanced;
        it.remaining -= advanced;
        total += advanced;
        let stale = it.is_stale();
        if stale && advanced == 0 {
            stale_retries += 1;
            if stale_retries > MAX_STALE_RETRIES && error.is_none() {
                error = Some(Errno::EIO);
            }
        } else {
            stale_retries = 0;
        }
        let done = MapDone {
            pos: start,
            len: offered,
            processed: advanced,
            iomap: it.iomap,
            srcmap: it.srcmap,
            error,
        };
        let stop = error.is_some() || it.remaining == 0 || (advanced == 0 && !stale);
        if stop {
            let closing = ops.next(MapRequest { pos: it.pos, len: 0, op }, Some(&done));
            if let Err(e) = closing {
                if error.is_none() && advanced == 0 {
                    error = Some(e);
                }
            }
            return Progress { done: total, error };
        }
        prev = Some(done);
    }
}
