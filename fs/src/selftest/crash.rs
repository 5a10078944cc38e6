//! Crash consistency: for several workloads, every crash state the CrashRecorder allows (each
//! flush point, plus seeded random subsets of the unflushed writes after it) mounts, replays
//! the journal, passes fsck, and keeps every byte that was fsync'd before the crash point.
//!
//! The filesystem is formatted on a private RamDisk before recording (the base image is known
//! on any kernel); the number of states is bounded by the workloads' few flush points times
//! [`RANDOM_PER_POINT`]. A failure names the workload, the seed and the state.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};

use super::rig::{pattern, read_all, write_all, write_direct, FsRig};
use crate::block::sync::read_at;
use crate::block::{BlockDevice, CrashRecorder, CrashState, FaultDisk, FaultRule, OpMask, RamDisk};
use crate::vfs::{FallocFlags, FrondFs, MountOptions, OpenFlags};

/// Filesystem size of the crash tests.
const DISK: u64 = 6 << 20;

/// Random window subsets per flush point.
pub const RANDOM_PER_POINT: usize = 3;

/// The seed of the subsets.
pub const SEED: u64 = 0xC0FF_EE15;

/// What must hold from a flush point on: `(min point, check)`.
type Check = (usize, Arc<dyn Fn(&Arc<FrondFs>) -> Result<(), String>>);

/// A recorded workload: the log and base image, plus the checks.
struct Recorded {
    base: Vec<u8>,
    rec: Arc<CrashRecorder>,
    checks: Vec<Check>,
}

/// Formats a RamDisk, snapshots it, then runs `work` on the filesystem mounted through a
/// recorder. `work` pushes checks tagged with the flush count at the time.
fn record(
    env: &TestEnv,
    bs: u64,
    work: impl FnOnce(&FsRig, &dyn Fn() -> usize, &mut Vec<Check>) -> TestResult,
) -> Result<Recorded, TestFailure> {
    record_faulty(env, bs, |rig, _, flushes, checks| work(rig, flushes, checks))
}

/// [`record`] with a [`FaultDisk`] between the filesystem and the recorder (a failed request
/// never reaches the recorded log).
fn record_faulty(
    env: &TestEnv,
    bs: u64,
    work: impl FnOnce(&FsRig, &FaultDisk, &dyn Fn() -> usize, &mut Vec<Check>) -> TestResult,
) -> Result<Recorded, TestFailure> {
    let ram: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(DISK, 512)?);
    let rig = FsRig::on(env.platform.clone(), ram.clone(), bs, DISK)?;
    rig.finish()?;
    let mut base = vec![0u8; DISK as usize];
    read_at(&*ram, &env.platform, 0, &mut base)?;
    let rec = Arc::new(CrashRecorder::new(ram));
    let fault = Arc::new(FaultDisk::new(rec.clone()));
    let mut rig = FsRig {
        platform: env.platform.clone(),
        dev: fault.clone(),
        fs: None,
        bs,
        opts: MountOptions::new(4 << 20),
    };
    rig.mount()?;
    let mut checks = Vec::new();
    let rec2 = rec.clone();
    let flushes = move || rec2.log().flushes().len();
    work(&rig, &fault, &flushes, &mut checks)?;
    // Leave the mount without unmounting (a crash): drop it.
    drop(rig);
    Ok(Recorded { base, rec, checks })
}

/// Mounts every crash state, runs fsck and the checks due at its point.
fn verify(env: &TestEnv, name: &str, r: &Recorded) -> TestResult {
    let log = r.rec.log();
    let mut states = 0;
    for state in log.crash_states(RANDOM_PER_POINT, SEED) {
        verify_state(env, r, &log, &state).map_err(|e| {
            TestFailure(format!(
                "workload {name}, seed {SEED:#x}, point {} of {}, subset {:?}: {e}",
                state.point,
                log.flush_points(),
                state.subset
            ))
        })?;
        states += 1;
    }
    if states < 2 || r.checks.iter().all(|(p, _)| *p >= log.flush_points()) {
        return Err(TestFailure(format!("workload {name}: only {states} states, no check due")));
    }
    Ok(())
}

fn verify_state(
    env: &TestEnv,
    r: &Recorded,
    log: &crate::block::CrashLog,
    state: &CrashState,
) -> Result<(), String> {
    let image = log.image(&r.base, state).map_err(|e| format!("image: {e}"))?;
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::from_image(image, 512));
    let fs = FrondFs::mount(dev.clone(), env.platform.clone(), MountOptions::new(4 << 20))
        .map_err(|e| format!("mount failed: {e}"))?;
    for (point, check) in &r.checks {
        if state.point >= *point {
            check(&fs)?;
        }
    }
    fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let report = crate::frond::fsck(dev, env.platform.clone()).map_err(|e| format!("fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("fsck: {:?}", report.problems));
    }
    Ok(())
}

