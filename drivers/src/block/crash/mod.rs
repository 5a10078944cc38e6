//! CrashRecorder: a [`BlockDevice`] wrapper that passes I/O through and logs every completed
//! write and flush, so a test can rebuild any state a crash could leave (see [`log`] for the
//! model and the image API).
//!
//! Each bio is forwarded to the device below with its completion redirected here. At
//! completion, if it succeeded, a WRITE is logged with a copy of its data (taken at submission:
//! the buffer may not change while the bio is in flight), a DISCARD / WRITE_ZEROES as zeroes,
//! a FLUSH as a [`FlushMark`] covering the writes that had completed when it was submitted;
//! then the upper completion runs. Reads are forwarded and counted, not logged. Failed
//! requests are not logged (a failed write is assumed to have changed nothing).
//!
//! A bio with PREFLUSH (on a device with a volatile cache) is sequenced here: a FLUSH is
//! submitted first and logged at its completion, then the bio without PREFLUSH, so the log
//! is exact wherever the recorder sits. Put it below a [`Queue`](crate::block::Queue) to record
//! exactly what the driver saw, or above one to record the upper layer's bios.
//!
//! Lock order: one spin lock (`state`), never held while calling the device or an upper
//! completion. The device must accept `submit` from inside a completion callback (the
//! PREFLUSH sequence submits the data from the flush's completion).
//!
//! # Linux <-> here
//!
//! | Linux | Foliage |
//! |---|---|
//! | dm-log-writes target (`log_writes_map`, `log_writes_end_io`) | [`CrashRecorder`] |
//! | log entry written at bio completion, data copied | [`LoggedWrite`] |
//! | flush handling: completed-writes list spliced onto the flush | [`FlushMark::covers`] |
//! | `LOG_MARK` entries from user space | flush points (no user marks) |
//! | `replay-log` onto a device | [`CrashLog::crash_image`] + `RamDisk::from_image` |
//!
//! Deviation: the log lives in memory (tests, not production), and records only successful
//! requests; dm-log-writes writes its log to a second device.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use super::{validate, Bio, BioComplete, BioEnd, BioFlags, BioOp, BlockDevice, DeviceFeatures, DeviceInfo};
use crate::errno::{Errno, Result};

pub mod log;
#[cfg(test)]
mod tests;

pub use log::{CrashLog, CrashState, FlushMark, LoggedWrite, Payload};

/// What a forwarded bio turns into when it completes.
enum Kind {
    /// Nothing to log.
    Read,
    /// Log this write.
    Write(LoggedWrite),
    /// Log a flush covering this many writes.
    Flush { covers: usize },
    /// A PREFLUSH's flush: log it, then submit the bio (handled as its kind at completion).
    /// Boxed: rare, and it keeps every pending entry small.
    PreFlush { covers: usize, then: Box<(Bio, Kind)> },
}

struct Pending {
    end: BioEnd,
    kind: Kind,
}

#[derive(Default)]
struct State {
    log: CrashLog,
    pending: Vec<Option<Pending>>,
    free: Vec<usize>,
}

impl State {
    fn park(&mut self, p: Pending) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.pending[i] = Some(p);
                i
            }
            None => {
                self.pending.push(Some(p));
                self.pending.len() - 1
            }
        }
    }

    fn take(&mut self, cookie: u64) -> Option<Pending> {
        let i = usize::try_from(cookie).ok()?;
        let p = self.pending.get_mut(i)?.take()?;
        self.free.push(i);
        Some(p)
    }
}

struct Inner {
    dev: Arc<dyn BlockDevice>,
    volatile: bool,
    me: Weak<Inner>,
    state: Mutex<State>,
    in_flight: AtomicUsize,
    completed: AtomicUsize,
}

/// A recording wrapper around a device. See the module documentation.
pub struct CrashRecorder {
    inner: Arc<Inner>,
}

impl CrashRecorder {
    /// Wraps `dev` and starts recording. The medium's contents now are the base image the
    /// log's crash images are built on.
    pub fn new(dev: Arc<dyn BlockDevice>) -> Self {
        let volatile = dev.info().features.contains(DeviceFeatures::FLUSH);
        let inner = Arc::new_cyclic(|me| Inner {
            dev,
            volatile,
            me: me.clone(),
            state: Mutex::new(State::default()),
            in_flight: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
        });
        Self { inner }
    }

    /// A copy of the log so far (write data is shared, not copied).
    pub fn log(&self) -> CrashLog {
        self.inner.state.lock().log.clone()
    }

