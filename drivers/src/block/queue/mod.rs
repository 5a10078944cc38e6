//! The request layer: a [`Queue`] in front of a driver with strict limits, which itself is a
//! [`BlockDevice`] that accepts any valid bio.
//!
//! The queue owns everything between "an upper layer submitted a bio" and "a driver request
//! that fits the device": validation, splitting to the driver's limits, merging of adjacent
//! bios (under a [`Plug`], or while the driver is busy), the flush machinery (FUA emulation,
//! PREFLUSH ordering, no-op flushes on devices without a volatile cache), and queue-depth
//! accounting. A driver (RamDisk, the fault and crash wrappers, virtio-blk) only ever sees
//! requests within its [`DeviceInfo`] limits, at most `queue_depth` at once, never PREFLUSH, and
//! FUA only if it advertises [`DeviceFeatures::FUA`].
//!
//! # Life of a bio
//!
//! 1. `submit` validates the bio against the queue's own (relaxed) [`DeviceInfo`]; a bad bio
//!    completes at once with `EINVAL` / `EROFS` / `EOPNOTSUPP`. A FLUSH on a device without a
//!    volatile cache completes at once with success and no I/O.
//! 2. The bio gets a *parent* slot (its completion, a reference count, its first error, its
//!    flush stage) and an entry in the software queue, placed next to an entry it is
//!    adjacent to. With PREFLUSH the entry is held back and a FLUSH entry queued instead.
//! 3. Dispatch (from `submit` when no plug is held, from [`Plug`] drop, from completions, and
//!    from `poll`) takes a free request slot and carves a driver request from the front entry
//!    (a split when the entry does not fit) and from the entries after it that continue it (a
//!    merge). The request's slot lists the parents it carries a part of.
//! 4. The driver completes the request: each owner parent drops a reference and keeps the
//!    first error. A parent at zero references moves to its next stage: after a PREFLUSH its
//!    data entry is queued (at the front); after data with emulated FUA a FLUSH entry is queued;
//!    otherwise (or on error) the upper bio completes, exactly once.
//!
//! `poll` polls the driver and then dispatches even under a plug: a caller that polls is
//! waiting, and Linux flushes a plug when its task sleeps.
//!
//! # Allocation
//!
//! Allocated once, in [`Queue::new`]: the request slot table (one per driver request in
//! flight, `heapless` owner lists) and its free list, and initial capacity for parents and
//! waiting entries (four per slot). Per request and per completion nothing is allocated:
//! segments and owners are `heapless`, completion targets are one shared `Arc`. The parent
//! table and the waiting queue grow (amortised, never shrink) only when more bios are
//! outstanding than ever before; at submission growth uses `try_reserve`, so memory exhaustion
//! completes the bio with `ENOMEM` instead of aborting. The one growth that can happen in a
//! completion is queueing the next flush-sequence entry (data after a PREFLUSH, the flush after
//! an emulated FUA) when the waiting queue is at its high-water mark.
//!
//! Drop a queue only when idle ([`BlockDevice::in_flight`] is 0): bios still waiting in software
//! are never completed after the last handle is gone (requests at the driver keep the queue's
//! state alive until they complete, and then finish normally).
//!
//! # Lock order
//!
//! One spin lock (`state`). It is never held while calling into the driver or running an upper
//! completion. Dispatch is serialised by a flag, not a lock: a dispatch attempted while one runs
//! (a driver completing inside `submit`, another CPU) asks the running one to go round again.
//! The driver must accept `submit` from inside its own completion callbacks (Linux re-runs the
//! hardware queue from completion the same way).
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | `blk_mq_submit_bio` | [`Queue`]'s `submit` |
//! | `blk_start_plug` / `blk_finish_plug` (per task) | [`Queue::plug`] / drop of [`Plug`] (per queue) |
//! | flush plug on `schedule()` | `poll` dispatches under a plug |
//! | `bio_split_to_limits` | lazy carving at dispatch (`request.rs`) |
//! | plug / elevator back and front merges | placement next to an adjacent waiting bio + merge at dispatch |
//! | `blk-flush.c` PREFLUSH -> DATA -> POSTFLUSH sequence | parent stages |
//! | `blk_queue_write_cache(q, false, ...)`: flushes completed without I/O | same |
//! | tags (`queue_depth` request slots) + `BLK_STS_RESOURCE` requeue | slot table; waiting entries stay in the software queue |
//! | `bio_chain` / `bio_endio` of split parts, `bi_status` first error | parent reference count, first error |
//!
//! Deliberate deviations: the plug is per queue, not per task (a plug held by one thread also
//! delays other threads' bios on that queue until it is dropped or someone polls); there is no
//! I/O scheduler and one software queue (the driver may complete out of order; the queue makes
//! no ordering promise between bios in flight, as in Linux); a failed part does not stop the
//! other parts of a split bio from being issued.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spin::Mutex;

