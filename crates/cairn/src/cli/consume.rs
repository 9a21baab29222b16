//! `cairn consume TOPIC`: prints records as lines, without a consumer group.
//!
//! The start offset of each partition comes from `--offset`, or from ListOffsets:
//! earliest with `--from-beginning`, else latest (only new records, as
//! `kafka-console-consumer` does). Then one task per partition leader long-polls Fetch
//! (sessionless: session id 0, epoch -1) for its partitions and sends decoded records
//! over a bounded channel to the printer, which stops after `--max-messages`, after
//! `--timeout-ms` without records, on Ctrl-C, or on the first error. When a broker
//! answers that it no longer leads a partition (NOT_LEADER_OR_FOLLOWER and friends), its
//! task drops the partition and the printer looks up the new leader in Metadata and
//! starts a task there at the same offset, at most [`LEADER_MOVES_MAX`] times.
//!
//! Fetch responses carry whole v2 record batches; a compressed batch may start before
//! the offset asked for, so records below it are skipped, control records (transaction
//! markers) are never printed, and a batch cut off at the end of a response by
//! `partition_max_bytes` is fetched again next time. The next fetch offset is the last
//! complete batch's `base_offset + last_offset_delta + 1`. Fetch v13+ names the topic by
//! its id, so the id from Metadata is used there; without one we stay at v12.
//!
//! Output per record: `[partition:offset SEP] [headers SEP] [key SEP] value`, the
//! bracketed parts with `--print-offset`, `--print-headers` (`k=v,k2=v2` or
//! `NO_HEADERS`) and `--print-key`; a null key or value prints as `null`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::Cluster;
use super::client::{Connection, explain, topic_name};

/// Print records of a topic as lines.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cairn consume numbers --from-beginning --timeout-ms 1000
  cairn consume greetings --from-beginning --print-key -K ' => ' -n 2")]
pub struct ConsumeArgs {
    /// Bootstrap broker host:port.
    #[arg(short, long, default_value = "127.0.0.1:9092", env = "CAIRN_BOOTSTRAP")]
    pub bootstrap: String,
    /// Topic to read.
    pub topic: String,
    /// Read only this partition [default: all partitions].
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Start at the earliest offset still in the log [default: only new records].
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(short, long, value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: Option<i64>,
    /// Exit after printing this many records.
    #[arg(short = 'n', long)]
    pub max_messages: Option<u64>,
    /// Exit after this long without a new record [default: wait until Ctrl-C].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Print each record's key before its value.
    #[arg(long)]
    pub print_key: bool,
    /// Print each record's headers (`k=v,k2=v2`) before its key and value.
    #[arg(long)]
    pub print_headers: bool,
    /// Print `partition:offset` first.
    #[arg(long)]
    pub print_offset: bool,
    /// Separator between the printed fields.
    #[arg(short = 'K', long, default_value = "\t", value_name = "SEP")]
    pub key_separator: String,
    /// How long to wait for each broker response.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
}

/// How long a fetch waits at the broker for new records (long poll).
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes one Fetch response may carry in total.
const FETCH_MAX_BYTES: i32 = 32 * 1024 * 1024;
/// Bytes asked per partition at first; doubled when a single batch is larger.
const PARTITION_MAX_BYTES_INITIAL: i32 = 1024 * 1024;
/// The most we ask per partition: a batch larger than this cannot be consumed.
const PARTITION_MAX_BYTES_LIMIT: i32 = 64 * 1024 * 1024;
/// Record chunks buffered between fetch tasks and the printer.
const CHUNK_CHANNEL_CAPACITY: usize = 16;
/// A record batch's fixed prefix: base_offset (8 bytes) and batch_length (4).
const BATCH_PREFIX_BYTES: usize = 12;
/// Byte position of `magic` in a batch.
const BATCH_MAGIC_AT: usize = 16;
/// Byte position of `last_offset_delta` (after leader epoch, magic, crc, attributes).
const BATCH_LAST_OFFSET_DELTA_AT: usize = 23;

/// ListOffsets timestamp meaning "the earliest offset".
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset".
const LATEST_TIMESTAMP: i64 = -1;

/// Records of one partition from one fetch, in offset order.
struct Chunk {
    partition: i32,
    records: Vec<Record>,
}

/// What a fetch task reports to the printer.
enum FetchEvent {
    Records(Chunk),
    /// The task's broker no longer leads `partition` (or cannot serve it right now);
    /// the task dropped it, and the printer finds its new leader.
    Moved {
        partition: i32,
        fetch_offset: i64,
        error: ResponseError,
    },
    Failed(anyhow::Error),
}

/// Leader moves tolerated before giving up: bounds a flapping cluster's retries.
const LEADER_MOVES_MAX: u32 = 50;
/// Pause before looking up a moved partition's leader, so an election can finish.
const LEADER_MOVE_BACKOFF: Duration = Duration::from_millis(500);

/// Runs `cairn consume`.
pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    let topic = cluster.topic(&args.topic, false).await?;
    let mut partitions: Vec<(i32, i32)> = topic
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .filter(|(index, _)| args.partition.is_none_or(|p| p == *index))
        .collect();
    partitions.sort();
    if partitions.is_empty() {
        bail!(
            "topic '{}' has {} partition(s); --partition {} does not exist",
            args.topic,
            topic.partitions.len(),
            args.partition.unwrap_or_default()
        );
    }
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in partitions {
        by_leader.entry(leader).or_default().push(partition);
    }

