//! Waiting bios and the driver requests carved from them: splitting and merging.
//!
//! An [`Entry`] is what is left of one upper bio that is waiting for the driver (whole, or the
//! remainder after some parts were dispatched): its op, flags, next sector and a cursor into its
//! segments. A [`Request`] is one driver bio under construction. [`Request::carve`] moves as much
//! of an entry into the request as the driver's [`Limits`] allow, cutting segments at
//! logical-block boundaries, and coalescing a piece into the previous segment where both are
//! contiguous in virtual and physical memory. Splitting is lazy: a 1 GiB discard is carved one
//! request at a time as slots free up, never into a million requests at once.
//!
//! Merging is carving the next waiting entry into the same request: allowed when it is the same
//! op with the same flags, starts at the request's end sector, neither side is FUA / PREFLUSH
//! (Linux's `REQ_NOMERGE_FLAGS`), and the request still has room. Consecutive FLUSH entries merge
//! into one flush (a flush not yet dispatched covers every write that completed before any of the
//! merged flushes was submitted). [`insert`] places a new entry next to a waiting one it is
//! adjacent to, so interleaved streams still merge (Linux: the plug list / elevator back and
//! front merge lookups).
//!
//! Nothing here allocates: segments and owners are `heapless` vectors inside the request.
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | `bio_split_to_limits` / `bio_split_rw` (eager split + resubmit of the rest) | [`Request::carve`] on a waiting [`Entry`] (lazy, at dispatch) |
//! | `bio_split_discard`, `bio_split_write_zeroes` | the dataless branch of [`Request::carve`] |
//! | `biovec_phys_mergeable` | segment coalescing in [`Request::carve`] |
//! | `blk_attempt_plug_merge`, `elv_merge` back/front merge | [`insert`] + [`Request::accepts`] |
//! | `blk_rq_merge_ok`, `REQ_NOMERGE_FLAGS` | [`Request::accepts`] |
//! | flush coalescing in `blk-flush.c` | consecutive FLUSH entries share one request |
//!
//! Deviation: Linux merges a bio into an existing *request*; here bios wait whole and requests
//! are built at dispatch, which gives the same requests without a request per waiting bio.

use alloc::collections::VecDeque;

use super::limits::Limits;
use crate::block::{Bio, BioEnd, BioFlags, BioOp, Segment, BIO_MAX_SEGMENTS, SECTOR_SIZE};

/// Most upper bios one driver request completes.
pub(crate) const MAX_MERGE: usize = 64;

/// How many of the newest waiting entries [`insert`] looks at for a merge partner.
const MERGE_SCAN: usize = 16;

/// An upper bio (or what is left of it) waiting for the driver.
pub(crate) struct Entry {
    /// The upper bio's slot in the queue's parent table.
    pub parent: u32,
    /// The op.
    pub op: BioOp,
    /// Flags the driver sees (FUA only where the driver does it natively; META).
    pub flags: BioFlags,
    /// Never merge (the upper bio carried FUA or PREFLUSH).
    pub nomerge: bool,
    /// Next sector to carve.
    sector: u64,
    /// End sector (exclusive).
    end: u64,
    segments: heapless::Vec<Segment, BIO_MAX_SEGMENTS>,
    seg_idx: usize,
    seg_off: u32,
}

impl Entry {
    /// An entry for the whole of a validated upper bio.
    pub fn new(parent: u32, bio_parts: BioParts, flags: BioFlags, nomerge: bool) -> Self {
        let BioParts { op, sector, sectors, segments } = bio_parts;
        Self { parent, op, flags, nomerge, sector, end: sector + sectors, segments, seg_idx: 0, seg_off: 0 }
    }

    /// A FLUSH entry for `parent`.
    pub fn flush(parent: u32) -> Self {
        Self {
            parent,
            op: BioOp::Flush,
            flags: BioFlags::empty(),
            nomerge: false,
            sector: 0,
            end: 0,
            segments: heapless::Vec::new(),
            seg_idx: 0,
            seg_off: 0,
        }
    }

