//! The limits the request layer splits and merges to, derived once from the driver's
//! [`DeviceInfo`], and the relaxed [`DeviceInfo`] the [`Queue`](super::Queue) reports upward.
//!
//! Every limit is made usable before it is used: byte limits are rounded down to the logical
//! block size (a request or segment piece is always a whole number of logical blocks) and
//! raised to at least one block; the segment count is clamped to `1..=BIO_MAX_SEGMENTS`; a
//! DISCARD / WRITE_ZEROES limit smaller than one logical block makes the op unsupported.
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | `struct queue_limits` (`max_segments`, `max_segment_size`, `max_sectors`, ...) | [`Limits`] |
//! | `blk_queue_fua`, `blk_queue_write_cache` | [`Limits::native_fua`], [`Limits::volatile_cache`] |
//! | the stacked limits a request queue shows to the fs | [`Limits::upper_info`] (anything valid) |

use crate::block::{DeviceFeatures, DeviceInfo, BIO_MAX_SEGMENTS, SECTOR_SIZE};

/// The driver's limits in the form the splitting and merging code uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Logical block size in bytes.
    pub lbs: u64,
    /// Segments per driver request, `1..=BIO_MAX_SEGMENTS`.
    pub max_segments: usize,
    /// Bytes per segment, a multiple of `lbs`.
    pub segment_bytes: u64,
    /// Bytes per READ / WRITE request, a multiple of `lbs`.
    pub request_bytes: u64,
    /// Sectors per DISCARD request, a multiple of the block size in sectors (0: unsupported).
    pub discard_sectors: u64,
    /// Sectors per WRITE_ZEROES request, as above.
    pub write_zeroes_sectors: u64,
    /// Driver requests in flight at most.
    pub depth: usize,
    /// The device has a volatile write cache: FLUSH does I/O, FUA means something.
    pub volatile_cache: bool,
    /// The device does FUA writes itself (only meaningful with a volatile cache).
    pub native_fua: bool,
}

/// The most driver requests a queue keeps in flight, whatever the device says (bounds the slot
/// table the queue allocates up front).
pub(crate) const MAX_DEPTH: usize = 1024;

fn round_to_blocks(bytes: u64, lbs: u64) -> u64 {
    (bytes / lbs * lbs).max(lbs)
}

fn dataless_limit(supported: bool, max_sectors: u32, lbs: u64) -> u64 {
    let per_block = lbs / SECTOR_SIZE;
    let sectors = max_sectors as u64 / per_block * per_block;
    if supported {
        sectors
    } else {
        0
    }
}

impl Limits {
    /// The usable limits of a driver reporting `info`, with at most `depth_cap` requests in
    /// flight (0 means no cap beyond the device's own and [`MAX_DEPTH`]).
    pub fn from_device(info: &DeviceInfo, depth_cap: u16) -> Self {
        let lbs = (info.logical_block_size as u64).max(SECTOR_SIZE);
        let f = info.features;
        let mut depth = (info.queue_depth as usize).clamp(1, MAX_DEPTH);
        if depth_cap != 0 {
            depth = depth.min(depth_cap as usize);
        }
        let volatile_cache = f.contains(DeviceFeatures::FLUSH);
        Self {
            lbs,
            max_segments: (info.max_segments as usize).clamp(1, BIO_MAX_SEGMENTS),
            segment_bytes: round_to_blocks(info.max_segment_bytes as u64, lbs),
            request_bytes: round_to_blocks(info.max_request_bytes as u64, lbs),
            discard_sectors: dataless_limit(
                f.contains(DeviceFeatures::DISCARD),
                info.max_discard_sectors,
                lbs,
            ),
            write_zeroes_sectors: dataless_limit(
                f.contains(DeviceFeatures::WRITE_ZEROES),
                info.max_write_zeroes_sectors,
                lbs,
            ),
            depth,
            volatile_cache,
            native_fua: volatile_cache && f.contains(DeviceFeatures::FUA),
        }
    }

    /// What the queue reports upward: the device's facts, with every size limit lifted (the
    /// queue splits), `queue_depth` the driver's effective depth (a parallelism hint: the queue
    /// itself holds any number of bios), and DISCARD / WRITE_ZEROES only where usable.
    pub fn upper_info(&self, device: &DeviceInfo) -> DeviceInfo {
        let mut features = device.features;
        features.set(DeviceFeatures::DISCARD, self.discard_sectors != 0);
        features.set(DeviceFeatures::WRITE_ZEROES, self.write_zeroes_sectors != 0);
        features.set(DeviceFeatures::FUA, self.native_fua);
        let max_bytes = (u32::MAX as u64 / self.lbs * self.lbs) as u32;
        let unlimited = |limit: u64| if limit == 0 { 0 } else { u32::MAX };
        DeviceInfo {
            logical_block_size: self.lbs as u32,
            max_segments: BIO_MAX_SEGMENTS as u16,
            max_segment_bytes: max_bytes,
            max_request_bytes: max_bytes,
            queue_depth: self.depth as u16,
            max_discard_sectors: unlimited(self.discard_sectors),
            max_write_zeroes_sectors: unlimited(self.write_zeroes_sectors),
            features,
            ..*device
        }
    }

    /// Most sectors one driver request of a dataless `op` may cover.
    pub fn dataless_sectors(&self, op: crate::block::BioOp) -> u64 {
        match op {
            crate::block::BioOp::Discard => self.discard_sectors,
            _ => self.write_zeroes_sectors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DeviceInfo {
        DeviceInfo {
            logical_block_size: 4096,
            physical_block_size: 4096,
            sectors: 1 << 20,
            max_segments: 500,
            max_segment_bytes: 10_000,
            max_request_bytes: 100,
            queue_depth: 0,
            dma_alignment: 8,
            max_discard_sectors: 7,
            max_write_zeroes_sectors: 20,
            features: DeviceFeatures::FUA | DeviceFeatures::DISCARD | DeviceFeatures::WRITE_ZEROES,
        }
    }

    #[test]
    fn odd_device_limits_become_usable() {
        let l = Limits::from_device(&info(), 0);
        assert_eq!(l.lbs, 4096);
        assert_eq!(l.max_segments, BIO_MAX_SEGMENTS);
        assert_eq!(l.segment_bytes, 8192, "rounded down to whole blocks");
        assert_eq!(l.request_bytes, 4096, "raised to one block");
        assert_eq!(l.discard_sectors, 0, "7 sectors is less than one 4 KiB block");
        assert_eq!(l.write_zeroes_sectors, 16);
        assert_eq!(l.depth, 1, "depth 0 is taken as 1");
        assert!(!l.volatile_cache);
        assert!(!l.native_fua, "FUA means nothing without a volatile cache");

        let up = l.upper_info(&info());
        assert_eq!(up.features, DeviceFeatures::WRITE_ZEROES);
        assert_eq!((up.max_discard_sectors, up.max_write_zeroes_sectors), (0, u32::MAX));
        assert_eq!(up.max_request_bytes % 4096, 0);
        assert_eq!(up.max_segments as usize, BIO_MAX_SEGMENTS);
        assert_eq!((up.sectors, up.dma_alignment), (1 << 20, 8));
    }

    #[test]
    fn depth_cap_applies_below_the_device() {
        let mut i = info();
        i.queue_depth = 5000;
        assert_eq!(Limits::from_device(&i, 0).depth, MAX_DEPTH);
        assert_eq!(Limits::from_device(&i, 3).depth, 3);
        i.features |= DeviceFeatures::FLUSH;
        let l = Limits::from_device(&i, 0);
        assert!(l.volatile_cache && l.native_fua);
    }
}