    // The printer keeps a sender so that it can start fetchers for moved partitions.
    let (tx, mut rx) = mpsc::channel::<FetchEvent>(CHUNK_CHANNEL_CAPACITY);
    // Dropping the set at return aborts the fetch tasks.
    let mut tasks = JoinSet::new();
    for (leader, partitions) in by_leader {
        let mut connection = cluster.open(leader).await?;
        let offsets = start_offsets(&mut connection, &args, &partitions).await?;
        spawn_fetcher(&mut tasks, &tx, connection, &topic, offsets);
    }

    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut printed: u64 = 0;
    let mut leader_moves: u32 = 0;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let result: anyhow::Result<()> = async {
        if args.max_messages == Some(0) {
            return Ok(());
        }
        loop {
            let next = tokio::select! {
                event = rx.recv() => event,
                _ = idle_timer(idle) => break,
                _ = tokio::signal::ctrl_c() => break,
            };
            let chunk = match next {
                None => break,
                Some(FetchEvent::Failed(e)) => return Err(e),
                Some(FetchEvent::Records(chunk)) => chunk,
                Some(FetchEvent::Moved {
                    partition,
                    fetch_offset,
                    error,
                }) => {
                    leader_moves += 1;
                    if leader_moves > LEADER_MOVES_MAX {
                        bail!(
                            "partition {partition}: {} (leaders moved {LEADER_MOVES_MAX} times; giving up)",
                            explain(error.code(), None)
                        );
                    }
                    tokio::time::sleep(LEADER_MOVE_BACKOFF).await;
                    let topic = cluster.topic(&args.topic, false).await?;
                    let leader = topic
                        .partitions
                        .iter()
                        .find(|p| p.partition_index == partition)
                        .map(|p| p.leader_id.0)
                        .with_context(|| format!("partition {partition} is gone from topic '{}'", args.topic))?;
                    let connection = cluster.open(leader).await?;
                    spawn_fetcher(&mut tasks, &tx, connection, &topic, vec![(partition, fetch_offset)]);
                    continue;
                }
            };
            for record in &chunk.records {
                format_record(&mut out, &args, chunk.partition, record)?;
                printed += 1;
                if args.max_messages.is_some_and(|max| printed >= max) {
                    break;
                }
            }
            out.flush()?;
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
        }
        Ok(())
    }
    .await;
    let flushed = out.flush();
    // A closed stdout (`| head`) is how a reader says "enough": not an error.
    match result {
        Err(e) if super::is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if let Err(e) = flushed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    eprintln!("Processed a total of {printed} messages");
    tasks.abort_all();
    Ok(())
}

/// Starts a task fetching `offsets` (partition, next offset) from `connection`'s broker.
fn spawn_fetcher(
    tasks: &mut JoinSet<()>,
    tx: &mpsc::Sender<FetchEvent>,
    connection: Connection,
    topic: &MetadataResponseTopic,
    offsets: Vec<(i32, i64)>,
) {
    let fetcher = Fetcher {
        connection,
        topic: topic.clone(),
        offsets: offsets
            .into_iter()
            .map(|(p, o)| (p, (o, PARTITION_MAX_BYTES_INITIAL)))
            .collect(),
    };
    let tx = tx.clone();
    tasks.spawn(async move {
        if let Err(e) = fetcher.run(&tx).await {
            let _ = tx.send(FetchEvent::Failed(e)).await;
        }
    });
}

async fn idle_timer(idle: Option<Duration>) {
    match idle {
        Some(idle) => tokio::time::sleep(idle).await,
        None => std::future::pending().await,
    }
}

/// The offset to start each of `partitions` (all led by `connection`'s broker) at.
async fn start_offsets(
    connection: &mut Connection,
    args: &ConsumeArgs,
    partitions: &[i32],
) -> anyhow::Result<Vec<(i32, i64)>> {
    if let Some(offset) = args.offset {
        return Ok(partitions.iter().map(|&p| (p, offset)).collect());
    }
    let timestamp = if args.from_beginning {
        EARLIEST_TIMESTAMP
    } else {
        LATEST_TIMESTAMP
    };
    let mut request = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(&args.topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            ),
    ]);
    // -1: a consumer, not a follower replica (the crate's default is broker 0).
    request.replica_id = (-1).into();
    // v10+: how long the broker may spend on the lookup (tiered storage), as Kafka's
    // consumer sets it; ignored by older versions.
    request.timeout_ms = i32::try_from(args.request_timeout_ms).unwrap_or(i32::MAX);
    let response = connection.send(&request).await?;
    let mut offsets = Vec::new();
    for &partition in partitions {
        let result = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .with_context(|| {
                format!("partition {partition} missing from the ListOffsets response")
            })?;
        if let Some(error) = ResponseError::try_from_code(result.error_code) {
            bail!(
                "ListOffsets for partition {partition}: {}",
                explain(error.code(), None)
            );
        }
        offsets.push((partition, result.offset));
    }
    Ok(offsets)
}

