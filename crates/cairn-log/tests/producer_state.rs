//! Producer state (idempotence) through `PartitionLog`: leader checks and duplicates,
//! followers, truncation, snapshots and reopen (clean, crash, damaged snapshots), plus a
//! property test against a naive model that recomputes the expected state from the batches in
//! the log.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_log::producer_state::{BatchMetadata, ProducerEntry};
use cairn_log::testutil::{BatchBuilder, TestRecord};
use cairn_log::{
    FlushPolicy, LogConfig, LogError, PartitionLog, ProducerError, ProducerStateManager,
    TimestampType,
};
use proptest::prelude::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        segment_index_bytes: 4096,
        index_interval_bytes: 128,
        flush_policy: FlushPolicy::EveryAppend,
        ..LogConfig::default()
    }
}

fn batch(pid: i64, epoch: i16, seq: i32, records: usize, ts: i64) -> Vec<u8> {
    BatchBuilder::new(0)
        .producer(pid, epoch, seq)
        .records((0..records).map(|i| TestRecord::kv(ts, format!("k{i}"), "value")))
        .build()
}

/// The state a full replay of the log computes.
fn full_rebuild(log: &PartitionLog) -> ProducerStateManager {
    let mut s = ProducerStateManager::new(log.segment_base_offsets()[0]);
    for b in cairn_log::testutil::all_batches(log) {
        s.update_from_batch(&b).unwrap();
    }
    s.advance_to(log.log_end_offset());
    s
}

