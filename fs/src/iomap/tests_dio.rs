//! Host-only concurrency tests of direct I/O and copy on write (std threads).
//!
//! One file is hit by buffered writers, direct writers and readers, truncate, clones into it
//! and snapshots (clones out of it), a background flusher and lock-free buffered readers. The
//! threads follow the engine's caller rule with a `RwLock` standing for `i_rwsem`: direct
//! reads and aligned, non-extending direct writes take it shared (each direct writer in its own
//! stripe of the file, so concurrent writes never overlap), everything else that changes the
//! file takes it exclusively. A model applies every change when it completes (under the lock,
//! so in completion order); a direct read under the shared lock must see, byte by byte, the
//! model before or after it or a direct write in flight meanwhile. At the end the file, the
//! clone source and every snapshot must equal their models through the cache, after dropping
//! it and on the device, and the test filesystem's block accounting must be consistent.
//! The device starts filled with 0xEE, a value no write uses: seeing it is stale data.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::vec;
use std::vec::Vec;

use super::selftest::{Rig, RigOpts};
use super::testfs::MemFile;
use super::{writeback_range, WriteFlags, WritebackMode};
use crate::block::prng::SplitMix64;
use crate::block::{BlockDevice, RamDisk};
use crate::platform::StdPlatform;

const GARBAGE: u8 = 0xEE;
const BS: u64 = 4096;
const SPAN: u64 = 512 << 10;
const STRIPE: u64 = 16 << 10;
const DIO_WRITERS: u64 = 2;

/// Bytes of write `seq` at file offset `pos`: never 0 and never GARBAGE.
fn bytes(seq: u64, pos: u64, len: u64) -> Vec<u8> {
    (pos..pos + len).map(|i| ((i.wrapping_mul(31) ^ seq.wrapping_mul(0x9E37)) % 0xED) as u8 + 1).collect()
}

struct Model {
    data: Vec<u8>,
    /// Direct writes in flight: id -> (pos, bytes).
    inflight: BTreeMap<u64, (u64, Vec<u8>)>,
    snapshots: Vec<(Arc<MemFile>, Vec<u8>)>,
}

struct World {
    f: Arc<MemFile>,
    src: Arc<MemFile>,
    src_data: Vec<u8>,
    lock: RwLock<()>,
    model: Mutex<Model>,
    seq: AtomicU64,
    seed: u64,
    /// Operations done: exclusive, shared direct writes, checked direct reads.
    done: [AtomicU64; 3],
}

impl World {
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn apply(&self, pos: u64, data: &[u8]) {
        let mut m = self.model.lock().unwrap();
        let end = (pos as usize) + data.len();
        if m.data.len() < end {
            m.data.resize(end, 0);
        }
        m.data[pos as usize..end].copy_from_slice(data);
    }

    /// One exclusive operation.
    fn exclusive_op(&self, rng: &mut SplitMix64, open: &mut crate::iomap::OpenFile) {
        let _x = self.lock.write().unwrap();
        self.done[0].fetch_add(1, Ordering::Relaxed);
        let size = self.f.size();
        let seed = self.seed;
        match rng.below(6) {
            0 | 1 => {
                let pos = rng.below(SPAN);
                let len = 1 + rng.below(24 << 10);
                let data = bytes(self.next_seq(), pos, len);
                assert_eq!(self.f.write(open, pos, &data).unwrap(), len as usize, "seed {seed}");
                self.apply(pos, &data);
            }
            2 => {
                // Extending or sub-block direct write.
                let pos = rng.below(SPAN / 512) * 512;
                let len = 512 * (1 + rng.below(16));
                let data = bytes(self.next_seq(), pos, len);
                let n = self.f.direct_write(open, pos, &data, WriteFlags::empty()).unwrap();
                assert_eq!(n, len as usize, "seed {seed}");
                self.apply(pos, &data);
            }
            3 => {
                let new = rng.below(SPAN);
                self.f.truncate(new).unwrap();
                self.model.lock().unwrap().data.resize(new as usize, 0);
            }
            4 => {
                // Clone a piece of the source into the file.
                let blocks = 1 + rng.below(8);
                let pos_in = rng.below(self.src_data.len() as u64 / BS - blocks) * BS;
                let pos_out = rng.below(SPAN / BS) * BS;
                let len = blocks * BS;
                assert_eq!(
                    self.f.clone_range_from(&self.src, pos_in, pos_out, len).unwrap(),
                    len,
                    "seed {seed}"
                );
                let piece = self.src_data[pos_in as usize..(pos_in + len) as usize].to_vec();
                let mut m = self.model.lock().unwrap();
                if (m.data.len() as u64) < pos_out {
                    m.data.resize(pos_out as usize, 0);
                }
                drop(m);
                self.apply(pos_out, &piece);
            }
            _ => {
                // Snapshot: clone the whole file out (its blocks become shared).
                if size == 0 || self.model.lock().unwrap().snapshots.len() >= 4 {
                    return;
                }
                let fs = self.f.fs().unwrap();
                let g = fs.create().unwrap();
                assert_eq!(g.clone_range_from(&self.f, 0, 0, 0).unwrap(), size, "seed {seed}");
                let mut m = self.model.lock().unwrap();
                let copy = m.data.clone();
                m.snapshots.push((g, copy));
            }
        }
    }

