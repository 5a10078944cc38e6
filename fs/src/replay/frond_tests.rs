//! The oracle cases replayed on frond over a RamDisk: the output must be Linux XFS's byte for
//! byte (4 KiB blocks), and a replay on 1 KiB blocks must match the reference model. The sizes
//! the logs record before each op must be frond's too.

use alloc::string::String;
use alloc::sync::Arc;

use super::tests::case;
use super::*;
use crate::block::{BlockDevice, RamDisk};
use crate::platform::StdPlatform;
use crate::vfs::{mkfs, FrondFs, MkfsOptions, MountOptions};

/// The scratch disk size `cargo xtask replay` uses (host and kernel).
const DISK: u64 = 256 << 20;

fn run_fresh(ops: &str, block_size: u32) -> (String, ReplayReport) {
    let log = oplog::parse(ops).expect("log parses");
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(DISK, 512).unwrap());
    let mut out = String::new();
    let opts = FreshOptions { block_size, ..FreshOptions::default() };
    let r =
        replay_fresh(dev, StdPlatform::arc(), &log, opts, &mut out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    (out, r)
}

fn assert_same_output(name: &str, got: &str, want: &str) {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{name}: first difference at output line {}", i + 1);
    }
    assert_eq!(got.lines().count(), want.lines().count(), "{name}: line count");
    assert_eq!(got, want);
}

fn check(name: &str) {
    let (ops, expected) = case(name);
    let (out, report) = run_fresh(&ops, 4096);
    assert_same_output(name, &out, &expected);
    assert!(report.size_mismatches.is_empty(), "{name}: recorded sizes differ: {:?}", report.size_mismatches);
}

#[test]
fn frond_matches_buffered_1() {
    check("buffered-1");
}

#[test]
fn frond_matches_buffered_cached_drop_2() {
    check("buffered-cached-drop-2");
}

#[test]
fn frond_matches_direct_3() {
    check("direct-3");
}

#[test]
fn frond_matches_direct_subblock_4() {
    check("direct-subblock-4");
}

#[test]
fn frond_matches_mixed_5() {
    check("mixed-5");
}

#[test]
fn frond_matches_long_6() {
    check("long-6");
}

#[test]
fn frond_matches_subblock_7() {
    check("subblock-7");
}

#[test]
fn frond_matches_random_8() {
    check("random-8");
}

#[test]
fn frond_matches_errors_9() {
    check("errors-9");
}

/// 1 KiB blocks: the reference model's output (Linux's answer is for 4 KiB blocks). mixed-5's
/// clones, collapses and inserts are 4 KiB aligned, so they are valid on 1 KiB blocks too and
/// nothing in it depends on the block size.
#[test]
fn frond_1k_blocks_matches_the_model_on_mixed_5() {
    let (ops, expected) = case("mixed-5");
    let log = oplog::parse(&ops).unwrap();
    let mut model = String::new();
    replay(&log, &mut MemTarget::new(), &mut model).unwrap();
    assert_same_output("mixed-5 (model)", &model, &expected);
    let (out, _) = run_fresh(&ops, 1024);
    assert_same_output("mixed-5 on 1 KiB blocks", &out, &model);
}

/// close_open leaves nothing of the mount cached: the next read comes from the device.
#[test]
fn close_open_drops_the_cache_and_keeps_the_contents() {
    let p = StdPlatform::arc();
    let ram = Arc::new(RamDisk::new(16 << 20, 512).unwrap());
    let dev: Arc<dyn BlockDevice> = ram.clone();
    mkfs(dev.clone(), p.clone(), &MkfsOptions::default()).unwrap();
    let fs = FrondFs::mount(dev, p, MountOptions::new(8 << 20)).unwrap();
    let mut t = FrondTarget::new(fs.clone()).unwrap();
    let data: alloc::vec::Vec<u8> = (0..20000u32).map(|i| (i % 253) as u8 + 1).collect();
    t.write(100, &data, false).unwrap();
    assert!(fs.cache().cached_bytes() > 0);
    t.close_open().unwrap();
    assert_eq!(fs.cache().cached_bytes(), 0);
    ram.reset_stats();
    let mut buf = alloc::vec![0u8; 20100];
    assert_eq!(t.read(0, &mut buf, false).unwrap(), 20100);
    assert!(buf[..100].iter().all(|&b| b == 0));
    assert_eq!(&buf[100..], &data[..]);
    assert!(ram.stats().read_bytes >= 20100, "read from the device: {:?}", ram.stats());
    t.close().unwrap();
    fs.unmount().unwrap();
}

/// Linux's errors come back as err lines with Linux's names.
#[test]
fn errors_print_linux_names() {
    let ops = "write 0x0 0x3000 0x0\n\
               collapse_range 0x1000 0x2000 0x3000\n\
               insert_range 0x3000 0x1000 0x3000\n\
               clone_range 0x0 0x1800 0x2000 0x3000\n\
               write 0x200 0x200 0x3000 direct\n\
               fallocate 0x0 0x40000000 0x3000\n\
               fallocate 0x7ffffffffffff000 0x2000 0x3000\n\
               read 0x0 0x3000 0x3000\n";
    let (out, r) = run_fresh(ops, 4096);
    let lines: alloc::vec::Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "op 2 collapse_range err EINVAL");
    assert_eq!(lines[2], "op 3 insert_range err EINVAL");
    assert_eq!(lines[3], "op 4 clone_range err EINVAL");
    assert_eq!(lines[4], "op 5 write ok");
    assert_eq!(lines[5], "op 6 fallocate err ENOSPC");
    assert_eq!(lines[6], "op 7 fallocate err EFBIG");
    assert_eq!(r.errors, 5);
    assert_eq!(r.final_size, 0x3000);
}
