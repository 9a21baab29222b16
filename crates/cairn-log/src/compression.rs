//! Codecs of RecordBatch v2 (attributes bits 0..=2): decompression bounded by
//! [`DECOMPRESSED_BATCH_BYTES_MAX`], and compression for the cleaner and test batches.
//!
//! Snappy comes in two shapes: raw snappy blocks (librdkafka) and the xerial framing used by
//! the Java client (`\x82SNAPPY\0`, two 4-byte versions, then 4-byte big-endian length-prefixed
//! raw blocks). Both are read; the xerial framing is written because every client reads it.
//! LZ4 is the LZ4 frame format (not the broken pre-0.10 header checksum, which only ever
//! existed with magic 0).

use std::io::{Read, Write};

use crate::batch::CompressionType;
use crate::error::LogError;
use crate::limits::DECOMPRESSED_BATCH_BYTES_MAX;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block when writing (xerial's default block size).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

fn read_bounded(mut reader: impl Read, codec: &str) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    let limit = DECOMPRESSED_BATCH_BYTES_MAX as u64 + 1;
    (&mut reader)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| LogError::corrupt(format!("{codec} decompression failed: {e}")))?;
    if out.len() > DECOMPRESSED_BATCH_BYTES_MAX {
        return Err(LogError::corrupt(format!(
            "{codec} batch inflates beyond {DECOMPRESSED_BATCH_BYTES_MAX} bytes"
        )));
    }
    Ok(out)
}

fn snappy_raw(input: &[u8], out: &mut Vec<u8>) -> Result<(), LogError> {
    let len =
        snap::raw::decompress_len(input).map_err(|e| LogError::corrupt(format!("snappy: {e}")))?;
    if out.len() + len > DECOMPRESSED_BATCH_BYTES_MAX {
        return Err(LogError::corrupt(format!(
            "snappy batch inflates beyond {DECOMPRESSED_BATCH_BYTES_MAX} bytes"
        )));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(input, &mut out[start..])
        .map_err(|e| LogError::corrupt(format!("snappy: {e}")))?;
    out.truncate(start + n);
    Ok(())
}

/// Inflates the records section of a batch.
pub(crate) fn decompress(codec: CompressionType, input: &[u8]) -> Result<Vec<u8>, LogError> {
    match codec {
        CompressionType::None => Ok(input.to_vec()),
        CompressionType::Gzip => read_bounded(flate2::read::GzDecoder::new(input), "gzip"),
        CompressionType::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), "lz4"),
        CompressionType::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| LogError::corrupt(format!("zstd: {e}")))?;
            read_bounded(decoder, "zstd")
        }
        CompressionType::Snappy => {
            let mut out = Vec::new();
            if input.len() >= XERIAL_HEADER_BYTES && &input[..8] == XERIAL_MAGIC {
                let mut rest = &input[XERIAL_HEADER_BYTES..];
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(LogError::corrupt("snappy: truncated xerial block length"));
                    }
                    let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    rest = &rest[4..];
                    if n > rest.len() {
                        return Err(LogError::corrupt("snappy: truncated xerial block"));
                    }
                    snappy_raw(&rest[..n], &mut out)?;
                    rest = &rest[n..];
                }
            } else {
                snappy_raw(input, &mut out)?;
            }
            Ok(out)
        }
    }
}

/// Compresses a records section with `codec` (used by the cleaner and the test builder).
pub(crate) fn compress(codec: CompressionType, input: &[u8]) -> Vec<u8> {
    match codec {
        CompressionType::None => input.to_vec(),
        CompressionType::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(input).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        CompressionType::Lz4 => {
            let mut info = lz4_flex::frame::FrameInfo::new();
            info.block_mode = lz4_flex::frame::BlockMode::Independent;
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(input).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        CompressionType::Zstd => zstd::bulk::compress(input, 3).expect("zstd compression"),
        CompressionType::Snappy => {
            let mut out = Vec::with_capacity(input.len() / 2 + XERIAL_HEADER_BYTES);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
                let block = enc.compress_vec(chunk).expect("snappy compression");
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
    }
}

/// Raw (unframed) snappy, as librdkafka writes it; for tests of the raw reading path.
#[cfg(any(test, feature = "testutil"))]
pub(crate) fn compress_snappy_raw(input: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(input)
        .expect("snappy compression")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            CompressionType::None,
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            let c = compress(codec, &data);
            assert_eq!(decompress(codec, &c).unwrap(), data, "{codec:?}");
        }
        let raw = compress_snappy_raw(&data);
        assert_eq!(decompress(CompressionType::Snappy, &raw).unwrap(), data);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            assert!(
                decompress(codec, b"\xff\x00garbage\x01\x02\x03").is_err(),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let zeros = vec![0u8; DECOMPRESSED_BATCH_BYTES_MAX + 1];
        let c = zstd::bulk::compress(&zeros, 1).unwrap();
        assert!(matches!(
            decompress(CompressionType::Zstd, &c),
            Err(LogError::CorruptRecord { .. })
        ));
    }
}
