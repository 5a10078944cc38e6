//! [`VirtioBlk`] and its [`BlockDevice`] implementation across hardware queues (setup is in
//! [`setup`](super::setup), the interrupt option in [`irq`](super::irq)).
//!
//! Owns: the transport (under a spin lock: notifications, reset, interrupt routing), the
//! hardware queues, the device facts, and the device-wide counters.
//!
//! Submission validates the bio against the device's own limits ([`validate`] plus segment
//! count, segment size, request size and discard / write-zeroes sizes: anything beyond them is
//! `EINVAL`), picks a queue round-robin among those with a free slot, and posts the bio's first
//! step. When every slot is busy it polls until one frees (the contract's "submit makes room by
//! polling"). Completion is by polling ([`BlockDevice::poll`] reaps every busy queue) and,
//! optionally, by interrupt ([`VirtioBlk::handle_interrupt`]).
//!
//! Doorbells are batched while polling: a queue's device is notified once
//! [`Options::kick_batch`](super::Options::kick_batch) chains are posted, or by the next `poll` (every waiter polls, so a
//! lone bio is notified by its first wait). Under QEMU's TCG a doorbell is a synchronous trip
//! into the device model, so batching is what makes queue depth pay; with interrupts on, every
//! submission notifies (nobody may poll).
//!
//! Lock order: a queue lock, or the transport lock, never both (a queue's lock is released
//! before the device is notified). While interrupts are routed to the driver every lock is taken
//! with interrupts masked (through the [`IrqControl`]). No lock is held while completions run;
//! completions may submit again.
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_blk.c`, blk-mq) | here |
//! |---|---|
//! | `virtio_queue_rq` (+ `virtqueue_kick_prepare` / `notify`) | `BlockDevice::submit` |
//! | doorbell at `bd->last` (end of a plugged batch) | every `kick_batch` chains, or the next `poll` |
//! | `blk_mq_map_queues` (CPU -> hctx) | round-robin over queues with a free slot |
//! | `virtblk_poll` / `virtblk_done` | `BlockDevice::poll` / [`VirtioBlk::handle_interrupt`] |
//! | `virtio_reset_device` on remove | `Drop` (reset first, then in-flight bios fail with `EIO`) |
//!
//! Deliberate deviations: queues are not bound to CPUs (one CPU here; round-robin spreads
//! load); no request timeout (a device that never completes leaves its bios in flight, as with
//! Linux's default of no virtio-blk timeout handler); FUA is done as write + flush in the same
//! slot (see [`wire`](super::wire)).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use virtio_drivers::transport::{DeviceStatus, Transport};

use super::config::{BlkConfig, BlkFeatures};
use super::irq::{InterruptRouting, IrqControl, Locked};
use super::queue::{Drained, HwQueue, PostError, QueueState, Reaped, Request};
use super::wire::{Plan, ID_BYTES};
use crate::block::{validate, Bio, BioEnd, BioOp, BlockDevice, DeviceFeatures, DeviceInfo, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, Platform};

/// The parts of a bio the device needs, borrowed from it.
struct BioParts<'a> {
    sector: u64,
    dataless_sectors: u64,
    segments: &'a [Segment],
}

/// Completions handed to callbacks per lock hold (bounded stack use, no allocation).
const REAP_BATCH: usize = 32;

/// Counters of one hardware queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Request slots (the virtqueue size).
    pub size: usize,
    /// Bios completed through this queue.
    pub completed: u64,
    /// ... of which the interrupt handler reaped.
    pub completed_in_irq: u64,
    /// Interrupts handled for this queue.
    pub interrupts: u64,
}

/// Device-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bios accepted by `submit`.
    pub submitted: u64,
    /// Bios refused by validation (completed at once with an error).
    pub rejected: u64,
    /// Bios completed by the device path (success or error).
    pub completed: u64,
    /// ... of which the interrupt handler reaped.
    pub completed_in_irq: u64,
    /// Device notifications (doorbell writes).
    pub notifies: u64,
    /// Times `submit` found no room and polled for it.
    pub room_waits: u64,
}

#[derive(Default)]
pub(super) struct DeviceCounters {
    pub(super) submitted: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) notifies: AtomicU64,
    pub(super) room_waits: AtomicU64,
}

/// A virtio-blk device (see the module docs).
pub struct VirtioBlk<T: Transport> {
    pub(super) transport: spin::Mutex<T>,
    pub(super) queues: Box<[HwQueue]>,
    pub(super) info: DeviceInfo,
    pub(super) config: BlkConfig,
    pub(super) features: BlkFeatures,
    pub(super) serial: heapless::String<ID_BYTES>,
    pub(super) platform: Arc<dyn Platform>,
    pub(super) irq_control: Option<&'static dyn IrqControl>,
    pub(super) routing: Option<Box<dyn InterruptRouting>>,
    pub(super) kick_batch: usize,
    /// Locks are taken with interrupts masked (from just before interrupts are routed to the
    /// driver until they are routed away again).
    pub(super) mask_irqs: AtomicBool,
    pub(super) interrupts_on: AtomicBool,
    pub(super) broken: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    pub(super) next_queue: AtomicUsize,
    pub(super) room_waiters: AtomicUsize,
    pub(super) counters: DeviceCounters,
}

impl<T: Transport> VirtioBlk<T> {
    /// The interrupt masking the locks need now: none while no interrupt can reach the driver.
    pub(super) fn irq(&self) -> Option<&'static dyn IrqControl> {
        if self.mask_irqs.load(Ordering::Acquire) {
            self.irq_control
        } else {
            None
        }
    }

    pub(super) fn lock_queue<'a>(&'a self, q: &'a HwQueue) -> Locked<'a, QueueState> {
        Locked::new(&q.state, self.irq())
    }

    pub(super) fn lock_transport(&self) -> Locked<'_, T> {
        Locked::new(&self.transport, self.irq())
    }

    pub(super) fn key(&self) -> usize {
        self as *const Self as usize
    }

    pub(super) fn notify(&self, queue: u16) {
        self.lock_transport().notify(queue);
        self.counters.notifies.fetch_add(1, Ordering::Relaxed);
    }

    /// The device's configuration as read at setup.
    pub fn config(&self) -> &BlkConfig {
        &self.config
    }

    /// The negotiated features.
    pub fn features(&self) -> BlkFeatures {
        self.features
    }

    /// The GET_ID serial (empty when the device has none).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Number of hardware queues in use.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// True when requests use indirect descriptor tables.
    pub fn indirect(&self) -> bool {
        self.features.contains(BlkFeatures::RING_INDIRECT_DESC)
    }

    /// True once the device misbehaved and was reset: every bio now fails with `EIO`.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Counters of queue `queue`.
    pub fn queue_stats(&self, queue: usize) -> Option<QueueStats> {
        let q = self.queues.get(queue)?;
        Some(QueueStats {
            size: q.size,
            completed: q.counters.completed.load(Ordering::Relaxed),
            completed_in_irq: q.counters.completed_in_irq.load(Ordering::Relaxed),
            interrupts: q.counters.interrupts.load(Ordering::Relaxed),
        })
    }

    /// Device-wide counters.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            submitted: self.counters.submitted.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
            notifies: self.counters.notifies.load(Ordering::Relaxed),
            room_waits: self.counters.room_waits.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for q in self.queues.iter() {
            s.completed += q.counters.completed.load(Ordering::Relaxed);
            s.completed_in_irq += q.counters.completed_in_irq.load(Ordering::Relaxed);
        }
        s
    }

    /// The driver's own limits on top of [`validate`].
    fn check(&self, bio: &Bio) -> Result<()> {
        validate(&self.info, bio)?;
        if self.is_broken() {
            return Err(Errno::EIO);
        }
        let i = &self.info;
        match bio.op {
            BioOp::Read | BioOp::Write
                if bio.segments.len() > i.max_segments as usize
                    || bio.segments.iter().any(|s| s.len() > i.max_segment_bytes)
                    || bio.bytes() > u64::from(i.max_request_bytes) =>
            {
                return Err(Errno::EINVAL)
            }
            BioOp::Discard if bio.dataless_sectors > u64::from(i.max_discard_sectors) => {
                return Err(Errno::EINVAL)
            }
            BioOp::WriteZeroes if bio.dataless_sectors > u64::from(i.max_write_zeroes_sectors) => {
                return Err(Errno::EINVAL)
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts `bio`'s I/O on some queue with a free slot, round-robin, and notifies the device
    /// when due; on success the completion has moved out of `end` into the slot.
    fn try_start(
        &self,
        bio: &BioParts<'_>,
        end: &mut Option<BioEnd>,
        plan: Plan,
    ) -> core::result::Result<(), PostError> {
        let n = self.queues.len();
        let first = self.next_queue.fetch_add(1, Ordering::Relaxed) % n;
        let mut why = PostError::NoSlot;
        for k in 0..n {
            let q = &self.queues[(first + k) % n];
            if q.full() {
                continue;
            }
            let started = {
                let mut st = self.lock_queue(q);
                let request = Request::Bio {
                    sector: bio.sector,
                    dataless_sectors: bio.dataless_sectors,
                    segments: bio.segments,
                    end: &mut *end,
                };
                let r = st.start(request, plan).map(|()| {
                    let now = self.interrupts_enabled() || st.unkicked() >= self.kick_batch;
                    now && st.kick_prepare()
                });
                q.sync_busy(&st);
                r
            };
            match started {
                Ok(notify) => {
                    if notify {
                        self.notify(q.index);
                    }
                    return Ok(());
                }
                Err(PostError::Failed(e)) => return Err(PostError::Failed(e)),
                Err(e) => why = e,
            }
        }
        Err(why)
    }

    /// Reaps queue `q` until its used ring is empty; runs completions without locks held.
    pub(super) fn reap_queue(&self, q: &HwQueue, in_irq: bool) -> usize {
        let mut total = 0;
        loop {
            let mut batch: heapless::Vec<(BioEnd, Result<()>), REAP_BATCH> = heapless::Vec::new();
            let notify;
            let mut broken = false;
            let mut more = false;
            {
                let mut st = self.lock_queue(q);
                loop {
                    if batch.is_full() {
                        more = true;
                        break;
                    }
                    let reaped = match st.retry_stalled() {
                        Some(r) => r,
                        None => match st.reap_one() {
                            Some(r) => r,
                            None => break,
                        },
                    };
                    match reaped {
                        Reaped::Done(end, result) => {
                            let _ = batch.push((end, result));
                        }
                        Reaped::Continued => {}
                        Reaped::Stalled | Reaped::Internal => {}
                        Reaped::Broken => {
                            broken = true;
                            break;
                        }
                    }
                }
                // Tell the device about the steps posted above and anything submitted since
                // the last notification.
                notify = st.kick_prepare();
                q.sync_busy(&st);
            }
            if notify {
                self.notify(q.index);
            }
            total += self.complete(q, batch, in_irq);
            if broken {
                total += self.fail_device();
            }
            if !more {
                return total;
            }
        }
    }

    /// Accounts and runs a batch of completions (no lock held).
    fn complete(
        &self,
        q: &HwQueue,
        batch: heapless::Vec<(BioEnd, Result<()>), REAP_BATCH>,
        in_irq: bool,
    ) -> usize {
        let n = batch.len();
        if n == 0 {
            return 0;
        }
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        q.counters.completed.fetch_add(n as u64, Ordering::Relaxed);
        if in_irq {
            q.counters.completed_in_irq.fetch_add(n as u64, Ordering::Relaxed);
        }
        for (end, result) in batch {
            end.complete(result);
        }
        if self.room_waiters.load(Ordering::Acquire) > 0 {
            self.platform.unpark(self.key());
        }
        n
    }

    /// The device misbehaved: reset it (it stops touching memory) and fail everything in
    /// flight with `EIO`. Returns how many bios were failed.
    pub(super) fn fail_device(&self) -> usize {
        self.broken.store(true, Ordering::Release);
        self.lock_transport().set_status(DeviceStatus::empty());
        let mut total = 0;
        for q in self.queues.iter() {
            loop {
                let mut batch: heapless::Vec<(BioEnd, Result<()>), REAP_BATCH> = heapless::Vec::new();
                {
                    let mut st = self.lock_queue(q);
                    st.broken = true;
                    let mut had_id = false;
                    st.drain_some(REAP_BATCH, |drained| match drained {
                        Drained::Bio(end) => {
                            let _ = batch.push((end, Err(Errno::EIO)));
                        }
                        Drained::GetId => had_id = true,
                    });
                    if had_id {
                        st.id = Some(Err(Errno::EIO));
                    }
                    q.sync_busy(&st);
                }
                if batch.is_empty() {
                    break;
                }
                total += self.complete(q, batch, false);
            }
        }
        total
    }

    /// Notifies the device of chains posted on `q` and not yet notified.
    fn kick(&self, q: &HwQueue) {
        let notify = {
            let mut st = self.lock_queue(q);
            let n = st.kick_prepare();
            q.sync_busy(&st);
            n
        };
        if notify {
            self.notify(q.index);
        }
    }

    fn has_room(&self) -> bool {
        self.queues.iter().any(|q| !q.full())
    }
}

impl<T: Transport + Send> BlockDevice for VirtioBlk<T> {
    fn info(&self) -> DeviceInfo {
        self.info
    }

    fn submit(&self, bio: Bio) {
        if let Err(e) = self.check(&bio) {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            bio.end.complete(Err(e));
            return;
        }
        let plan = Plan::for_bio(&bio, self.info.features.contains(DeviceFeatures::FLUSH));
        if plan.is_empty() {
            bio.end.complete(Ok(()));
            return;
        }
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        // The bio's position and segments are borrowed (the slot copies the segments in use);
        // only its completion moves. A bio is never moved whole: it is 1.6 KiB.
        let parts =
            BioParts { sector: bio.sector, dataless_sectors: bio.dataless_sectors, segments: &bio.segments };
        let mut end = Some(bio.end);
        loop {
            match self.try_start(&parts, &mut end, plan) {
                Ok(()) => return,
                Err(PostError::NoSlot | PostError::RingFull) => {
                    self.counters.room_waits.fetch_add(1, Ordering::Relaxed);
                    if self.poll() == 0 {
                        self.room_waiters.fetch_add(1, Ordering::AcqRel);
                        wait_until(
                            &*self.platform,
                            self.key(),
                            &|| self.has_room() || self.is_broken(),
                            &|| {
                                self.poll();
                            },
                        );
                        self.room_waiters.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                Err(e) => {
                    let e = match e {
                        PostError::Failed(e) => e,
                        _ => Errno::EIO,
                    };
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    if let Some(end) = end.take() {
                        end.complete(Err(e));
                    }
                    return;
                }
            }
        }
    }

    fn poll(&self) -> usize {
        let mut n = 0;
        for q in self.queues.iter() {
            if !q.idle() {
                n += self.reap_queue(q, false);
            }
            // Completions may have submitted more.
            if q.unkicked.load(Ordering::Acquire) > 0 {
                self.kick(q);
            }
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl<T: Transport> Drop for VirtioBlk<T> {
    fn drop(&mut self) {
        // Reset first: afterwards the device no longer reads or writes any of our memory.
        self.fail_device();
        for q in self.queues.iter_mut() {
            if let Some(run) = q.dma.take() {
                // SAFETY: the run came from this platform and the device was reset above, so
                // nothing accesses the slot areas any more.
                unsafe { self.platform.free_pages(run) };
            }
        }
    }
}
