//! frond: Foliage's on-disk filesystem (metadata core).
//!
//! frond is an extent-based, reflink-capable, journaled filesystem. This module owns everything
//! below the file-data path: the on-disk format (`FORMAT.md` beside this file), metadata I/O and
//! the buffer cache, the write-ahead journal, the generic checksummed B+tree, the allocator,
//! reference counts, inodes, per-inode extent maps (with delayed allocation, unwritten extents
//! and the in-core COW fork), directories, the namespace operations, mkfs and fsck.
//!
//! # Lock order
//!
//! One mounted filesystem has one metadata lock (a `spin::Mutex` around its state). Every
//! operation takes it first and holds it for the whole operation, including metadata I/O
//! (waiting on the device with it held is allowed by the platform rule: device completions never
//! take it). Buffer contents have their own small locks, taken only under the metadata lock, so
//! any order among them is safe. Lock order: metadata lock -> buffer lock -> device internals.
//!
//! # Linux <-> here
//!
//! | Linux (XFS / jbd2) | here | deliberate deviation |
//! |---|---|---|
//! | `xfs_mount` + per-AG structures | `mount::Frond`, one allocation group | no AGs: one root block |
//! | `xfs_buf` cache | `buf::BufCache` | checksums verified once, on read from disk |
//! | XFS logical log (CIL) | `journal` (jbd2-style physical block logging) | whole-block images, simpler replay |
//! | `xfs_btree_*` generic btree | `btree` | fixed-size records, one layout for every tree |
//! | bnobt / cntbt + AGFL | `alloc` | |
//! | refcountbt (+ CoW staging domain) | `refcount` | |
//! | inobt, inode chunks | `inode` | one chunk = one block |
//! | bmbt + iext tree | `extent` | in-core map is a `BTreeMap` |
//! | CoW fork (in-core) | `cowfork` | same: staging extents on disk only in the refcount tree |
//! | dir2 (hashed btree directories) | `dir` | fixed-size entries keyed by (hash, collision index) |
//! | `xfs_repair -n` | `fsck` | names every problem precisely |

pub mod allocator;
pub mod btree;
pub mod buf;
pub mod cowfork;
pub mod crc32c;
pub mod dir;
pub mod engine;
pub mod extent;
pub mod extset;
pub mod format;
pub mod fsck;
pub mod inode;
pub mod io;
pub mod journal;
pub mod mkfs;
pub mod mount;
pub mod namespace;
pub mod orphan;
pub mod refcount;
pub mod state;
pub mod superblock;

pub use fsck::{fsck, FsckReport, Problem};
pub use mkfs::{mkfs, MkfsOptions};
pub use mount::{Frond, MountError, StatFs};

#[cfg(test)]
mod tests;

#[cfg(test)]
#[allow(dead_code)] // helpers are shared by tests added milestone by milestone
pub(crate) mod testutil;
