//! Request sequencing: completion order, the flush plan, doorbells, device errors, a
//! misbehaving device, limits, and drop with bios in flight.

use super::fake::{Fake, FakeConfig, Order};
use super::{bio, ops, probe, probe_with, seg, told, Rec};
use crate::block::sync::{dataless, read_at, write_at};
use crate::block::{Bio, BioFlags, BioOp, BlockDevice, DeviceFeatures, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{DmaBuffer, StdPlatform};
use crate::virtio::config::BlkFeatures;
use crate::virtio::wire::{T_FLUSH, T_GET_ID, T_OUT, T_WRITE_ZEROES};
use crate::virtio::*;

#[test]
fn out_of_order_completions_each_exactly_once() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    fake.state().order = Order::Reverse;
    let p = StdPlatform::arc();
    let mut buf = DmaBuffer::new(&p, 64 * 512).unwrap();
    for (i, b) in buf.as_mut_slice().chunks_mut(512).enumerate() {
        b.fill(i as u8 + 1);
    }
    let rec = Rec::new();
    for i in 0..64 {
        dev.submit(bio(
            BioOp::Write,
            BioFlags::empty(),
            2 * i as u64,
            &[seg(&buf, i * 512, 512)],
            rec.end(i as u64),
        ));
    }
    assert_eq!(dev.in_flight(), 64);
    assert_eq!(dev.poll(), 0, "nothing completes before the device does");
    assert_eq!(fake.state().held(), 64);
    fake.complete(usize::MAX);
    assert_eq!(dev.poll(), 64);
    let done = rec.taken();
    let cookies: Vec<u64> = done.iter().map(|d| d.0).collect();
    assert_eq!(cookies, (0..64).rev().collect::<Vec<u64>>(), "reaped in the device's (reverse) order");
    assert!(done.iter().all(|d| d.1.is_ok()));
    assert_eq!(dev.in_flight(), 0);
    assert_eq!(dev.poll(), 0);
    let st = fake.state();
    for i in 0..64usize {
        assert!(st.disk[2 * i * 512..(2 * i + 1) * 512].iter().all(|&b| b == i as u8 + 1), "block {i}");
    }
    assert!(st.log[1..].iter().all(|o| o.indirect && o.data_descs == 1));
}

#[test]
fn preflush_write_fua_is_flush_write_flush_in_sequence() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    fake.state().log.clear();
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 1024).unwrap();
    let rec = Rec::new();
    dev.submit(bio(BioOp::Write, BioFlags::PREFLUSH | BioFlags::FUA, 8, &[seg(&buf, 0, 1024)], rec.end(7)));
    assert_eq!(dev.poll(), 0, "the poll rings the doorbell");
    assert_eq!(ops(&fake), [T_FLUSH], "the write waits for the preflush");
    for (k, want) in [[T_FLUSH, T_OUT].as_slice(), &[T_FLUSH, T_OUT, T_FLUSH]].iter().enumerate() {
        fake.complete(1);
        assert_eq!(dev.poll(), 0, "step {k} is not the bio's completion");
        assert_eq!(ops(&fake), *want);
        assert_eq!(dev.in_flight(), 1);
    }
    fake.complete(1);
    assert_eq!(dev.poll(), 1);
    assert_eq!(rec.taken(), [(7, Ok(()))]);
    let st = fake.state();
    assert_eq!((st.log[1].sector, st.log[1].bytes), (8, 1024));
    assert_eq!(st.held(), 0);
}

#[test]
fn doorbell_rings_per_kick_batch_or_at_poll() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 512).unwrap();
    let rec = Rec::new();
    let n0 = fake.state().notifies;
    let read = |i: u64| bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, 0, 512)], rec.end(i));
    for i in 0..5 {
        dev.submit(read(i));
    }
    assert_eq!(told(&fake, n0), (0, 0), "5 < kick_batch: not yet told");
    assert_eq!(dev.poll(), 0);
    assert_eq!(told(&fake, n0), (1, 5), "the poll rang once for all five");
    for i in 5..45 {
        dev.submit(read(i));
    }
    assert_eq!(told(&fake, n0), (3, 37), "rung at 16 and 32 more");
    dev.poll();
    assert_eq!(told(&fake, n0), (4, 45));
    dev.poll();
    assert_eq!(fake.state().notifies - n0, 4, "nothing new: no doorbell");
    fake.complete(usize::MAX);
    while rec.count() < 45 {
        dev.poll();
    }
    let total = fake.state().notifies;
    assert_eq!(dev.stats().notifies, total, "the driver counts every doorbell (GET_ID's too)");
    assert_eq!(total - n0, 4);
    // kick_batch 1: every submission rings.
    let eager = Fake::new(FakeConfig::default());
    let dev = probe_with(&eager, Options { kick_batch: 1, ..Default::default() }).unwrap();
    eager.state().hold = true;
    let n0 = eager.state().notifies;
    for i in 0..3 {
        dev.submit(read(i));
    }
    assert_eq!(told(&eager, n0), (3, 3));
}

