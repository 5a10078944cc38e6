//! §2: buffered write.

use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{block_bits, folio, pattern, Rig, RigOpts};
use crate::block::BioOp;
use crate::iomap::copy::CopySource;
use crate::iomap::{fsync, write, WriteFlags, MAX_FILE_SIZE};
use crate::Errno;

/// A source whose copies stop after `limit` bytes in total (a page that faults after being
/// faulted in); `transient` lifts the limit after the first short copy, `decay` drops it to
/// nothing more; `prepare_limit` bounds what `prepare` promises.
pub(super) struct FaultingSource {
    data: Vec<u8>,
    at: usize,
    pub(super) limit: usize,
    pub(super) transient: bool,
    pub(super) decay: bool,
    pub(super) prepare_limit: usize,
}

impl FaultingSource {
    pub(super) fn new(data: Vec<u8>, limit: usize) -> Self {
        let n = data.len();
        Self { data, at: 0, limit, transient: false, decay: false, prepare_limit: n }
    }
}

impl CopySource for FaultingSource {
    fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn prepare(&mut self, len: usize) -> usize {
        len.min(self.remaining()).min(self.prepare_limit.saturating_sub(self.at))
    }

    fn copy_to(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.remaining()).min(self.limit.saturating_sub(self.at));
        dst[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        if n < dst.len() && self.transient {
            self.limit = usize::MAX;
        }
        if n < dst.len() && self.decay {
            self.limit = self.at;
        }
        n
    }

    fn advance(&mut self, n: usize) {
        self.at += n;
    }
}

fn small_write_into_mapped_block(env: &TestEnv, bs: u64) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(bs))?;
    let d = rig.spare_block(0);
    let blocks = 4096 / bs;
    let f = rig.mapped_file(d, blocks, &[b'A'; 4096])?;
    let mut open = f.open();
    ensure_eq!(f.write(&mut open, 100, &[b'B'; 10])?, 10);
    let ops = rig.trace.ops();
    ensure_eq!(ops.len(), 1, "exactly one device I/O: {:?}", ops);
    ensure_eq!((ops[0].op, ops[0].offset, ops[0].len), (BioOp::Read, d * bs, bs), "the block, once");
    let fo = folio(&f, 0)?;
    if blocks > 1 {
        ensure_eq!(block_bits(&fo), (vec![0], vec![0]));
    } else {
        ensure!(fo.is_uptodate() && fo.is_dirty());
    }
    let mut expect = vec![b'A'; 4096];
    expect[100..110].fill(b'B');
    ensure_eq!(f.read_all(&mut open)?, expect);
    Ok(())
}

pub fn buffered_write_t1_one_device_read_for_small_write(env: &TestEnv) -> TestResult {
    small_write_into_mapped_block(env, 4096)
}

pub fn buffered_write_t1_one_device_read_1k_blocks(env: &TestEnv) -> TestResult {
    small_write_into_mapped_block(env, 1024)
}

pub fn buffered_write_t2_hole_no_read_zeroes_around(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(1024))?;
    let f = rig.file()?;
    let mut open = f.open();
    ensure_eq!(f.write(&mut open, 1030, &[b'X'; 10])?, 10);
    ensure_eq!(rig.trace.counts().reads, 0, "no device read into a hole");
    let fo = folio(&f, 0)?;
    ensure_eq!(block_bits(&fo), (vec![1], vec![1]), "only block 1 uptodate and dirty");
    ensure!(!fo.is_uptodate());
    let locked = fo.lock();
    ensure!(locked.data()[1024..1030].iter().all(|&b| b == 0));
    ensure!(locked.data()[1040..2048].iter().all(|&b| b == 0));
    ensure_eq!(&locked.data()[1030..1040], &[b'X'; 10][..]);
    drop(locked);
    ensure_eq!(f.size(), 1040);
    Ok(())
}

pub fn buffered_write_t3_short_copy_retries_without_partial_blocks(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(1024))?;
    // A copy that stops at 2000 bytes for good: the first attempt (4000 bytes into a new folio)
    // is rejected whole, the retry with the 2000 copied bytes succeeds, the rest faults.
    let f = rig.file()?;
    let ops = f.ops();
    let mut open = f.open();
    let data = pattern(5, 4000);
    let mut src = FaultingSource::new(data.clone(), 2000);
    ensure_eq!(write(f.file(), &ops, &mut open, 0, &mut src, WriteFlags::empty()), Ok(2000));
    ensure_eq!(f.size(), 2000);
    ensure_eq!(block_bits(&*folio(&f, 0)?), (vec![0, 1], vec![0, 1]), "no partly copied block looks valid");
    ensure_eq!(f.read_all(&mut open)?, data[..2000].to_vec());
    // A transient fault: retried to completion.
    let g = rig.file()?;
    let gops = g.ops();
    let mut src = FaultingSource::new(data.clone(), 1500);
    src.transient = true;
    ensure_eq!(write(g.file(), &gops, &mut open, 0, &mut src, WriteFlags::empty()), Ok(4000));
    let mut gopen = g.open();
    ensure_eq!(g.read_all(&mut gopen)?, data);
    // Nothing available at all: EFAULT, size unchanged, nothing cached past EOF.
    let mut src = FaultingSource::new(vec![1; 100], 0);
    src.prepare_limit = 0;
    ensure_eq!(write(f.file(), &ops, &mut open, 2000, &mut src, WriteFlags::empty()), Err(Errno::EFAULT));
    let mut src = FaultingSource::new(vec![1; 100], 0);
    ensure_eq!(write(f.file(), &ops, &mut open, 8192, &mut src, WriteFlags::empty()), Err(Errno::EFAULT));
    ensure_eq!(f.size(), 2000, "a failed append leaves the size");
    ensure!(f.file().mapping().get(2).is_none(), "the folio created past EOF was dropped");
    // A rejected copy leaves its bytes in a block that stays not uptodate (inside EOF here);
    // a later small write into that block must zero around itself, not expose them.
    let h = rig.file()?;
    let hops = h.ops();
    h.truncate(8192)?;
    let mut src = FaultingSource::new(vec![0xBB; 900], 600);
    src.decay = true;
    ensure_eq!(write(h.file(), &hops, &mut open, 1100, &mut src, WriteFlags::empty()), Err(Errno::EFAULT));
    ensure_eq!(block_bits(&*folio(&h, 0)?), (vec![], vec![]));
    h.write(&mut open, 1400, &[b'w'; 10])?;
    let mut expect = vec![0u8; 8192];
    expect[1400..1410].fill(b'w');
    let mut hopen = h.open();
    ensure_eq!(h.read_all(&mut hopen)?, expect, "no byte of the rejected copy is visible");
    Ok(())
}

