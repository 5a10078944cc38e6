//! The orphan list: inodes whose last link is gone but whose blocks are not all freed yet.
//!
//! Freeing a large file takes several transactions (one per extent batch). So that a crash in
//! the middle leaves no half-freed, unreachable inode, the transaction that drops the last link
//! also puts the inode on the orphan list (a singly linked list: the root block's `orphans`
//! head, each inode's `next_orphan`), and the transaction that finally frees the inode takes it
//! off. Mount finishes freeing everything still listed. The file API will use the same list for
//! unlinked inodes that are still open.
//!
//! Lock order: runs under the metadata lock.
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | AGI unlinked buckets + `di_next_unlinked` | one list: `RootBlock::orphans` + `Inode::next_orphan` |
//! | `xfs_iunlink` / `xfs_iunlink_remove` | [`FsState::orphan_add`] / [`FsState::orphan_remove`] |
//! | `xlog_recover_process_iunlinks` | [`FsState::recover_orphans`] |

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::format::FResult;
use super::state::FsState;
use crate::frond_corrupt;

impl FsState {
    /// Puts `ino` at the head of the orphan list.
    pub fn orphan_add(&mut self, ino: u64) -> FResult<()> {
        let head = self.root.orphans;
        self.inode(ino)?.next_orphan = head;
        self.mark_inode_dirty(ino);
        self.root.orphans = ino;
        self.touch_root();
        Ok(())
    }

    /// Takes `ino` off the orphan list.
    pub fn orphan_remove(&mut self, ino: u64) -> FResult<()> {
        let next = self.inode(ino)?.next_orphan;
        if self.root.orphans == ino {
            self.root.orphans = next;
            self.touch_root();
        } else {
            let mut prev = self.root.orphans;
            let mut seen = BTreeSet::new();
            loop {
                if prev == 0 || !seen.insert(prev) {
                    return Err(self.corrupt(frond_corrupt!("inode {ino} is not on the orphan list")));
                }
                let p = self.inode(prev)?;
                if p.next_orphan == ino {
                    p.next_orphan = next;
                    self.mark_inode_dirty(prev);
                    break;
                }
                prev = p.next_orphan;
            }
        }
        self.inode(ino)?.next_orphan = 0;
        self.mark_inode_dirty(ino);
        Ok(())
    }

    /// The inodes on the orphan list, in order (a loop or a dangling entry is corruption).
    pub fn orphans(&mut self) -> FResult<Vec<u64>> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut ino = self.root.orphans;
        while ino != 0 {
            if !seen.insert(ino) {
                return Err(self.corrupt(frond_corrupt!("orphan list loops at inode {ino}")));
            }
            out.push(ino);
            ino = match self.inode(ino) {
                Ok(i) => i.next_orphan,
                Err(_) => {
                    return Err(self.corrupt(frond_corrupt!("orphan list names unallocated inode {ino}")))
                }
            };
        }
        Ok(out)
    }

    /// Finishes freeing every inode left on the orphan list (mount).
    pub fn recover_orphans(&mut self) -> FResult<usize> {
        let list = self.orphans()?;
        for &ino in &list {
            if self.inode(ino)?.nlink != 0 {
                return Err(self.corrupt(frond_corrupt!("orphan inode {ino} still has links")));
            }
            self.release_inode(ino)?;
        }
        Ok(list.len())
    }
}
