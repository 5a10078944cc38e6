//! Buffered I/O through the real filesystem: the reference scenarios of §2, §3, §4, §7, §8 and
//! §11, multi-file workloads, remount and verify.

use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::rig::{first_diff, pattern, read_all, read_exact, write_all, FsRig, BLOCK_SIZES};
use crate::vfs::{FallocFlags, OpenFlags, Whence};

/// Write, read back, fsync, remount, read back, for every block size; sizes and contents exact.
pub fn write_read_remount_every_block_size(env: &TestEnv) -> TestResult {
    for bs in BLOCK_SIZES {
        let mut rig = FsRig::new(env, bs)?;
        let data = pattern(bs, 100_000);
        let f = rig.create("a")?;
        write_all(&f, 3000, &data)?;
        ensure_eq!(f.size(), 103_000);
        ensure!(read_exact(&f, 0, 3000)? == vec![0u8; 3000], "bs {bs}: gap before the write reads zero");
        ensure!(read_exact(&f, 3000, data.len())? == data, "bs {bs}: data reads back from the cache");
        f.fsync()?;
        drop(f);
        rig.remount()?;
        let f = rig.open("a", OpenFlags::RDONLY)?;
        ensure_eq!(f.size(), 103_000);
        let back = read_exact(&f, 3000, data.len())?;
        ensure!(back == data, "bs {bs}: after remount: {}", first_diff(&back, &data));
        ensure_eq!(f.read(103_000, &mut [0u8; 10])?, 0, "read at EOF");
        drop(f);
        rig.finish()?;
    }
    Ok(())
}

/// §2 T1 through frond: a small write into a written block reads it once and merges.
pub fn buffered_t1_small_write_into_written_block(env: &TestEnv) -> TestResult {
    for bs in [1024, 4096] {
        let mut rig = FsRig::new(env, bs)?;
        let f = rig.create("a")?;
        write_all(&f, 0, &[b'A'; 4096])?;
        f.fsync()?;
        drop(f);
        rig.remount()?;
        let f = rig.create("a")?;
        let reads = rig.fs().ctx().stats().read_bios;
        write_all(&f, 100, &[b'B'; 10])?;
        ensure_eq!(rig.fs().ctx().stats().read_bios - reads, 1, "bs {bs}: one read of the written block");
        let mut want = vec![b'A'; 4096];
        want[100..110].fill(b'B');
        ensure!(read_all(&f)? == want, "bs {bs}: merged in the cache");
        f.fsync()?;
        drop(f);
        rig.remount()?;
        let f = rig.open("a", OpenFlags::RDONLY)?;
        ensure!(read_all(&f)? == want, "bs {bs}: merged on disk");
        drop(f);
        rig.finish()?;
    }
    Ok(())
}

/// §2 T4: write 4000, truncate 100, write 1 byte at 6000: [100, 6000) reads zero, also after
/// remount.
pub fn buffered_t4_truncate_then_extend_zeroes_gap(env: &TestEnv) -> TestResult {
    for bs in BLOCK_SIZES {
        let mut rig = FsRig::new(env, bs)?;
        let f = rig.create("a")?;
        write_all(&f, 0, &[b'A'; 4000])?;
        f.fsync()?;
        f.truncate(100)?;
        write_all(&f, 6000, b"x")?;
        let mut want = vec![0u8; 6001];
        want[..100].fill(b'A');
        want[6000] = b'x';
        ensure!(read_all(&f)? == want, "bs {bs}: cache: {}", first_diff(&read_all(&f)?, &want));
        f.fsync()?;
        drop(f);
        rig.remount()?;
        let f = rig.open("a", OpenFlags::RDONLY)?;
        let back = read_all(&f)?;
        ensure!(back == want, "bs {bs}: disk: {}", first_diff(&back, &want));
        drop(f);
        rig.finish()?;
    }
    Ok(())
}

/// §3 T1: one byte at 1 MiB: zeros before it without device reads; SEEK_DATA / SEEK_HOLE.
pub fn buffered_read_t1_sparse_file(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let f = rig.create("s")?;
    write_all(&f, 1 << 20, b"z")?;
    f.fsync()?;
    drop(f);
    rig.remount()?;
    let f = rig.open("s", OpenFlags::RDONLY)?;
    let reads = rig.fs().ctx().stats().read_bios;
    let back = read_exact(&f, 0, (1 << 20) + 1)?;
    ensure!(back[..1 << 20].iter().all(|&b| b == 0) && back[1 << 20] == b'z', "zeros then the byte");
    ensure_eq!(rig.fs().ctx().stats().read_bios - reads, 1, "only the data block is read");
    ensure_eq!(f.seek(0, Whence::Data)?, 1 << 20);
    ensure_eq!(f.seek(0, Whence::Hole)?, 0);
    ensure_eq!(f.seek(1 << 20, Whence::Hole)?, (1 << 20) + 1, "EOF is a hole");
    ensure_eq!(f.seek((1 << 20) + 1, Whence::Data), Err(crate::Errno::ENXIO));
    drop(f);
    rig.finish()
}

