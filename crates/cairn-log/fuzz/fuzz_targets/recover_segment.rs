//! Arbitrary bytes as the only segment file of a partition: recovery, reads, appends, close
//! and reopen must not panic nor allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_log::testutil::skip_fsync_for_fuzzing(true);
    let dir = tempfile::tempdir().unwrap();
    cairn_log::testutil::fuzz_segment_recovery(&dir.path().join("p"), data);
});
