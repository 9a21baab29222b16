//! Transactions (exactly-once), judged with librdkafka through the `rdkafka` crate.
//!
//! - `committed_and_aborted_visibility`: a transactional producer commits, aborts and
//!   commits again; a `read_committed` consumer sees exactly the committed records (and
//!   nothing of a transaction still open), a `read_uncommitted` one sees everything.
//! - `zombie_producer_is_fenced`: a second producer with the same `transactional.id`
//!   fences the first, whose commit then fails; the first's open transaction is aborted.
//! - `timed_out_transaction_is_aborted`: a transaction left open past its timeout is
//!   aborted by the coordinator; read_committed consumers move past it and never see it.
//! - `consume_transform_produce_exactly_once_across_broker_kills`: on three brokers, a
//!   consume-transform-produce loop (read_committed consumer in a group, transactional
//!   producer committing the consumed offsets with `send_offsets_to_transaction`) copies
//!   an input topic to an output topic while brokers are SIGKILLed and restarted; the
//!   read_committed output holds every input record exactly once.

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use harness::{BrokerProcess, block_on, bootstrap_of, wait_for};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Longest any single wait in these tests may take before the test fails.
const GUARD: Duration = Duration::from_secs(60);
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `name`, retrying while fewer brokers than `replication` have registered
/// (INVALID_REPLICATION_FACTOR right after a cluster starts).
fn create_topic(bootstrap: &str, name: &str, partitions: i32, replication: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let mut attempts = 0;
    wait_for(&format!("creating {name}"), GUARD, || {
        attempts += 1;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication)).set(
            "min.insync.replicas",
            if replication > 1 { "2" } else { "1" },
        );
        let results = block_on(admin.create_topics(&[topic], &AdminOptions::new()))
            .expect("CreateTopics request");
        match results.first() {
            Some(Ok(_)) => Some(()),
            // An earlier attempt may have been committed after the client gave up on it.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if attempts > 1 => Some(()),
            Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor))) => {
                thread::sleep(Duration::from_millis(300));
                None
            }
            other => panic!("creating {name}: {other:?}"),
        }
    });
}

fn txn_producer(bootstrap: &str, transactional_id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let producer: BaseProducer = config.create().expect("transactional producer");
    producer
        .init_transactions(OP_TIMEOUT)
        .expect("init_transactions");
    producer
}

/// Sends `values` (keyed by value) to `topic` inside the producer's open transaction and
/// waits until they are delivered.
fn send_all(producer: &BaseProducer, topic: &str, values: &[String]) {
    for v in values {
        loop {
            match producer.send(BaseRecord::to(topic).key(v.as_str()).payload(v.as_str())) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
    }
    producer.flush(OP_TIMEOUT).expect("flush");
}

fn consumer(bootstrap: &str, isolation: &str, group: Option<&str>) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("group.id", group.unwrap_or("unused-manual-assignment"));
    config.create().expect("consumer")
}

/// Reads every partition of `topic` from the beginning with `isolation`, stopping once
/// nothing new arrived for `quiet`. Returns the values read per partition, in order.
fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    quiet: Duration,
) -> BTreeMap<i32, Vec<String>> {
    let c = consumer(bootstrap, isolation, None);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign offset");
    }
    c.assign(&tpl).expect("assign");
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                out.entry(m.partition()).or_default().push(v);
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}

/// Whether group `ctp` has committed offsets at the end of every partition of `in` (3
/// partitions), as a read_committed consumer's OffsetFetch (require_stable) sees them.
fn input_drained(bootstrap: &str) -> bool {
    let c = consumer(bootstrap, "read_committed", Some("ctp"));
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("in", p);
    }
    let Ok(committed) = c.committed_offsets(tpl, OP_TIMEOUT) else {
        return false;
    };
    (0..3).all(|p| {
        let end = c
            .fetch_watermarks("in", p, OP_TIMEOUT)
            .map(|(_, high)| high);
        let at = committed.find_partition("in", p).map(|e| e.offset());
        matches!((at, end), (Some(Offset::Offset(at)), Ok(end)) if at >= end)
    })
}

