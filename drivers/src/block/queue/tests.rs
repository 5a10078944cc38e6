//! Request-layer tests against RamDisk behind a probe that records what the driver sees.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::block::ramdisk::TraceEntry;
use crate::block::sync::{read_at, write_at};
use crate::block::testutil::{bio, disk, drain, pattern, seg, seg_mut, Done, Probe, Seen};
use crate::block::{CompletionOrder, DeviceFeatures, RamDisk, Segment};
use crate::platform::StdPlatform;

const K: usize = 1024;

fn queue_over(d: &Arc<RamDisk>) -> (Arc<Probe>, Queue) {
    let probe = Probe::new(d.clone());
    let q = Queue::new(probe.clone());
    (probe, q)
}

fn seen(op: BioOp, sector: u64, segs: &[u32]) -> Seen {
    let bytes: u64 = segs.iter().map(|&s| s as u64).sum();
    Seen { op, flags: BioFlags::empty(), sector, segs: segs.to_vec(), sectors: bytes / 512 }
}

fn trace(op: BioOp, fua: bool, offset: u64, len: u64) -> TraceEntry {
    TraceEntry { op, fua, offset, len }
}

#[test]
fn a_1mib_bio_becomes_eight_128k_requests_and_one_completion() {
    let d = disk(4 << 20, 512, |i| i.max_request_bytes = 128 * K as u32);
    let (probe, q) = queue_over(&d);
    let data = pattern(1 << 20, 1);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 2048, &[seg(&data, 0, 1 << 20)], BioFlags::empty(), done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Ok(()));
    let expect: Vec<Seen> = (0..8).map(|k| seen(BioOp::Write, 2048 + k * 256, &[128 * K as u32])).collect();
    assert_eq!(probe.seen(), expect);
    let mut back = vec![0u8; 1 << 20];
    d.peek(1 << 20, &mut back);
    assert_eq!(back, data);
    let s = q.stats();
    assert_eq!((s.bios, s.requests, s.splits, s.merges), (1, 8, 7, 0));

    // And back through the queue: eight reads, one completion, the same bytes.
    probe.take_seen();
    let mut rd = vec![0u8; 1 << 20];
    q.submit(bio(BioOp::Read, 2048, &[seg_mut(rd.as_mut_ptr(), 0, 1 << 20)], BioFlags::empty(), done.end(1)));
    drain(&q);
    assert_eq!(done.result(1), Some(Ok(())));
    assert_eq!(probe.seen().len(), 8);
    assert!(probe.seen().iter().all(|s| s.op == BioOp::Read && s.segs == [128 * K as u32]));
    assert_eq!(rd, data);
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn splits_honour_segment_count_and_segment_size() {
    let d = disk(1 << 20, 512, |i| {
        i.max_segments = 2;
        i.max_segment_bytes = 8 * K as u32;
    });
    let (probe, q) = queue_over(&d);
    // Four 16 KiB segments with gaps between them in memory.
    let buf = pattern(128 * K, 2);
    let segs: Vec<Segment> = (0..4).map(|i| seg(&buf, i * 32 * K, 16 * K)).collect();
    let done = Done::new();
    q.submit(bio(BioOp::Write, 8, &segs, BioFlags::empty(), done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Ok(()));
    let expect: Vec<Seen> = (0..4).map(|k| seen(BioOp::Write, 8 + k * 32, &[8192, 8192])).collect();
    assert_eq!(probe.seen(), expect);
    let mut back = vec![0u8; 64 * K];
    d.peek(4096, &mut back);
    for i in 0..4 {
        assert_eq!(back[i * 16 * K..(i + 1) * 16 * K], buf[i * 32 * K..i * 32 * K + 16 * K]);
    }
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn discard_and_write_zeroes_split_to_their_own_limits() {
    let d = disk(1 << 20, 512, |i| {
        i.max_discard_sectors = 64;
        i.max_write_zeroes_sectors = 48;
    });
    d.poke(0, &[0xAB; 256 * K]);
    let (probe, q) = queue_over(&d);
    let done = Done::new();
    q.submit(Bio::dataless(BioOp::Discard, 0, 200, done.end(0)));
    q.submit(Bio::dataless(BioOp::WriteZeroes, 400, 200, done.end(1)));
    drain(&q);
    done.assert_each(2, |_| Ok(()));
    let parts: Vec<(BioOp, u64, u64)> = probe.seen().iter().map(|s| (s.op, s.sector, s.sectors)).collect();
    let mut expect = vec![
        (BioOp::Discard, 0, 64),
        (BioOp::Discard, 64, 64),
        (BioOp::Discard, 128, 64),
        (BioOp::Discard, 192, 8),
    ];
    expect.extend((0..4).map(|k| (BioOp::WriteZeroes, 400 + k * 48, 48)));
    expect.push((BioOp::WriteZeroes, 592, 8));
    assert_eq!(parts, expect);
    let mut back = vec![0u8; 256 * K];
    d.peek(0, &mut back);
    assert!(back[..100 * K].iter().all(|&b| b == 0));
    assert!(back[100 * K..200 * K].iter().all(|&b| b == 0xAB));
    assert!(back[200 * K..].iter().all(|&b| b == 0));
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn adjacent_bios_under_a_plug_become_one_request() {
    let d = disk(1 << 20, 512, |i| i.max_request_bytes = 128 * K as u32);
    let (probe, q) = queue_over(&d);
    let data = pattern(128 * K, 3);
    let done = Done::new();
    {
        let _plug = q.plug();
        for i in 0..32 {
            let s = seg(&data, i * 4 * K, 4 * K);
            q.submit(bio(BioOp::Write, 64 + i as u64 * 8, &[s], BioFlags::empty(), done.end(i as u64)));
        }
        assert!(probe.seen().is_empty(), "nothing reaches the driver under a plug");
        assert_eq!(q.waiting(), 32);
    }
    assert_eq!(probe.seen(), vec![seen(BioOp::Write, 64, &[128 * K as u32])], "one coalesced segment");
    drain(&q);
    done.assert_each(32, |_| Ok(()));
    let mut back = vec![0u8; 128 * K];
    d.peek(32 * K as u64, &mut back);
    assert_eq!(back, data);
    assert_eq!(q.stats().merges, 31);

    // The same with every bio in its own piece of memory: one request, 32 segments.
    probe.take_seen();
    let spread = pattern(256 * K, 4);
    {
        let _plug = q.plug();
        for i in 0..32 {
            let s = seg(&spread, i * 8 * K, 4 * K);
            q.submit(bio(
                BioOp::Write,
                512 + i as u64 * 8,
                &[s],
                BioFlags::empty(),
                done.end(100 + i as u64),
            ));
        }
    }
    drain(&q);
    assert_eq!(probe.seen(), vec![seen(BioOp::Write, 512, &[4096; 32])]);
    assert_eq!(done.len(), 64);
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn non_adjacent_or_unlike_bios_are_not_merged() {
    let d = disk(1 << 20, 512, |i| i.features |= DeviceFeatures::FUA);
    let (probe, q) = queue_over(&d);
    let data = pattern(64 * K, 5);
    let mut rd = vec![0u8; 4 * K];
    let done = Done::new();
    {
        let _plug = q.plug();
        // Gaps of one block between the bios.
        for i in 0..4u64 {
            let s = seg(&data, i as usize * 4 * K, 4 * K);
            q.submit(bio(BioOp::Write, i * 9, &[s], BioFlags::empty(), done.end(i)));
        }
        // Adjacent on disk but a different op, different flags, or FUA.
        q.submit(bio(BioOp::Write, 100, &[seg(&data, 16 * K, 4 * K)], BioFlags::empty(), done.end(4)));
        q.submit(bio(
            BioOp::Read,
            108,
            &[seg_mut(rd.as_mut_ptr(), 0, 4 * K)],
            BioFlags::empty(),
            done.end(5),
        ));
        q.submit(bio(BioOp::Write, 116, &[seg(&data, 24 * K, 4 * K)], BioFlags::META, done.end(6)));
        q.submit(bio(BioOp::Write, 124, &[seg(&data, 28 * K, 4 * K)], BioFlags::FUA, done.end(7)));
        q.submit(bio(BioOp::Write, 132, &[seg(&data, 32 * K, 4 * K)], BioFlags::empty(), done.end(8)));
    }
    drain(&q);
    done.assert_each(9, |_| Ok(()));
    assert_eq!(probe.seen().len(), 9);
    assert_eq!(q.stats().merges, 0);
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn merges_respect_the_device_limits() {
    let d = disk(1 << 20, 512, |i| i.max_request_bytes = 128 * K as u32);
    let (probe, q) = queue_over(&d);
    let data = pattern(256 * K, 6);
    let done = Done::new();
    {
        let _plug = q.plug();
        for i in 0..64 {
            let s = seg(&data, i * 4 * K, 4 * K);
            q.submit(bio(BioOp::Write, i as u64 * 8, &[s], BioFlags::empty(), done.end(i as u64)));
        }
    }
    drain(&q);
    done.assert_each(64, |_| Ok(()));
    assert_eq!(
        probe.take_seen(),
        vec![seen(BioOp::Write, 0, &[128 * K as u32]), seen(BioOp::Write, 256, &[128 * K as u32])]
    );

    // Four segments per request, memory not contiguous: 16 bios -> 4 requests of 4 segments.
    let d = disk(1 << 20, 512, |i| i.max_segments = 4);
    let (probe, q) = queue_over(&d);
    let done = Done::new();
    {
        let _plug = q.plug();
        for i in 0..16 {
            let s = seg(&data, i * 8 * K, 4 * K);
            q.submit(bio(BioOp::Write, i as u64 * 8, &[s], BioFlags::empty(), done.end(i as u64)));
        }
    }
    drain(&q);
    done.assert_each(16, |_| Ok(()));
    let expect: Vec<Seen> = (0..4).map(|k| seen(BioOp::Write, k * 32, &[4096; 4])).collect();
    assert_eq!(probe.seen(), expect);
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn interleaved_streams_merge_by_back_and_front_merges() {
    let d = disk(1 << 20, 512, |_| {});
    let (probe, q) = queue_over(&d);
    let data = pattern(64 * K, 7);
    let done = Done::new();
    let sectors = [0u64, 1000, 8, 1008, 992, 16];
    {
        let _plug = q.plug();
        for (i, &s) in sectors.iter().enumerate() {
            let sg = seg(&data, i * 4 * K, 4 * K);
            q.submit(bio(BioOp::Write, s, &[sg], BioFlags::empty(), done.end(i as u64)));
        }
    }
    drain(&q);
    done.assert_each(6, |_| Ok(()));
    let got: Vec<(u64, u64)> = probe.seen().iter().map(|s| (s.sector, s.sectors)).collect();
    assert_eq!(got, vec![(0, 24), (992, 24)]);
    let mut back = vec![0u8; 4 * K];
    d.peek(992 * 512, &mut back);
    assert_eq!(back, data[16 * K..20 * K], "the front-merged bio landed first in its request");
}

#[test]
fn bios_merge_while_the_device_queue_is_full() {
    let d = disk(1 << 20, 512, |i| i.queue_depth = 1);
    let (probe, q) = queue_over(&d);
    let data = pattern(32 * K, 8);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 1000, &[seg(&data, 0, 4 * K)], BioFlags::empty(), done.end(0)));
    for i in 0..4 {
        let s = seg(&data, (4 + i) * 4 * K, 4 * K);
        q.submit(bio(BioOp::Write, i as u64 * 8, &[s], BioFlags::empty(), done.end(1 + i as u64)));
    }
    assert_eq!(probe.seen().len(), 1, "the device is full: the rest waits");
    assert_eq!((q.driver_in_flight(), q.waiting(), q.in_flight()), (1, 4, 5));
    drain(&q);
    done.assert_each(5, |_| Ok(()));
    assert_eq!(
        probe.seen(),
        vec![seen(BioOp::Write, 1000, &[4096]), seen(BioOp::Write, 0, &[16 * K as u32])]
    );
    assert_eq!(d.peak_in_flight(), 1);
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn fua_without_native_support_is_write_then_flush() {
    let d = disk(1 << 20, 512, |_| {}); // RamDisk default: FLUSH, no FUA
    d.set_trace(true);
    d.set_poll_budget(Some(1));
    let (probe, q) = queue_over(&d);
    let data = pattern(8 * K, 9);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 16, &[seg(&data, 0, 8 * K)], BioFlags::FUA, done.end(0)));
    assert_eq!(probe.seen(), vec![seen(BioOp::Write, 16, &[8192])], "FUA stripped for the driver");
    assert_eq!(q.poll(), 0, "the write completed, the bio waits for its flush");
    assert_eq!(done.len(), 0);
    assert_eq!(d.in_flight(), 1, "the flush is at the device");
    assert_eq!(q.poll(), 1);
    done.assert_each(1, |_| Ok(()));
    assert_eq!(
        d.take_trace(),
        vec![trace(BioOp::Write, false, 8192, 8192), trace(BioOp::Flush, false, 0, 0)]
    );
    let s = q.stats();
    assert_eq!((s.fua_emulated, s.flushes, s.requests), (1, 1, 2));
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn native_fua_passes_through_without_a_flush() {
    let d = disk(1 << 20, 512, |i| i.features |= DeviceFeatures::FUA);
    d.set_trace(true);
    let (probe, q) = queue_over(&d);
    let data = pattern(4 * K, 10);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 4 * K)], BioFlags::FUA, done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Ok(()));
    assert_eq!(d.take_trace(), vec![trace(BioOp::Write, true, 0, 4096)]);
    assert_eq!(probe.seen()[0].flags, BioFlags::FUA);
    assert_eq!(q.stats().fua_emulated, 0);
}

#[test]
fn preflush_completes_before_the_data_is_issued() {
    let d = disk(1 << 20, 512, |_| {});
    d.set_trace(true);
    d.set_poll_budget(Some(1));
    let (probe, q) = queue_over(&d);
    let data = pattern(4 * K, 11);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 8, &[seg(&data, 0, 4 * K)], BioFlags::PREFLUSH, done.end(0)));
    let flush = Seen { op: BioOp::Flush, flags: BioFlags::empty(), sector: 0, segs: vec![], sectors: 0 };
    assert_eq!(probe.seen(), vec![flush.clone()], "only the flush is issued");
    assert_eq!(q.waiting(), 1, "the data is held behind the flush");
    q.poll();
    assert_eq!(probe.seen(), vec![flush.clone(), seen(BioOp::Write, 8, &[4096])]);
    assert_eq!(done.len(), 0);
    q.poll();
    done.assert_each(1, |_| Ok(()));
    assert_eq!(
        d.take_trace(),
        vec![trace(BioOp::Flush, false, 0, 0), trace(BioOp::Write, false, 4096, 4096)]
    );

    // PREFLUSH | FUA on a device without FUA: flush, write, flush, in that order.
    q.submit(bio(BioOp::Write, 8, &[seg(&data, 0, 4 * K)], BioFlags::PREFLUSH | BioFlags::FUA, done.end(1)));
    for _ in 0..2 {
        q.poll();
        assert_eq!(done.len(), 1);
    }
    q.poll();
    assert_eq!(done.result(1), Some(Ok(())));
    assert_eq!(
        d.take_trace(),
        vec![
            trace(BioOp::Flush, false, 0, 0),
            trace(BioOp::Write, false, 4096, 4096),
            trace(BioOp::Flush, false, 0, 0)
        ]
    );
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());
}

