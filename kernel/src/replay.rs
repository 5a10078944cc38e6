//! `mode=replay`: replays the op logs of the `oplogs` disk (`fs/src/replay/bundle.rs`
//! format), each on a freshly formatted frond filesystem (4 KiB blocks) on `scratch0` behind
//! the request queue, and prints each log's output between markers for xtask to extract:
//!
//! ```text
//! REPLAY-BEGIN NAME
//! op 1 write ok
//! ...
//! final size=S fnv=H
//! REPLAY-END NAME ok                 (or: REPLAY-END NAME error: REASON)
//! replay: NAME: N ops in T ms        (outside the markers)
//! ```
//!
//! The run exits with the pass code when every log ran to its end (whether the output matches
//! Linux's is xtask's judgement), with the failure code otherwise.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;

use foliage_drivers::block::queue::Queue;
use foliage_drivers::block::sync::read_at;
use foliage_drivers::block::BlockDevice;
use foliage_drivers::platform::Platform;
use foliage_fs::replay::{bundle, oplog, replay_fresh, FreshOptions};

use crate::disks;
use crate::exit::{exit, ExitCode};
use crate::serial::Console;

fn read_logs(
    platform: &Arc<dyn Platform>,
    dev: &dyn BlockDevice,
) -> Result<vec::Vec<(String, String)>, String> {
    let bytes = dev.info().capacity_bytes();
    let mut index = vec![0u8; bundle::INDEX_BYTES];
    read_at(dev, platform, 0, &mut index).map_err(|e| alloc::format!("reading the index: {e}"))?;
    let mut logs = vec::Vec::new();
    for e in bundle::parse_index(&index, bytes)? {
        // Whole sectors are read; the log is the first `len` bytes.
        let mut buf = vec![0u8; (e.len as usize).next_multiple_of(512)];
        read_at(dev, platform, e.offset, &mut buf)
            .map_err(|err| alloc::format!("reading {}: {err}", e.name))?;
        buf.truncate(e.len as usize);
        let text = String::from_utf8(buf).map_err(|_| alloc::format!("{}: not text", e.name))?;
        logs.push((e.name, text));
    }
    Ok(logs)
}

/// Replays every log and ends the run.
pub fn run(platform: &Arc<dyn Platform>) -> ! {
    let (Some(src), Some(scratch)) = (disks::get("oplogs"), disks::get("scratch0")) else {
        println!("replay: needs the disks `oplogs` and `scratch0`");
        exit(ExitCode::Fail);
    };
    let logs = match read_logs(platform, &*src.dev) {
        Ok(l) => l,
        Err(e) => {
            println!("replay: {e}");
            exit(ExitCode::Fail);
        }
    };
    println!("replay: {} op log(s)", logs.len());
    let dev: Arc<dyn BlockDevice> = Arc::new(Queue::new(scratch.dev.clone()));
    let mut all_ran = true;
    for (name, text) in &logs {
        println!("REPLAY-BEGIN {name}");
        let t0 = platform.now_ns();
        let result = match oplog::parse(text) {
            Ok(log) => {
                replay_fresh(dev.clone(), platform.clone(), &log, FreshOptions::default(), &mut Console)
                    .map(|r| r.executed)
                    .map_err(|e| alloc::format!("{e}"))
            }
            Err(e) => Err(alloc::format!("{e}")),
        };
        match result {
            Ok(executed) => {
                println!("REPLAY-END {name} ok");
                println!("replay: {name}: {executed} ops in {} ms", (platform.now_ns() - t0) / 1_000_000);
            }
            Err(e) => {
                println!("REPLAY-END {name} error: {e}");
                all_ran = false;
            }
        }
    }
    exit(if all_ran { ExitCode::Pass } else { ExitCode::Fail })
}
