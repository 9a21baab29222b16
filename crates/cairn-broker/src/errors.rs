//! The one mapping from our crates' errors to Kafka error codes.

use cairn_log::LogError;
use cairn_meta::controller::ControllerError;
use kafka_protocol::error::ResponseError;

/// The Kafka error for a log error, as answered to a client for that partition.
pub fn log_error_code(e: &LogError) -> ResponseError {
    match e {
        LogError::CorruptRecord { .. } => ResponseError::CorruptMessage,
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        LogError::NotContiguous { .. } => ResponseError::CorruptMessage,
        LogError::CorruptSegment { .. } | LogError::Io { .. } => ResponseError::KafkaStorageError,
        LogError::Producer(e) => ResponseError::try_from_code(e.kafka_code())
            .unwrap_or(ResponseError::UnknownServerError),
        // Not a failure: Produce answers a duplicate with the original offsets before it
        // gets here; anywhere else it means nothing was appended.
        LogError::DuplicateBatch { .. } => ResponseError::DuplicateSequenceNumber,
        #[allow(unreachable_patterns)]
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a refused admin request.
pub fn controller_error_code(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::TopicAlreadyExists { .. } => ResponseError::TopicAlreadyExists,
        ControllerError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        ControllerError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
        ControllerError::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
    }
}

/// The Kafka error for a metadata change that did not commit: a timeout (no quorum) is
/// REQUEST_TIMED_OUT, a change raced by others NOT_CONTROLLER (both retriable: clients
/// refresh and retry), a stopped or failing metadata store KAFKA_STORAGE_ERROR.
pub fn metadata_error_code(e: &crate::metadata::MetadataError) -> ResponseError {
    use crate::metadata::MetadataError as M;
    match e {
        M::Timeout { .. } => ResponseError::RequestTimedOut,
        M::Conflict { .. } => ResponseError::NotController,
        M::Start(_) | M::Import(_) | M::Stopped(_) | M::Io(_) => ResponseError::KafkaStorageError,
    }
}

/// Checks a client's `current_leader_epoch` against ours (KIP-320): -1 skips the check.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ResponseError> {
    if requested < 0 || requested == current {
        Ok(())
    } else if requested < current {
        Err(ResponseError::FencedLeaderEpoch)
    } else {
        Err(ResponseError::UnknownLeaderEpoch)
    }
}
