//! Per-partition log configuration: Kafka's topic-level keys with Kafka's defaults.
//!
//! `LogConfig::apply_props` takes Kafka's topic config keys verbatim (`segment.bytes`, ...),
//! validates each value and reports the first bad one as `LogError::InvalidConfig`. Topic keys
//! that Kafka defines but that do not concern the log itself (`min.insync.replicas`,
//! `compression.type`, ...) are accepted and ignored (see [`LogConfig::IGNORED_KEYS`]); any
//! other key is rejected so that typos do not pass silently.

use crate::error::LogError;
use crate::limits::{
    MAX_MESSAGE_BYTES_MAX, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_INDEX_BYTES_MAX,
    SEGMENT_INDEX_BYTES_MIN,
};

const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// When appended bytes are forced to stable storage.
///
/// What survives a power cut (the page cache is lost, the disk keeps what was fdatasync'ed):
/// - `EveryAppend`: every batch whose append returned `Ok`.
/// - `GroupCommit`: every batch with offset `< up_to_offset` of a `FlushTicket` whose `sync()`
///   returned `Ok` (the caller acknowledges producers only after that).
/// - `Interval`: batches older than the last interval flush (`flush.messages` / `flush.ms`).
/// - `Never`: whatever the OS had written back; recovery truncates to the longest valid prefix.
///
/// In every case recovery truncates a torn or corrupt tail, so the log is always a valid
/// prefix of what was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fdatasync before `append_as_leader` / `append_as_follower` returns.
    EveryAppend,
    /// The caller flushes through `begin_flush` / `FlushTicket::sync` / `complete_flush`, one
    /// fdatasync shared by all appends since the last one (and across partitions). Default.
    GroupCommit,
    /// Flush when `messages` records are unflushed or `ms` milliseconds passed since the last
    /// flush (Kafka's `flush.messages` and `flush.ms`); checked on append and by
    /// `maybe_flush_by_policy`.
    Interval { messages: u64, ms: i64 },
    /// Never fsync (rely on replication); `close` still flushes.
    Never,
}

/// `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// `delete`: retention by time and size.
    Delete,
    /// `compact`: keep the last record per key.
    Compact,
    /// `compact,delete`: both.
    CompactDelete,
}

impl CleanupPolicy {
    /// True when the policy includes compaction (keyless records are rejected).
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// True when retention by time and size applies.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// The Kafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// `message.timestamp.type`, also bit 3 of a batch's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    CreateTime,
    /// The broker stamps each batch with the append time (`max_timestamp` is patched).
    LogAppendTime,
}

impl TimestampType {
    /// The Kafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// The configuration of one partition log. `Default` gives Kafka's defaults, except the flush
/// policy, which is `GroupCommit` so that `acks=all` means "on disk on every in-sync replica".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this. Default 1 GiB.
    pub segment_bytes: u32,
    /// `segment.ms`: roll when the active segment's first batch is older than this. Default 7 d.
    pub segment_ms: i64,
    /// `segment.index.bytes`: preallocated size of each index file. Default 10 MiB.
    pub segment_index_bytes: u32,
    /// `index.interval.bytes`: bytes of log between two index entries. Default 4096.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest timestamp is older. -1 = forever. Default 7 d.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger. -1 = unbounded.
    pub retention_bytes: i64,
    /// `cleanup.policy`. Default `delete`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive compaction. Default 1 d.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted. Default 0.
    pub min_compaction_lag_ms: i64,
    /// `max.message.bytes`: largest batch accepted. Default 1048588.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`. Default `CreateTime`.
    pub message_timestamp_type: TimestampType,
    /// `flush.messages` / `flush.ms`, see [`FlushPolicy`].
    pub flush_policy: FlushPolicy,
    /// `file.delete.delay.ms`: how long a `.deleted` file lingers before removal. Default 60 s.
    pub file_delete_delay_ms: i64,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * MS_PER_DAY,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * MS_PER_DAY,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: MS_PER_DAY,
            min_compaction_lag_ms: 0,
            max_message_bytes: 1024 * 1024 + 12,
            message_timestamp_type: TimestampType::CreateTime,
            flush_policy: FlushPolicy::GroupCommit,
            file_delete_delay_ms: 60_000,
        }
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_i64(key: &str, value: &str, min: i64, max: i64) -> Result<i64, LogError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not an integer"))?;
    if v < min || v > max {
        return Err(invalid(key, value, format!("must be in [{min}, {max}]")));
    }
    Ok(v)
}

