//! Deliberately failing tests, registered only with the `selfcheck` command-line word. xtask
//! boots them one at a time to prove that a failing, panicking or faulting test fails the run
//! with the test's name in the output.

use foliage_drivers::selftest::{TestCase, TestEnv, TestFailure, TestResult};

fn deliberate_failure(_: &TestEnv) -> TestResult {
    Err(TestFailure("this test fails on purpose".into()))
}

fn deliberate_panic(_: &TestEnv) -> TestResult {
    let v: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
    let i = core::hint::black_box(3);
    // Out-of-bounds index: a panic, on purpose.
    let _ = v[i];
    Ok(())
}

fn deliberate_page_fault(_: &TestEnv) -> TestResult {
    let p = core::hint::black_box(0x40_dead_0000u64) as *const u64; // 259 GiB: canonical, unmapped
                                                                    // SAFETY: not safe at all, on purpose: the address is unmapped and the read faults, which is
                                                                    // what this test checks the harness reports.
    let v = unsafe { core::ptr::read_volatile(p) };
    Err(TestFailure(alloc::format!("read of an unmapped address returned {v}")))
}

/// The self-check tests.
pub static TESTS: &[TestCase] = &[
    TestCase { name: "selfcheck::deliberate_failure", run: deliberate_failure },
    TestCase { name: "selfcheck::deliberate_panic", run: deliberate_panic },
    TestCase { name: "selfcheck::deliberate_page_fault", run: deliberate_page_fault },
];
