//! Crash recorder tests: the log's contents and order, flush coverage, and crash images
//! checked byte for byte against images built by hand or snapshotted from the medium.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::block::fault::{FaultDisk, FaultRule, OpMask};
use crate::block::ramdisk::TraceEntry;
use crate::block::sync::{dataless, flush, read_at, write_at};
use crate::block::testutil::{bio, disk, drain, pattern, seg, seg_mut, Done, Rng};
use crate::block::{Queue, RamDisk};
use crate::platform::{Platform, StdPlatform};

const K: usize = 1024;
const BLK: usize = 4096;

fn setup(features: Option<DeviceFeatures>) -> (Arc<RamDisk>, CrashRecorder, Arc<dyn Platform>, Vec<u8>) {
    let d = disk(64 * K as u64, 512, |i| {
        if let Some(f) = features {
            i.features = f;
        }
    });
    d.poke(0, &pattern(64 * K, 77));
    let base = d.snapshot();
    let rec = CrashRecorder::new(d.clone());
    (d, rec, StdPlatform::arc(), base)
}

/// `base` with `fill` written over block `blk`.
fn with(mut image: Vec<u8>, blk: usize, fill: u8) -> Vec<u8> {
    image[blk * BLK..(blk + 1) * BLK].fill(fill);
    image
}

#[test]
fn every_flush_point_rebuilds_the_durable_prefix_plus_fua_writes() {
    let (d, rec, p, base) = setup(None);
    let w = |blk: usize, fill: u8, flags| write_at(&rec, &p, (blk * BLK) as u64, &[fill; BLK], flags);
    w(0, b'a', BioFlags::empty()).unwrap();
    w(1, b'b', BioFlags::empty()).unwrap();
    flush(&rec, &*p).unwrap();
    w(2, b'c', BioFlags::FUA).unwrap();
    w(0, b'd', BioFlags::empty()).unwrap();
    flush(&rec, &*p).unwrap();
    w(3, b'e', BioFlags::empty()).unwrap();

    let log = rec.log();
    assert_eq!(log.writes().len(), 5);
    assert_eq!(log.flushes(), &[FlushMark { covers: 2, at: 2 }, FlushMark { covers: 4, at: 4 }]);
    assert_eq!(log.flush_points(), 3);
    assert_eq!((log.window(0), log.window(1), log.window(2)), (Ok(0..2), Ok(2..4), Ok(4..5)));
    assert!(log.writes()[2].fua);

    let states: Vec<CrashState> = log.every_flush_point().collect();
    assert_eq!(
        states.iter().map(|s| (s.point, s.subset.len())).collect::<Vec<_>>(),
        vec![(0, 2), (1, 2), (2, 1)]
    );
    let ab = with(with(base.clone(), 0, b'a'), 1, b'b');
    let expect = [base.clone(), with(ab.clone(), 2, b'c'), with(with(ab.clone(), 2, b'c'), 0, b'd')];
    for (s, want) in states.iter().zip(&expect) {
        assert!(log.image(&base, s).unwrap() == *want, "flush point {}", s.point);
    }
    // Everything applied at the last point is what the disk holds now.
    assert!(log.crash_image(&base, 2, |_| true).unwrap() == d.snapshot());
    // At point 1 the optional write is 'd' over block 0.
    assert!(log.crash_image(&base, 1, |j| j == 1).unwrap() == with(expect[1].clone(), 0, b'd'));
}

