use super::*;
use crate::config::CleanupPolicy;
use crate::testutil::{BatchBuilder, TestRecord, simple_batch};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_index_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, c: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, c, 0).unwrap()
}

fn batch_with_ts(n: usize, ts: i64) -> Vec<u8> {
    simple_batch(n, 50, ts)
}

/// Appends `count` batches of 2 records; returns the stored bytes of each.
fn fill(log: &mut PartitionLog, count: usize, ts0: i64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let b = batch_with_ts(2, ts0 + i as i64);
            let info = log.append_as_leader(&b, 0, ts0 + i as i64).unwrap();
            crate::testutil::stored_bytes(log, &info)
        })
        .collect()
}

fn read_all(log: &PartitionLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20, i64::MAX, true).unwrap();
        assert!(!r.records.is_empty(), "no progress at {at}");
        for item in Batches::new(&r.records) {
            let (h, b) = item.unwrap();
            out.push(b.to_vec());
            at = h.last_offset() + 1;
        }
    }
    out
}

#[test]
fn append_and_read_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), LogConfig::default());
    let stored = fill(&mut log, 3, 1000);
    assert_eq!(log.log_end_offset(), 6);
    let all = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(&all.records[..], &stored.concat()[..]);
    // Inside a batch: the whole batch comes back.
    let mid = log.read(3, 1 << 20, i64::MAX, false).unwrap();
    assert_eq!(&mid.records[..], &stored[1..].concat()[..]);
    // max_bytes cuts at a batch boundary; min_one_batch overrides a too small limit.
    let one = log.read(0, stored[0].len() + 10, i64::MAX, false).unwrap();
    assert_eq!(&one.records[..], &stored[0][..]);
    assert!(log.read(0, 10, i64::MAX, false).unwrap().records.is_empty());
    assert_eq!(
        &log.read(0, 10, i64::MAX, true).unwrap().records[..],
        &stored[0][..]
    );
    // max_offset is exclusive on the batch's last offset.
    assert_eq!(
        &log.read(0, 1 << 20, 4, false).unwrap().records[..],
        &stored[..2].concat()[..]
    );
    assert!(log.read(0, 1 << 20, 1, true).unwrap().records.is_empty());
    // At the log end: empty; beyond: out of range.
    let end = log.read(6, 100, i64::MAX, true).unwrap();
    assert!(end.records.is_empty());
    assert_eq!((end.log_start_offset, end.log_end_offset), (0, 6));
    assert!(matches!(
        log.read(7, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange {
            offset: 7,
            log_start_offset: 0,
            log_end_offset: 6
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn leader_append_patches_offsets_epoch_and_log_append_time() {
    let d = tempfile::tempdir().unwrap();
    let c = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(d.path(), c);
    let two = [batch_with_ts(3, 5), batch_with_ts(1, 6)].concat();
    let received = two;
    let info = log.append_as_leader(&received, 7, 99_000).unwrap();
    // The received bytes are not touched: the log patched its own copy of each header.
    assert!(
        Batches::new(&received).all(|b| b.unwrap().0.base_offset == 0),
        "the received batches are unchanged"
    );
    let two = crate::testutil::stored_bytes(&log, &info);
    assert_eq!(
        info,
        AppendInfo {
            base_offset: 0,
            last_offset: 3,
            log_append_time_ms: 99_000,
            max_timestamp: 99_000,
            records_count: 4,
            bytes: two.len()
        }
    );
    let hs: Vec<BatchHeader> = Batches::new(&two).map(|b| b.unwrap().0).collect();
    assert_eq!(hs[1].base_offset, 3);
    assert_eq!(hs[0].partition_leader_epoch, 7);
    assert_eq!(hs[1].timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(hs[1].max_timestamp, 99_000);
    for b in Batches::new(&two) {
        crate::batch::verify_crc(b.unwrap().1).unwrap();
    }
    assert_eq!(
        &log.read(0, 1 << 20, i64::MAX, false).unwrap().records[..],
        &two[..]
    );
    assert_eq!(log.latest_leader_epoch(), Some(7));
}

#[test]
fn invalid_batches_append_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            max_message_bytes: 2000,
            ..LogConfig::default()
        },
    );
    let good = batch_with_ts(1, 1);
    let mut bad_crc = batch_with_ts(1, 1);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    let buf = [good.clone(), bad_crc].concat();
    assert!(matches!(
        log.append_as_leader(&buf, 0, 0),
        Err(LogError::CorruptRecord { .. })
    ));
    let truncated = good[..good.len() - 3].to_vec();
    assert!(matches!(
        log.append_as_leader(&truncated, 0, 0),
        Err(LogError::CorruptRecord { .. })
    ));
    let mut v1 = good.clone();
    v1[16] = 1;
    assert!(matches!(
        log.append_as_leader(&v1, 0, 0),
        Err(LogError::UnsupportedMagic { magic: 1 })
    ));
    let big = simple_batch(1, 3000, 1);
    assert!(matches!(
        log.append_as_leader(&big, 0, 0),
        Err(LogError::RecordTooLarge { max: 2000, .. })
    ));
    let empty: Vec<u8> = Vec::new();
    assert!(matches!(
        log.append_as_leader(&empty, 0, 0),
        Err(LogError::InvalidRecord { .. })
    ));
    // records_count lies (CRC recomputed so only the count check can catch it).
    let mut lying = good.clone();
    lying[57..61].copy_from_slice(&2i32.to_be_bytes());
    lying[23..27].copy_from_slice(&1i32.to_be_bytes());
    crate::batch::rewrite_crc(&mut lying);
    assert!(log.append_as_leader(&lying, 0, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    let ok = good;
    log.append_as_leader(&ok, 0, 0).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn compacted_topic_rejects_keyless_records() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        },
    );
    for codec in [CompressionType::None, CompressionType::Zstd] {
        let b = BatchBuilder::new(0)
            .compression(codec)
            .record(TestRecord::kv(1, "k", "v"))
            .record(TestRecord::value(1, "no key"))
            .build();
        assert!(matches!(
            log.append_as_leader(&b, 0, 0),
            Err(LogError::InvalidRecord { .. })
        ));
    }
    let ok = BatchBuilder::new(0)
        .record(TestRecord::tombstone(1, "k"))
        .build();
    log.append_as_leader(&ok, 0, 0).unwrap();
}

#[test]
fn follower_append_keeps_offsets_and_checks_contiguity() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), LogConfig::default());
    let a = BatchBuilder::new(0)
        .leader_epoch(1)
        .record(TestRecord::kv(1, "a", "1"))
        .build();
    let b = BatchBuilder::new(5)
        .leader_epoch(3)
        .records(vec![TestRecord::kv(2, "b", "2"); 2])
        .build();
    let info = log
        .append_as_follower(&[a.clone(), b.clone()].concat())
        .unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 6));
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(log.leader_epoch_entries(), &[(1, 0), (3, 5)]);
    assert!(matches!(
        log.append_as_follower(&a),
        Err(LogError::NotContiguous {
            expected: 7,
            got: 0
        })
    ));
    // Offsets 1..5 are a gap: reading there returns the next batch.
    assert_eq!(
        &log.read(2, 1 << 20, i64::MAX, true).unwrap().records[..],
        &b[..]
    );
    let dup = [
        BatchBuilder::new(10)
            .record(TestRecord::kv(1, "a", "1"))
            .build(),
        BatchBuilder::new(10)
            .record(TestRecord::kv(1, "a", "1"))
            .build(),
    ]
    .concat();
    assert!(matches!(
        log.append_as_follower(&dup),
        Err(LogError::NotContiguous { .. })
    ));
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let stored = fill(&mut log, 60, 1000);
    assert!(log.num_segments() > 3, "{} segments", log.num_segments());
    assert_eq!(read_all(&log), stored);
    for s in log.segment_base_offsets() {
        let r = log.read(s, 1 << 20, i64::MAX, true).unwrap();
        assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, s);
    }
    // Every offset resolves to the batch holding it (exercises the index).
    for off in 0..log.log_end_offset() {
        let r = log.read(off, 1, i64::MAX, true).unwrap();
        let h = BatchHeader::parse(&r.records).unwrap();
        assert!(h.base_offset <= off && off <= h.last_offset());
    }
}

