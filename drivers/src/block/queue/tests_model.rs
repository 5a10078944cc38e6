//! Model-based random test of the request layer: random bios (all ops, all flags, random
//! segment layouts, plugs, some invalid) through a `Queue` over a RamDisk with small random
//! limits and shuffled completions, checked against a `Vec<u8>` model of the medium. Every bio
//! must complete exactly once with the exact result, reads must return the model's bytes, and
//! the driver must never see a request beyond its limits. The seed is in every failure message.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::block::testutil::{bio, disk, drain, seg, seg_mut, Done, Probe, Rng};
use crate::block::{CompletionOrder, DeviceFeatures, Segment};

const DISK_BYTES: usize = 512 * 1024;

/// Splits `len` bytes (a multiple of `lbs`) into 1..=4 block-multiple pieces placed in a
/// buffer either back to back or with gaps; returns where each piece lies in the buffer.
fn layout(rng: &mut Rng, len: usize, lbs: usize) -> Vec<(usize, usize)> {
    let blocks = len / lbs;
    let pieces = (1 + rng.below(4) as usize).min(blocks);
    let mut cuts: Vec<usize> = (0..pieces - 1).map(|_| 1 + rng.below(blocks as u64 - 1) as usize).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(blocks);
    let gaps = rng.below(2) == 0;
    let mut places = Vec::new();
    let (mut prev, mut off) = (0, 0);
    for c in cuts {
        let n = (c - prev) * lbs;
        places.push((off, n));
        off += n + if gaps { lbs } else { 0 };
        prev = c;
    }
    places
}

struct Pending {
    cookie: u64,
    expect: Result<()>,
    read: Option<ReadCheck>,
}

/// A read to check: its buffer, where its segments lie in it, and its disk offset.
struct ReadCheck {
    buf: usize,
    places: Vec<(usize, usize)>,
    offset: usize,
}

fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let lbs: usize = if rng.below(2) == 0 { 512 } else { 4096 };
    let blocks = |rng: &mut Rng, max: u64| (1 + rng.below(max)) as u32 * lbs as u32;
    let max_segments = 1 + rng.below(4) as u16;
    let max_segment_bytes = blocks(&mut rng, 4);
    let max_request_bytes = blocks(&mut rng, 16);
    let queue_depth = 1 + rng.below(6) as u16;
    let per_block = (lbs / 512) as u32;
    let max_discard_sectors = per_block * (1 + rng.below(8) as u32);
    let fua = rng.below(2) == 0;
    let d = disk(DISK_BYTES as u64, lbs as u32, |i| {
        i.max_segments = max_segments;
        i.max_segment_bytes = max_segment_bytes;
        i.max_request_bytes = max_request_bytes;
        i.queue_depth = queue_depth;
        i.max_discard_sectors = max_discard_sectors;
        i.max_write_zeroes_sectors = max_discard_sectors * 2;
        if fua {
            i.features |= DeviceFeatures::FUA;
        }
    });
    d.set_completion_order(CompletionOrder::Shuffle { seed });
    d.set_poll_budget(Some(1 + rng.below(3) as usize));
    let probe = Probe::new(d.clone());
    let merge = rng.below(4) != 0;
    let q = Queue::with_config(probe.clone(), QueueConfig { merge, ..QueueConfig::default() });
    let ctx = format!(
        "seed {seed}: lbs {lbs} segs {max_segments}x{max_segment_bytes} req {max_request_bytes} \
         depth {queue_depth} fua {fua} merge {merge}"
    );
    let mut model = vec![0u8; DISK_BYTES];
    let done = Done::new();
    let mut cookie = 0u64;
    let disk_blocks = (DISK_BYTES / lbs) as u64;

    for round in 0..25 {
        let plug = if rng.below(2) == 0 { Some(q.plug()) } else { None };
        // Non-overlapping ranges: walk the disk with random gaps.
        let mut next_block = rng.below(8);
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut writes: Vec<(usize, Vec<u8>)> = Vec::new();
        for _ in 0..1 + rng.below(10) {
            let nblocks = 1 + rng.below(24);
            if next_block + nblocks > disk_blocks {
                break;
            }
            let off = (next_block * lbs as u64) as usize;
            let len = nblocks as usize * lbs;
            let sector = (off / 512) as u64;
            next_block += nblocks + rng.below(2);
            let mut flags = BioFlags::empty();
            for (bit, f) in [BioFlags::FUA, BioFlags::PREFLUSH, BioFlags::META].into_iter().enumerate() {
                if rng.below(6 + bit as u64) == 0 {
                    flags |= f;
                }
            }
            let c = cookie;
            cookie += 1;
            match rng.below(10) {
                0..=3 => {
                    // Cheap but position-dependent bytes: misplaced blocks cannot go unnoticed.
                    let base = rng.next();
                    let data: Vec<u8> =
                        (0..len).map(|i| (base >> (i % 8 * 8)) as u8 ^ (i / 8) as u8).collect();
                    let mut buf = vec![0u8; len + 4 * lbs];
                    let places = layout(&mut rng, len, lbs);
                    let mut pos = 0;
                    for &(o, n) in &places {
                        buf[o..o + n].copy_from_slice(&data[pos..pos + n]);
                        pos += n;
                    }
                    let segs: Vec<Segment> = places.iter().map(|&(o, n)| seg(&buf, o, n)).collect();
                    // The segments point into `buf`'s heap memory, which does not move.
                    q.submit(bio(BioOp::Write, sector, &segs, flags, done.end(c)));
                    bufs.push(buf);
                    writes.push((off, data));
                    pending.push(Pending { cookie: c, expect: Ok(()), read: None });
                }
                4..=6 => {
                    let mut buf = vec![0u8; len + 4 * lbs];
                    let places = layout(&mut rng, len, lbs);
                    let base = buf.as_mut_ptr();
                    let segs: Vec<Segment> = places.iter().map(|&(o, n)| seg_mut(base, o, n)).collect();
                    q.submit(bio(BioOp::Read, sector, &segs, flags, done.end(c)));
                    bufs.push(buf);
                    pending.push(Pending {
                        cookie: c,
                        expect: Ok(()),
                        read: Some(ReadCheck { buf: bufs.len() - 1, places, offset: off }),
                    });
                }
                7 => {
                    let op = if rng.below(2) == 0 { BioOp::Discard } else { BioOp::WriteZeroes };
                    q.submit(Bio::dataless(op, sector, (len / 512) as u64, done.end(c)));
                    writes.push((off, vec![0u8; len]));
                    pending.push(Pending { cookie: c, expect: Ok(()), read: None });
                }
                8 => {
                    q.submit(Bio::flush(done.end(c)));
                    pending.push(Pending { cookie: c, expect: Ok(()), read: None });
                }
                _ => {
                    // Invalid: misaligned start (lbs 4096), past the end, or a bad segment.
                    let buf = vec![0u8; lbs];
                    let b = match rng.below(3) {
                        0 if lbs > 512 => {
                            bio(BioOp::Read, sector + 1, &[seg(&buf, 0, lbs)], flags, done.end(c))
                        }
                        1 => bio(
                            BioOp::Read,
                            disk_blocks * per_block as u64,
                            &[seg(&buf, 0, lbs)],
                            flags,
                            done.end(c),
                        ),
                        _ => Bio::dataless(BioOp::Discard, sector, 0, done.end(c)),
                    };
                    q.submit(b);
                    bufs.push(buf);
                    pending.push(Pending { cookie: c, expect: Err(Errno::EINVAL), read: None });
                }
            }
        }
        drop(plug);
        drain(&q);
        let ctx = format!("{ctx} round {round}");
        assert_eq!(q.in_flight(), 0, "{ctx}");
        assert_eq!(q.waiting(), 0, "{ctx}");
        for p in &pending {
            assert_eq!(done.result(p.cookie), Some(p.expect), "{ctx} cookie {}", p.cookie);
            if let Some(r) = &p.read {
                let mut pos = r.offset;
                for &(o, n) in &r.places {
                    assert_eq!(bufs[r.buf][o..o + n], model[pos..pos + n], "{ctx} read cookie {}", p.cookie);
                    pos += n;
                }
            }
        }
        for (off, data) in writes {
            model[off..off + data.len()].copy_from_slice(&data);
            let mut back = vec![0u8; data.len()];
            d.peek(off as u64, &mut back);
            assert_eq!(back, data, "{ctx}: medium at {off}");
        }
        let v: Vec<String> = probe.violations();
        assert!(v.is_empty(), "{ctx}: {v:?}");
    }
    assert_eq!(d.snapshot(), model, "{ctx}: medium differs from the model");
    assert_eq!(done.len() as u64, cookie, "{ctx}: completions");
    assert!(d.peak_in_flight() <= queue_depth as usize, "{ctx}");
}

#[test]
fn random_bios_match_the_model_within_the_driver_limits() {
    for seed in 0..32 {
        run_seed(0x5EED_0000 + seed);
    }
}
