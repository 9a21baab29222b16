//! [`Quorum`]: the shell that runs this node's part in the metadata quorum — a voter
//! ([`cairn_meta::quorum::QuorumNode`]) or an observer
//! ([`cairn_meta::quorum::ObserverState`]) — and carries its messages between processes.
//! The rest of the broker sees one API whatever the role.
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
//! ## Observers (a `--node-id` outside `--voters`, KRaft's observers)
//! No Raft node and no controller listener: one thread (`cairn-observer`) fetches the
//! committed log from the voters (`RaftService.Fetch`, long-polling up to
//! [`OBSERVER_FETCH_WAIT_MS`]), preferring the leader named in the answers and moving to
//! the next voter on an error, applies it with the voters' own rule and persists it
//! (`<data-dir>/__cluster_metadata/observer.snapshot`, see `ObserverState`), then
//! publishes it exactly as the voter's driver does. Proposals are forwarded to the leader;
//! with no leader known they are answered `NotLeader` and retried by the caller. Voters
//! answer `Fetch` through their driver ([`QuorumNode::fetch`]: applied, hence committed,
//! entries only) and remember who fetched ([`ObserverStatus`]) for `Status` and
//! DescribeQuorum.
//!
//! ## Proposals
//! [`Quorum::submit`] hands a [`Proposal`] to the leader — the local driver, or the leader
//! over gRPC — and waits for its outcome: committed (with the new state version), stale
//! (decided against an older state: decide again), or not leader / timed out. See
//! [`cairn_meta::quorum`] for why stale entries are skipped identically everywhere.
//!
//! ## What survives a crash
//! Whatever the voter's storage holds (`cairn_meta::quorum::RocksStorage`: every Raft
//! `Ready` is one synced RocksDB write batch), or an observer's state file (written
//! atomically and fdatasynced after every applied batch); this shell keeps no state of its
//! own (the observers a voter saw are forgotten). A proposal whose caller gave up may still
//! commit.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use cairn_meta::ClusterState;
use cairn_meta::quorum::{
    ApplyOutcome, Fetched, ObserverState, ObserverStatus, Proposal, QuorumConfig, QuorumError,
    QuorumNode, QuorumStatus, RaftMessage, RocksStorage, Ticket, decode_message, encode_message,
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

/// Longest `Fetch` long poll a voter grants.
pub const FETCH_WAIT_MAX_MS: u64 = 10_000;
/// How long an observer's `Fetch` waits for a commit: a long poll answered at once when
/// something commits, so this bounds only how long a silent voter holds the observer.
pub const OBSERVER_FETCH_WAIT_MS: u64 = 2_000;
/// Bytes of entries in one `Fetch` answer (at least one entry is always sent).
pub const FETCH_BYTES_MAX: u64 = 1024 * 1024;
/// Pause before an observer asks the next voter after a failed fetch.
pub const OBSERVER_RETRY_MS: u64 = 100;
/// How long a voter keeps reporting an observer that stopped fetching from it.
pub const OBSERVER_FORGET_MS: u64 = 300_000;
/// The voter's storage directory, under the metadata directory.
pub const QUORUM_DIR: &str = "quorum";

/// Where this node sits in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    pub node_id: u64,
    /// Every voter's id and `host:port` of its controller listener, this node's included.
    /// Empty means a one-voter quorum of this node alone.
    pub voters: BTreeMap<u64, String>,
    /// Where to serve `RaftService` (required when there are other voters; not used by
    /// an observer).
    pub controller_listen: Option<SocketAddr>,
}

impl QuorumSettings {
    /// Whether this node follows the log as an observer: voters are named and it is not
    /// one of them.
    pub fn is_observer(&self) -> bool {
        !self.voters.is_empty() && !self.voters.contains_key(&self.node_id)
    }
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
    Propose {
        proposal: Proposal,
        reply: Reply,
    },
    Unreachable(u64),
    /// An observer's fetch from `next_index` (answered at once).
    Fetch {
        next_index: u64,
        reply: oneshot::Sender<Result<Fetched, String>>,
    },
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
    /// The applied index, watched by `Fetch` long polls.
    applied: tokio::sync::watch::Sender<u64>,
    /// Observers that fetched from this voter, by node id.
    observers: Mutex<BTreeMap<u64, ObserverStatus>>,
}

