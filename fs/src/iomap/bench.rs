//! Engine benchmarks over the test filesystem on a given device: `(name, value, unit)` rows
//! for `cargo xtask bench` (the kernel calls [`bench()`] over virtio-blk) and the host.
//!
//! Figures (sizes from [`BenchSizes`]; the device goes behind a fresh [`Queue`]):
//!
//! - `memcpy_mib_s`: copying 1 MiB chunks from one source buffer into a 64 MiB destination,
//!   round robin, after one untimed pass over the destination: the ceiling for cached writes,
//!   measured in the same run.
//! - `buffered_write_cached_first_touch_mib_s`: buffered writes of 1 MiB chunks into a new file
//!   (delayed allocation), no fsync, the cache large enough to hold it all, the folio memory
//!   fresh from the platform. Under QEMU TCG the first touch of guest memory that was never
//!   used costs far more than the copy (the host faults the page in), so this figure measures
//!   mostly QEMU: it is reported, but not compared.
//! - `buffered_write_cached_mib_s`: the same into a second new file after the first one was
//!   truncated (its cache dropped and its memory handed back to the platform, which hands it
//!   out again): the engine's own cost per byte, as `memcpy_mib_s` measures memcpy's on memory
//!   touched before. `buffered_write_cached_mib_s_vs_memcpy` is the ratio of the two (target
//!   >= 0.5).
//! - `buffered_write_fsync_mib_s`: the same into another file, plus one fsync, timed together.
//! - `buffered_read_cold_mib_s`: reading that file back in 1 MiB reads after dropping its cache
//!   (readahead); `buffered_read_warm_mib_s`: again, from the cache.
//! - `fsync_4k_us`: mean of (4 KiB overwrite of an allocated block + fdatasync).
//! - `osync_write_4k_us`: mean of 4 KiB O_DSYNC overwrites (write-through).
//! - `raw_seq_write_mib_s`, `raw_seq_read_mib_s`: the same byte count straight to the queue
//!   (1 MiB bios, 8 in flight, then a flush for writes, carrying the file's bytes from buffers
//!   filled once), and the ratios `buffered_read_cold_mib_s_vs_blk` /
//!   `buffered_write_fsync_mib_s_vs_blk` against them (target >= 0.8). The file's blocks and
//!   the raw region are written once untimed before either is timed (the bench checks the file
//!   landed there), so both overwrite blocks the host image already has. The kernel's block bench reports its own sequential figures; the same
//!   ratios against those are `buffered_*_mib_s / blk_seq_*_mib_s` of the same boot.
//! - `buffered_write_fsync_ceiling_mib_s`, `buffered_read_cold_ceiling_mib_s`: the best a
//!   buffered path can do on this machine, the raw transfer and one CPU copy of each byte one
//!   after the other (`1 / (1 / raw + 1 / memcpy)`), and the ratios `..._vs_ceiling` against
//!   them. Under QEMU TCG the device moves bytes at host speed (QEMU's own memcpy) while the
//!   guest's copy is emulated, several times slower: the raw figures are then out of reach of
//!   any path that copies (the `_vs_blk` targets of 0.8 assume a CPU copy much faster than the
//!   device), and the ceiling says how close the engine comes to what is reachable.
//!
//! Not part of the test run. Locking: none of its own.
//! Linux <-> here: `fio --ioengine=psync --rw=write|read --bs=1m` and `--fdatasync=1 --bs=4k`.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;

use super::testfs::{MemFs, MemFsConfig};
use super::{IomapConfig, IomapContext, WriteFlags};
use crate::block::sync::{flush, Completion};
use crate::block::{Bio, BioEnd, BioOp, BlockDevice, Queue, Segment, SECTOR_SIZE};
use crate::pagecache::{CacheConfig, PageCache, DEFAULT_MAX_ORDER};
use crate::platform::{DmaBuffer, Platform};
use crate::{Errno, Result};

