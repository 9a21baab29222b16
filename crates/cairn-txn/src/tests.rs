//! Unit tests of the coordinator: one request against one state, and the exact answer.

use crate::*;

const T: i32 = 60_000;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// A coordinator (partition 0, epoch 7) and a producer id allocator from 1000.
struct Fixture {
    c: TxnCoordinator,
    next_pid: i64,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            c: TxnCoordinator::new(0, 7, TxnConfig::default()),
            next_pid: 1000,
        }
    }

    fn init(
        &mut self,
        id: &str,
        expected: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<InitOutcome, TxnError> {
        let next = &mut self.next_pid;
        let mut alloc = || {
            *next += 1;
            *next
        };
        self.c.init_producer_id(id, T, expected, now_ms, &mut alloc)
    }

    /// InitProducerId that must write; written. Returns (pid, epoch).
    fn init_ok(&mut self, id: &str, expected: Option<(i64, i16)>, now_ms: i64) -> (i64, i16) {
        match self.init(id, expected, now_ms) {
            Ok(InitOutcome::Write(t)) => {
                let answer = t.producer_id_and_epoch().unwrap();
                self.c.complete(t);
                answer
            }
            other => panic!("{other:?}"),
        }
    }

    fn add_ok(&mut self, id: &str, (pid, epoch): (i64, i16), parts: &[TopicPartition], now: i64) {
        let t = self.c.add_partitions(id, pid, epoch, parts, now).unwrap();
        self.c.complete(t.expect("a write"));
    }

    fn end_ok(&mut self, id: &str, (pid, epoch): (i64, i16), commit: bool, now: i64) -> MarkerJob {
        match self.c.end_txn(id, pid, epoch, commit, now) {
            Ok(EndOutcome::Write(t)) => {
                let job = t.markers().unwrap();
                self.c.complete(t);
                job
            }
            other => panic!("{other:?}"),
        }
    }

    fn markers_ok(&mut self, id: &str, now: i64) {
        let t = self.c.complete_markers(id, now).unwrap();
        self.c.complete(t);
    }

    fn state(&self, id: &str) -> TxnState {
        self.c.describe(id).unwrap().state
    }

    /// Rebuilds the coordinator from what `self` holds, as a new leader would from the
    /// log (the caller must have no pending writes).
    fn failover(&mut self) {
        let mut c = TxnCoordinator::new(0, 8, TxnConfig::default());
        for m in self.c.list() {
            let key = encode_key(&m.transactional_id);
            c.replay(decode(&key, Some(&encode_value(m))).unwrap());
        }
        self.c = c;
    }
}

fn is_fenced(r: &Result<impl std::fmt::Debug, TxnError>) -> bool {
    matches!(r, Err(TxnError::ProducerFenced { .. }))
}

fn is_concurrent(r: &Result<impl std::fmt::Debug, TxnError>) -> bool {
    matches!(r, Err(TxnError::ConcurrentTransactions { .. }))
}

#[test]
fn state_ids_and_names_are_kafkas() {
    let names: Vec<(i8, &str)> = TxnState::ALL.iter().map(|s| (s.id(), s.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (0, "Empty"),
            (1, "Ongoing"),
            (2, "PrepareCommit"),
            (3, "PrepareAbort"),
            (4, "CompleteCommit"),
            (5, "CompleteAbort"),
            (6, "Dead"),
            (7, "PrepareEpochFence"),
        ]
    );
    for s in TxnState::ALL {
        assert_eq!(TxnState::from_id(s.id()), Some(s));
        assert_eq!(TxnState::from_name(s.as_str()), Some(s));
    }
    assert_eq!(TxnState::from_id(8), None);
    assert_eq!(TxnState::from_id(-1), None);
}

