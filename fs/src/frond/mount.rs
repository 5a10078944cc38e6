//! Mount and unmount: the [`Frond`] handle a kernel holds for one mounted filesystem.
//!
//! Owns the metadata lock (a `spin::Mutex<FsState>`) and the mount sequence: find a valid
//! superblock (the primary, else the backup at block 1), replay the journal, validate the root
//! block, every tree root and the root directory, and free COW staging extents a crash left
//! behind. A corrupt or hostile image is refused with a [`MountError`] naming the reason;
//! corruption deeper in a tree is found when first read and fails that operation with
//! `EUCLEAN` (shutting the filesystem down if the operation had changed anything). Unmount
//! cancels in-core COW staging, checkpoints (the log is left clean) and flushes.
//!
//! Lock order: `Frond::state` first; everything else (buffer locks, device) below it.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_fs_fill_super` / `xfs_mountfs` | [`Frond::mount`] |
//! | `xfs_log_mount` + recovery | `journal::replay` |
//! | `xfs_reflink_recover_cow` | `FsState::recover_cow_leftovers` |
//! | `xfs_unmountfs` (log force, AIL push, unmount record) | [`Frond::unmount`] |
//! | `xfs_fs_statfs` | [`Frond::statfs`] |
//! | `sync_fs` / `xfs_log_force(SYNC)` | [`Frond::sync`] |

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use core::fmt;

use spin::Mutex;

use super::format::{Corrupt, Error, FResult};
use super::io::MetaIo;
use super::journal::replay;
use super::state::{FsState, Pool};
use super::superblock::{RootBlock, Superblock, SB_BACKUP, SB_PRIMARY};
use crate::block::BlockDevice;
use crate::platform::Platform;
use crate::{Errno, Result};

/// Why a mount failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountError {
    /// The error code (`EUCLEAN` for a corrupt image, `EINVAL`, `EIO`, ...).
    pub errno: Errno,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errno, self.reason)
    }
}

impl From<Error> for MountError {
    fn from(e: Error) -> Self {
        match e {
            Error::Corrupt(c) => MountError { errno: Errno::EUCLEAN, reason: c.0 },
            Error::Errno(e) => MountError { errno: e, reason: alloc::format!("{e}") },
        }
    }
}

impl From<Errno> for MountError {
    fn from(e: Errno) -> Self {
        Error::Errno(e).into()
    }
}

impl From<Corrupt> for MountError {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt(c).into()
    }
}

impl From<MountError> for Errno {
    fn from(e: MountError) -> Errno {
        e.errno
    }
}

/// Filesystem statistics (Linux `statfs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub block_size: u32,
    /// Blocks in the data area.
    pub blocks: u64,
    /// Free blocks (not counting reserved ones).
    pub free: u64,
    /// Free blocks available to ordinary users (same as `free`).
    pub avail: u64,
    /// Allocated inodes.
    pub files: u64,
    /// Inodes that could still be allocated.
    pub ffree: u64,
    /// Longest name.
    pub name_max: u32,
}

/// A mounted frond filesystem.
pub struct Frond {
    pub(crate) state: Mutex<FsState>,
}

/// Reads and decodes a superblock at `blkno` assuming blocks of `1 << log` bytes.
fn read_super(
    dev: &Arc<dyn BlockDevice>,
    platform: &Arc<dyn Platform>,
    log: u32,
    blkno: u64,
) -> FResult<Superblock> {
    let io = MetaIo::new(dev.clone(), platform.clone(), log)?;
    let mut b = alloc::vec![0u8; 1 << log];
    io.read_blocks(blkno, &mut b)?;
    Ok(Superblock::decode(&b, blkno, dev.info().capacity_bytes())?)
}

/// Finds the superblock: the primary, else the backup (whose block size is unknown, so every
/// supported size is tried).
fn find_super(
    dev: &Arc<dyn BlockDevice>,
    platform: &Arc<dyn Platform>,
) -> core::result::Result<Superblock, MountError> {
    let lbs = dev.info().logical_block_size.max(1024);
    let lbs_log = lbs.trailing_zeros();
    let mut head = alloc::vec![0u8; lbs as usize];
    MetaIo::new(dev.clone(), platform.clone(), lbs_log)
        .and_then(|io| io.read_blocks(0, &mut head))
        .map_err(|e| MountError { errno: e, reason: "cannot read the superblock".to_string() })?;
    let primary = match Superblock::peek_block_log(&head) {
        Some(log) if log >= lbs_log => read_super(dev, platform, log, SB_PRIMARY),
        Some(_) => Err(Error::Errno(Errno::EINVAL)),
        None => Err(Corrupt("superblock: no frond magic at block 0".to_string()).into()),
    };
    let why = match primary {
        Ok(sb) => return Ok(sb),
        Err(Error::Errno(Errno::EINVAL)) => {
            return Err(MountError {
                errno: Errno::EINVAL,
                reason: "filesystem block size is smaller than the device's logical block size".to_string(),
            })
        }
        Err(e) => MountError::from(e),
    };
    for log in lbs_log.max(10)..=16 {
        if let Ok(sb) = read_super(dev, platform, log, SB_BACKUP) {
            if sb.block_log == log {
                log::warn!("frond: primary superblock unusable ({}); mounting from the backup", why.reason);
                return Ok(sb);
            }
        }
    }
    Err(why)
}

