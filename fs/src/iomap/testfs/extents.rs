//! The test filesystem's per-file extent map: file blocks to delalloc reservations or disk
//! blocks (written or unwritten), in a `BTreeMap` keyed by first file block.
//!
//! Owns: the map. Invariants: extents never overlap and have a length > 0; adjacent extents of
//! the same kind and contiguous disk blocks are merged, except across an extent flagged
//! `boundary` (a test knob that makes the engine's BOUNDARY flag appear).
//!
//! Locking: none of its own (lives under the file's lock). Linux <-> here: XFS's in-core
//! extent tree (`xfs_iext_*`) of the data fork, without the COW fork.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// What an extent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtKind {
    /// Reserved, no disk blocks yet.
    Delalloc,
    /// Written data at this disk block.
    Mapped(u64),
    /// Allocated at this disk block, not yet written (reads zeros).
    Unwritten(u64),
}

impl ExtKind {
    /// The disk block, if allocated.
    pub fn disk(&self) -> Option<u64> {
        match *self {
            ExtKind::Delalloc => None,
            ExtKind::Mapped(d) | ExtKind::Unwritten(d) => Some(d),
        }
    }

    /// The same kind `n` blocks further in.
    fn advanced(&self, n: u64) -> Self {
        match *self {
            ExtKind::Delalloc => ExtKind::Delalloc,
            ExtKind::Mapped(d) => ExtKind::Mapped(d + n),
            ExtKind::Unwritten(d) => ExtKind::Unwritten(d + n),
        }
    }

    /// True when an extent of `self` of length `len` continues with `next`.
    fn continues(&self, len: u64, next: &ExtKind) -> bool {
        self.advanced(len) == *next
    }
}

/// One extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Extent {
    /// First file block.
    pub start: u64,
    /// Blocks.
    pub len: u64,
    /// What it holds.
    pub kind: ExtKind,
    /// Never merged with (and never written in one I/O with) the extent before it.
    pub boundary: bool,
}

impl Extent {
    /// One past the last file block.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Val {
    len: u64,
    kind: ExtKind,
    boundary: bool,
}

/// A file's extent map. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtentMap {
    map: BTreeMap<u64, Val>,
}

impl ExtentMap {
    /// An empty map (all hole).
    pub fn new() -> Self {
        Self::default()
    }

    fn ext(start: u64, v: &Val) -> Extent {
        Extent { start, len: v.len, kind: v.kind, boundary: v.boundary }
    }

    /// The extent containing `block`, or `Err(next)`: a hole up to block `next` (`u64::MAX`
    /// when nothing follows).
    pub fn lookup(&self, block: u64) -> core::result::Result<Extent, u64> {
        if let Some((&s, v)) = self.map.range(..=block).next_back() {
            if block < s + v.len {
                return Ok(Self::ext(s, v));
            }
        }
        Err(self.map.range(block..).next().map_or(u64::MAX, |(&s, _)| s))
    }

    /// Every extent, in order.
    pub fn extents(&self) -> Vec<Extent> {
        self.map.iter().map(|(&s, v)| Self::ext(s, v)).collect()
    }

    /// The extents overlapping `[start, end)`, trimmed to it.
    pub fn extents_in(&self, start: u64, end: u64) -> Vec<Extent> {
        let mut out = Vec::new();
        let first = self.map.range(..=start).next_back().map_or(start, |(&s, _)| s);
        for (&s, v) in self.map.range(first..end) {
            let e = Self::ext(s, v);
            let (a, b) = (e.start.max(start), e.end().min(end));
            if a < b {
                out.push(Extent {
                    start: a,
                    len: b - a,
                    kind: e.kind.advanced(a - e.start),
                    boundary: e.boundary && a == e.start,
                });
            }
        }
        out
    }

    /// Removes `[start, start + len)` from the map (splitting extents at its edges); returns the
    /// removed pieces.
    pub fn remove(&mut self, start: u64, len: u64) -> Vec<Extent> {
        let end = start.saturating_add(len);
        let removed = self.extents_in(start, end);
        let first = self.map.range(..=start).next_back().map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.map.range(first..end).map(|(&s, _)| s).collect();
        for s in keys {
            let Some(v) = self.map.remove(&s) else { continue };
            let e = s + v.len;
            if e <= start {
                self.map.insert(s, v);
                continue;
            }
            if s < start {
                self.map.insert(s, Val { len: start - s, ..v });
            }
            if e > end {
                self.map.insert(end, Val { len: e - end, kind: v.kind.advanced(end - s), boundary: false });
            }
        }
        removed
    }

