//! Produce (key 0): append the client's batches unchanged, answer with their offsets.
//!
//! Only the partition's leader appends (NOT_LEADER_OR_FOLLOWER elsewhere).
//!
//! ## Durability per `acks`
//! - `acks=0`: appended to the leader's log (page cache); no response is sent.
//! - `acks=1`: answered once appended to the leader's log (page cache), as in Kafka.
//! - `acks=-1` (all): refused with NOT_ENOUGH_REPLICAS while the ISR is smaller than
//!   `min.insync.replicas`; otherwise parked until the high watermark passes the records,
//!   i.e. until every in-sync replica has them — durably, under the default group-commit
//!   policy: the leader's fdatasync ([`crate::group_commit`]) and each follower's before it
//!   fetches further. Answered NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below
//!   the minimum meanwhile, NOT_LEADER_OR_FOLLOWER if leadership moved (the records may
//!   or may not survive: the producer retries), REQUEST_TIMED_OUT after `timeout_ms`.
//!
//! ## Idempotent producers
//! Batches with a producer id (from InitProducerId) are checked by the partition log's
//! producer state (`cairn_log::producer_state`): a retry of one of the producer's last 5
//! batches appends nothing and is answered with success and the *original* offsets
//! (`log_append_time_ms` the original's on LogAppendTime topics, else -1), and with
//! `acks=all` only once the high watermark has passed the original batch, as for a fresh
//! append; a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch
//! INVALID_PRODUCER_EPOCH, a negative sequence INVALID_RECORD (see [`log_error_code`]).
//! Followers record the same state from the replicated batches, so it moves with
//! leadership.
//!
//! ## Transactions
//! Transactional batches (the transactional bit set, from a producer that has called
//! InitProducerId with its `transactional_id`) are appended like idempotent ones and start
//! (or continue) the producer's transaction in the partition's producer state, which holds
//! the last stable offset below their first offset until the coordinator's COMMIT or ABORT
//! marker arrives (WriteTxnMarkers). A non-transactional batch from a producer with an
//! open transaction is INVALID_TXN_STATE. As in Kafka before KIP-890, the leader does not
//! ask the coordinator whether the partition was added to the transaction. Control
//! batches from clients are refused with INVALID_RECORD: only markers write them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_log::{Batches, FlushPolicy, LogError, TimestampType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::errors::log_error_code;
use crate::replica_manager::{AppendError, LeaderAppend, Partition};

