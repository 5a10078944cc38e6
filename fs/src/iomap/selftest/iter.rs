//! §1: the mapping iterator's contract (T1-T3) and its error rules.

use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};
use spin::Mutex;

use super::common::{folio, Rig, RigOpts};
use crate::iomap::testfs::HookPoint;
use crate::iomap::{
    iterate, IoendDone, Iomap, IomapOp, IomapOps, IomapPair, IomapType, MapDone, MapRequest, Progress, Step,
    MAX_STALE_RETRIES,
};
use crate::{Errno, Result};

/// A recorded call: `(pos, len, Some((prev pos, prev len, processed, stale)))`.
type Call = (u64, u64, Option<(u64, u64, u64, bool)>);

/// A scripted filesystem: fixed extents, every call recorded.
struct Script {
    extents: Vec<Iomap>,
    end_error: Option<Errno>,
    calls: Mutex<Vec<(MapRequest, Option<MapDone>)>>,
}

impl Script {
    fn new(extents: Vec<Iomap>) -> Self {
        Self { extents, end_error: None, calls: Mutex::new(Vec::new()) }
    }

    /// The calls as `(pos, len, Some((prev pos, prev len, processed, stale)))`.
    fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .iter()
            .map(|(r, p)| {
                let prev = p.map(|d| {
                    (d.pos, d.len, d.processed, d.iomap.flags.contains(crate::iomap::IomapFlags::STALE))
                });
                (r.pos, r.len, prev)
            })
            .collect()
    }
}

impl IomapOps for Script {
    fn next(&self, req: MapRequest, prev: Option<&MapDone>) -> Result<Option<IomapPair>> {
        self.calls.lock().push((req, prev.copied()));
        if req.len == 0 {
            return match self.end_error {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let m = self.extents.iter().find(|m| m.contains(req.pos)).copied().unwrap_or(self.extents[0]);
        Ok(Some(IomapPair::new(m)))
    }

    fn is_valid(&self, _iomap: &Iomap) -> bool {
        true
    }

    fn ioend_done(&self, _done: &IoendDone) -> Result<()> {
        Ok(())
    }

    fn commit(&self, _datasync: bool) -> Result<bool> {
        Ok(false)
    }
}

fn two_extents() -> Script {
    Script::new(vec![
        Iomap::new(0, 4096, 1 << 20, IomapType::Mapped),
        Iomap::new(4096, 4096, 2 << 20, IomapType::Mapped),
    ])
}

pub fn iter_t1_two_extents_two_mappings_two_ends(_env: &TestEnv) -> TestResult {
    let s = two_extents();
    let mut seen = Vec::new();
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |it| {
        seen.push((it.pos(), it.length(), it.iomap().addr));
        Step::done(it.length())
    });
    ensure_eq!(p, Progress { done: 8192, error: None });
    ensure_eq!(seen, vec![(0, 4096, 1 << 20), (4096, 4096, 2 << 20)]);
    ensure_eq!(
        s.calls(),
        vec![
            (0, 8192, None),
            (4096, 4096, Some((0, 4096, 4096, false))),
            (8192, 0, Some((4096, 4096, 4096, false)))
        ],
        "two mapping calls, each ended with 4096 processed, final position +8192"
    );
    Ok(())
}

pub fn iter_t2_stale_at_second_folio_remaps_there(env: &TestEnv) -> TestResult {
    let mut opts = RigOpts::new(4096);
    opts.max_order = 0;
    let rig = Rig::new(env, opts)?;
    let f = rig.mapped_file(rig.spare_block(0), 2, &[b'A'; 8192])?;
    let mut open = f.open();
    // The second validity check (folio 1) sees the mapping changed under it.
    rig.fs.set_hook(
        &f,
        HookPoint::ValidCheck,
        2,
        alloc::boxed::Box::new(|f| {
            f.file().mapping().bump_seq();
        }),
    );
    rig.fs.reset_counts();
    ensure_eq!(f.write(&mut open, 0, &[b'B'; 8192])?, 8192);
    let c = rig.fs.counts();
    ensure_eq!((c.map_write, c.valid_checks, c.finish), (2, 3, 1), "remapped once, at folio 1");
    ensure_eq!(rig.ctx.stats().stale_mappings, 1);
    ensure!(
        folio(&f, 0)?.is_dirty() && folio(&f, 1)?.is_dirty(),
        "both folios written, the first before the remap"
    );
    ensure_eq!(f.read_all(&mut open)?, vec![b'B'; 8192]);

    // Stale at the very first folio: zero progress, mapped again at the same position.
    rig.fs.set_hook(
        &f,
        HookPoint::ValidCheck,
        1,
        alloc::boxed::Box::new(|f| {
            f.file().mapping().bump_seq();
        }),
    );
    rig.fs.reset_counts();
    ensure_eq!(f.write(&mut open, 100, &[b'C'; 10])?, 10);
    let c = rig.fs.counts();
    ensure_eq!((c.map_write, c.valid_checks, c.finish), (2, 2, 1));
    Ok(())
}

pub fn iter_t3_no_progress_without_stale_ends(_env: &TestEnv) -> TestResult {
    let s = two_extents();
    let mut bodies = 0;
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |_| {
        bodies += 1;
        Step::done(0)
    });
    ensure_eq!(p, Progress { done: 0, error: None });
    ensure_eq!(bodies, 1, "no livelock");
    ensure_eq!(s.calls(), vec![(0, 8192, None), (0, 0, Some((0, 4096, 0, false)))]);
    Ok(())
}

