//! `cargo xtask test [FILTER]`: the host tests of every crate but the kernel, then the kernel
//! suites in QEMU (one boot per machine profile), then the harness self-check. Prints a summary
//! per stage and the closing `N passed, N failed` line; fails on any failed test, a timeout, a
//! boot that ends without the pass code, or a missing closing line.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::build::{self, Profile};
use crate::qemu::{self, Accel, Disk, Machine, Status};
use crate::replay;
use crate::util::{cargo, parse_closing_line, Result};

/// Totals of a stage.
#[derive(Default, Debug)]
pub struct Tally {
    /// Passed tests.
    pub passed: usize,
    /// Failed tests, by name.
    pub failed: Vec<String>,
    /// Stage-level problems (a boot that timed out, a missing closing line, ...).
    pub problems: Vec<String>,
}

impl Tally {
    fn failed_count(&self) -> usize {
        self.failed.len() + self.problems.len()
    }

    fn add(&mut self, o: Tally) {
        self.passed += o.passed;
        self.failed.extend(o.failed);
        self.problems.extend(o.problems);
    }
}

/// Options shared by the QEMU-running commands.
#[derive(Clone, Debug)]
pub struct Options {
    /// Accelerator.
    pub accel: Accel,
    /// Per-boot timeout.
    pub timeout: Duration,
    /// Test name filter.
    pub filter: String,
}

impl Options {
    /// Parses `--accel kvm|tcg`, `--timeout SECS` and one positional filter.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options { accel: Accel::Tcg, timeout: Duration::from_secs(600), filter: String::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--accel" => {
                    o.accel = match it.next().map(String::as_str) {
                        Some("kvm") => Accel::Kvm,
                        Some("tcg") => Accel::Tcg,
                        v => return Err(format!("--accel takes kvm or tcg, not {v:?}").into()),
                    }
                }
                "--timeout" => {
                    let v = it.next().ok_or("--timeout needs seconds")?;
                    o.timeout = Duration::from_secs(v.parse().map_err(|_| format!("bad --timeout {v:?}"))?);
                }
                s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
                s => o.filter = s.to_string(),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_output_counts_suite_lines_once() {
        let out = "running 2 tests\ntest a::suite ... ok\ntest a::b ... ok\n\nsuccesses:\n\n---- a::suite stdout ----\n\
                   test s::one ... ok (3 ms)\ntest s::two ... ok (1 ms)\n---- a::b stdout ----\ntest h::x ... FAILED (0 ms): on purpose\n\n\
                   test result: ok. 2 passed\nrunning 1 test\ntest c::suite ... FAILED\n\nfailures:\n\n---- c::suite stdout ----\n\
                   test s::three ... ok (2 ms)\ntest s::four ... FAILED (1 ms): bytes differ\nthread 'c::suite' panicked at x\n\
                   \nfailures:\n    c::suite\n\ntest result: FAILED. 0 passed; 1 failed\n";
        let mut t = super::Tally::default();
        let mut section = super::HostSection::Running;
        let shown: Vec<&str> = out.lines().filter(|l| super::host_line(&mut section, l, &mut t)).collect();
        assert_eq!(t.passed, 4, "a::suite, a::b, s::one, s::two");
        assert_eq!(t.failed, vec!["host: c::suite".to_string(), "host: s::four".to_string()]);
        assert!(shown.contains(&"test s::one ... ok (3 ms)"));
        assert!(shown.contains(&"thread 'c::suite' panicked at x"));
        assert!(!shown.iter().any(|l| l.contains("on purpose") || l.starts_with("---- a::")));
    }

    use super::*;

    #[test]
    fn profile_filters_combine_with_the_users() {
        let main = &PROFILES[0];
        let blk = PROFILES.iter().find(|p| p.name == "kernel-blkdebug").unwrap();
        assert_eq!(profile_filter(main, ""), Some(String::new()));
        assert_eq!(profile_filter(main, "virtio::"), Some("virtio::".into()));
        assert_eq!(profile_filter(blk, ""), Some("blkdebug::".into()));
        assert_eq!(profile_filter(blk, "blkdebug"), Some("blkdebug::".into()));
        assert_eq!(profile_filter(blk, "blkdebug::eio"), Some("blkdebug::eio".into()));
        assert_eq!(profile_filter(blk, "virtio::"), None);
    }

    #[test]
    fn read_only_pattern_matches_the_kernel_rule() {
        let v = ro_pattern(4096);
        assert_eq!(&v[..16], b"FOLIAGE-RO-IMAGE");
        assert_eq!(v[16], 3 + 16);
        assert_eq!(v[512], 7 + 3);
        assert_eq!(v[513 + 512], (2 * 7 + 3 + 1) as u8);
    }

    #[test]
    fn blkdebug_rules_count_writes_then_fail_once() {
        assert_eq!(
            blkdebug_fail_nth_write(3),
            "[set-state]\nstate = \"1\"\nevent = \"pwritev\"\nnew_state = \"2\"\n\n\
             [set-state]\nstate = \"2\"\nevent = \"pwritev\"\nnew_state = \"3\"\n\n\
             [inject-error]\nstate = \"3\"\nevent = \"pwritev\"\nerrno = \"5\"\nonce = \"on\"\n"
        );
        assert_eq!(blkdebug_fail_nth_write(10).matches("[set-state]").count(), 9);
    }
}

