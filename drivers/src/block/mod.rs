//! The block layer: the [`BlockDevice`] trait, bios, and the devices every port gets for free.
//!
//! A [`Bio`] is one I/O: an op, a start sector (always in 512-byte units, like Linux), and
//! scatter-gather [`Segment`]s of DMA-able memory. Submission is asynchronous: completion is
//! reported exactly once through the bio's [`BioEnd`], from [`BlockDevice::poll`] (or from inside
//! `submit` for a bio that is rejected at once). Many bios may be in flight. Blocking helpers
//! live in [`sync`].
//!
//! Completion callbacks run in whatever context calls `poll`; they must be short and must not
//! take locks a submitter may hold while it waits (Linux's rule for bi_end_io in IRQ context).
//!
//! The pieces, bottom up:
//!
//! - drivers implement [`BlockDevice`] with their real limits: [`RamDisk`] here, virtio-blk
//!   under feature `virtio`;
//! - [`Queue`] ([`queue`]) fronts a driver and accepts any valid bio: splitting, merging,
//!   plugging, FUA / PREFLUSH sequencing, queue-depth accounting. Upper layers talk to a queue;
//! - test doubles stack anywhere: [`FaultDisk`] ([`fault`]) fails scripted requests,
//!   [`CrashRecorder`] ([`crash`]) logs completed writes and flushes to rebuild crash states;
//! - [`sync`] has blocking helpers for metadata, tools and tests.
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | `struct bio`, `bio_vec` | [`Bio`], [`Segment`] |
//! | `REQ_OP_READ/WRITE/FLUSH/DISCARD/WRITE_ZEROES` | [`BioOp`] |
//! | `REQ_FUA`, `REQ_PREFLUSH` | [`BioFlags`] |
//! | `bi_end_io` + `bi_private` | [`BioEnd`] (an `Arc<dyn BioComplete>` and a cookie; no allocation) |
//! | `queue_limits` | [`DeviceInfo`] |
//! | `blk_poll` / IRQ completion | [`BlockDevice::poll`] |

use alloc::sync::Arc;
use core::ptr::NonNull;

use crate::errno::Result;

pub mod bench;
pub mod conformance;
pub mod crash;
pub mod fault;
pub mod prng;
pub mod queue;
pub mod ramdisk;
pub mod sync;
#[cfg(test)]
pub(crate) mod testutil;

pub use crash::{CrashLog, CrashRecorder, CrashState};
pub use fault::{FaultDisk, FaultRule, OpMask, RuleId, RuleStats};
pub use queue::{Plug, Queue, QueueConfig, QueueStats};
pub use ramdisk::{CompletionOrder, RamDisk};

/// Sector unit of [`Bio::sector`], as in Linux: 512 bytes whatever the logical block size.
pub const SECTOR_SIZE: u64 = 512;
/// log2 of [`SECTOR_SIZE`].
pub const SECTOR_SHIFT: u32 = 9;
/// Most segments one bio carries (Linux: `BIO_MAX_VECS` is 256 single pages; our segments may
/// span whole multi-page folios, so fewer suffice).
pub const BIO_MAX_SEGMENTS: usize = 64;

bitflags::bitflags! {
    /// What a device can do beyond read and write.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DeviceFeatures: u32 {
        /// A volatile write cache that FLUSH makes durable. Without it writes are durable on
        /// completion and a flush is a no-op.
        const FLUSH = 1 << 0;
        /// Native forced-unit-access writes. Without it FUA is done as write + flush.
        const FUA = 1 << 1;
        /// DISCARD is supported.
        const DISCARD = 1 << 2;
        /// WRITE_ZEROES is supported.
        const WRITE_ZEROES = 1 << 3;
        /// The device rejects writes.
        const READ_ONLY = 1 << 4;
    }
}

