//! Buffered writes into folios left unzeroed for the copy: on a platform that fills unzeroed
//! pages with `POISON`, no poison byte is ever read back, left in cached memory, or written
//! to the device, whatever the write's shape (whole folios, partial blocks, holes, past EOF,
//! short copies that are rejected, retried or fail). The written data never holds `POISON`, so
//! one such byte anywhere is old memory showing.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};

use super::common::{Rig, RigOpts};
use super::doubles::PoisonPlatform;
use super::write::FaultingSource;
use crate::block::prng::SplitMix64;
use crate::block::BlockDevice;
use crate::iomap::testfs::MemFile;
use crate::iomap::{write, writeback_range, CopySource, OpenFile, SliceSource, WriteFlags, WritebackMode};
use crate::pagecache::{FolioBatch, MAX_INDEX};
use crate::platform::POISON;
use crate::Errno;

/// A rig on `scratch0` whose page cache takes its memory from a [`PoisonPlatform`].
fn poison_rig(env: &TestEnv, bs: u64, max_order: u32) -> Result<(Rig, Arc<PoisonPlatform>), TestFailure> {
    poison_rig_on(env, env.device("scratch0")?, bs, max_order, 4 << 20)
}

/// As [`poison_rig`], over `dev` with a cache of `cache_bytes`.
pub(super) fn poison_rig_on(
    env: &TestEnv,
    dev: Arc<dyn BlockDevice>,
    bs: u64,
    max_order: u32,
    cache_bytes: u64,
) -> Result<(Rig, Arc<PoisonPlatform>), TestFailure> {
    let platform = PoisonPlatform::arc(env.platform.clone());
    let mut opts = RigOpts::new(bs);
    opts.cache_bytes = cache_bytes;
    opts.max_order = max_order;
    let rig = Rig::on(platform.clone(), dev, opts)?;
    Ok((rig, platform))
}

/// `len` bytes of data from `rng` without a `POISON` byte.
pub(super) fn data(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| match rng.next_u64() as u8 {
            POISON => POISON ^ 0x11,
            b => b,
        })
        .collect()
}

/// The file and its expected contents.
pub(super) struct Checked {
    pub(super) f: Arc<MemFile>,
    pub(super) open: OpenFile,
    pub(super) model: Vec<u8>,
}

impl Checked {
    pub(super) fn new(f: Arc<MemFile>) -> Self {
        let open = f.open();
        Self { f, open, model: Vec::new() }
    }

    /// Writes `bytes` at `pos`, the copy stopping for good after `limit` bytes if given;
    /// updates the model with what the write reports.
    pub(super) fn write(&mut self, pos: u64, bytes: &[u8], limit: Option<usize>) -> Result<usize, String> {
        let ops = self.f.ops();
        let r = match limit {
            None => write(
                self.f.file(),
                &ops,
                &mut self.open,
                pos,
                &mut SliceSource::new(bytes),
                WriteFlags::empty(),
            ),
            Some(l) => {
                let mut src = FaultingSource::new(bytes.to_vec(), l);
                src.decay = l % 2 == 1;
                let src: &mut dyn CopySource = &mut src;
                write(self.f.file(), &ops, &mut self.open, pos, src, WriteFlags::empty())
            }
        };
        let n = match r {
            Ok(n) => n,
            Err(Errno::EFAULT) if limit.is_some() => 0,
            Err(e) => return Err(format!("write at {pos} of {}: {e}", bytes.len())),
        };
        if limit.is_none() && n != bytes.len() {
            return Err(format!("write at {pos} of {}: only {n}", bytes.len()));
        }
        if n > 0 {
            let end = pos as usize + n;
            if self.model.len() < end {
                self.model.resize(end, 0);
            }
            self.model[pos as usize..end].copy_from_slice(&bytes[..n]);
        }
        Ok(n)
    }

    /// Reads `[pos, pos + len)` and compares with the model.
    pub(super) fn read(&mut self, pos: u64, len: usize) -> Result<(), String> {
        let mut buf = vec![0u8; len];
        let n = self.f.read(&mut self.open, pos, &mut buf).map_err(|e| format!("read at {pos}: {e}"))?;
        let want = self.model.get(pos as usize..).map_or(&[][..], |t| &t[..t.len().min(len)]);
        if let Some(k) = buf[..n].iter().position(|&b| b == POISON) {
            return Err(format!("read at {pos}: poison at file byte {}", pos as usize + k));
        }
        if &buf[..n] != want {
            return Err(first_diff(&format!("read at {pos}"), &buf[..n], want));
        }
        Ok(())
    }

