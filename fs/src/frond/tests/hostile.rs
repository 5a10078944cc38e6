//! Hostile and corrupt images: refused at mount with a reason, or failing cleanly with EUCLEAN
//! at run time; never a panic or a hang. And fsck naming each injected corruption precisely.

use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::frond::btree::node::{self, Geo};
use crate::frond::dir::DIRT;
use crate::frond::format::{put32, put64, seal};
use crate::frond::inode::{INOBT, S_IFREG};
use crate::frond::state::Pool;
use crate::frond::superblock::{SB_BACKUP, SB_PRIMARY};
use crate::Errno;

fn block(disk: &RamDisk, bs: usize, blk: u64) -> Vec<u8> {
    let mut b = alloc::vec![0u8; bs];
    disk.peek(blk * bs as u64, &mut b);
    b
}

/// Rewrites block `blk` with `f` applied, resealing its header CRC when `reseal`.
fn edit(disk: &RamDisk, bs: usize, blk: u64, reseal: bool, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = block(disk, bs, blk);
    f(&mut b);
    if reseal {
        seal(&mut b);
    }
    disk.poke(blk * bs as u64, &b);
}

fn mount_err(disk: &Arc<RamDisk>) -> (Errno, String) {
    match Frond::mount(disk.clone(), platform()) {
        Ok(_) => panic!("corrupt image mounted"),
        Err(e) => (e.errno, e.reason),
    }
}

/// A populated, cleanly unmounted 1 KiB-block image: a root directory deep enough for a
/// two-level tree, a few files with extents, and its geometry facts.
struct Img {
    disk: Arc<RamDisk>,
    bs: usize,
    root_block: u64,
    root_dir: u64,
    dir_root: u64,
    ino_root: u64,
    bno_root: u64,
    file: u64,
}

fn image() -> Img {
    let (disk, fs) = fresh(1024, 4 << 20);
    let root = fs.root_ino();
    let mut file = 0;
    for i in 0..12u32 {
        file = fs.create(root, alloc::format!("n{i}").as_bytes(), S_IFREG | 0o644, 0, 0).unwrap();
    }
    fs.allocate(file, 0, 4, false, crate::frond::engine::Fork::Data).unwrap();
    let (root_block, dir_root, ino_root, bno_root) = {
        let mut st = fs.state.lock();
        let dr = st.inode(root).unwrap().root;
        (st.sb.root_block, dr, st.root.ino_root, st.root.bno_root)
    };
    fs.unmount().unwrap();
    Img { disk, bs: 1024, root_block, root_dir: root, dir_root, ino_root, bno_root, file }
}

#[test]
fn superblock_damage_falls_back_to_the_backup_or_is_refused() {
    let img = image();
    // Primary garbage: the backup is used.
    edit(&img.disk, img.bs, SB_PRIMARY, false, |b| b[..64].fill(0xA5));
    let fs = Frond::mount(img.disk.clone(), platform()).unwrap();
    assert!(fs.lookup(img.root_dir, b"n3").is_ok());
    fs.unmount().unwrap();
    // Both copies claim more blocks than the device has.
    for blk in [SB_PRIMARY, SB_BACKUP] {
        let sb = crate::frond::superblock::Superblock::decode(
            &block(&img.disk, img.bs, SB_BACKUP),
            SB_BACKUP,
            4 << 20,
        )
        .unwrap();
        let mut b = sb.encode(blk);
        put64(&mut b, 24, 1 << 30);
        seal(&mut b);
        img.disk.poke(blk * img.bs as u64, &b);
    }
    assert_eq!(
        mount_err(&img.disk),
        (
            Errno::EUCLEAN,
            String::from("superblock: filesystem has 1073741824 blocks but the device holds only 4096")
        )
    );
    // No superblock at all.
    let blank = Arc::new(RamDisk::new(1 << 20, 512).unwrap());
    assert_eq!(mount_err(&blank), (Errno::EUCLEAN, String::from("superblock: no frond magic at block 0")));
}