#[test]
fn init_of_a_new_id_allocates_a_producer_id_at_epoch_0() {
    let mut f = Fixture::new();
    let Ok(InitOutcome::Write(t)) = f.init("tx", None, 5) else {
        panic!()
    };
    assert_eq!(t.producer_id_and_epoch(), Some((1001, 0)));
    assert_eq!(t.coordinator_epoch, 7);
    assert!(t.markers().is_none());
    // Nothing is visible before the write completes, and the id is busy.
    assert_eq!(f.c.describe("tx"), None);
    assert!(f.c.has_pending_write("tx"));
    assert!(is_concurrent(&f.init("tx", None, 5)));
    let record = decode(&t.key(), t.value().as_deref()).unwrap();
    assert_eq!(record.metadata.as_ref(), t.new.as_ref());
    f.c.complete(t);
    let m = f.c.describe("tx").unwrap();
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.state, m.timeout_ms),
        (1001, 0, TxnState::Empty, T)
    );
    assert_eq!((m.prev_producer_id, m.next_producer_id), (-1, -1));
    assert_eq!((m.txn_start_ms, m.last_update_ms), (-1, 5));
}

#[test]
fn init_validates_the_request() {
    let mut f = Fixture::new();
    assert!(matches!(
        f.init("", None, 0),
        Err(TxnError::InvalidRequest { .. })
    ));
    let mut alloc = || 1;
    for timeout_ms in [0, -1, 900_001] {
        assert_eq!(
            f.c.init_producer_id("tx", timeout_ms, None, 0, &mut alloc),
            Err(TxnError::InvalidTransactionTimeout {
                timeout_ms,
                max_timeout_ms: 900_000
            })
        );
    }
    assert!(
        f.c.init_producer_id("tx", 900_000, None, 0, &mut alloc)
            .is_ok()
    );
    let mut f = Fixture::new();
    for expected in [(-1, 0), (5, -1)] {
        assert!(matches!(
            f.init("tx", Some(expected), 0),
            Err(TxnError::InvalidRequest { .. })
        ));
    }
}

#[test]
fn init_of_a_new_id_accepts_any_expected_producer() {
    let mut f = Fixture::new();
    assert_eq!(f.init_ok("tx", Some((77, 4)), 0), (1001, 0));
}

#[test]
fn a_failed_first_init_leaves_nothing() {
    let mut f = Fixture::new();
    let Ok(InitOutcome::Write(t)) = f.init("tx", None, 0) else {
        panic!()
    };
    f.c.abort_pending(&t);
    assert_eq!(f.c.describe("tx"), None);
    assert_eq!(f.c.list().count(), 0);
    assert!(!f.c.has_pending_write("tx"));
    assert_eq!(f.init_ok("tx", None, 0), (1002, 0));
}

#[test]
fn init_on_empty_or_complete_bumps_the_epoch() {
    let mut f = Fixture::new();
    let p0 = f.init_ok("tx", None, 0);
    let p1 = f.init_ok("tx", None, 1);
    assert_eq!(p1, (p0.0, 1));
    let m = f.c.describe("tx").unwrap();
    assert_eq!((m.prev_producer_id, m.last_producer_epoch), (p0.0, -1));
    // The old producer is fenced everywhere.
    assert!(is_fenced(&f.c.add_partitions(
        "tx",
        p0.0,
        p0.1,
        &[tp("a", 0)],
        2
    )));
    f.add_ok("tx", p1, &[tp("a", 0)], 2);
    f.end_ok("tx", p1, true, 3);
    f.markers_ok("tx", 4);
    assert_eq!(f.init_ok("tx", None, 5), (p0.0, 2));
    assert_eq!(f.state("tx"), TxnState::Empty);
    assert!(f.c.describe("tx").unwrap().partitions.is_empty());
}

