//! Reflink and copy-on-write through the file API: the §6 scenarios, clone of a clone, dedupe,
//! unshare, clone then truncate / punch, copy range, COW on a full disk. fsck (reference
//! counts included) after each.

use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::rig::{block_of, first_diff, pattern, read_all, same_block, write_all, FsRig, BLOCK_SIZES};
use crate::vfs::{DedupeOutcome, FallocFlags, OpenFlags};
use crate::Errno;

/// §6 T1: clone 64 KiB, write 'Z' over B[4096, 4100): A unchanged, B has the Z's with 'A'
/// around them in that block; after sync and remount too; B's block 1 is private (one new
/// block allocated), fsck clean.
pub fn cow_t1_clone_then_write_either_side(env: &TestEnv) -> TestResult {
    for bs in BLOCK_SIZES {
        let mut rig = FsRig::new(env, bs)?;
        let a = rig.create("A")?;
        write_all(&a, 0, &[b'A'; 65536])?;
        a.fsync()?;
        let b = rig.create("B")?;
        b.clone_range(&a, 0, 0, 0)?;
        ensure_eq!(b.size(), 65536);
        for pos in (0..65536).step_by(bs as usize) {
            ensure!(same_block(&a, pos, &b, pos)?, "bs {bs}: byte {pos} shared after the clone");
            ensure!(block_of(&b, pos)?.shared, "bs {bs}: byte {pos} marked shared");
        }
        write_all(&b, 4096, b"ZZZZ")?;
        let mut want_b = vec![b'A'; 65536];
        want_b[4096..4100].fill(b'Z');
        ensure!(read_all(&b)? == want_b, "bs {bs}: B in the cache");
        ensure!(read_all(&a)? == vec![b'A'; 65536], "bs {bs}: A unchanged in the cache");
        b.fsync()?;
        ensure!(!same_block(&a, 4096, &b, 4096)?, "bs {bs}: B's written block copied on write");
        ensure!(!block_of(&b, 4096)?.shared && !block_of(&a, 4096)?.shared, "bs {bs}: both private now");
        ensure!(bs == 65536 || same_block(&a, 8192, &b, 8192)?, "bs {bs}: other blocks still shared");
        // Now write the original: B must not change.
        write_all(&a, 0, b"aaaa")?;
        a.fsync()?;
        ensure!(!same_block(&a, 0, &b, 0)?, "bs {bs}: A's first block copied too");
        rig.check()?;
        drop((a, b));
        rig.remount()?;
        let a = rig.open("A", OpenFlags::RDONLY)?;
        let b = rig.open("B", OpenFlags::RDONLY)?;
        let mut want_a = vec![b'A'; 65536];
        want_a[..4].fill(b'a');
        let (ga, gb) = (read_all(&a)?, read_all(&b)?);
        ensure!(ga == want_a, "bs {bs}: A after remount: {}", first_diff(&ga, &want_a));
        ensure!(gb == want_b, "bs {bs}: B after remount: {}", first_diff(&gb, &want_b));
        drop((a, b));
        rig.finish()?;
    }
    Ok(())
}

/// §6 T2: the EOF-block rule of clone: a 5000-byte source cloned with len 0 into the middle of a
/// 64 KiB file is EINVAL; at 65536 it works and the destination becomes 70536 bytes.
pub fn cow_t2_clone_eof_block_rules(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let a = rig.create("A")?;
    let data = pattern(5, 5000);
    write_all(&a, 0, &data)?;
    let b = rig.create("B")?;
    write_all(&b, 0, &[b'B'; 65536])?;
    ensure_eq!(b.clone_range(&a, 0, 0, 8192), Err(Errno::EINVAL));
    ensure_eq!(b.clone_range(&a, 100, 0, 8192), Err(Errno::EINVAL), "unaligned source");
    ensure_eq!(b.clone_range(&a, 0, 4096, 100), Err(Errno::EINVAL), "unaligned destination");
    ensure_eq!(b.clone_range(&a, 8192, 0, 0), Err(Errno::EINVAL), "source offset past EOF");
    ensure_eq!(b.clone_range(&a, 0, 0, 65536), Ok(()));
    ensure_eq!(b.size(), 70536);
    let got = read_all(&b)?;
    ensure!(got[..65536] == [b'B'; 65536][..] && got[65536..] == data[..], "contents after clone");
    ensure_eq!(a.clone_range(&a, 0, 4096, 0), Err(Errno::EINVAL), "overlapping ranges of one file");
    drop((a, b));
    rig.check()?;
    rig.finish()
}

