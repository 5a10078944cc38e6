//! Journal unit tests: commit, checkpoint, replay, torn and garbage transactions.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::replay::ReplayReport;
use super::*;
use crate::block::RamDisk;
use crate::frond::buf::{seal_header, BufCache};
use crate::frond::format::{get32, init_header, put64, verify_header, Error, MAGIC_ROOT};
use crate::frond::superblock::Superblock;
use crate::frond::testutil::RecordingDisk;
use crate::platform::StdPlatform;

const BS: usize = 1024;

fn setup() -> (Arc<RamDisk>, MetaIo, Superblock, Journal) {
    let sb = Superblock {
        block_log: 10,
        block_count: 256,
        log_blocks: 32,
        root_block: LOG_START + 32,
        data_start: LOG_START + 33,
        uuid: [0; 16],
        link_max: 100,
        node_cap: 0,
    };
    let disk = Arc::new(RamDisk::new(256 * BS as u64, 512).unwrap());
    let io = MetaIo::new(disk.clone(), StdPlatform::arc(), 10).unwrap();
    let j = Journal::new_empty(32, BS, 0, 1);
    io.write_block(JOURNAL_HEADER, &j.header().encode(BS, JOURNAL_HEADER), BioFlags::empty()).unwrap();
    (disk, io, sb, j)
}

/// Dirties blocks `blks` in `c` with content byte `v` and returns the running set.
fn dirty(c: &mut BufCache, blks: &[u64], v: u8) -> Vec<BufRef> {
    for &b in blks {
        let buf = c.create(b, BS, seal_header);
        let mut d = buf.data();
        init_header(&mut d, MAGIC_ROOT, b);
        d[100..].fill(v);
    }
    c.take_running()
}

fn block(disk: &RamDisk, blk: u64) -> Vec<u8> {
    let mut b = alloc::vec![0u8; BS];
    disk.peek(blk * BS as u64, &mut b);
    b
}

#[test]
fn committed_transactions_replay_in_order_and_torn_ones_are_ignored() {
    let (disk, io, sb, mut j) = setup();
    let mut c = BufCache::new(64);
    j.commit(&io, &dirty(&mut c, &[40, 41], 1)).unwrap();
    j.commit(&io, &dirty(&mut c, &[41, 42], 2)).unwrap();
    // The third transaction is torn: its commit record never reaches the disk.
    let before = disk.snapshot();
    j.commit(&io, &dirty(&mut c, &[40, 43], 3)).unwrap();
    let after = disk.snapshot();
    let commit_pos = (LOG_START + 8) as usize * BS; // 2 + 3 + 3 log blocks before it
    let mut torn = after.clone();
    torn[commit_pos..commit_pos + BS].copy_from_slice(&before[commit_pos..commit_pos + BS]);

    let d = Arc::new(RamDisk::from_image(torn, 512));
    let io2 = MetaIo::new(d.clone(), StdPlatform::arc(), 10).unwrap();
    let (j2, r) = replay(&io2, &sb).unwrap();
    assert_eq!(r, ReplayReport { transactions: 2, blocks: 4 });
    assert_eq!(block(&d, 40)[100], 1);
    assert_eq!(block(&d, 41)[100], 2);
    assert_eq!(block(&d, 42)[100], 2);
    assert!(block(&d, 43).iter().all(|&b| b == 0), "torn transaction not applied");
    assert!(verify_header(&block(&d, 41), MAGIC_ROOT, 41, "t").is_ok());
    assert!(j2.is_empty() && j2.next_seq() == 3);
    // Replaying again finds nothing (the header moved past the applied transactions).
    let (_, r2) = replay(&io2, &sb).unwrap();
    assert_eq!(r2.transactions, 0);

    // The untorn image replays all three.
    let d3 = Arc::new(RamDisk::from_image(after, 512));
    let io3 = MetaIo::new(d3.clone(), StdPlatform::arc(), 10).unwrap();
    assert_eq!(replay(&io3, &sb).unwrap().1.transactions, 3);
    assert_eq!(block(&d3, 40)[100], 3);
}

