//! `cargo xtask run`: show the system doing its job.
//!
//! On the first virtio-blk disk (behind the request [`Queue`]): format frond, mount it through
//! the file API with a page cache sized from the kernel's memory, write a file, clone it,
//! write to the clone (copy on write), fsync, unmount, mount again, verify both files byte for
//! byte, run fsck; one progress line per step and a summary. Then the filesystem's portable
//! self-test suites run on the same disk (as `scratch0`), and the run ends with their closing
//! `N passed, N failed` line.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::block::queue::Queue;
use foliage_drivers::block::BlockDevice;
use foliage_drivers::platform::Platform;
use foliage_drivers::selftest::{self, NoObserver, Summary, TestEnv};
use foliage_fs::frond::{fsck, mkfs, MkfsOptions};
use foliage_fs::vfs::{FrondFs, MountOptions, OpenFlags};

use crate::disks::Disk;
use crate::exit::{exit, ExitCode};
use crate::serial::Console;

const MIB: usize = 1 << 20;
/// Size of the demo file.
const FILE_BYTES: usize = 8 * MIB;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i / 4096) as u8).wrapping_mul(31).wrapping_add(seed ^ (i as u8))).collect()
}

fn step<T>(platform: &Arc<dyn Platform>, what: &str, f: impl FnOnce() -> Result<T, String>) -> T {
    let t0 = platform.now_ns();
    match f() {
        Ok(v) => {
            println!("demo: {what} ... ok ({} us)", (platform.now_ns() - t0) / 1000);
            v
        }
        Err(e) => {
            println!("demo: {what} ... FAILED: {e}");
            exit(ExitCode::Fail)
        }
    }
}

fn err<E: core::fmt::Display>(e: E) -> String {
    alloc::format!("{e}")
}

fn read_file(fs: &Arc<FrondFs>, name: &[u8]) -> Result<Vec<u8>, String> {
    let f = fs.open_at(fs.root(), name, OpenFlags::RDONLY, 0).map_err(err)?;
    let mut buf = vec![0u8; f.size() as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = f.read(done as u64, &mut buf[done..]).map_err(err)?;
        if n == 0 {
            return Err(String::from("short read"));
        }
        done += n;
    }
    Ok(buf)
}

/// Runs the demonstration, then the filesystem suites, and ends the run.
pub fn run(platform: &Arc<dyn Platform>, disks: &[Disk], cache_bytes: u64) -> ! {
    let Some(disk) = disks.first() else {
        println!("no virtio-blk disk found");
        exit(ExitCode::Fail);
    };
    let raw: Arc<dyn BlockDevice> = disk.dev.clone();
    let info = raw.info();
    println!(
        "demo: disk {} (virtio-blk), {} MiB, {}-byte sectors; page cache budget {} MiB",
        disk.name,
        info.capacity_bytes() >> 20,
        info.logical_block_size,
        cache_bytes >> 20
    );
    let t0 = platform.now_ns();
    let dev: Arc<dyn BlockDevice> = Arc::new(Queue::new(raw.clone()));
    step(platform, "mkfs (frond, 4 KiB blocks)", || {
        mkfs(dev.clone(), platform.clone(), &MkfsOptions::default()).map_err(err)
    });
    let opts = MountOptions::new(cache_bytes);
    let fs = step(platform, "mount", || FrondFs::mount(dev.clone(), platform.clone(), opts).map_err(err));
    let original = pattern(1, FILE_BYTES);
    let mut cow = original.clone();
    cow[MIB + 100..MIB + 100 + 5000].fill(b'Z');
    step(platform, "write 8 MiB to /original and fsync", || {
        let f = fs.open_at(fs.root(), b"original", OpenFlags::RDWR | OpenFlags::CREAT, 0o644).map_err(err)?;
        let n = f.write(0, &original).map_err(err)?;
        if n != FILE_BYTES {
            return Err(alloc::format!("short write {n}"));
        }
        f.fsync().map_err(err)
    });
    let free_before = fs.statfs().map(|s| s.free).unwrap_or(0);
    step(platform, "clone /original to /clone (reflink)", || {
        let src = fs.open_at(fs.root(), b"original", OpenFlags::RDONLY, 0).map_err(err)?;
        let dst = fs.open_at(fs.root(), b"clone", OpenFlags::RDWR | OpenFlags::CREAT, 0o644).map_err(err)?;
        dst.clone_range(&src, 0, 0, 0).map_err(err)?;
        dst.fsync().map_err(err)
    });
    let free_after_clone = fs.statfs().map(|s| s.free).unwrap_or(0);
    println!(
        "demo: clone of {} MiB shares its data: {} block(s) taken, all metadata (free {} -> {})",
        FILE_BYTES / MIB,
        free_before.saturating_sub(free_after_clone),
        free_before,
        free_after_clone
    );
    step(platform, "copy-on-write: 5000 bytes into /clone at 1 MiB + 100, fsync", || {
        let f = fs.open_at(fs.root(), b"clone", OpenFlags::RDWR, 0).map_err(err)?;
        f.write((MIB + 100) as u64, &cow[MIB + 100..MIB + 5100]).map_err(err)?;
        f.fsync().map_err(err)
    });
    let free_after_cow = fs.statfs().map(|s| s.free).unwrap_or(0);
    println!("demo: the COW write took {} new block(s)", free_after_clone.saturating_sub(free_after_cow));
    step(platform, "unmount", || fs.unmount().map_err(err));
    let fs =
        step(platform, "mount again", || FrondFs::mount(dev.clone(), platform.clone(), opts).map_err(err));
    step(platform, "verify /original (unchanged) and /clone (with the COW write)", || {
        if read_file(&fs, b"original")? != original {
            return Err(String::from("/original differs"));
        }
        if read_file(&fs, b"clone")? != cow {
            return Err(String::from("/clone differs"));
        }
        Ok(())
    });
    let st = fs.statfs().map_err(err);
    step(platform, "unmount", || fs.unmount().map_err(err));
    let report = step(platform, "fsck", || fsck(dev.clone(), platform.clone()).map_err(err));
    if !report.is_clean() {
        println!("demo: fsck found problems: {:?}", report.problems);
        exit(ExitCode::Fail);
    }
    if let Ok(st) = st {
        println!(
            "demo: summary: 2 files, {} of {} blocks free, {} inodes, fsck clean ({} inodes checked), {} ms",
            st.free,
            st.blocks,
            st.files,
            report.inodes,
            (platform.now_ns() - t0) / 1_000_000
        );
    }
    println!("demo: now the filesystem self-test suites on {} (as scratch0)", disk.name);
    let mut env = TestEnv::new(platform.clone());
    env.add_device("scratch0", raw);
    let mut summary = Summary::default();
    for table in foliage_fs::selftest::KERNEL_TABLES {
        summary.add(&selftest::run(table, "", &env, &mut Console, &mut NoObserver));
    }
    for name in &summary.failures {
        println!("failed: {name}");
    }
    println!("{}", summary.line());
    exit(if summary.failed == 0 { ExitCode::Pass } else { ExitCode::Fail })
}
