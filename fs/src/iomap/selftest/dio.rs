//! §5: direct I/O (T1-T3 and the rules around them), §11 T3 (O_DSYNC direct writes).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};
use spin::Mutex;

use super::common::{mapped_block, pattern, Rig, RigOpts};
use super::doubles::{AlignedDisk, DmaRule, PickyPlatform};
use crate::block::{BioFlags, BioOp, BlockDevice, FaultDisk, FaultRule, OpMask};
use crate::iomap::testfs::ExtKind;
use crate::iomap::{
    direct_read, direct_write, IoendDone, IoendFlags, Iomap, IomapOps, IomapPair, IomapType, MapDone,
    MapRequest, WriteFlags, NULL_ADDR,
};
use crate::platform::DmaBuffer;
use crate::{Errno, Result};

/// Where a fresh test filesystem's first allocation lands (after its metadata blocks).
fn meta_end(rig: &Rig) -> u64 {
    rig.fs.config().meta_blocks * rig.bs()
}

/// Fills the first MiB after the metadata with garbage, so zeroing is seen.
fn garbage(rig: &Rig) -> Result<(), TestFailure> {
    rig.poke(meta_end(rig), 1 << 20, &vec![0xEE; 1 << 20])
}

fn writes(rig: &Rig) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> =
        rig.trace.ops().iter().filter(|t| t.op == BioOp::Write).map(|t| (t.offset, t.len)).collect();
    w.sort_unstable();
    w
}

pub fn dio_t1_sub_block_write_into_empty_file_zeroes_block(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    garbage(&rig)?;
    let f = rig.file()?;
    let mut open = f.open();
    ensure_eq!(f.direct_write(&mut open, 1024, &[b'X'; 512], WriteFlags::empty())?, 512);
    ensure_eq!((f.size(), f.file().disk_size()), (1536, 1536), "size updated at completion");
    let d = mapped_block(&f, 0)? * 4096;
    ensure_eq!(
        writes(&rig),
        vec![(d, 1024), (d + 1024, 512), (d + 1536, 2560)],
        "head zero, data, tail zero"
    );
    ensure_eq!(rig.trace.counts().reads, 0);
    let flags = IoendFlags::UNWRITTEN | IoendFlags::DIRECT;
    ensure_eq!(rig.fs.ioend_log(), vec![IoendDone { offset: 1024, size: 512, flags, error: None }]);
    let mut expect = vec![0u8; 4096];
    expect[1024..1536].fill(b'X');
    ensure_eq!(rig.peek(d, 4096)?, expect, "the device block: zeros around the data");
    f.truncate(4096)?;
    ensure_eq!(f.read_all(&mut open)?, expect, "truncate up: [1536, 4096) reads zeros");
    Ok(())
}

pub fn dio_t2_coherent_with_dirty_cache(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 1, &[b'A'; 4096])?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'B'; 4096])?;
    let mut buf = vec![0u8; 4096];
    ensure_eq!(f.direct_read(&mut open, 0, &mut buf)?, 4096);
    ensure_eq!(buf, vec![b'B'; 4096], "the dirty cache was written back first");
    ensure!(f.file().mapping().get(0).is_some(), "a read leaves clean cache alone");
    ensure_eq!(f.direct_write(&mut open, 0, &[b'C'; 4096], WriteFlags::empty())?, 4096);
    ensure!(f.file().mapping().get(0).is_none(), "a write invalidates the cache range");
    rig.trace.clear();
    ensure_eq!(f.read_all(&mut open)?, vec![b'C'; 4096]);
    ensure_eq!(rig.trace.counts().reads, 1, "the buffered read went to the device");
    Ok(())
}

