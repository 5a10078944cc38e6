//! fsck: checks every invariant of a frond filesystem and names each problem precisely.
//!
//! Owns the offline checker. It never writes. Checks, in order: both superblocks (the backup
//! must equal the primary), the journal (header valid, log clean: a dirty log is reported and
//! checking stops, since home locations are stale until replay), the root block, the
//! free-space trees (structure, records in range, merged, both trees equal, the free-block
//! count), the inode tree and every inode chunk and inode, every inode's extent map (structure,
//! records, block count), every directory (structure, entries, types, sizes), the refcount
//! tree, then the block-usage sweep (every block free xor used; used once, or shared by file
//! data with exactly matching reference counts; REFLINK flags) and the namespace walk
//! (reachability from the root, one name per directory, parent pointers, link counts).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xfs_repair -n` phases 1-7 | [`fsck`] (no repair) |
//! | `xfs_scrub` | [`Frond::fsck`] on a mounted filesystem (checkpoint, then check) |

pub mod problem;
pub mod space;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

pub use problem::{Owner, Problem};
use space::{sweep, Usage};

use super::btree::Tree;
use super::format::{get64, Error, FResult};
use super::inode::{Format, FLAG_REFLINK, S_IFDIR, S_IFMT};
use super::io::MetaIo;
use super::journal::format::JournalHeader;
use super::journal::{scan, Journal};
use super::mount::Frond;
use super::refcount::{decode as refc_decode, COW_DOMAIN};
use super::state::FsState;
use super::superblock::{RootBlock, Superblock, JOURNAL_HEADER, SB_BACKUP, SB_PRIMARY};
use crate::block::BlockDevice;
use crate::platform::Platform;
use crate::{Errno, Result};

/// What fsck found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
    /// Allocated inodes seen.
    pub inodes: u64,
    /// Directories reached from the root.
    pub directories: u64,
}

impl FsckReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn detail(e: Error) -> String {
    match e {
        Error::Corrupt(c) => c.0,
        Error::Errno(e) => format!("read failed: {e}"),
    }
}

fn read(io: &MetaIo, blk: u64) -> FResult<Vec<u8>> {
    let mut b = alloc::vec![0u8; io.block_size()];
    io.read_blocks(blk, &mut b)?;
    Ok(b)
}

/// Checks the filesystem on `dev` (which must not be mounted read-write meanwhile).
pub fn fsck(dev: Arc<dyn BlockDevice>, platform: Arc<dyn Platform>) -> Result<FsckReport> {
    let mut r = FsckReport::default();
    let cap = dev.info().capacity_bytes();
    // Superblocks.
    let lbs_log = dev.info().logical_block_size.max(1024).trailing_zeros();
    let mut head = alloc::vec![0u8; 1 << lbs_log];
    MetaIo::new(dev.clone(), platform.clone(), lbs_log)?.read_blocks(0, &mut head)?;
    let primary = match Superblock::peek_block_log(&head) {
        Some(log) => MetaIo::new(dev.clone(), platform.clone(), log)
            .map_err(Error::from)
            .and_then(|io| Ok(Superblock::decode(&read(&io, SB_PRIMARY)?, SB_PRIMARY, cap)?)),
        None => Err(crate::frond_corrupt!("superblock: no frond magic at block 0").into()),
    };
    let sb = match primary {
        Ok(sb) => {
            let io = MetaIo::new(dev.clone(), platform.clone(), sb.block_log)?;
            match read(&io, SB_BACKUP).and_then(|b| Ok(Superblock::decode(&b, SB_BACKUP, cap)?)) {
                Ok(b) if b == sb => {}
                Ok(_) => r.problems.push(Problem::BackupSuperblock(String::from("differs from the primary"))),
                Err(e) => r.problems.push(Problem::BackupSuperblock(detail(e))),
            }
            sb
        }
        Err(e) => {
            r.problems.push(Problem::Superblock(detail(e)));
            let mut found = None;
            for log in lbs_log.max(10)..=16 {
                let Ok(io) = MetaIo::new(dev.clone(), platform.clone(), log) else { continue };
                if let Ok(b) = read(&io, SB_BACKUP) {
                    if let Ok(sb) = Superblock::decode(&b, SB_BACKUP, cap) {
                        found = Some(sb);
                        break;
                    }
                }
            }
            match found {
                Some(sb) => sb,
                None => {
                    r.problems.push(Problem::BackupSuperblock(String::from("no valid backup superblock")));
                    return Ok(r);
                }
            }
        }
    };
    let io = MetaIo::new(dev, platform, sb.block_log)?;
    // Journal.
    match read(&io, JOURNAL_HEADER)
        .and_then(|b| Ok(JournalHeader::decode(&b, JOURNAL_HEADER, sb.log_blocks)?))
    {
        Ok(_) => {}
        Err(e) => {
            r.problems.push(Problem::JournalHeader(detail(e)));
            return Ok(r);
        }
    }
    match scan(&io, &sb) {
        Ok(rep) if rep.transactions > 0 => {
            r.problems.push(Problem::JournalDirty { transactions: rep.transactions });
            return Ok(r);
        }
        Ok(_) => {}
        Err(e) => {
            r.problems.push(Problem::JournalHeader(detail(e)));
            return Ok(r);
        }
    }
    // Root block.
    let root = match read(&io, sb.root_block).and_then(|b| Ok(RootBlock::decode(&b, &sb)?)) {
        Ok(root) => root,
        Err(e) => {
            r.problems.push(Problem::RootBlock(detail(e)));
            return Ok(r);
        }
    };
    let journal = Journal::new_empty(sb.log_blocks, sb.block_size(), 0, 1);
    let mut c =
        Checker { st: FsState::new(io, sb, journal, root), r, u: Usage::default(), orphans: BTreeSet::new() };
    c.run();
    Ok(c.r)
}

