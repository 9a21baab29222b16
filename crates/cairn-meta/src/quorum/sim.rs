//! Deterministic simulation of a 3- and a 5-voter quorum over an in-memory network.
//!
//! One seed drives everything: which node ticks, which message is delivered, delayed,
//! reordered or dropped, partitions and their healing, crashes (the node is dropped) and
//! restarts (a new node on the same "disk", with new election timeouts). raft-rs draws
//! election timeouts itself, so each node is given a window one tick wide (`[t, t+1)`)
//! chosen by the seed; the simulation is then a pure function of it.
//!
//! The disk is a [`MemStorage`] (fast: many seeds) or, in `sim_3_voters_on_rocksdb`, each
//! node's own RocksDB directory (the storage voters run on; fewer seeds, as RocksDB is
//! slower): a crash drops the node and its open database, a restart opens the directory
//! again. Writes there are not synced (a process crash, not a power loss: what a process
//! wrote survives it).
//!
//! After every step the checker asserts Raft's safety properties:
//! - at most one leader per term (SingleLeader);
//! - the entry applied at an index (its term and outcome) is the same on every node and
//!   across restarts, i.e. committed entries never change;
//! - nodes that applied up to the same index hold equal states, so every node's applied
//!   history is a prefix of the longest one.
//!
//! A liveness phase ends every case: the network heals, crashed nodes restart, a last
//! proposal must commit and every node must converge to the same state.
//!
//! A failure prints its seed; `CAIRN_SIM_SEED=<seed> cargo test -p cairn-meta sim_` replays
//! exactly that case.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::Message;
use uuid::Uuid;

use super::{
    ApplyOutcome, MemStorage, Output, Proposal, QuorumConfig, QuorumNode, QuorumStorage,
    RocksStorage,
};
use crate::{ClusterState, MetadataRecord, controller};

/// Steps of the faulty phase of one case.
const STEPS_PER_CASE: usize = 3000;
/// Rounds the liveness phase may take before the case fails.
const LIVENESS_ROUNDS_MAX: usize = 3000;
/// Ticks a message may be delayed by.
const DELAY_TICKS_MAX: u64 = 3;

/// splitmix64: small, seedable, and good enough to schedule a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

struct InFlight {
    deliver_at: u64,
    message: Message,
}

#[derive(Default)]
struct Checker {
    leaders_by_term: BTreeMap<u64, u64>,
    applied_by_index: BTreeMap<u64, (u64, ApplyOutcome)>,
    states_by_index: BTreeMap<u64, ClusterState>,
    committed_proposals: u64,
    stale_proposals: u64,
    snapshots_installed: u64,
    crashes: u64,
}

/// What a voter's storage survives on: opened anew at every (re)start.
trait Disk {
    type Storage: QuorumStorage;
    fn open(&self, voters: &[u64]) -> Self::Storage;
}

impl Disk for MemStorage {
    type Storage = MemStorage;
    fn open(&self, _voters: &[u64]) -> MemStorage {
        self.clone()
    }
}

/// A RocksDB directory (removed with the simulation).
struct RocksDisk(tempfile::TempDir);

impl Disk for RocksDisk {
    type Storage = RocksStorage;
    fn open(&self, voters: &[u64]) -> RocksStorage {
        RocksStorage::open(self.0.path(), voters, false).expect("reopen RocksDB")
    }
}

struct Sim<D: Disk> {
    rng: Rng,
    voters: Vec<u64>,
    /// Each voter's "disk": survives the node being dropped (a crash).
    disks: Vec<D>,
    nodes: Vec<Option<QuorumNode<D::Storage>>>,
    network: Vec<InFlight>,
    /// Directed links that drop everything.
    cut: BTreeSet<(u64, u64)>,
    now_ticks: u64,
    checker: Checker,
    next_topic: u64,
}

impl<D: Disk> Sim<D> {
    fn new(voter_count: u64, seed: u64, disk: impl Fn(&[u64]) -> D) -> Sim<D> {
        let voters: Vec<u64> = (1..=voter_count).collect();
        let mut sim = Sim {
            rng: Rng(seed),
            disks: voters.iter().map(|_| disk(&voters)).collect(),
            nodes: voters.iter().map(|_| None).collect(),
            voters,
            network: Vec::new(),
            cut: BTreeSet::new(),
            now_ticks: 0,
            checker: Checker::default(),
            next_topic: 0,
        };
        for i in 0..sim.voters.len() {
            sim.start(i);
        }
        sim
    }

