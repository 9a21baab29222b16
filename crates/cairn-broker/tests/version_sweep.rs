//! Every API in the handler table, at every version it advertises, gets a response that
//! decodes at that version. Kafka clients pick any advertised version, and the protocol
//! crate refuses to encode a field that a version lacks (for example ListOffsets'
//! `leader_epoch` below v4) — which would leave the client waiting forever. This runs the
//! broker in-process and sweeps the whole table.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_broker::handlers::APIS;
use cairn_broker::{Broker, BrokerConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "sweep";
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// A meaningful request for `api` at `version`, naming the sweep topic where the API takes
/// topics (by id from the versions that use ids).
fn request(api: ApiKey, version: i16, topic_id: uuid::Uuid) -> RequestKind {
    let scratch = format!("sweep-{}-v{version}", api as i16);
    match api {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(if version < 13 { name(TOPIC) } else { name("") })
                        .with_topic_id(if version >= 13 {
                            topic_id
                        } else {
                            uuid::Uuid::nil()
                        })
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch())),
                        ]),
                ]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(if version < 13 { name(TOPIC) } else { name("") })
                        .with_topic_id(if version >= 13 {
                            topic_id
                        } else {
                            uuid::Uuid::nil()
                        })
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        ),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-2),
                    ]),
            ]))
        }
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
            ])))
        }
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(name(&scratch))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
        ),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&scratch))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&scratch)])
        }),
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                    ]),
            ]))
        }
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str(TOPIC)),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str(TOPIC))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("86400000"))),
                    ]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str(TOPIC))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_config_operation(1),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name(TOPIC))
                        .with_count(1 + version as i32 + 1),
                ]),
        ),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("sweep"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(if version >= 4 {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_static_str("sweep-group")])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("sweep-group"))
        }),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name(TOPIC))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ]),
        ),
        ApiKey::DescribeQuorum => {
            RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(name("__cluster_metadata"))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0),
                    ]),
            ]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                .with_group_id(GroupId(StrBytes::from_static_str("sweep-group")))
                .with_producer_id(ProducerId(1))
                .with_producer_epoch(0)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        // Transaction APIs for an id nobody coordinates (no `__transaction_state` yet):
        // NOT_COORDINATOR answers, at every version.
        ApiKey::AddPartitionsToTxn if version >= 4 => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                    .with_producer_id(ProducerId(1))
                    .with_verify_only(true)
                    .with_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(name(TOPIC))
                            .with_partitions(vec![0]),
                    ]),
            ]),
        ),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(
                    "sweep-txn",
                )))
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(vec![0]),
                ]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                .with_group_id(GroupId(StrBytes::from_static_str("sweep-group"))),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                .with_committed(true),
        ),
        // A marker for a producer the partition has never seen: written, it ends nothing.
        ApiKey::WriteTxnMarkers => {
            RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(424242))
                    .with_producer_epoch(0)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(name(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ]),
            ]))
        }
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_static_str("sweep-txn"),
            )]),
        ),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name(TOPIC))
                    .with_partition_indexes(vec![0]),
            ]))
        }
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default().with_duration_filter(-1),
        ),
        // Cancelling a reassignment that is not in progress: NO_REASSIGNMENT_IN_PROGRESS.
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(None),
                        ]),
                ]),
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000),
        ),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_timeout_ms(5_000)
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(name(TOPIC))
                        .with_partitions(vec![0, 7]),
                ])),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name(TOPIC))
                    .with_partitions(vec![0]),
            ])))
        }
        other => panic!("the version sweep has no request for {other:?}: add one in request()"),
    }
}