pub fn iter_stale_retries_are_capped(_env: &TestEnv) -> TestResult {
    let s = two_extents();
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |it| {
        it.mark_stale();
        Step::done(0)
    });
    ensure_eq!(p, Progress { done: 0, error: Some(Errno::EIO) });
    let calls = s.calls();
    ensure_eq!(calls.len() as u32, MAX_STALE_RETRIES + 2, "MAX+1 mappings, then the closing call");
    ensure_eq!(
        calls[1],
        (0, 8192, Some((0, 4096, 0, true))),
        "stale with no progress maps the same position"
    );
    Ok(())
}

pub fn iter_advance_past_length_is_eio(_env: &TestEnv) -> TestResult {
    let s = two_extents();
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |it| Step::done(it.length() + 1));
    ensure_eq!(p, Progress { done: 0, error: Some(Errno::EIO) });
    ensure_eq!(s.calls(), vec![(0, 8192, None), (0, 0, Some((0, 4096, 0, false)))]);
    Ok(())
}

pub fn iter_mapping_not_covering_pos_is_eio(_env: &TestEnv) -> TestResult {
    let s = Script::new(vec![Iomap::new(4096, 4096, 1 << 20, IomapType::Mapped)]);
    let mut bodies = 0;
    let p = iterate(&s, 0, 8192, IomapOp::empty(), 4096, |it| {
        bodies += 1;
        Step::done(it.length())
    });
    ensure_eq!(p, Progress { done: 0, error: Some(Errno::EIO) });
    ensure_eq!(bodies, 0);
    let calls = s.calls.lock().clone();
    ensure_eq!(calls.len(), 2, "the bad mapping is reported back with a closing call");
    ensure_eq!(calls[1].1.map(|d| (d.processed, d.error)), Some((0, Some(Errno::EIO))));
    let s = Script::new(vec![Iomap::new(0, 4096, 100, IomapType::Mapped)]);
    let p = iterate(&s, 0, 4096, IomapOp::empty(), 4096, |it| Step::done(it.length()));
    ensure_eq!(p.error, Some(Errno::EIO), "misaligned disk address");
    Ok(())
}

pub fn iter_end_error_only_without_progress(_env: &TestEnv) -> TestResult {
    let mut s = two_extents();
    s.end_error = Some(Errno::ENOSPC);
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |it| Step::done(it.length()));
    ensure_eq!(p, Progress { done: 8192, error: None }, "the closing call's error is dropped after progress");
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |_| Step::done(0));
    ensure_eq!(p, Progress { done: 0, error: Some(Errno::ENOSPC) });
    let p = iterate(&s, 0, 8192, IomapOp::WRITE, 4096, |_| Step::failed(0, Errno::EFAULT));
    ensure_eq!(p, Progress { done: 0, error: Some(Errno::EFAULT) }, "the body's error wins");
    Ok(())
}
