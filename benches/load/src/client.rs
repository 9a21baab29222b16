//! What the Kafka subcommands share: the connection arguments, librdkafka configuration,
//! topic set-up through the admin API, and the partition list of a topic.
//!
//! Everything here talks to the broker only through librdkafka (the `rdkafka` crate), so
//! the tool measures any Kafka-compatible broker the same way. Nothing here joins a
//! consumer group: consumers are assigned partitions by hand, so the figures do not
//! depend on group support.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::error::RDKafkaErrorCode;
use serde::Serialize;

/// How long metadata and admin requests may take before the run gives up.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments every Kafka subcommand takes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct KafkaArgs {
    /// Bootstrap broker(s), `host:port[,host:port]`.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to use.
    #[arg(long, default_value = "cairn-bench")]
    pub topic: String,
    /// Extra librdkafka properties, `KEY=VALUE`; repeatable, applied last.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Replicas of a topic the run creates; -1 is the broker's `default.replication.factor`.
    #[arg(long, default_value_t = -1)]
    pub replication_factor: i32,
}

impl KafkaArgs {
    /// A librdkafka configuration with the bootstrap address, `base` and then `--set`.
    pub fn config(&self, base: &[(&str, String)]) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in base {
            config.set(*k, v);
        }
        for kv in &self.properties {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {kv:?} is not KEY=VALUE"))?;
            config.set(k, v);
        }
        Ok(config)
    }
}

/// Makes sure `topic` exists, creating it with `partitions` partitions (and
/// `--replication-factor` replicas) when it does not, and returns its partition count once every partition
/// has a leader. An existing topic is used as it is, whatever its partition count.
pub fn ensure_topic(args: &KafkaArgs, partitions: i32) -> Result<i32> {
    let config = args.config(&[])?;
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the admin client")?;
    // Listing all topics does not trigger the broker's topic auto-creation.
    let existing = partition_count(admin.inner(), &args.topic)?;
    if existing.is_none() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let topic = NewTopic::new(
            &args.topic,
            partitions,
            TopicReplication::Fixed(args.replication_factor),
        );
        let results = runtime
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .context("CreateTopics")?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("creating topic {name}: {code}"),
            }
        }
    }
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        if let Some(n) = partitions_with_leaders(admin.inner(), &args.topic)? {
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("topic {} has no leader for every partition", args.topic);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The partition count of `topic`, or `None` if the broker does not list it.
pub fn partition_count<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<Option<i32>> {
    let metadata = client
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .context("Metadata")?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32))
}

/// The partition count of `topic` if every partition has a leader.
fn partitions_with_leaders<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
) -> Result<Option<i32>> {
    let metadata = client
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .context("Metadata")?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .filter(|t| {
            !t.partitions().is_empty()
                && t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none())
        })
        .map(|t| t.partitions().len() as i32))
}

/// Fills `buf` with pseudo-random upper-case letters from a fixed seed — like Kafka's
/// `producer-perf-test` payloads, compressible about as much as text, so compression runs
/// do real work, and identical from run to run.
pub fn fill_letters(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for b in buf {
        // xorshift64: cheap, and the quality is irrelevant here.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = b'A' + (x % 26) as u8;
    }
}