use self::limits::Limits;
use self::request::{insert, BioParts, Entry, Request, MAX_MERGE};
use super::{validate, Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceInfo};
use crate::errno::{Errno, Result};

#[cfg(doc)]
use super::DeviceFeatures;

pub mod bench;
mod limits;
pub(crate) mod request;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_model;

/// How a [`Queue`] behaves beyond what the device dictates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most driver requests in flight; 0 means the device's `queue_depth` (always capped at
    /// 1024).
    pub max_depth: u16,
    /// Merge adjacent bios into one driver request (Linux: `nomerges` = 0).
    pub merge: bool,
    /// Under a plug, dispatch anyway once this many bios wait (Linux flushes a plug at 32 or 64
    /// requests; bios here are counted before merging).
    pub plug_limit: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_depth: 0, merge: true, plug_limit: 256 }
    }
}

/// What a queue has done, for tests and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Upper bios accepted.
    pub bios: u64,
    /// Upper bios refused by validation (completed at once with the error).
    pub rejected: u64,
    /// Requests dispatched to the driver (including flushes).
    pub requests: u64,
    /// Requests that took only part of a bio (each one is a split, Linux `bio_split`).
    pub splits: u64,
    /// Bios merged behind another bio in one driver request.
    pub merges: u64,
    /// FLUSH requests dispatched to the driver.
    pub flushes: u64,
    /// FLUSH bios, PREFLUSH and FUA flags that needed no I/O (no volatile cache).
    pub flushes_elided: u64,
    /// FUA bios done as write + flush.
    pub fua_emulated: u64,
    /// Most driver requests in flight at once.
    pub peak_in_flight: u64,
}

/// Where an upper bio is in the flush sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Its PREFLUSH is queued or in flight; the data entry is held.
    PreFlush,
    /// Its data (or its FLUSH) is queued or in flight.
    Data,
    /// The flush after an emulated FUA write is queued or in flight.
    PostFlush,
}

/// An upper bio in the queue.
struct Parent {
    end: Option<BioEnd>,
    /// Waiting entries plus driver requests that carry a part of this bio.
    refs: u32,
    error: Option<Errno>,
    stage: Stage,
    post_flush: bool,
}

/// A driver request slot (Linux: a tag).
struct Slot {
    busy: bool,
    owners: heapless::Vec<u32, MAX_MERGE>,
}

/// A completed upper bio, to be reported once the lock is dropped.
type Finished = (BioEnd, Result<()>);

struct State {
    parents: Vec<Parent>,
    free_parents: Vec<u32>,
    waiting: VecDeque<Entry>,
    /// Data entries whose PREFLUSH has not completed yet.
    held: Vec<Entry>,
    slots: Vec<Slot>,
    free_slots: Vec<u16>,
    stats: QueueStats,
}

impl State {
    /// A parent slot for an upper bio with one reference; gives `end` back when memory for the
    /// parent table cannot be had.
    fn alloc_parent(
        &mut self,
        end: BioEnd,
        stage: Stage,
        post_flush: bool,
    ) -> core::result::Result<u32, BioEnd> {
        let p = match self.free_parents.pop() {
            Some(p) => p,
            None => {
                let Ok(p) = u32::try_from(self.parents.len()) else { return Err(end) };
                // The free list keeps room for every parent, so freeing never allocates.
                let room = self.parents.try_reserve(1).is_ok()
                    && self.free_parents.try_reserve(self.parents.len() + 1).is_ok();
                if !room {
                    return Err(end);
                }
                self.parents.push(Parent { end: None, refs: 0, error: None, stage, post_flush });
                p
            }
        };
        self.parents[p as usize] = Parent { end: Some(end), refs: 1, error: None, stage, post_flush };
        Ok(p)
    }

