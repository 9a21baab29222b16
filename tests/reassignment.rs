//! Partition reassignment (KIP-455) and broker decommissioning across three `cairn serve`
//! processes.
//!
//! - `kafkajs_moves_a_partition_under_load`: a topic with replication factor 2; while an
//!   rdkafka producer (`acks=all`, `min.insync.replicas=2`) keeps writing, the kafkajs script
//!   `tests/js/reassign.js` moves partition 0 from replicas [a, b] to [b, c] and lists
//!   reassignments until none is left. Then Metadata must show [b, c], broker a's directory
//!   for the partition must be gone, and every acknowledged record must be read back at its
//!   acknowledged offset by a consumer from offset 0. The longest gap between the
//!   producer's acknowledgements is printed (it should be far below the request timeout:
//!   parked produces are answered when leadership leaves the removed broker).
//! - `decommission_moves_every_replica_off_a_broker`: `cairn broker decommission 3` on a
//!   topic of 6 partitions with replication factor 2; afterwards no partition has a replica
//!   on broker 3, its partition directories are gone, the replication factor is kept and
//!   every record written before is still readable. The `cairn partition` subcommands are
//!   checked on the way (refusals, listing, a move with `--wait`, cancel of none).
//!
//! kafkajs comes from `tests/js/node_modules` (`cargo xtask test` runs `npm ci`).

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::block_on;
use harness::delivery::{Acked, Recorder, Recording, value_of};
use harness::{BrokerProcess, repo_root};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// Failure guard for anything the cluster should do "soon"; never a performance assert.
const GUARD: Duration = Duration::from_secs(90);

/// [`harness::wait_for`] with this file's [`GUARD`].
fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    harness::wait_for(what, GUARD, f)
}

const BROKER_SETTINGS: &[&str] = &[
    "--set",
    "broker.session.timeout.ms=3000",
    "--set",
    "broker.heartbeat.interval.ms=500",
    "--set",
    "replica.lag.time.max.ms=5000",
];

