//! The engine's portable test suite: [`SUITE`], a `foliage_drivers::selftest` table that runs on
//! any kernel over the block device named `"scratch0"` (the host runs it over a RamDisk from
//! `cargo test`; the Foliage kernel over virtio-blk).
//!
//! Every test builds a [`Rig`]: the test filesystem ([`MemFs`](crate::iomap::testfs::MemFs)) formatted on
//! `TraceDisk -> Queue -> scratch0` (the trace records the engine's own bios before splitting
//! and merging, so tests assert exact I/O), with a private page cache. Crash tests build theirs
//! on a small RamDisk behind a CrashRecorder instead (the base image must be known).
//!
//! Test names follow the behaviour reference (`<area>_t<n>_...` for its scenarios).
//!
//! Lock order: tests hold no locks. Linux <-> here: xfstests' generic/ and the iomap KUnit
//! ideas, as a table of functions.

mod common;
mod cow;
mod crash;
mod dax;
mod dio;
mod doubles;
mod fsync;
mod inline;
mod iter;
mod model;
mod poison;
mod poison_read;
mod read;
mod revalidate;
mod truncate;
mod write;
mod writeback;

pub use common::{Rig, RigOpts};
pub use doubles::{DmaRule, PickyPlatform};

use foliage_drivers::selftest::TestCase;

macro_rules! cases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        &[$(TestCase { name: concat!("iomap::", stringify!($name)), run: $module::$name }),*]
    };
}

/// Every engine test, in order.
pub static SUITE: &[TestCase] = cases![
    iter::iter_t1_two_extents_two_mappings_two_ends,
    iter::iter_t2_stale_at_second_folio_remaps_there,
    iter::iter_t3_no_progress_without_stale_ends,
    iter::iter_stale_retries_are_capped,
    iter::iter_advance_past_length_is_eio,
    iter::iter_mapping_not_covering_pos_is_eio,
    iter::iter_end_error_only_without_progress,
    read::buffered_read_t1_hole_reads_zero_without_io,
    read::buffered_read_t2_partial_folio_reads_only_missing_blocks,
    read::buffered_read_t3_eof_block_read_whole_and_clamped,
    read::buffered_read_unwritten_and_delalloc_read_zero_without_io,
    read::buffered_read_at_and_past_eof,
    read::buffered_read_device_error_is_eio,
    read::readahead_window_grows_with_large_folios,
    read::readahead_random_read_resets_window,
    write::buffered_write_t1_one_device_read_for_small_write,
    write::buffered_write_t1_one_device_read_1k_blocks,
    write::buffered_write_t2_hole_no_read_zeroes_around,
    write::buffered_write_t3_short_copy_retries_without_partial_blocks,
    write::buffered_write_t4_truncate_then_extend_zeroes_gap,
    write::buffered_write_one_mapping_call_per_extent_64mib,
    write::buffered_write_past_eof_zeroes_stale_eof_block_tail,
    write::buffered_write_limits,
    write::buffered_write_throttled_by_small_cache,
    writeback::writeback_t1_two_1k_writes_for_dirty_blocks_1_and_3,
    writeback::writeback_t2_straddling_eof_zeroes_tail_and_skips_beyond,
    writeback::writeback_t3_sixteen_folios_one_bio,
    writeback::writeback_t3_unwritten_middle_three_ioends_converted,
    writeback::writeback_t4_eio_reported_once_by_fsync,
    writeback::writeback_boundary_and_flags_split_ioends,
    writeback::writeback_many_ioends_in_flight,
    writeback::writeback_background_budget,
    writeback::writeback_completions_merge_contiguous_ioends,
    fsync::fsync_t2_errseq_two_openers,
    fsync::fsync_commit_after_data_with_preflush_fua,
    fsync::fsync_flush_when_nothing_to_commit,
    fsync::odsync_overwrite_single_fua_write_no_flush,
    fsync::osync_write_through_merges_chunks_and_commits_size,
    fsync::odsync_fallback_for_delalloc_dirties_then_syncs,
    fsync::osync_write_through_error_reported_to_writer,
    crash::fsync_t1_power_cut_keeps_fsynced_data_and_size,
    crash::osync_write_through_durable_on_return,
    truncate::truncate_t1_down_then_up_zeroes_tail,
    truncate::zero_range_t2_unwritten_with_dirty_cache,
    truncate::punch_hole_t3_zeroes_range_and_frees_block,
    truncate::truncate_page_and_zero_range_skip_holes,
    truncate::truncate_down_drops_folios_and_frees_blocks,
    inline::inline_t1_read_without_block_io,
    inline::inline_t2_write_no_dirty_folio_persists_after_remount,
    inline::inline_t3_growth_moves_to_blocks,
    revalidate::revalidate_write_rmw_reads_new_location,
    revalidate::revalidate_writeback_writes_new_location,
    model::model_random_ops_match_vec,
    poison::poison_write_shapes_never_show_old_memory,
    poison::poison_model_random_writes_never_show_old_memory,
    poison_read::poison_read_shapes_never_show_old_memory,
    poison_read::poison_readahead_folios_reclaimed_before_use,
    poison_read::poison_model_random_reads_never_show_old_memory,
    dio::dio_t1_sub_block_write_into_empty_file_zeroes_block,
    dio::dio_t2_coherent_with_dirty_cache,
    dio::dio_t3_misaligned_einval_hole_zeros_eof_zero,
    dio::dio_read_clamped_at_eof_zeroes_past_it,
    dio::dio_unwritten_sub_block_write_zeroes_edges_and_converts,
    dio::dio_write_extends_size_and_converts_at_completion,
    dio::dio_many_bios_in_flight,
    dio::dio_batch_requests_in_flight_together,
    dio::dio_bounces_memory_the_device_cannot_reach,
    dio::dio_zero_copy_page_segments_when_only_pages_are_reachable,
    dio::dio_buffer_not_dma_aligned_einval,
    dio::dio_not_for_direct_continues_buffered,
    dio::dio_inline_mapping_copied_directly,
    dio::dio_odsync_t3_overwrite_fua_and_extending_commit,
    dio::dio_write_error_fails_without_size_change,
    dio::dio_sub_block_overwrite_1k_blocks_writes_only_its_sectors,
    dio::dio_read_op_is_direct,
    dio::dio_batch_back_to_back_requests_share_one_mapping_walk,
    dio::dio_batch_requests_sharing_a_block_run_one_at_a_time,
    dio::dio_seq_1m_from_contiguous_buffers_one_bio_one_segment_each,
    cow::cow_t1_write_into_clone_reads_around_from_source,
    cow::cow_io_error_cancels_and_keeps_old_data,
    cow::cow_direct_write_sub_block_reads_around,
    cow::cow_unshare_makes_range_exclusive,
    cow::cow_zero_range_and_truncate_on_shared_blocks,
    cow::clone_t2_eof_block_rules,
    cow::clone_past_eof_zeroes_the_gap,
    cow::clone_drops_destination_cache,
    cow::dedupe_t3_identical_shares_different_differs,
    cow::clone_survives_remount_with_shared_counts,
    dax::dax_t1_reflinked_write_copies_around,
    dax::dax_t2_cow_over_hole_zeroes_head_and_tail,
    dax::dax_copy_around_copies_source_and_whole_aligned_blocks,
    dax::dax_write_new_and_unwritten_blocks_zero_edges,
    dax::dax_zero_range_on_shared_blocks_copies_around,
    dax::dax_truncate_down_then_up_zeroes_tail,
];
