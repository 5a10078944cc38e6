//! Inodes: the on-disk inode, inode chunks and their allocation tree, and the in-core inode.
//!
//! An inode is 512 bytes; a chunk is one block of `block_size / 512` inodes. Inode numbers
//! encode their location: `ino = chunk_block * inodes_per_block + slot`. The inode tree
//! ([`INOBT`]) maps every allocated chunk to a mask of its free slots; a chunk whose inodes are
//! all free is released. Every slot of a chunk, free or not, carries a valid self-describing
//! header (magic, inode number, CRC32C of the 512 bytes), so a chunk block is verified slot by
//! slot when read.
//!
//! ```text
//! 0   magic u32 (FRIN)      4  crc u32           8  ino u64
//! 16  mode u32              20 nlink u32         24 uid u32        28 gid u32
//! 32  size u64 (on-disk size)
//! 40  atime i64 ns          48 mtime i64 ns      56 ctime i64 ns   64 btime i64 ns
//! 72  generation u32        76 flags u32 (bit 0 REFLINK: may share blocks)
//! 80  nblocks u64 (blocks mapped by the data fork + its tree nodes)
//! 88  parent u64 (directories: the parent directory)
//! 96  format u8 (0 extents inline, 1 B+tree, 2 inline data)
//! 104 root u64 (B+tree format: the extent map / directory tree root)
//! 112 nrecs u64 (extent records, or directory entries)
//! 120 next_orphan u64 (next inode on the orphan list, 0 = end)
//! 128 literal area, 384 bytes: up to 16 inline extent records, or inline data
//! ```
//!
//! The in-core inode ([`Inode`]) is loaded on first use and kept under the metadata lock;
//! changes are encoded into the chunk buffer at the end of each operation.
//!
//! Lock order: runs under the metadata lock; an inode chunk's buffer lock is taken briefly to encode or decode a slot.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_dinode` (v3, with CRC) | the 512-byte inode above |
//! | inode chunks of 64 inodes + inobt (`ir_free` mask) | one-block chunks + [`INOBT`] (free mask) |
//! | `xfs_dialloc` / `xfs_difree` | [`FsState::ialloc`] / [`FsState::ifree`] |
//! | `xfs_iget` + inode cache | [`FsState::iget`] + `FsState::inodes` |
//! | `di_flags2 & XFS_DIFLAG2_REFLINK` | [`FLAG_REFLINK`] |

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::btree::{Spec, Tree, TreeKind};
use super::buf::BufRef;
use super::crc32c::crc32c_skip;
use super::extent::record::ExtMap;
use super::format::*;
use super::state::FsState;
use super::superblock::INODE_SIZE;
use crate::frond_corrupt;
use crate::Errno;

/// The inode chunk tree: key = chunk block, value = free-slot mask (u128).
pub static INOBT: Spec = Spec { kind: TreeKind::Inodes, name: "inode", key_size: 8, val_size: 16 };

/// File type mask and types (Linux values).
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140000;

/// Inode flag: the data fork may share blocks with other files.
pub const FLAG_REFLINK: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_REFLINK;

/// Bytes of the literal area (inline extents or inline data).
pub const LITERAL_SIZE: usize = 384;
/// Inline extent records that fit in the literal area.
pub const INLINE_EXTENTS: usize = LITERAL_SIZE / super::extent::record::INLINE_REC;

const I_INO: usize = 8;
const I_MODE: usize = 16;
const I_NLINK: usize = 20;
const I_UID: usize = 24;
const I_GID: usize = 28;
const I_SIZE: usize = 32;
const I_ATIME: usize = 40;
const I_MTIME: usize = 48;
const I_CTIME: usize = 56;
const I_BTIME: usize = 64;
const I_GEN: usize = 72;
const I_FLAGS: usize = 76;
const I_NBLOCKS: usize = 80;
const I_PARENT: usize = 88;
const I_FORMAT: usize = 96;
const I_ROOT: usize = 104;
const I_NRECS: usize = 112;
const I_NEXT_ORPHAN: usize = 120;
const I_LITERAL: usize = 128;

