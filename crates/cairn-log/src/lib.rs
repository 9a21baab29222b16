//! # cairn-log — one partition's log on disk
//!
//! **Owns**: the directory of one topic partition — its segment files, their sparse indexes,
//! the checkpoints of the recovery point, the log start offset and the leader epochs, the
//! idempotent and transactional producers' state and its snapshots, the aborted transaction
//! indexes, and the clean-shutdown marker. It validates RecordBatch v2 bytes, assigns
//! offsets, stores and serves whole batches, tracks transactions and the last stable offset,
//! recovers after a crash, applies retention and compaction.
//!
//! **Must never**: read the clock (time comes in as `now_ms`), spawn threads or touch sockets,
//! re-encode batches on the append/read path (only the base offset, the partition leader epoch
//! and, for LogAppendTime topics, the timestamp type bit and `max_timestamp` are patched), serve
//! bytes that failed their CRC, or write outside its directory. It is plain synchronous Rust;
//! `cairn-broker` owns one `PartitionLog` per hosted partition behind a lock and calls it from
//! its tokio tasks (blocking calls belong in `spawn_blocking`), passing time in.
//!
//! Kafka concepts: `LogSegment`, `OffsetIndex`, `TimeIndex`, `TransactionIndex`, `UnifiedLog`,
//! `ProducerStateManager`, the recovery point and `LeaderEpochFileCache` (KIP-101, KIP-279),
//! transactions and the last stable offset (KIP-98); the batch format is the Kafka protocol
//! guide's "RecordBatch" (magic 2, KIP-98).
//!
//! ## Invariants (asserted or maintained by every operation)
//!
//! - `log_start_offset <= recovery_point <= log_end_offset`.
//! - Segments are sorted by base offset, never overlap, and the last one is the active one
//!   (the only one appended to); there is always at least one segment.
//! - Offsets strictly increase through the log (gaps allowed after compaction); every stored
//!   batch passed header and CRC-32C checks when appended or recovered.
//! - Index entries strictly increase in offset, position and timestamp and point at batch
//!   starts inside the segment.
//! - Everything below `recovery_point` has been fdatasync'ed.
//! - The producer state reflects exactly the batches below `log_end_offset`, in log order
//!   (plus producers whose batches retention deleted, until they expire), whatever path
//!   built it: appends, a snapshot plus a replay, or a rebuild after truncation.
//! - Every ABORT marker below `log_end_offset` that completed a transaction has exactly one
//!   entry in the `.txnindex` of the segment holding it, in marker order, whatever path
//!   appended it (leader, follower, recovery).
//! - `last_stable_offset(hw) <= hw`, and never above the first offset of an ongoing
//!   transaction, nor of a completed one whose marker is at or above `hw`.
//!
//! ## Files in a partition directory, byte by byte
//!
//! `<base>` is the segment's base offset as 20 zero-padded decimal digits.
//!
//! - `<base>.log`: RecordBatch v2 batches back to back, exactly as produced (see
//!   [`batch`] for the 61-byte header layout). Nothing else: no file header or footer. Below
//!   2 GiB ([`limits::SEGMENT_BYTES_MAX`]).
//! - `<base>.index`: entries of 8 bytes, big-endian: `u32` offset relative to `<base>` (of the
//!   last record of a batch; below 2^31 like Kafka's signed field, a segment rolls before),
//!   `u32` byte position of that batch in `<base>.log`. One entry after every
//!   `index.interval.bytes` of log. While the segment is active the file is extended
//!   (sparsely) to `segment.index.bytes`, mmapped, and its blocks allocated 64 KiB ahead of
//!   the entries; on roll and close it is trimmed to its entries. A file that does not end
//!   with increasing entries (a lost trim after a crash) is rebuilt.
//! - `<base>.timeindex`: entries of 12 bytes, big-endian: `i64` largest batch `max_timestamp`
//!   seen so far in the segment, `u32` relative offset of the batch that first reached it.
//!   Written alongside offset-index entries when the timestamp grew, plus a final entry on
//!   roll/close so that the segment's max timestamp is known without a scan.
//! - `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`: Kafka's text
//!   checkpoint format `"0\n1\n<offset>\n"`.
//! - `leader-epoch-checkpoint`: `"0\n<n>\n"` then `"<epoch> <start_offset>\n"` per epoch.
//!   Checkpoints are replaced atomically (write `.tmp`, fdatasync, rename, fsync directory).
//! - `<offset>.snapshot` (`<offset>` as 20 digits): the producer state of every batch below
//!   `<offset>` (see [`producer_state`]), written at every roll (offset = the new segment's
//!   base) and at `close` (offset = log end), as `.tmp` + fdatasync + rename. Big-endian:
//!   `u16` version = 1; `u32` CRC-32C of every byte after this field; `i64` offset (equal to
//!   the file name's); `u32` entry count; then per producer, by increasing id: `i64`
//!   producer id, `i16` epoch, `i64` last batch timestamp, `i64` last batch's last offset,
//!   `u8` batch count (0..=5), and per batch, oldest first, `i32` first sequence, `i32` last
//!   sequence, `i64` first offset, `i64` last offset, `i64` batch max timestamp (32 bytes).
//!   Version 2 (written now; version 1 is still read) adds per entry, after the last
//!   offset, `i64` current transaction first offset (-1 none) and `i32` coordinator epoch
//!   (entries of 39 + 32 × batches bytes), and after the entries `u32` count of completed
//!   transactions whose marker is not yet below the high watermark, each `i64` producer id,
//!   `i64` first offset, `i64` marker offset, `u8` aborted (25 bytes); see
//!   [`producer_state`] for the table.
//!   Nothing after the last entry. Only the latest [`log::SNAPSHOTS_RETAINED`] (2) at or
//!   below the log end and at or above the first segment's base are kept; truncation deletes
//!   those above the new end, retention those below the first remaining segment.
//! - `<base>.txnindex`: the aborted transactions whose ABORT marker is in the segment
//!   (Kafka's `TransactionIndex`), 34-byte big-endian entries: `i16` version = 0, `i64`
//!   producer id, `i64` first offset, `i64` marker offset, `i64` last stable offset (the
//!   first offset of the earliest transaction still ongoing right after the marker, else
//!   marker + 1). Created at the segment's first abort (directory fsync'ed then), appended
//!   with `pwrite`, fdatasync'ed by the flush tickets covering its segment, rewritten
//!   (`.tmp` + rename) by recovery and truncation. See [`txn_index`].
//! - `.cairn-clean-shutdown`: empty; exists only between a clean `close` and the next `open`.
//! - `*.deleted`: segment files being deleted (renamed first, removed `file.delete.delay.ms`
//!   later or at the next open). `*.cleaned`, `*.tmp`: leftovers of an interrupted cleaner
//!   pass or checkpoint write, removed at open.
//!
//! ## Recovery and what survives a power cut
//!
//! Opening after a clean shutdown scans nothing but the bytes after the active segment's last
//! index entry (≤ `index.interval.bytes` plus one batch), whatever the size of the log. After
//! a crash, segments from the one holding the persisted recovery point on are scanned batch by
//! batch (length, CRC-32C, increasing offsets); the first invalid or torn batch and everything
//! after it is truncated (logged with the file, position and reason), later segments are
//! deleted, indexes are rebuilt and the recovered data is fsync'ed. Older segments only get a
//! cheap index sanity check (and a rebuild if it fails). The persisted recovery point is
//! rewritten whenever it falls below the base of the recovery point's segment (about once per
//! roll) and at close, so a crash scans about one segment. A clean-shutdown marker whose
//! segments fail the same checks falls back to crash recovery from the failing segment.
//!
//! The producer state is loaded from the latest snapshot at or below the point where the
//! recovery scan starts, and the batches after it are fed to it by that same scan, which
//! also rewrites the scanned segments' `.txnindex` from the ABORT markers it sees; after a
//! clean shutdown the snapshot written by `close` is at the log end and nothing is replayed.
//! A `.txnindex` that fails its checks (torn entry, bad version, unordered or outside its
//! segment) is logged and rebuilt: after a clean shutdown by a recovery from its segment,
//! after a crash (below the scan start) by loading the snapshot at or below its segment and
//! replaying from there. A `.txnindex` lost whole below the recovery point cannot be told
//! from a segment without aborts (its durability rests on the flushes, as in Kafka). A snapshot that fails its checks (CRC, length, version,
//! offsets) is logged with its path, deleted, and an older one used; without any, the state
//! is rebuilt from the first segment by walking batch headers. When an open had to replay,
//! it writes a snapshot at the log end. Snapshots are a cache: losing one costs replay time,
//! never correctness, so the directory is not fsync'ed for them except when stale ones (above
//! a truncated end) are deleted.
//!
//! After a power cut the log is always a valid prefix of what was appended, and contains:
//! - `FlushPolicy::EveryAppend`: every batch whose append returned `Ok`;
//! - `FlushPolicy::GroupCommit`: every batch below the `up_to_offset` of a `FlushTicket`
//!   whose `sync` returned `Ok` (the broker acknowledges `acks=all` producers only then);
//! - `FlushPolicy::Interval`: every batch flushed by the last interval flush;
//! - `FlushPolicy::Never`: whatever the kernel had written back (plus everything before the
//!   last `close`).
//!
//! Record batch magic v0/v1 is rejected with [`LogError::UnsupportedMagic`] (all clients
//! since Kafka 0.11 send v2).
//!
//! ## Durability protocol (group commit)
//!
//! `begin_flush` (cheap, under the caller's lock) returns a [`FlushTicket`] holding `Arc<File>`
//! handles of every file with bytes not yet known durable: the `.log` of each segment with
//! data at or after the recovery point, the (trimmed) index files of such segments that were
//! rolled, and the directory when segments were created since. `FlushTicket::sync`
//! fdatasyncs them without the lock; `complete_flush_ticket` / `complete_flush` then advance
//! the recovery point. Tickets taken before a truncation are ignored by
//! `complete_flush_ticket`. The persisted recovery point (a checkpoint) is rewritten only when
//! the recovery point enters a new segment, at truncation and at close — never on the hot
//! path; a stale persisted value only makes crash recovery scan more.
//!
//! ## Append validation (no decompression)
//!
//! Each batch of a produce request: magic 2, `batch_length` consistent with the buffer,
//! CRC-32C of bytes 21.., `records_count >= 1` and `last_offset_delta == records_count - 1`,
//! for uncompressed batches the record count by walking the record length prefixes,
//! `max_timestamp >= base_timestamp`, size `<= max.message.bytes`, the whole request
//! `<= segment.bytes`. Only on compacted topics are records decoded (decompressed), to reject
//! keyless records with `InvalidRecord`. Nothing is written unless every batch passes.
//! Follower appends check the same framing and CRC and that offsets increase from the log end.
//!
//! ## Idempotent producers
//!
//! `append_as_leader` checks batches with a producer id against the producer state before
//! assigning offsets (see [`producer_state`] for the rules): a retry of one of a producer's
//! last 5 batches fails with [`LogError::DuplicateBatch`] carrying the original offsets
//! (nothing is appended: the broker answers success with them), a sequence gap or a fenced
//! epoch with [`LogError::Producer`]. The batches of one request are all-or-nothing, as for
//! every other check. `append_as_follower` and recovery never check, they only record.
//! [`PartitionLog::producer_state`] exposes the state (DescribeProducers) and
//! [`PartitionLog::remove_expired_producers`] applies `producer.id.expiration.ms`.
//!
//! ## Transactions (KIP-98)
//!
//! Transactional batches (attribute bit 4) start a transaction for their producer at their
//! base offset; an end marker ([`control`]: a control batch whose one record says COMMIT or
//! ABORT, written by [`PartitionLog::append_marker_as_leader`] on the leader and replicated
//! like any batch) ends it. The producer state keeps the ongoing transactions by first
//! offset and the completed ones whose marker is not yet known to be below the high
//! watermark; every ABORT that completes a transaction adds an entry to the segment's
//! `.txnindex`. From them:
//! - [`PartitionLog::last_stable_offset`]`(hw)` (LSO) = min(hw, first unstable offset): the
//!   bound of read_committed fetches. Calling it (or
//!   [`PartitionLog::first_unstable_offset`]) with the current high watermark also forgets
//!   completed transactions whose marker is below it, so the broker calls it whenever the
//!   high watermark moves (until then they are kept in memory and in snapshots).
//! - [`PartitionLog::collect_aborted_transactions`]`(from, upper)`: the aborted
//!   transactions a read_committed fetch of `[from, upper)` lists.
//! - Leader checks: a non-transactional batch during the producer's transaction is refused
//!   (INVALID_TXN_STATE), markers from an older producer epoch or coordinator epoch are
//!   fenced (INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED), clients may not write
//!   control batches (INVALID_RECORD). [`PartitionLog::append_as_coordinator`] is the
//!   group coordinator's path for transactional offset commits (no sequence checks).
//! - Followers and recovery run the same state update without checks, so every replica
//!   computes the same LSO and `.txnindex` files; truncating a marker away makes its
//!   transaction ongoing again.
//!
//! ## Compaction
//!
//! See [`cleaner`]: closed segments only (and only below the first unstable offset), last
//! record per key kept, records of aborted transactions dropped (markers kept), tombstones
//! dropped after `delete.retention.ms` (by record timestamp), offsets unchanged, batches
//! re-encoded with their own codec only when something inside them goes, and a three-phase API
//! (`prepare_clean` / `CleanTask::run` / `finish_clean`) so that the heavy part runs without
//! the log's lock.
//!
//! ## Resources
//!
//! Every bound is in [`limits`]. File descriptors: the active segment keeps three (`.log`,
//! `.index`, `.timeindex`), and so does a rolled segment until its bytes are durable; older
//! segments keep none, only their two index mappings (a segment that received an ABORT
//! marker also keeps its `.txnindex` descriptor until the same sweep), except a `.log` descriptor reopened by
//! a read, which `release_idle_handles` (run by `open` and `delete_old_segments`) closes once
//! a sweep finds it unused since the previous sweep. Reads copy whole batches into a fresh
//! buffer with one `pread` (plus one 61-byte header read to find the start) and verify their
//! CRCs before returning them. Active index files are extended sparsely and allocated 64 KiB
//! at a time.
//!
//! ## Not done yet
//!
//! The cleaner removing transaction markers once their transaction has no data left and
//! `delete.retention.ms` passed (Kafka does; we keep every marker), the cleaner keeping each
//! producer's last batch (a rebuild from the log start after compaction
//! may forget producers whose batches were compacted away; snapshots are unaffected), the
//! per-batch delete horizon of KIP-534 (tombstone expiry uses record timestamps instead), and
//! a descriptor budget shared across partitions (the bound is per log).
//!
//! ## Example
//!
//! ```
//! use cairn_log::{LogConfig, PartitionLog};
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).unwrap();
//! let mut batch = cairn_log::testutil::simple_batch(2, 100, 1_000);
//! let info = log.append_as_leader(&batch, 0, 1_000).unwrap();
//! // Group commit: take the ticket under the lock, sync outside it, then complete.
//! let ticket = log.begin_flush().unwrap();
//! ticket.sync().unwrap();
//! log.complete_flush(ticket.up_to_offset);
//! assert_eq!(log.recovery_point(), info.last_offset + 1);
//! ```

pub mod batch;
mod checkpoint;
pub mod cleaner;
mod compression;
pub mod config;
pub mod control;
mod durability;
pub mod error;
mod index;
pub mod limits;
pub mod log;
pub mod producer_state;
mod read_buffer;
mod segment;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod txn_index;

pub use batch::{
    BATCH_HEADER_LEN, BatchHeader, Batches, CompressionType, Record, decode_records, verify_crc,
};
pub use cleaner::{CleanStats, CleanTask, CleanedSegments};
pub use config::{CleanupPolicy, FlushPolicy, LogConfig, TimestampType};
pub use control::{ControlType, EndTxnMarker, build_marker_batch, parse_marker};
pub use error::LogError;
pub use log::{AppendInfo, FlushTicket, PartitionLog, ReadInfo, TimestampOffset};
pub use producer_state::{CheckOutcome, CompletedTxn, ProducerError, ProducerStateManager};
pub use txn_index::AbortedTxn;
