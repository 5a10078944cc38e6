//! Tests of the kernel itself: heap, frame allocator, clock, PCI, exception reporting.

use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestCase, TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use crate::{arch, mem, time};

fn heap_alloc_and_free(_: &TestEnv) -> TestResult {
    let (before, total) = mem::heap::stats();
    ensure!(total >= 16 << 20, "heap is only {total} bytes");
    let mut v: Vec<u64> = vec![0; 1 << 17]; // 1 MiB
    for (i, x) in v.iter_mut().enumerate() {
        *x = i as u64 * 3;
    }
    ensure!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    let (during, _) = mem::heap::stats();
    ensure!(during >= before + (1 << 20), "heap accounting: before {before}, during {during}");
    drop(v);
    let (after, _) = mem::heap::stats();
    ensure_eq!(after, before, "heap bytes after free");
    Ok(())
}

/// Small objects come from the slab caches: aligned to their class, distinct, reused after a
/// free without going back to the buddy heap (so a free never walks a fragmented free list),
/// and a slab emptied by frees goes back to the buddy heap.
fn heap_small_objects_from_slabs(_: &TestEnv) -> TestResult {
    use core::alloc::Layout;
    // Alignment and distinctness for every class and a few alignments.
    for (size, align) in
        [(1usize, 1usize), (8, 8), (24, 8), (100, 4), (200, 64), (1000, 8), (2048, 2048), (3, 512)]
    {
        let layout = Layout::from_size_align(size, align).map_err(|_| foliage_drivers::Errno::EINVAL)?;
        let (_, class_size) = mem::slab::class_of(layout).ok_or(foliage_drivers::Errno::EINVAL)?;
        let mut ptrs = Vec::new();
        for i in 0..100u8 {
            // SAFETY: a non-zero-size layout; the pointer is checked and freed below.
            let p = unsafe { alloc::alloc::alloc(layout) };
            ensure!(!p.is_null(), "alloc of {size}/{align} failed");
            ensure_eq!(p as usize % class_size, 0, "{size}/{align} not aligned to its class {class_size}");
            // SAFETY: `p` is `size` bytes, ours.
            unsafe { p.write_bytes(i, size) };
            ptrs.push((p, i));
        }
        for &(p, i) in &ptrs {
            // SAFETY: as above; every object still holds its own fill.
            let bytes = unsafe { core::slice::from_raw_parts(p, size) };
            ensure!(bytes.iter().all(|&b| b == i), "object {i} of {size}/{align} overwritten");
        }
        for (p, _) in ptrs {
            // SAFETY: allocated above with `layout`.
            unsafe { alloc::alloc::dealloc(p, layout) };
        }
    }
    // Fragment the 64-byte class: 20000 objects (20 slabs' worth), every other one freed.
    let mut v: Vec<Option<alloc::boxed::Box<[u64; 8]>>> =
        (0..20_000u64).map(|i| Some(alloc::boxed::Box::new([i; 8]))).collect();
    for x in v.iter_mut().step_by(2) {
        *x = None;
    }
    // Allocations and frees now reuse the freed objects: no slab taken or given back.
    let before = mem::heap::slab_stats();
    for round in 0..10u64 {
        let w: Vec<alloc::boxed::Box<[u64; 8]>> =
            (0..1000).map(|i| alloc::boxed::Box::new([round + i; 8])).collect();
        drop(w);
    }
    let after = mem::heap::slab_stats();
    ensure_eq!(after.slab_allocs, before.slab_allocs, "slabs taken while free objects were there");
    ensure_eq!(after.slab_frees, before.slab_frees, "slabs given back while objects were in use");
    ensure!(
        v.iter().enumerate().all(|(i, x)| x.as_ref().is_none_or(|b| b[7] == i as u64)),
        "live objects changed"
    );
    // Freeing everything gives the emptied slabs back (one kept per class at most).
    let held = after.slabs;
    drop(v);
    let end = mem::heap::slab_stats();
    ensure!(
        held >= 19 && end.slabs + 18 <= held,
        "slabs held: {held} with 10000 live 64-byte objects, {} after freeing them",
        end.slabs
    );
    ensure_eq!(end.slab_frees - after.slab_frees, (held - end.slabs) as u64, "slab frees");
    Ok(())
}

