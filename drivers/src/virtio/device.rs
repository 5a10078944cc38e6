//! [`VirtioBlk`]: device setup and the [`BlockDevice`] implementation across hardware queues.
//!
//! Owns: the transport (under a spin lock: notifications, reset, interrupt routing), the
//! hardware queues, the device facts, and the device-wide counters. Setup follows virtio 1.2
//! 3.1.1: reset, feature negotiation (checked through `FEATURES_OK`), configuration read,
//! one virtqueue per hardware queue at the size the device offers, `DRIVER_OK`, then GET_ID.
//!
//! Submission validates the bio against the device's own limits ([`validate`] plus segment
//! count, segment size, request size and discard / write-zeroes sizes: anything beyond them is
//! `EINVAL`), picks a queue round-robin among those with a free slot, and posts the bio's first
//! step. When every slot is busy it polls until one frees (the contract's "submit makes room by
//! polling"). Completion is by polling ([`BlockDevice::poll`] reaps every busy queue) and,
//! optionally, by interrupt ([`VirtioBlk::handle_interrupt`]).
//!
//! Doorbells are batched while polling: a queue's device is notified once
//! [`Options::kick_batch`] chains are posted, or by the next `poll` (every waiter polls, so a
//! lone bio is notified by its first wait). Under QEMU's TCG a doorbell is a synchronous trip
//! into the device model, so batching is what makes queue depth pay; with interrupts on, every
//! submission notifies (nobody may poll).
//!
//! Lock order: a queue lock, or the transport lock, never both (a queue's lock is released
//! before the device is notified). With an [`IrqControl`] every lock is taken with interrupts
//! masked. No lock is held while completions run; completions may submit again.
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_blk.c`, blk-mq) | here |
//! |---|---|
//! | `virtblk_probe` / `init_vq` | [`VirtioBlk::new`] |
//! | `virtio_queue_rq` (+ `virtqueue_kick_prepare` / `notify`) | `BlockDevice::submit` |
//! | doorbell at `bd->last` (end of a plugged batch) | every `kick_batch` chains, or the next `poll` |
//! | `blk_mq_map_queues` (CPU -> hctx) | round-robin over queues with a free slot |
//! | `virtblk_poll` / `virtblk_done` | `BlockDevice::poll` / [`VirtioBlk::handle_interrupt`] |
//! | `virtblk_get_id` (sysfs `serial`) | [`VirtioBlk::serial`], read once at probe |
//! | `virtio_reset_device` on remove | `Drop` (reset first, then in-flight bios fail with `EIO`) |
//!
//! Deliberate deviations: queues are not bound to CPUs (one CPU here; round-robin spreads
//! load); no request timeout (a device that never completes leaves its bios in flight, as with
//! Linux's default of no virtio-blk timeout handler); FUA is done as write + flush in the same
//! slot (see [`wire`](super::wire)).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal};

use super::config::{derive_info, BlkConfig, BlkFeatures, DRIVER_FEATURES};
use super::irq::{InterruptRouting, IrqControl, Locked, MsiMessage};
use super::queue::{Drained, HwQueue, PostError, QueueCounters, QueueState, Reaped, Request};
use super::ring::{new_ring, pick_size};
use super::wire::{Plan, Step, ID_BYTES, SLOT_DMA_BYTES};
use crate::block::{validate, Bio, BioEnd, BioOp, BlockDevice, DeviceFeatures, DeviceInfo, Segment};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, Platform, PAGE_SIZE};

/// The parts of a bio the device needs, borrowed from it.
struct BioParts<'a> {
    sector: u64,
    dataless_sectors: u64,
    segments: &'a [Segment],
}

/// Completions handed to callbacks per lock hold (bounded stack use, no allocation).
const REAP_BATCH: usize = 32;

/// How the driver sets a device up.
pub struct Options {
    /// Most hardware queues to use (the device may offer more). Default 16.
    pub max_queues: u16,
    /// Largest queue size to use (the device's offer is used up to this and
    /// [`MAX_QUEUE_SIZE`](super::MAX_QUEUE_SIZE)). Default 1024.
    pub max_queue_size: u16,
    /// Use indirect descriptors when offered (one descriptor per request whatever its segment
    /// count; virtio-drivers allocates each indirect table). Default true.
    pub indirect: bool,
    /// How to mask interrupts around the driver's locks. Required for
    /// [`VirtioBlk::enable_interrupts`]; costs two flag saves per lock otherwise.
    pub irq_control: Option<&'static dyn IrqControl>,
    /// How to route queue interrupts (PCI: [`PciMsix`](super::PciMsix)).
    pub routing: Option<Box<dyn InterruptRouting>>,
    /// How long setup waits for GET_ID before declaring the device dead. Default 2 s.
    pub probe_timeout_ns: u64,
    /// With completion by polling, the device is notified once this many chains are posted on
    /// a queue, or by the next `poll` (Linux: the doorbell at the end of a plugged batch,
    /// `bd->last`). 1 notifies at every submission. With interrupts on, every submission
    /// notifies. Default 16.
    pub kick_batch: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_queues: 16,
            max_queue_size: 1024,
            indirect: true,
            irq_control: None,
            routing: None,
            probe_timeout_ns: 2_000_000_000,
            kick_batch: 16,
        }
    }
}

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
struct DeviceCounters {
    submitted: AtomicU64,
    rejected: AtomicU64,
    notifies: AtomicU64,
    room_waits: AtomicU64,
}

/// A virtio-blk device (see the module docs).
pub struct VirtioBlk<T: Transport> {
    transport: spin::Mutex<T>,
    queues: Box<[HwQueue]>,
    info: DeviceInfo,
    config: BlkConfig,
    features: BlkFeatures,
    serial: heapless::String<ID_BYTES>,
    platform: Arc<dyn Platform>,
    irq_control: Option<&'static dyn IrqControl>,
    routing: Option<Box<dyn InterruptRouting>>,
    kick_batch: usize,
    /// Locks are taken with interrupts masked (from just before interrupts are routed to the
    /// driver until they are routed away again).
    mask_irqs: AtomicBool,
    interrupts_on: AtomicBool,
    broken: AtomicBool,
    in_flight: AtomicUsize,
    next_queue: AtomicUsize,
    room_waiters: AtomicUsize,
    counters: DeviceCounters,
}

/// The order of the page run holding `bytes`.
fn order_for(bytes: usize) -> u32 {
    bytes.div_ceil(PAGE_SIZE).max(1).next_power_of_two().trailing_zeros()
}

/// Frees the slot DMA areas of queues the device never used.
fn release_queues(platform: &dyn Platform, queues: &mut [HwQueue]) {
    for q in queues {
        if let Some(run) = q.dma.take() {
            // SAFETY: from this platform; no request was ever posted on these queues.
            unsafe { platform.free_pages(run) };
        }
    }
}

/// The serial as text: up to the first NUL, non-printable bytes as `?`.
fn serial_text(id: &[u8; ID_BYTES]) -> heapless::String<ID_BYTES> {
    let mut s = heapless::String::new();
    for &b in id.iter().take_while(|&&b| b != 0) {
        let _ = s.push(if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' });
    }
    s
}

impl<T: Transport> VirtioBlk<T> {
    /// Sets up the virtio-blk device behind `transport` (which must not have been initialised
    /// by another driver since its last reset). `H` is the kernel's virtio-drivers `Hal`; its
    /// `share` translation must equal `platform`'s [`Platform::dma_address`] for every buffer
    /// (checked once here on the driver's own DMA memory; data segments carry their physical
    /// address, but virtio-drivers' `VirtQueue::add` takes virtual slices and translates them
    /// through `Hal::share`).
    pub fn new<H: Hal + 'static>(
        mut transport: T,
        platform: Arc<dyn Platform>,
        options: Options,
    ) -> Result<Self> {
        if transport.device_type() != DeviceType::Block {
            return Err(Errno::ENODEV);
        }
        let mut wanted = DRIVER_FEATURES;
        if !options.indirect {
            wanted.remove(BlkFeatures::RING_INDIRECT_DESC);
        }
        let features = transport.begin_init(wanted);
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            transport.set_status(DeviceStatus::FAILED);
            return Err(Errno::ENODEV);
        }
        let config = BlkConfig::read(&transport, features)?;
        let count = if features.contains(BlkFeatures::MQ) {
            config.num_queues.clamp(1, options.max_queues.max(1))
        } else {
            1
        };
        let indirect = features.contains(BlkFeatures::RING_INDIRECT_DESC);
        let mut sizes: heapless::Vec<u16, 64> = heapless::Vec::new();
        for index in 0..count.min(64) {
            let size =
                pick_size(transport.max_queue_size(index), options.max_queue_size).ok_or(Errno::ENODEV)?;
            let _ = sizes.push(size);
        }
        let min_size = sizes.iter().copied().min().ok_or(Errno::ENODEV)?;
        let info = derive_info(&config, features, min_size, sizes.len() as u16)?;
        let mut queues = Vec::new();
        queues.try_reserve_exact(sizes.len()).map_err(|_| Errno::ENOMEM)?;
        for (index, &size) in sizes.iter().enumerate() {
            match Self::new_queue::<H>(&mut transport, &platform, index as u16, size, indirect) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    // Nothing was posted: the device has not touched any of this memory.
                    release_queues(&*platform, &mut queues);
                    return Err(e);
                }
            }
        }
        // From here `dev` owns everything, and its Drop resets the device before freeing.
        let mut dev = Self {
            transport: spin::Mutex::new(transport),
            queues: queues.into_boxed_slice(),
            info,
            config,
            features,
            serial: heapless::String::new(),
            platform,
            irq_control: options.irq_control,
            routing: options.routing,
            kick_batch: usize::from(options.kick_batch.max(1)),
            mask_irqs: AtomicBool::new(false),
            interrupts_on: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            next_queue: AtomicUsize::new(0),
            room_waiters: AtomicUsize::new(0),
            counters: DeviceCounters::default(),
        };
        dev.transport.get_mut().finish_init();
        for q in dev.queues.iter() {
            dev.lock_queue(q).set_interrupts(false);
        }
        // GET_ID: a device that does not support it answers UNSUPP (no serial); one that does
        // not answer at all is dead.
        match dev.request_id(options.probe_timeout_ns) {
            Ok(id) => dev.serial = serial_text(&id),
            Err(Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
        Ok(dev)
    }

    /// Sets up hardware queue `index` with `size` slots and their DMA areas.
    fn new_queue<H: Hal + 'static>(
        transport: &mut T,
        platform: &Arc<dyn Platform>,
        index: u16,
        size: u16,
        indirect: bool,
    ) -> Result<HwQueue> {
        let ring = new_ring::<H, T>(transport, index, size, indirect)?;
        let bytes = size as usize * SLOT_DMA_BYTES;
        let run = platform.alloc_pages(order_for(bytes)).ok_or(Errno::ENOMEM)?;
        // SAFETY: a fresh run of at least `bytes` bytes, exclusively ours.
        unsafe { core::ptr::write_bytes(run.virt().as_ptr(), 0, run.len()) };
        let area = core::ptr::NonNull::slice_from_raw_parts(run.virt(), run.len());
        // SAFETY: the run is valid and unused by any device; sharing memory the HAL can
        // translate and unsharing it at once has no lasting effect.
        let shared = unsafe { H::share(area, BufferDirection::DriverToDevice) };
        // SAFETY: the buffer just shared, unchanged.
        unsafe { H::unshare(shared, area, BufferDirection::DriverToDevice) };
        if shared != run.phys() || platform.dma_address(run.virt().as_ptr(), run.len()) != Some(run.phys()) {
            // The Hal and the Platform disagree on where memory is: data would go astray.
            // SAFETY: never shared with the device.
            unsafe { platform.free_pages(run) };
            return Err(Errno::EINVAL);
        }
        // SAFETY: the run holds size * SLOT_DMA_BYTES bytes of DMA-able memory, owned by the
        // HwQueue built here for the state's lifetime (freed only after a device reset).
        match unsafe { QueueState::new(ring, run.virt()) } {
            Ok(state) => Ok(HwQueue {
                index,
                state: spin::Mutex::new(state),
                busy: AtomicUsize::new(0),
                unkicked: AtomicUsize::new(0),
                size: size as usize,
                counters: QueueCounters::default(),
                dma: Some(run),
            }),
            Err(e) => {
                // SAFETY: never shared with the device.
                unsafe { platform.free_pages(run) };
                Err(e)
            }
        }
    }

    /// The interrupt masking the locks need now: none while no interrupt can reach the driver.
    fn irq(&self) -> Option<&'static dyn IrqControl> {
        if self.mask_irqs.load(Ordering::Acquire) {
            self.irq_control
        } else {
            None
        }
    }

    fn lock_queue<'a>(&'a self, q: &'a HwQueue) -> Locked<'a, QueueState> {
        Locked::new(&q.state, self.irq())
    }

    fn lock_transport(&self) -> Locked<'_, T> {
        Locked::new(&self.transport, self.irq())
    }

    fn key(&self) -> usize {
        self as *const Self as usize
    }

    fn notify(&self, queue: u16) {
        self.lock_transport().notify(queue);
        self.counters.notifies.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends GET_ID on queue 0 and waits (polling) up to `timeout_ns` for the answer.
    fn request_id(&self, timeout_ns: u64) -> Result<[u8; ID_BYTES]> {
        let q = &self.queues[0];
        let notify = {
            let mut st = self.lock_queue(q);
            st.id = None;
            st.start(Request::GetId, Plan::of(&[Step::GetId])).map_err(|e| match e {
                PostError::Failed(e) => e,
                _ => Errno::EBUSY,
            })?;
            let notify = st.kick_prepare();
            q.sync_busy(&st);
            notify
        };
        if notify {
            self.notify(q.index);
        }
        let deadline = self.platform.now_ns().saturating_add(timeout_ns);
        let answered = || self.lock_queue(q).id.is_some();
        wait_until(&*self.platform, self.key(), &|| answered() || self.platform.now_ns() > deadline, &|| {
            self.reap_queue(q, false);
        });
        let id = self.lock_queue(q).id.take();
        match id {
            Some(r) => r,
            None => {
                self.fail_device();
                Err(Errno::EIO)
            }
        }
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

    /// True while completions are signalled by interrupt.
    pub fn interrupts_enabled(&self) -> bool {
        self.interrupts_on.load(Ordering::Acquire)
    }

    /// Switches on interrupt-driven completion: queue `i` signals `messages[i % len]`. Needs
    /// [`Options::irq_control`] and [`Options::routing`] (`EOPNOTSUPP` without routing,
    /// `EINVAL` without interrupt control or messages). Polling keeps working alongside.
    pub fn enable_interrupts(&self, messages: &[MsiMessage]) -> Result<()> {
        let routing = self.routing.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        if self.irq_control.is_none() || messages.is_empty() {
            return Err(Errno::EINVAL);
        }
        // From now on every lock is taken with interrupts masked. Taking each lock once more
        // waits out any holder (on another CPU) that took it unmasked; only then can an
        // interrupt reach a handler that takes them.
        self.mask_irqs.store(true, Ordering::SeqCst);
        for q in self.queues.iter() {
            drop(self.lock_queue(q));
        }
        {
            let _transport = self.lock_transport();
            for (i, q) in self.queues.iter().enumerate() {
                if let Err(e) = routing.route(q.index, Some(messages[i % messages.len()])) {
                    for undo in &self.queues[..=i] {
                        let _ = routing.route(undo.index, None);
                    }
                    drop(_transport);
                    self.mask_irqs.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        for q in self.queues.iter() {
            self.lock_queue(q).set_interrupts(true);
        }
        self.interrupts_on.store(true, Ordering::Release);
        Ok(())
    }

    /// Switches interrupts off again (completion by polling only).
    pub fn disable_interrupts(&self) {
        self.interrupts_on.store(false, Ordering::SeqCst);
        for q in self.queues.iter() {
            self.lock_queue(q).set_interrupts(false);
        }
        if let Some(routing) = &self.routing {
            let _transport = self.lock_transport();
            for q in self.queues.iter() {
                let _ = routing.route(q.index, None);
            }
        }
        // A message already on its way finds `interrupts_on` false and takes no lock.
        self.mask_irqs.store(false, Ordering::SeqCst);
    }

    /// The interrupt handler's work for queue `queue`: reaps it and runs its completions (in
    /// interrupt context). Returns how many bios completed; does nothing (and takes no lock)
    /// unless interrupts are enabled.
    pub fn handle_interrupt(&self, queue: usize) -> usize {
        if !self.interrupts_on.load(Ordering::SeqCst) {
            return 0;
        }
        let Some(q) = self.queues.get(queue) else { return 0 };
        q.counters.interrupts.fetch_add(1, Ordering::Relaxed);
        self.reap_queue(q, true)
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
    fn reap_queue(&self, q: &HwQueue, in_irq: bool) -> usize {
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
    fn fail_device(&self) -> usize {
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
