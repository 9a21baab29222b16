//! Control batches: the end-transaction markers (COMMIT / ABORT) that the transaction
//! coordinator writes to every partition of a transaction (Kafka's `ControlRecordType`,
//! `EndTransactionMarker`, KIP-98).
//!
//! Pure encoding and decoding, no I/O. [`build_marker_batch`] is used by
//! [`crate::PartitionLog::append_marker_as_leader`]; [`parse_marker`] by every path that
//! feeds the producer state (leader and follower appends, recovery, replays).
//!
//! ## Format, byte by byte
//!
//! A control batch is a RecordBatch v2 (see [`crate::batch`]) with attributes
//! `0x30` (bit 4 transactional, bit 5 control, codec none), the transactional producer's id
//! and epoch, `base_sequence = -1` and exactly one record (`last_offset_delta = 0`,
//! `records_count = 1`). The record's key and value are (big-endian):
//!
//! | part  | bytes | field                                                 |
//! |-------|-------|-------------------------------------------------------|
//! | key   | 0..2  | `version` i16 = 0                                     |
//! | key   | 2..4  | `type` i16: 0 = ABORT, 1 = COMMIT (others: not a txn marker) |
//! | value | 0..2  | `version` i16 = 0                                     |
//! | value | 2..6  | `coordinator_epoch` i32                               |
//!
//! As Kafka does, a newer key or value version is accepted (extra trailing bytes are
//! ignored); a negative version or a short key/value is malformed.

use crate::batch::{self, BATCH_HEADER_LEN, BatchHeader, MAGIC_V2};
use crate::error::LogError;
use crate::limits::LOG_OVERHEAD_BYTES;

/// Attributes of a marker batch: transactional (0x10) and control (0x20), no codec.
pub const MARKER_ATTRIBUTES: i16 = 0x30;

/// Kafka's `ControlRecordType` for transaction markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// Type id 0: the transaction's records are to be dropped by read_committed consumers.
    Abort,
    /// Type id 1: the transaction's records become visible.
    Commit,
}

