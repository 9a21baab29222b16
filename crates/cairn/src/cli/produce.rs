//! `cairn produce TOPIC`: each line of standard input becomes one record.
//!
//! Lines are read on a plain thread (stdin is blocking) and handed over a bounded
//! channel. Records collect per partition until [`ProduceArgs::batch_max_records`] lines
//! are pending or one more line would pass [`ProduceArgs::batch_max_bytes`] (a high
//! estimate of the encoded size), or the first pending line has
//! waited [`ProduceArgs::linger_ms`] (so typing interactively sends each line at once);
//! then each partition's records are encoded as one v2 RecordBatch (KIP-98 format,
//! optionally compressed) with producer id -1 (no idempotence, no transactions), and
//! one Produce request per partition leader carries them.
//!
//! Partitioning: `--partition` wins; otherwise a keyed line goes where Kafka's default
//! partitioner puts it (murmur2 of the key, see `partitioner`), a keyless line to the
//! next partition round-robin. A partition whose leader answers a "not written, try
//! again" error (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, ...) or whose connection
//! fails is retried after a Metadata refresh, at most [`PRODUCE_ATTEMPTS_MAX`] times:
//! delivery is at-least-once, as with Kafka's own non-idempotent producer. Every other
//! per-partition error is printed with its Kafka name and the command exits nonzero.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Record,
    RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{Cluster, explain, topic_name};
use super::parse_key_value;
use super::partitioner::partition_for_key;

/// Produce lines from standard input as records.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  seq 1 1000 | cairn produce numbers
  printf 'user-1:hello\\nuser-2:bye\\n' | cairn produce greetings -K : -H source=cli -z zstd")]
pub struct ProduceArgs {
    /// Bootstrap broker host:port.
    #[arg(short, long, default_value = "127.0.0.1:9092", env = "CAIRN_BOOTSTRAP")]
    pub bootstrap: String,
    /// Topic to produce to (auto-created if the broker allows it).
    pub topic: String,
    /// Send every line to this partition instead of partitioning by key.
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Split each line at the first SEP into key and value; a line without SEP is an error.
    #[arg(short = 'K', long, value_name = "SEP", value_parser = non_empty)]
    pub key_separator: Option<String>,
    /// A header `key=value` added to every record; repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Acknowledgement to wait for: all in-sync replicas, the leader only, or none.
    #[arg(long, value_enum, default_value_t = Acks::All, allow_hyphen_values = true)]
    pub acks: Acks,
    /// Compression codec of the record batches.
    #[arg(short = 'z', long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Send once this many lines are pending.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_max_records: u32,
    /// Most record bytes (keys, values, headers and framing, estimated high) per Produce
    /// request: under the 1 MiB default of max.message.bytes, which limits each batch.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=64 * 1024 * 1024))]
    pub batch_max_bytes: u32,
    /// Send pending lines once the oldest has waited this long.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub linger_ms: u64,
    /// How long to wait for each broker response.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
}

/// `--acks`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Wait until every in-sync replica has the records (acks=-1).
    #[value(name = "all", alias = "-1")]
    All,
    /// Wait until the leader has the records.
    #[value(name = "1")]
    Leader,
    /// Do not wait: the broker sends no response.
    #[value(name = "0")]
    None,
}

impl Acks {
    /// The Produce request's `acks` field.
    pub fn wire(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
            Acks::None => 0,
        }
    }
}

/// `--compression`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Attempts per batch, including the first, for errors after which nothing was written.
pub const PRODUCE_ATTEMPTS_MAX: u32 = 5;
/// Pause before a retry, so a leader election can finish.
const PRODUCE_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Lines buffered between the stdin thread and the sender: bounds memory when the
/// broker is slower than the input.
const LINE_CHANNEL_CAPACITY: usize = 1024;
/// Bytes a record costs beyond its key, value and headers, for `--batch-max-bytes`: at
/// most 5 (length) + 1 (attributes) + 10 (timestamp delta) + 5 (offset delta) + 5 + 5
/// (key and value lengths) + 5 (header count) = 36; each header's two lengths are
/// counted as 10 in `headers_bytes`.
const RECORD_OVERHEAD_BYTES: usize = 36;

