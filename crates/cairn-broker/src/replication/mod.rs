//! Partition replication: followers copy their leader's log with the Kafka Fetch API,
//! leaders track their followers to move the high watermark and propose ISR changes to
//! the controller.
//!
//! - [`isr`]: the leader's pure bookkeeping (follower offsets, high watermark, lagging
//!   and caught-up followers).
//! - [`fetcher`]: one task per leader this broker follows, truncating with
//!   OffsetForLeaderEpoch and then fetching many partitions per request.
//! - [`run_isr_checks`]: the leader's periodic ISR shrink, and [`propose_isr_change`],
//!   which commits an ISR change through the metadata quorum (Kafka's AlterPartition).
//!
//! Never: act on an ISR change before it is committed; append a batch fetched from a
//! leader of another epoch than the one this replica follows.

pub mod fetcher;
pub mod isr;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::replica_manager::{IsrProposal, Partition};
use crate::server::Broker;

/// Commits an ISR change proposed by a leader, in the background; the partition may
/// propose again once it is decided. Refusals (a stale partition epoch: the metadata
/// moved on) are expected during leader changes and only logged.
pub fn propose_isr_change(broker: &Arc<Broker>, partition: Arc<Partition>, proposal: IsrProposal) {
    let broker = broker.clone();
    tokio::task::spawn_blocking(move || {
        let result = broker.metadata.propose(|state| {
            cairn_meta::controller::alter_partition(
                state,
                proposal.topic_id,
                proposal.partition,
                broker.config.node_id,
                proposal.leader_epoch,
                proposal.partition_epoch,
                proposal.new_isr.clone(),
            )
        });
        let committed = matches!(result, Ok(Ok(_)));
        match result {
            Ok(Ok(state)) => {
                tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?proposal.new_isr, "ISR change committed");
                if let Err(e) = broker.replicas.apply_metadata(&state, crate::now_ms()) {
                    tracing::error!("applying committed metadata to hosted partitions: {e}");
                }
            }
            Ok(Err(refused)) => {
                tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?proposal.new_isr, "ISR change refused: {refused}")
            }
            Err(e) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, isr = ?proposal.new_isr, "ISR change not committed: {e}")
            }
        }
        partition.isr_change_done(committed, crate::now_ms());
    });
}

/// Every `replica.lag.time.max.ms / 2`, each partition this broker leads proposes to drop
/// followers that have not caught up for `replica.lag.time.max.ms`.
pub async fn run_isr_checks(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let lag_max_ms = broker.config.replica_lag_time_max_ms.max(1);
    let interval = Duration::from_millis((lag_max_ms / 2).clamp(50, 5_000) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let now = crate::now_ms();
        for partition in broker.replicas.all() {
            if let Some(proposal) = partition.isr_shrink(now, lag_max_ms) {
                tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?proposal.new_isr, lag_max_ms, "followers out of sync; proposing ISR shrink");
                propose_isr_change(&broker, partition, proposal);
            }
        }
    }
}
