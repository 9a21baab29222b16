//! The active controller's duties and every broker's side of them.
//!
//! - Every broker sends a heartbeat to the active controller every
//!   `broker.heartbeat.interval.ms` ([`crate::quorum::Quorum::send_heartbeat`]).
//! - The node that leads the metadata quorum (the active controller) fences a broker it
//!   has not heard from for `broker.session.timeout.ms`, or that says it is shutting down:
//!   `cairn_meta::controller::fence_broker` moves its partition leaderships to other
//!   in-sync replicas (bumping leader epochs) and drops it from ISRs where others remain.
//!   A fenced broker that heartbeats again is unfenced (partitions left without a leader
//!   get it back if it is in their ISR); its replicas rejoin ISRs as their leaders see
//!   them catch up.
//! - With `auto.leader.rebalance.enable`, every `leader.imbalance.check.interval.seconds`
//!   (and when it takes over) the controller moves leadership back to preferred replicas
//!   that are in sync.
//! - At every check, the controller completes partition reassignments (KIP-455) whose
//!   added replicas are all in the ISR (`cairn_meta::controller::complete_reassignments`;
//!   nothing is proposed when none may complete).
//! - [`controlled_shutdown`]: a broker stopping cleanly asks to be fenced first, so its
//!   leaderships move before it closes its logs and clients see no errors.
//!
//! Liveness is judged only by heartbeats of the broker's current incarnation, counted
//! from when this node became controller (a new controller gives every broker a full
//! session before fencing it). Decisions are pure functions of `cairn_meta::controller`;
//! this module only decides *when* to ask for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_meta::controller;
use tokio::sync::watch;
use uuid::Uuid;

use crate::server::Broker;

/// How often the controller looks at heartbeats.
const CHECK_INTERVAL_MS: u64 = 100;

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let heartbeat_interval =
        Duration::from_millis(broker.config.broker_heartbeat_interval_ms.max(10));
    let session = Duration::from_millis(broker.config.broker_session_timeout_ms.max(10));
    let rebalance_interval =
        Duration::from_millis(broker.config.leader_imbalance_check_interval_ms.max(1_000));
    let check = Duration::from_millis(CHECK_INTERVAL_MS).min(heartbeat_interval);
    let node_id = broker.config.node_id;
    let mut next_heartbeat = Instant::now();
    let mut heartbeat_failures = 0u32;
    let mut leader_since: Option<Instant> = None;
    let mut next_rebalance = Instant::now();
    // Broker id → (incarnation, when this controller first saw it registered so).
    let mut seen: HashMap<i32, (Uuid, Instant)> = HashMap::new();
    // Broker id → when this controller first saw it fenced.
    let mut fenced_seen: HashMap<i32, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(check) => {}
            _ = shutdown.changed() => return,
        }
        let quorum = broker.metadata.quorum();
        let now = Instant::now();
        if now >= next_heartbeat {
            next_heartbeat = now + heartbeat_interval;
            if let Some(incarnation) = broker
                .metadata
                .state()
                .broker(node_id)
                .map(|b| b.incarnation)
            {
                match quorum.send_heartbeat(node_id, incarnation, false).await {
                    Ok(()) => {
                        if heartbeat_failures > 0 {
                            tracing::info!(
                                failures = heartbeat_failures,
                                "heartbeats reach the controller again"
                            );
                        }
                        heartbeat_failures = 0;
                    }
                    Err(e) => {
                        heartbeat_failures += 1;
                        if heartbeat_failures == 3 || heartbeat_failures % 50 == 0 {
                            tracing::warn!(
                                failures = heartbeat_failures,
                                "heartbeat not delivered: {e}; the controller fences this broker after broker.session.timeout.ms"
                            );
                        }
                    }
                }
            }
        }
        if !quorum.is_leader() {
            leader_since = None;
            continue;
        }
        let since = *leader_since.get_or_insert_with(|| {
            tracing::info!("this node is the active controller");
            next_rebalance = now;
            seen.clear();
            fenced_seen.clear();
            now
        });
        let state = broker.metadata.state();
        let beats = quorum.heartbeats();
        let mut to_fence = Vec::new();
        let mut to_unfence = Vec::new();
        for b in state.brokers() {
            let id = b.broker_id;
            let registered_at = match seen.get(&id) {
                Some((incarnation, at)) if *incarnation == b.incarnation => *at,
                _ => {
                    seen.insert(id, (b.incarnation, now));
                    now
                }
            };
            let beat = beats
                .get(&id)
                .filter(|h| h.incarnation == b.incarnation && h.at > since);
            let last_alive = [Some(since), Some(registered_at), beat.map(|h| h.at)]
                .into_iter()
                .flatten()
                .max()
                .expect("non-empty");
            let shutting_down = beat.is_some_and(|h| h.want_shut_down);
            if state.is_fenced(id) {
                let fenced_at = *fenced_seen.entry(id).or_insert(now);
                let alive_again = beat.is_some_and(|h| {
                    !h.want_shut_down && h.at > fenced_at && now.duration_since(h.at) < session
                });
                if alive_again {
                    to_unfence.push(id);
                }
            } else {
                fenced_seen.remove(&id);
                if shutting_down {
                    to_fence.push((id, "it is shutting down".to_owned()));
                } else if now.duration_since(last_alive) > session {
                    to_fence.push((
                        id,
                        format!(
                            "no heartbeat for {} ms",
                            now.duration_since(last_alive).as_millis()
                        ),
                    ));
                }
            }
        }
        for (id, why) in to_fence {
            tracing::warn!(
                broker = id,
                "fencing broker: {why}; moving its partition leaderships"
            );
            commit(&broker, format!("fence broker {id}"), move |s| {
                controller::fence_broker(s, id)
            })
            .await;
        }
        for id in to_unfence {
            tracing::info!(broker = id, "unfencing broker: it heartbeats again");
            commit(&broker, format!("unfence broker {id}"), move |s| {
                controller::unfence_broker(s, id)
            })
            .await;
        }
        if !controller::complete_reassignments(&broker.metadata.state()).is_empty() {
            tracing::info!("completing partition reassignments whose new replicas are in sync");
            commit(&broker, "reassignment completion".to_owned(), |s| {
                Ok::<_, std::convert::Infallible>(controller::complete_reassignments(s))
            })
            .await;
        }
        if broker.config.auto_leader_rebalance_enable && now >= next_rebalance {
            next_rebalance = now + rebalance_interval;
            commit(
                &broker,
                "preferred leader election".to_owned(),
                controller::elect_preferred_leaders,
            )
            .await;
        }
    }
}

