//! Flags of the file API, with Linux's values: [`OpenFlags`] (`O_*`) and [`Whence`]
//! (`SEEK_DATA` / `SEEK_HOLE`). Fallocate modes are in [`falloc`](super::falloc).
//!
//! Owns no state; no locks. Linux <-> here: `include/uapi/asm-generic/fcntl.h`, `lseek(2)`;
//! no deviation in values.

use crate::{Errno, Result};

bitflags::bitflags! {
    /// `open(2)` flags (x86-64 values). The access mode is the low two bits: no bit = read only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct OpenFlags: u32 {
        /// Write only.
        const WRONLY = 0o1;
        /// Read and write.
        const RDWR = 0o2;
        /// Create if missing.
        const CREAT = 0o100;
        /// With CREAT: fail with `EEXIST` if it exists.
        const EXCL = 0o200;
        /// Truncate to 0 on open (with write access).
        const TRUNC = 0o1000;
        /// Every write appends.
        const APPEND = 0o2000;
        /// Data (and the metadata to read it) durable when a write returns.
        const DSYNC = 0o10000;
        /// Direct I/O: aligned to the device's logical block size.
        const DIRECT = 0o40000;
        /// As DSYNC, plus all inode metadata (Linux `__O_SYNC | O_DSYNC`).
        const SYNC = 0o4010000;
    }
}

impl OpenFlags {
    /// Read only (no bit set).
    pub const RDONLY: OpenFlags = OpenFlags::empty();

    /// Whether reads are allowed.
    pub fn readable(self) -> bool {
        !self.contains(OpenFlags::WRONLY)
    }

    /// Whether writes are allowed.
    pub fn writable(self) -> bool {
        self.intersects(OpenFlags::WRONLY | OpenFlags::RDWR)
    }

    /// Checks the flags: unknown bits or both access-mode bits are `EINVAL`.
    pub fn validate(bits: u32) -> Result<OpenFlags> {
        let f = OpenFlags::from_bits(bits).ok_or(Errno::EINVAL)?;
        if f.contains(OpenFlags::WRONLY | OpenFlags::RDWR) {
            return Err(Errno::EINVAL);
        }
        Ok(f)
    }
}

/// The `lseek(2)` modes the file API offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    /// `SEEK_DATA` (3): the first data at or after the offset.
    Data = 3,
    /// `SEEK_HOLE` (4): the first hole at or after the offset (end of file counts as a hole).
    Hole = 4,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_have_linux_values_and_validate() {
        assert_eq!(OpenFlags::SYNC.bits(), 0o4010000);
        assert!(OpenFlags::SYNC.contains(OpenFlags::DSYNC));
        assert_eq!(OpenFlags::DIRECT.bits(), 0o40000);
        assert!(OpenFlags::RDONLY.readable() && !OpenFlags::RDONLY.writable());
        assert!(!OpenFlags::WRONLY.readable() && OpenFlags::WRONLY.writable());
        assert!(OpenFlags::RDWR.readable() && OpenFlags::RDWR.writable());
        assert_eq!(OpenFlags::validate(0o3), Err(Errno::EINVAL));
        assert_eq!(OpenFlags::validate(1 << 30), Err(Errno::EINVAL));
        assert_eq!(OpenFlags::validate(0o102), Ok(OpenFlags::RDWR | OpenFlags::CREAT));
    }
}