/// Device facts, as the device reports them (Linux: `struct queue_limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Smallest addressable unit in bytes (512 or 4096 typically). I/O must be aligned to it.
    pub logical_block_size: u32,
    /// Preferred minimum write unit in bytes.
    pub physical_block_size: u32,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Most segments in one request.
    pub max_segments: u16,
    /// Largest single segment in bytes.
    pub max_segment_bytes: u32,
    /// Largest request in bytes.
    pub max_request_bytes: u32,
    /// Requests the device can have in flight at once.
    pub queue_depth: u16,
    /// Required alignment in bytes of segment memory for DMA.
    pub dma_alignment: u32,
    /// Most sectors one DISCARD may cover (0 when unsupported).
    pub max_discard_sectors: u32,
    /// Most sectors one WRITE_ZEROES may cover (0 when unsupported).
    pub max_write_zeroes_sectors: u32,
    /// Optional features.
    pub features: DeviceFeatures,
}

impl DeviceInfo {
    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.sectors * SECTOR_SIZE
    }
}

/// The operation of a bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BioOp {
    /// Read into the segments.
    Read,
    /// Write from the segments.
    Write,
    /// Make every completed write durable (no data, no sector).
    Flush,
    /// The device may forget `[sector, sector + sectors)` (reads then return zeros or old data
    /// as the device documents; Foliage never relies on the contents).
    Discard,
    /// `[sector, sector + sectors)` reads as zeros afterwards.
    WriteZeroes,
}

impl BioOp {
    /// True for ops that carry data segments.
    pub fn has_data(self) -> bool {
        matches!(self, BioOp::Read | BioOp::Write)
    }

    /// True for ops that change the medium.
    pub fn is_write(self) -> bool {
        matches!(self, BioOp::Write | BioOp::Discard | BioOp::WriteZeroes)
    }
}

bitflags::bitflags! {
    /// Modifiers of a bio.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct BioFlags: u32 {
        /// The data is durable when the bio completes (done as write + flush where the device
        /// has no native FUA).
        const FUA = 1 << 0;
        /// Flush the device cache before this bio (its data is ordered after all writes that
        /// completed before it was submitted).
        const PREFLUSH = 1 << 1;
        /// Metadata I/O (accounting and tracing only).
        const META = 1 << 2;
    }
}

/// One scatter-gather element: a range of DMA-able memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    virt: NonNull<u8>,
    phys: u64,
    len: u32,
}

// SAFETY: a Segment is an address range; whoever built it promised validity until completion.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// A segment of `len` bytes at kernel-virtual `virt`, device-visible at `phys`.
    ///
    /// # Safety
    ///
    /// The memory must be valid for `len` bytes, physically contiguous at `phys`, and stay valid
    /// and untouched by the CPU (read-only for writes) until the bio carrying it completes.
    pub unsafe fn new(virt: NonNull<u8>, phys: u64, len: u32) -> Self {
        Self { virt, phys, len }
    }

    /// Kernel-virtual address.
    pub fn virt(&self) -> NonNull<u8> {
        self.virt
    }

    /// Device-visible address.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for an empty segment (never valid in a bio).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The receiver of bio completions (Linux: `bi_end_io`). One object can serve many bios,
/// told apart by the cookie, so a submitter allocates nothing per bio.
pub trait BioComplete: Send + Sync {
    /// Called exactly once per bio with its outcome.
    fn complete(&self, cookie: u64, result: Result<()>);
}

/// Where a bio's completion goes.
#[derive(Clone)]
pub struct BioEnd {
    /// The receiver.
    pub target: Arc<dyn BioComplete>,
    /// Passed back to the receiver.
    pub cookie: u64,
}

impl BioEnd {
    /// Completion to `target` with `cookie`.
    pub fn new(target: Arc<dyn BioComplete>, cookie: u64) -> Self {
        Self { target, cookie }
    }

    /// Reports the outcome.
    pub fn complete(self, result: Result<()>) {
        self.target.complete(self.cookie, result)
    }
}

/// One block I/O.
pub struct Bio {
    /// The operation.
    pub op: BioOp,
    /// Modifiers.
    pub flags: BioFlags,
    /// Start, in 512-byte sectors.
    pub sector: u64,
    /// Length in sectors for DISCARD / WRITE_ZEROES (data ops derive it from the segments).
    pub dataless_sectors: u64,
    /// Data segments (Read / Write only).
    pub segments: heapless::Vec<Segment, BIO_MAX_SEGMENTS>,
    /// Completion.
    pub end: BioEnd,
}

