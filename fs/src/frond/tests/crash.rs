//! Crash consistency: a workload runs over a recording device; then every crash state (after
//! each bio, with and without losing the device's volatile cache) is mounted (journal replay),
//! checked with fsck, and compared with the states the workload passed through: the recovered
//! state must be the state at some operation boundary (operations are atomic) no older than the
//! last completed sync (synced changes are durable).

use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::frond::engine::{Fork, MapKind};
use crate::frond::inode::{S_IFDIR, S_IFMT, S_IFREG};
use crate::frond::testutil::RecordingDisk;

/// A logical snapshot: every path with its type, size, link count, mapping and inline bytes.
fn snapshot(fs: &Frond) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = alloc::vec![(fs.root_ino(), String::from(""))];
    while let Some((dir, path)) = stack.pop() {
        for e in fs.readdir(dir, 2, usize::MAX).unwrap() {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let p = alloc::format!("{path}/{name}");
            let st = fs.stat(e.ino).unwrap();
            let mut line = alloc::format!("{p} mode {:o} size {} nlink {}", st.mode, st.size, st.nlink);
            if st.mode & S_IFMT == S_IFDIR {
                stack.push((e.ino, p));
            } else if st.mode & S_IFMT == S_IFREG {
                let mut fb = 0;
                while fb < 64 {
                    let m = fs.map(e.ino, fb, 64 - fb, Fork::Data).unwrap();
                    if m.kind != MapKind::Hole {
                        line += &alloc::format!(
                            " [{}+{} {:?} @{} {}]",
                            fb,
                            m.len,
                            m.kind,
                            m.disk_block,
                            m.shared
                        );
                    }
                    fb += m.len;
                }
                let mut buf = [0u8; 400];
                if let Ok(n) = fs.read_inline(e.ino, 0, &mut buf) {
                    line += &alloc::format!(" inline {:?}", &buf[..n]);
                }
            } else {
                line += &alloc::format!(" -> {:?}", fs.readlink(e.ino).ok());
            }
            out.push(line);
        }
    }
    out.sort();
    out
}

/// Runs the workload; returns the snapshots at each operation boundary with the bio count
/// at that point, and for each boundary whether a sync had completed there.
fn workload(fs: &Frond, rec: &RecordingDisk) -> Vec<(usize, bool, Vec<String>)> {
    let root = fs.root_ino();
    let mut states = alloc::vec![(rec.len(), true, snapshot(fs))];
    let mut step = |fs: &Frond, sync: bool| {
        if sync {
            fs.sync().unwrap();
        }
        states.push((rec.len(), sync, snapshot(fs)));
    };
    let d = fs.mkdir(root, b"dir", 0o755, 0, 0).unwrap();
    step(fs, false);
    let a = fs.create(root, b"a", S_IFREG | 0o644, 0, 0).unwrap();
    step(fs, true);
    fs.write_inline(a, 0, b"hello inline world").unwrap();
    step(fs, false);
    let b = fs.create(d, b"b", S_IFREG | 0o600, 0, 0).unwrap();
    step(fs, false);
    fs.allocate(b, 0, 6, true, Fork::Data).unwrap();
    step(fs, false);
    fs.set_disk_size(b, 6 * 1024).unwrap();
    step(fs, false);
    fs.convert_unwritten(b, 0, 4).unwrap();
    step(fs, true);
    fs.symlink(d, b"link", b"../a").unwrap();
    step(fs, false);
    let c = fs.create(root, b"c", S_IFREG | 0o644, 0, 0).unwrap();
    step(fs, false);
    fs.set_disk_size(c, 16 * 1024).unwrap();
    step(fs, false);
    fs.clone_extents(b, 0, c, 2, 6).unwrap();
    step(fs, true);
    fs.rename(root, b"a", d, b"a2").unwrap();
    step(fs, false);
    fs.link(c, root, b"c-again").unwrap();
    step(fs, false);
    fs.cow_prepare(c, 2, 3).unwrap();
    step(fs, false);
    fs.cow_remap(c, 2, 3).unwrap();
    step(fs, true);
    fs.punch(b, 1, 2).unwrap();
    step(fs, false);
    for i in 0..12u32 {
        fs.create(d, alloc::format!("many-{i}").as_bytes(), S_IFREG, 0, 0).unwrap();
        step(fs, i % 5 == 4);
    }
    fs.unlink(root, b"c").unwrap();
    step(fs, false);
    fs.truncate(b, 1024).unwrap();
    step(fs, true);
    assert_eq!(fs.rmdir(root, b"dir"), Err(crate::Errno::ENOTEMPTY));
    fs.mkdir(root, b"empty", 0o700, 0, 0).unwrap();
    step(fs, false);
    fs.rmdir(root, b"empty").unwrap();
    step(fs, true);
    states
}

