//! §4: writeback, ioends and completion.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{block_bits, folio, pattern, Rig, RigOpts};
use crate::block::{BioOp, BlockDevice, FaultDisk, FaultRule, OpMask};
use crate::iomap::testfs::ExtKind;
use crate::iomap::{writeback_range, IoendDone, IoendFlags, WritebackMode, WritebackOutcome};
use crate::Errno;

fn writes(rig: &Rig) -> Vec<(u64, u64, usize)> {
    rig.trace.ops().iter().filter(|t| t.op == BioOp::Write).map(|t| (t.offset, t.len, t.segments)).collect()
}

fn no_large_folios() -> RigOpts {
    let mut o = RigOpts::new(4096);
    o.max_order = 0;
    o
}

pub fn writeback_t1_two_1k_writes_for_dirty_blocks_1_and_3(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(1024))?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 4, &[b'A'; 4096])?;
    let mut open = f.open();
    f.read_all(&mut open)?;
    f.write(&mut open, 1024, &[b'B'; 1024])?;
    f.write(&mut open, 3072, &[b'C'; 1024])?;
    ensure_eq!(block_bits(&*folio(&f, 0)?).1, vec![1, 3]);
    rig.trace.clear();
    f.sync_data()?;
    ensure_eq!(
        writes(&rig),
        vec![(d * 1024 + 1024, 1024, 1), (d * 1024 + 3072, 1024, 1)],
        "two 1 KiB writes"
    );
    let fo = folio(&f, 0)?;
    ensure_eq!(block_bits(&fo).1, Vec::<usize>::new(), "dirty bits cleared");
    ensure!(!fo.is_dirty() && !fo.is_writeback());
    ensure_eq!(rig.peek(d * 1024, 4096)?, [[b'A'; 1024], [b'B'; 1024], [b'A'; 1024], [b'C'; 1024]].concat());
    Ok(())
}

pub fn writeback_t2_straddling_eof_zeroes_tail_and_skips_beyond(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, no_large_folios())?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 3, &[b'A'; 12288])?;
    let mut open = f.open();
    f.write(&mut open, 4096, &[b'B'; 8192])?;
    // The size drops under the dirty folios (a racing truncate before its cache work).
    f.file().set_size(5000);
    f.sync_data()?;
    ensure_eq!(
        writes(&rig),
        vec![((d + 1) * 4096, 4096, 1)],
        "block 1 only; the folio past EOF writes nothing"
    );
    let mut expect = vec![0u8; 4096];
    expect[..904].fill(b'B');
    ensure_eq!(rig.peek((d + 1) * 4096, 4096)?, expect, "bytes after EOF written as zeros");
    ensure_eq!(rig.peek((d + 2) * 4096, 4096)?, vec![b'A'; 4096]);
    ensure!(!folio(&f, 2)?.is_dirty());
    Ok(())
}

pub fn writeback_t3_sixteen_folios_one_bio(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, no_large_folios())?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 16, &[0u8; 65536])?;
    let mut open = f.open();
    f.write(&mut open, 0, &pattern(6, 65536))?;
    ensure_eq!(f.file().mapping().nr_dirty(), 16);
    f.sync_data()?;
    ensure_eq!(writes(&rig), vec![(d * 4096, 65536, 16)], "one bio, one segment per folio");
    ensure_eq!(rig.ctx.stats().ioends, 1);
    ensure_eq!(rig.peek(d * 4096, 65536)?, pattern(6, 65536));
    Ok(())
}

pub fn writeback_t3_unwritten_middle_three_ioends_converted(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, no_large_folios())?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 16, &[0u8; 65536])?;
    f.set_extent(6, 4, ExtKind::Unwritten(d + 6), false).map_err(|e| alloc::format!("{e}"))?;
    let mut open = f.open();
    f.write(&mut open, 0, &pattern(7, 65536))?;
    rig.fs.reset_counts();
    f.sync_data()?;
    ensure_eq!(
        writes(&rig),
        vec![(d * 4096, 24576, 6), ((d + 6) * 4096, 16384, 4), ((d + 10) * 4096, 24576, 6)],
        "flags differ: three ioends although contiguous on disk"
    );
    ensure_eq!(
        rig.fs.ioend_log(),
        vec![IoendDone { offset: 24576, size: 16384, flags: IoendFlags::UNWRITTEN, error: None }],
        "only the unwritten ioend needs completion work"
    );
    ensure_eq!(f.extents().len(), 1, "converted and merged: {:?}", f.extents());
    ensure_eq!(f.read_disk(0, 65536)?, pattern(7, 65536));
    Ok(())
}

