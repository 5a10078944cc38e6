//! Namespace operations at the metadata level: lookup, create (mknod), mkdir, symlink,
//! readlink, link, unlink, rmdir, rename, readdir, stat. Errors are Linux's.
//!
//! Each operation checks everything first (names, types, existence, link limits, emptiness,
//! rename loops) and only then changes metadata, inside one reservation sized for its worst
//! case, so a failure never leaves a half-done change. An inode whose last link goes joins the
//! orphan list in that transaction and is then freed with its blocks (possibly over several
//! transactions; a crash in between is finished at mount). Open files: the file API pins open inodes ([`Frond::pin`]): an unlinked pinned inode stays on the
//! orphan list until its last [`Frond::unpin`] frees it (or the next mount does, after a crash).
//!
//! Lock order: every call takes the metadata lock ([`Frond`]'s state) for its whole duration.
//!
//! # Linux <-> here
//!
//! | Linux (VFS + XFS) | here |
//! |---|---|
//! | `xfs_lookup` | [`Frond::lookup`] |
//! | `xfs_create` / `vfs_mknod` | [`Frond::create`] |
//! | `xfs_mkdir` | [`Frond::mkdir`] |
//! | `xfs_symlink` (inline or remote target) | [`Frond::symlink`] |
//! | `xfs_link` | [`Frond::link`] |
//! | `xfs_remove` | [`Frond::unlink`] / [`Frond::rmdir`] |
//! | `xfs_rename` (+ `vfs_rename` checks) | [`Frond::rename`] |
//! | `xfs_readdir` | [`Frond::readdir`] |
//! | `xfs_vn_getattr` | [`Frond::stat`] |

use alloc::vec::Vec;

use super::dir::{check_name, DirEntry};
use super::extent::fork::insert_real;
use super::extent::record::{Ext, ExtState};
use super::format::{Error, FResult};
use super::inode::*;
use super::mount::Frond;
use super::state::{FsState, Pool};
use crate::block::BioFlags;
use crate::{Errno, Result};

/// Longest symlink target.
pub const SYMLINK_MAX: usize = 4095;

/// Attribute changes for [`Frond::setattr`]; `None` leaves a field alone. Size changes go
/// through truncate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (the file type cannot change).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time, ns.
    pub atime: Option<i64>,
    /// New modification time, ns.
    pub mtime: Option<i64>,
}

/// What `stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Type and permissions.
    pub mode: u32,
    /// Links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    /// Preferred I/O size (the block size).
    pub blksize: u32,
    /// Access time, ns.
    pub atime: i64,
    /// Modification time, ns.
    pub mtime: i64,
    /// Change time, ns.
    pub ctime: i64,
    /// Birth time, ns.
    pub btime: i64,
    /// Generation.
    pub generation: u32,
}

