//! Host tests: the portable suite over a RamDisk (in order, then with completions shuffled and
//! rationed), plus host-only tests with threads.

use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use foliage_drivers::selftest::{run, NoObserver, TestEnv};

use super::selftest::SUITE;
use crate::block::{BlockDevice, CompletionOrder, RamDisk};
use crate::platform::StdPlatform;

fn env_with(disk: Arc<RamDisk>) -> TestEnv {
    let mut env = TestEnv::new(StdPlatform::arc());
    env.add_device("scratch0", disk as Arc<dyn BlockDevice>);
    env
}

fn run_suite(disk: Arc<RamDisk>, filter: &str) {
    let env = env_with(disk);
    let mut out = String::new();
    let s = run(SUITE, filter, &env, &mut out, &mut NoObserver);
    std::print!("{out}");
    assert_eq!(s.failed, 0, "failed: {:?}\n{out}", s.failures);
    assert!(s.passed > 0);
}

#[test]
fn suite_over_ramdisk() {
    run_suite(Arc::new(RamDisk::new(64 << 20, 512).unwrap()), "");
}

#[test]
fn suite_with_shuffled_rationed_completions() {
    let disk = Arc::new(RamDisk::new(64 << 20, 512).unwrap());
    disk.set_completion_order(CompletionOrder::Shuffle { seed: 7 });
    disk.set_poll_budget(Some(3));
    // The exact-count tests are order independent; skip only the 64 MiB one for time.
    let names: Vec<&str> = SUITE.iter().map(|t| t.name).filter(|n| !n.contains("64mib")).collect();
    let env = env_with(disk);
    for name in names {
        let mut out = String::new();
        let s = run(SUITE, name, &env, &mut out, &mut NoObserver);
        assert_eq!(s.failed, 0, "{out}");
    }
}

// ---- host-only: threads -------------------------------------------------------------------

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::vec;

use super::selftest::{Rig, RigOpts};
use super::{writeback_range, WritebackMode};
use crate::block::prng::SplitMix64;

fn thread_rig(fill: u8, cache: u64) -> Rig {
    let disk = Arc::new(RamDisk::from_image(vec![fill; 64 << 20], 512));
    let mut opts = RigOpts::new(4096);
    opts.cache_bytes = cache;
    let rig = Rig::on(StdPlatform::arc(), disk as Arc<dyn BlockDevice>, opts).unwrap();
    rig.cache.set_dirty_thresholds(cache / 8, cache / 4).unwrap();
    rig
}

/// The byte every write puts at file offset `i` (so any read must see it or a zero).
fn p(i: u64) -> u8 {
    (i.wrapping_mul(31) % 251) as u8 + 1
}

#[test]
fn writer_with_concurrent_fsync_flusher_and_readers() {
    let rig = thread_rig(0xEE, 8 << 20);
    let f = rig.file().unwrap();
    let span = 2u64 << 20;
    let stop = Arc::new(AtomicBool::new(false));
    let mut helpers = Vec::new();
    for k in 0..3 {
        let (f, stop) = (f.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut open = f.open();
            let mut rng = SplitMix64::new(k);
            let mut buf = vec![0u8; 64 << 10];
            while !stop.load(Ordering::Acquire) {
                match k {
                    0 => f.fsync(&mut open, rng.below(2) == 0).unwrap(),
                    1 => {
                        let mode = WritebackMode::Background { budget_bytes: 256 << 10 };
                        writeback_range(f.file(), &f.ops(), 0, u64::MAX, mode).unwrap();
                        f.file().mapping().invalidate_range(0, span).ok();
                    }
                    _ => {
                        let pos = rng.below(span);
                        let n = f.read(&mut open, pos, &mut buf).unwrap();
                        for (j, &b) in buf[..n].iter().enumerate() {
                            let i = pos + j as u64;
                            assert!(b == 0 || b == p(i), "byte {i} is {b:#x}: stale data");
                        }
                    }
                }
            }
        }));
    }
    let mut open = f.open();
    let mut rng = SplitMix64::new(99);
    let mut model = vec![0u8; 0];
    for _ in 0..400 {
        let pos = rng.below(span);
        let len = 1 + rng.below(32 << 10);
        let data: Vec<u8> = (pos..pos + len).map(p).collect();
        assert_eq!(f.write(&mut open, pos, &data).unwrap(), len as usize);
        let end = (pos + len) as usize;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[pos as usize..end].copy_from_slice(&data);
    }
    stop.store(true, Ordering::Release);
    for h in helpers {
        h.join().unwrap();
    }
    f.fsync(&mut open, false).unwrap();
    f.drop_cache().unwrap();
    assert_eq!(f.read_all(&mut open).unwrap(), model);
    assert_eq!(f.read_disk(0, model.len()).unwrap(), model);
}

#[test]
fn readers_race_truncate_punch_and_zero() {
    let rig = thread_rig(0xEE, 4 << 20);
    let f = rig.file().unwrap();
    let span = 1u64 << 20;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for k in 0..2 {
        let (f, stop) = (f.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            let mut open = f.open();
            let mut rng = SplitMix64::new(k + 10);
            let mut buf = vec![0u8; 32 << 10];
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                let pos = rng.below(span);
                let n = f.read(&mut open, pos, &mut buf).unwrap();
                for (j, &b) in buf[..n].iter().enumerate() {
                    let i = pos + j as u64;
                    assert!(b == 0 || b == p(i), "byte {i} is {b:#x}: stale data exposed");
                }
                reads += 1;
            }
            reads
        }));
    }
    let mut open = f.open();
    let mut rng = SplitMix64::new(7);
    for round in 0..300u64 {
        let pos = rng.below(span);
        let len = 1 + rng.below(48 << 10);
        match round % 6 {
            0..=2 => {
                let data: Vec<u8> = (pos..pos + len).map(p).collect();
                f.write(&mut open, pos, &data).unwrap();
            }
            3 => f.truncate(pos).unwrap(),
            4 => f.punch_hole(pos, len).unwrap(),
            _ => {
                f.zero_range(pos, len).unwrap();
                if round % 12 == 5 {
                    f.sync_data().unwrap();
                }
            }
        }
    }
    stop.store(true, Ordering::Release);
    let total: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    f.fsync(&mut open, false).unwrap();
    let size = f.size() as usize;
    let cached = f.read_all(&mut open).unwrap();
    f.drop_cache().unwrap();
    assert_eq!(f.read_all(&mut open).unwrap(), cached);
    assert_eq!(f.read_disk(0, size).unwrap(), cached);
}