#[test]
fn without_a_volatile_cache_flushes_do_no_io() {
    let d = disk(1 << 20, 512, |i| i.features = DeviceFeatures::empty());
    d.set_trace(true);
    let (probe, q) = queue_over(&d);
    let data = pattern(4 * K, 12);
    let done = Done::new();
    q.submit(Bio::flush(done.end(0)));
    assert_eq!(done.result(0), Some(Ok(())), "completes at once");
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 4 * K)], BioFlags::FUA | BioFlags::PREFLUSH, done.end(1)));
    drain(&q);
    done.assert_each(2, |_| Ok(()));
    assert_eq!(d.take_trace(), vec![trace(BioOp::Write, false, 0, 4096)]);
    assert_eq!(probe.seen(), vec![seen(BioOp::Write, 0, &[4096])]);
    let s = q.stats();
    assert_eq!((s.flushes_elided, s.flushes, s.fua_emulated, s.requests), (2, 0, 0, 1));
}

#[test]
fn flushes_waiting_together_are_issued_once() {
    let d = disk(1 << 20, 512, |i| i.queue_depth = 1);
    let (probe, q) = queue_over(&d);
    let data = pattern(4 * K, 13);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 4 * K)], BioFlags::empty(), done.end(0)));
    for c in 1..4 {
        q.submit(Bio::flush(done.end(c)));
    }
    drain(&q);
    done.assert_each(4, |_| Ok(()));
    let ops: Vec<BioOp> = probe.seen().iter().map(|s| s.op).collect();
    assert_eq!(ops, vec![BioOp::Write, BioOp::Flush]);
    assert_eq!(d.stats().flushes, 1);
}