fn dt(mode: u32) -> u8 {
    ((mode & S_IFMT) >> 12) as u8
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

impl FsState {
    /// A directory inode, or `ENOTDIR`; `ENOENT` for a removed directory.
    fn dir_inode(&mut self, dir: u64) -> FResult<()> {
        let d = self.inode(dir)?;
        if !d.is_dir() {
            return Err(Errno::ENOTDIR.into());
        }
        if d.nlink == 0 {
            return Err(Errno::ENOENT.into());
        }
        Ok(())
    }

    /// Follows a directory entry to its inode: a dangling entry is corruption.
    fn entry_inode(&mut self, dir: u64, ino: u64) -> FResult<()> {
        match self.iget(ino) {
            Err(Error::Errno(Errno::ESTALE)) => Err(self
                .corrupt(crate::frond_corrupt!("directory {dir}: entry points to unallocated inode {ino}"))),
            r => r,
        }
    }

    /// The inode `name` names in `dir` (including `.` and `..`).
    pub fn lookup(&mut self, dir: u64, name: &[u8]) -> FResult<u64> {
        self.dir_inode(dir)?;
        check_name(name)?;
        match name {
            b"." => return Ok(dir),
            b".." => return Ok(self.inode(dir)?.parent),
            _ => {}
        }
        let (_, ino, _) = self.dir_lookup(dir, name)?.ok_or(Errno::ENOENT)?;
        self.entry_inode(dir, ino)?;
        Ok(ino)
    }

    fn touch_dir(&mut self, dir: u64) -> FResult<()> {
        let t = now(self);
        let d = self.inode(dir)?;
        d.mtime = t;
        d.ctime = t;
        self.mark_inode_dirty(dir);
        Ok(())
    }

    /// Checks a name can be created in `dir`.
    fn check_new_name(&mut self, dir: u64, name: &[u8]) -> FResult<()> {
        self.dir_inode(dir)?;
        check_name(name)?;
        if is_dot(name) || self.dir_lookup(dir, name)?.is_some() {
            return Err(Errno::EEXIST.into());
        }
        Ok(())
    }

    /// Creates an inode of `mode` named `name` in `dir`.
    fn make(&mut self, dir: u64, name: &[u8], mode: u32, uid: u32, gid: u32) -> FResult<u64> {
        self.check_new_name(dir, name)?;
        let is_dir = mode & S_IFMT == S_IFDIR;
        if is_dir && self.inode(dir)?.nlink >= self.sb.link_max {
            return Err(Errno::EMLINK.into());
        }
        let need = self.ialloc_blocks()? + self.dir_blocks(dir)?;
        self.op(need, 4 * need as usize + 8, Pool::Normal, |st| {
            let ino = st.ialloc(mode, uid, gid)?;
            let i = st.inode(ino)?;
            i.nlink = if is_dir { 2 } else { 1 };
            if is_dir {
                i.parent = dir;
            }
            st.mark_inode_dirty(ino);
            st.dir_add(dir, name, ino, dt(mode))?;
            if is_dir {
                st.inode(dir)?.nlink += 1;
            }
            st.touch_dir(dir)?;
            Ok(ino)
        })
    }

    /// Frees an orphan inode (last link gone, on the orphan list): its blocks, its directory
    /// tree, then the inode, which leaves the orphan list in the same transaction.
    pub fn release_inode(&mut self, ino: u64) -> FResult<()> {
        let (is_dir, format) = {
            let i = self.inode(ino)?;
            (i.is_dir(), i.format)
        };
        if !is_dir && format != Format::Inline {
            self.truncate_blocks(ino, 0)?;
        }
        self.op(4, 16, Pool::Reserve, |st| {
            if is_dir {
                let mut t = st.dir_tree(ino)?;
                t.destroy(st)?;
            }
            st.orphan_remove(ino)?;
            st.ifree(ino)
        })
    }

    /// Drops one link of `ino`; frees it at zero.
    fn drop_link(&mut self, ino: u64) -> FResult<()> {
        let gone = self.op(0, 4, Pool::Reserve, |st| {
            let t = now(st);
            let i = st.inode(ino)?;
            i.nlink = if i.is_dir() { 0 } else { i.nlink.saturating_sub(1) };
            i.ctime = t;
            let gone = i.nlink == 0;
            st.mark_inode_dirty(ino);
            if gone {
                st.orphan_add(ino)?;
            }
            Ok(gone)
        })?;
        if gone && !self.pinned.contains_key(&ino) {
            self.release_inode(ino)?;
        }
        Ok(())
    }

    fn remove(&mut self, dir: u64, name: &[u8], want_dir: bool) -> FResult<()> {
        self.dir_inode(dir)?;
        check_name(name)?;
        if want_dir && name == b"." {
            return Err(Errno::EINVAL.into());
        }
        if want_dir && name == b".." {
            return Err(Errno::ENOTEMPTY.into());
        }
        if is_dot(name) {
            return Err(Errno::EISDIR.into());
        }
        let (key, ino, _) = self.dir_lookup(dir, name)?.ok_or(Errno::ENOENT)?;
        self.entry_inode(dir, ino)?;
        let (is_dir, empty) = {
            let i = self.inode(ino)?;
            (i.is_dir(), i.nrecs == 0)
        };
        match (want_dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR.into()),
            (false, true) => return Err(Errno::EISDIR.into()),
            (true, true) if !empty => return Err(Errno::ENOTEMPTY.into()),
            _ => {}
        }
        self.op(0, 16, Pool::Reserve, |st| {
            st.dir_remove(dir, key)?;
            if is_dir {
                let d = st.inode(dir)?;
                d.nlink = d.nlink.saturating_sub(1);
            }
            st.touch_dir(dir)
        })?;
        self.drop_link(ino)
    }

    /// Whether `dir` is `anc` or lies below it.
    fn is_under(&mut self, mut dir: u64, anc: u64) -> FResult<bool> {
        let root = self.root.root_dir;
        let mut seen = alloc::collections::BTreeSet::new();
        loop {
            if dir == anc {
                return Ok(true);
            }
            if dir == root {
                return Ok(false);
            }
            if !seen.insert(dir) {
                return Err(self.corrupt(crate::frond_corrupt!("directory parent chain loops at {dir}")));
            }
            let p = self.inode(dir)?.parent;
            self.entry_inode(dir, p)?;
            if !self.inode(p)?.is_dir() {
                return Err(
                    self.corrupt(crate::frond_corrupt!("directory {dir} has non-directory parent {p}"))
                );
            }
            dir = p;
        }
    }

    fn rename(&mut self, odir: u64, oname: &[u8], ndir: u64, nname: &[u8]) -> FResult<()> {
        self.dir_inode(odir)?;
        self.dir_inode(ndir)?;
        check_name(oname)?;
        check_name(nname)?;
        if is_dot(oname) || is_dot(nname) {
            return Err(Errno::EBUSY.into());
        }
        let (okey, src, _) = self.dir_lookup(odir, oname)?.ok_or(Errno::ENOENT)?;
        self.entry_inode(odir, src)?;
        let target = self.dir_lookup(ndir, nname)?;
        if let Some((_, t, _)) = target {
            self.entry_inode(ndir, t)?;
            if t == src {
                return Ok(());
            }
        }
        let (src_dir, src_mode) = {
            let i = self.inode(src)?;
            (i.is_dir(), i.mode)
        };
        let mut target_is_dir = false;
        if let Some((_, t, _)) = target {
            let (tdir, tempty) = {
                let i = self.inode(t)?;
                (i.is_dir(), i.nrecs == 0)
            };
            target_is_dir = tdir;
            if src_dir && !tdir {
                return Err(Errno::ENOTDIR.into());
            }
            if !src_dir && tdir {
                return Err(Errno::EISDIR.into());
            }
            if tdir && !tempty {
                return Err(Errno::ENOTEMPTY.into());
            }
        }
        if src_dir && odir != ndir {
            if self.is_under(ndir, src)? {
                return Err(Errno::EINVAL.into());
            }
            if !target_is_dir && self.inode(ndir)?.nlink >= self.sb.link_max {
                return Err(Errno::EMLINK.into());
            }
        }
        let need = self.dir_blocks(ndir)?;
        self.op(need, 4 * need as usize + 16, Pool::Normal, |st| {
            match target {
                Some((tkey, _, _)) => st.dir_replace(ndir, tkey, nname, src, dt(src_mode))?,
                None => st.dir_add(ndir, nname, src, dt(src_mode))?,
            }
            // The old entry's key is unchanged by inserts into another directory, and by an
            // insert into the same one (keys are never moved).
            st.dir_remove(odir, okey)?;
            if src_dir && odir != ndir {
                st.inode(src)?.parent = ndir;
                st.mark_inode_dirty(src);
                let o = st.inode(odir)?;
                o.nlink = o.nlink.saturating_sub(1);
                if !target_is_dir {
                    st.inode(ndir)?.nlink += 1;
                }
            } else if src_dir && target_is_dir {
                // Same parent: the replaced directory's ".." link goes.
                let n = st.inode(ndir)?;
                n.nlink = n.nlink.saturating_sub(1);
            }
            let t = now(st);
            st.inode(src)?.ctime = t;
            st.mark_inode_dirty(src);
            st.touch_dir(odir)?;
            st.touch_dir(ndir)
        })?;
        if let Some((_, t, _)) = target {
            if target_is_dir && odir != ndir && src_dir {
                // ndir lost the replaced directory's ".." and gained src's: no net change.
            }
            self.drop_link(t)?;
        }
        Ok(())
    }

    fn symlink(&mut self, dir: u64, name: &[u8], target: &[u8]) -> FResult<u64> {
        if target.is_empty() {
            return Err(Errno::ENOENT.into());
        }
        if target.len() > SYMLINK_MAX {
            return Err(Errno::ENAMETOOLONG.into());
        }
        self.check_new_name(dir, name)?;
        let bs = self.bs();
        let blocks = if target.len() <= LITERAL_SIZE { 0 } else { target.len().div_ceil(bs) as u64 };
        let need = self.ialloc_blocks()? + self.dir_blocks(dir)? + blocks + INLINE_EXTENTS as u64;
        self.op(need, 4 * need as usize + 8, Pool::Normal, |st| {
            let ino = st.ialloc(S_IFLNK | 0o777, 0, 0)?;
            if blocks == 0 {
                let i = st.inode(ino)?;
                i.format = Format::Inline;
                i.literal[..target.len()].copy_from_slice(target);
            } else {
                // The target goes to blocks, written before the transaction that maps them.
                let (d, got) = st.alloc_extent(st.sb.data_start, blocks, blocks)?;
                let mut buf = alloc::vec![0u8; got as usize * bs];
                buf[..target.len()].copy_from_slice(target);
                st.io.write_block(d, &buf, BioFlags::empty())?;
                st.fork_edit(ino, 0, got, |_, map| {
                    insert_real(map, 0, Ext::real(d, got, ExtState::Written));
                    Ok(())
                })?;
            }
            let i = st.inode(ino)?;
            i.nlink = 1;
            i.size = target.len() as u64;
            i.disk_size = i.size;
            st.mark_inode_dirty(ino);
            st.dir_add(dir, name, ino, dt(S_IFLNK))?;
            st.touch_dir(dir)?;
            Ok(ino)
        })
    }

    fn readlink(&mut self, ino: u64) -> FResult<Vec<u8>> {
        let (ft, format, size) = {
            let i = self.inode(ino)?;
            (i.ftype(), i.format, i.size as usize)
        };
        if ft != S_IFLNK {
            return Err(Errno::EINVAL.into());
        }
        if size == 0 || size > SYMLINK_MAX {
            return Err(self.corrupt(crate::frond_corrupt!("symlink {ino}: target length {size}")));
        }
        if format == Format::Inline {
            let mut out = alloc::vec![0u8; size];
            self.read_inline(ino, 0, &mut out)?;
            return Ok(out);
        }
        let bs = self.bs();
        let mut out = Vec::with_capacity(size);
        let mut fb = 0u64;
        while out.len() < size {
            let m = self.map(ino, fb, 1, super::extent::fork::Fork::Data)?;
            if m.kind != super::extent::ops::MapKind::Mapped {
                return Err(
                    self.corrupt(crate::frond_corrupt!("symlink {ino}: target block {fb} not mapped"))
                );
            }
            let mut b = alloc::vec![0u8; bs];
            self.io.read_blocks(m.disk_block, &mut b)?;
            let take = (size - out.len()).min(bs);
            out.extend_from_slice(&b[..take]);
            fb += 1;
        }
        Ok(out)
    }

    fn link(&mut self, ino: u64, dir: u64, name: &[u8]) -> FResult<()> {
        self.check_new_name(dir, name)?;
        let link_max = self.sb.link_max;
        let i = self.inode(ino)?;
        if i.is_dir() {
            return Err(Errno::EPERM.into());
        }
        if i.nlink == 0 {
            return Err(Errno::ENOENT.into());
        }
        if i.nlink >= link_max {
            return Err(Errno::EMLINK.into());
        }
        let mode = i.mode;
        let need = self.dir_blocks(dir)?;
        self.op(need, 4 * need as usize + 8, Pool::Normal, |st| {
            st.dir_add(dir, name, ino, dt(mode))?;
            let t = now(st);
            let i = st.inode(ino)?;
            i.nlink += 1;
            i.ctime = t;
            st.mark_inode_dirty(ino);
            st.touch_dir(dir)
        })
    }

    fn stat(&mut self, ino: u64) -> FResult<Stat> {
        let bs = self.bs() as u32;
        let i = self.inode(ino)?;
        Ok(Stat {
            ino,
            mode: i.mode,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            blocks: i.nblocks * (bs as u64 / 512),
            blksize: bs,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            btime: i.btime,
            generation: i.generation,
        })
    }
}

