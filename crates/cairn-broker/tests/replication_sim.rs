//! Deterministic simulation of partition replication: three brokers' real
//! [`ReplicaManager`]s (real logs in temporary directories), the real controller decisions
//! of `cairn_meta::controller` committed to one `ClusterState` (the metadata quorum is
//! assumed to work: its own simulation is in cairn-meta), and a seeded scheduler standing in
//! for the network, the clock and `kill -9`.
//!
//! Each step picks one of: a producer appends to the leader (acks=all: recorded as pending
//! until the leader's high watermark passes it, as the Produce handler waits), the leader
//! fsyncs (group commit), a follower fetches (OffsetForLeaderEpoch truncation first after a
//! leader change, then Fetch; the response may be lost), time passes and the leader
//! shrinks its ISR, a broker is SIGKILLed (its logs stay as written, unflushed bytes
//! included, as after a process crash; or, when another in-sync replica exists, its disk
//! is replaced and it restarts empty), the controller fences a silent broker, a killed
//! broker restarts (re-registers with a new incarnation), or a preferred leader election.
//!
//! Invariants checked after every step:
//! - every live replica acts on the committed partition state (one leader per epoch);
//! - a leader's high watermark never decreases within its epoch;
//! - in-sync replicas agree with the leader on every record below its high watermark, and
//!   other replicas below their own;
//! - no acknowledged record is ever missing or changed on the leader, on an in-sync
//!   replica whose log reaches its offset, or below any replica's own high watermark.
//!
//! At the end every broker is restarted and caught up, and every acknowledged record must
//! be on every replica. `CAIRN_SIM_SEED=<n>` replays one seed; `CAIRN_SIM_SEEDS=<n>` runs
//! that many (default 16). A failure prints its seed and the step trace.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use cairn_broker::group_commit::GroupCommitter;
use cairn_broker::replica_manager::{Partition, ReplicaManager};
use cairn_broker::replication::fetcher::truncation_offset;
use cairn_log::LogConfig;
use cairn_log::testutil::{BatchBuilder, TestRecord};
use cairn_meta::{ClusterState, MetadataRecord, controller};

const TOPIC: &str = "sim";
const BROKERS: [i32; 3] = [1, 2, 3];
const LAG_MAX_MS: i64 = 5_000;
const STEPS: usize = 400;

/// splitmix64: small, seedable, identical everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Node {
    dir: PathBuf,
    manager: Option<ReplicaManager>,
    /// Leader epoch this node's fetcher last finished truncating for.
    truncated_for: Option<i32>,
}

struct Pending {
    end: i64,
    leader: i32,
    leader_epoch: i32,
    values: Vec<(i64, String)>,
}