    /// Every byte of every cached folio (uptodate or not) is free of poison.
    pub(super) fn scan_cache(&self) -> Result<(), String> {
        let mapping = self.f.file().mapping();
        let mut at = Some(0);
        while let Some(start) = at {
            let mut batch = FolioBatch::new();
            at = mapping.get_folios(start, MAX_INDEX, &mut batch);
            for folio in batch {
                let locked = folio.lock();
                if !locked.belongs_to(mapping) {
                    continue;
                }
                if let Some(k) = locked.data().iter().position(|&b| b == POISON) {
                    return Err(format!("poison in the cache at file byte {}", locked.pos() + k as u64));
                }
            }
        }
        Ok(())
    }

    /// Size, a full read, the cache scan; then (if `disk`) fsync, cache drop, read and the
    /// device contents.
    pub(super) fn check(&mut self, disk: bool) -> Result<(), String> {
        if self.f.size() != self.model.len() as u64 {
            return Err(format!("size {} != model {}", self.f.size(), self.model.len()));
        }
        self.scan_cache()?;
        let all = self.model.len();
        self.read(0, all)?;
        if disk {
            self.f.fsync(&mut self.open, false).map_err(|e| format!("fsync: {e}"))?;
            self.f.drop_cache().map_err(|e| format!("drop: {e}"))?;
            self.read(0, all)?;
            let back = self.f.read_disk(0, all).map_err(|e| format!("device read: {e}"))?;
            if back != self.model {
                return Err(first_diff("device", &back, &self.model));
            }
        }
        Ok(())
    }
}

pub(super) fn first_diff(what: &str, got: &[u8], want: &[u8]) -> String {
    let k = got.iter().zip(want).position(|(a, b)| a != b);
    let at = k.map(|k| format!(" ({:#x} vs {:#x})", got[k], want[k])).unwrap_or_default();
    format!("{what}: length {} vs {}, first difference at {k:?}{at}", got.len(), want.len())
}

pub(super) fn fail(what: &str) -> impl FnOnce(String) -> TestFailure + '_ {
    move |e| TestFailure(format!("{what}: {e}"))
}

/// Whole folios take unzeroed memory (and zero nothing); then writes of every shape.
pub fn poison_write_shapes_never_show_old_memory(env: &TestEnv) -> TestResult {
    for bs in [1024u64, 4096] {
        let (rig, platform) = poison_rig(env, bs, 4)?;
        let mut c = Checked::new(rig.file()?);
        let mut rng = SplitMix64::new(0xA5A5_0000 + bs);
        // A 64 KiB folio overwritten whole: one unzeroed allocation, no zeroed one.
        let before = platform.counts();
        c.write(0, &data(&mut rng, 64 << 10), None).map_err(fail("whole folio"))?;
        let after = platform.counts();
        if (after.0 - before.0, after.1 - before.1) != (1, 0) {
            return Err(TestFailure(format!(
                "bs {bs}: (unzeroed, zeroed) allocations {before:?} -> {after:?}"
            )));
        }
        c.check(false).map_err(fail("whole folio"))?;
        let shapes: &[(&str, u64, usize, Option<usize>)] = &[
            ("unaligned past EOF over a hole", 70_000, 5_000, None),
            ("sub-block inside a new folio", 200_000 + 100, 300, None),
            ("EOF-straddling partial block", 80_000 - 10, 2_000, None),
            ("short copy into a new folio, retried", 300_000 + 17, 20_000, Some(7_000)),
            ("short copy failing at once past EOF", 400_000 + 5, 9_000, Some(0)),
            ("short copy over cached data", 30, 40_000, Some(9_001)),
        ];
        for &(what, pos, len, limit) in shapes {
            let n = c.write(pos, &data(&mut rng, len), limit).map_err(fail(what))?;
            c.check(false).map_err(|e| TestFailure(format!("bs {bs}, {what} (wrote {n}): {e}")))?;
        }
        c.check(true).map_err(fail("after sync"))?;
        // Now mapped on disk and not cached: short copies into folios whose edge blocks are
        // read back (read-modify-write) and a hole punched inside the file.
        c.f.punch_hole(2 * bs, 3 * bs).map_err(|e| TestFailure(format!("punch: {e}")))?;
        c.model[2 * bs as usize..5 * bs as usize].fill(0);
        c.f.drop_cache()?;
        for (what, pos, len, limit) in [
            ("short copy over mapped blocks", 1_000u64, 30_000usize, Some(12_345)),
            ("short copy into the punched hole", 2 * bs + 7, 2 * bs as usize, Some(3)),
            ("failing copy over mapped blocks", 75_001, 6_000, Some(0)),
            ("whole blocks over the hole", 2 * bs, 3 * bs as usize, None),
        ] {
            let n = c.write(pos, &data(&mut rng, len), limit).map_err(fail(what))?;
            c.check(false).map_err(|e| TestFailure(format!("bs {bs}, {what} (wrote {n}): {e}")))?;
        }
        c.check(true).map_err(|e| TestFailure(format!("bs {bs}, at the end: {e}")))?;
    }
    Ok(())
}