impl Bio {
    /// A bio without segments yet.
    pub fn new(op: BioOp, sector: u64, end: BioEnd) -> Self {
        Self {
            op,
            flags: BioFlags::empty(),
            sector,
            dataless_sectors: 0,
            segments: heapless::Vec::new(),
            end,
        }
    }

    /// A FLUSH bio.
    pub fn flush(end: BioEnd) -> Self {
        Self::new(BioOp::Flush, 0, end)
    }

    /// A DISCARD or WRITE_ZEROES bio over `sectors` sectors.
    pub fn dataless(op: BioOp, sector: u64, sectors: u64, end: BioEnd) -> Self {
        let mut bio = Self::new(op, sector, end);
        bio.dataless_sectors = sectors;
        bio
    }

    /// Appends a segment; gives it back when the bio is full.
    pub fn push(&mut self, seg: Segment) -> core::result::Result<(), Segment> {
        self.segments.push(seg)
    }

    /// Bytes of data carried (0 for FLUSH; the covered range for DISCARD / WRITE_ZEROES).
    pub fn bytes(&self) -> u64 {
        match self.op {
            BioOp::Read | BioOp::Write => self.segments.iter().map(|s| s.len() as u64).sum(),
            BioOp::Flush => 0,
            BioOp::Discard | BioOp::WriteZeroes => self.dataless_sectors * SECTOR_SIZE,
        }
    }

    /// Sectors covered.
    pub fn sectors(&self) -> u64 {
        self.bytes() / SECTOR_SIZE
    }
}

/// A block device: the interface every disk driver implements and Foliage's upper layers use.
///
/// Object safe, `Send + Sync`. Implementations validate every bio: one that is out of range,
/// not aligned to the logical block size, malformed, or a write to a read-only device completes
/// with `EINVAL` (`EROFS` for the read-only case) and never panics. Device failures complete
/// with `EIO`.
pub trait BlockDevice: Send + Sync {
    /// Device facts.
    fn info(&self) -> DeviceInfo;

    /// Starts `bio`. Its completion is reported exactly once through `bio.end`, possibly before
    /// `submit` returns. When the device queue is full, `submit` makes room by polling.
    fn submit(&self, bio: Bio);

    /// Reaps finished requests and runs their completions; returns how many completed.
    fn poll(&self) -> usize;

    /// Bios submitted and not yet completed.
    fn in_flight(&self) -> usize;
}

/// Checks a bio against the device facts: the validation every driver performs first.
pub fn validate(info: &DeviceInfo, bio: &Bio) -> Result<()> {
    use crate::errno::Errno;
    let lbs = info.logical_block_size as u64;
    if bio.op == BioOp::Flush {
        return if bio.segments.is_empty() { Ok(()) } else { Err(Errno::EINVAL) };
    }
    if bio.op.is_write() && info.features.contains(DeviceFeatures::READ_ONLY) {
        return Err(Errno::EROFS);
    }
    match bio.op {
        BioOp::Read | BioOp::Write => {
            if bio.segments.is_empty() || bio.dataless_sectors != 0 {
                return Err(Errno::EINVAL);
            }
            for s in &bio.segments {
                if s.is_empty() || !(s.len() as u64).is_multiple_of(lbs) {
                    return Err(Errno::EINVAL);
                }
            }
        }
        BioOp::Discard if !info.features.contains(DeviceFeatures::DISCARD) => return Err(Errno::EOPNOTSUPP),
        BioOp::WriteZeroes if !info.features.contains(DeviceFeatures::WRITE_ZEROES) => {
            return Err(Errno::EOPNOTSUPP)
        }
        _ => {
            if !bio.segments.is_empty() || bio.dataless_sectors == 0 {
                return Err(Errno::EINVAL);
            }
        }
    }
    let start = bio.sector.checked_mul(SECTOR_SIZE).ok_or(Errno::EINVAL)?;
    if start % lbs != 0 {
        return Err(Errno::EINVAL);
    }
    let end = bio.sector.checked_add(bio.sectors()).ok_or(Errno::EINVAL)?;
    if end > info.sectors {
        return Err(Errno::EINVAL);
    }
    Ok(())
}