struct Sim {
    rng: Rng,
    state: ClusterState,
    nodes: BTreeMap<i32, Node>,
    now_ms: i64,
    next_value: u64,
    pending: Vec<Pending>,
    /// offset → value of every acknowledged record.
    acked: BTreeMap<i64, String>,
    /// (node, leader epoch) → highest high watermark seen.
    hw_seen: HashMap<(i32, i32), i64>,
    trace: Vec<String>,
    _tmp: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        // Group committer and fetcher tasks are spawned on a runtime that never runs: the
        // simulation flushes and fetches itself.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut sim = Sim {
            rng: Rng(seed),
            state: ClusterState::default(),
            nodes: BTreeMap::new(),
            now_ms: 1_000_000,
            next_value: 0,
            pending: Vec::new(),
            acked: BTreeMap::new(),
            hw_seen: HashMap::new(),
            trace: Vec::new(),
            _tmp: tempfile::tempdir().unwrap(),
            _runtime: runtime,
        };
        for id in BROKERS {
            let dir = tmp.path().join(format!("node{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            sim.nodes.insert(
                id,
                Node {
                    dir,
                    manager: None,
                    truncated_for: None,
                },
            );
        }
        sim._tmp = tmp;
        sim.commit(vec![MetadataRecord::InitCluster {
            cluster_id: "sim".into(),
        }]);
        for id in BROKERS {
            sim.start(id);
        }
        let records = controller::create_topic(
            &sim.state,
            TOPIC,
            1,
            3,
            [("min.insync.replicas".to_owned(), "2".to_owned())].into(),
            uuid::Uuid::from_u128(7),
            0,
        )
        .unwrap();
        sim.commit(records);
        sim
    }

    fn manager(&self, id: i32) -> Option<&ReplicaManager> {
        self.nodes.get(&id).and_then(|n| n.manager.as_ref())
    }

    fn partition(&self, id: i32) -> Option<Arc<Partition>> {
        self.manager(id).and_then(|m| m.get(TOPIC, 0))
    }

    fn record(&self) -> cairn_meta::PartitionRecord {
        self.state.topic(TOPIC).unwrap().partitions[0].clone()
    }

    /// Applies committed records to the controller state and to every live broker.
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        for r in &records {
            self.trace.push(format!("    commit {r:?}"));
            self.state.apply(r);
        }
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(m) = &self.nodes[&id].manager {
                m.apply_metadata(&self.state, self.now_ms).unwrap();
            }
        }
    }

    fn start(&mut self, id: i32) {
        let _enter = self._runtime.enter();
        let manager = ReplicaManager::new(
            id,
            &self.nodes[&id].dir,
            LogConfig::default(),
            GroupCommitter::start(),
        );
        self.nodes.get_mut(&id).unwrap().manager = Some(manager);
        self.nodes.get_mut(&id).unwrap().truncated_for = None;
        let incarnation = uuid::Uuid::from_u128(self.rng.next() as u128);
        let lost =
            cairn_broker::replica_manager::lost_partitions(&self.nodes[&id].dir, id, &self.state);
        if !lost.is_empty() {
            self.trace
                .push(format!("broker {id} reports lost logs {lost:?}"));
        }
        let records = controller::register_broker_with_lost(
            &self.state,
            id,
            "127.0.0.1",
            9000 + id as u16,
            None,
            incarnation,
            &lost,
        )
        .unwrap();
        if records.is_empty() {
            // Already registered identically: still apply the current state to the new run.
            let m = self.nodes[&id].manager.as_ref().unwrap();
            m.apply_metadata(&self.state, self.now_ms).unwrap();
        }
        self.commit(records);
    }

    fn live(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.manager.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn step(&mut self) {
        let live = self.live();
        let record = self.record();
        match self.rng.below(100) {
            0..=29 => self.produce(),
            30..=39 => {
                if let Some(p) = self.partition(record.leader) {
                    if let Some(ticket) = p.begin_flush() {
                        ticket.sync().unwrap();
                        p.complete_flush(&ticket);
                        self.trace.push(format!("leader {} flushed", record.leader));
                    }
                }
            }
            40..=79 => {
                let f = live[self.rng.below(live.len() as u64) as usize];
                let lose_response = self.rng.chance(10);
                self.fetch(f, lose_response);
            }
            80..=86 => {
                self.now_ms += self.rng.below(3_000) as i64;
                if let Some(p) = self.partition(record.leader) {
                    if let Some(proposal) = p.isr_shrink(self.now_ms, LAG_MAX_MS) {
                        self.trace.push(format!(
                            "leader {} proposes ISR {:?}",
                            record.leader, proposal.new_isr
                        ));
                        self.alter(p, proposal);
                    }
                }
            }
            87..=88 => {
                // SIGKILL: at most two brokers down at once.
                if live.len() > 1 {
                    let victim = live[self.rng.below(live.len() as u64) as usize];
                    self.trace.push(format!("kill -9 broker {victim}"));
                    self.nodes.get_mut(&victim).unwrap().manager = None;
                    // Sometimes its disk is replaced too: it comes back empty. Only when
                    // another in-sync replica exists — losing every in-sync copy is
                    // beyond what replication can survive.
                    let others_in_sync = record.isr.iter().any(|r| *r != victim);
                    if others_in_sync && self.rng.chance(30) {
                        self.trace.push(format!("broker {victim} loses its disk"));
                        let dir = self.nodes[&victim].dir.join(format!("{TOPIC}-0"));
                        std::fs::remove_dir_all(dir).unwrap();
                    }
                }
            }
            89..=92 => {
                // The controller fences brokers whose session expired.
                let dead: Vec<i32> = BROKERS
                    .iter()
                    .copied()
                    .filter(|id| !live.contains(id) && !self.state.is_fenced(*id))
                    .collect();
                if let Some(&id) = dead.first() {
                    self.trace.push(format!("controller fences broker {id}"));
                    let records = controller::fence_broker(&self.state, id).unwrap();
                    self.commit(records);
                }
            }
            93..=97 => {
                let dead: Vec<i32> = BROKERS
                    .iter()
                    .copied()
                    .filter(|id| !live.contains(id))
                    .collect();
                if !dead.is_empty() {
                    let id = dead[self.rng.below(dead.len() as u64) as usize];
                    self.trace.push(format!("restart broker {id}"));
                    self.start(id);
                }
            }
            _ => {
                self.trace.push("preferred leader election".into());
                let records = controller::elect_preferred_leaders(&self.state).unwrap();
                self.commit(records);
            }
        }
        self.complete_acks();
    }

    fn produce(&mut self) {
        let record = self.record();
        let Some(p) = self.partition(record.leader) else {
            return;
        };
        let n = 1 + self.rng.below(3) as usize;
        let values: Vec<String> = (0..n)
            .map(|_| {
                self.next_value += 1;
                format!("v{}", self.next_value)
            })
            .collect();
        let batch = BatchBuilder::new(0)
            .records(values.iter().map(|v| TestRecord::value(self.now_ms, v)))
            .build();
        match p.append_as_leader(&batch, self.now_ms, true) {
            Ok(appended) => {
                let base = appended.info.base_offset;
                self.trace.push(format!(
                    "produce {values:?} at {base} on leader {} epoch {}",
                    record.leader, record.leader_epoch
                ));
                self.pending.push(Pending {
                    end: appended.info.last_offset + 1,
                    leader: record.leader,
                    leader_epoch: record.leader_epoch,
                    values: values
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (base + i as i64, v))
                        .collect(),
                });
            }
            Err(e) => self.trace.push(format!("produce refused: {e:?}")),
        }
    }

    /// One round of follower `f`'s fetcher against the leader it follows.
    fn fetch(&mut self, f: i32, lose_response: bool) {
        let Some(fp) = self.partition(f) else { return };
        let info = fp.info();
        if info.leader == f || info.leader < 0 {
            return;
        }
        let Some(lp) = self.partition(info.leader) else {
            return;
        };
        if !lp.is_leader() || lp.leader_epoch() != info.leader_epoch {
            return;
        }
        let epoch = info.leader_epoch;
        if self.nodes[&f].truncated_for != Some(epoch) {
            // OffsetForLeaderEpoch rounds until the truncation completes.
            loop {
                let latest = fp.with_log(|l| l.latest_leader_epoch());
                let (target, complete) = match latest {
                    None => (fp.high_watermark(), true),
                    Some(mine) => {
                        let (le, end) = lp
                            .with_log(|l| l.end_offset_for_epoch(mine))
                            .unwrap_or((-1, -1));
                        truncation_offset(&fp, le, end)
                    }
                };
                self.trace.push(format!(
                    "follower {f} truncates to {target} for epoch {epoch} (latest {latest:?}, complete {complete})"
                ));
                assert!(fp.truncate_as_follower(target, epoch).unwrap().is_some());
                if complete {
                    break;
                }
            }
            self.nodes.get_mut(&f).unwrap().truncated_for = Some(epoch);
            return;
        }
        let fetch_offset = fp.log_end_offset();
        let proposal = match lp.on_follower_fetch(f, fetch_offset, self.now_ms) {
            Ok(p) => p,
            Err(_) => return,
        };
        let read = lp.read_for_follower(fetch_offset, 1 << 20);
        let leader_hw = lp.high_watermark();
        self.trace.push(format!(
            "follower {f} fetches from {fetch_offset}: leader hw {leader_hw}{}",
            if lose_response {
                " (response lost)"
            } else {
                ""
            }
        ));
        if let Some(proposal) = proposal {
            self.trace.push(format!(
                "leader {} proposes ISR {:?}",
                info.leader, proposal.new_isr
            ));
            self.alter(lp.clone(), proposal);
        }
        if lose_response {
            return;
        }
        match read {
            Ok(read) => {
                if !read.records.is_empty() {
                    fp.append_as_follower(&read.records, epoch).unwrap();
                    fp.flush_as_follower().unwrap();
                }
                fp.update_follower_high_watermark(leader_hw);
            }
            Err(cairn_log::LogError::OffsetOutOfRange { .. }) => {
                self.trace
                    .push(format!("follower {f} out of range; truncating again"));
                self.nodes.get_mut(&f).unwrap().truncated_for = None;
            }
            Err(e) => panic!("leader read failed: {e}"),
        }
    }

    fn alter(
        &mut self,
        leader: Arc<Partition>,
        proposal: cairn_broker::replica_manager::IsrProposal,
    ) {
        let decided = controller::alter_partition(
            &self.state,
            proposal.topic_id,
            proposal.partition,
            self.record().leader,
            proposal.leader_epoch,
            proposal.partition_epoch,
            proposal.new_isr.clone(),
        );
        match decided {
            Ok(records) => {
                self.commit(records);
                leader.isr_change_done(true, self.now_ms);
            }
            Err(e) => {
                self.trace.push(format!("    refused: {e}"));
                leader.isr_change_done(false, self.now_ms);
            }
        }
    }

    /// Acknowledges pending produces the way the Produce handler does.
    fn complete_acks(&mut self) {
        let mut still = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            let Some(p) = self.partition(pending.leader) else {
                continue; // the leader died: the producer gets an error
            };
            if !p.is_leader() || p.leader_epoch() != pending.leader_epoch {
                continue; // NOT_LEADER_OR_FOLLOWER
            }
            if p.high_watermark() >= pending.end {
                if (p.info().isr.len() as i32) >= p.min_insync_replicas() {
                    for (offset, value) in &pending.values {
                        self.trace.push(format!("ack {value} at {offset}"));
                        self.acked.insert(*offset, value.clone());
                    }
                }
            } else {
                still.push(pending);
            }
        }
        self.pending = still;
    }

    fn check(&mut self) {
        let record = self.record();
        for id in self.live() {
            let p = self.partition(id).expect("every broker hosts a replica");
            let info = p.info();
            assert_eq!(
                (info.leader, info.leader_epoch, &info.isr),
                (record.leader, record.leader_epoch, &record.isr),
                "broker {id} acts on stale partition state"
            );
            if info.leader == id {
                let hw = p.high_watermark();
                let seen = self.hw_seen.entry((id, info.leader_epoch)).or_insert(hw);
                assert!(
                    hw >= *seen,
                    "high watermark of leader {id} went back from {seen} to {hw}"
                );
                *seen = hw;
            }
        }
        let leader = self.partition(record.leader);
        let leader_log = leader.as_ref().map(|p| dump(p));
        if let (Some(lp), Some(log)) = (&leader, &leader_log) {
            let leader_hw = lp.high_watermark();
            for id in self.live() {
                // An in-sync replica agrees with the leader below the leader's high
                // watermark; one out of sync (it may hold a divergent tail it has not
                // truncated yet) below its own.
                let p = self.partition(id).unwrap();
                let hw = if record.isr.contains(&id) {
                    leader_hw
                } else {
                    leader_hw.min(p.high_watermark())
                };
                let mine = dump(&p);
                for (offset, value) in &mine {
                    if *offset < hw {
                        assert_eq!(
                            log.get(offset),
                            Some(value),
                            "broker {id} disagrees with leader {} at offset {offset} below the high watermark {hw}",
                            record.leader
                        );
                    }
                }
            }
            for (offset, value) in &self.acked {
                assert_eq!(
                    log.get(offset),
                    Some(value),
                    "acknowledged record {value} at {offset} missing on leader {}",
                    record.leader
                );
            }
        }
        for id in self.live() {
            // An in-sync replica never holds anything else at an acknowledged offset; one
            // out of sync may, above its own high watermark, until it truncates.
            let p = self.partition(id).unwrap();
            let limit = if record.isr.contains(&id) {
                i64::MAX
            } else {
                p.high_watermark()
            };
            let mine = dump(&p);
            for (offset, value) in self.acked.range(..limit) {
                if let Some(found) = mine.get(offset) {
                    assert_eq!(
                        found, value,
                        "broker {id} holds another record at acknowledged offset {offset}"
                    );
                }
            }
        }
    }

    /// Restarts every broker, fences nothing, and fetches until every replica has caught up.
    fn heal(&mut self) {
        for id in BROKERS {
            if self.nodes[&id].manager.is_none() {
                self.trace.push(format!("heal: restart broker {id}"));
                self.start(id);
            }
        }
        for id in BROKERS {
            if self.state.is_fenced(id) {
                let records = controller::unfence_broker(&self.state, id).unwrap();
                self.commit(records);
            }
        }
        for _ in 0..200 {
            for f in BROKERS {
                self.fetch(f, false);
            }
            let record = self.record();
            if let Some(p) = self.partition(record.leader) {
                if let Some(ticket) = p.begin_flush() {
                    ticket.sync().unwrap();
                    p.complete_flush(&ticket);
                }
            }
            self.complete_acks();
            self.check();
        }
        let record = self.record();
        assert!(record.leader >= 0, "no leader after healing");
        for id in BROKERS {
            let log = dump(&self.partition(id).unwrap());
            for (offset, value) in &self.acked {
                assert_eq!(
                    log.get(offset),
                    Some(value),
                    "after healing, broker {id} lacks acknowledged record {value} at {offset}"
                );
            }
        }
    }
}