/// Long-polls one leader for its partitions.
struct Fetcher {
    connection: Connection,
    topic: MetadataResponseTopic,
    /// partition -> (next fetch offset, partition_max_bytes to ask for).
    offsets: BTreeMap<i32, (i64, i32)>,
}

impl Fetcher {
    /// Fetches until the printer is gone or this broker leads none of our partitions.
    async fn run(mut self, tx: &mpsc::Sender<FetchEvent>) -> anyhow::Result<()> {
        // Fetch v13+ names topics by id; without an id from Metadata, stay at v12.
        let cap = if self.topic.topic_id.is_nil() {
            12
        } else {
            i16::MAX
        };
        let version = self.connection.version_capped::<FetchRequest>(cap)?;
        let topic_name_text = self
            .topic
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        while !self.offsets.is_empty() {
            let mut fetch_topic = FetchTopic::default().with_partitions(
                self.offsets
                    .iter()
                    .map(|(&partition, &(offset, max_bytes))| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(max_bytes)
                    })
                    .collect(),
            );
            if version >= 13 {
                fetch_topic.topic_id = self.topic.topic_id;
            } else {
                fetch_topic.topic = topic_name(&topic_name_text);
            }
            let request = FetchRequest::default()
                .with_max_wait_ms(FETCH_MAX_WAIT_MS)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_topic]);
            let response = self.connection.send_at(&request, version).await?;
            if let Some(error) = ResponseError::try_from_code(response.error_code) {
                bail!(
                    "Fetch from {}: {}",
                    self.connection.addr(),
                    explain(error.code(), None)
                );
            }
            for data in response.responses.into_iter().flat_map(|t| t.partitions) {
                let partition = data.partition_index;
                let Some(&(fetch_offset, max_bytes)) = self.offsets.get(&partition) else {
                    continue;
                };
                match ResponseError::try_from_code(data.error_code) {
                    None => {}
                    Some(ResponseError::OffsetOutOfRange) => bail!(
                        "partition {partition}: offset {fetch_offset} is out of range: the log holds offsets \
                         {} up to (not including) {}; use --from-beginning or an offset in that range",
                        data.log_start_offset,
                        data.high_watermark
                    ),
                    Some(error) if leader_moved(error) => {
                        self.offsets.remove(&partition);
                        let moved = FetchEvent::Moved {
                            partition,
                            fetch_offset,
                            error,
                        };
                        if tx.send(moved).await.is_err() {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(error) => bail!("partition {partition}: {}", explain(error.code(), None)),
                }
                let records = data.records.unwrap_or_default();
                if records.is_empty() {
                    continue;
                }
                let decoded = decode_batches(records, fetch_offset)
                    .with_context(|| format!("partition {partition} at offset {fetch_offset}"))?;
                match decoded.next_offset {
                    Some(next) => {
                        // Never move backwards, whatever the broker sent.
                        self.offsets
                            .insert(partition, (next.max(fetch_offset), max_bytes));
                    }
                    None if max_bytes < PARTITION_MAX_BYTES_LIMIT => {
                        // The first batch alone is larger than we asked for.
                        self.offsets
                            .insert(partition, (fetch_offset, max_bytes.saturating_mul(2)));
                    }
                    None => bail!(
                        "partition {partition}: the batch at offset {fetch_offset} is larger than \
                         {PARTITION_MAX_BYTES_LIMIT} bytes, the most this client fetches"
                    ),
                }
                if !decoded.records.is_empty()
                    && tx
                        .send(FetchEvent::Records(Chunk {
                            partition,
                            records: decoded.records,
                        }))
                        .await
                        .is_err()
                {
                    return Ok(()); // the printer is done
                }
            }
        }
        Ok(())
    }
}

