//! Refusals and limits: malformed and out-of-limit bios complete once with the right error,
//! I/O exactly at the limits works, and a completion callback may submit again.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::util::{data_bio, one, seg, setup, Tracker};
use crate::block::sync::dataless;
use crate::block::{
    Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, Segment, SECTOR_SIZE,
};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, DmaBuffer};
use crate::selftest::{TestEnv, TestResult};
use crate::{ensure, ensure_eq};

pub(super) fn malformed_bios_rejected_once(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as usize;
    let b = DmaBuffer::new(p, 2 * lbs)?;
    let t = Tracker::new(8);
    let mut want: Vec<(&str, Errno)> = Vec::new();
    let mut submit = |what: &'static str, bio: Bio, e: Errno| {
        want.push((what, e));
        dev.submit(bio);
    };
    submit("read without segments", Bio::new(BioOp::Read, 0, t.end(0)), Errno::EINVAL);
    let odd = seg(&b, 0, lbs + 512 - if lbs == 512 { 256 } else { 0 });
    submit(
        "segment not a multiple of the block size",
        data_bio(BioOp::Write, BioFlags::empty(), 0, &[odd], t.end(1)),
        Errno::EINVAL,
    );
    let mut f = Bio::flush(t.end(2));
    let _ = f.push(seg(&b, 0, lbs));
    submit("flush carrying data", f, Errno::EINVAL);
    let mut r = data_bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&b, 0, lbs)], t.end(3));
    r.dataless_sectors = 1;
    submit("read with a dataless length", r, Errno::EINVAL);
    let mut m = data_bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&b, 0, lbs)], t.end(4));
    if lbs > 512 {
        m.sector = 1;
        submit("sector not aligned to the logical block", m, Errno::EINVAL);
    } else {
        m.sector = info.sectors;
        submit("read just past the end", m, Errno::EINVAL);
    }
    let dl = |op| {
        if info.features.contains(if op == BioOp::Discard {
            DeviceFeatures::DISCARD
        } else {
            DeviceFeatures::WRITE_ZEROES
        }) {
            Errno::EINVAL
        } else {
            Errno::EOPNOTSUPP
        }
    };
    submit("discard of zero sectors", Bio::dataless(BioOp::Discard, 0, 0, t.end(5)), dl(BioOp::Discard));
    let mut wz = Bio::dataless(BioOp::WriteZeroes, 0, (lbs / 512) as u64, t.end(6));
    let _ = wz.push(seg(&b, 0, lbs));
    submit("write-zeroes carrying data", wz, dl(BioOp::WriteZeroes));
    let mut z = data_bio(BioOp::Write, BioFlags::empty(), 0, &[seg(&b, 0, lbs)], t.end(7));
    z.segments.clear();
    let _ = z.push(seg(&b, 0, 0));
    submit("zero-length segment", z, Errno::EINVAL);
    t.wait(&*dev, &**p, 8);
    ensure_eq!(t.anomalies.load(Ordering::Acquire), 0, "each bio completes exactly once");
    for (k, (what, e)) in want.iter().enumerate() {
        ensure_eq!(t.result(k), Some(Err(*e)), "{what}");
    }
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

/// Most memory a limits test allocates.
pub(super) const MEM_CAP: u64 = 8 << 20;