#[test]
fn bad_checksums_are_refused_with_the_block_named() {
    let img = image();
    edit(&img.disk, img.bs, img.root_block, false, |b| b[300] ^= 0x40);
    assert_eq!(
        mount_err(&img.disk),
        (Errno::EUCLEAN, alloc::format!("root block {}: checksum mismatch", img.root_block))
    );
    let img = image();
    edit(&img.disk, img.bs, 2, false, |b| b[40] ^= 1);
    assert_eq!(
        mount_err(&img.disk),
        (Errno::EUCLEAN, String::from("journal header block 2: checksum mismatch"))
    );
    let img = image();
    edit(&img.disk, img.bs, img.ino_root, false, |b| b[100] ^= 1);
    assert_eq!(
        mount_err(&img.disk),
        (Errno::EUCLEAN, alloc::format!("btree block {}: checksum mismatch", img.ino_root))
    );
}

#[test]
fn tree_nodes_with_bad_order_count_level_and_pointers_are_refused() {
    let gi = Geo::new(&INOBT, 0, 1024, 0);
    // Keys out of order in the inode tree root (a leaf with several chunks).
    let img = image();
    let n = node::nrecs(&block(&img.disk, img.bs, img.ino_root));
    assert!(n >= 2, "need two chunks, have {n}");
    edit(&img.disk, img.bs, img.ino_root, true, |b| {
        let k = gi.key(b, 1);
        gi.set_key(b, 0, k);
    });
    assert_eq!(
        mount_err(&img.disk),
        (Errno::EUCLEAN, alloc::format!("inode node {}: keys out of order at record 1", img.ino_root))
    );
    // Record count beyond capacity.
    let img = image();
    edit(&img.disk, img.bs, img.bno_root, true, |b| node::set_nrecs(b, 5000));
    let (e, why) = mount_err(&img.disk);
    assert_eq!(
        (e, why.starts_with(&alloc::format!("free-space (by block) node {}: 5000 records", img.bno_root))),
        (Errno::EUCLEAN, true),
        "{why}"
    );
    // Level beyond the maximum.
    let img = image();
    edit(&img.disk, img.bs, img.dir_root, true, |b| crate::frond::format::put16(b, 26, 40));
    assert_eq!(
        mount_err(&img.disk),
        (Errno::EUCLEAN, alloc::format!("directory node {}: level 40 exceeds 15", img.dir_root))
    );
    // A child pointer out of range in the directory tree's root.
    let img = image();
    let gd = Geo::new(&DIRT, 1, 1024, 0);
    assert!(
        node::level(&block(&img.disk, img.bs, img.dir_root)) >= 1,
        "directory tree should have two levels"
    );
    edit(&img.disk, img.bs, img.dir_root, true, |b| put64(b, 32 + 8, 999_999));
    assert_eq!(
        mount_err(&img.disk),
        (
            Errno::EUCLEAN,
            alloc::format!("directory node {}: child pointer 999999 out of range", img.dir_root)
        )
    );
    let _ = gd;
    // The root directory inode with a garbage type.
    let img = image();
    let chunk = img.root_dir / 2;
    let slot = (img.root_dir % 2) as usize;
    edit(&img.disk, img.bs, chunk, false, |b| {
        let s = &mut b[slot * 512..(slot + 1) * 512];
        put32(s, 16, 0o070000);
        let c = crate::frond::crc32c::crc32c_skip(s, 4);
        put32(s, 4, c);
    });
    assert_eq!(
        mount_err(&img.disk),
        (Errno::EUCLEAN, alloc::format!("inode {}: bad file type in mode 0o70000", img.root_dir))
    );
}

#[test]
fn a_cycle_in_a_deeper_tree_fails_cleanly_at_run_time_and_fsck_names_it() {
    let img = image();
    let g = Geo::new(&DIRT, 1, 1024, 0);
    let root_node = block(&img.disk, img.bs, img.dir_root);
    assert!(node::nrecs(&root_node) >= 2);
    // Point the second child at the first: the first leaf becomes reachable twice.
    let first = g.child(&root_node, 0);
    edit(&img.disk, img.bs, img.dir_root, true, |b| put64(b, 32 + (8 + 8) + 8, first));
    let fs = Frond::mount(img.disk.clone(), platform()).unwrap();
    assert_eq!(fs.readdir(img.root_dir, 0, usize::MAX).map(|_| ()), Err(Errno::EUCLEAN));
    let r = fs.fsck().unwrap();
    let msgs: Vec<String> = r.problems.iter().map(|p| alloc::format!("{p}")).collect();
    assert!(
        msgs.iter().any(|m| m.starts_with(&alloc::format!(
            "directory {} tree: directory node {first}: keys outside the bounds",
            img.root_dir
        ))),
        "{msgs:#?}"
    );
}

