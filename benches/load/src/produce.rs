//! `produce`: drives the broker with librdkafka producers and measures throughput and the
//! latency from a record's (scheduled) send time to its delivery report.
//!
//! Open loop. With `--rate R` the i-th record (counted over all producer threads) is due
//! at `t0 + i/R` and its latency is measured from that due time, not from when the send
//! call actually happened. A broker that stalls therefore shows the stall in the latency
//! of every record that should have been sent during it, instead of silently slowing the
//! sender down (coordinated omission). Without `--rate` the producers send as fast as
//! librdkafka accepts records, and latency runs from the first send attempt, so it
//! includes the time a record waited for room in librdkafka's queue.
//!
//! The hot loop allocates nothing per record of its own: payloads are slices of one
//! pre-filled pool, keys are stack arrays, and the due time travels to the delivery
//! callback as the `usize` opaque rather than a box. (The `rdkafka` crate itself still
//! makes one C string of the topic name per send, and librdkafka copies the payload.)
//! Each producer thread owns one `ThreadedProducer`, i.e. one client with its own
//! connections, and its polling thread runs the delivery callback, which records into
//! that producer's own histogram, so the lock around it is never contended.
//!
//! `end-to-end` uses the same machinery with time-stamped payloads ([`Payload::Stamped`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::Serialize;

use crate::client::{ADMIN_TIMEOUT, KafkaArgs, ensure_topic, fill_letters};
use crate::result::{
    BenchResult, Conditions, Figures, Percentiles, latency_histogram, parse_bytes,
};

/// Records `produce` sends when neither `--records` nor `--duration-s` is given.
const DEFAULT_RECORDS: u64 = 1_000_000;

/// How long the final flush may wait for outstanding delivery reports.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Extra pool bytes beyond one record, so consecutive records start at different places
/// and compression sees varied input.
const PAYLOAD_POOL_SLACK_BYTES: usize = 64 * 1024;

/// Bytes at the start of a stamped payload: run id, sequence number, due time (u64 LE each).
pub const STAMP_BYTES: usize = 24;

/// Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Acks {
    /// Wait for every in-sync replica (and, on Cairn, for the flush policy: with group
    /// commit the answer comes after the fdatasync).
    #[value(name = "all")]
    #[serde(rename = "all")]
    All,
    /// Wait for the leader's append.
    #[value(name = "1")]
    #[serde(rename = "1")]
    One,
    /// Do not wait at all.
    #[value(name = "0")]
    #[serde(rename = "0")]
    Zero,
}

impl Acks {
    fn as_config(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::One => "1",
            Acks::Zero => "0",
        }
    }
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

/// Arguments of `produce` (and, with other defaults, `end-to-end`).
#[derive(Debug, Clone, Args, Serialize)]
pub struct ProduceArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub kafka: KafkaArgs,
    /// Records to send in total (over all producers).
    #[arg(long, conflicts_with = "duration_s")]
    pub records: Option<u64>,
    /// Send for this many seconds instead of a record count.
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Value bytes per record (K/KiB, M/MiB suffixes accepted).
    #[arg(long, value_parser = parse_bytes, default_value = "1024")]
    pub record_bytes: u64,
    /// Partitions to create the topic with if it does not exist.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Kafka `acks`.
    #[arg(long, value_enum, default_value = "all")]
    pub acks: Acks,
    /// librdkafka `compression.type`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// librdkafka `linger.ms` (default 5 for produce, 0 for end-to-end).
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// librdkafka `batch.size` in bytes (default: librdkafka's, 1,000,000).
    #[arg(long, value_parser = parse_bytes)]
    pub batch_bytes: Option<u64>,
    /// Producer threads, each its own client.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Give each record an 8-byte key (hash-partitioned) instead of none (round-robin).
    #[arg(long, value_enum, default_value = "off")]
    pub keys: Switch,
    /// Target rate in records/s over all producers (open loop); default: as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Send in transactions of this many records per producer (`transactional.id` set,
    /// `commit_transaction` after every N records); default: no transactions.
    #[arg(long)]
    pub transaction_records: Option<u64>,
}

/// What each record's value holds.
#[derive(Debug, Clone, Copy)]
pub enum Payload {
    /// Letters from a shared pool.
    Pool,
    /// [`STAMP_BYTES`] of run id, sequence number and due time (ns since the run's
    /// epoch), then letters; read back by the end-to-end consumer.
    Stamped { run_id: u64 },
}

/// How a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many records in total.
    Records(u64),
    /// When the next record would be due this long after `t0`.
    Duration(Duration),
}

/// The producers' side of a run.
pub struct ProduceOutcome {
    /// Records acknowledged without error.
    pub delivered: u64,
    /// Records whose delivery report was an error.
    pub failed: u64,
    /// The first delivery error, for the message.
    pub first_error: Option<String>,
    /// Key plus value bytes of the delivered records.
    pub bytes: u64,
    /// When the first record was due, nanoseconds since the epoch.
    pub t0_ns: u64,
    /// From `t0` to the last delivery report.
    pub elapsed: Duration,
    /// Due time → delivery report, nanoseconds.
    pub ack: Histogram<u64>,
}

