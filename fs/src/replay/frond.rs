//! [`FrondTarget`]: the replay target over the frond file API ([`crate::vfs`]), and
//! [`replay_fresh`], the whole run a kernel or a host tool does for one op log: mkfs, mount,
//! replay, unmount, fsck.
//!
//! The target owns one file (`/replay`, created empty) and up to two open handles of it, as
//! `fs/oracle/apply.py` holds two descriptors: a buffered `O_RDWR` one for every op, and an
//! `O_RDWR | O_DIRECT` one opened on first use for direct reads and writes and `write_atomic`.
//! `close_open` closes both, writes back and drops the whole mount's clean cache (Linux's
//! `syncfs` + `drop_caches`, [`FrondFs::drop_caches`]) and reopens the buffered handle; the
//! next accesses are served from the device.
//!
//! Lock order: none of its own (the file API's).
//!
//! # Linux <-> here
//!
//! | `apply.py` on Linux | here |
//! |---|---|
//! | `os.open(O_RDWR \| O_CREAT \| O_TRUNC)`, a second `O_DIRECT` descriptor | [`FrondTarget::new`], the direct handle |
//! | `pwrite` / `pread` loops, `pwritev2(RWF_ATOMIC)` | [`File::write`] / [`File::read`] / [`File::write_atomic`] |
//! | `fallocate(2)` modes | [`File::fallocate`] with [`FallocFlags`] |
//! | `FICLONERANGE`, `FIDEDUPERANGE`, `copy_file_range` on one file | [`File::clone_range`], [`File::dedupe_range`], [`File::copy_range`] |
//! | close, `syncfs`, `echo 1 > drop_caches`, reopen | [`ReplayTarget::close_open`] |

use alloc::sync::Arc;
use core::fmt::Write;

use super::oplog::OpLog;
use super::runner::{replay, ReplayReport};
use super::target::ReplayTarget;
use crate::block::BlockDevice;
use crate::frond::{mkfs, MkfsOptions};
use crate::platform::Platform;
use crate::vfs::{DedupeOutcome, FallocFlags, File, FrondFs, MountOptions, OpenFlags};
use crate::{Errno, Result};

/// The name of the replayed file in the root directory.
pub const FILE_NAME: &[u8] = b"replay";

/// The replayed file on a mounted frond filesystem. See the module docs.
pub struct FrondTarget {
    fs: Arc<FrondFs>,
    ino: u64,
    file: Option<File>,
    direct: Option<File>,
}

impl FrondTarget {
    /// Creates (or truncates) `/replay` on `fs` and opens it.
    pub fn new(fs: Arc<FrondFs>) -> Result<Self> {
        let flags = OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::TRUNC;
        let file = fs.open_at(fs.root(), FILE_NAME, flags, 0o644)?;
        Ok(Self { ino: file.ino(), fs, file: Some(file), direct: None })
    }

    /// The mount.
    pub fn fs(&self) -> &Arc<FrondFs> {
        &self.fs
    }

    /// Closes the handles (reporting the first close error) and returns the mount.
    pub fn close(mut self) -> Result<Arc<FrondFs>> {
        self.close_handles()?;
        Ok(self.fs.clone())
    }

    fn close_handles(&mut self) -> Result<()> {
        let mut first = Ok(());
        for f in [self.direct.take(), self.file.take()].into_iter().flatten() {
            if let Err(e) = f.close() {
                first = first.and(Err(e));
            }
        }
        first
    }

    fn f(&self) -> Result<&File> {
        // Only a failed reopen in `close_open` leaves no handle; the runner stops there.
        self.file.as_ref().ok_or(Errno::EBADF)
    }

    fn direct(&mut self) -> Result<&File> {
        if self.direct.is_none() {
            self.direct = Some(self.fs.open(self.ino, OpenFlags::RDWR | OpenFlags::DIRECT)?);
        }
        self.direct.as_ref().ok_or(Errno::EBADF)
    }

    fn handle(&mut self, direct: bool) -> Result<&File> {
        if direct {
            self.direct()
        } else {
            self.f()
        }
    }
}

impl ReplayTarget for FrondTarget {
    fn size(&mut self) -> Result<u64> {
        Ok(self.f()?.size())
    }

    fn write(&mut self, off: u64, data: &[u8], direct: bool) -> Result<()> {
        let f = self.handle(direct)?;
        let mut done = 0;
        while done < data.len() {
            let n = f.write(off + done as u64, &data[done..])?;
            if n == 0 {
                // apply.py: a write that makes no progress is EIO.
                return Err(Errno::EIO);
            }
            done += n;
        }
        Ok(())
    }

