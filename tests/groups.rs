//! Consumer groups end to end: the real `cairn` binary and unmodified clients — librdkafka
//! (the `rdkafka` crate and `kcat -G`) and, when installed, kafka-python — through joins,
//! rebalances (eager and cooperative), a SIGKILLed member, a restarted static member,
//! offset commits across a broker restart, and the group admin APIs.

mod harness;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Generous bound for anything that should happen "soon" (a rebalance, a session expiry).
const LIVENESS: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 6;

/// Broker flags for group tests: a short initial rebalance delay keeps the tests quick
/// while still exercising it, and fewer offsets partitions make startup cheaper.
const BROKER_FLAGS: &[&str] = &[
    "--set",
    "group.initial.rebalance.delay.ms=300",
    "--set",
    "offsets.topic.num.partitions=10",
];

async fn create_topic(broker: &BrokerProcess, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics");
    assert_eq!(results, vec![Ok(name.to_owned())]);
}

/// Produces `count` keyed records; returns their (partition, offset).
async fn produce(broker: &BrokerProcess, topic: &str, count: usize, tag: &str) -> Vec<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{tag}-key-{i}");
        let value = format!("{tag}-value-{i}");
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        deliveries.push(producer.send_result(record).expect("enqueue"));
    }
    let mut out = Vec::with_capacity(count);
    for d in deliveries {
        let d = d
            .await
            .expect("delivery future")
            .expect("acks=all delivery");
        out.push((d.partition, d.offset));
    }
    out
}

/// Counts rebalance callbacks of one consumer.
struct Counting {
    rebalances: Arc<AtomicUsize>,
}
impl ClientContext for Counting {}
impl ConsumerContext for Counting {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }
}

