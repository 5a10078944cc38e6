//! xtask: Foliage's build, run, test and bench driver (a host binary; `cargo xtask <command>`).
//!
//! | command | what it does |
//! |---|---|
//! | `build` | builds the kernel (test and bench profiles) and the disk images |
//! | `run` | boots the kernel in QEMU and shows the system working; exits with its status |
//! | `test [FILTER]` | host tests, then the kernel suites in QEMU, then the harness self-check |
//! | `bench` | release builds; prints `bench <name> <value> <unit>` lines |
//! | `mkfs <image> [--block-size N] [--size N]` | formats an image file with frond |
//! | `fsck <image>` | checks a frond image; non-zero exit when it is not clean |
//! | `replay <ops> [--host] [--expect F]` | replays an op log on a fresh frond fs (kernel, or host) and prints the oracle output format |
//!
//! Options for the QEMU commands: `--accel kvm|tcg` (TCG by default), `--timeout SECS`.

mod bench;
mod build;
mod fsimage;
mod qemu;
mod replay;
mod test;
mod util;

use std::process::ExitCode;
use std::time::Duration;

use crate::util::Result;

const USAGE: &str =
    "usage: cargo xtask <build | run | test [FILTER] | bench [SECTIONS] | replay <ops> [--host] [--expect F]> [--accel kvm|tcg] [--timeout SECS]";

fn run(args: &[String]) -> Result<()> {
    let mut o = test::Options::parse(args)?;
    if !args.iter().any(|a| a == "--timeout") {
        o.timeout = Duration::from_secs(60);
    }
    let kernel = build::kernel(build::Profile::Ktest, &[])?;
    let m = qemu::Machine {
        kernel,
        append: "mode=run".into(),
        disks: vec![qemu::Disk::new(build::image("run-disk0", 256 << 20)?, "disk0")],
        memory_mib: 1024,
        accel: o.accel,
    };
    let out = qemu::run(&m, "run", o.timeout, true)?;
    match out.status {
        qemu::Status::Pass => Ok(()),
        s => Err(format!("the kernel did not finish cleanly: {} (log: {})", s.describe(), out.log.display())
            .into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("build") => build::cmd(rest),
        Some("run") => run(rest),
        Some("test") => test::cmd(rest),
        Some("bench") => bench::cmd(rest),
        Some("mkfs") => fsimage::mkfs_cmd(rest),
        Some("fsck") => fsimage::fsck_cmd(rest),
        Some("replay") => replay::cmd(rest),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
        None => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