/// One benchmark result: name, value, unit.
pub type BenchRow = (&'static str, f64, &'static str);

const MIB: u64 = 1 << 20;
/// Bios in flight of the raw figures.
const RAW_DEPTH: usize = 8;

/// How much each benchmark moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchSizes {
    /// Bytes of the cached-write benchmark (and of memcpy).
    pub cached_write_bytes: u64,
    /// Bytes of the fsync-write and read benchmarks (and the raw figures).
    pub io_bytes: u64,
    /// Iterations of the 4 KiB sync benchmarks.
    pub sync_ops: u32,
    /// Filesystem block size.
    pub block_size: u64,
}

impl Default for BenchSizes {
    fn default() -> Self {
        Self { cached_write_bytes: 256 * MIB, io_bytes: 256 * MIB, sync_ops: 256, block_size: 4096 }
    }
}

/// Runs every benchmark at the default sizes, the I/O size limited to a quarter of the
/// device.
pub fn bench(platform: &Arc<dyn Platform>, dev: Arc<dyn BlockDevice>) -> Result<Vec<BenchRow>> {
    let mut s = BenchSizes::default();
    let cap = dev.info().capacity_bytes();
    s.io_bytes = s.io_bytes.min(cap / 4 / MIB * MIB);
    bench_sized(platform, dev, s)
}

fn mib_s(bytes: u64, ns: u64) -> f64 {
    (bytes as f64 / MIB as f64) / (ns.max(1) as f64 / 1e9)
}

