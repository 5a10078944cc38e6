//! Op-log replay: fsx's record format, run against a file, printed in the oracle's output format.
//!
//! `fs/oracle/FORMAT.md` is the specification. This module owns the parts that do not depend on
//! a filesystem: the op-log parser ([`oplog`]), the data pattern and FNV-1a hash ([`pattern`]),
//! the runner that turns ops into calls and calls into output lines ([`runner`]), and the
//! [`ReplayTarget`] trait a file implementation provides. [`MemTarget`] is the byte-level
//! reference model of the format (the same semantics as `fs/oracle/model.py`): it checks the
//! parser and runner against Linux's expected outputs independently of any filesystem.
//!
//! [`frond`] is the target over the frond file API and the whole fresh-filesystem run both
//! `cargo xtask replay` modes use; [`bundle`] is the op-log disk that carries logs to the kernel.
//!
//! It is `no_std` + `alloc`, so the kernel replays the same logs over virtio-blk.
//!
//! # Linux <-> here
//!
//! | fsx / Linux | here |
//! |---|---|
//! | `fsx --replay-ops` record format | [`oplog::parse`] |
//! | `pwrite`/`pread` (+ `O_DIRECT`), `fallocate` modes, `FICLONERANGE`, `FIDEDUPERANGE`, `copy_file_range`, `fsync` | [`ReplayTarget`] methods |
//! | close, `syncfs`, `drop_caches`, reopen | [`ReplayTarget::close_open`] |

pub mod bundle;
pub mod frond;
pub mod model;
pub mod oplog;
pub mod pattern;
pub mod runner;
mod target;

pub use frond::{replay_fresh, FreshError, FreshOptions, FrondTarget};
pub use model::MemTarget;
pub use oplog::{Op, OpKind, OpLog, ParseError};
pub use runner::{replay, ReplayReport};
pub use target::ReplayTarget;

#[cfg(test)]
mod frond_tests;
#[cfg(test)]
mod tests;
