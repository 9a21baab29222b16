//! Metadata observers end to end: three `cairn serve` voters and a fourth broker (node 4)
//! that is not among `--voters`, so it follows the committed metadata log as an observer
//! (no Raft node, no controller listener). Through the observer: a topic whose partitions
//! include broker 4 is created, written with librdkafka (acks=all) and read back. The
//! observer is SIGKILLed while a topic is created elsewhere, restarted, and must catch up
//! to Metadata identical to every voter's, still serving its records. Then the controller
//! (quorum leader) is SIGKILLed: the observer follows the new leader, which reports it,
//! and a topic created through the observer afterwards works. `cairn cluster status`
//! lists the observer with its applied index and lag. A second test restarts the
//! observer with every voter SIGKILLed: it serves the metadata it persisted.
//!
//! Every deadline here is a guard against a hang, never a speed check; the catch-up time
//! after the restart is printed.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_broker::quorum::proto::StatusRequest;
use cairn_broker::quorum::proto::raft_service_client::RaftServiceClient;
use harness::{BrokerProcess, NodeSpec, free_port, voter_specs};
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Guard for anything the cluster should do soon (elections, fencing, catch-up).
const GUARD: Duration = Duration::from_secs(120);
const OBSERVER: usize = 3;
const OBSERVER_ID: i32 = 4;
const RECORDS_PER_PARTITION: usize = 25;

/// Three voters (nodes 1-3) and the observer (node 4), started together.
fn start_cluster() -> Vec<BrokerProcess> {
    let (mut specs, voters) = voter_specs(3, &[]);
    specs.push(NodeSpec {
        addr: free_port(),
        args: vec![
            "--node-id".into(),
            OBSERVER_ID.to_string(),
            "--voters".into(),
            voters,
        ],
    });
    BrokerProcess::start_nodes(specs)
}

fn admin(broker: &BrokerProcess) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client")
}

/// Creates `name` through `broker`, retrying while the quorum has no leader.
async fn create_topic(broker: &BrokerProcess, name: &str, partitions: i32, rf: i32) {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = admin(broker)
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(rf))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
            )
            .await;
        match result.as_deref() {
            Ok([Ok(created)]) if created == name => return,
            // An earlier attempt that timed out on the client side may have committed.
            Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) if attempts > 1 => return,
            other => {
                assert!(
                    started.elapsed() < GUARD,
                    "creating {name} through {} kept failing: {other:?}",
                    broker.bootstrap()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Topic → partition → (leader, replicas, ISR), and the broker ids, as `broker` answers
/// Metadata; `None` if it did not answer.
type MetadataView = (
    BTreeMap<String, BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)>>,
    BTreeSet<i32>,
);

fn metadata(broker: &BrokerProcess) -> Option<MetadataView> {
    let metadata = admin(broker)
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .ok()?;
    let topics = metadata
        .topics()
        .iter()
        .map(|t| {
            let partitions = t
                .partitions()
                .iter()
                .map(|p| {
                    (
                        p.id(),
                        (p.leader(), p.replicas().to_vec(), p.isr().to_vec()),
                    )
                })
                .collect();
            (t.name().to_owned(), partitions)
        })
        .collect();
    let brokers = metadata.brokers().iter().map(|b| b.id()).collect();
    Some((topics, brokers))
}

/// Waits until the observer's Metadata answer equals that of every running voter.
fn wait_metadata_identical(nodes: &[BrokerProcess], why: &str) -> MetadataView {
    harness::wait_for(
        &format!("the observer's metadata identical to the voters' ({why})"),
        GUARD,
        || {
            let observed = metadata(&nodes[OBSERVER])?;
            let all_equal = nodes[..OBSERVER]
                .iter()
                .filter(|n| n.is_running())
                .all(|voter| metadata(voter).as_ref() == Some(&observed));
            all_equal.then_some(observed)
        },
    )
}

/// Writes `per_partition` numbered records to each partition of `topic` through
/// `bootstrap` with acks=all; returns the values written.
async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
) -> BTreeSet<(i32, String)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "110000")
        .create()
        .expect("producer");
    let mut written = BTreeSet::new();
    for p in 0..partitions {
        for i in 0..per_partition {
            let value = format!("{topic}-{p}-{i}");
            let record = FutureRecord::<(), _>::to(topic)
                .partition(p)
                .payload(&value);
            producer
                .send(record, Duration::from_secs(110))
                .await
                .unwrap_or_else(|(e, _)| panic!("producing {value}: {e}"));
            written.insert((p, value));
        }
    }
    written
}