/// §7: a small file lives inline (no blocks), survives remount, moves to blocks when it grows.
pub fn inline_small_file_and_growth(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let f = rig.create("small")?;
    let data = pattern(7, 60);
    write_all(&f, 0, &data)?;
    ensure_eq!(f.stat()?.blocks, 0, "inline: no blocks");
    ensure_eq!(rig.fs().cache().dirty_bytes(), 0, "inline writes dirty no folio");
    write_all(&f, 20, b"0123456789")?;
    let mut want = data.clone();
    want[20..30].copy_from_slice(b"0123456789");
    f.fsync()?;
    drop(f);
    rig.remount()?;
    let f = rig.create("small")?;
    let reads = rig.fs().ctx().stats().read_bios;
    ensure!(read_all(&f)? == want, "inline data after remount");
    ensure_eq!(rig.fs().ctx().stats().read_bios - reads, 0, "inline read needs no block I/O");
    let more = pattern(8, 5000);
    write_all(&f, 60, &more)?;
    want.extend_from_slice(&more);
    ensure!(read_all(&f)? == want, "grown file in the cache");
    f.fsync()?;
    ensure!(f.stat()?.blocks > 0, "moved to blocks");
    drop(f);
    rig.remount()?;
    let f = rig.open("small", OpenFlags::RDONLY)?;
    ensure!(read_all(&f)? == want, "grown file on disk");
    drop(f);
    rig.finish()
}

/// §8 T1: 'A' * 8192, truncate 5000, truncate 8192: [5000, 8192) zero, cached and on disk.
pub fn truncate_t1_down_then_up(env: &TestEnv) -> TestResult {
    for bs in BLOCK_SIZES {
        let mut rig = FsRig::new(env, bs)?;
        let f = rig.create("t")?;
        write_all(&f, 0, &[b'A'; 8192])?;
        f.truncate(5000)?;
        f.truncate(8192)?;
        let mut want = vec![b'A'; 8192];
        want[5000..].fill(0);
        ensure!(read_all(&f)? == want, "bs {bs}: cached");
        f.fsync()?;
        drop(f);
        rig.remount()?;
        let f = rig.open("t", OpenFlags::RDONLY)?;
        ensure!(read_all(&f)? == want, "bs {bs}: on disk");
        drop(f);
        rig.finish()?;
    }
    Ok(())
}

/// §8 T2: preallocated block, unsynced 'A's, zero range [100, 200): zeros there, 'A' elsewhere,
/// before and after sync.
pub fn zero_range_t2_over_dirty_unwritten(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let f = rig.create("z")?;
    f.fallocate(FallocFlags::empty(), 0, 4096)?;
    ensure_eq!(f.size(), 4096);
    write_all(&f, 0, &[b'A'; 4096])?;
    f.fallocate(FallocFlags::ZERO_RANGE | FallocFlags::KEEP_SIZE, 100, 100)?;
    let mut want = vec![b'A'; 4096];
    want[100..200].fill(0);
    ensure!(read_all(&f)? == want, "before sync");
    f.fsync()?;
    drop(f);
    rig.remount()?;
    let f = rig.open("z", OpenFlags::RDONLY)?;
    ensure!(read_all(&f)? == want, "after sync and remount");
    drop(f);
    rig.finish()
}

/// §8 T3: punch [1000, 9000) of 16 KiB of 'A': zeros there, size kept, block 1 freed.
pub fn punch_t3_frees_whole_blocks(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let f = rig.create("p")?;
    write_all(&f, 0, &[b'A'; 16384])?;
    f.fsync()?;
    let blocks = f.stat()?.blocks;
    f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 1000, 8000)?;
    let mut want = vec![b'A'; 16384];
    want[1000..9000].fill(0);
    ensure!(read_all(&f)? == want, "cached");
    ensure_eq!(f.size(), 16384);
    ensure_eq!(f.stat()?.blocks, blocks - 8, "block 1 (4 KiB = 8 sectors) freed");
    ensure_eq!(f.seek(0, Whence::Hole)?, 4096);
    ensure_eq!(f.seek(4096, Whence::Data)?, 8192);
    f.fsync()?;
    drop(f);
    rig.remount()?;
    let f = rig.open("p", OpenFlags::RDONLY)?;
    ensure!(read_all(&f)? == want, "on disk");
    drop(f);
    rig.finish()
}

