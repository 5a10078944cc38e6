//! Cold buffered reads into readahead folios left unzeroed for the device: on a platform that
//! fills unzeroed pages with `POISON`, no poison byte is ever returned to a reader or left in
//! cached memory, whatever the read's shape (holes and unwritten blocks among mapped ones,
//! partially uptodate folios, EOF inside a folio, device read errors and their retry,
//! readahead folios reclaimed before use, truncate after readahead started). The file data
//! never holds `POISON`, so one such byte anywhere is old memory showing.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::mapped_block;
use super::poison::{data, fail, first_diff, for_seeds, poison_rig_on, random_pos, Checked};
use crate::block::prng::SplitMix64;
use crate::block::{BlockDevice, FaultDisk, FaultRule, OpMask, SECTOR_SIZE};
use crate::platform::POISON;
use crate::Errno;

/// A poisoned rig over a [`FaultDisk`] on `scratch0`.
fn faulty_rig(
    env: &TestEnv,
    bs: u64,
    max_order: u32,
    cache_bytes: u64,
) -> Result<(super::common::Rig, Arc<super::doubles::PoisonPlatform>, Arc<FaultDisk>), TestFailure> {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let (rig, platform) =
        poison_rig_on(env, fault.clone() as Arc<dyn BlockDevice>, bs, max_order, cache_bytes)?;
    Ok((rig, platform, fault))
}

/// Reads `[pos, pos + len)` while reads may fail: `EIO` or a short count are accepted, but
/// what is returned matches the model and holds no poison. Returns the bytes read (0 on EIO).
fn read_maybe_failing(c: &mut Checked, pos: u64, len: usize) -> Result<usize, String> {
    let mut buf = vec![POISON ^ 0x5A; len];
    let n = match c.f.read(&mut c.open, pos, &mut buf) {
        Ok(n) => n,
        Err(Errno::EIO) => 0,
        Err(e) => return Err(format!("read at {pos}: {e}")),
    };
    if let Some(k) = buf[..n].iter().position(|&b| b == POISON) {
        return Err(format!("read at {pos}: poison at file byte {}", pos as usize + k));
    }
    let want = c.model.get(pos as usize..).map_or(&[][..], |t| &t[..t.len().min(len)]);
    if n > want.len() || buf[..n] != want[..n] {
        return Err(first_diff(&format!("read at {pos} (got {n})"), &buf[..n], &want[..n.min(want.len())]));
    }
    Ok(n)
}

/// Sectors of the file block holding byte `pos`.
fn sectors_of(c: &Checked, pos: u64) -> Result<core::ops::Range<u64>, TestFailure> {
    let bs = c.f.block_size();
    let d = mapped_block(&c.f, pos / bs)?;
    Ok(d * bs / SECTOR_SIZE..(d + 1) * bs / SECTOR_SIZE)
}

