//! §10: DAX and fsdax copy on write (T1, T2), over a memory-backed DAX region (a RamDisk and its
//! DAX view, private to each test and filled with garbage so zeroing is seen).

use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{mapped_block, pattern, Rig, RigOpts};
use crate::block::{BlockDevice, RamDisk};
use crate::iomap::dax::{copy_around, DaxDevice, RamDax};
use crate::iomap::testfs::ExtKind;
use crate::iomap::{Iomap, IomapType};
use crate::Errno;

const GARBAGE: u8 = 0xEE;

fn dax_rig(env: &TestEnv) -> Result<(Rig, Arc<RamDax>), TestFailure> {
    let disk = Arc::new(RamDisk::from_image(vec![GARBAGE; 16 << 20], 512));
    let rig = Rig::on(env.platform.clone(), disk.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let dax = RamDax::new(disk);
    rig.fs.set_dax(dax.clone());
    Ok((rig, dax))
}

fn peek(dax: &RamDax, block: u64) -> Result<alloc::vec::Vec<u8>, TestFailure> {
    let mut b = vec![0u8; 4096];
    dax.read(block * 4096, &mut b)?;
    Ok(b)
}

fn check(rig: &Rig) -> TestResult {
    rig.fs.check().map_err(TestFailure)
}

pub fn dax_t1_reflinked_write_copies_around(env: &TestEnv) -> TestResult {
    let (rig, dax) = dax_rig(env)?;
    let a = rig.file()?;
    ensure_eq!(a.dax_write(0, &[b'A'; 8192])?, 8192);
    let b = rig.file()?;
    ensure_eq!(b.clone_range_from(&a, 0, 0, 0)?, 8192);
    let a1 = mapped_block(&a, 1)?;
    ensure_eq!(b.dax_write(4100, b"ZZZZZZZZZZ")?, 10);
    let b1 = mapped_block(&b, 1)?;
    ensure!(b1 != a1, "the write went to a new block");
    let mut expect = vec![b'A'; 4096];
    expect[4..14].copy_from_slice(b"ZZZZZZZZZZ");
    ensure_eq!(peek(&dax, b1)?, expect, "the new block holds the old bytes around the write");
    ensure_eq!(peek(&dax, a1)?, vec![b'A'; 4096], "the other file's block is unchanged");
    let mut buf = vec![0u8; 8192];
    ensure_eq!(a.dax_read(0, &mut buf)?, 8192);
    ensure_eq!(buf, vec![b'A'; 8192]);
    ensure_eq!(b.dax_read(0, &mut buf)?, 8192);
    ensure_eq!(&buf[4096..], &expect[..]);
    ensure_eq!((rig.fs.refcount(a1), rig.fs.refcount(b1), rig.fs.refcount(mapped_block(&a, 0)?)), (1, 1, 2));
    ensure!(b.cow_extents().is_empty(), "remapped when the write returned");
    check(&rig)
}

pub fn dax_t2_cow_over_hole_zeroes_head_and_tail(env: &TestEnv) -> TestResult {
    let (rig, dax) = dax_rig(env)?;
    let x = rig.spare_block(0);
    let dst = Iomap::new(4096, 4096, x * 4096, IomapType::Mapped);
    copy_around(&*dax, 4100, 10, 4096, &Iomap::hole(4096, 4096), &dst)?;
    let mut expect = vec![0u8; 4096];
    expect[4..14].fill(GARBAGE);
    ensure_eq!(peek(&dax, x)?, expect, "head and tail zeroed, the write's range left for the data");
    let y = rig.spare_block(1);
    let dst = Iomap::new(4096, 4096, y * 4096, IomapType::Mapped);
    let unwritten = Iomap::new(4096, 4096, x * 4096, IomapType::Unwritten);
    copy_around(&*dax, 8000, 100, 4096, &unwritten, &dst)?;
    let mut expect = vec![0u8; 4096];
    expect[3904..4004].fill(GARBAGE);
    ensure_eq!(peek(&dax, y)?, expect, "an unwritten source is zeros too");
    Ok(())
}

pub fn dax_copy_around_copies_source_and_whole_aligned_blocks(env: &TestEnv) -> TestResult {
    let (rig, dax) = dax_rig(env)?;
    let (s, x, y) = (rig.spare_block(0), rig.spare_block(1), rig.spare_block(2));
    dax.write(s * 4096, &pattern(31, 4096))?;
    let src = Iomap::new(0, 4096, s * 4096, IomapType::Mapped);
    let dst = Iomap::new(0, 4096, x * 4096, IomapType::Mapped);
    copy_around(&*dax, 1000, 24, 4096, &src, &dst)?;
    let mut expect = pattern(31, 4096);
    expect[1000..1024].fill(GARBAGE);
    ensure_eq!(peek(&dax, x)?, expect);
    let dst = Iomap::new(0, 4096, y * 4096, IomapType::Mapped);
    copy_around(&*dax, 0, 4096, 4096, &src, &dst)?;
    ensure_eq!(peek(&dax, y)?, pattern(31, 4096), "aligned: everything is copied (the fault case)");
    ensure_eq!(copy_around(&*dax, 100, 10, 8192, &src, &dst), Err(Errno::EINVAL), "dst does not cover");
    ensure_eq!(copy_around(&*dax, 100, 10, 3000, &src, &dst), Err(Errno::EINVAL), "alignment");
    Ok(())
}

pub fn dax_write_new_and_unwritten_blocks_zero_edges(env: &TestEnv) -> TestResult {
    let (rig, dax) = dax_rig(env)?;
    let f = rig.file()?;
    ensure_eq!(f.dax_write(100, b"xxxxxxxxxx")?, 10);
    ensure_eq!((f.size(), f.file().disk_size()), (110, 110));
    let d = mapped_block(&f, 0)?;
    let mut expect = vec![0u8; 4096];
    expect[100..110].fill(b'x');
    ensure_eq!(peek(&dax, d)?, expect, "no garbage around the bytes of a new block");
    let mut buf = vec![0xAAu8; 4096];
    ensure_eq!(f.dax_read(0, &mut buf)?, 110);
    ensure_eq!(&buf[..110], &expect[..110]);
    ensure_eq!(rig.trace.counts().reads + rig.trace.counts().writes, 0, "no block I/O for data");
    let g = rig.file()?;
    g.fallocate(0, 8192)?;
    g.dax_truncate(8192)?;
    let mut buf = vec![0xAAu8; 8192];
    ensure_eq!(g.dax_read(0, &mut buf)?, 8192);
    ensure_eq!(buf, vec![0u8; 8192], "unwritten reads as zeros, not the garbage under it");
    ensure_eq!(g.dax_write(5000, &[b'y'; 100])?, 100);
    let exts = g.extents();
    ensure!(matches!(exts[0].kind, ExtKind::Unwritten(_)) && exts[0].len == 1, "{:?}", exts);
    let d1 = mapped_block(&g, 1)?;
    let mut expect = vec![0u8; 4096];
    expect[904..1004].fill(b'y');
    ensure_eq!(peek(&dax, d1)?, expect, "converted with zeroed edges");
    ensure_eq!(g.dax_read(0, &mut buf)?, 8192);
    ensure_eq!(&buf[4096..], &expect[..]);
    ensure!(buf[..4096].iter().all(|&b| b == 0));
    check(&rig)
}

pub fn dax_zero_range_on_shared_blocks_copies_around(env: &TestEnv) -> TestResult {
    let (rig, dax) = dax_rig(env)?;
    let a = rig.file()?;
    a.dax_write(0, &[b'A'; 8192])?;
    let b = rig.file()?;
    b.clone_range_from(&a, 0, 0, 0)?;
    b.dax_zero(100, 200)?;
    let b0 = mapped_block(&b, 0)?;
    ensure!(b0 != mapped_block(&a, 0)?, "zeroing a shared block unshares it");
    let mut expect = vec![b'A'; 4096];
    expect[100..300].fill(0);
    ensure_eq!(peek(&dax, b0)?, expect);
    ensure_eq!(peek(&dax, mapped_block(&a, 0)?)?, vec![b'A'; 4096]);
    ensure_eq!(b.size(), 8192, "zeroing keeps the size");
    check(&rig)
}

pub fn dax_truncate_down_then_up_zeroes_tail(env: &TestEnv) -> TestResult {
    let (rig, _dax) = dax_rig(env)?;
    let f = rig.file()?;
    f.dax_write(0, &[b'A'; 16384])?;
    f.dax_truncate(5000)?;
    ensure_eq!(f.extents().iter().map(|e| e.len).sum::<u64>(), 2, "blocks past EOF freed");
    f.dax_truncate(16384)?;
    let mut buf = vec![0xAAu8; 16384];
    ensure_eq!(f.dax_read(0, &mut buf)?, 16384);
    let mut expect = vec![0u8; 16384];
    expect[..5000].fill(b'A');
    ensure_eq!(buf, expect);
    check(&rig)
}
