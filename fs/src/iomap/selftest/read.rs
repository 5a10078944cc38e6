//! §3: buffered read and readahead.

use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{block_bits, folio, pattern, Rig, RigOpts};
use crate::block::BioOp;
use crate::block::{BlockDevice, FaultDisk, FaultRule, OpMask};
use crate::iomap::testfs::{ExtKind, TraceOp};
use crate::Errno;

pub fn buffered_read_t1_hole_reads_zero_without_io(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    let mut open = f.open();
    ensure_eq!(f.write(&mut open, 1 << 20, b"X")?, 1);
    let mut buf = vec![0xEEu8; (1 << 20) + 1];
    let mut reader = f.open();
    ensure_eq!(f.read(&mut reader, 0, &mut buf)?, (1 << 20) + 1);
    ensure!(buf[..1 << 20].iter().all(|&b| b == 0), "holes read as zeros");
    ensure_eq!(buf[1 << 20], b'X');
    ensure_eq!(rig.trace.counts().reads, 0, "no device reads for holes");
    Ok(())
}

pub fn buffered_read_t2_partial_folio_reads_only_missing_blocks(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(1024))?;
    let d = rig.spare_block(0);
    let data = pattern(1, 4096);
    let f = rig.mapped_file(d, 4, &data)?;
    let mut open = f.open();
    ensure_eq!(f.write(&mut open, 2048, &[b'B'; 1024])?, 1024);
    ensure_eq!(rig.trace.counts().reads, 0, "a whole-block write reads nothing");
    ensure_eq!(block_bits(&*folio(&f, 0)?), (vec![2], vec![2]));
    let mut buf = vec![0u8; 4096];
    ensure_eq!(f.read(&mut open, 0, &mut buf)?, 4096);
    let reads: vec::Vec<(u64, u64)> =
        rig.trace.ops().iter().filter(|t| t.op == BioOp::Read).map(|t| (t.offset, t.len)).collect();
    ensure_eq!(reads, vec![(d * 1024, 2048), (d * 1024 + 3072, 1024)], "blocks 0-1 and 3 from disk");
    ensure_eq!(&buf[..2048], &data[..2048]);
    ensure_eq!(&buf[2048..3072], &[b'B'; 1024][..], "block 2 from the cache");
    ensure_eq!(&buf[3072..], &data[3072..]);
    ensure!(folio(&f, 0)?.is_uptodate());
    Ok(())
}

pub fn buffered_read_t3_eof_block_read_whole_and_clamped(env: &TestEnv) -> TestResult {
    for bs in [4096u64, 1024] {
        let rig = Rig::new(env, RigOpts::new(bs))?;
        let d = rig.spare_block(0);
        let data = pattern(2, 8192);
        let f = rig.mapped_file(d, 8192 / bs, &data)?;
        f.set_size(5000);
        let mut buf = vec![0xEEu8; 8192];
        let mut open = f.open();
        ensure_eq!(f.read(&mut open, 4096, &mut buf)?, 904, "clamped at EOF");
        ensure_eq!(&buf[..904], &data[4096..5000]);
        ensure!(buf[904..].iter().all(|&b| b == 0xEE), "nothing past EOF returned");
        let reads: vec::Vec<TraceOp> = rig.trace.ops();
        ensure_eq!(reads.len(), 1);
        ensure_eq!(
            (reads[0].op, reads[0].offset, reads[0].len),
            (BioOp::Read, d * bs + 4096, bs),
            "only the block holding EOF, whole (block size {})",
            bs
        );
    }
    Ok(())
}

pub fn buffered_read_unwritten_and_delalloc_read_zero_without_io(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.file()?;
    f.fallocate(0, 8192)?;
    f.set_extent(2, 2, ExtKind::Delalloc, false)?;
    f.set_size(16384);
    let mut open = f.open();
    let mut buf = vec![0xEEu8; 16384];
    ensure_eq!(f.read(&mut open, 0, &mut buf)?, 16384);
    ensure!(buf.iter().all(|&b| b == 0));
    ensure_eq!(rig.trace.counts().reads, 0);
    ensure_eq!(rig.fs.counts().map_read, 2, "one mapping call per extent");
    Ok(())
}

