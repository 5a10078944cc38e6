//! Filesystem-level tests over RamDisk: helpers shared by the test files below.

use alloc::sync::Arc;

use crate::block::{BlockDevice, RamDisk};
use crate::frond::{mkfs, Frond, MkfsOptions};
use crate::platform::{Platform, StdPlatform};

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
