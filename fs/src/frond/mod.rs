//! frond: Foliage's on-disk filesystem (metadata core).
//!
//! frond is an extent-based, reflink-capable, journaled filesystem. This module owns everything
//! below the file-data path: the on-disk format (`FORMAT.md` beside this file), metadata I/O and
//! the buffer cache, the write-ahead journal, the generic checksummed B+tree, the allocator,
//! reference counts, inodes, per-inode extent maps (with delayed allocation, unwritten extents
//! and the in-core COW fork), directories, the namespace operations, mkfs and fsck.
//!
//! # Using it
//!
//! [`mkfs()`] writes a filesystem, [`Frond::mount`] mounts one (refusing a corrupt image with a
//! [`MountError`] that says why), [`fsck()`] checks one. A mounted [`Frond`] offers the
//! namespace operations (`lookup`, `create`, `mkdir`, `symlink`, `readlink`, `link`, `unlink`,
//! `rmdir`, `rename`, `readdir`, `stat`, `setattr`, `statfs`), the extent interface the iomap
//! engine calls ([`engine`]: `map`, `reserve_delalloc`, `allocate`, `convert_unwritten`, the COW
//! calls, `punch`, `truncate`, `collapse`, `insert`, `clone_extents`, sizes, inline data), and
//! `sync`/`fsync`/`unmount`. Errors are Linux errno values.
//!
//! # Transactions
//!
//! Every call is one or more metadata operations; each reserves its worst case first (ENOSPC
//! before any change) and joins the running transaction. The running transaction commits at
//! `sync`/`fsync`, when the log would not hold the next operation, and at unmount; a checkpoint
//! (writing everything home and emptying the log) runs when the log fills and at unmount. The
//! commit record is the one write with PREFLUSH + FUA; the checkpoint's header update is the
//! other; `fsync` with nothing to commit issues a plain flush. A failure after an operation
//! changed something shuts the filesystem down (the disk keeps the last commit).
//!
//! # Lock order
//!
//! One mounted filesystem has one metadata lock (a `spin::Mutex` around its state). Every
//! operation takes it first and holds it for the whole operation, including metadata I/O
//! (waiting on the device with it held is allowed by the platform rule: device completions never
//! take it). Buffer contents have their own small locks, taken only under the metadata lock, so
//! any order among them is safe. Lock order: metadata lock -> buffer lock -> device internals.
//! (A first step: one lock serialises metadata work; finer locking can come with the file API.)
//!
//! # Linux <-> here
//!
//! | Linux (XFS / jbd2) | here | deliberate deviation |
//! |---|---|---|
//! | `xfs_mount` + per-AG structures | [`Frond`] + `state::FsState`, one allocation group | no AGs: one root block |
//! | `xfs_buf` cache | `buf::BufCache` | checksums verified once, on read from disk |
//! | XFS logical log (CIL, intents) | `journal` (jbd2-style physical block logging) | whole-block images; no intents |
//! | `xfs_btree_*` generic btree | `btree` | fixed-size records, one layout for every tree |
//! | bnobt / cntbt + AGFL + busy extents | `allocator` | |
//! | refcountbt (+ CoW staging domain) | `refcount` | |
//! | inobt, inode chunks | `inode` | one chunk = one block |
//! | AGI unlinked lists | `orphan` | one list in the root block |
//! | bmbt + iext tree | `extent` | in-core map is a `BTreeMap` |
//! | CoW fork (in-core) | `cowfork` | same: staging extents on disk only in the refcount tree |
//! | dir2 (hashed btree directories) | `dir` | fixed-size entries keyed by (hash, collision index) |
//! | `xfs_repair -n` | [`fsck()`] | names every problem precisely |

// The public surface: mount/mkfs/fsck, the engine's extent interface and the namespace API.
pub mod bench;
pub mod engine;
pub mod fsck;
pub mod mkfs;
pub mod mount;
pub mod namespace;

// Host tools (image files).
#[cfg(any(test, feature = "std"))]
pub mod host;

// The format (documented in FORMAT.md) and its checksum, public for tools and tests.
pub mod crc32c;
pub mod format;

// Internals.
pub(crate) mod allocator;
pub(crate) mod btree;
pub(crate) mod buf;
pub(crate) mod cowfork;
pub(crate) mod dir;
pub(crate) mod extent;
pub(crate) mod extset;
pub(crate) mod inode;
pub(crate) mod io;
pub(crate) mod journal;
pub(crate) mod orphan;
pub(crate) mod refcount;
pub(crate) mod state;
pub(crate) mod superblock;

pub use buf::CacheStats;
pub use dir::{DirEntry, NAME_MAX};
pub use engine::{Fork, MapKind, Mapping};
pub use fsck::{fsck, FsckReport, Owner, Problem};
pub use inode::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};
pub use mkfs::{mkfs, MkfsOptions};
pub use mount::{Frond, MountError, StatFs};
pub use namespace::{SetAttr, Stat, SYMLINK_MAX};

#[cfg(test)]
mod tests;

#[cfg(test)]
#[allow(dead_code)] // helpers are shared by tests added milestone by milestone
pub(crate) mod testutil;
