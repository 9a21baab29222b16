//! Compaction against a model of "last value per key".

use std::collections::{BTreeMap, HashMap};

use cairn_log::testutil::{BatchBuilder, TestRecord};
use cairn_log::{Batches, CleanupPolicy, CompressionType, LogConfig, PartitionLog, decode_records};
use proptest::prelude::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        segment_index_bytes: 400,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// (offset, key, value) of every record in the log, in order.
fn records(log: &PartitionLog) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20, i64::MAX, true).unwrap();
        if r.records.is_empty() {
            break;
        }
        for item in Batches::new(&r.records) {
            let (h, b) = item.unwrap();
            for rec in decode_records(b).unwrap() {
                out.push((
                    h.base_offset + rec.offset_delta as i64,
                    rec.key.unwrap().to_vec(),
                    rec.value.map(|v| v.to_vec()),
                ));
            }
            at = h.last_offset() + 1;
        }
    }
    out
}

fn put(log: &mut PartitionLog, codec: CompressionType, kvs: &[(&str, Option<&str>)], ts: i64) {
    let b = BatchBuilder::new(0)
        .compression(codec)
        .records(kvs.iter().map(|(k, v)| match v {
            Some(v) => TestRecord::kv(ts, k, v),
            None => TestRecord::tombstone(ts, k),
        }))
        .build();
    log.append_as_leader(&b, 0, ts).unwrap();
}

#[test]
fn keeps_the_last_value_per_key_and_expires_tombstones() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    put(
        &mut log,
        CompressionType::None,
        &[("a", Some("1")), ("b", Some("1"))],
        100,
    );
    put(
        &mut log,
        CompressionType::Zstd,
        &[("a", Some("2")), ("c", Some("1"))],
        100,
    );
    put(
        &mut log,
        CompressionType::Snappy,
        &[("b", None), ("a", Some("3"))],
        100,
    );
    log.roll(0).unwrap();
    put(&mut log, CompressionType::None, &[("c", Some("2"))], 100);
    let leo = log.log_end_offset();
    let stats = log.clean(500).unwrap();
    assert_eq!(stats.segments_cleaned, 1);
    assert_eq!(stats.records_removed, 3);
    assert_eq!(log.log_end_offset(), leo);
    let got = records(&log);
    assert_eq!(
        got,
        vec![
            (3, b"c".to_vec(), Some(b"1".to_vec())), // c's last value is in the active segment
            (4, b"b".to_vec(), None),
            (5, b"a".to_vec(), Some(b"3".to_vec())),
            (6, b"c".to_vec(), Some(b"2".to_vec())),
        ]
    );
    // Offsets in the gaps resolve to the next batch.
    assert_eq!(
        cairn_log::BatchHeader::parse(&log.read(0, 1, i64::MAX, true).unwrap().records)
            .unwrap()
            .base_offset,
        2
    );
    // Past delete.retention.ms the tombstone goes too.
    let stats = log.clean(100 + 1001).unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    assert!(records(&log).iter().all(|(_, k, _)| k != b"b"));
    // The cleaned segment survives a clean and an unclean reopen.
    let want = records(&log);
    log.close().unwrap();
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(records(&log), want);
    drop(log);
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(records(&log), want);
}

#[test]
fn delete_policy_does_not_compact_and_lag_is_respected() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(
        d.path(),
        LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..config()
        },
        0,
    )
    .unwrap();
    put(
        &mut log,
        CompressionType::None,
        &[("a", Some("1")), ("a", Some("2"))],
        100,
    );
    log.roll(0).unwrap();
    assert_eq!(log.clean(10_000).unwrap().records_removed, 0);
    log.update_config(LogConfig {
        min_compaction_lag_ms: 5000,
        ..config()
    });
    assert_eq!(log.clean(1000).unwrap().records_removed, 0);
    assert_eq!(log.clean(5100).unwrap().records_removed, 1);
}