/// Collapse and insert range shift the data by whole blocks, cached and on disk.
pub fn collapse_and_insert_range(env: &TestEnv) -> TestResult {
    for bs in [1024, 4096] {
        let mut rig = FsRig::new(env, bs)?;
        let f = rig.create("c")?;
        let data = pattern(3, 8 * bs as usize);
        write_all(&f, 0, &data)?;
        f.fallocate(FallocFlags::COLLAPSE_RANGE, bs, 2 * bs)?;
        let mut want: Vec<u8> = [&data[..bs as usize], &data[3 * bs as usize..]].concat();
        ensure_eq!(f.size(), 6 * bs);
        ensure!(read_all(&f)? == want, "bs {bs}: after collapse");
        f.fallocate(FallocFlags::INSERT_RANGE, 2 * bs, bs)?;
        want.splice(2 * bs as usize..2 * bs as usize, vec![0u8; bs as usize]);
        ensure_eq!(f.size(), 7 * bs);
        ensure!(read_all(&f)? == want, "bs {bs}: after insert");
        f.fsync()?;
        drop(f);
        rig.remount()?;
        let f = rig.open("c", OpenFlags::RDONLY)?;
        let back = read_all(&f)?;
        ensure!(back == want, "bs {bs}: on disk: {}", first_diff(&back, &want));
        drop(f);
        rig.finish()?;
    }
    Ok(())
}

/// O_APPEND writes land at EOF; O_SYNC and O_DSYNC writes are durable on return.
pub fn append_and_sync_flags(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let f = rig.open("log", OpenFlags::WRONLY | OpenFlags::CREAT | OpenFlags::APPEND)?;
    write_all(&f, 0, b"first ")?;
    write_all(&f, 0, b"second")?;
    ensure_eq!(f.size(), 12);
    drop(f);
    let s = rig.open("sync", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::SYNC)?;
    write_all(&s, 0, &pattern(1, 10000))?;
    let d = rig.open("dsync", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DSYNC)?;
    write_all(&d, 5000, &pattern(2, 3000))?;
    ensure_eq!(rig.fs().cache().dirty_bytes(), 0, "synchronous writes leave no dirty cache");
    drop((s, d));
    rig.remount()?;
    let f = rig.open("log", OpenFlags::RDONLY)?;
    ensure!(read_all(&f)? == b"first second", "appended");
    let s = rig.open("sync", OpenFlags::RDONLY)?;
    ensure!(read_all(&s)? == pattern(1, 10000), "O_SYNC data");
    let d = rig.open("dsync", OpenFlags::RDONLY)?;
    ensure!(read_exact(&d, 5000, 3000)? == pattern(2, 3000), "O_DSYNC data");
    drop((f, s, d));
    rig.finish()
}

/// §11 T3 and the fsync contract at the device: an O_DSYNC overwrite of an allocated block is
/// one FUA write and nothing else; fsync after new data writes the data, then one commit with
/// PREFLUSH + FUA and no separate flush; fsync with nothing to do is one flush.
pub fn fsync_and_odsync_device_io(env: &TestEnv) -> TestResult {
    let (rig, trace) = FsRig::traced(env, 4096)?;
    let f = rig.create("s")?;
    write_all(&f, 0, &[1u8; 8192])?;
    f.fsync()?;
    trace.clear();
    let d = rig.open("s", OpenFlags::RDWR | OpenFlags::DSYNC)?;
    write_all(&d, 4096, &[2u8; 4096])?;
    let c = trace.counts();
    ensure_eq!(
        (c.writes, c.fua_writes, c.flushes, c.preflush_writes),
        (1, 1, 0, 0),
        "O_DSYNC overwrite: {c:?}"
    );
    trace.clear();
    write_all(&f, 8192, &[3u8; 8192])?;
    f.fdatasync()?;
    let c = trace.counts();
    ensure_eq!(c.flushes, 0, "the commit's PREFLUSH orders the data: {c:?}");
    ensure_eq!(c.preflush_writes, 1, "one commit: {c:?}");
    ensure!(c.fua_writes >= 1 && c.write_bytes >= 8192 + 4096, "data plus the commit: {c:?}");
    trace.clear();
    f.fdatasync()?;
    let c = trace.counts();
    ensure_eq!((c.writes, c.flushes), (0, 1), "nothing to write or commit: one flush: {c:?}");
    drop((f, d));
    rig.finish()
}
