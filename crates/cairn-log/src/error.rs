//! The one error type of the crate.
//!
//! Untrusted input (a client's batch, a config value, an offset in a request) returns one of
//! these; a broken invariant of our own state is an `assert!` instead. Only the broker maps
//! these to Kafka error codes (see each variant for the code it usually maps to).

use std::path::PathBuf;

use crate::producer_state::ProducerError;

/// Everything that can go wrong in `cairn-log`. Variants carry their context.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch from a client or follower fetch is malformed (bad length, bad CRC, truncated).
    /// Kafka: `CORRUPT_MESSAGE` (2).
    #[error("corrupt record batch: {reason}")]
    CorruptRecord { reason: String },

    /// A well-formed batch that breaks a rule (no key on a compacted topic, bad record count,
    /// bad offset deltas). Kafka: `INVALID_RECORD` (87).
    #[error("invalid record: {reason}")]
    InvalidRecord { reason: String },

    /// A batch (or a batch set) larger than `max.message.bytes` or than a segment.
    /// Kafka: `MESSAGE_TOO_LARGE` (10) / `RECORD_LIST_TOO_LARGE` (18).
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },

    /// Magic v0/v1 (legacy message sets) are rejected: every client since Kafka 0.11 sends v2.
    /// Kafka: `UNSUPPORTED_FOR_MESSAGE_FORMAT` (43) or `CORRUPT_MESSAGE`.
    #[error("unsupported record batch magic {magic} (only magic 2 is supported)")]
    UnsupportedMagic { magic: i8 },

    /// The offset is before `log_start_offset` or after `log_end_offset`.
    /// Kafka: `OFFSET_OUT_OF_RANGE` (1).
    #[error(
        "offset {offset} is out of range [{log_start_offset}, {log_end_offset}] of this partition log"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },

    /// Bytes on disk failed a check (CRC, length, offsets) at `position` in the file at `path`.
    /// The log never serves such bytes. Kafka: `KAFKA_STORAGE_ERROR` (56) or `CORRUPT_MESSAGE`.
    #[error("corrupt segment {path} at byte position {position}: {reason}")]
    CorruptSegment {
        path: PathBuf,
        position: u64,
        reason: String,
    },

    /// A topic config value was rejected. Kafka: `INVALID_CONFIG` (40).
    #[error("invalid config {key}={value}: {reason}")]
    InvalidConfig {
        key: String,
        value: String,
        reason: String,
    },

    /// A follower append whose first offset is below the log end offset.
    /// Kafka: `OFFSET_OUT_OF_RANGE` / `UNKNOWN_SERVER_ERROR` on the follower.
    #[error("non-contiguous append: expected an offset >= {expected}, got {got}")]
    NotContiguous { expected: i64, got: i64 },

    /// Not a failure: a leader append found that a batch of an idempotent producer repeats one
    /// of that producer's last 5 batches (a retry whose first attempt was appended). Nothing
    /// was appended. The broker answers `NONE` (0) with `base_offset` (and, on LogAppendTime
    /// topics, `timestamp` as the log append time), and for `acks=all` waits for the high
    /// watermark to pass `last_offset` as for a fresh append (the original may not be
    /// replicated yet).
    #[error("duplicate of the batch at offsets {base_offset}..={last_offset}")]
    DuplicateBatch {
        base_offset: i64,
        last_offset: i64,
        timestamp: i64,
    },

    /// A leader append refused by the producer state (sequence gap, fenced epoch...); nothing
    /// was appended. Kafka: see each [`ProducerError`] variant (45, 47 or 87).
    #[error(transparent)]
    Producer(#[from] ProducerError),

    /// An I/O error, with the operation and the file it happened on. ENOSPC arrives here.
    /// Kafka: `KAFKA_STORAGE_ERROR` (56).
    #[error("i/o error during {op} on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> LogError {
        LogError::CorruptRecord {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> LogError {
        LogError::InvalidRecord {
            reason: reason.into(),
        }
    }
}

/// Attaches an operation name and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn io_ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, LogError> {
        self.map_err(|source| LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
