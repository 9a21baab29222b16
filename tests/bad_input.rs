//! Bad input: malformed frames, unknown APIs and versions, oversized requests and corrupt
//! batches get the proper error or close only the offending connection, and the broker
//! keeps serving everyone else.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use harness::BrokerProcess;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn connect(broker: &BrokerProcess) -> TcpStream {
    let s = TcpStream::connect(broker.addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("write");
}

/// Reads one response frame (without its size prefix); `None` when the broker closed.
fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    if stream.read_exact(&mut size).is_err() {
        return None;
    }
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}

/// Sends a typed request at `version` and decodes the typed response.
fn call<R: Request>(stream: &mut TcpStream, key: ApiKey, version: i16, request: &R) -> R::Response {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, R::header_version(version)).unwrap();
    request.encode(&mut buf, version).unwrap();
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    send_raw(stream, &buf);
    let mut frame = read_frame(stream).expect("a response");
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 42);
    R::Response::decode(&mut frame, version).unwrap()
}

/// The broker still answers a well-formed request on a new connection.
fn assert_still_serving(broker: &BrokerProcess) {
    let mut s = connect(broker);
    let response = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );
    assert_eq!(response.error_code, 0);
    assert!(!response.api_keys.is_empty());
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let broker = BrokerProcess::start();
    let mut bystander = connect(&broker);
    call(
        &mut bystander,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );

    // A size prefix of 2 GiB: refused before anything is allocated.
    let mut s = connect(&broker);
    send_raw(&mut s, &i32::MAX.to_be_bytes());
    assert!(
        closed_by_broker(&mut s),
        "oversized frame must close the connection"
    );

    // A negative size.
    let mut s = connect(&broker);
    send_raw(&mut s, &(-5i32).to_be_bytes());
    assert!(closed_by_broker(&mut s));

    // An unknown API key.
    let mut s = connect(&broker);
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(9_999);
    frame.put_i16(0);
    frame.put_i32(1);
    frame.put_i16(-1);
    send_raw(&mut s, &frame);
    assert!(closed_by_broker(&mut s));

    // Garbage inside a well-sized frame: a Metadata v12 header and a body of 0xff bytes.
    let mut s = connect(&broker);
    let mut frame = BytesMut::new();
    frame.put_i32(40);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(12);
    frame.put_i32(7);
    frame.put_slice(&[0xff; 32]);
    send_raw(&mut s, &frame);
    assert!(closed_by_broker(&mut s));

    // A truncated frame followed by a disconnect.
    let mut s = connect(&broker);
    send_raw(&mut s, &[0, 0, 1, 0, 0, 18]);
    drop(s);

    // An unsupported version of a served API other than ApiVersions.
    let mut s = connect(&broker);
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(999);
    frame.put_i32(1);
    frame.put_i16(-1);
    send_raw(&mut s, &frame);
    assert!(closed_by_broker(&mut s));

    // Everyone else is unaffected.
    let again = call(
        &mut bystander,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );
    assert_eq!(again.error_code, 0);
    assert_still_serving(&broker);
}

#[test]
fn api_versions_at_unknown_version_answers_unsupported_version() {
    let broker = BrokerProcess::start();
    let mut s = connect(&broker);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(5);
    frame.put_i16(-1);
    frame.put_u8(0); // v2 header tagged fields, as a newer client would send
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    send_raw(&mut s, &frame);
    let mut body = read_frame(&mut s).expect("an answer, not a closed connection");
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, 5);
    let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    let fetch = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Fetch as i16)
        .expect("Fetch advertised");
    assert!(fetch.max_version >= 12);
}

fn batch(records: usize, value_len: usize) -> BytesMut {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf
}

fn produce(stream: &mut TcpStream, topic: &str, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let response = call(stream, ApiKey::Produce, 9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn bad_produce_requests_get_kafka_errors() {
    let broker = BrokerProcess::start_with(&["--set", "max.message.bytes=10000"]);
    let mut s = connect(&broker);
    // Auto-create the topic through Metadata, as clients do.
    let metadata = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("events")))),
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("bad/name")))),
            ]))
            .with_allow_auto_topic_creation(true),
    );
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(
        metadata.topics[1].error_code,
        ResponseError::InvalidTopicException.code()
    );

    // A good batch lands at offset 0.
    assert_eq!(produce(&mut s, "events", batch(3, 10).freeze()), (0, 0));

    // A flipped byte after the CRC field: CORRUPT_MESSAGE, nothing appended.
    let mut corrupt = batch(3, 10);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    assert_eq!(
        produce(&mut s, "events", corrupt.freeze()).0,
        ResponseError::CorruptMessage.code()
    );

    // A batch over max.message.bytes: MESSAGE_TOO_LARGE.
    assert_eq!(
        produce(&mut s, "events", batch(2, 20_000).freeze()).0,
        ResponseError::MessageTooLarge.code()
    );

    // Truncated bytes: CORRUPT_MESSAGE.
    let truncated = batch(3, 10).freeze().slice(0..30);
    assert_eq!(
        produce(&mut s, "events", truncated).0,
        ResponseError::CorruptMessage.code()
    );

    // An unknown topic: UNKNOWN_TOPIC_OR_PARTITION (Produce never auto-creates).
    assert_eq!(
        produce(&mut s, "nope", batch(1, 1).freeze()).0,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // The next good batch follows the first: the bad ones appended nothing.
    assert_eq!(produce(&mut s, "events", batch(2, 10).freeze()), (0, 3));
    assert_still_serving(&broker);
}
