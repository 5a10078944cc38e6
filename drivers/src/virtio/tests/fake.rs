//! A fake virtio-blk device for host tests: a device model that walks the split virtqueues in
//! (host) memory, with scripted completion order and faults (its transport is in `transport`).
//!
//! Physical addresses are host virtual addresses (the `TestHal` shares identity). The device
//! runs either on a background thread ([`Fake::start_auto`]) or step by step from the test
//! ([`Fake::consume`], [`Fake::complete`]).

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use virtio_drivers::transport::DeviceStatus;

use super::transport::FakeTransport;

use crate::virtio::config::BlkFeatures;
use crate::virtio::wire::{
    S_IOERR, S_OK, S_UNSUPP, T_DISCARD, T_FLUSH, T_GET_ID, T_IN, T_OUT, T_WRITE_ZEROES,
};

/// What the fake device offers.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size (offered with BLK_SIZE).
    pub lbs: u32,
    /// Queues (MQ offered when > 1).
    pub queues: u16,
    /// Max queue size per queue.
    pub queue_size: u16,
    /// Offered features.
    pub features: BlkFeatures,
    /// seg_max.
    pub seg_max: u32,
    /// size_max.
    pub size_max: u32,
    /// GET_ID answer (UNSUPP when None).
    pub serial: Option<&'static [u8]>,
    /// max_discard_sectors.
    pub max_discard: u32,
    /// max_write_zeroes_sectors.
    pub max_write_zeroes: u32,
    /// Physical block exponent.
    pub physical_exp: u8,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            sectors: 4096,
            lbs: 512,
            queues: 1,
            queue_size: 256,
            features: BlkFeatures::SEG_MAX
                | BlkFeatures::BLK_SIZE
                | BlkFeatures::FLUSH
                | BlkFeatures::TOPOLOGY
                | BlkFeatures::DISCARD
                | BlkFeatures::WRITE_ZEROES
                | BlkFeatures::RING_INDIRECT_DESC
                | BlkFeatures::RING_EVENT_IDX
                | BlkFeatures::VERSION_1,
            seg_max: 254,
            size_max: 0,
            serial: Some(b"fake-serial-01"),
            max_discard: 1 << 16,
            max_write_zeroes: 1 << 16,
            physical_exp: 0,
        }
    }
}

/// In which order held requests complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Fifo,
    /// Newest first.
    Reverse,
    /// A seeded shuffle.
    Shuffle(u64),
}

/// One request the device executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Queue it arrived on.
    pub queue: u16,
    /// Request type.
    pub kind: u32,
    /// Header sector (or range start for discard / write-zeroes).
    pub sector: u64,
    /// Data bytes (or range bytes).
    pub bytes: u64,
    /// Number of data descriptors.
    pub data_descs: usize,
    /// Whether the chain came through an indirect table.
    pub indirect: bool,
    /// Status the device answered.
    pub status: u8,
}

/// One buffer of a chain: address, length, device-writable.
type Buf = (u64, u32, bool);

/// One virtqueue as the driver set it up.
#[derive(Clone, Copy, Default)]
pub(super) struct Vq {
    pub(super) size: u16,
    pub(super) desc: u64,
    pub(super) avail: u64,
    pub(super) used: u64,
    pub(super) enabled: bool,
    pub(super) last_avail: u16,
    pub(super) used_idx: u16,
}

struct Pending {
    queue: u16,
    head: u16,
    written: u32,
}