#[test]
fn commit_uses_preflush_fua_only_on_the_commit_record_and_checkpoint_header() {
    let (disk, _io, _sb, mut j) = setup();
    let rec = Arc::new(RecordingDisk::new(disk.clone()));
    let io = MetaIo::new(rec.clone(), StdPlatform::arc(), 10).unwrap();
    let mut c = BufCache::new(64);
    j.commit(&io, &dirty(&mut c, &[40, 50, 51], 7)).unwrap();
    let t = rec.records();
    // desc + 3 images in one plain bio (adjacent in the log), then the PREFLUSH+FUA commit.
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!((t[0].flags & !BioFlags::META, t[0].data.len()), (BioFlags::empty(), 4 * BS));
    assert_eq!(t[1].flags & !BioFlags::META, BioFlags::PREFLUSH | BioFlags::FUA);
    assert_eq!(t[1].offset, (LOG_START + 4) * BS as u64);
    let logged = c.logged();
    j.checkpoint(&io, &logged).unwrap();
    let t = &rec.records()[2..];
    // Home writes: 40, then 50..51 merged, plain; then the PREFLUSH+FUA header.
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[..2].iter().all(|r| r.flags & !BioFlags::META == BioFlags::empty()));
    assert_eq!(
        (t[2].offset, t[2].flags & !BioFlags::META),
        (JOURNAL_HEADER * BS as u64, BioFlags::PREFLUSH | BioFlags::FUA)
    );
    assert!(j.is_empty());
    assert_eq!(block(&disk, 50)[100], 7);
    // Crash states: before the commit record no transaction survives; losing the volatile
    // cache right after the commit loses nothing.
    let sbv = setup().2;
    for (img, want) in [(rec.image_after(1), 0), (rec.image_volatile_lost(2), 1)] {
        let d = Arc::new(RamDisk::from_image(img, 512));
        let io2 = MetaIo::new(d, StdPlatform::arc(), 10).unwrap();
        assert_eq!(replay(&io2, &sbv).unwrap().1.transactions, want);
    }
}

#[test]
fn log_wraps_and_garbage_after_the_head_is_ignored() {
    let (disk, io, sb, mut j) = setup();
    let mut c = BufCache::new(64);
    let mut v = 0u8;
    // Many transactions with checkpoints in between make the log wrap several times.
    for round in 0..40u64 {
        v = v.wrapping_add(1);
        let imgs = dirty(&mut c, &[40 + round % 5, 60], v);
        if j.tx_blocks(imgs.len()) > j.free_blocks() {
            let logged = c.logged();
            j.checkpoint(&io, &logged).unwrap();
            c.checkpointed();
        }
        j.commit(&io, &imgs).unwrap();
    }
    // Garbage right at the head: an all-0xFF block and a forged descriptor with a bad CRC.
    let head = j.abs(j.head);
    disk.poke(head * BS as u64, &[0xFF; BS]);
    let d = Arc::new(RamDisk::from_image(disk.snapshot(), 512));
    let io2 = MetaIo::new(d.clone(), StdPlatform::arc(), 10).unwrap();
    let (j2, _) = replay(&io2, &sb).unwrap();
    assert_eq!(block(&d, 60)[100], v);
    assert_eq!(j2.next_seq(), 41);
}

#[test]
fn hostile_headers_and_targets_are_refused() {
    let (disk, io, sb, mut j) = setup();
    let mut hdr = block(&disk, JOURNAL_HEADER);
    put64(&mut hdr, 16, 99);
    crate::frond::format::seal(&mut hdr);
    disk.poke(JOURNAL_HEADER * BS as u64, &hdr);
    match replay(&io, &sb) {
        Err(Error::Corrupt(c)) => assert_eq!(c.0, "journal header: tail position 99 beyond the log"),
        other => panic!("{other:?}"),
    }
    disk.poke(JOURNAL_HEADER * BS as u64, &j.header().encode(BS, JOURNAL_HEADER));
    // A checksummed transaction that would overwrite the superblock.
    let mut c = BufCache::new(8);
    j.commit(&io, &dirty(&mut c, &[1], 5)).unwrap();
    match replay(&io, &sb) {
        Err(Error::Corrupt(c)) => {
            assert_eq!(c.0, "journal transaction 1 logs block 1 outside the metadata area")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get32(&block(&disk, 0), 0), 0, "nothing applied");
}
