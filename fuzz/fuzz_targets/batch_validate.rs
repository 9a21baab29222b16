//! Arbitrary bytes as the records of a produce request or a segment's contents, through
//! cairn-log's batch parsing: `Batches` iteration (v2 header checks), `verify_crc` and
//! `decode_records` (decompression with every codec, varint records, headers). Random
//! bytes almost never carry a valid CRC-32C, so each batch is also decoded a second time
//! with its CRC fixed up, to reach decompression and record parsing. Nothing may panic,
//! abort or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The broker's allocator, as in the binary that runs this code.
#[global_allocator]
static ALLOCATOR: cairn_broker::alloc::NoReserveAllocator = cairn_broker::alloc::NoReserveAllocator;

/// Bytes 17..21 of a v2 batch hold the CRC-32C of bytes 21.. (attributes onwards).
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;

fuzz_target!(|data: &[u8]| {
    let mut batches = cairn_log::Batches::new(data);
    let mut end = 0;
    for item in &mut batches {
        let Ok((header, batch)) = item else { break };
        assert_eq!(batch.len(), header.total_len());
        end += batch.len();
        let crc_ok = cairn_log::batch::verify_crc(batch).is_ok();
        let decoded = cairn_log::batch::decode_records(batch);
        if !crc_ok {
            assert!(
                decoded.is_err(),
                "decode_records accepted a batch with a bad CRC"
            );
            let mut fixed = batch.to_vec();
            let crc = crc32c::crc32c(&fixed[ATTRIBUTES_POS..]);
            fixed[CRC_POS..ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
            assert!(cairn_log::batch::verify_crc(&fixed).is_ok());
            check_decoded(&header, cairn_log::batch::decode_records(&fixed));
        } else {
            check_decoded(&header, decoded);
        }
    }
    assert!(end <= data.len());
    assert!(batches.position() == end);
});

fn check_decoded(
    header: &cairn_log::BatchHeader,
    decoded: Result<Vec<cairn_log::batch::Record>, cairn_log::LogError>,
) {
    if let Ok(records) = decoded {
        assert_eq!(records.len(), header.records_count as usize);
    }
}
