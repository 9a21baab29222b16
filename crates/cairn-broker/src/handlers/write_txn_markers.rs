//! WriteTxnMarkers (key 27, v1): a transaction coordinator asks this broker, as leader of
//! the partitions of a transaction, to end the producer's transaction there with a COMMIT
//! or ABORT control batch (Kafka's "transaction markers").
//!
//! Each marker is appended like an `acks=all` produce (refused below
//! `min.insync.replicas`, answered once the high watermark has passed it, i.e. once every
//! in-sync replica holds it durably), so a marker the coordinator counts as written
//! survives any failover. The partition's producer state checks it: a producer epoch older
//! than the last written is INVALID_PRODUCER_EPOCH and a coordinator epoch older than the
//! last marker's is TRANSACTION_COORDINATOR_FENCED (a zombie coordinator). A marker for a
//! producer with no open transaction on the partition is written anyway (Kafka does the
//! same: every partition of the transaction gets one, data or not).
//!
//! For a partition of `__consumer_offsets`, the group coordinator is told once the marker
//! is replicated, so that the producer's pending transactional offset commits become
//! committed offsets (COMMIT) or are dropped (ABORT).
//!
//! Version 0 was removed in Kafka 4.0 and is not decoded by the protocol crate; version 2
//! (transactions v2, KIP-890) is not served.

use std::time::Duration;

use cairn_log::{ControlType, EndTxnMarker};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ProducerId, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::RequestContext;
use crate::errors::log_error_code;
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::replica_manager::AppendError;

/// How long a marker may wait for the in-sync replicas (Kafka's coordinator uses its
/// `request.timeout.ms`, 30 s, for the whole request).
const MARKER_REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(
    ctx: RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let broker = ctx.broker.clone();
    let now_ms = crate::now_ms();
    let mut results = Vec::with_capacity(request.markers.len());
    // (marker, topic, partition index in the response) of appended markers to wait for.
    let mut waits = Vec::new();
    for (m, marker) in request.markers.iter().enumerate() {
        let control = if marker.transaction_result {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let end = EndTxnMarker {
            control,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for (t, topic) in marker.topics.iter().enumerate() {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for (p, &index) in topic.partition_indexes.iter().enumerate() {
                let result =
                    WritableTxnMarkerPartitionResult::default().with_partition_index(index);
                let Some(partition) = broker.replicas.get(topic.name.as_str(), index) else {
                    partitions.push(
                        result.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    );
                    continue;
                };
                match partition.append_marker(
                    marker.producer_id.0,
                    marker.producer_epoch,
                    end,
                    now_ms,
                ) {
                    Ok(appended) => {
                        let committer = broker.replicas.group_committer.clone();
                        let partition = partition.clone();
                        let commit = marker.transaction_result;
                        let producer_id = marker.producer_id.0;
                        let broker = broker.clone();
                        waits.push(async move {
                            let replicated = tokio::time::timeout(
                                MARKER_REPLICATION_TIMEOUT,
                                super::produce::replicated(
                                    committer,
                                    partition.clone(),
                                    appended.info.last_offset + 1,
                                    appended.needs_group_commit,
                                ),
                            )
                            .await
                            .unwrap_or_else(|_| {
                                Err((
                                    ResponseError::RequestTimedOut,
                                    "the marker was not replicated in time".to_owned(),
                                ))
                            });
                            if replicated.is_ok() && partition.topic == OFFSETS_TOPIC {
                                // Awaited before answering, so that the producer's next
                                // transaction cannot commit offsets before this one is
                                // decided in the group coordinator.
                                broker
                                    .group_coordinator
                                    .complete_txn(partition.index, producer_id, commit)
                                    .await;
                            }
                            (m, t, p, replicated.err().map(|(code, _)| code))
                        });
                        partitions.push(result);
                    }
                    Err(e) => {
                        let (code, msg) = match e {
                            AppendError::Refused(code, msg) => (code, msg),
                            AppendError::Log(e) => (log_error_code(&e), e.to_string()),
                        };
                        tracing::info!(peer = %ctx.peer, topic = %topic.name.as_str(), partition = index, producer_id = marker.producer_id.0, error = ?code, "transaction marker refused: {msg}");
                        partitions.push(result.with_error_code(code.code()));
                    }
                }
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(ProducerId(marker.producer_id.0))
                .with_topics(topics),
        );
    }
    for (m, t, p, error) in futures_util::future::join_all(waits).await {
        if let Some(code) = error {
            results[m].topics[t].partitions[p].error_code = code.code();
        }
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