/// Where a line of `cargo test --show-output` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostSection {
    /// libtest's own result lines.
    Running,
    /// The captured output of passed tests (`successes:`): the portable suites' per-test lines.
    Successes,
    /// The captured output of failed tests (`failures:`).
    Failures,
}

/// What one line of `cargo test --show-output` adds to the tally (and whether to echo it).
///
/// A test that runs a portable suite (`foliage_drivers::selftest::run`) prints one
/// `test <name> ... ok (<time>)` line per suite test; libtest shows that output under
/// `successes:`, so the suite's tests get their own lines and counts here, as they do in the
/// kernel. Inside `failures:` the suite lines are echoed; a FAILED one is named as a failure
/// (its libtest test already failed) and its passes are not counted a second time.
fn host_line(section: &mut HostSection, line: &str, t: &mut Tally) -> bool {
    match line {
        "successes:" => {
            *section = HostSection::Successes;
            return false;
        }
        "failures:" => {
            *section = HostSection::Failures;
            return true;
        }
        _ if line.starts_with("test result:") || line.starts_with("running ") => {
            *section = HostSection::Running;
            return false;
        }
        _ => {}
    }
    if let Some((name, result)) = line.strip_prefix("test ").and_then(|r| r.rsplit_once(" ... ")) {
        let failed = result.starts_with("FAILED");
        match *section {
            HostSection::Running if result == "ok" => t.passed += 1,
            HostSection::Running if result == "ignored" => {
                t.problems.push(format!("host test {name} is ignored"))
            }
            HostSection::Successes if result.starts_with("ok") => t.passed += 1,
            // A passed test's output may hold a deliberate failure (the harness's own tests).
            HostSection::Successes => return false,
            HostSection::Running | HostSection::Failures if failed => t.failed.push(format!("host: {name}")),
            _ => {}
        }
        return true;
    }
    *section == HostSection::Failures
        && (line.starts_with("---- ") || line.contains("panicked at") || line.starts_with("thread '"))
}

fn host_stage(filter: &str) -> Result<Tally> {
    println!("== host tests (cargo test, every crate but the kernel) ==");
    let mut c = cargo();
    c.args([
        "test",
        "--workspace",
        "--exclude",
        "foliage-kernel",
        "--no-fail-fast",
        "--",
        "--color",
        "never",
        "--show-output",
    ]);
    if !filter.is_empty() {
        c.arg(filter);
    }
    c.stdout(Stdio::piped());
    let mut child = c.spawn()?;
    let out = child.stdout.take().expect("piped");
    let mut t = Tally::default();
    let mut section = HostSection::Running;
    for line in BufReader::new(out).lines() {
        let line = line?;
        if host_line(&mut section, &line, &mut t) {
            println!("{line}");
        }
    }
    let status = child.wait()?;
    if !status.success() && t.failed.is_empty() {
        t.problems.push(format!("cargo test failed ({status}) without a failing test: a build error?"));
    }
    t.add(replay_host_stage(filter)?);
    println!("host: {} passed, {} failed", t.passed, t.failed_count());
    Ok(t)
}