#[test]
fn random_subsets_apply_exactly_the_chosen_writes() {
    let (_d, rec, p, base) = setup(None);
    flush(&rec, &*p).unwrap();
    for blk in 0..12 {
        let flags = if blk == 5 { BioFlags::FUA } else { BioFlags::empty() };
        write_at(&rec, &p, (blk * BLK) as u64, &[0xC0 + blk as u8; BLK], flags).unwrap();
    }
    let log = rec.log();
    assert_eq!(log.window(1), Ok(0..12));
    let states: Vec<CrashState> = log.crash_states(6, 0xC0FFEE).collect();
    assert_eq!(states.len(), 2 * 7, "per point: the bare state and six random ones");
    assert_eq!(states, log.crash_states(6, 0xC0FFEE).collect::<Vec<_>>(), "same seed, same states");
    assert_ne!(states, log.crash_states(6, 0xBEEF).collect::<Vec<_>>());
    let mut mixed = 0;
    for s in &states {
        let image = log.image(&base, s).unwrap();
        if s.point == 0 {
            assert!(s.subset.is_empty() && image == base, "nothing had completed before the flush");
            continue;
        }
        for blk in 0..12 {
            let r = blk * BLK..(blk + 1) * BLK;
            let chosen = blk == 5 || s.subset[blk];
            let want: Vec<u8> = if chosen { vec![0xC0 + blk as u8; BLK] } else { base[r.clone()].to_vec() };
            assert!(image[r] == want[..], "state {s:?} block {blk}");
        }
        assert!(image[12 * BLK..] == base[12 * BLK..]);
        let picked = s.subset.iter().filter(|&&b| b).count();
        mixed += (picked > 0 && picked < 12) as usize;
    }
    assert!(mixed >= 5, "random subsets are mixed, not all-or-nothing");
}

#[test]
fn a_flush_covers_only_writes_completed_before_it_was_submitted() {
    let (d, rec, _p, base) = setup(None);
    let done = Done::new();
    let a = vec![0xAA; BLK];
    let b = vec![0xBB; BLK];
    // A is in flight when the flush is submitted; B is submitted after the flush.
    rec.submit(bio(BioOp::Write, 0, &[seg(&a, 0, BLK)], BioFlags::empty(), done.end(0)));
    rec.submit(Bio::flush(done.end(1)));
    rec.submit(bio(BioOp::Write, 8, &[seg(&b, 0, BLK)], BioFlags::empty(), done.end(2)));
    drain(&rec);
    done.assert_each(3, |_| Ok(()));
    let log = rec.log();
    // FIFO completion: A, flush, B. The flush covers nothing: A completed after its submission.
    assert_eq!(log.flushes(), &[FlushMark { covers: 0, at: 1 }]);
    assert_eq!(log.durable(1), Ok(0));
    assert_eq!(log.window(0), Ok(0..1));
    assert_eq!(log.window(1), Ok(0..2));
    assert!(log.crash_image(&base, 1, |_| false).unwrap() == base);
    assert!(log.crash_image(&base, 1, |_| true).unwrap() == d.snapshot());
}

#[test]
fn out_of_order_flush_completions_keep_the_largest_coverage() {
    // Two flushes in flight: the later-submitted one (covering two writes) completes first.
    let mut log = CrashLog::default();
    let w = |blk: u64, fill: u8| LoggedWrite {
        offset: blk * BLK as u64,
        payload: Payload::Data(Arc::from(vec![fill; BLK])),
        fua: false,
    };
    log.push_write(w(0, 1));
    log.push_write(w(2, 2));
    log.push_flush(2);
    log.push_flush(1);
    log.push_write(w(4, 3));
    assert_eq!(log.flushes(), &[FlushMark { covers: 2, at: 2 }, FlushMark { covers: 1, at: 2 }]);
    assert_eq!((log.durable(1), log.durable(2)), (Ok(2), Ok(2)));
    assert_eq!(log.window(2), Ok(2..3));
    let base = vec![0u8; 8 * BLK];
    let want = with(with(base.clone(), 0, 1), 2, 2);
    assert!(log.crash_image(&base, 2, |_| false).unwrap() == want);
    assert!(log.crash_image(&base, 2, |_| true).unwrap() == with(want, 4, 3));
}