/// How the data fork is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Up to [`INLINE_EXTENTS`] extent records in the literal area.
    Extents,
    /// A B+tree rooted at `Inode::root` (extent map, or directory entries).
    Btree,
    /// The data itself in the literal area (small files and symlinks).
    Inline,
}

/// An in-core inode.
#[derive(Clone, Debug)]
pub struct Inode {
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits (Linux `st_mode`).
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The size recorded on disk (updated at I/O completion).
    pub disk_size: u64,
    /// The in-core size (what `stat` reports).
    pub size: u64,
    /// Access time, ns.
    pub atime: i64,
    /// Modification time, ns.
    pub mtime: i64,
    /// Change time, ns.
    pub ctime: i64,
    /// Birth time, ns.
    pub btime: i64,
    /// Generation (distinguishes reuses of the number).
    pub generation: u32,
    /// Flags ([`FLAG_REFLINK`]).
    pub flags: u32,
    /// Blocks mapped by the data fork plus its tree nodes.
    pub nblocks: u64,
    /// Parent directory (directories only).
    pub parent: u64,
    /// Data fork format.
    pub format: Format,
    /// Tree root (B+tree format).
    pub root: u64,
    /// Extent records (extent forms) or directory entries.
    pub nrecs: u64,
    /// Next inode on the orphan list (0 = last or not listed).
    pub next_orphan: u64,
    /// The literal area as on disk.
    pub literal: Vec<u8>,
    /// The data fork's in-core extent map, loaded on first use.
    pub dmap: Option<ExtMap>,
    /// The COW fork (in-core only; staging extents are recorded in the refcount tree).
    pub cow: ExtMap,
    /// Mapping sequence number: bumped by every change to either fork.
    pub seq: u64,
}

impl Inode {
    /// File type bits.
    pub fn ftype(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.ftype() == S_IFDIR
    }

    /// Writes the inode image into its slot `b`, without the slot's CRC: the chunk's sealer
    /// ([`seal_chunk`]) computes it when the transaction commits.
    fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        put32(b, 0, MAGIC_INODE);
        put64(b, I_INO, self.ino);
        put32(b, I_MODE, self.mode);
        put32(b, I_NLINK, self.nlink);
        put32(b, I_UID, self.uid);
        put32(b, I_GID, self.gid);
        put64(b, I_SIZE, self.disk_size);
        put64(b, I_ATIME, self.atime as u64);
        put64(b, I_MTIME, self.mtime as u64);
        put64(b, I_CTIME, self.ctime as u64);
        put64(b, I_BTIME, self.btime as u64);
        put32(b, I_GEN, self.generation);
        put32(b, I_FLAGS, self.flags);
        put64(b, I_NBLOCKS, self.nblocks);
        put64(b, I_PARENT, self.parent);
        b[I_FORMAT] = match self.format {
            Format::Extents => 0,
            Format::Btree => 1,
            Format::Inline => 2,
        };
        put64(b, I_ROOT, self.root);
        put64(b, I_NRECS, self.nrecs);
        put64(b, I_NEXT_ORPHAN, self.next_orphan);
        b[I_LITERAL..I_LITERAL + LITERAL_SIZE].copy_from_slice(&self.literal);
    }

    /// Decodes an allocated inode image, validating every field against the geometry.
    pub fn decode(b: &[u8], ino: u64, sb: &super::superblock::Superblock) -> Result<Self, Corrupt> {
        let mode = get32(b, I_MODE);
        let ft = mode & S_IFMT;
        if ![S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK].contains(&ft) {
            return Err(frond_corrupt!("inode {ino}: bad file type in mode {mode:#o}"));
        }
        let flags = get32(b, I_FLAGS);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(frond_corrupt!("inode {ino}: unknown flags {flags:#x}"));
        }
        let format = match b[I_FORMAT] {
            0 => Format::Extents,
            1 => Format::Btree,
            2 => Format::Inline,
            f => return Err(frond_corrupt!("inode {ino}: unknown data fork format {f}")),
        };
        let root = get64(b, I_ROOT);
        let nrecs = get64(b, I_NRECS);
        let size = get64(b, I_SIZE);
        match format {
            Format::Extents if nrecs > INLINE_EXTENTS as u64 => {
                return Err(frond_corrupt!("inode {ino}: {nrecs} inline extents (at most {INLINE_EXTENTS})"))
            }
            Format::Btree if root != 0 && !(sb.data_start..sb.block_count).contains(&root) => {
                return Err(frond_corrupt!("inode {ino}: tree root {root} outside the data area"))
            }
            Format::Inline if size > LITERAL_SIZE as u64 => {
                return Err(frond_corrupt!(
                    "inode {ino}: {size} bytes of inline data (at most {LITERAL_SIZE})"
                ))
            }
            Format::Inline if ft != S_IFREG && ft != S_IFLNK => {
                return Err(frond_corrupt!("inode {ino}: inline data in a file of type {ft:#o}"))
            }
            Format::Btree if ft != S_IFDIR && ft != S_IFREG && ft != S_IFLNK => {
                return Err(frond_corrupt!("inode {ino}: a data tree in a file of type {ft:#o}"))
            }
            _ => {}
        }
        if ft == S_IFDIR && format != Format::Btree {
            return Err(frond_corrupt!("inode {ino}: directory not in tree format"));
        }
        let max_bytes = super::extent::MAX_FILE_BLOCKS << sb.block_log;
        if size > max_bytes {
            return Err(frond_corrupt!("inode {ino}: size {size} beyond the largest file"));
        }
        Ok(Self {
            ino,
            mode,
            nlink: get32(b, I_NLINK),
            uid: get32(b, I_UID),
            gid: get32(b, I_GID),
            disk_size: size,
            size,
            atime: get64(b, I_ATIME) as i64,
            mtime: get64(b, I_MTIME) as i64,
            ctime: get64(b, I_CTIME) as i64,
            btime: get64(b, I_BTIME) as i64,
            generation: get32(b, I_GEN),
            flags,
            nblocks: get64(b, I_NBLOCKS),
            parent: get64(b, I_PARENT),
            format,
            root,
            nrecs,
            next_orphan: get64(b, I_NEXT_ORPHAN),
            literal: b[I_LITERAL..I_LITERAL + LITERAL_SIZE].to_vec(),
            dmap: None,
            cow: ExtMap::new(),
            seq: 1,
        })
    }
}