/// Every record of a replica's log: offset → value.
fn dump(p: &Partition) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    let mut offset = p.log_start_offset();
    loop {
        let read = p.read_for_follower(offset, 1 << 20).unwrap();
        if read.records.is_empty() {
            break;
        }
        for batch in cairn_log::Batches::new(&read.records) {
            let (header, bytes) = batch.unwrap();
            for r in cairn_log::batch::decode_records(bytes).unwrap() {
                let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                out.insert(header.base_offset + i64::from(r.offset_delta), value);
            }
            offset = header.last_offset() + 1;
        }
    }
    out
}

fn run(seed: u64) {
    let mut sim = Sim::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..STEPS {
            sim.step();
            sim.check();
        }
        sim.heal();
        (sim.acked.len(), sim.next_value)
    }));
    match outcome {
        Ok((acked, produced)) => {
            eprintln!(
                "seed {seed}: {produced} records offered, {acked} acknowledged, all on every replica"
            )
        }
        Err(panic) => {
            let tail = sim.trace.len().saturating_sub(60);
            eprintln!("--- last steps of seed {seed} ---");
            for line in &sim.trace[tail..] {
                eprintln!("{line}");
            }
            eprintln!("replay with CAIRN_SIM_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn replication_keeps_every_acknowledged_record() {
    cairn_log::testutil::skip_fsync_for_fuzzing(true);
    if let Ok(seed) = std::env::var("CAIRN_SIM_SEED") {
        run(seed.parse().expect("CAIRN_SIM_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("CAIRN_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    for seed in 0..seeds {
        run(seed);
    }
}