#[test]
fn rolls_by_time() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_ms: 1000,
            ..LogConfig::default()
        },
    );
    let b = batch_with_ts(1, 0);
    log.append_as_leader(&b, 0, 10_000).unwrap();
    let b = batch_with_ts(1, 0);
    log.append_as_leader(&b, 0, 10_500).unwrap();
    assert_eq!(log.num_segments(), 1);
    let b = batch_with_ts(1, 0);
    log.append_as_leader(&b, 0, 11_001).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn followers_roll_by_time_using_batch_timestamps() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            segment_ms: 1000,
            ..LogConfig::default()
        },
    );
    let b = |base, ts| {
        BatchBuilder::new(base)
            .record(TestRecord::kv(ts, "k", "v"))
            .build()
    };
    log.append_as_follower(&b(0, 10_000)).unwrap();
    log.append_as_follower(&b(1, 10_900)).unwrap();
    assert_eq!(log.num_segments(), 1);
    log.append_as_follower(&b(2, 11_001)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn group_commit_ticket_advances_recovery_point() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    assert!(log.begin_flush().is_none());
    fill(&mut log, 30, 0);
    let t = log.begin_flush().unwrap();
    assert_eq!(t.up_to_offset, log.log_end_offset());
    assert!(t.files_len() > log.num_segments());
    fill(&mut log, 1, 0);
    t.sync().unwrap();
    log.complete_flush(t.up_to_offset);
    assert_eq!(log.recovery_point(), 60);
    assert_eq!(log.log_end_offset(), 62);
    log.complete_flush(10);
    assert_eq!(log.recovery_point(), 60, "monotonic");
    let t = log.begin_flush().unwrap();
    assert_eq!(t.files_len(), 1, "only the active segment is dirty");
    t.sync().unwrap();
    log.complete_flush_ticket(&t);
    assert_eq!(log.recovery_point(), 62);
    assert!(log.begin_flush().is_none());
}

