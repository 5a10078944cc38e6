//! Extent records: the in-core form and the on-disk encodings (inline in the inode, and as
//! extent-map B+tree records).
//!
//! ```text
//! inline record (24 bytes): file_block u64 | disk_block u64 | length u32 | flags u32
//! tree record:   key = file_block (8 bytes); value (16 bytes) = disk_block u64 | length u32 | flags u32
//! flags: bit 0 = UNWRITTEN
//! ```
//!
//! Lock order: pure data; no locks.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_bmbt_rec` (packed 128-bit record) | 24-byte inline record / 8 + 16-byte tree record |
//! | `struct xfs_bmbt_irec` + `XFS_EXT_UNWRITTEN` | [`Ext`] + [`ExtState`] |
//! | `XFS_MAX_BMBT_EXTLEN` (2^21 - 1) | [`MAX_EXT_LEN`] |

use alloc::collections::BTreeMap;

use crate::frond::btree::{Spec, TreeKind};
use crate::frond::format::*;
use crate::frond_corrupt;

/// A file's extent-map tree: key = file block, value = disk block, length, flags.
pub static BMAP: Spec = Spec { kind: TreeKind::ExtentMap, name: "extent map", key_size: 8, val_size: 16 };

/// Bytes of one inline extent record.
pub const INLINE_REC: usize = 24;
/// Longest extent (blocks) one record holds.
pub const MAX_EXT_LEN: u64 = (1 << 21) - 1;
const FLAG_UNWRITTEN: u32 = 1;

/// The state of an extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtState {
    /// Allocated and holding valid data.
    Written,
    /// Allocated, reads as zeros until converted.
    Unwritten,
    /// Space reserved, no blocks yet (in-core only).
    Delalloc,
}

/// One extent of a fork, keyed by its first file block in an [`ExtMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ext {
    /// First disk block (0 for delalloc).
    pub disk: u64,
    /// Length in blocks.
    pub len: u64,
    /// State.
    pub state: ExtState,
    /// Delalloc only: metadata blocks reserved for mapping it later.
    pub ind: u64,
}

impl Ext {
    /// A real (allocated) extent.
    pub fn real(disk: u64, len: u64, state: ExtState) -> Self {
        Self { disk, len, state, ind: 0 }
    }

    /// Whether it has disk blocks.
    pub fn is_real(&self) -> bool {
        self.state != ExtState::Delalloc
    }

    /// The part `[off, off + len)` of this extent (relative to its start).
    pub fn slice(&self, off: u64, len: u64) -> Self {
        let disk = if self.is_real() { self.disk + off } else { 0 };
        Self { disk, len, state: self.state, ind: 0 }
    }

    /// Whether `next`, starting right after this one in the file, can join it.
    pub fn joins(&self, next: &Ext) -> bool {
        self.state == next.state
            && self.len + next.len <= MAX_EXT_LEN
            && (self.state == ExtState::Delalloc || self.disk + self.len == next.disk)
    }
}

/// An in-core fork map: file block -> extent (non-overlapping).
pub type ExtMap = BTreeMap<u64, Ext>;

/// Tree value of a real extent.
pub fn encode_val(e: &Ext) -> [u8; 16] {
    debug_assert!(e.is_real() && e.len <= MAX_EXT_LEN);
    let mut v = [0u8; 16];
    put64(&mut v, 0, e.disk);
    put32(&mut v, 8, e.len as u32);
    put32(&mut v, 12, if e.state == ExtState::Unwritten { FLAG_UNWRITTEN } else { 0 });
    v
}

/// Decodes a tree value (or the tail of an inline record), validating it against the data
/// area `[lo, hi)`.
pub fn decode_val(v: &[u8], fb: u64, lo: u64, hi: u64, owner: u64) -> Result<Ext, Corrupt> {
    let disk = get64(v, 0);
    let len = get32(v, 8) as u64;
    let flags = get32(v, 12);
    if flags & !FLAG_UNWRITTEN != 0 {
        return Err(frond_corrupt!("inode {owner}: extent at file block {fb} has unknown flags {flags:#x}"));
    }
    if len == 0 || len > MAX_EXT_LEN {
        return Err(frond_corrupt!("inode {owner}: extent at file block {fb} has length {len}"));
    }
    if disk < lo || disk.checked_add(len).is_none_or(|e| e > hi) {
        return Err(frond_corrupt!(
            "inode {owner}: extent at file block {fb} maps blocks {disk}+{len} outside the data area"
        ));
    }
    if fb.checked_add(len).is_none_or(|e| e > super::MAX_FILE_BLOCKS) {
        return Err(frond_corrupt!("inode {owner}: extent at file block {fb} runs past the largest file"));
    }
    let state = if flags & FLAG_UNWRITTEN != 0 { ExtState::Unwritten } else { ExtState::Written };
    Ok(Ext::real(disk, len, state))
}

/// Writes inline record `i` into the literal area.
pub fn encode_inline(lit: &mut [u8], i: usize, fb: u64, e: &Ext) {
    let o = i * INLINE_REC;
    put64(lit, o, fb);
    lit[o + 8..o + 24].copy_from_slice(&encode_val(e));
}

/// Reads inline record `i`.
pub fn decode_inline(lit: &[u8], i: usize, lo: u64, hi: u64, owner: u64) -> Result<(u64, Ext), Corrupt> {
    let o = i * INLINE_REC;
    let fb = get64(lit, o);
    Ok((fb, decode_val(&lit[o + 8..o + 24], fb, lo, hi, owner)?))
}