/// Delivery-report bookkeeping for one producer.
struct DeliveryStats {
    epoch: Instant,
    ack: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    last_report_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryStats {}

impl ProducerContext for DeliveryStats {
    /// The record's due time in nanoseconds since `epoch`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, due_ns: usize) {
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        self.last_report_ns.fetch_max(now_ns, Ordering::Relaxed);
        match result {
            Ok(message) => {
                let bytes = message.payload_len() + message.key().map_or(0, <[u8]>::len);
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                self.ack
                    .lock()
                    .expect("histogram lock")
                    .saturating_record(now_ns.saturating_sub(due_ns as u64).max(1));
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("error lock");
                if first.is_none() {
                    *first = Some(error.to_string());
                }
            }
        }
    }
}

/// Nanoseconds since `epoch`.
pub fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Runs `args.producers` producer threads against a topic of `partitions` partitions.
/// `linger_ms_default` applies when `--linger-ms` is absent. Times are nanoseconds
/// since `epoch`; the caller's consumer (end-to-end) uses the same epoch.
pub fn run_producers(
    args: &ProduceArgs,
    partitions: i32,
    epoch: Instant,
    payload: Payload,
    stop: Stop,
    linger_ms_default: u64,
) -> Result<ProduceOutcome> {
    if args.producers == 0 {
        bail!("--producers must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        bail!("--rate must be a positive number of records/s");
    }
    let record_bytes = usize::try_from(args.record_bytes)?;
    if matches!(payload, Payload::Stamped { .. }) && record_bytes < STAMP_BYTES {
        bail!("--record-bytes must be at least {STAMP_BYTES} to carry the timestamp");
    }
    let mut base = vec![
        ("acks", args.acks.as_config().to_string()),
        ("compression.type", args.compression.clone()),
        (
            "linger.ms",
            args.linger_ms.unwrap_or(linger_ms_default).to_string(),
        ),
    ];
    if let Some(b) = args.batch_bytes {
        base.push(("batch.size", b.to_string()));
    }
    if args.transaction_records == Some(0) {
        bail!("--transaction-records must be at least 1");
    }
    let config = args.kafka.config(&base)?;

    let mut pool = vec![0u8; record_bytes + PAYLOAD_POOL_SLACK_BYTES];
    fill_letters(&mut pool, 0x5eed);
    let pool = Arc::new(pool);

    // Everyone connects first; then the main thread fixes t0 and lets them go.
    let ready = Arc::new(Barrier::new(args.producers + 1));
    let go = Arc::new(Barrier::new(args.producers + 1));
    let t0_ns = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(args.producers);
    for index in 0..args.producers {
        let stats = DeliveryStats {
            epoch,
            ack: Mutex::new(latency_histogram()),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_report_ns: AtomicU64::new(0),
            first_error: Mutex::new(None),
        };
        let mut config = config.clone();
        if args.transaction_records.is_some() {
            config.set(
                "transactional.id",
                format!("cairn-bench-{}-{index}", std::process::id()),
            );
        }
        let producer: ThreadedProducer<DeliveryStats> = config
            .create_with_context(stats)
            .context("creating a producer")?;
        let (ready, go, t0_ns, pool) = (ready.clone(), go.clone(), t0_ns.clone(), pool.clone());
        let args = args.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("producer-{index}"))
                .spawn(move || -> Result<ThreadedProducer<DeliveryStats>> {
                    // Open the connection (and register the transactional id) now so
                    // that it is not timed.
                    let warm = producer
                        .client()
                        .fetch_metadata(Some(&args.kafka.topic), ADMIN_TIMEOUT)
                        .context("warm-up Metadata")
                        .and_then(|_| match args.transaction_records {
                            Some(_) => producer
                                .init_transactions(ADMIN_TIMEOUT)
                                .context("init_transactions"),
                            None => Ok(()),
                        });
                    ready.wait();
                    go.wait();
                    warm?;
                    let t0 = t0_ns.load(Ordering::Acquire);
                    send_loop(
                        &producer, &args, index, partitions, epoch, t0, &pool, payload, stop,
                    )?;
                    producer.flush(FLUSH_TIMEOUT).context("flush")?;
                    Ok(producer)
                })?,
        );
    }
    ready.wait();
    let t0 = nanos_since(epoch);
    t0_ns.store(t0, Ordering::Release);
    go.wait();

    let mut outcome = ProduceOutcome {
        delivered: 0,
        failed: 0,
        first_error: None,
        bytes: 0,
        t0_ns: t0,
        elapsed: Duration::ZERO,
        ack: latency_histogram(),
    };
    let mut last_ns = t0;
    for handle in handles {
        let producer = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        let stats = producer.context();
        outcome.delivered += stats.delivered.load(Ordering::Relaxed);
        outcome.failed += stats.failed.load(Ordering::Relaxed);
        outcome.bytes += stats.bytes.load(Ordering::Relaxed);
        last_ns = last_ns.max(stats.last_report_ns.load(Ordering::Relaxed));
        outcome
            .ack
            .add(&*stats.ack.lock().expect("histogram lock"))
            .expect("histograms share bounds");
        if outcome.first_error.is_none() {
            outcome.first_error = stats.first_error.lock().expect("error lock").clone();
        }
    }
    outcome.elapsed = Duration::from_nanos(last_ns - t0);
    Ok(outcome)
}

