//! Host tests of O_DIRECT through frond: a seeded model test mixing direct and buffered I/O,
//! and threads writing disjoint ranges of one file directly in parallel.

use std::format;
use std::string::String;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::vec;
use std::vec::Vec;

use crate::block::prng::SplitMix64;
use crate::block::{BlockDevice, RamDisk};
use crate::frond::{mkfs, MkfsOptions};
use crate::platform::StdPlatform;
use crate::selftest::rig::DioBuf;
use crate::vfs::{File, FrondFs, MountOptions, OpenFlags};

/// A fresh filesystem with `bs`-byte blocks on a 32 MiB RamDisk.
fn fresh(bs: u32) -> (Arc<dyn BlockDevice>, Arc<FrondFs>) {
    let p = StdPlatform::arc();
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(32 << 20, 512).unwrap());
    mkfs(dev.clone(), p.clone(), &MkfsOptions { block_size: bs, ..MkfsOptions::default() }).unwrap();
    let fs = FrondFs::mount(dev.clone(), p, MountOptions::new(4 << 20)).unwrap();
    (dev, fs)
}

/// The whole file through `f` (direct reads use an aligned buffer rounded up to 512 bytes).
fn whole(f: &File) -> Result<Vec<u8>, String> {
    let size = f.size() as usize;
    let mut buf = DioBuf::zeroed(size.div_ceil(512) * 512);
    let n = f.read(0, buf.as_mut_slice()).map_err(|e| format!("read: {e}"))?;
    if n != size {
        return Err(format!("read {n} of {size} bytes"));
    }
    Ok(buf.as_slice()[..size].to_vec())
}

/// `len` bytes seeded by `v`.
fn bytes(v: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((v >> ((i % 8) * 8)) as u8) ^ (i as u8)).collect()
}

/// One seeded run: `ops` random direct and buffered writes and reads, truncates, fsyncs and
/// cache drops on one file, checked against a `Vec` model after every read, at the end through
/// both paths, after a remount and by fsck.
fn model_run(bs: u32, seed: u64, ops: u64) -> Result<(), String> {
    let (dev, fs) = fresh(bs);
    let open = |flags| fs.open_at(fs.root(), b"m", flags, 0o644).map_err(|e| format!("open: {e}"));
    let b = open(OpenFlags::RDWR | OpenFlags::CREAT)?;
    let d = open(OpenFlags::RDWR | OpenFlags::DIRECT)?;
    let mut rng = SplitMix64::new(seed);
    let mut model: Vec<u8> = Vec::new();
    const SPAN: u64 = 384 << 10;
    for op in 0..ops {
        let at = |what: &str| format!("op {op} ({what})");
        let kind = rng.below(10);
        let size = model.len() as u64;
        match kind {
            0..=2 => {
                let (pos, len) = (rng.below(SPAN), 1 + rng.below(24 << 10) as usize);
                let data = bytes(rng.next_u64(), len);
                let n = b.write(pos, &data).map_err(|e| format!("{}: {e}", at("buffered write")))?;
                if n != len {
                    return Err(format!("{}: {n} of {len}", at("buffered write")));
                }
                model.resize(model.len().max(pos as usize + len), 0);
                model[pos as usize..pos as usize + len].copy_from_slice(&data);
            }
            3..=5 => {
                // Sub-block, unaligned to blocks, extending or not; every third one a
                // block-aligned overwrite inside the file (the shared-lock path).
                let (pos, len) = if kind == 5 && size >= bs as u64 {
                    let blocks = size / bs as u64;
                    let first = rng.below(blocks);
                    (first * bs as u64, ((1 + rng.below(4)).min(blocks - first) * bs as u64) as usize)
                } else {
                    (rng.below(SPAN) / 512 * 512, (1 + rng.below(48)) as usize * 512)
                };
                let data = DioBuf::of(&bytes(rng.next_u64(), len));
                let n = d.write(pos, data.as_slice()).map_err(|e| format!("{}: {e}", at("direct write")))?;
                if n != len {
                    return Err(format!("{}: {n} of {len}", at("direct write")));
                }
                model.resize(model.len().max(pos as usize + len), 0);
                model[pos as usize..pos as usize + len].copy_from_slice(data.as_slice());
            }
            6 | 7 => {
                let direct = kind == 7;
                let (pos, len) = if direct {
                    (rng.below(SPAN) / 512 * 512, (1 + rng.below(64)) as usize * 512)
                } else {
                    (rng.below(SPAN), 1 + rng.below(32 << 10) as usize)
                };
                let mut buf = DioBuf::zeroed(len);
                let f = if direct { &d } else { &b };
                let n = f.read(pos, buf.as_mut_slice()).map_err(|e| format!("{}: {e}", at("read")))?;
                let want = (size.saturating_sub(pos) as usize).min(len);
                let what = if direct { "direct read" } else { "buffered read" };
                let expect = model.get(pos as usize..pos as usize + n).unwrap_or(&[]);
                if n != want || buf.as_slice()[..n] != *expect {
                    return Err(format!(
                        "{}: [{pos}, +{len}) got {n} bytes, differs from the model",
                        at(what)
                    ));
                }
            }
            8 => {
                let to = rng.below(SPAN);
                b.truncate(to).map_err(|e| format!("{}: {e}", at("truncate")))?;
                model.resize(to as usize, 0);
            }
            _ => {
                let r = match rng.below(3) {
                    0 => b.fsync(),
                    1 => fs.drop_caches(),
                    _ => {
                        fs.background_work();
                        Ok(())
                    }
                };
                r.map_err(|e| format!("{}: {e}", at("sync")))?;
            }
        }
    }
    for (f, what) in [(&b, "buffered"), (&d, "direct")] {
        if whole(f)? != model {
            return Err(format!("final {what} view differs from the model"));
        }
    }
    drop((b, d));
    fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let p = StdPlatform::arc();
    let fs =
        FrondFs::mount(dev.clone(), p.clone(), MountOptions::new(4 << 20)).map_err(|e| format!("{e}"))?;
    let f = fs.open_at(fs.root(), b"m", OpenFlags::RDONLY, 0).map_err(|e| format!("{e}"))?;
    if whole(&f)? != model {
        return Err(String::from("contents after remount differ from the model"));
    }
    drop(f);
    fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let r = crate::frond::fsck(dev, p).map_err(|e| format!("fsck: {e}"))?;
    if !r.is_clean() {
        return Err(format!("fsck: {:?}", r.problems));
    }
    Ok(())
}