/// §6 T3: dedupe of identical ranges shares blocks (no content, size change); different
/// ranges report "differs" and change nothing; len 0 succeeds without effect.
pub fn cow_t3_dedupe_same_and_differs(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let a = rig.create("A")?;
    let b = rig.create("B")?;
    let c = rig.create("C")?;
    let data = pattern(9, 32768);
    write_all(&a, 0, &data)?;
    write_all(&b, 0, &data)?;
    let mut other = data.clone();
    other[20000] ^= 1;
    write_all(&c, 0, &other)?;
    a.fsync()?;
    b.fsync()?;
    c.fsync()?;
    let free0 = rig.free_blocks()?;
    ensure_eq!(b.dedupe_range(&a, 0, 32768, 0)?, DedupeOutcome::Same(32768));
    b.fsync()?;
    for pos in (0..32768).step_by(4096) {
        ensure!(same_block(&a, pos, &b, pos)?, "byte {pos} shared after dedupe");
    }
    let freed = rig.free_blocks()? - free0;
    ensure!((7..=8).contains(&freed), "B's 8 blocks freed (less refcount tree growth): {freed}");
    ensure_eq!(c.dedupe_range(&a, 0, 32768, 0)?, DedupeOutcome::Differs);
    ensure!(read_all(&c)? == other && read_all(&b)? == data, "contents unchanged");
    ensure_eq!(c.dedupe_range(&a, 0, 0, 0)?, DedupeOutcome::Same(0));
    for pos in (0..32768).step_by(4096) {
        ensure!(!same_block(&a, pos, &c, pos)?, "byte {pos} not shared by a differing dedupe");
    }
    drop((a, b, c));
    rig.check()?;
    rig.finish()
}

/// A clone of a clone: three files share blocks; writes to each stay private; refcounts right.
pub fn clone_of_clone_and_writes(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 1024)?;
    let a = rig.create("A")?;
    let data = pattern(11, 20000);
    write_all(&a, 0, &data)?;
    let b = rig.create("B")?;
    let c = rig.create("C")?;
    b.clone_range(&a, 0, 0, 0)?;
    c.clone_range(&b, 0, 0, 0)?;
    write_all(&b, 5000, b"bbbb")?;
    write_all(&c, 15000, b"cccc")?;
    write_all(&a, 0, b"aaaa")?;
    rig.check()?;
    let (mut wa, mut wb, mut wc) = (data.clone(), data.clone(), data.clone());
    wa[..4].copy_from_slice(b"aaaa");
    wb[5000..5004].copy_from_slice(b"bbbb");
    wc[15000..15004].copy_from_slice(b"cccc");
    drop((a, b, c));
    rig.remount()?;
    for (name, want) in [("A", &wa), ("B", &wb), ("C", &wc)] {
        let f = rig.open(name, OpenFlags::RDONLY)?;
        let got = read_all(&f)?;
        ensure!(got == *want, "{name}: {}", first_diff(&got, want));
    }
    rig.finish()
}

/// Unshare gives a clone private blocks with the same contents.
pub fn unshare_makes_blocks_private(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let a = rig.create("A")?;
    let data = pattern(12, 40960);
    write_all(&a, 0, &data)?;
    let b = rig.create("B")?;
    b.clone_range(&a, 0, 0, 0)?;
    b.fsync()?;
    b.fallocate(FallocFlags::UNSHARE_RANGE | FallocFlags::KEEP_SIZE, 0, 40960)?;
    b.fsync()?;
    for pos in (0..40960).step_by(4096) {
        ensure!(!same_block(&a, pos, &b, pos)?, "byte {pos} private after unshare");
        ensure!(!block_of(&a, pos)?.shared, "A's byte {pos} no longer shared");
    }
    let free0 = rig.free_blocks()?;
    ensure!(read_all(&b)? == data && read_all(&a)? == data, "contents unchanged");
    // A now owns its blocks alone: punching it frees them.
    a.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 0, 40960)?;
    a.fsync()?;
    ensure!(rig.free_blocks()? >= free0 + 10, "A's 10 blocks freed");
    drop((a, b));
    rig.check()?;
    rig.finish()
}

