//! The extent operations the iomap engine's mapping callback and completion hooks call:
//! map, delalloc reservation and its reverse, allocation, unwritten conversion, punch,
//! truncate, size updates and inline data. Each is per extent and O(log n).
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_bmapi_read` + `xfs_reflink_trim_around_shared` | [`FsState::map`] |
//! | `xfs_bmapi_reserve_delalloc` / `xfs_bmap_punch_delalloc_range` | [`FsState::reserve_delalloc`] / [`FsState::punch_delalloc`] |
//! | `xfs_bmapi_convert_delalloc`, `xfs_iomap_write_direct` | [`FsState::allocate`] |
//! | `xfs_iomap_write_unwritten` | [`FsState::convert_unwritten`] |
//! | `xfs_bunmapi` + `xfs_refcount_decrease_extent` | [`FsState::punch`] |
//! | `xfs_setattr_size` (block part) | [`FsState::truncate`] |
//! | `xfs_setfilesize` | [`FsState::set_disk_size`] |
//! | local-format data (`xfs_init_local_fork`) / `xfs_bmap_local_to_extents` | inline data, [`FsState::unstuff`] |

use alloc::vec::Vec;

use super::fork::{insert_merge, insert_real, lookup, next_start, remove_range, Fork};
use super::record::*;
use super::MAX_FILE_BLOCKS;
use crate::frond::format::FResult;
use crate::frond::inode::{Format, FLAG_REFLINK, LITERAL_SIZE, S_IFDIR, S_IFMT};
use crate::frond::state::{FsState, Pool};
use crate::Errno;

/// What a range of a file maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// No blocks (reads as zeros).
    Hole,
    /// Space reserved, no blocks yet.
    Delalloc,
    /// Allocated and written.
    Mapped,
    /// Allocated, reads as zeros until converted.
    Unwritten,
    /// The data lives in the inode (inline data); only block 0 of such a file maps.
    Inline,
}

/// One mapping answer: `len` blocks from `file_block` map to `disk_block..` as `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// What the range is.
    pub kind: MapKind,
    /// First file block.
    pub file_block: u64,
    /// Length in blocks (>= 1).
    pub len: u64,
    /// First disk block (0 for holes and delalloc).
    pub disk_block: u64,
    /// The blocks are shared with another file (reference count > 1): writes must COW.
    pub shared: bool,
    /// The inode's mapping sequence number when this answer was built.
    pub seq: u64,
}

fn kind_of(e: &Ext) -> MapKind {
    match e.state {
        ExtState::Written => MapKind::Mapped,
        ExtState::Unwritten => MapKind::Unwritten,
        ExtState::Delalloc => MapKind::Delalloc,
    }
}

/// Checks a block range: `EINVAL` for an empty one, `EFBIG` past the largest file.
pub fn check_range(fb: u64, count: u64) -> FResult<()> {
    if count == 0 {
        return Err(Errno::EINVAL.into());
    }
    if fb.checked_add(count).is_none_or(|e| e > MAX_FILE_BLOCKS) {
        return Err(Errno::EFBIG.into());
    }
    Ok(())
}

impl FsState {
    /// Checks `ino` is a regular file whose data fork holds extents (not inline data).
    pub fn check_extent_file(&mut self, ino: u64) -> FResult<()> {
        let i = self.inode(ino)?;
        match i.mode & S_IFMT {
            S_IFDIR => Err(Errno::EISDIR.into()),
            _ if i.format == Format::Inline => Err(Errno::EINVAL.into()),
            _ => Ok(()),
        }
    }

    /// The fork map of `ino` (loaded).
    pub fn fork_map(&mut self, ino: u64, fork: Fork) -> FResult<&mut ExtMap> {
        match fork {
            Fork::Data => self.dmap(ino),
            Fork::Cow => Ok(&mut self.inode(ino)?.cow),
        }
    }

