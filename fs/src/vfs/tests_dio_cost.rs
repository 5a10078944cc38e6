//! Host profiling harness of 1 MiB `O_DIRECT` writes through the file API into a fresh file on
//! a fresh filesystem (the shape of `fs_direct_write_seq_mib_s` in `vfs::bench`), for
//! instruction counts under callgrind:
//!
//! ```text
//! cargo test --release -p foliage-fs --no-run
//! valgrind --tool=callgrind target/release/deps/foliage_fs-<hash> \
//!     --exact vfs::tests_dio_cost::direct_write_calls_cost
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep prof_
//! ```
//!
//! `prof_direct_writes`: [`CALLS`] 1 MiB direct writes, one per call, each extending the file.
//! It also runs with the host tests: each call moves exactly one 1 MiB data bio and no metadata
//! I/O (frond's transactions join the running one, committed at sync), and the file reads back.
//! Locking: none of its own.

use std::sync::Arc;
use std::vec::Vec;

use crate::block::{BioOp, BlockDevice, RamDisk};
use crate::frond::{mkfs, MkfsOptions};
use crate::platform::{DmaBuffer, StdPlatform};
use crate::vfs::{File, FrondFs, MountOptions, OpenFlags};

const MIB: u64 = 1 << 20;
/// Direct write calls profiled.
const CALLS: u64 = 64;

#[inline(never)]
fn prof_direct_writes(f: &File, buf: &DmaBuffer) {
    for i in 0..CALLS {
        assert_eq!(f.write(i * MIB, buf.as_slice()), Ok(MIB as usize), "call {i}");
    }
}

#[test]
fn direct_write_calls_cost() {
    let p = StdPlatform::arc();
    let disk = Arc::new(RamDisk::new(256 << 20, 512).unwrap());
    let dev: Arc<dyn BlockDevice> = disk.clone();
    mkfs(dev.clone(), p.clone(), &MkfsOptions { block_size: 4096, ..MkfsOptions::default() }).unwrap();
    let fs = FrondFs::mount(dev, p.clone(), MountOptions::new(16 << 20)).unwrap();
    let f = fs
        .open_at(fs.root(), b"direct", OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::DIRECT, 0o644)
        .unwrap();
    let mut buf = DmaBuffer::new(&p, MIB as usize).unwrap();
    buf.as_mut_slice().iter_mut().enumerate().for_each(|(i, b)| *b = (i * 7 + 3) as u8);
    disk.set_trace(true);
    prof_direct_writes(&f, &buf);
    let trace = disk.take_trace();
    disk.set_trace(false);
    let writes: Vec<(u64, u64)> =
        trace.iter().filter(|t| t.op == BioOp::Write).map(|t| (t.offset, t.len)).collect();
    assert_eq!(writes.len() as u64, CALLS, "one write bio per call, no metadata writes: {trace:?}");
    assert!(writes.iter().all(|w| w.1 == MIB), "{writes:?}");
    assert_eq!(trace.len() as u64, CALLS, "no reads or flushes: {trace:?}");
    assert_eq!(f.size(), CALLS * MIB);
    let mut back = DmaBuffer::new(&p, MIB as usize).unwrap();
    for i in [0, CALLS - 1] {
        assert_eq!(f.read(i * MIB, back.as_mut_slice()), Ok(MIB as usize));
        assert!(back.as_slice() == buf.as_slice(), "call {i} reads back");
    }
}
