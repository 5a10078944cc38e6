//! PVH entry and the 32 -> 64-bit trampoline.
//!
//! QEMU's `-kernel` loads this ELF, finds the Xen ELF note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)
//! and enters `pvh_start32` in 32-bit protected mode, paging off, with `%ebx` = the physical
//! address of the `hvm_start_info` (memory map, command line). The trampoline:
//!
//! 1. zeroes .bss (page tables and stacks live there);
//! 2. builds identity page tables for 0-4 GiB with 2 MiB pages (3-4 GiB, the PCI MMIO hole,
//!    mapped uncached);
//! 3. enables PAE, long mode, paging, and SSE (CR0.MP, CR4.OSFXSR | OSXMMEXCPT): the prebuilt
//!    `core` uses SSE, so this happens before any Rust code runs;
//! 4. loads a boot GDT, far-returns into 64-bit code, sets the stack and calls
//!    `kernel_main(start_info)`.
//!
//! The Rust side then installs its own GDT (with a TSS and IST stacks) and IDT.

/// Bytes of the boot (and only) kernel stack.
pub const BOOT_STACK_BYTES: usize = 1 << 20;

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4                 /* name size: "Xen\0" */
    .long 8                 /* descriptor size: a 64-bit entry address */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx                        /* keep the start info pointer in esi */

    mov edi, offset __bss_start         /* zero .bss */
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb

    mov esp, offset boot_stack_top

    mov eax, offset boot_pdpt           /* PML4[0] -> PDPT */
    or eax, 0x3
    mov dword ptr [boot_pml4], eax

    xor ecx, ecx                        /* PDPT[0..4] -> the four page directories */
1:  mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov dword ptr [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 1b

    xor ecx, ecx                        /* 2048 x 2 MiB identity pages */
2:  mov eax, ecx
    shl eax, 21
    or eax, 0x83                        /* present, writable, page size */
    cmp ecx, 1536                       /* 3 GiB and above: MMIO, uncached */
    jb 3f
    or eax, 0x18                        /* PWT | PCD */
3:  mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov eax, cr4                        /* PAE | OSFXSR | OSXMMEXCPT */
    or eax, 0x620
    mov cr4, eax

    mov eax, offset boot_pml4
    mov cr3, eax

    mov ecx, 0xC0000080                 /* EFER.LME */
    rdmsr
    or eax, 0x100
    wrmsr

    mov eax, cr0                        /* PG | MP | PE, EM clear */
    and eax, 0xFFFFFFFB
    or eax, 0x80000003
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    push 0x08
    mov eax, offset pvh_start64
    push eax
    retf

    .code64
pvh_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + boot_stack_top]
    mov edi, esi                        /* kernel_main(start_info_paddr) */
    call kernel_main
4:  hlt
    jmp 4b

    .section .rodata.boot, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .global boot_stack_bottom
boot_stack_bottom:
    .skip {stack}
    .global boot_stack_top
boot_stack_top:
"#,
    stack = const BOOT_STACK_BYTES,
);