#[test]
fn init_on_an_ongoing_txn_aborts_it_with_a_bumped_epoch_first() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0), tp("b", 1)], 10);
    let Ok(InitOutcome::AbortFirst(t)) = f.init("tx", None, 20) else {
        panic!()
    };
    let new = t.new.clone().unwrap();
    assert_eq!(
        (new.state, new.producer_epoch, new.last_producer_epoch),
        (TxnState::PrepareAbort, 1, -1)
    );
    assert_eq!((new.txn_start_ms, new.last_update_ms), (10, 20));
    let job = t.markers().unwrap();
    assert_eq!(
        job,
        MarkerJob {
            transactional_id: "tx".into(),
            producer_id: p.0,
            producer_epoch: 1,
            commit: false,
            coordinator_epoch: 7,
            partitions: vec![tp("a", 0), tp("b", 1)],
        }
    );
    // The old producer cannot commit while the fence is written, nor after.
    assert!(is_concurrent(&f.c.end_txn("tx", p.0, p.1, true, 21)));
    f.c.complete(t);
    assert!(is_fenced(&f.c.end_txn("tx", p.0, p.1, true, 22)));
    // The new producer's retry waits for the markers.
    assert!(is_concurrent(&f.init("tx", None, 23)));
    f.markers_ok("tx", 24);
    assert_eq!(f.state("tx"), TxnState::CompleteAbort);
    assert_eq!(f.init_ok("tx", None, 25), (p.0, 2));
}

#[test]
fn a_failed_fence_write_leaves_the_epoch_and_the_next_fence_uses_the_same_bump() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 1);
    let Ok(InitOutcome::AbortFirst(t)) = f.init("tx", None, 2) else {
        panic!()
    };
    f.c.abort_pending(&t);
    assert_eq!(f.c.describe("tx").unwrap().producer_epoch, p.1);
    assert_eq!(f.state("tx"), TxnState::Ongoing);
    let Ok(InitOutcome::AbortFirst(t2)) = f.init("tx", None, 3) else {
        panic!()
    };
    assert_eq!(t2.new.as_ref().unwrap().producer_epoch, p.1 + 1);
}

#[test]
fn init_during_markers_is_concurrent() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 1);
    f.end_ok("tx", p, true, 2);
    assert!(is_concurrent(&f.init("tx", None, 3)));
    assert!(is_concurrent(&f.init("tx", Some(p), 3)));
}

#[test]
fn kip_360_expected_epoch_bumps_retries_and_fences() {
    let mut f = Fixture::new();
    let p0 = f.init_ok("tx", None, 0);
    // The producer recovers from an abortable error naming its epoch: bumped, and the
    // old epoch is remembered.
    let p1 = f.init_ok("tx", Some(p0), 1);
    assert_eq!(p1, (p0.0, 1));
    assert_eq!(f.c.describe("tx").unwrap().last_producer_epoch, 0);
    // The answer was lost; the retry names the old epoch again and gets the same epoch.
    assert_eq!(f.init_ok("tx", Some(p0), 2), p1);
    // An epoch that is neither current nor last is fenced, and so is another producer id.
    assert!(is_fenced(&f.init("tx", Some((p0.0, 5)), 3)));
    assert!(is_fenced(&f.init("tx", Some((p0.0 + 50, 1)), 3)));
    // A plain InitProducerId (a new producer instance) forgets the last epoch.
    let p2 = f.init_ok("tx", None, 4);
    assert_eq!(p2, (p0.0, 2));
    assert!(is_fenced(&f.init("tx", Some(p1), 5)));
}

#[test]
fn kip_360_retry_across_a_coordinator_change_is_fenced() {
    let mut f = Fixture::new();
    let p0 = f.init_ok("tx", None, 0);
    let p1 = f.init_ok("tx", Some(p0), 1);
    f.failover();
    assert_eq!(f.c.describe("tx").unwrap().last_producer_epoch, -1);
    assert!(is_fenced(&f.init("tx", Some(p0), 2)));
    assert_eq!(f.init_ok("tx", Some(p1), 3), (p0.0, 2));
}

#[test]
fn kip_360_on_an_ongoing_txn_fences_it() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 1);
    assert!(matches!(
        f.init("tx", Some(p), 2),
        Ok(InitOutcome::AbortFirst(_))
    ));
}

