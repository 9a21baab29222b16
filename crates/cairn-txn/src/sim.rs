//! Seeded fault schedules against the coordinator.
//!
//! A few transactional ids; clients holding every producer id and epoch they were ever
//! given (so most are zombies) and one that was never given any; InitProducerId (with and
//! without KIP-360's expected epoch), AddPartitionsToTxn, verification and EndTxn; writes
//! to `__transaction_state` that succeed or fail in any order; time that advances past
//! transaction timeouts and id expiry; marker completion; and coordinator failover, where
//! a new coordinator replays exactly the log (each in-flight write either lost or, its ack
//! lost, durable) and resumes `pending_markers()`.
//!
//! The log is the model: every durable record is checked as a transition from the
//! previous one (Kafka's `completeTransitionTo` rules), and after every step the
//! coordinator must equal the replayed log, with at most one pending write per id.
//! A request with an epoch older than one already written for its producer id never
//! succeeds; a committed transaction holds exactly the partitions acknowledged since it
//! started; no transaction is both committed and aborted; `Complete*` follows `Prepare*`
//! of the same producer epoch. At the end, everything in flight is finished and every id
//! must take a new producer.
//!
//! Two drivers: a proptest over op lists (shrinks; failures persist in
//! `proptest-regressions/sim.txt`) and a loop over seeds of a small PRNG (long runs; a
//! failure prints its seed, and `CAIRN_TXN_SEED=<seed>` replays it).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::*;

const IDS: [&str; 3] = ["t0", "t1", "t2"];
const PARTITIONS: [(&str, i32); 4] = [("a", 0), ("a", 1), ("b", 0), ("c", 3)];
const TIMEOUTS_MS: [i32; 3] = [100, 400, 1_000];
/// A producer id the allocator never gives out: a client that was never initialised.
const FOREIGN_PID: i64 = 7;
/// `t2` starts near epoch exhaustion, so rotation and the fence to i16::MAX happen.
const SEEDED_PID: i64 = 900;
const SEEDED_EPOCH: i16 = i16::MAX - 3;

fn config() -> TxnConfig {
    TxnConfig {
        max_timeout_ms: 1_000,
        transactional_id_expiration_ms: 2_000,
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `client` picks one of the id's handles (or the foreign one) as KIP-360's expected
    /// producer when `expected`.
    Init {
        id: usize,
        client: usize,
        expected: bool,
        timeout: usize,
    },
    Add {
        id: usize,
        client: usize,
        partitions: u8,
    },
    Verify {
        id: usize,
        client: usize,
        partitions: u8,
    },
    End {
        id: usize,
        client: usize,
        commit: bool,
    },
    WriteOk {
        pick: usize,
    },
    WriteFail {
        pick: usize,
    },
    Markers {
        pick: usize,
    },
    Advance {
        ms: u32,
    },
    ExpireTimedOut,
    ExpireIds,
    /// Bit `i % 8` of `durable` set: in-flight write `i` reached the log.
    Failover {
        durable: u8,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    let client = 0..6usize;
    prop_oneof![
        4 => (id.clone(), client.clone(), any::<bool>(), 0..TIMEOUTS_MS.len())
            .prop_map(|(id, client, expected, timeout)| Op::Init { id, client, expected, timeout }),
        5 => (id.clone(), client.clone(), any::<u8>())
            .prop_map(|(id, client, partitions)| Op::Add { id, client, partitions }),
        1 => (id.clone(), client.clone(), any::<u8>())
            .prop_map(|(id, client, partitions)| Op::Verify { id, client, partitions }),
        3 => (id, client, any::<bool>())
            .prop_map(|(id, client, commit)| Op::End { id, client, commit }),
        8 => any::<usize>().prop_map(|pick| Op::WriteOk { pick }),
        2 => any::<usize>().prop_map(|pick| Op::WriteFail { pick }),
        3 => any::<usize>().prop_map(|pick| Op::Markers { pick }),
        2 => (0..700u32).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::ExpireTimedOut),
        1 => Just(Op::ExpireIds),
        1 => any::<u8>().prop_map(|durable| Op::Failover { durable }),
    ]
}

/// splitmix64: the seed loop's only randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn op(&mut self) -> Op {
        let id = self.below(IDS.len());
        let client = self.below(6);
        match self.below(31) {
            0..=3 => Op::Init {
                id,
                client,
                expected: self.below(2) == 0,
                timeout: self.below(TIMEOUTS_MS.len()),
            },
            4..=8 => Op::Add {
                id,
                client,
                partitions: self.next() as u8,
            },
            9 => Op::Verify {
                id,
                client,
                partitions: self.next() as u8,
            },
            10..=12 => Op::End {
                id,
                client,
                commit: self.below(2) == 0,
            },
            13..=20 => Op::WriteOk {
                pick: self.next() as usize,
            },
            21..=22 => Op::WriteFail {
                pick: self.next() as usize,
            },
            23..=25 => Op::Markers {
                pick: self.next() as usize,
            },
            26..=27 => Op::Advance {
                ms: self.below(700) as u32,
            },
            28 => Op::ExpireTimedOut,
            29 => Op::ExpireIds,
            _ => Op::Failover {
                durable: self.next() as u8,
            },
        }
    }
}