#[test]
fn device_without_cache_needs_no_flushes() {
    let fake = Fake::new(FakeConfig {
        features: FakeConfig::default().features - BlkFeatures::FLUSH,
        ..Default::default()
    });
    let dev = probe(&fake);
    let p = StdPlatform::arc();
    assert!(!dev.info().features.contains(DeviceFeatures::FLUSH));
    write_at(&dev, &p, 0, &[1u8; 512], BioFlags::FUA | BioFlags::PREFLUSH).unwrap();
    crate::block::sync::flush(&dev, &*p).unwrap();
    assert_eq!(ops(&fake), [T_GET_ID, T_OUT]);
}

#[test]
fn device_errors_map_to_errno_and_stop_the_plan() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    let p = StdPlatform::arc();
    fake.state().fail_write = Some(3);
    let results: Vec<Result<()>> =
        (0..5u64).map(|i| write_at(&dev, &p, i * 512, &[i as u8; 512], BioFlags::empty())).collect();
    assert_eq!(results, [Ok(()), Ok(()), Err(Errno::EIO), Ok(()), Ok(())]);
    fake.state().unsupported = vec![T_WRITE_ZEROES];
    assert_eq!(dataless(&dev, &*p, BioOp::WriteZeroes, 0, 512), Err(Errno::EOPNOTSUPP));
    // A failing preflush: the data is never sent.
    fake.state().unsupported = vec![T_FLUSH];
    fake.state().log.clear();
    assert_eq!(write_at(&dev, &p, 0, &[9u8; 512], BioFlags::PREFLUSH), Err(Errno::EOPNOTSUPP));
    assert_eq!(ops(&fake), [T_FLUSH]);
    // A failing FUA flush: the write happened, the bio still fails.
    fake.state().log.clear();
    assert_eq!(write_at(&dev, &p, 0, &[9u8; 512], BioFlags::FUA), Err(Errno::EOPNOTSUPP));
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH]);
    assert_eq!(fake.state().disk[0], 9);
    assert_eq!(dev.in_flight(), 0);
    assert!(!dev.is_broken());
}

#[test]
fn bogus_used_entry_resets_device_and_fails_everything() {
    let fake = Fake::new(FakeConfig::default());
    let dev = probe(&fake);
    fake.state().hold = true;
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 3 * 512).unwrap();
    let rec = Rec::new();
    for i in 0..3 {
        dev.submit(bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, i as usize * 512, 512)], rec.end(i)));
    }
    assert_eq!(dev.poll(), 0);
    assert_eq!(fake.state().held(), 3);
    fake.state().bogus_next = true;
    fake.complete(1);
    assert_eq!(dev.poll(), 3);
    let mut done = rec.taken();
    done.sort_by_key(|d| d.0);
    assert_eq!(done, [(0, Err(Errno::EIO)), (1, Err(Errno::EIO)), (2, Err(Errno::EIO))]);
    assert!(dev.is_broken());
    assert!(fake.state().is_reset());
    assert_eq!(dev.in_flight(), 0);
    let mut b = [0u8; 512];
    assert_eq!(read_at(&dev, &p, 0, &mut b), Err(Errno::EIO));
    assert_eq!(dev.stats().rejected, 1);
}

#[test]
fn beyond_limits_is_einval_before_the_device() {
    let fake = Fake::new(FakeConfig {
        seg_max: 4,
        size_max: 4096,
        features: FakeConfig::default().features | BlkFeatures::SIZE_MAX,
        max_discard: 16,
        max_write_zeroes: 8,
        ..Default::default()
    });
    let dev = probe(&fake);
    fake.state().log.clear();
    let p = StdPlatform::arc();
    let buf = DmaBuffer::new(&p, 8192).unwrap();
    let five: Vec<Segment> = (0..5).map(|k| seg(&buf, k * 512, 512)).collect();
    let rec = Rec::new();
    dev.submit(bio(BioOp::Read, BioFlags::empty(), 0, &five, rec.end(0)));
    dev.submit(bio(BioOp::Write, BioFlags::empty(), 0, &[seg(&buf, 0, 8192)], rec.end(1)));
    dev.submit(Bio::dataless(BioOp::Discard, 0, 17, rec.end(2)));
    dev.submit(Bio::dataless(BioOp::WriteZeroes, 0, 9, rec.end(3)));
    dev.submit(Bio::dataless(BioOp::WriteZeroes, 0, 8, rec.end(4)));
    while rec.count() < 5 {
        dev.poll();
    }
    assert_eq!(
        rec.taken(),
        [
            (0, Err(Errno::EINVAL)),
            (1, Err(Errno::EINVAL)),
            (2, Err(Errno::EINVAL)),
            (3, Err(Errno::EINVAL)),
            (4, Ok(()))
        ]
    );
    let st = fake.state();
    assert_eq!(st.log.len(), 1, "only the valid bio reached the device");
    assert_eq!((st.log[0].kind, st.log[0].sector, st.log[0].bytes), (T_WRITE_ZEROES, 0, 8 * 512));
    assert_eq!(dev.stats().rejected, 4);
}
