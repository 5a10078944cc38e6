//! O_DIRECT through frond shown at the device: the exact bios of a direct write and read (no
//! cache folios), sub-block zeroing, unwritten blocks converted only at completion, COW of a
//! reflinked range, the size at completion, I/O errors, and the buffered continuation of inline
//! data and delalloc.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::rig::{
    block_of, pattern, read_all, read_direct, same_block, write_all, write_direct, FsRig, BLOCK_SIZES,
};
use crate::block::sync::read_at;
use crate::block::{BioOp, FaultRule, OpMask};
use crate::frond::{Fork, MapKind};
use crate::iomap::selftest::{DmaRule, PickyPlatform};
use crate::iomap::testfs::TraceOp;
use crate::platform::PAGE_SIZE;
use crate::vfs::{File, OpenFlags};
use crate::Errno;

/// The device byte ranges `[pos, pos + len)` of `f` maps to (frond's data fork, one entry per
/// mapping), as a direct I/O over it must address them.
fn disk_ranges(f: &File, pos: u64, len: u64) -> Result<Vec<(u64, u64)>, TestFailure> {
    let bs = f.fs().block_size();
    let mut out = Vec::new();
    let (mut fb, end) = (pos / bs, (pos + len).div_ceil(bs));
    while fb < end {
        let m = f.fs().frond().map(f.ino(), fb, end - fb, Fork::Data)?;
        ensure!(m.kind == MapKind::Mapped, "block {fb} is {:?}", m.kind);
        out.push((m.disk_block * bs, m.len * bs));
        fb += m.len;
    }
    Ok(out)
}

/// The `(offset, len)` of the bios of one op in a trace.
fn ranges_of(ops: &[TraceOp], op: BioOp) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ops.iter().filter(|t| t.op == op).map(|t| (t.offset, t.len)).collect();
    v.sort_unstable();
    v
}

