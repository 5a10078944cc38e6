//! Filesystem benchmarks through the file API on a given device: `(name, value, unit)` rows for
//! `cargo xtask bench` (the kernel calls [`bench()`] over virtio-blk) and the host.
//!
//! The device (but its last [`RAW_BYTES`]) is formatted with frond (4 KiB blocks) and mounted
//! behind a fresh [`Queue`] with a page cache of [`FsBenchSizes::cache_bytes`].
//!
//! - `fs_create_files_per_s`: create + write 100 bytes (inline) + close, for
//!   [`FsBenchSizes::files`] files spread over 10 directories, then one `syncfs`.
//! - `fs_clone_256m_us`, `fs_clone_1g_us`: `FICLONERANGE` of a whole file written sequentially
//!   (1 MiB writes) and fsync'd, into a new file (after an untimed one-block clone: the first
//!   clone of a filesystem creates the reference-count tree); both sources are written first,
//!   the log checkpointed (untimed), then 5 rounds of one clone of each into fresh files,
//!   alternating (a change of machine load hits both sizes alike); the medians are the figures
//!   and `fs_clone_1g_us_vs_256m` is their ratio. The cost grows with extents, not bytes
//!   (target <= 1.5).
//! - `fs_buffered_write_cached_mib_s`: 1 MiB buffered writes into a new file, no fsync (the
//!   cache holds it: dirty thresholds at the budget for these figures);
//!   `fs_buffered_write_fsync_mib_s`: the same into another file plus one fsync; `fs_buffered_read_cold_mib_s`: reading it back after a remount (readahead);
//!   `fs_buffered_read_warm_mib_s`: again from the cache.
//! - `fs_fsync_4k_us`: mean of (4 KiB overwrite + fdatasync); `fs_osync_write_4k_us`: mean of
//!   4 KiB O_DSYNC overwrites.
//! - `fs_direct_write_seq_mib_s` (on a freshly formatted filesystem): a new file written front to back with 1 MiB `O_DIRECT` writes
//!   (one per call: the file API is synchronous, so one request in flight; allocation of
//!   unwritten blocks, conversion and the size at completion included);
//!   `fs_direct_read_seq_mib_s`: read back with 1 MiB `O_DIRECT` reads. Both in rounds of
//!   [`RAW_BYTES`] alternating (order swapped every round) with raw rounds on the same queue:
//!   1 MiB bios one at a time over the [`RAW_BYTES`] left unformatted at the end of the device,
//!   `fs_raw_seq_write_qd1_mib_s` / `fs_raw_seq_read_qd1_mib_s`, and the ratios
//!   `fs_direct_write_seq_mib_s_vs_blk` / `fs_direct_read_seq_mib_s_vs_blk` against them. The
//!   raw bios use the direct calls' own buffer (same memory, same bytes), and the raw region is
//!   written once untimed before the rounds: the first write to a region of a host image file
//!   costs the host its allocation (~25x a rewrite under TCG on a sparse image, see
//!   `iomap::bench_dio`), and the file's blocks were written by the earlier figures of this
//!   bench (the 256 MiB and 1 GiB clone sources and the buffered files cover the front of the
//!   device). Before this the raw rounds paid that on their first round and read 1.47x.
//!
//! Not part of the test run. Locking: none of its own.
//! Linux <-> here: `fs_mark`-style creates, `xfs_io -c reflink` timing, `fio --bs=1m` / `--bs=4k
//! --fdatasync=1`, `fio --direct=1 --bs=1m --iodepth=1`.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::{FrondFs, MountOptions, OpenFlags};
use crate::block::{BioOp, BlockDevice, Queue};
use crate::frond::{mkfs, MkfsOptions};
use crate::iomap::bench::raw_seq_bufs_ns;
use crate::platform::{DmaBuffer, Platform};
use crate::{Errno, Result};

/// One benchmark result: name, value, unit.
pub type BenchRow = (&'static str, f64, &'static str);

const MIB: u64 = 1 << 20;

/// Clones per clone figure (the median is reported).
const CLONES: usize = 5;

/// The end of the device left unformatted for the raw rounds of the direct figures (also the
/// size of one round).
pub const RAW_BYTES: u64 = 32 * MIB;

