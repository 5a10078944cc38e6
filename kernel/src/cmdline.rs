//! The kernel command line (`-append`), set by xtask:
//!
//! - `mode=run|test|bench|replay` what to do after boot (default `run`);
//! - `filter=SUBSTRING` which tests to run (default all); in `mode=bench`, which benchmark
//!   sections (see `bench`);
//! - `selfcheck` registers the harness's deliberately failing tests (xtask's own check that a
//!   failing, panicking or faulting test fails the run with its name);
//! - `blkirq` switches every disk to interrupt-driven completion (MSI-X) after discovery;
//! - `blkdebug` registers the fault-injection tests, which expect a disk named `faulty` behind
//!   QEMU's blkdebug driver.

/// What the kernel does after boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The demonstration.
    Run,
    /// The self-test suites.
    Test,
    /// The benchmarks.
    Bench,
    /// Replay the op logs of the `oplogs` disk (`replay`).
    Replay,
}

/// The parsed command line.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    /// What to do.
    pub mode: Mode,
    /// Test name filter.
    pub filter: &'a str,
    /// Register the harness self-check tests.
    pub selfcheck: bool,
    /// Complete disk I/O by interrupt.
    pub blkirq: bool,
    /// Register the blkdebug fault-injection tests.
    pub blkdebug: bool,
}

/// Parses `s`; unknown words are ignored.
pub fn parse(s: &str) -> Cmdline<'_> {
    let mut c = Cmdline { mode: Mode::Run, filter: "", selfcheck: false, blkirq: false, blkdebug: false };
    for word in s.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("mode", "test")) => c.mode = Mode::Test,
            Some(("mode", "bench")) => c.mode = Mode::Bench,
            Some(("mode", "replay")) => c.mode = Mode::Replay,
            Some(("mode", _)) => c.mode = Mode::Run,
            Some(("filter", f)) => c.filter = f,
            None if word == "selfcheck" => c.selfcheck = true,
            None if word == "blkirq" => c.blkirq = true,
            None if word == "blkdebug" => c.blkdebug = true,
            _ => {}
        }
    }
    c
}
