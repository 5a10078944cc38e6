//! `cargo xtask bench`: release builds; one line per figure, exactly
//! `bench <name> <value> <unit>` (ratios measured in the same run: `bench <name>_vs_<base> <v> x`).
//!
//! Figures: `boot_ms` (QEMU start to the first kernel test), then the kernel's block benchmarks
//! (kernel/src/bench.rs: Foliage's virtio-blk driver against virtio-drivers' `VirtIOBlk` on the
//! same disk in the same boot), re-printed from the bench boot's console.
//!
//! `cargo xtask bench SECTIONS` runs only the named sections, a comma separated list of `boot`
//! (`boot_ms`), `blk`, `iomap`, `dio`, `fs` (the kernel's, kernel/src/bench.rs) and `host`;
//! no list runs all.

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

/// Size of each bench disk (sparse; the block figures use the first 256 MiB, the iomap
/// buffered figures up to 2 GiB of file space, the direct-I/O figures 256 MiB plus two 16 MiB files).
const BENCH_DISK_MIB: u64 = 2048;

/// The block benchmarks: one boot in `mode=bench` with three identical disks, `bench0` (Foliage's
/// driver), `bench1` (virtio-drivers' `VirtIOBlk`), `bench2` (Foliage's driver without indirect
/// descriptors).
fn block(o: &Options, kernel_sections: &str) -> Result<()> {
    let kernel = build::kernel(Profile::Release, &[])?;
    let m = Machine {
        kernel,
        append: format!("mode=bench filter={kernel_sections}"),
        disks: ["bench0", "bench1", "bench2"]
            .iter()
            .map(|name| Ok(Disk::new(build::image(&format!("bench-{name}"), BENCH_DISK_MIB << 20)?, name)))
            .collect::<Result<Vec<_>>>()?,
        memory_mib: 1024,
        accel: o.accel,
    };
    let out = qemu::run(&m, "bench-block", Duration::from_secs(o.timeout.as_secs().min(600)), false)?;
    let mut figures = 0;
    for line in &out.lines {
        if line.starts_with("bench ") && line.split(' ').count() == 4 {
            println!("{line}");
            figures += 1;
        } else if line.starts_with("bench") {
            eprintln!("{line}");
        }
    }
    if out.status != qemu::Status::Pass || figures == 0 {
        return Err(format!(
            "the block benchmark boot failed: {} (log: {})",
            out.status.describe(),
            out.log.display()
        )
        .into());
    }
    Ok(())
}

/// A row name as a figure name: lowercase, runs of anything but letters and digits become one
/// `_` (`"queue.rand4k.bios_per_s"` -> `queue_rand4k_bios_per_s`).
pub fn figure_name(prefix: &str, row: &str) -> String {
    let mut out = String::from(prefix);
    for c in row.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

fn unit_name(unit: &str) -> String {
    unit.replace('/', "_per_").replace(' ', "_")
}

/// Host figures (this process, release): the page cache's XArray and per-folio overhead, the block
/// request queue over a RamDisk, and frond's metadata operations over a RamDisk.
fn host() -> Result<()> {
    use foliage_drivers::platform::StdPlatform;
    let platform = StdPlatform::arc();
    for (name, value, unit) in foliage_fs::pagecache::bench::run(&*platform) {
        figure(&figure_name("", name), value, &unit_name(unit));
    }
    let size = foliage_drivers::block::queue::bench::BenchSize::STANDARD;
    for (name, value, unit) in foliage_drivers::block::queue::bench::run(&platform, size)? {
        figure(&figure_name("", name), value, &unit_name(unit));
    }
    for (name, value, unit) in foliage_fs::frond::bench::run(platform.clone(), 10_000)? {
        figure(&figure_name("frond_", name), value, &unit_name(unit));
    }
    Ok(())
}

/// The sections of `cargo xtask bench` (see the module docs); the middle ones run in the kernel.
const SECTIONS: [&str; 6] = ["boot", "blk", "iomap", "dio", "fs", "host"];

/// The sections `filter` (a comma separated list, empty for all) selects, in run order.
fn sections(filter: &str) -> Result<Vec<&'static str>> {
    if filter.is_empty() {
        return Ok(SECTIONS.to_vec());
    }
    let wanted: Vec<&str> = filter.split(',').collect();
    if let Some(bad) = wanted.iter().find(|w| !SECTIONS.contains(w)) {
        return Err(format!("bench: no section {bad:?} (sections: {})", SECTIONS.join(", ")).into());
    }
    Ok(SECTIONS.iter().copied().filter(|s| wanted.contains(s)).collect())
}

/// `cargo xtask bench [SECTIONS] [--accel kvm|tcg]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let run = sections(&o.filter)?;
    qemu::ensure_qemu()?;
    if run.contains(&"boot") {
        boot_ms(&o)?;
    }
    let kernel: Vec<&str> = run.iter().copied().filter(|s| !["boot", "host"].contains(s)).collect();
    if !kernel.is_empty() {
        block(&o, &kernel.join(","))?;
    }
    if run.contains(&"host") {
        host()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_names_become_figure_names() {
        assert_eq!(figure_name("", "queue.rand4k.bios_per_s"), "queue_rand4k_bios_per_s");
        assert_eq!(
            figure_name("frond_", "delalloc+allocate+convert (8 blocks)"),
            "frond_delalloc_allocate_convert_8_blocks"
        );
        assert_eq!(figure_name("", "xarray_lookup_ns"), "xarray_lookup_ns");
        assert_eq!(unit_name("ops/s"), "ops_per_s");
        assert_eq!(unit_name("x"), "x");
    }

    #[test]
    fn sections_are_checked_and_kept_in_run_order() {
        assert_eq!(sections("").unwrap(), SECTIONS);
        assert_eq!(sections("dio,blk").unwrap(), ["blk", "dio"]);
        assert!(sections("dio,nope").is_err());
    }
}