#[test]
fn stale_ticket_after_truncation_is_ignored() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), LogConfig::default());
    fill(&mut log, 5, 0);
    let t = log.begin_flush().unwrap();
    log.truncate_to(4).unwrap();
    fill(&mut log, 3, 0);
    t.sync().unwrap();
    log.complete_flush_ticket(&t);
    assert_eq!(
        log.recovery_point(),
        0,
        "the ticket predates the truncation"
    );
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 10);
}

#[test]
fn every_append_and_interval_policies_flush() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            flush_policy: FlushPolicy::EveryAppend,
            ..LogConfig::default()
        },
    );
    fill(&mut log, 2, 0);
    assert_eq!(log.recovery_point(), 4);
    let d = tempfile::tempdir().unwrap();
    let policy = FlushPolicy::Interval {
        messages: 5,
        ms: 1000,
    };
    let mut log = open(
        d.path(),
        LogConfig {
            flush_policy: policy,
            ..LogConfig::default()
        },
    );
    fill(&mut log, 2, 0);
    assert_eq!(log.recovery_point(), 0);
    fill(&mut log, 1, 0);
    assert_eq!(log.recovery_point(), 6, "6 messages >= 5");
    let b = batch_with_ts(1, 0);
    log.append_as_leader(&b, 0, 10).unwrap();
    assert!(!log.maybe_flush_by_policy(500).unwrap());
    assert!(log.maybe_flush_by_policy(1001).unwrap());
    assert_eq!(log.recovery_point(), 7);
}