    /// The mapping of `fork` at `fb`, at most `count` blocks long: the extent covering `fb`, or
    /// the hole up to the next extent. In the data fork of a file that shares blocks, the
    /// answer is cut where the reference count changes between 1 and more.
    pub fn map(&mut self, ino: u64, fb: u64, count: u64, fork: Fork) -> FResult<Mapping> {
        check_range(fb, count)?;
        let (format, seq) = {
            let i = self.inode(ino)?;
            (i.format, i.seq)
        };
        if format == Format::Inline {
            let (kind, len) = match (fork, fb) {
                (Fork::Data, 0) => (MapKind::Inline, 1),
                _ => (MapKind::Hole, (MAX_FILE_BLOCKS - fb).min(count)),
            };
            return Ok(Mapping { kind, file_block: fb, len, disk_block: 0, shared: false, seq });
        }
        let map = self.fork_map(ino, fork)?;
        let hit = lookup(map, fb);
        let next = next_start(map, fb);
        let (seq, reflink) = {
            let i = self.inode(ino)?;
            (i.seq, i.flags & FLAG_REFLINK != 0)
        };
        let Some((s, e)) = hit else {
            let len = next.unwrap_or(MAX_FILE_BLOCKS).min(fb + count) - fb;
            return Ok(Mapping {
                kind: MapKind::Hole,
                file_block: fb,
                len,
                disk_block: 0,
                shared: false,
                seq,
            });
        };
        let off = fb - s;
        let mut len = (e.len - off).min(count);
        let disk = if e.is_real() { e.disk + off } else { 0 };
        let mut shared = false;
        if fork == Fork::Data && e.is_real() && reflink {
            let (rc, run) = self.refcount_of(disk, len)?;
            shared = rc > 1;
            len = run;
        }
        Ok(Mapping { kind: kind_of(&e), file_block: fb, len, disk_block: disk, shared, seq })
    }

    /// Metadata blocks reserved with each delalloc extent for mapping it later.
    fn indlen(&mut self, ino: u64) -> FResult<u64> {
        let h = match self.inode(ino)?.format {
            Format::Btree => self.bmap_tree(ino)?.height(self)? as u64,
            _ => 0,
        };
        Ok(h + 2)
    }

    /// Reserves delayed allocation for the hole at `fb` in `fork`, up to `count` blocks (it
    /// stops at the next extent). Returns the blocks reserved. `ENOSPC` here, never at
    /// writeback; `EINVAL` when `fb` is not in a hole.
    pub fn reserve_delalloc(&mut self, ino: u64, fb: u64, count: u64, fork: Fork) -> FResult<u64> {
        if self.shutdown.is_some() {
            return Err(Errno::EIO.into());
        }
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let map = self.fork_map(ino, fork)?;
        if lookup(map, fb).is_some() {
            return Err(Errno::EINVAL.into());
        }
        let n = next_start(map, fb).map_or(count, |s| (s - fb).min(count));
        let ind = self.indlen(ino)?;
        if self.available(Pool::Normal) < n + ind
            && !(self.busy_commit.is_empty() && self.busy_ckpt.is_empty())
        {
            // Freed blocks wait for a commit (or checkpoint) before reuse: make them count.
            self.checkpoint()?;
        }
        if self.available(Pool::Normal) < n + ind {
            return Err(Errno::ENOSPC.into());
        }
        self.delalloc_reserved += n + ind;
        let map = self.fork_map(ino, fork)?;
        let released = insert_merge(map, fb, Ext { disk: 0, len: n, state: ExtState::Delalloc, ind });
        self.delalloc_reserved = self.delalloc_reserved.saturating_sub(released);
        self.bump_seq(ino)?;
        Ok(n)
    }

    /// Drops delayed allocations in `[fb, fb + count)` of `fork` (short writes, truncate),
    /// returning their reservations. Real extents are left alone.
    pub fn punch_delalloc(&mut self, ino: u64, fb: u64, count: u64, fork: Fork) -> FResult<()> {
        check_range(fb, count.min(MAX_FILE_BLOCKS - fb.min(MAX_FILE_BLOCKS)).max(1))?;
        let map = self.fork_map(ino, fork)?;
        let end = fb.saturating_add(count);
        let targets: Vec<(u64, u64)> = {
            let mut v = Vec::new();
            if let Some((s, e)) = lookup(map, fb) {
                if s < fb && e.state == ExtState::Delalloc {
                    v.push((fb, (s + e.len).min(end) - fb));
                }
            }
            v.extend(
                map.range(fb..end)
                    .filter(|(_, e)| e.state == ExtState::Delalloc)
                    .map(|(&s, e)| (s, e.len.min(end - s))),
            );
            v
        };
        let mut released = 0;
        for (s, l) in targets {
            let map = self.fork_map(ino, fork)?;
            for (_, p) in remove_range(map, s, l) {
                released += p.len + p.ind;
            }
        }
        self.delalloc_reserved = self.delalloc_reserved.saturating_sub(released);
        self.bump_seq(ino)
    }

