//! Directed extent tests: inline data and un-stuffing, inline list to tree and back, COW
//! staging left by a crash, remount persistence, inode cache eviction.

use super::*;
use crate::frond::engine::{Fork, MapKind};
use crate::frond::inode::{Format, S_IFREG};
use crate::Errno;

#[test]
fn inline_data_persists_and_unstuffs_to_a_block() {
    for bs in [1024u32, 4096, 65536] {
        let (disk, fs) = fresh(bs, (16u64 << 20).max(256 * bs as u64));
        let root = fs.root_ino();
        let f = fs.create(root, b"small", S_IFREG | 0o644, 0, 0).unwrap();
        fs.write_inline(f, 0, &[b'A'; 60]).unwrap();
        fs.write_inline(f, 20, &[b'B'; 10]).unwrap();
        assert_eq!(fs.write_inline(f, 380, &[1; 5]), Err(Errno::EFBIG));
        let fs = remount(&disk, fs);
        let mut buf = [0u8; 100];
        assert_eq!(fs.read_inline(f, 0, &mut buf), Ok(60));
        assert_eq!(&buf[..20], &[b'A'; 20]);
        assert_eq!(&buf[20..30], &[b'B'; 10]);
        assert_eq!(fs.stat(f).unwrap().size, 60);
        let m = fs.map(f, 0, 4, Fork::Data).unwrap();
        assert_eq!((m.kind, m.len), (MapKind::Inline, 1));
        assert_eq!(fs.map(f, 1, 4, Fork::Data).unwrap().kind, MapKind::Hole);
        assert_eq!(fs.allocate(f, 0, 1, false, Fork::Data).map(|_| ()), Err(Errno::EINVAL));
        fs.unstuff(f).unwrap();
        let m = fs.map(f, 0, 1, Fork::Data).unwrap();
        assert_eq!((m.kind, m.len), (MapKind::Mapped, 1));
        let mut blk = alloc::vec![0u8; bs as usize];
        disk.peek(m.disk_block * bs as u64, &mut blk);
        assert_eq!(&blk[20..30], &[b'B'; 10]);
        assert!(blk[60..].iter().all(|&b| b == 0));
        assert_eq!(fs.stat(f).unwrap().size, 60);
        // Truncating an inline file past the inline capacity un-stuffs it too.
        let g = fs.create(root, b"g", S_IFREG, 0, 0).unwrap();
        fs.write_inline(g, 0, b"xyz").unwrap();
        fs.truncate(g, 1000).unwrap();
        assert_eq!(fs.map(g, 0, 1, Fork::Data).unwrap().kind, MapKind::Mapped);
        assert_clean(&fs);
        let fs = remount(&disk, fs);
        assert_eq!(fs.stat(f).unwrap().blocks, bs as u64 / 512);
        assert_clean(&fs);
    }
}

#[test]
fn extent_list_moves_to_a_tree_and_back() {
    let (disk, fs) = fresh(1024, 8 << 20);
    let root = fs.root_ino();
    let f = fs.create(root, b"f", S_IFREG, 0, 0).unwrap();
    // 40 separate one-block extents (every other block) need a tree.
    for i in 0..40u64 {
        fs.allocate(f, i * 2, 1, i % 3 == 0, Fork::Data).unwrap();
        // Keep them apart on disk too: allocate a spacer block in another file.
    }
    let format = |fs: &Frond| fs.state.lock().inodes.get(&f).map(|i| i.format);
    assert_eq!(format(&fs), Some(Format::Btree));
    let fs = remount(&disk, fs);
    for i in 0..40u64 {
        let m = fs.map(f, i * 2, 1, Fork::Data).unwrap();
        assert_eq!(m.kind, if i % 3 == 0 { MapKind::Unwritten } else { MapKind::Mapped }, "block {}", i * 2);
        assert_eq!(fs.map(f, i * 2 + 1, 1, Fork::Data).unwrap().kind, MapKind::Hole);
    }
    assert_clean(&fs);
    fs.punch(f, 0, 70).unwrap();
    assert_eq!(format(&fs), Some(Format::Extents));
    assert_eq!(fs.stat(f).unwrap().blocks, 5 * 2);
    assert_clean(&fs);
    let fs = remount(&disk, fs);
    assert_eq!(fs.map(f, 72, 1, Fork::Data).unwrap().kind, MapKind::Unwritten);
    assert_eq!(fs.map(f, 74, 1, Fork::Data).unwrap().kind, MapKind::Mapped);
    assert_clean(&fs);
}

