//! Kafka RecordBatch v2 ("magic 2"): header parsing, CRC-32C verification and record decoding.
//!
//! The hot path (append, read, recovery) only parses the fixed 61-byte header and checks the
//! CRC; it never decompresses. [`decode_records`] is for the cleaner, timestamp lookups and
//! keyless-record checks on compacted topics.
//!
//! Header layout (all big-endian), byte offsets from the start of the batch:
//!
//! | bytes  | field                    | notes                                        |
//! |--------|--------------------------|----------------------------------------------|
//! | 0..8   | `base_offset` i64        | patched by `append_as_leader`                |
//! | 8..12  | `batch_length` i32       | bytes after this field (total = 12 + length) |
//! | 12..16 | `partition_leader_epoch` | patched by `append_as_leader`                |
//! | 16     | `magic` i8               | must be 2                                    |
//! | 17..21 | `crc` u32                | CRC-32C (Castagnoli) of bytes 21..end        |
//! | 21..23 | `attributes` i16         | bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control |
//! | 23..27 | `last_offset_delta` i32  |                                              |
//! | 27..35 | `base_timestamp` i64     | first record's timestamp                     |
//! | 35..43 | `max_timestamp` i64      | patched for LogAppendTime                    |
//! | 43..51 | `producer_id` i64        |                                              |
//! | 51..53 | `producer_epoch` i16     |                                              |
//! | 53..57 | `base_sequence` i32      |                                              |
//! | 57..61 | `records_count` i32      |                                              |
//! | 61..   | records                  | possibly compressed as a whole               |
//!
//! Each record: varint `length`, i8 `attributes`, varlong `timestamp_delta`, varint
//! `offset_delta`, varint key length (-1 = null) + key, varint value length + value, varint
//! header count, then per header varint key length + UTF-8 key, varint value length + value.
//! Varints are zig-zag encoded like protobuf's `sint32`/`sint64`.
//!
//! Magic v0/v1 message sets are rejected with [`LogError::UnsupportedMagic`]: every client
//! since Kafka 0.11 (2017) sends v2, and supporting v0/v1 would need offset rewriting inside
//! compressed wrappers on the hot path.

use bytes::Bytes;

use crate::compression;
use crate::config::TimestampType;
use crate::error::LogError;
use crate::limits::LOG_OVERHEAD_BYTES;

/// Length of the fixed RecordBatch v2 header, in bytes.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only supported batch format.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_POS: usize = 0;
pub(crate) const BATCH_LENGTH_POS: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_POS: usize = 12;
pub(crate) const MAGIC_POS: usize = 16;
pub(crate) const CRC_POS: usize = 17;
pub(crate) const ATTRIBUTES_POS: usize = 21;
pub(crate) const MAX_TIMESTAMP_POS: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// The codec of a batch's records section (attributes bits 0..=2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompressionType {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl CompressionType {
    /// The codec for a Kafka codec id, `None` for ids 5..=7.
    pub fn from_id(id: i16) -> Option<CompressionType> {
        Some(match id {
            0 => CompressionType::None,
            1 => CompressionType::Gzip,
            2 => CompressionType::Snappy,
            3 => CompressionType::Lz4,
            4 => CompressionType::Zstd,
            _ => return None,
        })
    }
}

/// The fixed header of a RecordBatch v2 (see the module docs for the byte layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks that the magic is 2, that 61 bytes are
    /// present, that `batch_length` covers at least the header, that `last_offset_delta` and
    /// `records_count` are not negative and that the codec id is known. Does not check the CRC
    /// nor that `buf` holds the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() <= MAGIC_POS {
            return Err(LogError::corrupt(format!(
                "{} bytes is too short for a record batch header",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_POS] as i8;
        if magic != MAGIC_V2 {
            return Err(LogError::UnsupportedMagic { magic });
        }
        if buf.len() < BATCH_HEADER_LEN {
            return Err(LogError::corrupt(format!(
                "{} bytes is too short for a {BATCH_HEADER_LEN}-byte batch header",
                buf.len()
            )));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_POS),
            batch_length: be_i32(buf, BATCH_LENGTH_POS),
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_POS),
            magic,
            crc: u32::from_be_bytes(buf[CRC_POS..CRC_POS + 4].try_into().unwrap()),
            attributes: be_i16(buf, ATTRIBUTES_POS),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_POS),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if (h.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD_BYTES) as i64 {
            return Err(LogError::corrupt(format!(
                "batch_length {} is smaller than the header",
                h.batch_length
            )));
        }
        if h.last_offset_delta < 0 || h.records_count < 0 {
            return Err(LogError::corrupt(format!(
                "negative last_offset_delta {} or records_count {}",
                h.last_offset_delta, h.records_count
            )));
        }
        if CompressionType::from_id(h.attributes & COMPRESSION_MASK).is_none() {
            return Err(LogError::corrupt(format!(
                "unknown compression codec id {}",
                h.attributes & COMPRESSION_MASK
            )));
        }
        if h.base_offset
            .checked_add(h.last_offset_delta as i64 + 1)
            .is_none()
        {
            // The offset after the batch (the next log end offset) must exist too.
            return Err(LogError::corrupt("last offset overflows i64"));
        }
        Ok(h)
    }

    /// Bytes of the whole batch: 12 + `batch_length`.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The records codec.
    pub fn compression(&self) -> CompressionType {
        CompressionType::from_id(self.attributes & COMPRESSION_MASK)
            .expect("parse rejects unknown codecs")
    }

    /// CreateTime or LogAppendTime (attributes bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Attributes bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Attributes bit 5 (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C of `batch[21..]` as it should be stored at bytes 17..21.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POS..])
}