#[test]
fn clean_reopen_restores_everything() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let stored = fill(&mut log, 40, 1000);
    log.delete_records(3).unwrap();
    let (leo, segs) = (log.log_end_offset(), log.segment_base_offsets());
    log.close().unwrap();
    assert!(d.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let log = open(d.path(), small_config());
    assert!(!d.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.recovery_point(), leo);
    assert_eq!(log.log_start_offset(), 3);
    assert_eq!(log.segment_base_offsets(), segs);
    assert_eq!(read_all(&log), stored[1..].to_vec());
    assert_eq!(
        log.fetch_offset_by_timestamp(1020)
            .unwrap()
            .map(|t| t.offset),
        Some(40)
    );
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some(TimestampOffset {
            timestamp: 1039,
            offset: 78
        })
    );
}

#[test]
fn clean_open_does_not_scan_closed_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    fill(&mut log, 40, 0);
    log.close().unwrap();
    // Flip a byte in the middle of the first segment: a clean open must not notice (it
    // scans nothing), but a read of that batch must.
    let first = d.path().join(file_name(0, "log"));
    let mut bytes = std::fs::read(&first).unwrap();
    let positions: Vec<usize> = {
        let mut it = Batches::new(&bytes);
        let mut v = vec![0];
        while let Some(Ok(_)) = it.next() {
            v.push(it.position());
        }
        v
    };
    let at = positions[positions.len() / 2] + 100; // inside a record, covered by the CRC
    bytes[at] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let log = open(d.path(), small_config());
    assert_eq!(log.log_end_offset(), 80);
    let mut saw = false;
    for off in 0..log.segment_base_offsets()[1] {
        if let Err(e) = log.read(off, 1, i64::MAX, true) {
            match e {
                LogError::CorruptSegment { path, position, .. } => {
                    assert_eq!(path, first);
                    assert!(position as usize <= at);
                    saw = true;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(saw);
}

#[test]
fn crash_truncates_torn_tail_and_keeps_flushed_data() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let stored = fill(&mut log, 30, 0);
    log.flush().unwrap();
    let last_base = *log.segment_base_offsets().last().unwrap();
    drop(log); // crash: no close
    let path = d.path().join(file_name(last_base, "log"));
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    let log = open(d.path(), small_config());
    let got = read_all(&log);
    assert_eq!(got, stored[..stored.len() - 1].to_vec());
    assert_eq!(log.log_end_offset(), 58);
    assert_eq!(log.recovery_point(), 58);
}

#[test]
fn crash_recovery_detects_a_flipped_byte() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), LogConfig::default());
    let stored = fill(&mut log, 10, 0);
    drop(log);
    let path = d.path().join(file_name(0, "log"));
    let mut bytes = std::fs::read(&path).unwrap();
    let pos5: usize = stored[..5].iter().map(Vec::len).sum();
    bytes[pos5 + 70] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let log = open(d.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(read_all(&log), stored[..5].to_vec());
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, pos5);
}

#[test]
fn crash_drops_segments_after_a_corrupt_one() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    fill(&mut log, 40, 0);
    let bases = log.segment_base_offsets();
    drop(log);
    // No recovery point checkpoint yet: recovery scans from the first segment.
    let second = d.path().join(file_name(bases[1], "log"));
    let mut bytes = std::fs::read(&second).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&second, &bytes).unwrap();
    let mut log = open(d.path(), small_config());
    assert_eq!(log.num_segments(), 2);
    assert!(log.log_end_offset() >= bases[1] && log.log_end_offset() < bases[2]);
    let leo = log.log_end_offset();
    fill(&mut log, 1, 0);
    assert_eq!(log.log_end_offset(), leo + 2);
}