#[test]
fn cow_staging_left_by_a_crash_is_freed_at_mount() {
    let (disk, fs) = fresh(4096, 8 << 20);
    let root = fs.root_ino();
    let a = fs.create(root, b"a", S_IFREG, 0, 0).unwrap();
    let b = fs.create(root, b"b", S_IFREG, 0, 0).unwrap();
    fs.allocate(a, 0, 8, false, Fork::Data).unwrap();
    fs.clone_extents(a, 0, b, 0, 8).unwrap();
    let m = fs.map(b, 0, 8, Fork::Data).unwrap();
    assert!(m.shared && m.len == 8);
    fs.checkpoint().unwrap();
    let free_before = fs.statfs().unwrap().free;
    assert_eq!(fs.cow_prepare(b, 2, 3), Ok(3));
    let c = fs.map(b, 2, 3, Fork::Cow).unwrap();
    assert_eq!((c.kind, c.len), (MapKind::Unwritten, 3));
    fs.checkpoint().unwrap();
    // Three staging blocks, and perhaps a refcount tree node for the staging record.
    let staged_free = fs.statfs().unwrap().free;
    assert!(
        staged_free == free_before - 3 || staged_free == free_before - 4,
        "{staged_free} vs {free_before}"
    );
    // Crash: the staging allocation is committed, the remap never happens.
    fs.sync().unwrap();
    let crashed = Arc::new(RamDisk::from_image(disk.snapshot(), 512));
    drop(fs);
    let fs = Frond::mount(crashed.clone(), platform()).unwrap();
    // The staging blocks are free again (fsck below proves none leaked).
    assert_eq!(fs.statfs().unwrap().free, staged_free + 3);
    assert_eq!(fs.map(b, 2, 1, Fork::Cow).unwrap().kind, MapKind::Hole);
    let m = fs.map(b, 0, 8, Fork::Data).unwrap();
    assert!(m.shared && m.len == 8, "data fork untouched");
    assert_clean(&fs);
    // And the normal path: remap makes b's blocks its own.
    fs.cow_prepare(b, 2, 3).unwrap();
    fs.cow_remap(b, 2, 3).unwrap();
    assert!(!fs.map(b, 2, 3, Fork::Data).unwrap().shared);
    assert!(fs.map(a, 2, 3, Fork::Data).unwrap().len == 3 && !fs.map(a, 2, 3, Fork::Data).unwrap().shared);
    assert!(fs.map(a, 0, 2, Fork::Data).unwrap().shared);
    // An I/O error cancels: staging freed, data fork untouched.
    fs.cow_prepare(b, 0, 2).unwrap();
    let before = fs.statfs().unwrap().free;
    fs.cow_cancel(b, 0, 8).unwrap();
    assert_eq!(fs.statfs().unwrap().free, before + 2);
    assert!(fs.map(b, 0, 2, Fork::Data).unwrap().shared);
    assert_clean(&fs);
}

#[test]
fn in_core_inodes_are_evicted_and_reloaded() {
    let (_disk, fs) = fresh(4096, 32 << 20);
    let root = fs.root_ino();
    let d = fs.mkdir(root, b"d", 0o755, 0, 0).unwrap();
    let n = crate::frond::state::INODE_CACHE as u32 + 200;
    for i in 0..n {
        fs.create(d, alloc::format!("{i}").as_bytes(), S_IFREG, 0, 0).unwrap();
    }
    assert!(fs.state.lock().inodes.len() <= crate::frond::state::INODE_CACHE + 1);
    for i in (0..n).step_by(97) {
        let ino = fs.lookup(d, alloc::format!("{i}").as_bytes()).unwrap();
        assert_eq!(fs.stat(ino).unwrap().nlink, 1);
    }
    assert_eq!(fs.stat(d).unwrap().size, n as u64);
    assert_clean(&fs);
}