fn check_crash_state(img: Vec<u8>, k: usize, states: &[(usize, bool, Vec<String>)], what: &str) {
    let disk = Arc::new(RamDisk::from_image(img, 512));
    let fs = Frond::mount(disk.clone(), platform()).unwrap_or_else(|e| panic!("{what} {k}: mount: {e}"));
    let r = fs.fsck().unwrap();
    assert!(r.is_clean(), "{what} {k}: fsck:\n{}", problems(&r));
    let got = snapshot(&fs);
    // The newest boundary whose bios all reached the disk and that had completed a sync.
    let durable = states.iter().rposition(|(at, synced, _)| *synced && *at <= k).unwrap_or(0);
    let ok = states[durable..].iter().any(|(_, _, s)| *s == got);
    assert!(
        ok,
        "{what} {k}: recovered state is not an operation boundary at or after boundary {durable}:\n{got:#?}"
    );
    fs.unmount().unwrap();
}

#[test]
fn every_crash_state_recovers_to_an_operation_boundary() {
    let disk = Arc::new(RamDisk::new(2 << 20, 512).unwrap());
    mkfs(
        disk.clone(),
        platform(),
        &MkfsOptions { block_size: 1024, log_blocks: Some(64), ..Default::default() },
    )
    .unwrap();
    let rec = Arc::new(RecordingDisk::new(disk.clone()));
    let fs = Frond::mount(rec.clone(), platform()).unwrap();
    let states = workload(&fs, &rec);
    fs.unmount().unwrap();
    let n = rec.len();
    assert!(n > 40, "workload too small to be interesting: {n} bios");
    // The log (64 blocks) filled during the workload: a checkpoint moved the tail mid-run, not
    // just at unmount.
    let header_writes = rec.records().iter().filter(|r| r.offset == 2 * 1024 && !r.data.is_empty()).count();
    assert!(header_writes >= 2, "no checkpoint during the workload ({header_writes} header writes)");
    std::println!("{n} bios, {header_writes} journal header writes, {} boundaries", states.len());
    for k in 0..=n {
        check_crash_state(rec.image_after(k), k, &states, "prefix");
        check_crash_state(rec.image_volatile_lost(k), k, &states, "cache lost");
    }
}

/// A seeded random workload of namespace and extent operations, each followed by a snapshot.
fn random_workload(
    fs: &Frond,
    rec: &RecordingDisk,
    seed: u64,
    ops: usize,
) -> Vec<(usize, bool, Vec<String>)> {
    let mut rng = crate::frond::testutil::Rng(seed);
    let root = fs.root_ino();
    let mut files: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut states = alloc::vec![(rec.len(), true, snapshot(fs))];
    let mut next = 0u32;
    for _ in 0..ops {
        let pick = |rng: &mut crate::frond::testutil::Rng, files: &Vec<(Vec<u8>, u64)>| {
            (!files.is_empty()).then(|| rng.below(files.len() as u64) as usize)
        };
        match rng.below(9) {
            0 | 1 => {
                let name = alloc::format!("f{next}").into_bytes();
                next += 1;
                let ino = fs.create(root, &name, S_IFREG | 0o644, 0, 0).unwrap();
                fs.set_disk_size(ino, 32 * fs.block_size() as u64).unwrap();
                files.push((name, ino));
            }
            2 => {
                if let Some(i) = pick(&mut rng, &files) {
                    let (name, _) = files.swap_remove(i);
                    fs.unlink(root, &name).unwrap();
                }
            }
            3 => {
                if let Some(i) = pick(&mut rng, &files) {
                    let name = alloc::format!("r{next}").into_bytes();
                    next += 1;
                    fs.rename(root, &files[i].0, root, &name).unwrap();
                    files[i].0 = name;
                }
            }
            4 | 5 => {
                if let Some(i) = pick(&mut rng, &files) {
                    let fb = rng.below(24);
                    let m = fs.allocate(files[i].1, fb, 1 + rng.below(6), true, Fork::Data).unwrap();
                    if rng.below(2) == 0 {
                        fs.convert_unwritten(files[i].1, fb, m.len).unwrap();
                    }
                }
            }
            6 => {
                if let (Some(i), Some(j)) = (pick(&mut rng, &files), pick(&mut rng, &files)) {
                    if i != j {
                        let (a, b) = (files[i].1, files[j].1);
                        fs.clone_extents(a, rng.below(16), b, rng.below(16), 1 + rng.below(8)).unwrap();
                    }
                }
            }
            7 => {
                if let Some(i) = pick(&mut rng, &files) {
                    fs.punch(files[i].1, rng.below(24), 1 + rng.below(8)).unwrap();
                }
            }
            _ => {
                if let Some(i) = pick(&mut rng, &files) {
                    let (ino, fb, n) = (files[i].1, rng.below(24), 1 + rng.below(6));
                    fs.cow_prepare(ino, fb, n).unwrap();
                    fs.cow_remap(ino, fb, n).unwrap();
                }
            }
        }
        let sync = rng.below(6) == 0;
        if sync {
            fs.sync().unwrap();
        }
        states.push((rec.len(), sync, snapshot(fs)));
    }
    states
}