/// Runs every benchmark at `sizes` (byte counts are rounded down to MiB, at least 1 MiB).
pub fn bench_sized(
    platform: &Arc<dyn Platform>,
    dev: Arc<dyn BlockDevice>,
    sizes: BenchSizes,
) -> Result<Vec<BenchRow>> {
    let cached = (sizes.cached_write_bytes / MIB).max(1) * MIB;
    let io = (sizes.io_bytes / MIB).max(1) * MIB;
    let bs = sizes.block_size;
    let sync_blocks = sizes.sync_ops.max(1) as u64;
    if dev.info().capacity_bytes() < io + sync_blocks * bs + 8 * MIB {
        return Err(Errno::ENOSPC);
    }
    let queue: Arc<dyn BlockDevice> = Arc::new(Queue::new(dev));
    let fs = bench_fs(platform, queue.clone(), cached.max(io) + 32 * MIB, bs)?;
    let now = || platform.now_ns();
    let chunk = bench_chunk();
    let mut rows = Vec::new();

    rows.extend(cached_write_rows(platform, &fs, cached, &chunk)?);

    // Both regions the next figures and their raw baselines write (the file's blocks on this
    // filesystem start at its first data block; the raw ones lie 8 MiB further), written once
    // untimed: the first write to a region of a host image file costs the host its allocation
    // (~25x a rewrite under TCG on a sparse image, see `bench_dio`), which would otherwise land
    // on whichever side touches a region first. The raw bios carry the file's bytes from
    // buffers filled once.
    let data_start = fs.config().meta_blocks * bs;
    let base = data_start + 8 * MIB;
    let mut raw_bufs: Vec<DmaBuffer> =
        (0..RAW_DEPTH).map(|_| DmaBuffer::new(platform, MIB as usize)).collect::<Result<_>>()?;
    raw_bufs.iter_mut().for_each(|b| b.as_mut_slice().copy_from_slice(&chunk));
    raw_seq_bufs_ns(platform, &*queue, BioOp::Write, data_start, base + io - data_start, &raw_bufs, true)?;

    // Writes + fsync, then cold and warm reads.
    let g = fs.create()?;
    let mut open = g.open();
    let t = now();
    for i in 0..io / MIB {
        g.write(&mut open, i * MIB, &chunk)?;
    }
    g.fsync(&mut open, false)?;
    let fsync_w = mib_s(io, now() - t);
    rows.push(("buffered_write_fsync_mib_s", fsync_w, "MiB/s"));
    let (first, end) = (data_start / bs, (base + io) / bs);
    let placed = |e: &super::testfs::Extent| e.kind.disk().is_some_and(|d| d >= first && d + e.len <= end);
    if !g.extents().iter().all(placed) {
        return Err(Errno::EINVAL);
    }
    g.drop_cache()?;
    let mut buf = vec![0u8; MIB as usize];
    for (name, _) in [("buffered_read_cold_mib_s", 0), ("buffered_read_warm_mib_s", 1)] {
        let mut reader = g.open();
        let t = now();
        for i in 0..io / MIB {
            if g.read(&mut reader, i * MIB, &mut buf)? != MIB as usize {
                return Err(Errno::EIO);
            }
            black_box(&buf);
        }
        rows.push((name, mib_s(io, now() - t), "MiB/s"));
    }
    let cold = rows.iter().find(|r| r.0 == "buffered_read_cold_mib_s").map_or(0.0, |r| r.1);
    g.truncate(0)?;

    // 4 KiB write + fdatasync, and O_DSYNC writes, over allocated blocks.
    let h = fs.create()?;
    let mut open = h.open();
    let block = vec![0x3Cu8; bs as usize];
    for i in 0..sync_blocks {
        h.write(&mut open, i * bs, &block)?;
    }
    h.fsync(&mut open, false)?;
    let t = now();
    for i in 0..sync_blocks {
        h.write(&mut open, i * bs, &block)?;
        h.fsync(&mut open, true)?;
    }
    rows.push(("fsync_4k_us", (now() - t) as f64 / sync_blocks as f64 / 1e3, "us"));
    let t = now();
    for i in 0..sync_blocks {
        h.write_flags(&mut open, i * bs, &block, WriteFlags::DSYNC)?;
    }
    rows.push(("osync_write_4k_us", (now() - t) as f64 / sync_blocks as f64 / 1e3, "us"));

    // Raw sequential figures on the same queue, 8 MiB into the filesystem's data blocks.
    let raw = |op| raw_seq_bufs_ns(platform, &*queue, op, base, io, &raw_bufs, op == BioOp::Write);
    let raw_w = mib_s(io, raw(BioOp::Write)?);
    let raw_r = mib_s(io, raw(BioOp::Read)?);
    rows.push(("raw_seq_write_mib_s", raw_w, "MiB/s"));
    rows.push(("raw_seq_read_mib_s", raw_r, "MiB/s"));
    rows.push(("buffered_write_fsync_mib_s_vs_blk", fsync_w / raw_w, "x"));
    rows.push(("buffered_read_cold_mib_s_vs_blk", cold / raw_r, "x"));
    // What a buffered path can reach at best here: the device transfer and one copy by the CPU,
    // one after the other (per MiB, their times add up).
    let memcpy = rows.iter().find(|r| r.0 == "memcpy_mib_s").map_or(0.0, |r| r.1);
    let serial = |a: f64, b: f64| 1.0 / (1.0 / a + 1.0 / b);
    let (ceil_w, ceil_r) = (serial(raw_w, memcpy), serial(raw_r, memcpy));
    rows.push(("buffered_write_fsync_ceiling_mib_s", ceil_w, "MiB/s"));
    rows.push(("buffered_read_cold_ceiling_mib_s", ceil_r, "MiB/s"));
    rows.push(("buffered_write_fsync_mib_s_vs_ceiling", fsync_w / ceil_w, "x"));
    rows.push(("buffered_read_cold_mib_s_vs_ceiling", cold / ceil_r, "x"));
    Ok(rows)
}

