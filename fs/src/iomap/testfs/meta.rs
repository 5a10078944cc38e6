//! The test filesystem's on-disk metadata: one checksummed record of every file (id, committed
//! size, inline bytes, allocated extents) written at the start of the device by each commit,
//! read back at mount.
//!
//! Layout (little endian): magic `b"FOLMEMFS"`, version `u32`, file count `u32`, body length
//! `u64`, FNV-1a 64 checksum of the body `u64`, then per file: id, size (`u64`), inline length
//! (`u32`, `u32::MAX` = not inline) and bytes, extent count (`u32`) and per extent: first block,
//! length (`u64`), kind (`u8`: 1 written, 2 unwritten), boundary (`u8`), disk block (`u64`).
//! Delayed allocations are not persistent and never written.
//!
//! Decoding checks every length against the buffer: a corrupt record gives `EUCLEAN`, a device
//! without the magic `EINVAL`; nothing panics.
//!
//! Locking: none (pure functions). Linux <-> here: none (a test double's superblock).

use alloc::vec::Vec;

use super::extents::{ExtKind, Extent};
use crate::{Errno, Result};

const MAGIC: &[u8; 8] = b"FOLMEMFS";
const VERSION: u32 = 1;
const HEADER: usize = 32;

/// One file as committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// File id.
    pub id: u64,
    /// Committed (on-disk) size.
    pub size: u64,
    /// Inline bytes (the first `size` bytes of the file), if the file is inline.
    pub inline: Option<Vec<u8>>,
    /// Allocated extents (written or unwritten).
    pub extents: Vec<Extent>,
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Encodes `files`; `ENOSPC` when the record exceeds `capacity` bytes.
pub fn encode(files: &[FileRecord], capacity: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for f in files {
        body.extend_from_slice(&f.id.to_le_bytes());
        body.extend_from_slice(&f.size.to_le_bytes());
        match &f.inline {
            Some(b) => {
                body.extend_from_slice(&(b.len() as u32).to_le_bytes());
                body.extend_from_slice(b);
            }
            None => body.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        let exts: Vec<&Extent> = f.extents.iter().filter(|e| e.kind.disk().is_some()).collect();
        body.extend_from_slice(&(exts.len() as u32).to_le_bytes());
        for e in exts {
            let (kind, disk) = match e.kind {
                ExtKind::Mapped(d) => (1u8, d),
                ExtKind::Unwritten(d) => (2u8, d),
                ExtKind::Delalloc => continue,
            };
            body.extend_from_slice(&e.start.to_le_bytes());
            body.extend_from_slice(&e.len.to_le_bytes());
            body.push(kind);
            body.push(e.boundary as u8);
            body.extend_from_slice(&disk.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a(&body).to_le_bytes());
    out.extend_from_slice(&body);
    if out.len() > capacity {
        return Err(Errno::ENOSPC);
    }
    Ok(out)
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Errno::EUCLEAN)?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}

/// Decodes a metadata record (`buf` may be longer than the record).
pub fn decode(buf: &[u8]) -> Result<Vec<FileRecord>> {
    if buf.len() < HEADER || &buf[..8] != MAGIC {
        return Err(Errno::EINVAL);
    }
    let mut c = Cursor { buf, at: 8 };
    if c.u32()? != VERSION {
        return Err(Errno::EINVAL);
    }
    let nfiles = c.u32()?;
    let body_len = usize::try_from(c.u64()?).map_err(|_| Errno::EUCLEAN)?;
    let sum = c.u64()?;
    let body = c.take(body_len)?;
    if fnv1a(body) != sum {
        return Err(Errno::EUCLEAN);
    }
    let mut c = Cursor { buf: body, at: 0 };
    let mut files = Vec::new();
    for _ in 0..nfiles {
        let id = c.u64()?;
        let size = c.u64()?;
        let inline = match c.u32()? {
            u32::MAX => None,
            n => Some(c.take(n as usize)?.to_vec()),
        };
        let n = c.u32()?;
        let mut extents = Vec::new();
        for _ in 0..n {
            let start = c.u64()?;
            let len = c.u64()?;
            let kind = c.u8()?;
            let boundary = c.u8()? != 0;
            let disk = c.u64()?;
            let kind = match kind {
                1 => ExtKind::Mapped(disk),
                2 => ExtKind::Unwritten(disk),
                _ => return Err(Errno::EUCLEAN),
            };
            if len == 0 || start.checked_add(len).is_none() || disk.checked_add(len).is_none() {
                return Err(Errno::EUCLEAN);
            }
            extents.push(Extent { start, len, kind, boundary });
        }
        files.push(FileRecord { id, size, inline, extents });
    }
    if c.at != body.len() {
        return Err(Errno::EUCLEAN);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip_and_corruption() {
        let files = vec![
            FileRecord { id: 1, size: 60, inline: Some(vec![7; 60]), extents: vec![] },
            FileRecord {
                id: 2,
                size: 9000,
                inline: None,
                extents: vec![
                    Extent { start: 0, len: 2, kind: ExtKind::Mapped(40), boundary: false },
                    Extent { start: 2, len: 1, kind: ExtKind::Unwritten(90), boundary: true },
                ],
            },
        ];
        let buf = encode(&files, 4096).unwrap();
        assert_eq!(decode(&buf).unwrap(), files);
        assert_eq!(encode(&files, 64), Err(Errno::ENOSPC));
        assert_eq!(decode(&[0u8; 64]), Err(Errno::EINVAL));
        let mut bad = buf.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&bad), Err(Errno::EUCLEAN));
        assert_eq!(decode(&buf[..buf.len() - 3]), Err(Errno::EUCLEAN));
    }
}
