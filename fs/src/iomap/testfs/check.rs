//! The test filesystem's consistency check: every block a file's data or COW fork points at is
//! allocated with a reference count equal to the number of extents pointing at it, and every
//! allocated block is pointed at (no leak, no double free, no stale sharing).
//!
//! Lock order: one file state lock at a time, then the filesystem lock. Linux <-> here:
//! `xfs_repair`'s block and refcount checks, reduced.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use super::MemFs;

impl MemFs {
    /// Checks the space accounting (see the module documentation); the first problem found.
    pub fn check(&self) -> Result<(), String> {
        let mut owners: BTreeMap<u64, u32> = BTreeMap::new();
        for f in self.files() {
            let st = f.state.lock();
            for e in st.extents.extents().iter().chain(st.cow.extents().iter()) {
                if let Some(d) = e.kind.disk() {
                    for b in d..d + e.len {
                        *owners.entry(b).or_insert(0) += 1;
                    }
                }
            }
        }
        for (&b, &n) in &owners {
            let have = self.refcount(b);
            if have != n {
                return Err(format!("block {b}: reference count {have}, {n} extents point at it"));
            }
        }
        let (_, used) = self.space();
        if used != owners.len() as u64 {
            return Err(format!("{used} blocks allocated, {} referenced: leaked blocks", owners.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloc::sync::Arc;

    use crate::block::{BlockDevice, RamDisk};
    use crate::iomap::selftest::{Rig, RigOpts};
    use crate::iomap::testfs::ExtKind;
    use crate::platform::StdPlatform;

    #[test]
    fn check_finds_wrong_counts_and_leaks() {
        let disk = Arc::new(RamDisk::new(8 << 20, 512).unwrap());
        let rig = Rig::on(StdPlatform::arc(), disk as Arc<dyn BlockDevice>, RigOpts::new(4096)).unwrap();
        let f = rig.file().unwrap();
        let d = rig.spare_block(0);
        f.set_extent(0, 2, ExtKind::Mapped(d), false).unwrap();
        assert_eq!(rig.fs.check(), Ok(()));
        rig.fs.share_blocks(d, 1).unwrap();
        let e = rig.fs.check().unwrap_err();
        assert!(e.contains("reference count 2, 1 extents"), "{e}");
        rig.fs.put_blocks(d, 1).unwrap();
        assert_eq!(rig.fs.check(), Ok(()));
        rig.fs.take_blocks(d + 10, 1).unwrap();
        let e = rig.fs.check().unwrap_err();
        assert!(e.contains("leaked"), "{e}");
        rig.fs.put_blocks(d + 10, 1).unwrap();
        rig.fs.put_blocks(d + 1, 1).unwrap();
        let e = rig.fs.check().unwrap_err();
        assert!(e.contains("reference count 0"), "{e}");
    }
}
