//! Transactions through `PartitionLog`: the last stable offset with ongoing and unreplicated
//! transactions, aborted-transaction lookups across segments, truncation, crash recovery
//! rebuilding `.txnindex` files, followers, compaction, and a property test against a model
//! that recomputes the aborted list and the LSO from the appended sequence.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_log::testutil::{BatchBuilder, TestRecord};
use cairn_log::{
    AbortedTxn, CleanupPolicy, ControlType, EndTxnMarker, FlushPolicy, LogConfig, LogError,
    PartitionLog, ProducerError,
};
use proptest::prelude::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        segment_index_bytes: 4096,
        index_interval_bytes: 128,
        flush_policy: FlushPolicy::EveryAppend,
        ..LogConfig::default()
    }
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, keys: &[&str], ts: i64) -> Vec<u8> {
    BatchBuilder::new(0)
        .producer(pid, epoch, seq)
        .transactional()
        .records(keys.iter().map(|k| TestRecord::kv(ts, k, "value")))
        .build()
}

fn abort(coordinator_epoch: i32) -> EndTxnMarker {
    EndTxnMarker {
        control: ControlType::Abort,
        coordinator_epoch,
    }
}

fn commit(coordinator_epoch: i32) -> EndTxnMarker {
    EndTxnMarker {
        control: ControlType::Commit,
        coordinator_epoch,
    }
}

fn txn_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    v.sort();
    v
}

#[test]
fn lso_stops_at_ongoing_and_unreplicated_transactions() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    log.append_as_leader(&cairn_log::testutil::simple_batch(2, 5, 1), 0, 1)
        .unwrap(); // 0..=1
    log.append_as_leader(&txn_batch(1, 0, 0, &["a"], 2), 0, 2)
        .unwrap(); // 2
    log.append_as_leader(&txn_batch(2, 0, 0, &["b"], 3), 0, 3)
        .unwrap(); // 3
    assert_eq!(log.first_unstable_offset(4), Some(2));
    assert_eq!(log.last_stable_offset(1), 1, "below the txn: the HW");
    assert_eq!(log.last_stable_offset(4), 2);
    // Producer 1 commits at 4: with the HW at or below the marker, the LSO stays at 2.
    let info = log.append_marker_as_leader(1, 0, commit(0), 0, 4).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.records_count),
        (4, 4, 1)
    );
    assert_eq!(log.last_stable_offset(4), 2);
    assert_eq!(
        log.last_stable_offset(5),
        3,
        "then producer 2's txn holds it"
    );
    log.append_marker_as_leader(2, 0, abort(0), 0, 5).unwrap(); // 5
    assert_eq!(log.last_stable_offset(5), 3);
    assert_eq!(log.first_unstable_offset(6), None);
    assert_eq!(log.last_stable_offset(6), 6);
    assert_eq!(
        log.collect_aborted_transactions(0, 6).unwrap(),
        vec![AbortedTxn {
            producer_id: 2,
            first_offset: 3,
            last_offset: 5,
            last_stable_offset: 6
        }]
    );
    // The marker batch is a real control batch in the log.
    let last = cairn_log::testutil::all_batches(&log).pop().unwrap();
    assert_eq!(cairn_log::parse_marker(&last).unwrap(), Some(abort(0)));

    // Leader errors through the log.
    log.append_as_leader(&txn_batch(1, 0, 1, &["c"], 6), 0, 6)
        .unwrap();
    let plain = BatchBuilder::new(0)
        .producer(1, 0, 2)
        .record(TestRecord::kv(7, "k", "v"))
        .build();
    match log.append_as_leader(&plain, 0, 7) {
        Err(LogError::Producer(e @ ProducerError::InvalidTxnState { .. })) => {
            assert_eq!(e.kafka_code(), 48)
        }
        other => panic!("{other:?}"),
    }
    log.append_marker_as_leader(1, 0, commit(3), 0, 8).unwrap();
    assert!(matches!(
        log.append_marker_as_leader(1, 0, commit(2), 0, 9),
        Err(LogError::Producer(
            ProducerError::TransactionCoordinatorFenced { .. }
        ))
    ));
    log.append_marker_as_leader(1, 1, abort(3), 0, 9).unwrap();
    assert!(matches!(
        log.append_marker_as_leader(1, 0, abort(3), 0, 9),
        Err(LogError::Producer(
            ProducerError::InvalidProducerEpoch { .. }
        ))
    ));
    // Clients may not write control batches.
    let forged = cairn_log::build_marker_batch(1, 1, abort(9), 10);
    assert!(matches!(
        log.append_as_leader(&forged, 0, 10),
        Err(LogError::InvalidRecord { .. })
    ));
}

