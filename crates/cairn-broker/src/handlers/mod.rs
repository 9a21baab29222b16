//! One module per Kafka API. [`APIS`] is the table of what this broker serves, and
//! ApiVersions is computed from it, so what is advertised is exactly what is dispatched.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::server::Broker;

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod incremental_alter_configs;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
mod topics;

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
