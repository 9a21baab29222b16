//! Hot paths of the wire protocol: decoding a Produce request frame (what every produced
//! byte goes through before it reaches the log) and encoding a Fetch response (what every
//! consumed byte goes through after it leaves the log), at 16 KiB and 1 MiB of records;
//! the Fetch encoding next to the copying one it replaced (`encode_fetch_copying`).
//! Throughput is reported per byte of records, so it compares directly with the
//! `memcpy` baseline measured in the same run.
//!
//! Run: `cargo bench -p cairn-broker --bench protocol`.

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use cairn_broker::connection::{decode, encode_response};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

const SIZES: [usize; 2] = [16 * 1024, 1024 * 1024];

fn records(bytes: usize) -> Bytes {
    let batch = cairn_log::testutil::simple_batch(bytes / 1024, 1000, 1_700_000_000_000);
    Bytes::from(batch)
}

fn produce_frame(records: Bytes) -> Bytes {
    let version = 9;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("bench")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut frame, ApiKey::Produce.request_header_version(version))
        .unwrap();
    request.encode(&mut frame, version).unwrap();
    frame.freeze()
}

fn fetch_response(records: Bytes) -> ResponseKind {
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("bench")))
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(1_000_000)
                        .with_records(Some(records)),
                ]),
        ]))
}

fn protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    for size in SIZES {
        let records = records(size);
        let len = records.len();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("memcpy", size), &records, |b, r| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(r.len());
                out.put_slice(black_box(r));
                black_box(out)
            })
        });
        let frame = produce_frame(records.clone());
        group.bench_with_input(BenchmarkId::new("decode_produce", size), &frame, |b, f| {
            b.iter(|| black_box(decode(black_box(f.clone())).unwrap()))
        });
        let response = fetch_response(records.clone());
        group.bench_with_input(BenchmarkId::new("encode_fetch", size), &response, |b, r| {
            b.iter(|| black_box(encode_response(ApiKey::Fetch, 12, 7, black_box(r)).unwrap()))
        });
        // The same response encoded into one buffer, records copied (what the broker did
        // before responses became chunk lists): the baseline for `encode_fetch`.
        group.bench_with_input(
            BenchmarkId::new("encode_fetch_copying", size),
            &response,
            |b, r| {
                b.iter(|| {
                    let mut out = BytesMut::with_capacity(len + 512);
                    out.put_i32(0);
                    ResponseHeader::default()
                        .with_correlation_id(7)
                        .encode(&mut out, ApiKey::Fetch.response_header_version(12))
                        .unwrap();
                    black_box(r).encode(&mut out, 12).unwrap();
                    black_box(out)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
