//! The test rig of the filesystem suites: frond formatted on a device (behind a
//! [`Queue`]), mounted through the file API, with helpers to remount, check and compare.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};

use crate::block::{BlockDevice, FaultDisk, Queue};
use crate::frond::{fsck, mkfs, MkfsOptions};
use crate::iomap::testfs::TraceDisk;
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

    /// A rig on `scratch0` (`bs`-byte blocks) mounted over a [`TraceDisk`] right above the
    /// queue: the trace sees the filesystem's own bios and flags, before any splitting, merging
    /// or FUA emulation.
    pub fn traced(env: &TestEnv, bs: u64) -> Result<(Self, Arc<TraceDisk>), TestFailure> {
        Self::traced_with(env, bs, env.platform.clone())
    }

    /// [`FsRig::traced`] with the filesystem on `platform` (a test double over the env's).
    pub fn traced_with(
        env: &TestEnv,
        bs: u64,
        platform: Arc<dyn Platform>,
    ) -> Result<(Self, Arc<TraceDisk>), TestFailure> {
        let dev = env.device("scratch0")?;
        let trace = TraceDisk::new(Arc::new(Queue::new(dev.clone())));
        let mut rig = Self::on(platform, dev, bs, FS_BYTES)?;
        rig.unmount()?;
        rig.fs = Some(FrondFs::mount(trace.clone(), rig.platform.clone(), rig.opts).map_err(mount_err)?);
        Ok((rig, trace))
    }

    /// A 16 MiB rig on `scratch0` (4 KiB blocks) over a [`FaultDisk`] that fails on demand.
    pub fn faulty(env: &TestEnv) -> Result<(Self, Arc<FaultDisk>), TestFailure> {
        let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
        let rig = Self::on(env.platform.clone(), fault.clone(), 4096, 16 << 20)?;
        Ok((rig, fault))
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

    /// Remounts and checks that `/name` reads back as `want` from the device.
    pub fn remount_and_expect(&mut self, name: &str, want: &[u8]) -> TestResult {
        self.remount()?;
        let f = self.open(name, OpenFlags::RDONLY)?;
        let got = read_all(&f)?;
        if got != want {
            return Err(TestFailure(format!("/{name} after remount: {}", first_diff(&got, want))));
        }
        Ok(())
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

/// A buffer for `O_DIRECT` calls: its bytes start at a 4 KiB boundary (any device's DMA
/// alignment), whatever the allocator gives.
pub struct DioBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl DioBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        const ALIGN: usize = 4096;
        let raw = vec![0u8; len + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        Self { raw, off, len }
    }

    /// A copy of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut b = Self::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

/// Reads `len` bytes at `pos` of an `O_DIRECT` file into an aligned buffer (all must be there).
pub fn read_direct(f: &File, pos: u64, len: usize) -> Result<Vec<u8>, TestFailure> {
    let mut buf = DioBuf::zeroed(len);
    let n = f.read(pos, buf.as_mut_slice())?;
    if n != len {
        return Err(TestFailure(format!("short direct read: {n} of {len} bytes at {pos}")));
    }
    Ok(buf.as_slice().to_vec())
}

/// Writes all of `data` at `pos` of an `O_DIRECT` file from an aligned buffer.
pub fn write_direct(f: &File, pos: u64, data: &[u8]) -> TestResult {
    let buf = DioBuf::of(data);
    let n = f.write(pos, buf.as_slice())?;
    if n != data.len() {
        return Err(TestFailure(format!("short direct write: {n} of {} bytes at {pos}", data.len())));
    }
    Ok(())
}
