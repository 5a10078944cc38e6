//! The bios of one direct-I/O call: building them over the caller's memory (zero-copy where
//! the platform says it is DMA-able, through bounce buffers otherwise), counting them per
//! request, and keeping every buffer they point into alive until they completed.
//!
//! Owns: one [`DioTracker`] per run (per request: pending bios, first error; the one completion
//! target of all the run's bios, the request index as cookie), the bounce buffers (with
//! where a read bounce is copied back to), the read-around buffers of copy-on-write edges and
//! the shared block of zeros for sub-block zeroing. Dropping a [`DioRun`] waits for every bio it
//! submitted, so no bio outlives the memory it points into, whatever path the caller returns by.
//!
//! Segment rules: a piece of the caller's buffer goes out as one segment when
//! [`Platform::dma_address`] accepts it whole; otherwise page by page (each page piece must be
//! a multiple of the logical block size, at most [`BIO_MAX_SEGMENTS`] per bio); a piece whose
//! first page is refused is bounced (at most [`BOUNCE_MAX`] bytes per bounce buffer). Bios are
//! capped at the engine's `max_io_bytes`; the [`Queue`](crate::block::Queue) below splits them
//! further to the device's limits. Everything is submitted before anything is waited for.
//!
//! Lock order: none held; completion (inside `BlockDevice::poll`) touches only atomics and
//! unparks.
//!
//! # Linux <-> here
//!
//! | Linux | here | deviation |
//! |---|---|---|
//! | `struct iomap_dio` (`ref`, `error`, `size`) | [`DioTracker`] (+ [`DioRun`]) | one tracker per run, a slot per request of a batch |
//! | `bio_iov_iter_get_pages` (pins user pages) | [`DioRun::submit_mem`] | the caller's borrow pins; bounce when not DMA-able |
//! | `iomap_dio_zero` (`ZERO_PAGE`) | [`DioRun::submit_zeros`] | one zeroed block per call |
//! | `iomap_dio_bio_end_io` | `DioTracker::complete` | |

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::block::sync::submit_wait;
use crate::block::{Bio, BioComplete, BioEnd, BioFlags, BioOp, Segment, BIO_MAX_SEGMENTS, SECTOR_SIZE};
use crate::iomap::context::{Counters, IomapContext};
use crate::platform::{wait_until, DmaBuffer, Platform, PAGE_SIZE};
use crate::{Errno, Result};

/// Largest bounce buffer (larger pieces are bounced in several bios).
pub const BOUNCE_MAX: usize = 256 << 10;

/// One request's bios in flight and its first error.
struct ReqState {
    pending: AtomicUsize,
    error: AtomicI32,
}

/// The completion target of every bio of one run: per request (the bio's cookie is the
/// request index), the bios in flight and the first error. One allocation per run, not per
/// request or per bio.
pub(crate) struct DioTracker {
    reqs: Vec<ReqState>,
    platform: Arc<dyn Platform>,
}

impl DioTracker {
    fn new(platform: Arc<dyn Platform>, requests: usize) -> Arc<Self> {
        let reqs = (0..requests)
            .map(|_| ReqState { pending: AtomicUsize::new(0), error: AtomicI32::new(0) })
            .collect();
        Arc::new(Self { reqs, platform })
    }

    /// The park key of request `req` (distinct per request, stable while the run lives).
    fn key(&self, req: usize) -> usize {
        &self.reqs[req] as *const ReqState as usize
    }

    fn done(&self, req: usize) -> bool {
        self.reqs[req].pending.load(Ordering::Acquire) == 0
    }

    /// The first error of request `req`'s bios, if any.
    fn error(&self, req: usize) -> Option<Errno> {
        match self.reqs[req].error.load(Ordering::Acquire) {
            0 => None,
            c => Some(Errno::from_code(c).unwrap_or(Errno::EIO)),
        }
    }

    /// Records a failure of request `req` (first error wins).
    fn fail(&self, req: usize, e: Errno) {
        let _ = self.reqs[req].error.compare_exchange(0, e.code(), Ordering::AcqRel, Ordering::Acquire);
    }

    fn wait(&self, req: usize, ctx: &IomapContext) {
        wait_until(&*self.platform, self.key(req), &|| self.done(req), &|| ctx.kick());
    }
}

impl BioComplete for DioTracker {
    fn complete(&self, cookie: u64, result: Result<()>) {
        let req = cookie as usize;
        let Some(r) = self.reqs.get(req) else { return };
        if let Err(e) = result {
            self.fail(req, e);
        }
        r.pending.fetch_sub(1, Ordering::AcqRel);
        self.platform.unpark(self.key(req));
    }
}

/// A bounce buffer and, for a read, where its bytes go once the bio completed.
struct Bounce {
    buf: DmaBuffer,
    copy_back: Option<NonNull<u8>>,
}

/// The bios of one direct-I/O call. See the module documentation.
///
/// `'a` is the borrow of the caller's buffers: the run never outlives them, and dropping it
/// waits for every bio.
pub(crate) struct DioRun<'a> {
    ctx: &'a IomapContext,
    tracker: Arc<DioTracker>,
    bounces: Vec<Bounce>,
    /// Read-around blocks (copy-on-write edges) that write bios point into.
    held: Vec<DmaBuffer>,
    zeros: Option<DmaBuffer>,
    lbs: usize,
    max_bio: usize,
    _borrow: PhantomData<&'a mut [u8]>,
}

