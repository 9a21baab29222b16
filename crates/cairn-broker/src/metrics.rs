//! Prometheus metrics and the operator's HTTP endpoints.
//!
//! [`install`] sets the process-wide `metrics` recorder; [`serve_http`] answers
//! `GET /metrics` (the Prometheus text exposition format), `GET /health` (the process is
//! alive) and `GET /ready` (metadata loaded and every log recovered: the broker serves).
//! Every series is listed with its type, unit and labels in `docs/metrics.md`.
//!
//! Counters and histograms are updated where the work happens (connections, handlers,
//! the group committer). Per-partition gauges (log end offset, high watermark, size,
//! leadership, ISR and replica counts), the under-replicated and offline counts and the
//! metadata quorum's term, leader and indexes are read from the replica manager, the
//! applied metadata and the quorum at scrape time, so they are exact and cost nothing
//! between scrapes.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::Broker;

pub const REQUESTS: &str = "cairn_requests_total";
pub const REQUEST_DURATION: &str = "cairn_request_duration_seconds";
pub const REQUEST_ERRORS: &str = "cairn_request_errors_total";
pub const PARTITION_ERRORS: &str = "cairn_partition_errors_total";
pub const CONNECTIONS: &str = "cairn_connections";
pub const CONNECTIONS_ACCEPTED: &str = "cairn_connections_accepted_total";
pub const BYTES_IN: &str = "cairn_bytes_in_total";
pub const BYTES_OUT: &str = "cairn_bytes_out_total";
pub const RECORDS_IN: &str = "cairn_records_in_total";
pub const FETCH_PURGATORY: &str = "cairn_fetch_purgatory_size";
pub const PRODUCE_PURGATORY: &str = "cairn_produce_purgatory_size";
pub const FSYNC_DURATION: &str = "cairn_fsync_duration_seconds";
pub const GROUP_COMMIT_REQUESTS: &str = "cairn_group_commit_requests";
pub const LOG_END_OFFSET: &str = "cairn_partition_log_end_offset";
pub const LOG_START_OFFSET: &str = "cairn_partition_log_start_offset";
pub const HIGH_WATERMARK: &str = "cairn_partition_high_watermark";
pub const PARTITION_SIZE: &str = "cairn_partition_size_bytes";
pub const PARTITION_SEGMENTS: &str = "cairn_partition_segments";
pub const PARTITIONS: &str = "cairn_partitions";
pub const UNDER_REPLICATED: &str = "cairn_under_replicated_partitions";
pub const OFFLINE: &str = "cairn_offline_partitions";
pub const PARTITION_LEADER: &str = "cairn_partition_leader";
pub const PARTITION_ISR_SIZE: &str = "cairn_partition_isr_size";
pub const PARTITION_REPLICAS: &str = "cairn_partition_replicas";
pub const QUORUM_TERM: &str = "cairn_quorum_term";
pub const QUORUM_LEADER_ID: &str = "cairn_quorum_leader_id";
pub const QUORUM_COMMIT_INDEX: &str = "cairn_quorum_commit_index";
pub const QUORUM_APPLIED_INDEX: &str = "cairn_quorum_applied_index";
pub const GROUP_COMMITTED_OFFSET: &str = "cairn_group_committed_offset";
pub const GROUP_LAG: &str = "cairn_group_lag";
pub const LAST_STABLE_OFFSET: &str = "cairn_partition_last_stable_offset";
pub const TRANSACTIONS: &str = "cairn_transactions";

