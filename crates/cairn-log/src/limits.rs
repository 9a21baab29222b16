//! Every bound of the crate, with its unit and its reason, in one place.

/// Largest allowed `segment.bytes`: a `.log` file must stay below 2 GiB so that the 4-byte
/// positions of the offset index (and Kafka's `int` segment sizes) can address every byte.
pub const SEGMENT_BYTES_MAX: u32 = i32::MAX as u32;

/// Smallest allowed `segment.bytes` (Kafka's own minimum: one legacy record overhead).
pub const SEGMENT_BYTES_MIN: u32 = 14;

/// Smallest allowed `segment.index.bytes`: room for at least one offset-index entry.
pub const SEGMENT_INDEX_BYTES_MIN: u32 = 12;

/// Largest allowed `segment.index.bytes`. Index files are preallocated (zero-filled) at this
/// size for the active segment, so a bound keeps a misconfiguration from filling the disk.
pub const SEGMENT_INDEX_BYTES_MAX: u32 = 1 << 30;

/// Largest allowed `max.message.bytes`: a batch must fit in one segment.
pub const MAX_MESSAGE_BYTES_MAX: u32 = SEGMENT_BYTES_MAX;

/// Largest number of bytes `decode_records` will inflate one batch to. Compression ratios of
/// 1000:1 are easy to forge, so decompression is bounded independently of the input size.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Size of one `.index` entry in bytes: 4-byte relative offset + 4-byte file position.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;

/// Size of one `.timeindex` entry in bytes: 8-byte timestamp + 4-byte relative offset.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Bytes read per `pread` while scanning a segment during recovery or index rebuild. Large
/// enough to amortise syscalls, small enough to stay out of the way of the page cache.
pub const RECOVERY_READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of an active index file allocated at a time (by writing zeros) ahead of the entries
/// stored through the mapping: 8192 offset-index entries, about 32 MiB of log at the default
/// `index.interval.bytes`.
pub const INDEX_ALLOCATION_CHUNK_BYTES: usize = 64 * 1024;

/// Smallest batch possible: the 61-byte v2 header with zero records.
pub const BATCH_BYTES_MIN: usize = crate::batch::BATCH_HEADER_LEN;

/// Bytes of the fixed prefix that every log entry shares (`base_offset` + `batch_length`).
pub const LOG_OVERHEAD_BYTES: usize = 12;

/// A relative offset must fit in the 4-byte (signed, like Kafka) field of the indexes.
pub const RELATIVE_OFFSET_MAX: i64 = i32::MAX as i64;

/// Largest buffer one `read` fills, whatever `max_bytes` the caller passes (a client's fetch
/// `max_bytes` is an untrusted `i32`): 64 MiB, above Kafka's default `fetch.max.bytes` (50 MiB).
/// A first batch larger than this is still returned whole when `min_one_batch` is set.
pub const READ_BYTES_MAX: usize = 64 * 1024 * 1024;
