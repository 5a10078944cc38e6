//! Journal on-disk records: the journal header, transaction descriptors and commit records.
//!
//! ```text
//! header (block 2):   hdr(FRJH) | tail_pos u64 | tail_seq u64 | log_blocks u64
//! descriptor:         hdr(FRJD) | seq u64 | count u32 | index u32 | count x { target u64, crc u32, flags u32 }
//! commit record:      hdr(FRJC) | seq u64 | images u32 | descriptors u32
//! ```
//!
//! A descriptor's `blkno` is the absolute address of the log block it sits in, so a record
//! from a previous lap of the log at another position never verifies. Owns no state.
//!
//! # Linux <-> here
//!
//! | Linux (jbd2) | here |
//! |---|---|
//! | `journal_superblock_t` (`s_first`, `s_sequence`, `s_start`) | [`JournalHeader`] |
//! | `JBD2_DESCRIPTOR_BLOCK` + `journal_block_tag3_t` (with csum v3) | [`Descriptor`] + [`Tag`] (CRC32C of the image) |
//! | `JBD2_COMMIT_BLOCK` | [`CommitRecord`] |
//! | escaping of data blocks that look like journal blocks | not needed: blocks are typed by position, never by content |

use alloc::vec::Vec;

use crate::frond::format::*;
use crate::frond_corrupt;

const JH_TAIL_POS: usize = 16;
const JH_TAIL_SEQ: usize = 24;
const JH_LOG_BLOCKS: usize = 32;

const JD_SEQ: usize = 16;
const JD_COUNT: usize = 24;
const JD_INDEX: usize = 28;
const JD_TAGS: usize = 32;
const TAG_SIZE: usize = 16;

const JC_SEQ: usize = 16;
const JC_IMAGES: usize = 24;
const JC_DESCS: usize = 28;

/// Tags one descriptor block holds.
pub fn tags_per_descriptor(block_size: usize) -> usize {
    (block_size - JD_TAGS) / TAG_SIZE
}

/// The journal header: where the live part of the log starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalHeader {
    /// Log-relative position of the oldest live transaction (== head when the log is clean).
    pub tail_pos: u64,
    /// Sequence number expected at `tail_pos`.
    pub tail_seq: u64,
    /// Log length (must match the superblock).
    pub log_blocks: u64,
}

impl JournalHeader {
    /// Image of the header block at `blkno`.
    pub fn encode(&self, block_size: usize, blkno: u64) -> Vec<u8> {
        let mut b = alloc::vec![0u8; block_size];
        init_header(&mut b, MAGIC_JHDR, blkno);
        put64(&mut b, JH_TAIL_POS, self.tail_pos);
        put64(&mut b, JH_TAIL_SEQ, self.tail_seq);
        put64(&mut b, JH_LOG_BLOCKS, self.log_blocks);
        seal(&mut b);
        b
    }

    /// Decodes and validates the header against the superblock's log length.
    pub fn decode(b: &[u8], blkno: u64, log_blocks: u64) -> Result<Self, Corrupt> {
        verify_header(b, MAGIC_JHDR, blkno, "journal header")?;
        let h = Self {
            tail_pos: get64(b, JH_TAIL_POS),
            tail_seq: get64(b, JH_TAIL_SEQ),
            log_blocks: get64(b, JH_LOG_BLOCKS),
        };
        if h.log_blocks != log_blocks {
            return Err(frond_corrupt!(
                "journal header: log of {} blocks but the superblock says {log_blocks}",
                h.log_blocks
            ));
        }
        if h.tail_pos >= log_blocks {
            return Err(frond_corrupt!("journal header: tail position {} beyond the log", h.tail_pos));
        }
        if h.tail_seq == 0 || h.tail_seq > u64::MAX / 2 {
            return Err(frond_corrupt!("journal header: sequence number {} out of range", h.tail_seq));
        }
        Ok(h)
    }
}

/// One logged block: where it goes and the CRC32C of its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Home address of the block.
    pub target: u64,
    /// CRC32C of the whole image as logged.
    pub crc: u32,
}

/// A descriptor block: the tags of the images that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Transaction sequence number.
    pub seq: u64,
    /// Index of this descriptor within its transaction.
    pub index: u32,
    /// The images that follow, in order.
    pub tags: Vec<Tag>,
}

impl Descriptor {
    /// Image of the descriptor at absolute block `blkno`.
    pub fn encode(&self, block_size: usize, blkno: u64) -> Vec<u8> {
        debug_assert!(self.tags.len() <= tags_per_descriptor(block_size));
        let mut b = alloc::vec![0u8; block_size];
        init_header(&mut b, MAGIC_JDESC, blkno);
        put64(&mut b, JD_SEQ, self.seq);
        put32(&mut b, JD_COUNT, self.tags.len() as u32);
        put32(&mut b, JD_INDEX, self.index);
        for (i, t) in self.tags.iter().enumerate() {
            let o = JD_TAGS + i * TAG_SIZE;
            put64(&mut b, o, t.target);
            put32(&mut b, o + 8, t.crc);
        }
        seal(&mut b);
        b
    }

    /// Decodes a descriptor; `None` when the block is not a valid descriptor at `blkno`
    /// (torn, garbage, or from another lap: the end of the log, not corruption).
    pub fn decode(b: &[u8], blkno: u64) -> Option<Self> {
        verify_header(b, MAGIC_JDESC, blkno, "journal descriptor").ok()?;
        let count = get32(b, JD_COUNT) as usize;
        if count == 0 || count > tags_per_descriptor(b.len()) {
            return None;
        }
        let tags = (0..count)
            .map(|i| {
                let o = JD_TAGS + i * TAG_SIZE;
                Tag { target: get64(b, o), crc: get32(b, o + 8) }
            })
            .collect();
        Some(Self { seq: get64(b, JD_SEQ), index: get32(b, JD_INDEX), tags })
    }
}

/// The commit record that closes a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// Transaction sequence number.
    pub seq: u64,
    /// Images in the transaction.
    pub images: u32,
    /// Descriptors in the transaction.
    pub descriptors: u32,
}

impl CommitRecord {
    /// Image of the commit record at absolute block `blkno`.
    pub fn encode(&self, block_size: usize, blkno: u64) -> Vec<u8> {
        let mut b = alloc::vec![0u8; block_size];
        init_header(&mut b, MAGIC_JCOMMIT, blkno);
        put64(&mut b, JC_SEQ, self.seq);
        put32(&mut b, JC_IMAGES, self.images);
        put32(&mut b, JC_DESCS, self.descriptors);
        seal(&mut b);
        b
    }

    /// Decodes a commit record; `None` when the block is not one at `blkno`.
    pub fn decode(b: &[u8], blkno: u64) -> Option<Self> {
        verify_header(b, MAGIC_JCOMMIT, blkno, "journal commit").ok()?;
        Some(Self { seq: get64(b, JC_SEQ), images: get32(b, JC_IMAGES), descriptors: get32(b, JC_DESCS) })
    }
}
