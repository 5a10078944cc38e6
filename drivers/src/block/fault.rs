//! FaultDisk: a [`BlockDevice`] wrapper that fails chosen requests, for error-path tests.
//!
//! A test scripts failures as a list of [`FaultRule`]s, added and removed at any time. A rule
//! matches requests by op ([`OpMask`]) and optionally by a sector range (a request matches if it
//! overlaps the range; FLUSH has no range, so ranged rules never match it). Each rule counts the
//! requests it matched; it fires on every match, or only on its `nth` match (1-based), once
//! (one-shot: the rule is spent after firing) or from then on (sticky). A fired request is
//! completed with the rule's error (EIO unless told otherwise) from the next `poll`, and is
//! never passed to the device below: the medium is untouched. Every rule sees every request (so
//! counts stay true when rules overlap); the first rule that fires gives the error.
//!
//! Invalid bios are passed through untouched (the device below refuses them with its own
//! error) and are not counted by any rule.
//!
//! Lock order: `rules`, then `failed`; neither is held while calling the inner device or a
//! completion.
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | dm-flakey `error_reads` / `error_writes` (all I/O of a kind fails) | a sticky rule on [`OpMask::READ`] / [`OpMask::WRITE`] |
//! | dm-flakey up/down intervals | add / remove rules at runtime |
//! | dm-dust bad block list (`addbadblock`, reads of bad blocks fail) | ranged rules, sticky |
//! | dm-dust `quiet` / counting | [`FaultDisk::rule_stats`] |
//! | `fail_make_request` with `interval` / `times` | `nth` + one-shot / sticky |
//! | QEMU blkdebug `inject-error` (event, sector, once) | the same rule shape, for the real driver |
//!
//! Deviations: no read corruption or dropped writes (a failed request changes nothing, and a
//! successful one is carried out exactly); dm-dust fails reads only, here any op.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::{validate, Bio, BioEnd, BioOp, BlockDevice, DeviceInfo};
use crate::errno::{Errno, Result};

bitflags::bitflags! {
    /// The ops a [`FaultRule`] applies to.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct OpMask: u8 {
        /// READ.
        const READ = 1 << 0;
        /// WRITE.
        const WRITE = 1 << 1;
        /// FLUSH.
        const FLUSH = 1 << 2;
        /// DISCARD.
        const DISCARD = 1 << 3;
        /// WRITE_ZEROES.
        const WRITE_ZEROES = 1 << 4;
    }
}

impl OpMask {
    /// The mask bit of `op`.
    pub fn of(op: BioOp) -> Self {
        match op {
            BioOp::Read => Self::READ,
            BioOp::Write => Self::WRITE,
            BioOp::Flush => Self::FLUSH,
            BioOp::Discard => Self::DISCARD,
            BioOp::WriteZeroes => Self::WRITE_ZEROES,
        }
    }
}

/// One scripted failure. Build with [`FaultRule::fail`] and the modifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    ops: OpMask,
    sectors: Option<Range<u64>>,
    nth: Option<u64>,
    sticky: bool,
    error: Errno,
}

impl FaultRule {
    /// Fails every request of the ops in `ops` with EIO (sticky, any sector).
    pub fn fail(ops: OpMask) -> Self {
        Self { ops, sectors: None, nth: None, sticky: true, error: Errno::EIO }
    }

    /// Only requests overlapping `sectors` (512-byte units) match.
    pub fn on_sectors(mut self, sectors: Range<u64>) -> Self {
        self.sectors = Some(sectors);
        self
    }

    /// Fires on the `n`th matching request (1-based) rather than on every one: only that one
    /// when one-shot, that one and all later ones when sticky.
    pub fn nth(mut self, n: u64) -> Self {
        self.nth = Some(n);
        self
    }

    /// Fires once, then the rule is spent.
    pub fn once(mut self) -> Self {
        self.sticky = false;
        self
    }