#[test]
fn coordinator_appends_start_transactions_without_sequences() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let offsets = |epoch| {
        BatchBuilder::new(0)
            .producer(9, epoch, -1)
            .transactional()
            .record(TestRecord::kv(1, "group/topic/0", "offset"))
            .build()
    };
    log.append_as_coordinator(&offsets(1), 0, 1).unwrap();
    log.append_as_coordinator(&offsets(1), 0, 2).unwrap();
    assert_eq!(log.last_stable_offset(2), 0);
    assert!(matches!(
        log.append_as_coordinator(&offsets(0), 0, 3),
        Err(LogError::Producer(
            ProducerError::InvalidProducerEpoch { .. }
        ))
    ));
    log.append_marker_as_leader(9, 1, commit(0), 0, 4).unwrap();
    assert_eq!(log.last_stable_offset(3), 3);
    assert_eq!(log.first_unstable_offset(3), None);
}

/// Appends, rolling often: txns of producers 1..=3, some aborted, spread over segments.
/// Returns the expected aborted transactions (without last stable offsets).
fn spread(log: &mut PartitionLog) -> Vec<(i64, i64, i64)> {
    let mut aborted = Vec::new();
    let mut seq = [0i32; 4];
    for round in 0..12i64 {
        let pid = 1 + round % 3;
        let first = log.log_end_offset();
        for _ in 0..2 {
            let s = seq[pid as usize];
            log.append_as_leader(&txn_batch(pid, 0, s, &["x", "y"], round), 0, round)
                .unwrap();
            seq[pid as usize] += 2;
        }
        if round % 4 == 3 {
            log.roll(round).unwrap();
        }
        let marker = if round % 2 == 0 { abort(0) } else { commit(0) };
        let at = log
            .append_marker_as_leader(pid, 0, marker, 0, round)
            .unwrap()
            .base_offset;
        if round % 2 == 0 {
            aborted.push((pid, first, at));
        }
    }
    aborted
}

fn triples(v: &[AbortedTxn]) -> Vec<(i64, i64, i64)> {
    v.iter()
        .map(|a| (a.producer_id, a.first_offset, a.last_offset))
        .collect()
}

#[test]
fn aborted_transactions_are_collected_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let expected = spread(&mut log);
    assert!(log.num_segments() >= 4, "{}", log.num_segments());
    assert!(txn_files(d.path()).len() >= 3);
    let leo = log.log_end_offset();
    assert_eq!(
        triples(&log.collect_aborted_transactions(0, leo).unwrap()),
        expected
    );
    // Every window gets exactly the overlapping ones.
    for from in 0..leo {
        for upper in from + 1..=leo {
            let want: Vec<_> = expected
                .iter()
                .copied()
                .filter(|&(_, f, l)| l >= from && f < upper)
                .collect();
            assert_eq!(
                triples(&log.collect_aborted_transactions(from, upper).unwrap()),
                want,
                "[{from}, {upper})"
            );
        }
    }
    // A marker in a later segment than its data: the data's segment alone does not know.
    let bases = log.segment_base_offsets();
    assert!(
        expected
            .iter()
            .any(|&(_, f, l)| bases.iter().any(|&b| f < b && b <= l)),
        "some txn crosses a roll: {expected:?} {bases:?}"
    );
}

#[test]
fn truncation_drops_entries_and_reopens_transactions() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let expected = spread(&mut log);
    let leo = log.log_end_offset();
    let (pid, first, marker) = *expected.last().unwrap();
    // Cut the last abort marker away: the transaction is ongoing again.
    log.truncate_to(marker).unwrap();
    assert_eq!(
        triples(&log.collect_aborted_transactions(0, leo).unwrap()),
        expected[..expected.len() - 1]
    );
    assert_eq!(
        log.producer_state()
            .get(pid)
            .unwrap()
            .current_txn_first_offset,
        Some(first)
    );
    assert_eq!(log.last_stable_offset(marker), first);
    // The new leader's marker ends it again, at a new offset.
    log.append_marker_as_leader(pid, 0, abort(1), 1, 100)
        .unwrap();
    let mut again = expected.clone();
    again.last_mut().unwrap().2 = marker;
    assert_eq!(
        triples(&log.collect_aborted_transactions(0, leo).unwrap()),
        again
    );
    // Deeper cuts drop whole segments with their .txnindex files.
    let (_, _, second) = expected[1];
    log.truncate_to(second).unwrap();
    assert_eq!(
        triples(&log.collect_aborted_transactions(0, leo).unwrap()),
        expected[..1]
    );
    let bases = log.segment_base_offsets();
    for p in txn_files(d.path()) {
        let stem: i64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert!(bases.contains(&stem), "{p:?} outlived its segment");
    }
    log.truncate_fully_and_start_at(500).unwrap();
    assert!(txn_files(d.path()).is_empty());
    assert_eq!(log.first_unstable_offset(500), None);
}

