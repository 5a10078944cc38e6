//! The runner: each op becomes calls on a [`ReplayTarget`] and one output line, exactly as the
//! oracle prints it (`fs/oracle/FORMAT.md`, "Expected output").

use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use super::oplog::{Op, OpKind, OpLog};
use super::pattern::{fill, fnv1a64, FNV_OFFSET};
use super::target::ReplayTarget;
use crate::{Errno, Result};

/// What a replay did besides printing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Ops executed (not skipped).
    pub executed: usize,
    /// Ops that returned an error line.
    pub errors: usize,
    /// Ops whose recorded size-before differs from the file's size: (k, recorded, actual).
    pub size_mismatches: Vec<(u64, u64, u64)>,
    /// The final size.
    pub final_size: u64,
    /// The final FNV-1a 64 of the whole file.
    pub final_fnv: u64,
}

const FINAL_CHUNK: usize = 1 << 20;

fn read_full(t: &mut dyn ReplayTarget, off: u64, buf: &mut [u8], direct: bool) -> Result<usize> {
    let mut got = 0;
    // Like apply.py: a direct read stops at a short, unaligned return; a buffered one at EOF.
    while got < buf.len() && (!direct || got % 512 == 0) {
        let n = t.read(off + got as u64, &mut buf[got..], direct)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

fn execute(
    op: &Op,
    kind: OpKind,
    direct_mode: bool,
    t: &mut dyn ReplayTarget,
    line: &mut alloc::string::String,
) -> Result<()> {
    let a = op.args;
    let direct = direct_mode || op.direct;
    match kind {
        OpKind::Write | OpKind::WriteAtomic => {
            let mut data = vec![0u8; a[1] as usize];
            fill(&mut data, a[0], op.k);
            if kind == OpKind::WriteAtomic {
                t.write_atomic(a[0], &data)?;
            } else {
                t.write(a[0], &data, direct)?;
            }
            line.push_str("ok");
        }
        OpKind::Read => {
            let mut buf = vec![0u8; a[1] as usize];
            let n = read_full(t, a[0], &mut buf, direct)?;
            let _ = write!(line, "ok len={} fnv={:016x}", n, fnv1a64(FNV_OFFSET, &buf[..n]));
        }
        OpKind::Truncate => {
            t.truncate(a[1])?;
            line.push_str("ok");
        }
        OpKind::Fallocate => {
            t.fallocate(a[0], a[1], op.keep_size, op.unshare)?;
            line.push_str("ok");
        }
        OpKind::PunchHole => {
            t.punch_hole(a[0], a[1])?;
            line.push_str("ok");
        }
        OpKind::ZeroRange => {
            t.zero_range(a[0], a[1], op.keep_size)?;
            line.push_str("ok");
        }
        OpKind::CollapseRange => {
            t.collapse_range(a[0], a[1])?;
            line.push_str("ok");
        }
        OpKind::InsertRange => {
            t.insert_range(a[0], a[1])?;
            line.push_str("ok");
        }
        OpKind::Fsync => {
            t.fsync()?;
            line.push_str("ok");
        }
        OpKind::CloneRange => {
            t.clone_range(a[0], a[1], a[2])?;
            line.push_str("ok");
        }
        OpKind::DedupeRange => {
            let same = t.dedupe_range(a[0], a[1], a[2])?;
            line.push_str(if same { "ok same" } else { "ok differs" });
        }
        OpKind::CopyRange => {
            // copy_file_range is repeated until LEN bytes or a 0-byte step.
            let mut done = 0;
            while done < a[1] {
                let n = t.copy_range(a[0] + done, a[1] - done, a[2] + done)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            let _ = write!(line, "ok len={done}");
        }
        OpKind::ExchangeRange => return Err(Errno::EOPNOTSUPP),
    }
    Ok(())
}

/// Replays `log` on `t`, writing one line per op and the final line to `out`.
///
/// An op that fails prints `err ERRNO` and the replay goes on. A failure of a `close_open`
/// (or of the final close/reopen/read) ends the replay with that error: the output would no
/// longer describe the file.
pub fn replay(log: &OpLog, t: &mut dyn ReplayTarget, out: &mut dyn Write) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut line = alloc::string::String::new();
    for op in &log.ops {
        line.clear();
        let _ = write!(line, "op {} {} ", op.k, op.name);
        match (op.skip, op.kind) {
            (true, _) | (false, None) => line.push_str("skip"),
            (false, Some(OpKind::ExchangeRange)) => line.push_str("err ENOTSUP"),
            (false, Some(kind)) => {
                report.executed += 1;
                let recorded = op.args[kind.nargs() - 1];
                let actual = t.size()?;
                if recorded != actual {
                    report.size_mismatches.push((op.k, recorded, actual));
                }
                let mark = line.len();
                if let Err(e) = execute(op, kind, log.direct_mode, t, &mut line) {
                    line.truncate(mark);
                    let _ = write!(line, "err {}", e.name());
                    report.errors += 1;
                }
                if op.close_open {
                    t.close_open()?;
                }
            }
        }
        let _ = writeln!(out, "{line}");
    }
    t.close_open()?;
    let size = t.size()?;
    let mut h = FNV_OFFSET;
    let mut buf = vec![0u8; FINAL_CHUNK.min(size as usize).max(1)];
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(buf.len() as u64) as usize;
        let n = read_full(t, pos, &mut buf[..want], false)?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        h = fnv1a64(h, &buf[..n]);
        pos += n as u64;
    }
    report.final_size = size;
    report.final_fnv = h;
    let _ = writeln!(out, "final size={size} fnv={h:016x}");
    Ok(report)
}