/// Direct and buffered I/O mixed at random on one file equal a `Vec` model (1 KiB and 4 KiB
/// blocks, several seeds; a failure names its seed).
#[test]
fn model_mixed_direct_and_buffered_ops() {
    for bs in [1024, 4096] {
        for seed in 0xD1_0000..0xD1_0004u64 {
            if let Err(e) = model_run(bs, seed, 400) {
                panic!("bs {bs}, seed {seed:#x}: {e}");
            }
        }
    }
}

/// Four threads overwrite their own 1 MiB of one file with block-aligned direct writes (the
/// shared-lock path) while a fifth extends the file with direct appends past them (exclusive)
/// and a reader checks that every 4 KiB block it reads directly was written by the block's
/// owner. The file ends as each writer's last round, after a remount too, and fsck is clean.
#[test]
fn threads_parallel_direct_writes_disjoint_ranges() {
    const REGION: u64 = 1 << 20;
    const CHUNK: usize = 64 << 10;
    const ROUNDS: u8 = 12;
    let (dev, fs) = fresh(4096);
    let f = Arc::new(
        fs.open_at(fs.root(), b"p", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT, 0o644).unwrap(),
    );
    // Owner w writes byte 0x10 * (w + 1) + round; the initial contents are owner 0's round 0.
    let initial = DioBuf::of(&vec![0x10; (4 * REGION) as usize]);
    assert_eq!(f.write(0, initial.as_slice()).unwrap(), initial.as_slice().len());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let f = f.clone();
        writers.push(thread::spawn(move || {
            for round in 0..ROUNDS {
                let buf = DioBuf::of(&vec![0x10 * (w as u8 + 1) + round; CHUNK]);
                for c in 0..REGION / CHUNK as u64 {
                    let pos = w * REGION + c * CHUNK as u64;
                    assert_eq!(f.write(pos, buf.as_slice()).unwrap(), CHUNK, "writer {w} round {round}");
                }
            }
        }));
    }
    let appender = {
        let f = f.clone();
        thread::spawn(move || {
            for k in 0..16u64 {
                let buf = DioBuf::of(&vec![0xF0 | k as u8; 8192]);
                assert_eq!(f.write(4 * REGION + k * 8192, buf.as_slice()).unwrap(), 8192, "append {k}");
            }
        })
    };
    let reader = {
        let (f, stop) = (f.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = SplitMix64::new(0x5EED);
            let mut buf = DioBuf::zeroed(CHUNK);
            while !stop.load(Ordering::Acquire) {
                let pos = rng.below(4 * REGION / 4096) * 4096;
                let n = f.read(pos, buf.as_mut_slice()).unwrap();
                for (i, &v) in buf.as_slice()[..n].iter().enumerate() {
                    let at = pos + i as u64;
                    let owner = (at / REGION).min(4);
                    let ok = match owner {
                        4 => v & 0xF0 == 0xF0,
                        o => v == 0x10 || (v >> 4) == o as u8 + 1,
                    };
                    assert!(ok, "byte {at} is {v:#x}: not its owner's");
                }
            }
        })
    };
    for h in writers {
        h.join().unwrap();
    }
    appender.join().unwrap();
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    let mut want = Vec::new();
    for w in 0..4u8 {
        want.extend(vec![0x10 * (w + 1) + ROUNDS - 1; REGION as usize]);
    }
    for k in 0..16u8 {
        want.extend(vec![0xF0 | k; 8192]);
    }
    assert!(whole(&f).unwrap() == want, "final contents");
    drop(f);
    fs.unmount().unwrap();
    let p = StdPlatform::arc();
    let fs = FrondFs::mount(dev.clone(), p.clone(), MountOptions::new(4 << 20)).unwrap();
    let f = fs.open_at(fs.root(), b"p", OpenFlags::RDONLY, 0).unwrap();
    assert!(whole(&f).unwrap() == want, "after remount");
    drop(f);
    fs.unmount().unwrap();
    let r = crate::frond::fsck(dev, p).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}