/// What a read_committed reader would see: the aborted list and the LSO at the log end.
fn txn_view(log: &mut PartitionLog) -> (Vec<AbortedTxn>, i64, Option<i64>) {
    let leo = log.log_end_offset();
    (
        log.collect_aborted_transactions(log.log_start_offset(), leo)
            .unwrap(),
        log.last_stable_offset(leo),
        log.first_unstable_offset(leo),
    )
}

#[test]
fn recovery_rebuilds_transaction_indexes() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    spread(&mut log);
    // Leave a transaction open across the crash.
    let s3 = log.producer_state().get(3).unwrap().last_seq().unwrap() + 1;
    log.append_as_leader(&txn_batch(3, 0, s3, &["z"], 50), 0, 50)
        .unwrap();
    let before = txn_view(&mut log);
    let state = log.producer_state().clone();
    assert!(before.2.is_some());
    log.close().unwrap();

    // Clean reopen: same view.
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(txn_view(&mut log), before);
    drop(log); // crash

    // Torn .txnindex files below the recovery point are detected and rebuilt by the
    // producer-state replay. (A file lost whole below the recovery point cannot be told
    // from a segment without aborts: flush tickets and a directory fsync at creation make
    // it durable, as Kafka relies on its flushes.)
    let files = txn_files(d.path());
    assert!(files.len() >= 3);
    for p in &files {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
    }
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(txn_view(&mut log), before);
    assert_eq!(log.producer_state().ongoing_txns().count(), 1);
    assert_eq!(
        log.producer_state().get(3),
        state.get(3),
        "the open transaction survives"
    );
    log.close().unwrap();

    // After a clean shutdown a damaged index is detected and rebuilt too.
    let files = txn_files(d.path());
    std::fs::write(&files[0], b"garbage").unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(txn_view(&mut log), before);

    // A torn tail: the last marker half-written is cut, its txn ongoing again, and the
    // active segment's index loses the entry.
    log.append_marker_as_leader(3, 0, abort(0), 0, 60).unwrap();
    let with_abort = txn_view(&mut log);
    assert_eq!(with_abort.0.len(), before.0.len() + 1);
    assert_eq!(with_abort.2, None);
    let active = *log.segment_base_offsets().last().unwrap();
    drop(log);
    let seg = d.path().join(format!("{active:020}.log"));
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(txn_view(&mut log), before);
}

#[test]
fn followers_compute_the_same_transaction_state() {
    let d = tempfile::tempdir().unwrap();
    let mut leader = PartitionLog::open(&d.path().join("l"), config(), 0).unwrap();
    spread(&mut leader);
    let s2 = leader.producer_state().get(2).unwrap().last_seq().unwrap() + 1;
    leader
        .append_as_leader(&txn_batch(2, 0, s2, &["q"], 99), 0, 99)
        .unwrap();
    let mut follower = PartitionLog::open(&d.path().join("f"), config(), 0).unwrap();
    // Replicate in chunks of whole batches, as a fetcher would.
    let batches = cairn_log::testutil::all_batches(&leader);
    for chunk in batches.chunks(3) {
        follower.append_as_follower(&chunk.concat()).unwrap();
    }
    assert_eq!(leader.producer_state(), follower.producer_state());
    assert_eq!(txn_view(&mut leader), txn_view(&mut follower));
    for hw in 0..=leader.log_end_offset() {
        assert_eq!(
            leader.clone_lso(hw),
            follower.clone_lso(hw),
            "LSO at HW {hw}"
        );
    }
}

/// LSO at `hw` without pruning the caller's state for later, smaller `hw`s.
trait CloneLso {
    fn clone_lso(&self, hw: i64) -> i64;
}

impl CloneLso for PartitionLog {
    fn clone_lso(&self, hw: i64) -> i64 {
        let mut s = self.producer_state().clone();
        s.on_high_watermark_updated(hw);
        s.first_unstable_offset()
            .map_or(hw, |o| o.max(self.log_start_offset()).min(hw))
    }
}