fn snapshots(dir: &Path) -> Vec<(i64, std::path::PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".snapshot")?;
            Some((stem.parse().unwrap(), e.path()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn leader_deduplicates_and_rejects_without_appending() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let first = batch(7, 0, 0, 3, 1_000);
    let a = log.append_as_leader(&first, 0, 1_000).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    let plain = cairn_log::testutil::simple_batch(2, 10, 1_000);
    log.append_as_leader(&plain, 0, 1_000).unwrap();
    let second = batch(7, 0, 3, 2, 1_001);
    log.append_as_leader(&second, 0, 1_001).unwrap();
    let leo = log.log_end_offset();
    // A retry of the first batch: nothing appended, the original offsets come back.
    let retry = batch(7, 0, 0, 3, 1_000);
    match log.append_as_leader(&retry, 0, 2_000) {
        Err(LogError::DuplicateBatch {
            base_offset: 0,
            last_offset: 2,
            timestamp: 1_000,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), leo);
    // A gap.
    let gap = batch(7, 0, 9, 1, 1_002);
    match log.append_as_leader(&gap, 0, 2_000) {
        Err(LogError::Producer(e @ ProducerError::OutOfOrderSequence { .. })) => {
            assert_eq!(e.kafka_code(), 45)
        }
        other => panic!("{other:?}"),
    }
    // A zombie after an epoch bump.
    let bumped = batch(7, 1, 0, 1, 1_003);
    log.append_as_leader(&bumped, 0, 2_000).unwrap();
    let zombie = batch(7, 0, 5, 1, 1_004);
    match log.append_as_leader(&zombie, 0, 2_000) {
        Err(LogError::Producer(e @ ProducerError::InvalidProducerEpoch { .. })) => {
            assert_eq!(e.kafka_code(), 47)
        }
        other => panic!("{other:?}"),
    }
    // A request with a good batch then a gap appends nothing.
    let leo = log.log_end_offset();
    let mut two = batch(7, 1, 1, 1, 1_005);
    two.extend(batch(7, 1, 5, 1, 1_005));
    assert!(log.append_as_leader(&two, 0, 2_000).is_err());
    assert_eq!(log.log_end_offset(), leo);
    let mut two = batch(7, 1, 1, 1, 1_005);
    two.extend(batch(7, 1, 2, 2, 1_005));
    log.append_as_leader(&two, 0, 2_000).unwrap();
    let e = log.producer_state().get(7).unwrap();
    assert_eq!((e.producer_epoch, e.last_seq()), (1, Some(3)));
    assert_eq!(log.producer_state(), &full_rebuild(&log));
}

#[test]
fn log_append_time_duplicates_report_the_original_append_time() {
    let d = tempfile::tempdir().unwrap();
    let c = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..config()
    };
    let mut log = PartitionLog::open(d.path(), c, 0).unwrap();
    log.append_as_leader(&batch(3, 0, 0, 2, 5), 0, 42_000)
        .unwrap();
    match log.append_as_leader(&batch(3, 0, 0, 2, 5), 0, 43_000) {
        Err(LogError::DuplicateBatch { timestamp, .. }) => assert_eq!(timestamp, 42_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn followers_build_the_same_state_and_can_take_over() {
    let d = tempfile::tempdir().unwrap();
    let mut leader = PartitionLog::open(&d.path().join("l"), config(), 0).unwrap();
    let mut follower = PartitionLog::open(&d.path().join("f"), config(), 0).unwrap();
    for i in 0..20 {
        let b = batch(1 + i % 3, 0, (i / 3) as i32 * 2, 2, 1_000 + i);
        let info = leader.append_as_leader(&b, 0, 1_000).unwrap();
        follower
            .append_as_follower(&cairn_log::testutil::stored_bytes(&leader, &info))
            .unwrap();
    }
    assert_eq!(leader.producer_state(), follower.producer_state());
    assert!(follower.num_segments() > 2);
    // The follower becomes leader: a retry of the leader's last batch is a duplicate.
    let retry = batch(2, 0, 12, 2, 1_000);
    assert!(matches!(
        follower.append_as_leader(&retry, 1, 2_000),
        Err(LogError::DuplicateBatch { .. })
    ));
}

#[test]
fn reopen_after_close_and_crash_restores_the_state() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    for i in 0..40 {
        let b = batch(i % 4, 0, (i / 4) as i32 * 3, 3, i);
        log.append_as_leader(&b, 0, i).unwrap();
    }
    let expected = log.producer_state().clone();
    assert_eq!(expected, full_rebuild(&log));
    assert!(log.num_segments() > 4);
    let snaps = snapshots(d.path());
    assert_eq!(snaps.len(), 2, "the last two roll snapshots: {snaps:?}");
    log.close().unwrap();
    assert_eq!(
        snapshots(d.path()).last().unwrap().0,
        120,
        "one at the close"
    );
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.producer_state(), &expected);
    drop(log); // crash (nothing appended: same state)
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.producer_state(), &expected);
    // Crash after more appends: the snapshot at the last roll plus the recovery scan.
    for i in 40..50 {
        let b = batch(i % 4, 0, (i / 4) as i32 * 3, 3, i);
        log.append_as_leader(&b, 0, i).unwrap();
    }
    let expected = log.producer_state().clone();
    drop(log);
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.producer_state(), &expected);
    assert_eq!(log.producer_state(), &full_rebuild(&log));
    assert!(
        snapshots(d.path())
            .iter()
            .any(|(o, _)| *o == log.log_end_offset()),
        "a replaying open leaves a snapshot at the log end"
    );
}

#[test]
fn snapshot_plus_replay_equals_full_rebuild_and_corrupt_snapshots_fall_back() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    for i in 0..45 {
        let b = batch(i % 5, (i / 20) as i16, ((i % 20) / 5) as i32 * 2, 2, i);
        log.append_as_leader(&b, 0, i).unwrap();
    }
    let expected = log.producer_state().clone();
    drop(log);
    // Damage the latest snapshot: the older one plus a longer replay gives the same state.
    let snaps = snapshots(d.path());
    assert_eq!(snaps.len(), 2);
    let mut bytes = std::fs::read(&snaps[1].1).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&snaps[1].1, &bytes).unwrap();
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.producer_state(), &expected);
    drop(log);
    // Both damaged (and the one written at the last open gone): rebuilt from the log start.
    for (_, p) in snapshots(d.path()) {
        std::fs::write(&p, b"garbage").unwrap();
    }
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.producer_state(), &expected);
    log.close().unwrap();
    // A truncated snapshot file (torn write) is ignored too.
    let (_, last) = snapshots(d.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.producer_state(), &expected);
}

