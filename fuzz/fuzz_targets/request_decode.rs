//! Arbitrary bytes as one request frame (without its 4-byte size prefix) through
//! `cairn_broker::connection::decode`, the pure function every connection runs on each
//! frame before dispatch: request header, API key and version check, body decoding with
//! `kafka-protocol`, the ApiVersions downgrade answer. It must return `Ok` or `Err`, never
//! panic, abort or allocate without bound.
#![no_main]

use cairn_broker::connection::{Decoded, decode};
use libfuzzer_sys::fuzz_target;

// As in the broker binary: a frame claiming a huge array length makes `kafka-protocol`
// reserve it up front, which this allocator serves lazily instead of aborting.
#[global_allocator]
static ALLOCATOR: cairn_broker::alloc::NoReserveAllocator = cairn_broker::alloc::NoReserveAllocator;

fuzz_target!(|data: &[u8]| {
    match decode(bytes::Bytes::copy_from_slice(data)) {
        Ok(Decoded::Request {
            api_key,
            version,
            correlation_id,
            ..
        }) => {
            // What was decoded is what the header said.
            assert_eq!(api_key as i16, i16::from_be_bytes([data[0], data[1]]));
            assert_eq!(version, i16::from_be_bytes([data[2], data[3]]));
            assert_eq!(
                correlation_id,
                i32::from_be_bytes([data[4], data[5], data[6], data[7]])
            );
        }
        Ok(Decoded::Immediate(response)) => assert!(!response.is_empty()),
        Err(reason) => assert!(!reason.is_empty()),
    }
});
