//! One module per Kafka API. [`APIS`] is the table of what this broker serves, and
//! ApiVersions is computed from it, so what is advertised is exactly what is dispatched.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::server::Broker;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub(crate) mod topics;
pub mod txn_offset_commit;
pub mod write_txn_markers;

/// What a handler knows about the request it serves.
#[derive(Clone)]
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: SocketAddr,
}

/// An API this broker serves and the versions it serves of it.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub versions: VersionRange,
}

const fn spec<M: Message>(key: ApiKey) -> ApiSpec {
    ApiSpec {
        key,
        versions: M::VERSIONS,
    }
}

/// Every API served, each at every version the protocol crate decodes. Adding an API
/// means adding a line here and an arm in [`dispatch`]; the test below checks they agree.
pub const APIS: &[ApiSpec] = &[
    spec::<ProduceRequest>(ApiKey::Produce),
    spec::<FetchRequest>(ApiKey::Fetch),
    spec::<ListOffsetsRequest>(ApiKey::ListOffsets),
    spec::<MetadataRequest>(ApiKey::Metadata),
    spec::<ApiVersionsRequest>(ApiKey::ApiVersions),
    spec::<CreateTopicsRequest>(ApiKey::CreateTopics),
    spec::<DeleteTopicsRequest>(ApiKey::DeleteTopics),
    spec::<DeleteRecordsRequest>(ApiKey::DeleteRecords),
    spec::<DescribeConfigsRequest>(ApiKey::DescribeConfigs),
    spec::<CreatePartitionsRequest>(ApiKey::CreatePartitions),
    spec::<AlterConfigsRequest>(ApiKey::AlterConfigs),
    spec::<IncrementalAlterConfigsRequest>(ApiKey::IncrementalAlterConfigs),
    spec::<DescribeClusterRequest>(ApiKey::DescribeCluster),
    spec::<FindCoordinatorRequest>(ApiKey::FindCoordinator),
    spec::<JoinGroupRequest>(ApiKey::JoinGroup),
    spec::<SyncGroupRequest>(ApiKey::SyncGroup),
    spec::<HeartbeatRequest>(ApiKey::Heartbeat),
    spec::<LeaveGroupRequest>(ApiKey::LeaveGroup),
    // v9 is KIP-848's member epoch, not served yet.
    ApiSpec {
        key: ApiKey::OffsetCommit,
        versions: VersionRange { min: 2, max: 8 },
    },
    // v9 adds KIP-848's member id and epoch, not served yet.
    ApiSpec {
        key: ApiKey::OffsetFetch,
        versions: VersionRange { min: 1, max: 8 },
    },
    spec::<DescribeGroupsRequest>(ApiKey::DescribeGroups),
    spec::<ListGroupsRequest>(ApiKey::ListGroups),
    spec::<DeleteGroupsRequest>(ApiKey::DeleteGroups),
    spec::<OffsetDeleteRequest>(ApiKey::OffsetDelete),
    spec::<OffsetForLeaderEpochRequest>(ApiKey::OffsetForLeaderEpoch),
    spec::<DescribeQuorumRequest>(ApiKey::DescribeQuorum),
    spec::<AlterPartitionReassignmentsRequest>(ApiKey::AlterPartitionReassignments),
    spec::<ListPartitionReassignmentsRequest>(ApiKey::ListPartitionReassignments),
    spec::<ElectLeadersRequest>(ApiKey::ElectLeaders),
    spec::<DescribeLogDirsRequest>(ApiKey::DescribeLogDirs),
    spec::<InitProducerIdRequest>(ApiKey::InitProducerId),
    // v4 only allows TRANSACTION_ABORTABLE (KIP-890 verification, which we do not do);
    // v5 is transactions v2 (the offsets partition joins the transaction implicitly).
    ApiSpec {
        key: ApiKey::TxnOffsetCommit,
        versions: VersionRange { min: 0, max: 4 },
    },
    spec::<AddPartitionsToTxnRequest>(ApiKey::AddPartitionsToTxn),
    spec::<AddOffsetsToTxnRequest>(ApiKey::AddOffsetsToTxn),
    // v5 is transactions v2 (KIP-890 part 2), not served.
    ApiSpec {
        key: ApiKey::EndTxn,
        versions: VersionRange { min: 0, max: 4 },
    },
    spec::<WriteTxnMarkersRequest>(ApiKey::WriteTxnMarkers),
    spec::<DescribeTransactionsRequest>(ApiKey::DescribeTransactions),
    spec::<DescribeProducersRequest>(ApiKey::DescribeProducers),
    // v2's transactional-id regular expression is not served.
    ApiSpec {
        key: ApiKey::ListTransactions,
        versions: VersionRange { min: 0, max: 1 },
    },
];

/// The versions served of `key`, or `None` if the API is not served.
pub fn supported_versions(key: ApiKey) -> Option<VersionRange> {
    APIS.iter().find(|a| a.key == key).map(|a| a.versions)
}

/// Runs the handler of a decoded request. `None` means "send no response" (acks=0).
pub async fn dispatch(ctx: RequestContext, request: RequestKind) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::Produce(r) => ResponseKind::Produce(produce::handle(ctx, r).await?),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, r)),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(ctx, r))
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(ctx, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(ctx, r).await)
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(ctx, r).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(ctx, r).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(ctx, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(ctx, r).await)
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(ctx, r)),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r))
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(ctx, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            list_partition_reassignments::handle(ctx, r).await,
        ),
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(ctx, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(end_txn::handle(ctx, r).await),
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(ctx, r).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(ctx, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(ctx, r))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions::handle(ctx, r))
        }
        other => {
            // The connection checks the table before decoding, so this is a table/dispatch
            // mismatch: a bug. The client's request times out; the log says why.
            tracing::error!(request = ?std::mem::discriminant(&other), "request decoded for an API missing from dispatch");
            return None;
        }
    })
}

/// Runs blocking work (metadata commits, log creation and deletion) off the runtime.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking broker task panicked")
}
