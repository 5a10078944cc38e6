//! One virtqueue of the size the device offers: virtio-drivers' `VirtQueue<H, SIZE>` behind an
//! object-safe [`Ring`] trait, so the queue size is chosen at probe time.
//!
//! Owns nothing but the dispatch: the ring memory belongs to the `VirtQueue` (allocated through
//! the kernel's `Hal`). Callers serialise access (the queue's lock).
//!
//! # Linux <-> here
//!
//! | Linux (`virtio_ring.c`) | here |
//! |---|---|
//! | `vring_create_virtqueue(num = device max)` | [`new_ring`] with the largest power of two the device and [`MAX_QUEUE_SIZE`] allow |
//! | `virtqueue_add_sgs` | [`Ring::add`] |
//! | `virtqueue_kick_prepare` (+ `virtio_mb`) | full fence, then [`Ring::should_notify`] |
//! | `virtqueue_get_buf` (any order) | [`Ring::peek_used`] + [`Ring::pop_used`] |
//! | `virtqueue_disable_cb` / `enable_cb` | [`Ring::set_interrupts`] |
//!
//! Deliberate deviation: with indirect descriptors virtio-drivers allocates the indirect table
//! with a `Box` per request (Linux: `kmalloc` per request too, with a fallback to direct
//! descriptors on failure). This is the one allocation on the hot path; `Options::indirect`
//! turns it off (direct chains: no allocation, fewer requests in flight for multi-segment I/O).

use alloc::boxed::Box;

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;

use crate::errno::{Errno, Result};

/// Largest queue the driver sets up (the device may offer more; 1024 is Linux's virtio-blk
/// default ceiling for `virtblk_queue_depth` too).
pub const MAX_QUEUE_SIZE: usize = 1024;

/// A virtqueue of some size (see the module docs).
pub(crate) trait Ring: Send {
    /// Number of descriptors (= request slots).
    fn size(&self) -> u16;

    /// Posts a descriptor chain: `inputs` device-readable, then `outputs` device-writable.
    /// Returns the token (head descriptor index) the device will hand back.
    ///
    /// # Safety
    ///
    /// The buffers stay valid and untouched by the CPU until [`Ring::pop_used`] returns their
    /// token, and the kernel's `Hal::share` translation of each equals its DMA address.
    unsafe fn add<'a, 'b>(
        &mut self,
        inputs: &'a [&'b [u8]],
        outputs: &'a mut [&'b mut [u8]],
    ) -> core::result::Result<u16, virtio_drivers::Error>;

    /// Whether the device asked to be notified of new buffers.
    fn should_notify(&self) -> bool;

    /// The token of the next used chain, if any.
    fn peek_used(&self) -> Option<u16>;

    /// Pops the next used chain, which must be `token` with exactly the buffers it was posted
    /// with; returns the number of bytes the device wrote.
    ///
    /// # Safety
    ///
    /// `inputs` and `outputs` are the buffers `token` was added with.
    unsafe fn pop_used<'a>(
        &mut self,
        token: u16,
        inputs: &'a [&'a [u8]],
        outputs: &'a mut [&'a mut [u8]],
    ) -> core::result::Result<u32, virtio_drivers::Error>;

    /// Asks the device for (or to suppress) used-buffer notifications (interrupts).
    fn set_interrupts(&mut self, on: bool);
}

impl<H: Hal + 'static, const SIZE: usize> Ring for VirtQueue<H, SIZE> {
    fn size(&self) -> u16 {
        SIZE as u16
    }

    unsafe fn add<'a, 'b>(
        &mut self,
        inputs: &'a [&'b [u8]],
        outputs: &'a mut [&'b mut [u8]],
    ) -> core::result::Result<u16, virtio_drivers::Error> {
        // SAFETY: forwarded: the caller upholds VirtQueue::add's contract.
        unsafe { VirtQueue::add(self, inputs, outputs) }
    }

    fn should_notify(&self) -> bool {
        VirtQueue::should_notify(self)
    }

    fn peek_used(&self) -> Option<u16> {
        VirtQueue::peek_used(self)
    }

    unsafe fn pop_used<'a>(
        &mut self,
        token: u16,
        inputs: &'a [&'a [u8]],
        outputs: &'a mut [&'a mut [u8]],
    ) -> core::result::Result<u32, virtio_drivers::Error> {
        // SAFETY: forwarded: the caller passes the buffers `token` was added with.
        unsafe { VirtQueue::pop_used(self, token, inputs, outputs) }
    }

    fn set_interrupts(&mut self, on: bool) {
        self.set_dev_notify(on)
    }
}

/// The queue size to use for a device offering `device_max` (0 = queue absent): the largest
/// power of two no bigger than the offer, `limit` and [`MAX_QUEUE_SIZE`].
pub(crate) fn pick_size(device_max: u32, limit: u16) -> Option<u16> {
    let cap = device_max.min(u32::from(limit)).min(MAX_QUEUE_SIZE as u32);
    (cap >= 4).then(|| 1u16 << (31 - cap.leading_zeros()))
}

/// Sets up queue `index` with `size` descriptors on `transport`.
pub(crate) fn new_ring<H: Hal + 'static, T: Transport>(
    transport: &mut T,
    index: u16,
    size: u16,
    indirect: bool,
) -> Result<Box<dyn Ring>> {
    macro_rules! sized {
        ($($n:literal)*) => {
            match size {
                $($n => VirtQueue::<H, $n>::new(transport, index, indirect, false)
                    .map(|q| Box::new(q) as Box<dyn Ring>),)*
                _ => return Err(Errno::EINVAL),
            }
        };
    }
    sized!(4 8 16 32 64 128 256 512 1024).map_err(|e| match e {
        virtio_drivers::Error::DmaError => Errno::ENOMEM,
        _ => Errno::EIO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_size_is_the_largest_power_of_two_allowed() {
        assert_eq!(pick_size(256, 1024), Some(256));
        assert_eq!(pick_size(1000, 1024), Some(512));
        assert_eq!(pick_size(4096, 1024), Some(1024));
        assert_eq!(pick_size(256, 64), Some(64));
        assert_eq!(pick_size(5, 1024), Some(4));
        assert_eq!(pick_size(3, 1024), None);
        assert_eq!(pick_size(0, 1024), None);
    }
}