/// Partition errors after which another broker (or this one, a moment later) serves
/// the partition: look its leader up again instead of failing.
fn leader_moved(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::ReplicaNotAvailable
            | ResponseError::KafkaStorageError
            | ResponseError::OffsetNotAvailable
    )
}

/// Records decoded from one partition's fetched bytes.
#[derive(Debug)]
struct Decoded {
    /// Data records at or after the fetch offset, in order.
    records: Vec<Record>,
    /// Where the next fetch starts; `None` if no complete batch was present.
    next_offset: Option<i64>,
}

/// Decodes the complete v2 batches in `data`, keeping data records at or after `fetch_offset`.
fn decode_batches(mut data: Bytes, fetch_offset: i64) -> anyhow::Result<Decoded> {
    let mut decoded = Decoded {
        records: Vec::new(),
        next_offset: None,
    };
    while data.len() >= BATCH_PREFIX_BYTES {
        let base_offset = i64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        let batch_length =
            usize::try_from(batch_length).map_err(|_| anyhow::anyhow!("negative batch length"))?;
        let total = BATCH_PREFIX_BYTES + batch_length;
        if data.len() < total {
            break; // cut off by partition_max_bytes: fetched again next time
        }
        let mut batch = data.split_to(total);
        if batch.len() < BATCH_LAST_OFFSET_DELTA_AT + 4 {
            bail!("record batch at offset {base_offset} is only {total} bytes");
        }
        let magic = batch[BATCH_MAGIC_AT] as i8;
        if magic != 2 {
            bail!(
                "record batch at offset {base_offset} has format v{magic}; only v2 batches (Kafka 0.11 and later) are supported"
            );
        }
        let last_offset_delta = i32::from_be_bytes(
            batch[BATCH_LAST_OFFSET_DELTA_AT..BATCH_LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let set = RecordBatchDecoder::decode(&mut batch)
            .with_context(|| format!("cannot decode the record batch at offset {base_offset}"))?;
        decoded.records.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= fetch_offset),
        );
        decoded.next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
    }
    Ok(decoded)
}

