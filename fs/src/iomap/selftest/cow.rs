//! §6: copy on write (T1), clone range rules (T2), dedupe (T3), and the COW rules around them:
//! remap at completion, cancel on error, direct-write read-around, unshare, reflink-aware
//! zeroing and truncate.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{mapped_block, pattern, Rig, RigOpts};
use crate::block::{BioOp, BlockDevice, FaultDisk, FaultRule, OpMask};
use crate::iomap::testfs::MemFile;
use crate::iomap::{DedupeOutcome, IoendDone, IoendFlags, WriteFlags};
use crate::Errno;

/// A synced file holding `data`.
fn synced(rig: &Rig, data: &[u8]) -> Result<Arc<MemFile>, TestFailure> {
    let f = rig.file()?;
    let mut open = f.open();
    f.write(&mut open, 0, data)?;
    f.fsync(&mut open, false)?;
    Ok(f)
}

fn check(rig: &Rig) -> TestResult {
    rig.fs.check().map_err(TestFailure)
}

fn io(rig: &Rig, op: BioOp) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> =
        rig.trace.ops().iter().filter(|t| t.op == op).map(|t| (t.offset, t.len)).collect();
    v.sort_unstable();
    v
}

pub fn cow_t1_write_into_clone_reads_around_from_source(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let a = synced(&rig, &[b'A'; 65536])?;
    let b = rig.file()?;
    let mut ob = b.open();
    ensure_eq!(b.clone_range_from(&a, 0, 0, 0)?, 65536, "len 0 clones to the source's EOF");
    ensure_eq!(b.size(), 65536);
    let a1 = mapped_block(&a, 1)?;
    ensure_eq!(mapped_block(&b, 1)?, a1, "the blocks are shared");
    ensure_eq!(rig.fs.refcount(a1), 2);
    rig.trace.clear();
    ensure_eq!(b.write(&mut ob, 4096, b"ZZZZ")?, 4);
    ensure_eq!(io(&rig, BioOp::Read), vec![(a1 * 4096, 4096)], "the rest of the block read from the source");
    ensure_eq!(mapped_block(&b, 1)?, a1, "no remap before the write completes");
    ensure_eq!(b.cow_extents().len(), 1, "a staging reservation");
    b.fsync(&mut ob, false)?;
    let b1 = mapped_block(&b, 1)?;
    ensure!(b1 != a1, "remapped at completion");
    ensure!(b.cow_extents().is_empty());
    ensure_eq!((rig.fs.refcount(b1), rig.fs.refcount(a1)), (1, 1), "block 1 is no longer shared");
    ensure_eq!(rig.fs.refcount(mapped_block(&b, 0)?), 2, "block 0 still is");
    let shared_done = IoendDone { offset: 4096, size: 4096, flags: IoendFlags::SHARED, error: None };
    ensure!(rig.fs.ioend_log().contains(&shared_done), "{:?}", rig.fs.ioend_log());
    let mut expect = vec![b'A'; 65536];
    expect[4096..4100].copy_from_slice(b"ZZZZ");
    ensure_eq!(b.read_all(&mut ob)?, expect);
    b.drop_cache()?;
    ensure_eq!(b.read_all(&mut ob)?, expect, "after dropping the cache");
    ensure_eq!(b.read_disk(0, 65536)?, expect);
    ensure_eq!(a.read_disk(0, 65536)?, vec![b'A'; 65536], "the source is unchanged");
    let mut oa = a.open();
    ensure_eq!(a.read_all(&mut oa)?, vec![b'A'; 65536]);
    check(&rig)
}