pub fn dio_t3_misaligned_einval_hole_zeros_eof_zero(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    f.truncate(8192)?;
    let flags = WriteFlags::empty();
    ensure_eq!(f.direct_write(&mut open, 100, &[1u8; 512], flags), Err(Errno::EINVAL), "unaligned position");
    ensure_eq!(f.direct_write(&mut open, 0, &[1u8; 100], flags), Err(Errno::EINVAL), "unaligned length");
    let mut buf = vec![0xAAu8; 8192];
    ensure_eq!(f.direct_read(&mut open, 512, &mut buf[..100]), Err(Errno::EINVAL));
    rig.trace.clear();
    ensure_eq!(f.direct_read(&mut open, 0, &mut buf)?, 8192);
    ensure_eq!(buf, vec![0u8; 8192], "a hole reads as zeros");
    ensure_eq!(rig.trace.counts().reads, 0, "without device I/O");
    ensure_eq!(f.direct_read(&mut open, 8192, &mut buf)?, 0, "at EOF");
    ensure_eq!(f.direct_read(&mut open, 65536, &mut buf)?, 0, "past EOF");
    ensure_eq!(f.direct_write(&mut open, 0, &[], flags)?, 0);
    ensure!(f.extents().is_empty(), "nothing was allocated");
    Ok(())
}

pub fn dio_read_clamped_at_eof_zeroes_past_it(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let data = pattern(3, 4096);
    let f = rig.mapped_file(rig.spare_block(0), 1, &data)?;
    f.set_size(1000);
    let mut open = f.open();
    let mut buf = vec![0xAAu8; 4096];
    ensure_eq!(f.direct_read(&mut open, 0, &mut buf)?, 1000);
    ensure_eq!(&buf[..1000], &data[..1000]);
    ensure!(buf[1000..1024].iter().all(|&b| b == 0), "the device bytes read past EOF are zeroed");
    ensure!(buf[1024..].iter().all(|&b| b == 0xAA), "the rest of the buffer is not touched");
    let reads: Vec<u64> = rig.trace.ops().iter().filter(|t| t.op == BioOp::Read).map(|t| t.len).collect();
    ensure_eq!(reads, vec![1024], "the I/O is rounded up to the logical block size only");
    Ok(())
}

pub fn dio_unwritten_sub_block_write_zeroes_edges_and_converts(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    garbage(&rig)?;
    let f = rig.file()?;
    f.fallocate(0, 8192)?;
    f.truncate(8192)?;
    let mut open = f.open();
    rig.trace.clear();
    ensure_eq!(f.direct_write(&mut open, 4608, &[7u8; 512], WriteFlags::empty())?, 512);
    let mut expect = vec![0u8; 8192];
    expect[4608..5120].fill(7);
    ensure_eq!(f.read_disk(0, 8192)?, expect);
    let exts = f.extents();
    ensure!(
        matches!(exts[0].kind, ExtKind::Unwritten(_)) && exts[0].len == 1,
        "block 0 stays unwritten: {:?}",
        exts
    );
    let d = mapped_block(&f, 1)? * 4096;
    ensure_eq!(writes(&rig), vec![(d, 512), (d + 512, 512), (d + 1024, 3072)]);
    ensure_eq!(
        rig.peek(d, 4096)?,
        expect[4096..].to_vec(),
        "the converted block holds zeros around the data"
    );
    ensure_eq!(f.size(), 8192);
    Ok(())
}

pub fn dio_write_extends_size_and_converts_at_completion(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    let data = pattern(9, 12288);
    ensure_eq!(f.direct_write(&mut open, 0, &data, WriteFlags::empty())?, 12288);
    ensure_eq!((f.size(), f.file().disk_size()), (12288, 12288));
    ensure!(f.extents().iter().all(|e| matches!(e.kind, ExtKind::Mapped(_))), "{:?}", f.extents());
    let flags = IoendFlags::UNWRITTEN | IoendFlags::DIRECT;
    ensure_eq!(rig.fs.ioend_log(), vec![IoendDone { offset: 0, size: 12288, flags, error: None }]);
    ensure_eq!(f.read_disk(0, 12288)?, data);
    // A plain overwrite inside the size needs no completion work at all.
    rig.fs.reset_counts();
    ensure_eq!(f.direct_write(&mut open, 4096, &data[..4096], WriteFlags::empty())?, 4096);
    ensure_eq!(rig.fs.counts().ioend_done, 0);
    let mut buf = vec![0u8; 12288];
    ensure_eq!(f.direct_read(&mut open, 0, &mut buf)?, 12288);
    let mut expect = data.clone();
    expect[4096..8192].copy_from_slice(&data[..4096]);
    ensure_eq!(buf, expect);
    Ok(())
}

