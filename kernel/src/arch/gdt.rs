//! The kernel GDT: null, 64-bit code (0x08), data (0x10), and a TSS (0x18) whose interrupt stack
//! table gives every exception a known-good stack.
//!
//! The host target keeps the red zone, so no exception or interrupt may run on the interrupted
//! stack: all of them use IST stacks (IST1 for exceptions, IST2 for double fault / NMI / machine
//! check, IST3 for device interrupts).

use core::arch::asm;
use core::mem::size_of;
use core::ptr::addr_of;

/// IST index for ordinary exceptions.
pub const IST_EXCEPTION: u8 = 1;
/// IST index for double fault, NMI and machine check.
pub const IST_FATAL: u8 = 2;
/// IST index for device interrupts.
pub const IST_IRQ: u8 = 3;

const IST_STACK_BYTES: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_BYTES]);

static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_BYTES]) }; 3];

#[repr(C, packed)]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

static mut TSS: Tss = Tss {
    _reserved0: 0,
    rsp: [0; 3],
    _reserved1: 0,
    ist: [0; 7],
    _reserved2: 0,
    _reserved3: 0,
    iomap_base: 104,
};

static mut GDT: [u64; 5] = [0, 0x00af9a000000ffff, 0x00cf92000000ffff, 0, 0];

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Installs the GDT and TSS. Called once, early, on the boot CPU.
pub fn init() {
    // SAFETY: single-threaded early boot; nothing else touches these statics, and the
    // descriptors written are valid for the running code (same code/data selectors as boot).
    unsafe {
        let stacks = &raw mut IST_STACKS;
        for i in 0..3 {
            let top = (addr_of!((*stacks)[i]) as u64) + IST_STACK_BYTES as u64;
            TSS.ist[i] = top;
        }
        let base = addr_of!(TSS) as u64;
        let limit = (size_of::<Tss>() - 1) as u64;
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40) // present, 64-bit available TSS
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        GDT[3] = low;
        GDT[4] = base >> 32;
        let ptr = Pointer { limit: (size_of::<[u64; 5]>() - 1) as u16, base: addr_of!(GDT) as u64 };
        asm!(
            "lgdt [{ptr}]",
            "push 0x08",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, 0x10",
            "mov ds, {tmp:x}",
            "mov es, {tmp:x}",
            "mov ss, {tmp:x}",
            "mov {tmp:e}, 0x18",
            "ltr {tmp:x}",
            ptr = in(reg) &ptr,
            tmp = out(reg) _,
        );
    }
}
