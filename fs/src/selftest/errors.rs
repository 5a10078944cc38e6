//! Bad input through the file API: invalid arguments (Linux's error codes), a full disk, device
//! errors (EIO on reads, writes and flushes), corrupt images refused at mount.

use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::rig::{pattern, read_all, write_all, FsRig};
use crate::block::{BlockDevice, FaultRule, OpMask, RamDisk};
use crate::frond::S_IFIFO;
use crate::vfs::{FallocFlags, FrondFs, MountOptions, OpenFlags, Whence};
use crate::Errno;

/// Invalid arguments get Linux's errors and change nothing.
pub fn invalid_arguments(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let fs = rig.fs().clone();
    let root = fs.root();
    let f = rig.create("f")?;
    write_all(&f, 0, &pattern(1, 10000))?;
    let ro = rig.open("f", OpenFlags::RDONLY)?;
    ensure_eq!(ro.write(0, b"x"), Err(Errno::EBADF), "write to a read-only open");
    ensure_eq!(ro.truncate(0), Err(Errno::EBADF));
    ensure_eq!(ro.fallocate(FallocFlags::empty(), 0, 10), Err(Errno::EBADF));
    let wo = rig.open("f", OpenFlags::WRONLY)?;
    ensure_eq!(wo.read(0, &mut [0u8; 4]), Err(Errno::EBADF), "read from a write-only open");
    ensure_eq!(wo.clone_range(&wo, 0, 4096, 8192), Err(Errno::EBADF), "clone source not readable");
    let d = fs.mkdir(root, b"d", 0o755)?;
    ensure_eq!(fs.open(d, OpenFlags::RDWR).err(), Some(Errno::EISDIR));
    let dro = fs.open(d, OpenFlags::RDONLY)?;
    ensure_eq!(dro.read(0, &mut [0u8; 4]), Err(Errno::EISDIR));
    ensure_eq!(f.clone_range(&dro, 0, 0, 0), Err(Errno::EISDIR));
    ensure_eq!(
        fs.open_at(root, b"f", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::EXCL, 0o644).err(),
        Some(Errno::EEXIST)
    );
    ensure_eq!(fs.open_at(root, b"nope", OpenFlags::RDWR, 0).err(), Some(Errno::ENOENT));
    let fifo = fs.create(root, b"fifo", S_IFIFO | 0o644)?;
    ensure_eq!(fs.open(fifo, OpenFlags::RDONLY).err(), Some(Errno::ENXIO));
    // fallocate argument checks.
    ensure_eq!(f.fallocate(FallocFlags::empty(), 0, 0), Err(Errno::EINVAL), "len 0");
    ensure_eq!(
        f.fallocate(FallocFlags::PUNCH_HOLE, 0, 10),
        Err(Errno::EOPNOTSUPP),
        "punch without KEEP_SIZE"
    );
    ensure_eq!(f.fallocate(FallocFlags::COLLAPSE_RANGE, 100, 4096), Err(Errno::EINVAL), "unaligned collapse");
    ensure_eq!(
        f.fallocate(FallocFlags::COLLAPSE_RANGE, 4096, 8192),
        Err(Errno::EINVAL),
        "collapse reaching EOF"
    );
    ensure_eq!(f.fallocate(FallocFlags::INSERT_RANGE, 12288, 4096), Err(Errno::EINVAL), "insert at EOF");
    ensure_eq!(
        f.fallocate(FallocFlags::COLLAPSE_RANGE | FallocFlags::KEEP_SIZE, 0, 4096),
        Err(Errno::EINVAL),
        "collapse with another flag"
    );
    ensure_eq!(
        f.fallocate(FallocFlags::ZERO_RANGE | FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 0, 10),
        Err(Errno::EOPNOTSUPP)
    );
    // Sizes.
    let max = fs.max_file_size();
    ensure_eq!(f.write(max, b"x"), Err(Errno::EFBIG), "write at the largest size");
    ensure_eq!(f.truncate(max + 1), Err(Errno::EFBIG));
    ensure_eq!(f.fallocate(FallocFlags::empty(), max - 10, 4096), Err(Errno::EFBIG));
    // Seek.
    ensure_eq!(f.seek(10000, Whence::Data), Err(Errno::ENXIO), "SEEK_DATA at EOF");
    ensure_eq!(f.seek(20000, Whence::Hole), Err(Errno::ENXIO), "SEEK_HOLE past EOF");
    // Direct I/O alignment.
    let dio = rig.open("f", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    ensure_eq!(dio.write(100, &[0u8; 512]), Err(Errno::EINVAL), "unaligned direct write");
    ensure_eq!(dio.read(0, &mut [0u8; 100]), Err(Errno::EINVAL), "unaligned direct read length");
    // Clone range rules and EXDEV.
    ensure_eq!(f.clone_range(&f, 0, 4096, 2048), Err(Errno::EINVAL));
    let other_dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(16 << 20, 512)?);
    let other = FsRig::on(env.platform.clone(), other_dev, 4096, 16 << 20)?;
    let g = other.create("g")?;
    write_all(&g, 0, &[7u8; 4096])?;
    ensure_eq!(f.clone_range(&g, 0, 4096, 0), Err(Errno::EXDEV), "clone across filesystems");
    ensure_eq!(f.copy_range(&g, 0, 4096, 0), Err(Errno::EXDEV));
    let ap = rig.open("f", OpenFlags::WRONLY | OpenFlags::APPEND)?;
    ensure_eq!(ap.clone_range(&f, 0, 4096, 0), Err(Errno::EBADF), "clone into an O_APPEND file");
    // Namespace.
    ensure_eq!(fs.rmdir(root, b"f"), Err(Errno::ENOTDIR));
    ensure_eq!(fs.unlink(root, b"d"), Err(Errno::EISDIR));
    fs.create(d, b"x", 0o644)?;
    ensure_eq!(fs.rmdir(root, b"d"), Err(Errno::ENOTEMPTY));
    ensure_eq!(fs.rename(root, b"d", d, b"sub"), Err(Errno::EINVAL), "a directory into itself");
    ensure_eq!(f.size(), 10000, "nothing changed the file");
    ensure!(read_all(&f)? == pattern(1, 10000), "nothing changed the data");
    drop((f, ro, wo, dro, dio, ap, g));
    other.finish()?;
    drop(fs);
    rig.finish()
}