/// Clone, then truncate the clone and punch the original: contents right, blocks freed only
/// when their last user goes.
pub fn clone_then_truncate_and_punch(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let a = rig.create("A")?;
    let data = pattern(13, 65536);
    write_all(&a, 0, &data)?;
    a.fsync()?;
    let b = rig.create("B")?;
    b.clone_range(&a, 0, 0, 0)?;
    b.fsync()?;
    let free0 = rig.free_blocks()?;
    b.truncate(1000)?;
    a.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 8192, 16384)?;
    a.fsync()?;
    b.fsync()?;
    // B's truncate dropped its references to blocks 1..16; A's punch then freed blocks 2..6.
    let freed = rig.free_blocks()? - free0;
    ensure!((2..=4).contains(&freed), "4 punched blocks freed, 1 copied (less metadata): {freed}");
    // Zeroing B's new EOF block tail ([1000, 4096)) copied that block on write.
    ensure!(!same_block(&a, 0, &b, 0)? && !block_of(&a, 0)?.shared, "B's EOF block copied on write");
    ensure!(!block_of(&a, 30000)?.shared, "A's tail blocks are A's alone");
    let mut want_a = data.clone();
    want_a[8192..24576].fill(0);
    ensure!(read_all(&a)? == want_a, "A punched");
    ensure!(read_all(&b)? == data[..1000], "B truncated");
    rig.check()?;
    drop((a, b));
    rig.remount()?;
    let a = rig.open("A", OpenFlags::RDONLY)?;
    let b = rig.open("B", OpenFlags::RDONLY)?;
    ensure!(read_all(&a)? == want_a && read_all(&b)? == data[..1000], "after remount");
    drop((a, b));
    rig.finish()
}

/// copy_file_range shares blocks when the ranges allow it and copies otherwise.
pub fn copy_range_reflinks_or_copies(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let a = rig.create("A")?;
    let data = pattern(14, 32768);
    write_all(&a, 0, &data)?;
    a.fsync()?;
    let b = rig.create("B")?;
    ensure_eq!(b.copy_range(&a, 0, 32768, 0)?, 32768);
    b.fsync()?;
    for pos in (0..32768).step_by(4096) {
        ensure!(same_block(&a, pos, &b, pos)?, "aligned copy shares byte {pos}");
    }
    let c = rig.create("C")?;
    ensure_eq!(c.copy_range(&a, 100, 10000, 7)?, 10000);
    ensure_eq!(c.copy_range(&a, 32768, 10, 0)?, 0, "at the source's EOF");
    let got = read_all(&c)?;
    ensure!(got[..7] == [0u8; 7] && got[7..] == data[100..10100], "unaligned copy copied");
    c.fsync()?;
    ensure!(!same_block(&a, 0, &c, 0)? && !block_of(&c, 0)?.shared, "unaligned copy has its own blocks");
    ensure!(read_all(&b)? == data, "B");
    drop((a, b, c));
    rig.check()?;
    rig.finish()
}

/// COW on a full disk: a write to a shared range fails cleanly with ENOSPC (at the write or the
/// fsync), the original's data stays intact, fsck stays clean.
pub fn cow_on_full_disk_enospc(env: &TestEnv) -> TestResult {
    let dev = env.device("scratch0")?;
    let mut rig = FsRig::on(env.platform.clone(), dev, 4096, 8 << 20)?;
    let a = rig.create("A")?;
    let data = pattern(15, 1 << 20);
    write_all(&a, 0, &data)?;
    a.fsync()?;
    let b = rig.create("B")?;
    b.clone_range(&a, 0, 0, 0)?;
    // Fill the rest of the disk.
    let fill = rig.create("fill")?;
    let chunk = vec![0xEEu8; 256 << 10];
    let mut pos = 0u64;
    loop {
        match fill.write(pos, &chunk) {
            Ok(n) if n > 0 => pos += n as u64,
            Ok(_) => break,
            Err(Errno::ENOSPC) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let _ = fill.fsync();
    // COW of the whole shared file cannot fit.
    let r = b.write(0, &vec![b'N'; 1 << 20]).and_then(|_| b.fsync());
    ensure_eq!(r, Err(Errno::ENOSPC), "COW on a full disk");
    ensure!(read_all(&a)? == data, "the original is intact");
    drop((a, b, fill));
    rig.check()?;
    rig.remount()?;
    let a = rig.open("A", OpenFlags::RDONLY)?;
    ensure!(read_all(&a)? == data, "the original is intact after remount");
    drop(a);
    rig.finish()
}