#[test]
fn queue_depth_bounds_the_requests_at_the_driver() {
    let d = disk(1 << 20, 512, |i| i.queue_depth = 4);
    d.set_completion_order(CompletionOrder::Shuffle { seed: 99 });
    d.set_poll_budget(Some(3));
    let (probe, q) = queue_over(&d);
    let mut data = pattern(160 * K, 14);
    let base = data.as_mut_ptr();
    let done = Done::new();
    for i in 0..40u64 {
        let op = if i % 3 == 0 { BioOp::Read } else { BioOp::Write };
        let s = seg_mut(base, i as usize * 4 * K, 4 * K);
        // Every other block: nothing is adjacent, nothing merges.
        q.submit(bio(op, i * 16, &[s], BioFlags::empty(), done.end(i)));
    }
    assert_eq!((q.driver_in_flight(), q.waiting(), q.in_flight()), (4, 36, 40));
    drain(&q);
    done.assert_each(40, |_| Ok(()));
    assert_eq!(d.peak_in_flight(), 4);
    let s = q.stats();
    assert_eq!((s.requests, s.peak_in_flight, s.merges), (40, 4, 0));
    assert_eq!(probe.seen().len(), 40);
    assert!(probe.violations().is_empty(), "{:?}", probe.violations());

    // A configured cap below the device's depth.
    let d = disk(1 << 20, 512, |_| {});
    let q = Queue::with_config(d.clone(), QueueConfig { max_depth: 2, ..QueueConfig::default() });
    assert_eq!(q.info().queue_depth, 2);
    for i in 0..10u64 {
        q.submit(bio(BioOp::Read, i * 16, &[seg_mut(base, 0, 4 * K)], BioFlags::empty(), done.end(100 + i)));
    }
    drain(&q);
    assert_eq!(d.peak_in_flight(), 2);
    assert_eq!(done.len(), 50);
}

