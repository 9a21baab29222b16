//! Replica fetchers: one tokio task per leader this broker follows, each with one Kafka
//! connection to that leader, fetching every partition it follows there in one request
//! (Fetch v12 with `replica_id` set, as Kafka's own replica fetchers do).
//!
//! ## A followed partition's life
//! 1. [`Fetchers::follow`] after the metadata made this replica a follower of `leader` at
//!    `leader_epoch`: the partition starts in *truncating*.
//! 2. Truncating: OffsetForLeaderEpoch asks the leader where this replica's latest epoch
//!    ends in the leader's log (KIP-101/KIP-279); the follower truncates to the smaller of
//!    that and where the epoch the leader answered with ends in its own log. A log with no
//!    epoch yet (empty, or written before epochs) truncates to its high watermark. This
//!    removes a divergent tail that was never committed, and never a committed record.
//! 3. Fetching: from the log end offset; batches are appended with the leader's offsets
//!    (fsynced first under group commit, so the next fetch offset, which the leader counts
//!    for the high watermark, is durable here) and the high watermark follows the leader's.
//!    OFFSET_OUT_OF_RANGE below the leader's log start restarts the log there; otherwise
//!    it goes back to truncating. Leadership errors pause the partition until the metadata
//!    moves it (a new `follow` or `unfollow`).
//!
//! Every append and truncation names the leader epoch it was decided for, and the
//! partition refuses it if its role changed meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::Connection;
use crate::replica_manager::Partition;

/// How long a follower's fetch may wait at the leader for new data.
pub const REPLICA_FETCH_WAIT_MAX_MS: i32 = 500;
/// Bytes asked for per partition (`replica.fetch.max.bytes`).
pub const REPLICA_FETCH_PARTITION_BYTES_MAX: i32 = 1024 * 1024;
/// Bytes asked for per fetch (`replica.fetch.response.max.bytes`).
pub const REPLICA_FETCH_RESPONSE_BYTES_MAX: i32 = 10 * 1024 * 1024;
/// Pause after an error before retrying (`replica.fetch.backoff.ms`).
pub const REPLICA_FETCH_BACKOFF_MS: u64 = 200;
/// Time allowed for one request to the leader, parked fetch included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Key = (String, i32);

#[derive(Clone)]
struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    truncating: bool,
    /// Paused after an error until then.
    retry_at: Option<Instant>,
}

struct Shared {
    leader: i32,
    partitions: Mutex<HashMap<Key, Followed>>,
    wake: Notify,
    stopped: AtomicBool,
}

/// The replica fetchers of this broker, by leader.
pub struct Fetchers {
    node_id: i32,
    /// Broker id → `host:port` from the applied metadata.
    brokers: Arc<RwLock<HashMap<i32, String>>>,
    by_leader: Mutex<HashMap<i32, Arc<Shared>>>,
}

impl Fetchers {
    pub fn new(node_id: i32) -> Fetchers {
        Fetchers {
            node_id,
            brokers: Arc::default(),
            by_leader: Mutex::default(),
        }
    }

    /// Where each registered broker listens for Kafka clients.
    pub fn set_brokers(&self, brokers: impl Iterator<Item = (i32, String)>) {
        *self.brokers.write() = brokers.collect();
    }

