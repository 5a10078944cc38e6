//! Metadata benchmarks: rates of the operations frond's callers lean on, over a RamDisk.
//!
//! [`run`] builds a fresh filesystem (64 MiB + 48 KiB per file, 4 KiB blocks) on a RamDisk and times, with the
//! platform clock: file creation, lookup, `stat`, delalloc reservation + writeback allocation +
//! unwritten conversion, mapping lookups on a fragmented file, reflink clones, commits, and a
//! full fsck. Each row is `(name, value, unit)`; the xtask `bench` command prints them. Numbers
//! depend on the build profile (use release) and the host.
//!
//! Lock order: takes the filesystem's locks like any caller.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | fs_mark / `xfs_io -c 'fiemap'` timings | [`run`] rows |

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::engine::Fork;
use super::inode::S_IFREG;
use super::{fsck, mkfs, Frond, MkfsOptions};
use crate::block::RamDisk;
use crate::platform::Platform;
use crate::Result;

/// One result row: name, value, unit.
pub type Row = (&'static str, f64, &'static str);

fn rate(n: u64, ns: u64) -> f64 {
    n as f64 * 1e9 / ns.max(1) as f64
}

/// Runs every benchmark. `files` sets the scale (1000 is a quick run).
pub fn run(platform: Arc<dyn Platform>, files: u32) -> Result<Vec<Row>> {
    let disk = Arc::new(RamDisk::new((64 << 20) + files as u64 * (48 << 10), 512)?);
    mkfs(disk.clone(), platform.clone(), &MkfsOptions::default())?;
    let fs = Frond::mount(disk.clone(), platform.clone()).map_err(crate::Errno::from)?;
    let root = fs.root_ino();
    let clock = || platform.now_ns();
    let mut rows = Vec::new();

    let names: Vec<Vec<u8>> = (0..files).map(|i| alloc::format!("file-{i:06}").into_bytes()).collect();
    let t = clock();
    let mut inos = Vec::with_capacity(names.len());
    for n in &names {
        inos.push(fs.create(root, n, S_IFREG | 0o644, 0, 0)?);
    }
    rows.push(("create", rate(files as u64, clock() - t), "ops/s"));

    let t = clock();
    for n in &names {
        fs.lookup(root, n)?;
    }
    rows.push(("lookup", rate(files as u64, clock() - t), "ops/s"));

    let t = clock();
    for &i in &inos {
        fs.stat(i)?;
    }
    rows.push(("stat", rate(files as u64, clock() - t), "ops/s"));

    // Buffered-write life cycle per file: reserve 8 blocks, allocate unwritten, convert.
    let t = clock();
    for &i in &inos {
        fs.reserve_delalloc(i, 0, 8, Fork::Data)?;
        let m = fs.allocate(i, 0, 8, true, Fork::Data)?;
        fs.convert_unwritten(i, 0, m.len)?;
    }
    rows.push(("delalloc+allocate+convert (8 blocks)", rate(files as u64, clock() - t), "files/s"));

    // A fragmented file: every other block, then map every extent.
    let frag = fs.create(root, b"fragmented", S_IFREG | 0o644, 0, 0)?;
    let extents = (files as u64).min(4000);
    for k in 0..extents {
        fs.allocate(frag, 2 * k, 1, false, Fork::Data)?;
    }
    let t = clock();
    for k in 0..extents {
        fs.map(frag, 2 * k, 1, Fork::Data)?;
    }
    rows.push(("map (fragmented file)", rate(extents, clock() - t), "lookups/s"));

    let t = clock();
    let copies = files.min(200);
    for k in 0..copies {
        let c = fs.create(root, alloc::format!("clone-{k}").as_bytes(), S_IFREG | 0o644, 0, 0)?;
        fs.clone_extents(inos[0], 0, c, 0, 8)?;
    }
    rows.push(("create + clone 8 blocks", rate(copies as u64, clock() - t), "ops/s"));

    let t = clock();
    for k in 0..64u32 {
        fs.create(root, alloc::format!("sync-{k}").as_bytes(), S_IFREG, 0, 0)?;
        fs.sync()?;
    }
    rows.push(("create + commit", rate(64, clock() - t), "ops/s"));

    fs.unmount()?;
    let t = clock();
    let report = fsck(disk, platform.clone())?;
    rows.push(("fsck (whole image)", (clock() - t) as f64 / 1e6, "ms"));
    rows.push(("fsck problems", report.problems.len() as f64, "count"));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::StdPlatform;

    #[test]
    fn bench_rows_are_produced_and_the_image_stays_clean() {
        let rows = run(StdPlatform::arc(), 50).unwrap();
        assert_eq!(rows.len(), 9);
        assert!(rows.iter().take(7).all(|r| r.1 > 0.0), "{rows:?}");
        assert_eq!(rows[8], ("fsck problems", 0.0, "count"));
    }
}
