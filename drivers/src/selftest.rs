//! Portable self-tests: the test case type, the environment tests run in, and the runner.
//!
//! Foliage's suites (block conformance here, buffered/direct/cow/... in `foliage-fs`) are plain
//! tables of [`TestCase`]s. Any kernel runs them with [`run`] over its own [`Platform`] and
//! devices and gets the same output: one line per test with its time, and a closing
//! `N passed, N failed` line. The host runs the same tables from `cargo test`.
//!
//! A test gets a [`TestEnv`]: the platform and named block devices (`"scratch0"`, ...). A test that
//! needs a device the environment lacks fails with a message naming it; nothing is skipped
//! silently.
//!
//! Tests return [`TestResult`]; use [`ensure!`](crate::ensure) and
//! [`ensure_eq!`](crate::ensure_eq) for checks with messages, and `?` on `Errno` results.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use crate::block::BlockDevice;
use crate::errno::Errno;
use crate::platform::Platform;

/// Why a test failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestFailure(pub String);

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Errno> for TestFailure {
    fn from(e: Errno) -> Self {
        TestFailure(format!("unexpected error {e}"))
    }
}

impl From<String> for TestFailure {
    fn from(s: String) -> Self {
        TestFailure(s)
    }
}

/// The outcome of one test.
pub type TestResult = Result<(), TestFailure>;

/// One test: a name (`suite::test`) and a function.
#[derive(Clone, Copy)]
pub struct TestCase {
    /// Unique name, `suite::test`.
    pub name: &'static str,
    /// The test.
    pub run: fn(&TestEnv) -> TestResult,
}

/// What tests run on: the platform and named block devices.
pub struct TestEnv {
    /// The platform.
    pub platform: Arc<dyn Platform>,
    devices: Vec<(String, Arc<dyn BlockDevice>)>,
}

impl TestEnv {
    /// An environment without devices.
    pub fn new(platform: Arc<dyn Platform>) -> Self {
        Self { platform, devices: Vec::new() }
    }

    /// Adds a device under `name`.
    pub fn add_device(&mut self, name: &str, dev: Arc<dyn BlockDevice>) {
        self.devices.push((String::from(name), dev));
    }

    /// The device named `name`, or a failure naming what is missing.
    pub fn device(&self, name: &str) -> Result<Arc<dyn BlockDevice>, TestFailure> {
        self.devices
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| TestFailure(format!("test environment has no block device named {name:?}")))
    }

    /// Names of all devices.
    pub fn device_names(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|(n, _)| n.as_str())
    }
}

/// Fails the test with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr) => {
        if !$cond {
            return Err($crate::selftest::TestFailure(alloc::format!(
                "check failed: {} at {}:{}", stringify!($cond), file!(), line!()
            )));
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::selftest::TestFailure(alloc::format!(
                "{} (at {}:{})", alloc::format!($($arg)+), file!(), line!()
            )));
        }
    };
}

/// Fails the test unless `left == right`, printing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (l, r) => {
                if !(*l == *r) {
                    return Err($crate::selftest::TestFailure(alloc::format!(
                        "{} == {} failed: left {:?}, right {:?} (at {}:{})",
                        stringify!($left), stringify!($right), l, r, file!(), line!()
                    )));
                }
            }
        }
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (l, r) => {
                if !(*l == *r) {
                    return Err($crate::selftest::TestFailure(alloc::format!(
                        "{}: left {:?}, right {:?} (at {}:{})",
                        alloc::format!($($arg)+), l, r, file!(), line!()
                    )));
                }
            }
        }
    };
}

/// Hooks around each test, for a kernel that must know the running test (for example to name
/// it when a panic or CPU exception ends the run).
pub trait Observer {
    /// `name` is about to run.
    fn started(&mut self, name: &'static str);
    /// `name` finished after `ns` nanoseconds.
    fn finished(&mut self, name: &'static str, ns: u64, result: &TestResult);
}

/// An observer that does nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn started(&mut self, _: &'static str) {}
    fn finished(&mut self, _: &'static str, _: u64, _: &TestResult) {}
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Names of the failed tests.
    pub failures: Vec<&'static str>,
}

impl Summary {
    /// Adds another run's totals.
    pub fn add(&mut self, other: &Summary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.failures.extend_from_slice(&other.failures);
    }

    /// The closing line, exactly `N passed, N failed`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Formats a duration in ns as milliseconds with three decimals.
pub struct Millis(pub u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} ms", self.0 / 1_000_000, self.0 / 1000 % 1000)
    }
}

/// Runs every test whose name contains `filter` (all when empty), printing one line per test.
/// Does not print the closing line: callers that run several tables print it once.
pub fn run(
    tests: &[TestCase],
    filter: &str,
    env: &TestEnv,
    out: &mut dyn Write,
    observer: &mut dyn Observer,
) -> Summary {
    let mut summary = Summary::default();
    for t in tests.iter().filter(|t| filter.is_empty() || t.name.contains(filter)) {
        observer.started(t.name);
        let t0 = env.platform.now_ns();
        let result = (t.run)(env);
        let ns = env.platform.now_ns().saturating_sub(t0);
        observer.finished(t.name, ns, &result);
        match &result {
            Ok(()) => {
                summary.passed += 1;
                let _ = writeln!(out, "test {} ... ok ({})", t.name, Millis(ns));
            }
            Err(e) => {
                summary.failed += 1;
                summary.failures.push(t.name);
                let _ = writeln!(out, "test {} ... FAILED ({}): {}", t.name, Millis(ns), e);
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::StdPlatform;

    fn passes(_: &TestEnv) -> TestResult {
        ensure_eq!(1 + 1, 2);
        Ok(())
    }

    fn fails(_: &TestEnv) -> TestResult {
        ensure_eq!(1 + 1, 3, "arithmetic");
        Ok(())
    }

    fn needs_disk(env: &TestEnv) -> TestResult {
        env.device("scratch0")?;
        Ok(())
    }

    #[test]
    fn runner_prints_one_line_per_test_and_counts() {
        let env = TestEnv::new(StdPlatform::arc());
        let tests = [
            TestCase { name: "demo::passes", run: passes },
            TestCase { name: "demo::fails", run: fails },
            TestCase { name: "demo::needs_disk", run: needs_disk },
        ];
        let mut out = String::new();
        let s = run(&tests, "", &env, &mut out, &mut NoObserver);
        assert_eq!((s.passed, s.failed), (1, 2));
        assert_eq!(s.failures, ["demo::fails", "demo::needs_disk"]);
        assert_eq!(s.line(), "1 passed, 2 failed");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("test demo::passes ... ok ("), "{}", lines[0]);
        assert!(lines[1].starts_with("test demo::fails ... FAILED ("), "{}", lines[1]);
        assert!(lines[1].contains("arithmetic: left 2, right 3"), "{}", lines[1]);
        assert!(lines[2].contains("no block device named \"scratch0\""), "{}", lines[2]);
    }

    #[test]
    fn filter_selects_by_substring() {
        let env = TestEnv::new(StdPlatform::arc());
        let tests = [TestCase { name: "a::x", run: passes }, TestCase { name: "b::y", run: fails }];
        let mut out = String::new();
        let s = run(&tests, "a::", &env, &mut out, &mut NoObserver);
        assert_eq!((s.passed, s.failed), (1, 0));
        assert_eq!(out.lines().count(), 1);
    }
}