struct Checker {
    st: FsState,
    r: FsckReport,
    u: Usage,
    orphans: BTreeSet<u64>,
}

impl Checker {
    fn problem(&mut self, p: Problem) {
        if self.r.problems.len() < 10_000 {
            self.r.problems.push(p);
        }
    }

    /// Checks tree `t`; claims its nodes for `owner`; returns its records (empty when broken).
    fn tree(&mut self, t: Tree, name: String, owner: Owner) -> Vec<(u128, Vec<u8>)> {
        let mut nodes = Vec::new();
        let mut recs = Vec::new();
        match t.check(&mut self.st, &mut |b| nodes.push(b), &mut |k, v| recs.push((k, v.to_vec()))) {
            Ok(_) => {}
            Err(e) => {
                self.problem(Problem::Tree { tree: name, detail: detail(e) });
            }
        }
        for b in nodes {
            self.u.claim(b, 1, owner);
        }
        recs
    }

    fn run(&mut self) {
        let (lo, hi) = (self.st.sb.data_start, self.st.sb.block_count);
        let free_count = self.free_space(lo, hi);
        let allocated = self.inodes(lo, hi);
        match self.st.orphans() {
            Ok(list) => {
                for &ino in &list {
                    if self.st.inode(ino).is_ok_and(|i| i.nlink != 0) {
                        self.problem(Problem::Inode {
                            ino,
                            detail: String::from("on the orphan list but still linked"),
                        });
                    }
                }
                self.orphans = list.into_iter().collect();
            }
            Err(e) => self.problem(Problem::RootBlock(alloc::format!("orphan list: {}", detail(e)))),
        }
        for &ino in &allocated {
            if self.st.inode(ino).is_ok_and(|i| i.nlink == 0) && !self.orphans.contains(&ino) {
                self.problem(Problem::Inode {
                    ino,
                    detail: String::from("allocated with link count 0 but not on the orphan list"),
                });
            }
        }
        self.refcounts(lo, hi);
        let mut u = core::mem::take(&mut self.u);
        for p in sweep(&mut u, lo, hi) {
            self.problem(p);
        }
        let recorded = self.st.root.free_blocks;
        if free_count != recorded {
            self.problem(Problem::FreeCount { recorded, actual: free_count });
        }
        self.namespace(&allocated);
    }

    /// Returns the blocks the allocator owns.
    fn free_space(&mut self, lo: u64, hi: u64) -> u64 {
        let bno_nodes_before = self.u.claims.len();
        let bno = self.tree(self.st.bno(), String::from("free-space (by block)"), Owner::FreeSpaceTree);
        let cnt = self.tree(self.st.cnt(), String::from("free-space (by size)"), Owner::FreeSpaceTree);
        let nodes = (self.u.claims.len() - bno_nodes_before) as u64;
        let mut by_block = BTreeSet::new();
        let mut prev_end: Option<u64> = None;
        let mut total = 0u64;
        for (k, v) in &bno {
            let (s, l) = (*k as u64, get64(v, 0));
            if l == 0 || s < lo || s.checked_add(l).is_none_or(|e| e > hi) {
                self.problem(Problem::FreeExtent { start: s, len: l, why: "outside the data area" });
                continue;
            }
            match prev_end {
                Some(e) if s < e => self.problem(Problem::FreeExtent {
                    start: s,
                    len: l,
                    why: "overlaps the previous free extent",
                }),
                Some(e) if s == e => self.problem(Problem::FreeNotMerged { start: s }),
                _ => {}
            }
            prev_end = Some(s + l);
            total += l;
            by_block.insert((s, l));
            self.u.claim(s, l, Owner::Free);
        }
        let by_size: BTreeSet<(u64, u64)> = cnt.iter().map(|(k, _)| (*k as u64, (*k >> 64) as u64)).collect();
        for &(s, l) in by_block.difference(&by_size) {
            self.problem(Problem::FreeTreesDiffer { start: s, len: l, missing_from: "by-size" });
        }
        for &(s, l) in by_size.difference(&by_block) {
            self.problem(Problem::FreeTreesDiffer { start: s, len: l, missing_from: "by-block" });
        }
        let fl = self.st.root.freelist.clone();
        for &b in &fl {
            self.u.claim(b, 1, Owner::FreeList);
        }
        total + fl.len() as u64 + nodes
    }