    fn start(&mut self, i: usize) {
        let mut config = QuorumConfig::new(self.voters[i], self.voters.clone());
        config.election_tick = 10 + self.rng.below(10) as usize;
        config.election_tick_max = config.election_tick + 1;
        config.snapshot_interval_entries = 8;
        // A crashed node's storage is closed before it opens again (RocksDB locks it).
        self.nodes[i] = None;
        let storage = self.disks[i].open(&self.voters);
        let node = QuorumNode::open_with(storage, &config).expect("reopen");
        // The state rebuilt from a snapshot must be the one every node had at its index.
        check_state(&mut self.checker, &node);
        self.nodes[i] = Some(node);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    fn pick_live(&mut self) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.rng.below(live.len() as u64) as usize])
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=24 => self.tick_all(),
            25..=59 => self.deliver_due(true),
            60..=74 => self.deliver_one(),
            75..=84 => self.propose_somewhere(),
            85..=87 => {
                if !self.network.is_empty() {
                    let k = self.rng.below(self.network.len() as u64) as usize;
                    self.network.swap_remove(k);
                }
            }
            88..=90 => {
                // Isolate one node in both directions.
                let id = self.voters[self.rng.below(self.voters.len() as u64) as usize];
                for &other in &self.voters {
                    if other != id {
                        self.cut.insert((id, other));
                        self.cut.insert((other, id));
                    }
                }
            }
            91..=94 => self.cut.clear(),
            95..=96 => {
                if let Some(i) = self.pick_live() {
                    self.nodes[i] = None;
                    self.checker.crashes += 1;
                }
            }
            _ => {
                let crashed: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].is_none())
                    .collect();
                if !crashed.is_empty() {
                    let i = crashed[self.rng.below(crashed.len() as u64) as usize];
                    self.start(i);
                }
            }
        }
        self.drain_ready();
        self.check_leaders();
    }

    fn tick_all(&mut self) {
        self.now_ticks += 1;
        for node in self.nodes.iter_mut().flatten() {
            node.tick();
        }
    }

    fn deliver(&mut self, message: Message) {
        let to = message.to;
        if let Some(node) = self.nodes[(to - 1) as usize].as_mut() {
            node.step(message);
        }
    }

    /// Delivers every message that is due, shuffled, dropping a few when `lossy`.
    fn deliver_due(&mut self, lossy: bool) {
        let now = self.now_ticks;
        let (due, later): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|m| m.deliver_at <= now);
        self.network = later;
        let mut due: Vec<Message> = due.into_iter().map(|m| m.message).collect();
        // Fisher–Yates with the simulation's generator.
        for k in (1..due.len()).rev() {
            let j = self.rng.below(k as u64 + 1) as usize;
            due.swap(k, j);
        }
        for message in due {
            if lossy && self.rng.percent(3) {
                continue;
            }
            self.deliver(message);
        }
    }

    fn deliver_one(&mut self) {
        if self.network.is_empty() {
            return;
        }
        let k = self.rng.below(self.network.len() as u64) as usize;
        let m = self.network.swap_remove(k);
        self.deliver(m.message);
    }

    fn propose_somewhere(&mut self) {
        let Some(i) = self.pick_live() else { return };
        let choice = self.rng.below(10);
        let topic_id = Uuid::from_u64_pair(self.rng.next(), self.rng.next());
        let node = self.nodes[i].as_mut().expect("live");
        if !node.is_leader() {
            return;
        }
        let state = node.state();
        let records = if state.broker(1).is_none() {
            Ok(vec![MetadataRecord::RegisterBroker {
                broker_id: 1,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                incarnation: Uuid::nil(),
            }])
        } else if choice < 3 && state.topics().next().is_some() {
            let name = state.topics().next().expect("a topic").name.clone();
            controller::delete_topic(state, &name)
        } else {
            self.next_topic += 1;
            controller::create_topic(
                state,
                &format!("t{}", self.next_topic),
                1 + (choice % 3) as i32,
                1,
                Default::default(),
                topic_id,
                0,
            )
        };
        let records = records.expect("decisions on a valid state succeed");
        let proposal = Proposal {
            base_version: state.applied_records(),
            records,
        };
        node.propose(&proposal).expect("a leader takes proposals");
    }

    fn drain_ready(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes[i].as_mut() else {
                continue;
            };
            let out: Output = node.ready().expect("ready");
            check_applied(&mut self.checker, &out);
            check_state(&mut self.checker, self.nodes[i].as_ref().expect("live"));
            for message in out.messages {
                if self.cut.contains(&(message.from, message.to)) {
                    continue;
                }
                let deliver_at = self.now_ticks + self.rng.below(DELAY_TICKS_MAX);
                self.network.push(InFlight {
                    deliver_at,
                    message,
                });
            }
        }
    }

    fn check_leaders(&mut self) {
        for node in self.nodes.iter().flatten() {
            let status = node.status();
            if status.is_leader {
                let leader = *self
                    .checker
                    .leaders_by_term
                    .entry(status.term)
                    .or_insert(status.node_id);
                assert_eq!(
                    leader, status.node_id,
                    "two leaders in term {}",
                    status.term
                );
            }
        }
    }

    /// Heals everything and requires progress and convergence.
    fn liveness(&mut self) {
        self.cut.clear();
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_none() {
                self.start(i);
            }
        }
        let mut final_ticket = None;
        for round in 0..LIVENESS_ROUNDS_MAX {
            self.tick_all();
            self.drain_ready();
            self.deliver_due(false);
            self.drain_ready();
            self.check_leaders();
            let leader = self.nodes.iter().flatten().find(|n| n.is_leader());
            let Some(leader) = leader else { continue };
            let leader_index = (leader.node_id() - 1) as usize;
            let ticket_done = final_ticket.is_some_and(|(term, index)| {
                self.checker
                    .applied_by_index
                    .get(&index)
                    .is_some_and(|(t, o)| *t == term && matches!(o, ApplyOutcome::Committed { .. }))
            });
            if !ticket_done && round % 20 == 0 {
                let node = self.nodes[leader_index].as_mut().expect("leader is live");
                let state = node.state();
                let records = vec![MetadataRecord::RegisterBroker {
                    broker_id: 2,
                    host: format!("final-{round}"),
                    port: 1,
                    rack: None,
                    incarnation: Uuid::nil(),
                }];
                let proposal = Proposal {
                    base_version: state.applied_records(),
                    records,
                };
                if let Ok(ticket) = node.propose(&proposal) {
                    final_ticket = Some((ticket.term, ticket.index));
                }
                continue;
            }
            if ticket_done {
                let leader = self.nodes[leader_index].as_ref().expect("leader is live");
                let target = leader.status().commit_index;
                let converged = self
                    .nodes
                    .iter()
                    .flatten()
                    .all(|n| n.applied_index() == target && n.state() == leader.state());
                if converged {
                    assert!(self.checker.committed_proposals > 0);
                    return;
                }
            }
        }
        panic!(
            "no convergence after {LIVENESS_ROUNDS_MAX} healed rounds: {:?}",
            self.nodes
                .iter()
                .flatten()
                .map(|n| n.status())
                .collect::<Vec<_>>()
        );
    }
}

