//! A file of the test filesystem: its extent map or inline bytes, its engine object, and the
//! file operations tests call (thin wrappers over the engine plus the filesystem's own part of
//! truncate, punch hole and fallocate), and test helpers that read the file straight from the
//! device or move its blocks.
//!
//! Lock order: the file state lock ranks above the filesystem state lock; it is never held
//! while calling the engine or a hook.
//! Linux <-> here: `struct xfs_inode` (data fork, inline data) and the file operations of
//! `xfs_file.c`, reduced.

use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;

use super::extents::{ExtKind, Extent, ExtentMap};
use super::meta::FileRecord;
use super::MemFs;
use crate::block::sync::{read_at, write_at};
use crate::block::BioFlags;
use crate::iomap::copy::SliceSource;
use crate::iomap::file::{IomapFile, OpenFile, MAX_FILE_SIZE};
use crate::iomap::ops::IomapOps;
use crate::iomap::write::WriteFlags;
use crate::iomap::{fsync, punch_hole, read, truncate, write, write_and_wait, zero_range};
use crate::{Errno, Result};

/// How writes into holes allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocPolicy {
    /// Reserve delayed allocation (DELALLOC + NEW); writeback allocates UNWRITTEN blocks,
    /// converted at completion.
    Delalloc,
    /// Allocate written blocks at once (MAPPED + NEW).
    Mapped,
    /// Allocate unwritten blocks at once (UNWRITTEN + NEW).
    Unwritten,
}

pub(crate) struct FileState {
    pub(crate) extents: ExtentMap,
    /// Copy-on-write staging (XFS's COW fork): DELALLOC reservations and allocated blocks
    /// (`Unwritten`) that writes to shared blocks go to, remapped into `extents` at completion.
    pub(crate) cow: ExtentMap,
    /// The inline area (capacity bytes) while the file is inline.
    pub(crate) inline: Option<Vec<u8>>,
    pub(crate) policy: AllocPolicy,
}

/// A test-filesystem file. See the module documentation.
pub struct MemFile {
    id: u64,
    fs: Weak<MemFs>,
    file: Arc<IomapFile>,
    me: Weak<MemFile>,
    pub(crate) state: Mutex<FileState>,
}

impl MemFile {
    pub(crate) fn new(
        fs: &Arc<MemFs>,
        id: u64,
        policy: AllocPolicy,
        inline: Option<Vec<u8>>,
    ) -> Result<Arc<Self>> {
        let file = fs.ctx().new_file(0)?;
        Ok(Arc::new_cyclic(|me| Self {
            id,
            fs: Arc::downgrade(fs),
            file,
            me: me.clone(),
            state: Mutex::new(FileState { extents: ExtentMap::new(), cow: ExtentMap::new(), inline, policy }),
        }))
    }

    pub(crate) fn from_record(fs: &Arc<MemFs>, r: &FileRecord) -> Result<Arc<Self>> {
        let cap = fs.config().inline_capacity;
        let inline = match &r.inline {
            Some(b) if b.len() <= cap && r.size == b.len() as u64 && r.extents.is_empty() => {
                let mut area = vec![0u8; cap];
                area[..b.len()].copy_from_slice(b);
                Some(area)
            }
            Some(_) => return Err(Errno::EUCLEAN),
            None => None,
        };
        if r.size > MAX_FILE_SIZE {
            return Err(Errno::EUCLEAN);
        }
        let f = Self::new(fs, r.id, fs.config().policy, inline)?;
        f.file.set_size(r.size);
        f.file.set_disk_size(r.size);
        {
            let mut st = f.state.lock();
            for e in &r.extents {
                if !st.extents.extents_in(e.start, e.end()).is_empty() {
                    return Err(Errno::EUCLEAN);
                }
                st.extents.insert(*e);
            }
        }
        Ok(f)
    }

    /// The committed form of this file.
    pub(crate) fn record(&self) -> FileRecord {
        let st = self.state.lock();
        match &st.inline {
            Some(area) => {
                let size = (self.file.size() as usize).min(area.len());
                FileRecord {
                    id: self.id,
                    size: size as u64,
                    inline: Some(area[..size].to_vec()),
                    extents: Vec::new(),
                }
            }
            None => FileRecord {
                id: self.id,
                size: self.file.disk_size(),
                inline: None,
                extents: st.extents.extents(),
            },
        }
    }

    /// File id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The filesystem (`EIO` once it is gone).
    pub fn fs(&self) -> Result<Arc<MemFs>> {
        self.fs.upgrade().ok_or(Errno::EIO)
    }

    /// The engine object.
    pub fn file(&self) -> &Arc<IomapFile> {
        &self.file
    }

    /// This file as the engine's callbacks.
    pub fn ops(&self) -> Arc<dyn IomapOps> {
        let me: Arc<MemFile> = self.me.upgrade().expect("a MemFile is only reachable through its Arc");
        me
    }

    /// A new opener.
    pub fn open(&self) -> OpenFile {
        self.file.open()
    }