/// The memcpy ceiling and the two cached-write passes (see the module docs) over `bytes`.
fn cached_write_rows(
    platform: &Arc<dyn Platform>,
    fs: &Arc<MemFs>,
    bytes: u64,
    chunk: &[u8],
) -> Result<Vec<BenchRow>> {
    let now = || platform.now_ns();
    let mut rows = Vec::new();
    let mut dst = vec![0u8; (64 * MIB).min(bytes) as usize];
    let copy_pass = |dst: &mut [u8], bytes: u64| {
        let mut off = 0usize;
        for _ in 0..bytes / MIB {
            if off + chunk.len() > dst.len() {
                off = 0;
            }
            dst[off..off + chunk.len()].copy_from_slice(chunk);
            black_box(&dst);
            off += chunk.len();
        }
    };
    let warm = dst.len() as u64;
    copy_pass(&mut dst, warm);
    let t = now();
    copy_pass(&mut dst, bytes);
    let memcpy = mib_s(bytes, now() - t);
    drop(dst);
    rows.push(("memcpy_mib_s", memcpy, "MiB/s"));

    let pass = || -> Result<f64> {
        let f = fs.create()?;
        let mut open = f.open();
        let t = now();
        for i in 0..bytes / MIB {
            f.write(&mut open, i * MIB, chunk)?;
        }
        let figure = mib_s(bytes, now() - t);
        f.truncate(0)?;
        Ok(figure)
    };
    let first = pass()?;
    let second = pass()?;
    rows.push(("buffered_write_cached_first_touch_mib_s", first, "MiB/s"));
    rows.push(("buffered_write_cached_mib_s", second, "MiB/s"));
    rows.push(("buffered_write_cached_mib_s_vs_memcpy", second / memcpy, "x"));
    Ok(rows)
}

/// Only the cached-write figures (memcpy and both passes) over `bytes` (at least 1 MiB) of a
/// private cache on a small [`RamDisk`](crate::block::RamDisk)-sized `dev` (nothing is
/// written back): what the host reports next to the kernel's figures.
pub fn cached_write_bench(
    platform: &Arc<dyn Platform>,
    dev: Arc<dyn BlockDevice>,
    bytes: u64,
    block_size: u64,
) -> Result<Vec<BenchRow>> {
    let bytes = (bytes / MIB).max(1) * MIB;
    let fs = bench_fs(platform, Arc::new(Queue::new(dev)), bytes + 32 * MIB, block_size)?;
    cached_write_rows(platform, &fs, bytes, &bench_chunk())
}

/// The test filesystem formatted over `queue`, with a private cache of `budget` bytes whose
/// dirty thresholds are at the budget (nothing is written back unless asked).
pub(crate) fn bench_fs(
    platform: &Arc<dyn Platform>,
    queue: Arc<dyn BlockDevice>,
    budget: u64,
    block_size: u64,
) -> Result<Arc<MemFs>> {
    let cc = CacheConfig {
        budget_bytes: budget,
        background_dirty_bytes: budget,
        hard_dirty_bytes: budget,
        max_order: DEFAULT_MAX_ORDER,
    };
    let cache = PageCache::new(platform.clone(), cc)?;
    let ctx = IomapContext::new(queue, cache, block_size, IomapConfig::default())?;
    MemFs::format(&ctx, MemFsConfig::new(block_size))
}

/// The 1 MiB buffer every write figure writes.
fn bench_chunk() -> Vec<u8> {
    (0..MIB as usize).map(|i| (i * 7 + 3) as u8).collect()
}