fn bootstrap(brokers: &[BrokerProcess]) -> String {
    brokers
        .iter()
        .map(BrokerProcess::bootstrap)
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates `topic`, retrying until the cluster accepts it.
fn create_topic(bootstrap: &str, topic: &str, partitions: i32, replication_factor: i32) {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client");
        let result = block_on(
            admin.create_topics(
                &[NewTopic::new(
                    topic,
                    partitions,
                    TopicReplication::Fixed(replication_factor),
                )
                .set("min.insync.replicas", "2")],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
            ),
        );
        match result.as_deref() {
            Ok([Ok(created)]) if created == topic => return,
            Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) if attempts > 1 => return,
            other => {
                assert!(
                    started.elapsed() < GUARD,
                    "creating {topic} kept failing: {other:?}"
                );
                thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct PartitionView {
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// `topic`'s partitions as the brokers report them, or `None` on any error.
fn partitions(bootstrap: &str, topic: &str) -> Option<BTreeMap<i32, PartitionView>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let t = metadata.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    let mut out = BTreeMap::new();
    for p in t.partitions() {
        if p.error().is_some() {
            return None;
        }
        out.insert(
            p.id(),
            PartitionView {
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            },
        );
    }
    Some(out)
}

/// Waits until every partition of `topic` has a leader and its whole replica set in sync.
fn wait_in_sync(bootstrap: &str, topic: &str) -> BTreeMap<i32, PartitionView> {
    wait_for(&format!("{topic}: every replica in sync"), || {
        partitions(bootstrap, topic).filter(|ps| {
            ps.values()
                .all(|p| p.leader > 0 && p.isr.len() == p.replicas.len())
        })
    })
}

// ---------------------------------------------------------------------------------------
// The producer load
// ---------------------------------------------------------------------------------------

/// A producer thread writing `seq-<n>` records (key `<n>`) with `acks=all` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
    recorder: Arc<Recorder>,
}

impl Load {
    fn start(bootstrap: &str, topic: &str) -> Load {
        let recorder = Arc::new(Recorder::default());
        let stop = Arc::new(AtomicBool::new(false));
        let producer: ThreadedProducer<Recording> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("message.timeout.ms", "60000")
            .set("request.timeout.ms", "10000")
            .set("retries", "1000000")
            .set("retry.backoff.ms", "100")
            .set("linger.ms", "5")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .create_with_context(Recording(recorder.clone()))
            .expect("producer");
        let thread_stop = stop.clone();
        let topic = topic.to_owned();
        let thread = thread::spawn(move || {
            let mut seq = 0u64;
            while !thread_stop.load(Ordering::SeqCst) {
                let key = seq.to_string();
                let value = value_of(seq);
                let record = BaseRecord::with_opaque_to(&topic, Box::new(seq))
                    .key(&key)
                    .payload(&value);
                match producer.send(record) {
                    Ok(()) => seq += 1,
                    Err((e, _)) => {
                        assert!(
                            matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)),
                            "producer send failed: {e}"
                        );
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
            producer
                .flush(Duration::from_secs(120))
                .expect("producer flush: every delivery report within 120 s");
            seq
        });
        Load {
            stop,
            thread: Some(thread),
            recorder,
        }
    }

    fn acked_on(&self, partition: i32) -> usize {
        self.recorder
            .acked
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.partition == partition)
            .count()
    }

    /// Stops producing and waits for every delivery report; returns the acknowledged
    /// records.
    fn finish(mut self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.thread.take().unwrap().join().expect("producer thread");
        let acked = std::mem::take(&mut *self.recorder.acked.lock().unwrap());
        let failed = std::mem::take(&mut *self.recorder.failed.lock().unwrap());
        assert_eq!(
            acked.len() + failed.len(),
            sent as usize,
            "every sent record gets exactly one delivery report"
        );
        eprintln!(
            "producer: sent {sent}, acknowledged {}, failed {}: {:?}",
            acked.len(),
            failed.len(),
            failed.iter().take(5).collect::<Vec<_>>()
        );
        acked
    }
}

/// The longest time between two acknowledgements on `partition`.
fn longest_gap(acked: &[Acked], partition: i32) -> Duration {
    let mut at: Vec<Instant> = acked
        .iter()
        .filter(|a| a.partition == partition)
        .map(|a| a.at)
        .collect();
    at.sort();
    at.windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// Reads every partition of `topic` from offset 0 up to its high watermark; returns
/// (partition, offset) → value.
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<(i32, i64), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reassignment-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = wait_for(&format!("watermarks of {topic}-{p}"), || {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .ok()
        });
        ends.insert(p, high);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let started = Instant::now();
    let done = |out: &BTreeMap<(i32, i64), String>| {
        ends.iter()
            .all(|(&p, &end)| end == 0 || out.range((p, end - 1)..=(p, end - 1)).next().is_some())
    };
    while !done(&out) {
        assert!(
            started.elapsed() < GUARD,
            "reading {topic} back: ends {ends:?}, read {} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                out.insert((m.partition(), m.offset()), value);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => eprintln!("consumer: {e}"),
        }
    }
    out
}

/// Every acknowledged record is at its acknowledged offset.
fn check_acked_readable(acked: &[Acked], read: &BTreeMap<(i32, i64), String>) {
    let mut missing = Vec::new();
    for a in acked {
        match read.get(&(a.partition, a.offset)) {
            Some(v) if *v == value_of(a.seq) => {}
            other => missing.push(format!(
                "seq {} acknowledged at {}@{} but read {other:?}",
                a.seq, a.partition, a.offset
            )),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records not read back: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

fn run(program: &str, args: &[&str], timeout: Duration) -> Output {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let status = child.wait().unwrap();
            eprintln!("{program} {args:?} killed after {timeout:?}");
            break status;
        }
        thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read(&stderr_path).unwrap_or_default(),
    }
}

fn cairn(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_cairn"), args, Duration::from_secs(180))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn partition_dir(broker: &BrokerProcess, topic: &str, partition: i32) -> PathBuf {
    broker.data_dir().join(format!("{topic}-{partition}"))
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn kafkajs_moves_a_partition_under_load() {
    let kafkajs = repo_root().join("tests/js/node_modules/kafkajs");
    assert!(
        kafkajs.is_dir(),
        "{} is missing; `cargo xtask test` runs `npm ci` in tests/js",
        kafkajs.display()
    );
    const TOPIC: &str = "moving";
    const PARTITIONS: i32 = 2;
    let brokers = BrokerProcess::start_quorum_with(3, BROKER_SETTINGS);
    let bootstrap = bootstrap(&brokers);
    create_topic(&bootstrap, TOPIC, PARTITIONS, 2);
    let before = wait_in_sync(&bootstrap, TOPIC);
    let [a, b] = before[&0].replicas[..] else {
        panic!("{TOPIC}-0 has replicas {:?}", before[&0].replicas)
    };
    let c = (1..=3).find(|x| *x != a && *x != b).unwrap();
    let by_id = |id: i32| &brokers[(id - 1) as usize];
    assert!(partition_dir(by_id(a), TOPIC, 0).is_dir());
    assert!(!partition_dir(by_id(c), TOPIC, 0).exists());

    let load = Load::start(&bootstrap, TOPIC);
    wait_for("some records acknowledged on partition 0", || {
        (load.acked_on(0) >= 200).then_some(())
    });
    let acked_before_move = load.acked_on(0);
    let script = run(
        "node",
        &["tests/js/reassign.js", &bootstrap, TOPIC],
        Duration::from_secs(180),
    );
    println!("---- reassign.js ----\n{}", text(&script));
    assert!(
        script.status.success(),
        "reassign.js failed:\n{}",
        text(&script)
    );
    let stdout = String::from_utf8_lossy(&script.stdout);
    assert!(
        stdout.contains(&format!("PLAN {a} {b} {c}")),
        "the script planned another move than [{a},{b}] -> [{b},{c}]:\n{stdout}"
    );
    assert!(stdout.contains("DONE"), "{stdout}");
    // Keep producing on the new replica set for a moment.
    let acked_at_move = load.acked_on(0);
    wait_for("records acknowledged on partition 0 after the move", || {
        (load.acked_on(0) >= acked_at_move + 200).then_some(())
    });
    let acked = load.finish();
    let gap = longest_gap(&acked, 0);
    eprintln!("longest gap between acknowledgements on {TOPIC}-0: {gap:?}");
    // Produces parked on the removed leader are answered NOT_LEADER_OR_FOLLOWER when it
    // lets go of the partition, not left to time out (request.timeout.ms is 10 s): the gap
    // is printed above, not asserted (no wall-clock thresholds in tests).
    assert!(
        acked_before_move > 0 && acked.iter().filter(|r| r.partition == 0).count() > acked_at_move,
        "partition 0 took writes before and after the move"
    );

    // Every broker agrees on [b, c], in sync.
    for broker in &brokers {
        wait_for(
            &format!(
                "broker {} reports {TOPIC}-0 on [{b},{c}] in sync",
                broker.bootstrap()
            ),
            || {
                let p = partitions(&broker.bootstrap(), TOPIC)?.remove(&0)?;
                let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
                (p.replicas == [b, c] && isr == BTreeSet::from([b, c]) && p.leader > 0)
                    .then_some(())
            },
        );
    }
    wait_for(
        &format!("broker {a} deletes its {TOPIC}-0 directory"),
        || (!partition_dir(by_id(a), TOPIC, 0).exists()).then_some(()),
    );
    assert!(partition_dir(by_id(c), TOPIC, 0).is_dir());
    // Partition 1 did not move.
    let after = partitions(&bootstrap, TOPIC).expect("metadata");
    assert_eq!(after[&1].replicas, before[&1].replicas);

    let read = read_all(&bootstrap, TOPIC, PARTITIONS);
    check_acked_readable(&acked, &read);
    eprintln!(
        "{} acknowledged records read back; partition 0 moved from [{a},{b}] to [{b},{c}]",
        acked.len()
    );
}

#[test]
fn decommission_moves_every_replica_off_a_broker() {
    const TOPIC: &str = "fleet";
    const PARTITIONS: i32 = 6;
    let brokers = BrokerProcess::start_quorum_with(3, BROKER_SETTINGS);
    let bootstrap = bootstrap(&brokers);
    let first = brokers[0].bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS, 2);
    let before = wait_in_sync(&bootstrap, TOPIC);
    let on_3: Vec<i32> = before
        .iter()
        .filter(|(_, p)| p.replicas.contains(&3))
        .map(|(&i, _)| i)
        .collect();
    assert!(!on_3.is_empty(), "broker 3 hosts some of {before:?}");

    let load = Load::start(&bootstrap, TOPIC);
    wait_for("records acknowledged", || {
        ((0..PARTITIONS).all(|p| load.acked_on(p) >= 20)).then_some(())
    });
    let acked = load.finish();

    // The partition subcommands: refusals, an empty listing, a move with --wait.
    let refused = cairn(&[
        "partition",
        "reassign",
        "--topic",
        TOPIC,
        "--partition",
        "0",
        "--replicas",
        "1,99",
        "-b",
        &first,
    ]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("INVALID_REPLICA_ASSIGNMENT"),
        "{}",
        text(&refused)
    );
    let cancel = cairn(&[
        "partition",
        "reassign",
        "--topic",
        TOPIC,
        "--partition",
        "0",
        "--cancel",
        "-b",
        &first,
    ]);
    assert!(!cancel.status.success(), "{}", text(&cancel));
    assert!(
        text(&cancel).contains("NO_REASSIGNMENT_IN_PROGRESS"),
        "{}",
        text(&cancel)
    );
    let listed = cairn(&["partition", "list-reassignments", "-b", &first]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("no partition reassignment in progress"),
        "{}",
        text(&listed)
    );
    // Reverse partition 0's replica order (a new preferred leader), waiting for it.
    let reversed: Vec<i32> = before[&0].replicas.iter().rev().copied().collect();
    let reversed_arg = format!("{},{}", reversed[0], reversed[1]);
    let moved = cairn(&[
        "partition",
        "reassign",
        "--topic",
        TOPIC,
        "--partition",
        "0",
        "--replicas",
        &reversed_arg,
        "--wait",
        "-b",
        &first,
    ]);
    assert!(moved.status.success(), "{}", text(&moved));
    assert!(
        String::from_utf8_lossy(&moved.stdout).contains("complete"),
        "{}",
        text(&moved)
    );
    wait_for("partition 0 in reversed order", || {
        (partitions(&bootstrap, TOPIC)?[&0].replicas == reversed).then_some(())
    });

    let started = Instant::now();
    let out = cairn(&["broker", "decommission", "3", "-b", &first]);
    println!("---- cairn broker decommission 3 ----\n{}", text(&out));
    assert!(out.status.success(), "decommission failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("broker 3 decommissioned"), "{stdout}");
    eprintln!("decommission took {:?}", started.elapsed());

    for broker in &brokers {
        let ps = wait_for(
            &format!("broker {} reports no replica on 3", broker.bootstrap()),
            || {
                partitions(&broker.bootstrap(), TOPIC)
                    .filter(|ps| ps.values().all(|p| !p.replicas.contains(&3)))
            },
        );
        for (i, p) in &ps {
            assert_eq!(p.replicas.len(), 2, "{TOPIC}-{i} keeps 2 replicas: {p:?}");
        }
    }
    wait_for("broker 3's partition directories deleted", || {
        on_3.iter()
            .all(|&p| !partition_dir(&brokers[2], TOPIC, p).exists())
            .then_some(())
    });
    wait_in_sync(&bootstrap, TOPIC);
    let read = read_all(&bootstrap, TOPIC, PARTITIONS);
    check_acked_readable(&acked, &read);
    // The consumer above created __consumer_offsets, on all three brokers (broker 3 is
    // still live): it cannot keep its replication factor without broker 3.
    let offsets = "__consumer_offsets";
    let refused = cairn(&["broker", "decommission", "3", "-b", &first]);
    let has_offsets = partitions(&bootstrap, offsets)
        .is_some_and(|ps| ps.values().any(|p| p.replicas.len() == 3));
    if has_offsets {
        assert!(!refused.status.success(), "{}", text(&refused));
        assert!(
            text(&refused).contains("--allow-shrink"),
            "{}",
            text(&refused)
        );
    }
    let shrunk = cairn(&[
        "broker",
        "decommission",
        "3",
        "--allow-shrink",
        "-b",
        &first,
    ]);
    assert!(shrunk.status.success(), "{}", text(&shrunk));
    for topic in [TOPIC, offsets] {
        if let Some(ps) = partitions(&bootstrap, topic) {
            assert!(
                ps.values().all(|p| !p.replicas.contains(&3)),
                "{topic}: {ps:?}"
            );
        }
    }
    // Nothing to do a third time.
    let again = cairn(&["broker", "decommission", "3", "-b", &first]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to move"),
        "{}",
        text(&again)
    );
}

/// SIGKILLs the preferred replica of `TOPIC`-`partition` (its leader), waits until
/// another replica leads, restarts it and waits until every replica is in sync again;
/// with `auto.leader.rebalance.enable=false` the leadership stays moved.
fn move_leadership_away(brokers: &mut [BrokerProcess], topic: &str, partition: i32) {
    let all = bootstrap(brokers);
    let preferred = partitions(&all, topic).expect("metadata")[&partition].replicas[0];
    let i = (preferred - 1) as usize;
    brokers[i].kill9();
    let others = brokers
        .iter()
        .filter(|b| b.is_running())
        .map(BrokerProcess::bootstrap)
        .collect::<Vec<_>>()
        .join(",");
    wait_for(
        &format!("{topic}-{partition} led by another broker"),
        || {
            let p = partitions(&others, topic)?.remove(&partition)?;
            (p.leader > 0 && p.leader != preferred).then_some(())
        },
    );
    brokers[i].start_again();
    let moved = wait_in_sync(&all, topic);
    assert_ne!(moved[&partition].leader, preferred, "{moved:?}");
}

/// Waits until every broker reports every partition of `topic` led by its preferred
/// replica.
fn wait_preferred_leaders(brokers: &[BrokerProcess], topic: &str) {
    for broker in brokers {
        wait_for(
            &format!("broker {} reports preferred leaders", broker.bootstrap()),
            || {
                partitions(&broker.bootstrap(), topic)?
                    .values()
                    .all(|p| p.leader == p.replicas[0])
                    .then_some(())
            },
        );
    }
}

#[test]
fn confluent_kafka_and_the_cli_elect_preferred_leaders() {
    const TOPIC: &str = "elected";
    let mut settings = BROKER_SETTINGS.to_vec();
    // Only the test's ElectLeaders requests may move leadership back.
    settings.extend(["--set", "auto.leader.rebalance.enable=false"]);
    let mut brokers = BrokerProcess::start_quorum_with(3, &settings);
    let bootstrap = bootstrap(&brokers);
    create_topic(&bootstrap, TOPIC, 3, 3);
    let before = wait_in_sync(&bootstrap, TOPIC);
    assert!(
        before.values().all(|p| p.leader == p.replicas[0]),
        "{before:?}"
    );

    move_leadership_away(&mut brokers, TOPIC, 0);
    let out = run(
        "python3",
        &["tests/python/elect_leaders.py", &bootstrap, TOPIC, "0"],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    wait_preferred_leaders(&brokers, TOPIC);

    // The same through `cairn partition elect-leaders`, for one topic.
    move_leadership_away(&mut brokers, TOPIC, 1);
    let first = brokers[0].bootstrap();
    let elect = cairn(&["partition", "elect-leaders", "--topic", TOPIC, "-b", &first]);
    assert!(elect.status.success(), "{}", text(&elect));
    let said = String::from_utf8_lossy(&elect.stdout).into_owned();
    assert!(
        said.contains(&format!(
            "{TOPIC}-1: leadership moved to its preferred replica"
        )) && said.contains("1 partition(s) elected; 2 already led by their preferred replica"),
        "{}",
        text(&elect)
    );
    wait_preferred_leaders(&brokers, TOPIC);
    // Nothing left to elect anywhere; a partition that does not exist fails the command.
    let all = cairn(&["partition", "elect-leaders", "-b", &first]);
    assert!(all.status.success(), "{}", text(&all));
    assert!(
        text(&all).contains("0 partition(s) elected"),
        "{}",
        text(&all)
    );
    let missing = cairn(&[
        "partition",
        "elect-leaders",
        "--topic",
        TOPIC,
        "--partition",
        "7",
        "-b",
        &first,
    ]);
    assert!(!missing.status.success(), "{}", text(&missing));
    assert!(
        text(&missing).contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        text(&missing)
    );
}