    /// Drops one reference of parent `p` with `result`; returns the upper completion when the
    /// bio is done. Stage changes queue the next entry instead.
    fn put_ref(&mut self, p: u32, result: Result<()>) -> Option<Finished> {
        let parent = &mut self.parents[p as usize];
        if let Err(e) = result {
            parent.error.get_or_insert(e);
        }
        debug_assert!(parent.refs > 0, "parent reference underflow");
        parent.refs = parent.refs.saturating_sub(1);
        if parent.refs > 0 {
            return None;
        }
        match parent.stage {
            Stage::PreFlush => {
                let held = self.held.iter().position(|e| e.parent == p).map(|i| self.held.swap_remove(i));
                debug_assert!(held.is_some(), "PREFLUSH parent without its data entry");
                match held {
                    Some(entry) if parent.error.is_none() => {
                        parent.stage = Stage::Data;
                        parent.refs = 1;
                        self.waiting.push_front(entry);
                        return None;
                    }
                    Some(_) => {}
                    None => {
                        parent.error.get_or_insert(Errno::EIO);
                    }
                }
            }
            Stage::Data if parent.post_flush && parent.error.is_none() => {
                parent.stage = Stage::PostFlush;
                parent.refs = 1;
                self.waiting.push_front(Entry::flush(p));
                return None;
            }
            Stage::Data | Stage::PostFlush => {}
        }
        let end = parent.end.take()?;
        let r = parent.error.map_or(Ok(()), Err);
        // Capacity for every parent was reserved when it was allocated.
        self.free_parents.push(p);
        Some((end, r))
    }
}

/// What one dispatch step produced. Not boxed: the bio moves straight into the driver, and
/// boxing would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// A driver request to submit.
    Submit(Bio),
    /// An upper bio that finished without reaching the driver.
    Finished(Finished),
    /// Nothing to report, look again.
    Again,
}

struct Inner {
    dev: Arc<dyn BlockDevice>,
    info: DeviceInfo,
    limits: Limits,
    config: QueueConfig,
    me: Weak<Inner>,
    state: Mutex<State>,
    plugs: AtomicUsize,
    dispatching: AtomicBool,
    rerun: AtomicBool,
    in_flight: AtomicUsize,
    completed: AtomicUsize,
}

/// The request layer in front of one driver. See the module documentation.
pub struct Queue {
    inner: Arc<Inner>,
}

/// A plug: while any plug of a queue is alive, submitted bios wait (and merge) in the software
/// queue; dropping the last plug dispatches them. Linux: `blk_start_plug` / `blk_finish_plug`.
pub struct Plug<'a> {
    inner: &'a Inner,
}

impl Drop for Plug<'_> {
    fn drop(&mut self) {
        if self.inner.plugs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.dispatch(false);
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let n = self.inner.in_flight.load(Ordering::Acquire);
        if n != 0 {
            log::warn!("block queue dropped with {n} bios in flight");
        }
    }
}

impl Queue {
    /// A queue in front of `dev` with the default [`QueueConfig`].
    pub fn new(dev: Arc<dyn BlockDevice>) -> Self {
        Self::with_config(dev, QueueConfig::default())
    }

    /// A queue in front of `dev`. The device's facts are read once, here.
    pub fn with_config(dev: Arc<dyn BlockDevice>, config: QueueConfig) -> Self {
        let device = dev.info();
        let limits = Limits::from_device(&device, config.max_depth);
        let info = limits.upper_info(&device);
        let depth = limits.depth;
        let state = State {
            parents: Vec::with_capacity(depth * 4),
            free_parents: Vec::with_capacity(depth * 4),
            waiting: VecDeque::with_capacity(depth * 4),
            held: Vec::new(),
            slots: (0..depth).map(|_| Slot { busy: false, owners: heapless::Vec::new() }).collect(),
            free_slots: (0..depth as u16).rev().collect(),
            stats: QueueStats::default(),
        };
        let inner = Arc::new_cyclic(|me| Inner {
            dev,
            info,
            limits,
            config,
            me: me.clone(),
            state: Mutex::new(state),
            plugs: AtomicUsize::new(0),
            dispatching: AtomicBool::new(false),
            rerun: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
        });
        Self { inner }
    }

