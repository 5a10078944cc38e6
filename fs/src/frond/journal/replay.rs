//! Journal replay at mount. See the parent module for the rules.
//!
//! Lock order: runs before the filesystem exists (mount) or read-only (fsck's [`scan`]); no
//! locks.
//!
//! # Linux <-> here
//!
//! | Linux (jbd2) | here |
//! |---|---|
//! | `do_one_pass(PASS_SCAN)` | the transaction loop with `dry` set ([`scan`]) |
//! | `do_one_pass(PASS_REPLAY)` | the same loop writing images home ([`replay`]) |
//! | `jbd2_journal_recover` resetting `s_start` | the header rewrite after replay |

use alloc::vec::Vec;

use super::format::*;
use super::Journal;
use crate::block::BioFlags;
use crate::frond::crc32c::crc32c;
use crate::frond::format::FResult;
use crate::frond::io::MetaIo;
use crate::frond::superblock::{Superblock, JOURNAL_HEADER, LOG_START};
use crate::frond_corrupt;

/// What replay found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Complete transactions applied.
    pub transactions: u64,
    /// Block images written home.
    pub blocks: u64,
}

fn read_block(io: &MetaIo, blk: u64) -> FResult<Vec<u8>> {
    let mut b = alloc::vec![0u8; io.block_size()];
    io.read_blocks(blk, &mut b)?;
    Ok(b)
}

/// Replays the log of the filesystem described by `sb` and returns the (now empty) journal.
/// A bad header or a checksummed transaction that targets a block outside the metadata area
/// is corruption; a torn or garbage transaction just ends the log.
pub fn replay(io: &MetaIo, sb: &Superblock) -> FResult<(Journal, ReplayReport)> {
    replay_inner(io, sb, false)
}

/// Scans the log like [`replay`] without writing anything: how many complete transactions
/// (and block images) a mount would replay. fsck uses it to tell a clean log from a dirty one.
pub fn scan(io: &MetaIo, sb: &Superblock) -> FResult<ReplayReport> {
    replay_inner(io, sb, true).map(|(_, r)| r)
}

fn replay_inner(io: &MetaIo, sb: &Superblock, dry: bool) -> FResult<(Journal, ReplayReport)> {
    let bs = io.block_size();
    let lb = sb.log_blocks;
    let hdr = JournalHeader::decode(&read_block(io, JOURNAL_HEADER)?, JOURNAL_HEADER, lb)?;
    let abs = |pos: u64| LOG_START + pos % lb;
    let valid_target = |t: u64| t == sb.root_block || (sb.data_start..sb.block_count).contains(&t);
    let mut report = ReplayReport::default();
    let mut pos = hdr.tail_pos;
    let mut seq = hdr.tail_seq;
    let mut scanned = 0u64;
    'transactions: loop {
        // One transaction: descriptors with their images, then the commit record.
        let mut images: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut p = pos;
        let mut n = 0u64;
        let mut index = 0u32;
        loop {
            if scanned + n >= lb {
                break 'transactions;
            }
            let blk = read_block(io, abs(p))?;
            if let Some(d) = Descriptor::decode(&blk, abs(p)) {
                if d.seq != seq || d.index != index {
                    break 'transactions;
                }
                p += 1;
                n += 1;
                for t in &d.tags {
                    if scanned + n >= lb {
                        break 'transactions;
                    }
                    let img = read_block(io, abs(p))?;
                    if crc32c(&img) != t.crc {
                        break 'transactions;
                    }
                    if !valid_target(t.target) {
                        return Err(frond_corrupt!(
                            "journal transaction {seq} logs block {} outside the metadata area",
                            t.target
                        )
                        .into());
                    }
                    images.push((t.target, img));
                    p += 1;
                    n += 1;
                }
                index += 1;
                continue;
            }
            match CommitRecord::decode(&blk, abs(p)) {
                Some(c)
                    if c.seq == seq
                        && c.images as usize == images.len()
                        && c.descriptors == index
                        && index > 0 =>
                {
                    n += 1;
                    break;
                }
                _ => break 'transactions,
            }
        }
        let mut batch: Vec<(u64, &[u8])> = Vec::with_capacity(images.len());
        // Later images of the same block in one transaction win.
        for (t, img) in images.iter().rev() {
            if !batch.iter().any(|(b, _)| b == t) {
                batch.push((*t, img));
            }
        }
        report.blocks += batch.len() as u64;
        if !dry {
            io.write_batch(&mut batch)?;
        }
        report.transactions += 1;
        scanned += n;
        pos = (pos + n) % lb;
        seq += 1;
    }
    let journal = Journal::new_empty(lb, bs, pos, seq);
    if report.transactions > 0 && !dry {
        let h = journal.header();
        io.write_block(JOURNAL_HEADER, &h.encode(bs, JOURNAL_HEADER), BioFlags::PREFLUSH | BioFlags::FUA)?;
    }
    Ok((journal, report))
}
