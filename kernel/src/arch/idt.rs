//! The IDT and exception reporting.
//!
//! Every one of the 32 exception vectors gets a stub that pushes a uniform frame (a zero error
//! code where the CPU pushes none, then the vector) and calls [`exception_entry`]. A breakpoint
//! (`int3`) is counted and resumed, which the exception-reporting test uses; every other
//! exception prints the vector, its name, the error code, RIP, CR2 and RSP, names the running
//! test if any, and ends the run with [`ExitCode::Exception`].
//!
//! Vectors 32 and up are for device interrupts: a driver registers a handler with
//! [`set_irq_handler`]; they run on their own IST stack with interrupts disabled.

use core::arch::{asm, global_asm};
use core::mem::size_of;
use core::ptr::addr_of;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::gdt::{IST_EXCEPTION, IST_FATAL, IST_IRQ};
use crate::exit::{exit, ExitCode};

/// First vector available for device interrupts.
pub const IRQ_BASE: u8 = 32;
/// Number of device interrupt vectors with stubs.
pub const IRQ_COUNT: usize = 16;

macro_rules! stubs {
    () => {
        r#"
        .macro EXC_NOERR n
        .global exc_stub_\n
        exc_stub_\n:
            push 0
            push \n
            jmp exc_common
        .endm
        .macro EXC_ERR n
        .global exc_stub_\n
        exc_stub_\n:
            push \n
            jmp exc_common
        .endm

        .section .text.exc, "ax"
        EXC_NOERR 0
        EXC_NOERR 1
        EXC_NOERR 2
        EXC_NOERR 3
        EXC_NOERR 4
        EXC_NOERR 5
        EXC_NOERR 6
        EXC_NOERR 7
        EXC_ERR 8
        EXC_NOERR 9
        EXC_ERR 10
        EXC_ERR 11
        EXC_ERR 12
        EXC_ERR 13
        EXC_ERR 14
        EXC_NOERR 15
        EXC_NOERR 16
        EXC_ERR 17
        EXC_NOERR 18
        EXC_NOERR 19
        EXC_NOERR 20
        EXC_ERR 21
        EXC_NOERR 22
        EXC_NOERR 23
        EXC_NOERR 24
        EXC_NOERR 25
        EXC_NOERR 26
        EXC_NOERR 27
        EXC_NOERR 28
        EXC_ERR 29
        EXC_ERR 30
        EXC_NOERR 31
        .irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
        EXC_NOERR \n
        .endr

    exc_common:
        push rax
        push rbx
        push rcx
        push rdx
        push rsi
        push rdi
        push rbp
        push r8
        push r9
        push r10
        push r11
        push r12
        push r13
        push r14
        push r15
        mov rdi, rsp
        call exception_entry
        pop r15
        pop r14
        pop r13
        pop r12
        pop r11
        pop r10
        pop r9
        pop r8
        pop rbp
        pop rdi
        pop rsi
        pop rdx
        pop rcx
        pop rbx
        pop rax
        add rsp, 16
        iretq

        .section .rodata.exc, "a"
        .p2align 3
        .global exc_stub_table
    exc_stub_table:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
        .quad exc_stub_\n
        .endr
        "#
    };
}

global_asm!(stubs!());

extern "C" {
    static exc_stub_table: [u64; 48];
}

/// The register state the stubs save, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attrs: u8,
    offset_mid: u16,
    offset_high: u32,
    _reserved: u32,
}

static mut IDT: [Gate; 256] =
    [Gate { offset_low: 0, selector: 0, ist: 0, attrs: 0, offset_mid: 0, offset_high: 0, _reserved: 0 }; 256];

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
static LAST_BREAKPOINT_RIP: AtomicU64 = AtomicU64::new(0);
static IRQ_HANDLERS: [AtomicUsize; IRQ_COUNT] = [const { AtomicUsize::new(0) }; IRQ_COUNT];

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

/// Installs the IDT. Called once, after [`super::gdt::init`].
pub fn init() {
    // SAFETY: single-threaded early boot; the stubs exist for vectors 0..48 and the gates
    // point at them with the kernel code selector.
    unsafe {
        let table = &*addr_of!(exc_stub_table);
        for (v, &addr) in table.iter().enumerate() {
            let ist = match v {
                2 | 8 | 18 => IST_FATAL,
                0..=31 => IST_EXCEPTION,
                _ => IST_IRQ,
            };
            IDT[v] = Gate {
                offset_low: addr as u16,
                selector: 0x08,
                ist,
                attrs: 0x8E, // present, DPL 0, 64-bit interrupt gate
                offset_mid: (addr >> 16) as u16,
                offset_high: (addr >> 32) as u32,
                _reserved: 0,
            };
        }
        let ptr = Pointer { limit: (size_of::<[Gate; 256]>() - 1) as u16, base: addr_of!(IDT) as u64 };
        asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags));
    }
}

/// Registers `handler` for device interrupt vector `IRQ_BASE + index` (the interrupt-driven
/// completion option of the virtio-blk driver wires this up).
pub fn set_irq_handler(index: usize, handler: fn()) -> bool {
    match IRQ_HANDLERS.get(index) {
        Some(slot) => {
            slot.store(handler as usize, Ordering::Release);
            true
        }
        None => false,
    }
}

/// Number of breakpoints taken so far, and the RIP after the last one.
pub fn breakpoints() -> (u64, u64) {
    (BREAKPOINTS.load(Ordering::Acquire), LAST_BREAKPOINT_RIP.load(Ordering::Acquire))
}

#[no_mangle]
extern "C" fn exception_entry(frame: &mut Frame) {
    let v = frame.vector as usize;
    if v == 3 {
        BREAKPOINTS.fetch_add(1, Ordering::AcqRel);
        LAST_BREAKPOINT_RIP.store(frame.rip, Ordering::Release);
        return;
    }
    if v >= IRQ_BASE as usize {
        let h = IRQ_HANDLERS[v - IRQ_BASE as usize].load(Ordering::Acquire);
        if h != 0 {
            // SAFETY: only `fn()` values are stored by set_irq_handler.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(h) };
            f();
        }
        crate::arch::apic_eoi();
        return;
    }
    crate::serial::force_write(format_args!(
        "\nEXCEPTION: vector {} ({}) error={:#x} rip={:#x} cr2={:#x} rsp={:#x}\n",
        v,
        NAMES[v],
        frame.error,
        frame.rip,
        super::cr2(),
        frame.rsp
    ));
    crate::ktest::report_abort("exception");
    exit(ExitCode::Exception);
}