pub fn writeback_t4_eio_reported_once_by_fsync(env: &TestEnv) -> TestResult {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let rig = Rig::on(env.platform.clone(), fault.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 2, &[b'A'; 8192])?;
    rig.fs.commit()?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'B'; 8192])?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE))?;
    ensure_eq!(f.fsync(&mut open, false), Err(Errno::EIO));
    fault.remove_rule(rule);
    ensure_eq!(f.fsync(&mut open, false), Ok(()), "reported once; the folio was not re-dirtied");
    ensure!(!folio(&f, 0)?.is_dirty());
    ensure_eq!(f.read_all(&mut open)?, vec![b'B'; 8192], "the data stays cached");
    Ok(())
}

pub fn writeback_boundary_and_flags_split_ioends(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, no_large_folios())?;
    let d = rig.spare_block(0);
    let f = rig.mapped_file(d, 2, &[0u8; 8192])?;
    f.set_extent(2, 2, ExtKind::Mapped(d + 2), true).map_err(|e| alloc::format!("{e}"))?;
    f.set_size(16384);
    let mut open = f.open();
    f.write(&mut open, 0, &[9u8; 16384])?;
    f.sync_data()?;
    ensure_eq!(
        writes(&rig),
        vec![(d * 4096, 8192, 2), ((d + 2) * 4096, 8192, 2)],
        "no merge across BOUNDARY"
    );
    Ok(())
}

pub fn writeback_many_ioends_in_flight(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, no_large_folios())?;
    let d = rig.spare_block(0);
    let f = rig.file()?;
    for i in 0..8 {
        f.set_extent(i, 1, ExtKind::Mapped(d + 2 * i), false).map_err(|e| alloc::format!("{e}"))?;
    }
    f.set_size(8 * 4096);
    let mut open = f.open();
    f.write(&mut open, 0, &[1u8; 8 * 4096])?;
    let out = writeback_range(f.file(), &f.ops(), 0, u64::MAX, WritebackMode::Integrity)?;
    ensure_eq!(out, WritebackOutcome { folios: 8, bytes: 8 * 4096, ioends: 8 });
    ensure_eq!(rig.ctx.device().in_flight(), 8, "every ioend submitted before any completion");
    ensure_eq!(f.file().mapping().nr_writeback(), 8);
    crate::iomap::wait_writeback_range(f.file(), 0, u64::MAX);
    ensure_eq!((rig.ctx.device().in_flight(), f.file().mapping().nr_writeback()), (0, 0));
    Ok(())
}

pub fn writeback_background_budget(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, no_large_folios())?;
    let f = rig.mapped_file(rig.spare_block(0), 8, &[0u8; 32768])?;
    let mut open = f.open();
    f.write(&mut open, 0, &[3u8; 32768])?;
    let held = folio(&f, 1)?.lock();
    let out =
        writeback_range(f.file(), &f.ops(), 0, u64::MAX, WritebackMode::Background { budget_bytes: 16384 })?;
    ensure_eq!((out.folios, out.bytes), (4, 16384), "stops at the budget");
    ensure!(folio(&f, 1)?.is_dirty(), "a locked folio is skipped, not waited for");
    ensure!(!folio(&f, 0)?.is_dirty() && !folio(&f, 4)?.is_dirty() && folio(&f, 5)?.is_dirty());
    drop(held);
    f.sync_data()?;
    ensure_eq!(f.file().mapping().nr_dirty(), 0);
    Ok(())
}

pub fn writeback_completions_merge_contiguous_ioends(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.config.max_io_bytes = 16384;
    let rig = Rig::new(env, opts)?;
    let f = rig.file()?;
    let mut open = f.open();
    f.write(&mut open, 0, &[5u8; 65536])?;
    let out = writeback_range(f.file(), &f.ops(), 0, u64::MAX, WritebackMode::Integrity)?;
    ensure_eq!(out.ioends, 4);
    while rig.ctx.device().in_flight() > 0 {
        rig.ctx.device().poll();
    }
    ensure_eq!(f.file().mapping().nr_writeback(), 16, "folios stay under writeback until the work is done");
    ensure_eq!(rig.ctx.process_completions(), 4);
    ensure_eq!(
        rig.fs.ioend_log(),
        vec![IoendDone { offset: 0, size: 65536, flags: IoendFlags::UNWRITTEN, error: None }],
        "four contiguous ioends, one completion call"
    );
    ensure_eq!((f.file().mapping().nr_writeback(), f.file().disk_size()), (0, 65536));
    ensure_eq!(f.read_disk(0, 65536)?, vec![5u8; 65536]);
    Ok(())
}
