//! The crash log: completed writes and flushes in completion order, and the crash images they
//! allow.
//!
//! # Model
//!
//! The log holds every successfully completed write (WRITE data, or the zeroes a DISCARD /
//! WRITE_ZEROES leaves) in completion order, and every successfully completed flush as a
//! [`FlushMark`]: `covers` = how many writes had completed when the flush was *submitted* (what
//! the flush makes durable), `at` = how many had completed when it *completed*.
//!
//! Flush point `k` (`0..=F` for `F` flushes) is a crash after the `k`th flush completed and
//! before the next one did (point 0: before any flush completed). At point `k`:
//!
//! - durable: writes `0..D`, `D` the largest `covers` of flushes `1..=k` (0 at point 0), plus
//!   every FUA write (durable at completion; on a device without a volatile cache every write is
//!   logged as FUA);
//! - possibly persisted, each independently: the other writes in the *window* `D..E`, `E` the
//!   next flush's `at` (the end of the log after the last flush). A write that had not completed
//!   by the crash is assumed not persisted.
//!
//! A crash image is the base image (the medium when recording started) with the durable writes
//! and a chosen subset of the window applied in log order. Subsets are given as a predicate or
//! a bitmap over window positions `0..E - D`; FUA positions are applied whatever the subset.
//!
//! # Linux <-> here
//!
//! | Linux (dm-log-writes + `replay-log`) | Foliage |
//! |---|---|
//! | log entries of completed writes, in completion order | [`CrashLog::writes`] |
//! | flush entry with the writes completed before the flush was issued | [`FlushMark::covers`] |
//! | `replay-log --limit` / `--end-mark` to a flush | [`CrashLog::crash_image`] at a flush point |
//! | (fsx / crashmonkey style) random reordering of unflushed writes | subsets of the window, [`CrashLog::crash_states`] |
//! | discard entries (`LOG_DISCARD_FLAG`) | [`Payload::Zeroes`] |
//!
//! Deviation: dm-log-writes only replays prefixes; subsets of the unflushed window are this
//! module's addition, as the crash tests need every state a volatile cache allows.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::block::prng::SplitMix64;
use crate::errno::{Errno, Result};

/// What a logged write left on the medium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A WRITE: a copy of its data.
    Data(Arc<[u8]>),
    /// A DISCARD or WRITE_ZEROES of this many bytes: zeroes (RamDisk's behaviour; a filesystem
    /// must not rely on discarded contents either way).
    Zeroes(u64),
}

/// One completed write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedWrite {
    /// Byte offset on the device.
    pub offset: u64,
    /// What it wrote.
    pub payload: Payload,
    /// Durable at completion: FUA, or the device has no volatile cache.
    pub fua: bool,
}

impl LoggedWrite {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match &self.payload {
            Payload::Data(d) => d.len() as u64,
            Payload::Zeroes(n) => *n,
        }
    }

    /// True for an empty write (never logged).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(&self, image: &mut [u8]) -> Result<()> {
        let start = usize::try_from(self.offset).map_err(|_| Errno::EINVAL)?;
        let len = usize::try_from(self.len()).map_err(|_| Errno::EINVAL)?;
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        let dst = image.get_mut(start..end).ok_or(Errno::EINVAL)?;
        match &self.payload {
            Payload::Data(d) => dst.copy_from_slice(d),
            Payload::Zeroes(_) => dst.fill(0),
        }
        Ok(())
    }
}

/// One completed flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushMark {
    /// Writes (log prefix) completed when the flush was submitted: made durable by it.
    pub covers: usize,
    /// Writes completed when the flush completed.
    pub at: usize,
}

/// A crash state: a flush point and the subset of its window that reached the medium.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashState {
    /// Flush point, `0..=flushes`.
    pub point: usize,
    /// One entry per write in the point's window (FUA entries are applied regardless).
    pub subset: Vec<bool>,
}

/// Completed writes and flushes in completion order. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashLog {
    writes: Vec<LoggedWrite>,
    flushes: Vec<FlushMark>,
}

impl CrashLog {
    pub(super) fn push_write(&mut self, w: LoggedWrite) {
        self.writes.push(w);
    }

    pub(super) fn push_flush(&mut self, covers: usize) {
        self.flushes.push(FlushMark { covers, at: self.writes.len() });
    }

    /// Writes completed so far.
    pub(super) fn completed_writes(&self) -> usize {
        self.writes.len()
    }

    /// Every logged write, in completion order.
    pub fn writes(&self) -> &[LoggedWrite] {
        &self.writes
    }

    /// Every logged flush, in completion order.
    pub fn flushes(&self) -> &[FlushMark] {
        &self.flushes
    }

    /// Number of flush points: one more than the number of flushes (point 0 is "before any
    /// flush").
    pub fn flush_points(&self) -> usize {
        self.flushes.len() + 1
    }

    /// The durable write prefix at flush point `point`: writes `0..durable(point)`.
    pub fn durable(&self, point: usize) -> Result<usize> {
        let marks = self.flushes.get(..point).ok_or(Errno::EINVAL)?;
        Ok(marks.iter().map(|m| m.covers).max().unwrap_or(0))
    }

    /// The writes that may or may not have reached the medium at flush point `point`.
    pub fn window(&self, point: usize) -> Result<Range<usize>> {
        let durable = self.durable(point)?;
        let end = self.flushes.get(point).map_or(self.writes.len(), |m| m.at);
        Ok(durable..end.max(durable))
    }

    /// The medium after a crash at flush point `point`: `base` with the durable writes, the
    /// FUA writes of the window, and the window writes at positions `j` with `subset(j)`
    /// applied in log order. `EINVAL` for a point past the last one or a write outside `base`.
    pub fn crash_image(&self, base: &[u8], point: usize, subset: impl Fn(usize) -> bool) -> Result<Vec<u8>> {
        let window = self.window(point)?;
        let mut image = base.to_vec();
        for w in &self.writes[..window.start] {
            w.apply(&mut image)?;
        }
        for (j, w) in self.writes[window].iter().enumerate() {
            if w.fua || subset(j) {
                w.apply(&mut image)?;
            }
        }
        Ok(image)
    }

    /// [`CrashLog::crash_image`] for `state`; `EINVAL` if its subset does not have one entry
    /// per window write.
    pub fn image(&self, base: &[u8], state: &CrashState) -> Result<Vec<u8>> {
        if self.window(state.point)?.len() != state.subset.len() {
            return Err(Errno::EINVAL);
        }
        self.crash_image(base, state.point, |j| state.subset[j])
    }

    /// Every flush point with nothing beyond its durable writes (and FUA writes).
    pub fn every_flush_point(&self) -> impl Iterator<Item = CrashState> + '_ {
        self.crash_states(0, 0)
    }

    /// For every flush point: the bare durable state, then `random_per_point` random subsets of
    /// its window drawn from a generator seeded with `seed` (same log, same seed: same states).
    pub fn crash_states(&self, random_per_point: usize, seed: u64) -> impl Iterator<Item = CrashState> + '_ {
        let mut rng = SplitMix64::new(seed);
        (0..self.flush_points()).flat_map(move |point| {
            let n = self.window(point).map_or(0, |w| w.len());
            let mut states = vec![CrashState { point, subset: vec![false; n] }];
            for _ in 0..random_per_point {
                let subset = (0..n).map(|_| rng.next_u64() & 1 == 1).collect();
                states.push(CrashState { point, subset });
            }
            states
        })
    }
}
