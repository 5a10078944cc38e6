//! On-disk format primitives shared by every frond structure: byte order helpers, the common
//! metadata block header, magic numbers, and the corruption report type.
//!
//! Every metadata block starts with the same 16-byte header (see `FORMAT.md`):
//!
//! ```text
//! 0  magic  u32  what the block is (one value per block type)
//! 4  crc    u32  CRC32C of the whole block with this field read as zero
//! 8  blkno  u64  the block's own address (catches misdirected reads and writes)
//! ```
//!
//! All integers are little-endian. Owns no state and takes no locks.
//!
//! Lock order: no locks (pure functions and plain values).
//!
//! # Linux <-> here
//!
//! | Linux (XFS) | here |
//! |---|---|
//! | `xfs_verify_cksum` / `xfs_update_cksum` | [`verify_header`] / [`seal`] |
//! | `struct xfs_btree_block` magic + `bb_blkno` self-address | the common header |
//! | `-EFSCORRUPTED` + `xfs_verifier_error` message | [`Corrupt`] (a reason string, becomes `EUCLEAN`) |

use alloc::string::String;
use core::fmt;

use super::crc32c::crc32c_skip;
use crate::Errno;

/// Byte offset of the magic in every metadata block.
pub const HDR_MAGIC: usize = 0;
/// Byte offset of the CRC32C in every metadata block.
pub const HDR_CRC: usize = 4;
/// Byte offset of the self-address in every metadata block.
pub const HDR_BLKNO: usize = 8;
/// Length of the common header.
pub const HDR_LEN: usize = 16;

/// Superblock magic ("FRSB").
pub const MAGIC_SUPER: u32 = u32::from_le_bytes(*b"FRSB");
/// Journal header magic ("FRJH").
pub const MAGIC_JHDR: u32 = u32::from_le_bytes(*b"FRJH");
/// Journal descriptor magic ("FRJD").
pub const MAGIC_JDESC: u32 = u32::from_le_bytes(*b"FRJD");
/// Journal commit record magic ("FRJC").
pub const MAGIC_JCOMMIT: u32 = u32::from_le_bytes(*b"FRJC");
/// Root (filesystem info) block magic ("FRRT").
pub const MAGIC_ROOT: u32 = u32::from_le_bytes(*b"FRRT");
/// B+tree node magic ("FRBT").
pub const MAGIC_BTREE: u32 = u32::from_le_bytes(*b"FRBT");
/// Inode magic ("FRIN"), at the start of every 512-byte inode.
pub const MAGIC_INODE: u32 = u32::from_le_bytes(*b"FRIN");

/// Smallest supported block size (log2).
pub const MIN_BLOCK_LOG: u32 = 10;
/// Largest supported block size (log2).
pub const MAX_BLOCK_LOG: u32 = 16;

/// Reads a little-endian u16 at `off`.
#[inline]
pub fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian u32 at `off`.
#[inline]
pub fn get32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 at `off`.
#[inline]
pub fn get64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Writes a little-endian u16 at `off`.
#[inline]
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u32 at `off`.
#[inline]
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u64 at `off`.
#[inline]
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A description of on-disk corruption: why a structure was refused. Converts to `EUCLEAN`
/// (Linux's `EFSCORRUPTED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt(pub String);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Corrupt> for Errno {
    fn from(_: Corrupt) -> Errno {
        Errno::EUCLEAN
    }
}

/// The error of frond's internal operations: an errno, or corruption with its reason. Public
/// calls turn it into an [`Errno`] (`EUCLEAN` for corruption); mount keeps the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// An ordinary failure (ENOSPC, ENOENT, EIO, ...).
    Errno(Errno),
    /// The on-disk image is corrupt.
    Corrupt(Corrupt),
}

/// `Result` with frond's internal [`Error`].
pub type FResult<T> = Result<T, Error>;

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::Errno(e)
    }
}

impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt(c)
    }
}

impl From<Error> for Errno {
    fn from(e: Error) -> Errno {
        match e {
            Error::Errno(e) => e,
            Error::Corrupt(_) => Errno::EUCLEAN,
        }
    }
}

impl Error {
    /// The errno this error reports.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Errno(e) => *e,
            Error::Corrupt(_) => Errno::EUCLEAN,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Errno(e) => write!(f, "{e}"),
            Error::Corrupt(c) => write!(f, "corrupt: {c}"),
        }
    }
}

/// Builds a [`Corrupt`] from format arguments.
#[macro_export]
#[doc(hidden)]
macro_rules! frond_corrupt {
    ($($arg:tt)*) => { $crate::frond::format::Corrupt(alloc::format!($($arg)*)) };
}

/// Writes the header fields (magic, blkno) of a metadata block. The CRC is set by [`seal`].
pub fn init_header(b: &mut [u8], magic: u32, blkno: u64) {
    put32(b, HDR_MAGIC, magic);
    put32(b, HDR_CRC, 0);
    put64(b, HDR_BLKNO, blkno);
}

/// Computes and stores the block's CRC32C.
pub fn seal(b: &mut [u8]) {
    let c = crc32c_skip(b, HDR_CRC);
    put32(b, HDR_CRC, c);
}

/// Whether the block's stored CRC32C matches its contents.
pub fn crc_ok(b: &[u8]) -> bool {
    get32(b, HDR_CRC) == crc32c_skip(b, HDR_CRC)
}

/// Checks the common header: CRC first (a torn or garbage block), then magic, then
/// self-address. `what` names the structure in the message.
pub fn verify_header(b: &[u8], magic: u32, blkno: u64, what: &str) -> Result<(), Corrupt> {
    if b.len() < HDR_LEN {
        return Err(frond_corrupt!("{what} block {blkno}: too short"));
    }
    if get32(b, HDR_MAGIC) != magic {
        return Err(frond_corrupt!(
            "{what} block {blkno}: bad magic {:#010x} (expected {:#010x})",
            get32(b, HDR_MAGIC),
            magic
        ));
    }
    if !crc_ok(b) {
        return Err(frond_corrupt!("{what} block {blkno}: checksum mismatch"));
    }
    let self_addr = get64(b, HDR_BLKNO);
    if self_addr != blkno {
        return Err(frond_corrupt!("{what} block {blkno}: records its address as {self_addr}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn seal_and_verify_detects_each_fault() {
        let mut b = vec![0u8; 1024];
        init_header(&mut b, MAGIC_ROOT, 42);
        b[100] = 7;
        seal(&mut b);
        assert_eq!(verify_header(&b, MAGIC_ROOT, 42, "root"), Ok(()));
        let e = verify_header(&b, MAGIC_ROOT, 43, "root").unwrap_err();
        assert_eq!(e.0, "root block 43: records its address as 42");
        let e = verify_header(&b, MAGIC_BTREE, 42, "btree").unwrap_err();
        assert!(e.0.starts_with("btree block 42: bad magic"), "{}", e.0);
        b[500] ^= 1;
        assert_eq!(
            verify_header(&b, MAGIC_ROOT, 42, "root").unwrap_err().0,
            "root block 42: checksum mismatch"
        );
        assert_eq!(Errno::from(Corrupt(String::new())), Errno::EUCLEAN);
    }
}
