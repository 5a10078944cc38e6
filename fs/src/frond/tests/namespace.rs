//! Namespace operations with Linux's errors.

use super::*;
use crate::frond::inode::{S_IFDIR, S_IFLNK, S_IFREG};
use crate::Errno;

#[test]
fn create_lookup_remount_at_each_block_size() {
    for bs in [1024u32, 4096, 65536] {
        let (disk, fs) = fresh(bs, 16 << 20);
        let root = fs.root_ino();
        let a = fs.create(root, b"a", S_IFREG | 0o644, 1, 2).unwrap();
        let d = fs.mkdir(root, b"d", 0o755, 0, 0).unwrap();
        assert_eq!(fs.lookup(root, b"a"), Ok(a));
        assert_eq!(fs.lookup(root, b"d"), Ok(d));
        assert_eq!(fs.lookup(d, b".."), Ok(root));
        assert_eq!(fs.stat(root).unwrap().nlink, 3);
        let fs = remount(&disk, fs);
        assert_eq!(fs.lookup(root, b"a"), Ok(a));
        let st = fs.stat(a).unwrap();
        assert_eq!((st.mode, st.nlink, st.uid, st.gid, st.size), (S_IFREG | 0o644, 1, 1, 2, 0));
        assert_eq!(fs.stat(d).unwrap().mode, S_IFDIR | 0o755);
        assert_eq!(fs.lookup(root, b"zz"), Err(Errno::ENOENT));
        let l = fs.symlink(root, b"l", b"/a/b").unwrap();
        assert_eq!(fs.stat(l).unwrap().mode & 0o170000, S_IFLNK);
        assert_eq!(fs.readlink(l).unwrap(), b"/a/b");
        assert_clean(&fs);
        fs.unmount().unwrap();
        assert_image_clean(&disk);
    }
}

fn names(fs: &Frond, dir: u64) -> alloc::vec::Vec<alloc::vec::Vec<u8>> {
    let mut v: alloc::vec::Vec<_> =
        fs.readdir(dir, 0, usize::MAX).unwrap().into_iter().map(|e| e.name).collect();
    v.sort();
    v
}

#[test]
fn linux_errors_for_names_and_types() {
    let (_disk, fs) = fresh_with(4096, 8 << 20, MkfsOptions { link_max: 8, ..Default::default() });
    let root = fs.root_ino();
    let f = fs.create(root, b"f", S_IFREG | 0o600, 0, 0).unwrap();
    let d = fs.mkdir(root, b"d", 0o700, 0, 0).unwrap();
    // Names.
    assert_eq!(fs.create(root, &[b'x'; 256], S_IFREG, 0, 0), Err(Errno::ENAMETOOLONG));
    assert!(fs.create(root, &[b'x'; 255], S_IFREG, 0, 0).is_ok());
    assert_eq!(fs.lookup(root, &[b'y'; 256]), Err(Errno::ENAMETOOLONG));
    assert_eq!(fs.create(root, b"", S_IFREG, 0, 0), Err(Errno::ENOENT));
    assert_eq!(fs.create(root, b"a/b", S_IFREG, 0, 0), Err(Errno::EINVAL));
    assert_eq!(fs.create(root, b"f", S_IFREG, 0, 0), Err(Errno::EEXIST));
    assert_eq!(fs.mkdir(root, b"f", 0o755, 0, 0), Err(Errno::EEXIST));
    assert_eq!(fs.create(root, b".", S_IFREG, 0, 0), Err(Errno::EEXIST));
    assert_eq!(fs.mkdir(root, b"..", 0o755, 0, 0), Err(Errno::EEXIST));
    assert_eq!(fs.create(root, b"q", S_IFDIR | 0o755, 0, 0), Err(Errno::EINVAL));
    // Types.
    assert_eq!(fs.lookup(f, b"x"), Err(Errno::ENOTDIR));
    assert_eq!(fs.create(f, b"x", S_IFREG, 0, 0), Err(Errno::ENOTDIR));
    assert_eq!(fs.unlink(root, b"d"), Err(Errno::EISDIR));
    assert_eq!(fs.unlink(root, b"."), Err(Errno::EISDIR));
    assert_eq!(fs.rmdir(root, b"f"), Err(Errno::ENOTDIR));
    assert_eq!(fs.rmdir(d, b"."), Err(Errno::EINVAL));
    assert_eq!(fs.rmdir(d, b".."), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.unlink(root, b"nope"), Err(Errno::ENOENT));
    assert_eq!(fs.rmdir(root, b"nope"), Err(Errno::ENOENT));
    assert_eq!(fs.link(d, root, b"dlink"), Err(Errno::EPERM));
    assert_eq!(fs.link(f, root, b"d"), Err(Errno::EEXIST));
    assert_eq!(fs.readlink(f), Err(Errno::EINVAL));
    assert_eq!(fs.symlink(root, b"s", b""), Err(Errno::ENOENT));
    assert_eq!(fs.symlink(root, b"s", &[b'a'; 4096]), Err(Errno::ENAMETOOLONG));
    // Non-empty directory.
    fs.create(d, b"inner", S_IFREG, 0, 0).unwrap();
    assert_eq!(fs.rmdir(root, b"d"), Err(Errno::ENOTEMPTY));
    fs.unlink(d, b"inner").unwrap();
    fs.rmdir(root, b"d").unwrap();
    assert_eq!(fs.lookup(root, b"d"), Err(Errno::ENOENT));
    assert_eq!(fs.stat(root).unwrap().nlink, 2);
    // The removed directory's inode is gone.
    assert_eq!(fs.stat(d), Err(Errno::ESTALE));
    assert_clean(&fs);
}