/// Histogram buckets for latencies, in seconds: 50 µs to 30 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];
/// Buckets for how many flush requests one group-commit fsync covered.
const GROUP_COMMIT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];
/// Largest HTTP request head read from a scraper.
const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// A scraper that sends nothing for this long is dropped.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often histogram upkeep runs.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global recorder (once per process) and describes every series.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)?
        .set_buckets_for_metric(
            Matcher::Full(GROUP_COMMIT_REQUESTS.into()),
            GROUP_COMMIT_BUCKETS,
        )?
        .install_recorder()?;
    describe_counter!(REQUESTS, "Requests answered, by API.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from decoding a request to its response being ready, by API."
    );
    describe_counter!(
        REQUEST_ERRORS,
        "Connections closed for a bad request, by reason."
    );
    describe_counter!(
        PARTITION_ERRORS,
        "Per-partition errors answered, by API and Kafka error."
    );
    describe_gauge!(CONNECTIONS, "Open client connections.");
    describe_counter!(CONNECTIONS_ACCEPTED, "Client connections accepted.");
    describe_counter!(
        BYTES_IN,
        Unit::Bytes,
        "Record bytes appended by producers, by topic."
    );
    describe_counter!(
        BYTES_OUT,
        Unit::Bytes,
        "Record bytes returned to consumers, by topic."
    );
    describe_counter!(RECORDS_IN, "Records appended by producers, by topic.");
    describe_gauge!(FETCH_PURGATORY, "Fetch requests parked waiting for data.");
    describe_gauge!(
        PRODUCE_PURGATORY,
        "acks=all produce requests waiting for their fsync."
    );
    describe_histogram!(
        FSYNC_DURATION,
        Unit::Seconds,
        "Duration of one group-commit round of fdatasync calls."
    );
    describe_histogram!(
        GROUP_COMMIT_REQUESTS,
        "Flush requests covered by one group-commit round."
    );
    describe_gauge!(LOG_END_OFFSET, "Log end offset, by partition.");
    describe_gauge!(LOG_START_OFFSET, "Log start offset, by partition.");
    describe_gauge!(HIGH_WATERMARK, "High watermark, by partition.");
    describe_gauge!(
        PARTITION_SIZE,
        Unit::Bytes,
        "Bytes on disk of a partition's segments."
    );
    describe_gauge!(PARTITION_SEGMENTS, "Segments of a partition.");
    describe_gauge!(PARTITIONS, "Partitions hosted by this broker.");
    describe_gauge!(
        UNDER_REPLICATED,
        "Partitions led here whose ISR is smaller than their replica set."
    );
    describe_gauge!(
        OFFLINE,
        "Partitions in the metadata with no live leader (every broker reports it)."
    );
    describe_gauge!(
        PARTITION_LEADER,
        "1 if this broker leads the partition, else 0, by hosted partition."
    );
    describe_gauge!(
        PARTITION_ISR_SIZE,
        "In-sync replicas of a hosted partition, as this broker knows them."
    );
    describe_gauge!(PARTITION_REPLICAS, "Replicas of a hosted partition.");
    describe_gauge!(QUORUM_TERM, "Current Raft term of the metadata quorum.");
    describe_gauge!(
        GROUP_COMMITTED_OFFSET,
        "Committed offset of a consumer group on a partition (on the group's coordinator)."
    );
    describe_gauge!(
        GROUP_LAG,
        "Records between a group's committed offset and the partition's high watermark (on the coordinator, for partitions it hosts)."
    );
    describe_gauge!(
        LAST_STABLE_OFFSET,
        "Last stable offset of a partition led here: read_committed consumers read up to it (below the high watermark while a transaction is open)."
    );
    describe_gauge!(
        TRANSACTIONS,
        "Transactional ids coordinated by this broker, by transaction state (Empty, Ongoing, PrepareCommit, ...)."
    );
    describe_gauge!(
        QUORUM_LEADER_ID,
        "Node id of the metadata quorum leader (the active controller), -1 if none."
    );
    describe_gauge!(
        QUORUM_COMMIT_INDEX,
        "Raft index of the last metadata entry known committed here."
    );
    describe_gauge!(
        QUORUM_APPLIED_INDEX,
        "Raft index of the last metadata entry applied here."
    );
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })?;
    Ok(handle)
}

/// The API name used as the `api` label.
pub fn api_label(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::ListTransactions => "ListTransactions",
        _ => "other",
    }
}

