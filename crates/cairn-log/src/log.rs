//! [`PartitionLog`]: one partition's directory of segments (Kafka's `UnifiedLog`/`LocalLog`).
//!
//! See the crate docs for the on-disk format, the invariants and what survives a crash.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use crate::batch::{
    self, BASE_OFFSET_POS, BATCH_HEADER_LEN, BatchHeader, Batches, CompressionType,
    MAX_TIMESTAMP_POS, PARTITION_LEADER_EPOCH_POS,
};
use crate::checkpoint;
use crate::cleaner::{CleanInput, CleanStats, CleanTask, CleanedSegments};
use crate::config::{FlushPolicy, LogConfig, TimestampType};
use crate::control::{self, EndTxnMarker};
use crate::durability::Fsync;
use crate::error::{IoContext, LogError};
use crate::limits::{
    MAX_MESSAGE_BYTES_MAX, READ_BYTES_MAX, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
    SEGMENT_INDEX_BYTES_MAX, SEGMENT_INDEX_BYTES_MIN,
};
use crate::producer_state::{CheckOutcome, ProducerStateManager};
use crate::segment::{LogSegment, file_name};
use crate::txn_index::AbortedTxn;

/// Highest flushed offset (exclusive), Kafka text checkpoint format.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// `log_start_offset`, moved by DeleteRecords and retention.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";
/// `(leader_epoch, start_offset)` pairs.
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// Present only between a clean `close` and the next `open`.
pub const CLEAN_SHUTDOWN_FILE: &str = ".cairn-clean-shutdown";
/// Suffix of files scheduled for removal.
pub const DELETED_SUFFIX: &str = ".deleted";
/// Suffix of a segment rewritten by the cleaner before it is swapped in.
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The stamped append time for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    /// Largest batch max timestamp of the appended batches.
    pub max_timestamp: i64,
    /// Records appended (sum of `records_count`).
    pub records_count: u32,
    /// Bytes appended.
    pub bytes: usize,
}

/// What a read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadInfo {
    /// Whole batches, exactly as stored (empty when nothing qualifies).
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// A `(timestamp, offset)` answer for ListOffsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// The files to fdatasync for one group commit, taken under the caller's lock with
/// [`PartitionLog::begin_flush`] and synced without it. Holds the files open (`Arc<File>`), so
/// segments deleted meanwhile are harmless.
#[derive(Debug)]
pub struct FlushTicket {
    /// Every offset below this is durable once `sync` returns `Ok`.
    pub up_to_offset: i64,
    files: Vec<Arc<File>>,
    generation: u64,
}

impl FlushTicket {
    /// fdatasync every file (the data files, the index files of sealed segments and the
    /// directory when segments were created). Run it without holding the log's lock.
    pub fn sync(&self) -> std::io::Result<()> {
        for f in &self.files {
            f.fsync()?;
        }
        Ok(())
    }

    /// Number of files this ticket syncs.
    pub fn files_len(&self) -> usize {
        self.files.len()
    }
}

/// One partition's log. Not internally synchronised: the caller wraps it in a lock; `read`,
/// `begin_flush` and lookups take `&self`, mutations `&mut self`.
pub struct PartitionLog {
    dir: PathBuf,
    dir_file: Arc<File>,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<LogSegment>,
    log_start_offset: i64,
    log_end_offset: i64,
    recovery_point: i64,
    persisted_recovery_point: i64,
    leader_epochs: Vec<(i32, i64)>,
    /// Bumped by every truncation, so that stale flush tickets are ignored.
    generation: u64,
    unflushed_messages: u64,
    last_flush_ms: i64,
    pending_deletes: Vec<(PathBuf, i64)>,
    /// Idempotent producers' state for the batches below `log_end_offset` (see
    /// `log_producer.rs`).
    producer_state: ProducerStateManager,
}

fn check_config(c: &LogConfig) -> Result<(), LogError> {
    let bad = |key: &str, value: String, reason: &str| {
        Err(LogError::InvalidConfig {
            key: key.into(),
            value,
            reason: reason.into(),
        })
    };
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&c.segment_bytes) {
        return bad("segment.bytes", c.segment_bytes.to_string(), "out of range");
    }
    if !(SEGMENT_INDEX_BYTES_MIN..=SEGMENT_INDEX_BYTES_MAX).contains(&c.segment_index_bytes) {
        return bad(
            "segment.index.bytes",
            c.segment_index_bytes.to_string(),
            "out of range",
        );
    }
    if c.max_message_bytes > MAX_MESSAGE_BYTES_MAX {
        return bad(
            "max.message.bytes",
            c.max_message_bytes.to_string(),
            "out of range",
        );
    }
    if c.segment_ms < 1 {
        return bad("segment.ms", c.segment_ms.to_string(), "must be positive");
    }
    Ok(())
}

fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

