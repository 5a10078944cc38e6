//! §7: inline data.

use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{folio, pattern, Rig, RigOpts};

pub fn inline_t1_read_without_block_io(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.fs.create_inline()?;
    let mut open = f.open();
    ensure_eq!(f.write(&mut open, 0, &pattern(10, 60))?, 60);
    f.drop_cache()?;
    let mut buf = vec![0xEEu8; 4096];
    ensure_eq!(f.read(&mut open, 0, &mut buf)?, 60);
    ensure_eq!(&buf[..60], &pattern(10, 60)[..]);
    let locked = folio(&f, 0)?.lock();
    ensure!(
        locked.is_uptodate() && locked.data()[60..].iter().all(|&b| b == 0),
        "the rest of the folio is zeros"
    );
    drop(locked);
    let c = rig.trace.counts();
    ensure_eq!((c.reads, c.writes), (0, 0), "no block I/O");
    Ok(())
}

pub fn inline_t2_write_no_dirty_folio_persists_after_remount(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.fs.create_inline()?;
    let id = f.id();
    let mut open = f.open();
    f.write(&mut open, 0, &[b'i'; 60])?;
    rig.fs.commit()?;
    ensure_eq!(f.write(&mut open, 20, &[b'W'; 10])?, 10);
    ensure_eq!(f.file().mapping().nr_dirty(), 0, "inline data never dirties the cache");
    ensure!(rig.fs.meta_dirty(), "the inode is dirty");
    f.fsync(&mut open, false)?;
    let fs2 = rig.remount()?;
    let g = fs2.file(id).ok_or_else(|| alloc::string::String::from("file lost"))?;
    ensure!(g.is_inline());
    let mut expect = vec![b'i'; 60];
    expect[20..30].fill(b'W');
    let mut open2 = g.open();
    ensure_eq!(g.read_all(&mut open2)?, expect);
    Ok(())
}

pub fn inline_t3_growth_moves_to_blocks(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.fs.create_inline()?;
    let id = f.id();
    let mut open = f.open();
    f.write(&mut open, 0, &[b'i'; 60])?;
    ensure_eq!(f.write(&mut open, 100, &[b'G'; 300])?, 300);
    ensure!(!f.is_inline(), "moved to blocks");
    ensure_eq!(f.extents().len(), 1);
    let mut expect = vec![0u8; 400];
    expect[..60].fill(b'i');
    expect[100..].fill(b'G');
    ensure_eq!(f.size(), 400);
    ensure_eq!(f.read_all(&mut open)?, expect);
    f.fsync(&mut open, false)?;
    let fs2 = rig.remount()?;
    let g = fs2.file(id).ok_or_else(|| alloc::string::String::from("file lost"))?;
    let mut open2 = g.open();
    ensure_eq!(g.read_all(&mut open2)?, expect, "data and size kept");
    Ok(())
}
