//! §8: zero range, truncate, punch hole.

use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{pattern, Rig, RigOpts};
use crate::iomap::testfs::ExtKind;
use crate::iomap::{truncate_page, writeback_range, WritebackMode};

pub fn truncate_t1_down_then_up_zeroes_tail(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'A'; 8192])?;
    f.truncate(5000)?;
    f.truncate(8192)?;
    let mut expect = vec![0u8; 8192];
    expect[..5000].fill(b'A');
    ensure_eq!(f.read_all(&mut open)?, expect, "from the cache");
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect, "after dropping the cache");
    ensure_eq!(f.read_disk(0, 8192)?, expect);
    Ok(())
}

pub fn zero_range_t2_unwritten_with_dirty_cache(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    f.fallocate(0, 4096)?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'A'; 4096])?;
    rig.fs.reset_counts();
    f.zero_range(100, 100)?;
    ensure_eq!(rig.fs.counts().map_zero, 2, "unwritten with dirty cache: flushed once, mapped again");
    let mut expect = vec![b'A'; 4096];
    expect[100..200].fill(0);
    ensure_eq!(f.read_all(&mut open)?, expect, "before sync");
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect, "after sync");
    Ok(())
}

pub fn punch_hole_t3_zeroes_range_and_frees_block(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    f.write(&mut open, 0, &[b'A'; 16384])?;
    f.sync_data()?;
    let ext = f.extents();
    ensure_eq!(ext.len(), 1);
    let ExtKind::Mapped(d) = ext[0].kind else { return Err(alloc::format!("not mapped: {:?}", ext).into()) };
    f.punch_hole(1000, 8000)?;
    let mut expect = vec![b'A'; 16384];
    expect[1000..9000].fill(0);
    ensure_eq!(f.size(), 16384);
    ensure_eq!(f.read_all(&mut open)?, expect);
    ensure!(f.extents().iter().all(|e| e.start != 1 && !(e.start < 1 && e.end() > 1)), "block 1 unmapped");
    ensure!(rig.fs.is_block_free(d + 1), "its disk block freed");
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect);
    ensure_eq!(f.read_disk(0, 16384)?, expect);
    Ok(())
}

pub fn truncate_page_and_zero_range_skip_holes(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    f.set_size(1 << 20);
    rig.fs.reset_counts();
    f.zero_range(0, 1 << 20)?;
    ensure_eq!(f.file().mapping().nr_folios(), 0, "zeroing a hole touches no cache");
    ensure_eq!(rig.fs.counts().map_zero, 1);
    truncate_page(f.file(), &f.ops(), 8192)?;
    ensure_eq!(rig.fs.counts().map_zero, 1, "aligned: nothing to do");
    let g = rig.mapped_file(rig.spare_block(0), 1, &[b'Q'; 4096])?;
    truncate_page(g.file(), &g.ops(), 4000)?;
    let mut open = g.open();
    let mut expect = vec![b'Q'; 4096];
    expect[4000..].fill(0);
    ensure_eq!(g.read_all(&mut open)?, expect, "zeroed to the end of the block, size unchanged");
    ensure!(g.file().mapping().nr_dirty() == 1, "through the cache");
    Ok(())
}

pub fn truncate_down_drops_folios_and_frees_blocks(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.max_order = 0;
    let rig = Rig::new(env, opts)?;
    let f = rig.file()?;
    let mut open = f.open();
    let data = pattern(8, 65536);
    f.write(&mut open, 0, &data)?;
    f.sync_data()?;
    let free = rig.fs.free_blocks();
    f.write(&mut open, 0, &pattern(9, 65536))?;
    // Writeback in flight while truncating: truncate waits for it.
    writeback_range(f.file(), &f.ops(), 0, u64::MAX, WritebackMode::Integrity)?;
    f.truncate(10000)?;
    ensure_eq!(f.file().mapping().nr_folios(), 3, "folios past EOF dropped");
    ensure_eq!(f.file().mapping().nr_writeback(), 0);
    ensure_eq!(rig.fs.free_blocks(), free + 13, "blocks past EOF freed");
    ensure_eq!(f.file().disk_size(), 10000);
    let mut expect = pattern(9, 10000);
    ensure_eq!(f.read_all(&mut open)?, expect);
    f.truncate(12288)?;
    expect.resize(12288, 0);
    f.drop_cache()?;
    ensure_eq!(f.read_all(&mut open)?, expect);
    Ok(())
}
