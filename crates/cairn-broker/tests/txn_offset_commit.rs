//! TxnOffsetCommit through the broker's request path (in-process broker, kafka-protocol
//! requests over TCP): the error codes Kafka answers, pending offsets hidden from
//! OffsetFetch (UNSTABLE_OFFSET_COMMIT with `require_stable`), the transaction-marker hook,
//! and a restart that reloads the offsets partition with its transactional batch, its
//! marker, and a transaction still open.
//!
//! The marker is appended here the way the WriteTxnMarkers handler will (a control batch
//! of the producer in `__consumer_offsets`, then the hook), until the transaction
//! coordinator lands and real clients (`send_offsets_to_transaction`) drive this.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_broker::group_coordinator::OFFSETS_TOPIC;
use cairn_broker::{Broker, BrokerConfig, BrokerHandle};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "txn-offsets";
const GROUP: &str = "txn-group";
/// Retries of a request answered with a retriable coordinator error (the offsets topic is
/// created and loaded by the first requests).
const ATTEMPTS_MAX: usize = 200;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

// Kafka error codes.
const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn connect(broker: &BrokerHandle) -> Client {
        Client {
            stream: TcpStream::connect(broker.local_addr()).await.unwrap(),
            correlation_id: 0,
        }
    }

    async fn call(&mut self, api: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("txn-offset-test")))
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).await.unwrap();
        let size = self.stream.read_i32().await.unwrap();
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        ResponseKind::decode(api, &mut body, version).unwrap()
    }

    /// `(topic, partition, error)` of a TxnOffsetCommit, in response order.
    async fn txn_commit(
        &mut self,
        version: i16,
        request: TxnOffsetCommitRequest,
    ) -> Vec<(String, i32, i16)> {
        let ResponseKind::TxnOffsetCommit(r) = self
            .call(
                ApiKey::TxnOffsetCommit,
                version,
                RequestKind::TxnOffsetCommit(request),
            )
            .await
        else {
            panic!("TxnOffsetCommit answered with another type")
        };
        r.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
            })
            .collect()
    }

    /// Retries while the coordinator is being created or loaded.
    async fn txn_commit_when_ready(
        &mut self,
        version: i16,
        request: TxnOffsetCommitRequest,
    ) -> Vec<(String, i32, i16)> {
        for _ in 0..ATTEMPTS_MAX {
            let got = self.txn_commit(version, request.clone()).await;
            let retriable = got.iter().any(|(_, _, e)| {
                [
                    COORDINATOR_LOAD_IN_PROGRESS,
                    COORDINATOR_NOT_AVAILABLE,
                    NOT_COORDINATOR,
                ]
                .contains(e)
            });
            if !retriable {
                return got;
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        panic!("the group coordinator never became available");
    }

    /// OffsetFetch v7 of one partition: `(offset, error)`.
    async fn fetch(&mut self, partition: i32, require_stable: bool) -> (i64, i16) {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_require_stable(require_stable)
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partition_indexes(vec![partition]),
            ]));
        let ResponseKind::OffsetFetch(r) = self
            .call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request))
            .await
        else {
            panic!("OffsetFetch answered with another type")
        };
        assert_eq!(r.error_code, NONE);
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }

    /// OffsetFetch v8 (groups array) of one partition: `(offset, error)`.
    async fn fetch_v8(&mut self, partition: i32, require_stable: bool) -> (i64, i16) {
        let request = OffsetFetchRequest::default()
            .with_require_stable(require_stable)
            .with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![partition]),
                    ])),
            ]);
        let ResponseKind::OffsetFetch(r) = self
            .call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(request))
            .await
        else {
            panic!("OffsetFetch answered with another type")
        };
        assert_eq!(r.groups[0].error_code, NONE);
        let p = &r.groups[0].topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn txn_request(
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(&str, i32, i64, &str)],
) -> TxnOffsetCommitRequest {
    let mut topics: Vec<txn_offset_commit_request::TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in partitions {
        let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(StrBytes::from_string(metadata.to_string())));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("txn")))
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_topics(topics)
}

async fn start(dir: &std::path::Path) -> BrokerHandle {
    let mut config = BrokerConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    config.offsets_topic_num_partitions = 1;
    config.num_partitions = 4;
    Broker::start(config).await.unwrap()
}