/// The device's state.
pub struct DevState {
    /// What it offers.
    pub cfg: FakeConfig,
    pub(super) status: DeviceStatus,
    /// Features the driver accepted.
    pub driver_features: u64,
    pub(super) vqs: Vec<Vq>,
    /// The medium.
    pub disk: Vec<u8>,
    /// Every executed request, in execution order.
    pub log: Vec<Op>,
    pending: Vec<Pending>,
    /// Completion order.
    pub order: Order,
    /// Fail the n-th write (1-based) with IOERR.
    pub fail_write: Option<u64>,
    writes: u64,
    /// Answer UNSUPP to these request types.
    pub unsupported: Vec<u32>,
    /// The next completion carries a descriptor id the driver never posted.
    pub bogus_next: bool,
    /// Never complete anything (a dead device).
    pub dead: bool,
    /// Execute requests at the doorbell but hold their completions until the test (or the
    /// device thread) completes them. When false, the doorbell also completes everything.
    pub hold: bool,
    /// Doorbell writes.
    pub notifies: u64,
    /// Times the device was reset.
    pub resets: u64,
    rng: u64,
}

/// A fake device shared by the transport, the test and (in auto mode) a device thread.
pub struct Fake {
    state: Mutex<DevState>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: addresses come from the driver's rings, which point at live host memory the
    // driver shared with the device (identity Hal).
    unsafe { std::ptr::read_volatile(addr as *const T) }
}

fn wr<T: Copy>(addr: u64, v: T) {
    // SAFETY: as `rd`; the driver made these buffers device-writable.
    unsafe { std::ptr::write_volatile(addr as *mut T, v) }
}