    /// Checks the inode tree, chunks and every inode; returns the allocated inodes.
    fn inodes(&mut self, lo: u64, hi: u64) -> BTreeSet<u64> {
        let ipb = self.st.ipb();
        let recs = self.tree(self.st.inobt(), String::from("inode"), Owner::InodeTree);
        let mut allocated = BTreeSet::new();
        for (k, v) in recs {
            let chunk = k as u64;
            let mask = get64(&v, 0) as u128 | (get64(&v, 8) as u128) << 64;
            if !(lo..hi).contains(&chunk) {
                self.problem(Problem::Tree {
                    tree: String::from("inode"),
                    detail: format!("chunk {chunk} outside the data area"),
                });
                continue;
            }
            self.u.claim(chunk, 1, Owner::InodeChunk);
            let buf = match self.st.read_chunk(chunk) {
                Ok(b) => b,
                Err(e) => {
                    self.problem(Problem::Inode {
                        ino: chunk * ipb,
                        detail: format!("chunk {chunk}: {}", detail(e)),
                    });
                    continue;
                }
            };
            for slot in 0..ipb {
                let ino = chunk * ipb + slot;
                let free = mask & (1u128 << slot) != 0;
                let mode = {
                    let b = buf.data();
                    super::format::get32(&b, slot as usize * 512 + 16)
                };
                if free {
                    if mode != 0 {
                        self.problem(Problem::Inode {
                            ino,
                            detail: String::from("free in the inode tree but in use in its chunk"),
                        });
                    }
                    continue;
                }
                match self.st.iget(ino) {
                    Ok(()) => {
                        allocated.insert(ino);
                    }
                    Err(e) => self.problem(Problem::Inode { ino, detail: detail(e) }),
                }
            }
            if ipb < 128 && mask >> ipb != 0 {
                self.problem(Problem::Tree {
                    tree: String::from("inode"),
                    detail: format!("chunk {chunk} free mask has bits past its {ipb} inodes"),
                });
            }
        }
        let recorded = self.st.root.inodes;
        if recorded != allocated.len() as u64 {
            self.problem(Problem::InodeCount { recorded, actual: allocated.len() as u64 });
        }
        self.r.inodes = allocated.len() as u64;
        let list: Vec<u64> = allocated.iter().copied().collect();
        for ino in list {
            self.inode(ino);
        }
        allocated
    }

    fn inode(&mut self, ino: u64) {
        let Ok(i) = self.st.inode(ino) else { return };
        let (is_dir, format, nblocks, nrecs, size, flags) =
            (i.is_dir(), i.format, i.nblocks, i.nrecs, i.size, i.flags);
        if flags & FLAG_REFLINK != 0 {
            self.u.reflink.insert(ino);
        }
        if is_dir {
            let t = match self.st.dir_tree(ino) {
                Ok(t) => t,
                Err(e) => return self.problem(Problem::Inode { ino, detail: detail(e) }),
            };
            let recs = self.tree(t, format!("directory {ino}"), Owner::Directory(ino));
            if recs.len() as u64 != nrecs || size != nrecs {
                self.problem(Problem::Inode {
                    ino,
                    detail: format!(
                        "directory holds {} entries but records {nrecs} (size {size})",
                        recs.len()
                    ),
                });
            }
            return;
        }
        if format == Format::Btree {
            if let Ok(t) = self.st.bmap_tree(ino) {
                let _ = self.tree(t, format!("extent map of inode {ino}"), Owner::ExtentMap(ino));
            }
        }
        let map = match self.st.dmap(ino) {
            Ok(m) => m.clone(),
            Err(e) => return self.problem(Problem::Inode { ino, detail: detail(e) }),
        };
        let mut mapped = 0;
        for (fb, e) in &map {
            if !e.is_real() {
                continue;
            }
            mapped += e.len;
            self.u.claim(e.disk, e.len, Owner::File { ino, file_block: *fb });
        }
        if mapped != nblocks {
            self.problem(Problem::Inode {
                ino,
                detail: format!("records {nblocks} blocks but maps {mapped}"),
            });
        }
    }