impl Frond {
    /// The root directory's inode number.
    pub fn root_ino(&self) -> u64 {
        self.state.lock().root.root_dir
    }

    /// The inode `name` names in directory `dir` (`.` and `..` included).
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64> {
        self.with(|st| st.lookup(dir, name))
    }

    /// Creates a non-directory inode (`S_IFREG`, `S_IFCHR`, `S_IFBLK`, `S_IFIFO`, `S_IFSOCK`
    /// with permission bits) named `name` in `dir`.
    pub fn create(&self, dir: u64, name: &[u8], mode: u32, uid: u32, gid: u32) -> Result<u64> {
        let ft = mode & S_IFMT;
        if ![S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK].contains(&ft) {
            return Err(Errno::EINVAL);
        }
        self.with(|st| st.make(dir, name, mode & (S_IFMT | 0o7777), uid, gid))
    }

    /// Creates directory `name` in `dir` with permission bits `perm`.
    pub fn mkdir(&self, dir: u64, name: &[u8], perm: u32, uid: u32, gid: u32) -> Result<u64> {
        self.with(|st| st.make(dir, name, S_IFDIR | (perm & 0o7777), uid, gid))
    }

    /// Creates symlink `name` in `dir` pointing at `target`.
    pub fn symlink(&self, dir: u64, name: &[u8], target: &[u8]) -> Result<u64> {
        self.with(|st| st.symlink(dir, name, target))
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.with(|st| st.readlink(ino))
    }