#[test]
fn recovery_cutting_below_the_loaded_snapshot_rebuilds_from_an_older_one() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    for i in 0..22 {
        let b = batch(i % 3, 0, (i / 3) as i32, 1, i);
        log.append_as_leader(&b, 0, i).unwrap();
    }
    log.close().unwrap();
    // The close snapshot sits inside the active segment, at the persisted recovery point.
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let closed_at = log.log_end_offset();
    let active_base = *log.segment_base_offsets().last().unwrap();
    assert!(active_base < closed_at);
    for i in 22..24 {
        let b = batch(i % 3, 0, (i / 3) as i32, 1, i);
        log.append_as_leader(&b, 0, i).unwrap();
    }
    drop(log);
    // Damage the active segment's first batch: recovery (from the recovery point's
    // segment) cuts below the close snapshot it started from.
    let seg = d.path().join(format!("{active_base:020}.log"));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[70] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), active_base);
    assert_eq!(log.producer_state(), &full_rebuild(&log));
    assert!(snapshots(d.path()).iter().all(|(o, _)| *o <= active_base));
}

#[test]
fn truncation_rebuilds_exactly_and_drops_later_snapshots() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    for i in 0..60 {
        let b = batch(i % 2, 0, (i / 2) as i32, 1, i);
        log.append_as_leader(&b, 0, i).unwrap();
    }
    for at in [55, 41, 40, 12, 0] {
        log.truncate_to(at).unwrap();
        assert_eq!(log.producer_state(), &full_rebuild(&log), "at {at}");
        assert!(snapshots(d.path()).iter().all(|(o, _)| *o <= at));
    }
    assert!(log.producer_state().is_empty());
    // After truncation the producer restarts where the log ends.
    log.append_as_leader(&batch(0, 0, 0, 1, 0), 0, 0).unwrap();
    log.truncate_fully_and_start_at(100).unwrap();
    assert!(log.producer_state().is_empty());
    assert!(snapshots(d.path()).is_empty());
}

#[test]
fn retention_keeps_producer_state_and_expiry_removes_it() {
    let d = tempfile::tempdir().unwrap();
    let c = LogConfig {
        retention_bytes: 1,
        file_delete_delay_ms: 0,
        ..config()
    };
    let mut log = PartitionLog::open(d.path(), c.clone(), 0).unwrap();
    log.append_as_leader(&batch(1, 0, 0, 1, 500), 0, 0).unwrap();
    for i in 0..40 {
        log.append_as_leader(&batch(2, 0, i, 1, 1_000 + i as i64), 0, 0)
            .unwrap();
    }
    log.delete_old_segments(0).unwrap();
    assert!(log.segment_base_offsets()[0] > 0);
    assert!(
        snapshots(d.path())
            .iter()
            .all(|(o, _)| *o >= log.segment_base_offsets()[0])
    );
    // Producer 1's data is gone but its state stays (KIP-360), and survives a reopen.
    assert!(log.producer_state().get(1).is_some());
    log.close().unwrap();
    let mut log = PartitionLog::open(d.path(), c, 0).unwrap();
    assert!(log.producer_state().get(1).is_some());
    assert_eq!(log.remove_expired_producers(1_020, 520), 1);
    assert!(log.producer_state().get(1).is_none());
    assert!(log.producer_state().get(2).is_some());
}

// ---------------------------------------------------------------------------------------
// Property test against a naive model.

#[derive(Clone, Debug)]
enum Op {
    Send { p: usize, records: usize },
    Retry { p: usize, back: usize },
    Gap { p: usize, by: i32 },
    BumpEpoch { p: usize },
    Zombie { p: usize },
    Plain,
    Roll,
    Truncate { at: u16 },
    Crash { damage: u8 },
    CleanReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..3, 1usize..4).prop_map(|(p, records)| Op::Send { p, records }),
        4 => (0usize..3, 0usize..8).prop_map(|(p, back)| Op::Retry { p, back }),
        1 => (0usize..3, 1i32..3).prop_map(|(p, by)| Op::Gap { p, by }),
        1 => (0usize..3).prop_map(|p| Op::BumpEpoch { p }),
        1 => (0usize..3).prop_map(|p| Op::Zombie { p }),
        2 => Just(Op::Plain),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u8>().prop_map(|damage| Op::Crash { damage }),
        1 => Just(Op::CleanReopen),
    ]
}