/// Records waiting to be sent, per partition.
#[derive(Default)]
struct Pending {
    records: BTreeMap<i32, Vec<Record>>,
    count: usize,
    bytes: usize,
    /// When the oldest pending record must be sent at the latest.
    deadline: Option<Instant>,
}

/// What happened to the records so far.
#[derive(Default)]
struct Tally {
    acknowledged: u64,
    unacknowledged: u64,
    failed: u64,
}

/// Runs `cairn produce`.
pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    let mut topic = cluster.topic(&args.topic, true).await?;
    let partition_count = i32::try_from(topic.partitions.len()).context("too many partitions")?;
    if let Some(p) = args.partition {
        if p >= partition_count {
            bail!(
                "topic '{}' has {partition_count} partition(s); --partition {p} does not exist",
                args.topic
            );
        }
    }
    let headers: IndexMap<StrBytes, Option<Bytes>> = args
        .headers
        .iter()
        .map(|(k, v)| {
            (
                StrBytes::from_string(k.clone()),
                Some(Bytes::from(v.clone())),
            )
        })
        .collect();
    let headers_bytes: usize = args
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum();

    let mut lines = spawn_stdin_reader();
    let linger = Duration::from_millis(args.linger_ms);
    // Start round-robin somewhere different on each run, like Kafka's producer does, so
    // one-line runs do not all land on partition 0.
    let mut next_round_robin = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut pending = Pending::default();
    let mut tally = Tally::default();
    let mut line_number: u64 = 0;
    let mut stop: Option<anyhow::Error> = None;

    loop {
        let received = match pending.deadline {
            None => tokio::select! {
                line = lines.recv() => line,
                _ = tokio::signal::ctrl_c() => None,
            },
            Some(deadline) => tokio::select! {
                line = lines.recv() => line,
                _ = tokio::signal::ctrl_c() => None,
                _ = tokio::time::sleep_until(deadline) => {
                    send_pending(&mut cluster, &mut topic, &args, &mut pending, &mut tally).await?;
                    continue;
                }
            },
        };
        let line = match received {
            None => break,
            Some(Err(e)) => {
                stop = Some(e.context("cannot read standard input"));
                break;
            }
            Some(Ok(line)) => line,
        };
        line_number += 1;
        let (key, value) = match &args.key_separator {
            None => (None, line),
            Some(separator) => match split_key(&line, separator.as_bytes()) {
                Some((key, value)) => (Some(Bytes::copy_from_slice(key)), value.to_vec()),
                None => {
                    stop = Some(anyhow::anyhow!(
                        "line {line_number} has no key separator {separator:?}; lines before it were sent"
                    ));
                    break;
                }
            },
        };
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partition_count),
            (None, None) => {
                next_round_robin = next_round_robin.wrapping_add(1);
                (next_round_robin % partition_count as u32) as i32
            }
        };
        let size = key.as_ref().map_or(0, |k| k.len())
            + value.len()
            + headers_bytes
            + RECORD_OVERHEAD_BYTES;
        // Send what is pending first if this record would take the batch over the limit,
        // so batches stay under the broker's max.message.bytes when lines are large.
        if pending.count > 0 && pending.bytes + size > args.batch_max_bytes as usize {
            send_pending(&mut cluster, &mut topic, &args, &mut pending, &mut tally).await?;
        }
        let records = pending.records.entry(partition).or_default();
        records.push(new_record(
            records.len(),
            key,
            Bytes::from(value),
            headers.clone(),
        ));
        pending.count += 1;
        pending.bytes += size;
        pending
            .deadline
            .get_or_insert_with(|| Instant::now() + linger);
        if pending.count >= args.batch_max_records as usize
            || pending.bytes >= args.batch_max_bytes as usize
        {
            send_pending(&mut cluster, &mut topic, &args, &mut pending, &mut tally).await?;
        }
    }
    send_pending(&mut cluster, &mut topic, &args, &mut pending, &mut tally).await?;

    if args.acks == Acks::None {
        eprintln!(
            "sent {} record(s) to '{}' (acks=0: not acknowledged)",
            tally.unacknowledged, args.topic
        );
    } else {
        eprintln!(
            "produced {} record(s) to '{}'",
            tally.acknowledged, args.topic
        );
    }
    if let Some(e) = stop {
        return Err(e);
    }
    if tally.failed > 0 {
        bail!(
            "{} record(s) were not produced (errors above)",
            tally.failed
        );
    }
    Ok(())
}