pub(super) fn io_at_the_limits(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = u64::from(info.logical_block_size);
    let cap = info.capacity_bytes();
    // One segment as large as allowed (within what the test can afford).
    let exact = u64::from(info.max_segment_bytes).min(cap).min(MEM_CAP) / lbs * lbs;
    let b = DmaBuffer::new(p, exact as usize)?;
    let r =
        data_bio(BioOp::Read, BioFlags::empty(), 0, &[seg(&b, 0, exact as usize)], Tracker::new(1).end(0));
    ensure_eq!(one(&*dev, &**p, r), Ok(()), "read of {exact} bytes in one segment");
    // A request as large as allowed, in as few segments as allowed.
    let per_seg = u64::from(info.max_segment_bytes) / lbs * lbs;
    let req =
        u64::from(info.max_request_bytes).min(cap).min(MEM_CAP).min(per_seg * u64::from(info.max_segments))
            / lbs
            * lbs;
    let b = DmaBuffer::new(p, req as usize)?;
    let mut segs = Vec::new();
    let mut at = 0;
    while at < req {
        let l = per_seg.min(req - at);
        segs.push(seg(&b, at as usize, l as usize));
        at += l;
    }
    let r = data_bio(BioOp::Read, BioFlags::empty(), cap - req, &segs, Tracker::new(1).end(0));
    ensure_eq!(
        one(&*dev, &**p, r),
        Ok(()),
        "read of {req} bytes in {} segments ending at the last block",
        segs.len()
    );
    for (op, max, feature) in [
        (BioOp::Discard, info.max_discard_sectors, DeviceFeatures::DISCARD),
        (BioOp::WriteZeroes, info.max_write_zeroes_sectors, DeviceFeatures::WRITE_ZEROES),
    ] {
        if info.features.contains(feature) {
            let n = u64::from(max).min(cap / SECTOR_SIZE) / (lbs / SECTOR_SIZE) * (lbs / SECTOR_SIZE);
            ensure_eq!(
                dataless(&*dev, &**p, op, 0, n * SECTOR_SIZE),
                Ok(()),
                "{op:?} of {n} sectors (limit {max})"
            );
        }
    }
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

pub(super) fn beyond_limits_einval(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = u64::from(info.logical_block_size);
    let cap = info.capacity_bytes();
    let mut checked = 0;
    for (op, max, feature) in [
        (BioOp::Discard, info.max_discard_sectors, DeviceFeatures::DISCARD),
        (BioOp::WriteZeroes, info.max_write_zeroes_sectors, DeviceFeatures::WRITE_ZEROES),
    ] {
        let over = u64::from(max) + lbs / SECTOR_SIZE;
        if info.features.contains(feature) && over * SECTOR_SIZE <= cap {
            let r = one(&*dev, &**p, Bio::dataless(op, 0, over, Tracker::new(1).end(0)));
            ensure_eq!(r, Err(Errno::EINVAL), "{op:?} of {over} sectors, limit {max}");
            checked += 1;
        }
    }
    let seg_over = u64::from(info.max_segment_bytes) + lbs;
    if seg_over <= cap.min(MEM_CAP) {
        let b = DmaBuffer::new(p, seg_over as usize)?;
        let r = data_bio(
            BioOp::Read,
            BioFlags::empty(),
            0,
            &[seg(&b, 0, seg_over as usize)],
            Tracker::new(1).end(0),
        );
        ensure_eq!(one(&*dev, &**p, r), Err(Errno::EINVAL), "segment of {seg_over} bytes");
        checked += 1;
    }
    let req_over = u64::from(info.max_request_bytes) + lbs;
    let per_seg = u64::from(info.max_segment_bytes) / lbs * lbs;
    if req_over <= cap.min(MEM_CAP) && req_over.div_ceil(per_seg) <= u64::from(info.max_segments) {
        let b = DmaBuffer::new(p, req_over as usize)?;
        let mut segs = Vec::new();
        let mut at = 0;
        while at < req_over {
            let l = per_seg.min(req_over - at);
            segs.push(seg(&b, at as usize, l as usize));
            at += l;
        }
        let r = data_bio(BioOp::Read, BioFlags::empty(), 0, &segs, Tracker::new(1).end(0));
        ensure_eq!(one(&*dev, &**p, r), Err(Errno::EINVAL), "request of {req_over} bytes");
        checked += 1;
    }
    let nseg = info.max_segments as usize;
    if nseg < crate::block::BIO_MAX_SEGMENTS {
        let b = DmaBuffer::new(p, (nseg + 1) * lbs as usize)?;
        let segs: Vec<Segment> = (0..=nseg).map(|k| seg(&b, k * lbs as usize, lbs as usize)).collect();
        let r = data_bio(BioOp::Read, BioFlags::empty(), 0, &segs, Tracker::new(1).end(0));
        ensure_eq!(
            one(&*dev, &**p, r),
            Err(Errno::EINVAL),
            "{} segments on a device taking {nseg}",
            nseg + 1
        );
        checked += 1;
    }
    ensure!(
        checked > 0 || info.max_segments as usize >= crate::block::BIO_MAX_SEGMENTS,
        "no limit was testable"
    );
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

/// Resubmits a read of the same block from its own completion until `left` runs out.
pub(super) struct Chain {
    dev: Arc<dyn BlockDevice>,
    seg: Segment,
    offset: u64,
    left: AtomicUsize,
    done: AtomicUsize,
    errors: AtomicUsize,
    me: spin::Once<alloc::sync::Weak<Chain>>,
}

impl Chain {
    fn next(self: &Arc<Self>) {
        let bio =
            data_bio(BioOp::Read, BioFlags::empty(), self.offset, &[self.seg], BioEnd::new(self.clone(), 0));
        self.dev.submit(bio);
    }
}

impl BioComplete for Chain {
    fn complete(&self, _cookie: u64, result: Result<()>) {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::AcqRel);
        }
        let more = self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(1)).is_ok();
        if more {
            if let Some(me) = self.me.get().and_then(|w| w.upgrade()) {
                me.next();
            }
        }
        self.done.fetch_add(1, Ordering::AcqRel);
    }
}

pub(super) fn submit_from_completion(env: &TestEnv) -> TestResult {
    let (dev, info) = setup(env)?;
    let p = &env.platform;
    let lbs = info.logical_block_size as usize;
    let b = DmaBuffer::new(p, lbs)?;
    const ROUNDS: usize = 16;
    let chain = Arc::new(Chain {
        dev: dev.clone(),
        seg: seg(&b, 0, lbs),
        offset: 0,
        left: AtomicUsize::new(ROUNDS - 1),
        done: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        me: spin::Once::new(),
    });
    chain.me.call_once(|| Arc::downgrade(&chain));
    chain.next();
    wait_until(&**p, Arc::as_ptr(&chain) as usize, &|| chain.done.load(Ordering::Acquire) >= ROUNDS, &|| {
        dev.poll();
    });
    ensure_eq!(chain.done.load(Ordering::Acquire), ROUNDS);
    ensure_eq!(chain.errors.load(Ordering::Acquire), 0);
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}