    fn refcounts(&mut self, lo: u64, hi: u64) {
        let recs = self.tree(self.st.refc(), String::from("refcount"), Owner::RefcountTree);
        for (k, v) in recs {
            let k = k as u64;
            let (l, c) = refc_decode(&v);
            let s = k & !COW_DOMAIN;
            if l == 0 || s < lo || s.checked_add(l).is_none_or(|e| e > hi) {
                self.problem(Problem::Tree {
                    tree: String::from("refcount"),
                    detail: format!("record {s}+{l} outside the data area"),
                });
                continue;
            }
            if k & COW_DOMAIN != 0 {
                self.u.claim(s, l, Owner::CowStaging);
            } else if c < 2 {
                self.problem(Problem::Tree {
                    tree: String::from("refcount"),
                    detail: format!("record {s}+{l} has count {c}"),
                });
            } else {
                self.u.refs.push((s, l, c as u64));
            }
        }
    }

    /// Walks the directory tree from the root: reachability, one name per directory, parent
    /// pointers, entry types, link counts.
    fn namespace(&mut self, allocated: &BTreeSet<u64>) {
        let root = self.st.root.root_dir;
        if !allocated.contains(&root) {
            self.problem(Problem::Inode {
                ino: root,
                detail: String::from("root directory is not allocated"),
            });
            return;
        }
        let mut links: BTreeMap<u64, u32> = BTreeMap::new();
        let mut seen_dirs = BTreeSet::new();
        let mut queue = VecDeque::new();
        seen_dirs.insert(root);
        queue.push_back(root);
        match self.st.inode(root) {
            Ok(i) if i.parent != root => {
                let p = i.parent;
                self.problem(Problem::Inode {
                    ino: root,
                    detail: format!("root directory's parent is {p}, not itself"),
                })
            }
            _ => {}
        }
        while let Some(d) = queue.pop_front() {
            self.r.directories += 1;
            *links.entry(d).or_insert(0) += 2;
            let entries = match self.st.dir_list(d, 2, usize::MAX) {
                Ok(e) => e,
                Err(e) => {
                    self.problem(Problem::Inode { ino: d, detail: detail(e) });
                    continue;
                }
            };
            for e in entries {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                if !allocated.contains(&e.ino) {
                    self.problem(Problem::DirEntry {
                        dir: d,
                        name,
                        detail: format!("points to unallocated inode {}", e.ino),
                    });
                    continue;
                }
                let Ok(child) = self.st.inode(e.ino) else { continue };
                let (cmode, cparent, cdir) = (child.mode, child.parent, child.mode & S_IFMT == S_IFDIR);
                if ((cmode & S_IFMT) >> 12) as u8 != e.ftype {
                    self.problem(Problem::DirEntry {
                        dir: d,
                        name: name.clone(),
                        detail: format!("has type {} but inode {} has mode {cmode:#o}", e.ftype, e.ino),
                    });
                }
                if cdir {
                    *links.entry(d).or_insert(0) += 1;
                    if !seen_dirs.insert(e.ino) {
                        self.problem(Problem::DirEntry {
                            dir: d,
                            name,
                            detail: format!("is a second name for directory {}", e.ino),
                        });
                        continue;
                    }
                    if cparent != d {
                        self.problem(Problem::Inode {
                            ino: e.ino,
                            detail: format!("parent is {cparent} but directory {d} names it"),
                        });
                    }
                    queue.push_back(e.ino);
                } else {
                    *links.entry(e.ino).or_insert(0) += 1;
                }
            }
        }
        for &ino in allocated {
            let Ok(i) = self.st.inode(ino) else { continue };
            let recorded = i.nlink;
            if self.orphans.contains(&ino) {
                continue;
            }
            match links.get(&ino) {
                None => self.problem(Problem::Unreachable { ino }),
                Some(&actual) if actual != recorded => {
                    self.problem(Problem::LinkCount { ino, recorded, actual })
                }
                _ => {}
            }
        }
    }
}

impl Frond {
    /// Checkpoints and checks this (mounted) filesystem.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut st = self.state.lock();
        st.checkpoint().map_err(Errno::from)?;
        let (dev, platform) = (st.io.dev().clone(), st.io.platform().clone());
        fsck(dev, platform)
    }
}
