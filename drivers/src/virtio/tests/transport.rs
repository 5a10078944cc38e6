//! The fake device's transport (virtio-drivers' `Transport`: the doorbell executes requests
//! synchronously, as QEMU under TCG does) and a `Hal` over the host allocator whose "physical"
//! addresses are host addresses.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::fake::{Fake, Vq};

/// virtio-drivers' Hal over the host allocator, identity "physical" addresses.
pub struct TestHal;

fn dma_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages.max(1) * 4096, 4096).expect("layout")
}

// SAFETY: allocations are zeroed, page aligned and exclusively owned; share is the identity,
// which is what the fake device dereferences.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: non-zero size.
        let p = unsafe { alloc_zeroed(dma_layout(pages)) };
        match NonNull::new(p) {
            Some(p) => (p.as_ptr() as u64, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: allocated by dma_alloc with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("non-null MMIO")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}

/// The transport the driver talks to.
pub struct FakeTransport {
    dev: Arc<Fake>,
}

impl FakeTransport {
    /// A transport to `dev`.
    pub fn new(dev: Arc<Fake>) -> Self {
        Self { dev }
    }
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn read_device_features(&mut self) -> u64 {
        self.dev.state().offered()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.dev.state().driver_features = driver_features;
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        let st = self.dev.state();
        if queue < st.cfg.queues {
            u32::from(st.cfg.queue_size)
        } else {
            0
        }
    }

    fn notify(&mut self, _queue: u16) {
        let mut st = self.dev.state();
        st.notifies += 1;
        st.consume();
        if !st.hold {
            st.complete(usize::MAX);
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.dev.state().status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut st = self.dev.state();
        if status.is_empty() {
            st.reset();
        } else {
            st.status = status;
        }
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let mut st = self.dev.state();
        if let Some(q) = st.vqs.get_mut(queue as usize) {
            *q = Vq {
                size: size as u16,
                desc: descriptors,
                avail: driver_area,
                used: device_area,
                enabled: true,
                last_avail: 0,
                used_idx: 0,
            };
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        if let Some(q) = self.dev.state().vqs.get_mut(queue as usize) {
            *q = Vq::default();
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.dev.state().vqs.get(queue as usize).is_some_and(|q| q.enabled)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> virtio_drivers::Result<T> {
        let bytes = self.dev.state().config_bytes();
        let end = offset + std::mem::size_of::<T>();
        if end > bytes.len() {
            return Err(virtio_drivers::Error::ConfigSpaceTooSmall);
        }
        T::read_from_bytes(&bytes[offset..end]).map_err(|_| virtio_drivers::Error::InvalidParam)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Err(virtio_drivers::Error::Unsupported)
    }
}