    /// In-core size.
    pub fn size(&self) -> u64 {
        self.file.size()
    }

    /// Block size.
    pub fn block_size(&self) -> u64 {
        self.file.block_size()
    }

    /// Current extents.
    pub fn extents(&self) -> Vec<Extent> {
        self.state.lock().extents.extents()
    }

    /// Current copy-on-write staging extents (the COW fork).
    pub fn cow_extents(&self) -> Vec<Extent> {
        self.state.lock().cow.extents()
    }

    /// Whether the file is inline.
    pub fn is_inline(&self) -> bool {
        self.state.lock().inline.is_some()
    }

    /// Changes how writes into holes allocate.
    pub fn set_policy(&self, policy: AllocPolicy) {
        self.state.lock().policy = policy;
    }

    /// Records a change of the block mapping (the validity cookie moves).
    pub(crate) fn bump_seq(&self) {
        self.file.mapping().bump_seq();
    }

    // ---- file operations ---------------------------------------------------------------

    /// Buffered read.
    pub fn read(&self, open: &mut OpenFile, pos: u64, buf: &mut [u8]) -> Result<usize> {
        read(&self.file, &self.ops(), open, pos, buf)
    }

    /// Reads the whole file through the cache.
    pub fn read_all(&self, open: &mut OpenFile) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.size() as usize];
        let n = self.read(open, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Buffered write.
    pub fn write(&self, open: &mut OpenFile, pos: u64, data: &[u8]) -> Result<usize> {
        self.write_flags(open, pos, data, WriteFlags::empty())
    }

    /// Buffered write with O_SYNC / O_DSYNC flags.
    pub fn write_flags(
        &self,
        open: &mut OpenFile,
        pos: u64,
        data: &[u8],
        flags: WriteFlags,
    ) -> Result<usize> {
        write(&self.file, &self.ops(), open, pos, &mut SliceSource::new(data), flags)
    }

    /// fsync / fdatasync of the whole file.
    pub fn fsync(&self, open: &mut OpenFile, datasync: bool) -> Result<()> {
        fsync(&self.file, &self.ops(), open, 0, u64::MAX, datasync)
    }

    /// Writes back and waits for the whole file (no commit).
    pub fn sync_data(&self) -> Result<()> {
        write_and_wait(&self.file, &self.ops(), 0, u64::MAX)
    }

    /// Writes back everything and drops the whole cache of the file (after direct I/O in
    /// flight).
    pub fn drop_cache(&self) -> Result<()> {
        self.invalidate()
    }

    /// Zeroes a range through the cache.
    pub fn zero_range(&self, pos: u64, len: u64) -> Result<()> {
        zero_range(&self.file, &self.ops(), pos, len)
    }

    /// Truncates (up or down), freeing blocks beyond the new EOF.
    pub fn truncate(&self, size: u64) -> Result<()> {
        truncate(&self.file, &self.ops(), size, |new| self.fs_truncate(new))
    }

    /// Punches a hole; the size does not change.
    pub fn punch_hole(&self, pos: u64, len: u64) -> Result<()> {
        punch_hole(&self.file, &self.ops(), pos, len, |a, b| self.unmap(a, b))
    }

    /// Allocates UNWRITTEN blocks over the holes of `[pos, pos + len)` (keeps the size).
    pub fn fallocate(&self, pos: u64, len: u64) -> Result<()> {
        let fs = self.fs()?;
        let bs = self.block_size();
        let end = pos.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(Errno::EINVAL)?;
        let (first, last) = (pos / bs, end.div_ceil(bs));
        let mut st = self.state.lock();
        let mut b = first;
        while b < last {
            match st.extents.lookup(b) {
                Ok(e) => b = e.end(),
                Err(next) => {
                    let hole_end = next.min(last);
                    let goal = prev_disk_end(&st.extents, b);
                    let (d, got) = fs.alloc_blocks(hole_end - b, goal)?;
                    st.extents.insert(Extent {
                        start: b,
                        len: got,
                        kind: ExtKind::Unwritten(d),
                        boundary: false,
                    });
                    b += got;
                }
            }
        }
        drop(st);
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }

    // ---- the filesystem's part of truncate and punch ------------------------------------

    /// Frees the blocks wholly beyond `size` and records the size (truncate's fs part).
    pub(crate) fn fs_truncate(&self, size: u64) -> Result<()> {
        let fs = self.fs()?;
        let bs = self.block_size();
        let mut st = self.state.lock();
        if let Some(area) = st.inline.as_mut() {
            let from = (size as usize).min(area.len());
            area[from..].fill(0);
        }
        let first = size.div_ceil(bs);
        let mut removed = st.extents.remove(first, u64::MAX - first);
        removed.extend(st.cow.remove(first, u64::MAX - first));
        drop(st);
        for e in removed {
            if let Some(d) = e.kind.disk() {
                fs.put_blocks(d, e.len)?;
            }
        }
        self.file.set_disk_size(size);
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }

    /// Unmaps the whole blocks of bytes `[start, end)` (punch hole's fs part).
    fn unmap(&self, start: u64, end: u64) -> Result<()> {
        let fs = self.fs()?;
        let bs = self.block_size();
        let removed = {
            let mut st = self.state.lock();
            let mut removed = st.extents.remove(start / bs, (end - start) / bs);
            removed.extend(st.cow.remove(start / bs, (end - start) / bs));
            removed
        };
        for e in removed {
            if let Some(d) = e.kind.disk() {
                fs.put_blocks(d, e.len)?;
            }
        }
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }

    // ---- test helpers -------------------------------------------------------------------

    /// Puts an extent over file blocks `[start, start + len)` (replacing what was there and
    /// freeing its blocks); the disk blocks of MAPPED / UNWRITTEN must be free.
    pub fn set_extent(&self, start: u64, len: u64, kind: ExtKind, boundary: bool) -> Result<()> {
        let fs = self.fs()?;
        let removed = self.state.lock().extents.remove(start, len);
        for e in removed {
            if let Some(d) = e.kind.disk() {
                fs.put_blocks(d, e.len)?;
            }
        }
        if let Some(d) = kind.disk() {
            fs.take_blocks(d, len)?;
        }
        self.state.lock().extents.insert(Extent { start, len, kind, boundary });
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(())
    }

    /// Sets the in-core and on-disk size directly (test setup of files built with
    /// [`MemFile::set_extent`]).
    pub fn set_size(&self, size: u64) {
        self.file.set_size(size);
        self.file.set_disk_size(size);
        if let Ok(fs) = self.fs() {
            fs.mark_meta_dirty();
        }
    }

    /// The file's bytes `[pos, pos + len)` as the device and the extent map hold them, bypassing
    /// the cache (holes, delalloc and unwritten read as zeros; inline from the inline area).
    pub fn read_disk(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let fs = self.fs()?;
        let bs = self.block_size();
        let mut out = vec![0u8; len];
        let end = pos + len as u64;
        let pieces = {
            let st = self.state.lock();
            if let Some(area) = &st.inline {
                for (i, b) in out.iter_mut().enumerate() {
                    *b = area.get(pos as usize + i).copied().unwrap_or(0);
                }
                return Ok(out);
            }
            st.extents.extents_in(pos / bs, end.div_ceil(bs))
        };
        let ctx = fs.ctx();
        let mut block = vec![0u8; bs as usize];
        for e in pieces {
            let ExtKind::Mapped(d) = e.kind else { continue };
            for i in 0..e.len {
                let fb = e.start + i;
                read_at(&**ctx.device(), ctx.platform(), (d + i) * bs, &mut block)?;
                let (s, t) = ((fb * bs).max(pos), ((fb + 1) * bs).min(end));
                if s < t {
                    let src = &block[(s - fb * bs) as usize..(t - fb * bs) as usize];
                    out[(s - pos) as usize..(t - pos) as usize].copy_from_slice(src);
                }
            }
        }
        Ok(out)
    }

    /// Moves file blocks `[start, start + len)` (one allocated extent piece) to newly allocated
    /// disk blocks, copying their contents, then fills the old location with `scribble` and frees
    /// it. Returns the new first disk block.
    pub fn relocate(&self, start: u64, len: u64, scribble: u8) -> Result<u64> {
        let fs = self.fs()?;
        let bs = self.block_size();
        let ctx = fs.ctx().clone();
        let mut st = self.state.lock();
        let pieces = st.extents.extents_in(start, start + len);
        let [piece] = pieces.as_slice() else { return Err(Errno::EINVAL) };
        let old = piece.kind.disk().filter(|_| piece.len == len).ok_or(Errno::EINVAL)?;
        let (new, got) = fs.alloc_blocks(len, None)?;
        if got != len {
            fs.put_blocks(new, got)?;
            return Err(Errno::ENOSPC);
        }
        let mut data = vec![0u8; (len * bs) as usize];
        read_at(&**ctx.device(), ctx.platform(), old * bs, &mut data)?;
        write_at(&**ctx.device(), ctx.platform(), new * bs, &data, BioFlags::empty())?;
        data.fill(scribble);
        write_at(&**ctx.device(), ctx.platform(), old * bs, &data, BioFlags::empty())?;
        let kind = match piece.kind {
            ExtKind::Mapped(_) => ExtKind::Mapped(new),
            ExtKind::Unwritten(_) => ExtKind::Unwritten(new),
            ExtKind::Delalloc => return Err(Errno::EINVAL),
        };
        st.extents.remove(start, len);
        st.extents.insert(Extent { start, len, kind, boundary: piece.boundary });
        drop(st);
        fs.put_blocks(old, len)?;
        self.bump_seq();
        fs.mark_meta_dirty();
        Ok(new)
    }
}

/// The disk block right after the extent ending at file block `block` (an allocation goal).
pub(crate) fn prev_disk_end(map: &ExtentMap, block: u64) -> Option<u64> {
    let prev = map.lookup(block.checked_sub(1)?).ok()?;
    Some(prev.kind.disk()? + prev.len)
}
