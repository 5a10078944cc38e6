//! The C memory functions the compiler emits calls to.
//!
//! On the host target the prebuilt `compiler_builtins` does not export `memcpy` and friends (they
//! normally come from the C library), so a `-nostdlib` kernel supplies them. They are written
//! in assembly and word loops that LLVM will not turn back into calls to themselves.
//!
//! Bulk copies and fills move 32 bytes per loop iteration through four registers, and only the
//! tail (under 32 bytes) uses a byte string instruction: under QEMU's TCG every iteration of a
//! `rep` string instruction is a separate trip through the translated-code loop, so `rep movsb`
//! over a kilobyte costs microseconds (a 1.6 KiB bio moved by value cost ~4 us that way).

use core::arch::asm;

/// Copies `n` bytes forward: 32-byte blocks (each loaded completely before it is stored), then
/// the tail bytewise. Also correct for overlapping ranges with `dst` below `src`: a block's
/// stores never reach source bytes not yet loaded.
///
/// # Safety
/// `dst` and `src` valid for `n` bytes; if they overlap, `dst <= src`.
unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's contract; the loop touches exactly [src, src + n) and [dst, dst + n).
    unsafe {
        asm!(
            "cmp rcx, 32",
            "jb 3f",
            "2:",
            "mov r8, [rsi]",
            "mov r9, [rsi + 8]",
            "mov r10, [rsi + 16]",
            "mov r11, [rsi + 24]",
            "mov [rdi], r8",
            "mov [rdi + 8], r9",
            "mov [rdi + 16], r10",
            "mov [rdi + 24], r11",
            "add rsi, 32",
            "add rdi, 32",
            "sub rcx, 32",
            "cmp rcx, 32",
            "jae 2b",
            "3:",
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack),
        );
    }
}

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller upholds memcpy's contract (no overlap).
    unsafe { copy_forward(dst, src, n) };
    dst
}

/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize).wrapping_sub(src as usize) >= n {
        // dst is at or before src, or the ranges do not overlap: a forward copy is correct.
        // SAFETY: as copy_forward requires.
        unsafe { copy_forward(dst, src, n) };
    } else if n > 0 {
        // SAFETY: dst overlaps the tail of src: copy backwards from the last byte, with the
        // direction flag set only for this instruction.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
    }
    dst
}

/// # Safety
/// The C contract: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let pattern = (c as u8 as u64).wrapping_mul(0x0101_0101_0101_0101);
    // SAFETY: the caller guarantees `dst` is valid for `n` bytes; the loop stores exactly
    // [dst, dst + n).
    unsafe {
        asm!(
            "cmp rcx, 32",
            "jb 3f",
            "2:",
            "mov [rdi], rax",
            "mov [rdi + 8], rax",
            "mov [rdi + 16], rax",
            "mov [rdi + 24], rax",
            "add rdi, 32",
            "sub rcx, 32",
            "cmp rcx, 32",
            "jae 2b",
            "3:",
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("rax") pattern,
            options(nostack),
        );
    }
    dst
}

/// # Safety
/// The C contract: both pointers valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, both valid for n bytes; unaligned reads are allowed on x86.
        let (x, y) =
            unsafe { ((a.add(i) as *const u64).read_unaligned(), (b.add(i) as *const u64).read_unaligned()) };
        if x != y {
            break;
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// The C contract: both pointers valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// The C contract: `s` points to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated, so every byte up to and including the NUL is valid.
    while unsafe { core::ptr::read_volatile(s.add(n)) } != 0 {
        n += 1;
    }
    n
}

/// The prebuilt `core` references the unwinding personality routine; with `panic = "abort"`
/// nothing unwinds, so it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by landing pads in the prebuilt `alloc`; never reached with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::serial::force_write(format_args!("\n_Unwind_Resume called: unwinding is not supported\n"));
    crate::exit::exit(crate::exit::ExitCode::Panic)
}
