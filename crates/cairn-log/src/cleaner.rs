//! Log compaction for `cleanup.policy=compact` and `compact,delete` (Kafka's `LogCleaner`).
//!
//! A pass has three phases so that it never blocks appends:
//! 1. [`crate::PartitionLog::prepare_clean`] (`&self`, cheap, under the caller's lock) picks the
//!    closed segments whose newest timestamp is older than `min.compaction.lag.ms` and takes
//!    their open files.
//! 2. [`CleanTask::run`] (no lock, heavy) scans them, builds a map key → last offset, and
//!    writes each segment's survivors to `<base>.log.cleaned` (fdatasync'ed). A record
//!    survives if it is the last one of its key among the cleaned segments and is not a
//!    tombstone older than `delete.retention.ms` (by record timestamp). Records without a
//!    key are dropped. Batches whose records all survive are copied unchanged; batches with
//!    some survivors are re-encoded with the same header fields and codec (offsets are kept:
//!    `last_offset_delta` is unchanged, gaps appear); empty batches are dropped. Control
//!    batches (transaction markers) and batches that fail to decode are kept unchanged.
//! 3. [`crate::PartitionLog::finish_clean`] (`&mut self`, under the lock) swaps each cleaned file in
//!    if its segment is still there with the same size and no truncation happened meanwhile:
//!    delete the segment's index files, fsync the directory, rename `.cleaned` over `.log`
//!    (atomic), fsync the directory, rebuild the indexes from the new file.
//!
//! A crash at any point leaves either the old or the new `.log`; leftover `.cleaned` files are
//! removed at open, and a segment whose index files are missing is re-indexed at open.
//! Records in the active segment are neither cleaned nor used to supersede older ones until it
//! rolls.
//!
//! ## Transactions
//!
//! Compaction must never make aborted records visible to read_committed consumers (who only
//! learn of aborted transactions from the `.txnindex` entries and drop what they list):
//! - A pass only takes segments that end at or below the first unstable offset (the first
//!   offset of the earliest ongoing, or completed but unreplicated, transaction as of the last
//!   high watermark given to `first_unstable_offset` / `last_stable_offset`), so every
//!   transactional batch it sees belongs to a decided transaction.
//! - `prepare_clean` collects the aborted transactions overlapping the cleaned range from the
//!   transaction indexes (the markers may be in later segments). Transactional data batches
//!   of an aborted transaction (same producer id, base offset within `[first_offset,
//!   last_offset]`) are removed whole, and their keys do not enter the key map, so they
//!   supersede nothing.
//! - Control batches (markers) are always kept, so the `.txnindex` files stay exactly valid
//!   (offsets do not change and no marker moves): finish_clean swaps the `.log` only. Kafka
//!   removes markers once their transaction has no data left and `delete.retention.ms`
//!   passed; we do not (yet): markers cost one small batch per transaction and partition.
//! - Committed transactional data is compacted like any other data.
//!
//! Memory: the key map holds every distinct key of the cleaned segments; a pass stops adding
//! segments once it holds [`CLEANER_MAP_KEYS_MAX`] keys (the rest wait for the next pass).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::batch::{self, BatchHeader};
use crate::durability::Fsync;
use crate::error::{IoContext, LogError};
use crate::log::CLEANED_SUFFIX;
use crate::segment::scan_file;

/// Largest number of distinct keys one cleaner pass keeps in memory. At ~100 bytes per key
/// this bounds a pass to a few hundred MiB.
pub const CLEANER_MAP_KEYS_MAX: usize = 4 * 1024 * 1024;

/// What one `clean` pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten (segments without anything to remove are not counted).
    pub segments_cleaned: usize,
    /// Bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records dropped (superseded, tombstones past `delete.retention.ms`, keyless, aborted).
    pub records_removed: u64,
    /// Of which tombstones.
    pub tombstones_removed: u64,
    /// Of which records of aborted transactions.
    pub aborted_records_removed: u64,
}

pub(crate) struct CleanInput {
    pub(crate) base_offset: i64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<File>,
    pub(crate) size: u64,
}

/// A compaction pass taken by [`crate::PartitionLog::prepare_clean`]; run it without the lock.
pub struct CleanTask {
    pub(crate) inputs: Vec<CleanInput>,
    /// Aborted transactions overlapping the inputs (from the transaction indexes).
    pub(crate) aborted: Vec<crate::txn_index::AbortedTxn>,
    pub(crate) now_ms: i64,
    pub(crate) delete_retention_ms: i64,
    pub(crate) generation: u64,
}

pub(crate) struct CleanOutput {
    pub(crate) base_offset: i64,
    pub(crate) input_size: u64,
    pub(crate) cleaned_path: PathBuf,
    pub(crate) output_size: u64,
}

/// The files written by [`CleanTask::run`], to hand to [`crate::PartitionLog::finish_clean`].
pub struct CleanedSegments {
    pub(crate) outputs: Vec<CleanOutput>,
    pub(crate) stats: CleanStats,
    pub(crate) generation: u64,
}

