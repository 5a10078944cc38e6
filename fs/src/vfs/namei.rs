//! Namespace calls of the file API and opening files: lookup (and path resolution), create,
//! mkdir, symlink, readlink, link, unlink, rmdir, rename, readdir, stat, open, close.
//!
//! The calls are frond's ([`Frond`](crate::frond::Frond)'s namespace operations, with Linux's
//! errors) plus what only the file API knows: open files. An inode that is open is pinned in
//! frond, so dropping its last name leaves it on the orphan list; the last close drops its
//! cache and frees it. Removing the last name of a closed inode drops its cache (dirty data
//! included: the blocks are being freed) before frond frees the blocks. `stat` reports the
//! in-core size.
//!
//! Lock order: the namespace lock is held across each call (and across open / last close), then
//! frond's metadata lock inside frond.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `path_lookupat` | [`FrondFs::resolve`] | absolute paths from the root, no symlink following |
//! | `do_filp_open` (`O_CREAT`, `O_EXCL`, `O_TRUNC`) | [`FrondFs::open_at`] / [`FrondFs::open`] | |
//! | `vfs_unlink` / `vfs_rename` + `iput_final` | [`FrondFs::unlink`], [`FrondFs::rename`], [`File`]'s drop | |
//! | `vfs_getattr` | [`FrondFs::stat`] | |

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::file::File;
use super::flags::OpenFlags;
use super::fs::{FrondFs, INODE_TABLE_TARGET};
use super::inode::Inode;
use crate::frond::{DirEntry, Stat, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::{Errno, Result};

impl FrondFs {
    /// The inode `name` names in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64> {
        self.frond.lookup(dir, name)
    }

    /// The inode of absolute path `path` (`/`-separated, empty components ignored; no symlink
    /// is followed).
    pub fn resolve(&self, path: &[u8]) -> Result<u64> {
        let mut ino = self.root();
        for part in path.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
            ino = self.frond.lookup(ino, part)?;
        }
        Ok(ino)
    }

    /// Creates a regular file (or another non-directory type given in `mode`'s type bits; a
    /// bare permission means a regular file) named `name` in `dir`.
    pub fn create(&self, dir: u64, name: &[u8], mode: u32) -> Result<u64> {
        let mode = if mode & S_IFMT == 0 { mode | S_IFREG } else { mode };
        let _ns = self.ns.lock();
        self.frond.create(dir, name, mode, 0, 0)
    }

    /// Creates directory `name` in `dir`.
    pub fn mkdir(&self, dir: u64, name: &[u8], perm: u32) -> Result<u64> {
        let _ns = self.ns.lock();
        self.frond.mkdir(dir, name, perm, 0, 0)
    }

    /// Creates symlink `name` in `dir` pointing at `target`.
    pub fn symlink(&self, dir: u64, name: &[u8], target: &[u8]) -> Result<u64> {
        let _ns = self.ns.lock();
        self.frond.symlink(dir, name, target)
    }

    /// The target of symlink `ino` (`EINVAL` for other types).
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.frond.readlink(ino)
    }

    /// Adds name `name` in `dir` for `ino`.
    pub fn link(&self, ino: u64, dir: u64, name: &[u8]) -> Result<()> {
        let _ns = self.ns.lock();
        self.frond.link(ino, dir, name)
    }

    /// Removes a name of a non-directory.
    pub fn unlink(&self, dir: u64, name: &[u8]) -> Result<()> {
        let _ns = self.ns.lock();
        let ino = self.frond.lookup(dir, name)?;
        self.drop_name(ino, || self.frond.unlink(dir, name))
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, dir: u64, name: &[u8]) -> Result<()> {
        let _ns = self.ns.lock();
        let ino = self.frond.lookup(dir, name)?;
        self.drop_name(ino, || self.frond.rmdir(dir, name))
    }

    /// Renames `odir/oname` to `ndir/nname`, replacing a compatible target.
    pub fn rename(&self, odir: u64, oname: &[u8], ndir: u64, nname: &[u8]) -> Result<()> {
        let _ns = self.ns.lock();
        match self.frond.lookup(ndir, nname) {
            Ok(target) if self.frond.lookup(odir, oname) != Ok(target) => {
                self.drop_name(target, || self.frond.rename(odir, oname, ndir, nname))
            }
            Ok(_) | Err(Errno::ENOENT) => self.frond.rename(odir, oname, ndir, nname),
            Err(e) => Err(e),
        }
    }

    /// Runs `remove` (which may drop the last link of `ino`) with `ino` pinned, then frees it
    /// unless an open file still holds it. Namespace lock held.
    fn drop_name(&self, ino: u64, remove: impl FnOnce() -> Result<()>) -> Result<()> {
        self.frond.pin(ino)?;
        let r = remove();
        let gone = self.frond.stat(ino).map(|s| s.nlink == 0).unwrap_or(false);
        let open = self.cached_inode(ino).is_some_and(|i| i.open_count() > 0);
        if gone && !open {
            self.forget(ino);
        }
        let unpinned = self.frond.unpin(ino);
        r?;
        unpinned.map(|_| ())
    }

    /// Lists directory `dir` from `cookie` (0 = start), at most `max` entries.
    pub fn readdir(&self, dir: u64, cookie: u64, max: usize) -> Result<Vec<DirEntry>> {
        self.frond.readdir(dir, cookie, max)
    }

    /// The attributes of `ino` (the in-core size for an inode in use).
    pub fn stat(&self, ino: u64) -> Result<Stat> {
        let mut st = self.frond.stat(ino)?;
        if let Some(i) = self.cached_inode(ino) {
            st.size = i.file().size();
        }
        Ok(st)
    }

    /// Opens `ino` with `flags` (`CREAT` / `EXCL` mean nothing here). `EISDIR` for a directory
    /// opened for writing, `ELOOP` for a symlink, `ENXIO` for device / fifo / socket inodes,
    /// `EINVAL` for `O_DIRECT` on a directory. `O_TRUNC` with write access truncates. Past twice
    /// [`INODE_TABLE_TARGET`] in-core inodes, unused ones are evicted first.
    pub fn open(self: &Arc<Self>, ino: u64, flags: OpenFlags) -> Result<File> {
        let inode = self.iget(ino)?;
        if self.inodes.lock().len() > 2 * INODE_TABLE_TARGET {
            // A kernel that never calls `background_work` still keeps the table bounded.
            self.evict(INODE_TABLE_TARGET);
        }
        match inode.mode & S_IFMT {
            S_IFDIR if flags.writable() || flags.contains(OpenFlags::TRUNC) => return Err(Errno::EISDIR),
            S_IFDIR if flags.contains(OpenFlags::DIRECT) => return Err(Errno::EINVAL),
            S_IFDIR | S_IFREG => {}
            S_IFLNK => return Err(Errno::ELOOP),
            _ => return Err(Errno::ENXIO),
        }
        {
            let _ns = self.ns.lock();
            self.frond.pin(ino)?;
            inode.opens.fetch_add(1, Ordering::AcqRel);
        }
        let file = File::new(self.clone(), inode, flags);
        if flags.contains(OpenFlags::TRUNC) && flags.writable() && file.inode().is_reg() {
            file.truncate(0)?;
        }
        Ok(file)
    }

    /// Opens `name` in `dir`: with `CREAT` a missing regular file is created with permission
    /// `perm` (`EEXIST` with `EXCL` when it exists).
    pub fn open_at(self: &Arc<Self>, dir: u64, name: &[u8], flags: OpenFlags, perm: u32) -> Result<File> {
        let ino = match self.frond.lookup(dir, name) {
            Ok(_) if flags.contains(OpenFlags::CREAT | OpenFlags::EXCL) => return Err(Errno::EEXIST),
            Ok(ino) => ino,
            Err(Errno::ENOENT) if flags.contains(OpenFlags::CREAT) => {
                match self.create(dir, name, S_IFREG | (perm & 0o7777)) {
                    Err(Errno::EEXIST) if !flags.contains(OpenFlags::EXCL) => self.frond.lookup(dir, name)?,
                    r => r?,
                }
            }
            Err(e) => return Err(e),
        };
        self.open(ino, flags)
    }

    /// The last-close work of an open file: unpin; an inode whose last name is gone loses its
    /// cache and is freed.
    pub(crate) fn release(&self, inode: &Arc<Inode>) -> Result<()> {
        let _ns = self.ns.lock();
        let left = inode.opens.fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 && self.frond.stat(inode.ino).is_ok_and(|s| s.nlink == 0) {
            self.forget(inode.ino);
        }
        self.frond.unpin(inode.ino).map(|_| ())
    }
}