pub fn cow_io_error_cancels_and_keeps_old_data(env: &TestEnv) -> TestResult {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let rig = Rig::on(env.platform.clone(), fault.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let a = synced(&rig, &[b'A'; 16384])?;
    let b = rig.file()?;
    b.clone_range_from(&a, 0, 0, 0)?;
    let mut ob = b.open();
    b.write(&mut ob, 8192, &[b'Z'; 4096])?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::WRITE))?;
    ensure_eq!(b.fsync(&mut ob, false), Err(Errno::EIO));
    ensure_eq!(mapped_block(&b, 2)?, mapped_block(&a, 2)?, "the data fork is untouched");
    ensure!(b.cow_extents().is_empty(), "the staging was cancelled: {:?}", b.cow_extents());
    ensure_eq!(rig.fs.refcount(mapped_block(&a, 2)?), 2);
    ensure!(rig.fs.ioend_log().iter().any(|d| d.flags == IoendFlags::SHARED && d.error == Some(Errno::EIO)));
    ensure_eq!(b.direct_write(&mut ob, 12288, &[b'Y'; 4096], WriteFlags::empty()), Err(Errno::EIO));
    ensure!(b.cow_extents().is_empty(), "a failed direct write is cancelled too");
    ensure_eq!(mapped_block(&b, 3)?, mapped_block(&a, 3)?);
    fault.remove_rule(rule);
    ensure_eq!(b.read_disk(0, 16384)?, vec![b'A'; 16384], "the old data is intact");
    ensure_eq!(a.read_disk(0, 16384)?, vec![b'A'; 16384]);
    check(&rig)
}

pub fn cow_direct_write_sub_block_reads_around(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let data = pattern(21, 65536);
    let a = synced(&rig, &data)?;
    let b = rig.file()?;
    b.clone_range_from(&a, 0, 0, 0)?;
    let a1 = mapped_block(&a, 1)?;
    let mut ob = b.open();
    rig.trace.clear();
    rig.fs.reset_counts();
    ensure_eq!(b.direct_write(&mut ob, 5120, &[b'D'; 512], WriteFlags::empty())?, 512);
    ensure_eq!(io(&rig, BioOp::Read), vec![(a1 * 4096, 4096)], "one read-around of the source block");
    let b1 = mapped_block(&b, 1)?;
    ensure!(b1 != a1);
    let d = b1 * 4096;
    ensure_eq!(io(&rig, BioOp::Write), vec![(d, 1024), (d + 1024, 512), (d + 1536, 2560)]);
    let flags = IoendFlags::SHARED | IoendFlags::DIRECT;
    ensure_eq!(rig.fs.ioend_log(), vec![IoendDone { offset: 5120, size: 512, flags, error: None }]);
    let mut expect = data.clone();
    expect[5120..5632].fill(b'D');
    let mut back = vec![0u8; 65536];
    ensure_eq!(b.direct_read(&mut ob, 0, &mut back)?, 65536);
    ensure!(back == expect, "the source's bytes around the write");
    ensure_eq!(a.read_disk(0, 65536)?, data);
    ensure_eq!((rig.fs.refcount(a1), rig.fs.refcount(b1)), (1, 1));
    check(&rig)
}

pub fn cow_unshare_makes_range_exclusive(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let data = pattern(22, 65536);
    let a = synced(&rig, &data)?;
    let b = rig.file()?;
    b.clone_range_from(&a, 0, 0, 0)?;
    rig.trace.clear();
    b.unshare(8192, 16384)?;
    let a2 = mapped_block(&a, 2)?;
    let reads = io(&rig, BioOp::Read);
    ensure_eq!(reads.iter().map(|r| r.1).sum::<u64>(), 16384, "{:?}", reads);
    ensure!(reads.iter().all(|r| r.0 >= a2 * 4096 && r.0 + r.1 <= (a2 + 4) * 4096), "read from the source");
    ensure_eq!(io(&rig, BioOp::Write).iter().map(|w| w.1).sum::<u64>(), 16384);
    for blk in 0..16 {
        let (ab, bb) = (mapped_block(&a, blk)?, mapped_block(&b, blk)?);
        if (2..6).contains(&blk) {
            ensure!(ab != bb && rig.fs.refcount(ab) == 1 && rig.fs.refcount(bb) == 1, "block {blk} unshared");
        } else {
            ensure!(ab == bb && rig.fs.refcount(ab) == 2, "block {blk} still shared");
        }
    }
    ensure_eq!(b.read_disk(0, 65536)?, data);
    let mut ob = b.open();
    ensure_eq!(b.read_all(&mut ob)?, data);
    // A hole is never allocated, an exclusive file does no I/O.
    let c = rig.file()?;
    c.truncate(8192)?;
    c.unshare(0, 8192)?;
    ensure!(c.extents().is_empty());
    rig.trace.clear();
    a.unshare(8192, 16384)?;
    ensure_eq!(rig.trace.counts().reads + rig.trace.counts().writes, 0);
    check(&rig)
}