/// Loads `tx` at `epoch` in state `state` with producer id 500.
fn loaded(epoch: i16, state: TxnState) -> Fixture {
    let mut f = Fixture::new();
    let partitions = if state == TxnState::Ongoing {
        [tp("a", 0)].into_iter().collect()
    } else {
        Default::default()
    };
    f.c.replay(TxnLogRecord {
        transactional_id: "tx".into(),
        metadata: Some(TxnMetadata {
            transactional_id: "tx".into(),
            producer_id: 500,
            prev_producer_id: 499,
            next_producer_id: -1,
            producer_epoch: epoch,
            last_producer_epoch: -1,
            timeout_ms: T,
            state,
            partitions,
            txn_start_ms: if state == TxnState::Empty { -1 } else { 0 },
            last_update_ms: 0,
        }),
    });
    f
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id() {
    let mut f = loaded(i16::MAX - 2, TxnState::Empty);
    assert_eq!(f.init_ok("tx", None, 1), (500, i16::MAX - 1));
    // i16::MAX - 1 is the last epoch handed out: the next init rotates.
    assert_eq!(f.init_ok("tx", Some((500, i16::MAX - 1)), 2), (1001, 0));
    let m = f.c.describe("tx").unwrap();
    assert_eq!(
        (
            m.prev_producer_id,
            m.next_producer_id,
            m.last_producer_epoch
        ),
        (500, -1, i16::MAX - 1)
    );
    // The rotation's answer was lost: the retry names the old id at its exhausted epoch
    // and gets the new id again, without another bump.
    assert_eq!(f.init_ok("tx", Some((500, i16::MAX - 1)), 3), (1001, 0));
    // The old id at an unexhausted epoch is someone else: fenced.
    assert!(is_fenced(&f.init("tx", Some((500, 3)), 4)));
}

#[test]
fn an_exhausted_epoch_without_expected_rotates_and_forgets_the_epoch() {
    let mut f = loaded(i16::MAX - 1, TxnState::CompleteCommit);
    assert_eq!(f.init_ok("tx", None, 1), (1001, 0));
    let m = f.c.describe("tx").unwrap();
    assert_eq!((m.prev_producer_id, m.last_producer_epoch), (500, -1));
}

#[test]
fn an_exhausted_epoch_with_a_stale_expected_epoch_is_fenced() {
    let mut f = loaded(i16::MAX - 1, TxnState::Empty);
    assert!(is_fenced(&f.init("tx", Some((500, 7)), 1)));
}

#[test]
fn fencing_an_ongoing_txn_at_the_last_epoch_reaches_i16_max_then_rotates() {
    let mut f = loaded(i16::MAX - 1, TxnState::Ongoing);
    let Ok(InitOutcome::AbortFirst(t)) = f.init("tx", None, 1) else {
        panic!()
    };
    assert_eq!(t.markers().unwrap().producer_epoch, i16::MAX);
    f.c.complete(t);
    f.markers_ok("tx", 2);
    assert_eq!(f.init_ok("tx", None, 3), (1001, 0));
}

#[test]
fn an_ongoing_txn_at_i16_max_cannot_be_fenced() {
    let mut f = loaded(i16::MAX, TxnState::Ongoing);
    assert!(matches!(
        f.init("tx", None, 1),
        Err(TxnError::InvalidTxnState { .. })
    ));
    assert!(f.c.expire_timed_out(i64::MAX).is_empty());
}

#[test]
fn add_partitions_checks_the_producer() {
    let mut f = Fixture::new();
    let parts = [tp("a", 0)];
    assert!(matches!(
        f.c.add_partitions("tx", 1, 0, &parts, 0),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
    assert!(matches!(
        f.c.add_partitions("", 1, 0, &parts, 0),
        Err(TxnError::InvalidRequest { .. })
    ));
    let p0 = f.init_ok("tx", None, 0);
    let p1 = f.init_ok("tx", None, 0);
    assert!(matches!(
        f.c.add_partitions("tx", p1.0 + 1, p1.1, &parts, 0),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
    // Older and newer epochs alike are fenced (the classic protocol never lets a client
    // pick its epoch).
    assert!(is_fenced(&f.c.add_partitions("tx", p0.0, p0.1, &parts, 0)));
    assert!(is_fenced(&f.c.add_partitions(
        "tx",
        p1.0,
        p1.1 + 1,
        &parts,
        0
    )));
    let t = f.c.add_partitions("tx", p1.0, p1.1, &parts, 0).unwrap();
    assert!(t.is_some());
    assert!(is_concurrent(
        &f.c.add_partitions("tx", p1.0, p1.1, &parts, 0)
    ));
    // A fenced producer is told so even while a write is pending.
    assert!(is_fenced(&f.c.add_partitions("tx", p0.0, p0.1, &parts, 0)));
}

#[test]
fn add_partitions_starts_and_grows_the_transaction() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 100);
    let m = f.c.describe("tx").unwrap();
    assert_eq!(
        (m.state, m.txn_start_ms, m.last_update_ms),
        (TxnState::Ongoing, 100, 100)
    );
    // Already there: nothing to write.
    assert_eq!(
        f.c.add_partitions("tx", p.0, p.1, &[tp("a", 0)], 150),
        Ok(None)
    );
    f.add_ok("tx", p, &[tp("a", 0), tp("b", 2)], 200);
    let m = f.c.describe("tx").unwrap();
    assert_eq!((m.txn_start_ms, m.last_update_ms), (100, 200));
    assert_eq!(
        m.partitions.iter().cloned().collect::<Vec<_>>(),
        vec![tp("a", 0), tp("b", 2)]
    );
    // Once the transaction ends, the next one starts afresh.
    f.end_ok("tx", p, false, 300);
    assert!(is_concurrent(&f.c.add_partitions(
        "tx",
        p.0,
        p.1,
        &[tp("c", 0)],
        310
    )));
    f.markers_ok("tx", 320);
    assert!(f.c.describe("tx").unwrap().partitions.is_empty());
    f.add_ok("tx", p, &[tp("c", 0)], 400);
    let m = f.c.describe("tx").unwrap();
    assert_eq!(m.txn_start_ms, 400);
    assert_eq!(m.partitions.len(), 1);
}

#[test]
fn verify_partitions_answers_from_the_committed_transaction() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    let a = tp("a", 0);
    let b = tp("b", 0);
    assert_eq!(
        f.c.verify_partitions("tx", p.0, p.1, std::slice::from_ref(&a)),
        Err(TxnError::TransactionAbortable {
            transactional_id: "tx".into(),
            missing: vec![a.clone()]
        })
    );
    f.add_ok("tx", p, std::slice::from_ref(&a), 1);
    assert_eq!(
        f.c.verify_partitions("tx", p.0, p.1, std::slice::from_ref(&a)),
        Ok(())
    );
    // A pending add of b does not count yet.
    let t =
        f.c.add_partitions("tx", p.0, p.1, std::slice::from_ref(&b), 2)
            .unwrap()
            .unwrap();
    assert!(
        f.c.verify_partitions("tx", p.0, p.1, &[a.clone(), b.clone()])
            .is_err()
    );
    assert_eq!(
        f.c.verify_partitions("tx", p.0, p.1, std::slice::from_ref(&a)),
        Ok(())
    );
    f.c.complete(t);
    assert_eq!(
        f.c.verify_partitions("tx", p.0, p.1, &[a.clone(), b]),
        Ok(())
    );
    assert!(is_fenced(&f.c.verify_partitions(
        "tx",
        p.0,
        p.1 - 1,
        std::slice::from_ref(&a)
    )));
    assert!(matches!(
        f.c.verify_partitions("tx", p.0 + 1, p.1, std::slice::from_ref(&a)),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
    assert!(matches!(
        f.c.verify_partitions("nope", p.0, p.1, std::slice::from_ref(&a)),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
    f.end_ok("tx", p, true, 3);
    assert!(is_concurrent(&f.c.verify_partitions(
        "tx",
        p.0,
        p.1,
        std::slice::from_ref(&a)
    )));
    f.markers_ok("tx", 4);
    assert!(matches!(
        f.c.verify_partitions("tx", p.0, p.1, &[a]),
        Err(TxnError::TransactionAbortable { .. })
    ));
}

#[test]
fn end_txn_of_an_empty_transaction_is_invalid_state() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    for commit in [true, false] {
        assert!(matches!(
            f.c.end_txn("tx", p.0, p.1, commit, 1),
            Err(TxnError::InvalidTxnState {
                state: TxnState::Empty,
                ..
            })
        ));
    }
}

#[test]
fn end_txn_checks_the_producer() {
    let mut f = Fixture::new();
    assert!(matches!(
        f.c.end_txn("tx", 1, 0, true, 0),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
    let p0 = f.init_ok("tx", None, 0);
    let p1 = f.init_ok("tx", None, 0);
    f.add_ok("tx", p1, &[tp("a", 0)], 1);
    assert!(is_fenced(&f.c.end_txn("tx", p0.0, p0.1, true, 2)));
    assert!(is_fenced(&f.c.end_txn("tx", p1.0, p1.1 + 1, true, 2)));
    assert!(matches!(
        f.c.end_txn("tx", p1.0 + 1, p1.1, true, 2),
        Err(TxnError::InvalidProducerIdMapping { .. })
    ));
}

#[test]
fn end_txn_commit_prepares_then_retries_are_answered() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("b", 1), tp("a", 0)], 1);
    let Ok(EndOutcome::Write(t)) = f.c.end_txn("tx", p.0, p.1, true, 2) else {
        panic!()
    };
    let new = t.new.clone().unwrap();
    assert_eq!(
        (
            new.state,
            new.producer_epoch,
            new.txn_start_ms,
            new.last_update_ms
        ),
        (TxnState::PrepareCommit, p.1, 1, 2)
    );
    assert_eq!(
        t.markers().unwrap().partitions,
        vec![tp("a", 0), tp("b", 1)]
    );
    assert!(t.markers().unwrap().commit);
    // The retry while the write is pending, and while markers are written.
    assert!(is_concurrent(&f.c.end_txn("tx", p.0, p.1, true, 3)));
    f.c.complete(t);
    assert_eq!(f.c.pending_markers().len(), 1);
    assert!(is_concurrent(&f.c.end_txn("tx", p.0, p.1, true, 3)));
    assert!(is_concurrent(&f.c.end_txn("tx", p.0, p.1, false, 3)));
    f.markers_ok("tx", 4);
    assert!(f.c.pending_markers().is_empty());
    assert_eq!(
        f.c.end_txn("tx", p.0, p.1, true, 5),
        Ok(EndOutcome::AlreadyDone)
    );
    assert!(matches!(
        f.c.end_txn("tx", p.0, p.1, false, 5),
        Err(TxnError::InvalidTxnState {
            state: TxnState::CompleteCommit,
            ..
        })
    ));
}

#[test]
fn end_txn_abort_retries_are_answered() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 1);
    let job = f.end_ok("tx", p, false, 2);
    assert!(!job.commit);
    assert_eq!(job.producer_epoch, p.1);
    f.markers_ok("tx", 3);
    assert_eq!(f.state("tx"), TxnState::CompleteAbort);
    assert_eq!(
        f.c.end_txn("tx", p.0, p.1, false, 4),
        Ok(EndOutcome::AlreadyDone)
    );
    assert!(matches!(
        f.c.end_txn("tx", p.0, p.1, true, 4),
        Err(TxnError::InvalidTxnState { .. })
    ));
}

#[test]
fn complete_markers_only_from_prepare() {
    let mut f = Fixture::new();
    assert!(matches!(
        f.c.complete_markers("tx", 0),
        Err(TxnError::TransactionalIdNotFound { .. })
    ));
    let p = f.init_ok("tx", None, 0);
    assert!(matches!(
        f.c.complete_markers("tx", 0),
        Err(TxnError::InvalidTxnState { .. })
    ));
    f.add_ok("tx", p, &[tp("a", 0)], 1);
    assert!(matches!(
        f.c.complete_markers("tx", 1),
        Err(TxnError::InvalidTxnState { .. })
    ));
    let job = f.end_ok("tx", p, true, 2);
    let t = f.c.complete_marker_job(&job, 3).unwrap();
    assert!(is_concurrent(&f.c.complete_markers("tx", 3)));
    let new = t.new.clone().unwrap();
    assert_eq!(
        (
            new.state,
            new.producer_epoch,
            new.partitions.len(),
            new.last_update_ms
        ),
        (TxnState::CompleteCommit, p.1, 0, 3)
    );
    f.c.complete(t);
    // A job whose outcome or epoch is not the id's current transaction.
    f.add_ok("tx", p, &[tp("a", 0)], 4);
    f.end_ok("tx", p, true, 5);
    let mut stale = job.clone();
    stale.commit = false;
    assert!(matches!(
        f.c.complete_marker_job(&stale, 6),
        Err(TxnError::InvalidTxnState { .. })
    ));
    stale.commit = true;
    stale.producer_epoch -= 1;
    assert!(matches!(
        f.c.complete_marker_job(&stale, 6),
        Err(TxnError::InvalidTxnState { .. })
    ));
}

#[test]
fn timed_out_transactions_are_aborted_with_a_bumped_epoch() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 1_000);
    let q = f.init_ok("idle", None, 0);
    assert_eq!(q.1, 0);
    // start + timeout == now is not yet timed out.
    assert!(f.c.expire_timed_out(1_000 + i64::from(T)).is_empty());
    let mut ts = f.c.expire_timed_out(1_001 + i64::from(T));
    assert_eq!(ts.len(), 1);
    let t = ts.pop().unwrap();
    let job = t.markers().unwrap();
    assert_eq!(
        (job.producer_id, job.producer_epoch, job.commit),
        (p.0, p.1 + 1, false)
    );
    // Pending: not offered again, and the producer waits.
    assert!(f.c.expire_timed_out(i64::MAX).is_empty());
    assert!(is_concurrent(&f.c.end_txn("tx", p.0, p.1, true, 70_000)));
    f.c.complete(t);
    // The producer is fenced: its commit fails.
    assert!(is_fenced(&f.c.end_txn("tx", p.0, p.1, true, 70_000)));
    f.markers_ok("tx", 70_001);
    assert_eq!(f.state("tx"), TxnState::CompleteAbort);
    // Its next InitProducerId bumps past the fence.
    assert_eq!(f.init_ok("tx", None, 70_002), (p.0, p.1 + 2));
}