#[test]
fn compaction_removes_aborted_records_and_keeps_markers() {
    let d = tempfile::tempdir().unwrap();
    let c = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config()
    };
    let mut log = PartitionLog::open(d.path(), c, 0).unwrap();
    // Committed value of "k", then an aborted overwrite, then an ongoing one.
    log.append_as_leader(&txn_batch(1, 0, 0, &["k", "a"], 1), 0, 1)
        .unwrap(); // 0..=1
    log.append_marker_as_leader(1, 0, commit(0), 0, 2).unwrap(); // 2
    log.append_as_leader(&txn_batch(1, 0, 2, &["k", "b"], 3), 0, 3)
        .unwrap(); // 3..=4
    log.roll(4).unwrap();
    log.append_marker_as_leader(1, 0, abort(0), 0, 5).unwrap(); // 5: next segment
    log.roll(5).unwrap();
    log.append_as_leader(&txn_batch(2, 0, 0, &["k"], 6), 0, 6)
        .unwrap(); // 6
    log.roll(6).unwrap();
    log.append_as_leader(&cairn_log::testutil::simple_batch(1, 3, 7), 0, 7)
        .unwrap();
    let hw = log.log_end_offset();
    assert_eq!(log.last_stable_offset(hw), 6);
    let aborted_before = log.collect_aborted_transactions(0, hw).unwrap();
    let stats = log.clean(100).unwrap();
    assert_eq!(stats.aborted_records_removed, 2, "{stats:?}");
    let mut keys = Vec::new();
    let mut markers = 0;
    for b in cairn_log::testutil::all_batches(&log) {
        let h = cairn_log::BatchHeader::parse(&b).unwrap();
        if h.is_control() {
            markers += 1;
            continue;
        }
        for r in cairn_log::decode_records(&b).unwrap() {
            keys.push((
                h.base_offset + r.offset_delta as i64,
                String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    assert_eq!(markers, 2, "markers are kept");
    // The committed "k" at 0 survives (the aborted "k" at 3 supersedes nothing); the
    // ongoing txn's segment (from offset 6) is not cleaned.
    assert!(keys.contains(&(0, "k".into())), "{keys:?}");
    assert!(keys.iter().all(|(o, _)| *o != 3 && *o != 4), "{keys:?}");
    assert!(keys.contains(&(6, "k".into())), "{keys:?}");
    assert_eq!(
        log.collect_aborted_transactions(0, hw).unwrap(),
        aborted_before
    );
    // Reopening after compaction keeps the same view.
    let before = txn_view(&mut log);
    log.close().unwrap();
    let c = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..config()
    };
    let mut log = PartitionLog::open(d.path(), c, 0).unwrap();
    assert_eq!(txn_view(&mut log), before);
}

// ---------------------------------------------------------------------------------------
// Property test: random transactional / plain appends, markers, rolls, truncations and
// reopens against a model of the log's batches.

#[derive(Clone, Debug)]
enum Op {
    TxnData { p: usize, records: usize },
    Marker { p: usize, abort: bool },
    Plain,
    Roll,
    Truncate { back: u8 },
    Crash,
    CleanReopen,
    RaiseHw { by: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..3, 1usize..3).prop_map(|(p, records)| Op::TxnData { p, records }),
        4 => (0usize..3, any::<bool>()).prop_map(|(p, abort)| Op::Marker { p, abort }),
        2 => Just(Op::Plain),
        1 => Just(Op::Roll),
        1 => any::<u8>().prop_map(|back| Op::Truncate { back }),
        1 => Just(Op::Crash),
        1 => Just(Op::CleanReopen),
        2 => any::<u8>().prop_map(|by| Op::RaiseHw { by }),
    ]
}

/// One batch of the model log: `(producer or -1, base, last, kind)`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Data { transactional: bool },
    Marker { abort: bool },
}

type Replayed = (Vec<(i64, i64, i64)>, BTreeMap<i64, i64>, Vec<(i64, i64)>);

#[derive(Default)]
struct Model {
    log: Vec<(i64, i64, i64, Kind)>,
}

impl Model {
    fn leo(&self) -> i64 {
        self.log.last().map_or(0, |b| b.2 + 1)
    }

