//! Interrupt-driven completion, as an option: the hooks a kernel supplies and the guard that
//! makes the driver's locks interrupt-safe.
//!
//! Polling needs none of this. A kernel that wants completions by interrupt gives the driver:
//!
//! - an [`IrqControl`] (at construction): how to mask and restore interrupts on the current
//!   CPU. While interrupts are routed to the driver it masks around every queue and transport
//!   lock it takes, so an interrupt handler that reaps a queue can never spin on a lock the code
//!   it interrupted holds (Linux: `spin_lock_irqsave`). While polling it does not mask at all;
//!   switching interrupts on first turns masking on and then takes every lock once, so no
//!   holder that took a lock unmasked remains when the first interrupt can arrive;
//! - one [`MsiMessage`] per queue (at [`VirtioBlk::enable_interrupts`]): where the device's
//!   message for that queue goes. The kernel's handler for it calls
//!   [`VirtioBlk::handle_interrupt`], which reaps the queue and runs its completions in
//!   interrupt context.
//!
//! An [`InterruptRouting`] programs the messages into the device (PCI MSI-X:
//! [`PciMsix`](super::pci::PciMsix)). This file also holds [`VirtioBlk`]'s interrupt methods:
//! switching the option on and off, and the handler's work.
//!
//! Lock order: transport lock, then (inside [`InterruptRouting::route`]) the routing's own
//! configuration-access lock. Completion callbacks that run in interrupt context must be
//! interrupt-safe themselves (no allocator or console lock that thread code holds with
//! interrupts enabled): the block layer's completion rule.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `spin_lock_irqsave` / `spin_unlock_irqrestore` | `IrqGuard` over [`IrqControl`] |
//! | `vp_find_vqs_msix`, one vector per queue + one for config | [`InterruptRouting::route`], entry `queue + 1` |
//! | `vp_vring_interrupt` -> `virtblk_done` | [`VirtioBlk::handle_interrupt`] |
//!
//! Deliberate deviation: no configuration-change interrupt (capacity changes are not
//! tracked); a device without MSI-X (legacy INTx) gets no interrupt option.
//!
//! [`VirtioBlk::enable_interrupts`]: super::VirtioBlk::enable_interrupts
//! [`VirtioBlk::handle_interrupt`]: super::VirtioBlk::handle_interrupt

use core::sync::atomic::Ordering;

use virtio_drivers::transport::Transport;

use super::device::VirtioBlk;
use crate::errno::{Errno, Result};

/// Masks and restores interrupts on the current CPU (the kernel's `local_irq_save`).
pub trait IrqControl: Send + Sync {
    /// Disables interrupts on this CPU; returns whether they were enabled.
    fn save_disable(&self) -> bool;
    /// Re-enables interrupts if `was_enabled`.
    fn restore(&self, was_enabled: bool);
}

/// Where one queue's interrupt goes: an MSI message (on x86, address `0xFEE0_0000 | apic_id <<
/// 12` and data = the vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// Programs per-queue interrupt messages into a device (transport-specific).
pub trait InterruptRouting: Send + Sync {
    /// Sends queue `queue`'s used-buffer notifications to `message`, or nowhere (`None`).
    /// Called with the driver's transport lock held (it may share registers with it).
    fn route(&self, queue: u16, message: Option<MsiMessage>) -> Result<()>;
}

/// Interrupts masked on this CPU for the guard's lifetime (when the driver has an
/// [`IrqControl`]).
pub(crate) struct IrqGuard {
    control: Option<(&'static dyn IrqControl, bool)>,
}

impl IrqGuard {
    pub(crate) fn new(control: Option<&'static dyn IrqControl>) -> Self {
        Self { control: control.map(|c| (c, c.save_disable())) }
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        if let Some((c, was)) = self.control {
            c.restore(was);
        }
    }
}

/// A spin lock guard that also keeps interrupts masked; the lock is released before interrupts
/// are restored (fields drop in declaration order).
pub(crate) struct Locked<'a, T> {
    guard: spin::MutexGuard<'a, T>,
    _irq: IrqGuard,
}

impl<'a, T> Locked<'a, T> {
    /// Masks interrupts (if configured), then takes `lock`.
    pub(crate) fn new(lock: &'a spin::Mutex<T>, control: Option<&'static dyn IrqControl>) -> Self {
        let irq = IrqGuard::new(control);
        Self { guard: lock.lock(), _irq: irq }
    }
}