    /// Allocates blocks at `fb` of `fork`: for the delalloc extent covering `fb` (writeback),
    /// or for the hole there (direct I/O). At most `count` blocks, possibly fewer when free
    /// space is fragmented. New blocks are UNWRITTEN when `unwritten` (convert them at I/O
    /// completion) and WRITTEN otherwise. A range already allocated is returned as is.
    pub fn allocate(
        &mut self,
        ino: u64,
        fb: u64,
        count: u64,
        unwritten: bool,
        fork: Fork,
    ) -> FResult<Mapping> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let map = self.fork_map(ino, fork)?;
        let hit = lookup(map, fb);
        let (n, delalloc, pool) = match hit {
            Some((_, e)) if e.is_real() => return self.map(ino, fb, count, fork),
            Some((s, e)) => ((s + e.len - fb).min(count), Some((s, e)), Pool::Reserve),
            None => (next_start(map, fb).map_or(count, |s| (s - fb).min(count)), None, Pool::Normal),
        };
        let goal = self.alloc_goal(ino, fb, fork)?;
        let meta = self.bmap_blocks(ino, 2)? + self.refcount_blocks(1)?;
        let need = if delalloc.is_some() { meta } else { n + meta };
        if let Some((s, e)) = delalloc {
            // The delalloc reservation turns into a real allocation: release it first, so the
            // op's own reservation (from the reserve pool) covers the metadata.
            let whole = s == fb && e.len == n;
            self.delalloc_reserved = self.delalloc_reserved.saturating_sub(n + if whole { e.ind } else { 0 });
        }
        let state = if unwritten { ExtState::Unwritten } else { ExtState::Written };
        let est = 4 * need as usize + 8;
        let mapped = self.op(need, est, pool, |st| {
            let (d, got) = st.alloc_extent(goal, 1, n)?;
            let new = Ext::real(d, got, state);
            match fork {
                Fork::Data => st.fork_edit(ino, fb, fb + got, |_, map| {
                    remove_range(map, fb, got);
                    insert_real(map, fb, new);
                    Ok(())
                })?,
                Fork::Cow => {
                    st.cow_record_add(d, got)?;
                    let map = &mut st.inode(ino)?.cow;
                    remove_range(map, fb, got);
                    insert_real(map, fb, new);
                    st.bump_seq(ino)?;
                }
            }
            Ok(got)
        });
        if let Err(e) = mapped {
            // The delalloc extent is intact (nothing changed or the fs is shut down): give its
            // reservation back.
            if let Some((s, de)) = delalloc {
                if self.shutdown.is_none() {
                    let whole = s == fb && de.len == n;
                    self.delalloc_reserved += n + if whole { de.ind } else { 0 };
                }
            }
            return Err(e);
        }
        self.map(ino, fb, count, fork)
    }

    /// A disk block to allocate near: right after the extent before `fb`.
    fn alloc_goal(&mut self, ino: u64, fb: u64, fork: Fork) -> FResult<u64> {
        let data_start = self.sb.data_start;
        let map = self.fork_map(ino, fork)?;
        Ok(map
            .range(..fb)
            .rev()
            .find(|(_, e)| e.is_real())
            .map_or(data_start + (ino % 64) * 64, |(&s, e)| e.disk + e.len + (fb - s - e.len)))
    }

    /// Converts the unwritten extents in `[fb, fb + count)` to written (I/O completion).
    pub fn convert_unwritten(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        let end = fb + count;
        let mut pos = fb;
        while pos < end {
            let map = self.dmap(ino)?;
            let (l, d) = match lookup(map, pos) {
                Some((s, e)) if e.state == ExtState::Unwritten => {
                    ((s + e.len).min(end) - pos, e.disk + (pos - s))
                }
                Some((s, e)) => {
                    pos = (s + e.len).min(end);
                    continue;
                }
                None => {
                    pos = next_start(map, pos).unwrap_or(end).min(end);
                    continue;
                }
            };
            let need = self.bmap_blocks(ino, 2)?;
            self.op(need, 4 * need as usize + 8, Pool::Reserve, |st| {
                st.fork_edit(ino, pos, pos + l, |_, map| {
                    remove_range(map, pos, l);
                    insert_real(map, pos, Ext::real(d, l, ExtState::Written));
                    Ok(())
                })
            })?;
            pos += l;
        }
        Ok(())
    }

    /// Unmaps `[fb, fb + count)` of the data fork: shared blocks lose one reference, others are
    /// freed, delalloc is dropped; the COW fork over the range is cancelled too.
    pub fn punch(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        check_range(fb, count)?;
        self.check_extent_file(ino)?;
        self.cow_cancel(ino, fb, count)?;
        self.punch_data(ino, fb, count)
    }

    /// The data-fork half of [`FsState::punch`], one extent per transaction step.
    pub fn punch_data(&mut self, ino: u64, fb: u64, count: u64) -> FResult<()> {
        let end = fb.saturating_add(count).min(MAX_FILE_BLOCKS);
        self.punch_delalloc(ino, fb, end - fb, Fork::Data)?;
        loop {
            let map = self.dmap(ino)?;
            let first = match lookup(map, fb) {
                Some((s, e)) => Some((s, e)),
                None => next_start(map, fb).filter(|&s| s < end).and_then(|s| map.get(&s).map(|e| (s, *e))),
            };
            let Some((s, e)) = first else { break };
            let a = s.max(fb);
            let l = (s + e.len).min(end) - a;
            let d = e.disk + (a - s);
            let reflink = self.inode(ino)?.flags & FLAG_REFLINK != 0;
            let need = self.bmap_blocks(ino, 1)? + if reflink { self.refcount_blocks(l.min(64))? } else { 0 };
            self.op(need, 4 * need as usize + 16, Pool::Reserve, |st| {
                st.fork_edit(ino, a, a + l, |_, map| {
                    remove_range(map, a, l);
                    Ok(())
                })?;
                st.unmap_blocks(d, l, reflink)
            })?;
        }
        Ok(())
    }

    /// Drops one file's use of disk blocks `[d, d + l)`: a reference when the file may share,
    /// and frees what no file uses any more.
    pub fn unmap_blocks(&mut self, d: u64, l: u64, reflink: bool) -> FResult<()> {
        if reflink && self.root.refc_root != 0 {
            for (s, n) in self.refcount_adjust(d, l, -1)? {
                self.free_extent(s, n, false)?;
            }
            Ok(())
        } else {
            self.free_extent(d, l, false)
        }
    }

    /// Unmaps every block from `from` on (truncate).
    pub fn truncate_blocks(&mut self, ino: u64, from: u64) -> FResult<()> {
        if from >= MAX_FILE_BLOCKS {
            return Ok(());
        }
        self.punch(ino, from, MAX_FILE_BLOCKS - from)
    }

    /// Sets the in-core size (no transaction; the on-disk size follows at I/O completion).
    pub fn set_size(&mut self, ino: u64, size: u64) -> FResult<()> {
        if size > MAX_FILE_BLOCKS << self.sb.block_log {
            return Err(Errno::EFBIG.into());
        }
        self.inode(ino)?.size = size;
        Ok(())
    }

    /// Records `size` as the on-disk size (the engine's completion hook), in a transaction.
    pub fn set_disk_size(&mut self, ino: u64, size: u64) -> FResult<()> {
        if size > MAX_FILE_BLOCKS << self.sb.block_log {
            return Err(Errno::EFBIG.into());
        }
        self.op(0, 2, Pool::Reserve, |st| {
            let i = st.inode(ino)?;
            i.disk_size = size;
            if i.size < size {
                i.size = size;
            }
            st.mark_inode_dirty(ino);
            Ok(())
        })
    }

    /// Truncates to `size`: both sizes are set and blocks wholly past it are unmapped (the
    /// engine zeroes the partial last block). Inline data past `size` is zeroed.
    pub fn truncate(&mut self, ino: u64, size: u64) -> FResult<()> {
        if size > MAX_FILE_BLOCKS << self.sb.block_log {
            return Err(Errno::EFBIG.into());
        }
        let (ft, format) = {
            let i = self.inode(ino)?;
            (i.mode & S_IFMT, i.format)
        };
        if ft == S_IFDIR {
            return Err(Errno::EISDIR.into());
        }
        if format == Format::Inline && size > LITERAL_SIZE as u64 {
            self.unstuff(ino)?;
        }
        self.op(0, 2, Pool::Reserve, |st| {
            let i = st.inode(ino)?;
            if i.format == Format::Inline {
                let keep = (size as usize).min(LITERAL_SIZE);
                i.literal[keep..].fill(0);
            }
            i.size = size;
            i.disk_size = size;
            let t = crate::frond::inode::now(st);
            let i = st.inode(ino)?;
            i.mtime = t;
            i.ctime = t;
            st.mark_inode_dirty(ino);
            Ok(())
        })?;
        if format != Format::Inline {
            let bs = self.bs() as u64;
            self.truncate_blocks(ino, size.div_ceil(bs))?;
        }
        Ok(())
    }

    /// Reads inline data of `ino` at byte `off` into `buf`; returns the bytes read (0 at or
    /// past the end).
    pub fn read_inline(&mut self, ino: u64, off: u64, buf: &mut [u8]) -> FResult<usize> {
        let i = self.inode(ino)?;
        if i.format != Format::Inline {
            return Err(Errno::EINVAL.into());
        }
        let size = i.size.min(LITERAL_SIZE as u64);
        if off >= size {
            return Ok(0);
        }
        let n = ((size - off) as usize).min(buf.len());
        buf[..n].copy_from_slice(&i.literal[off as usize..off as usize + n]);
        Ok(n)
    }

    /// Writes `data` at byte `off` into the inline area of `ino` (a file with no blocks
    /// becomes inline). `EFBIG` when it would not fit: the caller un-stuffs first.
    pub fn write_inline(&mut self, ino: u64, off: u64, data: &[u8]) -> FResult<()> {
        let end = off.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > LITERAL_SIZE as u64 {
            return Err(Errno::EFBIG.into());
        }
        {
            let i = self.inode(ino)?;
            let empty =
                i.format == Format::Extents && i.nrecs == 0 && i.dmap.as_ref().is_none_or(|m| m.is_empty());
            if i.mode & S_IFMT == S_IFDIR || !(i.format == Format::Inline || empty) {
                return Err(Errno::EINVAL.into());
            }
        }
        self.op(0, 2, Pool::Normal, |st| {
            let t = crate::frond::inode::now(st);
            let i = st.inode(ino)?;
            if i.format != Format::Inline {
                i.format = Format::Inline;
                i.literal.fill(0);
                i.dmap = Some(ExtMap::new());
                i.seq += 1;
            }
            i.literal[off as usize..end as usize].copy_from_slice(data);
            if end > i.size {
                i.size = end;
            }
            i.disk_size = i.size;
            i.mtime = t;
            i.ctime = t;
            st.mark_inode_dirty(ino);
            Ok(())
        })
    }

    /// Moves inline data out to a block ("un-stuffing"): a block is allocated, the data is
    /// written to it (and completes) before the transaction that maps it is committed.
    pub fn unstuff(&mut self, ino: u64) -> FResult<()> {
        let (format, size, data) = {
            let i = self.inode(ino)?;
            (i.format, i.size, i.literal.clone())
        };
        if format != Format::Inline {
            return Ok(());
        }
        let bs = self.bs();
        let need = 1 + self.bmap_blocks(ino, 1)?;
        self.op(need, 16, Pool::Normal, |st| {
            let (d, _) = st.alloc_extent(st.sb.data_start, 1, 1)?;
            let mut blk = alloc::vec![0u8; bs];
            let n = (size as usize).min(LITERAL_SIZE);
            blk[..n].copy_from_slice(&data[..n]);
            st.io.write_block(d, &blk, crate::block::BioFlags::empty())?;
            let i = st.inode(ino)?;
            i.format = Format::Extents;
            i.literal.fill(0);
            i.nrecs = 0;
            i.dmap = Some(ExtMap::new());
            st.fork_edit(ino, 0, 1, |_, map| {
                insert_real(map, 0, Ext::real(d, 1, ExtState::Written));
                Ok(())
            })
        })
    }
}
