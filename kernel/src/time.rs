//! The clock: the TSC, calibrated at boot against the PIT (channel 2, one-shot, 10 ms).
//!
//! `now_ns` converts ticks with a precomputed 32.32 fixed-point multiplier (no division on the
//! hot path).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::rdtsc;
use crate::io::{inb, outb};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static NS_MULT: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;

/// Calibrates the TSC; returns its frequency in Hz.
pub fn init() -> u64 {
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
    let count = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    // Gate channel 2 on, speaker off; channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count).
    outb(0x61, (inb(0x61) & !0x02) | 0x01);
    outb(0x43, 0xB0);
    outb(0x42, count as u8);
    outb(0x42, (count >> 8) as u8);
    let t0 = rdtsc();
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 1 << 32 {
            break; // no PIT: fall back below
        }
    }
    let t1 = rdtsc();
    let mut hz = (t1 - t0) * 1000 / CALIBRATION_MS;
    if hz < 1_000_000 {
        hz = 1_000_000_000; // implausible: assume 1 GHz rather than divide by ~0
    }
    TSC_HZ.store(hz, Ordering::Relaxed);
    NS_MULT.store((1_000_000_000u128 << 32).div_ceil(hz as u128) as u64, Ordering::Relaxed);
    hz
}

/// TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot (monotonic).
pub fn now_ns() -> u64 {
    let ticks = rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed));
    ((ticks as u128 * NS_MULT.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = now_ns() + us * 1000;
    while now_ns() < end {
        core::hint::spin_loop();
    }
}