/// Seals one 512-byte inode.
fn seal_inode(b: &mut [u8]) {
    let c = crc32c_skip(b, 4);
    put32(b, 4, c);
}

/// Sealer for an inode chunk block: every slot's CRC.
pub fn seal_chunk(b: &mut [u8]) {
    for slot in b.chunks_exact_mut(INODE_SIZE) {
        seal_inode(slot);
    }
}

/// Writes a free inode image (valid header, mode 0) for `ino`.
fn free_image(b: &mut [u8], ino: u64) {
    b.fill(0);
    put32(b, 0, MAGIC_INODE);
    put64(b, I_INO, ino);
    seal_inode(b);
}

/// Verifies every slot header of chunk `chunk` (magic, inode number, CRC).
pub fn verify_chunk(b: &[u8], chunk: u64, ipb: u64) -> Result<(), Corrupt> {
    for (i, slot) in b.chunks_exact(INODE_SIZE).enumerate() {
        let ino = chunk * ipb + i as u64;
        if get32(slot, 0) != MAGIC_INODE {
            return Err(frond_corrupt!("inode {ino} (chunk {chunk}): bad magic"));
        }
        if get32(slot, 4) != crc32c_skip(slot, 4) {
            return Err(frond_corrupt!("inode {ino} (chunk {chunk}): checksum mismatch"));
        }
        if get64(slot, I_INO) != ino {
            return Err(frond_corrupt!("inode {ino} (chunk {chunk}): records number {}", get64(slot, I_INO)));
        }
    }
    Ok(())
}

/// The current time for timestamps: the platform clock (monotonic; the file API layer may set
/// wall-clock times explicitly).
pub fn now(st: &FsState) -> i64 {
    st.io.platform().now_ns() as i64
}

impl FsState {
    /// Inodes per chunk.
    pub fn ipb(&self) -> u64 {
        self.sb.inodes_per_block()
    }

    /// The chunk block and slot of `ino`, if it can name an inode of this filesystem.
    pub fn ino_location(&self, ino: u64) -> Option<(u64, usize)> {
        let chunk = ino / self.ipb();
        ((self.sb.data_start..self.sb.block_count).contains(&chunk))
            .then_some((chunk, (ino % self.ipb()) as usize))
    }

