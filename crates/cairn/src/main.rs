//! # cairn — the binary
//!
//! `cairn serve` (the default when no subcommand is given) runs a broker; the other
//! subcommands are Kafka-protocol clients that work against any Kafka-compatible broker:
//! `cairn topic create|list|describe|delete`, `cairn produce`, `cairn consume`,
//! `cairn group list|describe|lag|reset-offsets|delete`, `cairn cluster status`.
//!
//! Settings of `cairn serve` come, highest precedence first, from command-line flags,
//! `CAIRN_*` environment variables, the TOML file named by `--config`, then defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cairn_broker::{Broker, BrokerConfig};
use clap::{Parser, Subcommand};
use serde::Deserialize;

mod cli;

/// Decoding untrusted frames must not abort the process; see `cairn_broker::alloc`.
#[global_allocator]
static ALLOCATOR: cairn_broker::alloc::NoReserveAllocator = cairn_broker::alloc::NoReserveAllocator;

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a Kafka-compatible distributed log broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (the default).
    Serve(ServeArgs),
    /// Create, list, describe and delete topics on any Kafka-compatible broker.
    Topic(cli::TopicArgs),
    /// Produce lines from standard input as records.
    Produce(cli::ProduceArgs),
    /// Print records of a partition as lines.
    Consume(cli::ConsumeArgs),
    /// List, describe, show the lag of, reset the offsets of and delete consumer groups.
    Group(cli::GroupArgs),
    /// Show the metadata quorum, brokers, and under-replicated and offline partitions.
    Cluster(cli::ClusterArgs),
    /// Move partitions to other brokers (reassign, list reassignments in progress).
    Partition(cli::PartitionArgs),
    /// Decommission a broker: move every partition replica off it.
    Broker(cli::BrokerArgs),
}

#[derive(clap::Args, Debug, Default)]
struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// Where partitions and metadata live [default: ./data].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Kafka listener [default: 127.0.0.1:9092].
    #[arg(long, env = "CAIRN_LISTEN")]
    listen: Option<SocketAddr>,
    /// host:port given to clients in Metadata [default: the listener's address].
    #[arg(long, env = "CAIRN_ADVERTISE")]
    advertise: Option<String>,
    /// This broker's id [default: 1].
    #[arg(long, env = "CAIRN_NODE_ID")]
    node_id: Option<i32>,
    /// Rack (failure domain) of this broker, Kafka's `broker.rack`: replicas of a partition
    /// are spread across racks.
    #[arg(long, env = "CAIRN_RACK")]
    rack: Option<String>,
    /// Metadata quorum (Raft) listener of this voter, `host:port`; needed with other
    /// voters, refused on an observer.
    #[arg(long, env = "CAIRN_CONTROLLER_LISTEN")]
    controller_listen: Option<String>,
    /// Metadata quorum voters `id@host:port,...` (their controller listeners) [default:
    /// this node alone, no controller port]. A `--node-id` not listed runs as an observer:
    /// it follows the voters' committed metadata log without voting.
    #[arg(long, env = "CAIRN_VOTERS")]
    voters: Option<String>,
    /// HTTP listener for Prometheus `/metrics`, `/health` and `/ready` [default: off].
    #[arg(long, env = "CAIRN_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log format: `text` (human) or `json` (one object per line) [default: text].
    #[arg(long, env = "CAIRN_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// A Kafka property, `key=value`, repeatable: broker settings (num.partitions,
    /// default.replication.factor, auto.create.topics.enable, socket.request.max.bytes,
    /// log.retention.check.interval.ms) or topic defaults (retention.ms, segment.bytes, ...).
    #[arg(
        long = "set",
        value_name = "KEY=VALUE",
        env = "CAIRN_SET",
        value_delimiter = ';'
    )]
    set: Vec<String>,
}

