//! Host tests: the portable suite over a RamDisk (in order, then with completions shuffled and
//! rationed), plus host-only tests with threads.

use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use foliage_drivers::selftest::{run, NoObserver, TestEnv};

use super::selftest::SUITE;
use crate::block::{BlockDevice, CompletionOrder, RamDisk};
use crate::platform::StdPlatform;

fn env_with(disk: Arc<RamDisk>) -> TestEnv {
    let mut env = TestEnv::new(StdPlatform::arc());
    env.add_device("scratch0", disk as Arc<dyn BlockDevice>);
    env
}

fn run_suite(disk: Arc<RamDisk>, filter: &str) {
    let env = env_with(disk);
    let mut out = String::new();
    let s = run(SUITE, filter, &env, &mut out, &mut NoObserver);
    std::print!("{out}");
    assert_eq!(s.failed, 0, "failed: {:?}\n{out}", s.failures);
    assert!(s.passed > 0);
}

#[test]
fn suite_over_ramdisk() {
    run_suite(Arc::new(RamDisk::new(192 << 20, 512).unwrap()), "");
}

#[test]
fn suite_with_shuffled_rationed_completions() {
    let disk = Arc::new(RamDisk::new(192 << 20, 512).unwrap());
    disk.set_completion_order(CompletionOrder::Shuffle { seed: 7 });
    disk.set_poll_budget(Some(3));
    // The exact-count tests are order independent; skip only the 64 MiB one for time.
    let names: Vec<&str> = SUITE.iter().map(|t| t.name).filter(|n| !n.contains("64mib")).collect();
    let env = env_with(disk);
    for name in names {
        let mut out = String::new();
        let s = run(SUITE, name, &env, &mut out, &mut NoObserver);
        assert_eq!(s.failed, 0, "{out}");
    }
}
