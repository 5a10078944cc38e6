//! The kernel command line (`-append`), set by xtask:
//!
//! - `mode=run|test|bench` what to do after boot (default `run`);
//! - `filter=SUBSTRING` which tests to run (default all);
//! - `selfcheck` registers the harness's deliberately failing tests (xtask's own check that a
//!   failing, panicking or faulting test fails the run with its name).

/// What the kernel does after boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The demonstration.
    Run,
    /// The self-test suites.
    Test,
    /// The benchmarks.
    Bench,
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
}

/// Parses `s`; unknown words are ignored.
pub fn parse(s: &str) -> Cmdline<'_> {
    let mut c = Cmdline { mode: Mode::Run, filter: "", selfcheck: false };
    for word in s.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("mode", "test")) => c.mode = Mode::Test,
            Some(("mode", "bench")) => c.mode = Mode::Bench,
            Some(("mode", _)) => c.mode = Mode::Run,
            Some(("filter", f)) => c.filter = f,
            None if word == "selfcheck" => c.selfcheck = true,
            _ => {}
        }
    }
    c
}