/// The `--config` file: the same settings as the flags, plus `[properties]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    node_id: Option<i32>,
    rack: Option<String>,
    controller_listen: Option<String>,
    voters: Option<String>,
    metrics_listen: Option<SocketAddr>,
    #[serde(default)]
    properties: BTreeMap<String, toml::Value>,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Text,
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = matches!(&cli.command, Some(Command::Serve(a)) if a.log_format == Some(LogFormat::Json))
        || std::env::var("CAIRN_LOG_FORMAT").is_ok_and(|v| v == "json");
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => serve(args).await,
            Command::Topic(args) => cli::topic(args).await,
            Command::Produce(args) => cli::produce(args).await,
            Command::Consume(args) => cli::consume(args).await,
            Command::Group(args) => cli::group(args).await,
            Command::Cluster(args) => cli::cluster(args).await,
            Command::Partition(args) => cli::partition(args).await,
            Command::Broker(args) => cli::broker(args).await,
        }
    })
}

/// Broker-level properties; every other `--set` key is a topic default for the log.
const BROKER_PROPERTIES: &[&str] = &[
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "socket.request.max.bytes",
    "log.retention.check.interval.ms",
    "replica.lag.time.max.ms",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
];

/// What `cairn serve` runs: the broker's settings and the metrics listener, if any.
struct ServeConfig {
    broker: BrokerConfig,
    metrics_listen: Option<SocketAddr>,
}

fn serve_config(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let file: ConfigFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let controller_listen = args.controller_listen.or(file.controller_listen);
    let voters = args.voters.or(file.voters);
    let metrics_listen = args.metrics_listen.or(file.metrics_listen);
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:9092".parse().expect("valid"));
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./data"));
    let mut config = BrokerConfig::new(data_dir, listen);
    config.advertise = args.advertise.or(file.advertise);
    config.rack = args.rack.or(file.rack);
    config.node_id = args.node_id.or(file.node_id).unwrap_or(1);
    if let Some(voters) = voters {
        config.voters = parse_voters(&voters)?;
    }
    if let Some(listen) = controller_listen {
        config.controller_listen = Some(
            listen
                .parse()
                .with_context(|| format!("--controller-listen '{listen}' must be host:port"))?,
        );
    }
    if config.node_id <= 0 {
        bail!("--node-id {} must be positive", config.node_id);
    }
    if config.voters.is_empty() {
        // A one-voter quorum of this node alone.
    } else if !config.voters.contains_key(&config.node_id) {
        // An observer: it follows the voters' log and has no controller listener.
        if config.controller_listen.is_some() {
            bail!(
                "--node-id {} is not among --voters, so it runs as an observer, which has no controller listener: \
                 drop --controller-listen, or add the node to --voters to make it a voter",
                config.node_id
            );
        }
    } else if config.voters.len() > 1 && config.controller_listen.is_none() {
        bail!(
            "--node-id {} is a voter and --voters names other nodes: --controller-listen is required (its address in --voters)",
            config.node_id
        );
    }

    let mut properties: BTreeMap<String, String> = file
        .properties
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    for kv in args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set '{kv}' must be key=value"))?;
        properties.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    for (key, value) in properties {
        let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("property {key}={value}: {e}");
        match key.as_str() {
            "num.partitions" => config.num_partitions = value.parse().map_err(|e| bad(&e))?,
            "default.replication.factor" => {
                config.default_replication_factor = Some(value.parse().map_err(|e| bad(&e))?)
            }
            "auto.create.topics.enable" => {
                config.auto_create_topics_enable = value.parse().map_err(|e| bad(&e))?
            }
            "socket.request.max.bytes" => {
                config.socket_request_max_bytes = value.parse().map_err(|e| bad(&e))?
            }
            "log.retention.check.interval.ms" => {
                config.log_retention_check_interval_ms = value.parse().map_err(|e| bad(&e))?
            }
            "replica.lag.time.max.ms" => {
                config.replica_lag_time_max_ms = value.parse().map_err(|e| bad(&e))?
            }
            "broker.session.timeout.ms" => {
                config.broker_session_timeout_ms = value.parse().map_err(|e| bad(&e))?
            }
            "broker.heartbeat.interval.ms" => {
                config.broker_heartbeat_interval_ms = value.parse().map_err(|e| bad(&e))?
            }
            "auto.leader.rebalance.enable" => {
                config.auto_leader_rebalance_enable = value.parse().map_err(|e| bad(&e))?
            }
            "leader.imbalance.check.interval.seconds" => {
                let seconds: u64 = value.parse().map_err(|e| bad(&e))?;
                config.leader_imbalance_check_interval_ms = seconds.saturating_mul(1000)
            }
            _ if cairn_broker::config::GROUP_PROPERTIES.contains(&key.as_str()) => {
                if let Some(Err(e)) = config.apply_group_property(&key, &value) {
                    bail!("{e}");
                }
            }
            _ if cairn_broker::config::TXN_PROPERTIES.contains(&key.as_str()) => {
                if let Some(Err(e)) = config.apply_txn_property(&key, &value) {
                    bail!("{e}");
                }
            }
            _ if cairn_log::LogConfig::KNOWN_KEYS.contains(&key.as_str()) => {
                config.log_defaults.insert(key, value);
            }
            _ if cairn_broker::config::REPLICATION_TOPIC_KEYS.contains(&key.as_str()) => {
                cairn_broker::config::validate_replication_config(&key, &value)
                    .map_err(|e| anyhow::anyhow!(e))?;
                config.log_defaults.insert(key, value);
            }
            _ => bail!(
                "unknown property '{key}'; broker properties: {}; topic defaults: {}",
                BROKER_PROPERTIES.join(", "),
                cairn_log::LogConfig::KNOWN_KEYS.join(", ")
            ),
        }
    }
    config.base_log_config().context("invalid topic defaults")?;
    Ok(ServeConfig {
        broker: config,
        metrics_listen,
    })
}