/// Reads `/name` on a crash-state mount.
fn contents(fs: &Arc<FrondFs>, name: &str) -> Result<Vec<u8>, String> {
    let f = fs
        .open_at(fs.root(), name.as_bytes(), OpenFlags::RDONLY, 0)
        .map_err(|e| format!("open {name}: {e}"))?;
    read_all(&f).map_err(|e| format!("read {name}: {e}"))
}

fn expect_file(fs: &Arc<FrondFs>, name: &str, want: &[u8]) -> Result<(), String> {
    let got = contents(fs, name)?;
    if got != want {
        return Err(format!("{name}: {}", super::rig::first_diff(&got, want)));
    }
    Ok(())
}

/// Data and size: fsync'd bytes survive later unsynced overwrites and appends.
pub fn crash_fsync_data_survives(env: &TestEnv) -> TestResult {
    for bs in [1024, 4096] {
        let r = record(env, bs, |rig, flushes, checks| {
            let f = rig.create("a")?;
            let first = pattern(1, 150_000);
            write_all(&f, 0, &first)?;
            f.fsync()?;
            let p1 = flushes();
            let keep = first.clone();
            checks.push((
                p1,
                Arc::new(move |fs| {
                    let got = contents(fs, "a")?;
                    if got.len() < 150_000 || got[8192..150_000] != keep[8192..] {
                        return Err(format!("fsync'd data lost (size {})", got.len()));
                    }
                    Ok(())
                }),
            ));
            let second = pattern(2, 60_000);
            write_all(&f, 150_000, &second)?;
            write_all(&f, 0, &[0xEE; 8192])?;
            rig.fs().background_work();
            f.fdatasync()?;
            let p2 = flushes();
            let mut all = first.clone();
            all[..8192].fill(0xEE);
            all.extend_from_slice(&second);
            checks.push((p2, Arc::new(move |fs| expect_file(fs, "a", &all))));
            Ok(())
        })?;
        verify(env, &format!("fsync_data bs {bs}"), &r)?;
    }
    Ok(())
}

/// Reflink and COW: the source's fsync'd data is never changed by COW writes to the clone,
/// whatever survives of them.
pub fn crash_clone_cow_never_touches_source(env: &TestEnv) -> TestResult {
    let r = record(env, 4096, |rig, flushes, checks| {
        let a = rig.create("A")?;
        write_all(&a, 0, &[b'A'; 65536])?;
        a.fsync()?;
        let p0 = flushes();
        // A: its fsync'd 'A's, except the last write (`a` at 30000, synced at the end), whole
        // or not at all. Nothing written to the clone ever shows up in it.
        checks.push((
            p0,
            Arc::new(|fs| {
                let got = contents(fs, "A")?;
                let mut late = vec![b'A'; 65536];
                late[30000..30100].fill(b'a');
                if got != [b'A'; 65536] && got != late {
                    return Err(format!("A changed: {}", super::rig::first_diff(&got, &late)));
                }
                Ok(())
            }),
        ));
        let b = rig.create("B")?;
        b.clone_range(&a, 0, 0, 0)?;
        b.fsync()?;
        let p1 = flushes();
        let mut want = vec![b'A'; 65536];
        want[4096..14096].fill(b'Z');
        // From the clone's fsync on, B is the clone, or the clone with the whole COW write (its
        // remap is one transaction after the data is written): never a mix, never torn.
        let w = want.clone();
        checks.push((
            p1,
            Arc::new(move |fs| {
                let got = contents(fs, "B")?;
                if got != [b'A'; 65536] && got != w {
                    return Err(format!(
                        "B is neither the clone nor the written clone: {}",
                        super::rig::first_diff(&got, &w)
                    ));
                }
                Ok(())
            }),
        ));
        write_all(&b, 4096, &[b'Z'; 10000])?;
        b.fsync()?;
        let p2 = flushes();
        checks.push((p2, Arc::new(move |fs| expect_file(fs, "B", &want))));
        write_all(&a, 30000, &[b'a'; 100])?;
        let _ = rig.fs().sync();
        Ok(())
    })?;
    verify(env, "clone_cow", &r)
}

