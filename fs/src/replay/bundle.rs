//! The op-log disk: several op logs in one disk image, as `cargo xtask replay` hands them to
//! the kernel (`mode=replay`).
//!
//! The first [`INDEX_BYTES`] are a text index: `FOLIAGE-OPLOGS 1`, then one `NAME OFFSET LENGTH`
//! line per log (decimal; NAME without whitespace), then `END`, zero-padded. Each log's bytes
//! start at a 4 KiB-aligned byte offset after the index. The image is padded to a whole MiB.
//! [`image`] writes the format and [`parse_index`] reads it back.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Bytes of the index at the start of the disk.
pub const INDEX_BYTES: usize = 4096;
const MAGIC: &str = "FOLIAGE-OPLOGS 1";

/// Where one log is on the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The log's name.
    pub name: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Builds the disk image holding `logs` (name, text). A name with whitespace, or more logs than
/// the index holds, is an error with the reason.
pub fn image(logs: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    let mut index = String::from(MAGIC);
    index.push('\n');
    let mut data = Vec::new();
    for (name, text) in logs {
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(alloc::format!("op log name {name:?} is empty or has whitespace"));
        }
        let offset = INDEX_BYTES + data.len();
        index.push_str(&alloc::format!("{name} {offset} {}\n", text.len()));
        data.extend_from_slice(text.as_bytes());
        data.resize(data.len().next_multiple_of(4096), 0);
    }
    index.push_str("END\n");
    if index.len() > INDEX_BYTES {
        return Err(alloc::format!("too many op logs for one index ({} bytes)", index.len()));
    }
    let mut img = index.into_bytes();
    img.resize(INDEX_BYTES, 0);
    img.extend_from_slice(&data);
    img.resize(img.len().next_multiple_of(1 << 20), 0);
    Ok(img)
}

/// Reads the index (the disk's first [`INDEX_BYTES`]); `disk_bytes` bounds the entries.
pub fn parse_index(index: &[u8], disk_bytes: u64) -> Result<Vec<Entry>, String> {
    let text = core::str::from_utf8(index).map_err(|_| "the index is not text".to_string())?;
    let mut lines = text.trim_end_matches('\0').lines();
    if lines.next() != Some(MAGIC) {
        return Err(alloc::format!("no `{MAGIC}` header: not an op-log disk"));
    }
    let mut entries = Vec::new();
    for line in lines {
        if line == "END" {
            return Ok(entries);
        }
        let bad = || alloc::format!("bad index line {line:?}");
        let mut w = line.split(' ');
        let (Some(name), Some(off), Some(len), None) = (w.next(), w.next(), w.next(), w.next()) else {
            return Err(bad());
        };
        let offset: u64 = off.parse().map_err(|_| bad())?;
        let len: u64 = len.parse().map_err(|_| bad())?;
        if name.is_empty() || offset < INDEX_BYTES as u64 || offset.saturating_add(len) > disk_bytes {
            return Err(bad());
        }
        entries.push(Entry { name: name.to_string(), offset, len });
    }
    Err("the index has no END line".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trips_through_the_index() {
        let big = "x".repeat(5000);
        let img = image(&[("a", "write 0x0 0x10 0x0\n"), ("b", &big)]).unwrap();
        assert_eq!(img.len(), 1 << 20);
        let index = core::str::from_utf8(&img[..INDEX_BYTES]).unwrap().trim_end_matches('\0');
        assert_eq!(index, "FOLIAGE-OPLOGS 1\na 4096 19\nb 8192 5000\nEND\n");
        let e = parse_index(&img[..INDEX_BYTES], img.len() as u64).unwrap();
        assert_eq!(
            e,
            [
                Entry { name: "a".into(), offset: 4096, len: 19 },
                Entry { name: "b".into(), offset: 8192, len: 5000 }
            ]
        );
        assert_eq!(&img[8192..8192 + 5000], big.as_bytes());
    }

    #[test]
    fn bad_images_and_indexes_are_errors() {
        assert!(image(&[("a b", "")]).unwrap_err().contains("whitespace"));
        let many: Vec<(String, String)> =
            (0..400).map(|i| (alloc::format!("log-{i}"), String::new())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(image(&refs).unwrap_err().contains("too many"));
        assert!(parse_index(b"hello\n", 1 << 20).unwrap_err().contains("not an op-log disk"));
        assert!(parse_index(b"FOLIAGE-OPLOGS 1\na 4096 10\n", 1 << 20).unwrap_err().contains("no END"));
        assert!(parse_index(b"FOLIAGE-OPLOGS 1\na 4096 x\nEND\n", 1 << 20)
            .unwrap_err()
            .contains("bad index"));
        assert!(parse_index(b"FOLIAGE-OPLOGS 1\na 4096 9999999\nEND\n", 1 << 20).is_err());
        assert!(parse_index(b"FOLIAGE-OPLOGS 1\na 0 10\nEND\n", 1 << 20).is_err());
    }
}
