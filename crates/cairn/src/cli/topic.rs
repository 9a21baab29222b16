//! `cairn topic create|list|describe|delete`: topic administration over the Kafka
//! protocol (CreateTopics, Metadata, DescribeConfigs, DeleteTopics), against any
//! Kafka-compatible broker.
//!
//! Output mirrors `kafka-topics.sh` so that people who know Kafka read it at a glance:
//! `describe` prints a `Topic:` line with the partition count, replication factor and the
//! topic's overridden configs, then one tab-indented line per partition with its leader,
//! replicas and in-sync replicas. Errors name the Kafka error code and what to do.
//! Exit status is nonzero if any named topic failed.

use std::time::Duration;

use anyhow::{Context, bail};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::client::{Cluster, Connection, explain, topic_name};
use super::parse_key_value;

/// Create, list, describe and delete topics on any Kafka-compatible broker.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cairn topic create orders --partitions 3 --config retention.ms=86400000
  cairn topic describe orders
  cairn topic delete orders")]
pub struct TopicArgs {
    /// Bootstrap broker host:port.
    #[arg(
        short,
        long,
        default_value = "127.0.0.1:9092",
        env = "CAIRN_BOOTSTRAP",
        global = true
    )]
    pub bootstrap: String,
    /// How long to wait for each broker response.
    #[arg(long, default_value_t = 30_000, value_name = "MS", global = true)]
    pub request_timeout_ms: u64,
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// The topic subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List(ListArgs),
    /// Show partitions (leader, replicas, in-sync replicas) and configs of topics.
    Describe(DescribeArgs),
    /// Delete topics and all their records.
    Delete(DeleteArgs),
}

/// `cairn topic create NAME ...`
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions [default: the broker's num.partitions].
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Copies of each partition [default: the broker's default.replication.factor].
    #[arg(short, long, value_parser = clap::value_parser!(i16).range(1..))]
    pub replication_factor: Option<i16>,
    /// A topic config `key=value` (retention.ms, segment.bytes, cleanup.policy, ...); repeatable.
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Ask the broker to validate the request without creating the topic.
    #[arg(long)]
    pub validate_only: bool,
    /// Succeed if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
}

/// `cairn topic list`
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Leave out internal topics such as __consumer_offsets.
    #[arg(long)]
    pub exclude_internal: bool,
}

/// `cairn topic describe [NAME...]`
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Topics to describe [default: all].
    pub names: Vec<String>,
    /// List every config with its source, not only the topic's overrides.
    #[arg(long)]
    pub all_configs: bool,
}

/// `cairn topic delete NAME...`
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Topics to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Succeed for topics that do not exist.
    #[arg(long)]
    pub if_exists: bool,
}

/// How long the broker may take to create or delete topics (the request's `timeout_ms`).
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// DescribeConfigs resource type of a topic (`ConfigResource.Type.TOPIC`).
const RESOURCE_TYPE_TOPIC: i8 = 2;

/// DescribeConfigs `config_source` of a per-topic override.
const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;

/// Runs `cairn topic ...`.
pub async fn topic(args: TopicArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    match args.command {
        TopicCommand::Create(create) => create_topic(&mut cluster, create).await,
        TopicCommand::List(list) => list_topics(&mut cluster, list).await,
        TopicCommand::Describe(describe) => describe_topics(&mut cluster, describe).await,
        TopicCommand::Delete(delete) => delete_topics(&mut cluster, delete).await,
    }
}

/// The connection to send controller-bound admin requests on: the bootstrap broker
/// (which forwards them, KIP-590) unless it answered NOT_CONTROLLER, then the controller.
async fn controller(cluster: &mut Cluster, redirected: bool) -> anyhow::Result<&mut Connection> {
    if !redirected {
        return Ok(cluster.bootstrap());
    }
    let no_topics: &[String] = &[];
    let controller_id = cluster
        .metadata(Some(no_topics), false)
        .await?
        .controller_id
        .0;
    if controller_id < 0 {
        bail!("the cluster has no active controller; retry in a moment");
    }
    cluster.broker(controller_id).await
}