impl<T> core::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> core::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: Transport> VirtioBlk<T> {
    /// True while completions are signalled by interrupt.
    pub fn interrupts_enabled(&self) -> bool {
        self.interrupts_on.load(Ordering::Acquire)
    }

    /// Switches on interrupt-driven completion: queue `i` signals `messages[i % len]`. Needs
    /// [`Options::irq_control`](super::Options::irq_control) and
    /// [`Options::routing`](super::Options::routing) (`EOPNOTSUPP` without routing, `EINVAL`
    /// without interrupt control or messages). Polling keeps working alongside.
    pub fn enable_interrupts(&self, messages: &[MsiMessage]) -> Result<()> {
        let routing = self.routing.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        if self.irq_control.is_none() || messages.is_empty() {
            return Err(Errno::EINVAL);
        }
        // From now on every lock is taken with interrupts masked. Taking each lock once more
        // waits out any holder (on another CPU) that took it unmasked; only then can an
        // interrupt reach a handler that takes them.
        self.mask_irqs.store(true, Ordering::SeqCst);
        for q in self.queues.iter() {
            drop(self.lock_queue(q));
        }
        {
            let _transport = self.lock_transport();
            for (i, q) in self.queues.iter().enumerate() {
                if let Err(e) = routing.route(q.index, Some(messages[i % messages.len()])) {
                    for undo in &self.queues[..=i] {
                        let _ = routing.route(undo.index, None);
                    }
                    drop(_transport);
                    self.mask_irqs.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        for q in self.queues.iter() {
            self.lock_queue(q).set_interrupts(true);
        }
        self.interrupts_on.store(true, Ordering::Release);
        Ok(())
    }

    /// Switches interrupts off again (completion by polling only).
    pub fn disable_interrupts(&self) {
        self.interrupts_on.store(false, Ordering::SeqCst);
        for q in self.queues.iter() {
            self.lock_queue(q).set_interrupts(false);
        }
        if let Some(routing) = &self.routing {
            let _transport = self.lock_transport();
            for q in self.queues.iter() {
                let _ = routing.route(q.index, None);
            }
        }
        // A message already on its way finds `interrupts_on` false and takes no lock.
        self.mask_irqs.store(false, Ordering::SeqCst);
    }

    /// The interrupt handler's work for queue `queue`: reaps it and runs its completions (in
    /// interrupt context). Returns how many bios completed; does nothing (and takes no lock)
    /// unless interrupts are enabled.
    pub fn handle_interrupt(&self, queue: usize) -> usize {
        if !self.interrupts_on.load(Ordering::SeqCst) {
            return 0;
        }
        let Some(q) = self.queues.get(queue) else { return 0 };
        q.counters.interrupts.fetch_add(1, Ordering::Relaxed);
        self.reap_queue(q, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct FakeCpu {
        enabled: AtomicBool,
        saves: AtomicUsize,
    }

    impl IrqControl for FakeCpu {
        fn save_disable(&self) -> bool {
            self.saves.fetch_add(1, Ordering::SeqCst);
            self.enabled.swap(false, Ordering::SeqCst)
        }
        fn restore(&self, was: bool) {
            if was {
                self.enabled.store(true, Ordering::SeqCst);
            }
        }
    }

    static CPU: FakeCpu = FakeCpu { enabled: AtomicBool::new(true), saves: AtomicUsize::new(0) };

    #[test]
    fn locked_masks_while_held_and_nests() {
        let lock = spin::Mutex::new(5);
        {
            let mut g = Locked::new(&lock, Some(&CPU));
            *g += 1;
            assert!(!CPU.enabled.load(Ordering::SeqCst));
            {
                let _inner = IrqGuard::new(Some(&CPU));
                assert!(!CPU.enabled.load(Ordering::SeqCst));
            }
            assert!(!CPU.enabled.load(Ordering::SeqCst), "inner restore must not unmask");
        }
        assert!(CPU.enabled.load(Ordering::SeqCst));
        assert!(lock.try_lock().is_some());
        assert_eq!(*lock.lock(), 6);
        assert_eq!(CPU.saves.load(Ordering::SeqCst), 2);
        let _g = Locked::new(&lock, None);
        assert!(CPU.enabled.load(Ordering::SeqCst));
    }
}
