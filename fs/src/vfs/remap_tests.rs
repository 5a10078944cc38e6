//! Linux's `generic_remap_checks` rules for dedupe and clone lengths (found by the replay of
//! the `errors-9` oracle case on Linux XFS 6.18).
//!
//! Also the clone cost of a sequentially written file, in extents and metadata work (counts,
//! not times; the times are `cargo xtask bench`'s `fs_clone_*`).

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

/// The extents of `ino`'s data fork over its first `blocks` blocks: (file block, length).
fn data_extents(fs: &FrondFs, ino: u64, blocks: u64) -> Pairs {
    let mut v = vec::Vec::new();
    let mut fb = 0;
    while fb < blocks {
        let m = fs.frond().map(ino, fb, blocks - fb, crate::frond::Fork::Data).unwrap();
        assert_eq!(m.kind, crate::frond::MapKind::Mapped, "block {fb} of inode {ino}");
        v.push((m.file_block, m.len));
        fb = m.file_block + m.len;
    }
    v
}

/// On a fresh filesystem: an untimed one-block clone (it creates the refcount tree), then a
/// file of `mib` MiB written in 1 MiB writes and fsync'd, checkpointed, and cloned twice into
/// new files. Returns the source's extents and, per clone, (metadata block lookups, journal
/// blocks of its commit). fsck clean at the end.
/// (file block, length) runs, or (metadata block lookups, journal blocks) per clone.
type Pairs = vec::Vec<(u64, u64)>;

fn sequential_file_clone_costs(mib: u64) -> (Pairs, Pairs) {
    let p = StdPlatform::arc();
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new((mib + 32) << 20, 512).unwrap());
    mkfs(dev.clone(), p.clone(), &MkfsOptions::default()).unwrap();
    let fs = FrondFs::mount(dev, p, MountOptions::new(16 << 20)).unwrap();
    let open = |name: &[u8]| fs.open_at(fs.root(), name, OpenFlags::RDWR | OpenFlags::CREAT, 0o644).unwrap();
    let warm = open(b"warm");
    warm.write(0, &[1u8; 4096]).unwrap();
    warm.fsync().unwrap();
    open(b"warm_dst").clone_range(&warm, 0, 0, 0).unwrap();
    let src = open(b"src");
    let chunk = vec![0x5Au8; 1 << 20];
    for i in 0..mib {
        assert_eq!(src.write(i << 20, &chunk).unwrap(), chunk.len());
    }
    src.fsync().unwrap();
    let blocks = mib << 8;
    let extents = data_extents(&fs, src.ino(), blocks);
    fs.frond().checkpoint().unwrap();
    let mut costs = vec::Vec::new();
    for c in 0..2 {
        let dst = open(std::format!("dst{c}").as_bytes());
        let s0 = fs.frond().cache_stats();
        let log0 = fs.frond().with(|st| Ok(st.journal.free_blocks())).unwrap();
        dst.clone_range(&src, 0, 0, 0).unwrap();
        fs.frond().sync().unwrap();
        let s1 = fs.frond().cache_stats();
        let log1 = fs.frond().with(|st| Ok(st.journal.free_blocks())).unwrap();
        assert_eq!(dst.size(), mib << 20);
        assert_eq!(data_extents(&fs, dst.ino(), blocks), extents, "{mib} MiB clone {c}");
        costs.push((s1.hits + s1.reads - s0.hits - s0.reads, log0 - log1));
    }
    let report = fs.fsck().unwrap();
    assert!(report.is_clean(), "{report:?}");
    drop((warm, src));
    fs.unmount().unwrap();
    (extents, costs)
}

/// The clone benchmark property, pinned with counts: a file written front to back in
/// 1 MiB writes and fsync'd is one extent (delalloc converted to the largest extent the
/// allocator gives; the format allows `MAX_EXT_LEN` = 2^21 - 1 blocks, 8 GiB at 4 KiB), and
/// cloning it does exactly the same metadata work (block lookups, journal blocks) at 4 times
/// the size.
#[test]
fn clone_cost_follows_extents_not_bytes() {
    let (small_ext, small) = sequential_file_clone_costs(16);
    let (large_ext, large) = sequential_file_clone_costs(64);
    assert_eq!(small_ext, [(0, 16 << 8)]);
    assert_eq!(large_ext, [(0, 64 << 8)]);
    std::println!("per clone (metadata block lookups, journal blocks): 16 MiB {small:?}, 64 MiB {large:?}");
    assert_eq!(small, large);
    assert!(small.iter().all(|&(lookups, log)| lookups > 0 && log > 0), "{small:?}");
}
