//! Property test: a `PartitionLog` against a model (a `Vec` of the batches it should hold)
//! through random appends, reads, timestamp lookups, rolls, flushes, truncations, retention,
//! DeleteRecords, crashes (drop without close, optionally chopping unflushed bytes off the
//! tail of the last segment) and clean reopens. After every step: the invariants
//! `log_start_offset <= recovery_point <= log_end_offset`, the offsets, and the full content
//! byte for byte. After a crash every flushed batch must still be there.

use std::path::Path;

use cairn_log::testutil::{BatchBuilder, TestRecord};
use cairn_log::{Batches, FlushPolicy, LogConfig, PartitionLog, TimestampOffset};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: usize,
        value_bytes: usize,
        ts: i64,
        epoch_bump: bool,
    },
    /// A replicated batch with explicit offsets, `gap` offsets after the log end.
    FollowerAppend {
        records: usize,
        gap: i64,
        ts: i64,
    },
    Read {
        at: u16,
        max_bytes: u16,
    },
    ReadByTimestamp {
        target: i64,
    },
    Roll,
    Flush,
    Truncate {
        at: u16,
    },
    DeleteRecords {
        at: u16,
    },
    Retention {
        keep_bytes: u16,
    },
    Crash {
        chop: u16,
    },
    CleanReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..5, 0usize..200, 0i64..1000, proptest::bool::weighted(0.05))
            .prop_map(|(records, value_bytes, ts, epoch_bump)| Op::Append { records, value_bytes, ts, epoch_bump }),
        2 => (1usize..4, 0i64..4, 0i64..1000)
            .prop_map(|(records, gap, ts)| Op::FollowerAppend { records, gap, ts }),
        3 => (any::<u16>(), 1u16..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => (0i64..1100).prop_map(|target| Op::ReadByTimestamp { target }),
        1 => Just(Op::Roll),
        2 => Just(Op::Flush),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => (0u16..6000).prop_map(|keep_bytes| Op::Retention { keep_bytes }),
        1 => any::<u16>().prop_map(|chop| Op::Crash { chop }),
        1 => Just(Op::CleanReopen),
    ]
}

#[derive(Clone, Debug)]
struct Stored {
    bytes: Vec<u8>,
    base: i64,
    last: i64,
    ts: i64,
}

struct Model {
    batches: Vec<Stored>,
    log_start: i64,
    leo: i64,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3000,
        segment_index_bytes: 240,
        index_interval_bytes: 100,
        retention_ms: -1,
        file_delete_delay_ms: 0,
        flush_policy: FlushPolicy::GroupCommit,
        ..LogConfig::default()
    }
}

fn pick(at: u16, lo: i64, hi: i64) -> i64 {
    lo + (at as i64) % (hi - lo + 1)
}

fn check(log: &PartitionLog, m: &Model) {
    assert!(
        log.log_start_offset() <= log.recovery_point(),
        "start > recovery point"
    );
    assert!(
        log.recovery_point() <= log.log_end_offset(),
        "recovery point > end"
    );
    assert_eq!(log.log_end_offset(), m.leo, "log end offset");
    assert_eq!(log.log_start_offset(), m.log_start, "log start offset");
    // Full content, batch by batch.
    let mut got = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20, i64::MAX, true).unwrap();
        if r.records.is_empty() {
            // Offsets between the last batch and the log end offset can be a gap with no
            // batch (a follower append with a gap rolled an empty segment whose base is the
            // log end offset, and a crash chopped the batches after it): as in Kafka,
            // reading there returns nothing until data arrives. Anything else is a stall.
            assert!(
                m.batches.iter().all(|b| b.last < at),
                "no progress at {at} although the model holds batches beyond it"
            );
            break;
        }
        for item in Batches::new(&r.records) {
            let (h, b) = item.unwrap();
            assert!(h.base_offset <= at.max(h.base_offset));
            got.push(b.to_vec());
            at = h.last_offset() + 1;
        }
    }
    let want: Vec<Vec<u8>> = m
        .batches
        .iter()
        .filter(|b| b.last >= m.log_start)
        .map(|b| b.bytes.clone())
        .collect();
    assert_eq!(got.len(), want.len(), "batch count");
    assert!(got == want, "content differs");
}

fn last_segment_path(dir: &Path, log: &PartitionLog) -> std::path::PathBuf {
    dir.join(format!(
        "{:020}.log",
        log.segment_base_offsets().last().unwrap()
    ))
}