#[test]
fn a_failed_timeout_abort_is_offered_again() {
    let mut f = Fixture::new();
    let p = f.init_ok("tx", None, 0);
    f.add_ok("tx", p, &[tp("a", 0)], 0);
    let ts = f.c.expire_timed_out(i64::from(T) + 1);
    f.c.abort_pending(&ts[0]);
    assert_eq!(f.state("tx"), TxnState::Ongoing);
    let again = f.c.expire_timed_out(i64::from(T) + 2);
    assert_eq!(again[0].markers().unwrap().producer_epoch, p.1 + 1);
}

#[test]
fn idle_transactional_ids_expire() {
    let config = TxnConfig {
        max_timeout_ms: 900_000,
        transactional_id_expiration_ms: 1_000,
    };
    let mut f = Fixture::new();
    f.c = TxnCoordinator::new(0, 7, config);
    let p = f.init_ok("empty", None, 0);
    let q = f.init_ok("open", None, 0);
    f.add_ok("open", q, &[tp("a", 0)], 0);
    let r = f.init_ok("done", None, 0);
    f.add_ok("done", r, &[tp("a", 0)], 0);
    f.end_ok("done", r, true, 0);
    f.markers_ok("done", 500);
    assert!(f.c.expire_transactional_ids(999).is_empty());
    let ts = f.c.expire_transactional_ids(1_000);
    let ids: Vec<&str> = ts.iter().map(|t| t.transactional_id.as_str()).collect();
    assert_eq!(ids, vec!["empty"]);
    assert_eq!(ts[0].value(), None);
    assert_eq!(
        decode(&ts[0].key(), None).unwrap().metadata,
        None,
        "a tombstone"
    );
    // While the tombstone is written, the id is busy.
    assert!(is_concurrent(&f.init("empty", None, 1_000)));
    assert!(is_concurrent(&f.c.add_partitions(
        "empty",
        p.0,
        p.1,
        &[tp("a", 0)],
        1_000
    )));
    let mut ts = ts;
    let t = ts.pop().unwrap();
    f.c.abort_pending(&t);
    assert!(f.c.describe("empty").is_some());
    let mut ts = f.c.expire_transactional_ids(1_500);
    assert_eq!(ts.len(), 2, "empty and done");
    for t in ts.drain(..) {
        f.c.complete(t);
    }
    assert_eq!(
        f.c.list()
            .map(|m| m.transactional_id.as_str())
            .collect::<Vec<_>>(),
        vec!["open"]
    );
    // An expired id starts over with a fresh producer id.
    let fresh = f.init_ok("empty", None, 2_000);
    assert_ne!(fresh.0, p.0);
    assert_eq!(fresh.1, 0);
}

