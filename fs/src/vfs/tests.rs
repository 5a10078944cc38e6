//! Host runs of the filesystem suites over RamDisks.

use std::string::String;
use std::sync::Arc;

use foliage_drivers::selftest::{run, NoObserver, TestCase, TestEnv};

use crate::block::{BlockDevice, RamDisk};
use crate::platform::StdPlatform;
use crate::selftest;

fn run_table(table: &[TestCase]) {
    let mut env = TestEnv::new(StdPlatform::arc());
    let disk: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(64 << 20, 512).unwrap());
    env.add_device("scratch0", disk);
    let mut out = String::new();
    let s = run(table, "", &env, &mut out, &mut NoObserver);
    std::print!("{out}");
    assert_eq!(s.failed, 0, "failed: {:?}\n{out}", s.failures);
    assert_eq!(s.passed, table.len());
}

#[test]
fn buffered_suite() {
    run_table(selftest::BUFFERED);
}

#[test]
fn cow_suite() {
    run_table(selftest::COW);
}

#[test]
fn errors_suite() {
    run_table(selftest::ERRORS);
}

#[test]
fn direct_suite() {
    run_table(selftest::DIRECT);
}

#[test]
fn crash_suite() {
    run_table(selftest::CRASH);
}

// ---- host-only: threads -------------------------------------------------------------------

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::vec;
use std::vec::Vec;

use crate::block::prng::SplitMix64;
use crate::frond::{mkfs, MkfsOptions};
use crate::vfs::{FallocFlags, FrondFs, MountOptions, OpenFlags};

/// A writer (writes, truncates, punches, clones into a second file), an fsync loop, a
/// background-work loop and two readers on one mount: no deadlock, no error, and the files read
/// back as the writer's model after a remount.
#[test]
fn threads_writer_fsync_background_readers() {
    let p = StdPlatform::arc();
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(64 << 20, 512).unwrap());
    mkfs(dev.clone(), p.clone(), &MkfsOptions { block_size: 1024, ..MkfsOptions::default() }).unwrap();
    let fs = FrondFs::mount(dev.clone(), p.clone(), MountOptions::new(4 << 20)).unwrap();
    let f = Arc::new(fs.open_at(fs.root(), b"t", OpenFlags::RDWR | OpenFlags::CREAT, 0o644).unwrap());
    let g = Arc::new(fs.open_at(fs.root(), b"u", OpenFlags::RDWR | OpenFlags::CREAT, 0o644).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    {
        let (f, stop) = (f.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                f.fsync().unwrap();
            }
        }));
    }
    {
        let (fs, stop) = (fs.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                fs.background_work();
                thread::yield_now();
            }
        }));
    }
    for k in 0..2 {
        let (f, stop) = (f.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut rng = SplitMix64::new(k);
            while !stop.load(Ordering::Acquire) {
                f.read(rng.below(1 << 20), &mut buf).unwrap();
            }
        }));
    }
    let seed = 0x7A11;
    let mut rng = SplitMix64::new(seed);
    let mut model = vec![0u8; 0];
    for op in 0..150u64 {
        let off = rng.below(1 << 20);
        let len = 1 + rng.below(64 << 10);
        match rng.below(10) {
            0..=6 => {
                let data: Vec<u8> = (0..len).map(|i| (i ^ op) as u8).collect();
                assert_eq!(f.write(off, &data).unwrap(), data.len(), "seed {seed:#x} op {op}");
                if model.len() < (off + len) as usize {
                    model.resize((off + len) as usize, 0);
                }
                model[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            7 => {
                f.truncate(off).unwrap();
                model.resize(off as usize, 0);
            }
            8 => {
                f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, off, len).unwrap();
                let e = ((off + len) as usize).min(model.len());
                if (off as usize) < e {
                    model[off as usize..e].fill(0);
                }
            }
            _ => {
                // A clone whose last block is partial must become the destination's EOF.
                g.truncate(0).unwrap();
                g.clone_range(&f, 0, 0, 0).unwrap();
            }
        }
    }
    stop.store(true, Ordering::Release);
    for h in helpers {
        h.join().unwrap();
    }
    drop((f, g));
    fs.unmount().unwrap();
    let fs = FrondFs::mount(dev.clone(), p.clone(), MountOptions::new(4 << 20)).unwrap();
    let f = fs.open_at(fs.root(), b"t", OpenFlags::RDONLY, 0).unwrap();
    let mut got = vec![0u8; f.size() as usize];
    let mut done = 0;
    while done < got.len() {
        done += f.read(done as u64, &mut got[done..]).unwrap();
    }
    assert!(got == model, "seed {seed:#x}: contents differ from the model");
    drop(f);
    fs.unmount().unwrap();
    let r = crate::frond::fsck(dev, p).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

/// The closing call after a short write punches the delalloc the write reserved beyond what it
/// wrote (and only that); the mapping sequence moves so stale iomaps are refused.
#[test]
fn short_write_end_work_punches_unused_delalloc() {
    use crate::frond::{Fork, MapKind};
    use crate::iomap::{IomapFlags, IomapOp, IomapType, MapDone, MapRequest};
    let p = StdPlatform::arc();
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(16 << 20, 512).unwrap());
    mkfs(dev.clone(), p.clone(), &MkfsOptions::default()).unwrap();
    let fs = FrondFs::mount(dev, p, MountOptions::new(4 << 20)).unwrap();
    let f = fs.open_at(fs.root(), b"s", OpenFlags::RDWR | OpenFlags::CREAT, 0o644).unwrap();
    let ops = f.inode().ops().clone();
    let req = MapRequest { pos: 0, len: 8 * 4096, op: IomapOp::WRITE };
    let pair = ops.next(req, None).unwrap().unwrap();
    let m = pair.iomap;
    assert_eq!((m.kind, m.offset, m.length), (IomapType::Delalloc, 0, 8 * 4096));
    assert!(m.flags.contains(IomapFlags::NEW) && ops.is_valid(&m));
    let done =
        MapDone { pos: 0, len: 8 * 4096, processed: 4096 + 100, iomap: m, srcmap: pair.srcmap, error: None };
    let fin = MapRequest { pos: 4096 + 100, len: 0, op: IomapOp::WRITE };
    assert!(ops.next(fin, Some(&done)).unwrap().is_none());
    let left = fs.frond().map(f.ino(), 0, 8, Fork::Data).unwrap();
    assert_eq!((left.kind, left.len), (MapKind::Delalloc, 2), "blocks 0 and 1 (partly written) keep theirs");
    assert_eq!(fs.frond().map(f.ino(), 2, 6, Fork::Data).unwrap().kind, MapKind::Hole);
    assert!(!ops.is_valid(&m), "the punch made the old iomap stale");
}