    /// An aligned, non-extending direct write into `stripe_owner`'s stripes (shared lock).
    fn shared_dio_write(&self, rng: &mut SplitMix64, open: &mut crate::iomap::OpenFile, owner: u64) {
        let _s = self.lock.read().unwrap();
        let size = self.f.size();
        let stripes = size / STRIPE;
        let mine: Vec<u64> = (0..stripes).filter(|s| s % DIO_WRITERS == owner).collect();
        if mine.is_empty() {
            return;
        }
        self.done[1].fetch_add(1, Ordering::Relaxed);
        let stripe = mine[rng.below(mine.len() as u64) as usize];
        let off = rng.below(STRIPE / BS) * BS;
        let len = (1 + rng.below((STRIPE - off) / BS)) * BS;
        let pos = stripe * STRIPE + off;
        let seq = self.next_seq();
        let data = bytes(seq, pos, len);
        self.model.lock().unwrap().inflight.insert(seq, (pos, data.clone()));
        let n = self.f.direct_write(open, pos, &data, WriteFlags::empty()).unwrap();
        assert_eq!(n, len as usize, "seed {}", self.seed);
        let mut m = self.model.lock().unwrap();
        m.inflight.remove(&seq);
        m.data[pos as usize..(pos + len) as usize].copy_from_slice(&data);
    }

    /// A direct read checked against the model (shared lock).
    fn shared_dio_read(&self, rng: &mut SplitMix64, open: &mut crate::iomap::OpenFile, buf: &mut [u8]) {
        let _s = self.lock.read().unwrap();
        let pos = rng.below(SPAN / 512) * 512;
        let len = 512 * (1 + rng.below(buf.len() as u64 / 512));
        let snap = |m: &Model| {
            let end = ((pos + len) as usize).min(m.data.len());
            let data = m.data.get(pos as usize..end).map(|s| s.to_vec()).unwrap_or_default();
            (data, m.inflight.values().cloned().collect::<Vec<_>>())
        };
        self.done[2].fetch_add(1, Ordering::Relaxed);
        let (before, fly0) = snap(&self.model.lock().unwrap());
        let n = self.f.direct_read(open, pos, &mut buf[..len as usize]).unwrap();
        let (after, fly1) = snap(&self.model.lock().unwrap());
        assert_eq!(n, before.len(), "seed {}: size is stable under the shared lock", self.seed);
        for (i, &b) in buf[..n].iter().enumerate() {
            let at = pos + i as u64;
            let in_flight = fly0
                .iter()
                .chain(fly1.iter())
                .any(|(p, d)| at >= *p && at < *p + d.len() as u64 && d[(at - p) as usize] == b);
            assert!(
                b == before[i] || b == after[i] || in_flight,
                "seed {}: byte {at} read {b:#x}, model {:#x} / {:#x}: stale or lost data",
                self.seed,
                before[i],
                after[i]
            );
        }
    }
}