/// Why a write was made, so that completing it can answer its client.
#[derive(Debug, Clone)]
enum Origin {
    /// The client gets the producer id and epoch once written.
    Init,
    Add(Vec<TopicPartition>),
    End,
    Fence,
    Timeout,
    Markers(MarkerJob),
    Expire,
}

#[derive(Debug, Clone)]
struct InFlight {
    t: Transition,
    origin: Origin,
}

/// What the log says about one id's transactions.
#[derive(Debug, Clone, Default)]
struct IdModel {
    /// The last durable metadata (`None`: never initialised, or expired).
    durable: Option<TxnMetadata>,
    /// Counts transactions started (a write into Ongoing from another state).
    txn_no: u64,
    /// Partitions acknowledged to the client since the transaction started.
    added: BTreeSet<TopicPartition>,
    /// The outcome of each prepared transaction.
    outcomes: BTreeMap<u64, bool>,
}

struct Sim {
    c: TxnCoordinator,
    coordinator_epoch: i32,
    next_pid: i64,
    now_ms: i64,
    log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    in_flight: Vec<InFlight>,
    jobs: Vec<MarkerJob>,
    /// Every producer each id's clients were given, oldest first.
    handles: BTreeMap<&'static str, Vec<(i64, i16)>>,
    models: BTreeMap<&'static str, IdModel>,
    /// The highest epoch ever written per (id, producer id).
    max_epoch: BTreeMap<(String, i64), i16>,
    /// Counts of what happened, to see that schedules reach every corner.
    stats: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new() -> Self {
        let seeded = TxnMetadata {
            transactional_id: "t2".into(),
            producer_id: SEEDED_PID,
            prev_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: SEEDED_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: 1_000,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: 0,
        };
        let mut sim = Sim {
            c: TxnCoordinator::new(3, 1, config()),
            coordinator_epoch: 1,
            next_pid: 1_000,
            now_ms: 0,
            log: vec![(encode_key("t2"), Some(encode_value(&seeded)))],
            in_flight: Vec::new(),
            jobs: Vec::new(),
            handles: IDS.iter().map(|&id| (id, Vec::new())).collect(),
            models: IDS.iter().map(|&id| (id, IdModel::default())).collect(),
            max_epoch: BTreeMap::new(),
            stats: BTreeMap::new(),
        };
        sim.handles
            .get_mut("t2")
            .unwrap()
            .push((SEEDED_PID, SEEDED_EPOCH));
        sim.max_epoch
            .insert(("t2".into(), SEEDED_PID), SEEDED_EPOCH);
        sim.models.get_mut("t2").unwrap().durable = Some(seeded);
        sim.c = sim.replayed();
        sim
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn replayed(&self) -> TxnCoordinator {
        let mut c = TxnCoordinator::new(3, self.coordinator_epoch, config());
        for (key, value) in &self.log {
            c.replay(decode(key, value.as_deref()).expect("our own records decode"));
        }
        c
    }

    /// The producer a client of `id` uses: mostly the newest one it was given, else an
    /// older one (a zombie), or the foreign one.
    fn handle(&self, id: &str, client: usize) -> (i64, i16) {
        let hs = &self.handles[id];
        let pick = match client {
            0..=2 => hs.last(),
            3 => None,
            4 => hs.len().checked_sub(2).and_then(|i| hs.get(i)),
            _ => hs.first(),
        };
        pick.copied().unwrap_or((FOREIGN_PID, 0))
    }

    fn max_written(&self, id: &str, pid: i64) -> Option<i16> {
        self.max_epoch.get(&(id.to_string(), pid)).copied()
    }

    /// Checks a request that succeeded: its producer is the current one and not older
    /// than any epoch written for its producer id.
    fn check_success(&self, id: &str, (pid, epoch): (i64, i16), what: &str) {
        let m = self.models[id].durable.as_ref();
        assert!(
            m.is_some_and(|m| m.producer_id == pid && m.producer_epoch == epoch),
            "{what} of {id} by ({pid}, {epoch}) succeeded against {m:?}"
        );
        let max = self.max_written(id, pid);
        assert!(
            max.is_none_or(|max| epoch >= max),
            "{what} of {id} by ({pid}, {epoch}) succeeded though epoch {max:?} was written"
        );
    }

    /// InitProducerId with the sim's producer id allocator.
    fn init(
        &mut self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<InitOutcome, TxnError> {
        let next_pid = &mut self.next_pid;
        let mut alloc = || {
            *next_pid += 1;
            *next_pid
        };
        self.c
            .init_producer_id(id, timeout_ms, expected, self.now_ms, &mut alloc)
    }

    fn parts(mask: u8) -> Vec<TopicPartition> {
        PARTITIONS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, &(t, p))| TopicPartition::new(t, p))
            .collect()
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Init {
                id,
                client,
                expected,
                timeout,
            } => {
                let id = IDS[id];
                let handle = self.handle(id, client);
                let expected = expected.then_some(handle);
                let r = self.init(id, TIMEOUTS_MS[timeout], expected);
                let durable = self.models[id].durable.clone();
                match r {
                    Ok(InitOutcome::Write(t)) => {
                        self.count("init write");
                        let new = t.new.clone().unwrap();
                        if let Some(max) = self.max_written(id, new.producer_id) {
                            assert!(new.producer_epoch >= max, "init went back: {new:?}");
                        }
                        if let (Some((FOREIGN_PID, _)), Some(m)) = (expected, &durable) {
                            panic!("a foreign expected producer was accepted over {m:?}");
                        }
                        self.in_flight.push(InFlight {
                            t,
                            origin: Origin::Init,
                        });
                    }
                    Ok(InitOutcome::AbortFirst(t)) => {
                        self.count("init fence");
                        let new = t.new.clone().unwrap();
                        let m = durable.expect("fence of a known id");
                        assert_eq!(m.state, TxnState::Ongoing);
                        assert_eq!(new.state, TxnState::PrepareAbort);
                        assert_eq!(new.producer_epoch, m.producer_epoch + 1);
                        assert!(t.markers().is_some());
                        self.in_flight.push(InFlight {
                            t,
                            origin: Origin::Fence,
                        });
                    }
                    Err(e) => {
                        self.count("init refused");
                        if matches!(e, TxnError::ConcurrentTransactions { .. }) {
                            assert!(
                                self.c.has_pending_write(id)
                                    || durable.as_ref().is_some_and(|m| m.state.is_prepare())
                            );
                        }
                    }
                }
            }
            Op::Add {
                id,
                client,
                partitions,
            } => {
                let id = IDS[id];
                let (pid, epoch) = self.handle(id, client);
                let parts = Self::parts(partitions | 1);
                match self.c.add_partitions(id, pid, epoch, &parts, self.now_ms) {
                    Ok(Some(t)) => {
                        self.count("add write");
                        self.check_success(id, (pid, epoch), "AddPartitions");
                        self.in_flight.push(InFlight {
                            t,
                            origin: Origin::Add(parts),
                        });
                    }
                    Ok(None) => {
                        self.count("add already there");
                        self.check_success(id, (pid, epoch), "AddPartitions");
                        let model = &self.models[id];
                        let m = model.durable.as_ref().unwrap();
                        assert_eq!(m.state, TxnState::Ongoing);
                        assert!(parts.iter().all(|p| model.added.contains(p)));
                    }
                    Err(_) => self.count("add refused"),
                }
            }
            Op::Verify {
                id,
                client,
                partitions,
            } => {
                let id = IDS[id];
                let (pid, epoch) = self.handle(id, client);
                let parts = Self::parts(partitions);
                if self.c.verify_partitions(id, pid, epoch, &parts).is_ok() {
                    self.count("verify ok");
                    self.check_success(id, (pid, epoch), "Verify");
                    let model = &self.models[id];
                    assert!(parts.iter().all(|p| model.added.contains(p)));
                }
            }
            Op::End { id, client, commit } => {
                let id = IDS[id];
                let (pid, epoch) = self.handle(id, client);
                match self.c.end_txn(id, pid, epoch, commit, self.now_ms) {
                    Ok(EndOutcome::Write(t)) => {
                        self.count("end write");
                        self.check_success(id, (pid, epoch), "EndTxn");
                        assert_eq!(t.markers().unwrap().commit, commit);
                        self.in_flight.push(InFlight {
                            t,
                            origin: Origin::End,
                        });
                    }
                    Ok(EndOutcome::AlreadyDone) => {
                        self.count("end already done");
                        self.check_success(id, (pid, epoch), "EndTxn");
                        let model = &self.models[id];
                        let want = if commit {
                            TxnState::CompleteCommit
                        } else {
                            TxnState::CompleteAbort
                        };
                        assert_eq!(model.durable.as_ref().unwrap().state, want);
                        assert_eq!(model.outcomes.get(&model.txn_no), Some(&commit));
                    }
                    Err(_) => self.count("end refused"),
                }
            }
            Op::WriteOk { pick } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let w = self.in_flight.remove(pick % self.in_flight.len());
                self.count("write ok");
                self.c.complete(w.t.clone());
                self.durable(&w);
                if let Origin::Init = w.origin {
                    let granted = w.t.producer_id_and_epoch().unwrap();
                    self.handles
                        .get_mut(w.t.transactional_id.as_str())
                        .unwrap()
                        .push(granted);
                }
                if let Some(job) = w.t.markers() {
                    self.jobs.push(job);
                }
            }
            Op::WriteFail { pick } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let w = self.in_flight.remove(pick % self.in_flight.len());
                self.count("write failed");
                self.c.abort_pending(&w.t);
                if let Origin::Markers(job) = w.origin {
                    self.jobs.push(job);
                }
            }
            Op::Markers { pick } => {
                if self.jobs.is_empty() {
                    return;
                }
                let job = self.jobs.remove(pick % self.jobs.len());
                self.count("markers written");
                let t = self
                    .c
                    .complete_marker_job(&job, self.now_ms)
                    .unwrap_or_else(|e| panic!("markers of {job:?} refused: {e}"));
                self.in_flight.push(InFlight {
                    t,
                    origin: Origin::Markers(job),
                });
            }
            Op::Advance { ms } => self.now_ms += i64::from(ms),
            Op::ExpireTimedOut => {
                for t in self.c.expire_timed_out(self.now_ms) {
                    self.count("timeout abort");
                    let new = t.new.as_ref().unwrap();
                    let m = self.models[t.transactional_id.as_str()]
                        .durable
                        .as_ref()
                        .unwrap();
                    assert_eq!(m.state, TxnState::Ongoing);
                    assert!(m.txn_start_ms + i64::from(m.timeout_ms) < self.now_ms);
                    assert_eq!(new.producer_epoch, m.producer_epoch + 1);
                    self.in_flight.push(InFlight {
                        t,
                        origin: Origin::Timeout,
                    });
                }
            }
            Op::ExpireIds => {
                for t in self.c.expire_transactional_ids(self.now_ms) {
                    self.count("id expired");
                    assert!(t.new.is_none());
                    self.in_flight.push(InFlight {
                        t,
                        origin: Origin::Expire,
                    });
                }
            }
            Op::Failover { durable } => {
                self.count("failover");
                for (i, w) in std::mem::take(&mut self.in_flight).iter().enumerate() {
                    if durable & (1 << (i % 8)) != 0 {
                        self.count("write durable but unacknowledged");
                        self.durable(w);
                    }
                }
                self.coordinator_epoch += 1;
                self.c = self.replayed();
                self.jobs = self.c.pending_markers();
                for job in &self.jobs {
                    assert_eq!(job.coordinator_epoch, self.coordinator_epoch);
                }
            }
        }
    }

    /// `w` reached the log: append it and check it as a transition of the model.
    fn durable(&mut self, w: &InFlight) {
        let t = &w.t;
        self.log.push((t.key(), t.value()));
        let id = t.transactional_id.clone();
        let model = self.models.get_mut(id.as_str()).unwrap();
        let prev = model.durable.clone();
        let Some(new) = t.new.clone() else {
            let prev = prev.expect("a tombstone of a known id");
            assert!(prev.state.is_expiration_allowed(), "{prev:?} expired");
            model.durable = None;
            return;
        };
        let same_producer = prev
            .as_ref()
            .is_some_and(|p| p.producer_id == new.producer_id);
        let prev_state = prev.as_ref().map(|p| p.state);
        match new.state {
            TxnState::Empty => {
                assert!(matches!(
                    prev_state,
                    None | Some(
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                ));
                assert!(new.partitions.is_empty() && new.txn_start_ms == -1);
                if !same_producer {
                    assert_eq!(new.producer_epoch, 0, "a new producer id starts at 0");
                    if let Some(p) = &prev {
                        assert_eq!(new.prev_producer_id, p.producer_id);
                        *self.stats.entry("producer id rotated").or_default() += 1;
                    }
                }
            }
            TxnState::Ongoing => {
                let Origin::Add(parts) = &w.origin else {
                    panic!("Ongoing written by {:?}", w.origin)
                };
                let p = prev.as_ref().expect("Ongoing of a known id");
                assert!(same_producer && new.producer_epoch == p.producer_epoch);
                assert_eq!(new.timeout_ms, p.timeout_ms);
                if p.state == TxnState::Ongoing {
                    let mut want = p.partitions.clone();
                    want.extend(parts.iter().cloned());
                    assert_eq!(new.partitions, want);
                    assert_eq!(new.txn_start_ms, p.txn_start_ms);
                    model.added.extend(parts.iter().cloned());
                } else {
                    assert!(matches!(
                        p.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    ));
                    model.txn_no += 1;
                    model.added = parts.iter().cloned().collect();
                    assert_eq!(new.partitions, model.added);
                }
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                let commit = new.state == TxnState::PrepareCommit;
                let p = prev.as_ref().expect("Prepare of a known id");
                assert_eq!(p.state, TxnState::Ongoing);
                assert!(same_producer);
                let bumped = matches!(w.origin, Origin::Fence | Origin::Timeout);
                assert_eq!(new.producer_epoch, p.producer_epoch + i16::from(bumped));
                assert!(!bumped || !commit);
                assert_eq!(
                    new.partitions, model.added,
                    "the transaction holds exactly the partitions added since it started"
                );
                assert_eq!(new.txn_start_ms, p.txn_start_ms);
                let previous = model.outcomes.insert(model.txn_no, commit);
                assert!(
                    previous.is_none_or(|c| c == commit),
                    "transaction {} of {id} both committed and aborted",
                    model.txn_no
                );
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let commit = new.state == TxnState::CompleteCommit;
                let p = prev.as_ref().expect("Complete of a known id");
                let want = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                assert_eq!(p.state, want, "Complete* only after its Prepare*");
                assert!(same_producer && new.producer_epoch == p.producer_epoch);
                assert!(new.partitions.is_empty());
                assert_eq!(model.outcomes.get(&model.txn_no), Some(&commit));
                let Origin::Markers(job) = &w.origin else {
                    panic!("Complete written by {:?}", w.origin)
                };
                assert_eq!(
                    job.partitions,
                    p.partitions.iter().cloned().collect::<Vec<_>>()
                );
                assert_eq!(
                    (job.producer_id, job.producer_epoch),
                    (p.producer_id, p.producer_epoch)
                );
            }
            TxnState::Dead | TxnState::PrepareEpochFence => panic!("{new:?} written"),
        }
        let key = (id.clone(), new.producer_id);
        let max = self.max_epoch.entry(key).or_insert(new.producer_epoch);
        assert!(
            new.producer_epoch >= *max,
            "epoch of {id} producer {} went back from {max} to {}",
            new.producer_id,
            new.producer_epoch
        );
        *max = new.producer_epoch;
        model.durable = Some(new);
    }

    /// Invariants that hold between any two steps.
    fn check(&self) {
        let replayed = self.replayed();
        let normalise = |m: &TxnMetadata| TxnMetadata {
            last_producer_epoch: NO_PRODUCER_EPOCH,
            ..m.clone()
        };
        let live: Vec<TxnMetadata> = self.c.list().map(normalise).collect();
        let logged: Vec<TxnMetadata> = replayed.list().cloned().collect();
        assert_eq!(live, logged, "the coordinator differs from its log");
        for id in IDS {
            assert_eq!(
                self.c.describe(id).map(normalise),
                self.models[id].durable.as_ref().map(normalise),
                "{id}"
            );
            let pending = self
                .in_flight
                .iter()
                .filter(|w| w.t.transactional_id == id)
                .count();
            assert!(pending <= 1, "{pending} pending writes of {id}");
            assert_eq!(self.c.has_pending_write(id), pending == 1, "{id}");
        }
        for job in &self.jobs {
            let m = self.c.describe(&job.transactional_id).unwrap();
            assert!(m.state.is_prepare(), "markers for {m:?}");
            assert_eq!(
                (
                    m.producer_id,
                    m.producer_epoch,
                    m.state == TxnState::PrepareCommit
                ),
                (job.producer_id, job.producer_epoch, job.commit)
            );
            // The markers carry an epoch at least as new as any a client was given, so
            // partition leaders fence every zombie of this producer id.
            let handles = &self.handles[job.transactional_id.as_str()];
            let granted = handles
                .iter()
                .filter(|h| h.0 == job.producer_id)
                .map(|h| h.1)
                .max();
            assert!(granted.is_none_or(|g| job.producer_epoch >= g));
        }
        let jobs: BTreeSet<&str> = self
            .jobs
            .iter()
            .map(|j| j.transactional_id.as_str())
            .collect();
        assert_eq!(jobs.len(), self.jobs.len(), "one marker job per id");
    }

    /// Finishes everything in flight, then every id must take a new producer.
    fn drain_and_check_liveness(&mut self) {
        for _ in 0..10 {
            while !self.in_flight.is_empty() {
                self.step(&Op::WriteOk { pick: 0 });
                self.check();
            }
            while !self.jobs.is_empty() {
                self.step(&Op::Markers { pick: 0 });
                self.check();
            }
        }
        assert!(self.in_flight.is_empty() && self.jobs.is_empty());
        for m in self.c.list() {
            assert!(!m.state.is_prepare(), "{m:?} stuck");
        }
        for id in IDS {
            let mut done = false;
            for _ in 0..3 {
                match self.init(id, 1_000, None) {
                    Ok(InitOutcome::Write(t)) => {
                        self.in_flight.push(InFlight {
                            t,
                            origin: Origin::Init,
                        });
                        self.step(&Op::WriteOk { pick: 0 });
                        done = true;
                        break;
                    }
                    Ok(InitOutcome::AbortFirst(t)) => {
                        self.in_flight.push(InFlight {
                            t,
                            origin: Origin::Fence,
                        });
                        self.step(&Op::WriteOk { pick: 0 });
                        self.step(&Op::Markers { pick: 0 });
                        self.step(&Op::WriteOk { pick: 0 });
                    }
                    Err(e) => panic!("{id} refused a new producer after draining: {e}"),
                }
                self.check();
            }
            assert!(done, "{id} never took a new producer");
        }
        self.check();
    }
}