fn values(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn sorted(map: &BTreeMap<i32, Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = map.values().flatten().cloned().collect();
    all.sort();
    all
}

#[test]
fn committed_and_aborted_visibility() {
    let broker = BrokerProcess::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "tx", 2, 1);

    let producer = txn_producer(&bootstrap, "visibility", &[]);
    let committed_1 = values("c1", 0..20);
    let aborted = values("a", 0..20);
    let committed_2 = values("c2", 0..20);
    producer.begin_transaction().expect("begin 1");
    send_all(&producer, "tx", &committed_1);
    producer.commit_transaction(OP_TIMEOUT).expect("commit 1");
    producer.begin_transaction().expect("begin 2");
    send_all(&producer, "tx", &aborted);
    producer.abort_transaction(OP_TIMEOUT).expect("abort");
    producer.begin_transaction().expect("begin 3");
    send_all(&producer, "tx", &committed_2);
    producer.commit_transaction(OP_TIMEOUT).expect("commit 3");

    // A fourth transaction stays open while the consumers read: read_committed stops at
    // its first record (the last stable offset).
    let open = values("open", 0..10);
    producer.begin_transaction().expect("begin 4");
    send_all(&producer, "tx", &open);

    let quiet = Duration::from_secs(3);
    let committed = read_topic(&bootstrap, "tx", 2, "read_committed", quiet);
    let mut expected: Vec<String> = committed_1.iter().chain(&committed_2).cloned().collect();
    expected.sort();
    assert_eq!(
        sorted(&committed),
        expected,
        "read_committed must see exactly the committed transactions"
    );
    let uncommitted = read_topic(&bootstrap, "tx", 2, "read_uncommitted", quiet);
    let mut everything: Vec<String> = committed_1
        .iter()
        .chain(&aborted)
        .chain(&committed_2)
        .chain(&open)
        .cloned()
        .collect();
    everything.sort();
    assert_eq!(
        sorted(&uncommitted),
        everything,
        "read_uncommitted sees every record, aborted and open ones included"
    );

    producer.commit_transaction(OP_TIMEOUT).expect("commit 4");
    let committed = read_topic(&bootstrap, "tx", 2, "read_committed", quiet);
    expected.extend(open.iter().cloned());
    expected.sort();
    assert_eq!(
        sorted(&committed),
        expected,
        "after the fourth commit read_committed sees it too"
    );
    // Per partition, committed records keep the order they were sent in.
    for (p, vs) in &committed {
        let positions: HashMap<&String, usize> =
            expected.iter().enumerate().map(|(i, v)| (v, i)).collect();
        let mut last_by_prefix: HashMap<&str, u32> = HashMap::new();
        for v in vs {
            assert!(positions.contains_key(v));
            let (prefix, n) = v.rsplit_once('-').expect("value format");
            let n: u32 = n.parse().expect("number");
            if let Some(prev) = last_by_prefix.insert(prefix, n) {
                assert!(
                    prev < n,
                    "partition {p}: {prefix}-{n} after {prefix}-{prev}"
                );
            }
        }
    }
}

#[test]
fn zombie_producer_is_fenced() {
    let broker = BrokerProcess::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "zombie", 1, 1);

    let first = txn_producer(&bootstrap, "same-id", &[]);
    first.begin_transaction().expect("begin");
    send_all(&first, "zombie", &values("zombie", 0..5));
    // The second producer's init_transactions aborts the first's open transaction and
    // bumps the epoch.
    let second = txn_producer(&bootstrap, "same-id", &[]);
    let err = first
        .commit_transaction(OP_TIMEOUT)
        .expect_err("the zombie's commit must fail");
    eprintln!("zombie commit: {err}");
    match &err {
        KafkaError::Transaction(e) => assert!(
            e.is_fatal() || e.txn_requires_abort(),
            "fencing is fatal or abortable for the zombie: {e}"
        ),
        other => panic!("unexpected error kind: {other}"),
    }
    second.begin_transaction().expect("begin");
    send_all(&second, "zombie", &values("live", 0..5));
    second.commit_transaction(OP_TIMEOUT).expect("commit");

    let read = read_topic(
        &bootstrap,
        "zombie",
        1,
        "read_committed",
        Duration::from_secs(3),
    );
    assert_eq!(
        sorted(&read),
        values("live", 0..5),
        "only the live producer's transaction is visible"
    );
}