/// Commits a controller decision and applies it to this node's partitions.
async fn commit<F, E>(broker: &Arc<Broker>, what: String, decide: F)
where
    F: FnOnce(&cairn_meta::ClusterState) -> Result<Vec<cairn_meta::MetadataRecord>, E>
        + Send
        + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let b = broker.clone();
    let result = tokio::task::spawn_blocking(move || {
        let outcome = b.metadata.propose(decide);
        if let Ok(Ok(state)) = &outcome {
            if let Err(e) = b.replicas.apply_metadata(state, crate::now_ms()) {
                tracing::error!("applying committed metadata to hosted partitions: {e}");
            }
        }
        outcome
    })
    .await;
    match result {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(refused))) => tracing::info!("controller: {what} refused: {refused}"),
        Ok(Err(e)) => tracing::warn!("controller: {what} not committed: {e}"),
        Err(e) => tracing::error!("controller: {what} panicked: {e}"),
    }
}

/// Asks the controller to fence this broker before it stops, so that its leaderships
/// move while it still serves. Best effort: a broker that cannot reach the controller
/// stops anyway and is fenced when its session expires.
pub async fn controlled_shutdown(broker: &Arc<Broker>) {
    let node_id = broker.config.node_id;
    let state = broker.metadata.state();
    if state.brokers().count() <= 1 {
        return;
    }
    let Some(incarnation) = state.broker(node_id).map(|b| b.incarnation) else {
        return;
    };
    if let Err(e) = broker
        .metadata
        .quorum()
        .send_heartbeat(node_id, incarnation, true)
        .await
    {
        tracing::warn!("controlled shutdown: could not tell the controller: {e}");
    }
    tracing::info!("controlled shutdown: moving partition leaderships away from this broker");
    commit(
        broker,
        format!("controlled shutdown of broker {node_id}"),
        move |s| controller::fence_broker(s, node_id),
    )
    .await;
}