#[test]
fn link_counts_and_emlink() {
    let (disk, fs) = fresh_with(1024, 8 << 20, MkfsOptions { link_max: 8, ..Default::default() });
    let root = fs.root_ino();
    let f = fs.create(root, b"f", S_IFREG | 0o600, 0, 0).unwrap();
    for i in 1..8u8 {
        fs.link(f, root, &[b'l', b'0' + i]).unwrap();
    }
    assert_eq!(fs.stat(f).unwrap().nlink, 8);
    assert_eq!(fs.link(f, root, b"one-more"), Err(Errno::EMLINK));
    // A directory with link_max - 2 subdirectories cannot get another.
    let d = fs.mkdir(root, b"d", 0o755, 0, 0).unwrap();
    for i in 0..6u8 {
        fs.mkdir(d, &[b's', b'0' + i], 0o755, 0, 0).unwrap();
    }
    assert_eq!(fs.stat(d).unwrap().nlink, 8);
    assert_eq!(fs.mkdir(d, b"s9", 0o755, 0, 0), Err(Errno::EMLINK));
    let other = fs.mkdir(root, b"other", 0o755, 0, 0).unwrap();
    assert_eq!(fs.rename(other, b"..", d, b"x"), Err(Errno::EBUSY));
    assert_eq!(fs.rename(root, b"other", d, b"x"), Err(Errno::EMLINK));
    // Files are fine.
    fs.create(d, b"file", S_IFREG, 0, 0).unwrap();
    // Unlinking names one by one frees the inode with the last one.
    for i in 1..8u8 {
        fs.unlink(root, &[b'l', b'0' + i]).unwrap();
    }
    assert_eq!(fs.stat(f).unwrap().nlink, 1);
    fs.unlink(root, b"f").unwrap();
    assert_eq!(fs.stat(f), Err(Errno::ESTALE));
    // setattr: permissions, owner, times; the type stays.
    let e = fs.create(root, b"e", S_IFREG | 0o600, 0, 0).unwrap();
    let a = crate::frond::SetAttr {
        perm: Some(0o4755),
        uid: Some(7),
        gid: Some(8),
        atime: Some(11),
        mtime: Some(22),
    };
    fs.setattr(e, &a).unwrap();
    assert_eq!(
        fs.setattr(e, &crate::frond::SetAttr { perm: Some(0o170000), ..Default::default() }),
        Err(Errno::EINVAL)
    );
    assert_clean(&fs);
    let fs = remount(&disk, fs);
    let s = fs.stat(e).unwrap();
    assert_eq!((s.mode, s.uid, s.gid, s.atime, s.mtime), (S_IFREG | 0o4755, 7, 8, 11, 22));
    assert_eq!(fs.block_size(), 1024);
    assert_eq!(fs.stat(d).unwrap().nlink, 8);
    assert_clean(&fs);
}

