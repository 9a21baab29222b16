//! `end-to-end`: producers send time-stamped records at a fixed rate while a consumer in
//! the same process reads them back; the latency from each record's due send time to its
//! arrival at the consumer is the figure.
//!
//! Both sides measure from one `Instant` (the run's epoch), so no clock synchronisation
//! is involved. The consumer is assigned every partition at the high watermark read
//! before the producers start, so it sees exactly this run's records; the run id in each
//! payload guards against anything else writing to the topic. At a low rate almost every
//! record arrives while the consumer's Fetch is parked on the broker, so the figure is
//! then the broker's long-poll wake-up latency plus one produce round trip (and, with
//! acks=all under group commit, the fdatasync that makes the record visible).
//!
//! The produce→ack latency of the same records is reported as `ack`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{ADMIN_TIMEOUT, ensure_topic};
use crate::consume::consumer;
use crate::produce::{Payload, ProduceArgs, STAMP_BYTES, Stop, nanos_since, run_producers};
use crate::result::{BenchResult, Conditions, Figures, Percentiles, latency_histogram};

/// Records/s when `--rate` is not given.
const DEFAULT_RATE: f64 = 1_000.0;

/// Seconds of sending when neither `--records` nor `--duration-s` is given.
const DEFAULT_DURATION_S: f64 = 10.0;

/// How long the consumer may keep waiting for records after the last acknowledgement.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the consumer polls before the producers start, so that its connection and
/// first Fetch are not part of the first records' latency.
const CONSUMER_WARMUP: Duration = Duration::from_millis(1_000);

/// The `end-to-end` subcommand.
pub fn end_to_end(args: &ProduceArgs, name: &str) -> Result<BenchResult> {
    let conditions = Conditions::start();
    let mut args = args.clone();
    args.rate = Some(args.rate.unwrap_or(DEFAULT_RATE));
    let partitions = ensure_topic(&args.kafka, args.partitions)?;
    let stop = match (args.records, args.duration_s) {
        (Some(n), _) => Stop::Records(n),
        (None, Some(s)) => Stop::Duration(Duration::from_secs_f64(s)),
        (None, None) => Stop::Duration(Duration::from_secs_f64(DEFAULT_DURATION_S)),
    };
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);

    let consumer = consumer(&args.kafka)?;
    let topic = &args.kafka.topic;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, ADMIN_TIMEOUT)
            .with_context(|| format!("watermarks of {topic}-{p}"))?;
        assignment.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    consumer.assign(&assignment)?;

    let epoch = Instant::now();
    let producing = Arc::new(AtomicBool::new(true));
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let reader = {
        let (producing, expected) = (producing.clone(), expected.clone());
        std::thread::Builder::new()
            .name("e2e-consumer".into())
            .spawn(move || {
                let mut histogram = latency_histogram();
                let (mut received, mut bytes, mut foreign) = (0u64, 0u64, 0u64);
                let mut last_ns = 0u64;
                let mut drain_deadline = None;
                loop {
                    if !producing.load(Ordering::Acquire) {
                        let deadline =
                            *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                        if received >= expected.load(Ordering::Acquire) || Instant::now() > deadline
                        {
                            break;
                        }
                    }
                    let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let now_ns = nanos_since(epoch);
                    let Some(v) = m.payload().filter(|v| v.len() >= STAMP_BYTES) else {
                        foreign += 1;
                        continue;
                    };
                    let word = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().unwrap());
                    if word(0) != run_id {
                        foreign += 1;
                        continue;
                    }
                    histogram.saturating_record(now_ns.saturating_sub(word(16)).max(1));
                    received += 1;
                    bytes += (v.len() + m.key().map_or(0, <[u8]>::len)) as u64;
                    last_ns = now_ns;
                }
                (histogram, received, bytes, foreign, last_ns)
            })?
    };
    std::thread::sleep(CONSUMER_WARMUP);

    let produced = run_producers(
        &args,
        partitions,
        epoch,
        Payload::Stamped { run_id },
        stop,
        0,
    );
    if let Ok(p) = &produced {
        expected.store(p.delivered, Ordering::Release);
    }
    producing.store(false, Ordering::Release);
    let (histogram, received, bytes, foreign, last_ns) = reader
        .join()
        .map_err(|_| anyhow!("the consumer thread panicked"))?;
    let produced = produced?;
    if let Some(e) = &produced.first_error {
        eprintln!("{} records failed; first error: {e}", produced.failed);
    }
    if received < produced.delivered {
        eprintln!(
            "only {received} of {} acknowledged records were consumed",
            produced.delivered
        );
    }
    // From the first due time to the last arrival (or acknowledgement).
    let end_ns = last_ns.max(produced.t0_ns + produced.elapsed.as_nanos() as u64);
    let mut figures = Figures {
        records: Some(received),
        bytes,
        elapsed_s: (end_ns - produced.t0_ns) as f64 / 1e9,
        errors: produced.failed + produced.delivered.saturating_sub(received),
        ..Figures::default()
    }
    .with_rates();
    figures
        .latency
        .insert("end_to_end".into(), Percentiles::from_ns(&histogram));
    figures
        .latency
        .insert("ack".into(), Percentiles::from_ns(&produced.ack));
    figures.extra.insert("partitions".into(), partitions as f64);
    if foreign > 0 {
        figures
            .extra
            .insert("foreign_records".into(), foreign as f64);
    }
    let mut parameters = serde_json::to_value(&args)?;
    parameters["linger_ms"] = args.linger_ms.unwrap_or(0).into();
    Ok(BenchResult {
        name: name.to_string(),
        kind: "end-to-end".into(),
        parameters,
        figures,
        conditions: conditions.finish(),
    })
}