/// How much each benchmark moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsBenchSizes {
    /// Files of the create benchmark.
    pub files: u32,
    /// Size of the small clone source (the large one is 4 times as big).
    pub clone_small_bytes: u64,
    /// Bytes of the buffered write / read benchmarks.
    pub io_bytes: u64,
    /// Iterations of the 4 KiB sync benchmarks.
    pub sync_ops: u32,
    /// Page-cache budget.
    pub cache_bytes: u64,
}

impl Default for FsBenchSizes {
    fn default() -> Self {
        Self {
            files: 10_000,
            clone_small_bytes: 256 * MIB,
            io_bytes: 256 * MIB,
            sync_ops: 256,
            cache_bytes: 384 * MIB,
        }
    }
}

/// Every benchmark at the default sizes (`EINVAL` if the device cannot hold them: it needs
/// about 5 x 256 MiB plus room).
pub fn bench(platform: &Arc<dyn Platform>, dev: Arc<dyn BlockDevice>) -> Result<Vec<BenchRow>> {
    bench_sized(platform, dev, FsBenchSizes::default())
}

fn mib_s(bytes: u64, ns: u64) -> f64 {
    (bytes as f64 / MIB as f64) / (ns.max(1) as f64 / 1e9)
}

/// Writes `bytes` of `fill` sequentially in 1 MiB writes to a new file `name`.
fn write_file(fs: &Arc<FrondFs>, name: &[u8], bytes: u64, fill: u8) -> Result<super::File> {
    let f = fs.open_at(fs.root(), name, OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
    let chunk = vec![fill; MIB as usize];
    let mut pos = 0;
    while pos < bytes {
        let n = (bytes - pos).min(MIB) as usize;
        let w = f.write(pos, &chunk[..n])?;
        if w == 0 {
            return Err(Errno::EIO);
        }
        pos += w as u64;
    }
    Ok(f)
}

fn read_file(f: &super::File, bytes: u64) -> Result<()> {
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0;
    while pos < bytes {
        let n = f.read(pos, &mut buf)?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        pos += n as u64;
    }
    Ok(())
}

/// Every benchmark at `sizes`.
pub fn bench_sized(
    platform: &Arc<dyn Platform>,
    dev: Arc<dyn BlockDevice>,
    sizes: FsBenchSizes,
) -> Result<Vec<BenchRow>> {
    let need = sizes.clone_small_bytes * 5 + sizes.io_bytes * 2 + 64 * MIB + RAW_BYTES;
    let capacity = dev.info().capacity_bytes();
    if capacity < need {
        return Err(Errno::EINVAL);
    }
    let dev: Arc<dyn BlockDevice> = Arc::new(Queue::new(dev));
    let fs_bytes = capacity - RAW_BYTES;
    let format = || {
        mkfs(dev.clone(), platform.clone(), &MkfsOptions { size: Some(fs_bytes), ..MkfsOptions::default() })
    };
    format()?;
    let opts = MountOptions::new(sizes.cache_bytes);
    let mount = || FrondFs::mount(dev.clone(), platform.clone(), opts).map_err(Errno::from);
    let now = || platform.now_ns();
    let mut rows = Vec::new();

    // Creates.
    let fs = mount()?;
    let dirs: Vec<u64> =
        (0..10).map(|i| fs.mkdir(fs.root(), format!("d{i}").as_bytes(), 0o755)).collect::<Result<_>>()?;
    let t = now();
    for i in 0..sizes.files {
        let d = dirs[(i % 10) as usize];
        let f = fs.open_at(d, format!("f{i}").as_bytes(), OpenFlags::WRONLY | OpenFlags::CREAT, 0o644)?;
        f.write(0, &[i as u8; 100])?;
        f.close()?;
    }
    fs.sync()?;
    rows.push(("fs_create_files_per_s", sizes.files as f64 / ((now() - t) as f64 / 1e9), "files/s"));

    // Clones of sequentially written files, after an untimed one-block clone (the first
    // clone on a filesystem creates its reference-count tree).
    let warm = write_file(&fs, b"clone_warm", 4096, 0x3F)?;
    warm.fsync()?;
    let warm_dst = fs.open_at(fs.root(), b"clone_warm_dst", OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
    warm_dst.clone_range(&warm, 0, 0, 0)?;
    drop((warm, warm_dst));
    // Both sources first, then the timed clones alternate between them (a change of load
    // between two phases would otherwise land on the ratio).
    let clone_bytes = [sizes.clone_small_bytes, sizes.clone_small_bytes * 4];
    let mut sources = Vec::new();
    for (k, bytes) in clone_bytes.into_iter().enumerate() {
        let src = write_file(&fs, format!("clone_src{k}").as_bytes(), bytes, 0x40 + k as u8)?;
        src.fsync()?;
        sources.push(src);
    }
    // An empty log, so no clone pays for a checkpoint the writes made due; then the median of
    // CLONES clones of each into fresh files (one-off costs of the first metadata accesses
    // after writing a large file do not decide the figure).
    fs.frond().checkpoint()?;
    let mut times = [Vec::new(), Vec::new()];
    for c in 0..CLONES {
        for (k, src) in sources.iter().enumerate() {
            let dst = fs.open_at(
                fs.root(),
                format!("clone_dst{k}_{c}").as_bytes(),
                OpenFlags::RDWR | OpenFlags::CREAT,
                0o644,
            )?;
            let t = now();
            dst.clone_range(src, 0, 0, 0)?;
            times[k].push(now() - t);
            if dst.size() != clone_bytes[k] {
                return Err(Errno::EIO);
            }
        }
    }
    drop(sources);
    let mut clone_us = [0f64; 2];
    for (k, t) in times.iter_mut().enumerate() {
        t.sort_unstable();
        clone_us[k] = t[CLONES / 2] as f64 / 1e3;
    }
    rows.push(("fs_clone_256m_us", clone_us[0], "us"));
    rows.push(("fs_clone_1g_us", clone_us[1], "us"));
    rows.push(("fs_clone_1g_us_vs_256m", clone_us[1] / clone_us[0].max(f64::MIN_POSITIVE), "x"));
    fs.unmount()?;

    // Buffered throughput, the dirty thresholds at the budget (as the engine's own figures:
    // the cache holds the whole file, writeback runs only at fsync).
    let fs = mount()?;
    fs.cache().set_dirty_thresholds(sizes.cache_bytes, sizes.cache_bytes)?;
    let io = sizes.io_bytes;
    let t = now();
    let f = write_file(&fs, b"cached", io, 0x11)?;
    rows.push(("fs_buffered_write_cached_mib_s", mib_s(io, now() - t), "MiB/s"));
    drop(f);
    // Untimed: write it back and drop it, so the next figure starts from an empty cache.
    fs.drop_caches()?;
    let t = now();
    let f = write_file(&fs, b"synced", io, 0x22)?;
    f.fsync()?;
    rows.push(("fs_buffered_write_fsync_mib_s", mib_s(io, now() - t), "MiB/s"));
    drop(f);
    fs.unmount()?;
    let fs = mount()?;
    let f = fs.open_at(fs.root(), b"synced", OpenFlags::RDWR, 0)?;
    for name in ["fs_buffered_read_cold_mib_s", "fs_buffered_read_warm_mib_s"] {
        let t = now();
        read_file(&f, io)?;
        rows.push((name, mib_s(io, now() - t), "MiB/s"));
    }
    let ops = sizes.sync_ops.max(1);
    let block = [0x33u8; 4096];
    let t = now();
    for i in 0..ops {
        f.write((i as u64 % 256) * 4096, &block)?;
        f.fdatasync()?;
    }
    rows.push(("fs_fsync_4k_us", (now() - t) as f64 / ops as f64 / 1e3, "us"));
    let d = fs.open_at(fs.root(), b"synced", OpenFlags::RDWR | OpenFlags::DSYNC, 0)?;
    let t = now();
    for i in 0..ops {
        d.write((i as u64 % 256) * 4096, &block)?;
    }
    rows.push(("fs_osync_write_4k_us", (now() - t) as f64 / ops as f64 / 1e3, "us"));
    drop((f, d));
    fs.unmount()?;

    // A fresh filesystem for the direct figures (the earlier files would not leave room).
    format()?;
    let fs = mount()?;
    rows.extend(direct_rows(platform, &fs, &*dev, fs_bytes, sizes.io_bytes)?);
    fs.unmount()?;
    Ok(rows)
}

/// The `O_DIRECT` figures (see the module docs): `io` bytes (whole rounds) written to a new file
/// and read back in 1 MiB calls, rounds alternating with raw rounds at `raw_base`.
fn direct_rows(
    platform: &Arc<dyn Platform>,
    fs: &Arc<FrondFs>,
    dev: &dyn BlockDevice,
    raw_base: u64,
    io: u64,
) -> Result<Vec<BenchRow>> {
    let round = RAW_BYTES.min(io.max(MIB)) / MIB * MIB;
    let rounds = (io / round).max(1);
    let f =
        fs.open_at(fs.root(), b"direct", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT, 0o644)?;
    let mut buf = DmaBuffer::new(platform, MIB as usize)?;
    buf.as_mut_slice().iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + 3) as u8);
    let want = buf.as_slice().to_vec();
    // The raw region written once untimed (its first write would cost the host the image file's
    // allocation, which the file's blocks, written by the earlier figures, no longer pay).
    raw_seq_bufs_ns(platform, dev, BioOp::Write, raw_base, round, core::slice::from_ref(&buf), false)?;
    let mut figures = [(0u64, 0u64); 2];
    for (k, op) in [BioOp::Write, BioOp::Read].into_iter().enumerate() {
        let (mut t_direct, mut t_raw) = (0u64, 0u64);
        for r in 0..rounds {
            for turn in 0..2 {
                if (turn + r) % 2 == 1 {
                    let one = core::slice::from_ref(&buf);
                    t_raw += raw_seq_bufs_ns(platform, dev, op, raw_base, round, one, false)?;
                    continue;
                }
                let t = platform.now_ns();
                for i in 0..round / MIB {
                    let pos = r * round + i * MIB;
                    let n = match op {
                        BioOp::Write => f.write(pos, buf.as_slice())?,
                        _ => f.read(pos, buf.as_mut_slice())?,
                    };
                    if n != MIB as usize {
                        return Err(Errno::EIO);
                    }
                }
                t_direct += platform.now_ns() - t;
                if op == BioOp::Read && buf.as_slice() != &want[..] {
                    return Err(Errno::EIO);
                }
            }
        }
        figures[k] = (t_direct, t_raw);
    }
    let bytes = rounds * round;
    let [(w, rw), (r, rr)] = figures.map(|(d, raw)| (mib_s(bytes, d), mib_s(bytes, raw)));
    Ok(vec![
        ("fs_direct_write_seq_mib_s", w, "MiB/s"),
        ("fs_direct_read_seq_mib_s", r, "MiB/s"),
        ("fs_raw_seq_write_qd1_mib_s", rw, "MiB/s"),
        ("fs_raw_seq_read_qd1_mib_s", rr, "MiB/s"),
        ("fs_direct_write_seq_mib_s_vs_blk", w / rw.max(f64::MIN_POSITIVE), "x"),
        ("fs_direct_read_seq_mib_s_vs_blk", r / rr.max(f64::MIN_POSITIVE), "x"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use crate::platform::StdPlatform;

    #[test]
    fn bench_rows_are_produced_at_a_tiny_size() {
        let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(160 << 20, 512).unwrap());
        let sizes = FsBenchSizes {
            files: 200,
            clone_small_bytes: 8 * MIB,
            io_bytes: 8 * MIB,
            sync_ops: 8,
            cache_bytes: 32 * MIB,
        };
        let rows = bench_sized(&StdPlatform::arc(), dev, sizes).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "fs_create_files_per_s",
                "fs_clone_256m_us",
                "fs_clone_1g_us",
                "fs_clone_1g_us_vs_256m",
                "fs_buffered_write_cached_mib_s",
                "fs_buffered_write_fsync_mib_s",
                "fs_buffered_read_cold_mib_s",
                "fs_buffered_read_warm_mib_s",
                "fs_fsync_4k_us",
                "fs_osync_write_4k_us",
                "fs_direct_write_seq_mib_s",
                "fs_direct_read_seq_mib_s",
                "fs_raw_seq_write_qd1_mib_s",
                "fs_raw_seq_read_qd1_mib_s",
                "fs_direct_write_seq_mib_s_vs_blk",
                "fs_direct_read_seq_mib_s_vs_blk"
            ]
        );
        assert!(rows.iter().all(|r| r.1.is_finite() && r.1 > 0.0), "{rows:?}");
    }
}
