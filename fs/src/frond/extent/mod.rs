//! Per-inode extent maps: the data fork (on disk inline in the inode or as a B+tree, in core as
//! a map that also holds delayed allocations), and the operations the iomap engine will call.
//!
//! Owns [`record`] (extent records and encodings), [`fork`] (loading the data fork and keeping
//! its on-disk form equal to the in-core real extents), [`ops`] (map, delalloc reservation,
//! allocation, unwritten conversion, punch, truncate), [`shift`] (collapse / insert range) and
//! [`clone`] (reflink: clone, dedupe). The COW fork is in `cowfork`.
//!
//! Every change to a fork bumps the inode's mapping sequence number (the engine's validity
//! cookie for cached mappings).
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here | deviation |
//! |---|---|---|
//! | `xfs_bmbt` on disk, `xfs_iext` tree in core | tree [`record::BMAP`], `ExtMap` (`BTreeMap`) | |
//! | `XFS_DINODE_FMT_EXTENTS` / `_BTREE` / `_LOCAL` | `Format::Extents` / `Btree` / `Inline` | inline list of up to 16 records |
//! | `xfs_bmapi_read` | `FsState::map` | |
//! | `xfs_bmapi_reserve_delalloc` (+ `indlen`) | `FsState::reserve_delalloc` | `indlen` = map height + 1 per extent |
//! | `xfs_bmapi_convert_delalloc` / `xfs_bmapi_write` | `FsState::allocate` | |
//! | `xfs_bmapi_write(XFS_BMAPI_CONVERT)` | `FsState::convert_unwritten` | |
//! | `xfs_bunmapi` | `FsState::punch` | |
//! | `xfs_bmap_collapse_extents` / `_insert_extents` | `FsState::collapse` / `insert` | one transaction chain |
//! | `iomap->validity_cookie` (`if_seq`) | `Inode::seq` | one counter for both forks |

pub mod clone;
pub mod fork;
pub mod ops;
pub mod record;
pub mod shift;

/// Largest file, in blocks (file block numbers stay below this).
pub const MAX_FILE_BLOCKS: u64 = 1 << 40;