/// Checks the CRC-32C of one whole batch (`batch` must be exactly the batch's bytes, as the
/// slices yielded by [`Batches`] are).
pub fn verify_crc(batch: &[u8]) -> Result<(), LogError> {
    let h = BatchHeader::parse(batch)?;
    if batch.len() != h.total_len() {
        return Err(LogError::corrupt(format!(
            "batch slice of {} bytes but batch_length says {}",
            batch.len(),
            h.total_len()
        )));
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(LogError::corrupt(format!(
            "CRC-32C mismatch: stored {:#010x}, computed {computed:#010x}",
            h.crc
        )));
    }
    Ok(())
}

/// Rewrites the CRC of a batch after a patch of bytes 21.. (LogAppendTime).
pub(crate) fn rewrite_crc(batch: &mut [u8]) {
    let (header, rest) = batch.split_at_mut(BATCH_HEADER_LEN);
    let header: &mut [u8; BATCH_HEADER_LEN] = header.try_into().expect("a whole header");
    rewrite_crc_split(header, rest);
}

/// Rewrites the CRC in a batch's patched `header` (bytes 21.. changed: LogAppendTime), the
/// batch's bytes after the header being `rest`.
pub(crate) fn rewrite_crc_split(header: &mut [u8; BATCH_HEADER_LEN], rest: &[u8]) {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES_POS..]), rest);
    header[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates the whole batches of a buffer. Yields an error (and then stops) when the buffer
/// ends inside a batch or a header is invalid. Does not check CRCs.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Iterates `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Batches<'a> {
        Batches {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Byte position of the next batch in the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = BatchHeader::parse(rest).and_then(|h| {
            if h.total_len() > rest.len() {
                Err(LogError::corrupt(format!(
                    "batch at byte {} needs {} bytes but only {} remain",
                    self.pos,
                    h.total_len(),
                    rest.len()
                )))
            } else {
                Ok((h, &rest[..h.total_len()]))
            }
        });
        match result {
            Ok((h, slice)) => {
                self.pos += slice.len();
                Some(Ok((h, slice)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One record of a batch, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, LogError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| LogError::corrupt("record ends inside a field"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varlong(&mut self) -> Result<i64, LogError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(LogError::corrupt("varlong longer than 64 bits"));
            }
            raw |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(LogError::corrupt("varlong longer than 10 bytes"))
    }

    pub(crate) fn varint(&mut self) -> Result<i32, LogError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| LogError::corrupt("varint overflows i32"))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if n > self.remaining() {
            return Err(LogError::corrupt(format!(
                "field of {n} bytes but only {} remain",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn nullable(&mut self) -> Result<Option<&'a [u8]>, LogError> {
        let len = self.varint()?;
        if len < -1 {
            return Err(LogError::corrupt(format!("negative length {len}")));
        }
        if len == -1 {
            Ok(None)
        } else {
            self.bytes(len as usize).map(Some)
        }
    }
}

/// Smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length, header count (one byte each).
const RECORD_BYTES_MIN: usize = 7;

fn decode_one(r: &mut Reader<'_>, owner: &Bytes) -> Result<Record, LogError> {
    let len = r.varint()?;
    if len < 0 {
        return Err(LogError::corrupt(format!("negative record length {len}")));
    }
    let body = r.bytes(len as usize)?;
    let mut b = Reader::new(body);
    let _attributes = b.byte()?;
    let timestamp_delta = b.varlong()?;
    let offset_delta = b.varint()?;
    let slice = |s: &[u8]| owner.slice_ref(s);
    let key = b.nullable()?.map(slice);
    let value = b.nullable()?.map(slice);
    let count = b.varint()?;
    if count < 0 || count as usize > b.remaining() {
        return Err(LogError::corrupt(format!("bad header count {count}")));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let k = b
            .nullable()?
            .ok_or_else(|| LogError::corrupt("null record header key"))?;
        let k = std::str::from_utf8(k)
            .map_err(|_| LogError::corrupt("record header key is not UTF-8"))?
            .to_string();
        let v = b.nullable()?.map(slice);
        headers.push((k, v));
    }
    if b.remaining() != 0 {
        return Err(LogError::corrupt(format!(
            "{} trailing bytes inside a record",
            b.remaining()
        )));
    }
    Ok(Record {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    })
}

/// Decodes every record of one whole batch, decompressing if needed (gzip, snappy raw and
/// xerial-framed, lz4 frame, zstd). Checks the CRC first. Allocation is bounded by the batch
/// size and [`crate::limits::DECOMPRESSED_BATCH_BYTES_MAX`].
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, LogError> {
    verify_crc(batch)?;
    let h = BatchHeader::parse(batch)?;
    let body = &batch[BATCH_HEADER_LEN..];
    let owner = Bytes::from(compression::decompress(h.compression(), body)?);
    let count = h.records_count as usize;
    if count > owner.len() / RECORD_BYTES_MIN + 1 {
        return Err(LogError::corrupt(format!(
            "records_count {count} cannot fit in {} bytes",
            owner.len()
        )));
    }
    let mut r = Reader::new(&owner);
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode_one(&mut r, &owner)?);
    }
    if r.remaining() != 0 {
        return Err(LogError::corrupt(format!(
            "{} bytes after the last of {count} records",
            r.remaining()
        )));
    }
    Ok(records)
}

/// Counts the records of an uncompressed batch by walking their length prefixes, without
/// allocating. Used by append validation.
pub(crate) fn count_uncompressed_records(batch: &[u8]) -> Result<usize, LogError> {
    let mut r = Reader::new(&batch[BATCH_HEADER_LEN..]);
    let mut n = 0;
    while r.remaining() > 0 {
        let len = r.varint()?;
        if len < 0 {
            return Err(LogError::corrupt(format!("negative record length {len}")));
        }
        r.bytes(len as usize)?;
        n += 1;
    }
    Ok(n)
}

/// The timestamp of a record, given its batch header (LogAppendTime batches stamp every
/// record with the batch's `max_timestamp`).
pub(crate) fn record_timestamp(h: &BatchHeader, r: &Record) -> i64 {
    match h.timestamp_type() {
        TimestampType::LogAppendTime => h.max_timestamp,
        TimestampType::CreateTime => h.base_timestamp.wrapping_add(r.timestamp_delta),
    }
}

/// Appends a zig-zag varlong like Kafka's `ByteUtils.writeVarlong`.
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends a zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_varlong(out, v as i64)
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

/// Encodes one record (with its length prefix).
pub fn encode_record<H: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(String, Option<H>)],
) {
    let mut body = vec![0u8];
    put_varlong(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_nullable(&mut body, key);
    put_nullable(&mut body, value);
    put_varint(&mut body, headers.len() as i32);
    for (k, v) in headers {
        put_nullable(&mut body, Some(k.as_bytes()));
        put_nullable(&mut body, v.as_ref().map(|v| v.as_ref()));
    }
    put_varint(out, body.len() as i32);
    out.extend_from_slice(&body);
}

/// Re-encodes a batch keeping its header (offsets, producer fields, timestamps, attributes)
/// but only `records`, compressed with the header's codec. Used by the cleaner; the batch
/// keeps its `last_offset_delta`, so offsets stay unchanged (with gaps).
pub(crate) fn rebuild_batch(h: &BatchHeader, records: &[Record]) -> Vec<u8> {
    let mut body = Vec::new();
    for r in records {
        encode_record(
            &mut body,
            r.offset_delta,
            r.timestamp_delta,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        );
    }
    let body = compression::compress(h.compression(), &body);
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    b.extend_from_slice(&h.base_offset.to_be_bytes());
    b.extend_from_slice(
        &((BATCH_HEADER_LEN - LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes(),
    );
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&h.attributes.to_be_bytes());
    b.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&h.base_timestamp.to_be_bytes());
    b.extend_from_slice(&h.max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    rewrite_crc(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{BatchBuilder, TestRecord};

    #[test]
    fn header_round_trip() {
        let b = BatchBuilder::new(100)
            .leader_epoch(7)
            .producer(9, 2, 5)
            .record(TestRecord::kv(1000, "k", "v"))
            .record(TestRecord::kv(1005, "k2", "v2"))
            .build();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.last_offset(), 101);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.records_count, 2);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 2, 5)
        );
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.compression(), CompressionType::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_control() && !h.is_transactional());
        verify_crc(&b).unwrap();
    }

    #[test]
    fn rejects_old_magic_and_short_buffers() {
        let mut b = BatchBuilder::new(0)
            .record(TestRecord::kv(1, "k", "v"))
            .build();
        assert!(matches!(
            BatchHeader::parse(&b[..10]),
            Err(LogError::CorruptRecord { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&b[..40]),
            Err(LogError::CorruptRecord { .. })
        ));
        b[MAGIC_POS] = 1;
        assert!(matches!(
            BatchHeader::parse(&b),
            Err(LogError::UnsupportedMagic { magic: 1 })
        ));
    }

    #[test]
    fn crc_detects_a_flipped_bit_but_not_offset_patches() {
        let mut b = BatchBuilder::new(0)
            .record(TestRecord::kv(1, "k", "v"))
            .build();
        b[BASE_OFFSET_POS + 7] = 42;
        b[PARTITION_LEADER_EPOCH_POS] = 3;
        verify_crc(&b).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0x10;
        assert!(matches!(
            verify_crc(&b),
            Err(LogError::CorruptRecord { .. })
        ));
    }

    #[test]
    fn decodes_every_codec() {
        for codec in [
            CompressionType::None,
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            let b = BatchBuilder::new(5)
                .compression(codec)
                .record(TestRecord::kv(10, "a", "1"))
                .record(TestRecord {
                    timestamp: 12,
                    key: None,
                    value: None,
                    headers: vec![("h".into(), Some(b"x".to_vec())), ("n".into(), None)],
                })
                .build();
            let recs = decode_records(&b).unwrap();
            assert_eq!(recs.len(), 2, "{codec:?}");
            assert_eq!(recs[0].key.as_deref(), Some(&b"a"[..]));
            assert_eq!(recs[0].value.as_deref(), Some(&b"1"[..]));
            assert_eq!(recs[1].offset_delta, 1);
            assert_eq!(recs[1].timestamp_delta, 2);
            assert_eq!(recs[1].key, None);
            assert_eq!(recs[1].headers.len(), 2);
            assert_eq!(recs[1].headers[1], ("n".to_string(), None));
        }
    }

    #[test]
    fn decodes_raw_snappy() {
        let b = BatchBuilder::new(0)
            .compression(CompressionType::Snappy)
            .raw_snappy(true)
            .record(TestRecord::kv(1, "k", "v"))
            .build();
        assert_eq!(decode_records(&b).unwrap().len(), 1);
    }

    #[test]
    fn batches_iterates_and_reports_truncation() {
        let a = BatchBuilder::new(0)
            .record(TestRecord::kv(1, "k", "v"))
            .build();
        let b = BatchBuilder::new(1)
            .record(TestRecord::kv(2, "k", "v"))
            .build();
        let mut buf = [a.clone(), b.clone()].concat();
        let got: Vec<_> = Batches::new(&buf).map(|r| r.unwrap().1.to_vec()).collect();
        assert_eq!(got, vec![a.clone(), b]);
        buf.truncate(buf.len() - 1);
        let mut it = Batches::new(&buf);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn varints_match_kafka() {
        // Kafka's ByteUtils: zig-zag, 7 bits per byte, low first.
        for (v, enc) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (63, vec![0x7e]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            crate::testutil::put_varlong(&mut out, v);
            assert_eq!(out, enc, "{v}");
            assert_eq!(Reader::new(&enc).varlong().unwrap(), v);
        }
        assert!(Reader::new(&[0xff; 11]).varlong().is_err());
    }

    #[test]
    fn decode_rejects_lying_counts() {
        let mut b = BatchBuilder::new(0)
            .record(TestRecord::kv(1, "k", "v"))
            .build();
        b[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
        rewrite_crc(&mut b);
        assert!(decode_records(&b).is_err());
        assert_eq!(count_uncompressed_records(&b).unwrap(), 1);
    }
}
