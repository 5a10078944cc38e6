//! Walks: the requests of a batch that lie back to back are mapped by one iteration, so a
//! batch of 32 sequential 1 MiB requests costs the filesystem one mapping call per extent, not
//! one per request.
//!
//! [`group`] sorts the requests by position and joins those where one starts exactly where the
//! previous ended. [`pieces`] cuts the mapping the iterator offers into the parts each request
//! of the walk covers (in order) and hands each to the read or write code with its request
//! index. A walk's progress tells each request how much of it was done ([`Walk::covered`]).
//! Write batches whose requests share a filesystem block are never grouped (they run one at a
//! time; see `write`), so inner boundaries of a write walk are block aligned.
//!
//! Lock order: none. Linux <-> here: none (Linux maps every iocb separately; block-layer
//! plugging merges their bios instead).

use alloc::vec::Vec;

use super::map::Piece;
use crate::iomap::iter::{IomapIter, Step};
use crate::Result;

/// Requests mapped by one iteration over `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Walk {
    pub start: u64,
    pub end: u64,
    /// `(request index, pos, len)`, by position, back to back.
    pub reqs: Vec<(usize, u64, u64)>,
}

impl Walk {
    /// Bytes of the request at `[pos, pos + len)` a walk that processed `done` bytes covered.
    pub(crate) fn covered(&self, done: u64, pos: u64, len: u64) -> u64 {
        done.saturating_sub(pos - self.start).min(len)
    }
}

/// Groups `(request index, pos, len)` spans (non-empty, not overlapping) into walks.
pub(crate) fn group(mut spans: Vec<(usize, u64, u64)>) -> Vec<Walk> {
    spans.sort_unstable_by_key(|s| s.1);
    let mut walks: Vec<Walk> = Vec::new();
    for (i, pos, len) in spans {
        match walks.last_mut() {
            Some(w) if w.end == pos => {
                w.end = pos + len;
                w.reqs.push((i, pos, len));
            }
            _ => walks.push(Walk { start: pos, end: pos + len, reqs: alloc::vec![(i, pos, len)] }),
        }
    }
    walks
}

/// Runs `piece(request index, request position, piece)` for every request part of the
/// mapping `it` offers, in order; the step is the bytes done before the first failure.
pub(crate) fn pieces(
    walk: &Walk,
    it: &IomapIter,
    mut piece: impl FnMut(usize, u64, Piece) -> Result<u64>,
) -> Step {
    let (p, end) = (it.pos(), it.pos() + it.length());
    let first = walk.reqs.partition_point(|r| r.1 + r.2 <= p);
    let mut done = 0;
    for &(i, pos, len) in &walk.reqs[first..] {
        if pos >= end {
            break;
        }
        let (s, e) = (pos.max(p), (pos + len).min(end));
        match piece(i, pos, Piece::of(it, s, e - s)) {
            Ok(n) if n == e - s => done += n,
            Ok(n) => return Step::done(done + n),
            Err(err) => return Step::failed(done, err),
        }
    }
    Step::done(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_back_to_back_requests() {
        let walks = group(alloc::vec![(0, 8192, 4096), (1, 0, 4096), (2, 4096, 4096), (3, 20480, 512)]);
        assert_eq!(walks.len(), 2);
        assert_eq!((walks[0].start, walks[0].end), (0, 12288));
        assert_eq!(walks[0].reqs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!((walks[1].start, walks[1].end, walks[1].reqs.len()), (20480, 20992, 1));
        assert_eq!(walks[0].covered(6000, 4096, 4096), 1904);
        assert_eq!(walks[0].covered(6000, 8192, 4096), 0);
        assert_eq!(walks[0].covered(12288, 0, 4096), 4096);
    }
}
