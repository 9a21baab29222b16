//! The producer state of a [`PartitionLog`]: `<offset>.snapshot` files, loading at open,
//! rebuilding after truncation (see [`crate::producer_state`] for the state machine and the
//! snapshot format, and the crate docs for when snapshots are written and deleted).
//!
//! A snapshot named `<offset>.snapshot` holds the state of every batch below `<offset>`.
//! Loading picks the latest snapshot at or below the target offset that decodes (a corrupt one
//! is logged with its path and skipped) and is not below the first segment's base (older ones
//! cannot be replayed forward), then applies the batch headers (and the records of control
//! batches) from there. Without any usable snapshot the state is rebuilt from the first
//! segment. Replays that rebuild `.txnindex` files collect the aborted transactions they see
//! completed; the others ignore them (those indexes are already right).
//!
//! Also here: the read side of transactions (`first_unstable_offset`, `last_stable_offset`,
//! `collect_aborted_transactions`).

use std::path::{Path, PathBuf};

use tracing::warn;

use super::{PartitionLog, parse_segment_name};
use crate::batch::BatchHeader;
use crate::control::EndTxnMarker;
use crate::durability::Fsync;
use crate::error::{IoContext, LogError};
use crate::producer_state::{CompletedTxn, ProducerStateManager};
use crate::segment::file_name;
use crate::txn_index::AbortedTxn;

/// Extension of producer-state snapshot files (`<20-digit offset>.snapshot`).
pub const SNAPSHOT_EXTENSION: &str = "snapshot";

/// Snapshots kept: the latest and one to fall back on if it is damaged.
pub const SNAPSHOTS_RETAINED: usize = 2;

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(file_name(offset, SNAPSHOT_EXTENSION))
}

