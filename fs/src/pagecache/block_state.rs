//! Per-block state of a folio: two bits per block (uptodate, dirty) and the bytes of read and
//! write I/O still pending on the folio.
//!
//! Owns: the bitmap words. The bitmap exists only when a folio holds more than one block; a
//! single-block folio's state is its folio flags. Bits are changed with atomic word operations,
//! so read completions for different blocks of one folio may run concurrently (from whatever
//! context polls the device) without a lock; the folio lock serialises everything else.
//!
//! Layout (as Linux): uptodate bits are `[0, n)`, dirty bits `[n, 2n)` for `n` blocks, packed
//! into 64-bit words.
//!
//! Memory: 8 bytes of pending counters plus a boxed slice of `ceil(2n / 64)` words (a 16-byte
//! fat pointer, no allocation when `n == 1`). Linux's `iomap_folio_state` is 16 bytes plus the
//! same bitmap, reached through the 8-byte `folio->private`: 24 bytes + bitmap in both.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct iomap_folio_state` (`state_lock`, `read_bytes_pending`, `write_bytes_pending`, `state[]`) | [`BlockState`] | atomic words instead of `state_lock`; allocated with the folio instead of lazily |
//! | `ifs_set_range_uptodate`, `ifs_set_range_dirty`, `ifs_clear_range_dirty`, `ifs_find_dirty_range` | `set`, `clear`, `next` | |

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The per-block bitmap and pending-I/O counters of one folio.
pub(crate) struct BlockState {
    bits: Box<[AtomicU64]>,
    read_pending: AtomicU32,
    write_pending: AtomicU32,
}

/// Calls `f(word, mask)` for each word touched by bits `[first, first + count)`.
fn for_each_word(first: usize, count: usize, mut f: impl FnMut(usize, u64) -> bool) -> bool {
    let mut bit = first;
    let end = first + count;
    while bit < end {
        let word = bit / 64;
        let lo = bit % 64;
        let hi = (end - word * 64).min(64);
        let mask = if hi - lo == 64 { !0 } else { ((1u64 << (hi - lo)) - 1) << lo };
        if !f(word, mask) {
            return false;
        }
        bit = word * 64 + hi;
    }
    true
}

impl BlockState {
    /// State for a folio of `blocks` blocks (no bitmap when `blocks == 1`).
    pub(crate) fn new(blocks: usize) -> Self {
        let words = if blocks > 1 { (2 * blocks).div_ceil(64) } else { 0 };
        let bits: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
        Self {
            bits: bits.into_boxed_slice(),
            read_pending: AtomicU32::new(0),
            write_pending: AtomicU32::new(0),
        }
    }

    /// Heap bytes of the bitmap.
    pub(crate) fn heap_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.bits)
    }

    pub(crate) fn has_bitmap(&self) -> bool {
        !self.bits.is_empty()
    }

    /// Sets bits `[first, first + count)`.
    pub(crate) fn set(&self, first: usize, count: usize) {
        for_each_word(first, count, |w, mask| {
            self.bits[w].fetch_or(mask, Ordering::AcqRel);
            true
        });
    }

    /// Clears bits `[first, first + count)`.
    pub(crate) fn clear(&self, first: usize, count: usize) {
        for_each_word(first, count, |w, mask| {
            self.bits[w].fetch_and(!mask, Ordering::AcqRel);
            true
        });
    }

    /// True when every bit of `[first, first + count)` is set.
    pub(crate) fn all_set(&self, first: usize, count: usize) -> bool {
        for_each_word(first, count, |w, mask| self.bits[w].load(Ordering::Acquire) & mask == mask)
    }

    /// The first bit in `[from, end)` equal to `value`.
    pub(crate) fn next(&self, from: usize, end: usize, value: bool) -> Option<usize> {
        let mut found = None;
        for_each_word(from, end.saturating_sub(from), |w, mask| {
            let mut word = self.bits[w].load(Ordering::Acquire);
            if !value {
                word = !word;
            }
            let hits = word & mask;
            if hits != 0 {
                found = Some(w * 64 + hits.trailing_zeros() as usize);
                false
            } else {
                true
            }
        });
        found
    }

    pub(crate) fn read_pending(&self) -> &AtomicU32 {
        &self.read_pending
    }

    pub(crate) fn write_pending(&self) -> &AtomicU32 {
        &self.write_pending
    }
}

/// Adds `bytes` to a pending counter.
pub(crate) fn pending_add(counter: &AtomicU32, bytes: u32) {
    counter.fetch_add(bytes, Ordering::AcqRel);
}

/// Subtracts `bytes` from a pending counter; true when it reached zero. Subtracting more than
/// is pending is an engine bug: the counter stops at zero (and debug builds assert).
pub(crate) fn pending_sub(counter: &AtomicU32, bytes: u32) -> bool {
    let prev = counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(bytes)))
        .unwrap_or_else(|v| v);
    debug_assert!(prev >= bytes, "pending bytes underflow: {prev} - {bytes}");
    prev <= bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_across_words() {
        let s = BlockState::new(100); // 200 bits, 4 words
        assert_eq!(s.heap_bytes(), 32);
        s.set(60, 80);
        assert!(s.all_set(60, 80));
        assert!(!s.all_set(59, 2));
        assert_eq!(s.next(0, 200, true), Some(60));
        assert_eq!(s.next(60, 200, false), Some(140));
        s.clear(64, 64);
        assert_eq!(s.next(61, 200, false), Some(64));
        assert_eq!(s.next(64, 200, true), Some(128));
        assert_eq!(s.next(140, 200, true), None);
        assert!(s.all_set(0, 0), "empty range");
    }

    #[test]
    fn single_block_has_no_bitmap() {
        let s = BlockState::new(1);
        assert!(!s.has_bitmap());
        assert_eq!(s.heap_bytes(), 0);
    }

    #[test]
    fn pending_counters() {
        let s = BlockState::new(4);
        pending_add(s.read_pending(), 4096);
        assert!(!pending_sub(s.read_pending(), 1024));
        assert!(pending_sub(s.read_pending(), 3072));
        assert_eq!(s.read_pending().load(Ordering::Relaxed), 0);
    }
}