#[test]
fn extents_pointing_outside_the_disk_fail_cleanly() {
    let img = image();
    let ipb = 2;
    let (chunk, slot) = (img.file / ipb, (img.file % ipb) as usize);
    edit(&img.disk, img.bs, chunk, false, |b| {
        let s = &mut b[slot * 512..(slot + 1) * 512];
        put64(s, 128 + 8, 1 << 40);
        let c = crate::frond::crc32c::crc32c_skip(s, 4);
        put32(s, 4, c);
    });
    let fs = Frond::mount(img.disk.clone(), platform()).unwrap();
    assert_eq!(fs.map(img.file, 0, 1, crate::frond::engine::Fork::Data).map(|_| ()), Err(Errno::EUCLEAN));
    let r = fs.fsck().unwrap();
    let want = alloc::format!(
        "inode {}: inode {}: extent at file block 0 maps blocks 1099511627776+4 outside the data area",
        img.file,
        img.file
    );
    assert!(r.problems.iter().any(|p| alloc::format!("{p}") == want), "{}", problems(&r));
}

#[test]
fn garbage_and_hostile_journal_contents() {
    // Garbage where the next transaction would be: ignored.
    let img = image();
    for blk in 3..10 {
        edit(&img.disk, img.bs, blk, false, |b| b.fill(0x5A));
    }
    let fs = Frond::mount(img.disk.clone(), platform()).unwrap();
    assert!(fs.lookup(img.root_dir, b"n1").is_ok());
    assert_clean(&fs);
    fs.unmount().unwrap();
    // A forged, correctly checksummed transaction that would overwrite the backup superblock.
    let img = image();
    let hdr = crate::frond::journal::format::JournalHeader::decode(&block(&img.disk, img.bs, 2), 2, {
        let sb =
            crate::frond::superblock::Superblock::decode(&block(&img.disk, img.bs, 0), 0, 4 << 20).unwrap();
        sb.log_blocks
    })
    .unwrap();
    let at = 3 + hdr.tail_pos;
    let image_blk = alloc::vec![7u8; 1024];
    let d = crate::frond::journal::format::Descriptor {
        seq: hdr.tail_seq,
        index: 0,
        tags: alloc::vec![crate::frond::journal::format::Tag {
            target: 1,
            crc: crate::frond::crc32c::crc32c(&image_blk)
        }],
    };
    img.disk.poke(at * 1024, &d.encode(1024, at));
    img.disk.poke((at + 1) * 1024, &image_blk);
    let c = crate::frond::journal::format::CommitRecord { seq: hdr.tail_seq, images: 1, descriptors: 1 };
    img.disk.poke((at + 2) * 1024, &c.encode(1024, at + 2));
    assert_eq!(
        mount_err(&img.disk),
        (
            Errno::EUCLEAN,
            alloc::format!("journal transaction {} logs block 1 outside the metadata area", hdr.tail_seq)
        )
    );
    let r = crate::frond::fsck(img.disk.clone(), platform()).unwrap();
    assert_eq!(
        alloc::format!("{}", r.problems[0]),
        alloc::format!(
            "journal header unusable: journal transaction {} logs block 1 outside the metadata area",
            hdr.tail_seq
        )
    );
}

#[test]
fn random_corruption_never_panics_or_hangs() {
    // Flip bytes all over the metadata of a real image; mount and, when it mounts, use it.
    let base = image();
    let pristine = base.disk.snapshot();
    let mut rng = crate::frond::testutil::Rng(0xBAD_1DEA);
    for round in 0..60 {
        let mut img = pristine.clone();
        for _ in 0..3 {
            let blk = rng.below(200) as usize;
            let off = rng.below(1024) as usize;
            img[blk * 1024 + off] ^= 1 << rng.below(8);
        }
        let disk = Arc::new(RamDisk::from_image(img, 512));
        if let Ok(fs) = Frond::mount(disk.clone(), platform()) {
            let root = fs.root_ino();
            let _ = fs.readdir(root, 0, usize::MAX);
            for i in 0..12u32 {
                if let Ok(ino) = fs.lookup(root, alloc::format!("n{i}").as_bytes()) {
                    let _ = fs.stat(ino);
                    let _ = fs.map(ino, 0, 8, crate::frond::engine::Fork::Data);
                }
            }
            let _ = fs.create(root, b"new", S_IFREG, 0, 0);
            let _ = fs.fsck();
            let _ = round;
        }
        let _ = crate::frond::fsck(disk, platform());
    }
}