#[test]
fn direct_buffered_truncate_clone_threads_match_the_model() {
    let seed = 0x05EE_DD10;
    let disk = Arc::new(RamDisk::from_image(vec![GARBAGE; 64 << 20], 512));
    let mut opts = RigOpts::new(BS);
    opts.cache_bytes = 4 << 20;
    let rig = Rig::on(StdPlatform::arc(), disk as Arc<dyn BlockDevice>, opts).unwrap();
    rig.cache.set_dirty_thresholds(512 << 10, 1 << 20).unwrap();
    let src = rig.file().unwrap();
    let src_data = bytes(u64::MAX, 0, 256 << 10);
    let mut o = src.open();
    src.write(&mut o, 0, &src_data).unwrap();
    src.fsync(&mut o, false).unwrap();
    let f = rig.file().unwrap();
    let mut o = f.open();
    let init = bytes(0, 0, SPAN);
    f.write(&mut o, 0, &init).unwrap();
    let world = Arc::new(World {
        f: f.clone(),
        src: src.clone(),
        src_data: src_data.clone(),
        lock: RwLock::new(()),
        model: Mutex::new(Model { data: init, inflight: BTreeMap::new(), snapshots: Vec::new() }),
        seq: AtomicU64::new(1),
        seed,
        done: Default::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    // Background: a flusher and lock-free buffered readers (no garbage may ever show).
    let mut helpers = Vec::new();
    for k in 0..2u64 {
        let (w, stop) = (world.clone(), stop.clone());
        helpers.push(thread::spawn(move || {
            let mut rng = SplitMix64::new(seed ^ (k + 100));
            let mut open = w.f.open();
            let mut buf = vec![0u8; 32 << 10];
            while !stop.load(Ordering::Acquire) {
                if k == 0 {
                    let mode = WritebackMode::Background { budget_bytes: 128 << 10 };
                    writeback_range(w.f.file(), &w.f.ops(), 0, u64::MAX, mode).unwrap();
                    thread::yield_now();
                } else {
                    let pos = rng.below(SPAN);
                    let n = w.f.read(&mut open, pos, &mut buf).unwrap();
                    assert!(!buf[..n].contains(&GARBAGE), "seed {seed}: stale device bytes read at {pos}");
                }
            }
        }));
    }
    let mut workers = Vec::new();
    for k in 0..4u64 {
        let w = world.clone();
        workers.push(thread::spawn(move || {
            let mut rng = SplitMix64::new(seed ^ k);
            let mut open = w.f.open();
            let mut buf = vec![0u8; 64 << 10];
            for _ in 0..200 {
                match (k, rng.below(4)) {
                    (0, _) => w.exclusive_op(&mut rng, &mut open),
                    (1 | 2, 0) => w.exclusive_op(&mut rng, &mut open),
                    (1 | 2, _) => w.shared_dio_write(&mut rng, &mut open, k - 1),
                    _ => w.shared_dio_read(&mut rng, &mut open, &mut buf),
                }
            }
        }));
    }
    for h in workers {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    for h in helpers {
        h.join().unwrap();
    }
    let done: Vec<u64> = world.done.iter().map(|d| d.load(Ordering::Relaxed)).collect();
    std::println!("seed {seed}: exclusive ops, shared direct writes, checked direct reads: {done:?}");
    assert!(
        done[0] >= 200 && done[1] >= 100 && done[2] >= 100,
        "seed {seed}: too little concurrency: {done:?}"
    );
    let m = world.model.lock().unwrap();
    let mut open = f.open();
    assert_eq!(f.size(), m.data.len() as u64, "seed {seed}");
    assert!(f.read_all(&mut open).unwrap() == m.data, "seed {seed}: the file through the cache");
    f.fsync(&mut open, false).unwrap();
    f.drop_cache().unwrap();
    assert!(f.read_all(&mut open).unwrap() == m.data, "seed {seed}: after dropping the cache");
    assert!(f.read_disk(0, m.data.len()).unwrap() == m.data, "seed {seed}: on the device");
    assert!(src.read_disk(0, src_data.len()).unwrap() == src_data, "seed {seed}: the clone source");
    assert!(!m.snapshots.is_empty(), "seed {seed}: the test took snapshots");
    for (g, data) in &m.snapshots {
        let mut og = g.open();
        assert!(g.read_all(&mut og).unwrap() == *data, "seed {seed}: a snapshot changed");
        g.fsync(&mut og, false).unwrap();
        assert!(g.read_disk(0, data.len()).unwrap() == *data, "seed {seed}: a snapshot on the device");
    }
    rig.fs.check().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}

/// Runs `op` on another thread while a direct I/O is registered on `waited_on`; `op` must not
/// finish before the I/O ends.
fn waits_for_dio(waited_on: &MemFile, what: &str, op: impl FnOnce() + Send + 'static) {
    let guard = waited_on.file().mapping().dio_begin();
    let done = Arc::new(AtomicBool::new(false));
    let t = {
        let done = done.clone();
        thread::spawn(move || {
            op();
            done.store(true, Ordering::Release);
        })
    };
    thread::sleep(std::time::Duration::from_millis(30));
    assert!(!done.load(Ordering::Acquire), "{what} ran while direct I/O was in flight");
    drop(guard);
    t.join().unwrap();
    assert!(done.load(Ordering::Acquire));
}

#[test]
fn truncate_punch_clone_and_invalidation_wait_for_direct_io_in_flight() {
    // Direct I/O in flight holds the mapping's DIO count (taken here by hand, so it stays in
    // flight as long as the test wants): nothing may free or remap blocks under it.
    let disk = Arc::new(RamDisk::from_image(vec![GARBAGE; 16 << 20], 512));
    let rig = Rig::on(StdPlatform::arc(), disk as Arc<dyn BlockDevice>, RigOpts::new(BS)).unwrap();
    let f = rig.file().unwrap();
    let g = rig.file().unwrap();
    let mut o = f.open();
    f.direct_write(&mut o, 0, &[7u8; 65536], WriteFlags::empty()).unwrap();
    let h = f.clone();
    waits_for_dio(&f, "punch", move || h.punch_hole(4096, 8192).unwrap());
    let h = f.clone();
    waits_for_dio(&f, "invalidation", move || h.invalidate().unwrap());
    let (h, k) = (f.clone(), g.clone());
    waits_for_dio(&g, "clone into the file", move || {
        k.clone_range_from(&h, 0, 0, 0).unwrap();
    });
    let (h, k) = (f.clone(), g.clone());
    waits_for_dio(&f, "clone out of the file", move || {
        k.clone_range_from(&h, 0, 0, 0).unwrap();
    });
    let h = f.clone();
    waits_for_dio(&f, "truncate", move || h.truncate(0).unwrap());
    assert_eq!(f.size(), 0);
    let mut expect = vec![7u8; 65536];
    expect[4096..12288].fill(0);
    let mut og = g.open();
    assert_eq!(g.read_all(&mut og).unwrap(), expect);
    rig.fs.check().unwrap();
}
