//! Multi-file workloads, the namespace through the file API, open-unlinked files, background
//! writeback under a small cache, and a seeded model test against an in-memory file.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::rig::{first_diff, pattern, read_all, write_all, FsRig};
use crate::block::prng::SplitMix64;
use crate::vfs::{FallocFlags, MountOptions, OpenFlags};
use crate::Errno;

/// 60 files of assorted sizes in three directories (some inline, some multi-extent, some
/// sparse), fsync on a few, unmount, mount, verify every byte and every directory listing.
pub fn many_files_remount_and_verify(env: &TestEnv) -> TestResult {
    for bs in [1024, 4096] {
        let mut rig = FsRig::new(env, bs)?;
        let fs = rig.fs().clone();
        let dirs = [fs.mkdir(fs.root(), b"a", 0o755)?, fs.mkdir(fs.root(), b"b", 0o755)?, fs.root()];
        let mut rng = SplitMix64::new(0x5EED + bs);
        let mut files = Vec::new();
        for i in 0..60u64 {
            let dir = dirs[(i % 3) as usize];
            let name = format!("file{i}");
            let size = match i % 4 {
                0 => rng.below(300) as usize,
                1 => rng.below(20_000) as usize,
                2 => 100_000 + rng.below(200_000) as usize,
                _ => 1,
            };
            let at = if i % 7 == 0 { 1 << 20 } else { 0 };
            let f = fs.open_at(dir, name.as_bytes(), OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
            let data = pattern(i, size);
            write_all(&f, at, &data)?;
            if i % 5 == 0 {
                f.fsync()?;
            }
            files.push((dir, name, at, data));
        }
        drop(fs);
        rig.remount()?;
        let fs = rig.fs().clone();
        for (dir, name, at, data) in &files {
            let f = fs.open_at(*dir, name.as_bytes(), OpenFlags::RDONLY, 0)?;
            ensure_eq!(f.size(), at + data.len() as u64, "bs {bs}: {name} size");
            let got = read_all(&f)?;
            ensure!(got[..*at as usize].iter().all(|&b| b == 0), "bs {bs}: {name} sparse head");
            ensure!(
                got[*at as usize..] == data[..],
                "bs {bs}: {name}: {}",
                first_diff(&got[*at as usize..], data)
            );
        }
        for (k, d) in dirs.iter().enumerate() {
            let names = fs.readdir(*d, 0, 1000)?;
            let files_here = names.iter().filter(|e| e.name.starts_with(b"file")).count();
            ensure_eq!(files_here, 20, "bs {bs}: directory {k} lists its files");
        }
        drop(fs);
        rig.finish()?;
    }
    Ok(())
}

/// Namespace calls through the file API: link, symlink / readlink, rename over a file,
/// readdir, unlink, rmdir; stat reports the in-core size.
pub fn namespace_through_the_file_api(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let fs = rig.fs().clone();
    let root = fs.root();
    let d = fs.mkdir(root, b"dir", 0o755)?;
    let f = fs.open_at(d, b"one", OpenFlags::RDWR | OpenFlags::CREAT, 0o600)?;
    write_all(&f, 0, b"payload")?;
    ensure_eq!(fs.stat(f.ino())?.size, 7, "stat sees the in-core size before writeback");
    fs.link(f.ino(), root, b"hard")?;
    ensure_eq!(fs.stat(f.ino())?.nlink, 2);
    let s = fs.symlink(root, b"sym", b"dir/one")?;
    ensure_eq!(fs.readlink(s)?, b"dir/one".to_vec());
    ensure_eq!(fs.open(s, OpenFlags::RDONLY).err(), Some(Errno::ELOOP));
    let g = fs.open_at(root, b"other", OpenFlags::RDWR | OpenFlags::CREAT, 0o644)?;
    write_all(&g, 0, b"replaced")?;
    fs.rename(root, b"hard", root, b"other")?;
    ensure_eq!(fs.resolve(b"/other")?, f.ino(), "rename replaced the target");
    ensure_eq!(read_all(&g)?, b"replaced".to_vec(), "the replaced file stays readable while open");
    drop(g);
    ensure_eq!(fs.resolve(b"/dir/one")?, f.ino());
    let names: Vec<Vec<u8>> = fs.readdir(root, 0, 100)?.into_iter().map(|e| e.name.to_vec()).collect();
    for n in [&b"dir"[..], b"sym", b"other"] {
        ensure!(names.iter().any(|x| x == n), "readdir lists {:?}", core::str::from_utf8(n));
    }
    fs.unlink(d, b"one")?;
    fs.rmdir(root, b"dir")?;
    ensure_eq!(fs.resolve(b"/dir"), Err(Errno::ENOENT));
    drop((f, fs));
    rig.remount()?;
    let fs = rig.fs().clone();
    let o = fs.open_at(fs.root(), b"other", OpenFlags::RDONLY, 0)?;
    ensure_eq!(read_all(&o)?, b"payload".to_vec());
    drop((o, fs));
    rig.finish()
}

/// An unlinked file stays readable and writable while open; its blocks are freed at the last
/// close; fsck is clean throughout; an unclean unmount finishes the freeing at mount.
pub fn open_unlinked_file_lives_until_close(env: &TestEnv) -> TestResult {
    let mut rig = FsRig::new(env, 4096)?;
    let fs = rig.fs().clone();
    let f = rig.create("tmp")?;
    write_all(&f, 0, &vec![3u8; 1 << 20])?;
    f.fsync()?;
    let free_with = rig.free_blocks()?;
    fs.unlink(fs.root(), b"tmp")?;
    ensure_eq!(fs.resolve(b"/tmp"), Err(Errno::ENOENT));
    ensure!(read_all(&f)? == vec![3u8; 1 << 20], "readable after unlink");
    write_all(&f, 1 << 20, &[4u8; 4096])?;
    f.fsync()?;
    let st = f.stat()?;
    ensure_eq!(st.nlink, 0);
    ensure_eq!(st.blocks, (257 * 4096) / 512, "the inode still holds its 257 blocks");
    rig.check()?;
    drop(f);
    ensure!(rig.free_blocks()? >= free_with + 256, "freed at the last close");
    drop(fs);
    rig.remount()?;
    rig.finish()
}

/// Background writeback and reclaim from `background_work` under a small cache: 24 MiB written
/// through an 8 MiB cache, everything correct after remount, the cache within budget.
pub fn background_work_under_small_cache(env: &TestEnv) -> TestResult {
    let dev = env.device("scratch0")?;
    let mut rig = FsRig::on(env.platform.clone(), dev, 4096, 48 << 20)?;
    rig.opts = MountOptions::new(8 << 20);
    rig.remount()?;
    let f = rig.create("big")?;
    let chunk = 1 << 20;
    for i in 0..24u64 {
        write_all(&f, i * chunk, &pattern(i, chunk as usize))?;
        let r = rig.fs().background_work();
        ensure!(rig.fs().cache().cached_bytes() <= 8 << 20, "cache over budget after chunk {i}: {r:?}");
    }
    while rig.fs().cache().dirty_bytes() > 0 {
        let before = rig.fs().cache().dirty_bytes();
        let r = rig.fs().background_work();
        ensure!(
            r.written_bytes > 0 || rig.fs().cache().dirty_bytes() < before || before <= (8 << 20) / 10,
            "background work makes progress: {r:?}"
        );
        if before <= (8 << 20) / 10 {
            break;
        }
    }
    drop(f);
    rig.remount()?;
    let f = rig.open("big", OpenFlags::RDONLY)?;
    for i in 0..24u64 {
        let got = super::rig::read_exact(&f, i * chunk, chunk as usize)?;
        ensure!(got == pattern(i, chunk as usize), "chunk {i}");
    }
    drop(f);
    rig.finish()
}

/// The model test: seeded random writes, truncates, punches, zero ranges, preallocations,
/// collapses, inserts, clones into a second file, COW writes and copies back, fsyncs and
/// remounts against `Vec<u8>` models; every read and size must
/// match. The seed is in the failure message.
pub fn model_random_ops_match_vec(env: &TestEnv) -> TestResult {
    for (bs, seed) in [(1024u64, 0xF5A1u64), (4096, 0xF5A2), (65536, 0xF5A3)] {
        model_run(env, bs, seed, 120)
            .map_err(|e| TestFailure(format!("bs {bs}, seed {seed:#x}: {}", e.0)))?;
    }
    Ok(())
}

fn model_run(env: &TestEnv, bs: u64, seed: u64, ops: usize) -> TestResult {
    let mut rig = FsRig::new(env, bs)?;
    let mut rng = SplitMix64::new(seed);
    let mut model: Vec<u8> = Vec::new();
    let max = 256 * 1024u64;
    let mut f = rig.create("m")?;
    // A second file that clones, copies and COW-writes to and from `m`.
    let mut g = rig.create("g")?;
    let mut gmodel: Vec<u8> = Vec::new();
    for op in 0..ops {
        let size = model.len() as u64;
        let off = rng.below(max);
        let len = 1 + rng.below(max / 4);
        let what = rng.below(100);
        let ctx = |e: crate::Errno| TestFailure(format!("op {op} ({what}) at {off}+{len}: {e}"));
        match what {
            0..=39 => {
                let data = pattern(op as u64, len as usize);
                write_all(&f, off, &data)?;
                if model.len() < (off + len) as usize {
                    model.resize((off + len) as usize, 0);
                }
                model[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            40..=49 => {
                let new = rng.below(max);
                f.truncate(new).map_err(ctx)?;
                model.resize(new as usize, 0);
            }
            50..=57 => {
                f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, off, len).map_err(ctx)?;
                let e = (off + len).min(size);
                if off < e {
                    model[off as usize..e as usize].fill(0);
                }
            }
            58..=65 => {
                let keep = rng.below(2) == 0;
                let mode = if keep {
                    FallocFlags::ZERO_RANGE | FallocFlags::KEEP_SIZE
                } else {
                    FallocFlags::ZERO_RANGE
                };
                f.fallocate(mode, off, len).map_err(ctx)?;
                let e = if keep { (off + len).min(size) } else { off + len };
                if model.len() < e as usize {
                    model.resize(e as usize, 0);
                }
                if off < e {
                    model[off as usize..e as usize].fill(0);
                }
            }
            66..=71 => {
                let keep = rng.below(2) == 0;
                let mode = if keep { FallocFlags::KEEP_SIZE } else { FallocFlags::empty() };
                f.fallocate(mode, off, len).map_err(ctx)?;
                if !keep && model.len() < (off + len) as usize {
                    model.resize((off + len) as usize, 0);
                }
            }
            72..=77 => {
                let (o, l) = (off / bs * bs, (len / bs).max(1) * bs);
                let r = f.fallocate(FallocFlags::COLLAPSE_RANGE, o, l);
                if o + l >= size {
                    ensure_eq!(r, Err(Errno::EINVAL), "op {op}: collapse reaching EOF");
                } else {
                    r.map_err(ctx)?;
                    model.drain(o as usize..(o + l) as usize);
                }
            }
            78..=83 => {
                let (o, l) = (off / bs * bs, (len / bs).max(1) * bs);
                let r = f.fallocate(FallocFlags::INSERT_RANGE, o, l);
                if o >= size || size + l > 4 * max {
                    ensure!(r.is_err(), "op {op}: insert at/after EOF must fail");
                } else {
                    r.map_err(ctx)?;
                    model.splice(o as usize..o as usize, vec![0u8; l as usize]);
                }
            }
            84..=87 => f.fsync().map_err(ctx)?,
            88..=89 => {
                // Clone a block-aligned range of m into g (to m's EOF when it ends there).
                let pos_in = (off / bs * bs).min(size / bs * bs);
                let pos_out = rng.below(max) / bs * bs;
                let l = (len / bs).max(1) * bs;
                let l = l.min(size - pos_in);
                let gsize = gmodel.len() as u64;
                let r = g.clone_range(&f, pos_in, l, pos_out);
                let ok_shape = l == 0 || l.is_multiple_of(bs) || pos_out + l >= gsize;
                if l == 0 || !ok_shape {
                    ensure!(r.is_ok() || r == Err(Errno::EINVAL), "op {op}: clone {r:?}");
                    if r.is_err() {
                        continue;
                    }
                }
                r.map_err(ctx)?;
                if l > 0 {
                    if gmodel.len() < (pos_out + l) as usize {
                        gmodel.resize((pos_out + l) as usize, 0);
                    }
                    gmodel[pos_out as usize..(pos_out + l) as usize]
                        .copy_from_slice(&model[pos_in as usize..(pos_in + l) as usize]);
                }
            }
            90..=91 => {
                // COW-write g, or copy part of g back into m.
                if rng.below(2) == 0 {
                    let data = pattern(op as u64 + 1000, (len as usize).min(20000));
                    write_all(&g, off, &data)?;
                    if gmodel.len() < off as usize + data.len() {
                        gmodel.resize(off as usize + data.len(), 0);
                    }
                    gmodel[off as usize..off as usize + data.len()].copy_from_slice(&data);
                } else {
                    let gs = gmodel.len() as u64;
                    let from = off.min(gs);
                    let n = f.copy_range(&g, from, len, off).map_err(ctx)?;
                    ensure_eq!(n, len.min(gs - from), "op {op}: copy_range length");
                    if n > 0 {
                        if model.len() < (off + n) as usize {
                            model.resize((off + n) as usize, 0);
                        }
                        model[off as usize..(off + n) as usize]
                            .copy_from_slice(&gmodel[from as usize..(from + n) as usize]);
                    }
                }
            }
            92..=95 => {
                drop((f, g));
                rig.remount()?;
                f = rig.create("m")?;
                g = rig.create("g")?;
            }
            _ => {
                let n = rng.below(max / 2) as usize;
                let mut buf = vec![0u8; n];
                let got = f.read(off, &mut buf).map_err(ctx)?;
                let want = model.len().saturating_sub(off as usize).min(n);
                ensure_eq!(got, want, "op {op}: read length at {off}");
                if got > 0 {
                    ensure!(buf[..got] == model[off as usize..off as usize + got], "op {op}: read at {off}");
                }
            }
        }
        ensure_eq!(f.size(), model.len() as u64, "op {op} ({what}): size");
        ensure_eq!(g.size(), gmodel.len() as u64, "op {op} ({what}): size of g");
    }
    let got = read_all(&f)?;
    ensure!(got == model, "final contents: {}", first_diff(&got, &model));
    let got = read_all(&g)?;
    ensure!(got == gmodel, "final contents of g: {}", first_diff(&got, &gmodel));
    drop((f, g));
    rig.check()?;
    rig.remount()?;
    let f = rig.open("m", OpenFlags::RDONLY)?;
    let got = read_all(&f)?;
    ensure!(got == model, "after remount: {}", first_diff(&got, &model));
    let g = rig.open("g", OpenFlags::RDONLY)?;
    let got = read_all(&g)?;
    ensure!(got == gmodel, "g after remount: {}", first_diff(&got, &gmodel));
    drop((f, g));
    rig.finish()
}

/// The in-core inode table stays bounded: 2100 small files created and closed; the table is
/// trimmed back at open and by `background_work`; every file reads back afterwards; statfs
/// counts the inodes.
pub fn inode_table_eviction_and_statfs(env: &TestEnv) -> TestResult {
    use crate::vfs::fs::INODE_TABLE_TARGET;
    let mut rig = FsRig::new(env, 4096)?;
    let fs = rig.fs().clone();
    let files0 = fs.statfs()?.files;
    let n = 2 * INODE_TABLE_TARGET as u64 + 52;
    for i in 0..n {
        let f =
            fs.open_at(fs.root(), format!("n{i}").as_bytes(), OpenFlags::WRONLY | OpenFlags::CREAT, 0o644)?;
        write_all(&f, 0, &pattern(i, 40))?;
        f.close()?;
    }
    ensure_eq!(fs.statfs()?.files, files0 + n, "statfs counts the new inodes");
    ensure!(fs.cached_inodes() <= 2 * INODE_TABLE_TARGET + 1, "bounded at open: {}", fs.cached_inodes());
    let r = fs.background_work();
    ensure!(
        fs.cached_inodes() <= INODE_TABLE_TARGET,
        "trimmed by background work: {} ({r:?})",
        fs.cached_inodes()
    );
    for i in (0..n).step_by(97) {
        let f = fs.open_at(fs.root(), format!("n{i}").as_bytes(), OpenFlags::RDONLY, 0)?;
        ensure!(read_all(&f)? == pattern(i, 40), "file {i}");
    }
    drop(fs);
    rig.remount()?;
    ensure_eq!(rig.fs().statfs()?.files, files0 + n);
    rig.finish()
}