    /// Starts (or restarts, after a leader-epoch change) replicating `partition` from
    /// `leader`. Needs a tokio runtime; without one (unit tests) it only logs.
    pub fn follow(&self, partition: Arc<Partition>, leader: i32, leader_epoch: i32) {
        let key = (partition.topic.clone(), partition.index);
        self.unfollow(&key.0, key.1);
        let mut by_leader = self.by_leader.lock();
        let shared = match by_leader.get(&leader) {
            Some(s) => s.clone(),
            None => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    tracing::error!(leader, "no runtime to run a replica fetcher on");
                    return;
                };
                let shared = Arc::new(Shared {
                    leader,
                    partitions: Mutex::default(),
                    wake: Notify::new(),
                    stopped: AtomicBool::new(false),
                });
                runtime.spawn(run(shared.clone(), self.node_id, self.brokers.clone()));
                by_leader.insert(leader, shared.clone());
                shared
            }
        };
        shared.partitions.lock().insert(
            key,
            Followed {
                partition,
                leader_epoch,
                truncating: true,
                retry_at: None,
            },
        );
        shared.wake.notify_one();
    }

    /// Stops replicating a partition (it became leader, lost its leader, or was deleted).
    pub fn unfollow(&self, topic: &str, index: i32) {
        let key = (topic.to_owned(), index);
        let mut by_leader = self.by_leader.lock();
        by_leader.retain(|_, shared| {
            let mut partitions = shared.partitions.lock();
            partitions.remove(&key);
            if partitions.is_empty() {
                shared.stopped.store(true, Ordering::Release);
                shared.wake.notify_one();
                false
            } else {
                true
            }
        });
    }

    /// Stops every fetcher.
    pub fn shutdown(&self) {
        for (_, shared) in self.by_leader.lock().drain() {
            shared.stopped.store(true, Ordering::Release);
            shared.wake.notify_one();
        }
    }

    /// How many partitions are followed, per leader (for metrics and tests).
    pub fn followed(&self) -> Vec<(i32, usize)> {
        self.by_leader
            .lock()
            .iter()
            .map(|(l, s)| (*l, s.partitions.lock().len()))
            .collect()
    }
}

async fn run(shared: Arc<Shared>, node_id: i32, brokers: Arc<RwLock<HashMap<i32, String>>>) {
    let leader = shared.leader;
    let client_id = format!("cairn-replica-fetcher-{node_id}");
    let mut connection: Option<Connection> = None;
    let mut failures = 0u32;
    let mut catch_up: HashMap<Key, CatchUp> = HashMap::new();
    tracing::debug!(leader, "replica fetcher started");
    while !shared.stopped.load(Ordering::Acquire) {
        let now = Instant::now();
        let ready: Vec<(Key, Followed)> = shared
            .partitions
            .lock()
            .iter()
            .filter(|(_, f)| f.retry_at.is_none_or(|t| t <= now))
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        if ready.is_empty() {
            let _ = tokio::time::timeout(
                Duration::from_millis(REPLICA_FETCH_BACKOFF_MS),
                shared.wake.notified(),
            )
            .await;
            continue;
        }
        let conn = match connection.as_mut() {
            Some(c) => c,
            None => {
                let addr = brokers.read().get(&leader).cloned();
                let connected = match addr {
                    Some(addr) => Connection::connect_as(&addr, REQUEST_TIMEOUT, &client_id)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("broker {leader} is not registered")),
                };
                match connected {
                    Ok(c) => {
                        failures = 0;
                        connection.insert(c)
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures % 50 == 0 {
                            tracing::warn!(
                                leader,
                                failures,
                                "replica fetcher cannot reach the leader: {e}"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(REPLICA_FETCH_BACKOFF_MS)).await;
                        continue;
                    }
                }
            }
        };
        let (truncating, fetching): (Vec<_>, Vec<_>) =
            ready.into_iter().partition(|(_, f)| f.truncating);
        let result = if !truncating.is_empty() {
            truncate(&shared, conn, node_id, truncating).await
        } else {
            {
                let followed = shared.partitions.lock();
                catch_up.retain(|k, _| followed.contains_key(k));
            }
            fetch(&shared, conn, node_id, fetching, &mut catch_up).await
        };
        if let Err(e) = result {
            tracing::warn!(leader, "replica fetcher: {e:#}; reconnecting");
            connection = None;
            tokio::time::sleep(Duration::from_millis(REPLICA_FETCH_BACKOFF_MS)).await;
        }
    }
    tracing::debug!(leader, "replica fetcher stopped");
}

/// The entry of `key` if it still follows `leader_epoch`.
fn current(shared: &Shared, key: &Key, leader_epoch: i32) -> bool {
    shared
        .partitions
        .lock()
        .get(key)
        .is_some_and(|f| f.leader_epoch == leader_epoch)
}

fn update(shared: &Shared, key: &Key, leader_epoch: i32, f: impl FnOnce(&mut Followed)) {
    if let Some(entry) = shared.partitions.lock().get_mut(key) {
        if entry.leader_epoch == leader_epoch {
            f(entry);
        }
    }
}

fn pause(shared: &Shared, key: &Key, leader_epoch: i32) {
    update(shared, key, leader_epoch, |f| {
        f.retry_at = Some(Instant::now() + Duration::from_millis(REPLICA_FETCH_BACKOFF_MS))
    });
}

