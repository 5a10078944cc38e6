//! The filesystem's portable self-test suites: `foliage_drivers::selftest` tables that run the
//! file API ([`crate::vfs`]) over frond on the block device named `"scratch0"` (the host runs
//! them over a RamDisk from `cargo test`, the Foliage kernel over virtio-blk).
//!
//! | table | what |
//! |---|---|
//! | [`BUFFERED`] | buffered scenarios of the behaviour reference (§2, §3, §4, §7, §8, §11) through frond, multi-file workloads, a seeded model test, remount and verify |
//! | [`DIRECT`] | O_DIRECT scenarios (§5), direct / buffered mixing, and the direct path at the device (exact bios, no folios, zeroing, unwritten until completion, COW of a clone, size at completion, I/O errors, inline / delalloc continuation) |
//! | [`COW`] | clone, COW writes to either side, clone of a clone, dedupe, unshare, clone then truncate / punch, copy range, COW on a full disk; fsck after each |
//! | [`ERRORS`] | bad input: invalid arguments, a full disk, device errors, corrupt images |
//! | [`CRASH`] | every crash state of several workloads (CrashRecorder over a private RamDisk; run on the host) |
//!
//! Every test formats `scratch0` (at most [`rig::FS_BYTES`]), ends by unmounting and running an
//! offline fsck that must be clean; block sizes 1 KiB, 4 KiB and 64 KiB are exercised with 4 KiB
//! pages and folios up to the cache's largest order (folio size independent of block size).
//!
//! Lock order: tests hold no locks. Linux <-> here: xfstests' generic/ reflink, punch,
//! truncate, fsync and errseq tests, as a table of functions.

pub mod buffered;
pub mod cow;
pub mod crash;
pub mod direct;
pub mod direct_path;
pub mod errors;
pub mod rig;
pub mod workload;

use foliage_drivers::selftest::TestCase;

macro_rules! cases {
    ($suite:literal; $($module:ident :: $name:ident),* $(,)?) => {
        &[$(TestCase { name: concat!($suite, "::", stringify!($name)), run: $module::$name }),*]
    };
}

/// Buffered I/O through frond.
pub static BUFFERED: &[TestCase] = cases![
    "fs_buffered";
    buffered::write_read_remount_every_block_size,
    buffered::buffered_t1_small_write_into_written_block,
    buffered::buffered_t4_truncate_then_extend_zeroes_gap,
    buffered::buffered_read_t1_sparse_file,
    buffered::inline_small_file_and_growth,
    buffered::truncate_t1_down_then_up,
    buffered::zero_range_t2_over_dirty_unwritten,
    buffered::punch_t3_frees_whole_blocks,
    buffered::collapse_and_insert_range,
    buffered::append_and_sync_flags,
    buffered::fsync_and_odsync_device_io,
    workload::many_files_remount_and_verify,
    workload::namespace_through_the_file_api,
    workload::open_unlinked_file_lives_until_close,
    workload::background_work_under_small_cache,
    workload::model_random_ops_match_vec,
    workload::inode_table_eviction_and_statfs,
];

/// Reflink and copy-on-write through frond.
pub static COW: &[TestCase] = cases![
    "fs_cow";
    cow::cow_t1_clone_then_write_either_side,
    cow::cow_t2_clone_eof_block_rules,
    cow::cow_t3_dedupe_same_and_differs,
    cow::clone_of_clone_and_writes,
    cow::unshare_makes_blocks_private,
    cow::clone_then_truncate_and_punch,
    cow::copy_range_reflinks_or_copies,
    cow::cow_on_full_disk_enospc,
];

/// Bad input: arguments, a full disk, device errors, corrupt images.
pub static ERRORS: &[TestCase] = cases![
    "fs_errors";
    errors::invalid_arguments,
    errors::full_disk_enospc_is_clean,
    errors::write_eio_reported_once_per_opener,
    errors::read_and_flush_eio_returned,
    errors::corrupt_images_refused,
];

/// Direct I/O.
pub static DIRECT: &[TestCase] = cases![
    "fs_direct";
    direct::direct_t1_sub_block_write_into_empty_file,
    direct::direct_t2_coherent_with_buffered,
    direct::direct_t3_alignment_holes_and_eof,
    direct::direct_buffered_mixing_1k_blocks,
    direct::atomic_write_rules,
    direct::atomic_write_multi_block,
    direct_path::direct_io_exact_device_io,
    direct_path::direct_sub_block_zeroing,
    direct_path::direct_hole_unwritten_until_completion,
    direct_path::direct_extending_writes_size_at_completion,
    direct_path::direct_cow_write_keeps_clone,
    direct_path::direct_over_inline_and_delalloc,
    direct_path::direct_buffered_coherence,
    direct_path::atomic_write_from_memory_split_across_pages_is_one_segment,
];

/// Crash states of several workloads (host).
pub static CRASH: &[TestCase] = cases![
    "fs_crash";
    crash::crash_fsync_data_survives,
    crash::crash_clone_cow_never_touches_source,
    crash::crash_namespace_after_sync,
    crash::crash_truncate_punch_unlink,
    crash::crash_atomic_writes_untorn,
    crash::crash_atomic_multi_block_untorn,
    crash::crash_direct_writes_never_stale,
];

/// The tables a kernel runs (every one but [`CRASH`], which the host runs).
pub static KERNEL_TABLES: &[&[TestCase]] = &[BUFFERED, DIRECT, COW, ERRORS];