// SAFETY: the raw pointers (bounce copy-back targets) point into buffers the run borrows for
// `'a` (exclusively, for reads); a run moved to another thread carries that borrow with it.
unsafe impl Send for DioRun<'_> {}

impl<'a> DioRun<'a> {
    /// A run of `requests` requests on `ctx`'s device.
    pub(crate) fn new(ctx: &'a IomapContext, requests: usize) -> Self {
        let lbs = ctx.device().info().logical_block_size.max(SECTOR_SIZE as u32) as usize;
        let max_bio = ((ctx.config().max_io_bytes as usize) / lbs * lbs).max(lbs);
        let tracker = DioTracker::new(ctx.platform().clone(), requests);
        Self {
            ctx,
            tracker,
            bounces: Vec::new(),
            held: Vec::new(),
            zeros: None,
            lbs,
            max_bio,
            _borrow: PhantomData,
        }
    }

    /// Fails request `req` with `e` (a failure before or outside its bios; first error wins).
    pub(crate) fn fail(&self, req: usize, e: Errno) {
        self.tracker.fail(req, e);
    }

    fn submit(&self, req: usize, bio: Bio, bytes: usize) {
        self.tracker.reqs[req].pending.fetch_add(1, Ordering::AcqRel);
        Counters::add(&self.ctx.counters.dio_bios, 1);
        Counters::add(&self.ctx.counters.dio_bytes, bytes as u64);
        self.ctx.device().submit(bio);
    }

    fn bio(&self, req: usize, op: BioOp, flags: BioFlags, disk: u64) -> Bio {
        let mut bio = Bio::new(op, disk / SECTOR_SIZE, BioEnd::new(self.tracker.clone(), req as u64));
        bio.flags = flags;
        bio
    }

    /// Segments for the caller's memory `[mem, mem + len)` that a device can reach directly:
    /// the whole range as one segment, or page-sized pieces while the platform accepts them.
    /// Returns the segments and the bytes they cover (0: bounce).
    fn direct_segments(
        &self,
        mem: NonNull<u8>,
        len: usize,
    ) -> (heapless::Vec<Segment, BIO_MAX_SEGMENTS>, usize) {
        let platform = self.ctx.platform();
        let mut segs = heapless::Vec::new();
        if let Some(phys) = platform.dma_address(mem.as_ptr(), len) {
            // SAFETY: the platform says the range is DMA-able as one piece; the caller's buffer
            // is borrowed for the run's lifetime and the run waits for the bio before it ends.
            let _ = segs.push(unsafe { Segment::new(mem, phys, len as u32) });
            return (segs, len);
        }
        let mut done = 0;
        while done < len && !segs.is_full() {
            let at = mem.as_ptr() as usize + done;
            let piece = (PAGE_SIZE - at % PAGE_SIZE).min(len - done);
            if !piece.is_multiple_of(self.lbs) {
                break;
            }
            // The pointer is inside the caller's buffer (done < len).
            let ptr = mem.as_ptr().wrapping_add(done);
            let Some(phys) = platform.dma_address(ptr, piece) else { break };
            let Some(virt) = NonNull::new(ptr) else { break };
            // SAFETY: as above, for this page piece.
            let _ = segs.push(unsafe { Segment::new(virt, phys, piece as u32) });
            done += piece;
        }
        (segs, done)
    }

