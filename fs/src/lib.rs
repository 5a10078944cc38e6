//! Foliage filesystem subsystem (`no_std` + `alloc`).
//!
//! Layers, bottom up (each module documents what it owns, its lock order, and how it maps to
//! Linux): the page cache, the iomap engine, the frond filesystem, the file API a kernel calls,
//! and the portable self-test suites.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub use foliage_drivers::{block, errno, platform, Errno, Result};

pub mod frond;
pub mod iomap;
pub mod pagecache;
pub mod replay;
pub mod selftest;
pub mod vfs;