#[test]
fn a_pass_is_abandoned_when_the_log_was_truncated_meanwhile() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    put(
        &mut log,
        CompressionType::None,
        &[("a", Some("1")), ("a", Some("2"))],
        100,
    );
    log.roll(0).unwrap();
    put(&mut log, CompressionType::None, &[("b", Some("1"))], 100);
    let task = log.prepare_clean(1000).unwrap();
    let cleaned = task.run().unwrap(); // no lock held here: appends could proceed
    put(&mut log, CompressionType::None, &[("c", Some("1"))], 100);
    log.truncate_to(3).unwrap();
    assert_eq!(log.finish_clean(cleaned).unwrap().records_removed, 0);
    assert_eq!(records(&log).len(), 3);
    let leftovers = std::fs::read_dir(d.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".cleaned")
        })
        .count();
    assert_eq!(leftovers, 0);
}

type Value = Option<Vec<u8>>;
/// A write as the model remembers it: key, value (None = tombstone), timestamp.
type Write = (Vec<u8>, Value, i64);

#[derive(Clone, Debug)]
enum Op {
    Put {
        codec: u8,
        kvs: Vec<(u8, Option<u8>)>,
    },
    Roll,
    Clean {
        advance_ms: i64,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..5, proptest::collection::vec((0u8..8, proptest::option::weighted(0.85, any::<u8>())), 1..6))
            .prop_map(|(codec, kvs)| Op::Put { codec, kvs }),
        1 => Just(Op::Roll),
        2 => (0i64..1500).prop_map(|advance_ms| Op::Clean { advance_ms }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(32),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compaction_matches_last_value_per_key(ops in proptest::collection::vec(op(), 1..40)) {
        let d = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
        let codecs = [CompressionType::None, CompressionType::Gzip, CompressionType::Snappy, CompressionType::Lz4, CompressionType::Zstd];
        // Every write ever made, by offset, and the last write per key.
        let mut written: BTreeMap<i64, Write> = BTreeMap::new();
        let mut now = 0i64;
        for op in ops {
            match op {
                Op::Put { codec, kvs } => {
                    now += 10;
                    let b = BatchBuilder::new(0)
                        .compression(codecs[codec as usize])
                        .records(kvs.iter().map(|(k, v)| match v {
                            Some(v) => TestRecord::kv(now, [*k], [*v]),
                            None => TestRecord::tombstone(now, [*k]),
                        }))
                        .build();
                    let info = log.append_as_leader(&b, 0, now).unwrap();
                    for (i, (k, v)) in kvs.iter().enumerate() {
                        written.insert(info.base_offset + i as i64, (vec![*k], v.map(|v| vec![v]), now));
                    }
                }
                Op::Roll => log.roll(now).unwrap(),
                Op::Clean { advance_ms } => {
                    now += advance_ms;
                    let leo = log.log_end_offset();
                    log.clean(now).unwrap();
                    prop_assert_eq!(log.log_end_offset(), leo);
                }
                Op::Reopen { clean } => {
                    if clean { log.close().unwrap() } else { log.flush().unwrap(); drop(log) }
                    log = PartitionLog::open(d.path(), config(), 0).unwrap();
                }
            }
            let got = records(&log);
            // Offsets increase and every record is one that was written at that offset.
            for w in got.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
            }
            for (off, k, v) in &got {
                let (wk, wv, _) = &written[off];
                prop_assert_eq!((k, v), (wk, wv), "offset {}", off);
            }
            // The last write of every key is present, unless it is an expired tombstone.
            let mut last: HashMap<&Vec<u8>, (i64, &Value, i64)> = HashMap::new();
            for (off, (k, v, ts)) in &written {
                last.insert(k, (*off, v, *ts));
            }
            for (k, (off, v, ts)) in last {
                let present = got.iter().any(|(o, _, _)| *o == off);
                let expired_tombstone = v.is_none() && ts < now - config().delete_retention_ms;
                prop_assert!(present || expired_tombstone, "last write of {:?} at {} missing", k, off);
            }
        }
    }
}
