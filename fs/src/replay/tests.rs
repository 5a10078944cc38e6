//! The shipped oracle cases replayed on the reference model: the parser, the data pattern, the
//! runner and the output format must reproduce Linux XFS's expected output byte for byte.

use alloc::string::String;

use super::*;

pub(super) fn case(name: &str) -> (String, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/oracle/cases/");
    let ops = std::fs::read_to_string(alloc::format!("{dir}{name}.ops")).expect("case ops");
    let expected = std::fs::read_to_string(alloc::format!("{dir}{name}.expected")).expect("case expected");
    (ops, expected)
}

fn check(name: &str) {
    let (ops, expected) = case(name);
    let log = oplog::parse(&ops).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out = String::new();
    let report = replay(&log, &mut MemTarget::new(), &mut out).expect("replay runs");
    for (i, (got, want)) in out.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "{name}: first difference at output line {}", i + 1);
    }
    assert_eq!(out.lines().count(), expected.lines().count(), "{name}: line count");
    assert_eq!(out, expected);
    assert!(report.size_mismatches.is_empty(), "{name}: recorded sizes differ: {:?}", report.size_mismatches);
}

#[test]
fn model_matches_buffered_1() {
    check("buffered-1");
}

#[test]
fn model_matches_buffered_cached_drop_2() {
    check("buffered-cached-drop-2");
}

#[test]
fn model_matches_direct_3() {
    check("direct-3");
}

#[test]
fn model_matches_direct_subblock_4() {
    check("direct-subblock-4");
}

#[test]
fn model_matches_mixed_5() {
    check("mixed-5");
}

#[test]
fn model_matches_long_6() {
    check("long-6");
}

#[test]
fn failed_ops_print_their_errno_and_the_replay_goes_on() {
    let log =
        oplog::parse("collapse_range 0x1000 0x1000 0x0\nwrite 0 3 0\nexchange_range 0 1 2 3\nread 0 10 3\n")
            .unwrap();
    let mut out = String::new();
    let r = replay(&log, &mut MemTarget::new(), &mut out).unwrap();
    let mut want =
        String::from("op 1 collapse_range err EINVAL\nop 2 write ok\nop 3 exchange_range err ENOTSUP\n");
    let mut data = [0u8; 3];
    pattern::fill(&mut data, 0, 2);
    want.push_str(&alloc::format!(
        "op 4 read ok len=3 fnv={:016x}\n",
        pattern::fnv1a64(pattern::FNV_OFFSET, &data)
    ));
    want.push_str(&alloc::format!(
        "final size=3 fnv={:016x}\n",
        pattern::fnv1a64(pattern::FNV_OFFSET, &data)
    ));
    assert_eq!(out, want);
    assert_eq!((r.executed, r.errors), (3, 1));
}
