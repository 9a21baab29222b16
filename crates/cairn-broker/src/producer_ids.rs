//! Producer ids for InitProducerId: this broker hands them out from a block of
//! [`PRODUCER_ID_BLOCK_SIZE`] ids that the controller gave it through the metadata quorum
//! (KIP-730's `ProducerIds` record, [`cairn_meta::controller::allocate_producer_ids`]).
//!
//! Blocks are never reused (the metadata log remembers the next free id across restarts
//! and controller changes), so two brokers never hand out the same id, and an id handed out
//! before a restart is never handed out again: a restarted broker starts a fresh block and
//! the rest of its old one is simply never used, as in Kafka.
//!
//! ## Concurrency
//! [`ProducerIdManager::next_id`] is async and never blocks the runtime: the state is a
//! short `parking_lot` critical section, and a block is fetched by one background task
//! (the proposal itself runs on a blocking thread). When 90% of the current block is used,
//! the next one is prefetched, so an InitProducerId normally finds an id at once; callers
//! that find both blocks empty wait for the fetch in progress (one fetch at a time) and
//! get its error if it fails.

use std::future::Future;
use std::sync::Arc;

use cairn_meta::MetadataRecord;
use cairn_meta::controller::{PRODUCER_ID_BLOCK_SIZE, allocate_producer_ids};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::server::Broker;

/// A contiguous range of producer ids: `first..first + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdBlock {
    pub first: i64,
    pub size: i64,
}

/// Why no producer id could be handed out (no quorum, broker not registered yet...).
/// Retriable: the broker answers COORDINATOR_LOAD_IN_PROGRESS, which clients retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no producer id block: {0}")]
pub struct AllocError(pub String);

/// Prefetch the next block once this share of the current one is used (Kafka's
/// `RPCProducerIdManager` uses 90% too).
const PREFETCH_PERCENT: i64 = 90;

#[derive(Default)]
struct State {
    /// Next id to hand out and the end (exclusive) of the current block.
    next: i64,
    end: i64,
    /// Where the current block started (for the prefetch threshold).
    first: i64,
    /// A prefetched block, used when the current one runs out.
    spare: Option<IdBlock>,
    fetching: bool,
    /// The error of the last fetch, until a fetch succeeds.
    last_error: Option<String>,
}

impl State {
    fn needs_prefetch(&self) -> bool {
        if self.spare.is_some() || self.fetching {
            return false;
        }
        let size = self.end - self.first;
        size <= 0 || (self.next - self.first) * 100 >= size * PREFETCH_PERCENT
    }
}

struct Inner {
    state: Mutex<State>,
    /// Bumped after every fetch, success or failure, once `state` is updated.
    fetched: watch::Sender<u64>,
}

/// The broker's producer id allocator. Cheap to clone (shared state).
#[derive(Clone)]
pub struct ProducerIdManager {
    inner: Arc<Inner>,
}

impl Default for ProducerIdManager {
    fn default() -> Self {
        ProducerIdManager::new()
    }
}

impl ProducerIdManager {
    pub fn new() -> ProducerIdManager {
        ProducerIdManager {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                fetched: watch::channel(0).0,
            }),
        }
    }

    /// The next producer id of this broker, fetching a block from the metadata quorum when
    /// needed.
    pub async fn next_id_for(&self, broker: &Arc<Broker>) -> Result<i64, AllocError> {
        let broker = broker.clone();
        self.next_id(move || fetch_block(broker)).await
    }

    /// The next producer id; `fetch` gets a new block when one is needed (called at most
    /// once per call, and only when no fetch is already running).
    pub async fn next_id<F, Fut>(&self, fetch: F) -> Result<i64, AllocError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IdBlock, AllocError>> + Send + 'static,
    {
        let mut fetch = Some(fetch);
        loop {
            let mut rx = {
                let mut state = self.inner.state.lock();
                if state.next >= state.end
                    && let Some(block) = state.spare.take()
                {
                    state.first = block.first;
                    state.next = block.first;
                    state.end = block.first + block.size;
                }
                let id = (state.next < state.end).then(|| {
                    state.next += 1;
                    state.next - 1
                });
                if state.needs_prefetch()
                    && let Some(fetch) = fetch.take()
                {
                    state.fetching = true;
                    self.spawn_fetch(fetch());
                }
                if let Some(id) = id {
                    return Ok(id);
                }
                if !state.fetching {
                    // The fetch this call started or waited for failed (or others used up
                    // its whole block meanwhile): fail rather than queue another proposal
                    // behind it; the client retries.
                    return Err(AllocError(state.last_error.clone().unwrap_or_else(|| {
                        "the new block was used up by other requests".to_owned()
                    })));
                }
                // Subscribed under the lock: the fetch updates the state under the lock
                // before bumping the counter, so its wake-up cannot be missed.
                self.inner.fetched.subscribe()
            };
            if rx.changed().await.is_err() {
                return Err(AllocError("producer id allocator dropped".to_owned()));
            }
            // One fetch per call: after waiting for one, take its outcome.
            fetch = None;
        }
    }

    fn spawn_fetch(&self, fut: impl Future<Output = Result<IdBlock, AllocError>> + Send + 'static) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let result = fut.await;
            {
                let mut state = inner.state.lock();
                state.fetching = false;
                match result {
                    Ok(block) => {
                        tracing::info!(
                            first_id = block.first,
                            size = block.size,
                            "producer id block allocated"
                        );
                        state.last_error = None;
                        if state.next >= state.end {
                            state.first = block.first;
                            state.next = block.first;
                            state.end = block.first + block.size;
                        } else {
                            state.spare = Some(block);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "producer id block allocation failed");
                        state.last_error = Some(e.0);
                    }
                }
            }
            inner.fetched.send_modify(|n| *n += 1);
        });
    }
}