impl ControlType {
    /// Kafka's type id (the key's second field).
    pub fn type_id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    /// The marker type for a type id, `None` for the other control types (leader change = 2,
    /// snapshot header/footer = 3/4, ... which are not transaction markers).
    pub fn from_type_id(id: i16) -> Option<ControlType> {
        match id {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// An end-transaction marker (Kafka's `EndTransactionMarker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndTxnMarker {
    pub control: ControlType,
    /// The epoch of the transaction coordinator that wrote it (fences zombie coordinators).
    pub coordinator_epoch: i32,
}

/// A complete magic-v2 control batch (attributes: control + transactional bits, one record
/// whose key is `[version i16 = 0, type i16]` and value is `[version i16 = 0,
/// coordinator_epoch i32]`), base offset 0, base_sequence -1, CRC valid,
/// partition_leader_epoch 0 (append patches it as for any batch).
pub fn build_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.control.type_id().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = Vec::with_capacity(24);
    batch::encode_record::<&[u8]>(&mut body, 0, 0, Some(&key), Some(&value), &[]);
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(
        &((BATCH_HEADER_LEN - LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes(),
    );
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last_offset_delta
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&body);
    batch::rewrite_crc(&mut b);
    b
}

/// Parses the single control record of a control batch (the whole batch bytes, CRC
/// checked). Unknown control types (Kafka has others, e.g. leader change = 2..) return
/// `Ok(None)`; malformed → [`LogError::CorruptRecord`] (or [`LogError::InvalidRecord`] when
/// the batch is not a control batch at all).
pub fn parse_marker(batch: &[u8]) -> Result<Option<EndTxnMarker>, LogError> {
    let h = BatchHeader::parse(batch)?;
    if !h.is_control() {
        return Err(LogError::invalid(
            "not a control batch: attribute bit 5 (0x20) is not set",
        ));
    }
    let records = batch::decode_records(batch)?;
    let Some(r) = records.first() else {
        return Err(LogError::corrupt("control batch without a record"));
    };
    let key = r
        .key
        .as_deref()
        .filter(|k| k.len() >= 4)
        .ok_or_else(|| LogError::corrupt("control record key shorter than 4 bytes"))?;
    let key_version = i16::from_be_bytes([key[0], key[1]]);
    if key_version < 0 {
        return Err(LogError::corrupt(format!(
            "negative control record key version {key_version}"
        )));
    }
    let Some(control) = ControlType::from_type_id(i16::from_be_bytes([key[2], key[3]])) else {
        return Ok(None);
    };
    let value =
        r.value.as_deref().filter(|v| v.len() >= 6).ok_or_else(|| {
            LogError::corrupt("end transaction marker value shorter than 6 bytes")
        })?;
    let value_version = i16::from_be_bytes([value[0], value[1]]);
    if value_version < 0 {
        return Err(LogError::corrupt(format!(
            "negative end transaction marker version {value_version}"
        )));
    }
    Ok(Some(EndTxnMarker {
        control,
        coordinator_epoch: i32::from_be_bytes(value[2..6].try_into().unwrap()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_batches_round_trip_with_a_valid_crc() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let marker = EndTxnMarker {
                control,
                coordinator_epoch: 7,
            };
            let b = build_marker_batch(42, 3, marker, 1_234);
            batch::verify_crc(&b).unwrap();
            let h = BatchHeader::parse(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!((h.records_count, h.last_offset_delta), (1, 0));
            assert_eq!((h.base_timestamp, h.max_timestamp), (1_234, 1_234));
            assert_eq!((h.base_offset, h.partition_leader_epoch), (0, 0));
            assert_eq!(parse_marker(&b).unwrap(), Some(marker));
            let r = &batch::decode_records(&b).unwrap()[0];
            assert_eq!(
                r.key.as_deref(),
                Some(&[0, 0, 0, control.type_id() as u8][..])
            );
            assert_eq!(r.value.as_deref(), Some(&[0, 0, 0, 0, 0, 7][..]));
        }
    }

    /// A control batch with a hand-made key and value.
    fn control_batch(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let mut b = build_marker_batch(1, 0, marker(ControlType::Commit), 5);
        let mut body = Vec::new();
        batch::encode_record::<&[u8]>(&mut body, 0, 0, Some(key), value, &[]);
        b.truncate(BATCH_HEADER_LEN);
        b.extend_from_slice(&body);
        let len = (b.len() - LOG_OVERHEAD_BYTES) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        batch::rewrite_crc(&mut b);
        b
    }

    fn marker(control: ControlType) -> EndTxnMarker {
        EndTxnMarker {
            control,
            coordinator_epoch: 0,
        }
    }

    #[test]
    fn unknown_types_and_malformed_markers() {
        // Leader change (type 2) is a control record but not a transaction marker.
        assert_eq!(
            parse_marker(&control_batch(&[0, 0, 0, 2], Some(&[0; 8]))).unwrap(),
            None
        );
        // Newer versions with extra bytes are accepted.
        assert_eq!(
            parse_marker(&control_batch(
                &[0, 1, 0, 0, 9],
                Some(&[0, 1, 0, 0, 0, 4, 9])
            ))
            .unwrap(),
            Some(EndTxnMarker {
                control: ControlType::Abort,
                coordinator_epoch: 4
            })
        );
        for (key, value) in [
            (&[0u8, 0, 0][..], Some(&[0u8, 0, 0, 0, 0, 0][..])),
            (&[0xff, 0xff, 0, 0][..], Some(&[0, 0, 0, 0, 0, 0][..])),
            (&[0, 0, 0, 1][..], Some(&[0, 0, 0, 0, 0][..])),
            (&[0, 0, 0, 1][..], None),
            (&[0, 0, 0, 1][..], Some(&[0xff, 0xff, 0, 0, 0, 0][..])),
        ] {
            assert!(
                matches!(
                    parse_marker(&control_batch(key, value)),
                    Err(LogError::CorruptRecord { .. })
                ),
                "{key:?} {value:?}"
            );
        }
        // A data batch is not a marker; a flipped bit fails the CRC.
        let data = crate::testutil::simple_batch(1, 3, 0);
        assert!(matches!(
            parse_marker(&data),
            Err(LogError::InvalidRecord { .. })
        ));
        let mut bad = build_marker_batch(1, 0, marker(ControlType::Abort), 5);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(parse_marker(&bad).is_err());
    }
}