#[test]
fn invalid_bios_complete_at_once_with_exact_errors() {
    let d = disk(64 * K as u64, 4096, |i| i.features = DeviceFeatures::FLUSH);
    let (probe, q) = queue_over(&d);
    let buf = pattern(16 * K, 15);
    let done = Done::new();
    let w = |sector, segs: &[Segment], c| bio(BioOp::Write, sector, segs, BioFlags::empty(), done.end(c));
    q.submit(w(1, &[seg(&buf, 0, 4096)], 0)); // misaligned sector
    q.submit(w(128, &[seg(&buf, 0, 4096)], 1)); // past the end
    q.submit(w(0, &[seg(&buf, 0, 512)], 2)); // segment not a block multiple
    q.submit(w(0, &[seg(&buf, 0, 0)], 3)); // empty segment
    q.submit(w(0, &[], 4)); // no segments
    q.submit(w(u64::MAX - 7, &[seg(&buf, 0, 4096)], 5)); // sector overflow
    let mut f = Bio::flush(done.end(6));
    f.push(seg(&buf, 0, 4096)).unwrap();
    q.submit(f); // flush with data
    q.submit(Bio::dataless(BioOp::Discard, 0, 8, done.end(7))); // unsupported
    q.submit(Bio::dataless(BioOp::WriteZeroes, 0, 8, done.end(8))); // unsupported
    let mut r = bio(BioOp::Read, 0, &[seg(&buf, 0, 4096)], BioFlags::empty(), done.end(9));
    r.dataless_sectors = 8;
    q.submit(r); // data op with a dataless length
    let expect = [
        Errno::EINVAL,
        Errno::EINVAL,
        Errno::EINVAL,
        Errno::EINVAL,
        Errno::EINVAL,
        Errno::EINVAL,
        Errno::EINVAL,
        Errno::EOPNOTSUPP,
        Errno::EOPNOTSUPP,
        Errno::EINVAL,
    ];
    done.assert_each(10, |c| Err(expect[c as usize]));

    let ro = disk(64 * K as u64, 4096, |i| i.features = DeviceFeatures::READ_ONLY | DeviceFeatures::DISCARD);
    let (ro_probe, rq) = queue_over(&ro);
    rq.submit(bio(BioOp::Write, 0, &[seg(&buf, 0, 4096)], BioFlags::empty(), done.end(10)));
    rq.submit(Bio::dataless(BioOp::Discard, 0, 8, done.end(11)));
    let mut rd = vec![0u8; 4096];
    rq.submit(bio(BioOp::Read, 0, &[seg_mut(rd.as_mut_ptr(), 0, 4096)], BioFlags::empty(), done.end(12)));
    drain(&rq);
    assert_eq!(done.result(10), Some(Err(Errno::EROFS)));
    assert_eq!(done.result(11), Some(Err(Errno::EROFS)));
    assert_eq!(done.result(12), Some(Ok(())));
    assert!(probe.seen().is_empty(), "nothing invalid reaches the driver");
    assert_eq!(ro_probe.seen().len(), 1);
    assert_eq!((q.in_flight(), q.stats().rejected, q.stats().bios), (0, 10, 0));
}

