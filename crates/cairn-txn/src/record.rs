//! The records of `__transaction_state`, in Kafka's own key and value formats
//! (`TransactionLogKey.json`, `TransactionLogValue.json`), so that Kafka tooling
//! (`kafka-dump-log --transaction-log-decoder`) and a log copied from Kafka read unchanged.
//!
//! All integers are big-endian. A `string` is an `i16` length then UTF-8 bytes; an array
//! is an `i32` count (-1 for null) then its elements. In flexible versions a compact string
//! is an unsigned varint of length + 1, a compact array an unsigned varint of count + 1
//! (0 for null), and every struct ends with tagged fields: an unsigned varint count, then
//! per field an unsigned varint tag, an unsigned varint size and the field's bytes.
//!
//! ```text
//! TransactionLogKey   v0: i16 version=0, string transactional_id
//! TransactionLogValue v0: i16 version=0, i64 producer_id, i16 producer_epoch,
//!                         i32 timeout_ms, i8 state, nullable array partitions
//!                         [string topic, array [i32 partition]],
//!                         i64 last_update_ms, i64 txn_start_ms
//! TransactionLogValue v1: i16 version=1, then the v0 fields in compact encodings
//!                         (each partitions entry ends with its own empty tagged fields),
//!                         then tagged fields: tag 0 i64 prev_producer_id (default -1),
//!                         tag 1 i64 next_producer_id (default -1),
//!                         tag 2 i16 client_transaction_version (default 0)
//! ```
//! The partitions are grouped by topic and are null in state `Empty` (as Kafka writes
//! them; a reader ignores them there). We write value v1 with tags 0 and 1 when they are
//! not -1 and never tag 2 (the classic protocol is transaction version 0); we read v0 and
//! v1, skip tags we do not know (Kafka 4.x adds some) and ignore tag 2. A null value is a
//! tombstone: the transactional id was removed. The topic is compacted, so the last value
//! per key is the state.
//!
//! Everything decoded here is untrusted: malformed bytes are a [`CodecError`], never a
//! panic, and no length read from the bytes allocates more than the bytes could hold.

use std::collections::BTreeSet;

use crate::metadata::{NO_PRODUCER_ID, TopicPartition, TxnMetadata, TxnState};

/// The key version we write and the only one Kafka has.
pub const KEY_VERSION: i16 = 0;
/// The value version we write: the first flexible one.
pub const VALUE_WRITE_VERSION: i16 = 1;

/// One record of `__transaction_state`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogRecord {
    pub transactional_id: String,
    /// `None` for a tombstone: the transactional id was removed.
    pub metadata: Option<TxnMetadata>,
}

/// Why a `__transaction_state` record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A key version other than 0; Kafka skips such records when loading ("a left over
    /// from an aborted upgrade"), and so may the host.
    #[error("unknown __transaction_state key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown __transaction_state value version {0}")]
    UnknownValueVersion(i16),
    #[error("unknown transaction state id {0}")]
    UnknownState(i8),
    #[error("record ends inside {0}")]
    Truncated(&'static str),
    #[error("{0} is not valid")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
}

/// The key of `transactional_id`'s records.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_str(&mut out, transactional_id);
    out
}

/// The value v1 of `m`.
///
/// # Panics
/// When `m` is `Empty` with partitions (Kafka refuses the same), or a topic name or the
/// transactional id is longer than `i16::MAX` bytes: the coordinator never builds either.
pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    assert!(
        m.state != TxnState::Empty || m.partitions.is_empty(),
        "transactional id {} is Empty but has partitions {:?}",
        m.transactional_id,
        m.partitions
    );
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&VALUE_WRITE_VERSION.to_be_bytes());
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.extend_from_slice(&m.state.id().to_be_bytes());
    if m.state == TxnState::Empty {
        put_uvarint(&mut out, 0);
    } else {
        let topics = group_by_topic(&m.partitions);
        put_uvarint(&mut out, len_u32(topics.len()) + 1);
        for (topic, partitions) in topics {
            put_compact_str(&mut out, topic);
            put_uvarint(&mut out, len_u32(partitions.len()) + 1);
            for p in partitions {
                out.extend_from_slice(&p.to_be_bytes());
            }
            put_uvarint(&mut out, 0); // the entry's tagged fields
        }
    }
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&m.txn_start_ms.to_be_bytes());
    let tagged: Vec<(u32, i64)> = [(0, m.prev_producer_id), (1, m.next_producer_id)]
        .into_iter()
        .filter(|&(_, id)| id != NO_PRODUCER_ID)
        .collect();
    put_uvarint(&mut out, len_u32(tagged.len()));
    for (tag, id) in tagged {
        put_uvarint(&mut out, tag);
        put_uvarint(&mut out, 8);
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

/// Reads one record: its key and its value (`None` for a tombstone).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogRecord, CodecError> {
    let mut k = Reader::new(key);
    let key_version = k.i16("key version")?;
    if key_version != KEY_VERSION {
        return Err(CodecError::UnknownKeyVersion(key_version));
    }
    let transactional_id = k.string("transactional id")?;
    k.finish()?;
    let metadata = match value {
        None => None,
        Some(value) => Some(decode_value(transactional_id.clone(), value)?),
    };
    Ok(TxnLogRecord {
        transactional_id,
        metadata,
    })
}

