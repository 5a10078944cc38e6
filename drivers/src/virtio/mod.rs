//! A deep-queue virtio-blk driver on virtio-drivers' transport and virtqueue (feature `virtio`).
//!
//! virtio-drivers' own `VirtIOBlk` uses one queue of 16 descriptors, one data buffer per
//! request, and no DISCARD or WRITE_ZEROES. This driver keeps the crate's transports and
//! `VirtQueue` and builds the request layer itself:
//!
//! - every hardware queue the device offers (`VIRTIO_BLK_F_MQ`, up to [`Options::max_queues`])
//!   at the size the device offers (QEMU: 256, up to [`MAX_QUEUE_SIZE`]), one request slot per
//!   descriptor, indirect descriptors when offered so every slot can be in flight;
//! - scatter-gather up to the device's `seg_max` (capped at `BIO_MAX_SEGMENTS`), FLUSH, FUA as
//!   write + flush, PREFLUSH, DISCARD and WRITE_ZEROES when offered, GET_ID (the serial names
//!   the disk), `BLK_SIZE` and topology;
//! - completion by polling the used rings ([`BlockDevice::poll`](crate::block::BlockDevice)),
//!   with doorbells batched ([`Options::kick_batch`]), or by interrupt as an option
//!   ([`VirtioBlk::enable_interrupts`], MSI-X on PCI);
//! - no allocation per request in the driver: request slots (with a copy of the segments in
//!   use, never the whole 1.6 KiB bio) and completion batches are fixed-size, `heapless` where
//!   the size is static. virtio-drivers' indirect tables are the exception (see the notes).
//!
//! It is a *strict* [`BlockDevice`](crate::block::BlockDevice): bios beyond its limits fail with
//! `EINVAL` (a `Queue` in front splits and merges). DMA memory for the driver's own headers
//! comes from the kernel's [`Platform`](crate::platform::Platform); ring memory comes from the
//! kernel's virtio-drivers `Hal`, whose `share` translation must agree with
//! [`Platform::dma_address`](crate::platform::Platform::dma_address) (checked at setup).
//!
//! Files: [`config`] (features, configuration space, limits), [`wire`] (request format and the
//! per-bio plan), `ring` (the virtqueue of a run-time size), `queue` (one hardware queue: slots
//! and steps), [`setup`] (probe and options), [`device`] (the `BlockDevice` implementation
//! across queues), [`irq`] (the interrupt option), [`pci`] (PCI probe and MSI-X).
//!
//! Lock order: a queue lock or the transport lock, never both; then `PciMsix`'s
//! configuration lock inside the transport lock. Completions run with no lock held.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `drivers/block/virtio_blk.c` | this module |
//! | blk-mq hardware queue (`hctx`) + its tags | a hardware queue: virtqueue + request slots |
//! | `virtio_queue_rq` / `virtblk_done` | `submit` / `poll` and [`VirtioBlk::handle_interrupt`] |
//! | `blk_mq_map_queues` | round-robin over queues with a free slot |
//! | `virtblk_get_id` | [`VirtioBlk::serial`] |
//!
//! Deliberate deviations: no CPU-to-queue affinity, no request timeouts, no
//! `VIRTIO_F_EVENT_IDX` and no `CONFIG_WCE` (see [`config`]); FUA/PREFLUSH are honoured inside
//! the driver (see [`wire`]).
//!
//! # Notes on virtio-drivers 0.13
//!
//! - `VirtQueue::add` takes virtual slices and translates them with `Hal::share`; our segments
//!   already carry physical addresses, which are not used. A `VirtQueue::add_phys(&[(u64, u32,
//!   BufferDirection)])` would let a driver pass them.
//! - With indirect descriptors, `add` allocates a `Box<[Descriptor]>` per request (the one
//!   allocation on our hot path; `Options::indirect = false` avoids it, at the price of direct
//!   chains: a queue of 256 then holds 85 single-segment requests, or 3 of 64 segments). The
//!   `_direct_desc` bench rows measure the cost: 5-10 % of 4 KiB IOPS at queue depth 32 under
//!   TCG. Indirect stays the default so every slot can be in flight whatever its segment count.
//!   A caller-provided indirect table (e.g. `add_indirect_in(&mut self, table: &mut
//!   [Descriptor], ...)` with `Descriptor` made public, the table owned by our request slot)
//!   would make it allocation-free.
//! - `should_notify` with `EVENT_IDX` compares indices without wrap-around (Linux's
//!   `vring_need_event` is `(u16)(new - event - 1) < (u16)(new - old)`), so we do not
//!   negotiate `EVENT_IDX`; and `add` lacks the full barrier Linux has before reading the
//!   device's notification flags (`virtqueue_kick_prepare`'s `virtio_mb`), which we issue.
//! - `PciTransport` has no MSI-X support and hides the common configuration; [`pci`] writes
//!   `queue_msix_vector` itself (a `PciTransport::set_queue_msix_vector(queue, vector) -> u16`
//!   would remove that).

pub mod config;
pub mod device;
pub mod irq;
pub mod pci;
mod queue;
mod ring;
pub mod setup;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{BlkConfig, BlkFeatures};
pub use device::{QueueStats, Stats, VirtioBlk};
pub use irq::{InterruptRouting, IrqControl, MsiMessage};
pub use pci::{probe, PciMsix};
pub use ring::MAX_QUEUE_SIZE;
pub use setup::Options;