    /// The inode tree.
    pub fn inobt(&self) -> Tree {
        Tree::new(&INOBT, 0, self.root.ino_root)
    }

    fn set_inobt(&mut self, t: Tree) {
        if t.root != self.root.ino_root {
            self.root.ino_root = t.root;
            self.touch_root();
        }
    }

    /// Reads inode chunk `chunk` (every slot verified on a disk read).
    pub fn read_chunk(&mut self, chunk: u64) -> FResult<BufRef> {
        let ipb = self.ipb();
        let r = self.cache.read(&self.io, chunk, seal_chunk, &|b| verify_chunk(b, chunk, ipb));
        if let Err(Error::Corrupt(c)) = r {
            return Err(self.corrupt(c));
        }
        r
    }

    /// The free mask of chunk `chunk`, or `None` when it is not an inode chunk.
    pub fn chunk_mask(&mut self, chunk: u64) -> FResult<Option<u128>> {
        let t = self.inobt();
        Ok(t.get(self, chunk as u128)?.map(|v| get64(&v, 0) as u128 | (get64(&v, 8) as u128) << 64))
    }

    fn set_chunk_mask(&mut self, chunk: u64, mask: u128) -> FResult<()> {
        let t = self.inobt();
        t.update(self, chunk as u128, &mask.to_le_bytes())
    }

    /// Loads inode `ino` into the in-core table. `ESTALE` when `ino` does not name an
    /// allocated inode.
    pub fn iget(&mut self, ino: u64) -> FResult<()> {
        if self.inodes.contains_key(&ino) {
            return Ok(());
        }
        let (chunk, slot) = self.ino_location(ino).ok_or(Errno::ESTALE)?;
        let mask = self.chunk_mask(chunk)?.ok_or(Errno::ESTALE)?;
        if mask & (1 << slot) != 0 {
            return Err(Errno::ESTALE.into());
        }
        let buf = self.read_chunk(chunk)?;
        let decoded = {
            let b = buf.data();
            Inode::decode(&b[slot * INODE_SIZE..(slot + 1) * INODE_SIZE], ino, &self.sb)
        };
        let inode = decoded.map_err(|c| self.corrupt(c))?;
        self.inodes.insert(ino, inode);
        Ok(())
    }

    /// The in-core inode `ino` (loaded if needed).
    pub fn inode(&mut self, ino: u64) -> FResult<&mut Inode> {
        self.iget(ino)?;
        self.inodes.get_mut(&ino).ok_or_else(|| Errno::ESTALE.into())
    }

    /// Records that inode `ino` changed (encoded at the end of the operation).
    pub fn mark_inode_dirty(&mut self, ino: u64) {
        self.dirty_inodes.insert(ino);
        self.changes += 1;
    }

    /// Encodes in-core inode `ino` into its chunk buffer.
    pub fn write_inode(&mut self, ino: u64) -> FResult<()> {
        let Some((chunk, slot)) = self.ino_location(ino) else { return Ok(()) };
        let buf = self.read_chunk(chunk)?;
        if let Some(inode) = self.inodes.get(&ino) {
            inode.encode(&mut buf.data()[slot * INODE_SIZE..(slot + 1) * INODE_SIZE]);
            self.cache.mark_dirty(&buf);
        }
        Ok(())
    }

    /// Worst-case blocks an inode allocation takes (a chunk and inode tree growth).
    pub fn ialloc_blocks(&mut self) -> FResult<u64> {
        Ok(1 + self.inobt().height(self)? as u64 + 1)
    }

    fn load_free_chunks(&mut self) -> FResult<()> {
        if self.free_chunks.is_some() {
            return Ok(());
        }
        let mut set = BTreeSet::new();
        let t = self.inobt();
        t.walk(self, 0, &mut |k, v| {
            if get64(v, 0) != 0 || get64(v, 8) != 0 {
                set.insert(k as u64);
            }
            Ok(true)
        })?;
        self.free_chunks = Some(set);
        Ok(())
    }

