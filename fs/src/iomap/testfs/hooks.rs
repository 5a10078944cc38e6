//! Test hooks of the test filesystem, and its page-cache hooks.
//!
//! A test hook is a one-shot closure run at a chosen callback: after the n-th mapping call of
//! an operation ([`HookPoint::AfterMap`], the mapping already built and about to be returned to
//! the engine) or at the n-th validity check ([`HookPoint::ValidCheck`], before the answer is
//! computed). That is exactly "between the mapping call and the folio lock" / "while the
//! engine holds the folio": a hook that changes the file's mapping there makes the engine's
//! mapping stale. Hooks run with no test-fs lock held.
//!
//! The page-cache hooks ([`FsHooks`]): `kick` polls the device and finishes queued ioends
//! ([`IomapContext::kick`]); `request_writeback` runs background writeback over the files until
//! the requested bytes were written.
//!
//! Lock order: the hook list lock is a leaf (taken, a hook removed, released before running).
//! Linux <-> here: XFS error-injection tags and `XFS_ERRTAG_WRITE_DELAY_MS` style delays, as
//! deterministic callbacks.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};

use super::{MemFile, MemFs};
use crate::iomap::context::IomapContext;
use crate::iomap::types::IomapOp;
use crate::iomap::writeback::{writeback_range, WritebackMode};
use crate::pagecache::{WritebackHooks, WritebackRequest};

/// Where a hook fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookPoint {
    /// After a mapping call (not a closing call) whose op equals this one.
    AfterMap(IomapOp),
    /// At a validity check.
    ValidCheck,
}

/// A hook: runs once with the file it was set on.
pub type HookFn = Box<dyn FnOnce(&MemFile) + Send>;

pub(crate) struct HookSlot {
    point: HookPoint,
    file: u64,
    countdown: u64,
    action: Option<HookFn>,
}

impl MemFs {
    /// Runs `action` at the `nth` (1-based) event `point` on `file` from now on.
    pub fn set_hook(&self, file: &MemFile, point: HookPoint, nth: u64, action: HookFn) {
        self.hooks.lock().push(HookSlot {
            point,
            file: file.id(),
            countdown: nth.max(1),
            action: Some(action),
        });
    }

    /// Hooks set and not yet fired.
    pub fn pending_hooks(&self) -> usize {
        self.hooks.lock().len()
    }

    /// Counts an event and runs the hooks it completes.
    pub(crate) fn fire(&self, file: &MemFile, point: HookPoint) {
        let action = {
            let mut hooks = self.hooks.lock();
            let due = hooks.iter_mut().position(|h| {
                if h.file != file.id() || h.point != point {
                    return false;
                }
                h.countdown -= 1;
                h.countdown == 0
            });
            due.and_then(|i| hooks.remove(i).action)
        };
        if let Some(a) = action {
            a(file);
        }
    }
}

/// The page-cache hooks of a [`MemFs`].
pub(crate) struct FsHooks {
    fs: Weak<MemFs>,
    ctx: Weak<IomapContext>,
}

impl FsHooks {
    pub(crate) fn new(fs: &Arc<MemFs>) -> Self {
        Self { fs: Arc::downgrade(fs), ctx: Arc::downgrade(fs.ctx()) }
    }
}

impl WritebackHooks for FsHooks {
    fn request_writeback(&self, request: WritebackRequest) {
        let Some(fs) = self.fs.upgrade() else { return };
        let mut left = request.bytes;
        for f in fs.files() {
            if left == 0 {
                break;
            }
            let mode = WritebackMode::Background { budget_bytes: left };
            if let Ok(out) = writeback_range(f.file(), &f.ops(), 0, u64::MAX, mode) {
                left = left.saturating_sub(out.bytes);
            }
        }
    }

    fn kick(&self) {
        if let Some(ctx) = self.ctx.upgrade() {
            ctx.kick();
        }
    }
}
