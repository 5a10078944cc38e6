//! CRC32C (Castagnoli), the checksum on every frond metadata block and journal record.
//!
//! Owns: a table-driven (slice-by-8) CRC32C (reflected polynomial 0x82F63B78, initial value
//! and final xor 0xFFFFFFFF), the same function Linux exposes as `crc32c()` and that XFS, ext4
//! and btrfs use for metadata. No locks.
//!
//! Lock order: no locks (pure functions and plain values).
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `crc32c(seed, buf, len)` (lib/crc32.c, arch-accelerated) | [`Crc32c`] / [`crc32c`] (portable slice-by-8 tables) |
//! | `xfs_start_cksum_safe` (checksum with the CRC field skipped) | [`crc32c_skip`] |

/// Slice-by-8 tables for the reflected Castagnoli polynomial, built at compile time:
/// `TABLES[0]` is the classic byte table, `TABLES[k][b]` advances `TABLES[k-1][b]` by one
/// more zero byte.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static TABLE: &[u32; 256] = &TABLES[0];

/// A running CRC32C computation.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c {
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32c {
    /// A fresh computation.
    pub const fn new() -> Self {
        Self { state: 0xFFFF_FFFF }
    }

    /// Feeds `bytes` (eight at a time, then the tail byte by byte).
    pub fn update(mut self, bytes: &[u8]) -> Self {
        let mut c = self.state;
        let n = bytes.len() & !7;
        let mut i = 0;
        // Plain element indexing: cheap in unoptimised (test) builds too.
        while i < n {
            let lo = c
                ^ (bytes[i] as u32
                    | (bytes[i + 1] as u32) << 8
                    | (bytes[i + 2] as u32) << 16
                    | (bytes[i + 3] as u32) << 24);
            c = TABLES[7][(lo & 0xFF) as usize]
                ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
                ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
                ^ TABLES[4][(lo >> 24) as usize]
                ^ TABLES[3][bytes[i + 4] as usize]
                ^ TABLES[2][bytes[i + 5] as usize]
                ^ TABLES[1][bytes[i + 6] as usize]
                ^ TABLES[0][bytes[i + 7] as usize];
            i += 8;
        }
        while i < bytes.len() {
            c = TABLE[((c ^ bytes[i] as u32) & 0xFF) as usize] ^ (c >> 8);
            i += 1;
        }
        self.state = c;
        self
    }

    /// Feeds `n` zero bytes.
    pub fn update_zeros(mut self, n: usize) -> Self {
        let mut c = self.state;
        for _ in 0..n {
            c = TABLE[(c & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = c;
        self
    }

    /// The checksum of everything fed so far.
    pub const fn finish(self) -> u32 {
        self.state ^ 0xFFFF_FFFF
    }
}

/// CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    Crc32c::new().update(bytes).finish()
}

/// CRC32C of `bytes` with the 4-byte field at `skip` read as zeros (how a block that stores its
/// own checksum is summed).
pub fn crc32c_skip(bytes: &[u8], skip: usize) -> u32 {
    debug_assert!(skip + 4 <= bytes.len());
    Crc32c::new().update(&bytes[..skip]).update_zeros(4).update(&bytes[skip + 4..]).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 (iSCSI) appendix B.4 test vectors and the classic check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn skip_equals_zeroed_field() {
        let mut b: [u8; 64] = core::array::from_fn(|i| (i * 13) as u8);
        let s = crc32c_skip(&b, 4);
        b[4..8].fill(0);
        assert_eq!(s, crc32c(&b));
        assert_eq!(Crc32c::new().update(&b[..10]).update(&b[10..]).finish(), crc32c(&b));
    }
}