    /// Whether `next` may be carved into the same request right after this entry.
    fn adjacent_to(&self, next: &Entry) -> bool {
        if self.op != next.op || self.flags != next.flags || self.nomerge || next.nomerge {
            return false;
        }
        self.op == BioOp::Flush || self.end == next.sector
    }
}

/// The parts of an upper bio an [`Entry`] keeps (its completion goes to the parent table).
pub(crate) struct BioParts {
    /// The op.
    pub op: BioOp,
    /// Start sector.
    pub sector: u64,
    /// Sectors covered.
    pub sectors: u64,
    /// Data segments.
    pub segments: heapless::Vec<Segment, BIO_MAX_SEGMENTS>,
}

/// Places `entry` in the waiting queue: right after a recent entry it continues, right before
/// one it precedes (so they merge at dispatch), else at the back. Returns whether it was placed
/// next to a merge partner.
pub(crate) fn insert(waiting: &mut VecDeque<Entry>, entry: Entry, merge: bool) -> bool {
    if merge {
        let len = waiting.len();
        for i in (len.saturating_sub(MERGE_SCAN)..len).rev() {
            let cand = &waiting[i];
            if cand.adjacent_to(&entry) {
                waiting.insert(i + 1, entry);
                return true;
            }
            if entry.op != BioOp::Flush && entry.adjacent_to(cand) && cand.seg_idx == 0 && cand.seg_off == 0 {
                waiting.insert(i, entry);
                return true;
            }
        }
    }
    waiting.push_back(entry);
    false
}

/// One driver request under construction.
pub(crate) struct Request {
    /// The driver bio.
    pub bio: Bio,
    /// Parent slots of the upper bios this request carries a part of, each once.
    pub owners: heapless::Vec<u32, MAX_MERGE>,
    /// Bytes (data ops) or sectors (dataless ops) the request may still take.
    room: u64,
    /// Sector after the last one carved so far.
    next_sector: u64,
    nomerge: bool,
}

impl Request {
    /// An empty request shaped like `first` (op, flags, start sector) that completes to `end`.
    pub fn start(first: &Entry, limits: &Limits, end: BioEnd) -> Self {
        let mut bio = Bio::new(first.op, first.sector, end);
        bio.flags = first.flags;
        let room = match first.op {
            BioOp::Read | BioOp::Write => limits.request_bytes,
            BioOp::Discard | BioOp::WriteZeroes => limits.dataless_sectors(first.op),
            BioOp::Flush => 0,
        };
        Self { bio, owners: heapless::Vec::new(), room, next_sector: first.sector, nomerge: first.nomerge }
    }

    /// Whether `next` may be merged behind what the request holds.
    pub fn accepts(&self, next: &Entry) -> bool {
        let fresh = next.seg_idx == 0 && next.seg_off == 0;
        let same = next.op == self.bio.op && next.flags == self.bio.flags && !self.nomerge && !next.nomerge;
        let room = self.bio.op == BioOp::Flush || (self.room > 0 && next.sector == self.next_sector);
        fresh && same && room && !self.owners.is_full()
    }

    /// Moves as much of `entry` into the request as the limits allow and records `entry`'s
    /// parent as an owner if anything moved. Returns `(moved, consumed)`: whether anything
    /// moved, and whether the entry is now empty.
    pub fn carve(&mut self, entry: &mut Entry, limits: &Limits) -> (bool, bool) {
        let moved = match entry.op {
            BioOp::Flush => true,
            BioOp::Discard | BioOp::WriteZeroes => {
                let n = (entry.end - entry.sector).min(self.room);
                self.bio.dataless_sectors += n;
                self.room -= n;
                entry.sector += n;
                n > 0
            }
            BioOp::Read | BioOp::Write => self.carve_segments(entry, limits),
        };
        self.next_sector = entry.sector;
        if moved && self.owners.push(entry.parent).is_err() {
            // `accepts` checked room for one more owner and the first owner always fits.
            debug_assert!(false, "owner table full after accepts()");
        }
        let consumed = match entry.op {
            BioOp::Flush => true,
            _ => entry.sector == entry.end,
        };
        (moved, consumed)
    }

