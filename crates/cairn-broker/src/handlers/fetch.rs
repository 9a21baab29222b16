//! Fetch (key 1) for consumers and for follower replicas: whole batches up to the high
//! watermark (consumers) or the log end offset (followers, `replica_id` ≥ 0), parked in a
//! purgatory until `min_bytes` are available or `max_wait_ms` passes. Only the leader
//! serves a partition; other replicas answer NOT_LEADER_OR_FOLLOWER.
//!
//! ## Follower fetches
//! A follower's `fetch_offset` is its log end offset: the leader records it
//! ([`crate::replica_manager::Partition::on_follower_fetch`]), which may move the high
//! watermark (completing parked `acks=all` produces) and may propose adding the follower
//! back to the ISR. Followers park on the log end offset, consumers on the high watermark.
//!
//! ## DelayedFetch
//! Before reading, the request subscribes to the high-watermark channel of every
//! partition it names; if the read returns fewer than `min_bytes`, it waits until any of
//! them moves (or the deadline), then reads again. Subscribing first means an append
//! between the read and the wait is never missed.
//!
//! ## Limits (KIP-74)
//! `partition_max_bytes` caps each partition and `max_bytes` the response, except that the
//! first batch of the first partition with data is returned whole even when larger, so a
//! consumer always makes progress.
//!
//! ## Sessions (KIP-227)
//! This broker declines to create fetch sessions: it answers `session_id` 0, which tells
//! the client to keep sending full fetch requests. A request naming a session gets
//! FETCH_SESSION_ID_NOT_FOUND, and the client falls back to a full request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;
use tokio::time::Instant;

use super::RequestContext;
use crate::errors::{check_leader_epoch, log_error_code};

/// Longest a fetch may park, whatever the client asks for.
pub const FETCH_MAX_WAIT_MS_MAX: i32 = 60_000;
/// `isolation_level` of a consumer that reads committed transactional data only: it reads
/// up to the last stable offset and gets the aborted transactions of what it read.
const ISOLATION_READ_COMMITTED: i8 = 1;

pub async fn handle(ctx: RequestContext, request: FetchRequest) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    let max_wait =
        Duration::from_millis(request.max_wait_ms.clamp(0, FETCH_MAX_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        let mut receivers = Vec::new();
        let (responses, bytes, errors) = read_all(&ctx, &request, &mut receivers);
        if bytes >= min_bytes.max(1) || errors || Instant::now() >= deadline || receivers.is_empty()
        {
            for topic in &responses {
                let sent: usize = topic
                    .partitions
                    .iter()
                    .map(|p| p.records.as_ref().map_or(0, Bytes::len))
                    .sum();
                if sent > 0 {
                    metrics::counter!(crate::metrics::BYTES_OUT, "topic" => topic_label(&ctx, topic))
                        .increment(sent as u64);
                }
            }
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        // Not enough yet: what was read is read again after the wait, and is not held
        // (with its buffers) while this fetch is parked.
        drop(responses);
        let mut changes: FuturesUnordered<_> = receivers
            .iter_mut()
            .map(|rx: &mut watch::Receiver<i64>| rx.changed())
            .collect();
        let parked = metrics::gauge!(crate::metrics::FETCH_PURGATORY);
        parked.increment(1.0);
        tokio::select! {
            _ = changes.next() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        parked.decrement(1.0);
    }
}

/// The topic's name for metrics labels (v13+ responses carry only the topic id).
fn topic_label(ctx: &RequestContext, topic: &FetchableTopicResponse) -> String {
    if ctx.version >= 13 {
        ctx.broker
            .metadata
            .state()
            .topic_by_id(topic.topic_id)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    } else {
        topic.topic.to_string()
    }
}

/// Reads every requested partition once. Returns the topics, the record bytes read, and
/// whether any partition had an error (which answers the fetch at once, as Kafka does).
fn read_all(
    ctx: &RequestContext,
    request: &FetchRequest,
    receivers: &mut Vec<watch::Receiver<i64>>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let broker = &ctx.broker;
    let state = broker.metadata.state();
    let replica_id = if ctx.version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let now_ms = crate::now_ms();
    let mut remaining = request.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut errors = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = if ctx.version >= 13 {
            state.topic_by_id(topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.as_str().to_owned())
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            if request.isolation_level == ISOLATION_READ_COMMITTED {
                data = data.with_aborted_transactions(Some(Vec::new()));
            }
            let Some(partition) = name
                .as_deref()
                .and_then(|n| broker.replicas.get(n, p.partition))
            else {
                let code = if name.is_none() {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                errors = true;
                partitions.push(data.with_error_code(code.code()));
                continue;
            };
            if let Err(code) = check_leader_epoch(p.current_leader_epoch, partition.leader_epoch())
            {
                receivers.push(partition.subscribe());
                errors = true;
                partitions.push(data.with_error_code(code.code()));
                continue;
            }
            let max_bytes = (p.partition_max_bytes.max(0) as usize).min(remaining);
            let mut lso = None;
            let read = if replica_id >= 0 {
                receivers.push(partition.subscribe_log_end());
                match partition.on_follower_fetch(replica_id, p.fetch_offset, now_ms) {
                    Ok(expand) => {
                        if let Some(proposal) = expand {
                            tracing::info!(topic = %partition.topic, partition = partition.index, replica_id, isr = ?proposal.new_isr, "follower caught up; proposing ISR expansion");
                            crate::replication::propose_isr_change(
                                broker,
                                partition.clone(),
                                proposal,
                            );
                        }
                        Some(partition.read_for_follower(p.fetch_offset, max_bytes))
                    }
                    Err(code) => {
                        errors = true;
                        partitions.push(data.with_error_code(code.code()));
                        continue;
                    }
                }
            } else if request.isolation_level == ISOLATION_READ_COMMITTED {
                receivers.push(partition.subscribe());
                partition.is_leader().then(|| {
                    partition
                        .read_committed(p.fetch_offset, max_bytes, total == 0)
                        .map(|(read, bound, aborted)| {
                            lso = Some(bound);
                            data.aborted_transactions = Some(
                                aborted
                                    .iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first_offset)
                                    })
                                    .collect(),
                            );
                            read
                        })
                })
            } else {
                receivers.push(partition.subscribe());
                partition
                    .is_leader()
                    .then(|| partition.read(p.fetch_offset, max_bytes, total == 0))
            };
            let Some(read) = read else {
                errors = true;
                partitions.push(data.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                continue;
            };
            let hw = partition.high_watermark();
            // A read_committed read already computed the LSO it was bounded by, under the
            // same lock: answer that one rather than locking the log again.
            let lso = lso.unwrap_or_else(|| partition.last_stable_offset());
            data = data.with_high_watermark(hw).with_last_stable_offset(lso);
            match read {
                Ok(read) => {
                    total += read.records.len();
                    remaining = remaining.saturating_sub(read.records.len());
                    data = data
                        .with_log_start_offset(read.log_start_offset)
                        .with_records(Some(read.records));
                }
                Err(e) => {
                    errors = true;
                    tracing::debug!(peer = %ctx.peer, topic = ?name, partition = p.partition, error = %e, "fetch failed");
                    data = data
                        .with_error_code(log_error_code(&e).code())
                        .with_log_start_offset(partition.log_start_offset())
                        .with_records(Some(Bytes::new()));
                }
            }
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (responses, total, errors)
}
