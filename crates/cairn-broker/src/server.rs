//! [`Broker`]: opens metadata and logs, accepts connections, runs housekeeping, and shuts
//! down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::group_commit::GroupCommitter;
use crate::metadata::MetadataManager;
use crate::replica_manager::ReplicaManager;

/// Directory under the data dir that holds the metadata log.
pub const METADATA_DIR: &str = "__cluster_metadata";

/// Shared broker state handed to every connection.
pub struct Broker {
    pub config: BrokerConfig,
    pub metadata: MetadataManager,
    pub replicas: ReplicaManager,
    /// Host and port given to clients.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Consumer groups and committed offsets (`__consumer_offsets`).
    pub group_coordinator: crate::group_coordinator::GroupCoordinator,
    /// Transactions (`__transaction_state`).
    pub txn_coordinator: crate::txn_coordinator::TxnCoordinatorService,
    /// Topics created in the background for Metadata and FindCoordinator.
    pub(crate) implicit_creations: crate::handlers::topics::ImplicitCreations,
}

/// Retries the registration of an observer that started with no voter reachable until
/// it commits (see `MetadataManager::finish_registration`).
async fn finish_registration(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || b.metadata.finish_registration()).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => tracing::debug!("registering this broker: {e}; retrying"),
            Err(e) => {
                tracing::error!("registering this broker: {e}");
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A running broker.
pub struct BrokerHandle {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl Broker {
    /// Binds the listener, opens the metadata log and every hosted partition (recovering
    /// them if the last stop was a crash), and starts serving.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<BrokerHandle> {
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {}; is another broker using it?",
                config.listen
            )
        })?;
        let local_addr = listener.local_addr()?;
        let (advertised_host, advertised_port) = match &config.advertise {
            Some(a) => parse_host_port(a)?,
            None => (local_addr.ip().to_string(), local_addr.port()),
        };
        let base_log_config = config.base_log_config().context("invalid log defaults")?;
        let group_committer = GroupCommitter::start();
        let config2 = config.clone();
        let host = advertised_host.clone();
        let broker = tokio::task::spawn_blocking(move || -> anyhow::Result<Broker> {
            std::fs::create_dir_all(&config2.data_dir).with_context(|| {
                format!(
                    "cannot create data directory {}",
                    config2.data_dir.display()
                )
            })?;
            let metadata = MetadataManager::open_quorum(
                &config2.data_dir.join(METADATA_DIR),
                config2.node_id,
                (&host, advertised_port, config2.rack.clone()),
                &crate::quorum::QuorumSettings::from_config(&config2),
                &|state| {
                    crate::replica_manager::lost_partitions(
                        &config2.data_dir,
                        config2.node_id,
                        state,
                    )
                },
            )?;
            let replicas = ReplicaManager::new(
                config2.node_id,
                &config2.data_dir,
                base_log_config,
                group_committer,
            );
            let started = std::time::Instant::now();
            replicas.apply_metadata(&metadata.state(), crate::now_ms())?;
            tracing::info!(
                partitions = replicas.all().len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "opened partition logs"
            );
            Ok(Broker {
                group_coordinator: crate::group_coordinator::GroupCoordinator::new(
                    config2.group.clone(),
                    config2.offsets_topic_num_partitions,
                ),
                txn_coordinator: crate::txn_coordinator::TxnCoordinatorService::new(),
                implicit_creations: Default::default(),
                config: config2,
                metadata,
                replicas,
                advertised_host: host,
                advertised_port,
            })
        })
        .await??;
        let broker = Arc::new(broker);
        tracing::info!(
            listen = %local_addr,
            advertised = %format!("{}:{}", broker.advertised_host, broker.advertised_port),
            data_dir = %broker.config.data_dir.display(),
            node_id = broker.config.node_id,
            cluster_id = broker.metadata.state().cluster_id().unwrap_or_default(),
            "cairn broker listening"
        );
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(housekeeping(broker.clone(), shutdown_rx.clone()));
        tokio::spawn(crate::quorum::follow_metadata(
            broker.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::controller::run(broker.clone(), shutdown_rx.clone()));
        if broker.metadata.registration_pending() {
            tokio::spawn(finish_registration(broker.clone(), shutdown_rx.clone()));
        }
        tokio::spawn(crate::replication::run_isr_checks(
            broker.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::group_coordinator::run(
            broker.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(crate::txn_coordinator::run(
            broker.clone(),
            shutdown_rx.clone(),
        ));
        let accept_task = tokio::spawn(accept_loop(broker.clone(), listener, shutdown_rx));
        Ok(BrokerHandle {
            local_addr,
            broker,
            shutdown_tx,
            accept_task,
        })
    }
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Moves this broker's partition leaderships away (controlled shutdown), stops
    /// accepting, then flushes and closes every log (clean-shutdown markers).
    pub async fn shutdown(self) {
        crate::controller::controlled_shutdown(&self.broker).await;
        let _ = self.shutdown_tx.send(true);
        self.broker.replicas.fetchers.shutdown();
        let _ = self.accept_task.await;
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.replicas.shutdown()).await;
        tracing::info!("cairn broker stopped cleanly");
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.connections_max));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            crate::connection::serve(broker, stream, peer, shutdown).await;
            drop(permit);
        });
    }
}

/// How often logs with `flush.ms` / `flush.messages` are checked.
pub const FLUSH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How often idle idempotent producers are forgotten (Kafka's
/// `producer.id.expiration.check.interval.ms`).
pub const PRODUCER_EXPIRATION_CHECK_INTERVAL: Duration = Duration::from_secs(600);

/// Interval flushes every second; retention and compaction every
/// `log.retention.check.interval.ms`; producer expiry every
/// [`PRODUCER_EXPIRATION_CHECK_INTERVAL`] (`producer.id.expiration.ms`: 1 day).
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let retention_interval =
        Duration::from_millis(broker.config.log_retention_check_interval_ms.max(100));
    let mut next_retention = tokio::time::Instant::now() + retention_interval;
    let mut next_producer_expiry = tokio::time::Instant::now() + PRODUCER_EXPIRATION_CHECK_INTERVAL;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_CHECK_INTERVAL.min(retention_interval)) => {}
            _ = shutdown.changed() => return,
        }
        let b = broker.clone();
        let retention_due = tokio::time::Instant::now() >= next_retention;
        if retention_due {
            next_retention += retention_interval;
        }
        let producer_expiry_due = tokio::time::Instant::now() >= next_producer_expiry;
        if producer_expiry_due {
            next_producer_expiry += PRODUCER_EXPIRATION_CHECK_INTERVAL;
        }
        let _ = tokio::task::spawn_blocking(move || {
            let now = crate::now_ms();
            b.replicas.flush_by_policy(now);
            if retention_due {
                b.replicas.enforce_retention_and_compact(now);
            }
            if producer_expiry_due {
                let removed = b.replicas.remove_expired_producers(
                    now,
                    cairn_log::producer_state::DEFAULT_PRODUCER_ID_EXPIRATION_MS,
                );
                if removed > 0 {
                    tracing::info!(removed, "expired idle producer ids");
                }
            }
        })
        .await;
    }
}

fn parse_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("advertised address '{s}' must be host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("advertised address '{s}' has an invalid port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}
