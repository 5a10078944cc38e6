//! The superblock (static geometry, primary at block 0 and a backup at block 1) and the root
//! block (the journaled, changing filesystem-wide state: tree roots, counters, the free list).
//!
//! The superblock never changes after mkfs, so its backup is always exact: mount falls back to
//! it when the primary is unreadable. Everything that changes lives in the root block, which is
//! an ordinary journaled metadata block. Owns no locks: the decoded structures are plain values
//! held by the mounted filesystem under its metadata lock.
//!
//! Lock order: no locks (pure functions and plain values).
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_sb` (geometry + counters, secondary copies per AG) | [`Superblock`] (geometry only; one backup at block 1) |
//! | `xfs_agf` (free-space roots, AGFL indexes) + `xfs_agi` (inode btree root) | [`RootBlock`] (one allocation group) |
//! | AGFL (`xfs_agfl`) | [`RootBlock::freelist`] (up to [`FREELIST_CAP`] blocks) |
//! | `xfs_validate_sb_common` | [`Superblock::decode`] |

use alloc::vec::Vec;

use super::format::*;
use crate::frond_corrupt;

/// Format major version this code reads and writes. Other majors are refused.
pub const VERSION_MAJOR: u16 = 1;
/// Format minor version written (readers accept any minor of their major).
pub const VERSION_MINOR: u16 = 0;
/// Bytes per on-disk inode.
pub const INODE_SIZE: usize = 512;
/// log2 of [`INODE_SIZE`].
pub const INODE_SIZE_LOG: u32 = 9;
/// Block address of the primary superblock.
pub const SB_PRIMARY: u64 = 0;
/// Block address of the backup superblock.
pub const SB_BACKUP: u64 = 1;
/// Block address of the journal header.
pub const JOURNAL_HEADER: u64 = 2;
/// First block of the log.
pub const LOG_START: u64 = 3;
/// Smallest log, in blocks.
pub const MIN_LOG_BLOCKS: u64 = 32;
/// Largest log, in blocks.
pub const MAX_LOG_BLOCKS: u64 = 1 << 20;
/// Smallest data area (blocks managed by the allocator).
pub const MIN_DATA_BLOCKS: u64 = 32;
/// Capacity of the root block's free list of blocks reserved for free-space tree growth.
pub const FREELIST_CAP: usize = 64;
/// Largest link count a format may allow.
pub const LINK_MAX_LIMIT: u32 = 65_000;
/// Incompatible feature bits this code understands (none yet).
pub const INCOMPAT_KNOWN: u32 = 0;
/// Read-only-compatible feature bits this code understands (none yet).
pub const RO_COMPAT_KNOWN: u32 = 0;

// Superblock field offsets (after the common header).
const SB_VERSION_MAJOR: usize = 16;
const SB_VERSION_MINOR: usize = 18;
const SB_BLOCK_LOG: usize = 20;
const SB_INODE_LOG: usize = 21;
const SB_BLOCK_COUNT: usize = 24;
const SB_JOURNAL_HEADER: usize = 32;
const SB_LOG_START: usize = 40;
const SB_LOG_BLOCKS: usize = 48;
const SB_ROOT_BLOCK: usize = 56;
const SB_DATA_START: usize = 64;
const SB_UUID: usize = 72;
const SB_COMPAT: usize = 88;
const SB_INCOMPAT: usize = 92;
const SB_RO_COMPAT: usize = 96;
const SB_LINK_MAX: usize = 100;
const SB_NODE_CAP: usize = 104;
/// Bytes of the superblock that carry fields (the rest of the block is zero).
pub const SB_USED: usize = 108;

/// The static filesystem geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// log2 of the block size (10 ..= 16).
    pub block_log: u32,
    /// Filesystem size in blocks.
    pub block_count: u64,
    /// Log length in blocks (the log starts at [`LOG_START`]).
    pub log_blocks: u64,
    /// Address of the root block.
    pub root_block: u64,
    /// First block the allocator manages (everything below is fixed metadata).
    pub data_start: u64,
    /// Volume identifier.
    pub uuid: [u8; 16],
    /// Most links one inode may have (`EMLINK` beyond).
    pub link_max: u32,
    /// Most records per B+tree node, or 0 for as many as fit (a testing knob that makes trees
    /// deep on small images; stored so every reader agrees on node limits).
    pub node_cap: u32,
}

impl Superblock {
    /// Block size in bytes.
    pub fn block_size(&self) -> usize {
        1 << self.block_log
    }

    /// Inodes per inode chunk (one block).
    pub fn inodes_per_block(&self) -> u64 {
        1 << (self.block_log - INODE_SIZE_LOG)
    }

    /// The superblock image for block `blkno` (primary or backup).
    pub fn encode(&self, blkno: u64) -> Vec<u8> {
        let mut b = alloc::vec![0u8; self.block_size()];
        init_header(&mut b, MAGIC_SUPER, blkno);
        put16(&mut b, SB_VERSION_MAJOR, VERSION_MAJOR);
        put16(&mut b, SB_VERSION_MINOR, VERSION_MINOR);
        b[SB_BLOCK_LOG] = self.block_log as u8;
        b[SB_INODE_LOG] = INODE_SIZE_LOG as u8;
        put64(&mut b, SB_BLOCK_COUNT, self.block_count);
        put64(&mut b, SB_JOURNAL_HEADER, JOURNAL_HEADER);
        put64(&mut b, SB_LOG_START, LOG_START);
        put64(&mut b, SB_LOG_BLOCKS, self.log_blocks);
        put64(&mut b, SB_ROOT_BLOCK, self.root_block);
        put64(&mut b, SB_DATA_START, self.data_start);
        b[SB_UUID..SB_UUID + 16].copy_from_slice(&self.uuid);
        put32(&mut b, SB_COMPAT, 0);
        put32(&mut b, SB_INCOMPAT, 0);
        put32(&mut b, SB_RO_COMPAT, 0);
        put32(&mut b, SB_LINK_MAX, self.link_max);
        put32(&mut b, SB_NODE_CAP, self.node_cap);
        seal(&mut b);
        b
    }

    /// Peeks the block size a (possibly corrupt) superblock claims, to know how much to read.
    /// `None` when the first bytes are not a superblock of a supported block size.
    pub fn peek_block_log(first_bytes: &[u8]) -> Option<u32> {
        if first_bytes.len() < SB_USED || get32(first_bytes, HDR_MAGIC) != MAGIC_SUPER {
            return None;
        }
        let log = first_bytes[SB_BLOCK_LOG] as u32;
        (MIN_BLOCK_LOG..=MAX_BLOCK_LOG).contains(&log).then_some(log)
    }

    /// Decodes and validates a superblock read from block `blkno` of a device holding
    /// `device_bytes` bytes. Every field is checked; the first problem is the reason.
    pub fn decode(b: &[u8], blkno: u64, device_bytes: u64) -> Result<Self, Corrupt> {
        if b.len() < 1 << MIN_BLOCK_LOG {
            return Err(frond_corrupt!("superblock: short read"));
        }
        verify_header(b, MAGIC_SUPER, blkno, "superblock")?;
        let major = get16(b, SB_VERSION_MAJOR);
        if major != VERSION_MAJOR {
            return Err(frond_corrupt!(
                "superblock: unsupported format version {major} (this code reads {VERSION_MAJOR})"
            ));
        }
        let block_log = b[SB_BLOCK_LOG] as u32;
        if !(MIN_BLOCK_LOG..=MAX_BLOCK_LOG).contains(&block_log) {
            return Err(frond_corrupt!("superblock: block size 2^{block_log} out of range 1 KiB ..= 64 KiB"));
        }
        if b.len() != 1 << block_log {
            return Err(frond_corrupt!(
                "superblock: read {} bytes but block size is {}",
                b.len(),
                1u32 << block_log
            ));
        }
        if b[SB_INODE_LOG] as u32 != INODE_SIZE_LOG {
            return Err(frond_corrupt!(
                "superblock: inode size 2^{} unsupported (only 512)",
                b[SB_INODE_LOG]
            ));
        }
        let incompat = get32(b, SB_INCOMPAT);
        if incompat & !INCOMPAT_KNOWN != 0 {
            return Err(frond_corrupt!("superblock: unknown incompatible features {incompat:#x}"));
        }
        let ro = get32(b, SB_RO_COMPAT);
        if ro & !RO_COMPAT_KNOWN != 0 {
            return Err(frond_corrupt!("superblock: unknown read-only-compatible features {ro:#x}"));
        }
        let block_count = get64(b, SB_BLOCK_COUNT);
        let device_blocks = device_bytes >> block_log;
        if block_count > device_blocks {
            return Err(frond_corrupt!(
                "superblock: filesystem has {block_count} blocks but the device holds only {device_blocks}"
            ));
        }
        if get64(b, SB_JOURNAL_HEADER) != JOURNAL_HEADER || get64(b, SB_LOG_START) != LOG_START {
            return Err(frond_corrupt!("superblock: journal not at blocks {JOURNAL_HEADER}/{LOG_START}"));
        }
        let log_blocks = get64(b, SB_LOG_BLOCKS);
        if !(MIN_LOG_BLOCKS..=MAX_LOG_BLOCKS).contains(&log_blocks) {
            return Err(frond_corrupt!("superblock: log of {log_blocks} blocks out of range"));
        }
        let root_block = get64(b, SB_ROOT_BLOCK);
        if root_block != LOG_START + log_blocks {
            return Err(frond_corrupt!("superblock: root block {root_block} does not follow the log"));
        }
        let data_start = get64(b, SB_DATA_START);
        if data_start != root_block + 1 {
            return Err(frond_corrupt!(
                "superblock: data area start {data_start} does not follow the root block"
            ));
        }
        if block_count < data_start || block_count - data_start < MIN_DATA_BLOCKS {
            return Err(frond_corrupt!(
                "superblock: {block_count} blocks leave fewer than {MIN_DATA_BLOCKS} for data"
            ));
        }
        let link_max = get32(b, SB_LINK_MAX);
        if !(8..=LINK_MAX_LIMIT).contains(&link_max) {
            return Err(frond_corrupt!(
                "superblock: link limit {link_max} out of range 8 ..= {LINK_MAX_LIMIT}"
            ));
        }
        let node_cap = get32(b, SB_NODE_CAP);
        if node_cap != 0 && node_cap < 4 {
            return Err(frond_corrupt!("superblock: node record limit {node_cap} below 4"));
        }
        if b[SB_USED..].iter().any(|&x| x != 0) {
            return Err(frond_corrupt!("superblock: nonzero bytes in the unused area"));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[SB_UUID..SB_UUID + 16]);
        Ok(Self { block_log, block_count, log_blocks, root_block, data_start, uuid, link_max, node_cap })
    }
}

// Root block field offsets.
const RT_BNO_ROOT: usize = 16;
const RT_CNT_ROOT: usize = 24;
const RT_REFC_ROOT: usize = 32;
const RT_INO_ROOT: usize = 40;
const RT_ROOT_DIR: usize = 48;
const RT_FREE_BLOCKS: usize = 56;
const RT_INODES: usize = 64;
const RT_NEXT_GEN: usize = 72;
const RT_FL_COUNT: usize = 80;
const RT_FREELIST: usize = 88;
const RT_ORPHANS: usize = RT_FREELIST + 8 * FREELIST_CAP;
/// Bytes of the root block that carry fields (they fit the smallest block).
const RT_USED: usize = RT_ORPHANS + 8;
const _: () = assert!(RT_USED <= 1 << MIN_BLOCK_LOG);

/// The changing filesystem-wide state (one journaled block).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RootBlock {
    /// Root of the free-space tree by block (0 = empty).
    pub bno_root: u64,
    /// Root of the free-space tree by size.
    pub cnt_root: u64,
    /// Root of the reference count tree.
    pub refc_root: u64,
    /// Root of the inode chunk tree.
    pub ino_root: u64,
    /// Inode number of the root directory.
    pub root_dir: u64,
    /// Blocks owned by the allocator: free extents + free list + free-space tree nodes.
    pub free_blocks: u64,
    /// Allocated inodes.
    pub inodes: u64,
    /// Next inode generation number.
    pub next_gen: u64,
    /// Blocks set aside for free-space tree growth (Linux: the AGFL).
    pub freelist: Vec<u64>,
    /// First inode of the orphan list (unlinked inodes whose blocks are still being freed), 0
    /// when empty.
    pub orphans: u64,
}

impl RootBlock {
    /// Writes the root block image into `b` (a whole block) at address `blkno`, sealed.
    pub fn encode_into(&self, b: &mut [u8], blkno: u64) {
        self.encode_unsealed(b, blkno);
        seal(b);
    }

    /// [`RootBlock::encode_into`] without the CRC: for the cached root block, whose sealer
    /// (`buf::seal_header`) computes it once at commit instead of at every operation.
    pub fn encode_unsealed(&self, b: &mut [u8], blkno: u64) {
        b.fill(0);
        init_header(b, MAGIC_ROOT, blkno);
        put64(b, RT_BNO_ROOT, self.bno_root);
        put64(b, RT_CNT_ROOT, self.cnt_root);
        put64(b, RT_REFC_ROOT, self.refc_root);
        put64(b, RT_INO_ROOT, self.ino_root);
        put64(b, RT_ROOT_DIR, self.root_dir);
        put64(b, RT_FREE_BLOCKS, self.free_blocks);
        put64(b, RT_INODES, self.inodes);
        put64(b, RT_NEXT_GEN, self.next_gen);
        debug_assert!(self.freelist.len() <= FREELIST_CAP);
        put32(b, RT_FL_COUNT, self.freelist.len() as u32);
        for (i, &blk) in self.freelist.iter().enumerate() {
            put64(b, RT_FREELIST + 8 * i, blk);
        }
        put64(b, RT_ORPHANS, self.orphans);
    }

    /// Decodes and validates the root block against the geometry.
    pub fn decode(b: &[u8], sb: &Superblock) -> Result<Self, Corrupt> {
        verify_header(b, MAGIC_ROOT, sb.root_block, "root")?;
        let in_data = |what: &str, v: u64, allow_zero: bool| -> Result<u64, Corrupt> {
            if (allow_zero && v == 0) || (sb.data_start..sb.block_count).contains(&v) {
                Ok(v)
            } else {
                Err(frond_corrupt!("root block: {what} {v} outside the data area"))
            }
        };
        let bno_root = in_data("free-space (by block) tree root", get64(b, RT_BNO_ROOT), true)?;
        let cnt_root = in_data("free-space (by size) tree root", get64(b, RT_CNT_ROOT), true)?;
        let refc_root = in_data("refcount tree root", get64(b, RT_REFC_ROOT), true)?;
        let ino_root = in_data("inode tree root", get64(b, RT_INO_ROOT), false)?;
        let root_dir = get64(b, RT_ROOT_DIR);
        let free_blocks = get64(b, RT_FREE_BLOCKS);
        if free_blocks > sb.block_count - sb.data_start {
            return Err(frond_corrupt!("root block: {free_blocks} free blocks exceed the data area"));
        }
        let fl = get32(b, RT_FL_COUNT) as usize;
        if fl > FREELIST_CAP {
            return Err(frond_corrupt!("root block: free list of {fl} entries exceeds {FREELIST_CAP}"));
        }
        let mut freelist = Vec::with_capacity(fl);
        for i in 0..fl {
            freelist.push(in_data("free list entry", get64(b, RT_FREELIST + 8 * i), false)?);
        }
        Ok(Self {
            bno_root,
            cnt_root,
            refc_root,
            ino_root,
            root_dir,
            free_blocks,
            inodes: get64(b, RT_INODES),
            next_gen: get64(b, RT_NEXT_GEN),
            freelist,
            orphans: get64(b, RT_ORPHANS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(block_log: u32) -> Superblock {
        Superblock {
            block_log,
            block_count: 4096,
            log_blocks: 64,
            root_block: LOG_START + 64,
            data_start: LOG_START + 65,
            uuid: [7; 16],
            link_max: 1000,
            node_cap: 0,
        }
    }

    #[test]
    fn superblock_round_trips_at_every_block_size() {
        for log in MIN_BLOCK_LOG..=MAX_BLOCK_LOG {
            let sb = sample(log);
            let dev = 4096u64 << log;
            for blk in [SB_PRIMARY, SB_BACKUP] {
                let img = sb.encode(blk);
                assert_eq!(Superblock::peek_block_log(&img), Some(log));
                assert_eq!(Superblock::decode(&img, blk, dev), Ok(sb));
            }
        }
    }

    fn refused(mutate: impl Fn(&mut Vec<u8>), reseal: bool) -> String {
        let sb = sample(12);
        let mut img = sb.encode(0);
        mutate(&mut img);
        if reseal {
            seal(&mut img);
        }
        Superblock::decode(&img, 0, 4096 << 12).unwrap_err().0
    }

    #[test]
    fn every_bad_field_is_refused_with_its_reason() {
        assert_eq!(refused(|b| b[200] = 1, false), "superblock block 0: checksum mismatch");
        assert_eq!(
            refused(|b| put16(b, SB_VERSION_MAJOR, 2), true),
            "superblock: unsupported format version 2 (this code reads 1)"
        );
        assert_eq!(
            refused(|b| b[SB_BLOCK_LOG] = 9, true),
            "superblock: block size 2^9 out of range 1 KiB ..= 64 KiB"
        );
        assert_eq!(
            refused(|b| b[SB_BLOCK_LOG] = 13, true),
            "superblock: read 4096 bytes but block size is 8192"
        );
        assert_eq!(
            refused(|b| b[SB_INODE_LOG] = 8, true),
            "superblock: inode size 2^8 unsupported (only 512)"
        );
        assert_eq!(
            refused(|b| put32(b, SB_INCOMPAT, 4), true),
            "superblock: unknown incompatible features 0x4"
        );
        assert_eq!(
            refused(|b| put32(b, SB_RO_COMPAT, 1), true),
            "superblock: unknown read-only-compatible features 0x1"
        );
        assert_eq!(
            refused(|b| put64(b, SB_BLOCK_COUNT, 4097), true),
            "superblock: filesystem has 4097 blocks but the device holds only 4096"
        );
        assert_eq!(refused(|b| put64(b, SB_LOG_START, 9), true), "superblock: journal not at blocks 2/3");
        assert_eq!(refused(|b| put64(b, SB_LOG_BLOCKS, 5), true), "superblock: log of 5 blocks out of range");
        assert_eq!(
            refused(|b| put64(b, SB_ROOT_BLOCK, 5), true),
            "superblock: root block 5 does not follow the log"
        );
        assert_eq!(
            refused(|b| put64(b, SB_DATA_START, 500), true),
            "superblock: data area start 500 does not follow the root block"
        );
        assert_eq!(
            refused(|b| put64(b, SB_BLOCK_COUNT, 80), true),
            "superblock: 80 blocks leave fewer than 32 for data"
        );
        assert_eq!(
            refused(|b| put32(b, SB_LINK_MAX, 1), true),
            "superblock: link limit 1 out of range 8 ..= 65000"
        );
        assert_eq!(refused(|b| put32(b, SB_NODE_CAP, 2), true), "superblock: node record limit 2 below 4");
        assert_eq!(refused(|b| b[300] = 1, true), "superblock: nonzero bytes in the unused area");
        assert_eq!(refused(|b| put64(b, HDR_BLKNO, 1), true), "superblock block 0: records its address as 1");
    }

    #[test]
    fn root_block_round_trips_and_checks_pointers() {
        let sb = sample(10);
        let rb = RootBlock {
            bno_root: 100,
            cnt_root: 101,
            refc_root: 0,
            ino_root: 102,
            root_dir: 103 * 2,
            free_blocks: 3000,
            inodes: 1,
            next_gen: 9,
            freelist: alloc::vec![110, 111, 112],
            orphans: 0,
        };
        let mut b = alloc::vec![0u8; 1024];
        rb.encode_into(&mut b, sb.root_block);
        assert_eq!(RootBlock::decode(&b, &sb), Ok(rb.clone()));
        put64(&mut b, RT_INO_ROOT, 5000);
        seal(&mut b);
        assert_eq!(
            RootBlock::decode(&b, &sb).unwrap_err().0,
            "root block: inode tree root 5000 outside the data area"
        );
        put64(&mut b, RT_INO_ROOT, 102);
        put32(&mut b, RT_FL_COUNT, 65);
        seal(&mut b);
        assert_eq!(
            RootBlock::decode(&b, &sb).unwrap_err().0,
            "root block: free list of 65 entries exceeds 64"
        );
        put32(&mut b, RT_FL_COUNT, 3);
        put64(&mut b, RT_FREE_BLOCKS, 9999);
        seal(&mut b);
        assert_eq!(
            RootBlock::decode(&b, &sb).unwrap_err().0,
            "root block: 9999 free blocks exceed the data area"
        );
    }
}