#[test]
fn replay_keeps_the_last_record_and_removes_on_tombstones() {
    let mut f = Fixture::new();
    let p = f.init_ok("a", None, 0);
    f.add_ok("a", p, &[tp("t", 0)], 1);
    f.end_ok("a", p, true, 2);
    let b = f.init_ok("b", None, 0);
    f.add_ok("b", b, &[tp("t", 1)], 1);
    let mut log: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for m in f.c.list() {
        log.push((encode_key(&m.transactional_id), Some(encode_value(m))));
    }
    let mut gone = f.c.describe("b").unwrap().clone();
    gone.state = TxnState::Dead;
    log.push((encode_key("b"), Some(encode_value(&gone))));
    log.push((encode_key("c"), Some(encode_value(&gone))));
    log.push((encode_key("c"), None));
    let mut c = TxnCoordinator::new(0, 9, TxnConfig::default());
    for (k, v) in &log {
        c.replay(decode(k, v.as_deref()).unwrap());
    }
    let ids: Vec<&str> = c.list().map(|m| m.transactional_id.as_str()).collect();
    assert_eq!(ids, vec!["a"]);
    let jobs = c.pending_markers();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (
            jobs[0].commit,
            jobs[0].coordinator_epoch,
            jobs[0].partitions.clone()
        ),
        (true, 9, vec![tp("t", 0)])
    );
    // The resumed markers complete on the new coordinator.
    let t = c.complete_marker_job(&jobs[0], 3).unwrap();
    c.complete(t);
    assert_eq!(c.describe("a").unwrap().state, TxnState::CompleteCommit);
}

