//! # cairn-broker — the Kafka wire-protocol server
//!
//! Owns everything between a client's TCP connection and a partition's log: the accept
//! loop and connection limits ([`server`]), framing and in-order pipelined responses
//! ([`connection`]), one handler module per Kafka API ([`handlers`], from which ApiVersions
//! is derived), the partitions this broker hosts and their high watermarks
//! ([`replica_manager`]), group-commit fsync ([`group_commit`]) and the metadata this
//! node has applied ([`metadata`]) with the metadata quorum's shell ([`quorum`]).
//!
//! ## What it must never do
//! - Re-encode record batches: produce appends the client's bytes, fetch returns the
//!   log's bytes, both unchanged.
//! - Acknowledge an `acks=all` produce before the records are durable under the log's
//!   flush policy (see `docs/durability.md`).
//! - Let one client's bad input affect another: every decode error closes only that
//!   connection, with a log line naming the peer.
//!
//! ## Threads
//! Everything runs on the tokio runtime the binary starts. Partition logs are plain
//! synchronous structs behind a `parking_lot::Mutex`; appends and page-cache reads run
//! under it on a runtime thread, fsyncs and metadata commits go to blocking threads.
//!
//! ## Kafka error codes
//! Only this crate knows Kafka's numeric error codes: [`errors`] maps each crate's error
//! to one, applied per partition in the response.

pub mod alloc;
pub mod client;
pub mod config;
pub mod connection;
pub mod controller;
pub mod errors;
pub mod group_commit;
pub mod group_coordinator;
pub mod handlers;
pub mod metadata;
pub mod metrics;
pub mod producer_ids;
pub mod quorum;
pub mod replica_manager;
pub mod replication;
pub mod response;
pub mod server;
pub mod txn_coordinator;

pub use config::BrokerConfig;

// The broker's own tests decode untrusted frames too (see `alloc`).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::NoReserveAllocator = alloc::NoReserveAllocator;
pub use server::{Broker, BrokerHandle};

/// Milliseconds since the Unix epoch: the one place the broker reads the wall clock for
/// the state machines it drives.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