fn frame_allocator_contiguous_aligned(env: &TestEnv) -> TestResult {
    let (used0, total) = mem::frames::stats();
    ensure!(total > 1024, "only {total} page frames");
    let mut runs = Vec::new();
    for order in [0u32, 1, 4, 9] {
        let run = env.platform.alloc_pages(order).ok_or(foliage_drivers::Errno::ENOMEM)?;
        ensure_eq!(run.phys() % (4096u64 << order), 0, "order {order} run alignment");
        ensure_eq!(run.virt().as_ptr() as u64, run.phys(), "identity mapping");
        ensure_eq!(env.platform.dma_address(run.virt().as_ptr(), run.len()), Some(run.phys()));
        // SAFETY: the run is exclusively ours and `run.len()` bytes long.
        unsafe { core::ptr::write_bytes(run.virt().as_ptr(), order as u8 + 1, run.len()) };
        runs.push(run);
    }
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let disjoint = a.phys() + a.len() as u64 <= b.phys() || b.phys() + b.len() as u64 <= a.phys();
            ensure!(disjoint, "runs overlap: {:#x} and {:#x}", a.phys(), b.phys());
        }
        // SAFETY: still exclusively ours; nothing else wrote to it.
        let bytes = unsafe { core::slice::from_raw_parts(a.virt().as_ptr(), a.len()) };
        ensure!(
            bytes.iter().all(|&x| x == a.order() as u8 + 1),
            "run of order {} was overwritten",
            a.order()
        );
    }
    ensure_eq!(mem::frames::stats().0, used0 + 1 + 2 + 16 + 512, "pages in use");
    for run in runs {
        // SAFETY: allocated above from this platform, no longer used.
        unsafe { env.platform.free_pages(run) };
    }
    ensure_eq!(mem::frames::stats().0, used0, "pages in use after free");
    ensure!(env.platform.alloc_pages(30).is_none(), "an impossible order must fail, not panic");
    Ok(())
}

fn tsc_clock_monotonic(_: &TestEnv) -> TestResult {
    ensure!(time::tsc_hz() >= 1_000_000, "TSC frequency {} Hz", time::tsc_hz());
    let mut last = time::now_ns();
    for _ in 0..100_000 {
        let now = time::now_ns();
        ensure!(now >= last, "clock went back from {last} to {now}");
        last = now;
    }
    let t0 = time::now_ns();
    time::delay_us(2000);
    let dt = time::now_ns() - t0;
    ensure!(dt >= 2_000_000, "delay of 2 ms measured {dt} ns");
    Ok(())
}

fn pci_finds_virtio_blk(_: &TestEnv) -> TestResult {
    let devs = crate::pci_functions();
    ensure!(!devs.is_empty(), "PCI enumeration found nothing");
    let blk = devs.iter().filter(|f| f.vendor == 0x1af4 && matches!(f.device, 0x1001 | 0x1042)).count();
    ensure!(blk >= 1, "no virtio-blk among {} PCI functions", devs.len());
    let host = devs.iter().find(|f| f.df.bus == 0 && f.df.device == 0);
    ensure!(host.is_some_and(|h| h.class == 0x06), "no host bridge at 00:00.0");
    Ok(())
}

fn pci_port_io_and_ecam_agree(_: &TestEnv) -> TestResult {
    let ecam = crate::pci_cam();
    ensure!(matches!(ecam, crate::pci::Cam::Ecam(_)), "q35 should expose ECAM, found {ecam:?}");
    let mut compared = 0;
    for f in crate::pci_functions() {
        // The first 64 bytes (header) read the same through both mechanisms; the command and
        // status registers may change between reads only if a device is active, which none is.
        for off in (0..64u8).step_by(4) {
            let a = crate::pci::Cam::PortIo.read(f.df, off);
            let b = ecam.read(f.df, off);
            ensure_eq!(a, b, "config {:?} offset {off:#x}", f.df);
            compared += 1;
        }
    }
    ensure!(compared >= 16 * 3, "compared only {compared} registers");
    Ok(())
}