#[test]
fn timed_out_transaction_is_aborted() {
    let broker = BrokerProcess::start_with(&[
        "--set",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "timeout", 1, 1);

    let stuck = txn_producer(
        &bootstrap,
        "stuck",
        &[
            ("transaction.timeout.ms", "2000"),
            ("message.timeout.ms", "2000"),
        ],
    );
    stuck.begin_transaction().expect("begin");
    send_all(&stuck, "timeout", &values("stuck", 0..5));
    // Records after the stuck transaction, committed by another producer.
    let other = txn_producer(&bootstrap, "other", &[]);
    other.begin_transaction().expect("begin");
    send_all(&other, "timeout", &values("after", 0..5));
    other.commit_transaction(OP_TIMEOUT).expect("commit");

    // The coordinator aborts the stuck transaction after its timeout; then the committed
    // records behind it become readable.
    let c = consumer(&bootstrap, "read_committed", None);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("timeout", 0, Offset::Beginning)
        .expect("offset");
    c.assign(&tpl).expect("assign");
    let mut seen = Vec::new();
    wait_for(
        "the records behind the timed-out transaction",
        GUARD,
        || {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            }
            (seen.len() >= 5).then_some(())
        },
    );
    seen.sort();
    assert_eq!(seen, values("after", 0..5), "the stuck records never show");
    let err = stuck
        .commit_transaction(OP_TIMEOUT)
        .expect_err("the timed-out producer was fenced");
    eprintln!("timed-out producer's commit: {err}");
}

/// The consume-transform-produce loop of one worker: read_committed consumer in group
/// `ctp`, transactional producer; each polled batch is written to `out` and its offsets
/// committed in the same transaction. Returns when `stop` says so.
struct Worker {
    consumer: BaseConsumer,
    producer: BaseProducer,
}

impl Worker {
    fn new(bootstrap: &str) -> Worker {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("group.id", "ctp")
            // An abandoned (stuck) worker's member leaves the group within seconds, so
            // its replacement's rebalance does not wait for it.
            .set("session.timeout.ms", "6000")
            .set("max.poll.interval.ms", "15000")
            .create()
            .expect("consumer");
        consumer.subscribe(&["in"]).expect("subscribe");
        let producer = txn_producer(
            bootstrap,
            "ctp-worker",
            &[
                ("transaction.timeout.ms", "20000"),
                ("message.timeout.ms", "20000"),
            ],
        );
        Worker { consumer, producer }
    }

    /// One transaction: poll up to 100 records, write them, commit them with their
    /// offsets. Ok(records copied) or the error that ended the transaction.
    fn step(&self) -> Result<usize, KafkaError> {
        let mut batch = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        while batch.len() < 100 && Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    m.payload().unwrap_or_default().to_vec(),
                )),
                // Fetch errors (a killed broker) are librdkafka's reports; it retries.
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        self.producer.begin_transaction()?;
        for (_, _, payload) in &batch {
            let v = format!("copied:{}", String::from_utf8_lossy(payload));
            loop {
                match self
                    .producer
                    .send(BaseRecord::<(), str>::to("out").payload(v.as_str()))
                {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o, _) in &batch {
            next.insert(*p, o + 1);
        }
        for (p, o) in next {
            offsets
                .add_partition_offset("in", p, Offset::Offset(o))
                .expect("offset");
        }
        let metadata = self
            .consumer
            .group_metadata()
            .expect("consumer group metadata");
        self.producer
            .send_offsets_to_transaction(&offsets, &metadata, OP_TIMEOUT)?;
        self.producer.commit_transaction(OP_TIMEOUT)?;
        Ok(batch.len())
    }

    /// After a failed transaction: abort it and rewind the consumer to the committed
    /// offsets, so the batch is consumed again.
    fn recover(&self) -> Result<(), KafkaError> {
        self.producer.abort_transaction(OP_TIMEOUT)?;
        let committed = self.consumer.committed(OP_TIMEOUT)?;
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            self.consumer
                .seek(e.topic(), e.partition(), offset, OP_TIMEOUT)?;
        }
        Ok(())
    }
}