/// Sets the scrape-time gauges from the broker's current state.
fn collect(broker: &Broker) {
    let partitions = broker.replicas.all();
    gauge!(PARTITIONS).set(partitions.len() as f64);
    for p in &partitions {
        let labels = [
            ("topic", p.topic.clone()),
            ("partition", p.index.to_string()),
        ];
        let (start, end, size, segments) = p.with_log(|log| {
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.size_bytes(),
                log.num_segments(),
            )
        });
        gauge!(LOG_START_OFFSET, &labels).set(start as f64);
        gauge!(LOG_END_OFFSET, &labels).set(end as f64);
        gauge!(HIGH_WATERMARK, &labels).set(p.high_watermark() as f64);
        if p.is_leader() {
            gauge!(LAST_STABLE_OFFSET, &labels).set(p.last_stable_offset() as f64);
        }
        gauge!(PARTITION_SIZE, &labels).set(size as f64);
        gauge!(PARTITION_SEGMENTS, &labels).set(segments as f64);
        let info = p.info();
        gauge!(PARTITION_LEADER, &labels).set(if p.is_leader() { 1.0 } else { 0.0 });
        gauge!(PARTITION_ISR_SIZE, &labels).set(info.isr.len() as f64);
        gauge!(PARTITION_REPLICAS, &labels).set(info.replicas.len() as f64);
    }
    let quorum = broker.metadata.quorum().status();
    gauge!(QUORUM_TERM).set(quorum.term as f64);
    gauge!(QUORUM_LEADER_ID).set(quorum.leader_id.map_or(-1.0, |id| id as f64));
    gauge!(QUORUM_COMMIT_INDEX).set(quorum.commit_index as f64);
    gauge!(QUORUM_APPLIED_INDEX).set(quorum.applied_index as f64);
    let state = broker.metadata.state();
    let node_id = broker.config.node_id;
    let mut under_replicated = 0;
    let mut offline = 0;
    for topic in state.topics() {
        for p in &topic.partitions {
            if p.leader == node_id && p.isr.len() < p.replicas.len() {
                under_replicated += 1;
            }
            if p.leader < 0 || state.is_fenced(p.leader) {
                offline += 1;
            }
        }
    }
    gauge!(UNDER_REPLICATED).set(under_replicated as f64);
    gauge!(OFFLINE).set(offline as f64);
    let by_state = broker.txn_coordinator.count_by_state();
    for state in crate::handlers::list_transactions::STATES {
        let n = by_state.get(state).copied().unwrap_or(0);
        gauge!(TRANSACTIONS, "state" => *state).set(n as f64);
    }
    for (group, topic, partition, offset) in broker.group_coordinator.committed_offsets() {
        let hw = broker
            .replicas
            .get(&topic, partition)
            .map(|p| p.high_watermark());
        let labels = [
            ("group", group),
            ("topic", topic),
            ("partition", partition.to_string()),
        ];
        gauge!(GROUP_COMMITTED_OFFSET, &labels).set(offset as f64);
        if let Some(hw) = hw {
            gauge!(GROUP_LAG, &labels).set((hw - offset).max(0) as f64);
        }
    }
}

/// Where the HTTP endpoints find the broker once it has started.
pub type BrokerSlot = Arc<OnceLock<Arc<Broker>>>;

/// Binds `addr` and serves `/metrics`, `/health` and `/ready` until the process ends.
/// `/ready` answers 503 until `broker` is filled in.
pub async fn serve_http(
    addr: SocketAddr,
    handle: PrometheusHandle,
    broker: BrokerSlot,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let handle = handle.clone();
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut head = Vec::with_capacity(512);
                let mut chunk = [0u8; 1024];
                let read = tokio::time::timeout(HTTP_READ_TIMEOUT, async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n")
                        && head.len() < HTTP_REQUEST_HEAD_BYTES_MAX
                    {
                        let n = stream.read(&mut chunk).await?;
                        if n == 0 {
                            break;
                        }
                        head.extend_from_slice(&chunk[..n]);
                    }
                    Ok::<_, std::io::Error>(())
                })
                .await;
                if !matches!(read, Ok(Ok(()))) {
                    return;
                }
                let line =
                    String::from_utf8_lossy(head.split(|b| *b == b'\n').next().unwrap_or_default())
                        .into_owned();
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let path = path.split('?').next().unwrap_or("");
                let (status, content_type, body) = match (method, path) {
                    ("GET", "/metrics") => {
                        if let Some(b) = broker.get() {
                            collect(b);
                        }
                        ("200 OK", "text/plain; version=0.0.4", handle.render())
                    }
                    ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_owned()),
                    ("GET", "/ready") => match broker.get() {
                        Some(_) => ("200 OK", "text/plain", "ready\n".to_owned()),
                        None => (
                            "503 Service Unavailable",
                            "text/plain",
                            "starting: recovering logs\n".to_owned(),
                        ),
                    },
                    ("GET", _) => (
                        "404 Not Found",
                        "text/plain",
                        "try /metrics, /health or /ready\n".to_owned(),
                    ),
                    _ => (
                        "405 Method Not Allowed",
                        "text/plain",
                        "only GET\n".to_owned(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(local)
}
