//! Filesystem-level tests over RamDisk: helpers shared by the test files below.

use alloc::sync::Arc;

use crate::block::{BlockDevice, RamDisk};
use crate::frond::{mkfs, Frond, MkfsOptions};
use crate::platform::{Platform, StdPlatform};

mod allocator;
mod crash;
mod extent_directed;
mod extent_model;
mod hostile;
mod namespace;

/// A fresh filesystem on a RamDisk of `bytes` with blocks of `bs` and `opts` otherwise.
pub(crate) fn fresh_with(bs: u32, bytes: u64, mut opts: MkfsOptions) -> (Arc<RamDisk>, Frond) {
    let disk = Arc::new(RamDisk::new(bytes, 512).unwrap());
    opts.block_size = bs;
    mkfs(disk.clone(), platform(), &opts).unwrap();
    let fs = Frond::mount(disk.clone(), platform()).unwrap_or_else(|e| panic!("mount: {e}"));
    (disk, fs)
}

/// A fresh filesystem with default options.
pub(crate) fn fresh(bs: u32, bytes: u64) -> (Arc<RamDisk>, Frond) {
    fresh_with(bs, bytes, MkfsOptions::default())
}

/// The host platform.
pub(crate) fn platform() -> Arc<dyn Platform> {
    StdPlatform::arc()
}

/// Unmounts and mounts again.
pub(crate) fn remount(disk: &Arc<RamDisk>, fs: Frond) -> Frond {
    fs.unmount().unwrap();
    let dev: Arc<dyn BlockDevice> = disk.clone();
    Frond::mount(dev, platform()).unwrap_or_else(|e| panic!("remount: {e}"))
}

/// Checkpoints and checks the mounted filesystem; panics listing every problem.
pub(crate) fn assert_clean(fs: &Frond) {
    let r = fs.fsck().unwrap();
    assert!(r.is_clean(), "fsck found problems:\n{}", problems(&r));
}

/// Checks an unmounted image; panics listing every problem.
pub(crate) fn assert_image_clean(disk: &Arc<RamDisk>) {
    let r = crate::frond::fsck(disk.clone(), platform()).unwrap();
    assert!(r.is_clean(), "fsck found problems:\n{}", problems(&r));
}

/// The problems of a report, one per line.
pub(crate) fn problems(r: &crate::frond::FsckReport) -> alloc::string::String {
    r.problems.iter().map(|p| alloc::format!("  {p}\n")).collect()
}
