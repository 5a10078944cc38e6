//! Device setup: virtio 1.2 3.1.1 initialisation of a virtio-blk device into a [`VirtioBlk`]:
//! reset, feature negotiation (checked through `FEATURES_OK`), configuration read, one
//! virtqueue per hardware queue at the size the device offers with its request slots and their
//! DMA areas, `DRIVER_OK`, then GET_ID (the serial).
//!
//! Owns the [`Options`] and the probe-time checks: a logical block size or queue the driver
//! cannot use is refused, the kernel's `Hal` must translate addresses exactly as its `Platform`
//! does (checked on the driver's own DMA memory), and a device that does not answer GET_ID
//! within [`Options::probe_timeout_ns`] is reset and refused. No locks of its own: the device
//! is not shared until `new` returns.
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_blk.c`) | here |
//! |---|---|
//! | `virtblk_probe` / `init_vq` | [`VirtioBlk::new`] |
//! | `virtblk_get_id` (sysfs `serial`) | GET_ID at probe, [`VirtioBlk::serial`] |
//! | `virtio_blk` module parameters (`queue_depth`, `num_request_queues`, `poll_queues`) | [`Options`] |

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize};

use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal};

use super::config::{derive_info, BlkConfig, BlkFeatures, DRIVER_FEATURES};
use super::device::{DeviceCounters, VirtioBlk};
use super::irq::{InterruptRouting, IrqControl};
use super::queue::{HwQueue, PostError, QueueCounters, QueueState, Request};
use super::ring::{new_ring, pick_size};
use super::wire::{Plan, Step, ID_BYTES, SLOT_DMA_BYTES};
use crate::errno::{Errno, Result};
use crate::platform::{wait_until, Platform, PAGE_SIZE};

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
        // Zeroed: the slots' headers and status bytes start from a known state.
        let run = platform.alloc_pages_zeroed(order_for(bytes)).ok_or(Errno::ENOMEM)?;
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
}
