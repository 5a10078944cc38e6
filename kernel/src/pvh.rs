//! The PVH start info (`struct hvm_start_info`, Xen's public `arch-x86/hvm/start_info.h`):
//! the memory map and the command line the loader passed.

use core::ffi::CStr;

const MAGIC: u32 = 0x336e_c578;

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    _reserved: u32,
}

/// One memory map entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemEntry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type (1 = usable RAM).
    pub kind: u32,
    _reserved: u32,
}

impl MemEntry {
    /// True for usable RAM.
    pub fn usable(&self) -> bool {
        self.kind == 1
    }

    /// The E820 type's name.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            1 => "usable",
            2 => "reserved",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "bad",
            _ => "other",
        }
    }
}

/// What the loader told us.
pub struct BootInfo {
    /// The memory map.
    pub memmap: &'static [MemEntry],
    /// The kernel command line (`-append`).
    pub cmdline: &'static str,
}

/// Reads the start info at `paddr`. Returns `None` if the magic is wrong.
pub fn parse(paddr: u64) -> Option<BootInfo> {
    if paddr == 0 || paddr >= 1 << 32 {
        return None;
    }
    // SAFETY: the PVH loader placed a start info structure at `paddr`, identity mapped below 4 GiB.
    let si = unsafe { &*(paddr as *const StartInfo) };
    if si.magic != MAGIC {
        return None;
    }
    let memmap: &'static [MemEntry] = if si.version >= 1 && si.memmap_paddr != 0 && si.memmap_paddr < 1 << 32
    {
        // SAFETY: version >= 1 start infos carry `memmap_entries` entries at `memmap_paddr`.
        unsafe { core::slice::from_raw_parts(si.memmap_paddr as *const MemEntry, si.memmap_entries as usize) }
    } else {
        &[]
    };
    let cmdline = if si.cmdline_paddr != 0 && si.cmdline_paddr < 1 << 32 {
        // SAFETY: the loader stores a NUL-terminated command line at `cmdline_paddr`.
        unsafe { CStr::from_ptr(si.cmdline_paddr as *const core::ffi::c_char) }.to_str().unwrap_or("")
    } else {
        ""
    };
    Some(BootInfo { memmap, cmdline })
}
