//! Linux's `generic_remap_checks` rules for dedupe and clone lengths (found by the replay of
//! the `errors-9` oracle case on Linux XFS 6.18).

use std::sync::Arc;
use std::vec;

use crate::block::{BlockDevice, RamDisk};
use crate::platform::StdPlatform;
use crate::vfs::{mkfs, DedupeOutcome, FrondFs, MkfsOptions, MountOptions, OpenFlags};
use crate::Errno;

#[test]
fn dedupe_shortens_to_blocks_and_never_past_eof_clone_never_shortens() {
    let p = StdPlatform::arc();
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(16 << 20, 512).unwrap());
    mkfs(dev.clone(), p.clone(), &MkfsOptions::default()).unwrap();
    let fs = FrondFs::mount(dev, p, MountOptions::new(4 << 20)).unwrap();
    let f = fs.open_at(fs.root(), b"f", OpenFlags::RDWR | OpenFlags::CREAT, 0o644).unwrap();
    let block: vec::Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
    for b in 0..8u64 {
        f.write(b * 4096, &block).unwrap();
    }
    // An unaligned length short of EOF is cut to whole blocks: 0x1fff -> one block, equal.
    assert_eq!(f.dedupe_range(&f, 0, 0x1fff, 0x4000), Ok(DedupeOutcome::Same(0x1000)));
    // Ranges past either EOF are refused, not clamped.
    assert_eq!(f.dedupe_range(&f, 0x6000, 0x4000, 0), Err(Errno::EINVAL));
    assert_eq!(f.dedupe_range(&f, 0, 0x4000, 0x6000), Err(Errno::EINVAL));
    // Shorter than a block: nothing to compare, nothing done.
    assert_eq!(f.dedupe_range(&f, 0, 0x800, 0x4000), Ok(DedupeOutcome::Same(0)));
    // Clone: a range past the source's EOF, or starting at it, is EINVAL; len 0 means to EOF.
    assert_eq!(f.clone_range(&f, 0x6000, 0x4000, 0x10000), Err(Errno::EINVAL));
    assert_eq!(f.clone_range(&f, 0x8000, 0x1000, 0x10000), Err(Errno::EINVAL));
    assert_eq!(f.clone_range(&f, 0x7000, 0, 0x10000), Ok(()));
    assert_eq!(f.size(), 0x11000);
    drop(f);
    fs.unmount().unwrap();
}