pub fn dio_many_bios_in_flight(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.config.max_io_bytes = 64 << 10;
    let rig = Rig::new(env, opts)?;
    let f = rig.mapped_file(rig.spare_block(0), 256, &[0u8; 1 << 20])?;
    let mut open = f.open();
    let data = pattern(5, 1 << 20);
    ensure_eq!(f.direct_write(&mut open, 0, &data, WriteFlags::empty())?, 1 << 20);
    ensure_eq!(rig.trace.counts().writes, 16, "one bio per 64 KiB");
    ensure!(rig.trace.peak_in_flight() >= 8, "submitted before waiting: peak {}", rig.trace.peak_in_flight());
    rig.trace.clear();
    let mut back = vec![0u8; 1 << 20];
    ensure_eq!(f.direct_read(&mut open, 0, &mut back)?, 1 << 20);
    ensure_eq!(rig.trace.counts().reads, 16);
    ensure!(rig.trace.peak_in_flight() >= 8, "reads too: peak {}", rig.trace.peak_in_flight());
    ensure!(back == data);
    Ok(())
}

pub fn dio_batch_requests_in_flight_together(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 64, &[0u8; 64 * 4096])?;
    let mut open = f.open();
    let data: Vec<Vec<u8>> = (0..32).map(|i| pattern(i as u8, 4096)).collect();
    let reqs: Vec<crate::iomap::DioWrite<'_>> = (0..32)
        .map(|i| crate::iomap::DioWrite { pos: ((i * 37) % 64) as u64 * 4096, data: &data[i] })
        .collect();
    let results = f.direct_write_batch(&mut open, &reqs, WriteFlags::empty());
    ensure!(results.iter().all(|r| *r == Ok(4096)), "{:?}", results);
    ensure_eq!(rig.trace.counts().writes, 32);
    ensure!(
        rig.trace.peak_in_flight() >= 8,
        "all 32 submitted before waiting: peak {}",
        rig.trace.peak_in_flight()
    );
    for (i, r) in reqs.iter().enumerate() {
        ensure_eq!(f.read_disk(r.pos, 4096)?, data[i]);
    }
    let overlapping = [
        crate::iomap::DioWrite { pos: 0, data: &data[0] },
        crate::iomap::DioWrite { pos: 2048, data: &data[1][..2048] },
    ];
    ensure_eq!(
        f.direct_write_batch(&mut open, &overlapping, WriteFlags::empty()),
        vec![Err(Errno::EINVAL), Err(Errno::EINVAL)]
    );
    Ok(())
}

pub fn dio_bounces_memory_the_device_cannot_reach(env: &TestEnv) -> TestResult {
    let platform = PickyPlatform::arc(env.platform.clone(), DmaRule::Nothing);
    let rig = Rig::on(platform, env.device("scratch0")?, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 16, &[0u8; 65536])?;
    let mut open = f.open();
    let data = pattern(11, 65536);
    ensure_eq!(f.direct_write(&mut open, 0, &data, WriteFlags::empty())?, 65536);
    let mut back = vec![0u8; 65536];
    ensure_eq!(f.direct_read(&mut open, 0, &mut back)?, 65536);
    ensure!(back == data);
    ensure_eq!(f.read_disk(0, 65536)?, data);
    let s = rig.ctx.stats();
    ensure_eq!((s.dio_bios, s.dio_bounced_bytes), (2, 131072), "one bounced bio each way");
    Ok(())
}