/// Namespace: created, renamed and unlinked names after sync are exactly as left.
pub fn crash_namespace_after_sync(env: &TestEnv) -> TestResult {
    let r = record(env, 4096, |rig, flushes, checks| {
        let fs = rig.fs().clone();
        let root = fs.root();
        let d = fs.mkdir(root, b"dir", 0o755)?;
        for i in 0..12u64 {
            let f = fs.open_at(d, format!("f{i}").as_bytes(), OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
            write_all(&f, 0, &pattern(i, 100 + 300 * i as usize))?;
        }
        fs.sync()?;
        let p0 = flushes();
        checks.push((
            p0,
            Arc::new(|fs| {
                let d = fs.lookup(fs.root(), b"dir").map_err(|e| format!("dir: {e}"))?;
                let n = fs.readdir(d, 0, 100).map_err(|e| format!("readdir: {e}"))?.len();
                if n < 12 {
                    return Err(format!("{n} entries after sync"));
                }
                Ok(())
            }),
        ));
        fs.rename(d, b"f1", root, b"moved")?;
        fs.unlink(d, b"f2")?;
        let f = fs.open_at(d, b"f3", OpenFlags::RDWR, 0)?;
        f.truncate(10)?;
        drop(f);
        fs.sync()?;
        let p1 = flushes();
        checks.push((
            p1,
            Arc::new(|fs| {
                let d = fs.lookup(fs.root(), b"dir").map_err(|e| format!("dir: {e}"))?;
                if fs.lookup(d, b"f2").is_ok() || fs.lookup(d, b"f1").is_ok() {
                    return Err(String::from("removed names are back"));
                }
                expect_file(fs, "moved", &pattern(1, 400))?;
                let f3 = fs.lookup(d, b"f3").map_err(|e| format!("f3: {e}"))?;
                let size = fs.stat(f3).map_err(|e| format!("stat: {e}"))?.size;
                if size != 10 {
                    return Err(format!("f3 size {size}"));
                }
                Ok(())
            }),
        ));
        Ok(())
    })?;
    verify(env, "namespace", &r)
}

/// Truncate, punch and an open-unlinked file: fsync'd results stay, freed blocks are free.
pub fn crash_truncate_punch_unlink(env: &TestEnv) -> TestResult {
    let r = record(env, 4096, |rig, flushes, checks| {
        let f = rig.create("t")?;
        let data = pattern(5, 100_000);
        write_all(&f, 0, &data)?;
        f.fsync()?;
        f.truncate(50_000)?;
        f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 8192, 16384)?;
        f.fsync()?;
        let p = flushes();
        let mut want = data[..50_000].to_vec();
        want[8192..24576].fill(0);
        checks.push((p, Arc::new(move |fs| expect_file(fs, "t", &want))));
        let g = rig.create("gone")?;
        write_all(&g, 0, &[7u8; 40000])?;
        g.fsync()?;
        rig.fs().unlink(rig.fs().root(), b"gone")?;
        write_all(&g, 40000, &[8u8; 4096])?;
        g.fsync()?;
        Ok(())
    })?;
    verify(env, "truncate_punch_unlink", &r)
}

/// Untorn writes of several blocks (out of place, one remap transaction): every crash state
/// shows each 32 KiB write wholly old or wholly new, never a mix of blocks, also for the write
/// that extends the file (its range reads as zeros or all new).
pub fn crash_atomic_multi_block_untorn(env: &TestEnv) -> TestResult {
    const W: usize = 32768;
    let r = record(env, 4096, |rig, flushes, checks| {
        let f = rig.open("am", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
        for i in 0..4u64 {
            f.write_atomic(i * W as u64, &[b'A'; W])?;
        }
        f.fsync()?;
        // Fragment the file: the odd blocks are punched and written again at once (their old
        // blocks are busy until the next commit), so they land elsewhere. An in-place write of
        // 32 KiB would now be 8 separate device writes, and a crash could keep some of them.
        for blk in (1..(4 * W / 4096) as u64).step_by(2) {
            f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, blk * 4096, 4096)?;
        }
        for blk in (1..(4 * W / 4096) as u64).step_by(2) {
            f.write_atomic(blk * 4096, &[b'A'; 4096])?;
        }
        f.fsync()?;
        let p = flushes();
        checks.push((
            p,
            Arc::new(|fs| {
                let got = contents(fs, "am")?;
                if got.len() != 4 * W && got.len() != 5 * W {
                    return Err(format!("size {}", got.len()));
                }
                for (i, w) in got.chunks(W).enumerate() {
                    let whole = |c: u8| w.iter().all(|&x| x == c);
                    if !(whole(b'A') || whole(b'B') || (i == 4 && (whole(0) || whole(b'C')))) {
                        return Err(format!("write {i} torn"));
                    }
                }
                Ok(())
            }),
        ));
        for i in 0..4u64 {
            f.write_atomic(i * W as u64, &[b'B'; W])?;
        }
        f.write_atomic(4 * W as u64, &[b'C'; W])?;
        f.fsync()?;
        Ok(())
    })?;
    verify(env, "atomic_multi_block", &r)
}