/// Reads every partition of `topic` from the beginning through `bootstrap` until
/// `expected` records were read (a guard stops a hang); returns (partition, value)s.
fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> BTreeSet<(i32, String)> {
    let all: Vec<i32> = (0..partitions).collect();
    consume_partitions(bootstrap, topic, &all, expected)
}

/// Like [`consume`], for the given partitions only.
fn consume_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    expected: usize,
) -> BTreeSet<(i32, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "observers-test")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut read = BTreeSet::new();
    let started = Instant::now();
    while read.len() < expected {
        assert!(
            started.elapsed() < GUARD,
            "read {} of {expected} records of {topic} through {bootstrap}",
            read.len()
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                read.insert((m.partition(), value));
            }
        }
    }
    read
}

/// A voter's `RaftService.Status`, over its controller listener.
async fn voter_status(
    broker: &BrokerProcess,
) -> Option<cairn_broker::quorum::proto::StatusResponse> {
    let addr = broker.controller_addr()?;
    let mut client = RaftServiceClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    let call = client.status(StatusRequest {});
    let status = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .ok()?
        .ok()?;
    Some(status.into_inner())
}

/// The quorum leader, as a running voter reports it.
async fn leader(nodes: &[BrokerProcess]) -> u64 {
    let started = Instant::now();
    loop {
        for node in nodes[..OBSERVER].iter().filter(|n| n.is_running()) {
            if let Some(status) = voter_status(node).await
                && status.leader_id != 0
                && nodes[status.leader_id as usize - 1].is_running()
            {
                return status.leader_id;
            }
        }
        assert!(started.elapsed() < GUARD, "no quorum leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the leader's Status reports the observer at or past `index`.
async fn wait_leader_reports_observer(nodes: &[BrokerProcess], leader: u64, index: u64) {
    let started = Instant::now();
    loop {
        let status = voter_status(&nodes[leader as usize - 1]).await;
        let reported = status
            .as_ref()
            .and_then(|s| s.observers.iter().find(|o| o.node_id == OBSERVER_ID as u64));
        if reported.is_some_and(|o| o.fetched_index >= index) {
            return;
        }
        assert!(
            started.elapsed() < GUARD,
            "leader {leader} does not report observer {OBSERVER_ID} at index {index}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `cairn cluster status ARGS --bootstrap <bootstrap>`: stdout; panics on failure.
fn cluster_status(bootstrap: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["cluster", "status"])
        .args(args)
        .args(["--bootstrap", bootstrap, "--request-timeout-ms", "10000"])
        .output()
        .expect("run cairn cluster status");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cairn cluster status failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_broker_follows_the_metadata_log() {
    let mut nodes = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let observer = nodes[OBSERVER].bootstrap();

    // A topic created through the observer, with partitions on broker 4.
    let topic = "observed";
    create_topic(&nodes[OBSERVER], topic, 4, 2).await;
    let view = tokio::task::block_in_place(|| wait_metadata_identical(&nodes, "created"));
    let replicas_on_observer = view.0[topic]
        .values()
        .filter(|(_, replicas, _)| replicas.contains(&OBSERVER_ID))
        .count();
    assert!(
        replicas_on_observer > 0,
        "no partition of {topic} on broker {OBSERVER_ID}: {:?}",
        view.0[topic]
    );
    let written = produce(&observer, topic, 4, RECORDS_PER_PARTITION).await;
    let read = tokio::task::block_in_place(|| consume(&observer, topic, 4, written.len()));
    assert_eq!(read, written);

    // The leader reports the observer; so do DescribeQuorum and `cairn cluster status`.
    let first_leader = leader(&nodes).await;
    let commit = voter_status(&nodes[first_leader as usize - 1])
        .await
        .expect("leader status")
        .commit_index;
    wait_leader_reports_observer(&nodes, first_leader, commit).await;
    let json: String = tokio::task::block_in_place(|| cluster_status(&observer, &["--json"]))
        .split_whitespace()
        .collect();
    assert!(
        json.contains(&format!(
            r#""observers":[{{"id":{OBSERVER_ID},"applied_index":"#
        )),
        "{json}"
    );
    assert!(
        json.contains(&format!(r#""leader_id":{first_leader},"#)),
        "{json}"
    );
    let text = tokio::task::block_in_place(|| cluster_status(&nodes[0].bootstrap(), &[]));
    let observer_row = text
        .lines()
        .skip_while(|l| !l.starts_with("OBSERVER"))
        .nth(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert!(
        matches!(observer_row.as_deref(), Some([id, applied, lag])
            if *id == OBSERVER_ID.to_string() && applied.parse::<u64>().is_ok() && lag.parse::<u64>().is_ok()),
        "{text}"
    );

    // SIGKILL the observer; the cluster changes while it is down; it restarts, catches
    // up, and still serves its partitions' records.
    nodes[OBSERVER].kill9();
    create_topic(&nodes[0], "while-observer-down", 2, 2).await;
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| nodes[OBSERVER].start_again());
    tokio::task::block_in_place(|| wait_metadata_identical(&nodes, "observer restarted"));
    eprintln!(
        "observer restarted and caught up (Metadata identical to the voters') {:?} after its restart began",
        killed_at.elapsed()
    );
    let read = tokio::task::block_in_place(|| consume(&observer, topic, 4, written.len()));
    assert_eq!(read, written, "records read through the restarted observer");

    // SIGKILL the controller: the observer follows the new leader.
    let killed = leader(&nodes).await;
    nodes[killed as usize - 1].kill9();
    let after = "after-failover";
    create_topic(&nodes[OBSERVER], after, 2, 2).await;
    let new_leader = leader(&nodes).await;
    assert_ne!(new_leader, killed);
    let commit = voter_status(&nodes[new_leader as usize - 1])
        .await
        .expect("new leader status")
        .commit_index;
    wait_leader_reports_observer(&nodes, new_leader, commit).await;
    let written_after = produce(&observer, after, 2, 5).await;
    let read_after =
        tokio::task::block_in_place(|| consume(&observer, after, 2, written_after.len()));
    assert_eq!(read_after, written_after);
    let view = tokio::task::block_in_place(|| wait_metadata_identical(&nodes, "after failover"));
    assert!(view.0.contains_key(after) && view.0.contains_key("while-observer-down"));
    let json: String = tokio::task::block_in_place(|| cluster_status(&observer, &["--json"]))
        .split_whitespace()
        .collect();
    assert!(
        json.contains(&format!(r#""observers":[{{"id":{OBSERVER_ID},"#)),
        "{json}"
    );
}

/// With every voter gone, a restarted observer starts from its persisted metadata (after
/// waiting for a registration that cannot commit) and serves it: the same Metadata as
/// before the voters died, and answers for the partitions it leads (their high
/// watermark is learnt again from followers' fetches, so with the other replicas gone it
/// is not above what was produced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_observer_serves_its_persisted_metadata_without_voters() {
    let mut nodes = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let observer = nodes[OBSERVER].bootstrap();
    let topic = "kept";
    create_topic(&nodes[OBSERVER], topic, 4, 2).await;
    tokio::task::block_in_place(|| wait_metadata_identical(&nodes, "created"));
    let written = produce(&observer, topic, 4, 5).await;

    for voter in &mut nodes[..OBSERVER] {
        voter.kill9();
    }
    // Nothing can commit any more: this is the metadata the observer holds.
    let before = tokio::task::block_in_place(|| metadata(&nodes[OBSERVER])).expect("metadata");
    nodes[OBSERVER].kill9();
    tokio::task::block_in_place(|| nodes[OBSERVER].start_again());
    let after = tokio::task::block_in_place(|| {
        harness::wait_for("the restarted observer to answer Metadata", GUARD, || {
            metadata(&nodes[OBSERVER])
        })
    });
    assert_eq!(after, before);
    assert!(
        nodes[OBSERVER]
            .log()
            .contains("serving with the metadata persisted here"),
        "{}",
        nodes[OBSERVER].log()
    );
    let led: Vec<i32> = after.0[topic]
        .iter()
        .filter(|(_, (leader, _, _))| *leader == OBSERVER_ID)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        !led.is_empty(),
        "broker {OBSERVER_ID} leads none of {:?}",
        after.0[topic]
    );
    // It answers for the partitions it leads (their offsets).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &observer)
        .create()
        .expect("consumer");
    for p in &led {
        let (low, high) = tokio::task::block_in_place(|| {
            harness::wait_for(
                &format!("watermarks of {topic}-{p} from the restarted observer"),
                GUARD,
                || {
                    consumer
                        .fetch_watermarks(topic, *p, Duration::from_secs(5))
                        .ok()
                },
            )
        });
        let produced = written.iter().filter(|(q, _)| q == p).count();
        eprintln!("{topic}-{p}: watermarks ({low}, {high}), {produced} records produced");
        assert!(low == 0 && high >= 0 && high as usize <= produced);
    }
}