pub async fn handle(ctx: RequestContext, request: ProduceRequest) -> Option<ProduceResponse> {
    let broker = ctx.broker.clone();
    let acks = request.acks;
    let state = broker.metadata.state();
    let now_ms = crate::now_ms();
    let refuse_all = if !matches!(acks, -1..=1) {
        Some((
            ResponseError::InvalidRequiredAcks,
            format!("acks={acks} is not one of 0, 1, -1"),
        ))
    } else {
        None
    };

    let mut responses = Vec::with_capacity(request.topic_data.len());
    // (topic index, partition index in response, partition, offset after the records,
    // whether the group committer must make them durable) of appends to wait for or flush.
    let mut appended: Vec<(usize, usize, Arc<Partition>, i64, bool)> = Vec::new();
    for topic in request.topic_data {
        let name = if ctx.version >= 13 {
            state.topic_by_id(topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.name.as_str().to_owned())
        };
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let response = PartitionProduceResponse::default().with_index(p.index);
            let partition = name
                .as_deref()
                .and_then(|n| broker.replicas.get(n, p.index));
            let outcome = match (&refuse_all, partition) {
                (Some((code, msg)), _) => Err((*code, msg.clone())),
                (None, None) if ctx.version >= 13 && name.is_none() => {
                    Err((ResponseError::UnknownTopicId, "unknown topic id".to_owned()))
                }
                (None, None) => Err((
                    ResponseError::UnknownTopicOrPartition,
                    "this broker does not host that partition".to_owned(),
                )),
                (None, Some(partition)) => {
                    append(&partition, p.records, now_ms, acks == -1).map(|r| (r, partition))
                }
            };
            partition_responses.push(match outcome {
                Ok((done, partition)) => {
                    if let Some((records, bytes)) = done.appended {
                        let topic_label = [("topic", partition.topic.clone())];
                        metrics::counter!(crate::metrics::RECORDS_IN, &topic_label)
                            .increment(u64::from(records));
                        metrics::counter!(crate::metrics::BYTES_IN, &topic_label)
                            .increment(bytes as u64);
                    } else {
                        tracing::debug!(peer = %ctx.peer, topic = %partition.topic, partition = p.index, base_offset = done.base_offset, "duplicate idempotent batch answered with its original offsets");
                    }
                    if acks == -1 || done.needs_group_commit {
                        appended.push((
                            responses.len(),
                            partition_responses.len(),
                            partition,
                            done.last_offset + 1,
                            done.needs_group_commit,
                        ));
                    }
                    response
                        .with_base_offset(done.base_offset)
                        .with_log_append_time_ms(done.log_append_time_ms)
                        .with_log_start_offset(done.log_start_offset)
                }
                Err((code, msg)) => {
                    metrics::counter!(crate::metrics::PARTITION_ERRORS, "api" => "Produce", "error" => format!("{code:?}")).increment(1);
                    tracing::debug!(peer = %ctx.peer, topic = ?name, partition = p.index, error = ?code, "produce refused: {msg}");
                    response
                        .with_error_code(code.code())
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                        .with_error_message(Some(StrBytes::from_string(msg)))
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partition_responses),
        );
    }

    // acks=all waits for the high watermark; other acks only ask for a group commit.
    let committer = &broker.replicas.group_committer;
    let mut waits = Vec::new();
    for (t, p, partition, end, needs_group_commit) in appended {
        if acks == -1 {
            let committer = committer.clone();
            waits.push(async move {
                (
                    t,
                    p,
                    replicated(committer, partition, end, needs_group_commit).await,
                )
            });
        } else if needs_group_commit {
            committer.request(partition);
        }
    }
    if !waits.is_empty() {
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let all = futures_util::future::join_all(waits);
        let parked = metrics::gauge!(crate::metrics::PRODUCE_PURGATORY);
        parked.increment(1.0);
        let outcome = tokio::time::timeout(timeout, all).await;
        parked.decrement(1.0);
        let results = outcome.unwrap_or_default();
        let timed_out = results.is_empty();
        for (t, p, error) in results {
            if let Err((code, msg)) = error {
                let r = &mut responses[t].partition_responses[p];
                r.error_code = code.code();
                r.error_message = Some(StrBytes::from_string(msg));
            }
        }
        if timed_out {
            for r in responses
                .iter_mut()
                .flat_map(|t| t.partition_responses.iter_mut())
            {
                if r.error_code == 0 {
                    r.error_code = ResponseError::RequestTimedOut.code();
                    r.error_message = Some(StrBytes::from_static_str(
                        "timed out waiting for the in-sync replicas to have the records",
                    ));
                }
            }
        }
    }

    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

/// Waits until the high watermark reaches `end` (the offset after the appended records),
/// first making them durable here under group commit. Also used by WriteTxnMarkers.
pub(crate) async fn replicated(
    committer: crate::group_commit::GroupCommitter,
    partition: Arc<Partition>,
    end: i64,
    needs_group_commit: bool,
) -> Result<(), (ResponseError, String)> {
    let mut role = partition.subscribe_role();
    let mut hw = partition.subscribe();
    if needs_group_commit {
        committer
            .flush(partition.clone())
            .await
            .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?;
    }
    loop {
        if *hw.borrow_and_update() >= end || partition.high_watermark() >= end {
            break;
        }
        if !partition.is_leader() {
            return Err((
                ResponseError::NotLeaderOrFollower,
                "leadership moved before the records were replicated".to_owned(),
            ));
        }
        // Below min.insync.replicas the high watermark does not move (KIP-966): answer
        // now rather than at the request timeout.
        let isr = partition.info().isr;
        let min_insync = partition.min_insync_replicas();
        if (isr.len() as i32) < min_insync {
            return Err((
                ResponseError::NotEnoughReplicasAfterAppend,
                format!(
                    "appended, but the ISR {isr:?} shrank below min.insync.replicas={min_insync} before the records were replicated"
                ),
            ));
        }
        tokio::select! {
            changed = hw.changed() => if changed.is_err() {
                return Err((
                    ResponseError::NotLeaderOrFollower,
                    "the partition was closed before the records were replicated".to_owned(),
                ));
            },
            _ = role.changed() => {}
        }
    }
    let info = partition.info();
    let min_insync = partition.min_insync_replicas();
    if (info.isr.len() as i32) < min_insync {
        return Err((
            ResponseError::NotEnoughReplicasAfterAppend,
            format!(
                "appended, but the ISR {:?} shrank below min.insync.replicas={min_insync}",
                info.isr
            ),
        ));
    }
    Ok(())
}

/// What a successful produce to one partition answers: a fresh append or a recognised
/// duplicate of an idempotent producer's batch (`appended` is `None`).
struct Produced {
    base_offset: i64,
    last_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    needs_group_commit: bool,
    /// Records and bytes appended, for the metrics; `None` for a duplicate.
    appended: Option<(u32, usize)>,
}

/// Validates and appends one partition's batches.
fn append(
    partition: &Partition,
    records: Option<Bytes>,
    now_ms: i64,
    check_min_insync: bool,
) -> Result<Produced, (ResponseError, String)> {
    let Some(records) = records else {
        return Err((
            ResponseError::CorruptMessage,
            "the partition's records are null".to_owned(),
        ));
    };
    for batch in Batches::new(&records) {
        let (header, _) = batch.map_err(|e| (log_error_code(&e), e.to_string()))?;
        if header.is_control() {
            return Err((
                ResponseError::InvalidRecord,
                "clients may not write control batches".to_owned(),
            ));
        }
    }
    // Written to the segment from the request's own bytes: the log patches offsets into a
    // copy of each batch header only.
    match partition.append_as_leader(&records, now_ms, check_min_insync) {
        Ok(LeaderAppend {
            info,
            log_start_offset,
            needs_group_commit,
        }) => Ok(Produced {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset,
            needs_group_commit,
            appended: Some((info.records_count, info.bytes)),
        }),
        Err(AppendError::Log(LogError::DuplicateBatch {
            base_offset,
            last_offset,
            timestamp,
        })) => {
            // Nothing appended; the original may still await its fsync and replication,
            // so the answer waits for them like a fresh append would.
            let (log_append, log_start_offset, needs_group_commit) = partition.with_log(|log| {
                (
                    log.config().message_timestamp_type == TimestampType::LogAppendTime,
                    log.log_start_offset(),
                    matches!(log.config().flush_policy, FlushPolicy::GroupCommit),
                )
            });
            Ok(Produced {
                base_offset,
                last_offset,
                log_append_time_ms: if log_append { timestamp } else { -1 },
                log_start_offset,
                needs_group_commit,
                appended: None,
            })
        }
        Err(AppendError::Refused(code, msg)) => Err((code, msg)),
        Err(AppendError::Log(e)) => Err((log_error_code(&e), e.to_string())),
    }
}