/// A batch in the model log.
#[derive(Clone, Debug)]
struct MBatch {
    pid: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
    base: i64,
    last: i64,
    ts: i64,
}

/// A client: its epoch, next sequence and the batches it sent in this epoch.
#[derive(Clone, Debug, Default)]
struct Client {
    epoch: i16,
    next_seq: i32,
    sent: Vec<(i16, i32, usize)>,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Append,
    Dup(i64, i64),
    OutOfOrder,
    Fenced,
}

#[derive(Default)]
struct Model {
    log: Vec<MBatch>,
}

impl Model {
    fn leo(&self) -> i64 {
        self.log.last().map_or(0, |b| b.last + 1)
    }

    /// The rules, recomputed from the whole log for every question.
    fn expect(&self, pid: i64, epoch: i16, first: i32, count: usize) -> Expect {
        let mine: Vec<&MBatch> = self.log.iter().filter(|b| b.pid == pid).collect();
        let Some(last) = mine.last() else {
            return if first == 0 {
                Expect::Append
            } else {
                Expect::OutOfOrder
            };
        };
        let last_seq = first + count as i32 - 1;
        if epoch == last.epoch {
            let dup = mine
                .iter()
                .rev()
                .take_while(|b| b.epoch == last.epoch)
                .take(5)
                .find(|b| b.first_seq == first && b.last_seq == last_seq);
            if let Some(d) = dup {
                return Expect::Dup(d.base, d.last);
            }
        }
        if epoch < last.epoch {
            Expect::Fenced
        } else if epoch > last.epoch {
            if first == 0 {
                Expect::Append
            } else {
                Expect::OutOfOrder
            }
        } else if first == last.last_seq + 1 {
            Expect::Append
        } else {
            Expect::OutOfOrder
        }
    }

    fn state(&self) -> BTreeMap<i64, ProducerEntry> {
        let mut out = BTreeMap::new();
        let pids: std::collections::BTreeSet<i64> =
            self.log.iter().map(|b| b.pid).filter(|&p| p >= 0).collect();
        for pid in pids {
            let mine: Vec<&MBatch> = self.log.iter().filter(|b| b.pid == pid).collect();
            let last = *mine.last().unwrap();
            let mut same: Vec<&MBatch> = mine
                .iter()
                .rev()
                .take_while(|b| b.epoch == last.epoch)
                .take(5)
                .copied()
                .collect();
            same.reverse();
            out.insert(
                pid,
                ProducerEntry {
                    producer_epoch: last.epoch,
                    batches: same
                        .iter()
                        .map(|b| BatchMetadata {
                            first_seq: b.first_seq,
                            last_seq: b.last_seq,
                            first_offset: b.base,
                            last_offset: b.last,
                            timestamp: b.ts,
                        })
                        .collect(),
                    last_timestamp: last.ts,
                    last_offset: last.last,
                    current_txn_first_offset: None,
                    coordinator_epoch: -1,
                },
            );
        }
        out
    }
}

fn check_state(log: &PartitionLog, model: &Model) {
    let actual: BTreeMap<i64, ProducerEntry> = log
        .producer_state()
        .producers()
        .map(|(id, e)| (id, e.clone()))
        .collect();
    assert_eq!(actual, model.state());
    assert_eq!(log.producer_state().map_end_offset(), log.log_end_offset());
    assert_eq!(log.log_end_offset(), model.leo());
}