pub fn dio_zero_copy_page_segments_when_only_pages_are_reachable(env: &TestEnv) -> TestResult {
    let platform = PickyPlatform::arc(env.platform.clone(), DmaRule::SinglePages);
    let rig = Rig::on(platform.clone(), env.device("scratch0")?, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 16, &[0u8; 65536])?;
    let mut open = f.open();
    let mut buf = DmaBuffer::new(&platform, 65536)?;
    buf.as_mut_slice().copy_from_slice(&pattern(12, 65536));
    ensure_eq!(f.direct_write(&mut open, 0, buf.as_slice(), WriteFlags::empty())?, 65536);
    let segs: Vec<usize> =
        rig.trace.ops().iter().filter(|t| t.op == BioOp::Write).map(|t| t.segments).collect();
    ensure_eq!(segs, vec![16], "one bio of sixteen page segments");
    ensure_eq!(rig.ctx.stats().dio_bounced_bytes, 0);
    ensure_eq!(f.read_disk(0, 65536)?, pattern(12, 65536));
    Ok(())
}

pub fn dio_buffer_not_dma_aligned_einval(env: &TestEnv) -> TestResult {
    let dev = AlignedDisk::arc(env.device("scratch0")?, 512);
    let rig = Rig::on(env.platform.clone(), dev, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 2, &[0u8; 8192])?;
    let mut open = f.open();
    let mut buf = DmaBuffer::new(&rig.platform, 8192)?;
    let (aligned, odd) = buf.as_mut_slice().split_at_mut(4096);
    ensure_eq!(f.direct_read(&mut open, 0, &mut odd[8..520]), Err(Errno::EINVAL), "address off by 8");
    ensure_eq!(f.direct_write(&mut open, 0, &odd[1..513], WriteFlags::empty()), Err(Errno::EINVAL));
    ensure_eq!(f.direct_read(&mut open, 0, &mut aligned[..512])?, 512);
    ensure_eq!(f.direct_read(&mut open, 0, &mut odd[512..1024])?, 512, "512-byte aligned is enough");
    Ok(())
}

pub fn dio_not_for_direct_continues_buffered(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    // Inline data: the filesystem answers ENOTBLK.
    let f = rig.fs.create_inline()?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'i'; 60])?;
    let mut buf = vec![0u8; 512];
    ensure_eq!(f.direct_read(&mut open, 0, &mut buf)?, 60);
    ensure_eq!(&buf[..60], &[b'i'; 60][..]);
    let data = pattern(4, 4096);
    ensure_eq!(f.direct_write(&mut open, 0, &data, WriteFlags::empty())?, 4096);
    ensure!(!f.is_inline(), "the buffered write moved it to blocks");
    ensure_eq!(f.read_disk(0, 4096)?, data, "and it is on the device on return");
    ensure!(f.file().mapping().get(0).is_none(), "with the cache dropped as a direct write leaves it");
    ensure_eq!(rig.ctx.stats().dio_fallbacks, 2);
    // A delayed allocation without cached data: read as zeros, written through the cache.
    let g = rig.file()?;
    g.set_extent(0, 1, ExtKind::Delalloc, false)?;
    g.set_size(4096);
    let mut open = g.open();
    let mut buf = vec![0xAAu8; 4096];
    ensure_eq!(g.direct_read(&mut open, 0, &mut buf)?, 4096);
    ensure_eq!(buf, vec![0u8; 4096]);
    ensure_eq!(g.direct_write(&mut open, 0, &data, WriteFlags::empty())?, 4096);
    ensure_eq!(g.read_disk(0, 4096)?, data);
    ensure_eq!(rig.ctx.stats().dio_fallbacks, 4);
    Ok(())
}

/// A filesystem whose one file is inline and maps INLINE for direct I/O too.
struct InlineOps {
    data: Mutex<Vec<u8>>,
}