/// Atomic (untorn) writes: every crash state shows each block wholly old or wholly new.
pub fn crash_atomic_writes_untorn(env: &TestEnv) -> TestResult {
    let r = record(env, 4096, |rig, flushes, checks| {
        let f = rig.open("at", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
        for blk in 0..8u64 {
            f.write_atomic(blk * 4096, &[b'A'; 4096])?;
        }
        f.fsync()?;
        let p = flushes();
        checks.push((
            p,
            Arc::new(|fs| {
                let got = contents(fs, "at")?;
                if got.len() != 8 * 4096 {
                    return Err(format!("size {}", got.len()));
                }
                for (i, b) in got.chunks(4096).enumerate() {
                    if !(b.iter().all(|&x| x == b'A') || b.iter().all(|&x| x == b'B')) {
                        return Err(format!("block {i} torn"));
                    }
                }
                Ok(())
            }),
        ));
        for blk in 0..8u64 {
            f.write_atomic(blk * 4096, &[b'B'; 4096])?;
        }
        Ok(())
    })?;
    verify(env, "atomic_writes", &r)
}

/// Fills the free space with `byte` (a file written until `ENOSPC`, synced), then deletes it:
/// every free data block holds stale bytes afterwards.
fn leave_stale_blocks(rig: &FsRig, byte: u8) -> TestResult {
    let fs = rig.fs().clone();
    let s = rig.create("stale")?;
    let chunk = vec![byte; 65536];
    let mut pos = 0;
    loop {
        match s.write(pos, &chunk) {
            Ok(n) if n > 0 => pos += n as u64,
            Ok(_) | Err(crate::Errno::ENOSPC) => break,
            Err(e) => return Err(e.into()),
        }
    }
    s.fsync()?;
    drop(s);
    fs.unlink(fs.root(), b"stale")?;
    fs.sync()?;
    Ok(())
}

/// Direct writes never expose stale blocks: the free space first holds a deleted file's bytes,
/// then direct writes into holes (inside and past EOF, sub-block ones too), one that fails with
/// EIO (its blocks, allocated and committed by the fsync after it, must stay unwritten) and a
/// direct COW write into a clone; in every crash state each byte of `/d` is zero or the byte
/// written there, `/c` is the clone or the clone with its whole write, and after the final
/// fsync all files are exactly as written.
pub fn crash_direct_writes_never_stale(env: &TestEnv) -> TestResult {
    const STALE: u8 = 0x5E;
    let r = record_faulty(env, 4096, |rig, fault, flushes, checks| {
        leave_stale_blocks(rig, STALE)?;
        let base = pattern(9, 32768).iter().map(|&b| b | 0x80).collect::<Vec<u8>>();
        let src = rig.create("src")?;
        write_all(&src, 0, &base)?;
        let c = rig.create("c")?;
        c.clone_range(&src, 0, 0, 0)?;
        drop((src, c));
        let f = rig.open("d", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT)?;
        f.truncate(65536)?;
        rig.fs().sync()?;
        let p0 = flushes();
        // Writes: (pos, len, byte); none is 0 or STALE.
        let writes: [(u64, usize, u8); 4] =
            [(0, 16384, 0xA1), (20480 + 1024, 512, 0xB2), (65536, 8192, 0xC3), (90112 + 512, 1024, 0xD4)];
        let mut want = vec![0u8; 65536];
        for (pos, len, byte) in writes {
            write_direct(&f, pos, &vec![byte; len])?;
            want.resize(want.len().max(pos as usize + len), 0);
            want[pos as usize..pos as usize + len].fill(byte);
        }
        let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
        let failed = write_direct(&f, 32768, &[0xF6; 16384]);
        fault.remove_rule(rule);
        if failed.is_ok() {
            return Err(TestFailure("the faulted direct write succeeded".into()));
        }
        let cd = rig.open("c", OpenFlags::RDWR | OpenFlags::DIRECT)?;
        write_direct(&cd, 4096 + 512, &[0xE5; 1024])?;
        let mut cloned = base.clone();
        cloned[4608..5632].fill(0xE5);
        let (w, b2, c2) = (want.clone(), base.clone(), cloned.clone());
        checks.push((
            p0,
            Arc::new(move |fs| {
                let got = contents(fs, "d")?;
                if let Some(i) = (0..got.len()).find(|&i| got[i] != 0 && w.get(i) != Some(&got[i])) {
                    return Err(format!(
                        "d byte {i} is {:#x} (stale or foreign), size {}",
                        got[i],
                        got.len()
                    ));
                }
                let c = contents(fs, "c")?;
                if c != b2 && c != c2 {
                    return Err(format!("c torn: {}", super::rig::first_diff(&c, &c2)));
                }
                Ok(())
            }),
        ));
        f.fsync()?;
        cd.fsync()?;
        let p1 = flushes();
        checks.push((
            p1,
            Arc::new(move |fs| {
                expect_file(fs, "d", &want)?;
                expect_file(fs, "c", &cloned)?;
                expect_file(fs, "src", &base)
            }),
        ));
        Ok(())
    })?;
    verify(env, "direct_writes", &r)
}