/// Writes one record as a line.
fn format_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    partition: i32,
    record: &Record,
) -> anyhow::Result<()> {
    let separator = args.key_separator.as_bytes();
    if args.print_offset {
        write!(out, "{partition}:{}", record.offset)?;
        out.write_all(separator)?;
    }
    if args.print_headers {
        if record.headers.is_empty() {
            out.write_all(b"NO_HEADERS")?;
        }
        for (i, (key, value)) in record.headers.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(key.as_bytes())?;
            out.write_all(b"=")?;
            out.write_all(value.as_deref().unwrap_or(b"null"))?;
        }
        out.write_all(separator)?;
    }
    if args.print_key {
        out.write_all(record.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(separator)?;
    }
    out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, value: &str) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: (offset - 1) as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(value.to_owned())),
            headers: IndexMap::new(),
        }
    }

    fn batch(base: i64, values: &[&str], compression: Compression) -> BytesMut {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| record(base + i as i64, v))
            .collect();
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
        buf
    }

    #[test]
    fn decodes_whole_batches_and_skips_before_fetch_offset() {
        let mut data = batch(10, &["a", "b", "c"], Compression::Lz4);
        data.extend_from_slice(&batch(13, &["d"], Compression::None));
        let decoded = decode_batches(data.freeze(), 11).unwrap();
        let values: Vec<_> = decoded
            .records
            .iter()
            .map(|r| r.value.clone().unwrap())
            .collect();
        assert_eq!(values, ["b", "c", "d"]);
        assert_eq!(decoded.next_offset, Some(14));
    }

    #[test]
    fn partial_trailing_batch_is_left_for_next_fetch() {
        let mut data = batch(0, &["a"], Compression::None);
        let second = batch(1, &["b", "c"], Compression::None);
        data.extend_from_slice(&second[..second.len() - 3]);
        let decoded = decode_batches(data.freeze(), 0).unwrap();
        assert_eq!(decoded.records.len(), 1);
        assert_eq!(decoded.next_offset, Some(1));

        let only_partial = batch(5, &["x"], Compression::None);
        let decoded = decode_batches(only_partial.freeze().slice(..20), 5).unwrap();
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, None);
    }

    #[test]
    fn formats_offset_headers_key_value() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ConsumeArgs,
        }
        let args = Cli::parse_from([
            "x",
            "t",
            "--print-key",
            "--print-headers",
            "--print-offset",
            "-K",
            " | ",
        ])
        .args;
        let mut r = record(7, "v");
        r.key = Some(Bytes::from_static(b"k"));
        r.headers.insert(
            StrBytes::from_static_str("h1"),
            Some(Bytes::from_static(b"x")),
        );
        r.headers.insert(StrBytes::from_static_str("h2"), None);
        let mut out = Vec::new();
        format_record(&mut out, &args, 2, &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2:7 | h1=x,h2=null | k | v\n"
        );

        let args = Cli::parse_from(["x", "t"]).args;
        let mut out = Vec::new();
        r.value = None;
        format_record(&mut out, &args, 0, &r).unwrap();
        assert_eq!(out, b"null\n");
    }
}