impl IomapOps for InlineOps {
    fn next(&self, req: MapRequest, _prev: Option<&MapDone>) -> Result<Option<IomapPair>> {
        if req.len == 0 {
            return Ok(None);
        }
        Ok(Some(IomapPair::new(Iomap::new(0, 4096, NULL_ADDR, IomapType::Inline))))
    }

    fn is_valid(&self, _iomap: &Iomap) -> bool {
        true
    }

    fn ioend_done(&self, _done: &IoendDone) -> Result<()> {
        Ok(())
    }

    fn read_inline(&self, _iomap: &Iomap, buf: &mut [u8]) -> Result<()> {
        let d = self.data.lock();
        buf.copy_from_slice(d.get(..buf.len()).ok_or(Errno::EIO)?);
        Ok(())
    }

    fn write_inline(&self, _iomap: &Iomap, offset: u64, data: &[u8]) -> Result<()> {
        let mut d = self.data.lock();
        let end = offset as usize + data.len();
        if end > 1024 {
            return Err(Errno::EIO);
        }
        if d.len() < end {
            d.resize(end, 0);
        }
        d[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn commit(&self, _datasync: bool) -> Result<bool> {
        Ok(false)
    }
}

pub fn dio_inline_mapping_copied_directly(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let file = rig.ctx.new_file(60)?;
    let fs = Arc::new(InlineOps { data: Mutex::new(vec![b'n'; 60]) });
    let ops: Arc<dyn IomapOps> = fs.clone();
    let mut open = file.open();
    let mut buf = vec![0xAAu8; 512];
    ensure_eq!(direct_read(&file, &ops, &mut open, 0, &mut buf)?, 60);
    ensure_eq!(&buf[..60], &[b'n'; 60][..]);
    ensure!(buf[60..].iter().all(|&b| b == 0));
    ensure_eq!(direct_write(&file, &ops, &mut open, 512, &[b'w'; 512], WriteFlags::empty())?, 512);
    ensure_eq!(file.size(), 1024);
    ensure_eq!(&fs.data.lock()[512..], &[b'w'; 512][..]);
    ensure_eq!(rig.trace.ops().len(), 0, "no block I/O");
    Ok(())
}

pub fn dio_odsync_t3_overwrite_fua_and_extending_commit(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 2, &[b'A'; 4096])?;
    rig.fs.commit()?;
    let mut open = f.open();
    rig.trace.clear();
    ensure_eq!(f.direct_write(&mut open, 0, &[b'B'; 4096], WriteFlags::DSYNC)?, 4096);
    let ops = rig.trace.take();
    ensure_eq!(ops.len(), 1, "one write and nothing else: {:?}", ops);
    ensure_eq!((ops[0].op, ops[0].flags), (BioOp::Write, BioFlags::FUA));
    ensure_eq!(f.direct_write(&mut open, 4096, &[b'C'; 4096], WriteFlags::DSYNC)?, 4096);
    let ops = rig.trace.take();
    let data: Vec<_> = ops.iter().filter(|t| t.op == BioOp::Write && t.offset != 0).collect();
    ensure_eq!(data.len(), 1);
    ensure_eq!(data[0].flags, BioFlags::empty(), "an extending write is not a pure overwrite");
    let commit: Vec<_> = ops.iter().filter(|t| t.offset == 0 && t.op == BioOp::Write).collect();
    ensure_eq!(commit.len(), 1, "the size is committed: {:?}", ops);
    ensure_eq!(commit[0].flags, BioFlags::PREFLUSH | BioFlags::FUA);
    ensure_eq!(f.file().disk_size(), 8192);
    let fs2 = rig.remount()?;
    let g = fs2.file(f.id()).ok_or_else(|| TestFailure("file gone after remount".into()))?;
    ensure_eq!(g.size(), 8192, "durable");
    Ok(())
}

pub fn dio_write_error_fails_without_size_change(env: &TestEnv) -> TestResult {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let rig = Rig::on(env.platform.clone(), fault.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE))?;
    ensure_eq!(f.direct_write(&mut open, 0, &[1u8; 8192], WriteFlags::empty()), Err(Errno::EIO));
    fault.remove_rule(rule);
    ensure_eq!((f.size(), f.file().disk_size()), (0, 0), "no size change");
    ensure!(f.extents().iter().all(|e| matches!(e.kind, ExtKind::Unwritten(_))), "nothing converted");
    let log = rig.fs.ioend_log();
    ensure_eq!(log.len(), 1);
    ensure_eq!(log[0].error, Some(Errno::EIO));
    ensure_eq!(f.direct_write(&mut open, 0, &[1u8; 8192], WriteFlags::empty())?, 8192);
    ensure_eq!(f.read_disk(0, 8192)?, vec![1u8; 8192]);
    Ok(())
}