impl Published {
    fn new(state: ClusterState, status: QuorumStatus) -> Published {
        let applied = status.applied_index;
        Published {
            state: Mutex::new(Arc::new(state)),
            changed: Condvar::new(),
            status: Mutex::new(status),
            fatal: Mutex::new(None),
            heartbeats: Mutex::new(HashMap::new()),
            applied: tokio::sync::watch::channel(applied).0,
            observers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The status with the observers seen recently (older ones are forgotten).
    fn status(&self) -> QuorumStatus {
        let mut status = self.status.lock().clone();
        let forget_before = crate::now_ms().saturating_sub(OBSERVER_FORGET_MS as i64) as u64;
        let mut observers = self.observers.lock();
        observers.retain(|_, o| o.last_fetch_ms >= forget_before);
        status.observers = observers.values().cloned().collect();
        status
    }

    /// Publishes a new applied state (waking `wait_for_version` and `Fetch` waiters).
    fn publish_state(&self, state: ClusterState, applied_index: u64) {
        *self.state.lock() = Arc::new(state);
        self.changed.notify_all();
        self.applied.send_if_modified(|a| {
            let changed = *a != applied_index;
            *a = applied_index;
            changed
        });
    }
}

/// The latest heartbeat of a broker, as the active controller received it.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub at: Instant,
    pub want_shut_down: bool,
    pub incarnation: uuid::Uuid,
}

/// This node's part in the quorum, voter or observer, and its transport.
pub struct Quorum {
    node_id: u64,
    role: Role,
    published: Arc<Published>,
    /// The other voters (every voter, for an observer).
    peers: BTreeMap<u64, String>,
    runtime: Option<tokio::runtime::Handle>,
    clients: Mutex<HashMap<u64, RaftServiceClient<tonic::transport::Channel>>>,
    server_shutdown: Mutex<Option<oneshot::Sender<()>>>,
    /// The driver thread (voter) or the fetch thread (observer).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Role {
    /// The driver thread owns the Raft node and takes these commands.
    Voter { commands: SyncSender<Command> },
    /// The observer thread stops when this is set.
    Observer {
        stop: tokio::sync::watch::Sender<bool>,
    },
}

impl Quorum {
    /// Starts this node's part in the quorum, with its files under the metadata
    /// directory `dir`. A voter opens its storage (`dir/quorum/`), starts its driver
    /// thread and, when there are peers, its gRPC server and senders (on the current
    /// tokio runtime). An observer loads its state file (`dir/observer.snapshot`) and
    /// starts fetching from the voters.
    pub fn start(dir: &Path, settings: &QuorumSettings) -> Result<Quorum, QuorumStartError> {
        if settings.is_observer() {
            return Quorum::start_observer(dir, settings);
        }
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
        let node = QuorumNode::open(&dir.join(QUORUM_DIR), &config)?;
        let published = Arc::new(Published::new(node.state().clone(), node.status()));
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
            role: Role::Voter { commands },
            published,
            peers,
            runtime,
            clients: Mutex::new(clients),
            server_shutdown: Mutex::new(server_shutdown),
            thread: Mutex::new(Some(driver)),
        })
    }

    /// Starts an observer: loads its persisted state (published at once, so a restarted
    /// observer serves with it while no voter answers) and its fetch thread.
    fn start_observer(dir: &Path, settings: &QuorumSettings) -> Result<Quorum, QuorumStartError> {
        let voters: Vec<u64> = settings.voters.keys().copied().collect();
        if cairn_meta::quorum::holds_voter_storage(&dir.join(QUORUM_DIR)) {
            return Err(QuorumStartError::Config(format!(
                "{} holds the Raft log of a voter, but node {} is not among the voters {voters:?}; \
                 changing the voters of an existing quorum is not supported (restore --voters, \
                 or move that directory away to run this node as an observer)",
                dir.join(QUORUM_DIR).display(),
                settings.node_id
            )));
        }
        if settings.controller_listen.is_some() {
            tracing::warn!(
                node_id = settings.node_id,
                "metadata quorum: this node is an observer (not among the voters); it does not use its controller listener"
            );
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            QuorumStartError::Config("a metadata observer needs a tokio runtime".into())
        })?;
        let observer = ObserverState::open(dir, true)?;
        let status = QuorumStatus {
            node_id: settings.node_id,
            voters: voters.clone(),
            leader_id: None,
            term: observer.applied_term(),
            is_leader: false,
            commit_index: observer.applied_index(),
            applied_index: observer.applied_index(),
            applied_records: observer.state().applied_records(),
            observers: Vec::new(),
        };
        tracing::info!(
            node_id = settings.node_id,
            ?voters,
            applied_index = observer.applied_index(),
            "metadata quorum: starting as an observer"
        );
        let published = Arc::new(Published::new(observer.state().clone(), status));
        let peers = settings.voters.clone();
        let clients: HashMap<u64, _> = peers
            .iter()
            .filter_map(|(&id, addr)| Some((id, client(addr, &handle)?)))
            .collect();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let thread = {
            let published = published.clone();
            let clients = clients.clone();
            let handle = handle.clone();
            let node_id = settings.node_id;
            std::thread::Builder::new()
                .name("cairn-observer".into())
                .spawn(move || observe(node_id, observer, clients, handle, published, stop_rx))
                .map_err(|e| {
                    QuorumStartError::Config(format!("cannot start the observer thread: {e}"))
                })?
        };
        Ok(Quorum {
            node_id: settings.node_id,
            role: Role::Observer { stop },
            published,
            peers,
            runtime: Some(handle),
            clients: Mutex::new(clients),
            server_shutdown: Mutex::new(None),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether this node is an observer (outside the voters).
    pub fn is_observer(&self) -> bool {
        matches!(self.role, Role::Observer { .. })
    }

    /// Answers an observer's fetch as `RaftService.Fetch` does (a voter only): committed
    /// entries from `next_index`, waiting up to `max_wait` for a commit when there are
    /// none yet.
    pub async fn fetch_committed(
        &self,
        request: proto::FetchRequest,
    ) -> Result<proto::FetchResponse, tonic::Status> {
        match &self.role {
            Role::Voter { commands } => {
                serve_fetch(commands, &self.published, request, FETCH_WAIT_MAX_MS).await
            }
            Role::Observer { .. } => Err(tonic::Status::failed_precondition(
                "an observer does not serve the metadata log",
            )),
        }
    }

    /// The latest applied state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.published.state.lock().clone()
    }

    /// This node's view of the quorum, with the observers that fetched from it.
    pub fn status(&self) -> QuorumStatus {
        self.published.status()
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
        match (status.leader_id, &self.role) {
            (Some(leader), _) if leader != self.node_id && self.peers.contains_key(&leader) => {
                self.forward(leader, proposal, deadline)
            }
            (_, Role::Voter { commands }) => self.submit_local(commands, proposal, deadline),
            (leader_id, Role::Observer { .. }) => Submitted::NotLeader { leader_id },
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

    fn submit_local(
        &self,
        commands: &SyncSender<Command>,
        proposal: Proposal,
        deadline: Instant,
    ) -> Submitted {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |submitted| {
            let _ = tx.send(submitted);
        });
        if commands.send(Command::Propose { proposal, reply }).is_err() {
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

    /// Stops the gRPC server and the driver thread, which closes the storage (or the
    /// observer's fetch thread). Idempotent.
    pub fn shutdown(&self) {
        if let Some(tx) = self.server_shutdown.lock().take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.lock().take() {
            match &self.role {
                Role::Voter { commands } => {
                    let _ = commands.send(Command::Shutdown);
                }
                Role::Observer { stop } => {
                    let _ = stop.send(true);
                }
            }
            let _ = thread.join();
        }
    }

    /// Every other voter's view of the quorum (every voter's, on an observer), asked over
    /// `RaftService.Status` at once, by voter id; `None` for a voter that did not answer
    /// within `timeout`. Empty for a one-voter quorum.
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
                Some(status_from_proto(response))
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
                Command::Fetch { next_index, reply } => {
                    let _ = reply.send(
                        node.fetch(next_index, FETCH_BYTES_MAX)
                            .map_err(|e| e.to_string()),
                    );
                }
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
        // Entries applied, even stale or empty ones, are news for fetching observers.
        let applied_index = node.applied_index();
        published.applied.send_if_modified(|a| {
            let changed = *a != applied_index;
            *a = applied_index;
            changed
        });
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
        Ok(tonic::Response::new(status_to_proto(
            self.published.status(),
        )))
    }

    async fn fetch(
        &self,
        request: tonic::Request<proto::FetchRequest>,
    ) -> Result<tonic::Response<proto::FetchResponse>, tonic::Status> {
        serve_fetch(
            &self.commands,
            &self.published,
            request.into_inner(),
            FETCH_WAIT_MAX_MS,
        )
        .await
        .map(tonic::Response::new)
    }
}

/// A voter's answer to an observer's `Fetch`: notes the observer, waits (up to the
/// request's `max_wait_ms`, at most `wait_cap_ms`) until something at or past
/// `next_index` is applied, then reads the committed entries through the driver.
async fn serve_fetch(
    commands: &SyncSender<Command>,
    published: &Published,
    request: proto::FetchRequest,
    wait_cap_ms: u64,
) -> Result<proto::FetchResponse, tonic::Status> {
    let voters = published.status.lock().voters.clone();
    if request.node_id == 0 || voters.contains(&request.node_id) {
        return Err(tonic::Status::invalid_argument(format!(
            "node {} is a voter or invalid; only observers fetch",
            request.node_id
        )));
    }
    published.observers.lock().insert(
        request.node_id,
        ObserverStatus {
            node_id: request.node_id,
            fetched_index: request.next_index.saturating_sub(1),
            last_fetch_ms: crate::now_ms().max(0) as u64,
        },
    );
    let wait = Duration::from_millis(request.max_wait_ms.min(wait_cap_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let mut applied = published.applied.subscribe();
    while *applied.borrow_and_update() < request.next_index {
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let (tx, rx) = oneshot::channel();
    let fetch = Command::Fetch {
        next_index: request.next_index,
        reply: tx,
    };
    if commands.try_send(fetch).is_err() {
        return Err(tonic::Status::unavailable(
            "metadata quorum busy or stopped; fetch again",
        ));
    }
    let fetched = rx
        .await
        .map_err(|_| tonic::Status::unavailable("metadata quorum stopped"))?
        .map_err(tonic::Status::internal)?;
    Ok(fetched_to_proto(fetched))
}

fn fetched_to_proto(fetched: Fetched) -> proto::FetchResponse {
    proto::FetchResponse {
        leader_id: fetched.leader_id.unwrap_or(0),
        term: fetched.term,
        commit_index: fetched.commit_index,
        snapshot: fetched.snapshot.map(|s| proto::FetchedSnapshot {
            index: s.get_metadata().index,
            term: s.get_metadata().term,
            data: s.data.to_vec(),
        }),
        entries: fetched
            .entries
            .into_iter()
            .map(|e| proto::FetchedEntry {
                index: e.index,
                term: e.term,
                entry_type: e.get_entry_type() as i32,
                data: e.data.to_vec(),
            })
            .collect(),
    }
}

/// The observer's side of [`fetched_to_proto`]. An entry type this build does not know is
/// kept as an unsupported type, which the apply rule refuses (as a voter would).
fn fetched_from_proto(response: proto::FetchResponse) -> Fetched {
    use cairn_meta::quorum::{
        RaftEntry as Entry, RaftEntryType as EntryType, RaftSnapshot as Snapshot,
    };
    Fetched {
        leader_id: (response.leader_id != 0).then_some(response.leader_id),
        term: response.term,
        commit_index: response.commit_index,
        snapshot: response.snapshot.map(|s| {
            let mut snapshot = Snapshot {
                data: s.data.into(),
                ..Default::default()
            };
            snapshot.mut_metadata().index = s.index;
            snapshot.mut_metadata().term = s.term;
            snapshot
        }),
        entries: response
            .entries
            .into_iter()
            .map(|e| {
                let mut entry = Entry {
                    index: e.index,
                    term: e.term,
                    data: e.data.into(),
                    ..Default::default()
                };
                entry.set_entry_type(match e.entry_type {
                    0 => EntryType::EntryNormal,
                    1 => EntryType::EntryConfChange,
                    _ => EntryType::EntryConfChangeV2,
                });
                entry
            })
            .collect(),
    }
}

fn status_to_proto(s: QuorumStatus) -> proto::StatusResponse {
    proto::StatusResponse {
        node_id: s.node_id,
        voters: s.voters,
        leader_id: s.leader_id.unwrap_or(0),
        term: s.term,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        applied_records: s.applied_records,
        observers: s
            .observers
            .into_iter()
            .map(|o| proto::ObserverStatus {
                node_id: o.node_id,
                fetched_index: o.fetched_index,
                last_fetch_ms: o.last_fetch_ms,
            })
            .collect(),
    }
}

fn status_from_proto(response: proto::StatusResponse) -> QuorumStatus {
    QuorumStatus {
        node_id: response.node_id,
        leader_id: (response.leader_id != 0).then_some(response.leader_id),
        term: response.term,
        is_leader: response.leader_id != 0 && response.leader_id == response.node_id,
        commit_index: response.commit_index,
        applied_index: response.applied_index,
        applied_records: response.applied_records,
        observers: response
            .observers
            .into_iter()
            .map(|o| ObserverStatus {
                node_id: o.node_id,
                fetched_index: o.fetched_index,
                last_fetch_ms: o.last_fetch_ms,
            })
            .collect(),
        voters: response.voters,
    }
}

/// The observer thread: fetches from the voters, applies and persists what they answer,
/// and publishes it. Stops on `stop` or on a fatal error (recorded in `published.fatal`).
fn observe(
    node_id: u64,
    mut observer: ObserverState,
    clients: HashMap<u64, RaftServiceClient<tonic::transport::Channel>>,
    handle: tokio::runtime::Handle,
    published: Arc<Published>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let voters: Vec<u64> = clients
        .keys()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut next_voter = 0usize;
    let mut leader: Option<u64> = None;
    let mut failures = 0u32;
    let call_timeout = Duration::from_millis(OBSERVER_FETCH_WAIT_MS + PEER_CALL_TIMEOUT_MS);
    loop {
        if *stop.borrow() {
            return;
        }
        // The leader it learnt from answers, else the voters in turn.
        let target = match leader.filter(|l| clients.contains_key(l)) {
            Some(l) => l,
            None => voters[next_voter % voters.len()],
        };
        let mut client = clients[&target].clone();
        let request = proto::FetchRequest {
            node_id,
            next_index: observer.next_index(),
            max_wait_ms: OBSERVER_FETCH_WAIT_MS,
        };
        let answer = handle.block_on(async {
            tokio::select! {
                r = tokio::time::timeout(call_timeout, client.fetch(request)) => Some(r),
                _ = stop.changed() => None,
            }
        });
        let response = match answer {
            None => return,
            Some(Ok(Ok(response))) => response.into_inner(),
            Some(Ok(Err(_)) | Err(_)) => {
                failures += 1;
                if failures == 1 || failures % 100 == 0 {
                    tracing::warn!(
                        voter = target,
                        failures,
                        "metadata observer: fetch failed; asking the next voter"
                    );
                }
                if leader == Some(target) {
                    leader = None;
                    let mut status = published.status.lock();
                    status.leader_id = None;
                }
                next_voter = voters.iter().position(|v| *v == target).unwrap_or(0) + 1;
                let pause = Duration::from_millis(OBSERVER_RETRY_MS);
                let stopped = handle.block_on(async {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => false,
                        _ = stop.changed() => true,
                    }
                });
                if stopped {
                    return;
                }
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(voter = target, "metadata observer: fetching again");
            failures = 0;
        }
        let fetched = fetched_from_proto(response);
        let out = match observer.apply_fetched(&fetched) {
            Ok(out) => out,
            Err(e) => {
                tracing::error!("metadata observer stopped: {e}");
                *published.fatal.lock() = Some(e.to_string());
                return;
            }
        };
        leader = fetched.leader_id;
        if out.state_changed() {
            published.publish_state(observer.state().clone(), observer.applied_index());
        } else {
            published.applied.send_if_modified(|a| {
                let changed = *a != observer.applied_index();
                *a = observer.applied_index();
                changed
            });
        }
        let mut status = published.status.lock();
        status.leader_id = fetched.leader_id;
        status.term = status.term.max(fetched.term);
        status.commit_index = fetched.commit_index.max(observer.applied_index());
        status.applied_index = observer.applied_index();
        status.applied_records = observer.state().applied_records();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_topic(state: &ClusterState, name: &str) -> Proposal {
        Proposal {
            base_version: state.applied_records(),
            records: vec![cairn_meta::MetadataRecord::CreateTopic {
                name: name.into(),
                topic_id: uuid::Uuid::new_v4(),
                partitions: vec![],
                configs: Default::default(),
            }],
        }
    }

    /// A one-voter quorum that leads, started from a blocking thread.
    async fn leading_voter(dir: &Path) -> Arc<Quorum> {
        let settings = QuorumSettings {
            node_id: 1,
            voters: BTreeMap::new(),
            controller_listen: None,
        };
        let dir = dir.to_owned();
        let quorum = tokio::task::spawn_blocking(move || Quorum::start(&dir, &settings))
            .await
            .unwrap()
            .unwrap();
        let quorum = Arc::new(quorum);
        // Waiting only: a one-voter quorum elects itself at its first Ready.
        let guard = Instant::now() + Duration::from_secs(60);
        // Led, with its first (empty) entry of the term applied.
        while !quorum.is_leader() || quorum.status().applied_index == 0 {
            assert!(Instant::now() < guard, "the one-voter quorum never led");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        quorum
    }

    fn commands(quorum: &Quorum) -> SyncSender<Command> {
        match &quorum.role {
            Role::Voter { commands } => commands.clone(),
            Role::Observer { .. } => unreachable!("a voter"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_long_polls_until_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let quorum = leading_voter(dir.path()).await;
        let next_index = quorum.status().applied_index + 1;
        let before = (*quorum.state()).clone();

        // A poll that could wait an hour: it must return because of the commit.
        let poll = {
            let (quorum, commands) = (quorum.clone(), commands(&quorum));
            tokio::spawn(async move {
                let request = proto::FetchRequest {
                    node_id: 7,
                    next_index,
                    max_wait_ms: 3_600_000,
                };
                serve_fetch(&commands, &quorum.published, request, 3_600_000).await
            })
        };
        // The observer is noted as soon as it asks.
        let guard = Instant::now() + Duration::from_secs(60);
        while quorum.status().observers.is_empty() {
            assert!(Instant::now() < guard, "the fetch never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let observed = &quorum.status().observers[0];
        assert_eq!(
            (observed.node_id, observed.fetched_index),
            (7, next_index - 1)
        );
        assert!(!poll.is_finished(), "answered before anything committed");

        let committer = quorum.clone();
        let submitted = tokio::task::spawn_blocking(move || {
            let proposal = create_topic(&committer.state(), "polled");
            committer.submit(proposal, Instant::now() + Duration::from_secs(60))
        })
        .await
        .unwrap();
        assert!(
            matches!(submitted, Submitted::Committed { .. }),
            "{submitted:?}"
        );
        // A generous guard for a hang, far below the hour the poll could wait.
        let response = tokio::time::timeout(Duration::from_secs(60), poll)
            .await
            .expect("the long poll did not return on the commit")
            .unwrap()
            .unwrap();
        assert_eq!(response.entries.first().map(|e| e.index), Some(next_index));
        assert!(response.snapshot.is_none());
        assert_eq!(response.leader_id, 1);
        let fetched = fetched_from_proto(response);
        let mut state = before;
        let outcome = cairn_meta::quorum::apply_entry(&mut state, &fetched.entries[0]).unwrap();
        assert!(
            matches!(outcome, ApplyOutcome::Committed { .. }),
            "{outcome:?}"
        );
        assert!(state.topic("polled").is_some());

        // Nothing new: an empty answer once the (short) wait is over.
        let request = proto::FetchRequest {
            node_id: 7,
            next_index: quorum.status().applied_index + 1,
            max_wait_ms: 50,
        };
        let empty = quorum.fetch_committed(request).await.unwrap();
        assert!(empty.entries.is_empty() && empty.snapshot.is_none());
        // Voters do not fetch.
        let request = proto::FetchRequest {
            node_id: 1,
            next_index: 1,
            max_wait_ms: 0,
        };
        assert!(quorum.fetch_committed(request).await.is_err());
        let quorum = Arc::try_unwrap(quorum).ok().expect("the only handle");
        tokio::task::spawn_blocking(move || quorum.shutdown())
            .await
            .unwrap();
    }
}