/// How a disk image starts out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Zeros (a fresh sparse file).
    Zero,
    /// The read-only test pattern: the 16-byte magic `FOLIAGE-RO-IMAGE`, then byte `i` is
    /// `(i / 512) * 7 + 3 + i % 512` (mod 256). kernel/src/ktest/virtio_tests.rs checks it.
    ReadOnlyPattern,
}

/// One disk of a test boot.
pub struct DiskSpec {
    /// The virtio serial (GET_ID): the kernel's name for the disk.
    pub serial: &'static str,
    /// Size in MiB.
    pub mib: u64,
    /// Extra virtio-blk-pci properties.
    pub props: &'static str,
    /// Attach read-only.
    pub read_only: bool,
    /// Put the image behind blkdebug, failing this write request (1-based) with EIO once.
    pub fail_nth_write: Option<u32>,
    /// Initial contents.
    pub fill: Fill,
}

impl DiskSpec {
    const fn plain(serial: &'static str, mib: u64, props: &'static str) -> Self {
        Self { serial, mib, props, read_only: false, fail_nth_write: None, fill: Fill::Zero }
    }
}

/// One kernel boot configuration for the test stage.
pub struct KernelProfile {
    /// Name (log file, messages).
    pub name: &'static str,
    /// Extra kernel command-line words.
    pub append: &'static str,
    /// The tests this boot is for (a name substring), or every test when `None`.
    pub filter: Option<&'static str>,
    /// Disks, in PCI slot order.
    pub disks: &'static [DiskSpec],
}

/// blkdebug rules that fail the `n`-th write request with EIO, once: states `1..n` count
/// writes (`pwritev` fires once per write request on the blkdebug node), and the error rule is
/// armed in state `n`.
pub fn blkdebug_fail_nth_write(n: u32) -> String {
    let mut rules = String::new();
    for state in 1..n {
        rules.push_str(&format!(
            "[set-state]\nstate = \"{state}\"\nevent = \"pwritev\"\nnew_state = \"{}\"\n\n",
            state + 1
        ));
    }
    rules.push_str(&format!(
        "[inject-error]\nstate = \"{n}\"\nevent = \"pwritev\"\nerrno = \"5\"\nonce = \"on\"\n"
    ));
    rules
}

/// The disks of the main test boot.
const MAIN_DISKS: &[DiskSpec] = &[
    DiskSpec::plain("scratch0", 64, ""),
    DiskSpec::plain("scratch1", 16, ""),
    DiskSpec::plain("mq", 16, "num-queues=4"),
    DiskSpec::plain("lba4k", 16, "logical_block_size=4096,physical_block_size=4096"),
    DiskSpec {
        serial: "ro",
        mib: 4,
        props: "",
        read_only: true,
        fail_nth_write: None,
        fill: Fill::ReadOnlyPattern,
    },
];

/// The machines the kernel suites run on.
pub const PROFILES: &[KernelProfile] = &[
    KernelProfile { name: "kernel", append: "", filter: None, disks: MAIN_DISKS },
    KernelProfile {
        name: "kernel-irq",
        append: "blkirq",
        filter: Some("conformance::"),
        disks: &[DiskSpec::plain("scratch0", 64, "")],
    },
    KernelProfile {
        name: "kernel-blkdebug",
        append: "blkdebug",
        filter: Some("blkdebug::"),
        disks: &[DiskSpec {
            serial: "faulty",
            mib: 16,
            props: "",
            read_only: false,
            // kernel/src/ktest/blkdebug_tests.rs expects the 10th write to fail.
            fail_nth_write: Some(10),
            fill: Fill::Zero,
        }],
    },
];

/// The kernel filter for profile `p` under the user's filter, or `None` to skip the boot.
pub fn profile_filter(p: &KernelProfile, user: &str) -> Option<String> {
    match p.filter {
        None => Some(user.to_string()),
        Some(pf) if user.is_empty() || pf.contains(user) => Some(pf.to_string()),
        Some(pf) if user.contains(pf) => Some(user.to_string()),
        Some(_) => None,
    }
}