    /// Aborted (pid, first, last) in marker order, ongoing pid -> first offset, completed
    /// (first, marker) pairs.
    fn replay(&self) -> Replayed {
        let mut open: BTreeMap<i64, i64> = BTreeMap::new(); // pid -> first
        let mut aborted = Vec::new();
        let mut completed = Vec::new();
        for &(pid, base, last, kind) in &self.log {
            match kind {
                Kind::Data {
                    transactional: true,
                } => {
                    open.entry(pid).or_insert(base);
                }
                Kind::Data { .. } => {}
                Kind::Marker { abort } => {
                    if let Some(first) = open.remove(&pid) {
                        completed.push((first, last));
                        if abort {
                            aborted.push((pid, first, last));
                        }
                    }
                }
            }
        }
        (aborted, open, completed)
    }

    /// The LSO at `hw`: below the earliest ongoing txn and the earliest completed txn whose
    /// marker is at or above `hw`.
    fn lso(&self, hw: i64) -> i64 {
        let (_, open, completed) = self.replay();
        let ongoing = open.values().copied().min();
        let unrepl = completed
            .iter()
            .filter(|&&(_, m)| m >= hw)
            .map(|&(f, _)| f)
            .min();
        [ongoing, unrepl, Some(hw)]
            .into_iter()
            .flatten()
            .min()
            .unwrap()
    }
}

fn run_ops(ops: Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let c = LogConfig {
        segment_bytes: 500,
        ..config()
    };
    let mut log = PartitionLog::open(d.path(), c.clone(), 0).unwrap();
    let mut model = Model::default();
    let mut hw = 0i64;
    let mut now = 0i64;
    for op in ops {
        now += 1;
        match op {
            Op::TxnData { p, records } => {
                let pid = p as i64 + 1;
                let keys: Vec<String> = (0..records).map(|i| format!("k{i}")).collect();
                let keys: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
                let s = log
                    .producer_state()
                    .get(pid)
                    .and_then(|e| e.last_seq())
                    .map_or(0, |l| l + 1);
                let info = log
                    .append_as_leader(&txn_batch(pid, 0, s, &keys, now), 0, now)
                    .unwrap();
                model.log.push((
                    pid,
                    info.base_offset,
                    info.last_offset,
                    Kind::Data {
                        transactional: true,
                    },
                ));
            }
            Op::Marker { p, abort: a } => {
                let pid = p as i64 + 1;
                let m = if a { abort(0) } else { commit(0) };
                let info = log.append_marker_as_leader(pid, 0, m, 0, now).unwrap();
                model.log.push((
                    pid,
                    info.base_offset,
                    info.last_offset,
                    Kind::Marker { abort: a },
                ));
            }
            Op::Plain => {
                let info = log
                    .append_as_leader(&cairn_log::testutil::simple_batch(1, 4, now), 0, now)
                    .unwrap();
                model.log.push((
                    -1,
                    info.base_offset,
                    info.last_offset,
                    Kind::Data {
                        transactional: false,
                    },
                ));
            }
            Op::Roll => log.roll(now).unwrap(),
            Op::Truncate { back } => {
                let at = model.leo().saturating_sub(back as i64 % 8).max(0);
                log.truncate_to(at).unwrap();
                model.log.retain(|b| b.2 < at);
                hw = hw.min(model.leo());
                // The log forgets what the HW had pruned: recompute from the model.
            }
            Op::Crash => {
                drop(log);
                log = PartitionLog::open(d.path(), c.clone(), 0).unwrap();
            }
            Op::CleanReopen => {
                let before = log.producer_state().clone();
                let view = (
                    log.collect_aborted_transactions(0, log.log_end_offset())
                        .unwrap(),
                    log.last_stable_offset(hw),
                );
                log.close().unwrap();
                log = PartitionLog::open(d.path(), c.clone(), 0).unwrap();
                assert_eq!(log.producer_state(), &before, "state after a clean reopen");
                assert_eq!(
                    (
                        log.collect_aborted_transactions(0, log.log_end_offset())
                            .unwrap(),
                        log.last_stable_offset(hw)
                    ),
                    view
                );
            }
            Op::RaiseHw { by } => {
                hw = (hw + by as i64 % 5).min(model.leo());
            }
        }
        assert_eq!(log.log_end_offset(), model.leo());
        let lso = log.last_stable_offset(hw);
        assert!(lso <= hw, "LSO {lso} above HW {hw}");
        let (aborted, open, _) = model.replay();
        if let Some(first) = open.values().min() {
            assert!(lso <= *first, "LSO {lso} passes an ongoing txn at {first}");
        }
        assert_eq!(lso, model.lso(hw), "LSO at HW {hw}");
        let got = log
            .collect_aborted_transactions(0, log.log_end_offset())
            .unwrap();
        assert_eq!(triples(&got), aborted);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn transactions_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_ops(ops);
    }
}