#[test]
fn timestamp_lookups() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    // Timestamps 100, 110, ..., two records per batch with the same timestamp.
    for i in 0..50 {
        let b = BatchBuilder::new(0)
            .record(TestRecord::kv(100 + 10 * i, "k", "v"))
            .record(TestRecord::kv(105 + 10 * i, "k", "v"))
            .build();
        log.append_as_leader(&b, 0, 0).unwrap();
    }
    let at = |t| log.fetch_offset_by_timestamp(t).unwrap();
    assert_eq!(
        at(0),
        Some(TimestampOffset {
            timestamp: 100,
            offset: 0
        })
    );
    assert_eq!(
        at(101),
        Some(TimestampOffset {
            timestamp: 105,
            offset: 1
        })
    );
    assert_eq!(
        at(106),
        Some(TimestampOffset {
            timestamp: 110,
            offset: 2
        })
    );
    assert_eq!(
        at(345),
        Some(TimestampOffset {
            timestamp: 345,
            offset: 49
        })
    );
    assert_eq!(
        at(595),
        Some(TimestampOffset {
            timestamp: 595,
            offset: 99
        })
    );
    assert_eq!(at(596), None);
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some(TimestampOffset {
            timestamp: 595,
            offset: 99
        })
    );
    log.delete_records(50).unwrap();
    let got = log.fetch_offset_by_timestamp(0).unwrap();
    assert_eq!(
        got,
        Some(TimestampOffset {
            timestamp: 350,
            offset: 50
        })
    );
}

#[test]
fn retention_by_size_time_and_start_offset() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            file_delete_delay_ms: 0,
            ..small_config()
        },
    );
    fill(&mut log, 60, 1000);
    let n = log.num_segments();
    assert_eq!(log.delete_old_segments(2000).unwrap(), 0);
    // Time: everything older than 1010 ms before now.
    log.update_config(LogConfig {
        retention_ms: 1000,
        file_delete_delay_ms: 0,
        ..small_config()
    });
    let removed = log.delete_old_segments(2020).unwrap();
    assert!(removed >= 1 && removed < n);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert!(log.recovery_point() >= log.log_start_offset());
    // Size: keep at most ~2 segments' worth.
    log.update_config(LogConfig {
        retention_bytes: 5000,
        file_delete_delay_ms: 0,
        ..small_config()
    });
    log.delete_old_segments(2020).unwrap();
    assert!(log.size_bytes() - log.segments.last().unwrap().size < 5000 + 4096);
    // Never the active segment.
    log.update_config(LogConfig {
        retention_bytes: 0,
        file_delete_delay_ms: 0,
        ..small_config()
    });
    log.delete_old_segments(1 << 40).unwrap();
    assert_eq!(log.num_segments(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(DELETED_SUFFIX))
        .collect();
    assert!(leftovers.is_empty());
    assert_eq!(
        read_all(&log).len() as i64 * 2,
        log.log_end_offset() - log.log_start_offset()
    );
}

#[test]
fn deleted_files_linger_for_the_delay() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            file_delete_delay_ms: 100,
            ..small_config()
        },
    );
    fill(&mut log, 30, 0);
    log.delete_records(50).unwrap();
    assert!(log.delete_old_segments(1000).unwrap() > 0);
    let count = || {
        std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(DELETED_SUFFIX)
            })
            .count()
    };
    assert!(count() > 0);
    log.delete_old_segments(1050).unwrap();
    assert!(count() > 0);
    log.delete_old_segments(1100).unwrap();
    assert_eq!(count(), 0);
}

