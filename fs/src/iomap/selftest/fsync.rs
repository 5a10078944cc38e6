//! §11: fsync, O_SYNC / O_DSYNC write-through, flush and FUA ordering.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{folio, Rig, RigOpts};
use crate::block::{BioFlags, BioOp, BlockDevice, FaultDisk, FaultRule, OpMask};
use crate::iomap::{IoendDone, IoendFlags, WriteFlags};
use crate::Errno;

/// The trace as `(op, flags, offset, len)`.
fn ops(rig: &Rig) -> Vec<(BioOp, BioFlags, u64, u64)> {
    rig.trace.ops().iter().map(|t| (t.op, t.flags, t.offset, t.len)).collect()
}

const COMMIT: BioFlags = BioFlags::PREFLUSH.union(BioFlags::FUA);

pub fn fsync_t2_errseq_two_openers(env: &TestEnv) -> TestResult {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let rig = Rig::on(env.platform.clone(), fault.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 1, &[b'A'; 4096])?;
    rig.fs.commit()?;
    let mut fd2 = f.open();
    let mut fd1 = f.open();
    f.write(&mut fd1, 0, &[b'B'; 4096])?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
    ensure_eq!(f.fsync(&mut fd1, false), Err(Errno::EIO), "fd1 sees the writeback error");
    ensure_eq!(f.fsync(&mut fd1, false), Ok(()), "once");
    ensure_eq!(f.fsync(&mut fd2, true), Err(Errno::EIO), "fd2, opened before the error, sees it too");
    ensure_eq!(f.fsync(&mut fd2, true), Ok(()));
    let mut fd3 = f.open();
    ensure_eq!(f.fsync(&mut fd3, false), Ok(()), "an opener after the error was seen does not");
    ensure_eq!(fault.rule_stats(rule).map(|s| s.fired), Some(1));
    Ok(())
}

pub fn fsync_commit_after_data_with_preflush_fua(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    rig.fs.commit()?;
    rig.trace.clear();
    let mut open = f.open();
    f.write(&mut open, 0, &[1u8; 8192])?;
    f.fsync(&mut open, true)?;
    let t = ops(&rig);
    ensure_eq!(t.len(), 2, "{:?}", t);
    ensure_eq!((t[0].0, t[0].1, t[0].3), (BioOp::Write, BioFlags::empty(), 8192), "the data first");
    ensure_eq!((t[1].0, t[1].1, t[1].2), (BioOp::Write, COMMIT, 0), "then the commit, PREFLUSH + FUA");
    ensure_eq!(rig.trace.counts().flushes, 0, "no separate flush");
    ensure_eq!(f.file().disk_size(), 8192);
    Ok(())
}

pub fn fsync_flush_when_nothing_to_commit(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 1, &[b'A'; 4096])?;
    rig.fs.commit()?;
    rig.trace.clear();
    let mut open = f.open();
    f.write(&mut open, 0, &[b'B'; 4096])?;
    f.fsync(&mut open, false)?;
    ensure_eq!(
        ops(&rig),
        vec![(BioOp::Write, BioFlags::empty(), d * 4096, 4096), (BioOp::Flush, BioFlags::empty(), 0, 0)],
        "an overwrite needs no commit: data, then one flush"
    );
    ensure_eq!(rig.fs.counts().empty_commits, 1);
    Ok(())
}

pub fn odsync_overwrite_single_fua_write_no_flush(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 1, &[b'A'; 4096])?;
    rig.fs.commit()?;
    rig.trace.clear();
    let mut open = f.open();
    ensure_eq!(f.write_flags(&mut open, 100, &[b'B'; 10], WriteFlags::DSYNC)?, 10);
    ensure_eq!(
        ops(&rig),
        vec![(BioOp::Read, BioFlags::empty(), d * 4096, 4096), (BioOp::Write, BioFlags::FUA, d * 4096, 4096)],
        "read-modify-write, then the block written through with FUA, nothing else"
    );
    let fo = folio(&f, 0)?;
    ensure!(fo.is_uptodate() && !fo.is_dirty() && !fo.is_writeback(), "the folio ends uptodate and clean");
    ensure_eq!(f.file().mapping().nr_dirty(), 0);
    let mut expect = vec![b'A'; 4096];
    expect[100..110].fill(b'B');
    ensure_eq!(rig.peek(d * 4096, 4096)?, expect);
    ensure_eq!(rig.ctx.stats().writethrough_bios, 1);
    Ok(())
}

pub fn osync_write_through_merges_chunks_and_commits_size(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.max_order = 0;
    let rig = Rig::new(env, opts)?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 8, &[b'A'; 4096])?;
    rig.fs.commit()?;
    rig.trace.clear();
    rig.fs.reset_counts();
    let mut open = f.open();
    ensure_eq!(f.write_flags(&mut open, 4096, &[b'S'; 16384], WriteFlags::SYNC)?, 16384);
    ensure_eq!(
        ops(&rig),
        vec![(BioOp::Write, BioFlags::empty(), (d + 1) * 4096, 16384), (BioOp::Write, COMMIT, 0, 4096)],
        "four folio chunks in one bio, then the size commit"
    );
    ensure_eq!(
        rig.fs.ioend_log(),
        vec![IoendDone { offset: 4096, size: 16384, flags: IoendFlags::empty(), error: None }]
    );
    ensure_eq!((f.size(), f.file().disk_size()), (20480, 20480));
    ensure_eq!(f.file().mapping().nr_dirty(), 0);
    ensure_eq!(rig.peek((d + 1) * 4096, 16384)?, vec![b'S'; 16384]);
    Ok(())
}

pub fn odsync_fallback_for_delalloc_dirties_then_syncs(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    rig.fs.commit()?;
    rig.trace.clear();
    let mut open = f.open();
    ensure_eq!(f.write_flags(&mut open, 0, &[b'D'; 8192], WriteFlags::DSYNC)?, 8192);
    let t = ops(&rig);
    ensure_eq!(t.len(), 2, "{:?}", t);
    ensure_eq!(
        (t[0].0, t[0].1, t[0].3),
        (BioOp::Write, BioFlags::empty(), 8192),
        "written back (allocation needed)"
    );
    ensure_eq!((t[1].1, t[1].2), (COMMIT, 0), "then committed");
    ensure_eq!(rig.ctx.stats().writethrough_bios, 0);
    ensure_eq!(f.file().mapping().nr_dirty(), 0);
    ensure_eq!(f.read_disk(0, 8192)?, vec![b'D'; 8192]);
    Ok(())
}

pub fn osync_write_through_error_reported_to_writer(env: &TestEnv) -> TestResult {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let rig = Rig::on(env.platform.clone(), fault.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 1, &[b'A'; 4096])?;
    rig.fs.commit()?;
    let mut other = f.open();
    let mut writer = f.open();
    fault.add_rule(FaultRule::fail(OpMask::WRITE).once())?;
    ensure_eq!(f.write_flags(&mut writer, 0, &[b'B'; 4096], WriteFlags::DSYNC), Err(Errno::EIO));
    ensure_eq!(f.fsync(&mut writer, false), Ok(()), "the writer already got it");
    ensure_eq!(f.fsync(&mut other, false), Err(Errno::EIO), "other openers see it once");
    ensure_eq!(f.fsync(&mut other, false), Ok(()));
    Ok(())
}