/// Holes, unwritten blocks and mapped ones in one file ending inside a block; cold reads of
/// it whole, with partially uptodate folios, with a failing block and after the retry, after
/// truncating inside readahead that is under way.
pub fn poison_read_shapes_never_show_old_memory(env: &TestEnv) -> TestResult {
    for bs in [1024u64, 4096] {
        let (rig, platform, fault) = faulty_rig(env, bs, 4, 4 << 20)?;
        let mut c = Checked::new(rig.file()?);
        let mut rng = SplitMix64::new(0x5EAD_0000 + bs);
        let build = |c: &mut Checked, rng: &mut SplitMix64| -> Result<(), String> {
            c.write(0, &data(rng, 40 << 10), None)?;
            c.write(50 << 10, &data(rng, 40 << 10), None)?;
            c.write(130_003, &data(rng, 20_074), None)?;
            c.f.fallocate(100 << 10, 20 << 10).map_err(|e| format!("fallocate: {e}"))?;
            c.check(true)
        };
        build(&mut c, &mut rng).map_err(fail("build"))?;
        let all = c.model.len();
        ensure_eq!(all, 150_077);

        // A cold read of everything: readahead folios only, all unzeroed.
        c.f.drop_cache()?;
        let before = platform.counts();
        c.read(0, all).map_err(fail("cold read"))?;
        let after = platform.counts();
        if after.0 == before.0 || after.1 != before.1 {
            return Err(TestFailure(format!(
                "bs {bs}: a cold read should take unzeroed folios only: {before:?} -> {after:?}"
            )));
        }
        c.scan_cache().map_err(fail("cold read"))?;

        // Partially uptodate folios: small writes (read-modify-write of their edge blocks) into
        // folios that are then completed by reads.
        c.f.drop_cache()?;
        for pos in [1_000u64, 60_001, 131_070] {
            c.write(pos, &data(&mut rng, 100), None).map_err(fail("small write"))?;
        }
        c.read(0, all).map_err(fail("partial folios"))?;
        c.scan_cache().map_err(fail("partial folios"))?;

        // A failing block inside a mapped run: the read fails or stops short, the cache holds
        // no poison (the failed blocks were zeroed, not uptodate), and a retry reads them.
        c.f.fsync(&mut c.open, false)?;
        for at in [70_000u64, 0, 149_000] {
            c.f.drop_cache()?;
            let rule = fault.add_rule(FaultRule::fail(OpMask::READ).on_sectors(sectors_of(&c, at)?))?;
            let n = read_maybe_failing(&mut c, 0, all).map_err(fail("failing read"))?;
            if n as u64 > at {
                return Err(TestFailure(format!("bs {bs}: read {n} bytes past the failing block at {at}")));
            }
            c.scan_cache().map_err(|e| TestFailure(format!("bs {bs}, failed read at {at}: {e}")))?;
            let failed = read_maybe_failing(&mut c, at, 1).map_err(fail("failing block"))?;
            ensure_eq!(failed, 0, "bs {}: the failed block at {} is read again and fails again", bs, at);
            fault.remove_rule(rule);
            c.read(0, all).map_err(|e| TestFailure(format!("bs {bs}, retry after {at}: {e}")))?;
            c.scan_cache().map_err(fail("retry"))?;
        }

        // One read bio of a sequential reader fails (maybe an asynchronous readahead one).
        c.f.drop_cache()?;
        let rule = fault.add_rule(FaultRule::fail(OpMask::READ).nth(2).once())?;
        let mut pos = 0;
        while pos < all {
            read_maybe_failing(&mut c, pos as u64, 8192).map_err(fail("sequential with a failure"))?;
            pos += 8192;
        }
        ensure!(fault.injected() > 0, "bs {}: the failure was injected", bs);
        fault.remove_rule(rule);
        c.scan_cache().map_err(fail("sequential with a failure"))?;
        c.read(0, all).map_err(fail("after the sequential failure"))?;

        // Truncate down inside readahead that is under way, then back up: zeros, not memory.
        c.f.drop_cache()?;
        c.read(0, 8192).map_err(fail("start readahead"))?;
        c.f.truncate(90_001)?;
        c.f.truncate(all as u64)?;
        c.model[90_001..].fill(0);
        c.read(0, all).map_err(fail("after truncate"))?;
        c.check(true).map_err(|e| TestFailure(format!("bs {bs}, at the end: {e}")))?;
    }
    Ok(())
}

/// A file larger than the cache read sequentially with the largest window and then at
/// random: readahead folios are reclaimed before the reader reaches them and read again.
pub fn poison_readahead_folios_reclaimed_before_use(env: &TestEnv) -> TestResult {
    let (rig, platform, _fault) = faulty_rig(env, 4096, 6, 1 << 20)?;
    let mut c = Checked::new(rig.file()?);
    let mut rng = SplitMix64::new(0x5EAD_0F0F);
    let size = 3usize << 20;
    for k in 0..size / (256 << 10) {
        let pos = k * (256 << 10);
        if k % 3 != 1 {
            c.write(pos as u64, &data(&mut rng, 256 << 10), None).map_err(fail("fill"))?;
            c.f.fsync(&mut c.open, false)?;
        }
    }
    c.write(size as u64 - 1000, &data(&mut rng, 1000), None).map_err(fail("tail"))?;
    c.f.fsync(&mut c.open, false)?;
    c.f.drop_cache()?;
    let reclaimed = rig.cache.stats().reclaimed_folios;
    let before = platform.counts();
    let mut pos = 0;
    while pos < size {
        c.read(pos as u64, 16 << 10).map_err(fail("sequential"))?;
        pos += 16 << 10;
    }
    for _ in 0..64 {
        let p = rng.below(size as u64);
        let len = 1 + rng.below(64 << 10) as usize;
        c.read(p, len).map_err(fail("random"))?;
    }
    c.scan_cache().map_err(fail("scan"))?;
    ensure!(rig.cache.stats().reclaimed_folios > reclaimed, "the cache reclaimed folios");
    ensure!(platform.counts().0 > before.0, "reads took unzeroed folios");
    c.check(true).map_err(fail("at the end"))
}