impl CleanedSegments {
    /// Removes the written files (when the pass is abandoned).
    pub fn discard(self) {
        for o in self.outputs {
            let _ = std::fs::remove_file(&o.cleaned_path);
        }
    }
}

impl CleanTask {
    /// Number of segments this pass looks at.
    pub fn segments(&self) -> usize {
        self.inputs.len()
    }

    /// Builds the key map and writes the cleaned segments. Heavy; holds no lock.
    pub fn run(self) -> Result<CleanedSegments, LogError> {
        let inputs = self.inputs;
        let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in &self.aborted {
            aborted
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        let is_aborted = |h: &BatchHeader| {
            h.is_transactional()
                && !h.is_control()
                && aborted.get(&h.producer_id).is_some_and(|v| {
                    v.iter()
                        .any(|&(first, last)| first <= h.base_offset && h.base_offset <= last)
                })
        };
        // Phase 1: key -> last offset over the segments, stopping at the map bound.
        let mut map: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut mapped = 0;
        for input in &inputs {
            scan_file(
                &input.file,
                &input.path,
                input.base_offset,
                0,
                i64::MIN,
                |h, _, bytes| {
                    if h.is_control() || is_aborted(h) {
                        return Ok(());
                    }
                    if let Ok(records) = batch::decode_records(bytes) {
                        for r in records {
                            if let Some(k) = r.key {
                                map.insert(k.to_vec(), h.base_offset + r.offset_delta as i64);
                            }
                        }
                    }
                    Ok(())
                },
            )?;
            mapped += 1;
            if map.len() >= CLEANER_MAP_KEYS_MAX {
                break;
            }
        }
        // Phase 2: write survivors.
        let horizon_ms = self.now_ms.saturating_sub(self.delete_retention_ms);
        let mut stats = CleanStats::default();
        let mut outputs = Vec::new();
        for input in inputs.into_iter().take(mapped) {
            let mut out: Vec<u8> = Vec::with_capacity(input.size as usize / 2);
            let mut removed = 0u64;
            let mut tombstones = 0u64;
            let mut aborted_records = 0u64;
            scan_file(
                &input.file,
                &input.path,
                input.base_offset,
                0,
                i64::MIN,
                |h, _, bytes| {
                    if is_aborted(h) {
                        removed += h.records_count as u64;
                        aborted_records += h.records_count as u64;
                        return Ok(());
                    }
                    let kept = keep_records(h, bytes, &map, horizon_ms);
                    match kept {
                        Keep::All => out.extend_from_slice(bytes),
                        Keep::Some {
                            records,
                            dropped,
                            dropped_tombstones,
                        } => {
                            removed += dropped;
                            tombstones += dropped_tombstones;
                            if !records.is_empty() {
                                out.extend_from_slice(&batch::rebuild_batch(h, &records));
                            }
                        }
                    }
                    Ok(())
                },
            )?;
            if removed == 0 {
                continue;
            }
            let mut name = input.path.clone().into_os_string();
            name.push(CLEANED_SUFFIX);
            let cleaned_path = PathBuf::from(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&cleaned_path)
                .io_ctx("create cleaned segment", &cleaned_path)?;
            f.write_all(&out)
                .io_ctx("write cleaned segment", &cleaned_path)?;
            f.fsync().io_ctx("fsync cleaned segment", &cleaned_path)?;
            stats.segments_cleaned += 1;
            stats.bytes_before += input.size;
            stats.bytes_after += out.len() as u64;
            stats.records_removed += removed;
            stats.tombstones_removed += tombstones;
            stats.aborted_records_removed += aborted_records;
            outputs.push(CleanOutput {
                base_offset: input.base_offset,
                input_size: input.size,
                cleaned_path,
                output_size: out.len() as u64,
            });
        }
        Ok(CleanedSegments {
            outputs,
            stats,
            generation: self.generation,
        })
    }
}

enum Keep {
    All,
    Some {
        records: Vec<batch::Record>,
        dropped: u64,
        dropped_tombstones: u64,
    },
}

fn keep_records(
    h: &BatchHeader,
    bytes: &[u8],
    map: &HashMap<Vec<u8>, i64>,
    horizon_ms: i64,
) -> Keep {
    if h.is_control() {
        return Keep::All;
    }
    let Ok(records) = batch::decode_records(bytes) else {
        return Keep::All;
    };
    let total = records.len();
    let mut dropped_tombstones = 0;
    let kept: Vec<batch::Record> = records
        .into_iter()
        .filter(|r| {
            let Some(key) = &r.key else { return false };
            let offset = h.base_offset + r.offset_delta as i64;
            if map.get(key.as_ref()) != Some(&offset) {
                return false;
            }
            if r.value.is_none() && batch::record_timestamp(h, r) < horizon_ms {
                dropped_tombstones += 1;
                return false;
            }
            true
        })
        .collect();
    if kept.len() == total {
        Keep::All
    } else {
        Keep::Some {
            dropped: (total - kept.len()) as u64,
            records: kept,
            dropped_tombstones,
        }
    }
}