#[test]
fn consume_transform_produce_exactly_once_across_broker_kills() {
    let mut brokers = BrokerProcess::start_quorum_with(
        3,
        &[
            "--set",
            "broker.session.timeout.ms=3000",
            "--set",
            "broker.heartbeat.interval.ms=500",
            "--set",
            "transaction.state.log.num.partitions=3",
            "--set",
            "offsets.topic.num.partitions=3",
        ],
    );
    let bootstrap = bootstrap_of(&brokers);
    let _watchdog = watchdog(&brokers, Duration::from_secs(420));
    create_topic(&bootstrap, "in", 3, 3);
    create_topic(&bootstrap, "out", 3, 3);
    // The input arrives during the whole kill phase, from an idempotent producer.
    let stop_input = Arc::new(AtomicBool::new(false));
    let mut input = Some({
        let bootstrap = bootstrap.clone();
        let stop = stop_input.clone();
        thread::spawn(move || {
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .set("message.timeout.ms", "120000")
                .create()
                .expect("input producer");
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let v = format!("in-{i}");
                    if p.send(BaseRecord::<(), str>::to("in").payload(v.as_str()))
                        .is_ok()
                    {
                        i += 1;
                    }
                }
                p.poll(Duration::from_millis(100));
            }
            p.flush(Duration::from_secs(120)).expect("input flush");
            i
        })
    });
    // How many records the input producer delivered, once it has stopped.
    let mut sent: Option<u32> = None;

    let mut worker = Arc::new(Worker::new(&bootstrap));
    let mut copied = 0usize;
    let mut kills = 0;
    let started = Instant::now();
    let mut last_kill = Instant::now();
    let mut killed: Option<usize> = None;
    let mut failures = 0;
    let mut stuck = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the loop did not drain its input in 300 s: {copied} of {sent:?} records copied"
        );
        if input.as_ref().is_some_and(|h| h.is_finished()) {
            sent = Some(input.take().unwrap().join().expect("input thread"));
        }
        // Kill a broker every 8 s and restart it 4 s later; three kills in all, then the
        // input stops.
        if killed.is_none() && kills < 3 && last_kill.elapsed() > Duration::from_secs(8) {
            let i = kills % brokers.len();
            let at = started.elapsed().as_secs_f64();
            eprintln!("[{at:.1}s] SIGKILL broker {} after {copied} copied", i + 1);
            brokers[i].kill9();
            killed = Some(i);
            kills += 1;
            last_kill = Instant::now();
        }
        if let Some(i) = killed
            && last_kill.elapsed() > Duration::from_secs(4)
        {
            brokers[i].start_again();
            let at = started.elapsed().as_secs_f64();
            eprintln!("[{at:.1}s] broker {} restarted", i + 1);
            killed = None;
            if kills == 3 {
                stop_input.store(true, Ordering::Relaxed);
            }
        }
        // Each step runs on its own thread: librdkafka's send_offsets_to_transaction can
        // block forever when the transaction coordinator moves while it is in flight (its
        // TxnOffsetCommit/AddOffsetsToTxn handlers return on __OUTDATED without answering
        // the waiting call). Like a supervisor would, the test abandons a worker stuck for
        // longer than any of its timeouts and starts a new one with the same
        // transactional.id, which fences the stuck producer and aborts its transaction.
        let (tx, rx) = std::sync::mpsc::channel();
        let stepping = worker.clone();
        thread::spawn(move || {
            let _ = tx.send(stepping.step());
        });
        let Ok(result) = rx.recv_timeout(OP_TIMEOUT * 3) else {
            let at = started.elapsed().as_secs_f64();
            eprintln!("[{at:.1}s] worker stuck in a librdkafka call; replacing it");
            stuck += 1;
            std::mem::forget(worker);
            worker = Arc::new(Worker::new(&bootstrap));
            continue;
        };
        match result {
            Ok(0) => {
                // Drained once the input has stopped and the group's committed offsets
                // (stable: no transactional commit pending) reach the end of every input
                // partition. Not a count of empty polls: when the last kill takes the
                // controller and the coordinators with it, the consumer loses its session
                // and rejoins, and gets nothing for longer than a few polls. Not the
                // count of records copied either: a commit the client reported failed
                // may still have committed.
                if sent.is_some() && input_drained(&bootstrap) {
                    break;
                }
            }
            Ok(n) => {
                copied += n;
            }
            Err(e) => {
                failures += 1;
                let at = started.elapsed().as_secs_f64();
                eprintln!("[{at:.1}s] transaction failed ({e}); aborting it");
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                let recovered = if fatal { Err(e) } else { worker.recover() };
                if let Err(e) = recovered {
                    let at = started.elapsed().as_secs_f64();
                    eprintln!("[{at:.1}s] abort failed ({e}); a new worker replaces this one");
                    drop(worker);
                    worker = Arc::new(Worker::new(&bootstrap));
                    let at = started.elapsed().as_secs_f64();
                    eprintln!("[{at:.1}s] new worker ready");
                }
            }
        }
    }
    let sent = sent.expect("the input producer stopped before the loop drained it");
    eprintln!(
        "input: {sent} records sent; copied {copied} in committed transactions; {kills} kills, {failures} failed transactions, {stuck} stuck workers replaced"
    );
    let input_records = read_topic(
        &bootstrap,
        "in",
        3,
        "read_uncommitted",
        Duration::from_secs(5),
    );
    let expected: Vec<String> = sorted(&input_records)
        .into_iter()
        .map(|v| format!("copied:{v}"))
        .collect();
    let out = read_topic(
        &bootstrap,
        "out",
        3,
        "read_committed",
        Duration::from_secs(5),
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in out.values().flatten() {
        *counts.entry(v.clone()).or_default() += 1;
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|v| !counts.contains_key(*v))
        .collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let foreign: Vec<&String> = counts
        .keys()
        .filter(|v| expected.binary_search(v).is_err())
        .collect();
    eprintln!(
        "output: {} distinct of {} input records, {} missing, {} duplicated, {} not from the input",
        counts.len(),
        expected.len(),
        missing.len(),
        duplicated.len(),
        foreign.len()
    );
    assert!(
        expected.len() > 1000,
        "too little input to judge: {}",
        expected.len()
    );
    assert!(
        duplicated.is_empty(),
        "records copied more than once: {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
    assert!(
        missing.is_empty(),
        "input records never copied: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(foreign.is_empty(), "unexpected output: {foreign:?}");
}

/// A client call that never returns (librdkafka has been seen to block in
/// `send_offsets_to_transaction` past its timeout, once in about a dozen runs of the
/// consume-transform-produce test) would hang the suite: after `limit` the watchdog
/// SIGKILLs the test's brokers and ends the process with a failure.
fn watchdog(brokers: &[BrokerProcess], limit: Duration) -> Watchdog {
    let dirs: Vec<String> = brokers
        .iter()
        .map(|b| b.data_dir.display().to_string())
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let finished = done.clone();
    thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < limit {
            if finished.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(500));
        }
        eprintln!("watchdog: the test is still running after {limit:?}; killing its brokers");
        for dir in &dirs {
            let _ = std::process::Command::new("pkill")
                .args(["-9", "-f", dir])
                .status();
        }
        std::process::exit(101);
    });
    Watchdog(done)
}

