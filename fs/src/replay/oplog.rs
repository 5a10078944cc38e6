//! The op-log parser (`fs/oracle/FORMAT.md`, "Op log").
//!
//! Every line is checked as `apply.py` checks it: unknown ops and tokens, missing numbers,
//! tokens on ops they do not apply to, and `direct` ops that are not 512-aligned are errors with
//! the line number. Numbers are parsed like C `strtoul(s, NULL, 0)` with the whole token
//! consumed (`0x` hex, a leading `0` octal, else decimal).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// An op the replayer executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `write OFF LEN SIZE`
    Write,
    /// `write_atomic OFF LEN SIZE`
    WriteAtomic,
    /// `read OFF LEN SIZE`
    Read,
    /// `truncate 0 NEW SIZE`
    Truncate,
    /// `fallocate OFF LEN SIZE [keep_size] [unshare]`
    Fallocate,
    /// `punch_hole OFF LEN SIZE`
    PunchHole,
    /// `zero_range OFF LEN SIZE [keep_size]`
    ZeroRange,
    /// `collapse_range OFF LEN SIZE`
    CollapseRange,
    /// `insert_range OFF LEN SIZE`
    InsertRange,
    /// `fsync 0 0 SIZE`
    Fsync,
    /// `clone_range SRC LEN DST SIZE`
    CloneRange,
    /// `dedupe_range SRC LEN DST SIZE`
    DedupeRange,
    /// `copy_range SRC LEN DST SIZE`
    CopyRange,
    /// `exchange_range ...` (never executed: ENOTSUP)
    ExchangeRange,
}

impl OpKind {
    /// The op's name in the log and the output.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::WriteAtomic => "write_atomic",
            OpKind::Read => "read",
            OpKind::Truncate => "truncate",
            OpKind::Fallocate => "fallocate",
            OpKind::PunchHole => "punch_hole",
            OpKind::ZeroRange => "zero_range",
            OpKind::CollapseRange => "collapse_range",
            OpKind::InsertRange => "insert_range",
            OpKind::Fsync => "fsync",
            OpKind::CloneRange => "clone_range",
            OpKind::DedupeRange => "dedupe_range",
            OpKind::CopyRange => "copy_range",
            OpKind::ExchangeRange => "exchange_range",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "write" => OpKind::Write,
            "write_atomic" => OpKind::WriteAtomic,
            "read" => OpKind::Read,
            "truncate" => OpKind::Truncate,
            "fallocate" => OpKind::Fallocate,
            "punch_hole" => OpKind::PunchHole,
            "zero_range" => OpKind::ZeroRange,
            "collapse_range" => OpKind::CollapseRange,
            "insert_range" => OpKind::InsertRange,
            "fsync" => OpKind::Fsync,
            "clone_range" => OpKind::CloneRange,
            "dedupe_range" => OpKind::DedupeRange,
            "copy_range" => OpKind::CopyRange,
            "exchange_range" => OpKind::ExchangeRange,
            _ => return None,
        })
    }

    /// How many numbers the op takes.
    pub fn nargs(self) -> usize {
        match self {
            OpKind::CloneRange | OpKind::DedupeRange | OpKind::CopyRange | OpKind::ExchangeRange => 4,
            _ => 3,
        }
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// 1-based op number among non-blank, non-comment lines.
    pub k: u64,
    /// Source line number.
    pub line: u32,
    /// The op name as written (for `skip` lines any word).
    pub name: String,
    /// The parsed op; `None` only for a `skip` line with an unknown name.
    pub kind: Option<OpKind>,
    /// A `skip` line: nothing is executed.
    pub skip: bool,
    /// The numbers (unused ones 0).
    pub args: [u64; 4],
    /// `keep_size` token.
    pub keep_size: bool,
    /// `unshare` token.
    pub unshare: bool,
    /// `close_open` token.
    pub close_open: bool,
    /// `direct` token.
    pub direct: bool,
}

/// A parsed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpLog {
    /// `# mode: direct` on line 1.
    pub direct_mode: bool,
    /// The ops in order.
    pub ops: Vec<Op>,
}

