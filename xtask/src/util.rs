//! Small helpers: the error type, the repository root, running cargo.

use std::path::PathBuf;
use std::process::Command;

/// xtask's error: a message for the user.
pub type Error = Box<dyn std::error::Error>;
/// xtask's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository root (the workspace directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, failing with `what` if it does not succeed.
pub fn run_checked(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed ({status})").into());
    }
    Ok(())
}

/// Parses `N passed, M failed` exactly.
pub fn parse_closing_line(line: &str) -> Option<(usize, usize)> {
    let (p, f) = line.split_once(" passed, ")?;
    let f = f.strip_suffix(" failed")?;
    Some((p.parse().ok()?, f.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_line_is_parsed_exactly() {
        assert_eq!(parse_closing_line("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(parse_closing_line("0 passed, 3 failed"), Some((0, 3)));
        assert_eq!(parse_closing_line("12 passed; 0 failed"), None);
        assert_eq!(parse_closing_line("test x ... ok"), None);
    }
}