/// Operations per seed of the model test.
const OPS: usize = 300;
/// Largest file offset the model test touches.
const SPAN: u64 = 1 << 20;

/// Random writes (a third of them copying short), reads, truncates, punches, zeroing,
/// writeback and cache drops on a small cache (so reclaim recycles folio memory), checked
/// against a model after every operation, the cache scanned for poison every few.
pub fn poison_model_random_writes_never_show_old_memory(env: &TestEnv) -> TestResult {
    for_seeds(env, &[(0xD00D_0001, 1024, 3), (0xD00D_0002, 4096, 9)], run)
}

/// Runs a model test for each `(seed, block size, max folio order)`, naming the seed (fixed)
/// and block size on failure.
pub(super) fn for_seeds(
    env: &TestEnv,
    cases: &[(u64, u64, u32)],
    run: fn(&TestEnv, u64, u64, u32) -> Result<(), String>,
) -> TestResult {
    for &(seed, bs, max_order) in cases {
        run(env, seed, bs, max_order)
            .map_err(|e| TestFailure(format!("seed {seed:#x}, block size {bs}: {e}")))?;
    }
    Ok(())
}

/// A random file offset below `span`: block aligned, page aligned or any, a third each.
pub(super) fn random_pos(rng: &mut SplitMix64, bs: u64, span: u64) -> u64 {
    match rng.below(3) {
        0 => rng.below(span) & !(bs - 1),
        1 => rng.below(span) & !4095,
        _ => rng.below(span),
    }
}

fn run(env: &TestEnv, seed: u64, bs: u64, max_order: u32) -> Result<(), String> {
    let (rig, platform) = poison_rig(env, bs, max_order).map_err(|e| format!("rig: {e}"))?;
    rig.cache.set_dirty_thresholds(256 << 10, 1 << 20).map_err(|e| format!("{e}"))?;
    let mut c = Checked::new(rig.file().map_err(|e| format!("{e}"))?);
    let mut rng = SplitMix64::new(seed);
    let mut short = 0;
    for i in 0..OPS {
        let op = rng.below(100);
        let pos = random_pos(&mut rng, bs, SPAN);
        let len = match rng.below(4) {
            0 => 1 + rng.below(bs),
            1 => (1 + rng.below(16)) * bs,
            2 => 1 + rng.below(256 << 10),
            _ => 1 + rng.below(8 << 10),
        };
        let at = |e: String| format!("op {i} (kind {op}, pos {pos}, len {len}): {e}");
        match op {
            0..=49 => {
                let limit = (rng.below(3) == 0).then(|| rng.below(len) as usize);
                short += limit.is_some() as usize;
                c.write(pos, &data(&mut rng, len as usize), limit).map_err(at)?;
            }
            50..=69 => c.read(pos, len as usize).map_err(at)?,
            70..=76 => {
                c.model.resize(pos as usize, 0);
                c.f.truncate(pos).map_err(|e| at(format!("truncate: {e}")))?;
            }
            77..=82 => {
                let end = ((pos + len) as usize).min(c.model.len());
                if (pos as usize) < end {
                    c.model[pos as usize..end].fill(0);
                }
                let r =
                    if op.is_multiple_of(2) { c.f.punch_hole(pos, len) } else { c.f.zero_range(pos, len) };
                r.map_err(|e| at(format!("punch/zero: {e}")))?;
            }
            83..=88 => c.f.drop_cache().map_err(|e| at(format!("drop: {e}")))?,
            89..=94 => {
                let mode = WritebackMode::Background { budget_bytes: 64 << 10 };
                writeback_range(c.f.file(), &c.f.ops(), 0, u64::MAX, mode)
                    .map_err(|e| at(format!("writeback: {e}")))?;
            }
            _ => c.f.sync_data().map_err(|e| at(format!("sync: {e}")))?,
        }
        let scan = i % 16 == 15;
        if c.f.size() != c.model.len() as u64 {
            return Err(at(format!("size {} != model {}", c.f.size(), c.model.len())));
        }
        if scan {
            c.scan_cache().map_err(at)?;
        }
    }
    c.check(true).map_err(|e| format!("at the end: {e}"))?;
    let (unzeroed, _) = platform.counts();
    if unzeroed == 0 || short == 0 {
        return Err(format!(
            "the test did not exercise the path: {unzeroed} unzeroed folios, {short} short copies"
        ));
    }
    Ok(())
}
