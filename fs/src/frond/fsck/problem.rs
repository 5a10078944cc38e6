//! The problems fsck reports: one typed value per kind, each printing a precise sentence.
//!
//! Lock order: plain values; no locks.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xfs_repair` / `xfs_scrub` free-form messages | [`Problem`] (typed, with `Display`) and [`Owner`] |

use alloc::string::String;
use core::fmt;

/// Who uses a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A free extent in the free-space trees.
    Free,
    /// The allocator's free list.
    FreeList,
    /// A node of a free-space tree.
    FreeSpaceTree,
    /// A node of the inode tree.
    InodeTree,
    /// An inode chunk.
    InodeChunk,
    /// A node of the refcount tree.
    RefcountTree,
    /// A COW staging extent.
    CowStaging,
    /// A node of inode `ino`'s extent-map tree.
    ExtentMap(u64),
    /// A node of directory `ino`'s tree.
    Directory(u64),
    /// File data: inode `ino` maps it at `file_block`.
    File {
        /// The inode.
        ino: u64,
        /// The file block that maps to the block in question.
        file_block: u64,
    },
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Free => write!(f, "the free-space tree"),
            Owner::FreeList => write!(f, "the allocator free list"),
            Owner::FreeSpaceTree => write!(f, "a free-space tree node"),
            Owner::InodeTree => write!(f, "an inode tree node"),
            Owner::InodeChunk => write!(f, "an inode chunk"),
            Owner::RefcountTree => write!(f, "a refcount tree node"),
            Owner::CowStaging => write!(f, "COW staging"),
            Owner::ExtentMap(i) => write!(f, "the extent map tree of inode {i}"),
            Owner::Directory(i) => write!(f, "the tree of directory {i}"),
            Owner::File { ino, file_block } => write!(f, "inode {ino} at file block {file_block}"),
        }
    }
}

/// One inconsistency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The primary superblock is unusable.
    Superblock(String),
    /// The backup superblock is unusable or differs from the primary.
    BackupSuperblock(String),
    /// The journal header is unusable.
    JournalHeader(String),
    /// The log holds transactions not yet applied (the filesystem was not unmounted cleanly).
    JournalDirty {
        /// Complete transactions in the log.
        transactions: u64,
    },
    /// The root block is unusable.
    RootBlock(String),
    /// A B+tree is structurally broken.
    Tree {
        /// Which tree ("free-space (by block)", "directory 17", ...).
        tree: String,
        /// What is wrong.
        detail: String,
    },
    /// A free-space record is invalid.
    FreeExtent {
        /// Start.
        start: u64,
        /// Length.
        len: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The by-block and by-size trees disagree.
    FreeTreesDiffer {
        /// Start of the extent.
        start: u64,
        /// Length.
        len: u64,
        /// The tree it is missing from.
        missing_from: &'static str,
    },
    /// Two free extents touch (should have been merged).
    FreeNotMerged {
        /// Start of the second extent.
        start: u64,
    },
    /// The root block's free-block count is wrong.
    FreeCount {
        /// Recorded.
        recorded: u64,
        /// Counted.
        actual: u64,
    },
    /// The root block's inode count is wrong.
    InodeCount {
        /// Recorded.
        recorded: u64,
        /// Counted.
        actual: u64,
    },
    /// Something is wrong with one inode.
    Inode {
        /// The inode.
        ino: u64,
        /// What.
        detail: String,
    },
    /// A block is both free and in use.
    FreeAndUsed {
        /// The block.
        block: u64,
        /// Its user.
        owner: Owner,
    },
    /// A block is neither free nor used.
    Leaked {
        /// The block.
        block: u64,
    },
    /// A block is claimed twice where sharing is not allowed.
    MultiplyClaimed {
        /// The block.
        block: u64,
        /// First claimant.
        first: Owner,
        /// Second claimant.
        second: Owner,
    },
    /// A block's reference count disagrees with how many times it is mapped.
    Refcount {
        /// The block.
        block: u64,
        /// Times mapped by file data.
        mapped: u64,
        /// Count in the refcount tree (1 when absent).
        recorded: u64,
    },
    /// An inode shares blocks without the REFLINK flag.
    ReflinkFlag {
        /// The inode.
        ino: u64,
        /// A shared block it maps.
        block: u64,
    },
    /// An inode's link count disagrees with the names found.
    LinkCount {
        /// The inode.
        ino: u64,
        /// Recorded.
        recorded: u32,
        /// Counted.
        actual: u32,
    },
    /// An allocated inode no directory names.
    Unreachable {
        /// The inode.
        ino: u64,
    },
    /// A directory entry is wrong.
    DirEntry {
        /// The directory.
        dir: u64,
        /// The entry's name.
        name: String,
        /// What.
        detail: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Superblock(s) => write!(f, "primary superblock unusable: {s}"),
            Problem::BackupSuperblock(s) => write!(f, "backup superblock: {s}"),
            Problem::JournalHeader(s) => write!(f, "journal header unusable: {s}"),
            Problem::JournalDirty { transactions } => {
                write!(f, "journal not clean: {transactions} committed transactions not yet replayed")
            }
            Problem::RootBlock(s) => write!(f, "root block unusable: {s}"),
            Problem::Tree { tree, detail } => write!(f, "{tree} tree: {detail}"),
            Problem::FreeExtent { start, len, why } => write!(f, "free extent {start}+{len}: {why}"),
            Problem::FreeTreesDiffer { start, len, missing_from } => {
                write!(f, "free extent {start}+{len} missing from the {missing_from} tree")
            }
            Problem::FreeNotMerged { start } => {
                write!(f, "free extent at block {start} touches the previous one")
            }
            Problem::FreeCount { recorded, actual } => {
                write!(f, "root block records {recorded} allocator blocks but {actual} were counted")
            }
            Problem::InodeCount { recorded, actual } => {
                write!(f, "root block records {recorded} inodes but {actual} are allocated")
            }
            Problem::Inode { ino, detail } => write!(f, "inode {ino}: {detail}"),
            Problem::FreeAndUsed { block, owner } => {
                write!(f, "block {block} used by {owner} but also free in free-space tree")
            }
            Problem::Leaked { block } => write!(f, "block {block} is neither free nor used"),
            Problem::MultiplyClaimed { block, first, second } => {
                write!(f, "block {block} claimed by both {first} and {second}")
            }
            Problem::Refcount { block, mapped, recorded } => {
                write!(f, "block {block} is mapped {mapped} times but its reference count is {recorded}")
            }
            Problem::ReflinkFlag { ino, block } => {
                write!(f, "inode {ino} maps shared block {block} but lacks the reflink flag")
            }
            Problem::LinkCount { ino, recorded, actual } => {
                write!(f, "inode {ino} has link count {recorded} but {actual} links were found")
            }
            Problem::Unreachable { ino } => write!(f, "inode {ino} is allocated but no directory reaches it"),
            Problem::DirEntry { dir, name, detail } => {
                write!(f, "directory {dir} entry \"{name}\": {detail}")
            }
        }
    }
}