/// Parses `--voters 1@host:port,2@host:port,...`.
fn parse_voters(voters: &str) -> anyhow::Result<BTreeMap<i32, String>> {
    let mut parsed = BTreeMap::new();
    for voter in voters.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let (id, addr) = voter
            .split_once('@')
            .with_context(|| format!("voter '{voter}' must be id@host:port"))?;
        let id: i32 = id
            .parse()
            .with_context(|| format!("voter '{voter}': '{id}' is not a node id"))?;
        if id <= 0 {
            bail!("voter '{voter}': node ids are positive");
        }
        if !addr.contains(':') {
            bail!("voter '{voter}': '{addr}' must be host:port");
        }
        if parsed.insert(id, addr.to_owned()).is_some() {
            bail!("voter id {id} appears twice in --voters");
        }
    }
    Ok(parsed)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = serve_config(args)?;
    // The metrics listener comes up first, so /health answers during a long log recovery
    // and /ready says when it is over.
    let broker_slot = cairn_broker::metrics::BrokerSlot::default();
    if let Some(addr) = config.metrics_listen {
        let handle = cairn_broker::metrics::install()?;
        let local = cairn_broker::metrics::serve_http(addr, handle, broker_slot.clone()).await?;
        tracing::info!(listen = %local, "metrics, health and readiness on http://{local}/metrics, /health, /ready");
    }
    let handle = Broker::start(config.broker).await?;
    let _ = broker_slot.set(handle.broker().clone());
    shutdown_signal().await;
    tracing::info!("shutting down: flushing logs");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node_id: i32, voters: &str, controller_listen: Option<&str>) -> anyhow::Result<()> {
        serve_config(ServeArgs {
            node_id: Some(node_id),
            voters: Some(voters.to_owned()),
            controller_listen: controller_listen.map(str::to_owned),
            ..ServeArgs::default()
        })
        .map(|_| ())
    }

    #[test]
    fn voters_observers_and_bad_combinations() {
        let voters = "1@127.0.0.1:9093,2@127.0.0.1:9094,3@127.0.0.1:9095";
        assert!(config(1, voters, Some("127.0.0.1:9093")).is_ok(), "a voter");
        assert!(config(4, voters, None).is_ok(), "an observer");
        let e = config(1, voters, None).unwrap_err().to_string();
        assert!(e.contains("--controller-listen is required"), "{e}");
        let e = config(4, voters, Some("127.0.0.1:9096"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("observer"), "{e}");
        assert!(config(0, voters, None).is_err(), "node id 0");
        assert!(config(1, "1@127.0.0.1:9093", None).is_ok(), "one voter");
    }
}