#[test]
fn delete_records_moves_the_start() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    fill(&mut log, 40, 0);
    assert_eq!(log.delete_records(7).unwrap(), 7);
    assert_eq!(log.delete_records(3).unwrap(), 7, "never backwards");
    assert!(matches!(
        log.delete_records(81),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(6, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let r = log.read(7, 100, i64::MAX, true).unwrap();
    assert_eq!(BatchHeader::parse(&r.records).unwrap().base_offset, 6);
    assert!(log.recovery_point() >= 7);
    assert_eq!(log.delete_records(80).unwrap(), 80);
    log.delete_old_segments(0).unwrap();
    assert_eq!(log.num_segments(), 1);
    assert!(
        log.read(80, 100, i64::MAX, true)
            .unwrap()
            .records
            .is_empty()
    );
}

#[test]
fn truncation() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let stored = fill(&mut log, 60, 0);
    log.flush().unwrap();
    let bases = log.segment_base_offsets();
    // Into the middle of a batch: the whole batch goes.
    log.truncate_to(51).unwrap();
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(log.recovery_point(), 50);
    assert_eq!(read_all(&log), stored[..25].to_vec());
    let more = fill(&mut log, 3, 0);
    assert_eq!(log.log_end_offset(), 56);
    assert_eq!(read_all(&log), [stored[..25].to_vec(), more].concat());
    // Exactly at a segment base: that segment goes.
    log.truncate_to(bases[1]).unwrap();
    assert_eq!(log.log_end_offset(), bases[1]);
    assert_eq!(log.num_segments(), 2);
    log.close().unwrap();
    let mut log = open(d.path(), small_config());
    assert_eq!(log.log_end_offset(), bases[1]);
    assert_eq!(read_all(&log), stored[..bases[1] as usize / 2].to_vec());
    log.truncate_fully_and_start_at(1000).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.recovery_point(),
            log.log_end_offset()
        ),
        (1000, 1000, 1000)
    );
    assert_eq!(log.num_segments(), 1);
    let info = log.append_as_leader(&batch_with_ts(1, 0), 0, 0).unwrap();
    assert_eq!(info.base_offset, 1000);
    drop(log);
    let log = open(d.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1001));
}

#[test]
fn leader_epochs_are_checkpointed_and_truncated() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(0), None);
    for (epoch, n) in [(1, 2), (1, 1), (3, 2), (5, 1)] {
        for _ in 0..n {
            log.append_as_leader(&batch_with_ts(2, 0), epoch, 0)
                .unwrap();
        }
    }
    assert_eq!(log.leader_epoch_entries(), &[(1, 0), (3, 6), (5, 10)]);
    assert_eq!(log.latest_leader_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 0)));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 6)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 6)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 10)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 12)));
    assert_eq!(log.end_offset_for_epoch(6), None);
    drop(log);
    let mut log = open(d.path(), LogConfig::default());
    assert_eq!(log.leader_epoch_entries(), &[(1, 0), (3, 6), (5, 10)]);
    log.truncate_to(8).unwrap();
    assert_eq!(log.leader_epoch_entries(), &[(1, 0), (3, 6)]);
    log.delete_records(7).unwrap();
    assert_eq!(log.leader_epoch_entries(), &[(3, 7)]);
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(log.latest_leader_epoch(), None);
}

#[test]
fn delete_removes_the_directory() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("topic-0");
    let mut log = open(&p, LogConfig::default());
    fill(&mut log, 1, 0);
    log.delete().unwrap();
    assert!(!p.exists());
}

#[test]
fn partition_log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PartitionLog>();
    check::<FlushTicket>();
    check::<LogError>();
}

