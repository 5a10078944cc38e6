//! Directories: hashed-name B+trees of fixed-size entries.
//!
//! Owns the directory tree format ([`DIRT`]): one tree per directory (rooted in the inode),
//! keyed by `(crc32c(name) << 32) | collision index`, so a lookup is one O(log n) seek plus a
//! scan of the (normally single) entry with that hash; names whose hashes collide get the next
//! free index. The value holds the inode number, the file type (Linux `DT_*`, i.e.
//! `S_IFMT >> 12`) and the name (1 ..= 255 bytes, no `/` or NUL). `.` and `..` are not stored:
//! `..` is the directory inode's parent field. A directory's size is its number of entries.
//!
//! readdir cookies: 0 = `.`, 1 = `..`, `key + 2` = the entry with that key; every returned
//! entry carries the cookie to resume after it. Cookies stay valid across inserts and deletes.
//!
//! ```text
//! value (272 bytes): ino u64 | ftype u8 | name_len u8 | name [255] | 7 bytes zero
//! ```
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS dir2) | here | deviation |
//! |---|---|---|
//! | shortform / block / leaf / node directories | always a B+tree | one format; small directories cost one block |
//! | `xfs_da_hashname` + hash-ordered leaf entries | `crc32c` hash + collision index in the key | |
//! | variable-length data entries | fixed 272-byte values | simpler, more space for short names |
//! | readdir cookie = dataptr | `key + 2` | stable across changes |

use alloc::vec::Vec;

use super::btree::{Spec, Tree, TreeKind};
use super::crc32c::crc32c;
use super::format::*;
use super::state::FsState;
use crate::frond_corrupt;
use crate::Errno;

/// Longest name in bytes.
pub const NAME_MAX: usize = 255;
const V_INO: usize = 0;
const V_FTYPE: usize = 8;
const V_LEN: usize = 9;
const V_NAME: usize = 10;
/// Directory tree value size.
pub const DIRENT_SIZE: usize = 272;

/// A directory tree: key = (name hash << 32) | collision index.
pub static DIRT: Spec =
    Spec { kind: TreeKind::Directory, name: "directory", key_size: 8, val_size: DIRENT_SIZE };

/// One directory entry as readdir returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name.
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: u64,
    /// File type (`DT_*`: `S_IFMT >> 12`).
    pub ftype: u8,
    /// Cookie that resumes the listing after this entry.
    pub next: u64,
}

/// The hash of a name.
pub fn name_hash(name: &[u8]) -> u32 {
    crc32c(name)
}

/// Checks a name: `ENOENT` when empty, `ENAMETOOLONG` past 255 bytes, `EINVAL` for a `/` or
/// NUL byte.
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn encode(ino: u64, ftype: u8, name: &[u8]) -> [u8; DIRENT_SIZE] {
    let mut v = [0u8; DIRENT_SIZE];
    put64(&mut v, V_INO, ino);
    v[V_FTYPE] = ftype;
    v[V_LEN] = name.len() as u8;
    v[V_NAME..V_NAME + name.len()].copy_from_slice(name);
    v
}

/// Decodes and validates an entry value stored under `key` in directory `dir`.
pub fn decode(v: &[u8], key: u64, dir: u64) -> Result<(Vec<u8>, u64, u8), Corrupt> {
    let len = v[V_LEN] as usize;
    let name = &v[V_NAME..V_NAME + len];
    if len == 0 || check_name(name).is_err() {
        return Err(frond_corrupt!("directory {dir}: entry {key:#x} has an invalid name"));
    }
    if name_hash(name) as u64 != key >> 32 {
        return Err(frond_corrupt!("directory {dir}: entry {key:#x} is filed under the wrong hash"));
    }
    let ino = get64(v, V_INO);
    let ft = v[V_FTYPE];
    if ino == 0 || ![1u8, 2, 4, 6, 8, 10, 12].contains(&ft) {
        return Err(frond_corrupt!("directory {dir}: entry {key:#x} has inode {ino} type {ft}"));
    }
    Ok((name.to_vec(), ino, ft))
}

impl FsState {
    /// The directory tree of `dir`.
    pub fn dir_tree(&mut self, dir: u64) -> FResult<Tree> {
        let root = self.inode(dir)?.root;
        Ok(Tree::new(&DIRT, dir, root))
    }

    fn set_dir_root(&mut self, dir: u64, t: Tree) -> FResult<()> {
        let i = self.inode(dir)?;
        if i.root != t.root {
            i.root = t.root;
            self.mark_inode_dirty(dir);
        }
        Ok(())
    }

