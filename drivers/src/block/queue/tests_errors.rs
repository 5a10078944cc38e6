//! Request-layer error paths, with FaultDisk as the driver: a failed part fails its bio once,
//! a failed merged request fails every bio in it, failed flushes stop the flush sequence.

use alloc::sync::Arc;
use alloc::vec;

use super::*;
use crate::block::fault::{FaultDisk, FaultRule, OpMask};
use crate::block::testutil::{bio, disk, drain, pattern, seg, Done};
use crate::block::RamDisk;

const K: usize = 1024;

fn faulty(d: &Arc<RamDisk>) -> (Arc<FaultDisk>, Queue) {
    let f = Arc::new(FaultDisk::new(d.clone()));
    let q = Queue::new(f.clone());
    (f, q)
}

#[test]
fn a_split_bio_with_one_failed_part_completes_once_with_eio() {
    let d = disk(2 << 20, 512, |i| i.max_request_bytes = 128 * K as u32);
    d.poke(0, &vec![0x11; 1 << 20]);
    let (f, q) = faulty(&d);
    f.add_rule(FaultRule::fail(OpMask::WRITE).nth(3).once()).unwrap();
    let data = pattern(1 << 20, 20);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 1 << 20)], BioFlags::empty(), done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Err(Errno::EIO));
    assert_eq!(d.stats().writes, 7, "the other parts were still issued");
    let mut back = vec![0u8; 1 << 20];
    d.peek(0, &mut back);
    for part in 0..8 {
        let r = part * 128 * K..(part + 1) * 128 * K;
        if part == 2 {
            assert!(back[r].iter().all(|&b| b == 0x11), "the failed part left the medium alone");
        } else {
            assert_eq!(back[r.clone()], data[r], "part {part}");
        }
    }
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn a_failed_merged_request_fails_every_bio_in_it_once() {
    let d = disk(1 << 20, 512, |_| {});
    let (f, q) = faulty(&d);
    let id = f.add_rule(FaultRule::fail(OpMask::WRITE).once()).unwrap();
    let data = pattern(16 * K, 21);
    let done = Done::new();
    {
        let _plug = q.plug();
        for i in 0..4 {
            let s = seg(&data, i * 4 * K, 4 * K);
            q.submit(bio(BioOp::Write, i as u64 * 8, &[s], BioFlags::empty(), done.end(i as u64)));
        }
    }
    drain(&q);
    done.assert_each(4, |_| Err(Errno::EIO));
    assert_eq!(f.rule_stats(id).map(|s| s.seen), Some(1), "the four bios were one request");
    assert_eq!(d.stats().writes, 0);
}

#[test]
fn a_failed_preflush_fails_the_bio_and_its_data_is_never_written() {
    let d = disk(1 << 20, 512, |_| {});
    let (f, q) = faulty(&d);
    f.add_rule(FaultRule::fail(OpMask::FLUSH).once()).unwrap();
    let data = pattern(4 * K, 22);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 4 * K)], BioFlags::PREFLUSH, done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Err(Errno::EIO));
    assert_eq!((d.stats().writes, d.stats().flushes), (0, 0));
    assert_eq!(q.waiting(), 0, "the held data was dropped");

    // The rule is spent: the same bio now goes through, flush first.
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 4 * K)], BioFlags::PREFLUSH, done.end(1)));
    drain(&q);
    assert_eq!(done.result(1), Some(Ok(())));
    assert_eq!((d.stats().writes, d.stats().flushes), (1, 1));
}

#[test]
fn a_failed_post_flush_fails_an_emulated_fua_write() {
    let d = disk(1 << 20, 512, |_| {});
    let (f, q) = faulty(&d);
    f.add_rule(FaultRule::fail(OpMask::FLUSH).once()).unwrap();
    let data = pattern(4 * K, 23);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 4 * K)], BioFlags::FUA, done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Err(Errno::EIO));
    assert_eq!(d.stats().writes, 1, "the data was written, but is not known durable");
}

#[test]
fn a_failed_write_part_skips_the_fua_flush() {
    let d = disk(1 << 20, 512, |i| i.max_request_bytes = 4 * K as u32);
    let (f, q) = faulty(&d);
    f.add_rule(FaultRule::fail(OpMask::WRITE).nth(2).once()).unwrap();
    let data = pattern(12 * K, 24);
    let done = Done::new();
    q.submit(bio(BioOp::Write, 0, &[seg(&data, 0, 12 * K)], BioFlags::FUA, done.end(0)));
    drain(&q);
    done.assert_each(1, |_| Err(Errno::EIO));
    assert_eq!((d.stats().writes, d.stats().flushes), (2, 0));
}