fn check_applied(checker: &mut Checker, out: &Output) {
    checker.snapshots_installed += u64::from(out.snapshot_installed.is_some());
    for applied in &out.applied {
        let seen = checker
            .applied_by_index
            .entry(applied.index)
            .or_insert_with(|| {
                match applied.outcome {
                    ApplyOutcome::Committed { .. } => checker.committed_proposals += 1,
                    ApplyOutcome::Stale { .. } => checker.stale_proposals += 1,
                    ApplyOutcome::Empty => {}
                }
                (applied.term, applied.outcome)
            });
        assert_eq!(
            *seen,
            (applied.term, applied.outcome),
            "entry {} applied differently on two nodes (or after a restart)",
            applied.index
        );
    }
}

fn check_state<S: QuorumStorage>(checker: &mut Checker, node: &QuorumNode<S>) {
    if node.applied_index() == 0 {
        return;
    }
    let seen = checker
        .states_by_index
        .entry(node.applied_index())
        .or_insert_with(|| node.state().clone());
    assert_eq!(
        seen,
        node.state(),
        "node {} holds another state at applied index {}",
        node.node_id(),
        node.applied_index()
    );
}

fn run_case(voters: u64, seed: u64) {
    run_case_on(
        voters,
        seed,
        MemStorage::new,
        &format!("sim_{voters}_voters"),
    );
}

