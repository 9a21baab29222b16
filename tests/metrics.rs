//! The operator's view: `/health`, `/ready` and `/metrics` on `--metrics-listen`, scraped
//! and parsed as Prometheus text exposition while librdkafka produces and consumes.

mod harness;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use harness::BrokerProcess;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Parses the text exposition format into `series{labels}` → value, checking that every
/// sample line is well formed and every series has a TYPE line.
fn parse(body: &str) -> HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split_whitespace().next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample line: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name = series.split('{').next().unwrap();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            typed.contains(name) || typed.contains(base),
            "series {name} has no TYPE line"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_traffic() {
    let metrics_addr = harness::free_port();
    let broker = BrokerProcess::start_with(&[
        "--metrics-listen",
        &metrics_addr.to_string(),
        "--set",
        "offsets.topic.num.partitions=1",
    ]);
    assert_eq!(http_get(metrics_addr, "/health"), (200, "ok\n".to_owned()));
    // Ready once the broker has recovered its logs; the Kafka port may accept connections
    // (queued) a moment earlier.
    let started = std::time::Instant::now();
    while http_get(metrics_addr, "/ready").0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "broker never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(metrics_addr, "/nope").0, 404);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    let records = 250;
    for i in 0..records {
        let value = format!("value-{i}");
        producer
            .send(
                FutureRecord::to("observed").key("k").payload(&value),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .expect("delivery");
    }

    // A group commits offset 100 of the 250 records: its lag is 150.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "watchers")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("observed", 0, Offset::Offset(100))
        .unwrap();
    tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync))
        .expect("offset commit");

    let (status, body) = http_get(metrics_addr, "/metrics");
    assert_eq!(status, 200);
    let m = parse(&body);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("missing {series} in:\n{body}"))
    };
    assert_eq!(
        get(r#"cairn_records_in_total{topic="observed"}"#),
        records as f64
    );
    assert_eq!(
        get(r#"cairn_partition_log_end_offset{topic="observed",partition="0"}"#),
        records as f64
    );
    assert_eq!(
        get(r#"cairn_partition_high_watermark{topic="observed",partition="0"}"#),
        records as f64
    );
    assert!(get(r#"cairn_partition_size_bytes{topic="observed",partition="0"}"#) > 0.0);
    assert!(get(r#"cairn_requests_total{api="Produce"}"#) >= 1.0);
    assert!(get(r#"cairn_request_duration_seconds_count{api="Metadata"}"#) >= 1.0);
    assert!(
        get("cairn_fsync_duration_seconds_count") >= 1.0,
        "acks=all produces went through group commit"
    );
    // `observed` and the one `__consumer_offsets` partition.
    assert_eq!(get("cairn_partitions"), 2.0);
    assert_eq!(get("cairn_offline_partitions"), 0.0);
    // Replication and quorum: a one-voter quorum that this broker leads.
    assert_eq!(
        get(r#"cairn_partition_leader{topic="observed",partition="0"}"#),
        1.0
    );
    assert_eq!(
        get(r#"cairn_partition_isr_size{topic="observed",partition="0"}"#),
        1.0
    );
    assert_eq!(
        get(r#"cairn_partition_replicas{topic="observed",partition="0"}"#),
        1.0
    );
    assert_eq!(get("cairn_under_replicated_partitions"), 0.0);
    assert_eq!(get("cairn_quorum_leader_id"), 1.0);
    assert!(get("cairn_quorum_term") >= 1.0);
    assert!(get("cairn_quorum_commit_index") >= 1.0);
    assert!(get("cairn_quorum_applied_index") >= 1.0);
    assert!(get("cairn_quorum_applied_index") <= get("cairn_quorum_commit_index"));
    assert!(get("cairn_connections") >= 1.0);
    assert_eq!(
        get(r#"cairn_group_committed_offset{group="watchers",topic="observed",partition="0"}"#),
        100.0
    );
    assert_eq!(
        get(r#"cairn_group_lag{group="watchers",topic="observed",partition="0"}"#),
        (records - 100) as f64
    );
}
