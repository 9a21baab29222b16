//! The fuzz targets' bodies (`cairn_log::testutil::fuzz_*`) run on stable with proptest, on
//! random bytes and on valid batches with random damage, so CI exercises them without
//! cargo-fuzz. `cd crates/cairn-log/fuzz && cargo +nightly fuzz run recover_segment` goes
//! further.

use cairn_log::CompressionType;
use cairn_log::testutil::{BatchBuilder, TestRecord, fuzz_append, fuzz_segment_recovery};
use proptest::prelude::*;

fn valid_batches(n: usize, codec: u8) -> Vec<u8> {
    let codecs = [
        CompressionType::None,
        CompressionType::Gzip,
        CompressionType::Snappy,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];
    (0..n)
        .flat_map(|i| {
            BatchBuilder::new(i as i64 * 3)
                .compression(codecs[codec as usize % 5])
                .records(
                    (0..3).map(|j| TestRecord::kv(1000 + j, format!("k{j}"), vec![j as u8; 20])),
                )
                .build()
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    Splice(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Damage::Flip(at, x)),
        any::<usize>().prop_map(Damage::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, b)| Damage::Splice(at, b)),
    ]
}

fn apply(mut data: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        if data.is_empty() {
            break;
        }
        match d {
            Damage::Flip(at, x) => {
                let i = at % data.len();
                data[i] ^= x;
            }
            Damage::Truncate(at) => {
                let n = at % data.len();
                data.truncate(n);
            }
            Damage::Splice(at, b) => {
                let i = at % data.len();
                data.splice(i..i, b.iter().copied());
            }
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn recovery_survives_damaged_segments(mode in any::<u8>(), n in 0usize..6, codec in 0u8..5, damages in proptest::collection::vec(damage(), 0..4)) {
        cairn_log::testutil::skip_fsync_for_fuzzing(true);
        let d = tempfile::tempdir().unwrap();
        let data = [vec![mode & 0x0f], apply(valid_batches(n, codec), &damages)].concat();
        fuzz_segment_recovery(&d.path().join("p"), &data);
    }

    #[test]
    fn recovery_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        cairn_log::testutil::skip_fsync_for_fuzzing(true);
        let d = tempfile::tempdir().unwrap();
        fuzz_segment_recovery(&d.path().join("p"), &data);
    }

    #[test]
    fn append_survives_damaged_batches(n in 1usize..4, codec in 0u8..5, damages in proptest::collection::vec(damage(), 0..3)) {
        cairn_log::testutil::skip_fsync_for_fuzzing(true);
        let d = tempfile::tempdir().unwrap();
        fuzz_append(d.path(), &apply(valid_batches(n, codec), &damages));
    }

    #[test]
    fn append_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        cairn_log::testutil::skip_fsync_for_fuzzing(true);
        let d = tempfile::tempdir().unwrap();
        fuzz_append(d.path(), &data);
    }
}

/// Writes seed inputs for the cargo-fuzz targets (`fuzz/seeds/<target>/`), so the fuzzers
/// start from valid segments and batches of every codec instead of empty inputs:
/// `cargo test -p cairn-log --test fuzz_smoke write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for target in ["recover_segment", "append_batch"] {
        std::fs::create_dir_all(root.join(target)).unwrap();
    }
    for codec in 0u8..5 {
        for n in [1usize, 3] {
            let batches = valid_batches(n, codec);
            for mode in [0u8, 1, 2, 3] {
                let seed = [vec![mode], batches.clone()].concat();
                std::fs::write(
                    root.join(format!("recover_segment/codec{codec}-n{n}-mode{mode}")),
                    seed,
                )
                .unwrap();
            }
            std::fs::write(
                root.join(format!("append_batch/codec{codec}-n{n}")),
                &batches,
            )
            .unwrap();
        }
    }
}
