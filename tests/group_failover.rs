//! Group coordinator failover across three `cairn serve` processes, judged with a real
//! client (librdkafka through the `rdkafka` crate).
//!
//! - `committed_offsets_survive_coordinator_kill`: a consumer of group `g` commits offsets
//!   (synchronously) on a topic with replication factor 3; the coordinator of `g` — the
//!   leader of `g`'s `__consumer_offsets` partition — is SIGKILLed; a new consumer of `g`
//!   must read back exactly the committed offsets from the new coordinator (another broker,
//!   which loaded the partition from its replica), resume consuming from them, and commit
//!   again there.
//!
//! ## What this test assumes about the broker
//! - `--set` accepts `broker.session.timeout.ms`, `broker.heartbeat.interval.ms`,
//!   `group.initial.rebalance.delay.ms` and `offsets.topic.num.partitions`.
//! - `__consumer_offsets` is created by the first FindCoordinator with replication factor
//!   min(3, live brokers), and Metadata for it reports each partition's leader and ISR.
//! - The coordinator of a group is the leader of partition `abs(hash(group)) % N` of
//!   `__consumer_offsets` (Kafka's placement), and the broker logs
//!   `loaded group coordinator partition` with `partition=<index>` when it loads one.

mod harness;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use harness::BrokerProcess;
use harness::{block_on, bootstrap_of};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const GROUP: &str = "g";
const OFFSETS_TOPIC: &str = "__consumer_offsets";
const PARTITIONS: i32 = 3;
const RECORDS_PER_PARTITION: i64 = 20;
/// Failure guard for anything the cluster should do "soon"; never a performance assert.
const GUARD: Duration = Duration::from_secs(90);

/// [`harness::wait_for`] with this file's [`GUARD`].
fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    harness::wait_for(what, GUARD, f)
}

/// Broker settings every node gets: fast fencing of a dead broker, a short initial
/// rebalance delay, and fewer offsets partitions (cheaper startup with three replicas).
const BROKER_SETTINGS: &[&str] = &[
    "--set",
    "broker.session.timeout.ms=3000",
    "--set",
    "broker.heartbeat.interval.ms=500",
    "--set",
    "group.initial.rebalance.delay.ms=300",
    "--set",
    "offsets.topic.num.partitions=10",
];

/// Java's `String.hashCode` and Kafka's `Utils.abs(hash) % n`: the group's partition.
fn partition_for(group: &str, n: i32) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % n
}

/// The text of a log without its terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn index_of(brokers: &[BrokerProcess], node: i32) -> usize {
    brokers
        .iter()
        .position(|b| b.node_id() == Some(node))
        .unwrap_or_else(|| panic!("no broker with node id {node}"))
}

/// Creates `orders` (replication factor 3), retrying until the cluster accepts it.
fn create_topic(bootstrap: &str) {
    let mut attempts = 0;
    wait_for("creating the topic with replication factor 3", || {
        attempts += 1;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client");
        let result = block_on(admin.create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ));
        match result.as_deref() {
            Ok([Ok(_)]) => Some(()),
            // An earlier attempt may have been committed after the client gave up on it.
            Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) if attempts > 1 => Some(()),
            other => {
                eprintln!("CreateTopics: {other:?} (retrying)");
                None
            }
        }
    })
}

/// `(leader, replicas, isr)` of every partition of `topic`, or `None` while the metadata
/// is unavailable or incomplete.
type PartitionStates = BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)>;

fn partitions(bootstrap: &str, topic: &str) -> Option<PartitionStates> {
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
    Some(
        t.partitions()
            .iter()
            .map(|p| {
                (
                    p.id(),
                    (p.leader(), p.replicas().to_vec(), p.isr().to_vec()),
                )
            })
            .collect(),
    )
}

fn produce(bootstrap: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    block_on(async {
        let mut deliveries = Vec::new();
        for p in 0..PARTITIONS {
            for i in 0..RECORDS_PER_PARTITION {
                let value = format!("p{p}-r{i}");
                let record = FutureRecord::<(), _>::to(TOPIC)
                    .partition(p)
                    .payload(&value);
                deliveries.push(producer.send_result(record).expect("enqueue"));
            }
        }
        for d in deliveries {
            d.await
                .expect("delivery future")
                .expect("acks=all delivery");
        }
    });
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// Polls a subscribed consumer until it has read a record from every partition; returns
/// the offset of the first record read on each.
fn first_offsets(c: &BaseConsumer) -> BTreeMap<i32, i64> {
    let mut first = BTreeMap::new();
    let started = Instant::now();
    while first.len() < PARTITIONS as usize {
        assert!(
            started.elapsed() < GUARD,
            "the consumer read from {first:?} only within {GUARD:?}"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                first.entry(m.partition()).or_insert(m.offset());
            }
            Some(Err(e)) => eprintln!("consumer error (retried by librdkafka): {e}"),
            None => {}
        }
    }
    first
}