#[test]
fn rename_rules() {
    let (disk, fs) = fresh(4096, 8 << 20);
    let root = fs.root_ino();
    let a = fs.mkdir(root, b"a", 0o755, 0, 0).unwrap();
    let b = fs.mkdir(a, b"b", 0o755, 0, 0).unwrap();
    let c = fs.mkdir(b, b"c", 0o755, 0, 0).unwrap();
    let f = fs.create(root, b"f", S_IFREG, 0, 0).unwrap();
    let g = fs.create(root, b"g", S_IFREG, 0, 0).unwrap();
    // Into its own subtree.
    assert_eq!(fs.rename(root, b"a", c, b"a2"), Err(Errno::EINVAL));
    assert_eq!(fs.rename(root, b"a", a, b"self"), Err(Errno::EINVAL));
    // Type mismatches and non-empty targets.
    assert_eq!(fs.rename(root, b"a", root, b"f"), Err(Errno::ENOTDIR));
    assert_eq!(fs.rename(root, b"f", root, b"a"), Err(Errno::EISDIR));
    let e = fs.mkdir(root, b"e", 0o755, 0, 0).unwrap();
    assert_eq!(fs.rename(root, b"e", a, b"b"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rename(root, b"missing", root, b"x"), Err(Errno::ENOENT));
    assert_eq!(fs.rename(root, b".", root, b"x"), Err(Errno::EBUSY));
    assert_eq!(fs.rename(f, b"x", root, b"y"), Err(Errno::ENOTDIR));
    // Same inode: no-op.
    fs.link(f, root, b"f2").unwrap();
    fs.rename(root, b"f", root, b"f2").unwrap();
    assert_eq!(fs.lookup(root, b"f"), Ok(f));
    assert_eq!(fs.stat(f).unwrap().nlink, 2);
    // File over file: the target loses its name (and is freed).
    fs.rename(root, b"f2", root, b"g").unwrap();
    assert_eq!(fs.lookup(root, b"g"), Ok(f));
    assert_eq!(fs.lookup(root, b"f2"), Err(Errno::ENOENT));
    assert_eq!(fs.stat(g), Err(Errno::ESTALE));
    // Directory across parents: link counts follow.
    fs.rename(b, b"c", root, b"c").unwrap();
    assert_eq!(fs.lookup(c, b".."), Ok(root));
    assert_eq!(fs.stat(b).unwrap().nlink, 2);
    assert_eq!(fs.stat(root).unwrap().nlink, 2 + 3); // a, e, c
                                                     // Directory over an empty directory.
    fs.rename(root, b"c", root, b"e").unwrap();
    assert_eq!(fs.lookup(root, b"e"), Ok(c));
    assert_eq!(fs.stat(e), Err(Errno::ESTALE));
    assert_eq!(fs.stat(root).unwrap().nlink, 2 + 2);
    // Directory over an empty directory in another parent.
    let z = fs.mkdir(b, b"z", 0o755, 0, 0).unwrap();
    fs.rename(root, b"e", b, b"z").unwrap();
    assert_eq!(fs.lookup(b, b"z"), Ok(c));
    assert_eq!(fs.stat(z), Err(Errno::ESTALE));
    assert_eq!(fs.stat(b).unwrap().nlink, 3);
    assert_eq!(fs.stat(root).unwrap().nlink, 3);
    assert_eq!(names(&fs, root), [&b"."[..], b"..", b"a", b"f", b"g"]);
    assert_clean(&fs);
    let fs = remount(&disk, fs);
    assert_eq!(fs.lookup(b, b"z"), Ok(c));
    assert_clean(&fs);
}

#[test]
fn readdir_cookies_resume_and_many_entries() {
    for (bs, n) in [(1024u32, 200u32), (65536, 60)] {
        let (disk, fs) = fresh(bs, 16 << 20);
        let root = fs.root_ino();
        for i in 0..n {
            fs.create(root, alloc::format!("file-{i:04}").as_bytes(), S_IFREG, 0, 0).unwrap();
        }
        // Read 7 at a time, resuming from each batch's last cookie.
        let mut all = alloc::vec::Vec::new();
        let mut cookie = 0;
        loop {
            let batch = fs.readdir(root, cookie, 7).unwrap();
            if batch.is_empty() {
                break;
            }
            cookie = batch.last().unwrap().next;
            all.extend(batch.into_iter().map(|e| e.name));
        }
        assert_eq!(all.len(), n as usize + 2);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n as usize + 2, "no duplicates across batches");
        assert_eq!(fs.stat(root).unwrap().size, n as u64);
        for i in (0..n).step_by(2) {
            fs.unlink(root, alloc::format!("file-{i:04}").as_bytes()).unwrap();
        }
        let fs = remount(&disk, fs);
        assert_eq!(names(&fs, root).len(), n as usize / 2 + 2);
        assert_eq!(fs.lookup(root, b"file-0001").map(|_| ()), Ok(()));
        assert_eq!(fs.lookup(root, b"file-0002"), Err(Errno::ENOENT));
        assert_clean(&fs);
    }
}