pub fn buffered_read_at_and_past_eof(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 1, &[b'A'; 100])?;
    let mut open = f.open();
    let mut buf = [0u8; 200];
    ensure_eq!(f.read(&mut open, 100, &mut buf)?, 0);
    ensure_eq!(f.read(&mut open, 5000, &mut buf)?, 0);
    ensure_eq!(f.read(&mut open, u64::MAX - 10, &mut buf)?, 0);
    ensure_eq!(f.read(&mut open, 50, &mut buf)?, 50);
    ensure_eq!(f.read(&mut open, 0, &mut buf[..0])?, 0);
    ensure_eq!(&buf[..50], &[b'A'; 50][..]);
    Ok(())
}

pub fn buffered_read_device_error_is_eio(env: &TestEnv) -> TestResult {
    let fault = Arc::new(FaultDisk::new(env.device("scratch0")?));
    let rig = Rig::on(env.platform.clone(), fault.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 2, &[b'A'; 8192])?;
    let rule = fault.add_rule(FaultRule::fail(OpMask::READ))?;
    let mut open = f.open();
    let mut buf = vec![0u8; 8192];
    ensure_eq!(f.read(&mut open, 0, &mut buf), Err(Errno::EIO));
    ensure!(!folio(&f, 0)?.is_uptodate(), "a failed read leaves the folio not uptodate");
    fault.remove_rule(rule);
    ensure_eq!(f.read(&mut open, 0, &mut buf)?, 8192, "the read is retried");
    ensure_eq!(buf, vec![b'A'; 8192]);
    Ok(())
}

pub fn readahead_window_grows_with_large_folios(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let size = 4usize << 20;
    let d = rig.spare_block(0);
    let data = pattern(3, size);
    let f = rig.mapped_file(d, (size / 4096) as u64, &data)?;
    let mut open = f.open();
    let mut buf = vec![0u8; 16384];
    ensure_eq!(f.read(&mut open, 0, &mut buf)?, 16384);
    ensure_eq!(open.ra.window(), (0, 16, 12), "initial window: 4x the request, async part after it");
    ensure_eq!(folio(&f, 0)?.order(), 4, "one 64 KiB folio for the window");
    ensure_eq!(f.read(&mut open, 16384, &mut buf)?, 16384);
    ensure_eq!(open.ra.window(), (16, 64, 64), "the marker started the next window, 4x larger");
    let mut pos = 32768;
    while pos < size {
        ensure_eq!(f.read(&mut open, pos as u64, &mut buf)?, 16384);
        ensure_eq!(&buf[..], &data[pos..pos + 16384], "at {}", pos);
        pos += 16384;
    }
    let st = rig.ctx.stats();
    ensure_eq!(st.readahead_windows, 6, "windows of 16, 64, 128, 256, 512 and the last 48 pages");
    ensure_eq!(st.read_bios, 6, "one bio per window");
    ensure_eq!(rig.trace.counts().read_bytes, size as u64, "every byte read once");
    ensure_eq!(folio(&f, 512)?.order(), 8, "large folios inside the 2 MiB window");
    Ok(())
}

pub fn readahead_random_read_resets_window(env: &TestEnv) -> TestResult {
    let rig = Rig::new(env, RigOpts::new(4096))?;
    let f = rig.mapped_file(rig.spare_block(0), 1024, &pattern(4, 4 << 20))?;
    let mut open = f.open();
    let mut buf = vec![0u8; 4096];
    f.read(&mut open, 1 << 20, &mut buf)?;
    ensure_eq!(open.ra.window(), (256, 1, 0), "a random read reads only what was asked");
    f.read(&mut open, 2 << 20, &mut buf)?;
    ensure_eq!(open.ra.window(), (512, 1, 0));
    f.read(&mut open, (2 << 20) + 4096, &mut buf)?;
    ensure_eq!(open.ra.window(), (513, 4, 4), "reading on from the last window ramps it up again");
    let c = rig.trace.counts();
    ensure_eq!((c.reads, c.read_bytes), (3, 4096 + 4096 + 16384));
    Ok(())
}
