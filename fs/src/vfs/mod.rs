//! The file API a kernel calls: frond mounted on the iomap engine and the page cache.
//!
//! # Pieces
//!
//! | module | owns |
//! |---|---|
//! | [`mod@fs`] | [`FrondFs`]: mount / unmount / statfs / sync, the in-core inode table, background work |
//! | [`namei`] | namespace calls (create, lookup, unlink, rename, mkdir, rmdir, readdir, link, symlink, readlink, stat) |
//! | [`mod@file`] | [`File`] (an open file): read, write (O_DIRECT / O_SYNC / O_DSYNC / O_APPEND), fsync, truncate |
//! | [`falloc`] | fallocate: allocate, keep size, punch hole, zero range, collapse, insert, unshare |
//! | `atomic` | untorn writes of several blocks (out of place, one remap transaction) |
//! | [`remap`] | clone range (FICLONERANGE rules), dedupe range, copy range |
//! | [`seek`] | SEEK_DATA / SEEK_HOLE |
//! | `inode`, `mapping`, `dio_map` | the in-core inode and frond's [`IomapOps`](crate::iomap::IomapOps) (the mapping callback; `dio_map`: its direct-I/O answers) |
//! | `hooks` | the page cache's writeback hooks for one mount |
//! | [`flags`] | open, fallocate and seek flags with Linux's values |
//! | [`mod@bench`] | benchmark rows |
//!
//! # Using it
//!
//! ```text
//! frond::mkfs(dev.clone(), platform.clone(), &MkfsOptions::default())?;
//! let fs = FrondFs::mount(dev, platform, MountOptions::new(64 << 20))?;
//! let f = fs.open_at(fs.root(), b"a", OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
//! f.write(0, b"hello")?; f.fsync()?;
//! fs.background_work();                    // from the kernel's worker / idle loop
//! drop(f); fs.unmount()?;
//! ```
//!
//! # Lock order
//!
//! namespace lock (`FrondFs::ns`: namespace calls, open / last close) > inode rw locks (Linux's
//! `i_rwsem`; two inodes in inode-number order) > the engine's locks (mapping invalidate lock >
//! folio lock, see [`crate::iomap`]) > the inode's map lock (makes "change frond's extent map +
//! bump the mapping sequence" atomic for the validity cookie) > frond's metadata lock > buffer
//! and device locks. Writers, truncate, fallocate, clone and copy into a file hold its rw lock
//! exclusively (direct writes only when sub-block, extending or appending); buffered and direct
//! readers and block-aligned direct overwrites hold it shared; fsync takes none (the engine's
//! writeback flag serialises writeback). Nothing waits for a folio or for I/O completion work
//! while holding a map lock or frond's lock; completion work (`ioend_done`) takes only those two.
//!
//! # Linux <-> here
//!
//! | Linux | here | deliberate deviation |
//! |---|---|---|
//! | VFS `struct file`, `vfs_read/write`, `vfs_fsync_range` | [`File`] | positional calls (`pread` / `pwrite` style); no file position |
//! | `do_sys_open` + `O_*` | [`FrondFs::open`], [`FrondFs::open_at`] | no permission checks (the kernel's job) |
//! | `i_rwsem`, `invalidate_lock` | inode rw lock, the mapping's invalidate lock | spin locks |
//! | XFS `xfs_buffered_write_iomap_begin/end`, `xfs_read_iomap_begin`, `xfs_map_blocks`, `xfs_end_ioend` | `mapping` (`impl IomapOps`) | one callback, per extent |
//! | `xfs_file_fallocate` | [`falloc`] | unshare rewrites shared ranges through the cache (the engine's UNSHARE op is not there yet) |
//! | `vfs_clone_file_range`, `vfs_dedupe_file_range`, `vfs_copy_file_range` | [`remap`] | |
//! | `iomap_seek_data/hole` | [`seek`] | unwritten extents count as data only where cached |
//! | `xfs_file_dio_*` | [`File::read`] / [`File::write`] with `O_DIRECT` (the engine's direct I/O; frond's DIRECT mapping answers in `dio_map`) | inline data continues buffered |
//! | flusher threads, `wb_workfn` | `hooks` + [`FrondFs::background_work`] | called by the kernel, no threads |
//! | open file keeps an unlinked inode (`iput` at last close) | [`frond::Frond::pin`](crate::frond::Frond::pin) | |

mod atomic;
pub mod bench;
mod dio_map;
pub mod falloc;
pub mod file;
pub mod flags;
pub mod fs;
mod hooks;
mod inode;
pub(crate) mod mapping;
pub mod namei;
pub mod remap;
pub mod seek;

#[cfg(test)]
mod remap_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dio;
#[cfg(test)]
mod tests_dio_cost;

pub use crate::frond::{fsck, mkfs, DirEntry, FsckReport, MkfsOptions, MountError, Stat, StatFs};
pub use atomic::ATOMIC_WRITE_MAX;
pub use falloc::FallocFlags;
pub use file::File;
pub use flags::{OpenFlags, Whence};
pub use fs::{BackgroundReport, FrondFs, MountOptions};
pub use remap::DedupeOutcome;