/// A group member: a librdkafka consumer polling on its own thread, recording what it
/// reads and its current assignment, committing after processing each record.
struct Member {
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<Vec<i32>>>,
    rebalances: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

type Seen = Arc<Mutex<BTreeSet<(i32, i64)>>>;

impl Member {
    fn start(
        broker: &BrokerProcess,
        group: &str,
        topic: &str,
        extra: &[(&str, &str)],
        seen: Seen,
    ) -> Member {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("enable.partition.eof", "false");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(Vec::new()));
        let rebalances = Arc::new(AtomicUsize::new(0));
        let (stop2, assignment2, rebalances2) =
            (stop.clone(), assignment.clone(), rebalances.clone());
        let topic = topic.to_owned();
        let thread = std::thread::spawn(move || {
            let consumer: BaseConsumer<Counting> = config
                .create_with_context(Counting {
                    rebalances: rebalances2,
                })
                .expect("consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            while !stop2.load(Ordering::SeqCst) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        seen.lock().unwrap().insert((m.partition(), m.offset()));
                        // Commit after processing: a partition that moves resumes here.
                        let _ = consumer.commit_message(&m, CommitMode::Async);
                    }
                    Some(Err(e)) => eprintln!("consumer error (retried by librdkafka): {e}"),
                    None => {}
                }
                let mut now: Vec<i32> = consumer
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                now.sort_unstable();
                *assignment2.lock().unwrap() = now;
            }
            // Dropping the consumer closes it: a dynamic member sends LeaveGroup, a static
            // one (group.instance.id) does not (KIP-345).
        });
        Member {
            stop,
            assignment,
            rebalances,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> Vec<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("consumer thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `cond` holds, or panics with `what` after [`LIVENESS`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < LIVENESS,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Whether the assignments split `0..partitions` exactly, every member getting some.
fn partitioned(assignments: &[Vec<i32>], partitions: i32) -> bool {
    let mut all: Vec<i32> = assignments.iter().flatten().copied().collect();
    all.sort_unstable();
    assignments.iter().all(|a| !a.is_empty()) && all == (0..partitions).collect::<Vec<_>>()
}

fn assignments(members: &[&Member]) -> Vec<Vec<i32>> {
    members.iter().map(|m| m.assignment()).collect()
}

/// Three members share six partitions, a fourth joins and partitions move to it, every
/// record is read at least once across the rebalances.
async fn three_then_four(assignor: &str) {
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = format!("shared-{assignor}");
    let group = format!("group-{assignor}");
    create_topic(&broker, &topic, PARTITIONS).await;
    let mut produced = produce(&broker, &topic, 600, "before").await;
    let seen: Seen = Arc::default();
    let extra = [("partition.assignment.strategy", assignor)];

    // Creating `__consumer_offsets` and loading the group's partition happen on the
    // first FindCoordinator/OffsetFetch; do them first so the timing below is the
    // rebalance itself.
    let warm: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    warm.committed_offsets(tpl, TIMEOUT).expect("OffsetFetch");
    drop(warm);

    let started = Instant::now();
    let a = Member::start(&broker, &group, &topic, &extra, seen.clone());
    let b = Member::start(&broker, &group, &topic, &extra, seen.clone());
    let c = Member::start(&broker, &group, &topic, &extra, seen.clone());
    wait_until("three members share the partitions", || {
        partitioned(&assignments(&[&a, &b, &c]), PARTITIONS)
    });
    eprintln!(
        "[{assignor}] 3 members: join to all assigned in {:?}: {:?}",
        started.elapsed(),
        assignments(&[&a, &b, &c])
    );
    if assignor == "range" {
        assert!(assignments(&[&a, &b, &c]).iter().all(|x| x.len() == 2));
    }

    let joined = Instant::now();
    let d = Member::start(&broker, &group, &topic, &extra, seen.clone());
    wait_until("the fourth member gets partitions", || {
        partitioned(&assignments(&[&a, &b, &c, &d]), PARTITIONS)
    });
    eprintln!(
        "[{assignor}] 4th member: join to rebalanced in {:?}: {:?}",
        joined.elapsed(),
        assignments(&[&a, &b, &c, &d])
    );

    produced.extend(produce(&broker, &topic, 600, "after").await);
    wait_until("every record is read at least once", || {
        let seen = seen.lock().unwrap();
        produced.iter().all(|r| seen.contains(r))
    });
    for m in [a, b, c, d] {
        m.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn range_three_members_then_a_fourth() {
    three_then_four("range").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cooperative_sticky_three_members_then_a_fourth() {
    three_then_four("cooperative-sticky").await;
}

/// `kcat -G` joins a group with two librdkafka members and consumes; killed with SIGKILL
/// (no LeaveGroup), its partitions move to the others once its session times out.
#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_member_partitions_move_after_session_timeout() {
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "killed";
    let group = "group-killed";
    create_topic(&broker, topic, PARTITIONS).await;
    let mut produced = produce(&broker, topic, 600, "k").await;
    let seen: Seen = Arc::default();
    let a = Member::start(&broker, group, topic, &[], seen.clone());
    let b = Member::start(&broker, group, topic, &[], seen.clone());

    let mut kcat = Command::new("kcat")
        .args([
            "-b",
            &broker.bootstrap(),
            "-G",
            group,
            topic,
            "-q",
            "-u",
            "-f",
            "%p %o\n",
        ])
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
        ])
        .args(["-X", "auto.offset.reset=earliest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat must be installed: run the tests with `cargo xtask test`");
    let kcat_seen: Seen = Arc::default();
    let stdout = kcat.stdout.take().unwrap();
    let kcat_seen2 = kcat_seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((p, o)) = line.split_once(' ') {
                if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
                    kcat_seen2.lock().unwrap().insert((p, o));
                }
            }
        }
    });
    // Three members: the two librdkafka consumers hold some partitions, kcat the rest.
    wait_until("kcat joins the group", || {
        let ours = assignments(&[&a, &b]);
        ours.iter().all(|x| !x.is_empty())
            && ours.iter().map(Vec::len).sum::<usize>() < PARTITIONS as usize
    });
    // The first records were read (and committed) before kcat joined; these are new.
    produced.extend(produce(&broker, topic, 600, "k2").await);
    wait_until("kcat consumes its share", || {
        let ours = assignments(&[&a, &b]);
        let kcat_partitions: BTreeSet<i32> =
            kcat_seen.lock().unwrap().iter().map(|r| r.0).collect();
        !kcat_partitions.is_empty()
            && kcat_partitions
                .iter()
                .all(|p| !ours.iter().flatten().any(|q| q == p))
    });
    let killed = Instant::now();
    kcat.kill().expect("SIGKILL kcat");
    kcat.wait().expect("reap kcat");
    let took = wait_until("the killed member's partitions move", || {
        partitioned(&assignments(&[&a, &b]), PARTITIONS)
    });
    eprintln!("partitions of the SIGKILLed member moved after {took:?} (session.timeout.ms=6000)");
    assert!(
        killed.elapsed() >= Duration::from_millis(5_000),
        "moved before the session timeout could have expired"
    );
    wait_until("every record is read at least once", || {
        let seen = seen.lock().unwrap();
        let kseen = kcat_seen.lock().unwrap();
        produced
            .iter()
            .all(|r| seen.contains(r) || kseen.contains(r))
    });
    a.stop();
    b.stop();
}

