//! Model-based random test: buffered writes (some O_DSYNC), reads, truncates, zero range, punch
//! hole, fallocate, fsync, writeback and cache drops against a `Vec<u8>` model. Every read is
//! checked, and at the end the device contents after sync + cache drop, and a remount.
//! Fixed seeds; a failure names the seed and the operation.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};

use super::common::{Rig, RigOpts};
use crate::block::prng::SplitMix64;
use crate::iomap::{writeback_range, WriteFlags, WritebackMode};

/// Largest offset the model touches.
const SPAN: u64 = 256 << 10;
/// Operations per run.
const OPS: usize = 300;

pub fn model_random_ops_match_vec(env: &TestEnv) -> TestResult {
    for (seed, bs, max_order) in
        [(0x5EED_0001u64, 1024u64, 2u32), (0x5EED_0002, 4096, 9), (0x5EED_0003, 4096, 0)]
    {
        run(env, seed, bs, max_order)
            .map_err(|e| TestFailure(format!("seed {seed:#x}, block size {bs}: {e}")))?;
    }
    Ok(())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn run(env: &TestEnv, seed: u64, bs: u64, max_order: u32) -> Result<(), String> {
    let mut opts = RigOpts::new(bs);
    opts.cache_bytes = 4 << 20;
    opts.max_order = max_order;
    let rig = Rig::new(env, opts).map_err(|e| format!("rig: {e}"))?;
    // Some background writeback and throttling along the way.
    rig.cache.set_dirty_thresholds(256 << 10, 1 << 20).map_err(|e| format!("{e}"))?;
    let f = rig.file().map_err(|e| format!("{e}"))?;
    let mut open = f.open();
    let mut model: Vec<u8> = Vec::new();
    let mut rng = SplitMix64::new(seed);
    for i in 0..OPS {
        let op = rng.below(100);
        let pos = rng.below(SPAN);
        let len = 1 + rng.below(12 << 10);
        let size0 = model.len();
        let at = |what: &str| format!("op {i} ({what} pos {pos} len {len}, size {size0})");
        let r: crate::Result<()> = match op {
            0..=34 => {
                let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let flags = if rng.below(8) == 0 { WriteFlags::DSYNC } else { WriteFlags::empty() };
                let n = f
                    .write_flags(&mut open, pos, &data, flags)
                    .map_err(|e| format!("{}: {e}", at("write")))?;
                check(n == data.len(), || format!("{}: wrote {n}", at("write")))?;
                let end = (pos + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[pos as usize..end].copy_from_slice(&data);
                Ok(())
            }
            35..=59 => {
                let mut buf = vec![0xA5u8; len as usize];
                let n = f.read(&mut open, pos, &mut buf).map_err(|e| format!("{}: {e}", at("read")))?;
                let want = model.get(pos as usize..).map_or(0, |t| t.len().min(len as usize));
                check(n == want, || format!("{}: read {n} bytes, expected {want}", at("read")))?;
                if let Some(k) = (0..n).find(|&k| buf[k] != model[pos as usize + k]) {
                    return Err(format!(
                        "{}: byte {} is {:#x}, expected {:#x}",
                        at("read"),
                        pos as usize + k,
                        buf[k],
                        model[pos as usize + k]
                    ));
                }
                Ok(())
            }
            60..=67 => {
                model.resize(pos as usize, 0);
                f.truncate(pos)
            }
            68..=74 => {
                let end = ((pos + len) as usize).min(model.len());
                if (pos as usize) < end {
                    model[pos as usize..end].fill(0);
                }
                f.zero_range(pos, len)
            }
            75..=80 => {
                let end = ((pos + len) as usize).min(model.len());
                if (pos as usize) < end {
                    model[pos as usize..end].fill(0);
                }
                f.punch_hole(pos, len)
            }
            81..=84 => f.fallocate(pos, len),
            85..=89 => f.fsync(&mut open, rng.below(2) == 0),
            90..=93 => f.drop_cache(),
            94..=96 => writeback_range(
                f.file(),
                &f.ops(),
                0,
                u64::MAX,
                WritebackMode::Background { budget_bytes: 64 << 10 },
            )
            .map(|_| ()),
            _ => f.sync_data(),
        };
        r.map_err(|e| format!("{}: {e}", at("op")))?;
        check(f.size() == model.len() as u64, || {
            format!("{}: size {} != model {}", at("size"), f.size(), model.len())
        })?;
    }
    f.fsync(&mut open, false).map_err(|e| format!("final fsync: {e}"))?;
    f.drop_cache().map_err(|e| format!("final drop: {e}"))?;
    let back = f.read_all(&mut open).map_err(|e| format!("final read: {e}"))?;
    check(back == model, || first_diff("cache after drop", &back, &model))?;
    let disk = f.read_disk(0, model.len()).map_err(|e| format!("device read: {e}"))?;
    check(disk == model, || first_diff("device", &disk, &model))?;
    let fs2 = rig.remount().map_err(|e| format!("remount: {e}"))?;
    let g = fs2.file(f.id()).ok_or("file lost at remount")?;
    let mut open2 = g.open();
    let again = g.read_all(&mut open2).map_err(|e| format!("read after remount: {e}"))?;
    check(again == model, || first_diff("after remount", &again, &model))
}

fn first_diff(what: &str, got: &[u8], want: &[u8]) -> String {
    let k = got.iter().zip(want).position(|(a, b)| a != b);
    format!("{what}: length {} vs {}, first difference at {:?}", got.len(), want.len(), k)
}