#[test]
fn failed_requests_are_not_logged() {
    let d = disk(64 * K as u64, 512, |_| {});
    let f = Arc::new(FaultDisk::new(d.clone()));
    f.add_rule(FaultRule::fail(OpMask::WRITE).nth(2).once()).unwrap();
    f.add_rule(FaultRule::fail(OpMask::FLUSH).once()).unwrap();
    let rec = CrashRecorder::new(f);
    let p = StdPlatform::arc();
    let w = |blk: usize| write_at(&rec, &p, (blk * BLK) as u64, &[blk as u8 + 1; BLK], BioFlags::empty());
    assert_eq!((w(0), w(1), w(2)), (Ok(()), Err(Errno::EIO), Ok(())));
    assert_eq!(flush(&rec, &*p), Err(Errno::EIO));
    assert_eq!(flush(&rec, &*p), Ok(()));
    let log = rec.log();
    let offsets: Vec<u64> = log.writes().iter().map(|w| w.offset).collect();
    assert_eq!(offsets, vec![0, 2 * BLK as u64]);
    assert_eq!(log.flushes(), &[FlushMark { covers: 2, at: 2 }]);
}

#[test]
fn discard_and_write_zeroes_are_logged_as_zeroes() {
    let (d, rec, p, base) = setup(None);
    dataless(&rec, &*p, BioOp::Discard, BLK as u64, BLK as u64).unwrap();
    dataless(&rec, &*p, BioOp::WriteZeroes, 3 * BLK as u64, 2 * BLK as u64).unwrap();
    let log = rec.log();
    assert_eq!(
        log.writes()[1],
        LoggedWrite { offset: 3 * BLK as u64, payload: Payload::Zeroes(8192), fua: false }
    );
    let image = log.crash_image(&base, 0, |_| true).unwrap();
    assert!(image == d.snapshot());
    assert!(image[BLK..2 * BLK].iter().all(|&b| b == 0) && image[3 * BLK..5 * BLK].iter().all(|&b| b == 0));
}

#[test]
fn without_a_volatile_cache_every_write_is_durable() {
    let (d, rec, p, base) = setup(Some(DeviceFeatures::empty()));
    for blk in 0..3 {
        write_at(&rec, &p, (blk * BLK) as u64, &[9; BLK], BioFlags::empty()).unwrap();
    }
    let log = rec.log();
    assert!(log.writes().iter().all(|w| w.fua));
    assert!(log.crash_image(&base, 0, |_| false).unwrap() == d.snapshot());
}

#[test]
fn a_preflush_write_is_sequenced_and_logged_flush_first() {
    let (d, rec, p, _base) = setup(None);
    d.set_trace(true);
    write_at(&rec, &p, 0, &[1; BLK], BioFlags::empty()).unwrap();
    write_at(&rec, &p, BLK as u64, &[2; BLK], BioFlags::PREFLUSH | BioFlags::FUA).unwrap();
    let log = rec.log();
    assert_eq!(log.flushes(), &[FlushMark { covers: 1, at: 1 }]);
    assert_eq!(log.writes().len(), 2);
    assert!(log.writes()[1].fua);
    let trace = d.take_trace();
    let ops: Vec<(BioOp, bool)> = trace.iter().map(|t: &TraceEntry| (t.op, t.fua)).collect();
    assert_eq!(ops, vec![(BioOp::Write, false), (BioOp::Flush, false), (BioOp::Write, true)]);
    assert_eq!(rec.in_flight(), 0);

    // A read with PREFLUSH: the flush is logged, the read is not.
    let done = Done::new();
    let mut buf = vec![0u8; BLK];
    rec.submit(bio(BioOp::Read, 8, &[seg_mut(buf.as_mut_ptr(), 0, BLK)], BioFlags::PREFLUSH, done.end(0)));
    drain(&rec);
    done.assert_each(1, |_| Ok(()));
    assert_eq!(buf, vec![2u8; BLK]);
    let log = rec.log();
    assert_eq!(log.flushes(), &[FlushMark { covers: 1, at: 1 }, FlushMark { covers: 2, at: 2 }]);
    assert_eq!(log.writes().len(), 2);
    let ops: Vec<BioOp> = d.take_trace().iter().map(|t| t.op).collect();
    assert_eq!(ops, vec![BioOp::Flush, BioOp::Read]);
}

