//! Foliage drivers: the block layer and the devices under it.
//!
//! This crate is the bottom of the Foliage stack and is `no_std` + `alloc`. It owns:
//!
//! - [`errno`]: the errno-like error every Foliage call returns;
//! - [`platform`]: the [`Platform`](platform::Platform) trait, the porting surface a kernel
//!   implements once (DMA-able memory, a clock, how to wait);
//! - [`block`]: the [`BlockDevice`](block::BlockDevice) trait, bios, the request layer
//!   ([`Queue`](block::Queue): splitting, merging, plugging, flush sequencing), blocking helpers
//!   and the test doubles (RamDisk, fault injection, crash recording);
//! - `virtio` (feature `virtio`): a deep-queue virtio-blk driver built on virtio-drivers.
//!
//! Nothing here is global: every device and buffer hangs off instances the kernel creates.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod block;
pub mod errno;
pub mod platform;
pub mod selftest;
#[cfg(any(test, feature = "virtio"))]
pub mod virtio;

pub use errno::{Errno, Result};
