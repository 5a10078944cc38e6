//! `cargo xtask replay <ops> [--host] [--expect <file>]`: replays an op log
//! (`fs/oracle/FORMAT.md`) on a fresh frond filesystem (4 KiB blocks) and prints the output
//! format exactly on stdout (progress goes to stderr). By default the log runs in the kernel
//! over virtio-blk; `--host` runs it in this process over a RamDisk. Both modes call
//! `foliage_fs::replay::replay_fresh` on a scratch disk of the same size, so they print the
//! same output. `--expect` compares with an expected output and exits non-zero at the first
//! difference, naming the line, what was expected and what came; without it the exit code says
//! only whether the replay could run.
//!
//! Kernel transport: the logs travel on a virtio disk named `oplogs`
//! (`foliage_fs::replay::bundle` format); the kernel (`mode=replay`) formats `scratch0` for
//! each log and prints its output between `REPLAY-BEGIN NAME` and `REPLAY-END NAME ok` (or
//! `REPLAY-END NAME error: REASON`), which [`extract`] takes out of the console log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foliage_drivers::block::{BlockDevice, RamDisk};
use foliage_drivers::platform::StdPlatform;
use foliage_fs::replay::{bundle, oplog, replay_fresh, FreshOptions};

use crate::build::{self, Profile};
use crate::qemu::{self, Disk, Machine};
use crate::test::Options;
use crate::util::Result;

/// Size of the scratch disk each log is replayed on (host RamDisk and kernel `scratch0`).
pub const SCRATCH_BYTES: u64 = 256 << 20;

/// One op log to replay.
#[derive(Clone, Debug)]
pub struct Case {
    /// Name (no whitespace).
    pub name: String,
    /// The log's text.
    pub ops: String,
}

impl Case {
    /// Reads `path`; the name is the file stem (whitespace becomes `_`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let ops = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let name = path.file_stem().and_then(|s| s.to_str()).ok_or("op log path has no file name")?;
        let name: String = name.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect();
        Ok(Self { name, ops })
    }
}

/// What one replay produced: its output lines, or why it could not run (with the lines it
/// printed before stopping).
pub type Replayed = std::result::Result<Vec<String>, (String, Vec<String>)>;

/// Replays `case` in this process over a RamDisk.
pub fn on_host(case: &Case) -> Replayed {
    let log = oplog::parse(&case.ops).map_err(|e| (format!("{e}"), vec![]))?;
    let dev: Arc<dyn BlockDevice> =
        Arc::new(RamDisk::new(SCRATCH_BYTES, 512).map_err(|e| (format!("RamDisk: {e}"), vec![]))?);
    let mut out = String::new();
    let r = replay_fresh(dev, StdPlatform::arc(), &log, FreshOptions::default(), &mut out);
    let lines = out.lines().map(str::to_string).collect();
    match r {
        Ok(_) => Ok(lines),
        Err(e) => Err((format!("{e}"), lines)),
    }
}

/// Extracts each case's output from a console log.
pub fn extract(console: &[String], cases: &[Case]) -> Vec<Replayed> {
    cases
        .iter()
        .map(|c| {
            let begin = format!("REPLAY-BEGIN {}", c.name);
            let end = format!("REPLAY-END {} ", c.name);
            let Some(start) = console.iter().position(|l| *l == begin) else {
                return Err(("the kernel never started this log".into(), vec![]));
            };
            let mut lines = Vec::new();
            for l in &console[start + 1..] {
                if let Some(rest) = l.strip_prefix(&end) {
                    return if rest == "ok" { Ok(lines) } else { Err((rest.to_string(), lines)) };
                }
                lines.push(l.clone());
            }
            Err(("the kernel never finished this log".into(), lines))
        })
        .collect()
}

/// Replays `cases` in one kernel boot; also returns the boot's log path.
pub fn in_kernel(cases: &[Case], o: &Options) -> Result<(Vec<Replayed>, PathBuf)> {
    let kernel = build::kernel(Profile::Ktest, &[])?;
    let oplogs = build::image("replay-oplogs", 0)?;
    let logs: Vec<(&str, &str)> = cases.iter().map(|c| (c.name.as_str(), c.ops.as_str())).collect();
    std::fs::write(&oplogs, bundle::image(&logs)?)?;
    let m = Machine {
        kernel,
        append: "mode=replay".into(),
        disks: vec![
            Disk::new(oplogs, "oplogs"),
            Disk::new(build::image("replay-scratch0", SCRATCH_BYTES)?, "scratch0"),
        ],
        memory_mib: 1024,
        accel: o.accel,
    };
    let out = qemu::run(&m, "replay", o.timeout, false)?;
    for l in out.lines.iter().filter(|l| l.starts_with("replay: ")) {
        eprintln!("{l}");
    }
    let mut r = extract(&out.lines, cases);
    if out.status != qemu::Status::Pass {
        // A log the kernel finished is still judged; the others say how the boot ended.
        let why = format!("the boot {} (log: {})", out.status.describe(), out.log.display());
        for x in &mut r {
            if let Err((reason, _)) = x {
                *reason = format!("{reason}; {why}");
            }
        }
    }
    Ok((r, out.log))
}

/// The first difference between `got` and `want`, as a message.
pub fn first_difference(got: &[String], want: &str) -> Option<String> {
    let want: Vec<&str> = want.lines().collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g != w {
            return Some(format!("line {}: expected `{w}`, got `{g}`", i + 1));
        }
    }
    match got.len().cmp(&want.len()) {
        std::cmp::Ordering::Less => {
            Some(format!("line {}: expected `{}`, got the end of the output", got.len() + 1, want[got.len()]))
        }
        std::cmp::Ordering::Greater => Some(format!(
            "line {}: expected the end of the output, got `{}`",
            want.len() + 1,
            got[want.len()]
        )),
        std::cmp::Ordering::Equal => None,
    }
}