async fn create_topic(cluster: &mut Cluster, args: CreateArgs) -> anyhow::Result<()> {
    let mut redirected = false;
    loop {
        let connection = controller(cluster, redirected).await?;
        let version = connection.version::<CreateTopicsRequest>()?;
        if version < 4 && (args.partitions.is_none() || args.replication_factor.is_none()) {
            bail!(
                "this broker (CreateTopics v{version}) cannot apply its own defaults: give both --partitions and --replication-factor"
            );
        }
        let topic = CreatableTopic::default()
            .with_name(topic_name(&args.name))
            .with_num_partitions(args.partitions.unwrap_or(-1))
            .with_replication_factor(args.replication_factor.unwrap_or(-1))
            .with_configs(
                args.configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_validate_only(args.validate_only);
        let response = connection.send_at(&request, version).await?;
        let result = response
            .topics
            .into_iter()
            .find(|t| t.name.0.as_str() == args.name)
            .context("CreateTopics response does not mention the topic")?;
        match ResponseError::try_from_code(result.error_code) {
            None => {}
            Some(ResponseError::NotController) if !redirected => {
                redirected = true;
                continue;
            }
            Some(ResponseError::TopicAlreadyExists) if args.if_not_exists => {
                outln!("topic '{}' already exists", args.name)?;
                return Ok(());
            }
            Some(error) => bail!(
                "cannot create topic '{}': {}",
                args.name,
                explain(error.code(), result.error_message.as_deref())
            ),
        }
        let verb = if args.validate_only {
            "would create"
        } else {
            "created"
        };
        // v5+ report what the broker chose; before that we only know what we asked for.
        if version >= 5 && result.num_partitions > 0 {
            outln!(
                "{verb} topic '{}' with {} partition(s), replication factor {}",
                args.name,
                result.num_partitions,
                result.replication_factor
            )?;
        } else {
            outln!("{verb} topic '{}'", args.name)?;
        }
        return Ok(());
    }
}

async fn list_topics(cluster: &mut Cluster, args: ListArgs) -> anyhow::Result<()> {
    let response = cluster.metadata(None, false).await?;
    let mut names: Vec<String> = response
        .topics
        .iter()
        .filter(|t| !(args.exclude_internal && t.is_internal))
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    for name in names {
        outln!("{name}")?;
    }
    Ok(())
}

async fn describe_topics(cluster: &mut Cluster, args: DescribeArgs) -> anyhow::Result<()> {
    let response = if args.names.is_empty() {
        cluster.metadata(None, false).await?
    } else {
        cluster.metadata(Some(&args.names), false).await?
    };
    let mut topics: Vec<MetadataResponseTopic> = response.topics;
    topics.sort_by(|a, b| a.name.cmp(&b.name));

    let mut failed = 0;
    let mut described = Vec::new();
    for topic in topics {
        let name = topic
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        if let Some(error) = ResponseError::try_from_code(topic.error_code) {
            eprintln!("topic '{name}': {}", explain(error.code(), None));
            failed += 1;
            continue;
        }
        described.push((name, topic));
    }

    let names: Vec<&str> = described.iter().map(|(name, _)| name.as_str()).collect();
    let configs = describe_configs(cluster.bootstrap(), &names).await;

    for (i, (name, topic)) in described.iter().enumerate() {
        let mut partitions = topic.partitions.clone();
        partitions.sort_by_key(|p| p.partition_index);
        let replication_factor = partitions.first().map_or(0, |p| p.replica_nodes.len());
        let topic_configs = match &configs {
            Ok(all) => Some(&all[i]),
            Err(_) => None,
        };
        let overrides = match topic_configs {
            Some(Ok(list)) => list
                .iter()
                .filter(|c| c.config_source == CONFIG_SOURCE_DYNAMIC_TOPIC)
                .map(config_text)
                .collect::<Vec<_>>()
                .join(","),
            Some(Err(e)) => format!("(unavailable: {e})"),
            None => "(unavailable)".to_owned(),
        };
        let id = if topic.topic_id.is_nil() {
            String::new()
        } else {
            format!("\tTopicId: {}", topic.topic_id)
        };
        outln!(
            "Topic: {name}{id}\tPartitionCount: {}\tReplicationFactor: {replication_factor}\tConfigs: {overrides}",
            partitions.len()
        )?;
        for p in &partitions {
            let leader = if p.leader_id.0 < 0 {
                "none".to_owned()
            } else {
                p.leader_id.0.to_string()
            };
            let mut line = format!(
                "\tTopic: {name}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}",
                p.partition_index,
                join_ids(&p.replica_nodes),
                join_ids(&p.isr_nodes)
            );
            if !p.offline_replicas.is_empty() {
                line.push_str(&format!("\tOffline: {}", join_ids(&p.offline_replicas)));
            }
            if let Some(error) = ResponseError::try_from_code(p.error_code) {
                line.push_str(&format!("\tError: {}", explain(error.code(), None)));
            }
            outln!("{line}")?;
        }
        if args.all_configs {
            if let Some(Ok(list)) = topic_configs {
                let mut list = list.clone();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                for config in &list {
                    outln!(
                        "\tConfig: {}\t({})",
                        config_text(config),
                        config_source_name(config.config_source)
                    )?;
                }
            }
        }
    }
    if let Err(e) = &configs {
        eprintln!("configs unavailable: {e:#}");
    }
    if failed > 0 {
        bail!("{failed} topic(s) could not be described");
    }
    Ok(())
}

/// DescribeConfigs for `names`: per topic (in order) its configs or its error.
async fn describe_configs(
    connection: &mut Connection,
    names: &[&str],
) -> anyhow::Result<Vec<Result<Vec<DescribeConfigsResourceResult>, String>>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let request = DescribeConfigsRequest::default().with_resources(
        names
            .iter()
            .map(|name| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TYPE_TOPIC)
                    .with_resource_name(StrBytes::from_string((*name).to_owned()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let response = connection.send(&request).await?;
    Ok(names
        .iter()
        .map(|name| {
            let Some(result) = response.results.iter().find(|r| {
                r.resource_type == RESOURCE_TYPE_TOPIC && r.resource_name.as_str() == *name
            }) else {
                return Err("not in the DescribeConfigs response".to_owned());
            };
            match ResponseError::try_from_code(result.error_code) {
                None => Ok(result.configs.clone()),
                Some(error) => Err(explain(error.code(), result.error_message.as_deref())),
            }
        })
        .collect())
}

fn config_text(config: &DescribeConfigsResourceResult) -> String {
    let value = if config.is_sensitive {
        "(sensitive)"
    } else {
        config.value.as_deref().unwrap_or("null")
    };
    format!("{}={value}", config.name)
}

/// Kafka's `ConfigSource` names, by DescribeConfigs `config_source` number.
fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn join_ids(ids: &[kafka_protocol::messages::BrokerId]) -> String {
    ids.iter()
        .map(|id| id.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn delete_topics(cluster: &mut Cluster, args: DeleteArgs) -> anyhow::Result<()> {
    let mut redirected = false;
    loop {
        let connection = controller(cluster, redirected).await?;
        let version = connection.version::<DeleteTopicsRequest>()?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        if version >= 6 {
            request.topics = args
                .names
                .iter()
                .map(|name| DeleteTopicState::default().with_name(Some(topic_name(name))))
                .collect();
        } else {
            request.topic_names = args.names.iter().map(|name| topic_name(name)).collect();
        }
        let response = connection.send_at(&request, version).await?;
        if !redirected
            && response
                .responses
                .iter()
                .any(|r| r.error_code == ResponseError::NotController.code())
        {
            redirected = true;
            continue;
        }
        let mut failed = 0;
        for name in &args.names {
            let Some(result) = response
                .responses
                .iter()
                .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            else {
                eprintln!("topic '{name}': not in the DeleteTopics response");
                failed += 1;
                continue;
            };
            match ResponseError::try_from_code(result.error_code) {
                None => outln!("deleted topic '{name}'")?,
                Some(ResponseError::UnknownTopicOrPartition) if args.if_exists => {
                    outln!("topic '{name}' does not exist")?
                }
                Some(error) => {
                    eprintln!(
                        "cannot delete topic '{name}': {}",
                        explain(error.code(), result.error_message.as_deref())
                    );
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            bail!("{failed} topic(s) were not deleted");
        }
        return Ok(());
    }
}