pub fn dio_sub_block_overwrite_1k_blocks_writes_only_its_sectors(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(1024))?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 4, &[b'A'; 4096])?;
    let mut open = f.open();
    ensure_eq!(f.direct_write(&mut open, 1536, &[b'B'; 512], WriteFlags::empty())?, 512);
    ensure_eq!(writes(&rig), vec![(d * 1024 + 1536, 512)], "a plain overwrite: just the sector");
    let mut expect = vec![b'A'; 4096];
    expect[1536..2048].fill(b'B');
    ensure_eq!(f.read_disk(0, 4096)?, expect);
    Ok(())
}

pub fn dio_read_op_is_direct(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 1, &[1u8; 4096])?;
    let mut open = f.open();
    rig.fs.reset_counts();
    let mut buf = vec![0u8; 4096];
    f.direct_read(&mut open, 0, &mut buf)?;
    let c = rig.fs.counts();
    ensure_eq!((c.map_read, c.map_other, c.finish), (0, 1, 1), "one DIRECT mapping call and its end");
    Ok(())
}

pub fn dio_batch_back_to_back_requests_share_one_mapping_walk(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 16, &[0u8; 65536])?;
    let mut open = f.open();
    let data: Vec<Vec<u8>> = (0..8).map(|i| pattern(40 + i as u8, 8192)).collect();
    // Out of order in the batch, back to back in the file.
    let reqs: Vec<crate::iomap::DioWrite<'_>> = [3usize, 0, 7, 1, 2, 6, 4, 5]
        .iter()
        .map(|&i| crate::iomap::DioWrite { pos: i as u64 * 8192, data: &data[i] })
        .collect();
    rig.fs.reset_counts();
    let results = f.direct_write_batch(&mut open, &reqs, WriteFlags::empty());
    ensure!(results.iter().all(|r| *r == Ok(8192)), "{:?}", results);
    let c = rig.fs.counts();
    ensure_eq!((c.map_write, c.finish), (1, 1), "one mapping call for the extent, not one per request");
    ensure_eq!(rig.trace.counts().writes, 8, "still one bio per request");
    ensure_eq!(f.read_disk(0, 65536)?, data.concat());
    let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; 8192]).collect();
    let mut reads: Vec<crate::iomap::DioRead<'_>> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| crate::iomap::DioRead { pos: i as u64 * 8192, buf: &mut b[..] })
        .collect();
    rig.fs.reset_counts();
    let results = f.direct_read_batch(&mut open, &mut reads);
    ensure!(results.iter().all(|r| *r == Ok(8192)), "{:?}", results);
    ensure_eq!(rig.fs.counts().map_other, 1);
    ensure!(bufs == data);
    Ok(())
}

pub fn dio_batch_requests_sharing_a_block_run_one_at_a_time(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    let (a, b) = ([b'a'; 512], [b'b'; 512]);
    let reqs = [crate::iomap::DioWrite { pos: 0, data: &a }, crate::iomap::DioWrite { pos: 512, data: &b }];
    ensure_eq!(f.direct_write_batch(&mut open, &reqs, WriteFlags::empty()), vec![Ok(512), Ok(512)]);
    let mut expect = vec![0u8; 4096];
    expect[..512].fill(b'a');
    expect[512..1024].fill(b'b');
    let got = f.read_disk(0, 4096)?;
    let first_diff = got.iter().zip(&expect).position(|(a, b)| a != b);
    ensure!(first_diff.is_none(), "the zeroing of one overwrote the other's data at {:?}", first_diff);
    ensure_eq!(f.size(), 1024);
    Ok(())
}