#[test]
fn random_extent_and_namespace_workload_survives_every_crash_state() {
    // FROND_CRASH_SEEDS=n runs n seeds (default 3) for a longer local soak.
    let seeds = std::env::var("FROND_CRASH_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3u64);
    for seed in (0..seeds).map(|i| 0xC2A5_0001 + i) {
        // FROND_BS / FROND_NODE_CAP vary the geometry for a local soak.
        let bs = std::env::var("FROND_BS").ok().and_then(|v| v.parse().ok()).unwrap_or(4096u32);
        let node_cap = std::env::var("FROND_NODE_CAP").ok().and_then(|v| v.parse().ok()).unwrap_or(0u32);
        let disk = Arc::new(RamDisk::new((4 << 20).max(1024 * bs as u64), 512).unwrap());
        let opts = MkfsOptions { block_size: bs, log_blocks: Some(256), node_cap, ..Default::default() };
        mkfs(disk.clone(), platform(), &opts).unwrap();
        let rec = Arc::new(RecordingDisk::new(disk.clone()));
        let fs = Frond::mount(rec.clone(), platform()).unwrap();
        let states = random_workload(&fs, &rec, seed, 120);
        fs.unmount().unwrap();
        let n = rec.len();
        let mut distinct: Vec<&Vec<String>> = states.iter().map(|s| &s.2).collect();
        distinct.dedup();
        assert!(
            n > 30 && distinct.len() > 60,
            "seed {seed:#x}: workload too small: {n} bios, {} states",
            distinct.len()
        );
        for k in 0..=n {
            let what = alloc::format!("seed {seed:#x} prefix");
            check_crash_state(rec.image_after(k), k, &states, &what);
            let what = alloc::format!("seed {seed:#x} cache lost");
            check_crash_state(rec.image_volatile_lost(k), k, &states, &what);
        }
    }
}

#[test]
fn write_errors_shut_down_and_keep_the_last_commit() {
    use crate::frond::testutil::FailingDisk;
    // A commit is two writes (images, then the commit record): fail the first or the second.
    for allowed in 0..2 {
        let disk = Arc::new(RamDisk::new(4 << 20, 512).unwrap());
        mkfs(disk.clone(), platform(), &MkfsOptions { block_size: 4096, ..Default::default() }).unwrap();
        let dev = Arc::new(FailingDisk::new(disk.clone()));
        let fs = Frond::mount(dev.clone(), platform()).unwrap();
        let root = fs.root_ino();
        fs.create(root, b"durable", S_IFREG, 0, 0).unwrap();
        fs.sync().unwrap();
        fs.create(root, b"lost", S_IFREG, 0, 0).unwrap();
        dev.fail_after(allowed);
        assert_eq!(fs.sync(), Err(crate::Errno::EIO), "allowed {allowed}");
        assert!(fs.is_shut_down());
        assert_eq!(fs.create(root, b"x", S_IFREG, 0, 0), Err(crate::Errno::EIO));
        assert_eq!(fs.unmount(), Err(crate::Errno::EIO));
        let fs = Frond::mount(disk.clone(), platform()).unwrap();
        assert!(fs.lookup(root, b"durable").is_ok());
        // The failed commit never got its commit record on disk: its changes are gone.
        assert_eq!(fs.lookup(root, b"lost"), Err(crate::Errno::ENOENT), "allowed {allowed}");
        assert_clean(&fs);
    }
}

#[test]
fn fsync_commits_with_preflush_fua_or_flushes_when_clean() {
    let disk = Arc::new(RamDisk::new(4 << 20, 512).unwrap());
    mkfs(disk.clone(), platform(), &MkfsOptions { block_size: 4096, ..Default::default() }).unwrap();
    let rec = Arc::new(RecordingDisk::new(disk.clone()));
    let fs = Frond::mount(rec.clone(), platform()).unwrap();
    let root = fs.root_ino();
    let f = fs.create(root, b"f", S_IFREG, 0, 0).unwrap();
    let before = rec.len();
    fs.fsync(f).unwrap();
    let recs = &rec.records()[before..];
    // One batch of log blocks, then the commit record with PREFLUSH + FUA. Nothing else.
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0].flags & !crate::block::BioFlags::META, crate::block::BioFlags::empty());
    assert_eq!(
        recs[1].flags & !crate::block::BioFlags::META,
        crate::block::BioFlags::PREFLUSH | crate::block::BioFlags::FUA
    );
    // Nothing new to commit: a plain device flush.
    let before = rec.len();
    fs.fsync(f).unwrap();
    let recs = &rec.records()[before..];
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].op, crate::block::BioOp::Flush);
    // Reads do not write.
    let before = rec.len();
    fs.stat(f).unwrap();
    fs.lookup(root, b"f").unwrap();
    assert_eq!(rec.len(), before);
}