impl DevState {
    pub(super) fn config_bytes(&self) -> [u8; 64] {
        let c = &self.cfg;
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&c.sectors.to_le_bytes());
        b[8..12].copy_from_slice(&c.size_max.to_le_bytes());
        b[12..16].copy_from_slice(&c.seg_max.to_le_bytes());
        b[20..24].copy_from_slice(&c.lbs.to_le_bytes());
        b[24] = c.physical_exp;
        b[34..36].copy_from_slice(&c.queues.to_le_bytes());
        b[36..40].copy_from_slice(&c.max_discard.to_le_bytes());
        b[40..44].copy_from_slice(&1u32.to_le_bytes());
        b[44..48].copy_from_slice(&1u32.to_le_bytes());
        b[48..52].copy_from_slice(&c.max_write_zeroes.to_le_bytes());
        b[52..56].copy_from_slice(&1u32.to_le_bytes());
        b
    }

    pub(super) fn offered(&self) -> u64 {
        let mut f = self.cfg.features;
        if self.cfg.queues > 1 {
            f |= BlkFeatures::MQ;
        }
        f.bits()
    }

    pub(super) fn reset(&mut self) {
        self.status = DeviceStatus::empty();
        for q in &mut self.vqs {
            *q = Vq::default();
        }
        self.pending.clear();
        self.resets += 1;
    }

    /// Reads the chain at `head` of queue `q`: (addr, len, device-writable) per buffer.
    fn chain(&self, q: &Vq, head: u16) -> Option<(Vec<Buf>, bool)> {
        let mut out = Vec::new();
        let d = q.desc + 16 * u64::from(head);
        let (addr, len, flags) = (rd::<u64>(d), rd::<u32>(d + 8), rd::<u16>(d + 12));
        if flags & 4 != 0 {
            let n = len as u64 / 16;
            let mut i = 0u64;
            loop {
                let e = addr + 16 * i;
                let (a, l, f, next) = (rd::<u64>(e), rd::<u32>(e + 8), rd::<u16>(e + 12), rd::<u16>(e + 14));
                out.push((a, l, f & 2 != 0));
                if f & 1 == 0 {
                    break;
                }
                i = u64::from(next);
                if i >= n || out.len() > n as usize {
                    return None;
                }
            }
            return Some((out, true));
        }
        let mut i = head;
        loop {
            let e = q.desc + 16 * u64::from(i);
            let (a, l, f, next) = (rd::<u64>(e), rd::<u32>(e + 8), rd::<u16>(e + 12), rd::<u16>(e + 14));
            out.push((a, l, f & 2 != 0));
            if f & 1 == 0 {
                break;
            }
            i = next;
            if out.len() > q.size as usize {
                return None;
            }
        }
        Some((out, false))
    }

    fn execute(&mut self, queue: u16, bufs: &[Buf], indirect: bool) -> (u8, u32) {
        if bufs.len() < 2 || bufs[0].1 != 16 || bufs[0].2 || !bufs[bufs.len() - 1].2 {
            return (S_IOERR, 0);
        }
        let kind = rd::<u32>(bufs[0].0);
        let sector = rd::<u64>(bufs[0].0 + 8);
        let data = &bufs[1..bufs.len() - 1];
        let data_bytes: u64 = data.iter().map(|b| u64::from(b.1)).sum();
        let lbs = u64::from(self.cfg.lbs);
        let cap = self.disk.len() as u64;
        let mut op =
            Op { queue, kind, sector, bytes: data_bytes, data_descs: data.len(), indirect, status: S_OK };
        let mut written = 0u32;
        let status = if self.unsupported.contains(&kind) {
            S_UNSUPP
        } else {
            match kind {
                T_IN | T_OUT => {
                    let off = sector * 512;
                    let bad =
                        !off.is_multiple_of(lbs) || !data_bytes.is_multiple_of(lbs) || off + data_bytes > cap;
                    let refused = kind == T_OUT && {
                        self.writes += 1;
                        self.cfg.features.contains(BlkFeatures::RO) || self.fail_write == Some(self.writes)
                    };
                    if bad || refused {
                        S_IOERR
                    } else {
                        let mut pos = off as usize;
                        for &(a, l, w) in data {
                            let l = l as usize;
                            if kind == T_IN {
                                if !w {
                                    return (S_IOERR, 0);
                                }
                                // SAFETY: the driver lent this buffer to the device, writable.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(self.disk[pos..].as_ptr(), a as *mut u8, l)
                                };
                                written += l as u32;
                            } else {
                                // SAFETY: the driver lent this buffer to the device, readable.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        a as *const u8,
                                        self.disk[pos..].as_mut_ptr(),
                                        l,
                                    )
                                };
                            }
                            pos += l;
                        }
                        S_OK
                    }
                }
                T_FLUSH => S_OK,
                T_GET_ID => match (self.cfg.serial, data.first()) {
                    (Some(s), Some(&(a, l, true))) if l >= 20 => {
                        let mut id = [0u8; 20];
                        id[..s.len().min(20)].copy_from_slice(&s[..s.len().min(20)]);
                        wr::<[u8; 20]>(a, id);
                        written = 20;
                        S_OK
                    }
                    (None, _) => S_UNSUPP,
                    _ => S_IOERR,
                },
                T_DISCARD | T_WRITE_ZEROES => match data.first() {
                    Some(&(a, 16, false)) => {
                        let start = rd::<u64>(a);
                        let n = u64::from(rd::<u32>(a + 8));
                        op.sector = start;
                        op.bytes = n * 512;
                        let (off, len) = (start * 512, n * 512);
                        if !off.is_multiple_of(lbs) || !len.is_multiple_of(lbs) || off + len > cap {
                            S_IOERR
                        } else {
                            self.disk[off as usize..(off + len) as usize].fill(0);
                            S_OK
                        }
                    }
                    _ => S_IOERR,
                },
                _ => S_UNSUPP,
            }
        };
        wr::<u8>(bufs[bufs.len() - 1].0, status);
        op.status = status;
        self.log.push(op);
        (status, written + 1)
    }

    /// Takes every newly available request and executes it; returns how many.
    pub fn consume(&mut self) -> usize {
        if !self.status.contains(DeviceStatus::DRIVER_OK) {
            return 0;
        }
        let mut n = 0;
        for qi in 0..self.vqs.len() {
            let q = self.vqs[qi];
            if !q.enabled {
                continue;
            }
            // SAFETY: the avail ring's idx is a live, aligned u16 the driver updates atomically.
            let idx = unsafe { AtomicU16::from_ptr((q.avail + 2) as *mut u16) }.load(Ordering::Acquire);
            let mut last = q.last_avail;
            while last != idx {
                let head = rd::<u16>(q.avail + 4 + 2 * u64::from(last % q.size));
                last = last.wrapping_add(1);
                let (status_written, ok) = match self.chain(&q, head) {
                    Some((bufs, indirect)) => (self.execute(qi as u16, &bufs, indirect), true),
                    None => ((S_IOERR, 0), false),
                };
                debug_assert!(ok);
                self.pending.push(Pending { queue: qi as u16, head, written: status_written.1 });
                n += 1;
            }
            self.vqs[qi].last_avail = last;
        }
        n
    }

    fn next_rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Completes up to `max` held requests in the configured order; returns how many.
    pub fn complete(&mut self, max: usize) -> usize {
        if self.dead {
            return 0;
        }
        let mut n = 0;
        while n < max && !self.pending.is_empty() {
            let i = match self.order {
                Order::Fifo => 0,
                Order::Reverse => self.pending.len() - 1,
                Order::Shuffle(_) => (self.next_rand() % self.pending.len() as u64) as usize,
            };
            let p = self.pending.remove(i);
            let q = &mut self.vqs[p.queue as usize];
            let slot = u64::from(q.used_idx % q.size);
            let id =
                if std::mem::take(&mut self.bogus_next) { u32::from(q.size) + 5 } else { u32::from(p.head) };
            wr::<u32>(q.used + 4 + 8 * slot, id);
            wr::<u32>(q.used + 8 + 8 * slot, p.written);
            q.used_idx = q.used_idx.wrapping_add(1);
            // SAFETY: the used ring's idx is a live, aligned u16 the driver reads atomically.
            unsafe { AtomicU16::from_ptr((q.used + 2) as *mut u16) }.store(q.used_idx, Ordering::Release);
            n += 1;
        }
        n
    }

    /// Requests executed and not yet completed.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Whether the driver asked for no interrupts on queue `q` (avail flags bit 0).
    pub fn interrupts_suppressed(&self, q: usize) -> bool {
        let vq = self.vqs[q];
        rd::<u16>(vq.avail) & 1 != 0
    }

    /// True after a reset until the driver sets the device up again.
    pub fn is_reset(&self) -> bool {
        self.status.is_empty()
    }
}