    /// Worst-case blocks one entry insert takes.
    pub fn dir_blocks(&mut self, dir: u64) -> FResult<u64> {
        Ok(self.dir_tree(dir)?.height(self)? as u64 + 2)
    }

    /// Finds `name` in `dir`: (key, inode, type).
    pub fn dir_lookup(&mut self, dir: u64, name: &[u8]) -> FResult<Option<(u64, u64, u8)>> {
        let h = name_hash(name) as u64;
        let t = self.dir_tree(dir)?;
        let mut found = None;
        let mut bad = None;
        t.walk(self, (h << 32) as u128, &mut |k, v| {
            let k = k as u64;
            if k >> 32 != h {
                return Ok(false);
            }
            match decode(v, k, dir) {
                Ok((n, ino, ft)) if n == name => {
                    found = Some((k, ino, ft));
                    Ok(false)
                }
                Ok(_) => Ok(true),
                Err(c) => {
                    bad = Some(c);
                    Ok(false)
                }
            }
        })?;
        if let Some(c) = bad {
            return Err(self.corrupt(c));
        }
        Ok(found)
    }

    /// Adds `name -> ino` to `dir` (the caller checked it is absent).
    pub fn dir_add(&mut self, dir: u64, name: &[u8], ino: u64, ftype: u8) -> FResult<()> {
        let h = name_hash(name) as u64;
        let t = self.dir_tree(dir)?;
        // The first free collision index for this hash.
        let mut idx = 0u64;
        t.walk(self, (h << 32) as u128, &mut |k, _| {
            let k = k as u64;
            if k >> 32 != h || k & 0xFFFF_FFFF != idx {
                return Ok(false);
            }
            idx += 1;
            Ok(true)
        })?;
        if idx > u32::MAX as u64 - 4 {
            return Err(Errno::ENOSPC.into());
        }
        let mut t = self.dir_tree(dir)?;
        let r = t.insert(self, ((h << 32) | idx) as u128, &encode(ino, ftype, name));
        self.set_dir_root(dir, t)?;
        r?;
        let d = self.inode(dir)?;
        d.nrecs = d.nrecs.saturating_add(1);
        d.size = d.nrecs;
        d.disk_size = d.nrecs;
        self.mark_inode_dirty(dir);
        Ok(())
    }

    /// Removes the entry under `key` from `dir`.
    pub fn dir_remove(&mut self, dir: u64, key: u64) -> FResult<()> {
        let mut t = self.dir_tree(dir)?;
        let r = t.delete(self, key as u128);
        self.set_dir_root(dir, t)?;
        r?;
        let d = self.inode(dir)?;
        d.nrecs = d.nrecs.saturating_sub(1);
        d.size = d.nrecs;
        d.disk_size = d.nrecs;
        self.mark_inode_dirty(dir);
        Ok(())
    }

    /// Points the entry under `key` of `dir` (named `name`) at `ino`.
    pub fn dir_replace(&mut self, dir: u64, key: u64, name: &[u8], ino: u64, ftype: u8) -> FResult<()> {
        let t = self.dir_tree(dir)?;
        t.update(self, key as u128, &encode(ino, ftype, name))
    }

    /// Lists `dir` from `cookie`, at most `max` entries (`.` and `..` first).
    pub fn dir_list(&mut self, dir: u64, cookie: u64, max: usize) -> FResult<Vec<DirEntry>> {
        let mut out = Vec::new();
        let (parent, this) = {
            let d = self.inode(dir)?;
            (d.parent, d.ino)
        };
        if cookie == 0 && out.len() < max {
            out.push(DirEntry { name: b".".to_vec(), ino: this, ftype: 4, next: 1 });
        }
        if cookie <= 1 && out.len() < max {
            out.push(DirEntry { name: b"..".to_vec(), ino: parent, ftype: 4, next: 2 });
        }
        if out.len() >= max {
            return Ok(out);
        }
        let from = cookie.saturating_sub(2);
        let t = self.dir_tree(dir)?;
        let mut bad = None;
        t.walk(self, from as u128, &mut |k, v| {
            let k = k as u64;
            match decode(v, k, dir) {
                Ok((name, ino, ftype)) => out.push(DirEntry { name, ino, ftype, next: k + 3 }),
                Err(c) => {
                    bad = Some(c);
                    return Ok(false);
                }
            }
            Ok(out.len() < max)
        })?;
        if let Some(c) = bad {
            return Err(self.corrupt(c));
        }
        Ok(out)
    }
}
