//! Host helpers for tools (feature `std`): mkfs and fsck on image files, as the xtask `mkfs`
//! and `fsck` commands will run them.
//!
//! The image is loaded into a RamDisk, worked on, and (for mkfs) written back; images are
//! test-sized, so this is simpler and as fast as a file-backed device. The logical block size
//! is 512 bytes.
//!
//! Lock order: none beyond the filesystem's.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `mkfs.xfs -f image` | [`mkfs_image`] |
//! | `xfs_repair -n image` | [`fsck_image`] |

use std::path::Path;
use std::vec::Vec;

use alloc::sync::Arc;

use super::{fsck, mkfs, FsckReport, MkfsOptions};
use crate::block::RamDisk;
use crate::platform::StdPlatform;
use crate::Errno;

/// Creates (or overwrites) `path` as an image of `size` bytes (default: the existing file's
/// size) and writes a new filesystem into it.
pub fn mkfs_image(path: &Path, size: Option<u64>, opts: &MkfsOptions) -> std::io::Result<()> {
    let size = match size {
        Some(s) => s,
        None => std::fs::metadata(path)?.len(),
    };
    let disk = Arc::new(RamDisk::new(size, 512).map_err(io_err)?);
    mkfs(disk.clone(), StdPlatform::arc(), opts).map_err(io_err)?;
    std::fs::write(path, disk.snapshot())
}

/// Checks the filesystem in image file `path` (read only).
pub fn fsck_image(path: &Path) -> std::io::Result<FsckReport> {
    let image: Vec<u8> = std::fs::read(path)?;
    let disk = Arc::new(RamDisk::from_image(image, 512));
    fsck(disk, StdPlatform::arc()).map_err(io_err)
}

fn io_err(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_then_fsck_an_image_file() {
        let path = std::env::temp_dir().join(std::format!("frond-host-test-{}.img", std::process::id()));
        mkfs_image(&path, Some(4 << 20), &MkfsOptions { block_size: 1024, ..Default::default() }).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 << 20);
        assert!(fsck_image(&path).unwrap().is_clean());
        // Damage the root block: fsck says so.
        let mut img = std::fs::read(&path).unwrap();
        let sb = crate::frond::superblock::Superblock::decode(&img[..1024], 0, 4 << 20).unwrap();
        img[sb.root_block as usize * 1024 + 200] ^= 1;
        std::fs::write(&path, &img).unwrap();
        let r = fsck_image(&path).unwrap();
        assert_eq!(
            std::format!("{}", r.problems[0]),
            std::format!("root block unusable: root block {}: checksum mismatch", sb.root_block)
        );
        assert_eq!(
            mkfs_image(&path, Some(1024), &MkfsOptions::default()).unwrap_err().raw_os_error(),
            Some(Errno::ENOSPC.code())
        );
        std::fs::remove_file(&path).unwrap();
    }
}
