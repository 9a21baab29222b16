//! [`Quorum`]: the shell that runs this node's metadata-quorum voter
//! ([`cairn_meta::quorum::QuorumNode`]) and carries its messages between processes.
//!
//! ## Threads and tasks
//! - One driver thread (`cairn-quorum`) owns the [`QuorumNode`]: it ticks it every
//!   [`TICK_MS`], feeds it [`Command`]s from one bounded queue, runs its `Ready` cycle
//!   (which fsyncs), publishes the applied [`ClusterState`] and answers proposals once the
//!   entry at their index is applied. Nothing else touches the node.
//! - With peers: one tokio task per peer sends that peer's Raft messages, in order, over
//!   gRPC (`RaftService.Step`, batches of up to [`STEP_BATCH_MAX`]); a full queue drops
//!   messages, which Raft tolerates. A tonic server on `--controller-listen` takes peers'
//!   messages and forwarded proposals (`RaftService.Propose`).
//! - A single node (no `--voters`) is a one-voter quorum: same driver, no server, no port.
//!
//! ## Proposals
//! [`Quorum::submit`] hands a [`Proposal`] to the leader — the local driver, or the leader
//! over gRPC — and waits for its outcome: committed (with the new state version), stale
//! (decided against an older state: decide again), or not leader / timed out. See
//! [`cairn_meta::quorum`] for why stale entries are skipped identically everywhere.
//!
//! ## What survives a crash
//! Whatever the voter's storage holds (`cairn_meta::quorum::RocksStorage`: every Raft
//! `Ready` is one synced RocksDB write batch); this shell keeps no state of its own. A proposal whose caller gave up may still commit.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use cairn_meta::ClusterState;
use cairn_meta::quorum::{
    ApplyOutcome, Proposal, QuorumConfig, QuorumError, QuorumNode, QuorumStatus, RaftMessage,
    RocksStorage, Ticket, decode_message, encode_message,
};
use parking_lot::{Condvar, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The generated gRPC service (`proto/cairn/quorum.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("cairn.quorum.v1");
}

use proto::raft_service_client::RaftServiceClient;
use proto::raft_service_server::{RaftService, RaftServiceServer};

/// Length of one Raft tick. Heartbeats every 2 ticks (200 ms), elections after 10–20
/// ticks without a leader (1–2 s): failover in about two seconds, and no spurious
/// elections from a GC-free process stalling for less than a second.
pub const TICK_MS: u64 = 100;
/// Commands queued for the driver thread; a full queue makes peers' messages drop and
/// local proposals wait.
pub const COMMAND_QUEUE_MAX: usize = 4096;
/// Raft messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MAX: usize = 1024;
/// Raft messages in one `Step` call.
pub const STEP_BATCH_MAX: usize = 64;
/// Time allowed for one gRPC call to a peer, so a dead peer cannot hold a sender.
pub const PEER_CALL_TIMEOUT_MS: u64 = 2_000;
/// Largest gRPC message accepted: an append of raft-rs's largest batch (1 MiB) plus
/// slack, or a snapshot of a large cluster's metadata.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Where this node sits in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    pub node_id: u64,
    /// Every voter's id and `host:port` of its controller listener, this node's included.
    /// Empty means a one-voter quorum of this node alone.
    pub voters: BTreeMap<u64, String>,
    /// Where to serve `RaftService` (required when there are other voters).
    pub controller_listen: Option<SocketAddr>,
}

impl QuorumSettings {
    /// The settings `cairn serve` was given.
    pub fn from_config(config: &crate::BrokerConfig) -> QuorumSettings {
        QuorumSettings {
            node_id: config.node_id as u64,
            voters: config
                .voters
                .iter()
                .map(|(id, addr)| (*id as u64, addr.clone()))
                .collect(),
            controller_listen: config.controller_listen,
        }
    }
}

/// The outcome of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Committed; the leader's state version is now `version`.
    Committed { version: u64 },
    /// Decided against an older state; the leader's version is `version`.
    Stale { version: u64 },
    /// No leader could take it (`leader_id` is the one known, if any).
    NotLeader { leader_id: Option<u64> },
    /// Not committed in time.
    TimedOut,
}

/// Where a proposal's outcome goes: a blocking caller's channel or a gRPC handler's.
type Reply = Box<dyn FnOnce(Submitted) + Send>;

enum Command {
    Step(RaftMessage),
    Propose { proposal: Proposal, reply: Reply },
    Unreachable(u64),
    Shutdown,
}

/// What the driver publishes for everyone else to read.
struct Published {
    state: Mutex<Arc<ClusterState>>,
    changed: Condvar,
    status: Mutex<QuorumStatus>,
    /// Set when the driver stopped on a fatal storage error.
    fatal: Mutex<Option<String>>,
    /// Broker heartbeats received while this node leads: broker id → (when, whether the
    /// broker is shutting down). Read by the controller duties.
    heartbeats: Mutex<HashMap<i32, Heartbeat>>,
}

/// The latest heartbeat of a broker, as the active controller received it.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub at: Instant,
    pub want_shut_down: bool,
    pub incarnation: uuid::Uuid,
}

/// A running voter and its transport.
pub struct Quorum {
    node_id: u64,
    commands: SyncSender<Command>,
    published: Arc<Published>,
    peers: BTreeMap<u64, String>,
    runtime: Option<tokio::runtime::Handle>,
    clients: Mutex<HashMap<u64, RaftServiceClient<tonic::transport::Channel>>>,
    server_shutdown: Mutex<Option<oneshot::Sender<()>>>,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Quorum {
    /// Opens the voter's storage in `dir`, starts its driver thread and, when there are
    /// peers, its gRPC server and senders (on the current tokio runtime).
    pub fn start(dir: &Path, settings: &QuorumSettings) -> Result<Quorum, QuorumStartError> {
        let mut voters: Vec<u64> = settings.voters.keys().copied().collect();
        if voters.is_empty() {
            voters.push(settings.node_id);
        }
        if !voters.contains(&settings.node_id) {
            return Err(QuorumStartError::Config(format!(
                "node id {} is not among the voters {voters:?}",
                settings.node_id
            )));
        }
        let peers: BTreeMap<u64, String> = settings
            .voters
            .iter()
            .filter(|(id, _)| **id != settings.node_id)
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        let config = QuorumConfig::new(settings.node_id, voters);
        let node = QuorumNode::open(dir, &config)?;
        let published = Arc::new(Published {
            state: Mutex::new(Arc::new(node.state().clone())),
            changed: Condvar::new(),
            status: Mutex::new(node.status()),
            fatal: Mutex::new(None),
            heartbeats: Mutex::new(HashMap::new()),
        });
        let (commands, command_rx) = std::sync::mpsc::sync_channel(COMMAND_QUEUE_MAX);

        let mut runtime = None;
        let mut outboxes = HashMap::new();
        let mut server_shutdown = None;
        if !peers.is_empty() {
            let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                QuorumStartError::Config("a multi-voter quorum needs a tokio runtime".into())
            })?;
            let _entered = handle.enter();
            let listen = settings.controller_listen.ok_or_else(|| {
                QuorumStartError::Config(
                    "--controller-listen is required when --voters names other nodes".into(),
                )
            })?;
            let incoming = tonic::transport::server::TcpIncoming::bind(listen).map_err(|e| {
                QuorumStartError::Config(format!(
                    "cannot listen on {listen} for the controller: {e}"
                ))
            })?;
            let service = Service {
                commands: commands.clone(),
                published: published.clone(),
            };
            let (tx, rx) = oneshot::channel::<()>();
            server_shutdown = Some(tx);
            handle.spawn(async move {
                let result = tonic::transport::Server::builder()
                    .add_service(
                        RaftServiceServer::new(service)
                            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
                    )
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!("metadata quorum: controller listener stopped: {e}");
                }
            });
            for (&peer, addr) in &peers {
                let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
                outboxes.insert(peer, tx);
                handle.spawn(send_to_peer(
                    settings.node_id,
                    peer,
                    addr.clone(),
                    rx,
                    commands.clone(),
                ));
            }
            runtime = Some(handle.clone());
        }

        let driver_published = published.clone();
        let driver = std::thread::Builder::new()
            .name("cairn-quorum".into())
            .spawn(move || drive(node, command_rx, outboxes, driver_published))
            .map_err(|e| {
                QuorumStartError::Config(format!("cannot start the quorum thread: {e}"))
            })?;

        let clients = peers
            .iter()
            .filter_map(|(&id, addr)| Some((id, client(addr, runtime.as_ref()?)?)))
            .collect();
        Ok(Quorum {
            node_id: settings.node_id,
            commands,
            published,
            peers,
            runtime,
            clients: Mutex::new(clients),
            server_shutdown: Mutex::new(server_shutdown),
            driver: Mutex::new(Some(driver)),
        })
    }

    /// The latest applied state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.published.state.lock().clone()
    }

    /// This node's view of the quorum.
    pub fn status(&self) -> QuorumStatus {
        self.published.status.lock().clone()
    }

    /// Whether this node is the quorum leader, i.e. the active controller.
    pub fn is_leader(&self) -> bool {
        self.status().leader_id == Some(self.node_id)
    }

    /// Records a broker's heartbeat (on the active controller).
    pub fn record_heartbeat(&self, broker_id: i32, incarnation: uuid::Uuid, want_shut_down: bool) {
        self.published.heartbeats.lock().insert(
            broker_id,
            Heartbeat {
                at: Instant::now(),
                want_shut_down,
                incarnation,
            },
        );
    }

    /// The heartbeats received so far, by broker id.
    pub fn heartbeats(&self) -> HashMap<i32, Heartbeat> {
        self.published.heartbeats.lock().clone()
    }

    /// Sends this broker's heartbeat to the active controller (recorded locally when this
    /// node leads). Errors say why it did not arrive.
    pub async fn send_heartbeat(
        &self,
        broker_id: i32,
        incarnation: uuid::Uuid,
        want_shut_down: bool,
    ) -> Result<(), String> {
        let leader = self
            .status()
            .leader_id
            .ok_or_else(|| "no active controller known".to_owned())?;
        if leader == self.node_id || !self.peers.contains_key(&leader) {
            if leader == self.node_id {
                self.record_heartbeat(broker_id, incarnation, want_shut_down);
                return Ok(());
            }
            return Err(format!("controller {leader} is not a known voter"));
        }
        let mut client = self
            .clients
            .lock()
            .get(&leader)
            .cloned()
            .ok_or_else(|| format!("no connection to controller {leader}"))?;
        let request = proto::BrokerHeartbeatRequest {
            broker_id,
            want_shut_down,
            incarnation: incarnation.to_string(),
        };
        let response = tokio::time::timeout(
            Duration::from_millis(PEER_CALL_TIMEOUT_MS),
            client.broker_heartbeat(request),
        )
        .await
        .map_err(|_| format!("controller {leader} did not answer the heartbeat in time"))?
        .map_err(|e| format!("heartbeat to controller {leader} failed: {e}"))?;
        if response.into_inner().is_controller {
            Ok(())
        } else {
            Err(format!("node {leader} is no longer the controller"))
        }
    }

    /// The fatal error that stopped the driver, if any.
    pub fn fatal(&self) -> Option<String> {
        self.published.fatal.lock().clone()
    }

    /// Waits until the applied state's version reaches `version` or `deadline` passes;
    /// returns the latest state either way.
    pub fn wait_for_version(&self, version: u64, deadline: Instant) -> Arc<ClusterState> {
        let mut state = self.published.state.lock();
        while state.applied_records() < version {
            if self
                .published
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                break;
            }
        }
        state.clone()
    }

    /// Hands `proposal` to the leader and waits, until `deadline` at most, for its
    /// outcome. Blocking: call from a blocking thread.
    pub fn submit(&self, proposal: Proposal, deadline: Instant) -> Submitted {
        if self.fatal().is_some() {
            return Submitted::TimedOut;
        }
        let status = self.status();
        match status.leader_id {
            Some(leader) if leader != self.node_id && self.peers.contains_key(&leader) => {
                self.forward(leader, proposal, deadline)
            }
            _ => self.submit_local(proposal, deadline),
        }
    }

    /// The leader's state version, when another node leads: a state at least this new is
    /// one to decide on. `None` when this node leads or no leader answers.
    pub fn leader_version(&self, deadline: Instant) -> Option<u64> {
        let leader = self.status().leader_id?;
        if leader == self.node_id {
            return None;
        }
        let handle = self.runtime.as_ref()?;
        let mut client = self.clients.lock().get(&leader).cloned()?;
        let wait = deadline.saturating_duration_since(Instant::now());
        let status = handle
            .block_on(async {
                tokio::time::timeout(wait, client.status(proto::StatusRequest {})).await
            })
            .ok()?
            .ok()?;
        Some(status.into_inner().applied_records)
    }

    fn submit_local(&self, proposal: Proposal, deadline: Instant) -> Submitted {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |submitted| {
            let _ = tx.send(submitted);
        });
        if self
            .commands
            .send(Command::Propose { proposal, reply })
            .is_err()
        {
            return Submitted::TimedOut;
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(Submitted::TimedOut)
    }

    fn forward(&self, leader: u64, proposal: Proposal, deadline: Instant) -> Submitted {
        let (Some(handle), Some(mut client)) =
            (&self.runtime, self.clients.lock().get(&leader).cloned())
        else {
            return Submitted::NotLeader {
                leader_id: Some(leader),
            };
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let request = proto::ProposeRequest {
            base_version: proposal.base_version,
            records: cairn_meta::codec::encode_records(&proposal.records),
            timeout_ms: wait.as_millis() as u64,
        };
        let response =
            handle.block_on(async { tokio::time::timeout(wait, client.propose(request)).await });
        match response {
            Ok(Ok(response)) => from_proto(response.into_inner()),
            Ok(Err(status)) => {
                tracing::debug!(
                    leader,
                    "metadata quorum: forwarding a proposal failed: {status}"
                );
                Submitted::NotLeader { leader_id: None }
            }
            Err(_) => Submitted::TimedOut,
        }
    }

    /// Stops the gRPC server and the driver thread, which closes the storage. Idempotent.
    pub fn shutdown(&self) {
        if let Some(tx) = self.server_shutdown.lock().take() {
            let _ = tx.send(());
        }
        if let Some(driver) = self.driver.lock().take() {
            let _ = self.commands.send(Command::Shutdown);
            let _ = driver.join();
        }
    }

    /// Every other voter's view of the quorum, asked over `RaftService.Status` at once,
    /// by voter id; `None` for a voter that did not answer within `timeout`. Empty for a
    /// one-voter quorum.
    pub async fn peer_statuses(&self, timeout: Duration) -> Vec<(u64, Option<QuorumStatus>)> {
        let clients: Vec<_> = {
            let clients = self.clients.lock();
            self.peers
                .keys()
                .map(|id| (*id, clients.get(id).cloned()))
                .collect()
        };
        let asks = clients.into_iter().map(|(id, client)| async move {
            let ask = async {
                let mut client = client?;
                let call = client.status(proto::StatusRequest {});
                let response = tokio::time::timeout(timeout, call)
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
                Some(QuorumStatus {
                    node_id: response.node_id,
                    voters: response.voters,
                    leader_id: (response.leader_id != 0).then_some(response.leader_id),
                    term: response.term,
                    is_leader: response.leader_id != 0 && response.leader_id == response.node_id,
                    commit_index: response.commit_index,
                    applied_index: response.applied_index,
                    applied_records: response.applied_records,
                })
            };
            (id, ask.await)
        });
        futures_util::future::join_all(asks).await
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Applies metadata that other nodes committed to the partitions this broker hosts
/// (a one-voter quorum only changes through this node's own handlers, which apply it).
pub async fn follow_metadata(
    broker: Arc<crate::server::Broker>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen = broker.metadata.state().applied_records();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(TICK_MS)) => {}
            _ = shutdown.changed() => return,
        }
        let state = broker.metadata.state();
        if state.applied_records() == seen {
            continue;
        }
        seen = state.applied_records();
        let b = broker.clone();
        let applied =
            tokio::task::spawn_blocking(move || b.replicas.apply_metadata(&state, crate::now_ms()))
                .await;
        if let Ok(Err(e)) = applied {
            tracing::error!("applying committed metadata to hosted partitions: {e}");
        }
    }
}

/// Why the quorum did not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumStartError {
    #[error(transparent)]
    Storage(#[from] QuorumError),
    #[error("metadata quorum: {0}")]
    Config(String),
}

fn client(
    addr: &str,
    handle: &tokio::runtime::Handle,
) -> Option<RaftServiceClient<tonic::transport::Channel>> {
    let _entered = handle.enter();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| tracing::error!("metadata quorum: bad voter address {addr}: {e}"))
        .ok()?
        .connect_timeout(Duration::from_millis(PEER_CALL_TIMEOUT_MS))
        .tcp_nodelay(true);
    Some(
        RaftServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
    )
}

fn to_proto(submitted: Submitted) -> proto::ProposeResponse {
    use proto::propose_response::Outcome;
    let (outcome, version, leader_id) = match submitted {
        Submitted::Committed { version } => (Outcome::Committed, version, 0),
        Submitted::Stale { version } => (Outcome::Stale, version, 0),
        Submitted::NotLeader { leader_id } => (Outcome::NotLeader, 0, leader_id.unwrap_or(0)),
        Submitted::TimedOut => (Outcome::TimedOut, 0, 0),
    };
    proto::ProposeResponse {
        outcome: outcome as i32,
        version,
        leader_id,
    }
}

fn from_proto(response: proto::ProposeResponse) -> Submitted {
    use proto::propose_response::Outcome;
    match Outcome::try_from(response.outcome) {
        Ok(Outcome::Committed) => Submitted::Committed {
            version: response.version,
        },
        Ok(Outcome::Stale) => Submitted::Stale {
            version: response.version,
        },
        Ok(Outcome::TimedOut) => Submitted::TimedOut,
        Ok(Outcome::NotLeader) | Ok(Outcome::Unspecified) | Err(_) => Submitted::NotLeader {
            leader_id: (response.leader_id != 0).then_some(response.leader_id),
        },
    }
}

/// The driver thread: the only code that touches the node.
fn drive(
    mut node: QuorumNode<RocksStorage>,
    commands: Receiver<Command>,
    outboxes: HashMap<u64, mpsc::Sender<RaftMessage>>,
    published: Arc<Published>,
) {
    let tick = Duration::from_millis(TICK_MS);
    let mut next_tick = Instant::now() + tick;
    let mut pending: BTreeMap<u64, (Ticket, Reply)> = BTreeMap::new();
    loop {
        let command =
            match commands.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
        // Take what else is queued too, so that one Ready persists a whole batch.
        for command in command
            .into_iter()
            .chain(std::iter::from_fn(|| commands.try_recv().ok()).take(COMMAND_QUEUE_MAX))
        {
            match command {
                Command::Step(message) => {
                    node.step(message);
                }
                Command::Unreachable(peer) => node.report_unreachable(peer),
                Command::Shutdown => return,
                Command::Propose { proposal, reply } => match node.propose(&proposal) {
                    Ok(ticket) => {
                        pending.insert(ticket.index, (ticket, reply));
                    }
                    Err(not_leader) => {
                        reply(Submitted::NotLeader {
                            leader_id: not_leader.leader_id,
                        });
                    }
                },
            }
        }
        let now = Instant::now();
        if now >= next_tick {
            node.tick();
            next_tick = (next_tick + tick).max(now);
        }
        let mut out = match node.ready() {
            Ok(out) => out,
            Err(e) => {
                tracing::error!("metadata quorum stopped: {e}");
                *published.fatal.lock() = Some(e.to_string());
                return;
            }
        };
        for message in std::mem::take(&mut out.messages) {
            match outboxes.get(&message.to) {
                Some(outbox) => match outbox.try_send(message) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        tracing::debug!(
                            peer = m.to,
                            "metadata quorum: peer queue full, dropping a message"
                        );
                    }
                },
                None => tracing::warn!(
                    to = message.to,
                    "metadata quorum: message to an unknown node"
                ),
            }
        }
        if let Some(index) = out.snapshot_installed {
            // Proposals at or below a snapshot's index have an unknown outcome here.
            let kept = pending.split_off(&(index + 1));
            for (_, (_, reply)) in std::mem::replace(&mut pending, kept) {
                reply(Submitted::NotLeader {
                    leader_id: node.leader_id(),
                });
            }
        }
        for applied in &out.applied {
            let Some((ticket, reply)) = pending.remove(&applied.index) else {
                continue;
            };
            let submitted = match applied.outcome {
                _ if applied.term != ticket.term => Submitted::NotLeader {
                    leader_id: node.leader_id(),
                },
                ApplyOutcome::Committed { version } => Submitted::Committed { version },
                ApplyOutcome::Stale { version, .. } => Submitted::Stale { version },
                ApplyOutcome::Empty => Submitted::NotLeader {
                    leader_id: node.leader_id(),
                },
            };
            reply(submitted);
        }
        if out.state_changed() {
            *published.state.lock() = Arc::new(node.state().clone());
            published.changed.notify_all();
        }
        *published.status.lock() = node.status();
    }
}

/// Sends one peer's Raft messages in order, in batches.
async fn send_to_peer(
    node_id: u64,
    peer: u64,
    addr: String,
    mut outbox: mpsc::Receiver<RaftMessage>,
    commands: SyncSender<Command>,
) {
    let Some(mut client) = client(&addr, &tokio::runtime::Handle::current()) else {
        return;
    };
    let mut failing = false;
    while let Some(first) = outbox.recv().await {
        let mut messages = vec![encode_message(&first)];
        while messages.len() < STEP_BATCH_MAX {
            match outbox.try_recv() {
                Ok(m) => messages.push(encode_message(&m)),
                Err(_) => break,
            }
        }
        let call = client.step(proto::StepRequest {
            from: node_id,
            messages,
        });
        match tokio::time::timeout(Duration::from_millis(PEER_CALL_TIMEOUT_MS), call).await {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!(peer, %addr, "metadata quorum: peer reachable again");
                    failing = false;
                }
            }
            Ok(Err(_)) | Err(_) => {
                if !failing {
                    tracing::warn!(peer, %addr, "metadata quorum: peer unreachable");
                    failing = true;
                }
                let _ = commands.try_send(Command::Unreachable(peer));
            }
        }
    }
}

/// The gRPC service peers and forwarding brokers call.
struct Service {
    commands: SyncSender<Command>,
    published: Arc<Published>,
}

#[tonic::async_trait]
impl RaftService for Service {
    async fn step(
        &self,
        request: tonic::Request<proto::StepRequest>,
    ) -> Result<tonic::Response<proto::StepResponse>, tonic::Status> {
        let request = request.into_inner();
        for bytes in request.messages {
            let message = decode_message(&bytes).map_err(|e| {
                tracing::warn!(
                    from = request.from,
                    "metadata quorum: undecodable raft message: {e}"
                );
                tonic::Status::invalid_argument(format!("undecodable raft message: {e}"))
            })?;
            match self.commands.try_send(Command::Step(message)) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    return Err(tonic::Status::unavailable("metadata quorum stopped"));
                }
            }
        }
        Ok(tonic::Response::new(proto::StepResponse {}))
    }

    async fn propose(
        &self,
        request: tonic::Request<proto::ProposeRequest>,
    ) -> Result<tonic::Response<proto::ProposeResponse>, tonic::Status> {
        let request = request.into_inner();
        let records = cairn_meta::codec::decode_records(&request.records)
            .map_err(|e| tonic::Status::invalid_argument(format!("undecodable records: {e}")))?;
        let (tx, rx) = oneshot::channel();
        let reply: Reply = Box::new(move |submitted| {
            let _ = tx.send(submitted);
        });
        let proposal = Proposal {
            base_version: request.base_version,
            records,
        };
        if self
            .commands
            .try_send(Command::Propose { proposal, reply })
            .is_err()
        {
            return Ok(tonic::Response::new(to_proto(Submitted::TimedOut)));
        }
        let wait = Duration::from_millis(request.timeout_ms.min(120_000));
        let submitted = tokio::time::timeout(wait, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(Submitted::TimedOut);
        Ok(tonic::Response::new(to_proto(submitted)))
    }

    async fn broker_heartbeat(
        &self,
        request: tonic::Request<proto::BrokerHeartbeatRequest>,
    ) -> Result<tonic::Response<proto::BrokerHeartbeatResponse>, tonic::Status> {
        let request = request.into_inner();
        let s = self.published.status.lock().clone();
        let is_controller = s.leader_id == Some(s.node_id);
        let incarnation = uuid::Uuid::parse_str(&request.incarnation).map_err(|e| {
            tonic::Status::invalid_argument(format!("incarnation is not a UUID: {e}"))
        })?;
        if is_controller {
            self.published.heartbeats.lock().insert(
                request.broker_id,
                Heartbeat {
                    at: Instant::now(),
                    want_shut_down: request.want_shut_down,
                    incarnation,
                },
            );
        }
        Ok(tonic::Response::new(proto::BrokerHeartbeatResponse {
            is_controller,
        }))
    }

    async fn status(
        &self,
        _request: tonic::Request<proto::StatusRequest>,
    ) -> Result<tonic::Response<proto::StatusResponse>, tonic::Status> {
        let s = self.published.status.lock().clone();
        Ok(tonic::Response::new(proto::StatusResponse {
            node_id: s.node_id,
            voters: s.voters,
            leader_id: s.leader_id.unwrap_or(0),
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            applied_records: s.applied_records,
        }))
    }
}