#[test]
fn fsck_names_each_injected_corruption() {
    let check = |inject: &dyn Fn(&Frond, u64, u64), want: &dyn Fn(u64, u64, u64) -> String| {
        let (_disk, fs) = fresh(4096, 8 << 20);
        let root = fs.root_ino();
        let f = fs.create(root, b"f", S_IFREG | 0o644, 0, 0).unwrap();
        let m = fs.allocate(f, 5, 1, false, crate::frond::engine::Fork::Data).unwrap();
        assert_clean(&fs);
        inject(&fs, f, m.disk_block);
        let r = fs.fsck().unwrap();
        let w = want(root, f, m.disk_block);
        assert!(
            r.problems.iter().any(|p| alloc::format!("{p}").starts_with(&w)),
            "want {w:?}, got:\n{}",
            problems(&r)
        );
    };
    // A mapped block also free.
    check(
        &|fs, _f, d| fs.state.lock().op(0, 64, Pool::Reserve, |st| st.free_extent(d, 1, false)).unwrap(),
        &|_, f, d| {
            alloc::format!("block {d} used by inode {f} at file block 5 but also free in free-space tree")
        },
    );
    // A leaked block.
    check(
        &|fs, _f, _d| {
            let (b, _) = fs.state.lock().op(1, 64, Pool::Normal, |st| st.alloc_extent(1500, 1, 1)).unwrap();
            assert_eq!(b, 1500);
        },
        &|_, _, _| String::from("block 1500 is neither free nor used"),
    );
    // A reference count without sharing.
    check(
        &|fs, _f, d| {
            fs.state.lock().op(8, 64, Pool::Normal, |st| st.refcount_adjust(d, 1, 1).map(|_| ())).unwrap();
        },
        &|_, _, d| alloc::format!("block {d} is mapped 1 times but its reference count is 2"),
    );
    // A wrong link count.
    check(
        &|fs, f, _| {
            fs.state
                .lock()
                .op(0, 4, Pool::Normal, |st| {
                    st.inode(f)?.nlink = 5;
                    st.mark_inode_dirty(f);
                    Ok(())
                })
                .unwrap();
        },
        &|_, f, _| alloc::format!("inode {f} has link count 5 but 1 links were found"),
    );
    // An entry removed without dropping the inode: unreachable.
    check(
        &|fs, _f, _| {
            let root = fs.root_ino();
            fs.state
                .lock()
                .op(0, 8, Pool::Normal, |st| {
                    let (k, _, _) = st.dir_lookup(root, b"f")?.unwrap();
                    st.dir_remove(root, k)
                })
                .unwrap();
        },
        &|_, f, _| alloc::format!("inode {f} is allocated but no directory reaches it"),
    );
    // A directory entry whose type disagrees with the inode.
    check(
        &|fs, f, _| {
            let root = fs.root_ino();
            fs.state
                .lock()
                .op(0, 8, Pool::Normal, |st| {
                    let (k, _, _) = st.dir_lookup(root, b"f")?.unwrap();
                    st.dir_replace(root, k, b"f", f, 4)
                })
                .unwrap();
        },
        &|root, f, _| {
            alloc::format!("directory {root} entry \"f\": has type 4 but inode {f} has mode 0o100644")
        },
    );
    // The free-block counter.
    check(
        &|fs, _, _| {
            let mut st = fs.state.lock();
            st.op(0, 4, Pool::Normal, |st| {
                st.root.free_blocks += 3;
                st.touch_root();
                Ok(())
            })
            .unwrap();
        },
        &|_, _, _| String::from("root block records"),
    );
}