#[test]
fn replay_reads_an_unwritten_epoch_fence_as_the_abort_it_leads_to() {
    let mut f = loaded(3, TxnState::Ongoing);
    let mut m = f.c.describe("tx").unwrap().clone();
    m.state = TxnState::PrepareEpochFence;
    f.c.replay(TxnLogRecord {
        transactional_id: "tx".into(),
        metadata: Some(m),
    });
    assert_eq!(f.state("tx"), TxnState::PrepareAbort);
    assert!(!f.c.pending_markers()[0].commit);
}

#[test]
fn transitions_of_another_coordinator_epoch_are_ignored() {
    let mut f = Fixture::new();
    let Ok(InitOutcome::Write(t)) = f.init("tx", None, 0) else {
        panic!()
    };
    let mut other = TxnCoordinator::new(0, 8, TxnConfig::default());
    other.complete(t.clone());
    other.abort_pending(&t);
    assert_eq!(other.list().count(), 0);
    f.c.complete(t);
    assert!(f.c.describe("tx").is_some());
}

#[test]
#[should_panic(expected = "has pending write None")]
fn completing_twice_is_a_bug() {
    let mut f = Fixture::new();
    let Ok(InitOutcome::Write(t)) = f.init("tx", None, 0) else {
        panic!()
    };
    f.c.complete(t.clone());
    f.c.complete(t);
}