#[test]
fn a_crash_image_mounts_as_a_ramdisk() {
    let (_d, rec, p, base) = setup(None);
    let data = pattern(3 * BLK, 5);
    write_at(&rec, &p, 0, &data, BioFlags::empty()).unwrap();
    flush(&rec, &*p).unwrap();
    write_at(&rec, &p, 0, &[0; BLK], BioFlags::empty()).unwrap();
    let image = rec.log().crash_image(&base, 1, |_| false).unwrap();
    let q = Queue::new(Arc::new(RamDisk::from_image(image, 512)));
    let mut back = vec![0u8; 3 * BLK];
    read_at(&q, &p, 0, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn bad_arguments_are_refused() {
    let (_d, rec, p, base) = setup(None);
    write_at(&rec, &p, 60 * K as u64, &[1; BLK], BioFlags::empty()).unwrap();
    let log = rec.log();
    assert_eq!(log.crash_image(&base, 2, |_| true), Err(Errno::EINVAL), "no such flush point");
    assert_eq!(log.crash_image(&base[..32 * K], 0, |_| true), Err(Errno::EINVAL), "write outside the base");
    assert_eq!(log.image(&base, &CrashState { point: 0, subset: vec![] }), Err(Errno::EINVAL));
    assert_eq!(log.durable(5), Err(Errno::EINVAL));

    let done = Done::new();
    let mut buf = vec![0u8; BLK];
    rec.submit(bio(BioOp::Read, 0, &[seg_mut(buf.as_mut_ptr(), 0, BLK)], BioFlags::empty(), done.end(0)));
    assert_eq!(rec.reset(), Err(Errno::EBUSY));
    drain(&rec);
    assert_eq!(rec.reset(), Ok(()));
    assert_eq!(rec.log(), CrashLog::default());
    // An invalid bio is refused below, and not logged.
    rec.submit(bio(BioOp::Write, 1 << 40, &[seg(&buf, 0, BLK)], BioFlags::empty(), done.end(1)));
    drain(&rec);
    assert_eq!(done.result(1), Some(Err(Errno::EINVAL)));
    assert!(rec.log().writes().is_empty());
}

/// A random workload through a Queue (splitting and merging) over the recorder: each flush
/// point's bare image must equal the medium right after that flush completed, and its
/// all-writes image the medium right before the next flush.
#[test]
fn crash_images_through_a_queue_match_snapshots_of_the_medium() {
    for seed in 0..6u64 {
        let mut rng = Rng::new(0xC4A5 + seed);
        let d = disk(256 * K as u64, 512, |i| {
            i.max_request_bytes = 8 * K as u32;
            i.queue_depth = 3;
        });
        let base = d.snapshot();
        let rec = Arc::new(CrashRecorder::new(d.clone()));
        let q = Queue::new(rec.clone());
        let p = StdPlatform::arc();
        let mut after_flush = vec![base.clone()];
        let mut before_flush = Vec::new();
        for _ in 0..40 {
            if rng.below(5) == 0 {
                before_flush.push(d.snapshot());
                flush(&q, &*p).unwrap();
                after_flush.push(d.snapshot());
                continue;
            }
            let blocks = 1 + rng.below(6) as usize;
            let off = rng.below((256 * K / 512 - blocks * 8) as u64) * 512;
            let data = pattern(blocks * BLK, rng.next());
            write_at(&q, &p, off, &data, BioFlags::empty()).unwrap();
        }
        before_flush.push(d.snapshot());
        let log = rec.log();
        assert_eq!(log.flush_points(), after_flush.len(), "seed {seed}");
        for point in 0..log.flush_points() {
            let bare = log.crash_image(&base, point, |_| false).unwrap();
            let full = log.crash_image(&base, point, |_| true).unwrap();
            assert!(bare == after_flush[point], "seed {seed} point {point}: durable prefix");
            assert!(full == before_flush[point], "seed {seed} point {point}: every write");
        }
    }
}