/// A static member (group.instance.id) that restarts within its session timeout gets its
/// partitions back without a rebalance: the other member sees no rebalance callback.
#[tokio::test(flavor = "multi_thread")]
async fn static_member_restart_does_not_rebalance() {
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "static";
    let group = "group-static";
    create_topic(&broker, topic, PARTITIONS).await;
    let seen: Seen = Arc::default();
    let static_a = [
        ("group.instance.id", "instance-a"),
        ("session.timeout.ms", "30000"),
    ];
    let static_b = [
        ("group.instance.id", "instance-b"),
        ("session.timeout.ms", "30000"),
    ];
    let a = Member::start(&broker, group, topic, &static_a, seen.clone());
    let b = Member::start(&broker, group, topic, &static_b, seen.clone());
    wait_until("two static members share the partitions", || {
        partitioned(&assignments(&[&a, &b]), PARTITIONS)
    });
    // Let any second rebalance (a member joining just after the first) settle.
    std::thread::sleep(Duration::from_secs(2));
    wait_until("stable", || {
        partitioned(&assignments(&[&a, &b]), PARTITIONS)
    });
    let before_a = a.rebalances.load(Ordering::SeqCst);
    let b_partitions = b.assignment();
    b.stop(); // closes without LeaveGroup (static member)
    let b2 = Member::start(&broker, group, topic, &static_b, seen.clone());
    wait_until(
        "the restarted static member has its partitions back",
        || b2.assignment() == b_partitions,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.rebalances.load(Ordering::SeqCst),
        before_a,
        "the other member saw a rebalance"
    );
    assert_eq!(b2.assignment(), b_partitions);
    // The same for the other instance: one of the two led the group, so a restarted
    // static leader (KIP-814) is covered whichever it was.
    let before_b2 = b2.rebalances.load(Ordering::SeqCst);
    let a_partitions = a.assignment();
    a.stop();
    let a2 = Member::start(&broker, group, topic, &static_a, seen.clone());
    wait_until(
        "the restarted static member has its partitions back",
        || a2.assignment() == a_partitions,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        b2.rebalances.load(Ordering::SeqCst),
        before_b2,
        "the other member saw a rebalance"
    );
    a2.stop();
    b2.stop();
}

/// Committed offsets (with metadata) survive a broker restart; a new member resumes
/// exactly after them; the group shows up in ListGroups/DescribeGroups and can be deleted
/// once empty.
#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_a_broker_restart() {
    let mut broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "durable";
    let group = "group-durable";
    create_topic(&broker, topic, 3).await;
    produce(&broker, topic, 300, "first").await;
    let consumer = |broker: &BrokerProcess| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("consumer")
    };
    let c = consumer(&broker);
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in [(0, 5), (1, 17), (2, 0)] {
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))
            .unwrap();
    }
    tpl.find_partition(topic, 1)
        .unwrap()
        .set_metadata("checkpoint-17");
    c.commit(&tpl, CommitMode::Sync)
        .expect("commit (manual assignment, generation -1)");
    let read_back = |c: &BaseConsumer| {
        let mut want = TopicPartitionList::new();
        for p in 0..3 {
            want.add_partition(topic, p);
        }
        let got = c.committed_offsets(want, TIMEOUT).expect("OffsetFetch");
        (0..3)
            .map(|p| {
                let e = got.find_partition(topic, p).unwrap();
                (e.offset(), e.metadata().to_owned())
            })
            .collect::<Vec<_>>()
    };
    let expected = vec![
        (Offset::Offset(5), String::new()),
        (Offset::Offset(17), "checkpoint-17".to_owned()),
        (Offset::Offset(0), String::new()),
    ];
    assert_eq!(read_back(&c), expected);
    drop(c);

    broker.restart();
    let c = consumer(&broker);
    assert_eq!(read_back(&c), expected, "committed offsets after a restart");

    // A subscribing member resumes from the committed offsets: the first record it reads
    // on partition 1 is offset 17.
    let seen: Seen = Arc::default();
    let m = Member::start(&broker, group, topic, &[], seen.clone());
    wait_until("the member reads from the committed offsets", || {
        let seen = seen.lock().unwrap();
        seen.iter().any(|r| r.0 == 1)
    });
    m.stop();
    let first_on_1 = seen.lock().unwrap().iter().find(|r| r.0 == 1).copied();
    assert_eq!(first_on_1.map(|r| r.1), Some(17));

    // ListGroups + DescribeGroups (librdkafka's group list).
    let groups = c
        .fetch_group_list(Some(group), TIMEOUT)
        .expect("group list");
    let g = &groups.groups()[0];
    assert_eq!(g.name(), group);
    assert_eq!(g.state(), "Empty", "the member left on close");

    // DeleteGroups.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin");
    let deleted = admin
        .delete_groups(&[group], &AdminOptions::new())
        .await
        .expect("DeleteGroups");
    assert_eq!(deleted, vec![Ok(group.to_owned())]);
    let after = read_back(&c);
    assert!(
        after.iter().all(|(o, _)| *o == Offset::Invalid),
        "offsets deleted with the group: {after:?}"
    );
}