fn decode_value(transactional_id: String, value: &[u8]) -> Result<TxnMetadata, CodecError> {
    let mut r = Reader::new(value);
    let version = r.i16("value version")?;
    let flexible = match version {
        0 => false,
        1 => true,
        v => return Err(CodecError::UnknownValueVersion(v)),
    };
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("transaction timeout")?;
    let state_id = r.i8("transaction status")?;
    let state = TxnState::from_id(state_id).ok_or(CodecError::UnknownState(state_id))?;
    let mut partitions = BTreeSet::new();
    // Null and empty are the same set; Kafka writes null only in Empty.
    let topics = if flexible {
        r.compact_len("partitions")?
    } else {
        r.array_len("partitions")?
    };
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible {
            r.compact_string("topic")?
        } else {
            r.string("topic")?
        };
        let count = if flexible {
            r.compact_len("partition ids")?
        } else {
            r.array_len("partition ids")?
        }
        .ok_or(CodecError::Invalid("null partition ids"))?;
        for _ in 0..count {
            let partition = r.i32("partition id")?;
            partitions.insert(TopicPartition {
                topic: topic.clone(),
                partition,
            });
        }
        if flexible {
            r.skip_tagged_fields(|_, _| Ok(()))?;
        }
    }
    let last_update_ms = r.i64("last update timestamp")?;
    let txn_start_ms = r.i64("start timestamp")?;
    let mut prev_producer_id = NO_PRODUCER_ID;
    let mut next_producer_id = NO_PRODUCER_ID;
    if flexible {
        r.skip_tagged_fields(|tag, data| {
            let slot = match tag {
                0 => &mut prev_producer_id,
                1 => &mut next_producer_id,
                // ClientTransactionVersion and tags of later Kafka versions.
                _ => return Ok(()),
            };
            let bytes: [u8; 8] = data
                .try_into()
                .map_err(|_| CodecError::Invalid("producer id tagged field size"))?;
            *slot = i64::from_be_bytes(bytes);
            Ok(())
        })?;
    }
    r.finish()?;
    if state == TxnState::Empty {
        // Kafka ignores partitions of an Empty transaction when reading.
        partitions.clear();
    }
    Ok(TxnMetadata {
        transactional_id,
        producer_id,
        prev_producer_id,
        next_producer_id,
        producer_epoch,
        last_producer_epoch: crate::metadata::NO_PRODUCER_EPOCH,
        timeout_ms,
        state,
        partitions,
        txn_start_ms,
        last_update_ms,
    })
}

