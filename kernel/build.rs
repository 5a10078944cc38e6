//! Link the kernel binary as a static, non-PIE ELF at 1 MiB with our linker script.
//! The arguments are scoped to this binary (`rustc-link-arg-bin`), so host crates and
//! proc-macros are unaffected.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let script = dir.join("../qemu/kernel.ld").canonicalize().expect("qemu/kernel.ld exists");
    for arg in
        ["-nostartfiles", "-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"]
    {
        println!("cargo:rustc-link-arg-bin=foliage-kernel={arg}");
    }
    println!("cargo:rustc-link-arg-bin=foliage-kernel=-Wl,-T,{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
