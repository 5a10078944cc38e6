//! Device setup facts: the feature bits Foliage negotiates, the virtio-blk configuration space,
//! and the [`DeviceInfo`] limits derived from them.
//!
//! Owns: [`BlkFeatures`], [`BlkConfig`] (read once at probe, generation-checked) and
//! [`derive_info`], a pure function so every limit rule is tested on the host. No locks.
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_blk.c: virtblk_probe`) | here |
//! |---|---|
//! | `features[]` table | [`DRIVER_FEATURES`] |
//! | `virtio_cread*` of `struct virtio_blk_config` | [`BlkConfig::read`] |
//! | `sg_elems = seg_max` (1 without `SEG_MAX`), `max_segment_size = size_max` | [`derive_info`] |
//! | `blk_queue_logical_block_size(blk_size)`, `physical_block_exp` | [`derive_info`] |
//! | `max_discard_sectors` / `max_write_zeroes_sectors` (0 -> `UINT_MAX`) | [`derive_info`] |
//! | `num_vqs = min(num_queues, nr_cpu_ids)` | `min(num_queues, Options::max_queues)` |
//!
//! Deliberate deviations: `VIRTIO_F_EVENT_IDX` is not negotiated (virtio-drivers 0.13's
//! `should_notify` compares ring indices without wrap-around, which can miss a notification once
//! the 16-bit index wraps with many requests in flight); `VIRTIO_BLK_F_CONFIG_WCE` is not
//! negotiated (the cache mode is then write-back whenever `FLUSH` is, per the spec), and at most
//! [`BIO_MAX_SEGMENTS`] segments are used per request.

use virtio_drivers::transport::Transport;

use crate::block::{DeviceFeatures, DeviceInfo, BIO_MAX_SEGMENTS, SECTOR_SIZE};
use crate::errno::{Errno, Result};

bitflags::bitflags! {
    /// virtio-blk feature bits (device-specific 0..23, ring/transport 24..).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct BlkFeatures: u64 {
        /// `size_max` is valid.
        const SIZE_MAX = 1 << 1;
        /// `seg_max` is valid.
        const SEG_MAX = 1 << 2;
        /// `geometry` is valid.
        const GEOMETRY = 1 << 4;
        /// The device is read-only.
        const RO = 1 << 5;
        /// `blk_size` (logical block size) is valid.
        const BLK_SIZE = 1 << 6;
        /// FLUSH is supported (a volatile write cache).
        const FLUSH = 1 << 9;
        /// `topology` (physical block exponent, alignment, I/O sizes) is valid.
        const TOPOLOGY = 1 << 10;
        /// The cache mode can be switched.
        const CONFIG_WCE = 1 << 11;
        /// `num_queues` is valid: several request queues.
        const MQ = 1 << 12;
        /// DISCARD is supported.
        const DISCARD = 1 << 13;
        /// WRITE_ZEROES is supported.
        const WRITE_ZEROES = 1 << 14;
        /// Indirect descriptor tables.
        const RING_INDIRECT_DESC = 1 << 28;
        /// `used_event` / `avail_event` notification suppression.
        const RING_EVENT_IDX = 1 << 29;
        /// A virtio 1.x (non-legacy) device.
        const VERSION_1 = 1 << 32;
        /// The device accesses memory through an IOMMU / platform translation.
        const ACCESS_PLATFORM = 1 << 33;
    }
}

/// What Foliage's driver accepts (see the module docs for what it leaves out and why).
pub const DRIVER_FEATURES: BlkFeatures = BlkFeatures::SIZE_MAX
    .union(BlkFeatures::SEG_MAX)
    .union(BlkFeatures::RO)
    .union(BlkFeatures::BLK_SIZE)
    .union(BlkFeatures::FLUSH)
    .union(BlkFeatures::TOPOLOGY)
    .union(BlkFeatures::MQ)
    .union(BlkFeatures::DISCARD)
    .union(BlkFeatures::WRITE_ZEROES)
    .union(BlkFeatures::RING_INDIRECT_DESC)
    .union(BlkFeatures::VERSION_1);

/// The virtio-blk configuration space fields Foliage uses (zero when the feature that makes a
/// field valid was not negotiated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors (whatever the logical block size).
    pub capacity: u64,
    /// Largest segment in bytes (`SIZE_MAX`).
    pub size_max: u32,
    /// Most data segments per request (`SEG_MAX`).
    pub seg_max: u32,
    /// Logical block size in bytes (`BLK_SIZE`).
    pub blk_size: u32,
    /// log2(physical blocks / logical block) (`TOPOLOGY`).
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block (`TOPOLOGY`).
    pub alignment_offset: u8,
    /// Suggested minimum I/O size in logical blocks (`TOPOLOGY`).
    pub min_io_size: u16,
    /// Optimal I/O size in logical blocks (`TOPOLOGY`).
    pub opt_io_size: u32,
    /// Request queues (`MQ`; 1 otherwise).
    pub num_queues: u16,
    /// Most sectors per DISCARD (`DISCARD`).
    pub max_discard_sectors: u32,
    /// Most ranges per DISCARD (`DISCARD`).
    pub max_discard_seg: u32,
    /// Discard granularity in sectors (`DISCARD`).
    pub discard_sector_alignment: u32,
    /// Most sectors per WRITE_ZEROES (`WRITE_ZEROES`).
    pub max_write_zeroes_sectors: u32,
    /// Most ranges per WRITE_ZEROES (`WRITE_ZEROES`).
    pub max_write_zeroes_seg: u32,
}

fn word<T: Transport>(t: &T, offset: usize) -> Result<u32> {
    t.read_config_space::<u32>(offset).map_err(|_| Errno::EIO)
}

fn byte<T: Transport>(t: &T, offset: usize) -> Result<u8> {
    Ok((word(t, offset & !3)? >> ((offset & 3) * 8)) as u8)
}

fn half<T: Transport>(t: &T, offset: usize) -> Result<u16> {
    debug_assert!(offset.is_multiple_of(2));
    Ok((word(t, offset & !3)? >> ((offset & 3) * 8)) as u16)
}

impl BlkConfig {
    /// Reads the fields valid under `features`, retrying until the configuration generation is
    /// stable. A device whose configuration space is too small for a negotiated feature's
    /// fields is refused (`EIO`).
    pub fn read<T: Transport>(t: &T, features: BlkFeatures) -> Result<Self> {
        t.read_consistent(|| Ok(Self::read_once(t, features))).map_err(|_| Errno::EIO)?
    }

    fn read_once<T: Transport>(t: &T, f: BlkFeatures) -> Result<Self> {
        let mut c = BlkConfig {
            capacity: u64::from(word(t, 0)?) | u64::from(word(t, 4)?) << 32,
            num_queues: 1,
            ..Default::default()
        };
        if f.contains(BlkFeatures::SIZE_MAX) {
            c.size_max = word(t, 8)?;
        }
        if f.contains(BlkFeatures::SEG_MAX) {
            c.seg_max = word(t, 12)?;
        }
        if f.contains(BlkFeatures::BLK_SIZE) {
            c.blk_size = word(t, 20)?;
        }
        if f.contains(BlkFeatures::TOPOLOGY) {
            c.physical_block_exp = byte(t, 24)?;
            c.alignment_offset = byte(t, 25)?;
            c.min_io_size = half(t, 26)?;
            c.opt_io_size = word(t, 28)?;
        }
        if f.contains(BlkFeatures::MQ) {
            c.num_queues = half(t, 34)?;
        }
        if f.contains(BlkFeatures::DISCARD) {
            c.max_discard_sectors = word(t, 36)?;
            c.max_discard_seg = word(t, 40)?;
            c.discard_sector_alignment = word(t, 44)?;
        }
        if f.contains(BlkFeatures::WRITE_ZEROES) {
            c.max_write_zeroes_sectors = word(t, 48)?;
            c.max_write_zeroes_seg = word(t, 52)?;
        }
        Ok(c)
    }
}

/// Largest request Foliage builds, whatever the device allows (used-ring lengths are 32-bit and
/// QEMU splits anything larger internally anyway).
pub const MAX_REQUEST_BYTES: u32 = 1 << 30;

/// The [`DeviceInfo`] of a device with config `c` and negotiated features `f`, driven through
/// `queues` queues of `queue_size` request slots each.
///
/// Refuses (`EINVAL`) a logical block size that is not a power of two in 512..=65536 (Linux's
/// `blk_validate_block_size`) and a queue too small to carry one data request.
pub fn derive_info(c: &BlkConfig, f: BlkFeatures, queue_size: u16, queues: u16) -> Result<DeviceInfo> {
    let lbs = if f.contains(BlkFeatures::BLK_SIZE) { c.blk_size } else { 512 };
    if !lbs.is_power_of_two() || !(512..=65536).contains(&lbs) {
        return Err(Errno::EINVAL);
    }
    if queue_size < 4 || queues == 0 {
        return Err(Errno::EINVAL);
    }
    let exp = if f.contains(BlkFeatures::TOPOLOGY) { c.physical_block_exp } else { 0 };
    // An absurd exponent (beyond 1 MiB physical blocks) is ignored rather than trusted.
    let physical = if u32::from(exp) <= 20 - lbs.trailing_zeros().min(20) { lbs << exp } else { lbs };
    let per_block = u64::from(lbs) / SECTOR_SIZE;
    let sectors = c.capacity / per_block * per_block;
    // Header and status take two descriptors; a chain may never be longer than the queue.
    let seg_max = if f.contains(BlkFeatures::SEG_MAX) { c.seg_max.max(1) } else { 1 };
    let max_segments = seg_max.min(BIO_MAX_SEGMENTS as u32).min(u32::from(queue_size) - 2).max(1) as u16;
    let round = |bytes: u32| bytes / lbs * lbs;
    let max_segment_bytes = if f.contains(BlkFeatures::SIZE_MAX) && c.size_max != 0 {
        round(c.size_max).max(lbs)
    } else {
        round(u32::MAX)
    };
    let max_request_bytes =
        round((u64::from(max_segment_bytes) * u64::from(max_segments)).min(MAX_REQUEST_BYTES.into()) as u32)
            .max(lbs);
    let mut features = DeviceFeatures::empty();
    let mut discard = 0;
    let mut write_zeroes = 0;
    if f.contains(BlkFeatures::FLUSH) {
        features |= DeviceFeatures::FLUSH;
    }
    if f.contains(BlkFeatures::RO) {
        features |= DeviceFeatures::READ_ONLY;
    }
    let whole = |sectors: u32| {
        // A limit of 0 means "no limit" (Linux); keep limits whole logical blocks.
        let s = if sectors == 0 { u32::MAX } else { sectors };
        (u64::from(s) / per_block * per_block) as u32
    };
    if f.contains(BlkFeatures::DISCARD) {
        discard = whole(c.max_discard_sectors);
        if discard > 0 {
            features |= DeviceFeatures::DISCARD;
        }
    }
    if f.contains(BlkFeatures::WRITE_ZEROES) {
        write_zeroes = whole(c.max_write_zeroes_sectors);
        if write_zeroes > 0 {
            features |= DeviceFeatures::WRITE_ZEROES;
        }
    }
    Ok(DeviceInfo {
        logical_block_size: lbs,
        physical_block_size: physical,
        sectors,
        max_segments,
        max_segment_bytes,
        max_request_bytes,
        queue_depth: queue_size.saturating_mul(queues),
        // virtio descriptors address bytes: no alignment rule for segment memory.
        dma_alignment: 1,
        max_discard_sectors: discard,
        max_write_zeroes_sectors: write_zeroes,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_like() -> (BlkConfig, BlkFeatures) {
        let c = BlkConfig {
            capacity: 131072,
            seg_max: 254,
            blk_size: 512,
            num_queues: 1,
            max_discard_sectors: 4194303,
            max_discard_seg: 1,
            discard_sector_alignment: 1,
            max_write_zeroes_sectors: 4194303,
            max_write_zeroes_seg: 1,
            ..Default::default()
        };
        let f = BlkFeatures::SEG_MAX
            | BlkFeatures::BLK_SIZE
            | BlkFeatures::FLUSH
            | BlkFeatures::TOPOLOGY
            | BlkFeatures::DISCARD
            | BlkFeatures::WRITE_ZEROES
            | BlkFeatures::RING_INDIRECT_DESC
            | BlkFeatures::VERSION_1;
        (c, f)
    }

    #[test]
    fn qemu_defaults_give_deep_queue_and_clamped_segments() {
        let (c, f) = qemu_like();
        let i = derive_info(&c, f, 256, 1).unwrap();
        assert_eq!(i.logical_block_size, 512);
        assert_eq!(i.physical_block_size, 512);
        assert_eq!(i.sectors, 131072);
        assert_eq!(i.max_segments, BIO_MAX_SEGMENTS as u16);
        assert_eq!(i.max_segment_bytes, u32::MAX / 512 * 512);
        assert_eq!(i.max_request_bytes, MAX_REQUEST_BYTES);
        assert_eq!(i.queue_depth, 256);
        assert_eq!(i.max_discard_sectors, 4194303);
        assert_eq!(
            i.features,
            DeviceFeatures::FLUSH | DeviceFeatures::DISCARD | DeviceFeatures::WRITE_ZEROES
        );
        assert_eq!(derive_info(&c, f, 256, 4).unwrap().queue_depth, 1024);
    }

    #[test]
    fn four_k_blocks_round_capacity_and_limits() {
        let (mut c, f) = qemu_like();
        c.blk_size = 4096;
        c.physical_block_exp = 1;
        c.capacity = 131072 + 7;
        c.max_discard_sectors = 4194303;
        let i = derive_info(&c, f, 256, 1).unwrap();
        assert_eq!(i.logical_block_size, 4096);
        assert_eq!(i.physical_block_size, 8192);
        assert_eq!(i.sectors, 131072);
        assert_eq!(i.max_discard_sectors, 4194303 / 8 * 8);
        assert_eq!(i.max_segment_bytes % 4096, 0);
    }

    #[test]
    fn missing_seg_max_means_one_segment_and_size_max_caps_segments() {
        let (mut c, mut f) = qemu_like();
        f.remove(BlkFeatures::SEG_MAX);
        f.insert(BlkFeatures::SIZE_MAX);
        c.size_max = 65536 + 100;
        let i = derive_info(&c, f, 256, 1).unwrap();
        assert_eq!(i.max_segments, 1);
        assert_eq!(i.max_segment_bytes, 65536);
        assert_eq!(i.max_request_bytes, 65536);
        // A queue of 8 carries at most 6 data segments per chain.
        let (c, f) = qemu_like();
        assert_eq!(derive_info(&c, f, 8, 1).unwrap().max_segments, 6);
    }

    #[test]
    fn zero_limits_mean_unlimited_and_ro_flush_map_to_features() {
        let (mut c, mut f) = qemu_like();
        c.max_discard_sectors = 0;
        f.insert(BlkFeatures::RO);
        f.remove(BlkFeatures::FLUSH | BlkFeatures::WRITE_ZEROES);
        let i = derive_info(&c, f, 16, 1).unwrap();
        assert_eq!(i.max_discard_sectors, u32::MAX);
        assert_eq!(i.max_write_zeroes_sectors, 0);
        assert_eq!(i.features, DeviceFeatures::READ_ONLY | DeviceFeatures::DISCARD);
    }

    #[test]
    fn bad_block_sizes_and_tiny_queues_are_refused() {
        let (mut c, f) = qemu_like();
        for bad in [0, 256, 1000, 131072] {
            c.blk_size = bad;
            assert_eq!(derive_info(&c, f, 256, 1), Err(Errno::EINVAL), "blk_size {bad}");
        }
        c.blk_size = 512;
        assert_eq!(derive_info(&c, f, 2, 1), Err(Errno::EINVAL));
        assert_eq!(derive_info(&c, f, 256, 0), Err(Errno::EINVAL));
        c.physical_block_exp = 200;
        assert_eq!(derive_info(&c, f, 256, 1).unwrap().physical_block_size, 512);
    }
}
