//! The data path: device facts, round trips across the whole device and its last block, 256
//! bios in flight, scatter-gather, DISCARD / WRITE_ZEROES, and the flush flags.

use alloc::vec::Vec;

use super::util::{check, chunk, data_bio, fill, mix, one, seg, setup, Tracker};
use super::DEVICE;
use crate::block::sync::{dataless, flush, read_at, write_at};
use crate::block::{Bio, BioFlags, BioOp, DeviceFeatures, Segment, SECTOR_SIZE};
use crate::errno::Errno;
use crate::platform::DmaBuffer;
use crate::selftest::{TestEnv, TestResult};
use crate::{ensure, ensure_eq};

pub(super) fn info_is_sane(env: &TestEnv) -> TestResult {
    let (dev, i) = setup(env)?;
    let lbs = i.logical_block_size;
    ensure!(lbs.is_power_of_two() && (512..=65536).contains(&lbs), "logical block size {lbs}");
    ensure!(
        i.physical_block_size >= lbs && i.physical_block_size.is_power_of_two(),
        "physical block size {} vs logical {lbs}",
        i.physical_block_size
    );
    ensure!(i.sectors > 0, "empty device");
    ensure_eq!(i.sectors % (u64::from(lbs) / SECTOR_SIZE), 0, "capacity in whole logical blocks");
    ensure!(i.max_segments >= 1 && i.queue_depth >= 1, "segments {} depth {}", i.max_segments, i.queue_depth);
    ensure!(i.max_segment_bytes >= lbs && i.max_request_bytes >= lbs, "limits below one block: {i:?}");
    ensure!(i.dma_alignment >= 1 && i.dma_alignment.is_power_of_two(), "dma alignment {}", i.dma_alignment);
    let discard = i.features.contains(DeviceFeatures::DISCARD);
    ensure_eq!(discard, i.max_discard_sectors > 0, "DISCARD feature vs max_discard_sectors");
    let wz = i.features.contains(DeviceFeatures::WRITE_ZEROES);
    ensure_eq!(wz, i.max_write_zeroes_sectors > 0, "WRITE_ZEROES feature vs max_write_zeroes_sectors");
    ensure_eq!(dev.poll(), 0, "poll of an idle device completes nothing");
    Ok(())
}