    /// Allocates an inode of `mode` (in-core fields initialised, link count 0) and returns its
    /// number. The caller reserved [`FsState::ialloc_blocks`].
    pub fn ialloc(&mut self, mode: u32, uid: u32, gid: u32) -> FResult<u64> {
        self.load_free_chunks()?;
        let ipb = self.ipb();
        let all_free: u128 = if ipb == 128 { u128::MAX } else { (1u128 << ipb) - 1 };
        let chunk = match self.free_chunks.as_ref().and_then(|s| s.first().copied()) {
            Some(c) => c,
            None => {
                let c = self.alloc_meta_block()?;
                let buf = self.cache.create(c, self.bs(), seal_chunk);
                for (i, slot) in buf.data().chunks_exact_mut(INODE_SIZE).enumerate() {
                    free_image(slot, c * ipb + i as u64);
                }
                self.changes += 1;
                let mut t = self.inobt();
                let r = t.insert(self, c as u128, &all_free.to_le_bytes());
                self.set_inobt(t);
                r?;
                if let Some(s) = self.free_chunks.as_mut() {
                    s.insert(c);
                }
                c
            }
        };
        let mask = self.chunk_mask(chunk)?.ok_or_else(|| frond_corrupt!("inode chunk {chunk} vanished"))?;
        if mask == 0 {
            return Err(
                frond_corrupt!("inode chunk {chunk} listed as having free inodes but has none").into()
            );
        }
        let slot = mask.trailing_zeros() as u64;
        let mask = mask & !(1u128 << slot);
        self.set_chunk_mask(chunk, mask)?;
        if mask == 0 {
            if let Some(s) = self.free_chunks.as_mut() {
                s.remove(&chunk);
            }
        }
        let ino = chunk * ipb + slot;
        let t = now(self);
        self.root.inodes = self.root.inodes.saturating_add(1);
        self.root.next_gen = self.root.next_gen.wrapping_add(1);
        self.touch_root();
        let format = if mode & S_IFMT == S_IFDIR { Format::Btree } else { Format::Extents };
        let inode = Inode {
            ino,
            mode,
            nlink: 0,
            uid,
            gid,
            disk_size: 0,
            size: 0,
            atime: t,
            mtime: t,
            ctime: t,
            btime: t,
            generation: self.root.next_gen as u32,
            flags: 0,
            nblocks: 0,
            parent: 0,
            format,
            root: 0,
            nrecs: 0,
            next_orphan: 0,
            literal: alloc::vec![0; LITERAL_SIZE],
            dmap: Some(ExtMap::new()),
            cow: ExtMap::new(),
            seq: 1,
        };
        self.inodes.insert(ino, inode);
        self.mark_inode_dirty(ino);
        Ok(ino)
    }

    /// Frees inode `ino` (its forks must already be empty). A chunk left with no inodes is
    /// released.
    pub fn ifree(&mut self, ino: u64) -> FResult<()> {
        let (chunk, slot) = self.ino_location(ino).ok_or(Errno::ESTALE)?;
        let mask = self.chunk_mask(chunk)?.ok_or(Errno::ESTALE)?;
        if mask & (1u128 << slot) != 0 {
            return Err(frond_corrupt!("inode {ino} freed but already free").into());
        }
        self.inodes.remove(&ino);
        self.dirty_inodes.remove(&ino);
        let buf = self.read_chunk(chunk)?;
        free_image(&mut buf.data()[slot * INODE_SIZE..(slot + 1) * INODE_SIZE], ino);
        self.cache.mark_dirty(&buf);
        self.changes += 1;
        let mask = mask | (1u128 << slot);
        self.root.inodes = self.root.inodes.saturating_sub(1);
        self.touch_root();
        let ipb = self.ipb();
        let all_free: u128 = if ipb == 128 { u128::MAX } else { (1u128 << ipb) - 1 };
        if mask == all_free {
            let mut t = self.inobt();
            let r = t.delete(self, chunk as u128);
            self.set_inobt(t);
            r?;
            if let Some(s) = self.free_chunks.as_mut() {
                s.remove(&chunk);
            }
            self.free_meta_block(chunk)?;
        } else {
            self.set_chunk_mask(chunk, mask)?;
            if let Some(s) = self.free_chunks.as_mut() {
                s.insert(chunk);
            }
        }
        Ok(())
    }
}