pub fn buffered_write_t4_truncate_then_extend_zeroes_gap(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'A'; 4000])?;
    f.truncate(100)?;
    f.write(&mut open, 6000, b"Z")?;
    let mut expect = vec![0u8; 6001];
    expect[..100].fill(b'A');
    expect[6000] = b'Z';
    ensure_eq!(f.read_all(&mut open)?, expect, "from the cache");
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect, "from disk");
    Ok(())
}

pub fn buffered_write_one_mapping_call_per_extent_64mib(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.cache_bytes = 80 << 20;
    let rig = Rig::new(env, opts)?;
    let f = rig.file()?;
    let mut open = f.open();
    let data = vec![0x5Au8; 64 << 20];
    rig.fs.reset_counts();
    ensure_eq!(f.write(&mut open, 0, &data)?, 64 << 20);
    drop(data);
    let c = rig.fs.counts();
    ensure_eq!((c.map_write, c.finish, c.maps()), (1, 1, 1), "one mapping call for one extent");
    // Write back half (the device may be as small as 64 MiB): one extent, one mapping call.
    let half = 32u64 << 20;
    fsync(f.file(), &f.ops(), &mut open, 0, half, false)?;
    let c = rig.fs.counts();
    ensure_eq!(c.map_writeback, 1, "writeback maps the extent once, not per folio");
    ensure_eq!(rig.ctx.stats().ioends, 8, "4 MiB ioends");
    ensure_eq!(f.file().mapping().nr_dirty(), 16 * 512, "the other half is still dirty (pages)");
    ensure!(f.read_disk(half - 4096, 4096)?.iter().all(|&b| b == 0x5A));
    f.truncate(0)?;
    ensure_eq!(f.file().mapping().nr_folios(), 0);
    Ok(())
}

pub fn buffered_write_past_eof_zeroes_stale_eof_block_tail(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let d = rig.spare_block(0);
    let mut block = vec![b'G'; 4096];
    block[..100].fill(b'A');
    let f = rig.mapped_file(d, 1, &block)?;
    f.set_size(100);
    let mut open = f.open();
    f.write(&mut open, 6000, b"Z")?;
    let mut expect = vec![0u8; 6001];
    expect[..100].fill(b'A');
    expect[6000] = b'Z';
    ensure_eq!(f.read_all(&mut open)?, expect, "stale bytes after the old EOF never show");
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect);
    ensure_eq!(f.read_disk(0, 6001)?, expect, "zeroed on disk too");
    Ok(())
}

pub fn buffered_write_limits(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    ensure_eq!(f.write(&mut open, MAX_FILE_SIZE, b"x"), Err(Errno::EFBIG));
    ensure_eq!(f.write(&mut open, 0, b"")?, 0);
    ensure_eq!(f.write(&mut open, MAX_FILE_SIZE - 10, &[7; 20])?, 10, "clipped at the largest size");
    ensure_eq!(f.size(), MAX_FILE_SIZE);
    let mut buf = [0u8; 20];
    ensure_eq!(f.read(&mut open, MAX_FILE_SIZE - 10, &mut buf)?, 10);
    ensure_eq!(&buf[..10], &[7; 10][..]);
    f.truncate(0)?;
    ensure_eq!((f.size(), f.file().mapping().nr_folios(), f.extents().len()), (0, 0, 0));
    Ok(())
}

pub fn buffered_write_throttled_by_small_cache(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.cache_bytes = 4 << 20;
    let rig = Rig::new(env, opts)?;
    rig.cache.set_dirty_thresholds(512 << 10, 1 << 20)?;
    let f = rig.file()?;
    let mut open = f.open();
    let total = 16usize << 20;
    for i in 0..total / 65536 {
        ensure_eq!(f.write(&mut open, (i * 65536) as u64, &pattern(i as u8, 65536))?, 65536);
    }
    ensure!(rig.cache.stats().writeback_requests > 0, "the dirty thresholds asked for writeback");
    ensure!(rig.cache.cached_bytes() <= 4 << 20, "the budget held");
    // A synchronous write far larger than the dirty limits, on the fallback (dirtying) path.
    let g = rig.file()?;
    let mut gopen = g.open();
    ensure_eq!(g.write_flags(&mut gopen, 0, &vec![0x77u8; 8 << 20], WriteFlags::DSYNC)?, 8 << 20);
    ensure_eq!(g.file().mapping().nr_dirty(), 0);
    f.fsync(&mut open, false)?;
    for i in [0usize, 100, 255] {
        ensure_eq!(f.read_disk((i * 65536) as u64, 65536)?, pattern(i as u8, 65536), "chunk {}", i);
    }
    ensure_eq!(g.read_disk((8 << 20) - 4096, 4096)?, vec![0x77u8; 4096]);
    Ok(())
}
