//! Arbitrary bytes as a produce request's records: parsing, decoding (all codecs), leader and
//! follower appends must not panic; whatever is accepted reads back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_log::testutil::skip_fsync_for_fuzzing(true);
    let dir = tempfile::tempdir().unwrap();
    cairn_log::testutil::fuzz_append(dir.path(), data);
});