/// A malformed log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: u32,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// Parses like C `strtoul(s, &end, 0)` requiring the whole token to be consumed.
pub fn parse_num(tok: &str) -> Option<u64> {
    let t = tok.to_ascii_lowercase();
    if let Some(hex) = t.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

fn token_allowed(token: &str, kind: OpKind) -> bool {
    match token {
        "keep_size" => matches!(kind, OpKind::Fallocate | OpKind::ZeroRange | OpKind::PunchHole),
        "unshare" => kind == OpKind::Fallocate,
        "direct" => matches!(kind, OpKind::Read | OpKind::Write),
        "close_open" | "*" => true,
        _ => false,
    }
}

/// Parses a whole log.
pub fn parse(text: &str) -> Result<OpLog, ParseError> {
    let mut log = OpLog { direct_mode: false, ops: Vec::new() };
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i as u32 + 1;
        let err = |msg: String| ParseError { line: lineno, msg };
        let line = raw.trim();
        if lineno == 1 {
            if let Some(mode) = line.strip_prefix('#').map(str::trim).and_then(|b| b.strip_prefix("mode:")) {
                match mode.trim() {
                    "direct" => log.direct_mode = true,
                    "buffered" => {}
                    m => return Err(err(alloc::format!("unknown mode {m:?}"))),
                }
            }
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut toks = line.split_ascii_whitespace().peekable();
        let skip = toks.peek() == Some(&"skip");
        if skip {
            toks.next();
        }
        let name = toks.next().ok_or_else(|| err("skip without op name".into()))?;
        let mut op = Op {
            k: log.ops.len() as u64 + 1,
            line: lineno,
            name: name.to_string(),
            kind: OpKind::from_name(name),
            skip,
            args: [0; 4],
            keep_size: false,
            unshare: false,
            close_open: false,
            direct: false,
        };
        if skip {
            log.ops.push(op);
            continue;
        }
        let kind = op.kind.ok_or_else(|| err(alloc::format!("unsupported op {name:?}")))?;
        for slot in 0..kind.nargs() {
            let t =
                toks.next().ok_or_else(|| err(alloc::format!("{name} needs {} numbers", kind.nargs())))?;
            op.args[slot] = parse_num(t).ok_or_else(|| err(alloc::format!("bad number {t:?}")))?;
        }
        for t in toks {
            if !token_allowed(t, kind) {
                return Err(err(alloc::format!("token {t:?} not valid on {name}")));
            }
            match t {
                "keep_size" => op.keep_size = true,
                "unshare" => op.unshare = true,
                "close_open" => op.close_open = true,
                "direct" => op.direct = true,
                _ => {}
            }
        }
        if op.direct && (!op.args[0].is_multiple_of(512) || !op.args[1].is_multiple_of(512)) {
            return Err(err("direct op not 512-aligned".into()));
        }
        log.ops.push(op);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_strtoul_base_0() {
        assert_eq!(parse_num("0x1f"), Some(31));
        assert_eq!(parse_num("0X1F"), Some(31));
        assert_eq!(parse_num("017"), Some(15));
        assert_eq!(parse_num("0"), Some(0));
        assert_eq!(parse_num("42"), Some(42));
        assert_eq!(parse_num("0x"), None);
        assert_eq!(parse_num("12a"), None);
        assert_eq!(parse_num("09"), None);
    }

    #[test]
    fn ops_are_numbered_counting_skips_but_not_comments() {
        let log = parse(
            "# mode: direct\n# profile: x\n\nskip collapse_range 0x1 0x2 0x3\nwrite 0x0 0x200 0x0 *\n\
             clone_range 0x0 0x1000 0x2000 0x3000\nfallocate 0 1 2 keep_size unshare close_open\n",
        )
        .unwrap();
        assert!(log.direct_mode);
        let ks: Vec<_> = log.ops.iter().map(|o| (o.k, o.name.as_str(), o.skip)).collect();
        assert_eq!(
            ks,
            [
                (1, "collapse_range", true),
                (2, "write", false),
                (3, "clone_range", false),
                (4, "fallocate", false)
            ]
        );
        assert_eq!(log.ops[2].args, [0, 0x1000, 0x2000, 0x3000]);
        let f = &log.ops[3];
        assert!(f.keep_size && f.unshare && f.close_open && !f.direct);
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let cases = [
            ("frobnicate 1 2 3", "unsupported op"),
            ("write 1 2", "needs 3 numbers"),
            ("write 1 zz 3", "bad number"),
            ("write 0 512 0 keep_size", "not valid on write"),
            ("read 0 100 0 direct", "512-aligned"),
            ("truncate 0 1 2 bogus", "not valid on truncate"),
            ("skip", "skip without op name"),
        ];
        for (text, want) in cases {
            let e = parse(&alloc::format!("# c\n{text}\n")).unwrap_err();
            assert_eq!(e.line, 2, "{text}");
            assert!(e.msg.contains(want), "{text}: {}", e.msg);
        }
        assert!(parse("# mode: sideways\n").unwrap_err().msg.contains("unknown mode"));
    }
}
