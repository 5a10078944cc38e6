//! The in-kernel test harness: runs the portable test tables (`foliage_drivers::selftest`) and
//! the kernel's own tests, prints one line per test and the closing `N passed, N failed` line,
//! and ends the run through isa-debug-exit (pass only if nothing failed).
//!
//! A panic or CPU exception inside a test cannot be caught (no unwinding): [`report_abort`]
//! names the running test as failed, says how many tests did not run, prints the closing line,
//! and the run ends with the panic / exception exit code.

mod blkdebug_tests;
mod harness_selfcheck;
mod kernel_tests;
mod virtio_tests;

use alloc::vec::Vec;

use foliage_drivers::selftest::{self, Observer, Summary, TestCase, TestEnv, TestResult};
use spin::Mutex;

use crate::exit::{exit, ExitCode};
use crate::serial::{self, Console};

struct State {
    active: bool,
    current: Option<&'static str>,
    passed: usize,
    failed: usize,
    remaining: usize,
}

static STATE: Mutex<State> =
    Mutex::new(State { active: false, current: None, passed: 0, failed: 0, remaining: 0 });

struct KernelObserver;

impl Observer for KernelObserver {
    fn started(&mut self, name: &'static str) {
        STATE.lock().current = Some(name);
    }

    fn finished(&mut self, _name: &'static str, _ns: u64, result: &TestResult) {
        let mut s = STATE.lock();
        s.current = None;
        s.remaining = s.remaining.saturating_sub(1);
        if result.is_ok() {
            s.passed += 1;
        } else {
            s.failed += 1;
        }
    }
}

/// Which optional tables to register.
#[derive(Clone, Copy, Debug)]
pub struct Tables {
    /// The harness's deliberately failing tests.
    pub selfcheck: bool,
    /// The blkdebug fault-injection tests (they need the `faulty` disk).
    pub blkdebug: bool,
}

/// Every test table this kernel runs, in order: the kernel's own tests, the portable block
/// conformance suite (and its strict-driver part) on `scratch0`, the virtio-blk driver tests,
/// the iomap engine suite and the filesystem suites (buffered, direct, cow, errors) on
/// `scratch0`, then the optional tables.
fn tables(which: Tables) -> Vec<&'static [TestCase]> {
    use foliage_drivers::block::conformance;
    let mut t: Vec<&'static [TestCase]> = alloc::vec![
        kernel_tests::TESTS,
        conformance::SUITE,
        conformance::STRICT,
        virtio_tests::TESTS,
        foliage_fs::iomap::selftest::SUITE,
        foliage_fs::selftest::BUFFERED,
        foliage_fs::selftest::DIRECT,
        foliage_fs::selftest::COW,
        foliage_fs::selftest::ERRORS,
    ];
    if which.blkdebug {
        t.push(blkdebug_tests::TESTS);
    }
    if which.selfcheck {
        t.push(harness_selfcheck::TESTS);
    }
    t
}

/// Runs the tests matching `filter` and ends the run.
pub fn main(filter: &str, env: &TestEnv, which: Tables) -> ! {
    let tables = tables(which);
    let total: usize = tables
        .iter()
        .map(|t| t.iter().filter(|c| filter.is_empty() || c.name.contains(filter)).count())
        .sum();
    {
        let mut s = STATE.lock();
        s.active = true;
        s.remaining = total;
    }
    crate::println!("running {total} kernel tests (filter {filter:?})");
    crate::println!("KTEST-START");
    let mut summary = Summary::default();
    for t in tables {
        summary.add(&selftest::run(t, filter, env, &mut Console, &mut KernelObserver));
    }
    for name in &summary.failures {
        crate::println!("failed: {name}");
    }
    crate::println!("{}", summary.line());
    STATE.lock().active = false;
    // A boot whose filter selects nothing passes with `0 passed, 0 failed` (xtask runs one
    // filter across several boots, and fails the whole run if no boot ran any test).
    exit(if summary.failed == 0 { ExitCode::Pass } else { ExitCode::Fail })
}

/// Called on the panic and exception paths: reports the running test as failed and prints the
/// closing line. Does nothing outside a test run.
pub fn report_abort(reason: &str) {
    let Some(mut s) = STATE.try_lock() else {
        serial::force_write(format_args!("(test harness state busy; no summary)\n"));
        return;
    };
    if !s.active {
        return;
    }
    if let Some(name) = s.current.take() {
        serial::force_write(format_args!("test {name} ... FAILED: {reason} (run aborted)\n"));
        s.failed += 1;
        s.remaining = s.remaining.saturating_sub(1);
        serial::force_write(format_args!("failed: {name}\n"));
    }
    if s.remaining > 0 {
        serial::force_write(format_args!("{} tests not run\n", s.remaining));
    }
    serial::force_write(format_args!("{} passed, {} failed\n", s.passed, s.failed));
    s.active = false;
}
