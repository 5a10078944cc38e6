//! The metadata journal: write-ahead physical block logging in a circular log, replayed at mount.
//!
//! Owns the log region (blocks [`LOG_START`] ..) and the journal header (block
//! [`JOURNAL_HEADER`]). A transaction is the set of metadata blocks one or more operations
//! dirtied (the buffer cache's running set). It is made durable by [`Journal::commit`]:
//!
//! 1. descriptors + block images are written to the log at the head (plain writes, one batch);
//! 2. after they complete, the commit record is written with **PREFLUSH | FUA**: the preflush
//!    makes the images durable first, and also every data write that completed before the
//!    commit (ordered data: the engine's data I/O completes before the transaction that maps it
//!    as written is committed); FUA makes the commit record itself durable.
//!
//! Committed blocks are written home later by a checkpoint ([`Journal::checkpoint`]): the
//! in-place writes go out as one batch, then the header that moves the tail past them is
//! written with **PREFLUSH | FUA** (home blocks durable before the log forgets them). No other
//! journal write carries a flag. The filesystem commits at `sync`/fsync, when the log or the
//! running transaction fills, and at unmount (followed by a checkpoint, leaving the log clean).
//!
//! Replay ([`replay`]) scans from the tail: each transaction must have valid descriptors with
//! the expected sequence number at the expected position, images whose CRC32C matches their
//! tag, and a valid commit record; the first transaction that does not is the end of the log
//! (a torn commit). Complete transactions are applied in order, then the header is moved past
//! them. Replay is idempotent, so a crash during replay replays again.
//!
//! Freed metadata blocks are never reused before the next checkpoint (the allocator's busy
//! list), so no log image can land on a block that has since become file data: revoke records
//! are not needed.
//!
//! Lock order: called with the filesystem metadata lock held; takes no locks.
//!
//! # Linux <-> here
//!
//! | Linux (jbd2) | here |
//! |---|---|
//! | running / committing transaction | the buffer cache's running set, committed synchronously |
//! | `jbd2_journal_commit_transaction` | [`Journal::commit`] |
//! | `jbd2_log_do_checkpoint` + `jbd2_update_log_tail` | [`Journal::checkpoint`] (whole log at once) |
//! | `jbd2_journal_recover` (PASS_SCAN, PASS_REVOKE, PASS_REPLAY) | [`replay`] (scan + replay; no revoke pass) |
//! | async commit (checksummed commit without preflush) | not used: always PREFLUSH+FUA |

pub mod format;
mod replay;

pub use replay::{replay, scan};

use alloc::vec::Vec;

use self::format::*;
use super::buf::BufRef;
use super::crc32c::crc32c;
use super::format::FResult;
use super::io::MetaIo;
use super::superblock::{JOURNAL_HEADER, LOG_START};
use crate::block::BioFlags;

/// The in-memory state of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    log_blocks: u64,
    block_size: usize,
    tail: u64,
    tail_seq: u64,
    head: u64,
    next_seq: u64,
    used: u64,
}

impl Journal {
    /// A journal whose log is empty at `pos` with next sequence `seq` (after mkfs or replay).
    pub fn new_empty(log_blocks: u64, block_size: usize, pos: u64, seq: u64) -> Self {
        Self { log_blocks, block_size, tail: pos, tail_seq: seq, head: pos, next_seq: seq, used: 0 }
    }

    /// The header describing this (empty or live) log.
    pub fn header(&self) -> JournalHeader {
        JournalHeader { tail_pos: self.tail, tail_seq: self.tail_seq, log_blocks: self.log_blocks }
    }

    /// Log blocks a transaction of `images` blocks takes.
    pub fn tx_blocks(&self, images: usize) -> u64 {
        let per = tags_per_descriptor(self.block_size);
        (images + images.div_ceil(per).max(1) + 1) as u64
    }

    /// Log blocks still free (one is always kept unused).
    pub fn free_blocks(&self) -> u64 {
        self.log_blocks - self.used - 1
    }

    /// The most images one transaction may hold (it must fit an empty log).
    pub fn max_images(&self) -> usize {
        let per = tags_per_descriptor(self.block_size) as u64;
        let room = self.log_blocks - 2; // spare block + commit record
        (room * per / (per + 1)) as usize
    }

    /// Whether the log holds no live transaction.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// The sequence number the next commit gets.
    #[cfg(test)]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn abs(&self, pos: u64) -> u64 {
        LOG_START + pos % self.log_blocks
    }

    /// Writes `images` (already sealed) as one transaction and makes it durable. The caller
    /// guarantees `tx_blocks(images.len()) <= free_blocks()`.
    pub fn commit(&mut self, io: &MetaIo, images: &[BufRef]) -> FResult<()> {
        if images.is_empty() {
            return Ok(());
        }
        debug_assert!(self.tx_blocks(images.len()) <= self.free_blocks(), "commit larger than the free log");
        let bs = self.block_size;
        let per = tags_per_descriptor(bs);
        let seq = self.next_seq;
        let guards: Vec<_> = images.iter().map(|b| b.data()).collect();
        let mut descs: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut slots: Vec<(u64, usize)> = Vec::new();
        let mut pos = self.head;
        for (index, chunk) in (0..images.len()).collect::<Vec<_>>().chunks(per).enumerate() {
            let tags =
                chunk.iter().map(|&i| Tag { target: images[i].blkno(), crc: crc32c(&guards[i]) }).collect();
            let d = Descriptor { seq, index: index as u32, tags };
            let at = self.abs(pos);
            descs.push((at, d.encode(bs, at)));
            pos += 1;
            for &i in chunk {
                slots.push((self.abs(pos), i));
                pos += 1;
            }
        }
        let mut batch: Vec<(u64, &[u8])> = descs.iter().map(|(a, b)| (*a, &b[..])).collect();
        batch.extend(slots.iter().map(|&(a, i)| (a, &guards[i][..])));
        io.write_batch(&mut batch)?;
        let at = self.abs(pos);
        let c = CommitRecord { seq, images: images.len() as u32, descriptors: descs.len() as u32 };
        io.write_block(at, &c.encode(bs, at), BioFlags::PREFLUSH | BioFlags::FUA)?;
        pos += 1;
        self.used += pos - self.head;
        self.head = pos % self.log_blocks;
        self.next_seq += 1;
        Ok(())
    }

    /// Writes `logged` (the committed blocks) home, then empties the log: the header moves
    /// the tail to the head with PREFLUSH | FUA.
    pub fn checkpoint(&mut self, io: &MetaIo, logged: &[BufRef]) -> FResult<()> {
        let guards: Vec<_> = logged.iter().map(|b| b.data()).collect();
        let mut batch: Vec<(u64, &[u8])> =
            logged.iter().zip(&guards).map(|(b, g)| (b.blkno(), &g[..])).collect();
        io.write_batch(&mut batch)?;
        drop(guards);
        if self.used == 0 {
            return Ok(());
        }
        let h = JournalHeader { tail_pos: self.head, tail_seq: self.next_seq, log_blocks: self.log_blocks };
        io.write_block(
            JOURNAL_HEADER,
            &h.encode(self.block_size, JOURNAL_HEADER),
            BioFlags::PREFLUSH | BioFlags::FUA,
        )?;
        self.tail = self.head;
        self.tail_seq = self.next_seq;
        self.used = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