fn exception_breakpoint_reported(_: &TestEnv) -> TestResult {
    let (n0, _) = arch::idt::breakpoints();
    // SAFETY: int3 traps to the breakpoint handler, which counts it and resumes here.
    unsafe { core::arch::asm!("int3") };
    // SAFETY: as above.
    unsafe { core::arch::asm!("int3") };
    let (n1, rip) = arch::idt::breakpoints();
    ensure_eq!(n1, n0 + 2, "breakpoints counted");
    let (start, end) = mem::kernel_range();
    ensure!(rip > start && rip < end, "reported RIP {rip:#x} outside the kernel image {start:#x}..{end:#x}");
    Ok(())
}

/// The C memory functions copy, move and fill exactly the bytes asked, at every length and
/// alignment around the 32-byte block size, and leave their neighbours alone.
fn memory_functions_exact(_: &TestEnv) -> TestResult {
    use crate::libc::{memcpy, memmove, memset};
    let pattern = |i: usize| (i * 131 + 7) as u8;
    let fresh = || -> Vec<u8> { (0..512).map(pattern).collect() };
    for n in (0..100).chain([255, 256, 257, 300]) {
        for (da, sa) in [(0, 0), (1, 0), (0, 3), (5, 7), (8, 8), (31, 1)] {
            let src = fresh();
            let mut dst = vec![0xEEu8; 512];
            // SAFETY: both buffers hold 512 bytes; offsets + n stay inside; no overlap.
            unsafe { memcpy(dst.as_mut_ptr().add(da + 32), src.as_ptr().add(sa), n) };
            for (i, &b) in dst.iter().enumerate() {
                let want = if i >= da + 32 && i < da + 32 + n { pattern(i - da - 32 + sa) } else { 0xEE };
                ensure_eq!(b, want, "memcpy n={n} da={da} sa={sa} byte {i}");
            }
            let mut buf = vec![0x11u8; 512];
            // SAFETY: inside the buffer.
            unsafe { memset(buf.as_mut_ptr().add(da + 16), 0x1A5, n) };
            for (i, &b) in buf.iter().enumerate() {
                let want = if i >= da + 16 && i < da + 16 + n { 0xA5 } else { 0x11 };
                ensure_eq!(b, want, "memset n={n} at {da} byte {i}");
            }
        }
        for shift in [-33i64, -32, -9, -1, 1, 8, 31, 32, 40] {
            let mut buf = fresh();
            let s = 128usize;
            let d = (s as i64 + shift) as usize;
            // SAFETY: both ranges lie within the 512-byte buffer; memmove allows overlap.
            unsafe { memmove(buf.as_mut_ptr().add(d), buf.as_ptr().add(s), n) };
            let orig = fresh();
            for (i, &b) in buf.iter().enumerate() {
                let want = if i >= d && i < d + n { orig[s + i - d] } else { orig[i] };
                ensure_eq!(b, want, "memmove n={n} shift={shift} byte {i}");
            }
        }
    }
    Ok(())
}

/// The kernel's own tests.
pub static TESTS: &[TestCase] = &[
    TestCase { name: "kernel::heap_alloc_and_free", run: heap_alloc_and_free },
    TestCase { name: "kernel::heap_small_objects_from_slabs", run: heap_small_objects_from_slabs },
    TestCase { name: "kernel::frame_allocator_contiguous_aligned", run: frame_allocator_contiguous_aligned },
    TestCase { name: "kernel::tsc_clock_monotonic", run: tsc_clock_monotonic },
    TestCase { name: "kernel::pci_finds_virtio_blk", run: pci_finds_virtio_blk },
    TestCase { name: "kernel::pci_port_io_and_ecam_agree", run: pci_port_io_and_ecam_agree },
    TestCase { name: "kernel::exception_breakpoint_reported", run: exception_breakpoint_reported },
    TestCase { name: "kernel::memory_functions_exact", run: memory_functions_exact },
];
