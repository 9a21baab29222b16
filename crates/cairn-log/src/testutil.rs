//! Test support: an encoder of valid RecordBatch v2 bytes (varint records, CRC-32C, any codec).
//!
//! Compiled for this crate's tests and, for other crates' tests, behind the `testutil` cargo
//! feature (`cairn-log = { workspace = true, features = ["testutil"] }` in dev-dependencies).
//!
//! ```
//! use cairn_log::testutil::{BatchBuilder, TestRecord};
//! let batch = BatchBuilder::new(0).record(TestRecord::kv(1_700_000_000_000, "key", "value")).build();
//! cairn_log::verify_crc(&batch).unwrap();
//! ```

use crate::batch::{BATCH_HEADER_LEN, CompressionType, rewrite_crc};
use crate::compression;

/// One record to encode. `timestamp` is absolute; the builder computes deltas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl TestRecord {
    /// A record with a key and a value and no headers.
    pub fn kv(timestamp: i64, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> TestRecord {
        TestRecord {
            timestamp,
            key: Some(key.as_ref().to_vec()),
            value: Some(value.as_ref().to_vec()),
            headers: Vec::new(),
        }
    }

    /// A record without key.
    pub fn value(timestamp: i64, value: impl AsRef<[u8]>) -> TestRecord {
        TestRecord {
            timestamp,
            key: None,
            value: Some(value.as_ref().to_vec()),
            headers: vec![],
        }
    }

    /// A tombstone (key, null value).
    pub fn tombstone(timestamp: i64, key: impl AsRef<[u8]>) -> TestRecord {
        TestRecord {
            timestamp,
            key: Some(key.as_ref().to_vec()),
            value: None,
            headers: vec![],
        }
    }
}

pub use crate::batch::{encode_record, put_varint, put_varlong};

/// Builds one RecordBatch v2.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_offset: i64,
    leader_epoch: i32,
    compression: CompressionType,
    raw_snappy: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes_extra: i16,
    offset_deltas: Option<Vec<i32>>,
    records: Vec<TestRecord>,
}

impl BatchBuilder {
    /// A batch starting at `base_offset` (leaders overwrite it), no producer id, uncompressed.
    pub fn new(base_offset: i64) -> BatchBuilder {
        BatchBuilder {
            base_offset,
            leader_epoch: -1,
            compression: CompressionType::None,
            raw_snappy: false,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes_extra: 0,
            offset_deltas: None,
            records: Vec::new(),
        }
    }

    pub fn leader_epoch(mut self, epoch: i32) -> Self {
        self.leader_epoch = epoch;
        self
    }

    pub fn compression(mut self, codec: CompressionType) -> Self {
        self.compression = codec;
        self
    }

    /// Snappy without xerial framing (as librdkafka writes it).
    pub fn raw_snappy(mut self, raw: bool) -> Self {
        self.raw_snappy = raw;
        self
    }

    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the transactional attribute bit (0x10), keeping the others: a transactional data
    /// batch (use with [`BatchBuilder::producer`]).
    pub fn transactional(mut self) -> Self {
        self.attributes_extra |= 0x10;
        self
    }

    /// Sets the transactional (0x10) / control (0x20) attribute bits.
    pub fn attributes(mut self, extra: i16) -> Self {
        self.attributes_extra = extra;
        self
    }

    /// Explicit offset deltas (for compacted batches with gaps); default 0, 1, 2, ...
    pub fn offset_deltas(mut self, deltas: Vec<i32>) -> Self {
        self.offset_deltas = Some(deltas);
        self
    }

    pub fn record(mut self, r: TestRecord) -> Self {
        self.records.push(r);
        self
    }

    pub fn records(mut self, rs: impl IntoIterator<Item = TestRecord>) -> Self {
        self.records.extend(rs);
        self
    }