    /// Empties the log: the medium's contents now become the new base. `EBUSY` while bios are
    /// in flight (their entries would straddle the two logs).
    pub fn reset(&self) -> Result<()> {
        let mut st = self.inner.state.lock();
        if self.inner.in_flight.load(Ordering::Acquire) != 0 {
            return Err(Errno::EBUSY);
        }
        st.log = CrashLog::default();
        Ok(())
    }

    /// The device below.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.inner.dev
    }
}

/// A copy of a WRITE bio's data.
fn copy_data(bio: &Bio) -> Vec<u8> {
    let mut data = Vec::with_capacity(bio.bytes() as usize);
    for s in &bio.segments {
        // SAFETY: the submitter guarantees the segment memory is valid and unchanged until the
        // bio completes (Segment::new's contract); the bio has not been submitted yet.
        let bytes = unsafe { core::slice::from_raw_parts(s.virt().as_ptr(), s.len() as usize) };
        data.extend_from_slice(bytes);
    }
    data
}

impl Inner {
    /// A completion target pointing here, if the recorder is alive (always, while a method
    /// runs: the caller holds an `Arc` or an in-flight bio's `BioEnd` does).
    fn target(&self, cookie: u64) -> Option<BioEnd> {
        Some(BioEnd::new(self.me.upgrade()?, cookie))
    }

    /// Submits `bio` below with its completion (parked with `kind`) redirected here.
    fn forward(&self, mut bio: Bio, kind: Kind) {
        let Some(placeholder) = self.target(u64::MAX) else {
            return self.finish(bio.end, Err(Errno::EIO));
        };
        let end = core::mem::replace(&mut bio.end, placeholder);
        let cookie = self.state.lock().park(Pending { end, kind });
        bio.end.cookie = cookie as u64;
        self.dev.submit(bio);
    }

    fn submit(&self, mut bio: Bio) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if validate(&self.dev.info(), &bio).is_err() {
            // Refused below with the device's own error; nothing of it is logged.
            return self.forward(bio, Kind::Read);
        }
        let covers = self.state.lock().log.completed_writes();
        let kind = match bio.op {
            BioOp::Flush => Kind::Flush { covers },
            BioOp::Read => Kind::Read,
            op => {
                let payload = if op == BioOp::Write {
                    Payload::Data(Arc::from(copy_data(&bio)))
                } else {
                    Payload::Zeroes(bio.bytes())
                };
                let fua = bio.flags.contains(BioFlags::FUA) || !self.volatile;
                Kind::Write(LoggedWrite { offset: bio.sector * super::SECTOR_SIZE, payload, fua })
            }
        };
        if self.volatile && bio.op != BioOp::Flush && bio.flags.contains(BioFlags::PREFLUSH) {
            // The flush carries the upper completion; the bio waits with a placeholder until
            // the flush is done.
            let Some(placeholder) = self.target(u64::MAX) else {
                return self.finish(bio.end, Err(Errno::EIO));
            };
            bio.flags.remove(BioFlags::PREFLUSH);
            let end = core::mem::replace(&mut bio.end, placeholder);
            let then = Box::new((bio, kind));
            return self.forward(Bio::flush(end), Kind::PreFlush { covers, then });
        }
        self.forward(bio, kind);
    }

    fn finish(&self, end: BioEnd, result: Result<()>) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.completed.fetch_add(1, Ordering::AcqRel);
        end.complete(result);
    }
}

impl BioComplete for Inner {
    fn complete(&self, cookie: u64, result: Result<()>) {
        let mut st = self.state.lock();
        let Some(Pending { end, kind }) = st.take(cookie) else {
            drop(st);
            ::log::warn!("crash recorder: completion for an unknown request (cookie {cookie})");
            return;
        };
        match kind {
            Kind::PreFlush { covers, then } if result.is_ok() => {
                st.log.push_flush(covers);
                drop(st);
                let (mut bio, kind) = *then;
                bio.end = end;
                self.forward(bio, kind);
                return;
            }
            Kind::Write(w) if result.is_ok() => st.log.push_write(w),
            Kind::Flush { covers } if result.is_ok() => st.log.push_flush(covers),
            _ => {}
        }
        drop(st);
        self.finish(end, result);
    }
}

impl BlockDevice for CrashRecorder {
    fn info(&self) -> DeviceInfo {
        self.inner.dev.info()
    }

    fn submit(&self, bio: Bio) {
        self.inner.submit(bio);
    }

    /// Polls the device below; returns how many bios submitted here completed meanwhile.
    fn poll(&self) -> usize {
        let before = self.inner.completed.load(Ordering::Acquire);
        self.inner.dev.poll();
        self.inner.completed.load(Ordering::Acquire).wrapping_sub(before)
    }

    /// Bios submitted here and not yet completed (a PREFLUSH bio counts once).
    fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }
}
