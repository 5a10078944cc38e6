//! §11 T1 and write-through durability, checked on every crash state a volatile write cache
//! allows (CrashRecorder over a private RamDisk, so the base image is known on any kernel).

use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::selftest::{TestEnv, TestResult};
use foliage_drivers::{ensure, ensure_eq};

use super::common::{folio, Rig, RigOpts};
use crate::block::{BlockDevice, CrashLog, CrashRecorder, RamDisk};
use crate::iomap::WriteFlags;

const DISK: u64 = 5 << 20;

fn crash_rig(env: &TestEnv) -> Result<(Rig, Arc<CrashRecorder>), foliage_drivers::selftest::TestFailure> {
    let ram: Arc<dyn BlockDevice> = Arc::new(RamDisk::new(DISK, 512)?);
    let rec = Arc::new(CrashRecorder::new(ram));
    let rig = Rig::on(env.platform.clone(), rec.clone() as Arc<dyn BlockDevice>, RigOpts::new(4096))?;
    Ok((rig, rec))
}

fn mount(
    env: &TestEnv,
    log: &CrashLog,
    state: &crate::block::CrashState,
) -> Result<Option<Arc<crate::iomap::testfs::MemFs>>, foliage_drivers::selftest::TestFailure> {
    let image = log.image(&vec![0u8; DISK as usize], state)?;
    let dev: Arc<dyn BlockDevice> = Arc::new(RamDisk::from_image(image, 512));
    Rig::mount_on(env.platform.clone(), dev, RigOpts::new(4096))
}

pub fn fsync_t1_power_cut_keeps_fsynced_data_and_size(env: &TestEnv) -> TestResult {
    let (rig, rec) = crash_rig(env)?;
    let f = rig.file()?;
    let id = f.id();
    let mut open = f.open();
    let expect = [vec![b'A'; 10000], vec![b'B'; 10000]].concat();
    f.write(&mut open, 0, &expect[..10000])?;
    f.fsync(&mut open, false)?;
    // More data written back but never fsynced: its size is never committed.
    f.write(&mut open, 10000, &expect[10000..])?;
    f.sync_data()?;
    let log = rec.log();
    let last = log.flush_points() - 1;
    let (mut checked, mut at_last) = (0, 0);
    for state in log.crash_states(3, 0x1F5C) {
        let Some(fs) = mount(env, &log, &state)? else { continue };
        let Some(file) = fs.file(id) else { continue };
        let size = file.size();
        ensure!(size == 0 || size == 10000, "point {}: size {} was never fsynced", state.point, size);
        let data = file.read_disk(0, size as usize)?;
        ensure!(
            data == expect[..size as usize],
            "point {}: the size exposes data that is not durable",
            state.point
        );
        if state.point == last {
            ensure_eq!(size, 10000, "the fsynced size survives");
            at_last += 1;
        }
        checked += 1;
    }
    ensure!(checked >= 4 && at_last >= 1, "{} crash states checked, {} at the last point", checked, at_last);
    Ok(())
}

pub fn osync_write_through_durable_on_return(env: &TestEnv) -> TestResult {
    let (rig, rec) = crash_rig(env)?;
    let f = rig.mapped_file(rig.spare_block(0), 1, &[b'A'; 4096])?;
    rig.fs.commit()?;
    let id = f.id();
    let mut open = f.open();
    ensure_eq!(f.write_flags(&mut open, 0, &[b'S'; 4096], WriteFlags::DSYNC)?, 4096);
    let fo = folio(&f, 0)?;
    ensure!(!fo.is_dirty() && !fo.is_writeback(), "write-through leaves the folio clean");
    let log = rec.log();
    let point = log.flush_points() - 1;
    let window = log.window(point)?;
    let state = crate::block::CrashState { point, subset: vec![false; window.len()] };
    let fs = mount(env, &log, &state)?
        .ok_or_else(|| alloc::string::String::from("no filesystem after the crash"))?;
    let file = fs.file(id).ok_or_else(|| alloc::string::String::from("file lost"))?;
    ensure_eq!(
        file.read_disk(0, 4096)?,
        vec![b'S'; 4096],
        "durable when the write returned, nothing else needed"
    );
    Ok(())
}