pub fn cow_zero_range_and_truncate_on_shared_blocks(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let a = synced(&rig, &[b'A'; 16384])?;
    let b = rig.file()?;
    b.clone_range_from(&a, 0, 0, 0)?;
    let mut ob = b.open();
    b.zero_range(100, 200)?;
    let mut expect = vec![b'A'; 16384];
    expect[100..300].fill(0);
    ensure_eq!(b.read_all(&mut ob)?, expect, "zeroing a shared block is a write, not a skip");
    b.truncate(5000)?;
    expect.truncate(5000);
    ensure_eq!(b.read_all(&mut ob)?, expect);
    b.fsync(&mut ob, false)?;
    b.drop_cache()?;
    ensure_eq!(b.read_all(&mut ob)?, expect);
    ensure_eq!(
        b.read_disk(4096, 4096)?[..904],
        expect[4096..],
        "the EOF block was copied, not zeroed in place"
    );
    ensure!(b.read_disk(5000, 3192)?.iter().all(|&x| x == 0), "zeros past EOF in the new block");
    for blk in 0..4 {
        ensure_eq!(rig.fs.refcount(mapped_block(&a, blk)?), 1, "block {blk} belongs to A alone now");
    }
    ensure_eq!(a.read_disk(0, 16384)?, vec![b'A'; 16384], "the source is unchanged");
    check(&rig)
}

pub fn clone_t2_eof_block_rules(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let a_data = pattern(23, 5000);
    let a = synced(&rig, &a_data)?;
    let b = synced(&rig, &[b'b'; 65536])?;
    ensure_eq!(
        b.clone_range_from(&a, 0, 8192, 0),
        Err(Errno::EINVAL),
        "a partial EOF block inside the destination"
    );
    ensure_eq!(b.clone_range_from(&a, 0, 65536, 0)?, 5000);
    ensure_eq!(b.size(), 70536);
    let mut ob = b.open();
    let mut expect = vec![b'b'; 65536];
    expect.extend_from_slice(&a_data);
    ensure_eq!(b.read_all(&mut ob)?, expect);
    b.fsync(&mut ob, false)?;
    b.drop_cache()?;
    ensure_eq!(b.read_all(&mut ob)?, expect);
    ensure_eq!(rig.fs.refcount(mapped_block(&a, 1)?), 2, "the partial EOF block is shared");
    // The other request rules.
    let c = synced(&rig, &pattern(24, 8192))?;
    let d = rig.file()?;
    ensure_eq!(d.clone_range_from(&c, 100, 0, 4096), Err(Errno::EINVAL), "unaligned source position");
    ensure_eq!(d.clone_range_from(&c, 0, 100, 4096), Err(Errno::EINVAL), "unaligned destination position");
    ensure_eq!(d.clone_range_from(&c, 12288, 0, 0), Err(Errno::EINVAL), "past the source's EOF");
    ensure_eq!(d.clone_range_from(&c, 8192, 0, 0)?, 0, "at the source's EOF");
    ensure_eq!(d.clone_range_from(&c, 8192, 0, 4096), Err(Errno::EINVAL));
    ensure_eq!(d.clone_range_from(&c, 0, 0, 1000), Err(Errno::EINVAL), "not a block multiple, not at EOF");
    ensure_eq!(c.clone_range_from(&c, 0, 4096, 8192), Err(Errno::EINVAL), "overlapping in one file");
    ensure_eq!(c.clone_range_from(&c, 0, 8192, 8192)?, 8192, "not overlapping in one file");
    ensure!(d.extents().is_empty());
    check(&rig)
}