/// Reads stdin lines (without their `\n` or `\r\n`) on a thread of its own; the
/// channel closes at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<anyhow::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(LINE_CHANNEL_CAPACITY);
    // A std thread, not spawn_blocking: the runtime must not wait for a read that may
    // never return when the command ends early.
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            }
        }
    });
    rx
}

/// Splits `line` at the first `separator` into key and value.
pub fn split_key<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    assert!(
        !separator.is_empty(),
        "the separator is validated non-empty"
    );
    let at = line.windows(separator.len()).position(|w| w == separator)?;
    Some((&line[..at], &line[at + separator.len()..]))
}

/// A record at `offset_delta` in its batch, stamped with the current time (CreateTime).
fn new_record(
    offset_delta: usize,
    key: Option<Bytes>,
    value: Bytes,
    headers: IndexMap<StrBytes, Option<Bytes>>,
) -> Record {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let offset = offset_delta as i64;
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset,
        // The encoder derives the batch's base_sequence from the first record and keeps
        // records in one batch only while offset - sequence is constant; offset - 1 gives
        // base_sequence -1 (NO_SEQUENCE), what a non-idempotent producer sends.
        sequence: (offset - 1) as i32,
        timestamp,
        key,
        value: Some(value),
        headers,
    }
}

/// One partition's encoded batch and how many records it holds.
struct EncodedBatch {
    partition: i32,
    records: Bytes,
    count: u64,
}

/// Encodes and sends everything pending, retrying partitions whose records were not
/// written, and updates `tally`. Errors only when the cluster cannot be reached at all.
async fn send_pending(
    cluster: &mut Cluster,
    topic: &mut MetadataResponseTopic,
    args: &ProduceArgs,
    pending: &mut Pending,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let records = std::mem::take(&mut pending.records);
    *pending = Pending::default();
    let options = RecordEncodeOptions {
        version: 2,
        compression: args.compression.into(),
    };
    let mut batches = Vec::with_capacity(records.len());
    for (partition, records) in records {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
            .with_context(|| format!("cannot encode a record batch for partition {partition}"))?;
        batches.push(EncodedBatch {
            partition,
            records: buf.freeze(),
            count: records.len() as u64,
        });
    }

    let mut attempt = 1;
    loop {
        let retry = send_once(cluster, topic, args, batches, tally, attempt).await?;
        if retry.is_empty() {
            return Ok(());
        }
        attempt += 1;
        tokio::time::sleep(PRODUCE_RETRY_BACKOFF).await;
        *topic = cluster.topic(&args.topic, true).await?;
        batches = retry;
    }
}

