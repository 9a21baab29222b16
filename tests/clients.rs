//! End-to-end tests: the real `cairn` binary driven by unmodified Kafka clients —
//! librdkafka through the `rdkafka` crate, and the `kcat` command line tool.

mod harness;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::BrokerProcess;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(broker: &BrokerProcess) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client")
}

fn producer(broker: &BrokerProcess, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

fn consumer(broker: &BrokerProcess, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "cairn-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

async fn create_topic(broker: &BrokerProcess, name: &str, partitions: i32) {
    let results = admin(broker)
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics");
    assert_eq!(results, vec![Ok(name.to_owned())]);
}

/// A produced record: key, value, the codec it was compressed with.
type Sent = (Vec<u8>, Vec<u8>, String);

/// A consumed record: partition, offset, key, value, headers.
type Seen = (i32, i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Reads `count` records from the beginning of the given partitions.
fn consume_from_start(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<Seen> {
    let consumer = consumer(broker, &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::with_capacity(count);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} records arrived",
            seen.len()
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                seen.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
        }
    }
    seen
}

/// 100,000 records with keys and headers over 3 partitions, 20,000 per compression codec,
/// produced with acks=all and read back in order, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn produce_consume_round_trip_every_codec() {
    let broker = BrokerProcess::start();
    let topic = "round-trip";
    create_topic(&broker, topic, 3).await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let per_codec = 20_000;
    // Per partition, in order: (key, value, codec header).
    let mut expected: BTreeMap<i32, Vec<Sent>> = BTreeMap::new();
    for codec in codecs {
        let producer = producer(
            &broker,
            &[("compression.codec", codec), ("batch.num.messages", "2000")],
        );
        let mut deliveries = Vec::with_capacity(per_codec);
        for i in 0..per_codec {
            let key = format!("key-{}", i % 97);
            let value = format!("{codec}-value-{i}-{}", "x".repeat(i % 200));
            let headers = OwnedHeaders::new().insert(Header {
                key: "codec",
                value: Some(codec),
            });
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            deliveries.push((
                key.clone(),
                value.clone(),
                producer.send_result(record).expect("enqueue"),
            ));
        }
        for (key, value, delivery) in deliveries {
            let d = delivery
                .await
                .expect("delivery future")
                .expect("acks=all delivery");
            expected.entry(d.partition).or_default().push((
                key.into_bytes(),
                value.into_bytes(),
                codec.to_owned(),
            ));
        }
    }
    let total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(total, per_codec * codecs.len());
    assert!(expected.len() > 1, "keys must spread over partitions");

    let seen = consume_from_start(&broker, topic, 3, total);
    let mut by_partition: BTreeMap<i32, Vec<Seen>> = BTreeMap::new();
    for s in seen {
        by_partition.entry(s.0).or_default().push(s);
    }
    for (partition, records) in &by_partition {
        let want = &expected[partition];
        assert_eq!(records.len(), want.len(), "partition {partition}");
        for (i, (s, w)) in records.iter().zip(want).enumerate() {
            assert_eq!(
                s.1, i as i64,
                "offsets are dense from 0 in partition {partition}"
            );
            assert_eq!(s.2.as_deref(), Some(&w.0[..]));
            assert_eq!(s.3, w.1);
            assert_eq!(s.4, vec![("codec".to_owned(), w.2.clone().into_bytes())]);
        }
    }
}

/// CreateTopics (plain, validate-only, duplicate, invalid name), DescribeConfigs,
/// AlterConfigs, CreatePartitions, DeleteTopics through librdkafka's admin API.
#[tokio::test(flavor = "multi_thread")]
async fn topic_admin() {
    let broker = BrokerProcess::start();
    let admin = admin(&broker);
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));

    let dry = admin
        .create_topics(
            &[NewTopic::new("dry", 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(dry, vec![Ok("dry".to_owned())]);
    let metadata = admin.inner().fetch_metadata(None, TIMEOUT).unwrap();
    assert!(
        metadata.topics().iter().all(|t| t.name() != "dry"),
        "validate_only created a topic"
    );

    let created = admin
        .create_topics(
            &[NewTopic::new("orders", 2, TopicReplication::Fixed(1))
                .set("retention.ms", "3600000")],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(created, vec![Ok("orders".to_owned())]);
    let again = admin
        .create_topics(
            &[NewTopic::new("orders", 2, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![Err((
            "orders".to_owned(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
    let bad = admin
        .create_topics(
            &[NewTopic::new("bad name!", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        bad,
        vec![Err((
            "bad name!".to_owned(),
            RDKafkaErrorCode::InvalidTopic
        ))]
    );
    let unknown_config = admin
        .create_topics(
            &[NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("no.such.config", "1")],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        unknown_config,
        vec![Err(("cfg".to_owned(), RDKafkaErrorCode::InvalidConfig))]
    );

    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .unwrap();
    let resource = configs[0].as_ref().expect("describe orders");
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("3600000")
    );
    assert_eq!(
        resource
            .get("cleanup.policy")
            .and_then(|e| e.value.as_deref()),
        Some("delete")
    );

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "7200000")],
            &opts,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic("orders")], &opts)
        .await
        .unwrap();
    let resource = configs[0].as_ref().unwrap();
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("7200000")
    );

    let grown = admin
        .create_partitions(&[NewPartitions::new("orders", 5)], &opts)
        .await
        .unwrap();
    assert_eq!(grown, vec![Ok("orders".to_owned())]);
    let shrink = admin
        .create_partitions(&[NewPartitions::new("orders", 3)], &opts)
        .await
        .unwrap();
    assert_eq!(
        shrink,
        vec![Err((
            "orders".to_owned(),
            RDKafkaErrorCode::InvalidPartitions
        ))]
    );
    let metadata = admin
        .inner()
        .fetch_metadata(Some("orders"), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 5);

    let deleted = admin.delete_topics(&["orders"], &opts).await.unwrap();
    assert_eq!(deleted, vec![Ok("orders".to_owned())]);
    let missing = admin.delete_topics(&["orders"], &opts).await.unwrap();
    assert_eq!(
        missing,
        vec![Err((
            "orders".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    assert!(
        !broker.data_dir().join("orders-0").exists(),
        "partition directory left behind"
    );
}

/// Topics survive a restart, and every record acknowledged with acks=all survives SIGKILL.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_survive_sigkill() {
    let mut broker = BrokerProcess::start();
    create_topic(&broker, "durable", 2).await;
    let fast = producer(&broker, &[("linger.ms", "1")]);
    let mut acked = Vec::new();
    for i in 0..5_000 {
        let value = format!("event-{i}");
        let key = format!("k{}", i % 10);
        let d = fast
            .send(
                FutureRecord::to("durable").key(&key).payload(&value),
                Timeout::After(TIMEOUT),
            )
            .await
            .expect("acks=all delivery");
        acked.push((d.partition, d.offset, value));
    }
    drop(fast);
    broker.kill9();
    broker.start_again();
    let seen = consume_from_start(&broker, "durable", 2, acked.len());
    let mut seen: Vec<(i32, i64, String)> = seen
        .into_iter()
        .map(|s| (s.0, s.1, String::from_utf8(s.3).unwrap()))
        .collect();
    seen.sort();
    acked.sort();
    assert_eq!(seen, acked);

    // A clean restart keeps topics and data too, and appends continue after them.
    broker.restart();
    let after = producer(&broker, &[]);
    let d = after
        .send(
            FutureRecord::to("durable")
                .key("k0")
                .payload("after-restart"),
            Timeout::After(TIMEOUT),
        )
        .await
        .expect("delivery after restart");
    let before = acked.iter().filter(|a| a.0 == d.partition).count() as i64;
    assert_eq!(d.offset, before);
}

/// ListOffsets by timestamp finds the first record at or after the timestamp.
#[tokio::test(flavor = "multi_thread")]
async fn list_offsets_by_time() {
    let broker = BrokerProcess::start();
    create_topic(&broker, "timed", 1).await;
    let producer = producer(&broker, &[]);
    let base = 1_700_000_000_000i64;
    for i in 0..100i64 {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::to("timed")
                    .key("k")
                    .payload(&value)
                    .timestamp(base + i * 1000),
                Timeout::After(TIMEOUT),
            )
            .await
            .expect("delivery");
    }
    let consumer = consumer(&broker, &[]);
    for (ts, want) in [
        (base, 0),
        (base + 41_500, 42),
        (base + 99_000, 99),
        (base - 5, 0),
        (base + 500_000, -1),
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("timed", 0, Offset::Offset(ts))
            .unwrap();
        let found = consumer
            .offsets_for_times(tpl, TIMEOUT)
            .expect("ListOffsets by time");
        let offset = found.find_partition("timed", 0).unwrap().offset();
        let want = if want < 0 {
            Offset::End
        } else {
            Offset::Offset(want)
        };
        assert_eq!(offset, want, "timestamp {ts}");
    }
    let (low, high) = consumer.fetch_watermarks("timed", 0, TIMEOUT).unwrap();
    assert_eq!((low, high), (0, 100));
}

/// A fetch parked on an empty partition with a 30 s max wait is woken by an append: the
/// record arrives within a poll window shorter than the broker's wait.
#[tokio::test(flavor = "multi_thread")]
async fn long_poll_fetch_wakes_on_append() {
    let broker = BrokerProcess::start();
    create_topic(&broker, "wake", 1).await;
    let consumer = consumer(
        &broker,
        &[("fetch.wait.max.ms", "30000"), ("fetch.min.bytes", "1")],
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("wake", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    // Let the consumer park its first fetch on the empty partition.
    assert!(consumer.poll(Duration::from_secs(2)).is_none());
    let producer = producer(&broker, &[]);
    producer
        .send(
            FutureRecord::to("wake").key("k").payload("hello"),
            Timeout::After(TIMEOUT),
        )
        .await
        .expect("delivery");
    let started = std::time::Instant::now();
    let message = loop {
        match consumer.poll(Duration::from_secs(1)) {
            Some(m) => break m.expect("consumer error"),
            // If the parked fetch were not woken, nothing could arrive before its 30 s wait ends.
            None => assert!(
                started.elapsed() < Duration::from_secs(20),
                "parked fetch was not woken by the append"
            ),
        }
    };
    assert_eq!(message.payload(), Some(&b"hello"[..]));
}

/// Metadata auto-creates a topic on first use, with num.partitions partitions.
#[tokio::test(flavor = "multi_thread")]
async fn auto_create_on_produce() {
    let broker = BrokerProcess::start_with(&["--set", "num.partitions=4"]);
    let producer = producer(&broker, &[]);
    let d = producer
        .send(
            FutureRecord::to("auto.created").key("k").payload("v"),
            Timeout::After(TIMEOUT),
        )
        .await
        .expect("delivery to an auto-created topic");
    assert_eq!(d.offset, 0);
    let metadata = admin(&broker)
        .inner()
        .fetch_metadata(Some("auto.created"), TIMEOUT)
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
}

fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat must be installed: run the tests with `cargo xtask test`, which installs it");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// kcat (Debian's build of librdkafka) lists metadata, produces keyed lines and reads them back.
#[test]
fn kcat_metadata_produce_consume() {
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let input: String = (0..500)
        .map(|i| format!("key{}:line {i}\n", i % 7))
        .collect();
    kcat(
        &["-b", &b, "-P", "-t", "kc", "-K:", "-X", "acks=all"],
        Some(&input),
    );
    let listing = kcat(&["-b", &b, "-L"], None);
    assert!(
        listing.contains("topic \"kc\" with 1 partitions"),
        "{listing}"
    );
    assert!(listing.contains("broker 1 at"), "{listing}");
    let out = kcat(
        &[
            "-b",
            &b,
            "-C",
            "-t",
            "kc",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%k:%s@%o\n",
        ],
        None,
    );
    let expected: String = (0..500)
        .map(|i| format!("key{}:line {i}@{i}\n", i % 7))
        .collect();
    assert_eq!(out, expected);
}

/// Reads every partition of `topic` from the start to its high watermark: per partition,
/// (offset, value) in offset order.
fn consume_to_high_watermarks(
    broker: &BrokerProcess,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer = consumer(broker, &[]);
    let mut high = BTreeMap::new();
    for p in 0..partitions {
        let (_, hw) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .expect("watermarks");
        high.insert(p, hw);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut logs: BTreeMap<i32, Vec<(i64, String)>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while (0..partitions).any(|p| next[&p] < high[&p]) {
        assert!(
            std::time::Instant::now() < deadline,
            "did not reach the high watermarks {high:?}; next offsets {next:?}"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                logs.get_mut(&m.partition())
                    .unwrap()
                    .push((m.offset(), value));
                next.insert(m.partition(), m.offset() + 1);
            }
        }
    }
    logs
}

/// An idempotent producer (`enable.idempotence=true`: InitProducerId, producer id and
/// sequence numbers in every batch, acks=all implied) writes 50,000 keyed records over 3
/// partitions; each partition holds exactly the records sent to it, once each, in the
/// order they were sent, at the offsets acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn idempotent_producer_exactly_once_in_order() {
    let broker = BrokerProcess::start();
    let topic = "idempotent";
    create_topic(&broker, topic, 3).await;
    let producer = producer(
        &broker,
        &[
            ("enable.idempotence", "true"),
            ("batch.num.messages", "500"),
        ],
    );
    let total = 50_000;
    let mut deliveries = Vec::with_capacity(total);
    for i in 0..total {
        let key = format!("key-{}", i % 97);
        let value = format!("value-{i}");
        let enqueued = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e);
        deliveries.push(enqueued);
    }
    // Per partition: (offset, value) as acknowledged, in send order.
    let mut acked: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let d = d
            .expect("enqueued")
            .await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("record {i} not acknowledged: {e}"));
        acked
            .entry(d.partition)
            .or_default()
            .push((d.offset, format!("value-{i}")));
    }
    assert_eq!(acked.len(), 3, "every partition got records");
    for (p, records) in &acked {
        // Sent in order, acknowledged at consecutive offsets from 0, in that order.
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let expected: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {p}: acknowledged offsets");
    }
    let logs = consume_to_high_watermarks(&broker, topic, 3);
    assert_eq!(
        logs, acked,
        "the log holds exactly the records sent, in order"
    );
}

/// Records acknowledged to an idempotent producer's thread, and failures.
#[derive(Default)]
struct DeliveryLog {
    acked: std::sync::Mutex<Vec<(i32, i64, u64)>>,
    failed: std::sync::Mutex<Vec<(u64, String)>>,
}

struct Recording(std::sync::Arc<DeliveryLog>);

impl rdkafka::client::ClientContext for Recording {}

impl rdkafka::producer::ProducerContext for Recording {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, seq: Box<u64>) {
        match result {
            Ok(m) => self
                .0
                .acked
                .lock()
                .unwrap()
                .push((m.partition(), m.offset(), *seq)),
            Err((e, _)) => self.0.failed.lock().unwrap().push((*seq, e.to_string())),
        }
    }
}

/// An idempotent librdkafka producer writes numbered records while its only broker is
/// SIGKILLed and restarted: its connection is cut with requests in flight, which it
/// retries with the same sequence numbers. Every acknowledged record is in the log exactly
/// once at its acknowledged offset, no record appears twice at all (the retried batches
/// the broker had already appended are recognised after recovery), and each partition
/// keeps the order the records were sent in.
#[test]
fn idempotent_producer_survives_broker_kill() {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut broker = BrokerProcess::start();
    let topic = "idempotent-kill";
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(create_topic(&broker, topic, 3));
    let log = Arc::new(DeliveryLog::default());
    let producer: ThreadedProducer<Recording> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "500")
        .create_with_context(Recording(log.clone()))
        .expect("producer");
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let sender = std::thread::spawn(move || {
        let mut seq = 0u64;
        while !thread_stop.load(Ordering::SeqCst) {
            let key = seq.to_string();
            let value = format!("seq-{seq}");
            match producer.send(
                BaseRecord::with_opaque_to(topic, Box::new(seq))
                    .key(&key)
                    .payload(&value),
            ) {
                Ok(()) => seq += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            if seq % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        producer
            .flush(Duration::from_secs(150))
            .expect("every delivery report");
        let fatal = producer.client().fatal_error();
        (seq, fatal)
    });
    let acked_count = |log: &DeliveryLog| log.acked.lock().unwrap().len();
    let wait_acked = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while acked_count(&log) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} records acknowledged, waiting for {n}",
                acked_count(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_acked(5_000);
    broker.kill9();
    let at_kill = acked_count(&log);
    std::thread::sleep(Duration::from_millis(500));
    broker.start_again();
    wait_acked(at_kill + 5_000);
    stop.store(true, Ordering::SeqCst);
    let (sent, fatal) = sender.join().expect("producer thread");
    assert!(fatal.is_none(), "producer fatal error: {fatal:?}");
    let acked = std::mem::take(&mut *log.acked.lock().unwrap());
    let failed = std::mem::take(&mut *log.failed.lock().unwrap());
    eprintln!(
        "sent {sent}, acknowledged {} ({at_kill} before the kill), failed {}",
        acked.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed deliveries: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(acked.len() as u64, sent);

    let logs = consume_to_high_watermarks(&broker, topic, 3);
    let mut seen = std::collections::HashSet::new();
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    for (p, records) in &logs {
        let mut previous = None;
        for (offset, value) in records {
            let seq: u64 = value
                .strip_prefix("seq-")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{p}@{offset}: unexpected value {value}"));
            assert!(
                seen.insert(seq),
                "seq {seq} appears twice (again at {p}@{offset})"
            );
            assert!(
                previous.is_none_or(|prev| prev < seq),
                "partition {p}: seq {seq} at offset {offset} after seq {previous:?}"
            );
            previous = Some(seq);
            at.insert((*p, *offset), seq);
        }
    }
    for (p, offset, seq) in &acked {
        assert_eq!(
            at.get(&(*p, *offset)),
            Some(seq),
            "acknowledged seq {seq} at {p}@{offset}"
        );
    }
    assert_eq!(
        seen.len(),
        acked.len(),
        "only acknowledged records in the log"
    );
}
