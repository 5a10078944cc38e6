//! `cargo xtask bench`: release builds; one line per figure, exactly
//! `bench <name> <value> <unit>` (ratios measured in the same run: `bench <name>_vs_<base> <v> x`).

use std::time::Duration;

use crate::build::{self, Profile};
use crate::qemu::{self, Disk, Machine};
use crate::test::Options;
use crate::util::Result;

/// Prints one figure.
pub fn figure(name: &str, value: f64, unit: &str) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        println!("bench {name} {value:.0} {unit}");
    } else {
        println!("bench {name} {value:.3} {unit}");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `boot_ms`: QEMU start to the first kernel test, median of 5 boots.
fn boot_ms(o: &Options) -> Result<()> {
    let kernel = build::kernel(Profile::Release, &[])?;
    let m = Machine {
        kernel,
        append: "mode=test filter=kernel::heap_alloc_and_free".into(),
        disks: vec![Disk::new(build::image("bench-scratch0", 64 << 20)?, "scratch0")],
        memory_mib: 1024,
        accel: o.accel,
    };
    let mut samples = Vec::new();
    for i in 0..5 {
        let out = qemu::run(&m, &format!("bench-boot-{i}"), Duration::from_secs(60), false)?;
        let ms = out.first_test_ms.ok_or("boot_ms: the kernel never reached its first test")?;
        samples.push(ms);
    }
    figure("boot_ms", median(samples).round(), "ms");
    Ok(())
}

/// `cargo xtask bench [--accel kvm|tcg]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    qemu::ensure_qemu()?;
    boot_ms(&o)?;
    Ok(())
}