/// The engine adds no bios of its own to sequential direct I/O from physically contiguous
/// buffers (the shape the raw block baseline of the `dio` bench sends): a 1 MiB write into a
/// new file is one bio of one segment; a batch of 8 back-to-back 1 MiB writes is 8 such bios
/// in file order, no flush, no read, one mapping call and one completion call for the lot; the
/// reads back likewise.
pub fn dio_seq_1m_from_contiguous_buffers_one_bio_one_segment_each(env: &TestEnv) -> TestResult {
    const MIB: usize = 1 << 20;
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    let mut bufs: Vec<DmaBuffer> =
        (0..9).map(|_| DmaBuffer::new(&rig.platform, MIB)).collect::<Result<_>>()?;
    for (i, b) in bufs.iter_mut().enumerate() {
        b.as_mut_slice().copy_from_slice(&pattern(60 + i as u8, MIB));
    }
    let shape = |op: BioOp, first: u64, n: u64| -> Vec<(BioOp, BioFlags, u64, u64, usize)> {
        (0..n).map(|i| (op, BioFlags::empty(), first + i * MIB as u64, MIB as u64, 1)).collect()
    };
    let seen = |rig: &Rig| -> Vec<(BioOp, BioFlags, u64, u64, usize)> {
        rig.trace.take().iter().map(|t| (t.op, t.flags, t.offset, t.len, t.segments)).collect()
    };
    rig.fs.reset_counts();
    ensure_eq!(f.direct_write(&mut open, 0, bufs[8].as_slice(), WriteFlags::empty())?, MIB);
    let disk = f.extents().first().and_then(|e| e.kind.disk()).ok_or(Errno::EIO)? * 4096;
    ensure_eq!(seen(&rig), shape(BioOp::Write, disk, 1), "one bio, one segment");
    let c = rig.fs.counts();
    ensure_eq!((c.map_write, c.ioend_done), (1, 1));

    rig.fs.reset_counts();
    let reqs: Vec<crate::iomap::DioWrite<'_>> = (0..8)
        .map(|i| crate::iomap::DioWrite { pos: (1 + i as u64) * MIB as u64, data: bufs[i].as_slice() })
        .collect();
    let results = f.direct_write_batch(&mut open, &reqs, WriteFlags::empty());
    ensure!(results.iter().all(|r| *r == Ok(MIB)), "{:?}", results);
    ensure_eq!(f.extents().len(), 1, "the file is one extent");
    ensure_eq!(seen(&rig), shape(BioOp::Write, disk + MIB as u64, 8), "a bio of one segment per request");
    let c = rig.fs.counts();
    ensure_eq!((c.map_write, c.ioend_done), (1, 1), "one mapping call and one completion call");
    ensure_eq!(f.size(), 9 * MIB as u64);

    let mut back: Vec<DmaBuffer> =
        (0..8).map(|_| DmaBuffer::new(&rig.platform, MIB)).collect::<Result<_>>()?;
    let mut reads: Vec<crate::iomap::DioRead<'_>> = back
        .iter_mut()
        .enumerate()
        .map(|(i, b)| crate::iomap::DioRead { pos: (1 + i as u64) * MIB as u64, buf: b.as_mut_slice() })
        .collect();
    let results = f.direct_read_batch(&mut open, &mut reads);
    ensure!(results.iter().all(|r| *r == Ok(MIB)), "{:?}", results);
    ensure_eq!(seen(&rig), shape(BioOp::Read, disk + MIB as u64, 8));
    for (i, b) in back.iter().enumerate() {
        ensure!(b.as_slice() == bufs[i].as_slice(), "request {i} read back");
    }
    Ok(())
}