async fn call(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &RequestKind,
) -> Result<ResponseKind, String> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("version-sweep")))
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| format!("encoding header: {e}"))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| format!("encoding request: {e}"))?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let read = async {
        let size = stream.read_i32().await?;
        let mut body = vec![0u8; size as usize];
        stream.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(Bytes::from(body))
    };
    let mut body = tokio::time::timeout(RESPONSE_TIMEOUT, read)
        .await
        .map_err(|_| "no response (the broker failed to encode it?)".to_owned())?
        .map_err(|e| format!("connection closed: {e}"))?;
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
        .map_err(|e| e.to_string())?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "correlation id {} != {correlation_id}",
            header.correlation_id
        ));
    }
    ResponseKind::decode(api, &mut body, version).map_err(|e| format!("decoding response: {e:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_advertised_version_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::new(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    // Create the sweep topic and learn its id.
    let ResponseKind::Metadata(m) = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        1,
        &request(ApiKey::Metadata, 12, uuid::Uuid::nil()),
    )
    .await
    .unwrap() else {
        panic!("Metadata answered with another type")
    };
    assert_eq!(m.topics[0].error_code, 0);
    let topic_id = m.topics[0].topic_id;

    let mut failures = Vec::new();
    let mut correlation_id = 2;
    for spec in APIS {
        for version in spec.versions.min..=spec.versions.max {
            correlation_id += 1;
            let req = request(spec.key, version, topic_id);
            match call(&mut stream, spec.key, version, correlation_id, &req).await {
                Ok(_) => {}
                Err(e) => {
                    failures.push(format!("{:?} v{version}: {e}", spec.key));
                    // The connection may be unusable after a failure.
                    stream = TcpStream::connect(broker.local_addr()).await.unwrap();
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "unanswered versions:\n{}",
        failures.join("\n")
    );
    broker.shutdown().await;
}

/// InitProducerId: fresh ids are distinct with epoch 0, a KIP-360 request bumps the epoch
/// of the same id (a fresh id at the last epoch), a transactional id no broker coordinates
/// yet is NOT_COORDINATOR.
#[tokio::test(flavor = "multi_thread")]
async fn init_producer_id_fresh_bump_and_transactional() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::new(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    let mut correlation_id = 0;
    let mut init = async |version: i16, request: InitProducerIdRequest| {
        correlation_id += 1;
        let req = RequestKind::InitProducerId(request);
        match call(
            &mut stream,
            ApiKey::InitProducerId,
            version,
            correlation_id,
            &req,
        )
        .await
        {
            Ok(ResponseKind::InitProducerId(r)) => {
                (r.error_code, r.producer_id.0, r.producer_epoch)
            }
            other => panic!("InitProducerId v{version}: {other:?}"),
        }
    };
    let fresh = || {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let (code, a, epoch) = init(0, fresh()).await;
    assert_eq!((code, epoch), (0, 0));
    assert!(a >= 0);
    let (code, b, epoch) = init(4, fresh()).await;
    assert_eq!((code, epoch), (0, 0));
    assert_ne!(a, b, "two producers got the same id");
    // KIP-360 bump: same id, next epoch.
    let bump = |id: i64, epoch: i16| {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    };
    assert_eq!(init(4, bump(b, 0)).await, (0, b, 1));
    assert_eq!(init(3, bump(b, 7)).await, (0, b, 8));
    // At the last usable epoch: a fresh id.
    let (code, c, epoch) = init(4, bump(b, i16::MAX - 1)).await;
    assert_eq!((code, epoch), (0, 0));
    assert!(c != a && c != b);
    // Only one of id and epoch: INVALID_REQUEST (42).
    assert_eq!(init(4, bump(b, -1)).await.0, 42);
    // A transactional id before FindCoordinator created `__transaction_state`: nobody
    // coordinates it yet, NOT_COORDINATOR (16).
    let transactional = || {
        fresh()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-1"))))
            .with_transaction_timeout_ms(60_000)
    };
    assert_eq!(init(4, transactional()).await.0, 16);
    broker.shutdown().await;
}

/// Transactional InitProducerId at the coordinator: epoch 0 for a new transactional id,
/// then the same id with epoch + 1 at each re-init (fencing the previous producer); a
/// timeout above `transaction.max.timeout.ms` is INVALID_TRANSACTION_TIMEOUT.
#[tokio::test(flavor = "multi_thread")]
async fn transactional_init_producer_id_bumps_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::new(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    let find = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_key(StrBytes::from_static_str("txn-1")),
    );
    match call(&mut stream, ApiKey::FindCoordinator, 3, 1, &find).await {
        Ok(ResponseKind::FindCoordinator(r)) => assert_eq!(r.error_code, 0, "{r:?}"),
        other => panic!("FindCoordinator: {other:?}"),
    }
    let mut correlation_id = 1;
    let mut init = async |timeout_ms: i32| loop {
        correlation_id += 1;
        let req = RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-1"))))
                .with_transaction_timeout_ms(timeout_ms)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        match call(&mut stream, ApiKey::InitProducerId, 4, correlation_id, &req).await {
            // The partition is still loading right after its creation: retried, as
            // clients do.
            Ok(ResponseKind::InitProducerId(r)) if r.error_code == 14 || r.error_code == 15 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(ResponseKind::InitProducerId(r)) => {
                return (r.error_code, r.producer_id.0, r.producer_epoch);
            }
            other => panic!("InitProducerId: {other:?}"),
        }
    };
    let (code, id, epoch) = init(60_000).await;
    assert_eq!((code, epoch), (0, 0));
    assert_eq!(init(60_000).await, (0, id, 1));
    assert_eq!(init(60_000).await, (0, id, 2));
    // transaction.max.timeout.ms is 900000: INVALID_TRANSACTION_TIMEOUT (50).
    assert_eq!(init(900_001).await.0, 50);

    // AddPartitionsToTxn v3 adds sweep-0 to a transaction of (id, 2); the v4+ batched
    // form with verify_only then finds it there, and not sweep-5: INVALID_TXN_STATE (48)
    // at v4, TRANSACTION_ABORTABLE (120) at v5. A wrong epoch is PRODUCER_FENCED (90).
    let ResponseKind::Metadata(_) = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        100,
        &request(ApiKey::Metadata, 12, uuid::Uuid::nil()),
    )
    .await
    .unwrap() else {
        panic!("Metadata answered with another type")
    };
    let txn_id = || TransactionalId(StrBytes::from_static_str("txn-1"));
    let topic = |partition: i32| {
        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![partition])
    };
    let add = RequestKind::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id())
            .with_v3_and_below_producer_id(ProducerId(id))
            .with_v3_and_below_producer_epoch(2)
            .with_v3_and_below_topics(vec![topic(0)]),
    );
    match call(&mut stream, ApiKey::AddPartitionsToTxn, 3, 101, &add).await {
        Ok(ResponseKind::AddPartitionsToTxn(r)) => assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 0,
            "{r:?}"
        ),
        other => panic!("AddPartitionsToTxn v3: {other:?}"),
    }
    let verify = |partition: i32, epoch: i16| {
        RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default().with_transactions(
            vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(txn_id())
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(epoch)
                    .with_verify_only(true)
                    .with_topics(vec![topic(partition)]),
            ],
        ))
    };
    let mut verified = async |version: i16, partition: i32, epoch: i16| -> i16 {
        match call(
            &mut stream,
            ApiKey::AddPartitionsToTxn,
            version,
            102,
            &verify(partition, epoch),
        )
        .await
        {
            Ok(ResponseKind::AddPartitionsToTxn(r)) => {
                r.results_by_transaction[0].topic_results[0].results_by_partition[0]
                    .partition_error_code
            }
            other => panic!("AddPartitionsToTxn v{version}: {other:?}"),
        }
    };
    assert_eq!(verified(4, 0, 2).await, 0);
    assert_eq!(verified(4, 5, 2).await, 48);
    assert_eq!(verified(5, 5, 2).await, 120);
    assert_eq!(verified(5, 0, 1).await, 90);
    broker.shutdown().await;
}
