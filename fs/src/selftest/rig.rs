//! The test rig of the filesystem suites: frond formatted on a device (behind a
//! [`Queue`]), mounted through the file API, with helpers to remount, check and compare.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};

use crate::block::{BlockDevice, Queue};
use crate::frond::{fsck, mkfs, MkfsOptions};
use crate::platform::Platform;
use crate::vfs::{File, FrondFs, MountOptions, OpenFlags};

/// Largest filesystem the suites format (fits the kernel's 64 MiB `scratch0`).
pub const FS_BYTES: u64 = 48 << 20;

/// Page-cache budget of a rig mount.
pub const CACHE_BYTES: u64 = 16 << 20;

/// A formatted, mounted filesystem on a device.
pub struct FsRig {
    /// The platform.
    pub platform: Arc<dyn Platform>,
    /// The device (without the queue).
    pub dev: Arc<dyn BlockDevice>,
    /// The mounted filesystem (`None` only between unmount and mount).
    pub(crate) fs: Option<Arc<FrondFs>>,
    /// Block size.
    pub bs: u64,
    /// Mount options used.
    pub opts: MountOptions,
}

/// Turns a mount error into a test failure naming it.
fn mount_err(e: crate::frond::MountError) -> TestFailure {
    TestFailure(format!("mount failed: {e}"))
}

impl FsRig {
    /// A rig on `scratch0` with `bs`-byte blocks.
    pub fn new(env: &TestEnv, bs: u64) -> Result<Self, TestFailure> {
        let dev = env.device("scratch0")?;
        Self::on(env.platform.clone(), dev, bs, FS_BYTES)
    }

    /// Formats `size` bytes of `dev` (at most its capacity) with `bs`-byte blocks and mounts it.
    pub fn on(
        platform: Arc<dyn Platform>,
        dev: Arc<dyn BlockDevice>,
        bs: u64,
        size: u64,
    ) -> Result<Self, TestFailure> {
        let size = size.min(dev.info().capacity_bytes());
        let opts = MkfsOptions { block_size: bs as u32, size: Some(size), ..MkfsOptions::default() };
        mkfs(dev.clone(), platform.clone(), &opts)?;
        let mut rig = Self { platform, dev, fs: None, bs, opts: MountOptions::new(CACHE_BYTES) };
        rig.mount()?;
        Ok(rig)
    }

    /// Mounts the device (behind a fresh queue).
    pub fn mount(&mut self) -> TestResult {
        let q: Arc<dyn BlockDevice> = Arc::new(Queue::new(self.dev.clone()));
        self.fs = Some(FrondFs::mount(q, self.platform.clone(), self.opts).map_err(mount_err)?);
        Ok(())
    }

    /// The mounted filesystem.
    pub fn fs(&self) -> &Arc<FrondFs> {
        self.fs.as_ref().expect("rig is mounted between calls")
    }

    /// Unmounts (every `File` must be dropped first).
    pub fn unmount(&mut self) -> TestResult {
        if let Some(fs) = self.fs.take() {
            fs.unmount().map_err(|e| TestFailure(format!("unmount failed: {e}")))?;
        }
        Ok(())
    }

    /// Unmounts and mounts again: a fresh cache, everything read back from the device.
    pub fn remount(&mut self) -> TestResult {
        self.unmount()?;
        self.mount()
    }

    /// fsck of the mounted filesystem (after writing everything back) must be clean.
    pub fn check(&self) -> TestResult {
        let r = self.fs().fsck()?;
        if !r.is_clean() {
            return Err(TestFailure(format!("fsck found problems: {:?}", r.problems)));
        }
        Ok(())
    }

    /// Unmounts and checks the device offline: the end of every test.
    pub fn finish(mut self) -> TestResult {
        self.unmount()?;
        let r = fsck(self.dev.clone(), self.platform.clone())?;
        if !r.is_clean() {
            return Err(TestFailure(format!("fsck after unmount found problems: {:?}", r.problems)));
        }
        Ok(())
    }

    /// Opens (creating) `/name` read-write.
    pub fn create(&self, name: &str) -> Result<File, TestFailure> {
        self.open(name, OpenFlags::RDWR | OpenFlags::CREAT)
    }

    /// Opens `/name` (a path below the root) with `flags`.
    pub fn open(&self, name: &str, flags: OpenFlags) -> Result<File, TestFailure> {
        let fs = self.fs();
        let (dir, leaf) = match name.rfind('/') {
            Some(i) => (fs.resolve(&name.as_bytes()[..i])?, &name[i + 1..]),
            None => (fs.root(), name),
        };
        Ok(fs.open_at(dir, leaf.as_bytes(), flags, 0o644)?)
    }

    /// Free blocks now.
    pub fn free_blocks(&self) -> Result<u64, TestFailure> {
        Ok(self.fs().statfs()?.free)
    }
}

/// Reads `len` bytes at `pos` (must all be there).
pub fn read_exact(f: &File, pos: u64, len: usize) -> Result<Vec<u8>, TestFailure> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read(pos + done as u64, &mut buf[done..])?;
        if n == 0 {
            return Err(TestFailure(format!("short read: {done} of {len} bytes at {pos}")));
        }
        done += n;
    }
    Ok(buf)
}

/// Writes all of `data` at `pos`.
pub fn write_all(f: &File, pos: u64, data: &[u8]) -> TestResult {
    let n = f.write(pos, data)?;
    if n != data.len() {
        return Err(TestFailure(format!("short write: {n} of {} bytes at {pos}", data.len())));
    }
    Ok(())
}

/// The whole file.
pub fn read_all(f: &File) -> Result<Vec<u8>, TestFailure> {
    read_exact(f, 0, f.size() as usize)
}

/// `len` bytes of a position-dependent pattern seeded with `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(0x9E37) + 1) % 251) as u8)
        .collect()
}

/// First differing byte of two buffers, for messages.
pub fn first_diff(a: &[u8], b: &[u8]) -> String {
    if a.len() != b.len() {
        return format!("lengths differ: {} vs {}", a.len(), b.len());
    }
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}: {} vs {}", a[i], b[i]),
        None => String::from("equal"),
    }
}

/// The block sizes every size-sensitive test runs with.
pub const BLOCK_SIZES: [u64; 3] = [1024, 4096, 65536];

/// frond's data-fork mapping of the block holding byte `pos` of `f`.
pub fn block_of(f: &File, pos: u64) -> Result<crate::frond::Mapping, TestFailure> {
    let bs = f.fs().block_size();
    Ok(f.fs().frond().map(f.ino(), pos / bs, 1, crate::frond::Fork::Data)?)
}

/// Whether the blocks holding `pos_a` of `a` and `pos_b` of `b` are the same disk block.
pub fn same_block(a: &File, pos_a: u64, b: &File, pos_b: u64) -> Result<bool, TestFailure> {
    let (x, y) = (block_of(a, pos_a)?, block_of(b, pos_b)?);
    Ok(x.kind == crate::frond::MapKind::Mapped && y.kind == x.kind && x.disk_block == y.disk_block)
}
