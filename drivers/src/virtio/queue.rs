//! One hardware queue: its virtqueue, its request slots, and the steps that move a bio through
//! them.
//!
//! Owns: the [`Ring`], a fixed table of request [`Slot`]s (allocated once at probe: per request
//! nothing is allocated here), each slot's 64-byte DMA area (header, discard range, status,
//! GET_ID buffer) carved from one page run of the `Platform`, the free-slot stack and the
//! token -> slot map (`heapless`, capacity [`MAX_QUEUE_SIZE`]).
//!
//! A bio takes one slot for its whole life, even when its [`Plan`] has several steps
//! (PREFLUSH, data, FUA flush): each step is one descriptor chain; when a step completes
//! successfully the next one is posted from the completion path.
//!
//! Lock order: the queue's lock (taken by the device, interrupts masked when configured) is
//! never held while completions run or while the transport is notified.
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_blk.c`, blk-mq) | here |
//! |---|---|
//! | `struct virtio_blk_vq` (one per hardware queue) + its lock | [`HwQueue`] |
//! | blk-mq tags (`queue_depth` requests per hctx) | slots: free stack + token map |
//! | `virtblk_add_req` (`virtqueue_add_sgs`) | `QueueState::start` / `post` |
//! | `virtblk_done` loop over `virtqueue_get_buf` | `QueueState::reap_one` |
//! | `BLK_STS_DEV_RESOURCE` (ring full) | [`PostError::RingFull`]: the submitter polls and retries |
//!
//! Deliberate deviation: a used-ring entry for a token the driver did not post marks the queue
//! broken (the device is then reset and every request fails with `EIO`) instead of Linux's
//! `BAD_RING` warning.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::ring::{Ring, MAX_QUEUE_SIZE};
use super::wire::{self, Plan, Step, ID_BYTES, SLOT_DMA_BYTES};
use crate::block::{BioEnd, Segment, BIO_MAX_SEGMENTS};
use crate::errno::{Errno, Result};
use crate::platform::PageRun;

/// Most descriptors in one chain: header, data segments, status.
const MAX_CHAIN: usize = BIO_MAX_SEGMENTS + 2;
const NO_SLOT: u16 = u16::MAX;

/// What a slot is asked to carry.
pub(crate) enum Request<'a> {
    /// A bio's I/O: its position, its segments, and its completion (taken on success).
    Bio {
        /// Start sector.
        sector: u64,
        /// Length of a DISCARD / WRITE_ZEROES.
        dataless_sectors: u64,
        /// Data segments.
        segments: &'a [Segment],
        /// The completion; moved into the slot when the request starts.
        end: &'a mut Option<BioEnd>,
    },
    /// The driver's own GET_ID at probe time.
    GetId,
}

/// Who a slot works for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Bio,
    GetId,
}

/// What `drain_some` hands back for a slot cut short by a device reset.
pub(crate) enum Drained {
    /// A bio's completion.
    Bio(BioEnd),
    /// The driver's GET_ID.
    GetId,
}

/// One request slot. It keeps a copy of what the device needs of the bio (position and the
/// segments in use: a bio is 1.6 KiB with its inline segment array, so it is never moved whole)
/// and the bio's completion.
pub(crate) struct Slot {
    owner: Option<Owner>,
    end: Option<BioEnd>,
    sector: u64,
    dataless_sectors: u64,
    segments: heapless::Vec<Segment, BIO_MAX_SEGMENTS>,
    plan: Plan,
}

impl Slot {
    fn empty() -> Self {
        Slot {
            owner: None,
            end: None,
            sector: 0,
            dataless_sectors: 0,
            segments: heapless::Vec::new(),
            plan: Plan::of(&[]),
        }
    }
}

/// Why a request could not be posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PostError {
    /// Every slot is busy.
    NoSlot,
    /// The ring has too few free descriptors for this chain (direct descriptors only).
    RingFull,
    /// The request cannot be done (the error it completes with).
    Failed(Errno),
    /// The ring's bookkeeping disagrees with ours: the queue is unusable.
    Broken,
}

/// What one reaped used-ring entry amounted to.
pub(crate) enum Reaped {
    /// A bio finished: its completion and outcome.
    Done(BioEnd, Result<()>),
    /// A step finished and the bio's next step was posted: notify the device.
    Continued,
    /// A step finished; the next one waits for free descriptors.
    Stalled,
    /// The driver's own request finished (its result is in `QueueState::id`).
    Internal,
    /// The device handed back something the driver never posted: the queue is unusable.
    Broken,
}

/// The lock-protected part of a hardware queue.
pub(crate) struct QueueState {
    ring: Box<dyn Ring>,
    slots: Box<[Slot]>,
    free: heapless::Vec<u16, MAX_QUEUE_SIZE>,
    by_token: Box<[u16]>,
    /// Slots whose next step is waiting for descriptors, oldest first.
    stalled: heapless::Deque<u16, MAX_QUEUE_SIZE>,
    dma: NonNull<u8>,
    /// Set once the device misbehaved; everything then fails with `EIO`.
    pub(crate) broken: bool,
    /// The answer of the last GET_ID.
    pub(crate) id: Option<Result<[u8; ID_BYTES]>>,
    /// Chains posted since the device was last notified.
    unkicked: usize,
}

// SAFETY: `dma` points into a page run owned by the enclosing HwQueue for the queue's lifetime;
// it is only accessed under the queue lock. Everything else is Send.
unsafe impl Send for QueueState {}

/// Runs `f` on the buffer lists of `step` for a slot whose DMA area is `area` (device-readable
/// buffers first, then device-writable ones, as `Ring::add` takes them).
///
/// # Safety
///
/// `area` is a live slot DMA area, `segments` (for data steps) are lent to the device until the
/// step's chain is popped, and nothing else accesses these buffers while `f` runs.
unsafe fn with_buffers<R>(
    area: NonNull<u8>,
    step: Step,
    segments: &[Segment],
    f: impl for<'s> FnOnce(&'s [&'s [u8]], &'s mut [&'s mut [u8]]) -> R,
) -> R {
    let base = area.as_ptr();
    // The slices below do not outlive this call. Slot-area offsets are in range by the wire
    // constants' assertion (the area is SLOT_DMA_BYTES long).
    // SAFETY: the caller guarantees the slot area is live and otherwise untouched.
    let header: &[u8] = unsafe { core::slice::from_raw_parts(base.add(wire::OFF_HEADER), 16) };
    // SAFETY: as above; the status byte does not overlap the header.
    let status: &mut [u8] = unsafe { core::slice::from_raw_parts_mut(base.add(wire::OFF_STATUS), 1) };
    // Collections without a destructor (`ManuallyDrop`; references need none): the chain's
    // buffers must be borrowed for exactly as long as the lists themselves (virtio-drivers'
    // `pop_used` takes both at one lifetime), and a destructor would use them at scope end.
    // heapless leaves unused capacity uninitialised, so building the lists costs nothing extra.
    let mut ins: ManuallyDrop<heapless::Vec<&[u8], MAX_CHAIN>> = ManuallyDrop::new(heapless::Vec::new());
    let mut outs: ManuallyDrop<heapless::Vec<&mut [u8], MAX_CHAIN>> = ManuallyDrop::new(heapless::Vec::new());
    let _ = ins.push(header);
    // Segments are at most BIO_MAX_SEGMENTS = MAX_CHAIN - 2, so the lists fit.
    match step {
        Step::Flush => {}
        Step::Read => {
            for s in segments {
                // SAFETY: Segment::new's contract: valid, exclusively lent until completion.
                let _ = outs
                    .push(unsafe { core::slice::from_raw_parts_mut(s.virt().as_ptr(), s.len() as usize) });
            }
        }
        Step::Write => {
            for s in segments {
                // SAFETY: Segment::new's contract: valid and unchanged until completion.
                let _ = ins.push(unsafe { core::slice::from_raw_parts(s.virt().as_ptr(), s.len() as usize) });
            }
        }
        Step::Discard | Step::WriteZeroes => {
            // SAFETY: the slot area, as for the header; the range field is disjoint from it.
            let _ = ins.push(unsafe { core::slice::from_raw_parts(base.add(wire::OFF_RANGE), 16) });
        }
        Step::GetId => {
            // SAFETY: the slot area; the id field is disjoint from header and status.
            let _ = outs.push(unsafe { core::slice::from_raw_parts_mut(base.add(wire::OFF_ID), ID_BYTES) });
        }
    }
    let _ = outs.push(status);
    f(&ins, &mut outs)
}

/// Writes `step`'s header (and range) for slot `s` into `area`, marks the status unwritten and
/// adds the chain to `ring`; records `slot` under the returned token in `by_token`.
fn post_chain(
    ring: &mut dyn Ring,
    by_token: &mut [u16],
    slot: u16,
    area: NonNull<u8>,
    step: Step,
    s: &Slot,
) -> core::result::Result<u16, PostError> {
    let header = wire::encode_header(step.kind(), if step.uses_sector() { s.sector } else { 0 });
    let range = match step {
        Step::Discard | Step::WriteZeroes => {
            let n = u32::try_from(s.dataless_sectors).map_err(|_| PostError::Failed(Errno::EINVAL))?;
            Some(wire::encode_range(s.sector, n, false))
        }
        _ => None,
    };
    // SAFETY: the slot's DMA area is ours (none of its chains is posted) and SLOT_DMA_BYTES long.
    unsafe {
        core::ptr::copy_nonoverlapping(header.as_ptr(), area.as_ptr().add(wire::OFF_HEADER), 16);
        if let Some(r) = range {
            core::ptr::copy_nonoverlapping(r.as_ptr(), area.as_ptr().add(wire::OFF_RANGE), 16);
        }
        core::ptr::write_volatile(area.as_ptr().add(wire::OFF_STATUS), wire::S_UNWRITTEN);
    }
    // SAFETY: the area is this slot's; the segments' memory is lent to the device until the
    // bio completes (Segment::new's contract); the chain is popped with the same buffers in
    // `reap_one`.
    let added = unsafe { with_buffers(area, step, &s.segments, |i, o| ring.add(i, o)) };
    match added {
        Ok(token) => match by_token.get_mut(token as usize) {
            Some(t) if *t == NO_SLOT => {
                *t = slot;
                Ok(token)
            }
            // A token already in flight or out of range: bookkeeping can no longer be trusted.
            _ => Err(PostError::Broken),
        },
        Err(virtio_drivers::Error::QueueFull) => Err(PostError::RingFull),
        Err(_) => Err(PostError::Failed(Errno::EIO)),
    }
}

impl QueueState {
    /// A queue over `ring` whose slot DMA areas live at `dma` (`ring.size() * SLOT_DMA_BYTES`
    /// bytes).
    ///
    /// # Safety
    ///
    /// `dma` is valid, DMA-able memory of that size, owned by the caller for the lifetime of
    /// this state and not otherwise accessed.
    pub(crate) unsafe fn new(ring: Box<dyn Ring>, dma: NonNull<u8>) -> Result<Self> {
        let size = ring.size() as usize;
        if size > MAX_QUEUE_SIZE {
            return Err(Errno::EINVAL);
        }
        let mut slots = Vec::new();
        slots.try_reserve_exact(size).map_err(|_| Errno::ENOMEM)?;
        slots.extend((0..size).map(|_| Slot::empty()));
        let mut by_token = Vec::new();
        by_token.try_reserve_exact(size).map_err(|_| Errno::ENOMEM)?;
        by_token.resize(size, NO_SLOT);
        let mut free = heapless::Vec::new();
        // Pop order hands out slot 0 first.
        for i in (0..size as u16).rev() {
            let _ = free.push(i);
        }
        Ok(Self {
            ring,
            slots: slots.into_boxed_slice(),
            free,
            by_token: by_token.into_boxed_slice(),
            stalled: heapless::Deque::new(),
            dma,
            broken: false,
            id: None,
            unkicked: 0,
        })
    }

    /// Slots in use.
    pub(crate) fn busy(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn area(&self, slot: u16) -> NonNull<u8> {
        // SAFETY: slot < size, and the DMA region holds size * SLOT_DMA_BYTES bytes.
        unsafe { self.dma.add(slot as usize * SLOT_DMA_BYTES) }
    }

    /// Asks the device for (or to suppress) interrupts on this queue.
    pub(crate) fn set_interrupts(&mut self, on: bool) {
        self.ring.set_interrupts(on);
    }

    /// Chains posted since the last [`QueueState::kick_prepare`].
    pub(crate) fn unkicked(&self) -> usize {
        self.unkicked
    }

    /// Marks everything posted so far as told to the device; returns whether the device wants
    /// a notification for it (Linux `virtqueue_kick_prepare`).
    pub(crate) fn kick_prepare(&mut self) -> bool {
        if self.unkicked == 0 {
            return false;
        }
        self.unkicked = 0;
        // virtio_mb() before reading the device's flags: the avail index store must be visible
        // before we decide the device need not be told.
        core::sync::atomic::fence(Ordering::SeqCst);
        self.ring.should_notify()
    }

    fn post_failed(&mut self, e: PostError) -> PostError {
        if e == PostError::Broken {
            self.broken = true;
            return PostError::Failed(Errno::EIO);
        }
        e
    }

    /// Posts the current step of `slot`.
    fn post_owned(&mut self, slot: u16) -> core::result::Result<(), PostError> {
        let area = self.area(slot);
        let QueueState { ring, slots, by_token, .. } = &mut *self;
        let s = &slots[slot as usize];
        let Some(step) = s.plan.current() else { return Err(PostError::Failed(Errno::EIO)) };
        match post_chain(&mut **ring, by_token, slot, area, step, s) {
            Ok(_) => {
                self.unkicked += 1;
                Ok(())
            }
            Err(e) => Err(self.post_failed(e)),
        }
    }

    /// Starts `request` with `plan` (non-empty) in a free slot. On success a bio's completion
    /// has moved into the slot (on failure it is still in the request).
    pub(crate) fn start(&mut self, request: Request<'_>, plan: Plan) -> core::result::Result<(), PostError> {
        if self.broken {
            return Err(PostError::Failed(Errno::EIO));
        }
        if plan.current().is_none() {
            return Err(PostError::Failed(Errno::EINVAL));
        }
        if !self.stalled.is_empty() {
            // Older requests wait for descriptors first.
            return Err(PostError::RingFull);
        }
        let Some(slot) = self.free.pop() else { return Err(PostError::NoSlot) };
        let s = &mut self.slots[slot as usize];
        s.plan = plan;
        s.segments.clear();
        let end = match request {
            Request::Bio { sector, dataless_sectors, segments, end } => {
                s.owner = Some(Owner::Bio);
                s.sector = sector;
                s.dataless_sectors = dataless_sectors;
                // Validation bounds the count to the slot's capacity.
                let _ = s.segments.extend_from_slice(segments);
                Some(end)
            }
            Request::GetId => {
                s.owner = Some(Owner::GetId);
                s.sector = 0;
                s.dataless_sectors = 0;
                None
            }
        };
        match self.post_owned(slot) {
            Ok(()) => {
                if let Some(end) = end {
                    self.slots[slot as usize].end = end.take();
                }
                Ok(())
            }
            Err(e) => {
                self.slots[slot as usize].owner = None;
                let _ = self.free.push(slot);
                Err(e)
            }
        }
    }

    /// Finishes slot `slot` with `result`: hands back the bio's completion (or records the
    /// GET_ID answer) and frees the slot.
    fn finish(&mut self, slot: u16, result: Result<()>) -> Reaped {
        let area = self.area(slot);
        let s = &mut self.slots[slot as usize];
        let reaped = match (s.owner.take(), s.end.take()) {
            (Some(Owner::Bio), Some(end)) => Reaped::Done(end, result),
            (Some(Owner::GetId), _) => {
                let mut id = [0u8; ID_BYTES];
                // SAFETY: the chain was popped: the device is done with the area.
                unsafe {
                    core::ptr::copy_nonoverlapping(area.as_ptr().add(wire::OFF_ID), id.as_mut_ptr(), ID_BYTES)
                };
                self.id = Some(result.map(|()| id));
                Reaped::Internal
            }
            _ => {
                self.broken = true;
                return Reaped::Broken;
            }
        };
        s.segments.clear();
        let _ = self.free.push(slot);
        reaped
    }

    /// Posts the current step of `slot` after its previous step succeeded.
    fn continue_slot(&mut self, slot: u16) -> Reaped {
        if self.slots[slot as usize].plan.current().is_none() {
            return self.finish(slot, Ok(()));
        }
        match self.post_owned(slot) {
            Ok(()) => Reaped::Continued,
            Err(PostError::RingFull) if self.stalled.push_back(slot).is_ok() => Reaped::Stalled,
            Err(PostError::Failed(e)) => self.finish(slot, Err(e)),
            Err(_) => self.finish(slot, Err(Errno::EIO)),
        }
    }

    /// Retries the oldest stalled step; returns what became of it if it was posted or failed.
    pub(crate) fn retry_stalled(&mut self) -> Option<Reaped> {
        let slot = *self.stalled.front()?;
        match self.post_owned(slot) {
            Ok(()) => {
                self.stalled.pop_front();
                Some(Reaped::Continued)
            }
            Err(PostError::RingFull | PostError::NoSlot) => None,
            Err(PostError::Failed(e)) => {
                self.stalled.pop_front();
                Some(self.finish(slot, Err(e)))
            }
            Err(PostError::Broken) => {
                self.stalled.pop_front();
                Some(self.finish(slot, Err(Errno::EIO)))
            }
        }
    }

    /// Pops one used chain, if any, and advances its slot.
    pub(crate) fn reap_one(&mut self) -> Option<Reaped> {
        if self.broken {
            return None;
        }
        let token = self.ring.peek_used()?;
        let slot = match self.by_token.get(token as usize) {
            Some(&s) if s != NO_SLOT => s,
            _ => {
                self.broken = true;
                return Some(Reaped::Broken);
            }
        };
        let Some(step) = self.slots[slot as usize].plan.current() else {
            self.broken = true;
            return Some(Reaped::Broken);
        };
        let area = self.area(slot);
        let QueueState { ring, slots, .. } = self;
        let segments = &slots[slot as usize].segments;
        // SAFETY: the same area, step and segments the chain was posted with.
        let popped = unsafe { with_buffers(area, step, segments, |i, o| ring.pop_used(token, i, o)) };
        if popped.is_err() {
            self.broken = true;
            return Some(Reaped::Broken);
        }
        self.by_token[token as usize] = NO_SLOT;
        // SAFETY: the chain is popped; the device wrote the status byte (or left our marker).
        let status = unsafe { core::ptr::read_volatile(area.as_ptr().add(wire::OFF_STATUS)) };
        let result = wire::status_to_result(status);
        if result.is_err() {
            return Some(self.finish(slot, result));
        }
        self.slots[slot as usize].plan.advance();
        Some(self.continue_slot(slot))
    }

    /// Takes up to `max` requests still in slots (after the device was reset), freeing their
    /// slots; returns how many.
    pub(crate) fn drain_some(&mut self, max: usize, mut f: impl FnMut(Drained)) -> usize {
        self.stalled.clear();
        let mut n = 0;
        for i in 0..self.slots.len() {
            if n == max {
                break;
            }
            let s = &mut self.slots[i];
            let Some(owner) = s.owner.take() else { continue };
            let end = s.end.take();
            s.segments.clear();
            let _ = self.free.push(i as u16);
            match (owner, end) {
                (Owner::Bio, Some(end)) => f(Drained::Bio(end)),
                (Owner::GetId, _) => f(Drained::GetId),
                // A bio slot without its completion cannot happen (start moves both in).
                (Owner::Bio, None) => {}
            }
            n += 1;
        }
        if self.busy() == 0 {
            self.by_token.fill(NO_SLOT);
        }
        n
    }
}

/// Counters of one hardware queue.
#[derive(Default)]
pub(crate) struct QueueCounters {
    /// Bios completed (success or error).
    pub(crate) completed: AtomicU64,
    /// ... of which were reaped by the interrupt handler.
    pub(crate) completed_in_irq: AtomicU64,
    /// Interrupts handled.
    pub(crate) interrupts: AtomicU64,
}

/// One hardware queue: its state under a spin lock, and lock-free hints for the submitter.
pub(crate) struct HwQueue {
    /// Queue index on the device.
    pub(crate) index: u16,
    /// The ring and slots.
    pub(crate) state: spin::Mutex<QueueState>,
    /// Slots in use (mirrors the state; read without the lock to pick queues and skip idle
    /// ones when polling).
    pub(crate) busy: AtomicUsize,
    /// Chains posted and not yet notified (mirrors the state, a hint for `poll`).
    pub(crate) unkicked: AtomicUsize,
    /// Number of slots.
    pub(crate) size: usize,
    /// Counters.
    pub(crate) counters: QueueCounters,
    /// The page run holding the slot DMA areas (freed by the device after reset).
    pub(crate) dma: Option<PageRun>,
}

impl HwQueue {
    /// True when the queue has no free slot (a hint).
    pub(crate) fn full(&self) -> bool {
        self.busy.load(Ordering::Acquire) >= self.size
    }

    /// True when nothing is in flight (a hint).
    pub(crate) fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Records `state`'s slot usage and pending notifications in the lock-free mirrors.
    pub(crate) fn sync_busy(&self, state: &QueueState) {
        self.busy.store(state.busy(), Ordering::Release);
        self.unkicked.store(state.unkicked, Ordering::Release);
    }
}