/// Sequential 1 MiB bios over `[base, base + bytes)`, one in flight per buffer of `bufs` (each
/// at least 1 MiB; bio `i` uses `bufs[i % bufs.len()]`), then a flush if `flush_after`; the
/// nanoseconds it took.
pub(crate) fn raw_seq_bufs_ns(
    platform: &Arc<dyn Platform>,
    dev: &dyn BlockDevice,
    op: BioOp,
    base: u64,
    bytes: u64,
    bufs: &[DmaBuffer],
    flush_after: bool,
) -> Result<u64> {
    let depth = bufs.len();
    if depth == 0 || bufs.iter().any(|b| b.len() < MIB as usize) {
        return Err(Errno::EINVAL);
    }
    let mut pending: Vec<Option<Arc<Completion>>> = (0..depth).map(|_| None).collect();
    let t = platform.now_ns();
    for i in 0..bytes / MIB {
        let slot = (i as usize) % depth;
        if let Some(c) = pending[slot].take() {
            c.wait(dev, &**platform)?;
        }
        let c = Completion::new();
        let mut bio = Bio::new(op, (base + i * MIB) / SECTOR_SIZE, BioEnd::new(c.clone(), 0));
        let b = &bufs[slot];
        let virt = core::ptr::NonNull::new(b.as_slice().as_ptr() as *mut u8).ok_or(Errno::EINVAL)?;
        // SAFETY: the caller's buffers outlive this function, past every bio's completion (all
        // are waited for below), and each in-flight bio has its own buffer.
        let seg = unsafe { Segment::new(virt, b.phys(), MIB as u32) };
        bio.push(seg).map_err(|_| Errno::EINVAL)?;
        dev.submit(bio);
        pending[slot] = Some(c);
    }
    for c in pending.into_iter().flatten() {
        c.wait(dev, &**platform)?;
    }
    if flush_after {
        flush(dev, &**platform)?;
    }
    Ok(platform.now_ns() - t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use crate::platform::StdPlatform;

    const CACHED_ROWS: [&str; 4] = [
        "memcpy_mib_s",
        "buffered_write_cached_first_touch_mib_s",
        "buffered_write_cached_mib_s",
        "buffered_write_cached_mib_s_vs_memcpy",
    ];

    /// The row names, after checking every value is a positive number.
    fn names(rows: &[BenchRow]) -> Vec<&'static str> {
        assert!(rows.iter().all(|r| r.1.is_finite() && r.1 > 0.0), "{rows:?}");
        rows.iter().map(|r| r.0).collect()
    }

    #[test]
    fn bench_rows_are_produced_at_a_tiny_size() {
        let p = StdPlatform::arc();
        let dev = Arc::new(RamDisk::new(64 << 20, 512).unwrap());
        let sizes =
            BenchSizes { cached_write_bytes: 2 * MIB, io_bytes: 2 * MIB, sync_ops: 4, block_size: 4096 };
        let rows = bench_sized(&p, dev, sizes).unwrap();
        let names = names(&rows);
        assert_eq!(names[..4], CACHED_ROWS);
        assert_eq!(
            names[4..],
            [
                "buffered_write_fsync_mib_s",
                "buffered_read_cold_mib_s",
                "buffered_read_warm_mib_s",
                "fsync_4k_us",
                "osync_write_4k_us",
                "raw_seq_write_mib_s",
                "raw_seq_read_mib_s",
                "buffered_write_fsync_mib_s_vs_blk",
                "buffered_read_cold_mib_s_vs_blk",
                "buffered_write_fsync_ceiling_mib_s",
                "buffered_read_cold_ceiling_mib_s",
                "buffered_write_fsync_mib_s_vs_ceiling",
                "buffered_read_cold_mib_s_vs_ceiling",
            ]
        );
    }

    #[test]
    fn cached_write_rows_alone() {
        let p = StdPlatform::arc();
        let dev = Arc::new(RamDisk::new(16 << 20, 512).unwrap());
        let rows = cached_write_bench(&p, dev.clone(), 3 * MIB, 4096).unwrap();
        assert_eq!(names(&rows), CACHED_ROWS);
        assert_eq!(rows[3].1, rows[2].1 / rows[0].1, "the ratio is of the second pass");
        let meta = MemFsConfig::new(4096).meta_blocks * 4096;
        assert!(dev.stats().write_bytes <= meta, "only the metadata record is written: {:?}", dev.stats());
    }
}