impl Frond {
    /// Mounts the filesystem on `dev`. See the module docs.
    pub fn mount(
        dev: Arc<dyn BlockDevice>,
        platform: Arc<dyn Platform>,
    ) -> core::result::Result<Self, MountError> {
        let sb = find_super(&dev, &platform)?;
        let io = MetaIo::new(dev, platform, sb.block_log)?;
        let (journal, report) = replay(&io, &sb)?;
        if report.transactions > 0 {
            log::info!("frond: replayed {} transactions ({} blocks)", report.transactions, report.blocks);
        }
        let mut b = alloc::vec![0u8; sb.block_size()];
        io.read_blocks(sb.root_block, &mut b)?;
        let root = RootBlock::decode(&b, &sb)?;
        let mut st = FsState::new(io, sb, journal, root);
        let rd = st.root.root_dir;
        let root_ok = st.iget(rd).map(|_| st.inodes.get(&rd).is_some_and(|i| i.is_dir()));
        match root_ok {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::from(Corrupt(alloc::format!(
                    "root directory inode {rd} is not a directory"
                )))
                .into())
            }
            Err(Error::Errno(Errno::ESTALE)) => {
                return Err(Error::from(Corrupt(alloc::format!(
                    "root directory inode {rd} is not allocated"
                )))
                .into())
            }
            Err(e) => return Err(e.into()),
        }
        // Cheap sanity checks of every filesystem-wide tree root and the root directory's
        // tree: a corrupt root is refused now rather than found by the first operation.
        for t in [st.bno(), st.cnt(), st.refc(), st.inobt()] {
            t.height(&mut st)?;
        }
        let rdt = st.dir_tree(rd)?;
        rdt.height(&mut st)?;
        let orphans = st.orphans()?.len();
        if orphans > 0 {
            let n = st.recover_orphans()?;
            log::info!("frond: finished freeing {n} orphan inodes");
            st.checkpoint()?;
        }
        let leftovers = st.cow_records()?.len();
        if leftovers > 0 {
            let blocks = st.refcount_blocks(leftovers as u64 * 2)? + 16;
            let freed = st.op(0, blocks as usize + 16, Pool::Reserve, |st| st.recover_cow_leftovers())?;
            log::info!("frond: freed {freed} leftover COW staging blocks");
            st.checkpoint()?;
        }
        Ok(Self { state: Mutex::new(st) })
    }

    /// Runs `f` on the locked state, converting errors to errno values.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut FsState) -> FResult<T>) -> Result<T> {
        let mut st = self.state.lock();
        st.begin_call().map_err(Errno::from)?;
        f(&mut st).map_err(Errno::from)
    }

    /// Commits every metadata change so far (PREFLUSH + FUA commit record); when nothing needed
    /// committing, flushes the device instead, so data written before the call is durable.
    pub fn sync(&self) -> Result<()> {
        let mut st = self.state.lock();
        if !st.commit().map_err(Errno::from)? {
            st.io.flush()?;
        }
        Ok(())
    }

    /// Writes everything home and empties the log.
    pub fn checkpoint(&self) -> Result<()> {
        self.with(|st| st.checkpoint())
    }

    /// Filesystem statistics.
    pub fn statfs(&self) -> Result<StatFs> {
        self.with(|st| {
            // Busy blocks are free, just not reusable until the next commit: count them.
            let busy = st.busy_commit.total() + st.busy_ckpt.total();
            let free = st.available(Pool::Normal)
                + busy.min(
                    st.root.free_blocks.saturating_sub(st.set_aside + st.resblks + st.delalloc_reserved),
                );
            Ok(StatFs {
                block_size: st.bs() as u32,
                blocks: st.sb.block_count - st.sb.data_start,
                free,
                avail: free,
                files: st.root.inodes,
                ffree: free.saturating_mul(st.ipb()),
                name_max: super::dir::NAME_MAX as u32,
            })
        })
    }

    /// The filesystem block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.state.lock().bs() as u32
    }

    /// Metadata buffer cache counters (hits, device reads, evictions).
    pub fn cache_stats(&self) -> super::buf::CacheStats {
        self.state.lock().cache.stats()
    }

    /// Whether an earlier failure shut the filesystem down (every call then fails with `EIO`).
    pub fn is_shut_down(&self) -> bool {
        self.state.lock().shutdown.is_some()
    }

    /// Unmounts: cancels in-core COW staging, checkpoints, flushes. The filesystem is clean on
    /// disk afterwards (the log is empty).
    pub fn unmount(self) -> Result<()> {
        let mut st = self.state.into_inner();
        if st.shutdown.is_some() {
            return Err(Errno::EIO);
        }
        st.cancel_all_cow().map_err(Errno::from)?;
        st.checkpoint().map_err(Errno::from)?;
        st.io.flush()?;
        Ok(())
    }
}