/// Writes the read-only pattern (see [`Fill::ReadOnlyPattern`]) of `bytes` bytes.
fn ro_pattern(bytes: u64) -> Vec<u8> {
    let mut v: Vec<u8> = (0..bytes).map(|i| ((i / 512) * 7 + 3 + i % 512) as u8).collect();
    v[..16].copy_from_slice(b"FOLIAGE-RO-IMAGE");
    v
}

fn machine(kernel: &std::path::Path, p: &KernelProfile, append: String, o: &Options) -> Result<Machine> {
    let mut disks = Vec::new();
    for spec in p.disks {
        let image = build::image(&format!("{}-{}", p.name, spec.serial), spec.mib << 20)?;
        if spec.fill == Fill::ReadOnlyPattern {
            std::fs::write(&image, ro_pattern(spec.mib << 20))?;
        }
        let mut d = Disk::new(image, spec.serial);
        d.props = spec.props.to_string();
        d.read_only = spec.read_only;
        if let Some(n) = spec.fail_nth_write {
            let path = build::image_dir()?.join(format!("{}-{}.blkdebug.conf", p.name, spec.serial));
            std::fs::write(&path, blkdebug_fail_nth_write(n))?;
            d.blkdebug = Some(path);
        }
        disks.push(d);
    }
    Ok(Machine { kernel: kernel.into(), append, disks, memory_mib: 1024, accel: o.accel })
}

/// Checks a kernel test boot: every test line, the closing line, the exit status.
fn judge(name: &str, outcome: &qemu::Outcome) -> Tally {
    let mut t = Tally::default();
    let mut closing = None;
    for line in &outcome.lines {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((test, result)) = rest.rsplit_once(" ... ") {
                if result.starts_with("ok") {
                    t.passed += 1;
                } else if result.starts_with("FAILED") {
                    t.failed.push(format!("{name}: {test}"));
                }
            }
        }
        if let Some(c) = parse_closing_line(line) {
            closing = Some(c);
        }
    }
    match closing {
        None => t
            .problems
            .push(format!("{name}: no closing `N passed, N failed` line ({})", outcome.status.describe())),
        Some((p, f)) if p != t.passed || f != t.failed.len() => t.problems.push(format!(
            "{name}: closing line says {p} passed, {f} failed; saw {} and {}",
            t.passed,
            t.failed.len()
        )),
        _ => {}
    }
    if outcome.status != Status::Pass && t.failed.is_empty() {
        t.problems.push(format!("{name}: {} (log: {})", outcome.status.describe(), outcome.log.display()));
    }
    t
}

/// The corpus cases whose test name (`replay_<mode>_<case>`) matches `filter`.
fn replay_cases(mode: &str, filter: &str) -> Result<Vec<(replay::Case, String)>> {
    Ok(replay::corpus_cases()?
        .into_iter()
        .filter(|(c, _)| format!("replay_{mode}_{}", c.name).contains(filter))
        .collect())
}

/// One result line per replayed case.
fn judge_replays(mode: &str, cases: &[(replay::Case, String)], results: &[replay::Replayed]) -> Tally {
    let mut t = Tally::default();
    for ((case, expected), r) in cases.iter().zip(results) {
        let name = format!("replay_{mode}_{}", case.name);
        match replay::judge(r, expected) {
            Ok(()) => {
                println!("test {name} ... ok");
                t.passed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED: {e}");
                t.failed.push(format!("{mode}: {name}"));
            }
        }
    }
    t
}

/// Every corpus case replayed on the host (in this process, over a RamDisk) against Linux's
/// expected output.
fn replay_host_stage(filter: &str) -> Result<Tally> {
    let cases = replay_cases("host", filter)?;
    let results: Vec<replay::Replayed> = cases.iter().map(|(c, _)| replay::on_host(c)).collect();
    Ok(judge_replays("host", &cases, &results))
}

