//! The data pattern writes carry and the FNV-1a 64 hash outputs print.

/// FNV-1a 64 offset basis (the hash of zero bytes).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 hash over `data`.
pub fn fnv1a64(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Fills `buf` with the bytes op `k` writes at absolute offset `off`:
/// byte at offset `o` is `((o + 31 * k) % 251) + 1` (never 0).
pub fn fill(buf: &mut [u8], off: u64, k: u64) {
    let mut v = ((off + 31 * k) % 251) as u8;
    for b in buf {
        *b = v + 1;
        v = if v == 250 { 0 } else { v + 1 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_of_nothing_is_the_offset_basis() {
        assert_eq!(fnv1a64(FNV_OFFSET, &[]), 0xcbf29ce484222325);
        // Reference value: FNV-1a 64 of "a".
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn pattern_matches_the_formula() {
        let mut buf = [0u8; 600];
        fill(&mut buf, 1000, 7);
        for (i, &b) in buf.iter().enumerate() {
            assert_eq!(b as u64, ((1000 + i as u64 + 31 * 7) % 251) + 1);
        }
    }
}
