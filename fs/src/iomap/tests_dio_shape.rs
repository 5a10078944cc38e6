//! Host-only profiling harness of the direct path against the raw bios of the `dio` bench
//! (`iomap::bench_dio`), for instruction counts under callgrind:
//!
//! ```text
//! cargo test --release -p foliage-fs --no-run
//! valgrind --tool=callgrind target/release/deps/foliage_fs-<hash> \
//!     --exact iomap::tests_dio_shape::profile_direct_against_raw
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep prof_
//! ```
//!
//! `prof_direct_write` / `prof_direct_read`: 8 batches of 32 back-to-back 1 MiB direct requests
//! over a `Queue` on a RamDisk; `prof_raw_write` / `prof_raw_read`: as many raw 32 x 1 MiB
//! rounds on the same queue. The RamDisk's copies (the same bytes on both sides) dominate;
//! direct minus raw is the engine's own cost. The bio shapes themselves are pinned by the
//! suite (`dio_seq_1m_from_contiguous_buffers_one_bio_one_segment_each`).
//!
//! It also runs with the host tests (a check that both sides move the same bytes). Locking:
//! none of its own.

use std::sync::Arc;
use std::vec::Vec;

use super::bench::{bench_fs, raw_seq_bufs_ns};
use super::dio::{DioRead, DioWrite};
use super::testfs::MemFile;
use super::WriteFlags;
use crate::block::{BioOp, BlockDevice, Queue, RamDisk};
use crate::platform::{DmaBuffer, Platform, StdPlatform};

const MIB: u64 = 1 << 20;
const DEPTH: u64 = 32;
const ROUNDS: u64 = 8;

#[inline(never)]
fn prof_direct_write(f: &MemFile, srcs: &[Vec<u8>]) {
    let mut open = f.open();
    for round in 0..ROUNDS {
        let reqs: Vec<DioWrite<'_>> = srcs
            .iter()
            .enumerate()
            .map(|(i, d)| DioWrite { pos: (round * DEPTH + i as u64) * MIB, data: d })
            .collect();
        let r = f.direct_write_batch(&mut open, &reqs, WriteFlags::empty());
        assert!(r.iter().all(|x| *x == Ok(MIB as usize)), "{r:?}");
    }
}

#[inline(never)]
fn prof_direct_read(f: &MemFile, bufs: &mut [Vec<u8>]) {
    let mut open = f.open();
    for round in 0..ROUNDS {
        let mut reqs: Vec<DioRead<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| DioRead { pos: (round * DEPTH + i as u64) * MIB, buf: &mut b[..] })
            .collect();
        let r = f.direct_read_batch(&mut open, &mut reqs);
        assert!(r.iter().all(|x| *x == Ok(MIB as usize)), "{r:?}");
    }
}

fn raw_rounds(p: &Arc<dyn Platform>, q: &dyn BlockDevice, op: BioOp, base: u64, bufs: &[DmaBuffer]) {
    for round in 0..ROUNDS {
        raw_seq_bufs_ns(p, q, op, base + round * DEPTH * MIB, DEPTH * MIB, bufs, false).unwrap();
    }
}

#[inline(never)]
fn prof_raw_write(p: &Arc<dyn Platform>, q: &dyn BlockDevice, base: u64, bufs: &[DmaBuffer]) {
    raw_rounds(p, q, BioOp::Write, base, bufs);
}

#[inline(never)]
fn prof_raw_read(p: &Arc<dyn Platform>, q: &dyn BlockDevice, base: u64, bufs: &[DmaBuffer]) {
    raw_rounds(p, q, BioOp::Read, base, bufs);
}

#[test]
fn profile_direct_against_raw() {
    let p = StdPlatform::arc();
    let dev = Arc::new(RamDisk::new(640 << 20, 512).unwrap());
    let q: Arc<dyn BlockDevice> = Arc::new(Queue::new(dev));
    let fs = bench_fs(&p, q.clone(), 64 * MIB, 4096).unwrap();
    let f = fs.create().unwrap();
    let srcs: Vec<Vec<u8>> = (0..DEPTH).map(|k| vec![k as u8 + 1; MIB as usize]).collect();
    let mut bufs: Vec<DmaBuffer> = (0..DEPTH).map(|_| DmaBuffer::new(&p, MIB as usize).unwrap()).collect();
    for (b, s) in bufs.iter_mut().zip(&srcs) {
        b.as_mut_slice().copy_from_slice(s);
    }
    let raw_base = 320 * MIB;
    prof_direct_write(&f, &srcs);
    prof_raw_write(&p, &*q, raw_base, &bufs);
    let mut back: Vec<Vec<u8>> = (0..DEPTH).map(|_| vec![0u8; MIB as usize]).collect();
    prof_direct_read(&f, &mut back);
    prof_raw_read(&p, &*q, raw_base, &bufs);
    assert!(back == srcs, "the last round reads back what was written");
}