    /// Holds submitted bios in the software queue until the returned guard (and every other
    /// plug of this queue) is dropped, so adjacent ones merge.
    pub fn plug(&self) -> Plug<'_> {
        self.inner.plugs.fetch_add(1, Ordering::AcqRel);
        Plug { inner: &self.inner }
    }

    /// The driver behind the queue.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.inner.dev
    }

    /// Counters so far.
    pub fn stats(&self) -> QueueStats {
        self.inner.state.lock().stats
    }

    /// Resets the counters (the in-flight high-water mark restarts from the current count).
    pub fn reset_stats(&self) {
        let mut st = self.inner.state.lock();
        let busy = (self.inner.limits.depth - st.free_slots.len()) as u64;
        st.stats = QueueStats { peak_in_flight: busy, ..QueueStats::default() };
    }

    /// Driver requests in flight now (at most the effective queue depth).
    pub fn driver_in_flight(&self) -> usize {
        self.inner.limits.depth - self.inner.state.lock().free_slots.len()
    }

    /// Bios (or remainders of split bios) waiting in the software queue, plus data held behind
    /// a PREFLUSH.
    pub fn waiting(&self) -> usize {
        let st = self.inner.state.lock();
        st.waiting.len() + st.held.len()
    }
}

impl Inner {
    fn submit(&self, bio: Bio) {
        if let Err(e) = validate(&self.info, &bio) {
            self.state.lock().stats.rejected += 1;
            bio.end.complete(Err(e));
            return;
        }
        let sectors = bio.sectors();
        let Bio { op, flags, sector, dataless_sectors: _, segments, end } = bio;
        let l = &self.limits;
        let cache = l.volatile_cache;
        let fua = flags.contains(BioFlags::FUA) && op.is_write();
        let preflush = cache && flags.contains(BioFlags::PREFLUSH) && op != BioOp::Flush;
        let post_flush = cache && fua && !(l.native_fua && op == BioOp::Write);
        let mut driver_flags = flags & BioFlags::META;
        if l.native_fua && fua && op == BioOp::Write {
            driver_flags |= BioFlags::FUA;
        }
        let nomerge = op != BioOp::Flush && flags.intersects(BioFlags::FUA | BioFlags::PREFLUSH);
        let elided = !cache && (op == BioOp::Flush || flags.intersects(BioFlags::FUA | BioFlags::PREFLUSH));

        let mut st = self.state.lock();
        st.stats.bios += 1;
        st.stats.flushes_elided += elided as u64;
        if op == BioOp::Flush && !cache {
            drop(st);
            end.complete(Ok(()));
            return;
        }
        let room = st.waiting.try_reserve(1).is_ok() && (!preflush || st.held.try_reserve(1).is_ok());
        let stage = if preflush { Stage::PreFlush } else { Stage::Data };
        let p = match st.alloc_parent(end, stage, post_flush) {
            Ok(p) if room => p,
            Ok(p) => {
                let end = st.parents[p as usize].end.take();
                st.free_parents.push(p);
                drop(st);
                if let Some(end) = end {
                    end.complete(Err(Errno::ENOMEM));
                }
                return;
            }
            Err(end) => {
                drop(st);
                end.complete(Err(Errno::ENOMEM));
                return;
            }
        };
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        st.stats.fua_emulated += post_flush as u64;
        let entry = if op == BioOp::Flush {
            Entry::flush(p)
        } else {
            Entry::new(p, BioParts { op, sector, sectors, segments }, driver_flags, nomerge)
        };
        if preflush {
            st.held.push(entry);
            insert(&mut st.waiting, Entry::flush(p), self.config.merge);
        } else {
            insert(&mut st.waiting, entry, self.config.merge);
        }
        let over_plug_limit = st.waiting.len() >= self.config.plug_limit;
        drop(st);
        if self.plugs.load(Ordering::Acquire) == 0 {
            self.dispatch(false);
        } else if over_plug_limit {
            self.dispatch(true);
        }
    }