/// The committed offsets of every partition of `orders`, retried until the coordinator
/// answers.
fn committed(c: &BaseConsumer) -> BTreeMap<i32, Offset> {
    let mut want = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        want.add_partition(TOPIC, p);
    }
    wait_for("OffsetFetch from the coordinator", || {
        match c.committed_offsets(want.clone(), Duration::from_secs(10)) {
            Ok(got) => Some(
                (0..PARTITIONS)
                    .map(|p| (p, got.find_partition(TOPIC, p).unwrap().offset()))
                    .collect(),
            ),
            Err(e) => {
                eprintln!("OffsetFetch: {e} (retrying)");
                None
            }
        }
    })
}

/// Kafka's NOT_COORDINATOR error code.
const NOT_COORDINATOR: i16 = 16;

/// Sends an OffsetFetch (v7, all partitions) for `group` straight to `addr`; returns the
/// response's error code.
fn raw_offset_fetch(addr: SocketAddr, group: &str) -> i16 {
    let version = 7;
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(None);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::OffsetFetch as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("group-failover-test")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, OffsetFetchRequest::header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());

    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&buf).expect("send OffsetFetch");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("OffsetFetch response");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("OffsetFetch response");
    let mut frame = Bytes::from(body);
    type Response = <OffsetFetchRequest as Request>::Response;
    let header = ResponseHeader::decode(&mut frame, Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 9);
    Response::decode(&mut frame, version).unwrap().error_code
}

fn commit(c: &BaseConsumer, offsets: &BTreeMap<i32, i64>) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync)
        .expect("synchronous commit");
}

fn as_offsets(offsets: &BTreeMap<i32, i64>) -> BTreeMap<i32, Offset> {
    offsets
        .iter()
        .map(|(p, o)| (*p, Offset::Offset(*o)))
        .collect()
}

#[test]
fn committed_offsets_survive_coordinator_kill() {
    let mut brokers = BrokerProcess::start_quorum_with(3, BROKER_SETTINGS);
    let bootstrap = bootstrap_of(&brokers);
    create_topic(&bootstrap);
    produce(&bootstrap);

    // A member of `g` reads from every partition, then commits distinct offsets.
    let c = consumer(&bootstrap);
    c.subscribe(&[TOPIC]).expect("subscribe");
    let first = first_offsets(&c);
    assert!(
        first.values().all(|o| *o == 0),
        "a new group starts at the beginning: {first:?}"
    );
    // The coordinator: the leader of g's partition of `__consumer_offsets`, which must be
    // replicated on all three brokers with its ISR full (so the kill loses nothing).
    let (index, coordinator) = wait_for("__consumer_offsets with three in-sync replicas", || {
        let ps = partitions(&bootstrap, OFFSETS_TOPIC)?;
        let index = partition_for(GROUP, ps.len() as i32);
        let (leader, replicas, isr) = ps.get(&index)?.clone();
        assert_eq!(
            replicas.len(),
            3,
            "__consumer_offsets-{index} should have replication factor 3: {replicas:?}"
        );
        (leader > 0 && isr.len() == 3).then_some((index, leader))
    });
    eprintln!("coordinator of {GROUP}: broker {coordinator} (__consumer_offsets-{index})");
    // The other brokers host replicas of that partition but are not its coordinator: they
    // refuse (and so hold no state of `g` that could go stale).
    for b in brokers.iter().filter(|b| b.node_id() != Some(coordinator)) {
        assert_eq!(
            raw_offset_fetch(b.addr, GROUP),
            NOT_COORDINATOR,
            "broker {:?} is not the coordinator of {GROUP}",
            b.node_id()
        );
    }

    let want: BTreeMap<i32, i64> = [(0, 7), (1, 13), (2, 3)].into();
    commit(&c, &want);
    assert_eq!(
        committed(&c),
        as_offsets(&want),
        "read back before the kill"
    );

    // The old member is gone before the kill (it leaves the group on close).
    drop(c);

    let killed = index_of(&brokers, coordinator);
    brokers[killed].kill9();
    let survivors = bootstrap_of(&brokers);
    let new_coordinator = wait_for("a new leader of g's offsets partition", || {
        let (leader, _, _) = partitions(&survivors, OFFSETS_TOPIC)?.get(&index)?.clone();
        (leader > 0 && leader != coordinator).then_some(leader)
    });
    eprintln!("new coordinator of {GROUP}: broker {new_coordinator}");

    // A new member of `g` reads back exactly the committed offsets, from the new
    // coordinator, and resumes consuming from them.
    let c = consumer(&survivors);
    assert_eq!(committed(&c), as_offsets(&want), "read back after the kill");
    let log = strip_ansi(&brokers[index_of(&brokers, new_coordinator)].log());
    assert!(
        log.lines()
            .any(|l| l.contains("loaded group coordinator partition")
                && l.contains(&format!("partition={index} "))),
        "broker {new_coordinator} never loaded __consumer_offsets-{index}"
    );
    c.subscribe(&[TOPIC]).expect("subscribe");
    let resumed = first_offsets(&c);
    assert_eq!(
        resumed, want,
        "the new member resumes from the committed offsets"
    );

    // The new coordinator takes commits too.
    let again: BTreeMap<i32, i64> = [(0, 11), (1, 19), (2, 5)].into();
    commit(&c, &again);
    assert_eq!(
        committed(&c),
        as_offsets(&again),
        "committed on the new coordinator"
    );
    drop(c);
}
