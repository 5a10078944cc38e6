//! [`TraceDisk`]: a pass-through [`BlockDevice`] that records every bio at submission (op,
//! flags, byte offset and length, segment count), so portable tests can assert the exact I/O
//! the engine issued, on any device (RamDisk on the host, virtio-blk in the kernel).
//!
//! It also keeps the peak of bios in flight below it (sampled after each submission).
//!
//! Put it directly under the engine (above the [`Queue`](crate::block::Queue)) to see the
//! engine's bios before splitting and merging.
//!
//! Lock order: one spin lock (the log), never held while calling the device.
//! Linux <-> here: blktrace's `Q` (queue) events, in memory.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use crate::block::{Bio, BioFlags, BioOp, BlockDevice, DeviceInfo, SECTOR_SIZE};

/// One submitted bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceOp {
    /// The op.
    pub op: BioOp,
    /// Its flags.
    pub flags: BioFlags,
    /// Byte offset on the device (0 for FLUSH).
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// Data segments.
    pub segments: usize,
}

/// Totals over a trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceCounts {
    /// READ bios.
    pub reads: u64,
    /// WRITE bios.
    pub writes: u64,
    /// FLUSH bios.
    pub flushes: u64,
    /// WRITE bios with FUA.
    pub fua_writes: u64,
    /// WRITE bios with PREFLUSH.
    pub preflush_writes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

impl TraceCounts {
    /// Totals of `ops`.
    pub fn of(ops: &[TraceOp]) -> Self {
        let mut c = Self::default();
        for t in ops {
            match t.op {
                BioOp::Read => {
                    c.reads += 1;
                    c.read_bytes += t.len;
                }
                BioOp::Write => {
                    c.writes += 1;
                    c.write_bytes += t.len;
                    c.fua_writes += t.flags.contains(BioFlags::FUA) as u64;
                    c.preflush_writes += t.flags.contains(BioFlags::PREFLUSH) as u64;
                }
                BioOp::Flush => c.flushes += 1,
                _ => {}
            }
        }
        c
    }
}

/// A recording pass-through device. See the module documentation.
pub struct TraceDisk {
    dev: Arc<dyn BlockDevice>,
    log: Mutex<Vec<TraceOp>>,
    peak: AtomicUsize,
}

impl TraceDisk {
    /// Records bios submitted to `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>) -> Arc<Self> {
        Arc::new(Self { dev, log: Mutex::new(Vec::new()), peak: AtomicUsize::new(0) })
    }

    /// The bios recorded so far.
    pub fn ops(&self) -> Vec<TraceOp> {
        self.log.lock().clone()
    }

    /// Takes the bios recorded so far (the log starts empty again).
    pub fn take(&self) -> Vec<TraceOp> {
        core::mem::take(&mut *self.log.lock())
    }

    /// Totals of the bios recorded so far.
    pub fn counts(&self) -> TraceCounts {
        TraceCounts::of(&self.log.lock())
    }

    /// Forgets the log and the in-flight peak.
    pub fn clear(&self) {
        self.log.lock().clear();
        self.peak.store(0, Ordering::Relaxed);
    }

    /// The most bios in flight below right after a submission since the last
    /// [`TraceDisk::clear`] (how many the engine had in flight together).
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The device below.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }
}

impl BlockDevice for TraceDisk {
    fn info(&self) -> DeviceInfo {
        self.dev.info()
    }

    fn submit(&self, bio: Bio) {
        let t = TraceOp {
            op: bio.op,
            flags: bio.flags,
            offset: bio.sector * SECTOR_SIZE,
            len: bio.bytes(),
            segments: bio.segments.len(),
        };
        self.log.lock().push(t);
        self.dev.submit(bio);
        self.peak.fetch_max(self.dev.in_flight(), Ordering::Relaxed);
    }

    fn poll(&self) -> usize {
        self.dev.poll()
    }

    fn in_flight(&self) -> usize {
        self.dev.in_flight()
    }
}
