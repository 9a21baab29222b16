//! `cairn group` end to end: the real `cairn` binary as broker and as client, with an
//! rdkafka group consumer that commits, checked through `cairn group list`, `describe`,
//! `lag`, `reset-offsets` (refused while the group has members, committed once it is
//! Empty) and `delete`.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

const BROKER_FLAGS: &[&str] = &[
    "--set",
    "group.initial.rebalance.delay.ms=300",
    "--set",
    "offsets.topic.num.partitions=10",
];
const TOPIC: &str = "cli-lag";
const GROUP: &str = "cli-group";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 90;
const CONSUMED: usize = 60;

/// Runs `cairn group ARGS` against `broker`: (success, stdout, stderr).
fn cairn_group(broker: &BrokerProcess, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("group")
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run cairn group");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lag table rows: partition -> (current, log end, lag, consumer id).
fn lag_table(stdout: &str) -> Vec<(i32, String, i64, String, String)> {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("TOPIC "))
        .filter(|l| !l.trim().is_empty());
    let header = lines.next().expect("a lag table");
    assert!(
        header.split_whitespace().collect::<Vec<_>>()
            == [
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID"
            ],
        "{stdout}"
    );
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cells[0], TOPIC, "{stdout}");
            (
                cells[1].parse().unwrap(),
                cells[2].to_owned(),
                cells[3].parse().unwrap(),
                cells[4].to_owned(),
                cells[5].to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn group_lag_describe_reset_and_delete() {
    let broker = BrokerProcess::start_with(BROKER_FLAGS);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics");
    assert_eq!(created, vec![Ok(TOPIC.to_owned())]);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .create()
        .expect("producer");
    let mut per_partition = [0i64; PARTITIONS as usize];
    for i in 0..RECORDS {
        let key = format!("key-{i}");
        let partition = (i % PARTITIONS as usize) as i32;
        let delivery = producer
            .send(
                FutureRecord::to(TOPIC)
                    .key(&key)
                    .payload("v")
                    .partition(partition),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
        per_partition[delivery.partition as usize] += 1;
    }

    // A group consumer reads CONSUMED records, committing after each.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", GROUP)
        .set("client.id", "lag-checker")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let started = Instant::now();
    let mut consumed = 0;
    while consumed < CONSUMED {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "consumed {consumed}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a record");
            consumer
                .commit_message(&message, CommitMode::Sync)
                .expect("commit");
            consumed += 1;
        }
    }

    // While it is a member: describe shows it with all three partitions, lag sums up.
    let (ok, out, err) = cairn_group(&broker, &["describe", GROUP]);
    assert!(ok, "describe: {err}");
    assert!(out.contains("State: Stable"), "{out}");
    assert!(out.contains("ProtocolType: consumer"), "{out}");
    assert!(out.contains("lag-checker"), "{out}");
    assert!(out.contains(&format!("{TOPIC}(0,1,2)")), "{out}");
    let rows = lag_table(&out);
    assert_eq!(rows.len(), PARTITIONS as usize, "{out}");
    assert!(
        rows.iter().all(|r| r.4 != "-"),
        "every partition owned: {out}"
    );

    let (ok, out, err) = cairn_group(&broker, &["lag", GROUP]);
    assert!(ok, "lag: {err}");
    let rows = lag_table(&out);
    let mut current_total = 0;
    let mut lag_total = 0;
    for (partition, current, log_end, lag, _) in &rows {
        assert_eq!(*log_end, per_partition[*partition as usize], "{out}");
        // A partition without a commit shows "-" for both, as kafka-consumer-groups.sh.
        let (current, lag) = if current == "-" {
            assert_eq!(lag, "-", "{out}");
            (0, *log_end)
        } else {
            let current: i64 = current.parse().expect("an offset");
            let lag: i64 = lag.parse().expect("a lag");
            assert_eq!(lag, log_end - current, "{out}");
            (current, lag)
        };
        current_total += current;
        lag_total += lag;
    }
    assert_eq!(current_total, CONSUMED as i64, "{out}");
    assert_eq!(lag_total, (RECORDS - CONSUMED) as i64, "{out}");

    let (ok, out, _) = cairn_group(&broker, &["list"]);
    assert!(ok && out.lines().any(|l| l == GROUP), "{out}");
    let (ok, out, _) = cairn_group(&broker, &["list", "--state", "stable"]);
    assert!(ok && out.contains(GROUP) && out.contains("Stable"), "{out}");

    // Resetting is refused while the group has a member; the dry run says so.
    let reset = [
        "reset-offsets",
        GROUP,
        "--topic",
        TOPIC,
        "--to-earliest",
        "--execute",
    ];
    let (ok, _, err) = cairn_group(&broker, &reset);
    assert!(!ok, "reset while Stable must fail");
    assert!(err.contains("Stable") && err.contains("Empty"), "{err}");
    let (ok, out, _) = cairn_group(&broker, &reset[..5]);
    assert!(ok && out.contains("would be refused"), "{out}");

    // Once the consumer has left, the reset is committed.
    consumer.unsubscribe();
    drop(consumer);
    let started = Instant::now();
    loop {
        let (_, out, _) = cairn_group(&broker, &["list", "--state", "Empty"]);
        if out.contains(GROUP) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "group never Empty"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = cairn_group(&broker, &reset);
    assert!(ok, "reset: {err}");
    assert!(
        out.contains("committed new offsets for 3 partition(s)"),
        "{out}"
    );
    let (ok, out, err) = cairn_group(&broker, &["lag", GROUP]);
    assert!(ok, "lag: {err}");
    let rows = lag_table(&out);
    assert_eq!(rows.len(), PARTITIONS as usize, "{out}");
    for (partition, current, log_end, lag, owner) in &rows {
        assert_eq!(current, "0", "{out}");
        assert_eq!(*lag, per_partition[*partition as usize].to_string());
        assert_eq!(*log_end, per_partition[*partition as usize]);
        assert_eq!(owner, "-", "{out}");
    }

    // An offset beyond the log end is clamped to it.
    let (ok, out, err) = cairn_group(
        &broker,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            &format!("{TOPIC}:1"),
            "--to-offset",
            "1000000",
            "--execute",
        ],
    );
    assert!(ok, "{err}");
    let planned: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|cells: &Vec<&str>| cells.first() == Some(&TOPIC))
        .collect();
    let end = per_partition[1].to_string();
    assert_eq!(planned, [vec![TOPIC, "1", "0", end.as_str()]], "{out}");

    // Delete the group; then it is gone.
    let (ok, out, err) = cairn_group(&broker, &["delete", GROUP]);
    assert!(ok, "delete: {err}");
    assert!(out.contains("deleted group"), "{out}");
    let (ok, _, err) = cairn_group(&broker, &["lag", GROUP]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}