    fn carve_segments(&mut self, entry: &mut Entry, limits: &Limits) -> bool {
        let mut moved = false;
        while self.room > 0 {
            let Some(seg) = entry.segments.get(entry.seg_idx).copied() else { break };
            let off = entry.seg_off;
            let avail = (seg.len() - off) as u64;
            let phys = seg.phys() + off as u64;
            // SAFETY: `off < seg.len()`, so the pointer stays inside the memory the segment's
            // creator promised valid (Segment::new's contract).
            let virt = unsafe { seg.virt().add(off as usize) };
            let last = self.bio.segments.last().copied();
            let coalesce = last.filter(|l| {
                let l_end = l.virt().as_ptr() as usize + l.len() as usize;
                l_end == virt.as_ptr() as usize
                    && l.phys() + l.len() as u64 == phys
                    && (l.len() as u64) < limits.segment_bytes
            });
            let took = if let Some(l) = coalesce {
                let n = avail.min(self.room).min(limits.segment_bytes - l.len() as u64);
                // SAFETY: `l` and the piece are adjacent ranges of valid memory (virtually and
                // physically contiguous, both promised valid until their bios complete, and the
                // request completes before either of its upper bios does).
                let grown = unsafe { Segment::new(l.virt(), l.phys(), l.len() + n as u32) };
                if let Some(slot) = self.bio.segments.last_mut() {
                    *slot = grown;
                }
                n
            } else {
                if self.bio.segments.len() >= limits.max_segments {
                    break;
                }
                let n = avail.min(self.room).min(limits.segment_bytes);
                // SAFETY: a sub-range `[off, off + n)` of a valid segment, valid as long as the
                // segment is (the upper bio completes only after this request does).
                let piece = unsafe { Segment::new(virt, phys, n as u32) };
                if self.bio.segments.push(piece).is_err() {
                    break;
                }
                n
            };
            moved = true;
            self.room -= took;
            entry.sector += took / SECTOR_SIZE;
            entry.seg_off += took as u32;
            if entry.seg_off == seg.len() {
                entry.seg_idx += 1;
                entry.seg_off = 0;
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::sync::Completion;
    use crate::block::{DeviceFeatures, DeviceInfo};
    use core::ptr::NonNull;

    fn limits(max_segments: u16, seg: u32, req: u32) -> Limits {
        Limits::from_device(
            &DeviceInfo {
                logical_block_size: 512,
                physical_block_size: 512,
                sectors: 1 << 30,
                max_segments,
                max_segment_bytes: seg,
                max_request_bytes: req,
                queue_depth: 4,
                dma_alignment: 1,
                max_discard_sectors: 16,
                max_write_zeroes_sectors: 0,
                features: DeviceFeatures::DISCARD,
            },
            0,
        )
    }

    fn seg(addr: usize, len: u32) -> Segment {
        // SAFETY: these tests only carve descriptors; nothing dereferences the addresses.
        unsafe { Segment::new(NonNull::new(addr as *mut u8).unwrap(), addr as u64, len) }
    }

    fn entry(parent: u32, op: BioOp, sector: u64, segs: &[Segment], sectors: u64) -> Entry {
        let mut segments = heapless::Vec::new();
        for s in segs {
            segments.push(*s).unwrap();
        }
        let sectors = if op.has_data() { segs.iter().map(|s| s.len() as u64 / 512).sum() } else { sectors };
        Entry::new(parent, BioParts { op, sector, sectors, segments }, BioFlags::empty(), false)
    }

    fn lens(r: &Request) -> Vec<u32> {
        r.bio.segments.iter().map(|s| s.len()).collect()
    }

    #[test]
    fn carve_cuts_segments_and_requests_at_block_boundaries() {
        let l = limits(2, 3000, 5000); // -> 2560-byte segments, 4608-byte requests
        let mut e = entry(7, BioOp::Write, 100, &[seg(0x10000, 4096), seg(0x30000, 1024)], 0);
        let end = Completion::new().end();
        let mut r = Request::start(&e, &l, end.clone());
        assert_eq!(r.carve(&mut e, &l), (true, false));
        assert_eq!(lens(&r), vec![2560, 1536], "segment limit splits the first segment");
        assert_eq!(r.bio.sector, 100);
        assert_eq!(r.bio.segments[1].phys(), 0x10000 + 2560);
        assert_eq!(r.owners.as_slice(), &[7]);
        let mut r2 = Request::start(&e, &l, end);
        assert_eq!(r2.bio.sector, 108);
        assert_eq!(r2.carve(&mut e, &l), (true, true));
        assert_eq!(lens(&r2), vec![1024]);
        assert_eq!(r2.bio.segments[0].phys(), 0x30000);
    }

    #[test]
    fn contiguous_pieces_coalesce_and_merges_need_adjacency() {
        let l = limits(1, 1 << 20, 1 << 20);
        let mut a = entry(1, BioOp::Write, 0, &[seg(0x1000, 4096)], 0);
        let b = entry(2, BioOp::Write, 8, &[seg(0x2000, 4096)], 0);
        let c = entry(3, BioOp::Write, 16, &[seg(0x9000, 4096)], 0);
        let gap = entry(4, BioOp::Write, 40, &[seg(0x3000, 4096)], 0);
        let read = entry(5, BioOp::Read, 8, &[seg(0x2000, 4096)], 0);
        let mut r = Request::start(&a, &l, Completion::new().end());
        assert_eq!(r.carve(&mut a, &l), (true, true));
        assert!(r.accepts(&b));
        assert!(!r.accepts(&gap), "not adjacent on disk");
        assert!(!r.accepts(&read), "different op");
        let mut b = b;
        assert_eq!(r.carve(&mut b, &l), (true, true));
        assert_eq!(lens(&r), vec![8192], "physically contiguous: one segment");
        let mut c = c;
        assert!(r.accepts(&c));
        assert_eq!(r.carve(&mut c, &l), (false, false), "one segment max and not contiguous");
        assert_eq!(r.owners.as_slice(), &[1, 2]);
    }

    #[test]
    fn dataless_split_and_flush_coalescing() {
        let l = limits(4, 4096, 4096);
        let mut d = entry(9, BioOp::Discard, 0, &[], 40);
        let mut parts = Vec::new();
        loop {
            let mut r = Request::start(&d, &l, Completion::new().end());
            let (_, consumed) = r.carve(&mut d, &l);
            parts.push((r.bio.sector, r.bio.dataless_sectors));
            if consumed {
                break;
            }
        }
        assert_eq!(parts, vec![(0, 16), (16, 16), (32, 8)]);

        let mut f1 = Entry::flush(1);
        let f2 = Entry::flush(2);
        let mut r = Request::start(&f1, &l, Completion::new().end());
        assert_eq!(r.carve(&mut f1, &l), (true, true));
        assert!(r.accepts(&f2));
        assert_eq!(r.bio.op, BioOp::Flush);
    }

    #[test]
    fn insert_places_entries_next_to_merge_partners() {
        let mut q = VecDeque::new();
        let mk = |p, s| entry(p, BioOp::Write, s, &[seg(0x1000 * (p as usize + 1), 512)], 0);
        assert!(!insert(&mut q, mk(0, 0), true));
        assert!(!insert(&mut q, mk(1, 100), true));
        assert!(insert(&mut q, mk(2, 1), true), "back merge behind parent 0");
        assert!(insert(&mut q, mk(3, 99), true), "front merge before parent 1");
        assert!(!insert(&mut q, mk(4, 50), false), "merging off: FIFO");
        let order: Vec<u32> = q.iter().map(|e| e.parent).collect();
        assert_eq!(order, vec![0, 2, 3, 1, 4]);
    }
}
