//! B+tree node layout: header fields, record access and in-place edits, and the per-node
//! verifier run when a node is read from disk.
//!
//! ```text
//! 0  common header (magic FRBT, crc, blkno)       16 bytes
//! 16 owner     u64   inode number for per-inode trees, 0 for filesystem-wide trees
//! 24 kind      u8    which tree (TreeKind)
//! 25 key_size  u8    8 or 16
//! 26 level     u16   0 = leaf
//! 28 nrecs     u16
//! 30 val_size  u16   leaf value size
//! 32 records   leaf: nrecs x (key, value); interior: nrecs x (key, child u64)
//! ```
//!
//! Lock order: pure functions over a node's bytes; callers hold the buffer's lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `struct xfs_btree_block` (long form, CRC) | the 32-byte header above |
//! | `xfs_btree_rec_addr` / `_key_addr` / `_ptr_addr` | [`Geo::key`] / [`Geo::val`] / [`Geo::child`] |
//! | `xfs_btree_lblock_verify` | [`verify_node`] |

use super::Spec;
use crate::frond::format::*;
use crate::frond_corrupt;

/// Bytes before the first record.
pub const NODE_HDR: usize = 32;
const N_OWNER: usize = 16;
const N_KIND: usize = 24;
const N_KEY_SIZE: usize = 25;
const N_LEVEL: usize = 26;
const N_NRECS: usize = 28;
const N_VAL_SIZE: usize = 30;
/// Deepest tree accepted (levels 0 ..= MAX_LEVEL).
pub const MAX_LEVEL: u16 = 15;

/// Geometry of one node (leaf or interior) of a given tree.
#[derive(Clone, Copy, Debug)]
pub struct Geo {
    /// Key bytes.
    pub ks: usize,
    /// Value bytes (child pointer = 8 for interior nodes).
    pub vs: usize,
    /// Most records.
    pub cap: usize,
}

impl Geo {
    /// Geometry for `level` of tree `spec` in blocks of `bs` bytes with record limit `limit`
    /// (0 = as many as fit).
    pub fn new(spec: &Spec, level: u16, bs: usize, limit: usize) -> Self {
        let vs = if level == 0 { spec.val_size } else { 8 };
        let natural = (bs - NODE_HDR) / (spec.key_size + vs);
        let cap = if limit == 0 { natural } else { natural.min(limit) };
        Self { ks: spec.key_size, vs, cap: cap.min(u16::MAX as usize) }
    }

    /// Fewest records a non-root node keeps: half the capacity, rounded up (a split of a full
    /// node gives two halves of at least this, and an underflowing node merges with a minimal
    /// sibling into at most a full one).
    pub fn min(&self) -> usize {
        self.cap.div_ceil(2)
    }

    fn rec(&self) -> usize {
        self.ks + self.vs
    }

    fn off(&self, i: usize) -> usize {
        NODE_HDR + i * self.rec()
    }

    /// Key of record `i`.
    pub fn key(&self, b: &[u8], i: usize) -> u128 {
        let o = self.off(i);
        if self.ks == 8 {
            get64(b, o) as u128
        } else {
            get64(b, o) as u128 | (get64(b, o + 8) as u128) << 64
        }
    }

    /// Sets the key of record `i`.
    pub fn set_key(&self, b: &mut [u8], i: usize, k: u128) {
        let o = self.off(i);
        put64(b, o, k as u64);
        if self.ks == 16 {
            put64(b, o + 8, (k >> 64) as u64);
        } else {
            debug_assert!(k >> 64 == 0, "key too wide for an 8-byte key");
        }
    }