impl LogConfig {
    /// The Kafka topic config keys this crate interprets.
    pub const KNOWN_KEYS: &'static [&'static str] = &[
        "segment.bytes",
        "segment.ms",
        "segment.index.bytes",
        "index.interval.bytes",
        "retention.ms",
        "retention.bytes",
        "cleanup.policy",
        "delete.retention.ms",
        "min.compaction.lag.ms",
        "max.message.bytes",
        "message.timestamp.type",
        "flush.messages",
        "flush.ms",
        "file.delete.delay.ms",
    ];

    /// Kafka topic config keys that are valid but not the log's business (the broker or the
    /// producer path interprets them); `apply_props` accepts and ignores them.
    pub const IGNORED_KEYS: &'static [&'static str] = &[
        "compression.type",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "follower.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "message.downconversion.enable",
        "message.format.version",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "min.cleanable.dirty.ratio",
        "min.insync.replicas",
        "preallocate",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
        "segment.jitter.ms",
        "unclean.leader.election.enable",
    ];

    /// Applies Kafka topic config `(key, value)` pairs on top of `self`. Stops at the first
    /// invalid pair; pairs before it are applied.
    pub fn apply_props<'a>(
        &mut self,
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), LogError> {
        for (key, value) in props {
            self.apply_one(key, value)?;
        }
        Ok(())
    }

    fn flush_values(&self) -> (i64, i64) {
        match self.flush_policy {
            FlushPolicy::EveryAppend => (1, i64::MAX),
            FlushPolicy::Interval { messages, ms } => (messages.min(i64::MAX as u64) as i64, ms),
            FlushPolicy::GroupCommit | FlushPolicy::Never => (i64::MAX, i64::MAX),
        }
    }

    fn set_flush_values(&mut self, messages: i64, ms: i64) {
        self.flush_policy = if messages == 1 || ms == 0 {
            FlushPolicy::EveryAppend
        } else if messages == i64::MAX && ms == i64::MAX {
            match self.flush_policy {
                FlushPolicy::Never => FlushPolicy::Never,
                _ => FlushPolicy::GroupCommit,
            }
        } else {
            FlushPolicy::Interval {
                messages: messages as u64,
                ms,
            }
        };
    }

    fn apply_one(&mut self, key: &str, value: &str) -> Result<(), LogError> {
        match key {
            "segment.bytes" => {
                self.segment_bytes = parse_i64(
                    key,
                    value,
                    SEGMENT_BYTES_MIN as i64,
                    SEGMENT_BYTES_MAX as i64,
                )? as u32
            }
            "segment.ms" => self.segment_ms = parse_i64(key, value, 1, i64::MAX)?,
            "segment.index.bytes" => {
                self.segment_index_bytes = parse_i64(
                    key,
                    value,
                    SEGMENT_INDEX_BYTES_MIN as i64,
                    SEGMENT_INDEX_BYTES_MAX as i64,
                )? as u32
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_i64(key, value, 0, i32::MAX as i64)? as u32
            }
            "retention.ms" => self.retention_ms = parse_i64(key, value, -1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = parse_i64(key, value, -1, i64::MAX)?,
            "cleanup.policy" => {
                let mut parts: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                parts.sort_unstable();
                parts.dedup();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "expected \"delete\", \"compact\" or \"compact,delete\"",
                        ));
                    }
                }
            }
            "delete.retention.ms" => self.delete_retention_ms = parse_i64(key, value, 0, i64::MAX)?,
            "min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = parse_i64(key, value, 0, i64::MAX)?
            }
            "max.message.bytes" => {
                self.max_message_bytes =
                    parse_i64(key, value, 0, MAX_MESSAGE_BYTES_MAX as i64)? as u32
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(invalid(key, value, "expected CreateTime or LogAppendTime"));
                    }
                }
            }
            "flush.messages" => {
                let messages = parse_i64(key, value, 1, i64::MAX)?;
                let (_, ms) = self.flush_values();
                self.set_flush_values(messages, ms);
            }
            "flush.ms" => {
                let ms = parse_i64(key, value, 0, i64::MAX)?;
                let (messages, _) = self.flush_values();
                self.set_flush_values(messages, ms);
            }
            "file.delete.delay.ms" => {
                self.file_delete_delay_ms = parse_i64(key, value, 0, i64::MAX)?
            }
            _ if Self::IGNORED_KEYS.contains(&key) => {}
            _ => return Err(invalid(key, value, "unknown topic config key")),
        }
        Ok(())
    }

    /// The config as Kafka topic config pairs (every key of `KNOWN_KEYS`, in that order).
    /// `GroupCommit` and `Never` both render as Kafka's defaults for `flush.*`.
    pub fn to_props(&self) -> Vec<(&'static str, String)> {
        let (flush_messages, flush_ms) = self.flush_values();
        vec![
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            ("segment.index.bytes", self.segment_index_bytes.to_string()),
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("cleanup.policy", self.cleanup_policy.as_str().to_string()),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            (
                "min.compaction.lag.ms",
                self.min_compaction_lag_ms.to_string(),
            ),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.type",
                self.message_timestamp_type.as_str().to_string(),
            ),
            ("flush.messages", flush_messages.to_string()),
            ("flush.ms", flush_ms.to_string()),
            (
                "file.delete.delay.ms",
                self.file_delete_delay_ms.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.max_message_bytes, 1048588);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.flush_policy, FlushPolicy::GroupCommit);
    }

    #[test]
    fn props_round_trip() {
        let mut c = LogConfig::default();
        c.apply_props([
            ("segment.bytes", "1000"),
            ("cleanup.policy", "delete,compact"),
            ("message.timestamp.type", "LogAppendTime"),
            ("flush.messages", "10"),
            ("min.insync.replicas", "2"),
        ])
        .unwrap();
        assert_eq!(c.segment_bytes, 1000);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(
            c.flush_policy,
            FlushPolicy::Interval {
                messages: 10,
                ms: i64::MAX
            }
        );
        let props = c.to_props();
        assert_eq!(props.len(), LogConfig::KNOWN_KEYS.len());
        let mut d = LogConfig::default();
        d.apply_props(props.iter().map(|(k, v)| (*k, v.as_str())))
            .unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn flush_messages_one_is_every_append() {
        let mut c = LogConfig::default();
        c.apply_props([("flush.messages", "1")]).unwrap();
        assert_eq!(c.flush_policy, FlushPolicy::EveryAppend);
    }

    #[test]
    fn rejects_bad_values_with_context() {
        let mut c = LogConfig::default();
        for (k, v) in [
            ("segment.bytes", "3000000000"),
            ("segment.bytes", "abc"),
            ("cleanup.policy", "forever"),
            ("retention.ms", "-2"),
            ("no.such.key", "1"),
        ] {
            match c.apply_props([(k, v)]) {
                Err(LogError::InvalidConfig { key, value, .. }) => {
                    assert_eq!((key.as_str(), value.as_str()), (k, v))
                }
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
}