/// Disarms the watchdog when the test ends (passing or panicking).
struct Watchdog(Arc<AtomicBool>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The leader of `topic`-`partition` by Metadata, once it has one.
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    wait_for(&format!("a leader of {topic}-{partition}"), GUARD, || {
        let metadata = client
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let t = metadata.topics().iter().find(|t| t.name() == topic)?;
        t.partitions()
            .iter()
            .find(|p| p.id() == partition && p.error().is_none())
            .map(|p| p.leader())
            .filter(|l| *l > 0)
    })
}

/// A coordinator SIGKILLed right after it answered EndTxn: the outcome was durable
/// (PrepareCommit on the `__transaction_state` ISR) before the answer, so the new
/// coordinator loads it and sends the markers the dead one may not have sent; the
/// committed records become visible to read_committed consumers, and the producer's next
/// InitProducerId is answered by the new coordinator. Three rounds, each killing the
/// coordinator of that moment; the log says in how many the markers were resumed.
#[test]
fn coordinator_killed_after_commit_finishes_the_transaction() {
    let mut brokers = BrokerProcess::start_quorum_with(
        3,
        &[
            "--set",
            "broker.session.timeout.ms=3000",
            "--set",
            "broker.heartbeat.interval.ms=500",
            "--set",
            "transaction.state.log.num.partitions=1",
        ],
    );
    let bootstrap = bootstrap_of(&brokers);
    let _watchdog = watchdog(&brokers, Duration::from_secs(300));
    create_topic(&bootstrap, "decided", 3, 3);
    let mut expected = Vec::new();
    for round in 0..3u32 {
        let producer = txn_producer(&bootstrap, "decided-producer", &[]);
        let coordinator = leader_of(&bootstrap, "__transaction_state", 0);
        let batch = values(&format!("r{round}"), 0..300);
        producer.begin_transaction().expect("begin");
        send_all(&producer, "decided", &batch);
        producer.commit_transaction(OP_TIMEOUT).expect("commit");
        let i = brokers
            .iter()
            .position(|b| b.node_id() == Some(coordinator))
            .expect("the coordinator is one of ours");
        brokers[i].kill9();
        eprintln!("round {round}: committed, then SIGKILLed coordinator {coordinator}");
        drop(producer);
        expected.extend(batch);
        let survivors: Vec<String> = brokers
            .iter()
            .filter(|b| b.is_running())
            .map(|b| b.bootstrap())
            .collect();
        let survivors = survivors.join(",");
        let mut seen: Vec<String> = Vec::new();
        let c = consumer(&survivors, "read_committed", None);
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("decided", p, Offset::Beginning)
                .expect("offset");
        }
        c.assign(&tpl).expect("assign");
        wait_for(
            &format!("round {round}: every committed record readable"),
            GUARD,
            || {
                while let Some(m) = c.poll(Duration::from_millis(100)) {
                    if let Ok(m) = m {
                        seen.push(
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                        );
                    }
                }
                (seen.len() >= expected.len()).then_some(())
            },
        );
        seen.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(seen, want, "round {round}: exactly the committed records");
        brokers[i].start_again();
    }
    let resumed: usize = brokers
        .iter()
        .map(|b| {
            b.log()
                .matches("resuming the markers of a prepared transaction")
                .count()
        })
        .sum();
    eprintln!(
        "markers resumed by a new coordinator in {resumed} of 3 rounds (the others were all written before the kill)"
    );
    // The producer id lives on: a new producer with the same id is answered.
    let producer = txn_producer(&bootstrap, "decided-producer", &[]);
    producer.begin_transaction().expect("begin after the kills");
    send_all(&producer, "decided", &values("last", 0..10));
    producer
        .commit_transaction(OP_TIMEOUT)
        .expect("commit after the kills");
}