fn group_by_topic<T>(items: Vec<(Key, T)>) -> Vec<(String, Vec<(i32, T)>)> {
    let mut topics: Vec<(String, Vec<(i32, T)>)> = Vec::new();
    for ((topic, index), item) in items {
        match topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, v)) => v.push((index, item)),
            None => topics.push((topic, vec![(index, item)])),
        }
    }
    topics
}

async fn truncate(
    shared: &Shared,
    conn: &mut Connection,
    node_id: i32,
    partitions: Vec<(Key, Followed)>,
) -> anyhow::Result<()> {
    // Partitions without an epoch in their log truncate to their high watermark at once.
    let mut asks = Vec::new();
    for (key, f) in partitions {
        let latest = f.partition.with_log(|log| log.latest_leader_epoch());
        match latest {
            Some(epoch) => asks.push((key, (f, epoch))),
            None => {
                let hw = f.partition.high_watermark();
                let p = f.partition.clone();
                let epoch = f.leader_epoch;
                let done =
                    tokio::task::spawn_blocking(move || p.truncate_as_follower(hw, epoch)).await?;
                finish_truncation(shared, &key, &f, done);
            }
        }
    }
    if asks.is_empty() {
        return Ok(());
    }
    let version = conn.version_capped::<OffsetForLeaderEpochRequest>(4)?;
    let topics = group_by_topic(asks);
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_topics(
            topics
                .iter()
                .map(|(topic, parts)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|(index, (f, epoch))| {
                                    OffsetForLeaderPartition::default()
                                        .with_partition(*index)
                                        .with_current_leader_epoch(f.leader_epoch)
                                        .with_leader_epoch(*epoch)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let response = conn.send_at(&request, version).await?;
    let asked: HashMap<Key, (Followed, i32)> = topics
        .into_iter()
        .flat_map(|(topic, parts)| {
            parts
                .into_iter()
                .map(move |(index, v)| ((topic.clone(), index), v))
        })
        .collect();
    for topic in response.topics {
        for p in topic.partitions {
            let key = (topic.topic.to_string(), p.partition);
            let Some((f, my_epoch)) = asked.get(&key) else {
                continue;
            };
            if p.error_code != 0 {
                tracing::debug!(topic = %key.0, partition = key.1, error = p.error_code, "OffsetForLeaderEpoch refused; waiting for metadata");
                pause(shared, &key, f.leader_epoch);
                continue;
            }
            let partition = f.partition.clone();
            let (target, complete) = truncation_offset(&partition, p.leader_epoch, p.end_offset);
            tracing::debug!(topic = %key.0, partition = key.1, asked_epoch = my_epoch, leader_epoch = p.leader_epoch, leader_end = p.end_offset, target, complete, "OffsetForLeaderEpoch answered");
            let epoch = f.leader_epoch;
            let done =
                tokio::task::spawn_blocking(move || partition.truncate_as_follower(target, epoch))
                    .await?;
            if complete {
                finish_truncation(shared, &key, f, done);
            } else if let Err(e) = done {
                tracing::error!(topic = %key.0, partition = key.1, "follower truncation failed: {e}");
                pause(shared, &key, f.leader_epoch);
            }
        }
    }
    Ok(())
}

/// Where a follower truncates, given the leader's OffsetForLeaderEpoch answer
/// (`leader_epoch`, `leader_end`) for the follower's latest epoch, and whether that
/// completes its truncation (Kafka's `getOffsetTruncationState`, KIP-279):
/// - the leader knows no epoch ≤ the asked one (-1, -1): to the follower's high
///   watermark, which only covers committed records; complete.
/// - the follower has epoch `leader_epoch` too: to the smaller of where it ends in either
///   log; complete.
/// - the follower never had `leader_epoch`: to where the follower's largest earlier epoch
///   ends in its own log; not complete — the follower asks again for that epoch.
///
/// The result may exceed the follower's log end offset; truncating there is a no-op.
pub fn truncation_offset(partition: &Partition, leader_epoch: i32, leader_end: i64) -> (i64, bool) {
    if leader_epoch < 0 || leader_end < 0 {
        return (partition.high_watermark(), true);
    }
    let (leo, mine) =
        partition.with_log(|log| (log.log_end_offset(), log.end_offset_for_epoch(leader_epoch)));
    match mine {
        Some((epoch, end)) if epoch == leader_epoch => (end.min(leader_end).min(leo), true),
        Some((_, end)) => (end.min(leo), false),
        None => (leader_end.min(leo), true),
    }
}

fn finish_truncation(
    shared: &Shared,
    key: &Key,
    f: &Followed,
    done: Result<Option<i64>, cairn_log::LogError>,
) {
    match done {
        Ok(Some(_)) => update(shared, key, f.leader_epoch, |e| e.truncating = false),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(topic = %key.0, partition = key.1, "follower truncation failed: {e}");
            pause(shared, key, f.leader_epoch);
        }
    }
}

/// Progress of a follower that is far behind its leader, for the catch-up log lines.
struct CatchUp {
    started: Instant,
    start_offset: i64,
    last_logged: Instant,
}

/// A follower this many records behind the leader's high watermark logs its catch-up.
const CATCH_UP_LOG_LAG: i64 = 10_000;
/// How often a catching-up follower logs its progress.
const CATCH_UP_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Logs a lagging follower's progress every [`CATCH_UP_LOG_INTERVAL`] (records behind,
/// rate, estimate) and once when it has caught up.
fn log_catch_up(progress: &mut HashMap<Key, CatchUp>, key: &Key, leo: i64, leader_hw: i64) {
    let now = Instant::now();
    let behind = leader_hw - leo;
    match progress.get_mut(key) {
        None if behind >= CATCH_UP_LOG_LAG => {
            tracing::info!(topic = %key.0, partition = key.1, behind, "replica catching up with its leader");
            progress.insert(
                key.clone(),
                CatchUp {
                    started: now,
                    start_offset: leo,
                    last_logged: now,
                },
            );
        }
        None => {}
        Some(c) if behind <= 0 => {
            tracing::info!(topic = %key.0, partition = key.1, records = leo - c.start_offset, elapsed_ms = c.started.elapsed().as_millis() as u64, "replica caught up with its leader");
            progress.remove(key);
        }
        Some(c) if now.duration_since(c.last_logged) >= CATCH_UP_LOG_INTERVAL => {
            let secs = c.started.elapsed().as_secs_f64().max(0.001);
            let rate = (leo - c.start_offset) as f64 / secs;
            let eta_s = if rate > 0.0 {
                behind as f64 / rate
            } else {
                f64::INFINITY
            };
            tracing::info!(topic = %key.0, partition = key.1, behind, records_per_s = rate as u64, eta_s = eta_s.ceil(), "replica catching up with its leader");
            c.last_logged = now;
        }
        Some(_) => {}
    }
}

async fn fetch(
    shared: &Shared,
    conn: &mut Connection,
    node_id: i32,
    partitions: Vec<(Key, Followed)>,
    catch_up: &mut HashMap<Key, CatchUp>,
) -> anyhow::Result<()> {
    let version = conn.version_capped::<FetchRequest>(12)?;
    let mut asked: HashMap<Key, (Followed, i64)> = HashMap::new();
    let mut items = Vec::new();
    for (key, f) in partitions {
        let (leo, lso, last_epoch) = f.partition.with_log(|log| {
            (
                log.log_end_offset(),
                log.log_start_offset(),
                log.latest_leader_epoch().unwrap_or(-1),
            )
        });
        let mut fp = FetchPartition::default()
            .with_partition(key.1)
            .with_current_leader_epoch(f.leader_epoch)
            .with_fetch_offset(leo)
            .with_log_start_offset(lso)
            .with_partition_max_bytes(REPLICA_FETCH_PARTITION_BYTES_MAX);
        if version >= 12 {
            fp = fp.with_last_fetched_epoch(last_epoch);
        }
        items.push((key.clone(), fp));
        asked.insert(key, (f, leo));
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_max_wait_ms(REPLICA_FETCH_WAIT_MAX_MS)
        .with_min_bytes(1)
        .with_max_bytes(REPLICA_FETCH_RESPONSE_BYTES_MAX)
        .with_session_epoch(-1)
        .with_topics(
            group_by_topic(items)
                .into_iter()
                .map(|(topic, parts)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(parts.into_iter().map(|(_, p)| p).collect())
                })
                .collect(),
        );
    let response = conn.send_at(&request, version).await?;
    if response.error_code != 0 {
        anyhow::bail!("fetch refused with error code {}", response.error_code);
    }
    // (key, followed, records, leader high watermark, leader log start)
    let mut appends: Vec<(Key, Followed, Option<Bytes>, i64, i64)> = Vec::new();
    for topic in response.responses {
        for p in topic.partitions {
            let key = (topic.topic.to_string(), p.partition_index);
            let Some((f, fetch_offset)) = asked.get(&key) else {
                continue;
            };
            if !current(shared, &key, f.leader_epoch) {
                continue;
            }
            match ResponseError::try_from_code(p.error_code) {
                None => appends.push((
                    key,
                    f.clone(),
                    p.records.filter(|r| !r.is_empty()),
                    p.high_watermark,
                    p.log_start_offset,
                )),
                Some(ResponseError::OffsetOutOfRange) if *fetch_offset < p.log_start_offset => {
                    let partition = f.partition.clone();
                    let (epoch, start) = (f.leader_epoch, p.log_start_offset);
                    let done = tokio::task::spawn_blocking(move || {
                        partition.restart_as_follower_at(start, epoch)
                    })
                    .await?;
                    if let Err(e) = done {
                        tracing::error!(topic = %key.0, partition = key.1, "restarting the follower log failed: {e}");
                        pause(shared, &key, f.leader_epoch);
                    }
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    tracing::info!(topic = %key.0, partition = key.1, fetch_offset, "fetch offset out of the leader's range; truncating again");
                    update(shared, &key, f.leader_epoch, |e| e.truncating = true);
                }
                Some(error) => {
                    tracing::debug!(topic = %key.0, partition = key.1, ?error, leader = shared.leader, "replica fetch refused; waiting for metadata");
                    pause(shared, &key, f.leader_epoch);
                }
            }
        }
    }
    if appends.is_empty() {
        return Ok(());
    }
    // Appends off the runtime, all partitions of this response, then their fdatasyncs in
    // parallel (one thread per partition: the disk merges concurrent syncs, so a round
    // costs about one fsync however many partitions it carried), all before the next fetch.
    let outcomes = tokio::task::spawn_blocking(move || {
        let appended: Vec<_> = appends
            .into_iter()
            .map(|(key, f, records, hw, leader_lso)| {
                let outcome = match &records {
                    Some(records) => f
                        .partition
                        .append_as_follower(records, f.leader_epoch)
                        .map(|appended| appended.is_some()),
                    None => Ok(false),
                };
                (key, f, outcome, hw, leader_lso)
            })
            .collect();
        let synced: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = appended
                .iter()
                .map(|(_, f, outcome, _, _)| {
                    matches!(outcome, Ok(true))
                        .then(|| scope.spawn(|| f.partition.flush_as_follower()))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.map_or(Ok(()), |h| h.join().expect("fsync thread panicked")))
                .collect()
        });
        appended
            .into_iter()
            .zip(synced)
            .map(|((key, f, outcome, hw, leader_lso), synced)| {
                let outcome = outcome.and(synced);
                if outcome.is_ok() {
                    f.partition.update_follower_high_watermark(hw);
                    let follower_lso = f.partition.log_start_offset();
                    if leader_lso > follower_lso {
                        let hw = f.partition.high_watermark();
                        let _ = f.partition.with_log(|log| {
                            log.delete_records(leader_lso.min(hw).max(follower_lso))
                        });
                    }
                }
                let leo = f.partition.log_end_offset();
                (key, f.leader_epoch, outcome, leo, hw)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for (key, epoch, outcome, leo, leader_hw) in outcomes {
        match outcome {
            Ok(()) => log_catch_up(catch_up, &key, leo, leader_hw),
            Err(cairn_log::LogError::NotContiguous { expected, got }) => {
                tracing::warn!(topic = %key.0, partition = key.1, expected, got, "leader sent batches that do not continue this log; truncating again");
                update(shared, &key, epoch, |e| e.truncating = true);
            }
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, "follower append failed: {e}");
                pause(shared, &key, epoch);
            }
        }
    }
    Ok(())
}
