//! Fault injection through QEMU's blkdebug driver: the `faulty` disk's image sits behind a
//! blkdebug node whose rules (written by xtask) fail the 10th write request with EIO, once.
//! The driver must fail exactly that bio with `EIO` and carry on.

use alloc::vec;
use alloc::vec::Vec;

use foliage_drivers::block::sync::{flush, read_at, write_at};
use foliage_drivers::block::BioFlags;
use foliage_drivers::selftest::{TestCase, TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq, Errno};

/// The write (1-based, counted from boot) that xtask's blkdebug rules fail.
pub const FAILING_WRITE: usize = 10;

fn eio_on_tenth_write_then_carry_on(env: &TestEnv) -> TestResult {
    let dev = env.device("faulty")?;
    let p = &env.platform;
    let disk = crate::disks::get("faulty").ok_or(Errno::ENODEV)?;
    // One write bio per block, strictly one at a time, so the device sees them in this order.
    let results: Vec<_> = (0..2 * FAILING_WRITE)
        .map(|k| write_at(&*dev, p, k as u64 * 4096, &[k as u8 + 1; 4096], BioFlags::empty()))
        .collect();
    for (k, r) in results.iter().enumerate() {
        let want = if k + 1 == FAILING_WRITE { Err(Errno::EIO) } else { Ok(()) };
        ensure_eq!(*r, want, "write {}", k + 1);
    }
    ensure!(!disk.dev.is_broken(), "an I/O error must not take the device down");
    flush(&*dev, &**p)?;
    let mut back = vec![0u8; 4096];
    for k in 0..2 * FAILING_WRITE {
        read_at(&*dev, p, k as u64 * 4096, &mut back)?;
        let want = if k + 1 == FAILING_WRITE { 0 } else { k as u8 + 1 };
        ensure!(back.iter().all(|&b| b == want), "block {k} holds {:#x}, want {want:#x}", back[0]);
    }
    // The failed block can be written again.
    write_at(&*dev, p, (FAILING_WRITE as u64 - 1) * 4096, &[0xEE; 4096], BioFlags::FUA)?;
    read_at(&*dev, p, (FAILING_WRITE as u64 - 1) * 4096, &mut back)?;
    ensure!(back.iter().all(|&b| b == 0xEE), "rewrite of the failed block");
    ensure_eq!(dev.in_flight(), 0);
    Ok(())
}

/// The blkdebug tests (registered with the `blkdebug` command-line word).
pub static TESTS: &[TestCase] =
    &[TestCase { name: "blkdebug::eio_on_tenth_write_then_carry_on", run: eio_on_tenth_write_then_carry_on }];