/// Sends one Produce request per leader; returns the batches to try again.
async fn send_once(
    cluster: &mut Cluster,
    topic: &MetadataResponseTopic,
    args: &ProduceArgs,
    batches: Vec<EncodedBatch>,
    tally: &mut Tally,
    attempt: u32,
) -> anyhow::Result<Vec<EncodedBatch>> {
    let mut by_leader: BTreeMap<i32, Vec<EncodedBatch>> = BTreeMap::new();
    for batch in batches {
        let leader = topic
            .partitions
            .iter()
            .find(|p| p.partition_index == batch.partition)
            .map_or(-1, |p| p.leader_id.0);
        by_leader.entry(leader).or_default().push(batch);
    }
    let mut retry = Vec::new();
    let may_retry = attempt < PRODUCE_ATTEMPTS_MAX;
    for (leader, batches) in by_leader {
        let result = produce_to_leader(cluster, topic, args, leader, &batches).await;
        let response = match result {
            Ok(Some(response)) => response,
            Ok(None) => {
                tally.unacknowledged += batches.iter().map(|b| b.count).sum::<u64>();
                continue;
            }
            Err(e) => {
                cluster.drop_broker(leader);
                if may_retry {
                    eprintln!("warning: {e:#}; retrying");
                    retry.extend(batches);
                } else {
                    for batch in &batches {
                        eprintln!("partition {}: {e:#}", batch.partition);
                        tally.failed += batch.count;
                    }
                }
                continue;
            }
        };
        let partitions: Vec<_> = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .collect();
        for batch in batches {
            let Some(result) = partitions.iter().find(|p| p.index == batch.partition) else {
                eprintln!(
                    "partition {}: missing from the Produce response",
                    batch.partition
                );
                tally.failed += batch.count;
                continue;
            };
            match ResponseError::try_from_code(result.error_code) {
                None => tally.acknowledged += batch.count,
                Some(error) if may_retry && not_written(error) => retry.push(batch),
                Some(error) => {
                    eprintln!(
                        "partition {}: {}",
                        batch.partition,
                        explain(error.code(), result.error_message.as_deref())
                    );
                    for record_error in result.record_errors.iter().take(5) {
                        eprintln!(
                            "  record {}: {}",
                            record_error.batch_index,
                            record_error
                                .batch_index_error_message
                                .as_deref()
                                .unwrap_or("")
                        );
                    }
                    tally.failed += batch.count;
                }
            }
        }
    }
    Ok(retry)
}

/// Errors after which the broker wrote nothing and a retry (after a Metadata refresh)
/// can succeed.
fn not_written(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::NotEnoughReplicas
            | ResponseError::KafkaStorageError
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
    )
}

/// Sends the batches led by `leader` in one Produce request; `None` for acks=0.
async fn produce_to_leader(
    cluster: &mut Cluster,
    topic: &MetadataResponseTopic,
    args: &ProduceArgs,
    leader: i32,
    batches: &[EncodedBatch],
) -> anyhow::Result<Option<ProduceResponse>> {
    if leader < 0 {
        bail!(
            "no leader for partition(s) {:?}",
            batches.iter().map(|b| b.partition).collect::<Vec<_>>()
        );
    }
    let connection = cluster.broker(leader).await?;
    // Produce v13 names topics by id; without an id from Metadata, stay at v12.
    let version = connection.version_capped::<ProduceRequest>(if topic.topic_id.is_nil() {
        12
    } else {
        i16::MAX
    })?;
    let mut topic_data = TopicProduceData::default().with_partition_data(
        batches
            .iter()
            .map(|b| {
                PartitionProduceData::default()
                    .with_index(b.partition)
                    .with_records(Some(b.records.clone()))
            })
            .collect(),
    );
    if version >= 13 {
        topic_data.topic_id = topic.topic_id;
    } else {
        topic_data.name = topic_name(&args.topic);
    }
    let request = ProduceRequest::default()
        .with_acks(args.acks.wire())
        .with_timeout_ms(i32::try_from(args.request_timeout_ms).unwrap_or(i32::MAX))
        .with_topic_data(vec![topic_data]);
    if args.acks == Acks::None {
        connection.send_without_response(&request, version).await?;
        return Ok(None);
    }
    Ok(Some(connection.send_at(&request, version).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn split_key_at_first_separator() {
        assert_eq!(split_key(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(split_key(b"k::v", b"::"), Some((&b"k"[..], &b"v"[..])));
        assert_eq!(split_key(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_key(b"kv", b":"), None);
    }

    #[test]
    fn records_encode_as_one_non_idempotent_batch() {
        let records: Vec<Record> = (0..3)
            .map(|i| {
                new_record(
                    i,
                    Some(Bytes::from(format!("k{i}"))),
                    Bytes::from(format!("v{i}")),
                    IndexMap::new(),
                )
            })
            .collect();
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let mut bytes = buf.freeze();
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(info.len(), 1, "{compression:?}: one batch");
            assert_eq!(info[0].record_count, 3);
            assert_eq!(info[0].base_sequence, -1);
            assert_eq!(info[0].producer_id, -1);
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records[2].value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(set.records[2].offset, 2);
        }
    }
}