#[test]
fn descriptors_of_idle_segments_are_released() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), small_config());
    let stored = fill(&mut log, 60, 1000);
    let n = log.num_segments();
    assert!(n > 4);
    assert_eq!(
        log.open_file_handles(),
        3 * n,
        "unflushed segments keep their descriptors"
    );
    log.flush().unwrap();
    log.delete_old_segments(0).unwrap();
    // Index descriptors go at once; .log descriptors appended to since the last sweep stay.
    assert_eq!(log.open_file_handles(), 3 + (n - 1));
    log.release_idle_handles();
    assert_eq!(log.open_file_handles(), 3, "only the active segment");
    // A read reopens one segment's .log; it stays open until a sweep finds it idle.
    assert_eq!(read_all(&log), stored);
    assert_eq!(log.open_file_handles(), 3 + (n - 1));
    log.release_idle_handles();
    assert_eq!(log.open_file_handles(), 3 + (n - 1));
    log.release_idle_handles();
    assert_eq!(log.open_file_handles(), 3);
    // Everything still works on released segments: lookups, truncation into them, reopen.
    assert_eq!(
        log.fetch_offset_by_timestamp(1010)
            .unwrap()
            .map(|t| t.offset),
        Some(20)
    );
    log.truncate_to(30).unwrap();
    assert_eq!(read_all(&log), stored[..15].to_vec());
    fill(&mut log, 1, 0);
    log.close().unwrap();
    let log = open(d.path(), small_config());
    assert_eq!(log.open_file_handles(), 3);
    assert_eq!(read_all(&log).len(), 16);
}

#[test]
fn crash_recovery_starts_at_the_recovery_points_segment() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(
        d.path(),
        LogConfig {
            file_delete_delay_ms: 0,
            ..small_config()
        },
    );
    fill(&mut log, 60, 0);
    log.flush().unwrap();
    // Retention removes old segments; the persisted recovery point must follow.
    log.delete_records(30).unwrap();
    log.delete_old_segments(0).unwrap();
    let persisted = checkpoint::read_offset(&d.path().join(RECOVERY_POINT_FILE))
        .unwrap()
        .unwrap();
    let bases = log.segment_base_offsets();
    assert!(
        persisted >= *bases.last().unwrap(),
        "{persisted} vs {bases:?}"
    );
    drop(log);
    // Damage the first remaining segment: a crash recovery that scanned it would truncate
    // there; recovery from the recovery point's segment never looks at it.
    let first = d.path().join(file_name(bases[0], "log"));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let log = open(d.path(), small_config());
    assert_eq!(log.log_end_offset(), 120);
}

/// Read buffers are pooled and not zeroed again (crate::read_buffer): a read into a
/// buffer that held a longer read before must return only its own bytes, never the
/// stale tail, and reads held at once must not share a buffer. Batches of ~100 KB so
/// that the reads are large enough to be pooled.
#[test]
fn reads_through_reused_buffers_return_only_their_own_bytes() {
    let d = tempfile::tempdir().unwrap();
    let mut log = open(d.path(), LogConfig::default());
    let stored: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            let b = simple_batch(100, 1000, 1000 + i);
            let info = log.append_as_leader(&b, 0, 1000 + i).unwrap();
            crate::testutil::stored_bytes(&log, &info)
        })
        .collect();
    let batch = stored[0].len();
    assert!(
        3 * batch > 300_000 && 2 * batch < 300_000,
        "batch of {batch} bytes"
    );
    const { assert!(300_000 >= crate::read_buffer::POOLED_READ_BYTES_MIN) };
    for round in 0..3 {
        // A long read, dropped: its buffer goes back to the pool full of batches.
        let all = log.read(0, 2 << 20, i64::MAX, false).unwrap();
        assert_eq!(&all.records[..], &stored.concat()[..]);
        drop(all);
        // Shorter reads now, each exactly the two batches that fit; all held at once.
        let held: Vec<_> = (0..stored.len())
            .map(|i| {
                (
                    i,
                    log.read(100 * i as i64, 300_000, i64::MAX, false).unwrap(),
                )
            })
            .collect();
        for (i, r) in &held {
            let end = (i + 2).min(stored.len());
            assert_eq!(
                &r.records[..],
                &stored[*i..end].concat()[..],
                "round {round}, batch {i}"
            );
        }
        // A read bounded by max_offset stops before the batches past it.
        let bounded = log.read(0, 2 << 20, 300, false).unwrap();
        assert_eq!(
            &bounded.records[..],
            &stored[..3].concat()[..],
            "round {round}"
        );
    }
}
