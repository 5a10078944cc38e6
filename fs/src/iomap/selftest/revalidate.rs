//! Stale-mapping revalidation: the mapping changes between the mapping call and the folio
//! lock; every byte must land where the file maps it now.

use alloc::boxed::Box;
use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{pattern, Rig, RigOpts};
use crate::iomap::testfs::{ExtKind, HookPoint};
use crate::iomap::IomapOp;

fn disk_of(f: &crate::iomap::testfs::MemFile, block: u64) -> Option<u64> {
    f.extents().iter().find(|e| e.start <= block && block < e.end()).and_then(|e| match e.kind {
        ExtKind::Mapped(d) => Some(d + block - e.start),
        _ => None,
    })
}

pub fn revalidate_write_rmw_reads_new_location(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(1024);
    opts.max_order = 0;
    let rig = Rig::new(env, opts)?;
    let old = rig.spare_block(0);
    let data = pattern(11, 8192);
    let f = rig.mapped_file(old, 8, &data)?;
    let mut open = f.open();
    // While the writer holds folio 1, the extent moves; its old blocks are scribbled over.
    rig.fs.set_hook(
        &f,
        HookPoint::ValidCheck,
        2,
        Box::new(|f| {
            let _ = f.relocate(0, 8, b'G');
        }),
    );
    ensure_eq!(f.write(&mut open, 1000, &[b'B'; 6000])?, 6000);
    ensure_eq!(rig.fs.pending_hooks(), 0);
    ensure_eq!(rig.ctx.stats().stale_mappings, 1);
    let mut expect = data.clone();
    expect[1000..7000].fill(b'B');
    ensure_eq!(f.read_all(&mut open)?, expect, "the read-modify-write of block 6 came from the new location");
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect);
    ensure!(disk_of(&f, 0) != Some(old), "relocated");
    ensure_eq!(rig.peek(old * 1024, 8192)?, vec![b'G'; 8192], "nothing written to the old location");

    // The move happens right after the mapping call, before the first folio is locked: the
    // first validity check fails with nothing done, and the same position is mapped again.
    let old2 = rig.spare_block(64);
    let g = rig.mapped_file(old2, 8, &data)?;
    rig.fs.set_hook(
        &g,
        HookPoint::AfterMap(IomapOp::WRITE),
        1,
        Box::new(|f| {
            let _ = f.relocate(0, 8, b'H');
        }),
    );
    rig.fs.reset_counts();
    let mut gopen = g.open();
    ensure_eq!(g.write(&mut gopen, 1000, &[b'B'; 6000])?, 6000);
    ensure_eq!((rig.fs.counts().map_write, rig.fs.counts().valid_checks), (2, 3), "remapped at the start");
    g.drop_cache()?;
    ensure_eq!(g.read_all(&mut gopen)?, expect, "both read-modify-writes came from the new location");
    ensure_eq!(rig.peek(old2 * 1024, 8192)?, vec![b'H'; 8192]);
    Ok(())
}

pub fn revalidate_writeback_writes_new_location(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.max_order = 0;
    let rig = Rig::new(env, opts)?;
    let old = rig.spare_block(0);
    let f = rig.mapped_file(old, 4, &[b'A'; 16384])?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'B'; 16384])?;
    rig.fs.reset_counts();
    // At the first validity check of writeback (folio 1), blocks 2-3 move.
    rig.fs.set_hook(
        &f,
        HookPoint::ValidCheck,
        1,
        Box::new(|f| {
            let _ = f.relocate(2, 2, b'G');
        }),
    );
    f.sync_data()?;
    ensure_eq!(rig.fs.pending_hooks(), 0);
    ensure_eq!(rig.fs.counts().map_writeback, 3, "mapped, found stale, mapped again, then the moved extent");
    ensure_eq!(rig.ctx.stats().stale_mappings, 1);
    let new = disk_of(&f, 2).ok_or_else(|| alloc::string::String::from("block 2 unmapped"))?;
    ensure!(new != old + 2);
    ensure_eq!(rig.peek(new * 4096, 8192)?, vec![b'B'; 8192], "folios 2-3 written to the new blocks");
    ensure_eq!(rig.peek((old + 2) * 4096, 8192)?, vec![b'G'; 8192], "not to the old ones");
    ensure_eq!(rig.peek(old * 4096, 8192)?, vec![b'B'; 8192]);
    ensure_eq!(f.read_disk(0, 16384)?, vec![b'B'; 16384]);
    Ok(())
}