/// Appends a COMMIT or ABORT marker of `producer_id` to the offsets partition and makes it
/// durable, as the WriteTxnMarkers handler does, then calls the coordinator's hook.
async fn write_marker(broker: &BrokerHandle, producer_id: i64, producer_epoch: i16, commit: bool) {
    let broker = broker.broker();
    let partition = broker.replicas.get(OFFSETS_TOPIC, 0).unwrap();
    let marker = cairn_log::EndTxnMarker {
        control: if commit {
            cairn_log::ControlType::Commit
        } else {
            cairn_log::ControlType::Abort
        },
        coordinator_epoch: 0,
    };
    let appended = partition
        .append_marker(producer_id, producer_epoch, marker, 1)
        .unwrap();
    if appended.needs_group_commit {
        broker
            .replicas
            .group_committer
            .flush(partition.clone())
            .await
            .unwrap();
    }
    broker
        .group_coordinator
        .complete_txn(0, producer_id, commit)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn txn_offset_commit_errors_pending_offsets_marker_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut client = Client::connect(&broker).await;
    // Create the topic (auto-creation by Metadata) and the offsets topic (FindCoordinator).
    let ResponseKind::Metadata(m) = client
        .call(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic_name(TOPIC))),
                ]))),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(m.topics[0].error_code, NONE);
    client
        .call(
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP)),
            ),
        )
        .await;

    // Producer 1000: t-0 committed, unknown partition and unknown topic refused.
    let got = client
        .txn_commit_when_ready(
            3,
            txn_request(
                1000,
                0,
                &[
                    (TOPIC, 0, 10, "m"),
                    (TOPIC, 99, 1, ""),
                    ("no-such-topic", 0, 1, ""),
                ],
            ),
        )
        .await;
    assert_eq!(
        got,
        vec![
            (TOPIC.to_owned(), 0, NONE),
            (TOPIC.to_owned(), 99, UNKNOWN_TOPIC_OR_PARTITION),
            ("no-such-topic".to_owned(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    // Pending: not visible; unstable with require_stable (v7 and v8).
    assert_eq!(client.fetch(0, false).await, (-1, NONE));
    assert_eq!(client.fetch(0, true).await, (-1, UNSTABLE_OFFSET_COMMIT));
    assert_eq!(client.fetch_v8(0, true).await, (-1, UNSTABLE_OFFSET_COMMIT));
    assert_eq!(client.fetch(1, true).await, (-1, NONE));

    // Metadata too large, per partition (v0: no member fields).
    let long = "x".repeat(5000);
    let got = client
        .txn_commit(
            0,
            txn_request(1000, 0, &[(TOPIC, 1, 5, &long), (TOPIC, 2, 6, "")]),
        )
        .await;
    assert_eq!(got[0].2, OFFSET_METADATA_TOO_LARGE);
    assert_eq!(got[1].2, NONE);

    // v3 with member fields: the group (Empty, created by the first commit) has no such
    // member.
    let mut managed = txn_request(1000, 0, &[(TOPIC, 0, 11, "")]);
    managed.generation_id = 1;
    managed.member_id = StrBytes::from_static_str("not-a-member");
    assert_eq!(client.txn_commit(3, managed).await[0].2, UNKNOWN_MEMBER_ID);

    // A fenced producer: producer 2000 at epoch 1 wrote, so epoch 0 is refused.
    assert_eq!(
        client
            .txn_commit(3, txn_request(2000, 1, &[(TOPIC, 3, 1, "")]))
            .await[0]
            .2,
        NONE
    );
    assert_eq!(
        client
            .txn_commit(3, txn_request(2000, 0, &[(TOPIC, 3, 2, "")]))
            .await[0]
            .2,
        INVALID_PRODUCER_EPOCH
    );

    // COMMIT of producer 1000: t-0 and t-2 become committed.
    write_marker(&broker, 1000, 0, true).await;
    assert_eq!(client.fetch(0, true).await, (10, NONE));
    assert_eq!(client.fetch(2, false).await, (6, NONE));
    // ABORT of producer 2000: t-3 stays without an offset.
    write_marker(&broker, 2000, 1, false).await;
    assert_eq!(client.fetch(3, true).await, (-1, NONE));
    // Producer 3000 leaves a transaction open on t-1.
    assert_eq!(
        client
            .txn_commit(3, txn_request(3000, 0, &[(TOPIC, 1, 7, "")]))
            .await[0]
            .2,
        NONE
    );
    drop(client);
    broker.shutdown().await;

    // Restart: the load replays the transactional batches and markers.
    let broker = start(dir.path()).await;
    let mut client = Client::connect(&broker).await;
    let mut reloaded = None;
    for _ in 0..ATTEMPTS_MAX {
        let ResponseKind::OffsetFetch(r) = client
            .call(
                ApiKey::OffsetFetch,
                7,
                RequestKind::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
                        .with_topics(None),
                ),
            )
            .await
        else {
            panic!()
        };
        if r.error_code == NONE {
            reloaded = Some(());
            break;
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
    assert!(
        reloaded.is_some(),
        "the coordinator never loaded after the restart"
    );
    assert_eq!(client.fetch(0, true).await, (10, NONE));
    assert_eq!(client.fetch(2, true).await, (6, NONE));
    assert_eq!(client.fetch(3, true).await, (-1, NONE));
    assert_eq!(
        client.fetch(1, true).await,
        (-1, UNSTABLE_OFFSET_COMMIT),
        "still open"
    );
    // Its marker arrives after the load, through the hook.
    write_marker(&broker, 3000, 0, true).await;
    assert_eq!(client.fetch(1, true).await, (7, NONE));
    drop(client);
    broker.shutdown().await;
}