    /// Encodes the batch with a correct CRC-32C.
    pub fn build(&self) -> Vec<u8> {
        let base_ts = self.records.first().map_or(-1, |r| r.timestamp);
        let max_ts = self.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
        let deltas: Vec<i32> = match &self.offset_deltas {
            Some(d) => d.clone(),
            None => (0..self.records.len() as i32).collect(),
        };
        let mut body = Vec::new();
        for (r, &d) in self.records.iter().zip(&deltas) {
            encode_record(
                &mut body,
                d,
                r.timestamp - base_ts,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            );
        }
        let body = if self.compression == CompressionType::Snappy && self.raw_snappy {
            compression::compress_snappy_raw(&body)
        } else {
            compression::compress(self.compression, &body)
        };
        let last_delta = deltas.last().copied().unwrap_or(0);
        let mut b = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(&((BATCH_HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&self.leader_epoch.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&(self.compression as i16 | self.attributes_extra).to_be_bytes());
        b.extend_from_slice(&last_delta.to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&(self.records.len() as i32).to_be_bytes());
        b.extend_from_slice(&body);
        rewrite_crc(&mut b);
        b
    }
}

/// Every batch of `log` from its start to its end, in order, as stored.
pub fn all_batches(log: &crate::PartitionLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log
            .read(at, 1 << 20, i64::MAX, true)
            .expect("reading the log");
        for item in crate::Batches::new(&r.records) {
            let (h, b) = item.expect("a stored batch parses");
            out.push(b.to_vec());
            at = h.last_offset() + 1;
        }
    }
    out
}

/// The bytes one append stored, as the log holds them: the leader patches offsets, leader
/// epoch (and LogAppendTime) into its own copy of each header, never into the caller's.
pub fn stored_bytes(log: &crate::PartitionLog, info: &crate::AppendInfo) -> Vec<u8> {
    let r = log
        .read(info.base_offset, usize::MAX, info.last_offset + 1, true)
        .expect("reading an append back");
    assert_eq!(r.records.len(), info.bytes, "an append reads back whole");
    r.records.to_vec()
}

/// A batch of `count` records with `value_bytes`-byte values and keys `key-<i>`, all stamped
/// `timestamp`.
pub fn simple_batch(count: usize, value_bytes: usize, timestamp: i64) -> Vec<u8> {
    BatchBuilder::new(0)
        .records(
            (0..count)
                .map(|i| TestRecord::kv(timestamp, format!("key-{i}"), vec![b'x'; value_bytes])),
        )
        .build()
}

/// Makes the next segment append on this thread write only `bytes` bytes and then fail with
/// ENOSPC, like a short write on a full disk.
pub fn fail_next_write_after(bytes: usize) {
    crate::segment::FAIL_NEXT_WRITE_AFTER.with(|c| c.set(Some(bytes)));
}

/// Fuzz entry point shared by `fuzz/fuzz_targets/recover_segment.rs` and a stable proptest:
/// `data[0]` picks whether the directory looks cleanly shut down; the rest is written as the
/// only segment file of an empty partition directory `dir`, which is then opened (recovery),
/// read end to end, queried by timestamp, appended to, closed and reopened. Must never panic
/// nor allocate more than the file size; errors are fine.
pub fn fuzz_segment_recovery(dir: &std::path::Path, data: &[u8]) {
    use crate::{LogConfig, PartitionLog};
    let Some((&mode, segment)) = data.split_first() else {
        return;
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{:020}.log", (mode >> 4) as i64)), segment).unwrap();
    if mode & 1 == 1 {
        std::fs::write(dir.join(crate::log::CLEAN_SHUTDOWN_FILE), b"").unwrap();
    }
    if mode & 2 == 2 {
        // A bogus index beside it, as left by a crash.
        let n = segment.len().min(64);
        std::fs::write(
            dir.join(format!("{:020}.index", (mode >> 4) as i64)),
            &segment[..n / 8 * 8],
        )
        .unwrap();
    }
    let config = LogConfig {
        segment_bytes: 1 << 20,
        segment_index_bytes: 4096,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let Ok(mut log) = PartitionLog::open(dir, config.clone(), 0) else {
        return;
    };
    assert!(
        log.log_start_offset() <= log.recovery_point()
            && log.recovery_point() <= log.log_end_offset()
    );
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        match log.read(at, 1 << 16, i64::MAX, true) {
            Ok(r) => {
                let mut next = at;
                for item in crate::Batches::new(&r.records) {
                    let (h, b) = item.expect("served batches are whole");
                    crate::verify_crc(b).expect("served batches pass their CRC");
                    next = h.last_offset() + 1;
                }
                assert!(next > at, "read made no progress at {at}");
                at = next;
            }
            Err(_) => break,
        }
    }
    let _ = log.fetch_offset_by_timestamp(0);
    let _ = log.max_timestamp_offset();
    let b = simple_batch(2, 10, 1);
    let _ = log.append_as_leader(&b, 0, 1);
    let leo = log.log_end_offset();
    if log.close().is_ok() {
        let log = PartitionLog::open(dir, config, 0).expect("a cleanly closed log reopens");
        assert_eq!(log.log_end_offset(), leo);
    }
}

/// Fuzz entry point shared by `fuzz/fuzz_targets/append_batch.rs` and a stable proptest:
/// `data` is handed to batch parsing, record decoding, and to leader and follower appends of
/// fresh logs in `dir` (a compacted one when `data[0]` is odd). What is accepted must read
/// back byte for byte. Must never panic.
pub fn fuzz_append(dir: &std::path::Path, data: &[u8]) {
    use crate::{CleanupPolicy, LogConfig, PartitionLog};
    for item in crate::Batches::new(data) {
        let Ok((_, b)) = item else { break };
        let _ = crate::decode_records(b);
    }
    let compact = data.first().is_some_and(|b| b & 1 == 1);
    let config = LogConfig {
        cleanup_policy: if compact {
            CleanupPolicy::Compact
        } else {
            CleanupPolicy::Delete
        },
        segment_index_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&dir.join("leader"), config.clone(), 0).unwrap();
    if log.append_as_leader(data, 3, 1000).is_ok() {
        // What the leader stores: the batches with offsets from 0 and leader epoch 3.
        let mut expected = data.to_vec();
        let mut pos = 0;
        let mut next_offset = 0i64;
        while pos < expected.len() {
            let h = crate::BatchHeader::parse(&expected[pos..]).unwrap();
            expected[pos..pos + 8].copy_from_slice(&next_offset.to_be_bytes());
            expected[pos + 12..pos + 16].copy_from_slice(&3i32.to_be_bytes());
            next_offset += h.last_offset_delta as i64 + 1;
            pos += h.total_len();
        }
        let r = log.read(0, usize::MAX, i64::MAX, true).unwrap();
        assert_eq!(&r.records[..], &expected[..], "leader append reads back");
    }
    let mut log = PartitionLog::open(&dir.join("follower"), config, 0).unwrap();
    if log.append_as_follower(data).is_ok() {
        let first = crate::BatchHeader::parse(data).unwrap().base_offset;
        let r = log.read(first, usize::MAX, i64::MAX, true).unwrap();
        assert_eq!(&r.records[..], data, "follower append reads back");
    }
}

/// Turns every fsync of this process into a no-op (fuzzing speed: a fuzz iteration would
/// otherwise spend its time in fdatasync). Never use it where durability is under test.
pub fn skip_fsync_for_fuzzing(skip: bool) {
    crate::durability::SKIP_FSYNC.store(skip, std::sync::atomic::Ordering::Relaxed);
}
