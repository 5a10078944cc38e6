//! O_DIRECT through the file API: the §5 scenarios, direct / buffered mixing and RWF_ATOMIC
//! rules (the visible semantics; what reaches the device is shown in `direct_path`).

use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::rig::{pattern, read_all, read_exact, write_all, FsRig};
use crate::vfs::{OpenFlags, ATOMIC_WRITE_MAX};
use crate::Errno;

/// §5 T1: empty file, direct write of 512 'X' at 1024: size 1536, [0, 1024) zero; truncate to
/// 4096: [1536, 4096) zero; durable without fsync of the data (the metadata after fsync).
pub fn direct_t1_sub_block_write_into_empty_file(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let f = rig.open("d", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
    ensure_eq!(f.write(1024, &[b'X'; 512])?, 512);
    ensure_eq!(f.size(), 1536);
    ensure_eq!(rig.fs().cache().dirty_bytes(), 0, "nothing left dirty by a direct write");
    let mut want = vec![0u8; 1536];
    want[1024..].fill(b'X');
    ensure!(read_exact(&f, 0, 1536)? == want, "direct read back");
    f.truncate(4096)?;
    want.resize(4096, 0);
    ensure!(read_exact(&f, 0, 4096)? == want, "truncate up zeroes the tail");
    f.fsync()?;
    drop(f);
    rig.remount_and_expect("d", &want)?;
    rig.finish()
}

/// §5 T2: buffered data not yet written is seen by a direct read; a direct write is seen by a
/// buffered read.
pub fn direct_t2_coherent_with_buffered(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let b = rig.create("m")?;
    write_all(&b, 0, &[b'B'; 4096])?;
    let d = rig.open("m", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    ensure!(read_exact(&d, 0, 4096)? == vec![b'B'; 4096], "direct read sees buffered data");
    ensure_eq!(d.write(0, &[b'C'; 4096])?, 4096);
    ensure!(read_exact(&b, 0, 4096)? == vec![b'C'; 4096], "buffered read sees direct data");
    drop((b, d));
    rig.finish()
}

/// §5 T3: misaligned direct I/O is EINVAL; a direct read of a hole returns zeros; at EOF 0.
pub fn direct_t3_alignment_holes_and_eof(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let f = rig.open("h", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
    ensure_eq!(f.write(100, &[1u8; 512]), Err(Errno::EINVAL));
    ensure_eq!(f.write(0, &[1u8; 100]), Err(Errno::EINVAL));
    f.truncate(65536)?;
    ensure!(read_exact(&f, 8192, 8192)? == vec![0u8; 8192], "hole reads zero");
    ensure_eq!(f.read(65536, &mut [0u8; 512])?, 0, "at EOF");
    ensure_eq!(f.size(), 65536);
    drop(f);
    rig.finish()
}

/// Direct and buffered writes mixed over one file, 1 KiB blocks: the file always reads as the
/// last writes left it, in the cache and on disk.
pub fn direct_buffered_mixing_1k_blocks(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 1024)?;
    let b = rig.create("x")?;
    let d = rig.open("x", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    let mut want = vec![0u8; 64 << 10];
    for i in 0..32u64 {
        let pos = (i * 7919) % 60000;
        if i % 2 == 0 {
            let pos = pos / 512 * 512;
            let data = pattern(i, 1536);
            ensure_eq!(d.write(pos, &data)?, 1536);
            want[pos as usize..pos as usize + 1536].copy_from_slice(&data);
        } else {
            let data = pattern(i, 777);
            write_all(&b, pos, &data)?;
            want[pos as usize..pos as usize + 777].copy_from_slice(&data);
        }
    }
    let size = b.size() as usize;
    want.truncate(size);
    ensure!(read_all(&b)? == want, "buffered view");
    ensure!(read_exact(&d, 0, size / 512 * 512)? == want[..size / 512 * 512], "direct view");
    drop((b, d));
    rig.remount_and_expect("x", &want)?;
    rig.finish()
}

/// RWF_ATOMIC rules (XFS's): O_DIRECT only, a power-of-two length from the filesystem block
/// size to `ATOMIC_WRITE_MAX`, the position aligned to the length; the data reads back, also
/// after dropping the caches.
pub fn atomic_write_rules(env: &TestEnv) -> TestResult {
    let rig = FsRig::new(env, 4096)?;
    let b = rig.create("a")?;
    ensure_eq!(b.write_atomic(0, &[1u8; 4096]), Err(Errno::EINVAL), "needs O_DIRECT");
    let f = rig.open("a", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    ensure_eq!(f.write_atomic(0, &[1u8; 12288]), Err(Errno::EINVAL), "not a power of two");
    ensure_eq!(f.write_atomic(4096, &[1u8; 8192]), Err(Errno::EINVAL), "misaligned");
    let too_big = vec![1u8; 2 * ATOMIC_WRITE_MAX as usize];
    ensure_eq!(f.write_atomic(0, &too_big), Err(Errno::EINVAL), "larger than the unit max");
    ensure_eq!(f.write_atomic(0, &[1u8; 1024]), Err(Errno::EINVAL), "below the block size");
    ensure_eq!(f.size(), 0, "nothing written");
    ensure_eq!(f.write_atomic(8192, &pattern(1, 4096))?, 4096);
    ensure_eq!(f.write_atomic(16384, &pattern(2, 16384))?, 16384);
    rig.fs().drop_caches()?;
    ensure_eq!(rig.fs().cache().cached_bytes(), 0, "caches dropped");
    let got = read_all(&b)?;
    ensure_eq!(got.len(), 32768, "size");
    ensure!(got[8192..12288] == pattern(1, 4096)[..] && got[16384..] == pattern(2, 16384)[..], "data");
    ensure!(got[..8192].iter().chain(&got[12288..16384]).all(|&x| x == 0), "zeros around");
    drop((b, f));
    rig.finish()
}

/// An untorn write of several blocks goes out of place: into a cloned range it leaves the
/// clone's blocks alone, over cached dirty data it wins, past EOF it extends the size, and the
/// old blocks are freed (fsck clean after a remount).
pub fn atomic_write_multi_block(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let b = rig.create("m")?;
    let old = pattern(3, 65536);
    write_all(&b, 0, &old)?;
    b.fsync()?;
    let c = rig.create("c")?;
    c.clone_range(&b, 0, 0, 0)?;
    // Block 9 copied on write (private to "m"), then block 12 dirty in the cache.
    write_all(&b, 40000, &[9u8; 100])?;
    b.fsync()?;
    let d = rig.open("m", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    let free0 = rig.fs().statfs()?.free;
    write_all(&b, 50000, &[7u8; 100])?;
    ensure_eq!(d.write_atomic(32768, &pattern(4, 32768))?, 32768);
    ensure_eq!(d.write_atomic(131072, &pattern(5, 65536))?, 65536);
    ensure_eq!(d.size(), 196608, "extended to the end of the second write");
    let mut want = old.clone();
    want[32768..].copy_from_slice(&pattern(4, 32768));
    want.resize(131072, 0);
    want.extend_from_slice(&pattern(5, 65536));
    ensure!(read_all(&b)? == want, "buffered view");
    ensure!(read_exact(&d, 0, want.len())? == want, "direct view");
    ensure!(read_all(&c)? == old, "the clone keeps the old blocks");
    // Block 12's writeback takes a block; the first write takes 8 and frees the private
    // blocks 9 and 12 (the shared ones stay with the clone); the second takes 16.
    ensure_eq!(free0 - rig.fs().statfs()?.free, 1 + 8 - 2 + 16, "blocks taken");
    drop((b, c, d));
    rig.remount()?;
    let f = rig.open("m", OpenFlags::RDONLY)?;
    ensure!(read_all(&f)? == want, "on disk");
    drop(f);
    rig.finish()
}
