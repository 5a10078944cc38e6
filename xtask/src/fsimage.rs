//! `cargo xtask mkfs <image> [--block-size N] [--size N]` and `cargo xtask fsck <image>`: the
//! frond tools, built on the host from the same crate the kernel runs.

use std::path::Path;

use foliage_fs::frond::host::{fsck_image, mkfs_image};
use foliage_fs::frond::MkfsOptions;

use crate::util::Result;

/// Parses a byte count with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let (num, shift) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 10),
        Some('M') => (&s[..s.len() - 1], 20),
        Some('G') => (&s[..s.len() - 1], 30),
        Some('T') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} too large").into())
}

/// Formats `image`.
pub fn mkfs(image: &Path, block_size: u32, size: Option<u64>) -> Result<()> {
    let opts = MkfsOptions { block_size, ..MkfsOptions::default() };
    if size.is_none() && !image.exists() {
        return Err(format!("{} does not exist: give --size", image.display()).into());
    }
    mkfs_image(image, size, &opts).map_err(|e| format!("mkfs {}: {e}", image.display()))?;
    Ok(())
}

/// `cargo xtask mkfs`.
pub fn mkfs_cmd(args: &[String]) -> Result<()> {
    let mut image = None;
    let mut block_size = 4096u32;
    let mut size = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--block-size" => {
                let v = it.next().ok_or("--block-size needs a value")?;
                block_size = u32::try_from(parse_size(v)?).map_err(|_| "block size too large")?;
            }
            "--size" => size = Some(parse_size(it.next().ok_or("--size needs a value")?)?),
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            s => image = Some(s.to_string()),
        }
    }
    let image = image.ok_or("usage: cargo xtask mkfs <image> [--block-size N] [--size N]")?;
    mkfs(Path::new(&image), block_size, size)?;
    println!("mkfs: {image}: frond, {block_size}-byte blocks");
    Ok(())
}

/// `cargo xtask fsck`: prints every problem; fails unless the filesystem is clean.
pub fn fsck_cmd(args: &[String]) -> Result<()> {
    let [image] = args else { return Err("usage: cargo xtask fsck <image>".into()) };
    let report = fsck_image(Path::new(image)).map_err(|e| format!("fsck {image}: {e}"))?;
    for p in &report.problems {
        println!("problem: {p}");
    }
    println!(
        "fsck: {image}: {} problems, {} inodes, {} directories",
        report.problems.len(),
        report.inodes,
        report.directories
    );
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("{} problems", report.problems.len()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("256m").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn mkfs_then_fsck_is_clean_and_corruption_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-mkfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("fs.img");
        for bs in [1024u32, 4096, 65536] {
            mkfs(&img, bs, Some(32 << 20)).unwrap();
            let r = fsck_image(&img).unwrap();
            assert!(r.is_clean(), "block size {bs}: {:?}", r.problems);
            assert_eq!(r.directories, 1, "only the root directory");
        }
        // Flip a byte in the root block area (block 2 of a 64 KiB filesystem): fsck must say so.
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[2 * 65536 + 100] ^= 0xFF;
        std::fs::write(&img, &bytes).unwrap();
        let r = fsck_image(&img).unwrap();
        assert!(!r.is_clean(), "a corrupted root block went unnoticed");
        assert!(mkfs(&dir.join("missing.img"), 4096, None).is_err(), "no size and no file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
