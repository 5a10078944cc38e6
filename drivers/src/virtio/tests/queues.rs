//! Queue depth and shape: a full queue, direct descriptors running out, several queues, and
//! interrupt-driven completion.

use std::sync::{Arc, Mutex};

use super::fake::{Fake, FakeConfig, Order};
use super::{bio, ops, probe, probe_with, run_conformance, seg, Rec};
use crate::block::sync::read_at;
use crate::block::{BioFlags, BioOp, BlockDevice, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{DmaBuffer, StdPlatform};
use crate::virtio::config::BlkFeatures;
use crate::virtio::wire::{T_FLUSH, T_IN, T_OUT};
use crate::virtio::*;

#[test]
fn full_queue_makes_submit_poll_for_room() {
    let fake = Fake::new(FakeConfig { queue_size: 8, ..Default::default() });
    let dev = probe(&fake);
    assert_eq!(dev.info().queue_depth, 8);
    assert_eq!(dev.info().max_segments, 6);
    fake.state().hold = true;
    fake.state().order = Order::Shuffle(7);
    fake.start_auto();
    let p = StdPlatform::arc();
    let mut buf = DmaBuffer::new(&p, 100 * 512).unwrap();
    for (i, b) in buf.as_mut_slice().chunks_mut(512).enumerate() {
        b.fill(i as u8);
    }
    let rec = Rec::new();
    for i in 0..100u64 {
        dev.submit(bio(BioOp::Write, BioFlags::empty(), i, &[seg(&buf, i as usize * 512, 512)], rec.end(i)));
        assert!(dev.in_flight() <= 8 + 1);
    }
    while rec.count() < 100 {
        dev.poll();
        std::thread::yield_now();
    }
    fake.stop();
    assert!(rec.taken().iter().all(|d| d.1.is_ok()));
    assert!(dev.stats().room_waits > 0, "100 bios through 8 slots must have waited");
    let st = fake.state();
    assert!((0..100usize).all(|i| st.disk[i * 512..(i + 1) * 512].iter().all(|&b| b == i as u8)));
}

#[test]
fn direct_descriptors_stall_a_step_until_the_ring_has_room() {
    let fake = Fake::new(FakeConfig {
        queue_size: 16,
        features: FakeConfig::default().features - BlkFeatures::RING_INDIRECT_DESC,
        ..Default::default()
    });
    let dev = probe(&fake);
    assert!(!dev.indirect());
    assert_eq!(dev.info().max_segments, 14);
    fake.state().hold = true;
    fake.state().order = Order::Reverse;
    fake.state().log.clear();
    let p = StdPlatform::arc();
    let mut buf = DmaBuffer::new(&p, 22 * 512).unwrap();
    for (i, b) in buf.as_mut_slice().chunks_mut(512).enumerate() {
        b.fill(0x40 + i as u8);
    }
    let a: Vec<Segment> = (0..10).map(|k| seg(&buf, k * 512, 512)).collect();
    let b: Vec<Segment> = (10..22).map(|k| seg(&buf, k * 512, 512)).collect();
    let rec = Rec::new();
    // A: 12 descriptors, held by the device.
    dev.submit(bio(BioOp::Write, BioFlags::empty(), 0, &a, rec.end(1)));
    // B: its preflush takes 2 of the 4 free descriptors; its 14-descriptor write cannot follow.
    dev.submit(bio(BioOp::Write, BioFlags::PREFLUSH, 100, &b, rec.end(2)));
    assert_eq!(dev.poll(), 0);
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH]);
    fake.complete(1); // B's flush (newest first)
    assert_eq!(dev.poll(), 0);
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH], "B's write is stalled, not lost");
    fake.complete(1); // A
    assert_eq!(dev.poll(), 1);
    assert_eq!(rec.taken(), [(1, Ok(()))]);
    assert_eq!(ops(&fake), [T_OUT, T_FLUSH, T_OUT], "B's write went out once A freed the ring");
    fake.complete(1);
    assert_eq!(dev.poll(), 1);
    assert_eq!(rec.taken(), [(2, Ok(()))]);
    let st = fake.state();
    assert!(st.log.iter().all(|o| !o.indirect));
    assert_eq!(st.log[2].data_descs, 12);
    assert!((0..12usize).all(|k| st.disk[(100 * 512) + k * 512] == 0x40 + 10 + k as u8));
}

#[test]
fn threaded_direct_descriptors_pass_conformance() {
    let fake = Fake::new(FakeConfig {
        sectors: 8192,
        queue_size: 32,
        features: FakeConfig::default().features - BlkFeatures::RING_INDIRECT_DESC,
        ..Default::default()
    });
    let dev = Arc::new(probe(&fake));
    fake.state().hold = true;
    fake.state().order = Order::Shuffle(3);
    fake.start_auto();
    run_conformance(dev);
    fake.stop();
}