fn group_by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some((topic, ids)) if *topic == tp.topic => ids.push(tp.partition),
            _ => topics.push((&tp.topic, vec![tp.partition])),
        }
    }
    topics
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("collection longer than u32::MAX")
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).expect("string longer than i16::MAX bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_compact_str(out: &mut Vec<u8>, s: &str) {
    assert!(
        s.len() <= i16::MAX as usize,
        "string longer than i16::MAX bytes"
    );
    put_uvarint(out, len_u32(s.len()) + 1);
    out.extend_from_slice(s.as_bytes());
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over untrusted bytes; every read checks the remaining length.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.array::<1>(what)?;
            let bits = u32::from(b & 0x7f);
            // The fifth byte may carry only the top 4 bits of a u32.
            if i == 4 && bits > 0x0f {
                return Err(CodecError::Invalid(what));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::Invalid(what))
    }

    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, CodecError> {
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Invalid(what))
    }

    /// A non-null `string`.
    fn string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = self.i16(what)?;
        let len = usize::try_from(len).map_err(|_| CodecError::Invalid(what))?;
        self.utf8(len, what)
    }

    /// A non-null compact string.
    fn compact_string(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = self.uvarint(what)?;
        let len = len.checked_sub(1).ok_or(CodecError::Invalid(what))?;
        if len > i16::MAX as u32 {
            return Err(CodecError::Invalid(what));
        }
        self.utf8(len as usize, what)
    }

    /// An `i32` array count, `None` for null. A count larger than the remaining bytes
    /// could hold is refused here, before anything is read or allocated.
    fn array_len(&mut self, what: &'static str) -> Result<Option<usize>, CodecError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(CodecError::Invalid(what)),
            n => self.bounded(n as u32, what).map(Some),
        }
    }

    /// A compact array count, `None` for null.
    fn compact_len(&mut self, what: &'static str) -> Result<Option<usize>, CodecError> {
        match self.uvarint(what)? {
            0 => Ok(None),
            n => self.bounded(n - 1, what).map(Some),
        }
    }

    /// Every element takes at least one byte.
    fn bounded(&self, n: u32, what: &'static str) -> Result<usize, CodecError> {
        let n = n as usize;
        if n > self.buf.len() {
            return Err(CodecError::Truncated(what));
        }
        Ok(n)
    }

    /// Reads a tagged-fields section, handing each field's tag and bytes to `field`.
    fn skip_tagged_fields(
        &mut self,
        mut field: impl FnMut(u32, &[u8]) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let count = self.uvarint("tagged field count")?;
        let count = self.bounded(count, "tagged field count")?;
        for _ in 0..count {
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")? as usize;
            let data = self.take(size, "tagged field")?;
            field(tag, data)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), CodecError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(CodecError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(state: TxnState, partitions: &[(&str, i32)]) -> TxnMetadata {
        TxnMetadata {
            transactional_id: "tx-1".into(),
            producer_id: 4000,
            prev_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: 3,
            last_producer_epoch: crate::metadata::NO_PRODUCER_EPOCH,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|&(t, p)| TopicPartition::new(t, p))
                .collect(),
            txn_start_ms: 1_000,
            last_update_ms: 2_000,
        }
    }

    #[test]
    fn key_is_version_0_then_an_int16_length_string() {
        assert_eq!(encode_key("ab"), vec![0, 0, 0, 2, b'a', b'b']);
    }

    /// The bytes Kafka's generated `TransactionLogValue` writes at version 1 for the same
    /// metadata, laid out by hand from the JSON schema.
    #[test]
    fn value_v1_bytes_match_kafkas_layout() {
        let mut m = meta(TxnState::Ongoing, &[("a", 1), ("a", 0), ("b", 7)]);
        m.prev_producer_id = 3999;
        let mut expected = vec![0, 1]; // version 1
        expected.extend_from_slice(&4000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.push(3); // two topics
        expected.extend_from_slice(&[2, b'a', 3]);
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.push(0);
        expected.extend_from_slice(&[2, b'b', 2]);
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.push(0);
        expected.extend_from_slice(&2_000i64.to_be_bytes());
        expected.extend_from_slice(&1_000i64.to_be_bytes());
        expected.extend_from_slice(&[1, 0, 8]); // one tagged field: tag 0, 8 bytes
        expected.extend_from_slice(&3999i64.to_be_bytes());
        assert_eq!(encode_value(&m), expected);
        let record = decode(&encode_key("tx-1"), Some(&expected)).unwrap();
        assert_eq!(record.metadata, Some(m));
    }

    #[test]
    fn empty_state_writes_null_partitions() {
        let m = meta(TxnState::Empty, &[]);
        let bytes = encode_value(&m);
        assert_eq!(bytes[2 + 8 + 2 + 4 + 1], 0, "compact null array");
        assert_eq!(
            decode(&encode_key("tx-1"), Some(&bytes)).unwrap().metadata,
            Some(m)
        );
    }

    #[test]
    fn reads_value_v0() {
        let mut v = vec![0, 0];
        v.extend_from_slice(&4000i64.to_be_bytes());
        v.extend_from_slice(&3i16.to_be_bytes());
        v.extend_from_slice(&60_000i32.to_be_bytes());
        v.push(2); // PrepareCommit
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&[0, 1, b'a']);
        v.extend_from_slice(&2i32.to_be_bytes());
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&2_000i64.to_be_bytes());
        v.extend_from_slice(&1_000i64.to_be_bytes());
        let record = decode(&encode_key("tx-1"), Some(&v)).unwrap();
        assert_eq!(
            record.metadata,
            Some(meta(TxnState::PrepareCommit, &[("a", 0), ("a", 1)]))
        );
    }

    #[test]
    fn tombstone_is_a_removal() {
        assert_eq!(
            decode(&encode_key("gone"), None).unwrap(),
            TxnLogRecord {
                transactional_id: "gone".into(),
                metadata: None
            }
        );
    }

    #[test]
    fn unknown_tags_are_skipped_and_client_transaction_version_ignored() {
        let m = meta(TxnState::CompleteAbort, &[]);
        let mut bytes = encode_value(&m);
        let tags_at = bytes.len() - 1;
        assert_eq!(bytes[tags_at], 0);
        bytes.truncate(tags_at);
        bytes.extend_from_slice(&[2, 2, 2, 0, 1, 9, 3, 1, 2, 3]);
        assert_eq!(
            decode(&encode_key("tx-1"), Some(&bytes)).unwrap().metadata,
            Some(m)
        );
    }

    #[test]
    fn malformed_records_are_errors() {
        let good = encode_value(&meta(TxnState::Ongoing, &[("a", 0)]));
        let key = encode_key("tx-1");
        assert_eq!(
            decode(&[0, 1, 0, 0], None),
            Err(CodecError::UnknownKeyVersion(1))
        );
        assert_eq!(
            decode(&key, Some(&[0, 2])),
            Err(CodecError::UnknownValueVersion(2))
        );
        let mut bad_state = good.clone();
        bad_state[2 + 8 + 2 + 4] = 8;
        assert_eq!(
            decode(&key, Some(&bad_state)),
            Err(CodecError::UnknownState(8))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decode(&key, Some(&trailing)),
            Err(CodecError::TrailingBytes(1))
        );
        for cut in 0..good.len() {
            assert!(decode(&key, Some(&good[..cut])).is_err(), "cut at {cut}");
        }
        assert!(decode(&[0, 0, 0xff, 0xff], None).is_err());
        assert!(decode(&[0, 0, 0, 1, 0xff], None).is_err());
    }

    fn arb_metadata() -> impl Strategy<Value = TxnMetadata> {
        (
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<i16>()),
            any::<i32>(),
            0..8i8,
            proptest::collection::btree_set(("[a-c]{1,3}", 0..5i32), 0..6),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(
                |((pid, prev, next, epoch), timeout_ms, state, parts, start, update)| {
                    let state = TxnState::from_id(state).unwrap();
                    TxnMetadata {
                        transactional_id: "p".into(),
                        producer_id: pid,
                        prev_producer_id: prev,
                        next_producer_id: next,
                        producer_epoch: epoch,
                        last_producer_epoch: crate::metadata::NO_PRODUCER_EPOCH,
                        timeout_ms,
                        state,
                        partitions: if state == TxnState::Empty {
                            BTreeSet::new()
                        } else {
                            parts
                                .into_iter()
                                .map(|(t, p)| TopicPartition::new(t, p))
                                .collect()
                        },
                        txn_start_ms: start,
                        last_update_ms: update,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn value_round_trips(m in arb_metadata()) {
            let bytes = encode_value(&m);
            let record = decode(&encode_key("p"), Some(&bytes)).unwrap();
            prop_assert_eq!(record.metadata, Some(m));
        }

        #[test]
        fn random_bytes_never_panic(
            key in proptest::collection::vec(any::<u8>(), 0..16),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..96)),
        ) {
            let _ = decode(&key, value.as_deref());
        }

        /// Flipped bytes of a valid record: still an answer or an error, never a panic.
        #[test]
        fn mutated_records_never_panic(
            m in arb_metadata(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode_value(&m);
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let keep = cut.index(bytes.len() + 1);
            let _ = decode(&encode_key("p"), Some(&bytes[..keep]));
        }
    }
}