    /// Keeps firing (the default).
    pub fn sticky(mut self) -> Self {
        self.sticky = true;
        self
    }

    /// Completes fired requests with `error` instead of EIO.
    pub fn with_error(mut self, error: Errno) -> Self {
        self.error = error;
        self
    }

    fn check(&self) -> Result<()> {
        let empty_range = self.sectors.as_ref().is_some_and(|r| r.start >= r.end);
        if self.ops.is_empty() || empty_range || self.nth == Some(0) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn matches(&self, op: BioOp, range: Option<&Range<u64>>) -> bool {
        if !self.ops.contains(OpMask::of(op)) {
            return false;
        }
        match (&self.sectors, range) {
            (None, _) => true,
            (Some(want), Some(r)) => r.start < want.end && want.start < r.end,
            (Some(_), None) => false,
        }
    }
}

/// Names a rule added to a [`FaultDisk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

/// What a rule has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Requests the rule matched (op and range).
    pub seen: u64,
    /// Requests the rule failed.
    pub fired: u64,
    /// A one-shot rule that has fired.
    pub spent: bool,
}

struct Armed {
    id: RuleId,
    rule: FaultRule,
    stats: RuleStats,
}

/// A fault-injecting wrapper around a device. See the module documentation.
pub struct FaultDisk {
    dev: Arc<dyn BlockDevice>,
    rules: Mutex<Vec<Armed>>,
    failed: Mutex<VecDeque<(BioEnd, Errno)>>,
    next_id: AtomicU64,
    injected: AtomicU64,
}

impl FaultDisk {
    /// Wraps `dev` with no rules (everything passes through).
    pub fn new(dev: Arc<dyn BlockDevice>) -> Self {
        Self {
            dev,
            rules: Mutex::new(Vec::new()),
            failed: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            injected: AtomicU64::new(0),
        }
    }

    /// Adds a rule; it applies to requests submitted from now on. `EINVAL` for a rule that can
    /// never match (no ops, an empty range, `nth(0)`).
    pub fn add_rule(&self, rule: FaultRule) -> Result<RuleId> {
        rule.check()?;
        let id = RuleId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.rules.lock().push(Armed { id, rule, stats: RuleStats::default() });
        Ok(id)
    }

    /// Removes a rule; false if there is no such rule.
    pub fn remove_rule(&self, id: RuleId) -> bool {
        let mut rules = self.rules.lock();
        let before = rules.len();
        rules.retain(|a| a.id != id);
        rules.len() != before
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.rules.lock().clear();
    }

    /// What rule `id` has done, if it exists.
    pub fn rule_stats(&self, id: RuleId) -> Option<RuleStats> {
        self.rules.lock().iter().find(|a| a.id == id).map(|a| a.stats)
    }

    /// Requests failed so far, over all rules.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Acquire)
    }

    /// The device below.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// Runs `bio` past the rules: the error to fail it with, if one fires.
    fn verdict(&self, bio: &Bio) -> Option<Errno> {
        let range = (bio.op != BioOp::Flush).then(|| bio.sector..bio.sector.saturating_add(bio.sectors()));
        let mut hit = None;
        for a in self.rules.lock().iter_mut() {
            if !a.rule.matches(bio.op, range.as_ref()) {
                continue;
            }
            a.stats.seen += 1;
            if a.stats.spent {
                continue;
            }
            let fires = match a.rule.nth {
                None => true,
                Some(n) if a.rule.sticky => a.stats.seen >= n,
                Some(n) => a.stats.seen == n,
            };
            if fires {
                a.stats.fired += 1;
                a.stats.spent = !a.rule.sticky;
                hit.get_or_insert(a.rule.error);
            }
        }
        hit
    }
}

impl BlockDevice for FaultDisk {
    fn info(&self) -> DeviceInfo {
        self.dev.info()
    }

