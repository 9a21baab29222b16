//! Group commit: many appends, across partitions, share one fdatasync per file.
//!
//! A partition whose log uses `FlushPolicy::GroupCommit` sends a [`FlushRequest`] after
//! every append. The committer takes every request that is waiting, asks each distinct
//! log for a `FlushTicket` (the files with unflushed bytes and the offset they cover),
//! fsyncs them on a blocking thread, then advances each log's recovery point and high
//! watermark and answers the waiters. Requests that arrive during an fsync form the next
//! group, so under load one fsync covers many produce requests.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::replica_manager::Partition;

/// Most requests one group-commit round takes from the queue. The queue itself is
/// unbounded but cannot grow without bound: requests that nobody waits for are deduplicated
/// per partition (at most one pending each), and waiting requests are bounded by the
/// requests in flight on all connections.
pub const GROUP_COMMIT_REQUESTS_MAX: usize = 65_536;

/// The outcome a waiter learns: `Err` carries the fsync failure's description.
pub type FlushResult = Result<(), Arc<str>>;

/// "Make this partition durable up to at least its log end offset as of now."
pub struct FlushRequest {
    pub partition: Arc<Partition>,
    pub done: Option<oneshot::Sender<FlushResult>>,
}

/// Handle to the committer task.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::UnboundedSender<FlushRequest>,
}

impl GroupCommitter {
    /// Starts the committer on the current runtime.
    pub fn start() -> GroupCommitter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx));
        GroupCommitter { tx }
    }

    /// Asks for a flush and waits until it is done.
    pub async fn flush(&self, partition: Arc<Partition>) -> FlushResult {
        let (done, rx) = oneshot::channel();
        let request = FlushRequest {
            partition,
            done: Some(done),
        };
        if self.tx.send(request).is_err() {
            return Err("the group committer has stopped (broker shutting down)".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the group committer has stopped".into()))
    }

    /// Asks for a flush without waiting for it (acks=0 and acks=1 produces). At most one
    /// such request per partition is pending: the round that takes it clears the mark
    /// before it takes the partition's flush ticket, so it covers this append.
    pub fn request(&self, partition: Arc<Partition>) {
        if partition.mark_flush_requested() {
            let _ = self.tx.send(FlushRequest {
                partition,
                done: None,
            });
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<FlushRequest>) {
    let mut group = Vec::new();
    while rx.recv_many(&mut group, GROUP_COMMIT_REQUESTS_MAX).await > 0 {
        let mut partitions: Vec<Arc<Partition>> = Vec::new();
        for request in &group {
            if !partitions
                .iter()
                .any(|p| Arc::ptr_eq(p, &request.partition))
            {
                partitions.push(request.partition.clone());
            }
        }
        let tickets: Vec<_> = partitions
            .into_iter()
            .filter_map(|p| {
                p.clear_flush_requested();
                p.begin_flush().map(|t| (p, t))
            })
            .collect();
        metrics::histogram!(crate::metrics::GROUP_COMMIT_REQUESTS).record(group.len() as f64);
        let synced = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            for (partition, ticket) in &tickets {
                if let Err(e) = ticket.sync() {
                    let msg = format!(
                        "fdatasync of {}-{} failed: {e}",
                        partition.topic, partition.index
                    );
                    return Err(msg);
                }
            }
            metrics::histogram!(crate::metrics::FSYNC_DURATION)
                .record(started.elapsed().as_secs_f64());
            Ok(tickets)
        })
        .await;
        let result: FlushResult = match synced {
            Ok(Ok(tickets)) => {
                for (partition, ticket) in tickets {
                    partition.complete_flush(&ticket);
                }
                Ok(())
            }
            Ok(Err(msg)) => {
                tracing::error!(
                    "group commit: {msg}; producers waiting on it get KAFKA_STORAGE_ERROR"
                );
                Err(msg.into())
            }
            Err(join) => Err(format!("group commit task failed: {join}").into()),
        };
        for request in group.drain(..) {
            if let Some(done) = request.done {
                let _ = done.send(result.clone());
            }
        }
    }
}