/// `kcat -G` on its own: a balanced consumer reads every record of a topic.
#[tokio::test(flavor = "multi_thread")]
async fn kcat_balanced_consumer_reads_everything() {
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "kcat-group";
    create_topic(&broker, topic, 3).await;
    produce(&broker, topic, 90, "kc").await;
    let mut kcat = Command::new("kcat")
        .args([
            "-b",
            &broker.bootstrap(),
            "-G",
            "kcat-group",
            topic,
            "-q",
            "-u",
            "-f",
            "%p %o\n",
        ])
        .args(["-X", "auto.offset.reset=earliest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat must be installed: run the tests with `cargo xtask test`");
    let stdout = kcat.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = BTreeSet::new();
    let started = Instant::now();
    while lines.len() < 90 {
        assert!(
            started.elapsed() < LIVENESS,
            "kcat -G read only {} records",
            lines.len()
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.insert(line);
        }
    }
    kcat.kill().expect("stop kcat");
    let _ = kcat.wait();
}

/// OffsetCommit throughput of one group: synchronous commits of one partition in a loop
/// (each answered after its fsync), then asynchronous commits with many in flight.
/// Prints the rates; asserts only that commits succeed.
#[tokio::test(flavor = "multi_thread")]
async fn offset_commit_throughput() {
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "commits";
    create_topic(&broker, topic, 1).await;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "group-commits")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let commit = |offset: i64, mode: CommitMode| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap();
        c.commit(&tpl, mode)
    };
    commit(0, CommitMode::Sync).expect("first commit");
    let window = Duration::from_secs(2);
    let started = Instant::now();
    let mut n = 0i64;
    while started.elapsed() < window {
        n += 1;
        commit(n, CommitMode::Sync).expect("sync commit");
    }
    let sync_rate = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let async_count = 5_000;
    for i in 0..async_count {
        commit(n + 1 + i, CommitMode::Async).expect("async commit");
    }
    let last = n + async_count;
    let mut want = TopicPartitionList::new();
    want.add_partition(topic, 0);
    wait_until("the last async commit is visible", || {
        let _ = c.poll(Duration::from_millis(10));
        c.committed_offsets(want.clone(), TIMEOUT)
            .map(|t| t.find_partition(topic, 0).unwrap().offset() == Offset::Offset(last))
            .unwrap_or(false)
    });
    let async_rate = async_count as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "OffsetCommit throughput, one group, one partition: {sync_rate:.0}/s synchronous (one in flight), {async_rate:.0}/s asynchronous (pipelined)"
    );
}

/// kafka-python implements the group protocol independently of librdkafka. Skipped (with a
/// note) when it is not installed.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_python_group_consumer_and_admin() {
    let probe = Command::new("python3")
        .args(["-c", "import kafka"])
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        eprintln!("kafka-python is not installed; skipping");
        return;
    }
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "py-group";
    create_topic(&broker, topic, 3).await;
    produce(&broker, topic, 60, "py").await;
    let script = r#"
