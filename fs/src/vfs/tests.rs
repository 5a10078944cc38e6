//! Host runs of the filesystem suites over RamDisks.

use std::string::String;
use std::sync::Arc;

use foliage_drivers::selftest::{run, NoObserver, TestCase, TestEnv};

use crate::block::{BlockDevice, RamDisk};
use crate::platform::StdPlatform;
use crate::selftest;

fn run_table(table: &[TestCase]) {
    let mut env = TestEnv::new(StdPlatform::arc());
    let disk: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(64 << 20, 512).unwrap());
    env.add_device("scratch0", disk);
    let mut out = String::new();
    let s = run(table, "", &env, &mut out, &mut NoObserver);
    std::print!("{out}");
    assert_eq!(s.failed, 0, "failed: {:?}\n{out}", s.failures);
    assert_eq!(s.passed, table.len());
}

#[test]
fn buffered_suite() {
    run_table(selftest::BUFFERED);
}

#[test]
fn cow_suite() {
    run_table(selftest::COW);
}

#[test]
fn errors_suite() {
    run_table(selftest::ERRORS);
}

#[test]
fn direct_suite() {
    run_table(selftest::DIRECT);
}

#[test]
fn crash_suite() {
    run_table(selftest::CRASH);
}