    /// Inserts an extent over a range with no extent (call [`ExtentMap::remove`] first), merging
    /// with compatible neighbours.
    pub fn insert(&mut self, ext: Extent) {
        if ext.len == 0 {
            return;
        }
        debug_assert!(self.extents_in(ext.start, ext.end()).is_empty(), "insert over mapped blocks");
        let mut start = ext.start;
        let mut v = Val { len: ext.len, kind: ext.kind, boundary: ext.boundary };
        if !ext.boundary {
            if let Some((&ps, pv)) = self.map.range(..ext.start).next_back() {
                if ps + pv.len == ext.start && pv.kind.continues(pv.len, &ext.kind) {
                    let pv = *pv;
                    self.map.remove(&ps);
                    start = ps;
                    v = Val { len: pv.len + ext.len, kind: pv.kind, boundary: pv.boundary };
                }
            }
        }
        if let Some(nv) = self.map.get(&ext.end()).copied() {
            if !nv.boundary && v.kind.continues(v.len, &nv.kind) {
                self.map.remove(&ext.end());
                v.len += nv.len;
            }
        }
        self.map.insert(start, v);
    }

    /// Replaces `[start, start + len)` with `kind` (or a hole for `None`); returns what was there.
    pub fn set(&mut self, start: u64, len: u64, kind: Option<ExtKind>) -> Vec<Extent> {
        let removed = self.remove(start, len);
        if let Some(k) = kind {
            self.insert(Extent { start, len, kind: k, boundary: false });
        }
        removed
    }

    /// Turns the UNWRITTEN blocks inside `[start, end)` into MAPPED; returns how many changed.
    pub fn convert_unwritten(&mut self, start: u64, end: u64) -> u64 {
        let mut n = 0;
        for e in self.extents_in(start, end) {
            if let ExtKind::Unwritten(d) = e.kind {
                self.remove(e.start, e.len);
                self.insert(Extent {
                    start: e.start,
                    len: e.len,
                    kind: ExtKind::Mapped(d),
                    boundary: e.boundary,
                });
                n += e.len;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(start: u64, len: u64, kind: ExtKind) -> Extent {
        Extent { start, len, kind, boundary: false }
    }

    #[test]
    fn split_merge_convert() {
        let mut m = ExtentMap::new();
        m.insert(ext(0, 4, ExtKind::Mapped(100)));
        m.insert(ext(4, 4, ExtKind::Mapped(104)));
        assert_eq!(m.extents(), [ext(0, 8, ExtKind::Mapped(100))], "contiguous extents merge");
        assert_eq!(m.lookup(9), Err(u64::MAX));
        let removed = m.remove(2, 3);
        assert_eq!(removed, [ext(2, 3, ExtKind::Mapped(102))]);
        assert_eq!(m.extents(), [ext(0, 2, ExtKind::Mapped(100)), ext(5, 3, ExtKind::Mapped(105))]);
        assert_eq!(m.lookup(3), Err(5));
        m.set(2, 3, Some(ExtKind::Unwritten(102)));
        assert_eq!(m.extents().len(), 3, "unwritten does not merge with mapped");
        assert_eq!(m.convert_unwritten(3, 4), 1);
        assert_eq!(
            m.extents(),
            [
                ext(0, 2, ExtKind::Mapped(100)),
                ext(2, 1, ExtKind::Unwritten(102)),
                ext(3, 1, ExtKind::Mapped(103)),
                ext(4, 1, ExtKind::Unwritten(104)),
                ext(5, 3, ExtKind::Mapped(105)),
            ]
        );
        assert_eq!(m.convert_unwritten(0, 8), 2);
        assert_eq!(m.extents(), [ext(0, 8, ExtKind::Mapped(100))]);
        m.insert(Extent { start: 8, len: 2, kind: ExtKind::Mapped(108), boundary: true });
        assert_eq!(m.extents().len(), 2, "a boundary extent stays separate");
        assert_eq!(m.extents_in(7, 9).len(), 2);
    }
}