fn run_case_on<D: Disk>(voters: u64, seed: u64, disk: impl Fn(&[u64]) -> D, test: &str) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sim = Sim::new(voters, seed, &disk);
        for _ in 0..STEPS_PER_CASE {
            sim.step();
        }
        sim.liveness();
        let c = &sim.checker;
        format!(
            "{} proposals committed, {} stale skipped, {} terms with a leader, {} crashes, \
             {} snapshots installed",
            c.committed_proposals,
            c.stale_proposals,
            c.leaders_by_term.len(),
            c.crashes,
            c.snapshots_installed
        )
    }));
    match result {
        Ok(summary) => eprintln!("voters={voters} seed={seed}: {summary}"),
        Err(panic) => {
            eprintln!(
                "simulation failed: voters={voters} seed={seed}; replay with \
                 CAIRN_SIM_SEED={seed} cargo test -p cairn-meta {test}"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

fn seeds(default_cases: u64) -> Vec<u64> {
    match std::env::var("CAIRN_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CAIRN_SIM_SEED is a u64")],
        Err(_) => (0..default_cases).map(|c| 0x5eed_0000 + c).collect(),
    }
}

#[test]
fn sim_3_voters() {
    for seed in seeds(40) {
        run_case(3, seed);
    }
}

#[test]
fn sim_3_voters_on_rocksdb() {
    let disk = |_: &[u64]| RocksDisk(tempfile::tempdir().expect("temporary directory"));
    for seed in seeds(3) {
        run_case_on(3, seed, disk, "sim_3_voters_on_rocksdb");
    }
}

#[test]
fn sim_5_voters() {
    for seed in seeds(25) {
        run_case(5, seed);
    }
}

#[test]
fn one_voter_leads_at_once_and_restores_after_restart() {
    let disk = MemStorage::new(&[1]);
    let mut config = QuorumConfig::new(1, vec![1]);
    config.snapshot_interval_entries = 4;
    let mut node = QuorumNode::open_with(disk.clone(), &config).unwrap();
    node.ready().unwrap();
    assert!(node.is_leader());
    for n in 0..10 {
        let state = node.state();
        let records = controller::create_topic(
            state,
            &format!("t{n}"),
            1,
            0,
            Default::default(),
            Uuid::from_u128(n),
            0,
        );
        // No broker registered: the controller refuses replication factor 0.
        assert!(records.is_err());
        let proposal = Proposal {
            base_version: state.applied_records(),
            records: vec![MetadataRecord::TopicConfig {
                topic_id: Uuid::nil(),
                key: "k".into(),
                value: None,
            }],
        };
        // A stale proposal (wrong base version) is skipped, never applied.
        let stale = Proposal {
            base_version: proposal.base_version + 1,
            ..proposal
        };
        let ticket = node.propose(&stale).unwrap();
        let out = node.ready().unwrap();
        let applied = out
            .applied
            .iter()
            .find(|a| a.index == ticket.index)
            .unwrap();
        assert!(matches!(applied.outcome, ApplyOutcome::Stale { .. }));
        let create = Proposal {
            base_version: node.state().applied_records(),
            records: vec![MetadataRecord::CreateTopic {
                name: format!("t{n}"),
                topic_id: Uuid::from_u128(n),
                partitions: vec![],
                configs: Default::default(),
            }],
        };
        let ticket = node.propose(&create).unwrap();
        let out = node.ready().unwrap();
        let applied = out
            .applied
            .iter()
            .find(|a| a.index == ticket.index)
            .unwrap();
        assert!(matches!(
            applied.outcome,
            ApplyOutcome::Committed { version } if version == n as u64 + 1
        ));
    }
    let before = node.state().clone();
    drop(node);
    let mut node = QuorumNode::open_with(disk, &config).unwrap();
    node.ready().unwrap();
    assert!(node.is_leader());
    assert_eq!(node.state(), &before);
    assert_eq!(node.state().topics().count(), 10);
}