fn run(ops: Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("p-0");
    let mut log = PartitionLog::open(&dir, config(), 0).unwrap();
    let mut m = Model {
        batches: Vec::new(),
        log_start: 0,
        leo: 0,
    };
    let mut epoch = 0;
    for op in ops {
        match op {
            Op::Append {
                records,
                value_bytes,
                ts,
                epoch_bump,
            } => {
                if epoch_bump {
                    epoch += 1;
                }
                let b = BatchBuilder::new(0)
                    .records(
                        (0..records)
                            .map(|i| TestRecord::kv(ts, format!("k{i}"), vec![7u8; value_bytes])),
                    )
                    .build();
                let info = log.append_as_leader(&b, epoch, 5000).unwrap();
                assert_eq!(info.base_offset, m.leo);
                m.batches.push(Stored {
                    bytes: cairn_log::testutil::stored_bytes(&log, &info),
                    base: info.base_offset,
                    last: info.last_offset,
                    ts,
                });
                m.leo = info.last_offset + 1;
            }
            Op::FollowerAppend { records, gap, ts } => {
                let base = m.leo + gap;
                let b = BatchBuilder::new(base)
                    .leader_epoch(epoch)
                    .records((0..records).map(|i| TestRecord::kv(ts, format!("f{i}"), [1u8; 20])))
                    .build();
                let info = log.append_as_follower(&b).unwrap();
                assert_eq!(
                    (info.base_offset, info.last_offset),
                    (base, base + records as i64 - 1)
                );
                m.batches.push(Stored {
                    bytes: b,
                    base,
                    last: info.last_offset,
                    ts,
                });
                m.leo = info.last_offset + 1;
            }
            Op::Read { at, max_bytes } => {
                let off = pick(at, m.log_start, m.leo);
                let r = log.read(off, max_bytes as usize, i64::MAX, true).unwrap();
                if off == m.leo {
                    assert!(r.records.is_empty());
                } else {
                    let i = m.batches.iter().position(|b| b.last >= off).unwrap();
                    let mut n = 0;
                    let mut bytes = 0;
                    for item in Batches::new(&r.records) {
                        let (_, b) = item.unwrap();
                        assert_eq!(b, &m.batches[i + n].bytes[..], "read at {off}");
                        n += 1;
                        bytes += b.len();
                    }
                    assert!(n >= 1);
                    assert!(n == 1 || bytes <= max_bytes as usize);
                }
            }
            Op::ReadByTimestamp { target } => {
                let want = m
                    .batches
                    .iter()
                    .find(|b| b.last >= m.log_start && b.ts >= target)
                    .map(|b| TimestampOffset {
                        timestamp: b.ts,
                        offset: b.base.max(m.log_start),
                    });
                assert_eq!(
                    log.fetch_offset_by_timestamp(target).unwrap(),
                    want,
                    "by timestamp {target}"
                );
            }
            Op::Roll => log.roll(0).unwrap(),
            Op::Flush => {
                let t = log.begin_flush();
                if let Some(t) = t {
                    t.sync().unwrap();
                    log.complete_flush(t.up_to_offset);
                }
                assert_eq!(log.recovery_point(), m.leo);
            }
            Op::Truncate { at } => {
                let off = pick(at, m.log_start, m.leo);
                log.truncate_to(off).unwrap();
                if off < m.leo {
                    // A batch holding `off` goes whole; the end is where the data ends, or
                    // a segment base inside the offset gap before `off`.
                    m.batches.retain(|b| b.last < off);
                    let data_end = m.batches.last().map_or(0, |b| b.last + 1);
                    m.leo = log.log_end_offset();
                    if m.leo >= m.log_start {
                        assert!(
                            m.leo >= data_end && m.leo <= off,
                            "end {} outside [{data_end}, {off}]",
                            m.leo
                        );
                    }
                    if m.leo < m.log_start {
                        // The cut batch straddled the log start: the log starts over there.
                        m.leo = m.log_start;
                        m.batches.clear();
                    }
                }
            }
            Op::DeleteRecords { at } => {
                let off = pick(at, m.log_start, m.leo);
                assert_eq!(log.delete_records(off).unwrap(), off.max(m.log_start));
                m.log_start = off.max(m.log_start);
            }
            Op::Retention { keep_bytes } => {
                log.update_config(LogConfig {
                    retention_bytes: keep_bytes as i64,
                    ..config()
                });
                log.delete_old_segments(10_000).unwrap();
                log.update_config(config());
                assert!(log.log_start_offset() >= m.log_start);
                m.log_start = log.log_start_offset();
            }
            Op::Crash { chop } => {
                let flushed = log.recovery_point();
                let last_base = *log.segment_base_offsets().last().unwrap();
                let chop_max: usize = m
                    .batches
                    .iter()
                    .filter(|b| b.base >= flushed.max(last_base))
                    .map(|b| b.bytes.len())
                    .sum();
                let path = last_segment_path(&dir, &log);
                drop(log);
                let chop = (chop as usize) % (chop_max + 1);
                if chop > 0 {
                    let len = std::fs::metadata(&path).unwrap().len();
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.set_len(len - chop as u64).unwrap();
                }
                log = PartitionLog::open(&dir, config(), 0).unwrap();
                let leo = log.log_end_offset();
                assert!(leo >= flushed, "flushed data lost: {leo} < {flushed}");
                m.batches.retain(|b| b.last < leo);
                m.leo = leo;
            }
            Op::CleanReopen => {
                log.close().unwrap();
                log = PartitionLog::open(&dir, config(), 0).unwrap();
            }
        }
        check(&log, &m);
    }
    log.close().unwrap();
    let log = PartitionLog::open(&dir, config(), 0).unwrap();
    check(&log, &m);
}

proptest! {
    // 32 cases keep the crate's test run short on a 2-core CI machine; set PROPTEST_CASES
    // for a longer hunt. Failures are saved next to this file (commit them).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(32),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