    /// Adds name `name` in `dir` for existing inode `ino`.
    pub fn link(&self, ino: u64, dir: u64, name: &[u8]) -> Result<()> {
        self.with(|st| st.link(ino, dir, name))
    }

    /// Removes non-directory `name` from `dir`.
    pub fn unlink(&self, dir: u64, name: &[u8]) -> Result<()> {
        self.with(|st| st.remove(dir, name, false))
    }

    /// Removes empty directory `name` from `dir`.
    pub fn rmdir(&self, dir: u64, name: &[u8]) -> Result<()> {
        self.with(|st| st.remove(dir, name, true))
    }

    /// Renames `odir/oname` to `ndir/nname`, replacing a compatible target.
    pub fn rename(&self, odir: u64, oname: &[u8], ndir: u64, nname: &[u8]) -> Result<()> {
        self.with(|st| st.rename(odir, oname, ndir, nname))
    }

    /// Lists directory `dir` from `cookie` (0 = start), at most `max` entries.
    pub fn readdir(&self, dir: u64, cookie: u64, max: usize) -> Result<Vec<DirEntry>> {
        self.with(|st| {
            st.dir_inode(dir)?;
            st.dir_list(dir, cookie, max)
        })
    }

    /// The attributes of `ino`.
    pub fn stat(&self, ino: u64) -> Result<Stat> {
        self.with(|st| st.stat(ino))
    }

    /// Changes attributes of `ino` (ctime becomes now), in a transaction.
    pub fn setattr(&self, ino: u64, a: &SetAttr) -> Result<()> {
        if a.perm.is_some_and(|p| p & !0o7777 != 0) {
            return Err(Errno::EINVAL);
        }
        self.with(|st| {
            st.inode(ino)?;
            st.op(0, 2, Pool::Normal, |st| {
                let t = now(st);
                let i = st.inode(ino)?;
                if let Some(p) = a.perm {
                    i.mode = (i.mode & S_IFMT) | p;
                }
                if let Some(u) = a.uid {
                    i.uid = u;
                }
                if let Some(g) = a.gid {
                    i.gid = g;
                }
                if let Some(t) = a.atime {
                    i.atime = t;
                }
                if let Some(t) = a.mtime {
                    i.mtime = t;
                }
                i.ctime = t;
                st.mark_inode_dirty(ino);
                Ok(())
            })
        })
    }
}