import sys
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata
bootstrap, topic = sys.argv[1], sys.argv[2]
def attempt(f):
    try:
        return repr(f())
    except Exception as e:
        return "error: " + repr(e)
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="py-group",
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  session_timeout_ms=6000, heartbeat_interval_ms=500,
                  consumer_timeout_ms=30000)
seen = 0
for m in c:
    seen += 1
    if seen == 60:
        break
out = {"seen": seen, "assigned": sorted(tp.partition for tp in c.assignment())}
tp0 = TopicPartition(topic, 0)
c.commit({tp0: OffsetAndMetadata(7, "py-meta", -1)})
out["committed"] = c.committed(tp0)
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
out["list_stable"] = attempt(lambda: admin.list_groups(states_filter=["Stable"]))
out["describe"] = attempt(lambda: admin.describe_groups(["py-group"]))
out["offsets"] = attempt(lambda: admin.list_group_offsets({"py-group": None}))
out["delete_offsets_subscribed"] = attempt(lambda: admin.delete_group_offsets("py-group", [tp0]))
c.close()
out["describe_after"] = attempt(lambda: admin.describe_groups(["py-group"]))
out["delete_offsets_empty"] = attempt(lambda: admin.delete_group_offsets("py-group", [tp0]))
out["delete_groups"] = attempt(lambda: admin.delete_groups(["py-group"]))
out["list_after"] = attempt(lambda: admin.list_groups())
for k, v in out.items():
    print(k + "=" + str(v).replace("\n", " "))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &broker.bootstrap(), topic])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka-python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("kafka-python: {stdout}");
    let out: std::collections::BTreeMap<&str, &str> =
        stdout.lines().filter_map(|l| l.split_once('=')).collect();
    let field = |k: &str| out.get(k).copied().unwrap_or_default();
    assert_eq!(field("seen"), "60");
    assert_eq!(field("assigned"), "[0, 1, 2]");
    assert_eq!(field("committed"), "7");
    assert!(
        field("list_stable").contains("py-group"),
        "ListGroups (Stable): {stdout}"
    );
    assert!(
        field("describe").contains("Stable"),
        "DescribeGroups: {stdout}"
    );
    assert!(
        field("offsets").contains("py-meta"),
        "OffsetFetch v8: {stdout}"
    );
    assert!(
        field("delete_offsets_subscribed").contains("GroupSubscribedToTopic"),
        "OffsetDelete of a consumed topic: {stdout}"
    );
    assert!(
        field("describe_after").contains("Empty"),
        "after close: {stdout}"
    );
    assert!(
        !field("delete_offsets_empty").starts_with("error"),
        "OffsetDelete: {stdout}"
    );
    assert!(
        !field("delete_groups").starts_with("error"),
        "DeleteGroups: {stdout}"
    );
    assert!(
        !field("list_after").contains("py-group"),
        "deleted: {stdout}"
    );
}

/// A broker restart in the middle of a rebalance (a third member has just asked to join):
/// the group reloads from `__consumer_offsets`, the three members end up sharing the
/// partitions, and every record, before and after the restart, is read at least once.
#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_during_a_rebalance() {
    let mut broker = BrokerProcess::start_with(BROKER_FLAGS);
    let topic = "restart-rebalance";
    let group = "group-restart";
    create_topic(&broker, topic, PARTITIONS).await;
    let mut produced = produce(&broker, topic, 300, "before").await;
    let seen: Seen = Arc::default();
    let a = Member::start(&broker, group, topic, &[], seen.clone());
    let b = Member::start(&broker, group, topic, &[], seen.clone());
    wait_until("two members share the partitions", || {
        partitioned(&assignments(&[&a, &b]), PARTITIONS)
    });
    let c = Member::start(&broker, group, topic, &[], seen.clone());
    std::thread::sleep(Duration::from_millis(300));
    broker.restart();
    produced.extend(produce(&broker, topic, 300, "after").await);
    let took = wait_until(
        "three members share the partitions after the restart",
        || partitioned(&assignments(&[&a, &b, &c]), PARTITIONS),
    );
    eprintln!("group settled {took:?} after the broker restart");
    wait_until("every record is read at least once", || {
        let seen = seen.lock().unwrap();
        produced.iter().all(|r| seen.contains(r))
    });
    for m in [a, b, c] {
        m.stop();
    }
}