    fn write_atomic(&mut self, off: u64, data: &[u8]) -> Result<()> {
        let n = self.direct()?.write_atomic(off, data)?;
        if n != data.len() {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn read(&mut self, off: u64, buf: &mut [u8], direct: bool) -> Result<usize> {
        self.handle(direct)?.read(off, buf)
    }

    fn truncate(&mut self, size: u64) -> Result<()> {
        self.f()?.truncate(size)
    }

    fn fallocate(&mut self, off: u64, len: u64, keep_size: bool, unshare: bool) -> Result<()> {
        let mut mode = FallocFlags::empty();
        mode.set(FallocFlags::KEEP_SIZE, keep_size);
        mode.set(FallocFlags::UNSHARE_RANGE, unshare);
        self.f()?.fallocate(mode, off, len)
    }

    fn punch_hole(&mut self, off: u64, len: u64) -> Result<()> {
        self.f()?.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, off, len)
    }

    fn zero_range(&mut self, off: u64, len: u64, keep_size: bool) -> Result<()> {
        let mut mode = FallocFlags::ZERO_RANGE;
        mode.set(FallocFlags::KEEP_SIZE, keep_size);
        self.f()?.fallocate(mode, off, len)
    }

    fn collapse_range(&mut self, off: u64, len: u64) -> Result<()> {
        self.f()?.fallocate(FallocFlags::COLLAPSE_RANGE, off, len)
    }

    fn insert_range(&mut self, off: u64, len: u64) -> Result<()> {
        self.f()?.fallocate(FallocFlags::INSERT_RANGE, off, len)
    }

    fn clone_range(&mut self, src: u64, len: u64, dst: u64) -> Result<()> {
        let f = self.f()?;
        f.clone_range(f, src, len, dst)
    }

    fn dedupe_range(&mut self, src: u64, len: u64, dst: u64) -> Result<bool> {
        let f = self.f()?;
        Ok(match f.dedupe_range(f, src, len, dst)? {
            DedupeOutcome::Same(_) => true,
            DedupeOutcome::Differs => false,
        })
    }

    fn copy_range(&mut self, src: u64, len: u64, dst: u64) -> Result<u64> {
        let f = self.f()?;
        f.copy_range(f, src, len, dst)
    }

    fn fsync(&mut self) -> Result<()> {
        self.f()?.fsync()
    }

    fn close_open(&mut self) -> Result<()> {
        self.close_handles()?;
        self.fs.drop_caches()?;
        self.file = Some(self.fs.open(self.ino, OpenFlags::RDWR)?);
        Ok(())
    }
}

/// How [`replay_fresh`] sets up the filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreshOptions {
    /// frond block size.
    pub block_size: u32,
    /// Page-cache budget of the mount.
    pub cache_bytes: u64,
}

impl Default for FreshOptions {
    /// 4 KiB blocks (the oracle's), a 64 MiB page cache.
    fn default() -> Self {
        Self { block_size: 4096, cache_bytes: 64 << 20 }
    }
}

/// Why [`replay_fresh`] could not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshError {
    /// mkfs failed.
    Mkfs(Errno),
    /// The mount failed.
    Mount(Errno),
    /// Creating the file, a `close_open`, the final read, closing or unmounting failed.
    Replay(Errno),
    /// fsck after the unmount found problems (how many).
    Fsck(usize),
}

impl core::fmt::Display for FreshError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FreshError::Mkfs(e) => write!(f, "mkfs: {}", e.name()),
            FreshError::Mount(e) => write!(f, "mount: {}", e.name()),
            FreshError::Replay(e) => write!(f, "replay: {}", e.name()),
            FreshError::Fsck(n) => write!(f, "fsck after the replay: {n} problem(s)"),
        }
    }
}

/// Formats `dev` with frond, mounts it, replays `log` on a new file printing to `out`,
/// unmounts and checks the filesystem (fsck must be clean). Both `cargo xtask replay` modes run
/// exactly this, so they print the same output for the same log.
pub fn replay_fresh(
    dev: Arc<dyn BlockDevice>,
    platform: Arc<dyn Platform>,
    log: &OpLog,
    opts: FreshOptions,
    out: &mut dyn Write,
) -> core::result::Result<ReplayReport, FreshError> {
    let mk = MkfsOptions { block_size: opts.block_size, ..MkfsOptions::default() };
    mkfs(dev.clone(), platform.clone(), &mk).map_err(FreshError::Mkfs)?;
    let fs = FrondFs::mount(dev.clone(), platform.clone(), MountOptions::new(opts.cache_bytes))
        .map_err(|e| FreshError::Mount(e.into()))?;
    let mut target = FrondTarget::new(fs).map_err(FreshError::Replay)?;
    let report = replay(log, &mut target, out).map_err(FreshError::Replay)?;
    let fs = target.close().map_err(FreshError::Replay)?;
    fs.unmount().map_err(FreshError::Replay)?;
    let fsck = crate::frond::fsck(dev, platform).map_err(FreshError::Replay)?;
    if !fsck.is_clean() {
        return Err(FreshError::Fsck(fsck.problems.len()));
    }
    Ok(report)
}