/// Operations per seed of the model test.
const OPS: usize = 250;
/// Largest file offset the model test touches.
const SPAN: u64 = 768 << 10;

/// Random writes, unwritten allocations, punches, truncates, syncs and cache drops, and many
/// cold reads of random shapes, some while a block or a read bio fails; checked against a
/// model after every read, the cache scanned for poison every few operations.
pub fn poison_model_random_reads_never_show_old_memory(env: &TestEnv) -> TestResult {
    for_seeds(env, &[(0xFEED_0001, 1024, 4), (0xFEED_0002, 4096, 9)], run)
}

fn run(env: &TestEnv, seed: u64, bs: u64, max_order: u32) -> Result<(), String> {
    let (rig, platform, fault) = faulty_rig(env, bs, max_order, 2 << 20).map_err(|e| format!("rig: {e}"))?;
    let mut c = Checked::new(rig.file().map_err(|e| format!("{e}"))?);
    let mut rng = SplitMix64::new(seed);
    let mut failed_reads = 0;
    for i in 0..OPS {
        let op = rng.below(100);
        let pos = random_pos(&mut rng, bs, SPAN);
        let len = match rng.below(3) {
            0 => 1 + rng.below(bs),
            1 => 1 + rng.below(128 << 10),
            _ => 1 + rng.below(8 << 10),
        };
        let at = |e: String| format!("op {i} (kind {op}, pos {pos}, len {len}): {e}");
        match op {
            0..=24 => {
                c.write(pos, &data(&mut rng, len as usize), None).map_err(at)?;
            }
            25..=54 => c.read(pos, len as usize).map_err(at)?,
            55..=69 => {
                // A cold read while one block inside it (or one of its bios) fails.
                c.f.sync_data().map_err(|e| at(format!("sync: {e}")))?;
                c.f.drop_cache().map_err(|e| at(format!("drop: {e}")))?;
                let end = c.model.len() as u64;
                let target = (pos + rng.below(len)).min(end.saturating_sub(1));
                let (rule, strict) = match sectors_of(&c, target) {
                    Ok(s) if pos < end => (FaultRule::fail(OpMask::READ).on_sectors(s), true),
                    _ => (FaultRule::fail(OpMask::READ).nth(1 + rng.below(2)).once(), false),
                };
                let id = fault.add_rule(rule).map_err(|e| at(format!("rule: {e}")))?;
                let n = read_maybe_failing(&mut c, pos, len as usize).map_err(at)?;
                fault.remove_rule(id);
                if strict && pos + n as u64 > target {
                    return Err(at(format!("read {n} bytes past the failing block at {target}")));
                }
                failed_reads += (n < len as usize && pos + (n as u64) < end) as usize;
            }
            70..=74 => c.f.fallocate(pos, len).map_err(|e| at(format!("fallocate: {e}")))?,
            75..=79 => {
                let end = ((pos + len) as usize).min(c.model.len());
                if (pos as usize) < end {
                    c.model[pos as usize..end].fill(0);
                }
                c.f.punch_hole(pos, len).map_err(|e| at(format!("punch: {e}")))?;
            }
            80..=84 => {
                c.model.resize(pos as usize, 0);
                c.f.truncate(pos).map_err(|e| at(format!("truncate: {e}")))?;
            }
            85..=92 => {
                c.f.sync_data().map_err(|e| at(format!("sync: {e}")))?;
                c.f.drop_cache().map_err(|e| at(format!("drop: {e}")))?;
            }
            _ => c.f.drop_cache().map_err(|e| at(format!("drop: {e}")))?,
        }
        if c.f.size() != c.model.len() as u64 {
            return Err(at(format!("size {} != model {}", c.f.size(), c.model.len())));
        }
        if i % 8 == 7 {
            c.scan_cache().map_err(at)?;
        }
    }
    c.check(true).map_err(|e| format!("at the end: {e}"))?;
    let (unzeroed, _) = platform.counts();
    if unzeroed == 0 || failed_reads == 0 {
        return Err(format!(
            "the test did not exercise the path: {unzeroed} unzeroed folios, {failed_reads} failed reads"
        ));
    }
    Ok(())
}
