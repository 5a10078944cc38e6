//! Block device conformance: a portable [`SUITE`] of self-tests any
//! [`BlockDevice`](crate::block::BlockDevice) must pass.
//!
//! The suite runs on the device named `"scratch0"` in the
//! [`TestEnv`](crate::selftest::TestEnv) (its contents are destroyed). The host runs it on [`RamDisk`](super::RamDisk) from `cargo test`; the kernel runs
//! it on every virtio-blk configuration it boots with; another kernel runs it on its own driver
//! to prove its port. It checks the contract in [`block`](super): data round trips across the
//! whole device including its last block, flush / FUA / PREFLUSH, refusal of out-of-range and
//! malformed bios with the right error (exactly one completion each), 256 bios in flight each
//! verified, many-segment scatter-gather, DISCARD / WRITE_ZEROES (or `EOPNOTSUPP`), the device's
//! own limits, and submission from inside a completion callback.
//!
//! Completions are recorded without locks or allocation (atomics indexed by cookie), so the
//! suite also runs with completions delivered in interrupt context.
//!
//! Files: `util` (patterns, the completion tracker, bio helpers), `data` (the data path),
//! `limits` (refusals, limits, submission from a completion).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | blktests `block/` group, fio `verify=` patterns | [`SUITE`] |
//! | `bio_endio` exactly once | every test counts completions per cookie |

mod data;
mod limits;
mod util;

use crate::selftest::TestCase;

/// The name of the device the suite runs on.
pub const DEVICE: &str = "scratch0";

/// The conformance tests.
pub static SUITE: &[TestCase] = &[
    TestCase { name: "conformance::info_is_sane", run: data::info_is_sane },
    TestCase { name: "conformance::write_flush_read_whole_disk", run: data::write_flush_read_whole_disk },
    TestCase { name: "conformance::last_block_and_out_of_range", run: data::last_block_and_out_of_range },
    TestCase { name: "conformance::malformed_bios_rejected_once", run: limits::malformed_bios_rejected_once },
    TestCase { name: "conformance::deep_queue_256_in_flight", run: data::deep_queue_256_in_flight },
    TestCase { name: "conformance::scatter_gather_many_segments", run: data::scatter_gather_many_segments },
    TestCase { name: "conformance::discard_and_write_zeroes", run: data::discard_and_write_zeroes },
    TestCase { name: "conformance::fua_preflush_and_flush", run: data::fua_preflush_and_flush },
    TestCase { name: "conformance::io_at_the_limits", run: limits::io_at_the_limits },
    TestCase { name: "conformance::submit_from_completion", run: limits::submit_from_completion },
];

/// Extra tests for *strict* drivers, which refuse (`EINVAL`) every bio beyond their own
/// [`DeviceInfo`](crate::block::DeviceInfo) limits (more segments, larger segments or requests, longer discards). Lenient
/// devices (RamDisk, a `Queue`) may accept such bios and are not held to this.
pub static STRICT: &[TestCase] =
    &[TestCase { name: "conformance::strict::beyond_limits_einval", run: limits::beyond_limits_einval }];

#[cfg(test)]
mod tests {
    use super::util::{check, fill};
    use super::*;
    use crate::block::RamDisk;
    use crate::block::{Bio, BioOp, BlockDevice, DeviceFeatures, DeviceInfo};
    use crate::platform::StdPlatform;
    use crate::selftest::{run, NoObserver, TestEnv};
    use alloc::sync::Arc;

    fn run_suite(dev: Arc<dyn BlockDevice>) {
        let mut env = TestEnv::new(StdPlatform::arc());
        env.add_device(DEVICE, dev);
        let mut out = alloc::string::String::new();
        let s = run(SUITE, "", &env, &mut out, &mut NoObserver);
        std::print!("{out}");
        assert_eq!(s.failed, 0, "{out}");
        assert_eq!(s.passed, SUITE.len(), "{out}");
    }

    #[test]
    fn suite_passes_on_ramdisk_512() {
        run_suite(Arc::new(RamDisk::new(4 << 20, 512).unwrap()));
    }

    #[test]
    fn suite_passes_on_ramdisk_4k_without_discard() {
        let mut d = RamDisk::new(4 << 20, 4096).unwrap();
        let mut i = d.info();
        i.features = DeviceFeatures::FLUSH;
        i.max_discard_sectors = 0;
        i.max_write_zeroes_sectors = 0;
        i.max_segments = 8;
        i.max_segment_bytes = 64 << 10;
        i.max_request_bytes = 256 << 10;
        d.set_info(i);
        run_suite(Arc::new(d));
    }

    #[test]
    fn pattern_check_names_the_bad_offset() {
        let mut b = alloc::vec![0u8; 64];
        fill(&mut b, 4096, 9);
        assert!(check(&b, 4096, 9, "x").is_ok());
        b[17] ^= 1;
        let e = check(&b, 4096, 9, "x").unwrap_err();
        assert!(e.0.contains("device byte 0x1010"), "{}", e.0);
        assert!(check(&b, 4096 + 8, 9, "x").is_err(), "pattern depends on the offset");
    }

    #[test]
    fn suite_fails_on_a_device_that_loses_writes() {
        struct Forgetful(RamDisk);
        impl BlockDevice for Forgetful {
            fn info(&self) -> DeviceInfo {
                self.0.info()
            }
            fn submit(&self, mut bio: Bio) {
                if bio.op == BioOp::Write && bio.sector == 0 {
                    bio.op = BioOp::Read; // the write never reaches the medium
                }
                self.0.submit(bio)
            }
            fn poll(&self) -> usize {
                self.0.poll()
            }
            fn in_flight(&self) -> usize {
                self.0.in_flight()
            }
        }
        let mut env = TestEnv::new(StdPlatform::arc());
        env.add_device(DEVICE, Arc::new(Forgetful(RamDisk::new(1 << 20, 512).unwrap())));
        let mut out = alloc::string::String::new();
        let s = run(SUITE, "whole_disk", &env, &mut out, &mut NoObserver);
        assert_eq!((s.passed, s.failed), (0, 1), "{out}");
        assert!(out.contains("data mismatch at device byte 0x0"), "{out}");
    }
}