#[test]
fn sync_helpers_do_not_hang_under_a_plug() {
    let p = StdPlatform::arc();
    let d = disk(1 << 20, 512, |_| {});
    let (_probe, q) = queue_over(&d);
    let data = pattern(12 * K, 16);
    let _plug = q.plug();
    write_at(&q, &p, 4096, &data, BioFlags::FUA).unwrap();
    let mut back = vec![0u8; 12 * K];
    read_at(&q, &p, 4096, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn a_long_plug_is_dispatched_at_the_plug_limit() {
    let d = disk(1 << 20, 512, |_| {});
    let probe = Probe::new(d.clone());
    let q = Queue::with_config(probe.clone(), QueueConfig { plug_limit: 4, ..QueueConfig::default() });
    let mut rd = vec![0u8; 4 * K];
    let base = rd.as_mut_ptr();
    let done = Done::new();
    let _plug = q.plug();
    for i in 0..3u64 {
        q.submit(bio(BioOp::Read, i * 16, &[seg_mut(base, 0, 4 * K)], BioFlags::empty(), done.end(i)));
    }
    assert!(probe.seen().is_empty());
    q.submit(bio(BioOp::Read, 100, &[seg_mut(base, 0, 4 * K)], BioFlags::empty(), done.end(3)));
    assert_eq!(probe.seen().len(), 4);
    drain(&q);
    assert_eq!(done.len(), 4);
}

/// A driver that carries out every request inside `submit`, completing it before `submit`
/// returns: the queue's dispatch must not recurse once per waiting request.
struct Immediate(Arc<RamDisk>);

impl BlockDevice for Immediate {
    fn info(&self) -> DeviceInfo {
        self.0.info()
    }
    fn submit(&self, bio: Bio) {
        self.0.submit(bio);
        self.0.poll();
    }
    fn poll(&self) -> usize {
        self.0.poll()
    }
    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
}

#[test]
fn a_driver_completing_inside_submit_is_handled_without_recursion() {
    let d = disk(24 << 20, 512, |i| i.queue_depth = 1);
    let q = Queue::with_config(
        Arc::new(Immediate(d.clone())),
        QueueConfig { merge: false, ..Default::default() },
    );
    let data = pattern(4 * K, 18);
    let done = Done::new();
    let n = 5000u64;
    {
        let _plug = q.plug();
        for i in 0..n {
            q.submit(bio(BioOp::Write, i * 8, &[seg(&data, 0, 4 * K)], BioFlags::empty(), done.end(i)));
        }
    }
    assert_eq!(done.len() as u64, n, "all completed during the unplug");
    assert_eq!(q.in_flight(), 0);
    assert_eq!(d.stats().writes, n);
}

#[test]
fn threads_sharing_a_queue_each_see_their_own_data() {
    let d = disk(1 << 20, 512, |i| {
        i.queue_depth = 3;
        i.max_request_bytes = 8 * K as u32;
    });
    d.set_completion_order(CompletionOrder::Shuffle { seed: 5 });
    let q = Arc::new(Queue::new(d.clone()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                let p = StdPlatform::arc();
                for round in 0..60u64 {
                    let off = t * 256 * K as u64 + (round % 8) * 32 * K as u64;
                    let data = pattern(20 * K, t * 1000 + round);
                    let _plug = (round % 3 == 0).then(|| q.plug());
                    write_at(&*q, &p, off, &data, BioFlags::empty()).unwrap();
                    let mut back = vec![0u8; 20 * K];
                    read_at(&*q, &p, off, &mut back).unwrap();
                    assert_eq!(back, data, "thread {t} round {round}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(q.in_flight(), 0);
    assert!(d.peak_in_flight() <= 3);
    assert_eq!(d.stats().errors, 0);
}