    /// Value bytes of record `i`.
    pub fn val<'a>(&self, b: &'a [u8], i: usize) -> &'a [u8] {
        let o = self.off(i) + self.ks;
        &b[o..o + self.vs]
    }

    /// Sets the value of record `i`.
    pub fn set_val(&self, b: &mut [u8], i: usize, v: &[u8]) {
        let o = self.off(i) + self.ks;
        b[o..o + self.vs].copy_from_slice(v);
    }

    /// Child pointer of interior record `i`.
    pub fn child(&self, b: &[u8], i: usize) -> u64 {
        get64(b, self.off(i) + self.ks)
    }

    /// Index of the first record with key >= `k` (== nrecs when none).
    pub fn lower_bound(&self, b: &[u8], n: usize, k: u128) -> usize {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(b, mid) < k {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Interior: the child whose range holds `k` (the last key <= k, or 0).
    pub fn child_index(&self, b: &[u8], n: usize, k: u128) -> usize {
        let i = self.lower_bound(b, n, k);
        if i < n && self.key(b, i) == k {
            i
        } else {
            i.saturating_sub(1)
        }
    }

    /// Opens a gap at `i` in a node of `n` records and writes `(k, v)` there.
    pub fn insert_at(&self, b: &mut [u8], n: usize, i: usize, k: u128, v: &[u8]) {
        debug_assert!(n < self.cap && i <= n);
        b.copy_within(self.off(i)..self.off(n), self.off(i + 1));
        self.set_key(b, i, k);
        self.set_val(b, i, v);
        set_nrecs(b, n + 1);
    }

    /// Removes record `i` of `n`.
    pub fn remove_at(&self, b: &mut [u8], n: usize, i: usize) {
        b.copy_within(self.off(i + 1)..self.off(n), self.off(i));
        let end = self.off(n - 1);
        b[end..end + self.rec()].fill(0);
        set_nrecs(b, n - 1);
    }

    /// Copies records `[from, from + count)` of `src` to `dst` starting at `at` (no header
    /// change).
    pub fn copy_recs(&self, src: &[u8], from: usize, count: usize, dst: &mut [u8], at: usize) {
        dst[self.off(at)..self.off(at + count)].copy_from_slice(&src[self.off(from)..self.off(from + count)]);
    }

    /// Moves records `[from, from + count)` of `b` to start at `at` (ranges may overlap).
    pub fn shift_recs(&self, b: &mut [u8], from: usize, count: usize, at: usize) {
        b.copy_within(self.off(from)..self.off(from + count), self.off(at));
    }

    /// Zeroes records `[from, to)`.
    pub fn clear_recs(&self, b: &mut [u8], from: usize, to: usize) {
        let (a, z) = (self.off(from), self.off(to));
        b[a..z].fill(0);
    }
}

/// Node level.
pub fn level(b: &[u8]) -> u16 {
    get16(b, N_LEVEL)
}

/// Record count.
pub fn nrecs(b: &[u8]) -> usize {
    get16(b, N_NRECS) as usize
}

/// Sets the record count.
pub fn set_nrecs(b: &mut [u8], n: usize) {
    put16(b, N_NRECS, n as u16)
}

/// Writes the header of a new, empty node.
pub fn init_node(b: &mut [u8], blkno: u64, spec: &Spec, owner: u64, lvl: u16) {
    b.fill(0);
    init_header(b, MAGIC_BTREE, blkno);
    put64(b, N_OWNER, owner);
    b[N_KIND] = spec.kind as u8;
    b[N_KEY_SIZE] = spec.key_size as u8;
    put16(b, N_LEVEL, lvl);
    put16(b, N_VAL_SIZE, spec.val_size as u16);
}

/// Verifies a node's own contents (not its place in the tree): identity, sizes, count,
/// strictly increasing keys, child pointers in range.
pub fn verify_node(
    b: &[u8],
    blkno: u64,
    spec: &Spec,
    owner: u64,
    limit: usize,
    valid_ptr: &dyn Fn(u64) -> bool,
) -> Result<(), Corrupt> {
    let name = spec.name;
    if get64(b, N_OWNER) != owner {
        return Err(frond_corrupt!("{name} node {blkno}: owner {} (expected {owner})", get64(b, N_OWNER)));
    }
    if b[N_KIND] != spec.kind as u8 || b[N_KEY_SIZE] as usize != spec.key_size {
        return Err(frond_corrupt!(
            "{name} node {blkno}: belongs to tree kind {} (expected {})",
            b[N_KIND],
            spec.kind as u8
        ));
    }
    if get16(b, N_VAL_SIZE) as usize != spec.val_size {
        return Err(frond_corrupt!(
            "{name} node {blkno}: value size {} (expected {})",
            get16(b, N_VAL_SIZE),
            spec.val_size
        ));
    }
    let lvl = level(b);
    if lvl > MAX_LEVEL {
        return Err(frond_corrupt!("{name} node {blkno}: level {lvl} exceeds {MAX_LEVEL}"));
    }
    let g = Geo::new(spec, lvl, b.len(), limit);
    let n = nrecs(b);
    if n == 0 || n > g.cap {
        return Err(frond_corrupt!("{name} node {blkno}: {n} records (capacity {})", g.cap));
    }
    for i in 1..n {
        if g.key(b, i - 1) >= g.key(b, i) {
            return Err(frond_corrupt!("{name} node {blkno}: keys out of order at record {i}"));
        }
    }
    if lvl > 0 {
        for i in 0..n {
            let c = g.child(b, i);
            if !valid_ptr(c) || c == blkno {
                return Err(frond_corrupt!("{name} node {blkno}: child pointer {c} out of range"));
            }
        }
    }
    Ok(())
}
