//! Ending the QEMU run through isa-debug-exit (port 0xf4).
//!
//! QEMU exits with status `(code << 1) | 1`. Only [`ExitCode::Pass`] means success: a triple
//! fault under `-no-reboot` makes QEMU exit 0, so xtask treats every other status as failure.

use crate::io::outl;

/// Why the kernel ends the run. xtask decodes the QEMU exit status back into these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything passed: QEMU exits 33.
    Pass = 0x10,
    /// A test failed: QEMU exits 35.
    Fail = 0x11,
    /// A CPU exception ended the run: QEMU exits 37.
    Exception = 0x12,
    /// A panic ended the run: QEMU exits 39.
    Panic = 0x13,
}

/// Ends the run with `code`.
pub fn exit(code: ExitCode) -> ! {
    outl(0xf4, code as u32);
    // isa-debug-exit missing: nothing else to do but stop.
    loop {
        // SAFETY: halting with interrupts disabled just stops this CPU.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