#[test]
fn multi_queue_spreads_requests_over_queues() {
    let fake = Fake::new(FakeConfig { queues: 3, ..Default::default() });
    let dev = probe(&fake);
    assert_eq!(dev.num_queues(), 3);
    assert_eq!(dev.info().queue_depth, 3 * 256);
    let p = StdPlatform::arc();
    fake.state().hold = true;
    let buf = DmaBuffer::new(&p, 512).unwrap();
    let rec = Rec::new();
    for i in 0..30 {
        dev.submit(bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, 0, 512)], rec.end(i)));
    }
    assert_eq!(dev.poll(), 0);
    fake.complete(usize::MAX);
    assert_eq!(dev.poll(), 30);
    for q in 0..3 {
        assert_eq!(dev.queue_stats(q).unwrap().completed, 10, "queue {q}");
    }
    let st = fake.state();
    for q in 0..3u16 {
        assert_eq!(st.log.iter().filter(|o| o.queue == q && o.kind == T_IN).count(), 10);
    }
    let capped = Fake::new(FakeConfig { queues: 3, ..Default::default() });
    assert_eq!(probe_with(&capped, Options { max_queues: 2, ..Default::default() }).unwrap().num_queues(), 2);
}

struct CountingCpu {
    saves: std::sync::atomic::AtomicUsize,
    restores: std::sync::atomic::AtomicUsize,
}

impl IrqControl for CountingCpu {
    fn save_disable(&self) -> bool {
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    }
    fn restore(&self, was_enabled: bool) {
        assert!(was_enabled);
        self.restores.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

static CPU: CountingCpu = CountingCpu {
    saves: std::sync::atomic::AtomicUsize::new(0),
    restores: std::sync::atomic::AtomicUsize::new(0),
};

#[derive(Default)]
struct Routes(Mutex<Vec<(u16, Option<MsiMessage>)>>);

impl InterruptRouting for Arc<Routes> {
    fn route(&self, queue: u16, message: Option<MsiMessage>) -> Result<()> {
        self.0.lock().unwrap().push((queue, message));
        Ok(())
    }
}

#[test]
fn interrupts_route_queues_and_the_handler_reaps() {
    let fake = Fake::new(FakeConfig { queues: 3, ..Default::default() });
    let routes = Arc::new(Routes::default());
    let dev = probe_with(
        &fake,
        Options { irq_control: Some(&CPU), routing: Some(Box::new(routes.clone())), ..Default::default() },
    )
    .unwrap();
    let m1 = MsiMessage { address: 0xFEE0_0000, data: 33 };
    let m2 = MsiMessage { address: 0xFEE0_1000, data: 34 };
    assert!(!dev.interrupts_enabled());
    assert!((0..3).all(|q| fake.state().interrupts_suppressed(q)), "polling mode suppresses interrupts");
    let p = StdPlatform::arc();
    let mut b = [0u8; 512];
    read_at(&dev, &p, 0, &mut b).unwrap();
    assert_eq!(CPU.saves.load(std::sync::atomic::Ordering::SeqCst), 0, "polling never masks interrupts");
    assert_eq!(dev.handle_interrupt(0), 0, "a stray interrupt while polling does nothing");
    dev.enable_interrupts(&[m1, m2]).unwrap();
    assert!(dev.interrupts_enabled());
    assert_eq!(*routes.0.lock().unwrap(), [(0, Some(m1)), (1, Some(m2)), (2, Some(m1))]);
    assert!((0..3).all(|q| !fake.state().interrupts_suppressed(q)));
    fake.state().hold = true;
    let buf = DmaBuffer::new(&p, 512).unwrap();
    let rec = Rec::new();
    for i in 0..6 {
        dev.submit(bio(BioOp::Read, BioFlags::empty(), i, &[seg(&buf, 0, 512)], rec.end(i)));
    }
    fake.complete(usize::MAX);
    let reaped: usize = (0..3).map(|q| dev.handle_interrupt(q)).sum();
    assert_eq!(reaped, 6);
    assert_eq!(dev.handle_interrupt(7), 0, "an unknown queue is ignored");
    let s = dev.stats();
    assert_eq!((s.completed, s.completed_in_irq), (7, 6), "the polled read before, six by interrupt");
    assert_eq!((0..3).map(|q| dev.queue_stats(q).unwrap().interrupts).sum::<u64>(), 3);
    dev.disable_interrupts();
    assert_eq!(routes.0.lock().unwrap()[3..], [(0, None), (1, None), (2, None)]);
    assert!((0..3).all(|q| fake.state().interrupts_suppressed(q)));
    let saves = CPU.saves.load(std::sync::atomic::Ordering::SeqCst);
    assert!(saves > 0);
    assert_eq!(saves, CPU.restores.load(std::sync::atomic::Ordering::SeqCst));
    // Without routing or interrupt control the option is refused.
    let plain = probe(&Fake::new(FakeConfig::default()));
    assert_eq!(plain.enable_interrupts(&[m1]), Err(Errno::EOPNOTSUPP));
    let no_ctl = probe_with(
        &Fake::new(FakeConfig::default()),
        Options { routing: Some(Box::new(routes.clone())), ..Default::default() },
    )
    .unwrap();
    assert_eq!(no_ctl.enable_interrupts(&[m1]), Err(Errno::EINVAL));
    assert_eq!(dev.enable_interrupts(&[]), Err(Errno::EINVAL));
}
