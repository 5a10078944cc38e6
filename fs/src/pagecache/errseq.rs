//! errseq: a writeback error that every opener of a file sees exactly once.
//!
//! Owns: one 32-bit word per mapping: the last errno (low 12 bits), a SEEN bit, and a counter
//! above them. Recording an error after the previous one was seen bumps the counter, so a new
//! error is distinguishable from an old one with the same errno. Each opener keeps an
//! [`ErrSeq`] snapshot taken at open; `check_and_advance` reports an error when the word moved
//! past the snapshot, marks it seen and advances the snapshot.
//!
//! Behaviour (Linux's): an error is reported once to every opener whose snapshot predates it,
//! including openers that opened before the error and never synced; an opener that opens
//! after an error was already seen does not get it.
//!
//! Locking: none; one atomic word, updated by compare-and-swap.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `errseq_t`, `errseq_set`, `errseq_sample`, `errseq_check`, `errseq_check_and_advance` | [`ErrSeqCell`] methods, [`ErrSeq`] |
//! | `mapping->wb_err`, `file->f_wb_err` | `Mapping`'s cell, the opener's [`ErrSeq`] |

use core::sync::atomic::{AtomicU32, Ordering};

use crate::{Errno, Result};

const ERRNO_MASK: u32 = (1 << 12) - 1;
const SEEN: u32 = 1 << 12;
const COUNTER_ONE: u32 = 1 << 13;

/// An opener's snapshot of a mapping's error state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrSeq(u32);

/// The error word of one mapping.
#[derive(Default)]
pub struct ErrSeqCell(AtomicU32);

impl ErrSeqCell {
    /// No error recorded.
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Records `err`.
    pub fn set(&self, err: Errno) {
        let code = (err.code() as u32) & ERRNO_MASK;
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            let mut new = (old & !(ERRNO_MASK | SEEN)) | code;
            if old & SEEN != 0 {
                new = new.wrapping_add(COUNTER_ONE);
            }
            (new != old).then_some(new)
        });
    }

    /// A snapshot for a new opener: errors already seen are not reported to it; an unseen one
    /// is.
    pub fn sample(&self) -> ErrSeq {
        let cur = self.0.load(Ordering::Acquire);
        ErrSeq(if cur & SEEN != 0 { cur } else { 0 })
    }

    /// The error recorded since `since`, without advancing.
    pub fn check(&self, since: ErrSeq) -> Result<()> {
        let cur = self.0.load(Ordering::Acquire);
        if cur | SEEN == since.0 | SEEN {
            return Ok(());
        }
        Err(errno_of(cur))
    }

    /// Reports the error recorded since `since` once: marks it seen and advances `since`.
    pub fn check_and_advance(&self, since: &mut ErrSeq) -> Result<()> {
        let old = self.0.load(Ordering::Acquire);
        if old == since.0 {
            return Ok(());
        }
        let new = old | SEEN;
        if new != old {
            // Losing this race only means another opener marked it seen first.
            let _ = self.0.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire);
        }
        since.0 = new;
        match new & ERRNO_MASK {
            0 => Ok(()),
            _ => Err(errno_of(new)),
        }
    }
}

fn errno_of(word: u32) -> Errno {
    Errno::from_code((word & ERRNO_MASK) as i32).unwrap_or(Errno::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_opener_sees_an_error_once() {
        // §11 T2: fsync on fd1 -> EIO; on fd2 (opened earlier) -> EIO once; repeat -> 0.
        let cell = ErrSeqCell::new();
        let mut fd2 = cell.sample();
        let mut fd1 = cell.sample();
        cell.set(Errno::EIO);
        assert_eq!(cell.check(fd1), Err(Errno::EIO));
        assert_eq!(cell.check_and_advance(&mut fd1), Err(Errno::EIO));
        assert_eq!(cell.check_and_advance(&mut fd1), Ok(()));
        assert_eq!(cell.check_and_advance(&mut fd2), Err(Errno::EIO));
        assert_eq!(cell.check_and_advance(&mut fd2), Ok(()));
        // An opener after the error was seen does not get it.
        let mut fd3 = cell.sample();
        assert_eq!(cell.check_and_advance(&mut fd3), Ok(()));
        // A new error (same errno) reaches everyone again, once.
        cell.set(Errno::EIO);
        assert_eq!(cell.check_and_advance(&mut fd3), Err(Errno::EIO));
        assert_eq!(cell.check_and_advance(&mut fd1), Err(Errno::EIO));
        assert_eq!(cell.check_and_advance(&mut fd1), Ok(()));
        // Two errors before anyone looked: the latest is reported, once.
        cell.set(Errno::ENOSPC);
        cell.set(Errno::EIO);
        assert_eq!(cell.check_and_advance(&mut fd2), Err(Errno::EIO));
        assert_eq!(cell.check_and_advance(&mut fd2), Ok(()));
    }

    #[test]
    fn unseen_error_reaches_a_late_opener() {
        let cell = ErrSeqCell::new();
        cell.set(Errno::ENOSPC);
        let mut late = cell.sample();
        assert_eq!(cell.check_and_advance(&mut late), Err(Errno::ENOSPC));
        assert_eq!(cell.check_and_advance(&mut late), Ok(()));
    }
}