/// Judges one replay against an expected output: `Ok` or the reason it fails.
pub fn judge(r: &Replayed, expected: &str) -> std::result::Result<(), String> {
    match r {
        Ok(lines) => first_difference(lines, expected).map_or(Ok(()), Err),
        Err((why, _)) => Err(format!("the replay did not finish: {why}")),
    }
}

/// The corpus directory.
pub fn corpus() -> PathBuf {
    crate::util::root().join("fs/oracle/cases")
}

/// Every case of the corpus with its expected output, sorted by name.
pub fn corpus_cases() -> Result<Vec<(Case, String)>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(corpus())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "ops") {
            let case = Case::from_file(&path)?;
            let expected = std::fs::read_to_string(path.with_extension("expected"))
                .map_err(|e| format!("{}: no expected output: {e}", path.display()))?;
            v.push((case, expected));
        }
    }
    v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(v)
}

/// `cargo xtask replay <ops> [--host] [--expect <file>] [--accel kvm|tcg] [--timeout SECS]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let mut host = false;
    let mut expect = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--host" => host = true,
            "--expect" => expect = Some(PathBuf::from(it.next().ok_or("--expect needs a file")?)),
            _ => rest.push(a.clone()),
        }
    }
    let mut o = Options::parse(&rest)?;
    if !rest.iter().any(|a| a == "--timeout") {
        o.timeout = Duration::from_secs(900);
    }
    if o.filter.is_empty() {
        return Err(
            "usage: cargo xtask replay <ops> [--host] [--expect <file>] [--accel kvm|tcg] [--timeout SECS]"
                .into(),
        );
    }
    let case = Case::from_file(Path::new(&o.filter))?;
    let expected = match &expect {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?),
        None => None,
    };
    oplog::parse(&case.ops).map_err(|e| format!("{}: {e}", o.filter))?;
    let t0 = Instant::now();
    let r = if host {
        eprintln!("xtask: replaying {} on the host (RamDisk, frond 4 KiB blocks)", case.name);
        on_host(&case)
    } else {
        eprintln!(
            "xtask: replaying {} in the kernel (QEMU {:?}, virtio-blk, frond 4 KiB blocks)",
            case.name, o.accel
        );
        let (mut r, _) = in_kernel(std::slice::from_ref(&case), &o)?;
        r.remove(0)
    };
    eprintln!("xtask: replay took {:.1} s", t0.elapsed().as_secs_f64());
    let lines = match &r {
        Ok(l) | Err((_, l)) => l,
    };
    let stop = match &expected {
        Some(want) => {
            let want_lines: Vec<&str> = want.lines().collect();
            lines.iter().zip(&want_lines).position(|(g, w)| g != w).map_or(lines.len(), |i| i + 1)
        }
        None => lines.len(),
    };
    for l in &lines[..stop] {
        println!("{l}");
    }
    if let Err((why, _)) = &r {
        return Err(format!("the replay did not finish: {why}").into());
    }
    if let Some(want) = &expected {
        if let Some(d) = first_difference(lines, want) {
            return Err(format!("output differs from {}: {d}", expect.unwrap_or_default().display()).into());
        }
        eprintln!("xtask: output matches {}", expect.unwrap_or_default().display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kernel_output_is_split_per_log() {
        let console = s(&[
            "boot",
            "REPLAY-BEGIN a",
            "op 1 write ok",
            "final size=16 fnv=0",
            "REPLAY-END a ok",
            "REPLAY-BEGIN b",
            "op 1 write ok",
            "REPLAY-END b error: fsck after the replay: 1 problem(s)",
            "REPLAY-BEGIN d",
            "op 1 read ok",
        ]);
        let cases: Vec<Case> =
            ["a", "b", "c", "d"].iter().map(|n| Case { name: n.to_string(), ops: String::new() }).collect();
        let r = extract(&console, &cases);
        assert_eq!(r[0], Ok(s(&["op 1 write ok", "final size=16 fnv=0"])));
        assert_eq!(r[1], Err(("error: fsck after the replay: 1 problem(s)".into(), s(&["op 1 write ok"]))));
        assert_eq!(r[2], Err(("the kernel never started this log".into(), vec![])));
        assert_eq!(r[3], Err(("the kernel never finished this log".into(), s(&["op 1 read ok"]))));
    }

    #[test]
    fn first_difference_names_the_line_expected_and_got() {
        let got = s(&["a", "b"]);
        assert_eq!(first_difference(&got, "a\nb\n"), None);
        assert_eq!(first_difference(&got, "a\nc\n").unwrap(), "line 2: expected `c`, got `b`");
        assert_eq!(
            first_difference(&got, "a\nb\nc\n").unwrap(),
            "line 3: expected `c`, got the end of the output"
        );
        assert_eq!(first_difference(&got, "a\n").unwrap(), "line 2: expected the end of the output, got `b`");
        assert_eq!(judge(&Err(("boom".into(), got)), "a\n").unwrap_err(), "the replay did not finish: boom");
    }

    #[test]
    fn host_replay_of_a_small_log_matches_the_model() {
        let case = Case { name: "t".into(), ops: "write 0x0 0x3 0x0\nread 0x0 0x3 0x3\n".into() };
        let log = oplog::parse(&case.ops).unwrap();
        let mut model = String::new();
        foliage_fs::replay::replay(&log, &mut foliage_fs::replay::MemTarget::new(), &mut model).unwrap();
        let got = on_host(&case).unwrap();
        assert_eq!(first_difference(&got, &model), None);
        assert_eq!(got.len(), 3);
    }
}