/// One producer thread's sends: records `index`, `index + producers`, … until `stop`.
#[allow(clippy::too_many_arguments)]
fn send_loop(
    producer: &ThreadedProducer<DeliveryStats>,
    args: &ProduceArgs,
    index: usize,
    partitions: i32,
    epoch: Instant,
    t0_ns: u64,
    pool: &[u8],
    payload: Payload,
    stop: Stop,
) -> Result<()> {
    let record_bytes = args.record_bytes as usize;
    let interval_ns = args.rate.map(|r| 1e9 / r);
    let end_ns = match stop {
        Stop::Duration(d) => Some(t0_ns + d.as_nanos() as u64),
        Stop::Records(_) => None,
    };
    let mut stamped = vec![0u8; record_bytes];
    if let Payload::Stamped { .. } = payload {
        stamped.copy_from_slice(&pool[..record_bytes]);
    }
    let mut i = index as u64;
    // Records sent in the open transaction, if transactions are on.
    let mut in_txn = 0u64;
    loop {
        if let Stop::Records(n) = stop
            && i >= n
        {
            break;
        }
        if let Some(n) = args.transaction_records {
            if in_txn == n {
                commit(producer)?;
                in_txn = 0;
            }
            if in_txn == 0 {
                producer.begin_transaction().context("begin_transaction")?;
            }
            in_txn += 1;
        }
        let due_ns = match interval_ns {
            Some(iv) => t0_ns + (i as f64 * iv) as u64,
            None => nanos_since(epoch),
        };
        if end_ns.is_some_and(|end| due_ns >= end) {
            break;
        }
        if interval_ns.is_some() {
            let now = nanos_since(epoch);
            if due_ns > now {
                std::thread::sleep(Duration::from_nanos(due_ns - now));
            }
        }
        let value: &[u8] = match payload {
            Payload::Pool => {
                let start = (i as usize).wrapping_mul(61) % PAYLOAD_POOL_SLACK_BYTES;
                &pool[start..start + record_bytes]
            }
            Payload::Stamped { run_id } => {
                stamped[0..8].copy_from_slice(&run_id.to_le_bytes());
                stamped[8..16].copy_from_slice(&i.to_le_bytes());
                stamped[16..24].copy_from_slice(&due_ns.to_le_bytes());
                &stamped
            }
        };
        let key = i.to_be_bytes();
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&args.kafka.topic, due_ns as usize)
                .payload(value);
        record = match args.keys {
            Switch::On => record.key(&key[..]),
            Switch::Off => record.partition((i % partitions as u64) as i32),
        };
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: wait for delivery reports to drain it.
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => return Err(error).context("send"),
            }
        }
        i += args.producers as u64;
    }
    if in_txn > 0 {
        commit(producer)?;
    }
    Ok(())
}

/// Commits the open transaction once its records are delivered. The `rdkafka` crate's
/// `commit_transaction` first flushes by polling in 100 ms steps, and with a
/// `ThreadedProducer` its own polling thread takes the delivery reports, so each of those
/// polls waits its full 100 ms: a client artifact that would put 100 ms into every
/// transaction. Waiting here for the in-flight count to reach zero makes that flush return
/// at once.
fn commit(producer: &ThreadedProducer<DeliveryStats>) -> Result<()> {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    producer
        .commit_transaction(FLUSH_TIMEOUT)
        .context("commit_transaction")
}

/// The `produce` subcommand.
pub fn produce(args: &ProduceArgs, name: &str) -> Result<BenchResult> {
    let conditions = Conditions::start();
    let partitions = ensure_topic(&args.kafka, args.partitions)?;
    let stop = match (args.records, args.duration_s) {
        (Some(n), _) => Stop::Records(n),
        (None, Some(s)) => Stop::Duration(Duration::from_secs_f64(s)),
        (None, None) => Stop::Records(DEFAULT_RECORDS),
    };
    let epoch = Instant::now();
    let outcome = run_producers(args, partitions, epoch, Payload::Pool, stop, 5)?;
    if let Some(e) = &outcome.first_error {
        eprintln!("{} records failed; first error: {e}", outcome.failed);
    }
    let mut figures = Figures {
        records: Some(outcome.delivered),
        bytes: outcome.bytes,
        elapsed_s: outcome.elapsed.as_secs_f64(),
        errors: outcome.failed,
        ..Figures::default()
    }
    .with_rates();
    figures
        .latency
        .insert("ack".into(), Percentiles::from_ns(&outcome.ack));
    figures.extra.insert("partitions".into(), partitions as f64);
    let mut parameters = serde_json::to_value(args)?;
    parameters["linger_ms"] = args.linger_ms.unwrap_or(5).into();
    Ok(BenchResult {
        name: name.to_string(),
        kind: "produce".into(),
        parameters,
        figures,
        conditions: conditions.finish(),
    })
}