    /// Submits `op` of `len` bytes between disk byte `disk` and the caller's memory at `mem`
    /// (written from for a write, read into for a read) for request `req`. `len` and `disk`
    /// are multiples of the logical block size.
    ///
    /// # Safety
    ///
    /// `[mem, mem + len)` lies in a buffer the caller borrowed for `'a` (exclusively for a
    /// read) and nobody else touches until the run is finished or dropped.
    pub(crate) unsafe fn submit_mem(
        &mut self,
        req: usize,
        op: BioOp,
        flags: BioFlags,
        disk: u64,
        mem: NonNull<u8>,
        len: usize,
    ) -> Result<()> {
        debug_assert!(len.is_multiple_of(self.lbs) && disk.is_multiple_of(self.lbs as u64));
        let mut off = 0;
        while off < len {
            let want = self.max_bio.min(len - off);
            // `off < len`: inside the caller's buffer.
            let ptr = NonNull::new(mem.as_ptr().wrapping_add(off)).ok_or(Errno::EFAULT)?;
            let (segs, covered) = self.direct_segments(ptr, want);
            let mut bio = self.bio(req, op, flags, disk + off as u64);
            if covered > 0 {
                bio.segments = segs;
                self.submit(req, bio, covered);
                off += covered;
                continue;
            }
            let n = want.min(BOUNCE_MAX);
            let mut buf = DmaBuffer::new(self.ctx.platform(), n)?;
            if op == BioOp::Write {
                // SAFETY: `[ptr, ptr + n)` is inside the caller's buffer (n <= len - off) and
                // not written by anyone during the call.
                let src = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), n) };
                buf.as_mut_slice().copy_from_slice(src);
            }
            let virt = NonNull::new(buf.as_slice().as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
            // SAFETY: the bounce buffer is physically contiguous at `phys`, owned by the run
            // (moved into `bounces`, its pages do not move) and outlives the bio.
            let seg = unsafe { Segment::new(virt, buf.phys(), n as u32) };
            bio.push(seg).map_err(|_| Errno::EINVAL)?;
            self.bounces.push(Bounce { buf, copy_back: (op == BioOp::Read).then_some(ptr) });
            Counters::add(&self.ctx.counters.dio_bounced_bytes, n as u64);
            self.submit(req, bio, n);
            off += n;
        }
        Ok(())
    }

    /// Writes `len` zero bytes at disk byte `disk` (at most one block: sub-block zeroing).
    pub(crate) fn submit_zeros(
        &mut self,
        req: usize,
        flags: BioFlags,
        disk: u64,
        len: usize,
        bs: usize,
    ) -> Result<()> {
        if len > bs {
            return Err(Errno::EINVAL);
        }
        if self.zeros.is_none() {
            self.zeros = Some(DmaBuffer::new(self.ctx.platform(), bs)?);
        }
        let Some(z) = self.zeros.as_ref() else { return Err(Errno::ENOMEM) };
        let virt = NonNull::new(z.as_slice().as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
        // SAFETY: the zero block is owned by the run, never written after creation, and
        // outlives every bio (the run waits for them before dropping it).
        let seg = unsafe { Segment::new(virt, z.phys(), len as u32) };
        let mut bio = self.bio(req, BioOp::Write, flags, disk);
        bio.push(seg).map_err(|_| Errno::EINVAL)?;
        self.submit(req, bio, len);
        Ok(())
    }

    /// Reads the `bs`-byte block at disk byte `disk` synchronously into a buffer the run keeps;
    /// returns its index for [`DioRun::submit_held`].
    pub(crate) fn read_block(&mut self, disk: u64, bs: usize) -> Result<usize> {
        let buf = DmaBuffer::new(self.ctx.platform(), bs)?;
        let virt = NonNull::new(buf.as_slice().as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
        let mut bio = Bio::new(BioOp::Read, disk / SECTOR_SIZE, BioEnd::new(Arc::new(NoTarget), 0));
        // SAFETY: the buffer is ours, physically contiguous, and submit_wait returns only after
        // the bio completed.
        bio.push(unsafe { Segment::new(virt, buf.phys(), bs as u32) }).map_err(|_| Errno::EINVAL)?;
        Counters::add(&self.ctx.counters.dio_bios, 1);
        Counters::add(&self.ctx.counters.dio_bytes, bs as u64);
        submit_wait(&**self.ctx.device(), &**self.ctx.platform(), bio)?;
        self.held.push(buf);
        Ok(self.held.len() - 1)
    }

    /// Writes bytes `[off, off + len)` of held block `idx` to disk byte `disk`.
    pub(crate) fn submit_held(
        &mut self,
        req: usize,
        flags: BioFlags,
        idx: usize,
        off: usize,
        len: usize,
        disk: u64,
    ) -> Result<()> {
        let buf = self.held.get(idx).ok_or(Errno::EINVAL)?;
        if off.checked_add(len).is_none_or(|e| e > buf.len()) {
            return Err(Errno::EINVAL);
        }
        let virt = NonNull::new(buf.as_slice()[off..].as_ptr() as *mut u8).ok_or(Errno::EFAULT)?;
        let phys = buf.phys() + off as u64;
        // SAFETY: the held block is owned by the run, not written after its read, and outlives
        // the bio.
        let seg = unsafe { Segment::new(virt, phys, len as u32) };
        let mut bio = self.bio(req, BioOp::Write, flags, disk);
        bio.push(seg).map_err(|_| Errno::EINVAL)?;
        self.submit(req, bio, len);
        Ok(())
    }

    /// Waits for every bio, then copies read bounces back; returns each request's first error.
    pub(crate) fn finish(mut self) -> Vec<Option<Errno>> {
        self.wait_all();
        for b in core::mem::take(&mut self.bounces) {
            if let Some(dst) = b.copy_back {
                let src = b.buf.as_slice();
                // SAFETY: `dst` is the start of the caller's (exclusively borrowed) buffer piece
                // this bounce stood in for, `src.len()` bytes long; the bio is complete.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), src.len()) };
            }
        }
        (0..self.tracker.reqs.len()).map(|req| self.tracker.error(req)).collect()
    }

    fn wait_all(&self) {
        for req in 0..self.tracker.reqs.len() {
            self.tracker.wait(req, self.ctx);
        }
    }
}

impl Drop for DioRun<'_> {
    fn drop(&mut self) {
        // Never return while a bio still points into the caller's memory or our buffers.
        self.wait_all();
    }
}

/// Completion target of the synchronous read-around read (submit_wait replaces it).
struct NoTarget;

impl BioComplete for NoTarget {
    fn complete(&self, _cookie: u64, _result: Result<()>) {}
}