fn run(ops: Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // Drops are the crashes here: with or without fsync the kernel keeps every written byte.
    let config = || LogConfig {
        flush_policy: FlushPolicy::Never,
        ..config()
    };
    let mut log = Some(PartitionLog::open(dir, config(), 0).unwrap());
    let mut model = Model::default();
    let mut clients: Vec<Client> = vec![Client::default(); 3];
    let mut ts = 0i64;
    for op in ops {
        ts += 1;
        let l = log.as_mut().unwrap();
        let send = |l: &mut PartitionLog,
                    model: &mut Model,
                    pid: i64,
                    epoch: i16,
                    seq: i32,
                    records: usize|
         -> Expect {
            let expect = model.expect(pid, epoch, seq, records);
            let b = batch(pid, epoch, seq, records, ts);
            let got = match l.append_as_leader(&b, 0, ts) {
                Ok(info) => {
                    model.log.push(MBatch {
                        pid,
                        epoch,
                        first_seq: seq,
                        last_seq: seq + records as i32 - 1,
                        base: info.base_offset,
                        last: info.last_offset,
                        ts,
                    });
                    Expect::Append
                }
                Err(LogError::DuplicateBatch {
                    base_offset,
                    last_offset,
                    ..
                }) => Expect::Dup(base_offset, last_offset),
                Err(LogError::Producer(ProducerError::OutOfOrderSequence { .. })) => {
                    Expect::OutOfOrder
                }
                Err(LogError::Producer(ProducerError::InvalidProducerEpoch { .. })) => {
                    Expect::Fenced
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(got, expect, "pid {pid} epoch {epoch} seq {seq} x{records}");
            got
        };
        match op {
            Op::Send { p, records } => {
                let c = &mut clients[p];
                let (epoch, seq) = (c.epoch, c.next_seq);
                if send(l, &mut model, p as i64, epoch, seq, records) == Expect::Append {
                    c.next_seq += records as i32;
                    c.sent.push((epoch, seq, records));
                } else {
                    // The client resets, as one does after a fatal sequence error.
                    c.epoch += 1;
                    c.next_seq = 0;
                }
            }
            Op::Retry { p, back } => {
                let c = &clients[p];
                if let Some(&(epoch, seq, records)) = c.sent.iter().rev().nth(back) {
                    send(l, &mut model, p as i64, epoch, seq, records);
                }
            }
            Op::Gap { p, by } => {
                let c = &clients[p];
                let (epoch, seq) = (c.epoch, c.next_seq + by);
                send(l, &mut model, p as i64, epoch, seq, 1);
            }
            Op::BumpEpoch { p } => {
                clients[p].epoch += 1;
                clients[p].next_seq = 0;
            }
            Op::Zombie { p } => {
                let c = &clients[p];
                if c.epoch > 0 {
                    send(l, &mut model, p as i64, c.epoch - 1, c.next_seq, 1);
                }
            }
            Op::Plain => {
                let b = cairn_log::testutil::simple_batch(2, 5, ts);
                let info = l.append_as_leader(&b, 0, ts).unwrap();
                model.log.push(MBatch {
                    pid: -1,
                    epoch: -1,
                    first_seq: -1,
                    last_seq: -1,
                    base: info.base_offset,
                    last: info.last_offset,
                    ts,
                });
            }
            Op::Roll => l.roll(ts).unwrap(),
            Op::Truncate { at } => {
                let leo = model.leo();
                let at = at as i64 % (leo + 1);
                l.truncate_to(at).unwrap();
                model.log.retain(|b| b.last < at);
            }
            Op::Crash { damage } => {
                drop(log.take());
                let snaps = snapshots(dir);
                match damage % 4 {
                    0 => {}
                    1 => {
                        if let Some((_, p)) = snaps.last() {
                            let mut bytes = std::fs::read(p).unwrap();
                            if !bytes.is_empty() {
                                let i = damage as usize % bytes.len();
                                bytes[i] ^= 0x10;
                                std::fs::write(p, bytes).unwrap();
                            }
                        }
                    }
                    2 => {
                        for (_, p) in &snaps {
                            std::fs::remove_file(p).unwrap();
                        }
                    }
                    _ => {
                        if let Some((_, p)) = snaps.last() {
                            std::fs::write(p, b"").unwrap();
                        }
                    }
                }
                log = Some(PartitionLog::open(dir, config(), ts).unwrap());
            }
            Op::CleanReopen => {
                log.take().unwrap().close().unwrap();
                log = Some(PartitionLog::open(dir, config(), ts).unwrap());
            }
        }
        let l = log.as_ref().unwrap();
        check_state(l, &model);
        assert!(snapshots(dir).len() <= 2);
    }
    let l = log.as_ref().unwrap();
    assert_eq!(l.producer_state(), &full_rebuild(l));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn producer_state_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