    /// Dispatches waiting entries while request slots are free. Without `force`, does nothing
    /// under a plug. Returns how many driver requests were submitted by this call.
    fn dispatch(&self, force: bool) -> usize {
        if !force && self.plugs.load(Ordering::Acquire) > 0 {
            return 0;
        }
        if self.dispatching.swap(true, Ordering::AcqRel) {
            self.rerun.store(true, Ordering::Release);
            return 0;
        }
        let mut submitted = 0;
        loop {
            self.rerun.store(false, Ordering::Release);
            while let Some(step) = self.next_step() {
                match step {
                    Step::Submit(bio) => {
                        submitted += 1;
                        self.dev.submit(bio);
                    }
                    Step::Finished((end, r)) => self.finish(end, r),
                    Step::Again => {}
                }
            }
            self.dispatching.store(false, Ordering::Release);
            if !self.rerun.load(Ordering::Acquire) || self.dispatching.swap(true, Ordering::AcqRel) {
                break;
            }
        }
        submitted
    }

    /// Builds the next driver request from the front of the software queue, if a slot is free.
    fn next_step(&self) -> Option<Step> {
        let me = self.me.upgrade()?;
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let front = st.waiting.front()?;
        let slot = st.free_slots.pop()?;
        let mut req = Request::start(front, &self.limits, BioEnd::new(me, slot as u64));
        let mut first = true;
        while let Some(entry) = st.waiting.front_mut() {
            let parent = entry.parent;
            let (moved, consumed) = req.carve(entry, &self.limits);
            if !moved {
                if first {
                    // Unreachable: validation and the limits guarantee the first entry moves.
                    // Fail the bio rather than spin on it.
                    debug_assert!(false, "a waiting entry did not fit an empty request");
                    st.waiting.pop_front();
                    st.free_slots.push(slot);
                    return Some(st.put_ref(parent, Err(Errno::EIO)).map_or(Step::Again, Step::Finished));
                }
                break;
            }
            if !first {
                st.stats.merges += 1;
            }
            first = false;
            if consumed {
                // The entry's reference moves to the request.
                st.waiting.pop_front();
            } else {
                st.parents[parent as usize].refs += 1;
                st.stats.splits += 1;
                break;
            }
            match st.waiting.front() {
                Some(next) if self.config.merge && req.accepts(next) => {}
                _ => break,
            }
        }
        let s = &mut st.slots[slot as usize];
        s.busy = true;
        s.owners = req.owners;
        st.stats.requests += 1;
        st.stats.flushes += (req.bio.op == BioOp::Flush) as u64;
        let busy = (self.limits.depth - st.free_slots.len()) as u64;
        st.stats.peak_in_flight = st.stats.peak_in_flight.max(busy);
        Some(Step::Submit(req.bio))
    }

    fn finish(&self, end: BioEnd, result: Result<()>) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.completed.fetch_add(1, Ordering::AcqRel);
        end.complete(result);
    }
}

impl BioComplete for Inner {
    fn complete(&self, cookie: u64, result: Result<()>) {
        let mut done: heapless::Vec<Finished, MAX_MERGE> = heapless::Vec::new();
        {
            let mut st = self.state.lock();
            let slot = usize::try_from(cookie).ok().filter(|&s| s < st.slots.len() && st.slots[s].busy);
            let Some(slot) = slot else {
                log::warn!("block queue: completion for a request that is not in flight (cookie {cookie})");
                return;
            };
            let owners = core::mem::take(&mut st.slots[slot].owners);
            st.slots[slot].busy = false;
            st.free_slots.push(slot as u16);
            for p in owners {
                if let Some(f) = st.put_ref(p, result) {
                    // At most one completion per owner: cannot overflow.
                    let _ = done.push(f);
                }
            }
        }
        for (end, r) in done {
            self.finish(end, r);
        }
        self.dispatch(false);
    }
}

impl BlockDevice for Queue {
    fn info(&self) -> DeviceInfo {
        self.inner.info
    }

    /// Accepts any bio; one beyond the driver's limits is split, adjacent ones are merged.
    /// Never blocks and never polls: when the driver is busy the bio waits in software.
    fn submit(&self, bio: Bio) {
        self.inner.submit(bio);
    }

    /// Polls the driver, then dispatches waiting requests (even under a plug). Returns how many
    /// upper bios completed meanwhile.
    fn poll(&self) -> usize {
        let before = self.inner.completed.load(Ordering::Acquire);
        self.inner.dev.poll();
        self.inner.dispatch(true);
        self.inner.completed.load(Ordering::Acquire).wrapping_sub(before)
    }

    /// Upper bios submitted and not yet completed.
    fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }
}