impl Fake {
    /// A device offering `cfg`, zero-filled medium, completing in order, driven manually.
    pub fn new(cfg: FakeConfig) -> Arc<Fake> {
        let disk = vec![0u8; (cfg.sectors * 512) as usize];
        let vqs = vec![Vq::default(); cfg.queues as usize];
        Arc::new(Fake {
            state: Mutex::new(DevState {
                cfg,
                status: DeviceStatus::empty(),
                driver_features: 0,
                vqs,
                disk,
                log: Vec::new(),
                pending: Vec::new(),
                order: Order::Fifo,
                fail_write: None,
                writes: 0,
                unsupported: Vec::new(),
                bogus_next: false,
                dead: false,
                hold: false,
                notifies: 0,
                resets: 0,
                rng: 1,
            }),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        })
    }

    /// The device's state (lock held).
    pub fn state(&self) -> MutexGuard<'_, DevState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transport for the driver.
    pub fn transport(self: &Arc<Self>) -> FakeTransport {
        FakeTransport::new(self.clone())
    }

    /// Runs the device on a thread: everything available is executed and completed (in the
    /// configured order) continuously.
    pub fn start_auto(self: &Arc<Self>) {
        let me = self.clone();
        let h = std::thread::spawn(move || {
            while !me.stop.load(Ordering::Acquire) {
                {
                    let mut st = me.state();
                    st.consume();
                    st.complete(usize::MAX);
                }
                std::thread::yield_now();
            }
        });
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    /// Stops the device thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// Completes up to `max` held requests (manual mode).
    pub fn complete(&self, max: usize) -> usize {
        self.state().complete(max)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