/// A full disk: buffered writes fail with ENOSPC (never a later, silent loss), fsync'd data
/// survives, fsck stays clean, and space freed by unlink can be used again.
pub fn full_disk_enospc_is_clean(env: &TestEnv) -> TestResult {
    let dev = env.device("scratch0")?;
    let mut rig = FsRig::on(env.platform.clone(), dev, 4096, 8 << 20)?;
    let keep = rig.create("keep")?;
    let data = pattern(2, 100_000);
    write_all(&keep, 0, &data)?;
    keep.fsync()?;
    let fill = rig.create("fill")?;
    let chunk = vec![0x5Au8; 128 << 10];
    let mut pos = 0u64;
    let err = loop {
        match fill.write(pos, &chunk) {
            Ok(n) => pos += n as u64,
            Err(e) => break e,
        }
        ensure!(pos < 16 << 20, "an 8 MiB filesystem took 16 MiB");
    };
    ensure_eq!(err, Errno::ENOSPC);
    ensure_eq!(fill.size(), pos, "the size covers exactly what was written");
    fill.fsync()?;
    let filled = fill.size();
    drop((fill, keep));
    rig.check()?;
    rig.remount()?;
    let fill = rig.open("fill", OpenFlags::RDONLY)?;
    ensure_eq!(fill.size(), filled);
    ensure!(read_all(&fill)?.iter().all(|&b| b == 0x5A), "what was accepted is on disk");
    let keep = rig.open("keep", OpenFlags::RDONLY)?;
    ensure!(read_all(&keep)? == data, "fsync'd data intact");
    drop((fill, keep));
    rig.fs().unlink(rig.fs().root(), b"fill")?;
    let again = rig.create("again")?;
    write_all(&again, 0, &vec![1u8; 1 << 20])?;
    again.fsync()?;
    drop(again);
    rig.finish()
}