/// A 1 MiB aligned direct write into allocated blocks is the data writes and nothing else (one
/// bio per extent, no read, flush or FUA), a direct read the data reads; the file's cache stays
/// empty throughout. An O_DSYNC direct overwrite is one FUA write.
pub fn direct_io_exact_device_io(env: &TestEnv) -> TestResult {
    let (rig, trace) = FsRig::traced(env, 4096)?;
    let f = rig.create("big")?;
    write_all(&f, 0, &pattern(1, 1 << 20))?;
    f.fsync()?;
    rig.fs().drop_caches()?;
    let d = rig.open("big", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    let mapping = d.inode().file().mapping().clone();
    ensure_eq!(mapping.nr_pages(), 0, "caches dropped");
    let extents = disk_ranges(&d, 0, 1 << 20)?;
    let fallbacks = rig.fs().ctx.stats().dio_fallbacks;
    trace.clear();
    let data = pattern(2, 1 << 20);
    write_direct(&d, 0, &data)?;
    let ops = trace.take();
    let c = crate::iomap::testfs::TraceCounts::of(&ops);
    ensure_eq!((c.reads, c.flushes, c.fua_writes, c.preflush_writes), (0, 0, 0, 0), "direct write: {c:?}");
    ensure_eq!(ranges_of(&ops, BioOp::Write), extents, "the data writes, one per extent, nothing else");
    ensure_eq!(mapping.nr_pages(), 0, "a direct write creates no folios");
    ensure_eq!(disk_ranges(&d, 0, 1 << 20)?, extents, "an overwrite moves no block");
    let got = read_direct(&d, 0, 1 << 20)?;
    let ops = trace.take();
    ensure!(got == data, "direct read back");
    ensure_eq!(ranges_of(&ops, BioOp::Read), extents, "the data reads, one per extent");
    ensure_eq!(ops.len(), extents.len(), "nothing but the reads: {ops:?}");
    ensure_eq!(mapping.nr_pages(), 0, "a direct read creates no folios");
    ensure_eq!(rig.fs().ctx.stats().dio_fallbacks, fallbacks, "nothing went buffered");
    let s = rig.open("big", OpenFlags::RDWR | OpenFlags::DIRECT | OpenFlags::DSYNC)?;
    write_direct(&s, 8192, &[7u8; 4096])?;
    let c = trace.counts();
    ensure_eq!((c.writes, c.fua_writes, c.flushes, c.preflush_writes), (1, 1, 0, 0), "O_DSYNC: {c:?}");
    drop((f, d, s));
    rig.fs().drop_caches()?;
    let f = rig.open("big", OpenFlags::RDONLY)?;
    let mut want = data;
    want[8192..12288].fill(7);
    ensure!(read_all(&f)? == want, "buffered view after dropping caches");
    drop(f);
    rig.finish()
}

/// Sub-block direct writes: into a hole inside the file, the new block's edges are zeroed on
/// the device (the block is written whole: zeros, data, zeros, even over stale bytes of a
/// freed file); into a written block, only the data is written (the edges are kept).
pub fn direct_sub_block_zeroing(env: &TestEnv) -> TestResult {
    let (rig, trace) = FsRig::traced(env, 4096)?;
    // Stale bytes on the free blocks.
    let stale = rig.create("stale")?;
    write_all(&stale, 0, &[0x5E; 1 << 20])?;
    stale.fsync()?;
    drop(stale);
    rig.fs().unlink(rig.fs().root(), b"stale")?;
    rig.fs().sync()?;
    let f = rig.open("d", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
    f.truncate(16384)?;
    trace.clear();
    write_direct(&f, 4096 + 1024, &[b'X'; 512])?;
    let c = trace.counts();
    ensure_eq!((c.reads, c.write_bytes), (0, 4096), "the whole new block written: {c:?}");
    let m = block_of(&f, 4096)?;
    ensure_eq!(m.kind, MapKind::Mapped, "converted at completion");
    let mut want = vec![0u8; 4096];
    want[1024..1536].fill(b'X');
    let mut on_disk = vec![0u8; 4096];
    read_at(&*rig.dev, &rig.platform, m.disk_block * 4096, &mut on_disk)?;
    ensure!(on_disk == want, "on the device: {}", super::rig::first_diff(&on_disk, &want));
    trace.clear();
    write_direct(&f, 4096 + 2048, &[b'Y'; 512])?;
    let c = trace.counts();
    ensure_eq!((c.writes, c.write_bytes, c.reads), (1, 512, 0), "overwrite: the data only: {c:?}");
    want[2048..2560].fill(b'Y');
    let mut all = vec![0u8; 16384];
    all[4096..8192].copy_from_slice(&want);
    ensure!(read_direct(&f, 0, 16384)? == all, "direct view");
    drop(f);
    let b = rig.open("d", OpenFlags::RDONLY)?;
    ensure!(read_all(&b)? == all, "buffered view");
    drop(b);
    rig.finish()
}

/// A direct write into a hole allocates UNWRITTEN blocks that become written only when the
/// data completed: after a failed write the blocks are still unwritten (zeros), the size is
/// unchanged; the same write succeeding converts them. Extending writes raise the size
/// (in-core and on-disk) at completion.
pub fn direct_hole_unwritten_until_completion(env: &TestEnv) -> TestResult {
    let (mut rig, fault) = FsRig::faulty(env)?;
    let f = rig.open("h", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
    f.truncate(65536)?;
    f.fsync()?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
    ensure_eq!(f.write(8192, super::rig::DioBuf::of(&[1u8; 8192]).as_slice()), Err(Errno::EIO));
    fault.remove_rule(rule);
    ensure_eq!(block_of(&f, 8192)?.kind, MapKind::Unwritten, "allocated, not converted after the error");
    ensure!(read_direct(&f, 8192, 8192)? == [0u8; 8192], "reads zeros");
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
    ensure_eq!(f.write(65536, super::rig::DioBuf::of(&[2u8; 4096]).as_slice()), Err(Errno::EIO));
    fault.remove_rule(rule);
    ensure_eq!((f.size(), f.inode().file().disk_size()), (65536, 65536), "a failed extending write");
    write_direct(&f, 8192, &[3u8; 8192])?;
    ensure_eq!(block_of(&f, 8192)?.kind, MapKind::Mapped, "converted at completion");
    write_direct(&f, 65536, &[4u8; 4096])?;
    ensure_eq!((f.size(), f.inode().file().disk_size()), (69632, 69632), "size at completion");
    drop(f);
    let mut want = vec![0u8; 69632];
    want[8192..16384].fill(3);
    want[65536..].fill(4);
    rig.remount_and_expect("h", &want)?;
    rig.finish()
}

/// Extending direct writes at every block size: at EOF, past EOF (the gap reads as zeros) and
/// sub-block; the size is the end of the write as soon as it returns, on disk too.
pub fn direct_extending_writes_size_at_completion(env: &TestEnv) -> TestResult {
    for bs in BLOCK_SIZES {
        let mut rig = FsRig::new(env, bs)?;
        let f = rig.open("e", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
        let mut want: Vec<u8> = Vec::new();
        // (gap after EOF, length, byte): at EOF, again, past EOF sub-block, past EOF.
        let steps: [(u64, usize, u8); 4] =
            [(0, 8192, 1), (0, 4096, 2), (bs + 512, 1024, 3), (2 * bs, 512, 4)];
        for (gap, len, byte) in steps {
            let pos = want.len() as u64 + gap;
            write_direct(&f, pos, &vec![byte; len])?;
            want.resize(pos as usize, 0);
            want.extend_from_slice(&vec![byte; len]);
            let end = pos + len as u64;
            let sizes = (f.size(), f.inode().file().disk_size(), f.stat()?.size);
            ensure_eq!(sizes, (end, end, end), "bs {bs}: sizes after writing [{pos}, {end})");
        }
        ensure!(read_direct(&f, 0, want.len())? == want, "bs {bs}: direct view");
        drop(f);
        rig.remount_and_expect("e", &want)?;
        rig.finish()?;
    }
    Ok(())
}

/// A direct write into a reflinked range writes staging blocks and remaps them at completion:
/// the source keeps its data and blocks, only the written blocks stop being shared (a sub-block
/// write reads the rest of its block from the shared one). An I/O error cancels the staging:
/// the clone still shares the old block, no block leaks.
pub fn direct_cow_write_keeps_clone(env: &TestEnv) -> TestResult {
    let (mut rig, fault) = FsRig::faulty(env)?;
    let a = rig.create("A")?;
    let src = pattern(1, 65536);
    write_all(&a, 0, &src)?;
    a.fsync()?;
    let b = rig.create("B")?;
    b.clone_range(&a, 0, 0, 0)?;
    b.fsync()?;
    let d = rig.open("B", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    write_direct(&d, 4096, &[b'Z'; 4096])?;
    write_direct(&d, 8192 + 1024, &[b'Y'; 512])?;
    let mut want = src.clone();
    want[4096..8192].fill(b'Z');
    want[9216..9728].fill(b'Y');
    ensure!(read_all(&a)? == src, "the source is untouched");
    ensure!(read_all(&b)? == want, "the clone has the writes");
    ensure!(read_direct(&d, 0, 65536)? == want, "direct view of the clone");
    ensure!(same_block(&a, 0, &b, 0)? && same_block(&a, 12288, &b, 12288)?, "the rest stays shared");
    ensure!(
        !same_block(&a, 4096, &b, 4096)? && !same_block(&a, 8192, &b, 8192)?,
        "written blocks are private"
    );
    let free = rig.free_blocks()?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
    ensure_eq!(d.write(16384, super::rig::DioBuf::of(&[b'E'; 4096]).as_slice()), Err(Errno::EIO));
    fault.remove_rule(rule);
    ensure!(same_block(&a, 16384, &b, 16384)?, "the failed COW write left the block shared");
    let cow = rig.fs().frond().map(b.ino(), 4, 1, Fork::Cow)?;
    ensure_eq!(cow.kind, MapKind::Hole, "the staging was cancelled");
    ensure_eq!(rig.free_blocks()?, free, "no block leaked");
    ensure!(read_all(&b)? == want, "the clone's old data is intact");
    drop((a, b, d));
    rig.remount()?;
    let (a, b) = (rig.open("A", OpenFlags::RDONLY)?, rig.open("B", OpenFlags::RDONLY)?);
    ensure!(read_all(&a)? == src && read_all(&b)? == want, "after remount");
    drop((a, b));
    rig.finish()
}

/// Inline data is not for direct I/O: the write continues buffered (one fallback), is on disk
/// when it returns and moves the data to a block. A delalloc reservation without cached data
/// is allocated by a direct write (no fallback) and read around by a direct read (continues
/// buffered: zeros).
pub fn direct_over_inline_and_delalloc(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let b = rig.create("i")?;
    write_all(&b, 0, &pattern(7, 300))?;
    ensure_eq!(block_of(&b, 0)?.kind, MapKind::Inline, "a small file is inline");
    let d = rig.open("i", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    let mut got = read_direct(&d, 0, 512);
    ensure!(got.is_err(), "a direct read of 512 bytes of a 300-byte file is short");
    let mut buf = super::rig::DioBuf::zeroed(512);
    ensure_eq!(d.read(0, buf.as_mut_slice())?, 300, "inline data read directly");
    ensure!(buf.as_slice()[..300] == pattern(7, 300)[..], "inline bytes");
    let stats = || rig.fs().ctx.stats().dio_fallbacks;
    let before = stats();
    write_direct(&d, 0, &[b'D'; 512])?;
    ensure_eq!(stats(), before + 1, "inline: one buffered continuation");
    ensure_eq!(rig.fs().cache().dirty_bytes(), 0, "written back before returning");
    ensure_eq!(block_of(&b, 0)?.kind, MapKind::Mapped, "moved to a block");
    let mut want = vec![b'D'; 512];
    got = read_direct(&d, 0, 512);
    ensure!(got? == want, "direct view of the former inline file");
    d.truncate(65536)?;
    want.resize(65536, 0);
    // An orphan reservation (no cached data over it), as a short write can leave.
    let (ino, ops) = (d.ino(), &d.inode().ops);
    ops.mutate(|fr| fr.reserve_delalloc(ino, 4, 4, Fork::Data).map(|_| ()))?;
    ensure_eq!(block_of(&d, 4 * 4096)?.kind, MapKind::Delalloc);
    let before = stats();
    ensure!(read_direct(&d, 4 * 4096, 8192)? == [0u8; 8192], "a reservation reads as zeros");
    ensure_eq!(stats(), before + 1, "the read continued buffered");
    let before = stats();
    write_direct(&d, 6 * 4096, &[b'R'; 8192])?;
    ensure_eq!(stats(), before, "the write allocated the reservation (no fallback)");
    ensure_eq!(block_of(&d, 6 * 4096)?.kind, MapKind::Mapped);
    want[6 * 4096..8 * 4096].fill(b'R');
    ops.mutate(|fr| fr.punch_delalloc(ino, 4, 2, Fork::Data))?;
    ensure!(read_all(&b)? == want, "buffered view");
    drop((b, d));
    rig.remount_and_expect("i", &want)?;
    rig.finish()
}

/// Direct and buffered I/O on one file see each other: a direct read sees dirty cache, a
/// direct write replaces clean and dirty cache over its range, a buffered read after it sees
/// the new bytes and the dirty bytes beside them.
pub fn direct_buffered_coherence(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let b = rig.create("c")?;
    let d = rig.open("c", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    write_all(&b, 0, &[b'B'; 16384])?;
    ensure_dirty(&rig, 16384)?;
    let mut want = vec![b'B'; 16384];
    ensure!(read_direct(&d, 0, 16384)? == want, "direct read sees dirty cache");
    write_all(&b, 0, &[b'b'; 100])?;
    write_direct(&d, 4096, &[b'D'; 4096])?;
    want[..100].fill(b'b');
    want[4096..8192].fill(b'D');
    ensure!(read_all(&b)? == want, "buffered read sees the direct write and the dirty bytes");
    // Clean cache over the range (just read) is replaced too.
    write_direct(&d, 8192, &[b'E'; 4096])?;
    want[8192..12288].fill(b'E');
    ensure!(read_all(&b)? == want, "no stale clean cache");
    ensure!(read_direct(&d, 0, 16384)? == want, "direct view");
    drop((b, d));
    rig.remount_and_expect("c", &want)?;
    rig.finish()
}

/// Fails unless at least `bytes` are dirty in the cache (the scenario needs dirty cache).
fn ensure_dirty(rig: &FsRig, bytes: u64) -> TestResult {
    let dirty = rig.fs().cache().dirty_bytes();
    if dirty < bytes {
        return Err(TestFailure(format!("expected {bytes} dirty bytes, {dirty} are")));
    }
    Ok(())
}

/// An untorn write from memory the device cannot reach in one piece (a block straddling two
/// pages at a sector-aligned offset, on a platform that DMA-maps single pages only) is copied
/// into one DMA buffer first: one write bio of one segment (the engine alone would send two
/// page segments), and the data is there after a remount.
pub fn atomic_write_from_memory_split_across_pages_is_one_segment(env: &TestEnv) -> TestResult {
    let picky = PickyPlatform::arc(env.platform.clone(), DmaRule::SinglePages);
    let (mut rig, trace) = FsRig::traced_with(env, 4096, picky)?;
    let f = rig.create("atomic")?;
    write_all(&f, 0, &pattern(1, 16384))?;
    f.fsync()?;
    let d = rig.open("atomic", OpenFlags::RDWR | OpenFlags::DIRECT)?;
    let mut backing = vec![0u8; 3 * PAGE_SIZE];
    let skip = (PAGE_SIZE - backing.as_ptr() as usize % PAGE_SIZE) + 2048;
    let buf = &mut backing[skip..skip + 4096];
    buf.copy_from_slice(&pattern(2, 4096));
    ensure!(rig.platform.dma_address(buf.as_ptr(), buf.len()).is_none(), "the buffer straddles two pages");
    trace.clear();
    ensure_eq!(d.write_atomic(8192, buf)?, 4096);
    let writes: Vec<TraceOp> = trace.take().into_iter().filter(|t| t.op == BioOp::Write).collect();
    ensure_eq!(writes.len(), 1, "one write bio: {writes:?}");
    ensure_eq!((writes[0].len, writes[0].segments), (4096, 1), "one block in one segment");
    let mut want = pattern(1, 16384);
    want[8192..12288].copy_from_slice(&pattern(2, 4096));
    drop((f, d));
    rig.remount_and_expect("atomic", &want)?;
    rig.finish()
}
