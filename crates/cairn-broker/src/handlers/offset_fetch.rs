//! OffsetFetch (key 9, v1–v8): committed offsets of one group, or of several (v8, KIP-709).
//! A partition without a committed offset answers offset -1 and empty metadata.
//!
//! Offsets committed inside a transaction (TxnOffsetCommit) are not answered until the
//! transaction commits. With `require_stable` (v7+, KIP-447: consumers with
//! `isolation.level=read_committed`), a partition that has such a pending offset answers
//! UNSTABLE_OFFSET_COMMIT (88) and offset -1, and the consumer retries; without it, the
//! committed offset is answered as if the transaction did not exist.

use cairn_group::CommittedOffset;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group_coordinator::{coordinator_error_code, group_error_code};

/// One topic's committed offsets: (topic, [(partition, committed, error)]).
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>, i16)>);
/// One group's answer, topics in request order, or the group's error.
type Fetched = Result<Vec<TopicOffsets>, ResponseError>;

pub async fn handle(ctx: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = fetch(&ctx, &g.group_id, wanted, request.require_stable).await;
            let mut group = OffsetFetchResponseGroup::default().with_group_id(g.group_id);
            match fetched {
                Ok(topics) => {
                    group.topics = topics
                        .into_iter()
                        .map(|(name, ps)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_string(name)))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|(p, c, code)| {
                                            let (offset, epoch, metadata) = unpack(c);
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(metadata))
                                                .with_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                }
                Err(code) => group.error_code = code.code(),
            }
            groups.push(group);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let asked: Vec<(String, Vec<i32>)> = wanted.clone().unwrap_or_default();
    let require_stable = ctx.version >= 7 && request.require_stable;
    match fetch(&ctx, &request.group_id, wanted, require_stable).await {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, c, code)| {
                                    let (offset, epoch, metadata) = unpack(c);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(metadata))
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // v2+ carries a group-level error; v1 only per partition, so repeat it there.
        Err(code) if ctx.version >= 2 => {
            OffsetFetchResponse::default().with_error_code(code.code())
        }
        Err(code) => OffsetFetchResponse::default().with_topics(
            asked
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(StrBytes::from_static_str("")))
                                        .with_error_code(code.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

fn unpack(c: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::from_static_str("")),
    }
}

async fn fetch(
    ctx: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Fetched {
    let broker = &ctx.broker;
    let partitions: Option<Vec<(String, i32)>> = wanted.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    });
    let coordinator = &broker.group_coordinator;
    let found: Vec<((String, i32), Option<CommittedOffset>, i16)> = if require_stable {
        coordinator
            .fetch_stable_offsets(broker, group_id, partitions)
            .await
            .map_err(|e| coordinator_error_code(&e))?
            .into_iter()
            .map(|(tp, r)| match r {
                Ok(committed) => (tp, committed, 0),
                Err(e) => (tp, None, group_error_code(&e).code()),
            })
            .collect()
    } else {
        coordinator
            .fetch_offsets(broker, group_id, partitions)
            .await
            .map_err(|e| coordinator_error_code(&e))?
            .into_iter()
            .map(|(tp, committed)| (tp, committed, 0))
            .collect()
    };
    // Group by topic, keeping the order of first appearance.
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for ((topic, partition), committed, code) in found {
        match topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, ps)) => ps.push((partition, committed, code)),
            None => topics.push((topic, vec![(partition, committed, code)])),
        }
    }
    Ok(topics)
}