impl PartitionLog {
    /// Opens (creating if missing) the partition directory `dir` and recovers it.
    ///
    /// After a clean shutdown nothing is scanned but the bytes after the active segment's last
    /// index entry. After a crash, segments from the one holding the recovery point onwards
    /// are scanned batch by batch (length, CRC-32C, increasing offsets), a torn or corrupt tail
    /// is truncated (and logged), later segments are deleted, and their indexes are rebuilt.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut log = cairn_log::PartitionLog::open(dir.path(), Default::default(), 0).unwrap();
    /// let batch = cairn_log::testutil::simple_batch(3, 10, 1_000);
    /// let info = log.append_as_leader(&batch, 0, 1_000).unwrap();
    /// assert_eq!((info.base_offset, info.last_offset), (0, 2));
    /// log.flush().unwrap();
    /// let read = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    /// // Stored as received, with the base offset and leader epoch (bytes 0..16) stamped.
    /// assert_eq!(&read.records[16..], &batch[16..]);
    /// log.close().unwrap();
    /// ```
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog, LogError> {
        check_config(&config)?;
        std::fs::create_dir_all(dir).io_ctx("create partition directory", dir)?;
        let dir_file = Arc::new(File::open(dir).io_ctx("open partition directory", dir)?);

        let mut bases = std::collections::BTreeSet::new();
        let mut index_files = Vec::new();
        for entry in std::fs::read_dir(dir).io_ctx("list partition directory", dir)? {
            let entry = entry.io_ctx("list partition directory", dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(DELETED_SUFFIX)
                || name.ends_with(".tmp")
                || name.ends_with(CLEANED_SUFFIX)
            {
                info!(path = %path.display(), "removing leftover file");
                std::fs::remove_file(&path).io_ctx("remove leftover file", &path)?;
                continue;
            }
            match parse_segment_name(&name) {
                Some((base, "log")) => {
                    bases.insert(base);
                }
                Some((base, "index" | "timeindex" | "txnindex")) => index_files.push((base, path)),
                _ => {}
            }
        }
        for (base, path) in index_files {
            if !bases.contains(&base) {
                std::fs::remove_file(&path).io_ctx("remove orphan index", &path)?;
            }
        }

        let clean_path = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = clean_path.exists();
        let read_or_warn = |r: Result<Option<i64>, LogError>| match r {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "ignoring unreadable checkpoint");
                None
            }
        };
        let rp_checkpoint = read_or_warn(checkpoint::read_offset(&dir.join(RECOVERY_POINT_FILE)));
        let start_checkpoint =
            read_or_warn(checkpoint::read_offset(&dir.join(LOG_START_OFFSET_FILE)));
        let leader_epochs = match checkpoint::read_epochs(&dir.join(LEADER_EPOCH_FILE)) {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "ignoring unreadable leader epoch checkpoint");
                Vec::new()
            }
        };

        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            dir_file,
            segments: Vec::new(),
            log_start_offset: 0,
            log_end_offset: 0,
            recovery_point: 0,
            persisted_recovery_point: rp_checkpoint.unwrap_or(-1),
            leader_epochs,
            generation: 0,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            pending_deletes: Vec::new(),
            producer_state: ProducerStateManager::new(0),
            config,
        };

        if bases.is_empty() {
            let start = start_checkpoint.unwrap_or(0).max(0);
            log.segments.push(LogSegment::create(
                dir,
                start,
                log.config.segment_index_bytes,
            )?);
            log.log_start_offset = start;
            log.log_end_offset = start;
            log.rebuild_producer_state(start);
        } else {
            for &base in &bases {
                log.segments.push(LogSegment::open(dir, base)?);
            }
            let recovered_from = if clean { log.load_clean()? } else { None };
            let from = match (clean, recovered_from) {
                (true, None) => None,
                (true, Some(i)) => Some(i),
                (false, _) => {
                    let rp = rp_checkpoint.unwrap_or(i64::MIN);
                    Some(
                        log.segments
                            .iter()
                            .rposition(|s| s.base_offset <= rp)
                            .unwrap_or(0),
                    )
                }
            };
            if let Some(from) = from {
                log.recover_from(from)?;
            } else {
                log.rebuild_producer_state(log.log_end_offset);
            }
            let first_base = log.segments[0].base_offset;
            log.log_start_offset = start_checkpoint.unwrap_or(first_base).max(first_base);
        }
        let last = log.segments.len() - 1;
        log.segments[last].activate(log.config.segment_index_bytes)?;
        log.recovery_point = log.log_end_offset;
        if log.log_start_offset > log.log_end_offset {
            warn!(
                log_start_offset = log.log_start_offset,
                log_end_offset = log.log_end_offset,
                "log start offset beyond the recovered log end; starting the log over"
            );
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start)?;
        }
        log.fix_leader_epochs()?;
        log.finish_open_producer_state()?;
        if log.persisted_recovery_point != log.recovery_point {
            log.persist_recovery_point()?;
        }
        // Right after open every older segment is idle: keep descriptors for the active one.
        for seg in &log.segments {
            seg.touched_reset();
        }
        log.release_idle_handles();
        if clean {
            std::fs::remove_file(&clean_path)
                .io_ctx("remove clean shutdown marker", &clean_path)?;
            // The marker must not reappear after a power cut once appends resume.
            log.dir_file.fsync_all().io_ctx("fsync directory", dir)?;
        }
        Ok(log)
    }

    /// Loads a cleanly closed log without scanning. Returns the index of a segment that needs
    /// recovery after all (a failed sanity check or a damaged tail), if any.
    fn load_clean(&mut self) -> Result<Option<usize>, LogError> {
        let last = self.segments.len() - 1;
        for i in 0..last {
            if let Err(reason) = self.segments[i].sanity_check() {
                warn!(segment = %self.segments[i].log_path.display(), %reason, "index check failed after clean shutdown");
                return Ok(Some(i));
            }
            if let Err(reason) = self.txn_index_check(i) {
                warn!(segment = %self.segments[i].log_path.display(), %reason, "transaction index check failed after clean shutdown; rebuilding it");
                return Ok(Some(i));
            }
        }
        if let Err(reason) = self.segments[last].sanity_check() {
            warn!(segment = %self.segments[last].log_path.display(), %reason, "index check failed after clean shutdown");
            return Ok(Some(last));
        }
        let tail = self.segments[last].load_tail()?;
        if let Some(reason) = tail.error {
            warn!(segment = %self.segments[last].log_path.display(), %reason, "damaged tail after clean shutdown");
            return Ok(Some(last));
        }
        self.log_end_offset = tail.next_offset.unwrap_or(self.segments[last].base_offset);
        if tail.next_offset.is_none() && self.segments[last].offset_index.last().is_some() {
            return Ok(Some(last));
        }
        if let Err(reason) = self.txn_index_check(last) {
            warn!(segment = %self.segments[last].log_path.display(), %reason, "transaction index check failed after clean shutdown; rebuilding it");
            return Ok(Some(last));
        }
        Ok(None)
    }

    /// Checks segment `i`'s transaction index against its offsets (up to the next segment's
    /// base, or the log end offset for the last one).
    fn txn_index_check(&self, i: usize) -> Result<(), String> {
        let seg = &self.segments[i];
        let end = self
            .segments
            .get(i + 1)
            .map_or(self.log_end_offset, |n| n.base_offset);
        seg.txn_index.check(seg.base_offset, end)
    }

    /// Scans and rebuilds segments `from..`, truncating at the first invalid batch and
    /// dropping every later segment, then fsyncs what was recovered.
    fn recover_from(&mut self, from: usize) -> Result<(), LogError> {
        // Segments before `from` are below the recovery point: durable, checked cheaply. The
        // first one whose transaction index fails its check has it (and every later one)
        // rebuilt by the producer-state replay.
        let mut txn_rebuild_from = from;
        for i in 0..from {
            if txn_rebuild_from == from {
                if let Err(reason) = self.txn_index_check(i) {
                    warn!(segment = %self.segments[i].log_path.display(), %reason, "transaction index check failed; rebuilding it");
                    txn_rebuild_from = i;
                }
            }
            if let Err(reason) = self.segments[i].sanity_check() {
                warn!(segment = %self.segments[i].log_path.display(), %reason, "rebuilding indexes");
                let prev = if i == 0 {
                    i64::MIN
                } else {
                    self.segments[i].base_offset
                };
                let (end, cut) = self.segments[i].recover(
                    prev,
                    self.config.index_interval_bytes,
                    self.config.segment_index_bytes,
                )?;
                self.segments[i].seal()?;
                if cut > 0 {
                    warn!(segment = %self.segments[i].log_path.display(), cut_bytes = cut, reason = ?end.error, "truncated a segment below the recovery point");
                    let next = end.next_offset.unwrap_or(self.segments[i].base_offset);
                    self.segments[i].txn_index.truncate_to(next)?;
                }
            }
        }
        let mut next = self.segments[from].base_offset;
        // The producer state rides on the scan: loaded from a snapshot at or below the scan
        // start, then fed every recovered batch; the scanned segments' transaction indexes
        // are rebuilt from the transactions the scan sees completed.
        let producers_from =
            self.begin_recovery_producer_state(next, self.segments[txn_rebuild_from].base_offset)?;
        let mut i = from;
        while i < self.segments.len() {
            let is_last = i + 1 == self.segments.len();
            let seg = &mut self.segments[i];
            let producers = &mut self.producer_state;
            let mut aborted: Vec<AbortedTxn> = Vec::new();
            let (end, cut) = seg.recover_with(
                next,
                self.config.index_interval_bytes,
                self.config.segment_index_bytes,
                |h, bytes| {
                    if h.base_offset >= producers_from {
                        let marker = if h.is_control() && h.producer_id >= 0 {
                            producer::marker_of(h, bytes)
                        } else {
                            None
                        };
                        if let Some(c) = producers.update(h, marker) {
                            if c.is_aborted {
                                aborted.push(producer::aborted_entry(producers, &c));
                            }
                        }
                    }
                },
            )?;
            if seg.txn_index.entries() != aborted.as_slice() || seg.txn_index.damage.is_some() {
                warn!(segment = %seg.log_path.display(), entries = aborted.len(), "rebuilt the transaction index");
                seg.txn_index.replace(aborted)?;
            }
            if let Some(reason) = &end.error {
                warn!(
                    segment = %seg.log_path.display(),
                    position = end.valid_bytes,
                    truncated_bytes = cut,
                    %reason,
                    "recovery truncated a torn or corrupt tail"
                );
            }
            next = end.next_offset.unwrap_or(next.max(seg.base_offset));
            let stop = end.error.is_some();
            if !is_last {
                seg.seal()?;
            }
            for f in seg.files()? {
                f.fsync().io_ctx("fsync segment", &seg.log_path)?;
            }
            i += 1;
            if stop && i < self.segments.len() {
                let dropped: Vec<LogSegment> = self.segments.drain(i..).collect();
                for s in dropped {
                    warn!(segment = %s.log_path.display(), "deleting a segment after a truncated one");
                    remove_segment_files(&s)?;
                }
                // The previously sealed segment becomes the active one again.
            }
        }
        self.log_end_offset = next;
        self.finish_recovery_producer_state(producers_from);
        self.dir_file
            .fsync_all()
            .io_ctx("fsync directory", &self.dir)?;
        Ok(())
    }

    fn fix_leader_epochs(&mut self) -> Result<(), LogError> {
        let before = self.leader_epochs.clone();
        let leo = self.log_end_offset;
        self.leader_epochs.retain(|&(_, start)| start < leo);
        self.truncate_epochs_from_start(self.log_start_offset);
        if before != self.leader_epochs {
            self.persist_leader_epochs()?;
        }
        Ok(())
    }

    fn truncate_epochs_from_start(&mut self, start: i64) {
        // Keep the latest epoch that began at or before `start`, moved up to `start`.
        let firsts = self.leader_epochs.iter().filter(|e| e.1 <= start).count();
        if firsts > 0 {
            self.leader_epochs.drain(..firsts - 1);
            self.leader_epochs[0].1 = self.leader_epochs[0].1.max(start);
        }
    }

    fn persist_leader_epochs(&self) -> Result<(), LogError> {
        checkpoint::write_epochs(
            &self.dir_file,
            &self.dir.join(LEADER_EPOCH_FILE),
            &self.leader_epochs,
        )
    }

    fn persist_recovery_point(&mut self) -> Result<(), LogError> {
        checkpoint::write_offset(
            &self.dir_file,
            &self.dir.join(RECOVERY_POINT_FILE),
            self.recovery_point,
        )?;
        self.persisted_recovery_point = self.recovery_point;
        Ok(())
    }

    fn persist_log_start_offset(&self) -> Result<(), LogError> {
        checkpoint::write_offset(
            &self.dir_file,
            &self.dir.join(LOG_START_OFFSET_FILE),
            self.log_start_offset,
        )
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration. Size and index settings apply from the next segment.
    /// An invalid config (possible only when built by hand) is clamped into range.
    pub fn update_config(&mut self, mut config: LogConfig) {
        config.segment_bytes = config
            .segment_bytes
            .clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
        config.segment_index_bytes = config
            .segment_index_bytes
            .clamp(SEGMENT_INDEX_BYTES_MIN, SEGMENT_INDEX_BYTES_MAX);
        config.max_message_bytes = config.max_message_bytes.min(MAX_MESSAGE_BYTES_MAX);
        config.segment_ms = config.segment_ms.max(1);
        self.config = config;
    }

    /// Validates every batch of `buf` (whole batches only). Returns headers and positions.
    fn validate(&self, buf: &[u8], leader: bool) -> Result<Vec<(BatchHeader, usize)>, LogError> {
        if buf.is_empty() {
            return Err(LogError::invalid("no record batches"));
        }
        if buf.len() > self.config.segment_bytes as usize {
            return Err(LogError::RecordTooLarge {
                size: buf.len(),
                max: self.config.segment_bytes as usize,
            });
        }
        let mut out = Vec::new();
        let mut it = Batches::new(buf);
        let mut prev_last: Option<i64> = None;
        while let Some(item) = it.next() {
            let pos = it.position();
            let (h, bytes) = item?;
            let pos = pos - bytes.len();
            if h.total_len() > self.config.max_message_bytes as usize {
                return Err(LogError::RecordTooLarge {
                    size: h.total_len(),
                    max: self.config.max_message_bytes as usize,
                });
            }
            batch::verify_crc(bytes)?;
            if leader {
                if h.is_control() {
                    return Err(LogError::invalid(
                        "control batches (transaction markers) are written only through \
                         append_marker_as_leader, never by producers",
                    ));
                }
                if h.records_count < 1 {
                    return Err(LogError::invalid("batch has no records"));
                }
                if h.last_offset_delta != h.records_count - 1 {
                    return Err(LogError::invalid(format!(
                        "last_offset_delta {} does not match records_count {}",
                        h.last_offset_delta, h.records_count
                    )));
                }
                if h.compression() == CompressionType::None {
                    let n = batch::count_uncompressed_records(bytes)?;
                    if n != h.records_count as usize {
                        return Err(LogError::corrupt(format!(
                            "records_count {} but {n} records present",
                            h.records_count
                        )));
                    }
                }
                if self.config.cleanup_policy.compacts() && !h.is_control() {
                    for r in batch::decode_records(bytes)? {
                        if r.key.is_none() {
                            return Err(LogError::invalid(
                                "compacted topic cannot accept a record without a key",
                            ));
                        }
                    }
                }
            } else {
                if (h.last_offset_delta as i64) + 1 < h.records_count as i64 {
                    return Err(LogError::corrupt("records_count exceeds the offset range"));
                }
                if let Some(prev) = prev_last {
                    if h.base_offset <= prev {
                        return Err(LogError::NotContiguous {
                            expected: prev + 1,
                            got: h.base_offset,
                        });
                    }
                }
                prev_last = Some(h.last_offset());
            }
            if h.max_timestamp < h.base_timestamp && h.records_count > 0 {
                return Err(LogError::invalid(format!(
                    "max_timestamp {} below base_timestamp {}",
                    h.max_timestamp, h.base_timestamp
                )));
            }
            out.push((h, pos));
        }
        Ok(out)
    }

    /// Appends producer batches as the partition leader.
    ///
    /// Validates every batch before writing any (magic 2, lengths, CRC-32C, record count,
    /// timestamps, keys on compacted topics), then assigns offsets from the log end offset,
    /// stamps `partition_leader_epoch` (and, on LogAppendTime topics, the attribute bit and
    /// `max_timestamp = now_ms`, recomputing the CRC) in `records`, and writes them. Rolls
    /// first when the active segment is full (`segment.bytes`, full index) or older than
    /// `segment.ms`. A `leader_epoch` above the latest starts a new leader-epoch entry.
    ///
    /// Batches with a producer id are checked against the producer state first (see
    /// [`crate::producer_state`]): a retry of a retained batch returns
    /// [`LogError::DuplicateBatch`] with its original offsets, a sequence or epoch error
    /// [`LogError::Producer`]; either way nothing of the request is appended.
    ///
    /// Errors: validation errors append nothing. An `Io` error from the write (ENOSPC, short
    /// write) appends nothing and leaves the log as it was. With `FlushPolicy::EveryAppend` or
    /// a due `Interval`, an `Io` error from the fsync after the write means the batches *are*
    /// in the log (readable, `log_end_offset` moved) but not known durable.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let headers = self.validate(records, true)?;
        if headers.iter().any(|(h, _)| h.producer_id >= 0) {
            let check = self
                .producer_state
                .check_batches(headers.iter().map(|(h, _)| h))?;
            if let CheckOutcome::Duplicate {
                base_offset,
                last_offset,
                timestamp,
            } = check
            {
                return Err(LogError::DuplicateBatch {
                    base_offset,
                    last_offset,
                    timestamp,
                });
            }
        }
        self.append_patched(records, &headers, leader_epoch, now_ms)
    }

    /// Leader append for batches built by a coordinator (the group coordinator's
    /// transactional offset commits: transactional batches with a producer id/epoch but
    /// `base_sequence` -1). Validates like `append_as_leader` (CRC, offsets, record counts,
    /// keys on compacted topics) and checks epochs (an older epoch →
    /// [`crate::ProducerError::InvalidProducerEpoch`]) and transaction state, but skips
    /// sequence checks (Kafka's `AppendOrigin.COORDINATOR`); the batches still start and
    /// extend their producer's transaction.
    pub fn append_as_coordinator(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let headers = self.validate(records, true)?;
        self.producer_state
            .check_coordinator_batches(headers.iter().map(|(h, _)| h))?;
        self.append_patched(records, &headers, leader_epoch, now_ms)
    }

    /// Appends an end-transaction marker for `producer_id` as leader (the WriteTxnMarkers
    /// path), with the batch's `partition_leader_epoch = leader_epoch` and timestamp
    /// `now_ms`. Checks: a `producer_epoch` older than the producer's →
    /// [`crate::ProducerError::InvalidProducerEpoch`]; a `coordinator_epoch` older than the
    /// one of the producer's last marker →
    /// [`crate::ProducerError::TransactionCoordinatorFenced`]. A marker for a producer without
    /// an ongoing transaction in this partition is appended and completes nothing. An ABORT
    /// marker that completes a transaction adds an entry to the active segment's
    /// `.txnindex`. Returns the AppendInfo of the 1-record batch.
    ///
    /// ```
    /// use cairn_log::{ControlType, EndTxnMarker, PartitionLog};
    /// use cairn_log::testutil::{BatchBuilder, TestRecord};
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut log = PartitionLog::open(dir.path(), Default::default(), 0).unwrap();
    /// let data = BatchBuilder::new(0)
    ///     .producer(7, 0, 0)
    ///     .transactional()
    ///     .record(TestRecord::kv(1_000, "k", "v"))
    ///     .build();
    /// log.append_as_leader(&data, 0, 1_000).unwrap();
    /// // Ongoing: read_committed consumers stop at the transaction's first offset.
    /// assert_eq!(log.last_stable_offset(1), 0);
    /// let abort = EndTxnMarker { control: ControlType::Abort, coordinator_epoch: 0 };
    /// let info = log.append_marker_as_leader(7, 0, abort, 0, 1_001).unwrap();
    /// assert_eq!(info.base_offset, 1);
    /// // Stable once the high watermark passed the marker; the abort is listed for fetches.
    /// assert_eq!(log.last_stable_offset(2), 2);
    /// let aborted = log.collect_aborted_transactions(0, 2).unwrap();
    /// assert_eq!((aborted[0].producer_id, aborted[0].first_offset, aborted[0].last_offset), (7, 0, 1));
    /// ```
    pub fn append_marker_as_leader(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        if producer_id < 0 {
            return Err(LogError::invalid(format!(
                "a transaction marker needs a producer id, got {producer_id}"
            )));
        }
        self.producer_state
            .check_marker(producer_id, producer_epoch, &marker)?;
        let b = control::build_marker_batch(producer_id, producer_epoch, marker, now_ms);
        let h = BatchHeader::parse(&b).expect("a built marker batch parses");
        self.append_patched(&b, &[(h, 0)], leader_epoch, now_ms)
    }

    /// The leader's write path once checks passed: assigns offsets, stamps the partition
    /// leader epoch (and LogAppendTime), appends, records a new leader epoch.
    ///
    /// The batches are written from `records` as they are: only each batch's 61-byte header
    /// is copied and patched (offsets, leader epoch, and for LogAppendTime the attributes,
    /// max timestamp and CRC), and the segment writes the patched header, then the rest of
    /// the batch from `records` — no copy of record bytes on the produce path.
    fn append_patched(
        &mut self,
        records: &[u8],
        headers: &[(BatchHeader, usize)],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let log_append = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let mut offset = self.log_end_offset;
        let mut patched = Vec::with_capacity(headers.len());
        let mut patched_headers = Vec::with_capacity(headers.len());
        for (h, pos) in headers {
            let batch = &records[*pos..*pos + h.total_len()];
            let mut b: [u8; BATCH_HEADER_LEN] = batch[..BATCH_HEADER_LEN]
                .try_into()
                .expect("a validated batch has a whole header");
            b[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&offset.to_be_bytes());
            b[PARTITION_LEADER_EPOCH_POS..PARTITION_LEADER_EPOCH_POS + 4]
                .copy_from_slice(&leader_epoch.to_be_bytes());
            if log_append {
                let attrs = h.attributes | 0x08;
                b[batch::ATTRIBUTES_POS..batch::ATTRIBUTES_POS + 2]
                    .copy_from_slice(&attrs.to_be_bytes());
                b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&now_ms.to_be_bytes());
                batch::rewrite_crc_split(&mut b, &batch[BATCH_HEADER_LEN..]);
            }
            let nh = BatchHeader::parse(&b).expect("a validated header stays valid");
            offset = nh.last_offset() + 1;
            patched.push((nh, *pos));
            patched_headers.push(b);
        }
        let bytes = AppendBytes {
            records,
            patched_headers: Some(&patched_headers),
        };
        let info = self.append_validated(bytes, &patched, Some(now_ms))?;
        if leader_epoch >= 0 && self.latest_leader_epoch().is_none_or(|e| leader_epoch > e) {
            self.leader_epochs.push((leader_epoch, info.base_offset));
            self.persist_leader_epochs()?;
        }
        Ok(AppendInfo {
            log_append_time_ms: if log_append { now_ms } else { -1 },
            ..info
        })
    }

    /// Appends batches replicated from the leader, keeping their offsets. The first batch must
    /// start at or after the log end offset and offsets must increase (gaps are fine: the
    /// leader's log may be compacted). Checks framing and CRCs like `append_as_leader` but not
    /// record counts or keys, which the leader already did. Rolls on size, full indexes, and
    /// on `segment.ms` measured with the batches' own max timestamps (this call gets no time).
    /// New `partition_leader_epoch` values start leader-epoch entries.
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo, LogError> {
        let headers = self.validate(records, false)?;
        let first = headers[0].0.base_offset;
        if first < self.log_end_offset {
            return Err(LogError::NotContiguous {
                expected: self.log_end_offset,
                got: first,
            });
        }
        let bytes = AppendBytes {
            records,
            patched_headers: None,
        };
        let info = self.append_validated(bytes, &headers, None)?;
        let mut changed = false;
        for (h, _) in &headers {
            let e = h.partition_leader_epoch;
            if e >= 0 && self.latest_leader_epoch().is_none_or(|l| e > l) {
                self.leader_epochs.push((e, h.base_offset));
                changed = true;
            }
        }
        if changed {
            self.persist_leader_epochs()?;
        }
        Ok(info)
    }

    fn append_validated(
        &mut self,
        bytes: AppendBytes<'_>,
        headers: &[(BatchHeader, usize)],
        now_ms: Option<i64>,
    ) -> Result<AppendInfo, LogError> {
        let buf = bytes.records;
        let first = headers[0].0.base_offset;
        let last = headers.last().unwrap().0.last_offset();
        let active = self.segments.last().unwrap();
        // A follower gets no time: the leader's batch timestamps stand in for it, so that
        // replicas roll on `segment.ms` at about the same offsets.
        let clock_ms = now_ms.or_else(|| headers.iter().map(|(h, _)| h.max_timestamp).max());
        let aged = match (clock_ms, active.first_batch_timestamp) {
            (Some(now), Some(t)) if t >= 0 => now.saturating_sub(t) > self.config.segment_ms,
            _ => false,
        };
        if active.should_roll(buf.len(), self.config.segment_bytes, last)
            || (aged && active.size > 0)
        {
            self.roll_at(first.max(self.log_end_offset))?;
        } else if last - active.base_offset > crate::limits::RELATIVE_OFFSET_MAX {
            // An empty active segment whose base is too far below a follower's batch.
            self.roll_at(first)?;
        }
        let interval = self.config.index_interval_bytes;
        let active = self.segments.last_mut().unwrap();
        let was_empty = active.size == 0;
        active.append(&bytes, headers, interval)?;
        if was_empty {
            if let Some(now) = now_ms {
                active.first_batch_timestamp = Some(now);
            }
        }
        self.log_end_offset = last + 1;
        // Leaders, followers and recovery all drive the same producer-state update, so that
        // every replica computes the same transactions, LSO and transaction indexes.
        let mut created_txn_index = false;
        for (h, pos) in headers {
            let marker = if h.is_control() && h.producer_id >= 0 {
                producer::marker_of(h, &buf[*pos..*pos + h.total_len()])
            } else {
                None
            };
            if let Some(c) = self.producer_state.update(h, marker) {
                if c.is_aborted {
                    let entry = producer::aborted_entry(&self.producer_state, &c);
                    let active = self.segments.last_mut().unwrap();
                    created_txn_index |= active.txn_index.append(entry)?;
                }
            }
        }
        if created_txn_index {
            // A flush ticket syncs the file's data, not its directory entry.
            self.dir_file
                .fsync_all()
                .io_ctx("fsync directory", &self.dir)?;
        }
        let records: u64 = headers.iter().map(|(h, _)| h.records_count as u64).sum();
        self.unflushed_messages += records;
        match self.config.flush_policy {
            FlushPolicy::EveryAppend => self.flush()?,
            FlushPolicy::Interval { messages, ms } => {
                let late = now_ms.is_some_and(|now| now.saturating_sub(self.last_flush_ms) >= ms);
                if self.unflushed_messages >= messages || late {
                    self.flush()?;
                    if let Some(now) = now_ms {
                        self.last_flush_ms = now;
                    }
                }
            }
            FlushPolicy::GroupCommit | FlushPolicy::Never => {}
        }
        Ok(AppendInfo {
            base_offset: first,
            last_offset: last,
            log_append_time_ms: -1,
            max_timestamp: headers
                .iter()
                .map(|(h, _)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
            records_count: records.min(u32::MAX as u64) as u32,
            bytes: buf.len(),
        })
    }

    /// Index of the segment that would hold `offset` (the last with base <= offset).
    fn segment_index(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        }
    }

    /// Reads whole batches starting with the one that holds `fetch_offset`, up to `max_bytes`
    /// (at least one batch if `min_one_batch`), only batches whose last offset is below
    /// `max_offset`. Reads within one segment. Every batch served has passed its CRC check
    /// now; a corrupt batch is never served (`CorruptSegment` if it is the first one).
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadInfo, LogError> {
        let empty = ReadInfo {
            records: Bytes::new(),
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        };
        if fetch_offset == self.log_end_offset {
            return Ok(empty);
        }
        if fetch_offset < self.log_start_offset || fetch_offset > self.log_end_offset {
            return Err(self.out_of_range(fetch_offset));
        }
        let mut i = self.segment_index(fetch_offset);
        let (seg, pos, first) = loop {
            let Some(seg) = self.segments.get(i) else {
                return Ok(empty);
            };
            match seg.find_batch(fetch_offset)? {
                Some((pos, h)) => break (seg, pos, h),
                None => i += 1,
            }
        };
        if first.last_offset() >= max_offset || (max_bytes < first.total_len() && !min_one_batch) {
            return Ok(empty);
        }
        let avail = seg.size - pos;
        // Bounded whatever the caller asks: at most READ_BYTES_MAX, or the first batch.
        let want = (max_bytes.min(READ_BYTES_MAX) as u64)
            .max(first.total_len() as u64)
            .min(avail) as usize;
        // A pooled buffer (crate::read_buffer): fresh pages cost more than the read.
        let mut buf = crate::read_buffer::take(want);
        use std::os::unix::fs::FileExt;
        seg.file()?
            .read_exact_at(&mut buf[..want], pos)
            .io_ctx("read segment", &seg.log_path)?;
        let mut keep = 0usize;
        let mut prev_last = seg.base_offset - 1;
        for item in Batches::new(&buf[..want]) {
            let Ok((h, bytes)) = item else { break };
            if h.last_offset() >= max_offset {
                break;
            }
            let check = if h.base_offset <= prev_last {
                Err(format!(
                    "base offset {} not above the previous batch's {prev_last}",
                    h.base_offset
                ))
            } else {
                batch::verify_crc(bytes).map_err(|e| e.to_string())
            };
            prev_last = h.last_offset();
            if let Err(e) = check {
                if keep == 0 {
                    return Err(seg.corrupt(pos, e));
                }
                warn!(segment = %seg.log_path.display(), position = pos + keep as u64, error = %e, "corrupt batch not served");
                break;
            }
            keep += bytes.len();
        }
        if keep == 0 {
            return Err(seg.corrupt(pos, "batch header changed under the reader"));
        }
        Ok(ReadInfo {
            records: crate::read_buffer::into_bytes(buf, keep),
            ..empty
        })
    }

    /// The first offset `>= log_start_offset`.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// Every offset below this is on stable storage.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Bytes of all `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments, the active one included.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    /// Takes a flush ticket for every unflushed byte, or `None` if everything below the log
    /// end offset is already durable. Cheap: clones a few `Arc<File>`.
    pub fn begin_flush(&self) -> Option<FlushTicket> {
        if self.log_end_offset <= self.recovery_point {
            return None;
        }
        let mut files = Vec::new();
        let mut dir_needed = false;
        // Newest first: only the last segment or two are ever dirty.
        for (i, seg) in self.segments.iter().enumerate().rev() {
            let end = self
                .segments
                .get(i + 1)
                .map_or(self.log_end_offset, |n| n.base_offset);
            if end <= self.recovery_point {
                break;
            }
            if seg.size == 0 {
                continue;
            }
            match seg.file() {
                Ok(f) => files.push(f),
                Err(e) => {
                    // Unreachable in practice: descriptors of segments with unflushed bytes
                    // are never released.
                    warn!(segment = %seg.log_path.display(), error = %e, "cannot open segment to flush it");
                    return None;
                }
            }
            if !seg.active {
                // Released index descriptors belong to segments synced before.
                files.extend(seg.offset_index.inner.file().cloned());
                files.extend(seg.time_index.inner.file().cloned());
            }
            // Entries appended since the last sync; a released descriptor means none.
            files.extend(seg.txn_index.file().cloned());
            if seg.base_offset >= self.recovery_point {
                dir_needed = true;
            }
        }
        if dir_needed {
            files.push(Arc::clone(&self.dir_file));
        }
        Some(FlushTicket {
            up_to_offset: self.log_end_offset,
            files,
            generation: self.generation,
        })
    }

    /// Records that a ticket with `up_to_offset` was synced: advances the recovery point
    /// (monotonic, never past the log end offset). Must not be used across a truncation
    /// (prefer [`PartitionLog::complete_flush_ticket`], which ignores stale tickets).
    pub fn complete_flush(&mut self, up_to_offset: i64) {
        let rp = up_to_offset.min(self.log_end_offset);
        if rp <= self.recovery_point {
            return;
        }
        self.recovery_point = rp;
        if rp == self.log_end_offset {
            self.unflushed_messages = 0;
        }
        // Persist the recovery point when the persisted one is below the base of the segment
        // holding the recovery point (recovery starts from the segment holding the persisted
        // value): about once per roll, so that crash recovery scans about one segment,
        // without an extra fsync per group commit.
        self.maybe_persist_recovery_point();
    }

    fn maybe_persist_recovery_point(&mut self) {
        let base = self.segments[self.segment_index(self.recovery_point)].base_offset;
        if self.persisted_recovery_point < base {
            if let Err(e) = self.persist_recovery_point() {
                warn!(error = %e, "could not persist the recovery point; recovery will scan more");
            }
        }
    }

    /// Like `complete_flush(ticket.up_to_offset)`, but ignores a ticket taken before a
    /// truncation (its sync may not cover the bytes now at those offsets).
    pub fn complete_flush_ticket(&mut self, ticket: &FlushTicket) {
        if ticket.generation == self.generation {
            self.complete_flush(ticket.up_to_offset);
        }
    }

    /// Flushes everything now: `begin_flush` + `sync` + `complete_flush`.
    pub fn flush(&mut self) -> Result<(), LogError> {
        if let Some(t) = self.begin_flush() {
            t.sync().io_ctx("fdatasync", &self.dir)?;
            self.complete_flush_ticket(&t);
        }
        Ok(())
    }

    /// For `FlushPolicy::Interval`: flushes if `flush.ms` passed since the last flush or
    /// `flush.messages` records are unflushed. Returns whether it flushed.
    pub fn maybe_flush_by_policy(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let FlushPolicy::Interval { messages, ms } = self.config.flush_policy else {
            return Ok(false);
        };
        let due = now_ms.saturating_sub(self.last_flush_ms) >= ms;
        if !(due || self.unflushed_messages >= messages) {
            return Ok(false);
        }
        self.last_flush_ms = now_ms;
        if self.log_end_offset <= self.recovery_point {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    fn read_batch(&self, seg: &LogSegment, pos: u64, h: &BatchHeader) -> Result<Vec<u8>, LogError> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; h.total_len()];
        seg.file()?
            .read_exact_at(&mut buf, pos)
            .io_ctx("read segment", &seg.log_path)?;
        batch::verify_crc(&buf).map_err(|e| seg.corrupt(pos, e.to_string()))?;
        Ok(buf)
    }

    /// The first record (offset `>= log_start_offset`) whose timestamp is `>= target_ms`, via
    /// the time index (ListOffsets by timestamp).
    pub fn fetch_offset_by_timestamp(
        &self,
        target_ms: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        for seg in &self.segments {
            if seg.max_timestamp < target_ms || seg.size == 0 {
                continue;
            }
            let mut pos = match seg.time_index.lookup_before(target_ms) {
                Some((_, off)) => seg.offset_index.lookup(off) as u64,
                None => 0,
            };
            while pos < seg.size {
                let h = seg.read_header_at(pos)?;
                if h.max_timestamp >= target_ms && h.last_offset() >= self.log_start_offset {
                    let bytes = self.read_batch(seg, pos, &h)?;
                    let records = batch::decode_records(&bytes)
                        .map_err(|e| seg.corrupt(pos, e.to_string()))?;
                    for r in &records {
                        let ts = batch::record_timestamp(&h, r);
                        let offset = h.base_offset + r.offset_delta as i64;
                        if ts >= target_ms && offset >= self.log_start_offset {
                            return Ok(Some(TimestampOffset {
                                timestamp: ts,
                                offset,
                            }));
                        }
                    }
                }
                pos += h.total_len() as u64;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the earliest one on ties): ListOffsets -3.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, LogError> {
        let mut best: Option<&LogSegment> = None;
        for seg in &self.segments {
            if seg.size > 0 && best.is_none_or(|b| seg.max_timestamp > b.max_timestamp) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else { return Ok(None) };
        let Some((pos, h)) = seg.find_batch(seg.offset_of_max_timestamp)? else {
            return Ok(None);
        };
        let bytes = self.read_batch(seg, pos, &h)?;
        let records = batch::decode_records(&bytes).map_err(|e| seg.corrupt(pos, e.to_string()))?;
        let pick = records
            .iter()
            .map(|r| {
                (
                    batch::record_timestamp(&h, r),
                    h.base_offset + r.offset_delta as i64,
                )
            })
            .find(|&(ts, _)| ts == seg.max_timestamp)
            .or_else(|| {
                records.last().map(|r| {
                    (
                        batch::record_timestamp(&h, r),
                        h.base_offset + r.offset_delta as i64,
                    )
                })
            });
        Ok(pick.map(|(timestamp, offset)| TimestampOffset { timestamp, offset }))
    }

    fn segment_timestamp_ms(seg: &LogSegment) -> Option<i64> {
        if seg.max_timestamp >= 0 {
            return Some(seg.max_timestamp);
        }
        // No timestamps in the segment: fall back to the file's modification time, as Kafka.
        let modified = std::fs::metadata(&seg.log_path).ok()?.modified().ok()?;
        let ms = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis();
        i64::try_from(ms).ok()
    }

    fn remove_pending(&mut self, now_ms: i64) {
        self.pending_deletes.retain(|(path, due)| {
            if *due > now_ms {
                return true;
            }
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %path.display(), error = %e, "could not remove a deleted file");
                }
            }
            false
        });
    }

    /// Deletes the oldest segments that are past `retention.ms`, beyond `retention.bytes`
    /// (both only with a `delete` cleanup policy) or entirely below `log_start_offset`. Never
    /// the active segment. Files are renamed `.deleted` and removed `file.delete.delay.ms`
    /// later (by a later call), or at the next open. Returns the number of segments removed.
    pub fn delete_old_segments(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.remove_pending(now_ms);
        let deletes = self.config.cleanup_policy.deletes();
        let mut total = self.size_bytes();
        let mut removed = 0;
        while self.segments.len() > 1 {
            let seg = &self.segments[0];
            let by_start = self.segments[1].base_offset <= self.log_start_offset;
            let by_time = deletes
                && self.config.retention_ms >= 0
                && Self::segment_timestamp_ms(seg)
                    .is_some_and(|ts| now_ms.saturating_sub(ts) > self.config.retention_ms);
            let by_size = deletes
                && self.config.retention_bytes >= 0
                && total - seg.size >= self.config.retention_bytes as u64;
            if !(by_start || by_time || by_size) {
                break;
            }
            let next_base = self.segments[1].base_offset;
            if next_base > self.recovery_point {
                // Keep log_start_offset <= recovery_point: make the survivors durable first.
                self.flush()?;
            }
            let seg = self.segments.remove(0);
            total -= seg.size;
            info!(segment = %seg.log_path.display(), by_start, by_time, by_size, "deleting segment");
            let due = now_ms.saturating_add(self.config.file_delete_delay_ms);
            for p in seg.all_paths() {
                let mut to = p.clone().into_os_string();
                to.push(DELETED_SUFFIX);
                let to = PathBuf::from(to);
                std::fs::rename(&p, &to).io_ctx("rename segment to .deleted", &p)?;
                self.pending_deletes.push((to, due));
            }
            removed += 1;
        }
        if removed > 0 {
            let start = self.log_start_offset.max(self.segments[0].base_offset);
            if start != self.log_start_offset {
                self.log_start_offset = start;
                self.persist_log_start_offset()?;
            }
            let before = self.leader_epochs.clone();
            self.truncate_epochs_from_start(self.log_start_offset);
            if before != self.leader_epochs {
                self.persist_leader_epochs()?;
            }
            self.remove_pending(now_ms);
            self.prune_producer_snapshots(self.log_end_offset)?;
            // The persisted recovery point may now be below the first segment.
            self.maybe_persist_recovery_point();
        }
        self.release_idle_handles();
        Ok(removed)
    }

    /// Closes the descriptors of old segments: index descriptors of every sealed segment whose
    /// bytes are all durable (their mappings stay), and `.log` descriptors of those not read
    /// since the previous call. Called by `open` and `delete_old_segments` (which the broker
    /// runs periodically); reads reopen a released `.log` on demand. Returns how many
    /// descriptors were closed.
    pub fn release_idle_handles(&mut self) -> usize {
        let mut closed = 0;
        let n = self.segments.len();
        for i in 0..n.saturating_sub(1) {
            let end = self.segments[i + 1].base_offset;
            if end <= self.recovery_point && !self.segments[i].active {
                closed += self.segments[i].release_if_idle();
            }
        }
        closed
    }

    /// Number of open descriptors of segment files (for tests and metrics).
    pub fn open_file_handles(&self) -> usize {
        self.segments
            .iter()
            .map(|s| {
                usize::from(s.has_open_file())
                    + usize::from(s.offset_index.inner.file().is_some())
                    + usize::from(s.time_index.inner.file().is_some())
                    + usize::from(s.txn_index.file().is_some())
            })
            .sum()
    }

    /// DeleteRecords: moves `log_start_offset` up to `new_log_start_offset` (never down).
    /// Whole segments below it are deleted by the next `delete_old_segments`. Returns the
    /// resulting log start offset.
    pub fn delete_records(&mut self, new_log_start_offset: i64) -> Result<i64, LogError> {
        if new_log_start_offset > self.log_end_offset || new_log_start_offset < 0 {
            return Err(self.out_of_range(new_log_start_offset));
        }
        if new_log_start_offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        if new_log_start_offset > self.recovery_point {
            self.flush()?;
        }
        self.log_start_offset = new_log_start_offset;
        self.persist_log_start_offset()?;
        let before = self.leader_epochs.clone();
        self.truncate_epochs_from_start(new_log_start_offset);
        if before != self.leader_epochs {
            self.persist_leader_epochs()?;
        }
        Ok(self.log_start_offset)
    }

    /// Removes every record at or after `offset` (rounded down to a batch boundary: a batch
    /// holding `offset` is removed whole; the log end offset becomes the end of the remaining
    /// data, so it can be below `offset` when `offset` is in a compaction gap). Used by followers after a leader change. If that
    /// batch starts below `log_start_offset`, the log starts over empty at `log_start_offset`;
    /// if `offset < log_start_offset`, it starts over at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset {
            // No data to remove, but a leader epoch that starts at `offset` (assigned when
            // this replica became leader and appended nothing) goes, as Kafka's
            // `truncateFromEnd` does: the follower's next OffsetForLeaderEpoch round must
            // ask about the epoch before it.
            let before = self.leader_epochs.len();
            self.leader_epochs.retain(|&(_, start)| start < offset);
            if before != self.leader_epochs.len() {
                self.persist_leader_epochs()?;
            }
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        let i = self.segment_index(offset);
        let dropped: Vec<LogSegment> = self.segments.drain(i + 1..).collect();
        for s in &dropped {
            remove_segment_files(s)?;
        }
        let seg = &mut self.segments[i];
        if let Some((pos, h)) = seg.find_batch(offset)? {
            seg.truncate_to_position(pos)?;
            seg.offset_index.truncate_to_position(pos);
            seg.time_index.truncate_to_offset(offset.min(h.base_offset));
        }
        if !seg.active {
            seg.activate(self.config.segment_index_bytes)?;
        }
        seg.max_timestamp = -1;
        seg.offset_of_max_timestamp = seg.base_offset;
        if let Some((ts, off)) = seg.time_index.last() {
            seg.max_timestamp = ts;
            seg.offset_of_max_timestamp = off;
        }
        seg.first_batch_timestamp = None;
        // The new end is where the data now ends (what a reopen would find), which is below
        // `offset` when `offset` fell in an offset gap or inside a batch.
        let new_leo = seg.load_tail()?.next_offset.unwrap_or(seg.base_offset);
        if new_leo < self.log_start_offset {
            // The cut batch straddles the log start: nothing at or after it can be kept.
            let start = self.log_start_offset;
            return self.truncate_fully_and_start_at(start);
        }
        seg.file()?.fsync().io_ctx("fsync segment", &seg.log_path)?;
        // Markers at or after the cut go with their entries (their transactions are ongoing
        // again until the new leader's marker arrives).
        seg.txn_index.truncate_to(new_leo)?;
        self.log_end_offset = new_leo;
        self.recovery_point = self.recovery_point.min(new_leo);
        self.generation += 1;
        self.truncate_producer_state(new_leo)?;
        self.dir_file
            .fsync_all()
            .io_ctx("fsync directory", &self.dir)?;
        self.persist_recovery_point()?;
        let before = self.leader_epochs.len();
        self.leader_epochs.retain(|&(_, start)| start < new_leo);
        if before != self.leader_epochs.len() {
            self.persist_leader_epochs()?;
        }
        Ok(())
    }

    /// Deletes every segment and starts an empty log at `offset` (log start, recovery point
    /// and log end all become `offset`).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        assert!(offset >= 0, "offsets are non-negative");
        for s in self.segments.drain(..) {
            remove_segment_files(&s)?;
        }
        self.segments.push(LogSegment::create(
            &self.dir,
            offset,
            self.config.segment_index_bytes,
        )?);
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.recovery_point = offset;
        self.unflushed_messages = 0;
        self.generation += 1;
        self.reset_producer_state(offset)?;
        self.dir_file
            .fsync_all()
            .io_ctx("fsync directory", &self.dir)?;
        self.persist_log_start_offset()?;
        self.persist_recovery_point()?;
        self.leader_epochs.clear();
        self.persist_leader_epochs()?;
        Ok(())
    }

    /// Starts a new active segment at the log end offset (no-op if the active one is empty).
    pub fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let _ = now_ms;
        if self.segments.last().unwrap().size == 0 {
            return Ok(());
        }
        self.roll_at(self.log_end_offset)
    }

    fn roll_at(&mut self, base_offset: i64) -> Result<(), LogError> {
        assert!(base_offset >= self.log_end_offset);
        let active = self.segments.last().unwrap();
        if active.size == 0 && active.base_offset == base_offset {
            return Ok(());
        }
        assert!(base_offset > active.base_offset);
        // Create the new segment first: if that fails (disk full) nothing has changed.
        let new = match LogSegment::create(&self.dir, base_offset, self.config.segment_index_bytes)
        {
            Ok(seg) => seg,
            Err(e) => {
                for ext in ["log", "index", "timeindex"] {
                    let _ = std::fs::remove_file(self.dir.join(file_name(base_offset, ext)));
                }
                return Err(e);
            }
        };
        let active = self.segments.last_mut().unwrap();
        if active.size == 0 {
            // An empty active segment would only leave a hole (a follower's offset gap).
            let old = self.segments.pop().unwrap();
            remove_segment_files(&old)?;
        } else {
            if let Err(e) = active.seal() {
                let _ = active.activate(self.config.segment_index_bytes);
                remove_segment_files(&new)?;
                return Err(e);
            }
            if self.log_end_offset <= self.recovery_point {
                // Fully flushed already, so no flush ticket will cover the trimmed index
                // files: make them durable now (rare: a flush right before the roll).
                for f in [
                    active.offset_index.inner.file(),
                    active.time_index.inner.file(),
                ]
                .into_iter()
                .flatten()
                {
                    f.fsync().io_ctx("fsync index", &active.log_path)?;
                }
            }
        }
        info!(segment = %new.log_path.display(), "rolled new segment");
        self.segments.push(new);
        self.snapshot_at_roll(base_offset);
        Ok(())
    }

    /// Records that leader epoch `epoch` starts at the current log end offset, as a
    /// replica does when it becomes leader (Kafka's `assignEpochStartOffset`), so that
    /// OffsetForLeaderEpoch answers for the new epoch before anything is appended in it.
    /// No-op unless `epoch` is later than the latest recorded epoch.
    pub fn assign_leader_epoch_start(&mut self, epoch: i32) -> Result<(), LogError> {
        if epoch < 0 || self.latest_leader_epoch().is_some_and(|e| e >= epoch) {
            return Ok(());
        }
        self.leader_epochs.push((epoch, self.log_end_offset));
        self.persist_leader_epochs()
    }

    /// The latest leader epoch recorded, if any.
    pub fn latest_leader_epoch(&self) -> Option<i32> {
        self.leader_epochs.last().map(|e| e.0)
    }

    /// OffsetForLeaderEpoch: `(largest epoch <= epoch, its end offset)`, where the end offset
    /// is the start offset of the next epoch, or the log end offset for the latest epoch.
    /// `None` when `epoch` is later than the latest epoch or no epoch is known (Kafka's
    /// UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET). An `epoch` earlier than every known epoch
    /// gives `(epoch, start of the earliest)`, as Kafka does.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let &(latest, _) = self.leader_epochs.last()?;
        if epoch == latest {
            return Some((epoch, self.log_end_offset));
        }
        let higher = self.leader_epochs.iter().find(|e| e.0 > epoch)?;
        match self.leader_epochs.iter().rev().find(|e| e.0 <= epoch) {
            Some(floor) => Some((floor.0, higher.1)),
            None => Some((epoch, higher.1)),
        }
    }

    /// The `(leader_epoch, start_offset)` entries.
    pub fn leader_epoch_entries(&self) -> &[(i32, i64)] {
        &self.leader_epochs
    }

    /// Flushes, trims the active segment's indexes and writes the clean shutdown marker, so
    /// the next `open` scans nothing.
    pub fn close(mut self) -> Result<(), LogError> {
        self.flush()?;
        let last = self.segments.last_mut().unwrap();
        last.seal()?;
        for f in last.files()? {
            f.fsync().io_ctx("fsync segment", &last.log_path)?;
        }
        self.recovery_point = self.log_end_offset;
        self.persist_recovery_point()?;
        self.write_producer_snapshot(self.log_end_offset)?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let f = File::create(&marker).io_ctx("create clean shutdown marker", &marker)?;
        f.fsync_all()
            .io_ctx("fsync clean shutdown marker", &marker)?;
        self.dir_file
            .fsync_all()
            .io_ctx("fsync directory", &self.dir)?;
        Ok(())
    }

    /// Removes the partition directory and everything in it (topic deletion).
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).io_ctx("remove partition directory", &dir)
    }

    /// Compacts the closed segments (compact policies only) in one call, holding `&mut self`
    /// throughout; see [`crate::cleaner`]. To keep appends flowing during a pass, use
    /// `prepare_clean` / `CleanTask::run` / `finish_clean` instead.
    pub fn clean(&mut self, now_ms: i64) -> Result<CleanStats, LogError> {
        let Some(task) = self.prepare_clean(now_ms) else {
            return Ok(CleanStats::default());
        };
        let cleaned = task.run()?;
        self.finish_clean(cleaned)
    }

    /// Picks the closed segments a compaction pass may rewrite: `None` if the cleanup policy
    /// does not compact or no closed segment is older than `min.compaction.lag.ms`.
    pub fn prepare_clean(&self, now_ms: i64) -> Option<CleanTask> {
        if !self.config.cleanup_policy.compacts() {
            return None;
        }
        let lag = self.config.min_compaction_lag_ms;
        // Never clean past the first unstable offset: the outcome of a transaction whose
        // data is there is not decided (or not replicated) yet.
        let unstable = self
            .producer_state
            .first_unstable_offset()
            .unwrap_or(i64::MAX);
        let n = self.segments.len();
        let inputs: Vec<CleanInput> = (0..n - 1)
            .take_while(|&i| self.segments[i + 1].base_offset <= unstable)
            .map(|i| &self.segments[i])
            .take_while(|s| lag <= 0 || now_ms.saturating_sub(s.max_timestamp) >= lag)
            .filter(|s| s.size > 0)
            .filter_map(|s| {
                Some(CleanInput {
                    base_offset: s.base_offset,
                    path: s.log_path.clone(),
                    file: s.file().ok()?,
                    size: s.size,
                })
            })
            .collect();
        if inputs.is_empty() {
            return None;
        }
        let first = inputs[0].base_offset;
        let last_base = inputs.last().unwrap().base_offset;
        let end = self.segments[self.segment_index(last_base) + 1].base_offset;
        let aborted = self.collect_aborted_transactions(first, end).ok()?;
        Some(CleanTask {
            inputs,
            aborted,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            generation: self.generation,
        })
    }

    /// Swaps in the segments written by `CleanTask::run`, skipping any segment that was
    /// deleted or changed meanwhile (and everything after a truncation).
    pub fn finish_clean(&mut self, cleaned: CleanedSegments) -> Result<CleanStats, LogError> {
        if cleaned.generation != self.generation {
            cleaned.discard();
            return Ok(CleanStats::default());
        }
        let stats = cleaned.stats.clone();
        for out in cleaned.outputs {
            let found = self
                .segments
                .iter()
                .position(|s| s.base_offset == out.base_offset);
            let Some(i) = found.filter(|&i| {
                let s = &self.segments[i];
                !s.active && s.size == out.input_size
            }) else {
                let _ = std::fs::remove_file(&out.cleaned_path);
                continue;
            };
            let base = out.base_offset;
            for p in self.segments[i].index_paths() {
                std::fs::remove_file(&p).io_ctx("remove index before swap", &p)?;
            }
            self.dir_file
                .fsync_all()
                .io_ctx("fsync directory", &self.dir)?;
            let log_path = self.segments[i].log_path.clone();
            std::fs::rename(&out.cleaned_path, &log_path)
                .io_ctx("swap in cleaned segment", &log_path)?;
            self.dir_file
                .fsync_all()
                .io_ctx("fsync directory", &self.dir)?;
            let mut seg = LogSegment::open(&self.dir, base)?;
            let (end, _) = seg.recover(
                i64::MIN,
                self.config.index_interval_bytes,
                self.config.segment_index_bytes,
            )?;
            assert!(
                end.error.is_none() && seg.size == out.output_size,
                "cleaned segment {} failed its own checks",
                log_path.display()
            );
            seg.seal()?;
            for f in seg.files()? {
                f.fsync().io_ctx("fsync cleaned segment", &log_path)?;
            }
            self.segments[i] = seg;
        }
        Ok(stats)
    }
}

fn remove_segment_files(s: &LogSegment) -> Result<(), LogError> {
    for p in s.all_paths() {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(LogError::Io {
                    op: "remove segment file",
                    path: p,
                    source: e,
                });
            }
        }
    }
    Ok(())
}

#[path = "log_producer.rs"]
mod producer;
pub use producer::{SNAPSHOT_EXTENSION, SNAPSHOTS_RETAINED};

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

/// What one append writes: the batches as received and, on the leader's path, a patched
/// copy of each batch's header (in batch order) that replaces the received one on disk.
/// Everything after a header is written from `records` as it is. Bytes read back for the
/// producer state (control records) are after the header, hence the same in both.
pub(crate) struct AppendBytes<'a> {
    pub(crate) records: &'a [u8],
    pub(crate) patched_headers: Option<&'a [[u8; BATCH_HEADER_LEN]]>,
}