pub fn clone_past_eof_zeroes_the_gap(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let c = synced(&rig, &pattern(25, 4096))?;
    // Stale bytes past EOF on the device, as a crash after an extending write could leave.
    let d = rig.mapped_file(rig.spare_block(0), 2, &[b'd'; 8192])?;
    d.set_size(5000);
    ensure_eq!(d.clone_range_from(&c, 0, 16384, 4096)?, 4096);
    ensure_eq!(d.size(), 20480);
    let mut expect = vec![b'd'; 5000];
    expect.resize(16384, 0);
    expect.extend_from_slice(&pattern(25, 4096));
    let mut od = d.open();
    ensure_eq!(d.read_all(&mut od)?, expect, "no stale byte in the gap");
    d.drop_cache()?;
    ensure_eq!(d.read_all(&mut od)?, expect);
    check(&rig)
}

pub fn clone_drops_destination_cache(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let a = synced(&rig, &[b'A'; 8192])?;
    let b = synced(&rig, &[b'B'; 8192])?;
    let mut ob = b.open();
    ensure_eq!(b.read_all(&mut ob)?, vec![b'B'; 8192]);
    let old = mapped_block(&b, 0)?;
    b.clone_range_from(&a, 0, 0, 8192)?;
    ensure_eq!(b.read_all(&mut ob)?, vec![b'A'; 8192], "the cached old contents are gone");
    ensure_eq!(rig.fs.refcount(old), 0, "the replaced blocks were freed");
    check(&rig)
}

pub fn dedupe_t3_identical_shares_different_differs(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let data = pattern(26, 16384);
    let a = synced(&rig, &data)?;
    let b = synced(&rig, &data)?;
    let old_b0 = mapped_block(&b, 0)?;
    ensure_eq!(b.dedupe_from(&a, 0, 0, 16384)?, DedupeOutcome::Deduped(16384));
    for blk in 0..4 {
        let ab = mapped_block(&a, blk)?;
        ensure_eq!(mapped_block(&b, blk)?, ab);
        ensure_eq!(rig.fs.refcount(ab), 2);
    }
    ensure_eq!(rig.fs.refcount(old_b0), 0);
    ensure_eq!((b.size(), b.read_disk(0, 16384)?), (16384, data.clone()), "no content or size change");
    let c = synced(&rig, &pattern(27, 16384))?;
    ensure_eq!(c.dedupe_from(&a, 0, 0, 16384)?, DedupeOutcome::Differs);
    ensure_eq!(rig.fs.refcount(mapped_block(&c, 0)?), 1, "nothing shared");
    ensure_eq!(c.read_disk(0, 16384)?, pattern(27, 16384));
    ensure_eq!(c.dedupe_from(&a, 0, 0, 0)?, DedupeOutcome::Deduped(0), "len 0: no effect");
    ensure_eq!(c.dedupe_from(&a, 0, 0, 20000), Err(Errno::EINVAL), "past EOF");
    // A partial EOF block dedupes when it is both files' EOF block.
    let e = synced(&rig, &data[..5000])?;
    let f = synced(&rig, &data[..5000])?;
    ensure_eq!(f.dedupe_from(&e, 0, 0, 5000)?, DedupeOutcome::Deduped(5000));
    ensure_eq!(mapped_block(&f, 1)?, mapped_block(&e, 1)?);
    check(&rig)
}

pub fn clone_survives_remount_with_shared_counts(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let a = synced(&rig, &pattern(28, 16384))?;
    let b = rig.file()?;
    ensure_eq!(b.clone_range_from(&a, 0, 4096, 8192)?, 8192, "A's blocks 0 and 1 become B's 1 and 2");
    let mut ob = b.open();
    b.fsync(&mut ob, false)?;
    let fs2 = rig.remount()?;
    let b2 = fs2.file(b.id()).ok_or_else(|| TestFailure("clone gone after remount".into()))?;
    ensure_eq!(b2.extents(), b.extents());
    ensure_eq!(b2.size(), 12288);
    let counts: Vec<u32> =
        (0..4).map(|i| mapped_block(&a, i).map(|d| fs2.refcount(d))).collect::<Result<_, _>>()?;
    ensure_eq!(counts, vec![2, 2, 1, 1], "counts rebuilt at mount");
    let mut expect = vec![0u8; 4096];
    expect.extend_from_slice(&pattern(28, 16384)[..8192]);
    ensure_eq!(b2.read_disk(0, 12288)?, expect);
    fs2.check().map_err(TestFailure)
}
