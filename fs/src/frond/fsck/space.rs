//! The block-usage sweep: every block of the data area must be free xor used, used blocks by
//! exactly one owner unless they are file data shared with the right reference count.
//!
//! Lock order: plain values; no locks.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `xfs_repair` phase 4/5 block maps (`set_bmap`, duplicate extents) | [`sweep`] over collected claims |
//! | `xfs_repair` refcount rebuild/check | the per-segment mapping count against refcount records |

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::problem::{Owner, Problem};

/// Everything fsck learned about who uses which blocks.
#[derive(Default)]
pub struct Usage {
    /// (start, length, owner) claims.
    pub claims: Vec<(u64, u64, Owner)>,
    /// Shared-domain refcount records: (start, length, count).
    pub refs: Vec<(u64, u64, u64)>,
    /// Inodes with the REFLINK flag.
    pub reflink: BTreeSet<u64>,
}

impl Usage {
    /// Records a claim.
    pub fn claim(&mut self, start: u64, len: u64, owner: Owner) {
        if len > 0 {
            self.claims.push((start, len, owner));
        }
    }
}

/// Sweeps `[lo, hi)` and returns the problems found (consecutive blocks with the same problem
/// are reported once, at the first block).
pub fn sweep(u: &mut Usage, lo: u64, hi: u64) -> Vec<Problem> {
    let mut out = Vec::new();
    u.claims.sort_unstable();
    u.refs.sort_unstable();
    let mut points: BTreeSet<u64> = BTreeSet::new();
    points.insert(lo);
    points.insert(hi);
    for &(s, l, _) in &u.claims {
        points.insert(s.clamp(lo, hi));
        points.insert(s.saturating_add(l).clamp(lo, hi));
    }
    for &(s, l, _) in &u.refs {
        points.insert(s.clamp(lo, hi));
        points.insert(s.saturating_add(l).clamp(lo, hi));
    }
    let pts: Vec<u64> = points.into_iter().collect();
    let mut next = 0usize;
    let mut active: Vec<(u64, Owner)> = Vec::new();
    let mut ref_i = 0usize;
    let mut last: Option<(u8, u64)> = None;
    let mut flagged: BTreeMap<u64, ()> = BTreeMap::new();
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a >= b {
            continue;
        }
        while next < u.claims.len() && u.claims[next].0 <= a {
            let (s, l, o) = u.claims[next];
            active.push((s.saturating_add(l), o));
            next += 1;
        }
        active.retain(|&(end, _)| end > a);
        while ref_i < u.refs.len() && u.refs[ref_i].0.saturating_add(u.refs[ref_i].1) <= a {
            ref_i += 1;
        }
        let recorded = match u.refs.get(ref_i) {
            Some(&(s, _, c)) if s <= a => c,
            _ => 1,
        };
        let owners: Vec<Owner> = active.iter().map(|&(_, o)| o).collect();
        let files: Vec<Owner> = owners.iter().copied().filter(|o| matches!(o, Owner::File { .. })).collect();
        let others: Vec<Owner> =
            owners.iter().copied().filter(|o| !matches!(o, Owner::File { .. })).collect();
        let has_free = others.contains(&Owner::Free);
        let (kind, p) = if owners.is_empty() {
            (1, Some(Problem::Leaked { block: a }))
        } else if has_free && owners.len() > 1 {
            let owner = owners.iter().copied().find(|o| *o != Owner::Free).unwrap_or(Owner::Free);
            (2, Some(Problem::FreeAndUsed { block: a, owner }))
        } else if others.len() > 1 {
            (3, Some(Problem::MultiplyClaimed { block: a, first: others[0], second: others[1] }))
        } else if others.len() == 1 && !files.is_empty() {
            (3, Some(Problem::MultiplyClaimed { block: a, first: others[0], second: files[0] }))
        } else if !files.is_empty() && files.len() as u64 != recorded {
            (4, Some(Problem::Refcount { block: a, mapped: files.len() as u64, recorded }))
        } else if files.is_empty() && recorded != 1 {
            (4, Some(Problem::Refcount { block: a, mapped: 0, recorded }))
        } else {
            (0, None)
        };
        if files.len() > 1 {
            for f in &files {
                if let Owner::File { ino, .. } = f {
                    if !u.reflink.contains(ino) && flagged.insert(*ino, ()).is_none() {
                        out.push(Problem::ReflinkFlag { ino: *ino, block: a });
                    }
                }
            }
        }
        match p {
            Some(p) => {
                if last != Some((kind, a)) {
                    out.push(p);
                }
                last = Some((kind, b));
            }
            None => last = None,
        }
    }
    out
}
