//! Finding (or installing) QEMU, building its command line, and running the kernel in it with a
//! timeout, the serial console streamed live and saved under `target/qemu/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{root, Result};

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: works everywhere (the default).
    Tcg,
    /// Hardware virtualization, for real hosts.
    Kvm,
}

/// A virtio-blk disk to attach.
#[derive(Clone, Debug)]
pub struct Disk {
    /// Raw image file.
    pub image: PathBuf,
    /// The virtio serial (GET_ID), which the kernel uses as the device's name.
    pub serial: String,
    /// Extra `virtio-blk-pci` properties, e.g. `num-queues=4,logical_block_size=4096`.
    pub props: String,
    /// Attach read-only.
    pub read_only: bool,
    /// A blkdebug rules file to inject errors through.
    pub blkdebug: Option<PathBuf>,
}

impl Disk {
    /// A plain read-write disk.
    pub fn new(image: PathBuf, serial: &str) -> Self {
        Self { image, serial: serial.into(), props: String::new(), read_only: false, blkdebug: None }
    }
}

/// One QEMU boot.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// Kernel command line.
    pub append: String,
    /// Disks, in PCI slot order.
    pub disks: Vec<Disk>,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Accelerator.
    pub accel: Accel,
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// isa-debug-exit pass code.
    Pass,
    /// The kernel reported a failed test.
    Fail,
    /// A CPU exception ended the run.
    Exception,
    /// A panic ended the run.
    Panic,
    /// QEMU exited some other way (0 after a triple fault under -no-reboot, or an error).
    Other(i32),
    /// Killed after the timeout.
    Timeout,
}

impl Status {
    /// A sentence for the user.
    pub fn describe(&self) -> String {
        match self {
            Status::Pass => "passed (isa-debug-exit pass code)".into(),
            Status::Fail => "kernel reported failure".into(),
            Status::Exception => "a CPU exception ended the run".into(),
            Status::Panic => "a kernel panic ended the run".into(),
            Status::Other(0) => "QEMU exited 0 without the pass code (triple fault or reset?)".into(),
            Status::Other(c) => format!("QEMU exited with status {c} without the pass code"),
            Status::Timeout => "timed out".into(),
        }
    }
}

/// The result of a boot.
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// Every console line.
    pub lines: Vec<String>,
    /// Milliseconds from QEMU start to the `KTEST-START` marker, if seen.
    pub first_test_ms: Option<f64>,
    /// The saved log.
    pub log: PathBuf,
}

/// The QEMU binary, installing Debian's package when missing and allowed.
pub fn ensure_qemu() -> Result<PathBuf> {
    if let Some(p) = which("qemu-system-x86_64") {
        return Ok(p);
    }
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    if is_root && which("apt-get").is_some() {
        eprintln!("xtask: QEMU not found; installing Debian's qemu-system-x86 with apt-get (one time)");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends", "qemu-system-x86"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !install() {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
            install();
        }
        if let Some(p) = which("qemu-system-x86_64") {
            return Ok(p);
        }
        return Err("installing qemu-system-x86 failed; install it and retry".into());
    }
    Err("QEMU (qemu-system-x86_64) is not installed. Install it with:\n    sudo apt-get install qemu-system-x86".into())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn args(m: &Machine) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-machine".into(),
        "q35".into(),
        "-m".into(),
        format!("{}M", m.memory_mib),
        "-nodefaults".into(),
        "-no-reboot".into(),
        "-display".into(),
        "none".into(),
        "-vga".into(),
        "none".into(),
        "-net".into(),
        "none".into(),
        "-serial".into(),
        "stdio".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
        "-kernel".into(),
        m.kernel.display().to_string(),
        "-append".into(),
        m.append.clone(),
    ];
    match m.accel {
        Accel::Tcg => a.extend(["-accel".into(), "tcg".into()]),
        Accel::Kvm => a.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]),
    }
    for (i, d) in m.disks.iter().enumerate() {
        let file = match &d.blkdebug {
            Some(rules) => format!(
                "driver=blkdebug,config={},image.driver=raw,image.file.driver=file,image.file.filename={}",
                rules.display(),
                d.image.display()
            ),
            None => format!("file={},format=raw", d.image.display()),
        };
        let ro = if d.read_only { ",read-only=on" } else { "" };
        a.extend(["-drive".into(), format!("{file},if=none,id=disk{i},cache=unsafe{ro}")]);
        let props = if d.props.is_empty() { String::new() } else { format!(",{}", d.props) };
        a.extend(["-device".into(), format!("virtio-blk-pci,drive=disk{i},serial={}{props}", d.serial)]);
    }
    a
}

/// Boots `m`, streaming the console (when `echo`) and saving it as `target/qemu/<name>.log`.
pub fn run(m: &Machine, name: &str, timeout: Duration, echo: bool) -> Result<Outcome> {
    let qemu = ensure_qemu()?;
    let dir = root().join("target/qemu");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join(format!("{name}.log"));
    let mut file = std::fs::File::create(&log)?;
    let start = Instant::now();
    let mut child = Command::new(&qemu)
        .args(args(m))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line.trim_end_matches('\r').to_string());
            }
        }),
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                let _ = tx2.send(format!("qemu: {line}"));
            }
        }),
    ];
    let deadline = start + timeout;
    let mut lines = Vec::new();
    let mut first_test_ms = None;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                if first_test_ms.is_none() && line == "KTEST-START" {
                    first_test_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                }
                if echo {
                    println!("{line}");
                }
                writeln!(file, "{line}")?;
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= deadline {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    let code = child.wait()?.code();
    for r in readers {
        let _ = r.join();
    }
    let status = if timed_out {
        let msg = format!("xtask: QEMU run `{name}` timed out after {} s; killed", timeout.as_secs());
        eprintln!("{msg}");
        writeln!(file, "{msg}")?;
        Status::Timeout
    } else {
        match code {
            Some(33) => Status::Pass,
            Some(35) => Status::Fail,
            Some(37) => Status::Exception,
            Some(39) => Status::Panic,
            Some(c) => Status::Other(c),
            None => Status::Other(-1),
        }
    };
    Ok(Outcome { status, lines, first_test_ms, log })
}
