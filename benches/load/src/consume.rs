//! `consume`: reads a topic from the beginning of every partition with one librdkafka
//! consumer and measures records/s and MB/s.
//!
//! Partitions are assigned by hand (no consumer group, no committed offsets), so the run
//! measures Fetch alone. By default it reads exactly the records present when it starts
//! (the sum of high watermark minus log start offset over the partitions), so right after
//! a produce run it measures reads served from the page cache. The clock starts at the
//! assignment and stops at the last record; the time to the first record (connection,
//! ListOffsets, first Fetch) is reported separately as `first_record_s`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{ADMIN_TIMEOUT, KafkaArgs, partition_count};
use crate::result::{BenchResult, Conditions, Figures};

/// Arguments of `consume`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ConsumeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub kafka: KafkaArgs,
    /// Records to read (default: every record present when the run starts).
    #[arg(long)]
    pub records: Option<u64>,
    /// Give up after this many seconds, reporting what was read.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
}

/// A consumer with manual assignment in mind: nothing subscribed, nothing committed.
/// librdkafka refuses `assign` without a `group.id`, so it gets one that is never joined.
pub fn consumer(kafka: &KafkaArgs) -> Result<BaseConsumer> {
    kafka
        .config(&[
            ("group.id", "cairn-bench-unused".into()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("enable.partition.eof", "false".into()),
            ("auto.offset.reset", "earliest".into()),
        ])?
        .create()
        .context("creating the consumer")
}

/// The `consume` subcommand.
pub fn consume(args: &ConsumeArgs, name: &str) -> Result<BenchResult> {
    let conditions = Conditions::start();
    let consumer = consumer(&args.kafka)?;
    let topic = &args.kafka.topic;
    let Some(partitions) = partition_count(consumer.client(), topic)? else {
        bail!("topic {topic} does not exist");
    };
    let mut available = 0u64;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, ADMIN_TIMEOUT)
            .with_context(|| format!("watermarks of {topic}-{p}"))?;
        available += (high - low).max(0) as u64;
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let target = args.records.map_or(available, |n| n.min(available));
    if target == 0 {
        bail!("topic {topic} holds no records to read");
    }
    let timeout = Duration::from_secs_f64(args.timeout_s);

    let t0 = Instant::now();
    consumer.assign(&assignment)?;
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut errors = 0u64;
    let mut first_record = None;
    let mut last_record = t0;
    while records < target && t0.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                last_record = Instant::now();
                first_record.get_or_insert(last_record);
            }
            Some(Err(e)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("consume error: {e}");
                }
            }
        }
    }
    if records < target {
        eprintln!("timed out after {records} of {target} records");
    }
    let mut figures = Figures {
        records: Some(records),
        bytes,
        elapsed_s: (last_record - t0).as_secs_f64(),
        errors,
        ..Figures::default()
    }
    .with_rates();
    if let Some(first) = first_record {
        figures
            .extra
            .insert("first_record_s".into(), (first - t0).as_secs_f64());
    }
    figures.extra.insert("partitions".into(), partitions as f64);
    Ok(BenchResult {
        name: name.to_string(),
        kind: "consume".into(),
        parameters: serde_json::to_value(args)?,
        figures,
        conditions: conditions.finish(),
    })
}