#[test]
fn symlinks_inline_and_in_blocks() {
    let (disk, fs) = fresh(1024, 8 << 20);
    let root = fs.root_ino();
    let short = fs.symlink(root, b"short", b"target").unwrap();
    let long_target: alloc::vec::Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let long = fs.symlink(root, b"long", &long_target).unwrap();
    assert_eq!(fs.stat(long).unwrap().size, 3000);
    assert_eq!(fs.stat(long).unwrap().blocks, 3 * 2, "three 1 KiB blocks");
    let fs = remount(&disk, fs);
    assert_eq!(fs.readlink(short).unwrap(), b"target");
    assert_eq!(fs.readlink(long).unwrap(), long_target);
    assert_clean(&fs);
    fs.unlink(root, b"long").unwrap();
    assert_clean(&fs);
}

#[test]
fn concurrent_namespace_operations_from_threads() {
    let (disk, fs) = fresh(4096, 16 << 20);
    let fs = Arc::new(fs);
    let root = fs.root_ino();
    let mut handles = alloc::vec::Vec::new();
    for t in 0..4u32 {
        let fs = fs.clone();
        handles.push(std::thread::spawn(move || {
            let d = fs.mkdir(root, alloc::format!("t{t}").as_bytes(), 0o755, 0, 0).unwrap();
            for i in 0..50u32 {
                let name = alloc::format!("f{i}");
                fs.create(d, name.as_bytes(), S_IFREG, 0, 0).unwrap();
                if i % 3 == 0 {
                    fs.unlink(d, name.as_bytes()).unwrap();
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_clean(&fs);
    let fs = Arc::try_unwrap(fs).ok().unwrap();
    let fs = remount(&disk, fs);
    for t in 0..4u32 {
        let d = fs.lookup(root, alloc::format!("t{t}").as_bytes()).unwrap();
        assert_eq!(fs.stat(d).unwrap().size, 50 - 17);
    }
}

#[test]
fn mkfs_options_and_device_geometry() {
    let p = platform();
    let d = Arc::new(RamDisk::new(8 << 20, 4096).unwrap());
    for bs in [512u32, 3000, 1 << 17] {
        assert_eq!(
            mkfs(d.clone(), p.clone(), &MkfsOptions { block_size: bs, ..Default::default() }),
            Err(Errno::EINVAL)
        );
    }
    // Blocks smaller than the device's logical block size.
    assert_eq!(
        mkfs(d.clone(), p.clone(), &MkfsOptions { block_size: 1024, ..Default::default() }),
        Err(Errno::EINVAL)
    );
    // Larger than the device, and too small to hold a filesystem.
    assert_eq!(
        mkfs(d.clone(), p.clone(), &MkfsOptions { size: Some(16 << 20), ..Default::default() }),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mkfs(d.clone(), p.clone(), &MkfsOptions { size: Some(64 << 10), ..Default::default() }),
        Err(Errno::ENOSPC)
    );
    assert_eq!(
        mkfs(d.clone(), p.clone(), &MkfsOptions { log_blocks: Some(8), ..Default::default() }),
        Err(Errno::EINVAL)
    );
    // A 64 KiB-block filesystem on a 4 KiB-sector device, using part of it.
    mkfs(d.clone(), p.clone(), &MkfsOptions { block_size: 65536, size: Some(6 << 20), ..Default::default() })
        .unwrap();
    let fs = Frond::mount(d.clone(), p.clone()).unwrap();
    let st = fs.statfs().unwrap();
    assert_eq!((st.block_size, st.name_max), (65536, 255));
    assert!(st.blocks < 96 && st.free > 0);
    assert_clean(&fs);
    fs.unmount().unwrap();
    // A 1 KiB-block filesystem cannot be mounted on a 4 KiB-sector device.
    let small = Arc::new(RamDisk::new(4 << 20, 512).unwrap());
    mkfs(small.clone(), p.clone(), &MkfsOptions { block_size: 1024, ..Default::default() }).unwrap();
    let on_4k = Arc::new(RamDisk::from_image(small.snapshot(), 4096));
    assert_eq!(Frond::mount(on_4k, p).err().map(|e| e.errno), Some(Errno::EINVAL));
}
