//! The virtio-blk request format, and the plan that turns one bio into device requests.
//!
//! Owns: the request header / discard-range / status encodings (virtio 1.2, 5.2.6), the layout
//! of the small DMA area each request slot owns, and `Plan`: the ordered device requests one
//! bio needs (PREFLUSH -> data -> post-flush for FUA). No locks: plain data.
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_blk.c`, `blk-flush.c`) | here |
//! |---|---|
//! | `struct virtio_blk_outhdr` | `encode_header` |
//! | `struct virtio_blk_discard_write_zeroes` | `encode_range` |
//! | `virtblk_result()` (status byte -> `blk_status_t`) | `status_to_result` |
//! | `blk-flush.c` PREFLUSH / DATA / POSTFLUSH sequence | `Plan` (inside the driver) |
//!
//! Deliberate deviation: Linux keeps the flush sequence in the block layer and never sends a
//! PREFLUSH/FUA bio to virtio-blk with `VIRTIO_BLK_F_FLUSH`-only devices without first
//! splitting it. A Foliage driver is called directly by anyone (the blocking helpers, tests), so
//! the driver honours the flags itself: a FUA write is a write followed by a flush in the same
//! request slot. The driver does not advertise `DeviceFeatures::FUA` (it is not native), so a
//! `Queue` in front of it emulates FUA itself and sends plain writes; nothing is done twice.

use crate::block::{Bio, BioFlags, BioOp};
use crate::errno::{Errno, Result};

/// `VIRTIO_BLK_T_IN`: read.
pub(crate) const T_IN: u32 = 0;
/// `VIRTIO_BLK_T_OUT`: write.
pub(crate) const T_OUT: u32 = 1;
/// `VIRTIO_BLK_T_FLUSH`.
pub(crate) const T_FLUSH: u32 = 4;
/// `VIRTIO_BLK_T_GET_ID`: the 20-byte serial.
pub(crate) const T_GET_ID: u32 = 8;
/// `VIRTIO_BLK_T_DISCARD`.
pub(crate) const T_DISCARD: u32 = 11;
/// `VIRTIO_BLK_T_WRITE_ZEROES`.
pub(crate) const T_WRITE_ZEROES: u32 = 13;

/// `VIRTIO_BLK_S_OK`.
pub(crate) const S_OK: u8 = 0;
/// `VIRTIO_BLK_S_IOERR`.
pub(crate) const S_IOERR: u8 = 1;
/// `VIRTIO_BLK_S_UNSUPP`.
pub(crate) const S_UNSUPP: u8 = 2;
/// What the driver writes into the status byte before posting: a device that completes a
/// request without writing its status is detected (and reported as `EIO`).
pub(crate) const S_UNWRITTEN: u8 = 0xFF;

/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;

/// Bytes of DMA memory per request slot, laid out as below (naturally aligned fields).
pub(crate) const SLOT_DMA_BYTES: usize = 64;
/// Offset of the 16-byte request header.
pub(crate) const OFF_HEADER: usize = 0;
/// Offset of the 16-byte discard / write-zeroes range.
pub(crate) const OFF_RANGE: usize = 16;
/// Offset of the status byte.
pub(crate) const OFF_STATUS: usize = 32;
/// Offset of the 20-byte GET_ID buffer.
pub(crate) const OFF_ID: usize = 40;

const _: () = assert!(OFF_ID + ID_BYTES <= SLOT_DMA_BYTES && OFF_STATUS < OFF_ID);

/// The request header: type, reserved (ioprio), sector, little-endian.
pub(crate) fn encode_header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

/// One discard / write-zeroes range: sector, number of sectors, flags (bit 0 = unmap).
pub(crate) fn encode_range(sector: u64, sectors: u32, unmap: bool) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[0..8].copy_from_slice(&sector.to_le_bytes());
    r[8..12].copy_from_slice(&sectors.to_le_bytes());
    r[12..16].copy_from_slice(&u32::from(unmap).to_le_bytes());
    r
}

/// The outcome of a request from its status byte.
pub(crate) fn status_to_result(status: u8) -> Result<()> {
    match status {
        S_OK => Ok(()),
        S_UNSUPP => Err(Errno::EOPNOTSUPP),
        S_IOERR => Err(Errno::EIO),
        // An unwritten status, or anything the spec does not define.
        _ => Err(Errno::EIO),
    }
}

/// One device request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `VIRTIO_BLK_T_FLUSH`.
    Flush,
    /// `VIRTIO_BLK_T_IN` into the bio's segments.
    Read,
    /// `VIRTIO_BLK_T_OUT` from the bio's segments.
    Write,
    /// `VIRTIO_BLK_T_DISCARD` of the bio's range.
    Discard,
    /// `VIRTIO_BLK_T_WRITE_ZEROES` of the bio's range.
    WriteZeroes,
    /// `VIRTIO_BLK_T_GET_ID` (driver-internal, no bio).
    GetId,
}

impl Step {
    /// The request type on the wire.
    pub(crate) fn kind(self) -> u32 {
        match self {
            Step::Flush => T_FLUSH,
            Step::Read => T_IN,
            Step::Write => T_OUT,
            Step::Discard => T_DISCARD,
            Step::WriteZeroes => T_WRITE_ZEROES,
            Step::GetId => T_GET_ID,
        }
    }

    /// True when the step carries the bio's sector in its header.
    pub(crate) fn uses_sector(self) -> bool {
        matches!(self, Step::Read | Step::Write)
    }
}

/// The device requests one bio needs, in order, and how far it has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    steps: [Step; 3],
    len: u8,
    at: u8,
}

impl Plan {
    /// A plan of exactly these steps.
    pub(crate) fn of(steps: &[Step]) -> Self {
        debug_assert!(steps.len() <= 3);
        let mut p = Plan { steps: [Step::Flush; 3], len: 0, at: 0 };
        for &s in steps.iter().take(3) {
            p.steps[p.len as usize] = s;
            p.len += 1;
        }
        p
    }

    /// The plan for `bio` on a device that has (`cache`) or lacks a volatile write cache.
    ///
    /// Without a cache every completed write is durable: FLUSH, PREFLUSH and FUA need no I/O
    /// (an empty plan completes at once, successfully).
    pub(crate) fn for_bio(bio: &Bio, cache: bool) -> Self {
        let main = match bio.op {
            BioOp::Read => Step::Read,
            BioOp::Write => Step::Write,
            BioOp::Discard => Step::Discard,
            BioOp::WriteZeroes => Step::WriteZeroes,
            BioOp::Flush => return if cache { Plan::of(&[Step::Flush]) } else { Plan::of(&[]) },
        };
        let mut steps: heapless::Vec<Step, 3> = heapless::Vec::new();
        if cache && bio.flags.contains(BioFlags::PREFLUSH) {
            let _ = steps.push(Step::Flush);
        }
        let _ = steps.push(main);
        if cache && bio.flags.contains(BioFlags::FUA) && bio.op.is_write() {
            let _ = steps.push(Step::Flush);
        }
        Plan::of(&steps)
    }

    /// True when there is nothing to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The step to send now, if any.
    pub(crate) fn current(&self) -> Option<Step> {
        (self.at < self.len).then(|| self.steps[self.at as usize])
    }

    /// Moves to the next step; returns it.
    pub(crate) fn advance(&mut self) -> Option<Step> {
        if self.at < self.len {
            self.at += 1;
        }
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::sync::Completion;

    fn bio(op: BioOp, flags: BioFlags) -> Bio {
        let mut b = Bio::new(op, 8, Completion::new().end());
        b.flags = flags;
        b
    }

    fn steps(mut p: Plan) -> alloc::vec::Vec<Step> {
        let mut v = alloc::vec::Vec::new();
        while let Some(s) = p.current() {
            v.push(s);
            p.advance();
        }
        v
    }

    #[test]
    fn header_and_range_are_little_endian() {
        assert_eq!(
            encode_header(T_OUT, 0x0102_0304_0506_0708),
            [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(
            encode_range(0x10, 0x0A0B_0C0D, true),
            [0x10, 0, 0, 0, 0, 0, 0, 0, 0xD, 0xC, 0xB, 0xA, 1, 0, 0, 0]
        );
    }

    #[test]
    fn status_bytes_map_to_errno() {
        assert_eq!(status_to_result(S_OK), Ok(()));
        assert_eq!(status_to_result(S_IOERR), Err(Errno::EIO));
        assert_eq!(status_to_result(S_UNSUPP), Err(Errno::EOPNOTSUPP));
        assert_eq!(status_to_result(S_UNWRITTEN), Err(Errno::EIO));
        assert_eq!(status_to_result(7), Err(Errno::EIO));
    }

    #[test]
    fn plans_sequence_preflush_data_and_fua_flush() {
        use Step::*;
        let both = BioFlags::PREFLUSH | BioFlags::FUA;
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::Write, both), true)), [Flush, Write, Flush]);
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::Write, BioFlags::FUA), true)), [Write, Flush]);
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::Read, BioFlags::FUA), true)), [Read]);
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::Read, BioFlags::PREFLUSH), true)), [Flush, Read]);
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::WriteZeroes, BioFlags::FUA), true)), [WriteZeroes, Flush]);
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::Flush, both), true)), [Flush]);
        assert_eq!(steps(Plan::for_bio(&bio(BioOp::Write, both), false)), [Write]);
        assert!(Plan::for_bio(&bio(BioOp::Flush, BioFlags::empty()), false).is_empty());
        let mut p = Plan::of(&[GetId]);
        assert_eq!(p.current(), Some(GetId));
        assert_eq!(p.advance(), None);
        assert_eq!(p.advance(), None);
    }
}