/// Commits a `ProducerIds` record for this broker through the metadata quorum (on a
/// blocking thread) and returns the block it grants.
pub async fn fetch_block(broker: Arc<Broker>) -> Result<IdBlock, AllocError> {
    let node_id = broker.config.node_id;
    tokio::task::spawn_blocking(move || {
        let mut granted = None;
        let committed = broker.metadata.propose(|state| {
            let records = allocate_producer_ids(state, node_id)?;
            for record in &records {
                if let MetadataRecord::ProducerIds { first_id, size, .. } = record {
                    granted = Some(IdBlock {
                        first: *first_id,
                        size: *size,
                    });
                }
            }
            Ok::<_, cairn_meta::controller::ReplicationError>(records)
        });
        match committed {
            Ok(Ok(_)) => granted.ok_or_else(|| AllocError("no ProducerIds record".to_owned())),
            Ok(Err(e)) => Err(AllocError(e.to_string())),
            Err(e) => Err(AllocError(e.to_string())),
        }
    })
    .await
    .map_err(|e| AllocError(format!("allocation task failed: {e}")))?
}

/// Ids per block, re-exported for the handler's docs and tests.
pub const BLOCK_SIZE: i64 = PRODUCER_ID_BLOCK_SIZE;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    use super::*;

    /// A fake quorum handing out consecutive blocks of `size`.
    #[derive(Clone)]
    struct FakeQuorum {
        next: Arc<AtomicI64>,
        calls: Arc<AtomicUsize>,
        size: i64,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FakeQuorum {
        fn new(size: i64) -> FakeQuorum {
            FakeQuorum {
                next: Arc::new(AtomicI64::new(0)),
                calls: Arc::new(AtomicUsize::new(0)),
                size,
                fail: Arc::new(Default::default()),
            }
        }

        fn fetch(&self) -> impl Future<Output = Result<IdBlock, AllocError>> + Send + 'static {
            let q = self.clone();
            async move {
                q.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                if q.fail.load(Ordering::SeqCst) {
                    return Err(AllocError("no quorum".to_owned()));
                }
                let first = q.next.fetch_add(q.size, Ordering::SeqCst);
                Ok(IdBlock {
                    first,
                    size: q.size,
                })
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_get_distinct_ids_from_few_blocks() {
        let quorum = FakeQuorum::new(100);
        let ids = ProducerIdManager::new();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let ids = ids.clone();
            let quorum = quorum.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..200 {
                    got.push(ids.next_id(|| quorum.fetch()).await.unwrap());
                }
                got
            }));
        }
        let mut all = HashSet::new();
        for t in tasks {
            for id in t.await.unwrap() {
                assert!(all.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(all.len(), 3200);
        // 32 blocks are needed; prefetching may fetch one more, never many more.
        let calls = quorum.calls.load(Ordering::SeqCst);
        assert!((32..=34).contains(&calls), "{calls} fetches");
    }

    #[tokio::test]
    async fn prefetches_at_ninety_percent() {
        let quorum = FakeQuorum::new(10);
        let ids = ProducerIdManager::new();
        for expected in 0..9 {
            assert_eq!(ids.next_id(|| quorum.fetch()).await, Ok(expected));
        }
        assert_eq!(quorum.calls.load(Ordering::SeqCst), 1);
        // The 9th id (90%) was handed out; the next call starts the prefetch...
        assert_eq!(ids.next_id(|| quorum.fetch()).await, Ok(9));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(quorum.calls.load(Ordering::SeqCst), 2);
        // ... whose block is used without waiting once the first runs out.
        assert_eq!(ids.next_id(|| quorum.fetch()).await, Ok(10));
        assert_eq!(quorum.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_the_waiters_and_the_next_call_retries() {
        let quorum = FakeQuorum::new(10);
        quorum.fail.store(true, Ordering::SeqCst);
        let ids = ProducerIdManager::new();
        let err = ids.next_id(|| quorum.fetch()).await.unwrap_err();
        assert_eq!(err, AllocError("no quorum".to_owned()));
        quorum.fail.store(false, Ordering::SeqCst);
        assert_eq!(ids.next_id(|| quorum.fetch()).await, Ok(0));
    }
}