/// Every corpus case replayed in one kernel boot against Linux's expected output.
fn replay_kernel_stage(o: &Options) -> Result<Tally> {
    let cases = replay_cases("kernel", &o.filter)?;
    if cases.is_empty() {
        return Ok(Tally::default());
    }
    let plain: Vec<replay::Case> = cases.iter().map(|(c, _)| c.clone()).collect();
    let (results, _) = replay::in_kernel(&plain, o)?;
    Ok(judge_replays("kernel", &cases, &results))
}

fn kernel_stage(o: &Options) -> Result<Tally> {
    println!("== kernel tests (QEMU, {:?}) ==", o.accel);
    let kernel = build::kernel(Profile::Ktest, &[])?;
    let mut total = Tally::default();
    for p in PROFILES {
        let Some(filter) = profile_filter(p, &o.filter) else { continue };
        let mut append = format!("mode=test {}", p.append);
        if !filter.is_empty() {
            append.push_str(&format!(" filter={filter}"));
        }
        let m = machine(&kernel, p, append, o)?;
        let outcome = qemu::run(&m, p.name, o.timeout, true)?;
        total.add(judge(p.name, &outcome));
    }
    total.add(replay_kernel_stage(o)?);
    println!("kernel: {} passed, {} failed", total.passed, total.failed_count());
    Ok(total)
}

/// Boots the deliberately failing tests and checks that each fails the run, by name.
fn selfcheck_stage(o: &Options) -> Result<Tally> {
    println!("== harness self-check (deliberately failing kernel tests must fail the run) ==");
    let kernel = build::kernel(Profile::Ktest, &[])?;
    let mut t = Tally::default();
    let cases = [
        ("deliberate_failure", Status::Fail, "FAILED"),
        ("deliberate_panic", Status::Panic, "PANIC:"),
        ("deliberate_page_fault", Status::Exception, "EXCEPTION: vector 14 (#PF page fault)"),
    ];
    for (test, want, marker) in cases {
        let p = &PROFILES[0];
        let m = machine(&kernel, p, format!("mode=test selfcheck filter=selfcheck::{test}"), o)?;
        let outcome = qemu::run(&m, &format!("selfcheck-{test}"), o.timeout, false)?;
        let verdict = judge("selfcheck", &outcome);
        let named = verdict.failed.iter().any(|f| f.ends_with(&format!("selfcheck::{test}")));
        let marked = outcome.lines.iter().any(|l| l.contains(marker));
        let name = format!("xtask::selfcheck::{test}_fails_the_run");
        if outcome.status == want && named && marked && verdict.problems.is_empty() {
            t.passed += 1;
            println!("test {name} ... ok");
        } else {
            println!(
                "test {name} ... FAILED: status {:?} (want {want:?}), test named as failed: {named}, \
                 `{marker}` printed: {marked}, problems: {:?} (log: {})",
                outcome.status,
                verdict.problems,
                outcome.log.display()
            );
            t.failed.push(name);
        }
    }
    println!("self-check: {} passed, {} failed", t.passed, t.failed_count());
    Ok(t)
}

/// `cargo xtask test [FILTER] [--accel kvm|tcg] [--timeout SECS]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    qemu::ensure_qemu()?;
    let host = host_stage(&o.filter)?;
    let kernel = kernel_stage(&o)?;
    let selfcheck = if o.filter.is_empty() || "selfcheck".contains(&o.filter) {
        selfcheck_stage(&o)?
    } else {
        Tally::default()
    };
    let mut all = Tally::default();
    println!("== summary ==");
    for (stage, t) in [("host", host), ("kernel", kernel), ("self-check", selfcheck)] {
        println!("{stage}: {} passed, {} failed", t.passed, t.failed_count());
        all.add(t);
    }
    for f in &all.failed {
        println!("failed: {f}");
    }
    for p in &all.problems {
        println!("problem: {p}");
    }
    println!("{} passed, {} failed", all.passed, all.failed_count());
    if all.failed_count() > 0 {
        return Err(format!("{} failures", all.failed_count()).into());
    }
    if all.passed == 0 {
        return Err(format!("no test matched the filter {:?}", o.filter).into());
    }
    Ok(())
}