    fn submit(&self, bio: Bio) {
        if validate(&self.dev.info(), &bio).is_ok() {
            if let Some(e) = self.verdict(&bio) {
                self.injected.fetch_add(1, Ordering::AcqRel);
                self.failed.lock().push_back((bio.end, e));
                return;
            }
        }
        self.dev.submit(bio);
    }

    /// Completes the failed requests, then polls the device below.
    fn poll(&self) -> usize {
        let mut n = 0;
        while let Some((end, e)) = self.failed.lock().pop_front() {
            end.complete(Err(e));
            n += 1;
        }
        n + self.dev.poll()
    }

    fn in_flight(&self) -> usize {
        self.dev.in_flight() + self.failed.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::sync::{flush, read_at, write_at};
    use crate::block::testutil::{bio, disk, seg, Done};
    use crate::block::{BioFlags, RamDisk};
    use crate::platform::{Platform, StdPlatform};
    use alloc::vec;

    fn setup() -> (Arc<RamDisk>, FaultDisk, Arc<dyn Platform>) {
        let d = disk(64 * 1024, 512, |_| {});
        d.poke(0, &[0x11; 64 * 1024]);
        let f = FaultDisk::new(d.clone());
        (d, f, StdPlatform::arc())
    }

    #[test]
    fn the_nth_write_fails_once_and_leaves_the_medium_untouched() {
        let (d, f, p) = setup();
        let id = f.add_rule(FaultRule::fail(OpMask::WRITE).nth(3).once()).unwrap();
        let results: Vec<Result<()>> = (0..5u8)
            .map(|i| write_at(&f, &p, i as u64 * 4096, &[0xA0 + i; 4096], BioFlags::empty()))
            .collect();
        assert_eq!(results, vec![Ok(()), Ok(()), Err(Errno::EIO), Ok(()), Ok(())]);
        let mut back = vec![0u8; 5 * 4096];
        d.peek(0, &mut back);
        for i in 0..5 {
            let want = if i == 2 { 0x11 } else { 0xA0 + i as u8 };
            assert!(back[i * 4096..(i + 1) * 4096].iter().all(|&b| b == want), "block {i}");
        }
        assert_eq!(d.stats().writes, 4, "the failed write never reached the disk");
        assert_eq!(f.rule_stats(id), Some(RuleStats { seen: 5, fired: 1, spent: true }));
        let mut buf = vec![0u8; 4096];
        read_at(&f, &p, 0, &mut buf).unwrap();
        assert_eq!((f.injected(), f.in_flight()), (1, 0));
    }

    #[test]
    fn a_sticky_nth_rule_fails_from_the_nth_request_on() {
        let (_d, f, p) = setup();
        f.add_rule(FaultRule::fail(OpMask::READ).nth(2)).unwrap();
        let mut buf = vec![0u8; 512];
        let got: Vec<Result<()>> = (0..4).map(|i| read_at(&f, &p, i * 512, &mut buf)).collect();
        assert_eq!(got, vec![Ok(()), Err(Errno::EIO), Err(Errno::EIO), Err(Errno::EIO)]);
        write_at(&f, &p, 0, &[1; 512], BioFlags::empty()).unwrap();
    }

    #[test]
    fn a_ranged_rule_hits_only_overlapping_requests() {
        let (d, f, p) = setup();
        let id = f.add_rule(FaultRule::fail(OpMask::READ | OpMask::WRITE).on_sectors(16..24)).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(read_at(&f, &p, 0, &mut buf), Ok(()));
        assert_eq!(read_at(&f, &p, 4096, &mut buf), Ok(()), "adjacent below");
        assert_eq!(read_at(&f, &p, 12 * 512, &mut buf), Err(Errno::EIO));
        assert_eq!(write_at(&f, &p, 20 * 512, &[7; 4096], BioFlags::empty()), Err(Errno::EIO));
        assert_eq!(read_at(&f, &p, 24 * 512, &mut buf), Ok(()), "adjacent above");
        assert_eq!(flush(&f, &*p), Ok(()), "ranged rules never match a flush");
        let mut back = vec![0u8; 4096];
        d.peek(20 * 512, &mut back);
        assert!(back.iter().all(|&b| b == 0x11));
        assert_eq!(f.rule_stats(id), Some(RuleStats { seen: 2, fired: 2, spent: false }));
    }

    #[test]
    fn flushes_fail_with_the_chosen_errno_and_rules_come_and_go() {
        let (_d, f, p) = setup();
        let id = f.add_rule(FaultRule::fail(OpMask::FLUSH).with_error(Errno::ENOSPC)).unwrap();
        assert_eq!(flush(&f, &*p), Err(Errno::ENOSPC));
        assert_eq!(flush(&f, &*p), Err(Errno::ENOSPC), "sticky");
        assert!(f.remove_rule(id));
        assert!(!f.remove_rule(id));
        assert_eq!(flush(&f, &*p), Ok(()));
        assert_eq!(f.rule_stats(id), None);
        f.add_rule(FaultRule::fail(OpMask::DISCARD | OpMask::WRITE_ZEROES).once()).unwrap();
        f.clear_rules();
        assert_eq!(crate::block::sync::dataless(&f, &*p, BioOp::Discard, 0, 4096), Ok(()));
        assert_eq!(f.injected(), 2);
    }

    #[test]
    fn overlapping_rules_all_count_and_the_first_to_fire_decides() {
        let (_d, f, p) = setup();
        let a = f.add_rule(FaultRule::fail(OpMask::WRITE).nth(2).once().with_error(Errno::EROFS)).unwrap();
        let b = f.add_rule(FaultRule::fail(OpMask::WRITE).nth(2).once()).unwrap();
        let c = f.add_rule(FaultRule::fail(OpMask::WRITE).nth(3).once().with_error(Errno::ENOSPC)).unwrap();
        let w = |off| write_at(&f, &p, off, &[1; 512], BioFlags::empty());
        assert_eq!((w(0), w(512), w(1024), w(1536)), (Ok(()), Err(Errno::EROFS), Err(Errno::ENOSPC), Ok(())));
        assert_eq!(f.rule_stats(a), Some(RuleStats { seen: 4, fired: 1, spent: true }));
        assert_eq!(f.rule_stats(b), Some(RuleStats { seen: 4, fired: 1, spent: true }));
        assert_eq!(f.rule_stats(c), Some(RuleStats { seen: 4, fired: 1, spent: true }));
    }

    #[test]
    fn invalid_bios_and_rules_get_their_own_errors() {
        let (_d, f, p) = setup();
        let id = f.add_rule(FaultRule::fail(OpMask::READ)).unwrap();
        let mut buf = vec![0u8; 512];
        assert_eq!(
            read_at(&f, &p, 64 * 1024, &mut buf),
            Err(Errno::EINVAL),
            "out of range: the disk's error"
        );
        assert_eq!(f.rule_stats(id).map(|s| s.seen), Some(0));
        assert_eq!(f.add_rule(FaultRule::fail(OpMask::empty())), Err(Errno::EINVAL));
        assert_eq!(f.add_rule(FaultRule::fail(OpMask::READ).on_sectors(8..8)), Err(Errno::EINVAL));
        assert_eq!(f.add_rule(FaultRule::fail(OpMask::READ).nth(0)), Err(Errno::EINVAL));
    }

    #[test]
    fn failures_complete_from_poll_not_inside_submit() {
        let (_d, f, _p) = setup();
        f.add_rule(FaultRule::fail(OpMask::WRITE)).unwrap();
        let done = Done::new();
        let buf = vec![0u8; 512];
        f.submit(bio(BioOp::Write, 0, &[seg(&buf, 0, 512)], BioFlags::empty(), done.end(7)));
        assert_eq!((done.len(), f.in_flight()), (0, 1));
        assert_eq!(f.poll(), 1);
        assert_eq!(done.all(), vec![(7, Err(Errno::EIO))]);
        assert_eq!(f.in_flight(), 0);
    }
}