fn run(ops: impl IntoIterator<Item = Op>) -> Sim {
    let mut sim = Sim::new();
    sim.check();
    for op in ops {
        sim.step(&op);
        sim.check();
    }
    sim.drain_and_check_liveness();
    sim
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn fault_schedules_keep_the_invariants(ops in proptest::collection::vec(op_strategy(), 1..250)) {
        run(ops);
    }
}

#[test]
fn seeded_fault_schedules_keep_the_invariants() {
    let seeds: Vec<u64> = match std::env::var("CAIRN_TXN_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_TXN_SEED is a u64")],
        Err(_) => (0..200).collect(),
    };
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| {
            let mut rng = Rng(seed);
            let ops: Vec<Op> = (0..600).map(|_| rng.op()).collect();
            run(ops).stats
        });
        match outcome {
            Ok(stats) => {
                for (k, v) in stats {
                    *totals.entry(k).or_default() += v;
                }
            }
            Err(e) => {
                eprintln!("seed {seed} failed; replay with CAIRN_TXN_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("what the schedules did: {totals:?}");
    // The schedules must reach the interesting corners, or the invariants prove little.
    for what in [
        "init fence",
        "timeout abort",
        "id expired",
        "failover",
        "write durable but unacknowledged",
        "markers written",
        "end already done",
        "add already there",
        "verify ok",
        "write failed",
        "producer id rotated",
    ] {
        assert!(
            totals.get(what).copied().unwrap_or(0) > 0,
            "no schedule reached {what}: {totals:?}"
        );
    }
}