/// §11 T2 on frond: a writeback EIO is reported by fsync once per open file, later fsyncs
/// succeed; data fsync'd before the error is intact after remount.
pub fn write_eio_reported_once_per_opener(env: &TestEnv) -> TestResult {
    let (mut rig, fault) = FsRig::faulty(env)?;
    let f1 = rig.create("f")?;
    let old = pattern(3, 8192);
    write_all(&f1, 0, &old)?;
    f1.fsync()?;
    let f2 = rig.open("f", OpenFlags::RDWR)?;
    // The next write request fails: the data writeback (the journal commit after it succeeds).
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
    write_all(&f1, 65536, &[9u8; 8192])?;
    ensure_eq!(f1.fsync(), Err(Errno::EIO), "first opener sees the error");
    ensure_eq!(f1.fsync(), Ok(()), "once");
    ensure!(fault.remove_rule(rule), "the rule was there");
    ensure_eq!(f2.fsync(), Err(Errno::EIO), "second opener sees it too");
    ensure_eq!(f2.fsync(), Ok(()));
    let f3 = rig.open("f", OpenFlags::RDWR)?;
    ensure_eq!(f3.fsync(), Ok(()), "an opener after the error does not");
    drop((f1, f2, f3));
    rig.remount()?;
    let f = rig.open("f", OpenFlags::RDONLY)?;
    ensure!(read_all(&f)?[..8192] == old[..], "fsync'd data intact");
    drop(f);
    rig.finish()
}

/// EIO on reads is returned by read; EIO on flush is returned by fsync; nothing fsync'd is
/// lost.
pub fn read_and_flush_eio_returned(env: &TestEnv) -> TestResult {
    let (mut rig, fault) = FsRig::faulty(env)?;
    let f = rig.create("f")?;
    let data = pattern(4, 20000);
    write_all(&f, 0, &data)?;
    f.fsync()?;
    drop(f);
    rig.remount()?;
    let f = rig.open("f", OpenFlags::RDWR)?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::READ))?;
    ensure_eq!(f.read(0, &mut [0u8; 100]), Err(Errno::EIO), "read error returned");
    fault.remove_rule(rule);
    ensure!(read_all(&f)? == data, "reads again after the fault");
    write_all(&f, 0, b"new!")?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::FLUSH))?;
    ensure_eq!(f.fsync(), Err(Errno::EIO), "flush error returned by fsync");
    fault.remove_rule(rule);
    drop(f);
    // A failed journal commit shuts frond down (as XFS does): unmount reports it, the disk
    // keeps the last good commit.
    let r = rig.unmount();
    ensure!(
        r.is_ok() || r.as_ref().is_err_and(|e| e.0.contains("EIO")),
        "unmount after a failed commit: {:?}",
        r
    );
    rig.mount()?;
    let f = rig.open("f", OpenFlags::RDONLY)?;
    let got = read_all(&f)?;
    ensure!(got[4..] == data[4..], "fsync'd data intact");
    drop(f);
    rig.finish()
}

/// Corrupt and foreign images are refused at mount with a reason, never a panic.
pub fn corrupt_images_refused(env: &TestEnv) -> TestResult {
    let opts = MountOptions::new(4 << 20);
    let blank: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(8 << 20, 512)?);
    let e = FrondFs::mount(blank, env.platform.clone(), opts)
        .err()
        .ok_or_else(|| TestFailure("blank disk mounted".into()))?;
    ensure_eq!(e.errno, Errno::EUCLEAN, "blank disk: {}", e.reason);
    // A valid filesystem, then both superblocks damaged.
    let ram = Arc::new(RamDisk::new(8 << 20, 512)?);
    let dev: Arc<dyn BlockDevice> = ram.clone();
    let rig = FsRig::on(env.platform.clone(), dev.clone(), 4096, 8 << 20)?;
    rig.finish()?;
    let mut junk = vec![0xA5u8; 8192];
    crate::block::sync::write_at(&*dev, &env.platform, 0, &junk, crate::block::BioFlags::empty())?;
    let e = FrondFs::mount(dev.clone(), env.platform.clone(), opts)
        .err()
        .ok_or_else(|| TestFailure("damaged superblocks mounted".into()))?;
    ensure_eq!(e.errno, Errno::EUCLEAN, "damaged superblocks: {}", e.reason);
    // Damage only the root block area beyond the superblocks: still refused, no panic.
    junk.fill(0);
    let rig2 = FsRig::on(env.platform.clone(), dev.clone(), 4096, 8 << 20)?;
    rig2.finish()?;
    crate::block::sync::write_at(&*dev, &env.platform, 8192, &junk, crate::block::BioFlags::empty())?;
    match FrondFs::mount(dev, env.platform.clone(), opts) {
        Err(e) => ensure!(e.errno == Errno::EUCLEAN || e.errno == Errno::EIO, "damaged root: {}", e.reason),
        Ok(fs) => {
            // The damaged block was not one mount reads: the filesystem must still be usable or
            // fail calls cleanly.
            let _ = fs.statfs();
            fs.unmount().ok();
        }
    }
    Ok(())
}