/// Every snapshot file of `dir`, by increasing offset.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<(i64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).io_ctx("list partition directory", dir)? {
        let entry = entry.io_ctx("list partition directory", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((offset, SNAPSHOT_EXTENSION)) = parse_segment_name(&name) {
            out.push((offset, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

enum SnapshotError {
    /// The bytes fail a check: the file is useless.
    Corrupt(String),
    /// The file could not be read (permissions, I/O): left in place.
    Unreadable(String),
}

/// Reads and decodes one snapshot file, checking that it describes `offset`.
fn read_snapshot(path: &Path, offset: i64) -> Result<ProducerStateManager, SnapshotError> {
    let bytes = std::fs::read(path).map_err(|e| SnapshotError::Unreadable(e.to_string()))?;
    let state =
        ProducerStateManager::from_snapshot_bytes(&bytes).map_err(SnapshotError::Corrupt)?;
    if state.map_end_offset() != offset {
        return Err(SnapshotError::Corrupt(format!(
            "snapshot offset {} does not match its file name",
            state.map_end_offset()
        )));
    }
    Ok(state)
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::Io {
            op: "remove producer snapshot",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

impl PartitionLog {
    /// The producer state (idempotent producers' epochs and last batches), for
    /// DescribeProducers and tests.
    pub fn producer_state(&self) -> &crate::producer_state::ProducerStateManager {
        &self.producer_state
    }

    /// Forgets producers idle for `producer_id_expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`, default 1 day) by their last batch timestamp. The broker
    /// calls it periodically (Kafka: every `producer.id.expiration.check.interval.ms`, 10 min).
    /// Returns how many were removed. In memory only: the next snapshot persists it.
    pub fn remove_expired_producers(
        &mut self,
        now_ms: i64,
        producer_id_expiration_ms: i64,
    ) -> usize {
        self.producer_state
            .remove_expired(now_ms, producer_id_expiration_ms)
    }

    /// Offset of the first batch of the earliest transaction that is not yet stable at
    /// `high_watermark` (ongoing, or completed with its marker at or above
    /// `high_watermark`); prunes completed transactions whose marker is below
    /// `high_watermark` (Kafka's `onHighWatermarkUpdated` + `firstUnstableOffset`). Never
    /// below the log start offset. `None` when everything below the log end is stable.
    ///
    /// Pruning is forward-only: call it with the partition's current high watermark (a
    /// follower truncating below it rebuilds its state anyway).
    pub fn first_unstable_offset(&mut self, high_watermark: i64) -> Option<i64> {
        self.producer_state
            .on_high_watermark_updated(high_watermark);
        self.producer_state
            .first_unstable_offset()
            .map(|o| o.max(self.log_start_offset))
    }

    /// `min(high_watermark, first_unstable_offset(high_watermark))`: the last stable offset
    /// (LSO) served to read_committed consumers (Fetch isolation level 1, ListOffsets).
    pub fn last_stable_offset(&mut self, high_watermark: i64) -> i64 {
        match self.first_unstable_offset(high_watermark) {
            Some(o) => o.min(high_watermark),
            None => high_watermark,
        }
    }

    /// Aborted transactions overlapping `[from_offset, upper_bound_offset)`: entries with
    /// `last_offset >= from_offset` and `first_offset < upper_bound_offset`, from the
    /// `.txnindex` of the segment holding `from_offset` and the following ones until an
    /// entry's `last_stable_offset` reaches `upper_bound_offset` (Kafka's
    /// `collectAbortedTransactions`), in marker order. Fetch read_committed sends them so
    /// that consumers drop the listed producers' records from `first_offset` on.
    pub fn collect_aborted_transactions(
        &self,
        from_offset: i64,
        upper_bound_offset: i64,
    ) -> Result<Vec<AbortedTxn>, LogError> {
        let mut out = Vec::new();
        if from_offset >= upper_bound_offset {
            return Ok(out);
        }
        let start = self
            .segments
            .partition_point(|s| s.base_offset <= from_offset)
            .saturating_sub(1);
        for seg in &self.segments[start..] {
            if seg
                .txn_index
                .collect(from_offset, upper_bound_offset, &mut out)
            {
                break;
            }
        }
        Ok(out)
    }

    /// The latest usable snapshot at or below `limit`, or an empty state at the first
    /// segment's base.
    fn latest_snapshot_state(&self, limit: i64) -> ProducerStateManager {
        let first_base = self.segments[0].base_offset;
        let snapshots = match list_snapshots(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot list producer snapshots; rebuilding from the log");
                Vec::new()
            }
        };
        for (offset, path) in snapshots.iter().rev() {
            if *offset > limit {
                continue;
            }
            if *offset < first_base {
                break;
            }
            match read_snapshot(path, *offset) {
                Ok(state) => return state,
                Err(SnapshotError::Corrupt(reason)) => {
                    warn!(path = %path.display(), %reason, "deleting a corrupt producer snapshot");
                    // It would otherwise hold one of the retained slots.
                    let _ = std::fs::remove_file(path);
                }
                Err(SnapshotError::Unreadable(reason)) => {
                    warn!(path = %path.display(), %reason, "ignoring an unreadable producer snapshot")
                }
            }
        }
        ProducerStateManager::new(first_base)
    }

    /// Applies the batches from `state.map_end_offset()` up to `to` (exclusive), walking
    /// batch headers (no CRC: these batches were checked when appended or recovered) and
    /// reading the one record of control batches (markers). A batch that cannot be read
    /// stops the replay (logged). Returns the aborted transactions completed by markers at
    /// or after `collect_from`, with their `last_stable_offset`, in log order (for rebuilding
    /// transaction indexes).
    fn replay_batches(
        &self,
        state: &mut ProducerStateManager,
        to: i64,
        collect_from: i64,
    ) -> Vec<AbortedTxn> {
        let mut aborted = Vec::new();
        let from = state.map_end_offset();
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.base_offset >= to {
                break;
            }
            if self
                .segments
                .get(i + 1)
                .is_some_and(|n| n.base_offset <= from)
            {
                continue;
            }
            let start = if seg.base_offset >= from {
                Ok(Some(0))
            } else {
                seg.find_batch(from).map(|f| f.map(|(pos, _)| pos))
            };
            let mut pos = match start {
                Ok(Some(pos)) => pos,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "producer state replay stopped");
                    return aborted;
                }
            };
            while pos < seg.size {
                let h: BatchHeader = match seg.read_header_at(pos) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(error = %e, "producer state replay stopped");
                        return aborted;
                    }
                };
                if h.base_offset >= to {
                    return aborted;
                }
                if h.base_offset >= from {
                    let marker = if h.is_control() && h.producer_id >= 0 {
                        match self.read_batch(seg, pos, &h) {
                            Ok(bytes) => marker_of(&h, &bytes),
                            Err(e) => {
                                warn!(error = %e, "producer state replay stopped");
                                return aborted;
                            }
                        }
                    } else {
                        None
                    };
                    if let Some(c) = state.update(&h, marker) {
                        if c.is_aborted && c.last_offset >= collect_from {
                            aborted.push(aborted_entry(state, &c));
                        }
                    }
                }
                pos += h.total_len() as u64;
            }
        }
        aborted
    }

    /// Applies the batches from `state.map_end_offset()` up to `to` (see
    /// [`PartitionLog::replay_batches`]), ignoring the transactions they complete.
    fn replay_headers(&self, state: &mut ProducerStateManager, to: i64) {
        self.replay_batches(state, to, i64::MAX);
    }

    /// Rebuilds the producer state for the log below `upto` from the latest snapshot at or
    /// below it and the batches after it.
    pub(super) fn rebuild_producer_state(&mut self, upto: i64) {
        let mut state = self.latest_snapshot_state(upto);
        self.replay_headers(&mut state, upto);
        state.advance_to(upto);
        self.producer_state = state;
    }

    /// Before a crash-recovery scan starting at `scan_start`: loads the latest snapshot at or
    /// below `txn_rebuild_from` (`<= scan_start`, the base of the first segment whose
    /// transaction index must be rebuilt) and replays the batches up to `scan_start`,
    /// rewriting the transaction indexes of the segments in `[txn_rebuild_from, scan_start)`.
    /// Returns the offset from which the scan must apply batches (every scanned batch: the
    /// scan rebuilds the transaction indexes of the segments it scans).
    pub(super) fn begin_recovery_producer_state(
        &mut self,
        scan_start: i64,
        txn_rebuild_from: i64,
    ) -> Result<i64, LogError> {
        assert!(txn_rebuild_from <= scan_start);
        let mut state = self.latest_snapshot_state(txn_rebuild_from);
        let mut aborted = Vec::new();
        if state.map_end_offset() < scan_start {
            aborted = self.replay_batches(&mut state, scan_start, txn_rebuild_from);
        }
        if txn_rebuild_from < scan_start {
            self.rewrite_txn_indexes(txn_rebuild_from, scan_start, aborted)?;
        }
        let apply_from = state.map_end_offset();
        self.producer_state = state;
        Ok(apply_from)
    }

    /// Replaces the transaction indexes of the segments whose base is in `[from, to)` with
    /// `aborted` (entries in marker order, each going to the segment holding its marker).
    pub(super) fn rewrite_txn_indexes(
        &mut self,
        from: i64,
        to: i64,
        aborted: Vec<AbortedTxn>,
    ) -> Result<(), LogError> {
        let n = self.segments.len();
        for i in 0..n {
            let base = self.segments[i].base_offset;
            if base < from || base >= to {
                continue;
            }
            let end = self.segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset);
            let mine: Vec<AbortedTxn> = aborted
                .iter()
                .filter(|a| a.last_offset >= base && a.last_offset < end)
                .copied()
                .collect();
            let seg = &mut self.segments[i];
            if seg.txn_index.entries() != mine.as_slice() || seg.txn_index.damage.is_some() {
                warn!(segment = %seg.log_path.display(), entries = mine.len(), "rebuilt the transaction index");
                seg.txn_index.replace(mine)?;
            }
        }
        Ok(())
    }

    /// After a crash-recovery scan: if recovery cut the log below the snapshot that was
    /// loaded, rebuild from an older one.
    pub(super) fn finish_recovery_producer_state(&mut self, applied_from: i64) {
        if self.log_end_offset < applied_from {
            warn!(
                log_end_offset = self.log_end_offset,
                snapshot = applied_from,
                "recovery truncated below the producer snapshot; rebuilding producer state"
            );
            self.rebuild_producer_state(self.log_end_offset);
        } else {
            self.producer_state.advance_to(self.log_end_offset);
        }
    }

    /// End of `open`: drops unusable snapshots and, when the state had to be replayed, writes
    /// one at the log end so that the next open replays nothing.
    pub(super) fn finish_open_producer_state(&mut self) -> Result<(), LogError> {
        let leo = self.log_end_offset;
        if self.prune_producer_snapshots(leo)? {
            // Stale snapshots (beyond a truncated tail) must not come back after a power cut.
            self.dir_file
                .fsync_all()
                .io_ctx("fsync directory", &self.dir)?;
        }
        if leo > self.segments[0].base_offset && !snapshot_path(&self.dir, leo).exists() {
            self.write_producer_snapshot(leo)?;
        }
        Ok(())
    }

    /// Writes the state as `<offset>.snapshot` (`offset >= map_end_offset`: no producer batch
    /// in between), atomically (`.tmp`, fdatasync, rename), then keeps only the latest
    /// [`SNAPSHOTS_RETAINED`]. The directory is not fsync'ed here: a lost snapshot only makes
    /// the next open replay more.
    pub(super) fn write_producer_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        self.producer_state.advance_to(offset);
        assert_eq!(self.producer_state.map_end_offset(), offset);
        let path = snapshot_path(&self.dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        let bytes = self.producer_state.to_snapshot_bytes();
        let f = std::fs::File::create(&tmp).io_ctx("create producer snapshot", &tmp)?;
        std::io::Write::write_all(&mut &f, &bytes).io_ctx("write producer snapshot", &tmp)?;
        f.fsync().io_ctx("fsync producer snapshot", &tmp)?;
        std::fs::rename(&tmp, &path).io_ctx("rename producer snapshot", &path)?;
        self.prune_producer_snapshots(offset)?;
        Ok(())
    }

    /// Snapshot at a roll; a failure is logged, not returned (the roll itself succeeded, and
    /// a missing snapshot only costs replay time).
    pub(super) fn snapshot_at_roll(&mut self, base_offset: i64) {
        if let Err(e) = self.write_producer_snapshot(base_offset) {
            warn!(error = %e, "could not write a producer snapshot at roll");
        }
    }

    /// Deletes snapshots above `max_offset` or below the first segment's base, and all but
    /// the latest [`SNAPSHOTS_RETAINED`]. Returns whether any was deleted.
    pub(super) fn prune_producer_snapshots(&self, max_offset: i64) -> Result<bool, LogError> {
        let first_base = self.segments[0].base_offset;
        let snapshots = list_snapshots(&self.dir)?;
        let keep_from = snapshots
            .iter()
            .filter(|(o, _)| *o <= max_offset && *o >= first_base)
            .count()
            .saturating_sub(SNAPSHOTS_RETAINED);
        let mut kept = 0;
        let mut deleted = false;
        for (offset, path) in &snapshots {
            let usable = *offset <= max_offset && *offset >= first_base;
            if usable {
                kept += 1;
                if kept > keep_from {
                    continue;
                }
            }
            remove_if_exists(path)?;
            deleted = true;
        }
        Ok(deleted)
    }

    /// Truncation to `new_leo`: drops snapshots beyond it and trims or rebuilds the state.
    pub(super) fn truncate_producer_state(&mut self, new_leo: i64) -> Result<(), LogError> {
        for (offset, path) in list_snapshots(&self.dir)? {
            if offset > new_leo {
                remove_if_exists(&path)?;
            }
        }
        if !self.producer_state.truncate_to(new_leo) {
            self.rebuild_producer_state(new_leo);
        }
        Ok(())
    }

    /// `truncate_fully_and_start_at`: no producer state, no snapshots.
    pub(super) fn reset_producer_state(&mut self, offset: i64) -> Result<(), LogError> {
        for (_, path) in list_snapshots(&self.dir)? {
            remove_if_exists(&path)?;
        }
        self.producer_state = ProducerStateManager::new(offset);
        Ok(())
    }
}

/// The end-transaction marker of a stored control batch of a producer, `None` for other
/// control types. A marker that does not parse is logged and treated as another control
/// type: the batch passed its CRC, so it is what the leader wrote.
pub(crate) fn marker_of(h: &BatchHeader, bytes: &[u8]) -> Option<EndTxnMarker> {
    match crate::control::parse_marker(bytes) {
        Ok(m) => m,
        Err(e) => {
            warn!(offset = h.base_offset, producer_id = h.producer_id, error = %e, "ignoring a malformed control record");
            None
        }
    }
}

/// The transaction index entry of a transaction just completed in `state`.
pub(crate) fn aborted_entry(state: &ProducerStateManager, c: &CompletedTxn) -> AbortedTxn {
    debug_assert!(c.is_aborted);
    AbortedTxn {
        producer_id: c.producer_id,
        first_offset: c.first_offset,
        last_offset: c.last_offset,
        last_stable_offset: state.last_stable_offset_after(c.last_offset),
    }
}
