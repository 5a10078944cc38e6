//! mkfs: writes a new, empty frond filesystem.
//!
//! Layout (block numbers): 0 superblock, 1 backup superblock, 2 journal header, 3.. log,
//! then the root block, then the data area managed by the allocator. mkfs zeroes the log
//! (so no transaction of an earlier filesystem can replay), builds the free-space trees, the
//! inode tree and the root directory through the same code paths the mounted filesystem uses,
//! checkpoints them home, and writes the superblocks last (FUA), so an interrupted mkfs leaves no
//! valid superblock.
//!
//! Lock order: runs before the filesystem is mounted; no locks beyond the device's.
//!
//! # Linux <-> here
//!
//! | Linux (mkfs.xfs) | here |
//! |---|---|
//! | `-b size=` | [`MkfsOptions::block_size`] |
//! | `-l size=` | [`MkfsOptions::log_blocks`] |
//! | `-d size=` | [`MkfsOptions::size`] |
//! | log zeroing (`libxfs_log_clear`) | zeroes the log region |

use alloc::sync::Arc;

use super::buf::seal_header;
use super::format::{Error, FResult, MAX_BLOCK_LOG, MIN_BLOCK_LOG};
use super::inode::S_IFDIR;
use super::io::MetaIo;
use super::journal::Journal;
use super::state::{FsState, Pool};
use super::superblock::*;
use crate::block::{BioFlags, BlockDevice};
use crate::platform::Platform;
use crate::{Errno, Result};

/// mkfs parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MkfsOptions {
    /// Block size in bytes: a power of two from 1 KiB to 64 KiB, and a multiple of the device's
    /// logical block size. Default 4 KiB.
    pub block_size: u32,
    /// Filesystem size in bytes (default: the whole device).
    pub size: Option<u64>,
    /// Log length in blocks (default: 1/32 of the filesystem, at least 256 blocks, at most
    /// 16 MiB worth, and never more than a quarter of the filesystem).
    pub log_blocks: Option<u64>,
    /// Most links per inode (default 65000).
    pub link_max: u32,
    /// Most records per B+tree node, 0 for as many as fit (testing: deep trees on small images).
    pub node_cap: u32,
    /// Volume identifier.
    pub uuid: [u8; 16],
}

impl Default for MkfsOptions {
    fn default() -> Self {
        Self {
            block_size: 4096,
            size: None,
            log_blocks: None,
            link_max: LINK_MAX_LIMIT,
            node_cap: 0,
            uuid: [0; 16],
        }
    }
}

/// Blocks put on the free list before the free-space trees exist.
const INITIAL_FREELIST: u64 = 8;

/// The geometry mkfs would create on a device of `device_bytes` bytes.
pub fn geometry(opts: &MkfsOptions, device_bytes: u64) -> Result<Superblock> {
    let bs = opts.block_size;
    if !bs.is_power_of_two() || !(MIN_BLOCK_LOG..=MAX_BLOCK_LOG).contains(&bs.trailing_zeros()) {
        return Err(Errno::EINVAL);
    }
    let block_log = bs.trailing_zeros();
    let size = opts.size.unwrap_or(device_bytes);
    if size > device_bytes {
        return Err(Errno::EINVAL);
    }
    let block_count = size >> block_log;
    let log_blocks = match opts.log_blocks {
        Some(l) => l,
        None => (block_count / 32)
            .clamp(256, ((16u64 << 20) >> block_log).max(256))
            .min(block_count / 4)
            .max(MIN_LOG_BLOCKS),
    };
    if !(MIN_LOG_BLOCKS..=MAX_LOG_BLOCKS).contains(&log_blocks) {
        return Err(Errno::EINVAL);
    }
    if opts.node_cap != 0 && opts.node_cap < 4 || !(8..=LINK_MAX_LIMIT).contains(&opts.link_max) {
        return Err(Errno::EINVAL);
    }
    let root_block = LOG_START + log_blocks;
    let data_start = root_block + 1;
    if block_count < data_start + MIN_DATA_BLOCKS + INITIAL_FREELIST {
        return Err(Errno::ENOSPC);
    }
    Ok(Superblock {
        block_log,
        block_count,
        log_blocks,
        root_block,
        data_start,
        uuid: opts.uuid,
        link_max: opts.link_max,
        node_cap: opts.node_cap,
    })
}

/// Writes a new filesystem on `dev`.
pub fn mkfs(dev: Arc<dyn BlockDevice>, platform: Arc<dyn Platform>, opts: &MkfsOptions) -> Result<()> {
    let info = dev.info();
    let sb = geometry(opts, info.capacity_bytes())?;
    let io = MetaIo::new(dev, platform, sb.block_log)?;
    build(io, sb).map_err(Errno::from)
}

fn build(io: MetaIo, sb: Superblock) -> FResult<()> {
    let bs = sb.block_size();
    // Zero the journal header and the log.
    let zeros = alloc::vec![0u8; bs * 64];
    let mut blk = super::superblock::JOURNAL_HEADER;
    while blk < sb.root_block {
        let n = (sb.root_block - blk).min(64) as usize;
        io.write_block(blk, &zeros[..n * bs], BioFlags::empty())?;
        blk += n as u64;
    }
    let journal = Journal::new_empty(sb.log_blocks, bs, 0, 1);
    io.write_block(JOURNAL_HEADER, &journal.header().encode(bs, JOURNAL_HEADER), BioFlags::empty())?;
    let data = sb.block_count - sb.data_start;
    let root = RootBlock {
        free_blocks: data,
        next_gen: 1,
        freelist: (sb.data_start..sb.data_start + INITIAL_FREELIST).collect(),
        ..RootBlock::default()
    };
    let mut st = FsState::new(io.clone(), sb, journal, root);
    let rb = st.cache.create(sb.root_block, bs, seal_header);
    st.root.encode_into(&mut rb.data(), sb.root_block);
    st.op(0, 64, Pool::Reserve, |st| {
        st.seed_free_space(sb.data_start + INITIAL_FREELIST, data - INITIAL_FREELIST)?;
        st.fix_freelist()?;
        let ino = st.ialloc(S_IFDIR | 0o755, 0, 0)?;
        let d = st.inode(ino)?;
        d.nlink = 2;
        d.parent = ino;
        st.mark_inode_dirty(ino);
        st.root.root_dir = ino;
        st.touch_root();
        Ok(())
    })?;
    st.checkpoint()?;
    io.flush()?;
    for blk in [SB_BACKUP, SB_PRIMARY] {
        io.write_block(blk, &sb.encode(blk), BioFlags::FUA)?;
    }
    if st.shutdown.is_some() {
        return Err(Error::Errno(Errno::EIO));
    }
    Ok(())
}
