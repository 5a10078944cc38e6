//! `cargo xtask build`: the kernel and the disk images.

use std::path::PathBuf;

use crate::util::{cargo, root, run_checked, Result};

/// Kernel build profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Optimised with debug assertions and overflow checks: `run` and `test`.
    Ktest,
    /// Plain release: `bench`.
    Release,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Ktest => "ktest",
            Profile::Release => "release",
        }
    }
}

/// Builds the kernel with `features`; returns the ELF's path.
pub fn kernel(profile: Profile, features: &[&str]) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--quiet", "--package", "foliage-kernel", "--profile", profile.name()]);
    if !features.is_empty() {
        c.args(["--features", &features.join(",")]);
    }
    run_checked(c, "building the kernel")?;
    Ok(root().join("target").join(profile.name()).join("foliage-kernel"))
}

/// The directory for disk images and their side files (`target/images/`).
pub fn image_dir() -> Result<PathBuf> {
    let dir = root().join("target/images");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Creates (or re-creates, zeroed) a sparse raw image of `bytes` under `target/images/`.
pub fn image(name: &str, bytes: u64) -> Result<PathBuf> {
    let path = image_dir()?.join(format!("{name}.img"));
    let f = std::fs::File::create(&path)?;
    f.set_len(bytes)?;
    Ok(path)
}

/// `cargo xtask build`.
pub fn cmd(_args: &[String]) -> Result<()> {
    let k = kernel(Profile::Ktest, &[])?;
    let r = kernel(Profile::Release, &[])?;
    let img = image("scratch0", 64 << 20)?;
    println!("kernel (test/run): {}", k.display());
    println!("kernel (bench):    {}", r.display());
    println!("disk image:        {}", img.display());
    Ok(())
}