pub(super) fn write_flush_read_whole_disk(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let size = info.capacity_bytes();
    let step = chunk(&info, 1 << 20);
    const DEPTH: usize = 8;
    let seed = 0x5EED_0001;
    let mut bufs = Vec::new();
    for _ in 0..DEPTH {
        bufs.push(DmaBuffer::new(p, step as usize)?);
    }
    for (op, what) in [(BioOp::Write, "write"), (BioOp::Read, "read back")] {
        let mut offset = 0u64;
        while offset < size {
            let t = Tracker::new(DEPTH);
            let mut batch = Vec::new();
            for (k, b) in bufs.iter_mut().enumerate() {
                if offset >= size {
                    break;
                }
                let len = step.min(size - offset);
                if op == BioOp::Write {
                    fill(&mut b.as_mut_slice()[..len as usize], offset, seed);
                } else {
                    b.as_mut_slice().fill(0);
                }
                dev.submit(data_bio(op, BioFlags::empty(), offset, &[seg(b, 0, len as usize)], t.end(k)));
                batch.push((offset, len));
                offset += len;
            }
            t.wait(&*dev, &**p, batch.len());
            for (k, &(off, len)) in batch.iter().enumerate() {
                ensure_eq!(t.result(k), Some(Ok(())), "{what} of {len} bytes at {off:#x}");
                if op == BioOp::Read {
                    check(&bufs[k].as_slice()[..len as usize], off, seed, what)?;
                }
            }
        }
        if op == BioOp::Write {
            flush(&*dev, &**p)?;
        }
    }
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

pub(super) fn last_block_and_out_of_range(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = u64::from(info.logical_block_size);
    let last = info.capacity_bytes() - lbs;
    let mut b = DmaBuffer::new(p, 2 * lbs as usize)?;
    fill(&mut b.as_mut_slice()[..lbs as usize], last, 77);
    let s1 = seg(&b, 0, lbs as usize);
    ensure_eq!(
        one(&*dev, &**p, data_bio(BioOp::Write, BioFlags::FUA, last, &[s1], Tracker::new(1).end(0))),
        Ok(())
    );
    b.as_mut_slice().fill(0);
    let s1 = seg(&b, 0, lbs as usize);
    ensure_eq!(
        one(&*dev, &**p, data_bio(BioOp::Read, BioFlags::empty(), last, &[s1], Tracker::new(1).end(0))),
        Ok(())
    );
    check(&b.as_slice()[..lbs as usize], last, 77, "last block")?;
    let s2 = seg(&b, 0, 2 * lbs as usize);
    let end = Tracker::new(1).end(0);
    let cases: [(&str, Bio); 4] = [
        ("read at capacity", data_bio(BioOp::Read, BioFlags::empty(), last + lbs, &[s1], end.clone())),
        ("read across the end", data_bio(BioOp::Read, BioFlags::empty(), last, &[s2], end.clone())),
        ("write across the end", data_bio(BioOp::Write, BioFlags::empty(), last, &[s2], end.clone())),
        ("read at a sector that overflows", {
            let mut bio = data_bio(BioOp::Read, BioFlags::empty(), 0, &[s1], end.clone());
            bio.sector = u64::MAX - 1;
            bio
        }),
    ];
    for (what, bio) in cases {
        ensure_eq!(one(&*dev, &**p, bio), Err(Errno::EINVAL), "{what}");
    }
    for (op, feature) in
        [(BioOp::Discard, DeviceFeatures::DISCARD), (BioOp::WriteZeroes, DeviceFeatures::WRITE_ZEROES)]
    {
        let want = if info.features.contains(feature) { Errno::EINVAL } else { Errno::EOPNOTSUPP };
        let r = one(&*dev, &**p, Bio::dataless(op, last / SECTOR_SIZE, 2 * lbs / SECTOR_SIZE, end.clone()));
        ensure_eq!(r, Err(want), "{op:?} across the end");
    }
    // The last block is intact after the refused bios.
    b.as_mut_slice().fill(0);
    read_at(&*dev, p, last, &mut b.as_mut_slice()[..lbs as usize])?;
    check(&b.as_slice()[..lbs as usize], last, 77, "last block after refused bios")?;
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

pub(super) fn deep_queue_256_in_flight(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    const N: usize = 256;
    let lbs = info.logical_block_size as usize;
    let blocks = info.capacity_bytes() / lbs as u64;
    ensure!(blocks >= 2 * N as u64, "{DEVICE} needs at least {} blocks", 2 * N);
    // Distinct blocks spread over the device, visited in a shuffled order.
    let mut picks: Vec<u64> =
        (0..N as u64).map(|i| i * (blocks / N as u64) + (mix(i) % (blocks / N as u64))).collect();
    for i in (1..N).rev() {
        picks.swap(i, (mix(0xD1CE ^ i as u64) % (i as u64 + 1)) as usize);
    }
    let mut buf = DmaBuffer::new(p, N * lbs)?;
    for (k, &blk) in picks.iter().enumerate() {
        fill(&mut buf.as_mut_slice()[k * lbs..(k + 1) * lbs], blk * lbs as u64, 256);
    }
    let t = Tracker::new(N);
    for (k, &blk) in picks.iter().enumerate() {
        dev.submit(data_bio(
            BioOp::Write,
            BioFlags::empty(),
            blk * lbs as u64,
            &[seg(&buf, k * lbs, lbs)],
            t.end(k),
        ));
    }
    t.wait(&*dev, &**p, N);
    t.all_ok("256 writes")?;
    buf.as_mut_slice().fill(0);
    let t = Tracker::new(N);
    let mut peak = 0;
    for (k, &blk) in picks.iter().enumerate() {
        dev.submit(data_bio(
            BioOp::Read,
            BioFlags::empty(),
            blk * lbs as u64,
            &[seg(&buf, k * lbs, lbs)],
            t.end(k),
        ));
        peak = peak.max(dev.in_flight());
    }
    t.wait(&*dev, &**p, N);
    t.all_ok("256 reads")?;
    for (k, &blk) in picks.iter().enumerate() {
        check(&buf.as_slice()[k * lbs..(k + 1) * lbs], blk * lbs as u64, 256, "deep-queue read")?;
    }
    let mut order = t.completion_order();
    ensure_eq!(order.len(), N);
    order.sort_unstable();
    ensure!(
        order.iter().enumerate().all(|(i, &c)| c as usize == i),
        "completion cookies are not a permutation"
    );
    ensure!((1..=N).contains(&peak), "in_flight peaked at {peak}");
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

pub(super) fn scatter_gather_many_segments(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as usize;
    let max_seg = (info.max_segment_bytes as usize / lbs).max(1);
    let nseg = (info.max_segments as usize).min(crate::block::BIO_MAX_SEGMENTS);
    // Segment k is (1 + k % 3) blocks (bounded by the segment limit), within the request limit.
    let mut lens = Vec::new();
    let mut total = 0usize;
    for k in 0..nseg {
        let l = (1 + k % 3).min(max_seg) * lbs;
        if total + l > info.max_request_bytes as usize {
            break;
        }
        lens.push(l);
        total += l;
    }
    ensure!(!lens.is_empty());
    let offset = (info.capacity_bytes() / 2) / lbs as u64 * lbs as u64;
    ensure!(offset + total as u64 <= info.capacity_bytes(), "{DEVICE} too small for {total} bytes");
    // Segments live in reverse order in memory, with a one-block gap between neighbours.
    let mut mem = DmaBuffer::new(p, total + lens.len() * lbs)?;
    let mut places = Vec::new();
    let mut at = mem.len();
    for &l in &lens {
        at -= l + lbs;
        places.push(at);
    }
    let mut pos = offset;
    for (k, &l) in lens.iter().enumerate() {
        fill(&mut mem.as_mut_slice()[places[k]..places[k] + l], pos, 0x56);
        pos += l as u64;
    }
    let segs: Vec<Segment> = lens.iter().zip(&places).map(|(&l, &a)| seg(&mem, a, l)).collect();
    let w = data_bio(BioOp::Write, BioFlags::empty(), offset, &segs, Tracker::new(1).end(0));
    ensure_eq!(one(&*dev, &**p, w), Ok(()), "write of {} segments", segs.len());
    // Read back contiguously, then scattered again, and compare both.
    let mut flat = alloc::vec![0u8; total];
    read_at(&*dev, p, offset, &mut flat)?;
    check(&flat, offset, 0x56, "contiguous read of a scattered write")?;
    mem.as_mut_slice().fill(0);
    let r = data_bio(BioOp::Read, BioFlags::empty(), offset, &segs, Tracker::new(1).end(0));
    ensure_eq!(one(&*dev, &**p, r), Ok(()), "scattered read");
    let mut pos = offset;
    for (k, &l) in lens.iter().enumerate() {
        check(&mem.as_slice()[places[k]..places[k] + l], pos, 0x56, "scattered read")?;
        pos += l as u64;
    }
    Ok(())
}

pub(super) fn discard_and_write_zeroes(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as u64;
    let blocks = 64u64.min(info.capacity_bytes() / lbs);
    ensure!(blocks >= 48, "{DEVICE} too small");
    let base = 0u64;
    let mut data = alloc::vec![0u8; (blocks * lbs) as usize];
    fill(&mut data, base, 0xD15C);
    write_at(&*dev, p, base, &data, BioFlags::empty())?;
    let zeroed = (8 * lbs, 16 * lbs);
    let discarded = (32 * lbs, 8 * lbs);
    let wz = dataless(&*dev, &**p, BioOp::WriteZeroes, base + zeroed.0, zeroed.1);
    let can_wz = info.features.contains(DeviceFeatures::WRITE_ZEROES);
    ensure_eq!(wz, if can_wz { Ok(()) } else { Err(Errno::EOPNOTSUPP) }, "write-zeroes");
    let dc = dataless(&*dev, &**p, BioOp::Discard, base + discarded.0, discarded.1);
    let can_discard = info.features.contains(DeviceFeatures::DISCARD);
    ensure_eq!(dc, if can_discard { Ok(()) } else { Err(Errno::EOPNOTSUPP) }, "discard");
    let mut back = alloc::vec![0u8; data.len()];
    read_at(&*dev, p, base, &mut back)?;
    for blk in 0..blocks {
        let at = blk * lbs;
        let r = &back[at as usize..(at + lbs) as usize];
        let in_zeroed = at >= zeroed.0 && at < zeroed.0 + zeroed.1;
        let in_discarded = at >= discarded.0 && at < discarded.0 + discarded.1;
        if in_zeroed && can_wz {
            ensure!(r.iter().all(|&b| b == 0), "block {blk} not zero after WRITE_ZEROES");
        } else if in_discarded && can_discard {
            // Contents after DISCARD are the device's choice.
        } else {
            check(r, base + at, 0xD15C, "block outside the zeroed / discarded ranges")?;
        }
    }
    Ok(())
}

pub(super) fn fua_preflush_and_flush(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as u64;
    let at = info.capacity_bytes() / 4 / lbs * lbs;
    let flag_sets = [BioFlags::FUA, BioFlags::PREFLUSH, BioFlags::FUA | BioFlags::PREFLUSH, BioFlags::META];
    let mut buf = alloc::vec![0u8; 4 * lbs as usize];
    for (k, flags) in flag_sets.iter().enumerate() {
        let off = at + k as u64 * lbs;
        fill(&mut buf[..lbs as usize], off, 0xF0A);
        write_at(&*dev, p, off, &buf[..lbs as usize], *flags)?;
    }
    flush(&*dev, &**p)?;
    let t = Tracker::new(3);
    for k in 0..3 {
        let mut f = Bio::flush(t.end(k));
        f.flags = if k == 1 { BioFlags::PREFLUSH } else { BioFlags::empty() };
        dev.submit(f);
    }
    t.wait(&*dev, &**p, 3);
    t.all_ok("three flushes in flight")?;
    read_at(&*dev, p, at, &mut buf)?;
    check(&buf, at, 0xF0A, "FUA / PREFLUSH writes")?;
    let mut r = Bio::new(BioOp::Read, at / SECTOR_SIZE, Tracker::new(1).end(0));
    r.flags = BioFlags::FUA | BioFlags::PREFLUSH;
    let b = DmaBuffer::new(p, lbs as usize)?;
    let _ = r.push(seg(&b, 0, lbs as usize));
    ensure_eq!(one(&*dev, &**p, r), Ok(()), "read with FUA | PREFLUSH");
    check(b.as_slice(), at, 0xF0A, "read with FUA | PREFLUSH")?;
    Ok(())
}