#[test]
fn an_orphan_left_by_a_crash_is_freed_at_mount() {
    use crate::frond::state::Pool;
    let (disk, fs) = fresh(1024, 8 << 20);
    let root = fs.root_ino();
    let f = fs.create(root, b"big", S_IFREG, 0, 0).unwrap();
    for i in 0..30u64 {
        fs.allocate(f, i * 3, 2, false, Fork::Data).unwrap();
    }
    fs.checkpoint().unwrap();
    let free_before = fs.statfs().unwrap().free;
    // The unlink transaction commits, the freeing does not: as if the system crashed between.
    fs.state
        .lock()
        .op(0, 16, Pool::Reserve, |st| {
            let (k, _, _) = st.dir_lookup(root, b"big")?.unwrap();
            st.dir_remove(root, k)?;
            st.inode(f)?.nlink = 0;
            st.mark_inode_dirty(f);
            st.orphan_add(f)
        })
        .unwrap();
    fs.sync().unwrap();
    let crashed = Arc::new(RamDisk::from_image(disk.snapshot(), 512));
    let r = crate::frond::fsck(crashed.clone(), platform()).unwrap();
    assert!(matches!(r.problems[..], [crate::frond::Problem::JournalDirty { .. }]), "{}", problems(&r));
    let fs2 = Frond::mount(crashed.clone(), platform()).unwrap();
    assert_eq!(fs2.stat(f), Err(Errno::ESTALE));
    // The 60 data blocks and the extent tree's nodes are free again.
    assert!(fs2.statfs().unwrap().free >= free_before + 60);
    assert_clean(&fs2);
    fs2.unmount().unwrap();
    assert_image_clean(&crashed);
}

#[test]
fn refcount_records_split_and_merge_back() {
    let (_disk, fs) = fresh(4096, 8 << 20);
    let root = fs.root_ino();
    let a = fs.create(root, b"a", S_IFREG, 0, 0).unwrap();
    let b = fs.create(root, b"b", S_IFREG, 0, 0).unwrap();
    let c = fs.create(root, b"c", S_IFREG, 0, 0).unwrap();
    let m = fs.allocate(a, 0, 16, false, Fork::Data).unwrap();
    assert_eq!(m.len, 16);
    fs.clone_extents(a, 0, b, 0, 16).unwrap();
    fs.clone_extents(a, 4, c, 0, 4).unwrap();
    let records = |fs: &Frond| -> alloc::vec::Vec<(u64, u64, u32)> {
        let mut st = fs.state.lock();
        let t = st.refc();
        let mut v = alloc::vec::Vec::new();
        t.walk(&mut *st, 0, &mut |k, val| {
            let (l, c) = crate::frond::refcount::decode(val);
            v.push((k as u64 - m.disk_block, l, c));
            Ok(true)
        })
        .unwrap();
        v
    };
    assert_eq!(records(&fs), [(0, 4, 2), (4, 4, 3), (8, 8, 2)]);
    // Unsharing c's blocks brings the middle back to 2: one record again.
    fs.punch(c, 0, 4).unwrap();
    assert_eq!(records(&fs), [(0, 16, 2)]);
    // Punching b's middle leaves a's blocks 4..8 unshared: no record there.
    fs.punch(b, 4, 4).unwrap();
    assert_eq!(records(&fs), [(0, 4, 2), (8, 8, 2)]);
    assert!(!fs.map(a, 4, 4, Fork::Data).unwrap().shared);
    assert_clean(&fs);
    fs.punch(b, 0, 16).unwrap();
    assert_eq!(records(&fs), []);
    assert_clean(&fs);
}
