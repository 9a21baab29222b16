//! [`BrokerConfig`]: everything `cairn serve` can be told, with Kafka's defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use cairn_log::LogConfig;

/// Largest request frame accepted (`socket.request.max.bytes`, Kafka's default 100 MiB).
/// A larger size prefix closes the connection before anything is allocated.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: usize = 100 * 1024 * 1024;
/// Requests one connection may have in flight; librdkafka pipelines up to 5 produce
/// requests plus metadata and fetch, so 32 never throttles a well-behaved client.
pub const INFLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 32;
/// Concurrent client connections; more wait in the accept queue.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's id (`node.id`).
    pub node_id: i32,
    /// Kafka listener address.
    pub listen: SocketAddr,
    /// `host:port` given to clients in Metadata; `None` means the listener's address.
    pub advertise: Option<String>,
    /// Root of all data: partition directories and `__cluster_metadata/`.
    pub data_dir: PathBuf,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// Concurrent connections accepted.
    pub connections_max: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of an auto-created topic or of a CreateTopics that asks
    /// for the default (-1).
    pub num_partitions: i32,
    /// `default.replication.factor`.
    /// `None`: three replicas when at least three unfenced brokers are registered, else
    /// as many as there are ([`cairn_meta::controller::default_replication_factor`]).
    pub default_replication_factor: Option<i32>,
    /// Log defaults for every topic (Kafka topic-config keys, e.g. `retention.ms`); a topic's
    /// own overrides apply on top.
    pub log_defaults: BTreeMap<String, String>,
    /// `log.retention.check.interval.ms`: how often retention and flush-by-interval run.
    pub log_retention_check_interval_ms: u64,
    /// Group coordinator settings (`group.*`, `offsets.retention.*`,
    /// `offset.metadata.max.bytes`); see [`GROUP_PROPERTIES`].
    pub group: cairn_group::GroupConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// Metadata quorum voters (`--voters id@host:port,...`): node id → controller
    /// listener. Empty: a one-voter quorum of this node that opens no controller port.
    pub voters: BTreeMap<i32, String>,
    /// Where this voter serves the quorum's gRPC service (`--controller-listen`).
    pub controller_listen: Option<SocketAddr>,
    /// `broker.rack`: this broker's failure domain, used to spread replicas.
    pub rack: Option<String>,
    /// `replica.lag.time.max.ms`: an ISR follower not caught up for this long is dropped.
    pub replica_lag_time_max_ms: i64,
    /// `broker.session.timeout.ms`: the controller fences a broker it has not heard from
    /// for this long, moving its partition leaderships to other in-sync replicas.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker tells the controller it lives.
    pub broker_heartbeat_interval_ms: u64,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    /// Transaction coordinator settings (`transaction.max.timeout.ms`,
    /// `transactional.id.expiration.ms`); see [`TXN_PROPERTIES`].
    pub txn: cairn_txn::TxnConfig,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` when it
    /// is created.
    pub transaction_state_num_partitions: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often the
    /// coordinator aborts transactions past their timeout.
    pub txn_timeout_check_interval_ms: u64,
}

/// Broker properties of the transaction coordinator, with Kafka's names and defaults.
pub const TXN_PROPERTIES: &[&str] = &[
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.state.log.num.partitions",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
];

/// Broker properties of the group coordinator, with Kafka's names and defaults.
pub const GROUP_PROPERTIES: &[&str] = &[
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offset.metadata.max.bytes",
    "offsets.topic.num.partitions",
];

/// Topic configs that concern replication rather than the log: accepted per topic
/// (CreateTopics, AlterConfigs) and broker-wide (`--set`), validated by
/// [`validate_replication_config`].
pub const REPLICATION_TOPIC_KEYS: &[&str] = &["min.insync.replicas"];

/// Checks the value of one of [`REPLICATION_TOPIC_KEYS`].
pub fn validate_replication_config(key: &str, value: &str) -> Result<(), String> {
    match key {
        "min.insync.replicas" => match value.trim().parse::<i32>() {
            Ok(v) if v >= 1 => Ok(()),
            _ => Err(format!(
                "min.insync.replicas={value}: must be an integer of at least 1"
            )),
        },
        _ => Err(format!("'{key}' is not a replication config")),
    }
}

impl BrokerConfig {
    /// Kafka's defaults, with data under `data_dir` and the listener on `listen`.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            listen,
            advertise: None,
            data_dir: data_dir.into(),
            socket_request_max_bytes: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: None,
            log_defaults: BTreeMap::new(),
            log_retention_check_interval_ms: 300_000,
            group: cairn_group::GroupConfig::default(),
            offsets_topic_num_partitions:
                crate::group_coordinator::OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT,
            voters: BTreeMap::new(),
            controller_listen: None,
            rack: None,
            replica_lag_time_max_ms: 30_000,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            txn: cairn_txn::TxnConfig::default(),
            transaction_state_num_partitions: 50,
            txn_timeout_check_interval_ms: 10_000,
        }
    }

    /// Applies one of [`TXN_PROPERTIES`]; `None` if `key` is not one of them.
    pub fn apply_txn_property(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        if !TXN_PROPERTIES.contains(&key) {
            return None;
        }
        let v = match value.trim().parse::<i64>() {
            Ok(v) if v > 0 => v,
            _ => {
                return Some(Err(format!(
                    "property {key}={value}: must be a positive integer"
                )));
            }
        };
        match key {
            "transaction.max.timeout.ms" => {
                self.txn.max_timeout_ms = v.min(i64::from(i32::MAX)) as i32
            }
            "transactional.id.expiration.ms" => self.txn.transactional_id_expiration_ms = v,
            "transaction.state.log.num.partitions" => {
                self.transaction_state_num_partitions = v.min(i64::from(i32::MAX)) as i32
            }
            _ => self.txn_timeout_check_interval_ms = v as u64,
        }
        Some(Ok(()))
    }

    /// Applies one of [`GROUP_PROPERTIES`]; `None` if `key` is not one of them.
    pub fn apply_group_property(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            value
                .parse()
                .map_err(|e| format!("property {key}={value}: {e}"))
        }
        let positive = |v: i64| {
            if v > 0 {
                Ok(v)
            } else {
                Err(format!("property {key}={value}: must be positive"))
            }
        };
        let g = &mut self.group;
        let result = match key {
            "group.min.session.timeout.ms" => {
                parse(key, value).map(|v| g.min_session_timeout_ms = v)
            }
            "group.max.session.timeout.ms" => {
                parse(key, value).map(|v| g.max_session_timeout_ms = v)
            }
            "group.initial.rebalance.delay.ms" => {
                parse(key, value).map(|v| g.initial_rebalance_delay_ms = v)
            }
            "group.max.size" => parse::<i64>(key, value)
                .and_then(positive)
                .map(|v| g.max_size = v as usize),
            "offsets.retention.minutes" => parse::<i64>(key, value)
                .and_then(positive)
                .map(|v| g.offsets_retention_ms = v.saturating_mul(60_000)),
            "offsets.retention.check.interval.ms" => parse::<i64>(key, value)
                .and_then(positive)
                .map(|v| g.offsets_retention_check_interval_ms = v),
            "offset.metadata.max.bytes" => {
                parse(key, value).map(|v| g.offset_metadata_max_bytes = v)
            }
            "offsets.topic.num.partitions" => parse::<i64>(key, value)
                .and_then(positive)
                .map(|v| self.offsets_topic_num_partitions = v.min(i64::from(i32::MAX)) as i32),
            _ => return None,
        };
        Some(result)
    }

    /// The broker-wide log config: Kafka defaults with `log_defaults` applied.
    pub fn base_log_config(&self) -> Result<LogConfig, cairn_log::LogError> {
        let mut config = LogConfig::default();
        config.apply_props(
            self.log_defaults
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        Ok(config)
    }
}
